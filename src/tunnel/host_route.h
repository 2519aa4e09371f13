/* Routing of the hub's public listener by Host header (docs/protocol.md,
 * "Listeners and routing on the hub"). Pure: no I/O. */
#ifndef SL_TUNNEL_HOST_ROUTE_H
#define SL_TUNNEL_HOST_ROUTE_H

#include <stddef.h>

#include "tunnel/identity.h"

/* Decides what a request's Host header value names. host[0..len) need not
 * be NUL-terminated; it may carry a ":port" (1-5 digits), upper case,
 * surrounding spaces/tabs and a trailing dot; an IPv6 literal ("[::1]",
 * "[::1]:8080") or an IPv4 address is never under a domain. domain is a
 * NUL-terminated DNS name ("localhost", "tunnel.example.com"; case and a
 * trailing dot do not matter) of at most 253 characters.
 *
 * Returns
 * - 0: host is exactly "<identity>.<domain>" with one label that is a valid
 *   identity once lower-cased; identity receives it (lower case, NUL).
 * - SL_ENOTFOUND: host is not under domain (the apex itself, an IP
 *   literal, another domain, an empty or malformed Host): the hub serves
 *   the request itself (its /_sluice/v1/ endpoints or 404).
 * - SL_EPARSE: host is under domain but the part before it is not one
 *   valid identity label (e.g. "www.<domain>", "a.b.<domain>", a bad port):
 *   the hub answers "404 Proxy not available".
 * - UV_EINVAL: domain or identity NULL, domain empty, over-long, with an
 *   empty or over-long (63) label or a character no DNS name has.
 * identity is an empty string unless 0 is returned. */
int sl_host_route(const char *host, size_t len, const char *domain,
                  char identity[SL_IDENTITY_LEN + 1]);

#endif
