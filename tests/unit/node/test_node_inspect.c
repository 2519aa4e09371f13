/* The node's request inspector (node/node_inspect.h): what it records of
 * HTTP/1.x bytes fed in pieces, what it never keeps (secrets, bodies past
 * the cap), where it stops following (upgrades, garbage, deep
 * pipelines), and the bytes a replay sends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/dynbuf.h"
#include "core/error.h"
#include "node/node_inspect.h"

/* Feeds s in pieces of `step` bytes (1: every byte alone). */
static void feed(struct sl_inspect_conn *ic, enum sl_inspect_dir dir,
                 const char *s, size_t step)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i += step)
        sl_inspect_conn_feed(ic, dir, s + i, n - i < step ? n - i : step);
}

static json_t *get(struct sl_inspect *in, uint64_t id)
{
    json_t *j = sl_inspect_get_json(in, id);
    assert_non_null(j);
    return j;
}

static const char *str(json_t *j, const char *path1, const char *path2)
{
    json_t *o = json_object_get(j, path1);
    if (path2 != NULL)
        o = json_object_get(o, path2);
    assert_true(json_is_string(o));
    return json_string_value(o);
}

static json_int_t num(json_t *j, const char *path1, const char *path2)
{
    json_t *o = json_object_get(j, path1);
    if (path2 != NULL)
        o = json_object_get(o, path2);
    assert_true(json_is_integer(o));
    return json_integer_value(o);
}

static void keep_alive_in_pieces(void **state)
{
    (void)state;
    for (size_t step = 1; step <= 64; step *= 4) {
        struct sl_inspect *in = sl_inspect_new(0);
        struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
        /* two pipelined requests, then both answers */
        feed(ic, SL_INSPECT_REQUEST,
             "GET /a?x=1 HTTP/1.1\r\nHost: ab1234567890.localhost\r\n"
             "Authorization: Bearer s3cret-token\r\nCookie: sid=hunter2\r\n"
             "\r\n"
             "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
             "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\r\nhello",
             step);
        assert_int_equal(sl_inspect_count(in), 2);
        json_t *j = get(in, 1);
        assert_string_equal(str(j, "state", NULL), "pending");
        assert_int_equal(num(j, "duration_ms", NULL), -1);
        json_decref(j);
        feed(ic, SL_INSPECT_RESPONSE,
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
             "Set-Cookie: sid=hunter3; HttpOnly\r\n\r\nhi"
             "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
             step);
        j = get(in, 1);
        assert_string_equal(str(j, "method", NULL), "GET");
        assert_string_equal(str(j, "path", NULL), "/a?x=1");
        assert_int_equal(num(j, "status", NULL), 200);
        assert_string_equal(str(j, "state", NULL), "complete");
        assert_true(num(j, "duration_ms", NULL) >= 0);
        const char *head = str(j, "request", "head");
        assert_string_equal(head, "GET /a?x=1 HTTP/1.1\r\n"
                                  "Host: ab1234567890.localhost\r\n"
                                  "Authorization: [redacted]\r\n"
                                  "Cookie: [redacted]\r\n\r\n");
        assert_string_equal(str(j, "response", "head"),
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                            "Set-Cookie: [redacted]\r\n\r\n");
        assert_string_equal(str(j, "response", "body"), "hi");
        json_decref(j);
        j = get(in, 2);
        assert_int_equal(num(j, "status", NULL), 201);
        assert_string_equal(str(j, "request", "body"), "hello");
        assert_int_equal(num(j, "request_bytes", NULL), 5);
        assert_non_null(strstr(str(j, "request", "head"),
                               "Proxy-Authorization: [redacted]\r\n"));
        /* chunked: the body as the application sees it */
        assert_string_equal(str(j, "response", "body"), "abcde");
        assert_int_equal(num(j, "response_bytes", NULL), 5);
        /* no secret anywhere in the JSON */
        char *all = json_dumps(j, 0);
        json_t *list = sl_inspect_list_json(in);
        char *all2 = json_dumps(list, 0);
        assert_null(strstr(all, "hunter"));
        assert_null(strstr(all, "Zm9v"));
        assert_null(strstr(all2, "s3cret"));
        free(all);
        free(all2);
        json_decref(list);
        json_decref(j);
        sl_inspect_conn_free(ic);
        sl_inspect_free(in);
    }
}

static void bodies_capped(void **state)
{
    (void)state;
    struct sl_inspect *in = sl_inspect_new(0);
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    size_t big = SL_INSPECT_BODY_CAP + 4000;
    char head[128];
    snprintf(head, sizeof(head),
             "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", big);
    feed(ic, SL_INSPECT_REQUEST, head, 1000);
    char *body = malloc(big + 1);
    memset(body, 'x', big);
    body[big] = '\0';
    feed(ic, SL_INSPECT_REQUEST, body, 7000);
    /* binary response body: base64 */
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
                               "\xff\x00\xfe";
    sl_inspect_conn_feed(ic, SL_INSPECT_RESPONSE, resp, sizeof(resp) - 1);
    json_t *j = get(in, 1);
    assert_int_equal(num(j, "request", "body_length"), (json_int_t)big);
    assert_int_equal(num(j, "request", "body_kept"), SL_INSPECT_BODY_CAP);
    assert_true(json_is_true(
        json_object_get(json_object_get(j, "request"), "body_truncated")));
    assert_true(json_is_false(json_object_get(j, "replayable")));
    assert_string_equal(str(j, "response", "body_encoding"), "base64");
    assert_string_equal(str(j, "response", "body"), "/wD+");
    json_decref(j);
    struct sl_dynbuf out = {0};
    char why[160];
    assert_int_equal(sl_inspect_replay_bytes(in, 1, &out, why, sizeof(why)),
                     SL_EDENIED);
    assert_non_null(strstr(why, "body"));
    assert_int_equal(sl_inspect_replay_bytes(in, 9, &out, why, sizeof(why)),
                     SL_ENOTFOUND);
    sl_dynbuf_free(&out);
    free(body);
    sl_inspect_conn_free(ic);
    sl_inspect_free(in);
}

static void head_interim_and_eof(void **state)
{
    (void)state;
    struct sl_inspect *in = sl_inspect_new(0);
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    /* HEAD: a length but no body follows; the next answer parses */
    feed(ic, SL_INSPECT_REQUEST, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 3);
    feed(ic, SL_INSPECT_RESPONSE,
         "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 5);
    feed(ic, SL_INSPECT_REQUEST,
         "POST /c HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
         "Content-Length: 2\r\n\r\n",
         9);
    /* 100 Continue, then the body, then the final answer */
    feed(ic, SL_INSPECT_RESPONSE, "HTTP/1.1 100 Continue\r\n\r\n", 4);
    feed(ic, SL_INSPECT_REQUEST, "ok", 1);
    feed(ic, SL_INSPECT_RESPONSE, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
         6);
    /* an HTTP/1.0 answer that ends with the connection */
    feed(ic, SL_INSPECT_REQUEST, "GET /old HTTP/1.0\r\n\r\n", 64);
    feed(ic, SL_INSPECT_RESPONSE, "HTTP/1.0 200 OK\r\n\r\nuntil the end", 64);
    json_t *j = get(in, 1);
    assert_string_equal(str(j, "state", NULL), "complete");
    assert_int_equal(num(j, "response_bytes", NULL), 0);
    json_decref(j);
    j = get(in, 2);
    assert_int_equal(num(j, "status", NULL), 204);
    assert_string_equal(str(j, "state", NULL), "complete");
    assert_string_equal(str(j, "response", "head"),
                        "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
    json_decref(j);
    j = get(in, 3);
    assert_string_equal(str(j, "state", NULL), "pending");
    json_decref(j);
    sl_inspect_conn_free(ic);
    j = get(in, 3);
    assert_string_equal(str(j, "state", NULL), "complete");
    assert_string_equal(str(j, "response", "body"), "until the end");
    json_decref(j);
    sl_inspect_free(in);
}

static void upgrade_garbage_abort(void **state)
{
    (void)state;
    struct sl_inspect *in = sl_inspect_new(0);
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    feed(ic, SL_INSPECT_REQUEST,
         "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n\r\n\x81\x05hello",
         16);
    feed(ic, SL_INSPECT_RESPONSE,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n\r\n\x81\x02hi",
         16);
    /* frames after the upgrade are not HTTP and not recorded */
    feed(ic, SL_INSPECT_REQUEST, "GET /not-http HTTP/1.1\r\n\r\n", 64);
    assert_int_equal(sl_inspect_count(in), 1);
    json_t *j = get(in, 1);
    assert_int_equal(num(j, "status", NULL), 101);
    assert_true(json_is_false(json_object_get(j, "replayable")));
    json_decref(j);
    sl_inspect_conn_free(ic);

    /* not HTTP at all (a TLS record): nothing recorded, no harm */
    ic = sl_inspect_conn_new(in, 0);
    sl_inspect_conn_feed(ic, SL_INSPECT_REQUEST, "\x16\x03\x01\x02\x00", 5);
    sl_inspect_conn_feed(ic, SL_INSPECT_RESPONSE, "\x16\x03\x03", 3);
    assert_int_equal(sl_inspect_count(in), 1);
    sl_inspect_conn_free(ic);

    /* a request cut off: aborted; the response that never came */
    ic = sl_inspect_conn_new(in, 0);
    feed(ic, SL_INSPECT_REQUEST, "GET /cut HTTP/1.1\r\nHost: h\r\n\r\n", 64);
    sl_inspect_conn_free(ic);
    j = get(in, 2);
    assert_string_equal(str(j, "state", NULL), "aborted");
    assert_true(json_is_null(json_object_get(j, "response")));
    json_decref(j);
    sl_inspect_free(in);
}

static void ring_and_pipeline_bounds(void **state)
{
    (void)state;
    struct sl_inspect *in = sl_inspect_new(3);
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    /* more pipelined requests than followed: recording stops, the
     * exchanges kept stay consistent, the oldest leave the ring even
     * while their connection still holds them */
    for (int i = 0; i < SL_INSPECT_PENDING_MAX + 4; i++) {
        char req[64];
        snprintf(req, sizeof(req), "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
        feed(ic, SL_INSPECT_REQUEST, req, 64);
    }
    assert_int_equal(sl_inspect_count(in), 3);
    assert_int_equal(sl_inspect_last_id(in), SL_INSPECT_PENDING_MAX);
    assert_null(sl_inspect_get_json(in, 1));
    feed(ic, SL_INSPECT_RESPONSE,
         "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 64);
    json_t *list = sl_inspect_list_json(in);
    assert_int_equal(json_array_size(list), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(list, 0), "id")),
        SL_INSPECT_PENDING_MAX - 2);
    json_decref(list);
    sl_inspect_conn_free(ic);
    sl_inspect_free(in);
}

static void replay_bytes(void **state)
{
    (void)state;
    struct sl_inspect *in = sl_inspect_new(0);
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    feed(ic, SL_INSPECT_REQUEST,
         "POST /form?a=b HTTP/1.1\r\nHost: ab1234567890.localhost:8080\r\n"
         "Authorization: Bearer nope\r\nCookie: c=d\r\n"
         "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
         "X-Forwarded-For: 10.0.0.1\r\n\r\n4\r\nname\r\n0\r\n\r\n",
         11);
    feed(ic, SL_INSPECT_RESPONSE,
         "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 64);
    struct sl_dynbuf out = {0};
    char why[160];
    assert_int_equal(sl_inspect_replay_bytes(in, 1, &out, why, sizeof(why)), 0);
    assert_string_equal(out.data,
                        "POST /form?a=b HTTP/1.1\r\n"
                        "Host: ab1234567890.localhost:8080\r\n"
                        "X-Forwarded-For: 10.0.0.1\r\n"
                        "Content-Length: 4\r\nConnection: close\r\n\r\n"
                        "name");
    sl_dynbuf_free(&out);
    sl_inspect_conn_free(ic);

    /* a replay's exchange is marked so */
    ic = sl_inspect_conn_new(in, 1);
    feed(ic, SL_INSPECT_REQUEST, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 64);
    assert_int_equal(sl_inspect_conn_first_id(ic), 2);
    sl_inspect_conn_free(ic);
    json_t *j = get(in, 2);
    assert_true(json_is_true(json_object_get(j, "replay")));
    json_decref(j);
    sl_inspect_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keep_alive_in_pieces),
        cmocka_unit_test(bodies_capped),
        cmocka_unit_test(head_interim_and_eof),
        cmocka_unit_test(upgrade_garbage_abort),
        cmocka_unit_test(ring_and_pipeline_bounds),
        cmocka_unit_test(replay_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
