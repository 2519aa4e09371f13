/* DNS messages for DNS-01: the dynamic UPDATE (RFC 2136) that adds or
 * deletes the _acme-challenge TXT records, signed with TSIG (RFC 8945,
 * HMAC-SHA256); the queries that find the zone (SOA) and see the record
 * (TXT); the answers to both, with the server's TSIG checked; and the key
 * file nsupdate reads (tsig-keygen's output).
 *
 * Pure: bytes in, bytes out, no I/O. Names are given and returned as
 * dotted text without the trailing dot ("" is the root), compared without
 * regard to case; encoders write names uncompressed. */
#ifndef SL_ACME_DNS_MSG_H
#define SL_ACME_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#define SL_DNS_MSG_MAX 4096 /* what we build and parse at most */
#define SL_DNS_NAME_MAX 256 /* dotted text with its NUL */
#define SL_DNS_TXT_MAX 8    /* TXT records an answer keeps */
#define SL_DNS_TSIG_FUDGE 300

enum {
    SL_DNS_T_SOA = 6,
    SL_DNS_T_TXT = 16,
    SL_DNS_T_TSIG = 250,
};

enum {
    SL_DNS_NOERROR = 0,
    SL_DNS_FORMERR = 1,
    SL_DNS_SERVFAIL = 2,
    SL_DNS_NXDOMAIN = 3,
    SL_DNS_NOTIMP = 4,
    SL_DNS_REFUSED = 5,
    SL_DNS_YXDOMAIN = 6,
    SL_DNS_YXRRSET = 7,
    SL_DNS_NXRRSET = 8,
    SL_DNS_NOTAUTH = 9,
    SL_DNS_NOTZONE = 10,
    /* TSIG errors (the TSIG record's error field) */
    SL_DNS_BADSIG = 16,
    SL_DNS_BADKEY = 17,
    SL_DNS_BADTIME = 18,
};

/* "NOERROR", "REFUSED", "BADSIG", ... or "RCODE<n>" in buf. */
const char *sl_dns_rcode_name(int rcode, char *buf, size_t cap);

/* A TSIG key: its name and the HMAC-SHA256 secret. */
struct sl_tsig_key {
    char name[SL_DNS_NAME_MAX];
    uint8_t secret[128];
    size_t secret_len;
};

/* Reads the first key statement of a BIND key file, as nsupdate -k does:
 *   key "name" { algorithm hmac-sha256; secret "<base64>"; };
 * with # // and C comments. Only hmac-sha256 is taken. Returns 0, or
 * SL_EPARSE with err saying what is wrong (without the secret). */
int sl_tsig_key_parse(const char *text, size_t n, struct sl_tsig_key *out,
                      char *err, size_t cap);

/* An UPDATE of zone: for each i, the TXT record names[i] = values[i]
 * (values of 1..255 bytes) is added with ttl (del 0) or deleted (del 1:
 * that one record, class NONE). Writes the unsigned message. Returns 0,
 * SL_ETOOBIG or UV_EINVAL (a bad name or value). */
int sl_dns_update_build(uint16_t id, const char *zone, int del,
                        const char *const *names, const char *const *values,
                        size_t n, uint32_t ttl, uint8_t *out, size_t cap,
                        size_t *len);

/* A query for name and type (class IN), recursion not desired. */
int sl_dns_query_build(uint16_t id, const char *name, uint16_t type,
                       uint8_t *out, size_t cap, size_t *len);

/* Appends a TSIG record signed with key at time now (unix seconds) to
 * the message msg[0..*len) (ARCOUNT is raised). The MAC is copied to mac
 * (32 bytes): the answer's signature covers it. Returns 0, SL_ETOOBIG or
 * UV_EINVAL. */
int sl_tsig_sign(const struct sl_tsig_key *key, uint8_t *msg, size_t *len,
                 size_t cap, uint64_t now, uint8_t mac[32]);

/* What an answer says. */
struct sl_dns_answer {
    uint16_t id;
    int rcode;
    int tc;      /* truncated: ask again over TCP */
    int has_soa; /* soa_owner holds the SOA's owner (the zone) */
    char soa_owner[SL_DNS_NAME_MAX];
    size_t ntxt; /* TXT strings of txt_name (each record's strings
                    joined), in order */
    char txt[SL_DNS_TXT_MAX][256];
    /* TSIG: 0 the answer has none; 1 it has one; tsig_error its error
     * field (BADSIG, BADKEY, BADTIME); tsig_ok 1 when its MAC checked
     * out against key and the request's MAC. */
    int has_tsig;
    int tsig_error;
    int tsig_ok;
};

/* Parses an answer. txt_name (may be NULL) picks the TXT records to
 * keep; the SOA is taken from the answer or authority section. With key
 * and req_mac not NULL a TSIG record is checked (time within the fudge of
 * now too). Returns 0 or SL_EPARSE (malformed: a length past the end, a
 * name loop, a name over 255 bytes, not a response). */
int sl_dns_parse(const uint8_t *p, size_t n, const char *txt_name,
                 const struct sl_tsig_key *key, const uint8_t *req_mac,
                 uint64_t now, struct sl_dns_answer *out);

/* Writes the wire form of a dotted name (lower case) into out. Returns
 * the length or 0 (bad name, or it does not fit). */
size_t sl_dns_name_wire(const char *name, uint8_t *out, size_t cap);

#endif
