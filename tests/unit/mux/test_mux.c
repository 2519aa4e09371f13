/* The multiplexed connection (net/mux.h) end to end in one loop: a hub
 * side and a bridge side over a socketpair, streams as transports, and a
 * hostile peer writing raw frames. Every run ends with both connections
 * released and the loop empty, so the leak checker sees what is left. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "core/error.h"
#include "net/mux.h"

#define CHUNK (64 * 1024)

/* One stream end: what it sends, what it got. */
struct st {
    struct sl_xprt x;
    struct pair *p;
    char *out;       /* bytes to send */
    size_t out_len, out_off;
    size_t in_len, in_cap;
    char *in;
    int eof, err, closed, shut_done, writes_done, write_err;
    int echo;     /* bridge side: write back what comes */
    int no_read;  /* bridge side: never read (a stalled reader) */
    int shut_after; /* shut down once everything is written */
    size_t pending; /* bytes written and not yet done */
    uv_shutdown_t shut;
};

struct end {
    struct sl_xprt x;
    struct sl_mux *m;
    int closed, reason, goaway;
};

struct pair {
    uv_loop_t loop;
    uv_timer_t tick;
    int sv[2];
    struct end hub, br;
    struct st *accepted[2048];
    int naccepted;
    int br_echo, br_no_read;
    struct sl_mux_budget budget;
};

/* The pair under test (one at a time): the callbacks' context. */
static struct pair *current;

struct wreq {
    uv_write_t req;
    struct st *s;
    size_t len;
    char data[];
};

static void on_st_closed(uv_handle_t *h)
{
    struct st *s = h->data;
    s->closed = 1;
}

static void st_close(struct st *s)
{
    if (!sl_xprt_is_closing(&s->x)) {
        s->x.tcp.data = s;
        sl_xprt_close(&s->x, on_st_closed);
    }
}

static void st_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(CHUNK);
    buf->len = CHUNK;
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct st *s = w->s;
    s->pending -= w->len;
    if (status < 0)
        s->write_err = status;
    else
        s->writes_done++;
    free(w);
}

static int st_write(struct st *s, const char *p, size_t n)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    assert_non_null(w);
    w->s = s;
    w->len = n;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = sl_xprt_write(&w->req, &s->x, &b, 1, on_written);
    if (rc != 0) {
        free(w);
        return rc;
    }
    s->pending += n;
    return 0;
}

static void on_shut(uv_shutdown_t *req, int status)
{
    struct st *s = req->data;
    s->shut_done = status == 0 ? 1 : status;
}

static void st_shutdown(struct st *s)
{
    s->shut.data = s;
    assert_int_equal(sl_xprt_shutdown(&s->shut, &s->x, on_shut), 0);
}

/* Writes what is left, a chunk at a time, while the queue is short. */
static void st_pump(struct st *s)
{
    while (s->out_off < s->out_len && sl_xprt_write_queue_size(&s->x) <
                                          256 * 1024) {
        size_t k = s->out_len - s->out_off;
        if (k > CHUNK)
            k = CHUNK;
        if (st_write(s, s->out + s->out_off, k) != 0)
            return;
        s->out_off += k;
    }
    if (s->out_off == s->out_len && s->shut_after && !s->shut.data &&
        !s->err) {
        st_shutdown(s);
    }
}

static void st_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct st *s = h->data;
    if (n > 0) {
        if (s->in_len + (size_t)n > s->in_cap) {
            size_t cap = s->in_cap ? s->in_cap * 2 : 65536;
            while (cap < s->in_len + (size_t)n)
                cap *= 2;
            s->in = realloc(s->in, cap);
            s->in_cap = cap;
        }
        memcpy(s->in + s->in_len, buf->base, (size_t)n);
        s->in_len += (size_t)n;
        if (s->echo)
            st_write(s, buf->base, (size_t)n);
    } else if (n == UV_EOF) {
        s->eof = 1;
        if (s->echo)
            st_shutdown(s);
    } else if (n < 0) {
        s->err = (int)n;
    }
    free(buf->base);
}

static void st_start_read(struct st *s)
{
    s->x.tcp.data = s;
    assert_int_equal(sl_xprt_read_start(&s->x, st_alloc, st_read), 0);
}

static void on_stream(struct sl_mux *m, struct sl_mux_stream *ms,
                      uint8_t kind, const char *target)
{
    (void)m;
    (void)kind;
    (void)target;
    struct pair *p = current;
    struct st *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->p = p;
    s->echo = p->br_echo;
    s->no_read = p->br_no_read;
    assert_int_equal(sl_mux_stream_attach(ms, &s->x, &p->loop), 0);
    p->accepted[p->naccepted++] = s;
    if (!s->no_read)
        st_start_read(s);
}


static void on_close(struct sl_mux *m, int reason)
{
    (void)m;
    struct end *e = NULL;
    if (current->hub.m == m)
        e = &current->hub;
    else
        e = &current->br;
    e->closed = 1;
    e->reason = reason;
}

static void on_goaway(struct sl_mux *m, uint32_t code)
{
    (void)code;
    if (current->hub.m == m)
        current->hub.goaway = 1;
    else
        current->br.goaway = 1;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void start_end(struct pair *p, struct end *e, int fd,
                      enum sl_mux_role role)
{
    sl_xprt_init(&e->x);
    assert_int_equal(uv_tcp_init(&p->loop, &e->x.tcp), 0);
    assert_int_equal(uv_tcp_open(&e->x.tcp, fd), 0);
    struct sl_mux_opts o = {0};
    o.role = role;
    o.ping_ms = 600000;
    o.dead_ms = 600000;
    o.budget = &p->budget;
    o.name = role == SL_MUX_HUB ? "test hub mux" : "test bridge mux";
    struct sl_mux_cbs cbs = {0};
    cbs.on_stream = role == SL_MUX_BRIDGE ? on_stream : NULL;
    cbs.on_close = on_close;
    cbs.on_goaway = on_goaway;
    assert_int_equal(sl_mux_start(&e->m, &e->x, &o, &cbs, NULL, 0), 0);
}

static struct pair *pair_new(int with_bridge)
{
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    current = p;
    p->budget.max = 256u * 1024 * 1024;
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
                                p->sv), 0);
    start_end(p, &p->hub, p->sv[0], SL_MUX_HUB);
    if (with_bridge)
        start_end(p, &p->br, p->sv[1], SL_MUX_BRIDGE);
    else
        assert_int_equal(fcntl(p->sv[1], F_SETFL, O_NONBLOCK), 0);
    uv_timer_init(&p->loop, &p->tick);
    uv_timer_start(&p->tick, on_tick, 1, 1);
    return p;
}

typedef int (*cond_fn)(struct pair *p, void *arg);

/* Runs the loop until cond holds: bounded in turns and in time. */
static int run_until(struct pair *p, cond_fn cond, void *arg)
{
    uint64_t start = uv_hrtime();
    for (int i = 0; i < 2000000; i++) {
        if (cond(p, arg))
            return 1;
        uv_run(&p->loop, UV_RUN_ONCE);
        if (uv_hrtime() - start > 20ull * 1000 * 1000 * 1000)
            break;
    }
    return cond(p, arg);
}

static int ends_closed(struct pair *p, void *arg)
{
    (void)arg;
    return p->hub.closed && (p->br.m == NULL || p->br.closed);
}

static void pair_free(struct pair *p)
{
    for (int i = 0; i < p->naccepted; i++)
        st_close(p->accepted[i]);
    if (p->hub.m != NULL && !p->hub.closed)
        sl_mux_abort(p->hub.m, SL_MUX_GO_NORMAL, NULL, 0);
    if (p->br.m != NULL && !p->br.closed)
        sl_mux_abort(p->br.m, SL_MUX_GO_NORMAL, NULL, 0);
    assert_true(run_until(p, ends_closed, NULL));
    sl_mux_release(p->hub.m);
    if (p->br.m != NULL)
        sl_mux_release(p->br.m);
    if (p->br.m == NULL)
        close(p->sv[1]);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    for (int i = 0; i < p->naccepted; i++) {
        free(p->accepted[i]->in);
        free(p->accepted[i]);
    }
    assert_true(p->budget.used == 0);
    free(p);
    current = NULL;
}

static void fill(char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)(x >> 16);
    }
}

static struct st *open_st(struct pair *p, size_t n, unsigned seed)
{
    struct st *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->p = p;
    s->out = malloc(n ? n : 1);
    s->out_len = n;
    fill(s->out, n, seed);
    assert_int_equal(sl_mux_open(p->hub.m, &s->x, SL_MUX_KIND_HTTP, ""), 0);
    st_start_read(s);
    return s;
}

static void st_free(struct st *s)
{
    free(s->out);
    free(s->in);
    free(s);
}

struct many {
    struct st **s;
    int n;
};

static int all_echoed(struct pair *p, void *arg)
{
    struct many *mm = arg;
    (void)p;
    for (int i = 0; i < mm->n; i++) {
        st_pump(mm->s[i]);
        if (!mm->s[i]->eof)
            return 0;
    }
    return 1;
}

static void test_echo_many_streams(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    p->br_echo = 1;
    struct many mm;
    mm.n = 300;
    mm.s = calloc((size_t)mm.n, sizeof(*mm.s));
    for (int i = 0; i < mm.n; i++) {
        size_t n = (size_t)(i % 7 == 0 ? 700000 : 1 + (i * 7919) % 40000);
        mm.s[i] = open_st(p, n, (unsigned)i);
        mm.s[i]->shut_after = 1;
    }
    assert_true(run_until(p, all_echoed, &mm));
    for (int i = 0; i < mm.n; i++) {
        struct st *s = mm.s[i];
        assert_int_equal(s->in_len, s->out_len);
        assert_memory_equal(s->in, s->out, s->out_len);
        assert_int_equal(s->err, 0);
        st_close(s);
    }
    struct sl_mux_stats hs;
    sl_mux_get_stats(p->hub.m, &hs);
    /* Batching: fewer writes than frames (a stream sending alone sends
     * 64 KiB frames, so the bulk here is fewer frames than it was). */
    assert_true(hs.writes * 2 < hs.frames_out);
    pair_free(p);
    for (int i = 0; i < mm.n; i++) {
        assert_true(mm.s[i]->closed);
        st_free(mm.s[i]);
    }
    free(mm.s);
}

static int st_got(struct pair *p, void *arg)
{
    struct st *s = arg;
    (void)p;
    st_pump(s);
    return s->eof || s->err;
}

static void test_one_loop_turn_one_write(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    p->br_echo = 1;
    struct st *s[200];
    /* The first PINGs and PONGs out of the way. */
    for (int i = 0; i < 20; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 200; i++) {
        s[i] = open_st(p, 100, (unsigned)i);
        st_pump(s[i]);
        st_shutdown(s[i]);
    }
    /* All 200 OPENs (with their first bytes) and FINs, produced in one
     * turn, leave in one write. */
    struct sl_mux_stats before, after;
    sl_mux_get_stats(p->hub.m, &before);
    uv_run(&p->loop, UV_RUN_NOWAIT);
    sl_mux_get_stats(p->hub.m, &after);
    assert_true(after.writes - before.writes <= 1);
    assert_true(after.frames_out - before.frames_out >= 400);
    for (int i = 0; i < 200; i++) {
        assert_true(run_until(p, st_got, s[i]));
        assert_int_equal(s[i]->in_len, 100);
        assert_memory_equal(s[i]->in, s[i]->out, 100);
        st_close(s[i]);
    }
    /* The bridge side read them in few reads, too. */
    struct sl_mux_stats bs;
    sl_mux_get_stats(p->br.m, &bs);
    assert_true(bs.reads * 10 < bs.frames_in);
    pair_free(p);
    for (int i = 0; i < 200; i++)
        st_free(s[i]);
}

static int b_done_and_a_blocked(struct pair *p, void *arg)
{
    struct st **s = arg;
    (void)p;
    st_pump(s[0]);
    st_pump(s[1]);
    return s[1]->eof;
}

static void test_stalled_reader_stops_only_itself(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    /* The first stream's reader never reads; the second echoes. */
    p->br_no_read = 1;
    struct st *s[2];
    s[0] = open_st(p, 8 * 1024 * 1024, 1);
    st_pump(s[0]);
    uv_run(&p->loop, UV_RUN_NOWAIT);
    uv_run(&p->loop, UV_RUN_NOWAIT);
    p->br_no_read = 0;
    p->br_echo = 1;
    s[1] = open_st(p, 3 * 1024 * 1024, 2);
    s[1]->shut_after = 1;
    assert_true(run_until(p, b_done_and_a_blocked, s));
    assert_int_equal(s[1]->in_len, s[1]->out_len);
    assert_memory_equal(s[1]->in, s[1]->out, s[1]->out_len);
    /* The stalled one sent its window and no more: the rest waits on
     * the hub side, queued in the stream (bounded by the writer's own
     * high-water mark, here st_pump's 256 KiB). */
    assert_true(s[0]->out_off < s[0]->out_len);
    assert_true(sl_xprt_write_queue_size(&s[0]->x) > 0);
    struct st *a = p->accepted[0];
    assert_int_equal(a->in_len, 0);
    /* Once it reads, everything arrives. */
    a->echo = 0;
    st_start_read(a);
    s[0]->shut_after = 1;
    struct st *wait[2] = {s[0], a};
    (void)wait;
    for (int i = 0; i < 100000 && !a->eof; i++) {
        st_pump(s[0]);
        uv_run(&p->loop, UV_RUN_ONCE);
    }
    assert_true(a->eof);
    assert_int_equal(a->in_len, s[0]->out_len);
    assert_memory_equal(a->in, s[0]->out, s[0]->out_len);
    st_close(s[0]);
    st_close(s[1]);
    pair_free(p);
    st_free(s[0]);
    st_free(s[1]);
}

static void test_window_grows_for_bulk(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    struct st *s = open_st(p, 48 * 1024 * 1024, 3);
    s->shut_after = 1;
    struct st *a = NULL;
    for (int i = 0; i < 1000000; i++) {
        st_pump(s);
        uv_run(&p->loop, UV_RUN_ONCE);
        if (p->naccepted > 0 && (a = p->accepted[0])->eof)
            break;
    }
    assert_non_null(a);
    assert_true(a->eof);
    assert_int_equal(a->in_len, s->out_len);
    assert_memory_equal(a->in, s->out, s->out_len);
    struct sl_mux_stats bs;
    sl_mux_get_stats(p->br.m, &bs);
    assert_true(bs.max_window > SL_MUX_WINDOW_INIT);
    assert_true(bs.max_window <= SL_MUX_WINDOW_MAX);
    assert_true(p->budget.used > 0);
    st_close(s);
    pair_free(p);
    st_free(s);
}

/* A reader that stops after every read and starts again a few loop turns
 * later (a relay whose destination is full): what arrives meanwhile is
 * kept, most of it in the connection's read buffers rather than copied,
 * and reaches it whole and in order; a second stream beside it, read all
 * along, is not disturbed. */
static int paused_reads;

static void st_read_pause(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct st *s = h->data;
    st_read(h, n, buf);
    if (n > 0) {
        sl_xprt_read_stop(&s->x);
        paused_reads++;
    }
}

static void test_paused_reader_gets_slices(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    p->br_no_read = 1;
    struct st *s = open_st(p, 24 * 1024 * 1024, 7);
    s->shut_after = 1;
    for (int i = 0; i < 20 && p->naccepted == 0; i++) {
        st_pump(s);
        uv_run(&p->loop, UV_RUN_ONCE);
    }
    assert_int_equal(p->naccepted, 1);
    p->br_no_read = 0;
    struct st *o = open_st(p, 2 * 1024 * 1024, 8);
    o->shut_after = 1;
    struct st *a = p->accepted[0];
    a->x.tcp.data = a;
    for (int i = 0; i < 2000000; i++) {
        if (a->eof && p->naccepted > 1 && p->accepted[1]->eof)
            break;
        st_pump(s);
        st_pump(o);
        uv_run(&p->loop, UV_RUN_ONCE);
        if (i % 4 == 0 && !a->eof)
            assert_int_equal(sl_xprt_read_start(&a->x, st_alloc,
                                                st_read_pause), 0);
    }
    assert_true(a->eof);
    assert_true(paused_reads > 10);
    assert_int_equal(a->in_len, s->out_len);
    assert_memory_equal(a->in, s->out, s->out_len);
    assert_int_equal(a->err, 0);
    assert_true(p->naccepted == 2);
    struct st *b = p->accepted[1];
    assert_true(b->eof);
    assert_int_equal(b->in_len, o->out_len);
    assert_memory_equal(b->in, o->out, o->out_len);
    struct sl_mux_stats bs;
    sl_mux_get_stats(p->br.m, &bs);
    assert_true(bs.parked > 0);
    assert_true(bs.sliced > 0);
    assert_true(bs.sliced <= bs.parked);
    /* Bulk alone went in frames larger than the shared 16 KiB. */
    assert_true(bs.frames_in < (s->out_len + o->out_len) / SL_MUX_DATA_MAX);
    st_close(s);
    st_close(o);
    pair_free(p);
    st_free(s);
    st_free(o);
}

static int br_st_err(struct pair *p, void *arg)
{
    (void)arg;
    return p->naccepted > 0 && (p->accepted[0]->err || p->accepted[0]->eof);
}

static int br_st_reset(struct pair *p, void *arg)
{
    (void)arg;
    return p->naccepted > 0 && p->accepted[0]->err != 0;
}

/* The bridge side got 1000 bytes (and, echoing, wrote them back). */
static int echoed(struct pair *p, void *arg)
{
    (void)arg;
    return p->naccepted > 0 && p->accepted[0]->in_len == 1000 &&
           p->accepted[0]->pending == 0;
}

/* Closed as a socket is: with nothing unread, FIN after what was sent,
 * and what the peer sends afterwards is answered RST; with bytes unread,
 * RST at once. */
static void test_close_is_fin_then_reset(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    struct st *s = open_st(p, 1000, 4);
    st_pump(s);
    assert_true(run_until(p, echoed, NULL));
    st_close(s);
    assert_true(run_until(p, br_st_err, NULL));
    struct st *a = p->accepted[0];
    assert_int_equal(a->eof, 1);
    assert_int_equal(a->err, 0);
    assert_int_equal(a->in_len, 1000);
    /* The peer's answer reaches a closed stream: reset (its reader has
     * had EOF, so its next write says so, as a socket's would). */
    assert_int_equal(st_write(a, "late", 4), 0);
    int rc = 0;
    for (int i = 0; i < 1000 && rc == 0; i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        rc = a->pending == 0 ? st_write(a, "x", 1) : 0;
    }
    assert_int_equal(rc, UV_ECONNRESET);
    pair_free(p);
    assert_true(s->closed);
    st_free(s);

    /* Unread bytes: RST at once. */
    p = pair_new(1);
    p->br_echo = 1;
    s = open_st(p, 1000, 5);
    sl_xprt_read_stop(&s->x); /* the echo stays unread */
    st_pump(s);
    assert_true(run_until(p, echoed, NULL));
    for (int i = 0; i < 20; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    st_close(s);
    assert_true(run_until(p, br_st_reset, NULL));
    assert_int_equal(p->accepted[0]->err, UV_ECONNRESET);
    assert_int_equal(p->accepted[0]->eof, 0);
    pair_free(p);
    st_free(s);
}

static int half_closed_done(struct pair *p, void *arg)
{
    struct st *s = arg;
    (void)p;
    if (p->naccepted > 0) {
        struct st *a = p->accepted[0];
        if (a->eof && a->out == NULL) {
            /* The user's side ended; the answer still flows. */
            a->out = malloc(1 << 20);
            a->out_len = 1 << 20;
            fill(a->out, a->out_len, 9);
            a->shut_after = 1;
        }
        if (a->out != NULL)
            st_pump(a);
    }
    return s->eof;
}

static void test_half_close(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    struct st *s = open_st(p, 5000, 5);
    s->shut_after = 1;
    st_pump(s);
    assert_true(run_until(p, half_closed_done, s));
    struct st *a = p->accepted[0];
    assert_int_equal(a->in_len, 5000);
    assert_int_equal(s->in_len, 1 << 20);
    assert_memory_equal(s->in, a->out, 1 << 20);
    assert_int_equal(s->shut_done, 1);
    st_close(s);
    free(a->out);
    pair_free(p);
    st_free(s);
}

static int hub_st_failed(struct pair *p, void *arg)
{
    struct st *s = arg;
    return s->err != 0 && p->br.closed && p->hub.closed;
}

static void test_connection_loss_ends_streams(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    struct st *s = open_st(p, 4 * 1024 * 1024, 6);
    p->br_no_read = 1;
    st_pump(s);
    for (int i = 0; i < 20; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_int_equal(p->naccepted, 1);
    /* The bridge's end dies: the hub's stream reads a reset and its
     * writes fail; both connections report their end. */
    sl_mux_abort(p->br.m, SL_MUX_GO_INTERNAL, "test", UV_ECANCELED);
    assert_true(run_until(p, hub_st_failed, s));
    assert_int_equal(s->err, UV_ECONNRESET);
    assert_int_equal(p->br.reason, UV_ECANCELED);
    assert_true(p->hub.reason != 0);
    for (int i = 0; i < 10; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_int_equal(s->pending, 0);
    assert_true(s->write_err == UV_ECONNRESET || s->write_err == 0);
    assert_int_equal(sl_mux_open(p->hub.m, &(struct sl_xprt){0},
                                 SL_MUX_KIND_HTTP, ""), UV_EPIPE);
    st_close(s);
    pair_free(p);
    st_free(s);
}

static int hub_closed(struct pair *p, void *arg)
{
    (void)arg;
    return p->hub.closed;
}

static int goaway_done(struct pair *p, void *arg)
{
    struct st *s = arg;
    st_pump(s);
    return s->eof && p->hub.closed && p->br.closed;
}

static void test_goaway_lets_streams_finish(void **state)
{
    (void)state;
    struct pair *p = pair_new(1);
    p->br_echo = 1;
    struct st *s = open_st(p, 2 * 1024 * 1024, 7);
    s->shut_after = 1;
    st_pump(s);
    uv_run(&p->loop, UV_RUN_NOWAIT);
    sl_mux_goaway(p->hub.m, SL_MUX_GO_NORMAL, "restart");
    assert_false(sl_mux_accepting(p->hub.m));
    struct sl_xprt other;
    assert_int_equal(sl_mux_open(p->hub.m, &other, SL_MUX_KIND_HTTP, ""),
                     UV_EPIPE);
    /* The bridge, told, goes away too once its streams end. */
    for (int i = 0; i < 100000 && !p->br.goaway; i++) {
        st_pump(s);
        uv_run(&p->loop, UV_RUN_ONCE);
    }
    assert_true(p->br.goaway);
    sl_mux_goaway(p->br.m, SL_MUX_GO_NORMAL, NULL);
    for (int i = 0; i < 100000 && !goaway_done(p, s); i++) {
        if (s->eof && !sl_xprt_is_closing(&s->x)) {
            st_close(s);
            st_close(p->accepted[0]);
        }
        uv_run(&p->loop, UV_RUN_ONCE);
    }
    assert_true(goaway_done(p, s));
    assert_int_equal(s->in_len, s->out_len);
    assert_memory_equal(s->in, s->out, s->out_len);
    assert_int_equal(p->hub.reason, 0);
    assert_int_equal(p->br.reason, 0);
    st_close(s);
    pair_free(p);
    st_free(s);
}

/* A hostile peer: raw frames on the other end of the socketpair. */
static void raw_send(struct pair *p, const void *data, size_t n)
{
    const char *q = data;
    while (n > 0) {
        ssize_t w = send(p->sv[1], q, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uv_run(&p->loop, UV_RUN_NOWAIT);
            continue;
        }
        if (w <= 0)
            return;
        q += w;
        n -= (size_t)w;
    }
}

/* Reads what the hub sent back until EOF; returns the GOAWAY code seen,
 * or -1. */
static int raw_goaway(struct pair *p)
{
    static uint8_t buf[1 << 20];
    size_t len = 0;
    for (int i = 0; i < 20000; i++) {
        ssize_t r = recv(p->sv[1], buf + len, sizeof(buf) - len, 0);
        if (r == 0)
            break;
        if (r > 0)
            len += (size_t)r;
        else
            uv_run(&p->loop, UV_RUN_ONCE);
    }
    size_t off = 0;
    struct sl_mux_frame f;
    int rc;
    int code = -1;
    while ((rc = sl_mux_parse(buf + off, len - off, &f)) > 0) {
        if (f.type == SL_MUX_GOAWAY) {
            struct sl_mux_body b;
            assert_int_equal(sl_mux_payload(&f, &b, NULL), 0);
            code = (int)b.code;
        }
        off += (size_t)rc;
    }
    return code;
}

static void hostile_attach(struct sl_mux *m, struct sl_mux_stream *ms,
                           uint8_t kind, const char *target)
{
    (void)m;
    (void)kind;
    (void)target;
    struct pair *p = current;
    struct st *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->p = p;
    assert_int_equal(sl_mux_stream_attach(ms, &s->x, &p->loop), 0);
    p->accepted[p->naccepted++] = s; /* never read: a stalled reader */
}

static struct pair *hostile_pair(void)
{
    struct pair *p = pair_new(0);
    /* Restart the hub end with an acceptor, as a bridge's would be. */
    return p;
}

static void expect_goaway(struct pair *p, int code)
{
    assert_true(run_until(p, hub_closed, NULL));
    assert_int_equal(p->hub.reason, SL_EPARSE);
    assert_int_equal(raw_goaway(p), code);
    pair_free(p);
}

static void test_hostile_frame_too_big(void **state)
{
    (void)state;
    struct pair *p = hostile_pair();
    uint8_t h[SL_MUX_HEADER];
    sl_mux_header(h, SL_MUX_DATA, 0, 2, SL_MUX_FRAME_MAX + 1);
    raw_send(p, h, sizeof(h));
    expect_goaway(p, SL_MUX_GO_TOO_BIG);
}

static void test_hostile_unknown_stream(void **state)
{
    (void)state;
    struct pair *p = hostile_pair();
    uint8_t f[SL_MUX_HEADER + 3];
    sl_mux_header(f, SL_MUX_DATA, 0, 99, 3); /* a hub id never opened */
    memcpy(f + SL_MUX_HEADER, "abc", 3);
    raw_send(p, f, sizeof(f));
    expect_goaway(p, SL_MUX_GO_UNKNOWN);
}

static void test_hostile_open_refused_then_reused(void **state)
{
    (void)state;
    struct pair *p = hostile_pair();
    /* The hub end takes no streams: the OPEN is refused with RST, then
     * the same id again is a reuse. */
    uint8_t f[SL_MUX_HEADER + 2];
    sl_mux_header(f, SL_MUX_OPEN, 0, 2, 2);
    f[12] = SL_MUX_KIND_HTTP;
    f[13] = 0;
    raw_send(p, f, sizeof(f));
    raw_send(p, f, sizeof(f));
    expect_goaway(p, SL_MUX_GO_REUSED);
}

static void test_hostile_past_credit(void **state)
{
    (void)state;
    struct pair *p = pair_new(0);
    /* Swap the hub end's acceptor in: its streams are never read. */
    sl_mux_abort(p->hub.m, SL_MUX_GO_NORMAL, NULL, 0);
    assert_true(run_until(p, hub_closed, NULL));
    sl_mux_release(p->hub.m);
    close(p->sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
                                p->sv), 0);
    assert_int_equal(fcntl(p->sv[1], F_SETFL, O_NONBLOCK), 0);
    p->hub.closed = 0;
    sl_xprt_init(&p->hub.x);
    assert_int_equal(uv_tcp_init(&p->loop, &p->hub.x.tcp), 0);
    assert_int_equal(uv_tcp_open(&p->hub.x.tcp, p->sv[0]), 0);
    struct sl_mux_opts o = {0};
    o.role = SL_MUX_HUB;
    o.ping_ms = o.dead_ms = 600000;
    struct sl_mux_cbs cbs = {0};
    cbs.on_stream = hostile_attach;
    cbs.on_close = on_close;
    assert_int_equal(sl_mux_start(&p->hub.m, &p->hub.x, &o, &cbs, NULL, 0),
                     0);
    uint8_t open[SL_MUX_HEADER + 2];
    sl_mux_header(open, SL_MUX_OPEN, 0, 2, 2);
    open[12] = SL_MUX_KIND_HTTP;
    open[13] = 0;
    raw_send(p, open, sizeof(open));
    static uint8_t data[SL_MUX_HEADER + 16384];
    sl_mux_header(data, SL_MUX_DATA, 0, 2, 16384);
    /* 256 KiB is the window: one frame more is past it. */
    for (int i = 0; i < 17; i++)
        raw_send(p, data, sizeof(data));
    assert_true(run_until(p, hub_closed, NULL));
    assert_int_equal(p->hub.reason, SL_EPARSE);
    assert_int_equal(raw_goaway(p), SL_MUX_GO_FLOW);
    assert_int_equal(p->naccepted, 1);
    /* The stream's owner hears the loss. */
    struct st *a = p->accepted[0];
    st_start_read(a);
    for (int i = 0; i < 10; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->err, UV_ECONNRESET);
    pair_free(p);
}

static void test_hostile_garbage_and_ping(void **state)
{
    (void)state;
    struct pair *p = hostile_pair();
    /* A PING is answered; an unknown type is skipped; then a byte of
     * another version ends it. */
    uint8_t f[64];
    int n = sl_mux_encode_ping(f, sizeof(f), SL_MUX_PING, 77);
    sl_mux_header(f + n, (enum sl_mux_type)99, 0, 0, 2);
    f[n + 12] = f[n + 13] = 0;
    f[n + 14] = 7; /* version 7 */
    raw_send(p, f, (size_t)n + 15);
    assert_true(run_until(p, hub_closed, NULL));
    assert_int_equal(raw_goaway(p), SL_MUX_GO_PROTOCOL);
    pair_free(p);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_many_streams),
        cmocka_unit_test(test_one_loop_turn_one_write),
        cmocka_unit_test(test_stalled_reader_stops_only_itself),
        cmocka_unit_test(test_paused_reader_gets_slices),
        cmocka_unit_test(test_window_grows_for_bulk),
        cmocka_unit_test(test_close_is_fin_then_reset),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_connection_loss_ends_streams),
        cmocka_unit_test(test_goaway_lets_streams_finish),
        cmocka_unit_test(test_hostile_frame_too_big),
        cmocka_unit_test(test_hostile_unknown_stream),
        cmocka_unit_test(test_hostile_open_refused_then_reused),
        cmocka_unit_test(test_hostile_past_credit),
        cmocka_unit_test(test_hostile_garbage_and_ping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
