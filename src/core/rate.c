#include "core/rate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/size.h"

int sl_rate_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        double bits;
    } bit_units[] = {
        {"bit", 1},          {"bps", 1},          {"bit/s", 1},
        {"kbit", 1e3},       {"kbps", 1e3},       {"kbit/s", 1e3},
        {"mbit", 1e6},       {"mbps", 1e6},       {"mbit/s", 1e6},
        {"gbit", 1e9},       {"gbps", 1e9},       {"gbit/s", 1e9},
    };
    if (s == NULL || out == NULL)
        return SL_EPARSE;
    size_t n = strlen(s);
    int bits_per_s = n >= 5 && strcasecmp(s + n - 5, "bit/s") == 0;
    if (n > 2 && strcmp(s + n - 2, "/s") == 0 && !bits_per_s) {
        /* A size per second: core/size.h reads the size. */
        char size[64];
        if (n - 2 >= sizeof(size))
            return SL_EPARSE;
        memcpy(size, s, n - 2);
        size[n - 2] = '\0';
        return sl_size_parse(size, out);
    }
    /* Digits with at most one point, as core/size.c takes them: strtod
     * alone would take "inf", hex and leading spaces. */
    const char *p = s;
    size_t ndigits = 0, points = 0;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.')
            points++;
        else
            ndigits++;
    }
    if (ndigits == 0 || points > 1)
        return SL_EPARSE;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != p || errno != 0 || v < 0)
        return SL_EPARSE;
    while (*end == ' ')
        end++;
    double bytes;
    if (*end == '\0') {
        bytes = v;
    } else {
        size_t k = 0;
        for (; k < sizeof(bit_units) / sizeof(bit_units[0]); k++)
            if (strcasecmp(end, bit_units[k].unit) == 0)
                break;
        if (k == sizeof(bit_units) / sizeof(bit_units[0]))
            return SL_EPARSE;
        bytes = v * bit_units[k].bits / 8.0;
    }
    if (!(bytes < 9.2e18))
        return SL_EPARSE;
    *out = (uint64_t)(bytes + 0.5);
    return 0;
}

void sl_rate_format(uint64_t bytes_per_s, char *out, size_t cap)
{
    static const struct {
        double div;
        const char *unit;
    } steps[] = {{1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"},
                 {1, "bit/s"}};
    if (bytes_per_s == 0) {
        snprintf(out, cap, "unlimited");
        return;
    }
    double bits = (double)bytes_per_s * 8.0;
    size_t i = 0;
    while (i + 1 < sizeof(steps) / sizeof(steps[0]) && bits < steps[i].div)
        i++;
    double v = bits / steps[i].div;
    /* Whole numbers stay whole: 100 Mbit/s, not 100.00. */
    if (v == (double)(uint64_t)v)
        snprintf(out, cap, "%llu %s", (unsigned long long)v, steps[i].unit);
    else
        snprintf(out, cap, "%.3g %s", v, steps[i].unit);
}
