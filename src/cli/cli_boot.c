/* `sluice boot up`: runs the roles asked for in one process, on one loop:
 * stream routes (--config), the hub (--proxy) and the bridge node
 * (--bridge), alone or together. This file owns what they share: the
 * option scan, the state directory, pid files and daemon mode, the loop,
 * one SIGINT/SIGTERM handler (first signal: every role stops gracefully;
 * second: exit at once) and <role>.json. Each role is a row of the table
 * below (cli/cli_boot_role.h); it parses its own options and starts and
 * stops itself. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_boot_config.h"
#include "cli/cli_boot_daemon.h"
#include "cli/cli_boot_hub.h"
#include "cli/cli_boot_node.h"
#include "cli/cli_boot_role.h"
#include "cli/cli_route.h"
#include "hub/hub.h"
#include "cli/cli_util.h"
#include "config/config.h"
#include "core/daemon.h"
#include "core/error.h"
#include "net/addr.h"
#include "stream/streams.h"

static const char boot_usage[] =
    "usage: sluice boot up [--config FILE | -c FILE] [--proxy] [--bridge]\n"
    "                      [--daemon] [--state-dir DIR] [role options]\n"
    "\n"
    "Starts sluice in the foreground until SIGINT or SIGTERM, running the\n"
    "roles asked for together in one process.\n"
    "  -c, --config FILE  configuration file (YAML); its routes: are started\n"
    "                     as TCP/UDP stream routes, its hub: and node:\n"
    "                     sections set the options of --proxy and --bridge\n"
    "                     (same names without the dashes; a flag wins).\n"
    "                     Default when neither --proxy nor --bridge is\n"
    "                     given: ./sluice.yaml\n"
    "  --no-routes        with --proxy or --bridge: take the file's hub:\n"
    "                     and node: sections, but not its routes:\n"
    "  --proxy            run the hub (public entry point)\n"
    "  --bridge           run a bridge node\n"
    "  --daemon           detach (with --proxy and/or --bridge); logs go to\n"
    "                     DIR/hub.log, or DIR/node.log without --proxy\n"
    "  --state-dir DIR    state directory of the hub and the node (one\n"
    "                     directory serves both); stream routes publish\n"
    "                     their state there for `sluice route list`\n"
    "\n"
    "An option several roles know applies to each of them (--token: the\n"
    "hub's gateway token and the node's; --ping-ms, --dead-ms). With\n"
    "--proxy, --api is the hub's and the node's API is --node-api.\n"
    "A first SIGINT/SIGTERM stops every role gracefully; a second exits.\n"
    "\n"
    "On start, one line per route is printed to standard output:\n"
    "  listening <name> <scheme> <addr:port> -> <host:port>\n"
    "\n"
    "  sluice boot down     stop a daemon\n"
    "  sluice boot status   query a daemon\n";

#define DEFAULT_CONFIG "sluice.yaml"
#define STATE_FILE_MAX (SL_STATEDIR_PATH_MAX + 16)

/* ---- the stream routes role -------------------------------------------- */

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

static void on_streams_abandoned(struct sl_ctx *ctx) { (void)ctx; }

/* routes.json's publisher (cli/cli_route.h), and the parts of the stop
 * still running (the engine and the publisher). One boot a process. */
static struct sl_route_pub *route_pub;
static int streams_stopping;

static int streams_start(void *st, struct sl_ctx *ctx,
                         const struct sl_boot_common *c,
                         struct sl_role_info *info)
{
    (void)st, (void)info;
    int err = sl_streams_start(ctx, ctx->config);
    if (err != 0) {
        /* What did start is closed on the loop; nobody waits for it. */
        sl_streams_stop(ctx, on_streams_abandoned);
        return err;
    }
    /* Not worth failing the routes for: they serve without it. */
    if (c->state_dir != NULL &&
        (err = sl_route_pub_start(ctx, c->state_dir, &route_pub)) != 0)
        sl_warn(&ctx->log, "streams: publishing %s/%s: %s", c->state_dir,
                SL_ROUTE_PUB_FILE, sl_strerror(err));
    print_routes(ctx->streams);
    return 0;
}

static void on_role_stopped(void *arg);

/* The loop's data is the boot, whose on_role_stopped is the done every
 * role is given. */
static void streams_part_stopped(void *arg)
{
    struct sl_ctx *ctx = arg;
    if (--streams_stopping == 0)
        on_role_stopped(ctx->loop->data);
}

static void on_streams_stopped(struct sl_ctx *ctx)
{
    streams_part_stopped(ctx);
}

static void streams_stop(void *st, struct sl_ctx *ctx,
                         sl_boot_stopped_cb done, void *arg)
{
    (void)st, (void)done, (void)arg;
    streams_stopping = 2;
    struct sl_route_pub *p = route_pub;
    route_pub = NULL;
    sl_route_pub_stop(p, streams_part_stopped, ctx);
    sl_streams_stop(ctx, on_streams_stopped);
}

static const struct sl_boot_role streams_role = {
    .name = "streams",
    .start = streams_start,
    .stop = streams_stop,
};

/* Started in this order (routes and the hub before the node that may dial
 * that hub), stopped all at once. */
static const struct sl_boot_role *const roles[] = {
    &streams_role,
    &sl_boot_role_hub,
    &sl_boot_role_node,
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* ---- one boot ---------------------------------------------------------- */

struct slot {
    const struct sl_boot_role *role;
    void *st;     /* the role's state, owned */
    int wanted;
    int started;  /* start succeeded: stop must be called */
    int pid_held; /* pid_path is ours to remove */
    struct sl_role_info info;
    char pid_path[STATE_FILE_MAX];
    char log_path[STATE_FILE_MAX];
};

struct boot {
    struct sl_ctx *ctx;
    struct sl_boot_common common;
    const char *config_path;
    int no_routes; /* --no-routes: the file's sections, not its routes */
    const char *state_flag;
    struct sl_boot_file_args fa; /* flags given; words made from the file */
    char dir[SL_STATEDIR_PATH_MAX];
    struct slot slots[NROLES];
    uv_signal_t sigint, sigterm, sighup;
    int roles_running; /* started roles whose stop has not finished */
    int exit_code;
};

/* The slot that keeps the state directory's files and is named first:
 * its pid file and log are the daemon's. NULL when none is wanted. */
static struct slot *first_state_slot(struct boot *b)
{
    for (size_t i = 0; i < NROLES; i++)
        if (b->slots[i].wanted && b->slots[i].role->state_dir)
            return &b->slots[i];
    return NULL;
}

static void print_role_help(const struct boot *b, FILE *f)
{
    int any = 0;
    for (size_t i = 0; i < NROLES; i++) {
        const struct slot *s = &b->slots[i];
        if (s->role->flag == NULL || s->role->usage == NULL)
            continue;
        if (b->common.proxy || b->common.bridge ? !s->wanted : 0)
            continue;
        fprintf(f, "%s%s", any ? "\n" : "", s->role->usage);
        any = 1;
    }
}

/* The usage text for this command line: the roles' own when --proxy or
 * --bridge is given, else everything. */
static void print_usage(const struct boot *b, FILE *f)
{
    if (!b->common.proxy && !b->common.bridge) {
        fputs(boot_usage, f);
        fputs("\n", f);
    }
    print_role_help(b, f);
    if (b->common.proxy || b->common.bridge)
        fputs("\n-c FILE adds the stream routes of FILE to the same process"
              "\n(--no-routes: not them) and takes the options above from its"
              "\nhub: and node: sections, under the flags; `sluice boot up"
              "\n--help` tells how roles run together.\n", f);
}

static int parse_up(struct sl_cli *cli, struct boot *b)
{
    int argc = cli->argc;
    char **argv = cli->argv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int m;
        /* What the command line sets, the file does not (a flag wins). */
        if (a[0] == '-' && sl_boot_note_given(&b->fa, a) != 0) {
            fprintf(stderr, "sluice: out of memory\n");
            return 1;
        }
        if (strcmp(a, "--proxy") == 0 || strcmp(a, "--bridge") == 0)
            continue; /* seen by boot_up already */
        if (strcmp(a, "--no-routes") == 0) {
            b->no_routes = 1;
            continue;
        }
        if (strcmp(a, "--daemon") == 0) {
            b->common.daemon = 1;
            continue;
        }
        if ((m = sl_cli_opt_value(argc, argv, &i, "--config", &v)) != 0 ||
            (m = sl_cli_opt_value(argc, argv, &i, "-c", &v)) != 0) {
            if (m < 0)
                return 2;
            b->config_path = v;
            continue;
        }
        if ((m = sl_cli_opt_value(argc, argv, &i, "--state-dir", &v)) != 0) {
            if (m < 0)
                return 2;
            b->state_flag = v;
            continue;
        }
        /* Offered to every role asked for: each that knows it takes it. */
        int taken = 0, next = i;
        for (size_t r = 0; r < NROLES; r++) {
            struct slot *s = &b->slots[r];
            if (!s->wanted || s->role->parse == NULL)
                continue;
            int j = i;
            int rc = s->role->parse(s->st, &b->common, argc, argv, &j);
            if (rc == 2)
                return 2;
            if (rc == 1) {
                taken = 1;
                next = j;
            }
        }
        if (!taken) {
            fprintf(stderr, "sluice: boot up%s%s: unknown option '%s'\n",
                    b->common.proxy ? " --proxy" : "",
                    b->common.bridge ? " --bridge" : "", a);
            print_usage(b, stderr);
            return 2;
        }
        i = next;
    }
    return 0;
}

static void report_running(const struct boot *b, const struct slot *s,
                           pid_t holder)
{
    if (holder > 0)
        fprintf(stderr, "sluice: a %s is already running on %s (pid %ld)\n",
                s->role->name, b->dir, (long)holder);
    else
        fprintf(stderr, "sluice: cannot start the %s: a %s is already "
                "running on this state directory\n", s->role->name,
                s->role->name);
}

static void release_pid_files(struct boot *b)
{
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (s->pid_held)
            sl_pidfile_remove(s->pid_path, getpid());
        s->pid_held = 0;
    }
}

static void report_claim(const struct boot *b, const struct slot *s, int rc,
                         pid_t holder)
{
    if (rc == SL_EEXIST)
        report_running(b, s, holder);
    else
        fprintf(stderr, "sluice: cannot start the %s: %s\n", s->role->name,
                sl_strerror(rc));
}

/* Claims the pid file of every role that keeps one. With --daemon the
 * process detaches first, through the first such role's pid file and log;
 * the others are refused before forking when taken and created by the
 * daemon, so all name the one process. Returns 0 or the exit code. */
static int claim_pid_files(struct boot *b, int *ready_fd)
{
    struct slot *first = b->common.daemon ? first_state_slot(b) : NULL;
    pid_t holder = 0;
    int rc;
    for (size_t i = 0; first != NULL && i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (s->wanted && s->role->state_dir && s != first &&
            sl_pidfile_read(s->pid_path, &holder) == 0) {
            report_running(b, s, holder);
            return 1;
        }
    }
    if (first != NULL) {
        rc = sl_daemon_start(first->pid_path, first->log_path, ready_fd);
        if (rc != 0) {
            report_claim(b, first, rc, 0);
            return 1;
        }
        first->pid_held = 1; /* in the daemon now: stderr is the log */
    }
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (!s->wanted || !s->role->state_dir || s == first)
            continue;
        rc = sl_pidfile_create(s->pid_path, getpid(), &holder);
        if (rc != 0) {
            report_claim(b, s, rc, holder);
            sl_daemon_ready(ready_fd, 0);
            release_pid_files(b);
            return 1;
        }
        s->pid_held = 1;
    }
    return 0;
}

/* Resolves and creates the state directory and names the roles' files in
 * it. Returns 0 or the exit code. */
static int prepare_state_dir(struct boot *b)
{
    if (first_state_slot(b) == NULL) {
        /* Routes alone publish routes.json there when they can; they
         * keep no other file and run without one. */
        if (b->slots[0].wanted &&
            sl_statedir_resolve(b->state_flag, b->dir, sizeof(b->dir)) ==
                0 &&
            sl_statedir_ensure(b->dir) == 0)
            b->common.state_dir = b->dir;
        return 0;
    }
    int rc = sl_statedir_resolve(b->state_flag, b->dir, sizeof(b->dir));
    if (rc == 0)
        rc = sl_statedir_ensure(b->dir);
    if (rc != 0) {
        fprintf(stderr, "sluice: state directory: %s (use --state-dir)\n",
                sl_strerror(rc));
        return 1;
    }
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        char pid_name[32], log_name[32];
        if (!s->wanted || !s->role->state_dir)
            continue;
        snprintf(pid_name, sizeof(pid_name), "%s.pid", s->role->name);
        snprintf(log_name, sizeof(log_name), "%s.log", s->role->name);
        if (sl_statedir_path(b->dir, pid_name, s->pid_path,
                             sizeof(s->pid_path)) != 0 ||
            sl_statedir_path(b->dir, log_name, s->log_path,
                             sizeof(s->log_path)) != 0) {
            fprintf(stderr, "sluice: state directory path too long\n");
            return 1;
        }
    }
    b->common.state_dir = b->dir;
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void on_role_stopped(void *arg)
{
    struct boot *b = arg;
    if (--b->roles_running > 0)
        return;
    /* Last role down: drop the signal handlers and let the loop end. */
    uv_close((uv_handle_t *)&b->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&b->sigterm, on_signal_closed);
    uv_close((uv_handle_t *)&b->sighup, on_signal_closed);
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
        if (b->slots[i].started)
            b->roles_running++;
    for (size_t i = 0; i < NROLES; i++)
        if (b->slots[i].started)
            b->slots[i].role->stop(b->slots[i].st, ctx, on_role_stopped, b);
    on_role_stopped(b);
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

static void on_sighup(uv_signal_t *h, int signum)
{
    struct boot *b = h->data;
    (void)signum;
    if (b->ctx->stopping)
        return;
    sl_info(&b->ctx->log, "boot: SIGHUP received; reloading");
    for (size_t i = 0; i < NROLES; i++)
        if (b->slots[i].started && b->slots[i].role->reload != NULL)
            b->slots[i].role->reload(b->slots[i].st, b->ctx);
}

/* Starts the wanted roles in table order and publishes <role>.json for
 * those with a state directory. On a failure the roles already started
 * are stopped and exit_code is 1. */
static void start_roles(struct boot *b)
{
    struct sl_ctx *ctx = b->ctx;
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (!s->wanted)
            continue;
        s->info.pid = getpid();
        s->info.started_at = (int64_t)time(NULL);
        int e = s->role->start(s->st, ctx, &b->common, &s->info);
        if (e != 0) {
            sl_error(&ctx->log, "boot: cannot start the %s: %s",
                     s->role->name, sl_strerror(e));
            b->exit_code = 1;
            stop_roles(b);
            return;
        }
        s->started = 1;
        if (s->role == &sl_boot_role_hub && s->info.http[0] != '\0') {
            /* A TLS-only hub is dialled over TLS, trusting its own CA. */
            char tls[80];
            int tls_only = ctx->hub != NULL &&
                           sl_hub_tls_address(ctx->hub, tls, sizeof(tls)) ==
                               0 &&
                           strcmp(tls, s->info.http) == 0;
            snprintf(b->common.hub_url, sizeof(b->common.hub_url), "%s://%s",
                     tls_only ? "https" : "http", s->info.http);
            if (tls_only && sl_hub_ca_path(ctx->hub) != NULL)
                snprintf(b->common.hub_ca, sizeof(b->common.hub_ca), "%s",
                         sl_hub_ca_path(ctx->hub));
        }
    }
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (!s->wanted || !s->role->state_dir)
            continue;
        int e = sl_statedir_write_role(b->dir, s->role->name, &s->info);
        if (e != 0)
            sl_warn(&ctx->log, "boot: writing %s/%s.json: %s", b->dir,
                    s->role->name, sl_strerror(e));
    }
}

/* Runs the loop with every wanted role until they have all stopped.
 * Returns the exit code. */
static int run(struct boot *b, int *ready_fd)
{
    struct sl_ctx *ctx = b->ctx;
    /* A peer that closes while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    int e = uv_loop_init(&loop);
    if (e < 0) {
        sl_error(&ctx->log, "boot: cannot create the event loop: %s",
                 sl_strerror(e));
        sl_daemon_ready(ready_fd, 0);
        return 1;
    }
    loop.data = b;
    ctx->loop = &loop;
    uv_signal_init(&loop, &b->sigint);
    uv_signal_init(&loop, &b->sigterm);
    b->sigint.data = b;
    b->sigterm.data = b;
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    uv_signal_init(&loop, &b->sighup);
    b->sighup.data = b;
    uv_signal_start(&b->sighup, on_sighup, SIGHUP);

    start_roles(b);
    sl_daemon_ready(ready_fd, b->exit_code == 0);
    if (b->exit_code == 0)
        sl_info(&ctx->log, "boot: up (%s%s%s%s)",
                b->config_path ? "config " : "",
                b->config_path ? b->config_path : "",
                b->common.proxy ? " hub" : "",
                b->common.bridge ? " node" : "");

    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        sl_warn(&ctx->log, "boot: handles left open at exit");
    ctx->loop = NULL;
    for (size_t i = 0; i < NROLES; i++)
        if (b->slots[i].wanted && b->slots[i].role->state_dir)
            sl_statedir_remove_role(b->dir, b->slots[i].role->name,
                                    getpid());
    if (b->exit_code == 0)
        sl_info(&ctx->log, "boot: stopped");
    return b->exit_code;
}

/* Gives the roles run the settings of the file's hub: and node:
 * sections, under the flags, and its state directory when no flag names
 * one. Returns 0 or the exit code (printed). */
static int apply_file(struct boot *b)
{
    const struct sl_config *cfg = b->ctx->config;
    const char *dir = NULL;
    int rc = sl_boot_file_state_dir(cfg, b->config_path, b->common.proxy,
                                    b->common.bridge, &dir);
    if (rc != 0)
        return rc;
    if (b->state_flag == NULL)
        b->state_flag = dir;
    for (size_t i = 0; i < NROLES && rc == 0; i++) {
        struct slot *s = &b->slots[i];
        const struct sl_config_section *sec =
            s->role == &sl_boot_role_hub    ? &cfg->hub
            : s->role == &sl_boot_role_node ? &cfg->node
                                            : NULL;
        if (s->wanted && sec != NULL)
            rc = sl_boot_apply_section(&b->fa, b->config_path,
                                       s->role->name, sec, s->role, s->st,
                                       &b->common);
    }
    return rc;
}

/* Everything after the configuration file is loaded. Returns the exit
 * code. */
static int boot_configured(struct boot *b)
{
    int rc = 0;
    if (b->ctx->config != NULL && (rc = apply_file(b)) != 0)
        return rc;
    b->slots[0].wanted = b->config_path != NULL && !b->no_routes;
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        if (s->wanted && s->role->check != NULL &&
            (rc = s->role->check(s->st, &b->common)) != 0)
            return rc;
    }
    int ready_fd = -1;
    rc = prepare_state_dir(b);
    if (rc == 0)
        rc = claim_pid_files(b, &ready_fd);
    if (rc == 0)
        rc = run(b, &ready_fd);
    release_pid_files(b);
    return rc;
}

/* Everything after the roles' states exist. Returns the exit code. */
static int boot_run(struct sl_cli *cli, struct boot *b)
{
    struct sl_ctx *ctx = cli->ctx;
    int rc = parse_up(cli, b);
    if (rc != 0)
        return rc;
    int roles_flagged = b->common.proxy || b->common.bridge;
    if (b->common.daemon && !roles_flagged) {
        fprintf(stderr, "sluice: boot up --daemon needs --proxy or "
                "--bridge\n");
        return 2;
    }
    if (b->no_routes && !roles_flagged) {
        fprintf(stderr, "sluice: boot up --no-routes needs --proxy or "
                "--bridge\n");
        return 2;
    }
    if (b->config_path == NULL && !roles_flagged) {
        if (access(DEFAULT_CONFIG, F_OK) != 0) {
            fputs(boot_usage, stderr);
            return 2;
        }
        b->config_path = DEFAULT_CONFIG;
    }

    /* Before detaching: the daemon runs in "/", and errors belong in the
     * terminal. */
    if (b->config_path != NULL) {
        char err[SL_CONFIG_ERR_MAX] = "";
        int e = sl_config_load_file(b->config_path, &ctx->config, err,
                                    sizeof(err));
        if (e != 0) {
            fprintf(stderr, "sluice: %s: %s\n", b->config_path,
                    err[0] ? err : sl_strerror(e));
            return 1;
        }
    }
    rc = boot_configured(b);
    sl_config_free(ctx->config);
    ctx->config = NULL;
    return rc;
}

static int boot_up(struct sl_cli *cli)
{
    struct boot *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        fprintf(stderr, "sluice: out of memory\n");
        return 1;
    }
    b->ctx = cli->ctx;
    int help = 0;
    for (int i = 1; i < cli->argc; i++) {
        const char *a = cli->argv[i];
        b->common.proxy |= strcmp(a, "--proxy") == 0;
        b->common.bridge |= strcmp(a, "--bridge") == 0;
        help |= strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
    }
    int rc = 0;
    for (size_t i = 0; i < NROLES; i++) {
        struct slot *s = &b->slots[i];
        s->role = roles[i];
        s->wanted = (s->role == &sl_boot_role_hub && b->common.proxy) ||
                    (s->role == &sl_boot_role_node && b->common.bridge);
        if (s->wanted && s->role->state_size > 0 &&
            (s->st = calloc(1, s->role->state_size)) == NULL) {
            fprintf(stderr, "sluice: out of memory\n");
            rc = 1;
        }
    }
    if (rc == 0 && help)
        print_usage(b, stdout);
    else if (rc == 0)
        rc = boot_run(cli, b);
    for (size_t i = 0; i < NROLES; i++)
        free(b->slots[i].st);
    sl_boot_file_args_free(&b->fa);
    free(b);
    return rc;
}

int sl_cli_boot(struct sl_cli *cli)
{
    /* Options may come before the subcommand too (`boot --state-dir D
     * status`): the first up, down or status word moves to the front. */
    for (int i = 0; i < cli->argc && cli->argv[0][0] == '-'; i++) {
        char *w = cli->argv[i];
        if (strcmp(w, "up") != 0 && strcmp(w, "down") != 0 &&
            strcmp(w, "status") != 0)
            continue;
        memmove(cli->argv + 1, cli->argv, (size_t)i * sizeof(*cli->argv));
        cli->argv[0] = w;
        break;
    }
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
