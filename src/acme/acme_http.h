/* The HTTP client of the ACME client: libcurl, one request at a time, each
 * run on the libuv thread pool (uv_queue_work) so the loop never waits on
 * the CA. One curl handle is kept and reused, so requests ride one
 * keep-alive connection to the CA.
 *
 * Bounds: connect 10 s, whole request timeout_ms (default 30 s), response
 * body SL_ACME_HTTP_BODY_MAX; no redirects followed; HTTPS verified
 * against the system store or the CA bundle given. */
#ifndef SL_ACME_HTTP_H
#define SL_ACME_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "acme/acme_json.h"
#include "core/dynbuf.h"

#define SL_ACME_HTTP_BODY_MAX (1024 * 1024)
#define SL_ACME_NONCE_MAX 256

enum sl_acme_http_method {
    SL_ACME_GET,
    SL_ACME_HEAD,
    SL_ACME_POST, /* Content-Type: application/jose+json */
};

struct sl_acme_http;
struct sl_acme_http_req;

typedef void (*sl_acme_http_cb)(struct sl_acme_http_req *r);

/* One request. The caller fills the inputs, keeps the struct alive until
 * its callback, and frees what it owns after. */
struct sl_acme_http_req {
    /* in */
    enum sl_acme_http_method method;
    char url[SL_ACME_URL_MAX];
    char *body;         /* POST body, owned by the caller */
    const char *accept; /* Accept header, or NULL */
    sl_acme_http_cb cb;
    void *arg;
    /* out: status 0 when the request failed below HTTP (error says why:
     * curl's words, which name the address it tried) */
    long status;
    struct sl_dynbuf resp;         /* the body; the caller frees it */
    char nonce[SL_ACME_NONCE_MAX]; /* Replay-Nonce, or "" */
    char location[SL_ACME_URL_MAX];
    char content_type[96];
    char retry_after[64]; /* the header's value as sent, or "" */
    int cancelled;        /* the client was freed meanwhile */
    char error[320];
    /* private */
    uv_work_t work;
    struct sl_acme_http *client;
    int too_big;
};

/* Opens libcurl (acme/curl_lib.h), once per process, so that a hub
 * without it fails as it starts ACME. Returns 0 or an error with one line
 * in err (cap bytes), e.g. "cannot load libcurl.so.4 (install libcurl4):
 * ..." (dlerror's words). */
int sl_acme_http_load(char *err, size_t cap);

/* A client verifying the CA against ca_file (PEM bundle; NULL: the system
 * store). timeout_ms 0: 30 s. Returns 0 or UV_ENOMEM (libcurl is not
 * loaded, or curl could not be set up; *out is NULL). */
int sl_acme_http_new(uv_loop_t *loop, const char *ca_file, uint64_t timeout_ms,
                     struct sl_acme_http **out);

/* Starts r (nothing else may run: one at a time, UV_EBUSY otherwise).
 * r->cb runs on the loop when it is done, also after
 * sl_acme_http_free (then r->cancelled is 1). Returns 0 or a libuv
 * error (then no callback). */
int sl_acme_http_send(struct sl_acme_http *c, struct sl_acme_http_req *r);

/* 1 while a request runs. */
int sl_acme_http_busy(const struct sl_acme_http *c);

/* Aborts the running request (its callback still comes, cancelled) and
 * frees the client once it is done; keep running the loop. NULL is
 * ignored. */
void sl_acme_http_free(struct sl_acme_http *c);

#endif
