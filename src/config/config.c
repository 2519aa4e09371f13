#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <yaml.h>

#include "core/error.h"
#include "core/rate.h"
#include "core/size.h"
#include "net/addr.h"
#include "proto/acl.h"

#define MAX_SHOWN_VALUE 64      /* characters of a bad value quoted back */
#define MAX_NAME_LEN 64         /* route names */
#define MAX_HOST_LEN 253
#define MAX_CONNECTIONS 1000000
#define MAX_DURATION_MS (7ull * 24 * 3600 * 1000)

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_PP_TIMEOUT_MS 10000
#define DEFAULT_UDP_IDLE_TIMEOUT_MS SL_ROUTE_DEFAULT_UDP_IDLE_MS
#define DEFAULT_UDP_SWEEP_INTERVAL_MS 60000

#define SCHEMES "tcp, tcp4, tcp6, udp, udp4, udp6"
#define DURATION_FORMS                                                         \
    "an integer of seconds or NUMBER UNIT pairs with UNIT ms, s, m or h "     \
    "(e.g. 500ms, 10s, 1m30s), more than 0 and at most 168h"
#define ROUTE_FIELDS                                                           \
    "scheme, bind, host, port, acl, proxy_protocol, proxy_protocol_trusted, " \
    "relay_proxy_protocol_header, max_connections, "                          \
    "max_connections_per_source, max_sessions_per_prefix, connect_timeout, " \
    "proxy_protocol_timeout, tcp_idle_timeout, udp_idle_timeout, "           \
    "udp_unreplied_timeout, udp_sweep_interval, agent"
#define AGENT_FIELDS                                                           \
    "address, ca, cert, key, health_interval, health_timeout, "             \
    "unhealthy_after, healthy_after"
#define MAX_AGENTS 256

/* State of one load: the parsed document and where errors go. */
struct loader {
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    const char *section; /* "hub" or "node" being read, or NULL */
    const char *route; /* route being read, for error lines; may be NULL */
    const char *field; /* field being read; may be NULL */
};

/* Writes s (len bytes) as a double-quoted, one-line, bounded string:
 * control and non-ASCII bytes become \xNN so an error stays one line. */
static void quote(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    size_t i;

    if (outlen < 8) {
        if (outlen > 0)
            out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (i = 0; i < len && i < MAX_SHOWN_VALUE; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Leave room for the widest escape, "...", the quote and NUL. */
        if (o + 9 >= outlen)
            break;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* Formats one error line: [SECTION: ][route "R": ][field "F": ]MESSAGE (line L,
 * column C). Returns SL_ECONFIG so callers can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static int
fail(struct loader *l, const yaml_node_t *at, const char *fmt, ...)
{
    char qname[MAX_SHOWN_VALUE * 4 + 8];
    size_t o = 0;
    int n;
    va_list ap;

    if (l->err == NULL || l->errlen == 0)
        return SL_ECONFIG;
    l->err[0] = '\0';
    if (l->section != NULL) {
        n = snprintf(l->err, l->errlen, "%s: ", l->section);
        if (n > 0)
            o = (size_t)n < l->errlen ? (size_t)n : l->errlen - 1;
    }
    if (l->route != NULL && o < l->errlen) {
        quote(l->route, strlen(l->route), qname, sizeof(qname));
        n = snprintf(l->err + o, l->errlen - o, "route %s: ", qname);
        if (n > 0)
            o += (size_t)n < l->errlen - o ? (size_t)n : l->errlen - o - 1;
    }
    if (l->field != NULL && o < l->errlen) {
        n = snprintf(l->err + o, l->errlen - o, "field \"%s\": ", l->field);
        if (n > 0)
            o += (size_t)n < l->errlen - o ? (size_t)n : l->errlen - o - 1;
    }
    if (o < l->errlen) {
        va_start(ap, fmt);
        n = vsnprintf(l->err + o, l->errlen - o, fmt, ap);
        va_end(ap);
        if (n > 0)
            o += (size_t)n < l->errlen - o ? (size_t)n : l->errlen - o - 1;
    }
    if (at != NULL && o < l->errlen)
        snprintf(l->err + o, l->errlen - o, " (line %zu, column %zu)",
                 at->start_mark.line + 1, at->start_mark.column + 1);
    return SL_ECONFIG;
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a value";
    }
}

static int is_null(const yaml_node_t *n)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    s = (const char *)n->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* Scalars are NUL-terminated by libyaml, but may hold NUL bytes inside
 * (from "\0" escapes): refuse those so C string handling sees all of it. */
static int get_scalar(struct loader *l, const yaml_node_t *n, const char **out,
                      const char *expected)
{
    char q[MAX_SHOWN_VALUE * 4 + 8];
    const char *s;

    *out = "";
    if (n->type != YAML_SCALAR_NODE)
        return fail(l, n, "expected %s, got %s", expected, node_kind(n));
    s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        quote(s, n->data.scalar.length, q, sizeof(q));
        return fail(l, n, "%s contains a NUL byte; expected %s", q, expected);
    }
    *out = s;
    return 0;
}

/* q must hold MAX_SHOWN_VALUE * 4 + 8 bytes. */
#define QUOTE_LEN (MAX_SHOWN_VALUE * 4 + 8)
static const char *quoted(const char *s, char *q)
{
    quote(s, strlen(s), q, QUOTE_LEN);
    return q;
}

/* Decimal digits only: strtoul would take " +1", "-1" and "1 ". */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (s[0] == '\0')
        return SL_EPARSE;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SL_EPARSE;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return SL_EPARSE;
    }
    *out = v;
    return 0;
}

int sl_config_parse_port(const char *s, uint16_t *listen, uint16_t *target)
{
    const char *colon;
    char first[8];
    uint64_t l, t;
    size_t n;

    if (s == NULL)
        return SL_EPARSE;
    colon = strchr(s, ':');
    if (colon == NULL) {
        if (parse_uint(s, 65535, &t) != 0 || t == 0)
            return SL_EPARSE;
        l = t;
    } else {
        n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof(first))
            return SL_EPARSE;
        memcpy(first, s, n);
        first[n] = '\0';
        if (parse_uint(first, 65535, &l) != 0)
            return SL_EPARSE;
        if (parse_uint(colon + 1, 65535, &t) != 0 || t == 0)
            return SL_EPARSE;
    }
    if (listen != NULL)
        *listen = (uint16_t)l;
    if (target != NULL)
        *target = (uint16_t)t;
    return 0;
}

int sl_config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t total = 0;
    uint64_t v, mult;
    size_t i = 0;

    if (s == NULL || s[0] == '\0')
        return SL_EPARSE;
    if (parse_uint(s, MAX_DURATION_MS / 1000, &v) == 0) {
        total = v * 1000;
        goto check;
    }
    while (s[i] != '\0') {
        size_t digits = 0;
        v = 0;
        while (s[i] >= '0' && s[i] <= '9') {
            if (++digits > 12)
                return SL_EPARSE;
            v = v * 10 + (uint64_t)(s[i++] - '0');
        }
        if (digits == 0)
            return SL_EPARSE;
        if (s[i] == 'm' && s[i + 1] == 's') {
            mult = 1;
            i += 2;
        } else if (s[i] == 's') {
            mult = 1000;
            i++;
        } else if (s[i] == 'm') {
            mult = 60 * 1000;
            i++;
        } else if (s[i] == 'h') {
            mult = 3600 * 1000;
            i++;
        } else {
            return SL_EPARSE;
        }
        /* v has at most 12 digits and mult at most 3.6e6: no overflow. */
        total += v * mult;
        if (total > MAX_DURATION_MS)
            return SL_EPARSE;
    }
check:
    if (total == 0 || total > MAX_DURATION_MS)
        return SL_EPARSE;
    *ms = total;
    return 0;
}

const char *sl_config_scheme_name(const struct sl_route_config *r)
{
    static const char *const names[2][3] = {
        {"tcp", "tcp4", "tcp6"},
        {"udp", "udp4", "udp6"},
    };
    unsigned s = r->scheme == SL_SCHEME_UDP ? 1 : 0;
    unsigned f = r->family == SL_FAMILY_V4 ? 1
                 : r->family == SL_FAMILY_V6 ? 2
                                             : 0;
    return names[s][f];
}

static const char *pp_name(enum sl_pp_mode m)
{
    switch (m) {
    case SL_PP_MIXED: return "mixed";
    case SL_PP_REQUIRED: return "required";
    default: return "disabled";
    }
}

/* Appends to buf at *o, keeping it NUL-terminated and *o < len. */
__attribute__((format(printf, 4, 5))) static void
append(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*o + 1 >= len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *o, len - *o, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *o += (size_t)n < len - *o ? (size_t)n : len - *o - 1;
}

const char *sl_config_route_describe(const struct sl_route_config *r,
                                     char *buf, size_t len)
{
    size_t o = 0;
    int bind6, host6;

    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    if (r == NULL)
        return buf;
    bind6 = r->bind != NULL && strchr(r->bind, ':') != NULL;
    host6 = r->host != NULL && strchr(r->host, ':') != NULL;
    append(buf, len, &o, "%s: %s %s%s%s:%u -> %s%s%s:%u",
           r->name ? r->name : "?", sl_config_scheme_name(r),
           bind6 ? "[" : "", r->bind ? r->bind : "?", bind6 ? "]" : "",
           (unsigned)r->listen_port, host6 ? "[" : "",
           r->host ? r->host : "?", host6 ? "]" : "",
           (unsigned)r->target_port);
    if (r->acl != NULL)
        append(buf, len, &o, ", acl: %zu rule%s", sl_acl_count(r->acl),
               sl_acl_count(r->acl) == 1 ? "" : "s");
    if (r->proxy_protocol != SL_PP_DISABLED) {
        append(buf, len, &o, ", proxy_protocol: %s", pp_name(r->proxy_protocol));
        if (r->pp_trusted_default)
            append(buf, len, &o, " from loopback only");
        else if (r->pp_trusted != NULL)
            append(buf, len, &o, " from %zu trusted source rule%s",
                   sl_acl_count(r->pp_trusted),
                   sl_acl_count(r->pp_trusted) == 1 ? "" : "s");
    }
    if (r->relay_proxy_protocol_header)
        append(buf, len, &o, ", relay_proxy_protocol_header");
    if (r->agent != NULL)
        append(buf, len, &o, ", through agent %s", r->agent);
    if (r->max_connections != 0 &&
        r->max_connections != SL_ROUTE_DEFAULT_MAX_CONNECTIONS)
        append(buf, len, &o, ", max_connections: %u", r->max_connections);
    if (r->scheme == SL_SCHEME_TCP && r->max_connections_per_source != 0 &&
        r->max_connections_per_source != SL_ROUTE_DEFAULT_MAX_PER_SOURCE)
        append(buf, len, &o, ", max_connections_per_source: %u",
               r->max_connections_per_source);
    if (r->scheme == SL_SCHEME_UDP && r->max_sessions_per_prefix != 0 &&
        r->max_sessions_per_prefix != SL_ROUTE_DEFAULT_MAX_PER_PREFIX)
        append(buf, len, &o, ", max_sessions_per_prefix: %u",
               r->max_sessions_per_prefix);
    return buf;
}

/* ---- route fields ---- */

/* Bits in struct route_state.seen, one per field, to refuse repeats. */
enum field_id {
    F_SCHEME, F_BIND, F_HOST, F_PORT, F_ACL, F_PP, F_PP_TRUSTED, F_RELAY,
    F_MAXCONN, F_CONNECT_TIMEOUT, F_PP_TIMEOUT, F_UDP_IDLE, F_UDP_SWEEP,
    F_MAXCONN_SRC, F_MAXSESS_PREFIX, F_TCP_IDLE, F_UDP_UNREPLIED, F_AGENT,
    F_COUNT
};

struct route_state {
    struct sl_route_config *r;
    unsigned seen;
    int have_scheme, have_port;
    const yaml_node_t *port_node;
    const yaml_node_t *pp_node;
    const yaml_node_t *bind_node;
    const yaml_node_t *tcp_only_node, *udp_only_node;
    const char *tcp_only_field, *udp_only_field;
};

static int f_scheme(struct loader *l, struct route_state *st,
                    const yaml_node_t *v)
{
    static const struct {
        const char *name;
        enum sl_scheme scheme;
        enum sl_family family;
    } schemes[] = {
        {"tcp", SL_SCHEME_TCP, SL_FAMILY_ANY},
        {"tcp4", SL_SCHEME_TCP, SL_FAMILY_V4},
        {"tcp6", SL_SCHEME_TCP, SL_FAMILY_V6},
        {"udp", SL_SCHEME_UDP, SL_FAMILY_ANY},
        {"udp4", SL_SCHEME_UDP, SL_FAMILY_V4},
        {"udp6", SL_SCHEME_UDP, SL_FAMILY_V6},
    };
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, "one of " SCHEMES)) != 0)
        return rc;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strcmp(s, schemes[i].name) == 0) {
            st->r->scheme = schemes[i].scheme;
            st->r->family = schemes[i].family;
            st->have_scheme = 1;
            return 0;
        }
    }
    return fail(l, v, "%s is not one of " SCHEMES, quoted(s, q));
}

/* Stores the address in canonical text form. */
static int f_bind(struct loader *l, struct route_state *st,
                  const yaml_node_t *v)
{
    static const char forms[] =
        "an IP address literal (e.g. 0.0.0.0, 127.0.0.1, ::, ::1)";
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];
    char q[QUOTE_LEN];
    const char *s;
    int af, rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (inet_pton(AF_INET, s, a) == 1)
        af = AF_INET;
    else if (inet_pton(AF_INET6, s, a) == 1)
        af = AF_INET6;
    else
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    if (inet_ntop(af, a, text, sizeof(text)) == NULL)
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    free(st->r->bind);
    st->r->bind = strdup(text);
    if (st->r->bind == NULL)
        return UV_ENOMEM;
    st->bind_node = v;
    return 0;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

/* RFC 1123 host names (underscores allowed, as container names have them);
 * a name whose last label is all digits must be a valid IPv4 address. */
static int valid_hostname(const char *s)
{
    size_t len = strlen(s);
    size_t start = 0, i;
    const char *last = s;
    size_t last_len = 0;

    if (len == 0 || len > MAX_HOST_LEN)
        return 0;
    if (s[len - 1] == '.')
        len--;
    if (len == 0)
        return 0;
    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            size_t n = i - start;
            if (n == 0 || n > 63 || s[start] == '-' || s[i - 1] == '-')
                return 0;
            last = s + start;
            last_len = n;
            start = i + 1;
            continue;
        }
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return !all_digits(last, last_len);
}

static int f_host(struct loader *l, struct route_state *st,
                  const yaml_node_t *v)
{
    static const char forms[] =
        "a host name (e.g. localhost, db.internal) or an IP address";
    unsigned char a[16];
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (inet_pton(AF_INET, s, a) != 1 && inet_pton(AF_INET6, s, a) != 1 &&
        !valid_hostname(s))
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    free(st->r->host);
    st->r->host = strdup(s);
    return st->r->host == NULL ? UV_ENOMEM : 0;
}

static int f_port(struct loader *l, struct route_state *st,
                  const yaml_node_t *v)
{
    static const char forms[] =
        "[LISTEN:]TARGET with TARGET 1-65535 and LISTEN 0-65535 "
        "(e.g. 2222:22, 53, 0:8080)";
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (sl_config_parse_port(s, &st->r->listen_port, &st->r->target_port))
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    st->have_port = 1;
    st->port_node = v;
    return 0;
}

/* Adds each item of a list node to *acl (created on first use). */
static int add_rules(struct loader *l, struct sl_acl **acl, int allow,
                     int bare_ok, const yaml_node_t *v, const char *forms)
{
    char reason[256];
    char q[QUOTE_LEN];
    yaml_node_item_t *it;
    const char *s;
    int rc;

    if (v->type != YAML_SEQUENCE_NODE)
        return fail(l, v, "expected a list of %s, got %s", forms,
                    node_kind(v));
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const yaml_node_t *item = yaml_document_get_node(l->doc, *it);
        if (item == NULL)
            return fail(l, v, "broken list");
        if ((rc = get_scalar(l, item, &s, forms)) != 0)
            return rc;
        /* Checked here so that the ACL's own message, which quotes the
         * rule raw, can never break the one-line rule. */
        for (const char *p = s; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                return fail(l, item, "%s is not %s", quoted(s, q), forms);
        if (*acl == NULL && (*acl = sl_acl_new()) == NULL)
            return UV_ENOMEM;
        reason[0] = '\0';
        rc = sl_acl_add(*acl, allow, s, bare_ok, reason, sizeof(reason));
        if (rc == UV_ENOMEM)
            return rc;
        if (rc != 0)
            return fail(l, item, "%s", reason[0] ? reason : "bad rule");
    }
    return 0;
}

static int f_acl(struct loader *l, struct route_state *st,
                 const yaml_node_t *v)
{
    static const char forms[] = "ip:ADDR or cidr:ADDR/BITS rules";
    yaml_node_pair_t *p;
    unsigned seen = 0;
    int rc;

    if (v->type != YAML_MAPPING_NODE)
        return fail(l, v, "expected a mapping with allow: and deny: lists "
                    "of %s, got %s", forms, node_kind(v));
    for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *val = yaml_document_get_node(l->doc, p->value);
        char q[QUOTE_LEN];
        const char *ks;
        unsigned bit;
        int allow;

        if (k == NULL || val == NULL)
            return fail(l, v, "broken mapping");
        if ((rc = get_scalar(l, k, &ks, "allow or deny")) != 0)
            return rc;
        if (strcmp(ks, "allow") == 0) {
            allow = 1;
            bit = 1;
            l->field = "acl.allow";
        } else if (strcmp(ks, "deny") == 0) {
            allow = 0;
            bit = 2;
            l->field = "acl.deny";
        } else {
            return fail(l, k, "unknown key %s; accepted keys: allow, deny",
                        quoted(ks, q));
        }
        if (seen & bit)
            return fail(l, k, "appears twice");
        seen |= bit;
        if (is_null(val))
            continue;
        if ((rc = add_rules(l, &st->r->acl, allow, 0, val, forms)) != 0)
            return rc;
    }
    l->field = "acl";
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return SL_EPARSE;
}

static int f_pp(struct loader *l, struct route_state *st,
                const yaml_node_t *v)
{
    static const char forms[] = "one of disabled, mixed, required (or false)";
    char q[QUOTE_LEN];
    const char *s;
    int b, rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (strcmp(s, "disabled") == 0 || (parse_bool(s, &b) == 0 && b == 0))
        st->r->proxy_protocol = SL_PP_DISABLED;
    else if (strcmp(s, "mixed") == 0)
        st->r->proxy_protocol = SL_PP_MIXED;
    else if (strcmp(s, "required") == 0)
        st->r->proxy_protocol = SL_PP_REQUIRED;
    else
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    st->pp_node = v;
    return 0;
}

static int f_pp_trusted(struct loader *l, struct route_state *st,
                        const yaml_node_t *v)
{
    return add_rules(l, &st->r->pp_trusted, 1, 1, v,
                     "addresses or CIDRs (ADDR, ADDR/BITS, ip:ADDR or "
                     "cidr:ADDR/BITS)");
}

static int f_relay(struct loader *l, struct route_state *st,
                   const yaml_node_t *v)
{
    static const char forms[] = "true or false";
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (parse_bool(s, &st->r->relay_proxy_protocol_header) != 0)
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    return 0;
}

/* A count cap: 0 means the default, dflt. */
static int count_cap(struct loader *l, const yaml_node_t *v, unsigned dflt,
                     unsigned *out)
{
    char forms[96];
    char q[QUOTE_LEN];
    const char *s;
    uint64_t n;
    int rc;

    snprintf(forms, sizeof(forms),
             "an integer from 1 to 1000000 (0 or nothing: the default, %u)",
             dflt);
    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (parse_uint(s, MAX_CONNECTIONS, &n) != 0)
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    *out = n == 0 ? dflt : (unsigned)n;
    return 0;
}

static int f_maxconn(struct loader *l, struct route_state *st,
                     const yaml_node_t *v)
{
    return count_cap(l, v, SL_ROUTE_DEFAULT_MAX_CONNECTIONS,
                     &st->r->max_connections);
}

static int f_maxconn_src(struct loader *l, struct route_state *st,
                         const yaml_node_t *v)
{
    st->tcp_only_node = v;
    st->tcp_only_field = "max_connections_per_source";
    return count_cap(l, v, SL_ROUTE_DEFAULT_MAX_PER_SOURCE,
                     &st->r->max_connections_per_source);
}

static int f_maxsess_prefix(struct loader *l, struct route_state *st,
                            const yaml_node_t *v)
{
    st->udp_only_node = v;
    st->udp_only_field = "max_sessions_per_prefix";
    return count_cap(l, v, SL_ROUTE_DEFAULT_MAX_PER_PREFIX,
                     &st->r->max_sessions_per_prefix);
}

static int duration(struct loader *l, const yaml_node_t *v, uint64_t *ms)
{
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, "a duration: " DURATION_FORMS)) != 0)
        return rc;
    if (sl_config_parse_duration(s, ms) != 0)
        return fail(l, v, "%s is not a duration: " DURATION_FORMS,
                    quoted(s, q));
    return 0;
}

static int f_connect_timeout(struct loader *l, struct route_state *st,
                             const yaml_node_t *v)
{
    return duration(l, v, &st->r->connect_timeout_ms);
}

static int f_pp_timeout(struct loader *l, struct route_state *st,
                        const yaml_node_t *v)
{
    return duration(l, v, &st->r->proxy_protocol_timeout_ms);
}

static int f_udp_idle(struct loader *l, struct route_state *st,
                      const yaml_node_t *v)
{
    return duration(l, v, &st->r->udp_idle_timeout_ms);
}

static int f_tcp_idle(struct loader *l, struct route_state *st,
                      const yaml_node_t *v)
{
    st->tcp_only_node = v;
    st->tcp_only_field = "tcp_idle_timeout";
    return duration(l, v, &st->r->tcp_idle_timeout_ms);
}

static int f_udp_unreplied(struct loader *l, struct route_state *st,
                           const yaml_node_t *v)
{
    st->udp_only_node = v;
    st->udp_only_field = "udp_unreplied_timeout";
    return duration(l, v, &st->r->udp_unreplied_timeout_ms);
}

static int f_udp_sweep(struct loader *l, struct route_state *st,
                       const yaml_node_t *v)
{
    return duration(l, v, &st->r->udp_sweep_interval_ms);
}

/* A name as routes and agents have them. */
static int valid_route_name(const char *s);

static int f_agent(struct loader *l, struct route_state *st,
                   const yaml_node_t *v)
{
    char q[QUOTE_LEN];
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, "the name of an agent of agents:")) != 0)
        return rc;
    if (!valid_route_name(s))
        return fail(l, v, "%s is not an agent name (1-64 letters, digits, "
                    "'.', '_' or '-')", quoted(s, q));
    free(st->r->agent);
    st->r->agent = strdup(s);
    return st->r->agent == NULL ? UV_ENOMEM : 0;
}

typedef int (*field_fn)(struct loader *, struct route_state *,
                        const yaml_node_t *);

static const struct {
    const char *name;
    field_fn fn;
} fields[F_COUNT] = {
    [F_SCHEME] = {"scheme", f_scheme},
    [F_BIND] = {"bind", f_bind},
    [F_HOST] = {"host", f_host},
    [F_PORT] = {"port", f_port},
    [F_ACL] = {"acl", f_acl},
    [F_PP] = {"proxy_protocol", f_pp},
    [F_PP_TRUSTED] = {"proxy_protocol_trusted", f_pp_trusted},
    [F_RELAY] = {"relay_proxy_protocol_header", f_relay},
    [F_MAXCONN] = {"max_connections", f_maxconn},
    [F_CONNECT_TIMEOUT] = {"connect_timeout", f_connect_timeout},
    [F_PP_TIMEOUT] = {"proxy_protocol_timeout", f_pp_timeout},
    [F_UDP_IDLE] = {"udp_idle_timeout", f_udp_idle},
    [F_UDP_SWEEP] = {"udp_sweep_interval", f_udp_sweep},
    [F_MAXCONN_SRC] = {"max_connections_per_source", f_maxconn_src},
    [F_MAXSESS_PREFIX] = {"max_sessions_per_prefix", f_maxsess_prefix},
    [F_TCP_IDLE] = {"tcp_idle_timeout", f_tcp_idle},
    [F_UDP_UNREPLIED] = {"udp_unreplied_timeout", f_udp_unreplied},
    [F_AGENT] = {"agent", f_agent},
};

/* Letters, digits, '.', '_', '-': route names end up in logs, the API and
 * metrics labels, where anything else needs quoting. */
static int valid_route_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MAX_NAME_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int load_route(struct loader *l, const yaml_node_t *rn,
                      struct sl_route_config *r)
{
    struct route_state st = {.r = r};
    yaml_node_pair_t *p;
    int rc;

    if (rn->type != YAML_MAPPING_NODE)
        return fail(l, rn, "expected a mapping of fields (%s), got %s",
                    ROUTE_FIELDS, is_null(rn) ? "nothing" : node_kind(rn));
    for (p = rn->data.mapping.pairs.start; p < rn->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        char q[QUOTE_LEN];
        const char *ks;
        size_t f;

        if (k == NULL || v == NULL)
            return fail(l, rn, "broken mapping");
        if ((rc = get_scalar(l, k, &ks, "a field name")) != 0)
            return rc;
        for (f = 0; f < F_COUNT; f++)
            if (strcmp(ks, fields[f].name) == 0)
                break;
        if (f == F_COUNT)
            return fail(l, k, "unknown field %s; accepted fields: %s",
                        quoted(ks, q), ROUTE_FIELDS);
        l->field = fields[f].name;
        if (st.seen & (1u << f))
            return fail(l, k, "appears twice");
        st.seen |= 1u << f;
        /* An empty value keeps the default (required fields are then
         * reported missing below). */
        if (!is_null(v) && (rc = fields[f].fn(l, &st, v)) != 0)
            return rc;
        l->field = NULL;
    }

    if (!st.have_scheme) {
        l->field = "scheme";
        return fail(l, rn, "is required: one of " SCHEMES);
    }
    if (!st.have_port) {
        l->field = "port";
        return fail(l, rn, "is required: [LISTEN:]TARGET (e.g. 2222:22)");
    }
    if (r->bind == NULL) {
        r->bind = strdup(r->family == SL_FAMILY_V6 ? "::" : "0.0.0.0");
        if (r->bind == NULL)
            return UV_ENOMEM;
    } else if (r->family != SL_FAMILY_ANY) {
        int is6 = strchr(r->bind, ':') != NULL;
        if (is6 != (r->family == SL_FAMILY_V6)) {
            char q[QUOTE_LEN];
            l->field = "bind";
            return fail(l, st.bind_node, "%s is not an %s address, as "
                        "scheme %s requires", quoted(r->bind, q),
                        is6 ? "IPv4" : "IPv6", sl_config_scheme_name(r));
        }
    }
    if (r->host == NULL && (r->host = strdup("localhost")) == NULL)
        return UV_ENOMEM;
    if (r->scheme == SL_SCHEME_UDP && r->proxy_protocol != SL_PP_DISABLED) {
        l->field = "proxy_protocol";
        return fail(l, st.pp_node, "\"%s\" is not supported on %s routes: "
                    "accepting PROXY headers works on tcp only (use "
                    "disabled; relay_proxy_protocol_header works on both)",
                    pp_name(r->proxy_protocol), sl_config_scheme_name(r));
    }
    if (r->scheme == SL_SCHEME_UDP && st.tcp_only_node != NULL) {
        l->field = st.tcp_only_field;
        return fail(l, st.tcp_only_node, "applies to tcp routes only, not "
                    "%s (udp routes have max_sessions_per_prefix, "
                    "udp_idle_timeout and udp_unreplied_timeout)",
                    sl_config_scheme_name(r));
    }
    if (r->scheme == SL_SCHEME_TCP && st.udp_only_node != NULL) {
        l->field = st.udp_only_field;
        return fail(l, st.udp_only_node, "applies to udp routes only, not "
                    "%s (tcp routes have max_connections_per_source and "
                    "tcp_idle_timeout)",
                    sl_config_scheme_name(r));
    }
    /* A PROXY header names the client the ACL, the per-source caps and
     * the upstream believe; from a source nobody vouched for it would be
     * a forged address. Without a list, only a proxy on this machine is
     * believed (docs/configuration.md). */
    if (r->proxy_protocol != SL_PP_DISABLED && r->pp_trusted == NULL) {
        if ((r->pp_trusted = sl_acl_new()) == NULL ||
            sl_acl_add(r->pp_trusted, 1, "cidr:127.0.0.0/8", 0, NULL, 0) != 0 ||
            sl_acl_add(r->pp_trusted, 1, "ip:::1", 0, NULL, 0) != 0)
            return UV_ENOMEM;
        r->pp_trusted_default = 1;
    }
    return 0;
}

static void set_defaults(struct sl_route_config *r)
{
    r->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    r->proxy_protocol_timeout_ms = DEFAULT_PP_TIMEOUT_MS;
    r->udp_idle_timeout_ms = DEFAULT_UDP_IDLE_TIMEOUT_MS;
    r->tcp_idle_timeout_ms = SL_ROUTE_DEFAULT_TCP_IDLE_MS;
    r->udp_unreplied_timeout_ms = SL_ROUTE_DEFAULT_UDP_UNREPLIED_MS;
    r->max_connections = SL_ROUTE_DEFAULT_MAX_CONNECTIONS;
    r->max_connections_per_source = SL_ROUTE_DEFAULT_MAX_PER_SOURCE;
    r->max_sessions_per_prefix = SL_ROUTE_DEFAULT_MAX_PER_PREFIX;
    r->udp_sweep_interval_ms = DEFAULT_UDP_SWEEP_INTERVAL_MS;
}

/* Two routes may not listen on the same scheme, address and fixed port;
 * port 0 picks a free port, so those never collide. */
static int check_listeners(struct loader *l, struct sl_config *cfg,
                           const yaml_node_t *const *route_nodes)
{
    for (size_t i = 1; i < cfg->nroutes; i++) {
        struct sl_route_config *b = &cfg->routes[i];
        unsigned char ba[16], aa[16];
        int bf = strchr(b->bind, ':') ? AF_INET6 : AF_INET;

        if (b->listen_port == 0 || inet_pton(bf, b->bind, ba) != 1)
            continue;
        for (size_t j = 0; j < i; j++) {
            struct sl_route_config *a = &cfg->routes[j];
            int af = strchr(a->bind, ':') ? AF_INET6 : AF_INET;
            if (a->scheme != b->scheme || a->listen_port != b->listen_port ||
                af != bf || inet_pton(af, a->bind, aa) != 1 ||
                memcmp(aa, ba, af == AF_INET ? 4 : 16) != 0)
                continue;
            l->route = b->name;
            l->field = "port";
            return fail(l, route_nodes[i], "listener %s %s%s%s:%u is "
                        "already used by route \"%s\"",
                        b->scheme == SL_SCHEME_UDP ? "udp" : "tcp",
                        bf == AF_INET6 ? "[" : "", b->bind,
                        bf == AF_INET6 ? "]" : "", (unsigned)b->listen_port,
                        a->name);
        }
    }
    return 0;
}

static int load_routes(struct loader *l, const yaml_node_t *v,
                       struct sl_config *cfg)
{
    const yaml_node_t **route_nodes = NULL;
    yaml_node_pair_t *p;
    size_t n;
    int rc = 0;

    if (is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE)
        return fail(l, v, "routes: expected a mapping of route names to "
                    "routes, got %s", node_kind(v));
    n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    if (n == 0)
        return 0;
    if (n > SL_CONFIG_MAX_ROUTES)
        return fail(l, v, "routes: %zu routes, more than the limit of %d", n,
                    SL_CONFIG_MAX_ROUTES);
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    route_nodes = calloc(n, sizeof(*route_nodes));
    if (cfg->routes == NULL || route_nodes == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *rn = yaml_document_get_node(l->doc, p->value);
        struct sl_route_config *r = &cfg->routes[cfg->nroutes];
        char q[QUOTE_LEN];
        const char *name;

        if (k == NULL || rn == NULL) {
            rc = fail(l, v, "routes: broken mapping");
            goto out;
        }
        if ((rc = get_scalar(l, k, &name, "a route name")) != 0)
            goto out;
        if (!valid_route_name(name)) {
            rc = fail(l, k, "routes: route name %s is not 1-64 letters, "
                      "digits, '.', '_' or '-'", quoted(name, q));
            goto out;
        }
        for (size_t j = 0; j < cfg->nroutes; j++) {
            if (strcmp(cfg->routes[j].name, name) == 0) {
                rc = fail(l, k, "routes: route name %s appears twice",
                          quoted(name, q));
                goto out;
            }
        }
        /* Counted before filling so sl_config_free sees partial routes. */
        cfg->nroutes++;
        set_defaults(r);
        if ((r->name = strdup(name)) == NULL) {
            rc = UV_ENOMEM;
            goto out;
        }
        route_nodes[cfg->nroutes - 1] = rn;
        l->route = r->name;
        if ((rc = load_route(l, rn, r)) != 0)
            goto out;
        l->route = NULL;
        l->field = NULL;
    }
    rc = check_listeners(l, cfg, route_nodes);
out:
    free(route_nodes);
    return rc;
}

/* ---- agents: ---------------------------------------------------------- */

/* "host:port" or "[v6]:port", the host a name or an IP literal. */
static int agent_address(struct loader *l, const yaml_node_t *v,
                         struct sl_agent_config *a)
{
    static const char forms[] =
        "HOST:PORT ([v6]:PORT for IPv6; HOST a name or an IP address, "
        "PORT 1-65535)";
    char q[QUOTE_LEN], host[MAX_HOST_LEN + 1];
    unsigned char buf[16];
    const char *s, *colon;
    uint64_t port;
    size_t hl;
    int rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    colon = strrchr(s, ':');
    hl = colon != NULL ? (size_t)(colon - s) : 0;
    const char *h = s;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (colon == NULL || hl == 0 || hl > MAX_HOST_LEN ||
        parse_uint(colon + 1, 65535, &port) != 0 || port == 0)
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    memcpy(host, h, hl);
    host[hl] = '\0';
    int v6 = inet_pton(AF_INET6, host, buf) == 1;
    if (h == s + 1 ? !v6
                   : (!v6 && inet_pton(AF_INET, host, buf) != 1 &&
                      !valid_hostname(host)) ||
                         (v6 && h == s))
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    free(a->host);
    if ((a->host = strdup(host)) == NULL)
        return UV_ENOMEM;
    a->port = (uint16_t)port;
    return 0;
}

static int agent_path(struct loader *l, const yaml_node_t *v, char **out)
{
    const char *s;
    int rc;

    if ((rc = get_scalar(l, v, &s, "a file name")) != 0)
        return rc;
    if (s[0] == '\0')
        return fail(l, v, "is empty; expected a file name");
    free(*out);
    *out = strdup(s);
    return *out == NULL ? UV_ENOMEM : 0;
}

static int agent_count(struct loader *l, const yaml_node_t *v, unsigned *out)
{
    static const char forms[] = "an integer from 1 to 100";
    char q[QUOTE_LEN];
    const char *s;
    uint64_t n;
    int rc;

    if ((rc = get_scalar(l, v, &s, forms)) != 0)
        return rc;
    if (parse_uint(s, 100, &n) != 0 || n == 0)
        return fail(l, v, "%s is not %s", quoted(s, q), forms);
    *out = (unsigned)n;
    return 0;
}

static int load_agent(struct loader *l, const yaml_node_t *an,
                      struct sl_agent_config *a)
{
    static const char *const names[] = {
        "address",         "ca",           "cert",           "key",
        "health_interval", "health_timeout", "unhealthy_after",
        "healthy_after"};
    unsigned seen = 0;
    yaml_node_pair_t *p;
    int rc;

    if (an->type != YAML_MAPPING_NODE)
        return fail(l, an, "expected a mapping of fields (%s), got %s",
                    AGENT_FIELDS, is_null(an) ? "nothing" : node_kind(an));
    for (p = an->data.mapping.pairs.start; p < an->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        char q[QUOTE_LEN];
        const char *ks;
        size_t f;

        if (k == NULL || v == NULL)
            return fail(l, an, "broken mapping");
        if ((rc = get_scalar(l, k, &ks, "a field name")) != 0)
            return rc;
        for (f = 0; f < sizeof(names) / sizeof(names[0]); f++)
            if (strcmp(ks, names[f]) == 0)
                break;
        if (f == sizeof(names) / sizeof(names[0]))
            return fail(l, k, "unknown field %s; accepted fields: %s",
                        quoted(ks, q), AGENT_FIELDS);
        l->field = names[f];
        if (seen & (1u << f))
            return fail(l, k, "appears twice");
        seen |= 1u << f;
        switch (f) {
        case 0: rc = agent_address(l, v, a); break;
        case 1: rc = agent_path(l, v, &a->ca); break;
        case 2: rc = agent_path(l, v, &a->cert); break;
        case 3: rc = agent_path(l, v, &a->key); break;
        case 4: rc = duration(l, v, &a->health_interval_ms); break;
        case 5: rc = duration(l, v, &a->health_timeout_ms); break;
        case 6: rc = agent_count(l, v, &a->unhealthy_after); break;
        default: rc = agent_count(l, v, &a->healthy_after); break;
        }
        if (rc != 0)
            return rc;
        l->field = NULL;
    }
    for (size_t f = 0; f < 4; f++) {
        if (!(seen & (1u << f))) {
            l->field = names[f];
            return fail(l, an, "is required (%s)",
                        f == 0 ? "HOST:PORT of the agent port"
                        : f == 1 ? "the CA the agent's certificate chains "
                                   "to: ca.pem of sluice agent certs"
                        : f == 2 ? "our client certificate: client.pem of "
                                   "sluice agent certs"
                                 : "our client key: client.key of sluice "
                                   "agent certs");
        }
    }
    if (a->health_timeout_ms > a->health_interval_ms) {
        l->field = "health_timeout";
        return fail(l, an, "%llu ms is longer than health_interval (%llu "
                    "ms)", (unsigned long long)a->health_timeout_ms,
                    (unsigned long long)a->health_interval_ms);
    }
    return 0;
}

static int load_agents(struct loader *l, const yaml_node_t *v,
                       struct sl_config *cfg)
{
    yaml_node_pair_t *p;
    size_t n;
    int rc;

    if (is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE)
        return fail(l, v, "agents: expected a mapping of agent names to "
                    "agents, got %s", node_kind(v));
    n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    if (n == 0)
        return 0;
    if (n > MAX_AGENTS)
        return fail(l, v, "agents: %zu agents, more than the limit of %d", n,
                    MAX_AGENTS);
    if ((cfg->agents = calloc(n, sizeof(*cfg->agents))) == NULL)
        return UV_ENOMEM;
    for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *an = yaml_document_get_node(l->doc, p->value);
        struct sl_agent_config *a = &cfg->agents[cfg->nagents];
        char q[QUOTE_LEN];
        const char *name;

        if (k == NULL || an == NULL)
            return fail(l, v, "agents: broken mapping");
        if ((rc = get_scalar(l, k, &name, "an agent name")) != 0)
            return rc;
        if (!valid_route_name(name))
            return fail(l, k, "agents: agent name %s is not 1-64 letters, "
                        "digits, '.', '_' or '-'", quoted(name, q));
        for (size_t j = 0; j < cfg->nagents; j++)
            if (strcmp(cfg->agents[j].name, name) == 0)
                return fail(l, k, "agents: agent name %s appears twice",
                            quoted(name, q));
        cfg->nagents++; /* counted first: sl_config_free sees it */
        a->health_interval_ms = SL_AGENT_DEFAULT_HEALTH_INTERVAL_MS;
        a->health_timeout_ms = SL_AGENT_DEFAULT_HEALTH_TIMEOUT_MS;
        a->unhealthy_after = SL_AGENT_DEFAULT_UNHEALTHY_AFTER;
        a->healthy_after = SL_AGENT_DEFAULT_HEALTHY_AFTER;
        if ((a->name = strdup(name)) == NULL)
            return UV_ENOMEM;
        l->section = "agents";
        l->route = NULL;
        l->field = NULL;
        rc = load_agent(l, an, a);
        if (rc != 0) {
            if (l->err != NULL && l->errlen > 0) {
                /* "agents: field ..." becomes "agents: agent "x": ..." */
                char tmp[SL_CONFIG_ERR_MAX];
                snprintf(tmp, sizeof(tmp), "%s", l->err);
                const char *rest = strncmp(tmp, "agents: ", 8) == 0
                                       ? tmp + 8
                                       : tmp;
                snprintf(l->err, l->errlen, "agents: agent %s: %s",
                         quoted(name, q), rest);
            }
            return rc;
        }
        l->section = NULL;
    }
    return 0;
}

/* Each route's agent must be one of agents:, which may come after
 * routes: in the file. */
static int check_route_agents(struct loader *l, struct sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct sl_route_config *r = &cfg->routes[i];
        size_t j;
        if (r->agent == NULL)
            continue;
        for (j = 0; j < cfg->nagents; j++)
            if (strcmp(cfg->agents[j].name, r->agent) == 0)
                break;
        if (j < cfg->nagents)
            continue;
        char q[QUOTE_LEN];
        l->route = r->name;
        l->field = "agent";
        return fail(l, NULL, "%s is not an agent of agents:%s",
                    quoted(r->agent, q),
                    cfg->nagents == 0 ? " (there is no agents: section)"
                                      : "");
    }
    return 0;
}

/* ---- hub: and node: sections ------------------------------------------ */

/* What a section's value must look like. */
enum check {
    CK_TEXT,     /* one line of printable text */
    CK_PATH,     /* a file or directory name */
    CK_ADDR,     /* IP:PORT, IPv6 in brackets */
    CK_IP,       /* an IP address */
    CK_HOST,     /* a DNS name */
    CK_HUB_URL,  /* http://, https://, ws://, wss:// */
    CK_UP_URL,   /* http://, tls://, tcp://, udp:// */
    CK_UINT,     /* decimal digits within [min, max] */
    CK_SIZE,     /* core/size.h */
    CK_RATE,     /* core/rate.h */
    CK_DURATION, /* core/size.h's seconds or 30m, 12h, 7d, 2w */
    CK_RANGE,    /* A-B of ports */
    CK_ENUM,     /* one of forms, ", " apart */
    CK_BOOL,     /* true or false */
    CK_ACL,      /* ip:ADDR or cidr:ADDR/BITS */
    CK_PIN,      /* sha256/BASE64 */
};

struct field_def {
    const char *key; /* the flag's name without "--" */
    const char *flag;
    enum sl_config_kind kind;
    enum check check;
    uint64_t min, max; /* CK_UINT */
    const char *forms; /* CK_ENUM: the values; else NULL */
    const char *same_as; /* another key setting the same thing, or NULL */
    int secret;          /* never quoted back in an error */
};

#define U64_ANY 0, UINT64_MAX / 2
#define U32_ANY 0, UINT32_MAX

/* The rows follow the roles' --help (cli/cli_boot_hub.c, cli_boot_node.c;
 * a test keeps them in step). */
static const struct field_def hub_fields[] = {
    {"http", "--http", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, NULL, 0},
    {"https", "--https", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, NULL, 0},
    {"api", "--api", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, NULL, 0},
    {"domain", "--domain", SL_CONFIG_VALUE, CK_HOST, 0, 0, NULL, NULL, 0},
    {"tls-cert", "--tls-cert", SL_CONFIG_LIST, CK_PATH, 0, 0, NULL, NULL, 0},
    {"tls-key", "--tls-key", SL_CONFIG_LIST, CK_PATH, 0, 0, NULL, NULL, 0},
    {"https-redirect", "--https-redirect", SL_CONFIG_SWITCH, CK_BOOL, 0, 0,
     NULL, NULL, 0},
    {"stream-ports", "--stream-ports", SL_CONFIG_VALUE, CK_RANGE, 0, 0, NULL,
     NULL, 0},
    {"stream-bind", "--stream-bind", SL_CONFIG_VALUE, CK_IP, 0, 0, NULL, NULL,
     0},
    {"state-dir", "--state-dir", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL,
     0},
    /* A postgres:// URL may carry a password: never quoted back. */
    {"store", "--store", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 1},
    {"gateway-token", "--gateway-token", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL,
     "token", 1},
    {"token", "--token", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL,
     "gateway-token", 1},
    {"gateway-token-file", "--gateway-token-file", SL_CONFIG_VALUE, CK_PATH,
     0, 0, NULL, NULL, 0},
    {"api-token", "--api-token", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL,
     1},
    {"api-token-file", "--api-token-file", SL_CONFIG_VALUE, CK_PATH, 0, 0,
     NULL, NULL, 0},
    {"api-require-token", "--api-require-token", SL_CONFIG_SWITCH, CK_BOOL, 0,
     0, NULL, NULL, 0},
    {"allocation-rate", "--allocation-rate", SL_CONFIG_VALUE, CK_UINT,
     U32_ANY, NULL, NULL, 0},
    {"allocation-rate-global", "--allocation-rate-global", SL_CONFIG_VALUE,
     CK_UINT, U32_ANY, NULL, NULL, 0},
    {"allocation-idle-expiry", "--allocation-idle-expiry", SL_CONFIG_VALUE,
     CK_DURATION, 0, 0, NULL, NULL, 0},
    {"public-scheme", "--public-scheme", SL_CONFIG_VALUE, CK_ENUM, 0, 0,
     "http, https", NULL, 0},
    {"public-url-port", "--public-url-port", SL_CONFIG_VALUE, CK_UINT, 0,
     65535, NULL, NULL, 0},
    {"limit-bridges", "--limit-bridges", SL_CONFIG_VALUE, CK_UINT, U64_ANY,
     NULL, NULL, 0},
    {"limit-traffic", "--limit-traffic", SL_CONFIG_VALUE, CK_SIZE, 0, 0, NULL,
     NULL, 0},
    {"limit-rate", "--limit-rate", SL_CONFIG_VALUE, CK_RATE, 0, 0, NULL, NULL,
     0},
    {"grant-key", "--grant-key", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL,
     0},
    {"free-bridges", "--free-bridges", SL_CONFIG_VALUE, CK_UINT, U64_ANY,
     NULL, NULL, 0},
    {"free-traffic", "--free-traffic", SL_CONFIG_VALUE, CK_SIZE, 0, 0, NULL,
     NULL, 0},
    {"cookie-isolation", "--cookie-isolation", SL_CONFIG_ONOFF, CK_BOOL, 0, 0,
     NULL, NULL, 0},
    {"client-timeout-ms", "--client-timeout-ms", SL_CONFIG_VALUE, CK_UINT,
     U64_ANY, NULL, NULL, 0},
    {"server-timeout-ms", "--server-timeout-ms", SL_CONFIG_VALUE, CK_UINT,
     U64_ANY, NULL, NULL, 0},
    {"tunnel-timeout-ms", "--tunnel-timeout-ms", SL_CONFIG_VALUE, CK_UINT,
     U64_ANY, NULL, NULL, 0},
    {"max-user-conns", "--max-user-conns", SL_CONFIG_VALUE, CK_UINT, U64_ANY,
     NULL, NULL, 0},
    {"max-conns-per-ip", "--max-conns-per-ip", SL_CONFIG_VALUE, CK_UINT,
     U64_ANY, NULL, NULL, 0},
    {"max-pairs", "--max-pairs", SL_CONFIG_VALUE, CK_UINT, U64_ANY, NULL,
     NULL, 0},
    {"max-data-conns", "--max-data-conns", SL_CONFIG_VALUE, CK_UINT, U64_ANY,
     NULL, NULL, 0},
    {"mux", "--mux", SL_CONFIG_VALUE, CK_UINT, 0, 4, NULL, NULL, 0},
    {"no-mux", "--no-mux", SL_CONFIG_SWITCH, CK_BOOL, 0, 0, NULL, NULL, 0},
    {"acme", "--acme", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 0},
    {"acme-email", "--acme-email", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL,
     0},
    {"acme-ca", "--acme-ca", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL, 0},
    {"acme-eab", "--acme-eab", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 1},
    {"acme-dns-update", "--acme-dns-update", SL_CONFIG_VALUE, CK_TEXT, 0, 0,
     NULL, NULL, 0},
    {"acme-tsig-key", "--acme-tsig-key", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL,
     NULL, 0},
    {"acme-orders-per-hour", "--acme-orders-per-hour", SL_CONFIG_VALUE,
     CK_UINT, U32_ANY, NULL, NULL, 0},
};

static const struct field_def node_fields[] = {
    {"hub", "--hub", SL_CONFIG_VALUE, CK_HUB_URL, 0, 0, NULL, NULL, 0},
    {"upstream", "--upstream", SL_CONFIG_VALUE, CK_UP_URL, 0, 0, NULL, NULL,
     0},
    {"hub-ca", "--hub-ca", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL, 0},
    {"hub-pin", "--hub-pin", SL_CONFIG_VALUE, CK_PIN, 0, 0, NULL, NULL, 0},
    {"hub-insecure", "--hub-insecure", SL_CONFIG_SWITCH, CK_BOOL, 0, 0, NULL,
     NULL, 0},
    {"allow", "--allow", SL_CONFIG_LIST, CK_ACL, 0, 0, NULL, NULL, 0},
    {"deny", "--deny", SL_CONFIG_LIST, CK_ACL, 0, 0, NULL, NULL, 0},
    {"proxy-protocol", "--proxy-protocol", SL_CONFIG_VALUE, CK_ENUM, 0, 0,
     "v1, v2", NULL, 0},
    {"max-conns", "--max-conns", SL_CONFIG_VALUE, CK_UINT, 0, 1000000, NULL,
     NULL, 0},
    {"max-sessions", "--max-sessions", SL_CONFIG_VALUE, CK_UINT, 0, 1000000,
     NULL, NULL, 0},
    {"token", "--token", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 1},
    {"username", "--username", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 0},
    {"password", "--password", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 1},
    {"grant", "--grant", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL, 0},
    {"state-dir", "--state-dir", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL,
     0},
    /* The node's API whatever else runs: --api is the hub's beside it. */
    {"api", "--node-api", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, "node-api",
     0},
    {"node-api", "--node-api", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, "api",
     0},
    {"allow-public-upstream", "--allow-public-upstream", SL_CONFIG_SWITCH,
     CK_BOOL, 0, 0, NULL, NULL, 0},
    {"pool", "--pool", SL_CONFIG_VALUE, CK_UINT, 0, 16, NULL, NULL, 0},
    {"framed", "--framed", SL_CONFIG_SWITCH, CK_BOOL, 0, 0, NULL, NULL, 0},
    {"no-mux", "--no-mux", SL_CONFIG_SWITCH, CK_BOOL, 0, 0, NULL, NULL, 0},
    {"inspect", "--inspect", SL_CONFIG_ONOFF, CK_BOOL, 0, 0, NULL, NULL, 0},
    {"ping-ms", "--ping-ms", SL_CONFIG_VALUE, CK_UINT, 10, 3600000, NULL,
     NULL, 0},
    {"dead-ms", "--dead-ms", SL_CONFIG_VALUE, CK_UINT, 10, 3600000, NULL,
     NULL, 0},
    /* the agent port (docs/node.md) */
    {"agent", "--agent", SL_CONFIG_VALUE, CK_ADDR, 0, 0, NULL, NULL, 0},
    {"agent-certs", "--agent-certs", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL,
     NULL, 0},
    {"agent-ca", "--agent-ca", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL, 0},
    {"agent-cert", "--agent-cert", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL,
     0},
    {"agent-key", "--agent-key", SL_CONFIG_VALUE, CK_PATH, 0, 0, NULL, NULL,
     0},
    {"agent-allow", "--agent-allow", SL_CONFIG_LIST, CK_ACL, 0, 0, NULL, NULL,
     0},
    {"agent-name", "--agent-name", SL_CONFIG_VALUE, CK_TEXT, 0, 0, NULL, NULL,
     0},
    {"agent-max-streams", "--agent-max-streams", SL_CONFIG_VALUE, CK_UINT, 1,
     1000000, NULL, NULL, 0},
    {"agent-max-sessions", "--agent-max-sessions", SL_CONFIG_VALUE, CK_UINT,
     1, 1000000, NULL, NULL, 0},
    {"agent-idle-ms", "--agent-idle-ms", SL_CONFIG_VALUE, CK_UINT, 100,
     604800000, NULL, NULL, 0},
    {"agent-udp-idle-ms", "--agent-udp-idle-ms", SL_CONFIG_VALUE, CK_UINT,
     100, 604800000, NULL, NULL, 0},
    {"agent-no-udp", "--agent-no-udp", SL_CONFIG_SWITCH, CK_BOOL, 0, 0, NULL,
     NULL, 0},
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* Long enough for either section's list of keys. */
#define SECTION_KEYS_MAX 2048

static const char *keys_line(const struct field_def *defs, size_t n,
                             char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        append(buf, len, &o, "%s%s", i ? ", " : "", defs[i].key);
    return buf;
}

const char *sl_config_section_keys(const char *section)
{
    static char hub_keys[SECTION_KEYS_MAX], node_keys[SECTION_KEYS_MAX];
    if (section != NULL && strcmp(section, "hub") == 0)
        return keys_line(hub_fields, NFIELDS(hub_fields), hub_keys,
                         sizeof(hub_keys));
    if (section != NULL && strcmp(section, "node") == 0)
        return keys_line(node_fields, NFIELDS(node_fields), node_keys,
                         sizeof(node_keys));
    return NULL;
}

const struct sl_config_setting *
sl_config_setting_find(const struct sl_config_section *section,
                       const char *flag)
{
    for (size_t i = 0; section != NULL && i < section->nsettings; i++)
        if (strcmp(section->settings[i].flag, flag) == 0)
            return &section->settings[i];
    return NULL;
}

/* key as the file spells it, with '_' standing for '-', equals want. */
static int key_is(const char *key, const char *want)
{
    for (; *key && *want; key++, want++)
        if (*key != *want && !(*key == '_' && *want == '-'))
            return 0;
    return *key == '\0' && *want == '\0';
}

static int printable(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

static int url_with(const char *s, const char *const *schemes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(schemes[i]);
        if (strncasecmp(s, schemes[i], k) == 0 && s[k] != '\0' &&
            s[k] != '/')
            return 1;
    }
    return 0;
}

/* Checks one scalar against its row; on success *norm is the value to
 * pass on (s itself, or "on"/"off" for a boolean). */
static int check_value(struct loader *l, const yaml_node_t *v,
                       const struct field_def *d, const char *s,
                       const char **norm)
{
    static const char *const hub_schemes[] = {"http://", "https://", "ws://",
                                              "wss://"};
    static const char *const up_schemes[] = {"http://", "tls://", "tcp://",
                                             "udp://"};
    char q[QUOTE_LEN];
    const char *forms = NULL;
    struct sockaddr_storage ss;
    uint64_t u;
    int ok = 1, b;

    *norm = s;
    switch (d->check) {
    case CK_TEXT:
        forms = "one line of text";
        ok = printable(s);
        break;
    case CK_PATH:
        forms = "a file name";
        ok = printable(s);
        break;
    case CK_ADDR:
        forms = "IP:PORT (e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:443)";
        ok = sl_addr_parse(s, &ss) == 0;
        break;
    case CK_IP:
        forms = "an IP address (e.g. 0.0.0.0, 127.0.0.1, ::)";
        ok = sl_addr_parse_ip(s, 0, &ss) == 0;
        break;
    case CK_HOST:
        forms = "a domain name (e.g. localhost, tunnel.example.com)";
        ok = valid_hostname(s);
        break;
    case CK_HUB_URL:
        forms = "http://HOST[:PORT] or https://HOST[:PORT] (also ws://, "
                "wss://)";
        ok = url_with(s, hub_schemes, 4);
        break;
    case CK_UP_URL:
        forms = "http://HOST:PORT, tls://HOST:PORT, tcp://HOST:PORT or "
                "udp://HOST:PORT";
        ok = url_with(s, up_schemes, 4);
        break;
    case CK_UINT:
        forms = "a whole number";
        ok = parse_uint(s, d->max, &u) == 0 && u >= d->min;
        if (!ok) {
            if (d->max < UINT64_MAX / 2)
                return fail(l, v, "%s is not a whole number %llu-%llu",
                            quoted(s, q), (unsigned long long)d->min,
                            (unsigned long long)d->max);
        }
        break;
    case CK_SIZE:
        forms = "a size in bytes or with a unit (e.g. 10MB, 1GiB, 0)";
        ok = sl_size_parse(s, &u) == 0;
        break;
    case CK_RATE:
        forms = "a rate: bytes/s, or with a unit (e.g. 100Mbit, 10MB/s, 0)";
        ok = sl_rate_parse(s, &u) == 0;
        break;
    case CK_DURATION:
        forms = "seconds or a duration (e.g. 3600, 30m, 12h, 7d, 0)";
        ok = sl_duration_parse_s(s, &u) == 0;
        break;
    case CK_RANGE: {
        forms = "A-B, a range of ports (e.g. 20000-29999)";
        const char *dash = strchr(s, '-');
        char lo[8];
        uint64_t a = 0, z = 0;
        ok = dash != NULL && dash > s && (size_t)(dash - s) < sizeof(lo);
        if (ok) {
            memcpy(lo, s, (size_t)(dash - s));
            lo[dash - s] = '\0';
            ok = parse_uint(lo, 65535, &a) == 0 &&
                 parse_uint(dash + 1, 65535, &z) == 0 && a >= 1 && z >= a;
        }
        break;
    }
    case CK_ENUM: {
        forms = d->forms;
        ok = 0;
        for (const char *p = d->forms; *p && !ok;) {
            size_t n = strcspn(p, ",");
            ok = strlen(s) == n && strncmp(s, p, n) == 0;
            p += n;
            while (*p == ',' || *p == ' ')
                p++;
        }
        if (!ok)
            return fail(l, v, "%s is not one of %s", quoted(s, q), forms);
        break;
    }
    case CK_BOOL:
        forms = "true or false";
        ok = parse_bool(s, &b) == 0;
        if (ok)
            *norm = b ? "on" : "off";
        break;
    case CK_ACL: {
        char reason[256] = "";
        struct sl_acl *acl = sl_acl_new();
        if (acl == NULL)
            return UV_ENOMEM;
        forms = "ip:ADDR or cidr:ADDR/BITS";
        ok = printable(s) &&
             sl_acl_add(acl, 1, s, 0, reason, sizeof(reason)) == 0;
        sl_acl_free(acl);
        if (!ok && reason[0] != '\0' && printable(s))
            return fail(l, v, "%s", reason);
        break;
    }
    case CK_PIN:
        forms = "sha256/BASE64 (the hub's public key, as curl's "
                "--pinnedpubkey)";
        ok = strncmp(s, "sha256/", 7) == 0 && s[7] != '\0' && printable(s);
        break;
    }
    if (ok)
        return 0;
    if (d->secret)
        return fail(l, v, "the value is not %s (not shown: a secret)", forms);
    return fail(l, v, "%s is not %s", quoted(s, q), forms);
}

static int add_value(struct sl_config_setting *st, const char *s)
{
    char **vals = realloc(st->values, (st->nvalues + 1) * sizeof(*vals));
    if (vals == NULL)
        return UV_ENOMEM;
    st->values = vals;
    if ((vals[st->nvalues] = strdup(s)) == NULL)
        return UV_ENOMEM;
    st->nvalues++;
    return 0;
}

/* Reads the value node v of key d into st. */
static int load_setting(struct loader *l, const yaml_node_t *v,
                        const struct field_def *d,
                        struct sl_config_setting *st)
{
    const char *s, *norm;
    int rc;

    if (is_null(v))
        return fail(l, v, "has no value; expected %s",
                    d->check == CK_BOOL ? "true or false" : "a value");
    if (d->kind == SL_CONFIG_LIST && v->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it;
        if (v->data.sequence.items.top == v->data.sequence.items.start)
            return fail(l, v, "an empty list; leave the key out instead");
        for (it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++) {
            const yaml_node_t *item = yaml_document_get_node(l->doc, *it);
            if (item == NULL)
                return fail(l, v, "broken list");
            if ((rc = get_scalar(l, item, &s, "a value")) != 0 ||
                (rc = check_value(l, item, d, s, &norm)) != 0 ||
                (rc = add_value(st, norm)) != 0)
                return rc;
        }
        return 0;
    }
    if ((rc = get_scalar(l, v, &s,
                         d->kind == SL_CONFIG_LIST ? "a value or a list"
                                                   : "a value")) != 0 ||
        (rc = check_value(l, v, d, s, &norm)) != 0)
        return rc;
    return add_value(st, norm);
}

/* A key this file does not know may still be an option of the role: a
 * word of lowercase letters, digits and dashes (or underscores). */
static int option_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

/* "--" and the key with its underscores made dashes (or known, the
 * table's flag). NULL: no memory. */
static char *flag_of(const char *known, const char *key)
{
    size_t n = strlen(key);
    char *f = malloc((known ? strlen(known) : n + 2) + 1);
    if (f == NULL)
        return NULL;
    if (known != NULL) {
        memcpy(f, known, strlen(known) + 1);
        return f;
    }
    f[0] = f[1] = '-';
    for (size_t i = 0; i <= n; i++)
        f[i + 2] = key[i] == '_' ? '-' : key[i];
    return f;
}

/* The value of a key the table does not list: its shape decides its kind
 * (a list, true/false/yes/no for a switch, else a value); the role says
 * whether it is right. on/off stay values: options take them as such
 * (--cookie-isolation=on). */
static int load_other(struct loader *l, const yaml_node_t *v,
                      struct sl_config_setting *st)
{
    static const struct field_def any = {"", "", SL_CONFIG_VALUE, CK_TEXT,
                                         0, 0, NULL, NULL, 0};
    static const struct field_def list = {"", "", SL_CONFIG_LIST, CK_TEXT,
                                          0, 0, NULL, NULL, 0};
    static const char *const words[] = {"true", "false", "yes", "no",
                                        "True", "False", "Yes", "No",
                                        "TRUE", "FALSE", "YES", "NO"};
    if (v->type == YAML_SEQUENCE_NODE) {
        st->kind = SL_CONFIG_LIST;
        return load_setting(l, v, &list, st);
    }
    st->kind = SL_CONFIG_VALUE;
    if (v->type == YAML_SCALAR_NODE &&
        v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (strcmp((const char *)v->data.scalar.value, words[i]) == 0) {
                st->kind = SL_CONFIG_SWITCH;
                return add_value(st, i % 2 == 0 ? "on" : "off");
            }
    return load_setting(l, v, &any, st);
}

static int load_section(struct loader *l, const char *name,
                        const yaml_node_t *v, struct sl_config_section *sec)
{
    int hub = strcmp(name, "hub") == 0;
    const struct field_def *defs = hub ? hub_fields : node_fields;
    size_t ndefs = hub ? NFIELDS(hub_fields) : NFIELDS(node_fields);
    char keys[SECTION_KEYS_MAX];
    yaml_node_pair_t *p;
    size_t n;
    int rc;

    sec->present = 1;
    l->section = name;
    if (is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE)
        return fail(l, v, "expected a mapping of %s options, got %s", name,
                    node_kind(v));
    n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    if (n == 0)
        return 0;
    if ((sec->settings = calloc(n, sizeof(*sec->settings))) == NULL)
        return UV_ENOMEM;
    for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *val = yaml_document_get_node(l->doc, p->value);
        const struct field_def *d = NULL;
        struct sl_config_setting *st;
        char q[QUOTE_LEN];
        const char *ks;

        l->field = NULL;
        if (k == NULL || val == NULL)
            return fail(l, v, "broken mapping");
        if ((rc = get_scalar(l, k, &ks, "an option name")) != 0)
            return rc;
        for (size_t i = 0; i < ndefs && d == NULL; i++)
            if (key_is(ks, defs[i].key))
                d = &defs[i];
        if (d == NULL && !option_name(ks))
            return fail(l, k, "%s is not an option name; accepted fields "
                        "(the --%s options without the dashes): %s",
                        quoted(ks, q), hub ? "proxy" : "bridge",
                        keys_line(defs, ndefs, keys, sizeof(keys)));
        for (size_t i = 0; i < sec->nsettings; i++) {
            const char *other = sec->settings[i].key;
            if (key_is(other, d != NULL ? d->key : ks) || key_is(ks, other) ||
                (d != NULL && d->same_as != NULL &&
                 key_is(other, d->same_as)))
                return fail(l, k, "field %s: sets what %s above sets",
                            quoted(ks, q), quoted(other, keys));
        }
        st = &sec->settings[sec->nsettings++];
        st->line = (unsigned)k->start_mark.line + 1;
        if ((st->key = strdup(ks)) == NULL ||
            (st->flag = flag_of(d != NULL ? d->flag : NULL, ks)) == NULL)
            return UV_ENOMEM;
        l->field = st->key;
        if (d != NULL) {
            st->known = 1;
            st->kind = d->kind;
            rc = load_setting(l, val, d, st);
        } else {
            rc = load_other(l, val, st);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void free_section(struct sl_config_section *sec)
{
    for (size_t i = 0; i < sec->nsettings; i++) {
        struct sl_config_setting *st = &sec->settings[i];
        for (size_t k = 0; k < st->nvalues; k++)
            free(st->values[k]);
        free(st->values);
        free(st->key);
        free(st->flag);
    }
    free(sec->settings);
}

static int load_document(struct loader *l, struct sl_config *cfg)
{
    const yaml_node_t *root = yaml_document_get_root_node(l->doc);
    unsigned seen = 0;
    yaml_node_pair_t *p;
    int rc;

    if (root == NULL || is_null(root))
        return 0; /* an empty file: no routes */
    if (root->type != YAML_MAPPING_NODE)
        return fail(l, root, "the top level must be a mapping with routes:, "
                    "got %s", node_kind(root));
    for (p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        static const char *const keys[] = {"routes", "hub", "node",
                                           "agents"};
        const yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        char q[QUOTE_LEN];
        const char *ks;
        size_t i;

        if (k == NULL || v == NULL)
            return fail(l, root, "broken mapping");
        if ((rc = get_scalar(l, k, &ks, "a key")) != 0)
            return rc;
        for (i = 0; i < 4; i++)
            if (strcmp(ks, keys[i]) == 0)
                break;
        if (i == 4)
            return fail(l, k, "unknown top-level key %s; accepted keys: "
                        "routes, hub, node, agents", quoted(ks, q));
        if (seen & (1u << i))
            return fail(l, k, "top-level key %s appears twice",
                        quoted(ks, q));
        seen |= 1u << i;
        if (i == 0)
            rc = load_routes(l, v, cfg);
        else if (i == 3)
            rc = load_agents(l, v, cfg);
        else
            rc = load_section(l, keys[i], v, i == 1 ? &cfg->hub : &cfg->node);
        if (rc != 0)
            return rc;
        l->section = NULL;
        l->field = NULL;
    }
    return check_route_agents(l, cfg);
}

static int yaml_fail(struct loader *l, const yaml_parser_t *parser)
{
    const char *problem = parser->problem ? parser->problem : "parse error";

    if (parser->error == YAML_MEMORY_ERROR)
        return UV_ENOMEM;
    if (l->err == NULL || l->errlen == 0)
        return SL_ECONFIG;
    if (parser->error == YAML_READER_ERROR) {
        snprintf(l->err, l->errlen, "YAML error at byte %zu: %s",
                 parser->problem_offset, problem);
    } else if (parser->context != NULL) {
        snprintf(l->err, l->errlen, "YAML syntax error at line %zu, column "
                 "%zu: %s (%s at line %zu, column %zu)",
                 parser->problem_mark.line + 1,
                 parser->problem_mark.column + 1, problem, parser->context,
                 parser->context_mark.line + 1,
                 parser->context_mark.column + 1);
    } else {
        snprintf(l->err, l->errlen, "YAML syntax error at line %zu, column "
                 "%zu: %s", parser->problem_mark.line + 1,
                 parser->problem_mark.column + 1, problem);
    }
    return SL_ECONFIG;
}

/* A first pass over the events: reports syntax errors with their position
 * and refuses deep nesting and more than one document before the document
 * loader, which has no depth limit of its own, builds the tree. */
static int prescan(struct loader *l, const unsigned char *yaml, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    size_t depth = 0;
    int docs = 0;
    int rc = 0;
    int done = 0;

    if (!yaml_parser_initialize(&parser))
        return UV_ENOMEM;
    yaml_parser_set_input_string(&parser, yaml, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_fail(l, &parser);
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                rc = fail(l, NULL, "YAML error at line %zu: only one "
                          "document is allowed", ev.start_mark.line + 1);
                done = 1;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > SL_CONFIG_MAX_DEPTH) {
                rc = fail(l, NULL, "YAML error at line %zu, column %zu: "
                          "nesting deeper than %d levels",
                          ev.start_mark.line + 1, ev.start_mark.column + 1,
                          SL_CONFIG_MAX_DEPTH);
                done = 1;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return rc;
}

int sl_config_load_string(const char *yaml, size_t len,
                          struct sl_config **out, char *err, size_t errlen)
{
    struct loader l = {.err = err, .errlen = errlen};
    struct sl_config *cfg = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return SL_ECONFIG;
    *out = NULL;
    if (yaml == NULL && len > 0)
        return fail(&l, NULL, "no input");
    if (len > SL_CONFIG_MAX_BYTES) {
        fail(&l, NULL, "the file has %zu bytes, more than the limit of %d",
             len, SL_CONFIG_MAX_BYTES);
        return SL_ETOOBIG;
    }
    if ((rc = prescan(&l, (const unsigned char *)(yaml ? yaml : ""), len)))
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        rc = UV_ENOMEM;
        goto out;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser,
                                 (const unsigned char *)(yaml ? yaml : ""),
                                 len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(&l, &parser);
        goto out;
    }
    have_doc = 1;
    l.doc = &doc;
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if ((rc = load_document(&l, cfg)) != 0)
        goto out;
    *out = cfg;
    cfg = NULL;
out:
    if (rc == UV_ENOMEM && err != NULL && errlen > 0)
        snprintf(err, errlen, "out of memory");
    sl_config_free(cfg);
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    return rc;
}

int sl_config_load_file(const char *path, struct sl_config **out, char *err,
                        size_t errlen)
{
    struct loader l = {.err = err, .errlen = errlen};
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = -1;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL)
        return fail(&l, NULL, "no file name");
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
        fail(&l, NULL, "cannot open: %s", strerror(-rc));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        fail(&l, NULL, "cannot stat: %s", strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = SL_ECONFIG;
        fail(&l, NULL, "not a regular file");
        goto out;
    }
    /* Read up to one byte past the limit to tell "too big" from "full". */
    if ((buf = malloc(SL_CONFIG_MAX_BYTES + 1)) == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    while (len <= SL_CONFIG_MAX_BYTES) {
        ssize_t n = read(fd, buf + len, SL_CONFIG_MAX_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            fail(&l, NULL, "cannot read: %s", strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > SL_CONFIG_MAX_BYTES) {
        rc = SL_ETOOBIG;
        fail(&l, NULL, "the file is bigger than the limit of %d bytes",
             SL_CONFIG_MAX_BYTES);
        goto out;
    }
    rc = sl_config_load_string(buf, len, out, err, errlen);
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

void sl_config_free(struct sl_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct sl_route_config *r = &cfg->routes[i];
        free(r->name);
        free(r->bind);
        free(r->host);
        sl_acl_free(r->acl);
        sl_acl_free(r->pp_trusted);
        free(r->agent);
    }
    free(cfg->routes);
    for (size_t i = 0; i < cfg->nagents; i++) {
        struct sl_agent_config *a = &cfg->agents[i];
        free(a->name);
        free(a->host);
        free(a->ca);
        free(a->cert);
        free(a->key);
    }
    free(cfg->agents);
    free_section(&cfg->hub);
    free_section(&cfg->node);
    free(cfg);
}
