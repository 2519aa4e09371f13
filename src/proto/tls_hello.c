#include "proto/tls_hello.h"

#include <string.h>

#include "core/error.h"

/* RFC 8446 5.1: a TLSPlaintext fragment holds at most 2^14 bytes, and
 * handshake records are never empty. */
#define REC_HDR 5
#define REC_MAX 16384
#define REC_HANDSHAKE 0x16
#define HS_HDR 4
#define HS_CLIENT_HELLO 1

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define SNI_HOST_NAME 0
#define LABEL_MAX 63

/* Reads the handshake byte stream out of the records that carry it,
 * without copying them together: the hello's fields may straddle record
 * boundaries anywhere. hs_off counts handshake bytes taken so far, and
 * every read is checked against the end of the field it belongs to before
 * any byte is taken, so a bad length fails as soon as it is read, whatever
 * follows it. */
struct reader {
    const uint8_t *p;
    size_t n;
    size_t pos;      /* next unread byte of p */
    size_t rec_left; /* bytes of the current record not yet taken */
    size_t hs_off;   /* handshake bytes taken */
};

/* Moves onto the next record's body. Judges each header byte that has
 * arrived before asking for more, so "GET /" fails on its first byte. */
static int next_record(struct reader *r)
{
    size_t have = r->n - r->pos, len;
    const uint8_t *h = r->p + r->pos;

    if (have >= 1 && h[0] != REC_HANDSHAKE)
        return SL_EPARSE;
    if (have >= 2 && h[1] != 0x03)
        return SL_EPARSE;
    if (have < REC_HDR)
        return SL_EINCOMPLETE;
    len = (size_t)h[3] << 8 | h[4];
    if (len == 0 || len > REC_MAX)
        return SL_EPARSE;
    r->pos += REC_HDR;
    r->rec_left = len;
    return 0;
}

/* Takes k handshake bytes into dst (or skips them when dst is NULL);
 * SL_EPARSE if they would run past end, the handshake offset where the
 * enclosing field stops. */
static int take(struct reader *r, size_t end, size_t k, uint8_t *dst)
{
    size_t chunk;
    int rc;

    if (k > end - r->hs_off)
        return SL_EPARSE;
    while (k > 0) {
        if (r->rec_left == 0 && (rc = next_record(r)) != 0)
            return rc;
        if (r->pos == r->n)
            return SL_EINCOMPLETE;
        chunk = r->n - r->pos;
        if (chunk > r->rec_left)
            chunk = r->rec_left;
        if (chunk > k)
            chunk = k;
        if (dst) {
            memcpy(dst, r->p + r->pos, chunk);
            dst += chunk;
        }
        r->pos += chunk;
        r->rec_left -= chunk;
        r->hs_off += chunk;
        k -= chunk;
    }
    return 0;
}

/* Takes a big-endian integer of k (1..3) bytes. */
static int take_uint(struct reader *r, size_t end, size_t k, size_t *v)
{
    uint8_t b[3];
    size_t i;
    int rc;

    if ((rc = take(r, end, k, b)) != 0)
        return rc;
    *v = 0;
    for (i = 0; i < k; i++)
        *v = *v << 8 | b[i];
    return 0;
}

/* Takes a length prefix of k bytes and returns in *field_end where the
 * field it announces stops; it must fit in its enclosing field. */
static int take_len(struct reader *r, size_t end, size_t k, size_t *field_end)
{
    size_t len;
    int rc;

    if ((rc = take_uint(r, end, k, &len)) != 0)
        return rc;
    if (len > end - r->hs_off)
        return SL_EPARSE;
    *field_end = r->hs_off + len;
    return 0;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Lower-cases name in place, strips one trailing dot and checks it is a
 * host name: LDH labels of 1..63 bytes, no '-' at either end of a label. */
static int check_host_name(char *name, size_t len)
{
    size_t i, label = 0;

    if (len > 0 && name[len - 1] == '.')
        name[--len] = '\0';
    if (len == 0)
        return SL_EPARSE;
    for (i = 0; i <= len; i++) {
        char c = i < len ? lower(name[i]) : '.';

        if (c == '.') {
            if (label == 0 || label > LABEL_MAX || name[i - 1] == '-')
                return SL_EPARSE;
            label = 0;
            continue;
        }
        if (!is_ldh(c) || (c == '-' && label == 0))
            return SL_EPARSE;
        name[i] = c;
        label++;
    }
    return 0;
}

/* RFC 6066 3. Like OpenSSL, we take exactly one entry, of type host_name:
 * no other type was ever defined, and a list of several gives no single
 * name to route on. */
static int parse_server_name(struct reader *r, size_t end,
                             struct sl_tls_hello *h)
{
    size_t list_end, name_end, type, len;
    int rc;

    if ((rc = take_len(r, end, 2, &list_end)) != 0)
        return rc;
    if (list_end != end)
        return SL_EPARSE;
    if ((rc = take_uint(r, list_end, 1, &type)) != 0)
        return rc;
    if (type != SNI_HOST_NAME)
        return SL_EPARSE;
    if ((rc = take_len(r, list_end, 2, &name_end)) != 0)
        return rc;
    len = name_end - r->hs_off;
    if (name_end != list_end || len == 0 || len > SL_TLS_HELLO_NAME_MAX)
        return SL_EPARSE;
    if ((rc = take(r, name_end, len, (uint8_t *)h->server_name)) != 0)
        return rc;
    h->server_name[len] = '\0';
    return check_host_name(h->server_name, len);
}

/* RFC 7301 3.1: a non-empty list of non-empty names. */
static int parse_alpn(struct reader *r, size_t end, struct sl_tls_hello *h)
{
    uint8_t name[255];
    size_t list_end, name_end, len;
    int rc;

    if ((rc = take_len(r, end, 2, &list_end)) != 0)
        return rc;
    if (list_end != end || list_end == r->hs_off)
        return SL_EPARSE;
    while (r->hs_off < list_end) {
        if ((rc = take_len(r, list_end, 1, &name_end)) != 0)
            return rc;
        len = name_end - r->hs_off;
        if (len == 0)
            return SL_EPARSE;
        if ((rc = take(r, name_end, len, name)) != 0)
            return rc;
        if (h->nalpn < SL_TLS_HELLO_ALPN_MAX && len < SL_TLS_HELLO_ALPN_LEN &&
            !memchr(name, '\0', len)) {
            memcpy(h->alpn[h->nalpn], name, len);
            h->alpn[h->nalpn][len] = '\0';
            h->nalpn++;
        }
    }
    return 0;
}

static int parse_extensions(struct reader *r, size_t end,
                            struct sl_tls_hello *h)
{
    /* One bit per extension type: RFC 8446 4.2 forbids repeats, and a
     * repeated server_name would leave two names to choose from. */
    uint8_t seen[65536 / 8];
    size_t ext_end, type;
    int rc;

    memset(seen, 0, sizeof(seen));
    while (r->hs_off < end) {
        if ((rc = take_uint(r, end, 2, &type)) != 0)
            return rc;
        if (seen[type / 8] & (1u << (type % 8)))
            return SL_EPARSE;
        seen[type / 8] |= (uint8_t)(1u << (type % 8));
        if ((rc = take_len(r, end, 2, &ext_end)) != 0)
            return rc;
        if (type == EXT_SERVER_NAME)
            rc = parse_server_name(r, ext_end, h);
        else if (type == EXT_ALPN)
            rc = parse_alpn(r, ext_end, h);
        else
            rc = take(r, ext_end, ext_end - r->hs_off, NULL);
        if (rc != 0)
            return rc;
        if (r->hs_off != ext_end)
            return SL_EPARSE;
    }
    return 0;
}

/* RFC 8446 4.1.2 (and RFC 5246 7.4.1.2, where extensions may be absent). */
static int parse_client_hello(struct reader *r, size_t end,
                              struct sl_tls_hello *h)
{
    size_t v, field_end;
    int rc;

    if ((rc = take_uint(r, end, 2, &v)) != 0)
        return rc;
    if (v >> 8 != 0x03)
        return SL_EPARSE;
    h->legacy_version = (uint16_t)v;
    if ((rc = take(r, end, 32, NULL)) != 0) /* random */
        return rc;
    if ((rc = take_len(r, end, 1, &field_end)) != 0) /* session id */
        return rc;
    if (field_end - r->hs_off > 32)
        return SL_EPARSE;
    if ((rc = take(r, field_end, field_end - r->hs_off, NULL)) != 0)
        return rc;
    if ((rc = take_len(r, end, 2, &field_end)) != 0) /* cipher suites */
        return rc;
    v = field_end - r->hs_off;
    if (v < 2 || v % 2 != 0)
        return SL_EPARSE;
    if ((rc = take(r, field_end, v, NULL)) != 0)
        return rc;
    if ((rc = take_len(r, end, 1, &field_end)) != 0) /* compression */
        return rc;
    if (field_end == r->hs_off)
        return SL_EPARSE;
    if ((rc = take(r, field_end, field_end - r->hs_off, NULL)) != 0)
        return rc;
    if (r->hs_off == end)
        return 0; /* no extensions: a bare TLS 1.2 hello */
    if ((rc = take_len(r, end, 2, &field_end)) != 0)
        return rc;
    if (field_end != end)
        return SL_EPARSE;
    return parse_extensions(r, end, h);
}

int sl_tls_hello_parse(const uint8_t *p, size_t n, struct sl_tls_hello *out)
{
    struct reader r = {.p = p, .n = n};
    struct sl_tls_hello h;
    size_t type, len;
    int rc;

    memset(&h, 0, sizeof(h));
    if (n == 0)
        return SL_EINCOMPLETE;
    if ((rc = take_uint(&r, HS_HDR, 1, &type)) != 0)
        return rc;
    if (type != HS_CLIENT_HELLO)
        return SL_EPARSE;
    if ((rc = take_uint(&r, HS_HDR, 3, &len)) != 0)
        return rc;
    if (len > SL_TLS_HELLO_MAX - HS_HDR)
        return SL_ETOOBIG;
    if ((rc = parse_client_hello(&r, HS_HDR + len, &h)) != 0)
        return rc;
    if (r.hs_off != HS_HDR + len)
        return SL_EPARSE;
    /* The client sends nothing else until the server answers, and never in
     * the hello's record: bytes there mean it is not a real first flight. */
    if (r.rec_left != 0)
        return SL_EPARSE;
    if (out)
        *out = h;
    return 0;
}

int sl_tls_hello_is_tls(const uint8_t *p, size_t n)
{
    if (n >= 1 && p[0] != REC_HANDSHAKE)
        return 0;
    if (n >= 2 && p[1] != 0x03)
        return 0;
    return 1;
}
