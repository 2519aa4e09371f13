/* Plans (hub/hub_plan.h, docs/plans.md): grants checked when a control
 * connection opens and put in force on its allocation, the free plan for
 * bridges without one, a grant that expires downgrading its allocation
 * at once, and the rotation of passwords with a grace period. The
 * bandwidth caps the plans set are hub_rate.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "core/error.h"
#include "hub/hub_int.h"
#include "tunnel/control.h"

#define PLAN_SWEEP_MAX_MS 60000

/* A control connection's grant, between its head and its 101. */
struct hub_grant_in {
    struct sl_grant g;
    char token[SL_GRANT_TOKEN_MAX + 1];
};

/* The stored plan row, held compactly: the grant (up to 2 KiB) only
 * when there is one, since most allocations of a hub have none. */
struct plan_row {
    uint64_t rate;
    int operator_made;
    char *grant; /* NULL: none */
    int64_t rotated_at;
    char old_hash[SL_STORE_HASH_MAX];
    int64_t old_until_ms;
};

/* What an allocation may use, and what it was made from. */
struct hub_plan {
    struct plan_row row;        /* as stored */
    struct sl_store_limits own; /* the allocation's own limits */
    enum sl_hub_plan_source source;
    unsigned features;
    int no_bridge;
    uint64_t rate;
    int64_t expires;
    char subject[SL_GRANT_SUBJECT_MAX];
    unsigned char old_mac[32]; /* MAC of the old password, in its grace */
    int has_old_mac;
};

struct resolved {
    enum sl_hub_plan_source source;
    struct sl_store_limits limits;
    int no_bridge;
    uint64_t rate;
    unsigned features;
    int64_t expires;
    char subject[SL_GRANT_SUBJECT_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds of the same clock: time() may lag it by a tick, and a
 * deadline met in ms must be met in s too. */
static int64_t now_s(void)
{
    return now_ms() / 1000;
}

/* The row as the store has it (*out is cleansed by the caller). */
static void row_out(const struct plan_row *r, struct sl_store_plan *out)
{
    memset(out, 0, sizeof(*out));
    out->rate = r->rate;
    out->operator_made = r->operator_made;
    if (r->grant != NULL)
        snprintf(out->grant, sizeof(out->grant), "%s", r->grant);
    out->rotated_at = r->rotated_at;
    memcpy(out->old_hash, r->old_hash, sizeof(out->old_hash));
    out->old_until_ms = r->old_until_ms;
}

/* Takes the store's row in; 0, or UV_ENOMEM (r unchanged). */
static int row_in(struct plan_row *r, const struct sl_store_plan *in)
{
    char *grant = NULL;
    if (in->grant[0] != '\0' &&
        (r->grant == NULL || strcmp(r->grant, in->grant) != 0)) {
        grant = strdup(in->grant);
        if (grant == NULL)
            return UV_ENOMEM;
    }
    if (in->grant[0] == '\0' || grant != NULL) {
        free(r->grant);
        r->grant = grant;
    }
    r->rate = in->rate;
    r->operator_made = in->operator_made;
    r->rotated_at = in->rotated_at;
    memcpy(r->old_hash, in->old_hash, sizeof(r->old_hash));
    r->old_until_ms = in->old_until_ms;
    return 0;
}

const char *sl_hub_plan_source_name(enum sl_hub_plan_source s)
{
    return s == SL_HUB_PLAN_GRANT  ? "grant"
           : s == SL_HUB_PLAN_FREE ? "free"
                                   : "allocation";
}

int hub_plans_demanded(const struct sl_hub *hub)
{
    return hub->plans != NULL && hub->plans->key != NULL;
}

/* The plan in force for an allocation with own limits and plan row, at
 * unix time now: a grant that holds for it, else (grants demanded) the
 * free plan unless the operator made it, else its own limits. */
static void resolve(const struct hub_plans *p, const struct sl_store_limits *own,
                    const struct sl_store_plan *row, const char *identity,
                    int64_t now, struct resolved *r)
{
    struct sl_grant g;
    memset(r, 0, sizeof(*r));
    uint64_t default_rate = p != NULL ? p->o.default_rate : 0;
    if (p != NULL && p->key != NULL) {
        if (row->grant[0] != '\0' &&
            sl_grant_verify(row->grant, strlen(row->grant), p->key, &g) ==
                SL_GRANT_OK &&
            sl_grant_check(&g, now, identity) == SL_GRANT_OK) {
            r->source = SL_HUB_PLAN_GRANT;
            r->limits.bridges = g.bridges;
            r->limits.traffic = g.traffic;
            r->rate = g.rate;
            r->features = g.features;
            r->expires = g.expires;
            memcpy(r->subject, g.subject, sizeof(r->subject));
            return;
        }
        if (!row->operator_made) {
            r->source = SL_HUB_PLAN_FREE;
            r->limits.bridges = (uint64_t)p->o.free_bridges;
            r->no_bridge = p->o.free_bridges == 0;
            r->limits.traffic = (uint64_t)p->o.free_traffic;
            r->rate = default_rate;
            r->features = SL_GRANT_BRIDGE;
            return;
        }
    }
    r->source = SL_HUB_PLAN_ALLOCATION;
    r->limits = *own;
    r->rate = row->rate > 0 ? row->rate : default_rate;
    r->features = SL_GRANT_BRIDGE | SL_GRANT_TCP | SL_GRANT_UDP;
}

static void end_newest_controls(struct hub_alloc *a, uint64_t keep,
                                const char *why)
{
    while (a->ncontrols > keep && !sl_list_empty(&a->controls)) {
        struct hub_conn *c = HUB_CONN_OF(a->controls.prev, alink);
        sl_info(a->hub->log, "hub control %llu (%s): %s; closing",
                (unsigned long long)c->id, a->identity, why);
        hub_control_end(c, "Bridge not allowed", 403);
    }
}

/* Puts r in force on a: limits, cap, and what follows from them now (a
 * traffic limit reached or lifted, bridges over the count). */
static void apply(struct hub_alloc *a, const struct resolved *r)
{
    struct hub_plan *p = a->plan;
    struct sl_hub *hub = a->hub;
    int changed = p->source != r->source ||
                  memcmp(&a->limits, &r->limits, sizeof(a->limits)) != 0 ||
                  p->rate != r->rate || p->expires != r->expires;
    p->source = r->source;
    p->features = r->features;
    p->no_bridge = r->no_bridge;
    p->rate = r->rate;
    p->expires = r->expires;
    memcpy(p->subject, r->subject, sizeof(p->subject));
    a->limits = r->limits;
    if (hub_rate_set(a, r->rate) != 0)
        sl_warn(hub->log, "hub alloc %s: no memory for its bandwidth cap",
                a->identity);
    if (changed)
        sl_info(hub->log, "hub alloc %s: plan %s%s%s: bridges %llu%s, "
                "traffic %llu, rate %llu B/s", a->identity,
                sl_hub_plan_source_name(r->source),
                r->subject[0] ? " for " : "", r->subject,
                (unsigned long long)r->limits.bridges,
                r->no_bridge ? " (none)" : "",
                (unsigned long long)r->limits.traffic,
                (unsigned long long)r->rate);
    uint64_t used = a->total.user_down + a->total.user_up;
    if (a->limited && (r->limits.traffic == 0 || used < r->limits.traffic)) {
        a->limited = 0;
        a->limited_dirty = 1;
        sl_info(hub->log, "hub alloc %s: traffic limit lifted by its plan",
                a->identity);
    } else if (!a->limited && r->limits.traffic > 0 &&
               used >= r->limits.traffic) {
        a->limited = 1;
        a->limited_dirty = 1;
        sl_warn(hub->log, "hub alloc %s: traffic limit %llu reached under "
                "its new plan, closing its pairs", a->identity,
                (unsigned long long)r->limits.traffic);
        hub_alloc_error_all(a, "Traffic limit exceeded", 429);
        hub_alloc_close_pairs(a);
    }
    if (r->no_bridge)
        end_newest_controls(a, 0, "the plan admits no bridge");
    else if (r->limits.bridges > 0)
        end_newest_controls(a, r->limits.bridges, "over the plan's bridges");
}

static void plans_schedule(struct sl_hub *hub);

static void reresolve(struct hub_alloc *a)
{
    struct resolved r;
    struct sl_store_plan row;
    row_out(&a->plan->row, &row);
    resolve(a->hub->plans, &a->plan->own, &row, a->identity, now_s(), &r);
    OPENSSL_cleanse(&row, sizeof(row));
    apply(a, &r);
}

int hub_plan_load(struct hub_alloc *a)
{
    struct sl_hub *hub = a->hub;
    a->plan = calloc(1, sizeof(*a->plan));
    if (a->plan == NULL)
        return UV_ENOMEM;
    struct hub_plan *p = a->plan;
    p->own = a->limits;
    /* A store that fails reads as no row: the allocation's own limits,
     * or the free plan where grants are demanded. */
    struct sl_store_plan row;
    if (sl_store_plan_get(hub->store, a->identity, &row) != 0)
        memset(&row, 0, sizeof(row));
    int rc = row_in(&p->row, &row);
    OPENSSL_cleanse(&row, sizeof(row));
    if (rc != 0) {
        hub_plan_free(a);
        return rc;
    }
    p->source = SL_HUB_PLAN_ALLOCATION;
    reresolve(a);
    if (hub->plans != NULL && hub->plans->running &&
        (p->expires > 0 || p->row.old_until_ms > 0))
        plans_schedule(hub);
    return 0;
}

void hub_plan_free(struct hub_alloc *a)
{
    hub_rate_set(a, 0);
    if (a->plan != NULL) {
        free(a->plan->row.grant);
        OPENSSL_cleanse(a->plan, sizeof(*a->plan));
    }
    free(a->plan);
    a->plan = NULL;
}

/* Refusals before the 101: JSON with the seed's words and why. */
static void refuse(struct hub_conn *c, int status, const char *error,
                   const char *reason)
{
    char body[512];
    sl_info(c->hub->log, "hub control %llu (%s) from %s: %s (%s), answering "
            "%d", (unsigned long long)c->id,
            c->alloc ? c->alloc->identity : "new", c->peer_ip, error,
            reason, status);
    snprintf(body, sizeof(body),
             "{\"error\":\"%s\",\"code\":%d,\"reason\":\"%s\"}", error,
             status, reason);
    free(c->grant_in);
    c->grant_in = NULL;
    hub_conn_reply_close(c, status, "application/json", body, NULL);
}

static const char *refusal_reason(enum sl_grant_status st)
{
    switch (st) {
    case SL_GRANT_MALFORMED: return "the grant cannot be read";
    case SL_GRANT_BAD_SIGNATURE: return "the grant is not signed by this "
                                        "hub's key";
    case SL_GRANT_EXPIRED: return "the grant has expired";
    case SL_GRANT_NO_BRIDGE: return "the grant lacks the bridge feature";
    case SL_GRANT_OTHER_IDENTITY: return "the grant names another identity";
    default: return "refused";
    }
}

int hub_grant_presented(struct hub_conn *c, const struct sl_http_head *h,
                        int anonymous)
{
    struct sl_hub *hub = c->hub;
    if (!hub_plans_demanded(hub))
        return 1; /* grants are not read where they mean nothing */
    const struct sl_http_header *x = sl_http_head_find(h, "sluice-grant");
    if (x == NULL) {
        if (anonymous && hub->plans->o.free_bridges == 0) {
            refuse(c, 403, "Bridge not allowed",
                   "this hub admits no bridge without a grant");
            return 0;
        }
        return 1;
    }
    struct hub_grant_in *in = calloc(1, sizeof(*in));
    if (in == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return 0;
    }
    enum sl_grant_status st = SL_GRANT_MALFORMED;
    if (x->value_len <= SL_GRANT_TOKEN_MAX) {
        memcpy(in->token, x->value, x->value_len);
        in->token[x->value_len] = '\0';
        st = sl_grant_verify(in->token, x->value_len, hub->plans->key,
                             &in->g);
    }
    /* Whose it is waits for the credentials; a new allocation is no
     * grant's that names one. */
    if (st == SL_GRANT_OK)
        st = sl_grant_check(&in->g, now_s(),
                            anonymous ? NULL : in->g.identity);
    if (st != SL_GRANT_OK) {
        free(in);
        refuse(c, 403, sl_grant_why(st), refusal_reason(st));
        return 0;
    }
    free(c->grant_in);
    c->grant_in = in;
    return 1;
}

int hub_grant_admit(struct hub_conn *c)
{
    struct hub_alloc *a = c->alloc;
    struct hub_plan *p = a->plan;
    char reason[160];
    if (!hub_plans_demanded(c->hub) || p == NULL)
        return 1;
    struct hub_grant_in *in = c->grant_in;
    if (in != NULL) {
        enum sl_grant_status st =
            sl_grant_check(&in->g, now_s(), a->identity);
        if (st != SL_GRANT_OK) {
            refuse(c, 403, sl_grant_why(st), refusal_reason(st));
            return 0;
        }
        /* The newest grant presented is the allocation's, across
         * reconnects and restarts. */
        if (p->row.grant == NULL || strcmp(p->row.grant, in->token) != 0) {
            char *grant = strdup(in->token);
            if (grant == NULL) {
                refuse(c, 500, "Internal error", "out of memory");
                return 0;
            }
            free(p->row.grant);
            p->row.grant = grant;
            struct sl_store_plan row;
            row_out(&p->row, &row);
            if (sl_store_plan_set(c->hub->store, a->identity, &row) != 0)
                sl_warn(c->hub->log, "hub alloc %s: its grant could not be "
                        "stored; it holds until the hub restarts",
                        a->identity);
            OPENSSL_cleanse(&row, sizeof(row));
        }
        c->grant_in = NULL;
        free(in);
    }
    reresolve(a);
    plans_schedule(c->hub);
    if (p->no_bridge) {
        refuse(c, 403, "Bridge not allowed",
               "no grant, and this hub admits no bridge without one");
        return 0;
    }
    if (a->limits.bridges == 0)
        return 1;
    /* The bridge's own earlier connections are replaced, not counted. */
    uint64_t others = 0;
    for (struct sl_link *l = a->controls.next; l != &a->controls;
         l = l->next) {
        const struct hub_conn *o = HUB_CONN_OF(l, alink);
        if (c->bridge_id[0] == '\0' || strcmp(o->bridge_id, c->bridge_id))
            others++;
    }
    if (others < a->limits.bridges)
        return 1;
    snprintf(reason, sizeof(reason), "the %s plan allows %llu bridge%s and "
             "%llu %s connected", sl_hub_plan_source_name(p->source),
             (unsigned long long)a->limits.bridges,
             a->limits.bridges == 1 ? "" : "s", (unsigned long long)others,
             others == 1 ? "is" : "are");
    refuse(c, 429, "Bridge not allowed", reason);
    return 0;
}

int hub_grant_data_admit(struct hub_conn *c)
{
    const struct hub_plan *p = c->alloc != NULL ? c->alloc->plan : NULL;
    if (!hub_plans_demanded(c->hub) || p == NULL || !p->no_bridge)
        return 1;
    hub_conn_reply_close(c, 403, NULL, "Bridge not allowed", NULL);
    return 0;
}

int hub_grant_hello(struct hub_conn *c, unsigned caps, char *why, size_t cap)
{
    const struct hub_plan *p = c->alloc != NULL ? c->alloc->plan : NULL;
    if (!hub_plans_demanded(c->hub) || p == NULL)
        return 0;
    const char *missing = (caps & SL_CAP_TCP) && !(p->features & SL_GRANT_TCP)
                              ? "tcp"
                          : (caps & SL_CAP_UDP) && !(p->features & SL_GRANT_UDP)
                              ? "udp"
                              : NULL;
    if (missing == NULL)
        return 0;
    snprintf(why, cap, "Bridge not allowed: the %s plan lacks the %s feature",
             sl_hub_plan_source_name(p->source), missing);
    return -1;
}

/* Rotation. */

static int old_alive(const struct hub_plan *p, int64_t now)
{
    return p != NULL && p->row.old_hash[0] != '\0' &&
           now < p->row.old_until_ms;
}

void hub_grant_auth_hashes(struct hub_conn *c)
{
    struct hub_alloc *a = c->alloc;
    snprintf(c->auth->hash, sizeof(c->auth->hash), "%s",
             a ? a->password_hash : sl_password_dummy_hash());
    c->auth->old_hash[0] = '\0';
    if (a != NULL && old_alive(a->plan, now_ms()))
        snprintf(c->auth->old_hash, sizeof(c->auth->old_hash), "%s",
                 a->plan->row.old_hash);
}

int hub_grant_verified(struct hub_conn *c, int result)
{
    struct hub_alloc *a = c->alloc;
    const char *h = result == 1   ? c->auth->hash
                    : result == 2 ? c->auth->old_hash
                                  : NULL;
    if (h == NULL || a == NULL)
        return 0;
    /* A rotation may have run while the check did. */
    if (strcmp(h, a->password_hash) == 0)
        return 1;
    if (old_alive(a->plan, now_ms()) &&
        strcmp(h, a->plan->row.old_hash) == 0)
        return 2;
    return 0;
}

int hub_grant_old_mac(struct hub_alloc *a, const unsigned char mac[32])
{
    const struct hub_plan *p = a != NULL ? a->plan : NULL;
    return p != NULL && p->has_old_mac && old_alive(p, now_ms()) &&
           CRYPTO_memcmp(p->old_mac, mac, 32) == 0;
}

void hub_grant_old_mac_set(struct hub_alloc *a, const unsigned char mac[32])
{
    if (a->plan == NULL)
        return;
    memcpy(a->plan->old_mac, mac, 32);
    a->plan->has_old_mac = 1;
}

/* Connections of a opened with any password but the current one. */
static void mark_old(struct hub_alloc *a)
{
    for (struct sl_link *l = a->controls.next; l != &a->controls; l = l->next)
        HUB_CONN_OF(l, alink)->old_password = 1;
    for (struct sl_link *l = a->pool.next; l != &a->pool; l = l->next)
        HUB_CONN_OF(l, alink)->old_password = 1;
}

int sl_hub_rotate(struct sl_hub *hub, struct sl_store *st,
                  const char *identity, const char *hash,
                  int64_t *old_until_ms)
{
    struct sl_alloc cur;
    struct sl_store_plan row;
    int rc = sl_store_get_by_identity(st, identity, &cur);
    if (rc != 0)
        return rc;
    if ((rc = sl_store_plan_get(st, identity, &row)) != 0)
        return rc;
    uint64_t grace = hub != NULL && hub->plans != NULL
                         ? hub->plans->o.rotate_grace_ms
                         : SL_HUB_ROTATE_GRACE_MS;
    int64_t now = now_ms();
    snprintf(row.old_hash, sizeof(row.old_hash), "%s", cur.password_hash);
    row.old_until_ms = now + (int64_t)grace;
    row.rotated_at = now / 1000;
    if ((rc = sl_store_rotate(st, identity, hash, &row)) != 0)
        return rc;
    *old_until_ms = row.old_until_ms;
    struct hub_alloc *a = hub != NULL ? hub_alloc_find(hub, identity) : NULL;
    if (a == NULL || a->plan == NULL)
        return 0;
    snprintf(a->password_hash, sizeof(a->password_hash), "%s", hash);
    if (row_in(&a->plan->row, &row) != 0) {
        /* Stored; only the old password's grace is not known here. */
        memcpy(a->plan->row.old_hash, row.old_hash, sizeof(row.old_hash));
        a->plan->row.old_until_ms = row.old_until_ms;
        a->plan->row.rotated_at = row.rotated_at;
    }
    OPENSSL_cleanse(&row, sizeof(row));
    /* The password the hub knew good is the old one now. */
    a->plan->has_old_mac = a->has_mac;
    memcpy(a->plan->old_mac, a->pass_mac, 32);
    a->has_mac = 0;
    OPENSSL_cleanse(a->pass_mac, sizeof(a->pass_mac));
    mark_old(a);
    sl_info(hub->log, "hub alloc %s: password rotated; the old one opens "
            "for %llu ms more", identity, (unsigned long long)grace);
    plans_schedule(hub);
    return 0;
}

/* The old password's grace is over: it opens nothing more, and the
 * bridge connections it opened go (users paired through them finish). */
static void grace_over(struct hub_alloc *a)
{
    struct sl_hub *hub = a->hub;
    struct hub_plan *p = a->plan;
    unsigned ended = 0;
    p->row.old_hash[0] = '\0';
    p->row.old_until_ms = 0;
    p->has_old_mac = 0;
    OPENSSL_cleanse(p->old_mac, sizeof(p->old_mac));
    struct sl_store_plan row;
    row_out(&p->row, &row);
    if (sl_store_plan_set(hub->store, a->identity, &row) != 0)
        sl_warn(hub->log, "hub alloc %s: the end of the old password's "
                "grace could not be stored", a->identity);
    OPENSSL_cleanse(&row, sizeof(row));
    struct sl_link *l, *next;
    for (l = a->controls.next; l != &a->controls; l = next) {
        next = l->next;
        struct hub_conn *c = HUB_CONN_OF(l, alink);
        if (c->old_password) {
            hub_control_end(c, "Credentials rotated", 401);
            ended++;
        }
    }
    for (l = a->pool.next; l != &a->pool; l = next) {
        next = l->next;
        struct hub_conn *d = HUB_CONN_OF(l, alink);
        if (d->old_password) {
            hub_conn_alist_del(d);
            hub_conn_reply_close(d, 204, NULL, NULL, NULL);
            ended++;
        }
    }
    sl_info(hub->log, "hub alloc %s: the rotated password's grace is over; "
            "%u bridge connections it opened closed", a->identity, ended);
}

static void on_plan_timer(uv_timer_t *t)
{
    struct sl_hub *hub = t->data;
    int64_t now = now_ms();
    for (size_t i = 0; i < HUB_BUCKETS; i++) {
        for (struct hub_alloc *a = hub->buckets[i]; a; a = a->hnext) {
            struct hub_plan *p = a->plan;
            if (p == NULL)
                continue;
            if (p->row.old_until_ms > 0 && now >= p->row.old_until_ms)
                grace_over(a);
            if (p->source == SL_HUB_PLAN_GRANT && p->expires > 0 &&
                now >= p->expires * 1000) {
                sl_warn(hub->log, "hub alloc %s: its grant expired; "
                        "downgraded at once", a->identity);
                reresolve(a);
            }
        }
    }
    plans_schedule(hub);
}

/* Arms the timer for the earliest deadline of any allocation in
 * memory. */
static void plans_schedule(struct sl_hub *hub)
{
    struct hub_plans *ps = hub->plans;
    if (ps == NULL || !ps->running || hub->stopping)
        return;
    int64_t now = now_ms(), next = INT64_MAX;
    for (size_t i = 0; i < HUB_BUCKETS; i++) {
        for (struct hub_alloc *a = hub->buckets[i]; a; a = a->hnext) {
            const struct hub_plan *p = a->plan;
            if (p == NULL)
                continue;
            if (p->row.old_until_ms > 0 && p->row.old_until_ms < next)
                next = p->row.old_until_ms;
            if (p->source == SL_HUB_PLAN_GRANT && p->expires > 0 &&
                p->expires * 1000 < next)
                next = p->expires * 1000;
        }
    }
    if (next == INT64_MAX) {
        uv_timer_stop(&ps->timer);
        return;
    }
    int64_t wait = next - now;
    if (wait < 1)
        wait = 1;
    if (wait > PLAN_SWEEP_MAX_MS)
        wait = PLAN_SWEEP_MAX_MS;
    uv_timer_start(&ps->timer, on_plan_timer, (uint64_t)wait, 0);
}

/* The hub's share. */

static EVP_PKEY *load_public(struct sl_hub *hub, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        sl_error(hub->log, "hub: --grant-key %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL) {
        sl_error(hub->log, "hub: --grant-key %s: not a PEM public key (give "
                 "the grant.pub of sluice grant keygen, never the private "
                 "key)", path);
        return NULL;
    }
    if (!EVP_PKEY_is_a(k, "ED25519")) {
        sl_error(hub->log, "hub: --grant-key %s: not an Ed25519 key", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int hub_plans_init(struct sl_hub *hub, const struct sl_hub_plan_options *o)
{
    struct hub_plans *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return UV_ENOMEM;
    sl_list_init(&ps->busy);
    if (o != NULL)
        ps->o = *o;
    ps->o.grant_key_file = NULL; /* not kept: read once, here */
    if (ps->o.free_bridges < 0)
        ps->o.free_bridges = SL_HUB_FREE_BRIDGES;
    if (ps->o.free_traffic < 0)
        ps->o.free_traffic = (int64_t)SL_HUB_FREE_TRAFFIC;
    if (ps->o.rotate_grace_ms == 0)
        ps->o.rotate_grace_ms = SL_HUB_ROTATE_GRACE_MS;
    if (o != NULL && o->grant_key_file != NULL) {
        ps->key = load_public(hub, o->grant_key_file);
        if (ps->key == NULL) {
            free(ps);
            return SL_ECONFIG;
        }
        sl_info(hub->log, "hub: grants demanded (key %s); free plan %lld "
                "bridge%s, %lld bytes", o->grant_key_file,
                (long long)ps->o.free_bridges,
                ps->o.free_bridges == 1 ? "" : "s",
                (long long)ps->o.free_traffic);
    }
    hub->plans = ps;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    hub_handle_closed(h->data);
}

void hub_plans_run(struct sl_hub *hub)
{
    struct hub_plans *ps = hub->plans;
    uv_timer_init(hub->loop, &ps->timer);
    ps->timer.data = hub;
    uv_timer_init(hub->loop, &ps->rate_timer);
    ps->rate_timer.data = hub;
    hub->open_handles += 2;
    ps->running = 1;
    plans_schedule(hub);
}

void hub_plans_stop(struct sl_hub *hub)
{
    struct hub_plans *ps = hub->plans;
    if (ps == NULL || !ps->running)
        return;
    ps->running = 0;
    uv_close((uv_handle_t *)&ps->timer, on_timer_closed);
    uv_close((uv_handle_t *)&ps->rate_timer, on_timer_closed);
}

void hub_plans_free(struct sl_hub *hub)
{
    if (hub->plans == NULL)
        return;
    EVP_PKEY_free(hub->plans->key);
    free(hub->plans);
    hub->plans = NULL;
}

void sl_hub_plan_view(struct sl_hub *hub, struct sl_store *st,
                      const struct sl_alloc *a, struct sl_hub_plan_view *out)
{
    struct sl_store_plan row;
    struct resolved r;
    memset(out, 0, sizeof(*out));
    struct hub_alloc *live = hub != NULL ? hub_alloc_find(hub, a->identity)
                                         : NULL;
    if (live != NULL && live->plan != NULL) {
        const struct hub_plan *p = live->plan;
        out->source = p->source;
        out->limits = live->limits;
        out->no_bridge = p->no_bridge;
        out->rate = p->rate;
        out->features = p->features;
        out->expires = p->expires;
        memcpy(out->subject, p->subject, sizeof(out->subject));
        out->rotated_at = p->row.rotated_at;
        out->old_until_ms = p->row.old_until_ms;
        return;
    }
    (void)sl_store_plan_get(st, a->identity, &row);
    resolve(hub != NULL ? hub->plans : NULL, &a->limits, &row, a->identity,
            now_s(), &r);
    out->source = r.source;
    out->limits = r.limits;
    out->no_bridge = r.no_bridge;
    out->rate = r.rate;
    out->features = r.features;
    out->expires = r.expires;
    memcpy(out->subject, r.subject, sizeof(out->subject));
    out->rotated_at = row.rotated_at;
    out->old_until_ms = row.old_until_ms;
    OPENSSL_cleanse(&row, sizeof(row));
}
