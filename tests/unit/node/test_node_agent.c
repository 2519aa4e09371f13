/* The agent port's pieces that need no socket (issue 12): the target
 * policy and the literal path of the resolver, the rate limit of the
 * handshake-failure log, the ALPN choice. The file is included to reach
 * its static functions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../src/node/node_agent.c"

static struct sl_node_agent *agent_new(uv_loop_t *loop)
{
    struct sl_node_agent *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->loop = loop;
    return a;
}

static void agent_del(struct sl_node_agent *a)
{
    sl_acl_free(a->allow);
    free(a);
}

static int literal(struct sl_node_agent *a, const char *host,
                   struct sl_agent_dial *d)
{
    memset(d, 0, sizeof(*d));
    d->agent = a;
    assert_int_equal(sl_agent_dial_resolve(d, host, 80, SOCK_STREAM), 0);
    return d->status;
}

static void test_policy(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sl_node_agent *a = agent_new(&loop);
    struct sl_agent_dial d;
    static const char *const private_ones[] = {
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
        "169.254.1.1", "::1", "fd00::1", "fe80::1", "::ffff:10.0.0.1"};
    for (size_t i = 0; i < sizeof(private_ones) / sizeof(*private_ones);
         i++) {
        assert_int_equal(literal(a, private_ones[i], &d), SL_AGENT_OK);
        assert_int_equal(d.n, 1);
    }
    static const char *const public_ones[] = {"8.8.8.8", "198.51.100.7",
                                              "2001:db8::1", "0.0.0.0",
                                              "::"};
    for (size_t i = 0; i < sizeof(public_ones) / sizeof(*public_ones); i++) {
        assert_int_equal(literal(a, public_ones[i], &d), SL_AGENT_REFUSED);
        assert_int_equal(d.n, 0);
    }
    /* --agent-allow adds networks */
    a->allow = sl_acl_new();
    assert_int_equal(sl_acl_add(a->allow, 1, "cidr:198.51.100.0/24", 0,
                                NULL, 0),
                     0);
    assert_int_equal(literal(a, "198.51.100.7", &d), SL_AGENT_OK);
    assert_int_equal(literal(a, "198.51.101.7", &d), SL_AGENT_REFUSED);
    /* --allow-public-upstream lifts the rule */
    a->allow_public = 1;
    assert_int_equal(literal(a, "8.8.8.8", &d), SL_AGENT_OK);
    /* a mapped address is kept as the IPv4 one it is */
    assert_int_equal(literal(a, "::ffff:8.8.8.8", &d), SL_AGENT_OK);
    assert_int_equal(d.addr[0].ss_family, AF_INET);
    agent_del(a);
    uv_loop_close(&loop);
}

static const struct sockaddr *ip(struct sockaddr_storage *ss, const char *s,
                                 uint16_t port)
{
    assert_int_equal(sl_addr_parse_ip(s, port, ss), 0);
    return (const struct sockaddr *)ss;
}

static void test_failure_log_rate(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sl_node_agent *a = agent_new(&loop);
    struct sockaddr_storage ss;
    uint64_t missed = 7;
    /* once per source a minute, whatever the port */
    assert_true(sl_agent_fail_should_log(a, ip(&ss, "10.0.0.9", 1000),
                                         &missed));
    assert_int_equal(missed, 0);
    assert_false(sl_agent_fail_should_log(a, ip(&ss, "10.0.0.9", 1001),
                                          &missed));
    assert_false(sl_agent_fail_should_log(a, ip(&ss, "10.0.0.9", 1002),
                                          &missed));
    assert_true(sl_agent_fail_should_log(a, ip(&ss, "10.0.0.10", 1),
                                         &missed));
    /* a minute later: logged again, saying how many were not */
    assert_true(uv_now(&loop) > FAIL_LOG_MS);
    for (size_t i = 0; i < FAIL_SLOTS; i++)
        if (a->fails[i].missed == 2) /* 10.0.0.9's */
            a->fails[i].logged_ms = uv_now(&loop) - FAIL_LOG_MS;
    assert_true(sl_agent_fail_should_log(a, ip(&ss, "10.0.0.9", 1003),
                                         &missed));
    assert_int_equal(missed, 2);
    /* a flood of sources takes slots over, bounded */
    for (unsigned i = 0; i < 3 * FAIL_SLOTS; i++) {
        char s[32];
        snprintf(s, sizeof(s), "10.1.%u.%u", i / 250, i % 250 + 1);
        assert_true(sl_agent_fail_should_log(a, ip(&ss, s, 1), &missed));
    }
    agent_del(a);
    uv_loop_close(&loop);
}

static const char *alpn_of(const char *offer)
{
    unsigned char wire[64];
    size_t n = strlen(offer);
    wire[0] = (unsigned char)n;
    memcpy(wire + 1, offer, n);
    const unsigned char *out = NULL;
    unsigned char outlen = 0;
    static char got[32];
    if (on_alpn(NULL, &out, &outlen, wire, (unsigned)n + 1, NULL) !=
        SSL_TLSEXT_ERR_OK)
        return NULL;
    memcpy(got, out, outlen);
    got[outlen] = '\0';
    return got;
}

static void test_alpn(void **state)
{
    (void)state;
    assert_string_equal(alpn_of("sluice-stream/1"), "sluice-stream/1");
    assert_string_equal(alpn_of("http/1.1"), "http/1.1");
    assert_null(alpn_of("h2")); /* not ours: served as http/1.1 */
    /* both offered: the stream wins, whatever the client's order */
    static const unsigned char both[] = {
        8, 'h', 't', 't', 'p', '/', '1', '.', '1', 15, 's', 'l', 'u', 'i',
        'c', 'e', '-', 's', 't', 'r', 'e', 'a', 'm', '/', '1'};
    const unsigned char *out = NULL;
    unsigned char outlen = 0;
    assert_int_equal(on_alpn(NULL, &out, &outlen, both, sizeof(both), NULL),
                     SSL_TLSEXT_ERR_OK);
    assert_int_equal(outlen, 15);
    assert_memory_equal(out, "sluice-stream/1", 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_failure_log_rate),
        cmocka_unit_test(test_alpn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
