/* The multiplexed connection's frames (mux/frame.h): headers in network
 * order, every type's payload rules, the bounds, and the encoders reading
 * back as they wrote. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "mux/frame.h"

static void test_header_layout(void **state)
{
    (void)state;
    uint8_t h[SL_MUX_HEADER];
    sl_mux_header(h, SL_MUX_DATA, 0x0102, 0x03040506u, 0x00000708u);
    static const uint8_t want[] = {2, 2, 1, 2, 3, 4, 5, 6, 0, 0, 7, 8};
    assert_memory_equal(h, want, sizeof(want));
}

static void test_parse_whole_and_partial(void **state)
{
    (void)state;
    uint8_t buf[SL_MUX_HEADER + 5 + SL_MUX_HEADER];
    sl_mux_header(buf, SL_MUX_DATA, 0, 7, 5);
    memcpy(buf + SL_MUX_HEADER, "hello", 5);
    sl_mux_header(buf + SL_MUX_HEADER + 5, SL_MUX_FIN, 0, 7, 0);
    struct sl_mux_frame f;
    /* Every prefix shorter than the first frame is incomplete. */
    for (size_t n = 0; n < SL_MUX_HEADER + 5; n++)
        assert_int_equal(sl_mux_parse(buf, n, &f), SL_EINCOMPLETE);
    assert_int_equal(sl_mux_parse(buf, sizeof(buf), &f), SL_MUX_HEADER + 5);
    assert_int_equal(f.type, SL_MUX_DATA);
    assert_int_equal(f.stream, 7);
    assert_int_equal(f.length, 5);
    assert_ptr_equal(f.payload, buf + SL_MUX_HEADER);
    assert_int_equal(sl_mux_parse(buf + SL_MUX_HEADER + 5, SL_MUX_HEADER, &f),
                     SL_MUX_HEADER);
    assert_int_equal(f.type, SL_MUX_FIN);
}

static void test_bounds(void **state)
{
    (void)state;
    uint8_t h[SL_MUX_HEADER];
    struct sl_mux_frame f;
    sl_mux_header(h, SL_MUX_DATA, 0, 1, SL_MUX_FRAME_MAX);
    assert_int_equal(sl_mux_parse(h, sizeof(h), &f), SL_EINCOMPLETE);
    sl_mux_header(h, SL_MUX_DATA, 0, 1, SL_MUX_FRAME_MAX + 1);
    assert_int_equal(sl_mux_parse(h, sizeof(h), &f), SL_ETOOBIG);
    sl_mux_header(h, SL_MUX_DATA, 0, 1, 0xffffffffu);
    assert_int_equal(sl_mux_parse(h, sizeof(h), &f), SL_ETOOBIG);
    /* Another version is refused from its first byte on. */
    h[0] = 1;
    assert_int_equal(sl_mux_parse(h, 1, &f), SL_EPARSE);
    assert_int_equal(sl_mux_parse(h, sizeof(h), &f), SL_EPARSE);
    /* "GET /" is not a frame. */
    assert_int_equal(sl_mux_parse((const uint8_t *)"GET /", 5, &f),
                     SL_EPARSE);
}

static int payload_of(const uint8_t *buf, size_t n, struct sl_mux_body *b)
{
    struct sl_mux_frame f;
    int rc = sl_mux_parse(buf, n, &f);
    assert_true(rc > 0);
    const char *why = NULL;
    rc = sl_mux_payload(&f, b, &why);
    assert_non_null(why);
    return rc;
}

static void test_encoders_round_trip(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct sl_mux_body b;
    int n = sl_mux_encode_credit(buf, sizeof(buf), 9, 0x0102030405060708ull);
    assert_int_equal(n, SL_MUX_HEADER + 8);
    assert_int_equal(payload_of(buf, (size_t)n, &b), 0);
    assert_true(b.offset == 0x0102030405060708ull);

    n = sl_mux_encode_ping(buf, sizeof(buf), SL_MUX_PONG, 42);
    assert_int_equal(payload_of(buf, (size_t)n, &b), 0);
    assert_true(b.opaque == 42);
    assert_int_equal(buf[1], SL_MUX_PONG);
    assert_int_equal(sl_mux_encode_ping(buf, sizeof(buf), SL_MUX_DATA, 1),
                     SL_EPARSE);

    n = sl_mux_encode_rst(buf, sizeof(buf), 3, SL_MUX_RST_REFUSED, "busy");
    assert_int_equal(payload_of(buf, (size_t)n, &b), 0);
    assert_int_equal(b.code, SL_MUX_RST_REFUSED);
    assert_int_equal(b.reason_len, 4);
    assert_memory_equal(b.reason, "busy", 4);

    n = sl_mux_encode_goaway(buf, sizeof(buf), 11, SL_MUX_GO_FLOW, "x");
    assert_int_equal(payload_of(buf, (size_t)n, &b), 0);
    assert_int_equal(b.last_stream, 11);
    assert_int_equal(b.code, SL_MUX_GO_FLOW);

    n = sl_mux_encode_fin(buf, sizeof(buf), 5);
    assert_int_equal(payload_of(buf, (size_t)n, &b), 0);

    /* OPEN: the fixed part here, the first bytes right behind it. */
    n = sl_mux_encode_open(buf, sizeof(buf), 1, SL_MUX_KIND_HTTP, "db:5432",
                           3);
    assert_int_equal(n, SL_MUX_HEADER + 2 + 7);
    memcpy(buf + n, "GET", 3);
    assert_int_equal(payload_of(buf, (size_t)n + 3, &b), 0);
    assert_int_equal(b.kind, SL_MUX_KIND_HTTP);
    assert_int_equal(b.target_len, 7);
    assert_memory_equal(b.target, "db:5432", 7);
    assert_int_equal(b.data_len, 3);
    assert_memory_equal(b.data, "GET", 3);

    /* Too small a buffer, too long a reason: refused, never cut. */
    assert_int_equal(sl_mux_encode_credit(buf, SL_MUX_HEADER + 7, 1, 1),
                     SL_ETOOBIG);
    char longr[SL_MUX_REASON_MAX + 2];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    assert_int_equal(sl_mux_encode_rst(buf, sizeof(buf), 1, 0, longr),
                     SL_ETOOBIG);
    assert_int_equal(sl_mux_encode_open(buf, sizeof(buf), 1, 1, NULL,
                                        SL_MUX_FRAME_MAX),
                     SL_ETOOBIG);
}

static void test_payload_rules(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct sl_mux_body b;
    /* Stream frames on stream 0, connection frames on a stream. */
    sl_mux_header(buf, SL_MUX_DATA, 0, 0, 0);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER, &b), SL_EPARSE);
    sl_mux_header(buf, SL_MUX_OPEN, 0, 0, 2);
    buf[12] = 1;
    buf[13] = 0;
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 2, &b), SL_EPARSE);
    int n = sl_mux_encode_ping(buf, sizeof(buf), SL_MUX_PING, 1);
    buf[7] = 1; /* stream 1 */
    assert_int_equal(payload_of(buf, (size_t)n, &b), SL_EPARSE);
    /* Lengths. */
    sl_mux_header(buf, SL_MUX_FIN, 0, 1, 1);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 1, &b), SL_EPARSE);
    sl_mux_header(buf, SL_MUX_CREDIT, 0, 1, 7);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 7, &b), SL_EPARSE);
    sl_mux_header(buf, SL_MUX_RST, 0, 1, 3);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 3, &b), SL_EPARSE);
    sl_mux_header(buf, SL_MUX_GOAWAY, 0, 0, 7);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 7, &b), SL_EPARSE);
    /* An OPEN whose target runs past the frame. */
    sl_mux_header(buf, SL_MUX_OPEN, 0, 1, 3);
    buf[12] = 1;
    buf[13] = 2;
    buf[14] = 'a';
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 3, &b), SL_EPARSE);
    /* An unknown type is valid (skipped), whatever its payload. */
    sl_mux_header(buf, (enum sl_mux_type)200, 0xffff, 5, 3);
    assert_int_equal(payload_of(buf, SL_MUX_HEADER + 3, &b), 0);
    assert_string_equal(sl_mux_type_name(200), "?");
    assert_string_equal(sl_mux_type_name(SL_MUX_GOAWAY), "GOAWAY");
    assert_string_equal(sl_mux_goaway_name(SL_MUX_GO_TOO_BIG),
                        "frame too big");
    assert_string_equal(sl_mux_rst_name(SL_MUX_RST_FLOW), "data past credit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_parse_whole_and_partial),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_encoders_round_trip),
        cmocka_unit_test(test_payload_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
