#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "core/daemon.h"
#include "core/error.h"
#include "core/statedir.h"

static void clear_env(void)
{
    unsetenv("SLUICE_STATE_DIR");
    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
}

static void test_resolve(void **state)
{
    (void)state;
    char out[SL_STATEDIR_PATH_MAX];
    clear_env();
    setenv("HOME", "/home/u", 1);
    setenv("XDG_STATE_HOME", "/xdg", 1);
    setenv("SLUICE_STATE_DIR", "/env/dir", 1);

    assert_int_equal(sl_statedir_resolve("/flag/dir", out, sizeof(out)), 0);
    assert_string_equal(out, "/flag/dir");
    /* a relative flag becomes absolute */
    char cwd[SL_STATEDIR_PATH_MAX], want[SL_STATEDIR_PATH_MAX + 8];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/rel", cwd);
    assert_int_equal(sl_statedir_resolve("rel", out, sizeof(out)), 0);
    assert_string_equal(out, want);

    if (geteuid() == 0) {
        /* root: the env variable still wins, then /var/lib/sluice */
        assert_int_equal(sl_statedir_resolve(NULL, out, sizeof(out)), 0);
        assert_string_equal(out, "/env/dir");
        unsetenv("SLUICE_STATE_DIR");
        assert_int_equal(sl_statedir_resolve("", out, sizeof(out)), 0);
        assert_string_equal(out, "/var/lib/sluice");
        clear_env();
        return;
    }
    assert_int_equal(sl_statedir_resolve(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "/env/dir");
    unsetenv("SLUICE_STATE_DIR");
    assert_int_equal(sl_statedir_resolve("", out, sizeof(out)), 0);
    assert_string_equal(out, "/xdg/sluice");
    setenv("XDG_STATE_HOME", "relative", 1); /* ignored: not absolute */
    assert_int_equal(sl_statedir_resolve(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "/home/u/.local/state/sluice");
    unsetenv("XDG_STATE_HOME");
    assert_int_equal(sl_statedir_resolve(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "/home/u/.local/state/sluice");
    assert_int_equal(sl_statedir_resolve(NULL, out, 10), SL_ETOOBIG);
    unsetenv("HOME");
    assert_int_equal(sl_statedir_resolve(NULL, out, sizeof(out)),
                     SL_ENOTFOUND);
    clear_env();
}

static void test_files(void **state)
{
    (void)state;
    char base[] = "/tmp/sl_statedir_XXXXXX";
    assert_non_null(mkdtemp(base));
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/a/b/", base);
    assert_int_equal(sl_statedir_ensure(dir), 0);
    assert_int_equal(sl_statedir_ensure(dir), 0); /* idempotent */
    struct stat sb;
    snprintf(dir, sizeof(dir), "%s/a/b", base);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    struct sl_role_info in = {.pid = getpid(), .started_at = 1234};
    snprintf(in.api, sizeof(in.api), "127.0.0.1:8081");
    snprintf(in.http, sizeof(in.http), "127.0.0.1:8080");
    assert_int_equal(sl_statedir_write_role(dir, "hub", &in), 0);
    struct sl_role_info out;
    assert_int_equal(sl_statedir_read_role(dir, "hub", &out), 0);
    assert_int_equal(out.pid, getpid());
    assert_int_equal(out.started_at, 1234);
    assert_string_equal(out.api, "127.0.0.1:8081");
    assert_string_equal(out.http, "127.0.0.1:8080");
    assert_int_equal(sl_statedir_read_role(dir, "node", &out), SL_ENOTFOUND);
    assert_int_equal(sl_statedir_read_role(dir, "../x", &out), UV_EINVAL);

    char path[512];
    assert_int_equal(sl_statedir_path(dir, "hub.json", path, sizeof(path)),
                     0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* garbage */
    assert_int_equal(sl_statedir_write_file(dir, "node.json", "{\"pid\":\"x\"}",
                                            11), 0);
    assert_int_equal(sl_statedir_read_role(dir, "node", &out), SL_EPARSE);
    /* Regression, role file pid wraps: 4294967297 must not read as pid 1
     * (nor 4294967296 as 0, the caller's process group). */
    static const char *const wrapping[] = {"{\"pid\":4294967297}",
                                           "{\"pid\":4294967296}",
                                           "{\"pid\":2147483648}"};
    for (size_t i = 0; i < sizeof(wrapping) / sizeof(wrapping[0]); i++) {
        assert_int_equal(sl_statedir_write_file(dir, "node.json", wrapping[i],
                                                strlen(wrapping[i])), 0);
        assert_int_equal(sl_statedir_read_role(dir, "node", &out), SL_EPARSE);
        assert_int_equal(out.pid, 0);
    }
    assert_int_equal(sl_statedir_write_file(dir, "node.json",
                                            "{\"pid\":2147483647}", 18), 0);
    assert_int_equal(sl_statedir_read_role(dir, "node", &out), 0);
    assert_int_equal(out.pid, 2147483647);

    /* removal only by the owner */
    assert_int_equal(sl_statedir_remove_role(dir, "hub", getpid() + 1),
                     SL_ENOTFOUND);
    assert_int_equal(sl_statedir_remove_role(dir, "hub", getpid()), 0);
    assert_int_equal(sl_statedir_read_role(dir, "hub", &out), SL_ENOTFOUND);

    /* pid files */
    char pidp[512];
    assert_int_equal(sl_statedir_path(dir, "hub.pid", pidp, sizeof(pidp)), 0);
    pid_t holder = 0, got = 0;
    assert_int_equal(sl_pidfile_read(pidp, &got), SL_ENOTFOUND);
    assert_int_equal(sl_pidfile_create(pidp, getpid(), &holder), 0);
    assert_int_equal(sl_pidfile_read(pidp, &got), 0);
    assert_int_equal(got, getpid());
    /* held by a live process (us): refused for another pid */
    assert_int_equal(sl_pidfile_create(pidp, 1, &holder), SL_EEXIST);
    assert_int_equal(holder, getpid());
    assert_int_equal(sl_pidfile_remove(pidp, 1), SL_ENOTFOUND);
    assert_int_equal(sl_pidfile_remove(pidp, getpid()), 0);
    /* a stale file (a pid that cannot exist) is replaced */
    assert_int_equal(sl_statedir_write_file(dir, "hub.pid", "2147483646\n",
                                            11), 0);
    assert_int_equal(sl_pidfile_read(pidp, &got), SL_ENOTFOUND);
    assert_int_equal(sl_pidfile_create(pidp, getpid(), NULL), 0);
    assert_int_equal(sl_pidfile_remove(pidp, getpid()), 0);
    /* garbage is stale too */
    assert_int_equal(sl_statedir_write_file(dir, "hub.pid", "abc", 3), 0);
    assert_int_equal(sl_pidfile_create(pidp, getpid(), NULL), 0);
    assert_int_equal(sl_pidfile_remove(pidp, getpid()), 0);

    assert_true(sl_pid_alive(getpid()));
    assert_false(sl_pid_alive(0));
    assert_false(sl_pid_alive(-5));

    int fd = -1;
    sl_daemon_ready(&fd, 1); /* not a daemon: no-op */
    assert_int_equal(fd, -1);

    rmdir(dir);
    snprintf(dir, sizeof(dir), "%s/a", base);
    rmdir(dir);
    rmdir(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
