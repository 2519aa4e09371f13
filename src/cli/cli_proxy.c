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

#include "api/client.h"
#include "cli/cli.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/statedir.h"

#define DEFAULT_API "127.0.0.1:8081"

static const char proxy_usage[] =
    "usage: sluice proxy <command> [options]\n"
    "\n"
    "commands:\n"
    "  list [--json]                      list allocations\n"
    "  create [--bridges N] [--traffic SIZE] [--json]\n"
    "                                     create one; prints its password\n"
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
    "SIZE: bytes, or with a unit: 10MB, 1.5GB, 512KiB (0 = unlimited).\n"
    "DURATION: seconds, or 30m, 12h, 7d, 2w.\n";

struct proxy_opts {
    const char *api;
    const char *token;
    const char *state_dir;
    int json;
    int has_bridges, has_traffic;
    uint64_t bridges, traffic;
    const char *older_than;
    const char *identity;
};

/* "10MB", "1.5GB", "512KiB", "100" -> bytes. SI units are powers of 1000
 * (as sl_fmt_bytes prints them), *iB ones powers of 1024. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || v < 0)
        return SL_EPARSE;
    while (*end == ' ')
        end++;
    static const struct {
        const char *unit;
        double mul;
    } units[] = {
        {"", 1},           {"B", 1},
        {"k", 1e3},        {"kB", 1e3},        {"K", 1e3},  {"KB", 1e3},
        {"M", 1e6},        {"MB", 1e6},        {"G", 1e9},  {"GB", 1e9},
        {"T", 1e12},       {"TB", 1e12},       {"KiB", 1024.0},
        {"MiB", 1048576.0}, {"GiB", 1073741824.0},
        {"TiB", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            double b = v * units[i].mul;
            if (b >= 9.2e18)
                return SL_EPARSE;
            *out = (uint64_t)(b + 0.5);
            return 0;
        }
    }
    return SL_EPARSE;
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

static const char *take(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, name) == 0) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "sluice: proxy: %s needs a value\n", name);
            return "";
        }
        return argv[++*i];
    }
    return NULL;
}

static int parse_opts(struct sl_cli *cli, const char *cmd,
                      struct proxy_opts *o)
{
    for (int i = 1; i < cli->argc; i++) {
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
                   (strcmp(cmd, "list") == 0 || strcmp(cmd, "create") == 0)) {
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
        } else if (a[0] != '-' && strcmp(cmd, "remove") == 0 &&
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
    if (strcmp(cmd, "remove") == 0 && o->identity == NULL) {
        fprintf(stderr, "sluice: proxy remove: which identity?\n");
        return 2;
    }
    if (o->token == NULL) {
        const char *env = getenv("SLUICE_API_TOKEN");
        if (env != NULL && env[0] != '\0')
            o->token = env;
    }
    return 0;
}

/* The API address: --api, else hub.json, else the default. */
static const char *api_addr(struct proxy_opts *o, char *buf, size_t cap)
{
    if (o->api != NULL)
        return o->api;
    char dir[SL_STATEDIR_PATH_MAX];
    struct sl_role_info info;
    if (sl_statedir_resolve(o->state_dir, dir, sizeof(dir)) == 0 &&
        sl_statedir_read_role(dir, "hub", &info) == 0 && info.api[0] != '\0') {
        snprintf(buf, cap, "%s", info.api);
        return buf;
    }
    return DEFAULT_API;
}

static int call(struct proxy_opts *o, const char *method, const char *path,
                json_t *body, int want, json_t **out)
{
    char buf[256], err[512];
    const char *addr = api_addr(o, buf, sizeof(buf));
    int status = 0;
    int rc = sl_http_client_json(addr, method, path, o->token, body, &status,
                                 out, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : sl_strerror(rc));
        if (rc == UV_ECONNREFUSED)
            fprintf(stderr, "sluice: is the hub running? (sluice boot up "
                            "--proxy; or give --api ADDR)\n");
        return 1;
    }
    if (status != want) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : "unexpected answer");
        if (status == 401)
            fprintf(stderr, "sluice: give the admin token with --token or "
                            "$SLUICE_API_TOKEN\n");
        json_decref(*out);
        *out = NULL;
        return 1;
    }
    return 0;
}

static uint64_t jint(json_t *j, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    json_int_t i = json_integer_value(v);
    return i < 0 ? 0 : (uint64_t)i;
}

/* Display width of UTF-8 text: code points (the arrows are one column). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

#define NCOLS 7
#define CELL 96

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

static void fill_row(json_t *p, int64_t now, char cells[NCOLS][CELL])
{
    const char *id = json_string_value(json_object_get(p, "identity"));
    const char *user = json_string_value(json_object_get(p, "username"));
    snprintf(cells[0], CELL, "%s", id ? id : "?");
    snprintf(cells[1], CELL, "%s", user ? user : "?");
    uint64_t lb = jint(p, "limits", "bridges", NULL);
    if (lb > 0)
        snprintf(cells[2], CELL, "%" PRIu64 "/%" PRIu64,
                 jint(p, "bridges", NULL, NULL), lb);
    else
        snprintf(cells[2], CELL, "%" PRIu64, jint(p, "bridges", NULL, NULL));
    sl_fmt_traffic(jint(p, "traffic", "user", "down"),
                   jint(p, "traffic", "user", "up"), cells[3], CELL);
    char down[SL_FMT_MAX], up[SL_FMT_MAX];
    sl_fmt_rate((double)jint(p, "bandwidth", "down", NULL), down,
                sizeof(down));
    sl_fmt_rate((double)jint(p, "bandwidth", "up", NULL), up, sizeof(up));
    snprintf(cells[4], CELL, "\xe2\x86\x93 %s \xe2\x86\x91 %s", down, up);
    uint64_t lt = jint(p, "limits", "traffic", NULL);
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
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(res);
        return s ? 0 : 1;
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
    static const char *const head[NCOLS] = {"IDENTITY", "USER", "BRIDGES",
                                            "TRAFFIC", "BANDWIDTH", "LIMIT",
                                            "LAST SEEN"};
    for (int c = 0; c < NCOLS; c++)
        snprintf(rows[0][c], CELL, "%s", head[c]);
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++)
        fill_row(json_array_get(arr, i), now, rows[i + 1]);
    size_t widths[NCOLS] = {0};
    for (size_t r = 0; r <= n; r++)
        for (int c = 0; c < NCOLS; c++)
            if (width(rows[r][c]) > widths[c])
                widths[c] = width(rows[r][c]);
    for (size_t r = 0; r <= n; r++)
        print_row(rows[r], widths);
    free(rows);
    json_decref(res);
    return 0;
}

static int cmd_create(struct proxy_opts *o)
{
    json_t *body = json_object();
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
        char *s = json_dumps(res, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
    } else {
        const char *keys[] = {"identity", "username", "password", "url"};
        for (size_t i = 0; i < 4; i++) {
            const char *v = json_string_value(json_object_get(res, keys[i]));
            printf("%-9s %s\n", keys[i], v ? v : "?");
        }
        printf("The password is shown only once: give it to the bridge "
               "(sluice bridge create ... or its config).\n");
    }
    json_decref(res);
    return 0;
}

static int cmd_remove(struct proxy_opts *o)
{
    char path[128];
    /* Refuse what cannot be an identity before it reaches a URL. */
    for (const char *p = o->identity; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) ||
            p - o->identity >= 32) {
            fprintf(stderr, "sluice: proxy remove: '%s' is not an "
                            "identity\n", o->identity);
            return 2;
        }
    }
    snprintf(path, sizeof(path), "/api/proxy/%s/", o->identity);
    json_t *res = NULL;
    if (call(o, "DELETE", path, NULL, 200, &res) != 0)
        return 1;
    printf("removed %s\n", o->identity);
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
    uint64_t n = jint(res, "removed", NULL, NULL);
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
    const char *cmd = cli->argv[0];
    if (strcmp(cmd, "list") != 0 && strcmp(cmd, "create") != 0 &&
        strcmp(cmd, "remove") != 0 && strcmp(cmd, "prune") != 0) {
        fprintf(stderr, "sluice: proxy: unknown command '%s'\n%s", cmd,
                proxy_usage);
        return 2;
    }
    struct proxy_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_opts(cli, cmd, &o);
    if (rc != 0)
        return rc;
    if (strcmp(cmd, "list") == 0)
        return cmd_list(&o);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(&o);
    if (strcmp(cmd, "remove") == 0)
        return cmd_remove(&o);
    return cmd_prune(&o);
}
