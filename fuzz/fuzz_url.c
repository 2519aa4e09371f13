/* libFuzzer target for the node's URL parser (an upstream from
 * --upstream or POST /api/bridge/, a hub from --hub). The first byte
 * picks the parser; the rest is the URL. The result lives in a heap block
 * of its exact size, so AddressSanitizer sees any write past it.
 * Invariants: a refusal is SL_EPARSE with a reason; an accepted URL has a
 * NUL-terminated host that fits, an IPv6 host that inet_pton takes (zone
 * aside), a port, and formats to a URL that parses back to the same. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "node/node_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(int hub, const char *text, struct sl_node_url *u, char *err,
                 size_t errcap)
{
    return hub ? sl_node_url_parse_hub(text, u, err, errcap)
               : sl_node_url_parse_upstream(text, u, err, errcap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int hub = data[0] & 1;
    size_t n = size - 1;
    char *text = malloc(n + 1);
    struct sl_node_url *u = malloc(sizeof(*u));
    char *err = malloc(96); /* smaller than most URLs: must not overflow */
    if (text == NULL || u == NULL || err == NULL)
        abort();
    memcpy(text, data + 1, n);
    text[n] = '\0';
    err[0] = '\0';
    int rc = parse(hub, text, u, err, 96);
    if (rc != 0) {
        if (rc != SL_EPARSE || err[0] == '\0' || memchr(err, '\0', 96) == NULL)
            abort();
        goto out;
    }
    size_t hl = strnlen(u->host, sizeof(u->host));
    if (hl == 0 || hl >= sizeof(u->host) || u->port == 0)
        abort();
    if (strchr(u->host, ':') != NULL) {
        char lit[SL_NODE_HOST_MAX];
        unsigned char bin[16];
        size_t al = strcspn(u->host, "%");
        memcpy(lit, u->host, al);
        lit[al] = '\0';
        if (inet_pton(AF_INET6, lit, bin) != 1)
            abort();
    } else if (strchr(u->host, '%') != NULL) {
        abort(); /* a zone only on an IPv6 literal */
    }
    char buf[SL_NODE_URL_MAX + 16], hh[SL_NODE_URL_MAX + 16];
    if (sl_node_url_format(u, buf, sizeof(buf)) != 0 ||
        sl_node_url_host_header(u, hh, sizeof(hh)) != 0)
        abort();
    struct sl_node_url *again = malloc(sizeof(*again));
    if (again == NULL)
        abort();
    if (parse(hub, buf, again, err, 96) != 0 ||
        strcmp(again->host, u->host) != 0 || again->port != u->port ||
        again->tls != u->tls)
        abort();
    free(again);
out:
    free(err);
    free(u);
    free(text);
    return 0;
}
