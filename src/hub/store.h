/* The hub's state store, behind one API with two backends
 * (hub/store_ops.h): one SQLite 3 file (WAL mode, 5 s busy timeout), the
 * default for a single hub, or a PostgreSQL database several hubs share
 * (hub/store_pg.c; every call below then works on an in-memory replica,
 * the database is written and read by a store thread). For SQLite: Every call is one short statement (or one
 * short transaction) on prepared statements, cheap enough for the event
 * loop; the scrypt hashing that precedes a create is the caller's, off the
 * loop.
 *
 * Schema version lives in PRAGMA user_version (SL_STORE_SCHEMA_VERSION);
 * opening an older file migrates it, a newer one is refused (SL_ESTATE).
 *
 * Times are unix seconds. last_seen 0 means "never seen". Limits of 0 mean
 * unlimited. Strings in struct sl_alloc are NUL-terminated and truncated
 * never: writes of over-long values are refused with SL_ETOOBIG.
 *
 * Errors: 0 on success; SL_ENOTFOUND (no such allocation), SL_EEXIST
 * (identity or username taken), SL_ETOOBIG, UV_EINVAL (NULL argument),
 * SL_ESTATE (SQLite failed; the message went to the log given at open).
 * Not thread-safe: use one store from one thread (the loop), except
 * sl_store_fetch_user and sl_store_wait_created, which are for the thread
 * pool. */
#ifndef SL_HUB_STORE_H
#define SL_HUB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

#define SL_STORE_SCHEMA_VERSION 3

#define SL_STORE_IDENTITY_MAX 32 /* NUL included; identities are 12 */
#define SL_STORE_USERNAME_MAX 64 /* NUL included; usernames are 6 */
#define SL_STORE_HASH_MAX 128    /* NUL included; == SL_PASSWORD_HASH_MAX */
#define SL_STORE_GRANT_MAX 2049  /* NUL included; == SL_GRANT_TOKEN_MAX + 1 */

struct sl_store;

struct sl_store_limits {
    uint64_t bridges; /* live control connections; 0 = unlimited */
    uint64_t traffic; /* bytes, both directions of user traffic; 0 = unl. */
};

/* Traffic deltas or totals, in bytes. "down" is towards the user (what the
 * user downloads), "up" from the user; bridge_* is what crossed the
 * tunnel. */
struct sl_store_traffic {
    uint64_t user_down;
    uint64_t user_up;
    uint64_t bridge_down;
    uint64_t bridge_up;
};

/* One allocation as stored. */
struct sl_alloc {
    char identity[SL_STORE_IDENTITY_MAX];
    char username[SL_STORE_USERNAME_MAX];
    char password_hash[SL_STORE_HASH_MAX];
    struct sl_store_limits limits;
    struct sl_store_traffic traffic;
    int limited;        /* 1 once the traffic limit was reached */
    int64_t created_at; /* unix seconds */
    int64_t last_seen;  /* unix seconds of the last bridge activity; 0 never */
};

/* Opens (creating if needed, file mode 0600) the store at path; ":memory:"
 * gives a private in-memory store (tests). path may also be
 * "sqlite:PATH" (the same) or a PostgreSQL URI "postgres://..." or
 * "postgresql://..." (the schema is created or migrated; the first
 * connection must work). log may be NULL (no logging);
 * it must outlive the store. On success *out owns the store (free with
 * sl_store_close). Returns 0, UV_EINVAL or SL_ESTATE. */
int sl_store_open(const char *path, struct sl_log *log, struct sl_store **out);

/* Finalizes statements and closes the file. NULL is a no-op. */
void sl_store_close(struct sl_store *st);

/* Inserts a new allocation from a's identity, username, password_hash,
 * limits, limited flag, created_at (0: now) and last_seen; its traffic
 * starts from a->traffic (normally zero). Returns 0, SL_EEXIST, SL_ETOOBIG,
 * UV_EINVAL, SL_ESTATE. */
int sl_store_create(struct sl_store *st, const struct sl_alloc *a);

/* Fill *out. Return 0 or SL_ENOTFOUND (or UV_EINVAL, SL_ESTATE). */
int sl_store_get_by_identity(struct sl_store *st, const char *identity,
                             struct sl_alloc *out);
int sl_store_get_by_username(struct sl_store *st, const char *username,
                             struct sl_alloc *out);

/* Calls cb for every allocation, oldest created first. a is valid only
 * during the call. cb returns 0 to go on, non-zero to stop (that value is
 * then returned). cb must not call into the store. Returns 0, cb's value,
 * or SL_ESTATE. */
typedef int (*sl_store_each_cb)(const struct sl_alloc *a, void *arg);
int sl_store_list(struct sl_store *st, sl_store_each_cb cb, void *arg);

/* Number of allocations. Returns 0 or SL_ESTATE. */
int sl_store_count(struct sl_store *st, size_t *out);

/* Deletes one allocation. Returns 0 or SL_ENOTFOUND (or SL_ESTATE). */
int sl_store_remove(struct sl_store *st, const char *identity);

/* Removes, in one transaction, allocations whose last_seen (or created_at
 * when never seen) is older than now - older_than seconds (now 0: the
 * current time). For each such candidate keep(a, arg) is asked first when
 * keep is not NULL: return 1 to keep it (e.g. a bridge is live), 0 to
 * remove it. keep must not call into the store. *removed (may be NULL)
 * gets the count removed. Returns 0 or SL_ESTATE (nothing removed). */
typedef int (*sl_store_keep_cb)(const struct sl_alloc *a, void *arg);
int sl_store_prune(struct sl_store *st, int64_t now, int64_t older_than,
                   sl_store_keep_cb keep, void *arg, size_t *removed);

/* Adds the deltas to the allocation's counters. The hub should batch
 * (e.g. flush every few seconds), not call this per read. Returns 0,
 * SL_ENOTFOUND or SL_ESTATE. */
int sl_store_add_traffic(struct sl_store *st, const char *identity,
                         const struct sl_store_traffic *delta);

/* Sets last_seen (when: unix seconds; 0: now). Returns 0, SL_ENOTFOUND or
 * SL_ESTATE. */
int sl_store_touch(struct sl_store *st, const char *identity, int64_t when);

/* Sets the limited flag (0 or 1). Returns 0, SL_ENOTFOUND or SL_ESTATE. */
int sl_store_set_limited(struct sl_store *st, const char *identity,
                         int limited);

/* Replaces the limits. Returns 0, SL_ENOTFOUND or SL_ESTATE. */
int sl_store_set_limits(struct sl_store *st, const char *identity,
                        const struct sl_store_limits *limits);

/* Stream ports: one lease per allocation and kind (SL_STORE_TCP,
 * SL_STORE_UDP), removed with the allocation. */
enum { SL_STORE_TCP = 1, SL_STORE_UDP = 2 };
/* The leased port, or 0 in *port when none. Returns 0 or SL_ESTATE. */
int sl_store_port_get(struct sl_store *st, const char *identity, int kind,
                      int *port);
/* 1 if port of kind is leased to any allocation, 0 if free (or
 * SL_ESTATE). */
int sl_store_port_taken(struct sl_store *st, int kind, int port);
/* Leases port to identity (replacing its lease of that kind). Returns 0,
 * SL_EEXIST (leased to another) or SL_ESTATE. */
int sl_store_port_set(struct sl_store *st, const char *identity, int kind,
                      int port);
/* An allocation's stream options, as JSON text ("" when none set). */
int sl_store_opts_get(struct sl_store *st, const char *identity, char *out,
                      size_t cap);
int sl_store_opts_set(struct sl_store *st, const char *identity,
                      const char *json);

/* An allocation's plan beyond its limits (hub/hub_grant.c, schema v3);
 * an allocation without a row has all of it zero. */
struct sl_store_plan {
    uint64_t rate;     /* bytes/s each way; 0: the hub's default */
    int operator_made; /* made through the admin API: its limits are its
                          plan when no grant holds */
    char grant[SL_STORE_GRANT_MAX]; /* the last grant a bridge
                                       presented; "" none */
    int64_t rotated_at;               /* unix s of the last rotation */
    char old_hash[SL_STORE_HASH_MAX]; /* the password hash a rotation
                                         replaced; "" none */
    int64_t old_until_ms; /* unix ms until which old_hash still opens */
};
/* Fills *out (zeros when the allocation has no row). Returns 0, UV_EINVAL
 * or SL_ESTATE. */
int sl_store_plan_get(struct sl_store *st, const char *identity,
                      struct sl_store_plan *out);
/* Replaces the row. Returns 0, SL_ENOTFOUND (no such allocation),
 * SL_ETOOBIG, UV_EINVAL or SL_ESTATE. */
int sl_store_plan_set(struct sl_store *st, const char *identity,
                      const struct sl_store_plan *p);
/* A rotation, in one transaction: the allocation's password hash becomes
 * hash and its plan row p (which names the old hash and its grace).
 * Returns 0, SL_ENOTFOUND, SL_ETOOBIG, UV_EINVAL or SL_ESTATE (nothing
 * changed). */
int sl_store_rotate(struct sl_store *st, const char *identity,
                    const char *hash, const struct sl_store_plan *p);

/* 1 while the store is reachable (SQLite: always), else 0. */
int sl_store_healthy(struct sl_store *st);

/* 1 when other hubs share the store (PostgreSQL): totals and flags may
 * change under the hub, which reads them back after each flush. */
int sl_store_shared(struct sl_store *st);

/* For a username the store does not hold (yet): asks the shared database
 * and, when found, makes the allocation visible to the next lookup on the
 * loop. Blocks for up to a few seconds: call it from the thread pool,
 * never the loop. Returns 0 (found), SL_ENOTFOUND (also for a store that
 * is not shared), SL_ESTATE (unreachable) or UV_EINVAL. */
int sl_store_fetch_user(struct sl_store *st, const char *username);

/* For an allocation sl_store_create just made on the loop: waits until the
 * shared database holds it, so that credentials handed out now open on
 * every hub. A store that is not shared is complete at once (0, no wait).
 * Blocks for one write's round trip, up to a few seconds: call it from the
 * thread pool, never the loop. Returns 0 (written, or no create of that
 * username is pending: the loop's next lookup tells whether it exists),
 * SL_EEXIST or SL_ESTATE (the database refused it; the loop's next lookup
 * no longer finds it), UV_ETIMEDOUT (the database was lost or is slow: the
 * write may still happen; remove the allocation to take it back) or
 * UV_EINVAL. */
int sl_store_wait_created(struct sl_store *st, const char *username);

/* "sqlite" or "postgres" (static). */
const char *sl_store_backend(const struct sl_store *st);

#endif
