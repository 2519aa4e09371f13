/* A growing byte buffer with a hard maximum (curl's dynbuf): request and
 * response bodies, URLs. The content is always NUL-terminated (the NUL is
 * not counted in len and not part of max). */
#ifndef SL_CORE_DYNBUF_H
#define SL_CORE_DYNBUF_H

#include <stddef.h>

/* Zero-initialise ({0}) for an empty buffer; owns data. */
struct sl_dynbuf {
    char *data; /* NULL while nothing was appended */
    size_t len;
    size_t cap;
};

/* Appends p[0..n) so that len never exceeds max (which must be below
 * SIZE_MAX / 2). Returns 0, SL_ETOOBIG (the content would pass max),
 * UV_ENOMEM or UV_EINVAL (max too large); b is unchanged on error. */
int sl_dynbuf_append(struct sl_dynbuf *b, const void *p, size_t n,
                     size_t max);

/* Frees the memory and leaves b empty. */
void sl_dynbuf_free(struct sl_dynbuf *b);

/* Hands the memory to the caller (free() it): the content, or a new ""
 * when nothing was appended; NULL only if that "" cannot be allocated.
 * Leaves b empty either way. */
char *sl_dynbuf_take(struct sl_dynbuf *b);

#endif
