/* The multiplexed connection's frames (mux/frame.h). */
#include "mux/frame.h"

#include <string.h>

#include "core/error.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

void sl_mux_header(uint8_t out[SL_MUX_HEADER], enum sl_mux_type type,
                   uint16_t flags, uint32_t stream, uint32_t length)
{
    out[0] = SL_MUX_VERSION;
    out[1] = (uint8_t)type;
    put16(out + 2, flags);
    put32(out + 4, stream);
    put32(out + 8, length);
}

int sl_mux_parse(const uint8_t *buf, size_t len, struct sl_mux_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (len < SL_MUX_HEADER) {
        /* The version is known from the first byte: a peer that speaks
         * something else is told so without waiting for more. */
        if (len > 0 && buf[0] != SL_MUX_VERSION)
            return SL_EPARSE;
        return SL_EINCOMPLETE;
    }
    f->version = buf[0];
    f->type = buf[1];
    f->flags = get16(buf + 2);
    f->stream = get32(buf + 4);
    f->length = get32(buf + 8);
    if (f->version != SL_MUX_VERSION)
        return SL_EPARSE;
    if (f->length > SL_MUX_FRAME_MAX)
        return SL_ETOOBIG;
    if (len - SL_MUX_HEADER < f->length)
        return SL_EINCOMPLETE;
    f->payload = buf + SL_MUX_HEADER;
    return (int)(SL_MUX_HEADER + f->length);
}

static int bad(const char **why, const char *what)
{
    if (why != NULL)
        *why = what;
    return SL_EPARSE;
}

int sl_mux_payload(const struct sl_mux_frame *f, struct sl_mux_body *b,
                   const char **why)
{
    const uint8_t *p = f->payload;
    size_t n = f->length;
    memset(b, 0, sizeof(*b));
    if (why != NULL)
        *why = "";
    switch (f->type) {
    case SL_MUX_OPEN:
    case SL_MUX_DATA:
    case SL_MUX_FIN:
    case SL_MUX_RST:
        if (f->stream == 0)
            return bad(why, "stream frame on stream 0");
        break;
    case SL_MUX_PING:
    case SL_MUX_PONG:
    case SL_MUX_GOAWAY:
        if (f->stream != 0)
            return bad(why, "connection frame on a stream");
        break;
    default:
        break;
    }
    switch (f->type) {
    case SL_MUX_OPEN:
        if (n < 2)
            return bad(why, "OPEN shorter than its kind and target");
        b->kind = p[0];
        b->target_len = p[1];
        if (n - 2 < b->target_len)
            return bad(why, "OPEN target past the frame");
        b->target = p + 2;
        b->data = p + 2 + b->target_len;
        b->data_len = n - 2 - b->target_len;
        return 0;
    case SL_MUX_DATA:
    case SL_MUX_DGRAM:
        b->data = p;
        b->data_len = n;
        return 0;
    case SL_MUX_FIN:
        return n == 0 ? 0 : bad(why, "FIN with a payload");
    case SL_MUX_RST:
        if (n < 4 || n - 4 > SL_MUX_REASON_MAX)
            return bad(why, "RST of a bad length");
        b->code = get32(p);
        b->reason = p + 4;
        b->reason_len = n - 4;
        return 0;
    case SL_MUX_CREDIT:
        if (n != 8)
            return bad(why, "CREDIT of a bad length");
        b->offset = get64(p);
        return 0;
    case SL_MUX_PING:
    case SL_MUX_PONG:
        if (n != 8)
            return bad(why, "PING of a bad length");
        b->opaque = get64(p);
        return 0;
    case SL_MUX_GOAWAY:
        if (n < 8 || n - 8 > SL_MUX_REASON_MAX)
            return bad(why, "GOAWAY of a bad length");
        b->last_stream = get32(p);
        b->code = get32(p + 4);
        b->reason = p + 8;
        b->reason_len = n - 8;
        return 0;
    default:
        return 0; /* unknown: skipped by the receiver */
    }
}

int sl_mux_encode_credit(uint8_t *out, size_t cap, uint32_t stream,
                         uint64_t offset)
{
    if (cap < SL_MUX_HEADER + 8)
        return SL_ETOOBIG;
    sl_mux_header(out, SL_MUX_CREDIT, 0, stream, 8);
    put64(out + SL_MUX_HEADER, offset);
    return SL_MUX_HEADER + 8;
}

int sl_mux_encode_ping(uint8_t *out, size_t cap, enum sl_mux_type type,
                       uint64_t opaque)
{
    if (type != SL_MUX_PING && type != SL_MUX_PONG)
        return SL_EPARSE;
    if (cap < SL_MUX_HEADER + 8)
        return SL_ETOOBIG;
    sl_mux_header(out, type, 0, 0, 8);
    put64(out + SL_MUX_HEADER, opaque);
    return SL_MUX_HEADER + 8;
}

int sl_mux_encode_fin(uint8_t *out, size_t cap, uint32_t stream)
{
    if (cap < SL_MUX_HEADER)
        return SL_ETOOBIG;
    sl_mux_header(out, SL_MUX_FIN, 0, stream, 0);
    return SL_MUX_HEADER;
}

int sl_mux_encode_rst(uint8_t *out, size_t cap, uint32_t stream,
                      uint32_t code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > SL_MUX_REASON_MAX || cap < SL_MUX_HEADER + 4 + rl)
        return SL_ETOOBIG;
    sl_mux_header(out, SL_MUX_RST, 0, stream, (uint32_t)(4 + rl));
    put32(out + SL_MUX_HEADER, code);
    if (rl > 0)
        memcpy(out + SL_MUX_HEADER + 4, reason, rl);
    return (int)(SL_MUX_HEADER + 4 + rl);
}

int sl_mux_encode_goaway(uint8_t *out, size_t cap, uint32_t last_stream,
                         uint32_t code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > SL_MUX_REASON_MAX || cap < SL_MUX_HEADER + 8 + rl)
        return SL_ETOOBIG;
    sl_mux_header(out, SL_MUX_GOAWAY, 0, 0, (uint32_t)(8 + rl));
    put32(out + SL_MUX_HEADER, last_stream);
    put32(out + SL_MUX_HEADER + 4, code);
    if (rl > 0)
        memcpy(out + SL_MUX_HEADER + 8, reason, rl);
    return (int)(SL_MUX_HEADER + 8 + rl);
}

int sl_mux_encode_open(uint8_t *out, size_t cap, uint32_t stream,
                       uint8_t kind, const char *target, size_t data_len)
{
    size_t tl = target ? strlen(target) : 0;
    if (tl > SL_MUX_TARGET_MAX || cap < SL_MUX_HEADER + 2 + tl ||
        2 + tl + data_len > SL_MUX_FRAME_MAX)
        return SL_ETOOBIG;
    sl_mux_header(out, SL_MUX_OPEN, 0, stream, (uint32_t)(2 + tl + data_len));
    out[SL_MUX_HEADER] = kind;
    out[SL_MUX_HEADER + 1] = (uint8_t)tl;
    if (tl > 0)
        memcpy(out + SL_MUX_HEADER + 2, target, tl);
    return (int)(SL_MUX_HEADER + 2 + tl);
}

const char *sl_mux_type_name(uint8_t type)
{
    static const char *const names[] = {
        "?", "OPEN", "DATA", "FIN", "RST", "CREDIT", "PING", "PONG", "GOAWAY",
        "DGRAM",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

const char *sl_mux_rst_name(uint32_t code)
{
    switch (code) {
    case SL_MUX_RST_CLOSED: return "closed";
    case SL_MUX_RST_PROTOCOL: return "protocol error";
    case SL_MUX_RST_FLOW: return "data past credit";
    case SL_MUX_RST_REFUSED: return "refused";
    case SL_MUX_RST_RESET: return "reset";
    case SL_MUX_RST_INTERNAL: return "internal error";
    default: return "unknown code";
    }
}

const char *sl_mux_goaway_name(uint32_t code)
{
    switch (code) {
    case SL_MUX_GO_NORMAL: return "going away";
    case SL_MUX_GO_PROTOCOL: return "protocol error";
    case SL_MUX_GO_FLOW: return "data past credit";
    case SL_MUX_GO_TOO_BIG: return "frame too big";
    case SL_MUX_GO_UNKNOWN: return "unknown stream";
    case SL_MUX_GO_REUSED: return "stream id reused";
    case SL_MUX_GO_INTERNAL: return "internal error";
    case SL_MUX_GO_TIMEOUT: return "timed out";
    default: return "unknown code";
    }
}
