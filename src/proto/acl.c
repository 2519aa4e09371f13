#include "proto/acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/error.h"

#define ACCEPTED_FORMS "ip:ADDR or cidr:ADDR/BITS"

/* One rule, normalized: host bits beyond `bits` are zero, and rules inside
 * ::ffff:0:0/96 are stored as IPv4 so they meet mapped sources too. */
struct acl_rule {
    uint8_t allow;
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bits;
    uint8_t addr[16];
};

struct sl_acl {
    struct acl_rule *rules;
    size_t n, cap;
    size_t n_allow;
};

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};

struct sl_acl *sl_acl_new(void)
{
    return calloc(1, sizeof(struct sl_acl));
}

void sl_acl_free(struct sl_acl *acl)
{
    if (acl == NULL)
        return;
    free(acl->rules);
    free(acl);
}

size_t sl_acl_count(const struct sl_acl *acl)
{
    return acl == NULL ? 0 : acl->n;
}

static void mask_host_bits(uint8_t *addr, unsigned addr_len, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;

    if (full >= addr_len)
        return;
    if (rem != 0) {
        addr[full] &= (uint8_t)(0xff00u >> rem);
        full++;
    }
    memset(addr + full, 0, addr_len - full);
}

static int prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;

    if (memcmp(a, net, full) != 0)
        return 0;
    if (rem == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff00u >> rem);
    return (a[full] & mask) == net[full];
}

static int parse_err(char *err, size_t errlen, const char *rule,
                     const char *reason)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen,
                 "bad acl rule \"%.64s\": %s; accepted forms: " ACCEPTED_FORMS,
                 rule, reason);
    return SL_EPARSE;
}

/* Digits only, no sign, no spaces: strtol would take " +8" and "8 ". */
static int parse_bits(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (s[0] == '\0')
        return -1;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 3)
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int sl_acl_add(struct sl_acl *acl, int allow, const char *rule, int bare_ok,
               char *err, size_t errlen)
{
    struct acl_rule r;
    char addr[INET6_ADDRSTRLEN];
    const char *body, *slash;
    int want_bits;
    size_t addr_len;
    unsigned bits;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (acl == NULL || rule == NULL)
        return parse_err(err, errlen, rule ? rule : "", "no rule");

    if (strncmp(rule, "ip:", 3) == 0) {
        body = rule + 3;
        want_bits = 0;
    } else if (strncmp(rule, "cidr:", 5) == 0) {
        body = rule + 5;
        want_bits = 1;
    } else if (bare_ok) {
        body = rule;
        want_bits = -1; /* either */
    } else {
        return parse_err(err, errlen, rule, "unknown rule kind");
    }

    slash = strchr(body, '/');
    if (slash != NULL && want_bits == 0)
        return parse_err(err, errlen, rule,
                         "ip: takes one address; use cidr: for a prefix");
    if (slash == NULL && want_bits == 1)
        return parse_err(err, errlen, rule, "cidr: needs /BITS");
    addr_len = slash != NULL ? (size_t)(slash - body) : strlen(body);
    if (addr_len == 0)
        return parse_err(err, errlen, rule, "missing address");
    if (addr_len >= sizeof(addr))
        return parse_err(err, errlen, rule, "address too long");
    memcpy(addr, body, addr_len);
    addr[addr_len] = '\0';

    memset(&r, 0, sizeof(r));
    r.allow = allow ? 1 : 0;
    if (inet_pton(AF_INET, addr, r.addr) == 1) {
        r.family = AF_INET;
        r.bits = 32;
    } else if (inet_pton(AF_INET6, addr, r.addr) == 1) {
        r.family = AF_INET6;
        r.bits = 128;
    } else {
        return parse_err(err, errlen, rule, "not an IPv4 or IPv6 address");
    }

    if (slash != NULL) {
        if (parse_bits(slash + 1, r.bits, &bits) != 0)
            return parse_err(err, errlen, rule,
                             r.family == AF_INET
                                 ? "prefix length must be 0..32"
                                 : "prefix length must be 0..128");
        r.bits = (uint8_t)bits;
    }
    mask_host_bits(r.addr, r.family == AF_INET ? 4 : 16, r.bits);

    /* A rule inside ::ffff:0:0/96 names IPv4 hosts; store it as IPv4 so it
     * matches the same sources whether they arrive mapped or not. */
    if (r.family == AF_INET6 && r.bits >= 96 &&
        memcmp(r.addr, v4mapped_prefix, 12) == 0) {
        memmove(r.addr, r.addr + 12, 4);
        memset(r.addr + 4, 0, 12);
        r.family = AF_INET;
        r.bits = (uint8_t)(r.bits - 96);
    }

    if (acl->n >= SL_ACL_MAX_RULES)
        return parse_err(err, errlen, rule, "too many rules");
    if (acl->n == acl->cap) {
        size_t ncap = acl->cap == 0 ? 8 : acl->cap * 2;
        struct acl_rule *nr = realloc(acl->rules, ncap * sizeof(*nr));
        if (nr == NULL)
            return UV_ENOMEM;
        acl->rules = nr;
        acl->cap = ncap;
    }
    acl->rules[acl->n++] = r;
    if (r.allow)
        acl->n_allow++;
    return 0;
}

int sl_acl_allows(const struct sl_acl *acl, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family = AF_UNSPEC;
    size_t i;

    if (acl == NULL || acl->n == 0)
        return 1;

    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memcpy(addr, &sin->sin_addr, 4);
        family = AF_INET;
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a6 = sin6->sin6_addr.s6_addr;
        if (memcmp(a6, v4mapped_prefix, 12) == 0) {
            memcpy(addr, a6 + 12, 4);
            family = AF_INET;
        } else {
            memcpy(addr, a6, 16);
            family = AF_INET6;
        }
    }
    /* Any other source (none, AF_UNIX) matches no rule: it passes only an
     * ACL without allow rules. */

    if (family != AF_UNSPEC) {
        for (i = 0; i < acl->n; i++) {
            const struct acl_rule *r = &acl->rules[i];
            if (!r->allow && r->family == family &&
                prefix_match(addr, r->addr, r->bits))
                return 0;
        }
    }
    if (acl->n_allow == 0)
        return 1;
    if (family == AF_UNSPEC)
        return 0;
    for (i = 0; i < acl->n; i++) {
        const struct acl_rule *r = &acl->rules[i];
        if (r->allow && r->family == family &&
            prefix_match(addr, r->addr, r->bits))
            return 1;
    }
    return 0;
}
