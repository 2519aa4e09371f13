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

/* JSON strings must escape quotes, backslashes and control bytes. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
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

void sl_log_write(const struct sl_log *log, enum sl_log_level level,
                  const char *fmt, ...)
{
    if (!sl_log_on(log, level))
        return;
    FILE *f = log->out ? log->out : stderr;

    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    /* One fprintf per line keeps lines whole when several processes share
     * a log file. */
    if (log->json) {
        flockfile(f);
        fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when,
                sl_log_level_name(level));
        put_json_string(f, msg);
        fputs("}\n", f);
        funlockfile(f);
    } else {
        /* A text line is one line: a peer's or a user's bytes inside the
         * message must not forge another (or drive the terminal). */
        char safe[sizeof(msg) * 4];
        sl_log_escape(msg, safe, sizeof(safe));
        fprintf(f, "%s %-5s %s\n", when, sl_log_level_name(level), safe);
    }
    fflush(f);
}
