/* libFuzzer target for the ClientHello reader. The input is parsed whole
 * and as every prefix, as bytes arrive on a socket: once a prefix gives an
 * answer (a hello, or an error), every longer one gives the same answer,
 * never SL_EINCOMPLETE again. A parsed server name is always a
 * NUL-terminated, lower-case, valid host name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "proto/tls_hello.h"

static void check_name(const char *name)
{
    const char *end = memchr(name, '\0', SL_TLS_HELLO_NAME_MAX + 1);
    size_t label = 0;

    if (!end)
        abort();
    if (end == name)
        return; /* no SNI */
    for (const char *c = name; c <= end; c++) {
        if (c == end || *c == '.') {
            if (label == 0 || label > 63 || c[-1] == '-')
                abort();
            label = 0;
        } else if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                   (*c == '-' && label > 0)) {
            label++;
        } else {
            abort();
        }
    }
}

static void check_hello(const struct sl_tls_hello *h)
{
    check_name(h->server_name);
    if (h->nalpn > SL_TLS_HELLO_ALPN_MAX)
        abort();
    for (size_t i = 0; i < h->nalpn; i++) {
        const char *a = h->alpn[i];
        if (!memchr(a, '\0', SL_TLS_HELLO_ALPN_LEN) || a[0] == '\0')
            abort();
    }
    if (h->legacy_version >> 8 != 0x03)
        abort();
}

static int same_hello(const struct sl_tls_hello *a,
                      const struct sl_tls_hello *b)
{
    if (strcmp(a->server_name, b->server_name) != 0 || a->nalpn != b->nalpn ||
        a->legacy_version != b->legacy_version)
        return 0;
    for (size_t i = 0; i < a->nalpn; i++)
        if (strcmp(a->alpn[i], b->alpn[i]) != 0)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_tls_hello whole, part;
    int rc, first = SL_EINCOMPLETE;

    rc = sl_tls_hello_parse(data, size, &whole);
    if (rc != 0 && rc != SL_EINCOMPLETE && rc != SL_EPARSE && rc != SL_ETOOBIG)
        abort();
    if (sl_tls_hello_parse(data, size, NULL) != rc)
        abort();
    if (rc == 0)
        check_hello(&whole);
    /* Whatever is still a hello (or may become one) must look like TLS. */
    if ((rc == 0 || rc == SL_EINCOMPLETE) && !sl_tls_hello_is_tls(data, size))
        abort();

    /* Each prefix from its own heap copy, so ASan sees reads past its end. */
    for (size_t k = 0; k <= size; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        int prc;

        if (!copy)
            abort();
        memcpy(copy, data, k);
        prc = sl_tls_hello_parse(copy, k, &part);
        if (first == SL_EINCOMPLETE) {
            first = prc;
        } else if (prc != first) {
            abort(); /* an answer changed, or went back to incomplete */
        }
        if (prc == 0 && (rc != 0 || !same_hello(&part, &whole)))
            abort();
        free(copy);
    }
    if (first != rc)
        abort();
    return 0;
}
