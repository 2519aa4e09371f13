/* Internal to the hub: plans (hub_grant.c) and bandwidth caps
 * (hub_rate.c), and the hooks through which hub.c, hub_bridge.c and
 * hub_user.c call them. hub_int.h includes this. */
#ifndef SL_HUB_PLAN_INT_H
#define SL_HUB_PLAN_INT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/list.h"
#include "hub/hub_plan.h"

struct sl_hub;
struct hub_alloc;
struct hub_conn;
struct sl_http_head;

/* Directions of a bandwidth cap. */
enum { HUB_RATE_DOWN = 0, HUB_RATE_UP = 1 };

/* hub_grant.c */

/* Loads the grant key (if any) into hub->plans; called early in start,
 * before any handle. Returns 0, SL_ECONFIG (logged) or UV_ENOMEM. */
int hub_plans_init(struct sl_hub *hub, const struct sl_hub_plan_options *o);
/* Starts the plans' timers (each counted in hub->open_handles). */
void hub_plans_run(struct sl_hub *hub);
/* Closes the timers (sl_hub_stop). */
void hub_plans_stop(struct sl_hub *hub);
/* Frees hub->plans (after the timers closed, or when start failed). */
void hub_plans_free(struct sl_hub *hub);
/* 1 when the hub demands grants. */
int hub_plans_demanded(const struct sl_hub *hub);

/* A new in-memory allocation a: its plan is read and put in force
 * (limits, cap, grace). Returns 0 or UV_ENOMEM. */
int hub_plan_load(struct hub_alloc *a);
/* The allocation goes: its plan and bucket are freed. */
void hub_plan_free(struct hub_alloc *a);

/* A control upgrade's grant (Sluice-Grant), read before any credential
 * is checked: a token that is malformed, forged, expired, without the
 * bridge feature, or (anonymous: a new allocation) bound to an identity
 * is refused here with 403 and its reason. Returns 1 if c goes on, 0 if
 * it was answered. */
int hub_grant_presented(struct hub_conn *c, const struct sl_http_head *h,
                        int anonymous);
/* Before the 101 of control connection c (credentials checked, c->alloc
 * set): the grant it presented is checked against its allocation and
 * put in force, and the plan's bridge count admits c or not (429). The
 * bridge's own earlier connections (same Sluice-Bridge) do not count:
 * they are replaced. Returns 1 if c goes on, 0 if it was answered. */
int hub_grant_admit(struct hub_conn *c);
/* Data connection c (credentials checked): a plan that admits no bridge
 * admits none of its data connections either (403). Returns 1 if c goes
 * on, 0 if it was answered. */
int hub_grant_data_admit(struct hub_conn *c);
/* The hello of c offers caps (SL_CAP_*): the plan must have the tcp and
 * udp features for stream ports. Returns 0, or -1 with why filled. */
int hub_grant_hello(struct hub_conn *c, unsigned caps, char *why,
                    size_t cap);

/* Password checks around a rotation. */
/* Fills c->auth's hash copies (the current and, in its grace, the old
 * one) for the check in the thread pool. */
void hub_grant_auth_hashes(struct hub_conn *c);
/* The thread pool's result for c (1: the first hash matched, 2: the
 * second): which password of c->alloc it is now (1 current, 2 the old
 * one in its grace, 0 neither: the hashes moved meanwhile). */
int hub_grant_verified(struct hub_conn *c, int result);
/* 1 if mac is the cached MAC of a's old password in its grace. */
int hub_grant_old_mac(struct hub_alloc *a, const unsigned char mac[32]);
/* Caches mac as a's old password's. */
void hub_grant_old_mac_set(struct hub_alloc *a, const unsigned char mac[32]);

/* hub_rate.c: token buckets per allocation, both ways, fair between
 * the allocation's connections. */

/* Sets a's cap (bytes/s each way; 0: none, held connections go on). */
int hub_rate_set(struct hub_alloc *a, uint64_t rate);
/* n bytes read by src (a user connection: HUB_RATE_UP; a data
 * connection: HUB_RATE_DOWN) for a: taken from its bucket, into debt if
 * need be; in debt, src stops reading until a tick pays it back. No byte
 * is dropped. */
void hub_rate_charge(struct hub_conn *src, struct hub_alloc *a, int dir,
                     size_t n);
/* How many bytes c may read at once now (HUB_BLOCK when uncapped): a
 * share small enough that every connection of a capped allocation gets
 * its turn. */
size_t hub_rate_read_cap(struct hub_conn *c);
/* For datagrams: takes n bytes of dir if the bucket holds them. Returns
 * 0, or SL_ELIMIT (nothing taken: drop the datagram). */
int hub_rate_take(struct hub_alloc *a, int dir, size_t n);
/* c is closing: it leaves any held list. */
void hub_rate_conn_closed(struct hub_conn *c);
/* The rate timer's callback (t->data the hub). */
void hub_rate_on_tick(uv_timer_t *t);

/* The hub's share, in hub->plans. */
struct hub_plans {
    EVP_PKEY *key; /* NULL: grants not demanded */
    struct sl_hub_plan_options o; /* defaults applied; no key path */
    uv_timer_t timer;      /* deadlines: grants expiring, graces ending */
    uv_timer_t rate_timer; /* while connections are held */
    int running;
    struct sl_link busy;   /* hub_bw with held connections */
};

#endif
