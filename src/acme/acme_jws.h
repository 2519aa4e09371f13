/* The signing half of an ACME client (RFC 8555 section 6.2): base64url,
 * the account key as a JWK and its thumbprint (RFC 7638), JWS in the
 * flattened JSON form signed with ES256 (ECDSA P-256, SHA-256, the
 * signature as raw r||s per RFC 7518 3.4), the HS256 external account
 * binding, and the key authorizations challenges are answered with.
 *
 * Pure apart from OpenSSL's signing: no I/O, no loop. Every output is
 * NUL-terminated; functions that fill a caller's buffer return
 * SL_ETOOBIG when it is too small. */
#ifndef SL_ACME_JWS_H
#define SL_ACME_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Room for base64url of n bytes, NUL included. */
#define SL_ACME_B64URL_LEN(n) ((((n) + 2) / 3) * 4 + 1)

/* Longest JWK of a P-256 key: {"crv":"P-256","kty":"EC","x":43,"y":43}. */
#define SL_ACME_JWK_MAX 160
/* base64url of a SHA-256: 43 characters and the NUL. */
#define SL_ACME_B64_SHA256 44

/* Writes base64url without padding of p[0..n) into out. Returns the
 * length written (without the NUL) or 0 when it does not fit (or n is 0:
 * then out is ""). */
size_t sl_acme_b64url_encode(const uint8_t *p, size_t n, char *out, size_t cap);

/* Decodes base64url (padding '=' tolerated at the end, nothing else
 * outside the alphabet) of s[0..n) into out. Returns 0 with *outlen set,
 * SL_EPARSE or SL_ETOOBIG. */
int sl_acme_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen);

/* The public JWK of an EC P-256 key in RFC 7638's canonical form (the
 * members in lexicographic order, no white space), which is also what
 * goes in a JWS header. Returns 0, UV_EINVAL (not a P-256 key) or
 * SL_ETOOBIG. */
int sl_acme_jwk(EVP_PKEY *key, char *out, size_t cap);

/* base64url of the SHA-256 of the canonical JWK (RFC 7638). out holds
 * SL_ACME_B64_SHA256 bytes. Returns 0 or sl_acme_jwk's codes. */
int sl_acme_thumbprint(EVP_PKEY *key, char *out, size_t cap);

/* An ECDSA signature in DER (SEQUENCE of two INTEGERs) into the raw
 * 64-byte r||s of ES256, each value left-padded to 32 bytes. Returns 0 or
 * SL_EPARSE (not that DER, trailing bytes, a value over 32 bytes, a
 * negative one). */
int sl_acme_sig_der_to_raw(const uint8_t *der, size_t n, uint8_t out[64]);

/* A JWS in flattened JSON serialization signed with key (ES256): the
 * protected header holds alg, then kid when kid is not NULL (an account's
 * URL) or else the key's jwk, nonce (may be NULL: the external account
 * binding has none) and url. payload NULL is a POST-as-GET (the empty
 * payload). *out is a new string (free()). Returns 0, UV_ENOMEM or
 * UV_EINVAL (key not P-256, signing failed). */
int sl_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce,
                const char *url, const char *payload, char **out);

/* The external account binding of a newAccount request (RFC 8555 7.3.4):
 * a JWS with alg HS256 over the account's jwk, kid eab_kid, url the
 * newAccount URL, MAC'd with mac_key. *out is a new JSON object string
 * (free()). Returns 0, UV_ENOMEM or UV_EINVAL. */
int sl_acme_eab(const char *eab_kid, const uint8_t *mac_key, size_t keylen,
                const char *url, const char *jwk, char **out);

/* token "." thumbprint (RFC 8555 8.1). Returns 0, SL_EPARSE (a token
 * that is not base64url, or empty) or SL_ETOOBIG. */
int sl_acme_key_authz(const char *token, const char *thumbprint, char *out,
                      size_t cap);

/* The digest a challenge answers with: SHA-256 of the key authorization
 * (TLS-ALPN-01 puts the 32 bytes in its certificate; DNS-01 puts their
 * base64url, sl_acme_dns01_value, in a TXT record). */
void sl_acme_authz_digest(const char *key_authz, uint8_t out[32]);
void sl_acme_dns01_value(const char *key_authz, char out[SL_ACME_B64_SHA256]);

#endif
