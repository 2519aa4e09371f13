/* `sluice boot up --proxy`: the hub role with its admin API. Resolves and
 * creates the state directory, detaches when asked (before the loop
 * exists), starts the hub (store <state>/hub.db) and the admin API on its
 * own listener, publishes hub.json, and runs until SIGINT/SIGTERM; then
 * closes the API first (it uses the hub's store) and stops the hub. */
#include "cli/cli_boot_hub.h"

#include <malloc.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/hub_api.h"
#include "api/server.h"
#include "core/daemon.h"
#include "core/error.h"
#include "core/statedir.h"
#include "hub/hub.h"

#define HUB_HTTP_DEFAULT "127.0.0.1:8080"
#define HUB_API_DEFAULT "127.0.0.1:8081"

static const char hub_usage[] =
    "usage: sluice boot up --proxy [--http ADDR] [--api ADDR] [--domain D]\n"
    "                      [--state-dir DIR] [--gateway-token T]\n"
    "                      [--api-token T] [--api-require-token] [--daemon]\n"
    "\n"
    "Runs the hub: the public entry point bridges dial and users reach.\n"
    "  --http ADDR        public listener (default " HUB_HTTP_DEFAULT ")\n"
    "  --api ADDR         admin REST API and /metrics (default "
    HUB_API_DEFAULT ")\n"
    "  --domain D         identities are <identity>.D (default localhost)\n"
    "  --state-dir DIR    where hub.db, hub.json, hub.pid, hub.log live\n"
    "  --gateway-token T  demanded (?token=) to allocate a new identity\n"
    "  --api-token T      bearer token of the admin API (default\n"
    "                     $SLUICE_API_TOKEN); required when --api is not a\n"
    "                     loopback address\n"
    "  --api-require-token  demand the token on loopback too\n"
    "  --daemon           detach; logs go to DIR/hub.log\n"
    "  --token T          same as --gateway-token\n"
    "  --public-scheme S, --public-url-port P  scheme and port of the URLs\n"
    "                     handed to bridges (behind a TLS front: https 443;\n"
    "                     port 0: none)\n"
    "  --limit-bridges N, --limit-traffic BYTES  limits of new allocations\n"
    "                     (default 0: unlimited)\n"
    "\n"
    "Once listening, one line goes to standard output:\n"
    "  hub listening http://<addr> domain <domain>\n";

struct hub_opts {
    const char *http, *api, *domain, *state_dir, *gateway_token, *api_token;
    const char *scheme;
    int daemon, require_token;
    long public_port; /* 0: the listener's; -1: none */
    unsigned long long limit_bridges, limit_traffic;
    /* Hidden knobs for tests, in milliseconds (0: the protocol's). */
    unsigned long long pairing_window_ms, head_timeout_ms, pool_age_ms;
    unsigned long long ping_ms, dead_ms, flush_ms;
};

static const struct {
    const char *name;
    size_t off;
} numeric[] = {
    {"--limit-bridges", offsetof(struct hub_opts, limit_bridges)},
    {"--limit-traffic", offsetof(struct hub_opts, limit_traffic)},
    {"--pairing-window-ms", offsetof(struct hub_opts, pairing_window_ms)},
    {"--head-timeout-ms", offsetof(struct hub_opts, head_timeout_ms)},
    {"--pool-age-ms", offsetof(struct hub_opts, pool_age_ms)},
    {"--ping-ms", offsetof(struct hub_opts, ping_ms)},
    {"--dead-ms", offsetof(struct hub_opts, dead_ms)},
    {"--flush-ms", offsetof(struct hub_opts, flush_ms)},
};

/* Returns 1 and stores the value if a is one of the numeric options
 * (advancing *i for "--opt value"), 0 if it is not, 2 on a bad value. */
static int take_numeric(struct sl_cli *cli, int *i, struct hub_opts *o)
{
    const char *a = cli->argv[*i];
    for (size_t k = 0; k < sizeof(numeric) / sizeof(numeric[0]); k++) {
        size_t n = strlen(numeric[k].name);
        const char *v;
        if (strncmp(a, numeric[k].name, n) != 0)
            continue;
        if (a[n] == '=')
            v = a + n + 1;
        else if (a[n] == '\0' && *i + 1 < cli->argc)
            v = cli->argv[++*i];
        else
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

struct hub_boot {
    struct sl_ctx *ctx;
    struct sl_hub_api *api;
    uv_signal_t sigint, sigterm;
    int stopping;
};

static int parse(struct sl_cli *cli, struct hub_opts *o)
{
    int rc;
    static const struct {
        const char *name;
        size_t off;
    } with_value[] = {
        {"--http", offsetof(struct hub_opts, http)},
        {"--api", offsetof(struct hub_opts, api)},
        {"--domain", offsetof(struct hub_opts, domain)},
        {"--state-dir", offsetof(struct hub_opts, state_dir)},
        {"--gateway-token", offsetof(struct hub_opts, gateway_token)},
        {"--api-token", offsetof(struct hub_opts, api_token)},
        {"--token", offsetof(struct hub_opts, gateway_token)},
        {"--public-scheme", offsetof(struct hub_opts, scheme)},
    };
    for (int i = 1; i < cli->argc; i++) {
        const char *a = cli->argv[i];
        const char *val = NULL;
        size_t k;
        for (k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++) {
            size_t n = strlen(with_value[k].name);
            if (strncmp(a, with_value[k].name, n) != 0)
                continue;
            if (a[n] == '=') {
                val = a + n + 1;
            } else if (a[n] == '\0') {
                if (i + 1 >= cli->argc) {
                    fprintf(stderr, "sluice: %s needs a value\n", a);
                    return 2;
                }
                val = cli->argv[++i];
            } else {
                continue;
            }
            break;
        }
        if (val != NULL) {
            const char **slot =
                (const char **)(void *)((char *)o + with_value[k].off);
            *slot = val;
        } else if (strcmp(a, "--proxy") == 0) {
            /* that is why we are here */
        } else if (strcmp(a, "--daemon") == 0) {
            o->daemon = 1;
        } else if (strcmp(a, "--api-require-token") == 0) {
            o->require_token = 1;
        } else if (strncmp(a, "--public-url-port", 17) == 0 &&
                   (a[17] == '=' || (a[17] == '\0' && i + 1 < cli->argc))) {
            const char *v = a[17] == '=' ? a + 18 : cli->argv[++i];
            char *end = NULL;
            long p = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || p < 0 || p > 65535) {
                fprintf(stderr, "sluice: --public-url-port: '%s' is not a "
                        "port\n", v);
                return 2;
            }
            o->public_port = p == 0 ? -1 : p;
        } else if ((rc = take_numeric(cli, &i, o)) != 0) {
            if (rc == 2)
                return 2;
        } else {
            fprintf(stderr, "sluice: boot up --proxy: unknown option "
                    "'%s'\n%s", a, hub_usage);
            return 2;
        }
    }
    if (o->api_token == NULL) {
        const char *env = getenv("SLUICE_API_TOKEN");
        if (env != NULL && env[0] != '\0')
            o->api_token = env;
    }
    return 0;
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_hub_stopped(void *arg)
{
    struct hub_boot *hb = arg;
    uv_close((uv_handle_t *)&hb->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&hb->sigterm, on_signal_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct hub_boot *hb = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (hb->stopping) {
        sl_warn(&hb->ctx->log, "boot: second %s; exiting now", name);
        _exit(1);
    }
    hb->stopping = 1;
    hb->ctx->stopping = 1;
    sl_info(&hb->ctx->log, "boot: %s received; stopping the hub", name);
    /* The API first: it reads the hub's store, which the hub closes. */
    sl_hub_api_close(hb->api);
    hb->api = NULL;
    sl_hub_stop(hb->ctx->hub, on_hub_stopped, hb);
}

int sl_cli_boot_hub(struct sl_cli *cli)
{
    struct sl_ctx *ctx = cli->ctx;
    struct hub_opts o;
    memset(&o, 0, sizeof(o));
    if (sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(hub_usage, stdout);
        return 0;
    }
    int rc = parse(cli, &o);
    if (rc != 0)
        return rc;
    const char *api_addr = o.api ? o.api : HUB_API_DEFAULT;
    /* Refuse a token-less public API here, in the terminal. */
    if ((o.require_token || !sl_api_listen_is_loopback(api_addr)) &&
        o.api_token == NULL) {
        fprintf(stderr, "sluice: --api %s %s: give --api-token (or "
                "$SLUICE_API_TOKEN)\n", api_addr,
                o.require_token ? "with --api-require-token needs a token"
                                : "is not a loopback address");
        return 2;
    }

    char dir[SL_STATEDIR_PATH_MAX];
    rc = sl_statedir_resolve(o.state_dir, dir, sizeof(dir));
    if (rc == 0)
        rc = sl_statedir_ensure(dir);
    if (rc != 0) {
        fprintf(stderr, "sluice: state directory: %s (use --state-dir)\n",
                sl_strerror(rc));
        return 1;
    }
    char pid_path[SL_STATEDIR_PATH_MAX + 16], log_path[sizeof(pid_path)];
    if (sl_statedir_path(dir, "hub.pid", pid_path, sizeof(pid_path)) != 0 ||
        sl_statedir_path(dir, "hub.log", log_path, sizeof(log_path)) != 0) {
        fprintf(stderr, "sluice: state directory path too long\n");
        return 1;
    }

    int ready_fd = -1;
    pid_t holder = 0;
    if (o.daemon)
        rc = sl_daemon_start(pid_path, log_path, &ready_fd);
    else
        rc = sl_pidfile_create(pid_path, getpid(), &holder);
    if (rc != 0) {
        if (rc == SL_EEXIST && !o.daemon)
            fprintf(stderr, "sluice: a hub is already running on %s (pid "
                    "%ld)\n", dir, (long)holder);
        else if (rc != SL_EEXIST)
            fprintf(stderr, "sluice: cannot start the hub: %s\n",
                    sl_strerror(rc));
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    struct hub_boot hb = {.ctx = ctx};
    int exit_code = 1;
    rc = uv_loop_init(&loop);
    if (rc != 0) {
        sl_error(&ctx->log, "boot: cannot create the event loop: %s",
                 sl_strerror(rc));
        sl_daemon_ready(&ready_fd, 0);
        sl_pidfile_remove(pid_path, getpid());
        return 1;
    }
    ctx->loop = &loop;

    struct sl_hub_options ho = {
        .http_addr = o.http ? o.http : HUB_HTTP_DEFAULT,
        .domain = o.domain,
        .gateway_token = o.gateway_token,
        .state_dir = dir,
        .public_scheme = o.scheme,
        .public_port = (int)o.public_port,
        .default_limits = {.bridges = o.limit_bridges,
                           .traffic = o.limit_traffic},
        .pairing_window_ms = o.pairing_window_ms,
        .head_timeout_ms = o.head_timeout_ms,
        .pool_max_age_ms = o.pool_age_ms,
        .ping_ms = o.ping_ms,
        .dead_ms = o.dead_ms,
        .flush_ms = o.flush_ms,
    };
    /* scrypt takes 16 MiB per hash in the thread pool. A fixed mmap
     * threshold keeps glibc from raising it after the first free, so each
     * hash's block goes back to the system instead of staying in an
     * arena (tens of MB of RSS for nothing). Fixing it also fixes the
     * trim threshold at 128 KiB, so the top of the heap would be given
     * back and faulted in again on every 64 KiB read: keep 1 MiB. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    rc = sl_hub_start(ctx, &ho);
    if (rc != 0) {
        sl_error(&ctx->log, "boot: cannot start the hub: %s",
                 sl_strerror(rc));
        sl_daemon_ready(&ready_fd, 0);
        goto out;
    }
    struct sl_hub_api_opts ao = {.require_token = o.require_token};
    rc = sl_hub_api_start(ctx, ctx->hub, api_addr, o.api_token,
                          sl_hub_store(ctx->hub), &ao, &hb.api);
    if (rc != 0) {
        sl_error(&ctx->log, "boot: cannot start the admin API on %s: %s",
                 api_addr, sl_strerror(rc));
        hb.stopping = 1;
        sl_hub_stop(ctx->hub, NULL, NULL);
        sl_daemon_ready(&ready_fd, 0);
        goto out;
    }

    struct sl_role_info info = {.pid = getpid(),
                                .started_at = (int64_t)time(NULL)};
    sl_hub_api_address(hb.api, info.api, sizeof(info.api));
    sl_hub_address(ctx->hub, info.http, sizeof(info.http));
    rc = sl_statedir_write_role(dir, "hub", &info);
    if (rc != 0)
        sl_warn(&ctx->log, "boot: writing %s/hub.json: %s", dir,
                sl_strerror(rc));

    uv_signal_init(&loop, &hb.sigint);
    uv_signal_init(&loop, &hb.sigterm);
    hb.sigint.data = &hb;
    hb.sigterm.data = &hb;
    uv_signal_start(&hb.sigint, on_signal, SIGINT);
    uv_signal_start(&hb.sigterm, on_signal, SIGTERM);

    printf("hub listening http://%s domain %s\n", info.http,
           o.domain ? o.domain : "localhost");
    printf("hub api http://%s\n", info.api);
    fflush(stdout);
    sl_daemon_ready(&ready_fd, 1);
    exit_code = 0;

out:
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        sl_warn(&ctx->log, "boot: handles left open at exit");
    ctx->loop = NULL;
    sl_statedir_remove_role(dir, "hub", getpid());
    sl_pidfile_remove(pid_path, getpid());
    return exit_code;
}
