/* The store's backends (private to src/hub and its tests). store.h's
 * functions are the API; each dispatches through the ops table of the
 * store it is given. A backend's own struct begins with struct sl_store.
 *
 * - SQLite (store.c): the embedded default, one hub, every call a short
 *   statement on the loop.
 * - PostgreSQL (store_pg.c): several hubs share one database. The loop
 *   reads and writes an in-memory SQLite replica through the SQLite
 *   backend; a store thread owning the PGconn writes the changes behind
 *   it and refreshes the replica from the database (see store_pg.c). */
#ifndef SL_HUB_STORE_OPS_H
#define SL_HUB_STORE_OPS_H

#include "hub/store.h"

struct sl_store_ops;

struct sl_store {
    const struct sl_store_ops *ops;
};

/* Every entry is required except healthy, shared, fetch_user and
 * wait_created (NULL: always reachable, not shared, nothing to fetch, every
 * create complete when it returns). Contracts: store.h. */
struct sl_store_ops {
    const char *name;
    void (*close)(struct sl_store *st);
    int (*create)(struct sl_store *st, const struct sl_alloc *a);
    int (*get_by_identity)(struct sl_store *st, const char *identity,
                           struct sl_alloc *out);
    int (*get_by_username)(struct sl_store *st, const char *username,
                           struct sl_alloc *out);
    int (*list)(struct sl_store *st, sl_store_each_cb cb, void *arg);
    int (*count)(struct sl_store *st, size_t *out);
    int (*remove)(struct sl_store *st, const char *identity);
    int (*prune)(struct sl_store *st, int64_t now, int64_t older_than,
                 sl_store_keep_cb keep, void *arg, size_t *removed);
    int (*add_traffic)(struct sl_store *st, const char *identity,
                       const struct sl_store_traffic *delta);
    int (*touch)(struct sl_store *st, const char *identity, int64_t when);
    int (*set_limited)(struct sl_store *st, const char *identity,
                       int limited);
    int (*set_limits)(struct sl_store *st, const char *identity,
                      const struct sl_store_limits *limits);
    int (*port_get)(struct sl_store *st, const char *identity, int kind,
                    int *port);
    int (*port_taken)(struct sl_store *st, int kind, int port);
    int (*port_set)(struct sl_store *st, const char *identity, int kind,
                    int port);
    int (*opts_get)(struct sl_store *st, const char *identity, char *out,
                    size_t cap);
    int (*opts_set)(struct sl_store *st, const char *identity,
                    const char *json);
    int (*plan_get)(struct sl_store *st, const char *identity,
                    struct sl_store_plan *out);
    int (*plan_set)(struct sl_store *st, const char *identity,
                    const struct sl_store_plan *p);
    int (*rotate)(struct sl_store *st, const char *identity,
                  const char *hash, const struct sl_store_plan *p);
    int (*healthy)(struct sl_store *st);
    int (*shared)(struct sl_store *st);
    int (*fetch_user)(struct sl_store *st, const char *username);
    int (*wait_created)(struct sl_store *st, const char *username);
};

/* The backends' openers. path: a file or ":memory:"; conninfo: a libpq
 * URI or key=value string. Same returns as sl_store_open. */
int sl_store_sqlite_open(const char *path, struct sl_log *log,
                         struct sl_store **out);
int sl_store_pg_open(const char *conninfo, struct sl_log *log,
                     struct sl_store **out);

#endif
