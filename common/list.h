/* list: pushing onto and unlinking from the intrusive doubly-linked lists that connections,
 * WebSockets, Redis commands in flight and debug sleepers live in, written once.
 *
 * A node is any struct with `prev` and `next` pointers to its own type; a list is an
 * lvalue pointing at its first node (head), and for a queue also one at its last (tail).
 * The nodes keep their plain fields, rather than an embedded link and container_of, so
 * that a `next` can go on serving a second, singly-linked list once a node has left the
 * first (a closed connection, a finished command). These are macros because C has no
 * generics: each argument is evaluated more than once, so pass plain lvalues. */
#ifndef SESSIOND_LIST_H
#define SESSIOND_LIST_H

#include <stddef.h>

/* Put node first in the list that starts at head. */
#define LIST_PUSH(head, node)                                                                  \
    do {                                                                                       \
        (node)->prev = NULL;                                                                   \
        (node)->next = (head);                                                                 \
        if ((head) != NULL)                                                                    \
            (head)->prev = (node);                                                             \
        (head) = (node);                                                                       \
    } while (0)

/* Put node last in the queue from head to tail. */
#define LIST_APPEND(head, tail, node)                                                          \
    do {                                                                                       \
        (node)->next = NULL;                                                                   \
        (node)->prev = (tail);                                                                 \
        if ((tail) != NULL)                                                                    \
            (tail)->next = (node);                                                             \
        else                                                                                   \
            (head) = (node);                                                                   \
        (tail) = (node);                                                                       \
    } while (0)

/* Take node out of the list that starts at head, and clear its links. */
#define LIST_UNLINK(head, node)                                                                \
    do {                                                                                       \
        if ((node)->prev != NULL)                                                              \
            (node)->prev->next = (node)->next;                                                 \
        else                                                                                   \
            (head) = (node)->next;                                                             \
        if ((node)->next != NULL)                                                              \
            (node)->next->prev = (node)->prev;                                                 \
        (node)->prev = (node)->next = NULL;                                                    \
    } while (0)

/* Take node out of the queue from head to tail, and clear its links: the tail first,
 * then the rest as LIST_UNLINK does it (which sets next->prev again, harmlessly). */
#define LIST_UNLINK_TAIL(head, tail, node)                                                     \
    do {                                                                                       \
        if ((node)->next != NULL)                                                              \
            (node)->next->prev = (node)->prev;                                                 \
        else                                                                                   \
            (tail) = (node)->prev;                                                             \
        LIST_UNLINK(head, node);                                                               \
    } while (0)

#endif
