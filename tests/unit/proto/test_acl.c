#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "core/error.h"
#include "proto/acl.h"

/* Builds a sockaddr from text ("1.2.3.4" or "::1"); fails the test when the
 * text is not an address, so a typo in a test cannot pass silently. */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss,
                                    const char *text)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(1234);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(1234);
    }
    return (const struct sockaddr *)ss;
}

static int allows(const struct sl_acl *acl, const char *text)
{
    struct sockaddr_storage ss;
    return sl_acl_allows(acl, sa_of(&ss, text));
}

static void add_ok(struct sl_acl *acl, int allow, const char *rule)
{
    char err[256] = "";
    int rc = sl_acl_add(acl, allow, rule, 0, err, sizeof(err));
    if (rc != 0)
        fail_msg("rule \"%s\" refused: %s", rule, err);
}

static void test_valid_rules(void **state)
{
    static const char *const rules[] = {
        "ip:1.2.3.4",
        "ip:0.0.0.0",
        "ip:255.255.255.255",
        "ip:::1",
        "ip:::",
        "ip:2001:db8::1",
        "ip:::ffff:1.2.3.4",
        "cidr:10.0.0.0/8",
        "cidr:0.0.0.0/0",
        "cidr:1.2.3.4/32",
        "cidr:10.1.2.3/8",
        "cidr:::/0",
        "cidr:fd00::/8",
        "cidr:2001:db8::1/128",
        "cidr:fe80::/10",
        "cidr:::ffff:0.0.0.0/96",
    };
    struct sl_acl *acl = sl_acl_new();
    assert_non_null(acl);
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        add_ok(acl, (int)(i % 2), rules[i]);
    assert_int_equal(sl_acl_count(acl), sizeof(rules) / sizeof(rules[0]));
    sl_acl_free(acl);
    (void)state;
}

static void test_invalid_rules(void **state)
{
    static const char *const rules[] = {
        "",
        "1.2.3.4",
        "10.0.0.0/8",
        "ip:",
        "cidr:",
        "ipv4:1.2.3.4",
        "IP:1.2.3.4",
        "host:1.2.3.4",
        "ip:1.2.3",
        "ip:1.2.3.4.5",
        "ip:256.1.1.1",
        "ip:999.1.1.1",
        "ip:01.2.3.4",
        "ip: 1.2.3.4",
        "ip:1.2.3.4 ",
        "ip:1.2.3.4/32",
        "ip:localhost",
        "ip:[::1]",
        "ip:fe80::1%eth0",
        "ip:::g",
        "ip:1:2:3:4:5:6:7:8:9",
        "cidr:10.0.0.0",
        "cidr:10.0.0.0/",
        "cidr:10.0.0.0/33",
        "cidr:10.0.0.0/-1",
        "cidr:10.0.0.0/+8",
        "cidr:10.0.0.0/8 ",
        "cidr:10.0.0.0/ 8",
        "cidr:10.0.0.0/0008",
        "cidr:::/129",
        "cidr:::/1000",
        "cidr:/8",
        "cidr:10.0.0.0/8/8",
        "cidr:10.0.0.0/x",
        "ip:aaaa:bbbb:cccc:dddd:eeee:ffff:1111:2222:3333:4444:5555",
    };
    struct sl_acl *acl = sl_acl_new();
    char err[256];
    assert_non_null(acl);
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        err[0] = '\0';
        int rc = sl_acl_add(acl, 1, rules[i], 0, err, sizeof(err));
        if (rc != SL_EPARSE)
            fail_msg("rule \"%s\" gave %d, want SL_EPARSE", rules[i], rc);
        if (strstr(err, "ip:ADDR or cidr:ADDR/BITS") == NULL)
            fail_msg("rule \"%s\": message \"%s\" lacks the accepted forms",
                     rules[i], err);
    }
    assert_int_equal(sl_acl_count(acl), 0);
    /* A NULL or tiny error buffer is fine. */
    assert_int_equal(sl_acl_add(acl, 1, "bogus", 0, NULL, 0), SL_EPARSE);
    assert_int_equal(sl_acl_add(acl, 1, "bogus", 0, err, 1), SL_EPARSE);
    assert_int_equal(err[0], '\0');
    sl_acl_free(acl);
    (void)state;
}

static void test_bare_rules(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    char err[256];
    assert_non_null(acl);
    assert_int_equal(sl_acl_add(acl, 1, "10.0.0.0/8", 1, err, sizeof(err)), 0);
    assert_int_equal(sl_acl_add(acl, 1, "::1", 1, err, sizeof(err)), 0);
    assert_int_equal(sl_acl_add(acl, 1, "ip:192.168.1.1", 1, err, sizeof(err)),
                     0);
    assert_int_equal(sl_acl_add(acl, 1, "cidr:fd00::/8", 1, err, sizeof(err)),
                     0);
    assert_int_equal(sl_acl_add(acl, 1, "nope", 1, err, sizeof(err)),
                     SL_EPARSE);
    assert_int_equal(sl_acl_add(acl, 1, "10.0.0.0/33", 1, err, sizeof(err)),
                     SL_EPARSE);
    assert_int_equal(sl_acl_count(acl), 4);
    assert_true(allows(acl, "10.200.0.1"));
    assert_true(allows(acl, "::1"));
    assert_true(allows(acl, "192.168.1.1"));
    assert_true(allows(acl, "fd12::1"));
    assert_false(allows(acl, "192.168.1.2"));
    sl_acl_free(acl);
    (void)state;
}

static void test_empty_and_null(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    struct sockaddr_un sun;
    assert_non_null(acl);
    assert_int_equal(sl_acl_count(acl), 0);
    assert_true(allows(acl, "1.2.3.4"));
    assert_true(allows(acl, "::1"));
    assert_true(sl_acl_allows(acl, NULL));
    assert_true(allows(NULL, "1.2.3.4"));
    assert_int_equal(sl_acl_count(NULL), 0);
    sl_acl_free(acl);
    sl_acl_free(NULL);

    /* A source with no IP address passes deny-only lists, fails allow
     * lists. */
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    acl = sl_acl_new();
    add_ok(acl, 0, "cidr:0.0.0.0/0");
    assert_true(sl_acl_allows(acl, (struct sockaddr *)&sun));
    add_ok(acl, 1, "cidr:::/0");
    assert_false(sl_acl_allows(acl, (struct sockaddr *)&sun));
    assert_false(sl_acl_allows(acl, NULL));
    sl_acl_free(acl);
    (void)state;
}

static void test_v4_match(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    add_ok(acl, 1, "cidr:10.0.0.0/8");
    add_ok(acl, 1, "ip:192.168.1.10");
    add_ok(acl, 1, "cidr:172.16.0.0/12");
    add_ok(acl, 1, "cidr:100.64.0.1/10"); /* host bits set: normalized */
    assert_true(allows(acl, "10.0.0.0"));
    assert_true(allows(acl, "10.255.255.255"));
    assert_false(allows(acl, "11.0.0.0"));
    assert_false(allows(acl, "9.255.255.255"));
    assert_true(allows(acl, "192.168.1.10"));
    assert_false(allows(acl, "192.168.1.11"));
    assert_true(allows(acl, "172.31.255.255"));
    assert_false(allows(acl, "172.32.0.0"));
    assert_true(allows(acl, "100.64.0.0"));
    assert_true(allows(acl, "100.127.255.255"));
    assert_false(allows(acl, "100.128.0.0"));
    /* IPv4 rules never match genuine IPv6 sources. */
    assert_false(allows(acl, "::a00:1"));
    assert_false(allows(acl, "2001:db8::1"));
    sl_acl_free(acl);

    acl = sl_acl_new();
    add_ok(acl, 1, "cidr:0.0.0.0/0");
    assert_true(allows(acl, "1.2.3.4"));
    assert_true(allows(acl, "255.255.255.255"));
    assert_false(allows(acl, "::1"));
    sl_acl_free(acl);
    (void)state;
}

static void test_v6_match(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    add_ok(acl, 1, "cidr:fd00::/8");
    add_ok(acl, 1, "ip:::1");
    add_ok(acl, 1, "cidr:2001:db8:abcd:12ff::/57"); /* normalized to /57 */
    assert_true(allows(acl, "fd00::1"));
    assert_true(allows(acl, "fdff:ffff::1"));
    assert_false(allows(acl, "fc00::1"));
    assert_true(allows(acl, "::1"));
    assert_false(allows(acl, "::2"));
    assert_true(allows(acl, "2001:db8:abcd:1280::"));
    assert_true(allows(acl, "2001:db8:abcd:12ff:ffff::"));
    assert_false(allows(acl, "2001:db8:abcd:1300::"));
    assert_false(allows(acl, "2001:db8:abcd:127f::"));
    assert_false(allows(acl, "127.0.0.1"));
    sl_acl_free(acl);

    /* ::/0 is every IPv6 source but not IPv4 ones, mapped or not. */
    acl = sl_acl_new();
    add_ok(acl, 1, "cidr:::/0");
    assert_true(allows(acl, "2001:db8::1"));
    assert_true(allows(acl, "::"));
    assert_false(allows(acl, "1.2.3.4"));
    assert_false(allows(acl, "::ffff:1.2.3.4"));
    sl_acl_free(acl);
    (void)state;
}

static void test_mapped(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    add_ok(acl, 1, "cidr:10.0.0.0/8");
    assert_true(allows(acl, "::ffff:10.1.2.3"));
    assert_false(allows(acl, "::ffff:11.1.2.3"));
    /* IPv4-compatible (::a.b.c.d) is not mapped. */
    assert_false(allows(acl, "::10.1.2.3"));
    sl_acl_free(acl);

    /* Rules written as mapped addresses match plain IPv4 sources too. */
    acl = sl_acl_new();
    add_ok(acl, 1, "ip:::ffff:192.168.0.1");
    add_ok(acl, 1, "cidr:::ffff:10.0.0.0/104");
    assert_true(allows(acl, "192.168.0.1"));
    assert_true(allows(acl, "::ffff:192.168.0.1"));
    assert_false(allows(acl, "192.168.0.2"));
    assert_true(allows(acl, "10.9.9.9"));
    assert_true(allows(acl, "::ffff:10.9.9.9"));
    assert_false(allows(acl, "11.0.0.1"));
    sl_acl_free(acl);

    acl = sl_acl_new();
    add_ok(acl, 0, "ip:127.0.0.1");
    assert_false(allows(acl, "::ffff:127.0.0.1"));
    assert_true(allows(acl, "::1"));
    sl_acl_free(acl);
    (void)state;
}

static void test_deny_before_allow(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    /* Order of adding does not matter: deny wins. */
    add_ok(acl, 1, "cidr:10.0.0.0/8");
    add_ok(acl, 0, "cidr:10.1.0.0/16");
    add_ok(acl, 1, "ip:10.1.2.3");
    assert_true(allows(acl, "10.2.0.1"));
    assert_false(allows(acl, "10.1.0.1"));
    assert_false(allows(acl, "10.1.2.3"));
    assert_false(allows(acl, "11.0.0.1"));
    sl_acl_free(acl);

    /* Deny only: everything else passes. */
    acl = sl_acl_new();
    add_ok(acl, 0, "ip:1.2.3.4");
    add_ok(acl, 0, "cidr:2001:db8::/32");
    assert_false(allows(acl, "1.2.3.4"));
    assert_false(allows(acl, "::ffff:1.2.3.4"));
    assert_false(allows(acl, "2001:db8::77"));
    assert_true(allows(acl, "1.2.3.5"));
    assert_true(allows(acl, "2001:db9::"));
    sl_acl_free(acl);

    /* Deny all beats allow all. */
    acl = sl_acl_new();
    add_ok(acl, 1, "cidr:0.0.0.0/0");
    add_ok(acl, 0, "cidr:0.0.0.0/0");
    assert_false(allows(acl, "8.8.8.8"));
    sl_acl_free(acl);
    (void)state;
}

static void test_prefix_edges(void **state)
{
    char rule[64], addr[64];
    /* For each prefix length, the first address outside the block fails
     * and the last one inside passes. */
    for (unsigned bits = 1; bits <= 32; bits++) {
        struct sl_acl *acl = sl_acl_new();
        snprintf(rule, sizeof(rule), "cidr:128.0.0.0/%u", bits);
        add_ok(acl, 1, rule);
        uint32_t last = 0x80000000u | (bits == 32 ? 0 : (0xffffffffu >> bits));
        uint32_t out = last + 1;
        snprintf(addr, sizeof(addr), "%u.%u.%u.%u", last >> 24,
                 (last >> 16) & 255, (last >> 8) & 255, last & 255);
        assert_true(allows(acl, addr));
        snprintf(addr, sizeof(addr), "%u.%u.%u.%u", out >> 24,
                 (out >> 16) & 255, (out >> 8) & 255, out & 255);
        assert_false(allows(acl, addr));
        assert_false(allows(acl, "127.255.255.255"));
        sl_acl_free(acl);
    }
    (void)state;
}

static void test_too_many_rules(void **state)
{
    struct sl_acl *acl = sl_acl_new();
    char rule[64], err[256];
    for (unsigned i = 0; i < SL_ACL_MAX_RULES; i++) {
        snprintf(rule, sizeof(rule), "ip:10.%u.%u.1", i >> 8, i & 255);
        assert_int_equal(sl_acl_add(acl, 1, rule, 0, err, sizeof(err)), 0);
    }
    assert_int_equal(sl_acl_add(acl, 1, "ip:1.1.1.1", 0, err, sizeof(err)),
                     SL_EPARSE);
    assert_int_equal(sl_acl_count(acl), SL_ACL_MAX_RULES);
    assert_true(allows(acl, "10.15.255.1"));
    assert_false(allows(acl, "1.1.1.1"));
    sl_acl_free(acl);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_rules),
        cmocka_unit_test(test_invalid_rules),
        cmocka_unit_test(test_bare_rules),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_v4_match),
        cmocka_unit_test(test_v6_match),
        cmocka_unit_test(test_mapped),
        cmocka_unit_test(test_deny_before_allow),
        cmocka_unit_test(test_prefix_edges),
        cmocka_unit_test(test_too_many_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
