/* The ACME client's decisions that pebble cannot show: the words and the
 * waits for each failure a CA may answer (rate limits with Retry-After,
 * CAA, an unreachable CA, a forgotten account), a failure logged once
 * however often it recurs, the back-off doubling to its cap, renewal at
 * two thirds of the lifetime with its jitter, and the hourly order cap.
 * Reaches the static functions by including the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "../../../src/acme/acme.c"

static struct sl_acme *fake(uv_loop_t *loop, struct sl_log *log)
{
    struct sl_acme *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->loop = loop;
    a->log = log;
    a->directory = strdup("https://ca.test/dir");
    a->domain = strdup("sluice.test");
    a->retry_ms = 1000;
    a->cap = 3;
    a->cap_times = calloc(a->cap, sizeof(*a->cap_times));
    return a;
}

static void fake_free(struct sl_acme *a)
{
    free(a->directory);
    free(a->domain);
    free(a->cap_times);
    free(a);
}

static void answer(struct sl_acme_http_req *r, long status, const char *body,
                   const char *retry_after)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    snprintf(r->url, sizeof(r->url), "https://ca.test/order");
    if (body != NULL)
        assert_int_equal(
            sl_dynbuf_append(&r->resp, body, strlen(body), 1 << 20), 0);
    if (retry_after != NULL)
        snprintf(r->retry_after, sizeof(r->retry_after), "%s", retry_after);
}

static void test_describe(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sl_acme *a = fake(&loop, NULL);
    struct sl_acme_http_req r;
    char why[WHY_MAX];
    int global;
    long ra;

    answer(&r, 0, NULL, NULL);
    snprintf(r.error, sizeof(r.error),
             "Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't "
             "connect to server");
    describe(a, &r, "the order", why, sizeof(why), &global, &ra);
    assert_int_equal(global, 1);
    assert_non_null(strstr(why, "cannot reach the ACME server "
                                "https://ca.test/dir: Failed to connect to "
                                "127.0.0.1 port 1"));

    answer(&r, 429,
           "{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":"
           "\"too many new orders recently\"}",
           "120");
    describe(a, &r, "the order", why, sizeof(why), &global, &ra);
    assert_int_equal(global, 0);
    assert_int_equal(ra, 120);
    assert_string_equal(why, "rate-limited by the CA (the order): too many "
                             "new orders recently");
    sl_dynbuf_free(&r.resp);

    answer(&r, 403,
           "{\"type\":\"urn:ietf:params:acme:error:caa\",\"detail\":\"CAA "
           "record for sluice.test prevents issuance\"}",
           NULL);
    describe(a, &r, "the order", why, sizeof(why), &global, &ra);
    assert_string_equal(why, "CAA records forbid the CA to issue (the "
                             "order): CAA record for sluice.test prevents "
                             "issuance");
    sl_dynbuf_free(&r.resp);

    /* A CA that forgot the account: asked for again next time. */
    a->boot = 2;
    snprintf(a->kid, sizeof(a->kid), "https://ca.test/acct/1");
    answer(&r, 400,
           "{\"type\":\"urn:ietf:params:acme:error:accountDoesNotExist\","
           "\"detail\":\"no such account\"}",
           NULL);
    describe(a, &r, "the order", why, sizeof(why), &global, &ra);
    assert_int_equal(a->boot, 0);
    assert_string_equal(a->kid, "");
    assert_int_equal(global, 1);
    sl_dynbuf_free(&r.resp);

    /* Not a problem document: the status. */
    answer(&r, 503, "<html>busy</html>", NULL);
    describe(a, &r, "the order", why, sizeof(why), &global, &ra);
    assert_string_equal(why, "the CA answered the order with HTTP 503");
    sl_dynbuf_free(&r.resp);

    fake_free(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_normalize(void **state)
{
    (void)state;
    char s[] = "Failed to connect to 127.0.0.1 port 1 after 12 ms: Couldn't";
    normalize(s);
    assert_string_equal(s, "Failed to connect to 127.0.0.1 port 1: Couldn't");
    char t[] = "after all, after 3 s";
    normalize(t);
    assert_string_equal(t, "after all, after 3 s");
}

/* Lines of a log in memory. */
static size_t count(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

static void test_failure_logged_once_backoff(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *buf = NULL;
    size_t len = 0;
    struct sl_log log = {.level = SL_LOG_INFO,
                         .out = open_memstream(&buf, &len)};
    struct sl_acme *a = fake(&loop, &log);
    struct subject *s = subject_add(a, NULL);
    uint64_t waits[12];
    for (int i = 0; i < 12; i++) {
        uint64_t before = uv_now(&loop);
        subject_failed(a, s,
                       i < 10 ? "the CA could not validate x: refused"
                              : "something else",
                       0, 0);
        waits[i] = s->due - before;
    }
    fflush(log.out);
    /* Once per distinct reason. */
    assert_int_equal(count(buf, "could not validate"), 1);
    assert_int_equal(count(buf, "something else"), 1);
    assert_int_equal(s->state, SL_ACME_CERT_ERROR);
    assert_string_equal(s->error, "something else");
    /* Doubling from retry_ms, a tenth of jitter at most. */
    assert_true(waits[0] >= 1000 && waits[0] <= 1100);
    assert_true(waits[1] >= 2000 && waits[1] <= 2200);
    assert_true(waits[4] >= 16000 && waits[4] <= 17600);
    /* The CA's Retry-After wins when longer. */
    subject_failed(a, s, "rate-limited", 0, 86400);
    assert_true(s->due - uv_now(&loop) >= 86400000ull);
    /* Global failures: one line for the hub, not per name. */
    struct subject *t = subject_add(a, NULL);
    subject_failed(a, s, "cannot reach the ACME server x: down", 1, 0);
    subject_failed(a, t, "cannot reach the ACME server x: down", 1, 0);
    fflush(log.out);
    assert_int_equal(count(buf, "cannot reach"), 1);
    while (a->subjects != NULL) {
        struct subject *n = a->subjects->next;
        free(a->subjects);
        a->subjects = n;
    }
    fake_free(a);
    fclose(log.out);
    free(buf);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_renewal_time(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sl_acme *a = fake(&loop, NULL);
    struct subject s;
    memset(&s, 0, sizeof(s));
    int64_t now = (int64_t)time(NULL);
    /* 90 days issued now: due after 60 days less at most 3 days. */
    s.info.not_before = now;
    s.info.not_after = now + 90 * 86400;
    for (int i = 0; i < 50; i++) {
        uint64_t ms = renew_delay_ms(a, &s);
        assert_true(ms <= 60ull * 86400 * 1000);
        assert_true(ms >= 57ull * 86400 * 1000 - 1000);
    }
    /* Past two thirds already: at once. */
    s.info.not_before = now - 80 * 86400;
    s.info.not_after = now + 10 * 86400;
    assert_int_equal(renew_delay_ms(a, &s), 0);
    /* The test knob wins. */
    a->renew_ms = 1234;
    assert_int_equal(renew_delay_ms(a, &s), 1234);
    fake_free(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_hourly_cap(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sl_acme *a = fake(&loop, NULL);
    uint64_t wait = 0, now = 5000000;
    for (int i = 0; i < 3; i++) {
        assert_true(cap_allows(a, now + (uint64_t)i * 1000, &wait));
        a->cap_times[a->cap_idx] = now + (uint64_t)i * 1000;
        a->cap_idx = (a->cap_idx + 1) % a->cap;
    }
    /* A fourth within the hour waits for the first to leave it. */
    assert_false(cap_allows(a, now + 10000, &wait));
    assert_int_equal(wait, HOUR_MS - 10000);
    assert_true(cap_allows(a, now + HOUR_MS, &wait));
    fake_free(a);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_failure_logged_once_backoff),
        cmocka_unit_test(test_renewal_time),
        cmocka_unit_test(test_hourly_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
