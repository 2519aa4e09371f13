/* A transport: a TCP connection, plain or with TLS on it (HAProxy's
 * xprt). Everything that moves bytes (the relay, WebSocket, the hub's
 * connections, the node's, the API server) does its I/O through these
 * calls, so TLS sits below them all and none of them grows a TLS path of
 * its own.
 *
 * The calls mirror libuv's stream calls and keep their callback types: a
 * callback is handed (uv_stream_t *)&x->tcp; its ->data stays the caller's.
 * A plain transport is the TCP handle itself, and each call is the libuv
 * call. A TLS transport (sl_xprt_tls_start) runs OpenSSL through a BIO of
 * its own: ciphertext read from the socket is handed to OpenSSL straight
 * from the read buffer, the plaintext goes into the buffer the caller's
 * alloc callback gives, and the records of the writes made in one turn of
 * the loop are gathered and sent together at its end (at once past 256
 * KiB). Nothing blocks the loop.
 *
 * Differences a caller of a TLS transport sees (none for a plain one):
 *  - sl_xprt_try_write returns UV_EAGAIN: use sl_xprt_write, whose
 *    callback runs once the records carrying the bytes are written.
 *  - sl_xprt_shutdown sends TLS close_notify after the queued writes, then
 *    shuts the socket's write side down. Reading goes on (half-close).
 *  - EOF is delivered for close_notify or for the socket's EOF; a TLS
 *    error reads as UV_EPROTO (sl_xprt_error says why).
 *  - Memory: an idle TLS transport holds its SSL object (OpenSSL's own
 *    buffers freed as soon as the connection is quiet, kept while it is
 *    busy) and no buffer of ours; ciphertext read while the caller had
 *    stopped reading (at most one socket read's worth) is kept until it
 *    reads again.
 *
 * Ownership: the caller owns struct sl_xprt's memory (embed it). It
 * initialises the TCP handle itself (uv_tcp_init, uv_accept or
 * uv_tcp_connect on &x->tcp) after sl_xprt_init. sl_xprt_close closes
 * everything and calls close_cb once with (uv_handle_t *)&x->tcp, after
 * which the memory may be freed. Not thread-safe: one loop. */
#ifndef SL_NET_XPRT_H
#define SL_NET_XPRT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ssl_st SSL;

struct sl_tls_conn; /* private, TLS transports only */
struct sl_xprt;

/* A transport that is not a socket of its own: a stream of a multiplexed
 * connection (net/mux.h). Its provider fills these in; every sl_xprt call
 * below goes to them, so the relay, the hub and the node move a stream's
 * bytes exactly as a socket's. Such a transport's tcp handle is never
 * initialised: only its loop and data fields mean anything (callbacks
 * still get (uv_stream_t *)&x->tcp, whose ->data is the caller's). */
struct sl_xprt_ops {
    int (*read_start)(struct sl_xprt *x, uv_alloc_cb alloc_cb,
                      uv_read_cb read_cb);
    int (*read_stop)(struct sl_xprt *x);
    /* NULL: UV_EAGAIN, every write goes through write. */
    int (*try_write)(struct sl_xprt *x, const uv_buf_t bufs[],
                     unsigned nbufs);
    int (*write)(uv_write_t *req, struct sl_xprt *x, const uv_buf_t bufs[],
                 unsigned nbufs, uv_write_cb cb);
    int (*shutdown)(uv_shutdown_t *req, struct sl_xprt *x,
                    uv_shutdown_cb cb);
    void (*close)(struct sl_xprt *x, uv_close_cb close_cb);
    size_t (*write_queue_size)(const struct sl_xprt *x);
    int (*is_closing)(const struct sl_xprt *x);
};

struct sl_xprt {
    uv_tcp_t tcp; /* first: callbacks' stream pointer is the transport */
    struct sl_tls_conn *tls; /* NULL: plain TCP */
    const struct sl_xprt_ops *ops; /* NULL: a socket (tcp, maybe tls) */
    void *impl; /* the provider's, with ops */
};

/* The handshake ended: status 0, or a negative code (UV_EPROTO for a TLS
 * failure, whose reason sl_xprt_error gives; UV_EOF, UV_ECONNRESET,
 * UV_ETIMEDOUT ...). On failure the caller closes the transport. */
typedef void (*sl_xprt_handshake_cb)(struct sl_xprt *x, int status);

/* Zeroes x (a plain transport). Call before uv_tcp_init(&x->tcp). */
void sl_xprt_init(struct sl_xprt *x);

static inline struct sl_xprt *sl_xprt_of(uv_stream_t *s)
{
    return (struct sl_xprt *)(void *)s;
}

static inline uv_stream_t *sl_xprt_stream(struct sl_xprt *x)
{
    return (uv_stream_t *)&x->tcp;
}

/* Puts TLS on a connected transport and runs the handshake: ssl is
 * configured (server or client side set, SNI, verification) and is taken
 * over whatever the result. pre/pre_len are ciphertext bytes already read
 * from the socket (a ClientHello peeked at; copied). cb is called once,
 * from the loop, never from inside this call. The transport must not be
 * read or written until then. Returns 0 or a negative code (then cb is
 * not called; ssl is freed). */
int sl_xprt_tls_start(struct sl_xprt *x, SSL *ssl, const void *pre,
                      size_t pre_len, sl_xprt_handshake_cb cb);

/* 1 for a transport provided through sl_xprt_ops (a mux stream). */
static inline int sl_xprt_is_virtual(const struct sl_xprt *x)
{
    return x->ops != NULL;
}

/* 1 once the transport is closing or closed (uv_is_closing for a
 * socket). */
int sl_xprt_is_closing(const struct sl_xprt *x);

/* 1 for a TLS transport. */
static inline int sl_xprt_is_tls(const struct sl_xprt *x)
{
    return x->tls != NULL;
}

/* The SSL object of a TLS transport (for the peer's certificate, the
 * negotiated version, ALPN), or NULL. Owned by the transport. */
SSL *sl_xprt_ssl(const struct sl_xprt *x);

/* Why the last TLS failure happened ("certificate verify failed: unable
 * to get local issuer certificate", "no shared cipher", ...), or "" */
const char *sl_xprt_error(const struct sl_xprt *x);

int sl_xprt_read_start(struct sl_xprt *x, uv_alloc_cb alloc_cb,
                       uv_read_cb read_cb);
int sl_xprt_read_stop(struct sl_xprt *x);
/* As uv_try_write; UV_EAGAIN always on a TLS transport (and on a
 * provided one without try_write). */
int sl_xprt_try_write(struct sl_xprt *x, const uv_buf_t bufs[],
                      unsigned nbufs);
/* As uv_write: bufs' memory (not the array) stays valid until cb. */
int sl_xprt_write(uv_write_t *req, struct sl_xprt *x, const uv_buf_t bufs[],
                  unsigned nbufs, uv_write_cb cb);
int sl_xprt_shutdown(uv_shutdown_t *req, struct sl_xprt *x,
                     uv_shutdown_cb cb);
/* Closes the transport (pending writes fail with UV_ECANCELED, as
 * libuv's do); close_cb is handed (uv_handle_t *)&x->tcp. */
void sl_xprt_close(struct sl_xprt *x, uv_close_cb close_cb);
/* Bytes the caller handed over and the socket has not taken yet (as
 * uv_stream_get_write_queue_size), records' overhead included. */
size_t sl_xprt_write_queue_size(const struct sl_xprt *x);

#endif
