/* The Sluice-Hijack header of a data connection: "<identity>|<fingerprint>"
 * (docs/protocol.md, "Data connections"). Pure: no I/O. */
#ifndef SL_TUNNEL_HIJACK_H
#define SL_TUNNEL_HIJACK_H

#include <stddef.h>

#include "tunnel/identity.h"

#define SL_HIJACK_HEADER "Sluice-Hijack"
/* Formatted length: 12 + 1 + 36, plus the NUL. */
#define SL_HIJACK_MAX (SL_IDENTITY_LEN + 1 + SL_UUID_LEN + 1)

struct sl_hijack {
    char identity[SL_IDENTITY_LEN + 1];  /* NUL-terminated, valid identity */
    char fingerprint[SL_UUID_LEN + 1];   /* NUL-terminated, lower-case v4 */
};

/* Parses a header value (need not be NUL-terminated): exactly a valid
 * identity, '|', a valid lower-case UUID v4; spaces and tabs around the
 * whole value are trimmed, nothing else is tolerated. Returns 0 or
 * SL_EPARSE (the hub answers 400); out is zeroed on failure. value may be
 * NULL only with len 0. */
int sl_hijack_parse(const char *value, size_t len, struct sl_hijack *out);

/* Writes "<identity>|<fingerprint>" and a NUL into out. Returns 0,
 * SL_EPARSE (a field is not valid) or SL_ETOOBIG (cap < SL_HIJACK_MAX). */
int sl_hijack_format(const struct sl_hijack *h, char *out, size_t cap);

/* The Sluice-Bridge header of a bridge's control and data connections: a
 * UUID v4 the bridge draws once per node process, so the hub can tell the
 * same bridge coming back from another bridge of the same allocation.
 * Optional on the wire. */
#define SL_BRIDGE_HEADER "Sluice-Bridge"

/* Parses a header value (need not be NUL-terminated): a lower-case UUID
 * v4, spaces and tabs around it trimmed. Returns 0 or SL_EPARSE (out is
 * then ""). */
int sl_bridge_id_parse(const char *value, size_t len,
                       char out[SL_UUID_LEN + 1]);

#endif
