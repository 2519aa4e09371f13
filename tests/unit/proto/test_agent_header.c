#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "proto/agent_header.h"

/* Rewrites the checksum of a header changed by hand, so a test reaches
 * the field it aims at instead of the CRC check. */
static void reseal(uint8_t *h)
{
    uint32_t crc = sl_agent_crc32c(h, SL_AGENT_HDR_LEN - 4);
    h[268] = (uint8_t)(crc >> 24);
    h[269] = (uint8_t)(crc >> 16);
    h[270] = (uint8_t)(crc >> 8);
    h[271] = (uint8_t)crc;
}

static void make(uint8_t *out, const char *host, uint16_t port,
                 enum sl_agent_proto proto, unsigned flags)
{
    struct sl_agent_hdr h = {.flags = flags, .proto = proto, .port = port};
    snprintf(h.host, sizeof(h.host), "%s", host);
    assert_int_equal(sl_agent_hdr_encode(&h, out), 0);
}

static void expect_bad(const uint8_t *h, const char *want_why)
{
    const char *why = NULL;
    assert_int_equal(sl_agent_hdr_decode(h, SL_AGENT_HDR_LEN, NULL, &why),
                     SL_EPARSE);
    assert_non_null(why);
    if (want_why != NULL)
        assert_string_equal(why, want_why);
}

static void test_crc32c_check_value(void **state)
{
    (void)state;
    /* The catalogue's check value for CRC-32C. */
    assert_int_equal(sl_agent_crc32c((const uint8_t *)"123456789", 9),
                     0xe3069283u);
    assert_int_equal(sl_agent_crc32c(NULL, 0), 0);
}

static void test_layout(void **state)
{
    (void)state;
    uint8_t h[SL_AGENT_HDR_LEN];
    make(h, "db.internal", 5432, SL_AGENT_PROTO_TCP, 0);
    /* Byte by byte as docs/protocol.md has it. */
    assert_memory_equal(h, "SLST", 4);
    assert_int_equal(h[4], 1);
    assert_int_equal(h[5], 0);
    assert_int_equal(h[6], 1);
    assert_int_equal(h[7], 0);
    assert_int_equal(h[8], 0);
    assert_int_equal(h[9], 11);
    assert_int_equal(h[10], 5432 >> 8);
    assert_int_equal(h[11], 5432 & 0xff);
    assert_memory_equal(h + 12, "db.internal", 11);
    for (size_t i = 12 + 11; i < 268; i++)
        assert_int_equal(h[i], 0);
    uint32_t crc = sl_agent_crc32c(h, 268);
    assert_int_equal(h[268], crc >> 24);
    assert_int_equal(h[271], crc & 0xff);
}

static void test_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        uint16_t port;
        enum sl_agent_proto proto;
        unsigned flags;
    } cases[] = {
        {"127.0.0.1", 22, SL_AGENT_PROTO_TCP, 0},
        {"::1", 53, SL_AGENT_PROTO_UDP, 0},
        {"fe80::1", 65535, SL_AGENT_PROTO_UDP, 0},
        {"my_host-1.example", 1, SL_AGENT_PROTO_TCP, SL_AGENT_FLAG_PROBE},
        {"", 0, SL_AGENT_PROTO_TCP, SL_AGENT_FLAG_PROBE},
        {"", 0, SL_AGENT_PROTO_UDP, SL_AGENT_FLAG_PROBE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[SL_AGENT_HDR_LEN + 8];
        struct sl_agent_hdr got;
        make(h, cases[i].host, cases[i].port, cases[i].proto, cases[i].flags);
        memset(h + SL_AGENT_HDR_LEN, 0xAA, 8); /* payload after: ignored */
        assert_int_equal(sl_agent_hdr_decode(h, sizeof(h), &got, NULL), 0);
        assert_string_equal(got.host, cases[i].host);
        assert_int_equal(got.port, cases[i].port);
        assert_int_equal(got.proto, cases[i].proto);
        assert_int_equal(got.flags, cases[i].flags);
    }
}

static void test_longest_host(void **state)
{
    (void)state;
    char host[SL_AGENT_HOST_MAX + 1];
    memset(host, 'a', SL_AGENT_HOST_MAX);
    host[SL_AGENT_HOST_MAX] = '\0';
    uint8_t h[SL_AGENT_HDR_LEN];
    struct sl_agent_hdr got;
    make(h, host, 80, SL_AGENT_PROTO_TCP, 0);
    assert_int_equal(h[267], 0); /* one zero of padding, always */
    assert_int_equal(sl_agent_hdr_decode(h, sizeof(h), &got, NULL), 0);
    assert_int_equal(strlen(got.host), SL_AGENT_HOST_MAX);
}

static void test_incomplete(void **state)
{
    (void)state;
    uint8_t h[SL_AGENT_HDR_LEN];
    make(h, "a", 1, SL_AGENT_PROTO_TCP, 0);
    for (size_t n = 0; n < SL_AGENT_HDR_LEN; n++)
        assert_int_equal(sl_agent_hdr_decode(h, n, NULL, NULL),
                         SL_EINCOMPLETE);
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t h[SL_AGENT_HDR_LEN];

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[20] ^= 1; /* a flipped bit anywhere the CRC covers */
    expect_bad(h, "checksum mismatch");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[271] ^= 0x80; /* ... or in the CRC itself */
    expect_bad(h, "checksum mismatch");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[0] = 'X';
    reseal(h);
    expect_bad(h, "not a sluice-stream header (magic)");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[4] = 2;
    reseal(h);
    expect_bad(h, "unsupported version");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[8] = 300 >> 8; /* host length 300 */
    h[9] = 300 & 0xff;
    reseal(h);
    expect_bad(h, "host length over 255");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[10] = h[11] = 0; /* port 0 */
    reseal(h);
    expect_bad(h, "port 0");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[5] = 0x02;
    reseal(h);
    expect_bad(h, "unknown flag");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[6] = 3;
    reseal(h);
    expect_bad(h, "unknown protocol");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[7] = 1;
    reseal(h);
    expect_bad(h, "reserved byte not zero");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[12 + 2] = '/';
    reseal(h);
    expect_bad(h, "host holds a character not allowed");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[12 + 2] = '\0'; /* a NUL inside the length */
    reseal(h);
    expect_bad(h, "host holds a character not allowed");

    make(h, "target", 80, SL_AGENT_PROTO_TCP, 0);
    h[200] = 'x';
    reseal(h);
    expect_bad(h, "host padding not zero");

    make(h, "", 0, SL_AGENT_PROTO_TCP, SL_AGENT_FLAG_PROBE);
    h[5] = 0; /* no host is only for probes */
    reseal(h);
    expect_bad(h, "no host");

    make(h, "", 0, SL_AGENT_PROTO_TCP, SL_AGENT_FLAG_PROBE);
    h[11] = 7;
    reseal(h);
    expect_bad(h, "a port without a host");
}

static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t out[SL_AGENT_HDR_LEN];
    struct sl_agent_hdr h = {.proto = SL_AGENT_PROTO_TCP, .port = 80};
    snprintf(h.host, sizeof(h.host), "a b");
    assert_int_equal(sl_agent_hdr_encode(&h, out), SL_EPARSE);
    snprintf(h.host, sizeof(h.host), "ok");
    h.port = 0;
    assert_int_equal(sl_agent_hdr_encode(&h, out), SL_EPARSE);
    h.port = 80;
    h.proto = (enum sl_agent_proto)9;
    assert_int_equal(sl_agent_hdr_encode(&h, out), SL_EPARSE);
    h.proto = SL_AGENT_PROTO_UDP;
    h.flags = 0x80;
    assert_int_equal(sl_agent_hdr_encode(&h, out), SL_EPARSE);
    h.flags = 0;
    h.host[0] = '\0';
    assert_int_equal(sl_agent_hdr_encode(&h, out), SL_EPARSE);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(sl_agent_status_name(SL_AGENT_OK), "ok");
    assert_string_equal(sl_agent_status_name(SL_AGENT_REFUSED), "refused");
    assert_string_equal(sl_agent_status_name(SL_AGENT_DIAL_FAILED),
                        "dial failed");
    assert_string_equal(sl_agent_status_name(SL_AGENT_TIMEOUT), "timeout");
    assert_string_equal(sl_agent_status_name(SL_AGENT_BAD_HEADER),
                        "bad header");
    assert_string_equal(sl_agent_status_name(SL_AGENT_BUSY), "busy");
    assert_string_equal(sl_agent_status_name(200), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_longest_host),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
