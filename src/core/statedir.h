/* The state directory of a hub or node, and the small files in it.
 *
 * Resolution order (sl_statedir_resolve):
 *   1. the --state-dir flag, if given (non-empty; a relative one is made
 *      absolute against the current directory, as daemons chdir to /);
 *   2. $SLUICE_STATE_DIR;
 *   3. root (euid 0): /var/lib/sluice;
 *   4. $XDG_STATE_HOME/sluice (XDG_STATE_HOME must be absolute);
 *   5. $HOME/.local/state/sluice.
 * Created (with parents) mode 0700 by sl_statedir_ensure.
 *
 * Files in it:
 *   hub.db                 the hub's SQLite store (hub/store.h)
 *   hub.json, node.json    the running role's info (sl_statedir_write_role),
 *                          written once its listeners are bound, removed on
 *                          a clean exit
 *   bridges.json           the node's bridges (node owns the format)
 *   routes.json            the stream routes and their agents, for
 *                          `sluice route list` (cli/cli_route.h)
 *   hub.pid, node.pid      pid files of daemons (core/daemon.h)
 *   hub.log, node.log      daemons' stdout/stderr
 * Roles are named "hub" and "node" (CLI flags --proxy and --bridge). */
#ifndef SL_CORE_STATEDIR_H
#define SL_CORE_STATEDIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SL_STATEDIR_PATH_MAX 4096

/* Writes the state directory chosen by the order above into out. flag may
 * be NULL. Does not create it. Returns 0, SL_ETOOBIG or SL_ENOTFOUND (no
 * flag, no variable, no HOME). */
int sl_statedir_resolve(const char *flag, char *out, size_t cap);

/* mkdir -p dir with mode 0700 for the directories it creates (existing
 * ones are left as they are). Returns 0 or a negative errno (UV_ code). */
int sl_statedir_ensure(const char *dir);

/* Writes dir "/" name into out. Returns 0 or SL_ETOOBIG. */
int sl_statedir_path(const char *dir, const char *name, char *out,
                     size_t cap);

/* Writes data to dir/name atomically (a temporary file in dir, fsync,
 * rename), mode 0600. Returns 0 or a negative errno. Blocking: call before
 * the loop runs, or from the thread pool. */
int sl_statedir_write_file(const char *dir, const char *name,
                           const char *data, size_t len);

/* What a running role publishes in <role>.json. */
struct sl_role_info {
    pid_t pid;
    int64_t started_at; /* unix seconds */
    char api[128];      /* "127.0.0.1:8081", "" if none */
    char http[128];     /* public HTTP listener (hub), "" if none */
};

/* Writes <role>.json ({"pid":..,"started_at":..,"api":"..","http":".."})
 * atomically. role is "hub" or "node". Returns 0 or a negative errno. */
int sl_statedir_write_role(const char *dir, const char *role,
                           const struct sl_role_info *info);

/* Reads <role>.json into *out. Returns 0, SL_ENOTFOUND (no file) or
 * SL_EPARSE. Says nothing about whether the pid still runs: see
 * sl_pid_alive in core/daemon.h. */
int sl_statedir_read_role(const char *dir, const char *role,
                          struct sl_role_info *out);

/* Removes <role>.json if it names pid (so a newer process's file is left
 * alone). Returns 0 or SL_ENOTFOUND. */
int sl_statedir_remove_role(const char *dir, const char *role, pid_t pid);

#endif
