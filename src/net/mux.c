/* The multiplexed connection (net/mux.h): streams as transports over one
 * transport, credit flow control, round-robin framing flushed once per
 * loop iteration, and a reader that parses every whole frame it got.
 *
 * Re-entrancy: callers' callbacks (read, write, shutdown, close,
 * on_stream) run from inside the engine and may call back into it. The
 * engine never frees a stream or itself from inside such a call: closing
 * marks, and the memory goes from the flush handler (streams) or from
 * the last handle's close callback (the connection). */
#include "net/mux.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/list.h"
#include "core/log.h"

#define READ_BUF (256 * 1024)   /* a read: many frames, and a whole one */
#define BATCH_IOV 1000          /* buffers in one write (IOV_MAX is 1024) */
#define BATCH_BYTES (1024 * 1024)
#define ARENA 16384             /* frame headers of one write */
#define ARENA_FRAME (SL_MUX_HEADER + 2 + SL_MUX_TARGET_MAX + SL_MUX_HEADER)
#define SPANS_MAX 64            /* caller buffers one frame may gather */
#define CTL_MAX (1024 * 1024)   /* control bytes waiting: a peer that
                                   pings and never reads stops here */
#define DELIVER_HINT (64 * 1024)
#define PING_MS 15000
#define DEAD_MS 45000
#define DRAIN_MS 2000           /* a GOAWAY's last write, at most */
#define RTT_FLOOR_US 1000
#define TUNE_RTTS 4             /* half a window within this many RTTs */
#define BATCHES_PER_RUN 16
#define LINGER_MS 10000         /* a closed stream's queued writes, at most */
/* try_write copies a small write whole, as a socket's kernel buffer
 * takes it, while a stream holds less than SNDBUF: the caller's buffer
 * goes back at once instead of waiting for the write (a relay would
 * otherwise hold a read buffer per stream per loop turn). A write over
 * TRY_MAX goes through write, framed from the caller's memory: bulk
 * bytes are not copied. */
#define SNDBUF (256 * 1024)
#define TRY_MAX (16 * 1024)
#define SEG_NONE UINT32_MAX
#define PARK_CHUNK (64 * 1024 - 64)
/* A stalled reader's bytes of one read are kept where they were read, as
 * slices of the read buffer (no copy), when they are at least this much
 * of it: so a buffer kept for readers holds at least a quarter of their
 * bytes, and smaller leftovers are copied as before. */
#define SLICE_MIN (READ_BUF / 4)
/* Read buffers kept for reuse while busy: a fresh one would cost its page
 * faults (an mmap, or a heap grown again) on every read. A stalled reader
 * of a grown window holds up to 64 of them; those not taken again within
 * a tick go. */
#define FREE_BLOCKS 32

/* A caller's write on a stream, until the write carrying its last byte
 * is done. */
struct mux_wr {
    struct mux_wr *next;
    struct sl_mux_stream *s;
    uv_write_t *req;
    uv_write_cb cb;
    size_t len;
    unsigned nbufs, cur; /* next buffer to frame */
    size_t off;          /* framed bytes of bufs[cur] */
    uv_buf_t bufs[];
};

/* A read buffer: the connection's, and kept by the slices of it that
 * stalled readers have not taken yet. */
struct rblock {
    struct sl_mux *m;     /* whose free list takes it back */
    struct rblock *next;  /* in that list */
    uint32_t refs;
    char data[READ_BUF];
};

/* Bytes received for a reader that was not reading: a copy in data, or a
 * slice of a read buffer (blk holds a reference). */
struct rx_chunk {
    struct rx_chunk *next;
    size_t len, off, cap;
    struct rblock *blk;
    const char *p; /* data, or the slice */
    char data[];
};

/* A DATA payload of the read being parsed, for the end of the pass. */
struct seg {
    const char *p;
    uint32_t len;
    uint32_t next; /* the stream's next segment, or SEG_NONE */
};

struct sl_mux_stream {
    struct sl_mux *m;
    struct sl_xprt *x; /* the caller's transport while attached */
    struct sl_mux_stream *hnext;
    struct sl_link all;   /* m->all */
    struct sl_link ready; /* m->ready or m->blocked */
    struct sl_link pend;  /* m->pending or m->deferred */
    struct sl_link touch; /* m->touched: segments to deliver */
    struct sl_link owed;  /* m->owed: a CREDIT to send */
    struct sl_mux_stream *fin_next; /* in a batch's FIN list */
    uint32_t id;
    uint8_t kind;
    char *target; /* until OPEN is framed; NULL for "" */

    /* Sending. */
    struct mux_wr *wq, **wq_tail; /* not wholly framed */
    size_t queued;                /* bytes of writes not yet done */
    size_t unframed;
    uint64_t sent, send_limit;
    int inflight; /* writes and a FIN in the write in flight */
    uv_shutdown_t *shut_req;
    uv_shutdown_cb shut_cb;

    /* Receiving. */
    uv_alloc_cb alloc_cb;
    uv_read_cb read_cb;
    uint64_t recv, consumed, granted;
    uint32_t window, grown;
    uint64_t epoch_us;
    struct rx_chunk *rx, *rx_last;
    uint32_t seg_head, seg_tail;
    int err; /* what the reader and writers get: reset, or the loss */
    uv_close_cb close_cb;

    unsigned in_map : 1;
    unsigned attached : 1;
    unsigned reading : 1;
    unsigned open_pending : 1; /* ours, OPEN not framed yet */
    unsigned fin_want : 1;
    unsigned fin_sent : 1;
    unsigned fin_framed : 1; /* by shutdown (a close's FIN is a control
                                frame) */
    unsigned fin_recv : 1;
    unsigned eof_done : 1;
    unsigned err_done : 1;
    unsigned user_closed : 1;
    unsigned close_done : 1;
    unsigned refused : 1;
    unsigned lingering : 1; /* closed, its queued writes still going */
    uint64_t linger_until;
};

struct batch {
    uv_write_t req;
    struct sl_mux *m;
    char *ctl; /* control frames, owned */
    struct mux_wr *done, **done_tail;
    struct sl_mux_stream *fins;
    size_t bytes, niov, arena_len, payload;
    int goaway_only;
    uv_buf_t iov[BATCH_IOV];
    uint8_t arena[ARENA];
};

struct sl_mux {
    struct sl_mux_cbs cbs;
    struct sl_mux_opts opts;
    char name[96];
    uv_loop_t *loop;
    struct sl_xprt *x;
    uv_check_t check;
    uv_prepare_t prepare;
    uv_shutdown_t shut_req; /* after a GOAWAY */
    uv_timer_t timer;
    int handles; /* check, prepare, timer not yet through close */

    /* Reading. */
    struct rblock *inb; /* NULL while idle */
    struct rblock *free_blocks; /* emptied ones, for the next reads */
    unsigned nfree_blocks;
    unsigned free_low; /* fewest in the list since the last tick */
    char *in;           /* inb->data */
    size_t in_len;
    struct seg *segs;
    uint32_t nsegs, segs_cap;

    /* Streams. */
    struct sl_mux_stream **tab;
    size_t tab_size, nmap;
    struct sl_link all, ready, blocked, pending, deferred, touched, owed;
    uint32_t next_id, peer_max;

    /* Connection credit. */
    uint64_t sent, send_limit;
    uint64_t recv, granted;
    uint32_t window, max_window;
    unsigned conn_owed : 1;

    struct {
        char *data;
        size_t len, cap;
    } ctl; /* control frames waiting for the next write */
    struct batch *out;
    uint64_t out_at;
    /* Kept while busy (a 256 KiB read buffer and a write's 32 KiB would
     * cost an mmap or a heap trim each), freed after a quiet tick. */
    struct batch *spare;
    uint64_t reads_at_tick, writes_at_tick;

    uint64_t last_rx, last_ping;
    uint64_t ping_token;
    uint64_t srtt_us;
    struct sl_mux_stats stats;
    int reason;

    unsigned reading : 1;
    unsigned closing : 1;
    unsigned going_away : 1;
    unsigned peer_goaway : 1;
    unsigned ping_out : 1;
    unsigned x_closing : 1;
    unsigned x_closed : 1;
    unsigned released : 1;
    unsigned handles_closing : 1;
    unsigned parsing : 1;
    unsigned parse_owed : 1; /* bytes given at start, parsed from the loop */
};

static const struct sl_xprt_ops stream_ops;

static void schedule(struct sl_mux *m);
static void close_transport(struct sl_mux *m);
static void on_goaway_shut(uv_shutdown_t *req, int status);
static void stream_reset(struct sl_mux_stream *s, int err);
static void abort_conn(struct sl_mux *m, int send_goaway, uint32_t code,
                       const char *reason, int err);
static void maybe_free(struct sl_mux *m);

/* ------------------------------------------------------------ helpers */

static void mlog(const struct sl_mux *m, enum sl_log_level lvl,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void mlog(const struct sl_mux *m, enum sl_log_level lvl,
                 const char *fmt, ...)
{
    if (!sl_log_on(m->opts.log, lvl))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log_write(m->opts.log, lvl, "%s: %s", m->name, msg);
}

/* A peer's reason text, printable, for the log. */
static void printable(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[o] = '\0';
}

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static int ctl_append(struct sl_mux *m, const uint8_t *p, size_t n)
{
    if (m->ctl.len + n > CTL_MAX)
        return SL_ETOOBIG;
    if (m->ctl.len + n > m->ctl.cap) {
        size_t cap = m->ctl.cap ? m->ctl.cap : 256;
        while (cap < m->ctl.len + n)
            cap *= 2;
        char *q = realloc(m->ctl.data, cap);
        if (q == NULL)
            return UV_ENOMEM;
        m->ctl.data = q;
        m->ctl.cap = cap;
    }
    memcpy(m->ctl.data + m->ctl.len, p, n);
    m->ctl.len += n;
    return 0;
}

/* Queues a control frame; a queue the peer does not drain ends it. */
static void ctl_frame(struct sl_mux *m, const uint8_t *p, int n)
{
    if (m->closing || n < 0)
        return;
    int rc = ctl_append(m, p, (size_t)n);
    m->stats.frames_out++;
    if (rc != 0) {
        mlog(m, SL_LOG_WARN, "control frames not drained by the peer (%s); "
             "closing", sl_strerror(rc));
        abort_conn(m, 0, SL_MUX_GO_INTERNAL, NULL, rc);
        return;
    }
    schedule(m);
}

static void queue_rst(struct sl_mux *m, uint32_t id, uint32_t code,
                      const char *reason)
{
    uint8_t f[SL_MUX_HEADER + 4 + SL_MUX_REASON_MAX];
    ctl_frame(m, f, sl_mux_encode_rst(f, sizeof(f), id, code, reason));
}

static int is_peer_id(const struct sl_mux *m, uint32_t id)
{
    return (id & 1u) == (m->opts.role == SL_MUX_HUB ? 0u : 1u);
}

/* An id that was opened once and has ended: its late frames are dropped. */
static int known_closed(const struct sl_mux *m, uint32_t id)
{
    return is_peer_id(m, id) ? id <= m->peer_max : id < m->next_id;
}

static int linked(const struct sl_link *l)
{
    return l->next != l;
}

/* ------------------------------------------------------- stream table */

static size_t slot(const struct sl_mux *m, uint32_t id)
{
    return (id * 2654435761u) & (m->tab_size - 1);
}

static struct sl_mux_stream *lookup(const struct sl_mux *m, uint32_t id)
{
    if (m->tab == NULL)
        return NULL;
    for (struct sl_mux_stream *s = m->tab[slot(m, id)]; s; s = s->hnext)
        if (s->id == id)
            return s;
    return NULL;
}

static int map_grow(struct sl_mux *m)
{
    size_t n = m->tab_size ? m->tab_size * 2 : 16;
    struct sl_mux_stream **t = calloc(n, sizeof(*t));
    if (t == NULL)
        return UV_ENOMEM;
    struct sl_mux_stream **old = m->tab;
    size_t old_n = m->tab_size;
    m->tab = t;
    m->tab_size = n;
    for (size_t i = 0; i < old_n; i++) {
        struct sl_mux_stream *s = old[i];
        while (s != NULL) {
            struct sl_mux_stream *next = s->hnext;
            size_t k = slot(m, s->id);
            s->hnext = t[k];
            t[k] = s;
            s = next;
        }
    }
    free(old);
    return 0;
}

static int map_add(struct sl_mux *m, struct sl_mux_stream *s)
{
    if (m->nmap + 1 > m->tab_size && map_grow(m) != 0)
        return UV_ENOMEM;
    size_t k = slot(m, s->id);
    s->hnext = m->tab[k];
    m->tab[k] = s;
    s->in_map = 1;
    m->nmap++;
    return 0;
}

/* The stream takes no more frames: its id counts as closed from now. */
static void retire(struct sl_mux_stream *s)
{
    struct sl_mux *m = s->m;
    if (!s->in_map)
        return;
    struct sl_mux_stream **pp = &m->tab[slot(m, s->id)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    s->hnext = NULL;
    s->in_map = 0;
    m->nmap--;
    sl_list_del(&s->owed);
    if (m->going_away && m->nmap == 0)
        schedule(m);
}

static struct sl_mux_stream *stream_new(struct sl_mux *m, uint32_t id)
{
    struct sl_mux_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->m = m;
    s->id = id;
    s->wq_tail = &s->wq;
    s->send_limit = SL_MUX_WINDOW_INIT;
    s->granted = SL_MUX_WINDOW_INIT;
    s->window = SL_MUX_WINDOW_INIT;
    s->epoch_us = now_us();
    s->seg_head = s->seg_tail = SEG_NONE;
    sl_list_init(&s->ready);
    sl_list_init(&s->pend);
    sl_list_init(&s->touch);
    sl_list_init(&s->owed);
    if (map_add(m, s) != 0) {
        free(s);
        return NULL;
    }
    sl_list_push(&m->all, &s->all);
    return s;
}

static struct rblock *rblock_new(struct sl_mux *m)
{
    struct rblock *b = m->free_blocks;
    if (b != NULL) {
        m->free_blocks = b->next;
        if (--m->nfree_blocks < m->free_low)
            m->free_low = m->nfree_blocks;
    } else if ((b = malloc(sizeof(*b))) == NULL) {
        return NULL;
    }
    b->m = m;
    b->next = NULL;
    b->refs = 1;
    return b;
}

static void rblock_unref(struct rblock *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    struct sl_mux *m = b->m;
    if (m->nfree_blocks < FREE_BLOCKS && !m->closing) {
        b->next = m->free_blocks;
        m->free_blocks = b;
        m->nfree_blocks++;
        return;
    }
    free(b);
}

/* Frees n of the kept read buffers. */
static void free_blocks_trim(struct sl_mux *m, unsigned n)
{
    while (n-- > 0 && m->free_blocks != NULL) {
        struct rblock *b = m->free_blocks;
        m->free_blocks = b->next;
        m->nfree_blocks--;
        free(b);
    }
    m->free_low = m->nfree_blocks;
}

static void free_blocks_drop(struct sl_mux *m)
{
    free_blocks_trim(m, m->nfree_blocks);
}

/* The connection's read buffer goes (slices of it may keep it). */
static void in_drop(struct sl_mux *m)
{
    rblock_unref(m->inb);
    m->inb = NULL;
    m->in = NULL;
    m->in_len = 0;
}

static void chunk_free(struct rx_chunk *c)
{
    rblock_unref(c->blk);
    free(c);
}

static void rx_drop(struct sl_mux_stream *s)
{
    struct rx_chunk *c = s->rx;
    while (c != NULL) {
        struct rx_chunk *next = c->next;
        chunk_free(c);
        c = next;
    }
    s->rx = s->rx_last = NULL;
    s->seg_head = s->seg_tail = SEG_NONE;
}

static void stream_free(struct sl_mux_stream *s)
{
    struct sl_mux *m = s->m;
    retire(s);
    sl_list_del(&s->all);
    sl_list_del(&s->ready);
    sl_list_del(&s->pend);
    sl_list_del(&s->touch);
    sl_list_del(&s->owed);
    if (s->grown > 0 && m->opts.budget != NULL)
        m->opts.budget->used -= s->grown;
    rx_drop(s);
    free(s->target);
    free(s);
    maybe_free(m);
}

static void pend(struct sl_mux_stream *s)
{
    if (!linked(&s->pend))
        sl_list_push(&s->m->pending, &s->pend);
    schedule(s->m);
}

/* ------------------------------------------------------------ sending */

static uint64_t credit_left(uint64_t limit, uint64_t used)
{
    return limit > used ? limit - used : 0;
}

/* Bytes the next frame of s may carry, max at most. */
static size_t sendable_max(const struct sl_mux *m,
                           const struct sl_mux_stream *s, size_t max)
{
    uint64_t n = s->unframed;
    uint64_t c = credit_left(s->send_limit, s->sent);
    uint64_t k = credit_left(m->send_limit, m->sent);
    if (n > max)
        n = max;
    if (n > c)
        n = c;
    if (n > k)
        n = k;
    return (size_t)n;
}

static size_t sendable(const struct sl_mux *m, const struct sl_mux_stream *s)
{
    return sendable_max(m, s, SL_MUX_DATA_MAX);
}

static int head_done(const struct sl_mux_stream *s)
{
    const struct mux_wr *w = s->wq;
    if (w == NULL)
        return 0;
    for (unsigned i = w->cur; i < w->nbufs; i++)
        if (w->bufs[i].len > (i == w->cur ? w->off : 0))
            return 0;
    return 1;
}

static int fin_due(const struct sl_mux_stream *s)
{
    return s->fin_want && !s->fin_sent && s->wq == NULL && !s->open_pending;
}

static int can_frame(const struct sl_mux *m, const struct sl_mux_stream *s)
{
    if (s->err || (s->user_closed && !s->lingering))
        return 0;
    return s->open_pending || head_done(s) || fin_due(s) ||
           sendable(m, s) > 0;
}

/* Puts s where the framer finds it: ready, or waiting for the
 * connection's credit. */
static void make_ready(struct sl_mux *m, struct sl_mux_stream *s)
{
    if (linked(&s->ready))
        return;
    if (can_frame(m, s)) {
        sl_list_push(&m->ready, &s->ready);
        schedule(m);
    } else if (!s->err && (!s->user_closed || s->lingering) &&
               s->unframed > 0 && s->sent < s->send_limit) {
        sl_list_push(&m->blocked, &s->ready);
    }
}

static void push_iov(struct batch *b, const void *p, size_t n)
{
    b->iov[b->niov++] = uv_buf_init((char *)p, (unsigned)n);
    b->bytes += n;
}

static uint8_t *arena(struct batch *b, size_t n)
{
    uint8_t *p = b->arena + b->arena_len;
    b->arena_len += n;
    return p;
}

/* Moves the head write to the batch's done list. */
static void wr_framed(struct sl_mux_stream *s, struct batch *b)
{
    struct mux_wr *w = s->wq;
    s->wq = w->next;
    if (s->wq == NULL)
        s->wq_tail = &s->wq;
    w->next = NULL;
    *b->done_tail = w;
    b->done_tail = &w->next;
    s->inflight++;
}

/* How many of n bytes fit in the spans a frame may still use. */
static size_t fit_spans(const struct sl_mux_stream *s, size_t n,
                        size_t spans)
{
    size_t got = 0;
    for (const struct mux_wr *w = s->wq; w != NULL && got < n; w = w->next)
        for (unsigned i = w == s->wq ? w->cur : 0; i < w->nbufs && got < n;
             i++) {
            size_t avail = w->bufs[i].len - (w == s->wq && i == w->cur
                                                 ? w->off : 0);
            if (avail == 0)
                continue;
            if (spans-- == 0)
                return got;
            got += avail < n - got ? avail : n - got;
        }
    return got;
}

/* Frames n bytes of s's queue (no copy: the caller's buffers). */
static void gather(struct sl_mux *m, struct sl_mux_stream *s, struct batch *b,
                   size_t n)
{
    s->sent += n;
    m->sent += n;
    s->unframed -= n;
    b->payload += n;
    while (n > 0) {
        struct mux_wr *w = s->wq;
        uv_buf_t *u = &w->bufs[w->cur];
        size_t avail = u->len - w->off;
        size_t k = avail < n ? avail : n;
        if (k > 0)
            push_iov(b, u->base + w->off, k);
        w->off += k;
        n -= k;
        if (w->off == u->len) {
            w->cur++;
            w->off = 0;
            if (w->cur == w->nbufs)
                wr_framed(s, b);
        }
    }
    while (s->wq != NULL && head_done(s))
        wr_framed(s, b);
}

/* One frame of s (OPEN or DATA), and its FIN when that is due. */
static void frame_one(struct sl_mux *m, struct sl_mux_stream *s,
                      struct batch *b)
{
    while (s->wq != NULL && head_done(s))
        wr_framed(s, b);
    size_t spans = BATCH_IOV - b->niov - 2;
    if (spans > SPANS_MAX)
        spans = SPANS_MAX;
    /* A stream that no other waits behind sends DATA as large as every
     * receiver takes: a quarter of the frames (headers, buffers, parsing)
     * for bulk. With others ready, turns stay small and fair. */
    size_t max = !s->open_pending && sl_list_empty(&m->ready)
                     ? SL_MUX_DATA_ALONE
                     : SL_MUX_DATA_MAX;
    size_t n = fit_spans(s, sendable_max(m, s, max), spans);
    if (b->bytes + n > BATCH_BYTES && b->niov > 0)
        n = BATCH_BYTES > b->bytes ? BATCH_BYTES - b->bytes : 0;
    if (s->open_pending) {
        uint8_t *h = arena(b, SL_MUX_HEADER + 2 + SL_MUX_TARGET_MAX);
        int k = sl_mux_encode_open(h, SL_MUX_HEADER + 2 + SL_MUX_TARGET_MAX,
                                   s->id, s->kind, s->target, n);
        b->arena_len -= SL_MUX_HEADER + 2 + SL_MUX_TARGET_MAX - (size_t)k;
        push_iov(b, h, (size_t)k);
        s->open_pending = 0;
        free(s->target);
        s->target = NULL;
        gather(m, s, b, n);
        m->stats.frames_out++;
    } else if (n > 0) {
        uint8_t *h = arena(b, SL_MUX_HEADER);
        sl_mux_header(h, SL_MUX_DATA, 0, s->id, (uint32_t)n);
        push_iov(b, h, SL_MUX_HEADER);
        gather(m, s, b, n);
        m->stats.frames_out++;
    }
    if (fin_due(s)) {
        uint8_t *h = arena(b, SL_MUX_HEADER);
        sl_mux_encode_fin(h, SL_MUX_HEADER, s->id);
        push_iov(b, h, SL_MUX_HEADER);
        s->fin_sent = 1;
        s->fin_framed = 1;
        s->inflight++;
        s->fin_next = b->fins;
        b->fins = s;
        m->stats.frames_out++;
        if (s->fin_recv)
            retire(s);
    }
}

static int batch_room(const struct batch *b)
{
    return b->niov + SPANS_MAX + 4 <= BATCH_IOV &&
           b->arena_len + ARENA_FRAME <= ARENA && b->bytes < BATCH_BYTES;
}

/* Round robin: one frame per ready stream per turn, until the batch is
 * full or nobody can send. */
static void frame_streams(struct sl_mux *m, struct batch *b)
{
    while (!sl_list_empty(&m->ready) && batch_room(b)) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)m->ready.next -
                                     offsetof(struct sl_mux_stream, ready));
        sl_list_del(&s->ready);
        if (can_frame(m, s))
            frame_one(m, s, b);
        make_ready(m, s);
    }
}

static void emit_credits(struct sl_mux *m)
{
    uint8_t f[SL_MUX_HEADER + 8];
    while (!sl_list_empty(&m->owed) && !m->closing) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)m->owed.next -
                                     offsetof(struct sl_mux_stream, owed));
        sl_list_del(&s->owed);
        ctl_frame(m, f, sl_mux_encode_credit(f, sizeof(f), s->id,
                                             s->granted));
    }
    if (m->conn_owed && !m->closing) {
        m->conn_owed = 0;
        ctl_frame(m, f, sl_mux_encode_credit(f, sizeof(f), 0, m->granted));
    }
}

static void batch_done(struct sl_mux *m, struct batch *b, int status)
{
    if (m->out == b)
        m->out = NULL;
    free(b->ctl);
    struct mux_wr *w = b->done;
    while (w != NULL) {
        struct mux_wr *next = w->next;
        struct sl_mux_stream *s = w->s;
        uv_write_cb cb = w->cb;
        uv_write_t *req = w->req;
        s->queued -= w->len;
        s->inflight--;
        free(w);
        pend(s);
        if (cb != NULL)
            cb(req, status < 0 ? status : 0);
        w = next;
    }
    struct sl_mux_stream *s = b->fins;
    while (s != NULL) {
        struct sl_mux_stream *next = s->fin_next;
        uv_shutdown_t *req = s->shut_req;
        uv_shutdown_cb cb = s->shut_cb;
        s->fin_next = NULL;
        s->shut_req = NULL;
        s->shut_cb = NULL;
        s->inflight--;
        pend(s);
        if (cb != NULL)
            cb(req, status < 0 ? status : 0);
        s = next;
    }
    int goaway_only = b->goaway_only;
    if (m->spare == NULL && !m->closing)
        m->spare = b;
    else
        free(b);
    /* Streams waiting for the write to be over (to fail or close). */
    while (!sl_list_empty(&m->deferred)) {
        struct sl_link *l = m->deferred.next;
        sl_list_del(l);
        sl_list_push(&m->pending, l);
    }
    if (goaway_only) {
        /* The GOAWAY is out: FIN, then the peer's EOF or the timer. */
        if (status < 0 || m->x == NULL ||
            sl_xprt_shutdown(&m->shut_req, m->x, on_goaway_shut) != 0)
            close_transport(m);
    } else if (status < 0 && !m->closing) {
        mlog(m, SL_LOG_INFO, "write failed: %s; closing",
             sl_strerror(status));
        abort_conn(m, 0, SL_MUX_GO_INTERNAL, NULL, status);
    }
    schedule(m);
}

static void on_goaway_shut(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the peer's EOF or the timer closes */
}

static void on_batch_written(uv_write_t *req, int status)
{
    struct batch *b = (struct batch *)req;
    batch_done(b->m, b, status);
}

/* Writes b: what the transport takes at once, the rest with one write
 * in flight. Returns 1 if b is done (another may follow), 0 if not. */
static int send_batch(struct sl_mux *m, struct batch *b)
{
    m->out = b;
    m->out_at = uv_now(m->loop);
    if (b->niov == 0) {
        batch_done(m, b, 0);
        return 1;
    }
    int n = sl_xprt_try_write(m->x, b->iov, (unsigned)b->niov);
    if (n != UV_EAGAIN)
        m->stats.writes++;
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
        batch_done(m, b, n);
        return 0;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    m->stats.bytes_out += done;
    if (done == b->bytes) {
        batch_done(m, b, 0);
        return 1;
    }
    size_t k = 0;
    while (done >= b->iov[k].len) {
        done -= b->iov[k].len;
        k++;
    }
    b->iov[k].base += done;
    b->iov[k].len -= (unsigned)done;
    size_t rest = 0;
    for (size_t i = k; i < b->niov; i++)
        rest += b->iov[i].len;
    m->stats.bytes_out += rest;
    m->stats.writes++;
    int rc = sl_xprt_write(&b->req, m->x, b->iov + k,
                           (unsigned)(b->niov - k), on_batch_written);
    if (rc < 0)
        batch_done(m, b, rc);
    return 0;
}

static int has_output(const struct sl_mux *m)
{
    return m->ctl.len > 0 || !sl_list_empty(&m->ready) ||
           !sl_list_empty(&m->owed) || m->conn_owed;
}

static struct batch *batch_new(struct sl_mux *m)
{
    struct batch *b = m->spare;
    m->spare = NULL;
    if (b == NULL && (b = malloc(sizeof(*b))) == NULL)
        return NULL;
    b->m = m;
    b->ctl = NULL;
    b->done = NULL;
    b->done_tail = &b->done;
    b->fins = NULL;
    b->bytes = b->niov = b->arena_len = b->payload = 0;
    b->goaway_only = 0;
    return b;
}

/* Every frame produced since the last flush, in as few writes as the
 * transport allows: control frames first, then streams round robin. */
static void flush_out(struct sl_mux *m)
{
    for (int i = 0; i < BATCHES_PER_RUN; i++) {
        if (m->out != NULL || m->closing || m->x == NULL)
            return;
        emit_credits(m);
        if (m->closing || !has_output(m))
            return;
        struct batch *b = batch_new(m);
        if (b == NULL) {
            abort_conn(m, 0, SL_MUX_GO_INTERNAL, NULL, UV_ENOMEM);
            return;
        }
        if (m->ctl.len > 0) {
            b->ctl = m->ctl.data;
            push_iov(b, b->ctl, m->ctl.len);
            m->ctl.data = NULL;
            m->ctl.len = m->ctl.cap = 0;
        }
        frame_streams(m, b);
        if (!send_batch(m, b))
            return;
    }
}

/* ---------------------------------------------------------- receiving */

static void owe(struct sl_mux_stream *s)
{
    if (!linked(&s->owed) && s->in_map)
        sl_list_push(&s->m->owed, &s->owed);
    schedule(s->m);
}

static void conn_window_at_least(struct sl_mux *m, uint64_t w)
{
    if (w <= m->window)
        return;
    m->window = (uint32_t)w;
    m->granted = m->recv + m->window;
    m->conn_owed = 1;
    schedule(m);
}

/* The reader took n bytes: the peer may send more once half the window
 * was read; the window doubles when that half went within a few round
 * trips (a transfer the window limits), up to window_max and within the
 * budget. */
static void consumed(struct sl_mux_stream *s, size_t n)
{
    struct sl_mux *m = s->m;
    s->consumed += n;
    if (s->fin_recv || !s->in_map)
        return;
    if (s->consumed + s->window - s->granted < s->window / 2)
        return;
    uint64_t now = now_us();
    uint64_t rtt = m->srtt_us > RTT_FLOOR_US ? m->srtt_us : RTT_FLOOR_US;
    uint32_t max = m->opts.window_max ? m->opts.window_max
                                      : SL_MUX_WINDOW_MAX;
    if (now - s->epoch_us < TUNE_RTTS * rtt && s->window < max) {
        uint32_t nw = s->window * 2 > max ? max : s->window * 2;
        uint32_t delta = nw - s->window;
        struct sl_mux_budget *bg = m->opts.budget;
        if (bg == NULL || bg->used + delta <= bg->max) {
            if (bg != NULL)
                bg->used += delta;
            s->grown += delta;
            s->window = nw;
            if (nw > m->max_window)
                m->max_window = nw;
            conn_window_at_least(m, (uint64_t)nw * 3 / 2);
        }
    }
    s->epoch_us = now;
    s->granted = s->consumed + s->window;
    owe(s);
}

/* n bytes of frames came off the connection: its credit is returned
 * at once (streams' windows bound what readers hold). Returns 0, or -1
 * when the peer sent past it (the connection is ended). */
static int conn_take(struct sl_mux *m, size_t n)
{
    m->recv += n;
    if (m->recv > m->granted) {
        mlog(m, SL_LOG_WARN, "data past the connection's credit (%llu > "
             "%llu); closing", (unsigned long long)m->recv,
             (unsigned long long)m->granted);
        abort_conn(m, 1, SL_MUX_GO_FLOW, "data past the connection's credit",
                   SL_EPARSE);
        return -1;
    }
    if (m->granted - m->recv < m->window / 2) {
        m->granted = m->recv + m->window;
        m->conn_owed = 1;
        schedule(m);
    }
    return 0;
}

static void fail(struct sl_mux *m, uint32_t code, const char *why)
{
    if (m->closing)
        return;
    mlog(m, SL_LOG_WARN, "%s (%s); closing the connection", why,
         sl_mux_goaway_name(code));
    abort_conn(m, 1, code, why, SL_EPARSE);
}

/* Keeps the segments from i on for a reader that is not reading, in
 * chunks of at most PARK_CHUNK: allocations the heap serves (a larger one
 * would be an mmap, page faults and an munmap each). */
static void park_failed(struct sl_mux_stream *s)
{
    s->err = UV_ENOMEM;
    queue_rst(s->m, s->id, SL_MUX_RST_INTERNAL, "out of memory");
    retire(s);
    rx_drop(s);
    pend(s);
}

static void rx_append(struct sl_mux_stream *s, struct rx_chunk *c)
{
    c->next = NULL;
    if (s->rx_last != NULL)
        s->rx_last->next = c;
    else
        s->rx = c;
    s->rx_last = c;
}

/* Keeps the segments from i on as slices of the read buffer. */
static void park_slices(struct sl_mux_stream *s, uint32_t i)
{
    struct sl_mux *m = s->m;
    for (; i != SEG_NONE; i = m->segs[i].next) {
        struct rx_chunk *c = malloc(sizeof(*c));
        if (c == NULL) {
            park_failed(s);
            return;
        }
        c->len = m->segs[i].len;
        c->off = 0;
        c->cap = c->len;
        c->blk = m->inb;
        m->inb->refs++;
        c->p = m->segs[i].p;
        rx_append(s, c);
        m->stats.parked += c->len;
        m->stats.sliced += c->len;
    }
}

static void park(struct sl_mux_stream *s, uint32_t i)
{
    struct sl_mux *m = s->m;
    size_t total = 0;
    for (uint32_t k = i; k != SEG_NONE; k = m->segs[k].next)
        total += m->segs[k].len;
    if (total >= SLICE_MIN && m->inb != NULL) {
        park_slices(s, i);
        return;
    }
    const char *p = NULL;
    size_t left = 0;
    while (i != SEG_NONE || left > 0) {
        if (left == 0) {
            p = m->segs[i].p;
            left = m->segs[i].len;
            i = m->segs[i].next;
            continue;
        }
        struct rx_chunk *c = s->rx_last;
        if (c == NULL || c->blk != NULL || c->len == c->cap) {
            c = malloc(sizeof(*c) + PARK_CHUNK);
            if (c == NULL) {
                park_failed(s);
                return;
            }
            c->len = c->off = 0;
            c->cap = PARK_CHUNK;
            c->blk = NULL;
            c->p = c->data;
            rx_append(s, c);
        }
        size_t k = c->cap - c->len < left ? c->cap - c->len : left;
        memcpy(c->data + c->len, p, k);
        c->len += k;
        p += k;
        left -= k;
        m->stats.parked += k;
    }
}

static int reader_live(const struct sl_mux_stream *s)
{
    return s->attached && !s->user_closed && s->x != NULL;
}

static void buffer_failed(struct sl_mux_stream *s, uv_buf_t *buf)
{
    /* No buffer from the reader: as libuv, UV_ENOBUFS; the stream is
     * useless from here, so the peer hears it. */
    s->err = UV_ENOBUFS;
    s->err_done = 1;
    rx_drop(s);
    if (s->in_map) {
        queue_rst(s->m, s->id, SL_MUX_RST_INTERNAL, "no buffer");
        retire(s);
    }
    pend(s);
    s->read_cb((uv_stream_t *)&s->x->tcp, UV_ENOBUFS, buf);
}

static void eof_or_error(struct sl_mux_stream *s)
{
    if (!reader_live(s) || !s->reading || s->rx != NULL || s->eof_done ||
        s->err_done)
        return;
    uv_buf_t none = uv_buf_init(NULL, 0);
    if (s->err) {
        s->err_done = 1;
        s->read_cb((uv_stream_t *)&s->x->tcp, s->err, &none);
    } else if (s->fin_recv) {
        s->eof_done = 1;
        s->read_cb((uv_stream_t *)&s->x->tcp, UV_EOF, &none);
    }
}

/* End of a parse pass: each touched stream's DATA goes to its reader in
 * as few reads as its buffers allow, or is kept while it does not read. */
static void deliver_segs(struct sl_mux *m, struct sl_mux_stream *s)
{
    uint32_t i = s->seg_head;
    s->seg_head = s->seg_tail = SEG_NONE;
    if (!reader_live(s) || s->err)
        return;
    while (i != SEG_NONE) {
        if (!s->reading || s->rx != NULL) {
            park(s, i);
            return;
        }
        uv_buf_t buf = uv_buf_init(NULL, 0);
        s->alloc_cb((uv_handle_t *)&s->x->tcp, DELIVER_HINT, &buf);
        if (buf.base == NULL || buf.len == 0) {
            buffer_failed(s, &buf);
            return;
        }
        size_t used = 0;
        while (i != SEG_NONE && used < buf.len) {
            struct seg *g = &m->segs[i];
            size_t k = g->len < buf.len - used ? g->len : buf.len - used;
            memcpy(buf.base + used, g->p, k);
            used += k;
            if (k < g->len) {
                g->p += k;
                g->len -= (uint32_t)k;
            } else {
                i = g->next;
            }
        }
        consumed(s, used);
        s->read_cb((uv_stream_t *)&s->x->tcp, (ssize_t)used, &buf);
        if (m->closing || !reader_live(s) || s->err)
            return;
    }
    eof_or_error(s);
}

/* Parked bytes (and then EOF or the error) to a reader that reads. */
static void deliver_parked(struct sl_mux_stream *s)
{
    while (reader_live(s) && s->reading && s->rx != NULL && !s->err) {
        uv_buf_t buf = uv_buf_init(NULL, 0);
        s->alloc_cb((uv_handle_t *)&s->x->tcp, DELIVER_HINT, &buf);
        if (buf.base == NULL || buf.len == 0) {
            buffer_failed(s, &buf);
            return;
        }
        size_t used = 0;
        while (s->rx != NULL && used < buf.len) {
            struct rx_chunk *c = s->rx;
            size_t k = c->len - c->off;
            if (k > buf.len - used)
                k = buf.len - used;
            memcpy(buf.base + used, c->p + c->off, k);
            used += k;
            c->off += k;
            if (c->off == c->len) {
                s->rx = c->next;
                if (s->rx == NULL)
                    s->rx_last = NULL;
                chunk_free(c);
            }
        }
        consumed(s, used);
        s->read_cb((uv_stream_t *)&s->x->tcp, (ssize_t)used, &buf);
    }
    eof_or_error(s);
}

static int add_seg(struct sl_mux *m, struct sl_mux_stream *s, const void *p,
                   size_t n)
{
    if (m->nsegs == m->segs_cap) {
        uint32_t cap = m->segs_cap ? m->segs_cap * 2 : 64;
        struct seg *g = realloc(m->segs, cap * sizeof(*g));
        if (g == NULL)
            return UV_ENOMEM;
        m->segs = g;
        m->segs_cap = cap;
    }
    uint32_t i = m->nsegs++;
    m->segs[i].p = p;
    m->segs[i].len = (uint32_t)n;
    m->segs[i].next = SEG_NONE;
    if (s->seg_tail != SEG_NONE)
        m->segs[s->seg_tail].next = i;
    else
        s->seg_head = i;
    s->seg_tail = i;
    if (!linked(&s->touch))
        sl_list_push(&m->touched, &s->touch);
    return 0;
}

static void touch(struct sl_mux *m, struct sl_mux_stream *s)
{
    if (!linked(&s->touch))
        sl_list_push(&m->touched, &s->touch);
}

static void on_data(struct sl_mux *m, uint32_t id, const uint8_t *p, size_t n)
{
    if (conn_take(m, n) < 0)
        return;
    struct sl_mux_stream *s = lookup(m, id);
    if (s == NULL) {
        if (!known_closed(m, id))
            fail(m, SL_MUX_GO_UNKNOWN, "DATA for a stream never opened");
        return;
    }
    if (s->fin_recv) {
        fail(m, SL_MUX_GO_PROTOCOL, "DATA after FIN");
        return;
    }
    if (s->user_closed) {
        /* Closed here: as a closed socket answers data. */
        queue_rst(m, s->id, SL_MUX_RST_CLOSED, "closed");
        stream_reset(s, UV_ECONNRESET);
        return;
    }
    s->recv += n;
    if (s->recv > s->granted) {
        mlog(m, SL_LOG_WARN, "stream %u: data past its credit (%llu > %llu)",
             id, (unsigned long long)s->recv,
             (unsigned long long)s->granted);
        fail(m, SL_MUX_GO_FLOW, "data past a stream's credit");
        return;
    }
    if (n == 0 || !reader_live(s) || s->err)
        return;
    if (add_seg(m, s, p, n) != 0)
        fail(m, SL_MUX_GO_INTERNAL, "out of memory");
}

static void refuse(struct sl_mux_stream *s, uint32_t code, const char *why)
{
    if (s->refused)
        return;
    s->refused = 1;
    queue_rst(s->m, s->id, code, why);
    retire(s);
    pend(s);
}

static void on_open(struct sl_mux *m, uint32_t id,
                    const struct sl_mux_body *b)
{
    if (!is_peer_id(m, id)) {
        fail(m, SL_MUX_GO_PROTOCOL, "OPEN of a stream id of ours");
        return;
    }
    if (id <= m->peer_max) {
        fail(m, SL_MUX_GO_REUSED, "OPEN of a stream id already used");
        return;
    }
    m->peer_max = id;
    if (conn_take(m, b->data_len) < 0)
        return;
    uint32_t max = m->opts.streams_max ? m->opts.streams_max
                                       : SL_MUX_STREAMS_MAX;
    if (m->going_away || m->cbs.on_stream == NULL || m->nmap >= max) {
        mlog(m, SL_LOG_INFO, "stream %u refused (%s)", id,
             m->going_away ? "going away" : "too many streams");
        queue_rst(m, id, SL_MUX_RST_REFUSED,
                  m->going_away ? "going away" : "too many streams");
        return;
    }
    struct sl_mux_stream *s = stream_new(m, id);
    if (s == NULL) {
        queue_rst(m, id, SL_MUX_RST_INTERNAL, "out of memory");
        return;
    }
    s->kind = b->kind;
    s->recv = b->data_len;
    char target[SL_MUX_TARGET_MAX + 1];
    memcpy(target, b->target, b->target_len);
    target[b->target_len] = '\0';
    m->cbs.on_stream(m, s, b->kind, target);
    if (m->closing)
        return;
    if (!s->attached) {
        refuse(s, SL_MUX_RST_REFUSED, "not accepted");
        return;
    }
    if (b->data_len > 0 && reader_live(s) && !s->err &&
        add_seg(m, s, b->data, b->data_len) != 0)
        fail(m, SL_MUX_GO_INTERNAL, "out of memory");
}

static void stream_reset(struct sl_mux_stream *s, int err)
{
    if (s->err == 0)
        s->err = err;
    retire(s);
    rx_drop(s);
    sl_list_del(&s->ready);
    pend(s);
}

static void on_frame(struct sl_mux *m, const struct sl_mux_frame *f)
{
    struct sl_mux_body b;
    const char *why = "";
    if (sl_mux_payload(f, &b, &why) != 0) {
        fail(m, SL_MUX_GO_PROTOCOL, why);
        return;
    }
    struct sl_mux_stream *s;
    char reason[SL_MUX_REASON_MAX + 1];
    uint8_t pong[SL_MUX_HEADER + 8];
    switch (f->type) {
    case SL_MUX_OPEN:
        on_open(m, f->stream, &b);
        break;
    case SL_MUX_DATA:
        on_data(m, f->stream, b.data, b.data_len);
        break;
    case SL_MUX_FIN:
        if ((s = lookup(m, f->stream)) == NULL) {
            if (!known_closed(m, f->stream))
                fail(m, SL_MUX_GO_UNKNOWN, "FIN for a stream never opened");
            break;
        }
        if (s->fin_recv) {
            fail(m, SL_MUX_GO_PROTOCOL, "FIN twice on a stream");
            break;
        }
        s->fin_recv = 1;
        if (!s->user_closed)
            touch(m, s);
        if (s->fin_sent)
            retire(s);
        break;
    case SL_MUX_RST:
        /* An RST may cross ours, or follow a stream that ended. */
        if ((s = lookup(m, f->stream)) == NULL)
            break;
        printable(b.reason, b.reason_len, reason, sizeof(reason));
        mlog(m, SL_LOG_DEBUG, "stream %u reset by the peer: %s%s%s",
             f->stream, sl_mux_rst_name(b.code), reason[0] ? ": " : "",
             reason);
        stream_reset(s, UV_ECONNRESET);
        break;
    case SL_MUX_CREDIT:
        if (f->stream == 0) {
            if (b.offset > m->send_limit) {
                m->send_limit = b.offset;
                while (!sl_list_empty(&m->blocked)) {
                    struct sl_link *l = m->blocked.next;
                    sl_list_del(l);
                    sl_list_push(&m->ready, l);
                }
                schedule(m);
            }
        } else if ((s = lookup(m, f->stream)) != NULL &&
                   b.offset > s->send_limit) {
            s->send_limit = b.offset;
            sl_list_del(&s->ready);
            make_ready(m, s);
        }
        break;
    case SL_MUX_PING:
        ctl_frame(m, pong, sl_mux_encode_ping(pong, sizeof(pong),
                                              SL_MUX_PONG, b.opaque));
        break;
    case SL_MUX_PONG:
        if (m->ping_out && b.opaque == m->ping_token) {
            m->ping_out = 0;
            uint64_t sample = (uv_hrtime() - b.opaque) / 1000;
            m->srtt_us = m->srtt_us ? (7 * m->srtt_us + sample) / 8 : sample;
            if (m->srtt_us == 0)
                m->srtt_us = 1;
        }
        break;
    case SL_MUX_GOAWAY:
        printable(b.reason, b.reason_len, reason, sizeof(reason));
        mlog(m, SL_LOG_INFO, "the peer goes away: %s%s%s",
             sl_mux_goaway_name(b.code), reason[0] ? ": " : "", reason);
        if (!m->peer_goaway) {
            m->peer_goaway = 1;
            if (m->cbs.on_goaway != NULL)
                m->cbs.on_goaway(m, b.code);
        }
        break;
    default:
        break; /* DGRAM (carried elsewhere for now) and unknown types */
    }
}

static void parse(struct sl_mux *m)
{
    size_t off = 0;
    m->parsing = 1;
    while (!m->closing) {
        struct sl_mux_frame f;
        int rc = sl_mux_parse((const uint8_t *)m->in + off, m->in_len - off,
                              &f);
        if (rc == SL_EINCOMPLETE)
            break;
        if (rc < 0) {
            if (rc == SL_ETOOBIG)
                fail(m, SL_MUX_GO_TOO_BIG, "a frame over 64 KiB");
            else
                fail(m, SL_MUX_GO_PROTOCOL, "a frame of another version");
            break;
        }
        off += (size_t)rc;
        m->stats.frames_in++;
        on_frame(m, &f);
    }
    while (!sl_list_empty(&m->touched)) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)m->touched.next -
                                     offsetof(struct sl_mux_stream, touch));
        sl_list_del(&s->touch);
        if (m->closing) {
            s->seg_head = s->seg_tail = SEG_NONE;
            continue;
        }
        deliver_segs(m, s);
    }
    m->nsegs = 0;
    m->parsing = 0;
    if (m->closing) {
        m->in_len = 0;
        return;
    }
    if (m->inb != NULL && m->inb->refs > 1) {
        /* Slices keep this buffer: the next read goes to a new one, with
         * the bytes of a frame not yet whole. */
        struct rblock *old = m->inb;
        size_t rest = m->in_len - off;
        m->inb = NULL;
        m->in = NULL;
        m->in_len = 0;
        if (rest > 0) {
            struct rblock *nb = rblock_new(m);
            if (nb == NULL) {
                rblock_unref(old);
                fail(m, SL_MUX_GO_INTERNAL, "out of memory");
                return;
            }
            memcpy(nb->data, old->data + off, rest);
            m->inb = nb;
            m->in = nb->data;
            m->in_len = rest;
        }
        rblock_unref(old);
        return;
    }
    if (off > 0 && off < m->in_len)
        memmove(m->in, m->in + off, m->in_len - off);
    m->in_len -= off;
}

static void on_conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_mux *m = h->data;
    (void)hint;
    if (m->inb == NULL) {
        m->inb = rblock_new(m);
        m->in = m->inb ? m->inb->data : NULL;
        m->in_len = 0;
    }
    *buf = m->in ? uv_buf_init(m->in + m->in_len,
                               (unsigned)(READ_BUF - m->in_len))
                 : uv_buf_init(NULL, 0);
}

/* An idle connection holds no buffer: called at each tick (what was not
 * used since the last one goes) and when the connection ends. */
static void release_idle(struct sl_mux *m)
{
    if (m->spare != NULL && (m->closing ||
                             m->stats.writes == m->writes_at_tick)) {
        free(m->spare);
        m->spare = NULL;
    }
    m->writes_at_tick = m->stats.writes;
    if (m->inb != NULL && m->in_len == 0 && !m->parsing &&
        (m->closing || m->stats.reads == m->reads_at_tick)) {
        in_drop(m);
        free(m->segs);
        m->segs = NULL;
        m->segs_cap = 0;
    }
    /* Kept read buffers that no read took since the last tick go. */
    free_blocks_trim(m, m->closing || m->stats.reads == m->reads_at_tick
                            ? m->nfree_blocks
                            : m->free_low);
    m->reads_at_tick = m->stats.reads;
}

static void on_conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sl_mux *m = st->data;
    (void)buf;
    if (n > 0 && !m->closing) {
        m->in_len += (size_t)n;
        m->stats.reads++;
        m->stats.bytes_in += (uint64_t)n;
        m->last_rx = uv_now(m->loop);
        parse(m);
    } else if (n < 0 && !m->closing) {
        int clean = n == UV_EOF && m->nmap == 0 &&
                    (m->going_away || m->peer_goaway);
        mlog(m, clean ? SL_LOG_DEBUG : SL_LOG_INFO, "connection %s%s",
             n == UV_EOF ? "closed by the peer" : "failed: ",
             n == UV_EOF ? "" : sl_strerror((int)n));
        abort_conn(m, 0, 0, NULL, clean ? 0 : (int)n);
    } else if (m->closing) {
        /* Lingering after our GOAWAY: what the peer still sends is
         * dropped, so that closing does not reset the GOAWAY away before
         * the peer read it; its EOF (or the drain timer) ends it. */
        m->in_len = 0;
        if (n < 0)
            close_transport(m);
    }
    if (m->closing)
        release_idle(m);
}

/* ------------------------------------------------- the stream transport */

static struct sl_mux_stream *stream_of(const struct sl_xprt *x)
{
    return x->ops == &stream_ops ? x->impl : NULL;
}

static int s_read_start(struct sl_xprt *x, uv_alloc_cb alloc_cb,
                        uv_read_cb read_cb)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s == NULL || s->user_closed)
        return UV_EINVAL;
    s->alloc_cb = alloc_cb;
    s->read_cb = read_cb;
    s->reading = 1;
    if (s->rx != NULL || (s->fin_recv && !s->eof_done &&
                          s->seg_head == SEG_NONE) ||
        (s->err && !s->err_done && !s->eof_done))
        pend(s);
    return 0;
}

static int s_read_stop(struct sl_xprt *x)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s != NULL)
        s->reading = 0;
    return 0;
}

static int s_write(uv_write_t *req, struct sl_xprt *x, const uv_buf_t bufs[],
                   unsigned nbufs, uv_write_cb cb)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s == NULL || s->user_closed)
        return UV_EINVAL;
    if (s->err)
        return s->err;
    if (s->fin_want)
        return UV_EPIPE;
    struct mux_wr *w = malloc(sizeof(*w) + nbufs * sizeof(uv_buf_t));
    if (w == NULL)
        return UV_ENOMEM;
    w->next = NULL;
    w->s = s;
    w->req = req;
    w->cb = cb;
    w->nbufs = nbufs;
    w->cur = 0;
    w->off = 0;
    w->len = 0;
    for (unsigned i = 0; i < nbufs; i++) {
        w->bufs[i] = bufs[i];
        w->len += bufs[i].len;
    }
    req->handle = (uv_stream_t *)&x->tcp;
    req->cb = cb;
    *s->wq_tail = w;
    s->wq_tail = &w->next;
    s->queued += w->len;
    s->unframed += w->len;
    make_ready(s->m, s);
    return 0;
}

static int s_try_write(struct sl_xprt *x, const uv_buf_t bufs[],
                       unsigned nbufs)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s == NULL || s->user_closed)
        return UV_EINVAL;
    if (s->err)
        return s->err;
    if (s->fin_want)
        return UV_EPIPE;
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    if (total > TRY_MAX || s->queued + total > SNDBUF)
        return UV_EAGAIN;
    size_t n = total;
    struct mux_wr *w = malloc(sizeof(*w) + sizeof(uv_buf_t) + n);
    if (w == NULL)
        return UV_EAGAIN; /* the caller's write can still wait for it */
    char *copy = (char *)&w->bufs[1];
    size_t o = 0;
    for (unsigned i = 0; i < nbufs && o < n; i++) {
        size_t k = bufs[i].len < n - o ? bufs[i].len : n - o;
        memcpy(copy + o, bufs[i].base, k);
        o += k;
    }
    w->next = NULL;
    w->s = s;
    w->req = NULL;
    w->cb = NULL;
    w->nbufs = 1;
    w->cur = 0;
    w->off = 0;
    w->len = n;
    w->bufs[0] = uv_buf_init(copy, (unsigned)n);
    *s->wq_tail = w;
    s->wq_tail = &w->next;
    s->queued += n;
    s->unframed += n;
    make_ready(s->m, s);
    return (int)n;
}

static int s_shutdown(uv_shutdown_t *req, struct sl_xprt *x,
                      uv_shutdown_cb cb)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s == NULL || s->user_closed)
        return UV_EINVAL;
    if (s->err)
        return s->err;
    if (s->fin_want)
        return UV_EPIPE;
    req->handle = (uv_stream_t *)&x->tcp;
    req->cb = cb;
    s->fin_want = 1;
    s->shut_req = req;
    s->shut_cb = cb;
    sl_list_del(&s->ready);
    make_ready(s->m, s);
    return 0;
}

static void s_close(struct sl_xprt *x, uv_close_cb cb)
{
    struct sl_mux_stream *s = stream_of(x);
    if (s == NULL || s->user_closed)
        return;
    struct sl_mux *m = s->m;
    s->user_closed = 1;
    s->close_cb = cb;
    s->reading = 0;
    if (s->in_map) {
        int unread = s->rx != NULL || s->seg_head != SEG_NONE;
        if (s->open_pending || m->closing) {
            retire(s); /* unknown to the peer, or nothing goes out */
        } else if (unread || s->err) {
            /* As a socket closed with bytes unread: RST. */
            queue_rst(m, s->id, SL_MUX_RST_CLOSED, NULL);
            retire(s);
        } else if (s->wq != NULL && !s->fin_sent) {
            /* Closed with writes queued: they still go (as the bytes a
             * socket's kernel holds do), FIN after them, for at most
             * LINGER_MS; the close callback waits for that. */
            s->lingering = 1;
            s->linger_until = uv_now(m->loop) + LINGER_MS;
            s->fin_want = 1;
            make_ready(m, s);
        } else {
            /* As a socket closed: FIN after what was sent, and what the
             * peer sends after it gets RST. */
            if (!s->fin_sent) {
                uint8_t f[SL_MUX_HEADER];
                ctl_frame(m, f, sl_mux_encode_fin(f, sizeof(f), s->id));
                s->fin_sent = 1;
            }
            if (s->fin_recv)
                retire(s);
        }
    }
    rx_drop(s);
    if (!s->lingering)
        sl_list_del(&s->ready);
    pend(s);
}

static size_t s_queue_size(const struct sl_xprt *x)
{
    const struct sl_mux_stream *s = stream_of(x);
    return s ? s->queued : 0;
}

static int s_is_closing(const struct sl_xprt *x)
{
    const struct sl_mux_stream *s = stream_of(x);
    return s == NULL || s->user_closed;
}

static const struct sl_xprt_ops stream_ops = {
    .read_start = s_read_start,
    .read_stop = s_read_stop,
    .try_write = s_try_write,
    .write = s_write,
    .shutdown = s_shutdown,
    .close = s_close,
    .write_queue_size = s_queue_size,
    .is_closing = s_is_closing,
};

/* Writes that will never go out fail, a shutdown not sent fails, and a
 * closed stream's close callback runs once nothing refers to it. */
static void settle(struct sl_mux *m, struct sl_mux_stream *s)
{
    int dead = s->err || (s->user_closed && !s->lingering) || m->closing;
    if (dead && (s->wq != NULL || (s->shut_req && !s->fin_framed))) {
        if (m->out != NULL) {
            /* The write in flight may hold the head's bytes. */
            sl_list_push(&m->deferred, &s->pend);
            return;
        }
        int err = s->user_closed ? UV_ECANCELED
                  : s->err       ? s->err
                                 : UV_ECONNRESET;
        while (s->wq != NULL) {
            struct mux_wr *w = s->wq;
            s->wq = w->next;
            if (s->wq == NULL)
                s->wq_tail = &s->wq;
            s->queued -= w->len;
            uv_write_cb cb = w->cb;
            uv_write_t *req = w->req;
            free(w);
            if (cb != NULL)
                cb(req, err);
        }
        s->unframed = 0;
        if (s->shut_req != NULL && !s->fin_framed) {
            uv_shutdown_t *req = s->shut_req;
            uv_shutdown_cb cb = s->shut_cb;
            s->shut_req = NULL;
            s->shut_cb = NULL;
            if (cb != NULL)
                cb(req, err);
        }
    }
    if (!s->user_closed)
        deliver_parked(s);
    if (s->user_closed && !s->close_done && s->inflight == 0 &&
        s->wq == NULL) {
        s->close_done = 1;
        struct sl_xprt *x = s->x;
        uv_close_cb cb = s->close_cb;
        s->x = NULL;
        if (x != NULL) {
            x->impl = NULL;
            if (cb != NULL)
                cb((uv_handle_t *)&x->tcp);
        }
    }
    if (s->inflight == 0 && !s->in_map && !linked(&s->touch) &&
        ((s->user_closed && s->close_done) || !s->attached))
        stream_free(s);
}

static void run_pending(struct sl_mux *m)
{
    struct sl_link batch;
    sl_list_init(&batch);
    /* Those pending now; what their callbacks add waits for the next
     * run, so a reader that stops and starts cannot spin here. */
    if (!sl_list_empty(&m->pending)) {
        batch.next = m->pending.next;
        batch.prev = m->pending.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        sl_list_init(&m->pending);
    }
    while (!sl_list_empty(&batch)) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)batch.next -
                                     offsetof(struct sl_mux_stream, pend));
        sl_list_del(&s->pend);
        settle(m, s);
    }
}

/* ------------------------------------------------------ the connection */

static void on_transport_closed(uv_handle_t *h)
{
    struct sl_mux *m = h->data;
    m->x_closed = 1;
    m->x = NULL;
    if (!m->released && m->cbs.on_close != NULL)
        m->cbs.on_close(m, m->reason);
    maybe_free(m);
}

static void close_transport(struct sl_mux *m)
{
    if (m->x_closing || m->x == NULL)
        return;
    m->x_closing = 1;
    m->x->tcp.data = m;
    sl_xprt_close(m->x, on_transport_closed);
}

static void send_ping(struct sl_mux *m)
{
    uint8_t f[SL_MUX_HEADER + 8];
    m->ping_token = uv_hrtime();
    m->ping_out = 1;
    m->last_ping = uv_now(m->loop);
    ctl_frame(m, f, sl_mux_encode_ping(f, sizeof(f), SL_MUX_PING,
                                       m->ping_token));
}

static void on_timer(uv_timer_t *t)
{
    struct sl_mux *m = t->data;
    uint64_t now = uv_now(m->loop);
    uint64_t dead = m->opts.dead_ms ? m->opts.dead_ms : DEAD_MS;
    uint64_t ping = m->opts.ping_ms ? m->opts.ping_ms : PING_MS;
    if (m->closing) {
        close_transport(m); /* the GOAWAY's write took too long */
        return;
    }
    if (now - m->last_rx >= dead) {
        mlog(m, SL_LOG_INFO, "nothing heard for %llu ms; closing",
             (unsigned long long)(now - m->last_rx));
        abort_conn(m, 1, SL_MUX_GO_TIMEOUT, "nothing heard", UV_ETIMEDOUT);
        return;
    }
    if (m->out != NULL && now - m->out_at >= dead) {
        mlog(m, SL_LOG_INFO, "a write made no progress for %llu ms; closing",
             (unsigned long long)(now - m->out_at));
        abort_conn(m, 0, SL_MUX_GO_TIMEOUT, NULL, UV_ETIMEDOUT);
        return;
    }
    if (now - m->last_ping >= ping)
        send_ping(m);
    release_idle(m);
    /* Closed streams whose queued writes the peer did not take in time
     * are reset (their owners' close callbacks can then run). */
    for (struct sl_link *l = m->all.next; l != &m->all; l = l->next) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)l -
                                     offsetof(struct sl_mux_stream, all));
        if (s->lingering && !s->err && now >= s->linger_until) {
            queue_rst(m, s->id, SL_MUX_RST_CLOSED, "linger timed out");
            stream_reset(s, UV_ECONNRESET);
        }
    }
}

/* The last frame of an ending connection. Returns 0 if it is being
 * written (the transport closes after it). */
static int send_goaway_last(struct sl_mux *m, uint32_t code,
                            const char *reason)
{
    struct batch *b = batch_new(m);
    if (b == NULL)
        return UV_ENOMEM;
    int n = sl_mux_encode_goaway(b->arena, ARENA, m->peer_max, code, reason);
    if (n < 0) {
        free(b);
        return n;
    }
    b->goaway_only = 1;
    b->arena_len = (size_t)n;
    push_iov(b, b->arena, (size_t)n);
    m->out = b;
    m->out_at = uv_now(m->loop);
    int w = sl_xprt_try_write(m->x, b->iov, 1);
    if (w == n) {
        m->out = NULL;
        free(b);
        return UV_EALREADY; /* written: the caller closes now */
    }
    if (w > 0) {
        b->iov[0].base += w;
        b->iov[0].len -= (unsigned)w;
    }
    int rc = sl_xprt_write(&b->req, m->x, b->iov, 1, on_batch_written);
    if (rc != 0) {
        m->out = NULL;
        free(b);
    }
    return rc;
}

static void abort_conn(struct sl_mux *m, int send_goaway, uint32_t code,
                       const char *reason, int err)
{
    if (m->closing)
        return;
    m->closing = 1;
    m->reason = err;
    /* Reading goes on (dropping) only while a GOAWAY lingers. */
    if (!send_goaway && m->reading && m->x != NULL) {
        sl_xprt_read_stop(m->x);
        m->reading = 0;
    }
    for (struct sl_link *l = m->all.next; l != &m->all; l = l->next) {
        struct sl_mux_stream *s =
            (struct sl_mux_stream *)((char *)l -
                                     offsetof(struct sl_mux_stream, all));
        if (s->err == 0)
            s->err = UV_ECONNRESET;
        retire(s);
        rx_drop(s);
        sl_list_del(&s->ready);
        if (!linked(&s->pend))
            sl_list_push(&m->pending, &s->pend);
    }
    free(m->ctl.data);
    m->ctl.data = NULL;
    m->ctl.len = m->ctl.cap = 0;
    m->conn_owed = 0; /* every stream's owed CREDIT went with retire */
    int rc = send_goaway && m->out == NULL && m->x != NULL
                 ? send_goaway_last(m, code, reason)
                 : UV_EINVAL;
    if (rc == UV_EALREADY &&
        sl_xprt_shutdown(&m->shut_req, m->x, on_goaway_shut) == 0)
        rc = 0; /* written at once: FIN now, then linger */
    if (rc == 0) {
        /* The write's end (a FIN) and the peer's EOF close the transport;
         * so does the timer if the peer does not read. */
        uv_timer_start(&m->timer, on_timer, DRAIN_MS, 0);
    } else {
        if (m->reading && m->x != NULL)
            sl_xprt_read_stop(m->x);
        m->reading = 0;
        close_transport(m);
    }
    schedule(m);
}

static int busy(const struct sl_mux *m)
{
    return !sl_list_empty(&m->pending) || m->parse_owed ||
           (m->out == NULL && !m->closing && m->x != NULL && has_output(m));
}

static void run(struct sl_mux *m)
{
    if (m->parse_owed) {
        m->parse_owed = 0;
        if (!m->closing)
            parse(m);
    }
    run_pending(m);
    if (!m->closing)
        flush_out(m);
    if (!m->closing && m->going_away && m->nmap == 0 && m->out == NULL &&
        !has_output(m)) {
        /* Gone away and every stream has ended: a clean end. */
        abort_conn(m, 0, 0, NULL, 0);
    }
    if (!busy(m)) {
        uv_check_stop(&m->check);
        uv_prepare_stop(&m->prepare);
    }
    maybe_free(m);
}

/* After the loop's I/O callbacks: what they produced goes out together. */
static void on_check(uv_check_t *h)
{
    run(h->data);
}

/* Before the loop waits: what timers and other handles produced. */
static void on_prepare(uv_prepare_t *h)
{
    run(h->data);
}

static void schedule(struct sl_mux *m)
{
    if (m->handles_closing)
        return;
    if (!uv_is_active((uv_handle_t *)&m->check)) {
        uv_check_start(&m->check, on_check);
        uv_prepare_start(&m->prepare, on_prepare);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sl_mux *m = h->data;
    if (--m->handles > 0)
        return;
    in_drop(m);
    free_blocks_drop(m);
    free(m->segs);
    free(m->ctl.data);
    free(m->spare);
    free(m->tab);
    free(m);
}

/* The memory goes once the owner let go, the transport is closed and no
 * stream is left; the handles close first. */
static void maybe_free(struct sl_mux *m)
{
    if (m->handles_closing || !m->released || !m->x_closed ||
        !sl_list_empty(&m->all) || m->out != NULL)
        return;
    m->handles_closing = 1;
    uv_close((uv_handle_t *)&m->check, on_handle_closed);
    uv_close((uv_handle_t *)&m->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&m->timer, on_handle_closed);
}

int sl_mux_start(struct sl_mux **out, struct sl_xprt *x,
                 const struct sl_mux_opts *opts, const struct sl_mux_cbs *cbs,
                 const void *pre, size_t pre_len)
{
    *out = NULL;
    if (pre_len > READ_BUF)
        return SL_ETOOBIG;
    struct sl_mux *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return UV_ENOMEM;
    m->cbs = *cbs;
    m->opts = *opts;
    m->opts.name = NULL;
    snprintf(m->name, sizeof(m->name), "%s", opts->name ? opts->name : "mux");
    m->loop = x->tcp.loop;
    m->x = x;
    sl_list_init(&m->all);
    sl_list_init(&m->ready);
    sl_list_init(&m->blocked);
    sl_list_init(&m->pending);
    sl_list_init(&m->deferred);
    sl_list_init(&m->touched);
    sl_list_init(&m->owed);
    m->next_id = opts->role == SL_MUX_HUB ? 1 : 2;
    m->send_limit = SL_MUX_CONN_WINDOW_INIT;
    m->window = SL_MUX_CONN_WINDOW_INIT;
    m->granted = SL_MUX_CONN_WINDOW_INIT;
    m->max_window = SL_MUX_WINDOW_INIT;
    m->last_rx = uv_now(m->loop);
    if (pre_len > 0) {
        m->inb = rblock_new(m);
        if (m->inb == NULL) {
            free(m);
            return UV_ENOMEM;
        }
        m->in = m->inb->data;
        memcpy(m->in, pre, pre_len);
        m->in_len = pre_len;
    }
    uv_check_init(m->loop, &m->check);
    uv_prepare_init(m->loop, &m->prepare);
    uv_timer_init(m->loop, &m->timer);
    m->check.data = m->prepare.data = m->timer.data = m;
    m->handles = 3;
    void *caller_data = x->tcp.data;
    x->tcp.data = m;
    int rc = sl_xprt_read_start(x, on_conn_alloc, on_conn_read);
    if (rc != 0) {
        /* The transport is the caller's again; the handles go. */
        x->tcp.data = caller_data;
        m->released = 1;
        m->x_closed = 1;
        m->closing = 1;
        m->x = NULL;
        maybe_free(m);
        return rc;
    }
    m->reading = 1;
    uint64_t ping = opts->ping_ms ? opts->ping_ms : PING_MS;
    uv_timer_start(&m->timer, on_timer, ping / 2 ? ping / 2 : 1,
                   ping / 2 ? ping / 2 : 1);
    send_ping(m); /* the first round trip, for the windows */
    *out = m;
    if (m->in_len > 0) {
        m->parse_owed = 1; /* from the loop: callbacks never run from here */
        schedule(m);
    }
    return 0;
}

static void attach(struct sl_mux_stream *s, struct sl_xprt *x,
                   uv_loop_t *loop)
{
    memset(x, 0, sizeof(*x));
    x->tcp.loop = loop;
    x->ops = &stream_ops;
    x->impl = s;
    s->x = x;
    s->attached = 1;
}

int sl_mux_open(struct sl_mux *m, struct sl_xprt *x, uint8_t kind,
                const char *target)
{
    if (m->closing || m->going_away || m->peer_goaway)
        return UV_EPIPE;
    if (m->next_id > 0x7ffffff0u)
        return SL_ELIMIT;
    size_t tl = target ? strlen(target) : 0;
    if (tl > SL_MUX_TARGET_MAX)
        return UV_EINVAL;
    struct sl_mux_stream *s = stream_new(m, m->next_id);
    if (s == NULL)
        return UV_ENOMEM;
    if (tl > 0 && (s->target = strdup(target)) == NULL) {
        retire(s);
        sl_list_del(&s->all);
        free(s);
        return UV_ENOMEM;
    }
    m->next_id += 2;
    s->kind = kind;
    s->open_pending = 1;
    attach(s, x, m->loop);
    make_ready(m, s);
    return 0;
}

int sl_mux_stream_attach(struct sl_mux_stream *s, struct sl_xprt *x,
                         uv_loop_t *loop)
{
    if (s->attached || s->refused)
        return UV_EINVAL;
    attach(s, x, loop);
    return 0;
}

void sl_mux_stream_refuse(struct sl_mux_stream *s, uint32_t code,
                          const char *reason)
{
    if (!s->attached)
        refuse(s, code, reason);
}

uint32_t sl_mux_stream_id(const struct sl_xprt *x)
{
    const struct sl_mux_stream *s = stream_of(x);
    return s ? s->id : 0;
}

void sl_mux_goaway(struct sl_mux *m, uint32_t code, const char *reason)
{
    if (m->closing || m->going_away)
        return;
    m->going_away = 1;
    uint8_t f[SL_MUX_HEADER + 8 + SL_MUX_REASON_MAX];
    ctl_frame(m, f, sl_mux_encode_goaway(f, sizeof(f), m->peer_max, code,
                                         reason));
    schedule(m);
}

void sl_mux_abort(struct sl_mux *m, uint32_t code, const char *reason,
                  int err)
{
    abort_conn(m, 1, code, reason, err);
}

void sl_mux_release(struct sl_mux *m)
{
    if (m == NULL || m->released)
        return;
    m->released = 1;
    if (!m->closing)
        abort_conn(m, 1, SL_MUX_GO_NORMAL, NULL, 0);
    maybe_free(m);
}

void *sl_mux_data(const struct sl_mux *m)
{
    return m->cbs.data;
}

int sl_mux_accepting(const struct sl_mux *m)
{
    return !m->closing && !m->going_away && !m->peer_goaway &&
           m->next_id <= 0x7ffffff0u;
}

size_t sl_mux_nstreams(const struct sl_mux *m)
{
    return m->nmap;
}

uint64_t sl_mux_rtt_us(const struct sl_mux *m)
{
    return m->srtt_us;
}

void sl_mux_get_stats(const struct sl_mux *m, struct sl_mux_stats *out)
{
    *out = m->stats;
    out->max_window = m->max_window;
    out->streams = (uint32_t)m->nmap;
}
