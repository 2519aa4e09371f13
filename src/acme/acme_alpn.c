#include "acme/acme_alpn.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <uv.h>

#include "acme/acme_cert.h"

struct alpn_ent {
    struct alpn_ent *next;
    SSL_CTX *ctx;
    char name[];
};

struct sl_acme_alpn {
    struct alpn_ent *head;
    size_t count;
};

static const unsigned char acme_proto[] = "\x0a" SL_ACME_ALPN_PROTO;

/* Only acme-tls/1: a validator that does not offer it must not be
 * answered with the challenge certificate (RFC 8737 section 3). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, acme_proto,
                              sizeof(acme_proto) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *challenge_ctx(const char *name, const uint8_t digest[32])
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    SSL_CTX *ctx = NULL;
    if (sl_acme_alpn_cert(name, digest, &cert, &key) != 0)
        return NULL;
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        SSL_CTX_free(ctx);
        ctx = NULL;
        goto out;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
out:
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

struct sl_acme_alpn *sl_acme_alpn_new(void)
{
    return calloc(1, sizeof(struct sl_acme_alpn));
}

static struct alpn_ent **find(struct sl_acme_alpn *t, const char *name)
{
    struct alpn_ent **pp = &t->head;
    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

int sl_acme_alpn_add(struct sl_acme_alpn *t, const char *name,
                     const uint8_t digest[32])
{
    size_t len = strlen(name);
    struct alpn_ent *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return UV_ENOMEM;
    memcpy(e->name, name, len + 1);
    e->ctx = challenge_ctx(name, digest);
    if (e->ctx == NULL) {
        free(e);
        return UV_ENOMEM;
    }
    sl_acme_alpn_remove(t, name);
    e->next = t->head;
    t->head = e;
    t->count++;
    return 0;
}

void sl_acme_alpn_remove(struct sl_acme_alpn *t, const char *name)
{
    struct alpn_ent **pp = find(t, name);
    struct alpn_ent *e = *pp;
    if (e == NULL)
        return;
    *pp = e->next;
    SSL_CTX_free(e->ctx); /* live sessions hold their own reference */
    free(e);
    t->count--;
}

SSL *sl_acme_alpn_ssl(struct sl_acme_alpn *t, const char *name)
{
    struct alpn_ent *e = t != NULL ? *find(t, name) : NULL;
    if (e == NULL)
        return NULL;
    SSL *ssl = SSL_new(e->ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

size_t sl_acme_alpn_count(const struct sl_acme_alpn *t)
{
    return t->count;
}

void sl_acme_alpn_free(struct sl_acme_alpn *t)
{
    if (t == NULL)
        return;
    while (t->head != NULL)
        sl_acme_alpn_remove(t, t->head->name);
    free(t);
}
