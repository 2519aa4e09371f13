/* GET /metrics on the node's API: Prometheus text format 0.0.4.
 *
 * Labels are bounded: one series set per bridge that has an identity
 * (at most SL_NODE_BRIDGES_MAX), labelled by that identity and a fixed
 * direction; bridges still without one are counted only in
 * sluice_node_bridges. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "node/node_dash.h"
#include "node/node_inspect.h"
#include "node/node_int.h"
#include "stream/agent_client.h"
#include "stream/streams.h"

#define METRICS_MAX (4 * 1024 * 1024)

struct text {
    char *data;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t,
                                                      const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->data ? t->cap - t->len : 0;
        int n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *d = cap <= METRICS_MAX ? realloc(t->data, cap) : NULL;
        if (d == NULL) {
            t->failed = 1;
            return;
        }
        t->data = d;
        t->cap = cap;
    }
}

static void help(struct text *t, const char *name, const char *type,
                 const char *text)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Identities are [a-z0-9] only: no escaping needed. */
static int labelled(const struct sl_node_bridge *b)
{
    return b->rec.identity[0] != '\0';
}

void sl_node_metrics(struct sl_api_req *req, void *arg)
{
    struct sl_node *node = arg;
    struct text t = {0};
    const struct sl_node_bridge *b;

    help(&t, "sluice_node_bridge_gateway_bytes_total", "counter",
         "Bytes between the hub and the node for a bridge (direction: down "
         "from the hub towards the upstream, up back to the hub).");
    for (b = node->bridges; b != NULL; b = b->next)
        if (labelled(b))
            add(&t,
                "sluice_node_bridge_gateway_bytes_total{identity=\"%s\","
                "direction=\"down\"} %" PRIu64 "\n"
                "sluice_node_bridge_gateway_bytes_total{identity=\"%s\","
                "direction=\"up\"} %" PRIu64 "\n",
                b->rec.identity, b->gw_down, b->rec.identity, b->gw_up);

    help(&t, "sluice_node_bridge_upstream_bytes_total", "counter",
         "Bytes between the node and a bridge's upstream (direction: down "
         "from the upstream, up to it).");
    for (b = node->bridges; b != NULL; b = b->next)
        if (labelled(b))
            add(&t,
                "sluice_node_bridge_upstream_bytes_total{identity=\"%s\","
                "direction=\"down\"} %" PRIu64 "\n"
                "sluice_node_bridge_upstream_bytes_total{identity=\"%s\","
                "direction=\"up\"} %" PRIu64 "\n",
                b->rec.identity, b->up_down, b->rec.identity, b->up_up);

    help(&t, "sluice_node_bridge_bandwidth_bytes_per_second", "gauge",
         "Hub-side traffic of a bridge over the last second.");
    for (b = node->bridges; b != NULL; b = b->next)
        if (labelled(b))
            add(&t,
                "sluice_node_bridge_bandwidth_bytes_per_second{identity="
                "\"%s\",direction=\"down\"} %.0f\n"
                "sluice_node_bridge_bandwidth_bytes_per_second{identity="
                "\"%s\",direction=\"up\"} %.0f\n",
                b->rec.identity, b->rate_down, b->rec.identity, b->rate_up);

    help(&t, "sluice_node_bridge_connected", "gauge",
         "1 while the bridge's control connection is up.");
    for (b = node->bridges; b != NULL; b = b->next)
        if (labelled(b))
            add(&t, "sluice_node_bridge_connected{identity=\"%s\"} %d\n",
                b->rec.identity, b->state == BS_CONNECTED ? 1 : 0);

    help(&t, "sluice_node_bridge_inspected_requests_total", "counter",
         "Requests the inspector recorded for a bridge (replays "
         "included).");
    for (b = node->bridges; b != NULL; b = b->next)
        if (labelled(b) && b->inspect != NULL)
            add(&t,
                "sluice_node_bridge_inspected_requests_total{identity="
                "\"%s\"} %" PRIu64 "\n",
                b->rec.identity, sl_inspect_last_id(b->inspect));

    size_t n[3] = {0, 0, 0};
    for (b = node->bridges; b != NULL; b = b->next)
        n[b->state == BS_CONNECTED ? 0 : b->state == BS_CONNECTING ? 1 : 2]++;
    help(&t, "sluice_node_bridges", "gauge", "Bridges of the node by state.");
    add(&t,
        "sluice_node_bridges{state=\"connected\"} %zu\n"
        "sluice_node_bridges{state=\"connecting\"} %zu\n"
        "sluice_node_bridges{state=\"disconnected\"} %zu\n",
        n[0], n[1], n[2]);

    /* Stream routes' agents, when this process runs them too. */
    char *agents = sl_agents_metrics(sl_streams_agents(node->ctx->streams));
    if (agents == NULL)
        t.failed = 1;
    else if (agents[0] != '\0')
        add(&t, "%s", agents);
    free(agents);

    if (t.failed) {
        free(t.data);
        sl_api_reply_error(req, 500, "Could not build metrics");
        return;
    }
    sl_api_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                      t.data, t.len);
    free(t.data);
}
