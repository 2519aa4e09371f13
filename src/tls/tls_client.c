#include "tls/tls_client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "core/error.h"
#include "tls/tls_util.h"

#define SESS_MAX 64 /* session keys remembered; the oldest goes first */

struct sess_ent {
    char *key;
    SSL_SESSION *sess;
    uint64_t used;
};

struct sl_tls_client {
    unsigned refs; /* the owner's and one per live SSL */
    SSL_CTX *ctx;
    unsigned char pin[32];
    int has_pin;
    int insecure;
    struct sess_ent sess[SESS_MAX];
    size_t nsess;
    uint64_t clock;
};

/* What an SSL of ours carries (ex_data), freed with it. */
struct conn {
    struct sl_tls_client *c;
    char *key;  /* session key, or NULL */
    X509 *leaf; /* the peer's certificate as seen in verification */
};

static void client_unref(struct sl_tls_client *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    for (size_t i = 0; i < c->nsess; i++) {
        free(c->sess[i].key);
        SSL_SESSION_free(c->sess[i].sess);
    }
    SSL_CTX_free(c->ctx);
    free(c);
}

static void conn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                         long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct conn *cn = ptr;
    if (cn == NULL)
        return;
    free(cn->key);
    X509_free(cn->leaf);
    client_unref(cn->c);
    free(cn);
}

/* Process-wide by OpenSSL's design; written once, then only read. */
static CRYPTO_ONCE conn_index_once = CRYPTO_ONCE_STATIC_INIT;
static int conn_index = -1;

static void conn_index_init(void)
{
    conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_ex_free);
}

static int conn_ex_index(void)
{
    if (!CRYPTO_THREAD_run_once(&conn_index_once, conn_index_init))
        return -1;
    return conn_index;
}

static struct conn *conn_of(const SSL *ssl)
{
    int idx = conn_ex_index();
    return idx >= 0 ? SSL_get_ex_data(ssl, idx) : NULL;
}

static int pin_matches(const struct sl_tls_client *c, X509 *x)
{
    unsigned char *der = NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    int len = i2d_PUBKEY(X509_get0_pubkey(x), &der);
    if (len <= 0)
        return 0;
    int ok = EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) &&
             mdlen == sizeof(md) && CRYPTO_memcmp(md, c->pin, sizeof(md)) == 0;
    OPENSSL_free(der);
    return ok;
}

/* Replaces OpenSSL's chain verification so the pin is checked in the same
 * place: a mismatch fails the handshake like a bad chain does. */
static int on_cert_verify(X509_STORE_CTX *xs, void *arg)
{
    struct sl_tls_client *c = arg;
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    struct conn *cn = ssl != NULL ? conn_of(ssl) : NULL;
    /* Kept for sl_tls_client_check: a failed handshake leaves no peer
     * certificate in the session. */
    if (cn != NULL && leaf != NULL && X509_up_ref(leaf)) {
        X509_free(cn->leaf);
        cn->leaf = leaf;
    }
    int ok = 1;
    if (!c->insecure)
        ok = X509_verify_cert(xs) > 0;
    if (ok && c->has_pin && (leaf == NULL || !pin_matches(c, leaf))) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        ok = 0;
    }
    return ok;
}

static struct sess_ent *sess_find(struct sl_tls_client *c, const char *key)
{
    for (size_t i = 0; i < c->nsess; i++)
        if (strcmp(c->sess[i].key, key) == 0)
            return &c->sess[i];
    return NULL;
}

/* Every new session replaces the last one of its key (TLS 1.3 tickets
 * are meant for one use; the newest is the one the hub issued last). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *cn = conn_of(ssl);
    if (cn == NULL || cn->key == NULL)
        return 0;
    struct sl_tls_client *c = cn->c;
    /* Our own copy: OpenSSL marks the SSL's session not resumable when the
     * SSL is freed without a close_notify (a reset, a killed process),
     * which must not cost the next connection its resumption. */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (copy == NULL)
        return 0;
    struct sess_ent *e = sess_find(c, cn->key);
    if (e == NULL) {
        if (c->nsess < SESS_MAX) {
            e = &c->sess[c->nsess];
            e->key = strdup(cn->key);
            if (e->key == NULL) {
                SSL_SESSION_free(copy);
                return 0;
            }
            e->sess = NULL;
            c->nsess++;
        } else {
            e = &c->sess[0];
            for (size_t i = 1; i < c->nsess; i++)
                if (c->sess[i].used < e->used)
                    e = &c->sess[i];
            char *key = strdup(cn->key);
            if (key == NULL) {
                SSL_SESSION_free(copy);
                return 0;
            }
            free(e->key);
            e->key = key;
        }
    }
    SSL_SESSION_free(e->sess);
    e->sess = copy;
    e->used = ++c->clock;
    return 0; /* sess stays OpenSSL's */
}

static int parse_pin(const char *pin, unsigned char out[32])
{
    const char *b64 = pin + 7;
    unsigned char buf[36];
    if (strncmp(pin, "sha256/", 7) != 0 || strlen(b64) != 44 ||
        b64[43] != '=' || b64[42] == '=')
        return 0;
    /* 44 characters decode to 33 bytes, the last one from the padding. */
    if (EVP_DecodeBlock(buf, (const unsigned char *)b64, 44) != 33)
        return 0;
    memcpy(out, buf, 32);
    return 1;
}

int sl_tls_client_new(const struct sl_tls_client_opts *o,
                      struct sl_tls_client **out, char *err, size_t errcap)
{
    char reason[160];
    int rc = UV_ENOMEM;
    struct sl_tls_client *c = calloc(1, sizeof(*c));
    if (c == NULL || conn_ex_index() < 0)
        goto nomem;
    c->refs = 1;
    c->insecure = o->insecure;
    if (o->pin != NULL) {
        if (!parse_pin(o->pin, c->pin)) {
            sl_tls_errf(err, errcap,
                        "bad pin \"%s\": expected sha256/<base64 of 32 bytes>",
                        o->pin);
            rc = SL_ECONFIG;
            goto fail;
        }
        c->has_pin = 1;
    }
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        goto nomem;
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_ENABLE_KTLS
    opts |= SSL_OP_ENABLE_KTLS; /* a no-op where the kernel lacks kTLS */
#endif
    SSL_CTX_set_options(c->ctx, opts);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION))
        goto nomem;
    SSL_CTX_set_session_cache_mode(
        c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);

    if (o->ca_file != NULL) {
        /* Our own read first, for an error that names the file. */
        X509 *leaf = NULL;
        STACK_OF(X509) *chain = NULL;
        rc = sl_tls_load_certs(o->ca_file, &leaf, &chain, err, errcap);
        if (rc != 0)
            goto fail;
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        if (SSL_CTX_load_verify_file(c->ctx, o->ca_file) != 1) {
            sl_tls_errf(err, errcap, "%s: %s", o->ca_file,
                        sl_tls_ossl_reason(reason, sizeof(reason)));
            rc = SL_EPARSE;
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        sl_tls_errf(err, errcap, "cannot use the system's CA store (%s)",
                    sl_tls_ossl_reason(reason, sizeof(reason)));
        rc = SL_ECONFIG;
        goto fail;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(c->ctx, on_cert_verify, c);

    if (o->alpn != NULL) {
        size_t n = strlen(o->alpn);
        unsigned char wire[256];
        if (n == 0 || n > 255) {
            sl_tls_errf(err, errcap, "bad ALPN protocol name \"%s\"", o->alpn);
            rc = SL_ECONFIG;
            goto fail;
        }
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, o->alpn, n);
        if (SSL_CTX_set_alpn_protos(c->ctx, wire, (unsigned)n + 1) != 0)
            goto nomem;
    }
    ERR_clear_error();
    *out = c;
    return 0;
nomem:
    rc = UV_ENOMEM;
    sl_tls_errf(err, errcap, "out of memory");
fail:
    ERR_clear_error();
    if (c != NULL)
        client_unref(c);
    return rc;
}

SSL *sl_tls_client_ssl(struct sl_tls_client *c, const char *host,
                       const char *session_key)
{
    char name[256];
    struct conn *cn = NULL;
    SSL *ssl = SSL_new(c->ctx);
    if (ssl == NULL)
        goto fail;
    cn = calloc(1, sizeof(*cn));
    if (cn == NULL)
        goto fail;
    if (session_key != NULL && (cn->key = strdup(session_key)) == NULL)
        goto fail;
    if (!SSL_set_ex_data(ssl, conn_ex_index(), cn))
        goto fail;
    cn->c = c;
    c->refs++;
    cn = NULL; /* the SSL owns it now */
    SSL_set_connect_state(ssl);

    /* "[::1]" as a URL writes it. */
    size_t len = host != NULL ? strlen(host) : 0;
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(name))
        goto fail;
    memcpy(name, host, len);
    name[len] = '\0';

    int ip = sl_tls_is_ip(name);
    if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail;
    if (!c->insecure) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1
               : X509_VERIFY_PARAM_set1_host(param, name, 0) != 1)
            goto fail;
    }
    if (session_key != NULL) {
        struct sess_ent *e = sess_find(c, session_key);
        /* A copy again, for the same reason as in on_new_session. */
        SSL_SESSION *copy = e != NULL && SSL_SESSION_is_resumable(e->sess)
                                ? SSL_SESSION_dup(e->sess)
                                : NULL;
        if (copy != NULL) {
            if (SSL_set_session(ssl, copy) == 1)
                e->used = ++c->clock;
            SSL_SESSION_free(copy);
        }
    }
    ERR_clear_error();
    return ssl;
fail:
    ERR_clear_error();
    if (cn != NULL) {
        free(cn->key);
        free(cn);
    }
    SSL_free(ssl);
    return NULL;
}

int sl_tls_client_check(struct sl_tls_client *c, SSL *ssl, char *why,
                        size_t cap)
{
    struct conn *cn = conn_of(ssl);
    X509 *leaf = cn != NULL && cn->leaf != NULL
                     ? cn->leaf
                     : SSL_get0_peer_certificate(ssl);
    long r = SSL_get_verify_result(ssl);
    char buf[200];
    if (r == X509_V_OK) {
        if (leaf == NULL) {
            sl_tls_errf(why, cap, "no certificate received");
            return SL_EDENIED;
        }
        if (c->has_pin && !pin_matches(c, leaf))
            r = X509_V_ERR_APPLICATION_VERIFICATION;
        else
            return 0;
    }
    switch (r) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        sl_tls_errf(why, cap, "unknown issuer");
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (leaf != NULL) {
            sl_tls_time_str(X509_get0_notAfter(leaf), buf, sizeof(buf));
            sl_tls_errf(why, cap, "expired (on %s)", buf);
        } else {
            sl_tls_errf(why, cap, "expired");
        }
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (leaf != NULL) {
            sl_tls_time_str(X509_get0_notBefore(leaf), buf, sizeof(buf));
            sl_tls_errf(why, cap, "not yet valid (until %s)", buf);
        } else {
            sl_tls_errf(why, cap, "not yet valid");
        }
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        if (leaf != NULL) {
            sl_tls_cert_names_str(leaf, buf, sizeof(buf));
            sl_tls_errf(why, cap, "wrong name (certificate is for %s)", buf);
        } else {
            sl_tls_errf(why, cap, "wrong name");
        }
        break;
    case X509_V_ERR_APPLICATION_VERIFICATION:
        if (leaf != NULL && sl_tls_pin_of_cert(leaf, buf, sizeof(buf)) == 0)
            sl_tls_errf(why, cap, "pin mismatch (got %s)", buf);
        else
            sl_tls_errf(why, cap, "pin mismatch");
        break;
    default:
        sl_tls_errf(why, cap, "%s", X509_verify_cert_error_string(r));
        break;
    }
    return SL_EDENIED;
}

int sl_tls_client_resumed(const SSL *ssl)
{
    return SSL_session_reused(ssl) == 1;
}

void sl_tls_client_free(struct sl_tls_client *c)
{
    client_unref(c);
}
