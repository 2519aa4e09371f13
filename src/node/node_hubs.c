/* A bridge with several hubs (issue 16, docs/scale-out.md): hubs that
 * share one store can each serve any identity, so a bridge keeps its
 * connections to every one of them, and losing a hub loses nothing.
 *
 * A bridge's hub is a list of URLs (`--hub` repeated, or one URL whose
 * name resolves to several addresses). Each (URL, address) pair is a hub
 * link: a bridge of its own (struct sl_node_bridge with `link` set), not
 * listed, not saved, that dials that one address with the URL's name as
 * SNI and Host and otherwise behaves exactly as a bridge does (control
 * connection, pool or mux connections, its own back-off and error). The
 * bridge the user sees (the parent) then dials nothing itself: its state
 * is "connected" while any link is, its counters are the sum of its
 * links', and its identity and credentials are theirs.
 *
 * A bridge with one literal hub has no hub set at all; one with one name
 * looks it up before the first dial and, while that name has one
 * address, dials it itself as it always did. Names are looked up again
 * every minute (uv_getaddrinfo, on the thread pool): new addresses get a
 * link, vanished ones lose theirs, a failed lookup changes nothing.
 *
 * Credentials: the hubs share the store, so one identity serves on all.
 * A bridge without credentials lets one link at a time dial without any;
 * the first welcome gives them, and the other links dial with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/log.h"
#include "net/addr.h"
#include "node/node_int.h"

#define HUB_ADDRS_MAX 8      /* addresses kept per URL */
#define HUB_LINKS_MAX 16     /* links per bridge */
#define HUB_RESOLVE_MS 60000 /* names are looked up again this often */

struct sl_node_hublink {
    struct sl_node_bridge *self, *parent;
    struct sl_node_hublink *next; /* in hubs->links */
    size_t url;                   /* its URL in hubs->urls */
    struct sockaddr_storage sa;   /* the one address it dials */
    char addr[SL_ADDR_STRLEN];    /* sa, for people */
};

struct hub_lookup {
    uv_getaddrinfo_t req;
    struct sl_node_hubs *hubs;
    size_t url;
    int busy; /* its callback has not run yet */
};

struct sl_node_hubs {
    struct sl_node_bridge *b;
    size_t nurls;
    struct sl_node_url urls[SL_NODE_HUBS_MAX];
    /* each URL's addresses, as its last lookup that found any said */
    struct sockaddr_storage addrs[SL_NODE_HUBS_MAX][HUB_ADDRS_MAX];
    size_t naddrs[SL_NODE_HUBS_MAX];
    char why[SL_NODE_HUBS_MAX][96]; /* the last lookup's failure, or "" */
    struct hub_lookup lookups[SL_NODE_HUBS_MAX];
    int inflight;               /* lookups running */
    int refs;                   /* owner + timer + lookups */
    unsigned named : 1;         /* some URL is a name */
    unsigned looked_up : 1;     /* a round of lookups has ended */
    unsigned multi : 1;         /* the links carry the connections */
    unsigned closing : 1;
    uv_timer_t timer;
    struct sl_node_hublink *links;
    size_t nlinks;
    struct sl_node_hublink *anon; /* the link dialling without credentials */
};

static const char *bname(const struct sl_node_bridge *b)
{
    return b->rec.identity[0] != '\0' ? b->rec.identity : b->rec.upstream;
}

static void hubs_unref(struct sl_node_hubs *h)
{
    if (--h->refs > 0)
        return;
    struct sl_node_bridge *b = h->b;
    free(h);
    sl_node_bridge_unref(b);
}

static void on_timer_close(uv_handle_t *t)
{
    hubs_unref(t->data);
}

/* ---------------------------------------------------------------- links */

static void on_link_timer_close(uv_handle_t *t)
{
    sl_node_bridge_unref(t->data);
}

static struct sl_node_hublink *link_new(struct sl_node_hubs *h, size_t url,
                                        const struct sockaddr *sa)
{
    struct sl_node_bridge *p = h->b;
    struct sl_node *node = p->node;
    struct sl_node_bridge *b = calloc(1, sizeof(*b));
    struct sl_node_hublink *l = calloc(1, sizeof(*l));
    if (b == NULL || l == NULL) {
        free(b);
        free(l);
        return NULL;
    }
    l->self = b;
    l->parent = p;
    l->url = url;
    memcpy(&l->sa, sa, sl_addr_len(sa));
    sl_addr_format_ip(sa, l->addr, sizeof(l->addr));
    b->node = node;
    b->link = l;
    b->rec = p->rec;
    char one[SL_NODE_URL_MAX];
    sl_node_url_format(&h->urls[url], one, sizeof(one));
    /* Its log lines and errors name the address; a literal URL is one. */
    if (strcasecmp(h->urls[url].host, l->addr) == 0)
        snprintf(b->rec.hub, sizeof(b->rec.hub), "%s", one);
    else
        snprintf(b->rec.hub, sizeof(b->rec.hub), "%.*s (%s)",
                 (int)(sizeof(b->rec.hub) - SL_ADDR_STRLEN - 8), one,
                 l->addr);
    b->up = p->up;
    b->hub = h->urls[url];
    sl_node_url_host_header(&b->hub, b->hub_host, sizeof(b->hub_host));
    memcpy(b->instance, p->instance, sizeof(b->instance));
    b->inspect = p->inspect; /* the parent's: freed with it */
    b->state = p->state == BS_DISCONNECTED ? BS_DISCONNECTED : BS_CONNECTING;
    b->no_raw = node->framed;
    uv_timer_init(node->ctx->loop, &b->retry_timer);
    uv_timer_init(node->ctx->loop, &b->pool_timer);
    b->retry_timer.data = b;
    b->pool_timer.data = b;
    b->refs = 3; /* itself and two timers */
    p->refs++;   /* released when b goes (sl_node_hubs_link_gone) */
    node->refs++;
    l->next = h->links;
    h->links = l;
    h->nlinks++;
    return l;
}

/* Closes link l and everything it has; its memory goes once its
 * connections are closed. */
static void link_drop(struct sl_node_hubs *h, struct sl_node_hublink *l)
{
    struct sl_node_bridge *b = l->self;
    for (struct sl_node_hublink **pp = &h->links; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            h->nlinks--;
            break;
        }
    }
    if (h->anon == l)
        h->anon = NULL;
    b->removed = 1;
    for (struct conn *c = b->conns, *next; c != NULL; c = next) {
        next = c->next;
        sl_node_conn_close(c, 0);
    }
    uv_close((uv_handle_t *)&b->retry_timer, on_link_timer_close);
    uv_close((uv_handle_t *)&b->pool_timer, on_link_timer_close);
    sl_node_bridge_unref(b);
}

void sl_node_hubs_link_gone(struct sl_node_bridge *b)
{
    struct sl_node_hublink *l = b->link;
    struct sl_node_bridge *p = l->parent;
    /* What its last connections moved after the last tick counts too. */
    p->gw_down += b->gw_down;
    p->gw_up += b->gw_up;
    p->up_down += b->up_down;
    p->up_up += b->up_up;
    b->link = NULL;
    b->inspect = NULL; /* the parent's */
    free(l);
    sl_node_bridge_unref(p);
}

/* The parent's state and error, from its links'. */
static void parent_state(struct sl_node_hubs *h)
{
    struct sl_node_bridge *p = h->b;
    if (!h->multi || p->state == BS_DISCONNECTED)
        return;
    const struct sl_node_bridge *up = NULL, *failed = NULL, *upstream = NULL;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next) {
        const struct sl_node_bridge *b = l->self;
        if (b->state == BS_CONNECTED && up == NULL)
            up = b;
        if (b->error[0] != '\0' && failed == NULL && b->state != BS_CONNECTED)
            failed = b;
        if (strncmp(b->error, "upstream", 8) == 0 && upstream == NULL)
            upstream = b;
    }
    p->state = up != NULL ? BS_CONNECTED : BS_CONNECTING;
    /* A problem of the upstream is the bridge's wherever it showed; a
     * hub's is only while no hub serves (the list of hubs says the rest). */
    const struct sl_node_bridge *e = upstream != NULL ? upstream
                                     : up == NULL     ? failed
                                                      : NULL;
    snprintf(p->error, sizeof(p->error), "%s", e != NULL ? e->error : "");
}

/* Dials link l unless it waits: its turn without credentials, or a parent
 * disconnected by the user. */
static void link_kick(struct sl_node_hubs *h, struct sl_node_hublink *l)
{
    struct sl_node_bridge *b = l->self;
    if (h->b->state == BS_DISCONNECTED)
        return;
    if (b->state == BS_DISCONNECTED) {
        b->state = BS_CONNECTING;
        b->attempt = 0;
    }
    if (b->ctl == NULL && !uv_is_active((uv_handle_t *)&b->retry_timer))
        sl_node_bridge_dial(b);
}

static int has_link(const struct sl_node_hubs *h, size_t url,
                    const struct sockaddr *sa)
{
    for (const struct sl_node_hublink *l = h->links; l != NULL; l = l->next)
        if (l->url == url && sl_addr_equal((const struct sockaddr *)&l->sa,
                                           sa))
            return 1;
    return 0;
}

static int has_addr(const struct sl_node_hubs *h, size_t url,
                    const struct sockaddr *sa)
{
    for (size_t i = 0; i < h->naddrs[url]; i++)
        if (sl_addr_equal((const struct sockaddr *)&h->addrs[url][i], sa))
            return 1;
    return 0;
}

/* The parent's own connections go: its links carry them from now on. */
static void go_multi(struct sl_node_hubs *h)
{
    struct sl_node_bridge *p = h->b;
    h->multi = 1;
    uv_timer_stop(&p->retry_timer);
    uv_timer_stop(&p->pool_timer);
    for (struct conn *c = p->conns, *next; c != NULL; c = next) {
        next = c->next;
        sl_node_conn_close(c, 0); /* ctl_lost sees multi: no retry */
    }
    p->ctl = NULL;
}

/* After a round of lookups: a link for each address, none for the
 * vanished ones. */
static void reconcile(struct sl_node_hubs *h)
{
    struct sl_node_bridge *p = h->b;
    size_t total = 0;
    for (size_t u = 0; u < h->nurls; u++)
        total += h->naddrs[u];
    if (!h->multi) {
        if (h->nurls == 1 && total <= 1)
            return; /* one hub: the bridge dials it itself */
        go_multi(h);
    }
    for (struct sl_node_hublink *l = h->links, *next; l != NULL; l = next) {
        next = l->next;
        if (h->naddrs[l->url] == 0 || /* never found: keep what we have */
            has_addr(h, l->url, (const struct sockaddr *)&l->sa))
            continue;
        sl_info(p->node->log, "bridge %s: hub %s is gone from its name's "
                "addresses: its connections close", bname(p), l->self->rec.hub);
        link_drop(h, l);
    }
    int added = 0;
    for (size_t u = 0; u < h->nurls; u++) {
        for (size_t i = 0; i < h->naddrs[u]; i++) {
            const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[u][i];
            if (has_link(h, u, sa))
                continue;
            if (h->nlinks >= HUB_LINKS_MAX) {
                sl_warn(p->node->log, "bridge %s: more than %d hub "
                        "addresses: the others are left out", bname(p),
                        HUB_LINKS_MAX);
                goto dial;
            }
            struct sl_node_hublink *l = link_new(h, u, sa);
            if (l == NULL) {
                sl_error(p->node->log, "bridge %s: hub links: out of memory",
                         bname(p));
                goto dial;
            }
            sl_info(p->node->log, "bridge %s: hub %s added", bname(p),
                    l->self->rec.hub);
            added++;
        }
    }
dial:
    (void)added;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next)
        link_kick(h, l);
    parent_state(h);
}

/* -------------------------------------------------------------- lookups */

static void round_start(struct sl_node_hubs *h);

static void on_round_timer(uv_timer_t *t)
{
    round_start(t->data);
}

static void round_done(struct sl_node_hubs *h)
{
    int first = !h->looked_up;
    h->looked_up = 1;
    reconcile(h);
    if (h->named && !h->closing) {
        uint64_t ms = h->b->node->hub_resolve_ms ? h->b->node->hub_resolve_ms
                                                 : HUB_RESOLVE_MS;
        uv_timer_start(&h->timer, on_round_timer, ms, 0);
    }
    /* One hub after all: the bridge dials it as it always did. */
    if (first && !h->multi)
        sl_node_bridge_dial(h->b);
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct hub_lookup *q = req->data;
    struct sl_node_hubs *h = q->hubs;
    size_t u = q->url;
    q->busy = 0;
    h->inflight--;
    if (h->closing)
        goto out;
    size_t n = 0;
    struct sockaddr_storage found[HUB_ADDRS_MAX];
    for (struct addrinfo *a = status == 0 ? res : NULL;
         a != NULL && n < HUB_ADDRS_MAX; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = sl_addr_equal((struct sockaddr *)&found[i], a->ai_addr);
        if (!dup)
            memcpy(&found[n++], a->ai_addr, sl_addr_len(a->ai_addr));
    }
    if (n > 0) {
        memcpy(h->addrs[u], found, n * sizeof(found[0]));
        h->naddrs[u] = n;
        h->why[u][0] = '\0';
    } else {
        /* A lookup that fails drops no hub: DNS has bad minutes. */
        char why[sizeof(h->why[u])];
        snprintf(why, sizeof(why), "cannot resolve %.48s: %.24s", h->urls[u].host,
                 status < 0 ? sl_strerror(status) : "no address");
        memcpy(h->why[u], why, sizeof(why));
        sl_debug(h->b->node->log, "bridge %s: hub %s", bname(h->b),
                 h->why[u]);
    }
    if (h->inflight == 0)
        round_done(h);
out:
    if (res != NULL)
        uv_freeaddrinfo(res);
    hubs_unref(h);
}

static void round_start(struct sl_node_hubs *h)
{
    if (h->inflight > 0 || h->closing)
        return;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Counted before any starts: a lookup cannot end the round early. */
    h->inflight = 1;
    for (size_t u = 0; u < h->nurls; u++) {
        struct sockaddr_storage sa;
        if (sl_addr_parse_ip(h->urls[u].host, h->urls[u].port, &sa) == 0) {
            h->addrs[u][0] = sa;
            h->naddrs[u] = 1;
            continue;
        }
        struct hub_lookup *q = &h->lookups[u];
        char service[8];
        snprintf(service, sizeof(service), "%u", (unsigned)h->urls[u].port);
        q->hubs = h;
        q->url = u;
        q->req.data = q;
        int rc = uv_getaddrinfo(h->b->node->ctx->loop, &q->req, on_lookup,
                                h->urls[u].host, service, &hints);
        if (rc != 0) {
            char why[sizeof(h->why[u])];
            snprintf(why, sizeof(why), "cannot resolve %.48s: %.24s",
                     h->urls[u].host, sl_strerror(rc));
            memcpy(h->why[u], why, sizeof(why));
            continue;
        }
        q->busy = 1;
        h->inflight++;
        h->refs++;
    }
    if (--h->inflight == 0)
        round_done(h);
}

/* ----------------------------------------------------------------- hooks */

int sl_node_hubs_new(struct sl_node_bridge *b, const struct sl_node_url *urls,
                     size_t n)
{
    struct sockaddr_storage sa;
    if (n == 1 && sl_addr_parse_ip(urls[0].host, urls[0].port, &sa) == 0)
        return 0; /* one literal hub: as it always was */
    struct sl_node_hubs *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return UV_ENOMEM;
    h->b = b;
    h->nurls = n;
    memcpy(h->urls, urls, n * sizeof(urls[0]));
    for (size_t u = 0; u < n; u++)
        if (sl_addr_parse_ip(urls[u].host, urls[u].port, &sa) != 0)
            h->named = 1;
    uv_timer_init(b->node->ctx->loop, &h->timer);
    h->timer.data = h;
    h->refs = 2; /* the bridge and the timer */
    b->refs++;
    b->hubs = h;
    return 0;
}

void sl_node_hubs_free(struct sl_node_bridge *b)
{
    struct sl_node_hubs *h = b->hubs;
    if (h == NULL)
        return;
    b->hubs = NULL;
    h->closing = 1;
    for (size_t u = 0; u < h->nurls; u++)
        if (h->lookups[u].busy)
            uv_cancel((uv_req_t *)&h->lookups[u].req); /* on_lookup runs */
    while (h->links != NULL)
        link_drop(h, h->links);
    uv_close((uv_handle_t *)&h->timer, on_timer_close);
    hubs_unref(h);
}

int sl_node_hubs_dial(struct sl_node_bridge *b)
{
    if (b->link != NULL) {
        struct sl_node_hubs *h = b->link->parent->hubs;
        if (h == NULL || b->rec.username[0] != '\0')
            return 0;
        /* No credentials yet: one link asks for them at a time, so the
         * bridge gets one identity, not one per hub. */
        if (h->anon == NULL)
            h->anon = b->link;
        return h->anon != b->link;
    }
    struct sl_node_hubs *h = b->hubs;
    if (h == NULL)
        return 0;
    if (!h->looked_up) {
        b->state = BS_CONNECTING;
        round_start(h); /* round_done dials */
        return 1;
    }
    if (!h->multi)
        return 0;
    b->state = BS_CONNECTING;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next)
        link_kick(h, l);
    parent_state(h);
    return 1;
}

int sl_node_hubs_carried(const struct sl_node_bridge *b)
{
    return b->hubs != NULL && b->hubs->multi;
}

struct sl_node_bridge *sl_node_hubs_link_welcomed(struct sl_node_bridge *b)
{
    struct sl_node_bridge *p = b->link->parent;
    struct sl_node_hubs *h = p->hubs;
    int learned = p->rec.username[0] == '\0' && b->rec.username[0] != '\0';
    snprintf(p->rec.identity, sizeof(p->rec.identity), "%s",
             b->rec.identity);
    snprintf(p->rec.url, sizeof(p->rec.url), "%s", b->rec.url);
    if (learned) {
        memcpy(p->rec.username, b->rec.username, sizeof(p->rec.username));
        memcpy(p->rec.password, b->rec.password, sizeof(p->rec.password));
    }
    p->rec.connected_at = b->rec.connected_at;
    p->rec.last_seen = b->rec.last_seen;
    p->welcomed_at = b->welcomed_at;
    if (h == NULL)
        return p;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next) {
        struct sl_node_bridge *s = l->self;
        memcpy(s->rec.identity, p->rec.identity, sizeof(s->rec.identity));
        memcpy(s->rec.url, p->rec.url, sizeof(s->rec.url));
        memcpy(s->rec.username, p->rec.username, sizeof(s->rec.username));
        memcpy(s->rec.password, p->rec.password, sizeof(s->rec.password));
    }
    parent_state(h);
    if (learned) {
        /* The others dial with what this hub gave. */
        h->anon = NULL;
        for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next)
            if (l->self != b)
                link_kick(h, l);
    }
    return p;
}

void sl_node_hubs_link_lost(struct sl_node_bridge *b, int welcomed,
                            int reason)
{
    struct sl_node_bridge *p = b->link->parent;
    struct sl_node_hubs *h = p->hubs;
    if (h == NULL)
        return;
    if (welcomed && b->error[0] == '\0')
        sl_node_bridge_set_error(b, "connection lost (%s)",
                                 reason != 0 ? sl_strerror(reason)
                                             : "closed by the hub");
    if (b->state == BS_CONNECTING && !welcomed && h->anon == b->link &&
        b->rec.username[0] == '\0' && h->nlinks > 1) {
        /* This hub gave no identity: the next one may. */
        struct sl_node_hublink *next = b->link->next != NULL ? b->link->next
                                                             : h->links;
        h->anon = next;
        link_kick(h, next);
    }
    parent_state(h);
}

void sl_node_hubs_disconnect(struct sl_node_bridge *b)
{
    struct sl_node_hubs *h = b->hubs;
    if (h == NULL)
        return;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next) {
        struct sl_node_bridge *s = l->self;
        s->state = BS_DISCONNECTED;
        uv_timer_stop(&s->retry_timer);
        uv_timer_stop(&s->pool_timer);
        for (struct conn *c = s->conns, *next; c != NULL; c = next) {
            next = c->next;
            sl_node_conn_close(c, 0);
        }
    }
}

void sl_node_hubs_sync(struct sl_node_bridge *b, int regrant)
{
    struct sl_node_hubs *h = b->hubs;
    if (h == NULL)
        return;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next) {
        struct sl_node_bridge *s = l->self;
        memcpy(s->rec.password, b->rec.password, sizeof(s->rec.password));
        memcpy(s->rec.grant, b->rec.grant, sizeof(s->rec.grant));
        if (regrant && s->ctl != NULL) {
            /* The hub reads a grant when the control connection opens. */
            sl_node_conn_close(s->ctl, 0);
            s->attempt = 0;
            uv_timer_stop(&s->retry_timer);
            sl_node_bridge_dial(s);
        }
    }
}

void sl_node_hubs_tick(struct sl_node_bridge *b)
{
    struct sl_node_hubs *h = b->hubs;
    if (h == NULL)
        return;
    for (struct sl_node_hublink *l = h->links; l != NULL; l = l->next) {
        struct sl_node_bridge *s = l->self;
        b->gw_down += s->gw_down;
        b->gw_up += s->gw_up;
        b->up_down += s->up_down;
        b->up_up += s->up_up;
        s->gw_down = s->gw_up = s->up_down = s->up_up = 0;
        if (s->rec.last_seen > b->rec.last_seen)
            b->rec.last_seen = s->rec.last_seen;
    }
    parent_state(h);
}

const struct sockaddr *sl_node_hubs_pin(const struct sl_node_bridge *b)
{
    return b->link != NULL ? (const struct sockaddr *)&b->link->sa : NULL;
}

const char *sl_node_hubs_addr(const struct sl_node_bridge *b)
{
    return b->link != NULL ? b->link->addr : NULL;
}

/* connected, connecting, failed (not connected, and the last try said
 * why), or disconnected (by the user). */
static const char *link_state(const struct sl_node_bridge *p,
                              const struct sl_node_bridge *b)
{
    if (p->state == BS_DISCONNECTED || b->state == BS_DISCONNECTED)
        return "disconnected";
    if (b->state == BS_CONNECTED)
        return "connected";
    return b->error[0] != '\0' ? "failed" : "connecting";
}

static int append(json_t *arr, const char *hub, const char *addr,
                  const char *state, const char *error, int64_t connected_at)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "hub", hub, "address",
                          addr, "state", state, "error", error,
                          "connected_at", (json_int_t)connected_at);
    return o == NULL || json_array_append_new(arr, o) != 0 ? -1 : 0;
}

json_t *sl_node_hubs_json(const struct sl_node_bridge *b)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    const struct sl_node_hubs *h = b->hubs;
    char hub[SL_NODE_URL_MAX], addr[SL_NODE_HOST_MAX];
    if (h == NULL || !h->multi) {
        /* One hub: the bridge's own connection. */
        snprintf(addr, sizeof(addr), "%s", b->hub.host);
        if (h != NULL && h->naddrs[0] == 1)
            sl_addr_format_ip((const struct sockaddr *)&h->addrs[0][0], addr,
                              sizeof(addr));
        if (append(arr, b->rec.hub, addr, link_state(b, b), b->error,
                   b->rec.connected_at) != 0)
            goto fail;
        return arr;
    }
    /* In the order of the URLs, then of the addresses. */
    for (size_t u = 0; u < h->nurls; u++) {
        sl_node_url_format(&h->urls[u], hub, sizeof(hub));
        int any = 0;
        for (size_t i = 0; i < h->naddrs[u]; i++) {
            const struct sockaddr *sa =
                (const struct sockaddr *)&h->addrs[u][i];
            for (const struct sl_node_hublink *l = h->links; l != NULL;
                 l = l->next) {
                if (l->url != u || !sl_addr_equal(
                                       (const struct sockaddr *)&l->sa, sa))
                    continue;
                any = 1;
                if (append(arr, hub, l->addr, link_state(b, l->self),
                           l->self->error, l->self->rec.connected_at) != 0)
                    goto fail;
            }
        }
        if (!any && append(arr, hub, "", "failed", h->why[u], 0) != 0)
            goto fail;
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

void sl_node_set_hub_resolve_ms(struct sl_node *node, uint64_t ms)
{
    node->hub_resolve_ms = ms;
}
