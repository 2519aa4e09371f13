/* glibc gives the top of its heap back to the kernel as soon as more than
 * 128 KiB (or twice a grown mmap threshold) is free there. A data
 * connection in WebSocket frames allocates and frees 64 KiB messages
 * inside wslay, so the heap shrank and grew on nearly every message: the
 * brk calls, TLB shoot-downs and page faults took over half of a bridge's
 * CPU on a framed upload. A fixed threshold of 1 MiB keeps that churn in
 * memory the process already has, and bounds what an idle process keeps.
 * Fixing it also pins the mmap threshold at 128 KiB, so large one-off
 * buffers (the scrypt work area) still go straight back to the kernel.
 *
 * One arena: libuv's thread pool (scrypt on the hub, getaddrinfo on the
 * node) would otherwise give each worker thread an arena of its own, and
 * what those keep below their trim threshold stays resident: a 30-minute
 * soak saw the node's RSS creep by a fifth with nothing leaked. The pool's
 * jobs are few and short, so sharing the main arena costs no contention
 * worth the memory. */
#include "core/heap.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define SL_HEAP_TRIM_THRESHOLD (1024 * 1024)

void sl_heap_tune(void)
{
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD)
    (void)mallopt(M_TRIM_THRESHOLD, SL_HEAP_TRIM_THRESHOLD);
#endif
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
    (void)mallopt(M_ARENA_MAX, 1);
#endif
}
