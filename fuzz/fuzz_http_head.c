/* libFuzzer target for HTTP head finding and parsing (net/http_head.h).
 * Invariants: the end found in one go is the end found when the bytes
 * arrive one at a time; a parsed head's pointers stay inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "net/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_inside(const struct sl_http_head *h, const char *buf,
                         size_t len)
{
    const char *end = buf + len;
    if (h->url != NULL && (h->url < buf || h->url + h->url_len > end))
        abort();
    if (h->nhdr > SL_HTTP_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < h->nhdr; i++) {
        const struct sl_http_header *x = &h->hdr[i];
        if (x->name < buf || x->name + x->name_len > end ||
            x->value < buf || x->value + x->value_len > end)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t max = 4096;
    ssize_t whole = sl_http_head_end(buf, size, 0, max);
    ssize_t step = 0;
    for (size_t n = 1; n <= size && step == 0; n++)
        step = sl_http_head_end(buf, n, n - 1, max);
    if (whole != step && !(whole == 0 && step == 0))
        abort();
    if (whole > 0) {
        struct sl_http_head h;
        for (int req = 0; req < 2; req++) {
            if (sl_http_head_parse(&h, req, buf, (size_t)whole) == 0) {
                check_inside(&h, buf, (size_t)whole);
                (void)sl_http_header_has_token(
                    sl_http_head_find(&h, "connection"), "upgrade");
                char v[64];
                (void)sl_http_head_get(&h, "host", v, sizeof(v));
            }
        }
    }
    return 0;
}
