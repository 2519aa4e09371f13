#include "net/xprt.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Ciphertext read from the socket in one go: a few TLS records. */
#define TLS_READ_SIZE (256 * 1024)
/* Plaintext asked of the caller's alloc callback per SSL_read. */
#define TLS_PLAIN_HINT (64 * 1024)
/* First size of a ciphertext chunk: one full record and its overhead. */
#define TLS_CHUNK_MIN (16 * 1024 + 256)
/* Plaintext per record at most, and a record's overhead as reckoned when
 * making room for a write's records (TLS 1.3 with AES-GCM: 22 bytes; more
 * is only reallocated). */
#define TLS_RECORD_MAX (16 * 1024)
#define TLS_RECORD_OVERHEAD 64
/* Records gathered before they go to the socket without waiting for the
 * end of the loop's turn, and chunks handed to one uv_try_write. */
#define TLS_GATHER_MAX (256 * 1024)
#define TLS_GATHER_CHUNKS 16

/* A caller's write, until the records carrying it are on the socket. */
struct tls_wr {
    struct tls_wr *next;
    uv_write_t *req;
    uv_write_cb cb;
    size_t len;    /* plaintext bytes, for the queue size */
    int status;
    unsigned nbufs;
    uv_buf_t bufs[]; /* the caller's array, copied */
};

/* Ciphertext handed (or to be handed) to the socket. */
struct tls_out {
    uv_write_t req;
    struct tls_out *next; /* in pend */
    struct sl_tls_conn *t;
    struct tls_wr *wrs; /* caller writes complete once this is written */
    struct tls_wr **wrs_tail;
    size_t len, cap;
    char data[];
};

struct sl_tls_conn {
    struct sl_xprt *x;
    SSL *ssl;
    uv_idle_t idle; /* runs deferred work from the loop, not from a call */
    sl_xprt_handshake_cb hs_cb;
    uv_alloc_cb alloc_cb;
    uv_read_cb read_cb;

    /* Ciphertext read and not yet taken by OpenSSL: in[in_off..in_len). */
    char *in;
    size_t in_off, in_len;

    struct tls_out *fill; /* records being gathered */
    struct tls_out *pend, **pend_tail; /* gathered, not handed over yet */
    size_t pend_len;
    struct tls_wr *wq, **wq_tail;     /* not yet encrypted */
    struct tls_wr *done, **done_tail; /* written; callbacks owed */
    size_t queued;                    /* plaintext not yet written */

    uv_shutdown_t *shut_req; /* the caller's, until its callback */
    uv_shutdown_cb shut_cb;
    uv_shutdown_t tcp_shut;
    uv_close_cb close_cb;

    int open_handles;
    int shut_status;           /* uv_shutdown's failure, owed */
    unsigned hs_done : 1;      /* handshake finished */
    unsigned hs_owed : 1;      /* hs_cb not called yet */
    unsigned reading : 1;      /* the caller wants reads */
    unsigned tcp_reading : 1;  /* uv_read_start is active on the socket */
    unsigned tcp_eof : 1;      /* the socket said EOF */
    unsigned eof_sent : 1;     /* EOF or an error went to the caller */
    unsigned shut_sent : 1;    /* close_notify and uv_shutdown issued */
    unsigned closing : 1;
    unsigned failed : 1;       /* a TLS error: no more SSL calls */
    unsigned shut_failed : 1;  /* shut_status owed to shut_cb */
    char why[200];
};

static size_t out_len(const struct sl_tls_conn *t);
static int bio_write(BIO *b, const char *data, int len);
static int bio_read(BIO *b, char *out, int len);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);
static int bio_create(BIO *b);

/* The BIO method is immutable once made and shared by every transport of
 * the process, as OpenSSL's own methods are. */
static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (m == NULL) {
        BIO_METHOD *n = BIO_meth_new(
            BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice transport");
        if (n == NULL || !BIO_meth_set_write(n, bio_write) ||
            !BIO_meth_set_read(n, bio_read) ||
            !BIO_meth_set_ctrl(n, bio_ctrl) ||
            !BIO_meth_set_create(n, bio_create)) {
            BIO_meth_free(n);
            return NULL;
        }
        m = n;
    }
    return m;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Makes room in the chunk being filled for `more` bytes of records. */
static int chunk_reserve(struct sl_tls_conn *t, size_t more)
{
    struct tls_out *o = t->fill;
    size_t need = (o ? o->len : 0) + more;
    if (o == NULL || need > o->cap) {
        size_t cap = o ? o->cap * 2 : TLS_CHUNK_MIN;
        while (cap < need)
            cap *= 2;
        struct tls_out *n = realloc(o, sizeof(*n) + cap);
        if (n == NULL)
            return -1;
        if (o == NULL) {
            memset(n, 0, sizeof(*n));
            n->t = t;
            n->wrs_tail = &n->wrs;
        } else if (n->wrs == NULL) {
            n->wrs_tail = &n->wrs;
        }
        n->cap = cap;
        t->fill = n;
    }
    return 0;
}

/* OpenSSL writes records: gather them into the chunk being filled. */
static int bio_write(BIO *b, const char *data, int len)
{
    struct sl_tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (chunk_reserve(t, (size_t)len) != 0)
        return -1;
    struct tls_out *o = t->fill;
    memcpy(o->data + o->len, data, (size_t)len);
    o->len += (size_t)len;
    return len;
}

/* OpenSSL wants ciphertext: what the socket gave, else "try again". */
static int bio_read(BIO *b, char *out, int len)
{
    struct sl_tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t have = t->in_len - t->in_off;
    if (have == 0) {
        if (t->tcp_eof)
            return 0;
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = have < (size_t)len ? have : (size_t)len;
    memcpy(out, t->in + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in_len) {
        free(t->in);
        t->in = NULL;
        t->in_off = t->in_len = 0;
    }
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct sl_tls_conn *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return t->tcp_eof && t->in_len == t->in_off;
    case BIO_CTRL_PENDING:
        return (long)(t->in_len - t->in_off);
    case BIO_CTRL_WPENDING:
        return (long)out_len(t);
    default:
        return 0;
    }
}

void sl_xprt_init(struct sl_xprt *x)
{
    memset(x, 0, sizeof(*x));
}

SSL *sl_xprt_ssl(const struct sl_xprt *x)
{
    return x->tls ? x->tls->ssl : NULL;
}

const char *sl_xprt_error(const struct sl_xprt *x)
{
    return x->tls ? x->tls->why : "";
}

static void note_error(struct sl_tls_conn *t, int ssl_err)
{
    unsigned long e = ERR_peek_last_error();
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(t->why, sizeof(t->why), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    } else if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        snprintf(t->why, sizeof(t->why), "%s", r ? r : "TLS error");
    } else if (ssl_err == SSL_ERROR_SYSCALL) {
        snprintf(t->why, sizeof(t->why), "connection closed during TLS");
    } else {
        snprintf(t->why, sizeof(t->why), "TLS error %d", ssl_err);
    }
    ERR_clear_error();
}

static void on_idle(uv_idle_t *h);

static void schedule(struct sl_tls_conn *t)
{
    if (!t->closing)
        uv_idle_start(&t->idle, on_idle);
}

/* OpenSSL's read and write buffers (some 17 KiB each) are kept while the
 * connection is busy and freed as soon as it is quiet: after the records
 * of a batch of writes are gathered, after the socket's bytes are all
 * decrypted and handed over, after the caller stops reading. With
 * SSL_MODE_RELEASE_BUFFERS OpenSSL would free and allocate them around
 * every 16 KiB record. Not while OpenSSL holds bytes of a record (part of
 * one, or one decrypted and not read yet): SSL_free_buffers would refuse,
 * or in older releases free what a record still points into. */
static void release_buffers(struct sl_tls_conn *t)
{
    if (!t->hs_done || t->closing || SSL_has_pending(t->ssl))
        return;
    (void)SSL_free_buffers(t->ssl);
}

/* ------------------------------------------------------------ writing */

static void on_chunk_written(uv_write_t *req, int status);

static void wrs_done(struct sl_tls_conn *t, struct tls_wr *list, int status)
{
    while (list != NULL) {
        struct tls_wr *w = list;
        list = w->next;
        w->next = NULL;
        w->status = status;
        *t->done_tail = w;
        t->done_tail = &w->next;
    }
}

/* Calls the callbacks of finished writes. Only from a loop callback. */
static void run_done(struct sl_tls_conn *t)
{
    while (t->done != NULL) {
        struct tls_wr *w = t->done;
        t->done = w->next;
        if (t->done == NULL)
            t->done_tail = &t->done;
        t->queued -= w->len;
        uv_write_t *req = w->req;
        uv_write_cb cb = w->cb;
        int status = w->status;
        free(w);
        if (cb != NULL)
            cb(req, status);
    }
}

static void out_done(struct sl_tls_conn *t, struct tls_out *o, int status)
{
    wrs_done(t, o->wrs, status);
    free(o);
    schedule(t);
}

/* Moves the records being gathered behind those waiting for the socket. */
static void out_queue(struct sl_tls_conn *t)
{
    struct tls_out *o = t->fill;
    if (o == NULL)
        return;
    if (o->len == 0) {
        /* Room reserved for a write that failed: nothing to carry. */
        if (o->wrs == NULL) {
            t->fill = NULL;
            free(o);
        }
        return;
    }
    t->fill = NULL;
    o->next = NULL;
    *t->pend_tail = o;
    t->pend_tail = &o->next;
    t->pend_len += o->len;
}

/* Records gathered and not handed to the socket yet. */
static size_t out_len(const struct sl_tls_conn *t)
{
    return t->pend_len + (t->fill ? t->fill->len : 0);
}

static struct tls_out *out_pop(struct sl_tls_conn *t)
{
    struct tls_out *o = t->pend;
    t->pend = o->next;
    if (t->pend == NULL)
        t->pend_tail = &t->pend;
    t->pend_len -= o->len;
    o->next = NULL;
    return o;
}

/* Sends the gathered records: as much as the socket takes now with one
 * uv_try_write, the rest with uv_write (each chunk's writes complete once
 * it is all out). now_only (closing): only what the socket takes now; the
 * rest stays, to be cancelled. */
static int flush_now(struct sl_tls_conn *t, int now_only)
{
    out_queue(t);
    if (t->pend == NULL)
        return 0;
    uv_stream_t *s = (uv_stream_t *)&t->x->tcp;
    size_t took = 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        uv_buf_t b[TLS_GATHER_CHUNKS];
        unsigned nb = 0;
        for (struct tls_out *o = t->pend; o != NULL && nb < TLS_GATHER_CHUNKS;
             o = o->next)
            b[nb++] = uv_buf_init(o->data, (unsigned)o->len);
        int n = uv_try_write(s, b, nb);
        if (n > 0) {
            took = (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            while (t->pend != NULL)
                out_done(t, out_pop(t), n);
            return n;
        }
    }
    int rc = 0;
    while (t->pend != NULL) {
        if (took < t->pend->len && now_only)
            break;
        struct tls_out *o = out_pop(t);
        if (took >= o->len) {
            took -= o->len;
            out_done(t, o, 0);
            continue;
        }
        uv_buf_t b = uv_buf_init(o->data + took, (unsigned)(o->len - took));
        took = 0;
        int e = uv_write(&o->req, s, &b, 1, on_chunk_written);
        if (e != 0) {
            out_done(t, o, e);
            rc = e;
        }
    }
    return rc;
}

static int flush_out(struct sl_tls_conn *t)
{
    return flush_now(t, 0);
}

static void on_chunk_written(uv_write_t *req, int status)
{
    struct tls_out *o = (struct tls_out *)req;
    struct sl_tls_conn *t = o->t;
    wrs_done(t, o->wrs, status);
    free(o);
    run_done(t);
}

static void try_shutdown(struct sl_tls_conn *t);

/* Encrypts the queued writes (once the handshake is done). */
static void pump_out(struct sl_tls_conn *t)
{
    if (!t->hs_done || t->closing)
        return;
    /* The error queue is empty after a successful SSL_write: clearing it
     * once per batch, not per call, is enough for SSL_get_error. */
    ERR_clear_error();
    while (t->wq != NULL) {
        struct tls_wr *w = t->wq;
        int rc = 0;
        if (t->failed)
            rc = UV_EPROTO;
        for (unsigned i = 0; rc == 0 && i < w->nbufs; i++) {
            size_t len = w->bufs[i].len;
            if (len == 0)
                continue;
            /* Room for all its records at once: growing the chunk record
             * by record would copy what it holds at each step. */
            (void)chunk_reserve(t, len + (len / TLS_RECORD_MAX + 1) *
                                             TLS_RECORD_OVERHEAD);
            int n = SSL_write(t->ssl, w->bufs[i].base, (int)len);
            if (n <= 0) {
                note_error(t, SSL_get_error(t->ssl, n));
                t->failed = 1;
                rc = UV_EPROTO;
            }
        }
        t->wq = w->next;
        if (t->wq == NULL)
            t->wq_tail = &t->wq;
        w->next = NULL;
        if (rc != 0) {
            wrs_done(t, w, rc);
            schedule(t);
            continue;
        }
        if (t->fill == NULL) {
            /* Nothing to carry it (an empty write): done at once. */
            wrs_done(t, w, 0);
            schedule(t);
            continue;
        }
        *t->fill->wrs_tail = w;
        t->fill->wrs_tail = &w->next;
    }
    /* The records wait for the end of the loop's turn (on_idle), so that
     * the writes of several reads (libuv reads a socket up to 32 times a
     * turn) go out with one syscall; a chunk under one record stays the
     * one being filled, so that small writes share it. */
    if (t->fill != NULL && t->fill->len >= TLS_RECORD_MAX)
        out_queue(t);
    if (out_len(t) >= TLS_GATHER_MAX)
        flush_out(t);
    else if (t->pend != NULL || t->fill != NULL)
        schedule(t);
    try_shutdown(t);
    release_buffers(t);
}

static void on_tcp_shutdown(uv_shutdown_t *req, int status)
{
    struct sl_tls_conn *t = req->data;
    uv_shutdown_t *ureq = t->shut_req;
    uv_shutdown_cb cb = t->shut_cb;
    t->shut_req = NULL;
    t->shut_cb = NULL;
    if (cb != NULL)
        cb(ureq, status);
}

/* After the caller's writes: close_notify, then the socket's write side. */
static void try_shutdown(struct sl_tls_conn *t)
{
    if (t->shut_req == NULL || t->shut_sent || t->wq != NULL || !t->hs_done)
        return;
    t->shut_sent = 1;
    if (!t->failed) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
        flush_out(t);
        release_buffers(t);
    }
    t->tcp_shut.data = t;
    int rc = uv_shutdown(&t->tcp_shut, (uv_stream_t *)&t->x->tcp,
                         on_tcp_shutdown);
    if (rc != 0) {
        /* Reported from the loop, as libuv reports its own. */
        t->shut_status = rc;
        t->shut_failed = 1;
        schedule(t);
    }
}

/* ------------------------------------------------------------ reading */

static void on_tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    char *p = malloc(TLS_READ_SIZE);
    *buf = uv_buf_init(p, p ? TLS_READ_SIZE : 0);
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void pump_in(struct sl_tls_conn *t);

static void tcp_read_start(struct sl_tls_conn *t)
{
    if (t->tcp_reading || t->tcp_eof || t->closing)
        return;
    if (uv_read_start((uv_stream_t *)&t->x->tcp, on_tcp_alloc,
                      on_tcp_read) == 0)
        t->tcp_reading = 1;
}

static void tcp_read_stop(struct sl_tls_conn *t)
{
    if (!t->tcp_reading)
        return;
    uv_read_stop((uv_stream_t *)&t->x->tcp);
    t->tcp_reading = 0;
}

static void handshake_over(struct sl_tls_conn *t, int status)
{
    t->hs_owed = 0;
    if (status == 0)
        t->hs_done = 1;
    if (!t->reading)
        tcp_read_stop(t);
    if (t->hs_cb != NULL)
        t->hs_cb(t->x, status);
    /* Records that came with the last handshake flight wait in `in`. */
    if (status == 0 && t->reading && !t->closing)
        schedule(t);
    if (status == 0)
        release_buffers(t);
}

static void do_handshake(struct sl_tls_conn *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ &&
        err != SSL_ERROR_WANT_WRITE)
        note_error(t, err);
    flush_out(t);
    if (t->closing)
        return;
    if (r == 1) {
        handshake_over(t, 0);
        if (!t->closing)
            pump_out(t);
        return;
    }
    if (err == SSL_ERROR_WANT_READ) {
        if (t->tcp_eof) {
            snprintf(t->why, sizeof(t->why), "connection closed during "
                     "the TLS handshake");
            t->failed = 1;
            handshake_over(t, UV_EOF);
        } else {
            tcp_read_start(t);
        }
        return;
    }
    t->failed = 1;
    tcp_read_stop(t);
    handshake_over(t, err == SSL_ERROR_SYSCALL && t->tcp_eof ? UV_EOF
                                                             : UV_EPROTO);
}

/* Hands plaintext to the caller while it reads and OpenSSL has some. */
static void deliver_some(struct sl_tls_conn *t)
{
    uv_stream_t *s = (uv_stream_t *)&t->x->tcp;
    while (t->reading && !t->closing && !t->eof_sent) {
        /* Nothing to decrypt: ask the caller for no buffer (an idle
         * connection holds none, as with a plain socket). */
        if (t->in == NULL && !SSL_has_pending(t->ssl) && !t->tcp_eof &&
            !t->failed) {
            tcp_read_start(t);
            return;
        }
        uv_buf_t b = uv_buf_init(NULL, 0);
        t->alloc_cb((uv_handle_t *)s, TLS_PLAIN_HINT, &b);
        if (b.base == NULL || b.len == 0) {
            t->eof_sent = 1;
            t->read_cb(s, UV_ENOBUFS, &b);
            return;
        }
        /* Fill the buffer (SSL_read gives one record at a time), so a
         * caller that takes a short read for "drained" is right. The
         * error queue is empty after a successful SSL_read: clearing it
         * once per buffer is enough for SSL_get_error. */
        size_t got = 0;
        int n = 0;
        size_t out_before = out_len(t);
        ERR_clear_error();
        while (got < b.len) {
            n = SSL_read(t->ssl, b.base + got, (int)(b.len - got));
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, n);
        if (out_len(t) != out_before)
            flush_out(t); /* a KeyUpdate or ticket answer */
        if (got > 0) {
            t->read_cb(s, (ssize_t)got, &b);
            /* OpenSSL asked for more than the socket gave: everything read
             * is decrypted (what is left of a record waits in OpenSSL), so
             * the socket is next, not another buffer of the caller's. */
            if (err == SSL_ERROR_WANT_READ && t->in == NULL) {
                if (t->reading && !t->closing && !t->eof_sent)
                    tcp_read_start(t);
                return;
            }
            continue;
        }
        if (err == SSL_ERROR_WANT_READ) {
            t->read_cb(s, 0, &b); /* the buffer goes back */
            if (t->reading && !t->closing)
                tcp_read_start(t);
            return;
        }
        t->eof_sent = 1;
        tcp_read_stop(t);
        if (err == SSL_ERROR_ZERO_RETURN ||
            (err == SSL_ERROR_SYSCALL && t->tcp_eof)) {
            ERR_clear_error();
            t->read_cb(s, UV_EOF, &b);
            return;
        }
        note_error(t, err);
        t->failed = 1;
        t->read_cb(s, UV_EPROTO, &b);
        return;
    }
}

static void deliver(struct sl_tls_conn *t)
{
    deliver_some(t);
    release_buffers(t);
}

static void pump_in(struct sl_tls_conn *t)
{
    if (t->closing)
        return;
    if (t->hs_owed) {
        do_handshake(t);
        return;
    }
    if (!t->hs_done || t->failed)
        return;
    deliver(t);
}

/* The caller stopped reading with part of a read left: a few bytes left
 * of a large block move to a block of their size, so that a paused
 * connection holds what it was sent, not a whole read's block. */
static void in_shrink(struct sl_tls_conn *t)
{
    size_t have = t->in_len - t->in_off;
    if (have > TLS_READ_SIZE / 4)
        return;
    char *n = malloc(have);
    if (n == NULL)
        return;
    memcpy(n, t->in + t->in_off, have);
    free(t->in);
    t->in = n;
    t->in_off = 0;
    t->in_len = have;
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sl_tls_conn *t = sl_xprt_of(s)->tls;
    if (nread <= 0) {
        free(buf->base);
        if (nread == 0)
            return;
        tcp_read_stop(t);
        if (nread == UV_EOF) {
            t->tcp_eof = 1;
            pump_in(t);
            return;
        }
        /* A socket error: the caller hears it as it would from libuv. */
        if (t->hs_owed) {
            snprintf(t->why, sizeof(t->why), "%s", uv_strerror((int)nread));
            t->failed = 1;
            handshake_over(t, (int)nread);
        } else if (t->reading && !t->eof_sent) {
            uv_buf_t b = uv_buf_init(NULL, 0);
            t->eof_sent = 1;
            t->read_cb(s, nread, &b);
        } else {
            t->failed = 1;
        }
        return;
    }
    /* OpenSSL takes all of what it is given only while somebody reads:
     * what is left waits in `in`, and the socket is not read meanwhile. */
    if (t->in == NULL) {
        t->in = buf->base;
        t->in_off = 0;
        t->in_len = (size_t)nread;
    } else {
        size_t have = t->in_len - t->in_off;
        char *n = malloc(have + (size_t)nread);
        if (n == NULL) {
            free(buf->base);
            tcp_read_stop(t);
            return;
        }
        memcpy(n, t->in + t->in_off, have);
        memcpy(n + have, buf->base, (size_t)nread);
        free(t->in);
        free(buf->base);
        t->in = n;
        t->in_off = 0;
        t->in_len = have + (size_t)nread;
    }
    pump_in(t);
    if (!t->closing && t->in != NULL && !t->hs_owed) {
        tcp_read_stop(t);
        in_shrink(t);
    }
}

static void on_idle(uv_idle_t *h)
{
    struct sl_tls_conn *t = h->data;
    uv_idle_stop(h);
    if (!t->closing)
        flush_out(t);
    run_done(t);
    if (t->closing)
        return;
    if (t->shut_failed) {
        t->shut_failed = 0;
        uv_shutdown_t *ureq = t->shut_req;
        uv_shutdown_cb cb = t->shut_cb;
        t->shut_req = NULL;
        t->shut_cb = NULL;
        if (cb != NULL)
            cb(ureq, t->shut_status);
        if (t->closing)
            return;
    }
    pump_in(t);
}

/* ------------------------------------------------------------ the calls */

int sl_xprt_tls_start(struct sl_xprt *x, SSL *ssl, const void *pre,
                      size_t pre_len, sl_xprt_handshake_cb cb)
{
    BIO_METHOD *m = bio_method();
    struct sl_tls_conn *t = calloc(1, sizeof(*t));
    BIO *bio = m ? BIO_new(m) : NULL;
    char *in = NULL;
    if (pre_len > 0 && (in = malloc(pre_len)) != NULL)
        memcpy(in, pre, pre_len);
    if (t == NULL || bio == NULL || (pre_len > 0 && in == NULL)) {
        free(t);
        BIO_free(bio);
        free(in);
        SSL_free(ssl);
        return UV_ENOMEM;
    }
    int rc = uv_idle_init(x->tcp.loop, &t->idle);
    if (rc != 0) {
        free(t);
        BIO_free(bio);
        free(in);
        SSL_free(ssl);
        return rc;
    }
    t->idle.data = t;
    t->x = x;
    t->ssl = ssl;
    t->hs_cb = cb;
    t->hs_owed = 1;
    t->wq_tail = &t->wq;
    t->done_tail = &t->done;
    t->pend_tail = &t->pend;
    t->open_handles = 1; /* the idle handle; the socket is the caller's */
    t->in = in;
    t->in_len = pre_len;
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio);
    /* OpenSSL's buffers are freed when the connection is quiet
     * (release_buffers), not around every record. No read ahead: with it
     * OpenSSL moves the part of the next record it took to the front of
     * its buffer at every record (a memmove of up to 16 KiB each), which
     * costs more than asking for a record's header and body apart. */
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    x->tls = t;
    /* The first flight (a client's hello, or a server's answer to the
     * bytes given) goes out from the loop. */
    schedule(t);
    return 0;
}

int sl_xprt_is_closing(const struct sl_xprt *x)
{
    if (x->ops != NULL)
        return x->ops->is_closing(x);
    return uv_is_closing((const uv_handle_t *)&x->tcp);
}

int sl_xprt_read_start(struct sl_xprt *x, uv_alloc_cb alloc_cb,
                       uv_read_cb read_cb)
{
    struct sl_tls_conn *t = x->tls;
    if (x->ops != NULL)
        return x->ops->read_start(x, alloc_cb, read_cb);
    if (t == NULL)
        return uv_read_start((uv_stream_t *)&x->tcp, alloc_cb, read_cb);
    if (t->closing)
        return UV_EINVAL;
    t->alloc_cb = alloc_cb;
    t->read_cb = read_cb;
    t->reading = 1;
    if (!t->hs_done || t->eof_sent)
        return 0;
    /* What OpenSSL or `in` still holds is delivered from the loop; the
     * socket is read once that is gone. */
    if (t->in != NULL || SSL_has_pending(t->ssl) || t->tcp_eof || t->failed)
        schedule(t);
    else
        tcp_read_start(t);
    return 0;
}

int sl_xprt_read_stop(struct sl_xprt *x)
{
    struct sl_tls_conn *t = x->tls;
    if (x->ops != NULL)
        return x->ops->read_stop(x);
    if (t == NULL)
        return uv_read_stop((uv_stream_t *)&x->tcp);
    t->reading = 0;
    if (!t->hs_owed)
        tcp_read_stop(t);
    return 0;
}

int sl_xprt_try_write(struct sl_xprt *x, const uv_buf_t bufs[],
                      unsigned nbufs)
{
    if (x->ops != NULL)
        return x->ops->try_write ? x->ops->try_write(x, bufs, nbufs)
                                 : UV_EAGAIN;
    if (x->tls == NULL)
        return uv_try_write((uv_stream_t *)&x->tcp, bufs, nbufs);
    return UV_EAGAIN;
}

int sl_xprt_write(uv_write_t *req, struct sl_xprt *x, const uv_buf_t bufs[],
                  unsigned nbufs, uv_write_cb cb)
{
    struct sl_tls_conn *t = x->tls;
    if (x->ops != NULL)
        return x->ops->write(req, x, bufs, nbufs, cb);
    if (t == NULL)
        return uv_write(req, (uv_stream_t *)&x->tcp, bufs, nbufs, cb);
    if (t->closing || t->shut_req != NULL || t->shut_sent)
        return UV_EPIPE;
    struct tls_wr *w = malloc(sizeof(*w) + nbufs * sizeof(uv_buf_t));
    if (w == NULL)
        return UV_ENOMEM;
    w->next = NULL;
    w->req = req;
    w->cb = cb;
    w->status = 0;
    w->nbufs = nbufs;
    w->len = 0;
    for (unsigned i = 0; i < nbufs; i++) {
        w->bufs[i] = bufs[i];
        w->len += bufs[i].len;
    }
    req->handle = (uv_stream_t *)&x->tcp;
    req->cb = cb;
    *t->wq_tail = w;
    t->wq_tail = &w->next;
    t->queued += w->len;
    pump_out(t);
    return 0;
}

int sl_xprt_shutdown(uv_shutdown_t *req, struct sl_xprt *x,
                     uv_shutdown_cb cb)
{
    struct sl_tls_conn *t = x->tls;
    if (x->ops != NULL)
        return x->ops->shutdown(req, x, cb);
    if (t == NULL)
        return uv_shutdown(req, (uv_stream_t *)&x->tcp, cb);
    if (t->closing || t->shut_req != NULL || t->shut_sent)
        return UV_EPIPE;
    if (!t->hs_done)
        return UV_ENOTCONN;
    req->handle = (uv_stream_t *)&x->tcp;
    req->cb = cb;
    t->shut_req = req;
    t->shut_cb = cb;
    try_shutdown(t);
    return 0;
}

size_t sl_xprt_write_queue_size(const struct sl_xprt *x)
{
    if (x->ops != NULL)
        return x->ops->write_queue_size(x);
    if (x->tls == NULL)
        return uv_stream_get_write_queue_size((const uv_stream_t *)&x->tcp);
    return x->tls->queued;
}

static void tls_free(struct sl_tls_conn *t)
{
    /* Writes never handed to the socket fail as libuv fails its own. */
    wrs_done(t, t->wq, UV_ECANCELED);
    t->wq = NULL;
    out_queue(t);
    while (t->pend != NULL) {
        struct tls_out *o = out_pop(t);
        wrs_done(t, o->wrs, UV_ECANCELED);
        free(o);
    }
    if (t->fill != NULL) { /* empty, with writes (not made so) */
        wrs_done(t, t->fill->wrs, UV_ECANCELED);
        free(t->fill);
        t->fill = NULL;
    }
    run_done(t);
    /* A handshake cut short is answered too, as libuv cancels its own. */
    if (t->hs_owed && t->hs_cb != NULL) {
        t->hs_owed = 0;
        t->hs_cb(t->x, UV_ECANCELED);
    }
    if (t->shut_req != NULL && (!t->shut_sent || t->shut_failed) &&
        t->shut_cb != NULL)
        t->shut_cb(t->shut_req, UV_ECANCELED);
    SSL_free(t->ssl);
    free(t->in);
    struct sl_xprt *x = t->x;
    uv_close_cb cb = t->close_cb;
    x->tls = NULL;
    free(t);
    if (cb != NULL)
        cb((uv_handle_t *)&x->tcp);
}

static void on_tls_handle_closed(uv_handle_t *h)
{
    struct sl_tls_conn *t;
    if (h->type == UV_IDLE)
        t = h->data;
    else
        t = sl_xprt_of((uv_stream_t *)h)->tls;
    if (--t->open_handles == 0)
        tls_free(t);
}

void sl_xprt_close(struct sl_xprt *x, uv_close_cb close_cb)
{
    struct sl_tls_conn *t = x->tls;
    if (x->ops != NULL) {
        x->ops->close(x, close_cb);
        return;
    }
    if (t == NULL) {
        uv_close((uv_handle_t *)&x->tcp, close_cb);
        return;
    }
    if (t->closing)
        return;
    /* Records gathered and not sent yet go as far as the socket takes
     * them now, as a plain socket's writes would have (libuv writes at
     * once); the rest is cancelled with the writes they carry. */
    if (!t->failed)
        (void)flush_now(t, 1);
    t->closing = 1;
    t->close_cb = close_cb;
    t->open_handles++;
    uv_close((uv_handle_t *)&x->tcp, on_tls_handle_closed);
    uv_close((uv_handle_t *)&t->idle, on_tls_handle_closed);
}
