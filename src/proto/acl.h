/* Access-control lists of ip: and cidr: rules, IPv4 and IPv6. Pure: no I/O.
 *
 * Decision: a source that matches any deny rule is denied; otherwise, if
 * there are allow rules, it must match one; with no allow rules it is
 * allowed. IPv4-mapped IPv6 sources (::ffff:a.b.c.d) are matched as IPv4,
 * and rules inside ::ffff:0:0/96 (e.g. "cidr:::ffff:10.0.0.0/104") are
 * stored as IPv4 rules (10.0.0.0/8). Other IPv6 rules, ::/0 included, match
 * only IPv6 sources. Sources of another family (AF_UNIX, NULL) match no rule.
 * Rules are normalized: host bits beyond the prefix are cleared. */
#ifndef SL_ACL_H
#define SL_ACL_H

#include <stddef.h>
#include <sys/socket.h>

struct sl_acl; /* opaque */

/* An ACL holds at most this many rules; sl_acl_add refuses more. */
#define SL_ACL_MAX_RULES 4096

/* Returns a new, empty ACL (allows everything), or NULL on no memory. */
struct sl_acl *sl_acl_new(void);
void sl_acl_free(struct sl_acl *acl); /* NULL is fine */

/* Adds one rule: "ip:ADDR" or "cidr:ADDR/BITS" (ADDR IPv4 or IPv6).
 * With bare_ok set, "ADDR" and "ADDR/BITS" without a prefix are taken too
 * (used for trusted-source lists). ADDR is strict (inet_pton: no zone id,
 * no brackets, no leading zeros in IPv4); BITS is 0..32 or 0..128 in
 * decimal digits. err may be NULL. Returns 0, SL_EPARSE (err gets a reason
 * naming the accepted forms "ip:ADDR or cidr:ADDR/BITS"; also when the ACL
 * is full) or UV_ENOMEM. */
int sl_acl_add(struct sl_acl *acl, int allow, const char *rule, int bare_ok,
               char *err, size_t errlen);

/* Returns 1 if sa is allowed, 0 if denied. A NULL acl allows all. */
int sl_acl_allows(const struct sl_acl *acl, const struct sockaddr *sa);

/* Number of rules (allow + deny). */
size_t sl_acl_count(const struct sl_acl *acl);

#endif
