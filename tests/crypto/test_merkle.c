/* test_merkle.c: crypto/merkle.c against the Certificate Transparency (RFC 6962/9162) vectors,
 * and against a naive level-by-level reference tree for every size up to 64. */
#include "check.h"
#include "digest.h"
#include "merkle.h"

#include <string.h>

#define N 64

static void unhex(uint8_t *out, const char *hex)
{
    CHECK(cnd_unhex(out, strlen(hex) / 2, hex) == 0);
}

/* The eight CT test leaves and the published roots for sizes 0..8. */
static const char *const ct_leaves[8] = {"",
                                         "00",
                                         "10",
                                         "2021",
                                         "3031",
                                         "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"};
static const char *const ct_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

typedef struct {
    uint64_t a, b;       /* index and size, or old and new size */
    const char *path[4]; /* expected proof, NULL-terminated */
} vec_t;

static const vec_t ct_inclusion[] = {
    {0,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4", NULL}},
    {5,
     8,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7", NULL}},
};

static const vec_t ct_consistency[] = {
    {2,
     8,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4", NULL}},
    {6,
     8,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7", NULL}},
    {2,
     5,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", NULL}},
};

static void test_ct_vectors(void)
{
    cnd_merkle_hash_t leaves[8];
    for (int i = 0; i < 8; i++) {
        uint8_t raw[16];
        size_t n = strlen(ct_leaves[i]) / 2;
        unhex(raw, ct_leaves[i]);
        cnd_merkle_leaf_hash(leaves[i], raw, n);
    }
    cnd_merkle_frontier_t f;
    cnd_merkle_frontier_init(&f);
    for (int n = 0; n <= 8; n++) {
        uint8_t want[32], got[32], fr[32];
        unhex(want, ct_roots[n]);
        cnd_merkle_root(got, leaves, (uint64_t)n);
        CHECK(memcmp(got, want, 32) == 0);
        cnd_merkle_frontier_root(&f, fr);
        CHECK(memcmp(fr, want, 32) == 0);
        if (n < 8) cnd_merkle_frontier_push(&f, leaves[n]);
    }
    for (size_t v = 0; v < sizeof ct_inclusion / sizeof ct_inclusion[0]; v++) {
        const vec_t *t = &ct_inclusion[v];
        cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF];
        size_t np = 0;
        CHECK(cnd_merkle_inclusion_proof(proof, &np, leaves, t->b, t->a) == 0);
        size_t want_n = 0;
        while (t->path[want_n]) want_n++;
        CHECK_EQ_INT(np, want_n);
        for (size_t i = 0; i < want_n && i < np; i++) {
            uint8_t w[32];
            unhex(w, t->path[i]);
            CHECK(memcmp(proof[i], w, 32) == 0);
        }
        uint8_t root[32];
        unhex(root, ct_roots[t->b]);
        CHECK(cnd_merkle_verify_inclusion(leaves[t->a], t->a, t->b, proof, np, root) == 0);
    }
    for (size_t v = 0; v < sizeof ct_consistency / sizeof ct_consistency[0]; v++) {
        const vec_t *t = &ct_consistency[v];
        cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF];
        size_t np = 0;
        CHECK(cnd_merkle_consistency_proof(proof, &np, leaves, t->b, t->a) == 0);
        size_t want_n = 0;
        while (t->path[want_n]) want_n++;
        CHECK_EQ_INT(np, want_n);
        for (size_t i = 0; i < want_n && i < np; i++) {
            uint8_t w[32];
            unhex(w, t->path[i]);
            CHECK(memcmp(proof[i], w, 32) == 0);
        }
        uint8_t r1[32], r2[32];
        unhex(r1, ct_roots[t->a]);
        unhex(r2, ct_roots[t->b]);
        CHECK(cnd_merkle_verify_consistency(t->a, t->b, r1, r2, proof, np) == 0);
        CHECK(cnd_merkle_verify_consistency(t->a, t->b, r2, r1, proof, np) != 0);
    }
}

/* Naive reference: hash level by level, pairing neighbours and carrying an odd last node up
 * unchanged. For each level it also records the sibling of `index` (the audit path). */
static void ref_tree(uint8_t root[32], cnd_merkle_hash_t *path, size_t *np,
                     const cnd_merkle_hash_t *leaves, size_t n, size_t index)
{
    cnd_merkle_hash_t level[N];
    memcpy(level, leaves, n * 32);
    size_t cnt = n, idx = index;
    *np = 0;
    while (cnt > 1) {
        size_t sib = idx ^ 1;
        if (path && sib < cnt) memcpy(path[(*np)++], level[sib], 32);
        size_t out = 0;
        for (size_t i = 0; i < cnt; i += 2) {
            if (i + 1 < cnt)
                cnd_merkle_node_hash(level[out++], level[i], level[i + 1]);
            else
                memcpy(level[out++], level[i], 32);
        }
        cnt = out;
        idx /= 2;
    }
    if (n == 0)
        cnd_merkle_empty_root(root);
    else
        memcpy(root, level[0], 32);
}

static void test_every_size(void)
{
    cnd_merkle_hash_t leaves[N];
    for (int i = 0; i < N; i++) {
        uint8_t e[3] = {(uint8_t)i, (uint8_t)(i * 7), 0x5a};
        cnd_merkle_leaf_hash(leaves[i], e, sizeof e);
    }
    uint8_t roots[N + 1][32];
    cnd_merkle_frontier_t f;
    cnd_merkle_frontier_init(&f);
    int inc_ok = 0, inc_bad_caught = 0, inc_bad_total = 0;
    for (size_t n = 0; n <= N; n++) {
        size_t dummy;
        ref_tree(roots[n], NULL, &dummy, leaves, n, 0);
    }
    for (size_t n = 0; n <= N; n++) {
        uint8_t r[32];
        cnd_merkle_root(r, leaves, n);
        CHECK(memcmp(r, roots[n], 32) == 0);
        cnd_merkle_frontier_root(&f, r);
        CHECK(memcmp(r, roots[n], 32) == 0);
        CHECK_EQ_INT(f.size, n);
        CHECK_EQ_INT(f.n, __builtin_popcountll(n));
        if (n < N) cnd_merkle_frontier_push(&f, leaves[n]);

        for (size_t m = 0; m < n; m++) {
            cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF], want[CND_MERKLE_MAX_PROOF];
            size_t np = 0, wn = 0;
            uint8_t rr[32];
            CHECK(cnd_merkle_inclusion_proof(proof, &np, leaves, n, m) == 0);
            ref_tree(rr, want, &wn, leaves, n, m);
            CHECK_EQ_INT(np, wn);
            CHECK(memcmp(proof, want, np * 32) == 0);
            if (cnd_merkle_verify_inclusion(leaves[m], m, n, proof, np, roots[n]) == 0) inc_ok++;
            /* Every single-bit change of every proof hash is caught. */
            for (size_t i = 0; i < np; i++) {
                proof[i][i % 32] ^= 0x01;
                inc_bad_total++;
                if (cnd_merkle_verify_inclusion(leaves[m], m, n, proof, np, roots[n]) != 0)
                    inc_bad_caught++;
                proof[i][i % 32] ^= 0x01;
            }
            /* Wrong leaf, wrong index, wrong size, truncated and extended proofs fail. */
            CHECK(cnd_merkle_verify_inclusion(leaves[(m + 1) % N], m, n, proof, np, roots[n]) != 0);
            if (n > 1) {
                CHECK(cnd_merkle_verify_inclusion(leaves[m], (m + 1) % n, n, proof, np, roots[n]) !=
                      0);
                CHECK(cnd_merkle_verify_inclusion(leaves[m], m, n, proof, np - 1, roots[n]) != 0);
            }
            if (n < N) /* the size-n proof does not prove inclusion in the size-(n+1) tree */
                CHECK(cnd_merkle_verify_inclusion(leaves[m], m, n + 1, proof, np, roots[n + 1]) !=
                      0);
            memcpy(proof[np], leaves[0], 32);
            CHECK(cnd_merkle_verify_inclusion(leaves[m], m, n, proof, np + 1, roots[n]) != 0);
            CHECK(cnd_merkle_verify_inclusion(leaves[m], n, n, proof, np, roots[n]) != 0);
        }
        cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF];
        size_t np = 0;
        CHECK(cnd_merkle_inclusion_proof(proof, &np, leaves, n, n) == CND_EINVAL);
    }
    CHECK_EQ_INT(inc_ok, N * (N + 1) / 2);
    CHECK_EQ_INT(inc_bad_caught, inc_bad_total);

    /* A second tree that agrees with `leaves` on the first 20 leaves only. */
    cnd_merkle_hash_t other[N];
    memcpy(other, leaves, sizeof other);
    for (int i = 20; i < N; i++) other[i][0] ^= 0xff;
    uint8_t other_roots[N + 1][32];
    for (size_t n = 0; n <= N; n++) cnd_merkle_root(other_roots[n], other, n);

    int con_ok = 0, con_bad_caught = 0, con_bad_total = 0;
    for (size_t n = 0; n <= N; n++) {
        for (size_t m = 0; m <= n; m++) {
            cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF];
            size_t np = 0;
            CHECK(cnd_merkle_consistency_proof(proof, &np, leaves, n, m) == 0);
            CHECK(np <= CND_MERKLE_MAX_PROOF);
            if (cnd_merkle_verify_consistency(m, n, roots[m], roots[n], proof, np) == 0) con_ok++;
            if (m > 0 && m < n) {
                for (size_t i = 0; i < np; i++) {
                    proof[i][7] ^= 0x80;
                    con_bad_total++;
                    if (cnd_merkle_verify_consistency(m, n, roots[m], roots[n], proof, np) != 0)
                        con_bad_caught++;
                    proof[i][7] ^= 0x80;
                }
                CHECK(cnd_merkle_verify_consistency(m, n, roots[m], roots[n], proof, np - 1) != 0);
                memcpy(proof[np], leaves[0], 32);
                CHECK(cnd_merkle_verify_consistency(m, n, roots[m], roots[n], proof, np + 1) != 0);
                CHECK(cnd_merkle_verify_consistency(m, n, roots[n], roots[m], proof, np) != 0);
                CHECK(cnd_merkle_verify_consistency(n, m, roots[m], roots[n], proof, np) != 0);
                /* A history rewritten after leaf 20: the old tree's proof does not link the
                 * old root to the rewritten tree's root, and the rewritten tree's own proof
                 * does not link the genuine old root when the rewrite reaches into it. */
                if (n > 20)
                    CHECK(cnd_merkle_verify_consistency(m, n, roots[m], other_roots[n], proof,
                                                        np) != 0);
                cnd_merkle_hash_t op[CND_MERKLE_MAX_PROOF];
                size_t onp = 0;
                CHECK(cnd_merkle_consistency_proof(op, &onp, other, n, m) == 0);
                if (m > 20)
                    CHECK(cnd_merkle_verify_consistency(m, n, roots[m], other_roots[n], op, onp) !=
                          0);
                else
                    CHECK(cnd_merkle_verify_consistency(m, n, roots[m], other_roots[n], op, onp) ==
                          0);
            }
        }
        if (n > 0) {
            cnd_merkle_hash_t proof[CND_MERKLE_MAX_PROOF];
            size_t np = 0;
            CHECK(cnd_merkle_consistency_proof(proof, &np, leaves, n - 1, n) == CND_EINVAL);
            /* Degenerate sizes: 0 -> n needs the empty root and an empty proof; n -> n needs
             * equal roots and an empty proof. */
            CHECK(cnd_merkle_verify_consistency(0, n, roots[0], roots[n], NULL, 0) == 0);
            CHECK(cnd_merkle_verify_consistency(0, n, roots[1], roots[n], NULL, 0) != 0);
            CHECK(cnd_merkle_verify_consistency(n, n, roots[n], roots[n], NULL, 0) == 0);
            CHECK(cnd_merkle_verify_consistency(n, n, roots[n], roots[n - 1], NULL, 0) != 0);
            CHECK(cnd_merkle_verify_consistency(n, n, roots[n], roots[n], proof, 1) != 0);
        }
    }
    CHECK_EQ_INT(con_ok, (N + 1) * (N + 2) / 2);
    CHECK_EQ_INT(con_bad_caught, con_bad_total);
    CHECK(con_bad_total > 1000);
}

static void test_hash_prefixes(void)
{
    /* Leaf and node hashes are SHA-256 with the 0x00 / 0x01 prefixes, checked against the
     * common SHA-256 so the two domains cannot be confused. */
    uint8_t a[32], b[32], buf[65];
    cnd_merkle_leaf_hash(a, "abc", 3);
    uint8_t pre[4] = {0x00, 'a', 'b', 'c'};
    cnd_sha256(b, pre, 4);
    CHECK(memcmp(a, b, 32) == 0);
    uint8_t l[32], r[32];
    memset(l, 0x11, 32);
    memset(r, 0x22, 32);
    cnd_merkle_node_hash(a, l, r);
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    cnd_sha256(b, buf, 65);
    CHECK(memcmp(a, b, 32) == 0);
    cnd_merkle_node_hash(b, r, l);
    CHECK(memcmp(a, b, 32) != 0);
}

int main(void)
{
    test_ct_vectors();
    test_every_size();
    test_hash_prefixes();
    return check_result("test_merkle");
}
