/* Allocation failure in the multiplexed connection (net/mux.c), both
 * ends in one loop over a socketpair: the hub's end opens a stream and
 * sends a small write (copied by try_write) and a 40 KiB one (framed from
 * our memory), then FIN; the bridge's end accepts the stream, reads it to
 * its end and echoes it back, then FIN. With the 1st, 2nd, ...
 * allocation failing, the exchange must either complete byte for byte or
 * end with an error someone was told of (a write or the stream's read, or
 * a connection's on_close with a reason): an exchange that neither
 * finishes nor reports is a failure, and so is a leak or a handle left
 * open in the loop. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "net/mux.h"
#include "net/xprt.h"

#include "oom.h"

#define BIG (40 * 1024)

static uv_loop_t loop;

struct end {
    struct sl_xprt x;
    struct sl_mux *m;
    int closes, reason;
};

struct st {
    struct sl_xprt x;
    char in[2 * BIG];
    size_t in_len;
    int eof, err, closed, write_err;
    int echo;
    uv_write_t wr;
    uv_shutdown_t shut;
};

struct run {
    struct end hub, br;
    struct st *hs, *bs; /* the hub's stream, the bridge's */
    char small[5];
    char big[BIG];
    uv_write_t wbig;
};

static struct run *cur;

static void on_st_closed(uv_handle_t *h)
{
    struct st *s = h->data;
    s->closed = 1;
}

static void st_close(struct st *s)
{
    if (s != NULL && !sl_xprt_is_closing(&s->x)) {
        s->x.tcp.data = s;
        sl_xprt_close(&s->x, on_st_closed);
    }
}

static void st_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct st *s = h->data;
    (void)hint;
    *buf = uv_buf_init(s->in + s->in_len,
                       (unsigned)(sizeof(s->in) - s->in_len));
}

static void on_written(uv_write_t *req, int status)
{
    struct st *s = req->data;
    if (status < 0)
        s->write_err = status;
}

static void on_shut(uv_shutdown_t *req, int status)
{
    struct st *s = req->data;
    if (status < 0)
        s->write_err = status;
}

static void st_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
    struct st *s = h->data;
    (void)buf;
    if (n > 0) {
        s->in_len += (size_t)n;
        return;
    }
    if (n == UV_EOF) {
        s->eof = 1;
        if (s->echo) {
            uv_buf_t b = uv_buf_init(s->in, (unsigned)s->in_len);
            s->wr.data = s;
            s->shut.data = s;
            int rc = sl_xprt_write(&s->wr, &s->x, &b, 1, on_written);
            if (rc == 0)
                rc = sl_xprt_shutdown(&s->shut, &s->x, on_shut);
            if (rc != 0)
                s->write_err = rc;
        }
    } else if (n < 0) {
        s->err = (int)n;
    }
}

static void on_stream(struct sl_mux *m, struct sl_mux_stream *ms,
                      uint8_t kind, const char *target)
{
    (void)m;
    (void)kind;
    (void)target;
    struct st *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return; /* refused by the engine: the hub's end hears RST */
    if (sl_mux_stream_attach(ms, &s->x, &loop) != 0) {
        free(s);
        return;
    }
    s->echo = 1;
    cur->bs = s;
    s->x.tcp.data = s;
    if (sl_xprt_read_start(&s->x, st_alloc, st_read) != 0)
        s->err = UV_EINVAL;
}

static void on_close(struct sl_mux *m, int reason)
{
    struct end *e = cur->hub.m == m ? &cur->hub : &cur->br;
    e->closes++;
    e->reason = reason;
}

static int start_end(struct end *e, int fd, enum sl_mux_role role)
{
    sl_xprt_init(&e->x);
    if (uv_tcp_init(&loop, &e->x.tcp) != 0 || uv_tcp_open(&e->x.tcp, fd))
        abort();
    struct sl_mux_opts o = {0};
    o.role = role;
    o.ping_ms = o.dead_ms = 600000;
    struct sl_mux_cbs cbs = {0};
    cbs.on_stream = role == SL_MUX_BRIDGE ? on_stream : NULL;
    cbs.on_close = on_close;
    return sl_mux_start(&e->m, &e->x, &o, &cbs, NULL, 0);
}

static void on_tcp_closed(uv_handle_t *h)
{
    (void)h;
}

static int exchange(void *arg)
{
    (void)arg;
    sl_test_alloc_pause(1);
    struct run *r = calloc(1, sizeof(*r));
    sl_test_alloc_pause(0);
    if (r == NULL)
        abort(); /* the test's own memory is not what is tested */
    cur = r;
    memcpy(r->small, "hello", 5);
    for (size_t i = 0; i < BIG; i++)
        r->big[i] = (char)(i * 31 + 7);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    int result = 0;
    int hub_ok = start_end(&r->hub, sv[0], SL_MUX_HUB) == 0;
    int br_ok = start_end(&r->br, sv[1], SL_MUX_BRIDGE) == 0;
    if (!hub_ok || !br_ok) {
        result = UV_ENOMEM;
        goto out;
    }
    sl_test_alloc_pause(1);
    r->hs = calloc(1, sizeof(*r->hs));
    sl_test_alloc_pause(0);
    if (r->hs == NULL)
        abort();
    int rc = sl_mux_open(r->hub.m, &r->hs->x, SL_MUX_KIND_HTTP, "");
    if (rc != 0) {
        free(r->hs);
        r->hs = NULL;
        result = rc;
        goto out;
    }
    struct st *hs = r->hs;
    hs->x.tcp.data = hs;
    uv_buf_t small = uv_buf_init(r->small, 5);
    uv_buf_t big = uv_buf_init(r->big, BIG);
    r->wbig.data = hs;
    hs->shut.data = hs;
    rc = sl_xprt_try_write(&hs->x, &small, 1);
    if (rc == UV_EAGAIN) { /* no memory for the copy: the caller writes */
        hs->wr.data = hs;
        rc = sl_xprt_write(&hs->wr, &hs->x, &small, 1, on_written);
        rc = rc == 0 ? 5 : rc;
    }
    if (rc == 5)
        rc = sl_xprt_write(&r->wbig, &hs->x, &big, 1, on_written);
    if (rc == 0)
        rc = sl_xprt_shutdown(&hs->shut, &hs->x, on_shut);
    if (rc == 0)
        rc = sl_xprt_read_start(&hs->x, st_alloc, st_read);
    if (rc != 0) {
        result = rc;
        goto out;
    }
    for (int i = 0; i < 5000; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (hs->eof || hs->err || hs->write_err || r->hub.closes ||
            r->br.closes)
            break;
    }
    if (hs->eof && hs->in_len == 5 + BIG &&
        memcmp(hs->in, "hello", 5) == 0 &&
        memcmp(hs->in + 5, r->big, BIG) == 0) {
        result = 0;
    } else if (hs->err || hs->write_err || r->hub.reason || r->br.reason ||
               (r->bs != NULL && (r->bs->err || r->bs->write_err))) {
        result = UV_ENOMEM; /* failed, and said so */
    } else if (hs->eof) {
        fail_msg("echo ended short without an error (%zu bytes)",
                 hs->in_len);
    } else {
        fail_msg("neither finished nor failed");
    }
out:
    st_close(r->hs);
    st_close(r->bs);
    if (r->hub.m != NULL) {
        sl_mux_abort(r->hub.m, SL_MUX_GO_NORMAL, NULL, 0);
        sl_mux_release(r->hub.m);
    } else {
        uv_close((uv_handle_t *)&r->hub.x.tcp, on_tcp_closed);
    }
    if (r->br.m != NULL) {
        sl_mux_abort(r->br.m, SL_MUX_GO_NORMAL, NULL, 0);
        sl_mux_release(r->br.m);
    } else {
        uv_close((uv_handle_t *)&r->br.x.tcp, on_tcp_closed);
    }
    for (int i = 0; i < 100; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (r->hs != NULL && !r->hs->closed)
        fail_msg("the hub's stream was never closed");
    if (r->bs != NULL && !r->bs->closed)
        fail_msg("the bridge's stream was never closed");
    sl_test_alloc_pause(1);
    free(r->hs);
    free(r->bs);
    free(r);
    sl_test_alloc_pause(0);
    cur = NULL;
    return result;
}

static void test_exchange_under_oom(void **state)
{
    (void)state;
    long n = sl_oom_loop("mux exchange", exchange, NULL);
    assert_true(n > 5);
}

int main(void)
{
    sl_test_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_under_oom),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(&loop);
    return rc;
}
