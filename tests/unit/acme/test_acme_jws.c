/* The ACME signer: base64url, the JWK and its thumbprint, ES256 JWS (its
 * signature checked with OpenSSL after turning r||s back into DER), the
 * external account binding's HS256, key authorizations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "acme/acme_cert.h"
#include "acme/acme_jws.h"
#include "core/error.h"

#include <uv.h>

static void test_b64url(void **state)
{
    (void)state;
    /* RFC 4648 section 10, without padding, in the URL alphabet. */
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},
             {"f", "Zg"},
             {"fo", "Zm8"},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg"},
             {"fooba", "Zm9vYmE"},
             {"foobar", "Zm9vYmFy"}};
    char out[32];
    uint8_t back[32];
    size_t n;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = strlen(v[i].in);
        assert_int_equal(sl_acme_b64url_encode((const uint8_t *)v[i].in, len,
                                               out, sizeof(out)),
                         strlen(v[i].out));
        assert_string_equal(out, v[i].out);
        assert_int_equal(sl_acme_b64url_decode(v[i].out, strlen(v[i].out), back,
                                               sizeof(back), &n),
                         0);
        assert_int_equal(n, len);
        assert_memory_equal(back, v[i].in, len);
    }
    /* The URL alphabet, and padding tolerated on input. */
    const uint8_t bin[] = {0xfb, 0xff, 0xbf};
    assert_int_equal(sl_acme_b64url_encode(bin, 3, out, sizeof(out)), 4);
    assert_string_equal(out, "-_-_");
    assert_int_equal(sl_acme_b64url_decode("Zm8=", 4, back, sizeof(back), &n),
                     0);
    assert_int_equal(n, 2);
    /* Not base64url: '+', '/', a lone character, non-zero spare bits. */
    assert_int_equal(sl_acme_b64url_decode("+/8", 3, back, sizeof(back), &n),
                     SL_EPARSE);
    assert_int_equal(sl_acme_b64url_decode("Z", 1, back, sizeof(back), &n),
                     SL_EPARSE);
    assert_int_equal(sl_acme_b64url_decode("Zh", 2, back, sizeof(back), &n),
                     SL_EPARSE);
    assert_int_equal(sl_acme_b64url_decode("Zm9vYmFy", 8, back, 5, &n),
                     SL_ETOOBIG);
    /* Too small an output: 0 and "". */
    assert_int_equal(sl_acme_b64url_encode((const uint8_t *)"foo", 3, out, 4),
                     0);
    assert_string_equal(out, "");
}

static void test_sig_der_to_raw(void **state)
{
    (void)state;
    uint8_t raw[64];
    /* r = 1, s = 0x80 (needs its leading zero in DER). */
    const uint8_t ok[] = {0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80};
    assert_int_equal(sl_acme_sig_der_to_raw(ok, sizeof(ok), raw), 0);
    for (int i = 0; i < 31; i++)
        assert_int_equal(raw[i], 0);
    assert_int_equal(raw[31], 1);
    assert_int_equal(raw[63], 0x80);
    /* Trailing bytes, negative values, a needless zero, too long. */
    const uint8_t trail[] = {0x30, 0x06, 0x02, 0x01, 0x01,
                             0x02, 0x01, 0x01, 0x00};
    const uint8_t neg[] = {0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01};
    const uint8_t zero[] = {0x30, 0x07, 0x02, 0x02, 0x00,
                            0x01, 0x02, 0x01, 0x01};
    uint8_t big[40] = {0x30, 38, 0x02, 33, 0x01};
    big[2 + 2 + 33] = 0x02;
    big[2 + 2 + 33 + 1] = 1;
    big[2 + 2 + 33 + 2] = 1;
    assert_int_equal(sl_acme_sig_der_to_raw(trail, sizeof(trail), raw),
                     SL_EPARSE);
    assert_int_equal(sl_acme_sig_der_to_raw(neg, sizeof(neg), raw), SL_EPARSE);
    assert_int_equal(sl_acme_sig_der_to_raw(zero, sizeof(zero), raw),
                     SL_EPARSE);
    assert_int_equal(sl_acme_sig_der_to_raw(big, sizeof(big), raw), SL_EPARSE);
    assert_int_equal(sl_acme_sig_der_to_raw(ok, 3, raw), SL_EPARSE);
}

/* x and y of key, base64url. */
static void coords(EVP_PKEY *key, char x[44], char y[44])
{
    BIGNUM *bx = NULL, *by = NULL;
    uint8_t b[32];
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx));
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by));
    assert_int_equal(BN_bn2binpad(bx, b, 32), 32);
    sl_acme_b64url_encode(b, 32, x, 44);
    assert_int_equal(BN_bn2binpad(by, b, 32), 32);
    sl_acme_b64url_encode(b, 32, y, 44);
    BN_free(bx);
    BN_free(by);
}

static void test_jwk_thumbprint(void **state)
{
    (void)state;
    EVP_PKEY *key = sl_acme_key_new();
    assert_non_null(key);
    char jwk[SL_ACME_JWK_MAX], want[SL_ACME_JWK_MAX], x[44], y[44];
    assert_int_equal(sl_acme_jwk(key, jwk, sizeof(jwk)), 0);
    coords(key, x, y);
    snprintf(want, sizeof(want),
             "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x,
             y);
    assert_string_equal(jwk, want);
    /* RFC 7638: SHA-256 of exactly those bytes. */
    uint8_t md[32];
    char thumb[SL_ACME_B64_SHA256], wthumb[SL_ACME_B64_SHA256];
    SHA256((const uint8_t *)want, strlen(want), md);
    sl_acme_b64url_encode(md, 32, wthumb, sizeof(wthumb));
    assert_int_equal(sl_acme_thumbprint(key, thumb, sizeof(thumb)), 0);
    assert_string_equal(thumb, wthumb);
    assert_int_equal(strlen(thumb), 43);
    assert_int_equal(sl_acme_jwk(key, jwk, 20), SL_ETOOBIG);
    /* Not P-256. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_int_equal(sl_acme_jwk(p384, jwk, sizeof(jwk)), UV_EINVAL);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(key);
}

/* The decoded member of a flattened JWS. */
static char *member(json_t *j, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(j, name));
    assert_non_null(s);
    char *out = malloc(strlen(s) + 1);
    assert_int_equal(
        sl_acme_b64url_decode(s, strlen(s), (uint8_t *)out, strlen(s), len), 0);
    out[*len] = '\0';
    return out;
}

/* Checks the ES256 signature of a flattened JWS with key. */
static int verify(json_t *j, EVP_PKEY *key)
{
    const char *p = json_string_value(json_object_get(j, "protected"));
    const char *q = json_string_value(json_object_get(j, "payload"));
    size_t slen;
    char *sig = member(j, "signature", &slen);
    assert_int_equal(slen, 64);
    char input[4096];
    snprintf(input, sizeof(input), "%s.%s", p, q);
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn((uint8_t *)sig, 32, NULL),
                   BN_bin2bn((uint8_t *)sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int dlen = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, der, (size_t)dlen, (uint8_t *)input,
                              strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(sig);
    return ok;
}

static void test_jws(void **state)
{
    (void)state;
    EVP_PKEY *key = sl_acme_key_new();
    char *jws = NULL;
    size_t len;
    /* With the key itself (newAccount). */
    assert_int_equal(sl_acme_jws(key, NULL, "nonce-1",
                                 "https://ca.test/new-acct",
                                 "{\"termsOfServiceAgreed\":true}", &jws),
                     0);
    json_t *j = json_loads(jws, 0, NULL);
    assert_non_null(j);
    char *prot = member(j, "protected", &len);
    json_t *h = json_loads(prot, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(h, "nonce")),
                        "nonce-1");
    assert_string_equal(json_string_value(json_object_get(h, "url")),
                        "https://ca.test/new-acct");
    assert_null(json_object_get(h, "kid"));
    json_t *jwk = json_object_get(h, "jwk");
    assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")),
                        "P-256");
    char *payload = member(j, "payload", &len);
    assert_string_equal(payload, "{\"termsOfServiceAgreed\":true}");
    assert_true(verify(j, key));
    /* Another key does not verify it. */
    EVP_PKEY *other = sl_acme_key_new();
    assert_false(verify(j, other));
    EVP_PKEY_free(other);
    free(prot);
    free(payload);
    json_decref(h);
    json_decref(j);
    free(jws);

    /* With the account's URL, POST-as-GET: an empty payload. */
    assert_int_equal(sl_acme_jws(key, "https://ca.test/acct/1", "n2",
                                 "https://ca.test/order/1", NULL, &jws),
                     0);
    j = json_loads(jws, 0, NULL);
    prot = member(j, "protected", &len);
    h = json_loads(prot, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "kid")),
                        "https://ca.test/acct/1");
    assert_null(json_object_get(h, "jwk"));
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    assert_true(verify(j, key));
    free(prot);
    json_decref(h);
    json_decref(j);
    free(jws);
    EVP_PKEY_free(key);
}

static void test_eab(void **state)
{
    (void)state;
    const uint8_t mac_key[] = "0123456789abcdef0123456789abcdef";
    const char *jwk =
        "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"a\",\"y\":\"b\"}";
    char *eab = NULL;
    size_t len;
    assert_int_equal(sl_acme_eab("kid-1", mac_key, 32,
                                 "https://ca.test/new-acct", jwk, &eab),
                     0);
    json_t *j = json_loads(eab, 0, NULL);
    assert_non_null(j);
    char *prot = member(j, "protected", &len);
    json_t *h = json_loads(prot, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "HS256");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "kid-1");
    assert_string_equal(json_string_value(json_object_get(h, "url")),
                        "https://ca.test/new-acct");
    assert_null(json_object_get(h, "nonce"));
    char *payload = member(j, "payload", &len);
    assert_string_equal(payload, jwk);
    /* The MAC over protected.payload with the key. */
    char input[1024];
    snprintf(input, sizeof(input), "%s.%s",
             json_string_value(json_object_get(j, "protected")),
             json_string_value(json_object_get(j, "payload")));
    uint8_t mac[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), mac_key, 32, (uint8_t *)input, strlen(input), mac, &ml);
    char *sig = member(j, "signature", &len);
    assert_int_equal(len, 32);
    assert_memory_equal(sig, mac, 32);
    free(sig);
    free(prot);
    free(payload);
    json_decref(h);
    json_decref(j);
    free(eab);
}

static void test_key_authz(void **state)
{
    (void)state;
    char ka[128], v[SL_ACME_B64_SHA256];
    assert_int_equal(sl_acme_key_authz("tok-_en", "thumb", ka, sizeof(ka)), 0);
    assert_string_equal(ka, "tok-_en.thumb");
    assert_int_equal(sl_acme_key_authz("bad/token", "t", ka, sizeof(ka)),
                     SL_EPARSE);
    assert_int_equal(sl_acme_key_authz("", "t", ka, sizeof(ka)), SL_EPARSE);
    assert_int_equal(sl_acme_key_authz("abc", "thumb", ka, 5), SL_ETOOBIG);
    /* DNS-01: base64url(SHA-256(key authorization)), RFC 8555 8.4. */
    uint8_t md[32];
    char want[SL_ACME_B64_SHA256];
    SHA256((const uint8_t *)"tok-_en.thumb", 13, md);
    sl_acme_b64url_encode(md, 32, want, sizeof(want));
    sl_acme_dns01_value("tok-_en.thumb", v);
    assert_string_equal(v, want);
    assert_int_equal(strlen(v), 43);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_sig_der_to_raw),
        cmocka_unit_test(test_jwk_thumbprint),
        cmocka_unit_test(test_jws),
        cmocka_unit_test(test_eab),
        cmocka_unit_test(test_key_authz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
