/* agents: and a route's agent: (issue 12). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "core/error.h"

static struct sl_config *load_ok(const char *yaml)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    int rc = sl_config_load_string(yaml, strlen(yaml), &cfg, err,
                                   sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error %d: %s\nfor:\n%s", rc, err, yaml);
    return cfg;
}

static void load_err(const char *yaml, const char *want)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    int rc = sl_config_load_string(yaml, strlen(yaml), &cfg, err,
                                   sizeof(err));
    assert_int_equal(rc, SL_ECONFIG);
    assert_null(cfg);
    if (strcmp(err, want) != 0)
        fail_msg("error mismatch\n got: %s\nwant: %s\nfor:\n%s", err, want,
                 yaml);
}

#define PAIR "ca: ca.pem, cert: client.pem, key: client.key"

static void test_agents_and_routes(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(
        "routes:\n"
        "  ssh: {scheme: tcp, port: 2222:22, host: 10.0.0.7, agent: lab}\n"
        "  dns: {scheme: udp, port: 5353:53, agent: lab6}\n"
        "  here: {scheme: tcp, port: 8080}\n"
        "agents:\n"
        "  lab: {address: lab.internal:8890, " PAIR ",\n"
        "        health_interval: 2s, health_timeout: 500ms,\n"
        "        unhealthy_after: 5, healthy_after: 1}\n"
        "  lab6: {address: '[fd00::7]:8890', " PAIR "}\n");
    assert_int_equal(cfg->nagents, 2);
    struct sl_agent_config *a = &cfg->agents[0];
    assert_string_equal(a->name, "lab");
    assert_string_equal(a->host, "lab.internal");
    assert_int_equal(a->port, 8890);
    assert_string_equal(a->ca, "ca.pem");
    assert_string_equal(a->cert, "client.pem");
    assert_string_equal(a->key, "client.key");
    assert_int_equal(a->health_interval_ms, 2000);
    assert_int_equal(a->health_timeout_ms, 500);
    assert_int_equal(a->unhealthy_after, 5);
    assert_int_equal(a->healthy_after, 1);
    a = &cfg->agents[1];
    assert_string_equal(a->host, "fd00::7");
    /* the defaults of the issue */
    assert_int_equal(a->health_interval_ms, 10000);
    assert_int_equal(a->health_timeout_ms, 5000);
    assert_int_equal(a->unhealthy_after, 3);
    assert_int_equal(a->healthy_after, 2);
    assert_string_equal(cfg->routes[0].agent, "lab");
    assert_string_equal(cfg->routes[1].agent, "lab6");
    assert_null(cfg->routes[2].agent);
    char d[SL_CONFIG_ERR_MAX];
    sl_config_route_describe(&cfg->routes[0], d, sizeof(d));
    assert_non_null(strstr(d, ", through agent lab"));
    sl_config_free(cfg);
}

static void test_agent_errors(void **state)
{
    (void)state;
    load_err("routes:\n  r: {scheme: tcp, port: 1, agent: nope}\n",
             "route \"r\": field \"agent\": \"nope\" is not an agent of "
             "agents: (there is no agents: section)");
    load_err("agents:\n  a: {address: 127.0.0.1:1, " PAIR "}\n"
             "routes:\n  r: {scheme: tcp, port: 1, agent: b}\n",
             "route \"r\": field \"agent\": \"b\" is not an agent of "
             "agents:");
    load_err("agents:\n  a: {" PAIR "}\n",
             "agents: agent \"a\": field \"address\": is required (HOST:PORT "
             "of the agent port) (line 2, column 6)");
    load_err("agents:\n  a: {address: 127.0.0.1:1, ca: x, cert: y}\n",
             "agents: agent \"a\": field \"key\": is required (our client "
             "key: client.key of sluice agent certs) (line 2, column 6)");
    load_err("agents:\n  a: {address: 127.0.0.1, " PAIR "}\n",
             "agents: agent \"a\": field \"address\": \"127.0.0.1\" is not "
             "HOST:PORT ([v6]:PORT for IPv6; HOST a name or an IP address, "
             "PORT 1-65535) (line 2, column 16)");
    load_err("agents:\n  a: {address: 'fd00::1:80', " PAIR "}\n",
             "agents: agent \"a\": field \"address\": \"fd00::1:80\" is not "
             "HOST:PORT ([v6]:PORT for IPv6; HOST a name or an IP address, "
             "PORT 1-65535) (line 2, column 16)");
    load_err("agents:\n  a: {address: h:0, " PAIR "}\n",
             "agents: agent \"a\": field \"address\": \"h:0\" is not "
             "HOST:PORT ([v6]:PORT for IPv6; HOST a name or an IP address, "
             "PORT 1-65535) (line 2, column 16)");
    load_err("agents:\n  a: {address: h:1, " PAIR ", colour: red}\n",
             "agents: agent \"a\": unknown field \"colour\"; accepted fields: "
             "address, ca, cert, key, health_interval, health_timeout, "
             "unhealthy_after, healthy_after (line 2, column 68)");
    load_err("agents:\n  a: {address: h:1, " PAIR ", unhealthy_after: 0}\n",
             "agents: agent \"a\": field \"unhealthy_after\": \"0\" is not an "
             "integer from 1 to 100 (line 2, column 85)");
    load_err("agents:\n  a: {address: h:1, " PAIR
             ", health_interval: 1s, health_timeout: 2s}\n",
             "agents: agent \"a\": field \"health_timeout\": 2000 ms is "
             "longer than health_interval (1000 ms) (line 2, column 6)");
    load_err("agents:\n  a: {address: h:1, " PAIR "}\n"
             "  a: {address: h:2, " PAIR "}\n",
             "agents: agent name \"a\" appears twice (line 3, column 3)");
    load_err("agents:\n  'a b': {address: h:1, " PAIR "}\n",
             "agents: agent name \"a b\" is not 1-64 letters, digits, '.', "
             "'_' or '-' (line 2, column 3)");
    load_err("agents: [a]\n",
             "agents: expected a mapping of agent names to agents, got a "
             "list (line 1, column 9)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agents_and_routes),
        cmocka_unit_test(test_agent_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
