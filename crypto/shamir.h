/*
 * shamir.h: Shamir t-of-k secret sharing over GF(2^8), byte by byte, for the 32-byte secrets of
 * secure aggregation (self-mask seeds and mask private keys).
 *
 * Neither libsodium nor OpenSSL offers secret sharing, and the scheme is small, so it is written
 * here. Field: GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11b). Each byte of the
 * secret is the constant term of its own random polynomial of degree t-1; share j is that
 * polynomial evaluated at the public point xs[j] (1..255, distinct). Any t shares give the secret
 * by Lagrange interpolation at 0; fewer give no information about it.
 *
 * Side channels: evaluation points and Lagrange coefficients are public, secret bytes are only
 * ever multiplied by public constants, and that multiplication is done eight bytes at a time in
 * 64-bit words with shifts and masks (no table indexed by a secret, no secret-dependent branch).
 *
 * Interpolating fewer than t shares does not fail here, it silently gives a wrong value: callers
 * count shares and check the result (secure aggregation checks a commitment or a public key).
 */
#ifndef CND_SHAMIR_H
#define CND_SHAMIR_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_SHAMIR_MAX_SECRET 64  /* bytes */
#define CND_SHAMIR_MAX_SHARES 255 /* distinct nonzero points of GF(2^8) */

/* Splits secret[0..len) into k shares (shares is k*len bytes, share j at shares + j*len) for the
 * points xs[0..k), with threshold t (1 <= t <= k). Coefficients come from libsodium's CSPRNG and
 * are wiped. Returns 0 or CND_EINVAL (bad t, k, len, or a zero/duplicate point). */
CND_MUST_USE int cnd_shamir_split(uint8_t *shares, const uint8_t *secret, size_t len, unsigned t,
                                  const uint8_t *xs, unsigned k);

/* Deterministic split with caller-supplied coefficients (coeffs is (t-1)*len bytes; coefficient
 * of x^i for byte b at coeffs[(i-1)*len + b]): known-answer tests only. */
CND_MUST_USE int cnd_shamir_split_with(uint8_t *shares, const uint8_t *secret, size_t len,
                                       unsigned t, const uint8_t *xs, unsigned k,
                                       const uint8_t *coeffs);

/* Interpolates at 0 from the m shares (m*len bytes) at points xs[0..m). Uses all m shares, so
 * pass exactly t of them. Returns 0 or CND_EINVAL (m == 0, len too large, zero/duplicate point). */
CND_MUST_USE int cnd_shamir_combine(uint8_t *secret, size_t len, const uint8_t *shares,
                                    const uint8_t *xs, unsigned m);

/* GF(2^8) multiplication, exposed for tests. */
uint8_t cnd_gf256_mul(uint8_t a, uint8_t b);

#endif
