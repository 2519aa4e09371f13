/* The agent port's UDP side: DTLS 1.2 on the TCP listener's port number.
 *
 * One UDP socket serves every peer. A datagram from an address without a
 * session goes through DTLSv1_listen on a spare SSL object: a ClientHello
 * without a valid cookie is answered with a HelloVerifyRequest (a cookie
 * that is an HMAC of the source address) and nothing is kept, so a
 * spoofed source costs us no state and its victim gets a smaller answer
 * than the question (no amplification). A verified ClientHello becomes a
 * session: the handshake (client certificate required), then the stream
 * header in the first record, the one-byte status record, then one
 * datagram per record both ways between the session and a connected UDP
 * socket to the target.
 *
 * OpenSSL reads and writes through a BIO of ours: it reads the datagram
 * being handled, whole, and each write it makes is sent as one datagram
 * to the session's peer. Retransmissions of the handshake run on a timer
 * per session (DTLSv1_get_timeout); sessions idle for the agent's UDP
 * idle time (5 min), and those without a header 10 s after they began,
 * are swept once a second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "core/error.h"
#include "net/addr.h"
#include "node/node_agent.h"
#include "proto/agent_header.h"
#include "tls/dtls_bio.h"

#define RECV_BUF (64 * 1024)
#define TABLE_SIZE 1024        /* buckets; sessions chain */
#define SESSIONS_MAX 16384     /* at once, all peers */
#define HANDSHAKES_MAX 1024    /* sessions still in their handshake */
#define RECORD_MAX SL_DTLS_RECORD_MAX
#define COOKIE_LEN 16
#define SWEEP_MS 1000

#define container_of(p, type, member)                                          \
    ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* What a session's (or the listener's) BIO reads from and writes to,
 * and the cookie callbacks' way back to the server. */
struct dtls_io {
    struct sl_dtls_io io; /* the BIO's data */
    struct node_dtls *d;
};

enum sphase { S_HANDSHAKE, S_HEADER, S_RESOLVE, S_RELAY, S_CLOSING };

struct sess {
    struct sl_link link;
    struct sess *hnext;
    struct node_dtls *d;
    struct dtls_io io;
    SSL *ssl;
    enum sphase phase;
    unsigned long id;
    int refs; /* timer, up socket, resolver, and one until closing */
    uv_timer_t timer; /* DTLS retransmissions */
    uv_udp_t up;
    unsigned up_open : 1;
    unsigned resolving : 1;
    unsigned failed : 1;      /* no more SSL calls that write */
    unsigned handshaking : 1; /* counted in nhandshakes */
    struct sl_agent_dial dial;
    uint8_t hdr[SL_AGENT_HDR_LEN]; /* the header, to spot its resends */
    struct sl_agent_hdr req;
    uint8_t status;
    struct sl_agent_peer *peer; /* counted in its sessions, or NULL */
    uint64_t started_ms, last_ms;
    uint64_t dgrams_in, dgrams_out, dropped;
    struct sockaddr_storage client_sa; /* the peer, IPv4 unmapped */
    char client[SL_ADDR_STRLEN];
    char target[SL_AGENT_HOST_MAX + 16];
};

struct node_dtls {
    struct sl_node_agent *agent;
    uv_loop_t *loop;
    struct sl_log *log;
    SSL_CTX *ctx;
    uv_udp_t sock;
    uv_timer_t sweep;
    uint8_t secret[32]; /* the cookies' HMAC key */
    char *rbuf;
    uint8_t *pbuf; /* plaintext of one record */
    struct dtls_io listen_io;
    SSL *listen_ssl;
    struct sess *table[TABLE_SIZE];
    struct sl_link sessions;
    size_t nsessions, nhandshakes;
    unsigned long next_id;
    int open; /* sock, sweep, sessions */
    int stopping;
    void (*done)(void *);
    void *done_arg;
};

static void sess_close(struct sess *s, const char *why);
static void dtls_unref(struct node_dtls *d);

/* ------------------------------------------------------------ cookies */

static int cookie_of(const struct dtls_io *io, unsigned char *out)
{
    uint8_t msg[1 + 16 + 2];
    size_t n = 0;
    const struct sockaddr *sa = (const struct sockaddr *)&io->io.peer;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        msg[n++] = 4;
        memcpy(msg + n, &in->sin_addr, 4);
        n += 4;
        memcpy(msg + n, &in->sin_port, 2);
        n += 2;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        msg[n++] = 6;
        memcpy(msg + n, &in6->sin6_addr, 16);
        n += 16;
        memcpy(msg + n, &in6->sin6_port, 2);
        n += 2;
    } else {
        return 0;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    if (HMAC(EVP_sha256(), io->d->secret, sizeof(io->d->secret), msg, n, mac,
             &mlen) == NULL ||
        mlen < COOKIE_LEN)
        return 0;
    memcpy(out, mac, COOKIE_LEN);
    return 1;
}

static int on_cookie_generate(SSL *ssl, unsigned char *cookie,
                              unsigned int *len)
{
    struct dtls_io *io = SSL_get_app_data(ssl);
    if (io == NULL || !cookie_of(io, cookie))
        return 0;
    *len = COOKIE_LEN;
    return 1;
}

static int on_cookie_verify(SSL *ssl, const unsigned char *cookie,
                            unsigned int len)
{
    struct dtls_io *io = SSL_get_app_data(ssl);
    unsigned char want[COOKIE_LEN];
    return io != NULL && len == COOKIE_LEN && cookie_of(io, want) &&
           CRYPTO_memcmp(want, cookie, COOKIE_LEN) == 0;
}

/* An SSL wired to io through a BIO of ours, or NULL. */
static SSL *ssl_for(struct node_dtls *d, struct dtls_io *io)
{
    SSL *ssl = SSL_new(d->ctx);
    BIO *bio = ssl != NULL ? sl_dtls_bio_new(&io->io) : NULL;
    if (bio == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_app_data(ssl, io);
    sl_dtls_ssl_setup(ssl);
    SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE);
    SSL_set_accept_state(ssl);
    return ssl;
}

/* ------------------------------------------------------------ sessions */

static size_t bucket(const struct sockaddr *sa)
{
    return (size_t)(sl_addr_hash(sa) & (TABLE_SIZE - 1));
}

static struct sess *find(struct node_dtls *d, const struct sockaddr *sa)
{
    for (struct sess *s = d->table[bucket(sa)]; s != NULL; s = s->hnext)
        if (sl_addr_equal((struct sockaddr *)&s->io.io.peer, sa))
            return s;
    return NULL;
}

static void unhash(struct sess *s)
{
    struct sess **pp = &s->d->table[bucket((struct sockaddr *)&s->io.io.peer)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            s->hnext = NULL;
            return;
        }
    }
}

static void sess_free(struct sess *s)
{
    struct node_dtls *d = s->d;
    if (s->handshaking)
        d->nhandshakes--;
    if (s->peer != NULL) {
        s->peer->sessions--;
        sl_agent_peer_release(d->agent, s->peer);
    }
    SSL_free(s->ssl);
    free(s);
    dtls_unref(d);
}

static void sess_unref(struct sess *s)
{
    if (--s->refs == 0)
        sess_free(s);
}

static void on_sess_handle_closed(uv_handle_t *h)
{
    sess_unref(h->data);
}

static void sess_event(struct sess *s, enum sl_log_level level,
                       const char *event, const char *reason,
                       const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void sess_event(struct sess *s, enum sl_log_level level,
                       const char *event, const char *reason,
                       const char *fmt, ...)
{
    if (!sl_log_on(s->d->log, level))
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sl_log_field f[] = {
        SL_LOG_STR("route", "agent"),
        SL_LOG_STR("kind", "udp"),
        SL_LOG_NUM("conn", s->id),
        SL_LOG_STR("client", s->client),
        SL_LOG_STR("target", s->target[0] ? s->target : NULL),
        SL_LOG_STR("event", event),
        SL_LOG_STR("reason", reason),
    };
    sl_log_event(s->d->log, level, f, 7, "%s", msg);
}

static void sess_close(struct sess *s, const char *why)
{
    if (s->phase == S_CLOSING)
        return;
    int was_relaying = s->phase == S_RELAY;
    s->phase = S_CLOSING;
    if (was_relaying)
        sess_event(s, SL_LOG_DEBUG, "closed", why,
                   "agent: udp session #%lu from %s to %s closed (%s; in "
                   "%llu datagrams, out %llu, dropped %llu)",
                   s->id, s->client, s->target, why,
                   (unsigned long long)s->dgrams_in,
                   (unsigned long long)s->dgrams_out,
                   (unsigned long long)s->dropped);
    /* close_notify: the other end hears the session is over. */
    if (!s->failed && SSL_is_init_finished(s->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl);
    }
    ERR_clear_error();
    BIO_set_data(SSL_get_rbio(s->ssl), NULL); /* no write after this */
    unhash(s);
    sl_list_del(&s->link);
    s->d->nsessions--;
    if (s->resolving)
        sl_agent_dial_cancel(&s->dial);
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, on_sess_handle_closed);
    if (s->up_open) {
        s->up_open = 0;
        uv_close((uv_handle_t *)&s->up, on_sess_handle_closed);
    }
    sess_unref(s); /* its own reference */
}

static void arm_timer(struct sess *s);

static void on_retransmit(uv_timer_t *t)
{
    struct sess *s = t->data;
    if (s->phase == S_CLOSING || s->failed)
        return;
    ERR_clear_error();
    if (DTLSv1_handle_timeout(s->ssl) < 0) {
        s->failed = 1;
        sess_close(s, "handshake gave up");
        return;
    }
    arm_timer(s);
}

static void arm_timer(struct sess *s)
{
    struct timeval tv;
    if (DTLSv1_get_timeout(s->ssl, &tv)) {
        uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
        uv_timer_start(&s->timer, on_retransmit, ms ? ms : 1, 0);
    } else {
        uv_timer_stop(&s->timer);
    }
}

/* Sends one record. Returns 0, or -1 when the session failed. */
static int send_record(struct sess *s, const void *data, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(s->ssl, data, (int)len);
    if (n <= 0) {
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 0; /* dropped, as a datagram may be */
        s->failed = 1;
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static void answer(struct sess *s, uint8_t status, const char *why)
{
    struct sl_node_agent *a = s->d->agent;
    int probe = (s->req.flags & SL_AGENT_FLAG_PROBE) != 0;
    (void)a;
    s->status = status;
    if (status == SL_AGENT_OK)
        sess_event(s, SL_LOG_DEBUG, probe ? "probe" : "connected", NULL,
                   "agent: udp %s #%lu from %s%s%s: ok",
                   probe ? "probe" : "session", s->id, s->client,
                   s->target[0] ? " to " : "", s->target);
    else
        sess_event(s, SL_LOG_INFO, "refused", sl_agent_status_name(status),
                   "agent: udp %s #%lu from %s%s%s refused: %s (%s)",
                   probe ? "probe" : "session", s->id, s->client,
                   s->target[0] ? " to " : "", s->target,
                   sl_agent_status_name(status), why);
    if (send_record(s, &s->status, 1) != 0) {
        sess_close(s, "DTLS write failed");
        return;
    }
    if (status != SL_AGENT_OK || probe) {
        sess_close(s, status == SL_AGENT_OK ? "probe answered"
                                            : sl_agent_status_name(status));
        return;
    }
    s->phase = S_RELAY;
    s->last_ms = uv_now(s->d->loop);
}

/* ---- the target ------------------------------------------------------- */

static void on_up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sess *s = h->data;
    (void)hint;
    *buf = uv_buf_init(s->d->rbuf, RECV_BUF);
}

static void on_up_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
                       const struct sockaddr *addr, unsigned flags)
{
    struct sess *s = h->data;
    if (s->phase != S_RELAY || (n == 0 && addr == NULL))
        return;
    if (n < 0) {
        /* An ICMP error on a connected socket: the session stays, as a
         * client may retry once the service is up. */
        return;
    }
    if ((flags & UV_UDP_PARTIAL) || (size_t)n > RECORD_MAX) {
        s->dropped++;
        return;
    }
    s->last_ms = uv_now(s->d->loop);
    if (send_record(s, buf->base, (size_t)n) != 0) {
        sess_close(s, "DTLS write failed");
        return;
    }
    s->dgrams_out++;
}

static void connect_target(struct sess *s)
{
    struct node_dtls *d = s->d;
    /* A UDP target cannot say an address is dead: IPv4 first, as the
     * stream routes do, since services on "localhost" mostly are. */
    const struct sockaddr *pick = NULL;
    for (size_t i = 0; i < s->dial.n; i++) {
        const struct sockaddr *sa = (struct sockaddr *)&s->dial.addr[i];
        if (pick == NULL ||
            (sa->sa_family == AF_INET && pick->sa_family != AF_INET))
            pick = sa;
    }
    int rc = uv_udp_init(d->loop, &s->up);
    if (rc == 0) {
        s->up.data = s;
        s->up_open = 1;
        s->refs++;
        rc = uv_udp_connect(&s->up, pick);
        if (rc == 0)
            rc = uv_udp_recv_start(&s->up, on_up_alloc, on_up_recv);
    }
    if (rc != 0) {
        answer(s, SL_AGENT_DIAL_FAILED, sl_strerror(rc));
        return;
    }
    answer(s, SL_AGENT_OK, "");
}

static void after_resolve(struct sess *s, int status)
{
    if (status != SL_AGENT_OK) {
        answer(s, (uint8_t)status,
               status == SL_AGENT_REFUSED
                   ? "not a private address nor one --agent-allow names"
                   : "cannot resolve the target");
        return;
    }
    connect_target(s);
}

static void on_resolved(struct sl_agent_dial *dial, int status)
{
    struct sess *s = container_of(dial, struct sess, dial);
    s->resolving = 0;
    if (s->phase != S_RESOLVE) {
        sess_unref(s);
        return;
    }
    s->refs--;
    after_resolve(s, status);
}

static void on_header(struct sess *s, const uint8_t *p, size_t n)
{
    struct sl_node_agent *a = s->d->agent;
    const char *why = "";
    if (sl_agent_hdr_decode(p, n, &s->req, &why) != 0 ||
        n != SL_AGENT_HDR_LEN) {
        if (n != SL_AGENT_HDR_LEN)
            why = "first record is not a 272-byte header";
        memset(&s->req, 0, sizeof(s->req));
        answer(s, SL_AGENT_BAD_HEADER, why);
        return;
    }
    memcpy(s->hdr, p, SL_AGENT_HDR_LEN);
    if (s->req.host[0] != '\0')
        sl_addr_join_host_port(s->req.host, s->req.port, s->target,
                               sizeof(s->target));
    if (s->req.proto != SL_AGENT_PROTO_UDP) {
        answer(s, SL_AGENT_BAD_HEADER, "a tcp header over DTLS");
        return;
    }
    int probe = (s->req.flags & SL_AGENT_FLAG_PROBE) != 0;
    if (probe && s->req.host[0] == '\0') {
        answer(s, SL_AGENT_OK, "");
        return;
    }
    if (!probe) {
        struct sl_agent_peer *who = sl_agent_peer_of(a, s->ssl);
        if (who == NULL || who->sessions >= sl_agent_max_sessions(a)) {
            if (who != NULL)
                sl_agent_peer_release(a, who);
            answer(s, SL_AGENT_BUSY, "sessions per client certificate");
            return;
        }
        who->sessions++;
        s->peer = who;
    }
    s->phase = S_RESOLVE;
    s->dial.agent = a;
    s->dial.cb = on_resolved;
    int rc = sl_agent_dial_resolve(&s->dial, s->req.host, s->req.port,
                                   SOCK_DGRAM);
    if (rc == 0) {
        after_resolve(s, s->dial.status);
    } else if (rc == 1) {
        s->resolving = 1;
        s->refs++;
    } else {
        answer(s, SL_AGENT_DIAL_FAILED, sl_strerror(rc));
    }
}

/* ---- records from the client ------------------------------------------ */

static void on_record(struct sess *s, const uint8_t *p, size_t n)
{
    switch (s->phase) {
    case S_HEADER:
        on_header(s, p, n);
        return;
    case S_RESOLVE:
        return; /* a resend of the header, or early payload: dropped */
    case S_RELAY:
        s->last_ms = uv_now(s->d->loop);
        if (n == SL_AGENT_HDR_LEN && memcmp(p, s->hdr, n) == 0) {
            /* The client lost our status and sent its header again. */
            if (send_record(s, &s->status, 1) != 0)
                sess_close(s, "DTLS write failed");
            return;
        }
        {
            uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
            if (uv_udp_try_send(&s->up, &b, 1, NULL) < 0) {
                s->dropped++;
                return;
            }
        }
        s->dgrams_in++;
        return;
    default:
        return;
    }
}

static void handshake_failed(struct sess *s, int err)
{
    struct node_dtls *d = s->d;
    char why[200];
    long v = SSL_get_verify_result(s->ssl);
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (v != X509_V_OK)
        snprintf(why, sizeof(why), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (r != NULL)
        snprintf(why, sizeof(why), "%s", r);
    else
        snprintf(why, sizeof(why), "TLS error %d", err);
    ERR_clear_error();
    uint64_t missed = 0;
    if (sl_agent_fail_should_log(d->agent, (struct sockaddr *)&s->client_sa,
                                 &missed))
        sess_event(s, SL_LOG_WARN, "refused", "dtls handshake",
                   "agent: DTLS handshake from %s failed: %s (refused; %llu "
                   "more failure(s) from there since the last such line)",
                   s->client, why, (unsigned long long)missed);
    s->failed = 1;
    sess_close(s, "handshake failed");
}

/* Hands OpenSSL the datagram in io and does what it allows. */
static void sess_input(struct sess *s)
{
    struct node_dtls *d = s->d;
    if (s->phase == S_HANDSHAKE) {
        ERR_clear_error();
        int r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                arm_timer(s);
                return;
            }
            handshake_failed(s, e);
            return;
        }
        uv_timer_stop(&s->timer);
        s->handshaking = 0;
        d->nhandshakes--;
        s->phase = S_HEADER;
        s->started_ms = uv_now(d->loop); /* the header's 10 s start now */
    }
    for (int k = 0; k < 64 && s->phase != S_CLOSING; k++) {
        ERR_clear_error();
        int n = SSL_read(s->ssl, d->pbuf, RECORD_MAX);
        if (n > 0) {
            on_record(s, d->pbuf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e != SSL_ERROR_ZERO_RETURN)
            s->failed = 1;
        ERR_clear_error();
        sess_close(s, e == SSL_ERROR_ZERO_RETURN ? "closed by the client"
                                                 : "DTLS error");
        break;
    }
    /* A lost flight of ours is resent on the client's resend. */
    if (s->phase != S_CLOSING && !SSL_is_init_finished(s->ssl))
        arm_timer(s);
}

static struct sess *sess_new(struct node_dtls *d, const struct sockaddr *sa,
                             SSL *ssl)
{
    struct sess *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->d = d;
    s->id = ++d->next_id;
    s->io.d = d;
    s->io.io.sock = &d->sock;
    memcpy(&s->io.io.peer, sa, sl_addr_len(sa));
    s->ssl = ssl;
    BIO_set_data(SSL_get_rbio(ssl), &s->io.io);
    SSL_set_app_data(ssl, &s->io);
    s->phase = S_HANDSHAKE;
    s->handshaking = 1;
    d->nhandshakes++;
    s->started_ms = s->last_ms = uv_now(d->loop);
    struct sockaddr_storage v4;
    const struct sockaddr *shown = sl_addr_unmap(sa, &v4)
                                       ? (const struct sockaddr *)&v4
                                       : sa;
    memcpy(&s->client_sa, shown, sl_addr_len(shown));
    sl_addr_str(shown, s->client);
    uv_timer_init(d->loop, &s->timer);
    s->timer.data = s;
    s->refs = 2; /* timer and itself */
    sl_list_add(&d->sessions, &s->link);
    size_t b = bucket(sa);
    s->hnext = d->table[b];
    d->table[b] = s;
    d->nsessions++;
    d->open++;
    return s;
}

/* A datagram from an address without a session: the stateless cookie
 * exchange first. */
static void listen_input(struct node_dtls *d, const struct sockaddr *sa,
                         const uint8_t *p, size_t n)
{
    if (d->nsessions >= SESSIONS_MAX || d->nhandshakes >= HANDSHAKES_MAX)
        return;
    if (d->listen_ssl == NULL &&
        (d->listen_ssl = ssl_for(d, &d->listen_io)) == NULL)
        return;
    memset(&d->listen_io.io.peer, 0, sizeof(d->listen_io.io.peer));
    memcpy(&d->listen_io.io.peer, sa, sl_addr_len(sa));
    d->listen_io.io.in = p;
    d->listen_io.io.in_len = n;
    BIO_ADDR *client = BIO_ADDR_new();
    ERR_clear_error();
    int r = client != NULL ? DTLSv1_listen(d->listen_ssl, client) : -1;
    BIO_ADDR_free(client);
    d->listen_io.io.in = NULL;
    ERR_clear_error();
    if (r < 0) {
        /* A broken object is not reused. */
        SSL_free(d->listen_ssl);
        d->listen_ssl = NULL;
        return;
    }
    if (r == 0)
        return; /* a HelloVerifyRequest went back, or junk was dropped */
    SSL *ssl = d->listen_ssl;
    d->listen_ssl = NULL;
    struct sess *s = sess_new(d, sa, ssl);
    if (s == NULL) {
        SSL_free(ssl);
        return;
    }
    sess_input(s);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct node_dtls *d = h->data;
    (void)hint;
    *buf = uv_buf_init(d->rbuf, RECV_BUF);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags)
{
    struct node_dtls *d = h->data;
    if (n <= 0 || addr == NULL || d->stopping || (flags & UV_UDP_PARTIAL))
        return;
    /* The address as the socket gave it (an IPv4 client of a dual-stack
     * socket is ::ffff:a.b.c.d): answers go back to it as it is. */
    struct sess *s = find(d, addr);
    if (s == NULL) {
        listen_input(d, addr, (const uint8_t *)buf->base, (size_t)n);
        return;
    }
    s->io.io.in = (const uint8_t *)buf->base;
    s->io.io.in_len = (size_t)n;
    sess_input(s);
    s->io.io.in = NULL; /* the memory lives until its close callbacks */
}

static void on_sweep(uv_timer_t *t)
{
    struct node_dtls *d = t->data;
    uint64_t now = uv_now(d->loop);
    uint64_t idle = sl_agent_udp_idle_ms(d->agent);
    for (struct sl_link *l = d->sessions.next, *next; l != &d->sessions;
         l = next) {
        next = l->next;
        struct sess *s = container_of(l, struct sess, link);
        if ((s->phase == S_HANDSHAKE || s->phase == S_HEADER ||
             s->phase == S_RESOLVE) &&
            now - s->started_ms >= SL_AGENT_HEADER_TIMEOUT_MS)
            sess_close(s, s->phase == S_HANDSHAKE ? "handshake timeout"
                                                  : "header timeout");
        else if (s->phase == S_RELAY && now - s->last_ms >= idle)
            sess_close(s, "idle");
    }
}

/* ------------------------------------------------------ start and stop */

size_t sl_node_dtls_sessions(const struct node_dtls *d)
{
    return d != NULL ? d->nsessions : 0;
}

static void dtls_free(struct node_dtls *d)
{
    SSL_free(d->listen_ssl);
    SSL_CTX_free(d->ctx);
    OPENSSL_cleanse(d->secret, sizeof(d->secret));
    free(d->rbuf);
    free(d->pbuf);
    void (*done)(void *) = d->done;
    void *arg = d->done_arg;
    free(d);
    if (done != NULL)
        done(arg);
}

static void dtls_unref(struct node_dtls *d)
{
    if (--d->open == 0)
        dtls_free(d);
}

static void on_closed(uv_handle_t *h)
{
    dtls_unref(h->data);
}

void sl_node_dtls_stop(struct node_dtls *d, void (*done)(void *arg),
                       void *arg)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    d->done = done;
    d->done_arg = arg;
    d->open++; /* held through this call */
    while (!sl_list_empty(&d->sessions))
        sess_close(container_of(d->sessions.next, struct sess, link),
                   "stopping");
    uv_close((uv_handle_t *)&d->sweep, on_closed);
    uv_close((uv_handle_t *)&d->sock, on_closed);
    dtls_unref(d);
}

int sl_node_dtls_start(struct sl_node_agent *a, const struct sockaddr *addr,
                       struct node_dtls **out)
{
    *out = NULL;
    struct node_dtls *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return UV_ENOMEM;
    d->agent = a;
    d->loop = sl_agent_loop(a);
    d->log = sl_agent_log(a);
    d->listen_io.d = d;
    d->listen_io.io.sock = &d->sock;
    sl_list_init(&d->sessions);
    d->rbuf = malloc(RECV_BUF);
    d->pbuf = malloc(RECORD_MAX);
    if (d->rbuf == NULL || d->pbuf == NULL ||
        RAND_bytes(d->secret, sizeof(d->secret)) != 1) {
        free(d->rbuf);
        free(d->pbuf);
        free(d);
        return UV_ENOMEM;
    }
    d->ctx = sl_agent_ctx_new(a, DTLS_server_method());
    if (d->ctx == NULL) {
        free(d->rbuf);
        free(d->pbuf);
        free(d);
        return SL_ECONFIG;
    }
    SSL_CTX_set_cookie_generate_cb(d->ctx, on_cookie_generate);
    SSL_CTX_set_cookie_verify_cb(d->ctx, on_cookie_verify);
    uv_udp_init(d->loop, &d->sock);
    uv_timer_init(d->loop, &d->sweep);
    d->sock.data = d;
    d->sweep.data = d;
    d->open = 2;
    int rc = uv_udp_bind(&d->sock, addr, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&d->sock, on_alloc, on_recv);
    if (rc != 0) {
        sl_node_dtls_stop(d, NULL, NULL);
        return rc;
    }
    uv_timer_start(&d->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    *out = d;
    return 0;
}
