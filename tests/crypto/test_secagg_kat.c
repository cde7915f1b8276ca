/*
 * test_secagg_kat.c: known answers for the SecAgg+ byte layout of docs/protocol.md (section 11),
 * from fixed inputs: round parameters and D, adverts and their signatures, the KEYS graph seed
 * and every neighbourhood, pair keys, a Shamir split with fixed coefficients, a share
 * ciphertext with a fixed nonce, mask keystreams, one client's MASKED message, the survivor
 * digest and a consistency signature, the fixed-point layout, metric limbs and a decoding.
 *
 * The answers live in tests/crypto/secagg_kat.txt ("name hex" per line). This test recomputes
 * each with the C code and compares; tests/crypto/test_secagg_spec.py recomputes each from the
 * document alone (Python, python3-cryptography) and compares with the same file, so the code,
 * the document and the file must all agree. `test_secagg_kat --write FILE` regenerates the file
 * (after a deliberate change of the protocol, with docs/protocol.md changed to match).
 */
#include "check.h"
#include "digest.h"
#include "fixedpoint.h"
#include "prg.h"
#include "secagg.h"
#include "secagg_internal.h"
#include "shamir.h"
#include "sign.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 12, LEN = 40, BITS = 13 };

typedef struct {
    FILE *out;  /* --write: the file being written */
    char *want; /* the stored answers */
    int n_checked;
} kat_t;

static void s_hex(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Writes or checks one answer. */
static void s_kat(kat_t *k, const char *name, const uint8_t *b, size_t n)
{
    char *h = malloc(2 * n + 1);
    if (!h) return;
    h[0] = 0;
    s_hex(h, b, n);
    if (k->out) {
        fprintf(k->out, "%s %s\n", name, h);
    } else {
        char key[80];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(k->want, key);
        int ok = p && strncmp(p + strlen(key), h, 2 * n) == 0 &&
                 (p[strlen(key) + 2 * n] == '\n' || p[strlen(key) + 2 * n] == 0);
        if (!ok) fprintf(stderr, "known answer %s differs: %s\n", name, h);
        CHECK(ok);
        k->n_checked++;
    }
    free(h);
}

static void s_fill(uint8_t *b, size_t n, uint8_t v)
{
    memset(b, v, n);
}

int main(int argc, char **argv)
{
    CHECK(sodium_init() >= 0);
    kat_t k;
    memset(&k, 0, sizeof k);
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        k.out = fopen(argv[2], "w");
        CHECK(k.out != NULL);
        if (!k.out) return check_result("test_secagg_kat");
        fprintf(k.out,
                "# SecAgg+ known answers (docs/protocol.md section 11); regenerate with\n"
                "# test_secagg_kat --write FILE. Inputs: see tests/crypto/test_secagg_kat.c\n");
    } else {
        const char *path = argc == 2 ? argv[1] : CND_KAT_FILE;
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        if (!f) return check_result("test_secagg_kat");
        k.want = calloc(1, 1 << 20);
        k.want[0] = '\n';
        size_t got = fread(k.want + 1, 1, (1 << 20) - 2, f);
        (void)got;
        fclose(f);
    }

    /* Round parameters and roster: identity u from the Ed25519 seed of 32 bytes 0x01+u, its
     * certificate digest 32 bytes 0xc0+u. */
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.round_id = ((uint64_t)7 << 40) | ((uint64_t)3 << 12) | 2;
    for (int i = 0; i < 32; i++) p.round_seed[i] = (uint8_t)i;
    p.n = N;
    p.degree = 4;
    p.threshold = 3;
    p.min_survivors = 7;
    p.len = LEN;
    p.bits = BITS;
    CHECK(cnd_secagg_params_fill(&p) == 0);
    cnd_buf_t b;
    cnd_buf_init(&b);
    CHECK(cnd_secagg_params_encode(&b, &p) == 0);
    s_kat(&k, "params", b.data, b.len);
    cnd_identity_t *id[N];
    cnd_secagg_member_t ro[N];
    for (int u = 0; u < N; u++) {
        uint8_t seed[32];
        s_fill(seed, 32, (uint8_t)(0x01 + u));
        CHECK(cnd_identity_from_seed(&id[u], seed) == 0);
        memcpy(ro[u].id_pk, cnd_identity_pk(id[u]), 32);
        s_fill(ro[u].cert_sha256, 32, (uint8_t)(0xc0 + u));
    }
    uint8_t D[32];
    cnd_sa_params_digest(D, &p, ro);
    s_kat(&k, "D", D, 32);

    /* Adverts: c_u = 32 x (0x10+u), s_u = 32 x (0x50+u), b_u = 32 x (0x90+u). */
    uint8_t adverts[N * S_SA_ADVERT_BYTES], csk[N][32], ssk[N][32], seed_b[N][32];
    uint8_t cpk[N][32], spk[N][32];
    for (uint32_t u = 0; u < N; u++) {
        s_fill(csk[u], 32, (uint8_t)(0x10 + u));
        s_fill(ssk[u], 32, (uint8_t)(0x50 + u));
        s_fill(seed_b[u], 32, (uint8_t)(0x90 + u));
        CHECK(crypto_scalarmult_base(cpk[u], csk[u]) == 0);
        CHECK(crypto_scalarmult_base(spk[u], ssk[u]) == 0);
        uint8_t commit[32], m[32 + 4 + 4 * 32], sig[64];
        cnd_sa_commit(commit, D, u, seed_b[u]);
        cnd_sa_advert_signed(m, D, u, ro[u].id_pk, cpk[u], spk[u], commit);
        CHECK(cnd_sign(sig, id[u], "secagg-advert", m, sizeof m) == 0);
        cnd_buf_t a;
        cnd_buf_init(&a);
        cnd_sa_hdr_put(&a, CND_SECAGG_ADVERT, p.round_id, u, CND_SECAGG_SERVER);
        cnd_buf_put(&a, ro[u].id_pk, 32);
        cnd_buf_put(&a, cpk[u], 32);
        cnd_buf_put(&a, spk[u], 32);
        cnd_buf_put(&a, commit, 32);
        cnd_buf_put(&a, sig, 64);
        CHECK(a.len == S_SA_ADVERT_BYTES);
        if (a.len == S_SA_ADVERT_BYTES) memcpy(adverts + u * S_SA_ADVERT_BYTES, a.data, a.len);
        cnd_buf_free(&a);
        /* the advert must verify as the protocol says */
        cnd_sa_advert_t pa;
        CHECK(cnd_sa_advert_parse(&pa, adverts + u * S_SA_ADVERT_BYTES, S_SA_ADVERT_BYTES,
                                  p.round_id, "kat") == 0 &&
              cnd_sa_advert_verify(&pa, D, ro, N) == 0);
    }
    s_kat(&k, "advert3", adverts + 3 * S_SA_ADVERT_BYTES, S_SA_ADVERT_BYTES);

    /* Graph seed and every neighbourhood (u32 little-endian each, k per client). */
    uint8_t G[32];
    cnd_sa_graph_seed(G, D, adverts, N);
    s_kat(&k, "graph_seed", G, 32);
    cnd_secagg_graph_t *g = NULL;
    CHECK(cnd_secagg_graph_new(&g, &p, G) == 0);
    if (!g) return check_result("test_secagg_kat");
    uint32_t kk;
    uint8_t nbb[N * 5 * 4];
    for (uint32_t u = 0; u < N; u++) {
        const uint32_t *nb = cnd_secagg_graph_neighbours(g, u, &kk);
        for (uint32_t j = 0; j < kk && j < 5; j++) cnd_st_le32(nbb + (u * 5 + j) * 4, nb[j]);
    }
    CHECK_EQ_INT(kk, 5);
    s_kat(&k, "neighbourhoods", nbb, sizeof nbb);

    /* Pair keys between 2 and 7 (computed from 2's side), and from 7's side for "mask". */
    uint8_t km[32], ks[32], km2[32];
    CHECK(cnd_sa_pair_key(km, "mask", D, 2, 7, ssk[2], spk[7]) == 0);
    CHECK(cnd_sa_pair_key(km2, "mask", D, 7, 2, ssk[7], spk[2]) == 0);
    CHECK(memcmp(km, km2, 32) == 0);
    CHECK(cnd_sa_pair_key(ks, "share", D, 2, 7, csk[2], cpk[7]) == 0);
    s_kat(&k, "pair_mask_2_7", km, 32);
    s_kat(&k, "pair_share_2_7", ks, 32);

    /* Shamir: b_3 and s_3, t = 3, points 1..5, coefficient of x^i for byte j = (0x21*i + j)
     * mod 256. */
    uint8_t coeffs[2 * 32], sh_b[5 * 32], sh_s[5 * 32], xs[5] = {1, 2, 3, 4, 5};
    for (int i = 1; i <= 2; i++)
        for (int j = 0; j < 32; j++) coeffs[(i - 1) * 32 + j] = (uint8_t)(0x21 * i + j);
    CHECK(cnd_shamir_split_with(sh_b, seed_b[3], 32, 3, xs, 5, coeffs) == 0);
    CHECK(cnd_shamir_split_with(sh_s, ssk[3], 32, 3, xs, 5, coeffs) == 0);
    s_kat(&k, "shamir_b3", sh_b, sizeof sh_b);
    s_kat(&k, "shamir_s3", sh_s, sizeof sh_s);

    /* One share ciphertext: from 2 to 7 with nonce 24 x 0xaa, shares = share 1 of each. */
    uint8_t pt[S_SA_PT_BYTES], ct[S_SA_CT_BYTES], ad[S_SA_AD_BYTES];
    cnd_st_le32(pt, 2);
    cnd_st_le32(pt + 4, 7);
    memcpy(pt + 8, sh_b + 32, 32);
    memcpy(pt + 40, sh_s + 32, 32);
    cnd_sa_share_ad(ad, D, 2, 7);
    s_fill(ct, 24, 0xaa);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct + 24, NULL, pt, sizeof pt, ad, sizeof ad, NULL,
                                               ct, ks);
    s_kat(&k, "share_ct_2_7", ct, sizeof ct);

    /* Mask keystream of b_3: bytes [0, 32) and [64, 96). */
    cnd_prg_t *prg = cnd_prg_new(CND_PRG_MASK);
    CHECK(prg != NULL);
    uint8_t st[96];
    if (prg) {
        CHECK(cnd_prg_keystream(prg, st, 96, 0, seed_b[3]) == 0);
        s_kat(&k, "prg_b3", st, 96);
    }
    cnd_prg_destroy(&prg);

    /* Client 0's MASKED message: x_i = (i * 97) mod 2^13, every neighbour shared. */
    uint32_t y[LEN];
    for (uint32_t i = 0; i < LEN; i++) y[i] = (i * 97) % (1u << BITS);
    cnd_sa_job_t jobs[5];
    size_t nj = 0;
    memcpy(jobs[nj].seed, seed_b[0], 32);
    jobs[nj++].negate = 0;
    const uint32_t *nb0 = cnd_secagg_graph_neighbours(g, 0, &kk);
    for (uint32_t j = 0; j < kk; j++) {
        if (nb0[j] == 0) continue;
        CHECK(cnd_sa_pair_key(jobs[nj].seed, "mask", D, 0, nb0[j], ssk[0], spk[nb0[j]]) == 0);
        jobs[nj++].negate = 0; /* client 0 is the smaller index of every pair: + */
    }
    CHECK(cnd_sa_apply_masks(y, LEN, cnd_sa_word_bits(BITS), jobs, nj, 1) == 0);
    cnd_buf_t mm;
    cnd_buf_init(&mm);
    cnd_sa_hdr_put(&mm, CND_SECAGG_MASKED, p.round_id, 0, CND_SECAGG_SERVER);
    cnd_buf_u32(&mm, LEN);
    cnd_buf_u8(&mm, BITS);
    size_t pb = cnd_ring_packed_bytes(LEN, BITS);
    if (cnd_buf_reserve(&mm, pb) == 0) {
        cnd_ring_pack(mm.data + mm.len, y, LEN, BITS);
        mm.len += pb;
    }
    s_kat(&k, "masked0", mm.data, mm.len);
    cnd_buf_free(&mm);

    /* Survivor digest (U2 all, U3 all but 5) and client 3's consistency signature. */
    uint8_t u2[2] = {0xff, 0x0f}, u3[2] = {0xdf, 0x0f}, sd[32], cm[S_SA_CONSIST_SIGNED], cs[64];
    cnd_sa_survivors_digest(sd, D, N, u2, u3);
    s_kat(&k, "survivors", sd, 32);
    cnd_sa_consist_signed(cm, D, 3, sd);
    CHECK(cnd_sign(cs, id[3], "secagg-consistency", cm, sizeof cm) == 0);
    s_kat(&k, "consistency3", cs, 64);

    /* Fixed point: layout of dim 10, 12 sites, q 8, clip 0.5, W 1000 (u32 bits, limb bits,
     * limbs per group, len), and a vector's count and metric limbs. */
    cnd_fxp_params_t fp = {10, 12, 8, 0.5f, 0, 1000};
    cnd_fxp_layout_t l;
    CHECK(cnd_fxp_layout(&l, &fp) == 0);
    uint8_t lb[20];
    cnd_st_le32(lb, l.bits);
    cnd_st_le32(lb + 4, l.limb_bits);
    cnd_st_le32(lb + 8, l.n_limbs);
    cnd_st_le32(lb + 12, l.loss_limbs);
    cnd_st_le32(lb + 16, l.len);
    s_kat(&k, "fxp_layout", lb, sizeof lb);
    uint32_t v[64];
    float zero[10] = {0};
    uint8_t rs[32] = {0};
    CHECK(l.len <= 64);
    CHECK(cnd_fxp_encode_seeded(v, NULL, &fp, &l, zero, 777, rs) == 0);
    cnd_fxp_metrics_t mt = {1500, 900, 0.6931};
    CHECK(cnd_fxp_encode_metrics(v, &fp, &l, &mt) == 0);
    uint8_t vb[64 * 4];
    for (uint32_t i = 0; i < l.len; i++) cnd_st_le32(vb + 4 * i, v[i]);
    s_kat(&k, "fxp_limbs", vb + 4 * fp.dim, 4 * (l.len - fp.dim));

    for (int u = 0; u < N; u++) cnd_identity_destroy(&id[u]);
    cnd_secagg_graph_destroy(&g);
    cnd_buf_free(&b);
    if (k.out) {
        fclose(k.out);
    } else {
        CHECK_EQ_INT(k.n_checked, 16);
        free(k.want);
    }
    return check_result("test_secagg_kat");
}
