#include "net/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"

int sl_addr_format_ip(const struct sockaddr *sa, char *buf, size_t cap)
{
    if (cap > 0)
        buf[0] = '\0';
    if (sa == NULL)
        return UV_EINVAL;
    char tmp[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, tmp, sizeof(tmp)) == NULL)
            return UV_EINVAL;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, tmp, sizeof(tmp)) == NULL)
            return UV_EINVAL;
    } else {
        return UV_EINVAL;
    }
    int n = snprintf(buf, cap, "%s", tmp);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return SL_ETOOBIG;
    }
    return 0;
}

int sl_addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (cap > 0)
        buf[0] = '\0';
    int err = sl_addr_format_ip(sa, ip, sizeof(ip));
    if (err != 0)
        return err;
    int n;
    if (sa->sa_family == AF_INET6)
        n = snprintf(buf, cap, "[%s]:%u", ip, sl_addr_port(sa));
    else
        n = snprintf(buf, cap, "%s:%u", ip, sl_addr_port(sa));
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return SL_ETOOBIG;
    }
    return 0;
}

const char *sl_addr_str(const struct sockaddr *sa, char buf[SL_ADDR_STRLEN])
{
    if (sl_addr_format(sa, buf, SL_ADDR_STRLEN) != 0)
        snprintf(buf, SL_ADDR_STRLEN, "?");
    return buf;
}

int sl_addr_parse_ip(const char *ip, uint16_t port,
                     struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ip == NULL)
        return SL_EPARSE;
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return 0;
    }
    /* Strip one pair of brackets: "[::1]" is how people write v6 hosts. */
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(ip);
    if (len >= 2 && ip[0] == '[' && ip[len - 1] == ']') {
        if (len - 2 >= sizeof(tmp))
            return SL_EPARSE;
        memcpy(tmp, ip + 1, len - 2);
        tmp[len - 2] = '\0';
        ip = tmp;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return SL_EPARSE;
}

int sl_addr_parse(const char *hostport, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (hostport == NULL)
        return SL_EPARSE;
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || colon == hostport)
        return SL_EPARSE;
    size_t hlen = (size_t)(colon - hostport);
    /* A bare IPv6 address has several colons and needs brackets. */
    if (hostport[0] != '[' && memchr(hostport, ':', hlen) != NULL)
        return SL_EPARSE;
    if (hostport[0] == '[' && hostport[hlen - 1] != ']')
        return SL_EPARSE;
    char host[INET6_ADDRSTRLEN + 2];
    if (hlen >= sizeof(host))
        return SL_EPARSE;
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';

    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return SL_EPARSE;
    char *end;
    errno = 0;
    long port = strtol(p, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        return SL_EPARSE;
    if (host[0] == '[') {
        /* Brackets only around IPv6. */
        struct in_addr v4;
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET, host + 1, &v4) == 1)
            return SL_EPARSE;
        host[hlen - 1] = ']';
    }
    return sl_addr_parse_ip(host, (uint16_t)port, out);
}

int sl_addr_join_host_port(const char *host, uint16_t port, char *buf,
                           size_t cap)
{
    int n;
    if (strchr(host, ':') != NULL && host[0] != '[')
        n = snprintf(buf, cap, "[%s]:%u", host, port);
    else
        n = snprintf(buf, cap, "%s:%u", host, port);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return SL_ETOOBIG;
    }
    return 0;
}

uint16_t sl_addr_port(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void sl_addr_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

socklen_t sl_addr_len(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (sa->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

int sl_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a == NULL || b == NULL || a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
    }
    return 0;
}

/* FNV-1a: session tables are keyed by addresses an attacker chooses only
 * within the limits of their own address space, and the tables are bounded,
 * so a simple hash is enough. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t sl_addr_hash(const struct sockaddr *sa)
{
    uint64_t h = 14695981039346656037ULL;
    if (sa == NULL)
        return h;
    h = fnv(h, &sa->sa_family, sizeof(sa->sa_family));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        h = fnv(h, &in->sin_addr, sizeof(in->sin_addr));
        h = fnv(h, &in->sin_port, sizeof(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        h = fnv(h, &in6->sin6_addr, sizeof(in6->sin6_addr));
        h = fnv(h, &in6->sin6_port, sizeof(in6->sin6_port));
    }
    return h;
}

int sl_addr_unmap(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    if (sa == NULL || sa->sa_family != AF_INET6)
        return 0;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
        return 0;
    /* Built aside and copied in: callers read *out as a sockaddr, and a
     * store through a sockaddr_in pointer is one clang may move past
     * that read (strict aliasing); memcpy is a store of every type. */
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = in6->sin6_port;
    memcpy(&in.sin_addr, &in6->sin6_addr.s6_addr[12], 4);
    memset(out, 0, sizeof(*out));
    memcpy(out, &in, sizeof(in));
    return 1;
}

static int v4_is_loopback(uint32_t a) { return (a >> 24) == 127; }

static int v4_is_private(uint32_t a)
{
    return v4_is_loopback(a) || (a >> 24) == 10 ||
           (a >> 20) == ((172u << 4) | 1) || /* 172.16.0.0/12 */
           (a >> 16) == ((192u << 8) | 168) ||
           (a >> 16) == ((169u << 8) | 254);
}

/* 1 if sa is a loopback address, or with want_private also a private,
 * link-local or unique-local one. IPv4-mapped IPv6 addresses count as
 * the IPv4 address they carry. */
static int addr_is_local(const struct sockaddr *sa, int want_private)
{
    /* The mapped address is read where it lies: going through a
     * sockaddr_storage written as sockaddr_in and read as sockaddr let
     * clang -O2 read the family before the write (strict aliasing), and
     * ::ffff:127.0.0.1 counted as neither loopback nor private. */
    uint32_t a;
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return want_private ? v4_is_private(a) : v4_is_loopback(a);
    }
    if (sa->sa_family != AF_INET6)
        return 0;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6)) {
        memcpy(&a, &in6->s6_addr[12], 4);
        a = ntohl(a);
        return want_private ? v4_is_private(a) : v4_is_loopback(a);
    }
    if (IN6_IS_ADDR_LOOPBACK(in6))
        return 1;
    if (!want_private)
        return 0;
    const uint8_t *b = in6->s6_addr;
    if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 */
        return 1;
    return b[0] == 0xfe && (b[1] & 0xc0) == 0x80; /* fe80::/10 */
}

int sl_addr_is_loopback(const struct sockaddr *sa)
{
    return addr_is_local(sa, 0);
}

int sl_addr_is_private(const struct sockaddr *sa)
{
    return addr_is_local(sa, 1);
}
