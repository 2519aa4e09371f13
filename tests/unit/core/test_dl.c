/* core/dl.c: a table filled from a library opened at run time, and the
 * one line said when the library or one of its functions is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/dl.h"
#include "core/error.h"

struct m_lib {
    double (*cos)(double);
    double (*sqrt)(double);
};

static const struct sl_dl_sym m_syms[] = {
    {"cos", offsetof(struct m_lib, cos)},
    {"sqrt", offsetof(struct m_lib, sqrt)},
};

static void test_fills_the_table(void **state)
{
    (void)state;
    struct m_lib m = {0};
    char err[256] = "";
    assert_int_equal(
        sl_dl_load("libm.so.6", "libc6", m_syms, 2, &m, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_non_null(m.cos);
    assert_true(m.cos(0.0) == 1.0);
    assert_true(m.sqrt(16.0) == 4.0);
}

static void test_missing_library(void **state)
{
    (void)state;
    struct m_lib m = {0};
    char err[256] = "";
    assert_int_equal(sl_dl_load("libsluice-none.so.9", "libsluice-none9",
                                m_syms, 2, &m, err, sizeof(err)),
                     SL_ENOTFOUND);
    /* What to install, then dlerror's words (which name the file). */
    const char *want = "cannot load libsluice-none.so.9 (install "
                       "libsluice-none9): ";
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err + strlen(want), "libsluice-none.so.9"));
    /* No err: the code alone. */
    assert_int_equal(
        sl_dl_load("libsluice-none.so.9", "x", m_syms, 2, &m, NULL, 0),
        SL_ENOTFOUND);
}

static void test_missing_symbol(void **state)
{
    (void)state;
    struct {
        double (*cos)(double);
        void (*none)(void);
    } t;
    const struct sl_dl_sym syms[] = {
        {"cos", offsetof(__typeof__(t), cos)},
        {"sl_dl_test_no_such_function", offsetof(__typeof__(t), none)},
    };
    char err[256] = "";
    assert_int_equal(
        sl_dl_load("libm.so.6", "libc6", syms, 2, &t, err, sizeof(err)),
        SL_ENOTFOUND);
    const char *want = "cannot load libm.so.6 (libc6 too old?): ";
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "sl_dl_test_no_such_function"));
}

/* A short buffer gets the start of the line, terminated. */
static void test_short_err(void **state)
{
    (void)state;
    struct m_lib m;
    char err[12];
    memset(err, 'x', sizeof(err));
    assert_int_equal(
        sl_dl_load("libsluice-none.so.9", "p", m_syms, 2, &m, err, sizeof(err)),
        SL_ENOTFOUND);
    assert_string_equal(err, "cannot load");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fills_the_table),
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_missing_symbol),
        cmocka_unit_test(test_short_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
