/* json_in: a JSON object from a client's bytes (an HTTP body, a WebSocket message), or one
 * sentence that says what is wrong with them, the same for both.
 *
 * jansson does the parsing, refusing duplicate keys; what it cannot say well is said
 * here: a raw NUL (jansson takes it for the end of its input, so "{"a":1<NUL>}" would pass
 * as {"a":1}), a \u0000 (jansson's words name its own flag), and a value that is valid
 * JSON but not an object (named: "not an array"). */
#ifndef SESSIOND_JSON_IN_H
#define SESSIOND_JSON_IN_H

#include <jansson.h>
#include <stddef.h>

/* The object in p (len bytes), or NULL with why (cap bytes, plain text, not escaped)
 * filled: "Invalid JSON at byte N: ..." or "<what> must be a JSON object, not ...", what
 * naming the thing ("The body", "A message"). */
json_t *json_in_object(const char *p, size_t len, const char *what, char *why, size_t cap);

#endif
