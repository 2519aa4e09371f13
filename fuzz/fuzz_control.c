/* libFuzzer target for control messages. Invariant: a message that parses
 * (known type) encodes, and the encoding parses to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/error.h"
#include "tunnel/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_ctl_msg m, back;
    char *json = NULL;
    size_t len = 0;
    int rc = sl_ctl_parse((const char *)data, size, &m);
    if (rc != 0 || m.type == SL_CTL_UNKNOWN)
        return 0;
    rc = sl_ctl_encode(&m, &json, &len);
    if (rc == UV_ENOMEM)
        return 0;
    /* Byte counts above INT64_MAX cannot come out of jansson, so every
     * parsed message must encode and read back unchanged. */
    if (rc != 0 || sl_ctl_parse(json, len, &back) != 0 ||
        memcmp(&m, &back, sizeof(m)) != 0)
        abort();
    free(json);
    return 0;
}
