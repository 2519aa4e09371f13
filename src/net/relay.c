#include "net/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    for (size_t i = 0; i < pool->npipes; i++) {
        close(pool->pipes[i].fd[0]);
        close(pool->pipes[i].fd[1]);
    }
    pool->npipes = 0;
    pool->pipes_low = 0;
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
    /* Pipes are taken from the end of the array: its first pipes_low
     * stayed unused since the last trim. */
    size_t idle = pool->pipes_low;
    for (size_t i = 0; i < idle; i++) {
        close(pool->pipes[i].fd[0]);
        close(pool->pipes[i].fd[1]);
    }
    memmove(pool->pipes, pool->pipes + idle,
            (pool->npipes - idle) * sizeof(pool->pipes[0]));
    pool->npipes -= idle;
    pool->pipes_low = pool->npipes;
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
    if (--r->open_handles == 0) {
        free(r->sp); /* after its poll handles' close callbacks */
        r->sp = NULL;
        r->on_done(r, r->reason);
    }
}

/* An error the relay found itself: the caller hears of it while the
 * sockets are still open. */
static void fail(struct sl_relay *r, int reason, struct sl_xprt *where)
{
    if (r->on_error != NULL && !r->closing)
        r->on_error(r, reason, where);
    close_all(r, reason);
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
    enum sl_relay_dir dir =
        req == &r->shutdown_req[SL_RELAY_UP] ? SL_RELAY_UP : SL_RELAY_DOWN;
    if (status < 0) {
        fail(r, status, r->side[dir].dst);
        return;
    }
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
        fail(r, status, s->dst);
        return;
    }
    if (s->paused && !s->eof && s->queued <= r->low_water) {
        s->paused = 0;
        if (!s->held) {
            int err = sl_xprt_read_start(s->src, on_alloc, on_read);
            if (err < 0) {
                fail(r, err, s->src);
                return;
            }
        }
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
            fail(r, err, s->dst);
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
            fail(r, err, s->dst);
        return;
    }
    fail(r, (int)nread, s->src);
}


/* ---- The zero-copy path ------------------------------------------------ */

/* What a pipe is asked to hold: a few socket reads, so a bulk transfer
 * takes few calls. The kernel may refuse (over pipe-max-size, or the
 * user's pipes over their page budget): then less, or its default. */
#define PIPE_WANT (1024 * 1024)
#define PIPE_FALLBACK (256 * 1024)
/* Rounds (a read and a write of up to buf_size) per direction per
 * wake-up: one busy relay does not keep the loop from the others (the
 * poll is level-triggered: what is left wakes it again). */
#define SPLICE_ROUNDS 16

struct sp_dir {
    struct sl_relay_pipe pipe; /* fd[0] -1: none held */
    size_t inpipe;             /* bytes in the pipe */
    unsigned want_out : 1;     /* bytes wait for dst to be writable */
};

struct sl_relay_splice {
    uv_poll_t poll[2]; /* [i] on side[i].src's socket */
    int fd[2];
    int events[2];     /* what poll[i] watches now */
    struct sp_dir dir[2]; /* [i] reads socket i, writes socket 1 - i */
};

static void pipe_close(struct sl_relay_pipe *p)
{
    if (p->fd[0] >= 0) {
        close(p->fd[0]);
        close(p->fd[1]);
    }
    p->fd[0] = p->fd[1] = -1;
}

static int pipe_get(struct sl_relay *r, struct sl_relay_pipe *p)
{
    struct sl_relay_pool *pool = r->pool;
    if (pool != NULL && pool->npipes > 0) {
        *p = pool->pipes[--pool->npipes];
        if (pool->npipes < pool->pipes_low)
            pool->pipes_low = pool->npipes;
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    int cap = fcntl(fds[1], F_SETPIPE_SZ, PIPE_WANT);
    if (cap < 0)
        cap = fcntl(fds[1], F_SETPIPE_SZ, PIPE_FALLBACK);
    if (cap < 0)
        cap = fcntl(fds[1], F_GETPIPE_SZ);
    p->fd[0] = fds[0];
    p->fd[1] = fds[1];
    p->cap = cap > 0 ? (size_t)cap : 65536;
    return 0;
}

/* An empty pipe goes back to the pool (or is closed): an idle direction
 * holds none. */
static void pipe_put(struct sl_relay *r, struct sl_relay_pipe *p)
{
    struct sl_relay_pool *pool = r->pool;
    if (p->fd[0] < 0)
        return;
    if (pool != NULL && pool->npipes < SL_RELAY_PIPES_MAX) {
        pool->pipes[pool->npipes++] = *p;
        p->fd[0] = p->fd[1] = -1;
        return;
    }
    pipe_close(p);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches each socket for what its two directions wait for. */
static int sp_watch(struct sl_relay *r)
{
    struct sl_relay_splice *sp = r->sp;
    for (int i = 0; i < 2; i++) {
        int ev = 0;
        /* A direction whose pipe waits for its destination reads no more:
         * the pipe is its whole buffer, as high water is the copy's. */
        if (!r->side[i].eof && !r->side[i].held && !sp->dir[i].want_out)
            ev |= UV_READABLE;
        if (sp->dir[1 - i].want_out)
            ev |= UV_WRITABLE;
        if (ev == sp->events[i])
            continue;
        int err = ev ? uv_poll_start(&sp->poll[i], ev, on_poll)
                     : uv_poll_stop(&sp->poll[i]);
        if (err < 0)
            return err;
        sp->events[i] = ev;
    }
    return 0;
}

/* n bytes of direction d reached its destination. */
static int sp_count(struct sl_relay *r, int d, size_t n)
{
    r->side[d].bytes += (uint64_t)n;
    if (r->on_read == NULL)
        return 0;
    int rc = r->on_read(r, n, (enum sl_relay_dir)d);
    return rc == 0 ? 0 : rc < 0 ? rc : SL_EDENIED;
}

/* Moves what it can in direction d, a bounded number of calls. Returns 0
 * or an error with *where the transport it came from. */
static int sp_pump(struct sl_relay *r, int d, struct sl_xprt **where)
{
    struct sl_relay_splice *sp = r->sp;
    struct sl_relay_side *s = &r->side[d];
    struct sp_dir *pd = &sp->dir[d];
    int src = sp->fd[d], dst = sp->fd[1 - d];
    pd->want_out = 0;
    for (int round = 0; round < SPLICE_ROUNDS; round++) {
        if (pd->inpipe > 0) {
            size_t len = pd->inpipe < r->buf_size ? pd->inpipe : r->buf_size;
            ssize_t n = splice(pd->pipe.fd[0], NULL, dst, NULL, len,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN) {
                *where = s->dst;
                return -errno;
            }
            if (n < 0) {
                pd->want_out = 1;
                break;
            }
            pd->inpipe -= (size_t)n;
            /* Counted as they leave: what a limit cuts off in the pipe
             * was never counted, and what was counted arrived. */
            int rc = sp_count(r, d, (size_t)n);
            if (rc != 0) {
                *where = NULL;
                return rc;
            }
            if (r->closing)
                return 0;
        }
        if (s->eof || s->held)
            break;
        if (pd->pipe.fd[0] < 0) {
            int err = pipe_get(r, &pd->pipe);
            if (err < 0) {
                *where = s->src;
                return err;
            }
        }
        /* A read buffer's worth at a time, as the copying path reads: a
         * count (a limit's) is never over by more. */
        ssize_t n = splice(src, NULL, pd->pipe.fd[1], NULL, r->buf_size,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN) {
            *where = s->src;
            return -errno;
        }
        if (n < 0) {
            /* The socket is drained, or the pipe full: what it holds goes
             * out first. */
            if (pd->inpipe == 0)
                break;
            continue;
        }
        if (n == 0) {
            s->eof = 1;
            continue; /* what the pipe holds goes out, then the FIN */
        }
        pd->inpipe += (size_t)n;
    }
    /* Rounds used up with bytes in the pipe: a writable destination wakes
     * us at once. */
    if (pd->inpipe > 0)
        pd->want_out = 1;
    else
        pipe_put(r, &pd->pipe);
    if (s->eof && pd->inpipe == 0 && !s->finished) {
        if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN) {
            *where = s->dst;
            return -errno;
        }
        s->finished = 1;
    }
    return 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sl_relay *r = h->data;
    struct sl_relay_splice *sp = r->sp;
    if (r->closing)
        return;
    int i = h == &sp->poll[0] ? 0 : 1;
    struct sl_xprt *where = r->side[i].src;
    if (status < 0) {
        /* An error condition (libuv says EBADF): what the peer sent before
         * it still goes on, as the copying path reads it first; the
         * reason is the socket's own error (a reset, mostly). */
        int err = r->side[i].eof ? 0 : sp_pump(r, i, &where);
        if (r->closing)
            return;
        if (err != 0) {
            if (where == NULL)
                close_all(r, err);
            else
                fail(r, err, where);
            return;
        }
        int e = 0;
        socklen_t len = sizeof(e);
        if (getsockopt(sp->fd[i], SOL_SOCKET, SO_ERROR, &e, &len) == 0 &&
            e != 0)
            status = -e;
        fail(r, status, where);
        return;
    }
    int err = 0;
    /* A hang-up comes with no event libuv names: trying both ways finds
     * the EOF or the error. */
    if ((events & UV_WRITABLE) || events == 0)
        err = sp_pump(r, 1 - i, &where);
    if (err == 0 && !r->closing && !r->side[i].eof &&
        ((events & UV_READABLE) || events == 0))
        err = sp_pump(r, i, &where);
    if (r->closing)
        return;
    if (err != 0) {
        if (where == NULL)
            close_all(r, err); /* on_read's word */
        else
            fail(r, err, where);
        return;
    }
    if (r->side[0].finished && r->side[1].finished) {
        close_all(r, 0);
        return;
    }
    err = sp_watch(r);
    if (err < 0)
        fail(r, err, r->side[i].src);
}

static int splice_off(void)
{
    const char *e = getenv("SLUICE_NO_SPLICE");
    return e != NULL && e[0] != '\0' && strcmp(e, "0") != 0;
}

/* Switches a starting relay to the zero-copy path. Returns 0, or an error
 * with nothing changed but r->sp (freed with the relay): the copying path
 * runs then. */
static int sp_start(struct sl_relay *r, struct sl_xprt *a, struct sl_xprt *b)
{
    uv_os_fd_t fa, fb;
    if (sl_xprt_is_tls(a) || sl_xprt_is_tls(b) || sl_xprt_is_virtual(a) ||
        sl_xprt_is_virtual(b) || splice_off())
        return UV_ENOTSUP;
    /* A write libuv still holds keeps its own watcher on the socket, and
     * the socket cannot have two. */
    if (sl_xprt_write_queue_size(a) != 0 || sl_xprt_write_queue_size(b) != 0)
        return UV_EBUSY;
    if (uv_fileno((uv_handle_t *)&a->tcp, &fa) != 0 ||
        uv_fileno((uv_handle_t *)&b->tcp, &fb) != 0)
        return UV_EBADF;
    struct sl_relay_splice *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return UV_ENOMEM;
    for (int i = 0; i < 2; i++)
        sp->dir[i].pipe.fd[0] = sp->dir[i].pipe.fd[1] = -1;
    sp->fd[0] = fa;
    sp->fd[1] = fb;
    uv_loop_t *loop = a->tcp.loop;
    int err = uv_poll_init(loop, &sp->poll[0], fa);
    if (err < 0) {
        free(sp);
        return err;
    }
    sp->poll[0].data = r;
    r->sp = sp;
    r->open_handles++;
    err = uv_poll_init(loop, &sp->poll[1], fb);
    if (err < 0) {
        uv_close((uv_handle_t *)&sp->poll[0], on_handle_closed);
        return err;
    }
    sp->poll[1].data = r;
    r->open_handles++;
    r->spliced = 1;
    err = sp_watch(r);
    if (err < 0)
        close_all(r, err);
    return 0;
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
    if (r->spliced) {
        /* The polls first: libuv's watcher on each socket is the one its
         * close takes down. */
        for (int i = 0; i < 2; i++) {
            pipe_close(&r->sp->dir[i].pipe);
            uv_close((uv_handle_t *)&r->sp->poll[i], on_handle_closed);
        }
    }
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
    r->sp = NULL;
    r->closing = 0;
    r->spliced = 0;
    r->open_handles = 2;
    r->side[SL_RELAY_UP].src = a;
    r->side[SL_RELAY_UP].dst = b;
    r->side[SL_RELAY_DOWN].src = b;
    r->side[SL_RELAY_DOWN].dst = a;
    a->tcp.data = r;
    b->tcp.data = r;

    if (opts != NULL && opts->splice && sp_start(r, a, b) == 0)
        return r->closing ? r->reason : 0;
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

void sl_relay_hold(struct sl_relay *r, enum sl_relay_dir dir, int on)
{
    struct sl_relay_side *s = &r->side[dir];
    if (r->closing || (unsigned)(on != 0) == s->held)
        return;
    s->held = on != 0;
    int err = 0;
    if (r->spliced) {
        err = sp_watch(r);
    } else if (!s->eof && !s->paused) {
        if (on) {
            err = sl_xprt_read_stop(s->src);
        } else {
            err = sl_xprt_read_start(s->src, on_alloc, on_read);
        }
    }
    if (err < 0)
        fail(r, err, s->src);
}
