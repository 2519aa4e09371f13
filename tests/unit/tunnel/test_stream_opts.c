#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"
#include "tunnel/control.h"
#include "tunnel/stream_opts.h"

static void parse_all_fields(void **state)
{
    (void)state;
    struct sl_stream_opts o;
    char err[200] = "";
    assert_int_equal(
        sl_stream_opts_parse(
            "{\"acl\": {\"allow\": [\"cidr:10.0.0.0/8\", \"ip:::1\"],"
            " \"deny\": [\"ip:10.0.0.9\"]}, \"proxy_protocol\": \"v2\","
            " \"max_connections\": 5, \"max_sessions\": 7, \"other\": 1}",
            &o, err, sizeof(err)),
        0);
    assert_int_equal(o.nallow, 2);
    assert_int_equal(o.ndeny, 1);
    assert_string_equal(o.allow[1], "ip:::1");
    assert_int_equal(o.proxy_protocol, 2);
    assert_int_equal(o.max_connections, 5);
    assert_int_equal(o.max_sessions, 7);
    assert_false(sl_stream_opts_empty(&o));
    assert_int_equal(sl_stream_opts_parse("", &o, err, sizeof(err)), 0);
    assert_true(sl_stream_opts_empty(&o));
}

static void expect_bad(const char *text, const char *needle)
{
    struct sl_stream_opts o;
    char err[200] = "";
    assert_int_equal(sl_stream_opts_parse(text, &o, err, sizeof(err)),
                     SL_EPARSE);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", text, err, needle);
}

static void refuses_bad_values(void **state)
{
    (void)state;
    expect_bad("[1]", "object");
    expect_bad("{\"acl\": []}", "acl");
    expect_bad("{\"acl\": {\"allow\": [\"10.0.0.1\"]}}", "bad rule");
    expect_bad("{\"acl\": {\"deny\": [7]}}", "strings");
    expect_bad("{\"proxy_protocol\": \"v3\"}", "v1, v2 or off");
    expect_bad("{\"max_connections\": -1}", "max_connections");
    expect_bad("{\"max_sessions\": 4294967296}", "max_sessions");
    expect_bad("not json", "JSON");
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof(big), "{\"acl\": {\"allow\": [");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"ip:10.0.0.1\"",
                              i ? ", " : "");
    snprintf(big + n, sizeof(big) - n, "]}}");
    expect_bad(big, "at most 32");
}

static void merge_prefers_operator(void **state)
{
    (void)state;
    struct sl_stream_opts bridge, op;
    assert_int_equal(sl_stream_opts_parse(
                         "{\"acl\": {\"allow\": [\"ip:10.0.0.1\"]},"
                         " \"proxy_protocol\": \"v1\","
                         " \"max_connections\": 10}",
                         &bridge, NULL, 0),
                     0);
    assert_int_equal(sl_stream_opts_parse(
                         "{\"acl\": {\"deny\": [\"ip:10.0.0.2\"]},"
                         " \"max_connections\": 20, \"max_sessions\": 3}",
                         &op, NULL, 0),
                     0);
    sl_stream_opts_merge(&bridge, &op);
    assert_int_equal(bridge.nallow, 0); /* the operator's ACL wins whole */
    assert_int_equal(bridge.ndeny, 1);
    assert_int_equal(bridge.proxy_protocol, 1);
    assert_int_equal(bridge.max_connections, 10); /* the smaller cap */
    assert_int_equal(bridge.max_sessions, 3);
}

static void travels_in_hello_and_welcome(void **state)
{
    (void)state;
    struct sl_ctl_msg m, back;
    sl_ctl_init(&m, SL_CTL_HELLO);
    m.hello.capabilities = SL_CAP_TCP;
    snprintf(m.hello.streams.deny[0], SL_STREAM_OPTS_RULE_MAX, "ip:1.2.3.4");
    m.hello.streams.ndeny = 1;
    m.hello.streams.proxy_protocol = 2;
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_int_equal(sl_ctl_parse(json, len, &back), 0);
    free(json);
    assert_int_equal(back.hello.capabilities, SL_CAP_TCP);
    assert_int_equal(back.hello.streams.ndeny, 1);
    assert_string_equal(back.hello.streams.deny[0], "ip:1.2.3.4");
    assert_int_equal(back.hello.streams.proxy_protocol, 2);
    /* A bad rule makes the whole hello malformed. */
    const char *bad = "{\"type\":\"hello\",\"version\":1,\"streams\":"
                      "{\"acl\":{\"deny\":[\"nonsense\"]}}}";
    assert_int_equal(sl_ctl_parse(bad, strlen(bad), &back), SL_EPARSE);

    sl_ctl_init(&m, SL_CTL_WELCOME);
    snprintf(m.welcome.identity, sizeof(m.welcome.identity), "ab1234567890");
    snprintf(m.welcome.url, sizeof(m.welcome.url), "tcp://localhost:20001");
    m.welcome.tcp_port = 20001;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_non_null(strstr(json, "\"tcp_port\":20001"));
    assert_null(strstr(json, "udp_port"));
    assert_int_equal(sl_ctl_parse(json, len, &back), 0);
    free(json);
    assert_int_equal(back.welcome.tcp_port, 20001);
    assert_int_equal(back.welcome.udp_port, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_all_fields),
        cmocka_unit_test(refuses_bad_values),
        cmocka_unit_test(merge_prefers_operator),
        cmocka_unit_test(travels_in_hello_and_welcome),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
