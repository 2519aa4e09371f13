/* The bridge endpoints of the hub: /_sluice/v1/control (allocation,
 * authentication, JSON control messages) and /_sluice/v1/data (pool and
 * answers to open, raw or framed). docs/protocol.md is the contract. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/error.h"
#include "core/str.h"
#include "hub/hub_int.h"
#include "net/tcp_live.h"
#include "tunnel/control.h"

#define JSON_401_TOKEN "{\"error\":\"Gateway token required\",\"code\":401}"
#define JSON_401 "{\"error\":\"Unauthorized\",\"code\":401}"
#define JSON_429 "{\"error\":\"Too many failed attempts\",\"code\":429}"
#define JSON_429_ALLOC "{\"error\":\"Too many allocations\",\"code\":429}"
#define JSON_503_STORE                                                         \
    "{\"error\":\"Store unavailable: no new allocations for now\","           \
    "\"code\":503}"

static void reply_json(struct hub_conn *c, int status, const char *body)
{
    hub_conn_reply_close(c, status, "application/json", body, NULL);
}

static void reply_text(struct hub_conn *c, int status, const char *body)
{
    hub_conn_reply_close(c, status, NULL, body, NULL);
}

/* Reads the optional Sluice-Bridge header into c->bridge_id. Returns 1 if
 * the connection may go on, 0 if it was answered (malformed). */
static int take_bridge_id(struct hub_conn *c, const struct sl_http_head *h)
{
    const struct sl_http_header *x = sl_http_head_find(h, "sluice-bridge");
    if (x == NULL)
        return 1;
    if (sl_bridge_id_parse(x->value, x->value_len, c->bridge_id) == 0)
        return 1;
    sl_info(c->hub->log, "hub conn %llu from %s: malformed Sluice-Bridge, "
                         "answering 400",
            (unsigned long long)c->id, c->peer_ip);
    reply_text(c, 400, "Malformed Sluice-Bridge header");
    return 0;
}

/* Checks the WebSocket upgrade headers and computes the accept value.
 * Returns 1 if the connection may go on, 0 if it was answered. */
static int check_upgrade(struct hub_conn *c, const struct sl_http_head *h)
{
    struct sl_ws_upgrade up = {0};
    const struct sl_http_header *x;
    if ((x = sl_http_head_find(h, "upgrade")) != NULL) {
        up.upgrade = x->value;
        up.upgrade_len = x->value_len;
    }
    if ((x = sl_http_head_find(h, "connection")) != NULL) {
        up.connection = x->value;
        up.connection_len = x->value_len;
    }
    if ((x = sl_http_head_find(h, "sec-websocket-version")) != NULL) {
        up.version = x->value;
        up.version_len = x->value_len;
    }
    if ((x = sl_http_head_find(h, "sec-websocket-key")) != NULL) {
        up.key = x->value;
        up.key_len = x->value_len;
    }
    const char *why = "";
    int rc = sl_ws_check_upgrade(&up, &why);
    if (rc == SL_EDENIED) {
        hub_conn_reply_close(c, 426, NULL, "Upgrade Required",
                             "Sec-WebSocket-Version: 13\r\n");
        return 0;
    }
    if (rc != 0) {
        sl_info(c->hub->log, "hub conn %llu from %s: bad WebSocket upgrade "
                             "(%s), answering 400",
                (unsigned long long)c->id, c->peer_ip,
                rc == SL_ENOTFOUND ? "not an upgrade" : why);
        reply_text(c, 400, "Bad Request");
        return 0;
    }
    if (sl_ws_accept(up.key, up.key_len, c->ws_accept) != 0) {
        reply_text(c, 400, "Bad Request");
        return 0;
    }
    return 1;
}

static void auth_failed(struct hub_conn *c)
{
    sl_info(c->hub->log, "hub conn %llu from %s: credentials rejected",
            (unsigned long long)c->id, c->peer_ip);
    hub_rate_fail(c->hub, c->peer_ip, c->auth ? c->auth->username : NULL);
    reply_json(c, 401, JSON_401);
}

/* Parses Authorization into c->auth. 0, SL_ENOTFOUND or SL_EPARSE. */
static int ensure_auth(struct hub_conn *c)
{
    if (c->auth == NULL)
        c->auth = calloc(1, sizeof(*c->auth));
    return c->auth ? 0 : UV_ENOMEM;
}

static int take_basic(struct hub_conn *c, const struct sl_http_head *h)
{
    const struct sl_http_header *a = sl_http_head_find(h, "authorization");
    if (a == NULL)
        return SL_ENOTFOUND;
    if (ensure_auth(c) != 0)
        return UV_ENOMEM;
    if (sl_basic_auth_parse(a->value, a->value_len, c->auth->username,
                            sizeof(c->auth->username), c->auth->password,
                            sizeof(c->auth->password)) != 0) {
        /* No half-parsed name for the failure limits to key on. */
        c->auth->username[0] = '\0';
        return SL_EPARSE;
    }
    return 0;
}

/* Whether the failure limits refuse c before its credentials are checked;
 * rc is take_basic's. A refused attempt is not checked at all, so a
 * blocked guesser learns nothing. */
static int rate_blocked(struct hub_conn *c, int rc)
{
    return hub_rate_blocked(c->hub, c->peer_ip,
                            rc == 0 ? c->auth->username : NULL);
}

/* Thread pool jobs. They touch only the conn's credential fields, which
 * the loop leaves alone while work_pending is set. */

static void work_verify(uv_work_t *w)
{
    struct hub_conn *c = w->data;
    c->auth->result = sl_password_verify(c->auth->password, c->auth->hash);
    /* A password rotated away still opens in its grace: 2. */
    if (c->auth->result != 1 && c->auth->old_hash[0] != '\0' &&
        sl_password_verify(c->auth->password, c->auth->old_hash) == 1)
        c->auth->result = 2;
}

static void work_allocate(uv_work_t *w)
{
    struct hub_conn *c = w->data;
    c->auth->result = sl_creds_new(c->auth->username, c->auth->password);
    if (c->auth->result == 0)
        c->auth->result = sl_password_hash(c->auth->password, c->auth->hash,
                                          sizeof(c->auth->hash));
}

/* A shared store: a new allocation's credentials go out in its welcome,
 * and a node dials the other hubs with them at once: the row must be in
 * the database before (one write's round trip), or those hubs refuse
 * them as unknown and count failed logins. */
static void work_commit(uv_work_t *w)
{
    struct hub_conn *c = w->data;
    c->auth->result = sl_store_wait_created(c->hub->store, c->auth->username);
}

/* A shared store (several hubs): a username made on another hub within
 * the last second is asked of the database, the thread pool waiting for
 * the answer; one it does not know either pays the dummy check. */
static void work_fetch(uv_work_t *w)
{
    struct hub_conn *c = w->data;
    int found = sl_store_fetch_user(c->hub->store, c->auth->username);
    if (found != 0)
        work_verify(w);
    c->auth->result = found;
}

typedef void (*after_fn)(struct hub_conn *c);

static void after_work_common(uv_work_t *w, int status, after_fn next)
{
    struct hub_conn *c = w->data;
    if (hub_conn_work_done(c))
        return; /* the conn closed meanwhile and is gone now */
    if (status < 0)
        c->auth->result = status;
    next(c);
}

static int queue_work(struct hub_conn *c, uv_work_cb fn, uv_after_work_cb after)
{
    /* The job reads its own copy: the allocation may be forgotten (and
     * freed) while the job runs. No allocation: an unknown username
     * pays the same scrypt against a hash nobody can match. */
    if (fn == work_verify || fn == work_fetch)
        hub_grant_auth_hashes(c);
    c->auth->work.data = c;
    int rc = uv_queue_work(c->hub->loop, &c->auth->work, fn, after);
    if (rc == 0)
        c->work_pending = 1;
    return rc;
}

/* Control connections. */

static void send_ctl(struct hub_conn *c, const struct sl_ctl_msg *m)
{
    char *json = NULL;
    size_t len = 0;
    if (!c->ws_active)
        return;
    int rc = sl_ctl_encode(m, &json, &len);
    if (rc != 0) {
        /* Out of memory: a lost welcome would leave the bridge waiting
         * for good. End the connection; the bridge reconnects. */
        sl_ws_abort(c->ws, rc);
        return;
    }
    rc = sl_ws_send_text(c->ws, json, len);
    free(json);
    /* A control queue that is full holds the pongs of a peer that pings
     * and does not read: a message lost there would go unnoticed, so the
     * connection ends (on_close logs it once; the bridge reconnects). The
     * abort closes asynchronously, so callers looping over lists are
     * safe. */
    if (rc < 0 && rc != UV_EPIPE)
        sl_ws_abort(c->ws, rc);
}

static void send_error(struct hub_conn *c, const char *message, int code)
{
    struct sl_ctl_msg e;
    sl_ctl_init(&e, SL_CTL_ERROR);
    snprintf(e.error.message, sizeof(e.error.message), "%s", message);
    e.error.code = code;
    send_ctl(c, &e);
}

static void send_welcome(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct hub_alloc *a = c->alloc;
    struct sl_ctl_msg m;
    sl_ctl_init(&m, SL_CTL_WELCOME);
    snprintf(m.welcome.identity, sizeof(m.welcome.identity), "%s",
             a->identity);
    if (hub_streams_url(a, m.welcome.url, sizeof(m.welcome.url)) != 0)
        sl_hub_url(hub, a->identity, m.welcome.url, sizeof(m.welcome.url));
    if (a->streams != NULL) {
        m.welcome.tcp_port = a->streams->tcp_port;
        m.welcome.udp_port = a->streams->udp_port;
    }
    if (c->just_allocated && c->auth != NULL) {
        snprintf(m.welcome.username, sizeof(m.welcome.username), "%s",
                 a->username);
        snprintf(m.welcome.password, sizeof(m.welcome.password), "%s",
                 c->auth->password);
        c->just_allocated = 0;
    }
    m.welcome.limit_bridges = (uint32_t)a->limits.bridges;
    m.welcome.limit_traffic = a->limits.traffic;
    uint64_t ping = hub->opts.ping_ms ? hub->opts.ping_ms : SL_WS_PING_MS;
    uint64_t win = hub->opts.pairing_window_ms ? hub->opts.pairing_window_ms
                                               : 8000;
    m.welcome.ping_interval = ping >= 1000 ? (int)(ping / 1000) : 1;
    m.welcome.pairing_window = win >= 1000 ? (int)(win / 1000) : 1;
    /* Protocol v2, to a bridge that offered it: its user connections
     * ride as streams on this many connections. */
    m.welcome.mux = c->mux_offered ? hub->mux_conns : 0;
    send_ctl(c, &m);
    OPENSSL_cleanse(&m, sizeof(m));
    hub_auth_drop(c);
    if (a->limited)
        send_error(c, "Traffic limit exceeded", 429);
}

/* The hello's deadline is the head timeout: a peer that upgrades and says
 * nothing would otherwise hold a control slot for as long as it answers
 * pings, and a bridge whose hello was lost would wait without end. */
static uint64_t hello_deadline_ms(const struct sl_hub *hub)
{
    return hub->opts.head_timeout_ms ? hub->opts.head_timeout_ms
                                     : SL_HTTP_HEAD_TIMEOUT_MS;
}

/* Ends control connection c before its hello: the error tells a bridge
 * why (it reconnects with back-off); the close frame is bounded by the
 * ws's close timeout, so a peer that never reads cannot hold it. */
static void control_refuse(struct hub_conn *c, const char *message, int code,
                           uint16_t close_code)
{
    uv_timer_stop(&c->timer);
    if (!c->ws_active || sl_ws_is_closing(c->ws))
        return;
    send_error(c, message, code);
    sl_ws_close(c->ws, close_code);
}

static void on_hello_deadline(uv_timer_t *t)
{
    struct hub_conn *c = t->data;
    if (c->closing || c->got_hello || !c->ws_active)
        return;
    sl_info(c->hub->log, "hub control %llu (%s) from %s: no hello within "
                         "%llu ms; closing",
            (unsigned long long)c->id, c->alloc->identity, c->peer_ip,
            (unsigned long long)hello_deadline_ms(c->hub));
    control_refuse(c, "No hello in time", 408, 1008);
}

static void control_on_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                               const uint8_t *data, size_t len)
{
    struct hub_conn *c = ws->data;
    struct sl_ctl_msg m;
    if (type != SL_WS_TEXT || c->alloc == NULL)
        return;
    int rc = sl_ctl_parse((const char *)data, len, &m);
    if (rc == UV_ENOMEM) {
        /* Not the bridge's fault, but a hello lost this way would leave
         * it waiting for a welcome: end the connection, it reconnects. */
        sl_warn(c->hub->log, "hub control %llu (%s): out of memory reading "
                "a message; closing", (unsigned long long)c->id,
                c->alloc->identity);
        sl_ws_abort(ws, rc);
        return;
    }
    if (rc != 0 && !c->got_hello) {
        /* Ignored, it would leave the bridge waiting for a welcome (jansson
         * also reports some allocation failures as syntax errors). */
        sl_info(c->hub->log, "hub control %llu (%s) from %s: bad hello: %s; "
                             "closing",
                (unsigned long long)c->id, c->alloc->identity, c->peer_ip,
                sl_strerror(rc));
        control_refuse(c, "Bad hello", 400, 1002);
        return;
    }
    if (rc != 0) {
        sl_info(c->hub->log, "hub control %llu (%s): bad message: %s",
                (unsigned long long)c->id, c->alloc->identity,
                sl_strerror(rc));
        return;
    }
    hub_alloc_touch(c->alloc);
    if (m.type == SL_CTL_HELLO && !c->got_hello) {
        c->got_hello = 1;
        uv_timer_stop(&c->timer);
        /* The latest bridge says how users reach it over TLS. */
        c->alloc->passthrough = (m.hello.capabilities & SL_CAP_TLS) != 0;
        /* UDP has a carrier of its own (hub_udp.c). */
        c->mux_offered = (m.hello.capabilities & SL_CAP_MUX) &&
                         !(m.hello.capabilities & SL_CAP_UDP);
        char why[SL_CTL_MESSAGE_MAX];
        if (hub_grant_hello(c, m.hello.capabilities, why, sizeof(why)) != 0) {
            sl_info(c->hub->log, "hub control %llu (%s): %s",
                    (unsigned long long)c->id, c->alloc->identity, why);
            control_refuse(c, why, 403, 1008);
            return;
        }
        if (hub_streams_hello(c->alloc, m.hello.capabilities,
                              &m.hello.streams, why, sizeof(why)) != 0) {
            /* That allocation alone: its bridge hears why and retries. */
            sl_warn(c->hub->log, "hub control %llu (%s): %s",
                    (unsigned long long)c->id, c->alloc->identity, why);
            control_refuse(c, why, 503, 1011);
            return;
        }
        sl_info(c->hub->log, "hub control %llu (%s): hello version %d, "
                             "pool %d",
                (unsigned long long)c->id, c->alloc->identity,
                m.hello.version, m.hello.pool);
        send_welcome(c);
        if (c->resend_opens) {
            c->resend_opens = 0;
            struct hub_alloc *a = c->alloc;
            for (struct sl_link *l = a->waiting.next; l != &a->waiting;
                 l = l->next)
                {
                struct hub_conn *u = HUB_CONN_OF(l, alink);
                hub_control_open(a, u->fingerprint,
                                 u->streams != NULL ? "tcp" : "http");
            }
        }
    }
}

static void drop_pool_of(struct hub_alloc *a, const char *id,
                         const struct hub_conn *c, const char *why);
static void drop_pairs_of(struct hub_alloc *a, const char *id,
                          const struct hub_conn *c);

static void on_ws_closed(struct sl_ws *ws, int reason)
{
    struct hub_conn *c = ws->data;
    if (c->kind == C_CONTROL && c->alloc != NULL) {
        const char *why = reason ? sl_strerror(reason) : "normal";
        sl_log_event(c->hub->log, SL_LOG_INFO,
                     SL_LOG_FIELDS(SL_LOG_STR("route", "hub"),
                                   SL_LOG_NUM("conn", c->id),
                                   SL_LOG_STR("kind", "control"),
                                   SL_LOG_STR("identity", c->alloc->identity),
                                   SL_LOG_STR("client", c->peer_ip),
                                   SL_LOG_STR("event", "closed"),
                                   SL_LOG_STR("reason", why)),
                     "hub control %llu (%s) from %s: closed (%s)",
                     (unsigned long long)c->id, c->alloc->identity,
                     c->peer_ip, why);
        /* Dead of silence (pings unanswered, TCP_USER_TIMEOUT): its idle
         * pool shares the dead path, and a user paired with it would wait
         * out the same timeout before a 502. */
        if (reason == UV_ETIMEDOUT && c->bridge_id[0] != '\0') {
            drop_pool_of(c->alloc, c->bridge_id, c, "timed out");
            drop_pairs_of(c->alloc, c->bridge_id, c);
        }
    }
    hub_conn_ws_closed(c, reason);
}

static struct sl_ws_opts ws_opts(const struct sl_hub *hub, size_t max_msg)
{
    struct sl_ws_opts o = {0};
    o.role = SL_WS_SERVER;
    o.max_msg = max_msg;
    o.ping_ms = hub->opts.ping_ms;
    o.dead_ms = hub->opts.dead_ms;
    return o;
}

/* Closes the idle pool connections that name bridge id (a bridge whose
 * control connection is being replaced, or died of silence): nobody is to
 * be paired with a path that may be dead. */
static void drop_pool_of(struct hub_alloc *a, const char *id,
                         const struct hub_conn *c, const char *why)
{
    unsigned dropped = 0;
    struct sl_link *l, *next;
    for (l = a->pool.next; l != &a->pool; l = next) {
        next = l->next;
        struct hub_conn *d = HUB_CONN_OF(l, alink);
        if (strcmp(d->bridge_id, id) == 0) {
            hub_conn_alist_del(d);
            hub_conn_close(d, 0);
            dropped++;
        }
    }
    if (dropped > 0)
        sl_info(c->hub->log, "hub control %llu (%s): %u idle data "
                             "connections of the %s one closed",
                (unsigned long long)c->id, a->identity, dropped, why);
    unsigned muxes = hub_mux_drop_of(a, id);
    if (muxes > 0)
        sl_info(c->hub->log, "hub control %llu (%s): %u mux connections of "
                             "the %s one take no new streams",
                (unsigned long long)c->id, a->identity, muxes, why);
}

/* A bridge dead of silence: its paired data connections share the dead
 * path, and their users would wait out TCP's own timeout. They end now,
 * within the dead-peer time (stream users get a reset). */
static void drop_pairs_of(struct hub_alloc *a, const char *id,
                          const struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    unsigned dropped = 0;
    struct sl_link *l, *next;
    for (l = hub->conns.next; l != &hub->conns; l = next) {
        next = l->next;
        struct hub_conn *d = HUB_CONN_OF(l, all);
        if (d->kind == C_DATA && d->alloc == a && d->peer != NULL &&
            !d->closing && strcmp(d->bridge_id, id) == 0) {
            /* (Closed conns stay linked until freed, later.) */
            hub_conn_close(d, UV_ETIMEDOUT);
            dropped++;
        }
    }
    if (dropped > 0)
        sl_info(hub->log, "hub control %llu (%s): %u paired data "
                          "connections of the timed out one closed",
                (unsigned long long)c->id, a->identity, dropped);
}

/* Closes control connection old in favour of c, with the idle pool old's
 * bridge left; the users waiting for an answer to an open (sent on the
 * newest control connection, perhaps old) are asked for again on c once
 * it says hello. */
static void replace_control(struct hub_conn *old, struct hub_conn *c)
{
    struct hub_alloc *a = c->alloc;
    sl_info(c->hub->log, "hub control %llu (%s): replaced by conn %llu",
            (unsigned long long)old->id, a->identity,
            (unsigned long long)c->id);
    send_error(old, "Replaced by a newer connection", 409);
    hub_conn_alist_del(old);
    if (old->ws_active)
        sl_ws_close(old->ws, 1000);
    else
        hub_conn_close(old, 0);
    if (old->bridge_id[0] != '\0')
        drop_pool_of(a, old->bridge_id, c, "replaced");
    c->resend_opens = 1;
}

/* The bridge that owns c's Sluice-Bridge id is back while the hub still
 * holds earlier connections of it (a dead path not yet timed out): they
 * are all stale, whatever the bridge limit. Its pool is dropped even if
 * its old control connection is gone already, since c has dialled no pool
 * connection yet. */
static void replace_same_bridge(struct hub_alloc *a, struct hub_conn *c)
{
    struct sl_link *l, *next;
    for (l = a->controls.next; l != &a->controls; l = next) {
        next = l->next;
        struct hub_conn *old = HUB_CONN_OF(l, alink);
        if (strcmp(old->bridge_id, c->bridge_id) == 0)
            replace_control(old, c);
    }
    drop_pool_of(a, c->bridge_id, c, "replaced");
}

static void control_upgrade(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct hub_alloc *a = c->alloc;
    char resp[512];
    if (!hub_grant_admit(c))
        return; /* answered: its grant or its plan refuses it */
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sluice-Identity: %s\r\n\r\n",
                     c->ws_accept, a->identity);
    if (hub_conn_write(c, NULL, resp, (size_t)n) < 0) {
        hub_conn_close(c, UV_EPIPE);
        return;
    }
    if (c->bridge_id[0] != '\0')
        replace_same_bridge(a, c);
    /* At the bridge limit, the newest connection wins. */
    while (a->limits.bridges > 0 && a->ncontrols >= a->limits.bridges &&
           !sl_list_empty(&a->controls))
        replace_control(HUB_CONN_OF(a->controls.next, alink), c);
    sl_list_push(&a->controls, &c->alink);
    c->in_alist = AL_CONTROLS;
    a->ncontrols++;
    hub_alloc_touch(a);

    const char *pre = c->head + c->head_off;
    size_t pre_len = c->head_len > c->head_off ? c->head_len - c->head_off : 0;
    struct sl_ws_opts o = ws_opts(hub, SL_WS_MAX_MSG_CONTROL);
    uv_timer_stop(&c->timer);
    hub_conn_read_stop(c);
    if (!c->just_allocated)
        hub_auth_drop(c);
    c->ws = calloc(1, sizeof(*c->ws));
    if (c->ws == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return;
    }
    c->ws->data = c;
    c->ws->on_message = control_on_message;
    c->ws->on_close = on_ws_closed;
    c->ws->on_drain = NULL;
    c->ws->on_peer_close = NULL;
    c->ws_active = 1;
    sl_log_event(hub->log, SL_LOG_INFO,
                 SL_LOG_FIELDS(SL_LOG_STR("route", "hub"),
                               SL_LOG_NUM("conn", c->id),
                               SL_LOG_STR("kind", "control"),
                               SL_LOG_STR("identity", a->identity),
                               SL_LOG_STR("client", c->peer_ip),
                               SL_LOG_STR("event", "connected")),
                 "hub control %llu (%s) from %s: connected%s",
                 (unsigned long long)c->id, a->identity, c->peer_ip,
                 c->just_allocated ? " (new allocation)" : "");
    sl_ws_start(c->ws, &c->xp, &o, pre, pre_len);
    if (!c->closing && !c->got_hello && !sl_ws_is_closing(c->ws))
        uv_timer_start(&c->timer, on_hello_deadline, hello_deadline_ms(hub),
                       0);
    /* The head buffer is no longer needed. */
    if (!c->closing) {
        free(c->head);
        c->head = NULL;
        c->head_len = c->head_cap = 0;
    }
}

/* The new allocation s is stored (in the shared database too): its
 * control connection is upgraded, the welcome hands out its credentials. */
static void allocated(struct hub_conn *c, const struct sl_alloc *s)
{
    struct sl_hub *hub = c->hub;
    c->alloc = hub_alloc_load(hub, s);
    if (c->alloc == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return;
    }
    /* The password is known good: later connections skip scrypt. */
    hub_mac(hub, c->auth->password, c->alloc->pass_mac);
    c->alloc->has_mac = 1;
    sl_info(hub->log, "hub alloc %s: created for %s", s->identity, c->peer_ip);
    c->just_allocated = 1;
    control_upgrade(c);
}

static void after_commit_cb(uv_work_t *w, int status);

static void after_allocate(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct sl_alloc s;
    int rc = c->auth->result;
    if (rc != 0) {
        sl_error(hub->log, "hub conn %llu: cannot make credentials: %s",
                 (unsigned long long)c->id, sl_strerror(rc));
        reply_json(c, 500, "{\"error\":\"Internal error\",\"code\":500}");
        return;
    }
    for (int tries = 0; tries < 8; tries++) {
        memset(&s, 0, sizeof(s));
        if ((rc = sl_identity_new(s.identity)) != 0)
            break;
        snprintf(s.username, sizeof(s.username), "%s", c->auth->username);
        snprintf(s.password_hash, sizeof(s.password_hash), "%s", c->auth->hash);
        s.limits = hub->opts.default_limits;
        rc = sl_store_create(hub->store, &s);
        if (rc != SL_EEXIST)
            break;
        /* Taken: a new identity, and a new username too if that was it. */
        if (sl_store_get_by_username(hub->store, c->auth->username, &s) == 0) {
            char pass_unused[SL_PASSWORD_LEN + 1];
            sl_creds_new(c->auth->username, pass_unused);
            OPENSSL_cleanse(pass_unused, sizeof(pass_unused));
            rc = SL_EEXIST;
            /* The hash covers the password, not the username: keep it. */
        }
    }
    if (rc != 0 && !sl_store_healthy(hub->store)) {
        sl_error(hub->log, "hub conn %llu: new allocation refused: the "
                           "store is unreachable",
                 (unsigned long long)c->id);
        reply_json(c, 503, JSON_503_STORE);
        return;
    }
    if (rc != 0) {
        sl_error(hub->log, "hub conn %llu: cannot store a new allocation: %s",
                 (unsigned long long)c->id, sl_strerror(rc));
        reply_json(c, 500, "{\"error\":\"Internal error\",\"code\":500}");
        return;
    }
    if (!sl_store_shared(hub->store)) {
        allocated(c, &s);
        return;
    }
    /* The 101 and the welcome wait for the database (after_commit). */
    if (queue_work(c, work_commit, after_commit_cb) != 0) {
        (void)sl_store_remove(hub->store, s.identity);
        hub_conn_close(c, UV_ENOMEM);
    }
}

static void after_allocate_cb(uv_work_t *w, int status)
{
    after_work_common(w, status, after_allocate);
}

/* The shared database has the new allocation, or could not take it. */
static void after_commit(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct sl_alloc s;
    int rc = c->auth->result;
    /* Its own row, not one of the same username another hub made within
     * the same instant (the hash's salt is this connection's). */
    int mine = sl_store_get_by_username(hub->store, c->auth->username,
                                        &s) == 0 &&
               strcmp(s.password_hash, c->auth->hash) == 0;
    if (rc == 0 && mine) {
        allocated(c, &s);
        return;
    }
    if (mine) {
        /* Not known to be written: the removal, queued behind the create,
         * takes it back out wherever it lands. Nobody got credentials. */
        (void)sl_store_remove(hub->store, s.identity);
        sl_error(hub->log, "hub conn %llu: new allocation refused: the "
                           "store did not confirm it in time (%s)",
                 (unsigned long long)c->id, sl_strerror(rc));
        reply_json(c, 503, JSON_503_STORE);
        return;
    }
    /* Refused by the database (the store logged why) and gone from the
     * replica. */
    sl_error(hub->log, "hub conn %llu: cannot store a new allocation: the "
                       "database refused it",
             (unsigned long long)c->id);
    reply_json(c, 500, "{\"error\":\"Internal error\",\"code\":500}");
}

static void after_commit_cb(uv_work_t *w, int status)
{
    after_work_common(w, status, after_commit);
}

/* The token is percent-encoded in the query (the node encodes it), so a
 * token with spaces, '&' or '=' must be decoded before it is compared. */
static int query_token(const char *q, size_t qlen, char *out, size_t cap)
{
    if (q == NULL)
        return SL_ENOTFOUND; /* no query (and no arithmetic on NULL) */
    const char *end = q + qlen;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > 6 && memcmp(q, "token=", 6) == 0)
            return sl_pct_decode(q + 6, (size_t)(e - q) - 6, out, cap, 1);
        q = e + 1;
    }
    return SL_ENOTFOUND;
}

static void after_dummy_cb(uv_work_t *w, int status);
static void after_fetch_cb(uv_work_t *w, int status);

/* Finds the allocation of c->auth->username. Returns it or NULL (answered,
 * or refused after a dummy check that costs what a real one does, or
 * asked of a shared store: after_fetch goes on). */
static struct hub_alloc *alloc_of_user(struct hub_conn *c)
{
    struct sl_alloc s;
    if (sl_store_get_by_username(c->hub->store, c->auth->username, &s) != 0) {
        int shared = sl_store_shared(c->hub->store);
        if (queue_work(c, shared ? work_fetch : work_verify,
                       shared ? after_fetch_cb : after_dummy_cb) != 0)
            auth_failed(c);
        return NULL;
    }
    struct hub_alloc *a = hub_alloc_load(c->hub, &s);
    if (a == NULL)
        hub_conn_close(c, UV_ENOMEM);
    return a;
}

static void data_authed(struct hub_conn *c);
static void auth_decide(struct hub_conn *c);

/* Credentials accepted: the connection goes on. */
static void auth_proceed(struct hub_conn *c)
{
    c->old_password = hub_grant_old_mac(c->alloc, c->auth->mac);
    if (c->kind == C_CONTROL) {
        OPENSSL_cleanse(c->auth->password, sizeof(c->auth->password));
        control_upgrade(c);
    } else {
        data_authed(c);
    }
}

/* Wakes the connections that waited for the check of the same password. */
static void wake_verify_waiters(struct hub_alloc *a, int ok,
                                const unsigned char mac[32])
{
    while (!sl_list_empty(&a->verify_wait)) {
        struct hub_conn *w = HUB_CONN_OF(a->verify_wait.next, alink);
        hub_conn_alist_del(w);
        if (CRYPTO_memcmp(w->auth->mac, mac, 32) != 0)
            auth_decide(w); /* cannot happen: parked on the same MAC */
        else if (ok)
            auth_proceed(w);
        else
            auth_failed(w);
    }
}

static void after_verify_cb(uv_work_t *w, int status)
{
    struct hub_conn *c = w->data;
    struct hub_alloc *a = c->alloc; /* NULL if forgotten meanwhile */
    /* Which password it is now (a rotation may have run meanwhile). */
    int which = status == 0 ? hub_grant_verified(c, c->auth->result) : 0;
    int ok = which != 0;
    unsigned char mac[32];
    memcpy(mac, c->auth->mac, sizeof(mac));
    if (a != NULL) {
        a->verifying = 0;
        if (which == 1) {
            memcpy(a->pass_mac, mac, sizeof(mac));
            a->has_mac = 1;
        } else if (which == 2) {
            hub_grant_old_mac_set(a, mac);
        }
    }
    if (!hub_conn_work_done(c)) { /* c may be gone after this returns 1 */
        if (ok)
            auth_proceed(c);
        else
            auth_failed(c);
    }
    if (a != NULL)
        wake_verify_waiters(a, ok, mac);
}

static int data_admit(struct hub_conn *c);

/* The shared store answered for a username the hub did not know. */
static void after_fetch(struct hub_conn *c)
{
    struct sl_alloc s;
    if (c->auth->result != 0 ||
        sl_store_get_by_username(c->hub->store, c->auth->username, &s) != 0) {
        auth_failed(c);
        return;
    }
    if ((c->alloc = hub_alloc_load(c->hub, &s)) == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return;
    }
    if (c->kind != C_CONTROL && !data_admit(c))
        return;
    auth_decide(c);
}

static void after_fetch_cb(uv_work_t *w, int status)
{
    after_work_common(w, status, after_fetch);
}

/* An unknown username was "checked": it fails whatever the job said. */
static void after_dummy_cb(uv_work_t *w, int status)
{
    struct hub_conn *c = w->data;
    (void)status;
    if (!hub_conn_work_done(c))
        auth_failed(c);
}

/* One scrypt check per password at a time: a burst of data connections
 * with the same credentials (a bridge's pool, answers to many opens) waits
 * for the first check, then goes through on its MAC. */
static void auth_decide(struct hub_conn *c)
{
    struct hub_alloc *a = c->alloc;
    hub_mac(c->hub, c->auth->password, c->auth->mac);
    if ((a->has_mac && CRYPTO_memcmp(c->auth->mac, a->pass_mac, 32) == 0) ||
        hub_grant_old_mac(a, c->auth->mac)) {
        auth_proceed(c);
        return;
    }
    if (a->verifying &&
        CRYPTO_memcmp(c->auth->mac, a->verify_mac, 32) == 0) {
        sl_list_push(&a->verify_wait, &c->alink);
        c->in_alist = AL_VERIFY;
        return;
    }
    if (queue_work(c, work_verify, after_verify_cb) != 0) {
        hub_conn_close(c, UV_ENOMEM);
        return;
    }
    a->verifying = 1;
    memcpy(a->verify_mac, c->auth->mac, 32);
}

void hub_bridge_control(struct hub_conn *c, const struct sl_http_head *h,
                        const char *query, size_t query_len)
{
    struct sl_hub *hub = c->hub;
    c->head_off = h->len;
    (void)sl_tcp_live(&c->xp.tcp); /* best effort: pings cover it too */
    if (!check_upgrade(c, h) || !take_bridge_id(c, h))
        return;
    int rc = take_basic(c, h);
    if (rate_blocked(c, rc)) {
        reply_json(c, 429, JSON_429);
        return;
    }
    /* A grant refused costs no credential check. */
    if (!hub_grant_presented(c, h, rc == SL_ENOTFOUND))
        return;
    if (rc == SL_ENOTFOUND) {
        if (hub->s_token != NULL) {
            char tok[256];
            if (query_token(query, query_len, tok, sizeof(tok)) != 0 ||
                !sl_token_equal(tok, hub->s_token)) {
                sl_info(hub->log, "hub conn %llu from %s: allocation without "
                                  "the gateway token, answering 401",
                        (unsigned long long)c->id, c->peer_ip);
                reply_json(c, 401, JSON_401_TOKEN);
                return;
            }
        }
        unsigned wait = hub_alloc_admit(hub, c->peer_ip);
        if (wait > 0) {
            char extra[48];
            snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", wait);
            hub_conn_reply_close(c, 429, "application/json", JSON_429_ALLOC,
                                 extra);
            return;
        }
        if (ensure_auth(c) != 0 ||
            queue_work(c, work_allocate, after_allocate_cb) != 0)
            hub_conn_close(c, UV_ENOMEM);
        return;
    }
    if (rc != 0) {
        auth_failed(c);
        return;
    }
    if ((c->alloc = alloc_of_user(c)) == NULL)
        return;
    auth_decide(c);
}

/* Counts data conn c in its allocation's cap, before its password is
 * checked: a flood with a known username must not park without bound.
 * Returns 0 if c was answered 429 instead. */
static int data_admit(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct hub_alloc *a = c->alloc;
    uint64_t more = 0;
    if (a->ndata < hub->max_data_conns) {
        a->ndata++;
        c->data_counted = 1;
        return 1;
    }
    if (hub_burst_log(hub, HUB_CAP_DATA, &more))
        sl_warn(hub->log, "hub data %llu from %s: over %u data connections "
                "for %s, answering 429 (%llu more refused since the last "
                "line)", (unsigned long long)c->id, c->peer_ip,
                hub->max_data_conns, a->identity, (unsigned long long)more);
    reply_text(c, 429, "Too Many Requests");
    return 0;
}

void hub_alloc_error_all(struct hub_alloc *a, const char *message, int code)
{
    for (struct sl_link *l = a->controls.next; l != &a->controls; l = l->next)
        send_error(HUB_CONN_OF(l, alink), message, code);
}

void hub_control_end(struct hub_conn *c, const char *message, int code)
{
    hub_conn_alist_del(c);
    if (c->ws_active && !sl_ws_is_closing(c->ws)) {
        send_error(c, message, code);
        sl_ws_close(c->ws, 1008);
    } else {
        hub_conn_close(c, 0);
    }
}

int hub_control_open(struct hub_alloc *a, const char *fingerprint,
                     const char *kind)
{
    if (sl_list_empty(&a->controls))
        return SL_ENOTFOUND;
    struct hub_conn *c = HUB_CONN_OF(a->controls.prev, alink); /* newest */
    struct sl_ctl_msg m;
    sl_ctl_init(&m, SL_CTL_OPEN);
    snprintf(m.open.fingerprint, sizeof(m.open.fingerprint), "%s",
             fingerprint);
    snprintf(m.open.kind, sizeof(m.open.kind), "%s", kind);
    send_ctl(c, &m);
    return 0;
}

void hub_control_stats(struct hub_alloc *a)
{
    struct sl_ctl_msg m;
    sl_ctl_init(&m, SL_CTL_STATS);
    m.stats.down = a->total.user_down;
    m.stats.up = a->total.user_up;
    m.stats.limit = a->limits.traffic;
    for (struct sl_link *l = a->controls.next; l != &a->controls; l = l->next)
        send_ctl(HUB_CONN_OF(l, alink), &m);
}

/* Data connections. */

/* The 16 bytes of a UUID in its 36-character form; -1 for anything else
 * (a fingerprint the hub did not make matches none it made). */
static int fp_bytes(const char *fp, unsigned char out[16])
{
    size_t k = 0;
    for (size_t i = 0; i < SL_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (fp[i] != '-')
                return -1;
            continue;
        }
        int hi = sl_hex_value(fp[i]);
        int lo = hi < 0 ? -1 : sl_hex_value(fp[++i]);
        if (lo < 0)
            return -1;
        out[k++] = (unsigned char)(hi << 4 | lo);
    }
    return fp[SL_UUID_LEN] == '\0' && k == 16 ? 0 : -1;
}

void hub_alloc_remember_fp(struct hub_alloc *a, const char *fp)
{
    unsigned char b[16];
    if (fp_bytes(fp, b) != 0)
        return;
    memcpy(a->recent_fp[a->recent_next % HUB_RECENT_FP], b, sizeof(b));
    a->recent_next++;
}

static int fp_used(const struct hub_alloc *a, const char *fp)
{
    unsigned char b[16];
    size_t n = a->recent_next < HUB_RECENT_FP ? a->recent_next
                                                : HUB_RECENT_FP;
    if (fp_bytes(fp, b) == 0)
        for (size_t i = 0; i < n; i++)
            if (memcmp(a->recent_fp[i], b, sizeof(b)) == 0)
                return 1;
    for (struct sl_link *l = a->pool.next; l != &a->pool; l = l->next)
        if (strcmp(HUB_CONN_OF(l, alink)->hijack.fingerprint, fp) == 0)
            return 1;
    return 0;
}

static uint64_t pool_age(const struct sl_hub *hub)
{
    return hub->opts.pool_max_age_ms ? hub->opts.pool_max_age_ms : 60000;
}

static void data_authed(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct hub_alloc *a = c->alloc;
    const char *fp = c->hijack.fingerprint;
    hub_auth_drop(c);
    if (strcmp(c->hijack.identity, a->identity) != 0) {
        sl_info(hub->log, "hub data %llu from %s: identity %s is not the "
                          "credentials' (%s), answering 403",
                (unsigned long long)c->id, c->peer_ip, c->hijack.identity,
                a->identity);
        reply_text(c, 403, "Forbidden");
        return;
    }
    if (a->limited) {
        reply_text(c, 429, "Traffic limit exceeded");
        return;
    }
    if (!hub_grant_data_admit(c))
        return;
    hub_alloc_touch(a);
    /* The UDP port's carrier (hub_udp.c), asked for with open "udp". */
    if (hub_udp_data(a, c))
        return;
    /* Protocol v2: a multiplexed connection, answered at once. */
    if (c->want_mux) {
        hub_mux_accept(c);
        return;
    }
    /* An answer to open whose user still waits. */
    for (struct sl_link *l = a->waiting.next; l != &a->waiting;
         l = l->next) {
        struct hub_conn *u = HUB_CONN_OF(l, alink);
        if (strcmp(u->fingerprint, fp) == 0) {
            hub_pair(u, c);
            return;
        }
    }
    if (fp_used(a, fp)) {
        sl_debug(hub->log, "hub data %llu (%s): fingerprint %s already used "
                           "or its user has gone, answering 409",
                 (unsigned long long)c->id, a->identity, fp);
        reply_text(c, 409, "Conflict");
        return;
    }
    hub_alloc_remember_fp(a, fp);
    /* A pool connection: the oldest waiting user takes it at once. */
    if (!sl_list_empty(&a->waiting)) {
        hub_pair(HUB_CONN_OF(a->waiting.next, alink), c);
        return;
    }
    if (a->npool >= HUB_POOL_MAX) {
        reply_text(c, 429, "Too Many Requests");
        return;
    }
    c->dstate = D_POOL;
    sl_list_push(&a->pool, &c->alink);
    c->in_alist = AL_POOL;
    a->npool++;
    /* Reading notices a bridge that drops it; the timer ages it out. */
    hub_conn_read_blocks(c);
    if (!c->closing)
        hub_conn_timer_start(c, pool_age(hub));
}

void hub_bridge_data(struct hub_conn *c, const struct sl_http_head *h)
{
    struct sl_hub *hub = c->hub;
    c->head_off = h->len;
    c->dstate = D_AUTH;
    /* Best effort: a raw pair has no pings, so only the kernel can tell a
     * bridge whose path died. */
    (void)sl_tcp_live(&c->xp.tcp);
    if (!check_upgrade(c, h))
        return;
    const struct sl_http_header *x = sl_http_head_find(h, "sluice-hijack");
    if (x == NULL || sl_hijack_parse(x->value, x->value_len, &c->hijack) != 0) {
        sl_info(hub->log, "hub data %llu from %s: malformed Sluice-Hijack, "
                          "answering 400",
                (unsigned long long)c->id, c->peer_ip);
        reply_text(c, 400, "Malformed Sluice-Hijack header");
        return;
    }
    if (!take_bridge_id(c, h))
        return;
    int rc = take_basic(c, h);
    if (rate_blocked(c, rc)) {
        reply_json(c, 429, JSON_429);
        return;
    }
    if (rc != 0) {
        auth_failed(c);
        return;
    }
    x = sl_http_head_find(h, "sluice-framing");
    c->want_raw = x != NULL && x->value_len == 3 &&
                  strncasecmp(x->value, "raw", 3) == 0;
    c->want_mux = x != NULL && x->value_len == 3 &&
                  strncasecmp(x->value, "mux", 3) == 0;
    c->framed = !c->want_raw && !c->want_mux;
    if (c->head_len == c->head_off) {
        /* Nothing came after the head (a client waits for the 101): a
         * pool connection holds no buffer. h is not used after this. */
        free(c->head);
        c->head = NULL;
        c->head_len = c->head_cap = c->head_off = 0;
    }
    if ((c->alloc = alloc_of_user(c)) == NULL || !data_admit(c))
        return;
    auth_decide(c);
}

void hub_data_on_timer(struct hub_conn *d)
{
    if (d->dstate != D_POOL)
        return;
    sl_debug(d->hub->log, "hub data %llu (%s): pool connection aged out, "
                          "answering 204",
             (unsigned long long)d->id, d->alloc ? d->alloc->identity : "-");
    hub_conn_alist_del(d);
    hub_conn_reply_close(d, 204, NULL, NULL, NULL);
}

/* Paired data connections. */

static void data_ws_message(struct sl_ws *ws, enum sl_ws_msg_type type,
                            const uint8_t *data, size_t len)
{
    struct hub_conn *d = ws->data;
    (void)type;
    if (d->peer == NULL)
        return;
    hub_count_bridge(d->alloc, len, 0);
    hub_progress(d);
    hub_user_on_upstream(d->peer, NULL, (const char *)data, len);
}

static void data_ws_peer_close(struct sl_ws *ws, uint16_t status)
{
    struct hub_conn *d = ws->data;
    (void)status;
    struct hub_conn *u = d->peer;
    if (u == NULL)
        return;
    d->peer = NULL;
    u->peer = NULL;
    if (d->alloc && d->alloc->npairs > 0)
        d->alloc->npairs--;
    hub_user_upstream_gone(u, UV_EOF);
}

static void data_ws_drain(struct sl_ws *ws)
{
    struct hub_conn *d = ws->data;
    if (d->peer != NULL)
        hub_user_resume_from_data(d);
}

int hub_data_accept(struct hub_conn *d)
{
    struct sl_hub *hub = d->hub;
    if (d->via != NULL) {
        /* A stream of a mux connection: no 101, its OPEN goes out with
         * the first bytes; from here it reads as a raw one. */
        uv_timer_stop(&d->timer);
        hub_progress(d);
        hub_conn_read_blocks(d);
        return 0;
    }
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                     d->ws_accept,
                     d->want_raw ? "Sluice-Framing: raw\r\n" : "");
    int rc = hub_conn_write(d, NULL, resp, (size_t)n);
    if (rc < 0)
        return rc;
    uv_timer_stop(&d->timer);
    hub_progress(d); /* the request's idle timeout starts */
    if (!d->framed) {
        hub_conn_read_blocks(d);
        return 0;
    }
    hub_conn_read_stop(d);
    const char *pre = d->head ? d->head + d->head_off : NULL;
    size_t pre_len = d->head_len > d->head_off ? d->head_len - d->head_off : 0;
    struct sl_ws_opts o = ws_opts(hub, SL_WS_MAX_MSG_DATA);
    d->ws = calloc(1, sizeof(*d->ws));
    if (d->ws == NULL)
        return UV_ENOMEM;
    d->ws->data = d;
    d->ws->on_message = data_ws_message;
    d->ws->on_close = on_ws_closed;
    d->ws->on_drain = data_ws_drain;
    d->ws->on_peer_close = data_ws_peer_close;
    d->ws_active = 1;
    sl_ws_start(d->ws, &d->xp, &o, pre, pre_len);
    return 0;
}

int hub_data_send(struct hub_conn *d, struct hub_block *b, const char *p,
                  size_t n)
{
    hub_count_bridge(d->alloc, 0, n);
    if (d->framed) {
        int rc = sl_ws_send_binary(d->ws, p, n);
        hub_block_put(d->hub, b);
        return rc;
    }
    int rc = hub_conn_write(d, b, p, n);
    if (rc < 0)
        return rc;
    return hub_conn_queued(d) > HUB_HIGH_WATER ? 1 : 0;
}

void hub_data_pause(struct hub_conn *d)
{
    if (d->framed) {
        d->rate_resume = 0; /* paused for back-pressure, whatever the cap */
        if (d->ws_active)
            sl_ws_pause_read(d->ws);
    } else {
        hub_conn_read_stop(d);
    }
}

void hub_data_resume(struct hub_conn *d)
{
    if (d->closing)
        return;
    if (d->framed) {
        if (d->rate_held)
            d->rate_resume = 1; /* over its cap: when the cap lets go */
        else if (d->ws_active)
            sl_ws_resume_read(d->ws);
    } else {
        hub_conn_read_blocks(d);
    }
}

static void on_data_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

void hub_data_end(struct hub_conn *d)
{
    if (d->closing)
        return;
    if (d->framed) {
        if (d->ws_active)
            sl_ws_close(d->ws, 1000);
        return;
    }
    d->shutdown_req.data = d;
    sl_xprt_shutdown(&d->shutdown_req, &d->xp, on_data_shutdown);
}
