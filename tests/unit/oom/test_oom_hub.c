/* Allocation failure while the hub sets up connections: a user request
 * for an identity and a bridge's control upgrade (101, hello, welcome),
 * each with the 1st, 2nd, ... allocation failing. The hub runs on a libuv
 * loop in this process on a loopback port; the client is a plain socket.
 * Each failure must cost that connection only: the client gets an answer
 * or a close, the hub frees the connection, nothing leaks, and the next
 * connection (the next N) is served. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
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

#include "core/ctx.h"
#include "core/error.h"
#include "hub/hub.h"
#include "hub/hub_int.h"

#include "oom.h"

static uv_loop_t loop;
static struct sl_ctx ctx;

/* Wall-clock bound on one exchange: a hub that neither answers nor closes
 * fails the test instead of hanging it. */
#define EXCHANGE_MS 10000

struct exchange {
    const char *request;
    int upgrade;      /* send hello after the 101, done at the first frame */
    char resp[8192];
    size_t len;
    int closed;       /* the hub closed the connection */
    int answered;     /* a 101 and a frame, or a whole answer */
};

/* 1 if the server frames in p hold a whole text or close frame. */
static int frames_answer(const char *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t off = 0;
    while (n - off >= 2) {
        unsigned op = b[off] & 0x0f;
        size_t len = b[off + 1] & 0x7f, hl = 2;
        if (len == 126) {
            if (n - off < 4)
                return 0;
            len = (size_t)b[off + 2] << 8 | b[off + 3];
            hl = 4;
        } else if (len == 127) {
            return 0; /* the hub sends nothing that long here */
        }
        if (n - off < hl + len)
            return 0;
        if (op == 0x1 || op == 0x8)
            return 1;
        off += hl + len;
    }
    return 0;
}

static void run_exchange(struct exchange *x)
{
    static const char hello[] = "{\"type\":\"hello\",\"version\":1,"
                                "\"capabilities\":[\"http\"]}";
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)ctx.hub->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    /* Loopback: the kernel completes it from the backlog. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    size_t rl = strlen(x->request);
    assert_int_equal(send(fd, x->request, rl, MSG_NOSIGNAL), (ssize_t)rl);
    x->len = 0;
    x->closed = x->answered = 0;
    int hello_sent = 0;
    uint64_t deadline = uv_hrtime() / 1000000 + EXCHANGE_MS;
    while (!x->closed && !x->answered) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub neither answered nor closed (%ld allocations, "
                     "%s failed): %.*s", sl_test_alloc_count(),
                     sl_test_alloc_failed() ? "one" : "none", (int)x->len,
                     x->resp);
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2) <= 0)
            continue;
        ssize_t n = recv(fd, x->resp + x->len, sizeof(x->resp) - 1 - x->len,
                         0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            x->closed = 1;
            break;
        }
        if (n < 0)
            continue;
        x->len += (size_t)n;
        x->resp[x->len] = '\0';
        const char *end = strstr(x->resp, "\r\n\r\n");
        if (end == NULL)
            continue;
        size_t head = (size_t)(end + 4 - x->resp);
        if (x->upgrade && strncmp(x->resp, "HTTP/1.1 101", 12) == 0) {
            if (!hello_sent) {
                /* A masked text frame; the zero key leaves it readable. */
                unsigned char f[6 + sizeof(hello)];
                f[0] = 0x81;
                f[1] = 0x80 | (unsigned char)(sizeof(hello) - 1);
                memset(f + 2, 0, 4);
                memcpy(f + 6, hello, sizeof(hello) - 1);
                size_t fl = 6 + sizeof(hello) - 1;
                assert_int_equal(send(fd, f, fl, MSG_NOSIGNAL), (ssize_t)fl);
                hello_sent = 1;
            }
            /* A whole text frame (the welcome or an error) or the hub's
             * close frame: waiting for the close to finish would only
             * wait out the hub's close timeout. */
            if (frames_answer(x->resp + head, x->len - head))
                x->answered = 1;
        } else if (!x->upgrade) {
            x->answered = 1; /* Connection: close follows */
        }
    }
    close(fd);
    /* The hub sees the close and frees the connection. */
    while (!sl_list_empty(&ctx.hub->conns)) {
        if (uv_hrtime() / 1000000 > deadline)
            fail_msg("the hub kept a connection after the client left");
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd none;
        (void)poll(&none, 0, 1);
    }
}

static int run_user_request(void *arg)
{
    (void)arg;
    struct exchange x;
    x.request = "GET /index.html HTTP/1.1\r\n"
                "Host: ab1234567890.localhost\r\n"
                "User-Agent: curl/8.5.0\r\nAccept: */*\r\n"
                "Connection: close\r\n\r\n";
    x.upgrade = 0;
    run_exchange(&x);
    if (sl_test_alloc_failed())
        return x.answered || x.closed ? 0 : -1;
    /* Nothing failed: the hub's answer for an unknown identity. */
    assert_true(x.answered);
    assert_non_null(strstr(x.resp, "Proxy not available"));
    return 0;
}

static void user_request(void **state)
{
    (void)state;
    sl_oom_loop("hub: a user request", run_user_request, NULL);
}

static void hub_start(void);
static void hub_stop(void);

/* A fresh hub for each run: a new allocation each time would soon meet
 * the hub's allocation rate limit (429). */
static int run_control(void *arg)
{
    (void)arg;
    sl_test_alloc_pause(1);
    hub_stop();
    hub_start();
    sl_test_alloc_pause(0);
    struct exchange x;
    x.request = "GET /_sluice/v1/control HTTP/1.1\r\n"
                "Host: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n";
    x.upgrade = 1;
    run_exchange(&x);
    if (sl_test_alloc_failed())
        return 0;
    if (!x.answered) {
        const char *e = strstr(x.resp, "\r\n\r\n");
        size_t h = e ? (size_t)(e + 4 - x.resp) : x.len;
        fail_msg("no answer after hello (closed %d): %zu bytes after the "
                 "head: %.*s", x.closed, x.len - h, (int)(x.len - h),
                 x.resp + h);
    }
    if (memmem(x.resp, x.len, "\"welcome\"", 9) == NULL)
        fail_msg("no welcome: %s", x.resp);
    return 0;
}

static void control_upgrade(void **state)
{
    (void)state;
    sl_oom_loop("hub: a control upgrade", run_control, NULL);
}

static void hub_start(void)
{
    struct sl_hub_options o;
    memset(&o, 0, sizeof(o));
    o.http_addr = "127.0.0.1:0";
    assert_int_equal(sl_hub_start(&ctx, &o), 0);
}

static void on_stopped(void *arg)
{
    *(int *)arg = 1;
}

static void hub_stop(void)
{
    int stopped = 0;
    sl_hub_stop(ctx.hub, on_stopped, &stopped);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(stopped);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    ctx.log.level = SL_LOG_ERROR;
    ctx.log.out = fopen("/dev/null", "w");
    assert_non_null(ctx.log.out);
    hub_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hub_stop();
    assert_int_equal(uv_loop_close(&loop), 0);
    fclose(ctx.log.out);
    return 0;
}

int main(void)
{
    sl_test_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(user_request),
        cmocka_unit_test(control_upgrade),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc;
}
