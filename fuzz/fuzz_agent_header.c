/* libFuzzer target for the agent port's stream header
 * (proto/agent_header.h). Any input: decoding never reads past n, a
 * prefix shorter than the header is always SL_EINCOMPLETE, a header that
 * decodes has a valid host and port, and encoding what was decoded gives
 * the same 272 bytes back (the codec has one spelling per header). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/agent_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_agent_hdr h;
    const char *why = NULL;
    /* A heap copy of exactly size bytes, so ASan sees reads past it. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    int rc = sl_agent_hdr_decode(copy, size, &h, &why);
    if (size < SL_AGENT_HDR_LEN) {
        if (rc != SL_EINCOMPLETE)
            abort();
    } else if (rc == 0) {
        uint8_t again[SL_AGENT_HDR_LEN];
        size_t hl = strlen(h.host);
        if (hl > SL_AGENT_HOST_MAX || (hl == 0) != (h.port == 0))
            abort();
        if (hl == 0 && !(h.flags & SL_AGENT_FLAG_PROBE))
            abort();
        if (sl_agent_hdr_encode(&h, again) != 0 ||
            memcmp(again, copy, SL_AGENT_HDR_LEN) != 0)
            abort();
    } else if (rc != SL_EPARSE || why == NULL || why[0] == '\0') {
        abort();
    }
    (void)sl_agent_status_name(size ? data[0] : 0);
    free(copy);
    return 0;
}
