/* Stream hooks: the one extension point of every stream, local or
 * tunnelled. A route (or a tunnel) owns a struct sl_hooks holding short
 * chains of functions:
 *
 *  - pre_dial: admission, run once per TCP connection (after the PROXY
 *    header, on the real client address) or per new UDP session, before
 *    anything is dialled. The first hook that refuses wins.
 *  - on_read: run on every chunk read, in either direction, before it is
 *    forwarded (accounting, throttling, idle timers). A non-zero return
 *    ends the stream.
 *  - on_close: run once when an admitted stream ends (release what
 *    pre_dial took).
 *
 * The ACL, the connection limit and the byte counters are themselves
 * hooks, below. Hooks run on the loop thread and must not block. */
#ifndef SL_STREAM_HOOKS_H
#define SL_STREAM_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_acl;

#define SL_HOOKS_MAX 8 /* per chain */

/* Per-route counters. Updated on the loop thread only. */
struct sl_stream_stats {
    uint64_t conns_total;  /* TCP connections accepted */
    uint64_t conns_active; /* TCP connections open now */
    uint64_t bytes_in;     /* client -> upstream */
    uint64_t bytes_out;    /* upstream -> client */
    uint64_t denied;       /* refused by a pre_dial hook (ACL, limit) */
    uint64_t failed;       /* upstream unreachable, bad PROXY header, ... */
    uint64_t udp_sessions_total;
    uint64_t udp_sessions_active;
    uint64_t udp_datagrams_in;  /* client -> upstream */
    uint64_t udp_datagrams_out; /* upstream -> client */
    uint64_t dropped;      /* UDP datagrams dropped (denied, full, error) */
};

/* What a hook knows about the stream it judges. */
struct sl_hook_stream {
    const char *route;            /* route (or tunnel) name */
    int udp;                      /* 0: TCP, 1: UDP session */
    const struct sockaddr *client; /* real client (after PROXY parsing) */
    const struct sockaddr *peer;   /* the socket's peer (a proxy, maybe) */
};

enum sl_hook_dir { SL_HOOK_UP = 0, SL_HOOK_DOWN = 1 }; /* UP: from client */

/* Returns 0 to admit, or a negative code (SL_EDENIED for policy,
 * SL_ELIMIT for a count limit) and points *reason at a static string
 * ("acl", "connection limit", ...). */
typedef int (*sl_pre_dial_fn)(void *arg, const struct sl_hook_stream *st,
                              const char **reason);
/* Returns 0 to go on, or a negative code to end the stream. */
typedef int (*sl_on_read_fn)(void *arg, const struct sl_hook_stream *st,
                             size_t n, enum sl_hook_dir dir);
typedef void (*sl_on_close_fn)(void *arg, const struct sl_hook_stream *st);

struct sl_hooks {
    struct { sl_pre_dial_fn fn; void *arg; } pre_dial[SL_HOOKS_MAX];
    struct { sl_on_read_fn fn; void *arg; } on_read[SL_HOOKS_MAX];
    struct { sl_on_close_fn fn; void *arg; } on_close[SL_HOOKS_MAX];
    size_t npre_dial, non_read, non_close;
};

/* Appending returns 0 or SL_ELIMIT when the chain is full. arg is
 * borrowed: it must outlive the hooks. */
int sl_hooks_add_pre_dial(struct sl_hooks *h, sl_pre_dial_fn fn, void *arg);
int sl_hooks_add_on_read(struct sl_hooks *h, sl_on_read_fn fn, void *arg);
int sl_hooks_add_on_close(struct sl_hooks *h, sl_on_close_fn fn, void *arg);

/* Run a chain. pre_dial stops at the first refusal and returns it with
 * *reason set ("" when admitted); on_read stops at the first non-zero. */
int sl_hooks_pre_dial(const struct sl_hooks *h, const struct sl_hook_stream *st,
                      const char **reason);
int sl_hooks_on_read(const struct sl_hooks *h, const struct sl_hook_stream *st,
                     size_t n, enum sl_hook_dir dir);
void sl_hooks_on_close(const struct sl_hooks *h,
                       const struct sl_hook_stream *st);

/* Built-in hooks. */

/* pre_dial; arg: const struct sl_acl * (NULL allows all). Refuses with
 * SL_EDENIED, reason "acl". */
int sl_hook_acl(void *arg, const struct sl_hook_stream *st,
                const char **reason);

/* pre_dial; arg: struct sl_hook_limit *. Refuses with SL_ELIMIT, reason
 * "connection limit" (TCP) or "session limit" (UDP), when *active has
 * reached max. The engine maintains *active. max 0 means unlimited. */
struct sl_hook_limit {
    uint64_t max;
    const uint64_t *active;
};
int sl_hook_limit(void *arg, const struct sl_hook_stream *st,
                  const char **reason);

/* on_read; arg: struct sl_stream_stats *. Adds n to bytes_in (UP) or
 * bytes_out (DOWN). */
int sl_hook_count_bytes(void *arg, const struct sl_hook_stream *st, size_t n,
                        enum sl_hook_dir dir);

#endif
