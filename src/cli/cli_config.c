#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"

static const char usage[] =
    "usage: sluice config check FILE\n"
    "\n"
    "Loads and validates the configuration file FILE: its routes: and\n"
    "its hub: and node: sections. Prints 'FILE: ok (N routes)', one line\n"
    "per route and one per section (the keys it sets, never their\n"
    "values), exit status 0; or the first error as 'FILE: <error>',\n"
    "exit status 1.\n";

/* The keys only: a section may hold tokens and passwords. */
static void print_section(const char *name, const char *flag,
                          const struct sl_config_section *sec)
{
    if (!sec->present)
        return;
    printf("%s: %zu setting%s for boot up %s", name, sec->nsettings,
           sec->nsettings == 1 ? "" : "s", flag);
    for (size_t i = 0; i < sec->nsettings; i++)
        printf("%s%s", i ? ", " : ": ", sec->settings[i].key);
    printf("\n");
}

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
    print_section("hub", "--proxy", &cfg->hub);
    print_section("node", "--bridge", &cfg->node);
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
