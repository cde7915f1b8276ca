/*
 * test_crypto_prim.c: known answers and properties of the secure-aggregation primitives:
 * HKDF-SHA256 (RFC 5869), mask expansion (AES-256-CTR and ChaCha20 keystreams and their reading
 * as ring elements; expected values from Python's `cryptography` package, an independent
 * implementation), the pair-key derivation (X25519 + HKDF, also from Python), and Shamir sharing
 * over GF(2^8) (FIPS-197 products, shares from an independent log-table implementation in Python,
 * reconstruction from every t-subset, failure below t).
 */
#include "check.h"
#include "digest.h"
#include "hkdf.h"
#include "prg.h"
#include "secagg_internal.h"
#include "shamir.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static void s_unhex(uint8_t *out, size_t n, const char *hex)
{
    CHECK(cnd_unhex(out, n, hex) == 0);
}

static void test_hkdf(void)
{
    /* RFC 5869 A.1 */
    uint8_t ikm[80], salt[80], info[80], okm[82], want[82];
    memset(ikm, 0x0b, 22);
    s_unhex(salt, 13, "000102030405060708090a0b0c");
    s_unhex(info, 10, "f0f1f2f3f4f5f6f7f8f9");
    CHECK(cnd_hkdf_sha256(okm, 42, salt, 13, ikm, 22, info, 10) == 0);
    s_unhex(want, 42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    CHECK(memcmp(okm, want, 42) == 0);
    /* A.2: long inputs, 82 bytes out (three HMAC blocks) */
    for (int i = 0; i < 80; i++) {
        ikm[i] = (uint8_t)i;
        salt[i] = (uint8_t)(0x60 + i);
        info[i] = (uint8_t)(0xb0 + i);
    }
    CHECK(cnd_hkdf_sha256(okm, 82, salt, 80, ikm, 80, info, 80) == 0);
    s_unhex(want, 82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41"
            "c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
    CHECK(memcmp(okm, want, 82) == 0);
    /* A.3: empty salt and info */
    memset(ikm, 0x0b, 22);
    CHECK(cnd_hkdf_sha256(okm, 42, NULL, 0, ikm, 22, NULL, 0) == 0);
    s_unhex(want, 42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
    CHECK(memcmp(okm, want, 42) == 0);
    CHECK(cnd_hkdf_sha256(okm, 0, NULL, 0, ikm, 22, NULL, 0) == CND_EINVAL);
    CHECK(cnd_hkdf_sha256(okm, 255 * 32 + 1, NULL, 0, ikm, 22, NULL, 0) == CND_EINVAL);
}

static void test_prg_kat(void)
{
    uint8_t key[32], ks[64], want[64];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
    cnd_prg_t *aes = cnd_prg_new(CND_PRG_AES256_CTR);
    cnd_prg_t *cho = cnd_prg_new(CND_PRG_CHACHA20_OPENSSL);
    cnd_prg_t *chs = cnd_prg_new(CND_PRG_CHACHA20_SODIUM);
    CHECK(aes && cho && chs);
    CHECK(cnd_prg_keystream(aes, ks, 64, 0, key) == 0);
    s_unhex(want, 64,
            "f29000b62a499fd0a9f39a6add2e7780f05d76ae4ab99fe5a6f69b3148c2363d0ebcb5deb52c83bd08a8a9"
            "35182c9199d24356532881602f809eb383c5ff5d56");
    CHECK(memcmp(ks, want, 64) == 0);
    CHECK(cnd_prg_keystream(aes, ks, 32, 1 << 20, key) == 0);
    s_unhex(want, 32, "b22753304d69b57f49d10a62eb01c83260b5cd82988415c68ff08c28c035d55c");
    CHECK(memcmp(ks, want, 32) == 0);
    s_unhex(want, 64,
            "39fd2b7dd9c5196a8dbd0377b8dc4a498a35d86fbcde6accb2cc7d4cd8ea24922b23cce7a26023ab3f0eef"
            "693ac87f64258235eab1f7a32dc22762a0485b410c");
    CHECK(cnd_prg_keystream(cho, ks, 64, 0, key) == 0);
    CHECK(memcmp(ks, want, 64) == 0);
    CHECK(cnd_prg_keystream(chs, ks, 64, 0, key) == 0);
    CHECK(memcmp(ks, want, 64) == 0);
    s_unhex(want, 32, "20db95be5d49ebaf24d4b6ad0a89a6c1cf6fcfdf8c5affb548edffb59f601ebb");
    CHECK(cnd_prg_keystream(cho, ks, 32, 64000, key) == 0);
    CHECK(memcmp(ks, want, 32) == 0);
    CHECK(cnd_prg_keystream(chs, ks, 32, 64000, key) == 0);
    CHECK(memcmp(ks, want, 32) == 0);
    CHECK(cnd_prg_keystream(aes, ks, 32, 8, key) == CND_EINVAL);

    /* Mask expansion: elements 32..39 of the 16- and 32-bit readings of the AES stream. */
    static const uint32_t w16[8] = {24398, 48358, 61994, 1720, 49971, 62833, 52929, 20073};
    static const uint32_t w32[8] = {122573271u,  2850840364u, 879130905u,  1572480131u,
                                    1800584492u, 2618391784u, 4196864720u, 2184914020u};
    uint32_t acc[40];
    memset(acc, 0, sizeof acc);
    CHECK(cnd_prg_mask_add(aes, acc, 32, 40, key, 16, 0) == 0);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(acc[32 + i], w16[i]);
    for (int i = 0; i < 32; i++) CHECK_EQ_INT(acc[i], 0);
    CHECK(cnd_prg_mask_add(aes, acc, 32, 40, key, 16, 1) == 0);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(acc[32 + i], 0);
    CHECK(cnd_prg_mask_add(aes, acc, 32, 40, key, 32, 1) == 0);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(acc[32 + i], (uint32_t)(0u - w32[i]));
    CHECK(cnd_prg_mask_add(aes, acc, 1, 40, key, 16, 0) == CND_EINVAL);
    CHECK(cnd_prg_mask_add(aes, acc, 0, 40, key, 8, 0) == CND_EINVAL);
    cnd_prg_destroy(&aes);
    cnd_prg_destroy(&cho);
    cnd_prg_destroy(&chs);
    CHECK(aes == NULL);
}

/* Ranges and chunking: the whole vector at once equals any split into aligned pieces, for every
 * generator, across the 16 KiB internal chunk boundary; the three generators' 16-bit words
 * agree with their own keystream. */
static void test_prg_ranges(void)
{
    const size_t n = 50000;
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    uint32_t *a = calloc(n, 4), *b = calloc(n, 4);
    uint8_t *ks = malloc(4 * n);
    for (int alg = 0; alg < 3; alg++) {
        cnd_prg_t *g = cnd_prg_new((cnd_prg_alg_t)alg);
        CHECK(g != NULL);
        for (unsigned wb = 16; wb <= 32; wb += 16) {
            memset(a, 0, 4 * n);
            memset(b, 0, 4 * n);
            CHECK(cnd_prg_mask_add(g, a, 0, n, seed, wb, 0) == 0);
            size_t cuts[] = {0, 32, 8192, 8224, 30016, n};
            for (int c = 0; c + 1 < 6; c++)
                CHECK(cnd_prg_mask_add(g, b, cuts[c], cuts[c + 1], seed, wb, 0) == 0);
            CHECK(memcmp(a, b, 4 * n) == 0);
            CHECK(cnd_prg_keystream(g, ks, n * wb / 8, 0, seed) == 0);
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                uint32_t w =
                    wb == 16 ? (uint32_t)(ks[2 * i] | ks[2 * i + 1] << 8) : cnd_le32(ks + 4 * i);
                ok &= a[i] == w;
            }
            CHECK(ok);
        }
        cnd_prg_destroy(&g);
    }
    /* Different seeds give different streams. */
    uint8_t s2[32];
    memcpy(s2, seed, 32);
    s2[31] ^= 1;
    cnd_prg_t *g = cnd_prg_new(CND_PRG_MASK);
    memset(a, 0, 4 * n);
    memset(b, 0, 4 * n);
    CHECK(cnd_prg_mask_add(g, a, 0, 64, seed, 32, 0) == 0);
    CHECK(cnd_prg_mask_add(g, b, 0, 64, s2, 32, 0) == 0);
    CHECK(memcmp(a, b, 256) != 0);
    cnd_prg_destroy(&g);
    free(a);
    free(b);
    free(ks);
}

static void test_pair_key(void)
{
    uint8_t ask[32], bpk[32], D[32], out[32], want[32];
    for (int i = 0; i < 32; i++) ask[i] = (uint8_t)(i + 1);
    s_unhex(bpk, 32, "493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d");
    cnd_sha256(D, "digest", 6);
    CHECK(cnd_sa_pair_key(out, "mask", D, 17, 3, ask, bpk) == 0);
    s_unhex(want, 32, "2530d3abad40869247fcecabdcfd0645b428e879633c566b5aebf021ca5bc5ad");
    CHECK(memcmp(out, want, 32) == 0);
    CHECK(cnd_sa_pair_key(out, "mask", D, 3, 17, ask, bpk) == 0); /* pair order does not matter */
    CHECK(memcmp(out, want, 32) == 0);
    CHECK(cnd_sa_pair_key(out, "share", D, 3, 17, ask, bpk) == 0);
    s_unhex(want, 32, "348c44cc61aeae3fb1877f26a74dd026d42fdb5bdba571470ec142f9cf4f5fcd");
    CHECK(memcmp(out, want, 32) == 0);
    /* Binding: another round digest or pair gives another key. */
    uint8_t D2[32];
    memcpy(D2, D, 32);
    D2[0] ^= 1;
    CHECK(cnd_sa_pair_key(out, "share", D2, 3, 17, ask, bpk) == 0);
    CHECK(memcmp(out, want, 32) != 0);
    CHECK(cnd_sa_pair_key(out, "share", D, 3, 18, ask, bpk) == 0);
    CHECK(memcmp(out, want, 32) != 0);
    /* A low-order peer key (all zero) is refused. */
    uint8_t zero[32] = {0};
    CHECK(cnd_sa_pair_key(out, "mask", D, 1, 2, ask, zero) == CND_ECRYPTO);
}

static void test_shamir_kat(void)
{
    CHECK_EQ_INT(cnd_gf256_mul(0x57, 0x83), 0xc1); /* FIPS-197 section 4.2 */
    CHECK_EQ_INT(cnd_gf256_mul(0x57, 0x13), 0xfe);
    uint8_t secret[32], coeffs[64], shares[5 * 32], want[5 * 32], xs[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i < 32; i++) secret[i] = (uint8_t)i;
    s_unhex(
        coeffs, 64,
        "1d2e3f5061728394a5b6c7d8e9fa0b1c2d3e4f60718293a4b5c6d7e8f90a1b2c3a4b5c6d7e8fa0b1c2d3e4f5"
        "061728394a5b6c7d8e9fb0c1d2e3f40516273849");
    s_unhex(want, 160,
            "2764613e1bf825226f6c2926e3e02d2a7774310eeb0835727f3c39f6f3303d7a"
            "d26a170c25ebadc67c1f2259ddbeb8d3791a273cf840dd6d0c2f52c4ad95c878"
            "f50f74313a168ee31b7a017432539bf61e7f0421075dfe086b0a712942b8eb1d"
            "f96549d23afed2843e78f98fe5a394c2682eaf19f3189915759eb2c6ae73df53"
            "de002aef2503f1a1591ddaa20a4eb7e70f4b8c040c05ba7012bb912b415efc36");
    CHECK(cnd_shamir_split_with(shares, secret, 32, 3, xs, 5, coeffs) == 0);
    CHECK(memcmp(shares, want, 160) == 0);
    uint8_t back[32];
    CHECK(cnd_shamir_combine(back, 32, want + 64, xs + 2, 3) == 0); /* points 3, 4, 5 */
    CHECK(memcmp(back, secret, 32) == 0);
    /* Argument checks. */
    uint8_t dup[3] = {1, 1, 2}, zero[3] = {0, 1, 2};
    CHECK(cnd_shamir_split(shares, secret, 32, 3, dup, 3) == CND_EINVAL);
    CHECK(cnd_shamir_split(shares, secret, 32, 3, zero, 3) == CND_EINVAL);
    CHECK(cnd_shamir_split(shares, secret, 32, 4, xs, 3) == CND_EINVAL);
    CHECK(cnd_shamir_split(shares, secret, 65, 2, xs, 3) == CND_EINVAL);
    CHECK(cnd_shamir_combine(back, 32, shares, dup, 3) == CND_EINVAL);
    CHECK(cnd_shamir_combine(back, 32, shares, xs, 0) == CND_EINVAL);
}

/* Every t-subset of k shares rebuilds the secret; every (t-1)-subset gives something else. */
static void s_subsets(unsigned k, unsigned t, size_t len)
{
    uint8_t secret[64], xs[16], shares[16 * 64], back[64], pts[16], sub[16 * 64];
    randombytes_buf(secret, len);
    for (unsigned j = 0; j < k; j++) xs[j] = (uint8_t)(7 * j + 3); /* arbitrary distinct points */
    CHECK(cnd_shamir_split(shares, secret, len, t, xs, k) == 0);
    unsigned ok_t = 0, n_t = 0, ok_below = 0, n_below = 0;
    for (unsigned mask = 1; mask < (1u << k); mask++) {
        unsigned m = (unsigned)__builtin_popcount(mask);
        if (m != t && m != t - 1) continue;
        unsigned c = 0;
        for (unsigned j = 0; j < k; j++)
            if (mask >> j & 1) {
                pts[c] = xs[j];
                memcpy(sub + c * len, shares + j * len, len);
                c++;
            }
        if (m == 0) continue;
        CHECK(cnd_shamir_combine(back, len, sub, pts, m) == 0);
        int same = memcmp(back, secret, len) == 0;
        if (m == t) {
            n_t++;
            ok_t += same;
        } else {
            n_below++;
            ok_below += same;
        }
    }
    CHECK(n_t > 0 && ok_t == n_t);
    CHECK_EQ_INT(ok_below, 0);
}

static void test_shamir_subsets(void)
{
    s_subsets(5, 3, 32);
    s_subsets(7, 4, 32);
    s_subsets(8, 5, 33); /* length not a multiple of 8 */
    s_subsets(10, 6, 32);
    s_subsets(3, 1, 5); /* t = 1: every share is the secret */
    s_subsets(12, 12, 32);
    /* Large neighbourhood: 255 shares, threshold 128, a few random subsets. */
    static uint8_t xs[255], shares[255 * 32], sub[128 * 32], pts[128];
    uint8_t secret[32], back[32];
    randombytes_buf(secret, 32);
    for (int j = 0; j < 255; j++) xs[j] = (uint8_t)(j + 1);
    CHECK(cnd_shamir_split(shares, secret, 32, 128, xs, 255) == 0);
    for (int trial = 0; trial < 5; trial++) {
        uint8_t perm[255];
        for (int j = 0; j < 255; j++) perm[j] = (uint8_t)j;
        for (int j = 254; j > 0; j--) {
            int r = (int)randombytes_uniform((uint32_t)j + 1);
            uint8_t t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        for (int j = 0; j < 128; j++) {
            pts[j] = xs[perm[j]];
            memcpy(sub + j * 32, shares + perm[j] * 32, 32);
        }
        CHECK(cnd_shamir_combine(back, 32, sub, pts, 128) == 0);
        CHECK(memcmp(back, secret, 32) == 0);
        CHECK(cnd_shamir_combine(back, 32, sub, pts, 127) == 0);
        CHECK(memcmp(back, secret, 32) != 0);
    }
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_hkdf();
    test_prg_kat();
    test_prg_ranges();
    test_pair_key();
    test_shamir_kat();
    test_shamir_subsets();
    return check_result("test_crypto_prim");
}
