/* The agent port's TCP side: the TLS listener, mutual TLS, the ALPN
 * dispatch (http/1.1 to the node's REST API and GET /info through a
 * detached API server, sluice-stream/1 to a stream), and the streams
 * themselves: header, policy, dial, status, relay. What the DTLS side
 * shares with it (the policy and the resolver, the per-certificate caps,
 * the rate-limited handshake log, the server context) is exported
 * through node_agent.h. */
#include "node/node_agent.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "api/server.h"
#include "core/error.h"
#include "net/addr.h"
#include "net/relay.h"
#include "net/xprt.h"
#include "node/node_int.h"
#include "proto/acl.h"
#include "proto/agent_header.h"
#include "tls/tls_util.h"

#define AGENT_VERSION "0.1.0" /* as `sluice version` says */
#define LISTEN_BACKLOG 512
#define HANDSHAKES_MAX 512    /* TLS handshakes in progress at once */
#define CONNS_MAX 8192        /* connections at once, all kinds */
#define PEERS_MAX 1024        /* client certificates counted at once */
#define FAIL_SLOTS 256        /* sources whose failures are rate-limited */
#define FAIL_LOG_MS 60000
#define LINGER_MS 2000        /* after a refusal: read what comes, close */
#define ROUTES_MAX 32

struct fail_slot {
    struct sockaddr_storage ip; /* port zeroed */
    uint64_t logged_ms;
    uint64_t missed;
};

struct sl_node_agent {
    struct sl_node *node; /* NULL once stopping */
    uv_loop_t *loop;
    struct sl_log *log;
    SSL_CTX *tls;
    char *ca_file, *cert_file, *key_file;
    struct sl_acl *allow; /* extra targets, or NULL */
    int allow_public;
    struct sl_relay_pool *relay_pool; /* the node's */
    char name[128];
    char address[SL_ADDR_STRLEN];
    struct sockaddr_storage bound;
    unsigned max_streams, max_sessions;
    uint64_t idle_ms, udp_idle_ms;
    uint64_t started_ms;

    uv_tcp_t listener;
    struct sl_api_server *api;
    struct sl_api_route routes[ROUTES_MAX];
    size_t nroutes;
    struct node_dtls *dtls;

    struct sl_link conns;
    size_t nconns, nhandshakes, nstreams;
    uint64_t streams_total, refused_total, bad_total;
    unsigned long next_id;
    struct sl_agent_peer *peers;
    size_t npeers;
    struct fail_slot fails[FAIL_SLOTS];

    int open; /* listener + conns + dtls, until closed */
    int stopping;
    void (*done)(void *);
    void *done_arg;
};

enum aphase {
    APH_HANDSHAKE, /* TLS handshake, then ALPN */
    APH_HEADER,    /* reading the stream header */
    APH_RESOLVE,
    APH_CONNECT,
    APH_STATUS,    /* writing the status, then relay or linger */
    APH_LINGER,    /* refused: reading what the client still sends */
    APH_RELAY,
    APH_HTTP,      /* the API server owns the transport */
    APH_CLOSING,
};

struct agent_conn {
    struct sl_link link;
    struct sl_node_agent *agent;
    unsigned long id;
    enum aphase phase;
    int refs; /* open handles, the resolver, and one until closing */
    struct sl_xprt tls; /* the client, TLS over TCP */
    struct sl_xprt up;  /* the target */
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct sl_agent_dial dial;
    size_t next_target;
    uint8_t hdr[SL_AGENT_HDR_LEN];
    size_t hdr_len;
    char sink[512]; /* what lingering reads go into */
    struct sl_agent_hdr req;
    uint8_t status;
    struct sl_agent_peer *peer; /* counted in its streams, or NULL */
    struct sl_relay relay;
    uint64_t started_ms, progress_ms;
    char client[SL_ADDR_STRLEN];
    char target[SL_AGENT_HOST_MAX + 16];
    struct sockaddr_storage client_sa;
    unsigned up_open : 1;
    unsigned retrying : 1;
    unsigned resolving : 1;
    unsigned handshaking : 1; /* counted in nhandshakes */
    unsigned streaming : 1;   /* counted in nstreams */
    /* APH_HTTP: the API's provided transport and its callbacks. */
    struct sl_xprt *api_x;
    uv_alloc_cb api_alloc;
    uv_read_cb api_read;
    uv_close_cb api_close;
};

static void conn_close(struct agent_conn *c, int reason);
static void agent_unref(struct sl_node_agent *a);

#define container_of(p, type, member)                                          \
    ((type *)(void *)((char *)(p)-offsetof(type, member)))

struct sl_log *sl_agent_log(struct sl_node_agent *a)
{
    return a->log;
}

uv_loop_t *sl_agent_loop(struct sl_node_agent *a)
{
    return a->loop;
}

unsigned sl_agent_max_sessions(const struct sl_node_agent *a)
{
    return a->max_sessions;
}

uint64_t sl_agent_udp_idle_ms(const struct sl_node_agent *a)
{
    return a->udp_idle_ms;
}

const char *sl_node_agent_address(const struct sl_node_agent *a)
{
    return a != NULL ? a->address : "";
}

/* ------------------------------------------------------ the TLS context */

static const unsigned char alpn_ours[] = {
    15, 's', 'l', 'u', 'i', 'c', 'e', '-', 's', 't', 'r', 'e', 'a', 'm',
    '/', '1', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    /* Ours in our order: a client offering both gets the stream. */
    if (SSL_select_next_proto(&sel, outlen, alpn_ours, sizeof(alpn_ours), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* served as http/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *sl_agent_ctx_new(struct sl_node_agent *a, const SSL_METHOD *method)
{
    char err[512], reason[200];
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509_NAME) *cas = NULL;
    int dtls = method == DTLS_server_method();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        sl_error(a->log, "agent: TLS context: %s",
                 sl_tls_ossl_reason(reason, sizeof(reason)));
        return NULL;
    }
    if (sl_tls_load_certs(a->cert_file, &leaf, &chain, err, sizeof(err)) !=
            0 ||
        sl_tls_load_key(a->key_file, &key, err, sizeof(err)) != 0) {
        sl_error(a->log, "agent: %s", err);
        goto fail;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        sl_error(a->log, "agent: %s does not match %s (%s)", a->key_file,
                 a->cert_file, sl_tls_ossl_reason(reason, sizeof(reason)));
        goto fail;
    }
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1) {
            sl_error(a->log, "agent: %s: chain: %s", a->cert_file,
                     sl_tls_ossl_reason(reason, sizeof(reason)));
            goto fail;
        }
    }
    if (SSL_CTX_load_verify_locations(ctx, a->ca_file, NULL) != 1 ||
        (cas = SSL_load_client_CA_file(a->ca_file)) == NULL) {
        sl_error(a->log, "agent: %s: no CA certificate read (%s)",
                 a->ca_file, sl_tls_ossl_reason(reason, sizeof(reason)));
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, cas); /* taken over */
    SSL_CTX_set_min_proto_version(ctx, dtls ? DTLS1_2_VERSION
                                            : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* AES-128-GCM first: as strong as the streams need, and a seventh
     * faster than AES-256 per byte where both have AES-NI. */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AES128GCM:ECDHE+CHACHA20:"
                                 "ECDHE+AES256GCM");
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
                                  "TLS_CHACHA20_POLY1305_SHA256:"
                                  "TLS_AES_256_GCM_SHA384");
    SSL_CTX_set1_groups_list(ctx, "X25519:P-256");
    /* No certificate, or one the CA did not issue: the handshake fails
     * before any byte of ours. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice-agent",
                                   12);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!dtls)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return ctx;
fail:
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* ---------------------------------------------- failures, peers, caps */

int sl_agent_fail_should_log(struct sl_node_agent *a,
                             const struct sockaddr *sa, uint64_t *missed)
{
    struct sockaddr_storage ip;
    uint64_t now = uv_now(a->loop);
    struct fail_slot *slot = NULL, *oldest = &a->fails[0];
    memset(&ip, 0, sizeof(ip));
    memcpy(&ip, sa, sl_addr_len(sa));
    sl_addr_set_port((struct sockaddr *)&ip, 0);
    *missed = 0;
    for (size_t i = 0; i < FAIL_SLOTS; i++) {
        struct fail_slot *s = &a->fails[i];
        if (s->logged_ms != 0 &&
            sl_addr_equal((struct sockaddr *)&s->ip, (struct sockaddr *)&ip)) {
            slot = s;
            break;
        }
        if (s->logged_ms < oldest->logged_ms)
            oldest = s;
    }
    if (slot != NULL && now - slot->logged_ms < FAIL_LOG_MS) {
        slot->missed++;
        return 0;
    }
    if (slot == NULL) {
        /* The least recent source gives its slot up: a flood of sources
         * is logged once a minute each at worst. */
        slot = oldest;
        memset(slot, 0, sizeof(*slot));
        slot->ip = ip;
    }
    *missed = slot->missed;
    slot->missed = 0;
    slot->logged_ms = now ? now : 1;
    return 1;
}

struct sl_agent_peer *sl_agent_peer_of(struct sl_node_agent *a, SSL *ssl)
{
    uint8_t fp[32];
    unsigned n = 0;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    int ok = cert != NULL && X509_digest(cert, EVP_sha256(), fp, &n) == 1 &&
             n == sizeof(fp);
    X509_free(cert);
    if (!ok)
        return NULL;
    for (struct sl_agent_peer *p = a->peers; p != NULL; p = p->next)
        if (memcmp(p->fp, fp, sizeof(fp)) == 0)
            return p;
    if (a->npeers >= PEERS_MAX)
        return NULL;
    struct sl_agent_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    memcpy(p->fp, fp, sizeof(fp));
    p->next = a->peers;
    a->peers = p;
    a->npeers++;
    return p;
}

void sl_agent_peer_release(struct sl_node_agent *a, struct sl_agent_peer *p)
{
    if (p == NULL || p->streams > 0 || p->sessions > 0)
        return;
    for (struct sl_agent_peer **pp = &a->peers; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            a->npeers--;
            free(p);
            return;
        }
    }
}

/* ---------------------------------------------------------- the policy */

static int allowed(const struct sl_node_agent *a, const struct sockaddr *sa)
{
    return a->allow_public || sl_addr_is_private(sa) ||
           (a->allow != NULL && sl_acl_allows(a->allow, sa));
}

static void keep(struct sl_agent_dial *d, const struct sockaddr *sa)
{
    struct sockaddr_storage v4;
    if (sl_addr_unmap(sa, &v4))
        sa = (struct sockaddr *)&v4;
    if (!allowed(d->agent, sa)) {
        d->refused = 1;
        return;
    }
    if (d->n < SL_AGENT_TARGETS_MAX)
        memcpy(&d->addr[d->n++], sa, sl_addr_len(sa));
}

static int verdict(const struct sl_agent_dial *d)
{
    return d->n > 0       ? SL_AGENT_OK
           : d->refused   ? SL_AGENT_REFUSED
                          : SL_AGENT_DIAL_FAILED;
}

static void on_dial_resolved(uv_getaddrinfo_t *req, int status,
                             struct addrinfo *res)
{
    struct sl_agent_dial *d = container_of(req, struct sl_agent_dial, gai);
    for (struct addrinfo *ai = res; status == 0 && ai != NULL;
         ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            keep(d, ai->ai_addr);
    uv_freeaddrinfo(res);
    d->status = status == 0 ? verdict(d) : SL_AGENT_DIAL_FAILED;
    d->cb(d, d->status);
}

int sl_agent_dial_resolve(struct sl_agent_dial *d, const char *host,
                          uint16_t port, int socktype)
{
    struct sockaddr_storage lit;
    d->n = 0;
    d->refused = 0;
    d->socktype = socktype;
    if (sl_addr_parse_ip(host, port, &lit) == 0) {
        keep(d, (struct sockaddr *)&lit);
        d->status = verdict(d);
        return 0;
    }
    struct addrinfo hints = {0};
    char ports[8];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(ports, sizeof(ports), "%u", port);
    int rc = uv_getaddrinfo(d->agent->loop, &d->gai, on_dial_resolved, host,
                            ports, &hints);
    return rc == 0 ? 1 : rc;
}

void sl_agent_dial_cancel(struct sl_agent_dial *d)
{
    uv_cancel((uv_req_t *)&d->gai);
}

/* ------------------------------------------------------- connections */

static void conn_event(struct agent_conn *c, enum sl_log_level level,
                       const char *event, const char *reason,
                       const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void conn_event(struct agent_conn *c, enum sl_log_level level,
                       const char *event, const char *reason,
                       const char *fmt, ...)
{
    if (!sl_log_on(c->agent->log, level))
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sl_log_field f[] = {
        SL_LOG_STR("route", "agent"),
        SL_LOG_NUM("conn", c->id),
        SL_LOG_STR("client", c->client),
        SL_LOG_STR("target", c->target[0] ? c->target : NULL),
        SL_LOG_STR("event", event),
        SL_LOG_STR("reason", reason),
    };
    sl_log_event(c->agent->log, level, f, 6, "%s", msg);
}

static void conn_free(struct agent_conn *c)
{
    struct sl_node_agent *a = c->agent;
    if (c->handshaking)
        a->nhandshakes--;
    if (c->streaming)
        a->nstreams--;
    if (c->peer != NULL) {
        c->peer->streams--;
        sl_agent_peer_release(a, c->peer);
    }
    sl_list_del(&c->link);
    a->nconns--;
    free(c);
    agent_unref(a);
}

static void conn_unref(struct agent_conn *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void dial_next(struct agent_conn *c);

static void on_handle_closed(uv_handle_t *h)
{
    struct agent_conn *c = h->data;
    if (h == (uv_handle_t *)&c->up.tcp) {
        c->up_open = 0;
        if (c->retrying && c->phase == APH_CONNECT) {
            c->retrying = 0;
            c->refs--;
            dial_next(c);
            return;
        }
    }
    conn_unref(c);
}

static void close_xprt(struct agent_conn *c, struct sl_xprt *x)
{
    if (!sl_xprt_is_closing(x)) {
        x->tcp.data = c;
        sl_xprt_close(x, on_handle_closed);
    }
}

static void conn_close(struct agent_conn *c, int reason)
{
    (void)reason;
    if (c->phase == APH_CLOSING || c->phase == APH_HTTP)
        return; /* an HTTP connection is the API server's to close */
    if (c->phase == APH_RELAY) {
        sl_relay_abort(&c->relay, reason);
        return;
    }
    c->phase = APH_CLOSING;
    if (c->resolving)
        sl_agent_dial_cancel(&c->dial);
    close_xprt(c, &c->tls);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->up_open)
        close_xprt(c, &c->up);
    conn_unref(c); /* the connection's own reference */
}

/* ---- refusals: the status, close_notify, then a short linger ---------- */

static void on_linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct agent_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->sink, sizeof(c->sink));
}

static void on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct agent_conn *c = s->data;
    (void)buf;
    if (n < 0)
        conn_close(c, (int)n);
}

static void on_linger_timer(uv_timer_t *t)
{
    conn_close(t->data, UV_ETIMEDOUT);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void linger(struct agent_conn *c)
{
    /* Closing with unread bytes would reset the connection, and a reset
     * may destroy the status before the client reads it: say goodbye
     * (close_notify, FIN) and read what still comes for a moment. */
    c->phase = APH_LINGER;
    uv_timer_start(&c->timer, on_linger_timer, LINGER_MS, 0);
    if (sl_xprt_shutdown(&c->sreq, &c->tls, on_shutdown) != 0 ||
        sl_xprt_read_start(&c->tls, on_linger_alloc, on_linger_read) != 0)
        conn_close(c, UV_EPIPE);
}

/* ---- relay ------------------------------------------------------------ */

static void on_relay_done(struct sl_relay *r, int reason)
{
    struct agent_conn *c = container_of(r, struct agent_conn, relay);
    uint64_t secs = (uv_now(c->agent->loop) - c->started_ms) / 1000;
    conn_event(c, SL_LOG_DEBUG, "closed", reason ? sl_strerror(reason) : "done",
               "agent: stream #%lu from %s to %s closed after %llu s (in "
               "%llu bytes, out %llu bytes)%s%s",
               c->id, c->client, c->target, (unsigned long long)secs,
               (unsigned long long)sl_relay_bytes(r, SL_RELAY_UP),
               (unsigned long long)sl_relay_bytes(r, SL_RELAY_DOWN),
               reason ? ": " : "", reason ? sl_strerror(reason) : "");
    c->phase = APH_CLOSING;
    c->up_open = 0;
    c->refs -= 2; /* tls and up, closed by the relay */
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    conn_unref(c); /* the connection's own reference */
}

static int on_relay_read(struct sl_relay *r, size_t n, enum sl_relay_dir dir)
{
    struct agent_conn *c = container_of(r, struct agent_conn, relay);
    (void)n;
    (void)dir;
    c->progress_ms = uv_now(c->agent->loop);
    return 0;
}

/* Silence ends a stream; reads only stamp progress_ms, and the timer
 * sleeps again for what is left when it fires early. */
static void on_idle_timer(uv_timer_t *t)
{
    struct agent_conn *c = t->data;
    if (c->phase != APH_RELAY)
        return;
    uint64_t now = uv_now(c->agent->loop), idle = c->agent->idle_ms;
    if (now - c->progress_ms < idle) {
        uv_timer_start(&c->timer, on_idle_timer,
                       idle - (now - c->progress_ms), 0);
        return;
    }
    conn_event(c, SL_LOG_INFO, "closed", "idle timeout",
               "agent: stream #%lu from %s to %s closed: idle timeout (no "
               "byte either way for %llu ms)",
               c->id, c->client, c->target, (unsigned long long)idle);
    conn_close(c, UV_ETIMEDOUT);
}

static void start_relay(struct agent_conn *c)
{
    c->phase = APH_RELAY;
    c->progress_ms = uv_now(c->agent->loop);
    uv_timer_start(&c->timer, on_idle_timer, c->agent->idle_ms, 0);
    c->relay.data = c;
    c->relay.on_read = on_relay_read;
    c->relay.on_done = on_relay_done;
    /* The node's relay settings and read buffers: the node outlives its
     * agent (it waits for sl_node_agent_stop's done). */
    struct sl_relay_opts opts = {.buf_size = SL_NODE_RELAY_BUF,
                                 .high_water = 2 * SL_NODE_RELAY_BUF,
                                 .pool = c->agent->relay_pool};
    /* On failure the relay closes both and calls on_relay_done. */
    sl_relay_start(&c->relay, &c->tls, &c->up, &opts);
}

/* ---- status ----------------------------------------------------------- */

static void on_status_written(uv_write_t *req, int status)
{
    struct agent_conn *c = container_of(req, struct agent_conn, wreq);
    if (c->phase != APH_STATUS)
        return; /* closing */
    if (status < 0) {
        conn_close(c, status);
        return;
    }
    if (c->status == SL_AGENT_OK && !(c->req.flags & SL_AGENT_FLAG_PROBE)) {
        start_relay(c);
        return;
    }
    if (c->up_open) {
        /* A probe that dialled its target: the path is tested. */
        close_xprt(c, &c->up);
        c->up_open = 0;
    }
    linger(c);
}

static void answer(struct agent_conn *c, uint8_t status, const char *why)
{
    struct sl_node_agent *a = c->agent;
    c->status = status;
    c->phase = APH_STATUS;
    uv_timer_stop(&c->timer);
    int probe = (c->req.flags & SL_AGENT_FLAG_PROBE) != 0;
    if (status == SL_AGENT_OK) {
        if (!probe)
            a->streams_total++;
        conn_event(c, SL_LOG_DEBUG, probe ? "probe" : "connected", NULL,
                   "agent: %s #%lu from %s%s%s: ok",
                   probe ? "probe" : "stream", c->id, c->client,
                   c->target[0] ? " to " : "", c->target);
    } else {
        if (status == SL_AGENT_BAD_HEADER)
            a->bad_total++;
        else
            a->refused_total++;
        conn_event(c, SL_LOG_INFO, "refused", sl_agent_status_name(status),
                   "agent: %s #%lu from %s%s%s refused: %s (%s)",
                   probe ? "probe" : "stream", c->id, c->client,
                   c->target[0] ? " to " : "", c->target,
                   sl_agent_status_name(status), why);
    }
    uv_buf_t b = uv_buf_init((char *)&c->status, 1);
    int rc = sl_xprt_write(&c->wreq, &c->tls, &b, 1, on_status_written);
    if (rc != 0)
        conn_close(c, rc);
}

/* ---- dial ------------------------------------------------------------- */

static void on_dial_timeout(uv_timer_t *t)
{
    struct agent_conn *c = t->data;
    if (c->phase == APH_RESOLVE || c->phase == APH_CONNECT) {
        if (c->up_open) {
            close_xprt(c, &c->up);
            c->up_open = 0;
            c->retrying = 0;
        }
        answer(c, SL_AGENT_TIMEOUT, "no answer within 10 s");
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    struct agent_conn *c = req->data;
    if (c->phase != APH_CONNECT)
        return;
    if (status == 0) {
        uv_tcp_nodelay(&c->up.tcp, 1);
        answer(c, SL_AGENT_OK, "");
        return;
    }
    if (c->next_target < c->dial.n) {
        c->retrying = 1;
        close_xprt(c, &c->up);
        return;
    }
    close_xprt(c, &c->up);
    c->up_open = 0;
    answer(c, SL_AGENT_DIAL_FAILED, sl_strerror(status));
}

static void dial_next(struct agent_conn *c)
{
    int err = UV_EAI_NONAME;
    while (c->next_target < c->dial.n) {
        struct sockaddr *sa = (struct sockaddr *)&c->dial.addr[c->next_target++];
        sl_xprt_init(&c->up);
        if ((err = uv_tcp_init(c->agent->loop, &c->up.tcp)) != 0)
            break;
        c->up.tcp.data = c;
        c->up_open = 1;
        c->refs++;
        c->creq.data = c;
        err = uv_tcp_connect(&c->creq, &c->up.tcp, sa, on_connected);
        if (err == 0)
            return;
        close_xprt(c, &c->up);
        c->up_open = 0;
    }
    answer(c, SL_AGENT_DIAL_FAILED, sl_strerror(err));
}

static void after_resolve(struct agent_conn *c, int status)
{
    if (status != SL_AGENT_OK) {
        answer(c, (uint8_t)status,
               status == SL_AGENT_REFUSED
                   ? "not a private address nor one --agent-allow names"
                   : "cannot resolve the target");
        return;
    }
    if (c->req.proto == SL_AGENT_PROTO_UDP) {
        /* A UDP probe over TCP: the target resolves and is allowed,
         * which is all a datagram path can show without DTLS. */
        answer(c, SL_AGENT_OK, "");
        return;
    }
    c->phase = APH_CONNECT;
    c->next_target = 0;
    dial_next(c);
}

static void on_resolved(struct sl_agent_dial *d, int status)
{
    struct agent_conn *c = container_of(d, struct agent_conn, dial);
    c->resolving = 0;
    if (c->phase != APH_RESOLVE) {
        conn_unref(c);
        return;
    }
    c->refs--;
    after_resolve(c, status);
}

static void on_header(struct agent_conn *c)
{
    struct sl_node_agent *a = c->agent;
    const char *why = "";
    sl_xprt_read_stop(&c->tls);
    if (sl_agent_hdr_decode(c->hdr, c->hdr_len, &c->req, &why) != 0) {
        memset(&c->req, 0, sizeof(c->req));
        answer(c, SL_AGENT_BAD_HEADER, why);
        return;
    }
    if (c->req.host[0] != '\0')
        sl_addr_join_host_port(c->req.host, c->req.port, c->target,
                               sizeof(c->target));
    if (c->req.flags & SL_AGENT_FLAG_PROBE) {
        if (c->req.host[0] == '\0') {
            answer(c, SL_AGENT_OK, "");
            return;
        }
    } else {
        struct sl_agent_peer *p = sl_agent_peer_of(a, sl_xprt_ssl(&c->tls));
        if (p == NULL || p->streams >= a->max_streams) {
            answer(c, SL_AGENT_BUSY, p == NULL ? "no room for another "
                                                 "client certificate"
                                               : "streams per client "
                                                 "certificate");
            if (p != NULL)
                sl_agent_peer_release(a, p);
            return;
        }
        p->streams++;
        c->peer = p;
    }
    c->phase = APH_RESOLVE;
    uv_timer_start(&c->timer, on_dial_timeout, SL_AGENT_DIAL_TIMEOUT_MS, 0);
    c->dial.agent = a;
    c->dial.cb = on_resolved;
    int rc = sl_agent_dial_resolve(&c->dial, c->req.host, c->req.port,
                                   SOCK_STREAM);
    if (rc == 0) {
        after_resolve(c, c->dial.status);
    } else if (rc == 1) {
        c->resolving = 1;
        c->refs++;
    } else {
        answer(c, SL_AGENT_DIAL_FAILED, sl_strerror(rc));
    }
}

static void on_hdr_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct agent_conn *c = h->data;
    (void)hint;
    /* Exactly what the header lacks: payload the client sent right
     * behind it stays in the transport for the relay. */
    *buf = uv_buf_init((char *)c->hdr + c->hdr_len,
                       (unsigned)(SL_AGENT_HDR_LEN - c->hdr_len));
}

static void on_hdr_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct agent_conn *c = s->data;
    (void)buf;
    if (c->phase != APH_HEADER || n == 0)
        return;
    if (n < 0) {
        conn_event(c, SL_LOG_DEBUG, "closed", sl_strerror((int)n),
                   "agent: conn #%lu from %s closed before its header (%s)",
                   c->id, c->client, sl_strerror((int)n));
        conn_close(c, (int)n);
        return;
    }
    c->hdr_len += (size_t)n;
    if (c->hdr_len == SL_AGENT_HDR_LEN)
        on_header(c);
}

static void on_header_timeout(uv_timer_t *t)
{
    struct agent_conn *c = t->data;
    if (c->phase == APH_HANDSHAKE) {
        conn_event(c, SL_LOG_DEBUG, "closed", "handshake timeout",
                   "agent: conn #%lu from %s: no TLS handshake within 10 s",
                   c->id, c->client);
        conn_close(c, UV_ETIMEDOUT);
    } else if (c->phase == APH_HEADER) {
        sl_xprt_read_stop(&c->tls);
        memset(&c->req, 0, sizeof(c->req));
        answer(c, SL_AGENT_TIMEOUT, "no whole header within 10 s");
    }
}

/* ---- http/1.1: the API server reads and writes through us ------------- */

static struct agent_conn *fwd_of(const struct sl_xprt *x)
{
    return x->impl;
}

static void fwd_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct agent_conn *c = h->data;
    c->api_alloc((uv_handle_t *)&c->api_x->tcp, hint, buf);
}

static void fwd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct agent_conn *c = s->data;
    c->api_read((uv_stream_t *)&c->api_x->tcp, n, buf);
}

static int fwd_read_start(struct sl_xprt *x, uv_alloc_cb alloc_cb,
                          uv_read_cb read_cb)
{
    struct agent_conn *c = fwd_of(x);
    c->api_alloc = alloc_cb;
    c->api_read = read_cb;
    return sl_xprt_read_start(&c->tls, fwd_alloc, fwd_read);
}

static int fwd_read_stop(struct sl_xprt *x)
{
    return sl_xprt_read_stop(&fwd_of(x)->tls);
}

static int fwd_write(uv_write_t *req, struct sl_xprt *x,
                     const uv_buf_t bufs[], unsigned nbufs, uv_write_cb cb)
{
    return sl_xprt_write(req, &fwd_of(x)->tls, bufs, nbufs, cb);
}

static int fwd_shutdown(uv_shutdown_t *req, struct sl_xprt *x,
                        uv_shutdown_cb cb)
{
    return sl_xprt_shutdown(req, &fwd_of(x)->tls, cb);
}

static void on_fwd_closed(uv_handle_t *h)
{
    struct agent_conn *c = h->data;
    struct sl_xprt *api_x = c->api_x;
    uv_close_cb cb = c->api_close;
    c->api_x = NULL;
    c->phase = APH_CLOSING;
    if (cb != NULL)
        cb((uv_handle_t *)&api_x->tcp);
    conn_unref(c); /* the TLS transport's reference */
    conn_unref(c); /* the connection's own */
}

static void fwd_close(struct sl_xprt *x, uv_close_cb cb)
{
    struct agent_conn *c = fwd_of(x);
    if (c == NULL || c->api_close != NULL || sl_xprt_is_closing(&c->tls))
        return;
    c->api_close = cb;
    c->tls.tcp.data = c;
    sl_xprt_close(&c->tls, on_fwd_closed);
}

static size_t fwd_queue_size(const struct sl_xprt *x)
{
    return sl_xprt_write_queue_size(&fwd_of(x)->tls);
}

static int fwd_is_closing(const struct sl_xprt *x)
{
    const struct agent_conn *c = fwd_of(x);
    return c == NULL || c->api_close != NULL;
}

static const struct sl_xprt_ops fwd_ops = {
    .read_start = fwd_read_start,
    .read_stop = fwd_read_stop,
    .write = fwd_write,
    .shutdown = fwd_shutdown,
    .close = fwd_close,
    .write_queue_size = fwd_queue_size,
    .is_closing = fwd_is_closing,
};

static int fwd_attach(struct sl_xprt *x, void *arg)
{
    struct agent_conn *c = arg;
    memset(x, 0, sizeof(*x));
    x->tcp.loop = c->agent->loop;
    x->ops = &fwd_ops;
    x->impl = c;
    c->api_x = x;
    return 0;
}

static void serve_http(struct agent_conn *c)
{
    c->phase = APH_HTTP;
    /* The API server's own timer bounds requests from here on. */
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    c->tls.tcp.data = c;
    int rc = sl_api_server_serve(c->agent->api, c->client, fwd_attach, c);
    if (rc != 0) {
        c->phase = APH_HEADER; /* not the API's: ours to close */
        conn_close(c, rc);
    }
}

/* ---- the handshake ---------------------------------------------------- */

static void on_handshake(struct sl_xprt *x, int status)
{
    struct agent_conn *c = x->tcp.data;
    struct sl_node_agent *a = c->agent;
    if (c->handshaking) {
        c->handshaking = 0;
        a->nhandshakes--;
    }
    if (c->phase != APH_HANDSHAKE)
        return;
    if (status != 0) {
        uint64_t missed = 0;
        const char *why = status == UV_EPROTO ? sl_xprt_error(x)
                                              : sl_strerror(status);
        if (sl_agent_fail_should_log(a, (struct sockaddr *)&c->client_sa,
                                     &missed))
            conn_event(c, SL_LOG_WARN, "refused", "tls handshake",
                       "agent: TLS handshake from %s failed: %s (refused; "
                       "%llu more failure(s) from there since the last "
                       "such line)",
                       c->client, why[0] ? why : "closed",
                       (unsigned long long)missed);
        conn_close(c, status);
        return;
    }
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(sl_xprt_ssl(x), &sel, &sel_len);
    if (sel_len == strlen(SL_AGENT_ALPN_STREAM) &&
        memcmp(sel, SL_AGENT_ALPN_STREAM, sel_len) == 0) {
        c->phase = APH_HEADER;
        c->streaming = 1;
        a->nstreams++;
        if (sl_xprt_read_start(&c->tls, on_hdr_alloc, on_hdr_read) != 0)
            conn_close(c, UV_EIO);
        return;
    }
    if (a->api == NULL) {
        conn_close(c, UV_ENOTSUP);
        return;
    }
    serve_http(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct sl_node_agent *a = ls->data;
    if (status < 0 || a->stopping) {
        if (status < 0)
            sl_warn(a->log, "agent: accept failed: %s", sl_strerror(status));
        return;
    }
    struct agent_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* libuv stops watching a listener left with a pending connection:
         * take it and drop it. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t != NULL && uv_tcp_init(a->loop, t) == 0) {
            (void)uv_accept(ls, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, (uv_close_cb)free);
        } else {
            free(t);
        }
        return;
    }
    c->agent = a;
    c->id = ++a->next_id;
    c->phase = APH_HANDSHAKE;
    c->started_ms = uv_now(a->loop);
    sl_xprt_init(&c->tls);
    uv_tcp_init(a->loop, &c->tls.tcp);
    uv_timer_init(a->loop, &c->timer);
    c->tls.tcp.data = c;
    c->timer.data = c;
    c->refs = 3; /* tls, timer, and itself */
    sl_list_add(&a->conns, &c->link);
    a->nconns++;
    a->open++;
    if (uv_accept(ls, (uv_stream_t *)&c->tls.tcp) != 0) {
        conn_close(c, UV_EIO);
        return;
    }
    int len = sizeof(c->client_sa);
    struct sockaddr_storage v4;
    if (uv_tcp_getpeername(&c->tls.tcp, (struct sockaddr *)&c->client_sa,
                           &len) == 0) {
        if (sl_addr_unmap((struct sockaddr *)&c->client_sa, &v4))
            c->client_sa = v4;
        sl_addr_str((struct sockaddr *)&c->client_sa, c->client);
    } else {
        snprintf(c->client, sizeof(c->client), "?");
    }
    if (a->nconns > CONNS_MAX || a->nhandshakes >= HANDSHAKES_MAX) {
        conn_event(c, SL_LOG_DEBUG, "refused", "connection limit",
                   "agent: conn #%lu from %s refused: %s", c->id, c->client,
                   a->nconns > CONNS_MAX ? "too many connections"
                                         : "too many handshakes at once");
        conn_close(c, SL_ELIMIT);
        return;
    }
    uv_tcp_nodelay(&c->tls.tcp, 1);
    uv_timer_start(&c->timer, on_header_timeout, SL_AGENT_HEADER_TIMEOUT_MS,
                   0);
    SSL *ssl = SSL_new(a->tls);
    c->handshaking = 1;
    a->nhandshakes++;
    if (ssl == NULL) {
        conn_close(c, UV_ENOMEM);
        return;
    }
    SSL_set_accept_state(ssl);
    if (sl_xprt_tls_start(&c->tls, ssl, NULL, 0, on_handshake) != 0)
        conn_close(c, UV_ENOMEM);
}

/* ------------------------------------------------------------- /info */

static void h_info(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    struct sl_node_agent *a = node->agent;
    if (a == NULL) {
        sl_api_reply_error(req, 503, "The agent is stopping");
        return;
    }
    size_t sessions = a->dtls != NULL ? sl_node_dtls_sessions(a->dtls) : 0;
    json_t *streams = json_pack("[s]", "tcp");
    if (streams != NULL && a->dtls != NULL)
        json_array_append_new(streams, json_string("udp"));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:o, s:{s:s, s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:{s:I, s:I}}",
        "version", AGENT_VERSION, "name", a->name, "protocol",
        SL_AGENT_ALPN_STREAM, "streams", streams, "health", "status", "ok",
        "uptime_s", (json_int_t)((uv_now(a->loop) - a->started_ms) / 1000),
        "tcp_streams", (json_int_t)a->nstreams, "udp_sessions",
        (json_int_t)sessions, "streams_total", (json_int_t)a->streams_total,
        "refused_total", (json_int_t)a->refused_total, "bad_headers_total",
        (json_int_t)a->bad_total, "limits", "streams_per_client",
        (json_int_t)a->max_streams, "sessions_per_client",
        (json_int_t)a->max_sessions);
    if (o == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    sl_api_reply_json(req, 200, o);
}

/* /info, then the node's REST routes (not its dashboard: that page is
 * for the loopback API). Every handler gets the node. */
static int make_routes(struct sl_node_agent *a)
{
    size_t nrest = 0;
    const struct sl_api_route *rest = sl_node_api_routes(&nrest);
    if (nrest + 1 > ROUTES_MAX)
        return SL_ELIMIT;
    a->routes[0] = (struct sl_api_route){"GET", "/info", h_info};
    for (size_t i = 0; i < nrest; i++)
        a->routes[i + 1] = rest[i];
    a->nroutes = nrest + 1;
    return 0;
}

/* ------------------------------------------------------ start and stop */

static void agent_free(struct sl_node_agent *a)
{
    while (a->peers != NULL) {
        struct sl_agent_peer *p = a->peers;
        a->peers = p->next;
        free(p);
    }
    SSL_CTX_free(a->tls);
    sl_acl_free(a->allow);
    free(a->ca_file);
    free(a->cert_file);
    free(a->key_file);
    void (*done)(void *) = a->done;
    void *arg = a->done_arg;
    free(a);
    if (done != NULL)
        done(arg);
}

static void agent_unref(struct sl_node_agent *a)
{
    if (--a->open == 0 && a->stopping)
        agent_free(a);
}

static void on_listener_closed(uv_handle_t *h)
{
    agent_unref(h->data);
}

static void on_dtls_stopped(void *arg)
{
    agent_unref(arg);
}

void sl_node_agent_stop(struct sl_node_agent *a, void (*done)(void *arg),
                        void *arg)
{
    if (a == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    if (a->stopping)
        return;
    a->stopping = 1;
    a->node = NULL;
    a->done = done;
    a->done_arg = arg;
    a->open++; /* held through this call */
    /* HTTP connections are the API server's: it closes them. */
    if (a->api != NULL) {
        sl_api_server_close(a->api);
        a->api = NULL;
    }
    for (struct sl_link *l = a->conns.next, *next; l != &a->conns; l = next) {
        next = l->next;
        conn_close(container_of(l, struct agent_conn, link), UV_ECANCELED);
    }
    if (a->dtls != NULL) {
        struct node_dtls *d = a->dtls;
        a->dtls = NULL;
        sl_node_dtls_stop(d, on_dtls_stopped, a);
    }
    if (!uv_is_closing((uv_handle_t *)&a->listener))
        uv_close((uv_handle_t *)&a->listener, on_listener_closed);
    agent_unref(a);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

int sl_node_agent_start(struct sl_node *node,
                        const struct sl_node_agent_opts *o,
                        struct sl_node_agent **out)
{
    struct sockaddr_storage ss;
    int rc;
    *out = NULL;
    if (o->listen == NULL || sl_addr_parse(o->listen, &ss) != 0) {
        sl_error(&node->ctx->log, "agent: --agent %s is not IP:PORT "
                 "([v6]:PORT for IPv6)", o->listen ? o->listen : "");
        return SL_ECONFIG;
    }
    if (o->ca_file == NULL || o->cert_file == NULL || o->key_file == NULL) {
        sl_error(&node->ctx->log, "agent: needs --agent-certs DIR, or "
                 "--agent-ca, --agent-cert and --agent-key");
        return SL_ECONFIG;
    }
    struct sl_node_agent *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return UV_ENOMEM;
    a->node = node;
    a->loop = node->ctx->loop;
    a->log = &node->ctx->log;
    a->allow_public = node->allow_public;
    a->relay_pool = &node->relay_pool;
    a->max_streams = o->max_streams ? o->max_streams
                                    : SL_AGENT_DEFAULT_MAX_STREAMS;
    a->max_sessions = o->max_sessions ? o->max_sessions
                                      : SL_AGENT_DEFAULT_MAX_SESSIONS;
    a->idle_ms = o->idle_ms ? o->idle_ms : SL_AGENT_DEFAULT_IDLE_MS;
    a->udp_idle_ms = o->udp_idle_ms ? o->udp_idle_ms
                                    : SL_AGENT_DEFAULT_UDP_IDLE_MS;
    a->started_ms = uv_now(a->loop);
    sl_list_init(&a->conns);
    a->ca_file = dup_or_null(o->ca_file);
    a->cert_file = dup_or_null(o->cert_file);
    a->key_file = dup_or_null(o->key_file);
    if (o->name != NULL && o->name[0] != '\0')
        snprintf(a->name, sizeof(a->name), "%s", o->name);
    else if (gethostname(a->name, sizeof(a->name) - 1) != 0)
        snprintf(a->name, sizeof(a->name), "agent");
    if (a->ca_file == NULL || a->cert_file == NULL || a->key_file == NULL) {
        rc = UV_ENOMEM;
        goto fail;
    }
    if (o->nallow > 0) {
        a->allow = sl_acl_new();
        if (a->allow == NULL) {
            rc = UV_ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < o->nallow; i++) {
            char why[200];
            if (sl_acl_add(a->allow, 1, o->allow[i], 0, why, sizeof(why)) !=
                0) {
                sl_error(a->log, "agent: --agent-allow %s: %s", o->allow[i],
                         why);
                rc = SL_ECONFIG;
                goto fail;
            }
        }
    }
    if ((a->tls = sl_agent_ctx_new(a, TLS_server_method())) == NULL) {
        rc = SL_ECONFIG;
        goto fail;
    }
    if ((rc = make_routes(a)) != 0)
        goto fail;
    struct sl_api_config cfg = {
        .name = "agent-api",
        .listen = NULL,
        .routes = a->routes,
        .nroutes = a->nroutes,
        .arg = node,
    };
    if ((rc = sl_api_server_start(node->ctx, &cfg, &a->api)) != 0)
        goto fail;
    uv_tcp_init(a->loop, &a->listener);
    a->listener.data = a;
    a->open = 1;
    rc = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, LISTEN_BACKLOG,
                       on_connection);
    int len = sizeof(a->bound);
    if (rc == 0)
        rc = uv_tcp_getsockname(&a->listener, (struct sockaddr *)&a->bound,
                                &len);
    if (rc == 0 && !o->no_udp) {
        /* The same port number for DTLS: a port 0 became a real one. */
        a->open++;
        rc = sl_node_dtls_start(a, (struct sockaddr *)&a->bound, &a->dtls);
        if (rc != 0)
            a->open--;
    }
    if (rc != 0) {
        sl_error(a->log, "agent: listening on %s failed: %s", o->listen,
                 sl_strerror(rc));
        sl_node_agent_stop(a, NULL, NULL);
        return rc;
    }
    sl_addr_str((struct sockaddr *)&a->bound, a->address);
    sl_info(a->log, "agent: listening on %s (TLS%s, mutual; ALPN %s and %s; "
            "targets: private%s%s)",
            a->address, a->dtls ? " and DTLS" : "", SL_AGENT_ALPN_HTTP,
            SL_AGENT_ALPN_STREAM, a->allow ? " and --agent-allow" : "",
            a->allow_public ? " and public" : "");
    *out = a;
    return 0;
fail:
    sl_api_server_close(a->api);
    SSL_CTX_free(a->tls);
    sl_acl_free(a->allow);
    free(a->ca_file);
    free(a->cert_file);
    free(a->key_file);
    free(a);
    return rc;
}
