/* What the node's API serves beside its REST routes (node_api.c lists
 * them): the dashboard (api/dashboard.h) with its live feed, the request
 * inspector's answers and replays (node/node_inspect.h,
 * node/node_replay.h), and Prometheus metrics (node_metrics.c).
 *
 *   GET  /                                     the dashboard
 *   GET  /ui/{file}                            its script and style
 *   GET  /api/events                           server-sent events: every
 *        second {"bridges":[...],"inspect":BOOL,"time":MS}, each bridge as
 *        GET /api/bridge/ has it plus "inspector":{"count","last"}
 *   GET  /api/bridge/{identity}/requests/      {"requests":[summaries]}
 *   GET  /api/bridge/{identity}/requests/{id}/ one exchange in full
 *   POST /api/bridge/{identity}/requests/{id}/replay/
 *   GET  /metrics                              Prometheus text 0.0.4
 *
 * With the inspector off, the requests routes answer 404 {"error": "The
 * inspector is off"}. */
#ifndef SL_NODE_DASH_H
#define SL_NODE_DASH_H

struct sl_api_req;
struct sl_node;

/* Creates the live feed; 0 or UV_ENOMEM. Call before the API serves. */
int sl_node_dash_start(struct sl_node *node);
/* Ends the feed's streams and frees it (before the API server closes). */
void sl_node_dash_stop(struct sl_node *node);

void sl_node_dash_page(struct sl_api_req *req, void *arg);
void sl_node_dash_asset(struct sl_api_req *req, void *arg);
void sl_node_dash_events(struct sl_api_req *req, void *arg);
void sl_node_dash_requests(struct sl_api_req *req, void *arg);
void sl_node_dash_request(struct sl_api_req *req, void *arg);
void sl_node_dash_replay(struct sl_api_req *req, void *arg);
/* node_metrics.c */
void sl_node_metrics(struct sl_api_req *req, void *arg);

#endif
