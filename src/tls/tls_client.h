/* The node's TLS client context for dialling the hub.
 *
 * Verification: the chain against ca_file or the system store, and the
 * host name (or IP) the caller dials; optionally the hub's public key
 * against a pin. Both run inside the handshake (SSL_VERIFY_PEER), so a
 * hub that fails them never sees an application byte. TLS 1.2 and 1.3
 * only; OpenSSL's buffers released when idle; kernel TLS where the kernel
 * has it.
 *
 * Session resumption: the client keeps the newest session ticket per
 * session key (the caller's choice, e.g. "hub.example:443") and offers it
 * on the next connection with that key, so a data connection does not pay
 * a full handshake.
 *
 * Not thread-safe: one loop. */
#ifndef SL_TLS_CLIENT_H
#define SL_TLS_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

struct sl_tls_client;

struct sl_tls_client_opts {
    const char *ca_file; /* PEM bundle; NULL: the system store */
    const char *pin;     /* "sha256/<base64 of the SHA-256 of the DER
                            SubjectPublicKeyInfo>" of the hub's leaf
                            (curl's --pinnedpubkey form), or NULL */
    int insecure;        /* no chain or name check (tests; the caller
                            warns); a pin is still checked */
    const char *alpn;    /* e.g. "http/1.1"; NULL: none */
};

/* Returns 0, or a negative code with err naming the bad CA file or pin. */
int sl_tls_client_new(const struct sl_tls_client_opts *o,
                      struct sl_tls_client **out, char *err, size_t errcap);

/* A new client SSL (connect state set) for host: SNI unless host is an IP
 * literal; the certificate must be for host (name or IP) unless insecure.
 * session_key (may be NULL) selects the session to resume and where the
 * new one is kept. Returns NULL when out of memory. The SSL holds a
 * reference to c: it may outlive sl_tls_client_free. */
SSL *sl_tls_client_ssl(struct sl_tls_client *c, const char *host,
                       const char *session_key);

/* After a handshake (finished or failed): 0 if the peer is acceptable,
 * else SL_EDENIED with why set to "unknown issuer", "expired (on ...)",
 * "not yet valid (until ...)", "wrong name (certificate is for a, b)",
 * "pin mismatch (got sha256/...)", "no certificate received", or
 * OpenSSL's verify error string. */
int sl_tls_client_check(struct sl_tls_client *c, SSL *ssl, char *why,
                        size_t cap);

/* 1 if the handshake on ssl resumed a session. */
int sl_tls_client_resumed(const SSL *ssl);

/* Drops the caller's reference; the rest goes with the last SSL. NULL is
 * ignored. */
void sl_tls_client_free(struct sl_tls_client *c);

#endif
