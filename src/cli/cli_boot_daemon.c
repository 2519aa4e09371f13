#include "cli/cli_boot_daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli_util.h"
#include "core/daemon.h"
#include "core/error.h"
#include "core/statedir.h"

#define DEFAULT_DOWN_TIMEOUT_S 15

static const char daemon_usage[] =
    "usage: sluice boot down [--proxy|--bridge] [--state-dir DIR]\n"
    "                        [--timeout SECONDS]\n"
    "       sluice boot status [--proxy|--bridge] [--state-dir DIR] [--json]\n"
    "\n"
    "down sends SIGTERM to the running hub (--proxy) and/or node (--bridge),\n"
    "both by default, and waits for them to exit (default 15 s).\n"
    "status tells for each whether it runs: pid, addresses, uptime.\n";

struct role_ref {
    const char *name; /* file prefix */
    const char *flag; /* CLI flag */
    const char *label;
};

static const struct role_ref role_refs[] = {
    {"hub", "--proxy", "hub (proxy)"},
    {"node", "--bridge", "node (bridge)"},
};
#define NROLES (sizeof(role_refs) / sizeof(role_refs[0]))

struct daemon_opts {
    const char *state_dir;
    int want[NROLES];
    int timeout_s;
    int json;
};

static int parse(struct sl_cli *cli, struct daemon_opts *o, int down)
{
    int any = 0;
    o->timeout_s = DEFAULT_DOWN_TIMEOUT_S;
    for (int i = 1; i < cli->argc; i++) {
        const char *a = cli->argv[i];
        int matched = 0;
        for (size_t r = 0; r < NROLES; r++) {
            if (strcmp(a, role_refs[r].flag) == 0) {
                o->want[r] = 1;
                any = matched = 1;
            }
        }
        if (matched)
            continue;
        int m = sl_cli_opt_value(cli->argc, cli->argv, &i, "--state-dir",
                                 &o->state_dir);
        if (m < 0)
            return 2;
        if (m > 0) {
            continue;
        } else if (!down && strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (down && (strcmp(a, "--timeout") == 0 ||
                            strncmp(a, "--timeout=", 10) == 0)) {
            const char *v = a[9] == '=' ? a + 10
                            : i + 1 < cli->argc ? cli->argv[++i]
                                                : "";
            char *end;
            errno = 0;
            long t = strtol(v, &end, 10);
            if (end == v || *end != '\0' || errno != 0 || t < 1 || t > 3600) {
                fprintf(stderr, "sluice: boot down: --timeout: '%s' is not "
                                "1..3600 seconds\n", v);
                return 2;
            }
            o->timeout_s = (int)t;
        } else {
            fprintf(stderr, "sluice: boot %s: unexpected '%s'\n%s",
                    down ? "down" : "status", a, daemon_usage);
            return 2;
        }
    }
    if (!any)
        for (size_t r = 0; r < NROLES; r++)
            o->want[r] = 1;
    return 0;
}

/* On Linux, a pid that was reused by an unrelated program must not get
 * our SIGTERM: its command line has to mention sluice. Where /proc is
 * missing we trust the pid. */
static int looks_like_sluice(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT && access("/proc/self", F_OK) != 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return strstr(buf, "sluice") != NULL;
}

struct found {
    pid_t pid; /* 0: not running */
    struct sl_role_info info;
    int has_info;
    char pid_path[SL_STATEDIR_PATH_MAX];
};

static void find_role(const char *dir, const struct role_ref *r,
                      struct found *f)
{
    memset(f, 0, sizeof(*f));
    char name[32];
    snprintf(name, sizeof(name), "%s.pid", r->name);
    if (sl_statedir_path(dir, name, f->pid_path, sizeof(f->pid_path)) != 0)
        f->pid_path[0] = '\0';
    f->has_info = sl_statedir_read_role(dir, r->name, &f->info) == 0;
    pid_t pid = 0;
    if (f->pid_path[0] && sl_pidfile_read(f->pid_path, &pid) == 0 &&
        looks_like_sluice(pid)) {
        f->pid = pid;
        return;
    }
    if (f->has_info && sl_pid_alive(f->info.pid) &&
        looks_like_sluice(f->info.pid))
        f->pid = f->info.pid;
}

static void fmt_uptime(int64_t s, char *out, size_t cap)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(out, cap, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, cap, "%lldm%02llds", (long long)(s / 60),
                 (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, cap, "%lldh%02lldm", (long long)(s / 3600),
                 (long long)(s % 3600 / 60));
    else
        snprintf(out, cap, "%lldd%02lldh", (long long)(s / 86400),
                 (long long)(s % 86400 / 3600));
}

static int resolve(const struct daemon_opts *o, char *dir, size_t cap)
{
    int rc = sl_statedir_resolve(o->state_dir, dir, cap);
    if (rc != 0) {
        fprintf(stderr, "sluice: no state directory: give --state-dir or "
                        "set SLUICE_STATE_DIR (%s)\n", sl_strerror(rc));
        return 2;
    }
    return 0;
}

/* What down and status do first: help, options, the state directory.
 * Returns -1 to go on, else the exit code. */
static int begin(struct sl_cli *cli, struct daemon_opts *o, int down,
                 char *dir, size_t cap)
{
    memset(o, 0, sizeof(*o));
    if (sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(daemon_usage, stdout);
        return 0;
    }
    int rc = parse(cli, o, down);
    if (rc == 0)
        rc = resolve(o, dir, cap);
    return rc != 0 ? rc : -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sl_cli_boot_down(struct sl_cli *cli)
{
    struct daemon_opts o;
    char dir[SL_STATEDIR_PATH_MAX];
    int rc = begin(cli, &o, 1, dir, sizeof(dir));
    if (rc >= 0)
        return rc;
    int exit_code = 0;
    struct found f[NROLES];
    for (size_t r = 0; r < NROLES; r++)
        find_role(dir, &role_refs[r], &f[r]);
    /* `boot up --proxy --bridge` runs both roles in one process: stopping
     * one stops the other, so it is reported too. */
    for (size_t r = 0; r < NROLES; r++)
        for (size_t q = 0; q < NROLES; q++)
            if (o.want[q] && f[q].pid != 0 && f[r].pid == f[q].pid)
                o.want[r] = 1;
    /* Signal every role first, then wait for all: they stop in parallel.
     * A process gets one SIGTERM: a second would make it exit at once. */
    for (size_t r = 0; r < NROLES; r++) {
        if (!o.want[r])
            continue;
        if (f[r].pid == 0) {
            printf("%s: not running\n", role_refs[r].label);
            continue;
        }
        int signalled = 0;
        for (size_t q = 0; q < r; q++)
            signalled |= o.want[q] && f[q].pid == f[r].pid;
        if (signalled)
            continue;
        if (kill(f[r].pid, SIGTERM) != 0 && errno != ESRCH) {
            fprintf(stderr, "sluice: %s: cannot signal pid %ld: %s\n",
                    role_refs[r].label, (long)f[r].pid, strerror(errno));
            f[r].pid = 0;
            exit_code = 1;
        }
    }
    int64_t deadline = now_ms() + (int64_t)o.timeout_s * 1000;
    for (size_t r = 0; r < NROLES; r++) {
        if (!o.want[r] || f[r].pid == 0)
            continue;
        while (sl_pid_alive(f[r].pid) && now_ms() < deadline) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (sl_pid_alive(f[r].pid)) {
            fprintf(stderr, "sluice: %s: still running after %d s (pid "
                            "%ld)\n", role_refs[r].label, o.timeout_s,
                    (long)f[r].pid);
            exit_code = 1;
            continue;
        }
        /* A clean exit removes these; after a crash we do. */
        sl_pidfile_remove(f[r].pid_path, f[r].pid);
        sl_statedir_remove_role(dir, role_refs[r].name, f[r].pid);
        printf("%s: stopped (pid %ld)\n", role_refs[r].label,
               (long)f[r].pid);
    }
    return exit_code;
}

int sl_cli_boot_status(struct sl_cli *cli)
{
    struct daemon_opts o;
    char dir[SL_STATEDIR_PATH_MAX];
    int rc = begin(cli, &o, 0, dir, sizeof(dir));
    if (rc >= 0)
        return rc;
    int running = 0;
    json_t *arr = o.json ? json_array() : NULL;
    int64_t now = (int64_t)time(NULL);
    for (size_t r = 0; r < NROLES; r++) {
        if (!o.want[r])
            continue;
        struct found f;
        find_role(dir, &role_refs[r], &f);
        /* Addresses only when the info file belongs to that process. */
        int info_ok = f.pid != 0 && f.has_info && f.info.pid == f.pid;
        if (f.pid != 0)
            running++;
        if (arr != NULL) {
            json_t *j = json_pack("{s:s, s:b}", "role", role_refs[r].name,
                                  "running", f.pid != 0);
            if (f.pid != 0)
                json_object_set_new(j, "pid", json_integer(f.pid));
            if (info_ok) {
                json_object_set_new(j, "api", json_string(f.info.api));
                json_object_set_new(j, "http", json_string(f.info.http));
                json_object_set_new(j, "started_at",
                                    json_integer(f.info.started_at));
            }
            json_array_append_new(arr, j);
            continue;
        }
        if (f.pid == 0) {
            printf("%s: not running\n", role_refs[r].label);
            continue;
        }
        printf("%s: running (pid %ld", role_refs[r].label, (long)f.pid);
        if (info_ok) {
            if (f.info.api[0])
                printf(", api %s", f.info.api);
            if (f.info.http[0])
                printf(", http %s", f.info.http);
            if (f.info.started_at > 0) {
                char up[32];
                fmt_uptime(now - f.info.started_at, up, sizeof(up));
                printf(", up %s", up);
            }
        }
        printf(")\n");
    }
    if (arr != NULL) {
        sl_cli_print_json(arr);
        json_decref(arr);
    }
    fflush(stdout);
    return running > 0 ? 0 : 3;
}
