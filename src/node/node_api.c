/* The node's local REST API (docs/protocol.md has the hub's; this one is
 * for `sluice bridge ...` on the same machine):
 *   GET    /api/bridge/                      list
 *   POST   /api/bridge/                      {"upstream", "hub", "token",
 *                                              "username", "password"}
 *   POST   /api/bridge/{identity}/connect/
 *   POST   /api/bridge/{identity}/disconnect/
 *   POST   /api/bridge/{identity}/update/    {"password", "grant"}
 *   DELETE /api/bridge/prune/                disconnected / never connected
 *   DELETE /api/bridge/{identity}/
 *   GET    /api/agents/                      the stream routes' agents
 * and the dashboard, the request inspector and /metrics (node_dash.h).
 * Errors are {"error": "...", "code": N}. */
#include <string.h>

#include "api/server.h"
#include "core/error.h"
#include "core/log.h"
#include "node/node_dash.h"
#include "node/node_int.h"
#include "stream/agent_client.h"
#include "stream/streams.h"

static void h_list(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    json_t *arr = sl_node_bridges_json(node);
    if (arr == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    sl_api_reply_json(req, 200, json_pack("{s:o}", "bridges", arr));
}

static const char *str_member(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void h_create(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    json_t *body = NULL;
    if (sl_api_req_json(req, &body) != 0 || !json_is_object(body)) {
        json_decref(body);
        sl_api_reply_error(req, 400, "Body must be a JSON object");
        return;
    }
    const char *upstream = str_member(body, "upstream");
    if (upstream == NULL) {
        json_decref(body);
        sl_api_reply_error(req, 400, "Missing \"upstream\"");
        return;
    }
    char err[256] = "";
    struct sl_node_bridge *b = NULL;
    struct sl_node_bridge_spec spec = {
        .upstream = upstream,
        .hub = str_member(body, "hub"),
        .token = str_member(body, "token"),
        .username = str_member(body, "username"),
        .password = str_member(body, "password"),
        .grant = str_member(body, "grant"),
    };
    int rc = sl_node_bridge_add(node, &spec, &b, err, sizeof(err));
    json_decref(body);
    if (rc == SL_EPARSE) {
        sl_api_reply_error(req, 400, err);
    } else if (rc == SL_EEXIST || rc == SL_EDENIED) {
        sl_api_reply_error(req, 409, err);
    } else if (rc == SL_ELIMIT) {
        sl_api_reply_error(req, 429, err);
    } else if (rc != 0 || b == NULL) {
        sl_api_reply_error(req, 500, sl_strerror(rc));
    } else {
        sl_api_reply_json(req, 201, sl_node_bridge_json(b));
    }
}

static struct sl_node_bridge *find_or_404(struct sl_api_req *req,
                                          struct sl_node *node)
{
    struct sl_node_bridge *b =
        sl_node_bridge_find(node, sl_api_req_param(req, "identity"));
    if (b == NULL)
        sl_api_reply_error(req, 404, "No such bridge");
    return b;
}

static void h_connect(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = find_or_404(req, arg);
    if (b == NULL)
        return;
    sl_node_bridge_connect(b);
    sl_api_reply_json(req, 200, sl_node_bridge_json(b));
}

static void h_disconnect(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = find_or_404(req, arg);
    if (b == NULL)
        return;
    sl_node_bridge_disconnect(b);
    sl_api_reply_json(req, 200, sl_node_bridge_json(b));
}

/* A new password (after `sluice proxy rotate`) or grant; either may be
 * left out. */
static void h_update(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = find_or_404(req, arg);
    if (b == NULL)
        return;
    json_t *body = NULL;
    if (sl_api_req_json(req, &body) != 0 || !json_is_object(body)) {
        json_decref(body);
        sl_api_reply_error(req, 400, "Body must be a JSON object");
        return;
    }
    const char *password = str_member(body, "password");
    const char *grant = str_member(body, "grant");
    char err[200] = "";
    int rc = password == NULL && grant == NULL
                 ? (snprintf(err, sizeof(err), "Give \"password\" or "
                             "\"grant\""), SL_EPARSE)
                 : sl_node_bridge_update(b, password, grant, err,
                                         sizeof(err));
    json_decref(body);
    if (rc != 0)
        sl_api_reply_error(req, 400, err);
    else
        sl_api_reply_json(req, 200, sl_node_bridge_json(b));
}

static void h_remove(struct sl_api_req *req, void *arg)
{
    struct sl_node_bridge *b = find_or_404(req, arg);
    if (b == NULL)
        return;
    json_t *o = sl_node_bridge_json(b);
    sl_node_bridge_remove(b);
    sl_api_reply_json(req, 200, o);
}

static void h_prune(struct sl_api_req *req, void *arg)
{
    size_t n = sl_node_prune(arg);
    sl_api_reply_json(req, 200, json_pack("{s:I}", "removed", (json_int_t)n));
}

/* The stream routes' agents (stream/agent_client.h), when this process
 * runs routes from a config file with agents:. */
static void h_agents(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    json_t *arr = sl_agents_json(sl_streams_agents(node->ctx->streams));
    if (arr == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    sl_api_reply_json(req, 200, json_pack("{s:o}", "agents", arr));
}

static const struct sl_api_route routes[] = {
    {"GET", "/api/bridge/", h_list},
    {"POST", "/api/bridge/", h_create},
    {"DELETE", "/api/bridge/prune/", h_prune},
    {"POST", "/api/bridge/{identity}/connect/", h_connect},
    {"POST", "/api/bridge/{identity}/disconnect/", h_disconnect},
    {"POST", "/api/bridge/{identity}/update/", h_update},
    {"DELETE", "/api/bridge/{identity}/", h_remove},
    {"GET", "/api/agents/", h_agents},
    /* the dashboard, the request inspector and metrics (node_dash.h) */
    {"GET", "/api/bridge/{identity}/requests/", sl_node_dash_requests},
    {"GET", "/api/bridge/{identity}/requests/{id}/", sl_node_dash_request},
    {"POST", "/api/bridge/{identity}/requests/{id}/replay/",
     sl_node_dash_replay},
    {"GET", "/metrics", sl_node_metrics},
    /* the dashboard's: only on the loopback API (see sl_node_api_routes) */
    {"GET", "/api/events", sl_node_dash_events},
    {"GET", "/", sl_node_dash_page},
    {"GET", "/ui/{file}", sl_node_dash_asset},
};

/* The dashboard's routes close the table. */
#define DASH_ROUTES 3

const struct sl_api_route *sl_node_api_routes(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]) - DASH_ROUTES;
    return routes;
}

int sl_node_api_start(struct sl_node *node, const char *listen)
{
    struct sl_api_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.name = "node-api";
    cfg.listen = listen;
    cfg.routes = routes;
    cfg.nroutes = sizeof(routes) / sizeof(routes[0]);
    cfg.arg = node;
    cfg.dashboard = 1;
    int rc = sl_node_dash_start(node);
    if (rc != 0)
        return rc;
    rc = sl_api_server_start(node->ctx, &cfg, &node->api);
    if (rc != 0) {
        sl_node_dash_stop(node);
        return rc;
    }
    rc = sl_api_server_address(node->api, node->api_addr,
                               sizeof(node->api_addr));
    if (rc != 0)
        node->api_addr[0] = '\0';
    return 0;
}
