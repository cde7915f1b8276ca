/*
 * hkdf.c: see hkdf.h. PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) | info | i); the PRK and
 * every intermediate block are wiped.
 */
#include "hkdf.h"

#include <sodium.h>
#include <string.h>

int cnd_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                    const uint8_t *ikm, size_t ikm_len, const uint8_t *info, size_t info_len)
{
    if (out_len == 0 || out_len > CND_HKDF_MAX_OUT)
        return cnd_errf(CND_EINVAL, "hkdf: output length %zu outside [1, %d]", out_len,
                        CND_HKDF_MAX_OUT);
    static const uint8_t zeros[32];
    if (!salt || salt_len == 0) {
        salt = zeros;
        salt_len = sizeof zeros;
    }
    uint8_t prk[32], t[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, salt, salt_len);
    crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    size_t done = 0;
    for (unsigned i = 1; done < out_len; i++) {
        uint8_t ctr = (uint8_t)i;
        crypto_auth_hmacsha256_init(&st, prk, sizeof prk);
        if (i > 1) crypto_auth_hmacsha256_update(&st, t, sizeof t);
        crypto_auth_hmacsha256_update(&st, info, info_len);
        crypto_auth_hmacsha256_update(&st, &ctr, 1);
        crypto_auth_hmacsha256_final(&st, t);
        size_t n = out_len - done < sizeof t ? out_len - done : sizeof t;
        memcpy(out + done, t, n);
        done += n;
    }
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(t, sizeof t);
    sodium_memzero(&st, sizeof st);
    return 0;
}
