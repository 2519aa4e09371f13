/* Grants: licences a hub operator signs with Ed25519, naming what a
 * bridge may do on that hub (DESIGN section 6, docs/plans.md). Pure: no
 * I/O; the keys are OpenSSL EVP_PKEY objects the caller loaded.
 *
 * A grant travels as one printable token:
 *
 *   base64url(payload) "." base64url(signature)
 *
 * base64url is RFC 4648 section 5 without padding. payload is the exact
 * bytes of a JSON object (UTF-8), e.g.
 *
 *   {"v":1,"features":["bridge","tcp","udp"],"bridges":3,
 *    "traffic":50000000000,"rate":12500000,
 *    "expires":"2027-12-31T23:59:59Z","identity":"ab1234567890"}
 *
 * and signature is the 64-byte Ed25519 signature (RFC 8032, pure, no
 * pre-hash) over exactly those payload bytes: whoever holds the public
 * key checks a token with
 *
 *   openssl pkeyutl -verify -pubin -inkey grant.pub -rawin \
 *       -in payload.json -sigfile signature.bin
 *
 * The signature is checked before the payload is read. Payload fields:
 *   v         1 (required)
 *   features  strings: "bridge" (a bridge may connect at all), "tcp" and
 *             "udp" (public stream ports); others are ignored
 *   bridges   bridges connected at once, traffic bytes (user traffic,
 *             both directions), rate bytes per second in each direction;
 *             non-negative integers, absent or 0: unlimited
 *   expires   "YYYY-MM-DDTHH:MM:SSZ" (UTC); absent: never
 *   identity  the one allocation the grant is for; absent: any
 *   subject   free text naming the holder (at most 127 bytes)
 * Unknown members are ignored; a member given twice is refused. */
#ifndef SL_TUNNEL_GRANT_H
#define SL_TUNNEL_GRANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/b64.h"

#include <openssl/evp.h>

#include "tunnel/identity.h"

#define SL_GRANT_TOKEN_MAX 2048   /* characters, NUL excluded */
#define SL_GRANT_PAYLOAD_MAX 1024 /* bytes of JSON */
#define SL_GRANT_SIG_LEN 64
#define SL_GRANT_SUBJECT_MAX 128  /* NUL included */
#define SL_GRANT_TIME_LEN 20      /* "2027-12-31T23:59:59Z" */
#define SL_GRANT_HEADER "Sluice-Grant"

enum {
    SL_GRANT_BRIDGE = 1 << 0,
    SL_GRANT_TCP = 1 << 1,
    SL_GRANT_UDP = 1 << 2,
};

struct sl_grant {
    unsigned features;  /* SL_GRANT_* */
    uint64_t bridges;   /* 0: unlimited */
    uint64_t traffic;   /* bytes; 0: unlimited */
    uint64_t rate;      /* bytes/s each way; 0: unlimited */
    int64_t expires;    /* unix seconds; 0: never */
    char identity[SL_IDENTITY_LEN + 1];  /* "": any allocation */
    char subject[SL_GRANT_SUBJECT_MAX];  /* "": none */
};

/* Why a grant is refused; sl_grant_why names each for people. */
enum sl_grant_status {
    SL_GRANT_OK = 0,
    SL_GRANT_MALFORMED,      /* not a token, or a payload we cannot read */
    SL_GRANT_BAD_SIGNATURE,  /* not signed by the hub's key */
    SL_GRANT_EXPIRED,
    SL_GRANT_NO_BRIDGE,      /* lacks the bridge feature */
    SL_GRANT_OTHER_IDENTITY, /* names another allocation */
};

/* The error a bridge is told: "Grant malformed", "Grant signature
 * invalid", "Grant expired", "Bridge not allowed" (the seed's words),
 * "Grant for another identity". Static, never NULL. */
const char *sl_grant_why(enum sl_grant_status st);

/* Parses payload JSON json[0..len) into *out (zeroed first). Returns 0 or
 * SL_EPARSE (not an object, v is not 1, a member of the wrong type or out
 * of range, a duplicate member, over SL_GRANT_PAYLOAD_MAX) or UV_ENOMEM. */
int sl_grant_parse_payload(const char *json, size_t len, struct sl_grant *out);

/* Writes g as payload JSON (members in the order above, compact, only
 * those set) and a NUL into out. Returns the length or SL_ETOOBIG. */
int sl_grant_format_payload(const struct sl_grant *g, char *out, size_t cap);

/* Splits token[0..len) into its payload (out, at most cap bytes, *plen
 * set) and signature. Exactly one '.', both parts canonical unpadded
 * base64url. Returns 0, SL_EPARSE or SL_ETOOBIG. */
int sl_grant_split(const char *token, size_t len, unsigned char *payload,
                   size_t cap, size_t *plen,
                   unsigned char sig[SL_GRANT_SIG_LEN]);

/* Checks token[0..len) against Ed25519 public key pub and reads it into
 * *out. Returns SL_GRANT_OK, SL_GRANT_MALFORMED or
 * SL_GRANT_BAD_SIGNATURE (pub not an Ed25519 key counts as that). */
enum sl_grant_status sl_grant_verify(const char *token, size_t len,
                                     EVP_PKEY *pub, struct sl_grant *out);

/* Whether verified grant g lets a bridge of allocation identity (NULL or
 * "": a new allocation, not known yet) connect at unix time now: OK,
 * EXPIRED, NO_BRIDGE or OTHER_IDENTITY (checked in that order). */
enum sl_grant_status sl_grant_check(const struct sl_grant *g, int64_t now,
                                    const char *identity);

/* Signs g with Ed25519 private key key: the token and a NUL into out.
 * Returns its length, SL_ETOOBIG, UV_EINVAL (not an Ed25519 key) or
 * UV_EIO (OpenSSL failed). */
int sl_grant_sign(const struct sl_grant *g, EVP_PKEY *key, char *out,
                  size_t cap);

/* "YYYY-MM-DDTHH:MM:SSZ" <-> unix seconds (UTC, years 1970-9999). parse
 * returns 0 or SL_EPARSE; format writes 21 bytes. */
int sl_grant_time_parse(const char *s, size_t len, int64_t *out);
void sl_grant_time_format(int64_t t, char out[SL_GRANT_TIME_LEN + 1]);

#endif
