#include "core/size.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int sl_size_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        double mul;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"k", 1024.0},
        {"K", 1024.0},
        {"kB", 1024.0},
        {"KB", 1024.0},
        {"M", 1024000.0},
        {"MB", 1024000.0},
        {"G", 1024000000.0},
        {"GB", 1024000000.0},
        {"T", 1024000000000.0},
        {"TB", 1024000000000.0},
        {"KiB", 1024.0},
        {"MiB", 1048576.0},
        {"GiB", 1073741824.0},
        {"TiB", 1099511627776.0},
    };
    if (s == NULL || out == NULL)
        return SL_EPARSE;
    /* strtod would take "inf", "nan", hex and leading spaces: a size is
     * digits with at most one point. */
    const char *p = s;
    size_t digits = 0, points = 0;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.')
            points++;
        else
            digits++;
    }
    if (digits == 0 || points > 1)
        return SL_EPARSE;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != p || errno != 0 || v < 0)
        return SL_EPARSE;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            double b = v * units[i].mul;
            if (!(b < 9.2e18))
                return SL_EPARSE;
            *out = (uint64_t)(b + 0.5);
            return 0;
        }
    }
    return SL_EPARSE;
}

int sl_duration_parse_s(const char *s, uint64_t *out)
{
    static const struct {
        char unit;
        uint64_t mul;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400},
                 {'w', 604800}};
    if (s == NULL || out == NULL || *s < '0' || *s > '9')
        return SL_EPARSE;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return SL_EPARSE;
    uint64_t mul = 0;
    if (*end == '\0') {
        mul = 1;
    } else if (end[1] == '\0') {
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (*end == units[i].unit)
                mul = units[i].mul;
    }
    /* Up to about a hundred years: more is a typo, not a wish. */
    if (mul == 0 || v > 3200000000ull / mul)
        return SL_EPARSE;
    *out = (uint64_t)v * mul;
    return 0;
}
