/* The local certificate authority of a hub given no certificate, as
 * mkcert does it: a CA the user may choose to trust, and the hub's own
 * certificate issued by it.
 *
 * Files in the directory (<state_dir>/tls, mode 0700):
 *   ca.pem       the CA's certificate: hand it to curl --cacert
 *   ca-key.pem   its key (0600); never leaves the directory
 *   cert.pem     the hub's certificate for <domain> and *.<domain>
 *   key.pem      its key (0600)
 * Every file is written atomically (temporary file, rename).
 *
 * Everything here blocks (file I/O, key generation): call it before the
 * loop runs or from the thread pool. */
#ifndef SL_TLS_CA_H
#define SL_TLS_CA_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#define SL_TLS_CA_DAYS 3650  /* the CA's validity */
#define SL_TLS_LEAF_DAYS 90  /* a leaf's validity */
#define SL_TLS_RENEW_DAYS 30 /* a leaf is re-issued this close to expiry */

/* Makes the CA in dir on first use (dir created 0700), or loads it; then
 * makes sure cert.pem/key.pem hold a leaf from that CA for domain, valid
 * at now and for SL_TLS_RENEW_DAYS more, issuing a new one (dated from
 * now) otherwise. *issued (may be NULL) is set to 1 when a new leaf was
 * written. A CA file that cannot be read is an error naming it: a CA a
 * user may have trusted is never replaced. A bad leaf is replaced.
 * Returns 0 or a negative code with err set. */
int sl_tls_ca_ensure(const char *dir, const char *domain, time_t now,
                     int *issued, char *err, size_t cap);

/* Loads ca.pem and ca-key.pem of dir. Returns 0 or a negative code with
 * err set. */
int sl_tls_ca_load(const char *dir, X509 **cert, EVP_PKEY **key, char *err,
                   size_t cap);

/* A new CA (ECDSA P-256, CA:TRUE, keyCertSign, SL_TLS_CA_DAYS from now,
 * "CN=sluice local CA <random hex>"). Returns 0 or UV_ENOMEM. */
int sl_tls_ca_make(time_t now, X509 **cert, EVP_PKEY **key);

/* A new ECDSA P-256 key, or NULL. */
EVP_PKEY *sl_tls_ca_new_key(void);

/* Issues a server certificate signed by ca/ca_key for key's public key:
 * subjectAltName from names (IP literals become IP entries, the rest DNS
 * entries; the first DNS name is also the CN), CA:FALSE, digitalSignature
 * (and keyEncipherment for RSA), serverAuth, subject and authority key
 * identifiers, valid from not_before to not_after. Returns it or NULL. */
X509 *sl_tls_ca_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key,
                      const char *const *names, size_t nnames,
                      time_t not_before, time_t not_after);

#endif
