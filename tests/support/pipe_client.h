/* The client end of a socketpair for tests and fuzz targets that drive a
 * server connection made by hand (fuzz/fuzz_api_router.c,
 * tests/unit/oom/test_oom_api.c): it sends its bytes, half-closes, and
 * reads until the server closes. */
#ifndef SL_TEST_PIPE_CLIENT_H
#define SL_TEST_PIPE_CLIENT_H

#include <stddef.h>

#include <uv.h>

struct sl_test_client {
    uv_pipe_t pipe;
    uv_write_t write;
    uv_shutdown_t shutdown;
    char *buf;     /* what the server sent; the caller frees it */
    size_t len, cap;
    size_t max;    /* buf grows up to this */
    int eof;       /* the server closed */
    int overflow;  /* it sent more than max */
};

/* Opens cl on fd (zeroing it first); buf grows up to max. A caller may
 * hand it a buffer of its own before sending (buf, cap = max). */
int sl_test_client_open(struct sl_test_client *cl, uv_loop_t *loop, int fd,
                        size_t max);

/* Writes data (nothing when len is 0), half-closes and starts reading;
 * the loop's run ends with the pipe closed: eof or overflow set. */
int sl_test_client_send(struct sl_test_client *cl, const char *data,
                        size_t len);

#endif
