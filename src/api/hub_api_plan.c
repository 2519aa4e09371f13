#include "api/hub_api_plan.h"

#include <time.h>

static json_t *time_or_null(int64_t t)
{
    return t > 0 ? json_integer((json_int_t)t) : json_null();
}

void sl_hub_api_plan_json(const struct sl_hub_plan_view *p, json_t *j)
{
    /* Beside "limits", whose members clients compare as a whole. */
    json_object_set_new(j, "rate",
                        json_integer(p->rate > INT64_MAX ? INT64_MAX
                                                         : (json_int_t)p->rate));
    if (p->no_bridge)
        json_object_set_new(j, "no_bridge", json_true());
    json_object_set_new(j, "plan",
                        json_string(sl_hub_plan_source_name(p->source)));
    json_t *f = json_array();
    if (p->features & SL_GRANT_BRIDGE)
        json_array_append_new(f, json_string("bridge"));
    if (p->features & SL_GRANT_TCP)
        json_array_append_new(f, json_string("tcp"));
    if (p->features & SL_GRANT_UDP)
        json_array_append_new(f, json_string("udp"));
    json_object_set_new(j, "features", f);
    if (p->source == SL_HUB_PLAN_GRANT) {
        char exp[SL_GRANT_TIME_LEN + 1];
        if (p->expires > 0)
            sl_grant_time_format(p->expires, exp);
        json_object_set_new(
            j, "grant",
            json_pack("{s:o, s:o}", "subject",
                      p->subject[0] ? json_string(p->subject) : json_null(),
                      "expires",
                      p->expires > 0 ? json_string(exp) : json_null()));
    } else {
        json_object_set_new(j, "grant", json_null());
    }
    json_object_set_new(j, "rotated_at", time_or_null(p->rotated_at));
    /* Only while the grace runs. */
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    json_object_set_new(j, "old_password_until",
                        p->old_until_ms > now_ms
                            ? json_integer((json_int_t)(p->old_until_ms / 1000))
                            : json_null());
}
