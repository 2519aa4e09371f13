#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_route.h"
#include "core/error.h"

#define SL_VERSION_STRING "0.1.0"

static const char usage[] =
    "usage: sluice [--log-level=LEVEL|-L LEVEL] [--log-format=text|json]\n"
    "              <command> [<args>]\n"
    "\n"
    "options (before or after the command):\n"
    "  -L, --log-level LEVEL   error, warn, info (default), debug or trace\n"
    "  --log-format FORMAT     text (default) or json: one object a line\n"
    "                          with time, level, msg and the event's fields\n"
    "  -h, --help              this text; 'sluice <command> --help' for a\n"
    "                          command's options\n"
    "  --version               the same as 'sluice version'\n"
    "\n"
    "commands:\n"
    "  boot up [--config FILE] [--proxy] [--bridge]   start sluice\n"
    "  boot down | boot status                        stop / query a daemon\n"
    "  config check FILE                              validate a config file\n"
    "  proxy list|create|remove <identity>|prune      manage hub allocations\n"
    "  bridge list|create <upstream> [<hub>]|connect <identity>|\n"
    "         disconnect <identity>|remove <identity>|prune\n"
    "                                                 manage a node's bridges\n"
    "  grant keygen|sign|show                         licences for bridges\n"
    "  agent certs|probe|info                         a node's agent port\n"
    "  route list                                     the stream routes\n"
    "                                                 and their agents\n"
    "  version                                        print the version\n"
    "\n"
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
    {"grant", sl_cli_grant},   {"version", cmd_version},
    {"agent", sl_cli_agent},   {"route", sl_cli_route},
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

/* The options every command shares. Returns 1 when argv[*i] is one
 * (stored in ctx, *i advanced past a separate value), 0 when it is not,
 * 2 on a bad value (printed). */
static int take_global(struct sl_ctx *ctx, int argc, char **argv, int *i)
{
    const char *v;
    if ((v = take_opt(argc, argv, i, "--log-level", "-L")) != NULL) {
        if (sl_log_level_parse(v, &ctx->log.level) != 0) {
            fprintf(stderr, "sluice: --log-level: '%s' is not one of "
                            "error, warn, info, debug, trace\n", v);
            return 2;
        }
        return 1;
    }
    if ((v = take_opt(argc, argv, i, "--log-format", NULL)) != NULL) {
        if (strcmp(v, "text") == 0) {
            ctx->log.json = 0;
        } else if (strcmp(v, "json") == 0) {
            ctx->log.json = 1;
        } else {
            fprintf(stderr, "sluice: --log-format: '%s' is not one of "
                            "text, json\n", v);
            return 2;
        }
        return 1;
    }
    return 0;
}

/* Runs command c with the words after its name, the shared options taken
 * out wherever they stand (`sluice boot up --proxy -L debug` works as
 * `sluice -L debug boot up --proxy`). */
static int run_command(struct sl_ctx *ctx, const struct command *c, int argc,
                       char **argv)
{
    char **words = calloc((size_t)argc + 1, sizeof(*words));
    int n = 0, rc = 0;
    if (words == NULL) {
        fprintf(stderr, "sluice: out of memory\n");
        return 1;
    }
    for (int i = 0; i < argc && rc == 0; i++) {
        int m = take_global(ctx, argc, argv, &i);
        if (m == 2)
            rc = 2;
        else if (m == 0)
            words[n++] = argv[i];
    }
    if (rc == 0) {
        struct sl_cli cli = {ctx, n, words};
        rc = c->fn(&cli);
    }
    free(words);
    return rc;
}

int sl_cli_main(int argc, char **argv)
{
    struct sl_ctx ctx = {0};
    ctx.log.level = SL_LOG_INFO;

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0)
            return cmd_version(NULL);
        int m = take_global(&ctx, argc, argv, &i);
        if (m == 2)
            return 2;
        if (m == 1)
            continue;
        fprintf(stderr, "sluice: unknown option '%s'\n%s", a, usage);
        return 2;
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            return run_command(&ctx, &commands[c], argc - i - 1, argv + i + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n%s", argv[i], usage);
    return 2;
}
