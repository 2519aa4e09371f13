/* Socket addresses: formatting, parsing, classification. Pure: no I/O, no
 * name resolution (see net/resolve.h for that).
 *
 * Only AF_INET and AF_INET6 are handled; any other family (or NULL) is
 * refused with UV_EINVAL by the functions that return a code, and is "not
 * private", "not loopback" and "unequal" for the predicates. */
#ifndef SL_ADDR_H
#define SL_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for "[ffff:ffff:...:255.255.255.255%scope]:65535" and a NUL. */
#define SL_ADDR_STRLEN 80

/* Writes "a.b.c.d:port" or "[v6]:port" into buf (NUL-terminated).
 * Returns 0, UV_EINVAL (bad family) or SL_ETOOBIG (cap too small; buf then
 * holds an empty string if cap > 0). */
int sl_addr_format(const struct sockaddr *sa, char *buf, size_t cap);

/* As sl_addr_format but the address only, without brackets or port. */
int sl_addr_format_ip(const struct sockaddr *sa, char *buf, size_t cap);

/* Convenience for log lines: formats into buf and returns buf; on failure
 * the text is "?". buf must hold SL_ADDR_STRLEN bytes. */
const char *sl_addr_str(const struct sockaddr *sa, char buf[SL_ADDR_STRLEN]);

/* Parses a numeric address ("127.0.0.1", "::1", "[::1]") and a port into
 * *out (zeroed first). Returns 0 or SL_EPARSE. */
int sl_addr_parse_ip(const char *ip, uint16_t port,
                     struct sockaddr_storage *out);

/* Parses "a.b.c.d:port" or "[v6]:port" (port 0..65535, decimal). Returns 0
 * or SL_EPARSE. */
int sl_addr_parse(const char *hostport, struct sockaddr_storage *out);

/* Writes "host:port", bracketing host when it contains ':' (an IPv6
 * literal). Returns 0 or SL_ETOOBIG. */
int sl_addr_join_host_port(const char *host, uint16_t port, char *buf,
                           size_t cap);

/* Port in host order; 0 for other families. */
uint16_t sl_addr_port(const struct sockaddr *sa);
void sl_addr_set_port(struct sockaddr *sa, uint16_t port);

/* sizeof the concrete sockaddr; 0 for other families. */
socklen_t sl_addr_len(const struct sockaddr *sa);

/* 1 if a and b have the same family, address and port (and for IPv6 the
 * same scope id); 0 otherwise. */
int sl_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* A hash of family, address and port, for tables keyed by peer. */
uint64_t sl_addr_hash(const struct sockaddr *sa);

/* If sa is an IPv4-mapped IPv6 address (::ffff:a.b.c.d), writes the IPv4
 * form (same port) into *out and returns 1; else returns 0. */
int sl_addr_unmap(const struct sockaddr *sa, struct sockaddr_storage *out);

/* 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
int sl_addr_is_loopback(const struct sockaddr *sa);

/* Private in the sense of the bridge's dial rule: loopback, RFC 1918
 * (10/8, 172.16/12, 192.168/16), link local (169.254/16, fe80::/10),
 * RFC 4193 unique local (fc00::/7), and IPv4-mapped forms of the IPv4
 * ones. Unspecified (0.0.0.0, ::) is not private. */
int sl_addr_is_private(const struct sockaddr *sa);

#endif
