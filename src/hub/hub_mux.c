/* Multiplexed data connections on the hub (protocol v2, docs/protocol.md
 * "Multiplexed data connections"): a bridge that was offered mux in its
 * welcome dials up to that many data connections with
 * `Sluice-Framing: mux`; each is answered 101 at once and runs the engine
 * of net/mux.h. A user connection that needs the bridge then gets a stream
 * on the least loaded of them instead of a pool connection: the stream is
 * a data connection (struct hub_conn, kind C_DATA) whose transport is the
 * stream, so the pairing, the HTTP reading of hub_user.c, half-close and
 * the counters treat it exactly as a raw pool connection. One byte path.
 *
 * Lifetimes: struct hub_mux lives while its connection runs or any of its
 * streams is open (refs); the engine's memory while it has streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "hub/hub_int.h"
#include "net/mux.h"

struct hub_mux {
    struct sl_link link;  /* a->muxes, while it takes streams */
    struct sl_hub *hub;
    struct hub_alloc *a;  /* NULL once unlinked */
    struct hub_conn *c;   /* the connection carrying it, NULL once closed */
    struct sl_mux *m;
    uint32_t streams;     /* open stream conns */
    int refs;             /* the connection + streams */
    char bridge_id[SL_UUID_LEN + 1];
};

static void mux_unref(struct hub_mux *x)
{
    if (--x->refs > 0)
        return;
    sl_mux_release(x->m);
    free(x);
}

static void mux_unlink(struct hub_mux *x)
{
    if (x->a == NULL)
        return;
    sl_list_del(&x->link);
    x->a->nmux--;
    x->a = NULL;
}

static void on_mux_close(struct sl_mux *m, int reason)
{
    struct hub_mux *x = sl_mux_data(m);
    struct hub_conn *c = x->c;
    mux_unlink(x);
    x->c = NULL;
    if (c != NULL) {
        c->mux = NULL;
        /* The engine closed the socket: the connection ends as a ws-owned
         * one does (its timer next, then its memory). */
        hub_conn_ws_closed(c, reason ? reason : UV_EOF);
    }
    mux_unref(x);
}

static void on_mux_goaway(struct sl_mux *m, uint32_t code)
{
    struct hub_mux *x = sl_mux_data(m);
    (void)code;
    /* The bridge is leaving (replaced, stopping): no new streams here;
     * the connection ends once its streams have. */
    mux_unlink(x);
    sl_mux_goaway(m, SL_MUX_GO_NORMAL, NULL);
}

/* A bridge opens no streams (the hub opens odd ones). */
static void on_mux_stream(struct sl_mux *m, struct sl_mux_stream *s,
                          uint8_t kind, const char *target)
{
    (void)m;
    (void)kind;
    (void)target;
    sl_mux_stream_refuse(s, SL_MUX_RST_REFUSED, "the hub opens streams");
}

int hub_mux_accept(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct hub_alloc *a = c->alloc;
    uint32_t max = (uint32_t)hub->mux_conns * (a->ncontrols ? a->ncontrols
                                                            : 1);
    if (hub->mux_conns == 0) {
        sl_info(hub->log, "hub data %llu (%s): multiplexing asked for, but "
                "it is off here; answering 400", (unsigned long long)c->id,
                a->identity);
        hub_conn_reply_close(c, 400, NULL, "Multiplexing not enabled", NULL);
        return SL_EDENIED;
    }
    if (a->nmux >= max) {
        sl_info(hub->log, "hub data %llu (%s): %u mux connections already; "
                "answering 429", (unsigned long long)c->id, a->identity,
                a->nmux);
        hub_conn_reply_close(c, 429, NULL, "Too Many Requests", NULL);
        return SL_ELIMIT;
    }
    struct hub_mux *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return UV_ENOMEM;
    }
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sluice-Framing: mux\r\n\r\n",
                     c->ws_accept);
    int rc = hub_conn_write(c, NULL, resp, (size_t)n);
    if (rc < 0) {
        free(x);
        hub_conn_close(c, rc);
        return rc;
    }
    hub_conn_read_stop(c);
    uv_timer_stop(&c->timer);
    x->hub = hub;
    x->c = c;
    x->refs = 1;
    memcpy(x->bridge_id, c->bridge_id, sizeof(x->bridge_id));
    char name[96];
    snprintf(name, sizeof(name), "hub mux %llu (%s)",
             (unsigned long long)c->id, a->identity);
    struct sl_mux_opts o = {0};
    o.role = SL_MUX_HUB;
    o.ping_ms = hub->opts.ping_ms;
    o.dead_ms = hub->opts.dead_ms;
    o.budget = &hub->mux_budget;
    o.log = hub->log;
    o.name = name;
    struct sl_mux_cbs cbs = {0};
    cbs.data = x;
    cbs.on_stream = on_mux_stream;
    cbs.on_close = on_mux_close;
    cbs.on_goaway = on_mux_goaway;
    const char *pre = c->head ? c->head + c->head_off : NULL;
    size_t pre_len = c->head_len > c->head_off ? c->head_len - c->head_off : 0;
    rc = sl_mux_start(&x->m, &c->xp, &o, &cbs, pre, pre_len);
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = c->head_off = 0;
    if (rc != 0) {
        free(x);
        hub_conn_close(c, rc);
        return rc;
    }
    c->mux = x;
    c->dstate = D_PAIRED; /* not in the pool: it never pairs itself */
    x->a = a;
    sl_list_push(&a->muxes, &x->link);
    a->nmux++;
    sl_info(hub->log, "hub data %llu (%s) from %s: multiplexed connection "
            "%u of %u", (unsigned long long)c->id, a->identity, c->peer_ip,
            a->nmux, max);
    return 0;
}

struct hub_conn *hub_mux_stream(struct hub_alloc *a, struct hub_conn *u)
{
    struct sl_hub *hub = a->hub;
    struct hub_mux *best = NULL;
    for (struct sl_link *l = a->muxes.next; l != &a->muxes; l = l->next) {
        struct hub_mux *x =
            (struct hub_mux *)((char *)l - offsetof(struct hub_mux, link));
        if (x->c != NULL && sl_mux_accepting(x->m) &&
            (best == NULL || x->streams < best->streams))
            best = x;
    }
    if (best == NULL)
        return NULL;
    struct hub_conn *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    int rc = sl_mux_open(best->m, &d->xp,
                         u->streams != NULL ? SL_MUX_KIND_TCP
                                            : SL_MUX_KIND_HTTP, "");
    if (rc != 0) {
        free(d);
        return NULL;
    }
    d->hub = hub;
    d->id = ++hub->next_id;
    d->kind = C_DATA;
    d->dstate = D_AUTH;
    d->alloc = a;
    d->framed = 0;
    d->want_raw = 1;
    d->via = best;
    sl_list_init(&d->alink);
    d->xp.tcp.data = d;
    uv_timer_init(hub->loop, &d->timer);
    d->timer.data = d;
    d->open_handles = 2;
    sl_list_push(&hub->conns, &d->all);
    hub->totals.data_conns++;
    snprintf(d->peer_ip, sizeof(d->peer_ip), "%s", best->c->peer_ip);
    memcpy(d->bridge_id, best->bridge_id, sizeof(d->bridge_id));
    best->streams++;
    best->refs++;
    sl_debug(hub->log, "hub user %llu (%s): stream %u of mux %llu",
             (unsigned long long)u->id, a->identity,
             sl_mux_stream_id(&d->xp), (unsigned long long)best->c->id);
    return d;
}

void hub_mux_stream_freed(struct hub_conn *d)
{
    struct hub_mux *x = d->via;
    d->via = NULL;
    x->streams--;
    mux_unref(x);
}

void hub_mux_conn_close(struct hub_conn *c, int reason)
{
    struct hub_mux *x = c->mux;
    /* Out of the allocation's list now: it may be freed before the
     * engine reports back. */
    mux_unlink(x);
    sl_mux_abort(x->m, reason == 0 || reason == SL_ELIMIT ? SL_MUX_GO_NORMAL
                                                          : SL_MUX_GO_INTERNAL,
                 NULL, reason);
}

unsigned hub_mux_drop_of(struct hub_alloc *a, const char *bridge_id)
{
    unsigned n = 0;
    struct sl_link *l, *next;
    for (l = a->muxes.next; l != &a->muxes; l = next) {
        next = l->next;
        struct hub_mux *x =
            (struct hub_mux *)((char *)l - offsetof(struct hub_mux, link));
        if (strcmp(x->bridge_id, bridge_id) != 0)
            continue;
        /* Its path may be dead: no new streams; those running go on
         * until they end or the engine finds the path dead. */
        mux_unlink(x);
        sl_mux_goaway(x->m, SL_MUX_GO_NORMAL, "bridge reconnected");
        n++;
    }
    return n;
}

