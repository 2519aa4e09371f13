/* The options of an allocation's TCP and UDP tunnels (docs/hub.md,
 * "TCP and UDP through bridges"): who may connect, whether the upstream
 * gets a PROXY header, and caps. One JSON shape everywhere they travel:
 * a bridge's hello ("streams"), the admin API's allocation body, the
 * hub's store:
 *
 *   {"acl": {"allow": ["cidr:10.0.0.0/8"], "deny": ["ip:10.0.0.9"]},
 *    "proxy_protocol": "v1" | "v2" | "off",
 *    "max_connections": N, "max_sessions": N}
 *
 * Every field is optional. Pure: no I/O. */
#ifndef SL_TUNNEL_STREAM_OPTS_H
#define SL_TUNNEL_STREAM_OPTS_H

#include <stddef.h>
#include <stdint.h>

#define SL_STREAM_OPTS_RULES 32   /* allow and deny rules, each */
#define SL_STREAM_OPTS_RULE_MAX 64 /* bytes of one rule, NUL included */

struct sl_stream_opts {
    char allow[SL_STREAM_OPTS_RULES][SL_STREAM_OPTS_RULE_MAX];
    char deny[SL_STREAM_OPTS_RULES][SL_STREAM_OPTS_RULE_MAX];
    size_t nallow, ndeny;
    int proxy_protocol;       /* 0 off, 1 v1, 2 v2 */
    uint32_t max_connections; /* TCP connections at once; 0: no cap */
    uint32_t max_sessions;    /* UDP flows at once; 0: no cap */
};

/* Parses a JSON object (a jansson json_t *, passed as void * so this
 * header needs no jansson). NULL gives empty options. Every rule is
 * checked (ip:ADDR or cidr:ADDR/BITS). Returns 0, or SL_EPARSE with a
 * one-line reason in err. */
int sl_stream_opts_from_json(const void *json, struct sl_stream_opts *out,
                             char *err, size_t errcap);

/* Parses JSON text ("" or NULL: empty options). */
int sl_stream_opts_parse(const char *text, struct sl_stream_opts *out,
                         char *err, size_t errcap);

/* A new jansson object (json_t *) for o, or NULL on no memory. */
void *sl_stream_opts_to_json(const struct sl_stream_opts *o);

/* 1 when o sets nothing. */
int sl_stream_opts_empty(const struct sl_stream_opts *o);

/* o with the fields b sets taken from b (the operator's choices over the
 * bridge's); caps are the smaller non-zero of the two. */
void sl_stream_opts_merge(struct sl_stream_opts *o,
                          const struct sl_stream_opts *b);

#endif
