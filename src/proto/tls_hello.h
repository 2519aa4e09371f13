/* The server name and ALPN list of a TLS ClientHello, read from the first
 * bytes of a connection before any TLS is terminated, so the hub can choose
 * between passing the raw bytes through to a bridge and terminating TLS
 * itself. Pure: takes bytes, returns results; no I/O, no allocation. */
#ifndef SL_TLS_HELLO_H
#define SL_TLS_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* The most handshake bytes (the ClientHello's 4-byte header and its body)
 * we reassemble; a hello that says it is longer is SL_ETOOBIG. */
#define SL_TLS_HELLO_MAX 16384

#define SL_TLS_HELLO_NAME_MAX 253 /* longest DNS name, without the NUL */
#define SL_TLS_HELLO_ALPN_MAX 8   /* protocols kept from the ALPN list */
#define SL_TLS_HELLO_ALPN_LEN 32  /* bytes per kept protocol, with the NUL */

struct sl_tls_hello {
    /* The SNI host name, lower-cased, trailing dot stripped; "" when the
     * hello has no server_name extension. Always a valid DNS host name
     * otherwise: labels of 1..63 letters, digits and '-', not starting or
     * ending with '-', joined by single dots. */
    char server_name[SL_TLS_HELLO_NAME_MAX + 1];
    /* The protocols the client offers (ALPN), in its order, NUL-terminated.
     * Only the first SL_TLS_HELLO_ALPN_MAX are kept; a name longer than
     * SL_TLS_HELLO_ALPN_LEN - 1 bytes or holding a NUL byte is left out
     * (no protocol we route on looks like that). nalpn is 0 when the hello
     * has no ALPN extension. */
    char alpn[SL_TLS_HELLO_ALPN_MAX][SL_TLS_HELLO_ALPN_LEN];
    size_t nalpn;
    /* The ClientHello's legacy_version (0x0303 for TLS 1.2 and 1.3). */
    uint16_t legacy_version;
};

/* Parses the start of a TLS connection: p, n are every byte read so far
 * (p may be NULL when n is 0). The ClientHello may span several handshake
 * records; they are reassembled in place.
 * Returns 0 and fills *out once the whole ClientHello has arrived (bytes
 * after its last record are not looked at);
 * SL_EINCOMPLETE when the bytes so far are a valid start and more are
 * needed;
 * SL_EPARSE when it is not a TLS handshake (e.g. "GET / HTTP/1.1": the
 * first byte is not 0x16) or it is malformed: a record that is not a
 * handshake record of version 3.x with 1..2^14 bytes, a first handshake
 * message that is not a client_hello, any length that disagrees with its
 * enclosing one, a session id over 32 bytes, an odd or empty cipher suite
 * list, no compression method, a repeated extension, a server_name that is
 * not exactly one host_name entry holding a valid host name (see above;
 * 1..253 bytes), an empty ALPN list or protocol name, or a record that
 * carries bytes after the ClientHello;
 * SL_ETOOBIG when the ClientHello says it is longer than SL_TLS_HELLO_MAX.
 * Bytes are judged as they arrive: a prefix that no valid hello starts with
 * is SL_EPARSE (or SL_ETOOBIG) at once, and stays so as bytes are added.
 * Never reads past n. *out is written only on success (out may be NULL). */
int sl_tls_hello_parse(const uint8_t *p, size_t n, struct sl_tls_hello *out);

/* Returns 1 if the bytes could start a TLS handshake (also when n is 0:
 * nothing says otherwise yet), 0 if the first bytes already rule it out
 * (first byte not 0x16, second not 0x03), so a caller can route plain HTTP
 * on the same port early. */
int sl_tls_hello_is_tls(const uint8_t *p, size_t n);

#endif
