#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tunnel/dgram.h"

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct sl_dgram d;
    int n = sl_dgram_encode(buf, sizeof(buf), SL_DGRAM_DATA, 0x01020304u,
                            "hello", 5);
    assert_int_equal(n, SL_DGRAM_HEADER + 5);
    static const uint8_t head[] = {0, 1, 2, 3, 4};
    assert_memory_equal(buf, head, sizeof(head));
    assert_int_equal(sl_dgram_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.type, SL_DGRAM_DATA);
    assert_int_equal(d.flow, 0x01020304u);
    assert_int_equal(d.len, 5);
    assert_memory_equal(d.payload, "hello", 5);
    assert_ptr_equal(d.payload, buf + SL_DGRAM_HEADER);
}

static void test_empty_and_close(void **state)
{
    (void)state;
    uint8_t buf[SL_DGRAM_HEADER];
    struct sl_dgram d;
    /* An empty datagram is a datagram. */
    assert_int_equal(
        sl_dgram_encode(buf, sizeof(buf), SL_DGRAM_DATA, UINT32_MAX, NULL, 0),
        SL_DGRAM_HEADER);
    assert_int_equal(sl_dgram_decode(buf, sizeof(buf), &d), 0);
    assert_int_equal(d.type, SL_DGRAM_DATA);
    assert_int_equal(d.flow, UINT32_MAX);
    assert_int_equal(d.len, 0);
    assert_int_equal(
        sl_dgram_encode(buf, sizeof(buf), SL_DGRAM_CLOSE, 7, NULL, 0),
        SL_DGRAM_HEADER);
    assert_int_equal(sl_dgram_decode(buf, sizeof(buf), &d), 0);
    assert_int_equal(d.type, SL_DGRAM_CLOSE);
    assert_int_equal(d.flow, 7);
    /* The header alone, as sl_dgram_header writes it. */
    uint8_t h[SL_DGRAM_HEADER];
    sl_dgram_header(h, SL_DGRAM_CLOSE, 7);
    assert_memory_equal(h, buf, sizeof(h));
}

static void test_limits(void **state)
{
    (void)state;
    size_t cap = SL_DGRAM_HEADER + SL_DGRAM_MAX + 1;
    uint8_t *buf = calloc(1, cap);
    uint8_t *payload = calloc(1, SL_DGRAM_MAX + 1);
    struct sl_dgram d;
    assert_non_null(buf);
    assert_non_null(payload);
    assert_int_equal(
        sl_dgram_encode(buf, cap, SL_DGRAM_DATA, 1, payload, SL_DGRAM_MAX),
        SL_DGRAM_HEADER + SL_DGRAM_MAX);
    assert_int_equal(sl_dgram_decode(buf, SL_DGRAM_HEADER + SL_DGRAM_MAX, &d),
                     0);
    assert_int_equal(d.len, SL_DGRAM_MAX);
    /* One byte more: refused both ways. */
    assert_int_equal(
        sl_dgram_encode(buf, cap, SL_DGRAM_DATA, 1, payload, SL_DGRAM_MAX + 1),
        SL_ETOOBIG);
    assert_int_equal(sl_dgram_decode(buf, cap, &d), SL_ETOOBIG);
    assert_null(d.payload);
    /* No room for the header and payload. */
    assert_int_equal(
        sl_dgram_encode(buf, SL_DGRAM_HEADER + 2, SL_DGRAM_DATA, 1, "abc", 3),
        SL_ETOOBIG);
    free(buf);
    free(payload);
}

static void test_hostile(void **state)
{
    (void)state;
    struct sl_dgram d;
    uint8_t buf[16];
    static const uint8_t short_msg[] = {0, 0, 0, 1};
    assert_int_equal(sl_dgram_decode(short_msg, sizeof(short_msg), &d),
                     SL_EPARSE);
    assert_int_equal(sl_dgram_decode(short_msg, 0, &d), SL_EPARSE);
    static const uint8_t unknown[] = {2, 0, 0, 0, 1, 'x'};
    assert_int_equal(sl_dgram_decode(unknown, sizeof(unknown), &d), SL_EPARSE);
    static const uint8_t high[] = {0x80, 0, 0, 0, 1};
    assert_int_equal(sl_dgram_decode(high, sizeof(high), &d), SL_EPARSE);
    static const uint8_t close_data[] = {1, 0, 0, 0, 1, 'x'};
    assert_int_equal(sl_dgram_decode(close_data, sizeof(close_data), &d),
                     SL_EPARSE);
    assert_int_equal(d.flow, 0);
    assert_int_equal(
        sl_dgram_encode(buf, sizeof(buf), SL_DGRAM_CLOSE, 1, "x", 1),
        SL_EPARSE);
    assert_int_equal(
        sl_dgram_encode(buf, sizeof(buf), (enum sl_dgram_type)9, 1, NULL, 0),
        SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_and_close),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
