/* libFuzzer target for the ACME client's pure parts (acme/acme_json.h,
 * acme/acme_jws.h): the input is read as each JSON shape a CA sends (the
 * directory, a problem, an order, an authorization), as a DER signature,
 * as base64url and as a Retry-After value. Invariants: every string a
 * parser keeps is NUL-terminated inside its field, URLs kept are http(s)
 * without spaces or control bytes, counts stay within their arrays,
 * problem details hold no control bytes (they go to logs); base64url
 * that decodes encodes back to the same text; a DER signature that
 * converts is exactly the two 32-byte values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme_json.h"
#include "acme/acme_jws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
    if (memchr(s, '\0', cap) == NULL)
        abort();
}

static void check_url(const char *s, int may_be_empty)
{
    check_str(s, SL_ACME_URL_MAX);
    if (s[0] == '\0') {
        if (!may_be_empty)
            abort();
        return;
    }
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        abort();
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            abort();
}

static void check_problem(const struct sl_acme_problem *p)
{
    check_str(p->type, sizeof(p->type));
    check_str(p->detail, sizeof(p->detail));
    for (const char *s = p->detail; *s != '\0'; s++)
        if ((unsigned char)*s < ' ' || *s == 0x7f)
            abort();
}

static void check_state(enum sl_acme_state s)
{
    if (s <= SL_ACME_S_UNKNOWN || s > SL_ACME_S_REVOKED)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct sl_acme_dir d;
    if (sl_acme_parse_dir(s, size, &d) == 0) {
        check_url(d.new_nonce, 0);
        check_url(d.new_account, 0);
        check_url(d.new_order, 0);
    }
    struct sl_acme_problem p;
    if (sl_acme_parse_problem(s, size, &p) == 0) {
        check_problem(&p);
        if (p.type[0] == '\0')
            abort();
    }
    struct sl_acme_order *o = malloc(sizeof(*o));
    if (o != NULL && sl_acme_parse_order(s, size, o) == 0) {
        check_state(o->status);
        check_url(o->finalize, 0);
        check_url(o->certificate, 1);
        if (o->nauthz == 0 || o->nauthz > SL_ACME_AUTHZ_MAX)
            abort();
        for (size_t i = 0; i < o->nauthz; i++)
            check_url(o->authz[i], 0);
        if (o->has_error)
            check_problem(&o->error);
    }
    free(o);
    struct sl_acme_authz *a = malloc(sizeof(*a));
    if (a != NULL && sl_acme_parse_authz(s, size, a) == 0) {
        check_state(a->status);
        check_str(a->identifier, sizeof(a->identifier));
        if (a->nchall > SL_ACME_CHALL_MAX)
            abort();
        for (size_t i = 0; i < a->nchall; i++) {
            const struct sl_acme_chall *c = &a->chall[i];
            check_str(c->type, sizeof(c->type));
            check_str(c->token, sizeof(c->token));
            check_url(c->url, 0);
            check_state(c->status);
            if (c->has_error)
                check_problem(&c->error);
            /* The token goes into a key authorization: refused or whole. */
            char ka[SL_ACME_TOKEN_MAX + SL_ACME_B64_SHA256 + 2];
            if (sl_acme_key_authz(c->token, "thumb", ka, sizeof(ka)) == 0 &&
                strncmp(ka, c->token, strlen(c->token)) != 0)
                abort();
        }
        if (sl_acme_authz_find(a, "tls-alpn-01") != NULL &&
            strcmp(sl_acme_authz_find(a, "tls-alpn-01")->type, "tls-alpn-01") !=
                0)
            abort();
    }
    free(a);

    uint8_t raw[64];
    (void)sl_acme_sig_der_to_raw(data, size, raw);

    /* base64url: what decodes encodes back the same (no padding given). */
    uint8_t *bin = malloc(size + 1);
    char *back = malloc(size + 8);
    size_t n = 0;
    if (bin != NULL && back != NULL && memchr(s, '=', size) == NULL &&
        sl_acme_b64url_decode(s, size, bin, size + 1, &n) == 0) {
        size_t m = sl_acme_b64url_encode(bin, n, back, size + 8);
        if (m != size || memcmp(back, s, size) != 0)
            abort();
    }
    free(bin);
    free(back);

    /* Retry-After and names: a NUL-terminated copy. */
    char *z = malloc(size + 1);
    if (z != NULL) {
        memcpy(z, data, size);
        z[size] = '\0';
        long ra = sl_acme_retry_after(z, 1764633600);
        if (ra < -1 || ra > 86400)
            abort();
        (void)sl_acme_name_ok(z, 1);
        free(z);
    }
    return 0;
}
