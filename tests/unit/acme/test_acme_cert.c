/* Keys and certificates of the ACME client: the CSR, what is read back
 * from an issued chain, the TLS-ALPN-01 certificate and the table that
 * answers acme-tls/1 hellos with it; and the hub's certificate set taking
 * a certificate at run time (sl_tls_server_set_cert) without dropping
 * what live sessions use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "../tls/test_tls_support.h"
#include "acme/acme_alpn.h"
#include "acme/acme_cert.h"
#include "core/error.h"
#include "tls/tls_server.h"

static void test_csr(void **state)
{
    (void)state;
    EVP_PKEY *key = sl_acme_key_new();
    uint8_t *der = NULL;
    size_t len = 0;
    const char *names[] = {"sluice.test", "*.sluice.test"};
    assert_int_equal(sl_acme_csr(key, names, 2, &der, &len), 0);
    const uint8_t *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_int_equal(X509_REQ_verify(req, key), 1);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName,
                              cn, sizeof(cn));
    assert_string_equal(cn, "sluice.test");
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            gens = X509V3_EXT_d2i(e);
    }
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 1);
    assert_int_equal(g->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName),
                        "*.sluice.test");
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
}

/* A PEM chain (leaf, CA) for names, and its key's PEM. */
static void make_chain(X509 *ca, EVP_PKEY *ca_key, const char *const *names,
                       size_t n, long from_days, long to_days, char **chain,
                       char **key_pem, char serial[64])
{
    EVP_PKEY *k = sl_acme_key_new();
    X509 *x = leaf_for(ca, ca_key, k, names, n, from_days, to_days);
    BIO *b = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio_X509(b, x) && PEM_write_bio_X509(b, ca));
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    *chain = strndup(data, (size_t)len);
    BIO_free(b);
    assert_int_equal(sl_acme_key_pem(k, key_pem), 0);
    serial_of(x, serial, 64);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_chain_info(void **state)
{
    (void)state;
    X509 *ca;
    EVP_PKEY *ca_key;
    assert_int_equal(sl_tls_ca_make(time(NULL), &ca, &ca_key), 0);
    const char *names[] = {"ab1234567890.sluice.test"};
    char *chain, *key, *chain2, *key2, serial[64], serial2[64];
    make_chain(ca, ca_key, names, 1, 0, 90, &chain, &key, serial);
    make_chain(ca, ca_key, names, 1, 0, 90, &chain2, &key2, serial2);
    struct sl_acme_cert_info info;
    assert_int_equal(sl_acme_chain_info(chain, key, names[0], &info), 0);
    assert_string_equal(info.serial, serial);
    assert_true(info.not_after - info.not_before >= 89 * 86400);
    assert_non_null(strstr(info.issuer, "sluice local CA"));
    /* Another key, another name, not PEM. */
    assert_int_equal(sl_acme_chain_info(chain, key2, NULL, &info), SL_EPARSE);
    assert_int_equal(sl_acme_chain_info(chain, key, "zz.sluice.test", &info),
                     SL_EPARSE);
    assert_int_equal(sl_acme_chain_info("junk", NULL, NULL, &info), SL_EPARSE);
    /* A key read back from its PEM is the same key. */
    EVP_PKEY *k = NULL;
    assert_int_equal(sl_acme_key_from_pem(key, &k), 0);
    EVP_PKEY_free(k);
    assert_int_equal(sl_acme_key_from_pem("nope", &k), SL_EPARSE);
    free(chain);
    free(chain2);
    sl_acme_pem_free(key);
    sl_acme_pem_free(key2);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/* A client SSL for name offering protos (wire format). */
static SSL *client_for(SSL_CTX *ctx, const char *name,
                       const unsigned char *protos, unsigned len)
{
    SSL *s = SSL_new(ctx);
    SSL_set_tlsext_host_name(s, name);
    if (protos != NULL)
        SSL_set_alpn_protos(s, protos, len);
    SSL_set_connect_state(s);
    return s;
}

static void test_alpn_challenge(void **state)
{
    (void)state;
    uint8_t digest[32];
    for (int i = 0; i < 32; i++)
        digest[i] = (uint8_t)i;
    struct sl_acme_alpn *t = sl_acme_alpn_new();
    assert_null(sl_acme_alpn_ssl(t, "x.sluice.test"));
    assert_int_equal(sl_acme_alpn_add(t, "x.sluice.test", digest), 0);
    assert_int_equal(sl_acme_alpn_count(t), 1);
    assert_null(sl_acme_alpn_ssl(t, "y.sluice.test"));

    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    static const unsigned char acme[] = "\x0a"
                                        "acme-tls/1";
    static const unsigned char http[] = "\x08"
                                        "http/1.1";
    /* The validator: acme-tls/1 negotiated, the certificate carries the
     * digest in a critical acmeIdentifier extension and the name. */
    SSL *srv = sl_acme_alpn_ssl(t, "x.sluice.test");
    SSL *cli = client_for(cctx, "x.sluice.test", acme, sizeof(acme) - 1);
    assert_true(handshake(cli, srv));
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(cli, &sel, &sel_len);
    assert_int_equal(sel_len, 10);
    assert_memory_equal(sel, "acme-tls/1", 10);
    X509 *x = SSL_get0_peer_certificate(cli);
    assert_non_null(x);
    assert_int_equal(X509_check_host(x, "x.sluice.test", 0, 0, NULL), 1);
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int at = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(at >= 0);
    X509_EXTENSION *e = X509_get_ext(x, at);
    assert_int_equal(X509_EXTENSION_get_critical(e), 1);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(e);
    assert_int_equal(ASN1_STRING_length(v), 34);
    const uint8_t *d = ASN1_STRING_get0_data(v);
    assert_int_equal(d[0], 0x04);
    assert_int_equal(d[1], 0x20);
    assert_memory_equal(d + 2, digest, 32);
    ASN1_OBJECT_free(oid);
    SSL_free(cli);
    SSL_free(srv);
    /* A client that does not offer acme-tls/1 gets no session. */
    srv = sl_acme_alpn_ssl(t, "x.sluice.test");
    cli = client_for(cctx, "x.sluice.test", http, sizeof(http) - 1);
    assert_false(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);
    /* Removed: no more answers; a session made before still works. */
    srv = sl_acme_alpn_ssl(t, "x.sluice.test");
    sl_acme_alpn_remove(t, "x.sluice.test");
    assert_int_equal(sl_acme_alpn_count(t), 0);
    assert_null(sl_acme_alpn_ssl(t, "x.sluice.test"));
    cli = client_for(cctx, "x.sluice.test", acme, sizeof(acme) - 1);
    assert_true(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);
    SSL_CTX_free(cctx);
    sl_acme_alpn_free(t);
}

static void run_until_idle(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(2000);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void serial_by_sni(struct sl_tls_server *s, SSL_CTX *cctx,
                          const char *name, char *out)
{
    SSL *srv = sl_tls_server_ssl(s);
    static const unsigned char http[] = "\x08"
                                        "http/1.1";
    SSL *cli = client_for(cctx, name, http, sizeof(http) - 1);
    assert_true(handshake(cli, srv));
    peer_serial(cli, out, 64);
    SSL_free(cli);
    SSL_free(srv);
}

static uint64_t applied_seq;

static void on_applied(void *arg, uint64_t seq)
{
    (void)arg;
    applied_seq = seq;
}

static void test_server_set_cert(void **state)
{
    (void)state;
    char dir[256], err[512], got[64];
    tmp_make(dir, sizeof(dir));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mem_log log;
    log_open(&log);
    static const char *const alpn[] = {"http/1.1", NULL};
    struct sl_tls_server_opts o = {
        .state_dir = dir, .domain = "sluice.test", .alpn = alpn};
    struct sl_tls_server *s = NULL;
    assert_int_equal(
        sl_tls_server_new(&loop, &log.log, &o, &s, err, sizeof(err)), 0);
    const char *local = sl_tls_server_serial(s);
    char local_serial[64];
    snprintf(local_serial, sizeof(local_serial), "%s", local);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    serial_by_sni(s, cctx, "ab1234567890.sluice.test", got);
    assert_string_equal(got, local_serial); /* the local CA's wildcard */

    /* An ACME-like certificate for one identity, and the wildcard. */
    X509 *ca;
    EVP_PKEY *ca_key;
    assert_int_equal(sl_tls_ca_make(time(NULL), &ca, &ca_key), 0);
    const char *n1[] = {"ab1234567890.sluice.test"};
    const char *n2[] = {"sluice.test", "*.sluice.test"};
    char *c1, *k1, *c2, *k2, s1[64], s2[64];
    make_chain(ca, ca_key, n1, 1, 0, 90, &c1, &k1, s1);
    make_chain(ca, ca_key, n2, 2, 0, 90, &c2, &k2, s2);
    SSL *early = sl_tls_server_ssl(s); /* made before: keeps its set */
    sl_tls_server_on_applied(s, on_applied, NULL);
    assert_int_equal(sl_tls_server_set_count(s), 0);
    assert_int_equal(sl_tls_server_set_cert(s, n1[0], c1, k1), 0);
    assert_int_equal(sl_tls_server_set_cert(s, "sluice.test", c2, k2), 0);
    assert_int_equal(sl_tls_server_set_count(s), 2);
    assert_int_equal(applied_seq, 0); /* built on the pool, not yet in */
    run_until_idle(&loop);
    /* Both in service (the second call folded into a build after the
     * first one's). */
    assert_int_equal(applied_seq, 2);
    assert_non_null(strstr(log_text(&log), "added certificate(s) in service"));
    serial_by_sni(s, cctx, "ab1234567890.sluice.test", got);
    assert_string_equal(got, s1);
    serial_by_sni(s, cctx, "zz1234567890.sluice.test", got);
    assert_string_equal(got, s2); /* the added wildcard beats the local */
    serial_by_sni(s, cctx, "sluice.test", got);
    assert_string_equal(got, s2);
    static const unsigned char http[] = "\x08"
                                        "http/1.1";
    SSL *cli =
        client_for(cctx, "ab1234567890.sluice.test", http, sizeof(http) - 1);
    assert_true(handshake(cli, early));
    peer_serial(cli, got, sizeof(got));
    assert_string_equal(got, local_serial);
    SSL_free(cli);
    SSL_free(early);
    /* The default certificate (no SNI) and the serial the API shows stay
     * the local CA's. */
    assert_string_equal(sl_tls_server_serial(s), local_serial);

    /* Refused at once: not PEM, a key of another certificate. */
    assert_int_equal(sl_tls_server_set_cert(s, "x", "junk", k1), SL_EPARSE);
    assert_int_equal(sl_tls_server_set_cert(s, "x", c1, k2), SL_EPARSE);
    /* Replaced under the same slot, then removed. */
    char *c3, *k3, s3[64];
    make_chain(ca, ca_key, n1, 1, 0, 90, &c3, &k3, s3);
    assert_int_equal(sl_tls_server_set_cert(s, n1[0], c3, k3), 0);
    run_until_idle(&loop);
    serial_by_sni(s, cctx, "ab1234567890.sluice.test", got);
    assert_string_equal(got, s3);
    assert_int_equal(sl_tls_server_set_cert(s, n1[0], NULL, NULL), 0);
    assert_int_equal(sl_tls_server_set_cert(s, "sluice.test", NULL, NULL), 0);
    run_until_idle(&loop);
    serial_by_sni(s, cctx, "ab1234567890.sluice.test", got);
    assert_string_equal(got, local_serial);
    /* Removing what is not there changes nothing. */
    assert_int_equal(sl_tls_server_set_cert(s, "none", NULL, NULL), 0);

    /* SIGHUP keeps the added ones. */
    assert_int_equal(sl_tls_server_set_cert(s, n1[0], c1, k1), 0);
    sl_tls_server_reload(s);
    run_until_idle(&loop);
    serial_by_sni(s, cctx, "ab1234567890.sluice.test", got);
    assert_string_equal(got, s1);

    /* Freed with a build running. */
    assert_int_equal(sl_tls_server_set_cert(s, "sluice.test", c2, k2), 0);
    sl_tls_server_free(s);
    run_until_idle(&loop);
    SSL_CTX_free(cctx);
    free(c1);
    free(c2);
    free(c3);
    sl_acme_pem_free(k1);
    sl_acme_pem_free(k2);
    sl_acme_pem_free(k3);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    log_close(&log);
    assert_int_equal(uv_loop_close(&loop), 0);
    tmp_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_chain_info),
        cmocka_unit_test(test_alpn_challenge),
        cmocka_unit_test(test_server_set_cert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
