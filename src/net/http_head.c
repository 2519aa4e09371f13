#include "net/http_head.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "core/error.h"

ssize_t sl_http_head_end(const char *buf, size_t len, size_t scan_from,
                         size_t max)
{
    size_t start = 0;
    while (start < len && (buf[start] == '\r' || buf[start] == '\n'))
        start++;
    /* The end is "\n\r\n" or "\n\n"; a previous scan may have stopped
     * inside one, so look back two bytes. */
    size_t i = scan_from > 2 ? scan_from - 2 : 0;
    if (i < start)
        i = start;
    for (; i < len; i++) {
        const char *p = memchr(buf + i, '\n', len - i);
        if (p == NULL)
            break;
        i = (size_t)(p - buf);
        size_t end = 0;
        if (i + 1 < len && buf[i + 1] == '\n')
            end = i + 2;
        else if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            end = i + 3;
        if (end != 0)
            return end <= max ? (ssize_t)end : SL_ETOOBIG;
    }
    return len >= max ? SL_ETOOBIG : 0;
}

struct parse_state {
    struct sl_http_head *h;
    int in_value; /* last callback was a value */
    int done;
    int overflow;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct parse_state *st = p->data;
    if (st->h->url == NULL)
        st->h->url = at;
    st->h->url_len = (size_t)(at + len - st->h->url);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct parse_state *st = p->data;
    struct sl_http_head *h = st->h;
    if (st->in_value || h->nhdr == 0) {
        if (h->nhdr >= SL_HTTP_MAX_HEADERS) {
            st->overflow = 1;
            return 1;
        }
        h->hdr[h->nhdr].name = at;
        h->hdr[h->nhdr].name_len = len;
        h->hdr[h->nhdr].value = at + len;
        h->hdr[h->nhdr].value_len = 0;
        h->nhdr++;
        st->in_value = 0;
        return 0;
    }
    struct sl_http_header *x = &h->hdr[h->nhdr - 1];
    x->name_len = (size_t)(at + len - x->name);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct parse_state *st = p->data;
    struct sl_http_head *h = st->h;
    if (h->nhdr == 0)
        return 1;
    struct sl_http_header *x = &h->hdr[h->nhdr - 1];
    if (!st->in_value) {
        x->value = at;
        x->value_len = len;
    } else {
        x->value_len = (size_t)(at + len - x->value);
    }
    st->in_value = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct parse_state *st = p->data;
    struct sl_http_head *h = st->h;
    h->method = (int)p->method;
    h->status = (int)p->status_code;
    h->http_major = p->http_major;
    h->http_minor = p->http_minor;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    if (p->content_length != ULLONG_MAX) {
        h->has_content_length = 1;
        h->content_length = p->content_length;
    }
    h->upgrade = p->upgrade;
    h->keep_alive = http_should_keep_alive(p) != 0;
    st->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings head_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' ||
                      (*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
        (*n)--;
}

/* RFC 9110 5.6.2: the characters of a token (a field name). */
static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != '\0' &&
                                      strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* What http-parser (not built strict) lets through but an intermediary
 * must not forward, because the next parser may read it another way
 * (RFC 9112 2.2, 5.1, 5.2): a CR not followed by LF, and a line that
 * starts with whitespace (obs-fold, or whitespace before the first
 * field). NULL if none. */
static const char *bad_bytes(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n')) {
        if (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n'))
            return "bare CR in the head";
        i++; /* leading empty lines (RFC 9112 2.2) */
    }
    for (; i < len; i++) {
        if (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n'))
            return "bare CR in the head";
        if (buf[i] == '\n' && i + 1 < len &&
            (buf[i + 1] == ' ' || buf[i + 1] == '\t'))
            return "obs-fold (a header line starting with whitespace)";
    }
    return NULL;
}

/* Header names that are not tokens (RFC 9110 5.1): http-parser, not
 * built strict, takes "X-Forwarded-Proto " as a name, which the hub would
 * not strip and a lenient upstream would read. NULL if all are good. */
static const char *bad_name(const struct sl_http_head *h)
{
    for (size_t i = 0; i < h->nhdr; i++) {
        const struct sl_http_header *x = &h->hdr[i];
        if (x->name_len == 0)
            return "empty header name";
        for (size_t k = 0; k < x->name_len; k++) {
            unsigned char c = (unsigned char)x->name[k];
            if (c == ' ' || c == '\t')
                return "whitespace in a header name";
            if (!tchar(c))
                return "bad character in a header name";
        }
    }
    return NULL;
}

int sl_http_head_parse(struct sl_http_head *out, int is_request,
                       const char *buf, size_t len)
{
    http_parser p;
    struct parse_state st = {out, 0, 0, 0};
    memset(out, 0, offsetof(struct sl_http_head, hdr));
    out->nhdr = 0;
    out->len = 0;
    out->content_length = 0;
    out->has_content_length = out->chunked = out->upgrade = 0;
    out->keep_alive = 0;
    out->is_request = is_request;
    http_parser_init(&p, is_request ? HTTP_REQUEST : HTTP_RESPONSE);
    p.data = &st;
    const char *bad = bad_bytes(buf, len);
    if (bad != NULL) {
        out->error = bad;
        return SL_EPARSE;
    }
    size_t n = http_parser_execute(&p, &head_settings, buf, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (st.overflow) {
        out->error = "too many header fields";
        return SL_EPARSE;
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        /* "Transfer-Encoding : chunked" fails later, on what the name
         * made of the rest: the name is the reason. */
        out->error = bad_name(out);
        if (out->error == NULL)
            out->error = http_errno_description(e);
        return SL_EPARSE;
    }
    if (!st.done) {
        out->error = "incomplete head";
        return SL_EPARSE;
    }
    /* Paused in on_headers_complete, http-parser has read all but the
     * head's last byte. Anything else means it saw the head end somewhere
     * other than where the caller did (sl_http_head_end), and the bytes
     * between would reach the next hop as a request of their own. */
    if (n + 1 != len) {
        out->error = "the head ends before its empty line";
        return SL_EPARSE;
    }
    if ((out->error = bad_name(out)) != NULL)
        return SL_EPARSE;
    for (size_t i = 0; i < out->nhdr; i++)
        trim(&out->hdr[i].value, &out->hdr[i].value_len);
    out->len = len;
    return 0;
}

const struct sl_http_header *sl_http_head_find(const struct sl_http_head *h,
                                               const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nhdr; i++)
        if (h->hdr[i].name_len == n &&
            strncasecmp(h->hdr[i].name, name, n) == 0)
            return &h->hdr[i];
    return NULL;
}

int sl_http_header_has_token(const struct sl_http_header *h,
                             const char *token)
{
    if (h == NULL)
        return 0;
    size_t tn = strlen(token);
    const char *s = h->value, *end = h->value + h->value_len;
    while (s < end) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        const char *e = c ? c : end;
        const char *a = s;
        size_t n = (size_t)(e - s);
        trim(&a, &n);
        if (n == tn && strncasecmp(a, token, tn) == 0)
            return 1;
        s = e + 1;
    }
    return 0;
}

int sl_http_head_get(const struct sl_http_head *h, const char *name, char *buf,
                     size_t cap)
{
    const struct sl_http_header *x = sl_http_head_find(h, name);
    if (x == NULL)
        return SL_ENOTFOUND;
    if (x->value_len + 1 > cap || x->value_len > INT_MAX)
        return SL_ETOOBIG;
    memcpy(buf, x->value, x->value_len);
    buf[x->value_len] = '\0';
    return (int)x->value_len;
}

const char *sl_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

int sl_http_format_head(char *buf, size_t cap, int status,
                        const char *content_type, size_t content_length,
                        const char *extra, int keep_alive)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%sConnection: %s\r\n\r\n",
                     status, sl_http_reason(status),
                     content_type ? content_type : "text/plain",
                     content_length, extra ? extra : "",
                     keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return SL_ETOOBIG;
    }
    return n;
}

int sl_http_format_response(char *buf, size_t cap, int status,
                            const char *content_type, const char *body,
                            const char *extra, int keep_alive)
{
    size_t blen = body ? strlen(body) : 0;
    int n = sl_http_format_head(buf, cap, status, content_type, blen, extra,
                                keep_alive);
    if (n < 0)
        return n;
    if ((size_t)n + blen >= cap) {
        buf[0] = '\0';
        return SL_ETOOBIG;
    }
    if (blen > 0)
        memcpy(buf + n, body, blen);
    buf[(size_t)n + blen] = '\0';
    return n + (int)blen;
}

struct write_block {
    uv_write_t req;
    char data[];
};

static void on_write_copy(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

int sl_stream_write_copy(struct sl_xprt *s, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = 0;
    if (len == 0)
        return 0;
    if (sl_xprt_write_queue_size(s) == 0) {
        n = sl_xprt_try_write(s, &b, 1);
        if (n < 0 && n != UV_EAGAIN)
            return n;
        if (n < 0)
            n = 0;
        if ((size_t)n == len)
            return 0;
    }
    size_t rest = len - (size_t)n;
    struct write_block *w = malloc(sizeof(*w) + rest);
    if (w == NULL)
        return UV_ENOMEM;
    memcpy(w->data, (const char *)data + n, rest);
    b = uv_buf_init(w->data, (unsigned)rest);
    int rc = sl_xprt_write(&w->req, s, &b, 1, on_write_copy);
    if (rc < 0)
        free(w);
    return rc;
}

/* Reader. */

#define READER_FIRST_CAP 4096

static void reader_finish(struct sl_http_reader *r, int status)
{
    sl_http_reader_stop(r);
    r->cb(r, status);
}

static void reader_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_http_reader *r = h->data;
    (void)hint;
    if (r->cap - r->len < 1024 && r->cap < r->max) {
        size_t ncap = r->cap ? r->cap * 2 : READER_FIRST_CAP;
        if (ncap > r->max)
            ncap = r->max;
        char *p = realloc(r->buf, ncap);
        if (p != NULL) {
            r->buf = p;
            r->cap = ncap;
        }
    }
    if (r->buf == NULL || r->cap == r->len) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(r->buf + r->len, (unsigned)(r->cap - r->len));
}

/* Returns 1 if the reader finished (callback ran). */
static int reader_check(struct sl_http_reader *r)
{
    ssize_t end = sl_http_head_end(r->buf, r->len, r->scanned, r->max);
    r->scanned = r->len;
    if (end > 0) {
        r->head_len = (size_t)end;
        reader_finish(r, 0);
        return 1;
    }
    if (end < 0) {
        reader_finish(r, (int)end);
        return 1;
    }
    return 0;
}

static void reader_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sl_http_reader *r = s->data;
    (void)buf;
    if (!r->active)
        return;
    if (nread == 0)
        return;
    if (nread < 0) {
        reader_finish(r, nread == UV_ENOBUFS ? SL_ETOOBIG : (int)nread);
        return;
    }
    r->len += (size_t)nread;
    reader_check(r);
}

static void reader_timeout(uv_timer_t *t)
{
    struct sl_http_reader *r = t->data;
    if (r->active)
        reader_finish(r, UV_ETIMEDOUT);
}

int sl_http_reader_start(struct sl_http_reader *r, struct sl_xprt *stream,
                         uv_timer_t *timer, size_t max, uint64_t timeout_ms,
                         const void *pre, size_t pre_len, sl_http_reader_cb cb)
{
    r->buf = NULL;
    r->len = r->head_len = r->cap = r->scanned = 0;
    r->stream = stream;
    r->timer = timer;
    r->cb = cb;
    r->max = max ? max : SL_HTTP_HEAD_MAX;
    r->active = 1;
    if (pre_len > 0) {
        size_t cap = pre_len > READER_FIRST_CAP ? pre_len : READER_FIRST_CAP;
        r->buf = malloc(cap);
        if (r->buf == NULL) {
            r->active = 0;
            return UV_ENOMEM;
        }
        r->cap = cap;
        memcpy(r->buf, pre, pre_len);
        r->len = pre_len;
        if (reader_check(r))
            return 0;
    }
    timer->data = r;
    int rc = uv_timer_start(timer, reader_timeout,
                            timeout_ms ? timeout_ms : SL_HTTP_HEAD_TIMEOUT_MS, 0);
    if (rc == 0) {
        stream->tcp.data = r;
        rc = sl_xprt_read_start(stream, reader_alloc, reader_read);
    }
    if (rc < 0) {
        uv_timer_stop(timer);
        r->active = 0;
    }
    return rc;
}

void sl_http_reader_stop(struct sl_http_reader *r)
{
    if (!r->active)
        return;
    r->active = 0;
    sl_xprt_read_stop(r->stream);
    uv_timer_stop(r->timer);
}

void sl_http_reader_release(struct sl_http_reader *r)
{
    sl_http_reader_stop(r);
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->head_len = 0;
}

int sl_http_split_host_port(const char *addr, char *host, size_t hcap,
                            char *port, size_t pcap)
{
    if (strncmp(addr, "http://", 7) == 0)
        addr += 7;
    else if (strstr(addr, "://") != NULL)
        return SL_EPARSE; /* https and others: not supported here */
    size_t n = strcspn(addr, "/?#");
    const char *end = addr + n;
    const char *hs, *he, *colon;
    if (*addr == '[') {
        hs = addr + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return SL_EPARSE;
        colon = he + 1 < end && he[1] == ':' ? he + 1 : NULL;
        if (colon == NULL && he + 1 != end)
            return SL_EPARSE;
    } else {
        hs = addr;
        colon = memchr(addr, ':', n);
        he = colon ? colon : end;
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
            return SL_EPARSE; /* bare IPv6 needs brackets */
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= hcap)
        return SL_EPARSE;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    const char *ps = colon ? colon + 1 : "80";
    size_t pl = colon ? (size_t)(end - ps) : 2;
    if (pl == 0 || pl >= pcap || pl > 5)
        return SL_EPARSE;
    for (size_t i = 0; i < pl; i++)
        if (ps[i] < '0' || ps[i] > '9')
            return SL_EPARSE;
    memcpy(port, ps, pl);
    port[pl] = '\0';
    long pv = strtol(port, NULL, 10);
    if (pv <= 0 || pv > 65535)
        return SL_EPARSE;
    return 0;
}
