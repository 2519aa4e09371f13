/* A multiplexed connection (protocol v2, docs/protocol.md "Multiplexed
 * data connections"): many byte streams over one transport, in the frames
 * of mux/frame.h. Each stream is a transport of its own (net/xprt.h, a
 * provided one): the relay, the hub's pairing and the node's upstream
 * dial read, write, shut down and close it with the sl_xprt calls they
 * use for a socket, so there is one byte path whatever carries it.
 *
 * What the engine does for them:
 *  - Flow control by credit, per stream and per connection, granted as
 *    cumulative offsets. A stream's receive window starts at 256 KiB and
 *    doubles (to 16 MiB) when half of it was read within a few round
 *    trips (measured with PING); the connection's window stays at least
 *    1.5 times the largest stream window. A stream whose reader stops
 *    holds at most its window here; the connection's credit is returned
 *    as frames are taken off it, so a stalled stream stops only itself.
 *  - Fairness: DATA frames of at most 16 KiB, round robin between the
 *    streams that have bytes and credit (a stream no other waits behind
 *    sends up to 64 KiB a frame); control frames (CREDIT, RST, PING,
 *    PONG, GOAWAY) go first.
 *  - Batching: every frame produced in one loop iteration goes out in one
 *    write of many buffers (a uv_check handle flushes; one write in
 *    flight; payloads are not copied), and one read parses every whole
 *    frame in the buffer, delivering consecutive DATA of a stream as one
 *    read to its reader. Bytes for a reader that is not reading stay in
 *    the read buffer (the next read takes another) when they are a
 *    quarter of it or more; smaller ones are copied aside.
 *  - Bounds: a frame over 64 KiB, a frame for a stream never opened, an
 *    id opened twice and data past credit end the connection with a
 *    GOAWAY naming the reason (logged); nothing the peer sends crashes it.
 *  - Liveness: a PING every ping_ms; a peer heard from for none of
 *    dead_ms is dead.
 *
 * Stream semantics, as a TCP socket's: sl_xprt_shutdown sends FIN after
 * the queued bytes (half-close); the peer's FIN reads as UV_EOF; a stream
 * closed before both FINs sends RST; the peer's RST, or the loss of the
 * connection, reads as UV_ECONNRESET and fails pending writes.
 * sl_xprt_try_write returns UV_EAGAIN: writes go through sl_xprt_write,
 * whose buffers are framed straight from the caller's memory.
 *
 * Memory: an idle connection holds its struct, its handles and no buffer;
 * an idle stream about 200 bytes plus the caller's transport struct.
 * Not thread-safe: one loop. */
#ifndef SL_NET_MUX_H
#define SL_NET_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mux/frame.h"
#include "net/xprt.h"

#define SL_MUX_WINDOW_INIT (256 * 1024)
#define SL_MUX_WINDOW_MAX (16 * 1024 * 1024)
#define SL_MUX_CONN_WINDOW_INIT (1024 * 1024)
#define SL_MUX_STREAMS_MAX 65536 /* streams the peer may have open at once */

struct sl_log;
struct sl_mux;
struct sl_mux_stream; /* private */

enum sl_mux_role {
    SL_MUX_HUB,    /* opens odd streams */
    SL_MUX_BRIDGE, /* would open even ones */
};

/* Window growth shared by many connections (one per process): the bytes
 * streams' windows have grown past their initial size, all together,
 * stay under max; past it windows stop growing (they never shrink). So
 * the memory a process holds for readers that do not read is bounded by
 * its streams' initial windows plus max. Zero-initialise and set max. */
struct sl_mux_budget {
    uint64_t max;  /* 0: no growth at all */
    uint64_t used;
};

struct sl_mux_opts {
    enum sl_mux_role role;
    uint64_t ping_ms;  /* 0: 15 s */
    uint64_t dead_ms;  /* 0: 45 s */
    uint32_t window_max; /* 0: SL_MUX_WINDOW_MAX */
    uint32_t streams_max; /* 0: SL_MUX_STREAMS_MAX */
    struct sl_mux_budget *budget; /* NULL: windows grow to window_max */
    struct sl_log *log;  /* NULL: no log lines */
    const char *name;    /* for log lines ("hub mux 12 (ab1234567890)") */
};

/* A stream the peer opened: kind and target as its OPEN said. The
 * callback attaches it to a transport (sl_mux_stream_attach) or refuses
 * it (sl_mux_stream_refuse) before it returns; a stream left alone is
 * refused. */
typedef void (*sl_mux_stream_cb)(struct sl_mux *m, struct sl_mux_stream *s,
                                 uint8_t kind, const char *target);
/* The connection ended: its transport is closed (the caller may free the
 * transport's memory), reason 0 after a clean close, else why. Streams
 * still attached read UV_ECONNRESET. Called once. */
typedef void (*sl_mux_close_cb)(struct sl_mux *m, int reason);
/* The peer said GOAWAY: no stream may be opened any more. */
typedef void (*sl_mux_goaway_cb)(struct sl_mux *m, uint32_t code);

struct sl_mux_cbs {
    void *data;
    sl_mux_stream_cb on_stream;  /* NULL: every OPEN is refused */
    sl_mux_close_cb on_close;    /* required */
    sl_mux_goaway_cb on_goaway;  /* may be NULL */
};

/* Starts a multiplexed connection on x (connected, not being read, its
 * handshake over). The engine takes the transport over (its ->data,
 * reading, writing, closing). pre/pre_len are bytes already read after
 * the handshake (copied). On success *out is the caller's reference,
 * given back with sl_mux_release. Returns 0 or a negative code; on
 * failure x is untouched and still the caller's. */
int sl_mux_start(struct sl_mux **out, struct sl_xprt *x,
                 const struct sl_mux_opts *opts, const struct sl_mux_cbs *cbs,
                 const void *pre, size_t pre_len);

/* Opens a stream as transport x (caller's memory, untouched before).
 * OPEN goes out with the stream's first bytes in the next flush: a first
 * write costs no round trip. Returns 0, or SL_ELIMIT (ids spent),
 * UV_EPIPE (the connection is closing or the peer went away), UV_ENOMEM. */
int sl_mux_open(struct sl_mux *m, struct sl_xprt *x, uint8_t kind,
                const char *target);

/* Inside on_stream: s becomes transport x (caller's memory), which the
 * caller reads and closes as any. Returns 0 or UV_ENOMEM (then s is
 * refused). */
int sl_mux_stream_attach(struct sl_mux_stream *s, struct sl_xprt *x,
                         uv_loop_t *loop);
/* Inside on_stream: refuses s with an RST of code (enum sl_mux_rst). */
void sl_mux_stream_refuse(struct sl_mux_stream *s, uint32_t code,
                          const char *reason);

/* The id of a stream transport (0 for any other transport). */
uint32_t sl_mux_stream_id(const struct sl_xprt *x);

/* No new streams either way: a GOAWAY (code, reason) tells the peer. The
 * connection closes once its streams have ended; until then they go on. */
void sl_mux_goaway(struct sl_mux *m, uint32_t code, const char *reason);

/* Ends the connection now: a GOAWAY (code, reason) goes out if the
 * transport takes it, every stream reads UV_ECONNRESET, the transport
 * closes, and on_close follows with reason. Safe more than once and
 * from any callback. */
void sl_mux_abort(struct sl_mux *m, uint32_t code, const char *reason,
                  int err);

/* Gives the caller's reference back; on_close is not called after it
 * (abort first for that). The memory goes once streams still attached
 * are closed by their owners. */
void sl_mux_release(struct sl_mux *m);

/* The cbs.data given at start. */
void *sl_mux_data(const struct sl_mux *m);

/* 1 while new streams may be opened on m. */
int sl_mux_accepting(const struct sl_mux *m);
/* Streams open now (attached, not yet ended both ways). */
size_t sl_mux_nstreams(const struct sl_mux *m);
/* Smoothed round-trip time in microseconds (0 until the first PONG). */
uint64_t sl_mux_rtt_us(const struct sl_mux *m);

/* Counters, for tests and metrics. */
struct sl_mux_stats {
    uint64_t frames_in, frames_out;
    uint64_t reads, writes; /* transport reads and writes (syscalls, for
                               a plain one) */
    uint64_t bytes_in, bytes_out;
    uint64_t parked; /* bytes kept for readers that were not reading */
    uint64_t sliced; /* of them, kept in the read buffer (not copied) */
    uint32_t max_window; /* the largest stream receive window so far */
    uint32_t streams;
};
void sl_mux_get_stats(const struct sl_mux *m, struct sl_mux_stats *out);

#endif
