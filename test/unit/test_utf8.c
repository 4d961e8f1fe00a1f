/* utf8: the validator (what makes WebSocket close code 1007) and the JSON string escaper
 * that the log, the API's error bodies and json_merge share. */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "suites.h"
#include "utf8.h"

/* ---- Validation ---------------------------------------------------------------------- */

static bool
utf8(const char *s, size_t n)
{
    char *copy = exact_copy(s, n);
    bool ok = utf8_valid(copy, n);
    free(copy);
    return ok;
}

#define UTF8(lit) utf8((lit), sizeof(lit) - 1)

START_TEST(valid)
{
    ck_assert(UTF8(""));
    ck_assert(UTF8("plain ascii"));
    ck_assert(UTF8("\x00\x7f"));
    ck_assert(UTF8("\xc2\x80 \xdf\xbf"));                         /* U+0080, U+07FF */
    ck_assert(UTF8("\xe0\xa0\x80 \xef\xbf\xbf"));                 /* U+0800, U+FFFF */
    ck_assert(UTF8("\xed\x9f\xbf \xee\x80\x80"));                 /* U+D7FF, U+E000 */
    ck_assert(UTF8("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"));         /* U+10000, U+10FFFF */
    ck_assert(UTF8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* "kosme" in Greek */
    ck_assert(UTF8("\xf0\x9f\x98\x80"));
}
END_TEST

START_TEST(invalid)
{
    ck_assert(!UTF8("\xc0\xaf"));             /* overlong '/' */
    ck_assert(!UTF8("\xc1\xbf"));             /* overlong U+007F */
    ck_assert(!UTF8("\xe0\x80\xaf"));         /* overlong, three bytes */
    ck_assert(!UTF8("\xe0\x9f\xbf"));         /* overlong U+07FF */
    ck_assert(!UTF8("\xf0\x80\x80\xaf"));     /* overlong, four bytes */
    ck_assert(!UTF8("\xf0\x8f\xbf\xbf"));     /* overlong U+FFFF */
    ck_assert(!UTF8("\xed\xa0\x80"));         /* U+D800 */
    ck_assert(!UTF8("\xed\xbf\xbf"));         /* U+DFFF */
    ck_assert(!UTF8("\xed\xa0\x80\xed\xb0\x80")); /* a surrogate pair, CESU-8 style */
    ck_assert(!UTF8("\xf4\x90\x80\x80"));     /* U+110000 */
    ck_assert(!UTF8("\xf5\x80\x80\x80"));
    ck_assert(!UTF8("\xff"));
    ck_assert(!UTF8("\x80"));                 /* a lone continuation byte */
    ck_assert(!UTF8("\xc3\x28"));             /* a lead byte without its continuation */
    ck_assert(!UTF8("\xe2\x82\x28"));
    ck_assert(!UTF8("\xf0\x9f\x98\x28"));
    /* Sequences cut short at the end of the message. */
    ck_assert(!UTF8("abc\xc3"));
    ck_assert(!UTF8("abc\xe2\x82"));
    ck_assert(!UTF8("abc\xf0\x9f\x98"));
    ck_assert(!UTF8("\xf4"));
}
END_TEST

START_TEST(ascii_runs)
{
    /* A bad or multibyte sequence at every position around the eight-byte steps. */
    char s[40];
    for (size_t at = 0; at + 4 <= sizeof s; at++) {
        memset(s, 'a', sizeof s);
        memcpy(s + at, "\xf0\x9f\x98\x80", 4);
        ck_assert_msg(utf8(s, sizeof s), "valid 4-byte sequence at %zu", at);
        s[at + 1] = '\x8f'; /* overlong */
        ck_assert_msg(!utf8(s, sizeof s), "overlong at %zu", at);
        memset(s, 'a', sizeof s);
        s[at] = '\x80';
        ck_assert_msg(!utf8(s, sizeof s), "continuation byte at %zu", at);
    }
    for (size_t n = 1; n <= 24; n++) {
        memset(s, 'a', sizeof s);
        ck_assert(utf8(s, n));
        s[n - 1] = '\xc3'; /* truncated at the very end, after a run of ASCII */
        ck_assert_msg(!utf8(s, n), "truncated at length %zu", n);
    }
}
END_TEST

/* ---- JSON escaping ------------------------------------------------------------------- */

/* Escape the n bytes of s with room for cap, and return the output as a string. */
static const char *
escaped(const char *s, size_t n, size_t cap, size_t *used)
{
    static char out[512];
    char *in = exact_copy(s, n);
    ck_assert_uint_lt(cap, sizeof out);
    size_t len = utf8_json_escape(out, cap, in, n, used);
    free(in);
    ck_assert_uint_le(len, cap);
    out[len] = '\0';
    return out;
}

#define ESC(lit) escaped((lit), sizeof(lit) - 1, 500, NULL)

START_TEST(escapes)
{
    ck_assert_str_eq(ESC(""), "");
    ck_assert_str_eq(ESC("plain / text"), "plain / text");
    ck_assert_str_eq(ESC("\"q\" \\"), "\\\"q\\\" \\\\");
    ck_assert_str_eq(ESC("\b\f\n\r\t"), "\\b\\f\\n\\r\\t");
    ck_assert_str_eq(ESC("\x01\x1f\x7f"), "\\u0001\\u001f\\u007f");
    ck_assert_str_eq(ESC("a\0b"), "a\\u0000b"); /* a length, not a NUL, ends the input */
    ck_assert_str_eq(ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}
END_TEST

START_TEST(bad_bytes)
{
    /* Every byte that is not part of a well-formed sequence is one U+FFFD. */
    ck_assert_str_eq(ESC("a\x80z"), "a\\ufffdz");
    ck_assert_str_eq(ESC("\xc0\xaf"), "\\ufffd\\ufffd");
    ck_assert_str_eq(ESC("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");
    ck_assert_str_eq(ESC("\xff\xc3\xa9"), "\\ufffd\xc3\xa9");
    ck_assert_str_eq(ESC("cut\xe2\x82"), "cut\\ufffd\\ufffd");
}
END_TEST

/* Whatever the bytes and however little room, the output parses as a JSON string. */
START_TEST(always_json)
{
    char in[64];
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof in; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = (char)(seed >> 16);
        }
        size_t cap = (size_t)round % 200, used;
        const char *out = escaped(in, sizeof in, cap, &used);
        ck_assert_uint_le(used, sizeof in);
        char *quoted = malloc(strlen(out) + 3);
        ck_assert_ptr_nonnull(quoted);
        sprintf(quoted, "\"%s\"", out);
        json_error_t err;
        json_t *j = json_loads(quoted, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        ck_assert_msg(j != NULL, "round %d: %s: %s", round, err.text, quoted);
        json_decref(j);
        free(quoted);
    }
}
END_TEST

/* Short of room, it stops before an escape or a character it cannot write whole, and says
 * how much of the input it covered. */
START_TEST(cut_whole)
{
    size_t used;
    ck_assert_str_eq(escaped("ab\n", 3, 3, &used), "ab");
    ck_assert_uint_eq(used, 2);
    ck_assert_str_eq(escaped("ab\xe2\x82\xac", 5, 4, &used), "ab");
    ck_assert_uint_eq(used, 2);
    ck_assert_str_eq(escaped("ab\xe2\x82\xac", 5, 5, &used), "ab\xe2\x82\xac");
    ck_assert_uint_eq(used, 5);
    ck_assert_str_eq(escaped("\x01", 1, 5, &used), "");
    ck_assert_uint_eq(used, 0);
}
END_TEST

Suite *
utf8_suite(void)
{
    Suite *s = suite_create("utf8");
    TCase *valid_tc = tcase_create("valid");
    tcase_add_test(valid_tc, valid);
    tcase_add_test(valid_tc, invalid);
    tcase_add_test(valid_tc, ascii_runs);
    suite_add_tcase(s, valid_tc);
    TCase *json = tcase_create("json");
    tcase_add_test(json, escapes);
    tcase_add_test(json, bad_bytes);
    tcase_add_test(json, always_json);
    tcase_add_test(json, cut_whole);
    suite_add_tcase(s, json);
    return s;
}
