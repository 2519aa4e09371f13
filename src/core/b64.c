#include "core/b64.h"

#include <stdint.h>

#include "core/error.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sl_b64_encode(const void *in, size_t n, char *out, size_t cap)
{
    const unsigned char *p = in;
    size_t need = SL_B64_LEN(n);
    if (out == NULL || cap < need + 1 || need > INT32_MAX)
        return SL_ETOOBIG;
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (int)o;
}

/* A character's value in an alphabet whose last two are c62 and c63
 * (standard: + and /; url: - and _), or -1. */
static int value_in(char c, char c62, char c63)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == c62)
        return 62;
    if (c == c63)
        return 63;
    return -1;
}

static int value_of(char c)
{
    return value_in(c, '+', '/');
}

int sl_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 != 0 || (len > 0 && in == NULL))
        return SL_EPARSE;
    if (len / 4 * 3 > INT32_MAX)
        return SL_ETOOBIG;
    size_t pad = 0;
    if (len >= 4 && in[len - 1] == '=') {
        pad = 1;
        if (in[len - 2] == '=')
            pad = 2;
    }
    size_t n = len / 4 * 3 - pad;
    if (n > cap || (n > 0 && out == NULL))
        return SL_ETOOBIG;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        for (size_t k = 0; k < 4; k++) {
            /* '=' is allowed only in the padding positions of the last
             * quantum, which were counted above. */
            if (last && in[i + k] == '=' && k >= 4 - pad) {
                v[k] = 0;
                continue;
            }
            v[k] = value_of(in[i + k]);
            if (v[k] < 0)
                return SL_EPARSE;
        }
        uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Non-zero unused bits would give a second spelling of the same
         * bytes; strict parsers refuse them so comparisons stay exact. */
        if (last && pad == 1 && (q & 0xff) != 0)
            return SL_EPARSE;
        if (last && pad == 2 && (q & 0xffff) != 0)
            return SL_EPARSE;
        size_t take = last ? 3 - pad : 3;
        unsigned char b[3] = {(unsigned char)(q >> 16), (unsigned char)(q >> 8),
                              (unsigned char)q};
        for (size_t k = 0; k < take; k++)
            out[o++] = b[k];
    }
    return (int)o;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    return value_in(c, '-', '_');
}

int sl_b64url_encode(const void *in, size_t n, char *out, size_t cap)
{
    const unsigned char *p = in;
    size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (out == NULL || cap < need + 1 || need > INT32_MAX)
        return SL_ETOOBIG;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        uint32_t v = (uint32_t)p[i] << 16;
        if (k > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (k > 2)
            v |= p[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        if (k > 1)
            out[o++] = b64url_alphabet[v >> 6 & 63];
        if (k > 2)
            out[o++] = b64url_alphabet[v & 63];
    }
    out[o] = '\0';
    return (int)o;
}

int sl_b64url_decode(const char *in, size_t len, unsigned char *out,
                     size_t cap)
{
    if (len % 4 == 1 || (len > 0 && in == NULL))
        return SL_EPARSE;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap || need > INT32_MAX)
        return SL_ETOOBIG;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        size_t k = len - i < 4 ? len - i : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int x = j < k ? b64url_value(in[i + j]) : 0;
            if (x < 0)
                return SL_EPARSE;
            v = v << 6 | (uint32_t)x;
        }
        /* The bits a short group does not use must be zero: otherwise
         * two texts would decode to the same bytes, and a token could be
         * changed without changing what it says. */
        if ((k == 2 && (v & 0xffff) != 0) || (k == 3 && (v & 0xff) != 0))
            return SL_EPARSE;
        out[o++] = (unsigned char)(v >> 16);
        if (k > 2)
            out[o++] = (unsigned char)(v >> 8);
        if (k > 3)
            out[o++] = (unsigned char)v;
    }
    return (int)o;
}
