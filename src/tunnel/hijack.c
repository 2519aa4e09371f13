#include "tunnel/hijack.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/str.h"

int sl_hijack_parse(const char *value, size_t len, struct sl_hijack *out)
{
    memset(out, 0, sizeof(*out));
    if (value == NULL)
        return SL_EPARSE;
    sl_trim_ows(&value, &len);
    if (len != SL_IDENTITY_LEN + 1 + SL_UUID_LEN ||
        value[SL_IDENTITY_LEN] != '|' ||
        !sl_identity_valid(value, SL_IDENTITY_LEN) ||
        !sl_uuid4_valid(value + SL_IDENTITY_LEN + 1, SL_UUID_LEN))
        return SL_EPARSE;
    memcpy(out->identity, value, SL_IDENTITY_LEN);
    memcpy(out->fingerprint, value + SL_IDENTITY_LEN + 1, SL_UUID_LEN);
    return 0;
}

int sl_bridge_id_parse(const char *value, size_t len,
                       char out[SL_UUID_LEN + 1])
{
    out[0] = '\0';
    if (value == NULL)
        return SL_EPARSE;
    sl_trim_ows(&value, &len);
    if (len != SL_UUID_LEN || !sl_uuid4_valid(value, len))
        return SL_EPARSE;
    memcpy(out, value, SL_UUID_LEN);
    out[SL_UUID_LEN] = '\0';
    return 0;
}

int sl_hijack_format(const struct sl_hijack *h, char *out, size_t cap)
{
    if (cap > 0)
        out[0] = '\0';
    if (strnlen(h->identity, sizeof(h->identity)) != SL_IDENTITY_LEN ||
        !sl_identity_valid(h->identity, SL_IDENTITY_LEN) ||
        strnlen(h->fingerprint, sizeof(h->fingerprint)) != SL_UUID_LEN ||
        !sl_uuid4_valid(h->fingerprint, SL_UUID_LEN))
        return SL_EPARSE;
    if (cap < SL_HIJACK_MAX)
        return SL_ETOOBIG;
    snprintf(out, cap, "%s|%s", h->identity, h->fingerprint);
    return 0;
}
