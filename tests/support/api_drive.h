/* Drives the admin API's server and router (api/server.c) with the hub's
 * routes and handlers (api/hub_api.c) on an in-memory SQLite store,
 * without a listener: one connection made by hand on one end of a
 * socketpair, the way on_connection makes one for an accepted socket, and
 * a client (pipe_client.h) on the other. Shared by fuzz/fuzz_api_router.c
 * and tests/unit/oom/test_oom_api.c.
 *
 * Include it after api/server.c and api/hub_api.c: it reaches their
 * statics (struct conn, routes, on_timeout). */
#ifndef SL_TEST_API_DRIVE_H
#define SL_TEST_API_DRIVE_H

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hub/store.h"

#include "pipe_client.h"

/* A password hash that stands in for scrypt's (50 ms a call, on a random
 * password, never the input). */
#define API_DRIVE_HASH "scrypt$16384$8$1$ZnV6eg==$ZnV6eg=="

struct api_drive {
    struct sl_store *store;
    struct sl_hub_api *api;
    struct sl_api_server *srv;
    struct conn *conn;            /* the server frees it when it closes */
    struct sl_test_client *client;
};

/* A fresh in-memory store holding one allocation (ab1234567890), so a
 * run is repeatable; NULL on a failure. */
static struct sl_store *api_drive_store(struct sl_ctx *ctx)
{
    struct sl_store *st = NULL;
    if (sl_store_open(":memory:", &ctx->log, &st) != 0)
        return NULL;
    struct sl_alloc a;
    memset(&a, 0, sizeof(a));
    snprintf(a.identity, sizeof(a.identity), "ab1234567890");
    snprintf(a.username, sizeof(a.username), "Xy12ab");
    snprintf(a.password_hash, sizeof(a.password_hash), API_DRIVE_HASH);
    a.limits.bridges = 2;
    a.traffic.user_down = 1000;
    a.created_at = 1;
    a.last_seen = 2;
    if (sl_store_create(st, &a) != 0) {
        sl_store_close(st);
        return NULL;
    }
    return st;
}

/* Sets up d: the store, the hub's API on it, a server named hub-api with
 * its routes (no token), and a connection whose client end is d->client
 * (its buffer grows up to response_max). The connection does not read
 * yet: conn_read_start(d->conn) and sl_test_client_send follow, then
 * uv_run. Returns 0, or -1 on a failure (d half set up: a test or a fuzz
 * target stops there). */
static int api_drive_open(struct api_drive *d, struct sl_ctx *ctx,
                          size_t response_max)
{
    memset(d, 0, sizeof(*d));
    d->store = api_drive_store(ctx);
    d->api = calloc(1, sizeof(*d->api));
    d->srv = calloc(1, sizeof(*d->srv));
    d->conn = calloc(1, sizeof(*d->conn));
    d->client = calloc(1, sizeof(*d->client));
    if (d->store == NULL || d->api == NULL || d->srv == NULL ||
        d->conn == NULL || d->client == NULL)
        return -1;
    struct sl_hub_api *api = d->api;
    struct sl_api_server *srv = d->srv;
    struct conn *c = d->conn;
    api->ctx = ctx;
    api->store = d->store;
    api->url_template = strdup("http://{identity}.localhost:8080/");
    if (api->url_template == NULL)
        return -1;
    srv->ctx = ctx;
    snprintf(srv->name, sizeof(srv->name), "hub-api");
    srv->routes = routes;
    srv->nroutes = sizeof(routes) / sizeof(routes[0]);
    srv->arg = api;
    api->server = srv; /* as sl_api_server_start leaves it */

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    /* The server side, as on_connection sets up an accepted socket. */
    c->srv = srv;
    c->id = ++srv->next_id;
    sl_xprt_init(&c->xp);
    uv_tcp_init(ctx->loop, &c->xp.tcp);
    uv_timer_init(ctx->loop, &c->timer);
    c->xp.tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    srv->handles++;
    srv->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_tcp_open(&c->xp.tcp, sv[0]) != 0)
        return -1;
    snprintf(c->peer, sizeof(c->peer), "127.0.0.1:40000");
    uv_timer_start(&c->timer, on_timeout, SL_API_TIMEOUT_MS,
                   SL_API_TIMEOUT_MS);
    return sl_test_client_open(d->client, ctx->loop, sv[1], response_max);
}

/* After the run: 1 if the server closed the connection once the client
 * had gone, and freed it (no connection left, nothing pending), and the
 * client read all it sent. */
static int api_drive_closed(const struct api_drive *d)
{
    return d->client->eof && !d->client->overflow && d->srv->conns == NULL &&
           d->srv->handles == 0 && d->api->pending == 0;
}

/* Frees what api_drive_open made (the connection is the server's). */
static void api_drive_free(struct api_drive *d)
{
    if (d->client != NULL)
        free(d->client->buf);
    free(d->client);
    if (d->srv != NULL)
        free(d->srv->token);
    free(d->srv);
    if (d->api != NULL)
        free(d->api->url_template);
    free(d->api);
    if (d->store != NULL)
        sl_store_close(d->store);
}

/* Checks the bytes the server sent: a sequence of whole HTTP/1.1
 * responses below 500, each with a Content-Length that matches, JSON when
 * it says application/json, and an error that says which. Returns how
 * many, or -1 with *bad_at the offset of the first bad one. */
static int api_drive_check(const char *buf, size_t len, size_t *bad_at)
{
    size_t off = 0;
    int n = 0;
    while (off < len) {
        *bad_at = off;
        ssize_t end = sl_http_head_end(buf + off, len - off, 0, 4096);
        if (end <= 0)
            return -1; /* a cut or oversized response head */
        struct sl_http_head h;
        if (sl_http_head_parse(&h, 0, buf + off, (size_t)end) != 0)
            return -1;
        if (h.http_major != 1 || h.http_minor != 1 || h.status < 200 ||
            h.status >= 500 || !h.has_content_length || h.chunked)
            return -1;
        size_t body_off = off + (size_t)end;
        if (h.content_length > len - body_off)
            return -1;
        const char *body = buf + body_off;
        size_t blen = (size_t)h.content_length;
        char ctype[64];
        if (sl_http_head_get(&h, "content-type", ctype, sizeof(ctype)) < 0)
            return -1;
        if (strcmp(ctype, "application/json") == 0) {
            json_error_t e;
            json_t *j = json_loadb(body, blen, 0, &e);
            if (!json_is_object(j)) {
                json_decref(j);
                return -1;
            }
            /* An error says which. */
            if (h.status >= 400 &&
                (!json_is_string(json_object_get(j, "error")) ||
                 json_integer_value(json_object_get(j, "code")) != h.status)) {
                json_decref(j);
                return -1;
            }
            json_decref(j);
        }
        off = body_off + blen;
        n++;
    }
    return n;
}

#endif
