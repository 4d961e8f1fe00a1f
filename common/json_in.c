#include "json_in.h"

#include <stdio.h>
#include <string.h>

/* What a JSON value is, for one that should have been an object. */
static const char *
json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    default:
        return "an object";
    }
}

json_t *
json_in_object(const char *p, size_t len, const char *what, char *why, size_t cap)
{
    why[0] = '\0';
    const char *nul = len > 0 ? memchr(p, '\0', len) : NULL;
    /* Any value is parsed, so that a string or a number is named as such rather than as
     * JSON that lacks its '[' or '{'. */
    json_error_t e = {0};
    json_t *j = len == 0 || nul != NULL
                    ? NULL
                    : json_loadb(p, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (json_is_object(j))
        return j;
    if (len == 0)
        snprintf(why, cap, "%s must be a JSON object, not empty.", what);
    else if (nul != NULL)
        snprintf(why, cap, "Invalid JSON at byte %zu: a NUL byte.", (size_t)(nul - p));
    else if (j == NULL && json_error_code(&e) == json_error_null_character)
        snprintf(why, cap, "Invalid JSON at byte %d: \\u0000 is not allowed in a string.",
                 e.position);
    else if (j == NULL)
        snprintf(why, cap, "Invalid JSON at byte %d: %s.", e.position, e.text);
    else
        snprintf(why, cap, "%s must be a JSON object, not %s.", what, json_kind(j));
    json_decref(j);
    return NULL;
}
