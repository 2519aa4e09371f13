/* The store's plan rows (schema v3): defaults, writes, a rotation in one
 * transaction, the row going with its allocation, and a version 2 file
 * migrated with its allocations kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "core/error.h"
#include "hub/store.h"

#define ID "ab1234567890"

struct fixture {
    char dir[64];
    char path[128];
    struct sl_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sl_plan_XXXXXX");
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

static void create(struct sl_store *st, const char *id, const char *user)
{
    struct sl_alloc a;
    memset(&a, 0, sizeof(a));
    snprintf(a.identity, sizeof(a.identity), "%s", id);
    snprintf(a.username, sizeof(a.username), "%s", user);
    snprintf(a.password_hash, sizeof(a.password_hash), "scrypt$old");
    assert_int_equal(sl_store_create(st, &a), 0);
}

static void test_defaults_and_set(void **state)
{
    struct fixture *f = *state;
    struct sl_store_plan p, q;
    create(f->st, ID, "Usr001");
    memset(&p, 0xff, sizeof(p));
    assert_int_equal(sl_store_plan_get(f->st, ID, &p), 0);
    assert_int_equal(p.rate, 0);
    assert_int_equal(p.operator_made, 0);
    assert_string_equal(p.grant, "");
    assert_int_equal(p.rotated_at, 0);

    memset(&p, 0, sizeof(p));
    p.rate = 1250000;
    p.operator_made = 1;
    snprintf(p.grant, sizeof(p.grant), "e30.AAAA");
    assert_int_equal(sl_store_plan_set(f->st, ID, &p), 0);
    assert_int_equal(sl_store_plan_get(f->st, ID, &q), 0);
    assert_int_equal(q.rate, 1250000);
    assert_int_equal(q.operator_made, 1);
    assert_string_equal(q.grant, "e30.AAAA");
    /* No row for an allocation that does not exist. */
    assert_int_equal(sl_store_plan_set(f->st, "cd1234567890", &p),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_plan_get(f->st, "cd1234567890", &q), 0);
    assert_int_equal(q.rate, 0);
    /* The row goes with its allocation. */
    assert_int_equal(sl_store_remove(f->st, ID), 0);
    create(f->st, ID, "Usr001");
    assert_int_equal(sl_store_plan_get(f->st, ID, &q), 0);
    assert_int_equal(q.rate, 0);
    assert_string_equal(q.grant, "");
}

static void test_rotate(void **state)
{
    struct fixture *f = *state;
    struct sl_store_plan p, q;
    struct sl_alloc a;
    create(f->st, ID, "Usr001");
    memset(&p, 0, sizeof(p));
    p.rate = 7;
    p.rotated_at = 1700000000;
    snprintf(p.old_hash, sizeof(p.old_hash), "scrypt$old");
    p.old_until_ms = 1700000600000LL;
    assert_int_equal(sl_store_rotate(f->st, ID, "scrypt$new", &p), 0);
    assert_int_equal(sl_store_get_by_identity(f->st, ID, &a), 0);
    assert_string_equal(a.password_hash, "scrypt$new");
    assert_int_equal(sl_store_plan_get(f->st, ID, &q), 0);
    assert_string_equal(q.old_hash, "scrypt$old");
    assert_int_equal(q.old_until_ms, 1700000600000LL);
    assert_int_equal(q.rotated_at, 1700000000);
    assert_int_equal(q.rate, 7);
    /* Unknown: nothing changes. */
    assert_int_equal(sl_store_rotate(f->st, "cd1234567890", "x", &p),
                     SL_ENOTFOUND);
    /* A hash too long for the row: refused as a whole. */
    char big[SL_STORE_HASH_MAX + 8];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sl_store_rotate(f->st, ID, big, &p), SL_ETOOBIG);
    assert_int_equal(sl_store_get_by_identity(f->st, ID, &a), 0);
    assert_string_equal(a.password_hash, "scrypt$new");
}

/* A file of version 2 (no plan table) opens, migrates and keeps its
 * allocations. */
static void test_migrate_v2(void **state)
{
    struct fixture *f = *state;
    create(f->st, ID, "Usr001");
    sl_store_close(f->st);
    f->st = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TRIGGER allocation_plan_gone;"
                                  "DROP TABLE alloc_plans;"
                                  "PRAGMA user_version = 2;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sl_store_open(f->path, NULL, &f->st), 0);
    struct sl_alloc a;
    struct sl_store_plan p;
    assert_int_equal(sl_store_get_by_identity(f->st, ID, &a), 0);
    assert_int_equal(sl_store_plan_get(f->st, ID, &p), 0);
    memset(&p, 0, sizeof(p));
    p.rate = 3;
    assert_int_equal(sl_store_plan_set(f->st, ID, &p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_set, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
