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

#include <sqlite3.h>
#include <uv.h>

#include "core/error.h"
#include "hub/store.h"

struct fixture {
    char dir[64];
    char path[128];
    struct sl_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sl_store_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/hub.db", f->dir);
    assert_int_equal(sl_store_open(f->path, NULL, &f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    sl_store_close(f->st);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void make(struct sl_alloc *a, const char *id, const char *user,
                 int64_t created)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->identity, sizeof(a->identity), "%s", id);
    snprintf(a->username, sizeof(a->username), "%s", user);
    snprintf(a->password_hash, sizeof(a->password_hash), "scrypt$x");
    a->created_at = created;
}

static void test_create_get(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a, b;
    make(&a, "ab1234567890", "Usr001", 1000);
    a.limits.bridges = 2;
    a.limits.traffic = 10240000;
    assert_int_equal(sl_store_create(f->st, &a), 0);

    assert_int_equal(sl_store_get_by_identity(f->st, "ab1234567890", &b), 0);
    assert_string_equal(b.username, "Usr001");
    assert_string_equal(b.password_hash, "scrypt$x");
    assert_int_equal(b.limits.bridges, 2);
    assert_int_equal(b.limits.traffic, 10240000);
    assert_int_equal(b.created_at, 1000);
    assert_int_equal(b.last_seen, 0);
    assert_int_equal(b.limited, 0);

    assert_int_equal(sl_store_get_by_username(f->st, "Usr001", &b), 0);
    assert_string_equal(b.identity, "ab1234567890");
    assert_int_equal(sl_store_get_by_username(f->st, "nobody", &b),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_get_by_identity(f->st, "zz0000000000", &b),
                     SL_ENOTFOUND);
}

static void test_unique(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a;
    make(&a, "ab1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    make(&a, "ab1234567890", "Usr002", 0);
    assert_int_equal(sl_store_create(f->st, &a), SL_EEXIST);
    make(&a, "cd1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(f->st, &a), SL_EEXIST);
    make(&a, "cd1234567890", "Usr002", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    size_t n = 0;
    assert_int_equal(sl_store_count(f->st, &n), 0);
    assert_int_equal(n, 2);
    /* created_at 0 means now */
    struct sl_alloc b;
    assert_int_equal(sl_store_get_by_identity(f->st, "cd1234567890", &b), 0);
    assert_true(b.created_at > 1600000000);
}

static void test_invalid(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a;
    make(&a, "", "u", 0);
    assert_int_equal(sl_store_create(f->st, &a), UV_EINVAL);
    assert_int_equal(sl_store_create(NULL, &a), UV_EINVAL);
    assert_int_equal(sl_store_create(f->st, NULL), UV_EINVAL);
    make(&a, "ab1234567890", "u", 0);
    memset(a.username, 'x', sizeof(a.username)); /* no NUL */
    assert_int_equal(sl_store_create(f->st, &a), SL_ETOOBIG);
    struct sl_store *st = NULL;
    assert_int_equal(sl_store_open(NULL, NULL, &st), UV_EINVAL);
    assert_true(sl_store_open("/nonexistent-dir/x/hub.db", NULL, &st) < 0);
    assert_null(st);
}

struct collect {
    char ids[8][SL_STORE_IDENTITY_MAX];
    size_t n;
    int stop_after;
};

static int collect_cb(const struct sl_alloc *a, void *arg)
{
    struct collect *c = arg;
    if (c->n < 8)
        snprintf(c->ids[c->n++], SL_STORE_IDENTITY_MAX, "%s", a->identity);
    if (c->stop_after && (int)c->n >= c->stop_after)
        return 7;
    return 0;
}

static void test_list_remove(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a;
    make(&a, "bb0000000002", "u2", 200);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    make(&a, "aa0000000001", "u1", 100);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    make(&a, "cc0000000003", "u3", 300);
    assert_int_equal(sl_store_create(f->st, &a), 0);

    struct collect c = {0};
    assert_int_equal(sl_store_list(f->st, collect_cb, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.ids[0], "aa0000000001");
    assert_string_equal(c.ids[1], "bb0000000002");
    assert_string_equal(c.ids[2], "cc0000000003");

    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(sl_store_list(f->st, collect_cb, &c), 7);
    assert_int_equal(c.n, 2);

    assert_int_equal(sl_store_remove(f->st, "bb0000000002"), 0);
    assert_int_equal(sl_store_remove(f->st, "bb0000000002"), SL_ENOTFOUND);
    memset(&c, 0, sizeof(c));
    assert_int_equal(sl_store_list(f->st, collect_cb, &c), 0);
    assert_int_equal(c.n, 2);
    /* the username is free again */
    make(&a, "dd0000000004", "u2", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
}

static int keep_cc(const struct sl_alloc *a, void *arg)
{
    (*(int *)arg)++;
    return strcmp(a->identity, "cc0000000003") == 0;
}

static void test_prune(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a;
    /* never seen, created long ago: pruned */
    make(&a, "aa0000000001", "u1", 1000);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    /* created long ago, seen recently: kept */
    make(&a, "bb0000000002", "u2", 1000);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    assert_int_equal(sl_store_touch(f->st, "bb0000000002", 9500), 0);
    /* old, but the callback keeps it (live) */
    make(&a, "cc0000000003", "u3", 1000);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    /* created recently, never seen: kept */
    make(&a, "dd0000000004", "u4", 9900);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    /* seen long ago: pruned */
    make(&a, "ee0000000005", "u5", 500);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    assert_int_equal(sl_store_touch(f->st, "ee0000000005", 2000), 0);

    int asked = 0;
    size_t removed = 99;
    assert_int_equal(
        sl_store_prune(f->st, 10000, 1000, keep_cc, &asked, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(asked, 3);
    struct sl_alloc b;
    assert_int_equal(sl_store_get_by_identity(f->st, "aa0000000001", &b),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_get_by_identity(f->st, "ee0000000005", &b),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_get_by_identity(f->st, "bb0000000002", &b), 0);
    assert_int_equal(sl_store_get_by_identity(f->st, "cc0000000003", &b), 0);
    assert_int_equal(sl_store_get_by_identity(f->st, "dd0000000004", &b), 0);

    /* Without a keep callback everything old goes; the boundary is
     * strict: exactly older_than seconds is not older. */
    assert_int_equal(sl_store_prune(f->st, 10500, 1000, NULL, NULL, &removed),
                     0);
    assert_int_equal(removed, 1); /* cc; bb seen at 9500 == boundary */
    assert_int_equal(sl_store_prune(f->st, 10000, 0, NULL, NULL, NULL), 0);
    size_t n;
    assert_int_equal(sl_store_count(f->st, &n), 0);
    assert_int_equal(n, 0);
}

static void test_traffic_limits(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a, b;
    make(&a, "ab1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    struct sl_store_traffic d = {1, 2, 3, 4};
    assert_int_equal(sl_store_add_traffic(f->st, "ab1234567890", &d), 0);
    d = (struct sl_store_traffic){10, 20, 30, 40};
    assert_int_equal(sl_store_add_traffic(f->st, "ab1234567890", &d), 0);
    assert_int_equal(sl_store_add_traffic(f->st, "zz1234567890", &d),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_get_by_identity(f->st, "ab1234567890", &b), 0);
    assert_int_equal(b.traffic.user_down, 11);
    assert_int_equal(b.traffic.user_up, 22);
    assert_int_equal(b.traffic.bridge_down, 33);
    assert_int_equal(b.traffic.bridge_up, 44);

    /* huge deltas clamp instead of going negative */
    d = (struct sl_store_traffic){UINT64_MAX, 0, 0, 0};
    assert_int_equal(sl_store_add_traffic(f->st, "ab1234567890", &d), 0);
    assert_int_equal(sl_store_add_traffic(f->st, "ab1234567890", &d), 0);
    assert_int_equal(sl_store_get_by_identity(f->st, "ab1234567890", &b), 0);
    assert_true(b.traffic.user_down == (uint64_t)INT64_MAX);
    assert_int_equal(b.traffic.user_up, 22);

    assert_int_equal(sl_store_set_limited(f->st, "ab1234567890", 1), 0);
    struct sl_store_limits l = {3, 5000};
    assert_int_equal(sl_store_set_limits(f->st, "ab1234567890", &l), 0);
    assert_int_equal(sl_store_set_limits(f->st, "zz1234567890", &l),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_touch(f->st, "ab1234567890", 12345), 0);
    assert_int_equal(sl_store_touch(f->st, "zz1234567890", 1), SL_ENOTFOUND);
    assert_int_equal(sl_store_set_limited(f->st, "zz1234567890", 1),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_get_by_identity(f->st, "ab1234567890", &b), 0);
    assert_int_equal(b.limited, 1);
    assert_int_equal(b.limits.bridges, 3);
    assert_int_equal(b.limits.traffic, 5000);
    assert_int_equal(b.last_seen, 12345);
}

static void test_reopen_and_version(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a, b;
    make(&a, "ab1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    sl_store_close(f->st);
    f->st = NULL;

    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* schema version and WAL mode as seen by plain SQLite */
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), SL_STORE_SCHEMA_VERSION);
    sqlite3_finalize(s);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);

    assert_int_equal(sl_store_open(f->path, NULL, &f->st), 0);
    assert_int_equal(sl_store_get_by_identity(f->st, "ab1234567890", &b), 0);
    assert_string_equal(b.username, "Usr001");
    sl_store_close(f->st);
    f->st = NULL;

    /* a newer schema is refused */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), 0);
    sqlite3_close(db);
    assert_int_equal(sl_store_open(f->path, NULL, &f->st), SL_ESTATE);
    assert_null(f->st);
}

static void test_memory(void **state)
{
    (void)state;
    struct sl_store *st;
    struct sl_alloc a;
    assert_int_equal(sl_store_open(":memory:", NULL, &st), 0);
    make(&a, "ab1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(st, &a), 0);
    sl_store_close(st);
    sl_store_close(NULL);
}

/* SQLite is the only store: a create is complete when it returns, so a
 * new allocation's welcome never waits. */
static void test_wait_created(void **state)
{
    struct fixture *f = *state;
    struct sl_alloc a;
    make(&a, "ab1234567890", "Usr001", 0);
    assert_int_equal(sl_store_create(f->st, &a), 0);
    assert_int_equal(sl_store_wait_created(f->st, "Usr001"), 0);
    assert_int_equal(sl_store_wait_created(f->st, "nobody"), 0);
    assert_int_equal(sl_store_wait_created(NULL, "Usr001"), UV_EINVAL);
    assert_int_equal(sl_store_wait_created(f->st, NULL), UV_EINVAL);
    assert_int_equal(sl_store_shared(f->st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traffic_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_version, setup,
                                        teardown),
        cmocka_unit_test(test_memory),
        cmocka_unit_test_setup_teardown(test_wait_created, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
