/* `sluice boot up --bridge`: the node role, a row of cli_boot.c's role
 * table. Starts the node (its saved bridges, plus --upstream when no
 * bridge links that upstream to that hub yet); its API address goes to
 * node.json. */
#include "cli/cli_boot_node.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/server.h"
#include "cli/cli_grant.h"
#include "cli/cli_util.h"
#include "core/error.h"
#include "net/addr.h"
#include "node/node.h"
#include "node/node_agent.h"
#include "node/node_state.h"
#include "node/node_url.h"
#include "proto/acl.h"

static const char node_usage[] =
    "usage: sluice boot up --bridge [--hub URL] [--upstream URL] [--token T]\n"
    "                      [--username U --password P]\n"
    "                      [--state-dir DIR] [--api ADDR]\n"
    "                      [--allow-public-upstream] [--pool N] [--framed]\n"
    "                      [--no-mux]\n"
    "                      [--inspect on|off] [--daemon]\n"
    "                      [--agent ADDR --agent-certs DIR]\n"
    "\n"
    "Runs a bridge node: it dials the hub and forwards the user connections\n"
    "the hub hands it to a local upstream service.\n"
    "  --hub URL       the hub, http://host:port or https://host:port\n"
    "                  (default " SL_NODE_HUB_DEFAULT "); also the hub of\n"
    "                  bridges created without one. Hubs sharing one store:\n"
    "                  --hub repeated (or URLs joined by commas), or a name\n"
    "                  with several addresses; a connection to each\n"
    "  --hub-ca FILE   CA certificates (PEM) an https hub is verified\n"
    "                  against (default: the system store)\n"
    "  --hub-pin sha256/BASE64  the hub's public key must be this one\n"
    "  --hub-insecure  do not verify the hub's certificate (tests only)\n"
    "  --allow RULE, --deny RULE  who may reach a tcp:// or udp:// bridge\n"
    "                  (ip:ADDR or cidr:ADDR/BITS; repeatable)\n"
    "  --proxy-protocol v1|v2  the upstream gets a PROXY header with the\n"
    "                  user's address\n"
    "  --max-conns N, --max-sessions N  TCP connections / UDP flows at\n"
    "                  once (default: no cap)\n"
    "  --upstream URL  the local service: http://host:port;\n"
    "                  tls://host:port for a TLS service the hub passes\n"
    "                  through unread; tcp:// or udp://host:port for a\n"
    "                  TCP or UDP service on a public port of the hub. A\n"
    "                  bridge to it is added unless one to the same hub\n"
    "                  exists\n"
    "  --token T       gateway token the hub demands for a new identity\n"
    "  --username U, --password P  the credentials of an allocation made\n"
    "                  on the hub beforehand (sluice proxy create): the\n"
    "                  bridge takes that identity; --password defaults to\n"
    "                  $SLUICE_BRIDGE_PASSWORD\n"
    "  --grant TOKEN|@FILE  a grant for a hub that demands them (sluice\n"
    "                  grant sign), presented by the --upstream bridge\n"
    "  --state-dir DIR where bridges.json and node.json live\n"
    "  --api ADDR      local REST API address (default " SL_NODE_API_DEFAULT
    ");\n"
    "                  with --proxy, --api is the hub's: use --node-api\n"
    "  --node-api ADDR the same, whatever other roles run\n"
    "  --allow-public-upstream  allow upstreams on public addresses\n"
    "  --pool N        idle data connections per bridge (default 2)\n"
    "  --framed        carry data in WebSocket frames, never raw (for\n"
    "                  proxies in the way that mangle raw upgrades)\n"
    "  --no-mux        never offer multiplexed data connections (protocol\n"
    "                  v2): a data connection per user connection\n"
    "  --inspect on|off  the request inspector of http:// bridges: the\n"
    "                  last 50 requests each, in the dashboard at the API's\n"
    "                  address (default on while the API is on)\n"
    "  --ping-ms MS, --dead-ms MS  keep-alive ping interval and dead-hub\n"
    "                  timeout (default 15000 and 45000)\n"
    "  --daemon        detach; logs go to DIR/node.log\n"
    "  --agent ADDR    the agent port (IP:PORT, [v6]:PORT): mutual TLS\n"
    "                  on TCP (ALPN http/1.1: this API and GET /info;\n"
    "                  sluice-stream/1: streams to targets) and DTLS on\n"
    "                  UDP, the same port number\n"
    "  --agent-certs DIR  ca.pem, agent.pem, agent.key of DIR (sluice agent\n"
    "                  certs); or --agent-ca FILE --agent-cert FILE\n"
    "                  --agent-key FILE one by one\n"
    "  --agent-allow RULE  a target network beyond the private ones\n"
    "                  (ip:ADDR or cidr:ADDR/BITS; repeatable)\n"
    "  --agent-name NAME  the name /info states (default: the host name)\n"
    "  --agent-max-streams N, --agent-max-sessions N  TCP streams / UDP\n"
    "                  sessions at once per client certificate (1024)\n"
    "  --agent-idle-ms MS, --agent-udp-idle-ms MS  a stream / session\n"
    "                  idle this long ends (3600000 and 300000)\n"
    "  --agent-no-udp  no DTLS listener\n"
    "\n"
    "Bridges saved in the state directory are started as well. For each\n"
    "bridge, once the hub has answered, one line goes to standard output:\n"
    "  bridge <identity> <public url> -> <upstream>\n";

struct node_opts {
    char hub_list[SL_NODE_URL_MAX]; /* --hub, repeated: joined by ',' */
    const char *hub, *upstream, *token, *api, *username, *password;
    const char *hub_ca, *hub_pin;
    const char *grant_arg;
    char grant[SL_NODE_GRANT_MAX]; /* read from grant_arg */
    struct sl_stream_opts streams;
    int no_mux;
    int allow_public, pool, framed, pool_given, hub_insecure;
    int inspect; /* 0 default, 1 on, -1 off */
    long ping_ms, dead_ms;
    long udp_idle_ms; /* hidden, for tests: UDP flow expiry */
    long hub_resolve_ms; /* hidden, for tests: hub names looked up again */
    /* the agent port */
    const char *agent_listen, *agent_certs, *agent_ca, *agent_cert,
        *agent_key, *agent_name;
    long agent_max_streams, agent_max_sessions, agent_idle_ms,
        agent_udp_idle_ms;
    int agent_no_udp;
    struct sl_node_agent_opts agent;
    char agent_paths[3][4096]; /* from --agent-certs */
};

/* The role's state. */
struct node_role {
    struct node_opts o;
};

/* A number in [min, max] for option name. Returns 0, or 2 (printed). */
static int parse_long(const char *name, const char *val, long min, long max,
                      long *out)
{
    char *end;
    long x = strtol(val, &end, 10);
    if (*val == '\0' || *end != '\0' || x < min || x > max) {
        fprintf(stderr, "sluice: %s: '%s' is not a number %ld-%ld\n", name,
                val, min, max);
        return 2;
    }
    *out = x;
    return 0;
}

static int node_parse(void *st, const struct sl_boot_common *c, int argc,
                      char **argv, int *i)
{
    struct node_opts *o = &((struct node_role *)st)->o;
    /* --api last: with the hub in the same process, it is the hub's. */
    static const struct sl_cli_str_opt with_value[] = {
        {"--upstream", offsetof(struct node_opts, upstream)},
        {"--token", offsetof(struct node_opts, token)},
        {"--username", offsetof(struct node_opts, username)},
        {"--password", offsetof(struct node_opts, password)},
        {"--hub-ca", offsetof(struct node_opts, hub_ca)},
        {"--hub-pin", offsetof(struct node_opts, hub_pin)},
        {"--grant", offsetof(struct node_opts, grant_arg)},
        {"--agent", offsetof(struct node_opts, agent_listen)},
        {"--agent-certs", offsetof(struct node_opts, agent_certs)},
        {"--agent-ca", offsetof(struct node_opts, agent_ca)},
        {"--agent-cert", offsetof(struct node_opts, agent_cert)},
        {"--agent-key", offsetof(struct node_opts, agent_key)},
        {"--agent-name", offsetof(struct node_opts, agent_name)},
        {"--node-api", offsetof(struct node_opts, api)},
        {"--api", offsetof(struct node_opts, api)},
    };
    const char *a = argv[*i], *val;
    int m = sl_cli_opt_value(argc, argv, i, "--hub", &val);
    if (m != 0) {
        size_t used = strlen(o->hub_list);
        if (m < 0 || used + strlen(val) + 2 > sizeof(o->hub_list)) {
            if (m > 0)
                fprintf(stderr, "sluice: --hub: the list of hubs is too "
                                "long\n");
            return 2;
        }
        snprintf(o->hub_list + used, sizeof(o->hub_list) - used, "%s%s",
                 used > 0 ? "," : "", val);
        o->hub = o->hub_list;
        return 1;
    }
    size_t n = sizeof(with_value) / sizeof(with_value[0]) - (c->proxy ? 1 : 0);
    m = sl_cli_opt_strings(argc, argv, i, with_value, n, o);
    if (m != 0)
        return m < 0 ? 2 : 1;
    int allow = 0;
    if ((m = sl_cli_opt_value(argc, argv, i, "--deny", &val)) != 0 ||
        (allow = 1, m = sl_cli_opt_value(argc, argv, i, "--allow", &val)) !=
            0) {
        struct sl_stream_opts *so = &o->streams;
        size_t *nr = allow ? &so->nallow : &so->ndeny;
        struct sl_acl *check = sl_acl_new();
        char why[160] = "out of memory";
        int bad = m < 0 || check == NULL || *nr == SL_STREAM_OPTS_RULES ||
                  strlen(val) >= SL_STREAM_OPTS_RULE_MAX ||
                  sl_acl_add(check, allow, val, 0, why, sizeof(why)) != 0;
        sl_acl_free(check);
        if (bad) {
            if (m > 0)
                fprintf(stderr, "sluice: %s %s: %s\n",
                        allow ? "--allow" : "--deny", val,
                        *nr == SL_STREAM_OPTS_RULES ? "too many rules" : why);
            return 2;
        }
        snprintf((allow ? so->allow : so->deny)[(*nr)++],
                 SL_STREAM_OPTS_RULE_MAX, "%s", val);
        return 1;
    }
    if ((m = sl_cli_opt_value(argc, argv, i, "--agent-allow", &val)) != 0) {
        struct sl_node_agent_opts *ao = &o->agent;
        struct sl_acl *check = sl_acl_new();
        char why[160] = "out of memory";
        int bad = m < 0 || check == NULL || ao->nallow == SL_AGENT_MAX_ALLOW ||
                  sl_acl_add(check, 1, val, 0, why, sizeof(why)) != 0;
        sl_acl_free(check);
        if (bad) {
            if (m > 0)
                fprintf(stderr, "sluice: --agent-allow %s: %s\n", val,
                        ao->nallow == SL_AGENT_MAX_ALLOW ? "too many rules"
                                                         : why);
            return 2;
        }
        ao->allow[ao->nallow++] = val;
        return 1;
    }
    static const char *const agent_numbers[] = {
        "--agent-max-streams", "--agent-max-sessions", "--agent-idle-ms",
        "--agent-udp-idle-ms"};
    for (size_t k = 0; k < 4; k++) {
        m = sl_cli_opt_value(argc, argv, i, agent_numbers[k], &val);
        if (m < 0)
            return 2;
        if (m == 0)
            continue;
        long *dst[] = {&o->agent_max_streams, &o->agent_max_sessions,
                       &o->agent_idle_ms, &o->agent_udp_idle_ms};
        if (parse_long(agent_numbers[k], val, k < 2 ? 1 : 100,
                       k < 2 ? 1000000 : 604800000, dst[k]) != 0)
            return 2;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--inspect", &val);
    if (m < 0)
        return 2;
    if (m > 0) {
        if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
            fprintf(stderr, "sluice: --inspect: '%s' is not on or off\n",
                    val);
            return 2;
        }
        o->inspect = strcmp(val, "on") == 0 ? 1 : -1;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--proxy-protocol", &val);
    if (m < 0)
        return 2;
    if (m > 0) {
        if (strcmp(val, "v1") != 0 && strcmp(val, "v2") != 0) {
            fprintf(stderr, "sluice: --proxy-protocol: '%s' is not v1 or "
                    "v2\n", val);
            return 2;
        }
        o->streams.proxy_protocol = val[1] - '0';
        return 1;
    }
    static const char *const caps[] = {"--max-conns", "--max-sessions"};
    for (size_t k = 0; k < 2; k++) {
        m = sl_cli_opt_value(argc, argv, i, caps[k], &val);
        if (m < 0)
            return 2;
        if (m == 0)
            continue;
        long x;
        if (parse_long(caps[k], val, 0, 1000000, &x) != 0)
            return 2;
        *(k == 0 ? &o->streams.max_connections : &o->streams.max_sessions) =
            (uint32_t)x;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--hub-resolve-ms", &val);
    if (m != 0)
        return m < 0 || parse_long("--hub-resolve-ms", val, 100, 86400000,
                                   &o->hub_resolve_ms) != 0
                   ? 2
                   : 1;
    m = sl_cli_opt_value(argc, argv, i, "--udp-idle-ms", &val);
    if (m != 0)
        return m < 0 || parse_long("--udp-idle-ms", val, 10, 86400000,
                                   &o->udp_idle_ms) != 0
                   ? 2
                   : 1;
    static const char *const numbers[] = {"--pool", "--ping-ms", "--dead-ms"};
    for (size_t k = 0; k < sizeof(numbers) / sizeof(numbers[0]); k++) {
        m = sl_cli_opt_value(argc, argv, i, numbers[k], &val);
        if (m < 0)
            return 2;
        if (m == 0)
            continue;
        long x;
        if (k == 0) {
            if (parse_long(numbers[k], val, 0, 16, &x) != 0)
                return 2;
            o->pool = (int)x;
            o->pool_given = 1;
        } else {
            if (parse_long(numbers[k], val, 10, 3600000, &x) != 0)
                return 2;
            *(k == 1 ? &o->ping_ms : &o->dead_ms) = x;
        }
        return 1;
    }
    if (strcmp(a, "--framed") == 0)
        o->framed = 1;
    else if (strcmp(a, "--no-mux") == 0)
        o->no_mux = 1;
    else if (strcmp(a, "--allow-public-upstream") == 0)
        o->allow_public = 1;
    else if (strcmp(a, "--hub-insecure") == 0)
        o->hub_insecure = 1;
    else if (strcmp(a, "--agent-no-udp") == 0)
        o->agent_no_udp = 1;
    else
        return 0;
    return 1;
}

/* --password, else $SLUICE_BRIDGE_PASSWORD when --username is given. */
static const char *node_password(const struct node_opts *o)
{
    if (o->password != NULL || o->username == NULL)
        return o->password;
    return getenv("SLUICE_BRIDGE_PASSWORD");
}

/* The agent port's options, its files looked at in the terminal. */
static int agent_check(struct node_opts *o)
{
    struct sl_node_agent_opts *ao = &o->agent;
    int any = o->agent_certs || o->agent_ca || o->agent_cert ||
              o->agent_key || ao->nallow || o->agent_name;
    if (o->agent_listen == NULL) {
        if (any)
            fprintf(stderr, "sluice: the --agent-* options need --agent "
                            "ADDR\n");
        return any ? 2 : 0;
    }
    static const char *const files[] = {"ca.pem", "agent.pem", "agent.key"};
    const char **dst[] = {&ao->ca_file, &ao->cert_file, &ao->key_file};
    const char *given[] = {o->agent_ca, o->agent_cert, o->agent_key};
    for (size_t k = 0; k < 3; k++) {
        if (given[k] != NULL) {
            *dst[k] = given[k];
        } else if (o->agent_certs != NULL) {
            snprintf(o->agent_paths[k], sizeof(o->agent_paths[k]), "%s/%s",
                     o->agent_certs, files[k]);
            *dst[k] = o->agent_paths[k];
        } else {
            fprintf(stderr, "sluice: --agent needs --agent-certs DIR (from "
                            "sluice agent certs), or --agent-ca, "
                            "--agent-cert and --agent-key\n");
            return 2;
        }
        if (access(*dst[k], R_OK) != 0) {
            fprintf(stderr, "sluice: agent: %s: %s\n", *dst[k],
                    strerror(errno));
            return 2;
        }
    }
    ao->listen = o->agent_listen;
    ao->name = o->agent_name;
    ao->max_streams = (unsigned)o->agent_max_streams;
    ao->max_sessions = (unsigned)o->agent_max_sessions;
    ao->idle_ms = (uint64_t)o->agent_idle_ms;
    ao->udp_idle_ms = (uint64_t)o->agent_udp_idle_ms;
    ao->no_udp = o->agent_no_udp;
    struct sockaddr_storage ss;
    if (sl_addr_parse(ao->listen, &ss) != 0) {
        fprintf(stderr, "sluice: --agent %s: not IP:PORT ([v6]:PORT for "
                        "IPv6)\n", ao->listen);
        return 2;
    }
    return 0;
}

static int node_check(void *st, const struct sl_boot_common *c)
{
    struct node_opts *o = &((struct node_role *)st)->o;
    (void)c;
    /* Bad URLs are refused here, in the terminal, before detaching. */
    char err[256];
    struct sl_node_url u, hubs[SL_NODE_HUBS_MAX];
    size_t nhubs;
    if (o->upstream != NULL &&
        sl_node_url_parse_upstream(o->upstream, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: --upstream %s\n", err);
        return 2;
    }
    if (o->hub != NULL &&
        sl_node_url_parse_hubs(o->hub, hubs, &nhubs, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: --hub %s\n", err);
        return 2;
    }
    /* Read here, in the terminal and before detaching. */
    if (o->grant_arg != NULL &&
        sl_cli_grant_arg("--grant", o->grant_arg, o->grant,
                         sizeof(o->grant)) != 0)
        return 2;
    if (o->grant_arg != NULL && o->upstream == NULL) {
        fprintf(stderr, "sluice: --grant needs --upstream (it is presented "
                        "by that bridge)\n");
        return 2;
    }
    if ((o->username != NULL || o->password != NULL) && o->upstream == NULL) {
        fprintf(stderr, "sluice: --username and --password need --upstream "
                        "(they are the credentials of that bridge)\n");
        return 2;
    }
    if (o->api != NULL && !sl_api_listen_is_loopback(o->api)) {
        fprintf(stderr, "sluice: node API %s: it has no token and "
                        "serves loopback only (127.0.0.1:PORT or "
                        "[::1]:PORT)\n", o->api);
        return 2;
    }
    if (agent_check(o) != 0)
        return 2;
    const char *pass = node_password(o);
    if ((o->username == NULL) != (pass == NULL || pass[0] == '\0')) {
        fprintf(stderr, "sluice: --username and --password go together "
                        "(the password may come from "
                        "$SLUICE_BRIDGE_PASSWORD)\n");
        return 2;
    }
    return 0;
}

static int node_start(void *st, struct sl_ctx *ctx,
                      const struct sl_boot_common *c,
                      struct sl_role_info *info)
{
    struct node_role *nr = st;
    const struct node_opts *o = &nr->o;
    /* With --proxy too and no --hub, the bridge dials this process's hub. */
    const char *hub = o->hub != NULL          ? o->hub
                      : c->hub_url[0] != '\0' ? c->hub_url
                                              : NULL;
    struct sl_node_options no = {
        .state_dir = c->state_dir,
        .api_listen = o->api,
        .allow_public_upstream = o->allow_public,
        .pool_size = o->pool_given ? o->pool : -1,
        .framed = o->framed,
        .no_mux = o->no_mux,
        .inspect = o->inspect,
        .hub_ca = o->hub_ca != NULL        ? o->hub_ca
                  : o->hub == NULL && c->hub_ca[0] != '\0' ? c->hub_ca
                                                          : NULL,
        .hub_pin = o->hub_pin,
        .hub_insecure = o->hub_insecure,
        .streams = &o->streams,
        .default_hub = hub,
        .ping_ms = (uint64_t)o->ping_ms,
        .dead_ms = (uint64_t)o->dead_ms,
        .agent = o->agent_listen != NULL ? &o->agent : NULL,
    };
    int rc = sl_node_start(ctx, &no);
    if (rc != 0)
        return rc;
    sl_node_set_udp_idle_ms(ctx->node, (uint64_t)o->udp_idle_ms);
    sl_node_set_hub_resolve_ms(ctx->node, (uint64_t)o->hub_resolve_ms);
    if (o->upstream != NULL) {
        char err[256] = "";
        struct sl_node_bridge_spec spec = {
            .upstream = o->upstream,
            .hub = hub,
            .token = o->token,
            .username = o->username,
            .password = node_password(o),
            .grant = o->grant[0] != '\0' ? o->grant : NULL,
        };
        struct sl_node_bridge *b = NULL;
        rc = sl_node_bridge_add(ctx->node, &spec, &b, err, sizeof(err));
        if (rc == SL_EEXIST && b != NULL) {
            /* Named on the command line: it runs, even if it was saved
             * disconnected (sluice bridge disconnect), with the grant
             * given now. */
            rc = o->grant[0] != '\0'
                     ? sl_node_bridge_update(b, NULL, o->grant, err,
                                             sizeof(err))
                     : 0;
            if (rc == 0)
                rc = sl_node_bridge_connect(b);
        }
        if (rc != 0) {
            sl_error(&ctx->log, "boot: cannot add the bridge: %s",
                     rc == SL_EPARSE || rc == SL_EDENIED ? err
                                                         : sl_strerror(rc));
            sl_node_stop(ctx->node, NULL, NULL);
            return rc;
        }
    }
    snprintf(info->api, sizeof(info->api), "%s",
             sl_node_api_address(ctx->node));
    return 0;
}

static void node_stop(void *st, struct sl_ctx *ctx, sl_boot_stopped_cb done,
                      void *arg)
{
    (void)st;
    sl_node_stop(ctx->node, done, arg);
}

const struct sl_boot_role sl_boot_role_node = {
    .name = "node",
    .flag = "--bridge",
    .usage = node_usage,
    .state_dir = 1,
    .state_size = sizeof(struct node_role),
    .parse = node_parse,
    .check = node_check,
    .start = node_start,
    .stop = node_stop,
};
