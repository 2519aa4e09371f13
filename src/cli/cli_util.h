/* Small pieces the CLI commands share: option values, calls to a local
 * REST API (the hub's admin API, the node's API) with the error lines a
 * user reads, JSON numbers, and aligned text tables. */
#ifndef SL_CLI_UTIL_H
#define SL_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/statedir.h"

/* "--name=value" or "--name value" at argv[*i]. Returns 1 with *val set
 * (and *i advanced past a separate value), 0 when argv[*i] is not this
 * option, -1 when the value is missing ("sluice: --name needs a value"
 * printed). */
int sl_cli_opt_value(int argc, char **argv, int *i, const char *name,
                     const char **val);

/* A string option stored at a byte offset of an options struct. */
struct sl_cli_str_opt {
    const char *name;
    size_t off; /* of a const char * member */
};

/* sl_cli_opt_value for each of opts[0..n): the first that matches has
 * its value stored at (char *)base + off. Returns 1 (taken), 0 (none of
 * them) or -1 (value missing, printed). */
int sl_cli_opt_strings(int argc, char **argv, int *i,
                       const struct sl_cli_str_opt *opts, size_t n,
                       void *base);

/* Where a command finds a running role's API and what it tells a user who
 * has none. */
struct sl_cli_api {
    char addr[160];              /* host:port, or https://host:port */
    char ca[SL_STATEDIR_PATH_MAX + 16]; /* CA of an https API, "" the
                                           system's */
    int own_ca;                  /* ca is the hub's local CA */
    const char *token;           /* bearer token, or NULL */
    const char *refused_hint;    /* printed when nothing listens */
    const char *forbidden_hint;  /* printed on a 401, or NULL */
};

/* Fills api->addr: flag if given, else the "api" of <role>.json in the
 * state directory (state_flag, see core/statedir.h) when its process is
 * alive, else fallback. An address off loopback is https:// (the API
 * speaks TLS there), trusting $SLUICE_API_CA or the state directory's
 * tls/ca.pem when present. */
void sl_cli_api_resolve(struct sl_cli_api *api, const char *flag,
                        const char *state_flag, const char *role,
                        const char *fallback);

/* One request (body may be NULL). Returns 0 with *out set (the caller
 * owns it; out may be NULL) when the answer's status is want, or any 2xx
 * when want is 0; else prints why on stderr and returns 1 (the exit
 * code). */
int sl_cli_api_call(const struct sl_cli_api *api, const char *method,
                    const char *path, json_t *body, int want, json_t **out);

/* The non-negative number at o.k1[.k2[.k3]] (k2, k3 may be NULL); 0 when
 * missing, negative or not a number. */
uint64_t sl_cli_json_u64(json_t *o, const char *k1, const char *k2,
                         const char *k3);

/* o[k] when it is a string, else "". */
const char *sl_cli_json_str(json_t *o, const char *k);

/* Formats the traffic (o.traffic.<side>.down/up, core/fmt.h's
 * sl_fmt_traffic) and the bandwidth (o.bandwidth.down/up, "↓ 1.2 MB/s ↑
 * 3 kB/s") cells of a list row; side is "user" (hub) or "gateway" (node).
 */
void sl_cli_fmt_usage(json_t *o, const char *side, char *traffic,
                      char *bandwidth, size_t cap);

/* Prints j as indented JSON and a newline. Returns 0, or 1 when it could
 * not be encoded. */
int sl_cli_print_json(json_t *j);

/* 1 when s can be an identity: 1-32 characters of [a-z0-9]. */
int sl_cli_is_identity(const char *s);

/* Prints nrows rows of ncols cells (cells: nrows * ncols strings of cell
 * bytes each, row after row), columns padded to their widest cell in
 * UTF-8 code points, two spaces apart. */
void sl_cli_table_print(const char *cells, size_t nrows, size_t ncols,
                        size_t cell);

#endif
