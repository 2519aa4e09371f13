/* Replays a request the inspector recorded (node/node_inspect.h) to the
 * bridge's upstream, as the dashboard's "Replay" button asks:
 *   POST /api/bridge/{identity}/requests/{id}/replay/
 *
 * The node dials the upstream itself (the same private-address rule as
 * the data path, on the resolved address), sends the recorded request
 * without its secrets and with "Connection: close", and records the
 * exchange as a new one marked "replay". The API answer is that
 * exchange in full (sl_inspect_get_json), 200; or 404 (no such exchange),
 * 409 (it cannot be replayed: why), 502 (the upstream cannot be
 * reached), 504 (no whole answer within SL_REPLAY_TIMEOUT_MS).
 *
 * At most SL_REPLAY_MAX replays run per bridge at once (429 past it); a
 * bridge's replays are cancelled when it is removed or the node stops. */
#ifndef SL_NODE_REPLAY_H
#define SL_NODE_REPLAY_H

#include <stdint.h>

struct sl_api_req;
struct sl_node_bridge;
struct sl_node_replay;

#define SL_REPLAY_CONNECT_TIMEOUT_MS 10000
#define SL_REPLAY_TIMEOUT_MS 30000
#define SL_REPLAY_MAX 4

/* Starts replaying exchange id of b; answers req (now or later). */
void sl_node_replay(struct sl_node_bridge *b, uint64_t id,
                    struct sl_api_req *req);

/* Cancels b's replays (their requests get 503). */
void sl_node_replays_cancel(struct sl_node_bridge *b);

#endif
