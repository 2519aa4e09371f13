/* libFuzzer target for the multiplexed connection's reader (net/mux.h) on
 * a real libuv stream: one end of a socketpair runs the engine (as a hub,
 * whose peer opens even streams, or as a bridge), the other end sends the
 * input in pieces, one loop turn per piece, as a peer would.
 *
 * Input: 8 bytes of set-up, then the bytes that arrive.
 *   [0]     bit 0: role (hub or bridge);
 *           bits 1-2: what the acceptor does with a stream: attach and
 *           read, attach and never read, attach and echo, or refuse;
 *           bit 3: the peer reads what we send (else never);
 *           bit 4: close every stream after its first read;
 *   [1]     how many bytes are "already in hand" (pre), given at start;
 *   [2..7]  piece sizes (1..256), used in turn for the rest.
 * Invariants:
 * - on_close runs at most once, and exactly once after an abort;
 * - a stream never reads more than it was credited (256 KiB: the
 *   window never grows here without PONGs) nor after EOF or an error;
 * - every stream and buffer is freed once the streams are closed and the
 *   connection released (the leak checker sees the rest), and the loop
 *   has no handle left. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "net/mux.h"
#include "net/xprt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETUP 8
#define MAX_STREAMS 64

struct fst {
    struct sl_xprt x;
    struct frun *run;
    uint64_t got;
    int ended, closed, close_after_read;
    int echo;
    uv_write_t wr;
    int writing;
    char echo_buf[64];
    uv_shutdown_t shut;
};

struct frun {
    struct sl_xprt x;
    struct sl_mux *m;
    int mode;
    int close_after_read;
    int closes;
    struct fst *st[MAX_STREAMS];
    int nst;
};

static struct frun *cur;

static void on_fst_closed(uv_handle_t *h)
{
    struct fst *s = h->data;
    s->closed = 1;
}

static void fst_close(struct fst *s)
{
    if (!sl_xprt_is_closing(&s->x)) {
        s->x.tcp.data = s;
        sl_xprt_close(&s->x, on_fst_closed);
    }
}

static void fst_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char mem[4096];
    *buf = uv_buf_init(mem, sizeof(mem));
}

static void on_fst_written(uv_write_t *req, int status)
{
    struct fst *s = req->data;
    (void)status;
    s->writing = 0;
}

static void on_fst_shut(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void fst_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct fst *s = h->data;
    if (s->ended)
        abort(); /* nothing after EOF or an error */
    if (n > 0) {
        s->got += (uint64_t)n;
        if (s->got > SL_MUX_WINDOW_INIT)
            abort(); /* past the credit it gave */
        if (s->echo && !s->writing) {
            size_t k = (size_t)n < sizeof(s->echo_buf) ? (size_t)n
                                                      : sizeof(s->echo_buf);
            memcpy(s->echo_buf, buf->base, k);
            uv_buf_t b = uv_buf_init(s->echo_buf, (unsigned)k);
            s->wr.data = s;
            if (sl_xprt_write(&s->wr, &s->x, &b, 1, on_fst_written) == 0)
                s->writing = 1;
        }
        if (s->close_after_read)
            fst_close(s);
        return;
    }
    if (n < 0) {
        s->ended = 1;
        if (n == UV_EOF && s->echo) {
            s->shut.data = s;
            (void)sl_xprt_shutdown(&s->shut, &s->x, on_fst_shut);
        }
    }
}

static void on_stream(struct sl_mux *m, struct sl_mux_stream *ms,
                      uint8_t kind, const char *target)
{
    struct frun *run = cur;
    (void)m;
    (void)kind;
    (void)target;
    if (run->mode == 3 || run->nst == MAX_STREAMS) {
        sl_mux_stream_refuse(ms, SL_MUX_RST_REFUSED, "fuzz");
        return;
    }
    struct fst *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return; /* left alone: the engine refuses it */
    s->run = run;
    s->echo = run->mode == 2;
    s->close_after_read = run->close_after_read;
    if (sl_mux_stream_attach(ms, &s->x, run->x.tcp.loop) != 0) {
        free(s);
        return;
    }
    run->st[run->nst++] = s;
    s->x.tcp.data = s;
    if (run->mode != 1 && sl_xprt_read_start(&s->x, fst_alloc, fst_read) != 0)
        abort();
}

static void on_close(struct sl_mux *m, int reason)
{
    (void)m;
    (void)reason;
    cur->closes++;
}

static void drain(int fd, int reads)
{
    char buf[4096];
    if (!reads)
        return;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uv_loop_t loop;
    static int loop_ready;
    if (!loop_ready) {
        if (uv_loop_init(&loop) != 0)
            abort();
        signal(SIGPIPE, SIG_IGN);
        loop_ready = 1;
    }
    if (size < SETUP)
        return 0;
    const uint8_t *body = data + SETUP;
    size_t len = size - SETUP;
    size_t pre_len = data[1] < len ? data[1] : len;
    int reads = (data[0] >> 3) & 1;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    if (fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0)
        abort();

    struct frun *run = calloc(1, sizeof(*run));
    if (run == NULL)
        abort();
    cur = run;
    run->mode = (data[0] >> 1) & 3;
    run->close_after_read = (data[0] >> 4) & 1;
    sl_xprt_init(&run->x);
    if (uv_tcp_init(&loop, &run->x.tcp) != 0 ||
        uv_tcp_open(&run->x.tcp, sv[0]) != 0)
        abort();
    struct sl_mux_opts o;
    memset(&o, 0, sizeof(o));
    o.role = (data[0] & 1) ? SL_MUX_BRIDGE : SL_MUX_HUB;
    o.ping_ms = 600000; /* the run ends by EOF or abort, never by time */
    o.dead_ms = 600000;
    o.streams_max = 32;
    o.window_max = SL_MUX_WINDOW_INIT; /* no growth: the credit is known */
    struct sl_mux_cbs cbs;
    memset(&cbs, 0, sizeof(cbs));
    cbs.on_stream = on_stream;
    cbs.on_close = on_close;
    if (sl_mux_start(&run->m, &run->x, &o, &cbs, pre_len ? body : NULL,
                     pre_len) != 0)
        abort();
    uv_run(&loop, UV_RUN_NOWAIT);

    size_t off = pre_len;
    unsigned n = 0, stuck = 0;
    while (off < len && run->closes == 0 && stuck < 4) {
        size_t piece = (size_t)data[2 + n % 6] + 1;
        n++;
        if (piece > len - off)
            piece = len - off;
        ssize_t w = send(sv[1], body + off, piece, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
            errno != EPIPE && errno != ECONNRESET)
            abort();
        if (w > 0) {
            off += (size_t)w;
            stuck = 0;
        } else {
            stuck++;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1], reads);
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 4 && run->closes == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1], 1);
    }
    sl_mux_abort(run->m, SL_MUX_GO_NORMAL, NULL, UV_ECANCELED);
    sl_mux_abort(run->m, SL_MUX_GO_NORMAL, NULL, UV_ECANCELED);
    for (int i = 0; i < 8; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1], 1);
    }
    if (run->closes != 1)
        abort();
    for (int i = 0; i < run->nst; i++)
        fst_close(run->st[i]);
    sl_mux_release(run->m);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < run->nst; i++) {
        if (!run->st[i]->closed)
            abort();
        free(run->st[i]);
    }
    free(run);
    cur = NULL;
    close(sv[1]);
    return 0;
}
