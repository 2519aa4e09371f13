/* The request head the upstream gets: X-Forwarded-For appended to or
 * added, the user's X-Forwarded-Proto/-Host replaced by the hub's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../src/hub/hub_user.c"

static char out[4096];

static const char *rewrite(const char *head)
{
    struct sl_hub hub;
    struct hub_conn u;
    struct sl_http_head h;
    memset(&hub, 0, sizeof(hub));
    memset(&u, 0, sizeof(u));
    hub.s_scheme = (char *)"http";
    u.hub = &hub;
    snprintf(u.peer_ip, sizeof(u.peer_ip), "10.0.0.7");
    u.head = (char *)head;
    u.head_len = strlen(head);
    assert_int_equal(sl_http_head_parse(&h, 1, head, strlen(head)), 0);
    const struct sl_http_header *host = sl_http_head_find(&h, "host");
    assert_non_null(host);
    int n = build_head(&u, &h, host, out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    return out;
}

static void test_adds_forwarded(void **state)
{
    (void)state;
    assert_string_equal(
        rewrite("GET /a HTTP/1.1\r\nHost: ab1234567890.localhost:8080\r\n"
                "Accept: */*\r\n\r\n"),
        "GET /a HTTP/1.1\r\nHost: ab1234567890.localhost:8080\r\n"
        "Accept: */*\r\nX-Forwarded-For: 10.0.0.7\r\n"
        "X-Forwarded-Proto: http\r\n"
        "X-Forwarded-Host: ab1234567890.localhost:8080\r\n\r\n");
}

static void test_appends_and_replaces(void **state)
{
    (void)state;
    assert_string_equal(
        rewrite("POST / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n"
                "Host: h\r\nX-Forwarded-For: 1.2.3.4 \r\n"
                "x-forwarded-host: evil\r\nContent-Length: 0\r\n\r\n"),
        "POST / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7 "
        "\r\nContent-Length: 0\r\nX-Forwarded-Proto: http\r\n"
        "X-Forwarded-Host: h\r\n\r\n");
}

static void test_bare_lf_head(void **state)
{
    (void)state;
    assert_string_equal(rewrite("GET / HTTP/1.0\nHost: h\n\n"),
                        "GET / HTTP/1.0\nHost: h\nX-Forwarded-For: 10.0.0.7"
                        "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h"
                        "\r\n\r\n");
}

static void test_too_big(void **state)
{
    (void)state;
    struct sl_hub hub;
    struct hub_conn u;
    struct sl_http_head h;
    const char *head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    memset(&hub, 0, sizeof(hub));
    memset(&u, 0, sizeof(u));
    hub.s_scheme = (char *)"http";
    u.hub = &hub;
    u.head = (char *)head;
    assert_int_equal(sl_http_head_parse(&h, 1, head, strlen(head)), 0);
    assert_int_equal(build_head(&u, &h, sl_http_head_find(&h, "host"), out,
                                40),
                     SL_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adds_forwarded),
        cmocka_unit_test(test_appends_and_replaces),
        cmocka_unit_test(test_bare_lf_head),
        cmocka_unit_test(test_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
