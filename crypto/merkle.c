/*
 * merkle.c: RFC 9162 Merkle trees (see merkle.h for why this is hand-written).
 *
 * Proof generation follows the RFC's recursive definitions (PATH and SUBPROOF) over the array of
 * leaf hashes, hashing each needed subtree once: O(n) hashes per proof and O(log n) stack.
 * Verification follows the RFC's iterative algorithms over the proof alone. Neither trusts its
 * inputs: sizes and indices are checked before any arithmetic, and a proof of the wrong length is
 * rejected rather than read past. Hashing uses libsodium's SHA-256, whose state lives on the
 * stack, so no function here allocates or can fail for lack of memory.
 */
#include "merkle.h"

#include <sodium.h>
#include <string.h>

void cnd_merkle_leaf_hash(uint8_t out[CND_MERKLE_HASH_BYTES], const void *entry, size_t len)
{
    /* libsodium's SHA-256 state lives on the stack: hashing never allocates and never fails. */
    crypto_hash_sha256_state st;
    const uint8_t z = 0x00;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &z, 1);
    crypto_hash_sha256_update(&st, entry, len);
    crypto_hash_sha256_final(&st, out);
}

void cnd_merkle_node_hash(uint8_t out[CND_MERKLE_HASH_BYTES],
                          const uint8_t left[CND_MERKLE_HASH_BYTES],
                          const uint8_t right[CND_MERKLE_HASH_BYTES])
{
    uint8_t buf[1 + 2 * CND_MERKLE_HASH_BYTES];
    buf[0] = 0x01;
    memcpy(buf + 1, left, CND_MERKLE_HASH_BYTES);
    memcpy(buf + 1 + CND_MERKLE_HASH_BYTES, right, CND_MERKLE_HASH_BYTES);
    crypto_hash_sha256(out, buf, sizeof buf);
}

void cnd_merkle_empty_root(uint8_t out[CND_MERKLE_HASH_BYTES])
{
    crypto_hash_sha256(out, (const uint8_t *)"", 0);
}

/* Largest power of two strictly smaller than n (n >= 2). */
static uint64_t s_split(uint64_t n)
{
    return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/* MTH(leaves[lo .. lo+n)), n >= 1. */
static void s_mth(uint8_t out[CND_MERKLE_HASH_BYTES], const cnd_merkle_hash_t *leaves, uint64_t lo,
                  uint64_t n)
{
    if (n == 1) {
        memcpy(out, leaves[lo], CND_MERKLE_HASH_BYTES);
        return;
    }
    uint64_t k = s_split(n);
    uint8_t l[CND_MERKLE_HASH_BYTES], r[CND_MERKLE_HASH_BYTES];
    s_mth(l, leaves, lo, k);
    s_mth(r, leaves, lo + k, n - k);
    cnd_merkle_node_hash(out, l, r);
}

void cnd_merkle_root(uint8_t out[CND_MERKLE_HASH_BYTES], const cnd_merkle_hash_t *leaves,
                     uint64_t n)
{
    if (n == 0) {
        cnd_merkle_empty_root(out);
        return;
    }
    s_mth(out, leaves, 0, n);
}

void cnd_merkle_frontier_init(cnd_merkle_frontier_t *f)
{
    memset(f, 0, sizeof *f);
}

void cnd_merkle_frontier_push(cnd_merkle_frontier_t *f, const uint8_t leaf[CND_MERKLE_HASH_BYTES])
{
    uint8_t h[CND_MERKLE_HASH_BYTES];
    memcpy(h, leaf, CND_MERKLE_HASH_BYTES);
    /* Each trailing one bit of the old size is a perfect subtree of the same height as the one
     * being carried: merge them, exactly like binary addition of 1. */
    for (uint64_t s = f->size; s & 1; s >>= 1) {
        cnd_merkle_node_hash(h, f->node[f->n - 1], h);
        f->n--;
    }
    memcpy(f->node[f->n++], h, CND_MERKLE_HASH_BYTES);
    f->size++;
}

void cnd_merkle_frontier_root(const cnd_merkle_frontier_t *f, uint8_t out[CND_MERKLE_HASH_BYTES])
{
    if (f->n == 0) {
        cnd_merkle_empty_root(out);
        return;
    }
    /* The RFC's split puts the largest perfect subtree on the left of every level, so the root
     * folds the stack from the smallest (rightmost) subtree outward. */
    uint8_t r[CND_MERKLE_HASH_BYTES];
    memcpy(r, f->node[f->n - 1], CND_MERKLE_HASH_BYTES);
    for (int i = f->n - 2; i >= 0; i--) cnd_merkle_node_hash(r, f->node[i], r);
    memcpy(out, r, CND_MERKLE_HASH_BYTES);
}

/* PATH(m, D[lo .. lo+n)), appended deepest first. */
static void s_path(cnd_merkle_hash_t *proof, size_t *cnt, const cnd_merkle_hash_t *leaves,
                   uint64_t lo, uint64_t n, uint64_t m)
{
    if (n <= 1) return;
    uint64_t k = s_split(n);
    if (m < k) {
        s_path(proof, cnt, leaves, lo, k, m);
        s_mth(proof[(*cnt)++], leaves, lo + k, n - k);
    } else {
        s_path(proof, cnt, leaves, lo + k, n - k, m - k);
        s_mth(proof[(*cnt)++], leaves, lo, k);
    }
}

int cnd_merkle_inclusion_proof(cnd_merkle_hash_t *proof, size_t *n_proof,
                               const cnd_merkle_hash_t *leaves, uint64_t tree_size, uint64_t index)
{
    *n_proof = 0;
    if (index >= tree_size || tree_size > ((uint64_t)1 << 62))
        return cnd_errf(CND_EINVAL, "inclusion proof: leaf %llu is not in a tree of %llu leaves",
                        (unsigned long long)index, (unsigned long long)tree_size);
    s_path(proof, n_proof, leaves, 0, tree_size, index);
    return 0;
}

/* SUBPROOF(m, D[lo .. lo+n), b), appended deepest first. */
static void s_subproof(cnd_merkle_hash_t *proof, size_t *cnt, const cnd_merkle_hash_t *leaves,
                       uint64_t lo, uint64_t n, uint64_t m, int b)
{
    if (m == n) {
        if (!b) s_mth(proof[(*cnt)++], leaves, lo, n);
        return;
    }
    uint64_t k = s_split(n);
    if (m <= k) {
        s_subproof(proof, cnt, leaves, lo, k, m, b);
        s_mth(proof[(*cnt)++], leaves, lo + k, n - k);
    } else {
        s_subproof(proof, cnt, leaves, lo + k, n - k, m - k, 0);
        s_mth(proof[(*cnt)++], leaves, lo, k);
    }
}

int cnd_merkle_consistency_proof(cnd_merkle_hash_t *proof, size_t *n_proof,
                                 const cnd_merkle_hash_t *leaves, uint64_t new_size,
                                 uint64_t old_size)
{
    *n_proof = 0;
    if (old_size > new_size || new_size > ((uint64_t)1 << 62))
        return cnd_errf(CND_EINVAL, "consistency proof: old size %llu exceeds new size %llu",
                        (unsigned long long)old_size, (unsigned long long)new_size);
    if (old_size == 0 || old_size == new_size) return 0;
    s_subproof(proof, n_proof, leaves, 0, new_size, old_size, 1);
    return 0;
}

int cnd_merkle_verify_inclusion(const uint8_t leaf[CND_MERKLE_HASH_BYTES], uint64_t index,
                                uint64_t tree_size, const cnd_merkle_hash_t *proof, size_t n_proof,
                                const uint8_t root[CND_MERKLE_HASH_BYTES])
{
    if (index >= tree_size || n_proof > CND_MERKLE_MAX_PROOF) return CND_ECRYPTO;
    uint64_t fn = index, sn = tree_size - 1;
    uint8_t r[CND_MERKLE_HASH_BYTES];
    memcpy(r, leaf, CND_MERKLE_HASH_BYTES);
    for (size_t i = 0; i < n_proof; i++) {
        if (sn == 0) return CND_ECRYPTO;
        if ((fn & 1) || fn == sn) {
            cnd_merkle_node_hash(r, proof[i], r);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            cnd_merkle_node_hash(r, r, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return CND_ECRYPTO;
    return sodium_memcmp(r, root, CND_MERKLE_HASH_BYTES) == 0 ? 0 : CND_ECRYPTO;
}

int cnd_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
                                  const uint8_t old_root[CND_MERKLE_HASH_BYTES],
                                  const uint8_t new_root[CND_MERKLE_HASH_BYTES],
                                  const cnd_merkle_hash_t *proof, size_t n_proof)
{
    if (old_size > new_size || n_proof > CND_MERKLE_MAX_PROOF) return CND_ECRYPTO;
    if (old_size == new_size) {
        if (n_proof != 0) return CND_ECRYPTO;
        return sodium_memcmp(old_root, new_root, CND_MERKLE_HASH_BYTES) == 0 ? 0 : CND_ECRYPTO;
    }
    if (old_size == 0) {
        uint8_t e[CND_MERKLE_HASH_BYTES];
        cnd_merkle_empty_root(e);
        if (n_proof != 0) return CND_ECRYPTO;
        return sodium_memcmp(old_root, e, CND_MERKLE_HASH_BYTES) == 0 ? 0 : CND_ECRYPTO;
    }
    if (n_proof == 0) return CND_ECRYPTO;
    /* When the old tree is a perfect subtree its root is the first node of the path. */
    const uint8_t *path[CND_MERKLE_MAX_PROOF + 1];
    size_t np = 0;
    if ((old_size & (old_size - 1)) == 0) path[np++] = old_root;
    for (size_t i = 0; i < n_proof; i++) path[np++] = proof[i];
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[CND_MERKLE_HASH_BYTES], sr[CND_MERKLE_HASH_BYTES];
    memcpy(fr, path[0], CND_MERKLE_HASH_BYTES);
    memcpy(sr, path[0], CND_MERKLE_HASH_BYTES);
    for (size_t i = 1; i < np; i++) {
        if (sn == 0) return CND_ECRYPTO;
        if ((fn & 1) || fn == sn) {
            cnd_merkle_node_hash(fr, path[i], fr);
            cnd_merkle_node_hash(sr, path[i], sr);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            cnd_merkle_node_hash(sr, sr, path[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return CND_ECRYPTO;
    if (sodium_memcmp(fr, old_root, CND_MERKLE_HASH_BYTES) != 0) return CND_ECRYPTO;
    return sodium_memcmp(sr, new_root, CND_MERKLE_HASH_BYTES) == 0 ? 0 : CND_ECRYPTO;
}
