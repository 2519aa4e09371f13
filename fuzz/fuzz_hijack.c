/* libFuzzer target for the Sluice-Hijack header parser. Invariant: what
 * parses formats back to a value that parses to the same thing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tunnel/hijack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_hijack h, back;
    char out[SL_HIJACK_MAX];
    int rc = sl_hijack_parse((const char *)data, size, &h);
    if (rc != 0) {
        if (rc != SL_EPARSE || h.identity[0] != '\0')
            abort();
        return 0;
    }
    if (sl_hijack_format(&h, out, sizeof(out)) != 0 ||
        sl_hijack_parse(out, strlen(out), &back) != 0 ||
        memcmp(&h, &back, sizeof(h)) != 0)
        abort();
    return 0;
}
