#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_boot_config.h"
#include "cli/cli_boot_hub.h"
#include "cli/cli_boot_node.h"
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

/* The file's sections as boot up would take them: each setting offered
 * to its role's option parser on a scratch state, so a key the config
 * layer passes on unread (a role's newer option) is checked too. Returns
 * 0 or 1 (printed). */
static int check_roles(const char *path, const struct sl_config *cfg)
{
    const struct {
        const char *name;
        const struct sl_boot_role *role;
        const struct sl_config_section *sec;
    } rows[] = {
        {"hub", &sl_boot_role_hub, &cfg->hub},
        {"node", &sl_boot_role_node, &cfg->node},
    };
    int rc = 0;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        struct sl_boot_file_args fa = {0};
        struct sl_boot_common c = {.proxy = i == 0, .bridge = i == 1};
        void *st = calloc(1, rows[i].role->state_size);
        if (st == NULL) {
            fprintf(stderr, "sluice: out of memory\n");
            return 1;
        }
        rc = sl_boot_apply_section(&fa, path, rows[i].name, rows[i].sec,
                                   rows[i].role, st, &c);
        free(st);
        sl_boot_file_args_free(&fa);
    }
    return rc == 0 ? 0 : 1;
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
    if (check_roles(path, cfg) != 0) {
        sl_config_free(cfg);
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
