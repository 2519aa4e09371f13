/* Structured log lines (issue 14): fields beside msg in JSON, the
 * message alone in text, and no line broken by a peer's bytes in a field
 * or by its length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/log.h"

/* Runs one event into a temporary file and returns what was written
 * (the caller frees it). */
static char *capture(int json, const struct sl_log_field *fields, size_t n,
                     const char *msg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    struct sl_log log = {.level = SL_LOG_INFO, .json = json, .out = f};
    sl_log_event(&log, SL_LOG_INFO, fields, n, "%s", msg);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    char *buf = calloc(1, (size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    /* Always exactly one line. */
    assert_ptr_equal(strchr(buf, '\n'), buf + len - 1);
    return buf;
}

static void test_json_fields_are_members(void **state)
{
    (void)state;
    char *line = capture(1, SL_LOG_FIELDS(SL_LOG_STR("route", "ssh"),
                                          SL_LOG_STR("client",
                                                     "127.0.0.1:5000"),
                                          SL_LOG_STR("target", NULL),
                                          SL_LOG_NUM("bytes", 12345),
                                          SL_LOG_STR("reason", "acl")),
                         "connection refused");
    json_error_t e;
    json_t *j = json_loads(line, 0, &e);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "connection refused");
    assert_string_equal(json_string_value(json_object_get(j, "level")),
                        "info");
    assert_string_equal(json_string_value(json_object_get(j, "route")), "ssh");
    assert_string_equal(json_string_value(json_object_get(j, "client")),
                        "127.0.0.1:5000");
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 12345);
    assert_string_equal(json_string_value(json_object_get(j, "reason")),
                        "acl");
    /* A NULL string is left out, not written as "" or null. */
    assert_null(json_object_get(j, "target"));
    json_decref(j);
    free(line);
}

static void test_json_field_values_are_escaped(void **state)
{
    (void)state;
    char *line = capture(1, SL_LOG_FIELDS(SL_LOG_STR("target",
                                                     "a\"b\\c\n\x01}"),
                                          SL_LOG_STR("Bad-Key", "x"),
                                          SL_LOG_STR("k\"", "y")),
                         "m");
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "target")),
                        "a\"b\\c\n\x01}");
    /* Keys that are not plain words are never written. */
    assert_int_equal(json_object_size(j), 4);
    json_decref(j);
    free(line);
}

static void test_text_lines_are_the_message(void **state)
{
    (void)state;
    char *line = capture(0, SL_LOG_FIELDS(SL_LOG_STR("route", "web"),
                                          SL_LOG_NUM("bytes", 7),
                                          SL_LOG_STR("target", "x\ny")),
                         "closed\nforged");
    assert_non_null(strstr(line, " info  closed\\nforged\n"));
    assert_null(strstr(line, "route="));
    free(line);
}

static void test_a_long_json_line_still_parses(void **state)
{
    (void)state;
    char *big = malloc(6000);
    assert_non_null(big);
    memset(big, 'x', 5999);
    big[5999] = '\0';
    char *line = capture(1, SL_LOG_FIELDS(SL_LOG_STR("a", big),
                                          SL_LOG_STR("b", big)),
                         "big");
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    free(line);
    free(big);
}

static void test_below_the_level_nothing_is_written(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    struct sl_log log = {.level = SL_LOG_WARN, .json = 1, .out = f};
    sl_log_event(&log, SL_LOG_INFO,
                 SL_LOG_FIELDS(SL_LOG_STR("route", "r")), "quiet");
    assert_int_equal(ftell(f), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_fields_are_members),
        cmocka_unit_test(test_json_field_values_are_escaped),
        cmocka_unit_test(test_text_lines_are_the_message),
        cmocka_unit_test(test_a_long_json_line_still_parses),
        cmocka_unit_test(test_below_the_level_nothing_is_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
