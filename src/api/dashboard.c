#include "api/dashboard.h"

#include <stdlib.h>
#include <string.h>

#include "api/server.h"

#define KEY_MARK "{{SLUICE_DASHBOARD_KEY}}"

/* What a browser is told for every dashboard file: nothing but this
 * origin's own scripts and styles, never framed (clickjacking), no
 * referrer leaving. */
static const char security_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; "
    "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n";

const struct sl_dash_asset *sl_dash_asset_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sl_dash_nassets; i++)
        if (strcmp(sl_dash_assets[i].name, name) == 0)
            return &sl_dash_assets[i];
    return NULL;
}

static int is_page(const struct sl_dash_asset *a)
{
    return strncmp(a->type, "text/html", 9) == 0;
}

void sl_dash_serve_page(struct sl_api_req *req, const char *page,
                        const char *key)
{
    const struct sl_dash_asset *a = sl_dash_asset_find(page);
    if (a == NULL || !is_page(a)) {
        sl_api_reply_error(req, 404, "Not found");
        return;
    }
    if (key == NULL)
        key = "";
    const char *text = (const char *)a->data;
    const char *mark = memmem(text, a->len, KEY_MARK, strlen(KEY_MARK));
    if (mark == NULL) {
        sl_api_reply_full(req, 200, a->type, security_headers, text, a->len);
        return;
    }
    size_t before = (size_t)(mark - text), klen = strlen(key);
    size_t after = a->len - before - strlen(KEY_MARK);
    char *out = malloc(before + klen + after);
    if (out == NULL) {
        sl_api_reply_error(req, 500, "Out of memory");
        return;
    }
    memcpy(out, text, before);
    memcpy(out + before, key, klen);
    memcpy(out + before + klen, mark + strlen(KEY_MARK), after);
    sl_api_reply_full(req, 200, a->type, security_headers, out,
                      before + klen + after);
    free(out);
}

void sl_dash_serve_asset(struct sl_api_req *req)
{
    const struct sl_dash_asset *a =
        sl_dash_asset_find(sl_api_req_param(req, "file"));
    if (a == NULL || is_page(a)) {
        sl_api_reply_error(req, 404, "Not found");
        return;
    }
    sl_api_reply_full(req, 200, a->type, security_headers,
                      (const char *)a->data, a->len);
}
