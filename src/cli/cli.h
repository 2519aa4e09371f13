/* The command-line frame: global options, then a command and its words.
 * Each command lives in its own cli_<name>.c and has this signature; argv[0]
 * is the command's first word after the command name(s). Returns the
 * process exit code. */
#ifndef SL_CLI_H
#define SL_CLI_H

#include "core/ctx.h"

struct sl_cli {
    struct sl_ctx *ctx;
    int argc;
    char **argv;
};

typedef int (*sl_cli_cmd_fn)(struct sl_cli *cli);

int sl_cli_main(int argc, char **argv);

/* Commands. */
int sl_cli_boot(struct sl_cli *cli);   /* boot up|down|status */
int sl_cli_config(struct sl_cli *cli); /* config check FILE */
int sl_cli_proxy(struct sl_cli *cli);  /* proxy list|create|remove|prune */
int sl_cli_bridge(struct sl_cli *cli); /* bridge list|create|... */
int sl_cli_grant(struct sl_cli *cli);  /* grant keygen|sign|show */
int sl_cli_agent(struct sl_cli *cli);  /* agent certs|probe|info */

/* Helpers for commands: returns 1 if argv holds -h/--help. */
int sl_cli_wants_help(int argc, char **argv);

#endif
