/* Private to src/stream: one running route, shared by streams.c (which
 * owns the array of routes), tcp_route.c and udp_route.c. */
#ifndef SL_STREAM_ROUTE_H
#define SL_STREAM_ROUTE_H

#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "core/ctx.h"
#include "net/addr.h"
#include "net/relay.h"
#include "stream/hooks.h"
#include "stream/srctab.h"
#include "core/list.h"

struct sl_agent;
struct tcp_conn;
struct udp_session;

#define container_of(p, type, member)                                          \
    ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Room for an IPv4 or IPv6 socket address, viewed as either. */
union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};


struct sl_route {
    struct sl_streams *streams;
    struct sl_ctx *ctx;
    const struct sl_route_config *cfg; /* borrowed from the config */
    char scheme[8];                    /* "tcp4", ... for display */
    char target[300];                  /* "host:port" for logs */
    struct sockaddr_storage listen_addr; /* actual, once bound */
    struct sl_hooks hooks;
    struct sl_relay_pool *pool;        /* the engine's read buffers */
    struct sl_hook_limit limit;
    struct sl_stream_stats stats;
    struct sl_agent *agent;            /* dials the target (agent: NAME),
                                          or NULL: dialled here */
    /* Live streams per source: TCP per address (IPv6 /64), UDP per /24 or
     * /64. Its key also keys the UDP session table. Freed by streams.c
     * with the route. */
    struct sl_srctab sources;
    int started;   /* listening */
    int stopping;  /* no new streams; closing when idle */
    int open;      /* handles and streams not yet closed */

    struct {
        uv_tcp_t listener;
        uv_timer_t backoff;       /* pauses accepting after accept errors */
        uint64_t backoff_ms;
        int listener_open;
        /* Takes a connection there is no memory for, to close it: left
         * unaccepted, libuv would stop watching the listener. */
        uv_tcp_t reject;
        int reject_open;
        struct sl_link conns;     /* every struct tcp_conn of the route */
        size_t nconns;
    } tcp;

    struct {
        uv_udp_t sock;
        uv_timer_t sweep;
        char *recv_buf;           /* 64 KiB, while the socket is open */
        struct udp_session **table; /* open hashing, by client address */
        size_t table_size;        /* power of two */
        struct sl_link sessions;  /* every session, for sweeps */
        uint64_t refusal_logged_ms; /* per-prefix refusals: one line/s */
        uint64_t refusals_unlogged;
        int sock_open;
    } udp;
};

/* streams.c: called by the route when route->open drops to 0 after stop. */
void sl_streams_route_closed(struct sl_route *route);

/* Start listening; returns 0 or an error (already logged). */
int sl_tcp_route_start(struct sl_route *route);
int sl_udp_route_start(struct sl_route *route);
/* Stop accepting; live streams go on. May lead to sl_streams_route_closed. */
void sl_tcp_route_stop(struct sl_route *route);
void sl_udp_route_stop(struct sl_route *route);
/* Close every live stream now (end of the grace period). */
void sl_tcp_route_abort(struct sl_route *route);

/* route.c: what TCP and UDP routes share on the way to their target. */

/* 1 if address family af (AF_INET, AF_INET6) is allowed by the route's
 * "family" setting, else 0. */
int sl_route_family_ok(const struct sl_route *route, int af);

/* If the route's target host is an IP literal, fills *out with it and the
 * target port and returns 0, or UV_EAI_ADDRFAMILY when the route's family
 * forbids it. Returns 1 when the host is a name to resolve. */
int sl_route_literal_target(const struct sl_route *route,
                            struct sockaddr_storage *out);

/* Starts resolving the route's target host and port with uv_getaddrinfo
 * on the route's loop, restricted to the route's family and to socktype
 * (SOCK_STREAM or SOCK_DGRAM). req is the caller's and must live until cb
 * ran. Returns 0 (cb will run) or a libuv error (cb will not run). */
int sl_route_resolve(struct sl_route *route, uv_getaddrinfo_t *req,
                     uv_getaddrinfo_cb cb, int socktype);

/* Counts a failed stream and logs that its upstream is unreachable:
 * what is "connection" or "session", id its number, client its peer, err
 * the libuv error, action what happens next ("closing the client"). */
void sl_route_upstream_failed(struct sl_route *route, const char *what,
                              unsigned long long id,
                              const struct sockaddr *client, int err,
                              const char *action);

/* Called when a handle or stream of the route is released. */
static inline void sl_route_unref(struct sl_route *route)
{
    if (--route->open == 0 && route->stopping)
        sl_streams_route_closed(route);
}

#endif
