/* A failing allocator for tests (curl's torture tests, nghttp2's failmalloc).
 * The test programs here are linked with --wrap=malloc,calloc,realloc,strdup,
 * so every call the product's code makes (libsluice is linked in statically)
 * goes through a counter; jansson and SQLite are pointed at the same counter
 * through their allocator hooks. Not counted: libyaml (no hook; it calls the
 * C library from its own shared object) and libuv, which aborts the process
 * by design when some of its own allocations fail (its watcher table, its
 * signal set-up), so failing them would test libuv's policy, not ours.
 *
 * sl_test_fail_alloc_at(N) makes the N-th counted call from now return NULL
 * (only that one: the code that survives it keeps running, which exercises
 * its error path further than failing every call after it). */
#ifndef SL_TEST_OOM_H
#define SL_TEST_OOM_H

#include <stddef.h>

/* Hooks jansson and SQLite to the counter. Call first in main(),
 * before any of them allocates. */
void sl_test_alloc_install(void);

/* Arms the failure: the n-th counted allocation from now fails; 0 disarms. */
void sl_test_fail_alloc_at(long n);

/* While on, allocations are neither counted nor failed: for a test's own
 * set-up inside a run. */
void sl_test_alloc_pause(int on);

/* 1 once the armed failure has happened. */
int sl_test_alloc_failed(void);

/* Counted allocations since the last sl_test_fail_alloc_at(). */
long sl_test_alloc_count(void);

/* Runs fn(arg) with the 1st, 2nd, ... allocation failing, until a run ends
 * without reaching the failure (the path allocates fewer times than N).
 * fn returns 0 on success or a negative error; with no failure it must
 * succeed, and with one it may succeed (an allocation that was optional)
 * or fail. After each run, LeakSanitizer looks for leaks (when built with
 * it). Fails the cmocka test on a leak or a wrong result; returns the
 * number of allocations the path makes.
 *
 * SL_OOM_STEP=k in the environment tries every k-th N only (for a quick
 * look under valgrind or a slow machine); the default tries every N.
 * SL_OOM_TIME=1 prints how long each run took (a failure whose error path
 * waits out a timeout shows up there before it slows the suite). */
long sl_oom_loop(const char *what, int (*fn)(void *arg), void *arg);

#endif
