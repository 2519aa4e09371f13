#include "tunnel/control.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "tunnel/stream_opts.h"

static const char *const type_names[] = {
    [SL_CTL_HELLO] = "hello", [SL_CTL_WELCOME] = "welcome",
    [SL_CTL_OPEN] = "open",   [SL_CTL_STATS] = "stats",
    [SL_CTL_ERROR] = "error",
};

const char *sl_ctl_type_name(enum sl_ctl_type type)
{
    if ((unsigned)type < SL_CTL_UNKNOWN)
        return type_names[type];
    return "unknown";
}

void sl_ctl_init(struct sl_ctl_msg *msg, enum sl_ctl_type type)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = type;
    msg->hello.version = SL_CTL_VERSION;
    msg->welcome.ping_interval = SL_CTL_PING_INTERVAL;
    msg->welcome.pairing_window = SL_CTL_PAIRING_WINDOW;
    memcpy(msg->open.kind, "http", 5);
}

/* Field readers: each returns 0 (value stored, or field absent and not
 * required: out left alone), or SL_EPARSE. */

static int get_string(json_t *obj, const char *name, int required, char *out,
                      size_t cap)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return required ? SL_EPARSE : 0;
    if (!json_is_string(v))
        return SL_EPARSE;
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    /* An embedded NUL would make the C string say less than the sender
     * meant (e.g. "ab1234567890\u0000evil"). */
    if (len >= cap || memchr(s, '\0', len) != NULL)
        return SL_EPARSE;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static int get_uint(json_t *obj, const char *name, int required,
                    uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return required ? SL_EPARSE : 0;
    if (!json_is_integer(v))
        return SL_EPARSE;
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > max)
        return SL_EPARSE;
    *out = (uint64_t)i;
    return 0;
}

static int get_int(json_t *obj, const char *name, int required, int min,
                   int max, int *out)
{
    uint64_t v = (uint64_t)*out;
    int rc = get_uint(obj, name, required, (uint64_t)max, &v);
    if (rc != 0)
        return rc;
    if (v < (uint64_t)min)
        return SL_EPARSE;
    *out = (int)v;
    return 0;
}

static int parse_hello(json_t *o, struct sl_ctl_msg *m)
{
    if (get_int(o, "version", 1, 1, 65535, &m->hello.version) != 0 ||
        get_int(o, "pool", 0, 0, SL_CTL_POOL_MAX, &m->hello.pool) != 0)
        return SL_EPARSE;
    json_t *caps = json_object_get(o, "capabilities");
    if (caps == NULL)
        return 0;
    if (!json_is_array(caps))
        return SL_EPARSE;
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c) {
        if (!json_is_string(c))
            return SL_EPARSE;
        const char *s = json_string_value(c);
        if (strcmp(s, "http") == 0)
            m->hello.capabilities |= SL_CAP_HTTP;
        else if (strcmp(s, "tcp") == 0)
            m->hello.capabilities |= SL_CAP_TCP;
        else if (strcmp(s, "udp") == 0)
            m->hello.capabilities |= SL_CAP_UDP;
        else if (strcmp(s, "tls") == 0)
            m->hello.capabilities |= SL_CAP_TLS;
        else if (strcmp(s, "mux") == 0)
            m->hello.capabilities |= SL_CAP_MUX;
    }
    return 0;
}

static int parse_hello_streams(json_t *o, struct sl_ctl_msg *m)
{
    json_t *s = json_object_get(o, "streams");
    if (s == NULL)
        return 0;
    return sl_stream_opts_from_json(s, &m->hello.streams, NULL, 0) == 0
               ? 0
               : SL_EPARSE;
}

/* A URL the node prints and logs: visible ASCII only, so a hostile hub
 * cannot forge lines of its output ("\r\nbridge ..."). */
static int url_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static int parse_welcome(json_t *o, struct sl_ctl_msg *m)
{
    if (get_string(o, "identity", 1, m->welcome.identity,
                   sizeof(m->welcome.identity)) != 0 ||
        !sl_identity_valid(m->welcome.identity, strlen(m->welcome.identity)) ||
        get_string(o, "url", 1, m->welcome.url, sizeof(m->welcome.url)) != 0 ||
        !url_ok(m->welcome.url) ||
        get_string(o, "username", 0, m->welcome.username,
                   sizeof(m->welcome.username)) != 0 ||
        get_string(o, "password", 0, m->welcome.password,
                   sizeof(m->welcome.password)) != 0 ||
        get_int(o, "ping_interval", 0, 1, 3600, &m->welcome.ping_interval) ||
        get_int(o, "pairing_window", 0, 1, 3600, &m->welcome.pairing_window) ||
        get_int(o, "tcp_port", 0, 0, 65535, &m->welcome.tcp_port) ||
        get_int(o, "udp_port", 0, 0, 65535, &m->welcome.udp_port) ||
        get_int(o, "mux", 0, 0, SL_CTL_MUX_MAX, &m->welcome.mux))
        return SL_EPARSE;
    json_t *limits = json_object_get(o, "limits");
    if (limits == NULL)
        return 0;
    if (!json_is_object(limits))
        return SL_EPARSE;
    uint64_t bridges = 0;
    if (get_uint(limits, "bridges", 0, UINT32_MAX, &bridges) != 0 ||
        get_uint(limits, "traffic", 0, UINT64_MAX,
                 &m->welcome.limit_traffic) != 0)
        return SL_EPARSE;
    m->welcome.limit_bridges = (uint32_t)bridges;
    return 0;
}

static int parse_open(json_t *o, struct sl_ctl_msg *m)
{
    if (get_string(o, "fingerprint", 1, m->open.fingerprint,
                   sizeof(m->open.fingerprint)) != 0 ||
        !sl_uuid4_valid(m->open.fingerprint, strlen(m->open.fingerprint)) ||
        get_string(o, "kind", 1, m->open.kind, sizeof(m->open.kind)) != 0 ||
        m->open.kind[0] == '\0' ||
        get_string(o, "target", 0, m->open.target, sizeof(m->open.target)))
        return SL_EPARSE;
    return 0;
}

static int parse_stats(json_t *o, struct sl_ctl_msg *m)
{
    json_t *traffic = json_object_get(o, "traffic");
    if (!json_is_object(traffic) ||
        get_uint(traffic, "down", 1, UINT64_MAX, &m->stats.down) != 0 ||
        get_uint(traffic, "up", 1, UINT64_MAX, &m->stats.up) != 0 ||
        get_uint(o, "limit", 0, UINT64_MAX, &m->stats.limit) != 0)
        return SL_EPARSE;
    return 0;
}

static int parse_error(json_t *o, struct sl_ctl_msg *m)
{
    if (get_string(o, "message", 1, m->error.message,
                   sizeof(m->error.message)) != 0 ||
        get_int(o, "code", 0, 0, 999, &m->error.code) != 0)
        return SL_EPARSE;
    return 0;
}

int sl_ctl_parse(const char *json, size_t len, struct sl_ctl_msg *out)
{
    json_t *root = NULL;
    json_error_t jerr;
    int rc;
    memset(out, 0, sizeof(*out));
    out->type = SL_CTL_UNKNOWN;
    if (len > SL_CTL_MAX_MSG)
        return SL_ETOOBIG;
    if (json == NULL)
        return SL_EPARSE;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = json_error_code(&jerr) == json_error_out_of_memory ? UV_ENOMEM
                                                                 : SL_EPARSE;
        goto out;
    }
    rc = SL_EPARSE;
    if (!json_is_object(root))
        goto out;
    json_t *type = json_object_get(root, "type");
    if (!json_is_string(type))
        goto out;
    enum sl_ctl_type t = SL_CTL_UNKNOWN;
    for (unsigned i = 0; i < SL_CTL_UNKNOWN; i++) {
        if (strcmp(json_string_value(type), type_names[i]) == 0)
            t = (enum sl_ctl_type)i;
    }
    sl_ctl_init(out, t);
    switch (t) {
    case SL_CTL_HELLO:
        rc = parse_hello(root, out);
        if (rc == 0)
            rc = parse_hello_streams(root, out);
        break;
    case SL_CTL_WELCOME:
        rc = parse_welcome(root, out);
        break;
    case SL_CTL_OPEN:
        rc = parse_open(root, out);
        break;
    case SL_CTL_STATS:
        rc = parse_stats(root, out);
        break;
    case SL_CTL_ERROR:
        rc = parse_error(root, out);
        break;
    case SL_CTL_UNKNOWN:
        /* Ignored by the receiver: later versions may add types. */
        memset(out, 0, sizeof(*out));
        out->type = SL_CTL_UNKNOWN;
        rc = 0;
        break;
    }
out:
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->type = SL_CTL_UNKNOWN;
    }
    json_decref(root);
    return rc;
}

/* Encoding helpers: each returns 0 or UV_ENOMEM. json_object_set_new steals
 * the value even on failure, so no value leaks. */

static int put(json_t *o, const char *name, json_t *v)
{
    return json_object_set_new(o, name, v) == 0 ? 0 : UV_ENOMEM;
}

/* json_string() refuses text that is not UTF-8 (and the parser would too):
 * that is the caller's mistake, not a lack of memory. */
static int put_str(json_t *o, const char *name, const char *s)
{
    json_t *v = json_string(s);
    if (v == NULL)
        return UV_EINVAL;
    return put(o, name, v);
}

static json_t *uint_json(uint64_t v)
{
    /* jansson's integers are signed 64-bit: clamp rather than wrap. */
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static int bounded(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

static int encode_hello(const struct sl_ctl_msg *m, json_t *o)
{
    if (m->hello.version < 1 || m->hello.version > 65535 ||
        m->hello.pool < 0 || m->hello.pool > SL_CTL_POOL_MAX)
        return UV_EINVAL;
    json_t *caps = json_array();
    if (caps == NULL)
        return UV_ENOMEM;
    if (((m->hello.capabilities & SL_CAP_HTTP) &&
         json_array_append_new(caps, json_string("http")) != 0) ||
        ((m->hello.capabilities & SL_CAP_TCP) &&
         json_array_append_new(caps, json_string("tcp")) != 0) ||
        ((m->hello.capabilities & SL_CAP_UDP) &&
         json_array_append_new(caps, json_string("udp")) != 0) ||
        ((m->hello.capabilities & SL_CAP_TLS) &&
         json_array_append_new(caps, json_string("tls")) != 0) ||
        ((m->hello.capabilities & SL_CAP_MUX) &&
         json_array_append_new(caps, json_string("mux")) != 0)) {
        json_decref(caps);
        return UV_ENOMEM;
    }
    if (put(o, "version", json_integer(m->hello.version)) != 0) {
        json_decref(caps); /* not handed to the object yet */
        return UV_ENOMEM;
    }
    if (put(o, "capabilities", caps) != 0 ||
        put(o, "pool", json_integer(m->hello.pool)) != 0)
        return UV_ENOMEM;
    if (!sl_stream_opts_empty(&m->hello.streams)) {
        json_t *s = sl_stream_opts_to_json(&m->hello.streams);
        if (s == NULL || put(o, "streams", s) != 0)
            return UV_ENOMEM;
    }
    return 0;
}

static int encode_welcome(const struct sl_ctl_msg *m, json_t *o)
{
    const struct sl_ctl_welcome *w = &m->welcome;
    if (!bounded(w->identity, sizeof(w->identity)) ||
        !sl_identity_valid(w->identity, strlen(w->identity)) ||
        !bounded(w->url, sizeof(w->url)) ||
        !bounded(w->username, sizeof(w->username)) ||
        !bounded(w->password, sizeof(w->password)) ||
        w->ping_interval < 1 || w->ping_interval > 3600 ||
        w->pairing_window < 1 || w->pairing_window > 3600 ||
        w->mux < 0 || w->mux > SL_CTL_MUX_MAX)
        return UV_EINVAL;
    json_t *limits = json_object();
    if (limits == NULL)
        return UV_ENOMEM;
    if (put(limits, "bridges", json_integer(w->limit_bridges)) != 0 ||
        put(limits, "traffic", uint_json(w->limit_traffic)) != 0) {
        json_decref(limits);
        return UV_ENOMEM;
    }
    int rc = put_str(o, "identity", w->identity);
    if (rc == 0)
        rc = put_str(o, "url", w->url);
    if (rc == 0 && w->username[0] != '\0')
        rc = put_str(o, "username", w->username);
    if (rc == 0 && w->password[0] != '\0')
        rc = put_str(o, "password", w->password);
    if (rc != 0) {
        json_decref(limits); /* not handed to the object yet */
        return rc;
    }
    rc = put(o, "limits", limits);
    if (rc == 0 && w->tcp_port > 0)
        rc = put(o, "tcp_port", json_integer(w->tcp_port));
    if (rc == 0 && w->udp_port > 0)
        rc = put(o, "udp_port", json_integer(w->udp_port));
    if (rc == 0)
        rc = put(o, "ping_interval", json_integer(w->ping_interval));
    if (rc == 0)
        rc = put(o, "pairing_window", json_integer(w->pairing_window));
    if (rc == 0 && w->mux > 0)
        rc = put(o, "mux", json_integer(w->mux));
    return rc;
}

static int encode_open(const struct sl_ctl_msg *m, json_t *o)
{
    if (!bounded(m->open.fingerprint, sizeof(m->open.fingerprint)) ||
        !sl_uuid4_valid(m->open.fingerprint, strlen(m->open.fingerprint)) ||
        !bounded(m->open.kind, sizeof(m->open.kind)) ||
        m->open.kind[0] == '\0' ||
        !bounded(m->open.target, sizeof(m->open.target)))
        return UV_EINVAL;
    int rc = put_str(o, "fingerprint", m->open.fingerprint);
    if (rc == 0)
        rc = put_str(o, "kind", m->open.kind);
    if (rc == 0)
        rc = put_str(o, "target", m->open.target);
    return rc;
}

static int encode_stats(const struct sl_ctl_msg *m, json_t *o)
{
    json_t *traffic = json_object();
    if (traffic == NULL)
        return UV_ENOMEM;
    if (put(traffic, "down", uint_json(m->stats.down)) != 0 ||
        put(traffic, "up", uint_json(m->stats.up)) != 0) {
        json_decref(traffic);
        return UV_ENOMEM;
    }
    if (put(o, "traffic", traffic) != 0 ||
        put(o, "limit", uint_json(m->stats.limit)) != 0)
        return UV_ENOMEM;
    return 0;
}

static int encode_error(const struct sl_ctl_msg *m, json_t *o)
{
    if (!bounded(m->error.message, sizeof(m->error.message)) ||
        m->error.code < 0 || m->error.code > 999)
        return UV_EINVAL;
    int rc = put_str(o, "message", m->error.message);
    if (rc == 0)
        rc = put(o, "code", json_integer(m->error.code));
    return rc;
}

int sl_ctl_encode(const struct sl_ctl_msg *msg, char **out, size_t *outlen)
{
    json_t *o = NULL;
    char *buf = NULL;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    if (msg == NULL || out == NULL || outlen == NULL ||
        (unsigned)msg->type >= SL_CTL_UNKNOWN)
        return UV_EINVAL;
    o = json_object();
    if (o == NULL)
        return UV_ENOMEM;
    rc = put_str(o, "type", type_names[msg->type]);
    if (rc != 0)
        goto out;
    switch (msg->type) {
    case SL_CTL_HELLO:
        rc = encode_hello(msg, o);
        break;
    case SL_CTL_WELCOME:
        rc = encode_welcome(msg, o);
        break;
    case SL_CTL_OPEN:
        rc = encode_open(msg, o);
        break;
    case SL_CTL_STATS:
        rc = encode_stats(msg, o);
        break;
    case SL_CTL_ERROR:
        rc = encode_error(msg, o);
        break;
    case SL_CTL_UNKNOWN:
        rc = UV_EINVAL;
        break;
    }
    if (rc != 0)
        goto out;
    /* Dump into our own malloc'd buffer so the caller's free() matches
     * whatever allocator jansson was given. */
    size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (need == 0) {
        rc = UV_ENOMEM;
        goto out;
    }
    if (need > SL_CTL_MAX_MSG) {
        rc = SL_ETOOBIG;
        goto out;
    }
    buf = malloc(need + 1);
    if (buf == NULL) {
        rc = UV_ENOMEM;
        goto out;
    }
    if (json_dumpb(o, buf, need, JSON_COMPACT | JSON_PRESERVE_ORDER) != need) {
        rc = UV_ENOMEM;
        goto out;
    }
    buf[need] = '\0';
    *out = buf;
    *outlen = need;
    buf = NULL;
out:
    free(buf);
    json_decref(o);
    return rc;
}
