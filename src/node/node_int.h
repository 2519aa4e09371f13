/* Private to src/node: the structures node.c, node_conn.c and node_api.c
 * share. Nothing outside src/node (and its unit tests) includes this. */
#ifndef SL_NODE_INT_H
#define SL_NODE_INT_H

#include <netdb.h>
#include <uv.h>

#include "net/http_head.h"
#include "net/mux.h"
#include "net/relay.h"
#include "net/ws.h"
#include "net/xprt.h"
#include "node/node.h"
#include "node/node_state.h"
#include "node/node_url.h"
#include "tunnel/identity.h"
#include "tunnel/ws_handshake.h"

struct sl_api_route;
struct sl_api_server;
struct sl_inspect;
struct sl_node_agent;
struct sl_inspect_conn;
struct sl_node_replay;
struct sl_node_hubs;
struct sl_node_hublink;
struct sl_sse;
struct node_udp;

#define SL_NODE_CONNECT_TIMEOUT_MS 10000
#define SL_NODE_CTL_HEAD_TIMEOUT_MS 10000
/* The hub answers an idle pool connection within 60 s (204 when unused). */
#define SL_NODE_POOL_HEAD_TIMEOUT_MS 90000
#define SL_NODE_RESP_HEAD_MAX (16 * 1024)
#define SL_NODE_LINGER_MS 5000 /* after a 502: read the request, then close */
/* Raw relays read up to 256 KiB at a time: a bulk transfer then costs a
 * quarter of the read/write calls (and wake-ups of the peers) of 64 KiB
 * reads. A buffer is held only while its side is readable (a short read
 * gives it back), and at most SL_NODE_RELAY_FREE idle ones are kept. */
#define SL_NODE_RELAY_BUF (256 * 1024)
#define SL_NODE_RELAY_FREE 8

enum conn_kind { CONN_CTL, CONN_DATA };

enum conn_phase {
    PH_RESOLVE,      /* uv_getaddrinfo of the hub */
    PH_CONNECT,      /* TCP connect to the hub */
    PH_HEAD,         /* upgrade sent, waiting for the response head */
    PH_CTL,          /* control WebSocket running */
    PH_UP_RESOLVE,   /* data: paired; resolving the upstream */
    PH_UP_CONNECT,   /* data: connecting the upstream */
    PH_RELAY,        /* data: bytes flowing */
    PH_REFUSE,       /* data: 502 sent, draining the request */
};

/* One connection to the hub: control or data. Freed when closing and
 * refs reaches 0: every handle, request and borrowed-by-relay/ws handle
 * holds one ref, and the connection holds one on itself until
 * conn_close(). */
struct conn {
    enum conn_kind kind;
    enum conn_phase phase;
    struct sl_node_bridge *b;
    struct conn *next, *prev; /* in b->conns */
    unsigned id;              /* for log lines */
    int refs;
    unsigned closing : 1;
    unsigned is_pool : 1;     /* counted in b->pool_idle */
    unsigned raw : 1;         /* raw bytes after the 101 */
    unsigned asked_raw : 1;
    unsigned hub_tcp_open : 1; /* initialized, not closed, not lent */
    unsigned up_tcp_open : 1;
    unsigned timer_open : 1;
    unsigned ws_live : 1;
    unsigned relay_live : 1;
    unsigned up_reading : 1;
    unsigned up_eof : 1;
    unsigned ws_read_paused : 1;
    unsigned welcomed : 1;
    unsigned reader_used : 1;
    unsigned up_shutting : 1; /* framed: upstream shutdown in flight */
    unsigned retry_next : 1;  /* a connect failed: try the next address */
    unsigned dialled_anon : 1; /* control: dialled without credentials */
    unsigned udp_carrier : 1;  /* data: a udp:// bridge's datagram
                                  carrier, framed (node_udp.c) */
    unsigned asked_mux : 1;    /* data: asked for Sluice-Framing: mux */
    unsigned mux_dial : 1;     /* counted in b->mux_dialling */

    char fingerprint[SL_UUID_LEN + 1];
    char key[SL_WS_KEY_LEN + 1];

    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_cur;
    /* a numeric host needs no resolver round trip through the thread
     * pool: its one address lives here (never freed: not in ai) */
    struct addrinfo fixed_ai;
    struct sockaddr_storage fixed_sa;
    uv_connect_t creq;
    struct sl_xprt hub_x; /* to the hub, plain or TLS */
    uv_timer_t timer;
    struct sl_http_reader reader;

    struct sl_ws ws;

    /* data connections, after the 101 */
    char *pre; /* bytes that followed the 101 (owned) */
    size_t pre_len;
    struct sl_xprt up_x;  /* to the upstream */
    struct sl_relay relay;
    struct sl_inspect_conn *insp; /* the inspector's tap, or NULL */
    size_t up_queued; /* framed: bytes written to the upstream, pending */
    uv_write_t pre_req;
    uv_shutdown_t up_shutdown;
    uv_shutdown_t hub_shutdown;
    struct node_udp *udp; /* the carrier's flows (node_udp.c), or NULL */
    struct node_mux *mux; /* a mux connection's engine (node_mux.c): it
                             owns hub_x */
};

enum bridge_state { BS_CONNECTING, BS_CONNECTED, BS_DISCONNECTED };

struct sl_node_bridge {
    struct sl_node *node;
    struct sl_node_bridge *next, *prev;
    struct sl_node_bridge_rec rec;
    struct sl_node_url up, hub;
    char hub_host[SL_NODE_HOST_MAX + 8]; /* Host header value */
    char instance[SL_UUID_LEN + 1]; /* Sluice-Bridge: this process's name
                                       for the bridge, on every dial */
    enum bridge_state state;
    struct conn *ctl;     /* the control connection, or NULL */
    struct conn *conns;   /* every connection, control included */
    int refs;             /* conns + open timers + 1 until removed */
    int pool_idle;        /* pool connections waiting for their 101 */
    unsigned pool_failures; /* pool connections failed in a row */
    int pool_refused;     /* last status refusing a pool connection */
    int mux_want;         /* mux connections the hub asked for (welcome) */
    int mux_live;         /* running and taking streams */
    int mux_dialling;     /* dialled, no 101 yet */
    unsigned attempt;     /* reconnect attempts since a lasting welcome */
    uint64_t welcomed_at; /* uv_now of the last welcome */
    uv_timer_t retry_timer;
    uv_timer_t pool_timer;
    unsigned removed : 1;
    unsigned no_raw : 1;       /* a raw attempt failed: frame from now on */
    unsigned no_mux : 1;       /* the hub refused mux: the pool only */
    unsigned announced : 1;    /* the "bridge ... -> ..." line was printed */
    unsigned refuse_logged : 1;
    unsigned tls_logged : 1;   /* a TLS failure to the hub was logged */
    unsigned announce_owed : 1; /* its bridge line waits for the save */
    struct sl_inspect *inspect;       /* http:// bridges, when on */
    struct sl_node_replay *replays;   /* running (node/node_replay.h) */
    /* Several hubs (node_hubs.c): the hub set of a bridge whose hub is a
     * name or a list (NULL for one literal hub); link is set on a hub
     * link, the bridge of its own (not listed, not saved) that carries a
     * bridge's connections to one hub address. */
    struct sl_node_hubs *hubs;
    struct sl_node_hublink *link;
    uint64_t gw_down, gw_up, up_down, up_up;
    uint64_t prev_down, prev_up;
    double rate_down, rate_up;
    char error[160];
};

struct sl_tls_client;
struct sl_mux_stream;

struct sl_node {
    struct sl_ctx *ctx;
    struct sl_log *log;
    char state_dir[900];
    char api_addr[80];
    int allow_public;
    int pool_size;
    int framed;
    int no_mux; /* never offer multiplexed data connections */
    struct sl_mux_budget mux_budget;
    uint64_t ping_ms, dead_ms;
    uint64_t udp_idle_ms; /* UDP flows idle this long go; 0: 5 min */
    char default_hub[SL_NODE_URL_MAX];
    struct sl_node_bridge *bridges;
    size_t nbridges;
    unsigned next_conn_id;
    struct sl_node_saver saver;
    uv_timer_t tick;
    int refs; /* bridges + tick timer + 1 until stopped */
    struct sl_api_server *api;
    struct sl_node_agent *agent; /* the agent port (node_agent.h), or NULL */
    struct sl_sse *sse;      /* the dashboard's live feed */
    int inspect;             /* the request inspector is on */
    size_t inspect_keep;
    struct sl_tls_client *tls; /* for https:// hubs */
    struct sl_stream_opts streams; /* of tcp:// and udp:// bridges */
    /* Read buffers of the raw relays, kept across reads and connections
     * so a busy data connection does not malloc/free (and trim the heap)
     * per read. */
    struct sl_relay_pool relay_pool;
    uint64_t ticks; /* of on_tick, one a second */
    uint64_t hub_resolve_ms; /* hub names looked up again; 0: a minute */
    unsigned stopping : 1;
    sl_node_stopped_cb stop_cb;
    void *stop_arg;
};

/* node.c */
void sl_node_bridge_unref(struct sl_node_bridge *b);
void sl_node_save(struct sl_node *node);
void sl_node_bridge_set_error(struct sl_node_bridge *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The control connection ended (reason as logged); schedules a retry. */
void sl_node_bridge_ctl_lost(struct sl_node_bridge *b, int welcomed,
                             int reason);
/* A welcome arrived: identity, url, maybe credentials. */
void sl_node_bridge_welcomed(struct sl_node_bridge *b, const char *identity,
                             const char *url, const char *username,
                             const char *password);
/* Tops the pool up to the node's pool size (when connected). */
void sl_node_bridge_fill_pool(struct sl_node_bridge *b);
void sl_node_bridge_fill_pool_later(struct sl_node_bridge *b);

/* Dials b's control connection unless it has one or may not (the user
 * disconnected it, it is going, its hub links carry it). */
void sl_node_bridge_dial(struct sl_node_bridge *b);

/* node_hubs.c: a bridge with several hubs, a connection to each. */
/* b's hub set from its hub URLs (b->node set); none is made for one
 * literal hub. Returns 0 or UV_ENOMEM. */
int sl_node_hubs_new(struct sl_node_bridge *b, const struct sl_node_url *urls,
                     size_t n);
/* Closes b's links and lookups (b is being removed). */
void sl_node_hubs_free(struct sl_node_bridge *b);
/* Before b (a bridge or a link) dials its control connection: 1 when it
 * must not, because its links dial instead, its name is being looked
 * up, or (a link) another link is asking for credentials. */
int sl_node_hubs_dial(struct sl_node_bridge *b);
/* 1 when b's hub links carry its connections (it dials none itself). */
int sl_node_hubs_carried(const struct sl_node_bridge *b);
/* Link b was welcomed: its parent (returned) takes the identity, URL
 * and credentials, and the other links dial with them. */
struct sl_node_bridge *sl_node_hubs_link_welcomed(struct sl_node_bridge *b);
/* Link b lost its control connection (a retry is scheduled). */
void sl_node_hubs_link_lost(struct sl_node_bridge *b, int welcomed,
                            int reason);
/* Bridge b was disconnected by the user: its links close too. */
void sl_node_hubs_disconnect(struct sl_node_bridge *b);
/* b's password or grant changed: its links take them (regrant: their
 * control connections are dialled again to present it). */
void sl_node_hubs_sync(struct sl_node_bridge *b, int regrant);
/* Every second: the links' counters go to b, and its state follows
 * theirs. */
void sl_node_hubs_tick(struct sl_node_bridge *b);
/* Link b is freed: what it counted goes to its parent. */
void sl_node_hubs_link_gone(struct sl_node_bridge *b);
/* The address link b dials (and its text), or NULL for a bridge. */
const struct sockaddr *sl_node_hubs_pin(const struct sl_node_bridge *b);
const char *sl_node_hubs_addr(const struct sl_node_bridge *b);
/* A new JSON array, one object per hub (hub, address, state, error,
 * connected_at); NULL on ENOMEM. */
json_t *sl_node_hubs_json(const struct sl_node_bridge *b);

/* node_conn.c */
struct conn *sl_node_conn_ctl(struct sl_node_bridge *b);
/* fingerprint NULL: a pool connection with a fresh one. */
struct conn *sl_node_conn_data(struct sl_node_bridge *b,
                               const char *fingerprint);
void sl_node_conn_close(struct conn *c, int reason);

/* node_udp.c: the datagram carrier of a udp:// bridge. */
/* Carrier c answered 101 (its bytes past the head in c->pre): its
 * WebSocket starts with node_udp.c's callbacks; conn_ws_close is the
 * connection's own close callback, called once the carrier's flows are
 * let go. On failure c closes. */
void sl_node_udp_start(struct conn *c, sl_ws_close_cb conn_ws_close);

/* A multiplexed data connection (protocol v2) of b: dialled like a pool
 * connection, with Sluice-Framing: mux. NULL if it could not start. */
struct conn *sl_node_conn_mux(struct sl_node_bridge *b);
/* A stream the hub opened on one of b's mux connections: a data
 * connection whose transport is the stream (attached here), dialling the
 * upstream at once. NULL if none could be made (the caller refuses s). */
struct conn *sl_node_conn_stream(struct sl_node_bridge *b,
                                 struct sl_mux_stream *s);
/* The engine of mux connection c closed its transport (node_mux.c). */
void sl_node_conn_mux_closed(struct conn *c, int reason);

/* node_mux.c: multiplexed data connections (protocol v2). */
/* Dials mux connections up to what the hub asked for (b->mux_want). */
void sl_node_mux_fill(struct sl_node_bridge *b);
/* c (asked_mux) got its 101 with Sluice-Framing: mux: the engine runs
 * on it (or c is closed). */
void sl_node_mux_start(struct conn *c, const struct sl_http_head *h,
                       const char *rest, size_t rest_len);
/* sl_node_conn_close of a mux connection: it ends now. */
void sl_node_mux_abort(struct conn *c, int reason);

/* node_api.c */
int sl_node_api_start(struct sl_node *node, const char *listen);
/* The REST routes alone (no dashboard shell, no live feed), for the
 * agent port: *n of them; handlers take the node as arg. */
const struct sl_api_route *sl_node_api_routes(size_t *n);

#endif
