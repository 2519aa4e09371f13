/* Bandwidth caps (hub/hub_plan.h): a token bucket per allocation and
 * direction, filled at the cap's rate. Every byte a connection of the
 * allocation reads (users' towards the bridge, data connections' towards
 * users) is taken from it; a bucket in debt stops the reading of the
 * connection that read last, and the rate tick lets the waiting
 * connections read again in turn, oldest first, while the bucket holds
 * tokens. Reads of a capped allocation are cut to a share of the cap, so
 * no connection takes a whole tick's tokens while others wait: the
 * allocation's connections share its cap. Bytes are never dropped: what
 * a connection read goes on, and a bucket in debt pays it back before
 * anyone reads again. Datagrams (hub_rate_take) are dropped instead. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "hub/hub_int.h"

#define RATE_TICK_MS 5
#define RATE_READ_MIN 1024 /* a held connection's read when none is due */
#define RATE_SHARE_MIN 4096

struct hub_bw {
    struct hub_alloc *a;
    uint64_t rate;       /* bytes/s each way */
    double burst;        /* what a bucket may hold */
    double share;        /* one read of a connection, at most */
    uint64_t refilled;   /* uv_hrtime of the last refill */
    double tokens[2];    /* bytes; negative: debt */
    struct sl_link held[2]; /* connections waiting, oldest first */
    struct sl_link busy; /* in hub->plans->busy while any waits */
    int in_busy;
};

static void refill(struct hub_bw *bw)
{
    uint64_t now = uv_hrtime();
    double add = (double)(now - bw->refilled) * 1e-9 * (double)bw->rate;
    bw->refilled = now;
    for (int d = 0; d < 2; d++) {
        bw->tokens[d] += add;
        if (bw->tokens[d] > bw->burst)
            bw->tokens[d] = bw->burst;
    }
}

/* The direction of a relayed pair that conn c's socket reads (a cap set
 * after the pair went onto the engine's relay holds it there). */
static enum sl_relay_dir relay_dir(const struct hub_conn *c)
{
    return c == c->relay->u ? SL_RELAY_UP : SL_RELAY_DOWN;
}

/* Reading starts again where c stopped for the cap. */
static void release(struct hub_conn *c)
{
    sl_list_del(&c->held);
    c->rate_held = 0;
    if (!c->rate_resume || c->closing)
        return;
    c->rate_resume = 0;
    if (c->relay != NULL)
        sl_relay_hold(&c->relay->r, relay_dir(c), 0);
    else if (c->ws_active)
        sl_ws_resume_read(c->ws);
    else
        hub_conn_read_again(c);
}

static void release_all(struct hub_bw *bw)
{
    for (int d = 0; d < 2; d++)
        while (!sl_list_empty(&bw->held[d]))
            release(HUB_CONN_OF(bw->held[d].next, held));
    if (bw->in_busy) {
        sl_list_del(&bw->busy);
        bw->in_busy = 0;
    }
}

int hub_rate_set(struct hub_alloc *a, uint64_t rate)
{
    struct hub_bw *bw = a->bw;
    if (rate == 0) {
        if (bw != NULL) {
            a->bw = NULL;
            release_all(bw);
            free(bw);
        }
        return 0;
    }
    if (bw == NULL) {
        bw = calloc(1, sizeof(*bw));
        if (bw == NULL)
            return UV_ENOMEM;
        bw->a = a;
        sl_list_init(&bw->held[0]);
        sl_list_init(&bw->held[1]);
        bw->refilled = uv_hrtime();
        /* Starts empty: a measured transfer gets no head start. */
        a->bw = bw;
    } else {
        refill(bw);
    }
    bw->rate = rate;
    /* A twentieth of a second of burst, a hundredth per read: small
     * against any window over which a rate is measured. */
    bw->share = (double)rate / 100.0;
    if (bw->share < RATE_SHARE_MIN)
        bw->share = RATE_SHARE_MIN;
    if (bw->share > HUB_BLOCK)
        bw->share = HUB_BLOCK;
    bw->burst = (double)rate / 20.0;
    if (bw->burst < 2 * bw->share)
        bw->burst = 2 * bw->share;
    for (int d = 0; d < 2; d++)
        if (bw->tokens[d] > bw->burst)
            bw->tokens[d] = bw->burst;
    return 0;
}

static void hold(struct hub_conn *c, struct hub_bw *bw, int dir)
{
    struct hub_plans *ps = c->hub->plans;
    if (c->rate_held || c->closing)
        return;
    c->rate_held = 1;
    if (c->relay != NULL) {
        sl_relay_hold(&c->relay->r, relay_dir(c), 1);
        c->rate_resume = 1;
    } else if (c->ws_active) {
        if (!c->ws->read_paused) {
            sl_ws_pause_read(c->ws);
            c->rate_resume = 1;
        }
    } else if (c->reading) {
        hub_conn_read_stop(c);
        c->rate_resume = 1;
    }
    sl_list_push(&bw->held[dir], &c->held);
    if (!bw->in_busy) {
        sl_list_push(&ps->busy, &bw->busy);
        bw->in_busy = 1;
    }
    if (ps->running && !uv_is_active((uv_handle_t *)&ps->rate_timer))
        uv_timer_start(&ps->rate_timer, hub_rate_on_tick, RATE_TICK_MS,
                       RATE_TICK_MS);
}

void hub_rate_charge(struct hub_conn *src, struct hub_alloc *a, int dir,
                     size_t n)
{
    struct hub_bw *bw = a != NULL ? a->bw : NULL;
    if (bw == NULL || src == NULL)
        return;
    refill(bw);
    bw->tokens[dir] -= (double)n;
    if (bw->tokens[dir] < 0)
        hold(src, bw, dir);
}

size_t hub_rate_read_cap(struct hub_conn *c)
{
    struct hub_bw *bw = c->alloc != NULL ? c->alloc->bw : NULL;
    if (bw == NULL)
        return HUB_BLOCK;
    int dir = c->kind == C_DATA ? HUB_RATE_DOWN : HUB_RATE_UP;
    refill(bw);
    double t = bw->tokens[dir];
    if (t > bw->share)
        t = bw->share;
    if (t < RATE_READ_MIN)
        t = RATE_READ_MIN;
    return (size_t)t;
}

int hub_rate_take(struct hub_alloc *a, int dir, size_t n)
{
    struct hub_bw *bw = a != NULL ? a->bw : NULL;
    if (bw == NULL)
        return 0;
    refill(bw);
    if (bw->tokens[dir] < (double)n)
        return SL_ELIMIT;
    bw->tokens[dir] -= (double)n;
    return 0;
}

void hub_rate_conn_closed(struct hub_conn *c)
{
    if (!c->rate_held)
        return;
    sl_list_del(&c->held);
    c->rate_held = 0;
    c->rate_resume = 0;
}

void hub_rate_on_tick(uv_timer_t *t)
{
    struct sl_hub *hub = t->data;
    struct hub_plans *ps = hub->plans;
    struct sl_link *l, *next;
    for (l = ps->busy.next; l != &ps->busy; l = next) {
        next = l->next;
        struct hub_bw *bw =
            (struct hub_bw *)((char *)l - offsetof(struct hub_bw, busy));
        refill(bw);
        for (int d = 0; d < 2; d++) {
            /* As many turns as the tokens pay for, a share each. */
            double budget = bw->tokens[d];
            while (budget > 0 && !sl_list_empty(&bw->held[d])) {
                release(HUB_CONN_OF(bw->held[d].next, held));
                budget -= bw->share;
            }
        }
        if (sl_list_empty(&bw->held[0]) && sl_list_empty(&bw->held[1])) {
            sl_list_del(&bw->busy);
            bw->in_busy = 0;
        }
    }
    if (sl_list_empty(&ps->busy))
        uv_timer_stop(&ps->rate_timer);
}
