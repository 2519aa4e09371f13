/* The node's request inspector (node/node_inspect.h) on hostile bytes:
 * the input is a script of pieces, each a header byte (bit 7: direction,
 * bits 0-6: length) followed by that many bytes, fed to one connection's
 * tap; then every exchange is shown as JSON and turned into replay bytes,
 * as the node's API would. Nothing may crash or leak, and no line of a
 * secret header (Authorization, Cookie, ...) may hold more than
 * "[redacted]" (a replay: may hold none). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/dynbuf.h"
#include "node/node_inspect.h"

static int is_secret(const char *line, size_t n)
{
    static const char *const names[] = {
        "authorization:", "proxy-authorization:", "cookie:", "set-cookie:"};
    for (size_t k = 0; k < 4; k++) {
        size_t m = strlen(names[k]);
        if (n >= m && strncasecmp(line, names[k], m) == 0)
            return (int)m;
    }
    return 0;
}

/* Every line naming a secret header holds "[redacted]" and nothing else
 * (a replay's lines hold none at all). */
static void check_lines(const char *p, size_t len, int replay)
{
    const char *end = p + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n == 0)
            break; /* the head's end: a body may follow */
        int m = is_secret(p, n);
        if (m > 0 && (replay || n != (size_t)m + 11 ||
                      memcmp(p + m, " [redacted]", 11) != 0))
            abort();
        p = eol ? eol + 1 : end;
    }
}

static void check_head(json_t *head)
{
    if (json_is_string(head))
        check_lines(json_string_value(head), json_string_length(head), 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_inspect *in = sl_inspect_new(4);
    if (in == NULL)
        return 0;
    struct sl_inspect_conn *ic = sl_inspect_conn_new(in, 0);
    size_t i = 0;
    while (ic != NULL && i < size) {
        uint8_t h = data[i++];
        size_t n = h & 0x7f;
        if (n > size - i)
            n = size - i;
        sl_inspect_conn_feed(
            ic, (h & 0x80) ? SL_INSPECT_RESPONSE : SL_INSPECT_REQUEST,
            (const char *)data + i, n);
        i += n;
    }
    json_t *list = sl_inspect_list_json(in);
    json_decref(list);
    for (uint64_t id = 1; id <= sl_inspect_last_id(in); id++) {
        json_t *j = sl_inspect_get_json(in, id);
        check_head(json_object_get(json_object_get(j, "request"), "head"));
        check_head(json_object_get(json_object_get(j, "response"), "head"));
        json_decref(j);
        struct sl_dynbuf out = {0};
        char why[160];
        (void)sl_inspect_replay_bytes(in, id, &out, why, sizeof(why));
        if (out.data != NULL)
            check_lines(out.data, out.len, 1);
        sl_dynbuf_free(&out);
    }
    sl_inspect_conn_free(ic);
    sl_inspect_free(in);
    return 0;
}
