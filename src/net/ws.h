/* A WebSocket connection (RFC 6455) over a connected libuv TCP handle, for
 * after the HTTP upgrade (the handshake itself is tunnel/ws_handshake.h and
 * net/http_head.h). Framing is wslay's event API; this file only moves its
 * bytes through libuv and adds keep-alive, limits and back-pressure.
 *
 * Memory and ownership (the same rule as net/relay.h):
 *  - The caller owns the memory of struct sl_ws (embed it or allocate it)
 *    and of the transport (net/xprt.h: plain TCP or TLS). From
 *    sl_ws_start on, the connection owns the transport's lifetime: it
 *    takes over its tcp.data, closes it itself
 *    (and its own timer), and calls on_close exactly once, after every
 *    close callback has run. Only from on_close on may the caller free the
 *    handle and the struct sl_ws.
 *  - Buffers follow the traffic: the read buffer starts at 4 KiB and grows
 *    (to 64 KiB) while reads fill it, the output buffers grow as frames
 *    need; all are kept while bytes move (no malloc/free per message) and
 *    freed at the first keep-alive tick without traffic, so an idle
 *    connection holds none for long. Outgoing messages are copied:
 *    queued bytes are bounded by max_queued; above high_water the sender
 *    is told to wait (sl_ws_send returns 1) and on_drain is called once
 *    they fall to low_water.
 *  - Every queued message, pongs included, counts its payload plus
 *    SL_WS_FRAME_COST (wslay's message, its queue cell, malloc's headers),
 *    so a flood of empty pings is not free. The peer's pings make pongs
 *    this side must queue: while the queue is above read_stop, reading
 *    stops (the peer's own bytes wait in its socket), and resumes at
 *    low_water. read_stop sits well above high_water, which senders stop
 *    at, so two honest peers moving data both ways never both stop
 *    reading; only a peer that pings and does not read gets there, and
 *    it is then dead after dead_ms.
 *  - A fragmented message costs its payload plus SL_WS_FRAME_COST for
 *    every fragment after the first; over max_msg the connection is
 *    closed with 1009 (reason SL_ETOOBIG), so tiny or empty continuation
 *    frames cannot hold unbounded memory or CPU.
 *
 * Closing:
 *  - sl_ws_close() queues a close frame after every message already queued
 *    (nothing queued before it is lost), then waits for the peer's close
 *    frame (at most close_timeout_ms) and closes the TCP connection. A
 *    peer that takes no byte of the output ahead of the close frame for
 *    close_timeout_ms is cut off (reason UV_ETIMEDOUT).
 *  - A close frame from the peer is answered at once (wslay's rule) and
 *    ends the connection both ways: messages this side had queued but not
 *    yet written are dropped. So a close frame means "no more data either
 *    way", and a half-closed byte stream needs the raw mode (see
 *    docs/protocol.md).
 *  - sl_ws_abort() closes the TCP connection at once.
 *
 * Keep-alive: a ping every ping_ms; a peer from which nothing arrived for
 * dead_ms is closed with reason UV_ETIMEDOUT.
 *
 * Not thread-safe: one loop. Callbacks may call any sl_ws_ function on the
 * same connection, including sl_ws_close/sl_ws_abort. */
#ifndef SL_WS_H
#define SL_WS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/xprt.h"

#define SL_WS_MAX_MSG_DATA (1024 * 1024)   /* data connections */
#define SL_WS_MAX_MSG_CONTROL (64 * 1024)  /* control connections */
#define SL_WS_PING_MS 15000
#define SL_WS_DEAD_MS 45000
#define SL_WS_CLOSE_TIMEOUT_MS 5000
#define SL_WS_MAX_QUEUED (4 * 1024 * 1024)
#define SL_WS_HIGH_WATER (256 * 1024)
#define SL_WS_LOW_WATER (64 * 1024)
#define SL_WS_READ_SIZE (64 * 1024)
#define SL_WS_READ_STOP (1024 * 1024)
#define SL_WS_FRAME_COST 64

enum sl_ws_role { SL_WS_SERVER = 0, SL_WS_CLIENT = 1 };
enum sl_ws_msg_type { SL_WS_TEXT = 1, SL_WS_BINARY = 2 };

struct sl_ws;

/* A complete message (never a fragment). data is valid only during the
 * call. */
typedef void (*sl_ws_message_cb)(struct sl_ws *ws, enum sl_ws_msg_type type,
                                 const uint8_t *data, size_t len);
/* Queued bytes fell to low_water after sl_ws_send returned 1. */
typedef void (*sl_ws_drain_cb)(struct sl_ws *ws);
/* The peer sent a close frame (status is its code, 1005 when none). Called
 * once, before on_close; the connection is closing. May be NULL. */
typedef void (*sl_ws_peer_close_cb)(struct sl_ws *ws, uint16_t status);
/* Once, after the TCP handle and the timer are closed. reason is 0 after
 * a clean close handshake (either side began it), else a negative code:
 * UV_ETIMEDOUT (dead peer), UV_EOF (TCP closed without a close frame),
 * SL_ETOOBIG (message over max_msg), SL_EPARSE (protocol error), a libuv
 * error, or the reason given to sl_ws_abort. The caller may free the
 * struct sl_ws and the transport from here on. */
typedef void (*sl_ws_close_cb)(struct sl_ws *ws, int reason);

struct sl_ws_opts {
    enum sl_ws_role role;      /* SL_WS_CLIENT masks its frames */
    size_t max_msg;            /* 0: SL_WS_MAX_MSG_DATA */
    size_t max_queued;         /* 0: SL_WS_MAX_QUEUED */
    size_t high_water;         /* 0: SL_WS_HIGH_WATER */
    size_t low_water;          /* 0: SL_WS_LOW_WATER */
    size_t read_stop;          /* 0: SL_WS_READ_STOP (at least high_water) */
    uint64_t ping_ms;          /* 0: SL_WS_PING_MS */
    uint64_t dead_ms;          /* 0: SL_WS_DEAD_MS */
    uint64_t close_timeout_ms; /* 0: SL_WS_CLOSE_TIMEOUT_MS */
};

/* Private state; the fields are here only so the struct can be embedded. */
struct sl_ws_obuf {
    char *data;
    size_t len, cap;
};

struct sl_ws {
    /* Caller's fields: set before sl_ws_start (data may change later). */
    void *data;
    sl_ws_message_cb on_message;       /* required */
    sl_ws_close_cb on_close;           /* required */
    sl_ws_drain_cb on_drain;           /* may be NULL */
    sl_ws_peer_close_cb on_peer_close; /* may be NULL */

    /* Private. */
    struct sl_xprt *xp;
    uv_timer_t timer;
    uv_write_t write_req;
    void *wslay; /* wslay_event_context_ptr; NULL while asleep */
    /* Input fed to wslay, and where the last whole frame in it ended:
     * equal, no frame under way and no fragmented message open, wslay
     * holds nothing of the peer's and an idle connection can let its
     * context (8.6 KiB of buffers) go until the next byte either way. */
    uint64_t fed, framed, frame_end;
    struct sl_ws_obuf out[2]; /* [0] being written, [1] filling */
    char *rbuf;               /* unread input, or NULL */
    size_t rlen, roff;
    char *rmem;               /* the read buffer, kept while in use */
    size_t rcap, rwant;       /* its size, and the size the next read gets */
    size_t max_queued, high_water, low_water, obuf_cap;
    size_t read_stop;
    uint64_t max_msg;
    uint64_t frag_cost;       /* the message being received, fragments
                               * after the first counted with their cost */
    uint64_t ping_ms, dead_ms, close_timeout_ms;
    uint64_t last_rx;         /* uv_now of the last byte read */
    uint64_t next_ping;       /* uv_now at which the next ping goes */
    uint64_t close_deadline;  /* uv_now by which TCP closes, or 0 */
    uint64_t close_stall_at;  /* sl_ws_close: when output is next checked */
    uint64_t close_mark;      /* bytes_out at the previous check */
    uint64_t bytes_in, bytes_out; /* wire bytes, frames included */
    int reason;
    int open_handles;
    uint16_t close_code;
    unsigned started : 1;
    unsigned writing : 1;      /* a uv_write is in flight */
    unsigned read_paused : 1;  /* by sl_ws_pause_read */
    unsigned reading : 1;      /* uv_read_start is active */
    unsigned above_high : 1;   /* sl_ws_send returned 1; on_drain owed */
    unsigned close_wanted : 1; /* sl_ws_close called; close frame owed */
    unsigned close_queued : 1; /* our close frame handed to wslay */
    unsigned shut : 1;         /* uv_shutdown issued */
    unsigned closing : 1;      /* handles being closed */
    unsigned peer_closed : 1;  /* close frame received */
    unsigned in_cb : 1;        /* inside wslay_event_recv */
    unsigned used : 1;         /* bytes moved since the last timer tick */
    unsigned out_full : 1;     /* reading stopped: queue above read_stop */
    unsigned corked : 1;       /* sl_ws_cork: frames gather, unsent */
    unsigned client : 1;       /* SL_WS_CLIENT */
    unsigned asleep : 1;       /* idle: wslay's context freed */
    unsigned in_frame : 1;     /* a frame's header read, its end not */
    unsigned msg_open : 1;     /* a fragmented message under way */
};

/* Starts the WebSocket on xp (connected, not being read). pre/pre_len are
 * bytes already read past the HTTP head (copied; may be NULL/0). opts may
 * be NULL (server, data defaults). Returns 0, or a negative code; on error
 * the connection still owns the handle, is closing it, and on_close will
 * be called with that code. */
int sl_ws_start(struct sl_ws *ws, struct sl_xprt *xp,
                const struct sl_ws_opts *opts,
                const void *pre, size_t pre_len);

/* Queues one message (copied). Returns 0, 1 when queued bytes are now over
 * high_water (the message was queued; wait for on_drain before sending
 * more), SL_ELIMIT when it would pass max_queued (not queued), UV_EPIPE
 * when the connection is closing, or UV_ENOMEM. */
int sl_ws_send(struct sl_ws *ws, enum sl_ws_msg_type type, const void *data,
               size_t len);
static inline int sl_ws_send_text(struct sl_ws *ws, const char *s, size_t len)
{
    return sl_ws_send(ws, SL_WS_TEXT, s, len);
}
static inline int sl_ws_send_binary(struct sl_ws *ws, const void *p,
                                    size_t len)
{
    return sl_ws_send(ws, SL_WS_BINARY, p, len);
}

/* Between sl_ws_cork and sl_ws_uncork, messages sent are framed but not
 * written: a batch (the datagrams of one recvmmsg) goes out in one
 * write instead of one each. The queue's bounds still hold. */
void sl_ws_cork(struct sl_ws *ws);
void sl_ws_uncork(struct sl_ws *ws);

/* Bytes queued and not yet handed to the kernel, each queued message
 * counted with SL_WS_FRAME_COST. */
size_t sl_ws_queued(const struct sl_ws *ws);

/* Stops / resumes delivering messages (back-pressure on the reader).
 * Bytes already read stay buffered and are not fed to the frame reader
 * while paused; messages already inside wslay's own read buffer (at most
 * its 4 KiB of frames) may still be delivered after the pause.
 * Pings are still not answered while paused, so keep pauses under
 * dead_ms. */
void sl_ws_pause_read(struct sl_ws *ws);
void sl_ws_resume_read(struct sl_ws *ws);

/* Graceful close with status code (1000 normal; 1001 going away; ...):
 * see the header comment. Safe to call more than once. */
void sl_ws_close(struct sl_ws *ws, uint16_t code);

/* Immediate close; on_close gets reason (if no earlier one). Safe to call
 * more than once. */
void sl_ws_abort(struct sl_ws *ws, int reason);

/* 1 once closing has begun (sl_ws_close, sl_ws_abort, peer close, error). */
int sl_ws_is_closing(const struct sl_ws *ws);

#endif
