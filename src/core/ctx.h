/* The process context: everything that would otherwise be global. One per
 * process (one per worker later); passed explicitly to every role. */
#ifndef SL_CTX_H
#define SL_CTX_H

#include <stdint.h>
#include <uv.h>

#include "core/log.h"

struct sl_config;
struct sl_streams;
struct sl_hub;
struct sl_node;

struct sl_ctx {
    uv_loop_t *loop;
    struct sl_log log;
    struct sl_config *config;   /* owned; NULL when no config file */
    struct sl_streams *streams; /* stream routes, or NULL */
    struct sl_hub *hub;         /* hub role, or NULL */
    struct sl_node *node;       /* node role, or NULL */
    int stopping;               /* set once SIGINT/SIGTERM arrived */
    uint64_t drain_grace_ms;    /* stop: how long live streams may finish;
                                   0 = the default (10 s) */
};

#endif
