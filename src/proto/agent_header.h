/* The request header of the node agent's stream protocol: what a client
 * sends first on a TLS connection that negotiated ALPN "sluice-stream/1",
 * and in the first record of a DTLS session, to name the target the agent
 * dials; and the one-byte status the agent answers before any payload.
 * docs/protocol.md ("The agent port") has the layout byte by byte.
 *
 * The header has a fixed size, so a reader knows how much to wait for
 * without parsing, and a CRC-32C over everything before it, so a stream
 * that is not ours (or a corrupted one) is told from a bad target.
 *
 * Pure: takes bytes, returns results; no I/O, no allocation. */
#ifndef SL_PROTO_AGENT_HEADER_H
#define SL_PROTO_AGENT_HEADER_H

#include <stddef.h>
#include <stdint.h>

#define SL_AGENT_HDR_LEN 272      /* every header, whatever its host */
#define SL_AGENT_HDR_VERSION 1
#define SL_AGENT_HOST_MAX 255     /* bytes of host, without a NUL */
#define SL_AGENT_ALPN_STREAM "sluice-stream/1"
#define SL_AGENT_ALPN_HTTP "http/1.1"

/* Flag bits (byte 5). Any other bit set is a bad header. */
#define SL_AGENT_FLAG_PROBE 0x01u /* answer and close: a health check */

enum sl_agent_proto {
    SL_AGENT_PROTO_TCP = 1,
    SL_AGENT_PROTO_UDP = 2,
};

/* The answer, one byte, sent once before any payload. */
enum sl_agent_status {
    SL_AGENT_OK = 0,          /* dialled (or, for a probe, alive): relay */
    SL_AGENT_REFUSED = 1,     /* the target is not allowed by policy */
    SL_AGENT_DIAL_FAILED = 2, /* cannot resolve or connect */
    SL_AGENT_TIMEOUT = 3,     /* the dial (or the header) took too long */
    SL_AGENT_BAD_HEADER = 4,  /* not a valid header */
    SL_AGENT_BUSY = 5,        /* a cap on streams or sessions is reached */
};

struct sl_agent_hdr {
    unsigned flags;             /* SL_AGENT_FLAG_* */
    enum sl_agent_proto proto;
    /* The target: a DNS name or an IP literal (IPv6 without brackets),
     * NUL-terminated. "" (with port 0) only in a probe that names no
     * target. */
    char host[SL_AGENT_HOST_MAX + 1];
    uint16_t port;
};

/* Writes the header for h into out. Returns 0, or SL_EPARSE when h could
 * not be decoded again (a host too long or of other characters than
 * letters, digits and ".-_:", port 0 with a host, a host missing outside
 * a probe, an unknown flag or protocol). */
int sl_agent_hdr_encode(const struct sl_agent_hdr *h,
                        uint8_t out[SL_AGENT_HDR_LEN]);

/* Reads a header from the n bytes at p. Returns 0 and fills *out (may be
 * NULL); SL_EINCOMPLETE when n < SL_AGENT_HDR_LEN (nothing judged yet);
 * SL_EPARSE for anything else that is not a valid header, with *why (may
 * be NULL) pointed at a static phrase ("checksum mismatch", "host length
 * over 255", ...). Bytes past the header are not looked at. */
int sl_agent_hdr_decode(const uint8_t *p, size_t n, struct sl_agent_hdr *out,
                        const char **why);

/* CRC-32C (Castagnoli, reflected, init and final xor 0xffffffff), as
 * iSCSI and ext4 use it: "123456789" gives 0xe3069283. */
uint32_t sl_agent_crc32c(const uint8_t *p, size_t n);

/* "ok", "refused", "dial failed", "timeout", "bad header", "busy", or
 * "unknown status" for another value. */
const char *sl_agent_status_name(int status);

#endif
