/* `sluice boot up --proxy ...`: the hub role (and its admin API), run by
 * cli_boot.c through the row sl_boot_role_hub (cli/cli_boot_role.h). */
#ifndef SL_CLI_BOOT_HUB_H
#define SL_CLI_BOOT_HUB_H

#include "cli/cli_boot_role.h"

#endif
