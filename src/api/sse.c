#include "api/sse.h"

#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "core/error.h"

struct client {
    struct client *next, *prev;
    struct sl_sse *sse;
    struct sl_api_stream *stream;
};

struct sl_sse {
    uv_timer_t timer;
    struct client *clients;
    size_t nclients, max_clients;
    uint64_t interval_ms;
    sl_sse_snapshot_fn fn;
    void *arg;
    int timer_running;
};

static void client_unlink(struct client *cl)
{
    struct sl_sse *sse = cl->sse;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        sse->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    sse->nclients--;
    if (sse->nclients == 0 && sse->timer_running) {
        uv_timer_stop(&sse->timer);
        sse->timer_running = 0;
    }
}

static void on_gone(struct sl_api_stream *s, void *arg)
{
    struct client *cl = arg;
    (void)s;
    client_unlink(cl);
    free(cl);
}

/* Ends a client's stream (it is too slow or broken) and forgets it. */
static void client_drop(struct client *cl)
{
    struct sl_api_stream *s = cl->stream;
    client_unlink(cl);
    free(cl);
    sl_api_stream_end(s);
}

/* "event: snapshot\ndata: <json>\n\n": the JSON is one line (compact), so
 * one data field carries it. */
static char *event_text(struct sl_sse *sse, size_t *len)
{
    size_t n = 0;
    char *data = sse->fn(sse->arg, &n);
    if (data == NULL)
        return NULL;
    static const char pre[] = "event: snapshot\ndata: ";
    size_t plen = sizeof(pre) - 1;
    char *ev = malloc(plen + n + 2);
    if (ev != NULL) {
        memcpy(ev, pre, plen);
        memcpy(ev + plen, data, n);
        /* A newline inside would end the field early: the snapshot is
         * compact JSON, which has none, but be sure. */
        for (size_t i = 0; i < n; i++)
            if (ev[plen + i] == '\n' || ev[plen + i] == '\r')
                ev[plen + i] = ' ';
        ev[plen + n] = '\n';
        ev[plen + n + 1] = '\n';
        *len = plen + n + 2;
    }
    free(data);
    return ev;
}

static void on_tick(uv_timer_t *t)
{
    struct sl_sse *sse = t->data;
    size_t len = 0;
    char *ev = event_text(sse, &len);
    if (ev == NULL)
        return;
    struct client *cl = sse->clients;
    while (cl != NULL) {
        struct client *next = cl->next;
        if (sl_api_stream_send(cl->stream, ev, len) != 0)
            client_drop(cl);
        cl = next;
    }
    free(ev);
}

struct sl_sse *sl_sse_new(uv_loop_t *loop, size_t max_clients,
                          uint64_t interval_ms, sl_sse_snapshot_fn fn,
                          void *arg)
{
    struct sl_sse *sse = calloc(1, sizeof(*sse));
    if (sse == NULL)
        return NULL;
    sse->max_clients = max_clients ? max_clients : SL_SSE_CLIENTS_DEFAULT;
    sse->interval_ms = interval_ms ? interval_ms : SL_SSE_INTERVAL_MS;
    sse->fn = fn;
    sse->arg = arg;
    uv_timer_init(loop, &sse->timer);
    sse->timer.data = sse;
    return sse;
}

void sl_sse_add(struct sl_sse *sse, struct sl_api_req *req)
{
    if (sse->nclients >= sse->max_clients) {
        sl_api_reply_error(req, 503, "Too many dashboard streams");
        return;
    }
    struct client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    cl->sse = sse;
    cl->stream = sl_api_reply_stream(req, "text/event-stream; charset=utf-8",
                                     on_gone, cl);
    if (cl->stream == NULL) {
        free(cl);
        return;
    }
    cl->next = sse->clients;
    if (sse->clients)
        sse->clients->prev = cl;
    sse->clients = cl;
    sse->nclients++;
    /* The page reconnects 2 s after a loss; the first snapshot now, not
     * a second from now. */
    static const char retry[] = "retry: 2000\n\n";
    if (sl_api_stream_send(cl->stream, retry, sizeof(retry) - 1) != 0) {
        client_drop(cl);
        return;
    }
    size_t len = 0;
    char *ev = event_text(sse, &len);
    if (ev != NULL && sl_api_stream_send(cl->stream, ev, len) != 0) {
        free(ev);
        client_drop(cl);
        return;
    }
    free(ev);
    if (!sse->timer_running) {
        uv_timer_start(&sse->timer, on_tick, sse->interval_ms,
                       sse->interval_ms);
        sse->timer_running = 1;
    }
}

size_t sl_sse_clients(const struct sl_sse *sse)
{
    return sse ? sse->nclients : 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_sse_free(struct sl_sse *sse)
{
    if (sse == NULL)
        return;
    while (sse->clients != NULL)
        client_drop(sse->clients);
    uv_close((uv_handle_t *)&sse->timer, on_timer_closed);
}
