#include "cli/cli.h"

#include <stdio.h>

int sl_cli_bridge(struct sl_cli *cli)
{
    (void)cli;
    fprintf(stderr, "sluice: 'bridge' is not implemented yet\n");
    return 2;
}
