/* An allocation's public stream ports (docs/hub.md, "TCP and UDP through
 * bridges"): the lease of a port from --stream-ports, kept in the store
 * so it survives reconnects and restarts; the TCP listener on it; the
 * admission of each user connection (ACL, caps) before any bridge is
 * asked to dial; the PROXY header the upstream may want. A user
 * connection then pairs with a data connection like a TLS passthrough
 * user: bytes both ways, counted against the allocation's traffic. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "hub/hub_int.h"
#include "proto/acl.h"
#include "proto/proxy_proto.h"
#include "tunnel/control.h"

#define HUB_PP_MAX 232 /* a PROXY v2 header always fits */

static const char *kind_name(int kind)
{
    return kind == SL_STORE_TCP ? "tcp" : "udp";
}

/* A socket bound (and for TCP listening) on the hub's stream address at
 * port, made here rather than by libuv so a port taken on the host is
 * known at once, with no handle to close asynchronously. Returns the
 * descriptor or a negative errno. */
static int bound_socket(struct sl_hub *hub, int kind, int port)
{
    struct sockaddr_storage ss = hub->stream_bind;
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    int fd = socket(ss.ss_family,
                    (kind == SL_STORE_TCP ? SOCK_STREAM : SOCK_DGRAM) |
                        SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (kind == SL_STORE_TCP)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        (kind == SL_STORE_TCP && listen(fd, 511) != 0)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* The allocation's port of kind: its lease when that port can be bound,
 * else the first free one of the range (the lease moves there). Returns
 * the descriptor (*port set) or SL_ELIMIT when the range is exhausted. */
static int lease(struct sl_hub *hub, struct hub_alloc *a, int kind, int *port)
{
    int p = 0;
    if (sl_store_port_get(hub->store, a->identity, kind, &p) == 0 && p > 0) {
        int fd = bound_socket(hub, kind, p);
        if (fd >= 0) {
            *port = p;
            return fd;
        }
        sl_warn(hub->log, "hub alloc %s: leased %s port %d cannot be "
                "bound (%s); leasing another", a->identity, kind_name(kind),
                p, sl_strerror(fd));
    }
    for (int q = hub->stream_port_min; q > 0 && q <= hub->stream_port_max;
         q++) {
        if (sl_store_port_taken(hub->store, kind, q) != 0)
            continue; /* another allocation's (or the store failed) */
        int fd = bound_socket(hub, kind, q);
        if (fd < 0)
            continue; /* taken on the host: skipped */
        if (sl_store_port_set(hub->store, a->identity, kind, q) != 0) {
            close(fd);
            continue;
        }
        *port = q;
        return fd;
    }
    return SL_ELIMIT;
}

static void streams_unref(struct hub_streams *s)
{
    if (--s->refs > 0)
        return;
    sl_acl_free(s->acl);
    free(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct hub_streams *s = (struct hub_streams *)((char *)h -
                                                   offsetof(struct
                                                            hub_streams,
                                                            tcp));
    struct sl_hub *hub = s->hub;
    streams_unref(s);
    hub_handle_closed(hub);
}

static void admit(struct hub_streams *s, struct hub_conn *c)
{
    struct sl_hub *hub = s->hub;
    struct hub_alloc *a = s->a;
    struct sockaddr_storage peer, local;
    int plen = sizeof(peer), llen = sizeof(local);
    if (a == NULL || uv_tcp_getpeername(&c->xp.tcp, (struct sockaddr *)&peer,
                                        &plen) != 0 ||
        uv_tcp_getsockname(&c->xp.tcp, (struct sockaddr *)&local,
                           &llen) != 0) {
        hub_conn_close(c, UV_ECONNABORTED);
        return;
    }
    struct sockaddr_storage un;
    if (sl_addr_unmap((struct sockaddr *)&peer, &un))
        peer = un;
    /* Decided before any bridge is asked to dial. */
    const char *why = hub_streams_admit(s, 0, (struct sockaddr *)&peer,
                                        (struct sockaddr *)&peer);
    if (why != NULL) {
        uint64_t unlogged;
        if (hub_burst_log(hub, HUB_CAP_STREAMS, &unlogged))
            sl_info(hub->log, "hub alloc %s: tcp connection from %s refused "
                    "(%s)%s", a->identity, c->peer_ip, why,
                    unlogged ? " (and others since the last line)" : "");
        hub_conn_reset(c);
        return;
    }
    c->streams = s;
    s->refs++;
    s->tcp_active++;
    s->stats.conns_total++;
    s->stats.conns_active = s->tcp_active;
    if (s->opts.proxy_protocol != 0) {
        char *h = malloc(HUB_PP_MAX);
        int n = h == NULL ? UV_ENOMEM
                : s->opts.proxy_protocol == 1
                    ? sl_pp_encode_v1(h, HUB_PP_MAX, (struct sockaddr *)&peer,
                                      (struct sockaddr *)&local)
                    : sl_pp_encode_v2((uint8_t *)h, HUB_PP_MAX,
                                      (struct sockaddr *)&peer,
                                      (struct sockaddr *)&local, 1);
        if (n < 0) {
            free(h);
            hub_conn_close(c, n);
            return;
        }
        /* The upstream's first bytes: go_opaque sends head[] first. */
        c->head = h;
        c->head_len = (size_t)n;
        c->head_cap = HUB_PP_MAX;
    }
    hub_user_passthrough(c, a);
}

static void on_stream_connection(uv_stream_t *l, int status)
{
    struct hub_streams *s = (struct hub_streams *)((char *)l -
                                                   offsetof(struct
                                                            hub_streams,
                                                            tcp));
    struct sl_hub *hub = s->hub;
    if (status < 0) {
        sl_warn(hub->log, "hub: accept failed on a stream port: %s",
                sl_strerror(status));
        return;
    }
    struct hub_conn *c = hub_conn_accept(hub, l, on_stream_connection);
    if (c != NULL)
        admit(s, c);
}

void hub_streams_conn_closed(struct hub_conn *c)
{
    struct hub_streams *s = c->streams;
    c->streams = NULL;
    s->tcp_active--;
    s->stats.conns_active = s->tcp_active;
    struct sl_hook_stream st = {.route = s->a ? s->a->identity : "-"};
    sl_hooks_on_close(&s->hooks, &st);
    streams_unref(s);
}

/* The cap of the stream's kind: the connection limit for TCP, the
 * session limit for UDP. */
static int hook_cap(void *arg, const struct sl_hook_stream *st,
                    const char **reason)
{
    struct hub_streams *s = arg;
    return sl_hook_limit(st->udp ? &s->udp_limit : &s->tcp_limit, st,
                         reason);
}

/* The hooks as a stream route's: the ACL, the caps, the byte counters. */
static void build_hooks(struct hub_streams *s)
{
    memset(&s->hooks, 0, sizeof(s->hooks));
    s->tcp_limit.max = s->opts.max_connections;
    s->tcp_limit.active = &s->tcp_active;
    s->udp_limit.max = s->opts.max_sessions;
    s->udp_limit.active = &s->udp_active;
    (void)sl_hooks_add_pre_dial(&s->hooks, sl_hook_acl, s->acl);
    (void)sl_hooks_add_pre_dial(&s->hooks, hook_cap, s);
    (void)sl_hooks_add_on_read(&s->hooks, sl_hook_count_bytes, &s->stats);
}

const char *hub_streams_admit(struct hub_streams *s, int udp,
                              const struct sockaddr *client,
                              const struct sockaddr *peer)
{
    struct sl_hook_stream st = {
        .route = s->a ? s->a->identity : "-",
        .udp = udp,
        .client = client,
        .peer = peer,
    };
    const char *reason = "";
    if (sl_hooks_pre_dial(&s->hooks, &st, &reason) == 0)
        return NULL;
    s->denied++;
    s->stats.denied++;
    return reason;
}

void hub_streams_on_read(struct hub_conn *c, size_t n, enum sl_hook_dir dir)
{
    struct hub_streams *s = c->streams;
    struct sl_hook_stream st = {.route = s->a ? s->a->identity : "-"};
    (void)sl_hooks_on_read(&s->hooks, &st, n, dir);
}

/* The options in force: the operator's (the store, set through the API)
 * over the bridge's (its hello). */
static int effective_opts(struct hub_streams *s, struct hub_alloc *a,
                          const struct sl_stream_opts *bridge)
{
    struct sl_hub *hub = s->hub;
    char text[16384], err[200];
    struct sl_stream_opts op;
    s->opts = *bridge;
    if (sl_store_opts_get(hub->store, a->identity, text, sizeof(text)) ==
            0 &&
        sl_stream_opts_parse(text, &op, err, sizeof(err)) == 0)
        sl_stream_opts_merge(&s->opts, &op);
    struct sl_acl *acl = NULL;
    if (s->opts.nallow + s->opts.ndeny > 0) {
        acl = sl_acl_new();
        for (size_t i = 0; acl != NULL && i < s->opts.nallow; i++)
            (void)sl_acl_add(acl, 1, s->opts.allow[i], 0, NULL, 0);
        for (size_t i = 0; acl != NULL && i < s->opts.ndeny; i++)
            (void)sl_acl_add(acl, 0, s->opts.deny[i], 0, NULL, 0);
        if (acl == NULL)
            return UV_ENOMEM;
    }
    sl_acl_free(s->acl);
    s->acl = acl;
    build_hooks(s);
    return 0;
}

int hub_streams_hello(struct hub_alloc *a, unsigned caps,
                      const struct sl_stream_opts *bridge, char *why,
                      size_t cap)
{
    struct sl_hub *hub = a->hub;
    if ((caps & (SL_CAP_TCP | SL_CAP_UDP)) == 0)
        return 0;
    struct hub_streams *s = a->streams;
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return UV_ENOMEM;
        s->hub = hub;
        s->a = a;
        s->refs = 1; /* the allocation's */
        a->streams = s;
    }
    int rc = effective_opts(s, a, bridge);
    if (rc != 0)
        return rc;
    if ((caps & SL_CAP_TCP) && !s->tcp_open) {
        int port = 0;
        int fd = lease(hub, a, SL_STORE_TCP, &port);
        if (fd < 0) {
            snprintf(why, cap, "no free stream port in %d-%d for tcp",
                     hub->stream_port_min, hub->stream_port_max);
            return fd;
        }
        uv_tcp_init(hub->loop, &s->tcp);
        s->tcp.data = hub;
        rc = uv_tcp_open(&s->tcp, fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&s->tcp, 511, on_stream_connection);
        s->tcp_open = 1;
        s->refs++;
        hub->open_handles++;
        if (rc != 0) {
            snprintf(why, cap, "cannot listen on tcp port %d: %s", port,
                     sl_strerror(rc));
            uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
            s->tcp_open = 0;
            return rc;
        }
        s->tcp_port = port;
        sl_info(hub->log, "hub alloc %s: tcp port %d", a->identity, port);
    }
    if ((caps & SL_CAP_UDP) && s->udp == NULL) {
        int port = 0;
        int fd = lease(hub, a, SL_STORE_UDP, &port);
        if (fd < 0) {
            snprintf(why, cap, "no free stream port in %d-%d for udp",
                     hub->stream_port_min, hub->stream_port_max);
            return fd;
        }
        rc = hub_udp_open(s, fd, port);
        if (rc != 0) {
            snprintf(why, cap, "cannot open udp port %d: %s", port,
                     sl_strerror(rc));
            return rc;
        }
        s->udp_port = port;
        sl_info(hub->log, "hub alloc %s: udp port %d", a->identity, port);
    }
    return 0;
}

void hub_streams_close(struct hub_alloc *a)
{
    struct hub_streams *s = a->streams;
    if (s == NULL)
        return;
    a->streams = NULL;
    s->a = NULL;
    if (s->tcp_open) {
        s->tcp_open = 0;
        uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
    }
    hub_udp_close(s);
    streams_unref(s);
}

int hub_streams_url(const struct hub_alloc *a, char *buf, size_t cap)
{
    const struct hub_streams *s = a->streams;
    const struct sl_hub *hub = a->hub;
    if (s == NULL || (s->tcp_port == 0 && s->udp_port == 0))
        return SL_ENOTFOUND;
    int n = snprintf(buf, cap, "%s://%s:%d", s->tcp_port ? "tcp" : "udp",
                     hub->s_domain, s->tcp_port ? s->tcp_port : s->udp_port);
    return n < 0 || (size_t)n >= cap ? SL_ETOOBIG : 0;
}
