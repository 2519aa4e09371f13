/* The text logger's escaping (a peer's control bytes cannot forge a log
 * line) and the size and duration parsers every flag shares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"
#include "core/size.h"

static void test_escape_control_bytes(void **state)
{
    (void)state;
    char out[128];
    sl_log_escape("a\nb\r\tc\x1b[2J\x7f\x01 ok", out, sizeof(out));
    assert_string_equal(out, "a\\nb\\r\\tc\\x1b[2J\\x7f\\x01 ok");
    /* UTF-8 passes as it is. */
    sl_log_escape("caf\xc3\xa9", out, sizeof(out));
    assert_string_equal(out, "caf\xc3\xa9");
}

static void test_escape_never_cuts_an_escape(void **state)
{
    (void)state;
    char out[6];
    assert_int_equal(sl_log_escape("ab\x01zz", out, sizeof(out)), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(sl_log_escape("abc\n", out, sizeof(out)), 5);
    assert_string_equal(out, "abc\\n");
}

static void test_text_line_is_one_line(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    struct sl_log log = {.level = SL_LOG_INFO, .json = 0, .out = f};
    sl_info(&log, "hub says: %s", "bad\n2026-01-01T00:00:00.000Z error forged");
    rewind(f);
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "bad\\n2026"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
}

static void test_json_line_escapes_too(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    struct sl_log log = {.level = SL_LOG_INFO, .json = 1, .out = f};
    sl_info(&log, "x%sy", "\n\x1b\"");
    rewind(f);
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "x\\u000a\\u001b\\\"y"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
}

static void test_size_units_follow_design(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"0", 0},
        {"100", 100},
        {"100B", 100},
        {"1kB", 1024},
        {"1.5K", 1536},
        {"10MB", 10240000}, /* DESIGN section 6: the free plan */
        {"10 MB", 10240000},
        {"1M", 1024000},
        {"2GB", 2048000000},
        {"1TB", 1024000000000ull},
        {"1KiB", 1024},
        {"1MiB", 1048576},
        {"1GiB", 1073741824},
        {"1TiB", 1099511627776ull},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        assert_int_equal(sl_size_parse(ok[i].text, &v), 0);
        assert_true(v == ok[i].bytes);
    }
    static const char *const bad[] = {"", "MB", "-1", "1..5MB", "10XB",
                                      "inf", "nan", "0x10", " 10", "1e3",
                                      "99999999999TB", "10mb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        assert_int_equal(sl_size_parse(bad[i], &v), SL_EPARSE);
        assert_true(v == 7);
    }
}

static void test_durations(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(sl_duration_parse_s("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(sl_duration_parse_s("3s", &v), 0);
    assert_true(v == 3);
    assert_int_equal(sl_duration_parse_s("7d", &v), 0);
    assert_true(v == 604800);
    assert_int_equal(sl_duration_parse_s("2w", &v), 0);
    assert_true(v == 1209600);
    assert_int_equal(sl_duration_parse_s("12h", &v), 0);
    assert_true(v == 43200);
    static const char *const bad[] = {"", "d", "-1", "1x", "1dd", " 1",
                                      "99999999999w"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_duration_parse_s(bad[i], &v), SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_control_bytes),
        cmocka_unit_test(test_escape_never_cuts_an_escape),
        cmocka_unit_test(test_text_line_is_one_line),
        cmocka_unit_test(test_json_line_escapes_too),
        cmocka_unit_test(test_size_units_follow_design),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
