#include "proto/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* v1: "PROXY " ... "\r\n", at most 107 bytes with the CRLF. */
#define V1_MAX 107
static const char v1_prefix[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

/* v2: 12-byte signature, ver_cmd, fam, 16-bit length, then the body. */
#define V2_HDR 16
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
#define V2_ADDR_INET 12  /* 2 x 4 address bytes + 2 x 2 port bytes */
#define V2_ADDR_INET6 36 /* 2 x 16 + 2 x 2 */
#define V2_ADDR_UNIX 216 /* 2 x 108 */

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

int sl_pp_detect(const uint8_t *buf, size_t len)
{
    if (len == 0)
        return 1;
    if (memcmp(buf, v1_prefix, min_size(len, sizeof(v1_prefix))) == 0)
        return 1;
    if (memcmp(buf, v2_sig, min_size(len, sizeof(v2_sig))) == 0)
        return 1;
    return 0;
}

static void set_in(struct sockaddr_storage *ss, const uint8_t addr[4],
                   uint16_t port_net)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, addr, 4);
    sin->sin_port = port_net;
}

static void set_in6(struct sockaddr_storage *ss, const uint8_t addr[16],
                    uint16_t port_net)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, addr, 16);
    sin6->sin6_port = port_net;
}

/* ---- v1 ---------------------------------------------------------------- */

/* Splits off the next token ending at a single space (or at the end when
 * last is set). Two spaces in a row, or a token too long for cap, fail. */
static int next_token(const char **p, const char *end, int last, char *tok,
                      size_t cap)
{
    const char *s = *p, *e = s;

    while (e < end && *e != ' ')
        e++;
    if (e == s || (size_t)(e - s) >= cap)
        return -1;
    if (last ? e != end : e == end)
        return -1;
    memcpy(tok, s, (size_t)(e - s));
    tok[e - s] = '\0';
    *p = last ? e : e + 1;
    return 0;
}

/* The spec's port: decimal 0..65535; we refuse signs, spaces and leading
 * zeros, which no conforming sender emits. */
static int parse_port(const char *s, uint16_t *port_net)
{
    unsigned long v = 0;
    size_t i;

    if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return -1;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5)
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port_net = htons((uint16_t)v);
    return 0;
}

static int parse_v1_line(const char *line, size_t n, struct sl_pp_info *out)
{
    const char *p = line + sizeof(v1_prefix), *end = line + n;
    char proto[8], a_src[INET6_ADDRSTRLEN], a_dst[INET6_ADDRSTRLEN];
    char p_src[8], p_dst[8];
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    int af;

    /* "UNKNOWN" ends the line or is followed by a space and anything,
     * which the receiver ignores. */
    if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 &&
        (end - p == 7 || p[7] == ' ')) {
        out->version = 1;
        out->has_addrs = 0;
        out->stream = 1;
        return 0;
    }
    if (next_token(&p, end, 0, proto, sizeof(proto)) != 0)
        return SL_EPARSE;
    if (strcmp(proto, "TCP4") == 0)
        af = AF_INET;
    else if (strcmp(proto, "TCP6") == 0)
        af = AF_INET6;
    else
        return SL_EPARSE;
    if (next_token(&p, end, 0, a_src, sizeof(a_src)) != 0 ||
        next_token(&p, end, 0, a_dst, sizeof(a_dst)) != 0 ||
        next_token(&p, end, 0, p_src, sizeof(p_src)) != 0 ||
        next_token(&p, end, 1, p_dst, sizeof(p_dst)) != 0)
        return SL_EPARSE;
    if (inet_pton(af, a_src, src) != 1 || inet_pton(af, a_dst, dst) != 1)
        return SL_EPARSE;
    if (parse_port(p_src, &sport) != 0 || parse_port(p_dst, &dport) != 0)
        return SL_EPARSE;

    out->version = 1;
    out->has_addrs = 1;
    out->stream = 1;
    if (af == AF_INET) {
        set_in(&out->src, src, sport);
        set_in(&out->dst, dst, dport);
    } else {
        set_in6(&out->src, src, sport);
        set_in6(&out->dst, dst, dport);
    }
    return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct sl_pp_info *out)
{
    size_t scan = min_size(len, V1_MAX), i;
    int rc;

    if (memcmp(buf, v1_prefix, min_size(len, sizeof(v1_prefix))) != 0)
        return SL_EPARSE;
    for (i = 0; i < scan; i++) {
        /* The line is printable ASCII; refusing the rest early stops a
         * binary stream from being buffered as a would-be header. */
        if (buf[i] == '\r')
            break;
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return SL_EPARSE;
    }
    if (i == scan)
        return len >= V1_MAX ? SL_EPARSE : SL_EINCOMPLETE;
    /* CR at i; the LF must follow within the 107 bytes. */
    if (i + 1 >= V1_MAX)
        return SL_EPARSE;
    if (i + 1 >= len)
        return SL_EINCOMPLETE;
    if (buf[i + 1] != '\n')
        return SL_EPARSE;
    if (i < sizeof(v1_prefix))
        return SL_EPARSE;
    rc = parse_v1_line((const char *)buf, i, out);
    return rc < 0 ? rc : (int)(i + 2);
}

/* ---- v2 ---------------------------------------------------------------- */

/* TLVs are skipped, but the chain must fill the rest of the block exactly:
 * a length that overruns it is a lie about the header. */
static int check_tlvs(const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        if (n - off < 3)
            return SL_EPARSE;
        size_t vlen = ((size_t)p[off + 1] << 8) | p[off + 2];
        if (vlen > n - off - 3)
            return SL_EPARSE;
        off += 3 + vlen;
    }
    return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, struct sl_pp_info *out)
{
    size_t body_len, total;
    uint8_t ver_cmd, fam;
    const uint8_t *body;
    uint16_t sport, dport;

    if (memcmp(buf, v2_sig, min_size(len, sizeof(v2_sig))) != 0)
        return SL_EPARSE;
    /* Judge each byte as soon as it arrives. */
    if (len > 12) {
        ver_cmd = buf[12];
        if ((ver_cmd & 0xF0) != 0x20 || (ver_cmd & 0x0F) > 1)
            return SL_EPARSE;
    }
    if (len > 13) {
        fam = buf[13];
        switch (fam) {
        case 0x00:
        case 0x11:
        case 0x12:
        case 0x21:
        case 0x22:
        case 0x31:
        case 0x32: break;
        default: return SL_EPARSE; /* the spec: other values must be rejected */
        }
    }
    if (len < V2_HDR)
        return SL_EINCOMPLETE;

    ver_cmd = buf[12];
    fam = buf[13];
    body_len = ((size_t)buf[14] << 8) | buf[15];
    total = V2_HDR + body_len;
    if (total > SL_PP_MAX_HEADER)
        return SL_ETOOBIG;

    /* A PROXY header too short for its own addresses can be refused before
     * its body arrives. */
    if ((ver_cmd & 0x0F) == 0x01) {
        size_t need = 0;
        switch (fam >> 4) {
        case 1: need = V2_ADDR_INET; break;
        case 2: need = V2_ADDR_INET6; break;
        case 3: need = V2_ADDR_UNIX; break;
        }
        if (body_len < need)
            return SL_EPARSE;
    }
    if (len < total)
        return SL_EINCOMPLETE;

    body = buf + V2_HDR;
    out->version = 2;
    out->has_addrs = 0;
    out->stream = (fam & 0x0F) == 0x02 ? 0 : 1;
    memset(&out->src, 0, sizeof(out->src));
    memset(&out->dst, 0, sizeof(out->dst));

    /* LOCAL: the real endpoints stand; the block (family, addresses, TLVs)
     * is discarded unread, as the spec says. */
    if ((ver_cmd & 0x0F) == 0x00)
        return (int)total;

    switch (fam >> 4) {
    case 0: /* AF_UNSPEC: unknown protocol, nothing to read. */
        return (int)total;
    case 1:
        memcpy(&sport, body + 8, 2);
        memcpy(&dport, body + 10, 2);
        set_in(&out->src, body, sport);
        set_in(&out->dst, body + 4, dport);
        out->has_addrs = 1;
        if (check_tlvs(body + V2_ADDR_INET, body_len - V2_ADDR_INET) != 0)
            return SL_EPARSE;
        return (int)total;
    case 2:
        memcpy(&sport, body + 32, 2);
        memcpy(&dport, body + 34, 2);
        set_in6(&out->src, body, sport);
        set_in6(&out->dst, body + 16, dport);
        out->has_addrs = 1;
        if (check_tlvs(body + V2_ADDR_INET6, body_len - V2_ADDR_INET6) != 0)
            return SL_EPARSE;
        return (int)total;
    default: /* 3, AF_UNIX: accepted, but no address we can use. */
        if (check_tlvs(body + V2_ADDR_UNIX, body_len - V2_ADDR_UNIX) != 0)
            return SL_EPARSE;
        return (int)total;
    }
}

int sl_pp_parse(const uint8_t *buf, size_t len, struct sl_pp_info *out)
{
    struct sl_pp_info tmp;
    int rc;

    if (len == 0)
        return SL_EINCOMPLETE;
    memset(&tmp, 0, sizeof(tmp));
    if (buf[0] == v1_prefix[0])
        rc = parse_v1(buf, len, &tmp);
    else if (buf[0] == v2_sig[0])
        rc = parse_v2(buf, len, &tmp);
    else
        rc = SL_EPARSE;
    /* *out is touched only on success, so a failed parse leaves the
     * caller's state as it was. */
    if (rc > 0 && out != NULL)
        *out = tmp;
    return rc;
}

/* ---- encoding ---------------------------------------------------------- */

/* Both endpoints as one family: IPv4 if both are IPv4, else IPv6 with any
 * IPv4 side mapped. Returns AF_UNSPEC when either is neither. */
static int common_family(const struct sockaddr *src, const struct sockaddr *dst,
                         uint8_t a_src[16], uint8_t a_dst[16], uint16_t *p_src,
                         uint16_t *p_dst)
{
    const struct sockaddr *sas[2] = {src, dst};
    uint8_t *addrs[2] = {a_src, a_dst};
    uint16_t *ports[2] = {p_src, p_dst};
    int i;

    if (src == NULL || dst == NULL)
        return AF_UNSPEC;
    for (i = 0; i < 2; i++)
        if (sas[i]->sa_family != AF_INET && sas[i]->sa_family != AF_INET6)
            return AF_UNSPEC;
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        for (i = 0; i < 2; i++) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)sas[i];
            memcpy(addrs[i], &sin->sin_addr, 4);
            *ports[i] = sin->sin_port;
        }
        return AF_INET;
    }
    for (i = 0; i < 2; i++) {
        if (sas[i]->sa_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)sas[i];
            memcpy(addrs[i], v4mapped_prefix, 12);
            memcpy(addrs[i] + 12, &sin->sin_addr, 4);
            *ports[i] = sin->sin_port;
        } else {
            const struct sockaddr_in6 *sin6 =
                (const struct sockaddr_in6 *)sas[i];
            memcpy(addrs[i], &sin6->sin6_addr, 16);
            *ports[i] = sin6->sin6_port;
        }
    }
    return AF_INET6;
}

int sl_pp_encode_v2(uint8_t *buf, size_t cap, const struct sockaddr *src,
                    const struct sockaddr *dst, int stream)
{
    uint8_t a_src[16], a_dst[16];
    uint16_t p_src = 0, p_dst = 0;
    size_t alen, body_len;
    uint8_t fam;
    int af;

    af = common_family(src, dst, a_src, a_dst, &p_src, &p_dst);
    switch (af) {
    case AF_INET:
        alen = 4;
        fam = 0x10;
        body_len = V2_ADDR_INET;
        break;
    case AF_INET6:
        alen = 16;
        fam = 0x20;
        body_len = V2_ADDR_INET6;
        break;
    default:
        alen = 0;
        fam = 0x00;
        body_len = 0;
        break;
    }
    if (af != AF_UNSPEC)
        fam |= stream ? 0x01 : 0x02;
    if (buf == NULL || cap < V2_HDR + body_len)
        return SL_ETOOBIG;

    memcpy(buf, v2_sig, sizeof(v2_sig));
    buf[12] = 0x21; /* version 2, PROXY */
    buf[13] = fam;
    buf[14] = (uint8_t)(body_len >> 8);
    buf[15] = (uint8_t)body_len;
    if (alen != 0) {
        uint8_t *p = buf + V2_HDR;
        memcpy(p, a_src, alen);
        memcpy(p + alen, a_dst, alen);
        memcpy(p + 2 * alen, &p_src, 2);
        memcpy(p + 2 * alen + 2, &p_dst, 2);
    }
    return (int)(V2_HDR + body_len);
}

int sl_pp_encode_v1(char *buf, size_t cap, const struct sockaddr *src,
                    const struct sockaddr *dst)
{
    uint8_t a_src[16], a_dst[16];
    uint16_t p_src = 0, p_dst = 0;
    char s_src[INET6_ADDRSTRLEN], s_dst[INET6_ADDRSTRLEN];
    int af, n;

    if (buf == NULL || cap == 0)
        return SL_ETOOBIG;
    af = common_family(src, dst, a_src, a_dst, &p_src, &p_dst);
    if (af == AF_UNSPEC) {
        n = snprintf(buf, cap, "PROXY UNKNOWN\r\n");
    } else {
        if (inet_ntop(af, a_src, s_src, sizeof(s_src)) == NULL ||
            inet_ntop(af, a_dst, s_dst, sizeof(s_dst)) == NULL)
            return SL_EPARSE;
        n = snprintf(buf, cap, "PROXY %s %s %s %u %u\r\n",
                     af == AF_INET ? "TCP4" : "TCP6", s_src, s_dst,
                     (unsigned)ntohs(p_src), (unsigned)ntohs(p_dst));
    }
    if (n < 0 || (size_t)n >= cap || n > V1_MAX) {
        buf[0] = '\0';
        return SL_ETOOBIG;
    }
    return n;
}
