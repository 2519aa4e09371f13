#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "core/fmt.h"

static void bytes_is(uint64_t n, const char *want)
{
    char out[SL_FMT_MAX];
    assert_int_equal(sl_fmt_bytes(n, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void test_bytes(void **state)
{
    bytes_is(0, "0 B");
    bytes_is(1, "1 B");
    bytes_is(999, "999 B");
    bytes_is(1000, "1.0 kB");
    bytes_is(1234, "1.2 kB");
    bytes_is(1250, "1.3 kB");
    bytes_is(9949, "9.9 kB");
    bytes_is(9950, "10 kB");
    bytes_is(12345, "12 kB");
    bytes_is(340000, "340 kB");
    bytes_is(999499, "999 kB");
    bytes_is(999500, "1.0 MB");
    bytes_is(1200000, "1.2 MB");
    bytes_is(10240000, "10 MB");
    bytes_is(3400000000ull, "3.4 GB");
    bytes_is(1000000000000ull, "1.0 TB");
    bytes_is(UINT64_MAX, "18 EB");
}

static void test_rate(void **state)
{
    char out[SL_FMT_MAX];
    assert_int_equal(sl_fmt_rate(1.2e6, out, sizeof(out)), 0);
    assert_string_equal(out, "1.2 MB/s");
    assert_int_equal(sl_fmt_rate(0, out, sizeof(out)), 0);
    assert_string_equal(out, "0 B/s");
    assert_int_equal(sl_fmt_rate(-5, out, sizeof(out)), 0);
    assert_string_equal(out, "0 B/s");
    assert_int_equal(sl_fmt_rate(NAN, out, sizeof(out)), 0);
    assert_string_equal(out, "0 B/s");
    assert_int_equal(sl_fmt_rate(INFINITY, out, sizeof(out)), 0);
    assert_string_equal(out, "18 EB/s");
    assert_int_equal(sl_fmt_rate(999.4, out, sizeof(out)), 0);
    assert_string_equal(out, "999 B/s");
}

static void ago_is(int64_t s, const char *want)
{
    char out[SL_FMT_MAX];
    assert_int_equal(sl_fmt_ago(s, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void test_ago(void **state)
{
    ago_is(-1, "never");
    ago_is(INT64_MIN, "never");
    ago_is(0, "just now");
    ago_is(4, "just now");
    ago_is(5, "5s ago");
    ago_is(42, "42s ago");
    ago_is(59, "59s ago");
    ago_is(60, "1m ago");
    ago_is(300, "5m ago");
    ago_is(3599, "59m ago");
    ago_is(3600, "1h ago");
    ago_is(3 * 3600 + 59 * 60, "3h ago");
    ago_is(86400, "1d ago");
    ago_is(2 * 86400 + 5, "2d ago");
    ago_is(INT64_MAX, "106751991167300d ago");
}

static void test_traffic(void **state)
{
    char out[64];
    assert_int_equal(sl_fmt_traffic(1200000, 340000, out, sizeof(out)), 0);
    assert_string_equal(out, "(\xe2\x86\x93 1.2 MB) (\xe2\x86\x91 340 kB)");
    assert_string_equal(out, "(↓ 1.2 MB) (↑ 340 kB)");
    assert_int_equal(sl_fmt_traffic(0, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "(↓ 0 B) (↑ 0 B)");
}

static void test_small_buffers(void **state)
{
    char out[4];
    assert_int_equal(sl_fmt_bytes(1234, out, sizeof(out)), SL_ETOOBIG);
    assert_int_equal(strlen(out), 3);
    assert_int_equal(sl_fmt_ago(42, out, sizeof(out)), SL_ETOOBIG);
    assert_int_equal(sl_fmt_traffic(1, 1, out, sizeof(out)), SL_ETOOBIG);
    assert_int_equal(sl_fmt_bytes(1, out, 0), SL_ETOOBIG);
    assert_int_equal(sl_fmt_bytes(1, NULL, 0), UV_EINVAL);
    char big[SL_FMT_MAX];
    assert_int_equal(sl_fmt_rate(1e300, big, sizeof(big)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_ago),
        cmocka_unit_test(test_traffic),
        cmocka_unit_test(test_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
