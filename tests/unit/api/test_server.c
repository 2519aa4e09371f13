#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdatomic.h>
#include <uv.h>

/* Allocation failure injection for server.c: the next n callocs fail. */
static atomic_int calloc_failures;
static void *failing_calloc(size_t n, size_t size)
{
    if (atomic_load(&calloc_failures) > 0) {
        atomic_fetch_sub(&calloc_failures, 1);
        return NULL;
    }
    return calloc(n, size);
}
#define calloc(n, size) failing_calloc(n, size)
#include "../../../src/api/server.c"
#undef calloc
#include "api/client.h"

static void h_dummy(struct sl_api_req *req, void *arg)
{
    (void)arg;
    sl_api_reply_json(req, 200, NULL);
}

static const struct sl_api_route table[] = {
    {"GET", "/api/proxy/", h_dummy},
    {"POST", "/api/proxy/", h_dummy},
    {"DELETE", "/api/proxy/prune/", h_dummy},
    {"GET", "/api/proxy/{identity}/", h_dummy},
    {"DELETE", "/api/proxy/{identity}/", h_dummy},
    {"POST", "/api/bridge/{identity}/connect/", h_dummy},
    {"GET", "/metrics", h_dummy},
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

static void test_route_match(void **state)
{
    (void)state;
    struct sl_api_match m;
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/api/proxy/",
                                        &m), 0);
    assert_int_equal(m.nparams, 0);
    /* trailing slash optional on both sides */
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/api/proxy",
                                        &m), 0);
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/metrics/",
                                        &m), 6);
    assert_int_equal(sl_api_route_match(table, NTABLE, "POST", "/api/proxy/",
                                        &m), 1);
    /* fixed segment listed first wins */
    assert_int_equal(sl_api_route_match(table, NTABLE, "DELETE",
                                        "/api/proxy/prune/", &m), 2);
    assert_int_equal(sl_api_route_match(table, NTABLE, "DELETE",
                                        "/api/proxy/ab1234567890/", &m), 4);
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.name_lens[0], 8);
    assert_memory_equal(m.names[0], "identity", 8);
    assert_string_equal(m.values[0], "ab1234567890");
    assert_int_equal(sl_api_route_match(table, NTABLE, "POST",
                                        "/api/bridge/xy/connect", &m), 5);
    assert_string_equal(m.values[0], "xy");
    /* path matches, method does not */
    assert_int_equal(sl_api_route_match(table, NTABLE, "PUT", "/api/proxy/",
                                        &m), -405);
    assert_int_equal(sl_api_route_match(table, NTABLE, "POST",
                                        "/api/proxy/ab1234567890", &m), -405);
    /* no match */
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/", &m), -404);
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET",
                                        "/api/proxy/a/b/", &m), -404);
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/api", &m),
                     -404);
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "/apix/proxy",
                                        &m), -404);
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", "", &m), -404);
    /* a placeholder never matches an empty segment */
    assert_int_equal(sl_api_route_match(table, NTABLE, "POST",
                                        "/api/bridge//connect/", &m), -404);
    /* values overflowing the buffer */
    char longpath[1200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "/api/proxy/", 11);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(sl_api_route_match(table, NTABLE, "GET", longpath, &m),
                     -414);
}

static void test_loopback_and_decode(void **state)
{
    (void)state;
    assert_true(sl_api_listen_is_loopback("127.0.0.1:8081"));
    assert_true(sl_api_listen_is_loopback("127.3.4.5:1"));
    assert_true(sl_api_listen_is_loopback("[::1]:8081"));
    assert_false(sl_api_listen_is_loopback("0.0.0.0:8081"));
    assert_false(sl_api_listen_is_loopback("10.0.0.1:8081"));
    assert_false(sl_api_listen_is_loopback("garbage"));
    assert_false(sl_api_listen_is_loopback(NULL));

    struct sl_api_req req;
    memset(&req, 0, sizeof(req));
    char q[] = "older_than=3600&x=a%20b+c%zz&flag&e=";
    req.query = q;
    char buf[32];
    assert_int_equal(sl_api_req_query(&req, "older_than", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "3600");
    assert_int_equal(sl_api_req_query(&req, "x", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "a b c%zz");
    assert_int_equal(sl_api_req_query(&req, "flag", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(sl_api_req_query(&req, "e", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(sl_api_req_query(&req, "older", buf, sizeof(buf)),
                     SL_ENOTFOUND);
    assert_int_equal(sl_api_req_query(&req, "older_than", buf, 3),
                     SL_ETOOBIG);
}

/* Without a token, Host must name this machine (DNS rebinding). */
static void test_host_is_local(void **state)
{
    (void)state;
    static const char *const local[] = {
        "127.0.0.1:8081", "127.0.0.1", "127.9.8.7:1", "localhost",
        "LocalHost:8082", "localhost.", "api.localhost:8081", "[::1]:8082",
        "[::1]", " localhost:1 ",
    };
    static const char *const other[] = {
        "evil.example", "evil.example:8081", "10.0.0.1:8081",
        "0.0.0.0:8081", "localhost.evil.example", "xlocalhost",
        "[::2]:1", "[::1", "[::1]x", "", "127.0.0.1.nip.io",
        "[::ffff:10.0.0.1]:1",
    };
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
        assert_true(host_is_local(local[i], strlen(local[i])));
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_false(host_is_local(other[i], strlen(other[i])));
}

/* --- a live server on the loop, a blocking client in a thread ---------- */

struct live {
    struct sl_ctx ctx;
    struct sl_api_server *srv;
    char addr[SL_ADDR_STRLEN];
    uv_async_t done;
    uv_thread_t thread;
    const char *token;
    /* results, checked on the main thread */
    int status[16];
    char *body[16];
    int rc[16];
    int raw_ok;
    char raw_resp[2048];
    char page_resp[3][512]; /* requests a web page could make */
};

static void h_echo(struct sl_api_req *req, void *arg)
{
    (void)arg;
    char older[32] = "";
    (void)sl_api_req_query(req, "older_than", older, sizeof(older));
    size_t blen;
    const char *body = sl_api_req_body(req, &blen);
    const char *id = sl_api_req_param(req, "identity");
    sl_api_reply_json(req, 200,
                      json_pack("{s:s, s:s, s:s?, s:s, s:s#}", "method",
                                sl_api_req_method(req), "path",
                                sl_api_req_path(req), "identity", id,
                                "older", older, "body", body, (int)blen));
}

static void h_json(struct sl_api_req *req, void *arg)
{
    (void)arg;
    json_t *j;
    if (sl_api_req_json(req, &j) != 0) {
        sl_api_reply_error(req, 400, "Body is not valid JSON");
        return;
    }
    sl_api_reply_json(req, 201, json_pack("{s:o}", "got",
                                          j ? j : json_null()));
}

static void on_later(uv_timer_t *t)
{
    struct sl_api_req *req = t->data;
    sl_api_reply_text(req, 202, "text/plain", "later", 5);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void h_async(struct sl_api_req *req, void *arg)
{
    struct live *lv = arg;
    uv_timer_t *t = malloc(sizeof(*t));
    uv_timer_init(lv->ctx.loop, t);
    t->data = req;
    uv_timer_start(t, on_later, 20, 0);
}

static const struct sl_api_route live_routes[] = {
    {"GET", "/echo/{identity}/", h_echo},
    {"DELETE", "/echo/", h_echo},
    {"POST", "/json/", h_json},
    {"GET", "/async/", h_async},
};

/* Sends raw bytes, reads until the peer closes; for pipelining and
 * malformed input. */
static int raw_exchange(const char *addr, const char *data, char *out,
                        size_t cap)
{
    struct sockaddr_storage ss;
    if (sl_addr_parse(addr, &ss) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, sl_addr_len((struct sockaddr *)&ss)) != 0) {
        close(fd);
        return -1;
    }
    if (send(fd, data, strlen(data), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, out + n, cap - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n + 1 >= cap)
            break;
    }
    out[n] = '\0';
    close(fd);
    return 0;
}

static void client_thread(void *arg)
{
    struct live *lv = arg;
    const char *t = lv->token;
    int i = 0;
    lv->rc[i] = sl_http_client_request(lv->addr, "GET",
                                       "/echo/ab1234567890/?older_than=5%30",
                                       t, NULL, 5000, &lv->status[i],
                                       &lv->body[i], NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "POST", "/json/", t,
                                       "{\"a\":1}", 5000, &lv->status[i],
                                       &lv->body[i], NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "POST", "/json/", t,
                                       "{nope", 5000, &lv->status[i],
                                       &lv->body[i], NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "GET", "/nothing", t, NULL,
                                       5000, &lv->status[i], &lv->body[i],
                                       NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "PUT", "/json/", t, NULL,
                                       5000, &lv->status[i], &lv->body[i],
                                       NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "GET", "/async/", t, NULL,
                                       5000, &lv->status[i], &lv->body[i],
                                       NULL);
    i++;
    /* wrong token / no token */
    lv->rc[i] = sl_http_client_request(lv->addr, "GET", "/async/", "bad",
                                       NULL, 5000, &lv->status[i],
                                       &lv->body[i], NULL);
    i++;
    lv->rc[i] = sl_http_client_request(lv->addr, "GET", "/async/", NULL,
                                       NULL, 5000, &lv->status[i],
                                       &lv->body[i], NULL);
    i++;
    /* pipelined keep-alive requests, then a close */
    char req[1024];
    snprintf(req, sizeof(req),
             "GET /echo/one/ HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n"
             "DELETE /echo/?older_than=1 HTTP/1.1\r\nHost: localhost\r\n"
             "Connection: close\r\n%s%s%s\r\n",
             t ? "Authorization: Bearer " : "", t ? t : "", t ? "\r\n" : "",
             t ? "Authorization: bearer   " : "", t ? t : "",
             t ? "\r\n" : "");
    lv->raw_ok = raw_exchange(lv->addr, req, lv->raw_resp,
                              sizeof(lv->raw_resp)) == 0;
    /* what a web page can send: a form POST (Origin), a fetch
     * (Sec-Fetch-Site), a rebound name (Host) */
    static const char *const page[3] = {
        "POST /json/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Origin: http://evil.example\r\nContent-Length: 2\r\n\r\n{}",
        "GET /async/ HTTP/1.1\r\nHost: localhost\r\n"
        "Sec-Fetch-Site: cross-site\r\n\r\n",
        "GET /async/ HTTP/1.1\r\nHost: evil.example:8082\r\n\r\n",
    };
    for (int k = 0; k < 3; k++)
        if (t == NULL)
            (void)raw_exchange(lv->addr, page[k], lv->page_resp[k],
                               sizeof(lv->page_resp[k]));
    uv_async_send(&lv->done);
}

static void on_done(uv_async_t *a)
{
    struct live *lv = a->data;
    sl_api_server_close(lv->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void run_live(struct live *lv, const char *token, int require)
{
    memset(lv, 0, sizeof(*lv));
    lv->ctx.loop = malloc(sizeof(uv_loop_t));
    uv_loop_init(lv->ctx.loop);
    lv->ctx.log.level = SL_LOG_ERROR;
    lv->token = token;
    struct sl_api_config cfg = {
        .name = "test-api", .listen = "127.0.0.1:0", .token = token,
        .require_token = require, .routes = live_routes,
        .nroutes = sizeof(live_routes) / sizeof(live_routes[0]), .arg = lv,
    };
    assert_int_equal(sl_api_server_start(&lv->ctx, &cfg, &lv->srv), 0);
    assert_int_equal(sl_api_server_address(lv->srv, lv->addr,
                                           sizeof(lv->addr)), 0);
    uv_async_init(lv->ctx.loop, &lv->done, on_done);
    lv->done.data = lv;
    uv_thread_create(&lv->thread, client_thread, lv);
    uv_run(lv->ctx.loop, UV_RUN_DEFAULT);
    uv_thread_join(&lv->thread);
    assert_int_equal(uv_loop_close(lv->ctx.loop), 0);
    free(lv->ctx.loop);
}

static void free_live(struct live *lv)
{
    for (int i = 0; i < 16; i++)
        free(lv->body[i]);
}

static void test_live(void **state)
{
    (void)state;
    struct live *lv = calloc(1, sizeof(*lv));
    run_live(lv, NULL, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(lv->rc[i], 0);
    assert_int_equal(lv->status[0], 200);
    assert_non_null(strstr(lv->body[0], "\"identity\":\"ab1234567890\""));
    assert_non_null(strstr(lv->body[0], "\"older\":\"50\""));
    assert_non_null(strstr(lv->body[0], "\"method\":\"GET\""));
    assert_int_equal(lv->status[1], 201);
    assert_string_equal(lv->body[1], "{\"got\":{\"a\":1}}");
    assert_int_equal(lv->status[2], 400);
    assert_string_equal(lv->body[2],
                        "{\"error\":\"Body is not valid JSON\",\"code\":400}");
    assert_int_equal(lv->status[3], 404);
    assert_string_equal(lv->body[3], "{\"error\":\"Not found\",\"code\":404}");
    assert_int_equal(lv->status[4], 405);
    assert_int_equal(lv->status[5], 202);
    assert_string_equal(lv->body[5], "later");
    /* loopback without require: tokens are ignored */
    assert_int_equal(lv->status[6], 202);
    assert_int_equal(lv->status[7], 202);
    assert_true(lv->raw_ok);
    /* both pipelined answers, the second closes */
    char *first = strstr(lv->raw_resp, "HTTP/1.1 200 OK");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(lv->raw_resp, "Connection: keep-alive"));
    assert_non_null(strstr(lv->raw_resp, "Connection: close"));
    assert_non_null(strstr(lv->raw_resp, "\"older\":\"1\""));
    for (int k = 0; k < 3; k++) {
        assert_non_null(strstr(lv->page_resp[k], "HTTP/1.1 403 Forbidden"));
        assert_non_null(strstr(lv->page_resp[k], "\"code\":403"));
    }
    free_live(lv);
    free(lv);
}

static void test_live_token(void **state)
{
    (void)state;
    struct live *lv = calloc(1, sizeof(*lv));
    run_live(lv, "s3cret-token", 1);
    assert_int_equal(lv->status[0], 200);
    assert_int_equal(lv->status[5], 202);
    assert_int_equal(lv->status[6], 401);
    assert_string_equal(lv->body[6],
                        "{\"error\":\"Unauthorized\",\"code\":401}");
    assert_int_equal(lv->status[7], 401);
    assert_non_null(strstr(lv->raw_resp, "\"older\":\"1\""));
    free_live(lv);
    free(lv);
}

static void test_start_errors(void **state)
{
    (void)state;
    struct sl_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx.loop = &loop;
    ctx.log.level = SL_LOG_ERROR;
    struct sl_api_server *srv = NULL;
    struct sl_api_config cfg = {.listen = "0.0.0.0:0", .routes = table,
                                .nroutes = NTABLE};
    /* not loopback, no token */
    assert_int_equal(sl_api_server_start(&ctx, &cfg, &srv), SL_ECONFIG);
    cfg.listen = "127.0.0.1:0";
    cfg.require_token = 1;
    assert_int_equal(sl_api_server_start(&ctx, &cfg, &srv), SL_ECONFIG);
    cfg.listen = "nonsense";
    assert_int_equal(sl_api_server_start(&ctx, &cfg, &srv), SL_EPARSE);
    assert_null(srv);
    /* address in use */
    cfg.listen = "127.0.0.1:0";
    cfg.require_token = 0;
    assert_int_equal(sl_api_server_start(&ctx, &cfg, &srv), 0);
    char addr[SL_ADDR_STRLEN];
    assert_int_equal(sl_api_server_address(srv, addr, sizeof(addr)), 0);
    struct sl_api_server *srv2 = NULL;
    cfg.listen = addr;
    assert_int_equal(sl_api_server_start(&ctx, &cfg, &srv2), UV_EADDRINUSE);
    sl_api_server_close(srv);
    sl_api_server_close(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Regression, API listener wedged after an allocation failure on
 * accept: the connection that could not get memory was never accepted, so
 * libuv stopped watching the listener and no later client was answered. */
struct oom_accept {
    struct live lv;
    int refused_closed; /* the first client saw a close, not a reply */
    int rc, status;
    char *body;
};

static void oom_client_thread(void *arg)
{
    struct oom_accept *t = arg;
    char resp[256];
    t->refused_closed =
        raw_exchange(t->lv.addr, "GET /echo/x/ HTTP/1.1\r\n\r\n", resp,
                     sizeof(resp)) == 0 && resp[0] == '\0';
    t->rc = sl_http_client_request(t->lv.addr, "GET", "/echo/y/", NULL, NULL,
                                   3000, &t->status, &t->body, NULL);
    uv_async_send(&t->lv.done);
}

static void test_accept_oom_wedges_listener(void **state)
{
    (void)state;
    struct oom_accept *t = calloc(1, sizeof(*t));
    struct live *lv = &t->lv;
    lv->ctx.loop = malloc(sizeof(uv_loop_t));
    uv_loop_init(lv->ctx.loop);
    lv->ctx.log.level = SL_LOG_ERROR; /* the warning is expected */
    struct sl_api_config cfg = {
        .name = "test-api", .listen = "127.0.0.1:0", .routes = live_routes,
        .nroutes = sizeof(live_routes) / sizeof(live_routes[0]), .arg = lv,
    };
    assert_int_equal(sl_api_server_start(&lv->ctx, &cfg, &lv->srv), 0);
    assert_int_equal(sl_api_server_address(lv->srv, lv->addr,
                                           sizeof(lv->addr)), 0);
    uv_async_init(lv->ctx.loop, &lv->done, on_done);
    lv->done.data = lv;
    /* The first calloc of server.c from here on is the first accepted
     * connection's. */
    atomic_store(&calloc_failures, 1);
    uv_thread_create(&lv->thread, oom_client_thread, t);
    uv_run(lv->ctx.loop, UV_RUN_DEFAULT);
    uv_thread_join(&lv->thread);
    assert_int_equal(uv_loop_close(lv->ctx.loop), 0);
    free(lv->ctx.loop);
    assert_int_equal(atomic_load(&calloc_failures), 0);
    assert_true(t->refused_closed);
    assert_int_equal(t->rc, 0);
    assert_int_equal(t->status, 200);
    free(t->body);
    free(t);
}

static void test_client_errors(void **state)
{
    (void)state;
    int status;
    char *body;
    assert_int_equal(sl_http_client_request("ftp://x:1", "GET", "/", NULL,
                                            NULL, 100, &status, &body, NULL),
                     SL_EPARSE);
    assert_int_equal(sl_http_client_request("::1:80", "GET", "/", NULL, NULL,
                                            100, &status, &body, NULL),
                     SL_EPARSE);
    assert_int_equal(sl_http_client_request("host:99999", "GET", "/", NULL,
                                            NULL, 100, &status, &body, NULL),
                     SL_EPARSE);
    /* a port nobody listens on: refused */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    close(fd);
    json_t *j;
    char err[256];
    assert_int_equal(sl_http_client_json(addr, NULL, 0, "GET", "/", NULL, NULL,
                                         &status, &j, err, sizeof(err)),
                     UV_ECONNREFUSED);
    assert_non_null(strstr(err, "cannot reach the API at 127.0.0.1:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_loopback_and_decode),
        cmocka_unit_test(test_host_is_local),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_live_token),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_accept_oom_wedges_listener),
        cmocka_unit_test(test_client_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
