#include "core/statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "core/error.h"

#define ROLE_FILE_MAX 4096

static int put(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return SL_ETOOBIG;
    }
    return 0;
}

int sl_statedir_resolve(const char *flag, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return UV_EINVAL;
    out[0] = '\0';
    if (flag != NULL && flag[0] != '\0') {
        if (flag[0] == '/')
            return put(out, cap, flag, "");
        char cwd[SL_STATEDIR_PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return -errno;
        int n = snprintf(out, cap, "%s/%s", cwd, flag);
        if (n < 0 || (size_t)n >= cap) {
            out[0] = '\0';
            return SL_ETOOBIG;
        }
        return 0;
    }
    const char *env = getenv("SLUICE_STATE_DIR");
    if (env != NULL && env[0] != '\0')
        return sl_statedir_resolve(env, out, cap);
    if (geteuid() == 0)
        return put(out, cap, "/var/lib/sluice", "");
    env = getenv("XDG_STATE_HOME");
    if (env != NULL && env[0] == '/')
        return put(out, cap, env, "/sluice");
    env = getenv("HOME");
    if (env != NULL && env[0] == '/')
        return put(out, cap, env, "/.local/state/sluice");
    return SL_ENOTFOUND;
}

int sl_statedir_ensure(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return UV_EINVAL;
    char p[SL_STATEDIR_PATH_MAX];
    if (put(p, sizeof(p), dir, "") != 0)
        return SL_ETOOBIG;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    /* Each prefix in turn: parents first. */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            int err = -errno;
            p[i] = saved;
            return err;
        }
        p[i] = saved;
    }
    struct stat sb;
    if (stat(p, &sb) != 0)
        return -errno;
    return S_ISDIR(sb.st_mode) ? 0 : UV_ENOTDIR;
}

int sl_statedir_path(const char *dir, const char *name, char *out,
                     size_t cap)
{
    if (dir == NULL || name == NULL || out == NULL)
        return UV_EINVAL;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return SL_ETOOBIG;
    }
    return 0;
}

int sl_statedir_write_file(const char *dir, const char *name,
                           const char *data, size_t len)
{
    if (dir == NULL || name == NULL || (data == NULL && len > 0))
        return UV_EINVAL;
    char path[SL_STATEDIR_PATH_MAX], tmp[SL_STATEDIR_PATH_MAX];
    if (sl_statedir_path(dir, name, path, sizeof(path)) != 0)
        return SL_ETOOBIG;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return SL_ETOOBIG;
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

static int role_name(const char *role, const char *ext, char *out,
                     size_t cap)
{
    if (role == NULL || role[0] == '\0' || strchr(role, '/') != NULL)
        return UV_EINVAL;
    int n = snprintf(out, cap, "%s%s", role, ext);
    return n < 0 || (size_t)n >= cap ? SL_ETOOBIG : 0;
}

int sl_statedir_write_role(const char *dir, const char *role,
                           const struct sl_role_info *info)
{
    char name[64];
    if (info == NULL)
        return UV_EINVAL;
    int rc = role_name(role, ".json", name, sizeof(name));
    if (rc != 0)
        return rc;
    json_t *j = json_pack("{s:I, s:I, s:s, s:s}", "pid",
                          (json_int_t)info->pid, "started_at",
                          (json_int_t)info->started_at, "api", info->api,
                          "http", info->http);
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (s == NULL)
        return UV_ENOMEM;
    size_t len = strlen(s);
    char *withnl = realloc(s, len + 2);
    if (withnl == NULL) {
        free(s);
        return UV_ENOMEM;
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    rc = sl_statedir_write_file(dir, name, withnl, len + 1);
    free(withnl);
    return rc;
}

static void copy_str(json_t *j, const char *key, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, key));
    snprintf(out, cap, "%s", v ? v : "");
}

int sl_statedir_read_role(const char *dir, const char *role,
                          struct sl_role_info *out)
{
    char name[64], path[SL_STATEDIR_PATH_MAX];
    if (dir == NULL || out == NULL)
        return UV_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = role_name(role, ".json", name, sizeof(name));
    if (rc != 0)
        return rc;
    if (sl_statedir_path(dir, name, path, sizeof(path)) != 0)
        return SL_ETOOBIG;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? SL_ENOTFOUND : -errno;
    char buf[ROLE_FILE_MAX];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n == sizeof(buf))
        return SL_EPARSE;
    json_error_t e;
    json_t *j = json_loadb(buf, n, 0, &e);
    if (!json_is_object(j)) {
        json_decref(j);
        return SL_EPARSE;
    }
    json_t *pid = json_object_get(j, "pid");
    /* pid_t is 32 bits: a larger number would wrap to some other process
     * (4294967297 is pid 1) that callers then probe or signal. */
    if (!json_is_integer(pid) || json_integer_value(pid) <= 0 ||
        json_integer_value(pid) > INT32_MAX) {
        json_decref(j);
        return SL_EPARSE;
    }
    out->pid = (pid_t)json_integer_value(pid);
    out->started_at = json_integer_value(json_object_get(j, "started_at"));
    copy_str(j, "api", out->api, sizeof(out->api));
    copy_str(j, "http", out->http, sizeof(out->http));
    json_decref(j);
    return 0;
}

int sl_statedir_remove_role(const char *dir, const char *role, pid_t pid)
{
    struct sl_role_info info;
    char name[64], path[SL_STATEDIR_PATH_MAX];
    int rc = sl_statedir_read_role(dir, role, &info);
    if (rc != 0 || info.pid != pid)
        return SL_ENOTFOUND;
    if (role_name(role, ".json", name, sizeof(name)) != 0 ||
        sl_statedir_path(dir, name, path, sizeof(path)) != 0)
        return SL_ETOOBIG;
    return unlink(path) == 0 ? 0 : SL_ENOTFOUND;
}
