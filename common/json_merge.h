/* json_merge: JSON Merge Patch (RFC 7396), for the session stores' PATCH.
 *
 * The result is serialized compactly by our own writer rather than by jansson's, because
 * jansson prints every real with 17 digits (19.99 becomes 19.989999999999998) and a client
 * that patches one member must get its other members back as it wrote them. */
#ifndef SESSIOND_JSON_MERGE_H
#define SESSIOND_JSON_MERGE_H

#include <jansson.h>
#include <stddef.h>

/* Apply a JSON Merge Patch (RFC 7396) to a JSON object. target (target_len bytes, a
 * serialized JSON object; any other JSON value counts as {} as the RFC says) and patch (a
 * serialized JSON value; it must be an object).
 * On success *out is a malloc'd compact serialization (caller frees; NUL-terminated for
 * convenience), *out_len its length, and 0 is returned; -1 if the patch is not an object,
 * either text is not valid JSON, or memory ran out; -2 if the result is longer than
 * max_len bytes. */
int json_merge_patch(const char *target, size_t target_len, const char *patch, size_t patch_len,
                     size_t max_len, char **out, size_t *out_len);

/* Serialize v compactly with the same writer (reals in their shortest exact form, where
 * json_dumps would print 19.99 as 19.989999999999998). Returns 0 with *out malloc'd
 * (NUL-terminated) and *out_len its length; -1 if memory ran out; -2 if longer than
 * max_len bytes. */
int json_merge_dump(json_t *v, size_t max_len, char **out, size_t *out_len);

#endif
