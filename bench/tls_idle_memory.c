/* How much heap one idle server-side TLS connection holds in the OpenSSL
 * this machine has, apart from sluice: N handshakes (TLS 1.3, X25519,
 * the certificate and key given) over in-memory BIO pairs, a byte each
 * way, the client side freed, the server side kept with
 * SSL_MODE_RELEASE_BUFFERS and its BIO swapped for a null one. The heap
 * in use (glibc's mallinfo2) before and after, divided by N, is the floor
 * any server built on this OpenSSL pays per idle TLS connection.
 *
 *   bench/tls-idle-memory [N]      (builds and runs this file) */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ssl.h>

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static SSL *handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *sb = NULL, *cb = NULL;
    if (s == NULL || c == NULL || !BIO_new_bio_pair(&sb, 32768, &cb, 32768))
        return NULL;
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 20 && !(SSL_is_init_finished(s) &&
                                SSL_is_init_finished(c)); i++) {
        (void)SSL_do_handshake(c);
        (void)SSL_do_handshake(s);
    }
    char b[16];
    if (SSL_write(c, "x", 1) != 1 || SSL_read(s, b, sizeof(b)) != 1 ||
        SSL_write(s, "y", 1) != 1 || SSL_read(c, b, sizeof(b)) != 1) {
        SSL_free(s);
        SSL_free(c);
        return NULL;
    }
    SSL_free(c);
    BIO *null = BIO_new(BIO_s_null());
    SSL_set_bio(s, null, null); /* the pair's buffers go */
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tls_idle_memory CERT KEY [N]\n");
        return 2;
    }
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 2000;
    if (n < 1 || n > 1000000)
        n = 2000;
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (sctx == NULL || cctx == NULL ||
        SSL_CTX_use_certificate_chain_file(sctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "tls_idle_memory: cannot load %s / %s\n", argv[1],
                argv[2]);
        return 1;
    }
    SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sctx, 1);
    SSL **kept = calloc((size_t)n, sizeof(*kept));
    if (kept == NULL)
        return 1;
    for (int i = 0; i < 50; i++) /* warm up: lazy tables, the CTX's own */
        SSL_free(handshake(sctx, cctx));
    size_t before = heap_in_use();
    for (long i = 0; i < n; i++)
        if ((kept[i] = handshake(sctx, cctx)) == NULL) {
            fprintf(stderr, "tls_idle_memory: handshake %ld failed\n", i);
            return 1;
        }
    size_t after = heap_in_use();
    printf("%s: %.2f KiB of heap per idle server TLS connection "
           "(%ld connections)\n", OpenSSL_version(OPENSSL_VERSION),
           (double)(after - before) / 1024.0 / (double)n, n);
    for (long i = 0; i < n; i++)
        SSL_free(kept[i]);
    free(kept);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return 0;
}
