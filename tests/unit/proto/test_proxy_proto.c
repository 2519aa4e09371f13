#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/proxy_proto.h"

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void mk_sa(struct sockaddr_storage *ss, const char *text, unsigned port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
    }
}

/* Compares address and port as a receiver sees them. */
static void assert_sa_eq(const struct sockaddr_storage *got,
                         const struct sockaddr_storage *want)
{
    assert_int_equal(got->ss_family, want->ss_family);
    if (want->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)got,
                                 *b = (const void *)want;
        assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
        assert_int_equal(a->sin_port, b->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const void *)got,
                                  *b = (const void *)want;
        assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
        assert_int_equal(a->sin6_port, b->sin6_port);
    }
}

static void assert_sa_text(const struct sockaddr_storage *got, const char *text,
                           unsigned port)
{
    struct sockaddr_storage want;
    mk_sa(&want, text, port);
    assert_sa_eq(got, &want);
}

/* Every proper prefix of a valid header is incomplete, and so is the
 * empty buffer; parsing from a fresh heap copy of exactly that many bytes
 * lets ASan see any read past the end. */
static void assert_all_prefixes_incomplete(const uint8_t *hdr, size_t n)
{
    struct sl_pp_info info;
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, hdr, len);
        int rc = sl_pp_parse(copy, len, &info);
        if (rc != SL_EINCOMPLETE)
            fail_msg("prefix of %zu/%zu bytes gave %d, want SL_EINCOMPLETE",
                     len, n, rc);
        assert_int_equal(sl_pp_detect(copy, len), 1);
        free(copy);
    }
}

static int parse_str(const char *s, struct sl_pp_info *info)
{
    size_t n = strlen(s);
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    int rc = sl_pp_parse(copy, n, info);
    free(copy);
    return rc;
}

/* ---- v1 ---------------------------------------------------------------- */

static void test_v1_valid(void **state)
{
    struct sl_pp_info info;
    const char *h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
    int rc = parse_str(h, &info);
    assert_int_equal(rc, (int)(strstr(h, "\n") - h + 1));
    assert_int_equal(info.version, 1);
    assert_int_equal(info.has_addrs, 1);
    assert_int_equal(info.stream, 1);
    assert_sa_text(&info.src, "192.168.0.1", 56324);
    assert_sa_text(&info.dst, "192.168.0.11", 443);

    h = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    assert_int_equal(parse_str(h, &info), (int)strlen(h));
    assert_sa_text(&info.src, "2001:db8::1", 0);
    assert_sa_text(&info.dst, "::1", 65535);

    h = "PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n";
    assert_int_equal(parse_str(h, &info), (int)strlen(h));
    assert_sa_text(&info.src, "::ffff:1.2.3.4", 1);

    h = "PROXY UNKNOWN\r\n";
    assert_int_equal(parse_str(h, &info), (int)strlen(h));
    assert_int_equal(info.version, 1);
    assert_int_equal(info.has_addrs, 0);

    /* The spec: after UNKNOWN the receiver ignores the rest of the line. */
    h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_int_equal(parse_str(h, &info), (int)strlen(h));
    assert_int_equal(info.has_addrs, 0);

    /* The worst case of the spec, 107 bytes. */
    h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(h), 104);
    assert_int_equal(parse_str(h, &info), 104);
    h = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(h), 107);
    assert_int_equal(parse_str(h, &info), 107);
    (void)state;
}

static void test_v1_truncated(void **state)
{
    const char *hs[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
        "PROXY UNKNOWN\r\n",
        ("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
    };
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        assert_all_prefixes_incomplete((const uint8_t *)hs[i], strlen(hs[i]));
    (void)state;
}

static void test_v1_hostile(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP4 1.1.1.256 1.1.1.1 1 2\r\n",
        "PROXY TCP4 1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP4 01.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 65536 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 99999\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 999999\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 -1 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 +1 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 01 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 0x10 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1a 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 \r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 2 \r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 2 3\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1\r\n",
        "PROXY TCP4 1.1.1.1  1.1.1.1 1 2\r\n",
        "PROXY  TCP4 1.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 2\n",
        "PROXY TCP4 1.1.1.1 1.1.1.1 1 2\rX",
        "PROXY TCP4\r\n",
        "PROXY \r\n",
        "PROXY tcp4 1.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY TCP5 1.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY UDP4 1.1.1.1 1.1.1.1 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY TCP4 1.1.1.1\t1.1.1.1 1 2\r\n",
        "PROXY UNKNOWN \x01\r\n",
        "PROXZ",
        "proxy ",
        "GET / HTTP/1.1\r\n",
        "P\r\n",
        "SSH-2.0-OpenSSH\r\n",
    };
    struct sl_pp_info info;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_str(bad[i], &info);
        if (rc != SL_EPARSE)
            fail_msg("\"%s\" gave %d, want SL_EPARSE", bad[i], rc);
    }
    const char nul[] = "PROXY TCP4 1.1.1.1 1.1.1.1 1 2\x00\r\n";
    assert_int_equal(sl_pp_parse((const uint8_t *)nul, sizeof(nul) - 1, &info),
                     SL_EPARSE);

    /* 107 bytes with no CRLF, and a CRLF just past the limit. */
    char longline[200];
    memset(longline, 'A', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 106, &info),
                     SL_EINCOMPLETE);
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 107, &info), SL_EPARSE);
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 200, &info), SL_EPARSE);
    longline[106] = '\r';
    longline[107] = '\n';
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 108, &info), SL_EPARSE);
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 107, &info), SL_EPARSE);
    longline[105] = '\r';
    longline[106] = '\n';
    assert_int_equal(sl_pp_parse((uint8_t *)longline, 108, &info), 107);
    (void)state;
}

static void test_v1_encode_roundtrip(void **state)
{
    static const struct {
        const char *src, *dst;
        unsigned sport, dport;
        const char *want;
    } cases[] = {
        {"10.0.0.1", "10.0.0.2", 1234, 80,
         "PROXY TCP4 10.0.0.1 10.0.0.2 1234 80\r\n"},
        {"2001:db8::1", "::1", 0, 65535,
         "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n"},
        {"10.0.0.1", "2001:db8::2", 5, 6,
         "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 5 6\r\n"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535,
         "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"},
    };
    struct sockaddr_storage s, d;
    struct sl_pp_info info;
    char buf[108];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mk_sa(&s, cases[i].src, cases[i].sport);
        mk_sa(&d, cases[i].dst, cases[i].dport);
        int n = sl_pp_encode_v1(buf, sizeof(buf), (struct sockaddr *)&s,
                                (struct sockaddr *)&d);
        assert_int_equal(n, (int)strlen(cases[i].want));
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(sl_pp_parse((uint8_t *)buf, (size_t)n, &info), n);
        assert_int_equal(info.has_addrs, 1);
        if (s.ss_family == d.ss_family) {
            assert_sa_eq(&info.src, &s);
            assert_sa_eq(&info.dst, &d);
        }
        /* Too small by one: refused, never truncated. */
        assert_int_equal(sl_pp_encode_v1(buf, (size_t)n, (struct sockaddr *)&s,
                                         (struct sockaddr *)&d),
                         SL_ETOOBIG);
    }
    assert_int_equal(sl_pp_encode_v1(buf, sizeof(buf), NULL, NULL), 15);
    assert_string_equal(buf, "PROXY UNKNOWN\r\n");
    assert_int_equal(sl_pp_encode_v1(buf, 0, NULL, NULL), SL_ETOOBIG);
    (void)state;
}

/* ---- v2 ---------------------------------------------------------------- */

static size_t v2_hdr(uint8_t *b, uint8_t ver_cmd, uint8_t fam, size_t len)
{
    memcpy(b, sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    b[14] = (uint8_t)(len >> 8);
    b[15] = (uint8_t)len;
    return 16 + len;
}

static void test_v2_valid(void **state)
{
    uint8_t b[600];
    struct sl_pp_info info;
    size_t n;

    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x21, 0x11, 12);
    memcpy(b + 16, "\x0a\x00\x00\x01\x0a\x00\x00\x02\x04\xd2\x00\x50", 12);
    assert_int_equal(sl_pp_parse(b, n + 5, &info), (int)n);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.has_addrs, 1);
    assert_int_equal(info.stream, 1);
    assert_sa_text(&info.src, "10.0.0.1", 1234);
    assert_sa_text(&info.dst, "10.0.0.2", 80);

    b[13] = 0x12; /* UDP4 */
    assert_int_equal(sl_pp_parse(b, n, &info), (int)n);
    assert_int_equal(info.stream, 0);

    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x21, 0x21, 36);
    b[16 + 15] = 1;    /* src ::1 */
    b[16 + 16] = 0x20; /* dst 2001:db8::2 */
    b[16 + 17] = 0x01;
    b[16 + 18] = 0x0d;
    b[16 + 19] = 0xb8;
    b[16 + 31] = 2;
    b[16 + 32] = 0xff; /* sport 65535 */
    b[16 + 33] = 0xff;
    b[16 + 35] = 22; /* dport 22 */
    assert_int_equal(sl_pp_parse(b, n, &info), (int)n);
    assert_int_equal(info.has_addrs, 1);
    assert_sa_text(&info.src, "::1", 65535);
    assert_sa_text(&info.dst, "2001:db8::2", 22);
    b[13] = 0x22;
    assert_int_equal(sl_pp_parse(b, n, &info), (int)n);
    assert_int_equal(info.stream, 0);

    /* AF_UNIX: accepted, no usable addresses. */
    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x21, 0x31, 216);
    memcpy(b + 16, "/tmp/a", 6);
    assert_int_equal(sl_pp_parse(b, n, &info), (int)n);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.has_addrs, 0);
    assert_int_equal(info.stream, 1);
    b[13] = 0x32;
    assert_int_equal(sl_pp_parse(b, n, &info), (int)n);
    assert_int_equal(info.stream, 0);

    /* PROXY over AF_UNSPEC: no addresses, the block is ignored. */
    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x21, 0x00, 0);
    assert_int_equal(sl_pp_parse(b, n, &info), 16);
    assert_int_equal(info.has_addrs, 0);
    n = v2_hdr(b, 0x21, 0x00, 7);
    assert_int_equal(sl_pp_parse(b, n, &info), 23);
    (void)state;
}

static void test_v2_local(void **state)
{
    uint8_t b[64];
    struct sl_pp_info info;
    size_t n;

    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x20, 0x00, 0);
    assert_int_equal(sl_pp_parse(b, n, &info), 16);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.has_addrs, 0);

    /* A LOCAL header may still carry a family and a block (health checks
     * of some balancers do); it is discarded, even if shorter than the
     * family's addresses. */
    n = v2_hdr(b, 0x20, 0x11, 12);
    assert_int_equal(sl_pp_parse(b, n, &info), 28);
    assert_int_equal(info.has_addrs, 0);
    n = v2_hdr(b, 0x20, 0x21, 4);
    assert_int_equal(sl_pp_parse(b, n, &info), 20);
    assert_int_equal(info.has_addrs, 0);
    assert_all_prefixes_incomplete(b, n);
    (void)state;
}

static void test_v2_tlvs_skipped(void **state)
{
    uint8_t b[SL_PP_MAX_HEADER + 16];
    struct sl_pp_info info;
    size_t n;

    memset(b, 0, sizeof(b));
    /* INET + ALPN "h2" + AUTHORITY "example.com" + NOOP of 0 bytes. */
    const uint8_t tlvs[] = {0x01, 0x00, 0x02, 'h',  '2',  0x02, 0x00, 0x0b,
                            'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',
                            'c',  'o',  'm',  0x04, 0x00, 0x00};
    n = v2_hdr(b, 0x21, 0x11, 12 + sizeof(tlvs));
    memcpy(b + 16, "\x7f\x00\x00\x01\x7f\x00\x00\x02\x00\x01\x00\x02", 12);
    memcpy(b + 28, tlvs, sizeof(tlvs));
    b[n] = 'X'; /* payload after the header is not touched */
    assert_int_equal(sl_pp_parse(b, n + 1, &info), (int)n);
    assert_int_equal(info.has_addrs, 1);
    assert_sa_text(&info.src, "127.0.0.1", 1);
    assert_sa_text(&info.dst, "127.0.0.2", 2);
    assert_all_prefixes_incomplete(b, n);

    /* A TLV whose length runs past the block is refused. */
    b[28 + 2] = 3;
    assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
    b[28 + 2] = 2;
    /* So is a block with 1 or 2 trailing bytes: no room for a TLV header. */
    n = v2_hdr(b, 0x21, 0x11, 12 + sizeof(tlvs) + 2);
    b[n - 2] = 0x04;
    b[n - 1] = 0x00;
    assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);

    /* The largest header we take: 1024 bytes, TLVs filling it. */
    memset(b + 28, 0, sizeof(b) - 28);
    n = v2_hdr(b, 0x21, 0x11, SL_PP_MAX_HEADER - 16);
    size_t rest = SL_PP_MAX_HEADER - 28 - 3;
    b[28] = 0x04; /* NOOP */
    b[29] = (uint8_t)(rest >> 8);
    b[30] = (uint8_t)rest;
    assert_int_equal(n, SL_PP_MAX_HEADER);
    assert_int_equal(sl_pp_parse(b, n, &info), SL_PP_MAX_HEADER);
    (void)state;
}

static void test_v2_truncated(void **state)
{
    struct sockaddr_storage s, d;
    uint8_t b[256];
    int n;

    mk_sa(&s, "192.0.2.1", 4000);
    mk_sa(&d, "192.0.2.2", 443);
    n = sl_pp_encode_v2(b, sizeof(b), (struct sockaddr *)&s,
                        (struct sockaddr *)&d, 1);
    assert_int_equal(n, 28);
    assert_all_prefixes_incomplete(b, (size_t)n);

    mk_sa(&s, "2001:db8::1", 4000);
    mk_sa(&d, "2001:db8::2", 443);
    n = sl_pp_encode_v2(b, sizeof(b), (struct sockaddr *)&s,
                        (struct sockaddr *)&d, 0);
    assert_int_equal(n, 52);
    assert_all_prefixes_incomplete(b, (size_t)n);

    memset(b, 0, sizeof(b));
    n = (int)v2_hdr(b, 0x21, 0x31, 216);
    assert_all_prefixes_incomplete(b, (size_t)n);
    (void)state;
}

static void test_v2_hostile(void **state)
{
    uint8_t b[SL_PP_MAX_HEADER + 64];
    struct sl_pp_info info;
    size_t n;

    memset(b, 0, sizeof(b));
    n = v2_hdr(b, 0x21, 0x11, 12);

    /* Each signature byte wrong, judged as soon as it is seen. */
    for (size_t i = 0; i < 12; i++) {
        b[i] ^= 0x40;
        assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
        assert_int_equal(sl_pp_parse(b, i + 1, &info), SL_EPARSE);
        assert_int_equal(sl_pp_detect(b, i + 1), 0);
        b[i] ^= 0x40;
    }

    /* Versions other than 2, commands other than LOCAL/PROXY. */
    static const uint8_t bad_vc[] = {0x11, 0x10, 0x31, 0x01,
                                     0x22, 0x2f, 0xf1, 0x00};
    for (size_t i = 0; i < sizeof(bad_vc); i++) {
        b[12] = bad_vc[i];
        assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
        assert_int_equal(sl_pp_parse(b, 13, &info), SL_EPARSE);
    }
    b[12] = 0x21;

    /* Family/transport bytes the spec says to reject. */
    static const uint8_t bad_fam[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23,
                                      0x30, 0x33, 0x41, 0x42, 0xff};
    for (size_t i = 0; i < sizeof(bad_fam); i++) {
        b[13] = bad_fam[i];
        assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
        assert_int_equal(sl_pp_parse(b, 14, &info), SL_EPARSE);
        b[12] = 0x20; /* LOCAL too */
        assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
        b[12] = 0x21;
    }
    b[13] = 0x11;

    /* Lengths too short for the family's addresses, refused at once. */
    static const struct {
        uint8_t fam;
        size_t len;
    } short_len[] = {
        {0x11, 0}, {0x11, 11}, {0x12, 4},   {0x21, 12}, {0x21, 35},
        {0x22, 0}, {0x31, 36}, {0x31, 215}, {0x32, 0},
    };
    for (size_t i = 0; i < sizeof(short_len) / sizeof(short_len[0]); i++) {
        memset(b + 16, 0, 300);
        n = v2_hdr(b, 0x21, short_len[i].fam, short_len[i].len);
        assert_int_equal(sl_pp_parse(b, n, &info), SL_EPARSE);
        assert_int_equal(sl_pp_parse(b, 16, &info), SL_EPARSE);
    }

    /* Oversized: refused from the length field alone. */
    n = v2_hdr(b, 0x21, 0x11, SL_PP_MAX_HEADER - 16 + 1);
    assert_int_equal(sl_pp_parse(b, 16, &info), SL_ETOOBIG);
    assert_int_equal(sl_pp_parse(b, sizeof(b), &info), SL_ETOOBIG);
    v2_hdr(b, 0x21, 0x11, 0xffff);
    assert_int_equal(sl_pp_parse(b, 16, &info), SL_ETOOBIG);
    v2_hdr(b, 0x20, 0x00, 0xffff);
    assert_int_equal(sl_pp_parse(b, 16, &info), SL_ETOOBIG);

    /* A failed parse leaves *out alone. */
    memset(&info, 0x5a, sizeof(info));
    struct sl_pp_info before = info;
    b[0] = 0;
    assert_int_equal(sl_pp_parse(b, 16, &info), SL_EPARSE);
    assert_memory_equal(&info, &before, sizeof(info));
    (void)state;
}

static void test_v2_encode_roundtrip(void **state)
{
    static const struct {
        const char *src, *dst;
        unsigned sport, dport;
        int stream;
        int want_len;
        uint8_t want_fam;
    } cases[] = {
        {"10.0.0.1", "10.0.0.2", 1234, 80, 1, 28, 0x11},
        {"10.0.0.1", "10.0.0.2", 53, 5353, 0, 28, 0x12},
        {"2001:db8::1", "::1", 0, 65535, 1, 52, 0x21},
        {"2001:db8::1", "fe80::1", 9, 9, 0, 52, 0x22},
        {"10.0.0.1", "2001:db8::2", 5, 6, 1, 52, 0x21},
        {"::ffff:10.0.0.1", "::ffff:10.0.0.2", 5, 6, 1, 52, 0x21},
    };
    struct sockaddr_storage s, d;
    struct sl_pp_info info;
    uint8_t buf[232];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mk_sa(&s, cases[i].src, cases[i].sport);
        mk_sa(&d, cases[i].dst, cases[i].dport);
        int n = sl_pp_encode_v2(buf, sizeof(buf), (struct sockaddr *)&s,
                                (struct sockaddr *)&d, cases[i].stream);
        assert_int_equal(n, cases[i].want_len);
        assert_memory_equal(buf, sig, 12);
        assert_int_equal(buf[12], 0x21);
        assert_int_equal(buf[13], cases[i].want_fam);
        assert_int_equal(sl_pp_detect(buf, (size_t)n), 1);
        assert_int_equal(sl_pp_parse(buf, (size_t)n, &info), n);
        assert_int_equal(info.version, 2);
        assert_int_equal(info.has_addrs, 1);
        assert_int_equal(info.stream, cases[i].stream);
        if (s.ss_family == d.ss_family) {
            assert_sa_eq(&info.src, &s);
            assert_sa_eq(&info.dst, &d);
        } else {
            assert_sa_text(&info.src, "::ffff:10.0.0.1", 5);
            assert_sa_eq(&info.dst, &d);
        }
        assert_int_equal(sl_pp_encode_v2(buf, (size_t)n - 1,
                                         (struct sockaddr *)&s,
                                         (struct sockaddr *)&d, 1),
                         SL_ETOOBIG);
    }
    /* No usable addresses: PROXY over AF_UNSPEC. */
    int n = sl_pp_encode_v2(buf, sizeof(buf), NULL, NULL, 1);
    assert_int_equal(n, 16);
    assert_int_equal(buf[12], 0x21);
    assert_int_equal(buf[13], 0x00);
    assert_int_equal(sl_pp_parse(buf, 16, &info), 16);
    assert_int_equal(info.has_addrs, 0);
    assert_int_equal(sl_pp_encode_v2(buf, 15, NULL, NULL, 1), SL_ETOOBIG);
    (void)state;
}

static void test_detect(void **state)
{
    static const char *const yes[] = {"",       "P",          "PROX",
                                      "PROXY ", "PROXY TCP4", "PROXY garbage"};
    static const char *const no[] = {"G",    "GET /",   "PROXZ",  "proxy",
                                     "\x16", "SSH-2.0", "PROXY\r"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_int_equal(sl_pp_detect((const uint8_t *)yes[i], strlen(yes[i])),
                         1);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_int_equal(sl_pp_detect((const uint8_t *)no[i], strlen(no[i])),
                         0);
    for (size_t len = 0; len <= 12; len++)
        assert_int_equal(sl_pp_detect(sig, len), 1);
    uint8_t almost[12];
    memcpy(almost, sig, 12);
    almost[11] = 0;
    assert_int_equal(sl_pp_detect(almost, 12), 0);
    assert_int_equal(sl_pp_detect(almost, 11), 1);
    /* A TLS ClientHello starts with 0x16: never a PROXY header. */
    const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00};
    assert_int_equal(sl_pp_detect(hello, sizeof(hello)), 0);
    assert_int_equal(sl_pp_parse(hello, sizeof(hello), NULL), SL_EPARSE);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_valid),
        cmocka_unit_test(test_v1_truncated),
        cmocka_unit_test(test_v1_hostile),
        cmocka_unit_test(test_v1_encode_roundtrip),
        cmocka_unit_test(test_v2_valid),
        cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_tlvs_skipped),
        cmocka_unit_test(test_v2_truncated),
        cmocka_unit_test(test_v2_hostile),
        cmocka_unit_test(test_v2_encode_roundtrip),
        cmocka_unit_test(test_detect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
