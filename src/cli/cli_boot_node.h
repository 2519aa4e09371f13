/* `sluice boot up --bridge ...`: runs a bridge node in the foreground or
 * as a daemon. Called by cli_boot.c when --bridge is given (without
 * --proxy); argv[0] is "up". Returns the process exit code. */
#ifndef SL_CLI_BOOT_NODE_H
#define SL_CLI_BOOT_NODE_H

#include "cli/cli.h"

int sl_cli_boot_node(struct sl_cli *cli);

#endif
