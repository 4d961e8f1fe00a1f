/* util and list: the small helpers that several modules share. */
#include <string.h>

#include "list.h"
#include "suites.h"
#include "util.h"

START_TEST(hex_digits)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(hex_digit(digits[i]), i);
        ck_assert_int_eq(hex_digit(digits[i] >= 'a' ? digits[i] - 'a' + 'A' : digits[i]), i);
    }
    /* Every other byte, as char (signed here) and as unsigned char, is not a digit. */
    for (int c = -128; c < 256; c++) {
        bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!digit)
            ck_assert_msg(hex_digit(c) == -1, "byte %d", c);
    }
}
END_TEST

struct node {
    int id;
    struct node *prev, *next;
};

/* The ids from head to the end, checking each back link on the way. */
static void
expect(const struct node *head, const struct node *tail, const char *want)
{
    char got[16] = "";
    size_t n = 0;
    const struct node *last = NULL;
    for (const struct node *p = head; p != NULL; p = p->next) {
        ck_assert_ptr_eq(p->prev, last);
        got[n++] = (char)('0' + p->id);
        last = p;
    }
    ck_assert_str_eq(got, want);
    if (tail != NULL || head == NULL)
        ck_assert_ptr_eq(tail, last);
}

START_TEST(list_push_unlink)
{
    struct node n[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    struct node *head = NULL;
    for (int i = 0; i < 4; i++)
        LIST_PUSH(head, &n[i]);
    expect(head, NULL, "3210");
    LIST_UNLINK(head, &n[1]); /* middle */
    expect(head, NULL, "320");
    ck_assert_ptr_null(n[1].prev);
    ck_assert_ptr_null(n[1].next);
    LIST_UNLINK(head, &n[3]); /* first */
    expect(head, NULL, "20");
    LIST_UNLINK(head, &n[0]); /* last */
    expect(head, NULL, "2");
    LIST_UNLINK(head, &n[2]);
    ck_assert_ptr_null(head);
}
END_TEST

START_TEST(list_queue)
{
    struct node n[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    struct node *head = NULL, *tail = NULL;
    for (int i = 0; i < 4; i++)
        LIST_APPEND(head, tail, &n[i]);
    expect(head, tail, "0123");
    LIST_UNLINK_TAIL(head, tail, &n[3]); /* last: the tail moves back */
    expect(head, tail, "012");
    LIST_UNLINK_TAIL(head, tail, &n[0]); /* first */
    expect(head, tail, "12");
    LIST_APPEND(head, tail, &n[0]);
    LIST_UNLINK_TAIL(head, tail, &n[2]); /* middle */
    expect(head, tail, "10");
    LIST_UNLINK_TAIL(head, tail, &n[1]);
    LIST_UNLINK_TAIL(head, tail, &n[0]);
    ck_assert_ptr_null(head);
    ck_assert_ptr_null(tail);
}
END_TEST

Suite *
util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_test(tc, hex_digits);
    tcase_add_test(tc, list_push_unlink);
    tcase_add_test(tc, list_queue);
    suite_add_tcase(s, tc);
    return s;
}
