/* json_merge: RFC 7396 appendix A, our object-only contract, sizes and number fidelity. */
#include <stdlib.h>
#include <string.h>

#include "json_merge.h"
#include "suites.h"

/* Merge two texts and compare the result with want; returns json_merge_patch's status. */
static int
merge(const char *target, const char *patch, size_t max_len, const char *want)
{
    char *out = NULL;
    size_t out_len = 0;
    int rc = json_merge_patch(target, strlen(target), patch, strlen(patch), max_len, &out,
                              &out_len);
    if (rc == 0) {
        ck_assert_str_eq(out, want);
        ck_assert_uint_eq(out_len, strlen(want));
    } else {
        ck_assert_ptr_null(out);
    }
    free(out);
    return rc;
}

/* RFC 7396 appendix A, every example whose patch is an object. */
static const char *const rfc_examples[][3] = {
    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
    {"{\"a\": {\"b\": \"c\"}}", "{\"a\": {\"b\": \"d\", \"c\": null}}", "{\"a\":{\"b\":\"d\"}}"},
    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
};

START_TEST(rfc7396_object_patches)
{
    const char *const *ex = rfc_examples[_i];
    ck_assert_int_eq(merge(ex[0], ex[1], 1000, ex[2]), 0);
}
END_TEST

/* The appendix's examples whose patch is not an object: the RFC replaces the target, our
 * contract (session data is always an object) refuses them. */
START_TEST(rfc7396_non_object_patches)
{
    ck_assert_int_eq(merge("[\"a\",\"b\"]", "[\"c\",\"d\"]", 1000, NULL), -1);
    ck_assert_int_eq(merge("{\"a\":\"b\"}", "[\"c\"]", 1000, NULL), -1);
    ck_assert_int_eq(merge("{\"a\":\"foo\"}", "null", 1000, NULL), -1);
    ck_assert_int_eq(merge("{\"a\":\"foo\"}", "\"bar\"", 1000, NULL), -1);
    ck_assert_int_eq(merge("{\"a\":1}", "7", 1000, NULL), -1);
}
END_TEST

/* The example of RFC 7396 section 3; member order is kept, new members go last. */
START_TEST(rfc7396_section3)
{
    const char *target = "{\"title\": \"Goodbye!\", \"author\": {\"givenName\": \"John\", "
                         "\"familyName\": \"Doe\"}, \"tags\": [\"example\", \"sample\"], "
                         "\"content\": \"This will be unchanged\"}";
    const char *patch = "{\"title\": \"Hello!\", \"phoneNumber\": \"+01-123-456-7890\", "
                        "\"author\": {\"familyName\": null}, \"tags\": [\"example\"]}";
    const char *want = "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},"
                       "\"tags\":[\"example\"],\"content\":\"This will be unchanged\","
                       "\"phoneNumber\":\"+01-123-456-7890\"}";
    ck_assert_int_eq(merge(target, patch, 1000, want), 0);
}
END_TEST

START_TEST(invalid_json)
{
    ck_assert_int_eq(merge("{\"a\":1}", "{\"a\":", 1000, NULL), -1);
    ck_assert_int_eq(merge("{\"a\":", "{\"a\":1}", 1000, NULL), -1);
    ck_assert_int_eq(merge("", "{}", 1000, NULL), -1);
    ck_assert_int_eq(merge("{}", "", 1000, NULL), -1);
    ck_assert_int_eq(merge("{}", "{\"a\":1} x", 1000, NULL), -1);
    ck_assert_int_eq(merge("{}", "{\"a\":\"\xff\"}", 1000, NULL), -1); /* not UTF-8 */
}
END_TEST

/* {"a":"bcd"} is 11 bytes: 11 fits, 10 does not. */
START_TEST(max_len)
{
    ck_assert_int_eq(merge("{}", "{\"a\":\"bcd\"}", 11, "{\"a\":\"bcd\"}"), 0);
    ck_assert_int_eq(merge("{}", "{\"a\":\"bcd\"}", 10, NULL), -2);
    ck_assert_int_eq(merge("{\"big\":\"0123456789\"}", "{\"big\":null}", 2, "{}"), 0);
    ck_assert_int_eq(merge("{\"big\":\"0123456789\"}", "{\"x\":1}", 25, NULL), -2);
}
END_TEST

/* Members the patch does not touch come back as the client wrote them. */
START_TEST(numbers_and_strings_keep_their_value)
{
    ck_assert_int_eq(merge("{\"p\":19.99,\"q\":0.1,\"r\":0.30000000000000004,\"s\":1.0,"
                           "\"t\":-0.0,\"u\":1e300,\"v\":-9223372036854775807}",
                           "{}", 1000,
                           "{\"p\":19.99,\"q\":0.1,\"r\":0.30000000000000004,\"s\":1.0,"
                           "\"t\":-0.0,\"u\":1e+300,\"v\":-9223372036854775807}"),
                     0);
    ck_assert_int_eq(merge("{\"s\":\"q\\\"b\\\\s/\\n\\t\\u0001\\u00e9\\u20ac\"}", "{\"b\":true}",
                           1000, "{\"s\":\"q\\\"b\\\\s/\\n\\t\\u0001\xc3\xa9\xe2\x82\xac\","
                                 "\"b\":true}"),
                     0);
    ck_assert_int_eq(merge("{}", "{\"f\":false,\"n\":{\"x\":[null,{}]}}", 1000,
                           "{\"f\":false,\"n\":{\"x\":[null,{}]}}"),
                     0);
}
END_TEST

/* jansson keeps the last of duplicate members, and so do we. */
START_TEST(duplicate_members)
{
    ck_assert_int_eq(merge("{\"a\":1,\"a\":2}", "{\"b\":3}", 1000, "{\"a\":2,\"b\":3}"), 0);
}
END_TEST

/* The writer on its own, for callers that hold a json_t (the API's create and PATCH). */
START_TEST(dump)
{
    char *out = NULL;
    size_t len = 0;
    json_t *v = json_loads("{\"price\": 19.99, \"tags\": [\"a\", 2, null]}", 0, NULL);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(json_merge_dump(v, 1000, &out, &len), 0);
    ck_assert_str_eq(out, "{\"price\":19.99,\"tags\":[\"a\",2,null]}");
    ck_assert_uint_eq(len, strlen(out));
    free(out);
    out = NULL;
    ck_assert_int_eq(json_merge_dump(v, len - 1, &out, &len), -2);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(json_merge_dump(NULL, 1000, &out, &len), -1);
    json_decref(v);
    v = json_string("");
    ck_assert_int_eq(json_merge_dump(v, 2, &out, &len), 0);
    ck_assert_str_eq(out, "\"\"");
    free(out);
    json_decref(v);
}
END_TEST

Suite *
json_merge_suite(void)
{
    Suite *s = suite_create("json_merge");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, rfc7396_object_patches, 0,
                        (int)(sizeof rfc_examples / sizeof rfc_examples[0]));
    tcase_add_test(tc, rfc7396_non_object_patches);
    tcase_add_test(tc, rfc7396_section3);
    tcase_add_test(tc, invalid_json);
    tcase_add_test(tc, max_len);
    tcase_add_test(tc, numbers_and_strings_keep_their_value);
    tcase_add_test(tc, duplicate_members);
    tcase_add_test(tc, dump);
    suite_add_tcase(s, tc);
    return s;
}
