/* libFuzzer target for the incremental HTTP head reader
 * (net/http_head.h: sl_http_reader_*), on a real libuv stream (one end of
 * a socketpair) fed in pieces, one loop turn per piece.
 *
 * Input: 8 bytes of set-up, then the bytes that arrive.
 *   [0]     the size cap (max), from a small table;
 *   [1]     how many bytes are "already in hand" (pre), given at start;
 *   [2..7]  piece sizes (1..256), used in turn for the rest.
 * Invariants, with E the end of the head in all the bytes sent (as
 * sl_http_head_end finds it with no cap):
 * - the callback runs exactly once;
 * - E found and E <= max: status 0, head_len == E, and the buffer holds
 *   exactly a prefix of what was sent, at least E bytes, at most
 *   max(max, pre, 4096) bytes (the first block is 4 KiB);
 * - E found beyond max, or no end in max bytes or more: SL_ETOOBIG;
 * - otherwise (fewer than max bytes, no end, then EOF): UV_EOF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "core/error.h"
#include "net/xprt.h"
#include "net/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETUP 8

static const size_t caps[] = {1, 2, 3, 16, 64, 1023, 1024, 1025,
                              4095, 4096, 4097, 5000, 8192, 0};

struct run {
    struct sl_http_reader r;
    int calls;
    int status;
};

static void on_head(struct sl_http_reader *r, int status)
{
    struct run *run = r->data;
    run->calls++;
    run->status = status;
    /* The reader is stopped already; stopping again is allowed. */
    sl_http_reader_stop(r);
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uv_loop_t loop;
    static int loop_ready;
    if (!loop_ready) {
        if (uv_loop_init(&loop) != 0)
            abort();
        loop_ready = 1;
    }
    if (size < SETUP)
        return 0;
    size_t max = caps[data[0] % (sizeof(caps) / sizeof(caps[0]))];
    size_t eff_max = max ? max : SL_HTTP_HEAD_MAX;
    const uint8_t *body = data + SETUP;
    size_t len = size - SETUP;
    size_t pre_len = data[1] < len ? data[1] : len;
    /* data[1] == 255 sends everything as bytes in hand. */
    if (data[1] == 255)
        pre_len = len;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    struct sl_xprt pipe;
    uv_timer_t timer;
    sl_xprt_init(&pipe);
    if (uv_tcp_init(&loop, &pipe.tcp) != 0 ||
        uv_tcp_open(&pipe.tcp, sv[0]) != 0)
        abort();
    if (uv_timer_init(&loop, &timer) != 0)
        abort();

    struct run run;
    memset(&run, 0, sizeof(run));
    run.r.data = &run;
    /* Long enough never to fire: EOF always comes first. */
    int rc = sl_http_reader_start(&run.r, &pipe, &timer, max,
                                  60000, pre_len ? body : NULL, pre_len,
                                  on_head);
    if (rc != 0)
        abort();

    size_t off = pre_len;
    unsigned turn = 0;
    while (off < len && run.calls == 0) {
        size_t piece = (size_t)data[2 + turn % 6] + 1;
        turn++;
        if (piece > len - off)
            piece = len - off;
        ssize_t w = write(sv[1], body + off, piece);
        if (w <= 0)
            abort();
        off += (size_t)w;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    shutdown(sv[1], SHUT_WR);
    /* The reader stops itself on every outcome; then nothing is active. */
    uv_run(&loop, UV_RUN_DEFAULT);

    if (run.calls != 1)
        abort();
    /* What the reader can have seen: the bytes sent so far. */
    size_t sent = off;
    /* Memory stays bounded: the buffer grows to max, but bytes in hand
     * and the first 4 KiB block may already exceed a smaller max (what
     * follows a head is kept, a head is never longer than max). */
    size_t held_max = eff_max > pre_len ? eff_max : pre_len;
    if (held_max < 4096)
        held_max = 4096;
    ssize_t end = sl_http_head_end((const char *)body, sent, 0, SIZE_MAX);
    if (end > 0 && (size_t)end <= eff_max) {
        if (run.status != 0 || run.r.head_len != (size_t)end ||
            run.r.len < (size_t)end || run.r.len > sent ||
            run.r.len > held_max ||
            memcmp(run.r.buf, body, run.r.len) != 0)
            abort();
    } else if (end > 0 || sent >= eff_max) {
        if (run.status != SL_ETOOBIG)
            abort();
    } else {
        if (run.status != UV_EOF)
            abort();
    }

    sl_http_reader_release(&run.r);
    sl_http_reader_release(&run.r); /* idempotent */
    uv_close((uv_handle_t *)&pipe.tcp, on_closed);
    uv_close((uv_handle_t *)&timer, on_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    close(sv[1]);
    return 0;
}
