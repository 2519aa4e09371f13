/* libFuzzer target for the multiplexed connection's frames (mux/frame.h).
 * The input is read as a sequence of frames, as a receiver would.
 * Invariants: the parser never reads past the input, takes whole frames
 * only (header plus length), never a payload over SL_MUX_FRAME_MAX; a
 * frame whose payload checks out encodes back to the same bytes (for the
 * types this side sends). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mux/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct sl_mux_frame *f,
                             const struct sl_mux_body *b, const uint8_t *raw)
{
    static uint8_t out[SL_MUX_HEADER + 8 + SL_MUX_REASON_MAX + 1];
    char text[SL_MUX_REASON_MAX + 1];
    int n = -1;
    size_t want = SL_MUX_HEADER + f->length;
    if (f->flags != 0)
        return; /* flags are ignored on receipt, never sent */
    switch (f->type) {
    case SL_MUX_CREDIT:
        n = sl_mux_encode_credit(out, sizeof(out), f->stream, b->offset);
        break;
    case SL_MUX_PING:
    case SL_MUX_PONG:
        n = sl_mux_encode_ping(out, sizeof(out), f->type, b->opaque);
        break;
    case SL_MUX_FIN:
        n = sl_mux_encode_fin(out, sizeof(out), f->stream);
        break;
    case SL_MUX_RST:
    case SL_MUX_GOAWAY:
        if (memchr(b->reason, 0, b->reason_len) != NULL)
            return; /* a C string cannot say it */
        memcpy(text, b->reason, b->reason_len);
        text[b->reason_len] = '\0';
        n = f->type == SL_MUX_RST
                ? sl_mux_encode_rst(out, sizeof(out), f->stream, b->code,
                                    text)
                : sl_mux_encode_goaway(out, sizeof(out), b->last_stream,
                                       b->code, text);
        break;
    case SL_MUX_OPEN:
        if (memchr(b->target, 0, b->target_len) != NULL)
            return;
        memcpy(text, b->target, b->target_len);
        text[b->target_len] = '\0';
        n = sl_mux_encode_open(out, sizeof(out), f->stream, b->kind, text,
                               b->data_len);
        want = SL_MUX_HEADER + 2 + b->target_len;
        break;
    default:
        return;
    }
    if (n < 0 || (size_t)n != want || memcmp(out, raw, want) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct sl_mux_frame f;
        int rc = sl_mux_parse(data + off, size - off, &f);
        if (rc == SL_EINCOMPLETE || rc == SL_EPARSE || rc == SL_ETOOBIG)
            return 0;
        if (rc < SL_MUX_HEADER || (size_t)rc > size - off ||
            f.length > SL_MUX_FRAME_MAX ||
            (size_t)rc != SL_MUX_HEADER + f.length ||
            f.payload != data + off + SL_MUX_HEADER)
            abort();
        struct sl_mux_body b;
        const char *why = NULL;
        int prc = sl_mux_payload(&f, &b, &why);
        if (why == NULL)
            abort();
        if (prc == 0) {
            if (b.data_len > f.length || b.target_len > f.length ||
                b.reason_len > SL_MUX_REASON_MAX)
                abort();
            if (b.data != NULL &&
                (b.data < f.payload ||
                 b.data + b.data_len > f.payload + f.length))
                abort();
            check_round_trip(&f, &b, data + off);
        } else if (prc != SL_EPARSE || why[0] == '\0') {
            abort();
        }
        off += (size_t)rc;
    }
    return 0;
}
