/* `sluice boot up --bridge`: the node role. Resolves and creates the state
 * directory, detaches when asked (before the loop exists: fork and libuv
 * do not mix), starts the node (its saved bridges, plus --upstream when no
 * bridge links that upstream to that hub yet), publishes node.json with
 * the API address, and runs until SIGINT/SIGTERM. */
#include "cli/cli_boot_node.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/daemon.h"
#include "core/error.h"
#include "core/statedir.h"
#include "node/node.h"
#include "node/node_url.h"

static const char node_usage[] =
    "usage: sluice boot up --bridge [--hub URL] [--upstream URL] [--token T]\n"
    "                      [--state-dir DIR] [--api ADDR]\n"
    "                      [--allow-public-upstream] [--pool N] [--framed]\n"
    "                      [--daemon]\n"
    "\n"
    "Runs a bridge node: it dials the hub and forwards the user connections\n"
    "the hub hands it to a local upstream service.\n"
    "  --hub URL       the hub, http://host:port (default " SL_NODE_HUB_DEFAULT
    ");\n"
    "                  also the hub of bridges created without one\n"
    "  --upstream URL  the local service, http://host:port; a bridge to it\n"
    "                  is added unless one to the same hub exists\n"
    "  --token T       gateway token the hub demands for a new identity\n"
    "  --state-dir DIR where bridges.json and node.json live\n"
    "  --api ADDR      local REST API address (default " SL_NODE_API_DEFAULT
    ")\n"
    "  --allow-public-upstream  allow upstreams on public addresses\n"
    "  --pool N        idle data connections per bridge (default 2)\n"
    "  --framed        carry data in WebSocket frames, never raw (for\n"
    "                  proxies in the way that mangle raw upgrades)\n"
    "  --ping-ms MS, --dead-ms MS  keep-alive ping interval and dead-hub\n"
    "                  timeout (default 15000 and 45000)\n"
    "  --daemon        detach; logs go to DIR/node.log\n"
    "\n"
    "Bridges saved in the state directory are started as well. For each\n"
    "bridge, once the hub has answered, one line goes to standard output:\n"
    "  bridge <identity> <public url> -> <upstream>\n";

struct node_opts {
    const char *hub, *upstream, *token, *state_dir, *api;
    int allow_public, daemon, pool, framed;
    long ping_ms, dead_ms;
};

struct node_boot {
    struct sl_ctx *ctx;
    uv_signal_t sigint, sigterm;
    int stopping;
};

static int parse(struct sl_cli *cli, struct node_opts *o)
{
    o->pool = -1;
    for (int i = 1; i < cli->argc; i++) {
        const char *a = cli->argv[i];
        const char **slot = NULL;
        const char *val = NULL;
        static const struct {
            const char *name;
            size_t off;
        } with_value[] = {
            {"--hub", offsetof(struct node_opts, hub)},
            {"--upstream", offsetof(struct node_opts, upstream)},
            {"--token", offsetof(struct node_opts, token)},
            {"--state-dir", offsetof(struct node_opts, state_dir)},
            {"--api", offsetof(struct node_opts, api)},
            {"--pool", 0},
            {"--ping-ms", 0},
            {"--dead-ms", 0},
        };
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
            if (strcmp(with_value[k].name, "--ping-ms") == 0 ||
                strcmp(with_value[k].name, "--dead-ms") == 0) {
                char *end;
                long ms = strtol(val, &end, 10);
                if (*val == '\0' || *end != '\0' || ms < 10 ||
                    ms > 3600000) {
                    fprintf(stderr, "sluice: %s: '%s' is not a number "
                            "10-3600000\n", with_value[k].name, val);
                    return 2;
                }
                if (with_value[k].name[2] == 'p')
                    o->ping_ms = ms;
                else
                    o->dead_ms = ms;
            } else if (strcmp(with_value[k].name, "--pool") == 0) {
                char *end;
                long p = strtol(val, &end, 10);
                if (*val == '\0' || *end != '\0' || p < 0 || p > 16) {
                    fprintf(stderr, "sluice: --pool: '%s' is not a number "
                            "0-16\n", val);
                    return 2;
                }
                o->pool = (int)p;
            } else {
                slot = (const char **)(void *)((char *)o + with_value[k].off);
                *slot = val;
            }
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(node_usage, stdout);
            return -1;
        } else if (strcmp(a, "--bridge") == 0) {
            /* that is why we are here */
        } else if (strcmp(a, "--daemon") == 0) {
            o->daemon = 1;
        } else if (strcmp(a, "--framed") == 0) {
            o->framed = 1;
        } else if (strcmp(a, "--allow-public-upstream") == 0) {
            o->allow_public = 1;
        } else {
            fprintf(stderr, "sluice: boot up --bridge: unknown option "
                    "'%s'\n%s", a, node_usage);
            return 2;
        }
    }
    return 0;
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_node_stopped(void *arg)
{
    struct node_boot *nb = arg;
    uv_close((uv_handle_t *)&nb->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&nb->sigterm, on_signal_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct node_boot *nb = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (nb->stopping) {
        sl_warn(&nb->ctx->log, "boot: second %s; exiting now", name);
        _exit(1);
    }
    nb->stopping = 1;
    nb->ctx->stopping = 1;
    sl_info(&nb->ctx->log, "boot: %s received; stopping", name);
    sl_node_stop(nb->ctx->node, on_node_stopped, nb);
}

int sl_cli_boot_node(struct sl_cli *cli)
{
    struct sl_ctx *ctx = cli->ctx;
    struct node_opts o = {0};
    int rc = parse(cli, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc; /* -1: help was printed */

    /* Bad URLs are refused here, in the terminal, before detaching. */
    char err[256];
    struct sl_node_url u;
    if (o.upstream != NULL &&
        sl_node_url_parse_upstream(o.upstream, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: --upstream %s\n", err);
        return 2;
    }
    if (o.hub != NULL &&
        sl_node_url_parse_hub(o.hub, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: --hub %s\n", err);
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
    if (sl_statedir_path(dir, "node.pid", pid_path, sizeof(pid_path)) != 0 ||
        sl_statedir_path(dir, "node.log", log_path, sizeof(log_path)) != 0) {
        fprintf(stderr, "sluice: state directory path too long\n");
        return 1;
    }

    int ready_fd = -1;
    pid_t holder = 0;
    if (o.daemon) {
        rc = sl_daemon_start(pid_path, log_path, &ready_fd);
    } else {
        rc = sl_pidfile_create(pid_path, getpid(), &holder);
        if (rc == SL_EEXIST)
            fprintf(stderr, "sluice: a node is already running on %s (pid "
                    "%ld)\n", dir, (long)holder);
    }
    if (rc != 0) {
        if (rc != SL_EEXIST || o.daemon)
            fprintf(stderr, "sluice: cannot start the node: %s\n",
                    rc == SL_EEXIST ? "a node is already running on this "
                                      "state directory"
                                    : sl_strerror(rc));
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    struct node_boot nb = {.ctx = ctx};
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

    struct sl_node_options no = {
        .state_dir = dir,
        .api_listen = o.api,
        .allow_public_upstream = o.allow_public,
        .pool_size = o.pool,
        .framed = o.framed,
        .default_hub = o.hub,
        .ping_ms = (uint64_t)o.ping_ms,
        .dead_ms = (uint64_t)o.dead_ms,
    };
    rc = sl_node_start(ctx, &no);
    if (rc != 0) {
        sl_error(&ctx->log, "boot: cannot start the node: %s",
                 sl_strerror(rc));
        sl_daemon_ready(&ready_fd, 0);
        goto out;
    }
    if (o.upstream != NULL) {
        rc = sl_node_bridge_add(ctx->node, o.upstream, o.hub, o.token, NULL,
                                err, sizeof(err));
        if (rc != 0 && rc != SL_EEXIST) {
            sl_error(&ctx->log, "boot: cannot add the bridge: %s",
                     rc == SL_EPARSE ? err : sl_strerror(rc));
            nb.stopping = 1;
            sl_node_stop(ctx->node, NULL, NULL);
            sl_daemon_ready(&ready_fd, 0);
            goto out;
        }
    }
    struct sl_role_info info = {.pid = getpid(),
                                .started_at = (int64_t)time(NULL)};
    snprintf(info.api, sizeof(info.api), "%s",
             sl_node_api_address(ctx->node));
    rc = sl_statedir_write_role(dir, "node", &info);
    if (rc != 0)
        sl_warn(&ctx->log, "boot: writing %s/node.json: %s", dir,
                sl_strerror(rc));

    uv_signal_init(&loop, &nb.sigint);
    uv_signal_init(&loop, &nb.sigterm);
    nb.sigint.data = &nb;
    nb.sigterm.data = &nb;
    uv_signal_start(&nb.sigint, on_signal, SIGINT);
    uv_signal_start(&nb.sigterm, on_signal, SIGTERM);
    sl_daemon_ready(&ready_fd, 1);
    exit_code = 0;

out:
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        sl_warn(&ctx->log, "boot: handles left open at exit");
    ctx->loop = NULL;
    sl_statedir_remove_role(dir, "node", getpid());
    sl_pidfile_remove(pid_path, getpid());
    return exit_code;
}
