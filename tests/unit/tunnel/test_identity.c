#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/error.h"
#include "tunnel/identity.h"

#define MANY 10000

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, SL_IDENTITY_LEN + 1);
}

/* 10k identities: all well formed, all distinct, and every character of
 * the alphabet shows up in every free position (a stuck or biased mapping
 * would leave gaps). */
static void test_identity_distribution(void **state)
{
    char (*ids)[SL_IDENTITY_LEN + 1] = calloc(MANY, sizeof(*ids));
    assert_non_null(ids);
    unsigned counts[SL_IDENTITY_LEN][256];
    memset(counts, 0, sizeof(counts));
    for (size_t i = 0; i < MANY; i++) {
        assert_int_equal(sl_identity_new(ids[i]), 0);
        assert_int_equal(strlen(ids[i]), SL_IDENTITY_LEN);
        assert_true(sl_identity_valid(ids[i], SL_IDENTITY_LEN));
        for (size_t k = 0; k < SL_IDENTITY_LEN; k++)
            counts[k][(unsigned char)ids[i][k]]++;
    }
    qsort(ids, MANY, sizeof(*ids), cmp_id);
    for (size_t i = 1; i < MANY; i++)
        assert_int_not_equal(cmp_id(ids[i - 1], ids[i]), 0);
    /* Expected per character: 10000/26 = 385 and 10000/36 = 278; a fair
     * source stays far inside [half, double]. */
    for (size_t k = 0; k < SL_IDENTITY_LEN; k++) {
        const char *alpha = k < 2 ? SL_ALPHA_LOWER : SL_ALNUM_LOWER;
        unsigned expect = MANY / (unsigned)strlen(alpha);
        for (const char *c = alpha; *c; c++) {
            unsigned n = counts[k][(unsigned char)*c];
            assert_in_range(n, expect / 2, expect * 2);
        }
    }
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

/* 3-letter alphabet: 256 % 3 == 1, so byte 255 must be rejected; over
 * 30k draws a biased mapping would favour 'a' by ~0.4%, too small to see,
 * so check only that all three come out about equally often. */
static void test_random_string_uniform(void **state)
{
    char out[30001];
    unsigned n[3] = {0, 0, 0};
    assert_int_equal(sl_random_string(out, 30000, "abc"), 0);
    for (size_t i = 0; i < 30000; i++) {
        assert_in_range(out[i], 'a', 'c');
        n[out[i] - 'a']++;
    }
    for (size_t i = 0; i < 3; i++)
        assert_in_range(n[i], 9000, 11000);
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
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_creds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
