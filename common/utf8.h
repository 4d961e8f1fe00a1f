/* utf8: checking UTF-8 (RFC 3629) and writing bytes as the inside of a JSON string
 * (RFC 8259). The WebSocket transport, the log and the API's bodies all need one or the
 * other, and each had its own copy. */
#ifndef SESSIOND_UTF8_H
#define SESSIOND_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length (2 to 4) of the well-formed multibyte sequence at s, of which avail bytes
 * may be read, or 0 when the bytes there do not start one (an ASCII byte does not). */
size_t utf8_seq_len(const unsigned char *s, size_t avail);

/* Whether the len bytes at p are well-formed UTF-8 as a whole. */
bool utf8_valid(const void *p, size_t len);

/* Write the n bytes at s into out as the inside of a JSON string, at most cap bytes and
 * only whole characters and escapes, without a terminating NUL. Quote, backslash and the
 * control characters are escaped (\b \f \n \r \t, the rest as \u00XX), and DEL as well,
 * so that a log line shows nothing raw in a terminal. A byte that is not part of
 * well-formed UTF-8 becomes one U+FFFD, so the output is valid JSON whatever the input.
 * Returns the bytes written; *used (when not NULL) is how many bytes of s they stand
 * for, which is n unless cap ran out. */
size_t utf8_json_escape(char *out, size_t cap, const void *s, size_t n, size_t *used);

#endif
