/* `sluice boot up --proxy ...`: runs the hub (and its admin API) in the
 * foreground or as a daemon. Called by cli_boot.c when --proxy is given;
 * argv[0] is "up". Returns the process exit code. */
#ifndef SL_CLI_BOOT_HUB_H
#define SL_CLI_BOOT_HUB_H

#include "cli/cli.h"

int sl_cli_boot_hub(struct sl_cli *cli);

#endif
