#include "pipe_client.h"

#include <stdlib.h>
#include <string.h>

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct sl_test_client *cl = h->data;
    (void)hint;
    if (cl->cap - cl->len < 4096 && cl->cap < cl->max) {
        size_t ncap = cl->cap ? cl->cap * 2 : 16384;
        char *p = realloc(cl->buf, ncap);
        if (p != NULL) {
            cl->buf = p;
            cl->cap = ncap;
        }
    }
    if (cl->buf == NULL || cl->cap == cl->len) {
        *b = uv_buf_init(NULL, 0);
        return;
    }
    *b = uv_buf_init(cl->buf + cl->len, (unsigned)(cl->cap - cl->len));
}

static void client_closed(uv_handle_t *h)
{
    (void)h;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct sl_test_client *cl = s->data;
    (void)b;
    if (n > 0) {
        cl->len += (size_t)n;
        return;
    }
    if (n == 0)
        return;
    if (n == UV_ENOBUFS)
        cl->overflow = 1;
    else
        cl->eof = 1;
    uv_close((uv_handle_t *)&cl->pipe, client_closed);
}

static void client_wrote(uv_write_t *w, int status)
{
    (void)w;
    (void)status; /* the server may close before reading everything */
}

static void client_shut(uv_shutdown_t *sh, int status)
{
    (void)sh;
    (void)status;
}

int sl_test_client_open(struct sl_test_client *cl, uv_loop_t *loop, int fd,
                        size_t max)
{
    memset(cl, 0, sizeof(*cl));
    cl->max = max;
    if (uv_pipe_init(loop, &cl->pipe, 0) != 0 ||
        uv_pipe_open(&cl->pipe, fd) != 0)
        return -1;
    cl->pipe.data = cl;
    return 0;
}

int sl_test_client_send(struct sl_test_client *cl, const char *data,
                        size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (len > 0 &&
        uv_write(&cl->write, (uv_stream_t *)&cl->pipe, &b, 1, client_wrote))
        return -1;
    if (uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->pipe, client_shut))
        return -1;
    if (uv_read_start((uv_stream_t *)&cl->pipe, client_alloc, client_read))
        return -1;
    return 0;
}
