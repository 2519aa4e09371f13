/* The PostgreSQL backend: several hubs share one database.
 *
 * The loop never waits for the database. It reads and writes an in-memory
 * SQLite replica through the SQLite backend (so every call of store.h
 * keeps its contract and its speed); each write is also handed to one
 * store thread, which owns the PGconn:
 *
 * - writes other than counters (create, remove, limits, ports, options,
 *   plans, rotations) queue in order (struct pg_op) and run each in its
 *   own transaction;
 * - counters, last_seen and the limited flag are accumulated per
 *   allocation (struct pg_acct: what the loop counted, what the database
 *   has) and written every PG_CYCLE_MS in one transaction, as deltas, so
 *   hubs add to the same row without losing each other's bytes;
 * - after that, the rows changed since the last read (a sequence, rev,
 *   moves on every change) come back (struct pg_row) and the loop applies
 *   them to the replica at its next store call: totals are then the
 *   database's plus what this hub counted and has not written yet.
 *
 * A username the replica does not know (an allocation made on another hub
 * within the last cycle) is fetched by sl_store_fetch_user from the thread
 * pool, which waits for the store thread's answer.
 *
 * The queued writes go out as soon as the thread is woken, not at its
 * next cycle: a new allocation's credentials are handed out only once its
 * row is in the database (sl_store_wait_created, from the thread pool, on
 * the create's op), so that every other hub the bridge reaches next finds
 * it. A create the database refuses leaves the replica too.
 *
 * The database down: reads go on from the replica, counters keep adding
 * up in memory and the queue keeps the other writes (at most PG_OPS_MAX);
 * new allocations are refused (SL_ESTATE, logged as the store being
 * unreachable). The thread reconnects every second and writes everything
 * it holds when the database is back. */
#include "hub/store_ops.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <uv.h>

#include "core/error.h"
#include "hub/pq_lib.h"

#define PG_SCHEMA_VERSION 1
#define PG_CYCLE_MS 500      /* counters written, changes read */
#define PG_RETRY_MS 1000     /* reconnect attempts while down */
#define PG_FETCH_WAIT_MS 3000 /* a fetch or a welcome waits no longer */
#define PG_OPS_MAX 100000    /* queued writes while the database is down */
#define PG_ACCT_BUCKETS 1024
#define PG_LAG 4             /* changes are read again for this many
                                cycles: a rev taken by a transaction that
                                commits late is not skipped */
#define PG_FULL_EVERY 120    /* cycles between full reads (one minute) */
#define PG_MAX_PARAMS 10
#define PG_LOCK_KEY "7310546891023"

struct pg_stmt {
    const char *sql;
    int n;
    char *v[PG_MAX_PARAMS];
};

struct pg_op {
    struct pg_op *next;
    uint64_t seq;
    const char *what;
    int nstmt;
    struct pg_stmt stmt[3];
    /* A create: its identity and username (stmt[0]'s parameters), for
     * sl_store_wait_created and for taking a refused row out of the
     * replica. */
    const char *identity, *username;
    /* Under mu. While waiters > 0 the op outlives its removal from the
     * queue, its outcome in done and rc: the last waiter frees it. */
    int waiters;
    int done;
    int rc;
};

struct pg_acct {
    struct pg_acct *next;
    char identity[SL_STORE_IDENTITY_MAX];
    struct sl_store_traffic enq;       /* counted by the loop, cumulative */
    struct sl_store_traffic committed; /* of which in the database */
    int64_t touch;                     /* last_seen to write; 0 none */
    int limited;                       /* to write; -1 none */
    uint64_t last_seq;                 /* of the loop's last write */
};

struct pg_row {
    struct pg_row *next;
    int removed;
    struct sl_alloc a;
    int tcp, udp;
    char *opts; /* NULL: none */
    int has_plan;
    struct sl_store_plan plan;
    struct sl_store_traffic committed; /* this hub's part in a.traffic */
    uint64_t done_seq; /* the loop's writes up to this one are in it */
};

struct pg_fetch {
    struct pg_fetch *next;
    const char *username;
    int done;
    int rc;
};

struct pg_store {
    struct sl_store base;
    struct sl_store *local; /* the replica; the loop's only */
    struct sl_log *log;
    char *conninfo;
    PGconn *conn; /* the store thread's (open's before it starts) */
    pthread_t thread;
    int started;
    atomic_int healthy;
    atomic_int rows_ready;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t wake;
    pthread_cond_t answered;
    int stopping;
    struct pg_op *ops, **ops_tail;
    size_t nops;
    struct pg_acct *acct[PG_ACCT_BUCKETS];
    struct pg_row *rows, **rows_tail;
    struct pg_fetch *fetches;
    uint64_t seq;
    unsigned downs; /* connections lost: a waiter gives up on a change */

    /* The store thread's. */
    int64_t rev_hist[PG_LAG];
    unsigned cycle;
    int was_down;
};

#define PG(b) ((struct pg_store *)(b))

static const char schema_v1[] =
    "CREATE SEQUENCE IF NOT EXISTS sluice_rev;"
    "CREATE TABLE IF NOT EXISTS allocations ("
    " identity text PRIMARY KEY,"
    " username text NOT NULL UNIQUE,"
    " password_hash text NOT NULL,"
    " limit_bridges bigint NOT NULL DEFAULT 0,"
    " limit_traffic bigint NOT NULL DEFAULT 0,"
    " traffic_user_down bigint NOT NULL DEFAULT 0,"
    " traffic_user_up bigint NOT NULL DEFAULT 0,"
    " traffic_bridge_down bigint NOT NULL DEFAULT 0,"
    " traffic_bridge_up bigint NOT NULL DEFAULT 0,"
    " limited integer NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL,"
    " last_seen bigint NOT NULL DEFAULT 0,"
    " rev bigint NOT NULL DEFAULT nextval('sluice_rev'));"
    "CREATE INDEX IF NOT EXISTS allocations_rev ON allocations (rev);"
    "CREATE TABLE IF NOT EXISTS stream_ports ("
    " identity text NOT NULL REFERENCES allocations ON DELETE CASCADE,"
    " kind integer NOT NULL,"
    " port integer NOT NULL,"
    " PRIMARY KEY (identity, kind),"
    " UNIQUE (kind, port));"
    "CREATE TABLE IF NOT EXISTS stream_opts ("
    " identity text PRIMARY KEY REFERENCES allocations ON DELETE CASCADE,"
    " json text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS alloc_plans ("
    " identity text PRIMARY KEY REFERENCES allocations ON DELETE CASCADE,"
    " rate bigint NOT NULL DEFAULT 0,"
    " operator_made integer NOT NULL DEFAULT 0,"
    " grant_token text NOT NULL DEFAULT '',"
    " rotated_at bigint NOT NULL DEFAULT 0,"
    " old_hash text NOT NULL DEFAULT '',"
    " old_until_ms bigint NOT NULL DEFAULT 0);"
    /* Removals, so that other hubs drop their replica's row. */
    "CREATE TABLE IF NOT EXISTS alloc_removed ("
    " identity text PRIMARY KEY,"
    " rev bigint NOT NULL DEFAULT nextval('sluice_rev'));";

#define ROW_SELECT                                                             \
    "SELECT a.identity, a.username, a.password_hash, a.limit_bridges, "       \
    "a.limit_traffic, a.traffic_user_down, a.traffic_user_up, "               \
    "a.traffic_bridge_down, a.traffic_bridge_up, a.limited, a.created_at, "   \
    "a.last_seen, a.rev, "                                                     \
    "(SELECT port FROM stream_ports p WHERE p.identity = a.identity AND "     \
    "p.kind = 1), "                                                            \
    "(SELECT port FROM stream_ports p WHERE p.identity = a.identity AND "     \
    "p.kind = 2), "                                                            \
    "o.json, pl.rate, pl.operator_made, pl.grant_token, pl.rotated_at, "      \
    "pl.old_hash, pl.old_until_ms, pl.identity IS NOT NULL "                   \
    "FROM allocations a LEFT JOIN stream_opts o ON o.identity = a.identity "  \
    "LEFT JOIN alloc_plans pl ON pl.identity = a.identity "

#define BUMP_REV                                                               \
    "UPDATE allocations SET rev = nextval('sluice_rev') WHERE identity = $1"

/* Saturating add of a delta to a bigint column. */
#define SAT(col, p)                                                            \
    col " = LEAST(" col "::numeric + " p "::numeric, "                         \
        "9223372036854775807)::bigint"

static const char sql_flush[] =
    "UPDATE allocations SET " SAT("traffic_user_down", "$2") ", "
    SAT("traffic_user_up", "$3") ", " SAT("traffic_bridge_down", "$4") ", "
    SAT("traffic_bridge_up", "$5") ", "
    "last_seen = GREATEST(last_seen, $6::bigint), "
    "limited = CASE WHEN $7::integer < 0 THEN limited ELSE $7::integer END, "
    "rev = nextval('sluice_rev') WHERE identity = $1";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned bucket_of(const char *identity)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)identity; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % PG_ACCT_BUCKETS;
}

/* Under mu. NULL when out of memory. */
static struct pg_acct *acct_get(struct pg_store *st, const char *identity,
                                int make)
{
    unsigned k = bucket_of(identity);
    for (struct pg_acct *a = st->acct[k]; a; a = a->next)
        if (strcmp(a->identity, identity) == 0)
            return a;
    if (!make)
        return NULL;
    struct pg_acct *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    snprintf(a->identity, sizeof(a->identity), "%s", identity);
    a->limited = -1;
    a->next = st->acct[k];
    st->acct[k] = a;
    return a;
}

static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static struct sl_store_traffic traffic_sub(const struct sl_store_traffic *a,
                                           const struct sl_store_traffic *b)
{
    struct sl_store_traffic d = {
        sub0(a->user_down, b->user_down), sub0(a->user_up, b->user_up),
        sub0(a->bridge_down, b->bridge_down), sub0(a->bridge_up, b->bridge_up)};
    return d;
}

static void traffic_add(struct sl_store_traffic *a,
                        const struct sl_store_traffic *d)
{
    a->user_down += d->user_down;
    a->user_up += d->user_up;
    a->bridge_down += d->bridge_down;
    a->bridge_up += d->bridge_up;
}

static int traffic_zero(const struct sl_store_traffic *t)
{
    return !(t->user_down | t->user_up | t->bridge_down | t->bridge_up);
}

/* Statements and the queue of writes. */

static void stmt_free(struct pg_stmt *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
}

static void op_free(struct pg_op *op)
{
    if (op == NULL)
        return;
    for (int i = 0; i < op->nstmt; i++)
        stmt_free(&op->stmt[i]);
    free(op);
}

/* Adds a parameter (NULL: SQL NULL); returns 0 or UV_ENOMEM. */
static int arg_s(struct pg_stmt *s, const char *v)
{
    char *c = NULL;
    if (v != NULL && (c = strdup(v)) == NULL)
        return UV_ENOMEM;
    s->v[s->n++] = c;
    return 0;
}

static int arg_i(struct pg_stmt *s, int64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, v);
    return arg_s(s, b);
}

static int arg_u(struct pg_stmt *s, uint64_t v)
{
    return arg_i(s, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

static struct pg_op *op_new(const char *what)
{
    struct pg_op *op = calloc(1, sizeof(*op));
    if (op != NULL)
        op->what = what;
    return op;
}

static struct pg_stmt *op_stmt(struct pg_op *op, const char *sql)
{
    struct pg_stmt *s = &op->stmt[op->nstmt++];
    s->sql = sql;
    return s;
}

/* Queues op (taken) behind the others, for the identity's row. */
static int op_push(struct pg_store *st, struct pg_op *op, const char *identity)
{
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    if (st->nops >= PG_OPS_MAX) {
        rc = SL_ESTATE;
        goto out;
    }
    op->seq = ++st->seq;
    if (identity != NULL) {
        struct pg_acct *a = acct_get(st, identity, 1);
        if (a != NULL)
            a->last_seq = op->seq;
    }
    *st->ops_tail = op;
    st->ops_tail = &op->next;
    st->nops++;
    op = NULL;
    pthread_cond_signal(&st->wake);
out:
    pthread_mutex_unlock(&st->mu);
    if (op != NULL) {
        if (st->log)
            sl_error(st->log, "store: %zu writes wait for PostgreSQL; "
                              "refusing more (%s)", (size_t)PG_OPS_MAX,
                     op->what);
        op_free(op);
    }
    return rc;
}

/* The store thread's side. */

/* 1 when the connection is gone (the caller drops it), else 0. */
static int conn_lost(struct pg_store *st)
{
    return st->conn == NULL || sl_pq()->status(st->conn) != CONNECTION_OK;
}

static void went_down(struct pg_store *st, const char *what)
{
    if (!st->was_down && st->log)
        sl_error(st->log, "store: PostgreSQL unreachable while %s: %s; "
                          "serving from memory, counting on, new "
                          "allocations refused", what,
                 st->conn ? sl_pq()->errorMessage(st->conn) : "no connection");
    st->was_down = 1;
    atomic_store(&st->healthy, 0);
    /* Waiters for a create stop waiting: whether it was written is known
     * only after the reconnection. */
    pthread_mutex_lock(&st->mu);
    st->downs++;
    pthread_cond_broadcast(&st->answered);
    pthread_mutex_unlock(&st->mu);
    if (st->conn != NULL) {
        sl_pq()->finish(st->conn);
        st->conn = NULL;
    }
}

/* Runs one statement. Returns its result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or NULL: *err is then SL_EEXIST (a unique or foreign
 * key violation), SL_ESTATE (any other refusal) or UV_ECONNRESET (the
 * connection is gone; already dropped). */
static PGresult *run(struct pg_store *st, const struct pg_stmt *s,
                     const char *what, int *err)
{
    *err = 0;
    if (st->conn == NULL) {
        *err = UV_ECONNRESET;
        return NULL;
    }
    /* Without parameters, the simple protocol: several commands in one
     * string (the schema) are allowed there only. */
    PGresult *r = s->n == 0 ? sl_pq()->exec(st->conn, s->sql)
                            : sl_pq()->execParams(st->conn, s->sql, s->n, NULL,
                                                  (const char *const *)s->v,
                                                  NULL, NULL, 0);
    ExecStatusType t = r ? sl_pq()->resultStatus(r) : PGRES_FATAL_ERROR;
    if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK)
        return r;
    if (conn_lost(st)) {
        sl_pq()->clear(r);
        went_down(st, what);
        *err = UV_ECONNRESET;
        return NULL;
    }
    const char *code =
        r ? sl_pq()->resultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    *err = code && strncmp(code, "23", 2) == 0 ? SL_EEXIST : SL_ESTATE;
    if (st->log)
        sl_error(st->log, "store: PostgreSQL refused %s: %s", what,
                 r ? sl_pq()->resultErrorMessage(r) : "out of memory");
    sl_pq()->clear(r);
    return NULL;
}

static int run_sql(struct pg_store *st, const char *sql, const char *what)
{
    struct pg_stmt s = {.sql = sql};
    int err;
    PGresult *r = run(st, &s, what, &err);
    sl_pq()->clear(r);
    return err;
}

static void rollback(struct pg_store *st)
{
    if (st->conn != NULL)
        sl_pq()->clear(sl_pq()->exec(st->conn, "ROLLBACK"));
}

/* Runs op's statements in one transaction. 0, UV_ECONNRESET (try again
 * later) or another error (the op is dropped). */
static int op_run(struct pg_store *st, struct pg_op *op)
{
    /* One statement is a transaction of its own: one round trip (a
     * create, which a welcome waits for). */
    if (op->nstmt == 1) {
        int rc;
        sl_pq()->clear(run(st, &op->stmt[0], op->what, &rc));
        return rc;
    }
    int rc = run_sql(st, "BEGIN", op->what);
    for (int i = 0; rc == 0 && i < op->nstmt; i++) {
        PGresult *r = run(st, &op->stmt[i], op->what, &rc);
        sl_pq()->clear(r);
    }
    if (rc == 0)
        rc = run_sql(st, "COMMIT", op->what);
    if (rc != 0 && rc != UV_ECONNRESET)
        rollback(st);
    return rc;
}

static void rows_post(struct pg_store *st, struct pg_row *rows);

/* A create the database refused: its row leaves the replica as a removal
 * read from the database would (the other hubs never had it). */
static void post_refused(struct pg_store *st, const struct pg_op *op)
{
    struct pg_row *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return; /* the row stays until the next full read */
    w->removed = 1;
    snprintf(w->a.identity, sizeof(w->a.identity), "%s", op->identity);
    rows_post(st, w);
}

static int drain_ops(struct pg_store *st)
{
    for (;;) {
        pthread_mutex_lock(&st->mu);
        struct pg_op *op = st->ops;
        pthread_mutex_unlock(&st->mu);
        if (op == NULL)
            return 0;
        int rc = op_run(st, op);
        if (rc == UV_ECONNRESET)
            return rc;
        /* Before the op leaves the queue: a waiter that sees it gone finds
         * the replica's removal queued already. */
        if (rc != 0 && op->identity != NULL)
            post_refused(st, op);
        pthread_mutex_lock(&st->mu);
        st->ops = op->next;
        if (st->ops == NULL)
            st->ops_tail = &st->ops;
        st->nops--;
        int waited = op->waiters > 0;
        if (waited) {
            op->done = 1;
            op->rc = rc;
            pthread_cond_broadcast(&st->answered);
        }
        pthread_mutex_unlock(&st->mu);
        if (!waited)
            op_free(op);
    }
}

struct flush_item {
    char identity[SL_STORE_IDENTITY_MAX];
    struct sl_store_traffic delta;
    int64_t touch;
    int limited;
};

/* One transaction with every allocation's deltas, last_seen and flag. */
static int flush_counters(struct pg_store *st)
{
    struct flush_item *items = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    for (size_t k = 0; k < PG_ACCT_BUCKETS; k++) {
        for (struct pg_acct *a = st->acct[k]; a; a = a->next) {
            struct sl_store_traffic d = traffic_sub(&a->enq, &a->committed);
            if (traffic_zero(&d) && a->touch == 0 && a->limited < 0)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct flush_item *m = realloc(items, ncap * sizeof(*m));
                if (m == NULL)
                    break;
                items = m;
                cap = ncap;
            }
            struct flush_item *it = &items[n++];
            snprintf(it->identity, sizeof(it->identity), "%s", a->identity);
            it->delta = d;
            it->touch = a->touch;
            it->limited = a->limited;
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (n == 0)
        goto out;
    if ((rc = run_sql(st, "BEGIN", "writing counters")) != 0)
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct pg_stmt s = {.sql = sql_flush};
        const struct flush_item *it = &items[i];
        if (arg_s(&s, it->identity) || arg_u(&s, it->delta.user_down) ||
            arg_u(&s, it->delta.user_up) || arg_u(&s, it->delta.bridge_down) ||
            arg_u(&s, it->delta.bridge_up) || arg_i(&s, it->touch) ||
            arg_i(&s, it->limited))
            rc = UV_ENOMEM;
        else
            sl_pq()->clear(run(st, &s, "writing counters", &rc));
        stmt_free(&s);
    }
    if (rc == 0)
        rc = run_sql(st, "COMMIT", "writing counters");
    if (rc != 0) {
        if (rc != UV_ECONNRESET)
            rollback(st);
        goto out;
    }
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < n; i++) {
        struct pg_acct *a = acct_get(st, items[i].identity, 0);
        if (a == NULL)
            continue;
        traffic_add(&a->committed, &items[i].delta);
        if (a->touch == items[i].touch)
            a->touch = 0;
        if (a->limited == items[i].limited)
            a->limited = -1;
    }
    pthread_mutex_unlock(&st->mu);
out:
    free(items);
    return rc;
}

static uint64_t val_u(const PGresult *r, int i, int c)
{
    const struct sl_pq_lib *pq = sl_pq();
    if (pq->getisnull(r, i, c))
        return 0;
    long long v = strtoll(pq->getvalue(r, i, c), NULL, 10);
    return v < 0 ? 0 : (uint64_t)v;
}

static int64_t val_i(const PGresult *r, int i, int c)
{
    const struct sl_pq_lib *pq = sl_pq();
    return pq->getisnull(r, i, c) ? 0
                                  : strtoll(pq->getvalue(r, i, c), NULL, 10);
}

static void val_s(const PGresult *r, int i, int c, char *out, size_t cap)
{
    const struct sl_pq_lib *pq = sl_pq();
    const char *v = pq->getisnull(r, i, c) ? "" : pq->getvalue(r, i, c);
    /* Too long only if written by something else: read as empty. */
    snprintf(out, cap, "%s", strlen(v) < cap ? v : "");
}

/* Rows of ROW_SELECT to pg_rows; returns the list (NULL also when out of
 * memory: the next read has them again) and the highest rev in *rev. */
static struct pg_row *rows_of(const PGresult *r, int64_t *rev)
{
    struct pg_row *head = NULL, **tail = &head;
    for (int i = 0; i < sl_pq()->ntuples(r); i++) {
        struct pg_row *w = calloc(1, sizeof(*w));
        if (w == NULL)
            break;
        struct sl_alloc *a = &w->a;
        val_s(r, i, 0, a->identity, sizeof(a->identity));
        val_s(r, i, 1, a->username, sizeof(a->username));
        val_s(r, i, 2, a->password_hash, sizeof(a->password_hash));
        a->limits.bridges = val_u(r, i, 3);
        a->limits.traffic = val_u(r, i, 4);
        a->traffic.user_down = val_u(r, i, 5);
        a->traffic.user_up = val_u(r, i, 6);
        a->traffic.bridge_down = val_u(r, i, 7);
        a->traffic.bridge_up = val_u(r, i, 8);
        a->limited = val_i(r, i, 9) != 0;
        a->created_at = val_i(r, i, 10);
        a->last_seen = val_i(r, i, 11);
        if (val_i(r, i, 12) > *rev)
            *rev = val_i(r, i, 12);
        w->tcp = (int)val_i(r, i, 13);
        w->udp = (int)val_i(r, i, 14);
        if (!sl_pq()->getisnull(r, i, 15))
            w->opts = strdup(sl_pq()->getvalue(r, i, 15));
        w->plan.rate = val_u(r, i, 16);
        w->plan.operator_made = val_i(r, i, 17) != 0;
        val_s(r, i, 18, w->plan.grant, sizeof(w->plan.grant));
        w->plan.rotated_at = val_i(r, i, 19);
        val_s(r, i, 20, w->plan.old_hash, sizeof(w->plan.old_hash));
        w->plan.old_until_ms = val_i(r, i, 21);
        w->has_plan = sl_pq()->getvalue(r, i, 22)[0] == 't';
        *tail = w;
        tail = &w->next;
    }
    return head;
}

static void rows_free(struct pg_row *w)
{
    while (w != NULL) {
        struct pg_row *next = w->next;
        free(w->opts);
        free(w);
        w = next;
    }
}

/* Hands rows to the loop, each with this hub's part of its totals. */
static void rows_post(struct pg_store *st, struct pg_row *rows)
{
    if (rows == NULL)
        return;
    pthread_mutex_lock(&st->mu);
    /* Writes the loop queued since are not in these rows. */
    uint64_t done = st->ops ? st->ops->seq - 1 : st->seq;
    struct pg_row *last = rows;
    for (struct pg_row *w = rows; w; w = w->next) {
        struct pg_acct *a = acct_get(st, w->a.identity, 0);
        if (a != NULL)
            w->committed = a->committed;
        w->done_seq = done;
        last = w;
    }
    *st->rows_tail = rows;
    st->rows_tail = &last->next;
    atomic_store(&st->rows_ready, 1);
    pthread_mutex_unlock(&st->mu);
}

/* Reads the rows changed since rev (0: all), and the removals. */
static int read_changes(struct pg_store *st, int64_t since, int64_t *hw)
{
    struct pg_stmt s = {.sql = ROW_SELECT "WHERE a.rev > $1 ORDER BY a.rev"};
    struct pg_stmt g = {.sql = "SELECT identity, rev FROM alloc_removed "
                               "WHERE rev > $1"};
    int rc;
    *hw = since;
    if (arg_i(&s, since) != 0 || arg_i(&g, since) != 0) {
        rc = UV_ENOMEM;
        goto out;
    }
    PGresult *r = run(st, &s, "reading changes", &rc);
    if (r == NULL)
        goto out;
    struct pg_row *rows = rows_of(r, hw);
    sl_pq()->clear(r);
    r = run(st, &g, "reading removals", &rc);
    if (r == NULL) {
        rows_free(rows);
        goto out;
    }
    struct pg_row **tail = &rows;
    while (*tail)
        tail = &(*tail)->next;
    for (int i = 0; i < sl_pq()->ntuples(r); i++) {
        struct pg_row *w = calloc(1, sizeof(*w));
        if (w == NULL)
            break;
        w->removed = 1;
        val_s(r, i, 0, w->a.identity, sizeof(w->a.identity));
        if (val_i(r, i, 1) > *hw)
            *hw = val_i(r, i, 1);
        *tail = w;
        tail = &w->next;
    }
    sl_pq()->clear(r);
    rows_post(st, rows);
out:
    stmt_free(&s);
    stmt_free(&g);
    return rc;
}

static void answer_fetches(struct pg_store *st)
{
    for (;;) {
        pthread_mutex_lock(&st->mu);
        struct pg_fetch *f = st->fetches;
        if (f != NULL)
            st->fetches = f->next;
        pthread_mutex_unlock(&st->mu);
        if (f == NULL)
            return;
        int rc = UV_ECONNRESET;
        struct pg_stmt s = {.sql = ROW_SELECT "WHERE a.username = $1"};
        if (st->conn != NULL && arg_s(&s, f->username) == 0) {
            PGresult *r = run(st, &s, "looking up a username", &rc);
            if (r != NULL) {
                int64_t rev = 0;
                struct pg_row *rows = rows_of(r, &rev);
                rc = rows ? 0 : SL_ENOTFOUND;
                rows_post(st, rows);
                sl_pq()->clear(r);
            }
        }
        stmt_free(&s);
        pthread_mutex_lock(&st->mu);
        f->rc = rc == UV_ECONNRESET ? SL_ESTATE : rc;
        f->done = 1;
        pthread_cond_broadcast(&st->answered);
        pthread_mutex_unlock(&st->mu);
    }
}

static PGconn *connect_db(const char *conninfo)
{
    /* The URI first, then bounds on every wait of a dead peer: keywords
     * after an expanded dbname override it. */
    const char *const keys[] = {"dbname", "connect_timeout", "keepalives",
                                "keepalives_idle", "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout",
                                "application_name", NULL};
    const char *const vals[] = {conninfo, "3", "1", "5", "2", "3", "10000",
                                "sluice-hub", NULL};
    return sl_pq()->connectdbParams(keys, vals, 1);
}

static int reconnect(struct pg_store *st)
{
    PGconn *c = connect_db(st->conninfo);
    if (c == NULL || sl_pq()->status(c) != CONNECTION_OK) {
        sl_pq()->finish(c);
        return SL_ESTATE;
    }
    st->conn = c;
    return 0;
}

static void cycle(struct pg_store *st)
{
    if (drain_ops(st) != 0 || flush_counters(st) != 0)
        return;
    /* Rows changed within the last PG_LAG cycles are read again, and all
     * of them once a minute. */
    int64_t since = st->cycle % PG_FULL_EVERY == 0
                        ? 0
                        : st->rev_hist[st->cycle % PG_LAG];
    int64_t hw;
    if (read_changes(st, since, &hw) != 0)
        return;
    if (since == 0)
        since = st->rev_hist[(st->cycle + PG_LAG - 1) % PG_LAG];
    st->rev_hist[st->cycle % PG_LAG] = hw > since ? hw : since;
    st->cycle++;
}

static void *store_thread(void *arg)
{
    struct pg_store *st = arg;
    int64_t next = 0;
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        pthread_mutex_unlock(&st->mu);
        if (st->conn == NULL && reconnect(st) == 0) {
            if (st->was_down && st->log)
                sl_info(st->log, "store: PostgreSQL reachable again; "
                                 "writing what was kept meanwhile");
            st->was_down = 0;
            atomic_store(&st->healthy, 1);
            st->cycle = 0; /* a full read first */
        }
        if (st->conn == NULL)
            atomic_store(&st->healthy, 0);
        answer_fetches(st);
        int64_t now = now_ms();
        if (st->conn != NULL && now >= next) {
            cycle(st);
            next = now + PG_CYCLE_MS;
        } else if (st->conn != NULL) {
            /* Writes at once, not at the next cycle: a welcome may wait
             * for one. */
            (void)drain_ops(st);
        }
        int64_t until = st->conn ? next : now + PG_RETRY_MS;
        struct timespec ts = {(time_t)(until / 1000),
                              (long)(until % 1000) * 1000000};
        pthread_mutex_lock(&st->mu);
        /* A write queued while the thread was busy would otherwise wait
         * for the cycle (its signal came before this wait). */
        if (!st->stopping && st->fetches == NULL &&
            (st->ops == NULL || st->conn == NULL))
            pthread_cond_timedwait(&st->wake, &st->mu, &ts);
    }
    pthread_mutex_unlock(&st->mu);
    /* The last writes: what the hub flushed at stop. */
    if (st->conn == NULL)
        (void)reconnect(st);
    if (st->conn != NULL && drain_ops(st) == 0)
        (void)flush_counters(st);
    answer_fetches(st);
    return NULL;
}

/* The loop's side. */

/* Applies one row from the database to the replica. */
static void apply_row(struct pg_store *st, struct pg_row *w)
{
    struct sl_store *l = st->local;
    if (w->removed) {
        (void)l->ops->remove(l, w->a.identity);
        return;
    }
    pthread_mutex_lock(&st->mu);
    struct pg_acct *acct = acct_get(st, w->a.identity, 0);
    int stale = acct != NULL && acct->last_seq > w->done_seq;
    struct sl_store_traffic pending = {0, 0, 0, 0};
    if (acct != NULL)
        pending = traffic_sub(&acct->enq, &w->committed);
    pthread_mutex_unlock(&st->mu);
    if (stale)
        return; /* the next read has this hub's write too */
    traffic_add(&w->a.traffic, &pending);
    (void)l->ops->remove(l, w->a.identity);
    if (l->ops->create(l, &w->a) != 0) {
        if (st->log)
            sl_warn(st->log, "store: allocation %s from PostgreSQL does not "
                             "fit the replica (username taken)",
                    w->a.identity);
        return;
    }
    if (w->tcp > 0)
        (void)l->ops->port_set(l, w->a.identity, SL_STORE_TCP, w->tcp);
    if (w->udp > 0)
        (void)l->ops->port_set(l, w->a.identity, SL_STORE_UDP, w->udp);
    if (w->opts != NULL)
        (void)l->ops->opts_set(l, w->a.identity, w->opts);
    if (w->has_plan)
        (void)l->ops->plan_set(l, w->a.identity, &w->plan);
}

static void drain(struct pg_store *st)
{
    if (!atomic_load(&st->rows_ready))
        return;
    pthread_mutex_lock(&st->mu);
    struct pg_row *rows = st->rows;
    st->rows = NULL;
    st->rows_tail = &st->rows;
    atomic_store(&st->rows_ready, 0);
    pthread_mutex_unlock(&st->mu);
    for (struct pg_row *w = rows; w; w = w->next)
        apply_row(st, w);
    rows_free(rows);
}

static int pg_create(struct sl_store *b, const struct sl_alloc *a)
{
    struct pg_store *st = PG(b);
    drain(st);
    if (!atomic_load(&st->healthy)) {
        if (st->log)
            sl_error(st->log, "store: PostgreSQL is unreachable: new "
                              "allocations are refused until it is back");
        return SL_ESTATE;
    }
    int rc = st->local->ops->create(st->local, a);
    if (rc != 0)
        return rc;
    /* As stored, with the replica's defaults filled in. */
    struct sl_alloc s;
    if ((rc = st->local->ops->get_by_identity(st->local, a->identity, &s)))
        return rc;
    struct pg_op *op = op_new("creating an allocation");
    if (op == NULL)
        goto nomem;
    struct pg_stmt *q = op_stmt(
        op, "INSERT INTO allocations (identity, username, password_hash, "
            "limit_bridges, limit_traffic, traffic_user_down, traffic_user_up, "
            "traffic_bridge_down, traffic_bridge_up, limited, created_at, "
            "last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
            "$12)");
    if (arg_s(q, s.identity) || arg_s(q, s.username) ||
        arg_s(q, s.password_hash) || arg_u(q, s.limits.bridges) ||
        arg_u(q, s.limits.traffic) || arg_u(q, s.traffic.user_down) ||
        arg_u(q, s.traffic.user_up) || arg_u(q, s.traffic.bridge_down) ||
        arg_u(q, s.traffic.bridge_up) || arg_i(q, s.limited) ||
        arg_i(q, s.created_at) || arg_i(q, s.last_seen))
        goto nomem;
    op->identity = q->v[0];
    op->username = q->v[1];
    if ((rc = op_push(st, op, s.identity)) != 0)
        goto undo;
    return 0;
nomem:
    op_free(op);
    rc = UV_ENOMEM;
undo:
    (void)st->local->ops->remove(st->local, a->identity);
    return rc;
}

static int pg_get_by_identity(struct sl_store *b, const char *k,
                              struct sl_alloc *out)
{
    drain(PG(b));
    return PG(b)->local->ops->get_by_identity(PG(b)->local, k, out);
}

static int pg_get_by_username(struct sl_store *b, const char *k,
                              struct sl_alloc *out)
{
    drain(PG(b));
    return PG(b)->local->ops->get_by_username(PG(b)->local, k, out);
}

static int pg_list(struct sl_store *b, sl_store_each_cb cb, void *arg)
{
    drain(PG(b));
    return PG(b)->local->ops->list(PG(b)->local, cb, arg);
}

static int pg_count(struct sl_store *b, size_t *out)
{
    drain(PG(b));
    return PG(b)->local->ops->count(PG(b)->local, out);
}

static struct pg_op *remove_op(const char *identity)
{
    struct pg_op *op = op_new("removing an allocation");
    if (op == NULL)
        return NULL;
    struct pg_stmt *d =
        op_stmt(op, "DELETE FROM allocations WHERE identity = $1");
    struct pg_stmt *t = op_stmt(
        op, "INSERT INTO alloc_removed (identity) VALUES ($1) ON CONFLICT "
            "(identity) DO UPDATE SET rev = nextval('sluice_rev')");
    if (arg_s(d, identity) || arg_s(t, identity)) {
        op_free(op);
        return NULL;
    }
    return op;
}

static int pg_remove(struct sl_store *b, const char *identity)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->remove(st->local, identity);
    if (rc != 0)
        return rc;
    struct pg_op *op = remove_op(identity);
    return op ? op_push(st, op, identity) : UV_ENOMEM;
}

struct prune_ctx {
    sl_store_keep_cb keep;
    void *arg;
    char (*gone)[SL_STORE_IDENTITY_MAX];
    size_t n, cap;
};

static int prune_keep(const struct sl_alloc *a, void *arg)
{
    struct prune_ctx *p = arg;
    if (p->keep != NULL && p->keep(a, p->arg))
        return 1;
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 16;
        void *m = realloc(p->gone, ncap * sizeof(*p->gone));
        if (m == NULL)
            return 1; /* kept this time; a later prune removes it */
        p->gone = m;
        p->cap = ncap;
    }
    snprintf(p->gone[p->n++], SL_STORE_IDENTITY_MAX, "%s", a->identity);
    return 0;
}

static int pg_prune(struct sl_store *b, int64_t now, int64_t older_than,
                    sl_store_keep_cb keep, void *arg, size_t *removed)
{
    struct pg_store *st = PG(b);
    drain(st);
    struct prune_ctx p = {keep, arg, NULL, 0, 0};
    int rc = st->local->ops->prune(st->local, now, older_than, prune_keep, &p,
                                   removed);
    for (size_t i = 0; rc == 0 && i < p.n; i++) {
        struct pg_op *op = remove_op(p.gone[i]);
        if (op != NULL)
            (void)op_push(st, op, p.gone[i]);
    }
    free(p.gone);
    return rc;
}

static int pg_add_traffic(struct sl_store *b, const char *identity,
                          const struct sl_store_traffic *d)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->add_traffic(st->local, identity, d);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&st->mu);
    struct pg_acct *a = acct_get(st, identity, 1);
    if (a != NULL)
        traffic_add(&a->enq, d);
    pthread_mutex_unlock(&st->mu);
    return a ? 0 : UV_ENOMEM;
}

static int pg_touch(struct sl_store *b, const char *identity, int64_t when)
{
    struct pg_store *st = PG(b);
    drain(st);
    if (when <= 0)
        when = (int64_t)time(NULL);
    int rc = st->local->ops->touch(st->local, identity, when);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&st->mu);
    struct pg_acct *a = acct_get(st, identity, 1);
    if (a != NULL) {
        a->touch = when;
        a->last_seq = ++st->seq;
    }
    pthread_mutex_unlock(&st->mu);
    return a ? 0 : UV_ENOMEM;
}

static int pg_set_limited(struct sl_store *b, const char *identity,
                          int limited)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->set_limited(st->local, identity, limited);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&st->mu);
    struct pg_acct *a = acct_get(st, identity, 1);
    if (a != NULL) {
        a->limited = limited ? 1 : 0;
        a->last_seq = ++st->seq;
    }
    pthread_mutex_unlock(&st->mu);
    return a ? 0 : UV_ENOMEM;
}

/* A one-statement write plus the row's rev bump; params: identity ($1)
 * then the others as given. */
static int push_write(struct pg_store *st, const char *what, const char *sql,
                      const char *identity, int n, const char *const *vals)
{
    struct pg_op *op = op_new(what);
    if (op == NULL)
        return UV_ENOMEM;
    struct pg_stmt *q = op_stmt(op, sql);
    struct pg_stmt *r = op_stmt(op, BUMP_REV);
    int bad = arg_s(q, identity) || arg_s(r, identity);
    for (int i = 0; i < n && !bad; i++)
        bad = arg_s(q, vals[i]) != 0;
    if (bad) {
        op_free(op);
        return UV_ENOMEM;
    }
    return op_push(st, op, identity);
}

static int pg_set_limits(struct sl_store *b, const char *identity,
                         const struct sl_store_limits *limits)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->set_limits(st->local, identity, limits);
    if (rc != 0)
        return rc;
    char v[2][24];
    snprintf(v[0], sizeof(v[0]), "%" PRIu64,
             limits->bridges > INT64_MAX ? INT64_MAX : limits->bridges);
    snprintf(v[1], sizeof(v[1]), "%" PRIu64,
             limits->traffic > INT64_MAX ? INT64_MAX : limits->traffic);
    const char *vals[] = {v[0], v[1]};
    return push_write(st, "setting limits",
                      "UPDATE allocations SET limit_bridges = $2, "
                      "limit_traffic = $3 WHERE identity = $1",
                      identity, 2, vals);
}

static int pg_port_get(struct sl_store *b, const char *identity, int kind,
                       int *port)
{
    drain(PG(b));
    return PG(b)->local->ops->port_get(PG(b)->local, identity, kind, port);
}

static int pg_port_taken(struct sl_store *b, int kind, int port)
{
    drain(PG(b));
    return PG(b)->local->ops->port_taken(PG(b)->local, kind, port);
}

static int pg_port_set(struct sl_store *b, const char *identity, int kind,
                       int port)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->port_set(st->local, identity, kind, port);
    if (rc != 0)
        return rc;
    char k[16], p[16];
    snprintf(k, sizeof(k), "%d", kind);
    snprintf(p, sizeof(p), "%d", port);
    const char *vals[] = {k, p};
    return push_write(st, "leasing a stream port",
                      "INSERT INTO stream_ports (identity, kind, port) "
                      "VALUES ($1, $2, $3) ON CONFLICT (identity, kind) DO "
                      "UPDATE SET port = excluded.port",
                      identity, 2, vals);
}

static int pg_opts_get(struct sl_store *b, const char *identity, char *out,
                       size_t cap)
{
    drain(PG(b));
    return PG(b)->local->ops->opts_get(PG(b)->local, identity, out, cap);
}

static int pg_opts_set(struct sl_store *b, const char *identity,
                       const char *json)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->opts_set(st->local, identity, json);
    if (rc != 0)
        return rc;
    const char *vals[] = {json};
    return push_write(st, "writing stream options",
                      "INSERT INTO stream_opts (identity, json) VALUES ($1, "
                      "$2) ON CONFLICT (identity) DO UPDATE SET json = "
                      "excluded.json",
                      identity, 1, vals);
}

static int pg_plan_get(struct sl_store *b, const char *identity,
                       struct sl_store_plan *out)
{
    drain(PG(b));
    return PG(b)->local->ops->plan_get(PG(b)->local, identity, out);
}

#define PLAN_UPSERT                                                            \
    "INSERT INTO alloc_plans (identity, rate, operator_made, grant_token, "   \
    "rotated_at, old_hash, old_until_ms) VALUES ($1, $2, $3, $4, $5, $6, "    \
    "$7) ON CONFLICT (identity) DO UPDATE SET rate = excluded.rate, "          \
    "operator_made = excluded.operator_made, grant_token = "                   \
    "excluded.grant_token, rotated_at = excluded.rotated_at, old_hash = "     \
    "excluded.old_hash, old_until_ms = excluded.old_until_ms"

static int plan_args(struct pg_stmt *q, const char *identity,
                     const struct sl_store_plan *p)
{
    return arg_s(q, identity) || arg_u(q, p->rate) ||
                   arg_i(q, p->operator_made ? 1 : 0) || arg_s(q, p->grant) ||
                   arg_i(q, p->rotated_at) || arg_s(q, p->old_hash) ||
                   arg_i(q, p->old_until_ms)
               ? UV_ENOMEM
               : 0;
}

static int pg_plan_set(struct sl_store *b, const char *identity,
                       const struct sl_store_plan *p)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->plan_set(st->local, identity, p);
    if (rc != 0)
        return rc;
    struct pg_op *op = op_new("writing a plan");
    if (op == NULL)
        return UV_ENOMEM;
    struct pg_stmt *q = op_stmt(op, PLAN_UPSERT);
    struct pg_stmt *r = op_stmt(op, BUMP_REV);
    if (plan_args(q, identity, p) || arg_s(r, identity)) {
        op_free(op);
        return UV_ENOMEM;
    }
    return op_push(st, op, identity);
}

static int pg_rotate(struct sl_store *b, const char *identity,
                     const char *hash, const struct sl_store_plan *p)
{
    struct pg_store *st = PG(b);
    drain(st);
    int rc = st->local->ops->rotate(st->local, identity, hash, p);
    if (rc != 0)
        return rc;
    struct pg_op *op = op_new("rotating a password");
    if (op == NULL)
        return UV_ENOMEM;
    struct pg_stmt *h = op_stmt(op, "UPDATE allocations SET password_hash = "
                                    "$2, rev = nextval('sluice_rev') WHERE "
                                    "identity = $1");
    struct pg_stmt *q = op_stmt(op, PLAN_UPSERT);
    if (arg_s(h, identity) || arg_s(h, hash) || plan_args(q, identity, p)) {
        op_free(op);
        return UV_ENOMEM;
    }
    return op_push(st, op, identity);
}

static int pg_healthy(struct sl_store *b)
{
    return atomic_load(&PG(b)->healthy);
}

static int pg_shared(struct sl_store *b)
{
    (void)b;
    return 1;
}

/* From the thread pool: waits for the store thread's answer. */
static int pg_fetch_user(struct sl_store *b, const char *username)
{
    struct pg_store *st = PG(b);
    if (!atomic_load(&st->healthy))
        return SL_ESTATE;
    struct pg_fetch f = {.username = username};
    int64_t until = now_ms() + PG_FETCH_WAIT_MS;
    struct timespec ts = {(time_t)(until / 1000),
                          (long)(until % 1000) * 1000000};
    pthread_mutex_lock(&st->mu);
    f.next = st->fetches;
    st->fetches = &f;
    pthread_cond_signal(&st->wake);
    while (!f.done) {
        if (pthread_cond_timedwait(&st->answered, &st->mu, &ts) != 0)
            break;
    }
    if (!f.done) {
        /* Not answered in time: withdrawn, so the thread never sees it. */
        struct pg_fetch **pp = &st->fetches;
        while (*pp && *pp != &f)
            pp = &(*pp)->next;
        if (*pp)
            *pp = f.next;
        else
            while (!f.done) /* being answered right now */
                pthread_cond_wait(&st->answered, &st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return f.done ? f.rc : SL_ESTATE;
}

/* From the thread pool: waits until the create of username has left the
 * queue (written or refused), the connection is lost or the time is up. */
static int pg_wait_created(struct sl_store *b, const char *username)
{
    struct pg_store *st = PG(b);
    int64_t until = now_ms() + PG_FETCH_WAIT_MS;
    struct timespec ts = {(time_t)(until / 1000),
                          (long)(until % 1000) * 1000000};
    int rc = 0;
    struct pg_op *mine = NULL; /* the op to free: this was its last waiter */
    pthread_mutex_lock(&st->mu);
    struct pg_op *op = st->ops;
    while (op != NULL &&
           (op->username == NULL || strcmp(op->username, username) != 0))
        op = op->next;
    /* None: written already, or refused (the replica tells). */
    if (op != NULL && !atomic_load(&st->healthy)) {
        rc = UV_ETIMEDOUT;
    } else if (op != NULL) {
        unsigned downs = st->downs;
        op->waiters++;
        while (!op->done && st->downs == downs)
            if (pthread_cond_timedwait(&st->answered, &st->mu, &ts) != 0)
                break;
        rc = op->done ? op->rc : UV_ETIMEDOUT;
        /* Still queued, the thread frees it; out of the queue, the last
         * waiter does. */
        if (--op->waiters == 0 && op->done)
            mine = op;
    }
    pthread_mutex_unlock(&st->mu);
    op_free(mine);
    return rc;
}

static void pg_close(struct sl_store *b)
{
    struct pg_store *st = PG(b);
    if (st->started) {
        pthread_mutex_lock(&st->mu);
        st->stopping = 1;
        pthread_cond_signal(&st->wake);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
    }
    uint64_t lost = 0;
    for (size_t k = 0; k < PG_ACCT_BUCKETS; k++) {
        struct pg_acct *a = st->acct[k];
        while (a != NULL) {
            struct pg_acct *next = a->next;
            struct sl_store_traffic d = traffic_sub(&a->enq, &a->committed);
            lost += d.user_down + d.user_up;
            free(a);
            a = next;
        }
    }
    if ((lost > 0 || st->nops > 0) && st->log)
        sl_error(st->log, "store: PostgreSQL unreachable at exit: %" PRIu64
                          " bytes of user traffic and %zu writes not stored",
                 lost, st->nops);
    while (st->ops != NULL) {
        struct pg_op *next = st->ops->next;
        op_free(st->ops);
        st->ops = next;
    }
    rows_free(st->rows);
    if (st->conn != NULL)
        sl_pq()->finish(st->conn);
    sl_store_close(st->local);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->wake);
    pthread_cond_destroy(&st->answered);
    free(st->conninfo);
    free(st);
}

static const struct sl_store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .create = pg_create,
    .get_by_identity = pg_get_by_identity,
    .get_by_username = pg_get_by_username,
    .list = pg_list,
    .count = pg_count,
    .remove = pg_remove,
    .prune = pg_prune,
    .add_traffic = pg_add_traffic,
    .touch = pg_touch,
    .set_limited = pg_set_limited,
    .set_limits = pg_set_limits,
    .port_get = pg_port_get,
    .port_taken = pg_port_taken,
    .port_set = pg_port_set,
    .opts_get = pg_opts_get,
    .opts_set = pg_opts_set,
    .plan_get = pg_plan_get,
    .plan_set = pg_plan_set,
    .rotate = pg_rotate,
    .healthy = pg_healthy,
    .shared = pg_shared,
    .fetch_user = pg_fetch_user,
    .wait_created = pg_wait_created,
};

/* Creates or migrates the schema; hubs starting together take turns on an
 * advisory lock. */
static int migrate(struct pg_store *st)
{
    int rc = run_sql(st, "BEGIN", "migrating the schema");
    if (rc == 0)
        rc = run_sql(st, "SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")",
                     "locking the schema");
    if (rc == 0)
        rc = run_sql(st, "CREATE TABLE IF NOT EXISTS sluice_schema "
                         "(version integer NOT NULL)",
                     "creating the version table");
    int version = 0;
    if (rc == 0) {
        struct pg_stmt s = {.sql = "SELECT coalesce(max(version), 0) FROM "
                                   "sluice_schema"};
        PGresult *r = run(st, &s, "reading the schema version", &rc);
        if (r != NULL && sl_pq()->ntuples(r) == 1)
            version = (int)strtol(sl_pq()->getvalue(r, 0, 0), NULL, 10);
        sl_pq()->clear(r);
    }
    if (rc == 0 && version > PG_SCHEMA_VERSION) {
        if (st->log)
            sl_error(st->log, "store: PostgreSQL schema version %d is newer "
                              "than this sluice understands (%d)",
                     version, PG_SCHEMA_VERSION);
        rc = SL_ESTATE;
    }
    /* Each version's step goes here, in order, in this transaction. */
    if (rc == 0 && version < 1) {
        rc = run_sql(st, schema_v1, "creating schema v1");
        if (rc == 0)
            rc = run_sql(st, "DELETE FROM sluice_schema; INSERT INTO "
                             "sluice_schema VALUES (1)",
                         "setting the schema version");
    }
    if (rc == 0)
        rc = run_sql(st, "COMMIT", "migrating the schema");
    else
        rollback(st);
    return rc == 0 ? 0 : SL_ESTATE;
}

int sl_store_pg_open(const char *conninfo, struct sl_log *log,
                     struct sl_store **out)
{
    if (conninfo == NULL || out == NULL)
        return UV_EINVAL;
    *out = NULL;
    /* libpq is opened here, as the hub starts, by the hubs that use it
     * only (hub/pq_lib.h). */
    char why[512];
    if (sl_pq_load(why, sizeof(why)) != 0) {
        if (log)
            sl_error(log, "store: %s", why);
        return SL_ECONFIG;
    }
    int rc = SL_ESTATE;
    struct pg_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return UV_ENOMEM;
    st->base.ops = &pg_ops;
    st->log = log;
    st->ops_tail = &st->ops;
    st->rows_tail = &st->rows;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->answered, NULL);
    /* Deadlines of the waits are on CLOCK_REALTIME (now_ms). */
    pthread_cond_init(&st->wake, NULL);
    if ((st->conninfo = strdup(conninfo)) == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if ((rc = sl_store_sqlite_open(":memory:", log, &st->local)) != 0)
        goto out;
    if (reconnect(st) != 0) {
        if (log)
            sl_error(log, "store: cannot reach PostgreSQL: %s",
                     st->conn ? sl_pq()->errorMessage(st->conn)
                              : "connection failed");
        rc = SL_ESTATE;
        goto out;
    }
    if ((rc = migrate(st)) != 0)
        goto out;
    /* Everything, before the hub serves anyone. */
    int64_t hw = 0;
    if ((rc = read_changes(st, 0, &hw)) != 0)
        goto out;
    for (int i = 0; i < PG_LAG; i++)
        st->rev_hist[i] = hw;
    st->cycle = 1;
    drain(st);
    atomic_store(&st->healthy, 1);
    if (pthread_create(&st->thread, NULL, store_thread, st) != 0) {
        rc = UV_ENOMEM;
        goto out;
    }
    st->started = 1;
    if (log)
        sl_info(log, "store: PostgreSQL (schema v%d), a replica in memory",
                PG_SCHEMA_VERSION);
    *out = &st->base;
    st = NULL;
    rc = 0;
out:
    if (st != NULL)
        pg_close(&st->base);
    return rc;
}
