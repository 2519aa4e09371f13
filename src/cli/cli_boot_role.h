/* The contract between `sluice boot up` (cli_boot.c) and the roles it runs
 * in one process, on one loop: the hub (`--proxy`, cli_boot_hub.c), the
 * bridge node (`--bridge`, cli_boot_node.c) and the stream routes
 * (`--config FILE`, in cli_boot.c).
 *
 * cli_boot.c owns everything roles share: the option scan, the state
 * directory, pid files and daemon mode, the loop, the SIGINT/SIGTERM
 * handler and <role>.json. A role only parses its own options and starts
 * and stops itself.
 *
 * Options: cli_boot.c takes --config, --proxy, --bridge, --daemon and
 * --state-dir itself and offers every other option to each role asked
 * for, in table order (hub, then node); an option applies to every role
 * that takes it (so with --proxy --bridge, --token is the hub's gateway
 * token and the node's token at once), and one no role takes is a usage
 * error. The one exception is decided by the roles: with --proxy,
 * --api is the hub's and the node's API is --node-api. */
#ifndef SL_CLI_BOOT_ROLE_H
#define SL_CLI_BOOT_ROLE_H

#include <stddef.h>

#include "core/ctx.h"
#include "core/statedir.h"

/* What every role may read; filled by cli_boot.c. */
struct sl_boot_common {
    int proxy, bridge;   /* --proxy / --bridge given */
    int daemon;          /* --daemon */
    const char *state_dir; /* the resolved state directory; set before
                              start, NULL before (and when no role needs
                              one) */    char hub_ca[1024];   /* that hub's local CA when it is TLS only, or
                            "" */
    char hub_url[320];   /* "http://ADDR" of the hub started in this
                            process (set once it listens; roles start hub
                            first), "" without one: a node with no --hub
                            dials it */
};

typedef void (*sl_boot_stopped_cb)(void *arg);

struct sl_boot_role {
    const char *name;  /* "hub", "node", "streams"; names <name>.pid,
                          <name>.json and <name>.log in the state dir */
    const char *flag;  /* "--proxy", "--bridge"; NULL: stream routes */
    const char *usage; /* the role's help text */
    int state_dir;     /* 1: pid file, <name>.json, daemon log */
    size_t state_size; /* private state, zeroed by cli_boot.c, freed after
                          the loop ends; 0: none (st is NULL) */
    /* Offered argv[*i] (never an option cli_boot.c takes). Returns 0 when
     * it is not the role's, 1 when taken (*i advanced past a value), 2 on
     * a usage error (already printed). NULL: takes nothing. */
    int (*parse)(void *st, const struct sl_boot_common *c, int argc,
                 char **argv, int *i);
    /* After parsing, before the process detaches: refuses bad values in
     * the terminal. Returns 0 or the exit code (message printed). May be
     * NULL. */
    int (*check)(void *st, const struct sl_boot_common *c);
    /* On the loop (ctx->loop is set). Prints the role's stdout lines and
     * fills info->api / info->http for <name>.json. Returns 0 or a
     * negative code (logged by the caller); on failure the role has begun
     * closing whatever it opened by itself and stop is not called. */
    int (*start)(void *st, struct sl_ctx *ctx, const struct sl_boot_common *c,
                 struct sl_role_info *info);
    /* Begins a graceful stop; calls done(arg) exactly once, from the loop
     * or from inside this call, once the role's handles are closed. */
    void (*stop)(void *st, struct sl_ctx *ctx, sl_boot_stopped_cb done,
                 void *arg);
    /* SIGHUP: reads its files again (certificates). May be NULL. */
    void (*reload)(void *st, struct sl_ctx *ctx);
};

/* The rows of the role table (cli_boot_hub.c, cli_boot_node.c). */
extern const struct sl_boot_role sl_boot_role_hub;
extern const struct sl_boot_role sl_boot_role_node;

#endif
