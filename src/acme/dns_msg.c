#include "acme/dns_msg.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <uv.h>

#include "core/b64.h"
#include "core/error.h"

#define HDR_LEN 12
#define CLASS_IN 1
#define CLASS_NONE 254
#define CLASS_ANY 255
#define OPCODE_UPDATE 5
#define TSIG_ALG "hmac-sha256"
#define MAC_LEN 32
#define NAME_JUMPS_MAX 32

static const char *const rcode_names[] = {
    "NOERROR", "FORMERR",  "SERVFAIL", "NXDOMAIN", "NOTIMP",
    "REFUSED", "YXDOMAIN", "YXRRSET",  "NXRRSET",  "NOTAUTH",
    "NOTZONE", NULL,       NULL,       NULL,       NULL,
    NULL,      "BADSIG",   "BADKEY",   "BADTIME",
};

const char *sl_dns_rcode_name(int rcode, char *buf, size_t cap)
{
    if (rcode >= 0 &&
        (size_t)rcode < sizeof(rcode_names) / sizeof(rcode_names[0]) &&
        rcode_names[rcode] != NULL)
        return rcode_names[rcode];
    snprintf(buf, cap, "RCODE%d", rcode);
    return buf;
}

/* ---- writing ----------------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int over;
};

static void put(struct wbuf *w, const void *src, size_t n)
{
    if (n == 0)
        return; /* src may be NULL then (no TSIG other data) */
    if (w->over || w->cap - w->len < n) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put16(struct wbuf *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put32(struct wbuf *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    put(w, b, 4);
}

static void put48(struct wbuf *w, uint64_t v)
{
    uint8_t b[6] = {(uint8_t)(v >> 40), (uint8_t)(v >> 32), (uint8_t)(v >> 24),
                    (uint8_t)(v >> 16), (uint8_t)(v >> 8),  (uint8_t)v};
    put(w, b, 6);
}

size_t sl_dns_name_wire(const char *name, uint8_t *out, size_t cap)
{
    size_t n = strlen(name), o = 0;
    if (n > 0 && name[n - 1] == '.')
        n--;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && name[j] != '.')
            j++;
        size_t label = j - i;
        if (label == 0 || label > 63 || o + 1 + label + 1 > cap ||
            o + 1 + label + 1 > 255)
            return 0;
        out[o++] = (uint8_t)label;
        for (size_t k = i; k < j; k++) {
            unsigned char c = (unsigned char)name[k];
            if (c <= ' ' || c >= 0x7f)
                return 0;
            out[o++] = (uint8_t)tolower(c);
        }
        i = j + 1;
    }
    if (o + 1 > cap)
        return 0;
    out[o++] = 0;
    return o;
}

static int put_name(struct wbuf *w, const char *name)
{
    uint8_t wire[256];
    size_t n = sl_dns_name_wire(name, wire, sizeof(wire));
    if (n == 0)
        return UV_EINVAL;
    put(w, wire, n);
    return 0;
}

static void put_header(struct wbuf *w, uint16_t id, unsigned flags, unsigned qd,
                       unsigned an, unsigned ns, unsigned ar)
{
    put16(w, id);
    put16(w, flags);
    put16(w, qd);
    put16(w, an);
    put16(w, ns);
    put16(w, ar);
}

int sl_dns_update_build(uint16_t id, const char *zone, int del,
                        const char *const *names, const char *const *values,
                        size_t n, uint32_t ttl, uint8_t *out, size_t cap,
                        size_t *len)
{
    struct wbuf w = {out, 0, cap, 0};
    if (n == 0 || n > 64)
        return UV_EINVAL;
    put_header(&w, id, OPCODE_UPDATE << 11, 1, 0, (unsigned)n, 0);
    if (put_name(&w, zone) != 0)
        return UV_EINVAL;
    put16(&w, SL_DNS_T_SOA);
    put16(&w, CLASS_IN);
    for (size_t i = 0; i < n; i++) {
        size_t vlen = strlen(values[i]);
        if (vlen == 0 || vlen > 255 || put_name(&w, names[i]) != 0)
            return UV_EINVAL;
        put16(&w, SL_DNS_T_TXT);
        put16(&w, del ? CLASS_NONE : CLASS_IN);
        put32(&w, del ? 0 : ttl);
        put16(&w, (unsigned)(vlen + 1));
        uint8_t l = (uint8_t)vlen;
        put(&w, &l, 1);
        put(&w, values[i], vlen);
    }
    if (w.over)
        return SL_ETOOBIG;
    *len = w.len;
    return 0;
}

int sl_dns_query_build(uint16_t id, const char *name, uint16_t type,
                       uint8_t *out, size_t cap, size_t *len)
{
    struct wbuf w = {out, 0, cap, 0};
    put_header(&w, id, 0, 1, 0, 0, 0);
    if (put_name(&w, name) != 0)
        return UV_EINVAL;
    put16(&w, type);
    put16(&w, CLASS_IN);
    if (w.over)
        return SL_ETOOBIG;
    *len = w.len;
    return 0;
}

/* The TSIG variables (RFC 8945 4.3.3) after what is in w. */
static void put_tsig_vars(struct wbuf *w, const uint8_t *key_wire,
                          size_t key_len, uint64_t when, unsigned fudge,
                          unsigned error, const uint8_t *other,
                          size_t other_len)
{
    uint8_t alg[32];
    size_t alen = sl_dns_name_wire(TSIG_ALG, alg, sizeof(alg));
    put(w, key_wire, key_len);
    put16(w, CLASS_ANY);
    put32(w, 0);
    put(w, alg, alen);
    put48(w, when);
    put16(w, fudge);
    put16(w, error);
    put16(w, (unsigned)other_len);
    put(w, other, other_len);
}

static int hmac(const struct sl_tsig_key *key, const uint8_t *p, size_t n,
                uint8_t mac[MAC_LEN])
{
    unsigned len = 0;
    if (HMAC(EVP_sha256(), key->secret, (int)key->secret_len, p, n, mac,
             &len) == NULL ||
        len != MAC_LEN)
        return UV_EINVAL;
    return 0;
}

int sl_tsig_sign(const struct sl_tsig_key *key, uint8_t *msg, size_t *len,
                 size_t cap, uint64_t now, uint8_t mac[32])
{
    uint8_t key_wire[256], alg[32], input[SL_DNS_MSG_MAX + 600];
    size_t klen = sl_dns_name_wire(key->name, key_wire, sizeof(key_wire));
    size_t alen = sl_dns_name_wire(TSIG_ALG, alg, sizeof(alg));
    if (klen == 0 || *len < HDR_LEN || *len > SL_DNS_MSG_MAX)
        return UV_EINVAL;
    struct wbuf in = {input, 0, sizeof(input), 0};
    put(&in, msg, *len);
    put_tsig_vars(&in, key_wire, klen, now, SL_DNS_TSIG_FUDGE, 0, NULL, 0);
    if (in.over || hmac(key, input, in.len, mac) != 0)
        return UV_EINVAL;
    struct wbuf w = {msg, *len, cap, 0};
    put(&w, key_wire, klen);
    put16(&w, SL_DNS_T_TSIG);
    put16(&w, CLASS_ANY);
    put32(&w, 0);
    put16(&w, (unsigned)(alen + 6 + 2 + 2 + MAC_LEN + 2 + 2 + 2));
    put(&w, alg, alen);
    put48(&w, now);
    put16(&w, SL_DNS_TSIG_FUDGE);
    put16(&w, MAC_LEN);
    put(&w, mac, MAC_LEN);
    put(&w, msg, 2); /* the original id */
    put16(&w, 0);
    put16(&w, 0);
    if (w.over)
        return SL_ETOOBIG;
    unsigned ar = ((unsigned)msg[10] << 8 | msg[11]) + 1;
    msg[10] = (uint8_t)(ar >> 8);
    msg[11] = (uint8_t)ar;
    *len = w.len;
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Reads the name at *off (following compression pointers, each only
 * backwards) into text (dotted, lower case) and, if wire is not NULL,
 * its uncompressed lower-case wire form. Moves *off past the name as it
 * appears there. Returns 0 or SL_EPARSE. */
static int read_name(const uint8_t *p, size_t n, size_t *off, char *text,
                     uint8_t *wire, size_t *wire_len)
{
    size_t pos = *off, t = 0, wl = 0, end = 0;
    int jumped = 0, jumps = 0;
    size_t limit = pos; /* a pointer must go before where it is */
    for (;;) {
        if (pos >= n)
            return SL_EPARSE;
        uint8_t b = p[pos];
        if ((b & 0xc0) == 0xc0) {
            if (pos + 1 >= n || ++jumps > NAME_JUMPS_MAX)
                return SL_EPARSE;
            size_t to = (size_t)(b & 0x3f) << 8 | p[pos + 1];
            if (to >= limit)
                return SL_EPARSE;
            if (!jumped)
                end = pos + 2;
            jumped = 1;
            limit = to;
            pos = to;
            continue;
        }
        if (b & 0xc0)
            return SL_EPARSE; /* the extended label types */
        if (b == 0) {
            if (!jumped)
                end = pos + 1;
            break;
        }
        if (pos + 1 + b > n || wl + 1 + b + 1 > 255)
            return SL_EPARSE;
        if (wire != NULL)
            wire[wl] = b;
        wl++;
        if (t > 0)
            text[t++] = '.';
        for (size_t i = 0; i < b; i++) {
            uint8_t c = (uint8_t)tolower(p[pos + 1 + i]);
            if (wire != NULL)
                wire[wl] = c;
            wl++;
            /* Text keeps printable bytes; others would confuse logs. */
            text[t++] = (c > ' ' && c < 0x7f && c != '.') ? (char)c : '?';
        }
        pos += 1 + b;
    }
    text[t] = '\0';
    if (wire != NULL)
        wire[wl] = 0;
    if (wire_len != NULL)
        *wire_len = wl + 1;
    *off = end;
    return 0;
}

static int name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Joins the character-strings of a TXT rdata into out (cut to fit). */
static int read_txt(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    while (i < n) {
        size_t l = p[i++];
        if (i + l > n)
            return SL_EPARSE;
        for (size_t k = 0; k < l && o + 1 < cap; k++)
            out[o++] =
                (p[i + k] >= ' ' && p[i + k] < 0x7f) ? (char)p[i + k] : '?';
        i += l;
    }
    out[o] = '\0';
    return 0;
}

struct tsig_rr {
    size_t start; /* offset of the record in the message */
    uint8_t key_wire[256];
    size_t key_len;
    char alg[SL_DNS_NAME_MAX];
    uint64_t when;
    unsigned fudge, mac_len, orig_id, error, other_len;
    const uint8_t *mac, *other;
};

static int read_tsig(const uint8_t *p, size_t n, size_t rdata, size_t rdlen,
                     struct tsig_rr *t)
{
    size_t off = rdata, end = rdata + rdlen;
    uint8_t scratch[256];
    size_t slen;
    if (read_name(p, end, &off, t->alg, scratch, &slen) != 0 || end - off < 10)
        return SL_EPARSE;
    (void)n;
    t->when = (uint64_t)get16(p + off) << 32 |
              (uint64_t)get16(p + off + 2) << 16 | get16(p + off + 4);
    t->fudge = get16(p + off + 6);
    t->mac_len = get16(p + off + 8);
    off += 10;
    if (end - off < t->mac_len + 6u)
        return SL_EPARSE;
    t->mac = p + off;
    off += t->mac_len;
    t->orig_id = get16(p + off);
    t->error = get16(p + off + 2);
    t->other_len = get16(p + off + 4);
    off += 6;
    if (end - off != t->other_len)
        return SL_EPARSE;
    t->other = p + off;
    return 0;
}

static int tsig_check(const uint8_t *p, const struct tsig_rr *t,
                      const struct sl_tsig_key *key, const uint8_t *req_mac,
                      uint64_t now)
{
    uint8_t input[2 + MAC_LEN + SL_DNS_MSG_MAX + 600], mac[MAC_LEN];
    uint8_t want_key[256];
    size_t wlen = sl_dns_name_wire(key->name, want_key, sizeof(want_key));
    if (t->mac_len != MAC_LEN || !name_eq(t->alg, TSIG_ALG) ||
        wlen != t->key_len || memcmp(want_key, t->key_wire, wlen) != 0 ||
        t->start > SL_DNS_MSG_MAX)
        return 0;
    struct wbuf w = {input, 0, sizeof(input), 0};
    put16(&w, MAC_LEN);
    put(&w, req_mac, MAC_LEN);
    size_t hdr_at = w.len;
    put(&w, p, t->start);
    /* The message as it was before the TSIG was added. */
    unsigned ar = get16(p + 10) - 1;
    input[hdr_at] = (uint8_t)(t->orig_id >> 8);
    input[hdr_at + 1] = (uint8_t)t->orig_id;
    input[hdr_at + 10] = (uint8_t)(ar >> 8);
    input[hdr_at + 11] = (uint8_t)ar;
    put_tsig_vars(&w, t->key_wire, t->key_len, t->when, t->fudge, t->error,
                  t->other, t->other_len);
    if (w.over || hmac(key, input, w.len, mac) != 0)
        return 0;
    if (CRYPTO_memcmp(mac, t->mac, MAC_LEN) != 0)
        return 0;
    uint64_t skew = now > t->when ? now - t->when : t->when - now;
    return skew <= t->fudge;
}

int sl_dns_parse(const uint8_t *p, size_t n, const char *txt_name,
                 const struct sl_tsig_key *key, const uint8_t *req_mac,
                 uint64_t now, struct sl_dns_answer *out)
{
    struct sl_dns_answer a;
    struct tsig_rr tsig;
    char name[SL_DNS_NAME_MAX];
    memset(&a, 0, sizeof(a));
    if (n < HDR_LEN || n > 65535)
        return SL_EPARSE;
    unsigned flags = get16(p + 2);
    if (!(flags & 0x8000))
        return SL_EPARSE; /* not a response */
    a.id = (uint16_t)get16(p);
    a.rcode = (int)(flags & 0xf);
    a.tc = (flags & 0x0200) != 0;
    unsigned qd = get16(p + 4), an = get16(p + 6), ns = get16(p + 8);
    unsigned ar = get16(p + 10);
    size_t off = HDR_LEN;
    for (unsigned i = 0; i < qd; i++) {
        if (read_name(p, n, &off, name, NULL, NULL) != 0 || n - off < 4)
            return SL_EPARSE;
        off += 4;
    }
    unsigned total = an + ns + ar;
    for (unsigned i = 0; i < total; i++) {
        size_t start = off;
        uint8_t wire[256];
        size_t wlen = 0;
        if (read_name(p, n, &off, name, wire, &wlen) != 0 || n - off < 10)
            return SL_EPARSE;
        unsigned type = get16(p + off), rdlen = get16(p + off + 8);
        off += 10;
        if (n - off < rdlen)
            return SL_EPARSE;
        if (type == SL_DNS_T_SOA && i < an + ns && !a.has_soa) {
            a.has_soa = 1;
            snprintf(a.soa_owner, sizeof(a.soa_owner), "%s", name);
        } else if (type == SL_DNS_T_TXT && i < an && txt_name != NULL &&
                   name_eq(name, txt_name) && a.ntxt < SL_DNS_TXT_MAX) {
            if (read_txt(p + off, rdlen, a.txt[a.ntxt], sizeof(a.txt[0])) != 0)
                return SL_EPARSE;
            a.ntxt++;
        } else if (type == SL_DNS_T_TSIG) {
            /* Only as the very last record (RFC 8945 5.2). */
            if (i != total - 1 || i < an + ns)
                return SL_EPARSE;
            memset(&tsig, 0, sizeof(tsig));
            tsig.start = start;
            memcpy(tsig.key_wire, wire, wlen);
            tsig.key_len = wlen;
            if (read_tsig(p, n, off, rdlen, &tsig) != 0)
                return SL_EPARSE;
            a.has_tsig = 1;
            a.tsig_error = (int)tsig.error;
        }
        off += rdlen;
    }
    if (a.has_tsig && key != NULL && req_mac != NULL)
        a.tsig_ok = tsig_check(p, &tsig, key, req_mac, now);
    *out = a;
    return 0;
}

/* ---- the key file ------------------------------------------------------ */

struct lexer {
    const char *p, *end;
    char tok[512];
    int quoted;
};

/* The next token: a word, a quoted string, or one of { } ;. Returns 1,
 * 0 at the end, -1 on a bad one. */
static int next_token(struct lexer *lx)
{
    for (;;) {
        while (lx->p < lx->end && isspace((unsigned char)*lx->p))
            lx->p++;
        if (lx->p >= lx->end)
            return 0;
        if (*lx->p == '#' ||
            (*lx->p == '/' && lx->p + 1 < lx->end && lx->p[1] == '/')) {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
            continue;
        }
        if (*lx->p == '/' && lx->p + 1 < lx->end && lx->p[1] == '*') {
            const char *e = NULL;
            for (const char *q = lx->p + 2; q + 1 < lx->end; q++)
                if (q[0] == '*' && q[1] == '/') {
                    e = q;
                    break;
                }
            if (e == NULL)
                return -1;
            lx->p = e + 2;
            continue;
        }
        break;
    }
    size_t n = 0;
    lx->quoted = 0;
    if (*lx->p == '{' || *lx->p == '}' || *lx->p == ';') {
        lx->tok[n++] = *lx->p++;
    } else if (*lx->p == '"') {
        lx->quoted = 1;
        lx->p++;
        while (lx->p < lx->end && *lx->p != '"') {
            if (n + 1 >= sizeof(lx->tok) || *lx->p == '\n')
                return -1;
            lx->tok[n++] = *lx->p++;
        }
        if (lx->p >= lx->end)
            return -1;
        lx->p++;
    } else {
        while (lx->p < lx->end && !isspace((unsigned char)*lx->p) &&
               strchr("{};\"", *lx->p) == NULL) {
            if (n + 1 >= sizeof(lx->tok))
                return -1;
            lx->tok[n++] = *lx->p++;
        }
    }
    lx->tok[n] = '\0';
    return 1;
}

/* A TSIG secret as key files write it: standard base64, maybe split by
 * white space, padding maybe left out; then core/b64's strict decoder. */
static int b64_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    char t[256]; /* base64 of the secret field (128 bytes) fits */
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (isspace((unsigned char)*s))
            continue;
        if (n + 4 >= sizeof(t))
            return SL_ETOOBIG;
        t[n++] = *s;
    }
    while (n % 4 != 0)
        t[n++] = '=';
    int rc = sl_b64_decode(t, n, out, cap);
    if (rc < 0)
        return rc;
    *len = (size_t)rc;
    return 0;
}

#define KEY_FAIL(...)                                                          \
    do {                                                                       \
        if (err != NULL)                                                       \
            snprintf(err, cap, __VA_ARGS__);                                   \
        rc = SL_EPARSE;                                                        \
        goto out;                                                              \
    } while (0)

int sl_tsig_key_parse(const char *text, size_t n, struct sl_tsig_key *out,
                      char *err, size_t cap)
{
    struct lexer lx = {.p = text, .end = text + n};
    struct sl_tsig_key k;
    int rc = 0, have_alg = 0, have_secret = 0, t;
    memset(&k, 0, sizeof(k));
    if (next_token(&lx) != 1 || lx.quoted || strcmp(lx.tok, "key") != 0)
        KEY_FAIL("no key statement (key \"name\" { algorithm hmac-sha256; "
                 "secret \"...\"; };)");
    if (next_token(&lx) != 1 || strchr("{};", lx.tok[0]) != NULL)
        KEY_FAIL("the key statement has no name");
    if (strlen(lx.tok) >= sizeof(k.name) || lx.tok[0] == '\0')
        KEY_FAIL("the key's name is not a DNS name");
    memcpy(k.name, lx.tok, strlen(lx.tok) + 1);
    uint8_t probe[256];
    if (sl_dns_name_wire(k.name, probe, sizeof(probe)) == 0)
        KEY_FAIL("the key's name \"%s\" is not a DNS name", k.name);
    if (next_token(&lx) != 1 || strcmp(lx.tok, "{") != 0)
        KEY_FAIL("'{' expected after the key's name");
    for (;;) {
        t = next_token(&lx);
        if (t != 1)
            KEY_FAIL("the key statement is not closed with '};'");
        if (!lx.quoted && strcmp(lx.tok, "}") == 0)
            break;
        if (!lx.quoted && strcmp(lx.tok, "algorithm") == 0) {
            if (next_token(&lx) != 1)
                KEY_FAIL("algorithm: a name expected");
            if (strcasecmp(lx.tok, TSIG_ALG) != 0 &&
                strcasecmp(lx.tok, TSIG_ALG ".") != 0)
                KEY_FAIL("algorithm %.64s is not supported (only "
                         "hmac-sha256)",
                         lx.tok);
            have_alg = 1;
        } else if (!lx.quoted && strcmp(lx.tok, "secret") == 0) {
            if (next_token(&lx) != 1 ||
                b64_decode(lx.tok, k.secret, sizeof(k.secret), &k.secret_len) !=
                    0 ||
                k.secret_len == 0)
                KEY_FAIL("secret: not base64 (or longer than %zu bytes)",
                         sizeof(k.secret));
            have_secret = 1;
        } else {
            KEY_FAIL("unknown clause \"%.64s\" in the key statement", lx.tok);
        }
        if (next_token(&lx) != 1 || strcmp(lx.tok, ";") != 0)
            KEY_FAIL("';' expected after a clause of the key statement");
    }
    if (!have_alg)
        KEY_FAIL("the key has no algorithm");
    if (!have_secret)
        KEY_FAIL("the key has no secret");
    *out = k;
out:
    OPENSSL_cleanse(&k, sizeof(k));
    OPENSSL_cleanse(lx.tok, sizeof(lx.tok));
    return rc;
}
