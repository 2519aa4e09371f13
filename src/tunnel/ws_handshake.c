#include "tunnel/ws_handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "core/error.h"
#include "core/str.h"
#include "core/b64.h"

#define KEY_MAX 256

/* Returns 1 if the comma-separated list s[0..len) holds token (compared
 * case-insensitively, whitespace around each element ignored). Upgrade
 * elements may carry a "/version" ("websocket/13" is not "websocket"). */
static int list_has(const char *s, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    while (len > 0) {
        const char *comma = memchr(s, ',', len);
        size_t elen = comma != NULL ? (size_t)(comma - s) : len;
        const char *e = s;
        size_t el = elen;
        sl_trim_ows(&e, &el);
        if (el == tlen && strncasecmp(e, token, tlen) == 0)
            return 1;
        if (comma == NULL)
            break;
        s = comma + 1;
        len -= elen + 1;
    }
    return 0;
}

int sl_ws_key_new(char out[SL_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        out[0] = '\0';
        return UV_EIO;
    }
    sl_b64_encode(raw, sizeof(raw), out, SL_WS_KEY_LEN + 1);
    return 0;
}

int sl_ws_accept(const char *key, size_t len, char out[SL_WS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int rc = UV_EIO;
    out[0] = '\0';
    if (key == NULL && len > 0)
        return UV_EINVAL;
    if (key != NULL)
        sl_trim_ows(&key, &len);
    if (len > KEY_MAX)
        return SL_ETOOBIG;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return UV_EIO;
    if (EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1 ||
        (len > 0 && EVP_DigestUpdate(md, key, len) != 1) ||
        EVP_DigestUpdate(md, SL_WS_GUID, strlen(SL_WS_GUID)) != 1 ||
        EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen != 20)
        goto out;
    sl_b64_encode(digest, dlen, out, SL_WS_ACCEPT_LEN + 1);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

int sl_ws_check_upgrade(const struct sl_ws_upgrade *h, const char **reason)
{
    const char *why = "";
    int rc = SL_EPARSE;
    unsigned char raw[18];
    if (h == NULL) {
        why = "no headers";
        goto out;
    }
    if (h->upgrade == NULL) {
        why = "no Upgrade header";
        rc = SL_ENOTFOUND;
        goto out;
    }
    if (!list_has(h->upgrade, h->upgrade_len, "websocket")) {
        why = "Upgrade does not name websocket";
        goto out;
    }
    if (h->connection == NULL ||
        !list_has(h->connection, h->connection_len, "upgrade")) {
        why = "Connection does not name upgrade";
        goto out;
    }
    const char *key = h->key;
    size_t klen = h->key_len;
    if (key == NULL) {
        why = "no Sec-WebSocket-Key";
        goto out;
    }
    sl_trim_ows(&key, &klen);
    if (klen != SL_WS_KEY_LEN ||
        sl_b64_decode(key, klen, raw, sizeof(raw)) != 16) {
        why = "Sec-WebSocket-Key is not base64 of 16 bytes";
        goto out;
    }
    const char *ver = h->version;
    size_t vlen = h->version_len;
    if (ver == NULL) {
        why = "no Sec-WebSocket-Version";
        goto out;
    }
    sl_trim_ows(&ver, &vlen);
    if (vlen != 2 || memcmp(ver, "13", 2) != 0) {
        why = "Sec-WebSocket-Version is not 13";
        rc = SL_EDENIED;
        goto out;
    }
    rc = 0;
out:
    if (reason != NULL)
        *reason = why;
    return rc;
}

int sl_ws_check_accept(const char *key, const char *accept, size_t len)
{
    char want[SL_WS_ACCEPT_LEN + 1];
    if (key == NULL || accept == NULL)
        return 0;
    sl_trim_ows(&accept, &len);
    if (len != SL_WS_ACCEPT_LEN ||
        sl_ws_accept(key, strlen(key), want) != 0)
        return 0;
    return CRYPTO_memcmp(want, accept, SL_WS_ACCEPT_LEN) == 0;
}
