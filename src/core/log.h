/* Logging. One struct sl_log lives in the process context and is passed to
 * whoever logs; there is no global logger. Lines go to one FILE (stderr by
 * default), as text or as one JSON object a line. Never log secrets. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>
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
