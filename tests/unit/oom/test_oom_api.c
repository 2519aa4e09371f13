/* Allocation failure in the admin API's server and router (api/server.c)
 * with the hub's routes and handlers (api/hub_api.c) on an in-memory SQLite
 * store, as fuzz/fuzz_api_router.c drives them (tests/support/api_drive.h):
 * one connection made by hand on one end of a socketpair, the way
 * on_connection makes one. A client
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
#include <unistd.h>

#include "api_drive.h"
#include "oom.h"

#define RESPONSE_MAX (1024 * 1024)

static uv_loop_t loop;
static struct sl_ctx ctx;

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
    struct api_drive d;
    assert_int_equal(api_drive_open(&d, &ctx, RESPONSE_MAX), 0);
    /* The client's buffer is the test's, not the server's. */
    d.client->buf = malloc(RESPONSE_MAX);
    assert_non_null(d.client->buf);
    d.client->cap = RESPONSE_MAX;
    sl_test_alloc_pause(0);

    conn_read_start(d.conn);
    /* The client: send, half-close, read until the server closes. */
    assert_int_equal(
        sl_test_client_send(d.client, requests, sizeof(requests) - 1), 0);
    /* Ends when the server closed and the client saw it; a server that
     * neither answers nor closes would hang here (the suite's timeout). */
    uv_run(&loop, UV_RUN_DEFAULT);

    int failed = sl_test_alloc_failed();
    sl_test_alloc_pause(1);
    if (!api_drive_closed(&d))
        fail_msg("connection not closed and freed: eof %d, conns %p, "
                 "handles %d, pending %zu", d.client->eof,
                 (void *)d.srv->conns, (int)d.srv->handles, d.api->pending);
    int answers = -1;
    size_t off = 0;
    if (!failed &&
        (answers = api_drive_check(d.client->buf, d.client->len, &off)) < 0) {
        size_t left = d.client->len - off;
        fail_msg("a bad response at %zu of %zu: %.*s", off, d.client->len,
                 (int)(left > 200 ? 200 : left), d.client->buf + off);
    }
    api_drive_free(&d);
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
