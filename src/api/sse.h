/* Server-sent events for the dashboards: every open page holds one
 * stream (GET .../events) and gets a snapshot of the live state every
 * interval, as one "snapshot" event whose data is a line of JSON.
 *
 * - The snapshot is built once per tick for all clients (snapshot_fn),
 *   and only while at least one client is connected (the timer stops
 *   with the last one).
 * - At most max_clients streams at once: one more gets 503 {"error":
 *   "Too many dashboard streams"}. A client that does not read (more
 *   than SL_API_STREAM_QUEUE_MAX bytes waiting) is dropped; its page
 *   reconnects by itself (EventSource semantics, retry 2 s).
 *
 * Runs on the loop; not thread-safe. */
#ifndef SL_API_SSE_H
#define SL_API_SSE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct sl_api_req;
struct sl_sse;

#define SL_SSE_CLIENTS_DEFAULT 16
#define SL_SSE_INTERVAL_MS 1000

/* Returns the data of one event (a single line: compact JSON), malloc'd,
 * its length in *len; NULL when it cannot be built (that tick is
 * skipped). */
typedef char *(*sl_sse_snapshot_fn)(void *arg, size_t *len);

/* max_clients 0: SL_SSE_CLIENTS_DEFAULT; interval_ms 0:
 * SL_SSE_INTERVAL_MS. Returns NULL on ENOMEM. */
struct sl_sse *sl_sse_new(uv_loop_t *loop, size_t max_clients,
                          uint64_t interval_ms, sl_sse_snapshot_fn fn,
                          void *arg);

/* Answers req with an event stream (or 503 past the cap, 500 on ENOMEM)
 * and sends the first snapshot at once. */
void sl_sse_add(struct sl_sse *sse, struct sl_api_req *req);

/* Clients connected now. */
size_t sl_sse_clients(const struct sl_sse *sse);

/* Ends every stream and frees sse once its timer is closed (run the loop
 * afterwards). NULL is a no-op. */
void sl_sse_free(struct sl_sse *sse);

#endif
