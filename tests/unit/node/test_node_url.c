#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "node/node_url.h"

static void upstream_ok(void **state)
{
    char buf[128];
    (void)state;
    struct sl_node_url u;
    char err[256];
    assert_int_equal(sl_node_url_parse_upstream("http://127.0.0.1:3000", &u,
                                                err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 3000);
    assert_int_equal(u.tls, 0);

    assert_int_equal(sl_node_url_parse_upstream("HTTP://LocalHost:1/", &u,
                                                err, sizeof(err)), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 1);
    assert_int_equal(sl_node_url_parse_upstream("http://[::FFFF:7f00:1]:2",
                                                &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::ffff:7f00:1");
    /* link-local with its interface (RFC 6874's %25, or a bare %): the
     * zone keeps its case, the Host header leaves it out */
    assert_int_equal(sl_node_url_parse_upstream("http://[FE80::1%25Eth0]:80",
                                                &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "fe80::1%Eth0");
    assert_int_equal(sl_node_url_format(&u, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "http://[fe80::1%25Eth0]:80");
    assert_int_equal(sl_node_url_host_header(&u, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[fe80::1]:80");
    assert_int_equal(sl_node_url_parse_upstream("http://[fe80::1%lo]:80",
                                                &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "fe80::1%lo");
    assert_int_equal(sl_node_url_parse_upstream("http://127.0.0.1:7", &u,
                                                err, sizeof(err)), 0);
    assert_int_equal(sl_node_url_format(&u, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "http://127.0.0.1:7");

    assert_int_equal(sl_node_url_parse_upstream("http://[::1]:65535", &u,
                                                err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 65535);
    assert_int_equal(sl_node_url_format(&u, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "http://[::1]:65535");
    assert_int_equal(sl_node_url_host_header(&u, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[::1]:65535");
}

static void expect_bad(const char *text, const char *needle)
{
    struct sl_node_url u;
    char err[256] = "";
    assert_int_equal(sl_node_url_parse_upstream(text, &u, err, sizeof(err)),
                     SL_EPARSE);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", text, err, needle);
}

static void upstream_bad(void **state)
{
    (void)state;
    expect_bad("", "empty");
    expect_bad("127.0.0.1:3000", "udp://host:port");
    expect_bad("https://127.0.0.1:3000", "udp://host:port");
    expect_bad("sctp://127.0.0.1:3000", "udp://host:port");
    expect_bad("http://127.0.0.1", "explicit port");
    expect_bad("http://127.0.0.1:", "port must be");
    expect_bad("http://127.0.0.1:0", "port must be");
    expect_bad("http://127.0.0.1:65536", "port must be");
    expect_bad("http://127.0.0.1:-1", "port must be");
    expect_bad("http://127.0.0.1:3000/app", "path");
    expect_bad("http://127.0.0.1:3000//", "path");
    expect_bad("http://127.0.0.1:3000?x=1", "query");
    expect_bad("http://user@127.0.0.1:3000", "user info");
    expect_bad("http://:3000", "missing host");
    expect_bad("http://[::1:3000", "unterminated");
    expect_bad("http://a b:3000", "bad character");
    expect_bad("http://h:3000x", "unexpected");
    expect_bad("http://h:000003000", "port must be");
    expect_bad("http://[fe80::1%]:80", "bad zone");
    expect_bad("http://[fe80::1%25]:80", "bad zone");
    expect_bad("http://[fe80::1%e th]:80", "bad zone");
    expect_bad("http://[fe80::1%0123456789abcdef]:80", "bad zone");
    expect_bad("http://[fe80::g%eth0]:80", "bad IPv6");
}

static void hub_urls(void **state)
{
    (void)state;
    struct sl_node_url u;
    char err[256];
    assert_int_equal(sl_node_url_parse_hub("http://hub.example", &u, err,
                                           sizeof(err)), 0);
    assert_int_equal(u.port, 80);
    assert_int_equal(sl_node_url_parse_hub("http://127.0.0.1:8080/", &u, err,
                                           sizeof(err)), 0);
    assert_int_equal(u.port, 8080);
    assert_int_equal(sl_node_url_parse_hub("https://hub.example", &u, err,
                                           sizeof(err)), 0);
    assert_int_equal(u.port, 443);
    assert_int_equal(u.tls, 1);
    char out[SL_NODE_URL_MAX];
    assert_int_equal(sl_node_url_format(&u, out, sizeof(out)), 0);
    assert_string_equal(out, "https://hub.example:443");
    assert_int_equal(sl_node_url_parse_hub("wss://[::1]:8443", &u, err,
                                           sizeof(err)), 0);
    assert_int_equal(u.port, 8443);
    assert_int_equal(u.tls, 1);
    assert_int_equal(sl_node_url_parse_hub("ws://hub.example", &u, err,
                                           sizeof(err)), 0);
    assert_int_equal(u.port, 80);
    assert_int_equal(u.tls, 0);
    /* Upstreams: tls:// is passed through, https:// is not a scheme. */
    assert_int_equal(sl_node_url_parse_upstream("tls://127.0.0.1:8443", &u,
                                                err, sizeof(err)), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(sl_node_url_format(&u, out, sizeof(out)), 0);
    assert_string_equal(out, "tls://127.0.0.1:8443");
    assert_int_equal(sl_node_url_parse_hub("ftp://x:1", &u, err, sizeof(err)),
                     SL_EPARSE);
    /* NULL err is allowed */
    assert_int_equal(sl_node_url_parse_hub("x", &u, NULL, 0), SL_EPARSE);
}

/* Several hubs sharing one store: a comma-separated list. */
static void hub_lists(void **state)
{
    (void)state;
    struct sl_node_url u[SL_NODE_HUBS_MAX];
    size_t n = 99;
    char err[256], out[SL_NODE_URL_MAX];
    assert_int_equal(sl_node_url_parse_hubs("http://127.0.0.2:8080,"
                                            "HTTPS://hub.example,ws://[::1]",
                                            u, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(u[1].host, "hub.example");
    assert_int_equal(u[1].tls, 1);
    assert_int_equal(sl_node_url_format_hubs(u, n, out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.2:8080,https://hub.example:443,"
                             "http://[::1]:80");
    /* One URL is a list of one, formatted as sl_node_url_format does. */
    assert_int_equal(sl_node_url_parse_hubs("http://h", u, &n, err,
                                            sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sl_node_url_format_hubs(u, n, out, sizeof(out)), 0);
    assert_string_equal(out, "http://h:80");
    /* The same hub twice, an empty item, a bad one, too many. */
    assert_int_equal(sl_node_url_parse_hubs("http://h:80,http://H", u, &n,
                                            err, sizeof(err)), SL_EPARSE);
    assert_non_null(strstr(err, "listed twice"));
    assert_int_equal(sl_node_url_parse_hubs("http://h,", u, &n, err,
                                            sizeof(err)), SL_EPARSE);
    assert_int_equal(sl_node_url_parse_hubs("http://h,ftp://g", u, &n, NULL,
                                            0), SL_EPARSE);
    assert_int_equal(sl_node_url_parse_hubs("http://a,http://b,http://c,"
                                            "http://d,http://e,http://f,"
                                            "http://g,http://h,http://i", u,
                                            &n, err, sizeof(err)),
                     SL_EPARSE);
    assert_non_null(strstr(err, "at most 8"));
    /* Too long to format back: refused, not cut. */
    assert_int_equal(sl_node_url_parse_hubs("http://a,http://b", u, &n, err,
                                            sizeof(err)), 0);
    assert_int_equal(sl_node_url_format_hubs(u, n, out, 20), SL_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(upstream_ok),
        cmocka_unit_test(upstream_bad),
        cmocka_unit_test(hub_urls),
        cmocka_unit_test(hub_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
