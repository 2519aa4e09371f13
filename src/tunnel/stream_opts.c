#include "tunnel/stream_opts.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "core/error.h"
#include "proto/acl.h"

static int bad(char *err, size_t cap, const char *what)
{
    if (err != NULL && cap > 0)
        snprintf(err, cap, "%s", what);
    return SL_EPARSE;
}

static int rules(json_t *list, const char *name, int allow,
                 char out[][SL_STREAM_OPTS_RULE_MAX], size_t *n, char *err,
                 size_t cap)
{
    if (list == NULL)
        return 0;
    if (!json_is_array(list) || json_array_size(list) > SL_STREAM_OPTS_RULES)
        return bad(err, cap, allow ? "acl.allow: an array of at most 32 "
                                     "rules"
                                   : "acl.deny: an array of at most 32 rules");
    struct sl_acl *check = sl_acl_new();
    if (check == NULL)
        return UV_ENOMEM;
    size_t i;
    json_t *v;
    int rc = 0;
    json_array_foreach(list, i, v) {
        const char *s = json_string_value(v);
        char why[160];
        if (s == NULL || strlen(s) >= SL_STREAM_OPTS_RULE_MAX ||
            sl_acl_add(check, allow, s, 0, why, sizeof(why)) != 0) {
            if (err != NULL)
                snprintf(err, cap, "acl.%s: bad rule \"%s\": %s", name,
                         s ? s : "(not a string)",
                         s == NULL ? "rules are strings"
                         : strlen(s) >= SL_STREAM_OPTS_RULE_MAX
                             ? "too long"
                             : why);
            rc = SL_EPARSE;
            break;
        }
        snprintf(out[(*n)++], SL_STREAM_OPTS_RULE_MAX, "%s", s);
    }
    sl_acl_free(check);
    return rc;
}

static int cap_of(json_t *o, const char *name, uint32_t *out, char *err,
                  size_t cap)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > UINT32_MAX) {
        if (err != NULL)
            snprintf(err, cap, "%s: a number 0-4294967295", name);
        return SL_EPARSE;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

int sl_stream_opts_from_json(const void *json, struct sl_stream_opts *out,
                             char *err, size_t errcap)
{
    json_t *o = (json_t *)json;
    memset(out, 0, sizeof(*out));
    if (o == NULL)
        return 0;
    if (!json_is_object(o))
        return bad(err, errcap, "stream options must be an object");
    json_t *acl = json_object_get(o, "acl");
    if (acl != NULL && !json_is_object(acl))
        return bad(err, errcap, "acl: an object {allow: [...], deny: [...]}");
    int rc = 0;
    if (acl != NULL &&
        ((rc = rules(json_object_get(acl, "allow"), "allow", 1, out->allow,
                     &out->nallow, err, errcap)) != 0 ||
         (rc = rules(json_object_get(acl, "deny"), "deny", 0, out->deny,
                     &out->ndeny, err, errcap)) != 0))
        return rc;
    json_t *pp = json_object_get(o, "proxy_protocol");
    if (pp != NULL) {
        const char *s = json_string_value(pp);
        if (s != NULL && strcmp(s, "v1") == 0)
            out->proxy_protocol = 1;
        else if (s != NULL && strcmp(s, "v2") == 0)
            out->proxy_protocol = 2;
        else if (s != NULL && (strcmp(s, "off") == 0 || s[0] == '\0'))
            out->proxy_protocol = 0;
        else
            return bad(err, errcap, "proxy_protocol: v1, v2 or off");
    }
    if ((rc = cap_of(o, "max_connections", &out->max_connections, err,
                     errcap)) != 0 ||
        (rc = cap_of(o, "max_sessions", &out->max_sessions, err, errcap)) !=
            0)
        return rc;
    return 0;
}

int sl_stream_opts_parse(const char *text, struct sl_stream_opts *out,
                         char *err, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || text[0] == '\0')
        return 0;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (o == NULL)
        return bad(err, errcap, "stream options are not JSON");
    int rc = sl_stream_opts_from_json(o, out, err, errcap);
    json_decref(o);
    return rc;
}

static json_t *list_of(char rules_[][SL_STREAM_OPTS_RULE_MAX], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, json_string(rules_[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

void *sl_stream_opts_to_json(const struct sl_stream_opts *o)
{
    static const char *const pp[] = {"off", "v1", "v2"};
    json_t *j = json_object();
    json_t *acl = json_object();
    json_t *allow = list_of((char(*)[SL_STREAM_OPTS_RULE_MAX])o->allow,
                            o->nallow);
    json_t *deny = list_of((char(*)[SL_STREAM_OPTS_RULE_MAX])o->deny,
                           o->ndeny);
    if (j == NULL || acl == NULL || allow == NULL || deny == NULL ||
        json_object_set_new(acl, "allow", allow) != 0 ||
        json_object_set_new(acl, "deny", deny) != 0 ||
        json_object_set_new(j, "acl", acl) != 0 ||
        json_object_set_new(j, "proxy_protocol",
                            json_string(pp[o->proxy_protocol % 3])) != 0 ||
        json_object_set_new(j, "max_connections",
                            json_integer(o->max_connections)) != 0 ||
        json_object_set_new(j, "max_sessions",
                            json_integer(o->max_sessions)) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int sl_stream_opts_empty(const struct sl_stream_opts *o)
{
    return o->nallow == 0 && o->ndeny == 0 && o->proxy_protocol == 0 &&
           o->max_connections == 0 && o->max_sessions == 0;
}

static uint32_t min_set(uint32_t a, uint32_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

void sl_stream_opts_merge(struct sl_stream_opts *o,
                          const struct sl_stream_opts *b)
{
    if (b->nallow > 0 || b->ndeny > 0) {
        memcpy(o->allow, b->allow, sizeof(o->allow));
        memcpy(o->deny, b->deny, sizeof(o->deny));
        o->nallow = b->nallow;
        o->ndeny = b->ndeny;
    }
    if (b->proxy_protocol != 0)
        o->proxy_protocol = b->proxy_protocol;
    o->max_connections = min_set(o->max_connections, b->max_connections);
    o->max_sessions = min_set(o->max_sessions, b->max_sessions);
}
