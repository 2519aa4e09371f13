/* PROXY v2 TLV chain bounds, exactly at the edge: a TLV whose value ends
 * on the block's last byte is taken, one that claims 1, 2 or 3 bytes more
 * is refused (the chain must fill the block exactly; a length that
 * overruns it is a lie about the header). Found by scripts/mutants.sh
 * (mutant proto-v2-tlv-bound): the older tests overran by far more. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "proto/proxy_proto.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 PROXY TCP4 header 127.0.0.1:1 -> 127.0.0.2:2 whose TLV block is
 * one TLV of type 0x04 (NOOP) carrying vlen bytes but declaring
 * vlen + over. Returns the header's length. */
static size_t hdr_one_tlv(uint8_t *b, size_t vlen, size_t over)
{
    size_t body = 12 + 3 + vlen;
    memcpy(b, v2_sig, 12);
    b[12] = 0x21; /* version 2, PROXY */
    b[13] = 0x11; /* TCP over IPv4 */
    b[14] = (uint8_t)(body >> 8);
    b[15] = (uint8_t)body;
    memcpy(b + 16, "\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x01\x00\x02", 12);
    b[28] = 0x04;
    b[29] = (uint8_t)((vlen + over) >> 8);
    b[30] = (uint8_t)(vlen + over);
    memset(b + 31, 'v', vlen);
    return 16 + body;
}

static void test_tlv_ending_on_last_byte_taken(void **state)
{
    (void)state;
    uint8_t b[SL_PP_MAX_HEADER + 64];
    struct sl_pp_info info;
    for (size_t vlen = 0; vlen < 40; vlen += 13) {
        memset(b, 'P', sizeof(b)); /* payload after the header */
        size_t n = hdr_one_tlv(b, vlen, 0);
        assert_int_equal(sl_pp_parse(b, n + 8, &info), (int)n);
        assert_int_equal(info.has_addrs, 1);
    }
}

static void test_tlv_overrunning_by_one_to_three_refused(void **state)
{
    (void)state;
    uint8_t b[SL_PP_MAX_HEADER + 64];
    struct sl_pp_info info;
    for (size_t vlen = 0; vlen < 40; vlen += 13) {
        for (size_t over = 1; over <= 3; over++) {
            memset(b, 'P', sizeof(b));
            size_t n = hdr_one_tlv(b, vlen, over);
            /* Payload bytes follow: the overrun must not borrow them. */
            assert_int_equal(sl_pp_parse(b, n + 8, &info), SL_EPARSE);
        }
    }
}

static void test_second_tlv_overrunning_by_one_refused(void **state)
{
    (void)state;
    uint8_t b[SL_PP_MAX_HEADER + 64];
    struct sl_pp_info info;
    memset(b, 'P', sizeof(b));
    /* Two TLVs: NOOP of 2 bytes, then NOOP of 4 bytes declared as 5. */
    size_t body = 12 + 3 + 2 + 3 + 4;
    size_t n = hdr_one_tlv(b, 2, 0);
    b[14] = (uint8_t)(body >> 8);
    b[15] = (uint8_t)body;
    const uint8_t second[] = {0x04, 0x00, 0x05, 'w', 'w', 'w', 'w'};
    memcpy(b + n, second, sizeof(second));
    n += sizeof(second);
    assert_int_equal(sl_pp_parse(b, n + 8, &info), SL_EPARSE);
    b[n - 5] = 0x04; /* declared as 4: the chain fills the block */
    assert_int_equal(sl_pp_parse(b, n + 8, &info), (int)n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlv_ending_on_last_byte_taken),
        cmocka_unit_test(test_tlv_overrunning_by_one_to_three_refused),
        cmocka_unit_test(test_second_tlv_overrunning_by_one_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
