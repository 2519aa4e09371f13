/* HTTP head finding, parsing and formatting (pure functions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "core/error.h"
#include "net/http_head.h"

static void test_head_end(void **state)
{
    (void)state;
    const char *a = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    assert_int_equal(sl_http_head_end(a, strlen(a), 0, 1024),
                     (ssize_t)(strlen(a) - 4));
    /* Fed byte by byte, the end is found at the same place. */
    ssize_t got = 0;
    for (size_t n = 1; n <= strlen(a) && got == 0; n++)
        got = sl_http_head_end(a, n, n - 1, 1024);
    assert_int_equal(got, (ssize_t)(strlen(a) - 4));
    assert_int_equal(sl_http_head_end("GET / HTTP/1.1\r\n", 16, 0, 1024), 0);
    assert_int_equal(sl_http_head_end("GET / HTTP/1.1\r\n", 16, 0, 16),
                     SL_ETOOBIG);
    assert_int_equal(sl_http_head_end("\r\n\r\n", 4, 0, 1024), 0);
    assert_int_equal(sl_http_head_end("GET / HTTP/1.0\n\n", 16, 0, 1024), 16);
    /* The end lies past the cap. */
    assert_int_equal(sl_http_head_end(a, strlen(a), 0, 20), SL_ETOOBIG);
}

static void test_parse_request(void **state)
{
    (void)state;
    const char *a = "POST /p?q=1 HTTP/1.1\r\nHost:  ab1234567890.localhost:8080 "
                    "\r\nContent-Length: 5\r\nConnection: keep-alive, Upgrade"
                    "\r\nUpgrade: websocket\r\n\r\n";
    struct sl_http_head h;
    assert_int_equal(sl_http_head_parse(&h, 1, a, strlen(a)), 0);
    assert_int_equal(h.method, HTTP_POST);
    assert_int_equal(h.url_len, 6);
    assert_memory_equal(h.url, "/p?q=1", 6);
    assert_int_equal(h.nhdr, 4);
    char host[64];
    assert_int_equal(sl_http_head_get(&h, "host", host, sizeof(host)), 27);
    assert_string_equal(host, "ab1234567890.localhost:8080");
    assert_int_equal(sl_http_head_get(&h, "host", host, 5), SL_ETOOBIG);
    assert_int_equal(sl_http_head_get(&h, "nope", host, 5), SL_ENOTFOUND);
    assert_true(h.has_content_length);
    assert_int_equal(h.content_length, 5);
    assert_true(h.upgrade);
    assert_true(sl_http_header_has_token(sl_http_head_find(&h, "connection"),
                                         "upgrade"));
    assert_false(sl_http_header_has_token(sl_http_head_find(&h, "connection"),
                                          "close"));
    assert_int_equal(h.len, strlen(a));
}

static void test_parse_response(void **state)
{
    (void)state;
    const char *a = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n\r\n";
    struct sl_http_head h;
    assert_int_equal(sl_http_head_parse(&h, 0, a, strlen(a)), 0);
    assert_int_equal(h.status, 101);
    assert_true(h.upgrade);
    const char *b = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(sl_http_head_parse(&h, 0, b, strlen(b)), 0);
    assert_true(h.chunked);
    assert_true(h.keep_alive);
    assert_false(h.has_content_length);
}

static void test_parse_bad(void **state)
{
    (void)state;
    struct sl_http_head h;
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_http_head_parse(&h, 1, bad[i], strlen(bad[i])),
                         SL_EPARSE);
    /* Too many headers. */
    char big[8192];
    size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < SL_HTTP_MAX_HEADERS + 1; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-%d: y\r\n", i);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    assert_int_equal(sl_http_head_parse(&h, 1, big, n), SL_EPARSE);
}

static void test_format(void **state)
{
    (void)state;
    char buf[256];
    int n = sl_http_format_response(buf, sizeof(buf), 404, NULL,
                                    "Proxy not available", NULL, 0);
    assert_true(n > 0);
    assert_string_equal(buf, "HTTP/1.1 404 Not Found\r\nContent-Type: "
                             "text/plain\r\nContent-Length: 19\r\n"
                             "Connection: close\r\n\r\nProxy not available");
    assert_int_equal(sl_http_format_response(buf, 10, 404, NULL, "x", NULL, 0),
                     SL_ETOOBIG);
}

/* The admin API formats its heads with sl_http_format_head: same shape as a
 * full response, with the extra header lines before Connection. */
static void test_format_head(void **state)
{
    (void)state;
    char buf[256];
    int n = sl_http_format_head(buf, sizeof(buf), 202, "application/json", 2,
                                "Cache-Control: no-store\r\n", 1);
    assert_true(n > 0);
    assert_string_equal(buf, "HTTP/1.1 202 Accepted\r\nContent-Type: "
                             "application/json\r\nContent-Length: 2\r\n"
                             "Cache-Control: no-store\r\n"
                             "Connection: keep-alive\r\n\r\n");
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(sl_http_reason(414), "URI Too Long");
    assert_int_equal(sl_http_format_head(buf, 20, 200, NULL, 0, NULL, 0),
                     SL_ETOOBIG);
    assert_string_equal(buf, "");
    /* A body that does not fit after a head that does. */
    n = sl_http_format_head(buf, sizeof(buf), 200, NULL, 0, NULL, 0);
    assert_int_equal(sl_http_format_response(buf, (size_t)n + 3, 200, NULL,
                                              "abc", NULL, 0),
                     SL_ETOOBIG);
    assert_int_equal(sl_http_format_response(buf, (size_t)n + 4, 200, NULL,
                                              "abc", NULL, 0),
                     n + 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_end),
        cmocka_unit_test(test_parse_request),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
