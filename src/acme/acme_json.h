/* The JSON shapes of ACME (RFC 8555 section 7): the directory, an order,
 * an authorization and its challenges, a problem document (RFC 7807),
 * read from a server's bytes into fixed-size structs; and the payloads a
 * client sends (newAccount, newOrder, finalize).
 *
 * Pure: bytes in, results out; no I/O. A parser takes any bytes (a
 * hostile server's too): what is not the shape it wants is SL_EPARSE,
 * members it does not know are ignored, strings that do not fit their
 * field are SL_ETOOBIG (a URL longer than SL_ACME_URL_MAX - 1 is no URL
 * we follow). */
#ifndef SL_ACME_JSON_H
#define SL_ACME_JSON_H

#include <stddef.h>
#include <stdint.h>

#define SL_ACME_URL_MAX 512
#define SL_ACME_NAME_MAX 254 /* a DNS name and its NUL */
#define SL_ACME_TOKEN_MAX 128
#define SL_ACME_DETAIL_MAX 512
#define SL_ACME_TYPE_MAX 96
#define SL_ACME_AUTHZ_MAX 8 /* authorizations of one order we follow */
#define SL_ACME_CHALL_MAX 8 /* challenges of one authorization we keep */
#define SL_ACME_BODY_MAX (256 * 1024) /* JSON bodies parsed at most */

/* The "status" of orders, authorizations and challenges. */
enum sl_acme_state {
    SL_ACME_S_UNKNOWN = 0,
    SL_ACME_S_PENDING,
    SL_ACME_S_READY,
    SL_ACME_S_PROCESSING,
    SL_ACME_S_VALID,
    SL_ACME_S_INVALID,
    SL_ACME_S_DEACTIVATED,
    SL_ACME_S_EXPIRED,
    SL_ACME_S_REVOKED,
};

const char *sl_acme_state_name(enum sl_acme_state s);

struct sl_acme_dir {
    char new_nonce[SL_ACME_URL_MAX];
    char new_account[SL_ACME_URL_MAX];
    char new_order[SL_ACME_URL_MAX];
    int eab_required; /* meta.externalAccountRequired */
};

/* An RFC 7807 problem. type is the short form when it is an ACME error
 * ("badNonce" for "urn:ietf:params:acme:error:badNonce"), else as sent;
 * detail is "" when absent; the detail of the first subproblem, if any,
 * is appended after "; " (Let's Encrypt puts the useful words there). */
struct sl_acme_problem {
    char type[SL_ACME_TYPE_MAX];
    char detail[SL_ACME_DETAIL_MAX];
};

struct sl_acme_order {
    enum sl_acme_state status;
    char finalize[SL_ACME_URL_MAX];
    char certificate[SL_ACME_URL_MAX]; /* "" until valid */
    char authz[SL_ACME_AUTHZ_MAX][SL_ACME_URL_MAX];
    size_t nauthz;
    int has_error;
    struct sl_acme_problem error;
};

struct sl_acme_chall {
    char type[32]; /* "tls-alpn-01", "dns-01", ... ("" if too long) */
    char url[SL_ACME_URL_MAX];
    char token[SL_ACME_TOKEN_MAX];
    enum sl_acme_state status;
    int has_error;
    struct sl_acme_problem error;
};

struct sl_acme_authz {
    enum sl_acme_state status;
    char identifier[SL_ACME_NAME_MAX]; /* the dns value, lower case */
    int wildcard;
    struct sl_acme_chall chall[SL_ACME_CHALL_MAX];
    size_t nchall;
};

/* Each returns 0, SL_EPARSE, SL_ETOOBIG (also for a body over
 * SL_ACME_BODY_MAX) or UV_ENOMEM. *out is written whole on success only. */
int sl_acme_parse_dir(const char *body, size_t n, struct sl_acme_dir *out);
int sl_acme_parse_problem(const char *body, size_t n,
                          struct sl_acme_problem *out);
int sl_acme_parse_order(const char *body, size_t n, struct sl_acme_order *out);
int sl_acme_parse_authz(const char *body, size_t n, struct sl_acme_authz *out);

/* The challenge of type in a, or NULL. */
const struct sl_acme_chall *sl_acme_authz_find(const struct sl_acme_authz *a,
                                               const char *type);

/* Payloads, as new strings (free()) or NULL when out of memory.
 * newAccount: termsOfServiceAgreed, contact ["mailto:<email>"] when email
 * is not NULL, externalAccountBinding (a JSON object's text) when eab is
 * not NULL. Returns NULL also when eab is not valid JSON. */
char *sl_acme_new_account_payload(const char *email, const char *eab);
/* newOrder for the DNS names given. */
char *sl_acme_new_order_payload(const char *const *names, size_t n);
/* finalize: {"csr": base64url(DER)}. */
char *sl_acme_finalize_payload(const uint8_t *csr_der, size_t n);

/* Retry-After (RFC 9110 10.2.3) of a header value: delay-seconds or an
 * HTTP-date (IMF-fixdate only), as seconds from now (unix time now).
 * Returns the seconds (0 for a date in the past) or -1 when it is
 * neither. Capped at one day. */
long sl_acme_retry_after(const char *value, int64_t now);

/* 1 if s is a DNS name we order certificates for: 1..253 bytes, labels of
 * 1..63 letters, digits and '-' (not at either end), at least two
 * labels; a leading "*." is allowed when wildcard is 1. */
int sl_acme_name_ok(const char *s, int wildcard);

#endif
