/* HTTP/1.x heads: find, parse (http-parser), format, and read one from a
 * libuv stream with a size cap and a timeout. Used by the hub's listener,
 * the node's client handshake and the admin API.
 *
 * The pure part (sl_http_head_end, sl_http_head_parse, the lookups and the
 * formatters) does no I/O and no allocation. */
#ifndef SL_HTTP_HEAD_H
#define SL_HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "net/xprt.h"

#define SL_HTTP_HEAD_MAX (64 * 1024)
#define SL_HTTP_HEAD_TIMEOUT_MS 10000
#define SL_HTTP_MAX_HEADERS 100

struct sl_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing blanks trimmed */
    size_t value_len;
};

/* A parsed head. Every pointer points into the buffer given to
 * sl_http_head_parse, which must outlive this struct's use. */
struct sl_http_head {
    int is_request;
    int method;     /* enum http_method (requests) */
    int status;     /* responses */
    int http_major, http_minor;
    const char *url; /* request target (requests), not NUL-terminated */
    size_t url_len;
    const char *error; /* after SL_EPARSE: why, a static sentence */
    struct sl_http_header hdr[SL_HTTP_MAX_HEADERS];
    size_t nhdr;
    size_t len;        /* bytes of the head, through the empty line */
    uint64_t content_length; /* valid when has_content_length */
    unsigned has_content_length : 1;
    unsigned chunked : 1;
    unsigned upgrade : 1;    /* Connection: upgrade with an Upgrade header */
    unsigned keep_alive : 1; /* per the version and Connection header */
};

/* Looks for the empty line that ends a head in buf[0..len). scan_from is
 * where the previous call stopped looking (0 at first), so feeding a
 * growing buffer costs linear time. Leading empty lines before a head are
 * tolerated (RFC 9112 2.2) and counted in the head.
 * Returns the head's length (> 0), 0 if it is not complete yet, or
 * SL_ETOOBIG if len reached max without an end. */
ssize_t sl_http_head_end(const char *buf, size_t len, size_t scan_from,
                         size_t max);

/* Parses the complete head buf[0..len) (len as returned by
 * sl_http_head_end). Returns 0 or SL_EPARSE (bad syntax, too many headers,
 * invalid Content-Length), with the reason in out->error. Stricter than
 * http-parser alone, as HAProxy and nginx are with what they forward:
 * refused are a CR not followed by LF, a line starting with whitespace
 * (obs-fold), a header name that is not a token (whitespace before the
 * colon, say), and a head that http-parser ends anywhere but at len. */
int sl_http_head_parse(struct sl_http_head *out, int is_request,
                       const char *buf, size_t len);

/* The first header named name (case-insensitive), or NULL. */
const struct sl_http_header *sl_http_head_find(const struct sl_http_head *h,
                                               const char *name);

/* 1 if the comma-separated value of h contains token (case-insensitive). */
int sl_http_header_has_token(const struct sl_http_header *h,
                             const char *token);

/* Copies the value of header name into buf as a NUL-terminated string.
 * Returns its length, SL_ENOTFOUND, or SL_ETOOBIG (cap too small). */
int sl_http_head_get(const struct sl_http_head *h, const char *name, char *buf,
                     size_t cap);

/* The standard reason phrase of a status ("OK", "Not Found", ...). */
const char *sl_http_reason(int status);

/* Formats a response head without its body:
 * "HTTP/1.1 <status> <reason>\r\nContent-Type: ..\r\nContent-Length:
 * <content_length>\r\n<extra>Connection: close|keep-alive\r\n\r\n".
 * content_type NULL means "text/plain"; extra as below. Returns the length
 * written (NUL-terminated) or SL_ETOOBIG. */
int sl_http_format_head(char *buf, size_t cap, int status,
                        const char *content_type, size_t content_length,
                        const char *extra, int keep_alive);

/* Formats a complete response with a plain-text (or the given type) body:
 * "HTTP/1.1 <status> <reason>\r\nContent-Type: ..\r\nContent-Length: ..\r\n
 * <extra>Connection: close|keep-alive\r\n\r\n<body>". extra is zero or more
 * complete header lines ("Name: value\r\n"), may be NULL. Returns the length
 * written (NUL-terminated) or SL_ETOOBIG. */
int sl_http_format_response(char *buf, size_t cap, int status,
                            const char *content_type, const char *body,
                            const char *extra, int keep_alive);

/* Writes len bytes to s: uv_try_write first, then the rest is copied into
 * one heap block (freed when written). Errors of the write are dropped: the
 * reader of the stream will see them. Returns 0 or a libuv error. */
int sl_stream_write_copy(struct sl_xprt *s, const void *data, size_t len);

/* Reads one head from a stream, with a cap and a timeout.
 *
 * The caller owns struct sl_http_reader and the stream and timer handles
 * (the timer initialized on the same loop); it must keep them alive until
 * the callback ran or sl_http_reader_stop was called. The reader sets
 * stream->data to the reader while reading.
 *
 * The callback runs once with status:
 *   0            the head is complete: buf[0..head_len) is the head, and
 *                buf[head_len..len) the bytes that followed it;
 *   SL_ETOOBIG   no head within max bytes (answer 431);
 *   UV_ETIMEDOUT no head within timeout_ms (answer 408);
 *   UV_EOF or another libuv error: the peer went away.
 * Reading is stopped before the callback. The buffer stays owned by the
 * reader until sl_http_reader_release (also call it after errors). */
struct sl_http_reader;
typedef void (*sl_http_reader_cb)(struct sl_http_reader *r, int status);

struct sl_http_reader {
    void *data; /* caller's */

    /* Results (valid in and after the callback with status 0). */
    char *buf;
    size_t len;
    size_t head_len;

    /* Private. */
    struct sl_xprt *stream;
    uv_timer_t *timer;
    sl_http_reader_cb cb;
    size_t cap, max, scanned;
    unsigned active : 1;
};

/* Starts reading. Bytes already in hand (pre/pre_len, may be NULL/0) are
 * taken first (copied). max 0 means SL_HTTP_HEAD_MAX; timeout_ms 0 means
 * SL_HTTP_HEAD_TIMEOUT_MS. The callback may run before this returns if pre
 * already holds a head or the cap. Returns 0 or a libuv error (then no
 * callback). */
int sl_http_reader_start(struct sl_http_reader *r, struct sl_xprt *stream,
                         uv_timer_t *timer, size_t max, uint64_t timeout_ms,
                         const void *pre, size_t pre_len, sl_http_reader_cb cb);

/* Stops reading and the timer; no callback afterwards. Safe to call more
 * than once. */
void sl_http_reader_stop(struct sl_http_reader *r);

/* Frees the buffer (stops first). */
void sl_http_reader_release(struct sl_http_reader *r);

/* Splits "host[:port]" (a Host header, an address to dial) into host,
 * without brackets for an IPv6 literal, and port ("80" when absent). An
 * "http://" prefix and a trailing path are ignored; other schemes, a bare
 * IPv6 literal or a port outside 1-65535 give SL_EPARSE, as does a part
 * that does not fit its buffer. Returns 0 or SL_EPARSE. */
int sl_http_split_host_port(const char *addr, char *host, size_t hcap,
                            char *port, size_t pcap);

#endif
