/* The proxy side of the agent port: stream routes whose targets sit next
 * to a node's agent (`agent: NAME`, the config's agents: section).
 *
 *  - TCP: a connection to the agent, TLS with our client certificate and
 *    ALPN "sluice-stream/1", the header naming the target, the agent's
 *    one-byte status; then the TLS transport is the route's upstream.
 *  - UDP: a DTLS 1.2 session per route session, the header in the first
 *    record (sent again each second until the status comes), then one
 *    datagram per record both ways.
 *  - Health: each agent is probed over TCP and over DTLS every interval
 *    (a header with the probe flag, answered by the status), unhealthy
 *    after unhealthy_after failures in a row, healthy again after
 *    healthy_after successes; a route through an unhealthy agent refuses
 *    at once. GET /info is asked whenever TCP becomes healthy, so the
 *    agent's own statement of what it carries is known.
 *
 * The agent's certificate must chain to the agent's CA (ca:); its name
 * is not checked: that CA is made for agents alone (sluice agent certs).
 * Agent addresses given as names are resolved once, when the agents
 * start. Everything else runs on the loop. Not thread-safe. */
#ifndef SL_STREAM_AGENT_CLIENT_H
#define SL_STREAM_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "core/ctx.h"
#include "net/xprt.h"
#include "proto/agent_header.h"

struct sl_config;
struct sl_agents;
struct sl_agent;

enum sl_agent_health {
    SL_AGENT_HEALTH_UNKNOWN = 0, /* no probe answered yet: routes try */
    SL_AGENT_HEALTH_UP,
    SL_AGENT_HEALTH_DOWN,
};

/* Loads every agent's certificates (blocking: call before traffic),
 * resolves their addresses and starts their health checks. Returns 0
 * (*out may be NULL when cfg has no agents) or SL_ECONFIG with the
 * problem logged, naming the agent and the file. */
int sl_agents_start(struct sl_ctx *ctx, const struct sl_config *cfg,
                    struct sl_agents **out);

/* Stops the health checks; done(arg) once every probe has let go (from
 * the loop, or now when nothing runs). Streams and sessions already
 * open are their routes'. NULL as: done is called now. */
void sl_agents_stop(struct sl_agents *as, void (*done)(void *arg),
                    void *arg);

struct sl_agent *sl_agents_find(struct sl_agents *as, const char *name);
const char *sl_agent_name(const struct sl_agent *a);
enum sl_agent_health sl_agent_health(const struct sl_agent *a, int udp);
/* 0 when a route should refuse at once: the agent is down for that
 * protocol. */
int sl_agent_usable(const struct sl_agent *a, int udp);

/* A JSON array describing every agent: name, address, tcp and udp
 * {health ("healthy", "unhealthy", "unknown"), error, checked_at (ms
 * since the epoch, 0 never), rtt_ms}, info (what GET /info said, or
 * null), streams and sessions opened through it. NULL on ENOMEM; an
 * empty array for NULL as. */
json_t *sl_agents_json(const struct sl_agents *as);

/* Prometheus text (0.0.4) of the agents: sluice_agent_up{agent,proto}
 * (1 healthy, 0 not), sluice_agent_probe_rtt_seconds{agent,proto},
 * sluice_agent_streams_total{agent}, sluice_agent_sessions_total{agent}.
 * A new string (the caller frees), "" for NULL as, NULL on ENOMEM. */
char *sl_agents_metrics(const struct sl_agents *as);

/* One log line per agent at level: its health and counts. */
void sl_agents_log(const struct sl_agents *as, const struct sl_log *log,
                   enum sl_log_level level);

/* ------------------------------------------------------------- TCP */

struct sl_agent_conn;
/* status 0: the agent answered ok, x is a TLS transport to the target
 * (nothing past the status read). Else a negative code: SL_EDENIED
 * (refused by the agent's policy), UV_ECONNREFUSED (the agent could not
 * dial), UV_ETIMEDOUT, SL_EPARSE (bad header), SL_ELIMIT (busy),
 * UV_EPROTO (TLS), UV_EHOSTDOWN (the agent is unhealthy) or a socket
 * error; sl_agent_conn_why says it in words. The caller closes x. */
typedef void (*sl_agent_conn_cb)(struct sl_agent_conn *d, int status);

/* One dial through an agent, embedded in the caller's connection.
 * Private but for data and cb. */
struct sl_agent_conn {
    void *data;
    sl_agent_conn_cb cb;
    struct sl_agent *agent;
    struct sl_xprt *x;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t hdr[SL_AGENT_HDR_LEN];
    uint8_t status;
    size_t next_addr;
    int stage;
    unsigned done : 1; /* cb called, or aborted: no more callbacks */
    unsigned probe : 1;
    char why[160];
};

/* Dials h's target through a. x is initialised here (sl_xprt_init, then
 * its TCP handle) whatever the result, and is the caller's to close with
 * sl_xprt_close (after sl_agent_conn_abort when it gives up early: cb is
 * then not called). Returns 0 and cb runs once, from the loop; or a
 * negative code, sl_agent_conn_why set, and cb is not called. */
int sl_agent_conn_start(struct sl_agent_conn *d, struct sl_agent *a,
                        struct sl_xprt *x, const struct sl_agent_hdr *h);
void sl_agent_conn_abort(struct sl_agent_conn *d);
const char *sl_agent_conn_why(const struct sl_agent_conn *d);

/* ------------------------------------------------------------- UDP */

struct sl_agent_udp;
struct sl_agent_udp_cbs {
    /* The status came (0), or the session could not start (a negative
     * code as for TCP). Datagrams sent before are dropped; a caller
     * holds them until ready. */
    void (*ready)(struct sl_agent_udp *u, void *arg, int status);
    /* One datagram from the target. */
    void (*recv)(struct sl_agent_udp *u, void *arg, const char *data,
                 size_t len);
    /* The agent ended the session (close_notify) or it failed. */
    void (*closed)(struct sl_agent_udp *u, void *arg, const char *why);
};

/* A DTLS session to a for h's target. Returns it, or NULL (no memory, no
 * address). No callback runs from inside this call. */
struct sl_agent_udp *sl_agent_udp_open(struct sl_agent *a,
                                       const struct sl_agent_hdr *h,
                                       const struct sl_agent_udp_cbs *cbs,
                                       void *arg);
/* Sends one datagram (at most SL_DTLS_RECORD_MAX bytes). Returns 0, or
 * a negative code when it was dropped (not ready, too big, the socket
 * full). */
int sl_agent_udp_send(struct sl_agent_udp *u, const char *data, size_t len);
/* Ends the session (close_notify); no callback runs after, and the
 * memory goes once the handles are closed. NULL is fine. */
void sl_agent_udp_close(struct sl_agent_udp *u);

#endif
