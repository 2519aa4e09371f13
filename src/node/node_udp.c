/* The datagram carrier of a udp:// bridge (docs/protocol.md, "UDP"): one
 * framed data connection the hub asks for with open "udp", on which
 * every datagram of every flow is one WebSocket binary message
 * (tunnel/dgram.h). Each flow (one user address on the hub) gets its own
 * connected UDP socket to the upstream, made at its first datagram, so
 * the upstream tells users apart by source port and a flow's order is
 * its socket's.
 *
 * UDP may lose datagrams: what cannot be passed on at once (the
 * upstream socket would block, the carrier's queue is over its mark) is
 * dropped and counted, never queued. Memory: a small struct and a socket
 * per flow, one receive buffer per carrier.
 *
 * Lifetime: struct node_udp lives while its carrier does and until every
 * flow's socket and the sweep timer have closed (refs); it holds a ref
 * on its bridge meanwhile. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "net/addr.h"
#include "node/node_int.h"
#include "tunnel/dgram.h"

#define UDP_BUCKETS 1024    /* flows by id, a power of two */
#define UDP_FLOWS_MAX 16384 /* flows per carrier */
#define UDP_PENDING_MAX 8   /* datagrams of a flow being resolved */
/* The carrier's queue: over it, answers are dropped. */
#define UDP_QUEUE_MAX (1024 * 1024)
#define UDP_RECV_MAX 65536
#define UDP_IDLE_MS 300000
/* A flow socket's receive buffer: the upstream's answers in a burst wait
 * there while the loop is busy (the kernel caps it at rmem_max). */
#define UDP_RCVBUF (1024 * 1024)

struct pending {
    struct pending *next;
    size_t len;
    char data[];
};

struct flow {
    struct flow *hnext;
    struct sl_link link; /* n->flows */
    struct node_udp *n;
    uint32_t id;
    uint64_t last_ms;
    uv_udp_t sock;
    unsigned sock_open : 1;
    unsigned connected : 1;
    unsigned closing : 1;
    uv_getaddrinfo_t *gai; /* resolving the upstream, or NULL */
    struct pending *pending, **pending_tail;
    size_t npending;
};

struct node_udp {
    struct sl_node_bridge *b;
    struct conn *c; /* the carrier; NULL once its ws has closed */
    sl_ws_close_cb conn_ws_close;
    int refs; /* the carrier, the sweep timer, each flow */
    uv_timer_t sweep;
    uint64_t idle_ms;
    uint32_t nflows;
    struct flow *table[UDP_BUCKETS];
    struct sl_link flows;
    char rbuf[SL_DGRAM_HEADER + UDP_RECV_MAX]; /* header room, answer */
    /* Dropped datagrams since the last sweep, by why. */
    uint64_t drop_up, drop_hub, drop_flows, drop_bad;
    unsigned refused_logged : 1;
};

static struct sl_log *ulog(const struct node_udp *n)
{
    return n->b->node->log;
}

static const char *bname(const struct node_udp *n)
{
    return n->b->rec.identity[0] != '\0' ? n->b->rec.identity
                                         : n->b->rec.upstream;
}

static void udp_unref(struct node_udp *n)
{
    if (--n->refs > 0)
        return;
    struct sl_node_bridge *b = n->b;
    free(n);
    sl_node_bridge_unref(b);
}

/* ---- flows ------------------------------------------------------------ */

static struct flow *flow_find(struct node_udp *n, uint32_t id)
{
    for (struct flow *f = n->table[id & (UDP_BUCKETS - 1)]; f != NULL;
         f = f->hnext)
        if (f->id == id)
            return f;
    return NULL;
}

static void flow_free(struct flow *f)
{
    struct node_udp *n = f->n;
    while (f->pending != NULL) {
        struct pending *p = f->pending;
        f->pending = p->next;
        free(p);
    }
    free(f);
    udp_unref(n);
}

static void on_flow_sock_closed(uv_handle_t *h)
{
    struct flow *f = h->data;
    f->sock_open = 0;
    if (f->gai == NULL)
        flow_free(f);
}

/* Sends a message on the carrier unless its queue is over the mark.
 * Returns 1 if it went, 0 if it was dropped. */
static int to_hub(struct node_udp *n, const uint8_t *m, size_t len)
{
    if (n->c == NULL || !n->c->ws_live ||
        sl_ws_queued(&n->c->ws) + len > UDP_QUEUE_MAX) {
        n->drop_hub++;
        return 0;
    }
    int rc = sl_ws_send_binary(&n->c->ws, m, len);
    if (rc < 0) {
        n->drop_hub++;
        return 0;
    }
    n->b->gw_up += len;
    return 1;
}

/* Forgets flow f; tell: the hub hears it (the flow's next datagram then
 * makes a new flow there). */
static void flow_close(struct flow *f, int tell)
{
    struct node_udp *n = f->n;
    if (f->closing)
        return;
    f->closing = 1;
    struct flow **pp = &n->table[f->id & (UDP_BUCKETS - 1)];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    sl_list_del(&f->link);
    n->nflows--;
    if (tell) {
        uint8_t m[SL_DGRAM_HEADER];
        sl_dgram_header(m, SL_DGRAM_CLOSE, f->id);
        (void)to_hub(n, m, sizeof(m));
    }
    if (f->gai != NULL)
        uv_cancel((uv_req_t *)f->gai); /* its callback still runs */
    if (f->sock_open)
        uv_close((uv_handle_t *)&f->sock, on_flow_sock_closed);
    else if (f->gai == NULL)
        flow_free(f);
}

static void send_up(struct flow *f, const char *data, size_t len)
{
    struct node_udp *n = f->n;
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
    int rc = uv_udp_try_send(&f->sock, &b, 1, NULL);
    if (rc < 0) {
        /* EAGAIN (the socket is full), or an ICMP error of an earlier
         * datagram: either way this one is lost, the flow lives on. */
        n->drop_up++;
        return;
    }
    n->b->up_up += len;
}

static void on_flow_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct flow *f = h->data;
    (void)hint;
    /* One buffer for all of the carrier's flows: each answer is passed
     * on (or dropped) before its callback returns. */
    *buf = uv_buf_init(f->n->rbuf + SL_DGRAM_HEADER, UDP_RECV_MAX);
}

static void on_flow_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                         const struct sockaddr *addr, unsigned flags)
{
    struct flow *f = h->data;
    struct node_udp *n = f->n;
    (void)buf;
    if (f->closing || (nread == 0 && addr == NULL))
        return;
    if (nread < 0) {
        /* An ICMP error (port unreachable) on the connected socket: the
         * flow lives on, the service may come back. */
        sl_debug(ulog(n), "bridge %s: udp flow %u: upstream %s: %s", bname(n),
                 (unsigned)f->id, n->b->rec.upstream, sl_strerror((int)nread));
        return;
    }
    if ((flags & UV_UDP_PARTIAL) || (size_t)nread > SL_DGRAM_MAX) {
        n->drop_bad++;
        return;
    }
    n->b->up_down += (uint64_t)nread;
    f->last_ms = uv_now(h->loop);
    sl_dgram_header((uint8_t *)n->rbuf, SL_DGRAM_DATA, f->id);
    (void)to_hub(n, (const uint8_t *)n->rbuf, SL_DGRAM_HEADER + (size_t)nread);
}

/* The upstream's address is known: the private-address rule, then the
 * socket. Returns 0, or a negative code (the flow is then closed, the
 * hub told). */
static int flow_connect(struct flow *f, const struct sockaddr *to)
{
    struct node_udp *n = f->n;
    struct sl_node_bridge *b = n->b;
    uv_loop_t *loop = b->node->ctx->loop;
    int rc;
    /* Checked on the very address the socket is connected to, so DNS
     * cannot change it in between. */
    if (!b->node->allow_public && !sl_addr_is_private(to)) {
        char as[SL_ADDR_STRLEN];
        sl_node_bridge_set_error(b,
                                 "upstream %s resolves to %s, which is "
                                 "not private",
                                 b->rec.upstream, sl_addr_str(to, as));
        if (!n->refused_logged)
            sl_warn(ulog(n),
                    "bridge %s: upstream %s resolves to %s, which "
                    "is not private (see --allow-public-upstream); udp "
                    "flows refused",
                    bname(n), b->rec.upstream, sl_addr_str(to, as));
        n->refused_logged = 1;
        rc = SL_EDENIED;
        goto fail;
    }
    rc = uv_udp_init(loop, &f->sock);
    if (rc != 0)
        goto fail;
    f->sock.data = f;
    f->sock_open = 1;
    rc = uv_udp_connect(&f->sock, to);
    if (rc == 0) {
        int rcv = UDP_RCVBUF;
        (void)uv_recv_buffer_size((uv_handle_t *)&f->sock, &rcv);
        rc = uv_udp_recv_start(&f->sock, on_flow_alloc, on_flow_recv);
    }
    if (rc != 0) {
        sl_node_bridge_set_error(b, "upstream %s: %s", b->rec.upstream,
                                 sl_strerror(rc));
        goto fail;
    }
    f->connected = 1;
    /* What came while the address was looked up, in order. */
    while (f->pending != NULL && !f->closing) {
        struct pending *p = f->pending;
        f->pending = p->next;
        send_up(f, p->data, p->len);
        free(p);
    }
    f->pending_tail = &f->pending;
    f->npending = 0;
    return 0;
fail:
    flow_close(f, 1);
    return rc;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct flow *f = req->data;
    struct node_udp *n = f->n;
    free(req);
    f->gai = NULL;
    if (f->closing) {
        uv_freeaddrinfo(res);
        if (!f->sock_open)
            flow_free(f);
        return;
    }
    /* A UDP service cannot say an address is dead: IPv4 first, as
     * services on "localhost" most often listen on 127.0.0.1 alone.
     * Every address must be private, as the TCP dial demands. */
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = res; status == 0 && ai != NULL;
         ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!n->b->node->allow_public && !sl_addr_is_private(ai->ai_addr)) {
            pick = ai; /* flow_connect refuses it, and says why */
            break;
        }
        if (pick == NULL ||
            (ai->ai_family == AF_INET && pick->ai_family != AF_INET))
            pick = ai;
    }
    if (pick == NULL) {
        sl_node_bridge_set_error(
            n->b, "upstream %s: cannot resolve %s: %s", n->b->rec.upstream,
            n->b->up.host, status < 0 ? sl_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        flow_close(f, 1);
        return;
    }
    struct sockaddr_storage to;
    memcpy(&to, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(res);
    (void)flow_connect(f, (struct sockaddr *)&to);
}

static struct flow *flow_new(struct node_udp *n, uint32_t id)
{
    struct sl_node_bridge *b = n->b;
    if (n->nflows >= UDP_FLOWS_MAX)
        return NULL;
    struct flow *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->n = n;
    f->id = id;
    f->pending_tail = &f->pending;
    f->last_ms = uv_now(b->node->ctx->loop);
    struct flow **head = &n->table[id & (UDP_BUCKETS - 1)];
    f->hnext = *head;
    *head = f;
    sl_list_push(&n->flows, &f->link);
    n->nflows++;
    n->refs++;
    struct sockaddr_storage to;
    if (sl_addr_parse_ip(b->up.host, b->up.port, &to) == 0)
        return flow_connect(f, (struct sockaddr *)&to) == 0 ? f : NULL;
    /* A name: looked up once for the flow, off the loop. */
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)b->up.port);
    f->gai = malloc(sizeof(*f->gai));
    int rc = f->gai == NULL ? UV_ENOMEM : 0;
    if (rc == 0) {
        f->gai->data = f;
        rc = uv_getaddrinfo(b->node->ctx->loop, f->gai, on_resolved, b->up.host,
                            service, &hints);
    }
    if (rc != 0) {
        free(f->gai);
        f->gai = NULL;
        flow_close(f, 1);
        return NULL;
    }
    return f;
}

/* ---- the carrier ------------------------------------------------------ */

static void carrier_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                            const uint8_t *data, size_t len)
{
    struct conn *c = ws->data;
    struct node_udp *n = c->udp;
    struct sl_dgram g;
    if (n == NULL || c->closing || type != SL_WS_BINARY)
        return;
    n->b->gw_down += len;
    if (sl_dgram_decode(data, len, &g) != 0) {
        n->drop_bad++;
        return;
    }
    struct flow *f = flow_find(n, g.flow);
    if (g.type == SL_DGRAM_CLOSE) {
        if (f != NULL)
            flow_close(f, 0);
        return;
    }
    if (f == NULL && (f = flow_new(n, g.flow)) == NULL) {
        n->drop_flows++;
        return;
    }
    f->last_ms = uv_now(n->b->node->ctx->loop);
    if (f->connected) {
        send_up(f, (const char *)g.payload, g.len);
        return;
    }
    if (f->npending >= UDP_PENDING_MAX) {
        n->drop_up++;
        return;
    }
    struct pending *p = malloc(sizeof(*p) + g.len);
    if (p == NULL) {
        n->drop_up++;
        return;
    }
    p->next = NULL;
    p->len = g.len;
    memcpy(p->data, g.payload, g.len);
    *f->pending_tail = p;
    f->pending_tail = &p->next;
    f->npending++;
}

static void on_sweep(uv_timer_t *t)
{
    struct node_udp *n = t->data;
    uint64_t now = uv_now(t->loop);
    unsigned expired = 0;
    struct sl_link *l, *next;
    for (l = n->flows.next; l != &n->flows; l = next) {
        next = l->next;
        struct flow *f =
            (struct flow *)(void *)((char *)l - offsetof(struct flow, link));
        if (now - f->last_ms >= n->idle_ms) {
            flow_close(f, 1);
            expired++;
        }
    }
    uint64_t dropped = n->drop_up + n->drop_hub + n->drop_flows + n->drop_bad;
    if (expired > 0)
        sl_debug(ulog(n), "bridge %s: %u idle udp flows expired, %u live",
                 bname(n), expired, n->nflows);
    if (dropped > 0)
        sl_info(ulog(n),
                "bridge %s: udp datagrams dropped since the last "
                "line: %llu (upstream socket full %llu, carrier queue full "
                "%llu, too many flows %llu, malformed %llu)",
                bname(n), (unsigned long long)dropped,
                (unsigned long long)n->drop_up, (unsigned long long)n->drop_hub,
                (unsigned long long)n->drop_flows,
                (unsigned long long)n->drop_bad);
    n->drop_up = n->drop_hub = n->drop_flows = n->drop_bad = 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    udp_unref(h->data);
}

/* The carrier's ws closed: its flows go (the hub keeps its own; their
 * next datagrams make new ones on the next carrier), then the
 * connection closes as any other. */
static void carrier_closed(struct sl_ws *ws, int reason)
{
    struct conn *c = ws->data;
    struct node_udp *n = c->udp;
    sl_ws_close_cb next = n->conn_ws_close;
    c->udp = NULL;
    n->c = NULL;
    struct sl_link *l;
    while ((l = n->flows.next) != &n->flows)
        flow_close(
            (struct flow *)(void *)((char *)l - offsetof(struct flow, link)),
            0);
    uv_close((uv_handle_t *)&n->sweep, on_sweep_closed);
    sl_debug(ulog(n), "bridge %s: udp carrier #%u closed (%s)", bname(n), c->id,
             reason ? sl_strerror(reason) : "normal");
    udp_unref(n);
    next(ws, reason);
}

void sl_node_udp_start(struct conn *c, sl_ws_close_cb conn_ws_close)
{
    struct sl_node_bridge *b = c->b;
    struct sl_node *node = b->node;
    struct node_udp *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        sl_node_conn_close(c, UV_ENOMEM);
        return;
    }
    n->b = b;
    b->refs++;
    n->c = c;
    n->conn_ws_close = conn_ws_close;
    n->refs = 2; /* the carrier, the sweep timer */
    n->idle_ms = node->udp_idle_ms ? node->udp_idle_ms : UDP_IDLE_MS;
    sl_list_init(&n->flows);
    uv_timer_init(node->ctx->loop, &n->sweep);
    n->sweep.data = n;
    uint64_t every = n->idle_ms / 4;
    every = every > 60000 ? 60000 : every < 10 ? 10 : every;
    uv_timer_start(&n->sweep, on_sweep, every, every);
    c->udp = n;

    struct sl_ws_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.role = SL_WS_CLIENT;
    opts.ping_ms = node->ping_ms;
    opts.dead_ms = node->dead_ms;
    opts.max_msg = SL_DGRAM_HEADER + SL_DGRAM_MAX;
    opts.max_queued = UDP_QUEUE_MAX + SL_DGRAM_HEADER + SL_DGRAM_MAX;
    /* The queue is bounded by the drops above: the hub's datagrams are
     * read whatever it holds. */
    opts.read_stop = opts.max_queued;
    c->ws.data = c;
    c->ws.on_message = carrier_message;
    c->ws.on_close = carrier_closed;
    c->hub_tcp_open = 0; /* the ws owns it now; its ref moves along */
    c->ws_live = 1;
    c->phase = PH_RELAY;
    sl_debug(node->log, "bridge %s: udp carrier #%u up; flows go to %s",
             bname(n), c->id, b->rec.upstream);
    /* On failure carrier_closed follows. */
    (void)sl_ws_start(&c->ws, &c->hub_x, &opts, c->pre, c->pre_len);
}

void sl_node_set_udp_idle_ms(struct sl_node *node, uint64_t ms)
{
    node->udp_idle_ms = ms;
}
