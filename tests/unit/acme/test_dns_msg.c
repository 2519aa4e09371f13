/* DNS messages for DNS-01: the UPDATE and query encoders byte by byte,
 * TSIG signing checked by recomputing the MAC the way RFC 8945 lays it
 * out, an answer's TSIG checked (and refused when anything changes), the
 * parser on compressed names, loops and truncation, and the key file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/hmac.h>

#include "acme/dns_msg.h"
#include "core/error.h"

#include <uv.h>

static const char key_file[] =
    "# made by tsig-keygen\n"
    "key \"sluice-test.\" {\n"
    "\talgorithm hmac-sha256; // the only one\n"
    "\tsecret \"c2x1aWNlIHRlc3Qga2V5IHNlY3JldCAzMiBieXRlcyE=\";\n"
    "};\n";

static struct sl_tsig_key test_key(void)
{
    struct sl_tsig_key k;
    char err[256];
    assert_int_equal(
        sl_tsig_key_parse(key_file, strlen(key_file), &k, err, sizeof(err)), 0);
    return k;
}

static void test_key_file(void **state)
{
    (void)state;
    struct sl_tsig_key k = test_key();
    assert_string_equal(k.name, "sluice-test.");
    assert_int_equal(k.secret_len, 32);
    assert_memory_equal(k.secret, "sluice test key secret 32 bytes!", 32);
    char err[256];
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"", "no key statement"},
        {"key \"k\" { algorithm hmac-md5; secret \"YQ==\"; };",
         "hmac-md5 is not supported"},
        {"key \"k\" { algorithm hmac-sha256; };", "no secret"},
        {"key \"k\" { secret \"YQ==\"; };", "no algorithm"},
        {"key \"k\" { algorithm hmac-sha256; secret \"!!\"; };", "not base64"},
        {"key \"k\" { algorithm hmac-sha256 secret \"YQ==\"; };", "';'"},
        {"key \"k\" { algorithm hmac-sha256; secret \"YQ==\";", "not closed"},
        {"key \"k\" { colour blue; };", "unknown clause"},
        {"key \"a..b\" { };", "not a DNS name"},
        {"/* unterminated", "no key statement"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sl_tsig_key_parse(bad[i].text, strlen(bad[i].text), &k,
                                           err, sizeof(err)),
                         SL_EPARSE);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].says);
    }
    /* A C comment and a bare name are fine too. */
    const char *ok = "/* c */ key k.test { secret \"YQ==\"; algorithm "
                     "HMAC-SHA256.; };";
    assert_int_equal(sl_tsig_key_parse(ok, strlen(ok), &k, err, sizeof(err)),
                     0);
    assert_string_equal(k.name, "k.test");
}

static void test_name_wire(void **state)
{
    (void)state;
    uint8_t w[300];
    assert_int_equal(
        sl_dns_name_wire("_ACME-challenge.Sluice.test", w, sizeof(w)), 29);
    assert_memory_equal(w, "\x0f_acme-challenge\x06sluice\x04test\x00", 29);
    assert_int_equal(sl_dns_name_wire("a.b.", w, sizeof(w)), 5);
    assert_int_equal(sl_dns_name_wire("", w, sizeof(w)), 1);
    assert_int_equal(w[0], 0);
    assert_int_equal(sl_dns_name_wire("a..b", w, sizeof(w)), 0);
    assert_int_equal(sl_dns_name_wire("a b.c", w, sizeof(w)), 0);
    char big[300];
    memset(big, 'a', 64);
    big[64] = '\0';
    assert_int_equal(sl_dns_name_wire(big, w, sizeof(w)), 0);
    assert_int_equal(sl_dns_name_wire("abc.d", w, 4), 0);
}

static const uint8_t update_add[] = {
    /* id 0x1234, opcode UPDATE, 1 zone, 0 prereq, 2 updates, 0 extra */
    0x12, 0x34, 0x28, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
    /* zone sluice.test SOA IN */
    0x06, 's', 'l', 'u', 'i', 'c', 'e', 0x04, 't', 'e', 's', 't', 0x00, 0x00,
    0x06, 0x00, 0x01,
    /* _acme-challenge.sluice.test TXT IN 60 "v1" */
    0x0f, '_', 'a', 'c', 'm', 'e', '-', 'c', 'h', 'a', 'l', 'l', 'e', 'n', 'g',
    'e', 0x06, 's', 'l', 'u', 'i', 'c', 'e', 0x04, 't', 'e', 's', 't', 0x00,
    0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x03, 0x02, 'v', '1',
    /* the same name, "v22" */
    0x0f, '_', 'a', 'c', 'm', 'e', '-', 'c', 'h', 'a', 'l', 'l', 'e', 'n', 'g',
    'e', 0x06, 's', 'l', 'u', 'i', 'c', 'e', 0x04, 't', 'e', 's', 't', 0x00,
    0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 0x03, 'v', '2',
    '2'};

static void test_update_build(void **state)
{
    (void)state;
    uint8_t m[SL_DNS_MSG_MAX];
    size_t len = 0;
    const char *names[] = {"_acme-challenge.sluice.test",
                           "_acme-challenge.sluice.test"};
    const char *values[] = {"v1", "v22"};
    assert_int_equal(sl_dns_update_build(0x1234, "sluice.test", 0, names,
                                         values, 2, 60, m, sizeof(m), &len),
                     0);
    assert_int_equal(len, sizeof(update_add));
    assert_memory_equal(m, update_add, len);
    /* Delete: class NONE (254), TTL 0, the same rdata. */
    assert_int_equal(sl_dns_update_build(0x1234, "sluice.test", 1, names,
                                         values, 1, 60, m, sizeof(m), &len),
                     0);
    size_t rr = 12 + 17;
    assert_int_equal(m[rr + 29 + 2], 0x00);
    assert_int_equal(m[rr + 29 + 3], 0xfe);
    assert_memory_equal(m + rr + 29 + 4, "\0\0\0\0", 4);
    assert_int_equal(m[9], 1); /* one update */
    /* A value too long for a character-string, an empty one, no room. */
    char longv[300];
    memset(longv, 'x', 256);
    longv[256] = '\0';
    const char *lv[] = {longv};
    assert_int_equal(sl_dns_update_build(1, "z.test", 0, names, lv, 1, 60, m,
                                         sizeof(m), &len),
                     UV_EINVAL);
    const char *ev[] = {""};
    assert_int_equal(sl_dns_update_build(1, "z.test", 0, names, ev, 1, 60, m,
                                         sizeof(m), &len),
                     UV_EINVAL);
    assert_int_equal(
        sl_dns_update_build(1, "z.test", 0, names, values, 1, 60, m, 40, &len),
        SL_ETOOBIG);
}

static void test_query_build(void **state)
{
    (void)state;
    uint8_t m[512];
    size_t len = 0;
    assert_int_equal(
        sl_dns_query_build(0xabcd, "x.test", SL_DNS_T_TXT, m, sizeof(m), &len),
        0);
    const uint8_t want[] = {0xab, 0xcd, 0, 0,   0,   1,   0,   0, 0, 0,  0, 0,
                            1,    'x',  4, 't', 'e', 's', 't', 0, 0, 16, 0, 1};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(m, want, len);
}

/* Appends big-endian integers. */
static size_t be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return (size_t)bytes;
}

static const uint8_t key_wire[] = "\x0bsluice-test\x00";
static const uint8_t alg_wire[] = "\x0bhmac-sha256\x00";
#define KEY_WIRE_LEN 13
#define ALG_WIRE_LEN 13

static void test_tsig_sign(void **state)
{
    (void)state;
    struct sl_tsig_key k = test_key();
    uint8_t m[SL_DNS_MSG_MAX], mac[32];
    size_t len = 0;
    const char *names[] = {"_acme-challenge.sluice.test"};
    const char *values[] = {"v1"};
    assert_int_equal(sl_dns_update_build(0x1234, "sluice.test", 0, names,
                                         values, 1, 60, m, sizeof(m), &len),
                     0);
    size_t plain = len;
    uint8_t before[SL_DNS_MSG_MAX];
    memcpy(before, m, plain);
    uint64_t now = 1764633600;
    assert_int_equal(sl_tsig_sign(&k, m, &len, sizeof(m), now, mac), 0);
    assert_int_equal(m[11], 1); /* ARCOUNT */
    /* The record: owner, TYPE 250, CLASS ANY, TTL 0, then its data. */
    const uint8_t *r = m + plain;
    assert_memory_equal(r, key_wire, KEY_WIRE_LEN);
    r += KEY_WIRE_LEN;
    assert_memory_equal(r, "\x00\xfa\x00\xff\x00\x00\x00\x00", 8);
    r += 8;
    size_t rdlen = (size_t)r[0] << 8 | r[1];
    r += 2;
    assert_int_equal(rdlen, ALG_WIRE_LEN + 6 + 2 + 2 + 32 + 6);
    assert_memory_equal(r, alg_wire, ALG_WIRE_LEN);
    r += ALG_WIRE_LEN;
    uint8_t t[6];
    be(t, now, 6);
    assert_memory_equal(r, t, 6);
    assert_int_equal(r[6] << 8 | r[7], 300);
    assert_int_equal(r[8] << 8 | r[9], 32);
    assert_memory_equal(r + 10, mac, 32);
    assert_memory_equal(r + 42, "\x12\x34\x00\x00\x00\x00", 6);
    assert_int_equal((size_t)(r + 48 - m), len);
    /* The MAC, recomputed from RFC 8945 4.3.3's layout. */
    uint8_t in[SL_DNS_MSG_MAX + 100], want[32];
    size_t n = 0;
    unsigned ml;
    memcpy(in, before, plain);
    n = plain;
    memcpy(in + n, key_wire, KEY_WIRE_LEN);
    n += KEY_WIRE_LEN;
    n += be(in + n, 255, 2);
    n += be(in + n, 0, 4);
    memcpy(in + n, alg_wire, ALG_WIRE_LEN);
    n += ALG_WIRE_LEN;
    n += be(in + n, now, 6);
    n += be(in + n, 300, 2);
    n += be(in + n, 0, 2);
    n += be(in + n, 0, 2);
    HMAC(EVP_sha256(), k.secret, (int)k.secret_len, in, n, want, &ml);
    assert_memory_equal(mac, want, 32);
}

/* An answer to req (its MAC req_mac) as a server signs it: QR set, the
 * given rcode and TSIG error, the MAC over the request's MAC, the answer
 * and the TSIG variables. */
static size_t signed_answer(const struct sl_tsig_key *k, const uint8_t *req,
                            size_t req_plain, const uint8_t *req_mac, int rcode,
                            unsigned terr, uint64_t when, uint8_t *out)
{
    size_t n = req_plain;
    memcpy(out, req, n);
    out[2] |= 0x80;
    out[3] = (uint8_t)((out[3] & 0xf0) | rcode);
    out[10] = out[11] = 0;
    uint8_t in[SL_DNS_MSG_MAX + 200], mac[32];
    size_t m = 0;
    unsigned ml;
    m += be(in + m, 32, 2);
    memcpy(in + m, req_mac, 32);
    m += 32;
    memcpy(in + m, out, n);
    m += n;
    memcpy(in + m, key_wire, KEY_WIRE_LEN);
    m += KEY_WIRE_LEN;
    m += be(in + m, 255, 2);
    m += be(in + m, 0, 4);
    memcpy(in + m, alg_wire, ALG_WIRE_LEN);
    m += ALG_WIRE_LEN;
    m += be(in + m, when, 6);
    m += be(in + m, 300, 2);
    m += be(in + m, terr, 2);
    m += be(in + m, 0, 2);
    HMAC(EVP_sha256(), k->secret, (int)k->secret_len, in, m, mac, &ml);
    memcpy(out + n, key_wire, KEY_WIRE_LEN);
    n += KEY_WIRE_LEN;
    n += be(out + n, 250, 2);
    n += be(out + n, 255, 2);
    n += be(out + n, 0, 4);
    n += be(out + n, ALG_WIRE_LEN + 6 + 2 + 2 + 32 + 6, 2);
    memcpy(out + n, alg_wire, ALG_WIRE_LEN);
    n += ALG_WIRE_LEN;
    n += be(out + n, when, 6);
    n += be(out + n, 300, 2);
    n += be(out + n, 32, 2);
    memcpy(out + n, mac, 32);
    n += 32;
    memcpy(out + n, req, 2);
    n += 2;
    n += be(out + n, terr, 2);
    n += be(out + n, 0, 2);
    out[11] = 1;
    return n;
}

static void test_tsig_verify(void **state)
{
    (void)state;
    struct sl_tsig_key k = test_key();
    uint8_t m[SL_DNS_MSG_MAX], mac[32], ans[SL_DNS_MSG_MAX];
    size_t len = 0;
    const char *names[] = {"_acme-challenge.sluice.test"};
    const char *values[] = {"v1"};
    uint64_t now = 1764633600;
    assert_int_equal(sl_dns_update_build(0x4242, "sluice.test", 0, names,
                                         values, 1, 60, m, sizeof(m), &len),
                     0);
    size_t plain = len;
    assert_int_equal(sl_tsig_sign(&k, m, &len, sizeof(m), now, mac), 0);
    size_t n = signed_answer(&k, m, plain, mac, 0, 0, now + 1, ans);
    struct sl_dns_answer a;
    assert_int_equal(sl_dns_parse(ans, n, NULL, &k, mac, now, &a), 0);
    assert_int_equal(a.id, 0x4242);
    assert_int_equal(a.rcode, 0);
    assert_int_equal(a.has_tsig, 1);
    assert_int_equal(a.tsig_ok, 1);
    /* Another secret, a flipped byte, a stale time, another request. */
    struct sl_tsig_key other = k;
    other.secret[0] ^= 1;
    assert_int_equal(sl_dns_parse(ans, n, NULL, &other, mac, now, &a), 0);
    assert_int_equal(a.tsig_ok, 0);
    ans[20] ^= 1;
    assert_int_equal(sl_dns_parse(ans, n, NULL, &k, mac, now, &a), 0);
    assert_int_equal(a.tsig_ok, 0);
    ans[20] ^= 1;
    assert_int_equal(sl_dns_parse(ans, n, NULL, &k, mac, now + 3600, &a), 0);
    assert_int_equal(a.tsig_ok, 0);
    uint8_t wrong[32] = {0};
    assert_int_equal(sl_dns_parse(ans, n, NULL, &k, wrong, now, &a), 0);
    assert_int_equal(a.tsig_ok, 0);
    /* A refusal: NOTAUTH with TSIG error BADSIG. */
    n = signed_answer(&k, m, plain, mac, SL_DNS_NOTAUTH, SL_DNS_BADSIG, now,
                      ans);
    assert_int_equal(sl_dns_parse(ans, n, NULL, &k, mac, now, &a), 0);
    assert_int_equal(a.rcode, SL_DNS_NOTAUTH);
    assert_int_equal(a.tsig_error, SL_DNS_BADSIG);
    char buf[16];
    assert_string_equal(sl_dns_rcode_name(a.tsig_error, buf, sizeof(buf)),
                        "BADSIG");
    assert_string_equal(sl_dns_rcode_name(5, buf, sizeof(buf)), "REFUSED");
    assert_string_equal(sl_dns_rcode_name(23, buf, sizeof(buf)), "RCODE23");
}

static void test_parse_answers(void **state)
{
    (void)state;
    /* A TXT answer with a compressed owner, and an SOA in authority. */
    const uint8_t txt[] = {
        0x00, 0x07, 0x84, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00,
        /* question: _acme-challenge.sluice.test TXT IN (offset 12) */
        0x0f, '_', 'a', 'c', 'm', 'e', '-', 'c', 'h', 'a', 'l', 'l', 'e', 'n',
        'g', 'e', 0x06, 's', 'l', 'u', 'i', 'c', 'e', 0x04, 't', 'e', 's', 't',
        0x00, 0x00, 0x10, 0x00, 0x01,
        /* answer 1: ptr to 12, TXT IN 60, "ab" "cd" */
        0xc0, 0x0c, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x06,
        0x02, 'a', 'b', 0x02, 'c', 'd',
        /* answer 2: "v2" */
        0xc0, 0x0c, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x03,
        0x02, 'v', '2',
        /* authority: SOA owned by sluice.test (ptr to offset 28) */
        0xc0, 0x1c, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x02,
        0x00, 0x00};
    struct sl_dns_answer a;
    assert_int_equal(sl_dns_parse(txt, sizeof(txt),
                                  "_ACME-challenge.sluice.test.", NULL, NULL, 0,
                                  &a),
                     0);
    assert_int_equal(a.id, 7);
    assert_int_equal(a.ntxt, 2);
    assert_string_equal(a.txt[0], "abcd");
    assert_string_equal(a.txt[1], "v2");
    assert_int_equal(a.has_soa, 1);
    assert_string_equal(a.soa_owner, "sluice.test");
    assert_int_equal(a.has_tsig, 0);
    /* Other names' TXT records are not kept. */
    assert_int_equal(
        sl_dns_parse(txt, sizeof(txt), "other.test", NULL, NULL, 0, &a), 0);
    assert_int_equal(a.ntxt, 0);
    /* Every prefix is refused or parsed, never read past. */
    for (size_t i = 0; i < sizeof(txt); i++) {
        uint8_t *cut = malloc(i + 1);
        memcpy(cut, txt, i);
        (void)sl_dns_parse(cut, i, "x", NULL, NULL, 0, &a);
        free(cut);
    }
    /* A pointer loop, a forward pointer, a query (not a response). */
    uint8_t loop[] = {0,    1,  0x80, 0,  0, 0, 0, 1, 0, 0, 0, 0,
                      0xc0, 12, 0,    16, 0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sl_dns_parse(loop, sizeof(loop), NULL, NULL, NULL, 0, &a),
                     SL_EPARSE);
    loop[13] = 14;
    assert_int_equal(sl_dns_parse(loop, sizeof(loop), NULL, NULL, NULL, 0, &a),
                     SL_EPARSE);
    uint8_t q[] = {0, 1, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sl_dns_parse(q, sizeof(q), NULL, NULL, NULL, 0, &a),
                     SL_EPARSE);
    /* Truncated flag. */
    uint8_t tc[] = {0, 1, 0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(sl_dns_parse(tc, sizeof(tc), NULL, NULL, NULL, 0, &a), 0);
    assert_int_equal(a.tc, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_name_wire),
        cmocka_unit_test(test_update_build),
        cmocka_unit_test(test_query_build),
        cmocka_unit_test(test_tsig_sign),
        cmocka_unit_test(test_tsig_verify),
        cmocka_unit_test(test_parse_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
