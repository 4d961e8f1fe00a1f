/* token: base64url encoding, random ids and tokens, hashing, comparisons. */
#include <string.h>

#include "suites.h"
#include "token.h"

START_TEST(base64url_vectors)
{
    /* RFC 4648 section 10 vectors, in the URL alphabet and without padding. */
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},         {"f", "Zg"},         {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char out[32];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        size_t n = token_base64url((const uint8_t *)v[i].in, strlen(v[i].in), out);
        ck_assert_str_eq(out, v[i].out);
        ck_assert_uint_eq(n, strlen(v[i].out));
    }
    const uint8_t url[] = {0xfb, 0xff, 0xbf}; /* '+' '/' in standard base64 */
    token_base64url(url, sizeof url, out);
    ck_assert_str_eq(out, "-_-_");
}
END_TEST

START_TEST(new_tokens_and_ids)
{
    char a[TOKEN_CHARS + 1], b[TOKEN_CHARS + 1], id[ID_CHARS + 1];
    ck_assert_int_eq(token_new(a), 0);
    ck_assert_int_eq(token_new(b), 0);
    /* The id is the hash's first 16 bytes in base64url; the rest of the hash is not in it. */
    token_id_of_hash((const uint8_t *)"0123456789abcdefXXXXXXXXXXXXXXXX", id);
    ck_assert_str_eq(id, "MDEyMzQ1Njc4OWFiY2RlZg");
    ck_assert_uint_eq(strlen(a), 43);
    ck_assert_uint_eq(strlen(id), 22);
    ck_assert_str_ne(a, b);
    ck_assert(token_is_wellformed(a, strlen(a)));
    ck_assert(token_id_is_wellformed(id, strlen(id)));
    ck_assert(!token_is_wellformed(id, strlen(id)));
    ck_assert(!token_id_is_wellformed("abc+efghijklmnopqrstuv", 22));
    ck_assert(!token_id_is_wellformed("abcdefghijklmnopqrstu", 21));
}
END_TEST

START_TEST(sha256)
{
    uint8_t h[TOKEN_HASH_BYTES];
    token_hash("abc", 3, h);
    static const uint8_t want[] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                   0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                   0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                   0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    ck_assert_mem_eq(h, want, sizeof want);
}
END_TEST

START_TEST(equal)
{
    ck_assert(token_equal("secret", 6, "secret", 6));
    ck_assert(!token_equal("secret", 6, "secreT", 6));
    ck_assert(!token_equal("secret", 6, "secret!", 7));
    ck_assert(token_equal("", 0, "", 0));
}
END_TEST

Suite *
token_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_add_test(tc, base64url_vectors);
    tcase_add_test(tc, new_tokens_and_ids);
    tcase_add_test(tc, sha256);
    tcase_add_test(tc, equal);
    suite_add_tcase(s, tc);
    return s;
}
