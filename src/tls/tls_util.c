#include "tls/tls_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "core/error.h"

void sl_tls_errf(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

const char *sl_tls_ossl_reason(char *out, size_t cap)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(out, cap, "%s", r != NULL ? r : "unknown");
    ERR_clear_error();
    return out;
}

#define PEM_FILE_MAX (1024 * 1024) /* a long chain is a few KiB */

/* Reads the whole file into a memory BIO, so the error can say what the
 * file lacks: OpenSSL's decoders report a file with no key in it and a
 * damaged key alike. */
static BIO *read_file(const char *path, char **data, size_t *len, char *err,
                      size_t cap)
{
    BIO *b = NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        sl_tls_errf(err, cap, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    buf = malloc(PEM_FILE_MAX + 1);
    if (buf == NULL) {
        sl_tls_errf(err, cap, "%s: out of memory", path);
        goto out;
    }
    n = fread(buf, 1, PEM_FILE_MAX + 1, f);
    if (ferror(f)) {
        sl_tls_errf(err, cap, "%s: cannot read (%s)", path, strerror(errno));
        goto out;
    }
    if (n > PEM_FILE_MAX) {
        sl_tls_errf(err, cap, "%s: too large for a PEM file", path);
        goto out;
    }
    buf[n] = '\0';
    b = BIO_new_mem_buf(buf, (int)n);
    if (b == NULL)
        sl_tls_errf(err, cap, "%s: out of memory", path);
out:
    fclose(f);
    if (b == NULL) {
        free(buf);
        buf = NULL;
    }
    *data = buf;
    *len = n;
    return b;
}

/* A file without the PEM block we want at all is the common mistake (a
 * key given as the certificate, a DER file); anything else is a damaged
 * block. */
static int pem_error(const char *path, const char *what, const char *data,
                     size_t len, const char *marker, char *err, size_t cap)
{
    char reason[128];
    if (memmem(data, len, marker, strlen(marker)) == NULL) {
        ERR_clear_error();
        sl_tls_errf(err, cap, "%s: no %s found", path, what);
    } else {
        sl_tls_errf(err, cap, "%s: bad PEM %s (%s)", path, what,
                    sl_tls_ossl_reason(reason, sizeof(reason)));
    }
    return SL_EPARSE;
}

int sl_tls_load_certs(const char *path, X509 **leaf, STACK_OF(X509) * *chain,
                      char *err, size_t cap)
{
    int rc = 0;
    X509 *first = NULL;
    STACK_OF(X509) *rest = NULL;
    char *data = NULL;
    size_t len = 0;
    BIO *b = read_file(path, &data, &len, err, cap);
    if (b == NULL)
        return SL_ENOTFOUND;

    first = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (first == NULL) {
        rc = pem_error(path, "certificate", data, len, "CERTIFICATE-----", err,
                       cap);
        goto out;
    }
    rest = sk_X509_new_null();
    if (rest == NULL) {
        rc = UV_ENOMEM;
        sl_tls_errf(err, cap, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
                ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error(); /* the end of the file */
                break;
            }
            rc = pem_error(path, "certificate", data, len, "CERTIFICATE-----",
                           err, cap);
            goto out;
        }
        if (!sk_X509_push(rest, x)) {
            X509_free(x);
            rc = UV_ENOMEM;
            sl_tls_errf(err, cap, "%s: out of memory", path);
            goto out;
        }
    }
    *leaf = first;
    *chain = rest;
    first = NULL;
    rest = NULL;
out:
    X509_free(first);
    sk_X509_pop_free(rest, X509_free);
    BIO_free(b);
    free(data);
    return rc;
}

/* Never prompt for a pass phrase: a daemon has no terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)u = 1;
    return -1;
}

int sl_tls_load_key(const char *path, EVP_PKEY **key, char *err, size_t cap)
{
    char *data = NULL;
    size_t len = 0;
    BIO *b = read_file(path, &data, &len, err, cap);
    if (b == NULL)
        return SL_ENOTFOUND;
    int asked = 0;
    int rc = 0;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_password, &asked);
    BIO_free(b);
    if (k == NULL) {
        if (asked) {
            ERR_clear_error();
            sl_tls_errf(err, cap,
                        "%s: the private key is encrypted (give it without "
                        "a pass phrase)",
                        path);
            rc = SL_EPARSE;
        } else {
            rc = pem_error(path, "private key", data, len, "PRIVATE KEY-----",
                           err, cap);
        }
    }
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc == 0)
        *key = k;
    return rc;
}

void sl_tls_serial_hex(const X509 *x, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    const ASN1_INTEGER *ai = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    if (bn == NULL)
        return;
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (hex == NULL)
        return;
    size_t n = strlen(hex);
    if (n < cap) {
        for (size_t i = 0; i <= n; i++)
            out[i] =
                (char)((hex[i] >= 'A' && hex[i] <= 'F') ? hex[i] - 'A' + 'a'
                                                        : hex[i]);
    }
    OPENSSL_free(hex);
}

int sl_tls_pin_of_cert(X509 *x, char *out, size_t cap)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(X509_get0_pubkey(x), &der);
    if (len <= 0)
        return UV_ENOMEM;
    unsigned char md[32];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen != sizeof(md))
        return UV_ENOMEM;
    /* 32 bytes are 44 base64 characters. */
    if (cap < sizeof("sha256/") + 44)
        return SL_ETOOBIG;
    memcpy(out, "sha256/", 7);
    EVP_EncodeBlock((unsigned char *)out + 7, md, (int)sizeof(md));
    return 0;
}

int sl_tls_pin_of_cert_file(const char *path, char *out, size_t cap)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    int rc = sl_tls_load_certs(path, &leaf, &chain, NULL, 0);
    if (rc != 0)
        return rc;
    rc = sl_tls_pin_of_cert(leaf, out, cap);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

size_t sl_tls_cert_names(X509 *x,
                         void (*fn)(const char *name, size_t len, void *arg),
                         void *arg)
{
    size_t n = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const ASN1_IA5STRING *s = g->d.dNSName;
        size_t len = (size_t)ASN1_STRING_length(s);
        const char *p = (const char *)ASN1_STRING_get0_data(s);
        if (len == 0 || memchr(p, '\0', len) != NULL)
            continue;
        fn(p, len, arg);
        n++;
    }
    GENERAL_NAMES_free(sans);
    if (n > 0)
        return n;

    const X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0)
        return 0;
    const ASN1_STRING *cn =
        X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, cn);
    if (len > 0 && memchr(utf8, '\0', (size_t)len) == NULL) {
        fn((const char *)utf8, (size_t)len, arg);
        n++;
    }
    OPENSSL_free(utf8);
    return n;
}

struct names_str {
    char *out;
    size_t cap;
    size_t len;
    int cut;
};

static void names_str_add(const char *name, size_t len, void *arg)
{
    struct names_str *ns = arg;
    if (ns->cut)
        return;
    const char *sep = ns->len > 0 ? ", " : "";
    size_t need = strlen(sep) + len;
    /* Keep room for ", ..." so a cut list still says it was cut. */
    if (ns->len + need + 6 > ns->cap) {
        ns->cut = 1;
        if (ns->len + 6 <= ns->cap)
            ns->len += (size_t)snprintf(ns->out + ns->len, ns->cap - ns->len,
                                        "%s...", sep);
        return;
    }
    ns->len += (size_t)snprintf(ns->out + ns->len, ns->cap - ns->len, "%s%.*s",
                                sep, (int)len, name);
}

void sl_tls_cert_names_str(X509 *x, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    struct names_str ns = {out, cap, 0, 0};
    sl_tls_cert_names(x, names_str_add, &ns);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_IPADD)
            continue;
        const ASN1_OCTET_STRING *ip = g->d.iPAddress;
        char buf[INET6_ADDRSTRLEN];
        int len = ASN1_STRING_length(ip);
        int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
        if (af != 0 &&
            inet_ntop(af, ASN1_STRING_get0_data(ip), buf, sizeof(buf)) != NULL)
            names_str_add(buf, strlen(buf), &ns);
    }
    GENERAL_NAMES_free(sans);
    if (ns.len == 0)
        snprintf(out, cap, "no name");
}

void sl_tls_time_str(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (cap == 0)
        return;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm) ||
        strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, cap, "an unreadable date");
}

int sl_tls_is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}
