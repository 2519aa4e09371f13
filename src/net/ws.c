#include "net/ws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <wslay/wslay.h>

#include "core/error.h"

/* wslay pulls input through recv_callback and pushes output through
 * send_callback; libuv pushes input to us and wants output handed over.
 * So a read puts its bytes in ws->rbuf and runs wslay_event_recv, which
 * drains them; wslay's output is gathered into out[1] and written in one
 * uv_try_write (the rest with one uv_write) per pump, rather than one
 * syscall per frame header and 4 KiB masked chunk. */

#define OBUF_CAP (64 * 1024)
#define RBUF_FIRST 4096
#define PUMP_ROUNDS 64

static void pump(struct sl_ws *ws);
static void close_handles(struct sl_ws *ws, int reason);
static void on_timer(uv_timer_t *t);

static wslay_event_context_ptr W(const struct sl_ws *ws)
{
    return (wslay_event_context_ptr)ws->wslay;
}

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf,
                             size_t len, int flags, void *user)
{
    struct sl_ws *ws = user;
    (void)flags;
    if (ws->closing || ws->read_paused || ws->out_full || ws->rbuf == NULL ||
        ws->roff >= ws->rlen) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = ws->rlen - ws->roff;
    if (n > len)
        n = len;
    memcpy(buf, ws->rbuf + ws->roff, n);
    ws->roff += n;
    ws->fed += n;
    return (ssize_t)n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data,
                             size_t len, int flags, void *user)
{
    struct sl_ws *ws = user;
    struct sl_ws_obuf *f = &ws->out[1];
    (void)flags;
    if (ws->closing) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (f->cap - f->len < len && f->cap < ws->obuf_cap) {
        /* Grow towards what the frames need, at most obuf_cap. */
        size_t ncap = f->cap ? f->cap * 2 : RBUF_FIRST;
        while (ncap < f->len + len && ncap < ws->obuf_cap)
            ncap *= 2;
        if (ncap > ws->obuf_cap)
            ncap = ws->obuf_cap;
        char *p = realloc(f->data, ncap);
        if (p == NULL) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        f->data = p;
        f->cap = ncap;
    }
    size_t room = f->cap - f->len;
    if (room == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > room)
        len = room;
    memcpy(f->data + f->len, data, len);
    f->len += len;
    return (ssize_t)len;
}

static int on_wslay_genmask(wslay_event_context_ptr ctx, uint8_t *buf,
                            size_t len, void *user)
{
    (void)ctx;
    (void)user;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static void update_out_full(struct sl_ws *ws);

/* wslay bounds a message's payload but not how many frames carry it, and
 * keeps one allocation per fragment: a megabyte of 1-byte fragments would
 * hold tens of megabytes. So every fragment after the first counts
 * SL_WS_FRAME_COST against max_msg; over it, the message is refused as
 * too big (RFC 6455 1009). Empty fragments cost nothing to wslay but
 * their count is bounded the same way. */
static void on_wslay_frame_start(wslay_event_context_ptr ctx,
                                 const struct wslay_event_on_frame_recv_start_arg *arg,
                                 void *user)
{
    struct sl_ws *ws = user;
    /* Its size on the wire: the shortest header for its length (a longer
     * one only makes `framed` lag `fed`, and the context stays), and the
     * mask every client frame carries. */
    uint64_t len = arg->payload_length;
    ws->frame_end = ws->framed + 2 + (len > 65535 ? 8 : len > 125 ? 2 : 0) +
                    (ws->client ? 0 : 4) + len;
    ws->in_frame = 1;
    if (arg->opcode & 0x8) /* control frames are whole and at most 125 */
        return;
    ws->msg_open = !arg->fin;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME)
        ws->frag_cost = 0;
    else
        ws->frag_cost += SL_WS_FRAME_COST;
    ws->frag_cost += arg->payload_length;
    if (ws->frag_cost <= ws->max_msg)
        return;
    if (ws->reason == 0)
        ws->reason = SL_ETOOBIG;
    /* No more input is looked at; the message is never delivered. */
    wslay_event_shutdown_read(ctx);
    (void)wslay_event_queue_close(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, NULL, 0);
}

static void on_wslay_frame_end(wslay_event_context_ptr ctx, void *user)
{
    struct sl_ws *ws = user;
    (void)ctx;
    ws->framed = ws->frame_end;
    ws->in_frame = 0;
}

static void on_wslay_msg(wslay_event_context_ptr ctx,
                         const struct wslay_event_on_msg_recv_arg *arg,
                         void *user)
{
    struct sl_ws *ws = user;
    if (ws->closing)
        return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        if (ws->peer_closed || !wslay_event_get_read_enabled(ctx))
            return; /* refused by on_wslay_frame_start */
        ws->on_message(ws,
                       arg->opcode == WSLAY_TEXT_FRAME ? SL_WS_TEXT
                                                       : SL_WS_BINARY,
                       arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        if (ws->peer_closed)
            return;
        ws->peer_closed = 1;
        ws->close_code = arg->status_code ? arg->status_code : 1005;
        if (ws->on_peer_close)
            ws->on_peer_close(ws, ws->close_code);
        break;
    case WSLAY_PING:
        /* wslay has queued the pong: stop taking pings mid-read once the
         * queue is full, rather than after the whole read buffer. */
        update_out_full(ws);
        break;
    default: /* pong: last_rx is enough */
        break;
    }
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = on_wslay_recv,
    .send_callback = on_wslay_send,
    .genmask_callback = on_wslay_genmask,
    .on_frame_recv_start_callback = on_wslay_frame_start,
    .on_frame_recv_end_callback = on_wslay_frame_end,
    .on_msg_recv_callback = on_wslay_msg,
};

static int ctx_new(struct sl_ws *ws)
{
    wslay_event_context_ptr ctx = NULL;
    int rc = ws->client ? wslay_event_context_client_init(&ctx, &wslay_cbs, ws)
                        : wslay_event_context_server_init(&ctx, &wslay_cbs, ws);
    if (rc != 0)
        return UV_ENOMEM;
    wslay_event_config_set_max_recv_msg_length(ctx, ws->max_msg);
    ws->wslay = ctx;
    ws->asleep = 0;
    return 0;
}

/* An idle connection's context goes when nothing is in it: no input
 * short of a whole message, no output queued, no close under way. A new
 * context is then the same as the old one (wslay keeps nothing else
 * between messages), and is made at the next byte either way. */
static void maybe_sleep(struct sl_ws *ws)
{
    wslay_event_context_ptr ctx = W(ws);
    if (ctx == NULL || ws->closing || ws->close_wanted || ws->peer_closed ||
        ws->shut || ws->reason != 0 || ws->rbuf != NULL || ws->writing ||
        ws->rmem != NULL || /* a grown read block: busy, stay awake */
        ws->corked || ws->out[0].len != 0 || ws->out[1].len != 0 ||
        ws->in_frame || ws->msg_open || ws->fed != ws->framed ||
        !wslay_event_get_read_enabled(ctx) ||
        !wslay_event_get_write_enabled(ctx) ||
        wslay_event_get_queued_msg_count(ctx) != 0 ||
        wslay_event_want_write(ctx))
        return;
    wslay_event_context_free(ctx);
    ws->wslay = NULL;
    ws->asleep = 1;
}

/* The context again, for a byte to read or write. */
static int wake(struct sl_ws *ws)
{
    if (ws->wslay != NULL)
        return 0;
    if (!ws->asleep)
        return UV_EPIPE;
    return ctx_new(ws);
}

size_t sl_ws_queued(const struct sl_ws *ws)
{
    size_t n = ws->out[0].len + ws->out[1].len;
    if (ws->wslay != NULL)
        n += wslay_event_get_queued_msg_length(W(ws)) +
             wslay_event_get_queued_msg_count(W(ws)) * SL_WS_FRAME_COST;
    return n;
}

/* Reading stops while the output queue is above read_stop and resumes
 * at low_water: see ws.h. Inside on_read the read stops once pump
 * returns; elsewhere at once. */
static void update_out_full(struct sl_ws *ws)
{
    size_t q = sl_ws_queued(ws);
    if (!ws->out_full && q > ws->read_stop) {
        ws->out_full = 1;
        if (ws->reading && ws->rbuf == NULL && !ws->in_cb) {
            sl_xprt_read_stop(ws->xp);
            ws->reading = 0;
        }
    } else if (ws->out_full && q <= ws->low_water) {
        ws->out_full = 0;
        /* The peer's bytes waited on us, not on it. */
        ws->last_rx = uv_now(ws->xp->tcp.loop);
    }
}

int sl_ws_is_closing(const struct sl_ws *ws)
{
    return ws->closing || ws->close_wanted || ws->peer_closed ||
           (ws->wslay != NULL && !wslay_event_get_write_enabled(W(ws)));
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sl_ws *ws = h->data;
    if (--ws->open_handles > 0)
        return;
    if (ws->rbuf != ws->rmem)
        free(ws->rbuf);
    ws->rbuf = NULL;
    free(ws->rmem);
    ws->rmem = NULL;
    ws->rcap = 0;
    for (int i = 0; i < 2; i++) {
        free(ws->out[i].data);
        ws->out[i].data = NULL;
        ws->out[i].len = ws->out[i].cap = 0;
    }
    if (ws->wslay != NULL)
        wslay_event_context_free(W(ws));
    ws->wslay = NULL;
    ws->on_close(ws, ws->reason);
}

static void close_handles(struct sl_ws *ws, int reason)
{
    if (ws->closing)
        return;
    ws->closing = 1;
    if (ws->reason == 0)
        ws->reason = reason;
    sl_xprt_read_stop(ws->xp);
    ws->reading = 0;
    ws->open_handles = 2;
    sl_xprt_close(ws->xp, on_handle_closed);
    uv_close((uv_handle_t *)&ws->timer, on_handle_closed);
}

void sl_ws_abort(struct sl_ws *ws, int reason)
{
    close_handles(ws, reason);
}

static void on_write(uv_write_t *req, int status);

/* Hands out[1] to the kernel: try_write, and uv_write what is left. */
static int flush(struct sl_ws *ws)
{
    struct sl_ws_obuf *f = &ws->out[1];
    if (ws->writing || ws->closing || ws->corked || f->len == 0)
        return 0;
    uv_buf_t b = uv_buf_init(f->data, (unsigned)f->len);
    int n = sl_xprt_try_write(ws->xp, &b, 1);
    if (n < 0 && n != UV_EAGAIN)
        return n;
    if (n < 0)
        n = 0;
    ws->bytes_out += (uint64_t)n;
    ws->used = 1;
    if ((size_t)n == f->len) {
        f->len = 0;
        return 0;
    }
    /* The rest goes out from the same block; the other block fills. */
    struct sl_ws_obuf tmp = ws->out[0];
    ws->out[0] = *f;
    ws->out[0].len = f->len - (size_t)n;
    *f = tmp;
    f->len = 0;
    b = uv_buf_init(ws->out[0].data + n, (unsigned)ws->out[0].len);
    int rc = sl_xprt_write(&ws->write_req, ws->xp, &b, 1, on_write);
    if (rc < 0)
        return rc;
    ws->writing = 1;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    struct sl_ws *ws = req->data;
    ws->writing = 0;
    if (ws->closing)
        return;
    if (status < 0) {
        close_handles(ws, status);
        return;
    }
    ws->bytes_out += ws->out[0].len;
    ws->out[0].len = 0;
    pump(ws);
}

/* At a timer tick: a connection that moved nothing since the previous
 * tick gives its buffers back. */
static void drop_idle_buffers(struct sl_ws *ws)
{
    if (ws->used) {
        ws->used = 0;
        return;
    }
    if (!ws->writing && ws->out[0].len == 0 && ws->out[1].len == 0) {
        for (int i = 0; i < 2; i++) {
            free(ws->out[i].data);
            ws->out[i].data = NULL;
            ws->out[i].cap = 0;
        }
    }
    if (ws->rbuf == NULL) {
        free(ws->rmem);
        ws->rmem = NULL;
        ws->rcap = 0;
        ws->rwant = RBUF_FIRST;
    }
}

/* Small buffers go as soon as they are empty: a control connection
 * trades a message now and then, and 1,000 bridges holding a read and a
 * write block each cost the hub 8 MB for nothing. A block that grew (bulk
 * traffic) stays until the idle tick above, so a busy connection does not
 * pay malloc and free per read. */
static void drop_small_buffers(struct sl_ws *ws)
{
    if (!ws->writing && ws->out[0].len == 0 && ws->out[1].len == 0) {
        for (int i = 0; i < 2; i++) {
            if (ws->out[i].cap > RBUF_FIRST)
                continue;
            free(ws->out[i].data);
            ws->out[i].data = NULL;
            ws->out[i].cap = 0;
        }
    }
    if (ws->rbuf == NULL && ws->rcap <= RBUF_FIRST) {
        free(ws->rmem);
        ws->rmem = NULL;
        ws->rcap = 0;
    }
}

static void release_rbuf(struct sl_ws *ws)
{
    if (ws->rbuf != ws->rmem)
        free(ws->rbuf); /* the bytes given to sl_ws_start */
    ws->rbuf = NULL;
    ws->rlen = ws->roff = 0;
}

static void start_reading(struct sl_ws *ws);

/* Moves everything that can move: input to wslay, wslay's output to the
 * socket, the close handshake along. Every state change ends here. */
static void pump(struct sl_ws *ws)
{
    int rc;
    if (ws->closing || ws->in_cb)
        return;
    if (ws->asleep && ws->rbuf == NULL && !ws->close_wanted) {
        /* Nothing to frame or unframe: stay asleep, but listen. */
        if (!ws->read_paused && !ws->out_full && !ws->reading)
            start_reading(ws);
        return;
    }
    if ((rc = wake(ws)) != 0) {
        close_handles(ws, rc);
        return;
    }
    wslay_event_context_ptr ctx = W(ws);

    /* Input held back by a full output queue is taken up again here as
     * soon as the writes make room, rather than at the next write. */
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        update_out_full(ws);
        if (ws->rbuf != NULL && !ws->read_paused && !ws->out_full) {
            if (wslay_event_want_read(ctx)) {
                ws->in_cb = 1;
                rc = wslay_event_recv(ctx);
                ws->in_cb = 0;
                if (ws->closing)
                    return;
                if (rc != 0) {
                    close_handles(ws, rc == WSLAY_ERR_NOMEM ? UV_ENOMEM
                                                            : SL_EPARSE);
                    return;
                }
            }
            if (ws->roff >= ws->rlen || !wslay_event_want_read(ctx))
                release_rbuf(ws);
        }

        for (int i = 0; i < PUMP_ROUNDS && !ws->writing; i++) {
            /* Our close frame goes after every message queued before it;
             * checked on each pass, as those messages may go out in this
             * very loop (a message and a close asked for inside a read
             * callback: the close used to wait for the next event). */
            if (ws->close_wanted && !ws->close_queued && !ws->peer_closed &&
                wslay_event_get_queued_msg_count(ctx) == 0) {
                ws->close_queued = 1;
                rc = wslay_event_queue_close(ctx, ws->close_code, NULL, 0);
                if (rc != 0 && rc != WSLAY_ERR_NO_MORE_MSG) {
                    close_handles(ws, UV_ENOMEM);
                    return;
                }
            }
            if (wslay_event_want_write(ctx)) {
                rc = wslay_event_send(ctx);
                if (rc != 0) {
                    close_handles(ws, ws->reason ? ws->reason : UV_EPIPE);
                    return;
                }
            }
            rc = flush(ws);
            if (rc < 0) {
                close_handles(ws, rc);
                return;
            }
            if (!wslay_event_want_write(ctx) &&
                !(ws->close_wanted && !ws->close_queued && !ws->peer_closed &&
                  wslay_event_get_queued_msg_count(ctx) == 0))
                break;
        }

        update_out_full(ws);
        if (ws->rbuf == NULL || ws->read_paused || ws->out_full ||
            !wslay_event_want_read(ctx))
            break;
    }

    if (ws->above_high && sl_ws_queued(ws) <= ws->low_water) {
        ws->above_high = 0;
        if (ws->on_drain != NULL) {
            ws->on_drain(ws);
            if (ws->closing)
                return;
        }
    }

    if (wslay_event_get_close_sent(ctx) && !ws->writing &&
        ws->out[1].len == 0) {
        if (!ws->close_wanted && !ws->peer_closed && ws->reason == 0) {
            /* wslay closed on its own: the peer broke the protocol. */
            uint16_t code = wslay_event_get_status_code_sent(ctx);
            ws->reason = code == WSLAY_CODE_MESSAGE_TOO_BIG ? SL_ETOOBIG
                                                            : SL_EPARSE;
        }
        if (ws->peer_closed) {
            close_handles(ws, 0);
            return;
        }
        if (!ws->shut) {
            /* Our close frame is out: wait a while for the peer's. */
            ws->shut = 1;
            ws->close_deadline =
                uv_now(ws->xp->tcp.loop) + ws->close_timeout_ms;
            uv_timer_stop(&ws->timer);
            uv_timer_start(&ws->timer, on_timer, ws->close_timeout_ms, 0);
        }
    }

    if (!ws->read_paused && !ws->out_full && !ws->reading &&
        wslay_event_want_read(ctx))
        start_reading(ws);
    drop_small_buffers(ws);
    maybe_sleep(ws);
}

/* Wakes at the next ping or at the moment the peer turns dead, whichever
 * comes first: checking only at pings would find a dead peer up to a ping
 * period after dead_ms. */
static int arm_keepalive(struct sl_ws *ws, uint64_t now)
{
    uint64_t dead_at = ws->last_rx + ws->dead_ms;
    uint64_t at = ws->next_ping < dead_at ? ws->next_ping : dead_at;
    if (ws->close_wanted && ws->close_stall_at < at)
        at = ws->close_stall_at;
    return uv_timer_start(&ws->timer, on_timer, at > now ? at - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct sl_ws *ws = t->data;
    if (ws->closing)
        return;
    uint64_t now = uv_now(t->loop);
    if (ws->close_deadline != 0) {
        if (now >= ws->close_deadline)
            close_handles(ws, 0);
        return;
    }
    if (now - ws->last_rx >= ws->dead_ms) {
        close_handles(ws, UV_ETIMEDOUT);
        return;
    }
    if (ws->close_wanted && now >= ws->close_stall_at) {
        /* Our close frame waits behind queued output: a peer that takes
         * none of it for close_timeout_ms (it floods and never reads)
         * does not get to hold the connection until dead_ms. */
        if (ws->bytes_out == ws->close_mark) {
            close_handles(ws, UV_ETIMEDOUT);
            return;
        }
        ws->close_mark = ws->bytes_out;
        ws->close_stall_at = now + ws->close_timeout_ms;
    }
    if (now >= ws->next_ping) {
        ws->next_ping = now + ws->ping_ms;
        drop_idle_buffers(ws);
        struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
        if (wake(ws) != 0) {
            close_handles(ws, UV_ENOMEM);
            return;
        }
        if (wslay_event_queue_msg(W(ws), &ping) == 0)
            pump(ws);
        if (ws->closing || ws->close_deadline != 0)
            return; /* pump closed, or armed the close timer */
    }
    (void)arm_keepalive(ws, now);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_ws *ws = h->data;
    (void)hint;
    /* Never two input blocks: reading stops while unread bytes remain. */
    if (ws->rbuf != NULL) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    if (ws->rmem == NULL || ws->rcap != ws->rwant) {
        free(ws->rmem);
        ws->rmem = malloc(ws->rwant);
        ws->rcap = ws->rmem ? ws->rwant : 0;
    }
    *buf = uv_buf_init(ws->rmem, (unsigned)ws->rcap);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sl_ws *ws = s->data;
    (void)buf; /* always ws->rmem (or NULL) */
    if (nread <= 0) {
        if (nread == 0) {
            drop_small_buffers(ws); /* drained: EAGAIN */
            return;
        }
        if (nread == UV_ENOBUFS) {
            close_handles(ws, UV_ENOMEM);
            return;
        }
        /* EOF after a close frame either way is the normal end. */
        if (nread == UV_EOF && (ws->peer_closed || ws->shut))
            close_handles(ws, 0);
        else
            close_handles(ws, (int)nread);
        return;
    }
    ws->rbuf = ws->rmem;
    ws->rlen = (size_t)nread;
    ws->roff = 0;
    ws->used = 1;
    if ((size_t)nread == ws->rcap && ws->rwant < SL_WS_READ_SIZE) {
        /* A full read: the next one gets a bigger buffer. */
        ws->rwant = ws->rwant * 4 < SL_WS_READ_SIZE ? ws->rwant * 4
                                                    : SL_WS_READ_SIZE;
    }
    ws->bytes_in += (uint64_t)nread;
    ws->last_rx = uv_now(s->loop);
    pump(ws);
    if (!ws->closing && (ws->read_paused || ws->out_full) && ws->reading) {
        /* Paused from a callback, or the output is full: stop until
         * resumed. */
        sl_xprt_read_stop(sl_xprt_of(s));
        ws->reading = 0;
    }
}

static void start_reading(struct sl_ws *ws)
{
    if (ws->closing || ws->reading || ws->rbuf != NULL)
        return;
    int rc = sl_xprt_read_start(ws->xp, on_alloc, on_read);
    if (rc < 0) {
        close_handles(ws, rc);
        return;
    }
    ws->reading = 1;
}

int sl_ws_start(struct sl_ws *ws, struct sl_xprt *xp, const struct sl_ws_opts *opts,
                const void *pre, size_t pre_len)
{
    static const struct sl_ws_opts defaults = {0};
    int rc;
    if (opts == NULL)
        opts = &defaults;

    ws->xp = xp;
    xp->tcp.data = ws;
    ws->wslay = NULL;
    ws->rbuf = NULL;
    ws->rlen = ws->roff = 0;
    ws->rmem = NULL;
    ws->rcap = 0;
    ws->rwant = RBUF_FIRST;
    ws->used = 0;
    memset(ws->out, 0, sizeof(ws->out));
    ws->max_queued = opts->max_queued ? opts->max_queued : SL_WS_MAX_QUEUED;
    ws->high_water = opts->high_water ? opts->high_water : SL_WS_HIGH_WATER;
    ws->low_water = opts->low_water ? opts->low_water : SL_WS_LOW_WATER;
    if (ws->low_water >= ws->high_water)
        ws->low_water = ws->high_water / 2;
    ws->read_stop = opts->read_stop ? opts->read_stop : SL_WS_READ_STOP;
    if (ws->read_stop < ws->high_water)
        ws->read_stop = ws->high_water;
    ws->max_msg = opts->max_msg ? opts->max_msg : SL_WS_MAX_MSG_DATA;
    ws->frag_cost = 0;
    ws->obuf_cap = OBUF_CAP;
    ws->ping_ms = opts->ping_ms ? opts->ping_ms : SL_WS_PING_MS;
    ws->dead_ms = opts->dead_ms ? opts->dead_ms : SL_WS_DEAD_MS;
    ws->close_timeout_ms =
        opts->close_timeout_ms ? opts->close_timeout_ms : SL_WS_CLOSE_TIMEOUT_MS;
    ws->last_rx = uv_now(xp->tcp.loop);
    ws->close_deadline = 0;
    ws->close_stall_at = ws->close_mark = 0;
    ws->bytes_in = ws->bytes_out = 0;
    ws->reason = 0;
    ws->open_handles = 0;
    ws->close_code = 1000;
    ws->started = 1;
    ws->writing = ws->read_paused = ws->reading = ws->above_high = 0;
    ws->close_wanted = ws->close_queued = ws->shut = ws->closing = 0;
    ws->peer_closed = ws->in_cb = ws->out_full = 0;
    ws->write_req.data = ws;

    rc = uv_timer_init(xp->tcp.loop, &ws->timer);
    if (rc < 0) {
        /* Only the TCP handle to close. */
        ws->closing = 1;
        ws->reason = rc;
        ws->open_handles = 1;
        sl_xprt_close(xp, on_handle_closed);
        return rc;
    }
    ws->timer.data = ws;

    ws->client = opts->role == SL_WS_CLIENT;
    ws->asleep = ws->in_frame = ws->msg_open = 0;
    ws->fed = ws->framed = ws->frame_end = 0;
    if ((rc = ctx_new(ws)) != 0)
        goto fail;

    if (pre_len > 0) {
        ws->rbuf = malloc(pre_len);
        if (ws->rbuf == NULL) {
            rc = UV_ENOMEM;
            goto fail;
        }
        memcpy(ws->rbuf, pre, pre_len);
        ws->rlen = pre_len;
    }
    ws->next_ping = ws->last_rx + ws->ping_ms;
    rc = arm_keepalive(ws, ws->last_rx);
    if (rc < 0)
        goto fail;
    pump(ws);
    return 0;
fail:
    close_handles(ws, rc);
    return rc;
}

int sl_ws_send(struct sl_ws *ws, enum sl_ws_msg_type type, const void *data,
               size_t len)
{
    if (ws->closing || ws->close_wanted)
        return UV_EPIPE;
    if (sl_ws_queued(ws) + len > ws->max_queued)
        return SL_ELIMIT;
    int rc = wake(ws);
    if (rc != 0)
        return rc;
    struct wslay_event_msg m = {
        type == SL_WS_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
        (const uint8_t *)data, len};
    rc = wslay_event_queue_msg(W(ws), &m);
    if (rc == WSLAY_ERR_NO_MORE_MSG)
        return UV_EPIPE;
    if (rc != 0)
        return rc == WSLAY_ERR_NOMEM ? UV_ENOMEM : UV_EINVAL;
    pump(ws);
    if (ws->closing)
        return UV_EPIPE;
    if (sl_ws_queued(ws) > ws->high_water) {
        ws->above_high = 1;
        return 1;
    }
    return 0;
}

void sl_ws_cork(struct sl_ws *ws)
{
    ws->corked = 1;
}

void sl_ws_uncork(struct sl_ws *ws)
{
    if (!ws->corked)
        return;
    ws->corked = 0;
    pump(ws);
}

void sl_ws_pause_read(struct sl_ws *ws)
{
    if (ws->closing || ws->read_paused)
        return;
    ws->read_paused = 1;
    if (ws->reading && !ws->in_cb) {
        sl_xprt_read_stop(ws->xp);
        ws->reading = 0;
    }
    /* Inside a read, on_read stops reading once the callback returns. */
}

void sl_ws_resume_read(struct sl_ws *ws)
{
    if (ws->closing || !ws->read_paused)
        return;
    ws->read_paused = 0;
    /* Bytes may have waited for longer than dead_ms: they count. */
    ws->last_rx = uv_now(ws->xp->tcp.loop);
    pump(ws);
}

void sl_ws_close(struct sl_ws *ws, uint16_t code)
{
    if (ws->closing || ws->close_wanted)
        return;
    ws->close_wanted = 1;
    ws->close_code = code ? code : 1000;
    ws->close_mark = ws->bytes_out;
    ws->close_stall_at = uv_now(ws->xp->tcp.loop) + ws->close_timeout_ms;
    pump(ws);
    if (!ws->closing && !ws->shut)
        (void)arm_keepalive(ws, uv_now(ws->xp->tcp.loop));
}
