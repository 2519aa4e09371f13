/* libFuzzer target for the WebSocket upgrade check. The input is split at
 * '\n' into Upgrade, Connection, Sec-WebSocket-Version and -Key values (a
 * missing part is an absent header). Invariants: the result is one of the
 * documented codes, and an accepted key yields a 28-character accept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tunnel/ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *part[4] = {NULL, NULL, NULL, NULL};
    size_t plen[4] = {0, 0, 0, 0};
    const char *p = (const char *)data;
    size_t left = size;
    for (size_t i = 0; i < 4 && (left > 0 || i == 0); i++) {
        const char *nl = memchr(p, '\n', left);
        size_t n = nl != NULL ? (size_t)(nl - p) : left;
        part[i] = p;
        plen[i] = n;
        if (nl == NULL)
            break;
        p = nl + 1;
        left -= n + 1;
    }
    struct sl_ws_upgrade h = {part[0], plen[0], part[1], plen[1],
                              part[2], plen[2], part[3], plen[3]};
    const char *why = NULL;
    int rc = sl_ws_check_upgrade(&h, &why);
    if (why == NULL)
        abort();
    if (rc == 0) {
        char accept[SL_WS_ACCEPT_LEN + 1];
        /* The checked key may carry spaces around it; trim like a caller
         * would before computing the answer. */
        const char *k = h.key;
        size_t kl = h.key_len;
        while (kl > 0 && (*k == ' ' || *k == '\t')) {
            k++;
            kl--;
        }
        while (kl > 0 && (k[kl - 1] == ' ' || k[kl - 1] == '\t'))
            kl--;
        if (kl != SL_WS_KEY_LEN || sl_ws_accept(k, kl, accept) != 0 ||
            strlen(accept) != SL_WS_ACCEPT_LEN)
            abort();
    } else if (rc != SL_EPARSE && rc != SL_EDENIED && rc != SL_ENOTFOUND) {
        abort();
    }
    return 0;
}
