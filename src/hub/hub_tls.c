/* The hub's TLS front (--https): what a connection on the TLS listener is
 * before it is an HTTP connection like any other. Its first bytes are read
 * as they come, unterminated, until the ClientHello is whole; its server
 * name then says whether the hub terminates TLS (its own certificates,
 * chosen by SNI) or passes the bytes through untouched to a bridge whose
 * upstream holds the key. Also the plain listener's redirect to https. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/acme.h"
#include "acme/acme_alpn.h"
#include "core/error.h"
#include "hub/hub_int.h"
#include "proto/tls_hello.h"
#include "tls/tls_server.h"
#include "tunnel/host_route.h"

void hub_tls_accept(struct hub_conn *c)
{
    c->tls_front = TLS_PEEK;
    hub_conn_start_head(c); /* bytes land in head[]; hub_tls_peek reads */
}

static void on_handshake(struct sl_xprt *x, int status)
{
    struct hub_conn *c = x->tcp.data;
    if (c->closing)
        return;
    if (status != 0) {
        /* Scanners and wrong clients make these all day: debug only. */
        sl_debug(c->hub->log, "hub conn %llu from %s: TLS handshake failed: "
                              "%s", (unsigned long long)c->id, c->peer_ip,
                 status == UV_EPROTO ? sl_xprt_error(x) : sl_strerror(status));
        hub_conn_close(c, status);
        return;
    }
    c->tls_front = TLS_DONE;
    c->head_len = 0;
    c->head_scanned = 0;
    hub_conn_start_head(c);
}

/* Terminates TLS here with ssl (the hub's certificates unless given):
 * the bytes read so far are the first the TLS session gets. */
static void terminate(struct hub_conn *c, SSL *ssl)
{
    struct sl_hub *hub = c->hub;
    if (ssl == NULL)
        ssl = sl_tls_server_ssl(hub->tls);
    if (ssl == NULL) {
        hub_conn_close(c, UV_ENOMEM);
        return;
    }
    hub_conn_read_stop(c);
    c->tls_front = TLS_HANDSHAKE;
    int rc = sl_xprt_tls_start(&c->xp, ssl, c->head, c->head_len,
                               on_handshake);
    /* The hello is the transport's now; an idle connection keeps no
     * buffer of its own until its first request arrives. */
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = c->head_scanned = 0;
    if (rc != 0)
        hub_conn_close(c, rc);
}

/* A TLS-ALPN-01 validator: ALPN acme-tls/1 for a name whose challenge
 * is pending gets the challenge's certificate (RFC 8737), before any
 * routing; anyone else offering it is served as usual. */
static SSL *acme_validator(struct sl_hub *hub, const struct sl_tls_hello *h)
{
    if (hub->acme == NULL || h->server_name[0] == '\0')
        return NULL;
    for (size_t i = 0; i < h->nalpn; i++)
        if (strcmp(h->alpn[i], SL_ACME_ALPN_PROTO) == 0)
            return sl_acme_challenge_ssl(hub->acme, h->server_name);
    return NULL;
}

void hub_tls_peek(struct hub_conn *c)
{
    struct sl_hub *hub = c->hub;
    struct sl_tls_hello hello;
    int rc = sl_tls_hello_parse((const uint8_t *)c->head, c->head_len,
                                &hello);
    if (rc == SL_EINCOMPLETE) {
        if (c->head_len >= c->head_cap && c->head_cap >= SL_HTTP_HEAD_MAX)
            hub_conn_close(c, SL_ETOOBIG);
        return;
    }
    if (rc != 0) {
        if (!sl_tls_hello_is_tls((const uint8_t *)c->head, c->head_len) &&
            c->head_len > 0 && c->head[0] >= 'A' && c->head[0] <= 'Z') {
            /* What nginx says to plain HTTP on its TLS port. */
            sl_info(hub->log, "hub conn %llu from %s: plain HTTP on the TLS "
                              "port, answering 400",
                    (unsigned long long)c->id, c->peer_ip);
            c->tls_front = TLS_NONE;
            hub_conn_reply_close(c, 400, NULL, "Bad Request: plain HTTP "
                                 "request sent to the HTTPS port", NULL);
            return;
        }
        sl_debug(hub->log, "hub conn %llu from %s: not a TLS ClientHello "
                           "(%s), closing", (unsigned long long)c->id,
                 c->peer_ip, sl_strerror(rc));
        hub_conn_close(c, rc);
        return;
    }
    SSL *challenge = acme_validator(hub, &hello);
    if (challenge != NULL) {
        terminate(c, challenge);
        return;
    }
    char identity[SL_IDENTITY_LEN + 1];
    int route = hello.server_name[0] == '\0'
                    ? SL_ENOTFOUND
                    : sl_host_route(hello.server_name,
                                    strlen(hello.server_name), hub->s_domain,
                                    identity);
    struct hub_alloc *a = route == 0 ? hub_alloc_get(hub, identity) : NULL;
    if (route == 0 && a == NULL) {
        /* An identity this hub does not know: told at once with an alert,
         * before any certificate is made or sent. (Other names under the
         * domain, "www" or "api", are the operator's: terminated, with
         * their own certificate if one is given.) */
        sl_debug(hub->log, "hub conn %llu from %s: TLS for unknown name %s, "
                           "alert unrecognized_name",
                 (unsigned long long)c->id, c->peer_ip, hello.server_name);
        static const char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112};
        c->tls_front = TLS_NONE;
        hub_conn_read_stop(c);
        if (hub_conn_write(c, NULL, alert, sizeof(alert)) == 0)
            hub_conn_finish(c);
        else
            hub_conn_close(c, UV_ECONNRESET);
        return;
    }
    if (a != NULL && a->passthrough) {
        c->tls_front = TLS_PASSTHROUGH;
        hub_user_passthrough(c, a);
        return;
    }
    terminate(c, NULL);
}

int hub_tls_redirect(struct hub_conn *c, const struct sl_http_head *h)
{
    struct sl_hub *hub = c->hub;
    if (!hub->opts.https_redirect || !hub->has_tls_listener ||
        sl_xprt_is_tls(&c->xp))
        return 0;
    const struct sl_http_header *host = sl_http_head_find(h, "host");
    if (host == NULL)
        return 0;
    /* The host without its port; the TLS listener's port unless 443. */
    size_t hlen = host->value_len;
    const char *colon = memrchr(host->value, ':', hlen);
    const char *bracket = memrchr(host->value, ']', hlen);
    if (colon != NULL && (bracket == NULL || colon > bracket))
        hlen = (size_t)(colon - host->value);
    char port[16] = "";
    int p = hub->opts.public_port > 0 ? hub->opts.public_port : hub->tls_port;
    if (p != 443 && hub->opts.public_port != -1)
        snprintf(port, sizeof(port), ":%d", p);
    char loc[SL_HTTP_HEAD_MAX / 8];
    int n = snprintf(loc, sizeof(loc), "Location: https://%.*s%s%.*s\r\n",
                     (int)hlen, host->value, port, (int)h->url_len, h->url);
    if (n < 0 || (size_t)n >= sizeof(loc)) {
        hub_conn_reply_close(c, 414, NULL, "URI Too Long", NULL);
        return 1;
    }
    if (strpbrk(loc + 10, "\r\n") != loc + n - 2) {
        hub_conn_reply_close(c, 400, NULL, "Bad Request", NULL);
        return 1;
    }
    hub_conn_reply_close(c, 308, NULL, "Permanent Redirect", loc);
    return 1;
}
