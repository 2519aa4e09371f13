#include "core/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          "trace"};

int sl_log_level_parse(const char *s, enum sl_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum sl_log_level)i;
            return 0;
        }
    }
    return SL_EPARSE;
}

const char *sl_log_level_name(enum sl_log_level level)
{
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "?";
    return level_names[level];
}

size_t sl_log_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[5];
        size_t n = 0;
        if (c == '\n' || c == '\r' || c == '\t') {
            e[n++] = '\\';
            e[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            e[n++] = '\\';
            e[n++] = 'x';
            e[n++] = hex[c >> 4];
            e[n++] = hex[c & 15];
        } else {
            e[n++] = (char)c;
        }
        if (o + n >= cap)
            break; /* never half an escape */
        memcpy(out + o, e, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* A log line being built: written with one fwrite so that a line stays
 * whole on an unbuffered stderr shared by several processes. Bytes past
 * the cap are dropped (the line is cut, never split). */
struct line {
    char buf[12288]; /* a text message escaped (8 KiB) and its prefix */
    size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > sizeof(l->buf) - 2 - l->len) /* room for '\n' and NUL */
        n = sizeof(l->buf) - 2 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

__attribute__((format(printf, 2, 3))) static void
putf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, sizeof(l->buf) - 1 - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < sizeof(l->buf) - 2 - l->len
                      ? (size_t)n
                      : sizeof(l->buf) - 2 - l->len;
}

/* JSON strings must escape quotes, backslashes and control bytes. */
static void put_json_string(struct line *l, const char *s)
{
    put(l, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20) {
            putf(l, "\\u%04x", c);
        } else {
            put(l, s, 1);
        }
    }
    put(l, "\"", 1);
}

/* Keys come from the code, but a key is written only when it is a plain
 * word, so a mistake cannot forge JSON or another field. */
static int key_ok(const char *k)
{
    if (k == NULL || *k == '\0')
        return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return 0;
    return 1;
}

__attribute__((format(printf, 5, 0))) static void
write_line(const struct sl_log *log, enum sl_log_level level,
           const struct sl_log_field *fields, size_t nfields, const char *fmt,
           va_list ap)
{
    FILE *f = log->out ? log->out : stderr;
    /* On the stack, not the heap: logging must work when memory is out
     * (and must not shift the allocations the OOM tests count). */
    struct line line;
    struct line *l = &line;
    l->len = 0;

    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    if (nfields > SL_LOG_FIELDS_MAX)
        nfields = SL_LOG_FIELDS_MAX;
    if (log->json) {
        putf(l, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when,
             sl_log_level_name(level));
        put_json_string(l, msg);
    } else {
        /* A text line is one line: a peer's or a user's bytes inside the
         * message must not forge another (or drive the terminal). */
        char safe[sizeof(msg) * 4];
        sl_log_escape(msg, safe, sizeof(safe));
        putf(l, "%s %-5s %s", when, sl_log_level_name(level), safe);
    }
    /* Text lines are for people, and their message already says what
     * the fields hold: the fields go to JSON only. */
    for (size_t i = 0; log->json && i < nfields; i++) {
        const struct sl_log_field *fl = &fields[i];
        if (!key_ok(fl->key) || (!fl->is_num && fl->str == NULL))
            continue;
        putf(l, ",\"%s\":", fl->key);
        if (fl->is_num)
            putf(l, "%llu", (unsigned long long)fl->num);
        else
            put_json_string(l, fl->str);
    }
    if (log->json) {
        /* A cut line must still parse: close what the cap cut off. */
        if (l->len >= sizeof(l->buf) - 2)
            l->len = 0, putf(l, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":"
                             "\"(line too long)\"", when,
                             sl_log_level_name(level));
        l->buf[l->len++] = '}';
    }
    l->buf[l->len++] = '\n';
    fwrite(l->buf, 1, l->len, f);
    fflush(f);
}

void sl_log_write(const struct sl_log *log, enum sl_log_level level,
                  const char *fmt, ...)
{
    if (!sl_log_on(log, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(log, level, NULL, 0, fmt, ap);
    va_end(ap);
}

void sl_log_event(const struct sl_log *log, enum sl_log_level level,
                  const struct sl_log_field *fields, size_t nfields,
                  const char *fmt, ...)
{
    if (!sl_log_on(log, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(log, level, fields, nfields, fmt, ap);
    va_end(ap);
}
