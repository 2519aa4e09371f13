#include "node/node_dash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/dashboard.h"
#include "api/server.h"
#include "api/sse.h"
#include "node/node_inspect.h"
#include "node/node_int.h"
#include "node/node_replay.h"

/* The bridges as the list answer has them, each with its inspector's
 * count and newest id (the page refreshes its list when that moves). */
static json_t *bridges_json(struct sl_node *node)
{
    json_t *arr = sl_node_bridges_json(node);
    if (arr == NULL)
        return NULL;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *id = json_string_value(json_object_get(o, "identity"));
        struct sl_node_bridge *b = sl_node_bridge_find(node, id);
        if (b == NULL || b->inspect == NULL)
            continue;
        json_object_set_new(
            o, "inspector",
            json_pack("{s:I, s:I}", "count",
                      (json_int_t)sl_inspect_count(b->inspect), "last",
                      (json_int_t)sl_inspect_last_id(b->inspect)));
    }
    return arr;
}

static char *snapshot(void *arg, size_t *len)
{
    struct sl_node *node = arg;
    json_t *arr = bridges_json(node);
    json_t *j =
        arr ? json_pack("{s:o, s:b, s:I}", "bridges", arr, "inspect",
                        node->inspect, "time", (json_int_t)sl_node_now_ms())
            : NULL;
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s != NULL)
        *len = strlen(s);
    return s;
}

int sl_node_dash_start(struct sl_node *node)
{
    node->sse = sl_sse_new(node->ctx->loop, 0, 0, snapshot, node);
    return node->sse ? 0 : UV_ENOMEM;
}

void sl_node_dash_stop(struct sl_node *node)
{
    sl_sse_free(node->sse);
    node->sse = NULL;
}

void sl_node_dash_page(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    sl_dash_serve_page(req, "node.html",
                       sl_api_server_dashboard_key(node->api));
}

void sl_node_dash_asset(struct sl_api_req *req, void *arg)
{
    (void)arg;
    sl_dash_serve_asset(req);
}

void sl_node_dash_events(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    if (node->sse == NULL) {
        sl_api_reply_error(req, 503, "Shutting down");
        return;
    }
    sl_sse_add(node->sse, req);
}

/* The bridge named in the path, with its inspector; else answers. */
static struct sl_node_bridge *inspected(struct sl_api_req *req,
                                        struct sl_node *node)
{
    struct sl_node_bridge *b =
        sl_node_bridge_find(node, sl_api_req_param(req, "identity"));
    if (b == NULL) {
        sl_api_reply_error(req, 404, "No such bridge");
        return NULL;
    }
    if (b->inspect == NULL) {
        sl_api_reply_error(req, 404, "The inspector is off");
        return NULL;
    }
    return b;
}

/* The {id} placeholder; 0 when it is not a positive number. */
static uint64_t exchange_id(struct sl_api_req *req)
{
    const char *s = sl_api_req_param(req, "id");
    if (s == NULL || *s < '1' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return *end == '\0' && errno == 0 ? (uint64_t)v : 0;
}

void sl_node_dash_requests(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = inspected(req, arg);
    if (b == NULL)
        return;
    json_t *arr = sl_inspect_list_json(b->inspect);
    if (arr == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    sl_api_reply_json(req, 200, json_pack("{s:o}", "requests", arr));
}

void sl_node_dash_request(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = inspected(req, arg);
    if (b == NULL)
        return;
    json_t *j = sl_inspect_get_json(b->inspect, exchange_id(req));
    if (j == NULL)
        sl_api_reply_error(req, 404,
                           "No such request (it may have been "
                           "dropped for newer ones)");
    else
        sl_api_reply_json(req, 200, j);
}

void sl_node_dash_replay(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = inspected(req, arg);
    if (b == NULL)
        return;
    sl_node_replay(b, exchange_id(req), req);
}
