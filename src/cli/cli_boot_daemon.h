/* `sluice boot down` and `sluice boot status`: find the running hub
 * ("--proxy") and node ("--bridge") through their state directory (pid
 * files and <role>.json, core/statedir.h), stop them with SIGTERM, or
 * report them. cli->argv[0] is "down" or "status". Return the exit code:
 * down: 0 (stopped or not running), 1 (still running after the timeout),
 * 2 usage; status: 0 when at least one asked-for role runs, 3 when none,
 * 2 usage. */
#ifndef SL_CLI_BOOT_DAEMON_H
#define SL_CLI_BOOT_DAEMON_H

#include "cli/cli.h"

int sl_cli_boot_down(struct sl_cli *cli);
int sl_cli_boot_status(struct sl_cli *cli);

#endif
