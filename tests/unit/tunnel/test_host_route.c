#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "tunnel/host_route.h"

static int route(const char *host, const char *domain, char *id)
{
    return sl_host_route(host, strlen(host), domain, id);
}

static void test_routes(void **state)
{
    static const struct {
        const char *host, *domain;
    } ok[] = {
        {"ab1234567890.localhost", "localhost"},
        {"ab1234567890.localhost:8080", "localhost"},
        {"AB1234567890.LOCALHOST:8080", "localhost"},
        {"ab1234567890.localhost.", "localhost"},
        {"ab1234567890.localhost.:80", "localhost"},
        {"ab1234567890.localhost", "LocalHost."},
        {" ab1234567890.tunnel.example.com\t", "tunnel.example.com"},
        {"ab1234567890.tunnel.example.com:65535", "tunnel.example.com"},
    };
    char id[SL_IDENTITY_LEN + 1];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = route(ok[i].host, ok[i].domain, id);
        if (rc != 0)
            fail_msg("%s under %s gave %d", ok[i].host, ok[i].domain, rc);
        assert_string_equal(id, "ab1234567890");
    }
}

static void test_not_ours(void **state)
{
    static const char *const hosts[] = {
        "",
        "   ",
        "localhost",
        "localhost:8080",
        "LOCALHOST.",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:8080",
        "[ab1234567890.localhost]",
        "::1",
        "ab1234567890.example.com",
        "ab1234567890.localhost.example.com",
        "ab1234567890evillocalhost",
        "ab1234567890-localhost",
        ".localhost",
        ":8080",
        "ab1234567890.local host",
        "ab1234567890.localhost/x",
        "ab1234567890.localhost\r\nX: y",
        "ab1234567890.localhost..",
    };
    char id[SL_IDENTITY_LEN + 1];
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        memset(id, 'x', sizeof(id));
        int rc = route(hosts[i], "localhost", id);
        if (rc != SL_ENOTFOUND)
            fail_msg("\"%s\" gave %d", hosts[i], rc);
        assert_string_equal(id, "");
    }
    assert_int_equal(sl_host_route(NULL, 0, "localhost", id), SL_ENOTFOUND);
}

static void test_bad_label(void **state)
{
    static const char *const hosts[] = {
        "www.localhost",
        "ab123456789.localhost",
        "ab12345678901.localhost",
        "a11234567890.localhost",
        "a.ab1234567890.localhost",
        "ab1234567890.ab1234567890.localhost",
        "ab12345678-0.localhost",
        "ab1234567890.localhost:",
        "ab1234567890.localhost:80a",
        "ab1234567890.localhost:123456",
        "ab1234567890.localhost:8080:1",
        "..localhost",
    };
    char id[SL_IDENTITY_LEN + 1];
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        int rc = route(hosts[i], "localhost", id);
        if (rc != SL_EPARSE)
            fail_msg("\"%s\" gave %d", hosts[i], rc);
        assert_string_equal(id, "");
    }
}

static void test_bad_args(void **state)
{
    char id[SL_IDENTITY_LEN + 1];
    char longdom[300];
    memset(longdom, 'a', sizeof(longdom) - 1);
    longdom[sizeof(longdom) - 1] = '\0';
    assert_int_equal(route("ab1234567890.x", "", id), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", ".", id), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", NULL, id), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", longdom, id), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", "x", NULL), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", "bad domain!", id), UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", "exa_mple..com", id),
                     UV_EINVAL);
    assert_int_equal(route("ab1234567890.x", ".example.com", id), UV_EINVAL);
    char biglabel[80];
    memset(biglabel, 'a', 64);
    memcpy(biglabel + 64, ".com", 5);
    assert_int_equal(route("ab1234567890.x", biglabel, id), UV_EINVAL);
    biglabel[1] = '.'; /* now labels of 1 and 62 */
    assert_int_equal(route("ab1234567890.x", biglabel, id), SL_ENOTFOUND);
    /* A Host longer than any DNS name is not ours. */
    char longhost[600];
    memcpy(longhost, "ab1234567890.", 13);
    memset(longhost + 13, 'b', sizeof(longhost) - 14);
    longhost[sizeof(longhost) - 1] = '\0';
    assert_int_equal(route(longhost, "localhost", id), SL_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_not_ours),
        cmocka_unit_test(test_bad_label),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
