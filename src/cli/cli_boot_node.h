/* `sluice boot up --bridge ...`: the bridge node role, run by cli_boot.c
 * through the row sl_boot_role_node (cli/cli_boot_role.h). */
#ifndef SL_CLI_BOOT_NODE_H
#define SL_CLI_BOOT_NODE_H

#include "cli/cli_boot_role.h"

#endif
