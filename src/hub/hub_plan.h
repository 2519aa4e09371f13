/* Plans on the hub (docs/plans.md): what each allocation may use. A hub
 * started with a grant key demands grants (tunnel/grant.h): a bridge
 * presents one in the Sluice-Grant header of its control connection,
 * and the allocation gets the grant's features and limits; a bridge
 * without one gets the free plan (1 bridge, 10,240,000 bytes), unless
 * the operator made the allocation (its own limits are its plan). Also
 * the bandwidth cap of each allocation (a token bucket each way) and the
 * rotation of its password with a grace period. */
#ifndef SL_HUB_PLAN_H
#define SL_HUB_PLAN_H

#include <stdint.h>

#include "hub/store.h"
#include "tunnel/grant.h"

struct sl_hub;

#define SL_HUB_FREE_BRIDGES 1
#define SL_HUB_FREE_TRAFFIC 10240000ULL /* DESIGN section 6: 10 MB */
#define SL_HUB_ROTATE_GRACE_MS 600000   /* 10 minutes */

struct sl_hub_plan_options {
    /* The Ed25519 public key (PEM, SPKI) grants must be signed with;
     * NULL: grants are not demanded (nor read). */
    const char *grant_key_file;
    /* The free plan: bridges at once (0: none without a grant) and
     * traffic in bytes (0: unlimited); negative: the defaults above. */
    int64_t free_bridges;
    int64_t free_traffic;
    /* The bandwidth cap (bytes/s each way) of an allocation that names
     * none itself and of the free plan; 0: none. */
    uint64_t default_rate;
    /* How long a rotated password still opens; 0: the default. */
    uint64_t rotate_grace_ms;
};

enum sl_hub_plan_source {
    SL_HUB_PLAN_ALLOCATION, /* the allocation's own limits */
    SL_HUB_PLAN_FREE,       /* the free plan: no valid grant */
    SL_HUB_PLAN_GRANT,      /* a grant in force */
};

/* What an allocation may use now, for the admin API. */
struct sl_hub_plan_view {
    enum sl_hub_plan_source source;
    struct sl_store_limits limits; /* in force; 0 = unlimited */
    int no_bridge;          /* the free plan admits no bridge at all */
    uint64_t rate;          /* bytes/s each way; 0: none */
    unsigned features;      /* SL_GRANT_* */
    int64_t expires;        /* of the grant (unix s); 0: none */
    char subject[SL_GRANT_SUBJECT_MAX]; /* of the grant */
    int64_t rotated_at;     /* unix s of the last rotation; 0: never */
    int64_t old_until_ms;   /* the old password opens until then (unix
                               ms); 0: no old password */
};

/* "grant", "free", "allocation". */
const char *sl_hub_plan_source_name(enum sl_hub_plan_source s);

/* The plan of allocation a (a row of st). hub may be NULL (an API
 * without a hub): the allocation's own limits. */
void sl_hub_plan_view(struct sl_hub *hub, struct sl_store *st,
                      const struct sl_alloc *a, struct sl_hub_plan_view *out);

/* The rotation of identity's password: its hash becomes hash (the
 * caller hashed the new password off the loop); the old password keeps
 * opening new connections for the grace period (*old_until_ms, unix
 * ms), after which the hub's connections that it opened are closed. hub
 * may be NULL. Returns 0, SL_ENOTFOUND or SL_ESTATE. */
int sl_hub_rotate(struct sl_hub *hub, struct sl_store *st,
                  const char *identity, const char *hash,
                  int64_t *old_until_ms);

#endif
