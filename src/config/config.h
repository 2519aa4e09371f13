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
                                    believed; when the file names none and
                                    proxy_protocol is on: loopback only
                                    (127.0.0.0/8, ::1), pp_trusted_default
                                    set; NULL only with proxy_protocol
                                    disabled */
    int pp_trusted_default;      /* pp_trusted is the loopback default */
    int relay_proxy_protocol_header; /* send a v2 header upstream */
    unsigned max_connections;    /* TCP connections (in any phase) or UDP
                                    sessions; default 4096 */
    unsigned max_connections_per_source; /* TCP, per IPv4 address or IPv6
                                    /64; default 256 */
    unsigned max_sessions_per_prefix; /* UDP, per IPv4 /24 or IPv6 /64;
                                    default 256 */
    uint64_t connect_timeout_ms;        /* default 10000 */
    uint64_t proxy_protocol_timeout_ms; /* default 10000 */
    uint64_t tcp_idle_timeout_ms;       /* default 3600000, both ways */
    uint64_t udp_idle_timeout_ms;       /* default 300000 */
    uint64_t udp_unreplied_timeout_ms;  /* default 10000: sessions that
                                           never got a reply */
    uint64_t udp_sweep_interval_ms;     /* default 60000 */
    char *agent;                 /* an agent of agents: dials the target
                                    (host, port), or NULL: dialled here */
};

/* One entry of agents:: a node's agent port that stream routes reach
 * their targets through (`agent: NAME`), with mutual TLS and health
 * checks. */
struct sl_agent_config {
    char *name;
    char *host;          /* of address: a host name or an IP literal */
    uint16_t port;
    char *ca;            /* the agents' CA (PEM) */
    char *cert, *key;    /* our client pair */
    uint64_t health_interval_ms; /* default 10000 */
    uint64_t health_timeout_ms;  /* default 5000 */
    unsigned unhealthy_after;    /* failures in a row; default 3 */
    unsigned healthy_after;      /* successes in a row; default 2 */
};

#define SL_AGENT_DEFAULT_HEALTH_INTERVAL_MS 10000
#define SL_AGENT_DEFAULT_HEALTH_TIMEOUT_MS 5000
#define SL_AGENT_DEFAULT_UNHEALTHY_AFTER 3
#define SL_AGENT_DEFAULT_HEALTHY_AFTER 2

/* How a setting of the hub: or node: section becomes command-line words
 * (the CLI merges them under the flags, cli/cli_boot.c). */
enum sl_config_kind {
    SL_CONFIG_VALUE,  /* --name=VALUE */
    SL_CONFIG_LIST,   /* --name=V1 --name=V2 ... (repeatable flags) */
    SL_CONFIG_SWITCH, /* true: --name; false: nothing */
    SL_CONFIG_ONOFF,  /* --name=on or --name=off */
};

/* One setting of a role's section. A key this file knows is validated
 * here (known set); another key is passed on as the flag of its name,
 * for the role to take or refuse (its kind then follows the value: a
 * list, true/false/yes/no, or a value), so an option new to a role works
 * in the file before this table lists it. */
struct sl_config_setting {
    char *flag;        /* the command-line option it stands for,
                          "--http" (owned) */
    int known;         /* validated by the table in config.c */
    char *key;         /* the key as the file spells it (owned) */
    enum sl_config_kind kind;
    char **values;     /* owned; VALUE: 1, LIST: 1 or more, SWITCH and
                          ONOFF: 1, "on" or "off" */
    size_t nvalues;
    unsigned line;     /* of the key, counted from 1 */
};

/* The hub: or node: section: the role's command-line options by the same
 * names without the dashes ("max-pairs: 64" is --max-pairs 64;
 * underscores may stand for the dashes). In node:, "api" is the node's
 * API (--node-api) even when the hub runs in the same process. */
struct sl_config_section {
    int present;                       /* the key was in the file */
    struct sl_config_setting *settings; /* owned array */
    size_t nsettings;
};

struct sl_config {
    struct sl_route_config *routes; /* owned array */
    size_t nroutes;
    struct sl_agent_config *agents; /* owned array; every route's agent
                                       names one of them */
    size_t nagents;
    struct sl_config_section hub, node;
};

/* The setting for flag (e.g. "--http") in section, or NULL. */
const struct sl_config_setting *
sl_config_setting_find(const struct sl_config_section *section,
                       const char *flag);

/* The keys a section accepts, in one line ("http, https, ..."): section is
 * "hub" or "node". NULL for another name. */
const char *sl_config_section_keys(const char *section);

/* Defaults of the caps and timers above (docs/configuration.md says why
 * these values). A 0 in a struct sl_route_config also means these. */
#define SL_ROUTE_DEFAULT_MAX_CONNECTIONS 4096
#define SL_ROUTE_DEFAULT_MAX_PER_SOURCE 256
#define SL_ROUTE_DEFAULT_MAX_PER_PREFIX 256
#define SL_ROUTE_DEFAULT_TCP_IDLE_MS 3600000
#define SL_ROUTE_DEFAULT_UDP_IDLE_MS 300000
#define SL_ROUTE_DEFAULT_UDP_UNREPLIED_MS 10000

/* Limits on the input: bigger files and deeper nesting are refused. */
#define SL_CONFIG_MAX_BYTES (1024 * 1024)
#define SL_CONFIG_MAX_DEPTH 32
#define SL_CONFIG_MAX_ROUTES 1024
/* A buffer this big holds any error line or route summary in full. */
#define SL_CONFIG_ERR_MAX 1024

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

/* Parses a duration: a bare integer is seconds; otherwise one or more
 * NUMBER UNIT pairs with UNIT ms, s, m or h ("500ms", "10s", "1m30s").
 * Returns 0 and *ms, or SL_EPARSE (also for 0 and anything over a week). */
int sl_config_parse_duration(const char *s, uint64_t *ms);

/* The scheme as written in the file: "tcp", "tcp4", ..., "udp6". */
const char *sl_config_scheme_name(const struct sl_route_config *r);

/* Writes a one-line summary of a route into buf (always NUL-terminated,
 * truncated to len) and returns buf, e.g.
 *   ssh-proxy: tcp4 127.0.0.1:2222 -> localhost:22
 * followed by the non-default options (", acl: 2 rules", ...). */
const char *sl_config_route_describe(const struct sl_route_config *r,
                                     char *buf, size_t len);

#endif
