/* The proxy side's health state machine of an agent (issue 12): unknown
 * until the first answer, unhealthy after unhealthy_after failures in a
 * row, healthy again after healthy_after successes; TCP and UDP apart.
 * The file is included to reach its static functions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../src/stream/agent_client.c"

struct fixture {
    struct sl_ctx ctx;
    struct sl_agents as;
    struct sl_agent a;
    struct sl_agent_config cfg;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.ctx.log.level = SL_LOG_ERROR;
    f.ctx.log.out = stderr;
    f.as.ctx = &f.ctx;
    f.as.log = &f.ctx.log;
    f.as.stopping = 1; /* no GET /info from a test */
    f.cfg.name = "lab";
    f.cfg.unhealthy_after = 3;
    f.cfg.healthy_after = 2;
    f.a.as = &f.as;
    f.a.cfg = &f.cfg;
    snprintf(f.a.address, sizeof(f.a.address), "127.0.0.1:8890");
    *state = &f;
    return 0;
}

static void test_unknown_is_usable_until_it_fails_enough(void **state)
{
    struct fixture *f = *state;
    struct sl_agent *a = &f->a;
    assert_int_equal(sl_agent_health(a, 0), SL_AGENT_HEALTH_UNKNOWN);
    assert_true(sl_agent_usable(a, 0));
    health_result(a, 0, 0, "connection refused", 0);
    health_result(a, 0, 0, "connection refused", 0);
    assert_true(sl_agent_usable(a, 0)); /* two of three */
    health_result(a, 0, 0, "connection refused", 0);
    assert_int_equal(sl_agent_health(a, 0), SL_AGENT_HEALTH_DOWN);
    assert_false(sl_agent_usable(a, 0));
    assert_string_equal(a->tcp.error, "connection refused");
    /* UDP is its own */
    assert_true(sl_agent_usable(a, 1));
    assert_int_equal(sl_agent_health(a, 1), SL_AGENT_HEALTH_UNKNOWN);
}

static void test_back_after_healthy_after_successes(void **state)
{
    struct fixture *f = *state;
    struct sl_agent *a = &f->a;
    for (int i = 0; i < 3; i++)
        health_result(a, 0, 0, "timeout", 0);
    assert_false(sl_agent_usable(a, 0));
    health_result(a, 0, 1, "", 3);
    assert_false(sl_agent_usable(a, 0)); /* one of two */
    health_result(a, 0, 0, "timeout", 0); /* a failure starts over */
    health_result(a, 0, 1, "", 3);
    assert_false(sl_agent_usable(a, 0));
    health_result(a, 0, 1, "", 4);
    assert_int_equal(sl_agent_health(a, 0), SL_AGENT_HEALTH_UP);
    assert_string_equal(a->tcp.error, "");
    assert_int_equal(a->tcp.rtt_ms, 4);
}

static void test_first_answer_decides(void **state)
{
    struct fixture *f = *state;
    struct sl_agent *a = &f->a;
    health_result(a, 1, 1, "", 1);
    assert_int_equal(sl_agent_health(a, 1), SL_AGENT_HEALTH_UP);
    /* a healthy agent needs the full count of failures too */
    health_result(a, 1, 0, "x", 0);
    health_result(a, 1, 0, "x", 0);
    assert_int_equal(sl_agent_health(a, 1), SL_AGENT_HEALTH_UP);
    health_result(a, 1, 0, "x", 0);
    assert_int_equal(sl_agent_health(a, 1), SL_AGENT_HEALTH_DOWN);
}

static void test_status_errors(void **state)
{
    (void)state;
    assert_int_equal(status_err(SL_AGENT_OK), 0);
    assert_int_equal(status_err(SL_AGENT_REFUSED), SL_EDENIED);
    assert_int_equal(status_err(SL_AGENT_DIAL_FAILED), UV_ECONNREFUSED);
    assert_int_equal(status_err(SL_AGENT_TIMEOUT), UV_ETIMEDOUT);
    assert_int_equal(status_err(SL_AGENT_BAD_HEADER), SL_EPARSE);
    assert_int_equal(status_err(SL_AGENT_BUSY), SL_ELIMIT);
    assert_int_equal(status_err(77), UV_EPROTO);
}

static void test_metrics_and_json(void **state)
{
    struct fixture *f = *state;
    f->as.agents = &f->a;
    f->as.n = 1;
    health_result(&f->a, 0, 1, "", 2);
    char *m = sl_agents_metrics(&f->as);
    assert_non_null(m);
    assert_non_null(strstr(m, "sluice_agent_up{agent=\"lab\",proto=\"tcp\"} 1\n"));
    assert_non_null(strstr(m, "sluice_agent_up{agent=\"lab\",proto=\"udp\"} 0\n"));
    assert_non_null(strstr(m, "# TYPE sluice_agent_streams_total counter"));
    free(m);
    m = sl_agents_metrics(NULL);
    assert_string_equal(m, "");
    free(m);
    json_t *j = sl_agents_json(&f->as);
    assert_int_equal(json_array_size(j), 1);
    json_t *o = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(o, "name")), "lab");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(o, "tcp"), "health")),
                        "healthy");
    assert_true(json_is_null(json_object_get(o, "info")));
    json_decref(j);
    f->as.agents = NULL;
    f->as.n = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unknown_is_usable_until_it_fails_enough,
                               setup),
        cmocka_unit_test_setup(test_back_after_healthy_after_successes,
                               setup),
        cmocka_unit_test_setup(test_first_answer_decides, setup),
        cmocka_unit_test(test_status_errors),
        cmocka_unit_test_setup(test_metrics_and_json, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
