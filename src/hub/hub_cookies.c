/* Cookie isolation. Tenants are siblings under one domain, so a cookie
 * with Domain=<domain> set by one reaches every other: the hub removes
 * such attributes, and the cookie stays with the host that set it. */
#include "hub/hub_cookies.h"

#include <string.h>
#include <strings.h>

#include "hub/hub.h"

int sl_cookies_isolation(int mode, const char *domain)
{
    if (mode != SL_HUB_COOKIES_AUTO)
        return mode == SL_HUB_COOKIES_ON;
    const char *d = domain;
    size_t n = strlen(d);
    if (n > 0 && d[n - 1] == '.')
        n--;
    /* localhost is one developer's machine: nothing to isolate from. */
    if (n == 9 && strncasecmp(d, "localhost", 9) == 0)
        return 0;
    return !(n > 10 && strncasecmp(d + n - 10, ".localhost", 10) == 0);
}

static int is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* 1 if a Set-Cookie Domain value may stay for host: it names host itself,
 * or a name that is not host's parent (browsers refuse that cookie as it
 * is). A value the hub cannot read as a plain name goes too: browsers
 * canonicalise percent-escapes and Unicode, and what reads as the parent
 * there must not pass. */
static int domain_may_stay(const char *v, size_t n, const char *host,
                           size_t hlen)
{
    if (n > 0 && v[0] == '.')
        n--, v++;
    if (n > 0 && v[n - 1] == '.')
        n--;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    if (n == hlen && strncasecmp(v, host, n) == 0)
        return 1;
    return !(n < hlen && host[hlen - n - 1] == '.' &&
             strncasecmp(host + hlen - n, v, n) == 0);
}

/* The value of one Set-Cookie, v[0..n), written at out without the
 * Domain attributes that may not stay. Returns the length written
 * (never more than n; out may be v). */
static size_t cookie_filter(char *out, const char *v, size_t n,
                            const char *host, size_t hlen)
{
    size_t w = 0, i = 0;
    while (i < n) {
        /* [i, e): the pair or one attribute with its leading ';'. */
        const char *semi = memchr(v + i + (i > 0), ';', n - i - (i > 0));
        size_t e = semi ? (size_t)(semi - v) : n;
        int keep = 1;
        if (i > 0) {
            size_t a = i + 1, ae = e;
            while (a < ae && is_wsp(v[a]))
                a++;
            const char *eq = memchr(v + a, '=', ae - a);
            size_t ne = eq ? (size_t)(eq - v) : ae;
            while (ne > a && is_wsp(v[ne - 1]))
                ne--;
            if (ne - a == 6 && strncasecmp(v + a, "domain", 6) == 0) {
                size_t vs = eq ? (size_t)(eq - v) + 1 : ae, ve = ae;
                while (vs < ve && is_wsp(v[vs]))
                    vs++;
                while (ve > vs && is_wsp(v[ve - 1]))
                    ve--;
                keep = domain_may_stay(v + vs, ve - vs, host, hlen);
            }
        }
        if (keep) {
            memmove(out + w, v + i, e - i);
            w += e - i;
        }
        i = e;
    }
    return w;
}

/* The bare CR and obs-fold pass comes first: a folded Domain would
 * otherwise pass unseen. */
size_t sl_cookies_isolate(char *buf, size_t len, const char *host, size_t hlen)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\r' && (i + 1 == len || buf[i + 1] != '\n'))
            buf[i] = ' ';
        else if (buf[i] == '\n' && i + 1 < len && is_wsp(buf[i + 1]) &&
                 i > 0) {
            buf[i] = ' ';
            if (buf[i - 1] == '\r')
                buf[i - 1] = ' ';
        }
    }
    size_t r = 0, w = 0;
    while (r < len) {
        const char *nl = memchr(buf + r, '\n', len - r);
        size_t le = nl ? (size_t)(nl - buf) + 1 : len;
        size_t ve = le;
        if (ve > r && buf[ve - 1] == '\n')
            ve--;
        if (ve > r && buf[ve - 1] == '\r')
            ve--;
        const char *colon = memchr(buf + r, ':', ve - r);
        size_t ne = colon ? (size_t)(colon - buf) : r;
        while (ne > r && is_wsp(buf[ne - 1]))
            ne--;
        if (colon != NULL && ne - r == 10 &&
            strncasecmp(buf + r, "set-cookie", 10) == 0) {
            size_t vs = (size_t)(colon - buf) + 1;
            memmove(buf + w, buf + r, vs - r);
            w += vs - r;
            w += cookie_filter(buf + w, buf + vs, ve - vs, host, hlen);
            memmove(buf + w, buf + ve, le - ve);
            w += le - ve;
        } else {
            memmove(buf + w, buf + r, le - r);
            w += le - r;
        }
        r = le;
    }
    return w;
}
