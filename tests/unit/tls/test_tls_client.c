#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "core/error.h"
#include "tls/tls_client.h"
#include "tls/tls_server.h"
#include "test_tls_support.h"

/* A hub certificate for hub.test and 127.0.0.1 from ca1, served by an
 * sl_tls_server; ca2 is a stranger. */
struct fixture {
    char dir[256];
    X509 *ca1, *ca2;
    EVP_PKEY *ca1_key, *ca2_key;
    char ca1_path[512], ca2_path[512], cert[512], key[512];
    char leaf_pin[SL_TLS_PIN_MAX], ca_pin[SL_TLS_PIN_MAX];
    uv_loop_t loop;
    struct sl_tls_server *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    tmp_make(f->dir, sizeof(f->dir));
    assert_int_equal(sl_tls_ca_make(time(NULL), &f->ca1, &f->ca1_key), 0);
    assert_int_equal(sl_tls_ca_make(time(NULL), &f->ca2, &f->ca2_key), 0);
    join(f->ca1_path, sizeof(f->ca1_path), f->dir, "ca1.pem");
    join(f->ca2_path, sizeof(f->ca2_path), f->dir, "ca2.pem");
    write_pair(f->ca1_path, f->ca1, NULL, NULL, NULL);
    write_pair(f->ca2_path, f->ca2, NULL, NULL, NULL);

    static const char *const names[] = {"hub.test", "127.0.0.1"};
    EVP_PKEY *k = sl_tls_ca_new_key();
    X509 *x = leaf_for(f->ca1, f->ca1_key, k, names, 2, 0, 30);
    join(f->cert, sizeof(f->cert), f->dir, "hub.pem");
    join(f->key, sizeof(f->key), f->dir, "hub-key.pem");
    write_pair(f->cert, x, NULL, f->key, k);
    assert_int_equal(sl_tls_pin_of_cert(x, f->leaf_pin, sizeof(f->leaf_pin)),
                     0);
    assert_int_equal(
        sl_tls_pin_of_cert_file(f->ca1_path, f->ca_pin, sizeof(f->ca_pin)), 0);
    X509_free(x);
    EVP_PKEY_free(k);

    uv_loop_init(&f->loop);
    const char *certs[1] = {f->cert};
    const char *keys[1] = {f->key};
    struct sl_tls_server_opts o = {
        .cert_files = certs, .key_files = keys, .ncerts = 1};
    char err[512];
    assert_int_equal(
        sl_tls_server_new(&f->loop, NULL, &o, &f->s, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sl_tls_server_free(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    X509_free(f->ca1);
    X509_free(f->ca2);
    EVP_PKEY_free(f->ca1_key);
    EVP_PKEY_free(f->ca2_key);
    tmp_remove(f->dir);
    free(f);
    return 0;
}

static struct sl_tls_client *client(const char *ca, const char *pin,
                                    int insecure)
{
    struct sl_tls_client_opts o = {
        .ca_file = ca, .pin = pin, .insecure = insecure, .alpn = "http/1.1"};
    struct sl_tls_client *c = NULL;
    char err[512];
    if (sl_tls_client_new(&o, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return c;
}

/* Handshake of c (for host) with srv (taken); why gets the check. */
static int dial(struct sl_tls_client *c, SSL *srv, const char *host,
                const char *key, char *why, size_t cap, int *resumed)
{
    SSL *cli = sl_tls_client_ssl(c, host, key);
    assert_non_null(cli);
    int ok = handshake(cli, srv);
    int checked = sl_tls_client_check(c, cli, why, cap);
    if (ok && checked != 0)
        fail_msg("handshake passed but the check says: %s", why);
    if (resumed != NULL)
        *resumed = sl_tls_client_resumed(cli);
    SSL_free(cli);
    SSL_free(srv);
    return ok && checked == 0;
}

static void test_verifies_chain_and_name(void **state)
{
    struct fixture *f = *state;
    char why[256];
    struct sl_tls_client *c = client(f->ca1_path, NULL, 0);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                     sizeof(why), NULL));
    assert_true(dial(c, sl_tls_server_ssl(f->s), "HUB.test", NULL, why,
                     sizeof(why), NULL));
    assert_true(dial(c, sl_tls_server_ssl(f->s), "127.0.0.1", NULL, why,
                     sizeof(why), NULL));

    assert_false(dial(c, sl_tls_server_ssl(f->s), "other.test", NULL, why,
                      sizeof(why), NULL));
    assert_string_equal(why, "wrong name (certificate is for hub.test, "
                             "127.0.0.1)");
    assert_false(dial(c, sl_tls_server_ssl(f->s), "127.0.0.2", NULL, why,
                      sizeof(why), NULL));
    assert_non_null(strstr(why, "wrong name"));
    sl_tls_client_free(c);

    /* Another CA. */
    c = client(f->ca2_path, NULL, 0);
    assert_false(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                      sizeof(why), NULL));
    assert_string_equal(why, "unknown issuer");
    sl_tls_client_free(c);

    /* The system store does not know our CA either. */
    c = client(NULL, NULL, 0);
    assert_false(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                      sizeof(why), NULL));
    assert_string_equal(why, "unknown issuer");
    sl_tls_client_free(c);

    /* Insecure takes anything. */
    c = client(f->ca2_path, NULL, 1);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "other.test", NULL, why,
                     sizeof(why), NULL));
    sl_tls_client_free(c);
}

/* A bare server context serving cert (for certificates sl_tls_server
 * refuses to load, and old protocol versions). */
static SSL *raw_server(X509 *x, EVP_PKEY *k, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    if (max_version != 0) {
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(ctx, max_version);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    assert_non_null(ssl);
    SSL_set_accept_state(ssl);
    return ssl;
}

static void test_expired_and_not_yet_valid(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"hub.test"};
    char why[256];
    EVP_PKEY *k = sl_tls_ca_new_key();
    struct sl_tls_client *c = client(f->ca1_path, NULL, 0);

    X509 *x = leaf_for(f->ca1, f->ca1_key, k, names, 1, -30, -1);
    assert_false(
        dial(c, raw_server(x, k, 0), "hub.test", NULL, why, sizeof(why), NULL));
    assert_non_null(strstr(why, "expired"));
    X509_free(x);

    x = leaf_for(f->ca1, f->ca1_key, k, names, 1, 2, 30);
    assert_false(
        dial(c, raw_server(x, k, 0), "hub.test", NULL, why, sizeof(why), NULL));
    assert_non_null(strstr(why, "not yet valid"));

    /* A hub stuck at TLS 1.1 is refused by the client. */
    x = (X509_free(x), leaf_for(f->ca1, f->ca1_key, k, names, 1, 0, 30));
    assert_false(dial(c, raw_server(x, k, TLS1_1_VERSION), "hub.test", NULL,
                      why, sizeof(why), NULL));
    assert_true(dial(c, raw_server(x, k, TLS1_2_VERSION), "hub.test", NULL, why,
                     sizeof(why), NULL));
    X509_free(x);
    EVP_PKEY_free(k);
    sl_tls_client_free(c);
}

static void test_pin(void **state)
{
    struct fixture *f = *state;
    char why[256], want[128];
    struct sl_tls_client *c = client(f->ca1_path, f->leaf_pin, 0);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                     sizeof(why), NULL));
    sl_tls_client_free(c);

    snprintf(want, sizeof(want), "pin mismatch (got %s)", f->leaf_pin);
    c = client(f->ca1_path, f->ca_pin, 0);
    assert_false(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                      sizeof(why), NULL));
    assert_string_equal(why, want);
    sl_tls_client_free(c);

    /* Insecure still checks a pin (as curl -k --pinnedpubkey does). */
    c = client(NULL, f->ca_pin, 1);
    assert_false(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                      sizeof(why), NULL));
    assert_string_equal(why, want);
    sl_tls_client_free(c);
    c = client(NULL, f->leaf_pin, 1);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "whatever", NULL, why,
                     sizeof(why), NULL));
    sl_tls_client_free(c);
}

static void test_resumption(void **state)
{
    struct fixture *f = *state;
    char why[256];
    int resumed = -1;
    struct sl_tls_client *c = client(f->ca1_path, NULL, 0);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", "hub.test:443",
                     why, sizeof(why), &resumed));
    assert_int_equal(resumed, 0);
    for (int i = 0; i < 3; i++) {
        assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", "hub.test:443",
                         why, sizeof(why), &resumed));
        assert_int_equal(resumed, 1);
    }
    /* Another key has no session; no key resumes nothing. */
    assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", "hub.test:8443",
                     why, sizeof(why), &resumed));
    assert_int_equal(resumed, 0);
    assert_true(dial(c, sl_tls_server_ssl(f->s), "hub.test", NULL, why,
                     sizeof(why), &resumed));
    assert_int_equal(resumed, 0);
    sl_tls_client_free(c);

    /* TLS 1.2 tickets too. */
    c = client(f->ca1_path, NULL, 0);
    for (int i = 0; i < 2; i++) {
        SSL *srv = sl_tls_server_ssl(f->s);
        SSL_set_max_proto_version(srv, TLS1_2_VERSION);
        assert_true(dial(c, srv, "hub.test", "k", why, sizeof(why), &resumed));
        assert_int_equal(resumed, i);
    }
    sl_tls_client_free(c);
}

static void test_bad_options(void **state)
{
    struct fixture *f = *state;
    char err[512], path[600];
    struct sl_tls_client *c = NULL;
    struct sl_tls_client_opts o = {0};

    join(path, sizeof(path), f->dir, "nope.pem");
    o.ca_file = path;
    assert_int_not_equal(sl_tls_client_new(&o, &c, err, sizeof(err)), 0);
    assert_non_null(strstr(err, path));
    assert_null(c);
    o.ca_file = f->key; /* a key, no certificate */
    assert_int_not_equal(sl_tls_client_new(&o, &c, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "no certificate found"));

    o.ca_file = NULL;
    const char *bad[] = {"sha1/abc", "sha256/", "sha256/not-base64!",
                         "sha256/AAAA", "bad"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.pin = bad[i];
        assert_int_equal(sl_tls_client_new(&o, &c, err, sizeof(err)),
                         SL_ECONFIG);
        assert_non_null(strstr(err, "pin"));
    }
}

/* An SSL outlives its client: the client goes with the last one. */
static void test_ssl_outlives_client(void **state)
{
    struct fixture *f = *state;
    struct sl_tls_client *c = client(f->ca1_path, NULL, 0);
    SSL *cli = sl_tls_client_ssl(c, "hub.test", "k");
    sl_tls_client_free(c);
    SSL *srv = sl_tls_server_ssl(f->s);
    assert_true(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verifies_chain_and_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_and_not_yet_valid, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ssl_outlives_client, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
