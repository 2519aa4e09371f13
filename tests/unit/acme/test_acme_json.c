/* The ACME JSON shapes: what pebble and Let's Encrypt send, read into
 * structs; hostile variants refused; the payloads the hub sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "acme/acme_json.h"
#include "acme/acme_jws.h"
#include "core/error.h"

#define P(s) (s), strlen(s)

/* pebble 2.4's directory. */
static const char dir_pebble[] =
    "{\n"
    "   \"keyChange\": \"https://127.0.0.1:14000/rollover-account-key\",\n"
    "   \"meta\": {\n"
    "      \"externalAccountRequired\": false,\n"
    "      \"termsOfService\": \"data:text/plain,Do%20what%20thou%20wilt\"\n"
    "   },\n"
    "   \"newAccount\": \"https://127.0.0.1:14000/sign-me-up\",\n"
    "   \"newNonce\": \"https://127.0.0.1:14000/nonce-plz\",\n"
    "   \"newOrder\": \"https://127.0.0.1:14000/order-plz\",\n"
    "   \"revokeCert\": \"https://127.0.0.1:14000/revoke-cert\"\n"
    "}";

static void test_directory(void **state)
{
    (void)state;
    struct sl_acme_dir d;
    assert_int_equal(sl_acme_parse_dir(P(dir_pebble), &d), 0);
    assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(d.new_account, "https://127.0.0.1:14000/sign-me-up");
    assert_string_equal(d.new_order, "https://127.0.0.1:14000/order-plz");
    assert_int_equal(d.eab_required, 0);
    assert_int_equal(
        sl_acme_parse_dir(P("{\"newNonce\":\"https://a/n\",\"newAccount\":"
                            "\"https://a/a\",\"newOrder\":\"https://a/o\","
                            "\"meta\":{\"externalAccountRequired\":true}}"),
                          &d),
        0);
    assert_int_equal(d.eab_required, 1);
    /* A member missing, not a URL, not an object, a URL with a space, a
     * duplicate key. */
    assert_int_equal(sl_acme_parse_dir(P("{\"newNonce\":\"https://a/n\"}"), &d),
                     SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_dir(P("{\"newNonce\":\"file:///x\",\"newAccount\":"
                            "\"https://a/a\",\"newOrder\":\"https://a/o\"}"),
                          &d),
        SL_EPARSE);
    assert_int_equal(sl_acme_parse_dir(P("[1]"), &d), SL_EPARSE);
    assert_int_equal(sl_acme_parse_dir(P("{"), &d), SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_dir(P("{\"newNonce\":\"https://a/ n\",\"newAccount\":"
                            "\"https://a/a\",\"newOrder\":\"https://a/o\"}"),
                          &d),
        SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_dir(P("{\"newNonce\":\"https://a/n\",\"newNonce\":"
                            "\"https://a/n\",\"newAccount\":\"https://a/a\","
                            "\"newOrder\":\"https://a/o\"}"),
                          &d),
        SL_EPARSE);
    /* A URL too long to follow. */
    char *big = malloc(2000);
    int n = snprintf(big, 2000,
                     "{\"newNonce\":\"https://a/%0700d\","
                     "\"newAccount\":\"https://a/a\",\"newOrder\":"
                     "\"https://a/o\"}",
                     0);
    assert_int_equal(sl_acme_parse_dir(big, (size_t)n, &d), SL_ETOOBIG);
    free(big);
}

static void test_problem(void **state)
{
    (void)state;
    struct sl_acme_problem p;
    assert_int_equal(
        sl_acme_parse_problem(
            P("{\"type\":\"urn:ietf:params:acme:error:badNonce\","
              "\"detail\":\"JWS has an invalid anti-replay nonce\","
              "\"status\":400}"),
            &p),
        0);
    assert_string_equal(p.type, "badNonce");
    assert_string_equal(p.detail, "JWS has an invalid anti-replay nonce");
    /* Let's Encrypt's subproblems: the first one's detail is kept. */
    assert_int_equal(
        sl_acme_parse_problem(
            P("{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
              "\"detail\":\"Error creating new order\",\"subproblems\":[{"
              "\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":"
              "\"CAA record for x.test prevents issuance\",\"identifier\":"
              "{\"type\":\"dns\",\"value\":\"x.test\"}}]}"),
            &p),
        0);
    assert_string_equal(p.type, "rejectedIdentifier");
    assert_string_equal(p.detail, "Error creating new order; CAA record for "
                                  "x.test prevents issuance");
    /* Control characters of the server's text do not reach the log. */
    assert_int_equal(
        sl_acme_parse_problem(P("{\"type\":\"about:blank\",\"detail\":"
                                "\"a\\nb\\u001bc\"}"),
                              &p),
        0);
    assert_string_equal(p.type, "about:blank");
    assert_string_equal(p.detail, "a b c");
    /* A long detail is cut, not refused. */
    char body[2048];
    int n = snprintf(body, sizeof(body),
                     "{\"type\":\"x\",\"detail\":\"%01000d\"}", 0);
    assert_int_equal(sl_acme_parse_problem(body, (size_t)n, &p), 0);
    assert_int_equal(strlen(p.detail), SL_ACME_DETAIL_MAX - 1);
    /* No type, type not a string. */
    assert_int_equal(sl_acme_parse_problem(P("{\"detail\":\"d\"}"), &p),
                     SL_EPARSE);
    assert_int_equal(sl_acme_parse_problem(P("{\"type\":1}"), &p), SL_EPARSE);
}

static const char order_pending[] =
    "{\"status\":\"pending\",\"expires\":\"2026-12-03T02:00:00Z\","
    "\"identifiers\":[{\"type\":\"dns\",\"value\":\"ab1234567890.sluice.test\"}"
    "],"
    "\"finalize\":\"https://127.0.0.1:14000/finalize-order/Xy\","
    "\"authorizations\":[\"https://127.0.0.1:14000/authZ/Aa\","
    "\"https://127.0.0.1:14000/authZ/Bb\"]}";

static void test_order(void **state)
{
    (void)state;
    struct sl_acme_order o;
    assert_int_equal(sl_acme_parse_order(P(order_pending), &o), 0);
    assert_int_equal(o.status, SL_ACME_S_PENDING);
    assert_string_equal(o.finalize,
                        "https://127.0.0.1:14000/finalize-order/Xy");
    assert_string_equal(o.certificate, "");
    assert_int_equal(o.nauthz, 2);
    assert_string_equal(o.authz[1], "https://127.0.0.1:14000/authZ/Bb");
    assert_int_equal(o.has_error, 0);
    assert_int_equal(sl_acme_parse_order(
                         P("{\"status\":\"valid\",\"finalize\":\"https://a/f\","
                           "\"certificate\":\"https://a/c\",\"authorizations\":"
                           "[\"https://a/z\"]}"),
                         &o),
                     0);
    assert_int_equal(o.status, SL_ACME_S_VALID);
    assert_string_equal(o.certificate, "https://a/c");
    assert_int_equal(
        sl_acme_parse_order(
            P("{\"status\":\"invalid\",\"finalize\":\"https://a/f\","
              "\"authorizations\":[\"https://a/z\"],\"error\":{\"type\":"
              "\"urn:ietf:params:acme:error:caa\",\"detail\":\"no\"}}"),
            &o),
        0);
    assert_int_equal(o.has_error, 1);
    assert_string_equal(o.error.type, "caa");
    /* An empty finalize URL (found by fuzz_acme_json): no URL at all. */
    assert_int_equal(
        sl_acme_parse_order(P("{\"status\":\"invalid\",\"finalize\":\"\","
                              "\"authorizations\":[\"https://a/z\"]}"),
                            &o),
        SL_EPARSE);
    /* An unknown status, no authorizations, too many, not strings. */
    assert_int_equal(sl_acme_parse_order(P("{\"status\":\"weird\",\"finalize\":"
                                           "\"https://a/f\",\"authorizations\":"
                                           "[\"https://a/z\"]}"),
                                         &o),
                     SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_order(P("{\"status\":\"pending\",\"finalize\":"
                              "\"https://a/f\",\"authorizations\":[]}"),
                            &o),
        SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_order(P("{\"status\":\"pending\",\"finalize\":"
                              "\"https://a/f\",\"authorizations\":[\"a\","
                              "\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
                              "\"i\"]}"),
                            &o),
        SL_ETOOBIG);
    assert_int_equal(
        sl_acme_parse_order(P("{\"status\":\"pending\",\"finalize\":"
                              "\"https://a/f\",\"authorizations\":[1]}"),
                            &o),
        SL_EPARSE);
}

static const char authz_pebble[] =
    "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":"
    "\"Sluice.Test\"},\"challenges\":[{\"type\":\"http-01\",\"url\":"
    "\"https://127.0.0.1:14000/chalZ/h\",\"token\":\"tokH\",\"status\":"
    "\"pending\"},{\"type\":\"dns-01\",\"url\":"
    "\"https://127.0.0.1:14000/chalZ/d\",\"token\":\"tokD\",\"status\":"
    "\"pending\"},{\"type\":\"tls-alpn-01\",\"url\":"
    "\"https://127.0.0.1:14000/chalZ/t\",\"token\":\"tokT\",\"status\":"
    "\"pending\"}],\"expires\":\"2026-12-03T03:00:00Z\",\"wildcard\":true}";

static void test_authz(void **state)
{
    (void)state;
    struct sl_acme_authz a;
    assert_int_equal(sl_acme_parse_authz(P(authz_pebble), &a), 0);
    assert_int_equal(a.status, SL_ACME_S_PENDING);
    assert_string_equal(a.identifier, "sluice.test");
    assert_int_equal(a.wildcard, 1);
    assert_int_equal(a.nchall, 3);
    const struct sl_acme_chall *c = sl_acme_authz_find(&a, "tls-alpn-01");
    assert_non_null(c);
    assert_string_equal(c->token, "tokT");
    assert_string_equal(c->url, "https://127.0.0.1:14000/chalZ/t");
    assert_null(sl_acme_authz_find(&a, "tls-sni-01"));
    /* An invalid one carries the validator's words. */
    assert_int_equal(
        sl_acme_parse_authz(
            P("{\"status\":\"invalid\",\"identifier\":{\"type\":\"dns\","
              "\"value\":\"x.test\"},\"challenges\":[{\"type\":"
              "\"tls-alpn-01\",\"url\":\"https://a/c\",\"token\":\"t\","
              "\"status\":\"invalid\",\"error\":{\"type\":"
              "\"urn:ietf:params:acme:error:connection\",\"detail\":"
              "\"127.0.0.1: Connection refused\"}}]}"),
            &a),
        0);
    assert_int_equal(a.status, SL_ACME_S_INVALID);
    c = sl_acme_authz_find(&a, "tls-alpn-01");
    assert_int_equal(c->has_error, 1);
    assert_string_equal(c->error.type, "connection");
    assert_string_equal(c->error.detail, "127.0.0.1: Connection refused");
    /* An unknown challenge type with a long name is skipped. */
    assert_int_equal(
        sl_acme_parse_authz(
            P("{\"status\":\"valid\",\"identifier\":{\"type\":\"dns\","
              "\"value\":\"x.test\"},\"challenges\":[{\"type\":"
              "\"a-very-long-challenge-type-nobody-knows-01\",\"url\":"
              "\"https://a/c\"}]}"),
            &a),
        0);
    assert_int_equal(a.nchall, 0);
    /* Not a dns identifier; no challenges array. */
    assert_int_equal(
        sl_acme_parse_authz(P("{\"status\":\"valid\",\"identifier\":{"
                              "\"type\":\"ip\",\"value\":\"1.2.3.4\"},"
                              "\"challenges\":[]}"),
                            &a),
        SL_EPARSE);
    assert_int_equal(
        sl_acme_parse_authz(P("{\"status\":\"valid\",\"identifier\":{"
                              "\"type\":\"dns\",\"value\":\"x.test\"}}"),
                            &a),
        SL_EPARSE);
}

static void test_payloads(void **state)
{
    (void)state;
    char *s = sl_acme_new_account_payload("ops@example.com", NULL);
    assert_string_equal(s, "{\"termsOfServiceAgreed\":true,\"contact\":"
                           "[\"mailto:ops@example.com\"]}");
    free(s);
    s = sl_acme_new_account_payload(NULL, "{\"protected\":\"p\"}");
    assert_string_equal(s, "{\"termsOfServiceAgreed\":true,"
                           "\"externalAccountBinding\":{\"protected\":"
                           "\"p\"}}");
    free(s);
    assert_null(sl_acme_new_account_payload(NULL, "{bad"));
    const char *names[] = {"sluice.test", "*.sluice.test"};
    s = sl_acme_new_order_payload(names, 2);
    assert_string_equal(s, "{\"identifiers\":[{\"type\":\"dns\",\"value\":"
                           "\"sluice.test\"},{\"type\":\"dns\",\"value\":"
                           "\"*.sluice.test\"}]}");
    free(s);
    const uint8_t csr[] = {0x30, 0x82, 0xff};
    s = sl_acme_finalize_payload(csr, sizeof(csr));
    assert_string_equal(s, "{\"csr\":\"MIL_\"}");
    free(s);
}

static void test_retry_after(void **state)
{
    (void)state;
    int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(sl_acme_retry_after("120", now), 120);
    assert_int_equal(sl_acme_retry_after(" 3 ", now), 3);
    assert_int_equal(sl_acme_retry_after("999999999", now), 86400);
    assert_int_equal(sl_acme_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
                     60);
    assert_int_equal(sl_acme_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
                     0);
    assert_int_equal(sl_acme_retry_after("soon", now), -1);
    assert_int_equal(sl_acme_retry_after("12s", now), -1);
    assert_int_equal(sl_acme_retry_after("Sun, 06 Nov 1994 08:50:37 PST", now),
                     -1);
}

static void test_name_ok(void **state)
{
    (void)state;
    assert_true(sl_acme_name_ok("ab1234567890.tunnels.example.com", 0));
    assert_true(sl_acme_name_ok("*.sluice.test", 1));
    assert_false(sl_acme_name_ok("*.sluice.test", 0));
    assert_false(sl_acme_name_ok("localhost", 0));
    assert_false(sl_acme_name_ok("a..b", 0));
    assert_false(sl_acme_name_ok("-a.b", 0));
    assert_false(sl_acme_name_ok("a-.b", 0));
    assert_false(sl_acme_name_ok("a_b.c", 0));
    assert_false(sl_acme_name_ok("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory), cmocka_unit_test(test_problem),
        cmocka_unit_test(test_order),     cmocka_unit_test(test_authz),
        cmocka_unit_test(test_payloads),  cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_name_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
