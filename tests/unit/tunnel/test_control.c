#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "tunnel/control.h"

#define FP "123e4567-e89b-42d3-a456-426614174000"

static int parse(const char *s, struct sl_ctl_msg *m)
{
    return sl_ctl_parse(s, strlen(s), m);
}

/* Encodes m, parses the result back and checks it is the same message. */
static void round_trip(const struct sl_ctl_msg *m)
{
    char *json = NULL;
    size_t len = 0;
    struct sl_ctl_msg back;
    assert_int_equal(sl_ctl_encode(m, &json, &len), 0);
    assert_non_null(json);
    assert_int_equal(strlen(json), len);
    assert_int_equal(sl_ctl_parse(json, len, &back), 0);
    assert_memory_equal(m, &back, sizeof(back));
    free(json);
}

static void test_hello(void **state)
{
    struct sl_ctl_msg m;
    assert_int_equal(parse("{\"type\":\"hello\",\"version\":1,"
                           "\"capabilities\":[\"http\",\"udp\",\"gopher\"],"
                           "\"pool\":4,\"future\":{\"x\":[1]}}", &m), 0);
    assert_int_equal(m.type, SL_CTL_HELLO);
    assert_int_equal(m.hello.version, 1);
    assert_int_equal(m.hello.capabilities, SL_CAP_HTTP | SL_CAP_UDP);
    assert_int_equal(m.hello.pool, 4);
    assert_int_equal(parse("{\"type\":\"hello\",\"version\":2}", &m), 0);
    assert_int_equal(m.hello.version, 2);
    assert_int_equal(m.hello.pool, 0);
    assert_int_equal(m.hello.capabilities, 0);

    sl_ctl_init(&m, SL_CTL_HELLO);
    m.hello.capabilities = SL_CAP_HTTP | SL_CAP_TCP;
    m.hello.pool = 16;
    round_trip(&m);
    char *json;
    size_t len;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_string_equal(json, "{\"type\":\"hello\",\"version\":1,"
                              "\"capabilities\":[\"http\",\"tcp\"],"
                              "\"pool\":16}");
    free(json);
}

static void test_welcome(void **state)
{
    struct sl_ctl_msg m;
    assert_int_equal(
        parse("{\"type\":\"welcome\",\"identity\":\"ab1234567890\","
              "\"url\":\"http://ab1234567890.localhost:8080/\","
              "\"username\":\"Abc123\",\"password\":\"p\","
              "\"limits\":{\"bridges\":1,\"traffic\":10240000},"
              "\"ping_interval\":15,\"pairing_window\":8}", &m), 0);
    assert_int_equal(m.type, SL_CTL_WELCOME);
    assert_string_equal(m.welcome.identity, "ab1234567890");
    assert_string_equal(m.welcome.url, "http://ab1234567890.localhost:8080/");
    assert_string_equal(m.welcome.username, "Abc123");
    assert_string_equal(m.welcome.password, "p");
    assert_int_equal(m.welcome.limit_bridges, 1);
    assert_int_equal(m.welcome.limit_traffic, 10240000);
    /* Reconnect: no credentials, defaults for the rest. */
    assert_int_equal(parse("{\"url\":\"u\",\"type\":\"welcome\","
                           "\"identity\":\"zz0000000000\"}", &m), 0);
    assert_string_equal(m.welcome.username, "");
    assert_string_equal(m.welcome.password, "");
    assert_int_equal(m.welcome.ping_interval, 15);
    assert_int_equal(m.welcome.pairing_window, 8);
    assert_int_equal(m.welcome.limit_traffic, 0);
    /* A URL that would forge a line of the node's output, or hide in
     * blanks, is refused. */
    static const char *const bad_urls[] = {
        "http://x/\\r\\nbridge zz0000000000 http://evil/ -> x",
        "http://x/\\n", "http://x /", "http://x/\\u007f", "http://\\u00e9/",
    };
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        char doc[256];
        snprintf(doc, sizeof(doc), "{\"type\":\"welcome\",\"identity\":"
                 "\"zz0000000000\",\"url\":\"%s\"}", bad_urls[i]);
        assert_int_equal(parse(doc, &m), SL_EPARSE);
    }

    sl_ctl_init(&m, SL_CTL_WELCOME);
    memcpy(m.welcome.identity, "ab1234567890", 13);
    snprintf(m.welcome.url, sizeof(m.welcome.url), "http://x/");
    m.welcome.limit_traffic = 1ull << 40;
    m.welcome.limit_bridges = 3;
    round_trip(&m);
    snprintf(m.welcome.username, sizeof(m.welcome.username), "Abc123");
    snprintf(m.welcome.password, sizeof(m.welcome.password), "x\"y\\z");
    round_trip(&m);
    /* Over INT64_MAX is clamped, not wrapped into a negative number. */
    m.welcome.limit_traffic = UINT64_MAX;
    char *json;
    size_t len;
    struct sl_ctl_msg back;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_int_equal(sl_ctl_parse(json, len, &back), 0);
    assert_int_equal(back.welcome.limit_traffic, INT64_MAX);
    free(json);
    memcpy(m.welcome.identity, "AB1234567890", 13);
    assert_int_equal(sl_ctl_encode(&m, &json, &len), UV_EINVAL);
    assert_null(json);
    /* Not UTF-8: refused as the caller's mistake, not reported as ENOMEM. */
    memcpy(m.welcome.identity, "ab1234567890", 13);
    snprintf(m.welcome.url, sizeof(m.welcome.url), "http://\xff/");
    assert_int_equal(sl_ctl_encode(&m, &json, &len), UV_EINVAL);
    assert_null(json);
}

/* Protocol v2: a bridge that speaks mux says so in hello; the hub says
 * how many mux connections to keep in welcome; an older peer ignores
 * both (an unknown capability, an unknown field). */
static void test_mux_negotiation(void **state)
{
    (void)state;
    struct sl_ctl_msg m;
    assert_int_equal(parse("{\"type\":\"hello\",\"version\":1,"
                           "\"capabilities\":[\"http\",\"mux\"]}", &m), 0);
    assert_int_equal(m.hello.capabilities, SL_CAP_HTTP | SL_CAP_MUX);
    sl_ctl_init(&m, SL_CTL_HELLO);
    m.hello.capabilities = SL_CAP_TCP | SL_CAP_MUX;
    round_trip(&m);
    char *json;
    size_t len;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_non_null(strstr(json, "[\"tcp\",\"mux\"]"));
    free(json);

#define WELCOME_MUX "{\"type\":\"welcome\",\"identity\":\"ab1234567890\"," \
                    "\"url\":\"http://x/\",\"mux\":%d}"
    char doc[160];
    snprintf(doc, sizeof(doc), WELCOME_MUX, 2);
    assert_int_equal(parse(doc, &m), 0);
    assert_int_equal(m.welcome.mux, 2);
    snprintf(doc, sizeof(doc), WELCOME_MUX, SL_CTL_MUX_MAX + 1);
    assert_int_equal(parse(doc, &m), SL_EPARSE);
    snprintf(doc, sizeof(doc), WELCOME_MUX, -1);
    assert_int_equal(parse(doc, &m), SL_EPARSE);
    /* Absent: no mux, and a welcome without it says nothing of it. */
    assert_int_equal(parse("{\"type\":\"welcome\",\"identity\":"
                           "\"ab1234567890\",\"url\":\"u\"}", &m), 0);
    assert_int_equal(m.welcome.mux, 0);
    sl_ctl_init(&m, SL_CTL_WELCOME);
    memcpy(m.welcome.identity, "ab1234567890", 13);
    snprintf(m.welcome.url, sizeof(m.welcome.url), "http://x/");
    assert_int_equal(sl_ctl_encode(&m, &json, &len), 0);
    assert_null(strstr(json, "mux"));
    free(json);
    m.welcome.mux = 4;
    round_trip(&m);
    m.welcome.mux = 5;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), UV_EINVAL);
}

static void test_open_stats_error(void **state)
{
    struct sl_ctl_msg m;
    assert_int_equal(parse("{\"type\":\"open\",\"fingerprint\":\"" FP "\","
                           "\"kind\":\"http\",\"target\":\"\"}", &m), 0);
    assert_int_equal(m.type, SL_CTL_OPEN);
    assert_string_equal(m.open.fingerprint, FP);
    assert_string_equal(m.open.kind, "http");
    assert_string_equal(m.open.target, "");
    round_trip(&m);

    assert_int_equal(parse("{\"type\":\"stats\",\"traffic\":{\"down\":5,"
                           "\"up\":9223372036854775807},\"limit\":7}", &m), 0);
    assert_int_equal(m.type, SL_CTL_STATS);
    assert_int_equal(m.stats.down, 5);
    assert_int_equal(m.stats.up, INT64_MAX);
    assert_int_equal(m.stats.limit, 7);
    round_trip(&m);

    assert_int_equal(parse("{\"type\":\"error\",\"message\":"
                           "\"Traffic limit exceeded\",\"code\":429}", &m), 0);
    assert_int_equal(m.type, SL_CTL_ERROR);
    assert_string_equal(m.error.message, "Traffic limit exceeded");
    assert_int_equal(m.error.code, 429);
    round_trip(&m);
}

static void test_unknown_type(void **state)
{
    struct sl_ctl_msg m;
    assert_int_equal(parse("{\"type\":\"teleport\",\"x\":1}", &m), 0);
    assert_int_equal(m.type, SL_CTL_UNKNOWN);
    assert_int_equal(parse("{\"type\":\"HELLO\",\"version\":1}", &m), 0);
    assert_int_equal(m.type, SL_CTL_UNKNOWN);
    char *json = (char *)1;
    size_t len;
    assert_int_equal(sl_ctl_encode(&m, &json, &len), UV_EINVAL);
    assert_null(json);
    assert_string_equal(sl_ctl_type_name(SL_CTL_WELCOME), "welcome");
    assert_string_equal(sl_ctl_type_name(SL_CTL_UNKNOWN), "unknown");
    assert_string_equal(sl_ctl_type_name((enum sl_ctl_type)99), "unknown");
}

static void test_hostile(void **state)
{
    static const char *const bad[] = {
        "",
        "null",
        "[]",
        "\"hello\"",
        "{}",
        "{\"type\":1}",
        "{\"type\":null}",
        "{\"type\":\"hello\"}",                          /* no version */
        "{\"type\":\"hello\",\"version\":0}",
        "{\"type\":\"hello\",\"version\":-1}",
        "{\"type\":\"hello\",\"version\":1.0}",
        "{\"type\":\"hello\",\"version\":\"1\"}",
        "{\"type\":\"hello\",\"version\":1,\"pool\":17}",
        "{\"type\":\"hello\",\"version\":1,\"pool\":-1}",
        "{\"type\":\"hello\",\"version\":1,\"capabilities\":\"http\"}",
        "{\"type\":\"hello\",\"version\":1,\"capabilities\":[1]}",
        "{\"type\":\"hello\",\"version\":1}x",
        "{\"type\":\"hello\",\"version\":1",
        "{\"type\":\"hello\",\"type\":\"open\",\"version\":1}",
        "{\"type\":\"welcome\",\"url\":\"u\"}",
        "{\"type\":\"welcome\",\"identity\":\"ab123\",\"url\":\"u\"}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\"}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\\u0000\","
        "\"url\":\"u\"}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\",\"url\":\"u\","
        "\"limits\":[]}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\",\"url\":\"u\","
        "\"limits\":{\"traffic\":-5}}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\",\"url\":\"u\","
        "\"limits\":{\"bridges\":4294967296}}",
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\",\"url\":\"u\","
        "\"ping_interval\":0}",
        "{\"type\":\"open\",\"kind\":\"http\"}",
        "{\"type\":\"open\",\"fingerprint\":\"nope\",\"kind\":\"http\"}",
        "{\"type\":\"open\",\"fingerprint\":\"" FP "\"}",
        "{\"type\":\"open\",\"fingerprint\":\"" FP "\",\"kind\":\"\"}",
        "{\"type\":\"open\",\"fingerprint\":\"" FP "\","
        "\"kind\":\"a-kind-name-too-long\"}",
        "{\"type\":\"stats\"}",
        "{\"type\":\"stats\",\"traffic\":{\"down\":1}}",
        "{\"type\":\"stats\",\"traffic\":{\"down\":1,\"up\":1e3}}",
        "{\"type\":\"stats\",\"traffic\":{\"down\":1,"
        "\"up\":99999999999999999999}}",
        "{\"type\":\"error\"}",
        "{\"type\":\"error\",\"message\":\"x\",\"code\":1000}",
        "{\"type\":\"error\",\"message\":7}",
    };
    struct sl_ctl_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &m);
        if (rc != SL_EPARSE)
            fail_msg("%s gave %d", bad[i], rc);
        assert_int_equal(m.type, SL_CTL_UNKNOWN);
    }
    /* Embedded NUL inside the buffer. */
    static const char nul[] = "{\"type\":\"hello\",\0\"version\":1}";
    assert_int_equal(sl_ctl_parse(nul, sizeof(nul) - 1, &m), SL_EPARSE);
    assert_int_equal(sl_ctl_parse(NULL, 0, &m), SL_EPARSE);
}

static void test_limits(void **state)
{
    struct sl_ctl_msg m;
    size_t big = SL_CTL_MAX_MSG + 1;
    char *buf = malloc(big + 1);
    assert_non_null(buf);
    /* A valid message padded with spaces past 64 KiB is refused by size. */
    memset(buf, ' ', big);
    memcpy(buf, "{\"type\":\"error\",\"message\":\"x\"}", 30);
    buf[big] = '\0';
    assert_int_equal(sl_ctl_parse(buf, big, &m), SL_ETOOBIG);
    assert_int_equal(sl_ctl_parse(buf, SL_CTL_MAX_MSG, &m), 0);
    /* Deep nesting in an ignored field must not blow the stack. */
    size_t depth = 20000;
    char *deep = malloc(depth * 2 + 64);
    assert_non_null(deep);
    size_t o = 0;
    o += (size_t)snprintf(deep, 64, "{\"type\":\"x\",\"a\":");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    int rc = sl_ctl_parse(deep, o, &m);
    assert_true(rc == 0 || rc == SL_EPARSE);
    free(deep);
    /* Strings longer than their buffer are refused, not truncated. */
    char msg[SL_CTL_MESSAGE_MAX + 64];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"error\",\"message\":\"");
    memset(msg + n, 'x', SL_CTL_MESSAGE_MAX);
    snprintf(msg + n + SL_CTL_MESSAGE_MAX, 4, "\"}");
    assert_int_equal(parse(msg, &m), SL_EPARSE);
    memset(msg + n, 'x', SL_CTL_MESSAGE_MAX - 1);
    snprintf(msg + n + SL_CTL_MESSAGE_MAX - 1, 4, "\"}");
    assert_int_equal(parse(msg, &m), 0);
    assert_int_equal(strlen(m.error.message), SL_CTL_MESSAGE_MAX - 1);
    free(buf);
}

/* Allocation-failure injection: jansson allocates through these hooks;
 * the Nth allocation and every later one fail. Each failing run must end
 * in a clean error (ASan reports any leak on the error paths). */
static int alloc_budget = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

static void test_alloc_failures(void **state)
{
    static const char *const msgs[] = {
        "{\"type\":\"welcome\",\"identity\":\"ab1234567890\",\"url\":\"u\","
        "\"username\":\"Abc123\",\"password\":\"p\","
        "\"limits\":{\"bridges\":1,\"traffic\":5}}",
        "{\"type\":\"hello\",\"version\":1,\"capabilities\":[\"http\",\"tcp\","
        "\"udp\"],\"pool\":2}",
        "{\"type\":\"stats\",\"traffic\":{\"down\":5,\"up\":6},\"limit\":7}",
        "{\"type\":\"open\",\"fingerprint\":\"" FP "\",\"kind\":\"http\"}",
        "{\"type\":\"error\",\"message\":\"x\",\"code\":502}",
    };
    json_set_alloc_funcs(failing_malloc, free);
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        struct sl_ctl_msg m;
        alloc_budget = -1;
        assert_int_equal(parse(msgs[i], &m), 0);
        int ok_parse = 0, ok_encode = 0;
        for (int budget = 0; budget < 200; budget++) {
            struct sl_ctl_msg p;
            alloc_budget = budget;
            int rc = parse(msgs[i], &p);
            assert_true(rc == 0 || rc == UV_ENOMEM || rc == SL_EPARSE);
            ok_parse |= rc == 0;
            char *json = NULL;
            size_t len;
            alloc_budget = budget;
            rc = sl_ctl_encode(&m, &json, &len);
            assert_true(rc == 0 || rc == UV_ENOMEM || rc == UV_EINVAL);
            if (rc == 0) {
                ok_encode = 1;
                free(json);
            } else {
                assert_null(json);
            }
        }
        assert_true(ok_parse && ok_encode);
    }
    alloc_budget = -1;
    json_set_alloc_funcs(malloc, free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_welcome),
        cmocka_unit_test(test_mux_negotiation),
        cmocka_unit_test(test_open_stats_error),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
