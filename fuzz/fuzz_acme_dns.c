/* libFuzzer target for the DNS answers and key files of DNS-01
 * (acme/dns_msg.h): the input is parsed as an answer (with and without a
 * key to check its TSIG against) and as a key file. Invariants: every
 * name and TXT string kept is NUL-terminated and printable, counts stay
 * within their arrays; no answer the fuzzer makes passes the TSIG check
 * of a secret it does not know; a key file that parses has a secret. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acme/dns_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);
    if (end == NULL)
        abort();
    for (; s < end; s++)
        if ((unsigned char)*s < ' ' || *s == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_dns_answer a;
    struct sl_tsig_key k;
    static const uint8_t req_mac[32] = {1, 2, 3};
    memset(&k, 0, sizeof(k));
    memcpy(k.name, "sluice-test.", 13);
    memcpy(k.secret, "a secret no fuzzer input knows..", 32);
    k.secret_len = 32;
    for (int with_key = 0; with_key < 2; with_key++) {
        if (sl_dns_parse(data, size, "_acme-challenge.sluice.test",
                         with_key ? &k : NULL, with_key ? req_mac : NULL,
                         1764633600, &a) != 0)
            continue;
        check_text(a.soa_owner, sizeof(a.soa_owner));
        if (a.ntxt > SL_DNS_TXT_MAX)
            abort();
        for (size_t i = 0; i < a.ntxt; i++)
            check_text(a.txt[i], sizeof(a.txt[i]));
        if (a.tsig_ok)
            abort(); /* a MAC of a secret it never saw */
    }
    struct sl_tsig_key parsed;
    char err[256];
    if (sl_tsig_key_parse((const char *)data, size, &parsed, err,
                          sizeof(err)) == 0) {
        if (parsed.secret_len == 0 || parsed.secret_len > sizeof(parsed.secret))
            abort();
        if (memchr(parsed.name, '\0', sizeof(parsed.name)) == NULL)
            abort();
    }
    return 0;
}
