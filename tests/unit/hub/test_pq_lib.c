/* hub/pq_lib.c: every function the PostgreSQL store calls is found in the
 * libpq the machine has, under the name the table gives it, and works. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hub/pq_lib.h"

static void test_loads_every_function(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(sl_pq_load(err, sizeof(err)), 0);
    assert_string_equal(err, "");
    const struct sl_pq_lib *pq = sl_pq();
    assert_non_null(pq);
    void *const *p = (void *const *)(const void *)pq;
    for (size_t i = 0; i < sizeof(*pq) / sizeof(void *); i++)
        assert_non_null(p[i]);
    assert_int_equal(sl_pq_load(NULL, 0), 0);
    assert_ptr_equal(sl_pq(), pq);
}

/* No server needed: a connection refused at once is a real PGconn. */
static void test_calls_through_the_table(void **state)
{
    (void)state;
    const struct sl_pq_lib *pq = sl_pq();
    assert_non_null(pq);
    assert_int_equal(pq->status(NULL), CONNECTION_BAD);
    const char *const keys[] = {"dbname", NULL};
    const char *const vals[] = {"postgresql://127.0.0.1:1/none?"
                                "connect_timeout=1",
                                NULL};
    PGconn *c = pq->connectdbParams(keys, vals, 1);
    assert_non_null(c);
    assert_int_equal(pq->status(c), CONNECTION_BAD);
    assert_true(strlen(pq->errorMessage(c)) > 0);
    pq->finish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_every_function),
        cmocka_unit_test(test_calls_through_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
