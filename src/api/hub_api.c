#include "api/hub_api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "acme/acme.h"
#include "api/dashboard.h"
#include "api/hub_api_plan.h"
#include "api/server.h"
#include "api/sse.h"
#include "core/error.h"
#include "hub/hub.h"
#include "hub/hub_plan.h"
#include "hub/store.h"
#include "tunnel/creds.h"
#include "tunnel/identity.h"
#include "tunnel/stream_opts.h"

#define DEFAULT_PRUNE_AGE (7 * 24 * 3600)
#define CREATE_ATTEMPTS 5
#define METRICS_MAX (64 * 1024 * 1024)

struct sl_hub_api {
    struct sl_ctx *ctx;
    struct sl_hub *hub; /* may be NULL */
    struct sl_store *store;
    struct sl_api_server *server;
    struct sl_sse *sse; /* the dashboard's live feed */
    char *url_template;
    int closing;
    size_t pending; /* create jobs in the thread pool */
};

/* --------------------------------------------------------------------- */
/* JSON of one allocation                                                 */

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* The freshest view: the store's row merged with the hub's live entry
 * (the hub's totals include what it has not flushed yet). */
struct view {
    struct sl_alloc a;
    int has_live;
    struct sl_hub_live live;
    struct sl_hub_plan_view plan; /* its limits are in a.limits too */
};

static void view_fill(struct sl_hub_api *api, const struct sl_alloc *a,
                      struct view *v)
{
    memset(v, 0, sizeof(*v));
    v->a = *a;
    /* The limits in force: a grant's, the free plan's or its own. */
    sl_hub_plan_view(api->hub, api->store, a, &v->plan);
    v->a.limits = v->plan.limits;
    if (api->hub == NULL ||
        sl_hub_live(api->hub, a->identity, &v->live) != 0)
        return;
    v->has_live = 1;
    struct sl_store_traffic *t = &v->a.traffic;
    const struct sl_store_traffic *l = &v->live.traffic;
    t->user_down = max_u64(t->user_down, l->user_down);
    t->user_up = max_u64(t->user_up, l->user_up);
    t->bridge_down = max_u64(t->bridge_down, l->bridge_down);
    t->bridge_up = max_u64(t->bridge_up, l->bridge_up);
    if (v->live.limited)
        v->a.limited = 1;
    if (v->live.last_seen > v->a.last_seen)
        v->a.last_seen = v->live.last_seen;
}

static void make_url(struct sl_hub_api *api, const char *identity, char *buf,
                     size_t cap)
{
    if (api->hub != NULL && sl_hub_url(api->hub, identity, buf, cap) == 0)
        return;
    const char *t = api->url_template;
    const char *ph = strstr(t, "{identity}");
    if (ph == NULL) {
        snprintf(buf, cap, "%s", t);
        return;
    }
    snprintf(buf, cap, "%.*s%s%s", (int)(ph - t), t, identity,
             ph + strlen("{identity}"));
}

static json_t *json_u64(uint64_t v)
{
    /* jansson integers are signed 64-bit; counters saturate below 2^63. */
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* The stream ports leased to an allocation, and its stream options. */
static void view_streams(struct sl_hub_api *api, const char *identity,
                         json_t *j, char *url, size_t cap)
{
    int tcp = 0, udp = 0;
    (void)sl_store_port_get(api->store, identity, SL_STORE_TCP, &tcp);
    (void)sl_store_port_get(api->store, identity, SL_STORE_UDP, &udp);
    if (tcp > 0)
        json_object_set_new(j, "tcp_port", json_integer(tcp));
    if (udp > 0)
        json_object_set_new(j, "udp_port", json_integer(udp));
    if ((tcp > 0 || udp > 0) && api->hub != NULL)
        snprintf(url, cap, "%s://%s:%d", tcp > 0 ? "tcp" : "udp",
                 sl_hub_domain(api->hub), tcp > 0 ? tcp : udp);
    char text[16384];
    struct sl_stream_opts o;
    if (sl_store_opts_get(api->store, identity, text, sizeof(text)) == 0 &&
        text[0] != '\0' && sl_stream_opts_parse(text, &o, NULL, 0) == 0) {
        json_t *sj = sl_stream_opts_to_json(&o);
        if (sj != NULL)
            json_object_set_new(j, "streams", sj);
    }
}

/* With ACME, the identity's certificate: its state, until when it is
 * valid, when it is renewed, the last error. */
static void view_cert(struct sl_hub_api *api, const char *identity,
                      json_t *j)
{
    struct sl_acme *acme = api->hub != NULL ? sl_hub_acme(api->hub) : NULL;
    struct sl_acme_status st;
    if (acme == NULL)
        return;
    (void)sl_acme_status(acme, identity, &st);
    json_t *c = json_pack("{s:s, s:s}", "source", "acme", "state",
                          sl_acme_cert_state_name(st.state));
    if (c == NULL)
        return;
    if (st.name[0] != '\0')
        json_object_set_new(c, "name", json_string(st.name));
    if (st.not_after > 0) {
        json_object_set_new(c, "not_after", json_integer(st.not_after));
        json_object_set_new(c, "serial", json_string(st.serial));
        json_object_set_new(c, "issuer", json_string(st.issuer));
    }
    if (st.renew_at > 0)
        json_object_set_new(c, "renew_at", json_integer(st.renew_at));
    if (st.error[0] != '\0')
        json_object_set_new(c, "error", json_string(st.error));
    json_object_set_new(j, "certificate", c);
}

static json_t *view_json(struct sl_hub_api *api, const struct view *v)
{
    char url[512];
    make_url(api, v->a.identity, url, sizeof(url));
    const struct sl_store_traffic *t = &v->a.traffic;
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:{s:{s:o, s:o}, s:{s:o, s:o}}, "
        "s:{s:o, s:o}, s:{s:o, s:o}, s:b, s:I, s:o}",
        "identity", v->a.identity, "username", v->a.username, "url", url,
        "bridges", json_u64(v->has_live ? v->live.bridges : 0),
        /* Idle and paired data connections: what a client (or a test)
         * waits on before it expects a request to pair at once. */
        "pool", json_u64(v->has_live ? v->live.pool : 0),
        /* Multiplexed data connections (protocol v2): with one, a
         * request pairs at once on a stream, with no pool. */
        "mux", json_u64(v->has_live ? v->live.mux : 0),
        "pairs", json_u64(v->has_live ? v->live.pairs : 0),
        "traffic", "user", "down", json_u64(t->user_down), "up",
        json_u64(t->user_up), "bridge", "down", json_u64(t->bridge_down), "up",
        json_u64(t->bridge_up),
        "bandwidth", "down", json_u64(v->has_live ? v->live.bw_down : 0),
        "up", json_u64(v->has_live ? v->live.bw_up : 0),
        "limits", "bridges", json_u64(v->a.limits.bridges), "traffic",
        json_u64(v->a.limits.traffic),
        "limited", v->a.limited,
        "created_at", (json_int_t)v->a.created_at,
        "last_seen", v->a.last_seen > 0 ? json_integer(v->a.last_seen)
                                        : json_null());
    if (j != NULL) {
        view_cert(api, v->a.identity, j);
        sl_hub_api_plan_json(&v->plan, j);
        view_streams(api, v->a.identity, j, url, sizeof(url));
        json_object_set_new(j, "url", json_string(url));
    }
    return j;
}

/* --------------------------------------------------------------------- */
/* GET /api/proxy/                                                        */

struct list_ctx {
    struct sl_hub_api *api;
    json_t *arr;
    int failed;
};

static int list_one(const struct sl_alloc *a, void *arg)
{
    struct list_ctx *lc = arg;
    struct view v;
    view_fill(lc->api, a, &v);
    json_t *j = view_json(lc->api, &v);
    if (j == NULL || json_array_append_new(lc->arr, j) != 0) {
        lc->failed = 1;
        return 1;
    }
    return 0;
}

/* A new array of every allocation's view, or NULL. */
static json_t *list_json(struct sl_hub_api *api)
{
    struct list_ctx lc = {api, json_array(), 0};
    if (lc.arr == NULL)
        return NULL;
    int rc = sl_store_list(api->store, list_one, &lc);
    if (rc != 0 || lc.failed) {
        json_decref(lc.arr);
        return NULL;
    }
    return lc.arr;
}

static void on_list(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    json_t *arr = list_json(api);
    if (arr == NULL) {
        sl_api_reply_error(req, 500, "Store failed");
        return;
    }
    sl_api_reply_json(req, 200, json_pack("{s:o}", "proxies", arr));
}

/* --------------------------------------------------------------------- */
/* GET and DELETE /api/proxy/{identity}/                                  */

static int lookup(struct sl_hub_api *api, struct sl_api_req *req,
                  struct sl_alloc *a)
{
    const char *id = sl_api_req_param(req, "identity");
    if (id == NULL || !sl_identity_valid(id, strlen(id))) {
        sl_api_reply_error(req, 404, "Proxy not found");
        return -1;
    }
    int rc = sl_store_get_by_identity(api->store, id, a);
    if (rc == SL_ENOTFOUND) {
        sl_api_reply_error(req, 404, "Proxy not found");
        return -1;
    }
    if (rc != 0) {
        sl_api_reply_error(req, 500, "Store failed");
        return -1;
    }
    return 0;
}

static void on_get(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    struct sl_alloc a;
    if (lookup(api, req, &a) != 0)
        return;
    struct view v;
    view_fill(api, &a, &v);
    json_t *j = view_json(api, &v);
    if (j == NULL)
        sl_api_reply_error(req, 500, "Out of memory");
    else
        sl_api_reply_json(req, 200, j);
}

static void on_delete(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    struct sl_alloc a;
    if (lookup(api, req, &a) != 0)
        return;
    int rc = sl_store_remove(api->store, a.identity);
    if (rc != 0 && rc != SL_ENOTFOUND) {
        sl_api_reply_error(req, 500, "Store failed");
        return;
    }
    if (api->hub != NULL)
        sl_hub_forget(api->hub, a.identity);
    sl_info(&api->ctx->log, "hub-api: proxy %s (user %s) removed by %s",
            a.identity, a.username, sl_api_req_peer(req));
    sl_api_reply_json(req, 200, json_pack("{s:s}", "removed", a.identity));
}

/* --------------------------------------------------------------------- */
/* DELETE /api/proxy/prune/?older_than=SECONDS                            */

/* Seconds, optionally with one unit suffix: s, m, h, d, w. */
static int parse_age(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno != 0 || v < 0)
        return SL_EPARSE;
    int64_t mul = 1;
    switch (*end) {
    case '\0': break;
    case 's': mul = 1; end++; break;
    case 'm': mul = 60; end++; break;
    case 'h': mul = 3600; end++; break;
    case 'd': mul = 86400; end++; break;
    case 'w': mul = 7 * 86400; end++; break;
    default: return SL_EPARSE;
    }
    if (*end != '\0' || v > INT64_MAX / mul / 2)
        return SL_EPARSE;
    *out = (int64_t)v * mul;
    return 0;
}

struct prune_ctx {
    struct sl_hub_api *api;
    int64_t cutoff;
    json_t *removed;
};

static int prune_keep(const struct sl_alloc *a, void *arg)
{
    struct prune_ctx *pc = arg;
    struct sl_hub_live live;
    if (pc->api->hub != NULL &&
        sl_hub_live(pc->api->hub, a->identity, &live) == 0) {
        /* Live ones are never pruned, nor those the hub saw recently but
         * has not flushed yet. */
        if (live.bridges > 0 || live.pairs > 0 || live.pool > 0 ||
            live.last_seen >= pc->cutoff)
            return 1;
    }
    json_array_append_new(pc->removed, json_string(a->identity));
    return 0;
}

static void on_prune(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    char buf[64];
    int64_t age = DEFAULT_PRUNE_AGE;
    int rc = sl_api_req_query(req, "older_than", buf, sizeof(buf));
    if (rc == 0 && parse_age(buf, &age) != 0)
        rc = SL_EPARSE;
    if (rc != 0 && rc != SL_ENOTFOUND) {
        sl_api_reply_error(req, 400,
                           "older_than must be a number of seconds "
                           "(optionally with s, m, h, d or w)");
        return;
    }
    int64_t now = (int64_t)time(NULL);
    struct prune_ctx pc = {api, now - age, json_array()};
    if (pc.removed == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    size_t n = 0;
    rc = sl_store_prune(api->store, now, age, prune_keep, &pc, &n);
    if (rc != 0) {
        json_decref(pc.removed);
        sl_api_reply_error(req, 500, "Store failed");
        return;
    }
    size_t i;
    json_t *id;
    json_array_foreach(pc.removed, i, id)
    {
        if (api->hub != NULL)
            sl_hub_forget(api->hub, json_string_value(id));
    }
    sl_info(&api->ctx->log,
            "hub-api: pruned %zu proxies unseen for %" PRId64 " s (by %s)", n,
            age, sl_api_req_peer(req));
    sl_api_reply_json(req, 200,
                      json_pack("{s:I, s:o}", "removed", (json_int_t)n,
                                "identities", pc.removed));
}

/* --------------------------------------------------------------------- */
/* POST /api/proxy/                                                       */

struct create_job {
    uv_work_t work;
    struct sl_hub_api *api;
    struct sl_api_req *req;
    struct sl_store_limits limits;
    uint64_t rate; /* bandwidth cap, bytes/s; 0: the hub's default */
    int rotate;    /* a new password for identity, not an allocation */
    char *streams; /* stream options (JSON text), or NULL */
    int attempts;
    int rc;
    char identity[SL_IDENTITY_LEN + 1];
    char username[SL_USERNAME_LEN + 1];
    char password[SL_PASSWORD_LEN + 1];
    char hash[SL_PASSWORD_HASH_MAX];
};

static void api_maybe_free(struct sl_hub_api *api)
{
    if (api->closing && api->pending == 0) {
        free(api->url_template);
        free(api);
    }
}

static void job_free(struct create_job *job)
{
    /* The password is a secret: do not leave it in freed memory. */
    OPENSSL_cleanse(job->password, sizeof(job->password));
    free(job->streams);
    free(job);
}

static void create_work(uv_work_t *w)
{
    struct create_job *job = w->data;
    if (job->rotate) {
        job->rc = sl_random_string(job->password, SL_PASSWORD_LEN, SL_ALNUM);
        if (job->rc == 0)
            job->rc = sl_password_hash(job->password, job->hash,
                                       sizeof(job->hash));
        return;
    }
    job->rc = sl_identity_new(job->identity);
    if (job->rc == 0)
        job->rc = sl_creds_new(job->username, job->password);
    if (job->rc == 0)
        job->rc = sl_password_hash(job->password, job->hash,
                                   sizeof(job->hash));
}

static int get_limit(json_t *limits, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(limits, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return SL_EPARSE;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int queue_job(struct create_job *job);
static void rotate_done(struct create_job *job);

static void create_done(uv_work_t *w, int status)
{
    struct create_job *job = w->data;
    struct sl_hub_api *api = job->api;
    api->pending--;
    if (api->closing || status != 0) {
        /* The store may be gone already: drop the request. */
        sl_api_reply_error(job->req, 503, "Shutting down");
        job_free(job);
        api_maybe_free(api);
        return;
    }
    if (job->rc != 0) {
        sl_error(&api->ctx->log, "hub-api: making credentials failed: %s",
                 sl_strerror(job->rc));
        sl_api_reply_error(job->req, 500, "Could not make credentials");
        job_free(job);
        return;
    }
    if (job->rotate) {
        rotate_done(job);
        return;
    }
    struct sl_alloc a;
    memset(&a, 0, sizeof(a));
    snprintf(a.identity, sizeof(a.identity), "%s", job->identity);
    snprintf(a.username, sizeof(a.username), "%s", job->username);
    snprintf(a.password_hash, sizeof(a.password_hash), "%s", job->hash);
    a.limits = job->limits;
    a.created_at = (int64_t)time(NULL);
    int rc = sl_store_create(api->store, &a);
    if (rc == SL_EEXIST && ++job->attempts < CREATE_ATTEMPTS) {
        /* An identity or username collision: draw again. */
        if (queue_job(job) == 0)
            return;
        rc = SL_ESTATE;
    }
    if (rc == 0 && job->streams != NULL)
        rc = sl_store_opts_set(api->store, a.identity, job->streams);
    if (rc == 0) {
        /* The operator chose its limits: they are its plan without a
         * grant, wherever the hub demands grants. */
        struct sl_store_plan plan;
        memset(&plan, 0, sizeof(plan));
        plan.operator_made = 1;
        plan.rate = job->rate;
        rc = sl_store_plan_set(api->store, a.identity, &plan);
    }
    if (rc != 0) {
        sl_api_reply_error(job->req, 500, "Store failed");
        job_free(job);
        return;
    }
    sl_info(&api->ctx->log,
            "hub-api: proxy %s (user %s) created by %s, limits bridges "
            "%" PRIu64 " traffic %" PRIu64,
            a.identity, a.username, sl_api_req_peer(job->req),
            a.limits.bridges, a.limits.traffic);
    /* Its certificate is ordered now, not when its bridge comes. */
    if (api->hub != NULL)
        sl_acme_want(sl_hub_acme(api->hub), a.identity);
    struct view v;
    view_fill(api, &a, &v);
    json_t *j = view_json(api, &v);
    if (j != NULL)
        json_object_set_new(j, "password", json_string(job->password));
    if (j == NULL)
        sl_api_reply_error(job->req, 500, "Out of memory");
    else
        sl_api_reply_json(job->req, 201, j);
    job_free(job);
}

static int queue_job(struct create_job *job)
{
    job->work.data = job;
    int rc = uv_queue_work(job->api->ctx->loop, &job->work, create_work,
                           create_done);
    if (rc == 0)
        job->api->pending++;
    return rc;
}

static void on_create(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    json_t *body = NULL;
    /* A limit the body does not name is the hub's default, as for an
     * allocation a bridge makes; 0 given explicitly is unlimited. */
    struct sl_store_limits limits = {0, 0};
    uint64_t rate = 0;
    static struct sl_stream_opts so_zero;
    struct sl_stream_opts so = so_zero;
    if (api->hub != NULL)
        limits = sl_hub_default_limits(api->hub);
    if (sl_api_req_json(req, &body) != 0) {
        sl_api_reply_error(req, 400, "Body is not valid JSON");
        return;
    }
    if (body != NULL) {
        json_t *l = json_object_get(body, "limits");
        if (!json_is_object(body) ||
            (l != NULL && !json_is_null(l) && !json_is_object(l)) ||
            get_limit(l, "bridges", &limits.bridges) != 0 ||
            get_limit(l, "traffic", &limits.traffic) != 0 ||
            get_limit(l, "rate", &rate) != 0 ||
            get_limit(body, "rate", &rate) != 0) {
            json_decref(body);
            sl_api_reply_error(req, 400,
                               "Expected {\"limits\": {\"bridges\": N, "
                               "\"traffic\": BYTES}, \"rate\": BYTES_PER_S} "
                               "with N, BYTES, BYTES_PER_S >= 0");
            return;
        }
        /* TCP/UDP tunnel options: acl, proxy_protocol, max_connections,
         * max_sessions (tunnel/stream_opts.h), beside the limits. */
        char err[200];
        int rc = sl_stream_opts_from_json(body, &so, err, sizeof(err));
        json_decref(body);
        if (rc != 0) {
            sl_api_reply_error(req, 400, err);
            return;
        }
    }
    struct create_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    job->api = api;
    job->req = req;
    job->limits = limits;
    job->rate = rate;
    if (!sl_stream_opts_empty(&so)) {
        json_t *sj = sl_stream_opts_to_json(&so);
        job->streams = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
        json_decref(sj);
        if (job->streams == NULL) {
            free(job);
            sl_api_reply_error(req, 500, "Out of memory");
            return;
        }
    }
    if (queue_job(job) != 0) {
        free(job);
        sl_api_reply_error(req, 500, "Could not queue work");
    }
}

/* --------------------------------------------------------------------- */
/* POST /api/proxy/{identity}/rotate/                                     */

/* The new password is made and hashed in the thread pool (create_work),
 * then put in force; the old one opens for the hub's grace period. */
static void rotate_done(struct create_job *job)
{
    struct sl_hub_api *api = job->api;
    int64_t until = 0;
    int rc = sl_hub_rotate(api->hub, api->store, job->identity, job->hash,
                           &until);
    if (rc == SL_ENOTFOUND) {
        sl_api_reply_error(job->req, 404, "Proxy not found");
    } else if (rc != 0) {
        sl_api_reply_error(job->req, 500, "Store failed");
    } else {
        sl_info(&api->ctx->log, "hub-api: proxy %s: password rotated by %s",
                job->identity, sl_api_req_peer(job->req));
        sl_api_reply_json(
            job->req, 200,
            json_pack("{s:s, s:s, s:s, s:I, s:I}", "identity", job->identity,
                      "username", job->username, "password", job->password,
                      "rotated_at", (json_int_t)(time(NULL)),
                      "old_password_until", (json_int_t)(until / 1000)));
    }
    job_free(job);
}

static void on_rotate(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    struct sl_alloc a;
    if (lookup(api, req, &a) != 0)
        return;
    struct create_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    job->api = api;
    job->req = req;
    job->rotate = 1;
    /* Both as stored: an identity (checked by lookup) and a username of
     * SL_USERNAME_LEN. */
    snprintf(job->identity, sizeof(job->identity), "%.*s", SL_IDENTITY_LEN,
             a.identity);
    snprintf(job->username, sizeof(job->username), "%.*s", SL_USERNAME_LEN,
             a.username);
    if (queue_job(job) != 0) {
        free(job);
        sl_api_reply_error(req, 500, "Could not queue work");
    }
}

/* --------------------------------------------------------------------- */
/* GET /metrics                                                           */

struct text {
    char *data;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t,
                                                         const char *fmt,
                                                         ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data ? t->data + t->len : NULL,
                          t->data ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->data != NULL && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        if (cap > METRICS_MAX) {
            t->failed = 1;
            return;
        }
        char *d = realloc(t->data, cap);
        if (d == NULL) {
            t->failed = 1;
            return;
        }
        t->data = d;
        t->cap = cap;
    }
}

struct metrics_ctx {
    struct sl_hub_api *api;
    struct text *t;
    int pass;
    uint64_t count;
};

static const char *const metric_help[][3] = {
    {"sluice_proxy_traffic_bytes_total", "counter",
     "Bytes carried for an allocation (side: user or bridge; direction: "
     "down towards the user, up from the user)."},
    {"sluice_proxy_bridges", "gauge", "Live bridge control connections."},
    {"sluice_proxy_bandwidth_bytes_per_second", "gauge",
     "Recent user traffic rate."},
    {"sluice_proxy_limited", "gauge",
     "1 when the allocation's traffic limit was reached."},
    {"sluice_proxy_limit_traffic_bytes", "gauge",
     "Traffic limit of the allocation (0: unlimited)."},
    {"sluice_proxy_last_seen_timestamp_seconds", "gauge",
     "Unix time of the last bridge activity (0: never)."},
};

/* Prometheus wants all samples of one metric together, so the list is
 * walked once per metric. Identities are [a-z0-9] only: no escaping. */
static int metrics_one(const struct sl_alloc *a, void *arg)
{
    struct metrics_ctx *mc = arg;
    struct view v;
    view_fill(mc->api, a, &v);
    const char *id = v.a.identity;
    struct text *t = mc->t;
    const struct sl_store_traffic *tr = &v.a.traffic;
    mc->count++;
    switch (mc->pass) {
    case 0:
        text_add(t,
                 "sluice_proxy_traffic_bytes_total{identity=\"%s\",side="
                 "\"user\",direction=\"down\"} %" PRIu64 "\n"
                 "sluice_proxy_traffic_bytes_total{identity=\"%s\",side="
                 "\"user\",direction=\"up\"} %" PRIu64 "\n"
                 "sluice_proxy_traffic_bytes_total{identity=\"%s\",side="
                 "\"bridge\",direction=\"down\"} %" PRIu64 "\n"
                 "sluice_proxy_traffic_bytes_total{identity=\"%s\",side="
                 "\"bridge\",direction=\"up\"} %" PRIu64 "\n",
                 id, tr->user_down, id, tr->user_up, id, tr->bridge_down, id,
                 tr->bridge_up);
        break;
    case 1:
        text_add(t, "sluice_proxy_bridges{identity=\"%s\"} %u\n", id,
                 v.has_live ? v.live.bridges : 0u);
        break;
    case 2:
        text_add(t,
                 "sluice_proxy_bandwidth_bytes_per_second{identity=\"%s\","
                 "direction=\"down\"} %" PRIu64 "\n"
                 "sluice_proxy_bandwidth_bytes_per_second{identity=\"%s\","
                 "direction=\"up\"} %" PRIu64 "\n",
                 id, v.has_live ? v.live.bw_down : 0, id,
                 v.has_live ? v.live.bw_up : 0);
        break;
    case 3:
        text_add(t, "sluice_proxy_limited{identity=\"%s\"} %d\n", id,
                 v.a.limited ? 1 : 0);
        break;
    case 4:
        text_add(t,
                 "sluice_proxy_limit_traffic_bytes{identity=\"%s\"} %" PRIu64
                 "\n",
                 id, v.a.limits.traffic);
        break;
    case 5:
        text_add(t,
                 "sluice_proxy_last_seen_timestamp_seconds{identity=\"%s\"} "
                 "%" PRId64 "\n",
                 id, v.a.last_seen);
        break;
    }
    return t->failed ? 1 : 0;
}

static void on_metrics(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    struct text t = {0};
    struct metrics_ctx mc = {api, &t, 0, 0};
    size_t npasses = sizeof(metric_help) / sizeof(metric_help[0]);
    int rc = 0;
    for (size_t p = 0; p < npasses && rc == 0; p++) {
        text_add(&t, "# HELP %s %s\n# TYPE %s %s\n", metric_help[p][0],
                 metric_help[p][2], metric_help[p][0], metric_help[p][1]);
        mc.pass = (int)p;
        mc.count = 0;
        rc = sl_store_list(api->store, metrics_one, &mc);
    }
    text_add(&t,
             "# HELP sluice_proxies Allocations in the store.\n"
             "# TYPE sluice_proxies gauge\nsluice_proxies %" PRIu64 "\n",
             mc.count);
    if (api->hub != NULL) {
        struct sl_hub_totals tot;
        memset(&tot, 0, sizeof(tot));
        sl_hub_totals(api->hub, &tot);
        text_add(&t,
                 "# HELP sluice_hub_user_connections Open user "
                 "connections.\n"
                 "# TYPE sluice_hub_user_connections gauge\n"
                 "sluice_hub_user_connections %" PRIu64 "\n"
                 "# HELP sluice_hub_control_connections Open bridge control "
                 "connections.\n"
                 "# TYPE sluice_hub_control_connections gauge\n"
                 "sluice_hub_control_connections %" PRIu64 "\n"
                 "# HELP sluice_hub_data_connections Open bridge data "
                 "connections.\n"
                 "# TYPE sluice_hub_data_connections gauge\n"
                 "sluice_hub_data_connections %" PRIu64 "\n"
                 "# HELP sluice_hub_requests_total User requests routed.\n"
                 "# TYPE sluice_hub_requests_total counter\n"
                 "sluice_hub_requests_total %" PRIu64 "\n",
                 tot.user_conns, tot.control_conns, tot.data_conns,
                 tot.requests);
    }
    if (rc != 0 || t.failed) {
        free(t.data);
        sl_api_reply_error(req, 500, "Could not build metrics");
        return;
    }
    sl_api_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                      t.data, t.len);
    free(t.data);
}

/* --------------------------------------------------------------------- */
/* The dashboard (api/dashboard.h): its page and files, and its live feed,
 * the list answer once a second. */

static char *snapshot(void *arg, size_t *len)
{
    struct sl_hub_api *api = arg;
    json_t *arr = list_json(api);
    /* rotate: the page offers the rotate action (it needs the hub). */
    json_t *j = arr ? json_pack("{s:o, s:I, s:b}", "proxies", arr, "time",
                                (json_int_t)time(NULL), "rotate",
                                api->hub != NULL)
                    : NULL;
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s != NULL)
        *len = strlen(s);
    return s;
}

static void on_dash_page(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    sl_dash_serve_page(req, "hub.html",
                       sl_api_server_dashboard_key(api->server));
}

static void on_dash_asset(struct sl_api_req *req, void *arg)
{
    (void)arg;
    sl_dash_serve_asset(req);
}

static void on_events(struct sl_api_req *req, void *arg)
{
    struct sl_hub_api *api = arg;
    sl_sse_add(api->sse, req);
}

/* --------------------------------------------------------------------- */

static const struct sl_api_route routes[] = {
    {"GET", "/api/proxy/", on_list},
    {"POST", "/api/proxy/", on_create},
    {"DELETE", "/api/proxy/prune/", on_prune},
    {"GET", "/api/proxy/{identity}/", on_get},
    {"DELETE", "/api/proxy/{identity}/", on_delete},
    {"POST", "/api/proxy/{identity}/rotate/", on_rotate},
    {"GET", "/metrics", on_metrics},
    {"GET", "/", on_dash_page},
    {"GET", "/ui/{file}", on_dash_asset},
    {"GET", "/api/events", on_events},
};

int sl_hub_api_start(struct sl_ctx *ctx, struct sl_hub *hub,
                     const char *listen_addr, const char *admin_token,
                     struct sl_store *store,
                     const struct sl_hub_api_opts *opts,
                     struct sl_hub_api **out)
{
    if (ctx == NULL || listen_addr == NULL || store == NULL || out == NULL)
        return UV_EINVAL;
    *out = NULL;
    struct sl_hub_api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return UV_ENOMEM;
    api->ctx = ctx;
    api->hub = hub;
    api->store = store;
    const char *tmpl = opts && opts->url_template
                           ? opts->url_template
                           : "http://{identity}.localhost:8080/";
    api->url_template = strdup(tmpl);
    api->sse = sl_sse_new(ctx->loop, 0, 0, snapshot, api);
    if (api->url_template == NULL || api->sse == NULL) {
        sl_sse_free(api->sse);
        free(api->url_template);
        free(api);
        return UV_ENOMEM;
    }
    struct sl_api_config cfg = {
        .name = "hub-api",
        .listen = listen_addr,
        .token = admin_token,
        .require_token = opts ? opts->require_token : 0,
        .routes = routes,
        .nroutes = sizeof(routes) / sizeof(routes[0]),
        .arg = api,
        /* Off loopback the token crosses the network: TLS, with the
         * hub's certificate. */
        .tls = hub != NULL && !sl_api_listen_is_loopback(listen_addr)
                   ? sl_hub_tls(hub)
                   : NULL,
        .dashboard = 1,
    };
    int rc = sl_api_server_start(ctx, &cfg, &api->server);
    if (rc != 0) {
        sl_sse_free(api->sse);
        free(api->url_template);
        free(api);
        return rc;
    }
    *out = api;
    return 0;
}

void sl_hub_api_close(struct sl_hub_api *api)
{
    if (api == NULL || api->closing)
        return;
    api->closing = 1;
    /* The streams first: they live on the server's connections. */
    sl_sse_free(api->sse);
    api->sse = NULL;
    sl_api_server_close(api->server);
    api->server = NULL;
    api_maybe_free(api);
}

int sl_hub_api_address(const struct sl_hub_api *api, char *buf, size_t cap)
{
    return sl_api_server_address(api->server, buf, cap);
}
