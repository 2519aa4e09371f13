/* libFuzzer target for the PROXY protocol parser. Whatever parses must
 * survive a round trip: encode it again (v2, and v1 for TCP) and parse that
 * to the same addresses. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/proxy_proto.h"

static void same_addr(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        abort();
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        if (memcmp(&x->sin_addr, &y->sin_addr, 4) != 0 ||
            x->sin_port != y->sin_port)
            abort();
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        if (memcmp(&x->sin6_addr, &y->sin6_addr, 16) != 0 ||
            x->sin6_port != y->sin6_port)
            abort();
    } else {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_pp_info info, again;
    uint8_t v2[232];
    char v1[108];
    int rc, n;

    rc = sl_pp_parse(data, size, &info);
    if (rc == SL_EINCOMPLETE || rc == SL_EPARSE || rc == SL_ETOOBIG) {
        /* A prefix the parser still waits on must look like a header. */
        if (rc == SL_EINCOMPLETE && !sl_pp_detect(data, size))
            abort();
        return 0;
    }
    if (rc <= 0 || (size_t)rc > size || rc > SL_PP_MAX_HEADER)
        abort();
    if (!sl_pp_detect(data, size))
        abort();
    /* The header's own bytes parse alone to the same length. */
    if (sl_pp_parse(data, (size_t)rc, &again) != rc)
        abort();
    if (info.version != 1 && info.version != 2)
        abort();
    if (!info.has_addrs)
        return 0;

    n = sl_pp_encode_v2(v2, sizeof(v2), (const struct sockaddr *)&info.src,
                        (const struct sockaddr *)&info.dst, info.stream);
    if (n <= 0 || sl_pp_parse(v2, (size_t)n, &again) != n)
        abort();
    if (again.version != 2 || !again.has_addrs || again.stream != info.stream)
        abort();
    same_addr(&info.src, &again.src);
    same_addr(&info.dst, &again.dst);

    n = sl_pp_encode_v1(v1, sizeof(v1), (const struct sockaddr *)&info.src,
                        (const struct sockaddr *)&info.dst);
    if (n <= 0 || sl_pp_parse((const uint8_t *)v1, (size_t)n, &again) != n)
        abort();
    if (again.version != 1 || !again.has_addrs)
        abort();
    same_addr(&info.src, &again.src);
    same_addr(&info.dst, &again.dst);
    return 0;
}
