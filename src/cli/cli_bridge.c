/* `sluice bridge ...`: manages the bridges of a running node through its
 * local REST API (node/node_api.c). The API address comes from --api, or
 * from node.json in the state directory, or is the default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/client.h"
#include "cli/cli.h"
#include "core/daemon.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/statedir.h"
#include "node/node.h"

static const char bridge_usage[] =
    "usage: sluice bridge [--state-dir DIR] [--api ADDR] <command>\n"
    "\n"
    "commands:\n"
    "  list [--json]                 the node's bridges\n"
    "  create <upstream> [<hub>] [--token T]\n"
    "                                add a bridge (upstream http://host:port)\n"
    "  connect <identity>            resume a bridge\n"
    "  disconnect <identity>         stop a bridge (kept for later)\n"
    "  remove <identity>             forget a bridge\n"
    "  prune                         remove disconnected and never-connected\n"
    "                                bridges\n"
    "\n"
    "The node must be running (sluice boot up --bridge).\n";

struct bridge_cli {
    const char *api_flag;
    const char *state_flag;
    char api[160];
};

/* Finds the node's API: --api, node.json of a live node, the default. */
static void resolve_api(struct bridge_cli *bc)
{
    if (bc->api_flag != NULL) {
        snprintf(bc->api, sizeof(bc->api), "%s", bc->api_flag);
        return;
    }
    char dir[SL_STATEDIR_PATH_MAX];
    struct sl_role_info info;
    if (sl_statedir_resolve(bc->state_flag, dir, sizeof(dir)) == 0 &&
        sl_statedir_read_role(dir, "node", &info) == 0 &&
        sl_pid_alive(info.pid) && info.api[0] != '\0') {
        snprintf(bc->api, sizeof(bc->api), "%s", info.api);
        return;
    }
    snprintf(bc->api, sizeof(bc->api), "%s", SL_NODE_API_DEFAULT);
}

/* One API call. Returns 0 with *out (may be NULL) on a 2xx answer; else
 * prints the error and returns the exit code (1). */
static int call(struct bridge_cli *bc, const char *method, const char *path,
                json_t *body, json_t **out)
{
    int status = 0;
    char err[512] = "";
    json_t *resp = NULL;
    int rc = sl_http_client_json(bc->api, method, path, NULL, body, &status,
                                 &resp, err, sizeof(err));
    if (rc != 0) {
        if (rc == UV_ECONNREFUSED)
            fprintf(stderr, "sluice: no node answers at %s; is one running? "
                    "(sluice boot up --bridge)\n", bc->api);
        else
            fprintf(stderr, "sluice: %s\n", err[0] ? err : sl_strerror(rc));
        json_decref(resp);
        return 1;
    }
    if (status < 200 || status >= 300) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : "request failed");
        json_decref(resp);
        return 1;
    }
    if (out != NULL)
        *out = resp;
    else
        json_decref(resp);
    return 0;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static uint64_t jnum(json_t *o, const char *path1, const char *path2,
                     const char *k)
{
    json_t *v = o;
    if (path1 != NULL)
        v = json_object_get(v, path1);
    if (path2 != NULL)
        v = json_object_get(v, path2);
    v = json_object_get(v, k);
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? 0
                                         : (uint64_t)json_integer_value(v);
    if (json_is_real(v))
        return json_real_value(v) < 0 ? 0 : (uint64_t)json_real_value(v);
    return 0;
}

/* Display width of UTF-8 text: code points, not bytes (the arrows). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

#define NCOLS 7
#define CELL 200

static void print_row(char cells[NCOLS][CELL], const size_t *widths)
{
    for (int c = 0; c < NCOLS; c++) {
        fputs(cells[c], stdout);
        if (c + 1 < NCOLS)
            for (size_t p = width(cells[c]); p < widths[c] + 2; p++)
                putchar(' ');
    }
    putchar('\n');
}

static int cmd_list(struct bridge_cli *bc, int argc, char **argv)
{
    int json_out = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json_out = 1;
        } else {
            fprintf(stderr, "sluice: bridge list: unknown option '%s'\n",
                    argv[i]);
            return 2;
        }
    }
    json_t *resp = NULL;
    int rc = call(bc, "GET", "/api/bridge/", NULL, &resp);
    if (rc != 0)
        return rc;
    json_t *arr = json_object_get(resp, "bridges");
    if (!json_is_array(arr)) {
        fprintf(stderr, "sluice: unexpected answer from the node\n");
        json_decref(resp);
        return 1;
    }
    if (json_out) {
        char *text = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text != NULL)
            puts(text);
        free(text);
        json_decref(resp);
        return 0;
    }
    size_t n = json_array_size(arr);
    char(*rows)[NCOLS][CELL] = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        json_decref(resp);
        return 1;
    }
    static const char *const heads[NCOLS] = {
        "IDENTITY", "UPSTREAM", "HUB", "STATE", "TRAFFIC", "BANDWIDTH",
        "LAST SEEN"};
    for (int c = 0; c < NCOLS; c++)
        snprintf(rows[0][c], CELL, "%s", heads[c]);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(arr, i);
        char(*r)[CELL] = rows[i + 1];
        const char *id = jstr(b, "identity");
        snprintf(r[0], CELL, "%s", id[0] ? id : "-");
        snprintf(r[1], CELL, "%s", jstr(b, "upstream"));
        snprintf(r[2], CELL, "%s", jstr(b, "hub"));
        snprintf(r[3], CELL, "%s", jstr(b, "state"));
        sl_fmt_traffic(jnum(b, "traffic", "gateway", "down"),
                       jnum(b, "traffic", "gateway", "up"), r[4], CELL);
        char down[SL_FMT_MAX], up[SL_FMT_MAX];
        sl_fmt_rate((double)jnum(b, "bandwidth", NULL, "down"), down,
                    sizeof(down));
        sl_fmt_rate((double)jnum(b, "bandwidth", NULL, "up"), up, sizeof(up));
        snprintf(r[5], CELL, "\xe2\x86\x93 %s \xe2\x86\x91 %s", down, up);
        uint64_t seen = jnum(b, NULL, NULL, "last_seen");
        sl_fmt_ago(seen == 0 ? -1 : (now_ms - (int64_t)seen) / 1000, r[6],
                   CELL);
    }
    size_t widths[NCOLS] = {0};
    for (size_t i = 0; i <= n; i++)
        for (int c = 0; c < NCOLS; c++)
            if (width(rows[i][c]) > widths[c])
                widths[c] = width(rows[i][c]);
    for (size_t i = 0; i <= n; i++)
        print_row(rows[i], widths);
    free(rows);
    json_decref(resp);
    return 0;
}

static int same_bridge(json_t *b, const char *upstream, const char *hub)
{
    return strcmp(jstr(b, "upstream"), upstream) == 0 &&
           strcmp(jstr(b, "hub"), hub) == 0;
}

static int cmd_create(struct bridge_cli *bc, int argc, char **argv)
{
    const char *upstream = NULL, *hub = NULL, *token = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (strncmp(argv[i], "--token=", 8) == 0) {
            token = argv[i] + 8;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "sluice: bridge create: unknown option '%s'\n",
                    argv[i]);
            return 2;
        } else if (upstream == NULL) {
            upstream = argv[i];
        } else if (hub == NULL) {
            hub = argv[i];
        } else {
            fprintf(stderr, "%s", bridge_usage);
            return 2;
        }
    }
    if (upstream == NULL) {
        fprintf(stderr, "sluice: bridge create needs an upstream "
                "(http://host:port)\n");
        return 2;
    }
    json_t *body = json_pack("{s:s}", "upstream", upstream);
    if (body == NULL)
        return 1;
    if (hub != NULL)
        json_object_set_new(body, "hub", json_string(hub));
    if (token != NULL)
        json_object_set_new(body, "token", json_string(token));
    json_t *created = NULL;
    int rc = call(bc, "POST", "/api/bridge/", body, &created);
    json_decref(body);
    if (rc != 0)
        return rc;
    char want_up[300], want_hub[300];
    snprintf(want_up, sizeof(want_up), "%s", jstr(created, "upstream"));
    snprintf(want_hub, sizeof(want_hub), "%s", jstr(created, "hub"));
    json_decref(created);

    /* The identity comes with the hub's welcome: wait a little for it so
     * the user sees the public URL at once. Bounded: 50 x 100 ms. */
    for (int tries = 0; tries < 50; tries++) {
        json_t *resp = NULL;
        if (call(bc, "GET", "/api/bridge/", NULL, &resp) != 0)
            return 1;
        json_t *arr = json_object_get(resp, "bridges"), *b;
        size_t i;
        json_array_foreach(arr, i, b) {
            if (!same_bridge(b, want_up, want_hub))
                continue;
            if (jstr(b, "identity")[0] != '\0') {
                printf("bridge %s %s -> %s\n", jstr(b, "identity"),
                       jstr(b, "url"), want_up);
                json_decref(resp);
                return 0;
            }
            if (tries == 49)
                printf("bridge created: %s -> %s (%s%s%s)\n", want_up,
                       want_hub, jstr(b, "state"),
                       jstr(b, "error")[0] ? ": " : "", jstr(b, "error"));
        }
        json_decref(resp);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int cmd_on_identity(struct bridge_cli *bc, const char *verb,
                           const char *method, const char *suffix, int argc,
                           char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "sluice: bridge %s needs one <identity>\n", verb);
        return 2;
    }
    /* Identities are [a-z0-9]; anything else cannot exist and must not
     * reach the URL path. */
    for (const char *p = argv[0]; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
            fprintf(stderr, "sluice: '%s' is not an identity\n", argv[0]);
            return 2;
        }
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/bridge/%.20s/%s", argv[0], suffix);
    json_t *resp = NULL;
    int rc = call(bc, method, path, NULL, &resp);
    if (rc != 0)
        return rc;
    if (strcmp(verb, "remove") == 0)
        printf("bridge %s removed\n", argv[0]);
    else
        printf("bridge %s %s\n", argv[0], jstr(resp, "state"));
    json_decref(resp);
    return 0;
}

static int cmd_prune(struct bridge_cli *bc, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "sluice: bridge prune takes no arguments\n");
        return 2;
    }
    json_t *resp = NULL;
    int rc = call(bc, "DELETE", "/api/bridge/prune/", NULL, &resp);
    if (rc != 0)
        return rc;
    uint64_t n = jnum(resp, NULL, NULL, "removed");
    printf("%llu bridge%s removed\n", (unsigned long long)n,
           n == 1 ? "" : "s");
    json_decref(resp);
    return 0;
}

/* "--name=value" or "--name value": returns the value and advances *i,
 * or NULL when argv[*i] is not this option. */
static const char *take_opt(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] == '\0' && *i + 1 < argc) {
        (*i)++;
        return argv[*i];
    }
    return NULL;
}

int sl_cli_bridge(struct sl_cli *cli)
{
    struct bridge_cli bc = {0};
    int i = 0;
    for (; i < cli->argc && cli->argv[i][0] == '-'; i++) {
        const char *a = cli->argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(bridge_usage, stdout);
            return 0;
        }
        const char *v;
        if ((v = take_opt(cli->argc, cli->argv, &i, "--api")) != NULL) {
            bc.api_flag = v;
        } else if ((v = take_opt(cli->argc, cli->argv, &i, "--state-dir")) !=
                   NULL) {
            bc.state_flag = v;
        } else {
            fprintf(stderr, "sluice: bridge: unknown option '%s'\n%s", a,
                    bridge_usage);
            return 2;
        }
    }
    if (i >= cli->argc) {
        fputs(bridge_usage, stderr);
        return 2;
    }
    const char *cmd = cli->argv[i];
    int argc = cli->argc - i - 1;
    char **argv = cli->argv + i + 1;
    if (sl_cli_wants_help(argc, argv)) {
        fputs(bridge_usage, stdout);
        return 0;
    }
    resolve_api(&bc);
    if (strcmp(cmd, "list") == 0 || strcmp(cmd, "ls") == 0)
        return cmd_list(&bc, argc, argv);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(&bc, argc, argv);
    if (strcmp(cmd, "connect") == 0)
        return cmd_on_identity(&bc, cmd, "POST", "connect/", argc, argv);
    if (strcmp(cmd, "disconnect") == 0)
        return cmd_on_identity(&bc, cmd, "POST", "disconnect/", argc, argv);
    if (strcmp(cmd, "remove") == 0 || strcmp(cmd, "rm") == 0)
        return cmd_on_identity(&bc, "remove", "DELETE", "", argc, argv);
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(&bc, argc, argv);
    fprintf(stderr, "sluice: bridge: unknown command '%s'\n%s", cmd,
            bridge_usage);
    return 2;
}
