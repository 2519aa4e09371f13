#include "node/node_url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"

/* "'<text>': <why>", the text cut to its first 64 bytes so that the
 * reason always fits a caller's buffer. */
static int fail(char *err, size_t errcap, const char *text, const char *why)
{
    if (err != NULL && errcap > 0) {
        size_t n = strlen(text);
        snprintf(err, errcap, "'%.*s%s': %s", n > 64 ? 64 : (int)n, text,
                 n > 64 ? "..." : "", why);
    }
    return SL_EPARSE;
}

static int host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/* Parses "host[:port][/]" (the part after "scheme://"). port_required
 * says whether a missing port is an error; default_port fills it if not. */
static int parse_authority(const char *text, const char *p, int port_required,
                           uint16_t default_port, struct sl_node_url *out,
                           char *err, size_t errcap)
{
    const char *host_start, *host_end;
    const char *zone = NULL, *zone_end = NULL;
    if (*p == '[') {
        host_start = p + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL)
            return fail(err, errcap, text, "unterminated '[' in host");
        const char *pct = memchr(host_start, '%', (size_t)(host_end -
                                                           host_start));
        if (pct != NULL) {
            /* A link-local address names its interface: [fe80::1%25eth0]
             * (RFC 6874), or [fe80::1%eth0] as people type it. */
            zone = pct + 1;
            if (host_end - zone >= 2 && zone[0] == '2' && zone[1] == '5')
                zone += 2;
            zone_end = host_end;
            if (zone == zone_end || zone_end - zone > 15)
                return fail(err, errcap, text, "bad zone in IPv6 host");
            for (const char *q = zone; q < zone_end; q++)
                if (!host_char_ok(*q))
                    return fail(err, errcap, text, "bad zone in IPv6 host");
            host_end = pct;
        }
        /* What inet_pton takes as an IPv6 address, and nothing else: the
         * bracket holds no name, no IPv4 and no junk a resolver might
         * read another way. */
        size_t alen = (size_t)(host_end - host_start);
        char lit[INET6_ADDRSTRLEN];
        unsigned char bin[16];
        if (alen == 0)
            return fail(err, errcap, text, "missing host");
        if (alen >= sizeof(lit))
            return fail(err, errcap, text, "bad IPv6 literal in host "
                                           "(too long)");
        memcpy(lit, host_start, alen);
        lit[alen] = '\0';
        if (inet_pton(AF_INET6, lit, bin) != 1)
            return fail(err, errcap, text, "bad IPv6 literal in host");
        p = zone_end ? zone_end + 1 : host_end + 1;
    } else {
        host_start = p;
        while (*p != '\0' && *p != ':' && *p != '/') {
            if (*p == '@')
                return fail(err, errcap, text, "user info is not allowed");
            if (*p == '?' || *p == '#')
                return fail(err, errcap, text,
                            "query and fragment are not allowed");
            if (!host_char_ok(*p))
                return fail(err, errcap, text, "bad character in host");
            p++;
        }
        host_end = p;
    }
    size_t hlen = (size_t)(host_end - host_start);
    size_t zlen = zone != NULL ? (size_t)(zone_end - zone) : 0;
    if (hlen == 0)
        return fail(err, errcap, text, "missing host");
    if (hlen > 253)
        return fail(err, errcap, text, "host is too long");
    /* host, '%', zone and the NUL must fit out->host: checked here, before
     * any byte is written, whatever the checks above let through. */
    if (hlen + (zone != NULL ? 1 + zlen : 0) >= sizeof(out->host))
        return fail(err, errcap, text, "host is too long");
    /* Host names are case-insensitive: one spelling, so that
     * HTTP://LOCALHOST:3000 names the same bridge as http://localhost:3000. */
    for (size_t k = 0; k < hlen; k++) {
        char ch = host_start[k];
        out->host[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    out->host[hlen] = '\0';
    if (zone != NULL) { /* "fe80::1%eth0", as getaddrinfo takes it; an
                           interface name keeps its case */
        out->host[hlen] = '%';
        memcpy(out->host + hlen + 1, zone, zlen);
        out->host[hlen + 1 + zlen] = '\0';
    }

    if (*p == ':') {
        p++;
        if (*p < '0' || *p > '9')
            return fail(err, errcap, text, "port must be a number 1-65535");
        char *end;
        long port = strtol(p, &end, 10);
        if (end - p > 5 || port < 1 || port > 65535)
            return fail(err, errcap, text, "port must be a number 1-65535");
        out->port = (uint16_t)port;
        p = end;
    } else if (port_required) {
        return fail(err, errcap, text,
                    "an explicit port is required (http://host:port)");
    } else {
        out->port = default_port;
    }
    if (*p == '/' && p[1] == '\0')
        p++;
    if (*p == '?' || *p == '#')
        return fail(err, errcap, text, "query and fragment are not allowed");
    if (*p != '\0')
        return fail(err, errcap, text,
                    *p == '/' ? "a path is not allowed (http://host:port)"
                              : "unexpected text after the port");
    return 0;
}

int sl_node_url_parse_upstream(const char *text, struct sl_node_url *out,
                               char *err, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0')
        return fail(err, errcap, "", "empty URL");
    if (strlen(text) >= SL_NODE_URL_MAX)
        return fail(err, errcap, "...", "URL is too long");
    if (strncasecmp(text, "tls://", 6) == 0) {
        /* TLS the upstream terminates itself: the hub passes it through
         * by SNI and the node relays the bytes as they are. */
        int rc = parse_authority(text, text + 6, 1, 0, out, err, errcap);
        out->tls = 1;
        snprintf(out->scheme, sizeof(out->scheme), "tls");
        return rc;
    }
    static const char *const streams[] = {"tcp", "udp"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(streams[i]);
        if (strncasecmp(text, streams[i], n) == 0 &&
            strncmp(text + n, "://", 3) == 0) {
            /* A TCP or UDP service: a public stream port on the hub. */
            int rc = parse_authority(text, text + n + 3, 1, 0, out, err,
                                     errcap);
            snprintf(out->scheme, sizeof(out->scheme), "%s", streams[i]);
            return rc;
        }
    }
    if (strncasecmp(text, "http://", 7) != 0)
        return fail(err, errcap, text,
                    "the upstream must be http://, tls://, tcp:// or "
                    "udp://host:port");
    int rc = parse_authority(text, text + 7, 1, 0, out, err, errcap);
    snprintf(out->scheme, sizeof(out->scheme), "http");
    return rc;
}

int sl_node_url_parse_hub(const char *text, struct sl_node_url *out,
                          char *err, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0')
        return fail(err, errcap, "", "empty URL");
    if (strlen(text) >= SL_NODE_URL_MAX)
        return fail(err, errcap, "...", "URL is too long");
    int rc;
    if (strncasecmp(text, "https://", 8) == 0 ||
        strncasecmp(text, "wss://", 6) == 0) {
        size_t skip = text[0] == 'h' || text[0] == 'H' ? 8 : 6;
        rc = parse_authority(text, text + skip, 0, 443, out, err, errcap);
        out->tls = 1;
        snprintf(out->scheme, sizeof(out->scheme), "https");
        return rc;
    }
    if (strncasecmp(text, "http://", 7) != 0 &&
        strncasecmp(text, "ws://", 5) != 0)
        return fail(err, errcap, text, "the hub must be http://host[:port] "
                    "or https://host[:port]");
    size_t skip = text[0] == 'h' || text[0] == 'H' ? 7 : 5;
    rc = parse_authority(text, text + skip, 0, 80, out, err, errcap);
    snprintf(out->scheme, sizeof(out->scheme), "http");
    return rc;
}

/* Writes the host as a URL has it: brackets around an IPv6 literal, its
 * zone (if any, and if with_zone) as "%25zone". */
static int format_host(const struct sl_node_url *u, int with_zone,
                       char *buf, size_t cap)
{
    int v6 = strchr(u->host, ':') != NULL;
    const char *pct = strchr(u->host, '%');
    int hl = pct ? (int)(pct - u->host) : (int)strlen(u->host);
    const char *zone = with_zone && pct ? pct + 1 : "";
    int n = snprintf(buf, cap, "%s%.*s%s%s%s:%u", v6 ? "[" : "", hl, u->host,
                     zone[0] ? "%25" : "", zone, v6 ? "]" : "",
                     (unsigned)u->port);
    return n < 0 || (size_t)n >= cap ? SL_ETOOBIG : 0;
}

int sl_node_url_host_header(const struct sl_node_url *u, char *buf,
                            size_t cap)
{
    /* The zone means something on this machine only: not sent. */
    return format_host(u, 0, buf, cap);
}

int sl_node_url_format(const struct sl_node_url *u, char *buf, size_t cap)
{
    char scheme[16];
    snprintf(scheme, sizeof(scheme), "%s://",
             u->scheme[0] ? u->scheme : u->tls ? "https" : "http");
    size_t sl = strlen(scheme);
    if (cap <= sl)
        return SL_ETOOBIG;
    memcpy(buf, scheme, sl);
    return format_host(u, 1, buf + sl, cap - sl);
}

int sl_node_url_parse_hubs(const char *text, struct sl_node_url *urls,
                           size_t *n, char *err, size_t errcap)
{
    *n = 0;
    if (text == NULL || *text == '\0')
        return fail(err, errcap, "", "empty URL");
    if (strlen(text) >= SL_NODE_URL_MAX)
        return fail(err, errcap, "...", "the list of hubs is too long");
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char one[SL_NODE_URL_MAX];
        memcpy(one, p, len);
        one[len] = '\0';
        if (*n == SL_NODE_HUBS_MAX)
            return fail(err, errcap, one, "at most 8 hubs");
        int rc = sl_node_url_parse_hub(one, &urls[*n], err, errcap);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < *n; i++) {
            if (urls[i].port == urls[*n].port &&
                urls[i].tls == urls[*n].tls &&
                strcasecmp(urls[i].host, urls[*n].host) == 0)
                return fail(err, errcap, one, "this hub is listed twice");
        }
        (*n)++;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int sl_node_url_format_hubs(const struct sl_node_url *urls, size_t n,
                            char *buf, size_t cap)
{
    size_t off = 0;
    if (cap == 0)
        return SL_ETOOBIG;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            if (off + 2 > cap)
                return SL_ETOOBIG;
            buf[off++] = ',';
            buf[off] = '\0';
        }
        int rc = sl_node_url_format(&urls[i], buf + off, cap - off);
        if (rc != 0)
            return rc;
        off += strlen(buf + off);
    }
    return 0;
}
