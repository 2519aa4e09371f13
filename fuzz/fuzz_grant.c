/* libFuzzer target for grants (tunnel/grant.h): the input is read as a
 * token and as a payload. Invariants: a payload that parses formats back
 * to one that parses to the same grant; nothing the fuzzer makes is
 * accepted under a key whose private half nobody holds; a refusal leaves
 * the grant empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "core/error.h"
#include "tunnel/grant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *pub;

static void check_payload(const char *p, size_t n)
{
    struct sl_grant g, back;
    char text[SL_GRANT_PAYLOAD_MAX + 1];
    int rc = sl_grant_parse_payload(p, n, &g);
    if (rc != 0) {
        struct sl_grant zero;
        memset(&zero, 0, sizeof(zero));
        if ((rc != SL_EPARSE && rc != UV_ENOMEM) ||
            memcmp(&g, &zero, sizeof(g)) != 0)
            abort();
        return;
    }
    int m = sl_grant_format_payload(&g, text, sizeof(text));
    if (m < 0)
        return; /* a long subject with many fields may not fit again */
    if (sl_grant_parse_payload(text, (size_t)m, &back) != 0 ||
        memcmp(&g, &back, sizeof(g)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pub == NULL) {
        /* A point nobody has the key of (the base point's encoding). */
        static const unsigned char raw[32] = {
            0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
            0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
            0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
            0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66};
        pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
                                          sizeof(raw));
        if (pub == NULL)
            abort();
    }
    const char *s = (const char *)data;
    struct sl_grant g;
    if (sl_grant_verify(s, size, pub, &g) == SL_GRANT_OK)
        abort();
    unsigned char payload[SL_GRANT_PAYLOAD_MAX];
    unsigned char sig[SL_GRANT_SIG_LEN];
    size_t plen = 0;
    if (sl_grant_split(s, size, payload, sizeof(payload), &plen, sig) == 0)
        check_payload((const char *)payload, plen);
    check_payload(s, size);
    return 0;
}
