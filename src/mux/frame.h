/* Frames of a multiplexed data connection (protocol v2, docs/protocol.md
 * "Multiplexed data connections"): many byte streams on one connection.
 *
 * Every frame is a 12-byte header in network order, then `length` bytes:
 *
 *   u8 version (2) | u8 type | u16 flags | u32 stream | u32 length
 *
 * Payloads per type (stream 0 is the connection itself):
 *   OPEN    stream != 0: u8 kind | u8 target_len | target | first bytes
 *   DATA    stream != 0: bytes
 *   FIN     stream != 0: empty; the sender sends no more on the stream
 *   RST     stream != 0: u32 code | reason text
 *   CREDIT  any stream:  u64 cumulative offset the sender may now send up
 *                        to (stream 0: the connection's total)
 *   PING    stream 0:    8 opaque bytes, answered by a PONG with them
 *   PONG    stream 0:    the PING's 8 bytes
 *   GOAWAY  stream 0:    u32 last stream | u32 code | reason text
 *   DGRAM   stream = a flow: one datagram
 *
 * Frames of an unknown type are skipped (they still obey the length
 * bound); flags no type defines are ignored. A header of another version,
 * a payload over SL_MUX_FRAME_MAX or a payload that does not fit its type
 * is malformed.
 *
 * Pure: no I/O, no allocation; decoded payloads point into the input. */
#ifndef SL_MUX_FRAME_H
#define SL_MUX_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SL_MUX_HEADER 12
#define SL_MUX_VERSION 2
#define SL_MUX_FRAME_MAX (64 * 1024) /* payload bytes a receiver takes */
#define SL_MUX_DATA_MAX (16 * 1024)  /* payload bytes a sender puts in DATA
                                        while other streams wait */
#define SL_MUX_DATA_ALONE SL_MUX_FRAME_MAX /* ... and with none waiting */
#define SL_MUX_REASON_MAX 256        /* bytes of RST and GOAWAY reasons */
#define SL_MUX_TARGET_MAX 255

enum sl_mux_type {
    SL_MUX_OPEN = 1,
    SL_MUX_DATA = 2,
    SL_MUX_FIN = 3,
    SL_MUX_RST = 4,
    SL_MUX_CREDIT = 5,
    SL_MUX_PING = 6,
    SL_MUX_PONG = 7,
    SL_MUX_GOAWAY = 8,
    SL_MUX_DGRAM = 9,
};

/* What a stream carries (OPEN's kind). */
enum sl_mux_kind {
    SL_MUX_KIND_HTTP = 1, /* bytes to the bridge's upstream, HTTP users */
    SL_MUX_KIND_TCP = 2,  /* bytes to the upstream, a stream port's user */
};

/* RST codes: why one stream ends. */
enum sl_mux_rst {
    SL_MUX_RST_CLOSED = 0,   /* the sender closed it (no error) */
    SL_MUX_RST_PROTOCOL = 1, /* a frame that broke the rules */
    SL_MUX_RST_FLOW = 2,     /* data past credit */
    SL_MUX_RST_REFUSED = 3,  /* not accepted (kind, going away, a cap) */
    SL_MUX_RST_RESET = 4,    /* the endpoint behind it reset or failed */
    SL_MUX_RST_INTERNAL = 5, /* out of memory or the like */
};

/* GOAWAY codes: why a connection ends. */
enum sl_mux_goaway {
    SL_MUX_GO_NORMAL = 0,    /* shutting down: no new streams */
    SL_MUX_GO_PROTOCOL = 1,  /* a malformed frame */
    SL_MUX_GO_FLOW = 2,      /* data past credit */
    SL_MUX_GO_TOO_BIG = 3,   /* a frame over SL_MUX_FRAME_MAX */
    SL_MUX_GO_UNKNOWN = 4,   /* a frame for a stream never opened */
    SL_MUX_GO_REUSED = 5,    /* OPEN with an id already used */
    SL_MUX_GO_INTERNAL = 6,  /* out of memory or the like */
    SL_MUX_GO_TIMEOUT = 7,   /* nothing heard for too long */
};

struct sl_mux_frame {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t stream;
    uint32_t length;
    const uint8_t *payload; /* length bytes, in the parsed input */
};

/* A decoded payload (sl_mux_payload). Only the fields of the frame's type
 * are set; pointers point into the frame's payload. */
struct sl_mux_body {
    /* OPEN */
    uint8_t kind;
    const uint8_t *target;
    size_t target_len;
    /* OPEN (first bytes), DATA, DGRAM */
    const uint8_t *data;
    size_t data_len;
    /* RST, GOAWAY */
    uint32_t code;
    uint32_t last_stream;
    const uint8_t *reason;
    size_t reason_len;
    /* CREDIT */
    uint64_t offset;
    /* PING, PONG */
    uint64_t opaque;
};

/* Writes a header. */
void sl_mux_header(uint8_t out[SL_MUX_HEADER], enum sl_mux_type type,
                   uint16_t flags, uint32_t stream, uint32_t length);

/* Reads one whole frame at the start of buf[0..len). Returns the bytes it
 * takes (header plus payload) with f filled, SL_EINCOMPLETE when buf holds
 * less than a whole frame (f->length is then known once 12 bytes are
 * there), SL_EPARSE for another version, SL_ETOOBIG for a payload over
 * SL_MUX_FRAME_MAX. The payload itself is not checked: sl_mux_payload. */
int sl_mux_parse(const uint8_t *buf, size_t len, struct sl_mux_frame *f);

/* Checks a whole frame against its type's rules (stream 0 or not, payload
 * sizes, reason lengths) and decodes its payload into b. Returns 0, or
 * SL_EPARSE with *why a static phrase for the log. A frame of an unknown
 * type is valid (it is skipped). */
int sl_mux_payload(const struct sl_mux_frame *f, struct sl_mux_body *b,
                   const char **why);

/* Encoders of whole frames into out (cap bytes). They return the frame's
 * length, or SL_ETOOBIG when it does not fit (or a reason or target is
 * over its bound: it is not cut). */
int sl_mux_encode_credit(uint8_t *out, size_t cap, uint32_t stream,
                         uint64_t offset);
int sl_mux_encode_ping(uint8_t *out, size_t cap, enum sl_mux_type type,
                       uint64_t opaque); /* type PING or PONG */
int sl_mux_encode_fin(uint8_t *out, size_t cap, uint32_t stream);
int sl_mux_encode_rst(uint8_t *out, size_t cap, uint32_t stream,
                      uint32_t code, const char *reason);
int sl_mux_encode_goaway(uint8_t *out, size_t cap, uint32_t last_stream,
                         uint32_t code, const char *reason);
/* The header and the fixed part of an OPEN whose first data_len bytes
 * the caller sends right after (they are not copied). */
int sl_mux_encode_open(uint8_t *out, size_t cap, uint32_t stream,
                       uint8_t kind, const char *target, size_t data_len);

/* "OPEN", "DATA", ...; "?" for a type this version does not know. */
const char *sl_mux_type_name(uint8_t type);
/* A phrase for an RST or GOAWAY code ("closed", "protocol error", ...). */
const char *sl_mux_rst_name(uint32_t code);
const char *sl_mux_goaway_name(uint32_t code);

#endif
