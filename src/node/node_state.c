#include "node/node_state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"

int64_t sl_node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t sl_node_backoff_ms(unsigned attempt, double factor)
{
    /* The range's top doubles from 2 s; with the factor's floor of 0.5
     * every delay stays within DESIGN's 1 s to 60 s, jittered each time. */
    uint64_t base = attempt >= 5 ? 60000 : (uint64_t)2000 << attempt;
    /* NaN compares false both ways: treat it as the upper bound. */
    if (!(factor >= 0.5))
        factor = factor < 0.5 ? 0.5 : 1.0;
    if (factor > 1.0)
        factor = 1.0;
    return (uint64_t)((double)base * factor);
}

double sl_node_backoff_jitter(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        return 1.0; /* no entropy: no jitter, the longest wait */
    return 0.5 + 0.5 * ((double)r / 4294967295.0);
}

/* --------------------------------------------------------------- encode */

static int set_str(json_t *o, const char *k, const char *v)
{
    return json_object_set_new(o, k, json_string(v));
}

char *sl_node_state_encode(const struct sl_node_bridge_rec *recs, size_t n)
{
    char *text = NULL;
    json_t *root = json_object();
    json_t *arr = json_array();
    if (root == NULL || arr == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct sl_node_bridge_rec *r = &recs[i];
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0)
            goto out;
        if (set_str(o, "identity", r->identity) ||
            set_str(o, "upstream", r->upstream) ||
            set_str(o, "hub", r->hub) || set_str(o, "url", r->url) ||
            set_str(o, "username", r->username) ||
            set_str(o, "password", r->password) ||
            set_str(o, "token", r->token) ||
            (r->grant[0] != '\0' && set_str(o, "grant", r->grant)) ||
            json_object_set_new(o, "disconnected",
                                json_boolean(r->disconnected)) ||
            json_object_set_new(o, "created_at",
                                json_integer(r->created_at)) ||
            json_object_set_new(o, "connected_at",
                                json_integer(r->connected_at)) ||
            json_object_set_new(o, "last_seen", json_integer(r->last_seen)))
            goto out;
    }
    if (json_object_set_new(root, "version", json_integer(1)) != 0)
        goto out;
    if (json_object_set(root, "bridges", arr) != 0)
        goto out;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
out:
    json_decref(arr);
    json_decref(root);
    return text;
}

/* --------------------------------------------------------------- decode */

/* Copies a string member into dst; absent or non-string gives "". Returns
 * SL_ETOOBIG when it does not fit. */
static int get_str(json_t *o, const char *k, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, k);
    dst[0] = '\0';
    if (!json_is_string(v))
        return 0;
    size_t len = json_string_length(v);
    if (len >= cap)
        return SL_ETOOBIG;
    memcpy(dst, json_string_value(v), len);
    dst[len] = '\0';
    if (strlen(dst) != len) /* embedded NUL */
        return SL_EPARSE;
    return 0;
}

static int64_t get_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static int identity_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 1; /* not yet allocated */
    if (n != 12)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int letter = c >= 'a' && c <= 'z';
        if (i < 2 ? !letter : !(letter || (c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

int sl_node_state_decode(const char *text, size_t len,
                         struct sl_node_bridge_rec *recs, size_t max,
                         size_t *n, size_t *skipped)
{
    int rc = SL_EPARSE;
    size_t count = 0, skip = 0;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(root))
        goto out;
    json_t *arr = json_object_get(root, "bridges");
    if (arr == NULL) {
        rc = 0;
        goto out;
    }
    if (!json_is_array(arr))
        goto out;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) {
        if (count >= max) {
            skip++;
            continue;
        }
        struct sl_node_bridge_rec *r = &recs[count];
        memset(r, 0, sizeof(*r));
        struct sl_node_url u, hubs[SL_NODE_HUBS_MAX];
        size_t nhubs;
        if (!json_is_object(o) ||
            get_str(o, "identity", r->identity, sizeof(r->identity)) ||
            get_str(o, "upstream", r->upstream, sizeof(r->upstream)) ||
            get_str(o, "hub", r->hub, sizeof(r->hub)) ||
            get_str(o, "url", r->url, sizeof(r->url)) ||
            get_str(o, "username", r->username, sizeof(r->username)) ||
            get_str(o, "password", r->password, sizeof(r->password)) ||
            get_str(o, "token", r->token, sizeof(r->token)) ||
            get_str(o, "grant", r->grant, sizeof(r->grant)) ||
            !identity_ok(r->identity) ||
            sl_node_url_parse_upstream(r->upstream, &u, NULL, 0) != 0 ||
            sl_node_url_parse_hubs(r->hub, hubs, &nhubs, NULL, 0) != 0) {
            skip++;
            continue;
        }
        r->disconnected = json_is_true(json_object_get(o, "disconnected"));
        r->created_at = get_int(o, "created_at");
        r->connected_at = get_int(o, "connected_at");
        r->last_seen = get_int(o, "last_seen");
        count++;
    }
    rc = 0;
out:
    json_decref(root);
    *n = count;
    if (skipped != NULL)
        *skipped = skip;
    return rc;
}

int sl_node_state_load(const char *dir, struct sl_node_bridge_rec *recs,
                       size_t max, size_t *n, size_t *skipped)
{
    char path[1100];
    *n = 0;
    if (skipped != NULL)
        *skipped = 0;
    int len = snprintf(path, sizeof(path), "%s/%s", dir, SL_NODE_STATE_FILE);
    if (len < 0 || (size_t)len >= sizeof(path))
        return SL_ETOOBIG;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    char *buf = malloc(SL_NODE_STATE_MAX);
    if (buf == NULL) {
        fclose(f);
        return UV_ENOMEM;
    }
    size_t got = fread(buf, 1, SL_NODE_STATE_MAX, f);
    int rc = ferror(f) ? UV_EIO : 0;
    fclose(f);
    if (rc == 0 && got == SL_NODE_STATE_MAX)
        rc = SL_ETOOBIG;
    if (rc == 0)
        rc = sl_node_state_decode(buf, got, recs, max, n, skipped);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- saver */

static void saver_start(struct sl_node_saver *s);

int sl_node_saver_init(struct sl_node_saver *s, uv_loop_t *loop,
                       const char *dir, const char *name)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->fd = -1;
    int a = snprintf(s->path, sizeof(s->path), "%s/%s", dir, name);
    int b = snprintf(s->tmp_path, sizeof(s->tmp_path), "%s/.%s.tmp", dir,
                     name);
    if (a < 0 || (size_t)a >= sizeof(s->path) || b < 0 ||
        (size_t)b >= sizeof(s->tmp_path))
        return SL_ETOOBIG;
    s->req.data = s;
    return 0;
}

static void saver_finish(struct sl_node_saver *s, int err)
{
    if (err != 0 && s->log != NULL)
        sl_warn((struct sl_log *)s->log, "state: writing %s failed: %s",
                s->path, sl_strerror(err));
    s->last_error = err;
    free(s->inflight);
    s->inflight = NULL;
    s->busy = 0;
    if (s->pending != NULL) {
        saver_start(s);
        return;
    }
    if (s->on_idle != NULL) {
        sl_node_saver_done_cb cb = s->on_idle;
        s->on_idle = NULL;
        cb(s->idle_arg);
    }
}

static void on_rename(uv_fs_t *req)
{
    struct sl_node_saver *s = req->data;
    int err = req->result < 0 ? (int)req->result : 0;
    uv_fs_req_cleanup(req);
    saver_finish(s, err);
}

static void on_close(uv_fs_t *req)
{
    struct sl_node_saver *s = req->data;
    int err = req->result < 0 ? (int)req->result : s->last_error;
    uv_fs_req_cleanup(req);
    s->fd = -1;
    if (err == 0)
        err = uv_fs_rename(s->loop, &s->req, s->tmp_path, s->path, on_rename);
    if (err != 0)
        saver_finish(s, err);
}

static void close_tmp(struct sl_node_saver *s, int err)
{
    /* The error (if any) rides in last_error through the close. */
    s->last_error = err;
    int rc = uv_fs_close(s->loop, &s->req, s->fd, on_close);
    if (rc != 0) {
        s->fd = -1;
        saver_finish(s, err != 0 ? err : rc);
    }
}

static void on_fsync(uv_fs_t *req)
{
    struct sl_node_saver *s = req->data;
    int err = req->result < 0 ? (int)req->result : 0;
    uv_fs_req_cleanup(req);
    close_tmp(s, err);
}

static void write_more(struct sl_node_saver *s);

static void on_write(uv_fs_t *req)
{
    struct sl_node_saver *s = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r < 0) {
        close_tmp(s, (int)r);
        return;
    }
    s->off += (size_t)r;
    write_more(s);
}

static void write_more(struct sl_node_saver *s)
{
    size_t len = strlen(s->inflight);
    int rc;
    if (s->off < len) {
        uv_buf_t b = uv_buf_init(s->inflight + s->off,
                                 (unsigned)(len - s->off));
        rc = uv_fs_write(s->loop, &s->req, s->fd, &b, 1, -1, on_write);
    } else {
        rc = uv_fs_fsync(s->loop, &s->req, s->fd, on_fsync);
    }
    if (rc != 0)
        close_tmp(s, rc);
}

static void on_open(uv_fs_t *req)
{
    struct sl_node_saver *s = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r < 0) {
        saver_finish(s, (int)r);
        return;
    }
    s->fd = (uv_file)r;
    s->off = 0;
    s->last_error = 0;
    write_more(s);
}

static void saver_start(struct sl_node_saver *s)
{
    s->inflight = s->pending;
    s->pending = NULL;
    s->busy = 1;
    int rc = uv_fs_open(s->loop, &s->req, s->tmp_path,
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600,
                        on_open);
    if (rc != 0)
        saver_finish(s, rc);
}

void sl_node_saver_save(struct sl_node_saver *s, char *text)
{
    if (text == NULL)
        return;
    free(s->pending);
    s->pending = text;
    if (!s->busy)
        saver_start(s);
}

int sl_node_saver_busy(const struct sl_node_saver *s)
{
    return s->busy || s->pending != NULL;
}

void sl_node_saver_flush(struct sl_node_saver *s, sl_node_saver_done_cb cb,
                         void *arg)
{
    if (!sl_node_saver_busy(s)) {
        cb(arg);
        return;
    }
    s->on_idle = cb;
    s->idle_arg = arg;
}

void sl_node_saver_free(struct sl_node_saver *s)
{
    free(s->pending);
    s->pending = NULL;
    free(s->inflight);
    s->inflight = NULL;
}
