/* Shared by the TLS unit tests: a temporary folder, certificates made on
 * the spot, and handshakes between two SSLs over a memory BIO pair (no
 * socket). Included by one test program each: everything is static. */
#ifndef SL_TEST_TLS_SUPPORT_H
#define SL_TEST_TLS_SUPPORT_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/log.h"
#include "tls/tls_ca.h"
#include "tls/tls_util.h"

static inline int rm_entry(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tmp_make(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/sluice-tls-XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
}

static inline void tmp_remove(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void join(char *out, size_t cap, const char *dir,
                        const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static inline void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        abort();
    fputs(text, f);
    fclose(f);
}

/* Writes certs (leaf first) into cert_path and key into key_path. */
static inline void write_pair(const char *cert_path, X509 *leaf, X509 *chain,
                              const char *key_path, EVP_PKEY *key)
{
    FILE *f = fopen(cert_path, "w");
    if (f == NULL || !PEM_write_X509(f, leaf) ||
        (chain != NULL && !PEM_write_X509(f, chain)))
        abort();
    fclose(f);
    if (key_path != NULL) {
        f = fopen(key_path, "w");
        if (f == NULL ||
            !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
            abort();
        fclose(f);
    }
}

/* A leaf for names from ca, valid from now+from_days to now+to_days. */
static inline X509 *leaf_for(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key,
                             const char *const *names, size_t n, long from_days,
                             long to_days)
{
    time_t now = time(NULL);
    X509 *x = sl_tls_ca_issue(ca, ca_key, key, names, n,
                              now + from_days * 86400, now + to_days * 86400);
    if (x == NULL)
        abort();
    return x;
}

static inline void serial_of(X509 *x, char *out, size_t cap)
{
    sl_tls_serial_hex(x, out, cap);
}

/* Runs the handshake between cli and srv over a fresh BIO pair (the SSLs
 * take the BIOs). Returns 1 when both finished, 0 when either failed. */
static inline int handshake(SSL *cli, SSL *srv)
{
    BIO *bc = NULL, *bs = NULL;
    if (!BIO_new_bio_pair(&bc, 0, &bs, 0))
        abort();
    SSL_set_bio(cli, bc, bc);
    SSL_set_bio(srv, bs, bs);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 64 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(cli);
            if (r == 1)
                cdone = 1;
            else {
                int e = SSL_get_error(cli, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    goto fail;
            }
        }
        if (!sdone) {
            int r = SSL_do_handshake(srv);
            if (r == 1)
                sdone = 1;
            else {
                int e = SSL_get_error(srv, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    goto fail;
            }
        }
    }
    if (!(cdone && sdone))
        goto fail;
    /* A byte each way: the client reads the server's session tickets
     * (TLS 1.3 sends them after the handshake). */
    char b;
    for (int i = 0; i < 8; i++) {
        if (SSL_write(srv, "s", 1) != 1)
            goto fail;
        if (SSL_read(cli, &b, 1) == 1)
            break;
    }
    if (SSL_write(cli, "c", 1) != 1 || SSL_read(srv, &b, 1) != 1)
        goto fail;
    ERR_clear_error();
    return 1;
fail:
    ERR_clear_error();
    return 0;
}

static inline void peer_serial(SSL *cli, char *out, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(cli);
    out[0] = '\0';
    if (x != NULL)
        serial_of(x, out, cap);
}

/* A log into memory, read back with log_text. */
struct mem_log {
    struct sl_log log;
    char *buf;
    size_t len;
};

static inline void log_open(struct mem_log *m)
{
    m->buf = NULL;
    m->len = 0;
    m->log.level = SL_LOG_INFO;
    m->log.json = 0;
    m->log.out = open_memstream(&m->buf, &m->len);
    if (m->log.out == NULL)
        abort();
}

static inline const char *log_text(struct mem_log *m)
{
    fflush(m->log.out);
    return m->buf != NULL ? m->buf : "";
}

static inline void log_close(struct mem_log *m)
{
    fclose(m->log.out);
    free(m->buf);
}

#endif
