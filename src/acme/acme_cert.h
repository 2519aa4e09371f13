/* Keys and certificates of the ACME client: the P-256 keys it makes, the
 * certificate signing request of an order, what it reads back from a
 * certificate chain the CA issued, and the self-signed certificate of a
 * TLS-ALPN-01 challenge (RFC 8737).
 *
 * No I/O: PEM goes in and out as strings. Safe on any thread (each call
 * uses only its arguments). */
#ifndef SL_ACME_CERT_H
#define SL_ACME_CERT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* A new ECDSA P-256 key, or NULL. */
EVP_PKEY *sl_acme_key_new(void);

/* key as unencrypted PKCS#8 PEM, a new string (free(); wipe it first:
 * sl_acme_pem_free). Returns 0 or UV_ENOMEM. */
int sl_acme_key_pem(EVP_PKEY *key, char **out);
void sl_acme_pem_free(char *pem);

/* The private key of a PEM string. Returns 0 or SL_EPARSE. */
int sl_acme_key_from_pem(const char *pem, EVP_PKEY **out);

/* A CSR (DER) for names (the first is also the CN), signed with key
 * (SHA-256). *der is a new buffer (free()). Returns 0, UV_ENOMEM or
 * UV_EINVAL. */
int sl_acme_csr(EVP_PKEY *key, const char *const *names, size_t n,
                uint8_t **der, size_t *len);

/* What the hub keeps of an issued chain's leaf. */
struct sl_acme_cert_info {
    int64_t not_before, not_after; /* unix seconds */
    char serial[48];               /* lowercase hex */
    char issuer[128];              /* the issuer's CN (or "") */
};

/* Reads a PEM chain (leaf first) and, when key_pem is not NULL, checks
 * the leaf against that key; fills *out from the leaf. When name is not
 * NULL the leaf must be for it (a DNS subjectAltName, exact). Returns 0,
 * SL_EPARSE (no certificate, bad PEM, a key that does not match, a name
 * it lacks) or UV_ENOMEM. */
int sl_acme_chain_info(const char *chain_pem, const char *key_pem,
                       const char *name, struct sl_acme_cert_info *out);

/* The TLS-ALPN-01 certificate for name: self-signed, a new P-256 key,
 * subjectAltName DNS:name, and the critical acmeIdentifier extension
 * (1.3.6.1.5.5.7.1.31) holding the SHA-256 of the key authorization.
 * Returns 0 (*cert and *key are new) or UV_ENOMEM. */
int sl_acme_alpn_cert(const char *name, const uint8_t digest[32], X509 **cert,
                      EVP_PKEY **key);

#endif
