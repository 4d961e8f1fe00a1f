/* util: the small helpers that several modules share. */
#include <string.h>

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

Suite *
util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_test(tc, hex_digits);
    suite_add_tcase(s, tc);
    return s;
}
