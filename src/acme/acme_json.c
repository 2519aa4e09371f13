#include "acme/acme_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "acme/acme_jws.h"
#include "core/error.h"

#define ACME_ERR_PREFIX "urn:ietf:params:acme:error:"
#define RETRY_AFTER_MAX 86400L

static const char *const state_names[] = {
    "unknown", "pending",     "ready",   "processing", "valid",
    "invalid", "deactivated", "expired", "revoked",
};

const char *sl_acme_state_name(enum sl_acme_state s)
{
    if ((size_t)s >= sizeof(state_names) / sizeof(state_names[0]))
        return "unknown";
    return state_names[s];
}

static enum sl_acme_state state_of(const char *s)
{
    for (size_t i = 1; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return (enum sl_acme_state)i;
    return SL_ACME_S_UNKNOWN;
}

/* A JSON object of body, or NULL with *rc set. */
static json_t *load_object(const char *body, size_t n, int *rc)
{
    if (n > SL_ACME_BODY_MAX) {
        *rc = SL_ETOOBIG;
        return NULL;
    }
    json_t *j = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        *rc = SL_EPARSE;
        return NULL;
    }
    *rc = 0;
    return j;
}

/* Copies member key of o (a string) into out. Absent: "" and 0 unless
 * required (SL_EPARSE). Not a string, or holding a NUL: SL_EPARSE. */
static int get_str(json_t *o, const char *key, char *out, size_t cap,
                   int required)
{
    json_t *v = json_object_get(o, key);
    out[0] = '\0';
    if (v == NULL)
        return required ? SL_EPARSE : 0;
    if (!json_is_string(v))
        return SL_EPARSE;
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len) != NULL)
        return SL_EPARSE;
    if (len >= cap)
        return SL_ETOOBIG;
    memcpy(out, s, len + 1);
    return 0;
}

/* An http(s) URL with no control characters or spaces. */
static int url_ok(const char *s)
{
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static int get_url(json_t *o, const char *key, char *out, size_t cap,
                   int required)
{
    int rc = get_str(o, key, out, cap, required);
    if (rc == 0 && (out[0] != '\0' || required) && !url_ok(out))
        rc = SL_EPARSE; /* "" is no URL either */
    return rc;
}

static int get_state(json_t *o, enum sl_acme_state *out)
{
    char s[32];
    int rc = get_str(o, "status", s, sizeof(s), 1);
    if (rc == SL_ETOOBIG)
        rc = SL_EPARSE;
    if (rc != 0)
        return rc;
    *out = state_of(s);
    return *out == SL_ACME_S_UNKNOWN ? SL_EPARSE : 0;
}

int sl_acme_parse_dir(const char *body, size_t n, struct sl_acme_dir *out)
{
    int rc;
    json_t *j = load_object(body, n, &rc);
    struct sl_acme_dir d;
    if (j == NULL)
        return rc;
    memset(&d, 0, sizeof(d));
    if ((rc = get_url(j, "newNonce", d.new_nonce, sizeof(d.new_nonce), 1)) !=
            0 ||
        (rc = get_url(j, "newAccount", d.new_account, sizeof(d.new_account),
                      1)) != 0 ||
        (rc = get_url(j, "newOrder", d.new_order, sizeof(d.new_order), 1)) != 0)
        goto out;
    json_t *meta = json_object_get(j, "meta");
    if (json_is_object(meta))
        d.eab_required =
            json_is_true(json_object_get(meta, "externalAccountRequired"));
    *out = d;
out:
    json_decref(j);
    return rc;
}

/* Appends "; " and more to a detail, cut to fit. */
static void detail_append(char *detail, size_t cap, const char *more)
{
    size_t len = strlen(detail);
    if (more == NULL || more[0] == '\0' || len + 3 >= cap)
        return;
    snprintf(detail + len, cap - len, "%s%s", len > 0 ? "; " : "", more);
}

/* Control characters of a server's text become spaces: it goes in logs. */
static void clean_text(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < ' ' || *s == 0x7f)
            *s = ' ';
}

static int problem_of(json_t *o, struct sl_acme_problem *p)
{
    char type[256], detail[SL_ACME_DETAIL_MAX];
    if (!json_is_object(o))
        return SL_EPARSE;
    int rc = get_str(o, "type", type, sizeof(type), 0);
    if (rc == 0) {
        rc = get_str(o, "detail", detail, sizeof(detail), 0);
        if (rc == SL_ETOOBIG) {
            /* A long detail is cut, not refused: it is for people. */
            const char *s = json_string_value(json_object_get(o, "detail"));
            snprintf(detail, sizeof(detail), "%s", s != NULL ? s : "");
            rc = 0;
        }
    }
    if (rc != 0)
        return rc;
    const char *t = type;
    if (strncmp(t, ACME_ERR_PREFIX, strlen(ACME_ERR_PREFIX)) == 0)
        t += strlen(ACME_ERR_PREFIX);
    size_t tl = strlen(t);
    if (tl >= sizeof(p->type))
        return SL_ETOOBIG;
    memcpy(p->type, t, tl + 1);
    snprintf(p->detail, sizeof(p->detail), "%s", detail);
    json_t *subs = json_object_get(o, "subproblems");
    if (json_is_array(subs) && json_array_size(subs) > 0) {
        json_t *d = json_object_get(json_array_get(subs, 0), "detail");
        if (json_is_string(d))
            detail_append(p->detail, sizeof(p->detail), json_string_value(d));
    }
    clean_text(p->type);
    clean_text(p->detail);
    return 0;
}

int sl_acme_parse_problem(const char *body, size_t n,
                          struct sl_acme_problem *out)
{
    int rc;
    json_t *j = load_object(body, n, &rc);
    struct sl_acme_problem p;
    if (j == NULL)
        return rc;
    rc = problem_of(j, &p);
    if (rc == 0 && p.type[0] == '\0')
        rc = SL_EPARSE;
    if (rc == 0)
        *out = p;
    json_decref(j);
    return rc;
}

int sl_acme_parse_order(const char *body, size_t n, struct sl_acme_order *out)
{
    int rc;
    json_t *j = load_object(body, n, &rc);
    if (j == NULL)
        return rc;
    struct sl_acme_order *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if ((rc = get_state(j, &o->status)) != 0 ||
        (rc = get_url(j, "finalize", o->finalize, sizeof(o->finalize), 1)) !=
            0 ||
        (rc = get_url(j, "certificate", o->certificate, sizeof(o->certificate),
                      0)) != 0)
        goto out;
    json_t *az = json_object_get(j, "authorizations");
    rc = SL_EPARSE;
    if (!json_is_array(az) || json_array_size(az) == 0)
        goto out;
    rc = SL_ETOOBIG;
    if (json_array_size(az) > SL_ACME_AUTHZ_MAX)
        goto out;
    for (size_t i = 0; i < json_array_size(az); i++) {
        json_t *v = json_array_get(az, i);
        rc = SL_EPARSE;
        if (!json_is_string(v) ||
            json_string_length(v) != strlen(json_string_value(v)))
            goto out;
        rc = SL_ETOOBIG;
        if (json_string_length(v) >= SL_ACME_URL_MAX)
            goto out;
        memcpy(o->authz[i], json_string_value(v), json_string_length(v) + 1);
        rc = SL_EPARSE;
        if (!url_ok(o->authz[i]))
            goto out;
    }
    o->nauthz = json_array_size(az);
    json_t *err = json_object_get(j, "error");
    if (err != NULL) {
        rc = problem_of(err, &o->error);
        if (rc != 0)
            goto out;
        o->has_error = 1;
    }
    rc = 0;
    *out = *o;
out:
    free(o);
    json_decref(j);
    return rc;
}

static int name_lower(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n >= cap)
        return SL_ETOOBIG;
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return 0;
}

int sl_acme_parse_authz(const char *body, size_t n, struct sl_acme_authz *out)
{
    int rc;
    json_t *j = load_object(body, n, &rc);
    if (j == NULL)
        return rc;
    struct sl_acme_authz *a = calloc(1, sizeof(*a));
    char value[SL_ACME_NAME_MAX], type[16];
    if (a == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if ((rc = get_state(j, &a->status)) != 0)
        goto out;
    json_t *id = json_object_get(j, "identifier");
    rc = SL_EPARSE;
    if (!json_is_object(id))
        goto out;
    if ((rc = get_str(id, "type", type, sizeof(type), 1)) != 0 ||
        (rc = get_str(id, "value", value, sizeof(value), 1)) != 0)
        goto out;
    rc = SL_EPARSE;
    if (strcmp(type, "dns") != 0)
        goto out;
    rc = name_lower(value, a->identifier, sizeof(a->identifier));
    if (rc != 0)
        goto out;
    a->wildcard = json_is_true(json_object_get(j, "wildcard"));
    json_t *cs = json_object_get(j, "challenges");
    rc = SL_EPARSE;
    if (!json_is_array(cs))
        goto out;
    for (size_t i = 0; i < json_array_size(cs); i++) {
        json_t *c = json_array_get(cs, i);
        struct sl_acme_chall ch;
        memset(&ch, 0, sizeof(ch));
        rc = SL_EPARSE;
        if (!json_is_object(c))
            goto out;
        /* A challenge type we do not know may be long or odd: skipped,
         * not refused. */
        if (get_str(c, "type", ch.type, sizeof(ch.type), 1) != 0)
            continue;
        if (a->nchall == SL_ACME_CHALL_MAX)
            continue;
        if ((rc = get_url(c, "url", ch.url, sizeof(ch.url), 1)) != 0 ||
            (rc = get_str(c, "token", ch.token, sizeof(ch.token), 0)) != 0 ||
            (rc = get_state(c, &ch.status)) != 0)
            goto out;
        json_t *err = json_object_get(c, "error");
        if (err != NULL) {
            rc = problem_of(err, &ch.error);
            if (rc != 0)
                goto out;
            ch.has_error = 1;
        }
        a->chall[a->nchall++] = ch;
    }
    rc = 0;
    *out = *a;
out:
    free(a);
    json_decref(j);
    return rc;
}

const struct sl_acme_chall *sl_acme_authz_find(const struct sl_acme_authz *a,
                                               const char *type)
{
    for (size_t i = 0; i < a->nchall; i++)
        if (strcmp(a->chall[i].type, type) == 0)
            return &a->chall[i];
    return NULL;
}

char *sl_acme_new_account_payload(const char *email, const char *eab)
{
    json_t *j = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    char *s = NULL;
    if (j == NULL)
        return NULL;
    if (email != NULL) {
        size_t n = strlen(email) + sizeof("mailto:");
        char *m = malloc(n);
        if (m == NULL)
            goto out;
        snprintf(m, n, "mailto:%s", email);
        int rc = json_object_set_new(j, "contact", json_pack("[s]", m));
        free(m);
        if (rc != 0)
            goto out;
    }
    if (eab != NULL && json_object_set_new(j, "externalAccountBinding",
                                           json_loads(eab, 0, NULL)) != 0)
        goto out;
    s = json_dumps(j, JSON_COMPACT);
out:
    json_decref(j);
    return s;
}

char *sl_acme_new_order_payload(const char *const *names, size_t n)
{
    json_t *ids = json_array();
    char *s = NULL;
    if (ids == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns",
                                                 "value", names[i])) != 0)
            goto out;
    json_t *j = json_pack("{s:O}", "identifiers", ids);
    if (j != NULL)
        s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
out:
    json_decref(ids);
    return s;
}

char *sl_acme_finalize_payload(const uint8_t *csr_der, size_t n)
{
    size_t cap = SL_ACME_B64URL_LEN(n);
    char *b = malloc(cap);
    char *s = NULL;
    if (b == NULL)
        return NULL;
    sl_acme_b64url_encode(csr_der, n, b, cap);
    json_t *j = json_pack("{s:s}", "csr", b);
    if (j != NULL)
        s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    free(b);
    return s;
}

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Sun, 06 Nov 1994 08:49:37 GMT" to unix time, or -1. */
static int64_t imf_fixdate(const char *s)
{
    char wday[4], mon[4], zone[4];
    int day, year, hh, mm, ss, used = 0;
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]%n", wday,
               &day, mon, &year, &hh, &mm, &ss, zone, &used) != 8 ||
        s[used] != '\0' || strcmp(zone, "GMT") != 0)
        return -1;
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strcmp(mon, months[i]) == 0)
            m = i;
    if (m < 0 || day < 1 || day > 31 || year < 1970 || year > 9999 || hh > 23 ||
        mm > 59 || ss > 60)
        return -1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = m,
                    .tm_mday = day,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    return (int64_t)timegm(&tm);
}

long sl_acme_retry_after(const char *value, int64_t now)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        long v = 0;
        for (; *value >= '0' && *value <= '9'; value++)
            if (v <= RETRY_AFTER_MAX)
                v = v * 10 + (*value - '0');
        while (*value == ' ' || *value == '\t')
            value++;
        if (*value != '\0')
            return -1;
        return v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : v;
    }
    int64_t t = imf_fixdate(value);
    if (t < 0)
        return -1;
    if (t <= now)
        return 0;
    return t - now > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)(t - now);
}

int sl_acme_name_ok(const char *s, int wildcard)
{
    size_t n = strlen(s);
    if (wildcard && n > 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    if (n == 0 || n > 253)
        return 0;
    size_t label = 0, labels = 1;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            if (c == '.')
                labels++;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            label++;
        } else {
            return 0;
        }
    }
    return labels >= 2;
}
