/* User HTTP through the tunnel: request heads are parsed and rewritten
 * (X-Forwarded-*), bodies and responses stream with back-pressure, and
 * http-parser runs over both directions only to find where each message
 * ends, so a keep-alive connection can name another identity on its next
 * request, and a 101 to a request that asked for an upgrade turns the
 * pair into an opaque relay (which passes a FIN on). With cookie
 * isolation response heads are held until whole and their Set-Cookie
 * Domain attributes rewritten. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/str.h"
#include "hub/hub_cookies.h"
#include "hub/hub_int.h"

/* User bytes kept while a request is pairing or its response runs. */
#define HUB_PENDING_MAX (16 * 1024)

static int req_complete(http_parser *p)
{
    struct hub_conn *u = p->data;
    u->req_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings req_settings = {
    .on_message_complete = req_complete,
};

static int resp_headers(http_parser *p)
{
    struct hub_conn *u = p->data;
    unsigned st = p->status_code;
    /* A switch nobody asked for would turn the pair into an opaque
     * relay the user did not want (and the hub no longer reads). */
    if (st == 101 && !u->reqp.upgrade)
        return -1;
    if (st >= 100 && st < 200 && st != 101)
        return 0; /* interim: no body, another response follows */
    if (!http_should_keep_alive(p))
        u->keep_alive = 0;
    /* No body after a HEAD, a 204 or a 304 whatever Content-Length says
     * (RFC 9112 6.3): waiting for one would stall the connection. */
    return u->resp_head || st == 204 || st == 304 ? 1 : 0;
}

static int resp_complete(http_parser *p)
{
    struct hub_conn *u = p->data;
    unsigned st = p->status_code;
    if (st >= 100 && st < 200 && st != 101)
        return 0;
    u->resp_done = 1;
    if (st == 101)
        u->resp_upgrade = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_headers_complete = resp_headers,
    .on_message_complete = resp_complete,
};

static int parser_ok(const http_parser *p)
{
    enum http_errno e = HTTP_PARSER_ERRNO(p);
    return e == HPE_OK || e == HPE_PAUSED;
}

static void reply_text(struct hub_conn *u, int status, const char *body)
{
    /* (A passthrough user is reset there: no HTTP answer reaches it.) */
    hub_conn_reply_close(u, status, NULL, body, NULL);
}

/* 1 if the Host value has a port that is not 1-65535 in at most five
 * digits ("h:", "h:0", "h:99999999"): nginx and HAProxy answer 400. */
static int host_port_bad(const char *v, size_t n)
{
    sl_trim_ows(&v, &n);
    if (n > 0 && v[0] == '[')
        return 0; /* a literal: never routed to an identity */
    const char *colon = memchr(v, ':', n);
    if (colon == NULL)
        return 0;
    size_t i = (size_t)(colon - v) + 1;
    if (n - i == 0 || n - i > 5)
        return 1;
    unsigned port = 0;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 1;
        port = port * 10 + (unsigned)(v[i] - '0');
    }
    return port == 0 || port > 65535;
}

/* Appends bytes to the head buffer: body bytes read while a request is
 * pairing, or the start of the next request. Reading stops once more than
 * HUB_PENDING_MAX bytes wait, but a read in progress may still bring a
 * whole block: hence the bound. */
#define HUB_PENDING_CAP (HUB_PENDING_MAX + HUB_BLOCK)

static int head_append(struct hub_conn *u, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (u->head_len + n > HUB_PENDING_CAP)
        return SL_ETOOBIG;
    if (u->head_len + n > u->head_cap) {
        size_t cap = u->head_cap ? u->head_cap : 4096;
        while (cap < u->head_len + n)
            cap *= 2;
        if (cap > HUB_PENDING_CAP)
            cap = HUB_PENDING_CAP;
        char *q = realloc(u->head, cap);
        if (q == NULL)
            return UV_ENOMEM;
        u->head = q;
        u->head_cap = cap;
    }
    memcpy(u->head + u->head_len, p, n);
    u->head_len += n;
    return 0;
}

static void head_consume(struct hub_conn *u, size_t n)
{
    if (n >= u->head_len) {
        u->head_len = 0;
    } else {
        memmove(u->head, u->head + n, u->head_len - n);
        u->head_len -= n;
    }
    if (u->head_len == 0) {
        /* An idle keep-alive connection holds no buffer. */
        free(u->head);
        u->head = NULL;
        u->head_cap = 0;
    }
}

/* Bounded appender for the rewritten head. */
struct out {
    char *p;
    size_t len, cap;
    int over;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->over || o->len + n > o->cap) {
        o->over = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static int is_named(const struct sl_http_header *x, const char *name)
{
    size_t n = strlen(name);
    return x->name_len == n && strncasecmp(x->name, name, n) == 0;
}

/* Bytes [start, end) of the line that holds header x: from its name
 * through its LF. Names start their line and a line ends at the first LF
 * (sl_http_head_parse refuses obs-fold and bare CR). Not found from the
 * value: http-parser points an empty value at the next line. */
static void header_line(const char *base, size_t head_end,
                        const struct sl_http_header *x, size_t *ls,
                        size_t *le)
{
    size_t nend = (size_t)(x->name + x->name_len - base);
    const char *nl = memchr(base + nend, '\n', head_end - nend);
    *ls = (size_t)(x->name - base);
    *le = nl ? (size_t)(nl - base) + 1 : head_end;
}

/* The head as the upstream gets it, as HAProxy and nginx build it:
 *  - X-Forwarded-For is ONE header: the values of all the user's
 *    X-Forwarded-For headers, in order, empty ones left out, then the
 *    user's address last (nginx's $proxy_add_x_forwarded_for). It stands
 *    where the first non-empty one stood, or at the end. A second header
 *    would let realip and Express pick a value the user wrote.
 *  - X-Forwarded-Proto, X-Forwarded-Host and Forwarded are the hub's
 *    alone: the user's are dropped (they would lie), the hub's added. */
static int build_head(struct hub_conn *u, const struct sl_http_head *h,
                      const struct sl_http_header *host, char *buf, size_t cap)
{
    const char *base = u->head;
    size_t end = h->len;
    struct out o = {buf, 0, cap, 0};
    const struct sl_http_header *xff = NULL; /* the first non-empty one */
    /* Without the final empty line. */
    if (end > 0 && base[end - 1] == '\n')
        end--;
    if (end > 0 && base[end - 1] == '\r')
        end--;
    for (size_t i = 0; i < h->nhdr && xff == NULL; i++)
        if (is_named(&h->hdr[i], "x-forwarded-for") &&
            h->hdr[i].value_len > 0)
            xff = &h->hdr[i];
    size_t cursor = 0;
    for (size_t i = 0; i < h->nhdr; i++) {
        const struct sl_http_header *x = &h->hdr[i];
        size_t ls, le;
        if (x == xff) {
            /* The line up to its value, the other values, the peer, and
             * the rest of the line as it was. */
            size_t vend = (size_t)(x->value + x->value_len - base);
            put(&o, base + cursor, vend - cursor);
            for (size_t j = i + 1; j < h->nhdr; j++) {
                const struct sl_http_header *y = &h->hdr[j];
                if (is_named(y, "x-forwarded-for") && y->value_len > 0) {
                    puts_(&o, ", ");
                    put(&o, y->value, y->value_len);
                }
            }
            puts_(&o, ", ");
            puts_(&o, u->peer_ip);
            cursor = vend;
        } else if (is_named(x, "x-forwarded-for") ||
                   is_named(x, "x-forwarded-proto") ||
                   is_named(x, "x-forwarded-host") ||
                   is_named(x, "forwarded")) {
            header_line(base, end, x, &ls, &le);
            put(&o, base + cursor, ls - cursor);
            cursor = le;
        }
    }
    put(&o, base + cursor, end - cursor);
    if (end > 0 && base[end - 1] != '\n')
        puts_(&o, "\r\n");
    if (xff == NULL) {
        puts_(&o, "X-Forwarded-For: ");
        puts_(&o, u->peer_ip);
        puts_(&o, "\r\n");
    }
    puts_(&o, "X-Forwarded-Proto: ");
    puts_(&o, sl_xprt_is_tls(&u->xp) ? "https"
              : u->hub->opts.public_scheme ? u->hub->opts.public_scheme
                                           : "http");
    puts_(&o, "\r\nX-Forwarded-Host: ");
    put(&o, host->value, host->value_len);
    puts_(&o, "\r\n\r\n");
    return o.over ? SL_ETOOBIG : (int)o.len;
}

static int check_headers_done(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings check_settings = {
    .on_headers_complete = check_headers_done,
};

/* NULL if http-parser reads the rewritten head as one head of exactly
 * len bytes (paused at its end, it has read all but the last byte), else
 * why not. */
static const char *rewritten_head_bad(const char *p, size_t len)
{
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    size_t k = http_parser_execute(&hp, &check_settings, p, len);
    if (HTTP_PARSER_ERRNO(&hp) != HPE_PAUSED)
        return HTTP_PARSER_ERRNO(&hp) == HPE_OK
                   ? "incomplete head"
                   : http_errno_description(HTTP_PARSER_ERRNO(&hp));
    return k + 1 == len ? NULL : "the head ends before its empty line";
}

static void user_close(struct hub_conn *u, int reason)
{
    hub_conn_close(u, reason); /* closes the paired data conn too */
}

/* Unpairs u from its data conn and closes that one with reason. */
void hub_user_unpair(struct hub_conn *u, int reason)
{
    struct hub_conn *d = u->peer;
    if (d == NULL)
        return;
    u->peer = NULL;
    d->peer = NULL;
    if (d->alloc && d->alloc->npairs > 0)
        d->alloc->npairs--;
    hub_conn_close(d, reason);
}

static void drop_data(struct hub_conn *u)
{
    hub_user_unpair(u, 0);
}

static void pause_user(struct hub_conn *u)
{
    u->paused_by_peer = 1;
    hub_conn_read_stop(u);
}

static void send_to_data(struct hub_conn *u, struct hub_block *b,
                         const char *p, size_t n)
{
    struct hub_conn *d = u->peer;
    if (d == NULL) {
        hub_block_put(u->hub, b);
        return;
    }
    int rc = hub_data_send(d, b, p, n);
    if (rc < 0) {
        user_close(u, rc);
        return;
    }
    if (rc == 1)
        pause_user(u);
}

static void send_to_user(struct hub_conn *u, struct hub_block *b,
                         const char *p, size_t n)
{
    int rc = hub_conn_write(u, b, p, n);
    if (rc < 0) {
        user_close(u, rc);
        return;
    }
    hub_count_user(u->alloc, n, 0);
    if (!u->closing && u->peer && hub_conn_queued(u) > HUB_HIGH_WATER) {
        u->data_paused = 1;
        hub_data_pause(u->peer);
    }
}

/* ---- Opaque pairs on the engine's relay ------------------------------- */

static int relay_on_read(struct sl_relay *r, size_t n, enum sl_relay_dir dir)
{
    struct hub_relay *hr = r->data;
    struct hub_conn *u = hr->u;
    /* Counted as the copying path counts: at the user's side and at the
     * bridge's, the stream port's hooks, and progress for the idle
     * timeout. */
    if (dir == SL_RELAY_UP) {
        if (u->streams != NULL)
            hub_streams_on_read(u, n, SL_HOOK_UP);
        hub_count_user(u->alloc, 0, n);
        hub_count_bridge(u->alloc, 0, n);
        hub_progress(u);
    } else {
        hub_count_bridge(u->alloc, n, 0);
        if (u->streams != NULL)
            hub_streams_on_read(u, n, SL_HOOK_DOWN);
        hub_count_user(u->alloc, n, 0);
        hub_progress(hr->d);
    }
    /* A cap set after the pair came here (an operator's, a grant that
     * expired into the free plan) paces it as it paces the others: the
     * bucket in debt holds this direction until the rate tick. */
    if (!u->closing && u->alloc != NULL && u->alloc->bw != NULL)
        hub_rate_charge(dir == SL_RELAY_UP ? u : hr->d, u->alloc,
                        dir == SL_RELAY_UP ? HUB_RATE_UP : HUB_RATE_DOWN, n);
    /* A traffic limit reached closes the pair from inside the counting. */
    return u->closing ? SL_ELIMIT : 0;
}

static void relay_on_error(struct sl_relay *r, int reason,
                           struct sl_xprt *where)
{
    struct hub_relay *hr = r->data;
    /* The bridge's path died under the user: a reset, as the service's
     * own death would give (hub_user_upstream_gone). */
    if (where == &hr->d->xp && !hr->u->closing)
        hub_conn_reset(hr->u);
    (void)reason;
}

static void relay_on_done(struct sl_relay *r, int reason)
{
    struct hub_relay *hr = r->data;
    struct hub_conn *u = hr->u, *d = hr->d;
    u->relay = NULL;
    d->relay = NULL;
    free(hr);
    /* An end the relay found itself (EOF both ways, an error): the conns
     * close now; their sockets are closed already. */
    int why = reason == UV_EOF ? 0 : reason;
    if (!u->closing)
        hub_conn_close(u, why);
    if (!d->closing)
        hub_conn_close(d, why);
    hub_conn_xp_closed(u);
    hub_conn_xp_closed(d);
}

/* 1 if pair u's bytes need no one at the hub: no parsing, no frames, no
 * mux stream, no bandwidth cap to pace them. */
static int relay_fits(const struct hub_conn *u)
{
    const struct hub_conn *d = u->peer;
    return u->passthrough && d != NULL && !u->closing && !d->closing &&
           d->kind == C_DATA && !d->framed && !d->ws_active &&
           d->via == NULL && d->mux == NULL && !u->ws_active &&
           u->alloc != NULL && u->alloc->bw == NULL && !u->rate_held &&
           !d->rate_held && !u->paused_by_peer && !u->data_paused &&
           u->head_len == 0 && !u->eof_in && !d->eof_in;
}

/* Returns 1 if the relay took the pair. */
static int relay_start(struct hub_conn *u)
{
    struct hub_conn *d = u->peer;
    struct sl_hub *hub = u->hub;
    if (!relay_fits(u))
        return 0;
    struct hub_relay *hr = calloc(1, sizeof(*hr));
    if (hr == NULL)
        return 0; /* the hub's own forwarding goes on */
    hub_conn_read_stop(u);
    hub_conn_read_stop(d);
    hr->u = u;
    hr->d = d;
    hr->r.data = hr;
    hr->r.on_read = relay_on_read;
    hr->r.on_error = relay_on_error;
    hr->r.on_done = relay_on_done;
    u->relay = hr;
    d->relay = hr;
    struct sl_relay_opts opts = {
        .high_water = HUB_HIGH_WATER,
        .low_water = HUB_LOW_WATER,
        .pool = &hub->relay_pool,
        .splice = 1,
    };
    /* On failure the relay closes both sockets and its done closes the
     * conns. */
    if (sl_relay_start(&hr->r, &u->xp, &d->xp, &opts) == 0)
        sl_debug(hub->log, "hub user %llu (%s): relay with data %llu %s",
                 (unsigned long long)u->id, u->alloc->identity,
                 (unsigned long long)d->id,
                 sl_relay_spliced(&hr->r) ? "spliced (zero-copy)"
                                          : "copying");
    return 1;
}

static void go_opaque(struct hub_conn *u)
{
    u->ustate = U_OPAQUE;
    if (u->head_len > 0) {
        /* User bytes that arrived before the 101. */
        char *p = u->head;
        size_t n = u->head_len;
        u->head = NULL;
        u->head_len = u->head_cap = 0;
        hub_count_user(u->alloc, 0, n);
        if (!u->closing)
            send_to_data(u, NULL, p, n);
        free(p);
        if (u->closing)
            return;
    }
    if (relay_start(u))
        return;
    if (!u->paused_by_peer)
        hub_conn_read_blocks(u);
}

static void response_finished(struct hub_conn *u)
{
    u->resp_active = 0;
    if (u->resp_upgrade) {
        go_opaque(u);
        return;
    }
    if (!u->req_done || !u->keep_alive) {
        drop_data(u);
        hub_conn_finish(u);
        return;
    }
    /* Keep-alive: the next head (maybe already buffered). */
    u->ustate = U_HEAD;
    u->paused_by_peer = 0;
    hub_conn_start_head(u);
}

/* Feeds request body bytes; returns how many belong to this request. */
static size_t body_feed(struct hub_conn *u, const char *p, size_t n)
{
    size_t k = http_parser_execute(&u->reqp, &req_settings, p, n);
    if (!parser_ok(&u->reqp))
        return (size_t)-1;
    return k;
}

/* A request body http-parser refuses (a bad chunk size, say): said once
 * in the log, and to the user while no response has started. */
static void bad_body(struct hub_conn *u)
{
    sl_info(u->hub->log, "hub user %llu (%s): malformed request body: %s; "
                         "closing",
            (unsigned long long)u->id, u->alloc ? u->alloc->identity : "-",
            http_errno_description(HTTP_PARSER_ERRNO(&u->reqp)));
    if (u->resp_started) {
        user_close(u, SL_EPARSE);
        return;
    }
    drop_data(u);
    reply_text(u, 400, "Bad Request: malformed body");
}

static void forward(struct hub_conn *u)
{
    struct hub_block *fwd = u->fwd;
    size_t fwd_len = u->fwd_len;
    u->fwd = NULL;
    http_parser_init(&u->reqp, HTTP_REQUEST);
    u->reqp.data = u;
    http_parser_init(&u->respp, HTTP_RESPONSE);
    u->respp.data = u;
    u->req_done = u->resp_done = u->resp_started = u->resp_upgrade = 0;
    u->resp_active = 1;
    u->rhead_wait =
        sl_cookies_isolation(u->hub->opts.cookie_isolation, u->hub->s_domain);
    u->rhead_len = u->rhead_scanned = 0;
    /* The rewritten head frames the message exactly as the original. */
    size_t k = http_parser_execute(&u->reqp, &req_settings, fwd->data,
                                   fwd_len);
    if (!parser_ok(&u->reqp) || (k != fwd_len && !u->req_done)) {
        hub_block_put(u->hub, fwd);
        reply_text(u, 400, "Bad Request");
        drop_data(u);
        return;
    }
    int upgrade = u->reqp.upgrade;
    send_to_data(u, fwd, fwd->data, fwd_len);
    if (u->closing)
        return;
    if (!u->req_done && !upgrade && u->head_len > 0) {
        /* Body bytes that came with the head. */
        size_t n = body_feed(u, u->head, u->head_len);
        if (n == (size_t)-1) {
            bad_body(u);
            return;
        }
        /* Counted here, where they leave the buffer for their
         * allocation, as the head was in hub_user_head. */
        hub_count_user(u->alloc, 0, n);
        if (u->closing)
            return;
        send_to_data(u, NULL, u->head, n);
        if (u->closing)
            return;
        head_consume(u, n);
    }
    if (u->req_done || upgrade) {
        u->req_done = 1;
        u->ustate = U_WAIT;
        return;
    }
    u->ustate = U_BODY;
    if (!u->paused_by_peer)
        hub_conn_read_blocks(u);
}

void hub_user_paired(struct hub_conn *u, struct hub_conn *d)
{
    (void)d;
    sl_debug(u->hub->log, "hub user %llu (%s): paired with data %llu",
             (unsigned long long)u->id, u->alloc->identity,
             (unsigned long long)d->id);
    if (u->passthrough) {
        go_opaque(u); /* the ClientHello, and what followed, first */
        return;
    }
    forward(u);
}

void hub_pair(struct hub_conn *u, struct hub_conn *d)
{
    struct hub_alloc *a = d->alloc;
    hub_conn_alist_del(d);
    hub_conn_alist_del(u);
    uv_timer_stop(&u->timer);
    u->peer = d;
    d->peer = u;
    d->dstate = D_PAIRED;
    a->npairs++;
    int rc = hub_data_accept(d);
    if (rc < 0) {
        drop_data(u);
        reply_text(u, 502, "Proxy not connected");
        return;
    }
    hub_user_paired(u, d);
}

static uint64_t pairing_window(const struct sl_hub *hub)
{
    return hub->opts.pairing_window_ms ? hub->opts.pairing_window_ms : 8000;
}

static void pair(struct hub_conn *u)
{
    struct hub_alloc *a = u->alloc;
    struct sl_hub *hub = u->hub;
    /* Protocol v2: a stream on a mux connection, with no round trip. */
    struct hub_conn *d = hub_mux_stream(a, u);
    if (d != NULL) {
        hub_pair(u, d);
        return;
    }
    if (!sl_list_empty(&a->pool)) {
        hub_pair(u, HUB_CONN_OF(a->pool.next, alink));
        return;
    }
    if (a->ncontrols == 0) {
        sl_debug(hub->log, "hub user %llu (%s): no bridge, answering 502",
                 (unsigned long long)u->id, a->identity);
        hub_block_put(hub, u->fwd);
        u->fwd = NULL;
        reply_text(u, 502, "Proxy not connected");
        return;
    }
    if (sl_uuid4_new(u->fingerprint) != 0 ||
        hub_control_open(a, u->fingerprint,
                         u->streams != NULL ? "tcp" : "http") != 0) {
        hub_block_put(hub, u->fwd);
        u->fwd = NULL;
        reply_text(u, 502, "Proxy not connected");
        return;
    }
    hub_alloc_remember_fp(a, u->fingerprint);
    sl_list_push(&a->waiting, &u->alink);
    u->in_alist = AL_WAITING;
    u->ustate = U_PAIRING;
    hub_conn_timer_start(u, pairing_window(hub));
}

void hub_user_on_timer(struct hub_conn *u)
{
    sl_info(u->hub->log, "hub user %llu (%s): no data connection within the "
                         "pairing window, answering 504",
            (unsigned long long)u->id, u->alloc ? u->alloc->identity : "-");
    hub_conn_alist_del(u);
    hub_block_put(u->hub, u->fwd);
    u->fwd = NULL;
    reply_text(u, 504, "Proxy not connected");
}

void hub_user_head(struct hub_conn *u, const struct sl_http_head *h,
                   const char *identity)
{
    struct sl_hub *hub = u->hub;
    u->nrequests++;
    hub->totals.requests++;
    const struct sl_http_header *host = sl_http_head_find(h, "host");
    if (host != NULL && host_port_bad(host->value, host->value_len)) {
        sl_info(hub->log, "hub conn %llu from %s: malformed request head "
                          "(bad port in Host), answering 400",
                (unsigned long long)u->id, u->peer_ip);
        drop_data(u);
        reply_text(u, 400, "Bad Request: bad port in Host");
        return;
    }
    struct hub_alloc *a = identity ? hub_alloc_get(hub, identity) : NULL;
    if (a == NULL) {
        drop_data(u);
        reply_text(u, 404, "Proxy not available");
        return;
    }
    if (a->limited) {
        drop_data(u);
        reply_text(u, 429, "Traffic limit exceeded");
        return;
    }
    u->resp_head = h->method == HTTP_HEAD;
    u->keep_alive = h->keep_alive;

    struct hub_block *b = hub_block_get(hub);
    if (b == NULL) {
        user_close(u, UV_ENOMEM);
        return;
    }
    int n = build_head(u, h, host, b->data, HUB_BLOCK);
    if (n < 0) {
        hub_block_put(hub, b);
        drop_data(u);
        reply_text(u, 431, "Request Header Fields Too Large");
        return;
    }
    const char *why = rewritten_head_bad(b->data, (size_t)n);
    if (why != NULL) {
        /* Known before the bridge is asked to dial. */
        sl_info(hub->log, "hub conn %llu from %s: malformed request head "
                          "(after rewriting: %s), answering 400",
                (unsigned long long)u->id, u->peer_ip, why);
        hub_block_put(hub, b);
        drop_data(u);
        reply_text(u, 400, "Bad Request: malformed head");
        return;
    }
    hub_count_user(a, 0, h->len);
    if (u->closing) {
        hub_block_put(hub, b);
        return;
    }
    head_consume(u, h->len); /* h is invalid from here on */
    u->fwd = b;
    u->fwd_len = (size_t)n;

    if (u->peer != NULL && u->alloc == a) {
        forward(u);
        return;
    }
    /* Another identity (or none yet): pair anew. */
    drop_data(u);
    u->alloc = a;
    pair(u);
}

void hub_user_passthrough(struct hub_conn *u, struct hub_alloc *a)
{
    struct sl_hub *hub = u->hub;
    u->passthrough = 1; /* refusals from here on are resets */
    if (!hub_caps_user_admitted(u, a->identity))
        return;
    if (u->kind == C_NEW) {
        u->kind = C_USER;
        hub->totals.user_conns++;
    }
    u->nrequests++;
    hub->totals.requests++;
    if (a->limited) {
        reply_text(u, 429, "Traffic limit exceeded");
        return;
    }
    /* The ClientHello stays in head[]; later bytes join it there until
     * the pair is made, then go_opaque sends them all. */
    uv_timer_stop(&u->timer);
    u->alloc = a;
    hub_conn_read_blocks(u);
    if (!u->closing)
        pair(u);
}

void hub_user_on_bytes(struct hub_conn *u, struct hub_block *b, char *p,
                       size_t n)
{
    /* A byte is counted once, when it is known whose it is: here in a
     * body or a byte stream; kept for later (a body while pairing, the
     * next request), when it leaves head[] (hub_user_head, forward,
     * go_opaque): the next request may name another identity. */
    if (u->closing) {
        hub_block_put(u->hub, b);
        return;
    }
    hub_rate_charge(u, u->alloc, HUB_RATE_UP, n);
    if (u->ustate == U_OPAQUE) {
        if (u->streams != NULL)
            hub_streams_on_read(u, n, SL_HOOK_UP);
        hub_count_user(u->alloc, 0, n);
        if (u->closing) {
            hub_block_put(u->hub, b);
            return;
        }
        send_to_data(u, b, p, n);
        return;
    }
    if (u->ustate != U_BODY) {
        /* Pairing or waiting for a response: keep what comes (the body,
         * or the next request) for later, and stop past a bound. */
        int rc = head_append(u, p, n);
        hub_block_put(u->hub, b);
        if (rc < 0)
            user_close(u, rc);
        else if (u->head_len > HUB_PENDING_MAX)
            hub_conn_read_stop(u);
        return;
    }
    size_t k = body_feed(u, p, n);
    if (k == (size_t)-1) {
        hub_block_put(u->hub, b);
        bad_body(u);
        return;
    }
    hub_count_user(u->alloc, 0, k);
    if (u->closing) {
        hub_block_put(u->hub, b);
        return;
    }
    if (u->req_done) {
        /* The rest starts the next request. */
        if (head_append(u, p + k, n - k) < 0) {
            hub_block_put(u->hub, b);
            user_close(u, SL_ETOOBIG);
            return;
        }
        if (u->head_len > HUB_PENDING_MAX)
            hub_conn_read_stop(u);
        u->ustate = U_WAIT;
    }
    send_to_data(u, b, p, k);
    if (u->closing)
        return;
    if (u->req_done && u->resp_done)
        response_finished(u); /* the response came first */
}

/* A response http-parser refuses, or a 101 to a request that asked for
 * no upgrade: said once in the log, and to the user (502) while nothing
 * of the response went out. */
static void bad_response(struct hub_conn *u, const char *why)
{
    if (why == NULL)
        why = HTTP_PARSER_ERRNO(&u->respp) == HPE_CB_headers_complete &&
                      u->respp.status_code == 101
                  ? "101 Switching Protocols to a request that asked for "
                    "no upgrade"
                  : http_errno_name(HTTP_PARSER_ERRNO(&u->respp));
    sl_info(u->hub->log, "hub user %llu (%s): malformed response from "
                         "the bridge: %s",
            (unsigned long long)u->id, u->alloc ? u->alloc->identity : "-",
            why);
    if (!u->resp_started) {
        drop_data(u);
        reply_text(u, 502, "Bad Gateway");
    } else {
        user_close(u, SL_EPARSE);
    }
}

/* Response bytes p[0..n) to the user, up to the response's end; pre bytes
 * of b before p (a rewritten head) go out with them in one write. */
static void relay_response(struct hub_conn *u, struct hub_block *b,
                           const char *p, size_t n, size_t pre)
{
    size_t k = http_parser_execute(&u->respp, &resp_settings, p, n);
    if (!parser_ok(&u->respp)) {
        hub_block_put(u->hub, b);
        bad_response(u, NULL);
        return;
    }
    u->resp_started = 1;
    int done = u->resp_done;
    /* After a 101 every byte is the new protocol's. */
    size_t send_n = done && u->resp_upgrade ? n : k;
    if (done && !u->resp_upgrade && k < n)
        u->keep_alive = 0; /* bytes after the response: do not reuse */
    send_to_user(u, b, p - pre, send_n + pre);
    if (u->closing)
        return;
    if (done)
        response_finished(u);
}

static const http_parser_settings resp_check_settings = {
    .on_headers_complete = check_headers_done,
};

/* One whole response head h[0..len), cookie isolation on: rewritten in a
 * block of its own (*out, *out_len: the caller sends it) and read by the
 * response parser as the user will read it. Returns 0, or -1 if u was
 * answered or closed. */
static int isolated_head(struct hub_conn *u, const char *h, size_t len,
                         struct hub_block **out, size_t *out_len)
{
    char host[SL_IDENTITY_LEN + 1 + 256];
    const char *d = u->hub->s_domain;
    size_t dlen = strlen(d);
    if (dlen > 0 && d[dlen - 1] == '.')
        dlen--;
    int hn = snprintf(host, sizeof(host), "%s.%.*s", u->alloc->identity,
                      (int)dlen, d);
    struct hub_block *nb = hub_block_get(u->hub);
    if (nb == NULL || hn < 0 || (size_t)hn >= sizeof(host) ||
        len > HUB_BLOCK) {
        hub_block_put(u->hub, nb);
        bad_response(u, "response head over 64 KiB");
        return -1;
    }
    memcpy(nb->data, h, len);
    size_t m = sl_cookies_isolate(nb->data, len, host, (size_t)hn);
    /* The parser must end this head where the hub did. */
    http_parser cp;
    http_parser_init(&cp, HTTP_RESPONSE);
    size_t k = http_parser_execute(&cp, &resp_check_settings, nb->data, m);
    if (HTTP_PARSER_ERRNO(&cp) != HPE_PAUSED || k + 1 != m) {
        hub_block_put(u->hub, nb);
        bad_response(u, HTTP_PARSER_ERRNO(&cp) == HPE_PAUSED
                            ? "the head ends before its empty line"
                            : http_errno_name(HTTP_PARSER_ERRNO(&cp)));
        return -1;
    }
    http_parser_execute(&u->respp, &resp_settings, nb->data, m);
    if (!parser_ok(&u->respp)) {
        hub_block_put(u->hub, nb);
        bad_response(u, NULL);
        return -1;
    }
    unsigned st = u->respp.status_code;
    /* After an interim answer another head is due. */
    u->rhead_wait = st >= 100 && st < 200 && st != 101;
    *out = nb;
    *out_len = m;
    return 0;
}

/* Cookie isolation: a response head is held until it is whole, so that
 * its Set-Cookie lines can be rewritten; what follows it goes on as
 * relay_response sends it. */
static void relay_isolated(struct hub_conn *u, struct hub_block *b,
                           const char *p, size_t n)
{
    while (n > 0 && u->rhead_wait) {
        const char *h;
        size_t used;
        ssize_t end;
        if (u->rhead_len == 0) {
            end = sl_http_head_end(p, n, 0, SL_HTTP_HEAD_MAX);
            h = p;
            used = end > 0 ? (size_t)end : 0;
        } else {
            end = 0;
            h = u->rhead;
            used = 0;
        }
        if (end == 0) {
            size_t old = u->rhead_len;
            if (old + n > u->rhead_cap) {
                /* Doubling: a head in many small reads costs linear. */
                size_t cap = u->rhead_cap ? u->rhead_cap : 4096;
                while (cap < old + n)
                    cap *= 2;
                char *q = realloc(u->rhead, cap);
                if (q == NULL) {
                    hub_block_put(u->hub, b);
                    user_close(u, UV_ENOMEM);
                    return;
                }
                u->rhead = q;
                u->rhead_cap = cap;
            }
            memcpy(u->rhead + old, p, n);
            u->rhead_len += n;
            end = sl_http_head_end(u->rhead, u->rhead_len, u->rhead_scanned,
                                   SL_HTTP_HEAD_MAX);
            u->rhead_scanned = u->rhead_len;
            if (end == 0) {
                hub_block_put(u->hub, b);
                return;
            }
            h = u->rhead;
            used = end > 0 ? (size_t)end - old : 0;
        }
        if (end < 0) {
            hub_block_put(u->hub, b);
            bad_response(u, "response head over 64 KiB");
            return;
        }
        struct hub_block *nb = NULL;
        size_t m = 0;
        int rc = isolated_head(u, h, (size_t)end, &nb, &m);
        /* An idle keep-alive connection holds no buffer. */
        free(u->rhead);
        u->rhead = NULL;
        u->rhead_len = u->rhead_cap = u->rhead_scanned = 0;
        if (rc < 0) {
            hub_block_put(u->hub, b);
            return;
        }
        p += used;
        n -= used;
        if (!u->resp_done && !u->rhead_wait && n > 0 && m + n <= HUB_BLOCK) {
            /* The head and what follows in one write. */
            memcpy(nb->data + m, p, n);
            hub_block_put(u->hub, b);
            relay_response(u, nb, nb->data + m, n, m);
            return;
        }
        u->resp_started = 1;
        send_to_user(u, nb, nb->data, m);
        if (u->closing) {
            hub_block_put(u->hub, b);
            return;
        }
        if (u->resp_done) {
            /* Ended with its head (HEAD, 204, 304, a 101, no body). */
            if (u->resp_upgrade) {
                send_to_user(u, b, p, n);
                b = NULL;
                if (u->closing)
                    return;
            } else if (n > 0) {
                u->keep_alive = 0; /* bytes after the response */
            }
            hub_block_put(u->hub, b);
            response_finished(u);
            return;
        }
    }
    if (n > 0) {
        relay_response(u, b, p, n, 0);
        return;
    }
    hub_block_put(u->hub, b);
}

void hub_user_on_upstream(struct hub_conn *u, struct hub_block *b,
                          const char *p, size_t n)
{
    if (u->closing || u->ustate == U_CLOSING) {
        hub_block_put(u->hub, b);
        return;
    }
    hub_rate_charge(u->peer, u->alloc, HUB_RATE_DOWN, n);
    if (u->ustate == U_OPAQUE) {
        if (u->streams != NULL)
            hub_streams_on_read(u, n, SL_HOOK_DOWN);
        send_to_user(u, b, p, n);
        return;
    }
    if (!u->resp_active) {
        /* Bytes with no request outstanding: the upstream misbehaves. */
        hub_block_put(u->hub, b);
        drop_data(u);
        hub_conn_finish(u);
        return;
    }
    if (u->rhead_wait)
        relay_isolated(u, b, p, n);
    else
        relay_response(u, b, p, n, 0);
}

/* Half-close of an opaque pair on raw data connections: a side's EOF
 * shuts the other's write side down once its queue is out (shut_out 1,
 * then 2), and the pair ends when both sides have read EOF and both
 * shutdowns are done, as the stream routes forward a FIN. An idle pair
 * is bounded by the relay's idle timeout. */
static void pair_maybe_done(struct hub_conn *u)
{
    struct hub_conn *d = u->peer;
    if (u->closing)
        return;
    if (d == NULL) {
        /* The data conn went while u was shutting down: u ends once its
         * queue is out (the shutdown's callback). */
        if (u->shut_out == 2)
            hub_conn_close(u, 0);
        return;
    }
    if (u->eof_in && d->eof_in && u->shut_out == 2 && d->shut_out == 2) {
        drop_data(u);
        hub_conn_close(u, 0);
    }
}

static void on_pair_shutdown(uv_shutdown_t *req, int status)
{
    struct hub_conn *c = req->data;
    c->shut_out = 2;
    if (c->closing)
        return;
    if (status < 0) {
        hub_conn_close(c, status);
        return;
    }
    struct hub_conn *u = c->kind == C_USER ? c : c->peer;
    if (u != NULL)
        pair_maybe_done(u);
    else
        hub_conn_close(c, 0); /* a data conn whose user went */
}

static void pair_shutdown(struct hub_conn *c)
{
    if (c->shut_out || c->closing)
        return;
    c->shut_out = 1;
    c->shutdown_req.data = c;
    int rc = sl_xprt_shutdown(&c->shutdown_req, &c->xp,
                         on_pair_shutdown);
    if (rc < 0) {
        c->shut_out = 0;
        hub_conn_close(c, rc);
    }
}

void hub_user_upstream_fin(struct hub_conn *u)
{
    if (u->closing || u->ustate != U_OPAQUE)
        return;
    pair_shutdown(u);
}

void hub_user_upstream_gone(struct hub_conn *u, int reason)
{
    if (u->closing || u->ustate == U_CLOSING)
        return;
    switch (u->ustate) {
    case U_HEAD:
        return; /* idle between requests: the next one pairs anew */
    case U_PAIRING:
        return;
    case U_OPAQUE:
        if (u->relay != NULL) {
            /* Its data conn is going: the relay, which owns both sockets,
             * ends with it. */
            if (reason != 0 && reason != UV_EOF)
                hub_conn_reset(u);
            else
                hub_conn_close(u, 0);
            return;
        }
        if (u->passthrough && reason != 0 && reason != UV_EOF) {
            /* The bridge's path died under a TCP (or passthrough) user:
             * a reset, as the service's own death would give. */
            hub_conn_reset(u);
            return;
        }
        if (u->shut_out) {
            /* Already half-closed towards the user: what is queued
             * still goes out, then u ends. */
            hub_conn_read_stop(u);
            pair_maybe_done(u);
            return;
        }
        hub_conn_finish(u);
        return;
    default:
        break;
    }
    if (!u->resp_active) {
        hub_conn_finish(u);
        return;
    }
    if (u->resp_started && reason == UV_EOF) {
        /* A response delimited by the end of the connection. */
        http_parser_execute(&u->respp, &resp_settings, NULL, 0);
        if (u->resp_done) {
            u->keep_alive = 0;
            response_finished(u);
            return;
        }
    }
    if (!u->resp_started) {
        reply_text(u, 502, "Proxy not connected");
        return;
    }
    user_close(u, reason ? reason : UV_EOF);
}

void hub_user_on_eof(struct hub_conn *u)
{
    if (u->ustate == U_WAIT) {
        /* A half-close after the request: answer, then close. */
        hub_conn_read_stop(u);
        u->eof_in = 1;
        u->keep_alive = 0;
        return;
    }
    if (u->ustate == U_OPAQUE && u->peer != NULL) {
        hub_conn_read_stop(u);
        u->eof_in = 1;
        if (u->peer->framed) {
            hub_data_end(u->peer);
            return;
        }
        pair_shutdown(u->peer);
        return;
    }
    user_close(u, 0);
}

void hub_user_drained(struct hub_conn *u)
{
    /* A data conn that read EOF is not read again. */
    if (u->data_paused && u->peer != NULL && !u->peer->eof_in) {
        u->data_paused = 0;
        hub_data_resume(u->peer);
    }
}

void hub_user_resume_from_data(struct hub_conn *d)
{
    struct hub_conn *u = d->peer;
    if (u == NULL || !u->paused_by_peer || u->closing)
        return;
    u->paused_by_peer = 0;
    if (u->ustate == U_BODY || (u->ustate == U_OPAQUE && !u->eof_in))
        hub_conn_read_blocks(u);
}

void hub_alloc_close_pairs(struct hub_alloc *a)
{
    struct sl_hub *hub = a->hub;
    struct sl_link *l = hub->conns.next;
    while (l != &hub->conns) {
        struct sl_link *n = l->next;
        struct hub_conn *c = HUB_CONN_OF(l, all);
        if (c->alloc == a && c->kind == C_USER && !c->closing)
            hub_conn_close(c, SL_ELIMIT);
        l = n;
    }
}
