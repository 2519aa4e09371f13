/* `sluice route list` and what it reads: a process running stream routes
 * (`sluice boot up --config FILE`, with or without other roles) publishes
 * its routes and their agents in routes.json in its state directory; the
 * CLI prints that file. A routes-only process has no API to ask, and a
 * file works the same whether or not one is running beside the routes.
 *
 * routes.json: {"version": 1, "pid", "started_at" (unix seconds),
 * "updated_at" (ms since the epoch), "routes": [{name, scheme, listen,
 * target, agent (a name or null), connections, active, bytes_in,
 * bytes_out, denied, failed, udp_sessions, udp_sessions_active,
 * datagrams_in, datagrams_out, dropped}], "agents": the array of
 * sl_agents_json (stream/agent_client.h)}. Written atomically (a
 * temporary file renamed), from the thread pool, when it changed and at
 * most once a second; removed on a clean exit. One process publishes per
 * state directory: a second one finding the file of a live process
 * leaves it alone (and says so once). */
#ifndef SL_CLI_ROUTE_H
#define SL_CLI_ROUTE_H

#include "cli/cli.h"
#include "core/ctx.h"

#define SL_ROUTE_PUB_FILE "routes.json"
#define SL_ROUTE_PUB_INTERVAL_MS 1000

struct sl_route_pub;

/* Writes the first routes.json into dir (blocking: call before the loop
 * runs, once ctx->streams listens) and starts the updates on ctx->loop.
 * Returns 0 with *out set, or with *out NULL when another live process
 * publishes in dir; or a negative code (nothing started, logged by the
 * caller). */
int sl_route_pub_start(struct sl_ctx *ctx, const char *dir,
                       struct sl_route_pub **out);

/* Stops the updates, lets a write in flight finish, removes routes.json
 * when it is this process's, frees p and then calls done(arg) from the
 * loop. NULL p: done is called now. */
void sl_route_pub_stop(struct sl_route_pub *p, void (*done)(void *arg),
                       void *arg);

/* The routes.json text of ctx->streams (updated_at as given, in ms). A
 * new string, or NULL on ENOMEM. */
char *sl_route_pub_encode(struct sl_ctx *ctx, int64_t started_at,
                          int64_t updated_at_ms);

int sl_cli_route(struct sl_cli *cli); /* route list */

#endif
