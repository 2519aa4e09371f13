#include "core/fmt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

#include "core/error.h"

static int put(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int put(char *out, size_t cap, const char *fmt, ...)
{
    if (out == NULL)
        return UV_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return SL_ETOOBIG;
    return 0;
}

static int bytes_with(uint64_t n, const char *suffix, char *out, size_t cap)
{
    static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
    if (n < 1000)
        return put(out, cap, "%u B%s", (unsigned)n, suffix);
    uint64_t unit = 1000;
    size_t u = 0;
    for (;;) {
        /* Integer rounding, half up, without forming n * 10 (which could
         * overflow near UINT64_MAX). */
        uint64_t tenth = unit / 10;
        uint64_t tenths = n / tenth + (n % tenth >= tenth / 2);
        if (tenths < 100)
            return put(out, cap, "%u.%u %s%s", (unsigned)(tenths / 10),
                       (unsigned)(tenths % 10), units[u], suffix);
        uint64_t whole = n / unit + (n % unit >= unit / 2);
        if (whole < 1000 || u + 1 == sizeof(units) / sizeof(units[0]))
            return put(out, cap, "%u %s%s", (unsigned)whole, units[u],
                       suffix);
        unit *= 1000;
        u++;
    }
}

int sl_fmt_bytes(uint64_t n, char *out, size_t cap)
{
    return bytes_with(n, "", out, cap);
}

int sl_fmt_rate(double bytes_per_s, char *out, size_t cap)
{
    uint64_t n = 0;
    if (isnan(bytes_per_s) || bytes_per_s <= 0)
        n = 0;
    else if (bytes_per_s >= 18446744073709551615.0)
        n = UINT64_MAX;
    else
        n = (uint64_t)(bytes_per_s + 0.5);
    return bytes_with(n, "/s", out, cap);
}

int sl_fmt_ago(int64_t seconds, char *out, size_t cap)
{
    if (seconds < 0)
        return put(out, cap, "never");
    if (seconds < 5)
        return put(out, cap, "just now");
    if (seconds < 60)
        return put(out, cap, "%llds ago", (long long)seconds);
    if (seconds < 3600)
        return put(out, cap, "%lldm ago", (long long)(seconds / 60));
    if (seconds < 86400)
        return put(out, cap, "%lldh ago", (long long)(seconds / 3600));
    return put(out, cap, "%lldd ago", (long long)(seconds / 86400));
}

int sl_fmt_traffic(uint64_t down, uint64_t up, char *out, size_t cap)
{
    char d[SL_FMT_MAX];
    char u[SL_FMT_MAX];
    sl_fmt_bytes(down, d, sizeof(d));
    sl_fmt_bytes(up, u, sizeof(u));
    return put(out, cap, "(\xe2\x86\x93 %s) (\xe2\x86\x91 %s)", d, u);
}
