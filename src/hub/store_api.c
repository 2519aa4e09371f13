/* store.h's functions: the choice of backend at open, then one dispatch
 * each through the store's ops table (hub/store_ops.h). */
#include "hub/store.h"
#include "hub/store_ops.h"

#include <string.h>

#include <uv.h>

#include "core/error.h"

static int is_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

int sl_store_open(const char *spec, struct sl_log *log, struct sl_store **out)
{
    if (spec == NULL || out == NULL)
        return UV_EINVAL;
    *out = NULL;
    if (is_prefix(spec, "postgres://") || is_prefix(spec, "postgresql://"))
        return sl_store_pg_open(spec, log, out);
    if (is_prefix(spec, "sqlite:"))
        spec += strlen("sqlite:");
    if (spec[0] == '\0')
        return UV_EINVAL;
    return sl_store_sqlite_open(spec, log, out);
}

void sl_store_close(struct sl_store *st)
{
    if (st != NULL)
        st->ops->close(st);
}

/* Every call below: NULL store is UV_EINVAL, as the SQLite backend always
 * answered. */
#define CALL(st, op, ...)                                                      \
    ((st) == NULL ? UV_EINVAL : (st)->ops->op((st), __VA_ARGS__))

int sl_store_create(struct sl_store *st, const struct sl_alloc *a)
{
    return CALL(st, create, a);
}

int sl_store_get_by_identity(struct sl_store *st, const char *identity,
                             struct sl_alloc *out)
{
    return CALL(st, get_by_identity, identity, out);
}

int sl_store_get_by_username(struct sl_store *st, const char *username,
                             struct sl_alloc *out)
{
    return CALL(st, get_by_username, username, out);
}

int sl_store_list(struct sl_store *st, sl_store_each_cb cb, void *arg)
{
    return CALL(st, list, cb, arg);
}

int sl_store_count(struct sl_store *st, size_t *out)
{
    return CALL(st, count, out);
}

int sl_store_remove(struct sl_store *st, const char *identity)
{
    return CALL(st, remove, identity);
}

int sl_store_prune(struct sl_store *st, int64_t now, int64_t older_than,
                   sl_store_keep_cb keep, void *arg, size_t *removed)
{
    return CALL(st, prune, now, older_than, keep, arg, removed);
}

int sl_store_add_traffic(struct sl_store *st, const char *identity,
                         const struct sl_store_traffic *delta)
{
    return CALL(st, add_traffic, identity, delta);
}

int sl_store_touch(struct sl_store *st, const char *identity, int64_t when)
{
    return CALL(st, touch, identity, when);
}

int sl_store_set_limited(struct sl_store *st, const char *identity,
                         int limited)
{
    return CALL(st, set_limited, identity, limited);
}

int sl_store_set_limits(struct sl_store *st, const char *identity,
                        const struct sl_store_limits *limits)
{
    return CALL(st, set_limits, identity, limits);
}

int sl_store_port_get(struct sl_store *st, const char *identity, int kind,
                      int *port)
{
    if (port != NULL)
        *port = 0;
    if (identity == NULL || port == NULL)
        return UV_EINVAL;
    return CALL(st, port_get, identity, kind, port);
}

int sl_store_port_taken(struct sl_store *st, int kind, int port)
{
    return CALL(st, port_taken, kind, port);
}

int sl_store_port_set(struct sl_store *st, const char *identity, int kind,
                      int port)
{
    if (identity == NULL)
        return UV_EINVAL;
    return CALL(st, port_set, identity, kind, port);
}

int sl_store_opts_get(struct sl_store *st, const char *identity, char *out,
                      size_t cap)
{
    if (out == NULL || cap == 0 || identity == NULL)
        return UV_EINVAL;
    out[0] = '\0';
    return CALL(st, opts_get, identity, out, cap);
}

int sl_store_opts_set(struct sl_store *st, const char *identity,
                      const char *json)
{
    if (identity == NULL || json == NULL)
        return UV_EINVAL;
    return CALL(st, opts_set, identity, json);
}

int sl_store_plan_get(struct sl_store *st, const char *identity,
                      struct sl_store_plan *out)
{
    if (out == NULL || identity == NULL)
        return UV_EINVAL;
    memset(out, 0, sizeof(*out));
    return CALL(st, plan_get, identity, out);
}

int sl_store_plan_set(struct sl_store *st, const char *identity,
                      const struct sl_store_plan *p)
{
    return CALL(st, plan_set, identity, p);
}

int sl_store_rotate(struct sl_store *st, const char *identity,
                    const char *hash, const struct sl_store_plan *p)
{
    return CALL(st, rotate, identity, hash, p);
}

int sl_store_healthy(struct sl_store *st)
{
    if (st == NULL)
        return 0;
    return st->ops->healthy ? st->ops->healthy(st) : 1;
}

int sl_store_shared(struct sl_store *st)
{
    return st != NULL && st->ops->shared != NULL && st->ops->shared(st);
}

int sl_store_fetch_user(struct sl_store *st, const char *username)
{
    if (st == NULL || username == NULL)
        return UV_EINVAL;
    return st->ops->fetch_user ? st->ops->fetch_user(st, username)
                               : SL_ENOTFOUND;
}

int sl_store_wait_created(struct sl_store *st, const char *username)
{
    if (st == NULL || username == NULL)
        return UV_EINVAL;
    return st->ops->wait_created ? st->ops->wait_created(st, username) : 0;
}

const char *sl_store_backend(const struct sl_store *st)
{
    return st != NULL ? st->ops->name : "none";
}
