/* The hub role: the public HTTP listener that routes user requests by Host
 * to bridges, and serves the bridge endpoints /_sluice/v1/control and
 * /_sluice/v1/data (docs/protocol.md). One per process, on ctx->loop.
 *
 * Allocations live in the store (hub/store.h); the hub keeps an in-memory
 * entry for each allocation it has seen since it started (bridges, idle
 * pool, live pairs, traffic counted and not yet flushed). Counters are
 * flushed to the store every flush_ms and on stop, in one short batch. */
#ifndef SL_HUB_HUB_H
#define SL_HUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "hub/store.h"

struct sl_tls_server;
struct sl_hub_plan_options;
struct sl_acme;
struct sl_acme_opts;

struct sl_hub;

enum {
    SL_HUB_COOKIES_AUTO = 0, /* on unless the domain is localhost */
    SL_HUB_COOKIES_ON = 1,
    SL_HUB_COOKIES_OFF = 2,
};

struct sl_hub_options {
    const char *http_addr;     /* public listener; NULL: "127.0.0.1:8080" */
    int no_http;               /* no plain listener (TLS only) */
    const char *https_addr;    /* TLS listener; NULL: none */
    /* Certificates of the TLS listener (PEM pairs, chosen by SNI; the
     * first is the default); none: a local CA in <state_dir>/tls/. */
    const char *const *tls_cert_files;
    const char *const *tls_key_files;
    size_t ntls_certs;
    int https_redirect;        /* plain user requests get 308 to https */
    /* TCP and UDP through bridges: the ports leased to allocations
     * (0: 20000-29999), bound on stream_bind's IP (NULL: the public
     * listener's). */
    int stream_port_min, stream_port_max;
    const char *stream_bind;
    uint64_t udp_idle_ms;      /* a UDP flow idle this long is forgotten
                                  (0: 300000) */
    int tls_for_api;           /* certificates even without --https: the
                                  admin API on a public address uses them */
    const char *domain;        /* NULL: "localhost" */
    const char *public_scheme; /* in welcome URLs; NULL: "https" with a
                                  TLS listener, else "http" */
    int public_port;           /* in welcome URLs; 0: the listener's port
                                  (the TLS one's when there is one);
                                  -1: none (the scheme's default) */
    const char *gateway_token; /* NULL or "": anyone may allocate */
    const char *state_dir;     /* store file <state_dir>/hub.db; NULL:
                                  an in-memory store (lost at exit) */
    const char *store_url;     /* "sqlite:PATH" or "postgres://...": the
                                  store instead of <state_dir>/hub.db */
    struct sl_store *store;    /* if not NULL, used instead of state_dir
                                  (not owned; must outlive the hub) */
    struct sl_store_limits default_limits; /* of new allocations; 0 =
                                              unlimited (a local hub) */
    /* Grants, the free plan, bandwidth caps, rotation (hub/hub_plan.h);
     * NULL: no grants, no cap, the default grace. Not kept after start. */
    const struct sl_hub_plan_options *plans;
    /* Timers; 0 means the protocol's default. For tests. */
    uint64_t pairing_window_ms; /* 8000 */
    uint64_t head_timeout_ms;   /* 10000 */
    uint64_t pool_max_age_ms;   /* 60000 */
    uint64_t ping_ms;           /* 15000 */
    uint64_t dead_ms;           /* 45000 */
    uint64_t flush_ms;          /* 5000: store flush and stats messages */
    /* Allocations without credentials cost an scrypt run and a row
     * each: token buckets refilled per minute, one per source (IPv6 per
     * /64) and one for the hub; over either, 429. 0: no limit (a hub
     * for local use; the CLI's defaults are 10 and 60 a minute). */
    uint32_t alloc_rate_per_source;
    uint32_t alloc_rate_global;
    uint64_t alloc_idle_expiry_s;   /* an allocation without a bridge
                                       for this long is removed; 0:
                                       never */
    uint32_t auth_failures_max; /* per username and source address a
                                   minute (ten times that per address);
                                   0: 5 */
    /* Set-Cookie Domain attributes naming a parent of an identity's host
     * are removed, so one tenant cannot set cookies on another. */
    int cookie_isolation; /* SL_HUB_COOKIES_* */
    /* Idle timeouts of a user request once paired, reset by progress
     * either way (a read or a finished write on either side), as
     * HAProxy's timeout client/server/tunnel. 0: the default. */
    uint64_t client_timeout_ms; /* 60000: the user sends the request
                                   body, or leaves the last answer
                                   unread: 408 if nothing was answered */
    uint64_t server_timeout_ms; /* 60000: waiting for (more of) the
                                   response: 504 if nothing was answered */
    uint64_t tunnel_timeout_ms; /* 3600000: after a 101, both ways */
    /* Caps; 0: the default. Over one: an answer (below), the refusal
     * logged once per burst. */
    uint32_t max_user_conns;    /* user connections, whole hub: 503;
                                   default 10000, at most half the
                                   descriptors left to the process */
    uint32_t max_conns_per_ip;  /* user connections per source address:
                                   429; default 256 */
    uint32_t max_pairs;         /* live and pairing requests per
                                   allocation: 503; default 1024 */
    uint32_t max_data_conns;    /* data connections per allocation
                                   (paired and idle): 429 to the bridge;
                                   default max_pairs + 16 (the pool) */
    /* Protocol v2: multiplexed data connections each bridge that offers
     * them keeps (welcome's mux, 0-4); user connections then ride on
     * them as streams. 0: none, every user connection gets a data
     * connection of its own (the pool). */
    int mux_conns;
    uint64_t mux_budget; /* bytes streams' receive windows may grow by,
                            all together (0: 64 MiB) */
    /* ACME (acme/acme.h): certificates from a CA for the TLS listener;
     * NULL: none. Its domain and state_dir are the hub's. Needs
     * https_addr. Not kept after start. */
    const struct sl_acme_opts *acme;
};

/* Live view of one allocation, for the admin API and metrics. */
struct sl_hub_live {
    char identity[SL_STORE_IDENTITY_MAX];
    uint32_t bridges;  /* live control connections */
    uint32_t pool;     /* idle data connections */
    uint32_t mux;      /* multiplexed data connections taking streams */
    uint32_t pairs;    /* live user<->bridge pairs */
    /* Totals: the store's counters when the hub loaded the allocation
     * plus everything counted since (flushed or not). */
    struct sl_store_traffic traffic;
    uint64_t bw_down;  /* bytes/s towards users, over the last seconds */
    uint64_t bw_up;    /* bytes/s from users */
    int limited;
    int64_t last_seen; /* unix seconds; 0 never */
};

/* Process-wide counters, for metrics. */
struct sl_hub_totals {
    uint64_t user_conns;      /* open user connections */
    uint64_t control_conns;   /* open control connections */
    uint64_t data_conns;      /* open data connections (pool and paired) */
    uint64_t requests;        /* user requests routed since start */
};

/* Starts the hub: opens the store (unless opts->store), binds the public
 * listener, and sets ctx->hub. opts is copied (strings too). Returns 0 or a
 * negative code (SL_ECONFIG bad address/domain, a libuv bind error,
 * SL_ESTATE store failure); nothing is left running on failure. */
int sl_hub_start(struct sl_ctx *ctx, const struct sl_hub_options *opts);

/* Stops: closes the listener and every connection, flushes counters to the
 * store, closes the store (if the hub opened it), then calls done(arg)
 * from the loop; the hub's memory is freed before done is called and
 * ctx->hub is set to NULL. done may be NULL. Safe once; a second call does
 * nothing. */
void sl_hub_stop(struct sl_hub *hub, void (*done)(void *), void *arg);

/* The bound public address, "ip:port". Returns 0 or SL_ETOOBIG. */
int sl_hub_address(const struct sl_hub *hub, char *buf, size_t cap);

/* The TLS listener's address, "ip:port". Returns 0, SL_ENOTFOUND when
 * the hub has none, or SL_ETOOBIG. */
int sl_hub_tls_address(const struct sl_hub *hub, char *buf, size_t cap);

/* The hub's certificates (for the admin API), or NULL without TLS. */
struct sl_tls_server *sl_hub_tls(struct sl_hub *hub);

/* The hub's ACME client (for the admin API), or NULL without --acme. */
struct sl_acme *sl_hub_acme(struct sl_hub *hub);

/* The local CA's certificate when the hub made one (no --tls-cert), for
 * `curl --cacert`; else NULL. */
const char *sl_hub_ca_path(const struct sl_hub *hub);

/* SIGHUP: the TLS certificates are read again (off the loop); live
 * connections keep theirs. */
void sl_hub_reload(struct sl_hub *hub);

/* The domain identities live under, e.g. "localhost". */
const char *sl_hub_domain(const struct sl_hub *hub);

/* The store the hub uses (for the admin API). Never NULL after start. */
struct sl_store *sl_hub_store(struct sl_hub *hub);

/* The limits a new allocation gets unless it names its own (--limit-*). */
struct sl_store_limits sl_hub_default_limits(const struct sl_hub *hub);

/* Public URL of an identity, e.g. "http://ab1234567890.localhost:8080/".
 * Returns 0 or SL_ETOOBIG. */
int sl_hub_url(const struct sl_hub *hub, const char *identity, char *buf,
               size_t cap);

/* Live view of identity. Returns 0, or SL_ENOTFOUND if the hub holds no
 * entry for it (never seen since start: read the store instead). */
int sl_hub_live(struct sl_hub *hub, const char *identity,
                struct sl_hub_live *out);

/* Calls cb for each allocation the hub holds an entry for. cb returns 0 to
 * go on, non-zero to stop (that value is returned). cb must not call
 * sl_hub_forget. Returns 0 or cb's value. */
typedef int (*sl_hub_live_cb)(const struct sl_hub_live *live, void *arg);
int sl_hub_live_each(struct sl_hub *hub, sl_hub_live_cb cb, void *arg);

/* The allocation was removed from the store (admin API): closes its
 * bridges, pool and pairs and drops the hub's entry without flushing it.
 * Unknown identities are ignored. */
void sl_hub_forget(struct sl_hub *hub, const char *identity);

void sl_hub_totals(const struct sl_hub *hub, struct sl_hub_totals *out);

#endif
