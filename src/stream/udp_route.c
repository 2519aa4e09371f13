/* UDP routes: one listening socket per route; one session per client
 * address, each with its own connected upstream socket (so replies find
 * their client, and order within a session is the socket's order). Idle
 * sessions are swept by a timer. UDP may drop: a datagram that cannot be
 * sent at once is dropped and counted, never queued, so memory per session
 * is the session alone. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/proxy_proto.h"
#include "stream/agent_client.h"
#include "stream/route.h"
#include "tls/dtls_bio.h"

#define UDP_BUF_SIZE (64 * 1024)
#define UDP_TABLE_MAX 65536
/* Datagrams held while a session's target is being resolved. */
#define UDP_PENDING_MAX 8

struct pending_dgram {
    struct pending_dgram *next;
    size_t len;
    char data[];
};

struct udp_session {
    struct sl_link link; /* route->udp.sessions */
    struct udp_session *hnext;
    struct sl_route *route;
    uint64_t id;
    uint64_t last_ms;
    int closing;
    int connected;
    int replied;      /* the upstream has answered at least once */
    int source_taken; /* counted in route->sources */
    int sock_open;
    uv_udp_t sock;
    union sockaddr_any client;
    union sockaddr_any target;
    union sockaddr_any local; /* route's listen address, for PROXY */
    struct sl_hook_stream hs;
    uv_getaddrinfo_t *gai;
    struct pending_dgram *pending, **pending_tail;
    size_t npending;
    uint64_t bytes_in, bytes_out;
    struct sl_agent_udp *au; /* the DTLS session through route->agent */
};

static void session_close(struct udp_session *s, const char *why);

static const char *rname(const struct sl_route *route)
{
    return route->cfg->name;
}

/* ---- table ------------------------------------------------------------- */

/* Keyed (SipHash, random key per route): with a hash anyone can compute,
 * spoofed sources could be picked to land in one bucket and turn every
 * lookup into a walk of the whole table. */
static size_t bucket(const struct sl_route *route, const struct sockaddr *sa)
{
    uint8_t k[19] = {0};
    size_t n = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        k[n++] = 4;
        memcpy(k + n, &in->sin_addr, 4);
        n += 4;
        memcpy(k + n, &in->sin_port, 2);
        n += 2;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 =
            (const struct sockaddr_in6 *)(const void *)sa;
        k[n++] = 6;
        memcpy(k + n, &in6->sin6_addr, 16);
        n += 16;
        memcpy(k + n, &in6->sin6_port, 2);
        n += 2;
    }
    return (size_t)(sl_siphash24(route->sources.key, k, n) &
                    (route->udp.table_size - 1));
}

static struct udp_session *table_find(struct sl_route *route,
                                      const struct sockaddr *sa)
{
    for (struct udp_session *s = route->udp.table[bucket(route, sa)]; s;
         s = s->hnext)
        if (sl_addr_equal(&s->client.sa, sa))
            return s;
    return NULL;
}

static void table_del(struct sl_route *route, struct udp_session *s)
{
    struct udp_session **pp = &route->udp.table[bucket(route, &s->client.sa)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            s->hnext = NULL;
            return;
        }
    }
}

/* ---- sending ----------------------------------------------------------- */

static void drop(struct sl_route *route) { route->stats.dropped++; }

static void send_upstream(struct udp_session *s, const char *data, size_t len)
{
    struct sl_route *route = s->route;
    if (sl_hooks_on_read(&route->hooks, &s->hs, len, SL_HOOK_UP) != 0) {
        drop(route);
        session_close(s, "refused by a hook");
        return;
    }
    uv_buf_t bufs[2];
    unsigned n = 0;
    uint8_t hdr[232];
    if (route->cfg->relay_proxy_protocol_header) {
        int hl = sl_pp_encode_v2(hdr, sizeof(hdr), &s->client.sa,
                                 &s->local.sa, 0);
        if (hl < 0) {
            drop(route);
            return;
        }
        bufs[n++] = uv_buf_init((char *)hdr, (unsigned)hl);
    }
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    int rc;
    if (s->au != NULL) {
        /* One datagram is one record: a PROXY header goes in front of
         * the payload inside it. */
        char one[SL_DTLS_RECORD_MAX];
        if (n == 2 && bufs[0].len + len <= sizeof(one)) {
            memcpy(one, bufs[0].base, bufs[0].len);
            memcpy(one + bufs[0].len, data, len);
            rc = sl_agent_udp_send(s->au, one, bufs[0].len + len);
        } else {
            rc = n == 2 ? SL_ETOOBIG : sl_agent_udp_send(s->au, data, len);
        }
    } else {
        rc = uv_udp_try_send(&s->sock, bufs, n, NULL);
    }
    if (rc < 0) {
        drop(route);
        sl_trace(&route->ctx->log,
                 "route \"%s\": session #%llu: datagram to upstream dropped "
                 "(%s)",
                 rname(route), (unsigned long long)s->id, sl_strerror(rc));
        return;
    }
    route->stats.udp_datagrams_in++;
    s->bytes_in += len;
}

static void flush_pending(struct udp_session *s)
{
    struct pending_dgram *p = s->pending;
    s->pending = NULL;
    s->pending_tail = &s->pending;
    s->npending = 0;
    while (p != NULL) {
        struct pending_dgram *next = p->next;
        if (!s->closing)
            send_upstream(s, p->data, p->len);
        free(p);
        p = next;
    }
}

/* ---- session lifetime -------------------------------------------------- */

static void session_free(struct udp_session *s)
{
    struct sl_route *route = s->route;
    struct pending_dgram *p = s->pending;
    while (p != NULL) {
        struct pending_dgram *next = p->next;
        free(p);
        p = next;
    }
    route->stats.udp_sessions_active--;
    if (s->source_taken)
        sl_srctab_release(&route->sources, &s->client.sa);
    sl_hooks_on_close(&route->hooks, &s->hs);
    free(s);
    sl_route_unref(route);
}

static void on_session_sock_closed(uv_handle_t *h)
{
    struct udp_session *s = h->data;
    s->sock_open = 0;
    if (s->gai == NULL)
        session_free(s);
}

static void session_close(struct udp_session *s, const char *why)
{
    struct sl_route *route = s->route;
    if (s->closing)
        return;
    s->closing = 1;
    char a[SL_ADDR_STRLEN];
    if (sl_log_on(&route->ctx->log, SL_LOG_DEBUG))
        sl_log_event(&route->ctx->log, SL_LOG_DEBUG,
                     SL_LOG_FIELDS(SL_LOG_STR("route", rname(route)),
                                   SL_LOG_NUM("conn", s->id),
                                   SL_LOG_STR("client", sl_addr_str(
                                                            &s->client.sa, a)),
                                   SL_LOG_STR("target", route->target),
                                   SL_LOG_STR("event", "closed"),
                                   SL_LOG_STR("reason", why),
                                   SL_LOG_NUM("bytes",
                                              s->bytes_in + s->bytes_out),
                                   SL_LOG_NUM("bytes_in", s->bytes_in),
                                   SL_LOG_NUM("bytes_out", s->bytes_out)),
                     "route \"%s\": session #%llu from %s closed (%s; in "
                     "%llu bytes, out %llu bytes)",
                     rname(route), (unsigned long long)s->id, a, why,
                     (unsigned long long)s->bytes_in,
                     (unsigned long long)s->bytes_out);
    table_del(route, s);
    sl_list_del(&s->link);
    if (s->au != NULL) {
        sl_agent_udp_close(s->au); /* no callback after this */
        s->au = NULL;
    }
    if (s->gai != NULL)
        uv_cancel((uv_req_t *)s->gai);
    if (s->sock_open)
        uv_close((uv_handle_t *)&s->sock, on_session_sock_closed);
    else if (s->gai == NULL)
        session_free(s);
}

/* ---- upstream side ----------------------------------------------------- */

/* Every socket of a route shares one receive buffer: each datagram is sent
 * on (or dropped) before its callback returns, so the buffer is free again
 * for the next. */
static void on_route_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_route *route = h->data;
    (void)hint;
    *buf = uv_buf_init(route->udp.recv_buf, UDP_BUF_SIZE);
}

static void on_session_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct udp_session *s = h->data;
    (void)hint;
    *buf = uv_buf_init(s->route->udp.recv_buf, UDP_BUF_SIZE);
}

static void on_upstream_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                             const struct sockaddr *addr, unsigned flags)
{
    struct udp_session *s = h->data;
    struct sl_route *route = s->route;
    if (s->closing || (nread == 0 && addr == NULL))
        return;
    if (nread < 0) {
        /* An ICMP error (port unreachable) surfaces here on a connected
         * socket; the session lives on until idle, as the client may
         * retry once the service is up. */
        sl_debug(&route->ctx->log,
                 "route \"%s\": session #%llu: upstream %s: %s", rname(route),
                 (unsigned long long)s->id, route->target,
                 sl_strerror((int)nread));
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        drop(route);
        return;
    }
    s->last_ms = uv_now(route->ctx->loop);
    s->replied = 1;
    if (sl_hooks_on_read(&route->hooks, &s->hs, (size_t)nread,
                         SL_HOOK_DOWN) != 0) {
        drop(route);
        session_close(s, "refused by a hook");
        return;
    }
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int rc = uv_udp_try_send(&route->udp.sock, &b, 1, &s->client.sa);
    if (rc < 0) {
        drop(route);
        return;
    }
    route->stats.udp_datagrams_out++;
    s->bytes_out += (uint64_t)nread;
}

static int session_connect(struct udp_session *s)
{
    struct sl_route *route = s->route;
    int err = uv_udp_connect(&s->sock, &s->target.sa);
    if (err == 0)
        err = uv_udp_recv_start(&s->sock, on_session_alloc, on_upstream_recv);
    if (err < 0) {
        sl_route_upstream_failed(route, "session", (unsigned long long)s->id,
                                 &s->client.sa, err, "dropping the session");
        session_close(s, sl_strerror(err));
        return err;
    }
    s->connected = 1;
    flush_pending(s);
    return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res)
{
    struct udp_session *s = req->data;
    struct sl_route *route = s->route;
    free(req);
    s->gai = NULL;
    if (s->closing) {
        uv_freeaddrinfo(res);
        if (!s->sock_open)
            session_free(s);
        return;
    }
    /* A UDP target cannot tell us that an address is dead, so with both
     * families on offer pick IPv4 first: services on "localhost" most
     * often listen on 127.0.0.1 only. */
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = res; status == 0 && ai; ai = ai->ai_next) {
        if (!sl_route_family_ok(route, ai->ai_family) ||
            ai->ai_addrlen > sizeof(s->target))
            continue;
        if (pick == NULL || (ai->ai_family == AF_INET &&
                             pick->ai_family != AF_INET))
            pick = ai;
    }
    if (pick == NULL) {
        uv_freeaddrinfo(res);
        route->stats.failed++;
        sl_warn(&route->ctx->log,
                "route \"%s\": session #%llu: cannot resolve %s (%s)",
                rname(route), (unsigned long long)s->id, route->target,
                status < 0 ? sl_strerror(status) : "no usable address");
        session_close(s, "resolve failed");
        return;
    }
    memcpy(&s->target, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(res);
    session_connect(s);
}

/* ---- through an agent -------------------------------------------------- */

static void on_agent_ready(struct sl_agent_udp *u, void *arg, int status)
{
    struct udp_session *s = arg;
    (void)u;
    if (s->closing)
        return;
    if (status != 0) {
        s->au = NULL; /* it has shut itself */
        sl_route_upstream_failed(s->route, "session",
                                 (unsigned long long)s->id, &s->client.sa,
                                 status, "dropping the session");
        session_close(s, sl_strerror(status));
        return;
    }
    s->connected = 1;
    flush_pending(s);
}

static void on_agent_recv(struct sl_agent_udp *u, void *arg, const char *data,
                          size_t len)
{
    struct udp_session *s = arg;
    struct sl_route *route = s->route;
    (void)u;
    if (s->closing)
        return;
    s->last_ms = uv_now(route->ctx->loop);
    s->replied = 1;
    if (sl_hooks_on_read(&route->hooks, &s->hs, len, SL_HOOK_DOWN) != 0) {
        drop(route);
        session_close(s, "refused by a hook");
        return;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (uv_udp_try_send(&route->udp.sock, &b, 1, &s->client.sa) < 0) {
        drop(route);
        return;
    }
    route->stats.udp_datagrams_out++;
    s->bytes_out += len;
}

static void on_agent_closed(struct sl_agent_udp *u, void *arg,
                            const char *why)
{
    struct udp_session *s = arg;
    (void)u;
    s->au = NULL; /* it has shut itself */
    session_close(s, why);
}

/* Opens the session's DTLS session through the agent; datagrams wait in
 * pending until the agent's status. */
static int agent_session(struct udp_session *s)
{
    static const struct sl_agent_udp_cbs cbs = {
        .ready = on_agent_ready,
        .recv = on_agent_recv,
        .closed = on_agent_closed,
    };
    const struct sl_route_config *rc = s->route->cfg;
    struct sl_agent_hdr h = {.proto = SL_AGENT_PROTO_UDP,
                             .port = rc->target_port};
    snprintf(h.host, sizeof(h.host), "%s", rc->host ? rc->host : "localhost");
    s->au = sl_agent_udp_open(s->route->agent, &h, &cbs, s);
    if (s->au == NULL) {
        session_close(s, "cannot open a DTLS session to the agent");
        return UV_ENOMEM;
    }
    return 0;
}

/* One client prefix (/24, /64) may hold only so many sessions, so sources
 * spoofed inside one prefix cannot take the table from everyone else.
 * Spoofed floods would flood the log too: one line a second at most. */
static void refuse_per_prefix(struct sl_route *route,
                              const struct sockaddr *client, int err)
{
    uint64_t now = uv_now(route->ctx->loop);
    drop(route);
    route->stats.denied++;
    if (route->udp.refusal_logged_ms != 0 &&
        now - route->udp.refusal_logged_ms < 1000) {
        route->udp.refusals_unlogged++;
        return;
    }
    char a[SL_ADDR_STRLEN];
    const char *why =
        err == SL_ELIMIT ? "session limit per prefix" : sl_strerror(err);
    sl_log_event(&route->ctx->log, SL_LOG_INFO,
                 SL_LOG_FIELDS(SL_LOG_STR("route", rname(route)),
                               SL_LOG_STR("client", sl_addr_str(client, a)),
                               SL_LOG_STR("target", route->target),
                               SL_LOG_STR("event", "refused"),
                               SL_LOG_STR("reason", why)),
                 "route \"%s\": datagram from %s dropped (%s); %llu more "
                 "dropped since the last such line",
                 rname(route), a, why,
                 (unsigned long long)route->udp.refusals_unlogged);
    route->udp.refusal_logged_ms = now;
    route->udp.refusals_unlogged = 0;
}

static struct udp_session *session_new(struct sl_route *route,
                                       const struct sockaddr *client)
{
    const struct sl_route_config *rc = route->cfg;
    struct udp_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->route = route;
    memcpy(&s->client, client, sl_addr_len(client));
    memcpy(&s->local, &route->listen_addr,
           sl_addr_len((struct sockaddr *)&route->listen_addr));
    s->hs.route = rc->name;
    s->hs.udp = 1;
    s->hs.client = &s->client.sa;
    s->hs.peer = &s->client.sa;
    s->pending_tail = &s->pending;
    s->last_ms = uv_now(route->ctx->loop);

    const char *reason = "";
    int rc_hook = sl_hooks_pre_dial(&route->hooks, &s->hs, &reason);
    if (rc_hook == 0 && route->agent != NULL &&
        !sl_agent_usable(route->agent, 1)) {
        /* Known to be down: no session waits for a dial that fails. */
        rc_hook = UV_EHOSTDOWN;
        reason = "agent unhealthy";
        route->stats.failed++;
    }
    if (rc_hook != 0) {
        char a[SL_ADDR_STRLEN];
        if (rc_hook == SL_EDENIED)
            route->stats.denied++;
        drop(route);
        if (sl_log_on(&route->ctx->log, SL_LOG_DEBUG))
            sl_log_event(&route->ctx->log, SL_LOG_DEBUG,
                         SL_LOG_FIELDS(SL_LOG_STR("route", rname(route)),
                                       SL_LOG_STR("client",
                                                  sl_addr_str(client, a)),
                                       SL_LOG_STR("target", route->target),
                                       SL_LOG_STR("event", "refused"),
                                       SL_LOG_STR("reason", reason)),
                         "route \"%s\": datagram from %s dropped (%s)",
                         rname(route), a, reason);
        free(s);
        return NULL;
    }
    unsigned per_prefix = rc->max_sessions_per_prefix
                              ? rc->max_sessions_per_prefix
                              : SL_ROUTE_DEFAULT_MAX_PER_PREFIX;
    int taken = sl_srctab_take(&route->sources, client, per_prefix);
    if (taken != 0) {
        refuse_per_prefix(route, client, taken);
        free(s);
        return NULL;
    }
    s->source_taken = 1;

    /* Through an agent, the session's upstream is its DTLS session. */
    if (route->agent == NULL) {
        if (uv_udp_init(route->ctx->loop, &s->sock) < 0) {
            sl_srctab_release(&route->sources, client);
            free(s);
            drop(route);
            return NULL;
        }
        s->sock.data = s;
        s->sock_open = 1;
    }
    s->id = ++route->stats.udp_sessions_total;
    route->stats.udp_sessions_active++;
    route->open++;
    sl_list_add(&route->udp.sessions, &s->link);
    size_t b = bucket(route, client);
    s->hnext = route->udp.table[b];
    route->udp.table[b] = s;

    char a[SL_ADDR_STRLEN];
    if (sl_log_on(&route->ctx->log, SL_LOG_DEBUG))
        sl_log_event(&route->ctx->log, SL_LOG_DEBUG,
                     SL_LOG_FIELDS(SL_LOG_STR("route", rname(route)),
                                   SL_LOG_NUM("conn", s->id),
                                   SL_LOG_STR("client",
                                              sl_addr_str(client, a)),
                                   SL_LOG_STR("target", route->target),
                                   SL_LOG_STR("event", "accepted")),
                     "route \"%s\": session #%llu from %s opened",
                     rname(route), (unsigned long long)s->id, a);

    if (route->agent != NULL)
        return agent_session(s) == 0 ? s : NULL;
    struct sockaddr_storage lit;
    int lr = sl_route_literal_target(route, &lit);
    if (lr < 0) {
        session_close(s, "target of the wrong family");
        return NULL;
    }
    if (lr == 0) {
        memcpy(&s->target, &lit, sl_addr_len((struct sockaddr *)&lit));
        return session_connect(s) == 0 ? s : NULL;
    }
    uv_getaddrinfo_t *req = calloc(1, sizeof(*req));
    if (req == NULL) {
        session_close(s, "out of memory");
        return NULL;
    }
    req->data = s;
    int err = sl_route_resolve(route, req, on_resolved, SOCK_DGRAM);
    if (err < 0) {
        free(req);
        session_close(s, sl_strerror(err));
        return NULL;
    }
    s->gai = req;
    return s;
}

/* ---- client side ------------------------------------------------------- */

static void queue_pending(struct udp_session *s, const char *data, size_t len)
{
    if (s->npending >= UDP_PENDING_MAX) {
        drop(s->route);
        return;
    }
    struct pending_dgram *p = malloc(sizeof(*p) + len);
    if (p == NULL) {
        drop(s->route);
        return;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, data, len);
    *s->pending_tail = p;
    s->pending_tail = &p->next;
    s->npending++;
}

static void on_client_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                           const struct sockaddr *addr, unsigned flags)
{
    struct sl_route *route = h->data;
    if (nread == 0 && addr == NULL)
        return; /* nothing more to read */
    if (nread < 0) {
        sl_debug(&route->ctx->log, "route \"%s\": receive error: %s",
                 rname(route), sl_strerror((int)nread));
        return;
    }
    if (route->stopping || addr == NULL || (flags & UV_UDP_PARTIAL)) {
        drop(route);
        return;
    }
    struct udp_session *s = table_find(route, addr);
    if (s == NULL) {
        s = session_new(route, addr);
        if (s == NULL)
            return; /* dropped and counted */
    }
    s->last_ms = uv_now(route->ctx->loop);
    if (!s->connected)
        queue_pending(s, buf->base, (size_t)nread);
    else
        send_upstream(s, buf->base, (size_t)nread);
}

/* ---- route ------------------------------------------------------------- */

/* Sessions the upstream never answered are what spoofed sources leave
 * behind (nobody real is waiting): they go after this, not after the full
 * idle timeout. */
static uint64_t unreplied_ms(const struct sl_route *route)
{
    uint64_t ms = route->cfg->udp_unreplied_timeout_ms;
    return ms ? ms : SL_ROUTE_DEFAULT_UDP_UNREPLIED_MS;
}

static void on_sweep(uv_timer_t *t)
{
    struct sl_route *route = t->data;
    uint64_t now = uv_now(route->ctx->loop);
    uint64_t idle = route->cfg->udp_idle_timeout_ms
                        ? route->cfg->udp_idle_timeout_ms
                        : SL_ROUTE_DEFAULT_UDP_IDLE_MS;
    uint64_t unreplied = unreplied_ms(route);
    char why[64];
    snprintf(why, sizeof(why), "no reply within %llu ms",
             (unsigned long long)unreplied);
    struct sl_link *l = route->udp.sessions.next;
    while (l != &route->udp.sessions) {
        struct sl_link *next = l->next; /* session_close unlinks l */
        struct udp_session *s = container_of(l, struct udp_session, link);
        if (now - s->last_ms >= idle)
            session_close(s, "idle");
        else if (!s->replied && now - s->last_ms >= unreplied)
            session_close(s, why);
        l = next;
    }
}

static void on_route_handle_closed(uv_handle_t *h)
{
    struct sl_route *route = h->data;
    if (h == (uv_handle_t *)&route->udp.sock) {
        route->udp.sock_open = 0;
        free(route->udp.recv_buf);
        route->udp.recv_buf = NULL;
        free(route->udp.table);
        route->udp.table = NULL;
    }
    sl_route_unref(route);
}

int sl_udp_route_start(struct sl_route *route)
{
    const struct sl_route_config *rc = route->cfg;
    sl_list_init(&route->udp.sessions);

    unsigned max = rc->max_connections ? rc->max_connections
                                       : SL_ROUTE_DEFAULT_MAX_CONNECTIONS;
    route->limit.max = max;
    size_t ts = 64;
    while (ts < max && ts < UDP_TABLE_MAX)
        ts *= 2;
    route->udp.table = calloc(ts, sizeof(*route->udp.table));
    route->udp.recv_buf = malloc(UDP_BUF_SIZE);
    if (route->udp.table == NULL || route->udp.recv_buf == NULL) {
        free(route->udp.table);
        free(route->udp.recv_buf);
        route->udp.table = NULL;
        route->udp.recv_buf = NULL;
        return UV_ENOMEM;
    }
    route->udp.table_size = ts;

    int err = uv_timer_init(route->ctx->loop, &route->udp.sweep);
    if (err < 0)
        return err;
    route->udp.sweep.data = route;
    route->open++;

    err = uv_udp_init(route->ctx->loop, &route->udp.sock);
    if (err < 0)
        return err;
    route->udp.sock.data = route;
    route->udp.sock_open = 1;
    route->open++;
    unsigned flags = 0;
    if (route->listen_addr.ss_family == AF_INET6 &&
        rc->family == SL_FAMILY_V6)
        flags |= UV_UDP_IPV6ONLY;
    err = uv_udp_bind(&route->udp.sock,
                      (const struct sockaddr *)&route->listen_addr, flags);
    if (err == 0)
        err = uv_udp_recv_start(&route->udp.sock, on_route_alloc,
                                on_client_recv);
    if (err < 0)
        return err;
    int len = sizeof(route->listen_addr);
    uv_udp_getsockname(&route->udp.sock, (struct sockaddr *)&route->listen_addr,
                       &len);

    uint64_t every = rc->udp_sweep_interval_ms ? rc->udp_sweep_interval_ms
                                               : 60000;
    /* The short timeout of unanswered sessions needs sweeps as often. */
    if (every > unreplied_ms(route))
        every = unreplied_ms(route);
    uv_timer_start(&route->udp.sweep, on_sweep, every, every);
    route->started = 1;
    return 0;
}

void sl_udp_route_stop(struct sl_route *route)
{
    /* UDP has no end of stream to wait for: sessions close at once. */
    struct sl_link *l = route->udp.sessions.next;
    while (l != NULL && l != &route->udp.sessions) {
        struct sl_link *next = l->next;
        session_close(container_of(l, struct udp_session, link), "stopping");
        l = next;
    }
    if (!uv_is_closing((uv_handle_t *)&route->udp.sweep) &&
        route->udp.sweep.type == UV_TIMER)
        uv_close((uv_handle_t *)&route->udp.sweep, on_route_handle_closed);
    if (route->udp.sock_open && !uv_is_closing((uv_handle_t *)&route->udp.sock))
        uv_close((uv_handle_t *)&route->udp.sock, on_route_handle_closed);
}
