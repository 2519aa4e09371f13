/* PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy specifies
 * them. Pure: takes bytes, returns results; no I/O. */
#ifndef SL_PROXY_PROTO_H
#define SL_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header we accept: v1 is at most 107 bytes; v2 carries TLVs,
 * which we skip, up to this bound. */
#define SL_PP_MAX_HEADER 1024

struct sl_pp_info {
    int version;   /* 1 or 2 */
    int has_addrs; /* 0 for v1 UNKNOWN, v2 LOCAL or AF_UNSPEC */
    int stream;    /* 1 for TCP (STREAM), 0 for UDP (DGRAM) */
    struct sockaddr_storage src;
    struct sockaddr_storage dst;
};

/* Classifies the first bytes of a connection.
 * Returns 1 if buf starts (or, while short, could start) a PROXY header,
 * 0 if it certainly does not. */
int sl_pp_detect(const uint8_t *buf, size_t len);

/* Parses a v1 or v2 header at the start of buf.
 * Returns the header's length (> 0) and fills *out; SL_EINCOMPLETE if more
 * bytes are needed; SL_EPARSE if it is not a valid header; SL_ETOOBIG if
 * it is longer than SL_PP_MAX_HEADER. Bytes are judged as they arrive: a
 * prefix that no valid header starts with is SL_EPARSE at once. v2 TLVs
 * are skipped but must be well formed; v2 LOCAL headers are accepted with
 * has_addrs=0 whatever their block holds; AF_UNIX is accepted with
 * has_addrs=0. *out is written only on success (out may be NULL). */
int sl_pp_parse(const uint8_t *buf, size_t len, struct sl_pp_info *out);

/* Writes a v2 PROXY header for a TCP (stream=1) or UDP connection from src
 * to dst (same family, AF_INET or AF_INET6; mixed families are sent as
 * IPv6 with mapped addresses). If either address is NULL or of another
 * family, the header says PROXY with family AF_UNSPEC and no addresses, so
 * the receiver uses the real endpoints. Returns its length or SL_ETOOBIG if
 * cap is too small (232 bytes always suffice). */
int sl_pp_encode_v2(uint8_t *buf, size_t cap, const struct sockaddr *src,
                    const struct sockaddr *dst, int stream);

/* Writes a v1 header ("PROXY TCP4 ...\r\n"), NUL-terminated; families as
 * for v2 (TCP4, TCP6 with mapped addresses when mixed, "PROXY UNKNOWN\r\n"
 * when an address is NULL or not IP). Returns its length (without the NUL)
 * or SL_ETOOBIG (108 bytes always suffice). */
int sl_pp_encode_v1(char *buf, size_t cap, const struct sockaddr *src,
                    const struct sockaddr *dst);

#endif
