#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/error.h"
#include "tunnel/identity.h"

/* Uniformity is judged by Pearson's chi-square against a fair die, with
 * enough draws that the bias of a plain `byte % k` (the first 256 % k
 * characters one draw in 256 more likely) lands far above the critical
 * value. For k = 36 that bias adds about 0.00195 * n to the statistic,
 * for k = 26 about 0.00134 * n, for k = 3 about 0.0000305 * n; the
 * critical value is the chi-square quantile at p = 3e-7 (z = 5), so a fair
 * source fails about once in three million runs. */
#define IDS 200000
#define Z 5.0

static double sqrt_pos(double x)
{
    double r = x > 1.0 ? x : 1.0;
    for (int i = 0; i < 100; i++)
        r = 0.5 * (r + x / r);
    return r;
}

/* Wilson-Hilferty: the chi-square quantile for df degrees of freedom at
 * the normal deviate Z (good to a few percent for df >= 2). */
static double chi2_critical(unsigned df)
{
    double a = 2.0 / (9.0 * (double)df);
    double c = 1.0 - a + Z * sqrt_pos(a);
    return (double)df * c * c * c;
}

static double chi2(const unsigned *counts, unsigned k, unsigned long n)
{
    double expect = (double)n / (double)k;
    double x = 0;
    for (unsigned i = 0; i < k; i++) {
        double d = (double)counts[i] - expect;
        x += d * d / expect;
    }
    return x;
}

/* counts[i] = how often alphabet[i] occurs in s[0..n) */
static void count(const char *s, size_t n, const char *alphabet,
                  unsigned *counts)
{
    unsigned k = (unsigned)strlen(alphabet);
    unsigned char index[256];
    memset(index, 0xff, sizeof(index));
    for (unsigned i = 0; i < k; i++)
        index[(unsigned char)alphabet[i]] = (unsigned char)i;
    memset(counts, 0, k * sizeof(*counts));
    for (size_t i = 0; i < n; i++) {
        unsigned char x = index[(unsigned char)s[i]];
        assert_true(x < k); /* only the alphabet's characters */
        counts[x]++;
    }
}

static void assert_uniform(const unsigned *counts, unsigned k,
                           unsigned long n, const char *what)
{
    double x = chi2(counts, k, n);
    double crit = chi2_critical(k - 1);
    if (x > crit)
        fail_msg("%s: chi-square %.1f over %lu draws of %u symbols exceeds "
                 "%.1f: not uniform", what, x, n, k, crit);
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, SL_IDENTITY_LEN + 1);
}

/* 200k identities: all well formed, all distinct, and each position
 * uniform over its alphabet (letters first two, then letters and digits)
 * by chi-square: a modulo-biased mapping fails every position. */
static void test_identity_distribution(void **state)
{
    char (*ids)[SL_IDENTITY_LEN + 1] = calloc(IDS, sizeof(*ids));
    char *column = malloc(IDS);
    assert_non_null(ids);
    assert_non_null(column);
    for (size_t i = 0; i < IDS; i++) {
        assert_int_equal(sl_identity_new(ids[i]), 0);
        assert_int_equal(strlen(ids[i]), SL_IDENTITY_LEN);
        assert_true(sl_identity_valid(ids[i], SL_IDENTITY_LEN));
    }
    for (size_t k = 0; k < SL_IDENTITY_LEN; k++) {
        const char *alpha = k < 2 ? SL_ALPHA_LOWER : SL_ALNUM_LOWER;
        unsigned counts[36];
        char what[64];
        for (size_t i = 0; i < IDS; i++)
            column[i] = ids[i][k];
        count(column, IDS, alpha, counts);
        snprintf(what, sizeof(what), "identity position %zu", k);
        assert_uniform(counts, (unsigned)strlen(alpha), IDS, what);
    }
    qsort(ids, IDS, sizeof(*ids), cmp_id);
    for (size_t i = 1; i < IDS; i++)
        assert_int_not_equal(cmp_id(ids[i - 1], ids[i]), 0);
    free(column);
    free(ids);
}

static void test_identity_valid(void **state)
{
    assert_true(sl_identity_valid("ab1234567890", 12));
    assert_true(sl_identity_valid("zzzzzzzzzzzz", 12));
    assert_false(sl_identity_valid("a11234567890", 12)); /* digit 2nd */
    assert_false(sl_identity_valid("1b1234567890", 12));
    assert_false(sl_identity_valid("Ab1234567890", 12)); /* upper case */
    assert_false(sl_identity_valid("ab123456789", 11));
    assert_false(sl_identity_valid("ab12345678901", 13));
    assert_false(sl_identity_valid("ab12345-7890", 12));
    assert_false(sl_identity_valid("ab12345\0" "7890", 12));
    assert_false(sl_identity_valid("ab1234567890", 0));
    assert_false(sl_identity_valid(NULL, 12));
    assert_false(sl_identity_valid(NULL, 0));
}

static void test_random_string(void **state)
{
    char out[65];
    assert_int_equal(sl_random_string(out, 64, "ab"), 0);
    assert_int_equal(strlen(out), 64);
    assert_int_equal(strspn(out, "ab"), 64);
    assert_int_equal(sl_random_string(out, 0, "ab"), 0);
    assert_string_equal(out, "");
    assert_int_equal(sl_random_string(out, 5, "x"), 0);
    assert_string_equal(out, "xxxxx");
    assert_int_equal(sl_random_string(out, 5, ""), UV_EINVAL);
    assert_int_equal(sl_random_string(out, 5, NULL), UV_EINVAL);
    assert_int_equal(sl_random_string(NULL, 5, "ab"), UV_EINVAL);
}

/* sl_random_string over alphabets where 256 % k != 0 (3, 26, 36, and
 * 129, where a modulo mapping would make 127 of the 129 characters twice
 * as likely): each chi-square uniform. */
static void test_random_string_uniform(void **state)
{
    static const struct {
        const char *alphabet;
        unsigned long n;
    } cases[] = {
        {"abc", 10000000},
        {SL_ALPHA_LOWER, 1000000},
        {SL_ALNUM_LOWER, 1000000},
        {NULL, 1000000}, /* 129 characters, made below */
    };
    char big[130];
    for (int i = 0; i < 129; i++)
        big[i] = (char)(0x21 + i); /* '!' onwards: printable and high */
    big[129] = '\0';
    char *out = malloc(10000001);
    assert_non_null(out);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *alpha = cases[c].alphabet ? cases[c].alphabet : big;
        unsigned k = (unsigned)strlen(alpha);
        unsigned counts[256];
        assert_int_equal(sl_random_string(out, cases[c].n, alpha), 0);
        assert_int_equal(strlen(out), cases[c].n);
        count(out, cases[c].n, alpha, counts);
        char what[64];
        snprintf(what, sizeof(what), "%u-symbol alphabet", k);
        assert_uniform(counts, k, cases[c].n, what);
    }
    free(out);
}

/* The check above has the power it claims: the same statistic on a
 * deliberately modulo-biased sample (uniform bytes 0..254 from a
 * 255-symbol alphabet, mapped with `% 36` and `% 26`) is far over the
 * critical value, and on the fair mapping of the same draws it is not. */
static void test_chi2_detects_modulo_bias(void **state)
{
    char all[256];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    all[255] = '\0';
    const unsigned long n = 1000000;
    unsigned char *b = malloc(n + 1);
    assert_non_null(b);
    assert_int_equal(sl_random_string((char *)b, n, all), 0);
    unsigned ks[] = {26, 36};
    for (size_t j = 0; j < 2; j++) {
        unsigned k = ks[j];
        unsigned biased[36] = {0};
        unsigned fair[36] = {0};
        unsigned long nfair = 0;
        unsigned limit = 255u - 255u % k;
        for (unsigned long i = 0; i < n; i++) {
            unsigned v = b[i] - 1u; /* 0..254, uniform */
            biased[v % k]++;
            if (v < limit) {
                fair[v % k]++;
                nfair++;
            }
        }
        double crit = chi2_critical(k - 1);
        assert_true(chi2(biased, k, n) > 2 * crit);
        assert_true(chi2(fair, k, nfair) <= crit);
    }
    free(b);
}

static void test_uuid4(void **state)
{
    char u[SL_UUID_LEN + 1];
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(sl_uuid4_new(u), 0);
        assert_int_equal(strlen(u), SL_UUID_LEN);
        assert_true(sl_uuid4_valid(u, strlen(u)));
    }
    assert_true(sl_uuid4_valid("123e4567-e89b-42d3-a456-426614174000", 36));
    assert_true(sl_uuid4_valid("00000000-0000-4000-8000-000000000000", 36));
    assert_true(sl_uuid4_valid("ffffffff-ffff-4fff-bfff-ffffffffffff", 36));
    /* version 1, variant c, upper case, missing dash, wrong length */
    assert_false(sl_uuid4_valid("123e4567-e89b-12d3-a456-426614174000", 36));
    assert_false(sl_uuid4_valid("123e4567-e89b-42d3-c456-426614174000", 36));
    assert_false(sl_uuid4_valid("123E4567-E89B-42D3-A456-426614174000", 36));
    assert_false(sl_uuid4_valid("123e4567xe89b-42d3-a456-426614174000", 36));
    assert_false(sl_uuid4_valid("123e4567-e89b-42d3-a456-42661417400", 35));
    assert_false(sl_uuid4_valid("123e4567-e89b-42d3-a456-4266141740000", 37));
    assert_false(sl_uuid4_valid("123e4567-e89b-42d3-a456-42661417400g", 36));
    assert_false(sl_uuid4_valid(NULL, 36));
}

static void test_creds(void **state)
{
    char user[SL_USERNAME_LEN + 1];
    char pass[SL_PASSWORD_LEN + 1];
    char user2[SL_USERNAME_LEN + 1];
    char pass2[SL_PASSWORD_LEN + 1];
    assert_int_equal(sl_creds_new(user, pass), 0);
    assert_int_equal(sl_creds_new(user2, pass2), 0);
    assert_int_equal(strlen(user), SL_USERNAME_LEN);
    assert_int_equal(strlen(pass), SL_PASSWORD_LEN);
    assert_int_equal(strspn(user, SL_ALNUM), SL_USERNAME_LEN);
    assert_int_equal(strspn(pass, SL_ALNUM), SL_PASSWORD_LEN);
    assert_string_not_equal(pass, pass2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_distribution),
        cmocka_unit_test(test_identity_valid),
        cmocka_unit_test(test_random_string),
        cmocka_unit_test(test_random_string_uniform),
        cmocka_unit_test(test_chi2_detects_modulo_bias),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_creds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
