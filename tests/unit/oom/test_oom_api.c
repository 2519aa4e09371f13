/* Allocation failure in the admin API's server and router (api/server.c)
 * with the hub's routes and handlers (api/hub_api.c) on an in-memory SQLite
 * store, as fuzz/fuzz_api_router.c drives them: one connection made by hand
 * on one end of a socketpair, the way on_connection makes one. A client
 * sends five requests pipelined (list, get, create through the thread
 * pool, /metrics, delete), half-closes and reads until the server closes.
 * With the 1st, 2nd, ... allocation failing (SQLite's through its hook),
 * each must end as an answer (a 500 is fine) or a close of that
 * connection: the server frees it, nothing is pending, nothing leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "api/server.c"

/* The password hash of a create: scrypt costs 50 ms a call and its
 * allocations are OpenSSL's (not counted), so a constant stands in. */
static int oom_password_hash(const char *password, char *out, size_t outlen)
{
    (void)password;
    int n = snprintf(out, outlen, "%s", "scrypt$16384$8$1$ZnV6eg==$ZnV6eg==");
    return n < 0 || (size_t)n >= outlen ? SL_ETOOBIG : 0;
}
#define sl_password_hash oom_password_hash
#include "api/hub_api.c"
#undef sl_password_hash

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub/store.h"

#include "oom.h"

#define RESPONSE_MAX (1024 * 1024)

struct client {
    uv_pipe_t pipe;
    uv_write_t write;
    uv_shutdown_t shutdown;
    char *buf;
    size_t len, cap;
    int eof;
    int overflow;
};

static uv_loop_t loop;
static struct sl_ctx ctx;

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct client *cl = h->data;
    (void)hint;
    if (cl->cap - cl->len < 4096 && cl->cap < RESPONSE_MAX) {
        size_t ncap = cl->cap ? cl->cap * 2 : 16384;
        char *p = realloc(cl->buf, ncap);
        if (p != NULL) {
            cl->buf = p;
            cl->cap = ncap;
        }
    }
    if (cl->buf == NULL || cl->cap == cl->len) {
        *b = uv_buf_init(NULL, 0);
        return;
    }
    *b = uv_buf_init(cl->buf + cl->len, (unsigned)(cl->cap - cl->len));
}

static void client_closed(uv_handle_t *h)
{
    (void)h;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *cl = s->data;
    (void)b;
    if (n > 0) {
        cl->len += (size_t)n;
        return;
    }
    if (n == 0)
        return;
    if (n == UV_ENOBUFS)
        cl->overflow = 1;
    else
        cl->eof = 1;
    uv_close((uv_handle_t *)&cl->pipe, client_closed);
}

static void client_wrote(uv_write_t *w, int status)
{
    (void)w;
    (void)status; /* the server may close before reading everything */
}

static void client_shut(uv_shutdown_t *sh, int status)
{
    (void)sh;
    (void)status;
}

#define BAD()                                                             \
    fail_msg("a bad response at %zu: %.*s", off,                          \
             (int)(len - off > 200 ? 200 : len - off), buf + off)

/* Checks the bytes the server sent: whole responses, one after another;
 * returns how many. */
static int check_responses(const char *buf, size_t len)
{
    size_t off = 0;
    int n = 0;
    while (off < len) {
        ssize_t end = sl_http_head_end(buf + off, len - off, 0, 4096);
        if (end <= 0)
            fail_msg("a cut response head at %zu of %zu", off, len);
        struct sl_http_head h;
        if (sl_http_head_parse(&h, 0, buf + off, (size_t)end) != 0)
            BAD();
        if (h.http_major != 1 || h.http_minor != 1 || h.status < 200 ||
            h.status >= 500 || !h.has_content_length || h.chunked)
            BAD();
        size_t body_off = off + (size_t)end;
        if (h.content_length > len - body_off)
            BAD();
        const char *body = buf + body_off;
        size_t blen = (size_t)h.content_length;
        char ctype[64];
        if (sl_http_head_get(&h, "content-type", ctype, sizeof(ctype)) < 0)
            BAD();
        if (strcmp(ctype, "application/json") == 0) {
            json_error_t e;
            json_t *j = json_loadb(body, blen, 0, &e);
            if (!json_is_object(j))
                BAD();
            /* An error says which. */
            if (h.status >= 400 &&
                (!json_is_string(json_object_get(j, "error")) ||
                 json_integer_value(json_object_get(j, "code")) != h.status))
                BAD();
            json_decref(j);
        }
        off = body_off + blen;
        n++;
    }
    return n;
}

static struct sl_store *make_store(void)
{
    struct sl_store *st = NULL;
    assert_int_equal(sl_store_open(":memory:", &ctx.log, &st), 0);
    struct sl_alloc a;
    memset(&a, 0, sizeof(a));
    snprintf(a.identity, sizeof(a.identity), "ab1234567890");
    snprintf(a.username, sizeof(a.username), "Xy12ab");
    snprintf(a.password_hash, sizeof(a.password_hash),
             "scrypt$16384$8$1$ZnV6eg==$ZnV6eg==");
    a.limits.bridges = 2;
    a.traffic.user_down = 1000;
    a.created_at = 1;
    a.last_seen = 2;
    assert_int_equal(sl_store_create(st, &a), 0);
    return st;
}

static const char requests[] =
    "GET /api/proxy/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
    "User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    "GET /api/proxy/ab1234567890/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
    "Accept: application/json\r\n\r\n"
    "POST /api/proxy/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
    "Content-Type: application/json\r\nContent-Length: 30\r\n\r\n"
    "{\"bridges\":2,\"traffic\":100000}"
    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"
    "DELETE /api/proxy/ab1234567890/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
    "\r\n";

static int run_api(void *arg)
{
    (void)arg;
    sl_test_alloc_pause(1);
    struct sl_store *st = make_store();
    struct sl_hub_api *api = calloc(1, sizeof(*api));
    struct sl_api_server *srv = calloc(1, sizeof(*srv));
    struct conn *c = calloc(1, sizeof(*c));
    struct client *cl = calloc(1, sizeof(*cl));
    assert_true(api != NULL && srv != NULL && c != NULL && cl != NULL);
    api->ctx = &ctx;
    api->store = st;
    api->url_template = strdup("http://{identity}.localhost:8080/");
    assert_non_null(api->url_template);
    srv->ctx = &ctx;
    snprintf(srv->name, sizeof(srv->name), "hub-api");
    srv->routes = routes;
    srv->nroutes = sizeof(routes) / sizeof(routes[0]);
    srv->arg = api;

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                     0);
    /* The server side, as on_connection sets up an accepted socket. */
    c->srv = srv;
    c->id = ++srv->next_id;
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    srv->handles++;
    srv->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    assert_int_equal(uv_tcp_open(&c->tcp, sv[0]), 0);
    snprintf(c->peer, sizeof(c->peer), "127.0.0.1:40000");
    uv_timer_start(&c->timer, on_timeout, SL_API_TIMEOUT_MS,
                   SL_API_TIMEOUT_MS);
    /* The client: send, half-close, read until the server closes. */
    assert_int_equal(uv_pipe_init(&loop, &cl->pipe, 0), 0);
    assert_int_equal(uv_pipe_open(&cl->pipe, sv[1]), 0);
    cl->pipe.data = cl;
    /* Its buffer is the test's, not the server's. */
    cl->buf = malloc(RESPONSE_MAX);
    assert_non_null(cl->buf);
    cl->cap = RESPONSE_MAX;
    sl_test_alloc_pause(0);

    conn_read_start(c);
    uv_buf_t b = uv_buf_init((char *)requests, sizeof(requests) - 1);
    assert_int_equal(uv_write(&cl->write, (uv_stream_t *)&cl->pipe, &b, 1,
                              client_wrote), 0);
    assert_int_equal(uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->pipe,
                                 client_shut), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&cl->pipe, client_alloc,
                                   client_read), 0);
    /* Ends when the server closed and the client saw it; a server that
     * neither answers nor closes would hang here (the suite's timeout). */
    uv_run(&loop, UV_RUN_DEFAULT);

    int failed = sl_test_alloc_failed();
    sl_test_alloc_pause(1);
    if (!cl->eof || cl->overflow || srv->conns != NULL || srv->handles != 0 ||
        api->pending != 0)
        fail_msg("connection not closed and freed: eof %d, conns %p, "
                 "handles %d, pending %zu", cl->eof, (void *)srv->conns,
                 (int)srv->handles, api->pending);
    int answers = -1;
    if (!failed)
        answers = check_responses(cl->buf, cl->len);
    free(cl->buf);
    free(cl);
    free(srv->token);
    free(srv);
    free(api->url_template);
    free(api);
    sl_store_close(st);
    sl_test_alloc_pause(0);
    if (failed)
        return -1;
    if (answers != 5)
        fail_msg("%d answers to 5 requests", answers);
    return 0;
}

static void api_requests(void **state)
{
    (void)state;
    sl_oom_loop("api: five requests on one connection", run_api, NULL);
}

int main(void)
{
    sl_test_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    ctx.log.level = SL_LOG_ERROR;
    ctx.log.out = fopen("/dev/null", "w");
    assert_non_null(ctx.log.out);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_requests),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(&loop);
    fclose(ctx.log.out);
    return rc;
}
