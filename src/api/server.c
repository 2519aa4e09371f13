#include "api/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <openssl/crypto.h>

#include "core/dynbuf.h"
#include "core/error.h"
#include "core/str.h"
#include "net/addr.h"
#include "net/http_head.h"
#include "net/xprt.h"
#include "tls/tls_server.h"
#include "tunnel/creds.h"
#include "tunnel/identity.h"

#define AUTHZ_MAX 1024
#define HOSTHDR_MAX 262 /* a DNS name and ":port" */
#define FIELD_MAX 32
#define READ_CHUNK 65536
#define DASH_KEY_LEN 32
#define ORIGIN_MAX (HOSTHDR_MAX + 16) /* "https://" and a Host */
#define FETCH_SITE_MAX 16
#define EXTRA_HEADERS_MAX 1024

struct conn;

struct sl_api_server {
    struct sl_ctx *ctx;
    uv_tcp_t listener;
    char name[32];
    char *token;       /* NULL: no auth needed */
    int need_auth;
    struct sl_tls_server *tls; /* not owned */
    const struct sl_api_route *routes;
    size_t nroutes;
    void *arg;
    char address[SL_ADDR_STRLEN];
    struct conn *conns; /* doubly linked */
    size_t handles;     /* listener + live connections + refuser */
    /* Takes a connection we have no memory to serve (see refuse). */
    uv_tcp_t refuser;
    int refusing;       /* refuser open */
    int refuse_again;   /* another connection waits for the refuser */
    int closing;
    unsigned long next_id;
    int dashboard;
    char dash_key[DASH_KEY_LEN + 1];
    int detached; /* no listener: sl_api_server_serve hands connections */
};

/* A connection that answered with a streamed body (sse). */
struct sl_api_stream {
    struct conn *conn;
    sl_api_stream_gone_cb gone_cb; /* NULL once ended by its owner */
    void *arg;
    size_t queued; /* bytes handed to the transport, not yet written */
};

struct sl_api_req {
    struct conn *conn; /* NULL once the client has gone */
    struct sl_log *log;
    char name[32];
    unsigned long conn_id;
    char method[16];
    char *url;   /* owned: path '\0' query */
    char *query; /* into url, "" when none */
    char *body;  /* owned, NUL-terminated */
    size_t body_len;
    struct sl_api_match match;
    char peer[SL_ADDR_STRLEN];
    int keep_alive;
};

struct conn {
    struct sl_api_server *srv;
    struct conn *prev, *next;
    unsigned long id;
    struct sl_xprt xp;
    uv_timer_t timer;
    int closing;
    int handles_open; /* tcp + timer still to be closed */
    http_parser parser;
    char peer[SL_ADDR_STRLEN];

    /* the request being read */
    struct sl_dynbuf url;
    struct sl_dynbuf body;
    size_t head_bytes;
    char field[FIELD_MAX + 1];
    size_t field_len;
    int field_overflow;
    int in_authz;     /* the value being read belongs to Authorization */
    int in_host;      /* ... to Host */
    int last_was_value;
    char authz[AUTHZ_MAX + 1];
    size_t authz_len;
    char host[HOSTHDR_MAX + 1];
    size_t host_len;
    int host_overflow;
    int from_browser; /* an Origin or Sec-Fetch-Site header came */
    /* what the dashboard rule looks at (browser_refusal) */
    int in_origin, in_fetch_site, in_dash_key;
    char origin[ORIGIN_MAX + 1];
    size_t origin_len;
    char fetch_site[FETCH_SITE_MAX + 1];
    size_t fetch_site_len;
    char dash_key[DASH_KEY_LEN + 1];
    size_t dash_key_len;
    int value_overflow; /* one of those three was too long: no match */
    int started;      /* a byte of the current request has arrived */
    int headers_done;
    int complete;     /* message complete: dispatch after execute */
    int error_status; /* nonzero: answer this and close */
    const char *error_msg;

    /* bytes after a complete request (pipelining), fed after the reply */
    char *rest;
    size_t rest_len;

    struct sl_api_req *req; /* pending request, or NULL */
    int writing;
    struct sl_api_stream *stream; /* owned; set once a stream answered */
};

struct write_req {
    uv_write_t w;
    struct conn *conn;
    int keep_alive;
    size_t len;
    char data[]; /* head and body */
};

static const http_parser_settings parser_settings;

/* --------------------------------------------------------------------- */
/* Route matching                                                         */

/* Splits off one segment of s (no leading '/'), returns its length. */
static size_t seg_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != '/')
        n++;
    return n;
}

/* Matches path against pattern; fills m. Returns 1 on match, 0 if not,
 * -1 when values overflow m->valbuf. Both may lack the trailing '/'. */
static int pattern_match(const char *pattern, const char *path,
                         struct sl_api_match *m)
{
    size_t used = 0;
    m->nparams = 0;
    if (*pattern != '/' || *path != '/')
        return 0;
    for (;;) {
        while (*pattern == '/')
            pattern++;
        while (*path == '/')
            path++;
        if (*pattern == '\0' || *path == '\0')
            return *pattern == '\0' && *path == '\0';
        size_t pl = seg_len(pattern), sl = seg_len(path);
        if (pl >= 2 && pattern[0] == '{' && pattern[pl - 1] == '}') {
            if (m->nparams >= SL_API_PARAMS_MAX)
                return 0;
            if (used + sl + 1 > sizeof(m->valbuf))
                return -1;
            char *v = m->valbuf + used;
            memcpy(v, path, sl);
            v[sl] = '\0';
            used += sl + 1;
            m->names[m->nparams] = pattern + 1;
            m->name_lens[m->nparams] = pl - 2;
            m->values[m->nparams] = v;
            m->nparams++;
        } else if (pl != sl || memcmp(pattern, path, pl) != 0) {
            return 0;
        }
        pattern += pl;
        path += sl;
    }
}

int sl_api_route_match(const struct sl_api_route *routes, size_t nroutes,
                       const char *method, const char *path,
                       struct sl_api_match *m)
{
    int path_matched = 0;
    for (size_t i = 0; i < nroutes; i++) {
        int r = pattern_match(routes[i].pattern, path, m);
        if (r < 0)
            return -414;
        if (r == 0)
            continue;
        if (strcmp(routes[i].method, method) == 0)
            return (int)i;
        path_matched = 1;
    }
    m->nparams = 0;
    return path_matched ? -405 : -404;
}

int sl_api_listen_is_loopback(const char *listen)
{
    struct sockaddr_storage ss;
    if (listen == NULL || sl_addr_parse(listen, &ss) != 0)
        return 0;
    return sl_addr_is_loopback((const struct sockaddr *)&ss);
}

/* --------------------------------------------------------------------- */
/* Connection lifetime                                                    */

static void server_maybe_free(struct sl_api_server *srv)
{
    if (srv->closing && srv->handles == 0) {
        free(srv->token);
        free(srv);
    }
}

static void conn_reset_request(struct conn *c)
{
    sl_dynbuf_free(&c->url);
    sl_dynbuf_free(&c->body);
    c->head_bytes = 0;
    c->field_len = 0;
    c->field_overflow = 0;
    c->in_authz = 0;
    c->in_host = 0;
    c->last_was_value = 0;
    c->authz_len = 0;
    c->authz[0] = '\0';
    c->host_len = 0;
    c->host[0] = '\0';
    c->host_overflow = 0;
    c->from_browser = 0;
    c->in_origin = c->in_fetch_site = c->in_dash_key = 0;
    c->origin_len = c->fetch_site_len = c->dash_key_len = 0;
    c->origin[0] = c->fetch_site[0] = c->dash_key[0] = '\0';
    c->value_overflow = 0;
    c->started = 0;
    c->headers_done = 0;
    c->complete = 0;
    c->error_status = 0;
    c->error_msg = NULL;
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct sl_api_server *srv = c->srv;
    conn_reset_request(c);
    free(c->rest);
    free(c->stream);
    free(c);
    srv->handles--;
    server_maybe_free(srv);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    sl_debug(&c->srv->ctx->log, "%s: conn %lu from %s: closing (%s)",
             c->srv->name, c->id, c->peer, why);
    if (c->req != NULL) {
        /* The handler still holds the request: make it an orphan. */
        c->req->conn = NULL;
        c->req = NULL;
    }
    if (c->stream != NULL && c->stream->gone_cb != NULL) {
        sl_api_stream_gone_cb cb = c->stream->gone_cb;
        c->stream->gone_cb = NULL;
        cb(c->stream, c->stream->arg);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    sl_xprt_close(&c->xp, on_conn_handle_closed);
}

/* --------------------------------------------------------------------- */
/* Writing replies                                                        */

static void conn_read_start(struct conn *c);
static void conn_feed(struct conn *c, const char *data, size_t len);

static void on_write(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    struct conn *c = wr->conn;
    int keep_alive = wr->keep_alive;
    free(wr);
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    if (!keep_alive || c->srv->closing) {
        conn_close(c, "response sent, not keep-alive");
        return;
    }
    /* Ready for the next request: idle timer, then any pipelined bytes. */
    conn_reset_request(c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_timer_again(&c->timer);
    char *rest = c->rest;
    size_t rest_len = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    if (rest != NULL) {
        conn_feed(c, rest, rest_len);
        free(rest);
    }
    if (!c->closing && c->req == NULL && !c->writing)
        conn_read_start(c);
}

static void conn_send(struct conn *c, int status, const char *ctype,
                      const char *extra, const char *body, size_t len,
                      int keep_alive)
{
    char head[256 + EXTRA_HEADERS_MAX];
    char hdrs[64 + EXTRA_HEADERS_MAX];
    int xn = snprintf(hdrs, sizeof(hdrs), "Cache-Control: no-store\r\n%s",
                      extra ? extra : "");
    if (xn < 0 || (size_t)xn >= sizeof(hdrs)) {
        conn_close(c, "response head too long");
        return;
    }
    int hn = sl_http_format_head(head, sizeof(head), status, ctype, len,
                                 hdrs, keep_alive);
    if (hn < 0) {
        conn_close(c, "response head too long");
        return;
    }
    struct write_req *wr = malloc(sizeof(*wr) + (size_t)hn + len);
    if (wr == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    wr->conn = c;
    wr->keep_alive = keep_alive;
    wr->len = (size_t)hn + len;
    memcpy(wr->data, head, (size_t)hn);
    if (len > 0)
        memcpy(wr->data + hn, body, len);
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)wr->len);
    /* Reading stays stopped until the reply is out: one request at a
     * time per connection. */
    sl_xprt_read_stop(&c->xp);
    uv_timer_stop(&c->timer);
    c->writing = 1;
    int rc = sl_xprt_write(&wr->w, &c->xp, &buf, 1, on_write);
    if (rc != 0) {
        free(wr);
        c->writing = 0;
        conn_close(c, uv_strerror(rc));
    }
}

static char *error_json(int status, const char *message, size_t *len)
{
    json_t *j = json_pack("{s:s, s:i}", "error", message, "code", status);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    *len = s ? strlen(s) : 0;
    return s;
}

/* An error of the server itself (not of a handler): answer and close. */
static void conn_fail(struct conn *c, int status, const char *message)
{
    sl_info(&c->srv->ctx->log, "%s: conn %lu from %s: %d %s", c->srv->name,
            c->id, c->peer, status, message);
    size_t len;
    char *s = error_json(status, message, &len);
    if (s == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    conn_send(c, status, "application/json", NULL, s, len, 0);
    free(s);
}

static void req_free(struct sl_api_req *req)
{
    free(req->url);
    free(req->body);
    free(req);
}

void sl_api_reply_text(struct sl_api_req *req, int status,
                       const char *content_type, const char *body,
                       size_t len)
{
    sl_api_reply_full(req, status, content_type, NULL, body, len);
}

void sl_api_reply_full(struct sl_api_req *req, int status,
                       const char *content_type, const char *extra_headers,
                       const char *body, size_t len)
{
    if (req == NULL)
        return;
    struct conn *c = req->conn;
    sl_info(req->log, "%s: conn %lu from %s: %s %s -> %d%s", req->name,
            req->conn_id, req->peer, req->method, req->url, status,
            c ? "" : " (client gone)");
    if (c != NULL) {
        c->req = NULL;
        conn_send(c, status, content_type, extra_headers, body ? body : "",
                  body ? len : 0, req->keep_alive);
    }
    req_free(req);
}

void sl_api_reply_json(struct sl_api_req *req, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (s == NULL) {
        if (body != NULL) {
            sl_api_reply_error(req, 500, "Internal error");
            return;
        }
        sl_api_reply_text(req, status, "application/json", "{}", 2);
        return;
    }
    sl_api_reply_text(req, status, "application/json", s, strlen(s));
    free(s);
}

void sl_api_reply_error(struct sl_api_req *req, int status,
                        const char *message)
{
    size_t len;
    char *s = error_json(status, message ? message : sl_http_reason(status),
                         &len);
    if (s == NULL) {
        sl_api_reply_text(req, 500, "application/json",
                          "{\"error\":\"Internal error\",\"code\":500}", 37);
        return;
    }
    sl_api_reply_text(req, status, "application/json", s, len);
    free(s);
}

/* --------------------------------------------------------------------- */
/* Streamed replies                                                       */

struct stream_write {
    uv_write_t w;
    struct conn *conn;
    size_t len;
    char data[];
};

static void on_stream_write(uv_write_t *w, int status)
{
    struct stream_write *sw = (struct stream_write *)w;
    struct conn *c = sw->conn;
    if (c->stream != NULL)
        c->stream->queued -= sw->len;
    free(sw);
    if (status < 0 && !c->closing)
        conn_close(c, uv_strerror(status));
}

static int stream_write(struct conn *c, const char *data, size_t len)
{
    struct stream_write *sw = malloc(sizeof(*sw) + len);
    if (sw == NULL)
        return UV_ENOMEM;
    sw->conn = c;
    sw->len = len;
    memcpy(sw->data, data, len);
    uv_buf_t buf = uv_buf_init(sw->data, (unsigned)len);
    int rc = sl_xprt_write(&sw->w, &c->xp, &buf, 1, on_stream_write);
    if (rc != 0) {
        free(sw);
        return rc;
    }
    if (c->stream != NULL)
        c->stream->queued += len;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

struct sl_api_stream *sl_api_reply_stream(struct sl_api_req *req,
                                          const char *content_type,
                                          sl_api_stream_gone_cb gone_cb,
                                          void *arg)
{
    if (req == NULL)
        return NULL;
    struct conn *c = req->conn;
    sl_info(req->log, "%s: conn %lu from %s: %s %s -> 200 (stream)%s",
            req->name, req->conn_id, req->peer, req->method, req->url,
            c ? "" : " (client gone)");
    struct sl_api_stream *s = NULL;
    if (c == NULL)
        goto out;
    c->req = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        conn_close(c, "out of memory");
        goto out;
    }
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                      "Cache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\n"
                      "Connection: close\r\n\r\n",
                      content_type);
    if (hn < 0 || (size_t)hn >= sizeof(head) ||
        stream_write(c, head, (size_t)hn) != 0) {
        free(s);
        s = NULL;
        conn_close(c, "stream head failed");
        goto out;
    }
    s->conn = c;
    s->gone_cb = gone_cb;
    s->arg = arg;
    c->stream = s;
    /* No more requests on this connection, and no idle timeout: the
     * stream lasts until a side closes. Reading goes on, only to see the
     * client leave. */
    uv_timer_stop(&c->timer);
    free(c->rest);
    c->rest = NULL;
    c->rest_len = 0;
    if (sl_xprt_read_start(&c->xp, on_alloc, on_read) != 0) {
        s->gone_cb = NULL;
        conn_close(c, "read failed");
        s = NULL;
    }
out:
    req_free(req);
    return s;
}

int sl_api_stream_send(struct sl_api_stream *s, const char *data,
                       size_t len)
{
    if (s->conn->closing)
        return UV_ECANCELED;
    /* A client that has read everything may take one message of any
     * size (a snapshot of many allocations); one that lags may not. */
    if (s->queued > 0 && s->queued + len > SL_API_STREAM_QUEUE_MAX)
        return SL_ELIMIT;
    return stream_write(s->conn, data, len);
}

void sl_api_stream_end(struct sl_api_stream *s)
{
    s->gone_cb = NULL;
    conn_close(s->conn, "stream ended");
}

/* --------------------------------------------------------------------- */
/* Request accessors                                                      */

const char *sl_api_req_method(const struct sl_api_req *req)
{
    return req->method;
}

const char *sl_api_req_path(const struct sl_api_req *req)
{
    return req->url;
}

const char *sl_api_req_peer(const struct sl_api_req *req)
{
    return req->peer;
}

const char *sl_api_req_param(const struct sl_api_req *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->match.nparams; i++)
        if (req->match.name_lens[i] == n &&
            memcmp(req->match.names[i], name, n) == 0)
            return req->match.values[i];
    return NULL;
}

int sl_api_req_query(const struct sl_api_req *req, const char *key,
                     char *buf, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = req->query;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t name_len = eq ? (size_t)(eq - p) : n;
        if (name_len == klen && memcmp(p, key, klen) == 0) {
            if (eq == NULL)
                return sl_pct_decode("", 0, buf, cap, 0);
            return sl_pct_decode(eq + 1, n - name_len - 1, buf, cap, 0);
        }
        p = end ? end + 1 : NULL;
    }
    return SL_ENOTFOUND;
}

const char *sl_api_req_body(const struct sl_api_req *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body;
}

int sl_api_req_json(const struct sl_api_req *req, json_t **out)
{
    *out = NULL;
    size_t i = 0;
    while (i < req->body_len && (req->body[i] == ' ' || req->body[i] == '\n' ||
                                 req->body[i] == '\r' || req->body[i] == '\t'))
        i++;
    if (i == req->body_len)
        return 0;
    json_error_t e;
    *out = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    return *out ? 0 : SL_EPARSE;
}

/* --------------------------------------------------------------------- */
/* Parsing requests                                                       */

static int head_add(struct conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > SL_API_HEAD_MAX) {
        c->error_status = 431;
        c->error_msg = "Request header too large";
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->started = 1;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (head_add(c, n) != 0)
        return -1;
    if (sl_dynbuf_append(&c->url, at, n, SL_API_HEAD_MAX) != 0) {
        c->error_status = 414;
        c->error_msg = "URI too long";
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (head_add(c, n + 4) != 0)
        return -1;
    if (c->last_was_value) {
        c->field_len = 0;
        c->field_overflow = 0;
        c->last_was_value = 0;
    }
    if (c->field_len + n > FIELD_MAX) {
        c->field_overflow = 1;
        return 0;
    }
    memcpy(c->field + c->field_len, at, n);
    c->field_len += n;
    c->field[c->field_len] = '\0';
    return 0;
}

/* Appends a piece of a header value the dashboard rule reads; one too
 * long spoils the match (value_overflow) rather than the request. */
static void keep_value(struct conn *c, char *dst, size_t *len, size_t max,
                       const char *at, size_t n)
{
    if (*len + n > max) {
        c->value_overflow = 1;
        return;
    }
    memcpy(dst + *len, at, n);
    *len += n;
    dst[*len] = '\0';
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (head_add(c, n) != 0)
        return -1;
    if (!c->last_was_value) {
        c->last_was_value = 1;
        int known = !c->field_overflow;
        c->in_authz = known && strcasecmp(c->field, "authorization") == 0;
        if (c->in_authz)
            c->authz_len = 0; /* the last Authorization header counts */
        c->in_host = known && strcasecmp(c->field, "host") == 0;
        if (c->in_host)
            c->host_len = 0;
        if (known && (strcasecmp(c->field, "origin") == 0 ||
                      strcasecmp(c->field, "sec-fetch-site") == 0))
            c->from_browser = 1;
        c->in_origin = known && strcasecmp(c->field, "origin") == 0;
        c->in_fetch_site =
            known && strcasecmp(c->field, "sec-fetch-site") == 0;
        c->in_dash_key =
            known && strcasecmp(c->field, "x-sluice-dashboard") == 0;
        /* A repeated header of these three is suspect: no match. */
        if ((c->in_origin && c->origin_len > 0) ||
            (c->in_fetch_site && c->fetch_site_len > 0) ||
            (c->in_dash_key && c->dash_key_len > 0))
            c->value_overflow = 1;
    }
    if (c->in_origin)
        keep_value(c, c->origin, &c->origin_len, ORIGIN_MAX, at, n);
    if (c->in_fetch_site)
        keep_value(c, c->fetch_site, &c->fetch_site_len, FETCH_SITE_MAX, at,
                   n);
    if (c->in_dash_key)
        keep_value(c, c->dash_key, &c->dash_key_len, DASH_KEY_LEN, at, n);
    if (c->in_host) {
        if (c->host_len + n > HOSTHDR_MAX) {
            c->host_overflow = 1;
        } else {
            memcpy(c->host + c->host_len, at, n);
            c->host_len += n;
            c->host[c->host_len] = '\0';
        }
    }
    if (c->in_authz) {
        if (c->authz_len + n > AUTHZ_MAX) {
            c->error_status = 431;
            c->error_msg = "Authorization header too large";
            return -1;
        }
        memcpy(c->authz + c->authz_len, at, n);
        c->authz_len += n;
        c->authz[c->authz_len] = '\0';
    }
    return 0;
}

/* "Bearer <token>", scheme case-insensitive, spaces trimmed. */
static int authorized(struct conn *c)
{
    struct sl_api_server *srv = c->srv;
    if (!srv->need_auth)
        return 1;
    const char *v = c->authz;
    size_t n = strlen(v);
    sl_trim_ows(&v, &n);
    if (n < 7 || strncasecmp(v, "Bearer", 6) != 0 || !sl_is_ows(v[6]))
        return 0;
    v += 6;
    n -= 6;
    sl_trim_ows(&v, &n);
    char tok[AUTHZ_MAX + 1];
    memcpy(tok, v, n);
    tok[n] = '\0';
    return sl_token_equal(tok, srv->token);
}

/* 1 if a Host value names this machine: localhost (or a name under
 * .localhost), a loopback IP literal, with an optional port. */
static int host_is_local(const char *v, size_t n)
{
    char value[HOSTHDR_MAX + 1], h[HOSTHDR_MAX + 1], port[8];
    sl_trim_ows(&v, &n);
    if (n == 0 || n > HOSTHDR_MAX)
        return 0;
    memcpy(value, v, n);
    value[n] = '\0';
    if (strcspn(value, "/?#") != n) /* a Host is no URL */
        return 0;
    if (sl_http_split_host_port(value, h, sizeof(h), port, sizeof(port)) != 0)
        return 0;
    size_t hl = strlen(h);
    if (hl > 0 && h[hl - 1] == '.')
        h[--hl] = '\0';
    if (strcasecmp(h, "localhost") == 0 ||
        (hl > 10 && strcasecmp(h + hl - 10, ".localhost") == 0))
        return 1;
    struct sockaddr_storage ss;
    return sl_addr_parse_ip(h, 0, &ss) == 0 &&
           sl_addr_is_loopback((struct sockaddr *)&ss);
}

/* Without a token, being on loopback is the only credential, and a web
 * page in the user's browser is on loopback too: it may send a form POST
 * (no preflight) or rebind its own name to 127.0.0.1. Browsers always add
 * Origin or Sec-Fetch-Site to such requests and keep the page's name in
 * Host; the CLI and curl send neither. So without a token, a request that
 * carries those headers or names another host is refused. */
/* 1 if the request comes from this server's own dashboard page: the
 * page's key, sent as no other origin can (a custom header needs a CORS
 * preflight, never granted), and nothing saying another site sent it. */
static int from_dashboard(const struct conn *c)
{
    const struct sl_api_server *srv = c->srv;
    if (!srv->dashboard || c->value_overflow ||
        c->dash_key_len != DASH_KEY_LEN ||
        CRYPTO_memcmp(c->dash_key, srv->dash_key, DASH_KEY_LEN) != 0)
        return 0;
    const char *fs = c->fetch_site;
    size_t fn = c->fetch_site_len;
    sl_trim_ows(&fs, &fn);
    if (fn > 0 && !(fn == 11 && strncasecmp(fs, "same-origin", 11) == 0))
        return 0;
    if (c->origin_len == 0)
        return 1;
    /* Origin is "scheme://host[:port]", the Host the page was loaded
     * from: compare the part after the scheme. */
    const char *o = c->origin, *h = c->host;
    size_t on = c->origin_len, hn = c->host_len;
    sl_trim_ows(&o, &on);
    sl_trim_ows(&h, &hn);
    const char *sep = memchr(o, ':', on);
    if (sep == NULL || (size_t)(o + on - sep) < 3 || sep[1] != '/' ||
        sep[2] != '/')
        return 0;
    const char *oh = sep + 3;
    size_t ohn = on - (size_t)(oh - o);
    return hn > 0 && ohn == hn && strncasecmp(oh, h, hn) == 0;
}

static const char *browser_refusal(const struct conn *c)
{
    if (c->srv->need_auth)
        return NULL; /* the bearer token cannot be forged by a page */
    /* A handed-over connection's peer proved itself (mutual TLS): the
     * names it reaches us by are its own business. */
    if (!c->srv->detached &&
        (c->host_overflow ||
         (c->host_len > 0 && !host_is_local(c->host, c->host_len))))
        return "Forbidden: the Host header must name this machine "
               "(localhost or a loopback address) when no admin token "
               "is set";
    if (c->from_browser && !from_dashboard(c))
        return "Forbidden: requests from web pages (Origin or "
               "Sec-Fetch-Site) need the admin token";
    return NULL;
}

/* The dashboard's shell: GET of "/" or "/ui/<file>". Static code
 * without data, so it needs no credential; what it then asks the API
 * does. */
static int is_dashboard_shell(const struct conn *c)
{
    if (!c->srv->dashboard || c->parser.method != HTTP_GET)
        return 0;
    const char *u = c->url.data ? c->url.data : "";
    size_t n = strcspn(u, "?#");
    return (n == 1 && u[0] == '/') ||
           (n > 4 && strncmp(u, "/ui/", 4) == 0);
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->headers_done = 1;
    if (is_dashboard_shell(c)) {
        /* Only the rebinding rule: a page of another name must not read
         * even the shell (it carries the dashboard key). */
        if (!c->srv->need_auth &&
            (c->host_overflow ||
             (c->host_len > 0 && !host_is_local(c->host, c->host_len)))) {
            c->error_status = 403;
            c->error_msg = browser_refusal(c);
            return -1;
        }
        return 0;
    }
    if (!authorized(c)) {
        c->error_status = 401;
        c->error_msg = "Unauthorized";
        return -1;
    }
    const char *refusal = browser_refusal(c);
    if (refusal != NULL) {
        c->error_status = 403;
        c->error_msg = refusal;
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > SL_API_BODY_MAX) {
        c->error_status = 413;
        c->error_msg = "Request body too large";
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    int rc = sl_dynbuf_append(&c->body, at, n, SL_API_BODY_MAX);
    if (rc != 0) {
        c->error_status = rc == SL_ETOOBIG ? 413 : 500;
        c->error_msg = rc == SL_ETOOBIG ? "Request body too large"
                                        : "Out of memory";
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->complete = 1;
    /* Stop here: the rest of the buffer is the next request, handled
     * after this one's reply. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void dispatch(struct conn *c)
{
    struct sl_api_server *srv = c->srv;
    struct sl_api_req *req = calloc(1, sizeof(*req));
    if (req == NULL) {
        conn_fail(c, 500, "Out of memory");
        return;
    }
    req->conn = c;
    req->log = &srv->ctx->log;
    req->conn_id = c->id;
    snprintf(req->name, sizeof(req->name), "%s", srv->name);
    snprintf(req->peer, sizeof(req->peer), "%s", c->peer);
    snprintf(req->method, sizeof(req->method), "%s",
             http_method_str((enum http_method)c->parser.method));
    req->keep_alive = http_should_keep_alive(&c->parser) &&
                      !c->parser.upgrade;
    req->body_len = c->body.len;
    req->body = sl_dynbuf_take(&c->body);
    req->url = sl_dynbuf_take(&c->url);
    if (req->body == NULL || req->url == NULL) {
        req_free(req);
        conn_fail(c, 500, "Out of memory");
        return;
    }
    char *q = strchr(req->url, '?');
    char *frag = strchr(req->url, '#');
    if (frag)
        *frag = '\0';
    if (q) {
        *q = '\0';
        req->query = q + 1;
    } else {
        req->query = req->url + strlen(req->url);
    }
    if (req->url[0] != '/') {
        req_free(req);
        conn_fail(c, 400, "Bad request target");
        return;
    }
    int r = sl_api_route_match(srv->routes, srv->nroutes, req->method,
                               req->url, &req->match);
    c->req = req;
    if (r == -404) {
        sl_api_reply_error(req, 404, "Not found");
        return;
    }
    if (r == -405) {
        sl_api_reply_error(req, 405, "Method not allowed");
        return;
    }
    if (r < 0) {
        sl_api_reply_error(req, 414, "URI too long");
        return;
    }
    sl_debug(&srv->ctx->log, "%s: conn %lu from %s: %s %s", srv->name, c->id,
             c->peer, req->method, req->url);
    srv->routes[r].fn(req, srv->arg);
}

/* Feeds bytes to the parser; dispatches a complete request, keeping what
 * follows it for later. */
static void conn_feed(struct conn *c, const char *data, size_t len)
{
    size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (c->error_status) {
        conn_fail(c, c->error_status, c->error_msg);
        return;
    }
    if (c->complete) {
        http_parser_pause(&c->parser, 0);
        if (n < len) {
            /* Bound what a pipelining client may queue. */
            if (len - n > SL_API_HEAD_MAX) {
                conn_fail(c, 431, "Too much pipelined data");
                return;
            }
            char *rest = malloc(len - n);
            if (rest == NULL) {
                conn_fail(c, 500, "Out of memory");
                return;
            }
            memcpy(rest, data + n, len - n);
            free(c->rest);
            c->rest = rest;
            c->rest_len = len - n;
        }
        sl_xprt_read_stop(&c->xp);
        uv_timer_stop(&c->timer);
        dispatch(c);
        return;
    }
    if (err != HPE_OK) {
        conn_fail(c, 400, "Bad request");
        return;
    }
    if (c->parser.upgrade) {
        conn_fail(c, 400, "Upgrade not supported");
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    buf->base = malloc(READ_CHUNK);
    buf->len = buf->base ? READ_CHUNK : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread < 0) {
        free(buf->base);
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (nread > 0 && !c->closing && c->req == NULL && !c->writing &&
        c->stream == NULL)
        conn_feed(c, buf->base, (size_t)nread);
    free(buf->base);
}

static void conn_read_start(struct conn *c)
{
    int rc = sl_xprt_read_start(&c->xp, on_alloc, on_read);
    if (rc != 0)
        conn_close(c, uv_strerror(rc));
}

static void on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->closing || c->req != NULL || c->writing || c->stream != NULL)
        return;
    if (c->started)
        conn_fail(c, 408, "Request timeout");
    else
        conn_close(c, "idle timeout");
}

static void refuse(struct sl_api_server *srv);

static void on_refuser_closed(uv_handle_t *h)
{
    struct sl_api_server *srv = h->data;
    srv->refusing = 0;
    srv->handles--;
    if (srv->refuse_again && !srv->closing) {
        srv->refuse_again = 0;
        refuse(srv);
    }
    server_maybe_free(srv);
}

/* libuv stops watching a listener whose pending connection the callback
 * did not uv_accept, so leaving one unaccepted after a failed allocation
 * would stop the API for good: take it on a spare handle and close it. */
static void refuse(struct sl_api_server *srv)
{
    if (srv->refusing) {
        srv->refuse_again = 1;
        return;
    }
    if (uv_tcp_init(srv->ctx->loop, &srv->refuser) != 0)
        return;
    srv->refuser.data = srv;
    srv->refusing = 1;
    srv->handles++;
    (void)uv_accept((uv_stream_t *)&srv->listener,
                    (uv_stream_t *)&srv->refuser);
    uv_close((uv_handle_t *)&srv->refuser, on_refuser_closed);
}

static void on_handshake(struct sl_xprt *x, int status)
{
    struct conn *c = x->tcp.data;
    if (c->closing)
        return;
    if (status != 0) {
        sl_debug(&c->srv->ctx->log, "%s: conn %lu from %s: TLS handshake "
                 "failed: %s", c->srv->name, c->id, c->peer,
                 status == UV_EPROTO ? sl_xprt_error(x) : uv_strerror(status));
        conn_close(c, "TLS handshake failed");
        return;
    }
    conn_read_start(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct sl_api_server *srv = ls->data;
    if (status < 0) {
        sl_warn(&srv->ctx->log, "%s: accept failed: %s", srv->name,
                uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sl_warn(&srv->ctx->log, "%s: out of memory; refusing a connection",
                srv->name);
        refuse(srv);
        return;
    }
    c->srv = srv;
    c->id = ++srv->next_id;
    sl_xprt_init(&c->xp);
    uv_tcp_init(srv->ctx->loop, &c->xp.tcp);
    uv_timer_init(srv->ctx->loop, &c->timer);
    c->xp.tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    srv->handles++;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->xp.tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->xp.tcp, (struct sockaddr *)&ss, &sl) == 0)
        sl_addr_str((struct sockaddr *)&ss, c->peer);
    else
        snprintf(c->peer, sizeof(c->peer), "?");
    uv_tcp_nodelay(&c->xp.tcp, 1);
    sl_debug(&srv->ctx->log, "%s: conn %lu from %s: accepted", srv->name,
             c->id, c->peer);
    uv_timer_start(&c->timer, on_timeout, SL_API_TIMEOUT_MS,
                   SL_API_TIMEOUT_MS);
    if (srv->tls != NULL) {
        /* The request timer bounds the handshake too. */
        SSL *ssl = sl_tls_server_ssl(srv->tls);
        if (ssl == NULL ||
            sl_xprt_tls_start(&c->xp, ssl, NULL, 0, on_handshake) != 0)
            conn_close(c, "TLS set-up failed");
        return;
    }
    conn_read_start(c);
}

int sl_api_server_serve(struct sl_api_server *srv, const char *peer,
                        sl_api_attach_fn attach, void *arg)
{
    if (srv == NULL || !srv->detached || srv->closing)
        return UV_EINVAL;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    sl_xprt_init(&c->xp);
    int rc = attach(&c->xp, arg);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->srv = srv;
    c->id = ++srv->next_id;
    uv_timer_init(srv->ctx->loop, &c->timer);
    c->xp.tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    srv->handles++;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
    sl_debug(&srv->ctx->log, "%s: conn %lu from %s: handed over", srv->name,
             c->id, c->peer);
    uv_timer_start(&c->timer, on_timeout, SL_API_TIMEOUT_MS,
                   SL_API_TIMEOUT_MS);
    conn_read_start(c);
    return 0;
}

/* --------------------------------------------------------------------- */
/* Server                                                                 */

static void on_listener_closed(uv_handle_t *h)
{
    struct sl_api_server *srv = h->data;
    srv->handles--;
    server_maybe_free(srv);
}

int sl_api_server_start(struct sl_ctx *ctx, const struct sl_api_config *cfg,
                        struct sl_api_server **out)
{
    if (ctx == NULL || cfg == NULL || out == NULL ||
        (cfg->nroutes > 0 && cfg->routes == NULL))
        return UV_EINVAL;
    *out = NULL;
    struct sockaddr_storage ss;
    int detached = cfg->listen == NULL;
    if (!detached && sl_addr_parse(cfg->listen, &ss) != 0)
        return SL_EPARSE;
    int loopback = !detached && sl_addr_is_loopback((struct sockaddr *)&ss);
    const char *name = cfg->name ? cfg->name : "api";
    int has_token = cfg->token != NULL && cfg->token[0] != '\0';
    int need_auth = detached ? cfg->require_token || has_token
                             : !loopback || cfg->require_token;
    if (need_auth && !has_token) {
        sl_error(&ctx->log, "%s: listening on %s %s an admin token", name,
                 cfg->listen,
                 loopback ? "with the token required needs"
                          : "(not loopback) needs");
        return SL_ECONFIG;
    }
    struct sl_api_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return UV_ENOMEM;
    srv->ctx = ctx;
    snprintf(srv->name, sizeof(srv->name), "%s", name);
    srv->need_auth = need_auth;
    srv->tls = cfg->tls;
    if (has_token && (srv->token = strdup(cfg->token)) == NULL) {
        free(srv);
        return UV_ENOMEM;
    }
    srv->dashboard = cfg->dashboard;
    if (srv->dashboard &&
        sl_random_string(srv->dash_key, DASH_KEY_LEN, "0123456789abcdef") !=
            0) {
        free(srv->token);
        free(srv);
        return UV_EIO;
    }
    srv->routes = cfg->routes;
    srv->nroutes = cfg->nroutes;
    srv->arg = cfg->arg;
    if (detached) {
        srv->detached = 1;
        snprintf(srv->address, sizeof(srv->address), "-");
        sl_debug(&ctx->log, "%s: serving connections handed over (%s)",
                 name, need_auth ? "bearer token required"
                                 : "peers authenticated by their transport");
        *out = srv;
        return 0;
    }
    uv_tcp_init(ctx->loop, &srv->listener);
    srv->listener.data = srv;
    srv->handles = 1;
    int rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (rc == 0) {
        struct sockaddr_storage bound;
        int bl = sizeof(bound);
        rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound,
                                &bl);
        if (rc == 0)
            sl_addr_str((struct sockaddr *)&bound, srv->address);
    }
    if (rc != 0) {
        sl_error(&ctx->log, "%s: listening on %s failed: %s", name,
                 cfg->listen, uv_strerror(rc));
        srv->closing = 1;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        return rc;
    }
    sl_info(&ctx->log, "%s: listening on %s (%s)", name, srv->address,
            need_auth ? "bearer token required" : "loopback, no token");
    *out = srv;
    return 0;
}

void sl_api_server_close(struct sl_api_server *srv)
{
    if (srv == NULL || srv->closing)
        return;
    srv->closing = 1;
    while (srv->conns != NULL)
        conn_close(srv->conns, "server closing");
    if (srv->detached)
        server_maybe_free(srv); /* now, or once the last conn has closed */
    else
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

const char *sl_api_server_dashboard_key(const struct sl_api_server *srv)
{
    return srv->dash_key;
}

int sl_api_server_address(const struct sl_api_server *srv, char *buf,
                          size_t cap)
{
    int n = snprintf(buf, cap, "%s", srv->address);
    return n < 0 || (size_t)n >= cap ? SL_ETOOBIG : 0;
}
