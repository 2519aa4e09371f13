#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <uv.h>

#include "core/error.h"
#include "tls/tls_client.h"
#include "tls/tls_server.h"
#include "test_tls_support.h"

static void file_mode(const char *dir, const char *name, mode_t want)
{
    char path[512];
    struct stat st;
    join(path, sizeof(path), dir, name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, want);
}

static void ca_fingerprint(const char *dir, unsigned char md[32])
{
    char path[512];
    X509 *x = NULL;
    STACK_OF(X509) *chain = NULL;
    unsigned int len = 0;
    join(path, sizeof(path), dir, "tls/ca.pem");
    assert_int_equal(sl_tls_load_certs(path, &x, &chain, NULL, 0), 0);
    assert_true(X509_digest(x, EVP_sha256(), md, &len));
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
}

/* Frees a server and runs the loop until its handles are closed. */
static void server_free(uv_loop_t *loop, struct sl_tls_server *s)
{
    sl_tls_server_free(s);
    uv_run(loop, UV_RUN_DEFAULT);
}

/* A client handshake against s for host; returns 1 on success and the
 * peer's serial in serial. */
static int connect_to(struct sl_tls_server *s, struct sl_tls_client *c,
                      const char *host, char *serial, size_t cap, char *why,
                      size_t whycap)
{
    SSL *srv = sl_tls_server_ssl(s);
    SSL *cli = sl_tls_client_ssl(c, host, NULL);
    assert_non_null(srv);
    assert_non_null(cli);
    int ok = handshake(cli, srv);
    peer_serial(cli, serial, cap);
    if (why != NULL) {
        why[0] = '\0';
        if (sl_tls_client_check(c, cli, why, whycap) != 0)
            ok = 0;
    }
    SSL_free(cli);
    SSL_free(srv);
    return ok;
}

static void test_local_ca_created_and_reused(void **state)
{
    (void)state;
    char dir[256], sub[512], serial1[64], serial2[64];
    unsigned char fp1[32], fp2[32];
    uv_loop_t loop;
    struct sl_tls_server *s = NULL;
    char err[512];
    uv_loop_init(&loop);
    tmp_make(dir, sizeof(dir));

    struct sl_tls_server_opts o = {.state_dir = dir, .domain = "localhost"};
    assert_int_equal(sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)),
                     0);
    join(sub, sizeof(sub), dir, "tls");
    file_mode(dir, "tls", 0700);
    file_mode(sub, "ca.pem", 0644);
    file_mode(sub, "ca-key.pem", 0600);
    file_mode(sub, "cert.pem", 0600);
    file_mode(sub, "key.pem", 0600);
    join(sub, sizeof(sub), dir, "tls/ca.pem");
    assert_string_equal(sl_tls_server_ca_path(s), sub);
    snprintf(serial1, sizeof(serial1), "%s", sl_tls_server_serial(s));
    ca_fingerprint(dir, fp1);
    server_free(&loop, s);

    /* The second start takes what is there. */
    s = NULL;
    assert_int_equal(sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)),
                     0);
    snprintf(serial2, sizeof(serial2), "%s", sl_tls_server_serial(s));
    ca_fingerprint(dir, fp2);
    assert_memory_equal(fp1, fp2, 32);
    assert_string_equal(serial1, serial2);

    /* curl --cacert ca.pem https://x.localhost/ in memory: the client
     * verifies the chain and the name, for a subdomain, the domain and
     * the loopback address. */
    struct sl_tls_client *c = NULL;
    struct sl_tls_client_opts co = {.ca_file = sub};
    assert_int_equal(sl_tls_client_new(&co, &c, err, sizeof(err)), 0);
    char got[64], why[256];
    const char *hosts[] = {"ab1234567890.localhost", "localhost", "127.0.0.1",
                           "::1", "UPPER.LocalHost"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        int ok = connect_to(s, c, hosts[i], got, sizeof(got), why, sizeof(why));
        if (!ok)
            fail_msg("%s: %s", hosts[i], why);
    }
    /* Two labels down is not ours: the default certificate, a wrong name. */
    assert_false(
        connect_to(s, c, "a.b.localhost", got, sizeof(got), why, sizeof(why)));
    assert_non_null(strstr(why, "wrong name"));
    sl_tls_client_free(c);
    server_free(&loop, s);

    /* A damaged CA is an error naming it, never replaced. */
    write_text(sub, "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                    "-----END CERTIFICATE-----\n");
    s = NULL;
    assert_int_not_equal(
        sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)), 0);
    assert_null(s);
    assert_non_null(strstr(err, "ca.pem"));
    write_text(sub, "");
    assert_int_not_equal(
        sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "ca.pem: no certificate found"));

    tmp_remove(dir);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The leaf is re-issued by the same CA once it is within 30 days of its
 * end; "now" is the test's hook. */
static void test_local_ca_renews_leaf(void **state)
{
    (void)state;
    char dir[256], tls[512], err[512];
    unsigned char fp1[32], fp2[32];
    int issued = -1;
    tmp_make(dir, sizeof(dir));
    join(tls, sizeof(tls), dir, "tls");
    time_t now = time(NULL);

    assert_int_equal(
        sl_tls_ca_ensure(tls, "localhost", now, &issued, err, sizeof(err)), 0);
    assert_int_equal(issued, 1);
    ca_fingerprint(dir, fp1);
    assert_int_equal(sl_tls_ca_ensure(tls, "localhost", now + 10 * 86400,
                                      &issued, err, sizeof(err)),
                     0);
    assert_int_equal(issued, 0);
    assert_int_equal(sl_tls_ca_ensure(tls, "localhost", now + 61 * 86400,
                                      &issued, err, sizeof(err)),
                     0);
    assert_int_equal(issued, 1);
    ca_fingerprint(dir, fp2);
    assert_memory_equal(fp1, fp2, 32);
    /* Another domain: a new leaf, same CA. */
    assert_int_equal(sl_tls_ca_ensure(tls, "example.test", now + 61 * 86400,
                                      &issued, err, sizeof(err)),
                     0);
    assert_int_equal(issued, 1);
    /* A broken leaf is ours to replace. */
    char leaf[600];
    join(leaf, sizeof(leaf), tls, "cert.pem");
    write_text(leaf, "garbage");
    assert_int_equal(sl_tls_ca_ensure(tls, "example.test", now + 61 * 86400,
                                      &issued, err, sizeof(err)),
                     0);
    assert_int_equal(issued, 1);
    ca_fingerprint(dir, fp2);
    assert_memory_equal(fp1, fp2, 32);
    tmp_remove(dir);
}

struct certset {
    char dir[256];
    X509 *ca;
    EVP_PKEY *ca_key;
    char cert[4][512];
    char key[4][512];
    char serial[4][64];
};

static void certset_make(struct certset *cs)
{
    tmp_make(cs->dir, sizeof(cs->dir));
    assert_int_equal(sl_tls_ca_make(time(NULL), &cs->ca, &cs->ca_key), 0);
    static const char *const n0[] = {"default.test"};
    static const char *const n1[] = {"*.example.com"};
    static const char *const n2[] = {"exact.example.com"};
    const char *const *names[3] = {n0, n1, n2};
    for (int i = 0; i < 4; i++) {
        char nm[32];
        /* The last one is RSA with its name in the CN only (no SAN). */
        EVP_PKEY *k = i == 3 ? EVP_RSA_gen(2048) : sl_tls_ca_new_key();
        assert_non_null(k);
        X509 *x = i == 3 ? sl_tls_ca_issue(cs->ca, cs->ca_key, k, NULL, 0,
                                           time(NULL) - 60, time(NULL) + 86400)
                         : leaf_for(cs->ca, cs->ca_key, k, names[i], 1, 0, 1);
        assert_non_null(x);
        if (i == 3) {
            X509_NAME *subj = X509_get_subject_name(x);
            assert_true(X509_NAME_add_entry_by_txt(
                subj, "CN", MBSTRING_ASC,
                (const unsigned char *)"Mixed.Example.ORG", -1, -1, 0));
            assert_true(X509_sign(x, cs->ca_key, EVP_sha256()));
        }
        snprintf(nm, sizeof(nm), "c%d.pem", i);
        join(cs->cert[i], sizeof(cs->cert[i]), cs->dir, nm);
        snprintf(nm, sizeof(nm), "k%d.pem", i);
        join(cs->key[i], sizeof(cs->key[i]), cs->dir, nm);
        write_pair(cs->cert[i], x, cs->ca, cs->key[i], k);
        serial_of(x, cs->serial[i], sizeof(cs->serial[i]));
        X509_free(x);
        EVP_PKEY_free(k);
    }
}

static void certset_free(struct certset *cs)
{
    X509_free(cs->ca);
    EVP_PKEY_free(cs->ca_key);
    tmp_remove(cs->dir);
}

static void test_sni_selection(void **state)
{
    (void)state;
    struct certset cs;
    certset_make(&cs);
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *certs[4] = {cs.cert[0], cs.cert[1], cs.cert[2], cs.cert[3]};
    const char *keys[4] = {cs.key[0], cs.key[1], cs.key[2], cs.key[3]};
    struct sl_tls_server_opts o = {
        .cert_files = certs, .key_files = keys, .ncerts = 4};
    struct sl_tls_server *s = NULL;
    char err[512];
    assert_int_equal(sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)),
                     0);
    assert_null(sl_tls_server_ca_path(s));
    assert_string_equal(sl_tls_server_serial(s), cs.serial[0]);

    struct sl_tls_client *c = NULL;
    struct sl_tls_client_opts co = {.insecure = 1};
    assert_int_equal(sl_tls_client_new(&co, &c, err, sizeof(err)), 0);
    static const struct {
        const char *host;
        int want;
    } cases[] = {
        {"exact.example.com", 2}, /* exact beats wildcard */
        {"EXACT.Example.COM", 2}, /* case-insensitive */
        {"other.example.com", 1}, /* wildcard */
        {"Other.EXAMPLE.com", 1},
        {"a.b.example.com", 0}, /* a wildcard covers one label */
        {"example.com", 0},
        {"unknown.test", 0}, /* unknown: the default */
        {"127.0.0.1", 0},    /* no SNI: the default */
        {"default.test", 0},
        {"mixed.example.org", 3}, /* the CN when there is no SAN */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char got[64];
        assert_true(connect_to(s, c, cases[i].host, got, sizeof(got), NULL, 0));
        if (strcmp(got, cs.serial[cases[i].want]) != 0)
            fail_msg("%s: got %s, want certificate %d", cases[i].host, got,
                     cases[i].want);
    }

    /* The SNI the client sent is there for the hub. */
    SSL *srv = sl_tls_server_ssl(s);
    SSL *cli = sl_tls_client_ssl(c, "other.example.com", NULL);
    assert_true(handshake(cli, srv));
    assert_string_equal(sl_tls_server_sni(srv), "other.example.com");
    assert_int_equal(SSL_version(srv), TLS1_3_VERSION);
    SSL_free(cli);
    SSL_free(srv);

    sl_tls_client_free(c);
    server_free(&loop, s);
    certset_free(&cs);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static SSL *raw_client(SSL_CTX *ctx, const char *alpn)
{
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, "default.test");
    if (alpn != NULL) {
        unsigned char wire[64];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        assert_int_equal(SSL_set_alpn_protos(ssl, wire, (unsigned)n + 1), 0);
    }
    return ssl;
}

static void test_alpn_and_versions(void **state)
{
    (void)state;
    struct certset cs;
    certset_make(&cs);
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *certs[1] = {cs.cert[0]};
    const char *keys[1] = {cs.key[0]};
    const char *const alpn[] = {"http/1.1", "sluice/1", NULL};
    struct sl_tls_server_opts o = {
        .cert_files = certs, .key_files = keys, .ncerts = 1, .alpn = alpn};
    struct sl_tls_server *s = NULL;
    char err[512];
    assert_int_equal(sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)),
                     0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);

    /* The server's list decides among what the client offers. */
    const char *offers[] = {"sluice/1", "http/1.1", NULL};
    const char *wants[] = {"sluice/1", "http/1.1", NULL};
    for (int i = 0; i < 3; i++) {
        SSL *cli = raw_client(ctx, offers[i]);
        SSL *srv = sl_tls_server_ssl(s);
        assert_true(handshake(cli, srv));
        const unsigned char *p = NULL;
        unsigned int len = 0;
        SSL_get0_alpn_selected(cli, &p, &len);
        if (wants[i] == NULL)
            assert_int_equal(len, 0);
        else
            assert_memory_equal(p, wants[i], len);
        SSL_free(cli);
        SSL_free(srv);
    }
    /* Nothing in common: no_application_protocol. */
    SSL *cli = raw_client(ctx, "h2");
    SSL *srv = sl_tls_server_ssl(s);
    assert_false(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);

    /* TLS 1.1 and 1.0 are refused by the server, TLS 1.2 served. */
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    cli = raw_client(ctx, NULL);
    srv = sl_tls_server_ssl(s);
    assert_false(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    cli = raw_client(ctx, NULL);
    srv = sl_tls_server_ssl(s);
    assert_true(handshake(cli, srv));
    assert_int_equal(SSL_version(srv), TLS1_2_VERSION);
    /* ECDHE with AES-GCM or ChaCha20 only. */
    const char *cipher = SSL_get_cipher_name(srv);
    assert_non_null(strstr(cipher, "ECDHE"));
    assert_true(strstr(cipher, "GCM") != NULL ||
                strstr(cipher, "CHACHA20") != NULL);
    SSL_free(cli);
    SSL_free(srv);
    /* A TLS 1.2 client with only CBC ciphers shares none. */
    SSL_CTX_set_cipher_list(ctx, "AES128-SHA:ECDHE-RSA-AES128-SHA");
    cli = raw_client(ctx, NULL);
    srv = sl_tls_server_ssl(s);
    assert_false(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);

    SSL_CTX_free(ctx);
    server_free(&loop, s);
    certset_free(&cs);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void expect_start_error(const char *cert, const char *key,
                               const char *want)
{
    const char *certs[1] = {cert};
    const char *keys[1] = {key};
    struct sl_tls_server_opts o = {
        .cert_files = certs, .key_files = keys, .ncerts = 1};
    struct sl_tls_server *s = NULL;
    char err[1024];
    err[0] = '\0';
    assert_int_not_equal(
        sl_tls_server_new(NULL, NULL, &o, &s, err, sizeof(err)), 0);
    assert_null(s);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_start_errors_name_the_file(void **state)
{
    (void)state;
    struct certset cs;
    certset_make(&cs);
    char missing[600], garbage[600], expired[600], ekey[600], want[1400];

    join(missing, sizeof(missing), cs.dir, "missing.pem");
    snprintf(want, sizeof(want), "%s: cannot open", missing);
    expect_start_error(missing, cs.key[0], want);
    expect_start_error(cs.cert[0], missing, want);

    join(garbage, sizeof(garbage), cs.dir, "garbage.pem");
    write_text(garbage, "this is not PEM\n");
    snprintf(want, sizeof(want), "%s: no certificate found", garbage);
    expect_start_error(garbage, cs.key[0], want);
    snprintf(want, sizeof(want), "%s: no private key found", garbage);
    expect_start_error(cs.cert[0], garbage, want);
    /* A key given as the certificate. */
    snprintf(want, sizeof(want), "%s: no certificate found", cs.key[0]);
    expect_start_error(cs.key[0], cs.key[0], want);
    write_text(garbage, "-----BEGIN CERTIFICATE-----\n@@@@\n"
                        "-----END CERTIFICATE-----\n");
    snprintf(want, sizeof(want), "%s: bad PEM certificate", garbage);
    expect_start_error(garbage, cs.key[0], want);

    snprintf(want, sizeof(want), "%s does not match %s", cs.key[1], cs.cert[0]);
    expect_start_error(cs.cert[0], cs.key[1], want);

    EVP_PKEY *k = sl_tls_ca_new_key();
    static const char *const names[] = {"old.test"};
    X509 *x = leaf_for(cs.ca, cs.ca_key, k, names, 1, -30, -1);
    join(expired, sizeof(expired), cs.dir, "expired.pem");
    join(ekey, sizeof(ekey), cs.dir, "expired-key.pem");
    write_pair(expired, x, NULL, ekey, k);
    X509_free(x);
    EVP_PKEY_free(k);
    snprintf(want, sizeof(want), "%s: expired on ", expired);
    expect_start_error(expired, ekey, want);

    certset_free(&cs);
}

static void run_until_idle(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_run(loop, UV_RUN_ONCE) != 0; i++)
        ;
}

static void test_reload(void **state)
{
    (void)state;
    struct certset cs;
    certset_make(&cs);
    char cert[600], key[600];
    join(cert, sizeof(cert), cs.dir, "live.pem");
    join(key, sizeof(key), cs.dir, "live-key.pem");

    /* Serve c0 from live.pem. */
    X509 *x = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *k = NULL;
    assert_int_equal(sl_tls_load_certs(cs.cert[0], &x, &chain, NULL, 0), 0);
    assert_int_equal(sl_tls_load_key(cs.key[0], &k, NULL, 0), 0);
    write_pair(cert, x, NULL, key, k);
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mem_log log;
    log_open(&log);
    const char *certs[1] = {cert};
    const char *keys[1] = {key};
    struct sl_tls_server_opts o = {
        .cert_files = certs, .key_files = keys, .ncerts = 1};
    struct sl_tls_server *s = NULL;
    char err[512], got[64];
    assert_int_equal(
        sl_tls_server_new(&loop, &log.log, &o, &s, err, sizeof(err)), 0);
    struct sl_tls_client *c = NULL;
    struct sl_tls_client_opts co = {.insecure = 1};
    assert_int_equal(sl_tls_client_new(&co, &c, err, sizeof(err)), 0);

    /* A session from before the reload, and an SSL made before it. */
    SSL *cli = sl_tls_client_ssl(c, "default.test", "hub:443");
    SSL *srv = sl_tls_server_ssl(s);
    assert_true(handshake(cli, srv));
    SSL_free(cli);
    SSL_free(srv);
    SSL *early = sl_tls_server_ssl(s);

    /* New files (c2's pair), reloaded on the pool. */
    assert_int_equal(rename(cs.cert[2], cert), 0);
    assert_int_equal(rename(cs.key[2], key), 0);
    sl_tls_server_reload(s);
    sl_tls_server_reload(s); /* coalesced with the running one */
    run_until_idle(&loop);
    assert_string_equal(sl_tls_server_serial(s), cs.serial[2]);
    assert_non_null(strstr(log_text(&log), "certificates reloaded"));
    assert_non_null(strstr(log_text(&log), cs.serial[2]));

    assert_true(connect_to(s, c, "default.test", got, sizeof(got), NULL, 0));
    assert_string_equal(got, cs.serial[2]);
    /* The SSL made before keeps its generation. */
    cli = sl_tls_client_ssl(c, "default.test", NULL);
    assert_true(handshake(cli, early));
    peer_serial(cli, got, sizeof(got));
    assert_string_equal(got, cs.serial[0]);
    SSL_free(cli);
    SSL_free(early);
    /* The ticket keys stayed: the old session resumes. */
    cli = sl_tls_client_ssl(c, "default.test", "hub:443");
    srv = sl_tls_server_ssl(s);
    assert_true(handshake(cli, srv));
    assert_true(sl_tls_client_resumed(cli));
    SSL_free(cli);
    SSL_free(srv);

    /* A broken file: the old certificates stay, one error names it. */
    write_text(cert, "broken\n");
    sl_tls_server_reload(s);
    run_until_idle(&loop);
    assert_string_equal(sl_tls_server_serial(s), cs.serial[2]);
    char want[700];
    snprintf(want, sizeof(want), "%s: no certificate found", cert);
    const char *text = log_text(&log);
    assert_non_null(strstr(text, "reload failed"));
    assert_non_null(strstr(text, want));
    assert_true(connect_to(s, c, "default.test", got, sizeof(got), NULL, 0));
    assert_string_equal(got, cs.serial[2]);

    /* Freed while a reload runs: the job finishes, then the memory goes. */
    sl_tls_server_reload(s);
    sl_tls_server_free(s);
    run_until_idle(&loop);

    sl_tls_client_free(c);
    log_close(&log);
    certset_free(&cs);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The local CA re-checks (and here re-issues) on SIGHUP too. */
static void test_local_ca_reload(void **state)
{
    (void)state;
    char dir[256], err[512], tls[512], leaf[700];
    uv_loop_t loop;
    uv_loop_init(&loop);
    tmp_make(dir, sizeof(dir));
    struct sl_tls_server_opts o = {.state_dir = dir, .domain = "Example.Test"};
    struct sl_tls_server *s = NULL;
    assert_int_equal(sl_tls_server_new(&loop, NULL, &o, &s, err, sizeof(err)),
                     0);
    char before[64];
    snprintf(before, sizeof(before), "%s", sl_tls_server_serial(s));
    join(tls, sizeof(tls), dir, "tls");
    join(leaf, sizeof(leaf), tls, "cert.pem");
    unlink(leaf);
    sl_tls_server_reload(s);
    run_until_idle(&loop);
    assert_string_not_equal(before, sl_tls_server_serial(s));

    /* A two-label domain: the wildcard serves subdomains. */
    char ca[700], got[64], why[256];
    join(ca, sizeof(ca), tls, "ca.pem");
    struct sl_tls_client *c = NULL;
    struct sl_tls_client_opts co = {.ca_file = ca};
    assert_int_equal(sl_tls_client_new(&co, &c, err, sizeof(err)), 0);
    if (!connect_to(s, c, "ab1234567890.example.test", got, sizeof(got), why,
                    sizeof(why)))
        fail_msg("%s", why);
    assert_string_equal(got, sl_tls_server_serial(s));
    sl_tls_client_free(c);
    server_free(&loop, s);
    tmp_remove(dir);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_ca_created_and_reused),
        cmocka_unit_test(test_local_ca_renews_leaf),
        cmocka_unit_test(test_sni_selection),
        cmocka_unit_test(test_alpn_and_versions),
        cmocka_unit_test(test_start_errors_name_the_file),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_local_ca_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
