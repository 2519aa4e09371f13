/* The upgrade requests a bridge sends (node_conn.c's static helpers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../src/node/node_conn.c"

static void percent_encoding(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(pct_encode("aZ09-._~", out, sizeof(out)), 0);
    assert_string_equal(out, "aZ09-._~");
    assert_int_equal(pct_encode("a b&c=d/\xc3\xa9", out, sizeof(out)), 0);
    assert_string_equal(out, "a%20b%26c%3Dd%2F%C3%A9");
    assert_int_equal(pct_encode("&&&", out, 9), SL_ETOOBIG);
    assert_int_equal(pct_encode("&&&", out, 10), 0);
}

static void setup_bridge(struct sl_node *node, struct sl_node_bridge *b)
{
    memset(node, 0, sizeof(*node));
    memset(b, 0, sizeof(*b));
    b->node = node;
    snprintf(b->hub_host, sizeof(b->hub_host), "127.0.0.1:8080");
}

static void control_request(void **state)
{
    (void)state;
    struct sl_node node;
    struct sl_node_bridge b;
    struct conn c;
    char buf[2048];
    setup_bridge(&node, &b);
    memset(&c, 0, sizeof(c));
    c.kind = CONN_CTL;
    c.b = &b;
    snprintf(c.key, sizeof(c.key), "dGhlIHNhbXBsZSBub25jZQ==");

    /* first contact: no credentials, token in the query */
    snprintf(b.rec.token, sizeof(b.rec.token), "s3cret&x");
    int n = format_request(&c, buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n == strlen(buf));
    assert_non_null(strstr(buf, "GET /_sluice/v1/control?token=s3cret%26x "
                                "HTTP/1.1\r\n"));
    assert_non_null(strstr(buf, "\r\nHost: 127.0.0.1:8080\r\n"));
    assert_non_null(strstr(buf, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Key: "
                                "dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_null(strstr(buf, "Authorization"));
    assert_null(strstr(buf, "Sluice-Hijack"));
    assert_string_equal(buf + n - 4, "\r\n\r\n");

    /* later: Basic credentials ("abcdef:pw" in base64) */
    b.rec.token[0] = '\0';
    snprintf(b.rec.username, sizeof(b.rec.username), "abcdef");
    snprintf(b.rec.password, sizeof(b.rec.password), "pw");
    n = format_request(&c, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "GET /_sluice/v1/control HTTP/1.1\r\n"));
    assert_non_null(strstr(buf, "\r\nAuthorization: Basic YWJjZGVmOnB3\r\n"));

    /* too small a buffer is an error, not a truncated request */
    assert_int_equal(format_request(&c, buf, 64), SL_ETOOBIG);
}

static void data_request(void **state)
{
    (void)state;
    struct sl_node node;
    struct sl_node_bridge b;
    struct conn c;
    char buf[2048];
    setup_bridge(&node, &b);
    snprintf(b.rec.identity, sizeof(b.rec.identity), "ab1234567890");
    snprintf(b.rec.username, sizeof(b.rec.username), "abcdef");
    snprintf(b.rec.password, sizeof(b.rec.password), "pw");
    snprintf(b.rec.token, sizeof(b.rec.token), "not-sent-on-data");
    memset(&c, 0, sizeof(c));
    c.kind = CONN_DATA;
    c.b = &b;
    c.asked_raw = 1;
    snprintf(c.key, sizeof(c.key), "dGhlIHNhbXBsZSBub25jZQ==");
    snprintf(c.fingerprint, sizeof(c.fingerprint),
             "0f8fad5b-d9cb-469f-a165-70867728950e");
    int n = format_request(&c, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "GET /_sluice/v1/data HTTP/1.1\r\n"));
    assert_non_null(strstr(buf, "\r\nSluice-Hijack: ab1234567890|"
                                "0f8fad5b-d9cb-469f-a165-70867728950e\r\n"));
    assert_non_null(strstr(buf, "\r\nSluice-Framing: raw\r\n"));
    assert_non_null(strstr(buf, "\r\nAuthorization: Basic YWJjZGVmOnB3\r\n"));
    assert_null(strstr(buf, "token"));

    c.asked_raw = 0;
    n = format_request(&c, buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(strstr(buf, "Sluice-Framing"));

    /* an invalid fingerprint never reaches the wire */
    snprintf(c.fingerprint, sizeof(c.fingerprint), "not-a-uuid");
    assert_true(format_request(&c, buf, sizeof(buf)) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(percent_encoding),
        cmocka_unit_test(control_request),
        cmocka_unit_test(data_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
