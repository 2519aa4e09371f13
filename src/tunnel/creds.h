/* Password hashing, HTTP Basic credentials and token comparison. Pure
 * apart from the CSPRNG (salts) and CPU time: no I/O, no state.
 *
 * Stored password form (docs/protocol.md):
 *     scrypt$16384$8$1$<salt, standard base64>$<key, standard base64>
 * with a 16-byte random salt and a 32-byte key (OpenSSL 3 EVP_KDF
 * "SCRYPT"). One hash or verify costs about 50 ms and 16 MiB of memory:
 * NEVER call them on the event loop; the hub runs them in the libuv thread
 * pool (uv_queue_work). Both functions are thread-safe. */
#ifndef SL_TUNNEL_CREDS_H
#define SL_TUNNEL_CREDS_H

#include <stddef.h>

/* Room for a stored hash with the default parameters, NUL included (the
 * default form takes 88 bytes). */
#define SL_PASSWORD_HASH_MAX 128

/* Longest user and password sl_basic_auth_parse accepts into buffers this
 * size (NUL included); the proxy's own are 6 and 24 characters. */
#define SL_BASIC_USER_MAX 64
#define SL_BASIC_PASS_MAX 128

/* Hashes password (NUL-terminated, may be empty) with a fresh salt into
 * out. Returns 0, SL_ETOOBIG (outlen too small: use SL_PASSWORD_HASH_MAX),
 * UV_EINVAL (NULL argument) or UV_EIO (OpenSSL failed). On failure out is
 * an empty string when outlen > 0. */
int sl_password_hash(const char *password, char *out, size_t outlen);

/* Checks password against a stored string of the form above. The
 * parameters are read from the string (N a power of two >= 2, r and p >= 1,
 * at most 64 MiB of scrypt memory; salt 8..64 bytes; key 16..64 bytes) so
 * old hashes keep working if the defaults change. The final comparison is
 * constant-time (CRYPTO_memcmp). Returns 1 match, 0 mismatch, SL_EPARSE if
 * stored is malformed or out of those bounds, UV_EINVAL on NULL, UV_EIO if
 * OpenSSL failed. */
int sl_password_verify(const char *password, const char *stored);

/* A stored hash (the default parameters) of a random password nobody
 * knows: verifying against it costs what a real check costs, so a name
 * that does not exist cannot be told from a wrong password by time. A
 * match (impossible in practice) must still count as a failure. */
const char *sl_password_dummy_hash(void);

/* Parses an Authorization header value "Basic <base64(user:pass)>": the
 * scheme is case-insensitive, one or more spaces follow it, surrounding
 * spaces/tabs are trimmed, the base64 is strict (standard alphabet, '='
 * padding required, no whitespace inside, zero trailing bits). The decoded
 * text splits at its first ':' (so user has no ':'; pass may); it may not
 * contain NUL or other control bytes. user/pass receive NUL-terminated
 * strings (user may be empty only if the text starts with ':'; callers
 * check against their records). value need not be NUL-terminated.
 * Returns 0, SL_EPARSE (not Basic, bad base64, no ':', control bytes) or
 * SL_ETOOBIG (a part does not fit its buffer). On failure user and pass are
 * empty strings (when their caps are > 0). */
int sl_basic_auth_parse(const char *value, size_t len, char *user,
                        size_t usercap, char *pass, size_t passcap);

/* Writes "Basic <base64(user ":" pass)>" and a NUL into out. user must
 * not contain ':'; user and pass together are at most
 * SL_BASIC_USER_MAX + SL_BASIC_PASS_MAX - 1 bytes. Returns 0, UV_EINVAL
 * (NULL, or ':' in user) or SL_ETOOBIG (too long, or cap too small:
 * 4 * ceil((ulen + plen + 1) / 3) + 7 bytes suffice). */
int sl_basic_auth_format(const char *user, const char *pass, char *out,
                         size_t cap);

/* Compares two NUL-terminated secrets (gateway or admin tokens) in time
 * independent of their contents and of where they differ (both are hashed
 * with SHA-256 first, so the length is not leaked either). Returns 1 if
 * equal, 0 otherwise; 0 if either is NULL. */
int sl_token_equal(const char *a, const char *b);

#endif
