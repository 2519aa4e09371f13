/* libFuzzer target for the datagram carrier's messages. Invariant: what
 * decodes encodes back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tunnel/dgram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[SL_DGRAM_HEADER + SL_DGRAM_MAX];
    struct sl_dgram d;
    int rc = sl_dgram_decode(data, size, &d);
    if (rc != 0) {
        if ((rc != SL_EPARSE && rc != SL_ETOOBIG) || d.payload != NULL)
            abort();
        return 0;
    }
    if (d.len + SL_DGRAM_HEADER != size || d.payload != data + 5)
        abort();
    int n = sl_dgram_encode(out, sizeof(out), d.type, d.flow, d.payload, d.len);
    if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
        abort();
    return 0;
}
