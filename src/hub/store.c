#include "hub/store.h"
#include "hub/store_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "core/error.h"

enum stmt_id {
    ST_INSERT,
    ST_GET_ID,
    ST_GET_USER,
    ST_LIST,
    ST_COUNT,
    ST_DELETE,
    ST_TRAFFIC,
    ST_TOUCH,
    ST_LIMITED,
    ST_LIMITS,
    ST_PRUNE_SELECT,
    ST_PORT_GET,
    ST_PORT_OWNER,
    ST_PORT_SET,
    ST_OPTS_GET,
    ST_OPTS_SET,
    ST_PLAN_GET,
    ST_PLAN_SET,
    ST_PASSWORD,
    ST__COUNT
};

#define COLS                                                                   \
    "identity, username, password_hash, limit_bridges, limit_traffic, "        \
    "traffic_user_down, traffic_user_up, traffic_bridge_down, "                \
    "traffic_bridge_up, limited, created_at, last_seen"

/* Saturating counter update; see the schema's comment. */
#define SAT(col, param) col " = min(" col " + " param ", 9223372036854775807)"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_INSERT] = "INSERT INTO allocations (" COLS ") "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_GET_ID] = "SELECT " COLS " FROM allocations WHERE identity = ?1",
    [ST_GET_USER] = "SELECT " COLS " FROM allocations WHERE username = ?1",
    [ST_LIST] = "SELECT " COLS " FROM allocations ORDER BY created_at, rowid",
    [ST_COUNT] = "SELECT count(*) FROM allocations",
    [ST_DELETE] = "DELETE FROM allocations WHERE identity = ?1",
    [ST_TRAFFIC] = "UPDATE allocations SET "
                   SAT("traffic_user_down", "?2") ", "
                   SAT("traffic_user_up", "?3") ", "
                   SAT("traffic_bridge_down", "?4") ", "
                   SAT("traffic_bridge_up", "?5") " WHERE identity = ?1",
    [ST_TOUCH] = "UPDATE allocations SET last_seen = ?2 WHERE identity = ?1",
    [ST_LIMITED] = "UPDATE allocations SET limited = ?2 WHERE identity = ?1",
    [ST_LIMITS] = "UPDATE allocations SET limit_bridges = ?2, "
                  "limit_traffic = ?3 WHERE identity = ?1",
    [ST_PRUNE_SELECT] = "SELECT " COLS " FROM allocations WHERE "
                        "(CASE WHEN last_seen > 0 THEN last_seen "
                        "ELSE created_at END) < ?1 ORDER BY rowid",
    [ST_PORT_GET] = "SELECT port FROM stream_ports WHERE identity = ?1 AND "
                    "kind = ?2",
    [ST_PORT_OWNER] = "SELECT identity FROM stream_ports WHERE kind = ?1 AND "
                      "port = ?2",
    [ST_PORT_SET] = "INSERT INTO stream_ports (identity, kind, port) "
                    "VALUES (?1, ?2, ?3) ON CONFLICT (identity, kind) DO "
                    "UPDATE SET port = excluded.port",
    [ST_OPTS_GET] = "SELECT json FROM stream_opts WHERE identity = ?1",
    [ST_OPTS_SET] = "INSERT OR REPLACE INTO stream_opts (identity, json) "
                    "VALUES (?1, ?2)",
    [ST_PLAN_GET] = "SELECT rate, operator_made, grant_token, rotated_at, "
                    "old_hash, old_until_ms FROM alloc_plans WHERE "
                    "identity = ?1",
    /* Only for an allocation that exists: no row outlives its own. */
    [ST_PLAN_SET] = "INSERT OR REPLACE INTO alloc_plans (identity, rate, "
                    "operator_made, grant_token, rotated_at, old_hash, "
                    "old_until_ms) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE "
                    "EXISTS (SELECT 1 FROM allocations WHERE identity = ?1)",
    [ST_PASSWORD] = "UPDATE allocations SET password_hash = ?2 WHERE "
                    "identity = ?1",
};

/* Version 3: what an allocation's plan is made of besides its limits
 * (hub/hub_grant.c): its bandwidth cap, whether the operator made it,
 * the last grant a bridge presented, and the password a rotation
 * replaced, with the time until which it still opens. */
static const char schema_v3[] =
    "CREATE TABLE IF NOT EXISTS alloc_plans ("
    " identity TEXT PRIMARY KEY NOT NULL,"
    " rate INTEGER NOT NULL DEFAULT 0,"
    " operator_made INTEGER NOT NULL DEFAULT 0,"
    " grant_token TEXT NOT NULL DEFAULT '',"
    " rotated_at INTEGER NOT NULL DEFAULT 0,"
    " old_hash TEXT NOT NULL DEFAULT '',"
    " old_until_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TRIGGER IF NOT EXISTS allocation_plan_gone AFTER DELETE ON "
    "allocations BEGIN"
    " DELETE FROM alloc_plans WHERE identity = OLD.identity;"
    " END;";

/* Version 2: the stream ports leased to allocations (one per kind, a
 * port held by one allocation per kind) and their stream options; both
 * go with the allocation. */
static const char schema_v2[] =
    "CREATE TABLE IF NOT EXISTS stream_ports ("
    " identity TEXT NOT NULL,"
    " kind INTEGER NOT NULL,"
    " port INTEGER NOT NULL,"
    " PRIMARY KEY (identity, kind),"
    " UNIQUE (kind, port));"
    "CREATE TABLE IF NOT EXISTS stream_opts ("
    " identity TEXT PRIMARY KEY NOT NULL,"
    " json TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS allocation_gone AFTER DELETE ON "
    "allocations BEGIN"
    " DELETE FROM stream_ports WHERE identity = OLD.identity;"
    " DELETE FROM stream_opts WHERE identity = OLD.identity;"
    " END;";

/* Version 1. Counters are INTEGER (signed 64-bit in SQLite); values are
 * clamped to 2^63 - 1 on the way in, and sums saturate there (SQLite
 * turns an overflowing sum into a REAL, which min() brings back). */
static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS allocations ("
    " identity TEXT PRIMARY KEY NOT NULL,"
    " username TEXT NOT NULL UNIQUE,"
    " password_hash TEXT NOT NULL,"
    " limit_bridges INTEGER NOT NULL DEFAULT 0,"
    " limit_traffic INTEGER NOT NULL DEFAULT 0,"
    " traffic_user_down INTEGER NOT NULL DEFAULT 0,"
    " traffic_user_up INTEGER NOT NULL DEFAULT 0,"
    " traffic_bridge_down INTEGER NOT NULL DEFAULT 0,"
    " traffic_bridge_up INTEGER NOT NULL DEFAULT 0,"
    " limited INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL DEFAULT 0"
    ");";

struct sq_store {
    struct sl_store base; /* first: the backend's handle */
    sqlite3 *db;
    struct sl_log *log;
    sqlite3_stmt *stmt[ST__COUNT];
    /* A full disk fails every flush of every allocation (while some
     * small writes still fit): the first failure is logged, the rest
     * only counted until writes have worked for STORE_QUIET_S. */
    uint64_t failing;
    int64_t last_failure;
};

#define STORE_QUIET_S 30

static void sq_close(struct sq_store *st);

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static sqlite3_int64 clamp_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

static uint64_t col_u64(sqlite3_stmt *s, int i)
{
    sqlite3_int64 v = sqlite3_column_int64(s, i);
    return v < 0 ? 0 : (uint64_t)v;
}

static int fail(struct sq_store *st, const char *what)
{
    if (st->log && st->failing++ == 0)
        sl_error(st->log,
                 "store: %s failed: %s (further store failures are counted, "
                 "not logged, until writes work again)",
                 what, sqlite3_errmsg(st->db));
    st->last_failure = now_s();
    return SL_ESTATE;
}

static void wrote(struct sq_store *st)
{
    if (st->failing == 0 || now_s() - st->last_failure < STORE_QUIET_S)
        return;
    if (st->log)
        sl_info(st->log, "store: writing works again (%" PRIu64
                " operations were refused meanwhile)", st->failing);
    st->failing = 0;
}

static int exec_sql(struct sq_store *st, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (st->log)
            sl_error(st->log, "store: %s failed: %s", what,
                     msg ? msg : "unknown error");
        sqlite3_free(msg);
        return SL_ESTATE;
    }
    return 0;
}

static int copy_col(sqlite3_stmt *s, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    int n = sqlite3_column_bytes(s, i);
    if (t == NULL || n < 0) {
        out[0] = '\0';
        return 0;
    }
    if ((size_t)n >= cap) {
        out[0] = '\0';
        return SL_ETOOBIG;
    }
    memcpy(out, t, (size_t)n);
    out[n] = '\0';
    return 0;
}

static void row_to_alloc(sqlite3_stmt *s, struct sl_alloc *a)
{
    memset(a, 0, sizeof(*a));
    /* Values were checked on the way in; a too-long one can only come from
     * a hand-edited file and reads back as empty. */
    (void)copy_col(s, 0, a->identity, sizeof(a->identity));
    (void)copy_col(s, 1, a->username, sizeof(a->username));
    (void)copy_col(s, 2, a->password_hash, sizeof(a->password_hash));
    a->limits.bridges = col_u64(s, 3);
    a->limits.traffic = col_u64(s, 4);
    a->traffic.user_down = col_u64(s, 5);
    a->traffic.user_up = col_u64(s, 6);
    a->traffic.bridge_down = col_u64(s, 7);
    a->traffic.bridge_up = col_u64(s, 8);
    a->limited = sqlite3_column_int64(s, 9) != 0;
    a->created_at = sqlite3_column_int64(s, 10);
    a->last_seen = sqlite3_column_int64(s, 11);
}

static sqlite3_stmt *stmt_get(struct sq_store *st, enum stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int migrate(struct sq_store *st)
{
    sqlite3_stmt *s = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) !=
        SQLITE_OK)
        return fail(st, "reading schema version");
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);

    if (version > SL_STORE_SCHEMA_VERSION) {
        if (st->log)
            sl_error(st->log, "store: schema version %d is newer than this "
                              "sluice understands (%d)",
                     version, SL_STORE_SCHEMA_VERSION);
        return SL_ESTATE;
    }
    if (version == SL_STORE_SCHEMA_VERSION)
        return 0;
    /* Each step moves one version up, inside one transaction with the
     * version bump, so a crash leaves either the old or the new schema. */
    int rc = exec_sql(st, "BEGIN IMMEDIATE", "beginning migration");
    if (rc != 0)
        return rc;
    if (version < 1) {
        rc = exec_sql(st, schema_v1, "creating schema v1");
        if (rc == 0)
            rc = exec_sql(st, "PRAGMA user_version = 1", "setting version");
    }
    if (rc == 0 && version < 2) {
        rc = exec_sql(st, schema_v2, "creating schema v2");
        if (rc == 0)
            rc = exec_sql(st, "PRAGMA user_version = 2", "setting version");
    }
    if (rc == 0 && version < 3) {
        rc = exec_sql(st, schema_v3, "creating schema v3");
        if (rc == 0)
            rc = exec_sql(st, "PRAGMA user_version = 3", "setting version");
    }
    if (rc != 0) {
        (void)exec_sql(st, "ROLLBACK", "rolling back migration");
        return rc;
    }
    return exec_sql(st, "COMMIT", "committing migration");
}

/* SQLite makes -wal and -shm with the database's mode, but ones left by
 * an older run keep theirs; they hold the same rows. */
static void private_companions(const char *path, struct sl_log *log)
{
    static const char *const suffix[] = {"-wal", "-shm"};
    char p[4096];
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        int n = snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        if (n < 0 || (size_t)n >= sizeof(p))
            continue;
        if (chmod(p, 0600) != 0 && errno != ENOENT && log)
            sl_warn(log, "store: cannot make %s private (0600): %s", p,
                    strerror(errno));
    }
}

static int sq_open(const char *path, struct sl_log *log, struct sq_store **out)
{
    if (path == NULL || out == NULL)
        return UV_EINVAL;
    *out = NULL;
    int rc = SL_ESTATE;
    struct sq_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return UV_ENOMEM;
    st->log = log;

    int memory = strcmp(path, ":memory:") == 0;
    if (!memory) {
        /* Create the file 0600 ourselves: SQLite would use the umask, and
         * the file holds password hashes. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = -errno;
            if (log)
                sl_error(log, "store: opening %s failed: %s", path,
                         strerror(errno));
            goto out;
        }
        /* An existing file keeps the mode it was made with: make it
         * private at every open (its -wal and -shm follow below). */
        if (fchmod(fd, 0600) != 0 && log)
            sl_warn(log, "store: cannot make %s private (0600): %s", path,
                    strerror(errno));
        close(fd);
    }
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        if (log)
            sl_error(log, "store: opening %s failed: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (!memory &&
        (rc = exec_sql(st, "PRAGMA journal_mode = WAL", "enabling WAL")) != 0)
        goto out;
    if (!memory)
        private_companions(path, log);
    /* WAL with synchronous=NORMAL is durable across application crashes
     * and keeps each write short; a power loss may lose the last
     * counters, which is acceptable for statistics. */
    if ((rc = exec_sql(st, "PRAGMA synchronous = NORMAL", "setting sync")) != 0)
        goto out;
    if ((rc = migrate(st)) != 0)
        goto out;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = fail(st, "preparing statements");
            goto out;
        }
    }
    *out = st;
    st = NULL;
    rc = 0;
out:
    sq_close(st);
    return rc;
}

static void sq_close(struct sq_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
}

static int bind_text(sqlite3_stmt *s, int i, const char *v, size_t cap)
{
    size_t n = strlen(v);
    if (n >= cap)
        return SL_ETOOBIG;
    return sqlite3_bind_text(s, i, v, (int)n, SQLITE_STATIC) == SQLITE_OK
               ? 0
               : SL_ESTATE;
}

static int sq_create(struct sq_store *st, const struct sl_alloc *a)
{
    if (st == NULL || a == NULL)
        return UV_EINVAL;
    if (a->identity[0] == '\0' || a->username[0] == '\0')
        return UV_EINVAL;
    if (memchr(a->identity, '\0', sizeof(a->identity)) == NULL ||
        memchr(a->username, '\0', sizeof(a->username)) == NULL ||
        memchr(a->password_hash, '\0', sizeof(a->password_hash)) == NULL)
        return SL_ETOOBIG;
    sqlite3_stmt *s = stmt_get(st, ST_INSERT);
    int rc;
    if ((rc = bind_text(s, 1, a->identity, SL_STORE_IDENTITY_MAX)) != 0 ||
        (rc = bind_text(s, 2, a->username, SL_STORE_USERNAME_MAX)) != 0 ||
        (rc = bind_text(s, 3, a->password_hash, SL_STORE_HASH_MAX)) != 0)
        goto out;
    sqlite3_bind_int64(s, 4, clamp_u64(a->limits.bridges));
    sqlite3_bind_int64(s, 5, clamp_u64(a->limits.traffic));
    sqlite3_bind_int64(s, 6, clamp_u64(a->traffic.user_down));
    sqlite3_bind_int64(s, 7, clamp_u64(a->traffic.user_up));
    sqlite3_bind_int64(s, 8, clamp_u64(a->traffic.bridge_down));
    sqlite3_bind_int64(s, 9, clamp_u64(a->traffic.bridge_up));
    sqlite3_bind_int64(s, 10, a->limited ? 1 : 0);
    sqlite3_bind_int64(s, 11, a->created_at > 0 ? a->created_at : now_s());
    sqlite3_bind_int64(s, 12, a->last_seen > 0 ? a->last_seen : 0);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        rc = 0;
        wrote(st);
    } else if ((sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CONSTRAINT)
        rc = SL_EEXIST;
    else
        rc = fail(st, "creating an allocation");
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int get_one(struct sq_store *st, enum stmt_id id, const char *key,
                   struct sl_alloc *out)
{
    if (st == NULL || key == NULL || out == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, id);
    int rc;
    if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = fail(st, "binding a key");
        goto out;
    }
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        row_to_alloc(s, out);
        rc = 0;
    } else if (step == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = fail(st, "reading an allocation");
    }
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int sq_get_by_identity(struct sq_store *st, const char *identity,
                             struct sl_alloc *out)
{
    return get_one(st, ST_GET_ID, identity, out);
}

static int sq_get_by_username(struct sq_store *st, const char *username,
                             struct sl_alloc *out)
{
    return get_one(st, ST_GET_USER, username, out);
}

static int sq_list(struct sq_store *st, sl_store_each_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_LIST);
    struct sl_alloc a;
    int rc = 0;
    for (;;) {
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = fail(st, "listing allocations");
            break;
        }
        row_to_alloc(s, &a);
        if ((rc = cb(&a, arg)) != 0)
            break;
    }
    sqlite3_reset(s);
    return rc;
}

static int sq_count(struct sq_store *st, size_t *out)
{
    if (st == NULL || out == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_COUNT);
    int rc = 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(s, 0);
    else
        rc = fail(st, "counting allocations");
    sqlite3_reset(s);
    return rc;
}

/* Runs an UPDATE/DELETE prepared with identity as ?1 (other bindings
 * already made); SL_ENOTFOUND when no row changed. */
static int run_change(struct sq_store *st, sqlite3_stmt *s,
                      const char *identity, const char *what)
{
    int rc;
    if (sqlite3_bind_text(s, 1, identity, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = fail(st, what);
        goto out;
    }
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = fail(st, what);
    } else {
        wrote(st);
        rc = sqlite3_changes(st->db) > 0 ? 0 : SL_ENOTFOUND;
    }
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int sq_remove(struct sq_store *st, const char *identity)
{
    if (st == NULL || identity == NULL)
        return UV_EINVAL;
    return run_change(st, stmt_get(st, ST_DELETE), identity,
                      "removing an allocation");
}

static int sq_add_traffic(struct sq_store *st, const char *identity,
                         const struct sl_store_traffic *d)
{
    if (st == NULL || identity == NULL || d == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_TRAFFIC);
    sqlite3_bind_int64(s, 2, clamp_u64(d->user_down));
    sqlite3_bind_int64(s, 3, clamp_u64(d->user_up));
    sqlite3_bind_int64(s, 4, clamp_u64(d->bridge_down));
    sqlite3_bind_int64(s, 5, clamp_u64(d->bridge_up));
    return run_change(st, s, identity, "adding traffic");
}

static int sq_touch(struct sq_store *st, const char *identity, int64_t when)
{
    if (st == NULL || identity == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_TOUCH);
    sqlite3_bind_int64(s, 2, when > 0 ? when : now_s());
    return run_change(st, s, identity, "touching an allocation");
}

static int sq_set_limited(struct sq_store *st, const char *identity,
                         int limited)
{
    if (st == NULL || identity == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_LIMITED);
    sqlite3_bind_int64(s, 2, limited ? 1 : 0);
    return run_change(st, s, identity, "setting the limited flag");
}

static int sq_set_limits(struct sq_store *st, const char *identity,
                        const struct sl_store_limits *limits)
{
    if (st == NULL || identity == NULL || limits == NULL)
        return UV_EINVAL;
    sqlite3_stmt *s = stmt_get(st, ST_LIMITS);
    sqlite3_bind_int64(s, 2, clamp_u64(limits->bridges));
    sqlite3_bind_int64(s, 3, clamp_u64(limits->traffic));
    return run_change(st, s, identity, "setting limits");
}

static int sq_prune(struct sq_store *st, int64_t now, int64_t older_than,
                   sl_store_keep_cb keep, void *arg, size_t *removed)
{
    if (st == NULL)
        return UV_EINVAL;
    if (removed)
        *removed = 0;
    if (now <= 0)
        now = now_s();
    if (older_than < 0)
        older_than = 0;
    int rc = exec_sql(st, "BEGIN IMMEDIATE", "beginning prune");
    if (rc != 0)
        return rc;
    size_t count = 0;
    sqlite3_stmt *sel = stmt_get(st, ST_PRUNE_SELECT);
    sqlite3_stmt *del = st->stmt[ST_DELETE];
    struct sl_alloc a;
    sqlite3_bind_int64(sel, 1, now - older_than);
    for (;;) {
        int step = sqlite3_step(sel);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = fail(st, "selecting allocations to prune");
            break;
        }
        row_to_alloc(sel, &a);
        if (keep != NULL && keep(&a, arg))
            continue;
        /* Deleting the current row of a running SELECT is defined in
         * SQLite (the cursor moves on); rowid order keeps it simple. */
        sqlite3_reset(del);
        if (sqlite3_bind_text(del, 1, a.identity, -1, SQLITE_TRANSIENT) !=
                SQLITE_OK ||
            sqlite3_step(del) != SQLITE_DONE) {
            rc = fail(st, "pruning an allocation");
            break;
        }
        count += (size_t)sqlite3_changes(st->db);
    }
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    sqlite3_reset(del);
    sqlite3_clear_bindings(del);
    if (rc != 0) {
        (void)exec_sql(st, "ROLLBACK", "rolling back prune");
        return rc;
    }
    if ((rc = exec_sql(st, "COMMIT", "committing prune")) != 0) {
        (void)exec_sql(st, "ROLLBACK", "rolling back prune");
        return rc;
    }
    if (removed)
        *removed = count;
    return 0;
}

static int sq_port_get(struct sq_store *st, const char *identity, int kind,
                      int *port)
{
    *port = 0;
    sqlite3_stmt *s = stmt_get(st, ST_PORT_GET);
    if (bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX) != 0)
        return UV_EINVAL;
    sqlite3_bind_int(s, 2, kind);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *port = sqlite3_column_int(s, 0);
    else if (r != SQLITE_DONE)
        return fail(st, "reading a stream port");
    return 0;
}

static int sq_port_taken(struct sq_store *st, int kind, int port)
{
    sqlite3_stmt *s = stmt_get(st, ST_PORT_OWNER);
    sqlite3_bind_int(s, 1, kind);
    sqlite3_bind_int(s, 2, port);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        return 1;
    return r == SQLITE_DONE ? 0 : fail(st, "reading a stream port");
}

static int sq_port_set(struct sq_store *st, const char *identity, int kind,
                      int port)
{
    sqlite3_stmt *s = stmt_get(st, ST_PORT_SET);
    if (bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX) != 0)
        return UV_EINVAL;
    sqlite3_bind_int(s, 2, kind);
    sqlite3_bind_int(s, 3, port);
    int r = sqlite3_step(s);
    if (r == SQLITE_CONSTRAINT)
        return SL_EEXIST;
    if (r != SQLITE_DONE)
        return fail(st, "leasing a stream port");
    wrote(st);
    return 0;
}

static int sq_opts_get(struct sq_store *st, const char *identity, char *out,
                      size_t cap)
{
    out[0] = '\0';
    sqlite3_stmt *s = stmt_get(st, ST_OPTS_GET);
    if (bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX) != 0)
        return UV_EINVAL;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        return copy_col(s, 0, out, cap);
    return r == SQLITE_DONE ? 0 : fail(st, "reading stream options");
}

static int sq_opts_set(struct sq_store *st, const char *identity,
                      const char *json)
{
    sqlite3_stmt *s = stmt_get(st, ST_OPTS_SET);
    if (bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX) != 0 ||
        sqlite3_bind_text(s, 2, json, -1, SQLITE_STATIC) != SQLITE_OK)
        return UV_EINVAL;
    if (sqlite3_step(s) != SQLITE_DONE)
        return fail(st, "writing stream options");
    wrote(st);
    return 0;
}

static int sq_plan_get(struct sq_store *st, const char *identity,
                      struct sl_store_plan *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = stmt_get(st, ST_PLAN_GET);
    if (bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX) != 0)
        return UV_EINVAL;
    int r = sqlite3_step(s);
    int rc = 0;
    if (r == SQLITE_ROW) {
        out->rate = col_u64(s, 0);
        out->operator_made = sqlite3_column_int64(s, 1) != 0;
        /* Too long only if hand-edited: read as none. */
        (void)copy_col(s, 2, out->grant, sizeof(out->grant));
        out->rotated_at = sqlite3_column_int64(s, 3);
        (void)copy_col(s, 4, out->old_hash, sizeof(out->old_hash));
        out->old_until_ms = sqlite3_column_int64(s, 5);
    } else if (r != SQLITE_DONE) {
        rc = fail(st, "reading a plan");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

/* Binds and runs ST_PLAN_SET; no transaction of its own. */
static int plan_write(struct sq_store *st, const char *identity,
                      const struct sl_store_plan *p)
{
    sqlite3_stmt *s = stmt_get(st, ST_PLAN_SET);
    int rc;
    if ((rc = bind_text(s, 1, identity, SL_STORE_IDENTITY_MAX)) != 0 ||
        (rc = bind_text(s, 4, p->grant, SL_STORE_GRANT_MAX)) != 0 ||
        (rc = bind_text(s, 6, p->old_hash, SL_STORE_HASH_MAX)) != 0)
        goto out;
    sqlite3_bind_int64(s, 2, clamp_u64(p->rate));
    sqlite3_bind_int64(s, 3, p->operator_made ? 1 : 0);
    sqlite3_bind_int64(s, 5, p->rotated_at);
    sqlite3_bind_int64(s, 7, p->old_until_ms);
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = fail(st, "writing a plan");
    else
        rc = sqlite3_changes(st->db) > 0 ? 0 : SL_ENOTFOUND;
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int sq_plan_set(struct sq_store *st, const char *identity,
                      const struct sl_store_plan *p)
{
    if (st == NULL || identity == NULL || p == NULL)
        return UV_EINVAL;
    int rc = plan_write(st, identity, p);
    if (rc == 0)
        wrote(st);
    return rc;
}

static int sq_rotate(struct sq_store *st, const char *identity,
                    const char *hash, const struct sl_store_plan *p)
{
    if (st == NULL || identity == NULL || hash == NULL || p == NULL)
        return UV_EINVAL;
    int rc = exec_sql(st, "BEGIN IMMEDIATE", "beginning a rotation");
    if (rc != 0)
        return rc;
    sqlite3_stmt *s = stmt_get(st, ST_PASSWORD);
    if ((rc = bind_text(s, 2, hash, SL_STORE_HASH_MAX)) == 0)
        rc = run_change(st, s, identity, "rotating a password");
    if (rc == 0)
        rc = plan_write(st, identity, p);
    if (rc == 0)
        rc = exec_sql(st, "COMMIT", "committing a rotation");
    if (rc != 0) {
        (void)exec_sql(st, "ROLLBACK", "rolling back a rotation");
        return rc;
    }
    wrote(st);
    return 0;
}

/* The ops table: thin casts from the handle to the SQLite store. */

#define SQ(b) ((struct sq_store *)(b))

static void op_close(struct sl_store *b) { sq_close(SQ(b)); }
static int op_create(struct sl_store *b, const struct sl_alloc *a)
{
    return sq_create(SQ(b), a);
}
static int op_get_by_identity(struct sl_store *b, const char *k,
                              struct sl_alloc *out)
{
    return sq_get_by_identity(SQ(b), k, out);
}
static int op_get_by_username(struct sl_store *b, const char *k,
                              struct sl_alloc *out)
{
    return sq_get_by_username(SQ(b), k, out);
}
static int op_list(struct sl_store *b, sl_store_each_cb cb, void *arg)
{
    return sq_list(SQ(b), cb, arg);
}
static int op_count(struct sl_store *b, size_t *out)
{
    return sq_count(SQ(b), out);
}
static int op_remove(struct sl_store *b, const char *identity)
{
    return sq_remove(SQ(b), identity);
}
static int op_prune(struct sl_store *b, int64_t now, int64_t older_than,
                    sl_store_keep_cb keep, void *arg, size_t *removed)
{
    return sq_prune(SQ(b), now, older_than, keep, arg, removed);
}
static int op_add_traffic(struct sl_store *b, const char *identity,
                          const struct sl_store_traffic *d)
{
    return sq_add_traffic(SQ(b), identity, d);
}
static int op_touch(struct sl_store *b, const char *identity, int64_t when)
{
    return sq_touch(SQ(b), identity, when);
}
static int op_set_limited(struct sl_store *b, const char *identity,
                          int limited)
{
    return sq_set_limited(SQ(b), identity, limited);
}
static int op_set_limits(struct sl_store *b, const char *identity,
                         const struct sl_store_limits *limits)
{
    return sq_set_limits(SQ(b), identity, limits);
}
static int op_port_get(struct sl_store *b, const char *identity, int kind,
                       int *port)
{
    return sq_port_get(SQ(b), identity, kind, port);
}
static int op_port_taken(struct sl_store *b, int kind, int port)
{
    return sq_port_taken(SQ(b), kind, port);
}
static int op_port_set(struct sl_store *b, const char *identity, int kind,
                       int port)
{
    return sq_port_set(SQ(b), identity, kind, port);
}
static int op_opts_get(struct sl_store *b, const char *identity, char *out,
                       size_t cap)
{
    return sq_opts_get(SQ(b), identity, out, cap);
}
static int op_opts_set(struct sl_store *b, const char *identity,
                       const char *json)
{
    return sq_opts_set(SQ(b), identity, json);
}
static int op_plan_get(struct sl_store *b, const char *identity,
                       struct sl_store_plan *out)
{
    return sq_plan_get(SQ(b), identity, out);
}
static int op_plan_set(struct sl_store *b, const char *identity,
                       const struct sl_store_plan *p)
{
    return sq_plan_set(SQ(b), identity, p);
}
static int op_rotate(struct sl_store *b, const char *identity,
                     const char *hash, const struct sl_store_plan *p)
{
    return sq_rotate(SQ(b), identity, hash, p);
}

static const struct sl_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = op_close,
    .create = op_create,
    .get_by_identity = op_get_by_identity,
    .get_by_username = op_get_by_username,
    .list = op_list,
    .count = op_count,
    .remove = op_remove,
    .prune = op_prune,
    .add_traffic = op_add_traffic,
    .touch = op_touch,
    .set_limited = op_set_limited,
    .set_limits = op_set_limits,
    .port_get = op_port_get,
    .port_taken = op_port_taken,
    .port_set = op_port_set,
    .opts_get = op_opts_get,
    .opts_set = op_opts_set,
    .plan_get = op_plan_get,
    .plan_set = op_plan_set,
    .rotate = op_rotate,
};

int sl_store_sqlite_open(const char *path, struct sl_log *log,
                         struct sl_store **out)
{
    struct sq_store *st = NULL;
    if (out == NULL)
        return UV_EINVAL;
    *out = NULL;
    int rc = sq_open(path, log, &st);
    if (rc == 0) {
        st->base.ops = &sqlite_ops;
        *out = &st->base;
    }
    return rc;
}
