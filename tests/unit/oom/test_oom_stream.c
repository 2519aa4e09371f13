/* Allocation failure in a TCP stream route (src/stream): a real route on
 * 127.0.0.1 (a free port) on a libuv loop in this process, with an ACL and
 * a PROXY header read and relayed, accepts a client, dials its target (a
 * listening socket of the test) and relays both ways, with the 1st, 2nd,
 * ... allocation failing. Each failure must cost that connection only:
 * the client gets its bytes or a close, the route frees the connection
 * (conns_active back to 0), nothing leaks, and the next connection (the
 * next N) is served. libyaml's allocations (the config) are not counted. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "config/config.h"
#include "core/ctx.h"
#include "stream/streams.h"

#include "oom.h"

static uv_loop_t loop;
static struct sl_ctx ctx;
static struct sl_config *cfg;
static int target_fd = -1;
static uint16_t route_port;

#define EXCHANGE_MS 10000

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static uint64_t active(void)
{
    struct sl_stream_stats st;
    assert_int_equal(sl_streams_route_stats(ctx.streams, 0, &st), 0);
    return st.conns_active;
}

static int connect_route(void)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(route_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    return fd;
}

static int run_stream(void *arg)
{
    (void)arg;
    static const char hdr[] = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 22\r\n";
    static const char ping[] = "SSH-2.0-OpenSSH_9.6\r\n";
    static const char pong[] = "SSH-2.0-OpenSSH_9.2p1 Debian\r\n";
    int c = connect_route();
    char out[256];
    int n = snprintf(out, sizeof(out), "%s%s", hdr, ping);
    assert_int_equal(send(c, out, (size_t)n, MSG_NOSIGNAL), n);
    int t = -1;
    char tgot[512], cgot[512];
    size_t tlen = 0, clen = 0;
    int cclosed = 0, tclosed = 0, answered = 0;
    uint64_t deadline = now_ms() + EXCHANGE_MS;
    /* Until the client has the target's answer, or a close. */
    while (!cclosed && clen < sizeof(pong) - 1) {
        if (now_ms() > deadline)
            fail_msg("the route neither relayed nor closed (%ld "
                     "allocations, %s failed)", sl_test_alloc_count(),
                     sl_test_alloc_failed() ? "one" : "none");
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p[3] = {{c, POLLIN, 0}, {target_fd, POLLIN, 0},
                              {t, POLLIN, 0}};
        if (poll(p, t >= 0 && !tclosed ? 3 : 2, 2) <= 0)
            continue;
        if (t < 0 && (p[1].revents & POLLIN)) {
            t = accept4(target_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            assert_true(t >= 0);
        }
        if (t >= 0 && !tclosed && (p[2].revents & (POLLIN | POLLHUP))) {
            ssize_t r = recv(t, tgot + tlen, sizeof(tgot) - 1 - tlen, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                tclosed = 1;
            else if (r > 0)
                tlen += (size_t)r;
            tgot[tlen] = '\0';
            if (!answered && memmem(tgot, tlen, ping, sizeof(ping) - 1)) {
                answered = 1;
                if (send(t, pong, sizeof(pong) - 1, MSG_NOSIGNAL) < 0)
                    assert_true(errno == EPIPE || errno == ECONNRESET);
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(c, cgot + clen, sizeof(cgot) - 1 - clen, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                cclosed = 1;
            else if (r > 0)
                clen += (size_t)r;
            cgot[clen] = '\0';
        }
    }
    close(c);
    if (t >= 0)
        close(t);
    /* The route sees both closes and frees the connection. */
    while (active() != 0) {
        if (now_ms() > deadline)
            fail_msg("the route kept a connection after both ends left");
        uv_run(&loop, UV_RUN_NOWAIT);
        (void)poll(NULL, 0, 1);
    }
    /* A target dialled after the client left is accepted and dropped. */
    for (;;) {
        int late = accept4(target_fd, NULL, NULL, SOCK_CLOEXEC);
        if (late < 0)
            break;
        close(late);
    }
    if (sl_test_alloc_failed())
        return 0;
    /* Nothing failed: the relayed (v2) header names the client of the
     * client's header, then come the client's bytes; the answer came
     * back. */
    static const char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    static const char src[4] = {(char)192, 0, 2, 7};
    if (tlen < 16 + 12 || memcmp(tgot, sig, 12) != 0 ||
        memcmp(tgot + 16, src, 4) != 0 ||
        memmem(tgot, tlen, ping, sizeof(ping) - 1) == NULL ||
        strcmp(cgot, pong) != 0)
        fail_msg("target got %zu bytes, client got '%s'", tlen, cgot);
    return 0;
}

static void stream_route(void **state)
{
    (void)state;
    sl_oom_loop("stream: a TCP route accepts, dials, relays", run_stream,
                NULL);
}

static void on_stopped(struct sl_ctx *c)
{
    (void)c;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    ctx.log.level = getenv("SL_OOM_LOG") ? SL_LOG_DEBUG : SL_LOG_ERROR;
    ctx.log.out = getenv("SL_OOM_LOG") ? fdopen(dup(2), "w")
                                       : fopen("/dev/null", "w");
    assert_non_null(ctx.log.out);

    /* The target: a listening socket of the test's own. */
    target_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                       0);
    assert_true(target_fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(target_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(target_fd, 64), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(target_fd, (struct sockaddr *)&sa, &sl), 0);

    char yaml[512], err[256];
    int n = snprintf(yaml, sizeof(yaml),
                     "routes:\n  ssh:\n    scheme: tcp4\n"
                     "    bind: 127.0.0.1\n    port: \"0:%u\"\n"
                     "    host: 127.0.0.1\n"
                     "    acl: {allow: [\"cidr:127.0.0.0/8\", "
                     "\"cidr:192.0.2.0/24\"]}\n"
                     "    proxy_protocol: mixed\n"
                     "    relay_proxy_protocol_header: true\n",
                     ntohs(sa.sin_port));
    assert_int_equal(sl_config_load_string(yaml, (size_t)n, &cfg, err,
                                           sizeof(err)), 0);
    assert_int_equal(sl_streams_start(&ctx, cfg), 0);
    struct sl_stream_route_info info;
    assert_int_equal(sl_streams_route_info(ctx.streams, 0, &info), 0);
    route_port = ntohs(((struct sockaddr_in *)&info.listen)->sin_port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_streams_stop(&ctx, on_stopped);
    uv_run(&loop, UV_RUN_DEFAULT);
    sl_config_free(cfg);
    close(target_fd);
    assert_int_equal(uv_loop_close(&loop), 0);
    fclose(ctx.log.out);
    return 0;
}

int main(void)
{
    sl_test_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stream_route),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
