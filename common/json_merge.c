/* json_merge: RFC 7396 merge patches with jansson for parsing and a small compact writer. */
#include "json_merge.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* The serialized result as it grows; it never grows past max bytes. */
struct jm_out {
    char *buf;
    size_t len, cap, max;
    bool too_long;
};

/* Merge patch (an object) into target (an object), in place, as RFC 7396 section 2 says:
 * null removes a member, an object merges recursively, anything else replaces. */
static int
jm_apply(json_t *target, json_t *patch)
{
    const char *key;
    json_t *value;
    json_object_foreach(patch, key, value) {
        if (json_is_null(value)) {
            json_object_del(target, key);
            continue;
        }
        if (!json_is_object(value)) {
            if (json_object_set(target, key, value) != 0)
                return -1;
            continue;
        }
        /* Even into a fresh object the patch is merged, not copied, so that its nulls
         * are dropped rather than stored. */
        json_t *sub = json_object_get(target, key);
        if (!json_is_object(sub)) {
            sub = json_object();
            if (sub == NULL || json_object_set_new(target, key, sub) != 0)
                return -1;
        }
        if (jm_apply(sub, value) != 0)
            return -1;
    }
    return 0;
}

static int
jm_put(struct jm_out *o, const char *s, size_t n)
{
    if (n > o->max - o->len) {
        o->too_long = true;
        return -1;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->buf, cap);
        if (p == NULL)
            return -1;
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 0;
}

/* A JSON string, escaped a stack buffer at a time. Jansson checked the UTF-8 when it
 * parsed, so the escaper's U+FFFD for bad bytes never applies here. */
static int
jm_string(struct jm_out *o, const char *s, size_t n)
{
    if (jm_put(o, "\"", 1) != 0)
        return -1;
    while (n > 0) {
        char chunk[256];
        size_t used, len = utf8_json_escape(chunk, sizeof chunk, s, n, &used);
        if (jm_put(o, chunk, len) != 0)
            return -1;
        s += used;
        n -= used;
    }
    return jm_put(o, "\"", 1);
}

/* The shortest of 15, 16 or 17 significant digits that reads back as the same double, so
 * that 19.99 stays 19.99 and nothing is lost. The process never calls setlocale, so the
 * decimal point is '.'. */
static int
jm_real(struct jm_out *o, double d)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf - 2, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* Keep it a real for the next reader: 1.0, not 1 (as jansson does). */
    if (strpbrk(buf, ".eE") == NULL)
        memcpy(buf + strlen(buf), ".0", sizeof ".0"); /* the room snprintf left */
    return jm_put(o, buf, strlen(buf));
}

static int jm_value(struct jm_out *o, json_t *v);

static int
jm_object(struct jm_out *o, json_t *obj)
{
    const char *key;
    json_t *value;
    bool first = true;
    if (jm_put(o, "{", 1) != 0)
        return -1;
    json_object_foreach(obj, key, value) {
        if ((!first && jm_put(o, ",", 1) != 0) || jm_string(o, key, strlen(key)) != 0 ||
            jm_put(o, ":", 1) != 0 || jm_value(o, value) != 0)
            return -1;
        first = false;
    }
    return jm_put(o, "}", 1);
}

static int
jm_array(struct jm_out *o, json_t *arr)
{
    size_t i;
    json_t *value;
    if (jm_put(o, "[", 1) != 0)
        return -1;
    json_array_foreach(arr, i, value) {
        if ((i > 0 && jm_put(o, ",", 1) != 0) || jm_value(o, value) != 0)
            return -1;
    }
    return jm_put(o, "]", 1);
}

static int
jm_value(struct jm_out *o, json_t *v)
{
    char buf[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: return jm_object(o, v);
    case JSON_ARRAY: return jm_array(o, v);
    case JSON_STRING: return jm_string(o, json_string_value(v), json_string_length(v));
    case JSON_REAL: return jm_real(o, json_real_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return jm_put(o, buf, strlen(buf));
    case JSON_TRUE: return jm_put(o, "true", 4);
    case JSON_FALSE: return jm_put(o, "false", 5);
    case JSON_NULL: return jm_put(o, "null", 4);
    }
    return -1;
}

/* Parse both texts; a target that is valid JSON but not an object becomes {} (RFC 7396:
 * an object patch replaces any non-object target). */
static int
jm_load(const char *target, size_t target_len, const char *patch, size_t patch_len,
        json_t **t, json_t **p)
{
    *t = NULL;
    *p = json_loadb(patch, patch_len, JSON_DECODE_ANY, NULL);
    if (!json_is_object(*p))
        return -1;
    *t = json_loadb(target, target_len, JSON_DECODE_ANY, NULL);
    if (*t == NULL)
        return -1;
    if (!json_is_object(*t)) {
        json_decref(*t);
        *t = json_object();
    }
    return *t == NULL ? -1 : 0;
}

int
json_merge_dump(json_t *v, size_t max_len, char **out, size_t *out_len)
{
    struct jm_out o = {.max = max_len};
    if (v == NULL || jm_value(&o, v) != 0) {
        free(o.buf);
        return o.too_long ? -2 : -1;
    }
    *out = o.buf; /* every value writes at least one byte, so buf exists */
    *out_len = o.len;
    return 0;
}

int
json_merge_patch(const char *target, size_t target_len, const char *patch, size_t patch_len,
                 size_t max_len, char **out, size_t *out_len)
{
    json_t *t, *p;
    int rc = -1;
    if (jm_load(target, target_len, patch, patch_len, &t, &p) == 0 && jm_apply(t, p) == 0)
        rc = json_merge_dump(t, max_len, out, out_len);
    json_decref(t);
    json_decref(p);
    return rc;
}
