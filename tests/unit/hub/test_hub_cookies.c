/* Cookie isolation: which Set-Cookie Domain attributes the hub removes
 * from a response head, and the head normalised on the way (bare CR,
 * obs-fold), for the identity host ab1234567890.sluice.test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* hub_user.c for host_port_bad; the cookie functions are hub_cookies.c's. */
#include "../../../src/hub/hub_user.c"
#include "hub/hub_cookies.h"

#define HOST "ab1234567890.sluice.test"

static char buf[4096];

static const char *isolate(const char *head)
{
    size_t n = strlen(head);
    assert_true(n < sizeof(buf));
    memcpy(buf, head, n);
    size_t m = sl_cookies_isolate(buf, n, HOST, strlen(HOST));
    assert_true(m <= n);
    buf[m] = '\0';
    return buf;
}

static const char *cookie(const char *value)
{
    static char head[1024];
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nSet-Cookie: %s\r\nX: y\r\n\r\n", value);
    const char *out = isolate(head);
    static char got[1024];
    const char *v = strstr(out, "Set-Cookie: ");
    assert_non_null(v);
    v += 12;
    const char *e = strstr(v, "\r\n");
    assert_non_null(e);
    snprintf(got, sizeof(got), "%.*s", (int)(e - v), v);
    assert_non_null(strstr(out, "\r\nX: y\r\n\r\n"));
    return got;
}

static void test_parent_removed(void **state)
{
    (void)state;
    assert_string_equal(cookie("a=1; Domain=.sluice.test; Path=/"),
                        "a=1; Path=/");
    assert_string_equal(cookie("a=1; Domain=sluice.test"), "a=1");
    assert_string_equal(cookie("a=1;domain = SLUICE.Test.;Secure"),
                        "a=1;Secure");
    assert_string_equal(cookie("a=1; Domain=test; HttpOnly"),
                        "a=1; HttpOnly");
    /* Each one, wherever it stands. */
    assert_string_equal(cookie("a=1; Domain=test; Domain=.sluice.test"),
                        "a=1");
}

static void test_own_and_unrelated_stay(void **state)
{
    (void)state;
    assert_string_equal(cookie("a=1; Domain=" HOST), "a=1; Domain=" HOST);
    assert_string_equal(cookie("a=1; Domain=." HOST "; Path=/"),
                        "a=1; Domain=." HOST "; Path=/");
    assert_string_equal(cookie("a=1; Domain=other.example"),
                        "a=1; Domain=other.example");
    /* A sibling or a child of the host: browsers refuse it as it is. */
    assert_string_equal(cookie("a=1; Domain=cd1234567890.sluice.test"),
                        "a=1; Domain=cd1234567890.sluice.test");
    /* Not an attribute named Domain. */
    assert_string_equal(cookie("domain=.sluice.test; Path=/"),
                        "domain=.sluice.test; Path=/");
    assert_string_equal(cookie("a=1; Domains=sluice.test"),
                        "a=1; Domains=sluice.test");
    /* A suffix of the host that is not at a dot is no parent. */
    assert_string_equal(cookie("a=1; Domain=b1234567890.sluice.test"),
                        "a=1; Domain=b1234567890.sluice.test");
}

static void test_unreadable_removed(void **state)
{
    (void)state;
    assert_string_equal(cookie("a=1; Domain=sluice%2Etest"), "a=1");
    assert_string_equal(cookie("a=1; Domain=\xef\xbc\x8esluice.test"),
                        "a=1");
    assert_string_equal(cookie("a=1; Domain=\"sluice.test\""), "a=1");
    assert_string_equal(cookie("a=1; Domain="), "a=1");
    assert_string_equal(cookie("a=1; Domain"), "a=1");
}

static void test_fold_and_bare_cr(void **state)
{
    (void)state;
    assert_string_equal(
        isolate("HTTP/1.1 200 OK\r\nSet-Cookie: f=1;\r\n Domain=.sluice.test"
                "\r\nContent-Length: 0\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nSet-Cookie: f=1\r\nContent-Length: 0\r\n\r\n");
    assert_string_equal(
        isolate("HTTP/1.1 200 OK\nSet-Cookie: f=1;\n\tDomain=sluice.test\n"
                "\n"),
        "HTTP/1.1 200 OK\nSet-Cookie: f=1\n\n");
    assert_string_equal(
        isolate("HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: b=1; Domain=test\r\n"
                "\r\n"),
        "HTTP/1.1 200 OK\r\nX: a Set-Cookie: b=1; Domain=test\r\n\r\n");
}

static void test_other_headers_untouched(void **state)
{
    (void)state;
    const char *h = "HTTP/1.1 200 OK\r\nSet-Cookie2: a=1; Domain=test\r\n"
                    "X-Set-Cookie: a=1; Domain=test\r\nSet-Cookie : z=1; "
                    "Domain=test\r\n\r\n";
    assert_string_equal(isolate(h),
                        "HTTP/1.1 200 OK\r\nSet-Cookie2: a=1; Domain=test\r\n"
                        "X-Set-Cookie: a=1; Domain=test\r\nSet-Cookie : z=1"
                        "\r\n\r\n");
}

static void test_host_port(void **state)
{
    (void)state;
    assert_false(host_port_bad("h", 1));
    assert_false(host_port_bad("h:1", 3));
    assert_false(host_port_bad(" h:65535 ", 9));
    assert_false(host_port_bad("[::1]:99999999", 14));
    assert_true(host_port_bad("h:", 2));
    assert_true(host_port_bad("h:0", 3));
    assert_true(host_port_bad("h:00000", 7));
    assert_true(host_port_bad("h:65536", 7));
    assert_true(host_port_bad("h:99999999", 10));
    assert_true(host_port_bad("h:8o", 4));
    assert_true(host_port_bad("h:-1", 4));
}

static void test_isolation_default(void **state)
{
    (void)state;
    const char *on[] = {"sluice.test", "example.com", "localhost.example",
                        "xlocalhost"};
    const char *off[] = {"localhost", "LOCALHOST.", "a.localhost"};
    for (size_t i = 0; i < 4; i++)
        assert_true(sl_cookies_isolation(SL_HUB_COOKIES_AUTO, on[i]));
    for (size_t i = 0; i < 3; i++) {
        assert_false(sl_cookies_isolation(SL_HUB_COOKIES_AUTO, off[i]));
        assert_true(sl_cookies_isolation(SL_HUB_COOKIES_ON, off[i]));
    }
    assert_false(sl_cookies_isolation(SL_HUB_COOKIES_OFF, "sluice.test"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parent_removed),
        cmocka_unit_test(test_own_and_unrelated_stay),
        cmocka_unit_test(test_unreadable_removed),
        cmocka_unit_test(test_fold_and_bare_cr),
        cmocka_unit_test(test_other_headers_untouched),
        cmocka_unit_test(test_host_port),
        cmocka_unit_test(test_isolation_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
