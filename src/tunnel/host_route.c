#include "tunnel/host_route.h"

#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "core/str.h"

#define NAME_MAX_LEN 253

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Letters, digits, '-' and '.', as in a DNS name; '_' too since some
 * internal names carry it. Anything else makes the Host malformed. */
static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

int sl_host_route(const char *host, size_t len, const char *domain,
                  char identity[SL_IDENTITY_LEN + 1])
{
    char name[NAME_MAX_LEN + 2];
    char dom[NAME_MAX_LEN + 2];
    if (identity == NULL || domain == NULL)
        return UV_EINVAL;
    identity[0] = '\0';

    size_t dlen = strnlen(domain, NAME_MAX_LEN + 2);
    if (dlen > 0 && domain[dlen - 1] == '.')
        dlen--;
    if (dlen == 0 || dlen > NAME_MAX_LEN)
        return UV_EINVAL;
    /* Labels of 1-63 name characters: a domain no Host can match would
     * make every identity unreachable without a word. */
    size_t label = 0;
    for (size_t i = 0; i < dlen; i++) {
        dom[i] = lower(domain[i]);
        if (dom[i] == '.') {
            if (label == 0)
                return UV_EINVAL;
            label = 0;
        } else if (!is_name_char(dom[i]) || ++label > 63) {
            return UV_EINVAL;
        }
    }

    if (host == NULL)
        return SL_ENOTFOUND;
    sl_trim_ows(&host, &len);
    /* An IPv6 literal is never a name under the domain. */
    if (len == 0 || host[0] == '[')
        return SL_ENOTFOUND;

    /* Split off the port: the name itself cannot contain ':'. */
    size_t nlen = len;
    int bad_port = 0;
    const char *colon = memchr(host, ':', len);
    if (colon != NULL) {
        nlen = (size_t)(colon - host);
        size_t plen = len - nlen - 1;
        bad_port = plen == 0 || plen > 5;
        for (size_t i = nlen + 1; i < len; i++) {
            if (host[i] < '0' || host[i] > '9')
                bad_port = 1;
        }
    }
    if (nlen > 0 && host[nlen - 1] == '.')
        nlen--;
    if (nlen == 0 || nlen > NAME_MAX_LEN)
        return SL_ENOTFOUND;
    for (size_t i = 0; i < nlen; i++) {
        name[i] = lower(host[i]);
        if (!is_name_char(name[i]))
            return SL_ENOTFOUND;
    }

    /* Under the domain means "<something>.<domain>": the apex itself and
     * names that merely end with the same letters ("evillocalhost") are
     * the hub's own. */
    if (nlen <= dlen + 1 || memcmp(name + nlen - dlen, dom, dlen) != 0 ||
        name[nlen - dlen - 1] != '.')
        return SL_ENOTFOUND;
    size_t llen = nlen - dlen - 1;
    if (bad_port || !sl_identity_valid(name, llen))
        return SL_EPARSE;
    memcpy(identity, name, SL_IDENTITY_LEN);
    identity[SL_IDENTITY_LEN] = '\0';
    return 0;
}
