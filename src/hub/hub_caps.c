/* Idle timeouts and caps. HAProxy's timeout client/server/tunnel: a
 * paired request may idle (no byte either way) only so long, whatever
 * state it is in; the caps bound what one source, one identity or all
 * users together can hold, and a refusal costs the refused alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/error.h"
#include "hub/hub_int.h"

#define BURST_MS 10000 /* one log line per cap and burst */

void hub_progress(struct hub_conn *c)
{
    uint64_t now = uv_now(c->hub->loop);
    c->last_progress = now;
    if (c->kind == C_DATA && c->peer != NULL)
        c->peer->last_progress = now;
}

int hub_burst_log(struct sl_hub *hub, enum hub_cap k, uint64_t *unlogged)
{
    struct hub_burst *b = &hub->burst[k];
    uint64_t now = uv_now(hub->loop);
    if (b->last_log != 0 && now - b->last_log < BURST_MS) {
        b->unlogged++;
        return 0;
    }
    *unlogged = b->unlogged;
    b->unlogged = 0;
    b->last_log = now ? now : 1;
    return 1;
}

void hub_caps_defaults(struct sl_hub *hub)
{
    const struct sl_hub_options *o = &hub->opts;
    hub->client_ms = o->client_timeout_ms ? o->client_timeout_ms : 60000;
    hub->server_ms = o->server_timeout_ms ? o->server_timeout_ms : 60000;
    hub->tunnel_ms = o->tunnel_timeout_ms ? o->tunnel_timeout_ms : 3600000;
    hub->max_user_conns = o->max_user_conns;
    if (hub->max_user_conns == 0) {
        /* As HAProxy derives maxconn: a user conn may take a data conn
         * too, and the listener, store and bridges need a few. */
        struct rlimit rl;
        uint64_t max = 10000;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
            && (rl.rlim_cur - 64) / 2 < max)
            max = rl.rlim_cur > 66 ? (rl.rlim_cur - 64) / 2 : 1;
        hub->max_user_conns = (uint32_t)max;
    }
    hub->max_conns_per_ip = o->max_conns_per_ip ? o->max_conns_per_ip : 256;
    hub->max_pairs = o->max_pairs ? o->max_pairs : 1024;
    hub->max_data_conns = o->max_data_conns ? o->max_data_conns
                                            : hub->max_pairs + HUB_POOL_MAX;
}

static unsigned src_bucket(const char *ip)
{
    uint32_t h = 2166136261u;
    for (const char *p = ip; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % HUB_SRC_BUCKETS;
}

static struct hub_src **src_find(struct sl_hub *hub, const char *ip)
{
    struct hub_src **pp = &hub->src[src_bucket(ip)];
    while (*pp != NULL && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Counts a new connection in the user caps, or marks it to be refused
 * once its head shows a user request (a bridge's connection is not a
 * user's: it goes on whatever these caps say). Returns 0 if c was closed
 * at once: too many refusals are in flight to read their heads. */
int hub_caps_admit(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    char key[sizeof(((struct hub_src *)0)->ip)];
    hub_source_key(c->peer_ip, key, sizeof(key)); /* IPv6 by /64 */
    struct hub_src **pp = src_find(hub, key);
    /* Heads in flight from one source: twice the user cap, as its
     * bridges' data connections count here until their heads are read. */
    if (hub->nfront >= hub->max_user_conns)
        c->refuse = 503;
    else if (*pp != NULL && (*pp)->n >= 2ull * hub->max_conns_per_ip)
        c->refuse = 429;
    if (c->refuse == 0 && *pp == NULL) {
        *pp = calloc(1, sizeof(**pp));
        if (*pp == NULL)
            c->refuse = 503;
        else
            snprintf((*pp)->ip, sizeof((*pp)->ip), "%s", key);
    }
    if (c->refuse == 0) {
        (*pp)->n++;
        hub->nfront++;
        c->front = 1;
        return 1;
    }
    if (hub->nrefusing >= HUB_REFUSING_MAX) {
        uint64_t more = 0;
        if (hub_burst_log(hub, c->refuse == 429 ? HUB_CAP_PER_IP
                                                : HUB_CAP_USERS, &more))
            sl_warn(hub->log, "hub conn %llu from %s: over the user caps with "
                    "%u refusals in flight, closing at once (%llu more "
                    "refused since the last line)", (unsigned long long)c->id,
                    c->peer_ip, hub->nrefusing, (unsigned long long)more);
        c->refuse = 0;
        hub_conn_close(c, SL_ELIMIT);
        return 0;
    }
    hub->nrefusing++;
    return 1;
}

/* Takes c out of the user caps (closing, or a bridge's connection). */
void hub_caps_release(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    if (c->data_counted) {
        c->data_counted = 0;
        if (c->alloc != NULL && c->alloc->ndata > 0)
            c->alloc->ndata--;
    }
    if (c->refuse) {
        c->refuse = 0;
        hub->nrefusing--;
    }
    if (!c->front)
        return;
    c->front = 0;
    hub->nfront--;
    char key[sizeof(((struct hub_src *)0)->ip)];
    hub_source_key(c->peer_ip, key, sizeof(key));
    struct hub_src **pp = src_find(hub, key);
    struct hub_src *s = *pp;
    if (s == NULL)
        return;
    if (c->user_counted) {
        c->user_counted = 0;
        s->nusers--;
    }
    if (--s->n == 0) {
        *pp = s->next;
        free(s);
    }
}

/* Counts c among its source's users the first time its head shows a user
 * request; 0 if that source already has max_conns_per_ip of them. */
static int user_slot(struct hub_conn *c)
{
    if (!c->front || c->user_counted)
        return 1;
    char key[sizeof(((struct hub_src *)0)->ip)];
    hub_source_key(c->peer_ip, key, sizeof(key));
    struct hub_src *s = *src_find(c->hub, key);
    if (s == NULL)
        return 1;
    if (s->nusers >= c->hub->max_conns_per_ip)
        return 0;
    s->nusers++;
    c->user_counted = 1;
    return 1;
}

static void reply_over_cap(struct hub_conn *c, int status)
{
    hub_conn_reply_close(c, status, NULL,
                         status == 429 ? "Too Many Requests"
                                       : "Service Unavailable", NULL);
}

/* Decides whether the user request whose head c just read may go on
 * (identity NULL: a Host the hub cannot route). Returns 0 if it was
 * answered 429 or 503 instead. */
int hub_caps_user_admitted(struct hub_conn *c, const char *identity)
{
    struct sl_hub *hub = c->hub;
    uint64_t more = 0;
    if (c->refuse == 0 && !user_slot(c)) {
        c->refuse = 429;
        hub->nrefusing++; /* as hub_caps_admit does: released on close */
    }
    if (c->refuse) {
        int status = c->refuse;
        if (hub_burst_log(hub, status == 429 ? HUB_CAP_PER_IP : HUB_CAP_USERS,
                          &more)) {
            struct sl_log_field f[] = {
                SL_LOG_STR("route", "hub"),
                SL_LOG_NUM("conn", c->id),
                SL_LOG_STR("kind", "user"),
                SL_LOG_STR("client", c->peer_ip),
                SL_LOG_STR("event", "refused"),
                SL_LOG_STR("reason", status == 429
                                         ? "connection limit per source"
                                         : "connection limit"),
            };
            if (status == 429)
                sl_log_event(hub->log, SL_LOG_WARN, f, 6,
                             "hub conn %llu from %s: over %u user "
                             "connections from %s, answering 429 (%llu "
                             "more refused since the last line)",
                             (unsigned long long)c->id, c->peer_ip,
                             hub->max_conns_per_ip, c->peer_ip,
                             (unsigned long long)more);
            else
                sl_log_event(hub->log, SL_LOG_WARN, f, 6,
                             "hub conn %llu from %s: over %u user "
                             "connections in all, answering 503 (%llu more "
                             "refused since the last line)",
                             (unsigned long long)c->id, c->peer_ip,
                             hub->max_user_conns, (unsigned long long)more);
        }
        reply_over_cap(c, status);
        return 0;
    }
    struct hub_alloc *a = identity ? hub_alloc_find(hub, identity) : NULL;
    if (a == NULL || (c->peer != NULL && c->alloc == a))
        return 1; /* a keep-alive pair goes on with its own data conn */
    uint32_t n = a->npairs;
    for (struct sl_link *l = a->waiting.next; l != &a->waiting; l = l->next)
        n++;
    if (n < hub->max_pairs)
        return 1;
    if (hub_burst_log(hub, HUB_CAP_PAIRS, &more))
        sl_warn(hub->log, "hub conn %llu from %s: over %u requests for %s, "
                "answering 503 (%llu more refused since the last line)",
                (unsigned long long)c->id, c->peer_ip, hub->max_pairs,
                a->identity, (unsigned long long)more);
    reply_over_cap(c, 503);
    return 0;
}

static void idle_check(struct hub_conn *c, uint64_t now)
{
    struct sl_hub *hub = c->hub;
    uint64_t limit;
    const char *doing;
    int status = 0;
    if (c->ustate == U_CLOSING) {
        /* An answer the peer does not read: shutdown waits for it. */
        if (c->ws_active || now - c->last_progress < hub->client_ms)
            return;
        hub_conn_close(c, UV_ETIMEDOUT);
        return;
    }
    if (c->kind != C_USER)
        return;
    switch (c->ustate) {
    case U_BODY:
        limit = hub->client_ms;
        doing = "reading the request body";
        status = 408;
        break;
    case U_WAIT:
        limit = hub->server_ms;
        doing = c->resp_started ? "relaying the response"
                                : "waiting for the response";
        status = 504;
        break;
    case U_OPAQUE:
        limit = hub->tunnel_ms;
        doing = "relaying after 101";
        break;
    default:
        return; /* the head and pairing timers watch the others */
    }
    if (now - c->last_progress < limit)
        return;
    if (c->resp_started)
        status = 0;
    sl_info(hub->log, "hub user %llu (%s) from %s: no progress for %llu ms "
            "while %s, %s", (unsigned long long)c->id,
            c->alloc ? c->alloc->identity : "-", c->peer_ip,
            (unsigned long long)limit, doing,
            status == 408   ? "answering 408"
            : status == 504 ? "answering 504"
                            : "closing");
    if (status == 0) {
        hub_conn_close(c, UV_ETIMEDOUT);
        return;
    }
    /* Drops c's data conn: the request ends on the hub's word. */
    hub_user_unpair(c, UV_ETIMEDOUT);
    if (status == 408)
        hub_conn_reply_close(c, 408, NULL, "Request Timeout", NULL);
    else
        hub_conn_reply_close(c, 504, NULL, "Proxy not connected", NULL);
}

void hub_caps_on_idle_sweep(uv_timer_t *t)
{
    struct sl_hub *hub = t->data;
    uint64_t now = uv_now(hub->loop);
    struct sl_link *l = hub->conns.next;
    while (l != &hub->conns) {
        struct sl_link *n = l->next;
        struct hub_conn *c = HUB_CONN_OF(l, all);
        /* A close frees nothing here (handles close first): n stays. */
        if (!c->closing)
            idle_check(c, now);
        l = n;
    }
}

/* An eighth of the shortest timeout, within [10 ms, 1 s]: a timeout
 * fires at most that late. */
uint64_t hub_caps_sweep_interval(const struct sl_hub *hub)
{
    uint64_t m = hub->client_ms;
    if (hub->server_ms < m)
        m = hub->server_ms;
    if (hub->tunnel_ms < m)
        m = hub->tunnel_ms;
    m /= 8;
    return m < 10 ? 10 : m > 1000 ? 1000 : m;
}
