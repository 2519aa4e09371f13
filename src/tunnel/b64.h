/* Strict standard base64 (RFC 4648 section 4, '=' padding). Pure. */
#ifndef SL_TUNNEL_B64_H
#define SL_TUNNEL_B64_H

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

#endif
