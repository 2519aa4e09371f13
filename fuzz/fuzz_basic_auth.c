/* libFuzzer target for the hub's Basic credentials (tunnel/creds.h) and
 * the strict base64 under them (tunnel/b64.h). The input is an
 * Authorization header value, as the hub hands it over.
 * Invariants:
 * - base64: a decoding that succeeds re-encodes to exactly the input (one
 *   accepted encoding per byte string), and the decoder never writes past
 *   a buffer of the exact capacity it is given (heap, so ASan sees it);
 *   a too small buffer is SL_ETOOBIG, never a partial success;
 * - Basic: a failure leaves user and pass empty; a success gives a user
 *   without ':' and neither part holds a control byte, both fit their
 *   (exactly sized) buffers, and formatting them back and parsing that
 *   gives the same pair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/error.h"
#include "core/b64.h"
#include "tunnel/creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void check_b64(const char *in, size_t len)
{
    size_t full = len / 4 * 3 + 3;
    unsigned char *out = malloc(full);
    if (out == NULL)
        return;
    int n = sl_b64_decode(in, len, out, full);
    if (n >= 0) {
        if ((size_t)n > full)
            abort();
        char *back = malloc(SL_B64_LEN((size_t)n) + 1);
        if (back == NULL) {
            free(out);
            return;
        }
        int m = sl_b64_encode(out, (size_t)n, back, SL_B64_LEN((size_t)n) + 1);
        if (m < 0 || (size_t)m != len || memcmp(back, in, len) != 0)
            abort();
        free(back);
        /* Exactly n bytes of room is enough; one less is SL_ETOOBIG. */
        unsigned char *exact = malloc(n > 0 ? (size_t)n : 1);
        if (exact != NULL) {
            if (sl_b64_decode(in, len, exact, (size_t)n) != n ||
                memcmp(exact, out, (size_t)n) != 0)
                abort();
            if (n > 0 && sl_b64_decode(in, len, exact, (size_t)n - 1) !=
                             SL_ETOOBIG)
                abort();
            free(exact);
        }
    } else if (n != SL_EPARSE && n != SL_ETOOBIG) {
        abort();
    }
    free(out);
}

/* Parses value into heap buffers of exactly ucap/pcap bytes. */
static int parse(const char *value, size_t len, size_t ucap, size_t pcap,
                 char **user, char **pass)
{
    /* malloc(0) may give NULL: ask for one byte, the parser sees cap 0. */
    *user = malloc(ucap > 0 ? ucap : 1);
    *pass = malloc(pcap > 0 ? pcap : 1);
    if (*user == NULL || *pass == NULL) {
        free(*user);
        free(*pass);
        return UV_ENOMEM;
    }
    memset(*user, 'x', ucap > 0 ? ucap : 1);
    memset(*pass, 'x', pcap > 0 ? pcap : 1);
    int rc = sl_basic_auth_parse(value, len, *user, ucap, *pass, pcap);
    if (rc != 0) {
        if (rc != SL_EPARSE && rc != SL_ETOOBIG)
            abort();
        if ((ucap > 0 && (*user)[0] != '\0') ||
            (pcap > 0 && (*pass)[0] != '\0'))
            abort();
        return rc;
    }
    if (memchr(*user, '\0', ucap) == NULL || memchr(*pass, '\0', pcap) == NULL)
        abort();
    if (strchr(*user, ':') != NULL || has_ctl(*user) || has_ctl(*pass))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    check_b64(in, size);

    char *user, *pass;
    int rc = parse(in, size, SL_BASIC_USER_MAX, SL_BASIC_PASS_MAX, &user,
                   &pass);
    if (rc == UV_ENOMEM)
        return 0;
    if (rc == 0) {
        size_t ulen = strlen(user), plen = strlen(pass);
        /* What the hub parsed, formatted and parsed again, is the same. */
        size_t cap = 4 * ((ulen + plen + 1 + 2) / 3) + 7;
        char *fmt = malloc(cap);
        if (fmt != NULL) {
            if (sl_basic_auth_format(user, pass, fmt, cap) != 0)
                abort();
            char *u2, *p2;
            if (parse(fmt, strlen(fmt), ulen + 1, plen + 1, &u2, &p2) == 0) {
                if (strcmp(u2, user) != 0 || strcmp(p2, pass) != 0)
                    abort();
                free(u2);
                free(p2);
            } else {
                abort();
            }
            free(fmt);
        }
        /* One byte less of room for either part is SL_ETOOBIG. */
        char *u3, *p3;
        int r3 = parse(in, size, ulen, plen + 1, &u3, &p3);
        if (r3 != UV_ENOMEM) {
            if (r3 != SL_ETOOBIG)
                abort();
            free(u3);
            free(p3);
        }
        r3 = parse(in, size, ulen + 1, plen, &u3, &p3);
        if (r3 != UV_ENOMEM) {
            if (r3 != SL_ETOOBIG)
                abort();
            free(u3);
            free(p3);
        }
    }
    free(user);
    free(pass);
    return 0;
}
