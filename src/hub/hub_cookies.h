/* Cookie isolation (docs/hub.md): tenants are siblings under one
 * domain, so a cookie with Domain=<domain> set by one reaches every
 * other; the hub removes such attributes from the response heads it
 * relays, and the cookie stays with the host that set it. Pure: text in,
 * text out, no I/O. */
#ifndef SL_HUB_COOKIES_H
#define SL_HUB_COOKIES_H

#include <stddef.h>

/* Whether isolation is on for a hub serving identities under domain
 * (NUL-terminated, a trailing dot does not matter). mode is one of
 * SL_HUB_COOKIES_* (hub/hub.h): ON and OFF decide alone; AUTO is on
 * unless domain is localhost or under .localhost (one developer's
 * machine: nothing to isolate from). Returns 1 on, 0 off. */
int sl_cookies_isolation(int mode, const char *domain);

/* Rewrites the response head buf[0..len) in place for isolation of host
 * (host[0..hlen), "<identity>.<domain>", not NUL-terminated): each
 * Set-Cookie loses the Domain attributes that name a parent of host, or
 * that the hub cannot read as a plain name. First, as RFC 9112 allows a
 * proxy, each bare CR and each obs-fold becomes spaces, so the hub, the
 * parser and the browser read the same lines. Returns the new length,
 * never more than len. */
size_t sl_cookies_isolate(char *buf, size_t len, const char *host, size_t hlen);

#endif
