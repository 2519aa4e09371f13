/* libFuzzer target for the configuration loader. The input is a whole YAML
 * file. Beyond "no crash, no leak", it checks the loader's promises: a
 * loaded config is valid (every route has a name, a bind address, a host
 * and a target port) and an error is exactly one non-empty line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SL_CONFIG_ERR_MAX];
    char line[SL_CONFIG_ERR_MAX];
    struct sl_config *cfg = NULL;
    int rc;

    rc = sl_config_load_string((const char *)data, size, &cfg, err,
                               sizeof(err));
    if (rc != 0) {
        if (cfg != NULL || err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    if (cfg == NULL)
        abort();
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route_config *r = &cfg->routes[i];
        if (r->name == NULL || r->bind == NULL || r->host == NULL ||
            r->target_port == 0 || r->connect_timeout_ms == 0 ||
            (r->scheme == SL_SCHEME_UDP && r->proxy_protocol != SL_PP_DISABLED))
            abort();
        sl_config_route_describe(r, line, sizeof(line));
        if (strchr(line, '\n') != NULL)
            abort();
    }
    sl_config_free(cfg);
    return 0;
}
