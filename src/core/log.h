/* Logging. One struct sl_log lives in the process context and is passed to
 * whoever logs; there is no global logger. Lines go to one FILE (stderr by
 * default), as text or as one JSON object a line. Never log secrets. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum sl_log_level {
    SL_LOG_ERROR = 0,
    SL_LOG_WARN,
    SL_LOG_INFO,
    SL_LOG_DEBUG,
    SL_LOG_TRACE,
};

struct sl_log {
    enum sl_log_level level;
    int json;  /* 1: one JSON object a line */
    FILE *out; /* NULL means stderr */
};

/* Parses "error|warn|info|debug|trace"; returns 0 or SL_EPARSE. */
int sl_log_level_parse(const char *s, enum sl_log_level *out);
const char *sl_log_level_name(enum sl_log_level level);

/* Copies s into out (cap bytes, NUL included) with \n, \r, \t written
 * as those two-character escapes and other control bytes (and DEL) as
 * \xNN; text lines of the log go through it. Stops before an escape that
 * would not fit. Returns the length written. */
size_t sl_log_escape(const char *s, char *out, size_t cap);

void sl_log_write(const struct sl_log *log, enum sl_log_level level,
                  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One field of a structured event: a string (NULL: the field is left
 * out) or a number. With --log-format json a field is a member of the
 * line's object beside time, level and msg; a text line is the message
 * alone, which says the same in words. Keys are plain words chosen in
 * the code ([a-z0-9_], others are dropped); the names in use, so a log
 * reader can rely on them:
 *   route     a stream route's name, or "hub"/"node" for their listeners
 *   identity  an allocation's identity (the subdomain)
 *   client    the peer's address, ip:port
 *   target    where the connection goes: an upstream URL or host:port
 *   conn      the connection's number in its listener
 *   bytes     bytes moved (both ways), or bytes_down / bytes_up apart
 *   reason    why a connection was refused or closed, one short word or
 *             phrase ("acl", "connection limit", "idle timeout")
 *   event     what happened: accepted, refused, closed, connected, ... */
struct sl_log_field {
    const char *key;
    const char *str; /* NULL: a number, or nothing when !is_num */
    uint64_t num;
    int is_num;
};

#define SL_LOG_STR(k, v) ((struct sl_log_field){.key = (k), .str = (v)})
#define SL_LOG_NUM(k, v)                                                       \
    ((struct sl_log_field){.key = (k), .num = (uint64_t)(v), .is_num = 1})

/* Expands to the two arguments (array, count) of sl_log_event for the
 * fields listed: sl_log_event(log, SL_LOG_INFO, SL_LOG_FIELDS(
 * SL_LOG_STR("route", name), SL_LOG_NUM("bytes", n)), "closed"). */
#define SL_LOG_FIELDS(...)                                                     \
    (const struct sl_log_field[]){__VA_ARGS__},                                \
        sizeof((const struct sl_log_field[]){__VA_ARGS__}) /                   \
            sizeof(struct sl_log_field)

/* A line with fields (at most SL_LOG_FIELDS_MAX are written). The message
 * is still a sentence a person reads alone; the fields repeat what a
 * machine looks up. */
#define SL_LOG_FIELDS_MAX 16
void sl_log_event(const struct sl_log *log, enum sl_log_level level,
                  const struct sl_log_field *fields, size_t nfields,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define sl_log_on(log, lvl) ((log) != NULL && (lvl) <= (log)->level)
#define sl_error(log, ...) sl_log_write((log), SL_LOG_ERROR, __VA_ARGS__)
#define sl_warn(log, ...) sl_log_write((log), SL_LOG_WARN, __VA_ARGS__)
#define sl_info(log, ...) sl_log_write((log), SL_LOG_INFO, __VA_ARGS__)
#define sl_debug(log, ...)                                                     \
    do {                                                                       \
        if (sl_log_on((log), SL_LOG_DEBUG))                                    \
            sl_log_write((log), SL_LOG_DEBUG, __VA_ARGS__);                    \
    } while (0)
#define sl_trace(log, ...)                                                     \
    do {                                                                       \
        if (sl_log_on((log), SL_LOG_TRACE))                                    \
            sl_log_write((log), SL_LOG_TRACE, __VA_ARGS__);                    \
    } while (0)

#endif
