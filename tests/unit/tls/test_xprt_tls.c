/* The TLS transport (net/xprt.c) over a loopback TCP connection: bytes
 * both ways in order, records gathered and sent at the end of the loop's
 * turn, a write followed at once by a close still reaching the peer, and
 * OpenSSL's read and write buffers freed once the connection goes idle
 * (they are kept while it is busy). OpenSSL's allocations are counted
 * through CRYPTO_set_mem_functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/xprt.h"
#include "tls/tls_ca.h"

/* ------------------------------------------- OpenSSL's allocations */

/* A buffer of OpenSSL's record layer is one record and its overhead (some
 * 17 KiB); nothing else it allocates per connection is that large. */
#define BIG (16 * 1024)

struct hdr {
    size_t len;
    size_t pad; /* keeps the caller's memory 16-byte aligned */
};

static long big_live;
static long big_max;

static void count(size_t len, int d)
{
    if (len >= BIG) {
        big_live += d;
        if (big_live > big_max)
            big_max = big_live;
    }
}

static void *m_malloc(size_t len, const char *file, int line)
{
    (void)file;
    (void)line;
    struct hdr *h = malloc(sizeof(*h) + len);
    if (h == NULL)
        return NULL;
    h->len = len;
    count(len, 1);
    return h + 1;
}

static void m_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p == NULL)
        return;
    struct hdr *h = (struct hdr *)p - 1;
    count(h->len, -1);
    free(h);
}

static void *m_realloc(void *p, size_t len, const char *file, int line)
{
    if (p == NULL)
        return m_malloc(len, file, line);
    if (len == 0) {
        m_free(p, file, line);
        return NULL;
    }
    struct hdr *h = (struct hdr *)p - 1;
    size_t old = h->len;
    struct hdr *n = realloc(h, sizeof(*n) + len);
    if (n == NULL)
        return NULL;
    count(old, -1);
    n->len = len;
    count(len, 1);
    return n + 1;
}

/* ------------------------------------------------------ a connection */

struct end {
    struct sl_xprt x;
    struct pair *p;
    int hs; /* 0 pending, 1 done, <0 failed */
    size_t got;      /* bytes read */
    size_t want_eof; /* read until EOF */
    int eof;         /* UV_EOF or another status seen */
    size_t wrote;    /* bytes whose write callback said 0 */
    int write_errs;
    int shut_status; /* 1: pending */
    int closed;
    unsigned char rbuf[70 * 1024];
};

struct pair {
    uv_loop_t loop;
    uv_tcp_t lsn;
    uv_connect_t conn;
    struct end srv, cli;
    SSL_CTX *sctx, *cctx;
};

static unsigned char pattern_at(size_t off)
{
    return (unsigned char)(off * 7 + off / 251);
}

static void on_hs(struct sl_xprt *x, int status)
{
    struct end *e = (struct end *)x;
    e->hs = status == 0 ? 1 : status;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct end *e = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)e->rbuf, sizeof(e->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct end *e = s->data;
    if (n < 0) {
        e->eof = (int)n;
        sl_xprt_read_stop(&e->x);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        assert_int_equal((unsigned char)buf->base[i], pattern_at(e->got + i));
    e->got += (size_t)n;
}

static void on_accept(uv_stream_t *lsn, int status)
{
    struct pair *p = lsn->data;
    assert_int_equal(status, 0);
    sl_xprt_init(&p->srv.x);
    assert_int_equal(uv_tcp_init(&p->loop, &p->srv.x.tcp), 0);
    p->srv.x.tcp.data = &p->srv;
    assert_int_equal(uv_accept(lsn, (uv_stream_t *)&p->srv.x.tcp), 0);
    SSL *ssl = SSL_new(p->sctx);
    assert_non_null(ssl);
    SSL_set_accept_state(ssl);
    assert_int_equal(sl_xprt_tls_start(&p->srv.x, ssl, NULL, 0, on_hs), 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct pair *p = req->data;
    assert_int_equal(status, 0);
    SSL *ssl = SSL_new(p->cctx);
    assert_non_null(ssl);
    SSL_set_connect_state(ssl);
    assert_int_equal(sl_xprt_tls_start(&p->cli.x, ssl, NULL, 0, on_hs), 0);
}

static void run_until(struct pair *p, int (*done)(struct pair *))
{
    for (int i = 0; i < 200000 && !done(p); i++)
        uv_run(&p->loop, UV_RUN_ONCE);
    assert_true(done(p));
}

static int both_shook(struct pair *p)
{
    return p->srv.hs != 0 && p->cli.hs != 0;
}

/* Lets the loop finish what it deferred (idle callbacks). */
static void settle(struct pair *p)
{
    for (int i = 0; i < 8; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
}

static void pair_open(struct pair *p)
{
    memset(p, 0, sizeof(*p));
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    assert_int_equal(sl_tls_ca_make(time(NULL), &ca, &key), 0);
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->sctx);
    assert_non_null(p->cctx);
    assert_int_equal(SSL_CTX_use_certificate(p->sctx, ca), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(p->sctx, key), 1);
    X509_free(ca);
    EVP_PKEY_free(key);
    /* As the contexts of tls_server.c and tls_client.c. */
    SSL_CTX_set_mode(p->sctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_mode(p->cctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);

    assert_int_equal(uv_loop_init(&p->loop), 0);
    p->srv.p = p->cli.p = p;
    assert_int_equal(uv_tcp_init(&p->loop, &p->lsn), 0);
    p->lsn.data = p;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&p->lsn, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->lsn, 4, on_accept), 0);
    int alen = sizeof(a);
    assert_int_equal(uv_tcp_getsockname(&p->lsn, (struct sockaddr *)&a,
                                        &alen), 0);
    sl_xprt_init(&p->cli.x);
    assert_int_equal(uv_tcp_init(&p->loop, &p->cli.x.tcp), 0);
    p->cli.x.tcp.data = &p->cli;
    p->conn.data = p;
    assert_int_equal(uv_tcp_connect(&p->conn, &p->cli.x.tcp,
                                    (struct sockaddr *)&a, on_connect), 0);
    run_until(p, both_shook);
    assert_int_equal(p->srv.hs, 1);
    assert_int_equal(p->cli.hs, 1);
    assert_int_equal(sl_xprt_read_start(&p->srv.x, on_alloc, on_read), 0);
    assert_int_equal(sl_xprt_read_start(&p->cli.x, on_alloc, on_read), 0);
}

static void on_closed(uv_handle_t *h)
{
    struct end *e = h->data;
    e->closed = 1;
}

static int both_closed(struct pair *p)
{
    return p->srv.closed && p->cli.closed;
}

static void pair_close(struct pair *p)
{
    if (!sl_xprt_is_closing(&p->srv.x))
        sl_xprt_close(&p->srv.x, on_closed);
    if (!sl_xprt_is_closing(&p->cli.x))
        sl_xprt_close(&p->cli.x, on_closed);
    uv_close((uv_handle_t *)&p->lsn, NULL);
    run_until(p, both_closed);
    settle(p);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
}

/* A write of the pattern from off, its buffer and request its own. */
struct wr {
    uv_write_t req;
    struct end *e;
    size_t len;
    unsigned char data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct wr *w = (struct wr *)req;
    if (status == 0)
        w->e->wrote += w->len;
    else
        w->e->write_errs++;
    free(w);
}

static void send_pattern(struct end *e, size_t off, size_t len)
{
    struct wr *w = malloc(sizeof(*w) + len);
    assert_non_null(w);
    w->e = e;
    w->len = len;
    for (size_t i = 0; i < len; i++)
        w->data[i] = pattern_at(off + i);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    assert_int_equal(sl_xprt_write(&w->req, &e->x, &b, 1, on_written), 0);
}

static size_t want_srv, want_cli;

static int all_moved(struct pair *p)
{
    return p->srv.got == want_srv && p->cli.got == want_cli &&
           p->cli.wrote == want_srv && p->srv.wrote == want_cli;
}

static void test_idle_connection_frees_openssl_buffers(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    settle(&p);
    /* After the handshake: nothing kept. */
    assert_int_equal(big_live, 0);
    big_max = 0;

    /* Busy both ways: 16 writes of 64 KiB one way, 4 the other, all
     * queued at once (they are gathered, and sent in order). */
    want_srv = 16 * 64 * 1024;
    want_cli = 4 * 64 * 1024;
    for (size_t i = 0; i < 16; i++)
        send_pattern(&p.cli, i * 64 * 1024, 64 * 1024);
    for (size_t i = 0; i < 4; i++)
        send_pattern(&p.srv, i * 64 * 1024, 64 * 1024);
    assert_true(sl_xprt_write_queue_size(&p.cli.x) >= want_srv);
    run_until(&p, all_moved);
    assert_int_equal(p.cli.write_errs + p.srv.write_errs, 0);
    assert_int_equal(sl_xprt_write_queue_size(&p.cli.x), 0);
    assert_true(big_max > 0); /* the count sees OpenSSL's buffers */

    /* Idle: both ends hold no buffer of OpenSSL's. */
    settle(&p);
    assert_int_equal(big_live, 0);

    /* And a few bytes later, the same. */
    send_pattern(&p.cli, want_srv, 100);
    want_srv += 100;
    run_until(&p, all_moved);
    settle(&p);
    assert_int_equal(big_live, 0);

    /* A reader that stopped with everything read holds none either. */
    assert_int_equal(sl_xprt_read_stop(&p.srv.x), 0);
    settle(&p);
    assert_int_equal(big_live, 0);
    pair_close(&p);
}

static int srv_eof(struct pair *p)
{
    return p->srv.eof != 0;
}

static void on_shut(uv_shutdown_t *req, int status)
{
    struct end *e = req->data;
    e->shut_status = status;
}

/* Writes larger than what is gathered, then close_notify: every byte in
 * order, then EOF; every write and the shutdown succeed. */
static void test_writes_then_shutdown(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    size_t total = 0;
    for (size_t i = 0; i < 40; i++) {
        size_t len = i % 3 == 0 ? 5 : 40 * 1024 + i;
        send_pattern(&p.cli, total, len);
        total += len;
    }
    uv_shutdown_t sreq;
    sreq.data = &p.cli;
    p.cli.shut_status = 1;
    assert_int_equal(sl_xprt_shutdown(&sreq, &p.cli.x, on_shut), 0);
    run_until(&p, srv_eof);
    assert_int_equal(p.srv.eof, UV_EOF);
    assert_int_equal(p.srv.got, total);
    settle(&p);
    assert_int_equal(p.cli.wrote, total);
    assert_int_equal(p.cli.write_errs, 0);
    assert_int_equal(p.cli.shut_status, 0);
    pair_close(&p);
}

/* A write followed at once by a close reaches the peer, as on a plain
 * socket (libuv writes at once what the socket takes). */
static void test_write_then_close(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    send_pattern(&p.cli, 0, 3000);
    sl_xprt_close(&p.cli.x, on_closed);
    run_until(&p, srv_eof);
    assert_int_equal(p.srv.got, 3000);
    assert_int_equal(p.srv.eof, UV_EOF);
    pair_close(&p);
    assert_int_equal(p.cli.wrote, 3000);
}

int main(void)
{
    /* Before OpenSSL allocates anything. */
    if (!CRYPTO_set_mem_functions(m_malloc, m_realloc, m_free))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connection_frees_openssl_buffers),
        cmocka_unit_test(test_writes_then_shutdown),
        cmocka_unit_test(test_write_then_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
