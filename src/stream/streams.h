/* Stream routes: the `routes:` of the config file run as local TCP/UDP
 * listeners that forward to their targets (the reverse proxy's stream
 * module).
 *
 * Lifetime: sl_streams_start creates ctx->streams and starts every route;
 * sl_streams_stop closes the listeners, lets live TCP connections finish
 * for a grace period (ctx->drain_grace_ms, default 10 s), closes what is
 * left, frees ctx->streams (setting it to NULL) and then calls done. The
 * configuration is borrowed: it must outlive the streams (ctx->config
 * does). Everything runs on ctx->loop. */
#ifndef SL_STREAMS_H
#define SL_STREAMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/ctx.h"
#include "stream/hooks.h"

struct sl_config;
struct sl_streams;

#define SL_STREAMS_DEFAULT_GRACE_MS 10000
#define SL_STREAMS_STATS_INTERVAL_MS 60000

typedef void (*sl_streams_done_cb)(struct sl_ctx *ctx);

/* Starts every route of cfg and logs one info line per route (where it
 * listens, with the actual port, and where it forwards). Returns 0, or the
 * first route's error (logged, naming the route); on error ctx->streams is
 * still set and the caller must call sl_streams_stop and run the loop to
 * release what did start. A config without routes is fine. */
int sl_streams_start(struct sl_ctx *ctx, const struct sl_config *cfg);

/* Begins the drain described above; done is called exactly once, from a
 * later loop iteration, once every handle is closed. With no ctx->streams,
 * done is called at once, from inside this call. A second call while
 * draining does nothing. */
void sl_streams_stop(struct sl_ctx *ctx, sl_streams_done_cb done);

/* Introspection for the CLI and the API. i < sl_streams_count(). */
struct sl_stream_route_info {
    const char *name;
    const char *scheme;        /* "tcp", "tcp4", "udp6", ... */
    struct sockaddr_storage listen; /* actual bound address */
    const char *host;          /* target host, as configured */
    uint16_t target_port;
};
size_t sl_streams_count(const struct sl_streams *s); /* NULL: 0 */
int sl_streams_route_info(const struct sl_streams *s, size_t i,
                          struct sl_stream_route_info *out);
int sl_streams_route_stats(const struct sl_streams *s, size_t i,
                           struct sl_stream_stats *out);
/* The route's hook chains, for other parts to append to (before traffic
 * they care about arrives). NULL if i is out of range. */
struct sl_hooks *sl_streams_route_hooks(struct sl_streams *s, size_t i);

/* The agents of the config's agents: section (stream/agent_client.h),
 * or NULL. */
struct sl_agents *sl_streams_agents(struct sl_streams *s);

/* Writes one log line per route with its counters, at level. */
void sl_streams_log_stats(const struct sl_streams *s, const struct sl_log *log,
                          enum sl_log_level level);

#endif
