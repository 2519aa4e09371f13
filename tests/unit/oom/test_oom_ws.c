/* Allocation failure in the WebSocket frame reader and writer (net/ws.c)
 * on a real libuv stream, one end of a socketpair, as fuzz/fuzz_ws_frames.c
 * drives it: a client's masked text message, a binary message in two
 * fragments and a ping arrive; this side answers each message with one of
 * its own; then the client sends its close frame. With the 1st, 2nd, ...
 * allocation failing, the connection must either do all of that or end
 * with an error (on_close once, reason not 0): a message or an answer
 * dropped while the connection goes on as if nothing happened is a
 * failure, and so is a leak. wslay is a shared library, so its own
 * allocations are not counted; ws.c's buffers and queues are. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "net/xprt.h"
#include "net/ws.h"

#include "oom.h"

static uv_loop_t loop;

struct run {
    struct sl_ws ws;
    struct sl_xprt tcp;
    int messages; /* as expected, in order */
    int wrong;
    int closes;
    int reason;
};

static const char text_msg[] = "{\"type\":\"hello\",\"version\":1}";
static const char frag1[] = "first half ";
static const char frag2[] = "second half";

static void on_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                       const uint8_t *data, size_t len)
{
    struct run *run = ws->data;
    if (run->messages == 0) {
        if (type != SL_WS_TEXT || len != sizeof(text_msg) - 1 ||
            memcmp(data, text_msg, len) != 0)
            run->wrong++;
    } else if (run->messages == 1) {
        if (type != SL_WS_BINARY ||
            len != sizeof(frag1) - 1 + sizeof(frag2) - 1 ||
            memcmp(data, frag1, sizeof(frag1) - 1) != 0 ||
            memcmp(data + sizeof(frag1) - 1, frag2, sizeof(frag2) - 1) != 0)
            run->wrong++;
    } else {
        run->wrong++;
    }
    run->messages++;
    /* An answer per message: the output side under failure too. A refusal
     * must close the connection (the caller is told, rc < 0). */
    char answer[32];
    int n = snprintf(answer, sizeof(answer), "answer %d", run->messages);
    if (sl_ws_send_text(ws, answer, (size_t)n) < 0)
        sl_ws_abort(ws, UV_ENOMEM);
}

static void on_close(struct sl_ws *ws, int reason)
{
    struct run *run = ws->data;
    run->closes++;
    run->reason = reason;
}

/* A masked client frame with a fixed key. */
static size_t frame(uint8_t *out, unsigned first, const char *p, size_t n)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    out[0] = (uint8_t)first;
    out[1] = (uint8_t)(0x80 | n);
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < n; i++)
        out[6 + i] = (uint8_t)p[i] ^ key[i % 4];
    return 6 + n;
}

/* What the client read: the server's frames, unmasked. Counts the text
 * answers, the pong and the close frame. */
static void parse_server(const uint8_t *b, size_t n, int *answers, int *pong,
                         int *close_frame)
{
    size_t off = 0;
    while (n - off >= 2) {
        unsigned op = b[off] & 0x0f;
        size_t len = b[off + 1] & 0x7f;
        if (len >= 126 || n - off < 2 + len)
            return;
        if (op == 0x1)
            (*answers)++;
        else if (op == 0xa)
            (*pong)++;
        else if (op == 0x8)
            (*close_frame)++;
        off += 2 + len;
    }
}

static int run_ws(void *arg)
{
    (void)arg;
    int sv[2];
    sl_test_alloc_pause(1);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                     0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    struct run *run = calloc(1, sizeof(*run));
    assert_non_null(run);
    sl_xprt_init(&run->tcp);
    assert_int_equal(uv_tcp_init(&loop, &run->tcp.tcp), 0);
    assert_int_equal(uv_tcp_open(&run->tcp.tcp, sv[0]), 0);
    sl_test_alloc_pause(0);

    uint8_t in[256];
    size_t len = 0;
    /* The first frame arrives with the upgrade's head: the pre bytes. */
    size_t pre = frame(in, 0x81, text_msg, sizeof(text_msg) - 1);
    len = pre;
    len += frame(in + len, 0x02, frag1, sizeof(frag1) - 1);
    len += frame(in + len, 0x80, frag2, sizeof(frag2) - 1);
    len += frame(in + len, 0x89, "pi", 2);
    uint8_t bye[8];
    size_t bye_len = frame(bye, 0x88, "\x03\xe8", 2);

    struct sl_ws_opts o;
    memset(&o, 0, sizeof(o));
    o.role = SL_WS_SERVER;
    o.max_msg = SL_WS_MAX_MSG_CONTROL;
    /* Timers far away: the run ends by the close handshake or an error. */
    o.ping_ms = 600000;
    o.dead_ms = 600000;
    o.close_timeout_ms = 600000;
    run->ws.data = run;
    run->ws.on_message = on_message;
    run->ws.on_close = on_close;
    int rc = sl_ws_start(&run->ws, &run->tcp, &o, in, pre);
    /* It may have closed already (a failure at start). */
    if (rc == 0 && run->closes == 0 &&
        send(sv[1], in + pre, len - pre, MSG_NOSIGNAL) != (ssize_t)(len - pre))
        assert_true(errno == EPIPE || errno == ECONNRESET);
    /* The client reads all the while, so the server never waits on it;
     * its close goes once the answers are in (a close frame ends the
     * connection both ways: what was queued and unsent is dropped). */
    uint8_t got[4096];
    size_t glen = 0;
    int answers = 0, pong = 0, close_frame = 0, bye_sent = 0;
    for (int turn = 0; turn < 5000 && run->closes == 0; turn++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t r = read(sv[1], got + glen, sizeof(got) - glen);
        if (r > 0)
            glen += (size_t)r;
        else if (r < 0 && errno != EAGAIN)
            break;
        else
            usleep(200);
        answers = pong = close_frame = 0;
        parse_server(got, glen, &answers, &pong, &close_frame);
        if (!bye_sent && answers == 2 && pong == 1) {
            if (send(sv[1], bye, bye_len, MSG_NOSIGNAL) != (ssize_t)bye_len)
                assert_true(errno == EPIPE || errno == ECONNRESET);
            bye_sent = 1;
        }
    }
    /* A start that failed, or a run that did not finish: end it. */
    sl_ws_abort(&run->ws, UV_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    close(sv[1]);
    int closes = run->closes, reason = run->reason;
    int messages = run->messages, wrong = run->wrong;
    free(run);

    if (closes != 1)
        fail_msg("on_close ran %d times", closes);
    if (wrong != 0)
        fail_msg("%d messages arrived wrong (%ld allocations)", wrong,
                 sl_test_alloc_count());
    answers = pong = close_frame = 0;
    parse_server(got, glen, &answers, &pong, &close_frame);
    if (reason != 0) {
        if (!sl_test_alloc_failed())
            fail_msg("closed with %d and nothing failed", reason);
        return -1;
    }
    /* A clean end: nothing may have gone missing on the way. */
    if (messages != 2 || answers != 2 || pong != 1 || close_frame != 1)
        fail_msg("a clean close after %d messages, %d answers, %d pongs, %d "
                 "close frames (allocation %ld %s)", messages, answers, pong,
                 close_frame, sl_test_alloc_count(),
                 sl_test_alloc_failed() ? "failed" : "none failed");
    return 0;
}

static void ws_exchange(void **state)
{
    (void)state;
    sl_oom_loop("ws: messages, fragments, a ping and a close", run_ws, NULL);
}

int main(void)
{
    sl_test_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(uv_loop_init(&loop), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ws_exchange),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(&loop);
    return rc;
}
