#include "cli/cli.h"

#include <stdio.h>

int sl_cli_proxy(struct sl_cli *cli)
{
    (void)cli;
    fprintf(stderr, "sluice: 'proxy' is not implemented yet\n");
    return 2;
}
