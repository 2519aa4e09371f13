/* The hub: and node: sections of `boot up --config FILE` merged under the
 * command line (issue 14): each setting is offered to its role as the
 * flag it stands for ("max-pairs: 64" as --max-pairs=64), through the
 * role's own parse function, so a value means in the file what it means
 * as a flag. A flag given on the command line wins: the file's setting
 * for it (and for the options that set the same thing) stands back. */
#ifndef SL_CLI_BOOT_CONFIG_H
#define SL_CLI_BOOT_CONFIG_H

#include <stddef.h>

#include "cli/cli_boot_role.h"
#include "config/config.h"

struct sl_boot_file_args {
    const char **given; /* options named on the command line (argv's) */
    size_t ngiven, given_cap;
    char **words; /* the "--flag=value" words made from the file, owned:
                     roles keep pointers into them while they run */
    size_t nwords, words_cap;
};

/* Records that option arg ("--http" or "--http=ADDR") was given on the
 * command line. Returns 0 or UV_ENOMEM. */
int sl_boot_note_given(struct sl_boot_file_args *fa, const char *arg);

/* Offers the settings of section sec ("hub" or "node") of the file at path
 * to role (its state st). Returns 0, or the exit code with the message
 * printed (naming the file, the section and the key). */
int sl_boot_apply_section(struct sl_boot_file_args *fa, const char *path,
                          const char *section,
                          const struct sl_config_section *sec,
                          const struct sl_boot_role *role, void *st,
                          const struct sl_boot_common *c);

/* The state directory the file's sections name for the roles run (hub
 * and/or node), in *out (NULL: none). Returns 0, or 2 when they name
 * two different ones (printed). */
int sl_boot_file_state_dir(const struct sl_config *cfg, const char *path,
                           int hub, int node, const char **out);

void sl_boot_file_args_free(struct sl_boot_file_args *fa);

#endif
