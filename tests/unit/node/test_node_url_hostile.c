/* Hostile URLs for the node's parser (POST /api/bridge/, --upstream,
 * --hub): every one is refused with words that say why, and none writes
 * outside struct sl_node_url (run under AddressSanitizer: an overflow of
 * host[] is a failure even when the call "succeeds"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "node/node_url.h"

/* The parser writes into a struct in the middle of guard bytes that must
 * stay untouched (for builds without ASan). */
struct guarded {
    unsigned char before[64];
    struct sl_node_url u;
    unsigned char after[512];
};

static void check_guards(const struct guarded *g)
{
    for (size_t i = 0; i < sizeof(g->before); i++)
        assert_int_equal(g->before[i], 0xA5);
    for (size_t i = 0; i < sizeof(g->after); i++)
        assert_int_equal(g->after[i], 0xA5);
}

static int parse(int hub, const char *text, struct guarded *g, char *err,
                 size_t errcap)
{
    memset(g, 0xA5, sizeof(*g));
    int rc = hub ? sl_node_url_parse_hub(text, &g->u, err, errcap)
                 : sl_node_url_parse_upstream(text, &g->u, err, errcap);
    check_guards(g);
    return rc;
}

static void expect_refused(const char *text, const char *needle)
{
    struct guarded g;
    char err[512] = "";
    for (int hub = 0; hub < 2; hub++) {
        err[0] = '\0';
        int rc = parse(hub, text, &g, err, sizeof(err));
        if (rc != SL_EPARSE)
            fail_msg("'%s' (%s): accepted as host '%s'", text,
                     hub ? "hub" : "upstream", g.u.host);
        if (strstr(err, needle) == NULL)
            fail_msg("'%s': error '%s' lacks '%s'", text, err, needle);
    }
}

/* The reviewed attack: a bracket of 253 '0'/':' characters and a zone of
 * 15 -- each under its own limit, together past host[256]. */
static void long_literal_with_zone(void **state)
{
    (void)state;
    char url[SL_NODE_URL_MAX];
    char lit[254];
    for (size_t i = 0; i < 253; i++)
        lit[i] = i % 5 == 4 ? ':' : '0';
    lit[253] = '\0';
    snprintf(url, sizeof(url), "http://[%s%%25abcdefghijklmno]:80", lit);
    expect_refused(url, "IPv6 literal");
    snprintf(url, sizeof(url), "http://[%s%%abcdefghijklmno]:80", lit);
    expect_refused(url, "IPv6 literal");
    /* Every length of literal, with and without a zone: never a write past
     * the struct, and a literal longer than any IPv6 address is refused
     * as such. */
    for (size_t n = 1; n <= 270; n++) {
        char body[300];
        for (size_t i = 0; i < n && i < sizeof(body) - 1; i++)
            body[i] = i % 5 == 4 ? ':' : '0';
        body[n < sizeof(body) ? n : sizeof(body) - 1] = '\0';
        const char *zones[] = {"", "%25abcdefghijklmno", "%eth0"};
        for (size_t z = 0; z < 3; z++) {
            struct guarded g;
            char err[512];
            int k = snprintf(url, sizeof(url), "http://[%s%s]:80", body,
                             zones[z]);
            if (k < 0 || (size_t)k >= sizeof(url))
                continue;
            int rc = parse(0, url, &g, err, sizeof(err));
            if (n > 45)
                assert_int_equal(rc, SL_EPARSE);
            if (rc == 0)
                assert_true(strlen(g.u.host) < sizeof(g.u.host));
        }
    }
}

static void literal_must_be_ipv6(void **state)
{
    (void)state;
    /* Characters the old per-byte check allowed, but no address. */
    expect_refused("http://[1.2.3.4]:80", "bad IPv6 literal");
    expect_refused("http://[:::]:80", "bad IPv6 literal");
    expect_refused("http://[1:2:3:4:5:6:7:8:9]:80", "bad IPv6 literal");
    expect_refused("http://[::1::2]:80", "bad IPv6 literal");
    expect_refused("http://[12345::1]:80", "bad IPv6 literal");
    expect_refused("http://[::ffff:1.2.3]:80", "bad IPv6 literal");
    expect_refused("http://[::1.2.3.4.5]:80", "bad IPv6 literal");
    expect_refused("http://[fe80::1%25eth0%25x]:80", "bad zone");
    expect_refused("http://[localhost]:80", "bad IPv6 literal");
    expect_refused("http://[]:80", "missing host");
    expect_refused("http://[%25eth0]:80", "missing host");
    /* what is left is still taken */
    struct guarded g;
    char err[256];
    assert_int_equal(parse(0, "http://[::ffff:127.0.0.1]:8", &g, err,
                           sizeof(err)), 0);
    assert_string_equal(g.u.host, "::ffff:127.0.0.1");
    assert_int_equal(parse(0, "http://[fe80::a:b:c:d%25abcdefghijklmno]:8",
                           &g, err, sizeof(err)), 0);
    assert_string_equal(g.u.host, "fe80::a:b:c:d%abcdefghijklmno");
    assert_int_equal(parse(1, "http://[2001:db8::1]", &g, err, sizeof(err)),
                     0);
    assert_string_equal(g.u.host, "2001:db8::1");
    assert_int_equal(g.u.port, 80);
}

/* Names at and past the limit, and a URL at SL_NODE_URL_MAX. */
static void long_names(void **state)
{
    (void)state;
    char url[SL_NODE_URL_MAX + 8], name[260];
    struct guarded g;
    char err[512];
    memset(name, 'a', sizeof(name));
    name[253] = '\0';
    snprintf(url, sizeof(url), "http://%s:1", name);
    assert_int_equal(parse(0, url, &g, err, sizeof(err)), 0);
    assert_int_equal(strlen(g.u.host), 253);
    name[253] = 'a';
    name[254] = '\0';
    snprintf(url, sizeof(url), "http://%s:1", name);
    expect_refused(url, "host is too long");
    memset(url, 'a', sizeof(url));
    memcpy(url, "http://", 7);
    url[SL_NODE_URL_MAX] = '\0';
    expect_refused(url, "too long");
}

/* A short error buffer is never overrun either. */
static void short_error_buffer(void **state)
{
    (void)state;
    struct guarded g;
    char err[8];
    memset(err, 'x', sizeof(err));
    assert_int_equal(parse(0, "http://[1.2.3.4]:80", &g, err, 4),
                     SL_EPARSE);
    assert_int_equal(err[3], '\0');
    assert_int_equal(err[4], 'x');
    /* the reason fits a modest buffer however long the URL: the URL is
     * quoted cut short */
    char url[SL_NODE_URL_MAX], e2[128];
    memset(url, 0, sizeof(url));
    memcpy(url, "http://[", 8);
    memset(url + 8, '0', 250);
    memcpy(url + 258, "]:80", 4);
    assert_int_equal(parse(0, url, &g, e2, sizeof(e2)), SL_EPARSE);
    assert_non_null(strstr(e2, "': bad IPv6 literal"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(long_literal_with_zone),
        cmocka_unit_test(literal_must_be_ipv6),
        cmocka_unit_test(long_names),
        cmocka_unit_test(short_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
