#include "acme/acme.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "acme/acme_alpn.h"
#include "acme/acme_cert.h"
#include "acme/acme_http.h"
#include "acme/acme_json.h"
#include "acme/acme_jws.h"
#include "acme/dns_update.h"
#include "core/error.h"
#include "core/statedir.h"
#include "tls/tls_server.h"

#define ORDERS_MAX 4
#define NONCE_TRIES 5
#define POLL_MAX 60
#define POLL_WAIT_MAX_MS 60000
#define ORDER_TIME_MAX_MS (10ull * 60 * 1000)
#define BACKOFF_MAX_MS (6ull * 3600 * 1000)
#define HOUR_MS 3600000ull
#define DEFAULT_CAP 30
#define DEFAULT_RETRY_MS 60000
#define DEFAULT_POLL_MS 1000
#define NEVER UINT64_MAX
#define WHY_MAX 320
#define PEM_MAX (256 * 1024)
#define EAB_KEY_MAX 256
#define CHAIN_ACCEPT "application/pem-certificate-chain"
#define SUBJECT_BUCKETS 1024

struct order;
struct call;

typedef void (*call_cb)(struct sl_acme *a, struct call *c,
                        struct sl_acme_http_req *r);

/* A request waiting for its turn (one runs at a time). */
struct call {
    struct call *next;
    struct order *order; /* NULL: the directory or the account */
    enum sl_acme_http_method method;
    int jws;     /* a signed POST */
    int use_jwk; /* newAccount: the key itself, no account yet */
    char url[SL_ACME_URL_MAX];
    char *payload; /* NULL with jws: POST-as-GET */
    const char *accept;
    call_cb cb;
    int tries;
    int dead; /* its order went: the answer is dropped */
};

/* A certificate the hub wants: one per identity (TLS-ALPN-01) or the
 * wildcard (DNS-01). */
struct subject {
    struct subject *next;
    struct subject *hnext; /* in a->buckets */
    char identity[32];     /* "" for the wildcard */
    char names[2][SL_ACME_NAME_MAX];
    size_t nnames;
    int wanted;
    enum sl_acme_cert_state state;
    int has_cert;
    struct sl_acme_cert_info info;
    char *chain_pem, *key_pem; /* read at start, until installed */
    char error[WHY_MAX];
    char logged[WHY_MAX]; /* the last error logged for it */
    unsigned failures;
    uint64_t due;         /* loop ms of the next order; NEVER: none */
    int64_t due_unix;     /* the same in unix seconds, for the API */
    int said_local;       /* "served by the local CA meanwhile" said */
    uint64_t serving_seq; /* its certificate is served once the TLS set
                             count reaches this; 0: nothing awaited */
    struct order *order;
};

enum ostep {
    O_WAIT_BOOT,
    O_NEW,
    O_AUTHZ,
    O_ARM,
    O_RESPOND,
    O_POLL_AUTHZ,
    O_DISARM,
    O_FINALIZE,
    O_POLL_ORDER,
    O_DOWNLOAD,
    O_SAVE,
    O_CLEANUP,
};

struct order_authz {
    char url[SL_ACME_URL_MAX];
    char name[SL_ACME_NAME_MAX];
    int wildcard;
    int pending; /* needs its challenge answered */
    int done;    /* valid */
    char chall_url[SL_ACME_URL_MAX];
    char key_authz[SL_ACME_TOKEN_MAX + SL_ACME_B64_SHA256 + 2];
};

struct order {
    struct order *next_wait; /* waiting for the account */
    struct sl_acme *a;
    struct subject *s;
    enum ostep step;
    char url[SL_ACME_URL_MAX];
    char finalize[SL_ACME_URL_MAX];
    char cert_url[SL_ACME_URL_MAX];
    struct order_authz az[SL_ACME_AUTHZ_MAX];
    size_t naz;
    size_t cur;
    int alpn_armed;
    int dns_armed;
    char dns_name[SL_ACME_NAME_MAX + 16];
    char dns_values[SL_ACME_AUTHZ_MAX][SL_ACME_B64_SHA256];
    size_t ndns;
    EVP_PKEY *key;
    char *key_pem;
    char *chain_pem;
    struct sl_acme_cert_info info;
    unsigned polls;
    uint64_t started;
    uv_timer_t timer;
    int cancelled;
    int saving; /* a save job holds it */
    int closed; /* its timer is closed */
    /* A failure kept while the DNS records are taken away. */
    int failed;
    char why[WHY_MAX];
    int why_global;
    long retry_after;
};

struct save_job {
    uv_work_t work;
    struct order *o;
    char *dir;
    char name[SL_ACME_NAME_MAX];
    int rc;
    char err[WHY_MAX];
};

struct sl_acme {
    uv_loop_t *loop;
    struct sl_log *log;
    struct sl_tls_server *tls;
    char *directory, *email, *domain, *dir;
    char *eab_kid;
    uint8_t eab_key[EAB_KEY_MAX];
    size_t eab_keylen;
    int dns01;
    unsigned cap;
    uint64_t retry_ms, renew_ms, poll_ms;
    EVP_PKEY *account_key;
    char thumb[SL_ACME_B64_SHA256];
    struct sl_acme_http *http;
    struct sl_dns_update *dns;
    struct sl_acme_alpn *alpn;
    /* The directory and the account. */
    int boot; /* 0 none, 1 running, 2 ready */
    struct sl_acme_dir dirinfo;
    char kid[SL_ACME_URL_MAX];
    struct order *waiting;
    char nonce[SL_ACME_NONCE_MAX];
    /* Requests. */
    struct call *head, *tail;
    struct call *running;
    int nonce_fetch;
    int in_cb; /* a call's callback runs: req is still in use */
    struct sl_acme_http_req req;
    /* Certificates. */
    struct subject *subjects;
    struct subject *buckets[SUBJECT_BUCKETS];
    unsigned norders;
    uint64_t *cap_times;
    unsigned cap_idx;
    uint64_t cap_logged_until;
    uv_timer_t tick;
    char global_logged[WHY_MAX];
    unsigned open;
    int freeing;
};

const char *sl_acme_cert_state_name(enum sl_acme_cert_state s)
{
    switch (s) {
    case SL_ACME_CERT_PENDING: return "pending";
    case SL_ACME_CERT_VALID: return "valid";
    case SL_ACME_CERT_ERROR: return "error";
    default: return "none";
    }
}

static void schedule(struct sl_acme *a);
static void pump(struct sl_acme *a);
static void order_fail(struct order *o, const char *why, int global,
                       long retry_after);
static void order_next(struct order *o);

static void maybe_free(struct sl_acme *a)
{
    if (!a->freeing || a->open > 0)
        return;
    while (a->subjects != NULL) {
        struct subject *s = a->subjects;
        a->subjects = s->next;
        free(s->chain_pem);
        sl_acme_pem_free(s->key_pem);
        free(s);
    }
    while (a->head != NULL) {
        struct call *c = a->head;
        a->head = c->next;
        free(c->payload);
        free(c);
    }
    free(a->req.body);
    EVP_PKEY_free(a->account_key);
    OPENSSL_cleanse(a->eab_key, sizeof(a->eab_key));
    free(a->eab_kid);
    free(a->directory);
    free(a->email);
    free(a->domain);
    free(a->dir);
    free(a->cap_times);
    free(a);
}

/* ---- logging once ------------------------------------------------------ */

/* curl says "after 3 ms": the same failure reads the same each time. */
static void normalize(char *s)
{
    char *p;
    while ((p = strstr(s, " after ")) != NULL) {
        char *q = p + 7;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q == p + 7 || strncmp(q, " ms", 3) != 0)
            break;
        memmove(p, q + 3, strlen(q + 3) + 1);
    }
}

/* snprintf into a sentence buffer: a cut sentence is still a sentence. */
static void whyf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void whyf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

static void fmt_time(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, cap, "?");
}

/* ---- the subjects ------------------------------------------------------ */

static unsigned subject_bucket(const char *name)
{
    uint32_t h = 2166136261u;
    for (; *name != '\0'; name++)
        h = (h ^ (unsigned char)*name) * 16777619u;
    return h % SUBJECT_BUCKETS;
}

/* A hub with many identities asks for each at start and the API for
 * each of a list: a hash lookup, not a walk. */
static struct subject *subject_find(struct sl_acme *a, const char *name)
{
    for (struct subject *s = a->buckets[subject_bucket(name)]; s != NULL;
         s = s->hnext)
        if (strcmp(s->names[0], name) == 0)
            return s;
    return NULL;
}

static struct subject *subject_add(struct sl_acme *a, const char *identity)
{
    struct subject *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (identity != NULL) {
        snprintf(s->identity, sizeof(s->identity), "%s", identity);
        snprintf(s->names[0], sizeof(s->names[0]), "%s.%s", identity,
                 a->domain);
        s->nnames = 1;
    } else {
        snprintf(s->names[0], sizeof(s->names[0]), "%s", a->domain);
        snprintf(s->names[1], sizeof(s->names[1]), "*.%s", a->domain);
        s->nnames = 2;
    }
    s->due = NEVER;
    s->next = a->subjects;
    a->subjects = s;
    unsigned b = subject_bucket(s->names[0]);
    s->hnext = a->buckets[b];
    a->buckets[b] = s;
    return s;
}

static uint64_t rand_below(uint64_t n)
{
    uint64_t r = 0;
    if (n == 0)
        return 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint64_t)rand();
    return r % n;
}

/* When s's certificate is to be renewed, as a delay from now (ms). */
static uint64_t renew_delay_ms(struct sl_acme *a, const struct subject *s)
{
    if (a->renew_ms > 0)
        return a->renew_ms;
    int64_t now = (int64_t)time(NULL);
    int64_t life = s->info.not_after - s->info.not_before;
    if (life <= 0)
        return 0;
    int64_t at = s->info.not_before + life * 2 / 3 -
                 (int64_t)rand_below((uint64_t)(life / 30 + 1));
    return at > now ? (uint64_t)(at - now) * 1000 : 0;
}

static void subject_due(struct sl_acme *a, struct subject *s, uint64_t ms)
{
    s->due = uv_now(a->loop) + ms;
    s->due_unix = (int64_t)time(NULL) + (int64_t)(ms / 1000);
}

/* Hands the certificate to the hub's TLS; the PEMs are the caller's. */
static int install(struct sl_acme *a, struct subject *s, const char *chain,
                   const char *key)
{
    int rc = sl_tls_server_set_cert(a->tls, s->names[0], chain, key);
    if (rc != 0)
        sl_error(a->log, "acme: cannot serve the certificate of %s: %s",
                 s->names[0], sl_strerror(rc));
    else
        s->serving_seq = sl_tls_server_set_count(a->tls);
    return rc;
}

static void subject_failed(struct sl_acme *a, struct subject *s,
                           const char *why, int global, long retry_after)
{
    char text[WHY_MAX];
    snprintf(text, sizeof(text), "%s", why);
    normalize(text);
    snprintf(s->error, sizeof(s->error), "%s", text);
    s->state = s->has_cert ? SL_ACME_CERT_VALID : SL_ACME_CERT_ERROR;
    s->failures++;
    uint64_t wait = a->retry_ms;
    for (unsigned i = 1; i < s->failures && wait < BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > BACKOFF_MAX_MS)
        wait = BACKOFF_MAX_MS > a->retry_ms ? BACKOFF_MAX_MS : a->retry_ms;
    wait += rand_below(wait / 10 + 1);
    if (retry_after > 0 && (uint64_t)retry_after * 1000 > wait)
        wait = (uint64_t)retry_after * 1000;
    subject_due(a, s, wait);
    const char *what = s->has_cert ? "renewing" : "getting";
    if (global) {
        /* One line for the hub, not one per identity. */
        if (strcmp(a->global_logged, text) != 0) {
            sl_error(a->log,
                     "acme: %s; retrying in %.1f s (a name without its "
                     "certificate is served the local CA's meanwhile)",
                     text, (double)wait / 1000);
            snprintf(a->global_logged, sizeof(a->global_logged), "%s", text);
        } else {
            sl_debug(a->log, "acme: %s the certificate for %s: %s (again)",
                     what, s->names[0], text);
        }
        snprintf(s->logged, sizeof(s->logged), "%s", text);
        return;
    }
    if (strcmp(s->logged, text) != 0) {
        sl_error(a->log,
                 "acme: %s the certificate for %s failed: %s; %s, "
                 "retrying in %.1f s",
                 what, s->names[0], text,
                 s->has_cert ? "the current one serves"
                             : "the local CA's serves meanwhile",
                 (double)wait / 1000);
        snprintf(s->logged, sizeof(s->logged), "%s", text);
    } else {
        sl_debug(a->log, "acme: %s the certificate for %s failed again: %s",
                 what, s->names[0], text);
    }
}

static void subject_issued(struct sl_acme *a, struct subject *s,
                           const struct sl_acme_cert_info *info)
{
    char until[48], renew[48];
    /* A first certificate is valid once served (on_applied); a renewed
     * one replaces one that is served meanwhile. */
    if (!s->has_cert)
        s->state = SL_ACME_CERT_PENDING;
    s->has_cert = 1;
    s->info = *info;
    s->failures = 0;
    s->error[0] = s->logged[0] = '\0';
    a->global_logged[0] = '\0';
    subject_due(a, s, renew_delay_ms(a, s));
    fmt_time(info->not_after, until, sizeof(until));
    fmt_time(s->due_unix, renew, sizeof(renew));
    sl_info(a->log,
            "acme: certificate for %s%s%s issued by %s, valid until %s "
            "(serial %s); renewal due %s",
            s->names[0], s->nnames > 1 ? " and " : "",
            s->nnames > 1 ? s->names[1] : "",
            info->issuer[0] ? info->issuer : "the CA", until, info->serial,
            renew);
}

/* ---- requests ---------------------------------------------------------- */

static struct call *call_new(struct order *o, enum sl_acme_http_method m,
                             const char *url, call_cb cb)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->order = o;
    c->method = m;
    c->cb = cb;
    snprintf(c->url, sizeof(c->url), "%s", url);
    return c;
}

static void call_free(struct call *c)
{
    free(c->payload);
    free(c);
}

static void enqueue(struct sl_acme *a, struct call *c, int front)
{
    if (front) {
        c->next = a->head;
        a->head = c;
        if (a->tail == NULL)
            a->tail = c;
    } else {
        c->next = NULL;
        if (a->tail != NULL)
            a->tail->next = c;
        else
            a->head = c;
        a->tail = c;
    }
    pump(a);
}

/* A signed POST of payload (NULL: POST-as-GET) to url for o. Returns 0
 * or UV_ENOMEM (then o has failed). */
static int post(struct order *o, const char *url, const char *payload,
                const char *accept, call_cb cb)
{
    struct call *c = call_new(o, SL_ACME_POST, url, cb);
    if (c == NULL ||
        (payload != NULL && (c->payload = strdup(payload)) == NULL)) {
        if (c != NULL)
            call_free(c);
        order_fail(o, "out of memory", 0, 0);
        return UV_ENOMEM;
    }
    c->jws = 1;
    c->accept = accept;
    enqueue(o->a, c, 0);
    return 0;
}

static void on_http(struct sl_acme_http_req *r);

static void send_req(struct sl_acme *a, enum sl_acme_http_method m,
                     const char *url, char *body, const char *accept)
{
    struct sl_acme_http_req *r = &a->req;
    free(r->body);
    memset(r, 0, sizeof(*r));
    r->method = m;
    snprintf(r->url, sizeof(r->url), "%s", url);
    r->body = body;
    r->accept = accept;
    r->cb = on_http;
    r->arg = a;
    int rc = sl_acme_http_send(a->http, r);
    if (rc != 0) {
        /* As if the CA were unreachable: the caller's error path. */
        r->status = 0;
        snprintf(r->error, sizeof(r->error), "cannot start a request: %s",
                 uv_strerror(rc));
        a->open++;
        on_http(r);
        return;
    }
    a->open++;
}

static void pump(struct sl_acme *a)
{
    /* The next request reuses req: not while a callback still reads it
     * (on_http pumps after). */
    if (a == NULL || a->running != NULL || a->nonce_fetch || a->in_cb ||
        a->freeing)
        return;
    while (a->head != NULL && a->head->dead) {
        struct call *c = a->head;
        a->head = c->next;
        if (a->head == NULL)
            a->tail = NULL;
        call_free(c);
    }
    struct call *c = a->head;
    if (c == NULL)
        return;
    if (c->jws && a->nonce[0] == '\0') {
        a->nonce_fetch = 1;
        send_req(a, SL_ACME_HEAD, a->dirinfo.new_nonce, NULL, NULL);
        return;
    }
    a->head = c->next;
    if (a->head == NULL)
        a->tail = NULL;
    c->next = NULL;
    a->running = c;
    char *body = NULL;
    if (c->jws) {
        int rc = sl_acme_jws(a->account_key, c->use_jwk ? NULL : a->kid,
                             a->nonce, c->url, c->payload, &body);
        a->nonce[0] = '\0'; /* used */
        if (rc != 0) {
            struct sl_acme_http_req *r = &a->req;
            free(r->body);
            memset(r, 0, sizeof(*r));
            snprintf(r->error, sizeof(r->error), "cannot sign: %s",
                     sl_strerror(rc));
            a->open++;
            on_http(r);
            return;
        }
    }
    send_req(a, c->method, c->url, body, c->accept);
}

/* What the CA sent that did not parse, for the debug log. */
static void debug_body(struct sl_acme *a, const struct sl_acme_http_req *r)
{
    char text[600];
    if (!sl_log_on(a->log, SL_LOG_DEBUG))
        return;
    sl_log_escape(r->resp.data != NULL ? r->resp.data : "", text, sizeof(text));
    sl_debug(a->log, "acme: HTTP %ld from %s: %s", r->status, r->url, text);
}

static int is_problem(const struct sl_acme_http_req *r,
                      struct sl_acme_problem *p)
{
    if (r->status < 400 || r->resp.data == NULL)
        return 0;
    return sl_acme_parse_problem(r->resp.data, r->resp.len, p) == 0;
}

static void on_http(struct sl_acme_http_req *r)
{
    struct sl_acme *a = r->arg;
    struct sl_acme_problem prob;
    a->open--;
    if (r->nonce[0] != '\0')
        snprintf(a->nonce, sizeof(a->nonce), "%s", r->nonce);
    if (a->freeing || r->cancelled) {
        if (a->running != NULL)
            call_free(a->running);
        a->running = NULL;
        a->nonce_fetch = 0;
        sl_dynbuf_free(&r->resp);
        free(r->body);
        r->body = NULL;
        maybe_free(a);
        return;
    }
    if (a->nonce_fetch) {
        a->nonce_fetch = 0;
        if (a->nonce[0] == '\0') {
            /* The call waiting for it fails as this did. */
            struct call *c = a->head;
            if (c != NULL) {
                a->head = c->next;
                if (a->head == NULL)
                    a->tail = NULL;
                if (r->status != 0 && r->error[0] == '\0')
                    whyf(r->error, sizeof(r->error),
                         "no Replay-Nonce from %s (HTTP %ld)", r->url,
                         r->status);
                r->status = 0;
                a->in_cb = 1;
                if (!c->dead)
                    c->cb(a, c, r);
                a->in_cb = 0;
                call_free(c);
            }
        }
        sl_dynbuf_free(&r->resp);
        pump(a);
        return;
    }
    struct call *c = a->running;
    a->running = NULL;
    if (c == NULL) {
        sl_dynbuf_free(&r->resp);
        pump(a);
        return;
    }
    if (!c->dead && r->status == 400 && c->jws && c->tries < NONCE_TRIES &&
        is_problem(r, &prob) && strcmp(prob.type, "badNonce") == 0) {
        /* The nonce went stale: again, with the one this answer gave. */
        sl_debug(a->log, "acme: badNonce from %s, trying again", c->url);
        c->tries++;
        sl_dynbuf_free(&r->resp);
        enqueue(a, c, 1);
        return;
    }
    a->in_cb = 1;
    if (!c->dead)
        c->cb(a, c, r);
    a->in_cb = 0;
    call_free(c);
    sl_dynbuf_free(&r->resp);
    pump(a);
}

/* Words for a failed request: whether it is the CA being unreachable (a
 * failure of the hub as a whole) and how long the CA asks us to wait. */
static void describe(struct sl_acme *a, struct sl_acme_http_req *r,
                     const char *doing, char *out, size_t cap, int *global,
                     long *retry_after)
{
    struct sl_acme_problem p;
    *global = 0;
    *retry_after = 0;
    if (r->status == 0) {
        whyf(out, cap, "cannot reach the ACME server %s: %s", a->directory,
             r->error);
        *global = 1;
        return;
    }
    if (r->retry_after[0] != '\0')
        *retry_after = sl_acme_retry_after(r->retry_after, (int64_t)time(NULL));
    if (!is_problem(r, &p)) {
        whyf(out, cap, "the CA answered %s with HTTP %ld", doing, r->status);
        return;
    }
    if (strcmp(p.type, "rateLimited") == 0)
        whyf(out, cap, "rate-limited by the CA (%s): %s", doing, p.detail);
    else if (strcmp(p.type, "caa") == 0)
        whyf(out, cap, "CAA records forbid the CA to issue (%s): %s", doing,
             p.detail);
    else if (strcmp(p.type, "externalAccountRequired") == 0)
        whyf(out, cap,
             "the CA requires an external account binding "
             "(--acme-eab KID:KEY): %s",
             p.detail);
    else
        whyf(out, cap, "the CA refused %s: %s (%s)", doing, p.detail, p.type);
    if (strcmp(p.type, "accountDoesNotExist") == 0 ||
        strcmp(p.type, "unauthorized") == 0) {
        /* A CA that forgot us (a test CA restarted): ask for the account
         * again next time. */
        a->boot = 0;
        a->kid[0] = '\0';
    }
    if (strcmp(p.type, "externalAccountRequired") == 0 ||
        strcmp(p.type, "accountDoesNotExist") == 0)
        *global = 1;
}

/* ---- the directory and the account ------------------------------------- */

static void boot_done(struct sl_acme *a, const char *why, int global,
                      long retry_after)
{
    struct order *w = a->waiting;
    a->waiting = NULL;
    a->boot = why == NULL ? 2 : 0;
    while (w != NULL) {
        struct order *next = w->next_wait;
        w->next_wait = NULL;
        if (why == NULL) {
            w->step = O_NEW;
            order_next(w);
        } else {
            order_fail(w, why, global, retry_after);
        }
        w = next;
    }
}

static void on_account(struct sl_acme *a, struct call *c,
                       struct sl_acme_http_req *r)
{
    char why[WHY_MAX];
    int global;
    long ra;
    (void)c;
    if (r->status != 200 && r->status != 201) {
        describe(a, r, "the account", why, sizeof(why), &global, &ra);
        boot_done(a, why, 1, ra);
        return;
    }
    if (r->location[0] == '\0') {
        boot_done(a, "the CA gave the account no URL (Location)", 1, 0);
        return;
    }
    snprintf(a->kid, sizeof(a->kid), "%s", r->location);
    sl_info(a->log, "acme: account %s at %s (%s)", a->kid, a->directory,
            r->status == 201 ? "new" : "existing");
    boot_done(a, NULL, 0, 0);
}

static void on_directory(struct sl_acme *a, struct call *c,
                         struct sl_acme_http_req *r)
{
    char why[WHY_MAX];
    int global;
    long ra;
    char *eab = NULL, *payload = NULL;
    (void)c;
    if (r->status != 200) {
        describe(a, r, "the directory", why, sizeof(why), &global, &ra);
        boot_done(a, why, 1, ra);
        return;
    }
    int rc = sl_acme_parse_dir(r->resp.data, r->resp.len, &a->dirinfo);
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s is not an ACME directory (%s)",
                 a->directory, sl_strerror(rc));
        boot_done(a, why, 1, 0);
        return;
    }
    if (a->dirinfo.eab_required && a->eab_kid == NULL) {
        boot_done(a,
                  "the CA requires an external account binding: give "
                  "--acme-eab KID:KEY",
                  1, 0);
        return;
    }
    if (a->eab_kid != NULL) {
        char jwk[SL_ACME_JWK_MAX];
        if (sl_acme_jwk(a->account_key, jwk, sizeof(jwk)) != 0 ||
            sl_acme_eab(a->eab_kid, a->eab_key, a->eab_keylen,
                        a->dirinfo.new_account, jwk, &eab) != 0) {
            boot_done(a, "cannot make the external account binding", 1, 0);
            return;
        }
    }
    payload = sl_acme_new_account_payload(a->email, eab);
    free(eab);
    struct call *n =
        call_new(NULL, SL_ACME_POST, a->dirinfo.new_account, on_account);
    if (payload == NULL || n == NULL) {
        free(payload);
        free(n);
        boot_done(a, "out of memory", 1, 0);
        return;
    }
    n->jws = 1;
    n->use_jwk = 1;
    n->payload = payload;
    enqueue(a, n, 1);
}

static void boot_start(struct sl_acme *a)
{
    struct call *c = call_new(NULL, SL_ACME_GET, a->directory, on_directory);
    if (c == NULL) {
        boot_done(a, "out of memory", 1, 0);
        return;
    }
    a->boot = 1;
    enqueue(a, c, 0);
}

/* ---- orders ------------------------------------------------------------ */

static void on_order_timer_closed(uv_handle_t *h)
{
    struct order *o = h->data;
    struct sl_acme *a = o->a;
    o->closed = 1;
    if (!o->saving) {
        free(o);
        a->open--;
        maybe_free(a);
    }
}

static void order_drop_calls(struct order *o)
{
    struct sl_acme *a = o->a;
    for (struct call *c = a->head; c != NULL; c = c->next)
        if (c->order == o)
            c->dead = 1;
    if (a->running != NULL && a->running->order == o)
        a->running->dead = 1;
    struct order **pp = &a->waiting;
    while (*pp != NULL && *pp != o)
        pp = &(*pp)->next_wait;
    if (*pp == o)
        *pp = o->next_wait;
}

/* The end of o: its memory goes once its timer is closed. */
static void order_release(struct order *o)
{
    struct sl_acme *a = o->a;
    order_drop_calls(o);
    if (o->alpn_armed) {
        for (size_t i = 0; i < o->naz; i++)
            sl_acme_alpn_remove(a->alpn, o->az[i].name);
        o->alpn_armed = 0;
    }
    if (o->s != NULL && o->s->order == o)
        o->s->order = NULL;
    o->s = NULL;
    EVP_PKEY_free(o->key);
    o->key = NULL;
    sl_acme_pem_free(o->key_pem);
    o->key_pem = NULL;
    free(o->chain_pem);
    o->chain_pem = NULL;
    a->norders--;
    uv_close((uv_handle_t *)&o->timer, on_order_timer_closed);
}

static void on_dns_removed(void *arg, int rc, const char *why)
{
    struct order *o = arg;
    struct sl_acme *a = o->a;
    o->dns_armed = 0;
    if (o->cancelled)
        return; /* cannot happen: cancelling stops the DNS client */
    if (rc != 0)
        sl_error(a->log,
                 "acme: cannot remove the TXT records of %s: %s (remove "
                 "them by hand)",
                 o->dns_name, why);
    else
        sl_info(a->log, "acme: removed the TXT records of %s", o->dns_name);
    if (o->failed) {
        struct subject *s = o->s;
        order_release(o);
        if (s != NULL)
            subject_failed(a, s, o->why, o->why_global, o->retry_after);
        schedule(a);
        return;
    }
    o->step = O_FINALIZE;
    order_next(o);
}

/* Takes the TXT records away; 0 if that started (o goes on from
 * on_dns_removed). */
static int dns_disarm(struct order *o)
{
    struct sl_acme *a = o->a;
    if (!o->dns_armed || a->dns == NULL)
        return UV_EINVAL;
    const char *vals[SL_ACME_AUTHZ_MAX];
    for (size_t i = 0; i < o->ndns; i++)
        vals[i] = o->dns_values[i];
    return sl_dns_update_remove(a->dns, o->dns_name, vals, o->ndns,
                                on_dns_removed, o);
}

static void order_fail(struct order *o, const char *why, int global,
                       long retry_after)
{
    struct sl_acme *a = o->a;
    if (o->failed || o->cancelled)
        return;
    o->failed = 1;
    snprintf(o->why, sizeof(o->why), "%s", why);
    o->why_global = global;
    o->retry_after = retry_after;
    order_drop_calls(o);
    uv_timer_stop(&o->timer);
    if (o->dns_armed && dns_disarm(o) == 0) {
        o->step = O_CLEANUP;
        return;
    }
    struct subject *s = o->s;
    order_release(o);
    if (s != NULL)
        subject_failed(a, s, why, global, retry_after);
    schedule(a);
}

static void order_failf(struct order *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void order_failf(struct order *o, const char *fmt, ...)
{
    char why[WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    order_fail(o, why, 0, 0);
}

/* A failed request of o, in words. */
static void order_fail_req(struct order *o, struct sl_acme_http_req *r,
                           const char *doing)
{
    char why[WHY_MAX];
    int global;
    long ra;
    describe(o->a, r, doing, why, sizeof(why), &global, &ra);
    order_fail(o, why, global, ra);
}

static void on_order_timer(uv_timer_t *t)
{
    order_next(t->data);
}

/* Polls again after the CA's Retry-After or our interval. */
static void order_wait(struct order *o, struct sl_acme_http_req *r)
{
    struct sl_acme *a = o->a;
    uint64_t ms = a->poll_ms;
    if (r != NULL && r->retry_after[0] != '\0') {
        long ra = sl_acme_retry_after(r->retry_after, (int64_t)time(NULL));
        if (ra > 0)
            ms = (uint64_t)ra * 1000;
    }
    if (ms > POLL_WAIT_MAX_MS)
        ms = POLL_WAIT_MAX_MS;
    uv_timer_start(&o->timer, on_order_timer, ms, 0);
}

static int poll_bounded(struct order *o, const char *what)
{
    if (++o->polls > POLL_MAX ||
        uv_now(o->a->loop) - o->started > ORDER_TIME_MAX_MS) {
        order_failf(o, "gave up waiting for %s of %s after %u polls", what,
                    o->s->names[0], o->polls - 1);
        return 0;
    }
    return 1;
}

static void on_new_order(struct sl_acme *a, struct call *c,
                         struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    struct sl_acme_order ord;
    (void)a;
    if (r->status != 201 && r->status != 200) {
        order_fail_req(o, r, "the order");
        return;
    }
    int rc = sl_acme_parse_order(r->resp.data, r->resp.len, &ord);
    if (rc != 0 || r->location[0] == '\0') {
        order_failf(o,
                    "the CA's answer to the order for %s is not an order "
                    "(%s)",
                    o->s->names[0], rc != 0 ? sl_strerror(rc) : "no Location");
        return;
    }
    snprintf(o->url, sizeof(o->url), "%s", r->location);
    snprintf(o->finalize, sizeof(o->finalize), "%s", ord.finalize);
    snprintf(o->cert_url, sizeof(o->cert_url), "%s", ord.certificate);
    o->naz = ord.nauthz;
    for (size_t i = 0; i < ord.nauthz; i++)
        snprintf(o->az[i].url, sizeof(o->az[i].url), "%s", ord.authz[i]);
    sl_debug(a->log, "acme: order %s for %s: %s", o->url, o->s->names[0],
             sl_acme_state_name(ord.status));
    o->cur = 0;
    /* Pending, or ready when every authorization is valid already (the
     * walk through them finds nothing to prove and finalizes). */
    if (ord.status != SL_ACME_S_PENDING && ord.status != SL_ACME_S_READY) {
        order_failf(o, "the CA's new order for %s is %s: %s", o->s->names[0],
                    sl_acme_state_name(ord.status),
                    ord.has_error ? ord.error.detail : "no reason given");
        return;
    }
    o->step = O_AUTHZ;
    order_next(o);
}

static const char *chall_type(const struct sl_acme *a)
{
    return a->dns01 ? "dns-01" : "tls-alpn-01";
}

static void on_authz(struct sl_acme *a, struct call *c,
                     struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    struct order_authz *z = &o->az[o->cur];
    struct sl_acme_authz az;
    if (r->status != 200) {
        order_fail_req(o, r, "an authorization");
        return;
    }
    int rc = sl_acme_parse_authz(r->resp.data, r->resp.len, &az);
    if (rc != 0) {
        debug_body(a, r);
        order_failf(o, "an authorization of %s does not parse (%s)",
                    o->s->names[0], sl_strerror(rc));
        return;
    }
    snprintf(z->name, sizeof(z->name), "%s", az.identifier);
    z->wildcard = az.wildcard;
    if (az.status == SL_ACME_S_VALID) {
        z->done = 1;
    } else if (az.status == SL_ACME_S_PENDING) {
        const struct sl_acme_chall *ch = sl_acme_authz_find(&az, chall_type(a));
        if (ch == NULL) {
            order_failf(o, "the CA offers no %s challenge for %s%s",
                        chall_type(a), az.wildcard ? "*." : "", az.identifier);
            return;
        }
        if (sl_acme_key_authz(ch->token, a->thumb, z->key_authz,
                              sizeof(z->key_authz)) != 0) {
            order_failf(o, "the CA's %s token for %s is not base64url",
                        chall_type(a), az.identifier);
            return;
        }
        snprintf(z->chall_url, sizeof(z->chall_url), "%s", ch->url);
        z->pending = 1;
    } else {
        order_failf(o, "the authorization of %s%s is %s",
                    az.wildcard ? "*." : "", az.identifier,
                    sl_acme_state_name(az.status));
        return;
    }
    o->cur++;
    order_next(o);
}

static void on_dns_published(void *arg, int rc, const char *why)
{
    struct order *o = arg;
    if (o->cancelled)
        return; /* cannot happen: cancelling stops the DNS client */
    if (rc != 0) {
        o->dns_armed = 0;
        order_fail(o, why, 0, 0);
        return;
    }
    sl_info(o->a->log, "acme: TXT records of %s in place and visible on %s",
            o->dns_name, why);
    o->step = O_RESPOND;
    o->cur = 0;
    order_next(o);
}

/* Puts the answers where the CA will look. 1 if o goes on at once. */
static int arm(struct order *o)
{
    struct sl_acme *a = o->a;
    if (!a->dns01) {
        for (size_t i = 0; i < o->naz; i++) {
            struct order_authz *z = &o->az[i];
            uint8_t digest[32];
            if (!z->pending)
                continue;
            sl_acme_authz_digest(z->key_authz, digest);
            if (sl_acme_alpn_add(a->alpn, z->name, digest) != 0) {
                order_fail(o, "out of memory", 0, 0);
                return 0;
            }
            o->alpn_armed = 1;
            sl_debug(a->log, "acme: answering tls-alpn-01 for %s", z->name);
        }
        return 1;
    }
    o->ndns = 0;
    for (size_t i = 0; i < o->naz; i++) {
        struct order_authz *z = &o->az[i];
        if (!z->pending)
            continue;
        /* Every authorization of the order is for the domain (one of
         * them the wildcard): one record name. */
        snprintf(o->dns_name, sizeof(o->dns_name), "_acme-challenge.%s",
                 z->name);
        sl_acme_dns01_value(z->key_authz, o->dns_values[o->ndns++]);
    }
    if (o->ndns == 0)
        return 1;
    const char *vals[SL_ACME_AUTHZ_MAX];
    for (size_t i = 0; i < o->ndns; i++)
        vals[i] = o->dns_values[i];
    int rc = sl_dns_update_publish(a->dns, o->dns_name, vals, o->ndns,
                                   on_dns_published, o);
    if (rc != 0) {
        order_failf(o, "cannot update DNS for %s: %s", o->dns_name,
                    sl_strerror(rc));
        return 0;
    }
    o->dns_armed = 1;
    return 0;
}

static void on_respond(struct sl_acme *a, struct call *c,
                       struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    (void)a;
    if (r->status != 200) {
        order_fail_req(o, r, "the challenge answer");
        return;
    }
    o->cur++;
    order_next(o);
}

static void on_poll_authz(struct sl_acme *a, struct call *c,
                          struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    struct order_authz *z = &o->az[o->cur];
    struct sl_acme_authz az;
    if (r->status != 200) {
        order_fail_req(o, r, "an authorization");
        return;
    }
    if (sl_acme_parse_authz(r->resp.data, r->resp.len, &az) != 0) {
        debug_body(a, r);
        order_failf(o, "an authorization of %s does not parse", o->s->names[0]);
        return;
    }
    if (az.status == SL_ACME_S_VALID) {
        z->done = 1;
        sl_debug(a->log, "acme: %s%s validated", z->wildcard ? "*." : "",
                 z->name);
    } else if (az.status != SL_ACME_S_PENDING &&
               az.status != SL_ACME_S_PROCESSING) {
        const struct sl_acme_chall *ch = sl_acme_authz_find(&az, chall_type(a));
        order_failf(o, "the CA could not validate %s%s by %s: %s",
                    z->wildcard ? "*." : "", z->name, chall_type(a),
                    ch != NULL && ch->has_error
                        ? ch->error.detail
                        : sl_acme_state_name(az.status));
        return;
    }
    o->cur++;
    if (o->cur < o->naz) {
        order_next(o);
        return;
    }
    for (size_t i = 0; i < o->naz; i++)
        if (o->az[i].pending && !o->az[i].done) {
            /* A round found some still pending: another after a wait. */
            o->cur = 0;
            if (poll_bounded(o, "the validation"))
                order_wait(o, r);
            return;
        }
    o->step = O_DISARM;
    order_next(o);
}

static void after_order_state(struct order *o, struct sl_acme_http_req *r,
                              const struct sl_acme_order *ord)
{
    if (ord->certificate[0] != '\0')
        snprintf(o->cert_url, sizeof(o->cert_url), "%s", ord->certificate);
    if (ord->status == SL_ACME_S_VALID && o->cert_url[0] != '\0') {
        o->step = O_DOWNLOAD;
        order_next(o);
    } else if (ord->status == SL_ACME_S_INVALID) {
        order_failf(o, "the CA says the order for %s is invalid: %s",
                    o->s->names[0],
                    ord->has_error ? ord->error.detail : "no reason given");
    } else {
        o->step = O_POLL_ORDER;
        if (poll_bounded(o, "the certificate"))
            order_wait(o, r);
    }
}

static void on_finalize(struct sl_acme *a, struct call *c,
                        struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    struct sl_acme_order ord;
    (void)a;
    if (r->status != 200) {
        order_fail_req(o, r, "the finalization");
        return;
    }
    if (sl_acme_parse_order(r->resp.data, r->resp.len, &ord) != 0) {
        order_failf(o,
                    "the CA's answer to the finalization of %s is not an "
                    "order",
                    o->s->names[0]);
        return;
    }
    after_order_state(o, r, &ord);
}

static void on_poll_order(struct sl_acme *a, struct call *c,
                          struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    struct sl_acme_order ord;
    (void)a;
    if (r->status != 200) {
        order_fail_req(o, r, "the order");
        return;
    }
    if (sl_acme_parse_order(r->resp.data, r->resp.len, &ord) != 0) {
        order_failf(o, "the order of %s does not parse", o->s->names[0]);
        return;
    }
    after_order_state(o, r, &ord);
}

static void save_work(uv_work_t *w)
{
    struct save_job *j = w->data;
    char name[SL_ACME_NAME_MAX + 8];
    snprintf(name, sizeof(name), "%s.key", j->name);
    j->rc = sl_statedir_write_file(j->dir, name, j->o->key_pem,
                                   strlen(j->o->key_pem));
    if (j->rc == 0) {
        snprintf(name, sizeof(name), "%s.crt", j->name);
        j->rc = sl_statedir_write_file(j->dir, name, j->o->chain_pem,
                                       strlen(j->o->chain_pem));
    }
    if (j->rc != 0)
        snprintf(j->err, sizeof(j->err), "cannot write %s/%s: %s", j->dir, name,
                 sl_strerror(j->rc));
}

static void save_done(uv_work_t *w, int status)
{
    struct save_job *j = w->data;
    struct order *o = j->o;
    struct sl_acme *a = o->a;
    o->saving = 0;
    if (o->closed) {
        /* Cancelled while writing: the timer closed already. */
        free(o);
        a->open--;
        free(j->dir);
        free(j);
        maybe_free(a);
        return;
    }
    if (status != 0 && j->rc == 0) {
        j->rc = status;
        snprintf(j->err, sizeof(j->err), "cannot write the files: %s",
                 uv_strerror(status));
    }
    if (o->cancelled || o->s == NULL) {
        free(j->dir);
        free(j);
        return;
    }
    struct subject *s = o->s;
    if (j->rc != 0) {
        /* Served all the same: the next start orders again. */
        sl_error(a->log, "acme: %s", j->err);
    }
    int rc = install(a, s, o->chain_pem, o->key_pem);
    free(j->dir);
    free(j);
    if (rc != 0) {
        order_failf(o, "the hub's TLS refused the certificate of %s: %s",
                    s->names[0], sl_strerror(rc));
        return;
    }
    struct sl_acme_cert_info info = o->info;
    order_release(o);
    subject_issued(a, s, &info);
    schedule(a);
}

static void on_download(struct sl_acme *a, struct call *c,
                        struct sl_acme_http_req *r)
{
    struct order *o = c->order;
    if (r->status != 200) {
        order_fail_req(o, r, "the certificate download");
        return;
    }
    if (r->resp.data == NULL || r->resp.len > PEM_MAX ||
        memchr(r->resp.data, '\0', r->resp.len) != NULL) {
        order_failf(o, "the certificate of %s is not PEM", o->s->names[0]);
        return;
    }
    o->chain_pem = strdup(r->resp.data);
    if (o->chain_pem == NULL) {
        order_fail(o, "out of memory", 0, 0);
        return;
    }
    if (sl_acme_chain_info(o->chain_pem, o->key_pem, o->s->names[0],
                           &o->info) != 0) {
        order_failf(o,
                    "the certificate the CA issued for %s does not "
                    "match the request (name or key)",
                    o->s->names[0]);
        return;
    }
    struct save_job *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->dir = strdup(a->dir)) == NULL) {
        free(j);
        order_fail(o, "out of memory", 0, 0);
        return;
    }
    j->o = o;
    j->work.data = j;
    snprintf(j->name, sizeof(j->name), "%s", o->s->names[0]);
    int rc = uv_queue_work(a->loop, &j->work, save_work, save_done);
    if (rc != 0) {
        free(j->dir);
        free(j);
        order_failf(o, "cannot write the certificate: %s", uv_strerror(rc));
        return;
    }
    o->saving = 1;
    o->step = O_SAVE;
}

static void finalize(struct order *o)
{
    struct sl_acme *a = o->a;
    uint8_t *csr = NULL;
    size_t len = 0;
    const char *names[2] = {o->s->names[0], o->s->names[1]};
    o->key = sl_acme_key_new();
    if (o->key == NULL || sl_acme_key_pem(o->key, &o->key_pem) != 0 ||
        sl_acme_csr(o->key, names, o->s->nnames, &csr, &len) != 0) {
        order_fail(o, "cannot make the key and the CSR", 0, 0);
        return;
    }
    char *payload = sl_acme_finalize_payload(csr, len);
    free(csr);
    if (payload == NULL) {
        order_fail(o, "out of memory", 0, 0);
        return;
    }
    (void)a;
    post(o, o->finalize, payload, NULL, on_finalize);
    free(payload);
}

/* Does o's next step. */
static void order_next(struct order *o)
{
    struct sl_acme *a = o->a;
    if (o->cancelled || o->failed)
        return;
    switch (o->step) {
    case O_WAIT_BOOT:
        if (a->boot == 2) {
            o->step = O_NEW;
            order_next(o);
            return;
        }
        o->next_wait = a->waiting;
        a->waiting = o;
        if (a->boot == 0)
            boot_start(a);
        return;
    case O_NEW: {
        const char *names[2] = {o->s->names[0], o->s->names[1]};
        char *payload = sl_acme_new_order_payload(names, o->s->nnames);
        if (payload == NULL) {
            order_fail(o, "out of memory", 0, 0);
            return;
        }
        post(o, a->dirinfo.new_order, payload, NULL, on_new_order);
        free(payload);
        return;
    }
    case O_AUTHZ:
        if (o->cur < o->naz) {
            post(o, o->az[o->cur].url, NULL, NULL, on_authz);
            return;
        }
        o->step = O_ARM;
        order_next(o);
        return;
    case O_ARM:
        if (arm(o)) {
            o->step = O_RESPOND;
            o->cur = 0;
            order_next(o);
        }
        return;
    case O_RESPOND:
        while (o->cur < o->naz && !o->az[o->cur].pending)
            o->cur++;
        if (o->cur < o->naz) {
            post(o, o->az[o->cur].chall_url, "{}", NULL, on_respond);
            return;
        }
        o->step = O_POLL_AUTHZ;
        o->cur = 0;
        o->polls = 0;
        order_next(o);
        return;
    case O_POLL_AUTHZ:
        while (o->cur < o->naz &&
               (!o->az[o->cur].pending || o->az[o->cur].done))
            o->cur++;
        if (o->cur < o->naz) {
            post(o, o->az[o->cur].url, NULL, NULL, on_poll_authz);
            return;
        }
        o->step = O_DISARM;
        order_next(o);
        return;
    case O_DISARM:
        if (o->alpn_armed) {
            for (size_t i = 0; i < o->naz; i++)
                sl_acme_alpn_remove(a->alpn, o->az[i].name);
            o->alpn_armed = 0;
        }
        if (o->dns_armed && dns_disarm(o) == 0)
            return; /* on_dns_removed goes on */
        o->step = O_FINALIZE;
        order_next(o);
        return;
    case O_FINALIZE:
        o->polls = 0;
        finalize(o);
        return;
    case O_POLL_ORDER: post(o, o->url, NULL, NULL, on_poll_order); return;
    case O_DOWNLOAD:
        post(o, o->cert_url, NULL, CHAIN_ACCEPT, on_download);
        return;
    default: return;
    }
}

/* ---- scheduling -------------------------------------------------------- */

/* Whether an order may start now under the hourly cap; else *wait_ms
 * says when one may. */
static int cap_allows(struct sl_acme *a, uint64_t now, uint64_t *wait_ms)
{
    uint64_t oldest = a->cap_times[a->cap_idx];
    if (oldest == 0 || now - oldest >= HOUR_MS)
        return 1;
    *wait_ms = HOUR_MS - (now - oldest);
    return 0;
}

static void start_order(struct sl_acme *a, struct subject *s)
{
    struct order *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        subject_failed(a, s, "out of memory", 0, 0);
        return;
    }
    uint64_t now = uv_now(a->loop);
    a->cap_times[a->cap_idx] = now > 0 ? now : 1;
    a->cap_idx = (a->cap_idx + 1) % a->cap;
    o->a = a;
    o->s = s;
    o->started = now;
    o->step = O_WAIT_BOOT;
    uv_timer_init(a->loop, &o->timer);
    o->timer.data = o;
    a->open++;
    a->norders++;
    s->order = o;
    s->due = NEVER;
    if (!s->has_cert)
        s->state = SL_ACME_CERT_PENDING;
    /* Once, not at every retry of a failing one. */
    sl_log_write(a->log, s->failures == 0 ? SL_LOG_INFO : SL_LOG_DEBUG,
                 "acme: ordering a certificate for %s%s%s (%s)", s->names[0],
                 s->nnames > 1 ? " and " : "", s->nnames > 1 ? s->names[1] : "",
                 s->has_cert ? "renewal" : chall_type(a));
    order_next(o);
}

static void on_tick(uv_timer_t *t)
{
    schedule(t->data);
}

/* A certificate whose renewal kept failing until its end: out of the
 * hub's set, so the local CA's serves rather than an expired one. */
static void expire(struct sl_acme *a, struct subject *s)
{
    char when[48];
    fmt_time(s->info.not_after, when, sizeof(when));
    (void)sl_tls_server_set_cert(a->tls, s->names[0], NULL, NULL);
    s->has_cert = 0;
    s->state = s->error[0] != '\0' ? SL_ACME_CERT_ERROR : SL_ACME_CERT_PENDING;
    int failing = s->error[0] != '\0';
    sl_error(a->log,
             "acme: the certificate for %s expired on %s%s%s%s; the local "
             "CA's serves until a new one arrives",
             s->names[0], when, failing ? " (renewal failing: " : "",
             failing ? s->error : "", failing ? ")" : "");
}

static void schedule(struct sl_acme *a)
{
    if (a->freeing)
        return;
    uint64_t now = uv_now(a->loop), next = NEVER;
    int64_t unix_now = (int64_t)time(NULL);
    for (struct subject *s = a->subjects; s != NULL; s = s->next) {
        if (s->wanted && s->has_cert && s->info.not_after <= unix_now)
            expire(a, s);
        if (s->wanted && s->has_cert) {
            uint64_t end =
                now + (uint64_t)(s->info.not_after - unix_now) * 1000;
            if (end < next)
                next = end;
        }
        if (!s->wanted || s->order != NULL || s->due == NEVER)
            continue;
        if (s->due > now) {
            if (s->due < next)
                next = s->due;
            continue;
        }
        if (a->norders >= ORDERS_MAX)
            continue; /* the end of an order schedules again */
        uint64_t wait = 0;
        if (!cap_allows(a, now, &wait)) {
            if (a->cap_logged_until < now) {
                sl_warn(a->log,
                        "acme: %u orders in the last hour, the cap: %s and "
                        "any others wait %llu s",
                        a->cap, s->names[0],
                        (unsigned long long)(wait / 1000 + 1));
                a->cap_logged_until = now + wait;
            }
            if (now + wait < next)
                next = now + wait;
            continue;
        }
        start_order(a, s);
    }
    if (next != NEVER)
        uv_timer_start(&a->tick, on_tick, next - now, 0);
    else
        uv_timer_stop(&a->tick);
}

/* ---- the API ----------------------------------------------------------- */

/* The hub's TLS put a generation in service: the certificates it holds
 * are valid for the API from now on. */
static void on_applied(void *arg, uint64_t seq)
{
    struct sl_acme *a = arg;
    for (struct subject *s = a->subjects; s != NULL; s = s->next) {
        if (s->serving_seq == 0 || s->serving_seq > seq)
            continue;
        s->serving_seq = 0;
        if (s->has_cert) {
            s->state = SL_ACME_CERT_VALID;
            sl_debug(a->log,
                     "acme: the certificate for %s (serial %s) is in "
                     "service",
                     s->names[0], s->info.serial);
        }
    }
}

static void want_subject(struct sl_acme *a, struct subject *s)
{
    if (s->wanted)
        return;
    s->wanted = 1;
    if (s->has_cert && s->chain_pem != NULL) {
        int64_t now = (int64_t)time(NULL);
        if (s->info.not_after > now &&
            install(a, s, s->chain_pem, s->key_pem) == 0) {
            char until[48];
            fmt_time(s->info.not_after, until, sizeof(until));
            s->state = SL_ACME_CERT_PENDING; /* valid once served */
            subject_due(a, s, renew_delay_ms(a, s));
            sl_info(a->log,
                    "acme: serving the stored certificate for %s (valid "
                    "until %s, serial %s)",
                    s->names[0], until, s->info.serial);
        } else {
            s->has_cert = 0;
        }
        free(s->chain_pem);
        s->chain_pem = NULL;
        sl_acme_pem_free(s->key_pem);
        s->key_pem = NULL;
    }
    if (!s->has_cert) {
        s->state = SL_ACME_CERT_PENDING;
        subject_due(a, s, 0);
        if (!s->said_local) {
            s->said_local = 1;
            sl_info(a->log,
                    "acme: %s is served with the local CA's certificate "
                    "until the ACME one arrives",
                    s->names[0]);
        }
    }
    /* On the next turn of the loop: the identities found at start make
     * one pass, not one each. */
    uv_timer_start(&a->tick, on_tick, 0, 0);
}

void sl_acme_want(struct sl_acme *a, const char *identity)
{
    char name[SL_ACME_NAME_MAX];
    if (a == NULL || a->dns01 || identity == NULL || a->freeing)
        return;
    if (snprintf(name, sizeof(name), "%s.%s", identity, a->domain) >=
            (int)sizeof(name) ||
        !sl_acme_name_ok(name, 0))
        return;
    struct subject *s = subject_find(a, name);
    if (s == NULL && (s = subject_add(a, identity)) == NULL) {
        sl_error(a->log, "acme: out of memory for %s", name);
        return;
    }
    want_subject(a, s);
}

void sl_acme_forget(struct sl_acme *a, const char *identity)
{
    char name[SL_ACME_NAME_MAX];
    if (a == NULL || a->dns01 || identity == NULL)
        return;
    snprintf(name, sizeof(name), "%s.%s", identity, a->domain);
    struct subject *s = subject_find(a, name);
    if (s == NULL || !s->wanted)
        return;
    s->wanted = 0;
    s->due = NEVER;
    if (s->order != NULL) {
        struct order *o = s->order;
        o->cancelled = 1;
        order_release(o);
    }
    if (s->has_cert)
        (void)sl_tls_server_set_cert(a->tls, s->names[0], NULL, NULL);
    s->has_cert = 0;
    s->state = SL_ACME_CERT_NONE;
    schedule(a);
}

SSL *sl_acme_challenge_ssl(struct sl_acme *a, const char *server_name)
{
    if (a == NULL || a->alpn == NULL)
        return NULL;
    SSL *ssl = sl_acme_alpn_ssl(a->alpn, server_name);
    if (ssl != NULL)
        sl_debug(a->log, "acme: a validator asks for %s (acme-tls/1)",
                 server_name);
    return ssl;
}

int sl_acme_status(struct sl_acme *a, const char *identity,
                   struct sl_acme_status *out)
{
    char name[SL_ACME_NAME_MAX];
    memset(out, 0, sizeof(*out));
    if (a == NULL)
        return SL_ENOTFOUND;
    if (a->dns01)
        snprintf(name, sizeof(name), "%s", a->domain);
    else
        snprintf(name, sizeof(name), "%s.%s", identity, a->domain);
    struct subject *s = subject_find(a, name);
    if (s == NULL || !s->wanted)
        return SL_ENOTFOUND;
    out->state = s->state;
    snprintf(out->name, sizeof(out->name), "%s", s->names[0]);
    if (s->has_cert) {
        out->not_after = s->info.not_after;
        snprintf(out->serial, sizeof(out->serial), "%s", s->info.serial);
        snprintf(out->issuer, sizeof(out->issuer), "%s", s->info.issuer);
    }
    out->renew_at = s->due != NEVER ? s->due_unix : 0;
    snprintf(out->error, sizeof(out->error), "%s", s->error);
    return 0;
}

/* ---- start and stop ---------------------------------------------------- */

static int read_file(const char *dir, const char *name, char **out)
{
    char path[SL_STATEDIR_PATH_MAX];
    if (sl_statedir_path(dir, name, path, sizeof(path)) != 0)
        return SL_ETOOBIG;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? SL_ENOTFOUND : UV_EIO;
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad || n > PEM_MAX || memchr(buf, '\0', n) != NULL) {
        if (buf != NULL)
            OPENSSL_cleanse(buf, PEM_MAX + 1);
        free(buf);
        return buf == NULL ? UV_ENOMEM : SL_EPARSE;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int account_key(struct sl_acme *a, char *err, size_t cap)
{
    char *pem = NULL;
    int rc = read_file(a->dir, "account.key", &pem);
    if (rc == 0) {
        rc = sl_acme_key_from_pem(pem, &a->account_key);
        sl_acme_pem_free(pem);
        if (rc != 0 || sl_acme_thumbprint(a->account_key, a->thumb,
                                          sizeof(a->thumb)) != 0) {
            snprintf(err, cap, "%s/account.key: not a P-256 key", a->dir);
            return SL_ECONFIG;
        }
        return 0;
    }
    if (rc != SL_ENOTFOUND) {
        snprintf(err, cap, "%s/account.key: cannot read (%s)", a->dir,
                 sl_strerror(rc));
        return SL_ECONFIG;
    }
    a->account_key = sl_acme_key_new();
    if (a->account_key == NULL || sl_acme_key_pem(a->account_key, &pem) != 0) {
        snprintf(err, cap, "cannot make the ACME account key");
        return UV_ENOMEM;
    }
    rc = sl_statedir_write_file(a->dir, "account.key", pem, strlen(pem));
    sl_acme_pem_free(pem);
    if (rc != 0) {
        snprintf(err, cap, "%s/account.key: cannot write (%s)", a->dir,
                 sl_strerror(rc));
        return rc;
    }
    sl_info(a->log, "acme: made the account key %s/account.key", a->dir);
    return sl_acme_thumbprint(a->account_key, a->thumb, sizeof(a->thumb));
}

/* Takes <name>.crt and <name>.key if they are a certificate for the
 * subject's first name that has not expired. */
static void load_stored(struct sl_acme *a, const char *name)
{
    char file[SL_ACME_NAME_MAX + 8];
    char *chain = NULL, *key = NULL;
    struct sl_acme_cert_info info;
    const char *identity = NULL;
    char id[32];
    if (!a->dns01) {
        size_t n = strlen(name), d = strlen(a->domain);
        if (n <= d + 1 || name[n - d - 1] != '.' ||
            strcmp(name + n - d, a->domain) != 0 || n - d - 1 >= sizeof(id))
            return;
        memcpy(id, name, n - d - 1);
        id[n - d - 1] = '\0';
        if (strchr(id, '.') != NULL)
            return;
        identity = id;
    } else if (strcmp(name, a->domain) != 0) {
        return;
    }
    snprintf(file, sizeof(file), "%s.crt", name);
    if (read_file(a->dir, file, &chain) != 0)
        goto out;
    snprintf(file, sizeof(file), "%s.key", name);
    if (read_file(a->dir, file, &key) != 0)
        goto out;
    if (sl_acme_chain_info(chain, key, name, &info) != 0) {
        sl_warn(a->log,
                "acme: %s/%s.crt is no certificate for %s with its "
                "key: ignored",
                a->dir, name, name);
        goto out;
    }
    if (info.not_after <= (int64_t)time(NULL)) {
        sl_info(a->log,
                "acme: %s/%s.crt has expired: a new one will be "
                "ordered",
                a->dir, name);
        goto out;
    }
    struct subject *s = subject_find(a, name);
    if (s == NULL && (s = subject_add(a, identity)) == NULL)
        goto out;
    s->has_cert = 1;
    s->info = info;
    free(s->chain_pem);
    sl_acme_pem_free(s->key_pem);
    s->chain_pem = chain;
    s->key_pem = key;
    chain = key = NULL;
out:
    free(chain);
    sl_acme_pem_free(key);
}

static void load_all(struct sl_acme *a)
{
    DIR *d = opendir(a->dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || n - 4 >= SL_ACME_NAME_MAX ||
            strcmp(e->d_name + n - 4, ".crt") != 0)
            continue;
        char name[SL_ACME_NAME_MAX];
        memcpy(name, e->d_name, n - 4);
        name[n - 4] = '\0';
        load_stored(a, name);
    }
    closedir(d);
}

static int take_eab(struct sl_acme *a, const char *eab, char *err, size_t cap)
{
    const char *colon = strchr(eab, ':');
    if (colon == NULL || colon == eab || colon[1] == '\0') {
        snprintf(err, cap, "--acme-eab: not KID:KEY");
        return SL_ECONFIG;
    }
    a->eab_kid = strndup(eab, (size_t)(colon - eab));
    if (a->eab_kid == NULL) {
        snprintf(err, cap, "out of memory");
        return UV_ENOMEM;
    }
    if (sl_acme_b64url_decode(colon + 1, strlen(colon + 1), a->eab_key,
                              sizeof(a->eab_key), &a->eab_keylen) != 0 ||
        a->eab_keylen == 0) {
        snprintf(err, cap, "--acme-eab: the key is not base64url");
        return SL_ECONFIG;
    }
    return 0;
}

static void on_tick_closed(uv_handle_t *h)
{
    struct sl_acme *a = h->data;
    a->open--;
    maybe_free(a);
}

int sl_acme_new(uv_loop_t *loop, struct sl_log *log, struct sl_tls_server *tls,
                const struct sl_acme_opts *opts, struct sl_acme **out,
                char *err, size_t cap)
{
    char dir[SL_STATEDIR_PATH_MAX];
    int rc = UV_ENOMEM;
    *out = NULL;
    if (opts->directory == NULL ||
        (strncmp(opts->directory, "https://", 8) != 0 &&
         strncmp(opts->directory, "http://", 7) != 0)) {
        snprintf(err, cap, "--acme %s: not an http(s) URL",
                 opts->directory ? opts->directory : "(none)");
        return SL_ECONFIG;
    }
    if (opts->state_dir == NULL ||
        sl_statedir_path(opts->state_dir, "acme", dir, sizeof(dir)) != 0) {
        snprintf(err, cap, "ACME needs a state directory");
        return SL_ECONFIG;
    }
    const char *domain = opts->domain != NULL ? opts->domain : "localhost";
    if (!sl_acme_name_ok(domain, 0)) {
        snprintf(err, cap,
                 "--domain %s: ACME issues only for a DNS name of two "
                 "labels or more",
                 domain);
        return SL_ECONFIG;
    }
    /* libcurl is opened here, not at the first order: a hub that could
     * never order says so as it starts. */
    if ((rc = sl_acme_http_load(err, cap)) != 0)
        return rc;
    struct sl_acme *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, cap, "out of memory");
        return UV_ENOMEM;
    }
    a->loop = loop;
    a->log = log;
    a->tls = tls;
    a->dns01 = opts->dns_update != NULL;
    a->cap = opts->orders_per_hour ? opts->orders_per_hour : DEFAULT_CAP;
    a->retry_ms = opts->retry_ms ? opts->retry_ms : DEFAULT_RETRY_MS;
    a->renew_ms = opts->renew_ms;
    a->poll_ms = opts->poll_ms ? opts->poll_ms : DEFAULT_POLL_MS;
    a->directory = strdup(opts->directory);
    a->domain = strdup(domain);
    a->dir = strdup(dir);
    a->email = opts->email != NULL ? strdup(opts->email) : NULL;
    a->cap_times = calloc(a->cap, sizeof(*a->cap_times));
    for (char *p = a->domain; p != NULL && *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (a->directory == NULL || a->domain == NULL || a->dir == NULL ||
        (opts->email != NULL && a->email == NULL) || a->cap_times == NULL) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    if (opts->eab != NULL && (rc = take_eab(a, opts->eab, err, cap)) != 0)
        goto fail;
    rc = sl_statedir_ensure(a->dir);
    if (rc != 0) {
        snprintf(err, cap, "%s: cannot create (%s)", a->dir, sl_strerror(rc));
        goto fail;
    }
    chmod(a->dir, 0700);
    if ((rc = account_key(a, err, cap)) != 0)
        goto fail;
    if (a->dns01) {
        struct sl_dns_update_opts dopts = {
            .server = opts->dns_update,
            .key_file = opts->tsig_key_file,
            .visible_ms = opts->dns_visible_ms,
        };
        rc = sl_dns_update_new(loop, log, &dopts, &a->dns, err, cap);
        if (rc != 0)
            goto fail;
    } else if ((a->alpn = sl_acme_alpn_new()) == NULL) {
        rc = UV_ENOMEM;
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    rc = sl_acme_http_new(loop, opts->ca_file, 0, &a->http);
    if (rc != 0) {
        snprintf(err, cap, "cannot set up libcurl");
        goto fail;
    }
    uv_timer_init(loop, &a->tick);
    a->tick.data = a;
    a->open = 1; /* the tick timer */
    sl_tls_server_on_applied(tls, on_applied, a);
    load_all(a);
    sl_info(log, "acme: %s at %s for %s%s, files in %s",
            a->dns01 ? "DNS-01 (one certificate for the domain and its "
                       "wildcard)"
                     : "TLS-ALPN-01 (a certificate per identity)",
            a->directory, a->dns01 ? "" : "*.", a->domain, a->dir);
    if (a->dns01) {
        struct subject *s = subject_find(a, a->domain);
        if (s == NULL && (s = subject_add(a, NULL)) == NULL) {
            rc = UV_ENOMEM;
            snprintf(err, cap, "out of memory");
            sl_acme_free(a);
            return rc;
        }
        want_subject(a, s);
    }
    *out = a;
    return 0;
fail:
    sl_dns_update_free(a->dns);
    sl_acme_alpn_free(a->alpn);
    a->freeing = 1;
    /* Nothing of the loop was started yet but the DNS client's timer: it
     * frees itself; the rest goes now. */
    maybe_free(a);
    return rc;
}

void sl_acme_free(struct sl_acme *a)
{
    if (a == NULL || a->freeing)
        return;
    a->freeing = 1;
    sl_tls_server_on_applied(a->tls, NULL, NULL);
    uv_close((uv_handle_t *)&a->tick, on_tick_closed);
    for (struct subject *s = a->subjects; s != NULL; s = s->next) {
        if (s->order != NULL) {
            struct order *o = s->order;
            o->cancelled = 1;
            if (o->dns_armed)
                sl_warn(a->log,
                        "acme: stopping with the TXT records of %s "
                        "in place",
                        o->dns_name);
            order_release(o);
        }
    }
    sl_dns_update_free(a->dns);
    a->dns = NULL;
    sl_acme_alpn_free(a->alpn);
    a->alpn = NULL;
    sl_acme_http_free(a->http);
    a->http = NULL;
    maybe_free(a);
}
