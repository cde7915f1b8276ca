/*
 * test_prune.c: structured pruning (compress/prune.h).
 *
 * The central property: the pruned model computes what the original computes with the removed
 * channels zeroed. The reference zeroes them in the original's own forward pass (an act_forward
 * hook sets every removed channel of every node's output to 0, which is exactly "the channel
 * is not there" for every later reader), independently of how prune.c slices parameters. It is
 * checked on a chain with batchnorm and a flatten into dense layers, and on a graph with a
 * residual add (channels coupled across the branches), a depthwise conv2d and a concat (offsets
 * shift). Also: exact parameter and MAC counts, which channels the scores pick (L1, L2,
 * Taylor), targets in MACs and bytes, grouped convolutions left whole, refusals naming the
 * node, and that the pruned model survives its file format.
 */
#include "check.h"
#include "error.h"
#include "model.h"
#include "modelfile.h"
#include "prune.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

/* Zeroes node outputs' removed channels (see above). */
typedef struct {
    const cnd_prune_plan_t *p;
    const cnd_model_t *m;
} zero_ctx;

static void zero_hook(void *ctx, int i, float *out, int B, int train)
{
    (void)train;
    zero_ctx *z = ctx;
    const cnd_layer_t *l = &z->m->layers[i];
    int C = l->out.c;
    size_t HW = (size_t)l->out.h * l->out.w;
    uint8_t keep[4096];
    cnd_prune_node_keep(z->p, z->m, i, keep);
    for (int c = 0; c < C; c++) {
        if (keep[c]) continue;
        for (int b = 0; b < B; b++) {
            size_t off = (l->out_cbhw ? (size_t)c * B + b : (size_t)b * C + c) * HW;
            memset(out + off, 0, HW * sizeof(float));
        }
    }
}

/* A model of `spec` with random weights and batchnorm statistics (so nothing is trivially 0). */
static cnd_model_t *rand_model(const char *spec, cnd_shape_t in, uint64_t seed)
{
    cnd_model_t *m = NULL;
    if (cnd_model_new(&m, spec, in, seed)) {
        fprintf(stderr, "spec %s: %s\n", spec, cnd_err_detail());
        return NULL;
    }
    cnd_rng_t rng;
    cnd_rng_seed(&rng, seed + 1);
    for (size_t k = 0; k < m->num_params; k++) m->params[k] += 0.2f * (float)cnd_rng_normal(&rng);
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_BATCHNORM) continue;
        float *st = m->state + l->state_off;
        for (int c = 0; c < l->in.c; c++) {
            st[c] = 0.3f * (float)cnd_rng_normal(&rng);
            st[l->in.c + c] = 0.5f + cnd_rng_float(&rng);
        }
    }
    return m;
}

/* Largest |pruned - original with removed channels zeroed| / (1 + |original|) over B random
 * inputs: the same sums, only the order of float additions may differ (sgemm blocking). */
static double max_diff(const cnd_model_t *m0, cnd_model_t *pm, const cnd_prune_plan_t *p, int B)
{
    cnd_model_t *m = NULL;
    if (cnd_model_clone(&m, m0)) return 1e30;
    size_t D = cnd_shape_size(m->in), K = (size_t)m->n_classes;
    float *x = malloc((size_t)B * D * sizeof(float)), *ref = malloc((size_t)B * K * sizeof(float));
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 99);
    for (size_t k = 0; k < (size_t)B * D; k++) x[k] = (float)cnd_rng_normal(&rng);
    zero_ctx z = {p, m};
    cnd_model_hooks_t h = {.ctx = &z, .act_forward = zero_hook};
    m->hooks = &h;
    const float *lg;
    double worst = 1e30;
    if (cnd_model_forward(m, x, B, 0, &lg)) goto done;
    memcpy(ref, lg, (size_t)B * K * sizeof(float));
    if (cnd_model_forward(pm, x, B, 0, &lg)) goto done;
    worst = 0;
    for (size_t k = 0; k < (size_t)B * K; k++) {
        double d = fabs((double)lg[k] - ref[k]) / (1.0 + fabs((double)ref[k]));
        if (d > worst) worst = d;
    }
done:
    free(x);
    free(ref);
    cnd_model_destroy(&m);
    return worst;
}

static size_t count_pruned(const cnd_prune_plan_t *p, const cnd_model_t *m)
{
    size_t n = 0;
    uint8_t keep[4096];
    for (int i = 0; i < m->n_layers; i++) {
        cnd_prune_node_keep(p, m, i, keep);
        for (int c = 0; c < m->layers[i].out.c; c++) n += !keep[c];
    }
    return n;
}

static void test_chain(void)
{
    const char *spec = "conv2d(8,3,pad=1) batchnorm relu maxpool(2) conv2d(6,3,pad=1) relu "
                       "flatten dense(12) relu dense(10)";
    cnd_shape_t in = {1, 8, 8};
    cnd_model_t *m = rand_model(spec, in, 1), *pm = NULL;
    cnd_prune_plan_t *p = NULL;
    CHECK(m);
    if (!m) return;
    CHECK(cnd_prune_analyze(&p, m) == 0);
    CHECK(cnd_prune_score(p, m, CND_PRUNE_L1, NULL, 16) == 0);
    cnd_prune_select(p, 0.5);
    CHECK(cnd_prune_apply(&pm, p, m) == 0);
    if (!pm) goto done;
    CHECK(strcmp(pm->spec, "conv2d(4,3,pad=1) batchnorm relu maxpool(2) conv2d(3,3,pad=1) relu "
                           "flatten dense(6) relu dense(10)") == 0);
    /* 4*9+4 | 2*4 | 3*4*9+3 | 6*(3*4*4)+6 | 10*6+10 */
    CHECK_EQ_INT(pm->num_params, 40 + 8 + 111 + 294 + 70);
    CHECK_EQ_INT(pm->num_state, 8);
    CHECK_EQ_INT(cnd_model_macs(pm), 4 * 9 * 64 + 3 * 4 * 9 * 16 + 6 * 48 + 10 * 6);
    CHECK(cnd_model_macs(pm) < cnd_model_macs(m) / 2);
    CHECK(count_pruned(p, m) > 0);
    double d = max_diff(m, pm, p, 5);
    fprintf(stderr, "chain: max relative |pruned - zeroed| = %.3g\n", d);
    CHECK(d <= 1e-6);
    /* L2 and a ratio of 0 keep everything, bit for bit */
    CHECK(cnd_prune_score(p, m, CND_PRUNE_L2, NULL, 16) == 0);
    cnd_prune_select(p, 0.0);
    cnd_model_destroy(&pm);
    CHECK(cnd_prune_apply(&pm, p, m) == 0);
    CHECK(pm && pm->num_params == m->num_params && !strcmp(pm->spec, m->spec));
    CHECK(pm && !memcmp(pm->params, m->params, m->num_params * sizeof(float)));
    CHECK_EQ_INT(count_pruned(p, m), 0);
done:
    cnd_model_destroy(&pm);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
}

/* Residual add, depthwise conv2d, concat. */
static void test_graph(void)
{
    const char *spec = "stem=conv2d(8,3,pad=1) batchnorm relu conv2d(8,3,pad=1,groups=8) "
                       "batchnorm conv2d(8,1) add(@stem) r=relu a=conv2d(4,1) @r "
                       "conv2d(6,3,pad=1) concat(@a) relu gap dense(10)";
    cnd_shape_t in = {2, 6, 6};
    cnd_model_t *m = rand_model(spec, in, 3), *pm = NULL;
    cnd_prune_plan_t *p = NULL;
    CHECK(m);
    if (!m) return;
    CHECK(cnd_prune_analyze(&p, m) == 0);
    if (!p) goto done;
    /* the stem and the 1x1 conv before the add are one group */
    int s_stem = p->out[0].seg[0].space, s_pw = p->out[5].seg[0].space;
    CHECK(s_stem != s_pw && cnd_prune_group(p, s_stem) == cnd_prune_group(p, s_pw));
    CHECK(p->out[3].seg[0].space == s_stem); /* depthwise: the same channels */
    CHECK_EQ_INT(p->out[10].n_seg, 2);       /* concat: conv2d(6) then a's 4 */
    CHECK(cnd_prune_score(p, m, CND_PRUNE_L1, NULL, 16) == 0);
    cnd_prune_select(p, 0.5);
    CHECK(cnd_prune_apply(&pm, p, m) == 0);
    if (!pm) goto done;
    fprintf(stderr, "graph pruned: %s\n", pm->spec);
    CHECK(strstr(pm->spec, "stem=conv2d(4,3,pad=1) batchnorm relu conv2d(4,3,pad=1,groups=4) "
                           "batchnorm conv2d(4,1) add(@stem) r=relu a=conv2d(2,1) @r "
                           "conv2d(3,3,pad=1) concat(@a)") == pm->spec);
    CHECK_EQ_INT(pm->layers[10].out.c, 5);
    double d = max_diff(m, pm, p, 4);
    fprintf(stderr, "graph: max relative |pruned - zeroed| = %.3g\n", d);
    CHECK(d <= 1e-6);
    /* the pruned model goes through its file format unchanged */
    uint8_t *buf = NULL;
    size_t len = 0;
    cnd_model_t *back = NULL;
    CHECK(cnd_model_serialize(pm, &buf, &len) == 0);
    CHECK(cnd_model_deserialize(&back, buf, len, "pruned") == 0);
    CHECK(back && back->num_params == pm->num_params &&
          !memcmp(back->params, pm->params, pm->num_params * sizeof(float)));
    CHECK(len < cnd_prune_model_bytes(m));
    free(buf);
    cnd_model_destroy(&back);
done:
    cnd_model_destroy(&pm);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
}

/* Which channels go: a filter of zeros first (L1, L2 and Taylor all score it 0). */
static void test_scores(void)
{
    const char *spec = "conv2d(8,3,pad=1) relu conv2d(4,3,stride=2,pad=1) relu flatten dense(10)";
    cnd_shape_t in = {1, 6, 6};
    cnd_model_t *m = rand_model(spec, in, 5);
    CHECK(m);
    if (!m) return;
    memset(m->params + 3 * 9, 0, 9 * sizeof(float)); /* filter 3 of the first conv */
    m->params[m->layers[0].n_weights + 3] = 0.0f;
    cnd_dataset_t cal = {.n = 32, .shape = in, .n_classes = 10};
    cal.x = malloc(32 * 36 * sizeof(float));
    cal.y = malloc(32);
    snprintf(cal.name, sizeof cal.name, "random");
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 11);
    for (size_t k = 0; k < 32 * 36; k++) cal.x[k] = (float)cnd_rng_normal(&rng);
    for (int k = 0; k < 32; k++) cal.y[k] = (uint8_t)(k % 10);
    cnd_prune_score_t kinds[3] = {CND_PRUNE_L1, CND_PRUNE_L2, CND_PRUNE_TAYLOR};
    for (int t = 0; t < 3; t++) {
        cnd_prune_plan_t *p = NULL;
        CHECK(cnd_prune_analyze(&p, m) == 0);
        if (!p) continue;
        CHECK(cnd_prune_score(p, m, kinds[t], &cal, 8) == 0);
        const cnd_prune_space_t *r = &p->sp[cnd_prune_group(p, p->out[0].seg[0].space)];
        CHECK(r->score[3] == 0.0);
        for (int c = 0; c < 8; c++) CHECK(c == 3 || r->score[c] > 0.0);
        cnd_prune_select(p, 1.0 / 8);
        CHECK_EQ_INT(r->n_keep, 7);
        CHECK(!r->keep[3]);
        cnd_model_t *pm = NULL;
        CHECK(cnd_prune_apply(&pm, p, m) == 0);
        CHECK(max_diff(m, pm, p, 3) <= 1e-6);
        cnd_model_destroy(&pm);
        cnd_prune_destroy(&p);
    }
    /* Taylor without data is refused */
    cnd_prune_plan_t *p = NULL;
    CHECK(cnd_prune_analyze(&p, m) == 0);
    CHECK(cnd_prune_score(p, m, CND_PRUNE_TAYLOR, NULL, 8) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "calibration data"));
    cnd_prune_destroy(&p);
    free(cal.x);
    free(cal.y);
    cnd_model_destroy(&m);
}

static void test_targets(void)
{
    const char *spec = "conv2d(16,3,pad=1) relu maxpool(2) conv2d(32,3,pad=1) relu maxpool(2) "
                       "flatten dense(32) relu dense(10)";
    cnd_shape_t in = {1, 12, 12};
    cnd_model_t *m = rand_model(spec, in, 7), *pm = NULL;
    cnd_prune_plan_t *p = NULL;
    CHECK(m && cnd_prune_analyze(&p, m) == 0);
    if (!p) goto done;
    CHECK(cnd_prune_score(p, m, CND_PRUNE_L1, NULL, 8) == 0);
    uint64_t macs = cnd_model_macs(m), target = macs / 4;
    double ratio = 0;
    CHECK(cnd_prune_select_target(p, m, target, 0, &ratio) == 0);
    CHECK(cnd_prune_apply(&pm, p, m) == 0);
    CHECK(pm && cnd_model_macs(pm) <= target);
    CHECK(ratio > 0.3 && ratio < 0.7);
    /* a little less pruning misses the target: the ratio is the smallest that meets it */
    cnd_model_t *pm2 = NULL;
    cnd_prune_select(p, ratio - 2e-4);
    CHECK(cnd_prune_apply(&pm2, p, m) == 0);
    CHECK(pm2 && cnd_model_macs(pm2) > target);
    cnd_model_destroy(&pm2);
    size_t bytes = cnd_prune_model_bytes(m);
    cnd_model_destroy(&pm);
    CHECK(cnd_prune_select_target(p, m, bytes / 3, 1, &ratio) == 0);
    CHECK(cnd_prune_apply(&pm, p, m) == 0);
    CHECK(pm && cnd_prune_model_bytes(pm) <= bytes / 3);
    /* unreachable: one channel per layer still costs more */
    CHECK(cnd_prune_select_target(p, m, 10, 0, &ratio) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "cannot prune to 10 MACs"));
done:
    cnd_model_destroy(&pm);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
}

/* Grouped (not depthwise) conv2d: its input and output are left whole. And the refusals. */
static void test_whole_and_refused(void)
{
    cnd_shape_t in = {1, 6, 6};
    cnd_model_t *m = rand_model("conv2d(8,3,pad=1) relu conv2d(8,3,pad=1,groups=2) relu "
                                "conv2d(6,1) relu gap dense(10)",
                                in, 9),
                *pm = NULL;
    cnd_prune_plan_t *p = NULL;
    CHECK(m && cnd_prune_analyze(&p, m) == 0);
    if (p) {
        CHECK(cnd_prune_score(p, m, CND_PRUNE_L1, NULL, 8) == 0);
        cnd_prune_select(p, 0.5);
        CHECK(cnd_prune_apply(&pm, p, m) == 0);
        CHECK(pm && strstr(pm->spec, "conv2d(8,3,pad=1) relu conv2d(8,3,pad=1,groups=2) relu "
                                     "conv2d(3,1)") == pm->spec);
        CHECK(max_diff(m, pm, p, 3) <= 1e-6);
    }
    cnd_model_destroy(&pm);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
    /* an add of a concat and a plain conv: the channels cannot be paired */
    m = rand_model("x=conv2d(4,1) @input conv2d(4,1) concat(@x) c=relu @input conv2d(8,1) "
                   "add(@c) gap dense(10)",
                   in, 10);
    CHECK(m);
    if (m) {
        CHECK(cnd_prune_analyze(&p, m) == CND_EINVAL);
        fprintf(stderr, "refused: %s\n", cnd_err_detail());
        CHECK(strstr(cnd_err_detail(), "layer 6 (add) cannot be pruned"));
        CHECK(p == NULL);
    }
    cnd_model_destroy(&m);
    /* an add of two concats split the same way is fine */
    m = rand_model("x=conv2d(4,1) @input conv2d(4,1) c=concat(@x) @input y=conv2d(4,1) @input "
                   "conv2d(4,1) concat(@y) add(@c) gap dense(10)",
                   in, 12);
    CHECK(m && cnd_prune_analyze(&p, m) == 0);
    if (p) {
        CHECK(cnd_prune_score(p, m, CND_PRUNE_L2, NULL, 8) == 0);
        cnd_prune_select(p, 0.5);
        CHECK(cnd_prune_apply(&pm, p, m) == 0);
        CHECK(pm && pm->layers[6].out.c == 4);
        CHECK(pm && max_diff(m, pm, p, 3) <= 1e-6);
    }
    cnd_model_destroy(&pm);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
}

int main(void)
{
    test_chain();
    test_graph();
    test_scores();
    test_targets();
    test_whole_and_refused();
    return check_result("test_prune");
}
