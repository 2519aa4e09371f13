#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "core/error.h"
#include "core/rate.h"
#include "tunnel/grant.h"

#define ID "ab1234567890"

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    return k;
}

static struct sl_grant sample(void)
{
    struct sl_grant g;
    memset(&g, 0, sizeof(g));
    g.features = SL_GRANT_BRIDGE | SL_GRANT_TCP | SL_GRANT_UDP;
    g.bridges = 3;
    g.traffic = 50000000000ULL;
    g.rate = 12500000;
    assert_int_equal(sl_grant_time_parse("2027-12-31T23:59:59Z", 20,
                                         &g.expires), 0);
    memcpy(g.identity, ID, sizeof(g.identity));
    return g;
}

static void test_b64url(void **state)
{
    unsigned char in[100], back[100];
    char text[200];
    for (size_t n = 0; n < sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + n);
        int t = sl_b64url_encode(in, n, text, sizeof(text));
        assert_true(t >= 0);
        assert_null(strchr(text, '='));
        assert_int_equal(sl_b64url_decode(text, (size_t)t, back, sizeof(back)),
                         (int)n);
        assert_memory_equal(in, back, n);
    }
    /* One text per byte string: bits a short group leaves unused must be
     * zero, and no padding. "QQ" is "A"; "QR" would be "A" as well. */
    assert_int_equal(sl_b64url_decode("QQ", 2, back, sizeof(back)), 1);
    assert_int_equal(sl_b64url_decode("QR", 2, back, sizeof(back)), SL_EPARSE);
    assert_int_equal(sl_b64url_decode("QUE", 3, back, sizeof(back)), 2);
    assert_int_equal(sl_b64url_decode("QUF", 3, back, sizeof(back)),
                     SL_EPARSE);
    assert_int_equal(sl_b64url_decode("QQ==", 4, back, sizeof(back)),
                     SL_EPARSE);
    assert_int_equal(sl_b64url_decode("Q", 1, back, sizeof(back)), SL_EPARSE);
    assert_int_equal(sl_b64url_decode("a+b/", 4, back, sizeof(back)),
                     SL_EPARSE);
    assert_int_equal(sl_b64url_decode("a-b_", 4, back, sizeof(back)), 3);
    assert_int_equal(sl_b64url_decode("AAAA", 4, back, 2), SL_ETOOBIG);
    assert_int_equal(sl_b64url_encode(in, 3, text, 4), SL_ETOOBIG);
}

static void test_time(void **state)
{
    int64_t t;
    char out[SL_GRANT_TIME_LEN + 1];
    assert_int_equal(sl_grant_time_parse("1970-01-01T00:00:00Z", 20, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(sl_grant_time_parse("2027-12-31T23:59:59Z", 20, &t), 0);
    assert_int_equal(t, 1830297599);
    assert_int_equal(sl_grant_time_parse("2024-02-29T12:00:00Z", 20, &t), 0);
    sl_grant_time_format(t, out);
    assert_string_equal(out, "2024-02-29T12:00:00Z");
    static const char *const bad[] = {
        "2023-02-29T12:00:00Z", "2027-13-01T00:00:00Z",
        "2027-12-32T00:00:00Z", "2027-12-31T24:00:00Z",
        "2027-12-31T23:60:00Z", "2027-12-31 23:59:59Z",
        "2027-12-31T23:59:59z", "2027-12-31T23:59:59+00:00",
        "1969-12-31T23:59:59Z", "2027-12-31",
        "2027-1a-31T23:59:59Z", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_grant_time_parse(bad[i], strlen(bad[i]), &t),
                         SL_EPARSE);
}

static void test_sign_verify(void **state)
{
    EVP_PKEY *k = new_key();
    struct sl_grant g = sample(), r;
    char tok[SL_GRANT_TOKEN_MAX + 1];
    int n = sl_grant_sign(&g, k, tok, sizeof(tok));
    assert_true(n > 0);
    assert_int_equal(strlen(tok), (size_t)n);
    assert_int_equal(sl_grant_verify(tok, (size_t)n, k, &r), SL_GRANT_OK);
    assert_int_equal(r.features, g.features);
    assert_int_equal(r.bridges, 3);
    assert_int_equal(r.traffic, 50000000000ULL);
    assert_int_equal(r.rate, 12500000);
    assert_int_equal(r.expires, g.expires);
    assert_string_equal(r.identity, ID);
    /* The payload is the documented JSON, in that order. */
    unsigned char payload[SL_GRANT_PAYLOAD_MAX], sig[SL_GRANT_SIG_LEN];
    size_t plen;
    assert_int_equal(sl_grant_split(tok, (size_t)n, payload, sizeof(payload),
                                    &plen, sig), 0);
    const char *want = "{\"v\":1,\"features\":[\"bridge\",\"tcp\",\"udp\"],"
                       "\"bridges\":3,\"traffic\":50000000000,"
                       "\"rate\":12500000,\"expires\":"
                       "\"2027-12-31T23:59:59Z\",\"identity\":\"" ID "\"}";
    assert_int_equal(plen, strlen(want));
    assert_memory_equal(payload, want, plen);
    /* Another key: refused. */
    EVP_PKEY *other = new_key();
    assert_int_equal(sl_grant_verify(tok, (size_t)n, other, &r),
                     SL_GRANT_BAD_SIGNATURE);
    assert_int_equal(sl_grant_verify(tok, (size_t)n, NULL, &r),
                     SL_GRANT_BAD_SIGNATURE);
    EVP_PKEY_free(other);
    /* Not an Ed25519 key: no signature at all. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    assert_int_equal(sl_grant_sign(&g, ec, tok, sizeof(tok)), UV_EINVAL);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(k);
}

/* Every byte of a token changed to every other character that could
 * stand there: none of the results is a grant. */
static void test_tamper_every_byte(void **state)
{
    static const char repl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= "
        "+/\x01\xff";
    EVP_PKEY *k = new_key();
    struct sl_grant g = sample(), r;
    char tok[SL_GRANT_TOKEN_MAX + 1], t2[SL_GRANT_TOKEN_MAX + 1];
    int n = sl_grant_sign(&g, k, tok, sizeof(tok));
    assert_true(n > 0);
    size_t tried = 0;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof(repl) - 1; j++) {
            if (repl[j] == tok[i])
                continue;
            memcpy(t2, tok, (size_t)n + 1);
            t2[i] = repl[j];
            assert_int_not_equal(sl_grant_verify(t2, (size_t)n, k, &r),
                                 SL_GRANT_OK);
            tried++;
        }
        /* A byte dropped, or one added. */
        memcpy(t2, tok, (size_t)i);
        memcpy(t2 + i, tok + i + 1, (size_t)(n - i));
        assert_int_not_equal(sl_grant_verify(t2, (size_t)n - 1, k, &r),
                             SL_GRANT_OK);
        memcpy(t2, tok, (size_t)i);
        t2[i] = 'A';
        memcpy(t2 + i + 1, tok + i, (size_t)(n - i) + 1);
        assert_int_not_equal(sl_grant_verify(t2, (size_t)n + 1, k, &r),
                             SL_GRANT_OK);
    }
    assert_true(tried > (size_t)n * 60);
    assert_int_equal(sl_grant_verify(tok, (size_t)n, k, &r), SL_GRANT_OK);
    EVP_PKEY_free(k);
}

static void test_split_hostile(void **state)
{
    unsigned char p[SL_GRANT_PAYLOAD_MAX], s[SL_GRANT_SIG_LEN];
    size_t pl;
    static const char *const bad[] = {
        "", ".", "e30", "e30.", ".AAAA", "e30..AAAA", "e30.AA.AA",
        "e30 .AAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(sl_grant_split(bad[i], strlen(bad[i]), p,
                                            sizeof(p), &pl, s), 0);
    /* A signature of the wrong length. */
    char tok[200];
    char sig[100];
    unsigned char raw[63] = {0};
    sl_b64url_encode(raw, sizeof(raw), sig, sizeof(sig));
    snprintf(tok, sizeof(tok), "e30.%s", sig);
    assert_int_equal(sl_grant_split(tok, strlen(tok), p, sizeof(p), &pl, s),
                     SL_EPARSE);
}

static int parse(const char *json, struct sl_grant *g)
{
    return sl_grant_parse_payload(json, strlen(json), g);
}

static void test_payload(void **state)
{
    struct sl_grant g;
    assert_int_equal(parse("{\"v\":1}", &g), 0);
    assert_int_equal(g.features, 0);
    assert_int_equal(g.expires, 0);
    assert_int_equal(parse("{\"v\":1,\"features\":[\"bridge\",\"future\"],"
                           "\"subject\":\"acme corp\",\"later\":{\"x\":1}}",
                           &g), 0);
    assert_int_equal(g.features, SL_GRANT_BRIDGE);
    assert_string_equal(g.subject, "acme corp");
    static const char *const bad[] = {
        "", "[]", "1", "{}", "{\"v\":2}", "{\"v\":\"1\"}", "{\"v\":1.0}",
        "{\"v\":1,\"v\":1}",
        "{\"v\":1,\"bridges\":-1}",
        "{\"v\":1,\"traffic\":1.5}",
        "{\"v\":1,\"rate\":\"10\"}",
        "{\"v\":1,\"rate\":99999999999999999999999}",
        "{\"v\":1,\"features\":\"bridge\"}",
        "{\"v\":1,\"features\":[1]}",
        "{\"v\":1,\"expires\":\"2027-12-31\"}",
        "{\"v\":1,\"expires\":0}",
        "{\"v\":1,\"identity\":\"AB1234567890\"}",
        "{\"v\":1,\"identity\":\"ab123\"}",
        "{\"v\":1,\"subject\":\"\"}",
        "{\"v\":1,\"subject\":\"a\\nb\"}",
        "{\"v\":1,\"subject\":\"a\\u0000b\"}",
        "{\"v\":1} x",
        "{\"v\":1,\"bridges\":1,\"bridges\":9}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &g), SL_EPARSE);
        assert_int_equal(g.bridges, 0);
    }
    char big[SL_GRANT_PAYLOAD_MAX + 32];
    int n = snprintf(big, sizeof(big), "{\"v\":1,\"subject\":\"x\"%*s}",
                     SL_GRANT_PAYLOAD_MAX, "");
    assert_int_equal(sl_grant_parse_payload(big, (size_t)n, &g), SL_EPARSE);
    char sub[300];
    snprintf(sub, sizeof(sub), "{\"v\":1,\"subject\":\"%0128d\"}", 0);
    assert_int_equal(parse(sub, &g), SL_EPARSE);
}

static void test_check(void **state)
{
    struct sl_grant g = sample();
    assert_int_equal(sl_grant_check(&g, g.expires - 1, ID), SL_GRANT_OK);
    assert_int_equal(sl_grant_check(&g, g.expires, ID), SL_GRANT_EXPIRED);
    assert_int_equal(sl_grant_check(&g, 0, "cd1234567890"),
                     SL_GRANT_OTHER_IDENTITY);
    /* A new allocation has no identity yet: not this grant's. */
    assert_int_equal(sl_grant_check(&g, 0, NULL), SL_GRANT_OTHER_IDENTITY);
    g.identity[0] = '\0';
    assert_int_equal(sl_grant_check(&g, 0, NULL), SL_GRANT_OK);
    g.features = SL_GRANT_TCP;
    assert_int_equal(sl_grant_check(&g, 0, ID), SL_GRANT_NO_BRIDGE);
    assert_string_equal(sl_grant_why(SL_GRANT_NO_BRIDGE),
                        "Bridge not allowed");
    g.expires = 0; /* never */
    g.features = SL_GRANT_BRIDGE;
    assert_int_equal(sl_grant_check(&g, INT64_MAX, ID), SL_GRANT_OK);
}

static void test_rate(void **state)
{
    static const struct {
        const char *in;
        uint64_t out;
    } ok[] = {
        {"0", 0},
        {"1250000", 1250000},
        {"100Mbit", 12500000},
        {"100mbit", 12500000},
        {"10 Mbit/s", 1250000},
        {"10Mbps", 1250000},
        {"1.5Gbit", 187500000},
        {"8kbit", 1000},
        {"8bit", 1},
        {"10MB/s", 10240000},
        {"1MiB/s", 1048576},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 99;
        assert_int_equal(sl_rate_parse(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].out);
    }
    static const char *const bad[] = {"", "Mbit", "-1", "10 Mb", "10MB",
                                      "1e3", "inf", "10Mbit/h", "/s", "1..2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        assert_int_equal(sl_rate_parse(bad[i], &v), SL_EPARSE);
    }
    char out[32];
    sl_rate_format(12500000, out, sizeof(out));
    assert_string_equal(out, "100 Mbit/s");
    sl_rate_format(1250000, out, sizeof(out));
    assert_string_equal(out, "10 Mbit/s");
    sl_rate_format(0, out, sizeof(out));
    assert_string_equal(out, "unlimited");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_split_hostile),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
