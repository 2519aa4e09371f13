/* Human-readable numbers for the CLI, logs and status pages. Pure.
 * Every function writes a NUL-terminated string into out[cap] and returns
 * 0, or SL_ETOOBIG if it does not fit (out is then truncated but still
 * NUL-terminated when cap > 0), or UV_EINVAL if out is NULL. 32 bytes
 * always suffice for each, 64 for sl_fmt_traffic. */
#ifndef SL_CORE_FMT_H
#define SL_CORE_FMT_H

#include <stddef.h>
#include <stdint.h>

#define SL_FMT_MAX 32

/* SI units (1 kB = 1000 B): below 1000 "N B"; otherwise one decimal below
 * 10 of the unit and none above, rounded half up, moving to the next unit
 * instead of printing 1000: "0 B", "999 B", "1.0 kB", "1.2 kB", "12 kB",
 * "340 kB", "1.2 MB", "3.4 GB", ... up to "EB". */
int sl_fmt_bytes(uint64_t n, char *out, size_t cap);

/* sl_fmt_bytes plus "/s": "1.2 MB/s". Negative, NaN -> "0 B/s"; values
 * past UINT64_MAX are clamped. */
int sl_fmt_rate(double bytes_per_s, char *out, size_t cap);

/* Age of an event given in seconds: negative -> "never" (never
 * happened), 0..4 -> "just now", then "42s ago", "5m ago", "3h ago",
 * "2d ago" (each truncated toward zero). */
int sl_fmt_ago(int64_t seconds, char *out, size_t cap);

/* "(↓ 1.2 MB) (↑ 340 kB)" with UTF-8 arrows (3 bytes each). */
int sl_fmt_traffic(uint64_t down, uint64_t up, char *out, size_t cap);

#endif
