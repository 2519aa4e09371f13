/* Connections from a bridge to its hub: the control WebSocket and the data
 * connections (pool and answers to `open`), and each data connection's
 * dial of the upstream once the hub has paired it.
 *
 * Lifetime: a struct conn counts its outstanding handles and requests in
 * refs (plus one for itself until conn_close); whatever callback drops the
 * last ref frees it. So every libuv callback first takes its conn back by
 * container_of, does its work if the conn is not closing, and ends with
 * conn_unref. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/error.h"
#include "core/log.h"
#include "net/addr.h"
#include "net/tcp_live.h"
#include "tls/tls_client.h"
#include "node/node_inspect.h"
#include "node/node_int.h"
#include "tunnel/control.h"
#include "tunnel/creds.h"
#include "tunnel/hijack.h"

#define CONTAINER_OF(ptr, type, member)                                        \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define DISCARD_BUF 4096

static const char *const upstream_unreachable = "Upstream not reachable";
static const char *const upstream_not_private = "Upstream not private";

static struct sl_log *conn_log(const struct conn *c)
{
    return c->b->node->log;
}

static const char *bridge_name(const struct sl_node_bridge *b)
{
    return b->rec.identity[0] != '\0' ? b->rec.identity : b->rec.upstream;
}

static const char *kind_name(const struct conn *c)
{
    return c->kind == CONN_CTL ? "control" : "data";
}

/* ------------------------------------------------------------ lifetime */

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    struct sl_node_bridge *b = c->b;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->ai != NULL)
        uv_freeaddrinfo(c->ai);
    if (c->reader_used)
        sl_http_reader_release(&c->reader);
    free(c->pre);
    sl_inspect_conn_free(c->insp);
    free(c);
    sl_node_bridge_unref(b);
}

static void conn_unref_n(struct conn *c, int n)
{
    c->refs -= n - 1;
    conn_unref(c);
}

static void on_timer_close(uv_handle_t *h)
{
    conn_unref(CONTAINER_OF(h, struct conn, timer));
}

static void on_hub_tcp_close(uv_handle_t *h);
static void on_up_tcp_close(uv_handle_t *h);
static void try_up_connect(struct conn *c);
static void up_addresses_ready(struct conn *c);

void sl_node_conn_close(struct conn *c, int reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct sl_node_bridge *b = c->b;
    int was_pool = c->is_pool;
    if (c->is_pool) {
        c->is_pool = 0;
        b->pool_idle--;
    }
    if (c->phase == PH_RESOLVE || c->phase == PH_UP_RESOLVE)
        uv_cancel((uv_req_t *)&c->gai); /* its callback still runs */
    if (c->reader_used)
        sl_http_reader_stop(&c->reader);
    if (c->timer_open) {
        c->timer_open = 0;
        uv_close((uv_handle_t *)&c->timer, on_timer_close);
    }
    if (c->ws_live) {
        if (reason == 0)
            sl_ws_close(&c->ws, 1000);
        else
            sl_ws_abort(&c->ws, reason);
    }
    if (c->relay_live)
        sl_relay_abort(&c->relay, reason);
    if (c->mux != NULL)
        sl_node_mux_abort(c, reason); /* the engine closes hub_x */
    if (c->mux_dial) {
        c->mux_dial = 0;
        b->mux_dialling--;
        if (reason != 0 && b->pool_failures < 64)
            b->pool_failures++;
        sl_node_bridge_fill_pool_later(b);
    }
    if (c->hub_tcp_open) {
        c->hub_tcp_open = 0;
        sl_xprt_close(&c->hub_x, on_hub_tcp_close);
    }
    if (c->up_tcp_open) {
        c->up_tcp_open = 0;
        sl_xprt_close(&c->up_x, on_up_tcp_close);
    }
    if (c->kind == CONN_CTL) {
        if (b->ctl == c)
            b->ctl = NULL;
        sl_node_bridge_ctl_lost(b, c->welcomed, reason);
    } else if (was_pool) {
        /* An expired pool connection is replaced at once; one that failed
         * waits a little, so a refusing hub does not make us spin. */
        if (reason == 0) {
            sl_node_bridge_fill_pool(b);
        } else {
            /* One step per round of refusals: the pool's other dials of
             * the same round fail while the pause is already set. */
            if (b->pool_failures < 64 &&
                !uv_is_active((uv_handle_t *)&b->pool_timer))
                b->pool_failures++;
            sl_node_bridge_fill_pool_later(b);
        }
    }
    if (sl_log_on(conn_log(c), SL_LOG_DEBUG)) {
        const char *why = reason == 0 ? "done" : sl_strerror(reason);
        /* A raw data connection counts its bytes in its relay. */
        uint64_t down = c->raw ? sl_relay_bytes(&c->relay, SL_RELAY_DOWN) : 0;
        uint64_t up = c->raw ? sl_relay_bytes(&c->relay, SL_RELAY_UP) : 0;
        struct sl_log_field f[] = {
            SL_LOG_STR("route", "node"),
            SL_LOG_NUM("conn", c->id),
            SL_LOG_STR("kind", kind_name(c)),
            SL_LOG_STR("identity", b->rec.identity[0] ? b->rec.identity
                                                      : NULL),
            SL_LOG_STR("target", b->rec.upstream),
            SL_LOG_STR("event", "closed"),
            SL_LOG_STR("reason", why),
            SL_LOG_NUM("bytes", down + up),
        };
        sl_log_event(conn_log(c), SL_LOG_DEBUG, f, c->raw ? 8 : 7,
                     "bridge %s: %s connection #%u closed (%s)",
                     bridge_name(b), kind_name(c), c->id, why);
    }
    conn_unref(c);
}

static struct conn *conn_new(struct sl_node_bridge *b, enum conn_kind kind)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->kind = kind;
    c->b = b;
    c->id = ++b->node->next_conn_id;
    c->refs = 1;
    c->next = b->conns;
    if (b->conns != NULL)
        b->conns->prev = c;
    b->conns = c;
    b->refs++;
    uv_timer_init(b->node->ctx->loop, &c->timer);
    c->timer_open = 1;
    c->refs++;
    return c;
}

/* ------------------------------------------------------- dialling a hub */

static void try_hub_connect(struct conn *c);
static void on_head(struct sl_http_reader *r, int status);

static void on_hub_tcp_close(uv_handle_t *h)
{
    struct conn *c = CONTAINER_OF(h, struct conn, hub_x.tcp);
    if (c->retry_next && !c->closing) {
        c->retry_next = 0;
        try_hub_connect(c);
    }
    conn_unref(c);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct conn *c = CONTAINER_OF(t, struct conn, timer);
    sl_node_bridge_set_error(c->b, "connecting to %s timed out",
                             c->phase == PH_CONNECT ? c->b->rec.hub
                                                    : c->b->rec.upstream);
    sl_node_conn_close(c, UV_ETIMEDOUT);
}

/* Percent-encodes s into out (RFC 3986 unreserved kept). */
static int pct_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
                   ch == '_' || ch == '~';
        if (o + (keep ? 1 : 3) >= cap)
            return SL_ETOOBIG;
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* Formats the upgrade request of c into buf. Returns its length or a
 * negative code. */
static int format_request(struct conn *c, char *buf, size_t cap)
{
    struct sl_node_bridge *b = c->b;
    char target[SL_NODE_TOKEN_MAX * 3 + 64];
    char auth[SL_NODE_SECRET_MAX * 2 + 32] = "";
    char extra[SL_HIJACK_MAX + SL_UUID_LEN + 80] = "";
    char grant[SL_NODE_GRANT_MAX + 32] = "";
    int rc;

    if (c->kind == CONN_CTL && b->rec.token[0] != '\0') {
        char tok[SL_NODE_TOKEN_MAX * 3 + 1];
        if ((rc = pct_encode(b->rec.token, tok, sizeof(tok))) != 0)
            return rc;
        snprintf(target, sizeof(target), "/_sluice/v1/control?token=%s", tok);
    } else {
        snprintf(target, sizeof(target), "%s",
                 c->kind == CONN_CTL ? "/_sluice/v1/control"
                                     : "/_sluice/v1/data");
    }
    c->dialled_anon = b->rec.username[0] == '\0';
    if (b->rec.username[0] != '\0') {
        char value[sizeof(auth) - 24];
        rc = sl_basic_auth_format(b->rec.username, b->rec.password, value,
                                  sizeof(value));
        if (rc != 0)
            return rc;
        snprintf(auth, sizeof(auth), "Authorization: %s\r\n", value);
    }
    if (c->kind == CONN_DATA) {
        struct sl_hijack h;
        char hv[SL_HIJACK_MAX];
        memcpy(h.identity, b->rec.identity, sizeof(h.identity));
        memcpy(h.fingerprint, c->fingerprint, sizeof(h.fingerprint));
        if ((rc = sl_hijack_format(&h, hv, sizeof(hv))) != 0)
            return rc;
        snprintf(extra, sizeof(extra), "%s: %s\r\n%s", SL_HIJACK_HEADER, hv,
                 c->asked_mux   ? "Sluice-Framing: mux\r\n"
                 : c->asked_raw ? "Sluice-Framing: raw\r\n"
                                : "");
    }
    size_t el = strlen(extra);
    snprintf(extra + el, sizeof(extra) - el, "%s: %s\r\n", SL_BRIDGE_HEADER,
             b->instance);
    /* The hub reads a grant when the control connection opens. */
    if (c->kind == CONN_CTL && b->rec.grant[0] != '\0')
        snprintf(grant, sizeof(grant), "Sluice-Grant: %s\r\n", b->rec.grant);
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: sluice-node\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s\r\n",
                     target, b->hub_host, c->key, auth, extra, grant);
    if (n < 0 || (size_t)n >= cap)
        return SL_ETOOBIG;
    return n;
}

static void send_request(struct conn *c);
static void start_tls(struct conn *c);

static void on_hub_connect(uv_connect_t *req, int status)
{
    struct conn *c = CONTAINER_OF(req, struct conn, creq);
    if (c->closing)
        goto out;
    if (status < 0) {
        if (c->ai_cur != NULL && c->ai_cur->ai_next != NULL) {
            c->ai_cur = c->ai_cur->ai_next;
            c->retry_next = 1;
            c->hub_tcp_open = 0;
            sl_xprt_close(&c->hub_x, on_hub_tcp_close);
            goto out;
        }
        sl_node_bridge_set_error(c->b, "cannot connect to hub %s: %s",
                                 c->b->rec.hub, sl_strerror(status));
        sl_debug(conn_log(c), "bridge %s: %s connection #%u: connecting to "
                 "hub %s failed: %s", bridge_name(c->b), kind_name(c), c->id,
                 c->b->rec.hub, sl_strerror(status));
        sl_node_conn_close(c, status);
        goto out;
    }
    (void)sl_tcp_live(&c->hub_x.tcp); /* best effort: pings cover control */
    if (c->b->hub.tls) {
        start_tls(c); /* the connect timer bounds the handshake too */
        goto out;
    }
    send_request(c);
out:
    conn_unref(c);
}

/* TLS is up (or not needed): the upgrade request, with the credentials. */
static void send_request(struct conn *c)
{
    uv_timer_stop(&c->timer);
    c->phase = PH_HEAD;
    if (sl_ws_key_new(c->key) != 0) {
        sl_node_conn_close(c, UV_EIO);
        return;
    }
    char text[2048 + SL_NODE_GRANT_MAX];
    int n = format_request(c, text, sizeof(text));
    if (n < 0) {
        sl_error(conn_log(c), "bridge %s: formatting the %s request: %s",
                 bridge_name(c->b), kind_name(c), sl_strerror(n));
        sl_node_conn_close(c, n);
        return;
    }
    int rc = sl_stream_write_copy(&c->hub_x, text, (size_t)n);
    if (rc == 0) {
        c->reader_used = 1;
        rc = sl_http_reader_start(
            &c->reader, &c->hub_x, &c->timer,
            SL_NODE_RESP_HEAD_MAX,
            c->kind == CONN_CTL ? SL_NODE_CTL_HEAD_TIMEOUT_MS
                                : SL_NODE_POOL_HEAD_TIMEOUT_MS,
            NULL, 0, on_head);
    }
    if (rc != 0)
        sl_node_conn_close(c, rc);
}

static void on_hub_handshake(struct sl_xprt *x, int status)
{
    struct conn *c = CONTAINER_OF(x, struct conn, hub_x);
    struct sl_node_bridge *b = c->b;
    char why[256] = "";
    if (c->closing)
        goto out;
    if (status == 0 || status == UV_EPROTO)
        status = sl_tls_client_check(b->node->tls, sl_xprt_ssl(x), why,
                                     sizeof(why)) != 0 ? UV_EPROTO : status;
    if (status != 0) {
        /* Nothing was sent: no credential reached a hub we cannot
         * trust. Said once per bridge until it works again. */
        if (why[0] == '\0')
            snprintf(why, sizeof(why), "%s", status == UV_EPROTO
                         ? sl_xprt_error(x) : sl_strerror(status));
        sl_node_bridge_set_error(b, "TLS to hub %s: %s", b->rec.hub, why);
        if (!b->tls_logged)
            sl_warn(conn_log(c), "bridge %s: TLS to hub %s failed: %s; no "
                    "credentials sent", bridge_name(b), b->rec.hub, why);
        b->tls_logged = 1;
        sl_node_conn_close(c, status);
        goto out;
    }
    b->tls_logged = 0;
    sl_debug(conn_log(c), "bridge %s: %s connection #%u: TLS %s%s",
             bridge_name(b), kind_name(c), c->id, SSL_get_version(
                 sl_xprt_ssl(x)), sl_tls_client_resumed(sl_xprt_ssl(x))
                                      ? ", session resumed" : "");
    send_request(c);
out:
    conn_unref(c);
}

static void start_tls(struct conn *c)
{
    struct sl_node_bridge *b = c->b;
    char key[SL_NODE_HOST_MAX + 16 + SL_ADDR_STRLEN];
    /* Hubs behind one name are different servers: a session each. */
    const char *addr = sl_node_hubs_addr(b);
    snprintf(key, sizeof(key), "%s:%u%s%s", b->hub.host,
             (unsigned)b->hub.port, addr ? "@" : "", addr ? addr : "");
    SSL *ssl = sl_tls_client_ssl(b->node->tls, b->hub.host, key);
    if (ssl == NULL) {
        sl_node_conn_close(c, UV_ENOMEM);
        return;
    }
    int rc = sl_xprt_tls_start(&c->hub_x, ssl, NULL, 0, on_hub_handshake);
    if (rc != 0) {
        sl_node_conn_close(c, rc);
        return;
    }
    c->refs++; /* until on_hub_handshake */
}

static void try_hub_connect(struct conn *c)
{
    uv_loop_t *loop = c->b->node->ctx->loop;
    while (c->ai_cur != NULL && c->ai_cur->ai_family != AF_INET &&
           c->ai_cur->ai_family != AF_INET6)
        c->ai_cur = c->ai_cur->ai_next;
    if (c->ai_cur == NULL) {
        sl_node_conn_close(c, UV_EAI_NONAME);
        return;
    }
    c->phase = PH_CONNECT;
    sl_xprt_init(&c->hub_x);
    uv_tcp_init(loop, &c->hub_x.tcp);
    c->hub_tcp_open = 1;
    c->refs++;
    uv_tcp_nodelay(&c->hub_x.tcp, 1);
    int rc = uv_tcp_connect(&c->creq, &c->hub_x.tcp, c->ai_cur->ai_addr,
                            on_hub_connect);
    if (rc != 0) {
        sl_node_conn_close(c, rc);
        return;
    }
    c->refs++;
    uv_timer_start(&c->timer, on_connect_timeout, SL_NODE_CONNECT_TIMEOUT_MS,
                   0);
}

static void on_hub_resolved(uv_getaddrinfo_t *req, int status,
                            struct addrinfo *res)
{
    struct conn *c = CONTAINER_OF(req, struct conn, gai);
    if (c->closing) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        goto out;
    }
    if (status < 0) {
        sl_node_bridge_set_error(c->b, "cannot resolve hub %s: %s",
                                 c->b->hub.host, sl_strerror(status));
        sl_node_conn_close(c, status);
        goto out;
    }
    c->ai = res;
    c->ai_cur = res;
    try_hub_connect(c);
out:
    conn_unref(c);
}

/* If host is an IP literal, points ai_cur at it and returns 1. A hub
 * link (node_hubs.c) dials its one address so. */
static int use_literal(struct conn *c, const char *host, uint16_t port)
{
    const struct sockaddr *pin = sl_node_hubs_pin(c->b);
    if (pin != NULL && host == c->b->hub.host)
        memcpy(&c->fixed_sa, pin, sl_addr_len(pin));
    else if (sl_addr_parse_ip(host, port, &c->fixed_sa) != 0)
        return 0;
    memset(&c->fixed_ai, 0, sizeof(c->fixed_ai));
    c->fixed_ai.ai_family = c->fixed_sa.ss_family;
    c->fixed_ai.ai_socktype = SOCK_STREAM;
    c->fixed_ai.ai_addr = (struct sockaddr *)&c->fixed_sa;
    c->fixed_ai.ai_addrlen = sl_addr_len((struct sockaddr *)&c->fixed_sa);
    c->ai_cur = &c->fixed_ai;
    return 1;
}

/* Starts a non-blocking lookup of host:port (TCP, any family) into c->gai. */
static int resolve(struct conn *c, const char *host, uint16_t port,
                   uv_getaddrinfo_cb cb)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    return uv_getaddrinfo(c->b->node->ctx->loop, &c->gai, cb, host, service,
                          &hints);
}

static void start_dial(struct conn *c)
{
    struct sl_node_bridge *b = c->b;
    if (use_literal(c, b->hub.host, b->hub.port)) {
        c->phase = PH_CONNECT; /* no resolver request to cancel */
        try_hub_connect(c);
        return;
    }
    c->phase = PH_RESOLVE;
    int rc = resolve(c, b->hub.host, b->hub.port, on_hub_resolved);
    if (rc != 0) {
        sl_node_conn_close(c, rc);
        return;
    }
    c->refs++;
}

/* --------------------------------------------------------- control conn */

static void on_ws_close(struct sl_ws *ws, int reason)
{
    struct conn *c = ws->data;
    c->ws_live = 0;
    /* Framed, after the user's close frame: the upstream shutdown queued
     * behind the last writes ends the connection, not this. */
    if (!c->closing && c->up_shutting && reason == 0) {
        if (c->up_reading) {
            sl_xprt_read_stop(&c->up_x);
            c->up_reading = 0;
        }
        conn_unref(c);
        return;
    }
    if (!c->closing) {
        if (c->kind == CONN_CTL && c->welcomed)
            sl_info(conn_log(c), "bridge %s: control connection to %s "
                    "closed: %s", bridge_name(c->b), c->b->rec.hub,
                    reason == 0 ? "closed by the hub" : sl_strerror(reason));
        sl_node_conn_close(c, reason);
    }
    conn_unref(c); /* the hub handle the ws owned */
}

static void ctl_on_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                           const uint8_t *data, size_t len)
{
    struct conn *c = ws->data;
    struct sl_node_bridge *b = c->b;
    if (c->closing || type != SL_WS_TEXT)
        return;
    b->rec.last_seen = sl_node_now_ms();
    struct sl_ctl_msg m;
    int rc = sl_ctl_parse((const char *)data, len, &m);
    if (rc != 0) {
        sl_warn(conn_log(c), "bridge %s: bad control message from the hub "
                "ignored: %s", bridge_name(b), sl_strerror(rc));
        return;
    }
    switch (m.type) {
    case SL_CTL_WELCOME:
        if (b->rec.identity[0] != '\0' &&
            strcmp(b->rec.identity, m.welcome.identity) != 0) {
            sl_warn(conn_log(c), "bridge %s: hub welcomed us as %s",
                    b->rec.identity, m.welcome.identity);
        }
        c->welcomed = 1;
        if (c->timer_open)
            uv_timer_stop(&c->timer);
        /* Credentials are the answer to a dial without any: a hub (or
         * whoever answers in its name) must not swap the ones we hold. */
        if (!c->dialled_anon && m.welcome.username[0] != '\0') {
            sl_warn(conn_log(c), "bridge %s: credentials in the hub's "
                    "welcome ignored (we dialled with our own)",
                    bridge_name(b));
            m.welcome.username[0] = '\0';
            m.welcome.password[0] = '\0';
        }
        /* Protocol v2: the hub says how many mux connections to keep. */
        b->mux_want = b->node->no_mux ? 0 : m.welcome.mux;
        b->no_mux = 0;
        sl_node_bridge_welcomed(b, m.welcome.identity, m.welcome.url,
                                m.welcome.username, m.welcome.password);
        OPENSSL_cleanse(&m.welcome, sizeof(m.welcome));
        break;
    case SL_CTL_OPEN:
        if (!c->welcomed)
            break;
        if (strcmp(m.open.kind, "udp") == 0 && m.open.target[0] == '\0' &&
            strcmp(b->up.scheme, "udp") == 0) {
            /* udp: the datagram carrier, always framed (node_udp.c). */
            struct conn *d = conn_new(b, CONN_DATA);
            if (d == NULL)
                break;
            snprintf(d->fingerprint, sizeof(d->fingerprint), "%s",
                     m.open.fingerprint);
            d->udp_carrier = 1;
            start_dial(d);
            break;
        }
        /* http and tcp both mean "bytes to the upstream"; udp is the
         * datagram carrier of a udp:// bridge. */
        if ((strcmp(m.open.kind, "http") != 0 &&
             strcmp(m.open.kind, "tcp") != 0) ||
            m.open.target[0] != '\0') {
            sl_warn(conn_log(c), "bridge %s: open of kind '%s' refused (only "
                    "http and tcp to the upstream, udp to a udp:// one)",
                    bridge_name(b),
                    m.open.kind);
            break;
        }
        sl_debug(conn_log(c), "bridge %s: open %s", bridge_name(b),
                 m.open.fingerprint);
        sl_node_conn_data(b, m.open.fingerprint);
        break;
    case SL_CTL_STATS:
        sl_debug(conn_log(c), "bridge %s: hub counts down %llu up %llu",
                 bridge_name(b), (unsigned long long)m.stats.down,
                 (unsigned long long)m.stats.up);
        break;
    case SL_CTL_ERROR:
        sl_warn(conn_log(c), "bridge %s: hub says: %s (%d)", bridge_name(b),
                m.error.message, m.error.code);
        sl_node_bridge_set_error(b, "%s", m.error.message);
        break;
    default:
        break;
    }
}

static void send_hello(struct conn *c)
{
    struct sl_ctl_msg m;
    sl_ctl_init(&m, SL_CTL_HELLO);
    m.hello.version = SL_CTL_VERSION;
    /* A tls:// upstream takes TLS as users send it: the hub passes it
     * through by SNI instead of reading HTTP. tcp:// and udp:// ones get
     * a public port, with the node's stream options. */
    const char *scheme = c->b->up.scheme;
    m.hello.capabilities = c->b->up.tls                 ? SL_CAP_TLS
                           : strcmp(scheme, "tcp") == 0 ? SL_CAP_TCP
                           : strcmp(scheme, "udp") == 0 ? SL_CAP_UDP
                                                        : SL_CAP_HTTP;
    if (m.hello.capabilities & (SL_CAP_TCP | SL_CAP_UDP))
        m.hello.streams = c->b->node->streams;
    /* UDP travels on one data connection the hub asks for: no pool. */
    m.hello.pool = m.hello.capabilities == SL_CAP_UDP
                       ? 0
                       : c->b->node->pool_size;
    /* Protocol v2: streams on a few connections instead of a connection
     * per user; UDP keeps its carrier. */
    if (!c->b->node->no_mux && m.hello.capabilities != SL_CAP_UDP)
        m.hello.capabilities |= SL_CAP_MUX;
    char *text = NULL;
    size_t len = 0;
    int rc = sl_ctl_encode(&m, &text, &len);
    if (rc == 0)
        rc = sl_ws_send_text(&c->ws, text, len);
    free(text);
    if (rc < 0)
        sl_node_conn_close(c, rc);
}

/* Copies a short, printable excerpt of the body after a refusal, so the
 * log says why (the hub's JSON error). */
static void body_excerpt(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap && i < 120; i++)
        out[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : ' ';
    out[o] = '\0';
}

/* A hub that upgrades and then never welcomes us (answering pings keeps
 * the dead-peer check quiet) would hold the bridge for ever: give it the
 * head timeout, then dial again with back-off. */
static void on_welcome_timeout(uv_timer_t *t)
{
    struct conn *c = CONTAINER_OF(t, struct conn, timer);
    sl_warn(conn_log(c), "bridge %s: no welcome from hub %s within %d ms",
            bridge_name(c->b), c->b->rec.hub, SL_NODE_CTL_HEAD_TIMEOUT_MS);
    sl_node_bridge_set_error(c->b, "no welcome from %s within %d ms",
                             c->b->rec.hub, SL_NODE_CTL_HEAD_TIMEOUT_MS);
    sl_node_conn_close(c, UV_ETIMEDOUT);
}

/* A refusal the hub explains in JSON ({"error", "code", "reason"}):
 * the error, in the seed's words, is what the bridge says it is
 * (`Bridge not allowed`, `Grant expired`, ...). A grant the hub refuses
 * (403) will not change by itself: the next dial waits the longest
 * back-off step, not a second. Returns 1 if it was such a refusal. */
static int refused_with_reason(struct conn *c, int status, const char *body,
                               size_t len)
{
    struct sl_node_bridge *b = c->b;
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    json_t *e = json_object_get(j, "error");
    json_t *r = json_object_get(j, "reason");
    if (!json_is_string(e) || !json_is_string(r)) {
        json_decref(j);
        return 0;
    }
    char error[120], reason[200];
    body_excerpt(json_string_value(e), json_string_length(e), error,
                 sizeof(error));
    body_excerpt(json_string_value(r), json_string_length(r), reason,
                 sizeof(reason));
    json_decref(j);
    sl_warn(conn_log(c), "bridge %s: hub %s refused the control connection: "
            "%s (%d: %s)", bridge_name(b), b->rec.hub, error, status,
            reason);
    sl_node_bridge_set_error(b, "%s", error);
    if (status == 403 && b->attempt < 5)
        b->attempt = 5;
    sl_node_conn_close(c, SL_EDENIED);
    return 1;
}

static void ctl_got_head(struct conn *c, const struct sl_http_head *h,
                         const char *rest, size_t rest_len)
{
    struct sl_node_bridge *b = c->b;
    if (h->status != 101 && refused_with_reason(c, h->status, rest, rest_len))
        return;
    if (h->status != 101) {
        char excerpt[128];
        body_excerpt(rest, rest_len, excerpt, sizeof(excerpt));
        sl_warn(conn_log(c), "bridge %s: hub %s refused the control "
                "connection: %d %s", bridge_name(b), b->rec.hub, h->status,
                excerpt);
        sl_node_bridge_set_error(b, "hub refused: %d %s", h->status,
                                 excerpt);
        sl_node_conn_close(c, h->status == 401 ? SL_EAUTH : SL_EDENIED);
        return;
    }
    const struct sl_http_header *acc = sl_http_head_find(h,
                                                         "Sec-WebSocket-Accept");
    if (acc == NULL || !sl_ws_check_accept(c->key, acc->value, acc->value_len)) {
        sl_warn(conn_log(c), "bridge %s: hub %s sent a bad "
                "Sec-WebSocket-Accept", bridge_name(b), b->rec.hub);
        sl_node_conn_close(c, SL_EPARSE);
        return;
    }
    struct sl_ws_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.role = SL_WS_CLIENT;
    opts.ping_ms = c->b->node->ping_ms;
    opts.dead_ms = c->b->node->dead_ms;
    opts.max_msg = SL_WS_MAX_MSG_CONTROL;
    c->phase = PH_CTL;
    c->ws.data = c;
    c->ws.on_message = ctl_on_message;
    c->ws.on_close = on_ws_close;
    c->hub_tcp_open = 0; /* the ws owns it now; its ref moves along */
    c->ws_live = 1;
    if (sl_ws_start(&c->ws, &c->hub_x, &opts, rest, rest_len) != 0)
        return; /* on_ws_close follows */
    if (c->timer_open)
        uv_timer_start(&c->timer, on_welcome_timeout,
                       SL_NODE_CTL_HEAD_TIMEOUT_MS, 0);
    send_hello(c);
}

/* ------------------------------------------------------------ data conn */

static void data_got_101(struct conn *c, const struct sl_http_head *h,
                         const char *rest, size_t rest_len);

static void data_got_head(struct conn *c, const struct sl_http_head *h,
                          const char *rest, size_t rest_len)
{
    struct sl_node_bridge *b = c->b;
    if (h->status == 101) {
        data_got_101(c, h, rest, rest_len);
        return;
    }
    if (h->status == 204) { /* an unused pool connection expired */
        sl_node_conn_close(c, 0);
        return;
    }
    char excerpt[128];
    body_excerpt(rest, rest_len, excerpt, sizeof(excerpt));
    /* 409 to an answer to `open`: the user left (or a pool connection
     * took it) before we came; nothing is wrong. A pool refused again for
     * the same reason was said already. */
    enum sl_log_level lvl = SL_LOG_WARN;
    if (h->status == 409 && !c->is_pool)
        lvl = SL_LOG_DEBUG;
    if (c->is_pool) {
        if (b->pool_refused == h->status)
            lvl = SL_LOG_DEBUG;
        b->pool_refused = h->status;
    }
    sl_log_write(conn_log(c), lvl, "bridge %s: hub refused data connection "
                 "#%u: %d %s", bridge_name(b), c->id, h->status, excerpt);
    sl_node_conn_close(c, SL_EDENIED);
}

static void on_head(struct sl_http_reader *r, int status)
{
    struct conn *c = CONTAINER_OF(r, struct conn, reader);
    if (c->closing)
        return;
    if (status != 0) {
        if (c->kind == CONN_CTL || status != UV_EOF)
            sl_debug(conn_log(c), "bridge %s: %s connection #%u: no answer "
                     "from the hub: %s", bridge_name(c->b), kind_name(c),
                     c->id, sl_strerror(status));
        if (c->kind == CONN_CTL)
            sl_node_bridge_set_error(c->b, "no answer from hub %s: %s",
                                     c->b->rec.hub, sl_strerror(status));
        sl_node_conn_close(c, status);
        return;
    }
    struct sl_http_head h;
    if (sl_http_head_parse(&h, 0, r->buf, r->head_len) != 0) {
        sl_warn(conn_log(c), "bridge %s: malformed response from hub %s",
                bridge_name(c->b), c->b->rec.hub);
        sl_node_conn_close(c, SL_EPARSE);
        return;
    }
    const char *rest = r->buf + r->head_len;
    size_t rest_len = r->len - r->head_len;
    if (c->kind == CONN_CTL)
        ctl_got_head(c, &h, rest, rest_len);
    else
        data_got_head(c, &h, rest, rest_len);
}

/* -- refusing: 502 to the user, through the paired data connection */

static void on_discard_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(DISCARD_BUF);
    buf->len = buf->base != NULL ? DISCARD_BUF : 0;
}

static void on_discard_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = CONTAINER_OF(s, struct conn, hub_x.tcp);
    free(buf->base);
    if (n < 0 && !c->closing)
        sl_node_conn_close(c, 0);
}

static void on_linger_timeout(uv_timer_t *t)
{
    sl_node_conn_close(CONTAINER_OF(t, struct conn, timer), 0);
}

static void on_hub_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_unref(CONTAINER_OF(req, struct conn, hub_shutdown));
}

static void data_ws_noop_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                                 const uint8_t *data, size_t len)
{
    (void)ws;
    (void)type;
    (void)data;
    (void)len;
}

static void refuse(struct conn *c, const char *body, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(struct conn *c, const char *body, const char *fmt, ...)
{
    struct sl_node_bridge *b = c->b;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    sl_node_bridge_set_error(b, "%s", why);
    struct sl_log_field f[] = {
        SL_LOG_STR("route", "node"),
        SL_LOG_NUM("conn", c->id),
        SL_LOG_STR("identity", b->rec.identity[0] ? b->rec.identity : NULL),
        SL_LOG_STR("target", b->rec.upstream),
        SL_LOG_STR("event", "refused"),
        SL_LOG_STR("reason", why),
    };
    if (!b->refuse_logged) {
        b->refuse_logged = 1;
        sl_log_event(conn_log(c), SL_LOG_WARN, f, 6,
                     "bridge %s: %s: answering 502 (%s)", bridge_name(b), why,
                     body);
    } else if (sl_log_on(conn_log(c), SL_LOG_DEBUG)) {
        sl_log_event(conn_log(c), SL_LOG_DEBUG, f, 6,
                     "bridge %s: %s: answering 502", bridge_name(b), why);
    }
    if (c->up_tcp_open) {
        c->up_tcp_open = 0;
        sl_xprt_close(&c->up_x, on_up_tcp_close);
    }
    char resp[512];
    int n = sl_http_format_response(resp, sizeof(resp), 502, "text/plain",
                                    body, NULL, 0);
    if (n < 0) {
        sl_node_conn_close(c, n);
        return;
    }
    c->phase = PH_REFUSE;
    b->gw_up += (uint64_t)n; /* the 502 goes to the hub like any answer */
    if (!c->raw) {
        struct sl_ws_opts opts;
        memset(&opts, 0, sizeof(opts));
        opts.role = SL_WS_CLIENT;
        opts.ping_ms = c->b->node->ping_ms;
        opts.dead_ms = c->b->node->dead_ms;
        c->ws.data = c;
        c->ws.on_message = data_ws_noop_message;
        c->ws.on_close = on_ws_close;
        c->hub_tcp_open = 0;
        c->ws_live = 1;
        if (sl_ws_start(&c->ws, &c->hub_x, &opts, NULL, 0) != 0)
            return;
        sl_ws_send_binary(&c->ws, resp, (size_t)n);
        sl_ws_close(&c->ws, 1000);
        return;
    }
    /* Raw: write, half-close, then read what the user sent until the hub
     * closes, so our close does not reset the response away. */
    struct sl_xprt *s = &c->hub_x;
    int rc = sl_stream_write_copy(s, resp, (size_t)n);
    if (rc == 0 && sl_xprt_shutdown(&c->hub_shutdown, s, on_hub_shutdown) == 0)
        c->refs++;
    if (rc == 0)
        rc = sl_xprt_read_start(s, on_discard_alloc, on_discard_read);
    if (rc != 0) {
        sl_node_conn_close(c, rc);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, SL_NODE_LINGER_MS, 0);
}

/* -- relaying */

static void on_up_tcp_close(uv_handle_t *h)
{
    struct conn *c = CONTAINER_OF(h, struct conn, up_x.tcp);
    if (c->retry_next && !c->closing) {
        c->retry_next = 0;
        try_up_connect(c);
    }
    conn_unref(c);
}

/* The request inspector's view of a data connection's bytes (nothing when
 * it is off, or for a bridge that is not http://). */
static void tap(struct conn *c, enum sl_inspect_dir dir, const char *p,
                size_t n)
{
    if (c->b->inspect == NULL || p == NULL)
        return;
    if (c->insp == NULL &&
        (c->insp = sl_inspect_conn_new(c->b->inspect, 0)) == NULL)
        return;
    sl_inspect_conn_feed(c->insp, dir, p, n);
}

static int relay_on_read(struct sl_relay *r, size_t n, enum sl_relay_dir dir)
{
    struct conn *c = r->data;
    struct sl_node_bridge *b = c->b;
    tap(c, dir == SL_RELAY_UP ? SL_INSPECT_REQUEST : SL_INSPECT_RESPONSE,
        sl_relay_chunk(r), n);
    if (dir == SL_RELAY_UP) {
        b->gw_down += n;
        b->up_up += n;
    } else {
        b->up_down += n;
        b->gw_up += n;
    }
    return 0;
}

static void relay_on_done(struct sl_relay *r, int reason)
{
    struct conn *c = r->data;
    c->relay_live = 0;
    if (!c->closing)
        sl_node_conn_close(c, reason == UV_EOF ? 0 : reason);
    /* Both handles the relay owned, in one step: c may be gone after it. */
    conn_unref_n(c, 2);
}

static void start_raw_relay(struct conn *c)
{
    c->relay.data = c;
    c->relay.on_read = relay_on_read;
    c->relay.on_done = relay_on_done;
    c->hub_tcp_open = 0;
    c->up_tcp_open = 0;
    c->relay_live = 1;
    struct sl_relay_opts opts = {
        .buf_size = SL_NODE_RELAY_BUF,
        .high_water = 2 * SL_NODE_RELAY_BUF,
        .pool = &c->b->node->relay_pool,
        /* The request inspector reads the bytes: they must come up. */
        .splice = c->b->inspect == NULL,
    };
    sl_relay_start(&c->relay, &c->hub_x,
                   &c->up_x, &opts);
    if (sl_relay_active(&c->relay))
        sl_debug(conn_log(c), "bridge %s: %s connection #%u: relay %s",
                 bridge_name(c->b), kind_name(c), c->id,
                 sl_relay_spliced(&c->relay) ? "spliced (zero-copy)"
                                             : "copying");
}

static void on_pre_written(uv_write_t *req, int status)
{
    struct conn *c = CONTAINER_OF(req, struct conn, pre_req);
    if (!c->closing) {
        if (status < 0)
            sl_node_conn_close(c, status);
        else
            start_raw_relay(c);
    }
    conn_unref(c);
}

/* Framed mode: upstream bytes go out as binary messages; binary messages
 * are written to the upstream, with back-pressure both ways. */
struct up_write {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char data[];
};

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(SL_WS_READ_SIZE);
    buf->len = buf->base != NULL ? SL_WS_READ_SIZE : 0;
}

static void on_up_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = CONTAINER_OF(req, struct conn, up_shutdown);
    (void)status;
    if (!c->closing)
        sl_node_conn_close(c, 0);
    conn_unref(c);
}

static void up_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = CONTAINER_OF(s, struct conn, up_x.tcp);
    if (n > 0 && !c->closing) {
        c->b->up_down += (uint64_t)n;
        c->b->gw_up += (uint64_t)n;
        tap(c, SL_INSPECT_RESPONSE, buf->base, (size_t)n);
        int rc = sl_ws_send_binary(&c->ws, buf->base, (size_t)n);
        if (rc == 1) {
            sl_xprt_read_stop(&c->up_x);
            c->up_reading = 0;
        } else if (rc < 0) {
            sl_node_conn_close(c, rc);
        }
    } else if (n < 0 && !c->closing) {
        sl_xprt_read_stop(&c->up_x);
        c->up_reading = 0;
        if (n == UV_EOF) {
            c->up_eof = 1;
            sl_ws_close(&c->ws, 1000);
        } else {
            sl_node_conn_close(c, (int)n);
        }
    }
    free(buf->base);
}

static void data_ws_on_drain(struct sl_ws *ws)
{
    struct conn *c = ws->data;
    if (c->closing || c->up_eof || c->up_reading || !c->up_tcp_open ||
        !c->ws_live)
        return;
    if (sl_xprt_read_start(&c->up_x, up_alloc, up_on_read) == 0)
        c->up_reading = 1;
}

static void on_up_write(uv_write_t *req, int status)
{
    struct up_write *w = CONTAINER_OF(req, struct up_write, req);
    struct conn *c = w->c;
    c->up_queued -= w->len;
    free(w);
    if (!c->closing) {
        if (status < 0)
            sl_node_conn_close(c, status);
        else if (c->ws_read_paused && c->up_queued <= SL_WS_LOW_WATER &&
                 c->ws_live) {
            c->ws_read_paused = 0;
            sl_ws_resume_read(&c->ws);
        }
    }
    conn_unref(c);
}

static void data_ws_on_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                               const uint8_t *data, size_t len)
{
    struct conn *c = ws->data;
    if (c->closing || type != SL_WS_BINARY || len == 0 || !c->up_tcp_open)
        return;
    c->b->gw_down += len;
    c->b->up_up += len;
    tap(c, SL_INSPECT_REQUEST, (const char *)data, len);
    if (c->up_queued == 0) {
        /* Straight from wslay's buffer when the upstream keeps up: the
         * copy and its 64 KiB allocation are only for what must wait. */
        uv_buf_t now = uv_buf_init((char *)data, (unsigned)len);
        int n = sl_xprt_try_write(&c->up_x, &now, 1);
        if (n < 0 && n != UV_EAGAIN) {
            sl_node_conn_close(c, n);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return;
    }
    struct up_write *w = malloc(sizeof(*w) + len);
    if (w == NULL) {
        sl_node_conn_close(c, UV_ENOMEM);
        return;
    }
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int rc = sl_xprt_write(&w->req, &c->up_x, &b, 1, on_up_write);
    if (rc != 0) {
        free(w);
        sl_node_conn_close(c, rc);
        return;
    }
    c->refs++;
    c->up_queued += len;
    if (c->up_queued > SL_WS_HIGH_WATER && !c->ws_read_paused) {
        c->ws_read_paused = 1;
        sl_ws_pause_read(&c->ws);
    }
}

static void data_ws_on_peer_close(struct sl_ws *ws, uint16_t status)
{
    struct conn *c = ws->data;
    (void)status;
    /* No more data from the user: let the upstream see EOF after what is
     * queued, instead of cutting it off. */
    if (c->closing || !c->up_tcp_open)
        return;
    if (sl_xprt_shutdown(&c->up_shutdown, &c->up_x,
                    on_up_shutdown) == 0) {
        c->refs++;
        c->up_shutting = 1;
    }
}

static void start_framed(struct conn *c)
{
    struct sl_ws_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.role = SL_WS_CLIENT;
    opts.ping_ms = c->b->node->ping_ms;
    opts.dead_ms = c->b->node->dead_ms;
    opts.max_msg = SL_WS_MAX_MSG_DATA;
    c->ws.data = c;
    c->ws.on_message = data_ws_on_message;
    c->ws.on_close = on_ws_close;
    c->ws.on_drain = data_ws_on_drain;
    c->ws.on_peer_close = data_ws_on_peer_close;
    c->hub_tcp_open = 0;
    c->ws_live = 1;
    c->phase = PH_RELAY;
    if (sl_ws_start(&c->ws, &c->hub_x, &opts, c->pre, c->pre_len) != 0)
        return;
    if (sl_xprt_read_start(&c->up_x, up_alloc, up_on_read) == 0)
        c->up_reading = 1;
}

static void on_up_connect(uv_connect_t *req, int status)
{
    struct conn *c = CONTAINER_OF(req, struct conn, creq);
    /* After a timeout, refuse() has closed the handle already. */
    if (c->closing || c->phase != PH_UP_CONNECT)
        goto out;
    if (status < 0) {
        if (c->ai_cur != NULL && c->ai_cur->ai_next != NULL) {
            c->ai_cur = c->ai_cur->ai_next;
            c->retry_next = 1;
            c->up_tcp_open = 0;
            sl_xprt_close(&c->up_x, on_up_tcp_close);
            goto out;
        }
        refuse(c, upstream_unreachable, "upstream %s: %s", c->b->rec.upstream,
               sl_strerror(status));
        goto out;
    }
    uv_timer_stop(&c->timer);
    c->b->refuse_logged = 0;
    if (c->b->error[0] != '\0' && strncmp(c->b->error, "upstream", 8) == 0)
        c->b->error[0] = '\0';
    c->phase = PH_RELAY;
    if (!c->raw) {
        start_framed(c);
        goto out;
    }
    if (c->pre_len > 0) {
        uv_buf_t b = uv_buf_init(c->pre, (unsigned)c->pre_len);
        c->b->gw_down += c->pre_len;
        c->b->up_up += c->pre_len;
        tap(c, SL_INSPECT_REQUEST, c->pre, c->pre_len);
        int rc = sl_xprt_write(&c->pre_req, &c->up_x, &b, 1,
                          on_pre_written);
        if (rc != 0)
            sl_node_conn_close(c, rc);
        else
            c->refs++;
        goto out;
    }
    start_raw_relay(c);
out:
    conn_unref(c);
}

static void on_up_timeout(uv_timer_t *t)
{
    struct conn *c = CONTAINER_OF(t, struct conn, timer);
    refuse(c, upstream_unreachable, "upstream %s: connect timed out",
           c->b->rec.upstream);
}

static void try_up_connect(struct conn *c)
{
    uv_loop_t *loop = c->b->node->ctx->loop;
    while (c->ai_cur != NULL && c->ai_cur->ai_family != AF_INET &&
           c->ai_cur->ai_family != AF_INET6)
        c->ai_cur = c->ai_cur->ai_next;
    if (c->ai_cur == NULL) {
        refuse(c, upstream_unreachable, "upstream %s: no address",
               c->b->rec.upstream);
        return;
    }
    c->phase = PH_UP_CONNECT;
    sl_xprt_init(&c->up_x);
    uv_tcp_init(loop, &c->up_x.tcp);
    c->up_tcp_open = 1;
    c->refs++;
    uv_tcp_nodelay(&c->up_x.tcp, 1);
    int rc = uv_tcp_connect(&c->creq, &c->up_x.tcp, c->ai_cur->ai_addr,
                            on_up_connect);
    if (rc != 0) {
        refuse(c, upstream_unreachable, "upstream %s: %s", c->b->rec.upstream,
               sl_strerror(rc));
        return;
    }
    c->refs++;
    uv_timer_start(&c->timer, on_up_timeout, SL_NODE_CONNECT_TIMEOUT_MS, 0);
}

static void on_up_resolved(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res)
{
    struct conn *c = CONTAINER_OF(req, struct conn, gai);
    struct sl_node_bridge *b = c->b;
    if (c->closing) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        goto out;
    }
    if (status < 0) {
        refuse(c, upstream_unreachable, "upstream %s: cannot resolve %s: %s",
               b->rec.upstream, b->up.host, sl_strerror(status));
        goto out;
    }
    if (c->ai != NULL)
        uv_freeaddrinfo(c->ai);
    c->ai = res;
    c->ai_cur = res;
    up_addresses_ready(c);
out:
    conn_unref(c);
}

static void up_addresses_ready(struct conn *c)
{
    struct sl_node_bridge *b = c->b;
    /* Every address must be private, not just the first: a name that
     * resolves to one private and one public address is refused. The
     * check runs on these very addresses, so DNS cannot change them
     * between check and dial. */
    if (!b->node->allow_public) {
        for (struct addrinfo *a = c->ai_cur; a != NULL; a = a->ai_next) {
            if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
                continue;
            if (!sl_addr_is_private(a->ai_addr)) {
                char as[SL_ADDR_STRLEN];
                refuse(c, upstream_not_private,
                       "upstream %s resolves to %s, which is not private "
                       "(see --allow-public-upstream)", b->rec.upstream,
                       sl_addr_str(a->ai_addr, as));
                return;
            }
        }
    }
    try_up_connect(c);
}

static void dial_upstream(struct conn *c);

static void data_got_101(struct conn *c, const struct sl_http_head *h,
                         const char *rest, size_t rest_len)
{
    struct sl_node_bridge *b = c->b;
    const struct sl_http_header *fr = sl_http_head_find(h, "Sluice-Framing");
    if (c->asked_mux) {
        if (fr != NULL && sl_http_header_has_token(fr, "mux")) {
            sl_node_mux_start(c, h, rest, rest_len);
            return;
        }
        /* Something in the way dropped the header, or the hub does not
         * know mux: it took this for a pool connection and has just
         * paired it with a user. Served as one; the pool from now on.
         * Mux asked for raw bytes after the 101: what dropped it drops
         * raw too, so this counts as a raw attempt refused (framed). */
        if (!b->no_mux)
            sl_info(conn_log(c), "bridge %s: the hub answered without mux "
                    "framing; keeping a pool instead", bridge_name(b));
        b->no_mux = 1;
        c->asked_mux = 0;
        c->asked_raw = 1;
        c->mux_dial = 0;
        b->mux_dialling--;
    }
    c->raw = c->asked_raw && fr != NULL &&
             sl_http_header_has_token(fr, "raw");
    if (c->asked_raw && !c->raw && !b->no_raw) {
        b->no_raw = 1;
        sl_info(conn_log(c), "bridge %s: the hub answered without raw "
                "framing; using WebSocket frames from now on", bridge_name(b));
    }
    if (!c->raw) {
        const struct sl_http_header *acc =
            sl_http_head_find(h, "Sec-WebSocket-Accept");
        if (acc == NULL ||
            !sl_ws_check_accept(c->key, acc->value, acc->value_len)) {
            sl_warn(conn_log(c), "bridge %s: data connection #%u: bad "
                    "Sec-WebSocket-Accept", bridge_name(b), c->id);
            sl_node_conn_close(c, SL_EPARSE);
            return;
        }
    }
    /* Replaced only once the hub's answer is known good: a hub that
     * answers 101 badly would otherwise get a new dial per answer at once
     * (a pool connection that fails is replaced after a pause). */
    if (c->is_pool) {
        c->is_pool = 0;
        b->pool_idle--;
        b->pool_failures = 0;
        b->pool_refused = 0;
        sl_node_bridge_fill_pool(b);
    }
    if (rest_len > 0) {
        c->pre = malloc(rest_len);
        if (c->pre == NULL) {
            sl_node_conn_close(c, UV_ENOMEM);
            return;
        }
        memcpy(c->pre, rest, rest_len);
        c->pre_len = rest_len;
    }
    sl_http_reader_release(&c->reader);
    c->reader_used = 0;
    if (c->udp_carrier) { /* udp: datagrams, no TCP upstream (node_udp.c) */
        sl_node_udp_start(c, on_ws_close);
        return;
    }
    dial_upstream(c);
}

/* A paired data connection (or a stream): the upstream is dialled. */
static void dial_upstream(struct conn *c)
{
    struct sl_node_bridge *b = c->b;
    if (sl_log_on(conn_log(c), SL_LOG_DEBUG))
        sl_log_event(conn_log(c), SL_LOG_DEBUG,
                     SL_LOG_FIELDS(SL_LOG_STR("route", "node"),
                                   SL_LOG_NUM("conn", c->id),
                                   SL_LOG_STR("kind", "data"),
                                   SL_LOG_STR("identity", b->rec.identity),
                                   SL_LOG_STR("target", b->rec.upstream),
                                   SL_LOG_STR("event", "accepted")),
                     "bridge %s: data connection #%u paired (%s); "
                     "dialling %s", bridge_name(b), c->id,
                     c->mux == NULL && sl_xprt_is_virtual(&c->hub_x)
                         ? "mux stream"
                     : c->raw ? "raw"
                              : "framed",
                     b->rec.upstream);

    if (use_literal(c, b->up.host, b->up.port)) {
        up_addresses_ready(c);
        return;
    }
    c->phase = PH_UP_RESOLVE;
    int rc = resolve(c, b->up.host, b->up.port, on_up_resolved);
    if (rc != 0) {
        refuse(c, upstream_unreachable, "upstream %s: cannot resolve: %s",
               b->rec.upstream, sl_strerror(rc));
        return;
    }
    c->refs++;
}

/* ---------------------------------------------------------- constructors */

struct conn *sl_node_conn_ctl(struct sl_node_bridge *b)
{
    struct conn *c = conn_new(b, CONN_CTL);
    if (c == NULL)
        return NULL;
    b->ctl = c;
    sl_debug(b->node->log, "bridge %s: dialling hub %s (control #%u)",
             bridge_name(b), b->rec.hub, c->id);
    start_dial(c);
    return b->ctl;
}

struct conn *sl_node_conn_data(struct sl_node_bridge *b,
                               const char *fingerprint)
{
    struct conn *c = conn_new(b, CONN_DATA);
    if (c == NULL)
        return NULL;
    if (fingerprint != NULL) {
        snprintf(c->fingerprint, sizeof(c->fingerprint), "%s", fingerprint);
    } else {
        if (sl_uuid4_new(c->fingerprint) != 0) {
            sl_node_conn_close(c, UV_EIO);
            return NULL;
        }
        c->is_pool = 1;
        b->pool_idle++;
    }
    c->asked_raw = !b->no_raw;
    start_dial(c);
    return NULL;
}

struct conn *sl_node_conn_mux(struct sl_node_bridge *b)
{
    struct conn *c = conn_new(b, CONN_DATA);
    if (c == NULL)
        return NULL;
    if (sl_uuid4_new(c->fingerprint) != 0) {
        sl_node_conn_close(c, UV_EIO);
        return NULL;
    }
    c->asked_mux = 1;
    c->mux_dial = 1;
    b->mux_dialling++;
    sl_debug(b->node->log, "bridge %s: dialling hub %s (mux #%u)",
             bridge_name(b), b->rec.hub, c->id);
    start_dial(c);
    return c;
}

struct conn *sl_node_conn_stream(struct sl_node_bridge *b,
                                 struct sl_mux_stream *s)
{
    struct conn *c = conn_new(b, CONN_DATA);
    if (c == NULL)
        return NULL;
    if (sl_mux_stream_attach(s, &c->hub_x, b->node->ctx->loop) != 0) {
        sl_node_conn_close(c, UV_ENOMEM);
        return NULL;
    }
    /* The stream is this connection's transport to the hub, as a paired
     * raw data connection's socket would be. */
    c->hub_tcp_open = 1;
    c->refs++;
    c->raw = 1;
    dial_upstream(c);
    return c;
}

void sl_node_conn_mux_closed(struct conn *c, int reason)
{
    if (!c->closing)
        sl_node_conn_close(c, reason);
    conn_unref(c); /* the transport the engine owned */
}
