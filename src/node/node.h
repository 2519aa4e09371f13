/* The bridge node: dials hubs over WebSocket and forwards the user
 * connections they hand it to local upstream services
 * (docs/protocol.md is the wire contract).
 *
 * A node has bridges. Each bridge links one upstream (`http://host:port`)
 * to one hub, under the identity and credentials the hub allocated to it on
 * first contact; bridges are kept in the state directory (bridges.json,
 * see node/node_state.h) and started again at the next boot. Per bridge:
 *  - a control connection (WebSocket), re-dialled with exponential back-off
 *    and jitter after any loss, keeping the identity;
 *  - a pool of idle data connections (default 2) that the hub answers
 *    `101` only when it pairs them with a user connection; an `open` from
 *    the hub dials one more with the fingerprint it names;
 *  - on a `101`, a dial of the upstream after checking every resolved
 *    address is private (unless allow_public_upstream), then a raw relay
 *    (or a framed one, when the hub or an intermediary refused raw);
 *    `502 Bad Gateway` with "Upstream not reachable" / "Upstream not
 *    private" when that fails.
 *
 * Everything runs on ctx->loop and nothing blocks it, except the one
 * synchronous read of bridges.json in sl_node_start (before traffic).
 * Not thread-safe. */
#ifndef SL_NODE_H
#define SL_NODE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "tunnel/stream_opts.h"

#define SL_NODE_API_DEFAULT "127.0.0.1:8082"
#define SL_NODE_HUB_DEFAULT "http://127.0.0.1:8080"
#define SL_NODE_POOL_DEFAULT 2

struct sl_node;
struct sl_node_agent_opts;
struct sl_node_bridge;

struct sl_node_options {
    const char *state_dir;     /* required; created (0700) when missing */
    const char *api_listen;    /* NULL: SL_NODE_API_DEFAULT; "": no API */
    int allow_public_upstream; /* 1: skip the private-address check */
    int pool_size;             /* idle data connections per bridge; <0:
                                  SL_NODE_POOL_DEFAULT; at most 16 */
    const char *default_hub;   /* hub of bridges added without one; NULL:
                                  SL_NODE_HUB_DEFAULT (copied) */
    int framed;                /* 1: never ask for raw data connections
                                  (for intermediaries that mangle them) */
    int no_mux;                /* 1: never offer multiplexed data
                                  connections (protocol v2): a data
                                  connection per user connection */
    uint64_t ping_ms, dead_ms; /* WebSocket keep-alive; 0: net/ws.h's
                                  defaults (15 s, 45 s). For tests. */
    /* https:// hubs: the hub's certificate is verified against hub_ca
     * (PEM; NULL: the system store) and the URL's host name, and its key
     * against hub_pin ("sha256/<base64>", NULL: any) before any
     * credential is sent. hub_insecure skips the chain and name checks
     * (for tests; a warning says so). */
    const char *hub_ca;
    const char *hub_pin;
    int hub_insecure;
    /* tcp:// and udp:// bridges: their ACL, PROXY header and caps, sent
     * to the hub in hello (NULL: none). */
    const struct sl_stream_opts *streams;
    /* The request inspector of http:// bridges (node/node_inspect.h):
     * 0 on when the node has its API (loopback; the default), 1 on, -1
     * off. inspect_keep: exchanges kept per bridge (0: 50). */
    int inspect;
    size_t inspect_keep;
    /* The agent port (node/node_agent.h), or NULL for none. */
    const struct sl_node_agent_opts *agent;
};

/* Loads the bridges of opts->state_dir, starts those not disconnected by
 * the user and starts the local API (the caller publishes its address,
 * sl_node_api_address, in node.json: core/statedir.h). On success the node
 * is ctx->node and is freed by sl_node_stop. Returns 0 or a negative code
 * (SL_ECONFIG bad options, SL_EPARSE unreadable bridges.json, a libuv
 * error such as UV_EADDRINUSE for the API address); then nothing is left
 * running and ctx->node stays NULL. */
int sl_node_start(struct sl_ctx *ctx, const struct sl_node_options *opts);

/* UDP flows of udp:// bridges idle for ms are forgotten (0: 5 min; a
 * hidden option for tests). Takes effect for carriers started after. */
void sl_node_set_udp_idle_ms(struct sl_node *node, uint64_t ms);

/* Hub names are looked up again every ms (0: a minute; a hidden option
 * for tests). */
void sl_node_set_hub_resolve_ms(struct sl_node *node, uint64_t ms);

/* Closes every connection and the API, writes the state one last time,
 * frees the node (ctx->node becomes NULL) and then calls done_cb(arg) (may
 * be NULL). The loop must keep running until then. Safe to call twice
 * (the second call is ignored). */
typedef void (*sl_node_stopped_cb)(void *arg);
void sl_node_stop(struct sl_node *node, sl_node_stopped_cb done_cb,
                  void *arg);

/* --- bridge management (used by the local API and boot up) ----------- */

/* What a new bridge is given. hub NULL or "" means the node's default hub
 * (sl_node_options.default_hub, else SL_NODE_HUB_DEFAULT); token, username
 * and password may be NULL. username and password name an allocation made
 * beforehand on the hub (`sluice proxy create`): both or neither; without
 * them the hub makes a new allocation at the first connection. hub may
 * list hubs sharing one store, comma-separated: the bridge keeps a
 * connection to each of their addresses (node_hubs.c). */
struct sl_node_bridge_spec {
    const char *upstream, *hub, *token, *username, *password;
    const char *grant; /* a grant for the hub (tunnel/grant.h), or NULL */
};

/* Adds and starts a bridge. On bad input returns SL_EPARSE with a reason
 * in err; on a bridge with the same upstream and hub returns SL_EEXIST
 * (and *out is that bridge), or SL_EDENIED with a reason when that bridge
 * has other credentials than the spec names; SL_ELIMIT past
 * SL_NODE_BRIDGES_MAX. *out may be NULL. */
int sl_node_bridge_add(struct sl_node *node,
                       const struct sl_node_bridge_spec *spec,
                       struct sl_node_bridge **out, char *err, size_t errcap);

/* The bridge with this identity, or NULL. */
struct sl_node_bridge *sl_node_bridge_find(struct sl_node *node,
                                           const char *identity);

/* Changes what bridge b shows its hub, and persists it: password (NULL:
 * kept; after `sluice proxy rotate`, used from the next connection on,
 * the hub keeping the old one's connections through its grace) and grant
 * (NULL: kept, "": none; the control connection is dialled again to
 * present it). Returns 0, or SL_EPARSE with why in err. */
int sl_node_bridge_update(struct sl_node_bridge *b, const char *password,
                          const char *grant, char *err, size_t errcap);

/* Resumes / stops a bridge's connections; the choice is persisted.
 * Return 0. */
int sl_node_bridge_connect(struct sl_node_bridge *b);
int sl_node_bridge_disconnect(struct sl_node_bridge *b);

/* Closes and forgets a bridge (its memory goes once its connections are
 * closed; the pointer is invalid on return). */
void sl_node_bridge_remove(struct sl_node_bridge *b);

/* Removes every bridge that is disconnected by the user or never got an
 * identity. Returns how many. */
size_t sl_node_prune(struct sl_node *node);

/* A new JSON object describing the bridge (no secrets): identity,
 * upstream, hub, url, state ("connected", "connecting", "disconnected"),
 * traffic {gateway {down, up}, upstream {down, up}}, bandwidth {down, up}
 * (bytes/s over the last second), connected_at, last_seen (ms since the
 * epoch, 0 = never), error (last problem, "" if none), hubs (one object
 * per hub address: hub, address, state "connected", "connecting",
 * "failed" or "disconnected", error, connected_at). NULL on ENOMEM. */
json_t *sl_node_bridge_json(const struct sl_node_bridge *b);
/* A new JSON array of every bridge. */
json_t *sl_node_bridges_json(const struct sl_node *node);

/* The API's bound address ("127.0.0.1:8082"), or "" without an API. */
const char *sl_node_api_address(const struct sl_node *node);

#endif
