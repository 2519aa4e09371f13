/* Limits on allocations without credentials (item 6 of docs/security.md):
 * each costs an scrypt run on the shared thread pool, a row in the store
 * and memory, so they are rate-limited per source and for the whole hub,
 * and those left without a bridge expire. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "hub/hub_int.h"

#define MINUTE_MS 60000.0

void hub_source_key(const char *ip, char *out, size_t cap)
{
    struct in6_addr a6;
    if (strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, &a6) == 1) {
        char text[INET6_ADDRSTRLEN];
        memset(a6.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) != NULL) {
            snprintf(out, cap, "%s/64", text);
            return;
        }
    }
    snprintf(out, cap, "%s", ip);
}


/* Refills b to now at rate a minute (at most rate tokens: the burst). */
static void refill(struct hub_bucket *b, uint32_t rate, uint64_t now)
{
    if (b->refilled == 0) {
        b->tokens = rate;
    } else if (now > b->refilled) {
        b->tokens += (double)(now - b->refilled) * rate / MINUTE_MS;
        if (b->tokens > rate)
            b->tokens = rate;
    }
    b->refilled = now ? now : 1;
}

/* The bucket of key; a full table gives up the fullest bucket (the one
 * that says least), so a spray of sources cannot refill a busy one. */
static struct hub_bucket *bucket_of_key(struct sl_hub *hub, const char *key,
                                        uint32_t rate, uint64_t now)
{
    struct hub_bucket *victim = NULL;
    for (size_t i = 0; i < HUB_RATE_SLOTS; i++) {
        struct hub_bucket *b = &hub->alloc_rate[i];
        if (b->key[0] == '\0') {
            if (victim == NULL || victim->key[0] != '\0')
                victim = b;
            continue;
        }
        if (strcmp(b->key, key) == 0)
            return b;
        if (victim != NULL && victim->key[0] == '\0')
            continue;
        refill(b, rate, now);
        if (victim == NULL || b->tokens > victim->tokens)
            victim = b;
    }
    memset(victim, 0, sizeof(*victim));
    snprintf(victim->key, sizeof(victim->key), "%s", key);
    return victim;
}

static unsigned wait_s(const struct hub_bucket *b, uint32_t rate)
{
    double ms = (1.0 - b->tokens) * MINUTE_MS / rate;
    unsigned s = (unsigned)(ms / 1000.0) + 1;
    return s;
}

unsigned hub_alloc_admit(struct sl_hub *hub, const char *ip)
{
    uint64_t now = uv_now(hub->loop);
    uint32_t rs = hub->opts.alloc_rate_per_source;
    uint32_t rg = hub->opts.alloc_rate_global;
    char key[SL_ADDR_STRLEN];
    hub_source_key(ip, key, sizeof(key));
    /* 0 is no limit: a bucket that never empties. */
    struct hub_bucket one = {.tokens = 2.0};
    struct hub_bucket *src = rs ? bucket_of_key(hub, key, rs, now) : &one;
    struct hub_bucket *all = rg ? &hub->alloc_rate_all : &one;
    if (rs)
        refill(src, rs, now);
    if (rg)
        refill(all, rg, now);
    if (src->tokens < 1.0) {
        if (!src->logged)
            sl_warn(hub->log, "hub: too many allocations from %s (over %u "
                    "a minute), answering 429 until it slows down", key, rs);
        src->logged = 1;
        return wait_s(src, rs);
    }
    if (all->tokens < 1.0) {
        if (!all->logged)
            sl_warn(hub->log, "hub: too many allocations in total (over %u "
                    "a minute), answering 429 until they slow down", rg);
        all->logged = 1;
        return wait_s(all, rg);
    }
    src->tokens -= 1.0;
    all->tokens -= 1.0;
    src->logged = all->logged = 0;
    return 0;
}

void hub_guard_warn(struct sl_hub *hub, const struct sockaddr *listen)
{
    if (hub->s_token != NULL || sl_addr_is_loopback(listen))
        return;
    char rs[16] = "no limit", rg[16] = "no limit";
    if (hub->opts.alloc_rate_per_source)
        snprintf(rs, sizeof(rs), "%u", hub->opts.alloc_rate_per_source);
    if (hub->opts.alloc_rate_global)
        snprintf(rg, sizeof(rg), "%u", hub->opts.alloc_rate_global);
    sl_warn(hub->log, "hub: WARNING: listening on %s without "
            "--gateway-token: anyone who reaches it can allocate "
            "identities (%s a minute per source, %s in all); give "
            "--gateway-token-file or $SLUICE_GATEWAY_TOKEN",
            hub->address, rs, rg);
}

/* Idle expiry. */

struct expire_ctx {
    struct sl_hub *hub;
    int64_t cutoff;
    char (*ids)[SL_IDENTITY_LEN + 1];
    size_t n, cap;
};

static int expire_keep(const struct sl_alloc *s, void *arg)
{
    struct expire_ctx *x = arg;
    struct hub_alloc *a = hub_alloc_find(x->hub, s->identity);
    /* Live ones stay, and those the hub saw since the cutoff but has not
     * flushed yet. */
    if (a != NULL && (a->ncontrols > 0 || a->npool > 0 || a->npairs > 0 ||
                      a->last_seen >= x->cutoff))
        return 1;
    if (strlen(s->identity) != SL_IDENTITY_LEN)
        return 1;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        void *p = realloc(x->ids, cap * sizeof(*x->ids));
        if (p == NULL)
            return 1; /* kept: the next sweep tries again */
        x->ids = p;
        x->cap = cap;
    }
    memcpy(x->ids[x->n++], s->identity, SL_IDENTITY_LEN + 1);
    return 0;
}

void hub_expire_idle(struct sl_hub *hub)
{
    uint64_t expiry = hub->opts.alloc_idle_expiry_s;
    if (expiry == 0 || hub->stopping)
        return;
    uint64_t now_ms = uv_now(hub->loop);
    if (now_ms < hub->expiry_next)
        return;
    /* A quarter of the expiry, between 1 s and a minute: removal comes
     * soon enough, the store is not scanned at every flush. */
    uint64_t period = expiry * 250;
    period = period < 1000 ? 1000 : period > 60000 ? 60000 : period;
    hub->expiry_next = now_ms + period;
    int64_t now = (int64_t)time(NULL);
    int64_t age = expiry > (uint64_t)now ? now : (int64_t)expiry;
    struct expire_ctx x = {hub, now - age, NULL, 0, 0};
    size_t removed = 0;
    int rc = sl_store_prune(hub->store, now, age, expire_keep, &x, &removed);
    if (rc != 0) {
        sl_error(hub->log, "hub: expiring idle allocations failed: %s",
                 sl_strerror(rc));
        free(x.ids);
        return;
    }
    for (size_t i = 0; i < x.n; i++) {
        sl_info(hub->log, "hub alloc %s: expired (no bridge for %llu s), "
                "removed", x.ids[i], (unsigned long long)expiry);
        sl_hub_forget(hub, x.ids[i]);
    }
    free(x.ids);
}
