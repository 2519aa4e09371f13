#include "stream/agent_client.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "core/error.h"
#include "net/addr.h"
#include "tls/dtls_bio.h"
#include "tls/tls_util.h"

#define ADDRS_MAX 4
#define HDR_RESEND_MS 1000     /* DTLS: the header again until the status */
#define UDP_START_MS 10000     /* DTLS: handshake and status, at most */
#define INFO_MAX (64 * 1024)
#define UDP_READ_MAX (64 * 1024)
#define ERR_LEN 160

#define container_of(p, type, member)                                          \
    ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* One protocol's health. */
struct health {
    enum sl_agent_health state;
    unsigned fails, oks;   /* in a row */
    int running;           /* a probe is out */
    uint64_t checked_ms;   /* wall clock of the last answer, 0 never */
    uint64_t rtt_ms;
    char error[ERR_LEN];   /* the last failure, "" after a success */
};

struct sl_agent {
    struct sl_agents *as;
    const struct sl_agent_config *cfg;
    char address[SL_ADDR_STRLEN + 260];
    struct sockaddr_storage addr[ADDRS_MAX];
    size_t naddr;
    SSL_CTX *tls, *dtls;
    SSL_SESSION *session; /* the newest, offered again: no full handshake */
    uv_timer_t timer;     /* health checks */
    struct health tcp, udp;
    json_t *info;         /* what GET /info said, or NULL */
    int info_running;
    /* what is out now, ended early when the agents stop */
    struct tprobe *tprobe;
    struct uprobe *uprobe;
    struct info_req *inforeq;
    uint64_t streams, sessions, refused;
};

struct tprobe;
struct uprobe;
struct info_req;

struct sl_agents {
    struct sl_ctx *ctx;
    struct sl_log *log;
    /* What every DTLS session reads a datagram into, and decrypts it
     * into: each is used within one callback, so one of each serves all
     * sessions (a session costs its SSL and two handles, not 80 KiB). */
    uint8_t *udp_in;    /* UDP_READ_MAX */
    uint8_t *udp_plain; /* SL_DTLS_RECORD_MAX */
    struct sl_agent *agents;
    size_t n;
    int open; /* timers and probes not yet let go */
    int stopping;
    void (*done)(void *);
    void *done_arg;
};

static void agents_unref(struct sl_agents *as);

const char *sl_agent_name(const struct sl_agent *a)
{
    return a->cfg->name;
}

enum sl_agent_health sl_agent_health(const struct sl_agent *a, int udp)
{
    return udp ? a->udp.state : a->tcp.state;
}

int sl_agent_usable(const struct sl_agent *a, int udp)
{
    return sl_agent_health(a, udp) != SL_AGENT_HEALTH_DOWN;
}

struct sl_agent *sl_agents_find(struct sl_agents *as, const char *name)
{
    for (size_t i = 0; as != NULL && i < as->n; i++)
        if (strcmp(as->agents[i].cfg->name, name) == 0)
            return &as->agents[i];
    return NULL;
}

/* The status byte as our error codes (see sl_agent_conn_cb). */
static int status_err(int status)
{
    switch (status) {
    case SL_AGENT_OK: return 0;
    case SL_AGENT_REFUSED: return SL_EDENIED;
    case SL_AGENT_DIAL_FAILED: return UV_ECONNREFUSED;
    case SL_AGENT_TIMEOUT: return UV_ETIMEDOUT;
    case SL_AGENT_BAD_HEADER: return SL_EPARSE;
    case SL_AGENT_BUSY: return SL_ELIMIT;
    default: return UV_EPROTO;
    }
}

/* ----------------------------------------------------- TLS contexts */

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct sl_agent *a = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (a == NULL)
        return 0;
    SSL_SESSION_free(a->session);
    a->session = sess;
    return 1; /* we keep the reference */
}

static SSL_CTX *client_ctx(struct sl_agent *a, int dtls)
{
    const struct sl_agent_config *c = a->cfg;
    struct sl_log *log = a->as->log;
    char err[512], reason[200];
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_client_method()
                                    : TLS_client_method());
    if (ctx == NULL)
        goto fail;
    if (sl_tls_load_certs(c->cert, &leaf, &chain, err, sizeof(err)) != 0 ||
        sl_tls_load_key(c->key, &key, err, sizeof(err)) != 0) {
        sl_error(log, "agent \"%s\": %s", c->name, err);
        goto fail;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        sl_error(log, "agent \"%s\": %s does not match %s (%s)", c->name,
                 c->key, c->cert, sl_tls_ossl_reason(reason, sizeof(reason)));
        goto fail;
    }
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++)
        SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i));
    if (SSL_CTX_load_verify_locations(ctx, c->ca, NULL) != 1) {
        sl_error(log, "agent \"%s\": %s: no CA certificate read (%s)",
                 c->name, c->ca, sl_tls_ossl_reason(reason, sizeof(reason)));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, dtls ? DTLS1_2_VERSION
                                            : TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!dtls) {
        SSL_CTX_set_app_data(ctx, a);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return ctx;
fail:
    if (ctx == NULL)
        sl_error(log, "agent \"%s\": TLS context: %s", c->name,
                 sl_tls_ossl_reason(reason, sizeof(reason)));
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

static SSL *new_tls(struct sl_agent *a, const char *alpn)
{
    SSL *ssl = SSL_new(a->tls);
    if (ssl == NULL)
        return NULL;
    unsigned char wire[32];
    size_t n = strlen(alpn);
    wire[0] = (unsigned char)n;
    memcpy(wire + 1, alpn, n);
    SSL_set_alpn_protos(ssl, wire, (unsigned)n + 1);
    if (a->session != NULL)
        SSL_set_session(ssl, a->session);
    SSL_set_connect_state(ssl);
    return ssl;
}

/* ------------------------------------------------------ TCP dials */

enum stage { ST_CONNECT, ST_HANDSHAKE, ST_HEADER, ST_STATUS, ST_DONE };

static void conn_finish(struct sl_agent_conn *d, int status, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));

static void conn_finish(struct sl_agent_conn *d, int status, const char *fmt,
                        ...)
{
    if (d->done)
        return;
    d->done = 1;
    d->stage = ST_DONE;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->why, sizeof(d->why), fmt, ap);
        va_end(ap);
    }
    d->cb(d, status);
}

const char *sl_agent_conn_why(const struct sl_agent_conn *d)
{
    return d->why;
}

void sl_agent_conn_abort(struct sl_agent_conn *d)
{
    d->done = 1;
}

static void on_status_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_agent_conn *d = h->data;
    (void)hint;
    /* One byte: what follows is the relay's, left in the transport. */
    *buf = uv_buf_init((char *)&d->status, 1);
}

static void on_status_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sl_agent_conn *d = s->data;
    (void)buf;
    if (d->done || n == 0)
        return;
    sl_xprt_read_stop(d->x);
    if (n < 0) {
        conn_finish(d, n == UV_EOF ? UV_ECONNRESET : (int)n,
                    "agent \"%s\" closed before its status (%s)",
                    d->agent->cfg->name, sl_strerror((int)n));
        return;
    }
    int err = status_err(d->status);
    if (err == 0)
        conn_finish(d, 0, NULL);
    else
        conn_finish(d, err, "agent \"%s\": %s", d->agent->cfg->name,
                    sl_agent_status_name(d->status));
}

static void on_header_written(uv_write_t *req, int status)
{
    struct sl_agent_conn *d = container_of(req, struct sl_agent_conn, wreq);
    if (d->done)
        return;
    if (status < 0) {
        conn_finish(d, status, "agent \"%s\": sending the header: %s",
                    d->agent->cfg->name, sl_strerror(status));
        return;
    }
    d->stage = ST_STATUS;
    d->x->tcp.data = d;
    int rc = sl_xprt_read_start(d->x, on_status_alloc, on_status_read);
    if (rc != 0)
        conn_finish(d, rc, "agent \"%s\": %s", d->agent->cfg->name,
                    sl_strerror(rc));
}

static void on_handshake(struct sl_xprt *x, int status)
{
    SSL *ssl = sl_xprt_ssl(x);
    struct sl_agent_conn *d = ssl ? SSL_get_app_data(ssl) : NULL;
    if (d == NULL || d->done)
        return;
    if (status != 0) {
        conn_finish(d, status == UV_EPROTO ? UV_EPROTO : status,
                    "agent \"%s\": TLS handshake: %s", d->agent->cfg->name,
                    status == UV_EPROTO ? sl_xprt_error(x)
                                        : sl_strerror(status));
        return;
    }
    const unsigned char *sel = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &sel, &len);
    if (len != strlen(SL_AGENT_ALPN_STREAM) ||
        memcmp(sel, SL_AGENT_ALPN_STREAM, len) != 0) {
        conn_finish(d, UV_EPROTO, "agent \"%s\" did not agree to %s (not "
                    "an agent port?)", d->agent->cfg->name,
                    SL_AGENT_ALPN_STREAM);
        return;
    }
    d->stage = ST_HEADER;
    uv_buf_t b = uv_buf_init((char *)d->hdr, sizeof(d->hdr));
    int rc = sl_xprt_write(&d->wreq, x, &b, 1, on_header_written);
    if (rc != 0)
        conn_finish(d, rc, "agent \"%s\": %s", d->agent->cfg->name,
                    sl_strerror(rc));
}

static void on_connected(uv_connect_t *req, int status)
{
    struct sl_agent_conn *d = req->data;
    if (d->done)
        return;
    if (status != 0) {
        conn_finish(d, status, "agent \"%s\" at %.100s: %s", d->agent->cfg->name,
                    d->agent->address, sl_strerror(status));
        return;
    }
    uv_tcp_nodelay(&d->x->tcp, 1);
    SSL *ssl = new_tls(d->agent, SL_AGENT_ALPN_STREAM);
    if (ssl == NULL) {
        conn_finish(d, UV_ENOMEM, "agent \"%s\": out of memory",
                    d->agent->cfg->name);
        return;
    }
    SSL_set_app_data(ssl, d);
    d->stage = ST_HANDSHAKE;
    int rc = sl_xprt_tls_start(d->x, ssl, NULL, 0, on_handshake);
    if (rc != 0)
        conn_finish(d, rc, "agent \"%s\": %s", d->agent->cfg->name,
                    sl_strerror(rc));
}

static int conn_connect(struct sl_agent_conn *d)
{
    d->creq.data = d;
    /* The first address the resolver gave; a whole dial is bounded by
     * the caller's timeout. */
    const struct sockaddr *sa = (struct sockaddr *)&d->agent->addr[0];
    return uv_tcp_connect(&d->creq, &d->x->tcp, sa, on_connected);
}

int sl_agent_conn_start(struct sl_agent_conn *d, struct sl_agent *a,
                        struct sl_xprt *x, const struct sl_agent_hdr *h)
{
    void *data = d->data;
    sl_agent_conn_cb cb = d->cb;
    memset(d, 0, sizeof(*d));
    d->data = data;
    d->cb = cb;
    d->agent = a;
    d->x = x;
    d->probe = (h->flags & SL_AGENT_FLAG_PROBE) != 0;
    sl_xprt_init(x);
    int rc = uv_tcp_init(a->as->ctx->loop, &x->tcp);
    if (rc != 0)
        return rc; /* cannot happen for AF_UNSPEC; x is then not open */
    x->tcp.data = d;
    if (sl_agent_hdr_encode(h, d->hdr) != 0)
        rc = SL_EPARSE;
    else if (a->naddr == 0)
        rc = UV_EAI_NONAME;
    else
        rc = conn_connect(d); /* its callback comes from the loop */
    if (rc != 0) {
        d->done = 1;
        snprintf(d->why, sizeof(d->why), "agent \"%s\" at %.100s: %s",
                 a->cfg->name, a->address, sl_strerror(rc));
        return rc;
    }
    if (!d->probe)
        a->streams++;
    d->stage = ST_CONNECT;
    return 0;
}

/* ------------------------------------------------------ UDP sessions */

enum ustage { U_HANDSHAKE, U_STATUS, U_READY, U_CLOSED };

struct sl_agent_udp {
    struct sl_agent *agent;
    struct sl_agent_udp_cbs cbs;
    void *arg;
    struct sl_dtls_io io;
    SSL *ssl;
    uv_udp_t sock;
    uv_timer_t timer; /* retransmissions, the header's resends */
    uint8_t hdr[SL_AGENT_HDR_LEN];
    uint8_t *rbuf; /* the agents' (shared: used within one callback) */
    enum ustage stage;
    int open; /* handles */
    unsigned closing : 1; /* the user let go: no more callbacks */
    unsigned failed : 1;
    unsigned kicked : 1;  /* the ClientHello went out */
    unsigned resent : 1;  /* the header went out more than once */
    uint64_t started_ms, ready_ms;
};

static void udp_free(struct sl_agent_udp *u)
{
    SSL_free(u->ssl);
    free(u);
}

static void on_udp_closed(uv_handle_t *h)
{
    struct sl_agent_udp *u = h->data;
    if (--u->open == 0)
        udp_free(u);
}

/* Ends the session's handles; the user's callbacks stop with it. */
static void udp_shut(struct sl_agent_udp *u)
{
    if (u->stage != U_CLOSED && !u->failed && SSL_is_init_finished(u->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(u->ssl); /* close_notify */
    }
    ERR_clear_error();
    u->stage = U_CLOSED;
    u->io.sock = NULL;
    if (!uv_is_closing((uv_handle_t *)&u->sock))
        uv_close((uv_handle_t *)&u->sock, on_udp_closed);
    if (!uv_is_closing((uv_handle_t *)&u->timer))
        uv_close((uv_handle_t *)&u->timer, on_udp_closed);
}

void sl_agent_udp_close(struct sl_agent_udp *u)
{
    if (u == NULL || u->closing)
        return;
    u->closing = 1;
    udp_shut(u);
}

/* The session ends by itself: the user hears why, once. */
static void udp_fail(struct sl_agent_udp *u, int err, const char *why)
{
    if (u->closing || u->stage == U_CLOSED)
        return;
    enum ustage was = u->stage;
    udp_shut(u);
    if (was == U_READY) {
        if (u->cbs.closed != NULL)
            u->cbs.closed(u, u->arg, why);
    } else if (u->cbs.ready != NULL) {
        u->cbs.ready(u, u->arg, err);
    }
}

static void udp_arm(struct sl_agent_udp *u);
static void udp_input(struct sl_agent_udp *u);

static void on_udp_timer(uv_timer_t *t)
{
    struct sl_agent_udp *u = t->data;
    if (u->stage == U_CLOSED)
        return;
    if (uv_now(t->loop) - u->started_ms >= UDP_START_MS &&
        u->stage != U_READY) {
        udp_fail(u, UV_ETIMEDOUT, "no status in time");
        return;
    }
    ERR_clear_error();
    if (u->stage == U_HANDSHAKE && !u->kicked) {
        u->kicked = 1;
        udp_input(u); /* the ClientHello */
        return;
    }
    if (u->stage == U_HANDSHAKE) {
        if (DTLSv1_handle_timeout(u->ssl) < 0) {
            u->failed = 1;
            udp_fail(u, UV_ETIMEDOUT, "DTLS handshake gave up");
            return;
        }
    } else if (u->stage == U_STATUS) {
        /* The header or the status may have been lost: ask again (the
         * agent answers a repeated header with the status again). */
        u->resent = 1;
        if (SSL_write(u->ssl, u->hdr, sizeof(u->hdr)) <= 0) {
            u->failed = 1;
            udp_fail(u, UV_EPROTO, "DTLS write failed");
            return;
        }
    }
    udp_arm(u);
}

static void udp_arm(struct sl_agent_udp *u)
{
    struct timeval tv;
    uint64_t ms = HDR_RESEND_MS;
    if (u->stage == U_HANDSHAKE && DTLSv1_get_timeout(u->ssl, &tv))
        ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    if (u->stage == U_READY) {
        uv_timer_stop(&u->timer);
        return;
    }
    uv_timer_start(&u->timer, on_udp_timer, ms ? ms : 1, 0);
}

static void udp_input(struct sl_agent_udp *u)
{
    ERR_clear_error();
    if (u->stage == U_HANDSHAKE) {
        int r = SSL_do_handshake(u->ssl);
        if (r != 1) {
            int e = SSL_get_error(u->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                udp_arm(u);
                return;
            }
            long v = SSL_get_verify_result(u->ssl);
            char why[ERR_LEN], reason[120];
            snprintf(why, sizeof(why), "DTLS handshake: %s",
                     v != X509_V_OK ? X509_verify_cert_error_string(v)
                                    : sl_tls_ossl_reason(reason,
                                                         sizeof(reason)));
            u->failed = 1;
            udp_fail(u, UV_EPROTO, why);
            return;
        }
        u->stage = U_STATUS;
        if (SSL_write(u->ssl, u->hdr, sizeof(u->hdr)) <= 0) {
            u->failed = 1;
            udp_fail(u, UV_EPROTO, "DTLS write failed");
            return;
        }
        udp_arm(u);
    }
    for (int k = 0; k < 64 && u->stage != U_CLOSED && !u->closing; k++) {
        ERR_clear_error();
        int n = SSL_read(u->ssl, u->rbuf, SL_DTLS_RECORD_MAX);
        if (n <= 0) {
            int e = SSL_get_error(u->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e != SSL_ERROR_ZERO_RETURN)
                u->failed = 1;
            udp_fail(u, e == SSL_ERROR_ZERO_RETURN ? UV_ECONNRESET
                                                   : UV_EPROTO,
                     e == SSL_ERROR_ZERO_RETURN ? "closed by the agent"
                                                : "DTLS error");
            return;
        }
        if (u->stage == U_STATUS) {
            if (n != 1) {
                u->failed = 1;
                udp_fail(u, UV_EPROTO, "no status in the first record");
                return;
            }
            int err = status_err(u->rbuf[0]);
            if (err != 0) {
                /* The agent closes too: no close_notify of ours needed,
                 * but it does no harm. */
                udp_fail(u, err, sl_agent_status_name(u->rbuf[0]));
                return;
            }
            u->stage = U_READY;
            u->ready_ms = uv_now(u->sock.loop);
            uv_timer_stop(&u->timer);
            if (u->cbs.ready != NULL)
                u->cbs.ready(u, u->arg, 0);
            continue;
        }
        /* A header we sent again may be answered again: a lone "ok"
         * byte shortly after it is that answer, not a datagram. */
        if (n == 1 && u->rbuf[0] == SL_AGENT_OK && u->resent &&
            uv_now(u->sock.loop) - u->ready_ms < 2 * HDR_RESEND_MS)
            continue;
        if (u->cbs.recv != NULL)
            u->cbs.recv(u, u->arg, (const char *)u->rbuf, (size_t)n);
    }
}

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_agent_udp *u = h->data;
    (void)hint;
    /* Every session reads into the agents' one buffer: a datagram is
     * decrypted (into another shared one) before its callback returns. */
    *buf = uv_buf_init((char *)u->agent->as->udp_in, UDP_READ_MAX);
}

static void on_udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    struct sl_agent_udp *u = h->data;
    (void)addr;
    if (u->stage == U_CLOSED || u->closing || n == 0)
        return;
    if (n < 0) {
        /* Port unreachable on a connected socket: nobody at the agent's
         * address now. */
        if (u->stage != U_READY)
            udp_fail(u, (int)n, sl_strerror((int)n));
        return;
    }
    if (flags & UV_UDP_PARTIAL)
        return;
    u->io.in = (const uint8_t *)buf->base;
    u->io.in_len = (size_t)n;
    udp_input(u);
    u->io.in = NULL;
}

int sl_agent_udp_send(struct sl_agent_udp *u, const char *data, size_t len)
{
    if (u->stage != U_READY || u->closing)
        return UV_EAGAIN;
    if (len > SL_DTLS_RECORD_MAX)
        return SL_ETOOBIG;
    ERR_clear_error();
    int n = SSL_write(u->ssl, data, (int)len);
    if (n <= 0) {
        u->failed = 1;
        ERR_clear_error();
        return UV_EPROTO;
    }
    return 0;
}

struct sl_agent_udp *sl_agent_udp_open(struct sl_agent *a,
                                       const struct sl_agent_hdr *h,
                                       const struct sl_agent_udp_cbs *cbs,
                                       void *arg)
{
    uv_loop_t *loop = a->as->ctx->loop;
    if (a->naddr == 0 || a->dtls == NULL)
        return NULL;
    struct sl_agent_udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->rbuf = a->as->udp_plain;
    u->ssl = SSL_new(a->dtls);
    BIO *bio = u->ssl != NULL ? sl_dtls_bio_new(&u->io) : NULL;
    if (bio == NULL || sl_agent_hdr_encode(h, u->hdr) != 0) {
        BIO_free(bio);
        SSL_free(u->ssl);
        free(u);
        return NULL;
    }
    SSL_set_bio(u->ssl, bio, bio);
    sl_dtls_ssl_setup(u->ssl);
    SSL_set_connect_state(u->ssl);
    u->agent = a;
    u->cbs = *cbs;
    u->arg = arg;
    u->started_ms = uv_now(loop);
    uv_udp_init(loop, &u->sock);
    uv_timer_init(loop, &u->timer);
    u->sock.data = u;
    u->timer.data = u;
    u->open = 2;
    u->io.sock = &u->sock; /* connected: peer family stays 0 */
    if (!(h->flags & SL_AGENT_FLAG_PROBE))
        a->sessions++;
    const struct sockaddr *sa = (struct sockaddr *)&a->addr[0];
    int rc = uv_udp_connect(&u->sock, sa);
    if (rc == 0)
        rc = uv_udp_recv_start(&u->sock, on_udp_alloc, on_udp_recv);
    if (rc != 0) {
        udp_shut(u);
        u->closing = 1;
        return NULL; /* freed once closed */
    }
    /* The ClientHello goes out from the loop (a zero timeout), so no
     * callback of the user's runs from inside this call. */
    u->stage = U_HANDSHAKE;
    uv_timer_start(&u->timer, on_udp_timer, 0, 0);
    return u;
}

/* ------------------------------------------------------------ health */

static uint64_t wall_ms(void)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0)
        return 0;
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void fetch_info(struct sl_agent *a);

static void health_result(struct sl_agent *a, int udp, int ok,
                          const char *why, uint64_t rtt)
{
    struct health *h = udp ? &a->udp : &a->tcp;
    const struct sl_agent_config *c = a->cfg;
    enum sl_agent_health was = h->state;
    h->running = 0;
    h->checked_ms = wall_ms();
    if (ok) {
        h->oks++;
        h->fails = 0;
        h->rtt_ms = rtt;
        h->error[0] = '\0';
        /* The first answer decides at once: routes were trying anyway. */
        if (h->state == SL_AGENT_HEALTH_UNKNOWN ||
            (h->state == SL_AGENT_HEALTH_DOWN && h->oks >= c->healthy_after))
            h->state = SL_AGENT_HEALTH_UP;
    } else {
        h->fails++;
        h->oks = 0;
        snprintf(h->error, sizeof(h->error), "%s", why);
        if (h->state != SL_AGENT_HEALTH_DOWN &&
            h->fails >= c->unhealthy_after)
            h->state = SL_AGENT_HEALTH_DOWN;
    }
    if (h->state == was)
        return;
    const char *proto = udp ? "udp" : "tcp";
    const char *now = h->state == SL_AGENT_HEALTH_UP ? "healthy"
                                                     : "unhealthy";
    struct sl_log_field f[] = {
        SL_LOG_STR("route", "agent"),    SL_LOG_STR("agent", c->name),
        SL_LOG_STR("target", a->address), SL_LOG_STR("kind", proto),
        SL_LOG_STR("event", now),         SL_LOG_STR("reason", ok ? NULL : why),
    };
    if (h->state == SL_AGENT_HEALTH_UP)
        sl_log_event(a->as->log, SL_LOG_INFO, f, 6,
                     "agent \"%s\" (%s): %s healthy (probe answered in %llu "
                     "ms)", c->name, a->address, proto,
                     (unsigned long long)rtt);
    else
        sl_log_event(a->as->log, SL_LOG_WARN, f, 6,
                     "agent \"%s\" (%s): %s unhealthy after %u failed "
                     "probe(s) (%s); routes through it refuse at once",
                     c->name, a->address, proto, h->fails, why);
    if (!udp && h->state == SL_AGENT_HEALTH_UP)
        fetch_info(a);
}

/* A TCP probe: its own transport, let go once closed. */
struct tprobe {
    struct sl_agent *a; /* NULL once the agents stop */
    struct sl_agents *as;
    struct sl_xprt x;
    struct sl_agent_conn d;
    uv_timer_t timer;
    uint64_t started_ms;
    int open;
    int x_open;
};

static void on_tprobe_closed(uv_handle_t *h)
{
    struct tprobe *p = h->data;
    if (--p->open > 0)
        return;
    struct sl_agents *as = p->as;
    free(p);
    agents_unref(as);
}

static void tprobe_end(struct tprobe *p, int ok, const char *why)
{
    struct sl_agent *a = p->a;
    sl_agent_conn_abort(&p->d);
    if (p->a != NULL) {
        p->a = NULL;
        a->tprobe = NULL;
        health_result(a, 0, ok, why,
                      uv_now(p->as->ctx->loop) - p->started_ms);
    }
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_tprobe_closed);
    if (p->x_open && !sl_xprt_is_closing(&p->x)) {
        p->x.tcp.data = p;
        sl_xprt_close(&p->x, on_tprobe_closed);
    }
}

static void on_tprobe_done(struct sl_agent_conn *d, int status)
{
    struct tprobe *p = d->data;
    tprobe_end(p, status == 0, status == 0 ? "" : sl_agent_conn_why(d));
}

static void on_tprobe_timeout(uv_timer_t *t)
{
    struct tprobe *p = t->data;
    tprobe_end(p, 0, "no answer within the health timeout");
}

static void probe_tcp(struct sl_agent *a)
{
    struct tprobe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    struct sl_agent_hdr h = {.flags = SL_AGENT_FLAG_PROBE,
                             .proto = SL_AGENT_PROTO_TCP};
    p->a = a;
    p->as = a->as;
    p->started_ms = uv_now(a->as->ctx->loop);
    p->d.data = p;
    p->d.cb = on_tprobe_done;
    uv_timer_init(a->as->ctx->loop, &p->timer);
    p->timer.data = p;
    p->open = 1;
    a->as->open++;
    a->tcp.running = 1;
    uv_timer_start(&p->timer, on_tprobe_timeout, a->cfg->health_timeout_ms,
                   0);
    a->tprobe = p;
    int rc = sl_agent_conn_start(&p->d, a, &p->x, &h);
    if (p->x.tcp.type == UV_TCP) {
        p->x_open = 1;
        p->open++;
    }
    if (rc != 0)
        tprobe_end(p, 0, sl_agent_conn_why(&p->d));
}

/* A UDP probe: a DTLS session with the probe flag. */
struct uprobe {
    struct sl_agent *a; /* NULL once answered or the agents stop */
    struct sl_agents *as;
    struct sl_agent_udp *u;
    uv_timer_t timer;
    uint64_t started_ms;
};

static void on_uprobe_timer_closed(uv_handle_t *h)
{
    struct uprobe *p = h->data;
    struct sl_agents *as = p->as;
    free(p);
    agents_unref(as);
}

static void uprobe_end(struct uprobe *p, int ok, const char *why)
{
    struct sl_agent *a = p->a;
    sl_agent_udp_close(p->u);
    p->u = NULL;
    if (a != NULL) {
        p->a = NULL;
        a->uprobe = NULL;
        health_result(a, 1, ok, why,
                      uv_now(p->as->ctx->loop) - p->started_ms);
    }
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_uprobe_timer_closed);
}

static void on_uprobe_ready(struct sl_agent_udp *u, void *arg, int status)
{
    struct uprobe *p = arg;
    (void)u;
    char why[ERR_LEN];
    snprintf(why, sizeof(why), "DTLS: %s", sl_strerror(status));
    uprobe_end(p, status == 0, status == 0 ? "" : why);
}

static void on_uprobe_closed(struct sl_agent_udp *u, void *arg,
                             const char *why)
{
    (void)u;
    uprobe_end(arg, 1, why); /* closed after ok: the probe's own end */
}

static void on_uprobe_timeout(uv_timer_t *t)
{
    uprobe_end(t->data, 0, "no DTLS answer within the health timeout");
}

static void probe_udp(struct sl_agent *a)
{
    static const struct sl_agent_udp_cbs cbs = {
        .ready = on_uprobe_ready,
        .closed = on_uprobe_closed,
    };
    struct uprobe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    struct sl_agent_hdr h = {.flags = SL_AGENT_FLAG_PROBE,
                             .proto = SL_AGENT_PROTO_UDP};
    p->a = a;
    p->as = a->as;
    p->started_ms = uv_now(a->as->ctx->loop);
    uv_timer_init(a->as->ctx->loop, &p->timer);
    p->timer.data = p;
    a->as->open++;
    a->udp.running = 1;
    uv_timer_start(&p->timer, on_uprobe_timeout, a->cfg->health_timeout_ms,
                   0);
    a->uprobe = p;
    p->u = sl_agent_udp_open(a, &h, &cbs, p);
    if (p->u == NULL)
        uprobe_end(p, 0, "cannot open a DTLS session");
}

/* ---- GET /info -------------------------------------------------------- */

struct info_req {
    struct sl_agent *a; /* NULL once the agents stop */
    struct sl_agents *as;
    struct sl_xprt x;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t timer;
    char *buf;
    size_t len;
    int open;
    int x_open;
};

static void on_info_closed(uv_handle_t *h)
{
    struct info_req *r = h->data;
    if (--r->open > 0)
        return;
    struct sl_agents *as = r->as;
    free(r->buf);
    free(r);
    agents_unref(as);
}

static void info_end(struct info_req *r)
{
    if (r->a != NULL) {
        r->a->info_running = 0;
        r->a->inforeq = NULL;
        /* Whatever came: a JSON body after the head, or nothing. */
        char *body = r->buf ? strstr(r->buf, "\r\n\r\n") : NULL;
        if (body != NULL && strncmp(r->buf, "HTTP/1.1 200", 12) == 0) {
            json_t *j = json_loads(body + 4, 0, NULL);
            if (json_is_object(j)) {
                json_decref(r->a->info);
                r->a->info = j;
                json_t *st = json_object_get(j, "streams");
                char list[64] = "";
                size_t i;
                json_t *v;
                json_array_foreach(st, i, v)
                {
                    size_t used = strlen(list);
                    if (json_is_string(v) && used < 40)
                        snprintf(list + used, sizeof(list) - used, "%s%.8s",
                                 used > 0 ? "," : "", json_string_value(v));
                }
                sl_info(r->as->log, "agent \"%s\": /info: name %s, version "
                        "%s, streams %s", r->a->cfg->name,
                        json_string_value(json_object_get(j, "name"))
                            ? json_string_value(json_object_get(j, "name"))
                            : "?",
                        json_string_value(json_object_get(j, "version"))
                            ? json_string_value(json_object_get(j, "version"))
                            : "?",
                        list[0] ? list : "none");
            } else {
                json_decref(j);
            }
        }
        r->a = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, on_info_closed);
    if (r->x_open && !sl_xprt_is_closing(&r->x)) {
        r->x.tcp.data = r;
        sl_xprt_close(&r->x, on_info_closed);
    }
}

static void on_info_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct info_req *r = h->data;
    (void)hint;
    if (r->buf == NULL)
        r->buf = malloc(INFO_MAX + 1);
    if (r->buf == NULL || r->len >= INFO_MAX) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(r->buf + r->len, (unsigned)(INFO_MAX - r->len));
}

static void on_info_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct info_req *r = s->data;
    (void)buf;
    if (n > 0) {
        r->len += (size_t)n;
        r->buf[r->len] = '\0';
        return;
    }
    if (n < 0) {
        sl_xprt_read_stop(&r->x);
        info_end(r);
    }
}

static void on_info_written(uv_write_t *req, int status)
{
    struct info_req *r = container_of(req, struct info_req, wreq);
    if (status != 0 || r->a == NULL) {
        info_end(r);
        return;
    }
    r->x.tcp.data = r;
    if (sl_xprt_read_start(&r->x, on_info_alloc, on_info_read) != 0)
        info_end(r);
}

static void on_info_handshake(struct sl_xprt *x, int status)
{
    struct info_req *r = container_of(x, struct info_req, x);
    if (r->a == NULL)
        return;
    if (status != 0) {
        info_end(r);
        return;
    }
    static const char get[] = "GET /info HTTP/1.1\r\nHost: agent\r\n"
                              "Connection: close\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)get, sizeof(get) - 1);
    if (sl_xprt_write(&r->wreq, &r->x, &b, 1, on_info_written) != 0)
        info_end(r);
}

static void on_info_connected(uv_connect_t *req, int status)
{
    struct info_req *r = req->data;
    if (r->a == NULL)
        return;
    SSL *ssl = status == 0 ? new_tls(r->a, SL_AGENT_ALPN_HTTP) : NULL;
    if (ssl == NULL ||
        sl_xprt_tls_start(&r->x, ssl, NULL, 0, on_info_handshake) != 0)
        info_end(r);
}

static void on_info_timeout(uv_timer_t *t)
{
    info_end(t->data);
}

static void fetch_info(struct sl_agent *a)
{
    if (a->info_running || a->as->stopping)
        return;
    struct info_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    uv_loop_t *loop = a->as->ctx->loop;
    r->a = a;
    r->as = a->as;
    a->info_running = 1;
    a->inforeq = r;
    a->as->open++;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->open = 1;
    uv_timer_start(&r->timer, on_info_timeout, a->cfg->health_timeout_ms, 0);
    sl_xprt_init(&r->x);
    if (uv_tcp_init(loop, &r->x.tcp) != 0) {
        info_end(r);
        return;
    }
    r->x.tcp.data = r;
    r->x_open = 1;
    r->open++;
    r->creq.data = r;
    if (uv_tcp_connect(&r->creq, &r->x.tcp, (struct sockaddr *)&a->addr[0],
                       on_info_connected) != 0)
        info_end(r);
}

static void on_health_timer(uv_timer_t *t)
{
    struct sl_agent *a = t->data;
    if (a->as->stopping)
        return;
    if (!a->tcp.running)
        probe_tcp(a);
    if (!a->udp.running && a->dtls != NULL)
        probe_udp(a);
}

/* ------------------------------------------------------------- JSON */

static const char *health_name(enum sl_agent_health h)
{
    switch (h) {
    case SL_AGENT_HEALTH_UP: return "healthy";
    case SL_AGENT_HEALTH_DOWN: return "unhealthy";
    default: return "unknown";
    }
}

static json_t *health_json(const struct health *h)
{
    return json_pack("{s:s, s:s, s:I, s:I}", "health", health_name(h->state),
                     "error", h->error, "checked_at",
                     (json_int_t)h->checked_ms, "rtt_ms",
                     (json_int_t)h->rtt_ms);
}

json_t *sl_agents_json(const struct sl_agents *as)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && as != NULL && i < as->n; i++) {
        const struct sl_agent *a = &as->agents[i];
        json_t *o = json_pack(
            "{s:s, s:s, s:o, s:o, s:O, s:I, s:I}", "name", a->cfg->name,
            "address", a->address, "tcp", health_json(&a->tcp), "udp",
            health_json(&a->udp), "info", a->info ? a->info : json_null(),
            "streams", (json_int_t)a->streams, "sessions",
            (json_int_t)a->sessions);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

char *sl_agents_metrics(const struct sl_agents *as)
{
    size_t cap = 1024 + (as != NULL ? as->n * 512 : 0), len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    if (as == NULL || as->n == 0)
        return out;
    /* Agent names are [A-Za-z0-9._-]: no label escaping needed. */
#define EMIT(...)                                                              \
    do {                                                                       \
        int n_ = snprintf(out + len, cap - len, __VA_ARGS__);                 \
        if (n_ > 0)                                                            \
            len += (size_t)n_ < cap - len ? (size_t)n_ : cap - len - 1;        \
    } while (0)
    EMIT("# HELP sluice_agent_up 1 while the agent answers its health "
         "probes for the protocol.\n# TYPE sluice_agent_up gauge\n");
    for (size_t i = 0; i < as->n; i++) {
        const struct sl_agent *a = &as->agents[i];
        EMIT("sluice_agent_up{agent=\"%s\",proto=\"tcp\"} %d\n"
             "sluice_agent_up{agent=\"%s\",proto=\"udp\"} %d\n",
             a->cfg->name, a->tcp.state == SL_AGENT_HEALTH_UP,
             a->cfg->name, a->udp.state == SL_AGENT_HEALTH_UP);
    }
    EMIT("# HELP sluice_agent_probe_rtt_seconds How long the last answered "
         "probe took.\n# TYPE sluice_agent_probe_rtt_seconds gauge\n");
    for (size_t i = 0; i < as->n; i++) {
        const struct sl_agent *a = &as->agents[i];
        EMIT("sluice_agent_probe_rtt_seconds{agent=\"%s\",proto=\"tcp\"} "
             "%.3f\n"
             "sluice_agent_probe_rtt_seconds{agent=\"%s\",proto=\"udp\"} "
             "%.3f\n",
             a->cfg->name, (double)a->tcp.rtt_ms / 1000, a->cfg->name,
             (double)a->udp.rtt_ms / 1000);
    }
    EMIT("# HELP sluice_agent_streams_total TCP streams opened through the "
         "agent.\n# TYPE sluice_agent_streams_total counter\n");
    for (size_t i = 0; i < as->n; i++)
        EMIT("sluice_agent_streams_total{agent=\"%s\"} %llu\n",
             as->agents[i].cfg->name,
             (unsigned long long)as->agents[i].streams);
    EMIT("# HELP sluice_agent_sessions_total DTLS sessions opened through "
         "the agent.\n# TYPE sluice_agent_sessions_total counter\n");
    for (size_t i = 0; i < as->n; i++)
        EMIT("sluice_agent_sessions_total{agent=\"%s\"} %llu\n",
             as->agents[i].cfg->name,
             (unsigned long long)as->agents[i].sessions);
#undef EMIT
    return out;
}

void sl_agents_log(const struct sl_agents *as, const struct sl_log *log,
                   enum sl_log_level level)
{
    if (as == NULL || !sl_log_on(log, level))
        return;
    for (size_t i = 0; i < as->n; i++) {
        const struct sl_agent *a = &as->agents[i];
        sl_log_write(log, level,
                     "agent \"%s\": stats: tcp %s, udp %s; streams %llu, "
                     "sessions %llu",
                     a->cfg->name, health_name(a->tcp.state),
                     health_name(a->udp.state),
                     (unsigned long long)a->streams,
                     (unsigned long long)a->sessions);
    }
}

/* ---------------------------------------------------- start and stop */

static int resolve(struct sl_agent *a)
{
    const struct sl_agent_config *c = a->cfg;
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", c->port);
    sl_addr_join_host_port(c->host, c->port, a->address, sizeof(a->address));
    /* Blocking, once, before traffic: like reading the config file. */
    int rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0) {
        sl_error(a->as->log, "agent \"%s\": cannot resolve %s: %s", c->name,
                 c->host, gai_strerror(rc));
        return SL_ECONFIG;
    }
    for (struct addrinfo *ai = res; ai != NULL && a->naddr < ADDRS_MAX;
         ai = ai->ai_next)
        if (ai->ai_addrlen <= sizeof(a->addr[0]))
            memcpy(&a->addr[a->naddr++], ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
    return a->naddr > 0 ? 0 : SL_ECONFIG;
}

static void agents_free(struct sl_agents *as)
{
    for (size_t i = 0; i < as->n; i++) {
        struct sl_agent *a = &as->agents[i];
        if (a->tls != NULL)
            SSL_CTX_set_app_data(a->tls, NULL);
        SSL_CTX_free(a->tls);
        SSL_CTX_free(a->dtls);
        SSL_SESSION_free(a->session);
        json_decref(a->info);
    }
    void (*done)(void *) = as->done;
    void *arg = as->done_arg;
    free(as->udp_in);
    free(as->udp_plain);
    free(as->agents);
    free(as);
    if (done != NULL)
        done(arg);
}

static void agents_unref(struct sl_agents *as)
{
    if (--as->open == 0 && as->stopping)
        agents_free(as);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sl_agent *a = h->data;
    agents_unref(a->as);
}

void sl_agents_stop(struct sl_agents *as, void (*done)(void *arg),
                    void *arg)
{
    if (as == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    if (as->stopping)
        return;
    as->stopping = 1;
    as->done = done;
    as->done_arg = arg;
    as->open++; /* held through this call */
    for (size_t i = 0; i < as->n; i++) {
        struct sl_agent *a = &as->agents[i];
        if (a->timer.type == UV_TIMER &&
            !uv_is_closing((uv_handle_t *)&a->timer))
            uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    }
    /* What is out now ends now, without reporting. */
    for (size_t i = 0; i < as->n; i++) {
        struct sl_agent *a = &as->agents[i];
        if (a->tprobe != NULL) {
            struct tprobe *p = a->tprobe;
            p->a = NULL;
            a->tprobe = NULL;
            tprobe_end(p, 0, "");
        }
        if (a->uprobe != NULL) {
            struct uprobe *p = a->uprobe;
            p->a = NULL;
            a->uprobe = NULL;
            uprobe_end(p, 0, "");
        }
        if (a->inforeq != NULL) {
            struct info_req *r = a->inforeq;
            r->a = NULL;
            a->inforeq = NULL;
            info_end(r);
        }
    }
    agents_unref(as);
}

int sl_agents_start(struct sl_ctx *ctx, const struct sl_config *cfg,
                    struct sl_agents **out)
{
    *out = NULL;
    if (cfg == NULL || cfg->nagents == 0)
        return 0;
    struct sl_agents *as = calloc(1, sizeof(*as));
    if (as == NULL)
        return UV_ENOMEM;
    as->ctx = ctx;
    as->log = &ctx->log;
    as->agents = calloc(cfg->nagents, sizeof(*as->agents));
    as->udp_in = malloc(UDP_READ_MAX);
    as->udp_plain = malloc(SL_DTLS_RECORD_MAX);
    if (as->agents == NULL || as->udp_in == NULL || as->udp_plain == NULL) {
        free(as->agents);
        free(as->udp_in);
        free(as->udp_plain);
        free(as);
        return UV_ENOMEM;
    }
    as->n = cfg->nagents;
    int rc = 0;
    for (size_t i = 0; i < as->n && rc == 0; i++) {
        struct sl_agent *a = &as->agents[i];
        a->as = as;
        a->cfg = &cfg->agents[i];
        if ((rc = resolve(a)) != 0)
            break;
        if ((a->tls = client_ctx(a, 0)) == NULL ||
            (a->dtls = client_ctx(a, 1)) == NULL)
            rc = SL_ECONFIG;
    }
    if (rc != 0) {
        agents_free(as);
        return rc;
    }
    for (size_t i = 0; i < as->n; i++) {
        struct sl_agent *a = &as->agents[i];
        uv_timer_init(ctx->loop, &a->timer);
        a->timer.data = a;
        as->open++;
        /* The first probes at once, then every interval. */
        uv_timer_start(&a->timer, on_health_timer, 0,
                       a->cfg->health_interval_ms);
        sl_info(as->log, "agent \"%s\": %s, health checks every %llu ms "
                "(timeout %llu ms, unhealthy after %u failures, healthy "
                "after %u successes)", a->cfg->name, a->address,
                (unsigned long long)a->cfg->health_interval_ms,
                (unsigned long long)a->cfg->health_timeout_ms,
                a->cfg->unhealthy_after, a->cfg->healthy_after);
    }
    *out = as;
    return 0;
}
