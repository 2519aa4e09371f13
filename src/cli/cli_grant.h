/* What `sluice grant` shares with the other commands. */
#ifndef SL_CLI_GRANT_H
#define SL_CLI_GRANT_H

#include <stddef.h>

/* A grant given as TOKEN, or as @FILE holding it (white space around it
 * dropped), into out (cap bytes, NUL included). Returns 0, or non-zero
 * after saying why on stderr (flag names the option). */
int sl_cli_grant_arg(const char *flag, const char *arg, char *out,
                     size_t cap);

#endif
