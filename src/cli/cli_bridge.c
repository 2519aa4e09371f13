/* `sluice bridge ...`: manages the bridges of a running node through its
 * local REST API (node/node_api.c). The API address comes from --api, or
 * from node.json in the state directory, or is the default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_grant.h"
#include "cli/cli_util.h"
#include "core/fmt.h"
#include "node/node.h"
#include "node/node_state.h"

static const char bridge_usage[] =
    "usage: sluice bridge [options] <command> [options]\n"
    "\n"
    "commands:\n"
    "  list [--json]                 the node's bridges\n"
    "  create <upstream> [<hub>] [--token T] [--username U --password P]\n"
    "         [--grant TOKEN|@FILE]\n"
    "                                add a bridge (upstream http://, tls://,\n"
    "                                tcp:// or udp://host:port);\n"
    "                                --username/--password: an allocation\n"
    "                                made with sluice proxy create (password\n"
    "                                default $SLUICE_BRIDGE_PASSWORD);\n"
    "                                --grant: for a hub that demands grants\n"
    "                                <hub>: hubs sharing one store may be\n"
    "                                joined by commas (a connection to each)\n"
    "  update <identity> [--password P] [--grant TOKEN|@FILE]\n"
    "                                a new password (after sluice proxy\n"
    "                                rotate) or grant; no user is dropped\n"
    "  connect <identity>            resume a bridge\n"
    "  disconnect <identity>         stop a bridge (kept for later)\n"
    "  remove <identity>             forget a bridge\n"
    "  prune                         remove disconnected and never-connected\n"
    "                                bridges\n"
    "\n"
    "options (before or after the command):\n"
    "  --api ADDR                    the node's API (default: from the\n"
    "                                state directory's node.json, else\n"
    "                                " SL_NODE_API_DEFAULT ")\n"
    "  --state-dir DIR               state directory of the node\n"
    "\n"
    "The node must be running (sluice boot up --bridge).\n";

#define CELL 200

static const char *const list_heads[] = {
    "IDENTITY", "UPSTREAM", "HUB", "STATE", "TRAFFIC", "BANDWIDTH",
    "LAST SEEN"};
#define NCOLS (sizeof(list_heads) / sizeof(list_heads[0]))

static const char *const hub_heads[] = {"IDENTITY", "HUB", "ADDRESS",
                                        "STATE", "ERROR"};
#define NHUBCOLS (sizeof(hub_heads) / sizeof(hub_heads[0]))

/* Under the list, the connection to each hub of the bridges that have
 * several (docs/scale-out.md); nothing when none has. */
static void print_hubs(json_t *arr)
{
    size_t n = 0, i, k;
    json_t *b, *h;
    json_array_foreach(arr, i, b) {
        json_t *hubs = json_object_get(b, "hubs");
        if (json_array_size(hubs) > 1)
            n += json_array_size(hubs);
    }
    if (n == 0)
        return;
    char(*rows)[NHUBCOLS][CELL] = calloc(n + 1, sizeof(*rows));
    if (rows == NULL)
        return;
    for (size_t c = 0; c < NHUBCOLS; c++)
        snprintf(rows[0][c], CELL, "%s", hub_heads[c]);
    size_t r = 1;
    json_array_foreach(arr, i, b) {
        json_t *hubs = json_object_get(b, "hubs");
        if (json_array_size(hubs) <= 1)
            continue;
        const char *id = sl_cli_json_str(b, "identity");
        json_array_foreach(hubs, k, h) {
            const char *addr = sl_cli_json_str(h, "address");
            const char *err = sl_cli_json_str(h, "error");
            snprintf(rows[r][0], CELL, "%s", id[0] ? id : "-");
            snprintf(rows[r][1], CELL, "%s", sl_cli_json_str(h, "hub"));
            snprintf(rows[r][2], CELL, "%s", addr[0] ? addr : "-");
            snprintf(rows[r][3], CELL, "%s", sl_cli_json_str(h, "state"));
            snprintf(rows[r][4], CELL, "%s", err[0] ? err : "-");
            r++;
        }
    }
    printf("\n");
    sl_cli_table_print(&rows[0][0][0], n + 1, NHUBCOLS, CELL);
    free(rows);
}

/* One call to the node's API: 0 with *out (may be NULL) on a 2xx answer;
 * else the error is printed and the exit code (1) returned. */
static int call(const struct sl_cli_api *api, const char *method,
                const char *path, json_t *body, json_t **out)
{
    return sl_cli_api_call(api, method, path, body, 0, out);
}

static int cmd_list(const struct sl_cli_api *bc, int argc, char **argv)
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
        rc = sl_cli_print_json(arr);
        json_decref(resp);
        return rc;
    }
    size_t n = json_array_size(arr);
    char(*rows)[NCOLS][CELL] = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        json_decref(resp);
        return 1;
    }
    for (size_t c = 0; c < NCOLS; c++)
        snprintf(rows[0][c], CELL, "%s", list_heads[c]);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(arr, i);
        char(*r)[CELL] = rows[i + 1];
        const char *id = sl_cli_json_str(b, "identity");
        snprintf(r[0], CELL, "%s", id[0] ? id : "-");
        snprintf(r[1], CELL, "%s", sl_cli_json_str(b, "upstream"));
        snprintf(r[2], CELL, "%s", sl_cli_json_str(b, "hub"));
        snprintf(r[3], CELL, "%s", sl_cli_json_str(b, "state"));
        sl_cli_fmt_usage(b, "gateway", r[4], r[5], CELL);
        uint64_t seen = sl_cli_json_u64(b, "last_seen", NULL, NULL);
        sl_fmt_ago(seen == 0 ? -1 : (now_ms - (int64_t)seen) / 1000, r[6],
                   CELL);
    }
    sl_cli_table_print(&rows[0][0][0], n + 1, NCOLS, CELL);
    free(rows);
    print_hubs(arr);
    json_decref(resp);
    return 0;
}

static int same_bridge(json_t *b, const char *upstream, const char *hub)
{
    return strcmp(sl_cli_json_str(b, "upstream"), upstream) == 0 &&
           strcmp(sl_cli_json_str(b, "hub"), hub) == 0;
}

static int cmd_create(const struct sl_cli_api *bc, int argc, char **argv)
{
    const char *upstream = NULL, *hub = NULL, *token = NULL;
    const char *username = NULL, *password = NULL, *grant_arg = NULL;
    char grant[SL_NODE_GRANT_MAX];
    for (int i = 0; i < argc; i++) {
        int m = sl_cli_opt_value(argc, argv, &i, "--token", &token);
        if (m == 0)
            m = sl_cli_opt_value(argc, argv, &i, "--grant", &grant_arg);
        if (m == 0)
            m = sl_cli_opt_value(argc, argv, &i, "--username", &username);
        if (m == 0)
            m = sl_cli_opt_value(argc, argv, &i, "--password", &password);
        if (m < 0)
            return 2;
        if (m > 0) {
            continue;
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
    if (grant_arg != NULL) {
        if (sl_cli_grant_arg("--grant", grant_arg, grant, sizeof(grant))) {
            json_decref(body);
            return 2;
        }
        json_object_set_new(body, "grant", json_string(grant));
    }
    if (username != NULL && password == NULL)
        password = getenv("SLUICE_BRIDGE_PASSWORD");
    if (username != NULL)
        json_object_set_new(body, "username", json_string(username));
    if (password != NULL)
        json_object_set_new(body, "password", json_string(password));
    json_t *created = NULL;
    int rc = call(bc, "POST", "/api/bridge/", body, &created);
    json_decref(body);
    if (rc != 0)
        return rc;
    char want_up[300], want_hub[300];
    snprintf(want_up, sizeof(want_up), "%s", sl_cli_json_str(created, "upstream"));
    snprintf(want_hub, sizeof(want_hub), "%s", sl_cli_json_str(created, "hub"));
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
            if (sl_cli_json_str(b, "identity")[0] != '\0') {
                printf("bridge %s %s -> %s\n", sl_cli_json_str(b, "identity"),
                       sl_cli_json_str(b, "url"), want_up);
                json_decref(resp);
                return 0;
            }
            if (tries == 49)
                printf("bridge created: %s -> %s (%s%s%s)\n", want_up,
                       want_hub, sl_cli_json_str(b, "state"),
                       sl_cli_json_str(b, "error")[0] ? ": " : "", sl_cli_json_str(b, "error"));
        }
        json_decref(resp);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int cmd_on_identity(const struct sl_cli_api *bc, const char *verb,
                           const char *method, const char *suffix, int argc,
                           char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "sluice: bridge %s needs one <identity>\n", verb);
        return 2;
    }
    /* Anything else cannot exist and must not reach the URL path. */
    if (!sl_cli_is_identity(argv[0])) {
        fprintf(stderr, "sluice: '%s' is not an identity\n", argv[0]);
        return 2;
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/bridge/%s/%s", argv[0], suffix);
    json_t *resp = NULL;
    int rc = call(bc, method, path, NULL, &resp);
    if (rc != 0)
        return rc;
    if (strcmp(verb, "remove") == 0)
        printf("bridge %s removed\n", argv[0]);
    else
        printf("bridge %s %s\n", argv[0], sl_cli_json_str(resp, "state"));
    json_decref(resp);
    return 0;
}

static int cmd_update(const struct sl_cli_api *bc, int argc, char **argv)
{
    const char *identity = NULL, *password = NULL, *grant_arg = NULL;
    char grant[SL_NODE_GRANT_MAX];
    for (int i = 0; i < argc; i++) {
        int m = sl_cli_opt_value(argc, argv, &i, "--password", &password);
        if (m == 0)
            m = sl_cli_opt_value(argc, argv, &i, "--grant", &grant_arg);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if (argv[i][0] == '-' || identity != NULL) {
            fprintf(stderr, "sluice: bridge update: unexpected '%s'\n",
                    argv[i]);
            return 2;
        }
        identity = argv[i];
    }
    if (identity == NULL || !sl_cli_is_identity(identity)) {
        fprintf(stderr, "sluice: bridge update needs one <identity>\n");
        return 2;
    }
    if (password == NULL && grant_arg == NULL)
        password = getenv("SLUICE_BRIDGE_PASSWORD");
    if (password == NULL && grant_arg == NULL) {
        fprintf(stderr, "sluice: bridge update: give --password (or "
                "$SLUICE_BRIDGE_PASSWORD) or --grant\n");
        return 2;
    }
    json_t *body = json_object();
    if (body == NULL)
        return 1;
    if (password != NULL)
        json_object_set_new(body, "password", json_string(password));
    if (grant_arg != NULL) {
        if (sl_cli_grant_arg("--grant", grant_arg, grant, sizeof(grant))) {
            json_decref(body);
            return 2;
        }
        json_object_set_new(body, "grant", json_string(grant));
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/bridge/%s/update/", identity);
    json_t *resp = NULL;
    int rc = call(bc, "POST", path, body, &resp);
    json_decref(body);
    if (rc != 0)
        return rc;
    printf("bridge %s updated (%s)\n", identity,
           sl_cli_json_str(resp, "state"));
    json_decref(resp);
    return 0;
}

static int cmd_prune(const struct sl_cli_api *bc, int argc, char **argv)
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
    uint64_t n = sl_cli_json_u64(resp, "removed", NULL, NULL);
    printf("%llu bridge%s removed\n", (unsigned long long)n,
           n == 1 ? "" : "s");
    json_decref(resp);
    return 0;
}

static int run_command(const char *cmd, int argc, char **argv,
                       const char *api_flag, const char *state_flag)
{
    struct sl_cli_api api = {
        .refused_hint = "no node answers there; is one running? (sluice "
                        "boot up --bridge)",
    };
    sl_cli_api_resolve(&api, api_flag, state_flag, "node",
                       SL_NODE_API_DEFAULT);
    const struct sl_cli_api *bc = &api;
    if (strcmp(cmd, "list") == 0 || strcmp(cmd, "ls") == 0)
        return cmd_list(bc, argc, argv);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(bc, argc, argv);
    if (strcmp(cmd, "connect") == 0)
        return cmd_on_identity(bc, cmd, "POST", "connect/", argc, argv);
    if (strcmp(cmd, "disconnect") == 0)
        return cmd_on_identity(bc, cmd, "POST", "disconnect/", argc, argv);
    if (strcmp(cmd, "remove") == 0 || strcmp(cmd, "rm") == 0)
        return cmd_on_identity(bc, "remove", "DELETE", "", argc, argv);
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(bc, argc, argv);
    if (strcmp(cmd, "update") == 0)
        return cmd_update(bc, argc, argv);
    fprintf(stderr, "sluice: bridge: unknown command '%s'\n%s", cmd,
            bridge_usage);
    return 2;
}

/* Takes the connection options (--api, --state-dir) wherever they stand,
 * before or after the command word, as `sluice proxy` does, and leaves
 * the command and its own words in words[0..*nwords). A command's own
 * option with a value (--token T) is copied with its value, so a value
 * is never read as an option. Returns -1 to go on, else the exit code. */
static int split_args(int argc, char **argv, const char **api_flag,
                      const char **state_flag, char **words, int *nwords)
{
    static const char *const cmd_valued[] = {"--token", "--username",
                                             "--password", "--grant"};
    *nwords = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(bridge_usage, stdout);
            return 0;
        }
        int m = sl_cli_opt_value(argc, argv, &i, "--api", api_flag);
        if (m == 0)
            m = sl_cli_opt_value(argc, argv, &i, "--state-dir", state_flag);
        if (m < 0)
            return 2;
        if (m > 0)
            continue;
        if (*nwords == 0 && a[0] == '-') {
            fprintf(stderr, "sluice: bridge: unknown option '%s'\n%s", a,
                    bridge_usage);
            return 2;
        }
        words[(*nwords)++] = argv[i];
        for (size_t k = 0; k < sizeof(cmd_valued) / sizeof(*cmd_valued); k++)
            if (strcmp(a, cmd_valued[k]) == 0 && i + 1 < argc)
                words[(*nwords)++] = argv[++i];
    }
    if (*nwords == 0) {
        fputs(bridge_usage, stderr);
        return 2;
    }
    return -1;
}

int sl_cli_bridge(struct sl_cli *cli)
{
    const char *api_flag = NULL, *state_flag = NULL;
    char **words = calloc((size_t)cli->argc + 1, sizeof(*words));
    int nwords = 0;
    if (words == NULL) {
        fprintf(stderr, "sluice: out of memory\n");
        return 1;
    }
    int rc = split_args(cli->argc, cli->argv, &api_flag, &state_flag, words,
                        &nwords);
    if (rc < 0)
        rc = run_command(words[0], nwords - 1, words + 1, api_flag,
                         state_flag);
    free(words);
    return rc;
}
