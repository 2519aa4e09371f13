/* The HTTP side of the WebSocket opening handshake (RFC 6455 section 4).
 * Pure apart from the CSPRNG (client keys): no I/O. The caller parses the
 * HTTP head (http-parser) and collects the header values it needs; these
 * functions only judge them. */
#ifndef SL_TUNNEL_WS_HANDSHAKE_H
#define SL_TUNNEL_WS_HANDSHAKE_H

#include <stddef.h>

#define SL_WS_KEY_LEN 24    /* base64 of 16 bytes */
#define SL_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */
#define SL_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Header values of an upgrade request as the caller collected them. A NULL
 * pointer means "header absent". Values need not be NUL-terminated; their
 * surrounding spaces/tabs are ignored. If a header occurs more than once,
 * the caller joins the values with "," (RFC 7230 list semantics): that is
 * right for Upgrade and Connection, and makes a repeated Sec-WebSocket-Key
 * or -Version invalid, as it should be. */
struct sl_ws_upgrade {
    const char *upgrade;     /* Upgrade: token list containing "websocket" */
    size_t upgrade_len;
    const char *connection;  /* Connection: token list containing "upgrade" */
    size_t connection_len;
    const char *version;     /* Sec-WebSocket-Version: exactly "13" */
    size_t version_len;
    const char *key;         /* Sec-WebSocket-Key: base64 of 16 bytes */
    size_t key_len;
};

/* Writes a new client key (16 CSPRNG bytes, base64, 24 characters) and a
 * NUL into out. Returns 0 or UV_EIO. */
int sl_ws_key_new(char out[SL_WS_KEY_LEN + 1]);

/* Writes base64(SHA-1(key + GUID)) (28 characters) and a NUL into out: the
 * Sec-WebSocket-Accept value for key[0..len), spaces and tabs around it
 * ignored (a base64 key never contains them, so the raw header value may
 * be passed). Returns 0, UV_EINVAL (NULL key with len > 0),
 * SL_ETOOBIG (len > 256) or UV_EIO (OpenSSL failed); out is "" on error. */
int sl_ws_accept(const char *key, size_t len, char out[SL_WS_ACCEPT_LEN + 1]);

/* Checks an upgrade request's headers (token comparisons case-insensitive,
 * tokens split on ',' with optional whitespace; the key must be 24 base64
 * characters decoding to exactly 16 bytes). The request method (GET) and
 * HTTP version (1.1) are the caller's to check. Returns
 * - 0: a valid WebSocket upgrade;
 * - SL_ENOTFOUND: no Upgrade header: not an upgrade request at all (the
 *   hub may answer 426 or serve it as plain HTTP);
 * - SL_EDENIED: a well-formed upgrade whose Sec-WebSocket-Version is not
 *   13 (answer 426 with "Sec-WebSocket-Version: 13");
 * - SL_EPARSE: anything else malformed (answer 400).
 * reason, if not NULL, receives a static string naming the defect (for
 * logs), or "" on success. */
int sl_ws_check_upgrade(const struct sl_ws_upgrade *h, const char **reason);

/* Client side: returns 1 if accept[0..len) (trimmed of spaces/tabs) is the
 * right Sec-WebSocket-Accept for the key this client sent (NUL-terminated,
 * as made by sl_ws_key_new), else 0. */
int sl_ws_check_accept(const char *key, const char *accept, size_t len);

#endif
