/* Helpers shared by the TLS server and client: PEM files read with errors
 * that name the file, a certificate's serial, names and public-key pin.
 *
 * Error sentences are written into err (cap bytes, always terminated) and
 * start with the file's name as the caller gave it, e.g. "cert.pem: no
 * certificate found". Functions that read files block: call them before
 * the loop runs or from the thread pool. */
#ifndef SL_TLS_UTIL_H
#define SL_TLS_UTIL_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Longest "sha256/<base64>" pin, NUL included. */
#define SL_TLS_PIN_MAX 64
/* Longest hex serial we print (20 octets at most by RFC 5280), NUL
 * included. */
#define SL_TLS_SERIAL_MAX 48

/* Reads the PEM certificates of path: the first into *leaf, the others
 * (the chain, maybe none) into *chain. Returns 0, or SL_ENOTFOUND (cannot
 * open) or SL_EPARSE (no certificate, bad PEM) with nothing allocated. */
int sl_tls_load_certs(const char *path, X509 **leaf, STACK_OF(X509) * *chain,
                      char *err, size_t cap);

/* Reads the PEM private key of path (PKCS#8 or traditional; RSA, EC,
 * Ed25519). Encrypted keys are refused: nothing may prompt. Returns 0,
 * SL_ENOTFOUND or SL_EPARSE. */
int sl_tls_load_key(const char *path, EVP_PKEY **key, char *err, size_t cap);

/* The serial in lowercase hex ("" if it does not fit). */
void sl_tls_serial_hex(const X509 *x, char *out, size_t cap);

/* "sha256/<base64 of the SHA-256 of the DER SubjectPublicKeyInfo>", the
 * form of curl's --pinnedpubkey. Returns 0, SL_ETOOBIG or UV_ENOMEM. */
int sl_tls_pin_of_cert(X509 *x, char *out, size_t cap);

/* The same for the first certificate of a PEM file. Returns 0 or the
 * codes of sl_tls_load_certs and sl_tls_pin_of_cert. */
int sl_tls_pin_of_cert_file(const char *path, char *out, size_t cap);

/* Calls fn for each DNS name the certificate is for: its subjectAltName
 * DNS entries, or its CN when it has none (old certificates). Names are
 * passed as they are written (a wildcard keeps its "*."). Returns how many
 * names were passed. */
size_t sl_tls_cert_names(X509 *x,
                         void (*fn)(const char *name, size_t len, void *arg),
                         void *arg);

/* Writes the names of the certificate (DNS and IP subjectAltNames, or the
 * CN) as "a, b, c", cut with "..." to fit. */
void sl_tls_cert_names_str(X509 *x, char *out, size_t cap);

/* Writes t as "2026-01-02 03:04:05 UTC". */
void sl_tls_time_str(const ASN1_TIME *t, char *out, size_t cap);

/* Writes the reason of the oldest OpenSSL error of this thread into out
 * ("unknown" if there is none) and clears the thread's error queue. */
const char *sl_tls_ossl_reason(char *out, size_t cap);

/* snprintf into err, which may be NULL. */
void sl_tls_errf(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 if s is an IPv4 or IPv6 literal (brackets not accepted). */
int sl_tls_is_ip(const char *s);

#endif
