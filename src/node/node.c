/* The node and its bridges: start/stop, the bridge list and its state
 * file, reconnection with back-off, the pool's size, counters. The
 * connections themselves are node_conn.c; the local API is node_api.c. */
#include "node/node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api/server.h"
#include "core/error.h"
#include "core/log.h"
#include "node/node_agent.h"
#include "node/node_dash.h"
#include "node/node_inspect.h"
#include "node/node_int.h"
#include "node/node_replay.h"
#include "tls/tls_client.h"
#include "tunnel/control.h"
#include "tunnel/creds.h"

static void node_unref(struct sl_node *node);

/* --------------------------------------------------------------- state */

void sl_node_save(struct sl_node *node)
{
    if (node->stopping)
        return; /* the final save was made when stopping began */
    struct sl_node_bridge_rec *recs = NULL;
    if (node->nbridges > 0) {
        recs = calloc(node->nbridges, sizeof(*recs));
        if (recs == NULL) {
            sl_error(node->log, "node: saving bridges: out of memory");
            return;
        }
    }
    size_t n = 0;
    /* The list is newest first; the file is oldest first. */
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next)
        recs[node->nbridges - 1 - n++] = b->rec;
    char *text = sl_node_state_encode(recs, n);
    /* recs held passwords: do not leave them in freed memory */
    if (recs != NULL) {
        memset(recs, 0, node->nbridges * sizeof(*recs));
        free(recs);
    }
    if (text == NULL) {
        sl_error(node->log, "node: saving bridges: out of memory");
        return;
    }
    sl_node_saver_save(&node->saver, text);
}

void sl_node_bridge_set_error(struct sl_node_bridge *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof(b->error), fmt, ap);
    va_end(ap);
}

/* -------------------------------------------------------------- bridges */

static const char *bname(const struct sl_node_bridge *b)
{
    return b->rec.identity[0] != '\0' ? b->rec.identity : b->rec.upstream;
}

void sl_node_bridge_unref(struct sl_node_bridge *b)
{
    if (--b->refs > 0)
        return;
    struct sl_node *node = b->node;
    if (b->link != NULL)
        sl_node_hubs_link_gone(b); /* a hub link (node_hubs.c) */
    memset(&b->rec, 0, sizeof(b->rec)); /* credentials */
    sl_inspect_free(b->inspect);
    free(b);
    node_unref(node);
}

static void on_bridge_timer_close(uv_handle_t *h)
{
    sl_node_bridge_unref(h->data);
}

static int can_dial(const struct sl_node_bridge *b)
{
    return !b->removed && !b->node->stopping && b->state != BS_DISCONNECTED;
}

static void dial_ctl(struct sl_node_bridge *b)
{
    if (b->ctl != NULL || !can_dial(b) || sl_node_hubs_dial(b))
        return;
    b->state = BS_CONNECTING;
    sl_node_conn_ctl(b);
}

void sl_node_bridge_dial(struct sl_node_bridge *b)
{
    dial_ctl(b);
}

static void on_retry(uv_timer_t *t)
{
    dial_ctl(t->data);
}

void sl_node_bridge_ctl_lost(struct sl_node_bridge *b, int welcomed,
                             int reason)
{
    if (!can_dial(b) || sl_node_hubs_carried(b))
        return;
    b->state = BS_CONNECTING;
    if (welcomed) {
        b->rec.last_seen = sl_node_now_ms();
        /* Only a connection that lasted resets the back-off: a hub that
         * welcomes and then drops us at once (a limit, an error) must not
         * be re-dialled every second forever. */
        if (uv_now(b->node->ctx->loop) - b->welcomed_at >= 10000)
            b->attempt = 0;
    }
    uint64_t delay = sl_node_backoff_ms(b->attempt, sl_node_backoff_jitter());
    if (b->attempt < 64)
        b->attempt++;
    /* Say why: "unreachable" for a 401 sends the operator to the wrong
     * place. The bridge's error may be an upstream's, which is not. */
    const char *why = b->error[0] != '\0' &&
                              strncmp(b->error, "upstream", 8) != 0
                          ? b->error
                      : reason != 0 ? sl_strerror(reason)
                      : welcomed    ? "closed"
                                    : "unreachable";
    struct sl_log_field f[] = {
        SL_LOG_STR("route", "node"),
        SL_LOG_STR("kind", "control"),
        SL_LOG_STR("identity", b->rec.identity[0] ? b->rec.identity : NULL),
        SL_LOG_STR("target", b->rec.hub),
        SL_LOG_STR("event", welcomed ? "closed" : "refused"),
        SL_LOG_STR("reason", why),
    };
    if (welcomed)
        sl_log_event(b->node->log, SL_LOG_INFO, f, 6,
                     "bridge %s: connection to hub %s lost (%s); retrying "
                     "in %llu ms", bname(b), b->rec.hub, why,
                     (unsigned long long)delay);
    else
        sl_log_event(b->node->log, SL_LOG_INFO, f, 6,
                     "bridge %s: hub %s: %s; retrying in %llu ms", bname(b),
                     b->rec.hub, why, (unsigned long long)delay);
    uv_timer_start(&b->retry_timer, on_retry, delay, 0);
    if (b->link != NULL)
        sl_node_hubs_link_lost(b, welcomed, reason);
}

static void announce_saved(void *arg);

void sl_node_bridge_welcomed(struct sl_node_bridge *b, const char *identity,
                             const char *url, const char *username,
                             const char *password)
{
    struct sl_node *node = b->node;
    int fresh = username[0] != '\0' && password[0] != '\0';
    if (fresh) {
        snprintf(b->rec.username, sizeof(b->rec.username), "%s", username);
        snprintf(b->rec.password, sizeof(b->rec.password), "%s", password);
    }
    snprintf(b->rec.identity, sizeof(b->rec.identity), "%s", identity);
    snprintf(b->rec.url, sizeof(b->rec.url), "%s", url);
    b->state = BS_CONNECTED;
    b->welcomed_at = uv_now(node->ctx->loop);
    b->pool_failures = 0;
    b->pool_refused = 0;
    b->error[0] = '\0';
    b->rec.connected_at = b->rec.last_seen = sl_node_now_ms();
    sl_log_event(node->log, SL_LOG_INFO,
                 SL_LOG_FIELDS(SL_LOG_STR("route", "node"),
                               SL_LOG_STR("kind", "control"),
                               SL_LOG_STR("identity", identity),
                               SL_LOG_STR("target", b->rec.upstream),
                               SL_LOG_STR("hub", b->rec.hub),
                               SL_LOG_STR("url", url),
                               SL_LOG_STR("event", "connected")),
                 "bridge %s: connected to hub %s%s; public URL %s -> %s",
                 identity, b->rec.hub, fresh ? " (new identity)" : "", url,
                 b->rec.upstream);
    /* A hub link's bridge takes what it was given (node_hubs.c). */
    struct sl_node_bridge *p = b->link != NULL ? sl_node_hubs_link_welcomed(b)
                                               : b;
    sl_node_save(node);
    if (!p->announced) {
        /* The line tells scripts the identity is the bridge's: said once
         * bridges.json holds it, so a node killed right after it comes
         * back with the same identity. */
        p->announced = 1;
        p->announce_owed = 1;
        sl_node_saver_flush(&node->saver, announce_saved, node);
    }
    sl_node_bridge_fill_pool(b);
}

/* The state file is written: the bridge lines owed are printed. */
static void announce_saved(void *arg)
{
    struct sl_node *node = arg;
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next) {
        if (!b->announce_owed)
            continue;
        b->announce_owed = 0;
        printf("bridge %s %s -> %s\n", b->rec.identity, b->rec.url,
               b->rec.upstream);
    }
    fflush(stdout);
}

void sl_node_bridge_fill_pool(struct sl_node_bridge *b)
{
    struct sl_node *node = b->node;
    if (b->state != BS_CONNECTED || b->ctl == NULL || !can_dial(b) ||
        b->rec.identity[0] == '\0' || b->rec.username[0] == '\0' ||
        strcmp(b->up.scheme, "udp") == 0)
        return; /* (UDP rides on the one connection the hub asks for) */
    /* Protocol v2: user connections ride as streams on the mux
     * connections; the pool is the fallback while none runs or is being
     * dialled (meanwhile a user is served through open). */
    sl_node_mux_fill(b);
    if (b->mux_live > 0 || b->mux_dialling > 0)
        return;
    /* Bounded: a connection that fails at once must not loop here. */
    for (int i = 0; i < node->pool_size && b->pool_idle < node->pool_size;
         i++)
        sl_node_conn_data(b, NULL);
}

static void on_pool_timer(uv_timer_t *t)
{
    sl_node_bridge_fill_pool(t->data);
}

void sl_node_bridge_fill_pool_later(struct sl_node_bridge *b)
{
    /* The reconnect back-off while pool connections keep failing (a hub
     * refusing them with 429 after the traffic limit, say): 1-2 s, then
     * doubling to 30-60 s, so a refusing hub sees a few dials a minute. */
    unsigned f = b->pool_failures > 0 ? b->pool_failures - 1 : 0;
    uint64_t delay = sl_node_backoff_ms(f, sl_node_backoff_jitter());
    if (can_dial(b) && !uv_is_active((uv_handle_t *)&b->pool_timer))
        uv_timer_start(&b->pool_timer, on_pool_timer, delay, 0);
}

static void close_conns(struct sl_node_bridge *b)
{
    /* conn_close never frees at once (the conn's timer closes through the
     * loop), so walking the list while closing is safe. */
    for (struct conn *c = b->conns, *next; c != NULL; c = next) {
        next = c->next;
        sl_node_conn_close(c, 0);
    }
}

static struct sl_node_bridge *bridge_new(struct sl_node *node,
                                         const struct sl_node_bridge_rec *rec,
                                         char *err, size_t errcap)
{
    struct sl_node_url hubs[SL_NODE_HUBS_MAX];
    size_t nhubs = 0;
    struct sl_node_bridge *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    b->rec = *rec;
    /* With several hubs, the first names the bridge's own connection
     * while they resolve to one address (node_hubs.c). */
    if (sl_node_url_parse_upstream(rec->upstream, &b->up, err, errcap) != 0 ||
        sl_node_url_parse_hubs(rec->hub, hubs, &nhubs, err, errcap) != 0 ||
        sl_node_url_host_header(&hubs[0], b->hub_host, sizeof(b->hub_host))) {
        free(b);
        return NULL;
    }
    b->hub = hubs[0];
    if (sl_uuid4_new(b->instance) != 0) {
        snprintf(err, errcap, "no random numbers");
        free(b);
        return NULL;
    }
    b->node = node;
    if (sl_node_hubs_new(b, hubs, nhubs) != 0) {
        snprintf(err, errcap, "out of memory");
        free(b);
        return NULL;
    }
    /* Only HTTP is parsed; NULL (no memory) just means not recorded. */
    if (node->inspect && strcmp(b->up.scheme, "http") == 0)
        b->inspect = sl_inspect_new(node->inspect_keep);
    b->state = rec->disconnected ? BS_DISCONNECTED : BS_CONNECTING;
    b->no_raw = node->framed;
    uv_timer_init(node->ctx->loop, &b->retry_timer);
    uv_timer_init(node->ctx->loop, &b->pool_timer);
    b->retry_timer.data = b;
    b->pool_timer.data = b;
    b->refs += 3; /* itself and two timers (and its hub set's one) */
    b->next = node->bridges;
    if (node->bridges != NULL)
        node->bridges->prev = b;
    node->bridges = b;
    node->nbridges++;
    node->refs++;
    return b;
}

/* Unlinks b from the node and closes everything it has. */
static void bridge_teardown(struct sl_node_bridge *b)
{
    struct sl_node *node = b->node;
    if (b->removed)
        return;
    b->removed = 1;
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        node->bridges = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    node->nbridges--;
    sl_node_hubs_free(b);
    close_conns(b);
    sl_node_replays_cancel(b);
    uv_close((uv_handle_t *)&b->retry_timer, on_bridge_timer_close);
    uv_close((uv_handle_t *)&b->pool_timer, on_bridge_timer_close);
    sl_node_bridge_unref(b);
}

struct sl_node_bridge *sl_node_bridge_find(struct sl_node *node,
                                           const char *identity)
{
    if (identity == NULL || identity[0] == '\0')
        return NULL;
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next)
        if (strcmp(b->rec.identity, identity) == 0)
            return b;
    return NULL;
}

/* A printable username without ':' (Basic cannot carry one). */
static int username_ok(const char *u)
{
    if (u[0] == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == ':')
            return 0;
    return 1;
}

/* Copies spec's optional secrets into rec. Returns 0 or SL_EPARSE. */
static int spec_secrets(const struct sl_node_bridge_spec *spec,
                        struct sl_node_bridge_rec *rec, char *err,
                        size_t errcap)
{
    const char *user = spec->username ? spec->username : "";
    const char *pass = spec->password ? spec->password : "";
    if (spec->token != NULL && strlen(spec->token) >= sizeof(rec->token)) {
        snprintf(err, errcap, "token is too long");
        return SL_EPARSE;
    }
    if ((user[0] == '\0') != (pass[0] == '\0')) {
        snprintf(err, errcap, "username and password go together: give "
                 "both (from sluice proxy create) or neither");
        return SL_EPARSE;
    }
    if (user[0] != '\0' &&
        (!username_ok(user) || strlen(user) >= SL_BASIC_USER_MAX ||
         strlen(user) >= sizeof(rec->username))) {
        snprintf(err, errcap, "username '%s' is not valid (printable, no "
                 "':' or blanks, under %d characters)", user,
                 SL_BASIC_USER_MAX);
        return SL_EPARSE;
    }
    if (strlen(pass) >= SL_BASIC_PASS_MAX ||
        strlen(pass) >= sizeof(rec->password)) {
        snprintf(err, errcap, "password is too long (under %d characters)",
                 SL_BASIC_PASS_MAX);
        return SL_EPARSE;
    }
    if (spec->grant != NULL && strlen(spec->grant) >= sizeof(rec->grant)) {
        snprintf(err, errcap, "grant is too long");
        return SL_EPARSE;
    }
    snprintf(rec->token, sizeof(rec->token), "%s",
             spec->token ? spec->token : "");
    snprintf(rec->grant, sizeof(rec->grant), "%s",
             spec->grant ? spec->grant : "");
    snprintf(rec->username, sizeof(rec->username), "%s", user);
    snprintf(rec->password, sizeof(rec->password), "%s", pass);
    return 0;
}

int sl_node_bridge_add(struct sl_node *node,
                       const struct sl_node_bridge_spec *spec,
                       struct sl_node_bridge **out, char *err, size_t errcap)
{
    struct sl_node_url up, hu[SL_NODE_HUBS_MAX];
    size_t nhu;
    struct sl_node_bridge_rec rec;
    const char *hub = spec->hub;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (hub == NULL || hub[0] == '\0')
        hub = node->default_hub;
    if (spec->upstream == NULL) {
        snprintf(err, errcap, "no upstream");
        return SL_EPARSE;
    }
    if (sl_node_url_parse_upstream(spec->upstream, &up, err, errcap) != 0 ||
        sl_node_url_parse_hubs(hub, hu, &nhu, err, errcap) != 0)
        return SL_EPARSE;
    memset(&rec, 0, sizeof(rec));
    sl_node_url_format(&up, rec.upstream, sizeof(rec.upstream));
    if (sl_node_url_format_hubs(hu, nhu, rec.hub, sizeof(rec.hub)) != 0) {
        snprintf(err, errcap, "the list of hubs is too long");
        return SL_EPARSE;
    }
    if ((rc = spec_secrets(spec, &rec, err, errcap)) != 0)
        goto out;
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next) {
        if (strcmp(b->rec.upstream, rec.upstream) != 0 ||
            strcmp(b->rec.hub, rec.hub) != 0)
            continue;
        if (out != NULL)
            *out = b;
        if (rec.username[0] != '\0' &&
            (strcmp(b->rec.username, rec.username) != 0 ||
             strcmp(b->rec.password, rec.password) != 0)) {
            /* Never swap the credentials of a live bridge silently. */
            snprintf(err, errcap, "a bridge from %s to %s exists already "
                     "with other credentials (%s): remove it first",
                     rec.upstream, rec.hub,
                     b->rec.identity[0] ? b->rec.identity : "no identity yet");
            rc = SL_EDENIED;
        } else {
            snprintf(err, errcap, "a bridge from %s to %s exists already",
                     rec.upstream, rec.hub);
            rc = SL_EEXIST;
        }
        goto out;
    }
    if (node->nbridges >= SL_NODE_BRIDGES_MAX) {
        snprintf(err, errcap, "at most %d bridges", SL_NODE_BRIDGES_MAX);
        rc = SL_ELIMIT;
        goto out;
    }
    rec.created_at = sl_node_now_ms();
    struct sl_node_bridge *b = bridge_new(node, &rec, err, errcap);
    if (b == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    sl_info(node->log, "bridge %s: added (hub %s%s)", b->rec.upstream,
            b->rec.hub, b->rec.username[0] ? ", given credentials" : "");
    sl_node_save(node);
    dial_ctl(b);
    if (out != NULL)
        *out = b;
    rc = 0;
out:
    OPENSSL_cleanse(&rec, sizeof(rec));
    return rc;
}

/* A grant goes in one header line: printable, no blanks. */
static int grant_ok(const char *g)
{
    for (const unsigned char *p = (const unsigned char *)g; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

int sl_node_bridge_update(struct sl_node_bridge *b, const char *password,
                          const char *grant, char *err, size_t errcap)
{
    if (password != NULL &&
        (password[0] == '\0' || strlen(password) >= SL_BASIC_PASS_MAX ||
         strlen(password) >= sizeof(b->rec.password))) {
        snprintf(err, errcap, "password must be 1 to %d characters",
                 SL_BASIC_PASS_MAX - 1);
        return SL_EPARSE;
    }
    if (password != NULL && b->rec.username[0] == '\0') {
        snprintf(err, errcap, "this bridge has no credentials yet: its hub "
                 "gives them at the first connection");
        return SL_EPARSE;
    }
    if (grant != NULL &&
        (strlen(grant) >= sizeof(b->rec.grant) || !grant_ok(grant))) {
        snprintf(err, errcap, "grant is not a token (printable, no blanks, "
                 "under %zu characters)", sizeof(b->rec.grant));
        return SL_EPARSE;
    }
    int regrant = grant != NULL && strcmp(grant, b->rec.grant) != 0;
    if (password != NULL)
        snprintf(b->rec.password, sizeof(b->rec.password), "%s", password);
    if (grant != NULL)
        snprintf(b->rec.grant, sizeof(b->rec.grant), "%s", grant);
    sl_info(b->node->log, "bridge %s: updated%s%s", bname(b),
            password != NULL ? " (password)" : "",
            regrant ? " (grant; presenting it now)" : "");
    sl_node_save(b->node);
    sl_node_hubs_sync(b, regrant);
    /* The hub reads a grant when the control connection opens. */
    if (regrant && b->ctl != NULL) {
        sl_node_conn_close(b->ctl, 0);
        b->attempt = 0;
        uv_timer_stop(&b->retry_timer);
        dial_ctl(b);
    }
    return 0;
}

int sl_node_bridge_connect(struct sl_node_bridge *b)
{
    if (b->state == BS_DISCONNECTED) {
        b->state = BS_CONNECTING;
        b->rec.disconnected = 0;
        b->attempt = 0;
        sl_info(b->node->log, "bridge %s: connect", bname(b));
        sl_node_save(b->node);
    }
    if (b->ctl == NULL) {
        uv_timer_stop(&b->retry_timer);
        dial_ctl(b);
    }
    return 0;
}

int sl_node_bridge_disconnect(struct sl_node_bridge *b)
{
    if (b->state == BS_DISCONNECTED)
        return 0;
    b->state = BS_DISCONNECTED;
    b->rec.disconnected = 1;
    sl_info(b->node->log, "bridge %s: disconnect", bname(b));
    uv_timer_stop(&b->retry_timer);
    uv_timer_stop(&b->pool_timer);
    close_conns(b);
    sl_node_hubs_disconnect(b);
    sl_node_save(b->node);
    return 0;
}

void sl_node_bridge_remove(struct sl_node_bridge *b)
{
    struct sl_node *node = b->node;
    sl_info(node->log, "bridge %s: removed", bname(b));
    bridge_teardown(b);
    sl_node_save(node);
}

size_t sl_node_prune(struct sl_node *node)
{
    size_t n = 0;
    for (struct sl_node_bridge *b = node->bridges, *next; b != NULL;
         b = next) {
        next = b->next;
        if (b->state == BS_DISCONNECTED || b->rec.identity[0] == '\0') {
            sl_info(node->log, "bridge %s: pruned", bname(b));
            bridge_teardown(b);
            n++;
        }
    }
    if (n > 0)
        sl_node_save(node);
    return n;
}

static const char *state_name(const struct sl_node_bridge *b)
{
    switch (b->state) {
    case BS_CONNECTED: return "connected";
    case BS_DISCONNECTED: return "disconnected";
    default: return "connecting";
    }
}

/* While connected, the hub was last heard from when the control
 * connection last read a byte (pongs included), not when it was made. */
static int64_t last_seen(const struct sl_node_bridge *b)
{
    int64_t t = b->rec.last_seen;
    const struct conn *c = b->ctl;
    if (b->state == BS_CONNECTED && c != NULL && c->ws_live) {
        uint64_t ago = uv_now(b->node->ctx->loop) - c->ws.last_rx;
        int64_t heard = sl_node_now_ms() - (int64_t)ago;
        if (heard > t)
            t = heard;
    }
    return t;
}

json_t *sl_node_bridge_json(const struct sl_node_bridge *b)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:{s:I, s:I}, s:{s:I, s:I}},"
        " s:{s:f, s:f}, s:I, s:I, s:I, s:s}",
        "identity", b->rec.identity, "upstream", b->rec.upstream, "hub",
        b->rec.hub, "url", b->rec.url, "state", state_name(b), "traffic",
        "gateway", "down", (json_int_t)b->gw_down, "up",
        (json_int_t)b->gw_up, "upstream", "down", (json_int_t)b->up_down,
        "up", (json_int_t)b->up_up, "bandwidth", "down", b->rate_down, "up",
        b->rate_up, "created_at", (json_int_t)b->rec.created_at,
        "connected_at", (json_int_t)b->rec.connected_at, "last_seen",
        (json_int_t)last_seen(b), "error", b->error);
    /* Each hub's connection (one for one hub; node_hubs.c). */
    json_t *hubs = o != NULL ? sl_node_hubs_json(b) : NULL;
    if (hubs == NULL || json_object_set_new(o, "hubs", hubs) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *sl_node_bridges_json(const struct sl_node *node)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    /* oldest first, as created */
    const struct sl_node_bridge *last = node->bridges;
    while (last != NULL && last->next != NULL)
        last = last->next;
    for (const struct sl_node_bridge *b = last; b != NULL; b = b->prev) {
        json_t *o = sl_node_bridge_json(b);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

const char *sl_node_api_address(const struct sl_node *node)
{
    return node->api_addr;
}

/* ----------------------------------------------------------------- node */

/* Every second: bandwidth over the last second, and last_seen moves while
 * traffic flows. */
static void on_tick(uv_timer_t *t)
{
    struct sl_node *node = t->data;
    int64_t now = sl_node_now_ms();
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next) {
        sl_node_hubs_tick(b);
        uint64_t down = b->gw_down, up = b->gw_up;
        b->rate_down = (double)(down - b->prev_down);
        b->rate_up = (double)(up - b->prev_up);
        if ((down != b->prev_down || up != b->prev_up) &&
            b->state == BS_CONNECTED)
            b->rec.last_seen = now;
        b->prev_down = down;
        b->prev_up = up;
    }
    /* Relay buffers a burst of transfers left idle go back every 10 s:
     * kept, they stayed resident for good (a soak saw the node's RSS step
     * up by a quarter-megabyte each time concurrency reached a new peak). */
    if (++node->ticks % 10 == 0)
        sl_relay_pool_trim(&node->relay_pool);
}

static int mkdir_p(const char *dir)
{
    char path[900];
    int n = snprintf(path, sizeof(path), "%s", dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return SL_ETOOBIG;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void node_free(void *arg)
{
    struct sl_node *node = arg;
    if (sl_node_saver_busy(&node->saver)) {
        sl_node_saver_flush(&node->saver, node_free, node);
        return;
    }
    sl_node_saver_free(&node->saver);
    sl_relay_pool_drain(&node->relay_pool);
    sl_tls_client_free(node->tls);
    sl_node_stopped_cb cb = node->stop_cb;
    void *cb_arg = node->stop_arg;
    if (node->ctx->node == node)
        node->ctx->node = NULL;
    sl_info(node->log, "node: stopped");
    free(node);
    if (cb != NULL)
        cb(cb_arg);
}

static void node_unref(struct sl_node *node)
{
    if (--node->refs > 0)
        return;
    node_free(node);
}

static void on_tick_close(uv_handle_t *h)
{
    node_unref(h->data);
}

static void on_agent_stopped(void *arg)
{
    node_unref(arg);
}

int sl_node_start(struct sl_ctx *ctx, const struct sl_node_options *opts)
{
    int rc;
    struct sl_node_bridge_rec *recs = NULL;
    if (opts == NULL || opts->state_dir == NULL || opts->state_dir[0] == '\0')
        return SL_ECONFIG;
    if (opts->pool_size > SL_CTL_POOL_MAX)
        return SL_ECONFIG;
    struct sl_node *node = calloc(1, sizeof(*node));
    if (node == NULL)
        return UV_ENOMEM;
    node->ctx = ctx;
    node->log = &ctx->log;
    node->allow_public = opts->allow_public_upstream;
    node->framed = opts->framed;
    /* Mux is raw bytes after the 101: whatever mangles raw upgrades
     * (--framed) mangles it too. */
    node->no_mux = opts->no_mux || opts->framed;
    node->mux_budget.max = 64ull * 1024 * 1024;
    if (opts->default_hub != NULL && opts->default_hub[0] != '\0') {
        char err[256] = "the list of hubs is too long";
        struct sl_node_url hu[SL_NODE_HUBS_MAX];
        size_t nhu;
        if (sl_node_url_parse_hubs(opts->default_hub, hu, &nhu, err,
                                   sizeof(err)) != 0 ||
            sl_node_url_format_hubs(hu, nhu, node->default_hub,
                                    sizeof(node->default_hub)) != 0) {
            sl_error(node->log, "node: default hub %s", err);
            rc = SL_ECONFIG;
            goto fail;
        }
    } else {
        snprintf(node->default_hub, sizeof(node->default_hub), "%s",
                 SL_NODE_HUB_DEFAULT);
    }
    {
        char err[512];
        struct sl_tls_client_opts to = {.ca_file = opts->hub_ca,
                                        .pin = opts->hub_pin,
                                        .insecure = opts->hub_insecure,
                                        .alpn = "http/1.1"};
        if (sl_tls_client_new(&to, &node->tls, err, sizeof(err)) != 0) {
            sl_error(node->log, "node: TLS to hubs: %s", err);
            rc = SL_ECONFIG;
            goto fail;
        }
        if (opts->hub_insecure)
            sl_warn(node->log, "node: --hub-insecure: hub certificates are "
                    "not verified (insecure; for tests only)");
    }
    if (opts->streams != NULL)
        node->streams = *opts->streams;
    node->relay_pool.max_free = SL_NODE_RELAY_FREE;
    node->ping_ms = opts->ping_ms;
    node->dead_ms = opts->dead_ms;
    node->pool_size = opts->pool_size < 0 ? SL_NODE_POOL_DEFAULT
                                          : opts->pool_size;
    int n = snprintf(node->state_dir, sizeof(node->state_dir), "%s",
                     opts->state_dir);
    if (n < 0 || (size_t)n >= sizeof(node->state_dir)) {
        rc = SL_ETOOBIG;
        goto fail;
    }
    if ((rc = mkdir_p(node->state_dir)) != 0) {
        sl_error(node->log, "node: cannot create state directory %s: %s",
                 node->state_dir, sl_strerror(rc));
        goto fail;
    }
    if ((rc = sl_node_saver_init(&node->saver, ctx->loop, node->state_dir,
                                 SL_NODE_STATE_FILE)) != 0)
        goto fail;
    node->saver.log = node->log;

    recs = calloc(SL_NODE_BRIDGES_MAX, sizeof(*recs));
    if (recs == NULL) {
        rc = UV_ENOMEM;
        goto fail;
    }
    size_t nrecs = 0, skipped = 0;
    rc = sl_node_state_load(node->state_dir, recs, SL_NODE_BRIDGES_MAX,
                            &nrecs, &skipped);
    if (rc != 0) {
        sl_error(node->log, "node: reading %s/%s: %s", node->state_dir,
                 SL_NODE_STATE_FILE, sl_strerror(rc));
        goto fail;
    }
    if (skipped > 0)
        sl_warn(node->log, "node: %zu unusable bridge record(s) in %s/%s "
                "skipped", skipped, node->state_dir, SL_NODE_STATE_FILE);

    node->refs = 1;
    const char *listen = opts->api_listen != NULL ? opts->api_listen
                                                  : SL_NODE_API_DEFAULT;
    /* The inspector keeps what users send: on by default only where its
     * one reader, the API, is (and that is loopback only). */
    node->inspect = opts->inspect > 0 || (opts->inspect == 0 &&
                                          listen[0] != '\0');
    node->inspect_keep = opts->inspect_keep;
    if (listen[0] != '\0') {
        if ((rc = sl_node_api_start(node, listen)) != 0) {
            sl_error(node->log, "node: API on %s: %s", listen,
                     sl_strerror(rc));
            goto fail;
        }
    }
    if (opts->agent != NULL &&
        (rc = sl_node_agent_start(node, opts->agent, &node->agent)) != 0)
        goto fail;
    uv_timer_init(ctx->loop, &node->tick);
    node->tick.data = node;
    node->refs++;
    uv_timer_start(&node->tick, on_tick, 1000, 1000);

    for (size_t i = 0; i < nrecs; i++) {
        char err[256];
        if (bridge_new(node, &recs[i], err, sizeof(err)) == NULL)
            sl_warn(node->log, "node: bridge record %zu skipped: %s", i,
                    err);
    }
    memset(recs, 0, SL_NODE_BRIDGES_MAX * sizeof(*recs));
    free(recs);
    recs = NULL;
    ctx->node = node;
    sl_info(node->log, "node: started with %zu bridge(s), state in %s, API "
            "%s%s%s", node->nbridges, node->state_dir,
            node->api_addr[0] != '\0' ? node->api_addr : "off",
            node->agent ? ", agent port " : "",
            node->agent ? sl_node_agent_address(node->agent) : "");
    for (struct sl_node_bridge *b = node->bridges; b != NULL; b = b->next)
        dial_ctl(b);
    return 0;

fail:
    free(recs);
    sl_node_dash_stop(node);
    if (node->api != NULL) {
        sl_api_server_close(node->api);
        node->api = NULL;
    }
    sl_tls_client_free(node->tls);
    free(node);
    return rc;
}

void sl_node_stop(struct sl_node *node, sl_node_stopped_cb done_cb, void *arg)
{
    if (node == NULL || node->stopping)
        return;
    node->stop_cb = done_cb;
    node->stop_arg = arg;
    sl_node_save(node); /* the last one, with last_seen */
    node->stopping = 1;
    sl_info(node->log, "node: stopping");
    sl_node_dash_stop(node);
    if (node->api != NULL) {
        sl_api_server_close(node->api);
        node->api = NULL;
    }
    if (node->agent != NULL) {
        /* Its streams use the node's relay buffers: the node waits. */
        struct sl_node_agent *a = node->agent;
        node->agent = NULL;
        node->refs++;
        sl_node_agent_stop(a, on_agent_stopped, node);
    }
    while (node->bridges != NULL)
        bridge_teardown(node->bridges);
    uv_timer_stop(&node->tick);
    uv_close((uv_handle_t *)&node->tick, on_tick_close);
    node_unref(node);
}
