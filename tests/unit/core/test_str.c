#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/str.h"

static int decode(const char *s, char *buf, size_t cap, int strict)
{
    return sl_pct_decode(s, strlen(s), buf, cap, strict);
}

static void test_pct_decode_plain_and_escapes(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(decode("abc", buf, sizeof(buf), 1), 0);
    assert_string_equal(buf, "abc");
    assert_int_equal(decode("a+b%20c%26d%3De%25", buf, sizeof(buf), 1), 0);
    assert_string_equal(buf, "a b c&d=e%");
    assert_int_equal(decode("%7e%7E", buf, sizeof(buf), 1), 0);
    assert_string_equal(buf, "~~");
    assert_int_equal(decode("", buf, sizeof(buf), 1), 0);
    assert_string_equal(buf, "");
}

/* A token must not be guessed at: strict refuses what lenient keeps. */
static void test_pct_decode_malformed(void **state)
{
    (void)state;
    char buf[64];
    const char *bad[] = {"%", "%4", "%zz", "a%0", "%00", "x%g1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode(bad[i], buf, sizeof(buf), 1), SL_EPARSE);
        assert_int_equal(decode(bad[i], buf, sizeof(buf), 0), 0);
        assert_string_equal(buf, bad[i]);
    }
}

static void test_pct_decode_bounds(void **state)
{
    (void)state;
    char buf[4];
    assert_int_equal(decode("abc", buf, sizeof(buf), 1), 0);
    assert_int_equal(decode("abcd", buf, sizeof(buf), 1), SL_ETOOBIG);
    assert_int_equal(decode("%41%42%43", buf, sizeof(buf), 1), 0);
    assert_string_equal(buf, "ABC");
    assert_int_equal(sl_pct_decode("a", 1, buf, 0, 1), SL_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode_plain_and_escapes),
        cmocka_unit_test(test_pct_decode_malformed),
        cmocka_unit_test(test_pct_decode_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
