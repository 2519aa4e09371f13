#include "cli/cli_boot_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

/* Options that set the same thing: a flag given for one of them makes
 * the file's settings of all of them stand back (--gateway-token-file
 * would otherwise replace a --gateway-token given as a flag; one ACL or
 * one certificate list comes from one place). */
static const char *const groups[][4] = {
    {"--token", "--gateway-token", "--gateway-token-file", NULL},
    {"--api-token", "--api-token-file", NULL, NULL},
    {"--tls-cert", "--tls-key", NULL, NULL},
    {"--allow", "--deny", NULL, NULL},
};

int sl_boot_note_given(struct sl_boot_file_args *fa, const char *arg)
{
    if (fa->ngiven == fa->given_cap) {
        size_t cap = fa->given_cap ? fa->given_cap * 2 : 16;
        const char **g = realloc(fa->given, cap * sizeof(*g));
        if (g == NULL)
            return UV_ENOMEM;
        fa->given = g;
        fa->given_cap = cap;
    }
    fa->given[fa->ngiven++] = arg;
    return 0;
}

/* 1 when the command line named flag ("--http" matches "--http" and
 * "--http=..."). */
static int named(const struct sl_boot_file_args *fa, const char *flag)
{
    size_t n = strlen(flag);
    for (size_t i = 0; i < fa->ngiven; i++)
        if (strncmp(fa->given[i], flag, n) == 0 &&
            (fa->given[i][n] == '\0' || fa->given[i][n] == '='))
            return 1;
    return 0;
}

/* 1 when the command line set what flag sets. */
static int given(const struct sl_boot_file_args *fa, const char *flag,
                 const struct sl_boot_common *c)
{
    if (named(fa, flag))
        return 1;
    /* Without the hub, --api on the command line is the node's API. */
    if (strcmp(flag, "--node-api") == 0 && !c->proxy && named(fa, "--api"))
        return 1;
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        int in = 0, any = 0;
        for (size_t k = 0; k < 4 && groups[g][k] != NULL; k++) {
            in |= strcmp(groups[g][k], flag) == 0;
            any |= named(fa, groups[g][k]);
        }
        if (in && any)
            return 1;
    }
    return 0;
}

/* Makes the word "--flag" or "--flag=value" (kept in fa). NULL: no
 * memory. */
static char *make_word(struct sl_boot_file_args *fa, const char *flag,
                       const char *value)
{
    if (fa->nwords == fa->words_cap) {
        size_t cap = fa->words_cap ? fa->words_cap * 2 : 16;
        char **w = realloc(fa->words, cap * sizeof(*w));
        if (w == NULL)
            return NULL;
        fa->words = w;
        fa->words_cap = cap;
    }
    size_t len = strlen(flag) + (value ? strlen(value) + 1 : 0) + 1;
    char *word = malloc(len);
    if (word == NULL)
        return NULL;
    snprintf(word, len, "%s%s%s", flag, value ? "=" : "", value ? value : "");
    fa->words[fa->nwords++] = word;
    return word;
}

static int offer(struct sl_boot_file_args *fa, const char *path,
                 const char *section, const struct sl_config_setting *st,
                 const struct sl_boot_role *role, void *rst,
                 const struct sl_boot_common *c, const char *value)
{
    char *word = make_word(fa, st->flag, value);
    if (word == NULL) {
        fprintf(stderr, "sluice: out of memory\n");
        return 1;
    }
    char *argv[2] = {word, NULL};
    int i = 0;
    int rc = role->parse != NULL ? role->parse(rst, c, 1, argv, &i) : 0;
    if (rc == 1)
        return 0;
    if (rc == 0)
        fprintf(stderr, "sluice: %s: %s: unknown field \"%s\" (line %u): "
                "boot up %s has no option %s (see sluice boot up %s "
                "--help)\n", path, section, st->key, st->line, role->flag,
                st->flag, role->flag);
    else
        fprintf(stderr, "sluice: %s: %s: field \"%s\" (line %u): refused "
                "as the line above says\n", path, section, st->key,
                st->line);
    return 2;
}

int sl_boot_apply_section(struct sl_boot_file_args *fa, const char *path,
                          const char *section,
                          const struct sl_config_section *sec,
                          const struct sl_boot_role *role, void *st,
                          const struct sl_boot_common *c)
{
    for (size_t i = 0; i < sec->nsettings; i++) {
        const struct sl_config_setting *s = &sec->settings[i];
        int rc = 0;
        /* cli_boot.c takes the state directory itself. */
        if (strcmp(s->flag, "--state-dir") == 0 || given(fa, s->flag, c))
            continue;
        switch (s->kind) {
        case SL_CONFIG_SWITCH:
            if (strcmp(s->values[0], "on") == 0)
                rc = offer(fa, path, section, s, role, st, c, NULL);
            break;
        case SL_CONFIG_VALUE:
        case SL_CONFIG_ONOFF:
        case SL_CONFIG_LIST:
            for (size_t k = 0; k < s->nvalues && rc == 0; k++)
                rc = offer(fa, path, section, s, role, st, c, s->values[k]);
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sl_boot_file_state_dir(const struct sl_config *cfg, const char *path,
                           int hub, int node, const char **out)
{
    const struct sl_config_setting *h =
        hub ? sl_config_setting_find(&cfg->hub, "--state-dir") : NULL;
    const struct sl_config_setting *n =
        node ? sl_config_setting_find(&cfg->node, "--state-dir") : NULL;
    *out = NULL;
    if (h != NULL && n != NULL && strcmp(h->values[0], n->values[0]) != 0) {
        fprintf(stderr, "sluice: %s: hub: and node: name two state "
                "directories (lines %u and %u); one process keeps one\n",
                path, h->line, n->line);
        return 2;
    }
    if (h != NULL || n != NULL)
        *out = (h != NULL ? h : n)->values[0];
    return 0;
}

void sl_boot_file_args_free(struct sl_boot_file_args *fa)
{
    for (size_t i = 0; i < fa->nwords; i++)
        free(fa->words[i]);
    free(fa->words);
    free(fa->given);
    memset(fa, 0, sizeof(*fa));
}
