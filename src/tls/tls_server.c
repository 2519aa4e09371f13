#include "tls/tls_server.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/error.h"
#include "core/statedir.h"
#include "tls/tls_ca.h"
#include "tls/tls_util.h"

#define ERRCAP 512
#define TICKET_KEYS_LEN 80 /* name 16, HMAC 32, AES 32: OpenSSL 3's size */
#define ISSUED_MAX 4096    /* on-demand certificates cached per generation */
#define RENEW_CHECK_MS (24u * 3600u * 1000u)

struct name_ent {
    struct name_ent *next;
    uint32_t hash;
    size_t cert;  /* index into gen->certs */
    X509 *issued; /* the on-demand table only */
    char name[];  /* lowercase */
};

struct name_table {
    struct name_ent **buckets;
    size_t mask; /* bucket count - 1 */
    size_t count;
};

struct cert_slot {
    SSL_CTX *ctx;
    char serial[SL_TLS_SERIAL_MAX];
};

/* One set of contexts. Shared by the server (one reference) and every SSL
 * made from it (one each, dropped in SSL_free through ex_data), so a
 * reload never pulls a context from under a handshake. Loop thread only,
 * once published. */
struct gen {
    unsigned refs;
    struct cert_slot *certs;
    size_t ncerts;
    size_t nbase; /* the given (or local CA) ones; added ones follow */
    struct name_table exact;
    struct name_table wild; /* keyed by what follows "*." */
    unsigned char *alpn;    /* wire format; NULL: no ALPN */
    size_t alpn_len;
    /* The local CA's on-demand certificates (a domain of one label): */
    X509 *ca;
    EVP_PKEY *ca_key;
    EVP_PKEY *leaf_key;
    char *domain;
    struct name_table issued;
};

/* What a generation is built from; immutable after sl_tls_server_new, so
 * the thread pool reads it without a lock. */
struct cfg {
    char **cert_files;
    char **key_files;
    size_t ncerts;
    char *tls_dir; /* the local CA's folder, or NULL */
    char *domain;  /* lowercase */
    unsigned char *alpn;
    size_t alpn_len;
    unsigned char ticket_keys[TICKET_KEYS_LEN];
};

/* A certificate added at run time (sl_tls_server_set_cert), as PEM. */
struct extra {
    struct extra *next;
    char *slot;
    char *chain_pem;
    char *key_pem;
};

/* What a reload job reads of the extras: its own copies, so the loop may
 * change the list while the job runs. */
struct extra_snap {
    char *slot;
    char *chain_pem;
    char *key_pem;
};

struct reload_job {
    uv_work_t req;
    struct sl_tls_server *s;
    int renew_only; /* the daily check: a new generation only if re-issued */
    int for_set;    /* made for sl_tls_server_set_cert (the log says so) */
    struct extra_snap *extras;
    size_t nextras;
    uint64_t set_seq; /* set_cert calls its extras hold */
    int rc;
    int issued;
    struct gen *gen;
    char err[ERRCAP];
};

struct sl_tls_server {
    uv_loop_t *loop;
    struct sl_log *log;
    struct cfg cfg;
    struct gen *gen;
    char *ca_path;
    uv_timer_t renew_timer;
    int timer_on;
    int timer_closing;
    struct reload_job *job;
    int reload_again; /* RELOAD_FILES and/or RELOAD_SET */
    int freeing;
    uint64_t set_seq; /* sl_tls_server_set_cert calls so far */
    sl_tls_server_applied_cb applied_cb;
    void *applied_arg;
    struct extra *extras; /* newest first */
    size_t nextras;
};

#define RELOAD_FILES 1
#define RELOAD_SET 2

/* ---- names ---------------------------------------------------------- */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static int table_init(struct name_table *t, size_t nbuckets)
{
    t->buckets = calloc(nbuckets, sizeof(*t->buckets));
    t->mask = nbuckets - 1;
    t->count = 0;
    return t->buckets != NULL ? 0 : UV_ENOMEM;
}

static void table_clear(struct name_table *t)
{
    if (t->buckets == NULL)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        struct name_ent *e = t->buckets[i];
        while (e != NULL) {
            struct name_ent *next = e->next;
            X509_free(e->issued);
            free(e);
            e = next;
        }
        t->buckets[i] = NULL;
    }
    t->count = 0;
}

static void table_free(struct name_table *t)
{
    table_clear(t);
    free(t->buckets);
    t->buckets = NULL;
}

static struct name_ent *table_get(const struct name_table *t, const char *name)
{
    if (t->buckets == NULL)
        return NULL;
    uint32_t h = name_hash(name);
    for (struct name_ent *e = t->buckets[h & t->mask]; e != NULL; e = e->next)
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void table_grow(struct name_table *t)
{
    size_t n = (t->mask + 1) * 2;
    struct name_ent **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i <= t->mask; i++) {
        struct name_ent *e = t->buckets[i];
        while (e != NULL) {
            struct name_ent *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = n - 1;
}

/* name is lowercase. The first certificate naming it keeps it. Returns
 * the entry (new or old) or NULL (out of memory). */
static struct name_ent *table_put(struct name_table *t, const char *name,
                                  size_t cert)
{
    struct name_ent *e = table_get(t, name);
    if (e != NULL)
        return e;
    size_t len = strlen(name);
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->name, name, len + 1);
    e->hash = name_hash(name);
    e->cert = cert;
    e->next = t->buckets[e->hash & t->mask];
    t->buckets[e->hash & t->mask] = e;
    if (++t->count > t->mask + 1)
        table_grow(t);
    return e;
}

/* Lowercases into out; 0 if it does not fit or holds a NUL. A trailing
 * dot (an absolute name) is dropped. */
static int lower_name(const char *s, size_t len, char *out, size_t cap)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len >= cap || memchr(s, '\0', len) != NULL)
        return 0;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
    return 1;
}

/* ---- generations ---------------------------------------------------- */

static void gen_free(struct gen *g)
{
    for (size_t i = 0; i < g->ncerts; i++)
        SSL_CTX_free(g->certs[i].ctx);
    free(g->certs);
    table_free(&g->exact);
    table_free(&g->wild);
    table_free(&g->issued);
    free(g->alpn);
    X509_free(g->ca);
    EVP_PKEY_free(g->ca_key);
    EVP_PKEY_free(g->leaf_key);
    free(g->domain);
    free(g);
}

static void gen_unref(struct gen *g)
{
    if (g != NULL && --g->refs == 0)
        gen_free(g);
}

static void gen_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                        long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    gen_unref(ptr);
}

/* OpenSSL's ex_data indexes are process-wide by design; this one is
 * written once and only read after. */
static CRYPTO_ONCE gen_index_once = CRYPTO_ONCE_STATIC_INIT;
static int gen_index = -1;

static void gen_index_init(void)
{
    gen_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, gen_ex_free);
}

static int gen_ex_index(void)
{
    if (!CRYPTO_THREAD_run_once(&gen_index_once, gen_index_init))
        return -1;
    return gen_index;
}

/* A certificate for exactly name from the local CA, cached. */
static X509 *issued_cert(struct gen *g, const char *name)
{
    struct name_ent *e = table_get(&g->issued, name);
    if (e != NULL)
        return e->issued;
    /* A bound on what unknown names can make us keep; everything is
     * re-issued on demand after the flush. */
    if (g->issued.count >= ISSUED_MAX)
        table_clear(&g->issued);
    time_t now = time(NULL);
    time_t not_after = now + (time_t)SL_TLS_LEAF_DAYS * 86400;
    const char *names[1] = {name};
    X509 *x = sl_tls_ca_issue(g->ca, g->ca_key, g->leaf_key, names, 1,
                              now - 3600, not_after);
    if (x == NULL)
        return NULL;
    e = table_put(&g->issued, name, 0);
    if (e == NULL) {
        X509_free(x);
        return NULL;
    }
    e->issued = x;
    return x;
}

static int label_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return 0;
    return 1;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct gen *g = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char name[256];
    if (sni == NULL || !lower_name(sni, strlen(sni), name, sizeof(name)))
        return SSL_TLSEXT_ERR_OK; /* the default certificate */

    struct name_ent *e = table_get(&g->exact, name);
    const char *dot = strchr(name, '.');
    if (e == NULL && dot != NULL && dot != name) {
        if (g->domain != NULL && strcmp(dot + 1, g->domain) == 0 &&
            label_ok(name, (size_t)(dot - name))) {
            X509 *x = issued_cert(g, name);
            /* Without it the default certificate still serves. */
            if (x != NULL && SSL_use_certificate(ssl, x) != 1)
                ERR_clear_error();
            return SSL_TLSEXT_ERR_OK;
        }
        e = table_get(&g->wild, dot + 1);
    }
    if (e != NULL && e->cert != 0 &&
        SSL_set_SSL_CTX(ssl, g->certs[e->cert].ctx) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* The server's preference decides; a client that offers ALPN but nothing
 * we speak gets no_application_protocol rather than a guess. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    struct gen *g = arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, g->alpn, (unsigned)g->alpn_len,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *ctx_new(const struct cfg *cfg, struct gen *g)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                    SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_ENABLE_KTLS
    opts |= SSL_OP_ENABLE_KTLS; /* a no-op where the kernel lacks kTLS */
#endif
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Tickets only: no server-side cache to grow with the clients. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256") ||
        !SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice",
                                        6) ||
        SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)cfg->ticket_keys,
                                       TICKET_KEYS_LEN) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, g);
    if (g->alpn != NULL)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, g);
    return ctx;
}

struct add_names {
    struct gen *g;
    size_t cert;
    int override; /* an added certificate takes its names from the others */
    int failed;
};

static void add_name(const char *name, size_t len, void *arg)
{
    struct add_names *an = arg;
    char lname[256];
    if (!lower_name(name, len, lname, sizeof(lname)))
        return;
    struct name_ent *e;
    if (lname[0] == '*' && lname[1] == '.' && lname[2] != '\0')
        e = table_put(&an->g->wild, lname + 2, an->cert);
    else if (strchr(lname, '*') == NULL)
        e = table_put(&an->g->exact, lname, an->cert);
    else
        return; /* partial wildcards ("a*.b"): no client accepts them */
    if (e == NULL)
        an->failed = 1;
    else if (an->override)
        e->cert = an->cert;
}

/* Makes slot i of g from a certificate, its chain and its key (all
 * borrowed); label names them in errors. */
static int install_pair(const struct cfg *cfg, struct gen *g, size_t i,
                        X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
                        const char *label, const char *key_label, time_t now,
                        int override, char *err, size_t cap)
{
    SSL_CTX *ctx = NULL;
    char reason[160];
    int rc = SL_ECONFIG;
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        sl_tls_errf(err, cap, "%s does not match %s", key_label, label);
        goto out;
    }
    if (X509_cmp_time(X509_get0_notAfter(leaf), &now) < 0) {
        char when[64];
        sl_tls_time_str(X509_get0_notAfter(leaf), when, sizeof(when));
        sl_tls_errf(err, cap, "%s: expired on %s", label, when);
        goto out;
    }
    rc = UV_ENOMEM;
    ctx = ctx_new(cfg, g);
    if (ctx == NULL) {
        sl_tls_errf(err, cap, "%s: cannot make a TLS context (%s)", label,
                    sl_tls_ossl_reason(reason, sizeof(reason)));
        goto out;
    }
    rc = SL_ECONFIG;
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        sl_tls_errf(err, cap, "%s: certificate refused (%s)", label,
                    sl_tls_ossl_reason(reason, sizeof(reason)));
        goto out;
    }
    for (int k = 0; k < sk_X509_num(chain); k++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, k)) != 1) {
            sl_tls_errf(err, cap, "%s: chain certificate %d refused (%s)",
                        label, k + 1,
                        sl_tls_ossl_reason(reason, sizeof(reason)));
            goto out;
        }
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        sl_tls_errf(err, cap, "%s: key refused (%s)", key_label,
                    sl_tls_ossl_reason(reason, sizeof(reason)));
        goto out;
    }
    struct add_names an = {g, i, override, 0};
    sl_tls_cert_names(leaf, add_name, &an);
    if (an.failed) {
        rc = UV_ENOMEM;
        sl_tls_errf(err, cap, "%s: out of memory", label);
        goto out;
    }
    sl_tls_serial_hex(leaf, g->certs[i].serial, sizeof(g->certs[i].serial));
    g->certs[i].ctx = ctx;
    ctx = NULL;
    rc = 0;
out:
    SSL_CTX_free(ctx);
    return rc;
}

static int load_pair(const struct cfg *cfg, struct gen *g, size_t i,
                     const char *cert_path, const char *key_path, time_t now,
                     char *err, size_t cap)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int rc = sl_tls_load_certs(cert_path, &leaf, &chain, err, cap);
    if (rc != 0)
        goto out;
    rc = sl_tls_load_key(key_path, &key, err, cap);
    if (rc != 0)
        goto out;
    rc = install_pair(cfg, g, i, leaf, chain, key, cert_path, key_path, now,
                      0, err, cap);
out:
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return rc;
}

/* The certificates (leaf first) and the key of PEM strings. Returns 0 or
 * SL_EPARSE. */
static int parse_pem_pair(const char *chain_pem, const char *key_pem,
                          X509 **leaf, STACK_OF(X509) * *chain, EVP_PKEY **key)
{
    BIO *b = BIO_new_mem_buf(chain_pem, -1);
    int rc = SL_EPARSE;
    *leaf = NULL;
    *chain = NULL;
    *key = NULL;
    if (b == NULL || (*leaf = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL)
        goto out;
    if ((*chain = sk_X509_new_null()) == NULL)
        goto out;
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x == NULL)
            break;
        if (!sk_X509_push(*chain, x)) {
            X509_free(x);
            goto out;
        }
    }
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    if (b == NULL ||
        (*key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) == NULL)
        goto out;
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(b);
    if (rc != 0) {
        X509_free(*leaf);
        sk_X509_pop_free(*chain, X509_free);
        EVP_PKEY_free(*key);
        *leaf = NULL;
        *chain = NULL;
        *key = NULL;
    }
    return rc;
}

/* Slot i of g from an added certificate. One that no longer loads (it
 * expired while the hub ran) is left out, not fatal: the others serve. */
static void load_extra(const struct cfg *cfg, struct gen *g, size_t i,
                       const struct extra_snap *x, time_t now)
{
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    char err[ERRCAP];
    if (parse_pem_pair(x->chain_pem, x->key_pem, &leaf, &chain, &key) != 0)
        return;
    (void)install_pair(cfg, g, i, leaf, chain, key, x->slot, x->slot, now, 1,
                       err, sizeof(err));
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

/* Builds a generation from cfg (the local CA first makes sure its leaf is
 * current). With renew_only, *out stays NULL unless a leaf was issued.
 * Blocking; runs at start and on the thread pool. */
static int gen_build(const struct cfg *cfg, const struct extra_snap *extras,
                     size_t nextras, time_t now, int renew_only,
                     struct gen **out, int *issued, char *err, size_t cap)
{
    char cert_path[SL_STATEDIR_PATH_MAX], key_path[SL_STATEDIR_PATH_MAX];
    struct gen *g = NULL;
    int rc = 0;
    *out = NULL;
    *issued = 0;
    if (cfg->tls_dir != NULL) {
        rc = sl_tls_ca_ensure(cfg->tls_dir, cfg->domain, now, issued, err, cap);
        if (rc != 0 || (renew_only && !*issued))
            return rc;
        if (sl_statedir_path(cfg->tls_dir, "cert.pem", cert_path,
                             sizeof(cert_path)) != 0 ||
            sl_statedir_path(cfg->tls_dir, "key.pem", key_path,
                             sizeof(key_path)) != 0) {
            sl_tls_errf(err, cap, "%s: path too long", cfg->tls_dir);
            return SL_ETOOBIG;
        }
    }

    rc = UV_ENOMEM;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        goto nomem;
    g->refs = 1;
    size_t nbase = cfg->tls_dir != NULL ? 1 : cfg->ncerts;
    g->ncerts = nbase + nextras;
    g->nbase = nbase;
    g->certs = calloc(g->ncerts, sizeof(*g->certs));
    if (g->certs == NULL || table_init(&g->exact, 16) != 0 ||
        table_init(&g->wild, 16) != 0)
        goto nomem;
    if (cfg->alpn != NULL) {
        g->alpn = malloc(cfg->alpn_len);
        if (g->alpn == NULL)
            goto nomem;
        memcpy(g->alpn, cfg->alpn, cfg->alpn_len);
        g->alpn_len = cfg->alpn_len;
    }

    for (size_t i = 0; i < nbase; i++) {
        const char *c = cfg->tls_dir != NULL ? cert_path : cfg->cert_files[i];
        const char *k = cfg->tls_dir != NULL ? key_path : cfg->key_files[i];
        rc = load_pair(cfg, g, i, c, k, now, err, cap);
        if (rc != 0)
            goto out;
    }
    /* Oldest first, so a newer one wins a name both hold. */
    for (size_t i = nextras; i > 0; i--)
        load_extra(cfg, g, nbase + nextras - i, &extras[i - 1], now);

    /* A wildcard right below a one-label domain is refused by clients:
     * such a domain gets exact certificates on demand. */
    if (cfg->tls_dir != NULL && strchr(cfg->domain, '.') == NULL &&
        !sl_tls_is_ip(cfg->domain)) {
        rc = sl_tls_ca_load(cfg->tls_dir, &g->ca, &g->ca_key, err, cap);
        if (rc != 0)
            goto out;
        rc = UV_ENOMEM;
        g->leaf_key = SSL_CTX_get0_privatekey(g->certs[0].ctx);
        if (g->leaf_key == NULL || !EVP_PKEY_up_ref(g->leaf_key)) {
            g->leaf_key = NULL;
            goto nomem;
        }
        g->domain = strdup(cfg->domain);
        if (g->domain == NULL || table_init(&g->issued, 256) != 0)
            goto nomem;
    }
    *out = g;
    g = NULL;
    rc = 0;
    goto out;
nomem:
    rc = UV_ENOMEM;
    sl_tls_errf(err, cap, "out of memory while loading the certificates");
out:
    if (g != NULL)
        gen_free(g);
    return rc;
}

/* ---- the server ----------------------------------------------------- */

static void cfg_free(struct cfg *cfg)
{
    for (size_t i = 0; i < cfg->ncerts; i++) {
        if (cfg->cert_files != NULL)
            free(cfg->cert_files[i]);
        if (cfg->key_files != NULL)
            free(cfg->key_files[i]);
    }
    free(cfg->cert_files);
    free(cfg->key_files);
    free(cfg->tls_dir);
    free(cfg->domain);
    free(cfg->alpn);
    OPENSSL_cleanse(cfg->ticket_keys, sizeof(cfg->ticket_keys));
}

static int cfg_init(struct cfg *cfg, const struct sl_tls_server_opts *o,
                    char *err, size_t cap)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *domain = o->domain != NULL ? o->domain : "localhost";
    char ldomain[256];
    if (!lower_name(domain, strlen(domain), ldomain, sizeof(ldomain))) {
        sl_tls_errf(err, cap, "bad domain name \"%s\"", domain);
        return SL_ECONFIG;
    }
    if (o->ncerts == 0 && (o->state_dir == NULL || o->state_dir[0] == '\0')) {
        sl_tls_errf(err, cap,
                    "no certificate given and no state directory "
                    "for a local CA");
        return SL_ECONFIG;
    }
    /* The ALPN list in wire format: a length byte before each name. */
    size_t alpn_len = 0;
    for (size_t i = 0; o->alpn != NULL && o->alpn[i] != NULL; i++) {
        size_t n = strlen(o->alpn[i]);
        if (n == 0 || n > 255) {
            sl_tls_errf(err, cap, "bad ALPN protocol name \"%s\"", o->alpn[i]);
            return SL_ECONFIG;
        }
        alpn_len += 1 + n;
    }
    cfg->domain = strdup(ldomain);
    if (cfg->domain == NULL)
        goto nomem;
    if (alpn_len > 0) {
        cfg->alpn = malloc(alpn_len);
        if (cfg->alpn == NULL)
            goto nomem;
        size_t off = 0;
        for (size_t i = 0; o->alpn[i] != NULL; i++) {
            size_t n = strlen(o->alpn[i]);
            cfg->alpn[off++] = (unsigned char)n;
            memcpy(cfg->alpn + off, o->alpn[i], n);
            off += n;
        }
        cfg->alpn_len = alpn_len;
    }
    if (o->ncerts == 0) {
        char dir[SL_STATEDIR_PATH_MAX];
        if (sl_statedir_path(o->state_dir, "tls", dir, sizeof(dir)) != 0) {
            sl_tls_errf(err, cap, "%s: path too long", o->state_dir);
            return SL_ETOOBIG;
        }
        cfg->tls_dir = strdup(dir);
        if (cfg->tls_dir == NULL)
            goto nomem;
    } else {
        cfg->cert_files = calloc(o->ncerts, sizeof(char *));
        cfg->key_files = calloc(o->ncerts, sizeof(char *));
        if (cfg->cert_files == NULL || cfg->key_files == NULL)
            goto nomem;
        cfg->ncerts = o->ncerts;
        for (size_t i = 0; i < o->ncerts; i++) {
            cfg->cert_files[i] = strdup(o->cert_files[i]);
            cfg->key_files[i] = strdup(o->key_files[i]);
            if (cfg->cert_files[i] == NULL || cfg->key_files[i] == NULL)
                goto nomem;
        }
    }
    /* One set of ticket keys for the life of the process: a ticket issued
     * before a reload still resumes after it. */
    if (RAND_bytes(cfg->ticket_keys, sizeof(cfg->ticket_keys)) != 1) {
        sl_tls_errf(err, cap, "no random bytes for the session ticket keys");
        return UV_EIO;
    }
    return 0;
nomem:
    sl_tls_errf(err, cap, "out of memory");
    return UV_ENOMEM;
}

static void serials_str(const struct gen *g, char *out, size_t cap)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < g->nbase && off < cap; i++) {
        int n = snprintf(out + off, cap - off, "%s%s", i > 0 ? ", " : "",
                         g->certs[i].serial);
        if (n < 0)
            break;
        off += (size_t)n;
    }
}

static void reload_start(struct sl_tls_server *s, int renew_only,
                         int for_set);

static void snap_free(struct extra_snap *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(x[i].slot);
        free(x[i].chain_pem);
        if (x[i].key_pem != NULL) {
            OPENSSL_cleanse(x[i].key_pem, strlen(x[i].key_pem));
            free(x[i].key_pem);
        }
    }
    free(x);
}

static void extra_free(struct extra *x)
{
    free(x->slot);
    free(x->chain_pem);
    if (x->key_pem != NULL) {
        OPENSSL_cleanse(x->key_pem, strlen(x->key_pem));
        free(x->key_pem);
    }
    free(x);
}

/* Copies of the extras for a job, newest first. Returns 0 or UV_ENOMEM. */
static int snap_take(struct sl_tls_server *s, struct reload_job *j)
{
    if (s->nextras == 0)
        return 0;
    j->extras = calloc(s->nextras, sizeof(*j->extras));
    if (j->extras == NULL)
        return UV_ENOMEM;
    size_t i = 0;
    for (struct extra *x = s->extras; x != NULL; x = x->next, i++) {
        j->extras[i].slot = strdup(x->slot);
        j->extras[i].chain_pem = strdup(x->chain_pem);
        j->extras[i].key_pem = strdup(x->key_pem);
        j->nextras = i + 1;
        if (j->extras[i].slot == NULL || j->extras[i].chain_pem == NULL ||
            j->extras[i].key_pem == NULL)
            return UV_ENOMEM;
    }
    return 0;
}

static void on_renew_timer(uv_timer_t *t)
{
    struct sl_tls_server *s = t->data;
    if (s->job == NULL)
        reload_start(s, 1, 0);
}

static void finish_free(struct sl_tls_server *s)
{
    if (s->job != NULL || s->timer_closing)
        return;
    gen_unref(s->gen);
    cfg_free(&s->cfg);
    free(s->ca_path);
    while (s->extras != NULL) {
        struct extra *x = s->extras;
        s->extras = x->next;
        extra_free(x);
    }
    free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sl_tls_server *s = h->data;
    s->timer_closing = 0;
    finish_free(s);
}

static void reload_apply(struct sl_tls_server *s, struct reload_job *j)
{
    if (j->rc != 0) {
        sl_error(s->log,
                 "tls: reload failed, keeping the current "
                 "certificates: %s",
                 j->err);
        return;
    }
    if (j->gen == NULL)
        return; /* the daily check found nothing to renew */
    struct gen *old = s->gen;
    s->gen = j->gen;
    j->gen = NULL;
    gen_unref(old);
    if (s->applied_cb != NULL)
        s->applied_cb(s->applied_arg, j->set_seq);
    char serials[256];
    serials_str(s->gen, serials, sizeof(serials));
    if (j->renew_only) {
        sl_info(s->log, "tls: renewed the local certificate (serial %s)",
                serials);
    } else if (j->for_set) {
        size_t live = 0;
        for (size_t i = s->gen->nbase; i < s->gen->ncerts; i++)
            live += s->gen->certs[i].ctx != NULL;
        sl_info(s->log, "tls: %zu added certificate(s) in service", live);
    } else
        sl_info(s->log, "tls: certificates reloaded (serial %s)", serials);
}

static void reload_work(uv_work_t *req)
{
    struct reload_job *j = req->data;
    j->rc = gen_build(&j->s->cfg, j->extras, j->nextras, time(NULL),
                      j->renew_only, &j->gen, &j->issued, j->err,
                      sizeof(j->err));
    ERR_clear_error();
}

static void reload_done(uv_work_t *req, int status)
{
    struct reload_job *j = req->data;
    struct sl_tls_server *s = j->s;
    s->job = NULL;
    if (status != 0 && j->rc == 0) {
        j->rc = status;
        snprintf(j->err, sizeof(j->err), "%s", uv_strerror(status));
    }
    if (!s->freeing)
        reload_apply(s, j);
    gen_unref(j->gen);
    snap_free(j->extras, j->nextras);
    free(j);
    if (s->freeing) {
        finish_free(s);
        return;
    }
    if (s->reload_again) {
        int again = s->reload_again;
        s->reload_again = 0;
        reload_start(s, 0, !(again & RELOAD_FILES));
    }
}

static void reload_start(struct sl_tls_server *s, int renew_only, int for_set)
{
    struct reload_job *j = calloc(1, sizeof(*j));
    if (j == NULL || snap_take(s, j) != 0) {
        sl_error(s->log, "tls: reload failed, keeping the current "
                         "certificates: out of memory");
        if (j != NULL)
            snap_free(j->extras, j->nextras);
        free(j);
        return;
    }
    j->s = s;
    j->renew_only = renew_only;
    j->for_set = for_set;
    j->set_seq = s->set_seq;
    j->req.data = j;
    if (s->loop == NULL) {
        /* No loop to defer to: the caller accepted blocking. */
        reload_work(&j->req);
        s->job = j;
        reload_done(&j->req, 0);
        return;
    }
    int rc = uv_queue_work(s->loop, &j->req, reload_work, reload_done);
    if (rc != 0) {
        sl_error(s->log,
                 "tls: reload failed, keeping the current "
                 "certificates: %s",
                 uv_strerror(rc));
        snap_free(j->extras, j->nextras);
        free(j);
        return;
    }
    s->job = j;
}

int sl_tls_server_new(uv_loop_t *loop, struct sl_log *log,
                      const struct sl_tls_server_opts *opts,
                      struct sl_tls_server **out, char *err, size_t errcap)
{
    int issued = 0;
    struct sl_tls_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sl_tls_errf(err, errcap, "out of memory");
        return UV_ENOMEM;
    }
    s->loop = loop;
    s->log = log;
    int rc = gen_ex_index() >= 0 ? 0 : UV_ENOMEM;
    if (rc != 0) {
        sl_tls_errf(err, errcap, "out of memory");
        goto fail;
    }
    rc = cfg_init(&s->cfg, opts, err, errcap);
    if (rc != 0)
        goto fail;
    rc = gen_build(&s->cfg, NULL, 0, time(NULL), 0, &s->gen, &issued, err,
                   errcap);
    ERR_clear_error();
    if (rc != 0)
        goto fail;
    if (s->cfg.tls_dir != NULL) {
        char path[SL_STATEDIR_PATH_MAX];
        rc = sl_statedir_path(s->cfg.tls_dir, "ca.pem", path, sizeof(path));
        s->ca_path = rc == 0 ? strdup(path) : NULL;
        if (s->ca_path == NULL) {
            rc = UV_ENOMEM;
            sl_tls_errf(err, errcap, "out of memory");
            goto fail;
        }
        if (issued)
            sl_info(log,
                    "tls: issued a certificate for %s and *.%s from "
                    "the local CA %s (serial %s)",
                    s->cfg.domain, s->cfg.domain, s->ca_path,
                    s->gen->certs[0].serial);
        if (loop != NULL) {
            /* The daily renewal check must not keep the loop alive. */
            uv_timer_init(loop, &s->renew_timer);
            s->renew_timer.data = s;
            uv_timer_start(&s->renew_timer, on_renew_timer, RENEW_CHECK_MS,
                           RENEW_CHECK_MS);
            uv_unref((uv_handle_t *)&s->renew_timer);
            s->timer_on = 1;
        }
    }
    *out = s;
    return 0;
fail:
    gen_unref(s->gen);
    cfg_free(&s->cfg);
    free(s->ca_path);
    free(s);
    return rc;
}

SSL *sl_tls_server_ssl(struct sl_tls_server *s)
{
    struct gen *g = s->gen;
    SSL *ssl = SSL_new(g->certs[0].ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (!SSL_set_ex_data(ssl, gen_ex_index(), g)) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    g->refs++;
    SSL_set_accept_state(ssl);
    return ssl;
}

void sl_tls_server_reload(struct sl_tls_server *s)
{
    if (s->freeing)
        return;
    if (s->job != NULL) {
        /* The running job may have read the files before they changed. */
        s->reload_again |= RELOAD_FILES;
        return;
    }
    reload_start(s, 0, 0);
}

int sl_tls_server_set_cert(struct sl_tls_server *s, const char *slot,
                           const char *chain_pem, const char *key_pem)
{
    struct extra *x = NULL;
    if (s->freeing || slot == NULL)
        return UV_EINVAL;
    if (chain_pem != NULL) {
        /* Refused here, with nothing changed, rather than left out of
         * the next generation without a word. */
        X509 *leaf;
        STACK_OF(X509) *chain;
        EVP_PKEY *key;
        if (key_pem == NULL ||
            parse_pem_pair(chain_pem, key_pem, &leaf, &chain, &key) != 0)
            return SL_EPARSE;
        int match = X509_check_private_key(leaf, key) == 1;
        ERR_clear_error();
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
        if (!match)
            return SL_EPARSE;
        x = calloc(1, sizeof(*x));
        if (x == NULL || (x->slot = strdup(slot)) == NULL ||
            (x->chain_pem = strdup(chain_pem)) == NULL ||
            (x->key_pem = strdup(key_pem)) == NULL) {
            if (x != NULL)
                extra_free(x);
            return UV_ENOMEM;
        }
    }
    struct extra **pp = &s->extras;
    while (*pp != NULL && strcmp((*pp)->slot, slot) != 0)
        pp = &(*pp)->next;
    if (*pp != NULL) {
        struct extra *old = *pp;
        *pp = old->next;
        extra_free(old);
        s->nextras--;
    } else if (x == NULL) {
        return 0; /* nothing to remove */
    }
    if (x != NULL) {
        x->next = s->extras;
        s->extras = x;
        s->nextras++;
    }
    s->set_seq++;
    if (s->job != NULL) {
        s->reload_again |= RELOAD_SET;
        return 0;
    }
    reload_start(s, 0, 1);
    return 0;
}

uint64_t sl_tls_server_set_count(const struct sl_tls_server *s)
{
    return s->set_seq;
}

void sl_tls_server_on_applied(struct sl_tls_server *s,
                              sl_tls_server_applied_cb cb, void *arg)
{
    s->applied_cb = cb;
    s->applied_arg = arg;
}

const char *sl_tls_server_ca_path(const struct sl_tls_server *s)
{
    return s->ca_path;
}

const char *sl_tls_server_serial(const struct sl_tls_server *s)
{
    return s->gen->certs[0].serial;
}

const char *sl_tls_server_sni(const SSL *ssl)
{
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

void sl_tls_server_free(struct sl_tls_server *s)
{
    if (s == NULL)
        return;
    s->freeing = 1;
    if (s->timer_on) {
        s->timer_on = 0;
        s->timer_closing = 1;
        uv_timer_stop(&s->renew_timer);
        uv_close((uv_handle_t *)&s->renew_timer, on_timer_closed);
    }
    finish_free(s);
}
