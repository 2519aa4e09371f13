/* The web dashboard of the hub's admin API and of the node's API: static
 * HTML, CSS and JavaScript compiled into the binary (src/api/assets/,
 * turned into C arrays at build time by assets/embed.py), so the page
 * works offline and needs no file beside the binary.
 *
 * The API that serves it routes GET "/" to sl_dash_serve_page and
 * GET "/ui/{file}" to sl_dash_serve_asset, and starts its server with
 * cfg.dashboard set (api/server.h has the access rule). Every answer
 * carries a strict Content-Security-Policy: scripts and styles only from
 * the page's own origin, no frames, no other hosts. */
#ifndef SL_API_DASHBOARD_H
#define SL_API_DASHBOARD_H

#include <stddef.h>

struct sl_api_req;

/* One embedded file (the generated table lists them by base name). */
struct sl_dash_asset {
    const char *name; /* "hub.html", "dash.js" */
    const char *type; /* content type */
    const unsigned char *data;
    size_t len;
};

extern const struct sl_dash_asset sl_dash_assets[];
extern const size_t sl_dash_nassets;

/* The asset of that name, or NULL. */
const struct sl_dash_asset *sl_dash_asset_find(const char *name);

/* Answers with the page (an HTML asset, e.g. "hub.html"), its
 * "{{SLUICE_DASHBOARD_KEY}}" replaced by key (the server's dashboard key;
 * NULL or "" leaves it empty). 404 if there is no such page. */
void sl_dash_serve_page(struct sl_api_req *req, const char *page,
                        const char *key);

/* Answers GET /ui/{file} with the asset named by the "file" placeholder
 * (404 when unknown; pages are not served this way). */
void sl_dash_serve_asset(struct sl_api_req *req);

#endif
