#include "node/node_inspect.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <http_parser.h>
#include <uv.h>

#include "core/error.h"
#include "core/b64.h"

#define FIELD_MAX 64
#define REDACTED "[redacted]"

enum xstate { X_PENDING, X_COMPLETE, X_ABORTED, X_UNPARSED };

static const char *const xstate_name[] = {"pending", "complete", "aborted",
                                          "unparsed"};

/* One direction of an exchange as recorded. */
struct msg {
    struct sl_dynbuf head;
    struct sl_dynbuf body;
    uint64_t body_len; /* as sent (decoded from chunks) */
    unsigned started : 1;
    unsigned head_truncated : 1;
    unsigned line_done : 1; /* request or status line closed */
};

/* One request and its response. Held by the ring and by each side of the
 * connection still writing into it: a response may end before its
 * request's body does, and the ring may drop an exchange still open. */
struct xchg {
    int refs;
    uint64_t id;
    int64_t started_ms;       /* wall clock, for people */
    uint64_t t0_ns, t_end_ns; /* monotonic, for durations */
    int method;               /* enum http_method */
    int status;
    enum xstate state;
    unsigned replay : 1;
    unsigned upgrade : 1;
    unsigned req_done : 1;
    unsigned interim : 1; /* the response being read is a 1xx */
    struct msg req, resp;
};

struct sl_inspect {
    struct xchg **ring;
    size_t keep, first, count;
    uint64_t next_id;
};

/* The parser of one direction. */
struct side {
    http_parser p;
    struct xchg *x; /* the exchange being read (a reference), or NULL */
    char field[FIELD_MAX + 1];
    size_t field_len;
    unsigned in_value : 1;  /* the last piece was a header value */
    unsigned redacting : 1; /* the value being read is a secret */
    unsigned stopped : 1;   /* no more HTTP in this direction */
};

struct sl_inspect_conn {
    struct sl_inspect *in;
    struct side side[2];
    /* requests awaiting their response, oldest first (references) */
    struct xchg *pending[SL_INSPECT_PENDING_MAX];
    size_t npending;
    uint64_t first_id;
    unsigned replay : 1;
    unsigned off : 1;      /* recording stopped for good */
    unsigned unparsed : 1; /* ... because the bytes were not HTTP */
};

static const http_parser_settings settings[2];

/* ------------------------------------------------------------ exchanges */

static void msg_free(struct msg *m)
{
    sl_dynbuf_free(&m->head);
    sl_dynbuf_free(&m->body);
}

static void xchg_unref(struct xchg *x)
{
    if (x == NULL || --x->refs > 0)
        return;
    msg_free(&x->req);
    msg_free(&x->resp);
    free(x);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct sl_inspect *sl_inspect_new(size_t keep)
{
    if (keep == 0)
        keep = SL_INSPECT_KEEP_DEFAULT;
    if (keep > SL_INSPECT_KEEP_MAX)
        keep = SL_INSPECT_KEEP_MAX;
    struct sl_inspect *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return NULL;
    in->ring = calloc(keep, sizeof(*in->ring));
    if (in->ring == NULL) {
        free(in);
        return NULL;
    }
    in->keep = keep;
    in->next_id = 1;
    return in;
}

void sl_inspect_free(struct sl_inspect *in)
{
    if (in == NULL)
        return;
    for (size_t i = 0; i < in->count; i++)
        xchg_unref(in->ring[(in->first + i) % in->keep]);
    free(in->ring);
    free(in);
}

size_t sl_inspect_count(const struct sl_inspect *in)
{
    return in->count;
}

uint64_t sl_inspect_last_id(const struct sl_inspect *in)
{
    return in->next_id - 1;
}

/* The ring takes a reference; the oldest exchange makes room. */
static void ring_push(struct sl_inspect *in, struct xchg *x)
{
    if (in->count == in->keep) {
        xchg_unref(in->ring[in->first]);
        in->ring[in->first] = NULL;
        in->first = (in->first + 1) % in->keep;
        in->count--;
    }
    x->refs++;
    in->ring[(in->first + in->count) % in->keep] = x;
    in->count++;
}

static const struct xchg *ring_find(const struct sl_inspect *in, uint64_t id)
{
    for (size_t i = 0; i < in->count; i++) {
        const struct xchg *x = in->ring[(in->first + i) % in->keep];
        if (x->id == id)
            return x;
    }
    return NULL;
}

/* ------------------------------------------------------------ recording */

/* Appends to a head, keeping what fits under the cap. */
static void head_add(struct msg *m, const char *p, size_t n)
{
    if (m->head_truncated)
        return;
    size_t room = SL_INSPECT_HEAD_CAP - m->head.len;
    if (n > room) {
        n = room;
        m->head_truncated = 1;
    }
    if (n > 0 && sl_dynbuf_append(&m->head, p, n, SL_INSPECT_HEAD_CAP) != 0)
        m->head_truncated = 1;
}

__attribute__((format(printf, 2, 3))) static void head_fmt(struct msg *m,
                                                           const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        head_add(m, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static int is_secret(const char *field)
{
    return strcasecmp(field, "authorization") == 0 ||
           strcasecmp(field, "proxy-authorization") == 0 ||
           strcasecmp(field, "cookie") == 0 ||
           strcasecmp(field, "set-cookie") == 0;
}

static struct sl_inspect_conn *conn_of(http_parser *p, int *dir)
{
    struct sl_inspect_conn *ic = p->data;
    *dir = p == &ic->side[SL_INSPECT_RESPONSE].p;
    return ic;
}

static struct msg *msg_of(struct side *s, int dir)
{
    return dir ? &s->x->resp : &s->x->req;
}

/* Closes the request or status line before the first header (or the end
 * of the head): the version is known by then. */
static void close_line(struct side *s, int dir)
{
    struct msg *m = msg_of(s, dir);
    if (m->line_done)
        return;
    m->line_done = 1;
    if (dir == SL_INSPECT_REQUEST) {
        head_fmt(m, " HTTP/%u.%u\r\n", s->p.http_major, s->p.http_minor);
    } else {
        if (m->head.len == 0) /* no reason phrase came */
            head_fmt(m, "HTTP/%u.%u %u", s->p.http_major, s->p.http_minor,
                     s->p.status_code);
        head_add(m, "\r\n", 2);
    }
}

static int on_message_begin(http_parser *p)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    xchg_unref(s->x);
    s->x = NULL;
    s->field_len = 0;
    s->in_value = 0;
    s->redacting = 0;
    if (dir == SL_INSPECT_REQUEST) {
        if (ic->npending == SL_INSPECT_PENDING_MAX)
            return -1; /* too deep a pipeline: stop recording */
        struct xchg *x = calloc(1, sizeof(*x));
        if (x == NULL)
            return -1;
        x->refs = 2; /* this side and the pending list */
        x->id = ic->in->next_id++;
        x->started_ms = (int64_t)wall_ms();
        x->t0_ns = uv_hrtime();
        x->replay = ic->replay;
        x->state = X_PENDING;
        x->req.started = 1;
        if (ic->first_id == 0)
            ic->first_id = x->id;
        ic->pending[ic->npending++] = x;
        ring_push(ic->in, x);
        s->x = x;
        return 0;
    }
    /* A response answers the oldest request still without one. */
    if (ic->npending == 0)
        return -1;
    struct xchg *x = ic->pending[0];
    x->refs++;
    s->x = x;
    /* After a 1xx, the final response replaces it. */
    msg_free(&x->resp);
    memset(&x->resp, 0, sizeof(x->resp));
    x->resp.started = 1;
    x->interim = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = &s->x->req;
    if (m->head.len == 0) {
        s->x->method = (int)p->method;
        head_fmt(m, "%s ", http_method_str((enum http_method)p->method));
    }
    head_add(m, at, n);
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = &s->x->resp;
    if (m->head.len == 0)
        head_fmt(m, "HTTP/%u.%u %u ", p->http_major, p->http_minor,
                 p->status_code);
    head_add(m, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = msg_of(s, dir);
    close_line(s, dir);
    if (s->in_value) {
        head_add(m, "\r\n", 2);
        s->in_value = 0;
        s->field_len = 0;
    }
    /* A name longer than the buffer is no secret's name: it is kept in
     * the head all the same, only not compared. */
    size_t take = n;
    if (s->field_len + take > FIELD_MAX)
        take = FIELD_MAX > s->field_len ? FIELD_MAX - s->field_len : 0;
    memcpy(s->field + s->field_len, at, take);
    s->field_len += take;
    s->field[s->field_len] = '\0';
    head_add(m, at, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = msg_of(s, dir);
    if (!s->in_value) {
        s->in_value = 1;
        s->redacting = is_secret(s->field);
        head_add(m, ": ", 2);
        if (s->redacting)
            head_add(m, REDACTED, strlen(REDACTED));
    }
    if (!s->redacting)
        head_add(m, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = msg_of(s, dir);
    close_line(s, dir);
    if (s->in_value)
        head_add(m, "\r\n", 2);
    s->in_value = 0;
    s->field_len = 0;
    head_add(m, "\r\n", 2);
    if (dir == SL_INSPECT_REQUEST) {
        if (p->upgrade || p->method == HTTP_CONNECT)
            s->x->upgrade = 1;
        return 0;
    }
    s->x->status = (int)p->status_code;
    s->x->interim =
        p->status_code >= 100 && p->status_code < 200 && p->status_code != 101;
    /* A response to HEAD has a length but no body. */
    return s->x->method == HTTP_HEAD ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    if (s->x == NULL)
        return -1;
    struct msg *m = msg_of(s, dir);
    m->body_len += n;
    size_t room = SL_INSPECT_BODY_CAP - m->body.len;
    if (n > room)
        n = room;
    if (n > 0)
        (void)sl_dynbuf_append(&m->body, at, n, SL_INSPECT_BODY_CAP);
    return 0;
}

static void pending_pop(struct sl_inspect_conn *ic)
{
    struct xchg *x = ic->pending[0];
    memmove(ic->pending, ic->pending + 1,
            (ic->npending - 1) * sizeof(ic->pending[0]));
    ic->npending--;
    xchg_unref(x);
}

static int on_message_complete(http_parser *p)
{
    int dir;
    struct sl_inspect_conn *ic = conn_of(p, &dir);
    struct side *s = &ic->side[dir];
    struct xchg *x = s->x;
    if (x == NULL)
        return -1;
    if (dir == SL_INSPECT_REQUEST) {
        x->req_done = 1;
    } else if (!x->interim) {
        x->state = X_COMPLETE;
        x->t_end_ns = uv_hrtime();
        if (ic->npending > 0 && ic->pending[0] == x)
            pending_pop(ic);
    }
    s->x = NULL;
    xchg_unref(x);
    return 0;
}

static const http_parser_settings settings[2] = {
    [SL_INSPECT_REQUEST] =
        {
            .on_message_begin = on_message_begin,
            .on_url = on_url,
            .on_header_field = on_header_field,
            .on_header_value = on_header_value,
            .on_headers_complete = on_headers_complete,
            .on_body = on_body,
            .on_message_complete = on_message_complete,
        },
    [SL_INSPECT_RESPONSE] =
        {
            .on_message_begin = on_message_begin,
            .on_status = on_status,
            .on_header_field = on_header_field,
            .on_header_value = on_header_value,
            .on_headers_complete = on_headers_complete,
            .on_body = on_body,
            .on_message_complete = on_message_complete,
        },
};

struct sl_inspect_conn *sl_inspect_conn_new(struct sl_inspect *in, int replay)
{
    if (in == NULL)
        return NULL;
    struct sl_inspect_conn *ic = calloc(1, sizeof(*ic));
    if (ic == NULL)
        return NULL;
    ic->in = in;
    ic->replay = replay ? 1 : 0;
    http_parser_init(&ic->side[SL_INSPECT_REQUEST].p, HTTP_REQUEST);
    http_parser_init(&ic->side[SL_INSPECT_RESPONSE].p, HTTP_RESPONSE);
    ic->side[0].p.data = ic;
    ic->side[1].p.data = ic;
    return ic;
}

void sl_inspect_conn_feed(struct sl_inspect_conn *ic, enum sl_inspect_dir dir,
                          const char *data, size_t len)
{
    if (ic == NULL || ic->off || len == 0)
        return;
    struct side *s = &ic->side[dir];
    if (s->stopped)
        return;
    http_parser *p = &s->p;
    size_t n = http_parser_execute(p, &settings[dir], data, len);
    if (HTTP_PARSER_ERRNO(p) != HPE_OK) {
        /* Not HTTP (or more than we follow): keep what was seen. */
        ic->off = 1;
        ic->unparsed = HTTP_PARSER_ERRNO(p) != HPE_CB_message_begin;
        return;
    }
    if (p->upgrade) {
        /* The rest is another protocol. The request side stops here; the
         * connection once the response (101 or a refusal) is read. */
        if (dir == SL_INSPECT_RESPONSE)
            ic->off = 1;
        else
            s->stopped = 1;
        return;
    }
    (void)n;
    if (dir == SL_INSPECT_RESPONSE && ic->side[0].stopped && ic->npending == 0)
        ic->off = 1;
}

uint64_t sl_inspect_conn_first_id(const struct sl_inspect_conn *ic)
{
    return ic ? ic->first_id : 0;
}

void sl_inspect_conn_free(struct sl_inspect_conn *ic)
{
    if (ic == NULL)
        return;
    /* A response that runs until the close ends now. */
    struct side *rs = &ic->side[SL_INSPECT_RESPONSE];
    if (!ic->off && !rs->stopped && rs->x != NULL)
        (void)http_parser_execute(&rs->p, &settings[SL_INSPECT_RESPONSE], NULL,
                                  0);
    while (ic->npending > 0) {
        struct xchg *x = ic->pending[0];
        if (x->state == X_PENDING)
            x->state = ic->unparsed ? X_UNPARSED : X_ABORTED;
        if (x->t_end_ns == 0)
            x->t_end_ns = uv_hrtime();
        pending_pop(ic);
    }
    for (int d = 0; d < 2; d++)
        xchg_unref(ic->side[d].x);
    free(ic);
}

/* ----------------------------------------------------------------- JSON */

/* A JSON string of bytes that should be text: invalid UTF-8 bytes become
 * '?' (a header value is Latin-1 at worst). */
static json_t *text_json(const char *p, size_t n)
{
    json_t *j = json_stringn(p ? p : "", n);
    if (j != NULL)
        return j;
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)p[i] < 0x80 ? p[i] : '?';
    j = json_stringn(copy, n);
    free(copy);
    return j;
}

static void path_of(const struct xchg *x, char *buf, size_t cap)
{
    const char *h = x->req.head.data ? x->req.head.data : "";
    const char *sp = strchr(h, ' ');
    buf[0] = '\0';
    if (sp == NULL)
        return;
    size_t n = strcspn(sp + 1, " \r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, sp + 1, n);
    buf[n] = '\0';
}

static json_t *summary_json(const struct xchg *x)
{
    char path[2048];
    path_of(x, path, sizeof(path));
    int64_t dur = -1;
    if (x->state == X_COMPLETE && x->t_end_ns >= x->t0_ns)
        dur = (int64_t)((x->t_end_ns - x->t0_ns) / 1000000);
    json_t *j = json_pack(
        "{s:I, s:I, s:s, s:o, s:i, s:s, s:I, s:I, s:I, s:b}", "id",
        (json_int_t)x->id, "started_at", (json_int_t)x->started_ms, "method",
        http_method_str((enum http_method)x->method), "path",
        text_json(path, strlen(path)), "status", x->status, "state",
        xstate_name[x->state], "duration_ms", (json_int_t)dur, "request_bytes",
        (json_int_t)x->req.body_len, "response_bytes",
        (json_int_t)x->resp.body_len, "replay", x->replay);
    return j;
}

static json_t *msg_json(const struct msg *m)
{
    if (!m->started)
        return json_null();
    json_t *j = json_pack(
        "{s:o, s:b, s:I, s:I, s:b}", "head",
        text_json(m->head.data, m->head.len), "head_truncated",
        m->head_truncated, "body_length", (json_int_t)m->body_len, "body_kept",
        (json_int_t)m->body.len, "body_truncated", m->body_len > m->body.len);
    if (j == NULL)
        return NULL;
    json_t *body = json_stringn(m->body.data ? m->body.data : "", m->body.len);
    if (body == NULL) {
        size_t cap = SL_B64_LEN(m->body.len) + 1;
        char *b64 = malloc(cap);
        if (b64 != NULL &&
            sl_b64_encode(m->body.data, m->body.len, b64, cap) >= 0) {
            body = json_string(b64);
            json_object_set_new(j, "body_encoding", json_string("base64"));
        }
        free(b64);
    }
    json_object_set_new(j, "body", body ? body : json_null());
    return j;
}

/* Why exchange x cannot be replayed, or NULL. */
static const char *not_replayable(const struct xchg *x)
{
    if (x->upgrade)
        return "an upgrade (WebSocket) or CONNECT is not replayed";
    if (!x->req_done)
        return "the request was not recorded to its end";
    if (x->req.head_truncated)
        return "the request head was too long to keep whole";
    if (x->req.body_len > x->req.body.len)
        return "the request body was too long to keep whole";
    return NULL;
}

json_t *sl_inspect_list_json(const struct sl_inspect *in)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < in->count; i++) {
        json_t *j = summary_json(in->ring[(in->first + i) % in->keep]);
        if (j == NULL || json_array_append_new(arr, j) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *sl_inspect_get_json(const struct sl_inspect *in, uint64_t id)
{
    const struct xchg *x = ring_find(in, id);
    if (x == NULL)
        return NULL;
    json_t *j = summary_json(x);
    if (j == NULL)
        return NULL;
    json_object_set_new(j, "request", msg_json(&x->req));
    json_object_set_new(j, "response", msg_json(&x->resp));
    const char *why = not_replayable(x);
    json_object_set_new(j, "replayable", json_boolean(why == NULL));
    if (why != NULL)
        json_object_set_new(j, "not_replayable", json_string(why));
    return j;
}

/* ---------------------------------------------------------------- replay */

static int hop_by_hop(const char *name, size_t n)
{
    static const char *const names[] = {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
        "content-length",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

int sl_inspect_replay_bytes(const struct sl_inspect *in, uint64_t id,
                            struct sl_dynbuf *out, char *why, size_t cap)
{
    const struct xchg *x = ring_find(in, id);
    if (x == NULL)
        return SL_ENOTFOUND;
    const char *no = not_replayable(x);
    if (no != NULL) {
        snprintf(why, cap, "%s", no);
        return SL_EDENIED;
    }
    const size_t max = SL_INSPECT_HEAD_CAP + SL_INSPECT_BODY_CAP + 256;
    const char *h = x->req.head.data ? x->req.head.data : "";
    const char *end = h + x->req.head.len;
    int rc = 0;
    int first = 1;
    while (h < end && rc == 0) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        size_t n = eol ? (size_t)(eol - h) : (size_t)(end - h);
        size_t line = n > 0 && h[n - 1] == '\r' ? n - 1 : n;
        if (line == 0)
            break; /* the blank line ending the head */
        const char *colon = first ? NULL : memchr(h, ':', line);
        if (first || colon == NULL || !hop_by_hop(h, (size_t)(colon - h))) {
            rc = sl_dynbuf_append(out, h, line, max);
            if (rc == 0)
                rc = sl_dynbuf_append(out, "\r\n", 2, max);
        }
        first = 0;
        h = eol ? eol + 1 : end;
    }
    char tail[96];
    int has_body = x->req.body_len > 0 || x->method == HTTP_POST ||
                   x->method == HTTP_PUT || x->method == HTTP_PATCH;
    int tn = has_body
                 ? snprintf(tail, sizeof(tail),
                            "Content-Length: %zu\r\n"
                            "Connection: close\r\n\r\n",
                            x->req.body.len)
                 : snprintf(tail, sizeof(tail), "Connection: close\r\n\r\n");
    if (rc == 0)
        rc = sl_dynbuf_append(out, tail, (size_t)tn, max);
    if (rc == 0 && x->req.body.len > 0)
        rc = sl_dynbuf_append(out, x->req.body.data, x->req.body.len, max);
    if (rc != 0)
        snprintf(why, cap, "%s", sl_strerror(rc));
    return rc;
}
