/* Internal types of the hub, shared by hub.c (listener, allocations,
 * connection lifetimes), hub_bridge.c (control and data endpoints),
 * hub_user.c (user HTTP through the tunnel), hub_caps.c (idle timeouts,
 * user caps) and hub_guard.c (allocation limits). Not for other areas. */
#ifndef SL_HUB_INT_H
#define SL_HUB_INT_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "core/ctx.h"
#include "hub/hub.h"
#include "hub/hub_plan_int.h"
#include "hub/store.h"
#include "net/addr.h"
#include "net/http_head.h"
#include "net/mux.h"
#include "net/relay.h"
#include "net/ws.h"
#include "net/xprt.h"
#include "tunnel/creds.h"
#include "tunnel/hijack.h"
#include "tunnel/identity.h"
#include "stream/hooks.h"
#include "tunnel/stream_opts.h"
#include "tunnel/ws_handshake.h"
#include "core/list.h"

#define HUB_BLOCK 65536
#define HUB_HIGH_WATER (256 * 1024)
#define HUB_LOW_WATER (64 * 1024)
#define HUB_POOL_MAX 16
#define HUB_RECENT_FP 64   /* fingerprints remembered per allocation */
#define HUB_BUCKETS 1024   /* allocation hash table */
#define HUB_RATE_SLOTS 256 /* source addresses tracked for auth failures */
#define HUB_FREE_BLOCKS 64
#define HUB_SRC_BUCKETS 1024 /* source addresses with user connections */
#define HUB_REFUSING_MAX 1024 /* over-cap connections read for an answer */

struct hub_conn;
struct hub_mux;
struct hub_udp;
struct hub_plan;
struct hub_bw;
struct hub_grant_in;
struct hub_relay;
struct sl_acl;
struct sl_tls_server;

/* A read buffer that can become a write request's storage. */
struct hub_block {
    uv_write_t req;
    struct hub_conn *dst;
    struct hub_block *next; /* free list */
    char data[HUB_BLOCK];
};

/* Intrusive doubly linked list. */
struct hub_alloc {
    struct hub_alloc *hnext; /* hash chain */
    struct sl_hub *hub;
    char identity[SL_IDENTITY_LEN + 1];
    char username[SL_STORE_USERNAME_MAX];
    char password_hash[SL_STORE_HASH_MAX];
    unsigned char pass_mac[32]; /* HMAC of the last verified password */
    int has_mac;
    struct sl_store_limits limits;
    struct sl_store_traffic total;     /* store value at load + counted */
    struct sl_store_traffic unflushed; /* counted, not yet in the store */
    uint64_t bw_mark_down, bw_mark_up; /* totals at the last tick */
    uint64_t bw_down, bw_up;           /* bytes/s */
    uint64_t stats_mark;               /* user total at last stats msg */
    int limited;
    int limited_dirty;
    int passthrough; /* the bridge takes TLS as it comes (a tls://
                        upstream): users are routed by SNI, unread */
    struct hub_streams *streams; /* public TCP/UDP ports, or NULL */
    int64_t last_seen;
    int touched;
    struct sl_link controls; /* control conns, oldest first */
    struct sl_link pool;     /* idle data conns, oldest first */
    struct sl_link waiting;  /* user conns waiting for a data conn */
    struct sl_link verify_wait; /* bridge conns waiting for the scrypt
                                    check of the same password */
    struct sl_link muxes; /* mux connections taking streams (hub_mux.c) */
    uint32_t nmux;
    int verifying;               /* a check runs for verify_mac */
    unsigned char verify_mac[32];
    uint32_t ncontrols, npool, npairs;
    uint32_t ndata; /* data conns past their username (max_data_conns) */
    struct hub_plan *plan; /* hub_grant.c: grant, cap, rotation */
    struct hub_bw *bw;     /* hub_rate.c: its buckets; NULL: no cap */
    /* Fingerprints of recent pairings, as their 16 bytes (not text: an
     * allocation per bridge, a thousand bridges per hub). */
    unsigned char recent_fp[HUB_RECENT_FP][16];
    unsigned recent_next;
};

enum conn_kind { C_NEW, C_USER, C_CONTROL, C_DATA };

/* A connection of the TLS listener before it is HTTP (hub_tls.c). */
enum tls_front {
    TLS_NONE,        /* the plain listener's, or TLS is over: HTTP */
    TLS_PEEK,        /* reading the ClientHello, unterminated */
    TLS_HANDSHAKE,   /* the hub's own TLS handshake runs */
    TLS_DONE,        /* terminated: HTTP inside TLS */
    TLS_PASSTHROUGH, /* the bytes go to a bridge as they are */
};

/* The allocation list a connection is in (hub_conn.in_alist). */
enum alist { AL_NONE, AL_CONTROLS, AL_POOL, AL_WAITING, AL_VERIFY };

enum user_state {
    U_HEAD,    /* reading a request head into head[] */
    U_PAIRING, /* waiting for a data connection */
    U_BODY,    /* forwarding the request body; response may run */
    U_WAIT,    /* request sent, waiting for the response's end */
    U_OPAQUE,  /* after a 101: bytes both ways, no parsing */
    U_CLOSING, /* answer written, closing after the flush */
};

enum data_state {
    D_AUTH,   /* credentials being checked */
    D_POOL,   /* idle in the pool */
    D_PAIRED, /* 101 sent, paired with a user conn */
};

struct hub_conn {
    struct sl_hub *hub;
    enum conn_kind kind;
    uint64_t id;
    struct sl_link all;   /* hub->conns */
    struct sl_link alink; /* in one of the allocation's lists */
    int in_alist;          /* which: enum alist (0 none) */
    struct hub_alloc *alloc;
    struct sl_xprt xp; /* the socket, plain or TLS */
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    char peer_ip[SL_ADDR_STRLEN];
    int open_handles;
    int closing;
    int work_pending; /* a thread-pool job refers to this conn */
    int reason;

    /* Request head being read. */
    char *head;
    size_t head_len, head_cap, head_scanned;
    int reading;
    int read_into_head;

    /* Pairing: user <-> data. */
    struct hub_conn *peer;
    struct hub_relay *relay; /* an opaque pair on sl_relay: both its
                                conns point at it, it owns their sockets */

    /* User side. */
    enum user_state ustate;
    uint64_t nrequests;
    http_parser reqp;
    http_parser respp;
    int req_done;       /* request message complete */
    int resp_active;    /* a response is expected or running */
    int resp_started;   /* response bytes went to the user */
    int resp_done;      /* final response complete */
    int resp_head;      /* the request was HEAD */
    int resp_upgrade;   /* the final response was a 101 */
    int keep_alive;     /* request and response allow keep-alive */
    int paused_by_peer; /* reading stopped for back-pressure */
    int eof_in;         /* read EOF */
    int shut_out;       /* write side: 1 shutting down, 2 shut down */
    int data_paused;    /* the data conn's reading stopped for us */
    /* Cookie isolation: a response head held until it is whole. */
    char *rhead;
    size_t rhead_len, rhead_cap, rhead_scanned;
    int rhead_wait; /* a response head is due (isolation on) */
    struct hub_block *fwd; /* rewritten request head, until paired */
    size_t fwd_len;
    char fingerprint[SL_UUID_LEN + 1];

    /* Bridge side. */
    enum data_state dstate;
    struct sl_ws *ws; /* control and framed data conns, else NULL */
    int ws_active;    /* ws owns tcp */
    int framed;       /* data conn speaks WebSocket frames */
    int want_raw;
    int want_mux;     /* data conn asked for Sluice-Framing: mux */
    int mux_offered;  /* control: the bridge's hello offered mux */
    struct hub_mux *mux; /* a mux connection: the engine owns xp */
    struct hub_mux *via; /* a stream of one: xp is the stream */
    int just_allocated; /* control: credentials to send in welcome */
    enum tls_front tls_front;
    int passthrough;    /* user: bytes relayed unread (TLS by SNI, or a
                           public stream port's TCP) */
    struct hub_streams *streams; /* user of a stream port: its counts */
    int got_hello;
    struct hub_auth *auth; /* while credentials are checked, else NULL */
    char ws_accept[SL_WS_ACCEPT_LEN + 1];
    size_t head_off; /* end of the first head in head[] */
    struct sl_hijack hijack;
    char bridge_id[SL_UUID_LEN + 1]; /* Sluice-Bridge, "" when not sent */
    int resend_opens; /* control: replaced a stale one; re-ask its opens */

    /* Idle timeouts and caps (hub_caps.c). */
    uint64_t last_progress; /* uv_now of the last byte either way */
    int front;        /* counted in its source's and the hub's user caps */
    int user_counted; /* counted in its source's nusers */
    int refuse;       /* over a cap at accept: 429 or 503 to a user head */
    int data_counted; /* counted in alloc->ndata */

    /* Plans (hub_grant.c) and bandwidth caps (hub_rate.c). */
    struct hub_grant_in *grant_in; /* control: its grant, until the 101 */
    int old_password; /* opened with a password a rotation replaced */
    struct sl_link held; /* in its allocation's bucket, waiting */
    int rate_held;       /* reading stopped by the bandwidth cap */
    int rate_resume;     /* to read again when the cap lets go */
};

/* Credentials of a bridge connection while they are checked (and, for a
 * new allocation, until its welcome): kept apart so an established
 * connection does not carry them. */
struct hub_auth {
    uv_work_t work;
    int result;
    char username[SL_BASIC_USER_MAX];
    char password[SL_BASIC_PASS_MAX];
    char hash[SL_PASSWORD_HASH_MAX];
    char old_hash[SL_PASSWORD_HASH_MAX]; /* a rotated password in its
                                            grace, else "" */
    unsigned char mac[32]; /* hub_mac of password */
};

/* Failures of one username from one address, or ("" username) of every
 * username from that address together. */
struct hub_rate {
    char ip[SL_ADDR_STRLEN];
    char user[SL_BASIC_USER_MAX];
    uint64_t window_start; /* uv_now ms */
    uint64_t blocked_until;
    uint32_t failures;
};

/* Allocations without credentials from one source (an IPv4 address or
 * an IPv6 /64; "" for the whole hub): a token bucket. */
struct hub_bucket {
    char key[SL_ADDR_STRLEN];
    double tokens;
    uint64_t refilled; /* uv_now ms */
    int logged;        /* the refusal of this burst was logged */
};

/* User connections (and heads not yet known) from one source address. */
/* Connections of one source (an IPv4 address, an IPv6 /64): n counts
 * every connection not yet known to be a bridge's, nusers those whose
 * head showed a user request. The cap judges users by nusers, so the
 * data connections a bridge opens from the same address while its users
 * arrive never push a user over it; n bounds heads still being read. */
struct hub_src {
    struct hub_src *next;
    uint32_t n;
    uint32_t nusers;
    char ip[SL_ADDR_STRLEN + 3];
};

/* The caps whose refusals are logged once per burst. */
enum hub_cap { HUB_CAP_PER_IP, HUB_CAP_USERS, HUB_CAP_PAIRS, HUB_CAP_DATA,
               HUB_CAP_STREAMS, HUB_CAP_N };

/* An allocation's public stream ports (hub_stream.c, hub_udp.c). Freed
 * when its allocation, its listener and every user connection counted in
 * it have let go (refs). */
struct hub_streams {
    struct sl_hub *hub;
    struct hub_alloc *a; /* NULL once the allocation is gone */
    struct sl_stream_opts opts; /* in force: the operator's over the
                                   bridge's */
    struct sl_acl *acl;  /* built from opts, NULL: everyone */
    /* The stream engine's hooks (stream/hooks.h), as a stream route has
     * them: admission (ACL, connection or session cap) before any bridge
     * dials, counting of every chunk either way. */
    struct sl_hooks hooks;
    struct sl_hook_limit tcp_limit, udp_limit;
    struct sl_stream_stats stats;
    uint64_t udp_active; /* UDP flows now (hub_udp.c keeps it) */
    uv_tcp_t tcp;        /* the public TCP port (data: the hub) */
    int tcp_open;
    int tcp_port, udp_port; /* 0: none */
    uint64_t tcp_active; /* TCP user connections now */
    uint64_t denied;     /* refused by the ACL or a cap */
    struct hub_udp *udp; /* the public UDP port (hub_udp.c), or NULL */
    int refs;
};

/* An opaque pair whose bytes nothing reads (a stream port's or a TLS
 * passthrough user and a raw data conn, no bandwidth cap) moves them
 * through the engine's relay, zero-copy when both sockets are plain
 * (hub_user.c). From its start the relay owns both sockets: closing
 * either conn aborts it, and the conns' socket close is counted when it
 * is done. Owned by the pair; freed from the relay's done. */
struct hub_relay {
    struct sl_relay r;
    struct hub_conn *u, *d;
};

struct hub_burst {
    uint64_t last_log; /* uv_now of the last line; 0 none */
    uint64_t unlogged; /* refusals since that line */
};

struct sl_hub {
    struct sl_ctx *ctx;
    uv_loop_t *loop;
    struct sl_log *log;
    struct sl_hub_options opts; /* strings point into owned copies */
    char *s_http_addr, *s_domain, *s_scheme, *s_token, *s_state_dir;
    struct sl_store *store;
    int own_store;
    uv_tcp_t listener;
    /* Stream ports: where they bind and the range leased from. */
    struct sockaddr_storage stream_bind;
    int stream_port_min, stream_port_max;
    /* --https: the TLS listener and the certificates (NULL: none). */
    struct sl_tls_server *tls;
    struct sl_acme *acme; /* NULL without --acme */
    struct hub_plans *plans; /* grants, caps, rotation (hub_grant.c) */
    uv_tcp_t tls_listener;
    char tls_address[SL_ADDR_STRLEN];
    int tls_port;
    int has_plain; /* the plain listener is open */
    int has_tls_listener;
    uv_timer_t flush_timer;
    /* Takes a connection the hub has no memory to serve, to close it:
     * libuv watches the listener again only once its offer is accepted. */
    uv_tcp_t refuse;
    int refusing;       /* refuse is closing */
    int refuse_waiting; /* a connection waits in libuv meanwhile */
    uv_stream_t *refuse_l; /* on this listener */
    uv_connection_cb refuse_cb; /* whose callback takes it */
    int open_handles;
    int stopping;
    void (*done)(void *);
    void *done_arg;
    char address[SL_ADDR_STRLEN];
    int port;
    uint64_t next_id;
    struct sl_link conns;
    struct hub_alloc *buckets[HUB_BUCKETS];
    struct hub_block *free_blocks;
    size_t nfree_blocks;
    struct sl_relay_pool relay_pool; /* opaque pairs' buffers and pipes */
    struct hub_rate rate[HUB_RATE_SLOTS];
    struct hub_bucket alloc_rate[HUB_RATE_SLOTS];
    struct hub_bucket alloc_rate_all;
    uint64_t expiry_next; /* uv_now ms of the next idle sweep */
    unsigned char mac_key[32];
    struct sl_hub_totals totals;

    /* Idle timeouts and caps: the options with defaults applied. */
    uint64_t client_ms, server_ms, tunnel_ms;
    uint32_t max_user_conns, max_conns_per_ip, max_pairs, max_data_conns;
    uv_timer_t idle_timer; /* sweeps paired user conns for idleness */
    struct hub_src *src[HUB_SRC_BUCKETS];
    uint32_t nfront;    /* conns counted in max_user_conns */
    uint32_t nrefusing; /* conns over a cap waiting for a head */
    struct hub_burst burst[HUB_CAP_N];

    /* Protocol v2: mux connections asked of each bridge (0: none) and
     * the window growth all their streams share. */
    int mux_conns;
    struct sl_mux_budget mux_budget;
};

#define HUB_CONN_OF(link, field)                                               \
    ((struct hub_conn *)((char *)(link)-offsetof(struct hub_conn, field)))

/* hub.c */
struct hub_block *hub_block_get(struct sl_hub *hub);
void hub_block_put(struct sl_hub *hub, struct hub_block *b);
struct hub_alloc *hub_alloc_find(struct sl_hub *hub, const char *identity);
/* Finds or loads (from the store) the allocation; NULL if unknown. */
struct hub_alloc *hub_alloc_get(struct sl_hub *hub, const char *identity);
struct hub_alloc *hub_alloc_load(struct sl_hub *hub, const struct sl_alloc *a);
void hub_conn_close(struct hub_conn *c, int reason);
/* Accepts a connection of listener l (whose callback is retry): the
 * connection, counted in the user caps, or NULL (refused, or closed). */
struct hub_conn *hub_conn_accept(struct sl_hub *hub, uv_stream_t *l,
                                 uv_connection_cb retry);
/* The ws that owned c->tcp closed it (its on_close). */
void hub_conn_ws_closed(struct hub_conn *c, int reason);
/* Closes c with a TCP reset (what a stream user gets on refusal). */
void hub_conn_reset(struct hub_conn *c);
/* A hub-level handle (a listener of a stream port) finished closing. */
void hub_handle_closed(struct sl_hub *hub);
/* Pairs user conn u and data conn d (101 to the bridge, head onwards). */
void hub_pair(struct hub_conn *u, struct hub_conn *d);
void hub_conn_alist_del(struct hub_conn *c);
/* Writes bytes to c's TCP socket (not a ws). b, when not NULL, holds data
 * and is taken over. Returns 0 or a libuv error. */
int hub_conn_write(struct hub_conn *c, struct hub_block *b, const char *data,
                   size_t n);
/* Sends a complete response and closes the connection after it. */
void hub_conn_reply_close(struct hub_conn *c, int status, const char *ctype,
                          const char *body, const char *extra);
void hub_conn_start_head(struct hub_conn *c);
void hub_conn_timer_start(struct hub_conn *c, uint64_t ms);
/* Stops reading, shuts the write side down once queued writes are out,
 * then closes. */
void hub_conn_finish(struct hub_conn *c);
/* Wipes and frees c->auth (unless a job still uses it). */
void hub_auth_drop(struct hub_conn *c);
void hub_alloc_remember_fp(struct hub_alloc *a, const char *fp);
/* A thread-pool job of c finished. Returns 1 if c was closing (it may have
 * been freed: do not touch it), 0 if it is live. */
int hub_conn_work_done(struct hub_conn *c);
void hub_conn_read_blocks(struct hub_conn *c);
void hub_conn_read_stop(struct hub_conn *c);
/* Reads again into whatever c was reading (a head or blocks): the
 * bandwidth cap lets go of c. */
void hub_conn_read_again(struct hub_conn *c);
void hub_count_user(struct hub_alloc *a, uint64_t down, uint64_t up);
void hub_count_bridge(struct hub_alloc *a, uint64_t down, uint64_t up);
void hub_alloc_touch(struct hub_alloc *a);
/* 1 if credentials for user (NULL or "": none given) from ip are refused
 * for now: that username failed auth_failures_max times in a minute from
 * there, or every username together ten times as often. */
int hub_rate_blocked(struct sl_hub *hub, const char *ip, const char *user);
void hub_rate_fail(struct sl_hub *hub, const char *ip, const char *user);
void hub_mac(struct sl_hub *hub, const char *password, unsigned char out[32]);
size_t hub_conn_queued(const struct hub_conn *c);
/* The relay of c's pair closed c's socket. */
void hub_conn_xp_closed(struct hub_conn *c);

/* hub_bridge.c */
void hub_bridge_control(struct hub_conn *c, const struct sl_http_head *h,
                        const char *query, size_t query_len);
void hub_bridge_data(struct hub_conn *c, const struct sl_http_head *h);
/* Paired data conn d answers 101 and starts moving bytes. */
int hub_data_accept(struct hub_conn *d);
int hub_data_send(struct hub_conn *d, struct hub_block *b, const char *p,
                  size_t n);
void hub_data_pause(struct hub_conn *d);
void hub_data_resume(struct hub_conn *d);
void hub_data_end(struct hub_conn *d); /* no more bytes to the bridge */
/* Asks the newest bridge of a for a data connection named fingerprint;
 * kind "http" (HTTP users and passthrough), "tcp" (a stream port's
 * users) or "udp" (the UDP port's datagram carrier). */
int hub_control_open(struct hub_alloc *a, const char *fingerprint,
                     const char *kind);
void hub_control_stats(struct hub_alloc *a);
void hub_alloc_error_all(struct hub_alloc *a, const char *message, int code);
/* Ends control connection c: error message (code) to its bridge, then a
 * close; it leaves its allocation's list at once. */
void hub_control_end(struct hub_conn *c, const char *message, int code);
void hub_data_on_timer(struct hub_conn *d);

/* hub_user.c */
void hub_user_head(struct hub_conn *u, const struct sl_http_head *h,
                   const char *identity);
void hub_user_paired(struct hub_conn *u, struct hub_conn *d);
void hub_user_unpair(struct hub_conn *u, int reason);
void hub_user_on_bytes(struct hub_conn *u, struct hub_block *b, char *p,
                       size_t n);
void hub_user_on_upstream(struct hub_conn *u, struct hub_block *b,
                          const char *p, size_t n);
void hub_user_upstream_gone(struct hub_conn *u, int reason);
/* The raw data conn of opaque pair u read EOF: u's write side is shut
 * down after what is queued, the other way goes on. */
void hub_user_upstream_fin(struct hub_conn *u);
void hub_user_on_timer(struct hub_conn *u);
void hub_user_on_eof(struct hub_conn *u);
void hub_user_drained(struct hub_conn *u);
void hub_user_resume_from_data(struct hub_conn *d);
void hub_alloc_close_pairs(struct hub_alloc *a);
/* A TLS connection for passthrough allocation a (its ClientHello in
 * head[]): paired with a data connection, then bytes both ways. */
void hub_user_passthrough(struct hub_conn *u, struct hub_alloc *a);

/* hub_stream.c: public stream ports. */
/* A bridge of allocation a said hello offering caps: its ports are leased
 * and opened (once), with the options bridge asks for under the
 * operator's. Returns 0, or a negative code with why filled (the bridge
 * is told). */
int hub_streams_hello(struct hub_alloc *a, unsigned caps,
                      const struct sl_stream_opts *bridge, char *why,
                      size_t cap);
/* The allocation is going (or the hub stops): its ports close. */
void hub_streams_close(struct hub_alloc *a);
/* A user connection counted in c->streams is closing. */
void hub_streams_conn_closed(struct hub_conn *c);
/* Runs the admission hooks for a new TCP connection (udp 0) or UDP flow
 * (udp 1) from client. Returns NULL, or why it is refused. */
const char *hub_streams_admit(struct hub_streams *s, int udp,
                              const struct sockaddr *client,
                              const struct sockaddr *peer);
/* A chunk of n bytes moved for stream user c (dir SL_HOOK_UP: from the
 * user). */
void hub_streams_on_read(struct hub_conn *c, size_t n, enum sl_hook_dir dir);
/* "tcp://<domain>:<port>" (or udp) for a stream allocation; SL_ENOTFOUND
 * when it has no port. */
int hub_streams_url(const struct hub_alloc *a, char *buf, size_t cap);

/* hub_mux.c: multiplexed data connections (protocol v2). */
/* Authenticated data conn c asked for Sluice-Framing: mux: answered 101
 * and run as a mux connection of its allocation, or refused (answered).
 * Returns 0 or the refusal's code. */
int hub_mux_accept(struct hub_conn *c);
/* A data conn on a new stream of one of a's mux connections, for user
 * u (the least loaded connection), or NULL when a has none taking
 * streams. The conn is not paired yet (hub_pair). */
struct hub_conn *hub_mux_stream(struct hub_alloc *a, struct hub_conn *u);
/* hub_conn_close of a mux connection: it ends (its streams read a
 * reset); the engine then closes the socket (hub_conn_ws_closed). */
void hub_mux_conn_close(struct hub_conn *c, int reason);
/* A stream conn's memory goes. */
void hub_mux_stream_freed(struct hub_conn *d);
/* The bridge named bridge_id came back on a new control connection: its
 * mux connections take no new streams and end with their last one. */
unsigned hub_mux_drop_of(struct hub_alloc *a, const char *bridge_id);

/* hub_udp.c: the public UDP port of an allocation. */
/* Takes fd, a bound UDP socket, as s's public port. Returns 0 or a
 * negative code (fd closed either way on failure). */
int hub_udp_open(struct hub_streams *s, int fd, int port);
/* Closes the port and its flows (the handle's close counts in the hub's
 * open handles). Safe when there is none. */
void hub_udp_close(struct hub_streams *s);
/* A data connection d of a came with a fingerprint the UDP port asked
 * for (open kind "udp"). Returns 1 if the UDP port took it, 0 if the
 * fingerprint is not one of its own. */
int hub_udp_data(struct hub_alloc *a, struct hub_conn *d);

/* hub_tls.c: the TLS listener's front. */
/* A connection accepted on the TLS listener: its ClientHello is read. */
void hub_tls_accept(struct hub_conn *c);
/* Bytes of the ClientHello arrived in head[]. */
void hub_tls_peek(struct hub_conn *c);
/* --https-redirect: answers a user request on the plain listener with a
 * 308 to its https:// URL. Returns 1 if it answered. */
int hub_tls_redirect(struct hub_conn *c, const struct sl_http_head *h);

/* hub_caps.c: idle timeouts of paired requests and the user caps. */
/* Bytes moved for c's request (c a user conn, or a paired data conn):
 * its idle timeout starts again. */
void hub_progress(struct hub_conn *c);
/* A refusal by cap k: returns 1 if it is to be logged (the first in
 * 10 s), with *unlogged the refusals not logged since the last line. */
int hub_burst_log(struct sl_hub *hub, enum hub_cap k, uint64_t *unlogged);
/* Fills the hub's timeouts and caps from its options, with defaults. */
void hub_caps_defaults(struct sl_hub *hub);
/* Counts a new connection in the user caps, or marks it to be refused
 * (c->refuse) once its head shows a user request. Returns 0 if c was
 * closed at once: too many refusals are in flight to read their heads. */
int hub_caps_admit(struct hub_conn *c);
/* Takes c out of the user caps (closing, or a bridge's connection). */
void hub_caps_release(struct hub_conn *c);
/* Whether the user request whose head c just read may go on (identity
 * NULL: a Host the hub cannot route). Returns 0 if it was answered 429
 * or 503 instead. */
int hub_caps_user_admitted(struct hub_conn *c, const char *identity);
/* The idle timer's callback (t->data the hub): answers or closes the
 * paired requests idle past their timeout. */
void hub_caps_on_idle_sweep(uv_timer_t *t);
/* The idle timer's period in ms: an eighth of the shortest timeout,
 * within [10 ms, 1 s]. */
uint64_t hub_caps_sweep_interval(const struct sl_hub *hub);

/* hub_guard.c: allocation limits and idle expiry. */
/* The key limits count a source by: the address, or its /64 for IPv6
 * (one host has a whole /64). out holds SL_ADDR_STRLEN bytes. */
void hub_source_key(const char *ip, char *out, size_t cap);
/* Whether a new allocation from ip may go on now: 0, or the seconds to
 * wait (the refusal is logged once a burst). */
unsigned hub_alloc_admit(struct sl_hub *hub, const char *ip);
/* Warns at start if anyone who reaches a public listener may allocate. */
void hub_guard_warn(struct sl_hub *hub, const struct sockaddr *listen);
/* Removes allocations that have had no bridge for alloc_idle_expiry_s;
 * called from the flush timer, sweeps at most every few seconds. */
void hub_expire_idle(struct sl_hub *hub);

#endif
