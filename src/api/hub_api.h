/* The hub's admin REST API, on its own listener (default 127.0.0.1:8081):
 *
 *   GET    /api/proxy/                 list allocations (+ live info)
 *   POST   /api/proxy/                 create one; body optional
 *                                      {"limits":{"bridges":N,"traffic":B}}
 *   GET    /api/proxy/{identity}/      one allocation
 *   DELETE /api/proxy/{identity}/      remove it, disconnect its bridges
 *   DELETE /api/proxy/prune/?older_than=SECONDS   (default 604800 = 7 d)
 *   GET    /metrics                    Prometheus text format 0.0.4
 *   GET    /                           the web dashboard (api/dashboard.h)
 *   GET    /ui/{file}                  its script and style
 *   GET    /api/events                 its live feed: server-sent events,
 *                                      {"proxies":[...],"time":UNIX,
 *                                      "rotate":BOOL} a second
 *                                      (api/sse.h)
 *
 * An allocation in JSON (list items, GET, and the create answer):
 *   {"identity":"ab1234567890","username":"Xy12ab","url":"http://...",
 *    "bridges":1,                          live control connections
 *    "traffic":{"user":{"down":N,"up":N},"bridge":{"down":N,"up":N}},
 *    "bandwidth":{"down":BPS,"up":BPS},    live, bytes/s (0 when idle)
 *    "limits":{"bridges":N,"traffic":N},   0 = unlimited
 *    "limited":false,
 *    "created_at":UNIX, "last_seen":UNIX|null}
 * The list answer is {"proxies":[...]}; create adds "password" (the only
 * time it is shown) and answers 201; remove answers {"removed":"<id>"};
 * prune answers {"removed":N,"identities":[...]}. Errors follow
 * api/server.h: {"error":"...","code":N} (404 "Proxy not found", 400 for
 * a bad body or query).
 *
 * Live numbers come from the hub when hub is not NULL (counters in the
 * store are flushed by the hub now and then; the API shows the larger of
 * store and live); with hub NULL (tests, or an API-only process) the store
 * alone answers and bridges/bandwidth read 0. Live allocations (a bridge
 * connected) are never pruned. The password hash of a create is computed
 * in the libuv thread pool (scrypt costs ~50 ms). */
#ifndef SL_API_HUB_API_H
#define SL_API_HUB_API_H

#include <stddef.h>

#include "core/ctx.h"

struct sl_hub;
struct sl_store;
struct sl_hub_api;

struct sl_hub_api_opts {
    int require_token; /* 1: bearer token even on loopback (tests, paranoia) */
    /* Public URL of an identity when the hub cannot tell (hub NULL):
     * "{identity}" is replaced, e.g. "http://{identity}.localhost:8080/".
     * NULL: "http://{identity}.localhost:8080/". */
    const char *url_template;
};

/* Starts the admin API on listen_addr ("127.0.0.1:8081"; port 0 = any).
 * admin_token may be NULL when listening on loopback (see api/server.h for
 * the access rule). hub may be NULL; store must not be; both must outlive
 * the API. opts may be NULL (defaults). On success *out owns the API
 * (sl_hub_api_close). Returns 0 or the error of sl_api_server_start. */
int sl_hub_api_start(struct sl_ctx *ctx, struct sl_hub *hub,
                     const char *listen_addr, const char *admin_token,
                     struct sl_store *store,
                     const struct sl_hub_api_opts *opts,
                     struct sl_hub_api **out);

/* Closes the listener and connections; requests whose scrypt work is still
 * in the thread pool finish and are dropped. Run the loop afterwards so
 * libuv can release the handles. NULL is a no-op. */
void sl_hub_api_close(struct sl_hub_api *api);

/* Bound address "ip:port" (for hub.json). Returns 0 or SL_ETOOBIG. */
int sl_hub_api_address(const struct sl_hub_api *api, char *buf, size_t cap);

#endif
