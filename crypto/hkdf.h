/*
 * hkdf.h: HKDF-SHA256 (RFC 5869), the key derivation behind secure aggregation's pairwise mask
 * seeds and share-encryption keys.
 *
 * Debian 12's libsodium (1.0.18) predates crypto_kdf_hkdf_sha256, so the two HKDF steps are
 * written here on top of libsodium's HMAC-SHA256 (crypto_auth_hmacsha256_*); nothing about the
 * hash itself is hand-written. Checked against RFC 5869's test cases in
 * tests/crypto/test_crypto_prim.c.
 */
#ifndef CND_HKDF_H
#define CND_HKDF_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_HKDF_MAX_OUT (255 * 32)

/* Extract-then-expand: writes out_len (1..8160) bytes to out. salt may be NULL with salt_len 0
 * (RFC 5869 then uses 32 zero bytes). Returns 0 or CND_EINVAL. */
CND_MUST_USE int cnd_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len,
                                 const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                                 size_t info_len);

#endif
