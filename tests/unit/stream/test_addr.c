/* net/addr: formatting, parsing and the private-address rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "net/addr.h"

static struct sockaddr_storage ip(const char *s, uint16_t port)
{
    struct sockaddr_storage ss;
    assert_int_equal(sl_addr_parse_ip(s, port, &ss), 0);
    return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_format(void **state)
{
    (void)state;
    char buf[SL_ADDR_STRLEN];
    struct sockaddr_storage a = ip("127.0.0.1", 8080);
    assert_int_equal(sl_addr_format(SA(a), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "127.0.0.1:8080");
    a = ip("::1", 22);
    assert_int_equal(sl_addr_format(SA(a), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[::1]:22");
    assert_int_equal(sl_addr_format_ip(SA(a), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "::1");
    a = ip("[2001:db8::5]", 0);
    assert_int_equal(sl_addr_format(SA(a), buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[2001:db8::5]:0");
    /* too small: error and an empty string, never a cut address */
    char small[6];
    assert_int_equal(sl_addr_format(SA(a), small, sizeof(small)), SL_ETOOBIG);
    assert_string_equal(small, "");
    struct sockaddr_storage un = {0};
    un.ss_family = AF_UNIX;
    assert_int_equal(sl_addr_format(SA(un), buf, sizeof(buf)), UV_EINVAL);
    assert_int_equal(sl_addr_format(NULL, buf, sizeof(buf)), UV_EINVAL);
    assert_string_equal(sl_addr_str(NULL, buf), "?");
}

static void test_parse(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(sl_addr_parse("10.0.0.1:53", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(sl_addr_port(SA(ss)), 53);
    assert_int_equal(sl_addr_parse("[fe80::1]:65535", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(sl_addr_port(SA(ss)), 65535);

    static const char *const bad[] = {
        "", "10.0.0.1", "10.0.0.1:", ":80", "10.0.0.1:65536", "10.0.0.1:-1",
        "10.0.0.1:8x", "::1:80", "[::1:80", "[10.0.0.1]:80", "host:80",
        "10.0.0.256:1", "[::1]:+5", "10.0.0.1: 80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_addr_parse(bad[i], &ss), SL_EPARSE);
        assert_int_equal(ss.ss_family, 0);
    }
    assert_int_equal(sl_addr_parse(NULL, &ss), SL_EPARSE);
    assert_int_equal(sl_addr_parse_ip("localhost", 1, &ss), SL_EPARSE);
    assert_int_equal(sl_addr_parse_ip("[]", 1, &ss), SL_EPARSE);
}

static void test_join(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(sl_addr_join_host_port("localhost", 22, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "localhost:22");
    assert_int_equal(sl_addr_join_host_port("::1", 22, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[::1]:22");
    assert_int_equal(sl_addr_join_host_port("[::1]", 22, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[::1]:22");
    assert_int_equal(sl_addr_join_host_port("example.com", 1, buf, 5),
                     SL_ETOOBIG);
}

static void test_equal_hash_unmap(void **state)
{
    (void)state;
    struct sockaddr_storage a = ip("192.0.2.1", 1000);
    struct sockaddr_storage b = ip("192.0.2.1", 1000);
    struct sockaddr_storage c = ip("192.0.2.1", 1001);
    struct sockaddr_storage m = ip("::ffff:192.0.2.1", 1000);
    assert_true(sl_addr_equal(SA(a), SA(b)));
    assert_false(sl_addr_equal(SA(a), SA(c)));
    assert_false(sl_addr_equal(SA(a), SA(m)));
    assert_false(sl_addr_equal(SA(a), NULL));
    assert_true(sl_addr_hash(SA(a)) == sl_addr_hash(SA(b)));
    assert_true(sl_addr_hash(SA(a)) != sl_addr_hash(SA(c)));
    struct sockaddr_storage u;
    assert_int_equal(sl_addr_unmap(SA(m), &u), 1);
    assert_true(sl_addr_equal(SA(u), SA(a)));
    assert_int_equal(sl_addr_unmap(SA(a), &u), 0);
    assert_int_equal(sl_addr_len(SA(a)), sizeof(struct sockaddr_in));
    assert_int_equal(sl_addr_len(SA(m)), sizeof(struct sockaddr_in6));
    sl_addr_set_port((struct sockaddr *)&m, 7);
    assert_int_equal(sl_addr_port(SA(m)), 7);
}

static void test_private(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "127.0.0.1", "127.255.255.254", "10.0.0.0", "10.255.255.255",
        "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.168.255.255",
        "169.254.1.1", "::1", "fc00::1", "fdff:ffff::1", "fe80::1",
        "febf::1", "::ffff:10.1.2.3", "::ffff:127.0.0.1",
    };
    static const char *const no[] = {
        "0.0.0.0", "8.8.8.8", "172.15.255.255", "172.32.0.0", "192.167.1.1",
        "192.169.0.1", "169.253.1.1", "11.0.0.1", "126.255.255.255", "::",
        "2001:db8::1", "fec0::1", "fe00::1", "::ffff:8.8.8.8", "::2",
        "::127.0.0.1",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        struct sockaddr_storage a = ip(yes[i], 1);
        if (!sl_addr_is_private(SA(a)))
            fail_msg("%s should be private", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        struct sockaddr_storage a = ip(no[i], 1);
        if (sl_addr_is_private(SA(a)))
            fail_msg("%s should not be private", no[i]);
    }
    assert_false(sl_addr_is_private(NULL));
}

static void test_loopback(void **state)
{
    (void)state;
    struct sockaddr_storage a = ip("127.1.2.3", 1);
    assert_true(sl_addr_is_loopback(SA(a)));
    a = ip("::1", 1);
    assert_true(sl_addr_is_loopback(SA(a)));
    a = ip("::ffff:127.0.0.1", 1);
    assert_true(sl_addr_is_loopback(SA(a)));
    a = ip("10.0.0.1", 1);
    assert_false(sl_addr_is_loopback(SA(a)));
    a = ip("fe80::1", 1);
    assert_false(sl_addr_is_loopback(SA(a)));
    assert_false(sl_addr_is_loopback(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_equal_hash_unmap),
        cmocka_unit_test(test_private),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
