#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "tunnel/hijack.h"

#define ID "ab1234567890"
#define FP "123e4567-e89b-42d3-a456-426614174000"

static int parse(const char *s, struct sl_hijack *h)
{
    return sl_hijack_parse(s, strlen(s), h);
}

static void test_parse_ok(void **state)
{
    struct sl_hijack h;
    assert_int_equal(parse(ID "|" FP, &h), 0);
    assert_string_equal(h.identity, ID);
    assert_string_equal(h.fingerprint, FP);
    assert_int_equal(parse("  \t" ID "|" FP " \t", &h), 0);
    assert_string_equal(h.identity, ID);
    /* Not NUL-terminated: only len bytes are read. */
    char buf[64];
    memcpy(buf, ID "|" FP "XXXX", 53);
    assert_int_equal(sl_hijack_parse(buf, 49, &h), 0);
    assert_string_equal(h.fingerprint, FP);
}

static void test_parse_hostile(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "|",
        ID,
        ID "|",
        "|" FP,
        ID FP,
        ID " |" FP,
        ID "| " FP,
        ID "||" FP,
        ID "|" FP "|",
        ID "|" FP "x",
        "x" ID "|" FP,
        "AB1234567890|" FP,
        "1b1234567890|" FP,
        "ab123456789|" FP,
        ID "|123E4567-E89B-42D3-A456-426614174000",
        ID "|123e4567-e89b-12d3-a456-426614174000",
        ID "|123e4567-e89b-42d3-7456-426614174000",
        FP "|" ID,
        "<" ID "|" FP ">",
        ID "\r\n|" FP,
        ID "|" FP "\r\n",
    };
    struct sl_hijack h;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&h, 'x', sizeof(h));
        if (parse(bad[i], &h) != SL_EPARSE)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_string_equal(h.identity, "");
        assert_string_equal(h.fingerprint, "");
    }
    char nul[49];
    memcpy(nul, ID "|" FP, 49);
    nul[20] = '\0';
    assert_int_equal(sl_hijack_parse(nul, 49, &h), SL_EPARSE);
    assert_int_equal(sl_hijack_parse(NULL, 0, &h), SL_EPARSE);
}

static void test_format(void **state)
{
    struct sl_hijack h = {ID, FP};
    struct sl_hijack back;
    char out[SL_HIJACK_MAX];
    assert_int_equal(sl_hijack_format(&h, out, sizeof(out)), 0);
    assert_string_equal(out, ID "|" FP);
    assert_int_equal(parse(out, &back), 0);
    assert_memory_equal(&h, &back, sizeof(h));
    assert_int_equal(sl_hijack_format(&h, out, sizeof(out) - 1), SL_ETOOBIG);
    struct sl_hijack bad = {"AB1234567890", FP};
    assert_int_equal(sl_hijack_format(&bad, out, sizeof(out)), SL_EPARSE);
    struct sl_hijack bad2 = {ID, "nope"};
    assert_int_equal(sl_hijack_format(&bad2, out, sizeof(out)), SL_EPARSE);
}

static void test_bridge_id(void **state)
{
    (void)state;
    char id[SL_UUID_LEN + 1];
    const char *ok = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert_int_equal(sl_bridge_id_parse(ok, strlen(ok), id), 0);
    assert_string_equal(id, ok);
    const char *padded = " \t0f8fad5b-d9cb-469f-a165-70867728950e ";
    assert_int_equal(sl_bridge_id_parse(padded, strlen(padded), id), 0);
    assert_string_equal(id, ok);
    static const char *const bad[] = {
        "", "0f8fad5b-d9cb-469f-a165-70867728950", /* short */
        "0f8fad5b-d9cb-469f-a165-70867728950e0",    /* long */
        "0F8FAD5B-D9CB-469F-A165-70867728950E",     /* upper case */
        "0f8fad5b-d9cb-369f-a165-70867728950e",     /* not v4 */
        "0f8fad5b-d9cb-469f-a165-70867728950e\r\nX: y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_bridge_id_parse(bad[i], strlen(bad[i]), id),
                         SL_EPARSE);
        assert_string_equal(id, "");
    }
    assert_int_equal(sl_bridge_id_parse(NULL, 0, id), SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_bridge_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
