#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"

static const char usage[] =
    "usage: sluice config check FILE\n"
    "\n"
    "Loads and validates the configuration file FILE. Prints\n"
    "'FILE: ok (N routes)' and one line per route, exit status 0; or the\n"
    "first error as 'FILE: <error>', exit status 1.\n";

static int check(const char *path)
{
    char err[SL_CONFIG_ERR_MAX];
    char line[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;

    if (sl_config_load_file(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", path, err[0] ? err : "invalid");
        return 1;
    }
    printf("%s: ok (%zu route%s)\n", path, cfg->nroutes,
           cfg->nroutes == 1 ? "" : "s");
    for (size_t i = 0; i < cfg->nroutes; i++)
        printf("%s\n", sl_config_route_describe(&cfg->routes[i], line,
                                                sizeof(line)));
    sl_config_free(cfg);
    return 0;
}

int sl_cli_config(struct sl_cli *cli)
{
    if (sl_cli_wants_help(cli->argc, cli->argv)) {
        fputs(usage, stdout);
        return 0;
    }
    if (cli->argc < 1) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(cli->argv[0], "check") != 0) {
        fprintf(stderr, "sluice config: unknown subcommand '%s'\n%s",
                cli->argv[0], usage);
        return 2;
    }
    if (cli->argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    return check(cli->argv[1]);
}
