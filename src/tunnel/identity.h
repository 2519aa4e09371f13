/* Identities, fingerprints and proxy credentials: random names from
 * OpenSSL's CSPRNG. Pure apart from the CSPRNG: no I/O, no state.
 *
 * Every generator draws bytes with RAND_bytes and maps them onto its
 * alphabet by rejection sampling (a byte at or above the largest multiple of
 * the alphabet size is thrown away), so every character is equally likely:
 * no modulo bias. Generators return 0, or UV_EIO if the CSPRNG failed (the
 * output is then an empty string, never a weak name). */
#ifndef SL_TUNNEL_IDENTITY_H
#define SL_TUNNEL_IDENTITY_H

#include <stddef.h>

/* Identity: two of [a-z] then ten of [a-z0-9], e.g. "ab1234567890". It is
 * the subdomain of a proxy allocation. */
#define SL_IDENTITY_LEN 12
/* Fingerprint: a lower-case UUID v4, 36 characters. */
#define SL_UUID_LEN 36
/* Proxy credentials: [A-Za-z0-9]. */
#define SL_USERNAME_LEN 6
#define SL_PASSWORD_LEN 24

#define SL_ALPHA_LOWER "abcdefghijklmnopqrstuvwxyz"
#define SL_ALNUM_LOWER "abcdefghijklmnopqrstuvwxyz0123456789"
#define SL_ALNUM \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* Writes a new identity and its NUL into out (13 bytes). Returns 0 or
 * UV_EIO. */
int sl_identity_new(char out[SL_IDENTITY_LEN + 1]);

/* Returns 1 if s[0..len) is exactly a well-formed identity (lower case
 * only), else 0. s may be NULL when len is 0. No NUL needed. */
int sl_identity_valid(const char *s, size_t len);

/* Writes len characters drawn uniformly from alphabet (1..256 distinct
 * bytes, NUL-terminated string) and a NUL: out must hold len + 1 bytes.
 * Returns 0, UV_EINVAL (NULL or empty or over-long alphabet) or UV_EIO. */
int sl_random_string(char *out, size_t len, const char *alphabet);

/* Writes a new lower-case UUID v4 ("xxxxxxxx-xxxx-4xxx-[89ab]xxx-
 * xxxxxxxxxxxx") and its NUL into out (37 bytes). Returns 0 or UV_EIO. */
int sl_uuid4_new(char out[SL_UUID_LEN + 1]);

/* Returns 1 if s[0..len) is exactly a lower-case UUID v4 (version nibble 4,
 * variant [89ab]), else 0. Upper case is refused: fingerprints are
 * compared as strings. */
int sl_uuid4_valid(const char *s, size_t len);

/* Writes new proxy credentials: a username of 6 and a password of 24
 * [A-Za-z0-9] characters, each NUL-terminated. Returns 0 or UV_EIO. */
int sl_creds_new(char user[SL_USERNAME_LEN + 1],
                 char pass[SL_PASSWORD_LEN + 1]);

#endif
