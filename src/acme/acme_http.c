#include "acme/acme_http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/curl_lib.h"
#include "core/error.h"

#define CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS 30000

struct sl_acme_http {
    uv_loop_t *loop;
    const struct sl_curl_lib *lib; /* libcurl's functions (curl_lib.h) */
    CURL *curl; /* used by one pool thread at a time, never two */
    char *ca_file;
    long timeout_ms;
    struct sl_acme_http_req *running;
    atomic_int abort; /* set on the loop, read by curl in the pool */
    int freeing;
};

static void copy_value(char *out, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' ||
                     v[n - 1] == '\t'))
        n--;
    if (n >= cap)
        n = 0; /* too long to be what we want: as if absent */
    memcpy(out, v, n);
    out[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nitems, void *arg)
{
    struct sl_acme_http_req *r = arg;
    size_t n = size * nitems;
    static const struct {
        const char *name;
        size_t off, cap;
    } keep[] = {
        {"replay-nonce", offsetof(struct sl_acme_http_req, nonce),
         SL_ACME_NONCE_MAX},
        {"location", offsetof(struct sl_acme_http_req, location),
         SL_ACME_URL_MAX},
        {"content-type", offsetof(struct sl_acme_http_req, content_type), 96},
        {"retry-after", offsetof(struct sl_acme_http_req, retry_after), 64},
    };
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue): its headers only. */
        r->nonce[0] = r->location[0] = r->content_type[0] = '\0';
        r->retry_after[0] = '\0';
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return n;
    size_t klen = (size_t)(colon - p);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (klen == strlen(keep[i].name) &&
            strncasecmp(p, keep[i].name, klen) == 0)
            copy_value((char *)r + keep[i].off, keep[i].cap, colon + 1,
                       n - klen - 1);
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct sl_acme_http_req *r = arg;
    size_t n = size * nmemb;
    if (sl_dynbuf_append(&r->resp, p, n, SL_ACME_HTTP_BODY_MAX) != 0) {
        r->too_big = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    struct sl_acme_http *c = arg;
    return atomic_load(&c->abort) ? 1 : 0;
}

/* The pool thread: one blocking transfer. */
static void http_work(uv_work_t *w)
{
    struct sl_acme_http_req *r = w->data;
    struct sl_acme_http *c = r->client;
    const struct sl_curl_lib *cu = c->lib;
    CURL *h = c->curl;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    cu->easy_reset(h);
    cu->easy_setopt(h, CURLOPT_URL, r->url);
    cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    cu->easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    cu->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    cu->easy_setopt(h, CURLOPT_USERAGENT, "sluice-acme/1");
    cu->easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    cu->easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    cu->easy_setopt(h, CURLOPT_HEADERDATA, r);
    cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    cu->easy_setopt(h, CURLOPT_WRITEDATA, r);
    cu->easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    cu->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    cu->easy_setopt(h, CURLOPT_XFERINFODATA, c);
    cu->easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    cu->easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file != NULL)
        cu->easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (r->accept != NULL) {
        char a[128];
        snprintf(a, sizeof(a), "Accept: %s", r->accept);
        hdrs = cu->slist_append(hdrs, a);
    }
    if (r->method == SL_ACME_HEAD) {
        cu->easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (r->method == SL_ACME_POST) {
        struct curl_slist *t =
            cu->slist_append(hdrs, "Content-Type: application/jose+json");
        hdrs = t != NULL ? t : hdrs;
        cu->easy_setopt(h, CURLOPT_POST, 1L);
        cu->easy_setopt(h, CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
        /* No "Expect: 100-continue" round trip for small bodies. */
        t = cu->slist_append(hdrs, "Expect:");
        hdrs = t != NULL ? t : hdrs;
    }
    if (hdrs != NULL)
        cu->easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = cu->easy_perform(h);
    if (rc == CURLE_OK) {
        cu->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
        r->status = 0;
        if (r->too_big)
            snprintf(r->error, sizeof(r->error), "an answer over %d bytes",
                     SL_ACME_HTTP_BODY_MAX);
        else
            snprintf(r->error, sizeof(r->error), "%s",
                     errbuf[0] != '\0' ? errbuf : cu->easy_strerror(rc));
    }
    cu->easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    cu->easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    cu->slist_free_all(hdrs);
}

static void client_free(struct sl_acme_http *c)
{
    c->lib->easy_cleanup(c->curl);
    free(c->ca_file);
    free(c);
}

static void http_done(uv_work_t *w, int status)
{
    struct sl_acme_http_req *r = w->data;
    struct sl_acme_http *c = r->client;
    c->running = NULL;
    if (status != 0 && r->status == 0 && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error), "%s", uv_strerror(status));
    r->cancelled = c->freeing;
    int freeing = c->freeing;
    r->cb(r);
    if (freeing)
        client_free(c);
}

int sl_acme_http_load(char *err, size_t cap)
{
    return sl_curl_load(err, cap);
}

int sl_acme_http_new(uv_loop_t *loop, const char *ca_file, uint64_t timeout_ms,
                     struct sl_acme_http **out)
{
    *out = NULL;
    /* Loaded by sl_acme_http_load already, which says why it could not
     * be. */
    const struct sl_curl_lib *lib = sl_curl();
    if (lib == NULL)
        return UV_ENOMEM;
    struct sl_acme_http *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    c->loop = loop;
    c->lib = lib;
    c->timeout_ms = timeout_ms > 0 ? (long)timeout_ms : DEFAULT_TIMEOUT_MS;
    c->curl = lib->easy_init();
    if (c->curl == NULL ||
        (ca_file != NULL && (c->ca_file = strdup(ca_file)) == NULL)) {
        client_free(c);
        return UV_ENOMEM;
    }
    atomic_init(&c->abort, 0);
    *out = c;
    return 0;
}

int sl_acme_http_send(struct sl_acme_http *c, struct sl_acme_http_req *r)
{
    if (c->running != NULL || c->freeing)
        return UV_EBUSY;
    r->status = 0;
    r->resp = (struct sl_dynbuf){0};
    r->nonce[0] = r->location[0] = r->content_type[0] = '\0';
    r->retry_after[0] = r->error[0] = '\0';
    r->cancelled = r->too_big = 0;
    r->client = c;
    r->work.data = r;
    int rc = uv_queue_work(c->loop, &r->work, http_work, http_done);
    if (rc == 0)
        c->running = r;
    return rc;
}

int sl_acme_http_busy(const struct sl_acme_http *c)
{
    return c->running != NULL;
}

void sl_acme_http_free(struct sl_acme_http *c)
{
    if (c == NULL)
        return;
    c->freeing = 1;
    if (c->running != NULL) {
        atomic_store(&c->abort, 1);
        /* Not started yet: it will not be. */
        uv_cancel((uv_req_t *)&c->running->work);
        return;
    }
    client_free(c);
}
