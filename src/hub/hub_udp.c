/* An allocation's public UDP port (docs/hub.md, "TCP and UDP through
 * bridges"). Users send datagrams to it; each user address is a flow
 * with an id of its own; every flow's datagrams travel to the bridge on
 * one data connection, the carrier, one WebSocket binary message per
 * datagram (tunnel/dgram.h). The bridge's answers come back on the same
 * carrier and go out to the flow's user.
 *
 * UDP may lose datagrams and must not block one flow behind another, so
 * nothing here waits: a datagram that cannot be passed on at once (the
 * carrier's queue over its mark, the user's socket full, no carrier yet
 * and the short wait list full) is dropped and counted. Memory: a small
 * struct per flow, a receive buffer only while datagrams arrive, the
 * carrier's queue up to HUB_UDP_QUEUE_MAX. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "hub/hub_int.h"
#include "proto/acl.h"
#include "stream/srctab.h"
#include "tunnel/dgram.h"

#define HUB_UDP_BUCKETS 1024    /* flow tables, a power of two */
#define HUB_UDP_FLOWS_MAX 16384 /* flows per port, whatever the caps */
/* The carrier's queue: over it, datagrams are dropped. */
#define HUB_UDP_QUEUE_MAX (1024 * 1024)
#define HUB_UDP_WAIT_MAX 64 /* datagrams waiting for a carrier */
#define HUB_UDP_WAIT_BYTES (256 * 1024)
#define HUB_UDP_CHUNK (64 * 1024) /* libuv's recvmmsg slot */
#define HUB_UDP_CHUNKS 8          /* slots of the receive buffer */
#define HUB_UDP_RBUF (HUB_UDP_CHUNK * HUB_UDP_CHUNKS)
#define HUB_UDP_IDLE_MS 300000
/* The public socket's kernel buffers: every user of the port shares them,
 * and a burst that arrives while the loop is busy elsewhere waits there
 * instead of being lost (the kernel caps them at net.core.rmem_max and
 * wmem_max). */
#define HUB_UDP_RCVBUF (4 * 1024 * 1024)
#define HUB_UDP_SNDBUF (1024 * 1024)

union udp_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct udp_flow {
    struct udp_flow *by_addr_next, *by_id_next;
    struct sl_link link; /* u->flows */
    uint32_t id;
    uint64_t last_ms; /* uv_now of the last datagram either way */
    union udp_addr user;
};

/* A message for the carrier, kept while none is there. */
struct udp_wait {
    struct udp_wait *next;
    size_t len;
    uint8_t data[];
};

/* What the carrier's ws knows of the port: the port may close first
 * (then u is NULL), the ws's close comes later. Owned by the ws: freed in
 * its on_close. */
struct udp_carrier {
    struct hub_conn *d;
    struct hub_udp *u;
};

struct hub_udp {
    struct sl_hub *hub;
    struct hub_streams *s; /* NULL once closing */
    uv_udp_t sock;
    uv_timer_t sweep;
    int handles; /* open: sock, sweep */
    int port;
    struct udp_carrier *carrier; /* NULL: none */
    struct sl_ws *corked; /* the carrier's ws during a recvmmsg batch */
    int asking;                  /* an open went out for fingerprint */
    uint64_t asked_at;
    int no_bridge_logged;
    int empty_sweeps; /* sweeps in a row that found no flow */
    char fingerprint[SL_UUID_LEN + 1];
    uint32_t next_id;
    uint32_t nflows;
    uint64_t idle_ms;
    uint8_t key[16]; /* SipHash of user addresses */
    struct udp_flow *by_addr[HUB_UDP_BUCKETS];
    struct udp_flow *by_id[HUB_UDP_BUCKETS];
    struct sl_link flows;
    struct udp_wait *wait, **wait_tail;
    size_t nwait, wait_bytes;
    uint64_t wait_since; /* uv_now of the oldest waiting datagram */
    /* While datagrams come: the receive buffer, then room for the
     * message being made of one (header, datagram). */
    char *rbuf;
    int rbuf_used; /* since the last sweep */
    /* Dropped datagrams, by why, since the last sweep's line. */
    uint64_t drop_queue, drop_wait, drop_user, drop_flow, drop_big;
};

/* ---- flow table ------------------------------------------------------- */

static size_t addr_bucket(const struct hub_udp *u, const struct sockaddr *sa)
{
    uint8_t k[19] = {0};
    size_t n = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        k[n++] = 4;
        memcpy(k + n, &in->sin_addr, 4);
        n += 4;
        memcpy(k + n, &in->sin_port, 2);
        n += 2;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        k[n++] = 6;
        memcpy(k + n, &in6->sin6_addr, 16);
        n += 16;
        memcpy(k + n, &in6->sin6_port, 2);
        n += 2;
    }
    return (size_t)(sl_siphash24(u->key, k, n) & (HUB_UDP_BUCKETS - 1));
}

static struct udp_flow *flow_by_addr(struct hub_udp *u,
                                     const struct sockaddr *sa)
{
    for (struct udp_flow *f = u->by_addr[addr_bucket(u, sa)]; f != NULL;
         f = f->by_addr_next)
        if (sl_addr_equal(&f->user.sa, sa))
            return f;
    return NULL;
}

/* Ids are given in order, so their low bits spread them evenly. */
static struct udp_flow *flow_by_id(struct hub_udp *u, uint32_t id)
{
    for (struct udp_flow *f = u->by_id[id & (HUB_UDP_BUCKETS - 1)]; f != NULL;
         f = f->by_id_next)
        if (f->id == id)
            return f;
    return NULL;
}

static void flow_free(struct hub_udp *u, struct udp_flow *f)
{
    struct udp_flow **pp = &u->by_addr[addr_bucket(u, &f->user.sa)];
    while (*pp != f)
        pp = &(*pp)->by_addr_next;
    *pp = f->by_addr_next;
    pp = &u->by_id[f->id & (HUB_UDP_BUCKETS - 1)];
    while (*pp != f)
        pp = &(*pp)->by_id_next;
    *pp = f->by_id_next;
    sl_list_del(&f->link);
    u->nflows--;
    free(f);
}

/* ---- the carrier ------------------------------------------------------ */

static uint64_t pairing_window(const struct sl_hub *hub)
{
    return hub->opts.pairing_window_ms ? hub->opts.pairing_window_ms : 8000;
}

static void wait_clear(struct hub_udp *u)
{
    while (u->wait != NULL) {
        struct udp_wait *w = u->wait;
        u->wait = w->next;
        free(w);
    }
    u->wait_tail = &u->wait;
    u->nwait = 0;
    u->wait_bytes = 0;
}

/* Datagrams that have waited a whole pairing window for a carrier are
 * stale: they go. */
static void wait_expire(struct hub_udp *u, uint64_t now)
{
    if (u->nwait > 0 && now - u->wait_since >= pairing_window(u->hub)) {
        u->drop_wait += u->nwait;
        wait_clear(u);
    }
}

/* Asks the bridge for a carrier, unless an ask is still within its
 * pairing window. With no bridge connected nothing is asked, so the
 * first datagram after the bridge is back asks at once. */
static void ask_carrier(struct hub_udp *u)
{
    struct sl_hub *hub = u->hub;
    uint64_t now = uv_now(hub->loop);
    wait_expire(u, now);
    if (u->asking && now - u->asked_at < pairing_window(hub))
        return;
    u->asking = 0;
    if (u->s == NULL || u->s->a == NULL || sl_uuid4_new(u->fingerprint) != 0) {
        u->fingerprint[0] = '\0';
        return;
    }
    if (hub_control_open(u->s->a, u->fingerprint, "udp") != 0) {
        if (!u->no_bridge_logged)
            sl_debug(hub->log,
                     "hub alloc %s: udp port %d: no bridge to "
                     "ask for a carrier",
                     u->s->a->identity, u->port);
        u->no_bridge_logged = 1;
        return;
    }
    u->no_bridge_logged = 0;
    u->asking = 1;
    u->asked_at = now;
}

/* Sends message m (len bytes) on the carrier, or drops it when the
 * carrier's queue is over its mark. Returns 0, or a negative code when
 * the carrier failed (it is closing). */
static int carrier_send(struct hub_udp *u, const uint8_t *m, size_t len)
{
    struct hub_conn *d = u->carrier->d;
    if (sl_ws_queued(d->ws) + len > HUB_UDP_QUEUE_MAX) {
        u->drop_queue++;
        return 0;
    }
    int rc = sl_ws_send_binary(d->ws, m, len);
    if (rc < 0 && rc != SL_ELIMIT)
        return rc;
    if (rc == SL_ELIMIT) {
        u->drop_queue++;
        return 0;
    }
    if (d->alloc != NULL)
        hub_count_bridge(d->alloc, 0, len);
    return 0;
}

/* Passes message m on: on the carrier, or into the wait list while one
 * is asked for. */
static void to_bridge(struct hub_udp *u, const uint8_t *m, size_t len)
{
    if (u->carrier != NULL) {
        if (carrier_send(u, m, len) != 0)
            u->drop_queue++;
        return;
    }
    ask_carrier(u);
    if (u->nwait >= HUB_UDP_WAIT_MAX ||
        u->wait_bytes + len > HUB_UDP_WAIT_BYTES) {
        u->drop_wait++;
        return;
    }
    struct udp_wait *w = malloc(sizeof(*w) + len);
    if (w == NULL) {
        u->drop_wait++;
        return;
    }
    w->next = NULL;
    w->len = len;
    memcpy(w->data, m, len);
    if (u->nwait == 0)
        u->wait_since = uv_now(u->hub->loop);
    *u->wait_tail = w;
    u->wait_tail = &w->next;
    u->nwait++;
    u->wait_bytes += len;
}

static void flow_close(struct hub_udp *u, struct udp_flow *f, int tell)
{
    if (tell && u->carrier != NULL) {
        uint8_t m[SL_DGRAM_HEADER];
        sl_dgram_header(m, SL_DGRAM_CLOSE, f->id);
        (void)carrier_send(u, m, sizeof(m));
    }
    flow_free(u, f);
}

static void carrier_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                            const uint8_t *data, size_t len)
{
    struct udp_carrier *k = ws->data;
    struct hub_udp *u = k->u;
    struct sl_dgram g;
    if (u == NULL || type != SL_WS_BINARY)
        return;
    struct hub_alloc *a = u->s != NULL ? u->s->a : NULL;
    if (a == NULL)
        return;
    hub_count_bridge(a, len, 0);
    if (sl_dgram_decode(data, len, &g) != 0) {
        u->drop_big++;
        return;
    }
    struct udp_flow *f = flow_by_id(u, g.flow);
    if (f == NULL) {
        u->drop_flow++;
        return;
    }
    if (g.type == SL_DGRAM_CLOSE) {
        flow_free(u, f); /* the bridge forgot it: a new one next time */
        return;
    }
    if (a->limited) {
        u->drop_user++;
        return;
    }
    f->last_ms = uv_now(u->hub->loop);
    /* Over the allocation's bandwidth cap a datagram is dropped: UDP
     * may lose, it never waits. */
    if (hub_rate_take(a, HUB_RATE_DOWN, g.len) != 0) {
        u->drop_user++;
        return;
    }
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)g.payload, (unsigned)g.len);
    int rc = uv_udp_try_send(&u->sock, &b, 1, &f->user.sa);
    if (rc < 0) {
        u->drop_user++;
        return;
    }
    hub_count_user(a, g.len, 0);
}

static void carrier_closed(struct sl_ws *ws, int reason)
{
    struct udp_carrier *k = ws->data;
    struct hub_udp *u = k->u;
    if (u != NULL && u->carrier == k) {
        u->carrier = NULL;
        sl_debug(u->hub->log,
                 "hub data %llu: udp carrier of port %d closed "
                 "(%s)",
                 (unsigned long long)k->d->id, u->port,
                 reason ? sl_strerror(reason) : "normal");
    }
    ws->data = k->d;
    hub_conn_ws_closed(k->d, reason);
    free(k);
}

/* Answers 101 to data connection d and makes it the carrier. Returns 0,
 * or a negative code (d is then the caller's to close). */
static int carrier_start(struct hub_udp *u, struct hub_conn *d)
{
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                     "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "\r\n",
                     d->ws_accept);
    struct udp_carrier *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return UV_ENOMEM;
    d->ws = calloc(1, sizeof(*d->ws));
    if (d->ws == NULL) {
        free(k);
        return UV_ENOMEM;
    }
    /* Datagrams, never a raw byte stream: the 101 does not offer raw. */
    d->want_raw = 0;
    d->framed = 1;
    d->dstate = D_PAIRED;
    int rc = hub_conn_write(d, NULL, resp, (size_t)n);
    if (rc < 0) {
        free(k);
        return rc;
    }
    uv_timer_stop(&d->timer);
    hub_conn_read_stop(d);
    const char *pre = d->head != NULL ? d->head + d->head_off : NULL;
    size_t pre_len = d->head_len > d->head_off ? d->head_len - d->head_off : 0;
    struct sl_ws_opts o = {0};
    o.role = SL_WS_SERVER;
    o.max_msg = SL_DGRAM_HEADER + SL_DGRAM_MAX;
    o.max_queued = HUB_UDP_QUEUE_MAX + SL_DGRAM_HEADER + SL_DGRAM_MAX;
    /* The queue is bounded by the drops in carrier_send: the bridge's
     * answers are read whatever it holds. */
    o.read_stop = o.max_queued;
    o.ping_ms = u->hub->opts.ping_ms;
    o.dead_ms = u->hub->opts.dead_ms;
    k->d = d;
    k->u = u;
    d->ws->data = k;
    d->ws->on_message = carrier_message;
    d->ws->on_close = carrier_closed;
    d->ws_active = 1;
    u->carrier = k;
    u->asking = 0;
    u->empty_sweeps = 0;
    sl_ws_start(d->ws, &d->xp, &o, pre, pre_len);
    if (!d->closing) {
        free(d->head);
        d->head = NULL;
        d->head_len = d->head_cap = d->head_off = 0;
    }
    /* What waited goes first, in order. */
    struct udp_wait *w = u->wait;
    u->wait = NULL;
    u->wait_tail = &u->wait;
    u->nwait = 0;
    u->wait_bytes = 0;
    while (w != NULL) {
        struct udp_wait *next = w->next;
        if (u->carrier == k)
            (void)carrier_send(u, w->data, w->len);
        free(w);
        w = next;
    }
    return 0;
}

int hub_udp_data(struct hub_alloc *a, struct hub_conn *d)
{
    struct hub_udp *u = a->streams != NULL ? a->streams->udp : NULL;
    /* The answer to the last ask, even late: it is the carrier still
     * missing. */
    if (u == NULL || u->fingerprint[0] == '\0' ||
        strcmp(d->hijack.fingerprint, u->fingerprint) != 0)
        return 0;
    /* Its fingerprint is spent: a second answer gets 409. */
    hub_alloc_remember_fp(a, u->fingerprint);
    u->fingerprint[0] = '\0';
    u->asking = 0;
    if (u->carrier != NULL) {
        /* Should not happen (an ask goes out only without a carrier);
         * the newer one wins, the older closes. */
        struct udp_carrier *old = u->carrier;
        u->carrier = NULL;
        old->u = NULL;
        hub_conn_close(old->d, 0);
    }
    int rc = carrier_start(u, d);
    if (rc != 0) {
        sl_warn(u->hub->log,
                "hub data %llu (%s): cannot start the udp "
                "carrier: %s",
                (unsigned long long)d->id, a->identity, sl_strerror(rc));
        hub_conn_close(d, rc);
        return 1;
    }
    sl_debug(u->hub->log, "hub data %llu (%s): udp carrier of port %d",
             (unsigned long long)d->id, a->identity, u->port);
    return 1;
}

/* ---- the public socket ------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hub_udp *u = h->data;
    (void)hint;
    if (u->rbuf == NULL)
        u->rbuf = malloc(HUB_UDP_RBUF + SL_DGRAM_HEADER + SL_DGRAM_MAX);
    u->rbuf_used = 1;
    /* Without recvmmsg libuv reads one datagram into the buffer's start:
     * any size will do. */
    *buf = uv_buf_init(u->rbuf, u->rbuf ? HUB_UDP_RBUF : 0);
}

/* Whether a new flow from user may start. Returns NULL, or why not. */
static const char *admission(struct hub_udp *u, const struct sockaddr *user)
{
    struct hub_streams *s = u->s;
    struct sockaddr_storage un;
    const struct sockaddr *who = user;
    if (sl_addr_unmap(user, &un))
        who = (const struct sockaddr *)&un;
    /* The stream engine's admission hooks: ACL, then the session cap. */
    s->udp_active = u->nflows;
    const char *why = hub_streams_admit(s, 1, who, user);
    if (why != NULL)
        return why; /* (counted in s->denied) */
    if (u->nflows >= HUB_UDP_FLOWS_MAX) {
        s->denied++;
        return "flow table full";
    }
    return NULL;
}

static struct udp_flow *flow_new(struct hub_udp *u, const struct sockaddr *sa)
{
    struct sl_hub *hub = u->hub;
    const char *why = admission(u, sa);
    if (why != NULL) {
        uint64_t unlogged;
        if (hub_burst_log(hub, HUB_CAP_STREAMS, &unlogged)) {
            char as[SL_ADDR_STRLEN];
            sl_info(hub->log,
                    "hub alloc %s: udp flow from %s refused "
                    "(%s)%s",
                    u->s->a->identity, sl_addr_str(sa, as), why,
                    unlogged ? " (and others since the last line)" : "");
        }
        return NULL;
    }
    struct udp_flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    memcpy(&f->user, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
    if (u->next_id == 0)
        u->next_id = 1; /* 0 is never a flow */
    f->id = u->next_id++;
    size_t b = addr_bucket(u, sa);
    f->by_addr_next = u->by_addr[b];
    u->by_addr[b] = f;
    b = f->id & (HUB_UDP_BUCKETS - 1);
    f->by_id_next = u->by_id[b];
    u->by_id[b] = f;
    sl_list_push(&u->flows, &f->link);
    u->nflows++;
    return f;
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags)
{
    struct hub_udp *u = h->data;
    if (flags & UV_UDP_MMSG_FREE) {
        /* The end of a recvmmsg batch: its datagrams leave in one write. */
        if (u->corked != NULL) {
            sl_ws_uncork(u->corked);
            u->corked = NULL;
        }
        return; /* the buffer is ours and kept */
    }
    if (u->s == NULL)
        return;
    if ((flags & UV_UDP_MMSG_CHUNK) && u->corked == NULL &&
        u->carrier != NULL) {
        u->corked = u->carrier->d->ws;
        sl_ws_cork(u->corked);
    }
    if (nread < 0) {
        sl_debug(u->hub->log, "hub: udp port %d: %s", u->port,
                 sl_strerror((int)nread));
        return;
    }
    if (addr == NULL ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return;
    struct hub_alloc *a = u->s->a;
    if (a == NULL || a->limited)
        return;
    if ((flags & UV_UDP_PARTIAL) || (size_t)nread > SL_DGRAM_MAX) {
        u->drop_big++;
        return;
    }
    struct udp_flow *f = flow_by_addr(u, addr);
    if (f == NULL && (f = flow_new(u, addr)) == NULL)
        return;
    f->last_ms = uv_now(u->hub->loop);
    if (hub_rate_take(a, HUB_RATE_UP, (size_t)nread) != 0) {
        u->drop_queue++;
        return;
    }
    hub_count_user(a, 0, (uint64_t)nread);
    if (a->limited)
        return; /* that datagram reached the limit */
    /* on_alloc gave buf: rbuf is there. */
    uint8_t *m = (uint8_t *)u->rbuf + HUB_UDP_RBUF;
    sl_dgram_header(m, SL_DGRAM_DATA, f->id);
    memcpy(m + SL_DGRAM_HEADER, buf->base, (size_t)nread);
    to_bridge(u, m, SL_DGRAM_HEADER + (size_t)nread);
}

/* ---- expiry ----------------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
    struct hub_udp *u = t->data;
    struct sl_hub *hub = u->hub;
    uint64_t now = uv_now(hub->loop);
    unsigned expired = 0;
    struct sl_link *l, *next;
    for (l = u->flows.next; l != &u->flows; l = next) {
        next = l->next;
        struct udp_flow *f =
            (struct udp_flow *)(void *)((char *)l -
                                        offsetof(struct udp_flow, link));
        if (now - f->last_ms >= u->idle_ms) {
            flow_close(u, f, 1);
            expired++;
        }
    }
    wait_expire(u, now);
    if (u->asking && now - u->asked_at >= pairing_window(hub))
        u->asking = 0;
    /* No flow for a whole sweep: nobody has sent anything since, and an
     * idle port holds no connection of its bridge. The next datagram
     * asks for a carrier again. */
    if (u->nflows == 0 && u->carrier != NULL && u->empty_sweeps++ > 0) {
        struct udp_carrier *k = u->carrier;
        u->carrier = NULL;
        k->u = NULL;
        sl_debug(hub->log,
                 "hub data %llu: udp carrier of port %d idle, "
                 "closing",
                 (unsigned long long)k->d->id, u->port);
        hub_conn_close(k->d, 0);
    }
    if (u->nflows > 0)
        u->empty_sweeps = 0;
    if (!u->rbuf_used) {
        free(u->rbuf);
        u->rbuf = NULL;
    }
    u->rbuf_used = 0;
    uint64_t dropped = u->drop_queue + u->drop_wait + u->drop_user +
                       u->drop_flow + u->drop_big;
    const char *id = u->s != NULL && u->s->a != NULL ? u->s->a->identity : "-";
    if (expired > 0)
        sl_debug(hub->log,
                 "hub alloc %s: udp port %d: %u idle flows "
                 "expired, %u live",
                 id, u->port, expired, u->nflows);
    if (dropped > 0)
        sl_info(
            hub->log,
            "hub alloc %s: udp port %d: datagrams dropped "
            "since the last line: %llu (carrier queue full %llu, no "
            "carrier %llu, user socket full %llu, unknown flow %llu, "
            "malformed or too big %llu)",
            id, u->port, (unsigned long long)dropped,
            (unsigned long long)u->drop_queue, (unsigned long long)u->drop_wait,
            (unsigned long long)u->drop_user, (unsigned long long)u->drop_flow,
            (unsigned long long)u->drop_big);
    u->drop_queue = u->drop_wait = u->drop_user = u->drop_flow = u->drop_big =
        0;
}

/* ---- open and close --------------------------------------------------- */

static void udp_free(struct hub_udp *u)
{
    struct sl_link *l;
    while ((l = u->flows.next) != &u->flows)
        flow_free(u,
                  (struct udp_flow *)(void *)((char *)l -
                                              offsetof(struct udp_flow, link)));
    wait_clear(u);
    free(u->rbuf);
    free(u);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct hub_udp *u = h->data;
    struct sl_hub *hub = u->hub;
    if (--u->handles == 0)
        udp_free(u);
    hub_handle_closed(hub);
}

int hub_udp_open(struct hub_streams *s, int fd, int port)
{
    struct sl_hub *hub = s->hub;
    struct hub_udp *u = calloc(1, sizeof(*u));
    int rc = UV_ENOMEM;
    if (u == NULL) {
        close(fd);
        return rc;
    }
    u->hub = hub;
    u->s = s;
    u->port = port;
    u->idle_ms =
        hub->opts.udp_idle_ms ? hub->opts.udp_idle_ms : HUB_UDP_IDLE_MS;
    u->wait_tail = &u->wait;
    sl_list_init(&u->flows);
    (void)sl_srctab_random_key(u->key);
    /* recvmmsg: up to HUB_UDP_CHUNKS datagrams per system call. */
    rc = uv_udp_init_ex(hub->loop, &u->sock, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc != 0) {
        udp_free(u);
        close(fd);
        return rc;
    }
    u->sock.data = u;
    uv_timer_init(hub->loop, &u->sweep);
    u->sweep.data = u;
    u->handles = 2;
    hub->open_handles += 2;
    s->udp = u;
    rc = uv_udp_open(&u->sock, fd);
    if (rc != 0) {
        close(fd);
    } else {
        int rcv = HUB_UDP_RCVBUF, snd = HUB_UDP_SNDBUF;
        (void)uv_recv_buffer_size((uv_handle_t *)&u->sock, &rcv);
        (void)uv_send_buffer_size((uv_handle_t *)&u->sock, &snd);
        rc = uv_udp_recv_start(&u->sock, on_alloc, on_recv);
    }
    if (rc != 0) {
        hub_udp_close(s);
        return rc;
    }
    uint64_t every = u->idle_ms / 4;
    if (every > 60000)
        every = 60000;
    if (every < 10)
        every = 10;
    uv_timer_start(&u->sweep, on_sweep, every, every);
    return 0;
}

void hub_udp_close(struct hub_streams *s)
{
    struct hub_udp *u = s->udp;
    if (u == NULL)
        return;
    s->udp = NULL;
    u->s = NULL;
    if (u->carrier != NULL) {
        struct udp_carrier *k = u->carrier;
        u->carrier = NULL;
        k->u = NULL;
        hub_conn_close(k->d, 0);
    }
    uv_close((uv_handle_t *)&u->sock, on_handle_closed);
    uv_close((uv_handle_t *)&u->sweep, on_handle_closed);
}
