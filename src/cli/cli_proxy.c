/* `sluice proxy list|create|remove|prune`: manage a running hub's
 * allocations through its admin API (api/hub_api.h). The API address comes
 * from --api, else the state directory's hub.json, else 127.0.0.1:8081. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "core/error.h"
#include "core/size.h"
#include "core/fmt.h"
#include "core/rate.h"

#define DEFAULT_API "127.0.0.1:8081"

static const char proxy_usage[] =
    "usage: sluice proxy [options] <command> [options]\n"
    "\n"
    "commands:\n"
    "  list [--json]                      list allocations\n"
    "  create [--bridges N] [--traffic SIZE] [--rate RATE] [--json]\n"
    "         [--allow RULE] [--deny RULE] [--proxy-protocol v1|v2]\n"
    "         [--max-conns N] [--max-sessions N]\n"
    "                                     create one; prints its password\n"
    "                                     (--allow ... --max-sessions: its\n"
    "                                     TCP/UDP tunnel's ACL, PROXY header\n"
    "                                     and caps; RULE ip:ADDR or\n"
    "                                     cidr:ADDR/BITS, repeatable)\n"
    "  rotate <identity> [--json]         give it a new password; the old\n"
    "                                     one opens for the hub's grace\n"
    "                                     period (default 10 minutes)\n"
    "  remove <identity>                  remove one, disconnecting bridges\n"
    "  prune [--older-than DURATION]      remove those unseen for DURATION\n"
    "                                     (default 7d; live ones are kept)\n"
    "\n"
    "options:\n"
    "  --api ADDR         the hub's admin API (default: from the state\n"
    "                     directory's hub.json, else " DEFAULT_API ")\n"
    "  --token TOKEN      admin bearer token (default: $SLUICE_API_TOKEN)\n"
    "  --state-dir DIR    state directory of the hub\n"
    "\n"
    "SIZE: bytes, or with a unit (0 = unlimited): kB = 1,024 bytes,\n"
    "      MB = 1,024,000 (10MB = 10,240,000), GB = 1,024,000,000;\n"
    "      KiB, MiB, GiB are powers of 1024 (1MiB = 1,048,576).\n"
    "RATE: a bandwidth cap each way, " SL_RATE_UNITS_HELP " (0 = none).\n"
    "DURATION: seconds, or 30m, 12h, 7d, 2w.\n";

struct proxy_opts {
    const char *api;
    const char *token;
    const char *state_dir;
    int json;
    int has_bridges, has_traffic, has_rate;
    uint64_t bridges, traffic, rate;
    const char *older_than;
    const char *identity;
    json_t *streams; /* create: stream options (tunnel/stream_opts.h) */
};

/* The one size parser (core/size.h), so 10MB means what --help and
 * DESIGN say, here as on the hub's --limit-traffic. */
static int parse_size(const char *s, uint64_t *out)
{
    return sl_size_parse(s, out);
}

static int parse_count(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < 0 || v > 1000000)
        return SL_EPARSE;
    *out = (uint64_t)v;
    return 0;
}

/* DURATION -> is it well-formed? (the hub parses the same forms) */
static int duration_ok(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v < 0)
        return 0;
    if (*end == '\0')
        return 1;
    return strchr("smhdw", *end) != NULL && end[1] == '\0';
}

/* Returns the value of option name at argv[*i] (advancing *i), NULL when
 * argv[*i] is another option, "" when the value is missing (printed). */
static const char *take(int argc, char **argv, int *i, const char *name)
{
    const char *v = NULL;
    int m = sl_cli_opt_value(argc, argv, i, name, &v);
    return m < 0 ? "" : m > 0 ? v : NULL;
}

/* The index of the command word: the first argument that is neither a
 * connection option nor its value, so `proxy --api A list` works as
 * `proxy list --api A` does. -1 when there is none. */
static int command_index(int argc, char **argv)
{
    static const char *const with_value[] = {"--api", "--token",
                                             "--state-dir"};
    for (int i = 0; i < argc; i++) {
        int skip = 0;
        for (size_t k = 0; k < sizeof(with_value) / sizeof(*with_value); k++)
            if (strcmp(argv[i], with_value[k]) == 0)
                skip = 1;
        if (skip) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--api=", 6) == 0 ||
            strncmp(argv[i], "--token=", 8) == 0 ||
            strncmp(argv[i], "--state-dir=", 12) == 0)
            continue;
        return i;
    }
    return -1;
}

/* --allow, --deny, --proxy-protocol, --max-conns, --max-sessions of
 * create: gathered as the API's stream options (the hub checks them).
 * Returns 1 when argv[*i] was one (*v its value, NULL on a bad one), 0
 * when not. */
static int stream_opt(struct sl_cli *cli, int *i, struct proxy_opts *o,
                      const char **v)
{
    static const char *const names[] = {"--allow", "--deny",
                                        "--proxy-protocol", "--max-conns",
                                        "--max-sessions"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if ((*v = take(cli->argc, cli->argv, i, names[k])) == NULL)
            continue;
        if (o->streams == NULL)
            o->streams = json_object();
        json_t *j = o->streams;
        if (j == NULL)
            goto bad;
        if (k < 2) {
            json_t *acl = json_object_get(j, "acl");
            if (acl == NULL)
                json_object_set_new(j, "acl", acl = json_object());
            const char *key = k == 0 ? "allow" : "deny";
            json_t *list = json_object_get(acl, key);
            if (list == NULL)
                json_object_set_new(acl, key, list = json_array());
            json_array_append_new(list, json_string(*v));
        } else if (k == 2) {
            if (strcmp(*v, "v1") != 0 && strcmp(*v, "v2") != 0) {
                fprintf(stderr, "sluice: proxy create: --proxy-protocol: "
                                "'%s' is not v1 or v2\n", *v);
                goto bad;
            }
            json_object_set_new(j, "proxy_protocol", json_string(*v));
        } else {
            uint64_t n;
            if (parse_count(*v, &n) != 0 || n > UINT32_MAX) {
                fprintf(stderr, "sluice: proxy create: %s: '%s' is not a "
                                "count (0 = no cap)\n", names[k], *v);
                goto bad;
            }
            json_object_set_new(j, k == 3 ? "max_connections"
                                          : "max_sessions",
                                json_integer((json_int_t)n));
        }
        return 1;
    bad:
        *v = NULL;
        return 1;
    }
    return 0;
}

static int parse_opts(struct sl_cli *cli, int cmd_at, struct proxy_opts *o)
{
    const char *cmd = cli->argv[cmd_at];
    for (int i = 0; i < cli->argc; i++) {
        if (i == cmd_at)
            continue;
        const char *a = cli->argv[i];
        const char *v;
        if ((v = take(cli->argc, cli->argv, &i, "--api")) != NULL) {
            o->api = v;
        } else if ((v = take(cli->argc, cli->argv, &i, "--token")) != NULL) {
            o->token = v;
        } else if ((v = take(cli->argc, cli->argv, &i, "--state-dir")) !=
                   NULL) {
            o->state_dir = v;
        } else if (strcmp(a, "--json") == 0 &&
                   (strcmp(cmd, "list") == 0 || strcmp(cmd, "create") == 0 ||
                    strcmp(cmd, "rotate") == 0)) {
            o->json = 1;
        } else if (strcmp(cmd, "create") == 0 &&
                   (v = take(cli->argc, cli->argv, &i, "--bridges")) !=
                       NULL) {
            if (parse_count(v, &o->bridges) != 0) {
                fprintf(stderr, "sluice: proxy create: --bridges: '%s' is "
                                "not a count (0 = unlimited)\n", v);
                return 2;
            }
            o->has_bridges = 1;
        } else if (strcmp(cmd, "create") == 0 &&
                   (v = take(cli->argc, cli->argv, &i, "--traffic")) !=
                       NULL) {
            if (parse_size(v, &o->traffic) != 0) {
                fprintf(stderr, "sluice: proxy create: --traffic: '%s' is "
                                "not a size (e.g. 10MB, 1GiB, 0)\n", v);
                return 2;
            }
            o->has_traffic = 1;
        } else if (strcmp(cmd, "create") == 0 &&
                   (v = take(cli->argc, cli->argv, &i, "--rate")) != NULL) {
            if (sl_rate_parse(v, &o->rate) != 0) {
                fprintf(stderr, "sluice: proxy create: --rate: '%s' is not "
                                "a rate (e.g. 100Mbit, 10MB/s, 0)\n", v);
                return 2;
            }
            o->has_rate = 1;
        } else if (strcmp(cmd, "create") == 0 &&
                   stream_opt(cli, &i, o, &v) != 0) {
            if (v == NULL)
                return 2;
        } else if (strcmp(cmd, "prune") == 0 &&
                   (v = take(cli->argc, cli->argv, &i, "--older-than")) !=
                       NULL) {
            if (!duration_ok(v)) {
                fprintf(stderr, "sluice: proxy prune: --older-than: '%s' is "
                                "not a duration (e.g. 3600, 30m, 12h, 7d)\n",
                        v);
                return 2;
            }
            o->older_than = v;
        } else if (a[0] != '-' &&
                   (strcmp(cmd, "remove") == 0 ||
                    strcmp(cmd, "rotate") == 0) &&
                   o->identity == NULL) {
            o->identity = a;
        } else {
            fprintf(stderr, "sluice: proxy %s: unexpected '%s'\n%s", cmd, a,
                    proxy_usage);
            return 2;
        }
        if (v != NULL && v[0] == '\0')
            return 2;
    }
    if ((strcmp(cmd, "remove") == 0 || strcmp(cmd, "rotate") == 0) &&
        o->identity == NULL) {
        fprintf(stderr, "sluice: proxy %s: which identity?\n", cmd);
        return 2;
    }
    if (o->token == NULL) {
        const char *env = getenv("SLUICE_API_TOKEN");
        if (env != NULL && env[0] != '\0')
            o->token = env;
    }
    return 0;
}

static int call(struct proxy_opts *o, const char *method, const char *path,
                json_t *body, int want, json_t **out)
{
    struct sl_cli_api api = {
        .token = o->token,
        .refused_hint = "is the hub running? (sluice boot up --proxy; or "
                        "give --api ADDR)",
        .forbidden_hint = "give the admin token with --token or "
                          "$SLUICE_API_TOKEN",
    };
    sl_cli_api_resolve(&api, o->api, o->state_dir, "hub", DEFAULT_API);
    *out = NULL;
    return sl_cli_api_call(&api, method, path, body, want, out);
}

#define CELL 96

static const char *const list_heads[] = {"IDENTITY", "USER", "BRIDGES",
                                         "TRAFFIC", "BANDWIDTH", "LIMIT",
                                         "LAST SEEN", "PLAN", "RATE",
                                         "ROTATED", "PORTS", "CERT"};
#define NCOLS (sizeof(list_heads) / sizeof(list_heads[0]))

/* An ACME certificate's state: "valid until 2026-03-01", "pending",
 * "error: why" (cut); "-" without ACME. */
static void cert_cell(json_t *c, char *cell)
{
    const char *state = json_string_value(json_object_get(c, "state"));
    const char *err = json_string_value(json_object_get(c, "error"));
    json_t *na = json_object_get(c, "not_after");
    if (state == NULL) {
        snprintf(cell, CELL, "-");
    } else if (strcmp(state, "valid") == 0 && json_is_integer(na)) {
        time_t t = (time_t)json_integer_value(na);
        struct tm tm;
        char day[16] = "?";
        if (gmtime_r(&t, &tm) != NULL)
            strftime(day, sizeof(day), "%Y-%m-%d", &tm);
        snprintf(cell, CELL, "valid until %s%s", day,
                 err != NULL ? " (renewal failing)" : "");
    } else if (strcmp(state, "error") == 0 && err != NULL) {
        snprintf(cell, CELL, "error: %.60s%s", err,
                 strlen(err) > 60 ? "..." : "");
    } else {
        snprintf(cell, CELL, "%s", state);
    }
}

static void fill_row(json_t *p, int64_t now, char cells[NCOLS][CELL])
{
    const char *id = json_string_value(json_object_get(p, "identity"));
    const char *user = json_string_value(json_object_get(p, "username"));
    snprintf(cells[0], CELL, "%s", id ? id : "?");
    snprintf(cells[1], CELL, "%s", user ? user : "?");
    uint64_t lb = sl_cli_json_u64(p, "limits", "bridges", NULL);
    uint64_t nb = sl_cli_json_u64(p, "bridges", NULL, NULL);
    if (lb > 0)
        snprintf(cells[2], CELL, "%" PRIu64 "/%" PRIu64, nb, lb);
    else
        snprintf(cells[2], CELL, "%" PRIu64, nb);
    sl_cli_fmt_usage(p, "user", cells[3], cells[4], CELL);
    uint64_t lt = sl_cli_json_u64(p, "limits", "traffic", NULL);
    char lim[SL_FMT_MAX];
    if (lt > 0)
        sl_fmt_bytes(lt, lim, sizeof(lim));
    else
        snprintf(lim, sizeof(lim), "unlimited");
    snprintf(cells[5], CELL, "%s%s", lim,
             json_is_true(json_object_get(p, "limited")) ? " (reached)" : "");
    json_t *ls = json_object_get(p, "last_seen");
    if (json_is_integer(ls) && json_integer_value(ls) > 0) {
        int64_t age = now - (int64_t)json_integer_value(ls);
        sl_fmt_ago(age < 0 ? 0 : age, cells[6], CELL);
    } else {
        snprintf(cells[6], CELL, "never");
    }
    const char *plan = json_string_value(json_object_get(p, "plan"));
    snprintf(cells[7], CELL, "%s", plan ? plan : "-");
    sl_rate_format(sl_cli_json_u64(p, "rate", NULL, NULL), cells[8], CELL);
    json_t *rot = json_object_get(p, "rotated_at");
    if (json_is_integer(rot) && json_integer_value(rot) > 0) {
        int64_t age = now - (int64_t)json_integer_value(rot);
        sl_fmt_ago(age < 0 ? 0 : age, cells[9], CELL);
    } else {
        snprintf(cells[9], CELL, "never");
    }
    /* The public stream ports leased to it (TCP and UDP tunnels). */
    uint64_t tcp = sl_cli_json_u64(p, "tcp_port", NULL, NULL);
    uint64_t udp = sl_cli_json_u64(p, "udp_port", NULL, NULL);
    if (tcp > 0 && udp > 0)
        snprintf(cells[10], CELL, "tcp/%" PRIu64 " udp/%" PRIu64, tcp, udp);
    else if (tcp > 0 || udp > 0)
        snprintf(cells[10], CELL, "%s/%" PRIu64, tcp > 0 ? "tcp" : "udp",
                 tcp > 0 ? tcp : udp);
    else
        snprintf(cells[10], CELL, "-");
    cert_cell(json_object_get(p, "certificate"), cells[11]);
}

static int cmd_list(struct proxy_opts *o)
{
    json_t *res = NULL;
    if (call(o, "GET", "/api/proxy/", NULL, 200, &res) != 0)
        return 1;
    json_t *arr = json_object_get(res, "proxies");
    if (!json_is_array(arr)) {
        fprintf(stderr, "sluice: unexpected answer from the API\n");
        json_decref(res);
        return 1;
    }
    if (o->json) {
        int rc = sl_cli_print_json(arr);
        json_decref(res);
        return rc;
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        printf("No proxies.\n");
        json_decref(res);
        return 0;
    }
    char(*rows)[NCOLS][CELL] = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        json_decref(res);
        return 1;
    }
    for (size_t c = 0; c < NCOLS; c++)
        snprintf(rows[0][c], CELL, "%s", list_heads[c]);
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++)
        fill_row(json_array_get(arr, i), now, rows[i + 1]);
    sl_cli_table_print(&rows[0][0][0], n + 1, NCOLS, CELL);
    free(rows);
    json_decref(res);
    return 0;
}

static int cmd_create(struct proxy_opts *o)
{
    json_t *body = o->streams != NULL ? json_copy(o->streams)
                                      : json_object();
    if (o->has_rate)
        json_object_set_new(body, "rate", json_integer((json_int_t)o->rate));
    if (o->has_bridges || o->has_traffic) {
        json_t *l = json_object();
        if (o->has_bridges)
            json_object_set_new(l, "bridges",
                                json_integer((json_int_t)o->bridges));
        if (o->has_traffic)
            json_object_set_new(l, "traffic",
                                json_integer((json_int_t)o->traffic));
        json_object_set_new(body, "limits", l);
    }
    json_t *res = NULL;
    int rc = call(o, "POST", "/api/proxy/", body, 201, &res);
    json_decref(body);
    if (rc != 0)
        return 1;
    if (o->json) {
        sl_cli_print_json(res);
    } else {
        const char *keys[] = {"identity", "username", "password", "url"};
        for (size_t i = 0; i < 4; i++) {
            const char *v = json_string_value(json_object_get(res, keys[i]));
            printf("%-9s %s\n", keys[i], v ? v : "?");
        }
        const char *user = json_string_value(json_object_get(res, "username"));
        printf("The password is shown only once. A bridge takes this "
               "identity with\n  sluice boot up --bridge --hub URL "
               "--upstream URL --username %s --password PASSWORD\n"
               "or sluice bridge create UPSTREAM HUB --username %s "
               "--password PASSWORD\n", user ? user : "?",
               user ? user : "?");
    }
    json_decref(res);
    return 0;
}

static int cmd_remove(struct proxy_opts *o)
{
    char path[128];
    /* Refuse what cannot be an identity before it reaches a URL. */
    if (!sl_cli_is_identity(o->identity)) {
        fprintf(stderr, "sluice: proxy remove: '%s' is not an identity\n",
                o->identity);
        return 2;
    }
    snprintf(path, sizeof(path), "/api/proxy/%s/", o->identity);
    json_t *res = NULL;
    if (call(o, "DELETE", path, NULL, 200, &res) != 0)
        return 1;
    printf("removed %s\n", o->identity);
    json_decref(res);
    return 0;
}

static int cmd_rotate(struct proxy_opts *o)
{
    char path[128];
    if (!sl_cli_is_identity(o->identity)) {
        fprintf(stderr, "sluice: proxy rotate: '%s' is not an identity\n",
                o->identity);
        return 2;
    }
    snprintf(path, sizeof(path), "/api/proxy/%s/rotate/", o->identity);
    json_t *res = NULL;
    if (call(o, "POST", path, NULL, 200, &res) != 0)
        return 1;
    if (o->json) {
        sl_cli_print_json(res);
        json_decref(res);
        return 0;
    }
    const char *pass = json_string_value(json_object_get(res, "password"));
    int64_t until = (int64_t)sl_cli_json_u64(res, "old_password_until", NULL,
                                             NULL);
    int64_t left = until - (int64_t)time(NULL);
    printf("identity  %s\npassword  %s\n", o->identity, pass ? pass : "?");
    printf("The password is shown only once. The old one opens new "
           "connections for\n%lld s more; update the bridge before then:\n"
           "  sluice bridge update %s --password PASSWORD\n",
           (long long)(left < 0 ? 0 : left), o->identity);
    json_decref(res);
    return 0;
}

static int cmd_prune(struct proxy_opts *o)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/proxy/prune/?older_than=%s",
             o->older_than ? o->older_than : "7d");
    json_t *res = NULL;
    if (call(o, "DELETE", path, NULL, 200, &res) != 0)
        return 1;
    uint64_t n = sl_cli_json_u64(res, "removed", NULL, NULL);
    printf("pruned %" PRIu64 " prox%s\n", n, n == 1 ? "y" : "ies");
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(res, "identities"), i, id)
    {
        printf("  %s\n", json_string_value(id));
    }
    json_decref(res);
    return 0;
}

int sl_cli_proxy(struct sl_cli *cli)
{
    if (cli->argc < 1 || sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(proxy_usage, cli->argc < 1 ? stderr : stdout);
        return cli->argc < 1 ? 2 : 0;
    }
    int cmd_at = command_index(cli->argc, cli->argv);
    if (cmd_at < 0) {
        fputs(proxy_usage, stderr);
        return 2;
    }
    const char *cmd = cli->argv[cmd_at];
    if (strcmp(cmd, "list") != 0 && strcmp(cmd, "create") != 0 &&
        strcmp(cmd, "remove") != 0 && strcmp(cmd, "prune") != 0 &&
        strcmp(cmd, "rotate") != 0) {
        fprintf(stderr, "sluice: proxy: unknown command '%s'\n%s", cmd,
                proxy_usage);
        return 2;
    }
    struct proxy_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_opts(cli, cmd_at, &o);
    if (rc != 0) {
        json_decref(o.streams);
        return rc;
    }
    if (strcmp(cmd, "list") == 0)
        return cmd_list(&o);
    if (strcmp(cmd, "create") == 0) {
        rc = cmd_create(&o);
        json_decref(o.streams);
        return rc;
    }
    if (strcmp(cmd, "remove") == 0)
        return cmd_remove(&o);
    if (strcmp(cmd, "rotate") == 0)
        return cmd_rotate(&o);
    return cmd_prune(&o);
}
