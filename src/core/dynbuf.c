#include "core/dynbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"

#define DYNBUF_FIRST_CAP 256

int sl_dynbuf_append(struct sl_dynbuf *b, const void *p, size_t n,
                     size_t max)
{
    if (max >= SIZE_MAX / 2)
        return UV_EINVAL;
    if (n > max || b->len > max - n)
        return SL_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        /* Double, but never past what max can need: max + 1 (the NUL). */
        size_t cap = b->cap ? b->cap : DYNBUF_FIRST_CAP;
        while (cap < b->len + n + 1 && cap <= max)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return UV_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void sl_dynbuf_free(struct sl_dynbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

char *sl_dynbuf_take(struct sl_dynbuf *b)
{
    char *d = b->data;
    if (d == NULL)
        d = calloc(1, 1);
    memset(b, 0, sizeof(*b));
    return d;
}
