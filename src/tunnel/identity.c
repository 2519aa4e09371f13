#include "tunnel/identity.h"

#include <openssl/rand.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"

int sl_random_string(char *out, size_t len, const char *alphabet)
{
    if (out == NULL || alphabet == NULL)
        return UV_EINVAL;
    size_t k = strlen(alphabet);
    if (k == 0 || k > 256) {
        out[0] = '\0';
        return UV_EINVAL;
    }
    /* Bytes at or above the largest multiple of k would make the first
     * (256 % k) characters more likely; drop them and draw again. */
    unsigned limit = 256u - 256u % (unsigned)k;
    unsigned char pool[64];
    size_t have = 0;
    size_t used = 0;
    size_t o = 0;
    int rc = 0;
    while (o < len) {
        if (used == have) {
            if (RAND_bytes(pool, sizeof(pool)) != 1) {
                rc = UV_EIO;
                o = 0;
                goto out;
            }
            have = sizeof(pool);
            used = 0;
        }
        unsigned b = pool[used++];
        if (b >= limit)
            continue;
        out[o++] = alphabet[b % k];
    }
out:
    out[o] = '\0';
    OPENSSL_cleanse(pool, sizeof(pool));
    return rc;
}

int sl_identity_new(char out[SL_IDENTITY_LEN + 1])
{
    int rc = sl_random_string(out, 2, SL_ALPHA_LOWER);
    if (rc == 0)
        rc = sl_random_string(out + 2, SL_IDENTITY_LEN - 2, SL_ALNUM_LOWER);
    if (rc != 0)
        out[0] = '\0';
    return rc;
}

static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex_lower(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

int sl_identity_valid(const char *s, size_t len)
{
    if (s == NULL || len != SL_IDENTITY_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_lower(s[i]) && (i < 2 || !is_digit(s[i])))
            return 0;
    }
    return 1;
}

int sl_uuid4_new(char out[SL_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        out[0] = '\0';
        return UV_EIO;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
    return 0;
}

int sl_uuid4_valid(const char *s, size_t len)
{
    if (s == NULL || len != SL_UUID_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!is_hex_lower(s[i])) {
            return 0;
        }
    }
    if (s[14] != '4')
        return 0;
    return s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b';
}

int sl_creds_new(char user[SL_USERNAME_LEN + 1], char pass[SL_PASSWORD_LEN + 1])
{
    int rc = sl_random_string(user, SL_USERNAME_LEN, SL_ALNUM);
    if (rc == 0)
        rc = sl_random_string(pass, SL_PASSWORD_LEN, SL_ALNUM);
    if (rc != 0) {
        user[0] = '\0';
        pass[0] = '\0';
    }
    return rc;
}
