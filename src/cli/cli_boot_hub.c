/* `sluice boot up --proxy`: the hub role with its admin API, a row of
 * cli_boot.c's role table. Starts the hub (store <state>/hub.db) and the
 * admin API on its own listener; stops the API first (it uses the hub's
 * store), then the hub. */
#include "cli/cli_boot_hub.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme.h"
#include "api/hub_api.h"
#include "api/server.h"
#include "cli/cli_util.h"
#include "core/error.h"
#include "core/rate.h"
#include "core/size.h"
#include "hub/hub.h"
#include "hub/hub_plan.h"
#include "net/addr.h"
#include "tunnel/control.h"

/* Multiplexed data connections a bridge keeps when neither --mux nor
 * --no-mux says. */
#define HUB_MUX_DEFAULT 0
#define HUB_MUX_HELP "0"

#define HUB_HTTP_DEFAULT "127.0.0.1:8080"
#define HUB_API_DEFAULT "127.0.0.1:8081"
#define HUB_HTTPS_DEFAULT "127.0.0.1:8443"
#define HUB_TLS_CERTS_MAX 16

static const char hub_usage[] =
    "usage: sluice boot up --proxy [--http ADDR] [--https ADDR] [--api ADDR]\n"
    "                      [--domain D] [--tls-cert F --tls-key F ...]\n"
    "                      [--state-dir DIR] [--gateway-token T]\n"
    "                      [--api-token T] [--api-require-token] [--daemon]\n"
    "\n"
    "Runs the hub: the public entry point bridges dial and users reach.\n"
    "  --http ADDR        public listener (default " HUB_HTTP_DEFAULT ")\n"
    "  --https ADDR       public TLS listener serving the same (default\n"
    "                     " HUB_HTTPS_DEFAULT " when neither --http nor\n"
    "                     --https is given; with only --http, none)\n"
    "  --tls-cert F --tls-key F  certificate chain and key (PEM, RSA or\n"
    "                     ECDSA), repeatable: chosen by SNI, exact name\n"
    "                     first, then wildcard, else the first given;\n"
    "                     read again on SIGHUP. None: a local CA in\n"
    "                     DIR/tls/ issues the hub's certificate (trust\n"
    "                     DIR/tls/ca.pem, e.g. curl --cacert)\n"
    "  --https-redirect   users on --http get 308 to the https:// URL\n"
    "  --stream-ports A-B  ports handed to tcp:// and udp:// bridges, a\n"
    "                     lease per allocation (default 20000-29999)\n"
    "  --stream-bind IP   where those ports listen (default: the IP of\n"
    "                     the public listener)\n"
    "  --api ADDR         admin REST API and /metrics (default "
    HUB_API_DEFAULT ")\n"
    "  --domain D         identities are <identity>.D (default localhost)\n"
    "  --state-dir DIR    where hub.db, hub.json, hub.pid, hub.log live\n"
    "  --store S          the state store: sqlite:PATH (default\n"
    "                     DIR/hub.db) or postgres://user@host/db, one\n"
    "                     database several hubs share (docs/scale-out.md)\n"
    "  --gateway-token T  demanded (?token=) to allocate a new identity\n"
    "                     (default $SLUICE_GATEWAY_TOKEN)\n"
    "  --gateway-token-file F  the same, read from file F\n"
    "  --api-token T      bearer token of the admin API (default\n"
    "                     $SLUICE_API_TOKEN); required when --api is not a\n"
    "                     loopback address\n"
    "  --api-token-file F  the same, read from file F\n"
    "                     (a token given as T shows in ps: prefer the file\n"
    "                     or the environment)\n"
    "  --api-require-token  demand the token on loopback too\n"
    "  --allocation-rate N  new allocations (no credentials) a minute per\n"
    "                     source address, IPv6 per /64 (default 10; over\n"
    "                     it 429)\n"
    "  --allocation-rate-global N  the same for the whole hub (default 60)\n"
    "  --allocation-idle-expiry D  remove an allocation that has had no\n"
    "                     bridge for D: seconds, or 30m, 12h, 7d, 2w\n"
    "                     (default 7d; 0: never)\n"
    "  --daemon           detach; logs go to DIR/hub.log\n"
    "  --token T          same as --gateway-token\n"
    "  --public-scheme S, --public-url-port P  scheme and port of the URLs\n"
    "                     handed to bridges (behind a TLS front: https 443;\n"
    "                     port 0: none)\n"
    "  --limit-bridges N, --limit-traffic SIZE  limits of new allocations\n"
    "                     (default 0: unlimited); SIZE in bytes or with a\n"
    "                     unit: " SL_SIZE_UNITS_HELP "\n"
    "  --limit-rate RATE  bandwidth cap, each way, of allocations that name\n"
    "                     none and of the free plan (default 0: none);\n"
    "                     RATE: " SL_RATE_UNITS_HELP "\n"
    "  --grant-key FILE   demand grants signed with this Ed25519 public key\n"
    "                     (the grant.pub of sluice grant keygen); a bridge\n"
    "                     without one gets the free plan\n"
    "  --free-bridges N, --free-traffic SIZE  the free plan (default 1\n"
    "                     bridge, 10MB = 10,240,000 bytes; --free-bridges\n"
    "                     0: no bridge without a grant)\n"
    "  --cookie-isolation[=on|off]  remove Set-Cookie Domain attributes\n"
    "                     naming the domain or above, so no identity sets\n"
    "                     cookies on another (default on, off for\n"
    "                     localhost)\n"
    "  --client-timeout-ms MS  a user idle in a request body, or not reading\n"
    "                     its answer (default 60000; then 408 or close)\n"
    "  --server-timeout-ms MS  no response bytes from the bridge\n"
    "                     (default 60000; then 504 or close)\n"
    "  --tunnel-timeout-ms MS  an upgraded (101) pair idle both ways\n"
    "                     (default 3600000)\n"
    "  --max-user-conns N  user connections in all (default 10000, at most\n"
    "                     half the descriptors; over it 503)\n"
    "  --max-conns-per-ip N  user connections per source address\n"
    "                     (default 256; over it 429)\n"
    "  --max-pairs N      concurrent requests per identity (default 1024;\n"
    "                     over it 503)\n"
    "  --max-data-conns N  data connections per identity\n"
    "                     (default max-pairs + 16; over it 429 to the bridge)\n"
    "  --mux N            multiplexed data connections each bridge keeps\n"
    "                     (protocol v2; 1-4; 0 = none, default " HUB_MUX_HELP ")\n"
    "  --no-mux           the same as --mux 0: a data connection per user\n"
    "                     connection, from each bridge's pool\n"
    "  --acme URL         publicly trusted certificates from this ACME\n"
    "                     directory: one per identity by TLS-ALPN-01 on the\n"
    "                     --https port (the local CA serves until it comes)\n"
    "  --acme-email E     contact address of the ACME account\n"
    "  --acme-ca FILE     CA bundle the ACME server's HTTPS is checked with\n"
    "  --acme-eab KID:KEY  external account binding (default\n"
    "                     $SLUICE_ACME_EAB)\n"
    "  --acme-dns-update HOST:PORT  instead, one certificate for D and *.D\n"
    "                     by DNS-01: TXT records put on this DNS server\n"
    "                     (RFC 2136), with --acme-tsig-key FILE (the key\n"
    "                     file nsupdate -k reads; hmac-sha256)\n"
    "  --acme-orders-per-hour N  orders started in any hour (default 30)\n"
    "\n"
    "Once listening, one line goes to standard output:\n"
    "  hub listening http://<addr> domain <domain>\n"
    "  hub listening https://<addr> domain <domain>   (with TLS)\n"
    "  hub ca <path>                                  (the local CA)\n";

struct hub_opts {
    const char *http, *https, *api, *domain, *gateway_token, *api_token;
    const char *stream_bind;
    long stream_min, stream_max;
    const char *tls_cert[HUB_TLS_CERTS_MAX], *tls_key[HUB_TLS_CERTS_MAX];
    size_t ntls_cert, ntls_key;
    int https_redirect;
    const char *scheme;
    int require_token;
    /* Secrets kept out of argv, and the allocation guards. */
    const char *gateway_token_file, *api_token_file;
    char gateway_token_buf[512], api_token_buf[512];
    unsigned long long alloc_rate, alloc_rate_global;
    int alloc_expiry_given;
    uint64_t alloc_expiry_s;
    int cookie_isolation; /* SL_HUB_COOKIES_* */
    long public_port; /* 0: the listener's; -1: none */
    unsigned long long limit_bridges, limit_traffic;
    /* Plans: grants, the free plan, the default cap, rotation. */
    const char *grant_key;
    const char *store; /* --store: sqlite:PATH or postgres://... */
    long long free_bridges, free_traffic;
    int free_given; /* 1: --free-bridges, 2: --free-traffic */
    uint64_t limit_rate;
    unsigned long long rotate_grace_ms; /* hidden: for tests */
    /* Hidden knobs for tests, in milliseconds (0: the protocol's). */
    unsigned long long pairing_window_ms, head_timeout_ms, pool_age_ms;
    unsigned long long ping_ms, dead_ms, flush_ms;
    /* Idle timeouts (ms) and caps; 0: the hub's defaults. */
    unsigned long long client_timeout_ms, server_timeout_ms;
    unsigned long long tunnel_timeout_ms;
    unsigned long long max_user_conns, max_conns_per_ip, max_pairs;
    unsigned long long max_data_conns;
    unsigned long long udp_idle_ms; /* hidden: UDP flow expiry */
    int mux, mux_given; /* --mux N, --no-mux */
    /* ACME: the directory and the rest; numbers hidden but the cap. */
    const char *acme, *acme_email, *acme_ca, *acme_eab, *acme_dns;
    const char *acme_tsig;
    unsigned long long acme_per_hour, acme_retry_ms, acme_renew_ms;
    unsigned long long acme_poll_ms, acme_dns_wait_ms;
};

static const struct {
    const char *name;
    size_t off;
} numeric[] = {
    {"--limit-bridges", offsetof(struct hub_opts, limit_bridges)},
    {"--allocation-rate", offsetof(struct hub_opts, alloc_rate)},
    {"--allocation-rate-global", offsetof(struct hub_opts, alloc_rate_global)},
    {"--pairing-window-ms", offsetof(struct hub_opts, pairing_window_ms)},
    {"--head-timeout-ms", offsetof(struct hub_opts, head_timeout_ms)},
    {"--pool-age-ms", offsetof(struct hub_opts, pool_age_ms)},
    {"--ping-ms", offsetof(struct hub_opts, ping_ms)},
    {"--dead-ms", offsetof(struct hub_opts, dead_ms)},
    {"--flush-ms", offsetof(struct hub_opts, flush_ms)},
    {"--client-timeout-ms", offsetof(struct hub_opts, client_timeout_ms)},
    {"--server-timeout-ms", offsetof(struct hub_opts, server_timeout_ms)},
    {"--tunnel-timeout-ms", offsetof(struct hub_opts, tunnel_timeout_ms)},
    {"--max-user-conns", offsetof(struct hub_opts, max_user_conns)},
    {"--max-conns-per-ip", offsetof(struct hub_opts, max_conns_per_ip)},
    {"--max-pairs", offsetof(struct hub_opts, max_pairs)},
    {"--max-data-conns", offsetof(struct hub_opts, max_data_conns)},
    {"--udp-idle-ms", offsetof(struct hub_opts, udp_idle_ms)},
    {"--rotate-grace-ms", offsetof(struct hub_opts, rotate_grace_ms)},
    {"--acme-orders-per-hour", offsetof(struct hub_opts, acme_per_hour)},
    {"--acme-retry-ms", offsetof(struct hub_opts, acme_retry_ms)},
    {"--acme-renew-ms", offsetof(struct hub_opts, acme_renew_ms)},
    {"--acme-poll-ms", offsetof(struct hub_opts, acme_poll_ms)},
    {"--acme-dns-wait-ms", offsetof(struct hub_opts, acme_dns_wait_ms)},
};

/* Returns 1 and stores the value if argv[*i] is one of the numeric
 * options (advancing *i for "--opt value"), 0 if it is not, 2 on a bad or
 * missing value. */
static int take_numeric(int argc, char **argv, int *i, struct hub_opts *o)
{
    for (size_t k = 0; k < sizeof(numeric) / sizeof(numeric[0]); k++) {
        const char *v;
        int m = sl_cli_opt_value(argc, argv, i, numeric[k].name, &v);
        if (m < 0)
            return 2;
        if (m == 0)
            continue;
        char *end = NULL;
        unsigned long long x = strtoull(v, &end, 10);
        if (*v == '\0' || *v == '-' || *end != '\0') {
            fprintf(stderr, "sluice: %s: '%s' is not a number\n",
                    numeric[k].name, v);
            return 2;
        }
        *(unsigned long long *)(void *)((char *)o + numeric[k].off) = x;
        return 1;
    }
    return 0;
}

/* Reads a token from file path (flag names it in errors) into buf, its
 * trailing newline and spaces dropped, and points *out at it. A secret on
 * the command line shows in ps; in a file or the environment it does
 * not. Returns 0, or 2 (said on stderr). */
static int take_secret(const char *path, const char *flag, char *buf,
                       size_t cap, const char **out)
{
    if (path == NULL)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "sluice: %s %s: %s\n", flag, path, strerror(errno));
        return 2;
    }
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n == cap) {
        fprintf(stderr, "sluice: %s %s: %s\n", flag, path,
                bad ? "cannot read it" : "longer than a token can be");
        return 2;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n) != NULL || strchr(buf, '\n')) {
        fprintf(stderr, "sluice: %s %s: %s\n", flag, path,
                n == 0 ? "the file is empty" : "not one line of text");
        return 2;
    }
    *out = buf;
    return 0;
}

/* A cap beyond 32 bits is no cap at all. */
static uint32_t cap_u32(unsigned long long v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* The role's state: its options, then what runs. */
struct hub_role {
    struct hub_opts o;
    struct sl_hub_api *api;
};

static int hub_parse(void *st, const struct sl_boot_common *c, int argc,
                     char **argv, int *i)
{
    struct hub_opts *o = &((struct hub_role *)st)->o;
    static const struct sl_cli_str_opt with_value[] = {
        {"--http", offsetof(struct hub_opts, http)},
        {"--https", offsetof(struct hub_opts, https)},
        {"--stream-bind", offsetof(struct hub_opts, stream_bind)},
        {"--api", offsetof(struct hub_opts, api)},
        {"--domain", offsetof(struct hub_opts, domain)},
        {"--gateway-token", offsetof(struct hub_opts, gateway_token)},
        {"--api-token", offsetof(struct hub_opts, api_token)},
        {"--token", offsetof(struct hub_opts, gateway_token)},
        {"--gateway-token-file", offsetof(struct hub_opts, gateway_token_file)},
        {"--api-token-file", offsetof(struct hub_opts, api_token_file)},
        {"--public-scheme", offsetof(struct hub_opts, scheme)},
        {"--grant-key", offsetof(struct hub_opts, grant_key)},
        {"--acme", offsetof(struct hub_opts, acme)},
        {"--acme-email", offsetof(struct hub_opts, acme_email)},
        {"--acme-ca", offsetof(struct hub_opts, acme_ca)},
        {"--acme-eab", offsetof(struct hub_opts, acme_eab)},
        {"--acme-dns-update", offsetof(struct hub_opts, acme_dns)},
        {"--acme-tsig-key", offsetof(struct hub_opts, acme_tsig)},
        {"--store", offsetof(struct hub_opts, store)},
    };
    (void)c;
    const char *a = argv[*i], *val;
    int m = sl_cli_opt_strings(argc, argv, i, with_value,
                               sizeof(with_value) / sizeof(with_value[0]), o);
    if (m != 0)
        return m < 0 ? 2 : 1;
    if (strcmp(a, "--api-require-token") == 0) {
        o->require_token = 1;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--stream-ports", &val);
    if (m < 0)
        return 2;
    if (m > 0) {
        char *end = NULL;
        long lo = strtol(val, &end, 10), hi = -1;
        if (end != NULL && *end == '-')
            hi = strtol(end + 1, &end, 10);
        if (end == NULL || *end != '\0' || lo < 1 || hi < lo || hi > 65535) {
            fprintf(stderr, "sluice: --stream-ports: '%s' is not a range "
                    "A-B of ports (e.g. 20000-29999)\n", val);
            return 2;
        }
        o->stream_min = lo;
        o->stream_max = hi;
        return 1;
    }
    if (strcmp(a, "--https-redirect") == 0) {
        o->https_redirect = 1;
        return 1;
    }
    int cert = 0;
    if ((m = sl_cli_opt_value(argc, argv, i, "--tls-cert", &val)) != 0 ||
        (cert = 1, m = sl_cli_opt_value(argc, argv, i, "--tls-key", &val)) !=
            0) {
        const char **list = cert ? o->tls_key : o->tls_cert;
        size_t *n = cert ? &o->ntls_key : &o->ntls_cert;
        if (m < 0)
            return 2;
        if (*n == HUB_TLS_CERTS_MAX) {
            fprintf(stderr, "sluice: at most %d certificates\n",
                    HUB_TLS_CERTS_MAX);
            return 2;
        }
        list[(*n)++] = val;
        return 1;
    }
    if (strncmp(a, "--cookie-isolation", 18) == 0 &&
        (a[18] == '\0' || a[18] == '=')) {
        if (a[18] == '\0' || strcmp(a + 19, "on") == 0) {
            o->cookie_isolation = SL_HUB_COOKIES_ON;
        } else if (strcmp(a + 19, "off") == 0) {
            o->cookie_isolation = SL_HUB_COOKIES_OFF;
        } else {
            fprintf(stderr, "sluice: --cookie-isolation: '%s' is not on or "
                    "off\n", a + 19);
            return 2;
        }
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--limit-traffic", &val);
    if (m != 0) {
        uint64_t bytes;
        if (m < 0 || sl_size_parse(val, &bytes) != 0) {
            if (m > 0)
                fprintf(stderr, "sluice: --limit-traffic: '%s' is not a "
                        "size (e.g. 10MB, 1GiB, 0)\n", val);
            return 2;
        }
        o->limit_traffic = bytes;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--limit-rate", &val);
    if (m != 0) {
        if (m < 0 || sl_rate_parse(val, &o->limit_rate) != 0) {
            if (m > 0)
                fprintf(stderr, "sluice: --limit-rate: '%s' is not a rate "
                        "(e.g. 100Mbit, 10MB/s, 0)\n", val);
            return 2;
        }
        return 1;
    }
    int traffic = 0;
    if ((m = sl_cli_opt_value(argc, argv, i, "--free-bridges", &val)) != 0 ||
        (traffic = 1,
         m = sl_cli_opt_value(argc, argv, i, "--free-traffic", &val)) != 0) {
        uint64_t v = 0;
        char *end = NULL;
        int bad = m < 0;
        if (!bad && traffic)
            bad = sl_size_parse(val, &v) != 0;
        else if (!bad)
            v = strtoull(val, &end, 10),
            bad = *val < '0' || *val > '9' || *end != '\0' || v > 1000000;
        if (bad) {
            if (m > 0)
                fprintf(stderr, "sluice: %s: '%s' is not a %s\n",
                        traffic ? "--free-traffic" : "--free-bridges", val,
                        traffic ? "size (e.g. 10MB, 0)" : "count");
            return 2;
        }
        *(traffic ? &o->free_traffic : &o->free_bridges) = (long long)v;
        o->free_given |= traffic ? 2 : 1;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--allocation-idle-expiry", &val);
    if (m != 0) {
        if (m < 0 || sl_duration_parse_s(val, &o->alloc_expiry_s) != 0) {
            if (m > 0)
                fprintf(stderr, "sluice: --allocation-idle-expiry: '%s' is "
                        "not a duration (e.g. 3600, 12h, 7d, 0)\n", val);
            return 2;
        }
        o->alloc_expiry_given = 1;
        return 1;
    }
    if (strcmp(a, "--no-mux") == 0) {
        o->mux = 0;
        o->mux_given = 1;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--mux", &val);
    if (m < 0)
        return 2;
    if (m > 0) {
        char *end = NULL;
        long n = strtol(val, &end, 10);
        if (*val == '\0' || *end != '\0' || n < 0 || n > SL_CTL_MUX_MAX) {
            fprintf(stderr, "sluice: --mux: '%s' is not a count of 0 to "
                    "%d\n", val, SL_CTL_MUX_MAX);
            return 2;
        }
        o->mux = (int)n;
        o->mux_given = 1;
        return 1;
    }
    m = sl_cli_opt_value(argc, argv, i, "--public-url-port", &val);
    if (m < 0)
        return 2;
    if (m > 0) {
        char *end = NULL;
        long p = strtol(val, &end, 10);
        if (*val == '\0' || *end != '\0' || p < 0 || p > 65535) {
            fprintf(stderr, "sluice: --public-url-port: '%s' is not a "
                    "port\n", val);
            return 2;
        }
        o->public_port = p == 0 ? -1 : p;
        return 1;
    }
    return take_numeric(argc, argv, i, o);
}

static int hub_check(void *st, const struct sl_boot_common *c)
{
    struct hub_opts *o = &((struct hub_role *)st)->o;
    (void)c;
    if (take_secret(o->gateway_token_file, "--gateway-token-file",
                    o->gateway_token_buf, sizeof(o->gateway_token_buf),
                    &o->gateway_token) != 0 ||
        take_secret(o->api_token_file, "--api-token-file", o->api_token_buf,
                    sizeof(o->api_token_buf), &o->api_token) != 0)
        return 2;
    if (o->gateway_token == NULL) {
        const char *env = getenv("SLUICE_GATEWAY_TOKEN");
        if (env != NULL && env[0] != '\0')
            o->gateway_token = env;
    }
    if (o->api_token == NULL) {
        const char *env = getenv("SLUICE_API_TOKEN");
        if (env != NULL && env[0] != '\0')
            o->api_token = env;
    }
    if (o->ntls_cert != o->ntls_key) {
        fprintf(stderr, "sluice: --tls-cert and --tls-key come in pairs "
                "(%zu certificates, %zu keys)\n", o->ntls_cert, o->ntls_key);
        return 2;
    }
    if ((o->ntls_cert > 0 || o->https_redirect) && o->https == NULL &&
        o->http != NULL) {
        fprintf(stderr, "sluice: --tls-cert and --https-redirect need "
                "--https ADDR\n");
        return 2;
    }
    const char *api_addr = o->api ? o->api : HUB_API_DEFAULT;
    if (o->acme_eab == NULL && o->acme != NULL) {
        const char *env = getenv("SLUICE_ACME_EAB");
        if (env != NULL && env[0] != '\0')
            o->acme_eab = env;
    }
    if (o->acme == NULL &&
        (o->acme_email || o->acme_ca || o->acme_eab || o->acme_dns ||
         o->acme_tsig || o->acme_per_hour)) {
        fprintf(stderr, "sluice: the --acme-* options need --acme URL\n");
        return 2;
    }
    if ((o->acme_dns == NULL) != (o->acme_tsig == NULL)) {
        fprintf(stderr, "sluice: --acme-dns-update and --acme-tsig-key go "
                "together\n");
        return 2;
    }
    if (o->acme != NULL && o->https == NULL && o->http != NULL) {
        fprintf(stderr, "sluice: --acme needs --https ADDR (the CA "
                "validates on the TLS port)\n");
        return 2;
    }
    if (o->free_given && o->grant_key == NULL) {
        fprintf(stderr, "sluice: --free-bridges and --free-traffic shape the "
                "plan of bridges without a grant: they need --grant-key\n");
        return 2;
    }
    /* Refuse a token-less public API here, in the terminal. */
    if ((o->require_token || !sl_api_listen_is_loopback(api_addr)) &&
        o->api_token == NULL) {
        fprintf(stderr, "sluice: --api %s %s: give --api-token (or "
                "$SLUICE_API_TOKEN)\n", api_addr,
                o->require_token ? "with --api-require-token needs a token"
                                 : "is not a loopback address");
        return 2;
    }
    return 0;
}

static int hub_start(void *st, struct sl_ctx *ctx,
                     const struct sl_boot_common *c, struct sl_role_info *info)
{
    struct hub_role *hr = st;
    const struct hub_opts *o = &hr->o;
    const char *api_addr = o->api ? o->api : HUB_API_DEFAULT;
    /* No listener named: both defaults. Else only those named. */
    int neither = o->http == NULL && o->https == NULL;
    struct sl_hub_plan_options po = {
        .grant_key_file = o->grant_key,
        .free_bridges = o->free_given & 1 ? o->free_bridges : -1,
        .free_traffic = o->free_given & 2 ? o->free_traffic : -1,
        .default_rate = o->limit_rate,
        .rotate_grace_ms = o->rotate_grace_ms,
    };
    struct sl_hub_options ho = {
        .http_addr = o->http ? o->http : HUB_HTTP_DEFAULT,
        .no_http = o->http == NULL && o->https != NULL,
        .https_addr = neither ? HUB_HTTPS_DEFAULT : o->https,
        .tls_cert_files = o->tls_cert,
        .tls_key_files = o->tls_key,
        .ntls_certs = o->ntls_cert,
        .https_redirect = o->https_redirect,
        .stream_port_min = (int)o->stream_min,
        .stream_port_max = (int)o->stream_max,
        .stream_bind = o->stream_bind,
        .udp_idle_ms = o->udp_idle_ms,
        .tls_for_api = !sl_api_listen_is_loopback(api_addr),
        .domain = o->domain,
        .gateway_token = o->gateway_token,
        .state_dir = c->state_dir,
        .store_url = o->store,
        .public_scheme = o->scheme,
        .public_port = (int)o->public_port,
        .default_limits = {.bridges = o->limit_bridges,
                           .traffic = o->limit_traffic},
        .plans = &po,
        .pairing_window_ms = o->pairing_window_ms,
        .head_timeout_ms = o->head_timeout_ms,
        .pool_max_age_ms = o->pool_age_ms,
        .ping_ms = o->ping_ms,
        .dead_ms = o->dead_ms,
        .flush_ms = o->flush_ms,
        .client_timeout_ms = o->client_timeout_ms,
        .server_timeout_ms = o->server_timeout_ms,
        .tunnel_timeout_ms = o->tunnel_timeout_ms,
        .max_user_conns = cap_u32(o->max_user_conns),
        .max_conns_per_ip = cap_u32(o->max_conns_per_ip),
        .max_pairs = cap_u32(o->max_pairs),
        .max_data_conns = cap_u32(o->max_data_conns),
        .alloc_rate_per_source = o->alloc_rate == 0 ? 10
                                 : o->alloc_rate > UINT32_MAX
                                     ? UINT32_MAX
                                     : (uint32_t)o->alloc_rate,
        .alloc_rate_global = o->alloc_rate_global == 0 ? 60
                             : o->alloc_rate_global > UINT32_MAX
                                 ? UINT32_MAX
                                 : (uint32_t)o->alloc_rate_global,
        .alloc_idle_expiry_s = o->alloc_expiry_given ? o->alloc_expiry_s
                                                     : 7 * 86400,
        .cookie_isolation = o->cookie_isolation,
        .mux_conns = o->mux_given ? o->mux : HUB_MUX_DEFAULT,
    };
    struct sl_acme_opts acme = {
        .directory = o->acme,
        .email = o->acme_email,
        .ca_file = o->acme_ca,
        .eab = o->acme_eab,
        .dns_update = o->acme_dns,
        .tsig_key_file = o->acme_tsig,
        .orders_per_hour = cap_u32(o->acme_per_hour),
        .retry_ms = o->acme_retry_ms,
        .renew_ms = o->acme_renew_ms,
        .poll_ms = o->acme_poll_ms,
        .dns_visible_ms = o->acme_dns_wait_ms,
    };
    if (o->acme != NULL)
        ho.acme = &acme;
    /* scrypt takes 16 MiB per hash in the thread pool. A fixed mmap
     * threshold keeps glibc from raising it after the first free, so each
     * hash's block goes back to the system instead of staying in an
     * arena (tens of MB of RSS for nothing). Fixing it also fixes the
     * trim threshold at 128 KiB, so the top of the heap would be given
     * back and faulted in again on every 64 KiB read: keep 1 MiB. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    int rc = sl_hub_start(ctx, &ho);
    if (rc != 0)
        return rc;
    struct sl_hub_api_opts ao = {.require_token = o->require_token};
    rc = sl_hub_api_start(ctx, ctx->hub, api_addr, o->api_token,
                          sl_hub_store(ctx->hub), &ao, &hr->api);
    if (rc != 0) {
        sl_error(&ctx->log, "boot: cannot start the admin API on %s: %s",
                 api_addr, sl_strerror(rc));
        sl_hub_stop(ctx->hub, NULL, NULL);
        return rc;
    }
    sl_hub_api_address(hr->api, info->api, sizeof(info->api));
    sl_hub_address(ctx->hub, info->http, sizeof(info->http));
    const char *domain = o->domain ? o->domain : "localhost";
    if (!ho.no_http)
        printf("hub listening http://%s domain %s\n", info->http, domain);
    char tls_addr[SL_ADDR_STRLEN];
    if (sl_hub_tls_address(ctx->hub, tls_addr, sizeof(tls_addr)) == 0)
        printf("hub listening https://%s domain %s\n", tls_addr, domain);
    if (sl_hub_ca_path(ctx->hub) != NULL)
        printf("hub ca %s\n", sl_hub_ca_path(ctx->hub));
    printf("hub api %s://%s\n",
           sl_api_listen_is_loopback(api_addr) ? "http" : "https", info->api);
    fflush(stdout);
    return 0;
}

static void hub_stop(void *st, struct sl_ctx *ctx, sl_boot_stopped_cb done,
                     void *arg)
{
    struct hub_role *hr = st;
    /* The API first: it reads the hub's store, which the hub closes. */
    sl_hub_api_close(hr->api);
    hr->api = NULL;
    sl_hub_stop(ctx->hub, done, arg);
}

static void hub_reload(void *st, struct sl_ctx *ctx)
{
    (void)st;
    if (ctx->hub != NULL)
        sl_hub_reload(ctx->hub);
}

const struct sl_boot_role sl_boot_role_hub = {
    .name = "hub",
    .flag = "--proxy",
    .usage = hub_usage,
    .state_dir = 1,
    .state_size = sizeof(struct hub_role),
    .parse = hub_parse,
    .check = hub_check,
    .start = hub_start,
    .stop = hub_stop,
    .reload = hub_reload,
};
