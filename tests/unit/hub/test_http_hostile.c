/* Hostile request heads: what the hub must refuse (sl_http_head_parse)
 * and how it builds the forwarding headers the upstream trusts
 * (build_head): request smuggling through a head http-parser ends early,
 * obs-fold, whitespace in a name, bare CR, a second X-Forwarded-For, an
 * empty one, and Forwarded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../src/hub/hub_user.c"

/* The head as the hub reads it: sl_http_head_end's length, then the
 * parse. Returns the parse's result (0 or SL_EPARSE) and the reason. */
static int hub_parse(const char *raw, struct sl_http_head *h,
                     const char **why)
{
    ssize_t end = sl_http_head_end(raw, strlen(raw), 0, SL_HTTP_HEAD_MAX);
    assert_true(end > 0);
    int rc = sl_http_head_parse(h, 1, raw, (size_t)end);
    *why = h->error;
    return rc;
}

static void expect_400(const char *raw, const char *words)
{
    struct sl_http_head h;
    const char *why = NULL;
    int rc = hub_parse(raw, &h, &why);
    if (rc != SL_EPARSE)
        fail_msg("accepted: %s", raw);
    if (words != NULL && (why == NULL || strstr(why, words) == NULL))
        fail_msg("reason '%s' lacks '%s' for: %s", why ? why : "(none)",
                 words, raw);
}

#define H "GET / HTTP/1.1\r\nHost: ab1234567890.localhost\r\n"

/* http-parser (not strict) takes any byte after "\r\n\r" as the LF that
 * ends the head; sl_http_head_end goes on to the next "\r\n\r\n". What
 * lies between would reach the upstream as a request of its own. */
static void smuggled_request(void **state)
{
    (void)state;
    expect_400(H "Content-Length: 0\r\n\rXGET /admin HTTP/1.1\r\n"
                 "Host: evil.example\r\n\r\n", NULL);
    expect_400(H "\rXGET /admin HTTP/1.1\r\nHost: evil.example\r\n\r\n",
               NULL);
    expect_400(H "\r\rGET /admin HTTP/1.1\r\n\r\n", NULL);
}

/* A caller that passes more than one head: refused, not cut short. */
static void head_must_be_all_consumed(void **state)
{
    (void)state;
    struct sl_http_head h;
    const char *two = H "\r\nGET /admin HTTP/1.1\r\nHost: evil\r\n\r\n";
    assert_int_equal(sl_http_head_parse(&h, 1, two, strlen(two)),
                     SL_EPARSE);
    assert_non_null(strstr(h.error, "ends before"));
    const char *one = H "\r\n";
    assert_int_equal(sl_http_head_parse(&h, 1, one, strlen(one)), 0);
    assert_int_equal(h.len, strlen(one));
}

static void obs_fold(void **state)
{
    (void)state;
    expect_400(H "Transfer-Encoding:\r\n chunked\r\n\r\n", "obs-fold");
    expect_400(H "X-A: 1\r\n\tX-Forwarded-Proto: https\r\n\r\n", "obs-fold");
    /* whitespace before the first field (RFC 9112 2.2) */
    expect_400("GET / HTTP/1.1\r\n Host: ab1234567890.localhost\r\n\r\n",
               "obs-fold");
    expect_400("GET / HTTP/1.1\n Host: x\n\n", "obs-fold");
}

static void whitespace_in_name(void **state)
{
    (void)state;
    expect_400(H "X-Forwarded-Proto : https\r\n\r\n",
               "whitespace in a header name");
    expect_400(H "X-Forwarded-For  : 1.2.3.4\r\n\r\n",
               "whitespace in a header name");
    expect_400(H "Transfer-Encoding : chunked\r\n\r\n",
               "whitespace in a header name");
    expect_400(H "X Y: z\r\n\r\n", "whitespace in a header name");
    expect_400(H "X-Forwarded-Proto\t: https\r\n\r\n", NULL);
}

static void bare_cr(void **state)
{
    (void)state;
    expect_400(H "X-A: a\rb\r\n\r\n", "bare CR");
    expect_400(H "X-A\r: b\r\n\r\n", "bare CR");
    expect_400("GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", "bare CR");
    expect_400("GET / HTTP/1.1\rHost: x\r\n\r\n", "bare CR");
    expect_400("\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", "bare CR");
    expect_400(H "X-A: b\r\r\n\r\n", "bare CR");
}

/* What stays accepted: CRLF and bare-LF heads, leading empty lines,
 * tabs and spaces inside values, every tchar in a name. */
static void still_accepted(void **state)
{
    (void)state;
    const char *ok[] = {
        H "\r\n",
        "GET / HTTP/1.0\nHost: h\n\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        H "X-A: a \t b\t\r\n\r\n",
        H "X-!#$%&'*+-.^_`|~09az: v\r\n\r\n",
        H "X-Empty:\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct sl_http_head h;
        const char *why;
        if (hub_parse(ok[i], &h, &why) != 0)
            fail_msg("refused (%s): %s", why, ok[i]);
    }
}

/* build_head as the hub runs it for a peer at 10.0.0.7. */
static char out[4096];

static const char *rewrite(const char *head)
{
    static struct sl_hub hub;
    static struct hub_conn u;
    struct sl_http_head h;
    memset(&hub, 0, sizeof(hub));
    memset(&u, 0, sizeof(u));
    hub.s_scheme = (char *)"http";
    u.hub = &hub;
    snprintf(u.peer_ip, sizeof(u.peer_ip), "10.0.0.7");
    u.head = (char *)head;
    u.head_len = strlen(head);
    assert_int_equal(sl_http_head_parse(&h, 1, head, strlen(head)), 0);
    const struct sl_http_header *host = sl_http_head_find(&h, "host");
    assert_non_null(host);
    int n = build_head(&u, &h, host, out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    /* What the upstream gets is one head, read to its last byte. */
    assert_null(rewritten_head_bad(out, (size_t)n));
    struct sl_http_head again;
    assert_int_equal(sl_http_head_parse(&again, 1, out, (size_t)n), 0);
    return out;
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* nginx realip (real_ip_recursive) and Express read the last addresses
 * of the last X-Forwarded-For header: the peer must come last in the
 * only one. */
static void xff_merged_peer_last(void **state)
{
    (void)state;
    const char *r = rewrite(H "X-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n"
                              "x-forwarded-for: 7.7.7.7, 8.8.8.8\r\n\r\n");
    assert_string_equal(r, H "X-Forwarded-For: 6.6.6.6, 7.7.7.7, 8.8.8.8, "
                             "10.0.0.7\r\nAccept: */*\r\n"
                             "X-Forwarded-Proto: http\r\n"
                             "X-Forwarded-Host: ab1234567890.localhost\r\n"
                             "\r\n");
    r = rewrite(H "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"
                  "X-Forwarded-For: 3.3.3.3\r\n\r\n");
    assert_int_equal(count(r, "X-Forwarded-For:"), 1);
    assert_non_null(strstr(r, "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, "
                              "10.0.0.7\r\n"));
}

/* An empty X-Forwarded-For is no value: left out, never glued to the
 * name (the old code wrote "X-Forwarded-For, 10.0.0.7:" and a head the
 * upstream could not read, after the bridge had been told to dial). */
static void xff_empty(void **state)
{
    (void)state;
    const char *r = rewrite(H "X-Forwarded-For:\r\nAccept: */*\r\n\r\n");
    assert_string_equal(r, H "Accept: */*\r\n"
                             "X-Forwarded-For: 10.0.0.7\r\n"
                             "X-Forwarded-Proto: http\r\n"
                             "X-Forwarded-Host: ab1234567890.localhost\r\n"
                             "\r\n");
    r = rewrite(H "X-Forwarded-For: \t \r\nX-Forwarded-For: 5.5.5.5\r\n"
                  "X-Forwarded-For:\r\n\r\n");
    assert_int_equal(count(r, "X-Forwarded-For:"), 1);
    assert_non_null(strstr(r, H "X-Forwarded-For: 5.5.5.5, 10.0.0.7\r\n"));
    r = rewrite("GET / HTTP/1.0\nHost: h\nX-Forwarded-For:\n\n");
    assert_string_equal(r, "GET / HTTP/1.0\nHost: h\n"
                           "X-Forwarded-For: 10.0.0.7\r\n"
                           "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h"
                           "\r\n\r\n");
}

/* Forwarded (RFC 7239) says the same things as X-Forwarded-*: the
 * user's would lie to an upstream that reads it. */
static void forwarded_dropped(void **state)
{
    (void)state;
    const char *r = rewrite(H "Forwarded: for=6.6.6.6;proto=https;host=evil"
                              "\r\nfORWARDED: for=\"[::1]\"\r\n"
                              "X-Forwarded-Proto: https\r\n"
                              "X-Forwarded-Host: evil\r\nAccept: */*\r\n"
                              "\r\n");
    assert_string_equal(r, H "Accept: */*\r\n"
                             "X-Forwarded-For: 10.0.0.7\r\n"
                             "X-Forwarded-Proto: http\r\n"
                             "X-Forwarded-Host: ab1234567890.localhost\r\n"
                             "\r\n");
    assert_null(strcasestr(r, "evil"));
    assert_null(strcasestr(r, "forwarded:"));
}

/* The check run before the bridge dials. */
static void rewritten_check(void **state)
{
    (void)state;
    const char *ok = H "\r\n";
    assert_null(rewritten_head_bad(ok, strlen(ok)));
    const char *glued = H "X-Forwarded-For, 10.0.0.7:\r\n\r\n";
    assert_non_null(rewritten_head_bad(glued, strlen(glued)));
    const char *two = H "\r\nGET / HTTP/1.1\r\n\r\n";
    assert_non_null(rewritten_head_bad(two, strlen(two)));
    assert_non_null(rewritten_head_bad(ok, strlen(ok) - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(smuggled_request),
        cmocka_unit_test(head_must_be_all_consumed),
        cmocka_unit_test(obs_fold),
        cmocka_unit_test(whitespace_in_name),
        cmocka_unit_test(bare_cr),
        cmocka_unit_test(still_accepted),
        cmocka_unit_test(xff_merged_peer_last),
        cmocka_unit_test(xff_empty),
        cmocka_unit_test(forwarded_dropped),
        cmocka_unit_test(rewritten_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
