/* The plan of an allocation in the admin API's JSON (hub/hub_plan.h):
 * which plan holds, its features, limits.rate, the grant's subject and
 * expiry, and when the password was last rotated. */
#ifndef SL_API_HUB_API_PLAN_H
#define SL_API_HUB_API_PLAN_H

#include <jansson.h>

#include "hub/hub_plan.h"

/* Adds to allocation object j: "plan" ("grant", "free", "allocation"),
 * "features" (["bridge", "tcp", "udp"]), "rate" (the bandwidth cap in
 * force, bytes/s each way, 0: none), "no_bridge" (true when the plan
 * admits no bridge; else absent), "grant"
 * ({"subject", "expires"} or null), "rotated_at" (unix s or null),
 * "old_password_until" (unix s or null). */
void sl_hub_api_plan_json(const struct sl_hub_plan_view *p, json_t *j);

#endif
