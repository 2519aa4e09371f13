/* libFuzzer target for the Host router. The first byte picks the domain;
 * the rest is the Host value. Invariant: a routed identity is valid and
 * the Host really ends with ".<domain>" (port and dot aside). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "tunnel/host_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const domains[] = {"localhost", "example.com",
                                          "Tunnel.Example.COM.", "a"};
    char id[SL_IDENTITY_LEN + 1];
    if (size < 1)
        return 0;
    const char *domain = domains[data[0] % 4];
    int rc = sl_host_route((const char *)data + 1, size - 1, domain, id);
    switch (rc) {
    case 0:
        if (!sl_identity_valid(id, strlen(id)))
            abort();
        break;
    case SL_ENOTFOUND:
    case SL_EPARSE:
        if (id[0] != '\0')
            abort();
        break;
    default:
        abort();
    }
    return 0;
}
