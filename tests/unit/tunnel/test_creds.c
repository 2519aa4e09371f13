#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "core/b64.h"
#include "tunnel/creds.h"

/* scrypt at N=16384 costs ~50 ms: few hashes here. */
static void test_hash_verify(void **state)
{
    char stored[SL_PASSWORD_HASH_MAX];
    char stored2[SL_PASSWORD_HASH_MAX];
    assert_int_equal(sl_password_hash("Secret123abcXYZ987654321", stored,
                                      sizeof(stored)), 0);
    assert_int_equal(strncmp(stored, "scrypt$16384$8$1$", 17), 0);
    assert_int_equal(strlen(stored), 17 + 24 + 1 + 44);
    assert_int_equal(sl_password_verify("Secret123abcXYZ987654321", stored), 1);
    assert_int_equal(sl_password_verify("Secret123abcXYZ987654322", stored), 0);
    assert_int_equal(sl_password_verify("", stored), 0);
    /* Same password, fresh salt: a different string. */
    assert_int_equal(sl_password_hash("Secret123abcXYZ987654321", stored2,
                                      sizeof(stored2)), 0);
    assert_string_not_equal(stored, stored2);
    char small[40];
    assert_int_equal(sl_password_hash("x", small, sizeof(small)), SL_ETOOBIG);
    assert_string_equal(small, "");
}

/* RFC 7914 section 12, third vector (the hub's own parameters): proves the
 * stored form feeds N, r, p, salt and key length to scrypt correctly. */
static void test_verify_rfc7914(void **state)
{
    static const unsigned char key[64] = {
        0x70, 0x23, 0xbd, 0xcb, 0x3a, 0xfd, 0x73, 0x48, 0x46, 0x1c, 0x06,
        0xcd, 0x81, 0xfd, 0x38, 0xeb, 0xfd, 0xa8, 0xfb, 0xba, 0x90, 0x4f,
        0x8e, 0x3e, 0xa9, 0xb5, 0x43, 0xf6, 0x54, 0x5d, 0xa1, 0xf2, 0xd5,
        0x43, 0x29, 0x55, 0x61, 0x3f, 0x0f, 0xcf, 0x62, 0xd4, 0x97, 0x05,
        0x24, 0x2a, 0x9a, 0xf9, 0xe6, 0x1e, 0x85, 0xdc, 0x0d, 0x65, 0x1e,
        0x40, 0xdf, 0xcf, 0x01, 0x7b, 0x45, 0x57, 0x58, 0x87,
    };
    char k64[SL_B64_LEN(64) + 1];
    char salt64[32];
    char stored[256];
    assert_int_equal(sl_b64_encode(key, sizeof(key), k64, sizeof(k64)), 88);
    assert_int_equal(sl_b64_encode("SodiumChloride", 14, salt64,
                                   sizeof(salt64)), 20);
    snprintf(stored, sizeof(stored), "scrypt$16384$8$1$%s$%s", salt64, k64);
    assert_int_equal(sl_password_verify("pleaseletmein", stored), 1);
    assert_int_equal(sl_password_verify("pleaseletmeim", stored), 0);
}

static void test_verify_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "scrypt",
        "scrypt$",
        "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$16385$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* N not 2^k */
        "scrypt$1048576$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* 1 GiB */
        "scrypt$016384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$16384$0$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$16384$8$-1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$16384$8$1$AAAA$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* short salt */
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA", /* short key */
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==", /* no key */
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA=$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* bad b64 */
        "scrypt$99999999999999999999999$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sl_password_verify("pw", bad[i]) != SL_EPARSE)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(sl_password_verify(NULL, "x"), UV_EINVAL);
    assert_int_equal(sl_password_verify("x", NULL), UV_EINVAL);
}

static int parse(const char *v, char *u, char *p)
{
    return sl_basic_auth_parse(v, strlen(v), u, SL_BASIC_USER_MAX, p,
                               SL_BASIC_PASS_MAX);
}

static void test_basic_auth(void **state)
{
    char u[SL_BASIC_USER_MAX];
    char p[SL_BASIC_PASS_MAX];
    char out[256];
    /* RFC 7617's example. */
    assert_int_equal(parse("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", u, p), 0);
    assert_string_equal(u, "Aladdin");
    assert_string_equal(p, "open sesame");
    assert_int_equal(parse("  bASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ== \t", u, p),
                     0);
    assert_string_equal(u, "Aladdin");
    assert_int_equal(sl_basic_auth_format("Aladdin", "open sesame", out,
                                          sizeof(out)), 0);
    assert_string_equal(out, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    /* Password keeps its colons; empty password is fine. */
    assert_int_equal(sl_basic_auth_format("abc123", "a:b:c", out,
                                          sizeof(out)), 0);
    assert_int_equal(parse(out, u, p), 0);
    assert_string_equal(u, "abc123");
    assert_string_equal(p, "a:b:c");
    assert_int_equal(sl_basic_auth_format("abc123", "", out, sizeof(out)), 0);
    assert_int_equal(parse(out, u, p), 0);
    assert_string_equal(p, "");
    assert_int_equal(sl_basic_auth_format("a:b", "x", out, sizeof(out)),
                     UV_EINVAL);
    assert_int_equal(sl_basic_auth_format("abc", "x", out, 10), SL_ETOOBIG);
}

static void test_basic_auth_hostile(void **state)
{
    static const char *const bad[] = {
        "",
        "Basic",
        "Basic ",
        "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Basic\tQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",     /* no padding */
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=",    /* short padding */
        "Basic QWxhZGRpbjpvcGVu IHNlc2FtZQ==",  /* space inside */
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==",   /* non-zero tail bits */
        "Basic QWxhZGRpbg==",                   /* no colon */
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==,x", /* trailing junk */
        "Basic YQBiOmM=",                       /* NUL in user */
        "Basic YTpiDQpj",                       /* CR LF in pass */
        "Basic ====",
        "Basic =AAA",
    };
    char u[SL_BASIC_USER_MAX];
    char p[SL_BASIC_PASS_MAX];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], u, p);
        if (rc != SL_EPARSE)
            fail_msg("\"%s\" gave %d", bad[i], rc);
        assert_string_equal(u, "");
        assert_string_equal(p, "");
    }
    /* Too long for the caller's buffers. */
    char small_u[4];
    char small_p[4];
    const char *v = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
    assert_int_equal(sl_basic_auth_parse(v, strlen(v), small_u,
                                         sizeof(small_u), p, sizeof(p)),
                     SL_ETOOBIG);
    assert_int_equal(sl_basic_auth_parse(v, strlen(v), u, sizeof(u), small_p,
                                         sizeof(small_p)),
                     SL_ETOOBIG);
    /* A huge header is refused without overflowing anything. */
    char huge[4096 + 7];
    memcpy(huge, "Basic ", 6);
    memset(huge + 6, 'A', 4096);
    huge[4102] = '\0';
    assert_int_equal(parse(huge, u, p), SL_ETOOBIG);
}

static void test_token_equal(void **state)
{
    assert_int_equal(sl_token_equal("s3cret", "s3cret"), 1);
    assert_int_equal(sl_token_equal("s3cret", "s3creT"), 0);
    assert_int_equal(sl_token_equal("s3cret", "s3cret "), 0);
    assert_int_equal(sl_token_equal("", ""), 1);
    assert_int_equal(sl_token_equal("", "a"), 0);
    assert_int_equal(sl_token_equal(NULL, "a"), 0);
    assert_int_equal(sl_token_equal(NULL, NULL), 0);
}

static void test_b64(void **state)
{
    static const struct { const char *raw, *enc; } v[] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
        {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char enc[32];
    unsigned char dec[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i].raw);
        assert_int_equal(sl_b64_encode(v[i].raw, n, enc, sizeof(enc)),
                         (int)strlen(v[i].enc));
        assert_string_equal(enc, v[i].enc);
        assert_int_equal(sl_b64_decode(enc, strlen(enc), dec, sizeof(dec)),
                         (int)n);
        assert_memory_equal(dec, v[i].raw, n);
    }
    assert_int_equal(sl_b64_encode("foo", 3, enc, 4), SL_ETOOBIG);
    assert_int_equal(sl_b64_decode("Zm9v", 4, dec, 2), SL_ETOOBIG);
    assert_int_equal(sl_b64_decode("Zm=v", 4, dec, 8), SL_EPARSE);
    assert_int_equal(sl_b64_decode("Z===", 4, dec, 8), SL_EPARSE);
    assert_int_equal(sl_b64_decode("Zm9vZg==Zm9v", 12, dec, 16), SL_EPARSE);
    assert_int_equal(sl_b64_decode("Zm9-", 4, dec, 8), SL_EPARSE);
    assert_int_equal(sl_b64_decode("Zh==", 4, dec, 8), SL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_verify_rfc7914),
        cmocka_unit_test(test_verify_malformed),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_basic_auth_hostile),
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
