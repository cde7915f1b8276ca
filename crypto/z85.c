/*
 * z85.c: see z85.h. Each 4-byte big-endian group becomes 5 base-85 digits, most significant
 * first, from the alphabet of RFC 32.
 */
#include "z85.h"

#include <string.h>

static const char s_alphabet[86] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int cnd_z85_encode(char *out, const uint8_t *data, size_t len)
{
    if (len % 4) return cnd_errf(CND_EINVAL, "z85: %zu bytes is not a multiple of 4", len);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = (uint32_t)data[i] << 24 | (uint32_t)data[i + 1] << 16 |
                     (uint32_t)data[i + 2] << 8 | data[i + 3];
        for (int k = 4; k >= 0; k--) {
            out[o + (size_t)k] = s_alphabet[v % 85];
            v /= 85;
        }
        o += 5;
    }
    out[o] = 0;
    return 0;
}

int cnd_z85_decode(uint8_t *out, size_t out_len, const char *text)
{
    size_t n = strlen(text);
    if (n % 5 || n / 5 * 4 != out_len)
        return cnd_errf(CND_EINVAL, "z85: %zu characters do not encode %zu bytes", n, out_len);
    for (size_t i = 0, o = 0; i < n; i += 5, o += 4) {
        uint64_t v = 0;
        for (size_t k = 0; k < 5; k++) {
            const char *p = text[i + k] ? memchr(s_alphabet, text[i + k], 85) : NULL;
            if (!p)
                return cnd_errf(CND_EINVAL, "z85: character %zu ('%c') is not in the alphabet",
                                i + k, text[i + k]);
            v = v * 85 + (uint64_t)(p - s_alphabet);
        }
        if (v > 0xffffffffu)
            return cnd_errf(CND_EINVAL, "z85: group at character %zu overflows 32 bits", i);
        out[o] = (uint8_t)(v >> 24);
        out[o + 1] = (uint8_t)(v >> 16);
        out[o + 2] = (uint8_t)(v >> 8);
        out[o + 3] = (uint8_t)v;
    }
    return 0;
}
