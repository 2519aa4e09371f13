/* libFuzzer target for the WebSocket frame reader (net/ws.h over wslay),
 * on a real libuv stream (one end of a socketpair) fed in pieces, one
 * loop turn per piece, as a peer would send them.
 *
 * Input: 8 bytes of set-up, then the bytes that arrive.
 *   [0]     bit 0: role (server: the peer masks; client: it must not),
 *           bits 1-2: max_msg from a small table,
 *           bit 3: the peer reads what we send (else never: pongs pile up),
 *           bit 4: pause reading after every message (resumed next turn);
 *   [1]     how many bytes are "already in hand" (pre), given at start;
 *   [2..7]  piece sizes (1..256), used in turn for the rest.
 * Invariants:
 * - on_close runs exactly once, and every buffer is freed by then (the
 *   leak checker sees the rest);
 * - a delivered message is never longer than max_msg; after a pause, only
 *   what wslay had already read (its 4 KiB frame buffer: at most 2048
 *   two-byte frames) may still be delivered;
 * - the output queue never passes read_stop by more than a few control
 *   frames: a peer that pings and does not read is stopped being read. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "net/xprt.h"
#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETUP 8
#define HIGH 512
#define LOW 128
#define STOP 1024
/* What may sit above read_stop: the pong of the ping that crossed it,
 * our own keep-alive ping and a close frame, each with its frame cost. */
#define SLACK (3 * (125 + 14 + SL_WS_FRAME_COST))

static const size_t max_msgs[] = {1, 125, 1024, 65536};

struct run {
    struct sl_ws ws;
    struct sl_xprt tcp;
    size_t max_msg;
    int pause_each;
    int paused;
    int late; /* messages delivered after the pause */
    int messages;
    int closes;
};

static void on_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                       const uint8_t *data, size_t len)
{
    struct run *run = ws->data;
    (void)data;
    if (len > run->max_msg || run->closes != 0)
        abort();
    if (run->paused && ++run->late > 2048)
        abort();
    if (type != SL_WS_TEXT && type != SL_WS_BINARY)
        abort();
    run->messages++;
    if (run->pause_each) {
        sl_ws_pause_read(ws);
        run->paused = 1;
    }
}

static void on_close(struct sl_ws *ws, int reason)
{
    struct run *run = ws->data;
    (void)reason;
    run->closes++;
}

static void drain(int fd, int reads)
{
    char buf[4096];
    if (!reads)
        return;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static void turn(uv_loop_t *loop, struct run *run, int fd, int reads)
{
    if (run->paused && run->closes == 0) {
        run->paused = 0;
        run->late = 0;
        sl_ws_resume_read(&run->ws);
    }
    uv_run(loop, UV_RUN_NOWAIT);
    drain(fd, reads);
    if (run->closes == 0 && sl_ws_queued(&run->ws) > STOP + SLACK)
        abort();
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

    struct run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        abort();
    run->max_msg = max_msgs[(data[0] >> 1) & 3];
    run->pause_each = (data[0] >> 4) & 1;
    sl_xprt_init(&run->tcp);
    if (uv_tcp_init(&loop, &run->tcp.tcp) != 0 ||
        uv_tcp_open(&run->tcp.tcp, sv[0]) != 0)
        abort();

    struct sl_ws_opts o;
    memset(&o, 0, sizeof(o));
    o.role = (data[0] & 1) ? SL_WS_CLIENT : SL_WS_SERVER;
    o.max_msg = run->max_msg;
    o.max_queued = 4 * STOP;
    o.high_water = HIGH;
    o.low_water = LOW;
    o.read_stop = STOP;
    /* Timers far away: the run ends by EOF or abort, never by waiting. */
    o.ping_ms = 600000;
    o.dead_ms = 600000;
    o.close_timeout_ms = 600000;
    run->ws.data = run;
    run->ws.on_message = on_message;
    run->ws.on_close = on_close;
    if (sl_ws_start(&run->ws, &run->tcp, &o, pre_len ? body : NULL,
                    pre_len) != 0)
        abort();
    turn(&loop, run, sv[1], reads);

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
            stuck++; /* it stopped reading: the flood is held back */
        }
        turn(&loop, run, sv[1], reads);
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 4 && run->closes == 0; i++)
        turn(&loop, run, sv[1], 1);
    /* Still open (waiting for our close frame, or paused): end it. */
    sl_ws_abort(&run->ws, UV_ECANCELED);
    sl_ws_abort(&run->ws, UV_ECANCELED); /* idempotent */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (run->closes != 1)
        abort();
    free(run);
    close(sv[1]);
    return 0;
}
