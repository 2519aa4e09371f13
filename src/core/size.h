/* Sizes written by people ("10MB", "1.5GiB") as bytes: the one parser of
 * every CLI flag and config value that takes a size, so a unit means the
 * same everywhere. */
#ifndef SL_SIZE_H
#define SL_SIZE_H

#include <stdint.h>

/* Units, as DESIGN section 6 counts its free plan (10 MB = 10,240,000
 * bytes): kB (or K, KB, k) = 1,024 bytes, MB (or M) = 1,000 kB =
 * 1,024,000 bytes, GB (G) = 1,000 MB, TB (T) = 1,000 GB; KiB, MiB, GiB,
 * TiB are powers of 1024; B or none: bytes. A number may have a fraction
 * ("1.5GB") and a space before the unit. Writes the nearest whole number
 * of bytes. Returns 0, or SL_EPARSE (not a size, negative, unknown unit,
 * 2^63 or more). */
int sl_size_parse(const char *s, uint64_t *out);

/* The units above in one line, for --help texts. */
#define SL_SIZE_UNITS_HELP                                                     \
    "kB = 1,024 bytes, MB = 1,024,000 (10MB = 10,240,000),\n"                 \
    "                     GB = 1,024,000,000; KiB, MiB, GiB are powers of "    \
    "1024"

/* "30", "30s", "15m", "12h", "7d", "2w" -> seconds. Returns 0 or
 * SL_EPARSE (not that form, or over about a hundred years). */
int sl_duration_parse_s(const char *s, uint64_t *out);

#endif
