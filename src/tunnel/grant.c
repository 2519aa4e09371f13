#include "tunnel/grant.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "core/b64.h"
#include "core/error.h"

const char *sl_grant_why(enum sl_grant_status st)
{
    switch (st) {
    case SL_GRANT_OK: return "Grant accepted";
    case SL_GRANT_MALFORMED: return "Grant malformed";
    case SL_GRANT_BAD_SIGNATURE: return "Grant signature invalid";
    case SL_GRANT_EXPIRED: return "Grant expired";
    case SL_GRANT_NO_BRIDGE: return "Bridge not allowed";
    case SL_GRANT_OTHER_IDENTITY: return "Grant for another identity";
    }
    return "Grant refused";
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), without timegm
 * and its dependence on the environment. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int sl_grant_time_parse(const char *s, size_t len, int64_t *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                31};
    int y, mo, d, h, mi, se;
    if (s == NULL || len != SL_GRANT_TIME_LEN || s[4] != '-' ||
        s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z' || digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
        digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return SL_EPARSE;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 ||
        se > 59 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return SL_EPARSE;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

void sl_grant_time_format(int64_t t, char out[SL_GRANT_TIME_LEN + 1])
{
    struct tm tm;
    time_t tt = (time_t)(t < 0 ? 0 : t);
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, SL_GRANT_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm) !=
            SL_GRANT_TIME_LEN)
        snprintf(out, SL_GRANT_TIME_LEN + 1, "9999-12-31T23:59:59Z");
}

static int get_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return SL_EPARSE;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Printable text only: a subject goes to logs and terminals. */
static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int parse_features(json_t *arr, unsigned *out)
{
    size_t i;
    json_t *f;
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        return SL_EPARSE;
    json_array_foreach(arr, i, f)
    {
        if (!json_is_string(f))
            return SL_EPARSE;
        const char *s = json_string_value(f);
        if (strcmp(s, "bridge") == 0)
            *out |= SL_GRANT_BRIDGE;
        else if (strcmp(s, "tcp") == 0)
            *out |= SL_GRANT_TCP;
        else if (strcmp(s, "udp") == 0)
            *out |= SL_GRANT_UDP;
        /* Others: features of later versions, meaningless here. */
    }
    return 0;
}

int sl_grant_parse_payload(const char *json, size_t len, struct sl_grant *out)
{
    memset(out, 0, sizeof(*out));
    if (json == NULL || len == 0 || len > SL_GRANT_PAYLOAD_MAX)
        return SL_EPARSE;
    json_error_t err;
    /* Duplicate members are refused: two readers of one signed text must
     * not see two grants in it. */
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL)
        return json_error_code(&err) == json_error_out_of_memory ? UV_ENOMEM
                                                                 : SL_EPARSE;
    int rc = SL_EPARSE;
    json_t *v = json_object_get(o, "v");
    if (!json_is_object(o) || !json_is_integer(v) ||
        json_integer_value(v) != 1)
        goto out;
    if (parse_features(json_object_get(o, "features"), &out->features) != 0 ||
        get_u64(o, "bridges", &out->bridges) != 0 ||
        get_u64(o, "traffic", &out->traffic) != 0 ||
        get_u64(o, "rate", &out->rate) != 0)
        goto out;
    if ((v = json_object_get(o, "expires")) != NULL &&
        (!json_is_string(v) ||
         sl_grant_time_parse(json_string_value(v), json_string_length(v),
                             &out->expires) != 0))
        goto out;
    if ((v = json_object_get(o, "identity")) != NULL) {
        if (!json_is_string(v) ||
            !sl_identity_valid(json_string_value(v), json_string_length(v)))
            goto out;
        memcpy(out->identity, json_string_value(v), SL_IDENTITY_LEN + 1);
    }
    if ((v = json_object_get(o, "subject")) != NULL) {
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        if (!json_is_string(v) || n == 0 || n >= SL_GRANT_SUBJECT_MAX ||
            !printable(json_string_value(v), n))
            goto out;
        memcpy(out->subject, json_string_value(v), n + 1);
    }
    rc = 0;
out:
    json_decref(o);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int sl_grant_format_payload(const struct sl_grant *g, char *out, size_t cap)
{
    int rc = SL_ETOOBIG;
    json_t *o = json_object();
    json_t *f = json_array();
    if (o == NULL || f == NULL)
        goto out;
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{SL_GRANT_BRIDGE, "bridge"},
                 {SL_GRANT_TCP, "tcp"},
                 {SL_GRANT_UDP, "udp"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (g->features & names[i].bit)
            json_array_append_new(f, json_string(names[i].name));
    json_object_set_new(o, "v", json_integer(1));
    json_object_set(o, "features", f);
    if (g->bridges > 0)
        json_object_set_new(o, "bridges", json_integer((json_int_t)g->bridges));
    if (g->traffic > 0)
        json_object_set_new(o, "traffic", json_integer((json_int_t)g->traffic));
    if (g->rate > 0)
        json_object_set_new(o, "rate", json_integer((json_int_t)g->rate));
    if (g->expires > 0) {
        char t[SL_GRANT_TIME_LEN + 1];
        sl_grant_time_format(g->expires, t);
        json_object_set_new(o, "expires", json_string(t));
    }
    if (g->identity[0] != '\0')
        json_object_set_new(o, "identity", json_string(g->identity));
    if (g->subject[0] != '\0')
        json_object_set_new(o, "subject", json_string(g->subject));
    size_t n = json_dumpb(o, out, cap, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (n == 0 || n >= cap)
        goto out;
    out[n] = '\0';
    rc = (int)n;
out:
    json_decref(f);
    json_decref(o);
    return rc;
}

int sl_grant_split(const char *token, size_t len, unsigned char *payload,
                   size_t cap, size_t *plen,
                   unsigned char sig[SL_GRANT_SIG_LEN])
{
    if (token == NULL || len == 0 || len > SL_GRANT_TOKEN_MAX)
        return SL_EPARSE;
    const char *dot = memchr(token, '.', len);
    if (dot == NULL || memchr(dot + 1, '.', len - (size_t)(dot - token) - 1))
        return SL_EPARSE;
    size_t a = (size_t)(dot - token);
    int n = sl_b64url_decode(token, a, payload, cap);
    if (n <= 0)
        return n == 0 ? SL_EPARSE : n;
    unsigned char s[SL_GRANT_SIG_LEN + 3];
    int m = sl_b64url_decode(dot + 1, len - a - 1, s, sizeof(s));
    if (m != SL_GRANT_SIG_LEN)
        return SL_EPARSE;
    memcpy(sig, s, SL_GRANT_SIG_LEN);
    *plen = (size_t)n;
    return 0;
}

static int is_ed25519(EVP_PKEY *k)
{
    return k != NULL && EVP_PKEY_is_a(k, "ED25519");
}

enum sl_grant_status sl_grant_verify(const char *token, size_t len,
                                     EVP_PKEY *pub, struct sl_grant *out)
{
    unsigned char payload[SL_GRANT_PAYLOAD_MAX];
    unsigned char sig[SL_GRANT_SIG_LEN];
    size_t plen = 0;
    memset(out, 0, sizeof(*out));
    if (sl_grant_split(token, len, payload, sizeof(payload), &plen, sig) != 0)
        return SL_GRANT_MALFORMED;
    if (!is_ed25519(pub))
        return SL_GRANT_BAD_SIGNATURE;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL &&
             EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(md, sig, sizeof(sig), payload, plen) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return SL_GRANT_BAD_SIGNATURE;
    /* Signed, so written by the operator: read only now. */
    if (sl_grant_parse_payload((const char *)payload, plen, out) != 0)
        return SL_GRANT_MALFORMED;
    return SL_GRANT_OK;
}

enum sl_grant_status sl_grant_check(const struct sl_grant *g, int64_t now,
                                    const char *identity)
{
    if (g->expires > 0 && now >= g->expires)
        return SL_GRANT_EXPIRED;
    if (!(g->features & SL_GRANT_BRIDGE))
        return SL_GRANT_NO_BRIDGE;
    if (g->identity[0] != '\0' &&
        (identity == NULL || strcmp(identity, g->identity) != 0))
        return SL_GRANT_OTHER_IDENTITY;
    return SL_GRANT_OK;
}

int sl_grant_sign(const struct sl_grant *g, EVP_PKEY *key, char *out,
                  size_t cap)
{
    char payload[SL_GRANT_PAYLOAD_MAX + 1];
    unsigned char sig[SL_GRANT_SIG_LEN];
    size_t siglen = sizeof(sig);
    if (!is_ed25519(key))
        return UV_EINVAL;
    int n = sl_grant_format_payload(g, payload, sizeof(payload));
    if (n < 0)
        return n;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL &&
             EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)payload,
                            (size_t)n) == 1 &&
             siglen == sizeof(sig);
    EVP_MD_CTX_free(md);
    if (!ok)
        return UV_EIO;
    int a = sl_b64url_encode(payload, (size_t)n, out, cap);
    if (a < 0 || (size_t)a + 1 >= cap)
        return SL_ETOOBIG;
    out[a] = '.';
    int b = sl_b64url_encode(sig, sizeof(sig), out + a + 1, cap - (size_t)a - 1);
    if (b < 0)
        return SL_ETOOBIG;
    return a + 1 + b;
}
