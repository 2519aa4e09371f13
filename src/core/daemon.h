/* Daemon mode and pid files. Call sl_daemon_start BEFORE creating the libuv
 * loop (fork and libuv do not mix), after the state directory exists.
 *
 * Typical use in `boot up --daemon`:
 *     int ready_fd;
 *     rc = sl_daemon_start(pid_path, log_path, &ready_fd);
 *     if (rc != 0) -> report, exit 1          (e.g. SL_EEXIST: running)
 *     ... create the loop, bind listeners ...
 *     sl_daemon_ready(&ready_fd, ok);         (the parent exits 0 / 1)
 *     ... run the loop ...
 *     sl_pidfile_remove(pid_path, getpid());  (on exit)
 * Without --daemon, a foreground role may still sl_pidfile_create. */
#ifndef SL_CORE_DAEMON_H
#define SL_CORE_DAEMON_H

#include <sys/types.h>

/* 1 if a process with this pid exists (kill(pid, 0) succeeds or fails with
 * EPERM), else 0. pid <= 0 gives 0. */
int sl_pid_alive(pid_t pid);

/* Reads a pid file. Returns 0 and *pid if the file names a live process;
 * SL_ENOTFOUND if there is no file or it is stale (dead pid, garbage). */
int sl_pidfile_read(const char *path, pid_t *pid);

/* Creates path with O_CREAT|O_EXCL (mode 0644) holding pid and a newline.
 * A stale file (dead pid or garbage) is removed first. Returns 0,
 * SL_EEXIST (a live process holds it; *holder (may be NULL) gets its pid)
 * or a negative errno. */
int sl_pidfile_create(const char *path, pid_t pid, pid_t *holder);

/* Removes path only if it holds pid. Returns 0 or SL_ENOTFOUND. */
int sl_pidfile_remove(const char *path, pid_t pid);

/* Detaches the process: fork, setsid, fork; the grandchild chdirs to "/",
 * sets umask 077, points stdin at /dev/null and stdout/stderr at log_path
 * (appended, 0600), and creates pid_path (sl_pidfile_create). Returns 0 in
 * the grandchild only, with *ready_fd the write end of a pipe to the
 * original process. The original process waits (at most 30 s) for
 * sl_daemon_ready: it prints "sluice: started in the background (pid N,
 * log LOG)" and exits 0 when ok, else tells to read the log and exits 1;
 * it never returns. Returns, before any fork, SL_EEXIST if pid_path names
 * a live process, or a negative errno if forking failed. */
int sl_daemon_start(const char *pid_path, const char *log_path,
                    int *ready_fd);

/* Tells the waiting parent the outcome (ok 1: listening; 0: failed) and
 * closes *ready_fd (set to -1). No-op when *ready_fd < 0 (not a daemon). */
void sl_daemon_ready(int *ready_fd, int ok);

#endif
