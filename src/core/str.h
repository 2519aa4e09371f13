/* Small pure helpers on counted strings, shared by the header parsers. */
#ifndef SL_CORE_STR_H
#define SL_CORE_STR_H

#include <stddef.h>

/* Optional white space of HTTP (RFC 9110 5.6.3): space or tab. */
static inline int sl_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Moves *s past leading and *len before trailing spaces and tabs.
 * *s may be anything when *len is 0. */
static inline void sl_trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && sl_is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && sl_is_ows((*s)[*len - 1]))
        (*len)--;
}

/* Percent-decodes s[0..n) (a query value; '+' is a space) into buf and
 * NUL-terminates it. strict: a malformed escape or %00 is SL_EPARSE (for
 * credentials, where a guess at the meaning is wrong); otherwise such a
 * '%' is kept as it is. Returns 0, SL_EPARSE or SL_ETOOBIG when the result
 * and its NUL do not fit in cap. */
int sl_pct_decode(const char *s, size_t n, char *buf, size_t cap, int strict);

/* The value of one hexadecimal digit (either case), or -1. */
int sl_hex_value(char ch);

#endif
