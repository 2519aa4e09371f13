/* Bandwidths written by people ("100Mbit", "10MB/s") as bytes per
 * second: the one parser of every flag that takes a rate (a grant's
 * --rate, proxy create --rate, the hub's --limit-rate). */
#ifndef SL_RATE_H
#define SL_RATE_H

#include <stddef.h>
#include <stdint.h>

/* Forms: a number of bytes per second ("1250000"); bits per second with
 * bit, kbit, Mbit, Gbit (decimal, as network links count: 100Mbit =
 * 12,500,000 bytes/s; "bps", "kbps", "Mbps", "Gbps" and "/s" after "bit"
 * too; the letter case of the unit is free); or a size of core/size.h
 * followed by "/s" ("10MB/s" = 10,240,000 bytes/s). A number may have a
 * fraction. 0 means no cap. Writes the nearest whole number of bytes per
 * second. Returns 0 or SL_EPARSE. */
int sl_rate_parse(const char *s, uint64_t *out);

/* "100 Mbit/s", "12.5 kbit/s", "unlimited" (0) into out. */
void sl_rate_format(uint64_t bytes_per_s, char *out, size_t cap);

#define SL_RATE_UNITS_HELP                                                     \
    "bytes/s, or 100Mbit (bits, decimal), or 10MB/s"

#endif
