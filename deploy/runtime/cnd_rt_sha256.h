/*
 * cnd_rt_sha256.h: a small portable SHA-256 (FIPS 180-4) for the edge runtime.
 *
 * Why hand-written: everywhere else Condenser hashes through OpenSSL (common/digest.h), but the
 * runtime must build for a bare-metal Cortex-M with nothing beyond the C library, so it can
 * depend neither on OpenSSL nor on common/. This is the plain specification algorithm, byte
 * oriented, no tables beyond the 64 round constants, no heap; it is tested against the FIPS
 * 180-2 example vectors and against OpenSSL on random inputs (tests/runtime/test_runtime_sha256.c).
 * It hashes public data (artifact digests), so it makes no constant-time claims.
 */
#ifndef CND_RT_SHA256_H
#define CND_RT_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];   /* chaining state */
    uint64_t bytes;  /* message bytes absorbed so far */
    uint8_t buf[64]; /* pending partial block */
    uint32_t fill;   /* bytes in buf */
} cnd_rt_sha256_t;

void cnd_rt_sha256_init(cnd_rt_sha256_t *s);
void cnd_rt_sha256_update(cnd_rt_sha256_t *s, const void *data, size_t len);
void cnd_rt_sha256_final(cnd_rt_sha256_t *s, uint8_t out[32]);
/* One-shot digest of data[0..len). */
void cnd_rt_sha256(uint8_t out[32], const void *data, size_t len);

#endif
