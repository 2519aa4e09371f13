#include "proto/agent_header.h"

#include <string.h>

#include "core/error.h"

/* Offsets of the fields (docs/protocol.md, "The agent port"). */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_FLAGS 5
#define OFF_PROTO 6
#define OFF_RESERVED 7
#define OFF_HOST_LEN 8
#define OFF_PORT 10
#define OFF_HOST 12
#define HOST_FIELD 256 /* the host, then zeros: always one at least */
#define OFF_CRC (OFF_HOST + HOST_FIELD)

_Static_assert(OFF_CRC + 4 == SL_AGENT_HDR_LEN, "header layout");

static const uint8_t magic[4] = {'S', 'L', 'S', 'T'};

uint32_t sl_agent_crc32c(const uint8_t *p, size_t n)
{
    /* Bit by bit: a header is 268 bytes, read once per stream, and a
     * table would be state or 1 KiB of constants for no measurable gain. */
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xffffffffu;
}

static int host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
           c == ':';
}

static int host_ok(const uint8_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!host_char(h[i]))
            return 0;
    return 1;
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

int sl_agent_hdr_encode(const struct sl_agent_hdr *h,
                        uint8_t out[SL_AGENT_HDR_LEN])
{
    size_t hl = strnlen(h->host, sizeof(h->host));
    int probe = (h->flags & SL_AGENT_FLAG_PROBE) != 0;
    if ((h->flags & ~SL_AGENT_FLAG_PROBE) != 0 ||
        (h->proto != SL_AGENT_PROTO_TCP && h->proto != SL_AGENT_PROTO_UDP) ||
        hl > SL_AGENT_HOST_MAX || !host_ok((const uint8_t *)h->host, hl) ||
        (hl == 0 && !(probe && h->port == 0)) || (hl > 0 && h->port == 0))
        return SL_EPARSE;
    memset(out, 0, SL_AGENT_HDR_LEN);
    memcpy(out + OFF_MAGIC, magic, sizeof(magic));
    out[OFF_VERSION] = SL_AGENT_HDR_VERSION;
    out[OFF_FLAGS] = (uint8_t)h->flags;
    out[OFF_PROTO] = (uint8_t)h->proto;
    put16(out + OFF_HOST_LEN, (unsigned)hl);
    put16(out + OFF_PORT, h->port);
    memcpy(out + OFF_HOST, h->host, hl);
    uint32_t crc = sl_agent_crc32c(out, OFF_CRC);
    out[OFF_CRC] = (uint8_t)(crc >> 24);
    out[OFF_CRC + 1] = (uint8_t)(crc >> 16);
    out[OFF_CRC + 2] = (uint8_t)(crc >> 8);
    out[OFF_CRC + 3] = (uint8_t)crc;
    return 0;
}

static int bad(const char **why, const char *what)
{
    if (why != NULL)
        *why = what;
    return SL_EPARSE;
}

int sl_agent_hdr_decode(const uint8_t *p, size_t n, struct sl_agent_hdr *out,
                        const char **why)
{
    if (why != NULL)
        *why = "";
    if (n < SL_AGENT_HDR_LEN)
        return SL_EINCOMPLETE;
    /* Magic and version first: they say whether the rest is ours to
     * judge at all, and a newer client is told apart from garbage. */
    if (memcmp(p + OFF_MAGIC, magic, sizeof(magic)) != 0)
        return bad(why, "not a sluice-stream header (magic)");
    if (p[OFF_VERSION] != SL_AGENT_HDR_VERSION)
        return bad(why, "unsupported version");
    uint32_t want = (uint32_t)p[OFF_CRC] << 24 |
                    (uint32_t)p[OFF_CRC + 1] << 16 |
                    (uint32_t)p[OFF_CRC + 2] << 8 | p[OFF_CRC + 3];
    if (sl_agent_crc32c(p, OFF_CRC) != want)
        return bad(why, "checksum mismatch");
    unsigned flags = p[OFF_FLAGS];
    unsigned proto = p[OFF_PROTO];
    unsigned hl = get16(p + OFF_HOST_LEN);
    unsigned port = get16(p + OFF_PORT);
    int probe = (flags & SL_AGENT_FLAG_PROBE) != 0;
    if ((flags & ~SL_AGENT_FLAG_PROBE) != 0)
        return bad(why, "unknown flag");
    if (proto != SL_AGENT_PROTO_TCP && proto != SL_AGENT_PROTO_UDP)
        return bad(why, "unknown protocol");
    if (p[OFF_RESERVED] != 0)
        return bad(why, "reserved byte not zero");
    if (hl > SL_AGENT_HOST_MAX)
        return bad(why, "host length over 255");
    if (!host_ok(p + OFF_HOST, hl))
        return bad(why, "host holds a character not allowed");
    for (size_t i = OFF_HOST + hl; i < OFF_CRC; i++)
        if (p[i] != 0)
            return bad(why, "host padding not zero");
    if (hl == 0 && !probe)
        return bad(why, "no host");
    if (hl == 0 && port != 0)
        return bad(why, "a port without a host");
    if (hl > 0 && port == 0)
        return bad(why, "port 0");
    if (out != NULL) {
        out->flags = flags;
        out->proto = (enum sl_agent_proto)proto;
        memcpy(out->host, p + OFF_HOST, hl);
        out->host[hl] = '\0';
        out->port = (uint16_t)port;
    }
    return 0;
}

const char *sl_agent_status_name(int status)
{
    switch (status) {
    case SL_AGENT_OK: return "ok";
    case SL_AGENT_REFUSED: return "refused";
    case SL_AGENT_DIAL_FAILED: return "dial failed";
    case SL_AGENT_TIMEOUT: return "timeout";
    case SL_AGENT_BAD_HEADER: return "bad header";
    case SL_AGENT_BUSY: return "busy";
    default: return "unknown status";
    }
}
