#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "core/error.h"
#include "proto/acl.h"

/* Loads yaml and requires success; the caller frees. */
static struct sl_config *load_ok(const char *yaml)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    int rc = sl_config_load_string(yaml, strlen(yaml), &cfg, err,
                                   sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error %d: %s\nfor:\n%s", rc, err, yaml);
    assert_non_null(cfg);
    return cfg;
}

/* Loads yaml, requires SL_ECONFIG and the error line to equal want. */
static void load_err(const char *yaml, const char *want)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = (struct sl_config *)(uintptr_t)1;
    int rc = sl_config_load_string(yaml, strlen(yaml), &cfg, err,
                                   sizeof(err));
    assert_int_equal(rc, SL_ECONFIG);
    assert_null(cfg);
    assert_null(strchr(err, '\n'));
    if (strcmp(err, want) != 0)
        fail_msg("error mismatch\n got: %s\nwant: %s\nfor:\n%s", err, want,
                 yaml);
}

/* Like load_err but only requires want as a prefix of the error. */
static void load_err_prefix(const char *yaml, const char *want)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    int rc = sl_config_load_string(yaml, strlen(yaml), &cfg, err,
                                   sizeof(err));
    assert_int_equal(rc, SL_ECONFIG);
    assert_null(cfg);
    assert_null(strchr(err, '\n'));
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error mismatch\n got: %s\nwant: %s...\nfor:\n%s", err,
                 want, yaml);
}

/* One route "r" with the given extra field line(s), in flow style. */
static void route_yaml(char *buf, size_t len, const char *fields)
{
    snprintf(buf, len, "routes:\n  r: {%s}\n", fields);
}

static int allows(const struct sl_acl *acl, const char *ip)
{
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
        assert_int_equal(inet_pton(AF_INET6, ip, &s6.sin6_addr), 1);
        return sl_acl_allows(acl, (const struct sockaddr *)&s6);
    }
    struct sockaddr_in sin = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    return sl_acl_allows(acl, (const struct sockaddr *)&sin);
}

static void test_port_syntax(void **state)
{
    uint16_t l = 7, t = 7;
    (void)state;

    assert_int_equal(sl_config_parse_port("2222:22", &l, &t), 0);
    assert_int_equal(l, 2222);
    assert_int_equal(t, 22);
    assert_int_equal(sl_config_parse_port("53", &l, &t), 0);
    assert_int_equal(l, 53);
    assert_int_equal(t, 53);
    assert_int_equal(sl_config_parse_port("0:8080", &l, &t), 0);
    assert_int_equal(l, 0);
    assert_int_equal(t, 8080);
    assert_int_equal(sl_config_parse_port("65535:65535", &l, &t), 0);
    assert_int_equal(l, 65535);
    assert_int_equal(t, 65535);
    assert_int_equal(sl_config_parse_port("1", NULL, NULL), 0);

    static const char *const bad[] = {
        "", "a:b", "70000", "1:2:3", "-1", "22:0", "0", ":22", "22:",
        "65536:1", "1:65536", " 22", "22 ", "+22", "2a", "0x16",
        "1:-1", "1: 2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = t = 7;
        if (sl_config_parse_port(bad[i], &l, &t) != SL_EPARSE)
            fail_msg("port \"%s\" was accepted", bad[i]);
        assert_int_equal(l, 7);
        assert_int_equal(t, 7);
    }
    assert_int_equal(sl_config_parse_port(NULL, &l, &t), SL_EPARSE);
}

static void test_port_field(void **state)
{
    char y[512];
    struct sl_config *cfg;
    (void)state;

    /* YAML gives an int; a string; a quoted string. */
    cfg = load_ok("routes:\n  r: {scheme: udp, port: 53}\n");
    assert_int_equal(cfg->routes[0].listen_port, 53);
    assert_int_equal(cfg->routes[0].target_port, 53);
    sl_config_free(cfg);
    cfg = load_ok("routes:\n  r:\n    scheme: tcp\n    port: 2222:22\n");
    assert_int_equal(cfg->routes[0].listen_port, 2222);
    assert_int_equal(cfg->routes[0].target_port, 22);
    sl_config_free(cfg);
    cfg = load_ok("routes:\n  r: {scheme: tcp, port: \"0:22\"}\n");
    assert_int_equal(cfg->routes[0].listen_port, 0);
    sl_config_free(cfg);

    route_yaml(y, sizeof(y), "scheme: tcp, port: \"1:2:3\"");
    load_err(y, "route \"r\": field \"port\": \"1:2:3\" is not "
                "[LISTEN:]TARGET with TARGET 1-65535 and LISTEN 0-65535 "
                "(e.g. 2222:22, 53, 0:8080) (line 2, column 26)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 70000");
    load_err_prefix(y, "route \"r\": field \"port\": \"70000\" is not "
                       "[LISTEN:]TARGET");
    route_yaml(y, sizeof(y), "scheme: tcp, port: \"\"");
    load_err_prefix(y, "route \"r\": field \"port\": \"\" is not");
    route_yaml(y, sizeof(y), "scheme: tcp, port: [1, 2]");
    load_err_prefix(y, "route \"r\": field \"port\": expected [LISTEN:]TARGET"
                       " with TARGET 1-65535 and LISTEN 0-65535 (e.g. "
                       "2222:22, 53, 0:8080), got a list");
    route_yaml(y, sizeof(y), "scheme: tcp");
    load_err(y, "route \"r\": field \"port\": is required: [LISTEN:]TARGET "
                "(e.g. 2222:22) (line 2, column 6)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: ");
    load_err_prefix(y, "route \"r\": field \"port\": is required");
}

static void test_issue_example(void **state)
{
    static const char yaml[] =
        "routes:\n"
        "  ssh-proxy:\n"
        "    scheme: tcp4\n"
        "    bind: 127.0.0.1\n"
        "    port: 2222:22\n"
        "  dns-proxy:\n"
        "    scheme: udp\n"
        "    host: 127.0.0.1\n"
        "    port: 5353:53\n"
        "    acl: { allow: [\"cidr:127.0.0.0/8\"], deny: [\"ip:127.0.0.9\"] }\n";
    char line[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = load_ok(yaml);
    (void)state;

    assert_int_equal(cfg->nroutes, 2);
    struct sl_route_config *ssh = &cfg->routes[0];
    assert_string_equal(ssh->name, "ssh-proxy");
    assert_int_equal(ssh->scheme, SL_SCHEME_TCP);
    assert_int_equal(ssh->family, SL_FAMILY_V4);
    assert_string_equal(ssh->bind, "127.0.0.1");
    assert_string_equal(ssh->host, "localhost");
    assert_int_equal(ssh->listen_port, 2222);
    assert_int_equal(ssh->target_port, 22);
    assert_null(ssh->acl);
    assert_string_equal(sl_config_route_describe(ssh, line, sizeof(line)),
                        "ssh-proxy: tcp4 127.0.0.1:2222 -> localhost:22");

    struct sl_route_config *dns = &cfg->routes[1];
    assert_string_equal(dns->name, "dns-proxy");
    assert_int_equal(dns->scheme, SL_SCHEME_UDP);
    assert_int_equal(dns->family, SL_FAMILY_ANY);
    assert_string_equal(dns->bind, "0.0.0.0");
    assert_string_equal(dns->host, "127.0.0.1");
    assert_int_equal(dns->listen_port, 5353);
    assert_int_equal(dns->target_port, 53);
    assert_non_null(dns->acl);
    assert_int_equal(sl_acl_count(dns->acl), 2);
    assert_int_equal(allows(dns->acl, "127.0.0.1"), 1);
    assert_int_equal(allows(dns->acl, "127.0.0.9"), 0);
    assert_int_equal(allows(dns->acl, "10.0.0.1"), 0);
    assert_string_equal(sl_config_route_describe(dns, line, sizeof(line)),
                        "dns-proxy: udp 0.0.0.0:5353 -> 127.0.0.1:53, "
                        "acl: 2 rules");
    sl_config_free(cfg);
}

static void test_defaults(void **state)
{
    struct sl_config *cfg = load_ok("routes:\n"
                                    "  a: {scheme: tcp, port: 80}\n"
                                    "  b: {scheme: udp6, port: 53}\n"
                                    "  c: {scheme: tcp6, port: 0:1}\n");
    (void)state;

    assert_int_equal(cfg->nroutes, 3);
    struct sl_route_config *a = &cfg->routes[0];
    assert_string_equal(a->bind, "0.0.0.0");
    assert_string_equal(a->host, "localhost");
    assert_int_equal(a->family, SL_FAMILY_ANY);
    assert_null(a->acl);
    assert_null(a->pp_trusted);
    assert_int_equal(a->proxy_protocol, SL_PP_DISABLED);
    assert_int_equal(a->relay_proxy_protocol_header, 0);
    assert_int_equal(a->max_connections, 4096);
    assert_int_equal(a->max_connections_per_source, 256);
    assert_int_equal(a->max_sessions_per_prefix, 256);
    assert_int_equal(a->tcp_idle_timeout_ms, 3600000);
    assert_int_equal(a->udp_unreplied_timeout_ms, 10000);
    assert_int_equal(a->pp_trusted_default, 0);
    assert_int_equal(a->connect_timeout_ms, 10000);
    assert_int_equal(a->proxy_protocol_timeout_ms, 10000);
    assert_int_equal(a->udp_idle_timeout_ms, 300000);
    assert_int_equal(a->udp_sweep_interval_ms, 60000);
    assert_string_equal(cfg->routes[1].bind, "::");
    assert_int_equal(cfg->routes[1].family, SL_FAMILY_V6);
    assert_string_equal(cfg->routes[2].bind, "::");
    assert_int_equal(cfg->routes[2].scheme, SL_SCHEME_TCP);
    sl_config_free(cfg);

    /* Empty values keep defaults. */
    cfg = load_ok("routes:\n  a: {scheme: tcp, port: 80, bind: ~, host: ,"
                  " acl: null}\n");
    assert_string_equal(cfg->routes[0].bind, "0.0.0.0");
    assert_string_equal(cfg->routes[0].host, "localhost");
    sl_config_free(cfg);
}

static void test_empty_and_top_level(void **state)
{
    struct sl_config *cfg;
    (void)state;

    cfg = load_ok("");
    assert_int_equal(cfg->nroutes, 0);
    sl_config_free(cfg);
    cfg = load_ok("# nothing\n");
    assert_int_equal(cfg->nroutes, 0);
    sl_config_free(cfg);
    cfg = load_ok("routes:\n");
    assert_int_equal(cfg->nroutes, 0);
    sl_config_free(cfg);
    cfg = load_ok("routes: {}\n");
    assert_int_equal(cfg->nroutes, 0);
    sl_config_free(cfg);
    /* hub: and node: beside the routes. */
    cfg = load_ok("hub:\n  domain: example.com\n"
                  "node: {hub: \"wss://x\"}\n"
                  "routes:\n  a: {scheme: tcp, port: 1}\n");
    assert_int_equal(cfg->nroutes, 1);
    assert_true(cfg->hub.present && cfg->node.present);
    assert_int_equal(cfg->hub.nsettings, 1);
    sl_config_free(cfg);

    load_err("foo: 1\n", "unknown top-level key \"foo\"; accepted keys: "
                         "routes, hub, node, agents (line 1, column 1)");
    load_err("- a\n", "the top level must be a mapping with routes:, got a "
                      "list (line 1, column 1)");
    load_err("routes: [a]\n", "routes: expected a mapping of route names to "
                              "routes, got a list (line 1, column 9)");
    load_err("routes: {}\nroutes: {}\n",
             "top-level key \"routes\" appears twice (line 2, column 1)");
    load_err("routes:\n  a:\n", "route \"a\": expected a mapping of fields "
             "(scheme, bind, host, port, acl, proxy_protocol, "
             "proxy_protocol_trusted, relay_proxy_protocol_header, "
             "max_connections, max_connections_per_source, "
             "max_sessions_per_prefix, connect_timeout, "
             "proxy_protocol_timeout, tcp_idle_timeout, udp_idle_timeout, "
             "udp_unreplied_timeout, udp_sweep_interval, agent), got nothing "
             "(line 2, column 5)");
    load_err("---\nroutes: {}\n---\nroutes: {}\n",
             "YAML error at line 3: only one document is allowed");
}

static void test_yaml_syntax(void **state)
{
    (void)state;
    load_err("routes:\n  a: {scheme: tcp\n",
             "YAML syntax error at line 3, column 1: did not find expected "
             "',' or '}' (while parsing a flow mapping at line 2, column 6)");
    load_err("routes:\n  a:\n    scheme: tcp\n   port: 1\n",
             "YAML syntax error at line 4, column 4: did not find expected "
             "key (while parsing a block mapping at line 2, column 3)");
    load_err_prefix("routes: \"\x01\"\n", "YAML error at byte 9: control "
                                          "characters are not allowed");
    load_err_prefix("routes: *nope\n", "YAML syntax error at line 1, "
                                       "column 9: found undefined alias");
}

static void test_depth(void **state)
{
    char y[512];
    size_t n = 0;
    (void)state;

    n += (size_t)snprintf(y, sizeof(y), "hub: ");
    for (int i = 0; i < SL_CONFIG_MAX_DEPTH; i++)
        y[n++] = '[';
    for (int i = 0; i < SL_CONFIG_MAX_DEPTH - 1; i++)
        y[n++] = ']';
    y[n++] = ']';
    y[n] = '\0';
    /* Exactly the limit (with the top-level mapping: 33) is refused... */
    load_err(y, "YAML error at line 1, column 37: nesting deeper than 32 "
                "levels");
    /* ... one less is parsed (and refused by the section, for holding a
     * list, not for its depth). */
    y[5] = ' ';
    y[n - 1] = ' ';
    load_err(y, "hub: expected a mapping of hub options, got a list (line "
                "1, column 7)");
}

/* hub: and node: hold the roles' options by the flags' names. */
static void test_sections(void **state)
{
    (void)state;
    struct sl_config *cfg = load_ok(
        "hub:\n"
        "  http: 127.0.0.1:8080\n"
        "  max_pairs: 64\n"
        "  https-redirect: yes\n"
        "  api-require-token: false\n"
        "  cookie-isolation: off\n"
        "  tls-cert: [a.pem, b.pem]\n"
        "  tls-key: a.key\n"
        "  limit-traffic: 10MB\n"
        "  allocation-idle-expiry: 12h\n"
        "  stream-ports: 20000-20010\n"
        "node:\n"
        "  hub: https://hub.example.com\n"
        "  upstream: tcp://127.0.0.1:22\n"
        "  api: \"[::1]:8082\"\n"
        "  deny: [ip:10.0.0.1, cidr:10.1.0.0/16]\n"
        "  proxy-protocol: v2\n"
        "  hub-pin: sha256/AAAA\n");
    const struct sl_config_setting *st;

    assert_int_equal(cfg->hub.nsettings, 10);
    st = sl_config_setting_find(&cfg->hub, "--max-pairs");
    assert_non_null(st);
    assert_true(st->known);
    assert_string_equal(st->key, "max_pairs");
    assert_int_equal(st->kind, SL_CONFIG_VALUE);
    assert_string_equal(st->values[0], "64");
    assert_int_equal(st->line, 3);
    st = sl_config_setting_find(&cfg->hub, "--https-redirect");
    assert_int_equal(st->kind, SL_CONFIG_SWITCH);
    assert_string_equal(st->values[0], "on");
    st = sl_config_setting_find(&cfg->hub, "--api-require-token");
    assert_string_equal(st->values[0], "off");
    st = sl_config_setting_find(&cfg->hub, "--cookie-isolation");
    assert_int_equal(st->kind, SL_CONFIG_ONOFF);
    assert_string_equal(st->values[0], "off");
    st = sl_config_setting_find(&cfg->hub, "--tls-cert");
    assert_int_equal(st->kind, SL_CONFIG_LIST);
    assert_int_equal(st->nvalues, 2);
    assert_string_equal(st->values[1], "b.pem");
    st = sl_config_setting_find(&cfg->hub, "--tls-key");
    assert_int_equal(st->nvalues, 1); /* one value for a list is a list */
    /* In node:, api is the node's API (--node-api). */
    st = sl_config_setting_find(&cfg->node, "--node-api");
    assert_non_null(st);
    assert_string_equal(st->values[0], "[::1]:8082");
    assert_null(sl_config_setting_find(&cfg->node, "--api"));
    st = sl_config_setting_find(&cfg->node, "--deny");
    assert_int_equal(st->nvalues, 2);
    assert_null(sl_config_setting_find(&cfg->node, "--allow"));
    sl_config_free(cfg);

    /* Keys the table does not list go on as the flags of their names,
     * for the role to take or refuse; the value's shape gives the kind. */
    cfg = load_ok("hub:\n  udp_idle_ms: 500\n  some-switch: yes\n"
                  "  other: off\n  many: [a, b]\n");
    st = sl_config_setting_find(&cfg->hub, "--udp-idle-ms");
    assert_non_null(st);
    assert_false(st->known);
    assert_int_equal(st->kind, SL_CONFIG_VALUE);
    assert_string_equal(st->values[0], "500");
    st = sl_config_setting_find(&cfg->hub, "--some-switch");
    assert_int_equal(st->kind, SL_CONFIG_SWITCH);
    assert_string_equal(st->values[0], "on");
    st = sl_config_setting_find(&cfg->hub, "--other");
    assert_int_equal(st->kind, SL_CONFIG_VALUE);
    assert_string_equal(st->values[0], "off");
    st = sl_config_setting_find(&cfg->hub, "--many");
    assert_int_equal(st->kind, SL_CONFIG_LIST);
    assert_int_equal(st->nvalues, 2);
    sl_config_free(cfg);

    cfg = load_ok("hub:\nnode: {}\n");
    assert_true(cfg->hub.present && cfg->node.present);
    assert_int_equal(cfg->hub.nsettings + cfg->node.nsettings, 0);
    sl_config_free(cfg);
    cfg = load_ok("routes: {}\n");
    assert_false(cfg->hub.present || cfg->node.present);
    sl_config_free(cfg);

    assert_non_null(strstr(sl_config_section_keys("hub"), "http, https, "));
    assert_non_null(strstr(sl_config_section_keys("node"), ", upstream, "));
    assert_null(sl_config_section_keys("routes"));
}

static void test_section_errors(void **state)
{
    (void)state;
    load_err("hub:\n  max-pairs: 1x\n",
             "hub: field \"max-pairs\": \"1x\" is not a whole number (line 2, "
             "column 14)");
    load_err("node:\n  max-conns: 1000001\n",
             "node: field \"max-conns\": \"1000001\" is not a whole number "
             "0-1000000 (line 2, column 14)");
    load_err("hub:\n  api: 127.0.0.1\n",
             "hub: field \"api\": \"127.0.0.1\" is not IP:PORT (e.g. "
             "127.0.0.1:8080, [::1]:8080, 0.0.0.0:443) (line 2, column 8)");
    load_err("hub:\n  stream-bind: example.com\n",
             "hub: field \"stream-bind\": \"example.com\" is not an IP "
             "address (e.g. 0.0.0.0, 127.0.0.1, ::) (line 2, column 16)");
    load_err("hub:\n  domain: bad_domain!\n",
             "hub: field \"domain\": \"bad_domain!\" is not a domain name "
             "(e.g. localhost, tunnel.example.com) (line 2, column 11)");
    load_err("hub:\n  public-scheme: gopher\n",
             "hub: field \"public-scheme\": \"gopher\" is not one of http, "
             "https (line 2, column 18)");
    load_err("hub:\n  limit-traffic: 10XB\n",
             "hub: field \"limit-traffic\": \"10XB\" is not a size in bytes "
             "or with a unit (e.g. 10MB, 1GiB, 0) (line 2, column 18)");
    load_err("hub:\n  allocation-idle-expiry: soon\n",
             "hub: field \"allocation-idle-expiry\": \"soon\" is not seconds "
             "or a duration (e.g. 3600, 30m, 12h, 7d, 0) (line 2, column 27)");
    load_err("hub:\n  tls-cert: []\n",
             "hub: field \"tls-cert\": an empty list; leave the key out "
             "instead (line 2, column 13)");
    load_err("hub:\n  http: [127.0.0.1:1]\n",
             "hub: field \"http\": expected a value, got a list (line 2, "
             "column 9)");
    load_err("node:\n  upstream: ftp://x\n",
             "node: field \"upstream\": \"ftp://x\" is not http://HOST:PORT, "
             "tls://HOST:PORT, tcp://HOST:PORT or udp://HOST:PORT (line 2, "
             "column 13)");
    load_err("node:\n  hub-pin: md5/x\n",
             "node: field \"hub-pin\": \"md5/x\" is not sha256/BASE64 (the "
             "hub's public key, as curl's --pinnedpubkey) (line 2, column "
             "12)");
    load_err("node:\n  api: 127.0.0.1:1\n  node_api: 127.0.0.1:2\n",
             "node: field \"node_api\": sets what \"api\" above sets (line 3, "
             "column 3)");
    load_err("node:\n  pool: 1\n  pool: 2\n",
             "node: field \"pool\": sets what \"pool\" above sets (line 3, "
             "column 3)");
    load_err("hub:\n  api-token: \"a\\tb\"\n",
             "hub: field \"api-token\": the value is not one line of text "
             "(not shown: a secret) (line 2, column 14)");
    load_err_prefix("node:\n  --hub: x\n",
                    "node: \"--hub\" is not an option name; accepted fields "
                    "(the --bridge options without the dashes): hub, "
                    "upstream, ");
    load_err("hub:\n  new_flag: 1\n  new-flag: 2\n",
             "hub: field \"new-flag\": sets what \"new_flag\" above sets "
             "(line 3, column 3)");
    /* An error after a section names no section. */
    load_err("hub: {}\nroutes: {r: {scheme: tcp5, port: 1}}\n",
             "route \"r\": field \"scheme\": \"tcp5\" is not one of tcp, tcp4, "
             "tcp6, udp, udp4, udp6 (line 2, column 22)");
}

static void test_size_limit(void **state)
{
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    size_t len = SL_CONFIG_MAX_BYTES + 1;
    char *big = malloc(len);
    (void)state;

    assert_non_null(big);
    memset(big, '#', len);
    assert_int_equal(sl_config_load_string(big, len, &cfg, err, sizeof(err)),
                     SL_ETOOBIG);
    assert_null(cfg);
    assert_string_equal(err, "the file has 1048577 bytes, more than the "
                             "limit of 1048576");
    /* At the limit: a comment-only file is fine. */
    big[len - 2] = '\n';
    assert_int_equal(
        sl_config_load_string(big, len - 1, &cfg, err, sizeof(err)), 0);
    sl_config_free(cfg);
    free(big);
}

static void test_scheme(void **state)
{
    static const struct {
        const char *s;
        enum sl_scheme scheme;
        enum sl_family family;
    } good[] = {
        {"tcp", SL_SCHEME_TCP, SL_FAMILY_ANY},
        {"tcp4", SL_SCHEME_TCP, SL_FAMILY_V4},
        {"tcp6", SL_SCHEME_TCP, SL_FAMILY_V6},
        {"udp", SL_SCHEME_UDP, SL_FAMILY_ANY},
        {"udp4", SL_SCHEME_UDP, SL_FAMILY_V4},
        {"udp6", SL_SCHEME_UDP, SL_FAMILY_V6},
    };
    char y[512];
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char f[64];
        snprintf(f, sizeof(f), "scheme: %s, port: 1", good[i].s);
        route_yaml(y, sizeof(y), f);
        struct sl_config *cfg = load_ok(y);
        assert_int_equal(cfg->routes[0].scheme, good[i].scheme);
        assert_int_equal(cfg->routes[0].family, good[i].family);
        assert_string_equal(sl_config_scheme_name(&cfg->routes[0]),
                            good[i].s);
        sl_config_free(cfg);
    }
    load_err("routes:\n  ssh-proxy:\n    scheme: tcp5\n    port: 1\n",
             "route \"ssh-proxy\": field \"scheme\": \"tcp5\" is not one of "
             "tcp, tcp4, tcp6, udp, udp4, udp6 (line 3, column 13)");
    route_yaml(y, sizeof(y), "scheme: TCP, port: 1");
    load_err_prefix(y, "route \"r\": field \"scheme\": \"TCP\" is not one of");
    route_yaml(y, sizeof(y), "scheme: {a: b}, port: 1");
    load_err_prefix(y, "route \"r\": field \"scheme\": expected one of tcp, "
                       "tcp4, tcp6, udp, udp4, udp6, got a mapping");
    route_yaml(y, sizeof(y), "port: 1");
    load_err(y, "route \"r\": field \"scheme\": is required: one of tcp, "
                "tcp4, tcp6, udp, udp4, udp6 (line 2, column 6)");
}

static void test_bind(void **state)
{
    char y[512];
    struct sl_config *cfg;
    (void)state;

    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1, bind: \"::1\"}\n");
    assert_string_equal(cfg->routes[0].bind, "::1");
    sl_config_free(cfg);
    /* Stored in canonical form. */
    cfg = load_ok("routes:\n  r: {scheme: tcp6, port: 1, bind: "
                  "\"0:0:0::1\"}\n");
    assert_string_equal(cfg->routes[0].bind, "::1");
    sl_config_free(cfg);
    cfg = load_ok("routes:\n  r: {scheme: udp4, port: 1, bind: 10.1.2.3}\n");
    assert_string_equal(cfg->routes[0].bind, "10.1.2.3");
    sl_config_free(cfg);

    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, bind: localhost");
    load_err(y, "route \"r\": field \"bind\": \"localhost\" is not an IP "
                "address literal (e.g. 0.0.0.0, 127.0.0.1, ::, ::1) "
                "(line 2, column 35)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, bind: 1.2.3.256");
    load_err_prefix(y, "route \"r\": field \"bind\": \"1.2.3.256\" is not");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, bind: \"[::1]\"");
    load_err_prefix(y, "route \"r\": field \"bind\": \"[::1]\" is not");
    route_yaml(y, sizeof(y), "scheme: tcp4, port: 1, bind: \"::\"");
    load_err(y, "route \"r\": field \"bind\": \"::\" is not an IPv4 address,"
                " as scheme tcp4 requires (line 2, column 36)");
    route_yaml(y, sizeof(y), "scheme: udp6, port: 1, bind: 0.0.0.0");
    load_err_prefix(y, "route \"r\": field \"bind\": \"0.0.0.0\" is not an "
                       "IPv6 address, as scheme udp6 requires");
}

static void test_host(void **state)
{
    static const char *const good[] = {
        "localhost", "db.internal", "my_svc", "a-b.example.com.",
        "10.0.0.1", "::1", "fe80::1", "x1", "1a.example",
    };
    static const char *const bad[] = {
        "-a", "a-", "a..b", "a b", "300.1.1.1", "1.2.3", "a/b", "[::1]",
        "\"\"", "a.-b", "http://x",
    };
    char y[512], f[128];
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(f, sizeof(f), "scheme: tcp, port: 1, host: \"%s\"", good[i]);
        route_yaml(y, sizeof(y), f);
        struct sl_config *cfg = load_ok(y);
        assert_string_equal(cfg->routes[0].host, good[i]);
        sl_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(f, sizeof(f), "scheme: tcp, port: 1, host: '%s'", bad[i]);
        route_yaml(y, sizeof(y), f);
        load_err_prefix(y, "route \"r\": field \"host\": ");
    }
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, host: a..b");
    load_err(y, "route \"r\": field \"host\": \"a..b\" is not a host name "
                "(e.g. localhost, db.internal) or an IP address "
                "(line 2, column 35)");
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(y, sizeof(y), "routes:\n  r: {scheme: tcp, port: 1, host: %s}",
             longname);
    load_err_prefix(y, "route \"r\": field \"host\": \"aaaa");
}

static void test_acl(void **state)
{
    char y[512];
    struct sl_config *cfg;
    (void)state;

    cfg = load_ok("routes:\n  r:\n    scheme: tcp\n    port: 1\n    acl:\n"
                  "      allow:\n        - ip:10.0.0.1\n"
                  "        - cidr:192.168.0.0/16\n        - cidr:::1/128\n");
    assert_int_equal(sl_acl_count(cfg->routes[0].acl), 3);
    assert_int_equal(allows(cfg->routes[0].acl, "10.0.0.1"), 1);
    assert_int_equal(allows(cfg->routes[0].acl, "10.0.0.2"), 0);
    sl_config_free(cfg);
    /* Empty lists: no ACL at all. */
    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1, acl: {allow: [], "
                  "deny: }}\n");
    assert_null(cfg->routes[0].acl);
    sl_config_free(cfg);

    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {allow: [x]}");
    load_err(y, "route \"r\": field \"acl.allow\": bad acl rule \"x\": "
                "unknown rule kind; accepted forms: ip:ADDR or "
                "cidr:ADDR/BITS (line 2, column 43)");
    /* Bare addresses are not rules here. */
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {deny: [10.0.0.1]}");
    load_err_prefix(y, "route \"r\": field \"acl.deny\": bad acl rule "
                       "\"10.0.0.1\"");
    route_yaml(y, sizeof(y),
               "scheme: tcp, port: 1, acl: {deny: [\"cidr:1.2.3.4/33\"]}");
    load_err_prefix(y, "route \"r\": field \"acl.deny\": bad acl rule ");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {allow: ip:1.2.3.4}");
    load_err(y, "route \"r\": field \"acl.allow\": expected a list of "
                "ip:ADDR or cidr:ADDR/BITS rules, got a value "
                "(line 2, column 42)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {permit: []}");
    load_err(y, "route \"r\": field \"acl\": unknown key \"permit\"; "
                "accepted keys: allow, deny (line 2, column 35)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: [ip:1.2.3.4]");
    load_err_prefix(y, "route \"r\": field \"acl\": expected a mapping with "
                       "allow: and deny: lists of ip:ADDR or cidr:ADDR/BITS "
                       "rules, got a list");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {allow: [[a]]}");
    load_err_prefix(y, "route \"r\": field \"acl.allow\": expected ip:ADDR "
                       "or cidr:ADDR/BITS rules, got a list");
    route_yaml(y, sizeof(y),
               "scheme: tcp, port: 1, acl: {allow: [], allow: []}");
    load_err_prefix(y, "route \"r\": field \"acl.allow\": appears twice");
    /* A control character never reaches the error line raw. */
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, acl: {allow: [\"ip:\\n\"]}");
    load_err_prefix(y, "route \"r\": field \"acl.allow\": \"ip:\\x0a\" is "
                       "not ip:ADDR or cidr:ADDR/BITS rules");
}

static void test_proxy_protocol(void **state)
{
    static const struct {
        const char *s;
        enum sl_pp_mode mode;
    } good[] = {
        {"disabled", SL_PP_DISABLED}, {"mixed", SL_PP_MIXED},
        {"required", SL_PP_REQUIRED}, {"false", SL_PP_DISABLED},
        {"no", SL_PP_DISABLED},       {"False", SL_PP_DISABLED},
    };
    char y[512], f[128];
    struct sl_config *cfg;
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(f, sizeof(f), "scheme: tcp, port: 1, proxy_protocol: %s",
                 good[i].s);
        route_yaml(y, sizeof(y), f);
        cfg = load_ok(y);
        assert_int_equal(cfg->routes[0].proxy_protocol, good[i].mode);
        sl_config_free(cfg);
    }
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, proxy_protocol: true");
    load_err(y, "route \"r\": field \"proxy_protocol\": \"true\" is not one "
                "of disabled, mixed, required (or false) (line 2, column 45)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, proxy_protocol: v2");
    load_err_prefix(y, "route \"r\": field \"proxy_protocol\": \"v2\" is not");
    /* Accepting PROXY on UDP is refused, but disabled is fine. */
    route_yaml(y, sizeof(y), "scheme: udp, port: 1, proxy_protocol: mixed");
    load_err(y, "route \"r\": field \"proxy_protocol\": \"mixed\" is not "
                "supported on udp routes: accepting PROXY headers works on "
                "tcp only (use disabled; relay_proxy_protocol_header works on "
                "both) (line 2, column 45)");
    route_yaml(y, sizeof(y), "scheme: udp6, port: 1, proxy_protocol: required");
    load_err_prefix(y, "route \"r\": field \"proxy_protocol\": \"required\" is"
                       " not supported on udp6 routes");
    route_yaml(y, sizeof(y), "scheme: udp, port: 1, proxy_protocol: disabled");
    sl_config_free(load_ok(y));

    /* Trusted sources: bare or prefixed, v4 and v6. */
    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1, proxy_protocol: "
                  "required, proxy_protocol_trusted: [10.0.0.0/8, "
                  "\"ip:192.0.2.1\", \"cidr:fd00::/8\", \"::1\"]}\n");
    assert_non_null(cfg->routes[0].pp_trusted);
    assert_int_equal(sl_acl_count(cfg->routes[0].pp_trusted), 4);
    assert_int_equal(allows(cfg->routes[0].pp_trusted, "10.9.9.9"), 1);
    assert_int_equal(allows(cfg->routes[0].pp_trusted, "192.0.2.1"), 1);
    assert_int_equal(allows(cfg->routes[0].pp_trusted, "192.0.2.2"), 0);
    assert_int_equal(cfg->routes[0].pp_trusted_default, 0);
    sl_config_free(cfg);

    /* issue 8 item 7: with no trusted list, PROXY headers are believed
     * from loopback only, never from everyone. */
    for (size_t i = 0; i < 2; i++) {
        char fields[128];
        snprintf(fields, sizeof(fields), "scheme: tcp, port: 1, "
                 "proxy_protocol: %s, acl: {allow: [\"cidr:198.51.100.0/24\"]}",
                 i == 0 ? "mixed" : "required");
        route_yaml(y, sizeof(y), fields);
        cfg = load_ok(y);
        const struct sl_acl *tr = cfg->routes[0].pp_trusted;
        assert_non_null(tr);
        assert_int_equal(cfg->routes[0].pp_trusted_default, 1);
        assert_int_equal(allows(tr, "127.0.0.1"), 1);
        assert_int_equal(allows(tr, "127.9.9.9"), 1);
        assert_int_equal(allows(tr, "::1"), 1);
        assert_int_equal(allows(tr, "::ffff:127.0.0.1"), 1);
        assert_int_equal(allows(tr, "10.0.0.1"), 0);
        assert_int_equal(allows(tr, "198.51.100.7"), 0);
        assert_int_equal(allows(tr, "::2"), 0);
        char line[SL_CONFIG_ERR_MAX];
        assert_non_null(strstr(sl_config_route_describe(
                                   &cfg->routes[0], line, sizeof(line)),
                               " from loopback only"));
        sl_config_free(cfg);
    }
    /* Disabled: no list at all. */
    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1}\n");
    assert_null(cfg->routes[0].pp_trusted);
    sl_config_free(cfg);
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, "
                             "proxy_protocol_trusted: [10.0.0.0/99]");
    load_err_prefix(y, "route \"r\": field \"proxy_protocol_trusted\": bad "
                       "acl rule \"10.0.0.0/99\"");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, "
                             "proxy_protocol_trusted: 10.0.0.1");
    load_err_prefix(y, "route \"r\": field \"proxy_protocol_trusted\": "
                       "expected a list of addresses or CIDRs");
}

static void test_relay(void **state)
{
    static const struct {
        const char *s;
        int v;
    } good[] = {
        {"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0},
        {"on", 1},   {"off", 0},   {"True", 1}, {"FALSE", 0},
    };
    char y[512], f[128];
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        /* Allowed on udp routes as well as tcp. */
        snprintf(f, sizeof(f),
                 "scheme: %s, port: 1, relay_proxy_protocol_header: %s",
                 i % 2 ? "udp" : "tcp", good[i].s);
        route_yaml(y, sizeof(y), f);
        struct sl_config *cfg = load_ok(y);
        assert_int_equal(cfg->routes[0].relay_proxy_protocol_header,
                         good[i].v);
        sl_config_free(cfg);
    }
    route_yaml(y, sizeof(y),
               "scheme: tcp, port: 1, relay_proxy_protocol_header: 1");
    load_err(y, "route \"r\": field \"relay_proxy_protocol_header\": \"1\" "
                "is not true or false (line 2, column 58)");
}

static void test_max_connections(void **state)
{
    char y[512];
    struct sl_config *cfg;
    (void)state;

    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1, max_connections: "
                  "1000000}\n");
    assert_int_equal(cfg->routes[0].max_connections, 1000000);
    sl_config_free(cfg);
    cfg = load_ok("routes:\n  r: {scheme: tcp, port: 1, max_connections: "
                  "0}\n");
    assert_int_equal(cfg->routes[0].max_connections, 4096);
    sl_config_free(cfg);

    static const char *const bad[] = {"-1", "1000001", "1.5", "many",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char f[128], want[256];
        snprintf(f, sizeof(f), "scheme: tcp, port: 1, max_connections: %s",
                 bad[i]);
        route_yaml(y, sizeof(y), f);
        snprintf(want, sizeof(want), "route \"r\": field \"max_connections\""
                 ": \"%s\" is not an integer from 1 to 1000000 (0 or nothing: "
                 "the default, 4096) (line 2, column 46)", bad[i]);
        load_err(y, want);
    }

    /* Per-source and per-prefix caps, each on its own scheme only. */
    cfg = load_ok("routes:\n  t: {scheme: tcp, port: 1, "
                  "max_connections_per_source: 3, tcp_idle_timeout: 90s}\n"
                  "  u: {scheme: udp, port: 2, max_sessions_per_prefix: 0, "
                  "udp_unreplied_timeout: 2s}\n");
    assert_int_equal(cfg->routes[0].max_connections_per_source, 3);
    assert_int_equal(cfg->routes[0].tcp_idle_timeout_ms, 90000);
    assert_int_equal(cfg->routes[1].max_sessions_per_prefix, 256);
    assert_int_equal(cfg->routes[1].udp_unreplied_timeout_ms, 2000);
    sl_config_free(cfg);
    route_yaml(y, sizeof(y), "scheme: udp, port: 1, "
                             "max_connections_per_source: 3");
    load_err_prefix(y, "route \"r\": field \"max_connections_per_source\": "
                       "applies to tcp routes only, not udp");
    route_yaml(y, sizeof(y), "scheme: udp4, port: 1, tcp_idle_timeout: 5s");
    load_err_prefix(y, "route \"r\": field \"tcp_idle_timeout\": applies "
                       "to tcp routes only, not udp4");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, "
                             "max_sessions_per_prefix: 3");
    load_err_prefix(y, "route \"r\": field \"max_sessions_per_prefix\": "
                       "applies to udp routes only, not tcp");
    route_yaml(y, sizeof(y), "scheme: tcp6, port: 1, "
                             "udp_unreplied_timeout: 1s");
    load_err_prefix(y, "route \"r\": field \"udp_unreplied_timeout\": "
                       "applies to udp routes only, not tcp6");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, "
                             "max_connections_per_source: 1000001");
    load_err_prefix(y, "route \"r\": field \"max_connections_per_source\": "
                       "\"1000001\" is not an integer from 1 to 1000000 "
                       "(0 or nothing: the default, 256)");
}

static void test_durations(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"1", 1000},        {"10", 10000},    {"500ms", 500},
        {"10s", 10000},     {"5m", 300000},   {"1h", 3600000},
        {"1m30s", 90000},   {"1h1ms", 3600001}, {"168h", 604800000},
        {"604800", 604800000},
    };
    static const char *const bad[] = {
        "0", "0s", "", "s", "10x", "1.5s", "-1", "10 s", "1d", "169h",
        "604801", "99999999999999999999h", "ms", "10sm", "1h-1m",
    };
    static const char *const fields[] = {
        "connect_timeout", "proxy_protocol_timeout", "udp_idle_timeout",
        "udp_sweep_interval",
    };
    uint64_t ms;
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = 0;
        if (sl_config_parse_duration(good[i].s, &ms) != 0)
            fail_msg("duration \"%s\" refused", good[i].s);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = 7;
        if (sl_config_parse_duration(bad[i], &ms) != SL_EPARSE)
            fail_msg("duration \"%s\" accepted", bad[i]);
        assert_int_equal(ms, 7);
    }
    assert_int_equal(sl_config_parse_duration(NULL, &ms), SL_EPARSE);

    for (size_t i = 0; i < 4; i++) {
        char y[512], f[128], want[512];
        snprintf(f, sizeof(f), "scheme: udp, port: 1, %s: 250ms", fields[i]);
        route_yaml(y, sizeof(y), f);
        struct sl_config *cfg = load_ok(y);
        struct sl_route_config *r = &cfg->routes[0];
        uint64_t got[] = {r->connect_timeout_ms, r->proxy_protocol_timeout_ms,
                          r->udp_idle_timeout_ms, r->udp_sweep_interval_ms};
        for (size_t j = 0; j < 4; j++)
            assert_int_equal(got[j], j == i ? 250
                                     : j == 2 ? 300000
                                     : j == 3 ? 60000
                                              : 10000);
        sl_config_free(cfg);

        snprintf(f, sizeof(f), "scheme: udp, port: 1, %s: 3", fields[i]);
        route_yaml(y, sizeof(y), f);
        cfg = load_ok(y);
        r = &cfg->routes[0];
        uint64_t *p[] = {&r->connect_timeout_ms, &r->proxy_protocol_timeout_ms,
                         &r->udp_idle_timeout_ms, &r->udp_sweep_interval_ms};
        assert_int_equal(*p[i], 3000);
        sl_config_free(cfg);

        snprintf(f, sizeof(f), "scheme: udp, port: 1, %s: 5x", fields[i]);
        route_yaml(y, sizeof(y), f);
        snprintf(want, sizeof(want), "route \"r\": field \"%s\": \"5x\" is "
                 "not a duration: an integer of seconds or NUMBER UNIT pairs "
                 "with UNIT ms, s, m or h (e.g. 500ms, 10s, 1m30s), more than "
                 "0 and at most 168h (line 2, column %zu)", fields[i],
                 strlen("  r: {scheme: udp, port: 1, ") + strlen(fields[i]) +
                     3);
        load_err(y, want);
    }
}

static void test_unknown_and_repeated_fields(void **state)
{
    char y[512];
    (void)state;

    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, sheme: tcp");
    load_err(y, "route \"r\": unknown field \"sheme\"; accepted fields: "
                "scheme, bind, host, port, acl, proxy_protocol, "
                "proxy_protocol_trusted, relay_proxy_protocol_header, "
                "max_connections, max_connections_per_source, "
                "max_sessions_per_prefix, connect_timeout, "
                "proxy_protocol_timeout, tcp_idle_timeout, udp_idle_timeout, "
                "udp_unreplied_timeout, udp_sweep_interval, agent "
                "(line 2, column 29)");
    route_yaml(y, sizeof(y), "scheme: tcp, port: 1, port: 2");
    load_err(y, "route \"r\": field \"port\": appears twice "
                "(line 2, column 29)");
    load_err("routes:\n  r: {scheme: tcp, port: 1}\n  r: {scheme: tcp, port: "
             "2}\n", "routes: route name \"r\" appears twice "
             "(line 3, column 3)");
    load_err("routes:\n  \"a b\": {scheme: tcp, port: 1}\n",
             "routes: route name \"a b\" is not 1-64 letters, digits, '.', "
             "'_' or '-' (line 2, column 3)");
    load_err("routes:\n  [a]: {scheme: tcp, port: 1}\n",
             "expected a route name, got a list (line 2, column 3)");
    load_err("routes:\n  r: {scheme: tcp, port: 1, [x]: 1}\n",
             "route \"r\": expected a field name, got a list "
             "(line 2, column 29)");
    /* NUL bytes inside a scalar are refused, quoted visibly. */
    route_yaml(y, sizeof(y), "scheme: \"tcp\\0x\", port: 1");
    load_err(y, "route \"r\": field \"scheme\": \"tcp\\x00x\" contains a NUL "
                "byte; expected one of tcp, tcp4, tcp6, udp, udp4, udp6 "
                "(line 2, column 15)");
}

static void test_duplicate_listeners(void **state)
{
    struct sl_config *cfg;
    (void)state;

    load_err("routes:\n"
             "  a: {scheme: tcp, port: 2222:22}\n"
             "  b: {scheme: tcp4, bind: 0.0.0.0, port: 2222:23}\n",
             "route \"b\": field \"port\": listener tcp 0.0.0.0:2222 is "
             "already used by route \"a\" (line 3, column 6)");
    load_err("routes:\n"
             "  a: {scheme: udp6, port: 53}\n"
             "  b: {scheme: udp, bind: \"0::0\", port: 53:54}\n",
             "route \"b\": field \"port\": listener udp [::]:53 is already "
             "used by route \"a\" (line 3, column 6)");
    /* Different scheme, address or port, or port 0: fine. */
    cfg = load_ok("routes:\n"
                  "  a: {scheme: tcp, port: 53}\n"
                  "  b: {scheme: udp, port: 53}\n"
                  "  c: {scheme: tcp, bind: 127.0.0.1, port: 53}\n"
                  "  d: {scheme: tcp6, port: 53}\n"
                  "  e: {scheme: tcp, port: 54:53}\n"
                  "  f: {scheme: tcp, port: 0:53}\n"
                  "  g: {scheme: tcp, port: 0:53}\n");
    assert_int_equal(cfg->nroutes, 7);
    sl_config_free(cfg);
}

static void test_aliases(void **state)
{
    struct sl_config *cfg = load_ok(
        "routes:\n"
        "  a: {scheme: tcp, port: 1, acl: &lan {allow: [\"cidr:10.0.0.0/8\"]}}\n"
        "  b: {scheme: tcp, port: 2, acl: *lan}\n");
    (void)state;
    assert_int_equal(sl_acl_count(cfg->routes[0].acl), 1);
    assert_int_equal(sl_acl_count(cfg->routes[1].acl), 1);
    assert_ptr_not_equal(cfg->routes[0].acl, cfg->routes[1].acl);
    sl_config_free(cfg);
    /* A self-referencing node cannot loop the loader. */
    load_err_prefix("routes: &x {a: *x}\n", "route \"a\": unknown field ");
}

static void test_describe(void **state)
{
    char buf[SL_CONFIG_ERR_MAX];
    char small[16];
    struct sl_config *cfg = load_ok(
        "routes:\n"
        "  web: {scheme: tcp6, bind: \"::1\", host: \"fe80::1\", port: 0:80,"
        " proxy_protocol: mixed, proxy_protocol_trusted: [\"::1\"],"
        " relay_proxy_protocol_header: true, max_connections: 10,"
        " acl: {deny: [\"ip:::2\"]}}\n");
    (void)state;

    assert_string_equal(
        sl_config_route_describe(&cfg->routes[0], buf, sizeof(buf)),
        "web: tcp6 [::1]:0 -> [fe80::1]:80, acl: 1 rule, proxy_protocol: "
        "mixed from 1 trusted source rule, relay_proxy_protocol_header, "
        "max_connections: 10");
    assert_string_equal(
        sl_config_route_describe(&cfg->routes[0], small, sizeof(small)),
        "web: tcp6 [::1]");
    assert_null(sl_config_route_describe(&cfg->routes[0], NULL, 0));
    assert_string_equal(sl_config_route_describe(NULL, buf, sizeof(buf)), "");
    sl_config_free(cfg);
}

static void test_error_buffer(void **state)
{
    static const char yaml[] = "routes:\n  r: {scheme: tcp5, port: 1}\n";
    struct sl_config *cfg = NULL;
    char tiny[12];
    (void)state;

    /* Truncated but terminated; NULL and 0 are fine too. */
    assert_int_equal(sl_config_load_string(yaml, strlen(yaml), &cfg, tiny,
                                           sizeof(tiny)), SL_ECONFIG);
    assert_string_equal(tiny, "route \"r\": ");
    assert_int_equal(sl_config_load_string(yaml, strlen(yaml), &cfg, NULL, 0),
                     SL_ECONFIG);
    assert_int_equal(sl_config_load_string(yaml, strlen(yaml), NULL, tiny,
                                           sizeof(tiny)), SL_ECONFIG);
    assert_int_equal(sl_config_load_string("{}", 2, &cfg, tiny, 1), 0);
    sl_config_free(cfg);
    sl_config_free(NULL);

    /* A long bad value is cut short and stays one line. */
    char y[600], err[SL_CONFIG_ERR_MAX];
    char val[200];
    memset(val, 'x', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    snprintf(y, sizeof(y), "routes:\n  r: {scheme: %s, port: 1}\n", val);
    assert_int_equal(sl_config_load_string(y, strlen(y), &cfg, err,
                                           sizeof(err)), SL_ECONFIG);
    assert_non_null(strstr(err, "xxx...\" is not one of"));
    assert_true(strlen(err) < 250);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/sl_test_config_XXXXXX";
    char err[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    static const char yaml[] = "routes:\n  r: {scheme: tcp, port: 1}\n";
    (void)state;

    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    assert_int_equal(sl_config_load_file(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->nroutes, 1);
    sl_config_free(cfg);

    /* Over the limit. */
    assert_int_equal(ftruncate(fd, SL_CONFIG_MAX_BYTES + 1), 0);
    assert_int_equal(sl_config_load_file(path, &cfg, err, sizeof(err)),
                     SL_ETOOBIG);
    assert_null(cfg);
    assert_string_equal(err, "the file is bigger than the limit of 1048576 "
                             "bytes");
    close(fd);
    unlink(path);

    assert_int_equal(sl_config_load_file(path, &cfg, err, sizeof(err)),
                     UV_ENOENT);
    assert_string_equal(err, "cannot open: No such file or directory");
    assert_int_equal(sl_config_load_file("/", &cfg, err, sizeof(err)),
                     SL_ECONFIG);
    assert_string_equal(err, "not a regular file");
    assert_int_equal(sl_config_load_file(NULL, &cfg, err, sizeof(err)),
                     SL_ECONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_syntax),
        cmocka_unit_test(test_port_field),
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_and_top_level),
        cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_section_errors),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_scheme),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_acl),
        cmocka_unit_test(test_proxy_protocol),
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_unknown_and_repeated_fields),
        cmocka_unit_test(test_duplicate_listeners),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
