/*
 * test_autocompress_fed.c: compress/autocompress_fed.h: candidate bundles (round trip, and every
 * malformed form refused), the count layout (ring width for the sites), sums of count vectors
 * decoded exactly (also through random masks that cancel modulo 2^b, as SecAgg+'s do), and the
 * bounds a sum must keep.
 */
#include "autocompress_fed.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void s_bundle(void)
{
    const uint8_t a[] = {1, 2, 3}, b[] = {9};
    const uint8_t *blobs[] = {a, b};
    size_t lens[] = {3, 1}, off[CND_AUTOC_FED_MAX], len[CND_AUTOC_FED_MAX];
    uint8_t *out = NULL;
    size_t n = 0;
    uint32_t k = 0;
    CHECK_EQ_INT(cnd_autoc_fed_bundle(&out, &n, blobs, lens, 2), 0);
    CHECK_EQ_INT(n, 8 + 4 + 3 + 4 + 1);
    CHECK_EQ_INT(cnd_autoc_fed_parse(out, n, &k, off, len), 0);
    CHECK_EQ_INT(k, 2);
    CHECK(len[0] == 3 && memcmp(out + off[0], a, 3) == 0);
    CHECK(len[1] == 1 && out[off[1]] == 9);
    CHECK_EQ_INT(cnd_autoc_fed_parse(out, n - 1, &k, off, len), CND_EFORMAT); /* truncated */
    CHECK_EQ_INT(k, 0);
    uint8_t *big = malloc(n + 1);
    memcpy(big, out, n);
    big[n] = 0;
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n + 1, &k, off, len), CND_EFORMAT); /* trailing */
    big[0] = 'X';
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n, &k, off, len), CND_EFORMAT); /* magic */
    memcpy(big, out, n);
    big[4] = 0; /* 0 candidates */
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n, &k, off, len), CND_EFORMAT);
    big[4] = 65;
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n, &k, off, len), CND_EFORMAT);
    memcpy(big, out, n);
    big[8] = 0; /* a candidate of 0 bytes */
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n, &k, off, len), CND_EFORMAT);
    big[8] = 200; /* longer than what is left */
    CHECK_EQ_INT(cnd_autoc_fed_parse(big, n, &k, off, len), CND_EFORMAT);
    free(big);
    free(out);
    CHECK_EQ_INT(cnd_autoc_fed_bundle(&out, &n, blobs, lens, 0), CND_EINVAL);
    lens[1] = 0;
    CHECK_EQ_INT(cnd_autoc_fed_bundle(&out, &n, blobs, lens, 2), CND_EINVAL);
    CHECK(out == NULL);
}

static void s_layout(void)
{
    cnd_autoc_fed_layout_t l;
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 4, 3, 20000), 0);
    CHECK_EQ_INT(l.limb_bits, 15); /* 20000 < 2^15 */
    CHECK_EQ_INT(l.m_limbs, 1);
    CHECK_EQ_INT(l.bits, 17); /* 3 sites: 2 more bits */
    CHECK_EQ_INT(l.len, 5);
    /* a cap beyond one limb: 4e9 needs 32 bits, 3 sites leave 30 per limb */
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 2, 3, 4000000000u), 0);
    CHECK_EQ_INT(l.limb_bits, 30);
    CHECK_EQ_INT(l.m_limbs, 2);
    CHECK(l.bits <= 32);
    CHECK_EQ_INT(l.len, 6);
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 0, 3, 10), CND_EINVAL);
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 65, 3, 10), CND_EINVAL);
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 1, 0, 10), CND_EINVAL);
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 1, 3, 0), CND_EINVAL);
}

/* Three sites' vectors, masked with random offsets that cancel modulo 2^b, sum exactly. */
static void s_sums(uint32_t cap)
{
    cnd_autoc_fed_layout_t l;
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 3, 3, cap), 0);
    uint64_t v[3] = {cap, cap / 2, 1}, c[3][3] = {{cap, 0, 7}, {1, cap / 2, 3}, {0, 1, 1}};
    uint32_t x[3][64], sum[64] = {0}, mask[3][64];
    uint64_t ring = l.bits == 32 ? 0xffffffffu : ((1ull << l.bits) - 1);
    srand(7);
    for (uint32_t e = 0; e < l.len; e++) {
        mask[0][e] = (uint32_t)rand() & ring;
        mask[1][e] = (uint32_t)rand() & ring;
        mask[2][e] = (uint32_t)((0 - (uint64_t)mask[0][e] - mask[1][e]) & ring);
    }
    for (int s = 0; s < 3; s++) {
        cnd_autoc_fed_encode(x[s], &l, v[s], c[s]);
        for (uint32_t e = 0; e < l.len; e++)
            sum[e] = (uint32_t)((sum[e] + (uint64_t)x[s][e] + mask[s][e]) & ring);
    }
    uint64_t tv = 0, tc[3] = {0};
    CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, tc, &l, sum, 3), 0);
    CHECK_EQ_INT(tv, v[0] + v[1] + v[2]);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(tc[i], c[0][i] + c[1][i] + c[2][i]);
    /* bounds: fewer survivors than the sum needs, correct above validated */
    CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, tc, &l, sum, 1), CND_ERANGE);
    CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, tc, &l, sum, 4), CND_ERANGE); /* > n_max */
    uint32_t bad[64];
    memcpy(bad, sum, sizeof bad);
    bad[l.m_limbs] = (uint32_t)((uint64_t)bad[0] + 1); /* candidate 0: one more than validated */
    if (l.m_limbs == 1) CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, tc, &l, bad, 3), CND_ERANGE);
}

/* Counts above the cap are capped, correct at validated. */
static void s_caps(void)
{
    cnd_autoc_fed_layout_t l;
    CHECK_EQ_INT(cnd_autoc_fed_layout(&l, 1, 2, 100), 0);
    uint32_t x[8];
    uint64_t c = 500, tv, tc;
    cnd_autoc_fed_encode(x, &l, 1000, &c);
    CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, &tc, &l, x, 1), 0);
    CHECK_EQ_INT(tv, 100);
    CHECK_EQ_INT(tc, 100);
    c = 5;
    cnd_autoc_fed_encode(x, &l, 3, &c);
    CHECK_EQ_INT(cnd_autoc_fed_decode(&tv, &tc, &l, x, 1), 0);
    CHECK_EQ_INT(tc, 3);
}

int main(void)
{
    s_bundle();
    s_layout();
    s_sums(20000);
    s_sums(4000000000u);
    s_caps();
    return check_result("test_autocompress_fed");
}
