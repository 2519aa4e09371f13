#include "core/str.h"

#include "core/error.h"

int sl_hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int sl_pct_decode(const char *s, size_t n, char *buf, size_t cap, int strict)
{
    if (cap == 0)
        return SL_ETOOBIG;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int hi = i + 2 < n ? sl_hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? sl_hex_value(s[i + 2]) : -1;
            if (lo >= 0 && (hi | lo) != 0) {
                ch = (char)(hi * 16 + lo);
                i += 2;
            } else if (strict) {
                return SL_EPARSE;
            }
        }
        if (o + 1 >= cap)
            return SL_ETOOBIG;
        buf[o++] = ch;
    }
    buf[o] = '\0';
    return 0;
}
