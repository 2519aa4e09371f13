/* The node's agent port (docs/node.md, "The agent port"): one TLS port,
 * mutual TLS, where ALPN "http/1.1" serves the node's REST API and
 * GET /info, and ALPN "sluice-stream/1" carries a TCP stream to the
 * target its header names (proto/agent_header.h) after a one-byte
 * status; DTLS 1.2 on the same port number carries UDP the same way
 * (node_dtls.c), one datagram per record.
 *
 * Targets follow the node's private-upstream rule (loopback, RFC 1918,
 * RFC 4193, link local; every resolved address checked at dial time),
 * plus the extra networks of --agent-allow, or anything with
 * --allow-public-upstream. Bounds: 10 s for the handshake and the header,
 * 10 s to dial, idle streams and sessions end, and caps on concurrent
 * streams and sessions per client certificate.
 *
 * Everything runs on the node's loop. Not thread-safe. */
#ifndef SL_NODE_AGENT_H
#define SL_NODE_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "core/list.h"
#include "core/log.h"

#define SL_AGENT_MAX_ALLOW 64
#define SL_AGENT_DEFAULT_MAX_STREAMS 1024  /* per client certificate */
#define SL_AGENT_DEFAULT_MAX_SESSIONS 1024 /* per client certificate */
#define SL_AGENT_HEADER_TIMEOUT_MS 10000   /* handshake and header */
#define SL_AGENT_DIAL_TIMEOUT_MS 10000
#define SL_AGENT_DEFAULT_IDLE_MS 3600000   /* a TCP stream, both ways */
#define SL_AGENT_DEFAULT_UDP_IDLE_MS 300000

struct sl_node;
struct sl_node_agent;

/* What `boot up --bridge --agent ...` asks for. Strings are copied. */
struct sl_node_agent_opts {
    const char *listen;    /* "0.0.0.0:8890", "[::]:8890": TCP and UDP;
                              port 0 picks one free for both */
    const char *ca_file;   /* client certificates must chain to it */
    const char *cert_file; /* the agent's certificate (chain) and key */
    const char *key_file;
    const char *allow[SL_AGENT_MAX_ALLOW]; /* ip:ADDR, cidr:ADDR/BITS */
    size_t nallow;
    const char *name;      /* /info's "name"; NULL: the host name */
    unsigned max_streams;  /* 0: SL_AGENT_DEFAULT_MAX_STREAMS */
    unsigned max_sessions; /* 0: SL_AGENT_DEFAULT_MAX_SESSIONS */
    uint64_t idle_ms;      /* 0: SL_AGENT_DEFAULT_IDLE_MS */
    uint64_t udp_idle_ms;  /* 0: SL_AGENT_DEFAULT_UDP_IDLE_MS */
    int no_udp;            /* 1: no DTLS listener */
};

/* Loads the certificates (blocking: before traffic), binds TCP and UDP
 * on the same address and port and starts serving. On success the agent
 * is node's. Returns 0 or a negative code with the problem logged
 * (SL_ECONFIG for files and values, a libuv error for the bind). */
int sl_node_agent_start(struct sl_node *node,
                        const struct sl_node_agent_opts *o,
                        struct sl_node_agent **out);

/* Closes the listeners and every stream and session; done(arg) runs
 * once all is closed (from the loop). NULL agent: done is called now. */
void sl_node_agent_stop(struct sl_node_agent *a, void (*done)(void *arg),
                        void *arg);

/* The bound address, "127.0.0.1:8890" / "[::1]:8890". */
const char *sl_node_agent_address(const struct sl_node_agent *a);

/* ------------------------------------------------- node_agent.c <-> DTLS */

/* A client certificate's share of the caps (SHA-256 of its DER). */
struct sl_agent_peer {
    uint8_t fp[32];
    unsigned streams, sessions;
    struct sl_agent_peer *next;
};

/* Resolving and checking a target: what TCP streams and DTLS sessions
 * share. */
#define SL_AGENT_TARGETS_MAX 8
struct sl_agent_dial {
    struct sl_node_agent *agent;
    uv_getaddrinfo_t gai;
    int socktype;
    /* The addresses the policy allows, in resolver order. */
    struct sockaddr_storage addr[SL_AGENT_TARGETS_MAX];
    size_t n;
    int refused; /* some address was refused by policy */
    int status;  /* the answer, once there is one */
    void (*cb)(struct sl_agent_dial *d, int status); /* SL_AGENT_* */
};

/* Resolves host:port and keeps the addresses the policy allows; the
 * answer is SL_AGENT_OK (d->n > 0), SL_AGENT_REFUSED or
 * SL_AGENT_DIAL_FAILED. An IP literal is answered at once: returns 0 with
 * the answer in d->status (cb not called). A name goes to the resolver:
 * returns 1 and cb gets the answer later (d must live until then;
 * sl_agent_dial_cancel makes it come early, SL_AGENT_DIAL_FAILED).
 * Returns a negative libuv error when the resolver cannot start. */
int sl_agent_dial_resolve(struct sl_agent_dial *d, const char *host,
                          uint16_t port, int socktype);
void sl_agent_dial_cancel(struct sl_agent_dial *d);

/* The peer entry of ssl's client certificate, made on first use; NULL
 * when out of memory or the table is full. */
struct sl_agent_peer *sl_agent_peer_of(struct sl_node_agent *a, SSL *ssl);
/* Drops an entry that holds no stream and no session. */
void sl_agent_peer_release(struct sl_node_agent *a, struct sl_agent_peer *p);

/* 1 when a handshake failure from sa should be logged now: once per
 * source address a minute; *missed is how many were not logged since. */
int sl_agent_fail_should_log(struct sl_node_agent *a,
                             const struct sockaddr *sa, uint64_t *missed);

/* A server context of the agent's certificates (method TLS or DTLS),
 * client certificate required. NULL with the reason logged. */
SSL_CTX *sl_agent_ctx_new(struct sl_node_agent *a, const SSL_METHOD *method);

struct sl_log *sl_agent_log(struct sl_node_agent *a);
uv_loop_t *sl_agent_loop(struct sl_node_agent *a);
unsigned sl_agent_max_sessions(const struct sl_node_agent *a);
uint64_t sl_agent_udp_idle_ms(const struct sl_node_agent *a);

/* node_dtls.c: the DTLS server on the agent's port number. */
struct node_dtls;
/* Binds UDP on addr (the TCP listener's address and port). Returns 0 or
 * a negative code (logged). */
int sl_node_dtls_start(struct sl_node_agent *a, const struct sockaddr *addr,
                       struct node_dtls **out);
/* Ends every session and closes the socket; done(arg) from the loop. */
void sl_node_dtls_stop(struct node_dtls *d, void (*done)(void *arg),
                       void *arg);
/* Sessions open now (for /info). */
size_t sl_node_dtls_sessions(const struct node_dtls *d);

#endif
