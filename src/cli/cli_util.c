#include "cli/cli_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "api/client.h"
#include "api/server.h"
#include "core/daemon.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/statedir.h"

int sl_cli_opt_value(int argc, char **argv, int *i, const char *name,
                     const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0; /* a longer option: --api-token is not --api */
    if (*i + 1 >= argc) {
        fprintf(stderr, "sluice: %s needs a value\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int sl_cli_opt_strings(int argc, char **argv, int *i,
                       const struct sl_cli_str_opt *opts, size_t n,
                       void *base)
{
    for (size_t k = 0; k < n; k++) {
        const char *val;
        int m = sl_cli_opt_value(argc, argv, i, opts[k].name, &val);
        if (m > 0)
            *(const char **)(void *)((char *)base + opts[k].off) = val;
        if (m != 0)
            return m;
    }
    return 0;
}

void sl_cli_api_resolve(struct sl_cli_api *api, const char *flag,
                        const char *state_flag, const char *role,
                        const char *fallback)
{
    char dir[SL_STATEDIR_PATH_MAX];
    int have_dir = sl_statedir_resolve(state_flag, dir, sizeof(dir)) == 0;
    struct sl_role_info info;
    const char *addr = fallback;
    if (flag != NULL)
        addr = flag;
    /* A crashed role leaves its file behind: trust it only while its
     * process lives. */
    else if (have_dir && sl_statedir_read_role(dir, role, &info) == 0 &&
             sl_pid_alive(info.pid) && info.api[0] != '\0')
        addr = info.api;
    /* Off loopback the API speaks TLS (the hub's certificate): trust the
     * hub's local CA when it has one ($SLUICE_API_CA names another). */
    const char *bare = strstr(addr, "://") ? strstr(addr, "://") + 3 : addr;
    int tls = strncmp(addr, "https://", 8) == 0 ||
              (strstr(addr, "://") == NULL &&
               !sl_api_listen_is_loopback(addr));
    snprintf(api->addr, sizeof(api->addr), "%s%s", tls ? "https://" : "",
             tls ? bare : addr);
    api->ca[0] = '\0';
    api->own_ca = 0;
    const char *env = getenv("SLUICE_API_CA");
    if (tls && env != NULL && env[0] != '\0')
        snprintf(api->ca, sizeof(api->ca), "%s", env);
    else if (tls && have_dir) {
        snprintf(api->ca, sizeof(api->ca), "%s/tls/ca.pem", dir);
        api->own_ca = access(api->ca, R_OK) == 0;
        if (!api->own_ca)
            api->ca[0] = '\0';
    }
}

int sl_cli_api_call(const struct sl_cli_api *api, const char *method,
                    const char *path, json_t *body, int want, json_t **out)
{
    int status = 0;
    char err[512] = "";
    json_t *resp = NULL;
    int rc = sl_http_client_json(api->addr, api->ca[0] ? api->ca : NULL,
                                 api->own_ca, method, path, api->token, body,
                                 &status, &resp, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : sl_strerror(rc));
        if (rc == UV_ECONNREFUSED && api->refused_hint != NULL)
            fprintf(stderr, "sluice: %s\n", api->refused_hint);
        json_decref(resp);
        return 1;
    }
    if (want != 0 ? status != want : (status < 200 || status >= 300)) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : "unexpected answer");
        if (status == 401 && api->forbidden_hint != NULL)
            fprintf(stderr, "sluice: %s\n", api->forbidden_hint);
        json_decref(resp);
        return 1;
    }
    if (out != NULL)
        *out = resp;
    else
        json_decref(resp);
    return 0;
}

uint64_t sl_cli_json_u64(json_t *o, const char *k1, const char *k2,
                         const char *k3)
{
    json_t *v = json_object_get(o, k1);
    if (k2 != NULL)
        v = json_object_get(v, k2);
    if (k3 != NULL)
        v = json_object_get(v, k3);
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? 0
                                         : (uint64_t)json_integer_value(v);
    /* 2^64 and above do not fit: clamp rather than overflow. */
    if (json_is_real(v))
        return json_real_value(v) < 0 ? 0
               : json_real_value(v) >= 1.8e19 ? UINT64_MAX
                                              : (uint64_t)json_real_value(v);
    return 0;
}

const char *sl_cli_json_str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

void sl_cli_fmt_usage(json_t *o, const char *side, char *traffic,
                      char *bandwidth, size_t cap)
{
    sl_fmt_traffic(sl_cli_json_u64(o, "traffic", side, "down"),
                   sl_cli_json_u64(o, "traffic", side, "up"), traffic, cap);
    char down[SL_FMT_MAX], up[SL_FMT_MAX];
    sl_fmt_rate((double)sl_cli_json_u64(o, "bandwidth", "down", NULL), down,
                sizeof(down));
    sl_fmt_rate((double)sl_cli_json_u64(o, "bandwidth", "up", NULL), up,
                sizeof(up));
    snprintf(bandwidth, cap, "\xe2\x86\x93 %s \xe2\x86\x91 %s", down, up);
}

int sl_cli_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s == NULL)
        return 1;
    puts(s);
    free(s);
    return 0;
}

int sl_cli_is_identity(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')) ||
            n >= 32)
            return 0;
    return n > 0;
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

/* Tables are a handful of columns wide. */
#define TABLE_COLS_MAX 16

void sl_cli_table_print(const char *cells, size_t nrows, size_t ncols,
                        size_t cell)
{
    size_t widths[TABLE_COLS_MAX] = {0};
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < ncols && c < TABLE_COLS_MAX; c++) {
            size_t w = width(cells + (r * ncols + c) * cell);
            if (w > widths[c])
                widths[c] = w;
        }
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = cells + (r * ncols + c) * cell;
            fputs(s, stdout);
            if (c + 1 < ncols && c < TABLE_COLS_MAX)
                for (size_t p = width(s); p < widths[c] + 2; p++)
                    putchar(' ');
        }
        putchar('\n');
    }
}
