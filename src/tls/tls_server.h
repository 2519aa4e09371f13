/* The hub's certificates and its server-side TLS contexts.
 *
 * A server holds one "generation": an SSL_CTX per certificate plus the
 * table of names that picks one by SNI. New connections take an SSL from
 * the current generation; a reload builds the next one on the thread pool
 * and swaps it on the loop thread, while live connections keep the one
 * they started with (each SSL holds a reference to its generation).
 *
 * SNI selection, most specific first: an exact name of a certificate
 * (subjectAltName DNS entries, or the CN when there are none), then a
 * wildcard "*.example.com" matching one label, then the first
 * certificate given, also for a missing SNI. Names compare
 * case-insensitively; lookups are hash lookups.
 *
 * Every context: TLS 1.2 and 1.3 only, ECDHE with AES-GCM or ChaCha20
 * (server's preference), groups X25519 and P-256, no renegotiation,
 * OpenSSL's buffers released when idle, kernel TLS where the kernel has
 * it, stateless session tickets whose keys stay the same across reloads
 * (a resumed session survives a SIGHUP).
 *
 * The local CA (no certificate given): see tls/tls_ca.h. The hub's leaf
 * is for <domain> and *.<domain>; because TLS clients refuse a wildcard
 * right below a top-level name ("*.localhost" matches nothing), a domain
 * of one label gets, for each SNI "<label>.<domain>", a certificate for
 * that exact name issued from the local CA on first use (one ECDSA
 * signature, then cached in the generation). The leaf is re-issued when
 * it comes within 30 days of expiry, checked at start and once a day.
 *
 * Not thread-safe: one loop. */
#ifndef SL_TLS_SERVER_H
#define SL_TLS_SERVER_H

#include <stddef.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "core/log.h"

struct sl_tls_server;

struct sl_tls_server_opts {
    const char *const *cert_files; /* PEM, leaf then chain; RSA or ECDSA */
    const char *const *key_files;  /* same count */
    size_t ncerts;                 /* 0: the local CA */
    const char *state_dir;   /* <state_dir>/tls/ holds the local CA; required
                                when ncerts == 0 */
    const char *domain;      /* the local CA issues <domain> and *.<domain>;
                                NULL: "localhost" */
    const char *const *alpn; /* protocols accepted, in preference order,
                                NULL-terminated; NULL: no ALPN */
};

/* Loads the certificates (or makes/loads the local CA) synchronously:
 * call before the loop runs. loop runs reloads and the local CA's daily
 * renewal check; log gets reload results (may be NULL). On error returns
 * a negative code and writes into err a sentence naming the file and the
 * problem ("cert.pem: no certificate found", "key.pem does not match
 * cert.pem", "cert.pem: expired on ..."); nothing is left allocated. */
int sl_tls_server_new(uv_loop_t *loop, struct sl_log *log,
                      const struct sl_tls_server_opts *opts,
                      struct sl_tls_server **out, char *err, size_t errcap);

/* A new server-side SSL (accept state set) from the current generation,
 * or NULL (out of memory). The caller hands it to sl_xprt_tls_start. */
SSL *sl_tls_server_ssl(struct sl_tls_server *s);

/* SIGHUP: reloads the files on the thread pool (the local CA re-checks
 * its leaf). On success new handshakes use the new certificates and one
 * info line gives the new serial(s); on failure the old ones stay and one
 * error line names the file and the problem. A call while a reload runs
 * makes one more reload run after it. */
void sl_tls_server_reload(struct sl_tls_server *s);

/* Adds a certificate at run time (ACME's), kept under slot (a name of
 * the caller's choosing; a second call with the same slot replaces it,
 * chain_pem NULL removes it). chain_pem is the leaf then its chain,
 * key_pem its key. Its names (subjectAltName DNS entries) win over the
 * given files' and the local CA's. A new generation is built on the
 * thread pool (the files given at start are read again with it) and
 * swapped in; live connections keep the one they started with. Calls
 * while a build runs are folded into one more build after it. A
 * certificate that has expired by the time a later generation is built
 * is left out of it.
 * Returns 0, SL_EPARSE (no certificate or key in the PEM, or they do not
 * match: nothing changes), UV_EINVAL or UV_ENOMEM. */
int sl_tls_server_set_cert(struct sl_tls_server *s, const char *slot,
                           const char *chain_pem, const char *key_pem);

/* How many sl_tls_server_set_cert calls changed the set so far (removing
 * what is not there is not one). */
uint64_t sl_tls_server_set_count(const struct sl_tls_server *s);

/* cb(arg, seq) runs on the loop each time a new generation goes into
 * service; seq is the sl_tls_server_set_count it holds the changes of:
 * a certificate set when the count was n is served once seq >= n. One
 * listener; cb NULL removes it. */
typedef void (*sl_tls_server_applied_cb)(void *arg, uint64_t seq);
void sl_tls_server_on_applied(struct sl_tls_server *s,
                              sl_tls_server_applied_cb cb, void *arg);

/* <state_dir>/tls/ca.pem when the local CA is used, else NULL. */
const char *sl_tls_server_ca_path(const struct sl_tls_server *s);

/* The serial (lowercase hex) of the default certificate of the current
 * generation, for logs and tests. */
const char *sl_tls_server_serial(const struct sl_tls_server *s);

/* The SNI name a client sent on ssl, or NULL: SSL_get_servername. */
const char *sl_tls_server_sni(const SSL *ssl);

/* Frees; safe while connections still hold SSLs from it (they keep their
 * generation). A running reload is waited for: the memory goes in its
 * completion callback, so keep running the loop. NULL is ignored. */
void sl_tls_server_free(struct sl_tls_server *s);

#endif
