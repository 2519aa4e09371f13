/* The node's request inspector (issue 14), as ngrok's: per HTTP bridge,
 * the last N requests and their responses, seen on the node's own data
 * path (where the data is the user's own), shown by the node's dashboard
 * and replayable to the upstream (node/node_replay.h).
 *
 * Recording does no I/O: a data connection's bytes are fed as they pass
 * (sl_inspect_conn_feed, from the relay's on_read tap and the framed
 * path), each direction through its own incremental http-parser, and
 * never change or delay them. Keep-alive and pipelining are followed
 * (responses pair with requests in order); after an upgrade (WebSocket)
 * or anything that does not parse as HTTP/1.x the connection is no longer
 * recorded, and what was seen stays.
 *
 * Bounded memory: per bridge, at most `keep` exchanges (the oldest goes);
 * per exchange, each head up to SL_INSPECT_HEAD_CAP and each body up to
 * SL_INSPECT_BODY_CAP bytes (the rest is counted, not kept); per
 * connection, at most SL_INSPECT_PENDING_MAX requests awaiting their
 * response. So a bridge holds at most about keep * 2 * (head + body cap)
 * = 4.8 MiB at the defaults, whatever passes through it.
 *
 * Secrets: the values of Authorization, Proxy-Authorization, Cookie and
 * Set-Cookie are never stored; the head shows "[redacted]" instead, and a
 * replay sends the request without those headers.
 *
 * Lifetimes: a struct sl_inspect belongs to its bridge; a struct
 * sl_inspect_conn to its data connection, and must be freed before the
 * inspector it records into. Not thread-safe (the node's loop). */
#ifndef SL_NODE_INSPECT_H
#define SL_NODE_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/dynbuf.h"

#define SL_INSPECT_KEEP_DEFAULT 50
#define SL_INSPECT_KEEP_MAX 1000
#define SL_INSPECT_HEAD_CAP (16 * 1024)
#define SL_INSPECT_BODY_CAP (16 * 1024)
#define SL_INSPECT_PENDING_MAX 16

struct sl_inspect;
struct sl_inspect_conn;

/* Direction of bytes on a data connection. */
enum sl_inspect_dir {
    SL_INSPECT_REQUEST = 0,  /* from the user (hub) to the upstream */
    SL_INSPECT_RESPONSE = 1, /* from the upstream back */
};

/* keep: exchanges kept (0: SL_INSPECT_KEEP_DEFAULT; at most
 * SL_INSPECT_KEEP_MAX). NULL on ENOMEM. */
struct sl_inspect *sl_inspect_new(size_t keep);
/* Frees every exchange. Every sl_inspect_conn of it must be gone. NULL is
 * a no-op. */
void sl_inspect_free(struct sl_inspect *in);

/* Exchanges recorded now, and the id of the newest one (ids count from 1
 * per bridge; 0: none yet). */
size_t sl_inspect_count(const struct sl_inspect *in);
uint64_t sl_inspect_last_id(const struct sl_inspect *in);

/* A tap for one connection. replay: its exchanges are marked as replays.
 * NULL on ENOMEM (the connection is then simply not recorded). */
struct sl_inspect_conn *sl_inspect_conn_new(struct sl_inspect *in, int replay);
/* Bytes that passed in one direction. Never fails: what cannot be
 * followed stops the recording of this connection. */
void sl_inspect_conn_feed(struct sl_inspect_conn *ic, enum sl_inspect_dir dir,
                          const char *data, size_t len);
/* Id of the first exchange this connection began, or 0. */
uint64_t sl_inspect_conn_first_id(const struct sl_inspect_conn *ic);
/* The connection ended: a response delimited by the close completes; a
 * request still without its response is marked "aborted". NULL is a
 * no-op. */
void sl_inspect_conn_free(struct sl_inspect_conn *ic);

/* JSON. An exchange's summary: {"id", "started_at" (ms since the epoch),
 * "method", "path", "status" (0 until a response head), "state"
 * ("pending", "complete", "aborted", "unparsed"), "duration_ms" (request
 * start to response end; -1 until then), "request_bytes",
 * "response_bytes" (body lengths as sent), "replay"}. The full form adds
 * "request" and "response" (null until one begins), each {"head" (text,
 * CRLF lines), "head_truncated", "body" (UTF-8 text, else base64 with
 * "body_encoding": "base64"), "body_length", "body_kept",
 * "body_truncated"}, and "replayable" (bool) with "not_replayable" (why
 * not) when false. */
json_t *sl_inspect_list_json(const struct sl_inspect *in); /* array, oldest
                                                              first */
json_t *sl_inspect_get_json(const struct sl_inspect *in, uint64_t id);

/* The bytes of exchange id's request as a replay sends them: the request
 * line and headers as recorded, less the redacted ones and the
 * hop-by-hop ones (Connection, Keep-Alive, Transfer-Encoding, TE,
 * Upgrade, Proxy-Connection, Content-Length), plus Content-Length of the
 * body kept and "Connection: close", then the body. Appended to out.
 * Returns 0, SL_ENOTFOUND, or SL_EDENIED with a reason in why (body or
 * head truncated, an upgrade, a request not complete). */
int sl_inspect_replay_bytes(const struct sl_inspect *in, uint64_t id,
                            struct sl_dynbuf *out, char *why, size_t cap);

#endif
