#include "stream/srctab.h"

#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/error.h"

/* ---- SipHash-2-4 (Aumasson and Bernstein, reference layout) ---------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                               \
    do {                                                                       \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);              \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                 \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                 \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);              \
    } while (0)

uint64_t sl_siphash24(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;
    size_t full = len - len % 8;

    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int sl_srctab_random_key(uint8_t key[16])
{
    if (RAND_bytes(key, 16) == 1)
        return 0;
    /* Still better than a fixed key: differs per process and per start. */
    uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)key;
    uint64_t h = uv_hrtime();
    memcpy(key, &t, 8);
    memcpy(key + 8, &h, 8);
    return -1;
}

/* ---- table ----------------------------------------------------------- */

struct sl_srctab_entry {
    struct sl_srctab_entry *next;
    uint8_t prefix[17]; /* family tag, then the masked address */
    unsigned count;
};

/* Writes sa's masked prefix into out; returns 0, or -1 for other
 * families. */
static int prefix_of(const struct sl_srctab *t, const struct sockaddr *sa,
                     uint8_t out[17])
{
    const uint8_t *a;
    unsigned bits, n;

    memset(out, 0, 17);
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)
                ->sin_addr;
        bits = t->v4_bits;
        n = 4;
        out[0] = 4;
    } else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        bits = t->v6_bits;
        n = 16;
        out[0] = 6;
    } else {
        return -1;
    }
    for (unsigned i = 0; i < n && bits > 0; i++) {
        unsigned take = bits >= 8 ? 8 : bits;
        out[1 + i] = (uint8_t)(a[i] & (0xff00u >> take));
        bits -= take;
    }
    return 0;
}

static struct sl_srctab_entry **find(const struct sl_srctab *t,
                                     const uint8_t prefix[17])
{
    size_t b = (size_t)sl_siphash24(t->key, prefix, 17) & (t->nbuckets - 1);
    struct sl_srctab_entry **pp = &t->buckets[b];
    while (*pp != NULL && memcmp((*pp)->prefix, prefix, 17) != 0)
        pp = &(*pp)->next;
    return pp;
}

int sl_srctab_init(struct sl_srctab *t, unsigned v4_bits, unsigned v6_bits,
                   size_t expect)
{
    memset(t, 0, sizeof(*t));
    t->v4_bits = v4_bits > 32 ? 32 : v4_bits;
    t->v6_bits = v6_bits > 128 ? 128 : v6_bits;
    t->nbuckets = 64;
    while (t->nbuckets < expect && t->nbuckets < 65536)
        t->nbuckets *= 2;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL)
        return UV_ENOMEM;
    sl_srctab_random_key(t->key);
    return 0;
}

void sl_srctab_free(struct sl_srctab *t)
{
    for (size_t i = 0; t->buckets != NULL && i < t->nbuckets; i++) {
        struct sl_srctab_entry *e = t->buckets[i];
        while (e != NULL) {
            struct sl_srctab_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->nentries = 0;
}

unsigned sl_srctab_count(const struct sl_srctab *t, const struct sockaddr *sa)
{
    uint8_t p[17];
    if (t->buckets == NULL || prefix_of(t, sa, p) != 0)
        return 0;
    struct sl_srctab_entry **pp = find(t, p);
    return *pp != NULL ? (*pp)->count : 0;
}

int sl_srctab_take(struct sl_srctab *t, const struct sockaddr *sa,
                   unsigned max)
{
    uint8_t p[17];
    if (t->buckets == NULL || prefix_of(t, sa, p) != 0)
        return 0;
    struct sl_srctab_entry **pp = find(t, p);
    if (*pp != NULL) {
        if (max != 0 && (*pp)->count >= max)
            return SL_ELIMIT;
        (*pp)->count++;
        return 0;
    }
    struct sl_srctab_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return UV_ENOMEM;
    memcpy(e->prefix, p, 17);
    e->count = 1;
    *pp = e;
    t->nentries++;
    return 0;
}

void sl_srctab_release(struct sl_srctab *t, const struct sockaddr *sa)
{
    uint8_t p[17];
    if (t->buckets == NULL || prefix_of(t, sa, p) != 0)
        return;
    struct sl_srctab_entry **pp = find(t, p);
    struct sl_srctab_entry *e = *pp;
    if (e == NULL)
        return;
    if (--e->count == 0) {
        *pp = e->next;
        free(e);
        t->nentries--;
    }
}
