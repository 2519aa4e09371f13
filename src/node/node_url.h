/* URLs a node deals with: a bridge's upstream (`http://host:port`) and its
 * hub (`http://host[:port]` or `https://host[:port]`). Pure: no I/O,
 * no name resolution.
 *
 * The rules, chosen to fail early with a clear message rather than dial
 * something surprising:
 *  - upstream: scheme `http`, `tls` (TLS the upstream terminates: the
 *    hub passes it through by SNI), `tcp` or `udp` (a service the hub
 *    gives a public port), an explicit port 1..65535, no path (a lone
 *    trailing `/` is tolerated and dropped), no user info, query or
 *    fragment.
 *  - hub: scheme `http` or `ws` (port defaults to 80), `https` or `wss`
 *    (443), same other rules.
 * Host: a name ([A-Za-z0-9.-], 1..253 bytes), an IPv4 literal, or an IPv6
 * literal in brackets (stored without them). */
#ifndef SL_NODE_URL_H
#define SL_NODE_URL_H

#include <stddef.h>
#include <stdint.h>

#define SL_NODE_HOST_MAX 256
#define SL_NODE_URL_MAX 300

struct sl_node_url {
    int tls;                      /* 1 for https (hub), tls (upstream) */
    char scheme[8];               /* "http", "https", "tls", "tcp", "udp" */
    char host[SL_NODE_HOST_MAX];  /* without brackets */
    uint16_t port;
};

/* Parse an upstream URL. On failure returns SL_EPARSE and, when err is not
 * NULL, writes a one-line reason (no trailing newline) into err. */
int sl_node_url_parse_upstream(const char *text, struct sl_node_url *out,
                               char *err, size_t errcap);

/* Parse a hub URL. Same error reporting as above. */
int sl_node_url_parse_hub(const char *text, struct sl_node_url *out,
                          char *err, size_t errcap);

/* A bridge may name several hubs sharing one store (docs/scale-out.md):
 * their URLs separated by commas, "http://a:8080,http://b:8080", at most
 * SL_NODE_HUBS_MAX, none twice, the whole under SL_NODE_URL_MAX bytes.
 * Parses each into urls[0..*n). Same error reporting as above. */
#define SL_NODE_HUBS_MAX 8
int sl_node_url_parse_hubs(const char *text, struct sl_node_url *urls,
                           size_t *n, char *err, size_t errcap);

/* The canonical form of a list: each URL as sl_node_url_format writes it,
 * joined by ",". Returns 0 or SL_ETOOBIG. */
int sl_node_url_format_hubs(const struct sl_node_url *urls, size_t n,
                            char *buf, size_t cap);

/* Writes the canonical form "scheme://host:port" (IPv6 bracketed) into buf.
 * Returns 0 or SL_ETOOBIG. */
int sl_node_url_format(const struct sl_node_url *u, char *buf, size_t cap);

/* Writes the value of a Host header: "host:port" (IPv6 bracketed). */
int sl_node_url_host_header(const struct sl_node_url *u, char *buf,
                            size_t cap);

#endif
