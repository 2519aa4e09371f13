/* A bidirectional byte relay between two connected transports (TCP
 * sockets, plain or with TLS: net/xprt.h), with back-pressure and
 * half-close.
 *
 * Memory model:
 *  - A read buffer (buf_size bytes, 64 KiB by default) exists only while a
 *    side is readable: it is allocated by libuv's alloc callback and
 *    released as soon as the socket reports "nothing more" (a zero-length
 *    read on EAGAIN). An idle relayed connection holds no data buffer, only
 *    struct sl_relay and the two handles.
 *  - A read is forwarded with uv_try_write; what the socket does not take
 *    is queued with uv_write, and the read buffer itself becomes that
 *    write's storage (no copy). Per direction, once the destination's
 *    queued bytes pass high_water the source stops reading; it resumes when
 *    they fall under low_water. So each direction holds at most
 *    high_water + buf_size bytes.
 *  - EOF on one side is forwarded as uv_shutdown on the other once its
 *    queued writes are out. The relay ends when both directions have
 *    finished, or at the first error on either side.
 *
 * Zero-copy (splice): when the caller allows it (opts->splice: its
 * on_read only counts), both transports are plain sockets and
 * SLUICE_NO_SPLICE is unset, the bytes never enter user space: each
 * direction moves them socket -> pipe -> socket with splice(2), readiness
 * coming from a uv_poll_t on each socket (libuv's own watcher on it is
 * idle meanwhile). A direction holds a pipe only while bytes are in it;
 * an emptied pipe goes back to the pool (or is closed), so an idle
 * relayed connection holds no pipe and no extra descriptor. Half-close,
 * back-pressure (a full pipe stops reading the source), errors and the
 * counts given to on_read are those of the copying path.
 *
 * Ownership: the caller owns the struct sl_relay (usually embedded in its
 * connection object) and the two handles' memory. From sl_relay_start on,
 * the relay owns the handles' lifetimes: it takes over their ->data, closes
 * them itself, and calls done_cb exactly once, after both close callbacks
 * have run (so every write callback has run too). Only then may the caller
 * free the handles and the relay. */
#ifndef SL_RELAY_H
#define SL_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/xprt.h"

#define SL_RELAY_BUF_SIZE (64 * 1024)
#define SL_RELAY_HIGH_WATER (256 * 1024)
#define SL_RELAY_LOW_WATER (64 * 1024)

/* Direction of bytes: UP is a -> b (client to upstream), DOWN is b -> a. */
enum sl_relay_dir { SL_RELAY_UP = 0, SL_RELAY_DOWN = 1 };

struct sl_relay;

/* A free list of read buffers shared by many relays (one per engine), so a
 * busy relay does not pay malloc/free (and the heap trims that follow) for
 * every read. Buffers in the list count against the process, not against
 * any connection: at most max_free of them are kept. Not thread-safe: one
 * per loop. Zero-initialise, set max_free, and call sl_relay_pool_drain
 * before freeing it. */
#define SL_RELAY_PIPES_MAX 8 /* empty pipes a pool keeps at most */

struct sl_relay_pipe {
    int fd[2];    /* read end, write end */
    size_t cap;   /* bytes it holds when full (F_GETPIPE_SZ) */
};

struct sl_relay_pool {
    size_t max_free;  /* buffers kept at most; 0 keeps none */
    size_t nfree;
    size_t low;       /* fewest free since the last sl_relay_pool_trim */
    size_t block_size; /* set by the first relay that uses it */
    void *free_list;
    /* Empty pipes of spliced relays (two descriptors each), kept as the
     * buffers are and trimmed with them. */
    struct sl_relay_pipe pipes[SL_RELAY_PIPES_MAX];
    size_t npipes, pipes_low;
};
void sl_relay_pool_drain(struct sl_relay_pool *pool);

/* Frees the buffers that stayed in the list since the last call: what a
 * burst left behind goes back to the kernel once the burst is over, while
 * buffers in steady use stay. Call it every few seconds. */
void sl_relay_pool_trim(struct sl_relay_pool *pool);

/* Called with each chunk read, before it is forwarded (the bytes are
 * sl_relay_chunk(r) meanwhile); on a spliced relay, with the count of
 * each chunk as it reaches the destination (no bytes). Returning
 * non-zero (a negative error code) aborts the relay with that reason. */
typedef int (*sl_relay_read_cb)(struct sl_relay *r, size_t n,
                                enum sl_relay_dir dir);
/* Called once if the relay is ending on an error it found itself (a
 * read, a write or a shutdown on transport where failed), before it
 * closes the handles: the caller may still act on the sockets (a reset
 * for the other peer). May call sl_relay_abort. */
typedef void (*sl_relay_error_cb)(struct sl_relay *r, int reason,
                                  struct sl_xprt *where);
/* Called once, after both handles are closed. reason is 0 when both
 * directions ended cleanly (EOF both ways), else the first error (a libuv
 * code, or what on_read or sl_relay_abort gave). */
typedef void (*sl_relay_done_cb)(struct sl_relay *r, int reason);

struct sl_relay_opts {
    size_t buf_size;   /* 0: SL_RELAY_BUF_SIZE */
    size_t high_water; /* 0: SL_RELAY_HIGH_WATER */
    size_t low_water;  /* 0: SL_RELAY_LOW_WATER; kept below high_water */
    struct sl_relay_pool *pool; /* NULL: plain malloc/free; relays sharing a
                                   pool must share buf_size */
    /* 1: on_read never looks at the bytes (sl_relay_chunk), so they may
     * move inside the kernel when both ends are plain sockets. */
    unsigned splice : 1;
};

struct sl_relay_splice; /* private: the spliced relay's handles, pipes */

/* One direction: bytes read from src are written to dst. Private. */
struct sl_relay_side {
    struct sl_xprt *src;
    struct sl_xprt *dst;
    char *buf;         /* the read buffer while src is readable, or NULL */
    size_t queued;     /* bytes handed to uv_write, not yet written */
    uint64_t bytes;    /* bytes read from src */
    unsigned paused : 1;   /* reading stopped by back-pressure */
    unsigned eof : 1;      /* src said EOF */
    unsigned finished : 1; /* dst shut down (or EOF forwarded) */
    unsigned held : 1;     /* reading stopped by sl_relay_hold */
};

struct sl_relay {
    /* Caller's fields, set before sl_relay_start. */
    void *data;
    sl_relay_read_cb on_read; /* may be NULL */
    sl_relay_done_cb on_done; /* required */
    sl_relay_error_cb on_error; /* may be NULL */

    /* Private. */
    struct sl_relay_side side[2]; /* [SL_RELAY_UP], [SL_RELAY_DOWN] */
    uv_shutdown_t shutdown_req[2];
    struct sl_relay_pool *pool;
    size_t buf_size, high_water, low_water;
    const char *chunk; /* during on_read: the bytes read */
    struct sl_relay_splice *sp; /* the zero-copy path's state, or NULL */
    int reason;
    int open_handles; /* handles not yet through their close callback */
    unsigned closing : 1;
    unsigned spliced : 1; /* the bytes move with splice(2) */
};

/* Starts relaying between a and b (both connected and open; neither being
 * read). opts may be NULL. Returns 0 or a libuv error; on error the relay
 * still owns the handles: it has begun closing them and on_done will be
 * called, with that error as reason. */
int sl_relay_start(struct sl_relay *r, struct sl_xprt *a, struct sl_xprt *b,
                   const struct sl_relay_opts *opts);

/* Ends the relay now (both handles closed, queued data dropped); on_done is
 * called later with reason (if no earlier reason was recorded). Safe to
 * call more than once and from inside on_read. */
void sl_relay_abort(struct sl_relay *r, int reason);

/* Stops (on 1) or resumes (on 0) reading the source of direction dir,
 * as a bandwidth cap does: what was read still goes on, nothing more is
 * read until resumed. Independent of back-pressure. Callable from
 * on_read; a no-op once the relay ends. */
void sl_relay_hold(struct sl_relay *r, enum sl_relay_dir dir, int on);

/* Bytes read so far in a direction (spliced: forwarded so far). */
static inline uint64_t sl_relay_bytes(const struct sl_relay *r,
                                      enum sl_relay_dir dir)
{
    return r->side[dir].bytes;
}

/* 1 if the relay moves its bytes with splice(2) (set by sl_relay_start,
 * kept until on_done). */
static inline int sl_relay_spliced(const struct sl_relay *r)
{
    return r->spliced;
}

/* Inside on_read: the n bytes just read (for an observer such as the
 * node's request inspector; they must not be changed or kept). NULL
 * elsewhere, and always on a spliced relay. */
static inline const char *sl_relay_chunk(const struct sl_relay *r)
{
    return r->chunk;
}

/* 1 while done_cb has not been called. */
static inline int sl_relay_active(const struct sl_relay *r)
{
    return r->open_handles > 0;
}

#endif
