#include "acme/dns_update.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/error.h"
#include "net/addr.h"

#define DEFAULT_TIMEOUT_MS 6000
#define DEFAULT_VISIBLE_MS 120000
#define DEFAULT_TTL 60
#define UDP_TRIES 3
#define POLL_MS 500
#define VALUES_MAX 8
#define KEY_FILE_MAX 8192

enum op_step {
    STEP_IDLE,
    STEP_RESOLVE,
    STEP_SOA,
    STEP_UPDATE,
    STEP_POLL,
};

struct xfer;

struct sl_dns_update {
    uv_loop_t *loop;
    struct sl_log *log;
    struct sl_tsig_key key;
    char *server; /* as given */
    char host[SL_DNS_NAME_MAX];
    char port[8];
    uint64_t timeout_ms, visible_ms;
    uint32_t ttl;
    /* The operation. */
    enum op_step step;
    int removing;
    char name[SL_DNS_NAME_MAX];
    char values[VALUES_MAX][256];
    size_t nvalues;
    sl_dns_update_cb cb;
    void *cb_arg;
    struct sockaddr_storage addr;
    char zone[SL_DNS_NAME_MAX];
    uint64_t poll_deadline;
    struct xfer *x;
    uv_getaddrinfo_t gai;
    int gai_running;
    uv_timer_t poll_timer;
    int freeing;
    unsigned open; /* handles and requests not yet called back */
};

/* One message and its answer. Its handles close on their own; the memory
 * goes with the last. */
struct xfer {
    struct sl_dns_update *u;
    uint8_t msg[SL_DNS_MSG_MAX];
    size_t len;
    uint8_t mac[32];
    int is_signed;
    uint16_t id;
    int tcp;
    int tries;
    int done;
    unsigned open;
    uv_udp_t udp;
    uv_tcp_t tcp_h;
    uv_connect_t conn;
    uv_write_t wr;
    uint8_t lenbuf[2];
    uv_timer_t timer;
    uint8_t rbuf[SL_DNS_MSG_MAX + 2];
    size_t rlen;
    int udp_on, tcp_on;
};

static void step_soa(struct sl_dns_update *u);
static void step_update(struct sl_dns_update *u);
static void step_poll(struct sl_dns_update *u);
static void on_answer(struct sl_dns_update *u, int rc,
                      const struct sl_dns_answer *a, const char *why);

static void maybe_free(struct sl_dns_update *u)
{
    if (!u->freeing || u->open > 0)
        return;
    OPENSSL_cleanse(&u->key, sizeof(u->key));
    free(u->server);
    free(u);
}

static void finish(struct sl_dns_update *u, int rc, const char *why)
{
    sl_dns_update_cb cb = u->cb;
    void *arg = u->cb_arg;
    u->step = STEP_IDLE;
    u->cb = NULL;
    if (cb != NULL)
        cb(arg, rc, why);
}

static void failf(struct sl_dns_update *u, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void failf(struct sl_dns_update *u, int rc, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    finish(u, rc, why);
}

/* ---- one exchange ------------------------------------------------------ */

static void xfer_handle_closed(uv_handle_t *h)
{
    struct xfer *x = h->data;
    struct sl_dns_update *u = x->u;
    if (--x->open == 0) {
        free(x);
        u->open--;
        maybe_free(u);
    }
}

static void xfer_close(struct xfer *x)
{
    if (x->udp_on) {
        x->udp_on = 0;
        uv_close((uv_handle_t *)&x->udp, xfer_handle_closed);
    }
    if (x->tcp_on) {
        x->tcp_on = 0;
        uv_close((uv_handle_t *)&x->tcp_h, xfer_handle_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&x->timer))
        uv_close((uv_handle_t *)&x->timer, xfer_handle_closed);
}

/* The answer (or failure) of x, once. */
static void xfer_end(struct xfer *x, int rc, const struct sl_dns_answer *a,
                     const char *why)
{
    struct sl_dns_update *u = x->u;
    if (x->done)
        return;
    x->done = 1;
    if (u->x == x)
        u->x = NULL;
    xfer_close(x);
    if (!u->freeing)
        on_answer(u, rc, a, why);
}

static void server_str(struct sl_dns_update *u, char *out, size_t cap)
{
    char a[SL_ADDR_STRLEN];
    snprintf(out, cap, "%s", sl_addr_str((struct sockaddr *)&u->addr, a));
}

/* Bytes of an answer: the whole message. */
static void xfer_got(struct xfer *x, const uint8_t *p, size_t n)
{
    struct sl_dns_update *u = x->u;
    struct sl_dns_answer a;
    char srv[SL_ADDR_STRLEN], why[256];
    int rc =
        sl_dns_parse(p, n, u->name, x->is_signed ? &u->key : NULL,
                     x->is_signed ? x->mac : NULL, (uint64_t)time(NULL), &a);
    if (rc != 0 || a.id != x->id)
        return; /* not ours (UDP): keep waiting */
    if (a.tc && !x->tcp) {
        /* Truncated: the same question over TCP. */
        x->tries = UDP_TRIES;
        return;
    }
    server_str(u, srv, sizeof(srv));
    snprintf(why, sizeof(why), "%s", srv);
    xfer_end(x, 0, &a, why);
}

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct xfer *x = h->data;
    buf->base = (char *)x->rbuf;
    buf->len = sizeof(x->rbuf);
}

static void start_tcp(struct xfer *x);

static void on_udp_read(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    struct xfer *x = h->data;
    (void)flags;
    if (nread < 0 && !x->done && !x->tcp) {
        /* Nothing on that UDP port (ICMP unreachable): TCP at once. */
        start_tcp(x);
        return;
    }
    if (nread <= 0 || addr == NULL || x->done)
        return;
    xfer_got(x, (const uint8_t *)buf->base, (size_t)nread);
    if (!x->done && x->tries >= UDP_TRIES && !x->tcp)
        start_tcp(x); /* truncated */
}

static int udp_send(struct xfer *x)
{
    uv_buf_t b = uv_buf_init((char *)x->msg, (unsigned)x->len);
    int rc = uv_udp_try_send(&x->udp, &b, 1, NULL);
    return rc < 0 ? rc : 0;
}

static void on_xfer_timer(uv_timer_t *t);

static int start_udp(struct xfer *x)
{
    struct sl_dns_update *u = x->u;
    int rc = uv_udp_init(u->loop, &x->udp);
    if (rc != 0)
        return rc;
    x->udp.data = x;
    x->udp_on = 1;
    x->open++;
    rc = uv_udp_connect(&x->udp, (struct sockaddr *)&u->addr);
    if (rc == 0)
        rc = uv_udp_recv_start(&x->udp, on_udp_alloc, on_udp_read);
    if (rc == 0)
        rc = udp_send(x);
    if (rc == 0)
        uv_timer_start(&x->timer, on_xfer_timer, u->timeout_ms / UDP_TRIES, 0);
    return rc;
}

static void on_tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct xfer *x = h->data;
    buf->base = (char *)x->rbuf + x->rlen;
    buf->len = sizeof(x->rbuf) - x->rlen;
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct xfer *x = s->data;
    (void)buf;
    char srv[SL_ADDR_STRLEN];
    if (x->done)
        return;
    if (nread < 0) {
        server_str(x->u, srv, sizeof(srv));
        char why[256];
        snprintf(why, sizeof(why),
                 "%s closed the TCP connection without an "
                 "answer",
                 srv);
        xfer_end(x, nread == UV_EOF ? UV_ECONNRESET : (int)nread, NULL, why);
        return;
    }
    x->rlen += (size_t)nread;
    if (x->rlen < 2)
        return;
    size_t want = (size_t)x->rbuf[0] << 8 | x->rbuf[1];
    if (want > SL_DNS_MSG_MAX) {
        server_str(x->u, srv, sizeof(srv));
        char why[256];
        snprintf(why, sizeof(why), "%s answered with %zu bytes, over %d", srv,
                 want, SL_DNS_MSG_MAX);
        xfer_end(x, SL_ETOOBIG, NULL, why);
        return;
    }
    if (x->rlen < 2 + want)
        return;
    xfer_got(x, x->rbuf + 2, want);
    if (!x->done) {
        server_str(x->u, srv, sizeof(srv));
        char why[256];
        snprintf(why, sizeof(why),
                 "%s sent an answer that is not one (or "
                 "not signed with the key)",
                 srv);
        xfer_end(x, SL_EPARSE, NULL, why);
    }
}

static void on_tcp_written(uv_write_t *w, int status)
{
    struct xfer *x = w->data;
    if (status != 0 && !x->done) {
        char why[256], srv[SL_ADDR_STRLEN];
        server_str(x->u, srv, sizeof(srv));
        snprintf(why, sizeof(why), "cannot send to %s over TCP: %s", srv,
                 uv_strerror(status));
        xfer_end(x, status, NULL, why);
    }
}

static void on_tcp_connect(uv_connect_t *c, int status)
{
    struct xfer *x = c->data;
    if (x->done)
        return;
    if (status != 0) {
        char why[256], srv[SL_ADDR_STRLEN];
        server_str(x->u, srv, sizeof(srv));
        snprintf(why, sizeof(why), "cannot reach %s (TCP): %s", srv,
                 uv_strerror(status));
        xfer_end(x, status, NULL, why);
        return;
    }
    x->lenbuf[0] = (uint8_t)(x->len >> 8);
    x->lenbuf[1] = (uint8_t)x->len;
    uv_buf_t b[2] = {uv_buf_init((char *)x->lenbuf, 2),
                     uv_buf_init((char *)x->msg, (unsigned)x->len)};
    x->wr.data = x;
    int rc = uv_write(&x->wr, (uv_stream_t *)&x->tcp_h, b, 2, on_tcp_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&x->tcp_h, on_tcp_alloc, on_tcp_read);
    if (rc != 0) {
        char why[256], srv[SL_ADDR_STRLEN];
        server_str(x->u, srv, sizeof(srv));
        snprintf(why, sizeof(why), "cannot send to %s over TCP: %s", srv,
                 uv_strerror(rc));
        xfer_end(x, rc, NULL, why);
    }
}

static void start_tcp(struct xfer *x)
{
    struct sl_dns_update *u = x->u;
    char srv[SL_ADDR_STRLEN];
    server_str(u, srv, sizeof(srv));
    sl_debug(u->log, "acme: dns: asking %s over TCP (%s)", srv,
             x->tries >= UDP_TRIES ? "UDP truncated or unanswered"
                                   : "nothing on its UDP port");
    x->tcp = 1;
    x->rlen = 0;
    if (x->udp_on) {
        x->udp_on = 0;
        uv_close((uv_handle_t *)&x->udp, xfer_handle_closed);
    }
    int rc = uv_tcp_init(u->loop, &x->tcp_h);
    if (rc == 0) {
        x->tcp_h.data = x;
        x->tcp_on = 1;
        x->open++;
        x->conn.data = x;
        rc = uv_tcp_connect(&x->conn, &x->tcp_h, (struct sockaddr *)&u->addr,
                            on_tcp_connect);
    }
    if (rc != 0) {
        char why[256];
        snprintf(why, sizeof(why), "cannot reach %s (TCP): %s", srv,
                 uv_strerror(rc));
        xfer_end(x, rc, NULL, why);
        return;
    }
    uv_timer_start(&x->timer, on_xfer_timer, u->timeout_ms, 0);
}

static void on_xfer_timer(uv_timer_t *t)
{
    struct xfer *x = t->data;
    struct sl_dns_update *u = x->u;
    if (x->done)
        return;
    if (!x->tcp && ++x->tries < UDP_TRIES) {
        int rc = udp_send(x);
        if (rc == 0) {
            uv_timer_start(&x->timer, on_xfer_timer, u->timeout_ms / UDP_TRIES,
                           0);
            return;
        }
    }
    if (!x->tcp) {
        start_tcp(x); /* UDP may be filtered where TCP is not */
        return;
    }
    char why[256], srv[SL_ADDR_STRLEN];
    server_str(u, srv, sizeof(srv));
    snprintf(why, sizeof(why),
             "no answer from %s (UDP and TCP) within %llu "
             "ms",
             srv, (unsigned long long)u->timeout_ms);
    xfer_end(x, UV_ETIMEDOUT, NULL, why);
}

/* Sends msg (signing it when sign is set) and waits for its answer. */
static void exchange(struct sl_dns_update *u, const uint8_t *msg, size_t len,
                     int sign)
{
    struct xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        failf(u, UV_ENOMEM, "out of memory");
        return;
    }
    x->u = u;
    memcpy(x->msg, msg, len);
    x->len = len;
    x->id = (uint16_t)(msg[0] << 8 | msg[1]);
    if (sign) {
        int rc = sl_tsig_sign(&u->key, x->msg, &x->len, sizeof(x->msg),
                              (uint64_t)time(NULL), x->mac);
        if (rc != 0) {
            free(x);
            failf(u, rc, "cannot sign the DNS message: %s", sl_strerror(rc));
            return;
        }
        x->is_signed = 1;
    }
    uv_timer_init(u->loop, &x->timer);
    x->timer.data = x;
    x->open = 1;
    u->open++;
    u->x = x;
    int rc = start_udp(x);
    if (rc != 0)
        start_tcp(x);
}

static uint16_t new_id(void)
{
    uint8_t b[2] = {0, 0};
    if (RAND_bytes(b, 2) != 1)
        b[0] = (uint8_t)rand();
    return (uint16_t)(b[0] << 8 | b[1]);
}

/* ---- the steps --------------------------------------------------------- */

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct sl_dns_update *u = req->data;
    u->gai_running = 0;
    u->open--;
    if (u->freeing) {
        uv_freeaddrinfo(ai);
        maybe_free(u);
        return;
    }
    if (status != 0 || ai == NULL) {
        uv_freeaddrinfo(ai);
        failf(u, status != 0 ? status : SL_ENOTFOUND,
              "cannot resolve the DNS server %s: %s", u->server,
              uv_strerror(status != 0 ? status : UV_EAI_NONAME));
        return;
    }
    memset(&u->addr, 0, sizeof(u->addr));
    memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(ai);
    step_soa(u);
}

static void step_resolve(struct sl_dns_update *u)
{
    if (sl_addr_parse(u->server, &u->addr) == 0) {
        step_soa(u);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    u->step = STEP_RESOLVE;
    u->gai.data = u;
    int rc =
        uv_getaddrinfo(u->loop, &u->gai, on_resolved, u->host, u->port, &hints);
    if (rc != 0) {
        failf(u, rc, "cannot resolve the DNS server %s: %s", u->server,
              uv_strerror(rc));
        return;
    }
    u->gai_running = 1;
    u->open++;
}

static void step_soa(struct sl_dns_update *u)
{
    uint8_t msg[SL_DNS_MSG_MAX];
    size_t len;
    u->step = STEP_SOA;
    int rc = sl_dns_query_build(new_id(), u->name, SL_DNS_T_SOA, msg,
                                sizeof(msg), &len);
    if (rc != 0) {
        failf(u, rc, "\"%s\" is not a DNS name", u->name);
        return;
    }
    exchange(u, msg, len, 0);
}

static void step_update(struct sl_dns_update *u)
{
    uint8_t msg[SL_DNS_MSG_MAX];
    size_t len;
    const char *names[VALUES_MAX], *values[VALUES_MAX];
    for (size_t i = 0; i < u->nvalues; i++) {
        names[i] = u->name;
        values[i] = u->values[i];
    }
    u->step = STEP_UPDATE;
    int rc = sl_dns_update_build(new_id(), u->zone, u->removing, names, values,
                                 u->nvalues, u->ttl, msg, sizeof(msg), &len);
    if (rc != 0) {
        failf(u, rc, "cannot build the DNS update for %s: %s", u->name,
              sl_strerror(rc));
        return;
    }
    exchange(u, msg, len, 1);
}

static void on_poll_timer(uv_timer_t *t)
{
    step_poll(t->data);
}

static void step_poll(struct sl_dns_update *u)
{
    uint8_t msg[SL_DNS_MSG_MAX];
    size_t len;
    u->step = STEP_POLL;
    int rc = sl_dns_query_build(new_id(), u->name, SL_DNS_T_TXT, msg,
                                sizeof(msg), &len);
    if (rc != 0) {
        failf(u, rc, "\"%s\" is not a DNS name", u->name);
        return;
    }
    exchange(u, msg, len, 0);
}

static int all_visible(const struct sl_dns_update *u,
                       const struct sl_dns_answer *a)
{
    for (size_t i = 0; i < u->nvalues; i++) {
        int seen = 0;
        for (size_t k = 0; k < a->ntxt && !seen; k++)
            seen = strcmp(a->txt[k], u->values[i]) == 0;
        if (!seen)
            return 0;
    }
    return 1;
}

static const char *tsig_hint(int err)
{
    switch (err) {
    case SL_DNS_BADSIG: return " (wrong secret for the key?)";
    case SL_DNS_BADKEY: return " (the server does not know the key's name)";
    case SL_DNS_BADTIME: return " (the clocks differ by over 5 minutes)";
    default: return "";
    }
}

static void on_answer(struct sl_dns_update *u, int rc,
                      const struct sl_dns_answer *a, const char *why)
{
    char rbuf[16], ebuf[16];
    if (rc != 0) {
        finish(u, rc, why);
        return;
    }
    switch (u->step) {
    case STEP_SOA:
        if (!a->has_soa) {
            failf(u, SL_ENOTFOUND,
                  "%s gave no SOA for %s (%s): is it the primary server of "
                  "its zone?",
                  why, u->name,
                  sl_dns_rcode_name(a->rcode, rbuf, sizeof(rbuf)));
            return;
        }
        snprintf(u->zone, sizeof(u->zone), "%s", a->soa_owner);
        sl_debug(u->log, "acme: dns: %s is in zone %s on %s", u->name,
                 u->zone[0] ? u->zone : ".", why);
        step_update(u);
        return;
    case STEP_UPDATE:
        if (a->has_tsig && a->tsig_error != 0) {
            failf(u, SL_EAUTH, "%s refused the update of %s: TSIG %s%s", why,
                  u->name, sl_dns_rcode_name(a->tsig_error, ebuf, sizeof(ebuf)),
                  tsig_hint(a->tsig_error));
            return;
        }
        if (a->rcode != SL_DNS_NOERROR) {
            failf(u,
                  a->rcode == SL_DNS_NOTAUTH || a->rcode == SL_DNS_REFUSED
                      ? SL_EAUTH
                      : SL_EDENIED,
                  "%s refused the update of %s in zone %s: %s%s", why, u->name,
                  u->zone, sl_dns_rcode_name(a->rcode, rbuf, sizeof(rbuf)),
                  a->rcode == SL_DNS_REFUSED
                      ? " (the key may not update this zone)"
                  : a->rcode == SL_DNS_NOTAUTH ? " (TSIG not accepted)"
                                               : "");
            return;
        }
        if (!a->tsig_ok) {
            failf(u, SL_EAUTH,
                  "%s answered the update of %s without a valid TSIG "
                  "signature of the key",
                  why, u->name);
            return;
        }
        if (u->removing) {
            finish(u, 0, why);
            return;
        }
        u->poll_deadline = uv_now(u->loop) + u->visible_ms;
        step_poll(u);
        return;
    case STEP_POLL:
        if (all_visible(u, a)) {
            finish(u, 0, why);
            return;
        }
        if (uv_now(u->loop) >= u->poll_deadline) {
            failf(u, UV_ETIMEDOUT,
                  "%s still does not answer with the TXT records of %s "
                  "after %llu ms",
                  why, u->name, (unsigned long long)u->visible_ms);
            return;
        }
        uv_timer_start(&u->poll_timer, on_poll_timer, POLL_MS, 0);
        return;
    default: return;
    }
}

static int start_op(struct sl_dns_update *u, int removing, const char *name,
                    const char *const *values, size_t n, sl_dns_update_cb cb,
                    void *arg)
{
    if (u->step != STEP_IDLE || u->freeing)
        return UV_EBUSY;
    if (n == 0 || n > VALUES_MAX || strlen(name) >= sizeof(u->name))
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (strlen(values[i]) >= sizeof(u->values[i]))
            return UV_EINVAL;
    snprintf(u->name, sizeof(u->name), "%s", name);
    for (size_t i = 0; i < n; i++)
        snprintf(u->values[i], sizeof(u->values[i]), "%s", values[i]);
    u->nvalues = n;
    u->removing = removing;
    u->cb = cb;
    u->cb_arg = arg;
    u->step = STEP_RESOLVE;
    step_resolve(u);
    return 0;
}

int sl_dns_update_publish(struct sl_dns_update *u, const char *name,
                          const char *const *values, size_t n,
                          sl_dns_update_cb cb, void *arg)
{
    return start_op(u, 0, name, values, n, cb, arg);
}

int sl_dns_update_remove(struct sl_dns_update *u, const char *name,
                         const char *const *values, size_t n,
                         sl_dns_update_cb cb, void *arg)
{
    return start_op(u, 1, name, values, n, cb, arg);
}

int sl_dns_update_busy(const struct sl_dns_update *u)
{
    return u->step != STEP_IDLE;
}

/* Splits "host:port" ("[v6]:port" too). */
static int split_server(struct sl_dns_update *u, const char *s)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hlen;
    if (colon == NULL || colon[1] == '\0')
        return SL_EPARSE;
    hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 2 || s[hlen - 1] != ']')
            return SL_EPARSE;
        h++;
        hlen -= 2;
    }
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (hlen == 0 || hlen >= sizeof(u->host) || *end != '\0' || port < 1 ||
        port > 65535)
        return SL_EPARSE;
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    snprintf(u->port, sizeof(u->port), "%ld", port);
    return 0;
}

int sl_dns_update_new(uv_loop_t *loop, struct sl_log *log,
                      const struct sl_dns_update_opts *opts,
                      struct sl_dns_update **out, char *err, size_t cap)
{
    char text[KEY_FILE_MAX + 1], why[256];
    size_t n = 0;
    int rc = SL_ECONFIG;
    struct sl_dns_update *u = calloc(1, sizeof(*u));
    *out = NULL;
    if (u == NULL) {
        snprintf(err, cap, "out of memory");
        return UV_ENOMEM;
    }
    u->loop = loop;
    u->log = log;
    u->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    u->visible_ms = opts->visible_ms ? opts->visible_ms : DEFAULT_VISIBLE_MS;
    u->ttl = opts->ttl ? opts->ttl : DEFAULT_TTL;
    if (opts->server == NULL || split_server(u, opts->server) != 0) {
        snprintf(err, cap, "--acme-dns-update %s: not HOST:PORT",
                 opts->server ? opts->server : "(none)");
        goto fail;
    }
    if (opts->key_file == NULL) {
        snprintf(err, cap, "--acme-dns-update needs --acme-tsig-key FILE");
        goto fail;
    }
    FILE *f = fopen(opts->key_file, "r");
    if (f == NULL) {
        snprintf(err, cap, "%s: cannot open (%s)", opts->key_file,
                 strerror(errno));
        goto fail;
    }
    n = fread(text, 1, sizeof(text), f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > KEY_FILE_MAX) {
        snprintf(err, cap, "%s: %s", opts->key_file,
                 bad ? "cannot read it" : "too long for a key file");
        goto fail;
    }
    if (sl_tsig_key_parse(text, n, &u->key, why, sizeof(why)) != 0) {
        snprintf(err, cap, "%s: %s", opts->key_file, why);
        goto fail;
    }
    u->server = strdup(opts->server);
    if (u->server == NULL) {
        rc = UV_ENOMEM;
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    uv_timer_init(loop, &u->poll_timer);
    u->poll_timer.data = u;
    uv_unref((uv_handle_t *)&u->poll_timer);
    u->open = 1; /* the poll timer */
    OPENSSL_cleanse(text, sizeof(text));
    *out = u;
    return 0;
fail:
    OPENSSL_cleanse(text, sizeof(text));
    OPENSSL_cleanse(&u->key, sizeof(u->key));
    free(u->server);
    free(u);
    return rc;
}

static void on_poll_timer_closed(uv_handle_t *h)
{
    struct sl_dns_update *u = h->data;
    u->open--;
    maybe_free(u);
}

void sl_dns_update_free(struct sl_dns_update *u)
{
    if (u == NULL || u->freeing)
        return;
    u->freeing = 1;
    u->cb = NULL;
    if (u->gai_running)
        uv_cancel((uv_req_t *)&u->gai);
    if (u->x != NULL) {
        struct xfer *x = u->x;
        u->x = NULL;
        x->done = 1;
        xfer_close(x);
    }
    uv_close((uv_handle_t *)&u->poll_timer, on_poll_timer_closed);
}
