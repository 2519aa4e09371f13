/* net/relay over socketpairs: bulk transfer under back-pressure, half-close
 * both ways, abort from on_read, and no buffer held while idle; the same
 * through the zero-copy path (splice), which holds no pipe while idle and
 * is turned off by SLUICE_NO_SPLICE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "net/xprt.h"
#include "net/relay.h"

#define BULK (4u * 1024 * 1024)

struct fx {
    uv_loop_t loop;
    uv_pipe_t client_app, upstream_app;
    struct sl_xprt relay_a, relay_b;
    struct sl_relay relay;
    uv_timer_t slow;   /* delays the upstream reader: back-pressure */
    uv_timer_t guard;  /* fails the test if the loop hangs */
    int done;
    int reason;
    size_t max_queued;
    int paused_seen;
    size_t up_got;     /* bytes upstream_app received */
    int up_eof;
    char down_got[16];
    size_t down_len;
    int client_eof;
    int abort_after_first;
    uint8_t *payload;
    size_t payload_len;
    uv_write_t wreq, pong_req;
    uv_shutdown_t sreq, pong_sreq;
};

/* The relay's side is a transport: a TCP handle on the socket pair. */
static void xprt_pair(uv_loop_t *loop, uv_pipe_t *app, struct sl_xprt *x)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    assert_int_equal(uv_pipe_init(loop, app, 0), 0);
    assert_int_equal(uv_pipe_open(app, fds[0]), 0);
    sl_xprt_init(x);
    assert_int_equal(uv_tcp_init(loop, &x->tcp), 0);
    assert_int_equal(uv_tcp_open(&x->tcp, fds[1]), 0);
}

static void on_done(struct sl_relay *r, int reason)
{
    struct fx *f = r->data;
    assert_int_equal(f->done, 0);
    f->done = 1;
    f->reason = reason;
    /* nothing held once done */
    assert_null(r->side[0].buf);
    assert_null(r->side[1].buf);
}

static int on_relay_read(struct sl_relay *r, size_t n, enum sl_relay_dir dir)
{
    struct fx *f = r->data;
    (void)n;
    (void)dir;
    if (r->side[SL_RELAY_UP].queued > f->max_queued)
        f->max_queued = r->side[SL_RELAY_UP].queued;
    return f->abort_after_first ? SL_ELIMIT : 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char scratch[65536];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void noop_close(uv_handle_t *h) { (void)h; }

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, noop_close);
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    fail_msg("test timed out");
}

static void on_pong_written(uv_write_t *req, int status) { (void)req; (void)status; }
static void on_shut(uv_shutdown_t *req, int status) { (void)req; (void)status; }

static void on_upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fx *f = s->data;
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            assert_int_equal((uint8_t)buf->base[i],
                             f->payload[f->up_got + (size_t)i]);
        f->up_got += (size_t)n;
        return;
    }
    if (n == UV_EOF) {
        f->up_eof = 1;
        uv_buf_t b = uv_buf_init("pong", 4);
        assert_int_equal(uv_write(&f->pong_req, s, &b, 1, on_pong_written), 0);
        assert_int_equal(uv_shutdown(&f->pong_sreq, s, on_shut), 0);
        return;
    }
    if (n < 0)
        close_if_open((uv_handle_t *)s);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fx *f = s->data;
    if (n > 0) {
        assert_true(f->down_len + (size_t)n <= sizeof(f->down_got));
        memcpy(f->down_got + f->down_len, buf->base, (size_t)n);
        f->down_len += (size_t)n;
        return;
    }
    if (n < 0) {
        f->client_eof = 1;
        close_if_open((uv_handle_t *)&f->client_app);
        close_if_open((uv_handle_t *)&f->upstream_app);
    }
}

static void on_slow(uv_timer_t *t)
{
    struct fx *f = t->data;
    /* nobody has read upstream yet: the relay must have stopped reading */
    f->paused_seen = f->relay.side[SL_RELAY_UP].paused;
    if (f->relay.side[SL_RELAY_UP].queued > f->max_queued)
        f->max_queued = f->relay.side[SL_RELAY_UP].queued;
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
}

static void on_written(uv_write_t *req, int status) { (void)req; (void)status; }

static void setup_fx(struct fx *f, size_t len)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    xprt_pair(&f->loop, &f->client_app, &f->relay_a);
    xprt_pair(&f->loop, &f->upstream_app, &f->relay_b);
    f->client_app.data = f;
    f->upstream_app.data = f;
    f->payload_len = len;
    f->payload = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        f->payload[i] = (uint8_t)(i * 7 + (i >> 12));
    f->relay.data = f;
    f->relay.on_read = on_relay_read;
    f->relay.on_done = on_done;
    uv_timer_init(&f->loop, &f->guard);
    uv_timer_start(&f->guard, on_guard, 20000, 0);
    uv_timer_init(&f->loop, &f->slow);
    f->slow.data = f;
}

static void teardown_fx(struct fx *f)
{
    close_if_open((uv_handle_t *)&f->guard);
    close_if_open((uv_handle_t *)&f->slow);
    close_if_open((uv_handle_t *)&f->client_app);
    close_if_open((uv_handle_t *)&f->upstream_app);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->payload);
}

static void test_bulk_backpressure_half_close(void **state)
{
    (void)state;
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, BULK);
    struct sl_relay_opts opts = {.buf_size = 16384, .high_water = 65536,
                                 .low_water = 16384};
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, &opts), 0);
    uv_buf_t b = uv_buf_init((char *)f->payload, (unsigned)f->payload_len);
    assert_int_equal(uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1,
                              on_written), 0);
    assert_int_equal(uv_shutdown(&f->sreq, (uv_stream_t *)&f->client_app,
                                 on_shut), 0);
    uv_read_start((uv_stream_t *)&f->client_app, alloc_cb, on_client_read);
    uv_timer_start(&f->slow, on_slow, 300, 0);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_true(f->done);
    assert_int_equal(f->reason, 0);
    assert_int_equal(f->up_got, BULK);
    assert_true(f->up_eof);
    assert_int_equal(sl_relay_bytes(&f->relay, SL_RELAY_UP), BULK);
    assert_int_equal(sl_relay_bytes(&f->relay, SL_RELAY_DOWN), 4);
    /* bounded: at most one read over the high-water mark */
    assert_true(f->paused_seen);
    assert_true(f->max_queued <= 65536 + 16384);
    while (!f->client_eof && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    teardown_fx(f);
    assert_int_equal(f->down_len, 4);
    assert_memory_equal(f->down_got, "pong", 4);
    assert_true(f->client_eof);
    free(f);
}

static void test_on_read_aborts(void **state)
{
    (void)state;
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, 1000);
    f->abort_after_first = 1;
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, NULL), 0);
    uv_buf_t b = uv_buf_init((char *)f->payload, (unsigned)f->payload_len);
    uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1, on_written);
    uv_read_start((uv_stream_t *)&f->client_app, alloc_cb, on_client_read);
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, SL_ELIMIT);
    assert_int_equal(f->up_got, 0); /* refused before forwarding */
    teardown_fx(f);
    free(f);
}

static void test_idle_holds_no_buffer(void **state)
{
    (void)state;
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, 5);
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, NULL), 0);
    uv_buf_t b = uv_buf_init((char *)f->payload, 5);
    uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1, on_written);
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
    for (int i = 0; i < 1000 && f->up_got < 5; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->up_got, 5);
    assert_null(f->relay.side[0].buf);
    assert_null(f->relay.side[1].buf);
    assert_true(sl_relay_active(&f->relay));
    sl_relay_abort(&f->relay, UV_ECANCELED);
    sl_relay_abort(&f->relay, UV_EOF); /* second call: no effect */
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, UV_ECANCELED);
    assert_false(sl_relay_active(&f->relay));
    teardown_fx(f);
    free(f);
}

static void test_pool_reuses_buffers(void **state)
{
    (void)state;
    struct sl_relay_pool pool = {.max_free = 2};
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, 300000);
    struct sl_relay_opts opts = {.pool = &pool};
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, &opts), 0);
    uv_buf_t b = uv_buf_init((char *)f->payload, (unsigned)f->payload_len);
    uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1, on_written);
    uv_shutdown(&f->sreq, (uv_stream_t *)&f->client_app, on_shut);
    uv_read_start((uv_stream_t *)&f->client_app, alloc_cb, on_client_read);
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, 0);
    assert_int_equal(f->up_got, 300000);
    assert_true(pool.nfree >= 1 && pool.nfree <= 2);
    /* Used in this period: a trim keeps them; idle through the next
     * period: the next trim gives them back. */
    size_t kept = pool.nfree;
    sl_relay_pool_trim(&pool);
    assert_int_equal(pool.nfree, kept);
    sl_relay_pool_trim(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free_list);
    sl_relay_pool_drain(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free_list);
    teardown_fx(f);
    free(f);
}

/* Descriptors the process has open now. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void test_splice_bulk_half_close(void **state)
{
    (void)state;
    unsetenv("SLUICE_NO_SPLICE");
    struct sl_relay_pool pool = {.max_free = 2};
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, BULK);
    struct sl_relay_opts opts = {.pool = &pool, .splice = 1};
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, &opts), 0);
    assert_true(sl_relay_spliced(&f->relay));
    uv_buf_t b = uv_buf_init((char *)f->payload, (unsigned)f->payload_len);
    assert_int_equal(uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1,
                              on_written), 0);
    assert_int_equal(uv_shutdown(&f->sreq, (uv_stream_t *)&f->client_app,
                                 on_shut), 0);
    uv_read_start((uv_stream_t *)&f->client_app, alloc_cb, on_client_read);
    /* The upstream reads late: the pipe fills and the source waits. */
    uv_timer_start(&f->slow, on_slow, 300, 0);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, 0);
    assert_int_equal(f->up_got, BULK);
    assert_true(f->up_eof);
    assert_int_equal(sl_relay_bytes(&f->relay, SL_RELAY_UP), BULK);
    assert_int_equal(sl_relay_bytes(&f->relay, SL_RELAY_DOWN), 4);
    assert_true(sl_relay_spliced(&f->relay)); /* still said after done */
    while (!f->client_eof && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    teardown_fx(f);
    assert_int_equal(f->down_len, 4);
    assert_memory_equal(f->down_got, "pong", 4);
    /* Emptied pipes went back to the pool; idle a period, they go. */
    assert_true(pool.npipes >= 1 && pool.npipes <= SL_RELAY_PIPES_MAX);
    sl_relay_pool_trim(&pool);
    sl_relay_pool_trim(&pool);
    assert_int_equal(pool.npipes, 0);
    sl_relay_pool_drain(&pool);
    free(f);
}

static void test_splice_idle_holds_no_pipe(void **state)
{
    (void)state;
    unsetenv("SLUICE_NO_SPLICE");
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, 5);
    int before = open_fds();
    struct sl_relay_opts opts = {.splice = 1};
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, &opts), 0);
    assert_true(sl_relay_spliced(&f->relay));
    uv_buf_t b = uv_buf_init((char *)f->payload, 5);
    uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1, on_written);
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
    for (int i = 0; i < 1000 && f->up_got < 5; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->up_got, 5);
    for (int i = 0; i < 10; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    /* Idle: no pipe, no descriptor of its own. */
    assert_int_equal(open_fds(), before);
    assert_null(f->relay.side[0].buf);
    sl_relay_abort(&f->relay, UV_ECANCELED);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, UV_ECANCELED);
    teardown_fx(f);
    free(f);
}

static void test_splice_off_by_env(void **state)
{
    (void)state;
    setenv("SLUICE_NO_SPLICE", "1", 1);
    struct fx *f = malloc(sizeof(*f));
    setup_fx(f, 300000);
    struct sl_relay_opts opts = {.splice = 1};
    assert_int_equal(
        sl_relay_start(&f->relay, &f->relay_a, &f->relay_b, &opts), 0);
    assert_false(sl_relay_spliced(&f->relay));
    uv_buf_t b = uv_buf_init((char *)f->payload, (unsigned)f->payload_len);
    uv_write(&f->wreq, (uv_stream_t *)&f->client_app, &b, 1, on_written);
    uv_shutdown(&f->sreq, (uv_stream_t *)&f->client_app, on_shut);
    uv_read_start((uv_stream_t *)&f->client_app, alloc_cb, on_client_read);
    uv_read_start((uv_stream_t *)&f->upstream_app, alloc_cb, on_upstream_read);
    while (!f->done && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_int_equal(f->reason, 0);
    assert_int_equal(f->up_got, 300000);
    teardown_fx(f);
    free(f);
    unsetenv("SLUICE_NO_SPLICE");
}

int main(void)
{
    /* the fake peers write after the relay is gone: EPIPE, not death */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_backpressure_half_close),
        cmocka_unit_test(test_on_read_aborts),
        cmocka_unit_test(test_idle_holds_no_buffer),
        cmocka_unit_test(test_pool_reuses_buffers),
        cmocka_unit_test(test_splice_bulk_half_close),
        cmocka_unit_test(test_splice_idle_holds_no_pipe),
        cmocka_unit_test(test_splice_off_by_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
