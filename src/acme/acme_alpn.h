/* TLS-ALPN-01 (RFC 8737): the challenges the hub is answering now. While
 * one is pending for a name, a ClientHello for that name offering ALPN
 * "acme-tls/1" gets a TLS session with the challenge's self-signed
 * certificate and that protocol, and nothing else happens on it (the
 * validator only looks at the certificate). Any other hello is served as
 * usual.
 *
 * The table is small (the orders in flight); not thread-safe: the loop. */
#ifndef SL_ACME_ALPN_H
#define SL_ACME_ALPN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define SL_ACME_ALPN_PROTO "acme-tls/1"

struct sl_acme_alpn;

/* Returns a new empty table or NULL. */
struct sl_acme_alpn *sl_acme_alpn_new(void);

/* Starts answering name (lower case) with the digest of its key
 * authorization, replacing an earlier challenge for it. Returns 0 or
 * UV_ENOMEM. */
int sl_acme_alpn_add(struct sl_acme_alpn *t, const char *name,
                     const uint8_t digest[32]);

/* Stops answering name; nothing if it is not there. Sessions already
 * made keep their certificate. */
void sl_acme_alpn_remove(struct sl_acme_alpn *t, const char *name);

/* A new server-side SSL (accept state) answering the challenge of name,
 * or NULL when none is pending (or out of memory). */
SSL *sl_acme_alpn_ssl(struct sl_acme_alpn *t, const char *name);

/* How many challenges are pending. */
size_t sl_acme_alpn_count(const struct sl_acme_alpn *t);

/* Frees the table; NULL is ignored. */
void sl_acme_alpn_free(struct sl_acme_alpn *t);

#endif
