/* The datagram carrier's message format (tunnel/dgram.h). */
#include "tunnel/dgram.h"

#include <string.h>

#include "core/error.h"

void sl_dgram_header(uint8_t out[SL_DGRAM_HEADER], enum sl_dgram_type type,
                     uint32_t flow)
{
    out[0] = (uint8_t)type;
    out[1] = (uint8_t)(flow >> 24);
    out[2] = (uint8_t)(flow >> 16);
    out[3] = (uint8_t)(flow >> 8);
    out[4] = (uint8_t)flow;
}

int sl_dgram_encode(uint8_t *out, size_t cap, enum sl_dgram_type type,
                    uint32_t flow, const void *payload, size_t len)
{
    if (type != SL_DGRAM_DATA && type != SL_DGRAM_CLOSE)
        return SL_EPARSE;
    if (type == SL_DGRAM_CLOSE && len != 0)
        return SL_EPARSE;
    if (len > SL_DGRAM_MAX || cap < SL_DGRAM_HEADER + len)
        return SL_ETOOBIG;
    sl_dgram_header(out, type, flow);
    if (len > 0)
        memcpy(out + SL_DGRAM_HEADER, payload, len);
    return (int)(SL_DGRAM_HEADER + len);
}

int sl_dgram_decode(const uint8_t *msg, size_t len, struct sl_dgram *out)
{
    memset(out, 0, sizeof(*out));
    if (len < SL_DGRAM_HEADER)
        return SL_EPARSE;
    size_t plen = len - SL_DGRAM_HEADER;
    if (msg[0] == SL_DGRAM_CLOSE) {
        if (plen != 0)
            return SL_EPARSE;
    } else if (msg[0] != SL_DGRAM_DATA) {
        return SL_EPARSE;
    } else if (plen > SL_DGRAM_MAX) {
        return SL_ETOOBIG;
    }
    out->type = (enum sl_dgram_type)msg[0];
    out->flow = (uint32_t)msg[1] << 24 | (uint32_t)msg[2] << 16 |
                (uint32_t)msg[3] << 8 | (uint32_t)msg[4];
    out->payload = msg + SL_DGRAM_HEADER;
    out->len = plen;
    return 0;
}
