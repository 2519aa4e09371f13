/* libFuzzer target for the REST API server and router (api/server.c) with
 * the hub's admin routes and handlers (api/hub_api.c) on an in-memory
 * SQLite store, without a listener: as the unit tests do, the sources are
 * included here, and one connection is made by hand on one end of a
 * socketpair, the way on_connection makes one for an accepted socket.
 *
 * Input: one byte of flags (bit 0: the admin token is required, as on a
 * non-loopback listener), then the raw bytes a client sends (method, path,
 * headers, body; several requests may be pipelined). The client then
 * half-closes and reads until the server closes.
 *
 * Each input gets a fresh store holding one allocation (ab1234567890), so
 * a run is repeatable. The scrypt hash of a create is replaced by a
 * constant (it hashes a random password, never the input, and costs 50 ms
 * a call); the create still goes through the thread pool.
 *
 * Invariants:
 * - the server closes the connection once the client has gone, and frees
 *   it (no connection left, nothing pending);
 * - what comes back is a sequence of whole HTTP/1.1 responses, each with
 *   a Content-Length that matches, JSON when it says application/json;
 * - no 5xx: the store is in memory and nothing here fails on its own, so
 *   a 500 means a request made the server or a handler fail. */
#include "api/server.c"

/* The cheap stand-in for the password hash, used by hub_api.c only. */
static int fuzz_password_hash(const char *password, char *out, size_t outlen)
{
    (void)password;
    int n = snprintf(out, outlen, "%s", "scrypt$16384$8$1$ZnV6eg==$ZnV6eg==");
    return n < 0 || (size_t)n >= outlen ? SL_ETOOBIG : 0;
}
#define sl_password_hash fuzz_password_hash
#include "api/hub_api.c"
#undef sl_password_hash

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESPONSE_MAX (16 * 1024 * 1024)

struct client {
    uv_pipe_t pipe;
    uv_write_t write;
    uv_shutdown_t shutdown;
    char *buf;
    size_t len, cap;
    int eof;
    int overflow;
};

static uv_loop_t loop;
static struct sl_ctx ctx;

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct client *cl = h->data;
    (void)hint;
    if (cl->cap - cl->len < 4096 && cl->cap < RESPONSE_MAX) {
        size_t ncap = cl->cap ? cl->cap * 2 : 16384;
        char *p = realloc(cl->buf, ncap);
        if (p != NULL) {
            cl->buf = p;
            cl->cap = ncap;
        }
    }
    if (cl->buf == NULL || cl->cap == cl->len) {
        *b = uv_buf_init(NULL, 0);
        return;
    }
    *b = uv_buf_init(cl->buf + cl->len, (unsigned)(cl->cap - cl->len));
}

static void client_closed(uv_handle_t *h)
{
    (void)h;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *cl = s->data;
    (void)b;
    if (n > 0) {
        cl->len += (size_t)n;
        return;
    }
    if (n == 0)
        return;
    if (n == UV_ENOBUFS)
        cl->overflow = 1;
    else
        cl->eof = 1;
    uv_close((uv_handle_t *)&cl->pipe, client_closed);
}

static void client_wrote(uv_write_t *w, int status)
{
    (void)w;
    (void)status; /* the server may close before reading everything */
}

static void client_shut(uv_shutdown_t *sh, int status)
{
    (void)sh;
    (void)status;
}

/* Checks the bytes the server sent: whole responses, one after another. */
static void check_responses(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t end = sl_http_head_end(buf + off, len - off, 0, 4096);
        if (end <= 0)
            abort(); /* a cut or oversized response head */
        struct sl_http_head h;
        if (sl_http_head_parse(&h, 0, buf + off, (size_t)end) != 0)
            abort();
        if (h.http_major != 1 || h.http_minor != 1 || h.status < 200 ||
            h.status >= 500 || !h.has_content_length || h.chunked)
            abort();
        size_t body_off = off + (size_t)end;
        if (h.content_length > len - body_off)
            abort();
        const char *body = buf + body_off;
        size_t blen = (size_t)h.content_length;
        char ctype[64];
        if (sl_http_head_get(&h, "content-type", ctype, sizeof(ctype)) < 0)
            abort();
        if (strcmp(ctype, "application/json") == 0) {
            json_error_t e;
            json_t *j = json_loadb(body, blen, 0, &e);
            if (!json_is_object(j))
                abort();
            /* An error says which. */
            if (h.status >= 400 &&
                (!json_is_string(json_object_get(j, "error")) ||
                 json_integer_value(json_object_get(j, "code")) != h.status))
                abort();
            json_decref(j);
        }
        off = body_off + blen;
    }
}

static struct sl_store *make_store(void)
{
    struct sl_store *st = NULL;
    if (sl_store_open(":memory:", &ctx.log, &st) != 0)
        abort();
    struct sl_alloc a;
    memset(&a, 0, sizeof(a));
    snprintf(a.identity, sizeof(a.identity), "ab1234567890");
    snprintf(a.username, sizeof(a.username), "Xy12ab");
    snprintf(a.password_hash, sizeof(a.password_hash),
             "scrypt$16384$8$1$ZnV6eg==$ZnV6eg==");
    a.limits.bridges = 2;
    a.traffic.user_down = 1000;
    a.created_at = 1;
    a.last_seen = 2;
    if (sl_store_create(st, &a) != 0)
        abort();
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (uv_loop_init(&loop) != 0)
            abort();
        /* As the binary does: a write to a closed peer is an error, not
         * a signal. */
        signal(SIGPIPE, SIG_IGN);
        ctx.loop = &loop;
        ctx.log.level = SL_LOG_ERROR;
        ctx.log.out = fopen("/dev/null", "w");
        if (ctx.log.out == NULL)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    const char *in = (const char *)data + 1;
    size_t in_len = size - 1;

    struct sl_store *st = make_store();
    struct sl_hub_api *api = calloc(1, sizeof(*api));
    struct sl_api_server *srv = calloc(1, sizeof(*srv));
    struct conn *c = calloc(1, sizeof(*c));
    struct client *cl = calloc(1, sizeof(*cl));
    if (api == NULL || srv == NULL || c == NULL || cl == NULL)
        abort();
    api->ctx = &ctx;
    api->store = st;
    api->url_template = strdup("http://{identity}.localhost:8080/");
    srv->ctx = &ctx;
    snprintf(srv->name, sizeof(srv->name), "hub-api");
    srv->need_auth = flags & 1;
    srv->token = srv->need_auth ? strdup("fuzz-token") : NULL;
    srv->routes = routes;
    srv->nroutes = sizeof(routes) / sizeof(routes[0]);
    srv->arg = api;
    if (api->url_template == NULL || (srv->need_auth && srv->token == NULL))
        abort();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();

    /* The server side, as on_connection sets up an accepted socket. */
    c->srv = srv;
    c->id = ++srv->next_id;
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    srv->handles++;
    srv->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_tcp_open(&c->tcp, sv[0]) != 0)
        abort();
    snprintf(c->peer, sizeof(c->peer), "127.0.0.1:40000");
    uv_timer_start(&c->timer, on_timeout, SL_API_TIMEOUT_MS,
                   SL_API_TIMEOUT_MS);
    conn_read_start(c);

    /* The client: send, half-close, read until the server closes. */
    if (uv_pipe_init(&loop, &cl->pipe, 0) != 0 ||
        uv_pipe_open(&cl->pipe, sv[1]) != 0)
        abort();
    cl->pipe.data = cl;
    uv_buf_t b = uv_buf_init((char *)in, (unsigned)in_len);
    if (in_len > 0 &&
        uv_write(&cl->write, (uv_stream_t *)&cl->pipe, &b, 1, client_wrote))
        abort();
    if (uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->pipe, client_shut))
        abort();
    if (uv_read_start((uv_stream_t *)&cl->pipe, client_alloc, client_read))
        abort();

    /* Ends when the server closed the connection and the client saw it;
     * a server that never answers nor closes hangs here (a timeout). */
    uv_run(&loop, UV_RUN_DEFAULT);

    if (!cl->eof || cl->overflow || srv->conns != NULL || srv->handles != 0 ||
        api->pending != 0)
        abort();
    check_responses(cl->buf, cl->len);

    free(cl->buf);
    free(cl);
    free(srv->token);
    free(srv);
    free(api->url_template);
    free(api);
    sl_store_close(st);
    return 0;
}
