/* `sluice boot up`: load the configuration, start the roles asked for on
 * one loop, run until SIGINT/SIGTERM, then stop every role (each drains
 * its own connections) and exit once every handle is closed.
 *
 * Roles are started and stopped through the table below; the hub
 * (`--proxy`) and the bridge (`--bridge`) plug in as further rows. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_boot_daemon.h"
#include "cli/cli_boot_hub.h"
#include "cli/cli_boot_node.h"
#include "config/config.h"
#include "core/error.h"
#include "net/addr.h"
#include "stream/streams.h"

static const char boot_usage[] =
    "usage: sluice boot up [--config FILE | -c FILE] [--proxy] [--bridge]\n"
    "                      [--daemon]\n"
    "\n"
    "Starts sluice in the foreground until SIGINT or SIGTERM.\n"
    "  -c, --config FILE  configuration file (YAML); its routes: are started\n"
    "                     as TCP/UDP stream routes. Default: ./sluice.yaml\n"
    "  --proxy            also run the hub (public entry point)\n"
    "  --bridge           also run a bridge node\n"
    "  --daemon           detach (with --bridge)\n"
    "\n"
    "On start, one line per route is printed to standard output:\n"
    "  listening <name> <scheme> <addr:port> -> <host:port>\n"
    "\n"
    "  sluice boot down     stop a daemon\n"
    "  sluice boot status   query a daemon\n";

#define DEFAULT_CONFIG "sluice.yaml"

struct boot_opts {
    const char *config_path;
    int proxy;
    int bridge;
    int daemon;
};

struct boot {
    struct sl_ctx *ctx;
    struct boot_opts opts;
    uv_signal_t sigint, sigterm;
    int roles_running; /* roles whose stop has not finished */
    int exit_code;
};

/* ---- roles ------------------------------------------------------------- */

/* A role is started on the loop and stopped with a callback that fires once
 * its handles are closed. */
struct role {
    const char *name;
    int (*wanted)(const struct boot *b);
    int (*start)(struct boot *b);
    void (*stop)(struct boot *b, void (*stopped)(struct sl_ctx *ctx));
};

static int streams_wanted(const struct boot *b)
{
    /* Stream routes run whenever the configuration has some (and even with
     * none, when no other role is asked for, so `boot up` with an empty
     * routes: list still runs until stopped). */
    (void)b;
    return 1;
}

static void print_routes(const struct sl_streams *s)
{
    for (size_t i = 0; i < sl_streams_count(s); i++) {
        struct sl_stream_route_info info;
        if (sl_streams_route_info(s, i, &info) != 0)
            continue;
        char listen[SL_ADDR_STRLEN];
        char target[300];
        sl_addr_str((const struct sockaddr *)&info.listen, listen);
        if (sl_addr_join_host_port(info.host, info.target_port, target,
                                   sizeof(target)) != 0)
            snprintf(target, sizeof(target), "?");
        printf("listening %s %s %s -> %s\n", info.name, info.scheme, listen,
               target);
    }
    fflush(stdout);
}

static int streams_start(struct boot *b)
{
    int err = sl_streams_start(b->ctx, b->ctx->config);
    if (err == 0)
        print_routes(b->ctx->streams);
    return err;
}

static void streams_stop(struct boot *b, void (*stopped)(struct sl_ctx *ctx))
{
    sl_streams_stop(b->ctx, stopped);
}

static const struct role roles[] = {
    {"streams", streams_wanted, streams_start, streams_stop},
    /* {"hub", hub_wanted, hub_start, hub_stop}, */
    /* {"bridge", bridge_wanted, bridge_start, bridge_stop}, */
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* ---- lifecycle --------------------------------------------------------- */

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void on_role_stopped(struct sl_ctx *ctx)
{
    struct boot *b = ctx->loop->data;
    if (--b->roles_running > 0)
        return;
    /* Last role down: drop the signal handlers and let the loop end. */
    uv_close((uv_handle_t *)&b->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&b->sigterm, on_signal_closed);
}

static void stop_roles(struct boot *b)
{
    struct sl_ctx *ctx = b->ctx;
    if (ctx->stopping)
        return;
    ctx->stopping = 1;
    /* Counted first: a role may report stopped from inside its stop. */
    b->roles_running = 1;
    for (size_t i = 0; i < NROLES; i++)
        if (roles[i].wanted(b))
            b->roles_running++;
    for (size_t i = 0; i < NROLES; i++)
        if (roles[i].wanted(b))
            roles[i].stop(b, on_role_stopped);
    on_role_stopped(ctx);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct boot *b = h->data;
    if (b->ctx->stopping) {
        sl_warn(&b->ctx->log, "boot: second %s; exiting now",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
        _exit(1);
    }
    sl_info(&b->ctx->log, "boot: %s received; stopping",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_roles(b);
}

static int parse_up(struct sl_cli *cli, struct boot_opts *o)
{
    for (int i = 1; i < cli->argc; i++) {
        const char *a = cli->argv[i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= cli->argc) {
                fprintf(stderr, "sluice: %s needs a FILE\n%s", a, boot_usage);
                return 2;
            }
            o->config_path = cli->argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->config_path = a + 9;
        } else if (strcmp(a, "--proxy") == 0) {
            o->proxy = 1;
        } else if (strcmp(a, "--bridge") == 0) {
            o->bridge = 1;
        } else if (strcmp(a, "--daemon") == 0) {
            o->daemon = 1;
        } else {
            fprintf(stderr, "sluice: boot up: unknown option '%s'\n%s", a,
                    boot_usage);
            return 2;
        }
    }
    return 0;
}

static int boot_up(struct sl_cli *cli)
{
    struct sl_ctx *ctx = cli->ctx;
    struct boot b = {.ctx = ctx};
    for (int i = 1; i < cli->argc; i++) /* the hub has its own options */
        if (strcmp(cli->argv[i], "--proxy") == 0)
            return sl_cli_boot_hub(cli);
    for (int i = 1; i < cli->argc; i++) /* the node has its own options */
        if (strcmp(cli->argv[i], "--bridge") == 0)
            return sl_cli_boot_node(cli);
    /* After the role dispatch, so that each role prints its own help. */
    if (sl_cli_wants_help(cli->argc - 1, cli->argv + 1)) {
        fputs(boot_usage, stdout);
        return 0;
    }
    int rc = parse_up(cli, &b.opts);
    if (rc != 0)
        return rc;
    if (b.opts.proxy || b.opts.bridge || b.opts.daemon) {
        fprintf(stderr, "sluice: boot up %s: not implemented yet\n",
                b.opts.proxy ? "--proxy"
                : b.opts.bridge ? "--bridge"
                                : "--daemon");
        return 2;
    }
    if (b.opts.config_path == NULL) {
        if (access(DEFAULT_CONFIG, F_OK) != 0) {
            fputs(boot_usage, stderr);
            return 2;
        }
        b.opts.config_path = DEFAULT_CONFIG;
    }

    char err[512] = "";
    int e = sl_config_load_file(b.opts.config_path, &ctx->config, err,
                                sizeof(err));
    if (e != 0) {
        fprintf(stderr, "sluice: %s: %s\n", b.opts.config_path,
                err[0] ? err : sl_strerror(e));
        return 1;
    }

    /* A peer that closes while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    e = uv_loop_init(&loop);
    if (e < 0) {
        fprintf(stderr, "sluice: cannot create the event loop: %s\n",
                sl_strerror(e));
        sl_config_free(ctx->config);
        ctx->config = NULL;
        return 1;
    }
    loop.data = &b;
    ctx->loop = &loop;
    uv_signal_init(&loop, &b.sigint);
    uv_signal_init(&loop, &b.sigterm);
    b.sigint.data = &b;
    b.sigterm.data = &b;
    uv_signal_start(&b.sigint, on_signal, SIGINT);
    uv_signal_start(&b.sigterm, on_signal, SIGTERM);

    b.exit_code = 0;
    for (size_t i = 0; i < NROLES; i++) {
        if (!roles[i].wanted(&b))
            continue;
        e = roles[i].start(&b);
        if (e != 0) {
            sl_error(&ctx->log, "boot: cannot start %s: %s", roles[i].name,
                     sl_strerror(e));
            b.exit_code = 1;
            stop_roles(&b);
            break;
        }
    }
    if (b.exit_code == 0)
        sl_info(&ctx->log, "boot: up (config %s)", b.opts.config_path);

    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        sl_warn(&ctx->log, "boot: handles left open at exit");
    ctx->loop = NULL;
    sl_config_free(ctx->config);
    ctx->config = NULL;
    if (b.exit_code == 0)
        sl_info(&ctx->log, "boot: stopped");
    return b.exit_code;
}

int sl_cli_boot(struct sl_cli *cli)
{
    if (cli->argc < 1 || strcmp(cli->argv[0], "--help") == 0 ||
        strcmp(cli->argv[0], "-h") == 0) {
        fputs(boot_usage, cli->argc < 1 ? stderr : stdout);
        return cli->argc < 1 ? 2 : 0;
    }
    if (strcmp(cli->argv[0], "up") == 0)
        return boot_up(cli);
    if (strcmp(cli->argv[0], "down") == 0)
        return sl_cli_boot_down(cli);
    if (strcmp(cli->argv[0], "status") == 0)
        return sl_cli_boot_status(cli);
    fprintf(stderr, "sluice: boot: unknown subcommand '%s'\n%s", cli->argv[0],
            boot_usage);
    return 2;
}
