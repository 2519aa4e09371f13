/* A small HTTP/1.1 JSON API server on the libuv loop, shared by the hub's
 * admin API (api/hub_api.h) and the node's local REST API.
 *
 * - One uv_tcp listener; requests parsed with http-parser; keep-alive;
 *   request head at most 64 KiB, body at most 1 MiB (431 / 413 otherwise);
 *   10 s to receive a whole request and 10 s idle between requests (408,
 *   or a plain close when idle).
 * - A route table of (method, path pattern, handler). A pattern is a path
 *   whose segments may be "{name}" placeholders, each matching one
 *   non-empty segment (e.g. "/api/proxy/{identity}/"). A trailing '/' is
 *   optional on both sides. Patterns are tried in order: a fixed segment
 *   listed first wins ("/api/proxy/prune/" before "/api/proxy/{identity}/").
 *   No path match: 404; path matches but not the method: 405.
 * - Errors are always JSON {"error": "...", "code": N} with that status.
 * - Access: when the listener is on a loopback address (127.0.0.0/8, ::1)
 *   and require_token is 0, no authentication. Otherwise every request
 *   needs "Authorization: Bearer <token>" (compared in constant time), else
 *   401 {"error":"Unauthorized","code":401}. Starting on a non-loopback
 *   address, or with require_token, without a token fails (SL_ECONFIG).
 *   Without a token, a request whose Host is not localhost or a loopback
 *   literal (DNS rebinding), or that carries Origin or Sec-Fetch-Site (a
 *   web page in a local browser), gets 403: loopback is then the only
 *   credential, and a page would share it.
 * - The dashboard (cfg->dashboard): its shell, GET "/" and "/ui/<file>",
 *   needs no credential (it is static code; the Host rule above still
 *   holds without a token). Its data requests carry the header
 *   "X-Sluice-Dashboard: <key>", a random key of this server handed out
 *   in the shell: with it, and with Sec-Fetch-Site absent or
 *   "same-origin" and Origin absent or naming this Host, a request from
 *   the page passes the browser rule. Another origin cannot read the
 *   key (nor send the header without a CORS preflight, never granted),
 *   so this admits the page and no other. With a token the page sends
 *   it as a bearer token like any client.
 * - One request at a time per connection: reading pauses while a handler
 *   has not replied (no pipelining surprises).
 *
 * Handlers may answer at once or later (asynchronously): the request
 * object stays valid until exactly one sl_api_reply_* call on it; if the
 * client has gone meanwhile, the reply is dropped and the request freed
 * all the same. A handler must reply exactly once. */
#ifndef SL_API_SERVER_H
#define SL_API_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/ctx.h"

#define SL_API_HEAD_MAX (64 * 1024)
#define SL_API_BODY_MAX (1024 * 1024)
#define SL_API_TIMEOUT_MS 10000
#define SL_API_PARAMS_MAX 4

struct sl_api_server;
struct sl_tls_server;
struct sl_api_req;
struct sl_xprt;

/* Called on the loop for a matched request. arg is the server config's
 * arg. */
typedef void (*sl_api_handler_fn)(struct sl_api_req *req, void *arg);

struct sl_api_route {
    const char *method;  /* "GET", "POST", "DELETE", ... */
    const char *pattern; /* "/api/proxy/{identity}/" */
    sl_api_handler_fn fn;
};

struct sl_api_config {
    const char *name;   /* for log lines, e.g. "hub-api"; NULL: "api" */
    /* "127.0.0.1:8081", "[::1]:0"; port 0 = any. NULL: no listener of
     * its own; the server answers the connections handed to it by
     * sl_api_server_serve (the node's agent port), whose transport has
     * authenticated the peer (mutual TLS): no token is needed unless
     * token or require_token says so, and the Host rule below does not
     * apply (the browser rule does). */
    const char *listen;
    const char *token;  /* admin bearer token, or NULL */
    int require_token;  /* 1: demand the token even on loopback */
    const struct sl_api_route *routes; /* copied pointer: must outlive */
    size_t nroutes;
    void *arg; /* handed to every handler */
    struct sl_tls_server *tls; /* TLS on every connection, or NULL */
    /* 1: the web dashboard's shell (GET "/" and "/ui/...") is served to
     * browsers without credentials (it holds no data), and requests of
     * that page (see sl_api_server_dashboard_key) pass the browser rule
     * below. */
    int dashboard;
};

/* Binds and listens. cfg->listen and cfg->token are copied; routes are
 * not. On success *out owns the server (sl_api_server_close). Returns 0,
 * UV_EINVAL, SL_EPARSE (bad listen address), SL_ECONFIG (token needed but
 * absent) or a libuv bind/listen error (e.g. UV_EADDRINUSE). */
int sl_api_server_start(struct sl_ctx *ctx, const struct sl_api_config *cfg,
                        struct sl_api_server **out);

/* Serves one more connection whose transport the caller provides:
 * attach(x, arg) makes x a provided transport (net/xprt.h: its ops,
 * impl and tcp.loop; x->tcp.data is the server's, set after) and returns
 * 0, or a negative code (then nothing is served). From then on the
 * server owns the transport: it closes it through its ops when the
 * connection ends or the server closes. peer ("ip:port") names the
 * client in logs. Only for a server started without a listener. Returns
 * 0, UV_EINVAL (a listening or closing server), UV_ENOMEM, or attach's
 * code. */
typedef int (*sl_api_attach_fn)(struct sl_xprt *x, void *arg);
int sl_api_server_serve(struct sl_api_server *srv, const char *peer,
                        sl_api_attach_fn attach, void *arg);

/* Stops listening and closes every connection; pending requests become
 * orphans (their later replies are dropped). Memory is freed once libuv
 * has closed the handles, so run the loop afterwards. NULL is a no-op. */
void sl_api_server_close(struct sl_api_server *srv);

/* The dashboard key (32 hex digits, see above), "" without cfg->dashboard.
 * Valid while the server is. */
const char *sl_api_server_dashboard_key(const struct sl_api_server *srv);

/* The bound address "ip:port" / "[v6]:port" (port resolved when 0 was
 * asked). Returns 0 or SL_ETOOBIG. */
int sl_api_server_address(const struct sl_api_server *srv, char *buf,
                          size_t cap);

/* --- the request, valid until replied to ------------------------------ */

const char *sl_api_req_method(const struct sl_api_req *req); /* "GET" */
/* The path without query string, as sent (not percent-decoded). */
const char *sl_api_req_path(const struct sl_api_req *req);
/* Value of a "{name}" placeholder of the matched route, or NULL. */
const char *sl_api_req_param(const struct sl_api_req *req, const char *name);
/* Copies the percent-decoded value of query parameter key into buf.
 * Returns 0, SL_ENOTFOUND or SL_ETOOBIG. */
int sl_api_req_query(const struct sl_api_req *req, const char *key,
                     char *buf, size_t cap);
/* The body (may be empty, then len 0 and a non-NULL ""); NUL-terminated. */
const char *sl_api_req_body(const struct sl_api_req *req, size_t *len);
/* Parses the body as JSON. An empty body gives *out = NULL and 0.
 * Returns 0 or SL_EPARSE; *out is a new reference to free by the caller. */
int sl_api_req_json(const struct sl_api_req *req, json_t **out);
/* "ip:port" of the client, for logs. */
const char *sl_api_req_peer(const struct sl_api_req *req);

/* --- replies: exactly one per request; each frees req ----------------- */

/* Sends status with body serialized compactly (application/json). Steals
 * the reference to body (NULL sends "{}"). */
void sl_api_reply_json(struct sl_api_req *req, int status, json_t *body);
/* Sends {"error": message, "code": status}. */
void sl_api_reply_error(struct sl_api_req *req, int status,
                        const char *message);
/* Sends raw bytes with the given content type (e.g. Prometheus text). */
void sl_api_reply_text(struct sl_api_req *req, int status,
                       const char *content_type, const char *body,
                       size_t len);

/* Like sl_api_reply_text, with extra header lines (each ending in CRLF,
 * at most 1 KiB in all; NULL for none). */
void sl_api_reply_full(struct sl_api_req *req, int status,
                       const char *content_type, const char *extra_headers,
                       const char *body, size_t len);

/* --- streamed replies (server-sent events) ---------------------------- */

struct sl_api_stream;
/* The client went away (or the server closed): the stream is gone after
 * this returns. Not called after sl_api_stream_end. */
typedef void (*sl_api_stream_gone_cb)(struct sl_api_stream *s, void *arg);

#define SL_API_STREAM_QUEUE_MAX (256 * 1024)

/* Answers req with "200" and content_type, without a length: the body is
 * what sl_api_stream_send writes until either side closes (the connection
 * is not reused). Frees req. Returns the stream, or NULL when the client
 * is gone already or memory ran out (then req is answered or dropped and
 * gone_cb is never called). */
struct sl_api_stream *sl_api_reply_stream(struct sl_api_req *req,
                                          const char *content_type,
                                          sl_api_stream_gone_cb gone_cb,
                                          void *arg);
/* Queues bytes on the stream. Returns 0, SL_ELIMIT when more than
 * SL_API_STREAM_QUEUE_MAX bytes would wait for a slow client (nothing is
 * queued: the caller usually ends the stream; with nothing waiting, one
 * message of any size is taken), or UV_ENOMEM. */
int sl_api_stream_send(struct sl_api_stream *s, const char *data,
                       size_t len);
/* Closes the stream's connection; s is invalid on return and gone_cb is
 * not called. */
void sl_api_stream_end(struct sl_api_stream *s);

/* --- exposed for tests ------------------------------------------------ */

/* Matches method and path (no query string) against routes. On a match
 * returns the route index (>= 0) and fills names/values (pointers into
 * pattern, and NUL-terminated copies into valbuf) for up to
 * SL_API_PARAMS_MAX placeholders, *nparams their count. Returns -404 when
 * no pattern matches the path, -405 when one matches only by path, -414
 * when values overflow valbuf. */
struct sl_api_match {
    const char *names[SL_API_PARAMS_MAX];
    size_t name_lens[SL_API_PARAMS_MAX];
    const char *values[SL_API_PARAMS_MAX];
    size_t nparams;
    char valbuf[512];
};
int sl_api_route_match(const struct sl_api_route *routes, size_t nroutes,
                       const char *method, const char *path,
                       struct sl_api_match *m);

/* 1 if the listen string names a loopback address (127/8, ::1). */
int sl_api_listen_is_loopback(const char *listen);

#endif
