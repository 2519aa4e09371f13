/* libFuzzer target for the ACL rule parser and matcher. The input is split
 * at newlines: every line but the last is a rule (first byte picks allow,
 * deny, bare), the last 4 or 16 bytes are a source to check. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/acl.h"

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_acl *acl = sl_acl_new();
    char rule[128], err[160];
    size_t off = 0, added = 0;

    if (acl == NULL)
        return 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        if (nl == NULL)
            break; /* the tail is the source address */
        if (len > 0 && len < sizeof(rule)) {
            uint8_t mode = data[off];
            memcpy(rule, data + off + 1, len - 1);
            rule[len - 1] = '\0';
            int rc = sl_acl_add(acl, mode & 1, rule, (mode >> 1) & 1, err,
                                sizeof(err));
            if (rc == 0)
                added++;
            else if (rc != SL_EPARSE || strlen(err) == 0)
                abort();
        }
        off += len + 1;
    }
    if (sl_acl_count(acl) != added)
        abort();

    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    size_t tail = size - off;
    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (tail >= 16) {
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, data + off, 16);
        int r6 = sl_acl_allows(acl, (struct sockaddr *)&sin6);
        /* A mapped source decides as its IPv4 address. */
        if (memcmp(data + off, v4mapped_prefix, 12) == 0) {
            sin.sin_family = AF_INET;
            memcpy(&sin.sin_addr, data + off + 12, 4);
            if (sl_acl_allows(acl, (struct sockaddr *)&sin) != r6)
                abort();
        }
    } else if (tail >= 4) {
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, data + off, 4);
        int r4 = sl_acl_allows(acl, (struct sockaddr *)&sin);
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, v4mapped_prefix, 12);
        memcpy((uint8_t *)&sin6.sin6_addr + 12, data + off, 4);
        if (sl_acl_allows(acl, (struct sockaddr *)&sin6) != r4)
            abort();
    }
    sl_acl_free(acl);
    return 0;
}
