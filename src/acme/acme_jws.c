#include "acme/acme_jws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <uv.h>

#include "core/b64.h"
#include "core/error.h"

size_t sl_acme_b64url_encode(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    out[0] = '\0';
    int rc = sl_b64url_encode(p, n, out, cap);
    return rc < 0 ? 0 : (size_t)rc;
}

int sl_acme_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen)
{
    /* What some CAs send: padded. Otherwise core/b64's canonical form. */
    while (n > 0 && s[n - 1] == '=')
        n--;
    int rc = sl_b64url_decode(s, n, out, cap);
    if (rc < 0)
        return rc;
    *outlen = (size_t)rc;
    return 0;
}

static int is_p256(EVP_PKEY *key)
{
    char group[64];
    size_t len = 0;
    if (key == NULL || !EVP_PKEY_is_a(key, "EC") ||
        !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                        sizeof(group), &len)) {
        ERR_clear_error();
        return 0;
    }
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

static int coord_b64(EVP_PKEY *key, const char *param, char *out, size_t cap)
{
    BIGNUM *bn = NULL;
    uint8_t raw[32];
    int ok = EVP_PKEY_get_bn_param(key, param, &bn) &&
             BN_bn2binpad(bn, raw, sizeof(raw)) == (int)sizeof(raw);
    BN_free(bn);
    ERR_clear_error();
    if (!ok)
        return UV_EINVAL;
    return sl_acme_b64url_encode(raw, sizeof(raw), out, cap) > 0 ? 0
                                                                 : SL_ETOOBIG;
}

int sl_acme_jwk(EVP_PKEY *key, char *out, size_t cap)
{
    char x[SL_ACME_B64URL_LEN(32)], y[SL_ACME_B64URL_LEN(32)];
    if (!is_p256(key))
        return UV_EINVAL;
    int rc = coord_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, x, sizeof(x));
    if (rc == 0)
        rc = coord_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, y, sizeof(y));
    if (rc != 0)
        return rc;
    int n = snprintf(out, cap,
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\","
                     "\"y\":\"%s\"}",
                     x, y);
    return n < 0 || (size_t)n >= cap ? SL_ETOOBIG : 0;
}

int sl_acme_thumbprint(EVP_PKEY *key, char *out, size_t cap)
{
    char jwk[SL_ACME_JWK_MAX];
    uint8_t md[SHA256_DIGEST_LENGTH];
    int rc = sl_acme_jwk(key, jwk, sizeof(jwk));
    if (rc != 0)
        return rc;
    SHA256((const unsigned char *)jwk, strlen(jwk), md);
    return sl_acme_b64url_encode(md, sizeof(md), out, cap) > 0 ? 0 : SL_ETOOBIG;
}

/* One DER length at *p (definite form, at most 2 octets: a signature is
 * short). Returns 0 or SL_EPARSE. */
static int der_len(const uint8_t **p, const uint8_t *end, size_t *len)
{
    if (*p >= end)
        return SL_EPARSE;
    uint8_t b = *(*p)++;
    if (b < 0x80) {
        *len = b;
    } else if (b == 0x81) {
        if (*p >= end || **p < 0x80)
            return SL_EPARSE;
        *len = *(*p)++;
    } else {
        return SL_EPARSE;
    }
    return (size_t)(end - *p) < *len ? SL_EPARSE : 0;
}

static int der_int32(const uint8_t **p, const uint8_t *end, uint8_t out[32])
{
    size_t len;
    if (*p >= end || *(*p)++ != 0x02 || der_len(p, end, &len) != 0 || len == 0)
        return SL_EPARSE;
    const uint8_t *v = *p;
    *p += len;
    if (v[0] & 0x80)
        return SL_EPARSE; /* negative */
    /* One leading zero only when the next byte's top bit is set. */
    if (len > 1 && v[0] == 0 && !(v[1] & 0x80))
        return SL_EPARSE;
    while (len > 0 && v[0] == 0) {
        v++;
        len--;
    }
    if (len > 32)
        return SL_EPARSE;
    memset(out, 0, 32);
    memcpy(out + 32 - len, v, len);
    return 0;
}

int sl_acme_sig_der_to_raw(const uint8_t *der, size_t n, uint8_t out[64])
{
    const uint8_t *p = der, *end = der + n;
    size_t len;
    if (n < 2 || *p++ != 0x30 || der_len(&p, end, &len) != 0 || p + len != end)
        return SL_EPARSE;
    if (der_int32(&p, end, out) != 0 || der_int32(&p, end, out + 32) != 0)
        return SL_EPARSE;
    return p == end ? 0 : SL_EPARSE;
}

/* base64url of s into a new string. */
static char *b64_dup(const uint8_t *p, size_t n)
{
    size_t cap = SL_ACME_B64URL_LEN(n);
    char *s = malloc(cap);
    if (s != NULL)
        sl_acme_b64url_encode(p, n, s, cap);
    return s;
}

/* protected "." payload, both base64url. */
static char *signing_input(const char *prot_b64, const char *payload_b64)
{
    size_t a = strlen(prot_b64), b = strlen(payload_b64);
    char *s = malloc(a + b + 2);
    if (s == NULL)
        return NULL;
    memcpy(s, prot_b64, a);
    s[a] = '.';
    memcpy(s + a + 1, payload_b64, b + 1);
    return s;
}

static int es256_sign(EVP_PKEY *key, const char *input, uint8_t raw[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t derlen = sizeof(der);
    int rc = UV_EINVAL;
    if (md == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, der, &derlen, (const unsigned char *)input,
                       strlen(input)) != 1)
        goto out;
    rc = sl_acme_sig_der_to_raw(der, derlen, raw) == 0 ? 0 : UV_EINVAL;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    return rc;
}

/* {"protected":p,"payload":q,"signature":s} as a new string. */
static char *flattened(const char *prot, const char *payload, const char *sig)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "protected", prot, "payload",
                          payload, "signature", sig);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int sl_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce,
                const char *url, const char *payload, char **out)
{
    char jwk[SL_ACME_JWK_MAX];
    json_t *hdr = NULL;
    char *hdr_s = NULL, *prot = NULL, *body = NULL, *input = NULL;
    char *sig = NULL;
    uint8_t raw[64];
    int rc = UV_EINVAL;
    *out = NULL;
    if (url == NULL || !is_p256(key))
        goto out;
    rc = UV_ENOMEM;
    hdr = json_pack("{s:s, s:s}", "alg", "ES256", "url", url);
    if (hdr == NULL)
        goto out;
    if (kid != NULL) {
        if (json_object_set_new(hdr, "kid", json_string(kid)) != 0)
            goto out;
    } else {
        rc = sl_acme_jwk(key, jwk, sizeof(jwk));
        if (rc != 0)
            goto out;
        rc = UV_ENOMEM;
        if (json_object_set_new(hdr, "jwk", json_loads(jwk, 0, NULL)) != 0)
            goto out;
    }
    if (nonce != NULL &&
        json_object_set_new(hdr, "nonce", json_string(nonce)) != 0)
        goto out;
    hdr_s = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    const char *pl = payload != NULL ? payload : "";
    if (hdr_s == NULL ||
        (prot = b64_dup((const uint8_t *)hdr_s, strlen(hdr_s))) == NULL ||
        (body = b64_dup((const uint8_t *)pl, strlen(pl))) == NULL ||
        (input = signing_input(prot, body)) == NULL)
        goto out;
    rc = es256_sign(key, input, raw);
    if (rc != 0)
        goto out;
    rc = UV_ENOMEM;
    sig = b64_dup(raw, sizeof(raw));
    if (sig == NULL || (*out = flattened(prot, body, sig)) == NULL)
        goto out;
    rc = 0;
out:
    json_decref(hdr);
    free(hdr_s);
    free(prot);
    free(body);
    free(input);
    free(sig);
    return rc;
}

int sl_acme_eab(const char *eab_kid, const uint8_t *mac_key, size_t keylen,
                const char *url, const char *jwk, char **out)
{
    json_t *hdr = NULL;
    char *hdr_s = NULL, *prot = NULL, *body = NULL, *input = NULL;
    char *sig = NULL;
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    int rc = UV_ENOMEM;
    *out = NULL;
    hdr = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url",
                    url);
    hdr_s = hdr != NULL ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (hdr_s == NULL ||
        (prot = b64_dup((const uint8_t *)hdr_s, strlen(hdr_s))) == NULL ||
        (body = b64_dup((const uint8_t *)jwk, strlen(jwk))) == NULL ||
        (input = signing_input(prot, body)) == NULL)
        goto out;
    if (HMAC(EVP_sha256(), mac_key, (int)keylen, (const unsigned char *)input,
             strlen(input), mac, &maclen) == NULL) {
        ERR_clear_error();
        rc = UV_EINVAL;
        goto out;
    }
    sig = b64_dup(mac, maclen);
    if (sig == NULL || (*out = flattened(prot, body, sig)) == NULL)
        goto out;
    rc = 0;
out:
    json_decref(hdr);
    free(hdr_s);
    free(prot);
    free(body);
    free(input);
    free(sig);
    return rc;
}

int sl_acme_key_authz(const char *token, const char *thumbprint, char *out,
                      size_t cap)
{
    size_t n = strlen(token);
    if (n == 0)
        return SL_EPARSE;
    /* A token is base64url characters only (RFC 8555 section 8.1). */
    if (strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789-_") != n)
        return SL_EPARSE;
    int w = snprintf(out, cap, "%s.%s", token, thumbprint);
    return w < 0 || (size_t)w >= cap ? SL_ETOOBIG : 0;
}

void sl_acme_authz_digest(const char *key_authz, uint8_t out[32])
{
    SHA256((const unsigned char *)key_authz, strlen(key_authz), out);
}

void sl_acme_dns01_value(const char *key_authz, char out[SL_ACME_B64_SHA256])
{
    uint8_t md[32];
    sl_acme_authz_digest(key_authz, md);
    sl_acme_b64url_encode(md, sizeof(md), out, SL_ACME_B64_SHA256);
}
