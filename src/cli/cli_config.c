#include "cli/cli.h"

#include <stdio.h>

int sl_cli_config(struct sl_cli *cli)
{
    (void)cli;
    fprintf(stderr, "sluice: 'config' is not implemented yet\n");
    return 2;
}
