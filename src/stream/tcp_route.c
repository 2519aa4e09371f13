/* TCP routes: accept, optional PROXY header, admission hooks, resolve,
 * connect (with timeout and fallback over the resolved addresses),
 * optional PROXY v2 header upstream, then the relay. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/acl.h"
#include "proto/proxy_proto.h"
#include "stream/agent_client.h"
#include "stream/route.h"

#define LISTEN_BACKLOG 1024
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_TARGETS 8
/* In mixed mode a client that says nothing is not waiting to send a PROXY
 * header (senders put it first, at once): after this long we assume none
 * comes, so server-speaks-first protocols (SSH, SMTP) still work. */
#define MIXED_FIRST_BYTE_MS 1000
/* Room for the header and whatever the client sent right behind it. */
#define PP_BUF_SIZE (SL_PP_MAX_HEADER + 1024)

enum phase {
    PH_PROXY,   /* reading the PROXY header */
    PH_DIAL,    /* resolving and connecting */
    PH_RELAY,
    PH_CLOSING,
};

struct gai_req {
    uv_getaddrinfo_t req;
    struct tcp_conn *conn;
};

struct targets {
    union sockaddr_any addr[MAX_TARGETS];
    size_t n, next;
};

struct early_write {
    uv_write_t req;
    struct tcp_conn *conn;
    uint8_t hdr[232];
};

struct tcp_conn {
    struct sl_link link;
    struct sl_route *route;
    uint64_t id;
    enum phase phase;
    int refs;          /* open handles + pending requests */
    int admitted;      /* counted in conns_active; on_close hooks owed */
    int source_taken;  /* counted in route->sources under client_addr */
    int upstream_open; /* upstream handle initialised and not closed */
    int retrying;      /* upstream closing to try the next address */
    int reason;        /* why it ended, for the log */
    uint64_t started_ms;
    uint64_t progress_ms; /* last byte read either way, while relaying */

    struct sl_xprt client;
    struct sl_xprt upstream;
    uv_timer_t timer;
    uv_connect_t connect_req;

    union sockaddr_any peer;     /* TCP peer of the client socket */
    union sockaddr_any client_addr; /* real client (PROXY src or peer) */
    union sockaddr_any orig_dst; /* PROXY dst, or our local address */
    union sockaddr_any up_addr;  /* upstream being dialled / connected */
    int have_orig_dst;

    uint8_t *pp_buf; /* PROXY phase buffer; afterwards the early data */
    size_t pp_len;
    size_t early_off; /* early data: pp_buf[early_off..pp_len] */
    size_t early_bytes; /* early data forwarded, for the log */
    struct gai_req *gai;
    struct targets *targets;

    struct sl_hook_stream hs;
    struct sl_relay relay;
    struct sl_agent_conn adial; /* the dial through route->agent */
};

static void conn_close(struct tcp_conn *c, int reason);
static void dial_next(struct tcp_conn *c);
static void on_listen_connection(uv_stream_t *server, int status);
static int listener_open(struct sl_route *route);

static const char *cname(const struct tcp_conn *c)
{
    return c->route->cfg->name;
}

/* One line about connection c with the fields a log reader filters on
 * (core/log.h): route, conn, client, target, event, reason; bytes only
 * once the connection has ended (has_bytes). */
__attribute__((format(printf, 8, 9))) static void
conn_event(const struct tcp_conn *c, enum sl_log_level level,
           const struct sockaddr *client, const char *event,
           const char *reason, int has_bytes, uint64_t in_bytes,
           const char *fmt, ...)
{
    const struct sl_log *log = &c->route->ctx->log;
    if (!sl_log_on(log, level))
        return;
    char a[SL_ADDR_STRLEN], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint64_t out_bytes =
        has_bytes ? sl_relay_bytes(&c->relay, SL_RELAY_DOWN) : 0;
    struct sl_log_field f[] = {
        SL_LOG_STR("route", cname(c)),
        SL_LOG_NUM("conn", c->id),
        SL_LOG_STR("client", sl_addr_str(client, a)),
        SL_LOG_STR("target", c->route->target),
        SL_LOG_STR("event", event),
        SL_LOG_STR("reason", reason),
        SL_LOG_NUM("bytes", in_bytes + out_bytes),
        SL_LOG_NUM("bytes_in", in_bytes),
        SL_LOG_NUM("bytes_out", out_bytes),
    };
    sl_log_event(log, level, f, has_bytes ? 9 : 6, "%s", msg);
}

/* ---- lifetime ---------------------------------------------------------- */

static void conn_free(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    if (c->admitted) {
        route->stats.conns_active--;
        sl_hooks_on_close(&route->hooks, &c->hs);
    }
    if (c->source_taken)
        sl_srctab_release(&route->sources, &c->client_addr.sa);
    sl_list_del(&c->link);
    route->tcp.nconns--;
    free(c->pp_buf);
    free(c->targets);
    free(c);
    sl_route_unref(route);
}

static void conn_unref(struct tcp_conn *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct tcp_conn *c = h->data;
    if (h == (uv_handle_t *)&c->upstream.tcp) {
        c->upstream_open = 0;
        if (c->retrying && c->phase == PH_DIAL) {
            c->retrying = 0;
            c->refs--; /* dial_next takes a new one for the new handle */
            dial_next(c);
            return;
        }
    }
    conn_unref(c);
}

static void close_handle(struct tcp_conn *c, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = c;
        uv_close(h, on_conn_handle_closed);
    }
}

/* The upstream may carry TLS (a stream through an agent): its transport
 * closes it. */
static void close_upstream(struct tcp_conn *c)
{
    if (c->route->agent != NULL)
        sl_agent_conn_abort(&c->adial);
    if (!sl_xprt_is_closing(&c->upstream)) {
        c->upstream.tcp.data = c;
        sl_xprt_close(&c->upstream, on_conn_handle_closed);
    }
}

static void log_end(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    char a[SL_ADDR_STRLEN];
    uint64_t secs_ms = uv_now(route->ctx->loop) - c->started_ms;
    uint64_t in = sl_relay_bytes(&c->relay, SL_RELAY_UP) + c->early_bytes;
    const char *why = c->reason == 0 ? "done" : sl_strerror(c->reason);
    conn_event(c, SL_LOG_DEBUG, &c->client_addr.sa, "closed", why, 1, in,
               "route \"%s\": connection #%llu from %s closed after "
               "%llu.%03llu s (in %llu bytes, out %llu bytes): %s",
               cname(c), (unsigned long long)c->id,
               sl_addr_str(&c->client_addr.sa, a),
               (unsigned long long)(secs_ms / 1000),
               (unsigned long long)(secs_ms % 1000), (unsigned long long)in,
               (unsigned long long)sl_relay_bytes(&c->relay, SL_RELAY_DOWN),
               why);
}

static void on_relay_done(struct sl_relay *r, int reason)
{
    struct tcp_conn *c = container_of(r, struct tcp_conn, relay);
    if (c->reason == 0)
        c->reason = reason;
    c->phase = PH_CLOSING;
    log_end(c);
    c->refs -= 2; /* client and upstream, closed by the relay */
    close_handle(c, (uv_handle_t *)&c->timer);
    if (c->refs == 0) /* only if the timer was already closed */
        conn_free(c);
}

static void conn_close(struct tcp_conn *c, int reason)
{
    if (c->phase == PH_CLOSING)
        return;
    if (c->phase == PH_RELAY) {
        sl_relay_abort(&c->relay, reason);
        return;
    }
    c->phase = PH_CLOSING;
    c->reason = reason;
    if (c->gai != NULL) {
        /* The lookup may already run in the pool; then its callback comes
         * and finds the connection closing. */
        uv_cancel((uv_req_t *)&c->gai->req);
    }
    close_handle(c, (uv_handle_t *)&c->client.tcp);
    close_handle(c, (uv_handle_t *)&c->timer);
    if (c->upstream_open)
        close_upstream(c);
}

/* ---- relay ------------------------------------------------------------- */

static int on_relay_read(struct sl_relay *r, size_t n, enum sl_relay_dir dir)
{
    struct tcp_conn *c = container_of(r, struct tcp_conn, relay);
    c->progress_ms = uv_now(c->route->ctx->loop);
    return sl_hooks_on_read(&c->route->hooks, &c->hs, n,
                            dir == SL_RELAY_UP ? SL_HOOK_UP : SL_HOOK_DOWN);
}

static void on_early_written(uv_write_t *req, int status)
{
    struct early_write *w = container_of(req, struct early_write, req);
    struct tcp_conn *c = w->conn;
    /* A failed write shows up in the relay as a write error too. */
    (void)status;
    free(c->pp_buf);
    c->pp_buf = NULL;
    c->pp_len = c->early_off = 0;
    free(w);
}

static uint64_t idle_ms(const struct tcp_conn *c)
{
    uint64_t ms = c->route->cfg->tcp_idle_timeout_ms;
    return ms ? ms : SL_ROUTE_DEFAULT_TCP_IDLE_MS;
}

/* Progress resets the idle timer lazily: reads only stamp progress_ms and
 * the timer, when it fires, sleeps again for what is left, so a busy relay
 * does not touch the timer heap on every read. */
static void on_idle_timer(uv_timer_t *t)
{
    struct tcp_conn *c = t->data;
    if (c->phase != PH_RELAY)
        return;
    uint64_t now = uv_now(c->route->ctx->loop);
    uint64_t idle = idle_ms(c);
    if (now - c->progress_ms < idle) {
        uv_timer_start(&c->timer, on_idle_timer,
                       idle - (now - c->progress_ms), 0);
        return;
    }
    char a[SL_ADDR_STRLEN];
    conn_event(c, SL_LOG_INFO, &c->client_addr.sa, "closed", "idle timeout",
               1, sl_relay_bytes(&c->relay, SL_RELAY_UP) + c->early_bytes,
               "route \"%s\": connection #%llu from %s closed: idle timeout "
               "(no byte either way for %llu ms)",
               cname(c), (unsigned long long)c->id,
               sl_addr_str(&c->client_addr.sa, a), (unsigned long long)idle);
    conn_close(c, UV_ETIMEDOUT);
}

static void start_relay(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    const struct sl_route_config *rc = route->cfg;

    uv_tcp_nodelay(&c->upstream.tcp, 1);
    /* From here on the timer bounds silence (tcp_idle_timeout). */
    c->progress_ms = uv_now(route->ctx->loop);
    uv_timer_start(&c->timer, on_idle_timer, idle_ms(c), 0);

    /* The PROXY header and the bytes the client sent early go first: uv
     * writes are ordered, so the relay's own writes queue behind them. */
    size_t early = c->pp_len - c->early_off;
    if (early > 0) {
        /* Bytes read with the PROXY header are payload like any other. */
        c->early_bytes = early;
        int err = sl_hooks_on_read(&route->hooks, &c->hs, early, SL_HOOK_UP);
        if (err != 0) {
            conn_close(c, err);
            return;
        }
    }
    if (rc->relay_proxy_protocol_header || early > 0) {
        struct early_write *w = calloc(1, sizeof(*w));
        if (w == NULL) {
            conn_close(c, UV_ENOMEM);
            return;
        }
        w->conn = c;
        uv_buf_t bufs[2];
        unsigned nbufs = 0;
        if (rc->relay_proxy_protocol_header) {
            const struct sockaddr *dst =
                c->have_orig_dst ? &c->orig_dst.sa : NULL;
            int n = sl_pp_encode_v2(w->hdr, sizeof(w->hdr),
                                    &c->client_addr.sa, dst, 1);
            if (n < 0) {
                free(w);
                conn_close(c, n);
                return;
            }
            bufs[nbufs++] = uv_buf_init((char *)w->hdr, (unsigned)n);
        }
        if (early > 0)
            bufs[nbufs++] =
                uv_buf_init((char *)c->pp_buf + c->early_off, (unsigned)early);
        int err = sl_xprt_write(&w->req, &c->upstream, bufs, nbufs,
                                on_early_written);
        if (err < 0) {
            free(w);
            conn_close(c, err);
            return;
        }
    } else {
        free(c->pp_buf);
        c->pp_buf = NULL;
    }

    c->phase = PH_RELAY;
    c->relay.data = c;
    c->relay.on_read = on_relay_read;
    c->relay.on_done = on_relay_done;
    /* The hooks count, never read: the bytes may stay in the kernel. */
    struct sl_relay_opts opts = {.pool = route->pool, .splice = 1};
    /* On failure the relay closes both handles and calls on_relay_done. */
    sl_relay_start(&c->relay, &c->client, &c->upstream, &opts);
    if (sl_relay_active(&c->relay))
        sl_debug(&route->ctx->log, "route \"%s\": connection #%llu: relay %s",
                 cname(c), (unsigned long long)c->id,
                 sl_relay_spliced(&c->relay) ? "spliced (zero-copy)"
                                             : "copying");
}

/* ---- dial -------------------------------------------------------------- */

static void dial_failed(struct tcp_conn *c, int err)
{
    sl_route_upstream_failed(c->route, "connection",
                             (unsigned long long)c->id, &c->client_addr.sa,
                             err, "closing the client");
    conn_close(c, err);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct tcp_conn *c = t->data;
    if (c->phase == PH_DIAL)
        dial_failed(c, UV_ETIMEDOUT);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct tcp_conn *c = req->data;
    if (c->phase != PH_DIAL)
        return; /* closing: the handle's close cancelled us */
    if (status == 0) {
        start_relay(c);
        return;
    }
    if (c->targets != NULL && c->targets->next < c->targets->n) {
        char a[SL_ADDR_STRLEN];
        sl_debug(&c->route->ctx->log,
                 "route \"%s\": connection #%llu: connect to %s failed (%s),"
                 " trying the next address",
                 cname(c), (unsigned long long)c->id,
                 sl_addr_str(&c->up_addr.sa, a), sl_strerror(status));
        /* A failed socket cannot connect again: close it, and dial the
         * next address from its close callback. */
        c->retrying = 1;
        close_handle(c, (uv_handle_t *)&c->upstream.tcp);
        return;
    }
    dial_failed(c, status);
}

/* Dials targets->addr[next]; on synchronous failure moves on. */
static void dial_next(struct tcp_conn *c)
{
    int err = UV_EAI_NONAME;
    while (c->targets != NULL && c->targets->next < c->targets->n) {
        c->up_addr = c->targets->addr[c->targets->next++];
        sl_xprt_init(&c->upstream);
        err = uv_tcp_init(c->route->ctx->loop, &c->upstream.tcp);
        if (err < 0)
            break;
        c->upstream.tcp.data = c;
        c->upstream_open = 1;
        c->refs++;
        c->connect_req.data = c;
        err = uv_tcp_connect(&c->connect_req, &c->upstream.tcp, &c->up_addr.sa,
                             on_connected);
        if (err == 0)
            return;
        if (c->targets->next < c->targets->n) {
            c->retrying = 1;
            close_handle(c, (uv_handle_t *)&c->upstream.tcp);
            return;
        }
        break;
    }
    dial_failed(c, err);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res)
{
    struct gai_req *g = container_of(req, struct gai_req, req);
    struct tcp_conn *c = g->conn;
    free(g);
    c->gai = NULL;
    if (c->phase != PH_DIAL) {
        uv_freeaddrinfo(res);
        conn_unref(c);
        return;
    }
    c->refs--; /* the request's reference; c still has its handles */
    if (status < 0) {
        uv_freeaddrinfo(res);
        dial_failed(c, status);
        return;
    }
    for (struct addrinfo *ai = res; ai && c->targets->n < MAX_TARGETS;
         ai = ai->ai_next) {
        if (!sl_route_family_ok(c->route, ai->ai_family) ||
            ai->ai_addrlen > sizeof(union sockaddr_any))
            continue;
        memcpy(&c->targets->addr[c->targets->n++], ai->ai_addr,
               ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    dial_next(c);
}

static void on_agent_dialled(struct sl_agent_conn *d, int status)
{
    struct tcp_conn *c = d->data;
    if (c->phase != PH_DIAL)
        return;
    if (status == 0) {
        start_relay(c);
        return;
    }
    sl_debug(&c->route->ctx->log, "route \"%s\": connection #%llu: %s",
             cname(c), (unsigned long long)c->id, sl_agent_conn_why(d));
    dial_failed(c, status);
}

/* The target is the agent's to dial; a route through an agent known to
 * be down refuses at once rather than wait for a dial to time out. */
static void start_agent_dial(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    const struct sl_route_config *rc = route->cfg;
    if (!sl_agent_usable(route->agent, 0)) {
        dial_failed(c, UV_EHOSTDOWN);
        return;
    }
    struct sl_agent_hdr h = {.proto = SL_AGENT_PROTO_TCP,
                             .port = rc->target_port};
    snprintf(h.host, sizeof(h.host), "%s", rc->host ? rc->host : "localhost");
    c->adial.data = c;
    c->adial.cb = on_agent_dialled;
    int err = sl_agent_conn_start(&c->adial, route->agent, &c->upstream, &h);
    if (c->upstream.tcp.type == UV_TCP) {
        c->upstream_open = 1;
        c->refs++;
    }
    if (err != 0)
        dial_failed(c, err);
}

static void start_dial(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    const struct sl_route_config *rc = route->cfg;

    c->phase = PH_DIAL;
    if (route->agent != NULL) {
        uv_timer_start(&c->timer, on_connect_timeout,
                       rc->connect_timeout_ms ? rc->connect_timeout_ms
                                              : 10000,
                       0);
        start_agent_dial(c);
        return;
    }
    c->targets = calloc(1, sizeof(*c->targets));
    if (c->targets == NULL) {
        conn_close(c, UV_ENOMEM);
        return;
    }
    uv_timer_start(&c->timer, on_connect_timeout,
                   rc->connect_timeout_ms ? rc->connect_timeout_ms : 10000, 0);

    struct sockaddr_storage lit;
    int lr = sl_route_literal_target(route, &lit);
    if (lr < 0) {
        dial_failed(c, lr);
        return;
    }
    if (lr == 0) {
        memcpy(&c->targets->addr[0], &lit, sl_addr_len((struct sockaddr *)&lit));
        c->targets->n = 1;
        dial_next(c);
        return;
    }

    struct gai_req *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        conn_close(c, UV_ENOMEM);
        return;
    }
    g->conn = c;
    int err = sl_route_resolve(route, &g->req, on_resolved, SOCK_STREAM);
    if (err < 0) {
        free(g);
        dial_failed(c, err);
        return;
    }
    c->gai = g;
    c->refs++;
}

/* ---- admission --------------------------------------------------------- */

static void admit(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    const char *reason = "";
    int rc = sl_hooks_pre_dial(&route->hooks, &c->hs, &reason);
    if (rc == 0) {
        /* Keyed on the real client (after PROXY parsing): behind a trusted
         * load balancer the peer is the balancer itself. */
        unsigned per_source = route->cfg->max_connections_per_source
                                  ? route->cfg->max_connections_per_source
                                  : SL_ROUTE_DEFAULT_MAX_PER_SOURCE;
        rc = sl_srctab_take(&route->sources, &c->client_addr.sa, per_source);
        if (rc == 0)
            c->source_taken = 1;
        else
            reason = rc == SL_ELIMIT ? "connection limit per source"
                                     : "out of memory";
    }
    if (rc != 0) {
        char a[SL_ADDR_STRLEN];
        route->stats.denied++;
        conn_event(c, SL_LOG_INFO, &c->client_addr.sa, "refused", reason, 0,
                   0, "route \"%s\": connection #%llu from %s denied (%s)",
                   cname(c), (unsigned long long)c->id,
                   sl_addr_str(&c->client_addr.sa, a), reason);
        conn_close(c, rc);
        return;
    }
    c->admitted = 1;
    route->stats.conns_active++;
    start_dial(c);
}

/* ---- PROXY header ------------------------------------------------------ */

static void pp_done(struct tcp_conn *c)
{
    uv_read_stop((uv_stream_t *)&c->client.tcp);
    uv_timer_stop(&c->timer);
    admit(c);
}

static void pp_fail(struct tcp_conn *c, const char *why, int err)
{
    struct sl_route *route = c->route;
    char a[SL_ADDR_STRLEN];
    route->stats.failed++;
    conn_event(c, SL_LOG_INFO, &c->peer.sa, "closed", why, 0, 0,
               "route \"%s\": connection #%llu from %s closed: %s",
               cname(c), (unsigned long long)c->id,
               sl_addr_str(&c->peer.sa, a), why);
    conn_close(c, err);
}

static void on_pp_timeout(uv_timer_t *t)
{
    struct tcp_conn *c = t->data;
    if (c->phase != PH_PROXY)
        return;
    if (c->route->cfg->proxy_protocol == SL_PP_MIXED && c->pp_len == 0) {
        pp_done(c); /* nothing said: no header, see MIXED_FIRST_BYTE_MS */
        return;
    }
    pp_fail(c, "no complete PROXY header in time", UV_ETIMEDOUT);
}

static void on_pp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tcp_conn *c = h->data;
    (void)hint;
    if (c->pp_buf == NULL)
        c->pp_buf = malloc(PP_BUF_SIZE);
    if (c->pp_buf == NULL) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)c->pp_buf + c->pp_len,
                       (unsigned)(PP_BUF_SIZE - c->pp_len));
}

static void on_pp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_conn *c = s->data;
    const struct sl_route_config *rc = c->route->cfg;
    (void)buf;
    if (c->phase != PH_PROXY)
        return;
    if (nread == 0)
        return;
    if (nread < 0) {
        pp_fail(c, nread == UV_EOF ? "client left before its PROXY header"
                                   : "read error before the PROXY header",
                (int)nread);
        return;
    }
    c->pp_len += (size_t)nread;

    if (rc->proxy_protocol == SL_PP_MIXED &&
        !sl_pp_detect(c->pp_buf, c->pp_len)) {
        c->early_off = 0; /* no header: everything is payload */
        pp_done(c);
        return;
    }
    struct sl_pp_info info;
    int n = sl_pp_parse(c->pp_buf, c->pp_len, &info);
    if (n == SL_EINCOMPLETE) {
        if (c->pp_len >= PP_BUF_SIZE)
            pp_fail(c, "PROXY header too long", SL_ETOOBIG);
        else if (rc->proxy_protocol == SL_PP_MIXED)
            /* It has begun: give it the full header timeout now. */
            uv_timer_start(&c->timer, on_pp_timeout,
                           rc->proxy_protocol_timeout_ms
                               ? rc->proxy_protocol_timeout_ms
                               : 10000,
                           0);
        return;
    }
    if (n < 0) {
        pp_fail(c, n == SL_ETOOBIG ? "PROXY header too long"
                                   : "malformed PROXY header",
                n);
        return;
    }
    c->early_off = (size_t)n;
    if (info.has_addrs && (info.src.ss_family == AF_INET ||
                           info.src.ss_family == AF_INET6)) {
        memcpy(&c->client_addr, &info.src,
               sl_addr_len((struct sockaddr *)&info.src));
        if (info.dst.ss_family == AF_INET || info.dst.ss_family == AF_INET6) {
            memcpy(&c->orig_dst, &info.dst,
                   sl_addr_len((struct sockaddr *)&info.dst));
            c->have_orig_dst = 1;
        }
    }
    pp_done(c);
}

/* ---- accept ------------------------------------------------------------ */

static int pp_trusted(const struct sl_route_config *rc,
                      const struct sockaddr *peer)
{
    if (rc->pp_trusted != NULL)
        return sl_acl_allows(rc->pp_trusted, peer);
    /* The config loader always sets a list; should a route come without
     * one, trust what the loader's default trusts: this machine. */
    return sl_addr_is_loopback(peer);
}

static void start_conn(struct tcp_conn *c)
{
    struct sl_route *route = c->route;
    const struct sl_route_config *rc = route->cfg;
    struct sockaddr_storage ss, v4;
    int len = sizeof(ss);
    memset(&c->peer, 0, sizeof(c->peer));
    if (uv_tcp_getpeername(&c->client.tcp, (struct sockaddr *)&ss, &len) == 0) {
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; log,
         * match and relay them as the IPv4 addresses they are. */
        const struct sockaddr *sa = (struct sockaddr *)&ss;
        if (sl_addr_unmap(sa, &v4))
            sa = (struct sockaddr *)&v4;
        memcpy(&c->peer, sa, sl_addr_len(sa));
    }
    c->client_addr = c->peer;
    len = sizeof(ss);
    if (uv_tcp_getsockname(&c->client.tcp, (struct sockaddr *)&ss, &len) == 0) {
        const struct sockaddr *sa = (struct sockaddr *)&ss;
        if (sl_addr_unmap(sa, &v4))
            sa = (struct sockaddr *)&v4;
        memcpy(&c->orig_dst, sa, sl_addr_len(sa));
        c->have_orig_dst = 1;
    }
    uv_tcp_nodelay(&c->client.tcp, 1);

    /* Formatted here, not inside sl_debug's arguments: those are not
     * evaluated below debug level, and the refusals below print a. */
    char a[SL_ADDR_STRLEN];
    sl_addr_str(&c->peer.sa, a);
    conn_event(c, SL_LOG_DEBUG, &c->peer.sa, "accepted", NULL, 0, 0,
               "route \"%s\": connection #%llu from %s accepted", cname(c),
               (unsigned long long)c->id, a);

    /* max_connections counts every accepted connection, also those still
     * reading a PROXY header or dialling, as HAProxy's maxconn does: a
     * cap that only counted relays would let half-open ones pile up. */
    unsigned max = rc->max_connections ? rc->max_connections
                                       : SL_ROUTE_DEFAULT_MAX_CONNECTIONS;
    if (route->tcp.nconns > max) {
        route->stats.denied++;
        conn_event(c, SL_LOG_INFO, &c->peer.sa, "refused",
                   "connection limit", 0, 0,
                   "route \"%s\": connection #%llu from %s denied "
                   "(connection limit, %u)",
                   cname(c), (unsigned long long)c->id, a, max);
        conn_close(c, SL_ELIMIT);
        return;
    }

    if (rc->proxy_protocol == SL_PP_DISABLED) {
        admit(c);
        return;
    }
    if (!pp_trusted(rc, &c->peer.sa)) {
        if (rc->proxy_protocol == SL_PP_REQUIRED) {
            route->stats.denied++;
            conn_event(c, SL_LOG_INFO, &c->peer.sa, "refused",
                       "untrusted PROXY source", 0, 0,
                       "route \"%s\": connection #%llu from %s denied (not "
                       "a trusted PROXY protocol source)",
                       cname(c), (unsigned long long)c->id, a);
            conn_close(c, SL_EDENIED);
            return;
        }
        admit(c); /* mixed: an untrusted source's bytes are payload */
        return;
    }
    c->phase = PH_PROXY;
    uint64_t timeout =
        rc->proxy_protocol_timeout_ms ? rc->proxy_protocol_timeout_ms : 10000;
    if (rc->proxy_protocol == SL_PP_MIXED && timeout > MIXED_FIRST_BYTE_MS)
        timeout = MIXED_FIRST_BYTE_MS;
    uv_timer_start(&c->timer, on_pp_timeout, timeout, 0);
    int err = uv_read_start((uv_stream_t *)&c->client.tcp, on_pp_alloc, on_pp_read);
    if (err < 0)
        pp_fail(c, "cannot read", err);
}

static void on_backoff(uv_timer_t *t)
{
    struct sl_route *route = t->data;
    if (route->stopping || route->tcp.listener_open)
        return;
    if (listener_open(route) != 0) {
        route->tcp.backoff_ms = route->tcp.backoff_ms * 2 > BACKOFF_MAX_MS
                                    ? BACKOFF_MAX_MS
                                    : route->tcp.backoff_ms * 2;
        uv_timer_start(&route->tcp.backoff, on_backoff, route->tcp.backoff_ms,
                       0);
        return;
    }
    sl_info(&route->ctx->log, "route \"%s\": accepting again", route->cfg->name);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct sl_route *route = h->data;
    route->tcp.listener_open = 0;
    sl_route_unref(route);
}

/* Accept errors (EMFILE, ENFILE, ENOMEM) repeat as long as their cause
 * lasts; instead of spinning on them, close the listener and listen again
 * on the same address after a growing pause. libuv has no way to pause a
 * listening socket in place. */
static void accept_backoff(struct sl_route *route, int err)
{
    if (route->tcp.backoff_ms == 0)
        route->tcp.backoff_ms = BACKOFF_MIN_MS;
    else if (route->tcp.backoff_ms * 2 <= BACKOFF_MAX_MS)
        route->tcp.backoff_ms *= 2;
    sl_warn(&route->ctx->log,
            "route \"%s\": accept failed (%s); pausing the listener for "
            "%llu ms",
            route->cfg->name, sl_strerror(err),
            (unsigned long long)route->tcp.backoff_ms);
    if (route->tcp.listener_open &&
        !uv_is_closing((uv_handle_t *)&route->tcp.listener))
        uv_close((uv_handle_t *)&route->tcp.listener, on_listener_closed);
    uv_timer_start(&route->tcp.backoff, on_backoff, route->tcp.backoff_ms, 0);
}

static void on_reject_closed(uv_handle_t *h)
{
    struct sl_route *route = h->data;
    route->tcp.reject_open = 0;
    sl_route_unref(route);
}

/* No memory for connection state: this connection alone is closed, as
 * nginx and HAProxy do, and the listener goes on. Only when the spare
 * handle is still closing from the last one does the listener pause. */
static void accept_reject(struct sl_route *route, uv_stream_t *server)
{
    if (route->tcp.reject_open) {
        accept_backoff(route, UV_ENOMEM);
        return;
    }
    sl_warn(&route->ctx->log, "route \"%s\": out of memory accepting a "
            "connection; closing it", route->cfg->name);
    uv_tcp_init(route->ctx->loop, &route->tcp.reject);
    route->tcp.reject.data = route;
    route->tcp.reject_open = 1;
    route->open++;
    (void)uv_accept(server, (uv_stream_t *)&route->tcp.reject);
    uv_close((uv_handle_t *)&route->tcp.reject, on_reject_closed);
}

static void on_listen_connection(uv_stream_t *server, int status)
{
    struct sl_route *route = server->data;
    if (route->stopping || uv_is_closing((uv_handle_t *)server))
        return;
    if (status < 0) {
        accept_backoff(route, status);
        return;
    }
    struct tcp_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        accept_reject(route, server);
        return;
    }
    c->route = route;
    c->id = ++route->stats.conns_total;
    c->started_ms = uv_now(route->ctx->loop);
    c->hs.route = route->cfg->name;
    c->hs.udp = 0;
    c->hs.client = &c->client_addr.sa;
    c->hs.peer = &c->peer.sa;
    sl_xprt_init(&c->client);
    uv_tcp_init(route->ctx->loop, &c->client.tcp);
    uv_timer_init(route->ctx->loop, &c->timer);
    c->client.tcp.data = c;
    c->timer.data = c;
    c->refs = 2;
    sl_list_add(&route->tcp.conns, &c->link);
    route->tcp.nconns++;
    route->open++;

    int err = uv_accept(server, (uv_stream_t *)&c->client.tcp);
    if (err < 0) {
        conn_close(c, err);
        accept_backoff(route, err);
        return;
    }
    route->tcp.backoff_ms = 0;
    start_conn(c);
}

static int listener_open(struct sl_route *route)
{
    int err = uv_tcp_init(route->ctx->loop, &route->tcp.listener);
    if (err < 0)
        return err;
    route->tcp.listener.data = route;
    route->tcp.listener_open = 1;
    route->open++;
    unsigned flags = 0;
    if (route->listen_addr.ss_family == AF_INET6 &&
        route->cfg->family == SL_FAMILY_V6)
        flags |= UV_TCP_IPV6ONLY;
    err = uv_tcp_bind(&route->tcp.listener,
                      (const struct sockaddr *)&route->listen_addr, flags);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&route->tcp.listener, LISTEN_BACKLOG,
                        on_listen_connection);
    if (err < 0) {
        uv_close((uv_handle_t *)&route->tcp.listener, on_listener_closed);
        return err;
    }
    /* Port 0 becomes the port the kernel chose; later re-listens (after a
     * back-off) reuse it. */
    int len = sizeof(route->listen_addr);
    uv_tcp_getsockname(&route->tcp.listener,
                       (struct sockaddr *)&route->listen_addr, &len);
    return 0;
}

int sl_tcp_route_start(struct sl_route *route)
{
    sl_list_init(&route->tcp.conns);
    int err = uv_timer_init(route->ctx->loop, &route->tcp.backoff);
    if (err < 0)
        return err;
    route->tcp.backoff.data = route;
    route->open++;
    err = listener_open(route);
    if (err < 0)
        return err;
    route->started = 1;
    return 0;
}

static void on_backoff_closed(uv_handle_t *h)
{
    sl_route_unref(h->data);
}

void sl_tcp_route_stop(struct sl_route *route)
{
    if (route->tcp.backoff.type != UV_TIMER)
        return; /* start never got that far */
    if (!uv_is_closing((uv_handle_t *)&route->tcp.backoff))
        uv_close((uv_handle_t *)&route->tcp.backoff, on_backoff_closed);
    if (route->tcp.listener_open &&
        !uv_is_closing((uv_handle_t *)&route->tcp.listener))
        uv_close((uv_handle_t *)&route->tcp.listener, on_listener_closed);
}

void sl_tcp_route_abort(struct sl_route *route)
{
    /* conn_close may free nothing synchronously (frees happen in close
     * callbacks), so walking the list is safe. */
    if (route->tcp.conns.next == NULL)
        return;
    for (struct sl_link *l = route->tcp.conns.next; l != &route->tcp.conns;
         l = l->next) {
        struct tcp_conn *c = container_of(l, struct tcp_conn, link);
        conn_close(c, UV_ECANCELED);
    }
}
