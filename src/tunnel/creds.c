#include "tunnel/creds.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/error.h"
#include "core/str.h"
#include "core/b64.h"

#define SCRYPT_N 16384
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SALT_LEN 16
#define KEY_LEN 32
#define SALT_MIN 8
#define KEY_MIN 16
#define BLOB_MAX 64
/* scrypt needs about 128 * r * N bytes; a stored string may not ask for
 * more, so a tampered database cannot make verify eat the machine. */
#define SCRYPT_MEM_MAX (64u * 1024 * 1024)

static int derive(const char *password, const unsigned char *salt,
                  size_t saltlen, uint64_t n, uint32_t r, uint32_t p,
                  unsigned char *key, size_t keylen)
{
    int rc = UV_EIO;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kctx = NULL;
    if (kdf == NULL)
        goto out;
    kctx = EVP_KDF_CTX_new(kdf);
    if (kctx == NULL)
        goto out;
    /* Leave headroom over 128*r*N for OpenSSL's own bookkeeping. */
    uint64_t maxmem = 2ull * SCRYPT_MEM_MAX;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                          (void *)password, strlen(password)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                          saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(kctx, key, keylen, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

int sl_password_hash(const char *password, char *out, size_t outlen)
{
    unsigned char salt[SALT_LEN];
    unsigned char key[KEY_LEN];
    char salt64[SL_B64_LEN(SALT_LEN) + 1];
    char key64[SL_B64_LEN(KEY_LEN) + 1];
    int rc;
    if (out == NULL || password == NULL) {
        if (out != NULL && outlen > 0)
            out[0] = '\0';
        return UV_EINVAL;
    }
    if (outlen > 0)
        out[0] = '\0';
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        rc = UV_EIO;
        goto out;
    }
    rc = derive(password, salt, sizeof(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P,
                key, sizeof(key));
    if (rc != 0)
        goto out;
    sl_b64_encode(salt, sizeof(salt), salt64, sizeof(salt64));
    sl_b64_encode(key, sizeof(key), key64, sizeof(key64));
    int n = snprintf(out, outlen, "scrypt$%d$%d$%d$%s$%s", SCRYPT_N, SCRYPT_R,
                     SCRYPT_P, salt64, key64);
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen > 0)
            out[0] = '\0';
        rc = SL_ETOOBIG;
    }
out:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* Reads a decimal field of the stored string up to the next '$': digits
 * only, no sign, no leading zero, at most max. */
static int parse_uint_field(const char **p, uint64_t max, uint64_t *v)
{
    const char *s = *p;
    uint64_t acc = 0;
    size_t digits = 0;
    while (s[digits] >= '0' && s[digits] <= '9') {
        acc = acc * 10 + (uint64_t)(s[digits] - '0');
        if (acc > max)
            return SL_EPARSE;
        digits++;
    }
    if (digits == 0 || (digits > 1 && s[0] == '0') || s[digits] != '$')
        return SL_EPARSE;
    *v = acc;
    *p = s + digits + 1;
    return 0;
}

const char *sl_password_dummy_hash(void)
{
    /* Made once with the parameters of sl_password_hash; its password was
     * random and thrown away. */
    return "scrypt$16384$8$1$xOrNjblU89Z1oLLCE40EOw==$"
           "HJ9cekH9iOilZf/i8wYB9zCGESjCWhvY7/nnzKZsY7E=";
}

int sl_password_verify(const char *password, const char *stored)
{
    unsigned char salt[BLOB_MAX];
    unsigned char want[BLOB_MAX];
    unsigned char got[BLOB_MAX];
    uint64_t n, r, p;
    int rc;
    if (password == NULL || stored == NULL)
        return UV_EINVAL;
    if (strncmp(stored, "scrypt$", 7) != 0)
        return SL_EPARSE;
    const char *s = stored + 7;
    if (parse_uint_field(&s, 1u << 30, &n) != 0 ||
        parse_uint_field(&s, 1u << 20, &r) != 0 ||
        parse_uint_field(&s, 1u << 20, &p) != 0)
        return SL_EPARSE;
    if (n < 2 || (n & (n - 1)) != 0 || r < 1 || p < 1 ||
        128 * r * n > SCRYPT_MEM_MAX || r * p >= (1u << 30) / 8)
        return SL_EPARSE;
    const char *dollar = strchr(s, '$');
    if (dollar == NULL)
        return SL_EPARSE;
    int saltlen = sl_b64_decode(s, (size_t)(dollar - s), salt, sizeof(salt));
    const char *k = dollar + 1;
    int keylen = sl_b64_decode(k, strlen(k), want, sizeof(want));
    if (saltlen < SALT_MIN || keylen < KEY_MIN)
        return SL_EPARSE;
    rc = derive(password, salt, (size_t)saltlen, n, (uint32_t)r, (uint32_t)p,
                got, (size_t)keylen);
    if (rc == 0)
        rc = CRYPTO_memcmp(got, want, (size_t)keylen) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return rc;
}

int sl_basic_auth_parse(const char *value, size_t len, char *user,
                        size_t usercap, char *pass, size_t passcap)
{
    unsigned char text[SL_BASIC_USER_MAX + SL_BASIC_PASS_MAX + 512];
    int rc = SL_EPARSE;
    if (user != NULL && usercap > 0)
        user[0] = '\0';
    if (pass != NULL && passcap > 0)
        pass[0] = '\0';
    if (value == NULL || user == NULL || pass == NULL)
        return SL_EPARSE;
    sl_trim_ows(&value, &len);
    if (len < 6 || strncasecmp(value, "basic", 5) != 0 || value[5] != ' ')
        return SL_EPARSE;
    value += 5;
    len -= 5;
    while (len > 0 && value[0] == ' ') {
        value++;
        len--;
    }
    int n = sl_b64_decode(value, len, text, sizeof(text));
    if (n < 0) {
        rc = n;
        goto out;
    }
    unsigned char *colon = memchr(text, ':', (size_t)n);
    if (colon == NULL)
        goto out;
    for (int i = 0; i < n; i++) {
        if (text[i] < 0x20 || text[i] == 0x7f)
            goto out;
    }
    size_t ulen = (size_t)(colon - text);
    size_t plen = (size_t)n - ulen - 1;
    if (ulen >= usercap || plen >= passcap) {
        rc = SL_ETOOBIG;
        goto out;
    }
    memcpy(user, text, ulen);
    user[ulen] = '\0';
    memcpy(pass, colon + 1, plen);
    pass[plen] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}

int sl_basic_auth_format(const char *user, const char *pass, char *out,
                         size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (user == NULL || pass == NULL || out == NULL || strchr(user, ':'))
        return UV_EINVAL;
    size_t ulen = strlen(user);
    size_t plen = strlen(pass);
    char text[SL_BASIC_USER_MAX + SL_BASIC_PASS_MAX];
    if (ulen + plen + 1 > sizeof(text) ||
        cap < 6 + SL_B64_LEN(ulen + plen + 1) + 1)
        return SL_ETOOBIG;
    memcpy(text, user, ulen);
    text[ulen] = ':';
    memcpy(text + ulen + 1, pass, plen);
    memcpy(out, "Basic ", 6);
    int rc = sl_b64_encode(text, ulen + plen + 1, out + 6, cap - 6);
    OPENSSL_cleanse(text, sizeof(text));
    return rc < 0 ? rc : 0;
}

int sl_token_equal(const char *a, const char *b)
{
    unsigned char da[32];
    unsigned char db[32];
    unsigned int la = 0;
    unsigned int lb = 0;
    if (a == NULL || b == NULL)
        return 0;
    if (EVP_Digest(a, strlen(a), da, &la, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(b, strlen(b), db, &lb, EVP_sha256(), NULL) != 1)
        return 0;
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}
