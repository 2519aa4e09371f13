/* The hub's ACME client (RFC 8555): publicly trusted certificates for
 * <identity>.<domain> by TLS-ALPN-01 (RFC 8737), one per identity on
 * demand, or one for <domain> and *.<domain> by DNS-01 through an RFC 2136
 * update of the operator's DNS server. Certificates obtained go into the
 * hub's certificate set (sl_tls_server_set_cert); until one arrives the
 * hub serves what it had (its local CA's).
 *
 * What it does, in order: the directory, an account (the key is reused:
 * asking for the account again returns the same one), an order, its
 * authorizations, the challenge answered (a certificate for the ALPN
 * hook, or TXT records), the authorizations polled, the order finalized
 * with a CSR for a new key, polled, the chain downloaded and checked, the
 * files written, the certificate swapped in. It renews at two thirds of
 * the lifetime, minus a random part of a thirtieth (so a fleet spreads).
 *
 * Bounds: one HTTP request at a time (libcurl on the thread pool, never on
 * the loop), badNonce retried with the fresh nonce up to 5 times,
 * Retry-After honoured (capped at a minute while polling), polls of an
 * authorization or an order at most 60 and 10 minutes; at most 4 orders
 * in flight and orders_per_hour started in any hour; a failed subject
 * waits retry_ms, doubled each failure up to 6 hours (or the CA's
 * Retry-After when longer).
 *
 * Errors are logged once each (the same reason again is debug): the CA
 * unreachable (curl's words name the address), rate-limited, CAA, the
 * CA's validation failing (its words say which address it tried), the DNS
 * update refused (the TSIG error). The API shows the state of each.
 *
 * Files in <state_dir>/acme/ (0700), each 0600, written atomically:
 *   account.key      the account's P-256 key (PEM)
 *   <name>.crt       a certificate chain, leaf first (name: the
 *                    identity's full name, or the domain for the wildcard)
 *   <name>.key       its key
 * Read when the hub starts: a certificate still valid is served at once
 * and renewed when due.
 *
 * One loop; not thread-safe. */
#ifndef SL_ACME_ACME_H
#define SL_ACME_ACME_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "core/log.h"

struct sl_tls_server;
struct sl_acme;

struct sl_acme_opts {
    const char *directory;     /* the CA's directory URL (--acme) */
    const char *email;         /* contact, or NULL */
    const char *ca_file;       /* PEM bundle the CA's HTTPS is checked with;
                                  NULL: the system store */
    const char *eab;           /* "KID:KEY" (KEY base64url), or NULL */
    const char *dns_update;    /* "HOST:PORT": DNS-01 wildcard; NULL:
                                  TLS-ALPN-01 per identity */
    const char *tsig_key_file; /* with dns_update */
    const char *domain;        /* identities are <identity>.<domain> */
    const char *state_dir;     /* files go in <state_dir>/acme/ */
    unsigned orders_per_hour;  /* 0: 30 */
    uint64_t retry_ms;         /* first wait after a failure; 0: 60000 */
    uint64_t renew_ms;         /* tests: renew this long after issuance
                                  instead of at two thirds; 0: the rule */
    uint64_t poll_ms;          /* wait between polls; 0: 1000 */
    uint64_t dns_visible_ms;   /* DNS-01: wait for the records; 0: 120000 */
};

/* Certificate state of an identity, for the API. */
enum sl_acme_cert_state {
    SL_ACME_CERT_NONE = 0, /* ACME knows nothing of it */
    SL_ACME_CERT_PENDING,  /* being ordered; the local CA serves */
    SL_ACME_CERT_VALID,    /* issued and served */
    SL_ACME_CERT_ERROR,    /* the last attempt failed; retried later */
};

struct sl_acme_status {
    enum sl_acme_cert_state state;
    char name[256];    /* the certificate's first name */
    int64_t not_after; /* unix seconds; 0 without one */
    int64_t renew_at;  /* unix seconds of the next attempt; 0: none */
    char serial[48];
    char issuer[128];
    char error[320]; /* the last failure ("" if none); a valid
                        certificate may have one (a failed renewal) */
};

const char *sl_acme_cert_state_name(enum sl_acme_cert_state s);

/* Reads the account key (making one) and the certificates in
 * <state_dir>/acme/, and the TSIG key: blocking, so before the loop
 * runs. tls gets the certificates and must outlive the client. In
 * DNS-01 mode the wildcard is ordered (or loaded) at once. Opens
 * libcurl first (acme_http.h). Returns 0 or a negative code with err
 * saying why (a file, a flag, libcurl missing). */
int sl_acme_new(uv_loop_t *loop, struct sl_log *log, struct sl_tls_server *tls,
                const struct sl_acme_opts *opts, struct sl_acme **out,
                char *err, size_t cap);

/* An identity exists (allocated now, or found at start): TLS-ALPN-01
 * orders <identity>.<domain> unless a valid certificate is at hand (then
 * it is served and renewed when due). DNS-01: nothing to do. */
void sl_acme_want(struct sl_acme *a, const char *identity);

/* The identity was removed: its order stops, its certificate is no
 * longer served or renewed (the files stay). */
void sl_acme_forget(struct sl_acme *a, const char *identity);

/* A ClientHello for server_name offers ALPN "acme-tls/1": a new SSL
 * answering the pending TLS-ALPN-01 challenge for that name, or NULL when
 * there is none (serve the hello as any other). */
SSL *sl_acme_challenge_ssl(struct sl_acme *a, const char *server_name);

/* The certificate state of identity's name. Returns 0 or SL_ENOTFOUND
 * (out->state NONE). */
int sl_acme_status(struct sl_acme *a, const char *identity,
                   struct sl_acme_status *out);

/* Stops everything (a running request is aborted, DNS records of a
 * running DNS-01 order stay) and frees once the last handle is closed;
 * keep running the loop. NULL is ignored. */
void sl_acme_free(struct sl_acme *a);

#endif
