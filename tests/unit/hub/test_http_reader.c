/* The HTTP head reader over a real loopback TCP pair: a head split across
 * writes with bytes after it, the size cap (431 case), the timeout (408
 * case), and a peer that goes away. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "net/xprt.h"
#include "net/http_head.h"

struct fx {
    uv_loop_t loop;
    uv_tcp_t listener, client;
    struct sl_xprt server;
    uv_timer_t timer;
    uv_connect_t creq;
    struct sl_http_reader reader;
    int connected, accepted, done, status;
    size_t max;
    uint64_t timeout_ms;
    const void *pre;
    size_t pre_len;
};

static void on_head(struct sl_http_reader *r, int status)
{
    struct fx *f = r->data;
    f->done = 1;
    f->status = status;
}

static void on_conn(uv_stream_t *l, int status)
{
    struct fx *f = l->data;
    assert_int_equal(status, 0);
    sl_xprt_init(&f->server);
    uv_tcp_init(&f->loop, &f->server.tcp);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&f->server.tcp), 0);
    f->reader.data = f;
    assert_int_equal(sl_http_reader_start(&f->reader,
                                          &f->server,
                                          &f->timer, f->max, f->timeout_ms,
                                          f->pre, f->pre_len, on_head),
                     0);
    f->accepted = 1;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct fx *f = req->data;
    assert_int_equal(status, 0);
    f->connected = 1;
}

static void setup(struct fx *f)
{
    struct sockaddr_in a;
    int alen = sizeof(a);
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->timer);
    uv_tcp_init(&f->loop, &f->listener);
    f->listener.data = f;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 4, on_conn), 0);
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&a, &alen);
    uv_tcp_init(&f->loop, &f->client);
    f->creq.data = f;
    uv_tcp_connect(&f->creq, &f->client, (struct sockaddr *)&a, on_connected);
    for (int i = 0; i < 10000 && !(f->connected && f->accepted); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->connected && f->accepted);
}

static void send_str(struct fx *f, const char *s)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    assert_int_equal(uv_try_write((uv_stream_t *)&f->client, &b, 1),
                     (int)strlen(s));
}

static void run_until_done(struct fx *f)
{
    for (int i = 0; i < 100000 && !f->done; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->done);
}

static void teardown(struct fx *f)
{
    sl_http_reader_release(&f->reader);
    uv_close((uv_handle_t *)&f->server.tcp, NULL);
    if (!uv_is_closing((uv_handle_t *)&f->client))
        uv_close((uv_handle_t *)&f->client, NULL);
    uv_close((uv_handle_t *)&f->listener, NULL);
    uv_close((uv_handle_t *)&f->timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_split_head_and_rest(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.pre = "HTTP/1.1 101 Switching";
    f.pre_len = strlen(f.pre);
    setup(&f);
    send_str(&f, " Protocols\r\nUpgrade: websocket\r");
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_false(f.done);
    send_str(&f, "\n\r\nAFTER");
    run_until_done(&f);
    assert_int_equal(f.status, 0);
    const char *head = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n\r\n";
    assert_int_equal(f.reader.head_len, strlen(head));
    assert_memory_equal(f.reader.buf, head, strlen(head));
    /* What followed may have come in the same read. */
    assert_true(f.reader.len >= f.reader.head_len);
    if (f.reader.len > f.reader.head_len)
        assert_memory_equal(f.reader.buf + f.reader.head_len, "AFTER",
                            f.reader.len - f.reader.head_len);
    teardown(&f);
}

static void test_cap(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.max = 64;
    setup(&f);
    send_str(&f, "GET / HTTP/1.1\r\nX-Long: "
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    run_until_done(&f);
    assert_int_equal(f.status, SL_ETOOBIG);
    teardown(&f);
}

static void test_timeout(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.timeout_ms = 200;
    /* The reader arms its timer when it starts (in setup, at the accept):
     * a head still incomplete 200 ms later is cut off, not sooner, even
     * though bytes came meanwhile, and not much later. */
    uint64_t t0 = uv_hrtime();
    setup(&f);
    send_str(&f, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 1000 && !f.done && uv_hrtime() - t0 < 100000000u;
         i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_false(f.done);
    send_str(&f, "X-Slow: 1\r\n");
    run_until_done(&f);
    uint64_t took_ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(f.status, UV_ETIMEDOUT);
    assert_true(took_ms >= 200 - 1);
    assert_true(took_ms < 200 + 2000);
    teardown(&f);
}

static void test_peer_gone(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    setup(&f);
    send_str(&f, "GET / HTTP/1.1\r\n");
    uv_close((uv_handle_t *)&f.client, NULL);
    run_until_done(&f);
    assert_true(f.status == UV_EOF || f.status == UV_ECONNRESET);
    teardown(&f);
}

static void test_pre_holds_whole_head(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.pre = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    f.pre_len = strlen(f.pre);
    setup(&f);
    /* The callback ran inside sl_http_reader_start. */
    assert_true(f.done);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.reader.head_len, f.pre_len);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_head_and_rest),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_pre_holds_whole_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
