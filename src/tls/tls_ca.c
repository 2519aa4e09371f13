#include "tls/tls_ca.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "core/error.h"
#include "core/statedir.h"
#include "tls/tls_util.h"

#define PATHCAP SL_STATEDIR_PATH_MAX

EVP_PKEY *sl_tls_ca_new_key(void)
{
    return EVP_EC_gen("P-256");
}

/* 127 random bits: positive, and as unguessable as RFC 5280 asks. */
static int set_random_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL &&
             BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ODD) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, subject, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int set_times(X509 *x, time_t not_before, time_t not_after)
{
    return X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &not_before) &&
           X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &not_after);
}

int sl_tls_ca_make(time_t now, X509 **cert, EVP_PKEY **key)
{
    int rc = UV_ENOMEM;
    EVP_PKEY *k = sl_tls_ca_new_key();
    X509 *x = X509_new();
    unsigned char rnd[8];
    char cn[64];
    if (k == NULL || x == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto out;
    int n = snprintf(cn, sizeof(cn), "sluice local CA ");
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += snprintf(cn + n, sizeof(cn) - (size_t)n, "%02x", rnd[i]);

    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, name) ||
        !set_times(x, now - 3600, now + (time_t)SL_TLS_CA_DAYS * 86400) ||
        !X509_set_pubkey(x, k) ||
        !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_ext(x, x, NID_subject_key_identifier, "hash") ||
        !add_ext(x, x, NID_authority_key_identifier, "keyid:always") ||
        !X509_sign(x, k, EVP_sha256()))
        goto out;
    *cert = x;
    *key = k;
    x = NULL;
    k = NULL;
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static int add_san(GENERAL_NAMES *gens, const char *name)
{
    GENERAL_NAME *g = NULL;
    if (sl_tls_is_ip(name)) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
        if (ip == NULL)
            return 0;
        g = GENERAL_NAME_new();
        if (g == NULL) {
            ASN1_OCTET_STRING_free(ip);
            return 0;
        }
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || !ASN1_STRING_set(s, name, -1)) {
            ASN1_IA5STRING_free(s);
            return 0;
        }
        g = GENERAL_NAME_new();
        if (g == NULL) {
            ASN1_IA5STRING_free(s);
            return 0;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
    }
    if (!sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        return 0;
    }
    return 1;
}

X509 *sl_tls_ca_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key,
                      const char *const *names, size_t nnames,
                      time_t not_before, time_t not_after)
{
    X509 *x = X509_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ok = 0;
    if (x == NULL || gens == NULL)
        goto out;
    const char *cn = NULL;
    for (size_t i = 0; i < nnames; i++) {
        if (!add_san(gens, names[i]))
            goto out;
        if (cn == NULL && !sl_tls_is_ip(names[i]))
            cn = names[i];
    }
    X509_NAME *name = X509_get_subject_name(x);
    if (cn != NULL && strlen(cn) <= 64 &&
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0))
        goto out;
    /* An RSA key exchange needs keyEncipherment; ECDSA only signs. */
    const char *ku = EVP_PKEY_is_a(key, "RSA")
                         ? "critical,digitalSignature,keyEncipherment"
                         : "critical,digitalSignature";
    if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        !set_times(x, not_before, not_after) || !X509_set_pubkey(x, key) ||
        !add_ext(ca, x, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(ca, x, NID_key_usage, ku) ||
        !add_ext(ca, x, NID_ext_key_usage, "serverAuth") ||
        !add_ext(ca, x, NID_subject_key_identifier, "hash") ||
        !add_ext(ca, x, NID_authority_key_identifier, "keyid:always") ||
        (nnames > 0 && !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                                          X509V3_ADD_DEFAULT)) ||
        !X509_sign(x, ca_key, EVP_sha256()))
        goto out;
    ok = 1;
out:
    ERR_clear_error();
    GENERAL_NAMES_free(gens);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

static int write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k,
                     char *err, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = UV_ENOMEM;
    if (b == NULL)
        goto out;
    if (x != NULL && !PEM_write_bio_X509(b, x))
        goto out;
    if (k != NULL && !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        goto out;
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    rc = sl_statedir_write_file(dir, name, data, (size_t)len);
out:
    ERR_clear_error();
    if (rc != 0)
        sl_tls_errf(err, cap, "%s/%s: cannot write (%s)", dir, name,
                    sl_strerror(rc));
    BIO_free(b);
    return rc;
}

int sl_tls_ca_load(const char *dir, X509 **cert, EVP_PKEY **key, char *err,
                   size_t cap)
{
    char ca_path[PATHCAP], key_path[PATHCAP];
    X509 *x = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *k = NULL;
    int rc = sl_statedir_path(dir, "ca.pem", ca_path, sizeof(ca_path));
    if (rc == 0)
        rc = sl_statedir_path(dir, "ca-key.pem", key_path, sizeof(key_path));
    if (rc != 0) {
        sl_tls_errf(err, cap, "%s: path too long", dir);
        return rc;
    }
    rc = sl_tls_load_certs(ca_path, &x, &chain, err, cap);
    if (rc != 0)
        goto out;
    rc = sl_tls_load_key(key_path, &k, err, cap);
    if (rc != 0)
        goto out;
    if (X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        sl_tls_errf(err, cap, "%s does not match %s", key_path, ca_path);
        rc = SL_ECONFIG;
        goto out;
    }
    if (X509_check_ca(x) == 0) {
        sl_tls_errf(err, cap, "%s: not a CA certificate", ca_path);
        rc = SL_ECONFIG;
        goto out;
    }
    *cert = x;
    *key = k;
    x = NULL;
    k = NULL;
out:
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    return rc;
}

/* The leaf in dir is kept when it is ours (signed by ca, its key beside
 * it), for domain, and not about to expire. */
static int leaf_good(const char *dir, X509 *ca, const char *domain, time_t now)
{
    char cpath[PATHCAP], kpath[PATHCAP];
    X509 *x = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *k = NULL;
    int good = 0;
    if (sl_statedir_path(dir, "cert.pem", cpath, sizeof(cpath)) != 0 ||
        sl_statedir_path(dir, "key.pem", kpath, sizeof(kpath)) != 0)
        return 0;
    if (sl_tls_load_certs(cpath, &x, &chain, NULL, 0) != 0 ||
        sl_tls_load_key(kpath, &k, NULL, 0) != 0)
        goto out;
    time_t renew_at = now + (time_t)SL_TLS_RENEW_DAYS * 86400;
    int name_ok = sl_tls_is_ip(domain)
                      ? X509_check_ip_asc(x, domain, 0) == 1
                      : X509_check_host(x, domain, 0, 0, NULL) == 1;
    good = X509_check_private_key(x, k) == 1 &&
           X509_verify(x, X509_get0_pubkey(ca)) == 1 && name_ok &&
           X509_cmp_time(X509_get0_notBefore(x), &now) < 0 &&
           X509_cmp_time(X509_get0_notAfter(x), &renew_at) > 0;
out:
    ERR_clear_error();
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    return good;
}

static int issue_leaf(const char *dir, X509 *ca, EVP_PKEY *ca_key,
                      const char *domain, time_t now, char *err, size_t cap)
{
    const char *names[4];
    size_t n = 0;
    char wild[300];
    names[n++] = domain;
    if (!sl_tls_is_ip(domain)) {
        snprintf(wild, sizeof(wild), "*.%s", domain);
        names[n++] = wild;
    }
    if (strcasecmp(domain, "localhost") == 0) {
        names[n++] = "127.0.0.1";
        names[n++] = "::1";
    }
    int rc = UV_ENOMEM;
    EVP_PKEY *k = sl_tls_ca_new_key();
    X509 *x = NULL;
    if (k == NULL)
        goto out;
    time_t not_after = now + (time_t)SL_TLS_LEAF_DAYS * 86400;
    x = sl_tls_ca_issue(ca, ca_key, k, names, n, now - 3600, not_after);
    if (x == NULL)
        goto out;
    /* The key first: a crash between the two renames leaves a pair that
     * does not match, which the next start re-issues. */
    rc = write_pem(dir, "key.pem", NULL, k, err, cap);
    if (rc == 0)
        rc = write_pem(dir, "cert.pem", x, NULL, err, cap);
out:
    if (rc == UV_ENOMEM)
        sl_tls_errf(err, cap, "%s: cannot issue a certificate (out of memory)",
                    dir);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int sl_tls_ca_ensure(const char *dir, const char *domain, time_t now,
                     int *issued, char *err, size_t cap)
{
    char ca_path[PATHCAP];
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    struct stat st;
    if (issued != NULL)
        *issued = 0;
    if (domain == NULL || domain[0] == '\0' || strlen(domain) > 253) {
        sl_tls_errf(err, cap, "the local CA needs a domain name");
        return SL_ECONFIG;
    }
    int rc = sl_statedir_ensure(dir);
    if (rc != 0) {
        sl_tls_errf(err, cap, "%s: cannot create (%s)", dir, sl_strerror(rc));
        return rc;
    }
    /* The keys live here: nobody else reads the folder. */
    if (chmod(dir, 0700) != 0) {
        rc = -errno;
        sl_tls_errf(err, cap, "%s: cannot chmod (%s)", dir, strerror(errno));
        return rc;
    }
    rc = sl_statedir_path(dir, "ca.pem", ca_path, sizeof(ca_path));
    if (rc != 0) {
        sl_tls_errf(err, cap, "%s: path too long", dir);
        return rc;
    }

    if (stat(ca_path, &st) == 0) {
        rc = sl_tls_ca_load(dir, &ca, &ca_key, err, cap);
        if (rc != 0)
            goto out;
    } else if (errno == ENOENT) {
        rc = sl_tls_ca_make(now, &ca, &ca_key);
        if (rc != 0) {
            sl_tls_errf(err, cap, "%s: cannot make a CA (out of memory)", dir);
            goto out;
        }
        rc = write_pem(dir, "ca-key.pem", NULL, ca_key, err, cap);
        if (rc == 0)
            rc = write_pem(dir, "ca.pem", ca, NULL, err, cap);
        if (rc != 0)
            goto out;
        /* Public, unlike everything else here: users hand it to clients. */
        chmod(ca_path, 0644);
    } else {
        rc = -errno;
        sl_tls_errf(err, cap, "%s: cannot stat (%s)", ca_path, strerror(errno));
        goto out;
    }

    if (!leaf_good(dir, ca, domain, now)) {
        rc = issue_leaf(dir, ca, ca_key, domain, now, err, cap);
        if (rc != 0)
            goto out;
        if (issued != NULL)
            *issued = 1;
    }
out:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}
