#include "hub/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "acme/acme.h"
#include "core/error.h"
#include "hub/hub_int.h"
#include "tls/tls_server.h"
#include "tunnel/control.h"
#include "tunnel/host_route.h"

#define RATE_WINDOW_MS 60000

/* Blocks. A small free list saves the malloc/free (and heap trims) of a
 * 64 KiB buffer per read on busy connections. */

struct hub_block *hub_block_get(struct sl_hub *hub)
{
    struct hub_block *b = hub->free_blocks;
    if (b != NULL) {
        hub->free_blocks = b->next;
        hub->nfree_blocks--;
        b->next = NULL;
        return b;
    }
    b = malloc(sizeof(*b));
    if (b != NULL)
        b->next = NULL;
    return b;
}

void hub_block_put(struct sl_hub *hub, struct hub_block *b)
{
    if (b == NULL)
        return;
    if (hub->nfree_blocks >= HUB_FREE_BLOCKS || hub->stopping) {
        free(b);
        return;
    }
    b->next = hub->free_blocks;
    hub->free_blocks = b;
    hub->nfree_blocks++;
}

/* Allocations. */

static void alloc_unlink_free(struct sl_hub *hub, struct hub_alloc *a);

static unsigned bucket_of(const char *identity)
{
    uint32_t h = 2166136261u;
    for (const char *p = identity; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % HUB_BUCKETS;
}

struct hub_alloc *hub_alloc_find(struct sl_hub *hub, const char *identity)
{
    for (struct hub_alloc *a = hub->buckets[bucket_of(identity)]; a;
         a = a->hnext)
        if (strcmp(a->identity, identity) == 0)
            return a;
    return NULL;
}

struct hub_alloc *hub_alloc_load(struct sl_hub *hub, const struct sl_alloc *s)
{
    struct hub_alloc *a = hub_alloc_find(hub, s->identity);
    if (a != NULL)
        return a;
    if (strlen(s->identity) != SL_IDENTITY_LEN)
        return NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->hub = hub;
    memcpy(a->identity, s->identity, SL_IDENTITY_LEN + 1);
    snprintf(a->username, sizeof(a->username), "%s", s->username);
    snprintf(a->password_hash, sizeof(a->password_hash), "%s",
             s->password_hash);
    a->limits = s->limits;
    a->total = s->traffic;
    a->bw_mark_down = a->total.user_down;
    a->bw_mark_up = a->total.user_up;
    a->stats_mark = a->total.user_down + a->total.user_up;
    a->limited = s->limited;
    a->last_seen = s->last_seen;
    sl_list_init(&a->controls);
    sl_list_init(&a->pool);
    sl_list_init(&a->waiting);
    sl_list_init(&a->verify_wait);
    sl_list_init(&a->muxes);
    unsigned k = bucket_of(a->identity);
    a->hnext = hub->buckets[k];
    hub->buckets[k] = a;
    /* Its plan (grant, free plan, cap) holds before anyone uses it. */
    if (hub_plan_load(a) != 0) {
        alloc_unlink_free(hub, a);
        return NULL;
    }
    /* A certificate for it (TLS-ALPN-01), unless one is at hand. */
    sl_acme_want(hub->acme, a->identity);
    return a;
}

struct hub_alloc *hub_alloc_get(struct sl_hub *hub, const char *identity)
{
    struct hub_alloc *a = hub_alloc_find(hub, identity);
    if (a != NULL)
        return a;
    struct sl_alloc s;
    if (sl_store_get_by_identity(hub->store, identity, &s) != 0)
        return NULL;
    return hub_alloc_load(hub, &s);
}

static void alloc_unlink_free(struct sl_hub *hub, struct hub_alloc *a)
{
    struct hub_alloc **pp = &hub->buckets[bucket_of(a->identity)];
    while (*pp && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = a->hnext;
    hub_streams_close(a);
    hub_plan_free(a);
    free(a);
}

void hub_alloc_touch(struct hub_alloc *a)
{
    a->last_seen = (int64_t)time(NULL);
    a->touched = 1;
}

static void check_limit(struct hub_alloc *a)
{
    if (a->limited || a->limits.traffic == 0)
        return;
    if (a->total.user_down + a->total.user_up < a->limits.traffic)
        return;
    a->limited = 1;
    a->limited_dirty = 1;
    sl_warn(a->hub->log, "hub alloc %s: traffic limit %llu reached, closing "
                         "its pairs", a->identity,
            (unsigned long long)a->limits.traffic);
    hub_alloc_error_all(a, "Traffic limit exceeded", 429);
    hub_alloc_close_pairs(a);
}

void hub_count_user(struct hub_alloc *a, uint64_t down, uint64_t up)
{
    if (a == NULL)
        return;
    a->total.user_down += down;
    a->total.user_up += up;
    a->unflushed.user_down += down;
    a->unflushed.user_up += up;
    check_limit(a);
}

void hub_count_bridge(struct hub_alloc *a, uint64_t down, uint64_t up)
{
    if (a == NULL)
        return;
    a->total.bridge_down += down;
    a->total.bridge_up += up;
    a->unflushed.bridge_down += down;
    a->unflushed.bridge_up += up;
}

/* Credential failure limits. Keyed by username and address, so that one
 * bridge retrying stale credentials (its allocation was removed) does not
 * lock out the other bridges behind the same address; the looser limit
 * per address bounds guessing across many usernames. */

/* The order in which slots are given up when the table is full: free
 * ones, then per-username ones before per-address ones (a guesser cycling
 * through usernames must not push its own address's count out), then
 * those not blocking, then the oldest window. */
static int rate_rank(const struct hub_rate *r, uint64_t now)
{
    if (r->ip[0] == '\0')
        return 0;
    return 1 + (r->user[0] == '\0' ? 2 : 0) + (r->blocked_until > now);
}

static struct hub_rate *rate_slot(struct sl_hub *hub, const char *ip,
                                  const char *user, int create)
{
    uint64_t now = uv_now(hub->loop);
    struct hub_rate *victim = &hub->rate[0];
    for (size_t i = 0; i < HUB_RATE_SLOTS; i++) {
        struct hub_rate *r = &hub->rate[i];
        if (r->ip[0] != '\0' && strcmp(r->ip, ip) == 0 &&
            strcmp(r->user, user) == 0)
            return r;
        int a = rate_rank(r, now), b = rate_rank(victim, now);
        if (a < b || (a == b && r->window_start < victim->window_start))
            victim = r;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof(*victim));
    snprintf(victim->ip, sizeof(victim->ip), "%s", ip);
    snprintf(victim->user, sizeof(victim->user), "%s", user);
    return victim;
}

static int slot_blocked(struct sl_hub *hub, const char *ip, const char *user)
{
    struct hub_rate *r = rate_slot(hub, ip, user, 0);
    return r != NULL && r->blocked_until > uv_now(hub->loop);
}

int hub_rate_blocked(struct sl_hub *hub, const char *peer, const char *user)
{
    char ip[SL_ADDR_STRLEN];
    hub_source_key(peer, ip, sizeof(ip)); /* IPv6 by /64 */
    if (user != NULL && user[0] != '\0' && slot_blocked(hub, ip, user))
        return 1;
    return slot_blocked(hub, ip, "");
}

static void slot_fail(struct sl_hub *hub, const char *ip, const char *user,
                      uint32_t max)
{
    uint64_t now = uv_now(hub->loop);
    struct hub_rate *r = rate_slot(hub, ip, user, 1);
    if (now - r->window_start >= RATE_WINDOW_MS || r->window_start == 0) {
        r->window_start = now ? now : 1;
        r->failures = 0;
    }
    r->failures++;
    if (r->failures >= max && r->blocked_until <= now) {
        r->blocked_until = now + RATE_WINDOW_MS;
        if (user[0] != '\0')
            sl_warn(hub->log, "hub: %s: %u failed logins as %s, refusing "
                    "that username from there for 60 s", ip, r->failures,
                    user);
        else
            sl_warn(hub->log, "hub: %s: %u failed logins, refusing it for "
                    "60 s", ip, r->failures);
    }
}

void hub_rate_fail(struct sl_hub *hub, const char *peer, const char *user)
{
    char ip[SL_ADDR_STRLEN];
    hub_source_key(peer, ip, sizeof(ip)); /* IPv6 by /64 */
    uint32_t max = hub->opts.auth_failures_max ? hub->opts.auth_failures_max
                                               : 5;
    if (user != NULL && user[0] != '\0')
        slot_fail(hub, ip, user, max);
    slot_fail(hub, ip, "", max * 10);
}

void hub_mac(struct sl_hub *hub, const char *password, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), hub->mac_key, sizeof(hub->mac_key),
         (const unsigned char *)password, strlen(password), out, &len);
}

/* Connections. */

void hub_auth_drop(struct hub_conn *c);

static void conn_maybe_free(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    if (c->open_handles > 0 || c->work_pending)
        return;
    sl_list_del(&c->all);
    switch (c->kind) {
    case C_USER: hub->totals.user_conns--; break;
    case C_CONTROL: hub->totals.control_conns--; break;
    case C_DATA: hub->totals.data_conns--; break;
    default: break;
    }
    if (c->via != NULL)
        hub_mux_stream_freed(c);
    free(c->head);
    hub_auth_drop(c);
    free(c->grant_in);
    free(c->ws);
    free(c);
}

void hub_auth_drop(struct hub_conn *c)
{
    if (c->auth == NULL || c->work_pending)
        return;
    OPENSSL_cleanse(c->auth, sizeof(*c->auth));
    free(c->auth);
    c->auth = NULL;
}

static void maybe_finish_stop(struct sl_hub *hub);

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct hub_conn *c = h->data;
    struct sl_hub *hub = c->hub;
    c->open_handles--;
    conn_maybe_free(c);
    if (hub->stopping)
        maybe_finish_stop(hub);
}

void hub_conn_alist_del(struct hub_conn *c)
{
    struct hub_alloc *a = c->alloc;
    if (!c->in_alist || a == NULL)
        return;
    sl_list_del(&c->alink);
    if (c->in_alist == AL_CONTROLS)
        a->ncontrols--;
    else if (c->in_alist == AL_POOL)
        a->npool--;
    c->in_alist = AL_NONE;
}

void hub_conn_close(struct hub_conn *c, int reason)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->reason = reason;
    if (sl_log_on(c->hub->log, SL_LOG_DEBUG)) {
        const char *kind = c->kind == C_USER      ? "user"
                           : c->kind == C_CONTROL ? "control"
                           : c->kind == C_DATA    ? "data"
                                                  : "new";
        const char *why = reason ? sl_strerror(reason) : "normal";
        sl_log_event(c->hub->log, SL_LOG_DEBUG,
                     SL_LOG_FIELDS(SL_LOG_STR("route", "hub"),
                                   SL_LOG_NUM("conn", c->id),
                                   SL_LOG_STR("kind", kind),
                                   SL_LOG_STR("identity", c->alloc
                                                  ? c->alloc->identity
                                                  : NULL),
                                   SL_LOG_STR("client", c->peer_ip),
                                   SL_LOG_STR("event", "closed"),
                                   SL_LOG_STR("reason", why)),
                     "hub conn %llu (%s, %s) from %s: closing (%s)",
                     (unsigned long long)c->id, kind,
                     c->alloc ? c->alloc->identity : "-", c->peer_ip, why);
    }
    hub_conn_alist_del(c);
    hub_caps_release(c);
    hub_rate_conn_closed(c);
    if (c->streams != NULL)
        hub_streams_conn_closed(c);
    struct hub_conn *p = c->peer;
    if (p != NULL) {
        c->peer = NULL;
        p->peer = NULL;
        if (c->alloc && c->alloc->npairs > 0)
            c->alloc->npairs--;
        if (c->kind == C_DATA)
            hub_user_upstream_gone(p, reason);
        else
            hub_conn_close(p, reason);
    }
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = 0;
    free(c->rhead);
    c->rhead = NULL;
    c->rhead_len = c->rhead_cap = 0;
    hub_block_put(c->hub, c->fwd);
    c->fwd = NULL;
    if (c->mux != NULL) {
        /* The engine closes the socket; then hub_conn_ws_closed. */
        hub_mux_conn_close(c, reason);
        return;
    }
    if (c->ws_active) {
        /* Its on_close closes the timer. A clean end gets a close frame
         * (so the bridge tells it from a failure), bounded by the ws's
         * close timeout; anything else ends at once. */
        if (reason == 0)
            sl_ws_close(c->ws, 1000);
        else
            sl_ws_abort(c->ws, reason);
        return;
    }
    if (c->relay != NULL)
        sl_relay_abort(&c->relay->r, reason); /* it closes the socket */
    else if (!sl_xprt_is_closing(&c->xp))
        sl_xprt_close(&c->xp, on_conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

void hub_conn_xp_closed(struct hub_conn *c)
{
    c->xp.tcp.data = c;
    on_conn_handle_closed((uv_handle_t *)&c->xp.tcp);
}

void hub_conn_reset(struct hub_conn *c)
{
    /* SO_LINGER 0: close sends RST, as a refused TCP service would. */
    uv_os_fd_t fd;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (!c->closing && !c->ws_active &&
        uv_fileno((uv_handle_t *)&c->xp.tcp, &fd) == 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    hub_conn_close(c, UV_ECONNRESET);
}

void hub_conn_ws_closed(struct hub_conn *c, int reason)
{
    c->ws_active = 0;
    c->open_handles--; /* the ws closed the TCP handle */
    if (!c->closing) {
        hub_conn_close(c, reason);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    else
        conn_maybe_free(c);
}

size_t hub_conn_queued(const struct hub_conn *c)
{
    if (c->ws_active)
        return sl_ws_queued(c->ws);
    return sl_xprt_write_queue_size(&c->xp);
}

static void on_block_written(uv_write_t *req, int status)
{
    struct hub_block *b = (struct hub_block *)req;
    struct hub_conn *c = b->dst;
    hub_block_put(c->hub, b);
    if (c->closing)
        return;
    if (status < 0) {
        hub_conn_close(c, status);
        return;
    }
    hub_progress(c);
    if (hub_conn_queued(c) <= HUB_LOW_WATER) {
        if (c->kind == C_USER)
            hub_user_drained(c);
        else if (c->kind == C_DATA && c->peer)
            hub_user_resume_from_data(c);
    }
}

int hub_conn_write(struct hub_conn *c, struct hub_block *b, const char *data,
                   size_t n)
{
    struct sl_xprt *s = &c->xp;
    size_t off = 0;
    if (c->closing) {
        hub_block_put(c->hub, b);
        return UV_EPIPE;
    }
    if (n == 0) {
        hub_block_put(c->hub, b);
        return 0;
    }
    if (sl_xprt_write_queue_size(s) == 0) {
        uv_buf_t ub = uv_buf_init((char *)data, (unsigned)n);
        int w = sl_xprt_try_write(s, &ub, 1);
        if (w < 0 && w != UV_EAGAIN) {
            hub_block_put(c->hub, b);
            return w;
        }
        if (w > 0) {
            off = (size_t)w;
            hub_progress(c);
        }
        if (off == n) {
            hub_block_put(c->hub, b);
            return 0;
        }
    }
    if (b != NULL) {
        /* The read block becomes the write's storage: no copy. */
        uv_buf_t ub = uv_buf_init((char *)data + off, (unsigned)(n - off));
        b->dst = c;
        int rc = sl_xprt_write(&b->req, s, &ub, 1, on_block_written);
        if (rc < 0)
            hub_block_put(c->hub, b);
        return rc;
    }
    while (off < n) {
        struct hub_block *nb = hub_block_get(c->hub);
        if (nb == NULL)
            return UV_ENOMEM;
        size_t k = n - off < HUB_BLOCK ? n - off : HUB_BLOCK;
        memcpy(nb->data, data + off, k);
        uv_buf_t ub = uv_buf_init(nb->data, (unsigned)k);
        nb->dst = c;
        int rc = sl_xprt_write(&nb->req, s, &ub, 1, on_block_written);
        if (rc < 0) {
            hub_block_put(c->hub, nb);
            return rc;
        }
        off += k;
    }
    return 0;
}

static void on_reply_shutdown(uv_shutdown_t *req, int status)
{
    struct hub_conn *c = req->data;
    (void)status;
    hub_conn_close(c, 0);
}

void hub_conn_finish(struct hub_conn *c)
{
    if (c->closing || c->ustate == U_CLOSING)
        return;
    if (c->relay != NULL) {
        /* Its socket is the relay's, which has no graceful end of its
         * own to give. */
        hub_conn_close(c, 0);
        return;
    }
    hub_conn_read_stop(c);
    uv_timer_stop(&c->timer);
    c->ustate = U_CLOSING;
    c->last_progress = uv_now(c->hub->loop); /* the answer's flush */
    if (c->ws_active) {
        sl_ws_close(c->ws, 1000);
        return;
    }
    /* Shut down after the queued writes are out, then close. */
    c->shutdown_req.data = c;
    if (sl_xprt_shutdown(&c->shutdown_req, &c->xp,
                    on_reply_shutdown) < 0)
        hub_conn_close(c, 0);
}

void hub_conn_reply_close(struct hub_conn *c, int status, const char *ctype,
                          const char *body, const char *extra)
{
    char buf[1024];
    if (c->closing || c->ustate == U_CLOSING)
        return;
    if (c->passthrough) {
        /* Its bytes are TLS or another protocol, not HTTP: it gets what
         * a refused TCP client gets. */
        hub_conn_reset(c);
        return;
    }
    int n = sl_http_format_response(buf, sizeof(buf), status, ctype, body,
                                    extra, 0);
    if (n < 0 || hub_conn_write(c, NULL, buf, (size_t)n) < 0) {
        hub_conn_close(c, UV_EPIPE);
        return;
    }
    hub_conn_finish(c);
}

/* Reading. */

static void process_head(struct hub_conn *c);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hub_conn *c = h->data;
    (void)hint;
    if (c->read_into_head) {
        if (c->head_cap - c->head_len < 1024 && c->head_cap < SL_HTTP_HEAD_MAX) {
            size_t ncap = c->head_cap ? c->head_cap * 2 : 4096;
            if (ncap > SL_HTTP_HEAD_MAX)
                ncap = SL_HTTP_HEAD_MAX;
            char *p = realloc(c->head, ncap);
            if (p != NULL) {
                c->head = p;
                c->head_cap = ncap;
            }
        }
        if (c->head == NULL || c->head_len >= c->head_cap) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        *buf = uv_buf_init(c->head + c->head_len,
                           (unsigned)(c->head_cap - c->head_len));
        return;
    }
    struct hub_block *b = hub_block_get(c->hub);
    /* A capped allocation's connections read their share at a time. */
    *buf = b ? uv_buf_init(b->data, (unsigned)hub_rate_read_cap(c))
             : uv_buf_init(NULL, 0);
}

static struct hub_block *block_of(char *data)
{
    return (struct hub_block *)(data - offsetof(struct hub_block, data));
}

static void on_eof(struct hub_conn *c, int err)
{
    if (c->kind == C_USER && err == UV_EOF) {
        hub_user_on_eof(c);
        return;
    }
    if (c->kind == C_DATA && c->peer != NULL && err == UV_EOF) {
        /* The bridge ended its side: the user conn decides. */
        c->eof_in = 1;
        hub_conn_read_stop(c);
        if (c->peer->ustate == U_OPAQUE) {
            /* A byte stream's half-close: the other way goes on. */
            hub_user_upstream_fin(c->peer);
            return;
        }
        struct hub_conn *u = c->peer;
        c->peer = NULL;
        u->peer = NULL;
        if (c->alloc && c->alloc->npairs > 0)
            c->alloc->npairs--;
        hub_conn_close(c, 0);
        hub_user_upstream_gone(u, UV_EOF);
        return;
    }
    hub_conn_close(c, err);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct hub_conn *c = s->data;
    int into_head = c->read_into_head;
    if (nread <= 0) {
        if (!into_head && buf->base != NULL)
            hub_block_put(c->hub, block_of(buf->base));
        if (nread == 0)
            return;
        if (nread == UV_ENOBUFS && into_head) {
            /* Head buffer full without an end. */
            c->head_len = c->head_cap;
            process_head(c);
            return;
        }
        on_eof(c, (int)nread);
        return;
    }
    hub_progress(c);
    if (into_head) {
        c->head_len += (size_t)nread;
        process_head(c);
        return;
    }
    struct hub_block *b = block_of(buf->base);
    if (c->kind == C_USER) {
        hub_user_on_bytes(c, b, b->data, (size_t)nread);
    } else if (c->kind == C_DATA && c->peer != NULL) {
        hub_count_bridge(c->alloc, (uint64_t)nread, 0);
        hub_user_on_upstream(c->peer, b, b->data, (size_t)nread);
    } else {
        /* Bytes where none are expected (a pool conn before its 101). */
        hub_block_put(c->hub, b);
        hub_conn_close(c, SL_EPARSE);
    }
}

void hub_conn_read_stop(struct hub_conn *c)
{
    if (c->reading && !c->ws_active)
        sl_xprt_read_stop(&c->xp);
    c->reading = 0;
    c->rate_resume = 0; /* not to be read when the cap lets go either */
}

static void read_start(struct hub_conn *c)
{
    if (c->reading || c->closing || c->ws_active || c->relay != NULL)
        return;
    if (c->rate_held) {
        /* Over its bandwidth cap: it reads when the cap lets go. */
        c->rate_resume = 1;
        return;
    }
    int rc = sl_xprt_read_start(&c->xp, on_alloc, on_read);
    if (rc < 0) {
        hub_conn_close(c, rc);
        return;
    }
    c->reading = 1;
}

void hub_conn_read_again(struct hub_conn *c)
{
    read_start(c);
}

void hub_conn_read_blocks(struct hub_conn *c)
{
    c->read_into_head = 0;
    read_start(c);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct hub_conn *c = t->data;
    if (c->closing)
        return;
    if (c->kind == C_DATA) {
        hub_data_on_timer(c);
        return;
    }
    if (c->kind == C_USER && c->ustate == U_PAIRING) {
        hub_user_on_timer(c);
        return;
    }
    /* Head timeout: slowloris, or an idle keep-alive connection. A TLS
     * connection still without its session cannot be answered. */
    if (c->head_len == 0 || c->tls_front == TLS_PEEK ||
        c->tls_front == TLS_HANDSHAKE) {
        hub_conn_close(c, UV_ETIMEDOUT);
        return;
    }
    sl_info(c->hub->log, "hub conn %llu from %s: no request head within the "
                         "time limit, answering 408",
            (unsigned long long)c->id, c->peer_ip);
    hub_conn_reply_close(c, 408, NULL, "Request Timeout", NULL);
}

void hub_conn_timer_start(struct hub_conn *c, uint64_t ms)
{
    if (!c->closing)
        uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

int hub_conn_work_done(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    c->work_pending = 0;
    if (!c->closing)
        return 0;
    conn_maybe_free(c);
    if (hub->stopping)
        maybe_finish_stop(hub);
    return 1;
}

void hub_conn_start_head(struct hub_conn *c)
{
    if (c->closing)
        return;
    c->read_into_head = 1;
    c->head_scanned = 0;
    uint64_t ms = c->hub->opts.head_timeout_ms ? c->hub->opts.head_timeout_ms
                                               : SL_HTTP_HEAD_TIMEOUT_MS;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
    if (c->head_len > 0) {
        process_head(c);
        if (c->closing || !c->read_into_head)
            return;
    }
    read_start(c); /* no-op when reading: the next read lands in head[] */
}

static void reply_json_404(struct hub_conn *c)
{
    hub_conn_reply_close(c, 404, "application/json",
                         "{\"error\":\"Not found\",\"code\":404}", NULL);
}

/* A request head the hub cannot take: said once in the log and to the
 * client, which alone is closed. */
static void bad_request(struct hub_conn *c, const char *why)
{
    char body[160];
    snprintf(body, sizeof(body), "Bad Request: %s", why ? why : "malformed");
    sl_info(c->hub->log, "hub conn %llu from %s: malformed request head "
                         "(%s), answering 400",
            (unsigned long long)c->id, c->peer_ip, why ? why : "malformed");
    hub_conn_reply_close(c, 400, NULL, body, NULL);
}

static void process_head(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    if (c->tls_front == TLS_PEEK) {
        hub_tls_peek(c);
        return;
    }
    ssize_t end = sl_http_head_end(c->head, c->head_len, c->head_scanned,
                                   SL_HTTP_HEAD_MAX);
    c->head_scanned = c->head_len;
    if (end == 0)
        return;
    if (end < 0) {
        sl_info(hub->log, "hub conn %llu from %s: request head over 64 KiB, "
                          "answering 431", (unsigned long long)c->id,
                c->peer_ip);
        hub_conn_reply_close(c, 431, NULL, "Request Header Fields Too Large",
                             NULL);
        return;
    }
    /* The head is complete. Reading goes on into blocks (libuv asks for a
     * buffer per read, so no stop/start): what follows is body, or the
     * next request, which the user side keeps (bounded) for later. */
    uv_timer_stop(&c->timer);
    c->read_into_head = 0;

    struct sl_http_head h;
    if (sl_http_head_parse(&h, 1, c->head, (size_t)end) != 0) {
        bad_request(c, h.error);
        return;
    }
    const struct sl_http_header *host = sl_http_head_find(&h, "host");
    for (size_t i = 0; host != NULL && i < h.nhdr; i++) {
        /* Two Hosts could route here and mean another thing upstream. */
        if (&h.hdr[i] != host && h.hdr[i].name_len == 4 &&
            strncasecmp(h.hdr[i].name, "host", 4) == 0) {
            bad_request(c, "more than one Host header");
            return;
        }
    }
    char identity[SL_IDENTITY_LEN + 1];
    int rc = host ? sl_host_route(host->value, host->value_len, hub->s_domain,
                                  identity)
                  : SL_ENOTFOUND;
    if (rc == 0 || rc == SL_EPARSE) {
        if (!hub_caps_user_admitted(c, rc == 0 ? identity : NULL))
            return;
        if (hub_tls_redirect(c, &h))
            return;
        if (c->kind == C_NEW) {
            c->kind = C_USER;
            hub->totals.user_conns++;
        }
        if (c->kind != C_USER) {
            hub_conn_close(c, SL_EPARSE);
            return;
        }
        hub_user_head(c, &h, rc == 0 ? identity : NULL);
        return;
    }
    /* The hub itself: only the bridge endpoints, on a fresh connection. */
    const char *q = memchr(h.url, '?', h.url_len);
    size_t plen = q ? (size_t)(q - h.url) : h.url_len;
    if (c->kind == C_NEW && h.method == HTTP_GET) {
        if (plen == 19 && memcmp(h.url, "/_sluice/v1/control", 19) == 0) {
            hub_caps_release(c); /* bridges have caps of their own */
            c->kind = C_CONTROL;
            hub->totals.control_conns++;
            hub_bridge_control(c, &h, q ? q + 1 : NULL,
                               q ? h.url_len - plen - 1 : 0);
            return;
        }
        if (plen == 16 && memcmp(h.url, "/_sluice/v1/data", 16) == 0) {
            hub_caps_release(c);
            c->kind = C_DATA;
            hub->totals.data_conns++;
            hub_bridge_data(c, &h);
            return;
        }
    }
    /* For load balancers and DNS health checks: 200 only while the hub
     * reaches its store (a hub without it serves only the bridges it
     * has: send new users elsewhere). */
    if (plen == 8 && memcmp(h.url, "/healthz", 8) == 0 &&
        (h.method == HTTP_GET || h.method == HTTP_HEAD)) {
        int ok = sl_store_healthy(hub->store);
        hub_conn_reply_close(c, ok ? 200 : 503, "application/json",
                             ok ? "{\"status\":\"ok\"}\n"
                                : "{\"status\":\"store unreachable\"}\n",
                             NULL);
        return;
    }
    reply_json_404(c);
}

static void on_connection(uv_stream_t *l, int status);

static void on_refused_closed(uv_handle_t *h)
{
    struct sl_hub *hub = h->data;
    hub->refusing = 0;
    hub->open_handles--;
    if (hub->refuse_waiting && !hub->stopping) {
        hub->refuse_waiting = 0;
        hub->refuse_cb(hub->refuse_l, 0);
        return;
    }
    maybe_finish_stop(hub);
}

/* Out of memory for a new connection: close it, as nginx does. Leaving
 * it unaccepted would stop libuv watching the listener, so one failed
 * allocation would end all accepting. */
static void refuse_connection(struct sl_hub *hub, uv_stream_t *l,
                              uv_connection_cb retry)
{
    sl_warn(hub->log, "hub: out of memory accepting a connection; closed");
    if (hub->refusing) {
        hub->refuse_waiting = 1; /* taken when refuse is free again */
        hub->refuse_l = l;
        hub->refuse_cb = retry;
        return;
    }
    uv_tcp_init(hub->loop, &hub->refuse);
    hub->refuse.data = hub;
    hub->refusing = 1;
    hub->open_handles++;
    (void)uv_accept(l, (uv_stream_t *)&hub->refuse);
    uv_close((uv_handle_t *)&hub->refuse, on_refused_closed);
}

struct hub_conn *hub_conn_accept(struct sl_hub *hub, uv_stream_t *l,
                                 uv_connection_cb retry)
{
    struct hub_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        refuse_connection(hub, l, retry);
        return NULL;
    }
    c->hub = hub;
    c->id = ++hub->next_id;
    c->kind = C_NEW;
    sl_list_init(&c->alink);
    sl_xprt_init(&c->xp);
    uv_tcp_init(hub->loop, &c->xp.tcp);
    uv_timer_init(hub->loop, &c->timer);
    c->xp.tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    sl_list_push(&hub->conns, &c->all);
    if (uv_accept(l, (uv_stream_t *)&c->xp.tcp) != 0) {
        hub_conn_close(c, UV_ECONNABORTED);
        return NULL;
    }
    uv_tcp_nodelay(&c->xp.tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->xp.tcp, (struct sockaddr *)&ss, &len) == 0) {
        struct sockaddr_storage un;
        if (sl_addr_unmap((struct sockaddr *)&ss, &un))
            ss = un;
        sl_addr_format_ip((struct sockaddr *)&ss, c->peer_ip,
                          sizeof(c->peer_ip));
    } else {
        snprintf(c->peer_ip, sizeof(c->peer_ip), "?");
    }
    if (!hub_caps_admit(c))
        return NULL;
    return c;
}

static void on_connection(uv_stream_t *l, int status)
{
    struct sl_hub *hub = l->data;
    if (status < 0) {
        sl_warn(hub->log, "hub: accept failed: %s", sl_strerror(status));
        return;
    }
    struct hub_conn *c = hub_conn_accept(hub, l, on_connection);
    if (c == NULL)
        return;
    if (l == (uv_stream_t *)&hub->tls_listener)
        hub_tls_accept(c);
    else
        hub_conn_start_head(c);
}

/* Flush: counters to the store, bandwidth, stats to bridges. */

static void flush_alloc(struct sl_hub *hub, struct hub_alloc *a)
{
    const struct sl_store_traffic *u = &a->unflushed;
    if (u->user_down || u->user_up || u->bridge_down || u->bridge_up) {
        if (sl_store_add_traffic(hub->store, a->identity, u) == 0)
            memset(&a->unflushed, 0, sizeof(a->unflushed));
    }
    if (a->touched) {
        if (sl_store_touch(hub->store, a->identity, a->last_seen) == 0)
            a->touched = 0;
    }
    if (a->limited_dirty) {
        if (sl_store_set_limited(hub->store, a->identity, a->limited) == 0)
            a->limited_dirty = 0;
    }
}

/* Other hubs count the same allocation: its totals (and a limit one of
 * them reached) come back from the store after each flush. */
static void shared_totals(struct sl_hub *hub, struct hub_alloc *a)
{
    struct sl_alloc s;
    if (sl_store_get_by_identity(hub->store, a->identity, &s) != 0)
        return;
    const struct sl_store_traffic *u = &a->unflushed;
    struct sl_store_traffic *t = &a->total;
#define RAISE(f) if (s.traffic.f + u->f > t->f) t->f = s.traffic.f + u->f
    RAISE(user_down);
    RAISE(user_up);
    RAISE(bridge_down);
    RAISE(bridge_up);
#undef RAISE
    if (s.limited && !a->limited) {
        a->limited = 1;
        sl_warn(hub->log, "hub alloc %s: traffic limit reached (counted "
                          "with the other hubs), closing its pairs",
                a->identity);
        hub_alloc_error_all(a, "Traffic limit exceeded", 429);
        hub_alloc_close_pairs(a);
        return;
    }
    check_limit(a);
}

static void flush_all(struct sl_hub *hub, double secs)
{
    for (size_t i = 0; i < HUB_BUCKETS; i++) {
        for (struct hub_alloc *a = hub->buckets[i]; a; a = a->hnext) {
            if (secs > 0) {
                a->bw_down = (uint64_t)((double)(a->total.user_down -
                                                 a->bw_mark_down) / secs);
                a->bw_up = (uint64_t)((double)(a->total.user_up -
                                               a->bw_mark_up) / secs);
                a->bw_mark_down = a->total.user_down;
                a->bw_mark_up = a->total.user_up;
                uint64_t t = a->total.user_down + a->total.user_up;
                if (t != a->stats_mark && a->ncontrols > 0) {
                    a->stats_mark = t;
                    hub_control_stats(a);
                }
                if (a->ncontrols > 0)
                    hub_alloc_touch(a);
            }
            flush_alloc(hub, a);
            if (sl_store_shared(hub->store))
                shared_totals(hub, a);
        }
    }
}

/* A shared store: about once a second, so that the totals other hubs
 * counted come back at that pace (docs/scale-out.md, the overshoot). */
static uint64_t flush_interval(const struct sl_hub *hub)
{
    if (hub->opts.flush_ms)
        return hub->opts.flush_ms;
    return sl_store_shared(hub->store) ? 1000 : 5000;
}

static void on_flush(uv_timer_t *t)
{
    struct sl_hub *hub = t->data;
    flush_all(hub, (double)flush_interval(hub) / 1000.0);
    hub_expire_idle(hub);
    sl_relay_pool_trim(&hub->relay_pool);
}

/* Start and stop. */

static char *dup_or(const char *s, const char *def)
{
    const char *v = (s != NULL && s[0] != '\0') ? s : def;
    return v ? strdup(v) : NULL;
}

static void free_strings(struct sl_hub *hub)
{
    free(hub->s_http_addr);
    free(hub->s_domain);
    free(hub->s_scheme);
    free(hub->s_token);
    free(hub->s_state_dir);
}

static void on_failed_listener_closed(uv_handle_t *h)
{
    struct sl_hub *hub = h->data;
    if (--hub->open_handles == 0)
        free(hub);
}

/* Binds and listens on addr (flag names it in errors); the bound
 * address and port go to out_addr/out_port. */
static int listen_at(struct sl_hub *hub, uv_tcp_t *l, const char *addr,
                     const char *flag, char *out_addr, int *out_port)
{
    struct sockaddr_storage ss;
    if (sl_addr_parse(addr, &ss) != 0) {
        sl_error(hub->log, "hub: %s '%s' is not an address (ip:port)", flag,
                 addr);
        return SL_ECONFIG;
    }
    uv_tcp_init(hub->loop, l);
    l->data = hub;
    hub->open_handles++;
    int rc = uv_tcp_bind(l, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)l, 1024, on_connection);
    if (rc != 0) {
        sl_error(hub->log, "hub: cannot listen on %s: %s", addr,
                 sl_strerror(rc));
        return rc;
    }
    int len = sizeof(ss);
    uv_tcp_getsockname(l, (struct sockaddr *)&ss, &len);
    sl_addr_format((struct sockaddr *)&ss, out_addr, SL_ADDR_STRLEN);
    *out_port = sl_addr_port((struct sockaddr *)&ss);
    return 0;
}

static int acme_want_one(const struct sl_alloc *a, void *arg)
{
    sl_acme_want(arg, a->identity);
    return 0;
}

/* ACME after the TLS listener: the identities the store holds get their
 * certificates ordered (or loaded) at once. */
static int acme_start(struct sl_hub *hub, const struct sl_hub_options *opts)
{
    char err[512];
    if (!hub->has_tls_listener) {
        sl_error(hub->log, "hub: --acme needs --https (the CA validates "
                           "on the TLS port)");
        return SL_ECONFIG;
    }
    struct sl_acme_opts ao = *opts->acme;
    ao.domain = hub->s_domain;
    ao.state_dir = hub->s_state_dir;
    int rc = sl_acme_new(hub->loop, hub->log, hub->tls, &ao, &hub->acme,
                         err, sizeof(err));
    if (rc != 0) {
        sl_error(hub->log, "hub: ACME: %s", err);
        return rc;
    }
    if (ao.dns_update == NULL)
        (void)sl_store_list(hub->store, acme_want_one, hub->acme);
    return 0;
}

/* The certificates, then the TLS listener. */
static int tls_start(struct sl_hub *hub, const struct sl_hub_options *opts)
{
    static const char *const alpn[] = {"http/1.1", NULL};
    struct sl_tls_server_opts to = {
        .cert_files = opts->tls_cert_files,
        .key_files = opts->tls_key_files,
        .ncerts = opts->ntls_certs,
        .state_dir = hub->s_state_dir,
        .domain = hub->s_domain,
        .alpn = alpn,
    };
    char err[512];
    if (to.ncerts == 0 && to.state_dir == NULL) {
        sl_error(hub->log, "hub: TLS needs --tls-cert/--tls-key or a "
                           "state directory for its local CA");
        return SL_ECONFIG;
    }
    int rc = sl_tls_server_new(hub->loop, hub->log, &to, &hub->tls, err,
                               sizeof(err));
    if (rc != 0) {
        sl_error(hub->log, "hub: TLS: %s", err);
        return rc;
    }
    if (opts->https_addr != NULL) {
        rc = listen_at(hub, &hub->tls_listener, opts->https_addr, "--https",
                       hub->tls_address, &hub->tls_port);
        if (rc != 0)
            return rc;
        hub->has_tls_listener = 1;
    }
    if (sl_tls_server_ca_path(hub->tls) != NULL)
        sl_info(hub->log, "hub: TLS certificates from the local CA %s",
                sl_tls_server_ca_path(hub->tls));
    return opts->acme != NULL ? acme_start(hub, opts) : 0;
}

int sl_hub_start(struct sl_ctx *ctx, const struct sl_hub_options *opts)
{
    struct sl_hub *hub = calloc(1, sizeof(*hub));
    struct sockaddr_storage ss;
    int rc;
    if (hub == NULL)
        return UV_ENOMEM;
    hub->ctx = ctx;
    hub->loop = ctx->loop;
    hub->log = &ctx->log;
    hub->opts = *opts;
    hub_caps_defaults(hub);
    hub->mux_conns = opts->mux_conns < 0 ? 0
                     : opts->mux_conns > SL_CTL_MUX_MAX ? SL_CTL_MUX_MAX
                                                        : opts->mux_conns;
    hub->mux_budget.max = opts->mux_budget ? opts->mux_budget
                                           : 64ull * 1024 * 1024;
    hub->s_http_addr = dup_or(opts->http_addr, "127.0.0.1:8080");
    hub->s_domain = dup_or(opts->domain, "localhost");
    hub->s_scheme = dup_or(opts->public_scheme,
                           opts->https_addr != NULL ? "https" : "http");
    hub->s_token = dup_or(opts->gateway_token, NULL);
    hub->s_state_dir = dup_or(opts->state_dir, NULL);
    sl_list_init(&hub->conns);
    if (!hub->s_http_addr || !hub->s_domain || !hub->s_scheme) {
        rc = UV_ENOMEM;
        goto fail_strings;
    }
    if ((rc = hub_plans_init(hub, opts->plans)) != 0)
        goto fail_strings;
    if (RAND_bytes(hub->mac_key, sizeof(hub->mac_key)) != 1) {
        rc = UV_EIO;
        goto fail_strings;
    }
    char probe[SL_IDENTITY_LEN + 1];
    if (sl_host_route("x", 1, hub->s_domain, probe) == UV_EINVAL) {
        sl_error(hub->log, "hub: --domain '%s' is not a DNS name",
                 hub->s_domain);
        rc = SL_ECONFIG;
        goto fail_strings;
    }
    if ((!opts->no_http && sl_addr_parse(hub->s_http_addr, &ss) != 0) ||
        (opts->https_addr != NULL &&
         sl_addr_parse(opts->https_addr, &ss) != 0)) {
        sl_error(hub->log, "hub: --%s '%s' is not an address (ip:port)",
                 opts->no_http ? "https" : "http",
                 opts->no_http ? opts->https_addr : hub->s_http_addr);
        rc = SL_ECONFIG;
        goto fail_strings;
    }
    if (opts->store != NULL) {
        hub->store = opts->store;
    } else {
        char path[4096];
        if (opts->store_url != NULL && opts->store_url[0] != '\0') {
            snprintf(path, sizeof(path), "%s", opts->store_url);
        } else if (hub->s_state_dir != NULL) {
            mkdir(hub->s_state_dir, 0700);
            snprintf(path, sizeof(path), "%s/hub.db", hub->s_state_dir);
        } else {
            snprintf(path, sizeof(path), ":memory:");
        }
        rc = sl_store_open(path, hub->log, &hub->store);
        if (rc != 0) {
            /* A URI may carry a password: not in the log. */
            sl_error(hub->log, "hub: cannot open the %s store: %s",
                     strncmp(path, "postgres", 8) == 0 ? "PostgreSQL" : path,
                     sl_strerror(rc));
            goto fail_strings;
        }
        hub->own_store = 1;
    }
    if (!opts->no_http) {
        rc = listen_at(hub, &hub->listener, hub->s_http_addr, "--http",
                       hub->address, &hub->port);
        if (rc != 0)
            goto fail_store;
        hub->has_plain = 1;
    }
    if (opts->https_addr != NULL || opts->tls_for_api) {
        rc = tls_start(hub, opts);
        if (rc != 0)
            goto fail_store;
    }
    if (!hub->has_plain) {
        /* TLS only: the TLS listener is the hub's address. */
        snprintf(hub->address, sizeof(hub->address), "%s", hub->tls_address);
        hub->port = hub->tls_port;
    }
    hub->stream_port_min = opts->stream_port_min ? opts->stream_port_min
                                                 : 20000;
    hub->stream_port_max = opts->stream_port_max ? opts->stream_port_max
                                                 : 29999;
    if (opts->stream_bind != NULL) {
        char b[SL_ADDR_STRLEN + 8];
        snprintf(b, sizeof(b), strchr(opts->stream_bind, ':') &&
                     opts->stream_bind[0] != '[' ? "[%s]:0" : "%s:0",
                 opts->stream_bind);
        if (sl_addr_parse(b, &hub->stream_bind) != 0) {
            sl_error(hub->log, "hub: --stream-bind '%s' is not an IP "
                     "address", opts->stream_bind);
            rc = SL_ECONFIG;
            goto fail_store;
        }
    } else {
        sl_addr_parse(hub->address, &hub->stream_bind);
    }
    sl_addr_parse(hub->address, &ss);
    hub_guard_warn(hub, (struct sockaddr *)&ss);
    if (hub->has_plain && hub->has_tls_listener &&
        sl_addr_parse(hub->tls_address, &ss) == 0)
        hub_guard_warn(hub, (struct sockaddr *)&ss);
    hub->relay_pool.max_free = HUB_FREE_BLOCKS / 4;
    uv_timer_init(hub->loop, &hub->flush_timer);
    hub->flush_timer.data = hub;
    hub->open_handles++;
    uv_timer_start(&hub->flush_timer, on_flush, flush_interval(hub),
                   flush_interval(hub));
    uv_timer_init(hub->loop, &hub->idle_timer);
    hub->idle_timer.data = hub;
    hub->open_handles++;
    uv_timer_start(&hub->idle_timer, hub_caps_on_idle_sweep,
                   hub_caps_sweep_interval(hub), hub_caps_sweep_interval(hub));
    hub_plans_run(hub);
    ctx->hub = hub;
    sl_info(hub->log, "hub: timeouts client %llu ms, server %llu ms, tunnel "
            "%llu ms; caps %u user connections, %u per address, %u "
            "requests and %u data connections per identity",
            (unsigned long long)hub->client_ms,
            (unsigned long long)hub->server_ms,
            (unsigned long long)hub->tunnel_ms, hub->max_user_conns,
            hub->max_conns_per_ip, hub->max_pairs, hub->max_data_conns);
    sl_info(hub->log, "hub: listening on %s, domain %s%s", hub->address,
            hub->s_domain, hub->s_token ? ", gateway token required" : "");
    return 0;
fail_store:
    if (hub->own_store)
        sl_store_close(hub->store);
fail_strings:
    hub_plans_free(hub);
    free_strings(hub);
    sl_acme_free(hub->acme);
    sl_tls_server_free(hub->tls);
    if (hub->open_handles > 0) {
        /* The listeners' memory is the hub's: free it once closed. */
        if (hub->listener.loop != NULL)
            uv_close((uv_handle_t *)&hub->listener,
                     on_failed_listener_closed);
        if (hub->tls_listener.loop != NULL)
            uv_close((uv_handle_t *)&hub->tls_listener,
                     on_failed_listener_closed);
        return rc;
    }
    free(hub);
    return rc;
}

static void maybe_finish_stop(struct sl_hub *hub)
{
    if (!sl_list_empty(&hub->conns) || hub->open_handles > 0)
        return;
    flush_all(hub, 0);
    if (hub->own_store)
        sl_store_close(hub->store);
    for (size_t i = 0; i < HUB_BUCKETS; i++) {
        struct hub_alloc *a = hub->buckets[i];
        while (a) {
            struct hub_alloc *n = a->hnext;
            hub_plan_free(a);
            free(a);
            a = n;
        }
    }
    while (hub->free_blocks) {
        struct hub_block *b = hub->free_blocks;
        hub->free_blocks = b->next;
        free(b);
    }
    sl_relay_pool_drain(&hub->relay_pool);
    void (*done)(void *) = hub->done;
    void *arg = hub->done_arg;
    if (hub->ctx->hub == hub)
        hub->ctx->hub = NULL;
    free_strings(hub);
    sl_tls_server_free(hub->tls);
    hub_plans_free(hub);
    free(hub);
    if (done)
        done(arg);
}

void hub_handle_closed(struct sl_hub *hub)
{
    hub->open_handles--;
    maybe_finish_stop(hub);
}

static void on_hub_handle_closed(uv_handle_t *h)
{
    struct sl_hub *hub = h->data;
    hub->open_handles--;
    maybe_finish_stop(hub);
}

void sl_hub_stop(struct sl_hub *hub, void (*done)(void *), void *arg)
{
    if (hub == NULL || hub->stopping)
        return;
    hub->stopping = 1;
    hub->done = done;
    hub->done_arg = arg;
    sl_info(hub->log, "hub: stopping");
    if (hub->listener.loop != NULL)
        uv_close((uv_handle_t *)&hub->listener, on_hub_handle_closed);
    if (hub->tls_listener.loop != NULL)
        uv_close((uv_handle_t *)&hub->tls_listener, on_hub_handle_closed);
    uv_close((uv_handle_t *)&hub->flush_timer, on_hub_handle_closed);
    uv_close((uv_handle_t *)&hub->idle_timer, on_hub_handle_closed);
    hub_plans_stop(hub);
    /* Before the certificates it hands to: nothing reaches them after. */
    sl_acme_free(hub->acme);
    hub->acme = NULL;
    /* Counters first, while allocations and connections are all there. */
    flush_all(hub, 0);
    for (size_t i = 0; i < HUB_BUCKETS; i++)
        for (struct hub_alloc *a = hub->buckets[i]; a != NULL; a = a->hnext)
            hub_streams_close(a);
    struct sl_link *l = hub->conns.next;
    while (l != &hub->conns) {
        struct sl_link *n = l->next;
        hub_conn_close(HUB_CONN_OF(l, all), UV_ECANCELED);
        l = n;
    }
}

int sl_hub_address(const struct sl_hub *hub, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s", hub->address);
    return (n < 0 || (size_t)n >= cap) ? SL_ETOOBIG : 0;
}

int sl_hub_tls_address(const struct sl_hub *hub, char *buf, size_t cap)
{
    if (!hub->has_tls_listener)
        return SL_ENOTFOUND;
    int n = snprintf(buf, cap, "%s", hub->tls_address);
    return (n < 0 || (size_t)n >= cap) ? SL_ETOOBIG : 0;
}

struct sl_tls_server *sl_hub_tls(struct sl_hub *hub)
{
    return hub->tls;
}

struct sl_acme *sl_hub_acme(struct sl_hub *hub)
{
    return hub->acme;
}

const char *sl_hub_ca_path(const struct sl_hub *hub)
{
    return hub->tls ? sl_tls_server_ca_path(hub->tls) : NULL;
}

void sl_hub_reload(struct sl_hub *hub)
{
    if (hub->tls != NULL && !hub->stopping)
        sl_tls_server_reload(hub->tls);
}

const char *sl_hub_domain(const struct sl_hub *hub)
{
    return hub->s_domain;
}

struct sl_store *sl_hub_store(struct sl_hub *hub)
{
    return hub->store;
}

struct sl_store_limits sl_hub_default_limits(const struct sl_hub *hub)
{
    return hub->opts.default_limits;
}

int sl_hub_url(const struct sl_hub *hub, const char *identity, char *buf,
               size_t cap)
{
    int own = hub->has_tls_listener ? hub->tls_port : hub->port;
    int port = hub->opts.public_port == 0 ? own : hub->opts.public_port;
    int n;
    if (port > 0)
        n = snprintf(buf, cap, "%s://%s.%s:%d/", hub->s_scheme, identity,
                     hub->s_domain, port);
    else
        n = snprintf(buf, cap, "%s://%s.%s/", hub->s_scheme, identity,
                     hub->s_domain);
    return (n < 0 || (size_t)n >= cap) ? SL_ETOOBIG : 0;
}

static void fill_live(const struct hub_alloc *a, struct sl_hub_live *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->identity, sizeof(out->identity), "%s", a->identity);
    out->bridges = a->ncontrols;
    out->pool = a->npool;
    out->mux = a->nmux;
    out->pairs = a->npairs;
    out->traffic = a->total;
    out->bw_down = a->bw_down;
    out->bw_up = a->bw_up;
    out->limited = a->limited;
    out->last_seen = a->last_seen;
}

int sl_hub_live(struct sl_hub *hub, const char *identity,
                struct sl_hub_live *out)
{
    struct hub_alloc *a = identity ? hub_alloc_find(hub, identity) : NULL;
    if (a == NULL)
        return SL_ENOTFOUND;
    fill_live(a, out);
    return 0;
}

int sl_hub_live_each(struct sl_hub *hub, sl_hub_live_cb cb, void *arg)
{
    struct sl_hub_live live;
    for (size_t i = 0; i < HUB_BUCKETS; i++) {
        for (struct hub_alloc *a = hub->buckets[i]; a; a = a->hnext) {
            fill_live(a, &live);
            int rc = cb(&live, arg);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

void sl_hub_forget(struct sl_hub *hub, const char *identity)
{
    sl_acme_forget(hub->acme, identity);
    struct hub_alloc *a = identity ? hub_alloc_find(hub, identity) : NULL;
    if (a == NULL)
        return;
    sl_info(hub->log, "hub alloc %s: removed, closing its connections",
            identity);
    hub_alloc_error_all(a, "Proxy not available", 404);
    /* Every connection that points at it goes. */
    struct sl_link *l = hub->conns.next;
    while (l != &hub->conns) {
        struct sl_link *n = l->next;
        struct hub_conn *c = HUB_CONN_OF(l, all);
        if (c->alloc == a) {
            hub_conn_close(c, UV_ECANCELED);
            c->alloc = NULL;
        }
        l = n;
    }
    /* Connections may still be closing; they no longer refer to it. */
    alloc_unlink_free(hub, a);
}

void sl_hub_totals(const struct sl_hub *hub, struct sl_hub_totals *out)
{
    *out = hub->totals;
}
