#include "acme/acme_cert.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "core/error.h"
#include "tls/tls_util.h"

/* id-pe-acmeIdentifier, RFC 8737 section 6.1. */
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31"
#define ALPN_CERT_DAYS 7

EVP_PKEY *sl_acme_key_new(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    ERR_clear_error();
    return k;
}

void sl_acme_pem_free(char *pem)
{
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
}

/* The content of a memory BIO as a new string. */
static char *bio_string(BIO *b)
{
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, data, (size_t)len);
    s[len] = '\0';
    return s;
}

int sl_acme_key_pem(EVP_PKEY *key, char **out)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = UV_ENOMEM;
    *out = NULL;
    if (b != NULL &&
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1 &&
        (*out = bio_string(b)) != NULL)
        rc = 0;
    ERR_clear_error();
    if (b != NULL) {
        /* The key's bytes stay in the BIO's buffer otherwise. */
        char *data = NULL;
        long len = BIO_get_mem_data(b, &data);
        if (data != NULL && len > 0)
            OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(b);
    return rc;
}

int sl_acme_key_from_pem(const char *pem, EVP_PKEY **out)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k =
        b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    if (k == NULL)
        return SL_EPARSE;
    *out = k;
    return 0;
}

static int add_dns_sans(X509_EXTENSIONS *exts, X509 *x,
                        const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = 0;
    if (gens == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        GENERAL_NAME *g = GENERAL_NAME_new();
        if (s == NULL || g == NULL || !ASN1_STRING_set(s, names[i], -1)) {
            ASN1_IA5STRING_free(s);
            GENERAL_NAME_free(g);
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto out;
        }
    }
    if (exts != NULL) {
        X509_EXTENSION *e = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
        ok = e != NULL && sk_X509_EXTENSION_push(exts, e);
        if (!ok)
            X509_EXTENSION_free(e);
    } else {
        ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                               X509V3_ADD_DEFAULT) == 1;
    }
out:
    GENERAL_NAMES_free(gens);
    return ok;
}

int sl_acme_csr(EVP_PKEY *key, const char *const *names, size_t n,
                uint8_t **der, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    X509_EXTENSIONS *exts = sk_X509_EXTENSION_new_null();
    unsigned char *buf = NULL;
    int rc = UV_ENOMEM;
    *der = NULL;
    if (req == NULL || exts == NULL || n == 0)
        goto out;
    X509_NAME *subj = X509_REQ_get_subject_name(req);
    /* A CN holds 64 characters at most; a longer name is in the SAN only. */
    if (strlen(names[0]) <= 64 &&
        !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)names[0], -1, -1, 0))
        goto out;
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        !X509_REQ_set_pubkey(req, key) || !add_dns_sans(exts, NULL, names, n) ||
        !X509_REQ_add_extensions(req, exts))
        goto out;
    rc = UV_EINVAL;
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    rc = UV_ENOMEM;
    int l = i2d_X509_REQ(req, &buf);
    if (l <= 0)
        goto out;
    *der = buf;
    *len = (size_t)l;
    buf = NULL;
    rc = 0;
out:
    ERR_clear_error();
    OPENSSL_free(buf);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return rc;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

int sl_acme_chain_info(const char *chain_pem, const char *key_pem,
                       const char *name, struct sl_acme_cert_info *out)
{
    BIO *b = BIO_new_mem_buf(chain_pem, -1);
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    int rc = UV_ENOMEM;
    if (b == NULL)
        goto out;
    rc = SL_EPARSE;
    leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (leaf == NULL)
        goto out;
    if (key_pem != NULL) {
        if (sl_acme_key_from_pem(key_pem, &key) != 0 ||
            X509_check_private_key(leaf, key) != 1)
            goto out;
    }
    if (name != NULL &&
        X509_check_host(leaf, name, strlen(name), X509_CHECK_FLAG_NO_WILDCARDS,
                        NULL) != 1)
        goto out;
    memset(out, 0, sizeof(*out));
    out->not_before = asn1_unix(X509_get0_notBefore(leaf));
    out->not_after = asn1_unix(X509_get0_notAfter(leaf));
    sl_tls_serial_hex(leaf, out->serial, sizeof(out->serial));
    X509_NAME_get_text_by_NID(X509_get_issuer_name(leaf), NID_commonName,
                              out->issuer, sizeof(out->issuer));
    rc = out->not_after > 0 ? 0 : SL_EPARSE;
out:
    ERR_clear_error();
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(b);
    return rc;
}

/* The extension's value is the DER of an OCTET STRING of the digest. */
static int add_acme_identifier(X509 *x, const uint8_t digest[32])
{
    uint8_t der[34] = {0x04, 0x20};
    memcpy(der + 2, digest, 32);
    ASN1_OBJECT *obj = OBJ_txt2obj(ACME_IDENTIFIER_OID, 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    int ok = obj != NULL && val != NULL &&
             ASN1_OCTET_STRING_set(val, der, sizeof(der)) &&
             (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, val)) != NULL &&
             X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(val);
    ASN1_OBJECT_free(obj);
    return ok;
}

int sl_acme_alpn_cert(const char *name, const uint8_t digest[32], X509 **cert,
                      EVP_PKEY **key)
{
    EVP_PKEY *k = sl_acme_key_new();
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    int rc = UV_ENOMEM;
    time_t now = time(NULL);
    time_t nb = now - 3600, na = now + (time_t)ALPN_CERT_DAYS * 86400;
    if (k == NULL || x == NULL || bn == NULL)
        goto out;
    X509_NAME *subj = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
        (strlen(name) <= 64 &&
         !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                     (const unsigned char *)name, -1, -1, 0)) ||
        !X509_set_issuer_name(x, subj) ||
        !X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &na) ||
        !X509_set_pubkey(x, k) || !add_dns_sans(NULL, x, &name, 1) ||
        !add_acme_identifier(x, digest) || !X509_sign(x, k, EVP_sha256()))
        goto out;
    *cert = x;
    *key = k;
    x = NULL;
    k = NULL;
    rc = 0;
out:
    ERR_clear_error();
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}
