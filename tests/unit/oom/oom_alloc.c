/* The counting, failing allocator of oom.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "oom.h"

#if defined(__SANITIZE_ADDRESS__)
#define SL_OOM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_OOM_LSAN 1
#endif
#endif
#ifdef SL_OOM_LSAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

/* File-scope state is the point of a test allocator: the code under test
 * cannot be handed a context for malloc. */
static long fail_at;
static long count;
static int failed;
static int paused;

void sl_test_alloc_pause(int on)
{
    __atomic_store_n(&paused, on, __ATOMIC_RELAXED);
}

void sl_test_fail_alloc_at(long n)
{
    __atomic_store_n(&fail_at, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&failed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fail_at, n, __ATOMIC_RELAXED);
}

int sl_test_alloc_failed(void)
{
    return __atomic_load_n(&failed, __ATOMIC_RELAXED);
}

long sl_test_alloc_count(void)
{
    return __atomic_load_n(&count, __ATOMIC_RELAXED);
}

/* Atomic: the hub's thread pool allocates too. */
static int should_fail(void)
{
    if (__atomic_load_n(&paused, __ATOMIC_RELAXED))
        return 0;
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    if (n == __atomic_load_n(&fail_at, __ATOMIC_RELAXED)) {
        __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
#ifdef SL_OOM_LSAN
        /* SL_OOM_TRACE=1: where each failure happens. */
        if (getenv("SL_OOM_TRACE") != NULL)
            __sanitizer_print_stack_trace();
#endif
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}

/* SQLite wants the size of a block back: keep it in a header, 16 bytes so
 * the block stays aligned for anything. */
#define HDR 16

static void *sq_malloc(int n)
{
    unsigned char *p = __wrap_malloc((size_t)n + HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &n, sizeof(n));
    return p + HDR;
}

static void sq_free(void *p)
{
    if (p != NULL)
        free((unsigned char *)p - HDR);
}

static void *sq_realloc(void *p, int n)
{
    if (p == NULL)
        return sq_malloc(n);
    unsigned char *q = __wrap_realloc((unsigned char *)p - HDR, (size_t)n + HDR);
    if (q == NULL)
        return NULL;
    memcpy(q, &n, sizeof(n));
    return q + HDR;
}

static int sq_size(void *p)
{
    int n;
    memcpy(&n, (unsigned char *)p - HDR, sizeof(n));
    return n;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void sq_shutdown(void *arg)
{
    (void)arg;
}

void sl_test_alloc_install(void)
{
    static const sqlite3_mem_methods sq = {
        sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup,
        sq_init, sq_shutdown, NULL};
    json_set_alloc_funcs(__wrap_malloc, free);
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sq) != SQLITE_OK) {
        fprintf(stderr, "oom: cannot hook the allocators\n");
        abort();
    }
}

long sl_oom_loop(const char *what, int (*fn)(void *arg), void *arg)
{
    const char *s = getenv("SL_OOM_STEP");
    long step = s != NULL ? strtol(s, NULL, 10) : 1;
    if (step < 1)
        step = 1;
    /* The run with nothing failing: it must succeed, and says how many
     * allocations there are to fail. */
    sl_test_fail_alloc_at(0);
    int rc = fn(arg);
    long total = sl_test_alloc_count();
    if (rc != 0)
        fail_msg("%s: fails with no allocation failing: %d", what, rc);
    for (long n = 1;; n += step) {
        sl_test_fail_alloc_at(n);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = fn(arg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (getenv("SL_OOM_TIME") != NULL)
            printf("# %s: N=%ld %ld ms\n", what, n,
                   (long)((t1.tv_sec - t0.tv_sec) * 1000 +
                          (t1.tv_nsec - t0.tv_nsec) / 1000000));
        int hit = sl_test_alloc_failed();
        sl_test_fail_alloc_at(0);
        if (rc > 0)
            fail_msg("%s: allocation %ld failing: result %d", what, n, rc);
#ifdef SL_OOM_LSAN
        if (__lsan_do_recoverable_leak_check() != 0)
            fail_msg("%s: leak with allocation %ld failing", what, n);
#endif
        if (!hit)
            break;
        /* A bound in case a path allocates more with each failure. */
        if (n > 100 * (total + 10))
            fail_msg("%s: still allocating at %ld (%ld at first)", what, n,
                     total);
    }
    printf("# %s: %ld allocations, each failed in turn\n", what, total);
    return total;
}
