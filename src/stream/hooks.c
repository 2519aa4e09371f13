#include "stream/hooks.h"

#include "core/error.h"
#include "proto/acl.h"

int sl_hooks_add_pre_dial(struct sl_hooks *h, sl_pre_dial_fn fn, void *arg)
{
    if (h->npre_dial >= SL_HOOKS_MAX)
        return SL_ELIMIT;
    h->pre_dial[h->npre_dial].fn = fn;
    h->pre_dial[h->npre_dial].arg = arg;
    h->npre_dial++;
    return 0;
}

int sl_hooks_add_on_read(struct sl_hooks *h, sl_on_read_fn fn, void *arg)
{
    if (h->non_read >= SL_HOOKS_MAX)
        return SL_ELIMIT;
    h->on_read[h->non_read].fn = fn;
    h->on_read[h->non_read].arg = arg;
    h->non_read++;
    return 0;
}

int sl_hooks_add_on_close(struct sl_hooks *h, sl_on_close_fn fn, void *arg)
{
    if (h->non_close >= SL_HOOKS_MAX)
        return SL_ELIMIT;
    h->on_close[h->non_close].fn = fn;
    h->on_close[h->non_close].arg = arg;
    h->non_close++;
    return 0;
}

int sl_hooks_pre_dial(const struct sl_hooks *h, const struct sl_hook_stream *st,
                      const char **reason)
{
    *reason = "";
    for (size_t i = 0; i < h->npre_dial; i++) {
        const char *why = "refused";
        int rc = h->pre_dial[i].fn(h->pre_dial[i].arg, st, &why);
        if (rc != 0) {
            *reason = why != NULL ? why : "refused";
            return rc < 0 ? rc : SL_EDENIED;
        }
    }
    return 0;
}

int sl_hooks_on_read(const struct sl_hooks *h, const struct sl_hook_stream *st,
                     size_t n, enum sl_hook_dir dir)
{
    for (size_t i = 0; i < h->non_read; i++) {
        int rc = h->on_read[i].fn(h->on_read[i].arg, st, n, dir);
        if (rc != 0)
            return rc < 0 ? rc : SL_EDENIED;
    }
    return 0;
}

void sl_hooks_on_close(const struct sl_hooks *h,
                       const struct sl_hook_stream *st)
{
    for (size_t i = 0; i < h->non_close; i++)
        h->on_close[i].fn(h->on_close[i].arg, st);
}

int sl_hook_acl(void *arg, const struct sl_hook_stream *st,
                const char **reason)
{
    const struct sl_acl *acl = arg;
    if (acl == NULL || sl_acl_allows(acl, st->client))
        return 0;
    *reason = "acl";
    return SL_EDENIED;
}

int sl_hook_limit(void *arg, const struct sl_hook_stream *st,
                  const char **reason)
{
    const struct sl_hook_limit *lim = arg;
    if (lim->max == 0 || lim->active == NULL || *lim->active < lim->max)
        return 0;
    *reason = st->udp ? "session limit" : "connection limit";
    return SL_ELIMIT;
}

int sl_hook_count_bytes(void *arg, const struct sl_hook_stream *st, size_t n,
                        enum sl_hook_dir dir)
{
    struct sl_stream_stats *stats = arg;
    (void)st;
    if (dir == SL_HOOK_UP)
        stats->bytes_in += n;
    else
        stats->bytes_out += n;
    return 0;
}
