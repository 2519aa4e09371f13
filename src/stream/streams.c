#include "stream/streams.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/error.h"
#include "proto/acl.h"
#include "stream/agent_client.h"
#include "stream/route.h"

/* Read buffers kept for reuse across relays: enough for a burst of busy
 * connections, bounded so an idle process gives memory back. */
#define POOL_MAX_FREE 32

struct sl_streams {
    struct sl_ctx *ctx;
    const struct sl_config *cfg;
    struct sl_route *routes; /* nroutes */
    size_t nroutes;
    size_t nstarted;    /* routes[0..nstarted) had their start called */
    size_t routes_open; /* started routes not yet fully closed */
    struct sl_relay_pool pool;
    struct sl_agents *agents; /* of the agents: section, or NULL */
    int agents_stopping;
    uv_timer_t stats_timer;
    uv_timer_t grace_timer;
    int timers_open;
    int grace_closing;
    int stopping;
    int finished;
    sl_streams_done_cb done;
};

static const char *scheme_name(const struct sl_route_config *rc)
{
    static const char *const names[2][3] = {{"tcp", "tcp4", "tcp6"},
                                            {"udp", "udp4", "udp6"}};
    int s = rc->scheme == SL_SCHEME_UDP;
    int f = rc->family == SL_FAMILY_V4 ? 1 : rc->family == SL_FAMILY_V6 ? 2 : 0;
    return names[s][f];
}

void sl_streams_log_stats(const struct sl_streams *s, const struct sl_log *log,
                          enum sl_log_level level)
{
    if (s == NULL || !sl_log_on(log, level))
        return;
    for (size_t i = 0; i < s->nstarted; i++) {
        const struct sl_route *r = &s->routes[i];
        const struct sl_stream_stats *st = &r->stats;
        if (r->cfg->scheme == SL_SCHEME_TCP)
            sl_log_write(log, level,
                         "route \"%s\": stats: connections %llu total, %llu "
                         "active; in %llu bytes, out %llu bytes; denied %llu, "
                         "failed %llu",
                         r->cfg->name, (unsigned long long)st->conns_total,
                         (unsigned long long)st->conns_active,
                         (unsigned long long)st->bytes_in,
                         (unsigned long long)st->bytes_out,
                         (unsigned long long)st->denied,
                         (unsigned long long)st->failed);
        else
            sl_log_write(log, level,
                         "route \"%s\": stats: sessions %llu total, %llu "
                         "active; in %llu datagrams/%llu bytes, out %llu "
                         "datagrams/%llu bytes; denied %llu, dropped %llu, "
                         "failed %llu",
                         r->cfg->name,
                         (unsigned long long)st->udp_sessions_total,
                         (unsigned long long)st->udp_sessions_active,
                         (unsigned long long)st->udp_datagrams_in,
                         (unsigned long long)st->bytes_in,
                         (unsigned long long)st->udp_datagrams_out,
                         (unsigned long long)st->bytes_out,
                         (unsigned long long)st->denied,
                         (unsigned long long)st->dropped,
                         (unsigned long long)st->failed);
    }
    sl_agents_log(s->agents, log, level);
}

static void on_timer_closed(uv_handle_t *h);

static void maybe_finish(struct sl_streams *s);

static void on_agents_stopped(void *arg)
{
    struct sl_streams *s = arg;
    s->agents = NULL;
    maybe_finish(s);
}

static void maybe_finish(struct sl_streams *s)
{
    if (!s->stopping || s->finished || s->routes_open > 0)
        return;
    if (!s->grace_closing) {
        s->grace_closing = 1;
        uv_close((uv_handle_t *)&s->grace_timer, on_timer_closed);
    }
    /* The routes are closed: nothing uses the agents any more. */
    if (s->agents != NULL) {
        if (!s->agents_stopping) {
            s->agents_stopping = 1;
            sl_agents_stop(s->agents, on_agents_stopped, s);
        }
        return;
    }
    if (s->timers_open > 0)
        return;
    s->finished = 1;
    struct sl_ctx *ctx = s->ctx;
    sl_streams_log_stats(s, &ctx->log, SL_LOG_INFO);
    sl_relay_pool_drain(&s->pool);
    for (size_t i = 0; i < s->nroutes; i++)
        sl_srctab_free(&s->routes[i].sources);
    sl_streams_done_cb done = s->done;
    free(s->routes);
    free(s);
    ctx->streams = NULL;
    if (done != NULL)
        done(ctx);
}

void sl_streams_route_closed(struct sl_route *route)
{
    struct sl_streams *s = route->streams;
    sl_debug(&s->ctx->log, "route \"%s\": closed", route->cfg->name);
    s->routes_open--;
    maybe_finish(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sl_streams *s = h->data;
    s->timers_open--;
    maybe_finish(s);
}

static void on_stats_timer(uv_timer_t *t)
{
    struct sl_streams *s = t->data;
    sl_streams_log_stats(s, &s->ctx->log, SL_LOG_DEBUG);
    /* Relay buffers idle for a whole interval go back, as on the node. */
    sl_relay_pool_trim(&s->pool);
}

static void on_grace_over(uv_timer_t *t)
{
    struct sl_streams *s = t->data;
    size_t live = 0;
    for (size_t i = 0; i < s->nstarted; i++)
        if (s->routes[i].cfg->scheme == SL_SCHEME_TCP)
            live += s->routes[i].tcp.nconns;
    if (live > 0)
        sl_info(&s->ctx->log,
                "streams: grace period over; closing %zu live connection(s)",
                live);
    for (size_t i = 0; i < s->nstarted; i++)
        if (s->routes[i].cfg->scheme == SL_SCHEME_TCP)
            sl_tcp_route_abort(&s->routes[i]);
}

static int route_listen_addr(const struct sl_route_config *rc,
                             struct sockaddr_storage *out)
{
    const char *bind = rc->bind;
    if (bind == NULL || bind[0] == '\0')
        bind = rc->family == SL_FAMILY_V6 ? "::" : "0.0.0.0";
    if (sl_addr_parse_ip(bind, rc->listen_port, out) != 0)
        return SL_ECONFIG;
    if ((rc->family == SL_FAMILY_V4 && out->ss_family != AF_INET) ||
        (rc->family == SL_FAMILY_V6 && out->ss_family != AF_INET6))
        return SL_ECONFIG;
    return 0;
}

static int route_start(struct sl_streams *s, struct sl_route *route)
{
    const struct sl_route_config *rc = route->cfg;
    struct sl_log *log = &s->ctx->log;
    int err = route_listen_addr(rc, &route->listen_addr);
    if (err < 0) {
        sl_error(log, "route \"%s\": field \"bind\": \"%s\" is not an %s "
                      "address",
                 rc->name, rc->bind ? rc->bind : "",
                 rc->family == SL_FAMILY_V4   ? "IPv4"
                 : rc->family == SL_FAMILY_V6 ? "IPv6"
                                              : "IPv4 or IPv6");
        return err;
    }
    snprintf(route->scheme, sizeof(route->scheme), "%s", scheme_name(rc));
    if (sl_addr_join_host_port(rc->host ? rc->host : "localhost",
                               rc->target_port, route->target,
                               sizeof(route->target)) != 0)
        snprintf(route->target, sizeof(route->target), "?");
    if (rc->agent != NULL) {
        /* The loader checked the name; the agents started with it. */
        route->agent = sl_agents_find(s->agents, rc->agent);
        if (route->agent == NULL) {
            sl_error(log, "route \"%s\": agent \"%s\" is not running",
                     rc->name, rc->agent);
            return SL_ECONFIG;
        }
        size_t n = strlen(route->target);
        snprintf(route->target + n, sizeof(route->target) - n,
                 " via agent %s", rc->agent);
    }

    /* Admission and accounting are hooks like any other. */
    if (rc->acl != NULL)
        sl_hooks_add_pre_dial(&route->hooks, sl_hook_acl, rc->acl);
    sl_hooks_add_pre_dial(&route->hooks, sl_hook_limit, &route->limit);
    sl_hooks_add_on_read(&route->hooks, sl_hook_count_bytes, &route->stats);

    err = rc->scheme == SL_SCHEME_TCP
              ? sl_srctab_init(&route->sources, 32, 64,
                               rc->max_connections)
              : sl_srctab_init(&route->sources, 24, 64,
                               rc->max_connections);
    if (err < 0) {
        sl_error(log, "route \"%s\": cannot start: %s", rc->name,
                 sl_strerror(err));
        return err;
    }
    if (rc->scheme == SL_SCHEME_TCP) {
        /* Counts admitted connections; tcp_route.c also caps every
         * accepted one, PROXY header or not yet. */
        route->limit.max = rc->max_connections
                               ? rc->max_connections
                               : SL_ROUTE_DEFAULT_MAX_CONNECTIONS;
        route->limit.active = &route->stats.conns_active;
        err = sl_tcp_route_start(route);
    } else {
        route->limit.active = &route->stats.udp_sessions_active;
        err = sl_udp_route_start(route); /* sets limit.max */
    }
    char a[SL_ADDR_STRLEN];
    if (err < 0) {
        sl_error(log, "route \"%s\": cannot listen on %s %s: %s", rc->name,
                 route->scheme, sl_addr_str((struct sockaddr *)&route->listen_addr, a),
                 sl_strerror(err));
        return err;
    }
    static const char *const pp_names[] = {"disabled", "mixed", "required"};
    sl_info(log,
            "route \"%s\": %s listening on %s, forwarding to %s (acl: %zu "
            "rule(s), proxy protocol: %s%s)",
            rc->name, route->scheme,
            sl_addr_str((struct sockaddr *)&route->listen_addr, a),
            route->target, rc->acl ? sl_acl_count(rc->acl) : 0,
            (unsigned)rc->proxy_protocol < 3 ? pp_names[rc->proxy_protocol]
                                             : "?",
            rc->relay_proxy_protocol_header ? ", v2 header sent upstream"
                                            : "");
    return 0;
}

int sl_streams_start(struct sl_ctx *ctx, const struct sl_config *cfg)
{
    struct sl_streams *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->ctx = ctx;
    s->cfg = cfg;
    s->pool.max_free = POOL_MAX_FREE;
    ctx->streams = s;
    uv_timer_init(ctx->loop, &s->stats_timer);
    uv_timer_init(ctx->loop, &s->grace_timer);
    s->stats_timer.data = s;
    s->grace_timer.data = s;
    s->timers_open = 2;
    uv_timer_start(&s->stats_timer, on_stats_timer,
                   SL_STREAMS_STATS_INTERVAL_MS, SL_STREAMS_STATS_INTERVAL_MS);
    /* Counters are for people reading logs; they must not keep a loop that
     * has nothing else to do alive. */
    uv_unref((uv_handle_t *)&s->stats_timer);

    /* The agents first: routes point at them. */
    int aerr = sl_agents_start(ctx, cfg, &s->agents);
    if (aerr != 0)
        return aerr;
    size_t n = cfg != NULL ? cfg->nroutes : 0;
    if (n > 0) {
        s->routes = calloc(n, sizeof(*s->routes));
        if (s->routes == NULL)
            return UV_ENOMEM;
    }
    s->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_route *route = &s->routes[i];
        route->streams = s;
        route->ctx = ctx;
        route->cfg = &cfg->routes[i];
        route->pool = &s->pool;
        s->nstarted++;
        s->routes_open++;
        int err = route_start(s, route);
        if (err < 0)
            return err;
    }
    return 0;
}

void sl_streams_stop(struct sl_ctx *ctx, sl_streams_done_cb done)
{
    struct sl_streams *s = ctx->streams;
    if (s == NULL) {
        if (done != NULL)
            done(ctx);
        return;
    }
    if (s->stopping)
        return;
    s->stopping = 1;
    s->done = done;
    size_t live = 0;
    for (size_t i = 0; i < s->nstarted; i++) {
        struct sl_route *route = &s->routes[i];
        route->stopping = 1;
        if (route->cfg->scheme == SL_SCHEME_TCP) {
            live += route->tcp.nconns;
            sl_tcp_route_stop(route);
        } else {
            sl_udp_route_stop(route);
        }
        if (route->open == 0) /* never opened anything */
            sl_streams_route_closed(route);
    }
    if (live > 0) {
        uint64_t grace = ctx->drain_grace_ms ? ctx->drain_grace_ms
                                             : SL_STREAMS_DEFAULT_GRACE_MS;
        sl_info(&ctx->log,
                "streams: waiting up to %llu ms for %zu live connection(s)",
                (unsigned long long)grace, live);
        uv_timer_start(&s->grace_timer, on_grace_over, grace, 0);
    }
    /* The grace timer is closed by maybe_finish once every route is. */
    uv_close((uv_handle_t *)&s->stats_timer, on_timer_closed);
    maybe_finish(s);
}

size_t sl_streams_count(const struct sl_streams *s)
{
    return s != NULL ? s->nstarted : 0;
}

int sl_streams_route_info(const struct sl_streams *s, size_t i,
                          struct sl_stream_route_info *out)
{
    if (s == NULL || i >= s->nstarted)
        return SL_ENOTFOUND;
    const struct sl_route *r = &s->routes[i];
    out->name = r->cfg->name;
    out->scheme = r->scheme;
    out->listen = r->listen_addr;
    out->host = r->cfg->host ? r->cfg->host : "localhost";
    out->target_port = r->cfg->target_port;
    return 0;
}

int sl_streams_route_stats(const struct sl_streams *s, size_t i,
                           struct sl_stream_stats *out)
{
    if (s == NULL || i >= s->nstarted)
        return SL_ENOTFOUND;
    *out = s->routes[i].stats;
    return 0;
}

struct sl_agents *sl_streams_agents(struct sl_streams *s)
{
    return s != NULL ? s->agents : NULL;
}

struct sl_hooks *sl_streams_route_hooks(struct sl_streams *s, size_t i)
{
    if (s == NULL || i >= s->nstarted)
        return NULL;
    return &s->routes[i].hooks;
}
