/* A BIO that carries DTLS over a libuv UDP socket, for both ends of the
 * agent port's DTLS (node/node_dtls.c serves, stream/agent_client.c
 * dials). libuv owns the socket, so OpenSSL never touches it: the owner
 * hands OpenSSL each datagram it receives (io->in), which one BIO_read
 * takes whole, and each BIO_write OpenSSL makes (a flight of handshake
 * records, or one record of payload) goes out as one datagram with
 * uv_udp_try_send. A datagram the socket cannot take at once is lost, as
 * it may be on the wire: DTLS retransmits its handshake, and payload is
 * datagrams anyway.
 *
 * The BIO answers OpenSSL's datagram questions: the MTU (SL_DTLS_MTU, so
 * handshake records are cut to fit common paths), the overhead of the
 * IP and UDP headers, and the peer's address (for DTLSv1_listen). */
#ifndef SL_TLS_DTLS_BIO_H
#define SL_TLS_DTLS_BIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <uv.h>

#define SL_DTLS_MTU 1400        /* link MTU the handshake is cut for */
#define SL_DTLS_RECORD_MAX 16384 /* plaintext a record carries at most */

struct sl_dtls_io {
    uv_udp_t *sock;  /* NULL: writes are dropped (a closing session) */
    /* Where writes go: a peer of an unconnected socket, or family 0 for
     * a connected one. Also what BIO_dgram_get_peer answers. */
    struct sockaddr_storage peer;
    const uint8_t *in; /* the datagram OpenSSL may read now, or NULL */
    size_t in_len;
};

/* A new BIO reading and writing through io (borrowed: it must outlive
 * the BIO's use, or be detached with BIO_set_data(bio, NULL)). Hand it
 * to SSL_set_bio as both rbio and wbio. NULL when out of memory. */
BIO *sl_dtls_bio_new(struct sl_dtls_io *io);

/* What DTLS needs on an SSL using this BIO: the MTU set by us, not
 * queried from a socket OpenSSL does not have. */
void sl_dtls_ssl_setup(SSL *ssl);

#endif
