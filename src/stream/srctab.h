/* Per-source counters for admission caps, in a table whose hash an
 * attacker cannot aim at: SipHash-2-4 under a random key per table.
 *
 * A source is an address prefix: the whole address for IPv4 and /64 for
 * IPv6 (one IPv6 host usually owns a /64), or wider prefixes when asked
 * (UDP sessions count per /24 and /64). Entries exist only while their
 * count is above zero, so the table never holds more entries than the
 * streams it counts. Pure memory: no I/O, loop thread only. */
#ifndef SL_STREAM_SRCTAB_H
#define SL_STREAM_SRCTAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* SipHash-2-4 of data under the 16-byte key. */
uint64_t sl_siphash24(const uint8_t key[16], const void *data, size_t len);

/* Fills key with 16 random bytes from OpenSSL's CSPRNG; returns 0, or -1
 * when the CSPRNG fails (then key holds a weaker, time-based key). */
int sl_srctab_random_key(uint8_t key[16]);

struct sl_srctab_entry;

struct sl_srctab {
    uint8_t key[16];
    unsigned v4_bits, v6_bits;       /* prefix lengths that name a source */
    struct sl_srctab_entry **buckets; /* nbuckets, a power of two */
    size_t nbuckets;
    size_t nentries;
};

/* Sets up an empty table (buckets sized for about `expect` sources).
 * Returns 0 or UV_ENOMEM. */
int sl_srctab_init(struct sl_srctab *t, unsigned v4_bits, unsigned v6_bits,
                   size_t expect);
void sl_srctab_free(struct sl_srctab *t); /* frees the entries too */

/* The current count of sa's source (0 for unknown ones and for families
 * other than IPv4/IPv6). */
unsigned sl_srctab_count(const struct sl_srctab *t, const struct sockaddr *sa);

/* Adds one to sa's source if it is below max (max 0: no cap). Returns 0,
 * SL_ELIMIT when the source is at max, or UV_ENOMEM. Addresses of other
 * families are not counted and always pass. */
int sl_srctab_take(struct sl_srctab *t, const struct sockaddr *sa,
                   unsigned max);
/* Gives back what sl_srctab_take took for sa. */
void sl_srctab_release(struct sl_srctab *t, const struct sockaddr *sa);

#endif
