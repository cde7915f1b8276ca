/*
 * prg.h: mask expansion for secure aggregation: a 32-byte seed becomes a keystream, read as
 * little-endian 16- or 32-bit ring elements that are added to (or subtracted from) a vector.
 *
 * The stream is a stream cipher's keystream with the full 32-byte seed as key, a zero nonce and
 * the block counter starting at 0. Every seed is used for exactly one stream (seeds are fresh
 * random self-mask seeds or KDF outputs bound to round and pair), so a fixed nonce is safe.
 *
 * Candidates (all through libraries, none hand-written), measured by `condenser bench secagg`
 * (docs/benchmarks.md, "Secure aggregation"):
 *   CND_PRG_AES256_CTR       OpenSSL EVP AES-256-CTR, 128-bit big-endian counter block = block
 *                            index (AES-NI/VAES). The protocol's choice: fastest here.
 *   CND_PRG_CHACHA20_OPENSSL OpenSSL EVP ChaCha20 (RFC 8439 block function, 32-bit counter,
 *                            96-bit zero nonce).
 *   CND_PRG_CHACHA20_SODIUM  libsodium crypto_stream_chacha20_ietf_xor_ic: the same stream as
 *                            the previous one, a second implementation to cross-check.
 * All parties of a round must use the same algorithm; the protocol fixes CND_PRG_MASK.
 *
 * Element i of a vector takes keystream bytes [i*w/8, (i+1)*w/8) for word width w, so any range
 * [lo, hi) of a vector can be produced on its own (threads split the vector, not the seeds).
 *
 * Usage: one cnd_prg_t per thread (it holds a cipher context and a keystream buffer):
 *     cnd_prg_t *g = cnd_prg_new(CND_PRG_MASK);
 *     cnd_prg_mask_add(g, acc, 0, n, seed, 16, 0);   // acc[i] += word_i  (mod 2^32)
 *     cnd_prg_destroy(&g);
 */
#ifndef CND_PRG_H
#define CND_PRG_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CND_PRG_AES256_CTR = 0,
    CND_PRG_CHACHA20_OPENSSL = 1,
    CND_PRG_CHACHA20_SODIUM = 2,
} cnd_prg_alg_t;

#define CND_PRG_MASK       CND_PRG_AES256_CTR /* the protocol's mask generator */
#define CND_PRG_SEED_BYTES 32
#define CND_PRG_ALIGN      64 /* keystream offsets must be multiples of this many bytes */

typedef struct cnd_prg cnd_prg_t;

/* Returns a new generator or NULL (out of memory, or OpenSSL lacks the cipher; detail set). */
cnd_prg_t *cnd_prg_new(cnd_prg_alg_t alg);
void cnd_prg_destroy(cnd_prg_t **g);
const char *cnd_prg_name(cnd_prg_alg_t alg);

/* Writes keystream bytes [offset, offset + len) for seed. offset must be a multiple of
 * CND_PRG_ALIGN. Returns 0, CND_EINVAL (misaligned or beyond the stream's end) or CND_ECRYPTO. */
CND_MUST_USE int cnd_prg_keystream(cnd_prg_t *g, uint8_t *out, size_t len, uint64_t offset,
                                   const uint8_t seed[CND_PRG_SEED_BYTES]);

/* For i in [lo, hi): acc[i] += word_i (negate = 0) or acc[i] -= word_i (negate = 1), modulo
 * 2^32, where word_i is the i-th little-endian word of word_bits (16 or 32) bits of seed's
 * stream. With 16-bit words the result is meaningful modulo 2^16 (reduce at the end). lo must be
 * a multiple of 32 (so the keystream offset is aligned). Returns 0, CND_EINVAL or CND_ECRYPTO. */
CND_MUST_USE int cnd_prg_mask_add(cnd_prg_t *g, uint32_t *acc, size_t lo, size_t hi,
                                  const uint8_t seed[CND_PRG_SEED_BYTES], unsigned word_bits,
                                  int negate);

#endif
