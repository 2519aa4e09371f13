/* The node's persistent state: its bridges (what each connects, and the
 * identity and credentials the hub gave it), as one JSON document in the
 * state directory, `bridges.json` (mode 0600: it holds passwords).
 *
 *   {"version": 1, "bridges": [{"identity": "ab1234567890",
 *     "upstream": "http://127.0.0.1:3000", "hub": "http://127.0.0.1:8080",
 *     "username": "...", "password": "...", "token": "...",
 *     "grant": "<token of tunnel/grant.h>",
 *     "url": "http://ab1234567890.localhost:8080/",
 *     "disconnected": false, "created_at": MS, "connected_at": MS,
 *     "last_seen": MS}]}
 *
 * "hub" may list several hubs sharing one store, comma-separated
 * (node/node_url.h, sl_node_url_parse_hubs).
 *
 * Encoding and decoding are pure (no I/O); sl_node_state_save writes the
 * file with uv_fs_* requests (temp file, fsync, rename), so the loop never
 * blocks and a crash leaves either the old file or the new one. Also the
 * reconnect back-off, which is pure arithmetic. */
#ifndef SL_NODE_STATE_H
#define SL_NODE_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/node_url.h"

#define SL_NODE_IDENTITY_MAX 16
#define SL_NODE_SECRET_MAX 128
#define SL_NODE_TOKEN_MAX 256
#define SL_NODE_GRANT_MAX 2049 /* NUL included: a grant (tunnel/grant.h) */
#define SL_NODE_BRIDGES_MAX 64
#define SL_NODE_STATE_FILE "bridges.json"
#define SL_NODE_STATE_MAX (1024 * 1024) /* bytes of bridges.json read at most */

/* What is persisted of one bridge. Strings are NUL-terminated; "" when
 * unknown (identity, username, password before first contact). */
struct sl_node_bridge_rec {
    char identity[SL_NODE_IDENTITY_MAX];
    char upstream[SL_NODE_URL_MAX];
    char hub[SL_NODE_URL_MAX];
    char url[SL_NODE_URL_MAX]; /* public URL the hub announced */
    char username[SL_NODE_SECRET_MAX];
    char password[SL_NODE_SECRET_MAX];
    char token[SL_NODE_TOKEN_MAX];
    char grant[SL_NODE_GRANT_MAX]; /* presented to the hub; "" none */
    int disconnected; /* 1: the user said `disconnect` */
    int64_t created_at, connected_at, last_seen; /* ms since epoch; 0 never */
};

/* Encodes n records into a NUL-terminated JSON text, owned by the caller
 * (free()). Returns NULL on allocation failure. */
char *sl_node_state_encode(const struct sl_node_bridge_rec *recs, size_t n);

/* Decodes text into at most max records at recs; *n gets the count.
 * Records whose upstream or hub do not parse are skipped (and counted in
 * *skipped when not NULL). Returns 0 or SL_EPARSE (not JSON, wrong shape). */
int sl_node_state_decode(const char *text, size_t len,
                         struct sl_node_bridge_rec *recs, size_t max,
                         size_t *n, size_t *skipped);

/* Reads dir/bridges.json synchronously. Meant for start-up, before the
 * loop runs. A missing file yields 0 records. Returns 0, SL_EPARSE or a
 * libuv error. */
int sl_node_state_load(const char *dir, struct sl_node_bridge_rec *recs,
                       size_t max, size_t *n, size_t *skipped);

/* An asynchronous, atomic writer of one file. Owned by its user; at most
 * one write in flight; a save requested meanwhile is coalesced and run
 * after it (the latest text wins). */
typedef void (*sl_node_saver_done_cb)(void *arg);
struct sl_node_saver {
    uv_loop_t *loop;
    char path[1024], tmp_path[1040];
    char *inflight;   /* text being written (owned) */
    char *pending;    /* next text to write (owned), or NULL */
    uv_fs_t req;
    uv_file fd;
    size_t off;
    int busy;
    int last_error;            /* 0 or the error of the last write */
    sl_node_saver_done_cb on_idle; /* called once idle, when set */
    void *idle_arg;
    void *log;                 /* struct sl_log *, may be NULL */
};

/* Sets up a saver for dir/name. Returns 0 or SL_ETOOBIG (path too long). */
int sl_node_saver_init(struct sl_node_saver *s, uv_loop_t *loop,
                       const char *dir, const char *name);
/* Takes ownership of text (malloc'd) and writes it soon. */
void sl_node_saver_save(struct sl_node_saver *s, char *text);
/* 1 while a write is in flight or pending. */
int sl_node_saver_busy(const struct sl_node_saver *s);
/* Calls cb(arg) once no write is in flight (at once if idle, through the
 * loop otherwise). Used at shutdown so the last state reaches disk. */
void sl_node_saver_flush(struct sl_node_saver *s, sl_node_saver_done_cb cb,
                         void *arg);
/* Frees pending text; call only when idle. */
void sl_node_saver_free(struct sl_node_saver *s);

/* Reconnect delay in ms for the given attempt (0 = first retry):
 * min(2 s * 2^attempt, 60 s) multiplied by factor, clamped into [0.5, 1];
 * so 1-2 s first, then 2-4 s, ..., at most 30-60 s. */
uint64_t sl_node_backoff_ms(unsigned attempt, double factor);

/* A random factor in [0.5, 1.0] from the CSPRNG (for the jitter). */
double sl_node_backoff_jitter(void);

/* Wall clock in ms since the epoch. */
int64_t sl_node_now_ms(void);

#endif
