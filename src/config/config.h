/* The configuration file (YAML, godoxy-compatible `routes:`), loaded into
 * plain structs. Loading validates everything: a struct sl_config that
 * exists is valid. Pure: reads a file or a string, no event loop. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct sl_acl;

enum sl_scheme { SL_SCHEME_TCP, SL_SCHEME_UDP };
enum sl_family { SL_FAMILY_ANY = 0, SL_FAMILY_V4, SL_FAMILY_V6 };
enum sl_pp_mode { SL_PP_DISABLED = 0, SL_PP_MIXED, SL_PP_REQUIRED };

struct sl_route_config {
    char *name;
    enum sl_scheme scheme;
    enum sl_family family;       /* from tcp4/tcp6/udp4/udp6 */
    char *bind;                  /* default "0.0.0.0" ("::" for tcp6/udp6) */
    char *host;                  /* target host, default "localhost" */
    uint16_t listen_port;        /* 0: bind a free port and report it */
    uint16_t target_port;        /* never 0 */
    struct sl_acl *acl;          /* owned; NULL: allow all */
    enum sl_pp_mode proxy_protocol;
    struct sl_acl *pp_trusted;   /* owned; sources whose PROXY header is
                                    believed; NULL: every source */
    int relay_proxy_protocol_header; /* send a v2 header upstream */
    unsigned max_connections;    /* TCP connections or UDP sessions; 0 = the
                                    default (TCP: unlimited, UDP: 4096) */
    uint64_t connect_timeout_ms;        /* default 10000 */
    uint64_t proxy_protocol_timeout_ms; /* default 10000 */
    uint64_t udp_idle_timeout_ms;       /* default 300000 */
    uint64_t udp_sweep_interval_ms;     /* default 60000 */
};

struct sl_config {
    struct sl_route_config *routes; /* owned array */
    size_t nroutes;
};

/* Parses "[listen:]target" ("2222:22", "53", "0:8080"); a lone number is
 * both listen and target port. Returns 0 or SL_EPARSE. */
int sl_config_parse_port(const char *s, uint16_t *listen, uint16_t *target);

/* Loads and validates. On success returns 0 and *out (free with
 * sl_config_free). On failure returns SL_ECONFIG (or an I/O error) and
 * writes one line to err naming the route, the field, the bad value and the
 * accepted forms, e.g.
 *   route "ssh-proxy": field "scheme": "tcp5" is not one of tcp, tcp4, ...
 */
int sl_config_load_file(const char *path, struct sl_config **out, char *err,
                        size_t errlen);
int sl_config_load_string(const char *yaml, size_t len,
                          struct sl_config **out, char *err, size_t errlen);
void sl_config_free(struct sl_config *cfg); /* NULL is fine */

#endif
