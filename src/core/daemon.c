#include "core/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "core/error.h"

#define READY_WAIT_MS 30000

int sl_pid_alive(pid_t pid)
{
    if (pid <= 0)
        return 0;
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* Reads the pid a file names; 0 if none or garbage. */
static pid_t pidfile_pid(const char *path, int *exists)
{
    *exists = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    *exists = 1;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || v <= 0 || v > 0x7fffffffL ||
        (*end != '\0' && *end != '\n'))
        return 0;
    return (pid_t)v;
}

int sl_pidfile_read(const char *path, pid_t *pid)
{
    if (path == NULL)
        return UV_EINVAL;
    int exists;
    pid_t p = pidfile_pid(path, &exists);
    if (p == 0 || !sl_pid_alive(p))
        return SL_ENOTFOUND;
    if (pid)
        *pid = p;
    return 0;
}

int sl_pidfile_create(const char *path, pid_t pid, pid_t *holder)
{
    if (path == NULL || pid <= 0)
        return UV_EINVAL;
    /* Two tries: the second after removing a stale file. */
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char buf[32];
            int n = snprintf(buf, sizeof(buf), "%ld\n", (long)pid);
            int rc = 0;
            if (write(fd, buf, (size_t)n) != n)
                rc = UV_EIO;
            if (close(fd) != 0 && rc == 0)
                rc = -errno;
            if (rc != 0)
                unlink(path);
            return rc;
        }
        if (errno != EEXIST)
            return -errno;
        int exists;
        pid_t other = pidfile_pid(path, &exists);
        if (other != 0 && other != pid && sl_pid_alive(other)) {
            if (holder)
                *holder = other;
            return SL_EEXIST;
        }
        if (unlink(path) != 0 && errno != ENOENT)
            return -errno;
    }
    return SL_EEXIST;
}

int sl_pidfile_remove(const char *path, pid_t pid)
{
    if (path == NULL)
        return UV_EINVAL;
    int exists;
    if (pidfile_pid(path, &exists) != pid)
        return SL_ENOTFOUND;
    return unlink(path) == 0 ? 0 : SL_ENOTFOUND;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The original process: waits for the daemon's report, then exits. The
 * report is "P<pid>\n" once the pid file is written, then "1" (ready) or
 * "0" (failed); EOF before "1" is a failure. */
static void parent_wait(int fd, pid_t child, const char *log_path)
{
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    char buf[64];
    size_t len = 0;
    int64_t deadline = now_ms() + READY_WAIT_MS;
    int ok = 0, done = 0;
    while (!done && len < sizeof(buf) - 1) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *nl = strchr(buf, '\n');
        if (nl != NULL && nl[1] != '\0') {
            ok = nl[1] == '1';
            done = 1;
        }
    }
    buf[len] = '\0';
    long pid = buf[0] == 'P' ? strtol(buf + 1, NULL, 10) : 0;
    if (ok) {
        printf("sluice: started in the background (pid %ld, log %s)\n", pid,
               log_path);
        fflush(stdout);
        exit(0);
    }
    fprintf(stderr, "sluice: the background process failed to start; see "
                    "%s\n", log_path);
    exit(1);
}

static void report(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

int sl_daemon_start(const char *pid_path, const char *log_path,
                    int *ready_fd)
{
    if (pid_path == NULL || log_path == NULL || ready_fd == NULL)
        return UV_EINVAL;
    *ready_fd = -1;
    pid_t running;
    if (sl_pidfile_read(pid_path, &running) == 0) {
        fprintf(stderr, "sluice: already running (pid %ld, pid file %s)\n",
                (long)running, pid_path);
        return SL_EEXIST;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -errno;
    fflush(NULL); /* no buffered output duplicated into the children */
    pid_t child = fork();
    if (child < 0) {
        int err = -errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    if (child > 0) {
        close(fds[1]);
        parent_wait(fds[0], child, log_path); /* exits */
    }
    close(fds[0]);
    if (setsid() < 0)
        _exit(1);
    /* The second fork: the session leader exits so the daemon can never
     * reacquire a controlling terminal. */
    pid_t grand = fork();
    if (grand < 0)
        _exit(1);
    if (grand > 0)
        _exit(0);

    int fd = fds[1];
    umask(077);
    if (chdir("/") != 0)
        _exit(1);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                     0600);
    if (devnull < 0 || logfd < 0) {
        report(fd, "P0\n0");
        _exit(1);
    }
    dup2(devnull, STDIN_FILENO);
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    close(devnull);
    close(logfd);
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    pid_t holder = 0;
    int rc = sl_pidfile_create(pid_path, getpid(), &holder);
    if (rc != 0) {
        fprintf(stderr, "sluice: cannot create pid file %s: %s\n", pid_path,
                rc == SL_EEXIST ? "another process holds it"
                                : sl_strerror(rc));
        report(fd, "P0\n0");
        _exit(1);
    }
    char msg[32];
    snprintf(msg, sizeof(msg), "P%ld\n", (long)getpid());
    report(fd, msg);
    *ready_fd = fd;
    return 0;
}

void sl_daemon_ready(int *ready_fd, int ok)
{
    if (ready_fd == NULL || *ready_fd < 0)
        return;
    report(*ready_fd, ok ? "1" : "0");
    close(*ready_fd);
    *ready_fd = -1;
}
