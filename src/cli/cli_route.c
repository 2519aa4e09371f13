/* routes.json: the stream routes' publisher (run inside `sluice boot up`)
 * and its reader, `sluice route list` (cli/cli_route.h). */
#include "cli/cli_route.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli_util.h"
#include "config/config.h"
#include "core/daemon.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/statedir.h"
#include "net/addr.h"
#include "node/node_state.h"
#include "stream/agent_client.h"
#include "stream/streams.h"

/* A file ten thousand routes long is still far below this. */
#define ROUTE_FILE_MAX (8u << 20)

static const char route_usage[] =
    "usage: sluice route list [--json] [--state-dir DIR]\n"
    "\n"
    "The stream routes of the running `sluice boot up --config FILE` on\n"
    "the state directory (it publishes them in routes.json there, at\n"
    "most once a second): each route's listener, target, agent and\n"
    "counters, and each agent's health, round trip, last error and what\n"
    "its GET /info states.\n"
    "  --json           print routes.json as it is\n"
    "  --state-dir DIR  state directory of the routes' process\n";

/* ------------------------------------------------------------ encode */

static json_t *route_json(struct sl_ctx *ctx, size_t i)
{
    struct sl_stream_route_info info;
    struct sl_stream_stats st;
    if (sl_streams_route_info(ctx->streams, i, &info) != 0 ||
        sl_streams_route_stats(ctx->streams, i, &st) != 0)
        return NULL;
    char listen[SL_ADDR_STRLEN], target[300];
    sl_addr_str((const struct sockaddr *)&info.listen, listen);
    if (sl_addr_join_host_port(info.host, info.target_port, target,
                               sizeof(target)) != 0)
        snprintf(target, sizeof(target), "?");
    /* Routes start in the config's order: route i is the config's. */
    const struct sl_config *cfg = ctx->config;
    const char *agent = cfg != NULL && i < cfg->nroutes
                            ? cfg->routes[i].agent
                            : NULL;
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I}",
        "name", info.name, "scheme", info.scheme, "listen", listen,
        "target", target, "agent",
        agent != NULL ? json_string(agent) : json_null(), "connections",
        (json_int_t)st.conns_total, "active", (json_int_t)st.conns_active,
        "bytes_in", (json_int_t)st.bytes_in, "bytes_out",
        (json_int_t)st.bytes_out, "denied", (json_int_t)st.denied, "failed",
        (json_int_t)st.failed, "udp_sessions",
        (json_int_t)st.udp_sessions_total, "udp_sessions_active",
        (json_int_t)st.udp_sessions_active, "datagrams_in",
        (json_int_t)st.udp_datagrams_in, "datagrams_out",
        (json_int_t)st.udp_datagrams_out, "dropped", (json_int_t)st.dropped);
}

/* Everything but updated_at, so two snapshots compare equal when nothing
 * changed. NULL on ENOMEM. */
static json_t *snapshot(struct sl_ctx *ctx, int64_t started_at)
{
    json_t *routes = json_array();
    json_t *agents = sl_agents_json(sl_streams_agents(ctx->streams));
    json_t *root = NULL;
    if (routes == NULL || agents == NULL)
        goto out;
    for (size_t i = 0; i < sl_streams_count(ctx->streams); i++) {
        json_t *r = route_json(ctx, i);
        if (r == NULL || json_array_append_new(routes, r) != 0)
            goto out;
    }
    root = json_pack("{s:i, s:I, s:I, s:O, s:O}", "version", 1, "pid",
                     (json_int_t)getpid(), "started_at",
                     (json_int_t)started_at, "routes", routes, "agents",
                     agents);
out:
    json_decref(routes);
    json_decref(agents);
    return root;
}

static char *dump_with_time(json_t *root, int64_t updated_at_ms)
{
    if (json_object_set_new(root, "updated_at",
                            json_integer((json_int_t)updated_at_ms)) != 0)
        return NULL;
    return json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

char *sl_route_pub_encode(struct sl_ctx *ctx, int64_t started_at,
                          int64_t updated_at_ms)
{
    json_t *root = snapshot(ctx, started_at);
    char *text = root != NULL ? dump_with_time(root, updated_at_ms) : NULL;
    json_decref(root);
    return text;
}

/* ---------------------------------------------------------- the file */

/* Reads dir/routes.json into *out (parsed). Returns 0, SL_ENOTFOUND,
 * SL_ETOOBIG, SL_EPARSE or a negative errno. */
static int read_file(const char *dir, json_t **out)
{
    char path[SL_STATEDIR_PATH_MAX];
    *out = NULL;
    if (sl_statedir_path(dir, SL_ROUTE_PUB_FILE, path, sizeof(path)) != 0)
        return SL_ETOOBIG;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? SL_ENOTFOUND : -errno;
    int rc = 0;
    char *buf = malloc(ROUTE_FILE_MAX);
    size_t n = 0;
    if (buf == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    n = fread(buf, 1, ROUTE_FILE_MAX, f);
    if (ferror(f))
        rc = UV_EIO;
    else if (n == ROUTE_FILE_MAX)
        rc = SL_ETOOBIG;
    if (rc == 0) {
        *out = json_loadb(buf, n, 0, NULL);
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            rc = SL_EPARSE;
        }
    }
out:
    free(buf);
    fclose(f);
    return rc;
}

/* The pid routes.json names, 0 when none or not a pid. */
static pid_t file_pid(json_t *root)
{
    json_t *p = json_object_get(root, "pid");
    if (!json_is_integer(p) || json_integer_value(p) <= 0 ||
        json_integer_value(p) > INT32_MAX)
        return 0;
    return (pid_t)json_integer_value(p);
}

/* ----------------------------------------------------------- publish */

struct sl_route_pub {
    struct sl_ctx *ctx;
    uv_timer_t timer;
    struct sl_node_saver saver;
    char dir[SL_STATEDIR_PATH_MAX];
    char *last; /* the compact snapshot last saved (owned) */
    int64_t started_at;
    int waiting; /* the timer's close and the saver's flush */
    void (*done)(void *arg);
    void *done_arg;
};

static void on_tick(uv_timer_t *t)
{
    struct sl_route_pub *p = t->data;
    /* A slow disk skips ticks rather than queueing snapshots. */
    if (sl_node_saver_busy(&p->saver))
        return;
    json_t *root = snapshot(p->ctx, p->started_at);
    char *compact = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    if (compact == NULL || (p->last != NULL && strcmp(compact,
                                                      p->last) == 0)) {
        free(compact);
        json_decref(root);
        return;
    }
    char *text = dump_with_time(root, sl_node_now_ms());
    json_decref(root);
    if (text == NULL) {
        free(compact);
        return;
    }
    free(p->last);
    p->last = compact;
    sl_node_saver_save(&p->saver, text);
}

int sl_route_pub_start(struct sl_ctx *ctx, const char *dir,
                       struct sl_route_pub **out)
{
    *out = NULL;
    json_t *old = NULL;
    if (read_file(dir, &old) == 0) {
        pid_t pid = file_pid(old);
        json_decref(old);
        if (pid > 0 && pid != getpid() && sl_pid_alive(pid)) {
            sl_info(&ctx->log, "streams: %s/%s is pid %ld's: this "
                    "process's routes are not published (sluice route "
                    "list); give it its own --state-dir", dir,
                    SL_ROUTE_PUB_FILE, (long)pid);
            return 0;
        }
    }
    struct sl_route_pub *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    int rc = SL_ETOOBIG;
    p->ctx = ctx;
    p->started_at = (int64_t)time(NULL);
    if ((size_t)snprintf(p->dir, sizeof(p->dir), "%s", dir) >=
            sizeof(p->dir) ||
        sl_node_saver_init(&p->saver, ctx->loop, dir, SL_ROUTE_PUB_FILE) !=
            0)
        goto fail;
    p->saver.log = &ctx->log;
    rc = UV_ENOMEM;
    json_t *root = snapshot(ctx, p->started_at);
    p->last = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    char *text = root != NULL && p->last != NULL
                     ? dump_with_time(root, sl_node_now_ms())
                     : NULL;
    json_decref(root);
    if (text == NULL)
        goto fail;
    /* Written before the routes are announced, so a reader that waits
     * for them finds the file. */
    rc = sl_statedir_write_file(dir, SL_ROUTE_PUB_FILE, text, strlen(text));
    free(text);
    if (rc != 0)
        goto fail;
    uv_timer_init(ctx->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_tick, SL_ROUTE_PUB_INTERVAL_MS,
                   SL_ROUTE_PUB_INTERVAL_MS);
    *out = p;
    return 0;
fail:
    free(p->last);
    free(p);
    return rc;
}

static void part_done(void *arg)
{
    struct sl_route_pub *p = arg;
    if (--p->waiting > 0)
        return;
    json_t *root = NULL;
    if (read_file(p->dir, &root) == 0 && file_pid(root) == getpid()) {
        char path[SL_STATEDIR_PATH_MAX];
        if (sl_statedir_path(p->dir, SL_ROUTE_PUB_FILE, path,
                             sizeof(path)) == 0)
            unlink(path);
    }
    json_decref(root);
    void (*done)(void *) = p->done;
    void *done_arg = p->done_arg;
    sl_node_saver_free(&p->saver);
    free(p->last);
    free(p);
    done(done_arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    part_done(h->data);
}

void sl_route_pub_stop(struct sl_route_pub *p, void (*done)(void *arg),
                       void *arg)
{
    if (p == NULL) {
        done(arg);
        return;
    }
    p->done = done;
    p->done_arg = arg;
    p->waiting = 2;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    sl_node_saver_flush(&p->saver, part_done, p);
}

/* -------------------------------------------------------------- list */

#define CELL 160

static const char *const route_heads[] = {
    "NAME", "SCHEME", "LISTEN", "TARGET", "AGENT", "CONNS", "TRAFFIC",
    "DENIED", "FAILED"};
#define NROUTECOLS (sizeof(route_heads) / sizeof(route_heads[0]))

static const char *const agent_heads[] = {"AGENT", "ADDRESS", "TCP", "UDP",
                                          "INFO", "STREAMS", "LAST ERROR"};
#define NAGENTCOLS (sizeof(agent_heads) / sizeof(agent_heads[0]))

static json_t *find_agent(json_t *agents, const char *name)
{
    size_t i;
    json_t *a;
    json_array_foreach(agents, i, a) {
        if (strcmp(sl_cli_json_str(a, "name"), name) == 0)
            return a;
    }
    return NULL;
}

/* "healthy 3 ms", "unhealthy", "unknown". */
static void fmt_health(json_t *h, char *out, size_t cap)
{
    const char *state = sl_cli_json_str(h, "health");
    if (state[0] == '\0')
        state = "unknown";
    if (strcmp(state, "healthy") == 0)
        snprintf(out, cap, "%s %llu ms", state,
                 (unsigned long long)sl_cli_json_u64(h, "rtt_ms", NULL,
                                                     NULL));
    else
        snprintf(out, cap, "%s", state);
}

static int is_udp(const char *scheme)
{
    return strncmp(scheme, "udp", 3) == 0;
}

static void route_row(json_t *r, json_t *agents, char (*row)[CELL])
{
    const char *scheme = sl_cli_json_str(r, "scheme");
    int udp = is_udp(scheme);
    snprintf(row[0], CELL, "%s", sl_cli_json_str(r, "name"));
    snprintf(row[1], CELL, "%s", scheme);
    snprintf(row[2], CELL, "%s", sl_cli_json_str(r, "listen"));
    snprintf(row[3], CELL, "%s", sl_cli_json_str(r, "target"));
    const char *agent = sl_cli_json_str(r, "agent");
    json_t *a = agent[0] != '\0' ? find_agent(agents, agent) : NULL;
    if (agent[0] == '\0') {
        snprintf(row[4], CELL, "-");
    } else {
        const char *h = sl_cli_json_str(
            json_object_get(a, udp ? "udp" : "tcp"), "health");
        snprintf(row[4], CELL, "%s (%s)", agent, h[0] ? h : "unknown");
    }
    /* Active of total: connections for TCP, sessions for UDP. */
    snprintf(row[5], CELL, "%llu/%llu",
             (unsigned long long)sl_cli_json_u64(
                 r, udp ? "udp_sessions_active" : "active", NULL, NULL),
             (unsigned long long)sl_cli_json_u64(
                 r, udp ? "udp_sessions" : "connections", NULL, NULL));
    sl_fmt_traffic(sl_cli_json_u64(r, "bytes_out", NULL, NULL),
                   sl_cli_json_u64(r, "bytes_in", NULL, NULL), row[6], CELL);
    snprintf(row[7], CELL, "%llu",
             (unsigned long long)sl_cli_json_u64(r, "denied", NULL, NULL));
    snprintf(row[8], CELL, "%llu",
             (unsigned long long)sl_cli_json_u64(r, "failed", NULL, NULL));
}

static void agent_row(json_t *a, char (*row)[CELL])
{
    json_t *tcp = json_object_get(a, "tcp"), *udp = json_object_get(a, "udp");
    snprintf(row[0], CELL, "%s", sl_cli_json_str(a, "name"));
    snprintf(row[1], CELL, "%s", sl_cli_json_str(a, "address"));
    fmt_health(tcp, row[2], CELL);
    fmt_health(udp, row[3], CELL);
    /* What the agent states about itself: its version and streams. */
    json_t *info = json_object_get(a, "info");
    if (json_is_object(info)) {
        char streams[64] = "";
        size_t i, len = 0;
        json_t *s;
        json_array_foreach(json_object_get(info, "streams"), i, s) {
            int n = snprintf(streams + len, sizeof(streams) - len, "%s%s",
                             len ? "," : "",
                             json_is_string(s) ? json_string_value(s) : "?");
            if (n < 0 || (size_t)n >= sizeof(streams) - len)
                break;
            len += (size_t)n;
        }
        const char *v = sl_cli_json_str(info, "version");
        snprintf(row[4], CELL, "%s%s%s", v[0] ? v : "?",
                 streams[0] ? " " : "", streams);
    } else {
        snprintf(row[4], CELL, "-");
    }
    snprintf(row[5], CELL, "%llu/%llu",
             (unsigned long long)sl_cli_json_u64(a, "streams", NULL, NULL),
             (unsigned long long)sl_cli_json_u64(a, "sessions", NULL, NULL));
    const char *te = sl_cli_json_str(tcp, "error");
    const char *ue = sl_cli_json_str(udp, "error");
    if (te[0] == '\0' && ue[0] == '\0')
        snprintf(row[6], CELL, "-");
    else
        snprintf(row[6], CELL, "%s%s%s%s%s", te[0] ? "tcp: " : "", te,
                 te[0] && ue[0] ? "; " : "", ue[0] ? "udp: " : "", ue);
}

static int print_table(json_t *arr, const char *const *heads, size_t ncols,
                       json_t *agents, int routes)
{
    size_t n = json_array_size(arr);
    char(*cells)[CELL] = calloc((n + 1) * ncols, sizeof(*cells));
    if (cells == NULL) {
        fprintf(stderr, "sluice: out of memory\n");
        return 1;
    }
    for (size_t c = 0; c < ncols; c++)
        snprintf(cells[c], CELL, "%s", heads[c]);
    for (size_t i = 0; i < n; i++) {
        if (routes)
            route_row(json_array_get(arr, i), agents, cells + (i + 1) * ncols);
        else
            agent_row(json_array_get(arr, i), cells + (i + 1) * ncols);
    }
    sl_cli_table_print(&cells[0][0], n + 1, ncols, CELL);
    free(cells);
    return 0;
}

static int cmd_list(int argc, char **argv)
{
    const char *state_flag = NULL, *v;
    int json_out = 0, m;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json_out = 1;
        } else if ((m = sl_cli_opt_value(argc, argv, &i, "--state-dir",
                                         &v)) != 0) {
            if (m < 0)
                return 2;
            state_flag = v;
        } else {
            fprintf(stderr, "sluice: route list: unknown option '%s'\n%s",
                    argv[i], route_usage);
            return 2;
        }
    }
    char dir[SL_STATEDIR_PATH_MAX];
    int rc = sl_statedir_resolve(state_flag, dir, sizeof(dir));
    if (rc != 0) {
        fprintf(stderr, "sluice: state directory: %s (use --state-dir)\n",
                sl_strerror(rc));
        return 1;
    }
    json_t *root = NULL;
    rc = read_file(dir, &root);
    if (rc == SL_ENOTFOUND) {
        fprintf(stderr, "sluice: no stream routes published in %s (is "
                "`sluice boot up --config FILE` running on it?)\n", dir);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "sluice: %s/%s: %s\n", dir, SL_ROUTE_PUB_FILE,
                sl_strerror(rc));
        return 1;
    }
    pid_t pid = file_pid(root);
    if (!sl_pid_alive(pid)) {
        fprintf(stderr, "sluice: the routes' process (pid %ld) is not "
                "running; %s/%s is stale\n", (long)pid, dir,
                SL_ROUTE_PUB_FILE);
        json_decref(root);
        return 1;
    }
    if (json_out) {
        rc = sl_cli_print_json(root);
        json_decref(root);
        return rc;
    }
    json_t *routes = json_object_get(root, "routes");
    json_t *agents = json_object_get(root, "agents");
    rc = print_table(routes, route_heads, NROUTECOLS, agents, 1);
    if (rc == 0 && json_array_size(agents) > 0) {
        printf("\n");
        rc = print_table(agents, agent_heads, NAGENTCOLS, NULL, 0);
    }
    json_decref(root);
    return rc;
}

int sl_cli_route(struct sl_cli *cli)
{
    if (cli->argc < 1) {
        fputs(route_usage, stderr);
        return 2;
    }
    if (sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(route_usage, stdout);
        return 0;
    }
    /* Options may come before the command word too (`route --state-dir
     * D list`): it moves to the front. */
    for (int i = 0; i < cli->argc; i++) {
        char *w = cli->argv[i];
        if (strcmp(w, "--state-dir") == 0) {
            i++;
            continue;
        }
        if (w[0] == '-')
            continue;
        memmove(cli->argv + 1, cli->argv, (size_t)i * sizeof(*cli->argv));
        cli->argv[0] = w;
        break;
    }
    if (strcmp(cli->argv[0], "list") == 0 || strcmp(cli->argv[0], "ls") == 0)
        return cmd_list(cli->argc, cli->argv);
    fprintf(stderr, "sluice: route: unknown command '%s'\n%s", cli->argv[0],
            route_usage);
    return 2;
}
