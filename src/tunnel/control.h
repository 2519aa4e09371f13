/* Control messages of the tunnel: one JSON object per WebSocket text
 * message, with a "type" field (docs/protocol.md, "Control connection").
 * Pure: no I/O; uses jansson internally, exposes plain C structs.
 *
 * Parsing rules (the same for hub and bridge):
 * - at most SL_CTL_MAX_MSG (64 KiB) bytes, else SL_ETOOBIG;
 * - the text must be one JSON object (no duplicate keys) with a string
 *   "type", else SL_EPARSE;
 * - an unknown type is not an error: type = SL_CTL_UNKNOWN and 0 is
 *   returned (the receiver ignores it); unknown fields are ignored;
 * - a known type with a missing required field, a field of the wrong JSON
 *   type, a negative or non-integer number, an out-of-range value or a
 *   string longer than its buffer gives SL_EPARSE.
 *
 * Fields per type (R = required, otherwise the default in brackets):
 *   hello:   version R (integer 1..65535), capabilities [none] (array of
 *            strings; "http"/"tcp"/"udp"/"tls"/"mux" set SL_CAP_*, others
 *            are ignored),
 *            streams [none] (object: tunnel/stream_opts.h),
 *            pool [0] (0..SL_CTL_POOL_MAX)
 *   welcome: identity R (valid identity), url R, username [""],
 *            password [""] (sent only when just allocated), limits [0,0]
 *            {"bridges": N, "traffic": BYTES} (each optional; 0 =
 *            unlimited), ping_interval [15] (1..3600), pairing_window [8]
 *            (1..3600), tcp_port and udp_port [0 = none] (0..65535),
 *            mux [0] (0..SL_CTL_MUX_MAX): multiplexed data connections
 *            the bridge keeps (protocol v2), 0 = none: the pool only
 *   open:    fingerprint R (lower-case UUID v4), kind R ("http", "tcp",
 *            "udp"; other words are kept as text: the bridge refuses them),
 *            target [""] ("" = the bridge's upstream)
 *   stats:   traffic R {"down": BYTES R, "up": BYTES R}, limit [0]
 *   error:   message R, code [0] (0..999)
 * Byte counts travel as JSON integers; jansson holds them in a signed
 * 64-bit integer, so sl_ctl_encode clamps them to INT64_MAX. */
#ifndef SL_TUNNEL_CONTROL_H
#define SL_TUNNEL_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "tunnel/identity.h"
#include "tunnel/stream_opts.h"

#define SL_CTL_MAX_MSG (64 * 1024)
#define SL_CTL_VERSION 1
#define SL_CTL_POOL_MAX 16
#define SL_CTL_MUX_MAX 4      /* mux connections a hub asks a bridge for */
#define SL_CTL_PING_INTERVAL 15   /* seconds, default of welcome */
#define SL_CTL_PAIRING_WINDOW 8   /* seconds, default of welcome */

/* String buffer sizes, NUL included; longer values are SL_EPARSE. */
#define SL_CTL_URL_MAX 512
#define SL_CTL_USER_MAX 64
#define SL_CTL_PASS_MAX 128
#define SL_CTL_KIND_MAX 16
#define SL_CTL_TARGET_MAX 256
#define SL_CTL_MESSAGE_MAX 256

/* hello.capabilities bits. */
#define SL_CAP_HTTP 0x1u
#define SL_CAP_TCP 0x2u
#define SL_CAP_UDP 0x4u
#define SL_CAP_TLS 0x8u /* the upstream takes TLS as users send it: the
                           hub passes it through by SNI, unterminated */
#define SL_CAP_MUX 0x10u /* the bridge speaks multiplexed data connections
                            (Sluice-Framing: mux, protocol v2) */

enum sl_ctl_type {
    SL_CTL_HELLO,
    SL_CTL_WELCOME,
    SL_CTL_OPEN,
    SL_CTL_STATS,
    SL_CTL_ERROR,
    SL_CTL_UNKNOWN,
};

/* One message. Only the member named by type is meaningful; the others
 * hold sl_ctl_init's defaults. Every string is
 * NUL-terminated within its array. Plain data: copy it freely. */
struct sl_ctl_msg {
    enum sl_ctl_type type;
    struct sl_ctl_hello {
        int version;
        unsigned capabilities; /* SL_CAP_* */
        int pool;
        struct sl_stream_opts streams; /* "streams": the TCP/UDP tunnel's
                                          options (tunnel/stream_opts.h) */
    } hello;
    struct sl_ctl_welcome {
        char identity[SL_IDENTITY_LEN + 1];
        char url[SL_CTL_URL_MAX];
        char username[SL_CTL_USER_MAX]; /* "" = not sent */
        char password[SL_CTL_PASS_MAX]; /* "" = not sent */
        uint32_t limit_bridges;         /* 0 = unlimited */
        uint64_t limit_traffic;         /* bytes, 0 = unlimited */
        int ping_interval;              /* seconds */
        int pairing_window;             /* seconds */
        int tcp_port, udp_port;         /* public stream ports; 0 = none */
        int mux; /* mux connections to keep (protocol v2); 0 = none */
    } welcome;
    struct sl_ctl_open {
        char fingerprint[SL_UUID_LEN + 1];
        char kind[SL_CTL_KIND_MAX];
        char target[SL_CTL_TARGET_MAX]; /* "" = the bridge's upstream */
    } open;
    struct sl_ctl_stats {
        uint64_t down; /* bytes, as the hub counts them */
        uint64_t up;
        uint64_t limit; /* 0 = unlimited */
    } stats;
    struct sl_ctl_error {
        char message[SL_CTL_MESSAGE_MAX];
        int code; /* HTTP-like, 0 = none */
    } error;
};

/* Zeroes msg, sets its type and the defaults above (hello.version 1,
 * welcome.ping_interval 15, welcome.pairing_window 8, open.kind "http"). */
void sl_ctl_init(struct sl_ctl_msg *msg, enum sl_ctl_type type);

/* Parses json[0..len) (need not be NUL-terminated) into out per the rules
 * above. Returns 0, SL_ETOOBIG, SL_EPARSE or UV_ENOMEM. out is fully
 * written in every case (zeroed, type SL_CTL_UNKNOWN, on failure). */
int sl_ctl_parse(const char *json, size_t len, struct sl_ctl_msg *out);

/* Encodes msg as compact JSON. On success *out is a NUL-terminated,
 * malloc'd string the caller frees with free(), and *outlen its length
 * (without the NUL). welcome omits username/password when empty. Returns
 * 0, UV_EINVAL (NULL argument, type SL_CTL_UNKNOWN, or a field that the
 * parser would refuse, e.g. an invalid identity or a string that is not
 * UTF-8), SL_ETOOBIG (over
 * SL_CTL_MAX_MSG) or UV_ENOMEM; *out is NULL on failure. */
int sl_ctl_encode(const struct sl_ctl_msg *msg, char **out, size_t *outlen);

/* "hello", "welcome", ...; "unknown" for SL_CTL_UNKNOWN or bad values.
 * Static strings. */
const char *sl_ctl_type_name(enum sl_ctl_type type);

#endif
