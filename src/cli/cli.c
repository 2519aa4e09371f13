#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define SL_VERSION_STRING "0.1.0"

static const char usage[] =
    "usage: sluice [--log-level=LEVEL|-L LEVEL] [--log-format=text|json]\n"
    "              <command> [<args>]\n"
    "\n"
    "commands:\n"
    "  boot up [--config FILE] [--proxy] [--bridge]   start sluice\n"
    "  boot down | boot status                        stop / query a daemon\n"
    "  config check FILE                              validate a config file\n"
    "  proxy list|create|remove <identity>|prune      manage hub allocations\n"
    "  bridge list|create <upstream> [<hub>]|connect <identity>|\n"
    "         disconnect <identity>|remove <identity>|prune\n"
    "                                                 manage a node's bridges\n"
    "  version                                        print the version\n"
    "\n"
    "LEVEL is error, warn, info (default), debug or trace.\n"
    "Run 'sluice <command> --help' for a command's options.\n";

int sl_cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

static int cmd_version(struct sl_cli *cli)
{
    (void)cli;
    printf("sluice %s\n", SL_VERSION_STRING);
    return 0;
}

struct command {
    const char *name;
    sl_cli_cmd_fn fn;
};

static const struct command commands[] = {
    {"boot", sl_cli_boot},     {"config", sl_cli_config},
    {"proxy", sl_cli_proxy},   {"bridge", sl_cli_bridge},
    {"version", cmd_version},
};

/* Accepts "--opt=value", "--opt value" and "-L value". Returns the value
 * and advances *i, or NULL if argv[*i] is not this option. */
static const char *take_opt(int argc, char **argv, int *i, const char *lng,
                            const char *shrt)
{
    const char *a = argv[*i];
    size_t n = strlen(lng);
    if (strncmp(a, lng, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, lng) == 0 || (shrt && strcmp(a, shrt) == 0)) {
        if (*i + 1 >= argc)
            return NULL;
        (*i)++;
        return argv[*i];
    }
    return NULL;
}

int sl_cli_main(int argc, char **argv)
{
    struct sl_ctx ctx = {0};
    ctx.log.level = SL_LOG_INFO;

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *v;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0)
            return cmd_version(NULL);
        if ((v = take_opt(argc, argv, &i, "--log-level", "-L")) != NULL) {
            if (sl_log_level_parse(v, &ctx.log.level) != 0) {
                fprintf(stderr, "sluice: --log-level: '%s' is not one of "
                                "error, warn, info, debug, trace\n", v);
                return 2;
            }
            continue;
        }
        if ((v = take_opt(argc, argv, &i, "--log-format", NULL)) != NULL) {
            if (strcmp(v, "text") == 0)
                ctx.log.json = 0;
            else if (strcmp(v, "json") == 0)
                ctx.log.json = 1;
            else {
                fprintf(stderr, "sluice: --log-format: '%s' is not one of "
                                "text, json\n", v);
                return 2;
            }
            continue;
        }
        fprintf(stderr, "sluice: unknown option '%s'\n%s", a, usage);
        return 2;
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        if (strcmp(argv[i], commands[c].name) == 0) {
            struct sl_cli cli = {&ctx, argc - i - 1, argv + i + 1};
            return commands[c].fn(&cli);
        }
    }
    fprintf(stderr, "sluice: unknown command '%s'\n%s", argv[i], usage);
    return 2;
}
