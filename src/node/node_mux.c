/* Multiplexed data connections of a bridge (protocol v2, docs/protocol.md
 * "Multiplexed data connections"). A hub whose welcome asks for N of them
 * gets N data connections dialled with `Sluice-Framing: mux`; once one
 * runs, the bridge keeps no pool. Each stream the hub opens on them
 * becomes a data connection of node_conn.c whose transport is the stream:
 * it dials the upstream and relays exactly as a paired raw connection
 * does (one byte path). A lost mux connection is dialled again with the
 * pool's back-off; a hub that does not agree leaves the bridge its pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "net/mux.h"
#include "node/node_int.h"
#include "tunnel/control.h"
#include "tunnel/ws_handshake.h"

struct node_mux {
    struct conn *c; /* the data connection carrying it; NULL once closed */
    struct sl_node_bridge *b;
    struct sl_mux *m;
    unsigned leaving : 1; /* the hub goes away: not counted any more */
};

static const char *name_of(const struct sl_node_bridge *b)
{
    return b->rec.identity[0] != '\0' ? b->rec.identity : b->rec.upstream;
}

void sl_node_mux_fill(struct sl_node_bridge *b)
{
    if (b->no_mux || b->node->no_mux)
        return;
    /* Bounded: a dial that fails at once must not loop here. */
    for (int i = 0; i < SL_CTL_MUX_MAX &&
                    b->mux_live + b->mux_dialling < b->mux_want;
         i++)
        if (sl_node_conn_mux(b) == NULL)
            break;
}

static void on_stream(struct sl_mux *m, struct sl_mux_stream *s, uint8_t kind,
                      const char *target)
{
    struct node_mux *x = sl_mux_data(m);
    struct sl_node_bridge *b = x->b;
    /* http and tcp both mean "bytes to the upstream", as open's kinds. */
    if ((kind != SL_MUX_KIND_HTTP && kind != SL_MUX_KIND_TCP) ||
        target[0] != '\0') {
        sl_warn(b->node->log, "bridge %s: stream of kind %u refused (only "
                "http and tcp to the upstream)", name_of(b), kind);
        sl_mux_stream_refuse(s, SL_MUX_RST_REFUSED, "unknown kind");
        return;
    }
    if (sl_node_conn_stream(b, s) == NULL)
        sl_mux_stream_refuse(s, SL_MUX_RST_INTERNAL, "out of memory");
}

static void on_goaway(struct sl_mux *m, uint32_t code)
{
    struct node_mux *x = sl_mux_data(m);
    (void)code;
    if (!x->leaving) {
        x->leaving = 1;
        x->b->mux_live--;
    }
    /* Its streams finish; a new one takes the next. */
    sl_mux_goaway(m, SL_MUX_GO_NORMAL, NULL);
    sl_node_bridge_fill_pool_later(x->b);
}

static void on_close(struct sl_mux *m, int reason)
{
    struct node_mux *x = sl_mux_data(m);
    struct sl_node_bridge *b = x->b;
    struct conn *c = x->c;
    if (!x->leaving) {
        x->leaving = 1;
        b->mux_live--;
    }
    sl_info(b->node->log, "bridge %s: multiplexed connection #%u closed (%s)",
            name_of(b), c ? c->id : 0u,
            reason == 0 ? "done" : sl_strerror(reason));
    x->c = NULL;
    /* Replaced with the pool's back-off; the pool meanwhile. */
    if (reason != 0 && b->pool_failures < 64)
        b->pool_failures++;
    sl_node_bridge_fill_pool_later(b);
    sl_mux_release(m);
    free(x);
    if (c != NULL) {
        c->mux = NULL;
        sl_node_conn_mux_closed(c, reason); /* b may be gone after this */
    }
}

/* Idle pool connections are of no use while streams ride on mux. */
static void drop_pool(struct sl_node_bridge *b)
{
    for (struct conn *c = b->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->is_pool && !c->closing)
            sl_node_conn_close(c, 0);
    }
}

void sl_node_mux_start(struct conn *c, const struct sl_http_head *h,
                       const char *rest, size_t rest_len)
{
    struct sl_node_bridge *b = c->b;
    struct sl_node *node = b->node;
    const struct sl_http_header *acc =
        sl_http_head_find(h, "Sec-WebSocket-Accept");
    if (acc == NULL || !sl_ws_check_accept(c->key, acc->value, acc->value_len)) {
        sl_warn(node->log, "bridge %s: mux connection #%u: bad "
                "Sec-WebSocket-Accept", name_of(b), c->id);
        sl_node_conn_close(c, SL_EPARSE);
        return;
    }
    struct node_mux *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        sl_node_conn_close(c, UV_ENOMEM);
        return;
    }
    x->c = c;
    x->b = b;
    char name[96];
    snprintf(name, sizeof(name), "bridge %.40s mux #%u", name_of(b), c->id);
    struct sl_mux_opts o = {0};
    o.role = SL_MUX_BRIDGE;
    o.ping_ms = node->ping_ms;
    o.dead_ms = node->dead_ms;
    o.budget = &node->mux_budget;
    o.log = node->log;
    o.name = name;
    struct sl_mux_cbs cbs = {0};
    cbs.data = x;
    cbs.on_stream = on_stream;
    cbs.on_close = on_close;
    cbs.on_goaway = on_goaway;
    /* rest lives in the reader's buffer: the engine copies it. */
    sl_http_reader_stop(&c->reader);
    int rc = sl_mux_start(&x->m, &c->hub_x, &o, &cbs, rest, rest_len);
    sl_http_reader_release(&c->reader);
    c->reader_used = 0;
    if (rc != 0) {
        free(x);
        sl_node_conn_close(c, rc);
        return;
    }
    c->mux_dial = 0;
    b->mux_dialling--;
    c->mux = x;
    c->hub_tcp_open = 0; /* the engine closes it */
    c->phase = PH_RELAY;
    b->mux_live++;
    b->pool_failures = 0;
    b->pool_refused = 0;
    sl_info(node->log, "bridge %s: multiplexed connection #%u up (%d of %d)",
            name_of(b), c->id, b->mux_live, b->mux_want);
    drop_pool(b);
}

void sl_node_mux_abort(struct conn *c, int reason)
{
    struct node_mux *x = c->mux;
    sl_mux_abort(x->m, reason == 0 ? SL_MUX_GO_NORMAL : SL_MUX_GO_INTERNAL,
                 NULL, reason);
}
