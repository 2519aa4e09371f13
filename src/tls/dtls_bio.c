#include "tls/dtls_bio.h"

#include <string.h>

#include <openssl/ssl.h>

static int bio_write(BIO *b, const char *data, int len)
{
    struct sl_dtls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (io == NULL || io->sock == NULL)
        return len; /* gone: as lost on the wire */
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    const struct sockaddr *to = io->peer.ss_family != 0
                                    ? (const struct sockaddr *)&io->peer
                                    : NULL;
    (void)uv_udp_try_send(io->sock, &buf, 1, to);
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    struct sl_dtls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (io == NULL || io->in == NULL) {
        BIO_set_retry_read(b);
        return -1;
    }
    /* One datagram per read, cut to the buffer as a socket would. */
    size_t n = io->in_len < (size_t)len ? io->in_len : (size_t)len;
    memcpy(out, io->in, n);
    io->in = NULL;
    io->in_len = 0;
    return (int)n;
}

static long peer_of(const struct sl_dtls_io *io, BIO_ADDR *out)
{
    if (io->peer.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)&io->peer;
        return BIO_ADDR_rawmake(out, AF_INET, &in->sin_addr, 4,
                                in->sin_port);
    }
    if (io->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)&io->peer;
        return BIO_ADDR_rawmake(out, AF_INET6, &in6->sin6_addr, 16,
                                in6->sin6_port);
    }
    return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct sl_dtls_io *io = BIO_get_data(b);
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return io != NULL && io->in != NULL ? (long)io->in_len : 0;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return SL_DTLS_MTU;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
        return io != NULL && io->peer.ss_family == AF_INET6 ? 48 : 28;
    case BIO_CTRL_DGRAM_GET_PEER:
        return io != NULL && ptr != NULL ? peer_of(io, ptr) : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Immutable once made and shared by every session of the process, as
 * OpenSSL's own methods are. */
static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (m == NULL) {
        BIO_METHOD *n = BIO_meth_new(
            BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice dtls");
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

BIO *sl_dtls_bio_new(struct sl_dtls_io *io)
{
    BIO_METHOD *m = bio_method();
    BIO *b = m != NULL ? BIO_new(m) : NULL;
    if (b != NULL)
        BIO_set_data(b, io);
    return b;
}

void sl_dtls_ssl_setup(SSL *ssl)
{
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(ssl, SL_DTLS_MTU - 28);
}
