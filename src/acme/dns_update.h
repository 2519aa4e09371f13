/* DNS-01 through an operator's DNS server (RFC 2136 dynamic updates with
 * TSIG): puts the _acme-challenge TXT records of a name on the server,
 * waits until the server answers with them, and takes them away again.
 *
 * The zone to update is found by asking the server for the SOA of the
 * record's name (its owner in the answer or the authority section). Every
 * message goes over UDP (three tries within the timeout), or over TCP when
 * the answer is truncated or UDP gets no answer at all. Answers must carry
 * a valid TSIG from the same key, else they are not believed.
 *
 * One operation at a time; everything on the loop. */
#ifndef SL_ACME_DNS_UPDATE_H
#define SL_ACME_DNS_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "acme/dns_msg.h"
#include "core/log.h"

struct sl_dns_update;

/* rc 0: done. Otherwise a negative code and why: one sentence naming the
 * server and what it said ("127.0.0.1:5353 refused the update: TSIG
 * BADSIG (wrong key?)"). */
typedef void (*sl_dns_update_cb)(void *arg, int rc, const char *why);

struct sl_dns_update_opts {
    const char *server;   /* "host:port" */
    const char *key_file; /* nsupdate's format */
    uint64_t timeout_ms;  /* per message; 0: 6000 */
    uint64_t visible_ms;  /* how long to wait for the records to show;
                             0: 120000 */
    uint32_t ttl;         /* of the records; 0: 60 */
};

/* Reads the key file (blocking: before the loop runs). Returns 0 or
 * SL_ECONFIG with err naming the file and the problem. */
int sl_dns_update_new(uv_loop_t *loop, struct sl_log *log,
                      const struct sl_dns_update_opts *opts,
                      struct sl_dns_update **out, char *err, size_t cap);

/* Adds TXT records name=values[i] (n of them), then waits until the
 * server answers a TXT query for name with all of them; cb once. Returns
 * 0, UV_EBUSY (an operation runs) or UV_ENOMEM (no callback then). */
int sl_dns_update_publish(struct sl_dns_update *u, const char *name,
                          const char *const *values, size_t n,
                          sl_dns_update_cb cb, void *arg);

/* Deletes those records (each exactly); cb once. */
int sl_dns_update_remove(struct sl_dns_update *u, const char *name,
                         const char *const *values, size_t n,
                         sl_dns_update_cb cb, void *arg);

/* 1 while an operation runs. */
int sl_dns_update_busy(const struct sl_dns_update *u);

/* Stops what runs (no callback) and frees u once its handles are
 * closed; keep running the loop. NULL is ignored. */
void sl_dns_update_free(struct sl_dns_update *u);

#endif
