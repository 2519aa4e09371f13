/* Base64, strict: standard (RFC 4648 section 4, '=' padding) for HTTP
 * credentials and WebSocket keys, and base64url (section 5, unpadded) for
 * grants and ACME's JWS. Every decoder takes only the canonical text of
 * a byte string. Pure. */
#ifndef SL_CORE_B64_H
#define SL_CORE_B64_H

#include <stddef.h>

/* Encoded length of n bytes, without the NUL. */
#define SL_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* Writes the base64 of in[0..n) and a NUL into out. Returns the encoded
 * length (>= 0) or SL_ETOOBIG if cap < SL_B64_LEN(n) + 1. */
int sl_b64_encode(const void *in, size_t n, char *out, size_t cap);

/* Decodes in[0..len): length a multiple of 4, alphabet A-Za-z0-9+/ only,
 * '=' only as one or two final padding characters, unused trailing bits
 * zero (so each byte string has exactly one accepted encoding). Writes the
 * bytes into out (no NUL). Returns the decoded length (>= 0), SL_EPARSE or
 * SL_ETOOBIG (cap too small). */
int sl_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* Unpadded base64url (RFC 4648 section 5). encode writes a NUL too and
 * returns the length or SL_ETOOBIG; decode accepts only the canonical
 * form (no padding, unused trailing bits zero, so one text per byte
 * string) and returns the byte count, SL_EPARSE or SL_ETOOBIG. */
int sl_b64url_encode(const void *in, size_t n, char *out, size_t cap);
int sl_b64url_decode(const char *in, size_t len, unsigned char *out,
                     size_t cap);

#endif
