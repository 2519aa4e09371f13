#include "node/node_replay.h"

#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "core/dynbuf.h"
#include "core/error.h"
#include "core/log.h"
#include "net/addr.h"
#include "node/node_inspect.h"
#include "node/node_int.h"

#define READ_SIZE 16384

struct sl_node_replay {
    struct sl_node_replay *next, *prev; /* in b->replays */
    struct sl_node_bridge *b;           /* a reference */
    struct sl_api_req *req;             /* NULL once answered */
    struct sl_inspect_conn *tap;
    struct sl_dynbuf out; /* the request's bytes */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int handles; /* open handles and requests in flight */
    unsigned tcp_open : 1;
    unsigned done : 1;
    unsigned got_eof : 1;
    char buf[READ_SIZE];
};

static void replay_unref(struct sl_node_replay *rp)
{
    if (--rp->handles > 0)
        return;
    struct sl_node_bridge *b = rp->b;
    if (rp->prev)
        rp->prev->next = rp->next;
    else if (b->replays == rp)
        b->replays = rp->next;
    if (rp->next)
        rp->next->prev = rp->prev;
    sl_inspect_conn_free(rp->tap);
    sl_dynbuf_free(&rp->out);
    free(rp);
    sl_node_bridge_unref(b);
}

static void on_handle_closed(uv_handle_t *h)
{
    replay_unref(h->data);
}

/* Answers the API request (once) and closes what is open. status 0: the
 * recorded exchange. */
static void finish(struct sl_node_replay *rp, int status, const char *msg)
{
    if (rp->done)
        return;
    rp->done = 1;
    uint64_t id = sl_inspect_conn_first_id(rp->tap);
    /* The tap ends first so that the exchange is complete (or marked
     * aborted) when it is shown. */
    sl_inspect_conn_free(rp->tap);
    rp->tap = NULL;
    struct sl_inspect *in = rp->b->inspect;
    json_t *j = status == 0 && in != NULL && id != 0
                    ? sl_inspect_get_json(in, id)
                    : NULL;
    if (status == 0 && j == NULL) {
        status = 502;
        msg = "The upstream answered nothing that could be recorded";
    }
    sl_info(rp->b->node->log, "bridge %s: replay to %s: %s",
            rp->b->rec.identity, rp->b->rec.upstream,
            status == 0 ? "answered" : msg);
    if (status == 0)
        sl_api_reply_json(rp->req, 200, j);
    else
        sl_api_reply_error(rp->req, status, msg);
    rp->req = NULL;
    uv_timer_stop(&rp->timer);
    uv_close((uv_handle_t *)&rp->timer, on_handle_closed);
    if (rp->tcp_open) {
        rp->tcp_open = 0;
        uv_close((uv_handle_t *)&rp->tcp, on_handle_closed);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct sl_node_replay *rp = t->data;
    finish(rp, 504, "The upstream did not answer in time");
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sl_node_replay *rp = h->data;
    (void)hint;
    *buf = uv_buf_init(rp->buf, sizeof(rp->buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct sl_node_replay *rp = s->data;
    if (rp->done)
        return;
    if (n > 0) {
        sl_inspect_conn_feed(rp->tap, SL_INSPECT_RESPONSE, buf->base,
                             (size_t)n);
        return;
    }
    if (n == 0)
        return;
    /* The request said "Connection: close": the answer ends with the
     * connection, also when it has a length. */
    finish(rp, n == UV_EOF ? 0 : 502,
           n == UV_EOF ? NULL : "The upstream connection failed");
}

static void on_written(uv_write_t *w, int status)
{
    struct sl_node_replay *rp = w->data;
    if (status < 0 && !rp->done)
        finish(rp, 502, "Writing to the upstream failed");
    replay_unref(rp);
}

static void on_connect(uv_connect_t *c, int status)
{
    struct sl_node_replay *rp = c->data;
    if (rp->done)
        goto out;
    if (status < 0) {
        finish(rp, 502, "Upstream not reachable");
        goto out;
    }
    uv_timer_start(&rp->timer, on_timeout, SL_REPLAY_TIMEOUT_MS, 0);
    sl_inspect_conn_feed(rp->tap, SL_INSPECT_REQUEST, rp->out.data,
                         rp->out.len);
    uv_buf_t b = uv_buf_init(rp->out.data, (unsigned)rp->out.len);
    rp->wreq.data = rp;
    if (uv_write(&rp->wreq, (uv_stream_t *)&rp->tcp, &b, 1, on_written) != 0) {
        finish(rp, 502, "Writing to the upstream failed");
        goto out;
    }
    rp->handles++;
    if (uv_read_start((uv_stream_t *)&rp->tcp, on_alloc, on_read) != 0)
        finish(rp, 502, "Reading from the upstream failed");
out:
    replay_unref(rp);
}

static void dial(struct sl_node_replay *rp, const struct sockaddr *sa)
{
    struct sl_node *node = rp->b->node;
    if (!node->allow_public && !sl_addr_is_private(sa)) {
        finish(rp, 502, "Upstream not private");
        return;
    }
    uv_tcp_init(node->ctx->loop, &rp->tcp);
    rp->tcp.data = rp;
    rp->tcp_open = 1;
    rp->handles++;
    rp->creq.data = rp;
    if (uv_tcp_connect(&rp->creq, &rp->tcp, sa, on_connect) != 0) {
        finish(rp, 502, "Upstream not reachable");
        return;
    }
    rp->handles++;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct sl_node_replay *rp = g->data;
    if (!rp->done) {
        const struct addrinfo *a = ai;
        while (a != NULL && a->ai_family != AF_INET && a->ai_family != AF_INET6)
            a = a->ai_next;
        if (status < 0 || a == NULL)
            finish(rp, 502, "Upstream not reachable (cannot resolve)");
        else
            dial(rp, a->ai_addr);
    }
    uv_freeaddrinfo(ai);
    replay_unref(rp);
}

void sl_node_replay(struct sl_node_bridge *b, uint64_t id,
                    struct sl_api_req *req)
{
    if (b->inspect == NULL) {
        sl_api_reply_error(req, 404, "The inspector is off");
        return;
    }
    size_t running = 0;
    for (struct sl_node_replay *r = b->replays; r != NULL; r = r->next)
        running++;
    if (running >= SL_REPLAY_MAX) {
        sl_api_reply_error(req, 429, "Too many replays at once");
        return;
    }
    struct sl_node_replay *rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    char why[160] = "";
    int rc =
        sl_inspect_replay_bytes(b->inspect, id, &rp->out, why, sizeof(why));
    if (rc != 0) {
        sl_dynbuf_free(&rp->out);
        free(rp);
        if (rc == SL_ENOTFOUND)
            sl_api_reply_error(req, 404,
                               "No such request (it may have "
                               "been dropped for newer ones)");
        else if (rc == SL_EDENIED)
            sl_api_reply_error(req, 409, why);
        else
            sl_api_reply_error(req, 500, why);
        return;
    }
    rp->tap = sl_inspect_conn_new(b->inspect, 1);
    if (rp->tap == NULL) {
        sl_dynbuf_free(&rp->out);
        free(rp);
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    rp->b = b;
    b->refs++;
    rp->req = req;
    rp->next = b->replays;
    if (b->replays)
        b->replays->prev = rp;
    b->replays = rp;
    uv_loop_t *loop = b->node->ctx->loop;
    uv_timer_init(loop, &rp->timer);
    rp->timer.data = rp;
    rp->handles = 1; /* the timer */
    uv_timer_start(&rp->timer, on_timeout, SL_REPLAY_CONNECT_TIMEOUT_MS, 0);
    struct sockaddr_storage ss;
    if (sl_addr_parse_ip(b->up.host, b->up.port, &ss) == 0) {
        dial(rp, (struct sockaddr *)&ss);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)b->up.port);
    rp->gai.data = rp;
    if (uv_getaddrinfo(loop, &rp->gai, on_resolved, b->up.host, port, &hints) !=
        0) {
        finish(rp, 502, "Upstream not reachable (cannot resolve)");
        return;
    }
    rp->handles++;
}

void sl_node_replays_cancel(struct sl_node_bridge *b)
{
    for (struct sl_node_replay *rp = b->replays; rp != NULL;) {
        struct sl_node_replay *next = rp->next;
        if (rp->handles > 0 && !rp->done) {
            rp->handles++; /* finish may drop the last one */
            uv_cancel((uv_req_t *)&rp->gai);
            finish(rp, 503, "The bridge is going away");
            next = rp->next;
            replay_unref(rp);
        }
        rp = next;
    }
}
