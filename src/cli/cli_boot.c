#include "cli/cli.h"

#include <stdio.h>

int sl_cli_boot(struct sl_cli *cli)
{
    (void)cli;
    fprintf(stderr, "sluice: 'boot' is not implemented yet\n");
    return 2;
}
