/* UDP datagrams through a bridge (docs/protocol.md, "UDP"): a udp://
 * bridge has one datagram carrier, a framed data connection; each
 * datagram of each flow travels as one WebSocket binary message:
 *
 *   u8 type | u32 flow (big endian) | payload
 *
 * type SL_DGRAM_DATA carries a datagram of at most SL_DGRAM_MAX bytes
 * (an empty one is a datagram too); type SL_DGRAM_CLOSE says the sender
 * forgot the flow (idle, or its socket failed) and carries no payload.
 * A flow id names one user address on the hub; the hub never gives it to
 * another user while the carrier lives.
 *
 * Pure: no I/O, no allocation. */
#ifndef SL_TUNNEL_DGRAM_H
#define SL_TUNNEL_DGRAM_H

#include <stddef.h>
#include <stdint.h>

#define SL_DGRAM_HEADER 5
#define SL_DGRAM_MAX 65507 /* the largest IPv4 UDP payload */

enum sl_dgram_type {
    SL_DGRAM_DATA = 0,
    SL_DGRAM_CLOSE = 1,
};

struct sl_dgram {
    enum sl_dgram_type type;
    uint32_t flow;
    const uint8_t *payload; /* points into the decoded message */
    size_t len;
};

/* Writes the header of a message into out. */
void sl_dgram_header(uint8_t out[SL_DGRAM_HEADER], enum sl_dgram_type type,
                     uint32_t flow);

/* Writes a whole message (header, then len bytes of payload) into out of
 * cap bytes. payload may be NULL when len is 0. Returns the message's
 * length, or SL_ETOOBIG (payload over SL_DGRAM_MAX, or cap too small),
 * SL_EPARSE (a close with a payload, or an unknown type). */
int sl_dgram_encode(uint8_t *out, size_t cap, enum sl_dgram_type type,
                    uint32_t flow, const void *payload, size_t len);

/* Reads one message of len bytes. Returns 0 with out filled, SL_EPARSE
 * (shorter than a header, an unknown type, a close with a payload) or
 * SL_ETOOBIG (payload over SL_DGRAM_MAX); out is zeroed on failure. */
int sl_dgram_decode(const uint8_t *msg, size_t len, struct sl_dgram *out);

#endif
