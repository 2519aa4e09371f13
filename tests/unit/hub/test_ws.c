/* WebSocket transport over real loopback TCP: messages both ways, large
 * messages, back-pressure signal, close handshake, dead-peer timeout,
 * message cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "net/xprt.h"
#include "net/ws.h"

struct end {
    struct sl_ws ws;
    struct sl_xprt tcp;
    int closed;
    int reason;
    int msgs;
    size_t last_len;
    enum sl_ws_msg_type last_type;
    uint8_t *big;
    int echo;
    int peer_closed;
};

struct fixture {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_connect_t creq;
    struct end srv, cli;
    struct sl_ws_opts sopts, copts;
    int raw_client; /* client does not start a ws */
    void (*on_ready)(struct fixture *f);
    int ready;
};

static void on_msg(struct sl_ws *ws, enum sl_ws_msg_type t, const uint8_t *d,
                   size_t n)
{
    struct end *e = ws->data;
    e->msgs++;
    e->last_len = n;
    e->last_type = t;
    if (e->big != NULL && n > 0) {
        free(e->big);
        e->big = NULL;
    }
    if (n > 100) {
        e->big = malloc(n);
        memcpy(e->big, d, n);
    }
    if (e->echo)
        sl_ws_send(ws, SL_WS_BINARY, d, n);
}

static void on_close(struct sl_ws *ws, int reason)
{
    struct end *e = ws->data;
    e->closed = 1;
    e->reason = reason;
}

static void on_peer_close(struct sl_ws *ws, uint16_t status)
{
    struct end *e = ws->data;
    e->peer_closed = status;
}

static void start_end(struct fixture *f, struct end *e, struct sl_ws_opts *o)
{
    e->ws.data = e;
    e->ws.on_message = on_msg;
    e->ws.on_close = on_close;
    e->ws.on_peer_close = on_peer_close;
    assert_int_equal(sl_ws_start(&e->ws, &e->tcp, o, NULL, 0), 0);
    f->ready++;
    if (f->ready == (f->raw_client ? 1 : 2) && f->on_ready)
        f->on_ready(f);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct fixture *f = l->data;
    assert_int_equal(status, 0);
    sl_xprt_init(&f->srv.tcp);
    uv_tcp_init(&f->loop, &f->srv.tcp.tcp);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&f->srv.tcp.tcp), 0);
    start_end(f, &f->srv, &f->sopts);
    uv_close((uv_handle_t *)l, NULL);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct fixture *f = req->data;
    assert_int_equal(status, 0);
    if (!f->raw_client)
        start_end(f, &f->cli, &f->copts);
}

static void setup_pair(struct fixture *f)
{
    struct sockaddr_in a;
    int alen = sizeof(a);
    uv_loop_init(&f->loop);
    uv_tcp_init(&f->loop, &f->listener);
    f->listener.data = f;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 8, on_conn), 0);
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&a, &alen);
    sl_xprt_init(&f->cli.tcp);
    uv_tcp_init(&f->loop, &f->cli.tcp.tcp);
    f->creq.data = f;
    f->copts.role = SL_WS_CLIENT;
    f->sopts.role = SL_WS_SERVER;
    assert_int_equal(uv_tcp_connect(&f->creq, &f->cli.tcp.tcp,
                                    (struct sockaddr *)&a, on_connected),
                     0);
}

static void run_until(struct fixture *f, int *flag)
{
    for (int i = 0; i < 100000 && !*flag; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(*flag);
}

static void teardown(struct fixture *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->srv.big);
    free(f->cli.big);
}

static void ready_echo(struct fixture *f)
{
    f->srv.echo = 1;
    assert_int_equal(sl_ws_send_text(&f->cli.ws, "hello", 5), 0);
}

static void test_echo_and_close(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.on_ready = ready_echo;
    setup_pair(&f);
    run_until(&f, &f.cli.msgs);
    assert_int_equal(f.srv.msgs, 1);
    assert_int_equal(f.srv.last_type, SL_WS_TEXT);
    assert_int_equal(f.cli.last_type, SL_WS_BINARY);
    assert_int_equal(f.cli.last_len, 5);

    /* A large message, masked by the client, arrives whole. */
    size_t n = 900 * 1024;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7);
    f.srv.echo = 0;
    int rc = sl_ws_send_binary(&f.cli.ws, big, n);
    assert_true(rc == 0 || rc == 1); /* 1: over high water */
    int want = 2;
    for (int i = 0; i < 100000 && f.srv.msgs < want; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(f.srv.msgs, 2);
    assert_int_equal(f.srv.last_len, n);
    assert_memory_equal(f.srv.big, big, n);
    free(big);

    /* Over the hard bound: refused, nothing queued. */
    f.cli.ws.max_queued = 10;
    assert_int_equal(sl_ws_send_binary(&f.cli.ws, "0123456789ab", 12),
                     SL_ELIMIT);
    f.cli.ws.max_queued = SL_WS_MAX_QUEUED;

    sl_ws_close(&f.cli.ws, 1000);
    assert_int_equal(sl_ws_send_text(&f.cli.ws, "x", 1), UV_EPIPE);
    run_until(&f, &f.cli.closed);
    run_until(&f, &f.srv.closed);
    assert_int_equal(f.cli.reason, 0);
    assert_int_equal(f.srv.reason, 0);
    assert_int_equal(f.srv.peer_closed, 1000);
    teardown(&f);
}

static void test_dead_peer(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.raw_client = 1; /* the client never speaks */
    f.sopts.ping_ms = 20;
    f.sopts.dead_ms = 100;
    /* Before the server side starts: its silence clock starts later. */
    uint64_t t0 = uv_hrtime();
    setup_pair(&f);
    run_until(&f, &f.srv.closed);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(f.srv.reason, UV_ETIMEDOUT);
    /* pings going out do not count as life: dead after 100 ms, not
     * sooner, and not much later */
    assert_true(ms >= 100 - 1);
    assert_true(ms < 100 + 2000);
    uv_close((uv_handle_t *)&f.cli.tcp.tcp, NULL);
    teardown(&f);
}

/* Silence is noticed when dead_ms has passed, not at the first ping tick
 * after it (pings every 1 s, dead after 1.2 s: the tick would say 2 s). */
static void test_dead_peer_between_pings(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.raw_client = 1;
    f.sopts.ping_ms = 1000;
    f.sopts.dead_ms = 1200;
    setup_pair(&f);
    uint64_t t0 = uv_hrtime();
    run_until(&f, &f.srv.closed);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(f.srv.reason, UV_ETIMEDOUT);
    assert_true(ms >= 1100);
    assert_true(ms < 1900);
    uv_close((uv_handle_t *)&f.cli.tcp.tcp, NULL);
    teardown(&f);
}

static void ready_too_big(struct fixture *f)
{
    char buf[2048];
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(sl_ws_send_binary(&f->cli.ws, buf, sizeof(buf)), 0);
}

static void test_message_cap(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.sopts.max_msg = 1024;
    f.on_ready = ready_too_big;
    setup_pair(&f);
    run_until(&f, &f.srv.closed);
    assert_int_equal(f.srv.reason, SL_ETOOBIG);
    assert_int_equal(f.srv.msgs, 0);
    run_until(&f, &f.cli.closed);
    teardown(&f);
}

static void ready_pings(struct fixture *f)
{
    (void)f;
}

static void test_pings_keep_alive(void **state)
{
    (void)state;
    struct fixture f = {0};
    /* Both sides ping every 20 ms; silence kills after 100 ms. Idle for
     * 300 ms, nobody may die. */
    f.sopts.ping_ms = f.copts.ping_ms = 20;
    f.sopts.dead_ms = f.copts.dead_ms = 100;
    f.on_ready = ready_pings;
    setup_pair(&f);
    uint64_t start = 0;
    for (int i = 0; i < 100000; i++) {
        uv_run(&f.loop, UV_RUN_ONCE);
        if (f.ready == 2 && start == 0)
            start = uv_now(&f.loop);
        if (start && uv_now(&f.loop) - start > 300)
            break;
    }
    assert_int_equal(f.srv.closed, 0);
    assert_int_equal(f.cli.closed, 0);
    sl_ws_abort(&f.cli.ws, UV_ECANCELED);
    run_until(&f, &f.srv.closed);
    assert_int_equal(f.cli.reason, UV_ECANCELED);
    assert_true(f.srv.reason == UV_EOF || f.srv.reason == UV_ECONNRESET);
    teardown(&f);
}

static void run_for(struct fixture *f, uint64_t ms)
{
    uint64_t end = uv_now(&f->loop) + ms;
    for (int i = 0; i < 100000 && uv_now(&f->loop) < end; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* An idle connection lets wslay's context go (the 8.6 KiB of buffers a
 * thousand idle bridges would hold) and takes a new one at the next
 * message, either way. */
static void test_idle_sleeps_and_wakes(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.on_ready = ready_echo;
    setup_pair(&f);
    run_until(&f, &f.cli.msgs);
    run_for(&f, 50);
    assert_true(f.srv.ws.asleep);
    assert_true(f.cli.ws.asleep);
    assert_null(f.srv.ws.wslay);
    assert_null(f.cli.ws.rmem);
    assert_null(f.cli.ws.out[1].data);
    /* Woken by a send on one side, by the bytes on the other. */
    assert_int_equal(sl_ws_send_text(&f.cli.ws, "again", 5), 0);
    for (int i = 0; i < 100000 && f.cli.msgs < 2; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(f.srv.msgs, 2);
    assert_int_equal(f.cli.msgs, 2);
    assert_int_equal(f.cli.last_len, 5);
    run_for(&f, 50);
    assert_true(f.srv.ws.asleep);
    /* A close from a sleeping side still runs the handshake. */
    sl_ws_close(&f.cli.ws, 1000);
    run_until(&f, &f.cli.closed);
    run_until(&f, &f.srv.closed);
    assert_int_equal(f.cli.reason, 0);
    assert_int_equal(f.srv.peer_closed, 1000);
    teardown(&f);
}

static void raw_send(struct fixture *f, const uint8_t *b, size_t n)
{
    uv_buf_t buf = uv_buf_init((char *)b, (unsigned)n);
    assert_int_equal(uv_try_write((uv_stream_t *)&f->cli.tcp.tcp, &buf, 1),
                     (int)n);
}

/* A fragmented message whose first part came alone keeps the context: a
 * new one would not know the continuation. */
static void test_no_sleep_inside_message(void **state)
{
    (void)state;
    struct fixture f = {0};
    f.raw_client = 1;
    setup_pair(&f);
    for (int i = 0; i < 100000 && f.ready < 1; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    /* text, no FIN, masked with a zero key: "hel" */
    static const uint8_t first[] = {0x01, 0x83, 0, 0, 0, 0, 'h', 'e', 'l'};
    /* continuation, FIN: "lo" */
    static const uint8_t rest[] = {0x80, 0x82, 0, 0, 0, 0, 'l', 'o'};
    /* the header of the next message alone, then its payload */
    static const uint8_t head[] = {0x81, 0x82, 0, 0};
    static const uint8_t tail[] = {0, 0, 'o', 'k'};
    raw_send(&f, first, sizeof(first));
    run_for(&f, 50);
    assert_false(f.srv.ws.asleep);
    assert_int_equal(f.srv.msgs, 0);
    raw_send(&f, rest, sizeof(rest));
    run_until(&f, &f.srv.msgs);
    assert_int_equal(f.srv.last_len, 5);
    assert_int_equal(f.srv.last_type, SL_WS_TEXT);
    run_for(&f, 50);
    assert_true(f.srv.ws.asleep);
    raw_send(&f, head, sizeof(head));
    run_for(&f, 50);
    assert_false(f.srv.ws.asleep); /* half a header inside wslay */
    raw_send(&f, tail, sizeof(tail));
    for (int i = 0; i < 100000 && f.srv.msgs < 2; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(f.srv.msgs, 2);
    assert_int_equal(f.srv.last_len, 2);
    assert_int_equal(f.srv.closed, 0);
    sl_ws_abort(&f.srv.ws, UV_ECANCELED);
    uv_close((uv_handle_t *)&f.cli.tcp.tcp, NULL);
    run_until(&f, &f.srv.closed);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_close),
        cmocka_unit_test(test_dead_peer),
        cmocka_unit_test(test_dead_peer_between_pings),
        cmocka_unit_test(test_message_cap),
        cmocka_unit_test(test_pings_keep_alive),
        cmocka_unit_test(test_idle_sleeps_and_wakes),
        cmocka_unit_test(test_no_sleep_inside_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
