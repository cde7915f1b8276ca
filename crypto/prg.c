/*
 * prg.c: see prg.h. Keystream is produced in blocks of S_CHUNK bytes into the generator's own
 * buffer and immediately folded into the accumulator, so a pass over a vector touches the
 * keystream only in L1/L2 cache. The cipher context is re-keyed per call without re-fetching the
 * algorithm.
 */
#include "prg.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_CHUNK 16384 /* keystream bytes produced per step; a multiple of 64 */

struct cnd_prg {
    cnd_prg_alg_t alg;      /* which stream */
    EVP_CIPHER *cipher;     /* fetched OpenSSL cipher (NULL for libsodium) */
    EVP_CIPHER_CTX *ctx;    /* reused context */
    uint8_t zeros[S_CHUNK]; /* input to the OpenSSL "encryption" that yields the keystream */
    uint8_t ks[S_CHUNK];    /* keystream buffer */
};

const char *cnd_prg_name(cnd_prg_alg_t alg)
{
    switch (alg) {
    case CND_PRG_AES256_CTR: return "AES-256-CTR (OpenSSL)";
    case CND_PRG_CHACHA20_OPENSSL: return "ChaCha20 (OpenSSL)";
    case CND_PRG_CHACHA20_SODIUM: return "ChaCha20 (libsodium)";
    }
    return "?";
}

cnd_prg_t *cnd_prg_new(cnd_prg_alg_t alg)
{
    if (sodium_init() < 0) {
        cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
        return NULL;
    }
    cnd_prg_t *g = calloc(1, sizeof *g);
    if (!g) {
        cnd_errf(CND_ENOMEM, "out of memory for a mask generator");
        return NULL;
    }
    g->alg = alg;
    if (alg == CND_PRG_CHACHA20_SODIUM) return g;
    const char *name = alg == CND_PRG_AES256_CTR ? "AES-256-CTR" : "ChaCha20";
    g->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    g->ctx = EVP_CIPHER_CTX_new();
    if (!g->cipher || !g->ctx || !EVP_EncryptInit_ex(g->ctx, g->cipher, NULL, NULL, NULL)) {
        cnd_errf(CND_ECRYPTO, "OpenSSL cannot provide %s", name);
        cnd_prg_destroy(&g);
        return NULL;
    }
    return g;
}

void cnd_prg_destroy(cnd_prg_t **g)
{
    if (!g || !*g) return;
    EVP_CIPHER_CTX_free((*g)->ctx);
    EVP_CIPHER_free((*g)->cipher);
    sodium_memzero((*g)->ks, sizeof(*g)->ks);
    free(*g);
    *g = NULL;
}

/* Keystream for seed from byte `offset` (aligned), len <= S_CHUNK is produced by s_next calls
 * after s_start. */
static int s_start(cnd_prg_t *g, uint64_t offset, const uint8_t seed[32])
{
    if (offset % CND_PRG_ALIGN)
        return cnd_errf(CND_EINVAL, "prg: keystream offset %llu is not a multiple of %d",
                        (unsigned long long)offset, CND_PRG_ALIGN);
    uint8_t iv[16] = {0};
    if (g->alg == CND_PRG_AES256_CTR) {
        uint64_t block = offset / 16;
        for (int i = 0; i < 8; i++) iv[15 - i] = (uint8_t)(block >> (8 * i));
    } else {
        uint64_t block = offset / 64;
        if (block > UINT32_MAX) return cnd_errf(CND_EINVAL, "prg: offset beyond the stream");
        iv[0] = (uint8_t)block; /* OpenSSL's ChaCha20 IV: 32-bit LE counter | 96-bit nonce */
        iv[1] = (uint8_t)(block >> 8);
        iv[2] = (uint8_t)(block >> 16);
        iv[3] = (uint8_t)(block >> 24);
    }
    if (g->alg == CND_PRG_CHACHA20_SODIUM) return 0;
    if (!EVP_EncryptInit_ex(g->ctx, NULL, NULL, seed, iv))
        return cnd_errf(CND_ECRYPTO, "prg: OpenSSL cipher init failed");
    return 0;
}

static int s_next(cnd_prg_t *g, uint8_t *out, size_t len, uint64_t offset, const uint8_t seed[32])
{
    if (g->alg == CND_PRG_CHACHA20_SODIUM) {
        static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
        uint64_t block = offset / 64;
        if (block + (len + 63) / 64 > (uint64_t)UINT32_MAX + 1)
            return cnd_errf(CND_EINVAL, "prg: offset beyond the stream");
        memset(out, 0, len);
        crypto_stream_chacha20_ietf_xor_ic(out, out, len, nonce, (uint32_t)block, seed);
        return 0;
    }
    int outl = 0;
    if (!EVP_EncryptUpdate(g->ctx, out, &outl, g->zeros, (int)len) || (size_t)outl != len)
        return cnd_errf(CND_ECRYPTO, "prg: OpenSSL keystream failed");
    return 0;
}

int cnd_prg_keystream(cnd_prg_t *g, uint8_t *out, size_t len, uint64_t offset,
                      const uint8_t seed[CND_PRG_SEED_BYTES])
{
    int rc = s_start(g, offset, seed);
    for (size_t done = 0; !rc && done < len;) {
        size_t n = len - done < S_CHUNK ? len - done : S_CHUNK;
        rc = s_next(g, out + done, n, offset + done, seed);
        done += n;
    }
    return rc;
}

static inline uint16_t s_le16(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#else
    return (uint16_t)(p[0] | p[1] << 8);
#endif
}

static inline uint32_t s_le32(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}

int cnd_prg_mask_add(cnd_prg_t *g, uint32_t *acc, size_t lo, size_t hi,
                     const uint8_t seed[CND_PRG_SEED_BYTES], unsigned word_bits, int negate)
{
    if (word_bits != 16 && word_bits != 32)
        return cnd_errf(CND_EINVAL, "prg: word width %u is not 16 or 32", word_bits);
    if (lo % 32 || hi < lo)
        return cnd_errf(CND_EINVAL, "prg: range [%zu, %zu) must start at a multiple of 32", lo, hi);
    size_t wb = word_bits / 8;
    uint64_t offset = (uint64_t)lo * wb;
    int rc = s_start(g, offset, seed);
    size_t per = S_CHUNK / wb;
    for (size_t i = lo; !rc && i < hi; i += per) {
        size_t n = hi - i < per ? hi - i : per;
        size_t bytes = (n * wb + 63) / 64 * 64; /* whole blocks keep later offsets aligned */
        if ((rc = s_next(g, g->ks, bytes, offset, seed))) break;
        offset += bytes;
        uint32_t *a = acc + i;
        const uint8_t *k = g->ks;
        if (word_bits == 16) {
            if (negate)
                for (size_t j = 0; j < n; j++) a[j] -= s_le16(k + 2 * j);
            else
                for (size_t j = 0; j < n; j++) a[j] += s_le16(k + 2 * j);
        } else {
            if (negate)
                for (size_t j = 0; j < n; j++) a[j] -= s_le32(k + 4 * j);
            else
                for (size_t j = 0; j < n; j++) a[j] += s_le32(k + 4 * j);
        }
    }
    return rc;
}
