#include "net/relay.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* A read buffer with room in front for the write request that will carry
 * it if the socket does not take it all at once: the bytes are never
 * copied. */
struct wbuf {
    union {
        uv_write_t req;
        struct wbuf *next; /* while in the pool's free list */
    } u;
    struct sl_relay *relay;
    enum sl_relay_dir dir;
    size_t len;
    char data[];
};

static void close_all(struct sl_relay *r, int reason);

void sl_relay_pool_drain(struct sl_relay_pool *pool)
{
    if (pool == NULL)
        return;
    struct wbuf *w = pool->free_list;
    while (w != NULL) {
        struct wbuf *next = w->u.next;
        free(w);
        w = next;
    }
    pool->free_list = NULL;
    pool->nfree = 0;
    pool->low = 0;
}

void sl_relay_pool_trim(struct sl_relay_pool *pool)
{
    if (pool == NULL)
        return;
    /* Any `low` buffers of the list were idle all along: the list is LIFO,
     * so those are the ones at its tail. */
    size_t keep = pool->nfree - pool->low;
    struct wbuf **pp = (struct wbuf **)&pool->free_list;
    for (size_t i = 0; i < keep && *pp != NULL; i++)
        pp = &(*pp)->u.next;
    struct wbuf *w = *pp;
    *pp = NULL;
    while (w != NULL) {
        struct wbuf *next = w->u.next;
        free(w);
        pool->nfree--;
        w = next;
    }
    pool->low = pool->nfree;
}

static struct wbuf *wbuf_get(struct sl_relay *r)
{
    size_t block = sizeof(struct wbuf) + r->buf_size;
    struct sl_relay_pool *pool = r->pool;
    if (pool != NULL && pool->block_size == block && pool->free_list) {
        struct wbuf *w = pool->free_list;
        pool->free_list = w->u.next;
        if (--pool->nfree < pool->low)
            pool->low = pool->nfree;
        return w;
    }
    return malloc(block);
}

static void wbuf_put(struct sl_relay *r, struct wbuf *w)
{
    if (w == NULL)
        return;
    size_t block = sizeof(struct wbuf) + r->buf_size;
    struct sl_relay_pool *pool = r->pool;
    if (pool != NULL && pool->block_size == 0)
        pool->block_size = block;
    if (pool != NULL && pool->block_size == block &&
        pool->nfree < pool->max_free) {
        w->u.next = pool->free_list;
        pool->free_list = w;
        pool->nfree++;
        return;
    }
    free(w);
}

static struct wbuf *side_wbuf(struct sl_relay_side *s)
{
    return (struct wbuf *)(void *)s->buf;
}

static void release_buf(struct sl_relay *r, struct sl_relay_side *s)
{
    wbuf_put(r, side_wbuf(s));
    s->buf = NULL;
}

static struct sl_relay_side *side_of(struct sl_relay *r,
                                     const uv_handle_t *src)
{
    return (const uv_handle_t *)&r->side[SL_RELAY_UP].src->tcp == src
               ? &r->side[SL_RELAY_UP]
               : &r->side[SL_RELAY_DOWN];
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_relay *r = h->data;
    struct sl_relay_side *s = side_of(r, h);
    (void)hint;
    if (s->buf == NULL) {
        struct wbuf *w = wbuf_get(r);
        s->buf = (char *)w;
        if (w == NULL) {
            /* libuv reports UV_ENOBUFS to on_read, which ends the relay. */
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    *buf = uv_buf_init(side_wbuf(s)->data, (unsigned)r->buf_size);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sl_relay *r = h->data;
    if (--r->open_handles == 0)
        r->on_done(r, r->reason);
}

static void check_finished(struct sl_relay *r)
{
    if (r->side[0].finished && r->side[1].finished)
        close_all(r, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct sl_relay *r = req->data;
    if (r->closing)
        return;
    if (status < 0) {
        close_all(r, status);
        return;
    }
    enum sl_relay_dir dir =
        req == &r->shutdown_req[SL_RELAY_UP] ? SL_RELAY_UP : SL_RELAY_DOWN;
    r->side[dir].finished = 1;
    check_finished(r);
}

static void on_read(uv_stream_t *src, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct wbuf *w = (struct wbuf *)(void *)req;
    struct sl_relay *r = w->relay;
    struct sl_relay_side *s = &r->side[w->dir];
    s->queued -= w->len;
    wbuf_put(r, w);
    if (r->closing)
        return;
    if (status < 0) {
        close_all(r, status);
        return;
    }
    if (s->paused && !s->eof && s->queued <= r->low_water) {
        int err = sl_xprt_read_start(s->src, on_alloc, on_read);
        if (err < 0) {
            close_all(r, err);
            return;
        }
        s->paused = 0;
    }
}

static int forward(struct sl_relay *r, struct sl_relay_side *s, size_t n)
{
    struct wbuf *w = side_wbuf(s);
    size_t done = 0;
    if (s->queued == 0) {
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        int rc = sl_xprt_try_write(s->dst, &b, 1);
        if (rc >= 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN)
            return rc;
        if (done == n)
            return 0;
    }
    /* The rest rides in this very buffer; the next read gets a new one. */
    s->buf = NULL;
    w->relay = r;
    w->dir = s == &r->side[SL_RELAY_UP] ? SL_RELAY_UP : SL_RELAY_DOWN;
    w->len = n - done;
    uv_buf_t b = uv_buf_init(w->data + done, (unsigned)(n - done));
    int err = sl_xprt_write(&w->u.req, s->dst, &b, 1, on_write);
    if (err < 0) {
        wbuf_put(r, w);
        return err;
    }
    s->queued += n - done;
    if (s->queued > r->high_water) {
        err = sl_xprt_read_stop(s->src);
        if (err < 0)
            return err;
        s->paused = 1;
    }
    return 0;
}

static void on_read(uv_stream_t *src, ssize_t nread, const uv_buf_t *buf)
{
    struct sl_relay *r = src->data;
    struct sl_relay_side *s = side_of(r, (uv_handle_t *)src);
    enum sl_relay_dir dir =
        s == &r->side[SL_RELAY_UP] ? SL_RELAY_UP : SL_RELAY_DOWN;
    (void)buf;

    if (r->closing) {
        release_buf(r, s);
        return;
    }
    if (nread > 0) {
        s->bytes += (uint64_t)nread;
        if (r->on_read != NULL) {
            r->chunk = buf->base;
            int rc = r->on_read(r, (size_t)nread, dir);
            r->chunk = NULL;
            if (rc != 0) {
                close_all(r, rc < 0 ? rc : SL_EDENIED);
                return;
            }
        }
        int err = forward(r, s, (size_t)nread);
        if (err < 0) {
            close_all(r, err);
            return;
        }
        /* libuv stops reading a socket after a short read (it assumes the
         * socket is drained), so a short read is our "nothing more" too:
         * give the buffer back and hold none while idle. */
        if ((size_t)nread < r->buf_size)
            release_buf(r, s);
        return;
    }
    release_buf(r, s);
    if (nread == 0)
        return; /* EAGAIN */
    if (nread == UV_EOF) {
        s->eof = 1;
        sl_xprt_read_stop(sl_xprt_of(src));
        /* libuv runs the shutdown after the writes queued before it. */
        uv_shutdown_t *req = &r->shutdown_req[dir];
        req->data = r;
        int err = sl_xprt_shutdown(req, s->dst, on_shutdown);
        if (err < 0)
            close_all(r, err);
        return;
    }
    close_all(r, (int)nread);
}

static void close_all(struct sl_relay *r, int reason)
{
    if (r->closing) {
        if (r->reason == 0)
            r->reason = reason;
        return;
    }
    r->closing = 1;
    r->reason = reason;
    for (int i = 0; i < 2; i++) {
        release_buf(r, &r->side[i]);
        if (!sl_xprt_is_closing(r->side[i].src))
            sl_xprt_close(r->side[i].src, on_handle_closed);
        else
            r->open_handles--; /* closed by someone else: not ours to count */
    }
    /* Both handles already closed before we started: finish now. */
    if (r->open_handles == 0)
        r->on_done(r, r->reason);
}

int sl_relay_start(struct sl_relay *r, struct sl_xprt *a, struct sl_xprt *b,
                   const struct sl_relay_opts *opts)
{
    memset(r->side, 0, sizeof(r->side));
    r->buf_size = opts && opts->buf_size ? opts->buf_size : SL_RELAY_BUF_SIZE;
    r->high_water =
        opts && opts->high_water ? opts->high_water : SL_RELAY_HIGH_WATER;
    r->low_water =
        opts && opts->low_water ? opts->low_water : SL_RELAY_LOW_WATER;
    if (r->low_water >= r->high_water)
        r->low_water = r->high_water / 2;
    r->pool = opts ? opts->pool : NULL;
    r->reason = 0;
    r->chunk = NULL;
    r->closing = 0;
    r->open_handles = 2;
    r->side[SL_RELAY_UP].src = a;
    r->side[SL_RELAY_UP].dst = b;
    r->side[SL_RELAY_DOWN].src = b;
    r->side[SL_RELAY_DOWN].dst = a;
    a->tcp.data = r;
    b->tcp.data = r;

    int err = sl_xprt_read_start(a, on_alloc, on_read);
    if (err == 0)
        err = sl_xprt_read_start(b, on_alloc, on_read);
    if (err < 0)
        close_all(r, err);
    return err;
}

void sl_relay_abort(struct sl_relay *r, int reason)
{
    close_all(r, reason);
}
