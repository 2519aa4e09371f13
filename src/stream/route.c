#include "stream/route.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

int sl_route_family_ok(const struct sl_route *route, int af)
{
    switch (route->cfg->family) {
    case SL_FAMILY_V4: return af == AF_INET;
    case SL_FAMILY_V6: return af == AF_INET6;
    default: return af == AF_INET || af == AF_INET6;
    }
}

int sl_route_literal_target(const struct sl_route *route,
                            struct sockaddr_storage *out)
{
    const struct sl_route_config *rc = route->cfg;
    if (sl_addr_parse_ip(rc->host, rc->target_port, out) != 0)
        return 1;
    return sl_route_family_ok(route, out->ss_family) ? 0 : UV_EAI_ADDRFAMILY;
}

int sl_route_resolve(struct sl_route *route, uv_getaddrinfo_t *req,
                     uv_getaddrinfo_cb cb, int socktype)
{
    const struct sl_route_config *rc = route->cfg;
    struct addrinfo hints = {0};
    hints.ai_family = rc->family == SL_FAMILY_V4   ? AF_INET
                      : rc->family == SL_FAMILY_V6 ? AF_INET6
                                                   : AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_protocol = socktype == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", rc->target_port);
    return uv_getaddrinfo(route->ctx->loop, req, cb, rc->host, port, &hints);
}

void sl_route_upstream_failed(struct sl_route *route, const char *what,
                              unsigned long long id,
                              const struct sockaddr *client, int err,
                              const char *action)
{
    char a[SL_ADDR_STRLEN];
    route->stats.failed++;
    sl_warn(&route->ctx->log,
            "route \"%s\": %s #%llu from %s: upstream %s unreachable (%s); %s",
            route->cfg->name, what, id, sl_addr_str(client, a), route->target,
            sl_strerror(err), action);
}
