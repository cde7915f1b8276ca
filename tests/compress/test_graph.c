/*
 * test_graph.c: the layers added for edge-grade students and graph models.
 *
 * Layers: grouped and depthwise conv2d, relu6 and hardswish, against central finite
 * differences of their own forward pass (as test_layers.c does for the others), the grouped
 * convolution also against a naive direct convolution, with one and two threads (the result
 * must not depend on the thread count). Models: the spec's graph notation and blocks, their
 * canonical form, refusals, whole-graph gradients (a node read twice, add and concat, layouts
 * that differ between the two inputs of a merge), and model files of both versions.
 */
#include "check.h"
#include "digest.h"
#include "error.h"
#include "layer.h"
#include "loss.h"
#include "model.h"
#include "modelfile.h"
#include "pool.h"
#include "quant.h"
#include "rng.h"
#include "spec.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    cnd_layer_t l;
    const cnd_layer_ops_t *ops;
    float *w, *state, *work;
    int B;
} harness;

static int h_init(harness *h, cnd_layer_t proto, cnd_shape_t in, int B, cnd_rng_t *rng)
{
    memset(h, 0, sizeof *h);
    h->l = proto;
    h->l.in = in;
    h->ops = cnd_layer_ops(h->l.type);
    if (h->ops->shape(&h->l)) return -1;
    h->B = B;
    h->w = calloc(h->l.n_params + 1, sizeof(float));
    h->state = calloc(h->l.n_state + 1, sizeof(float));
    h->ops->init(&h->l, h->w, h->state, rng);
    for (size_t i = 0; i < h->l.n_params; i++) h->w[i] = (float)cnd_rng_normal(rng) * 0.5f;
    cnd_layer_mem_t mem = h->ops->mem(&h->l, B);
    h->work = calloc(mem.work + 1, sizeof(float));
    return 0;
}

static void h_free(harness *h)
{
    free(h->w);
    free(h->state);
    free(h->work);
}

static double h_loss(harness *h, const float *x, const float *R, float *out)
{
    h->ops->forward(&h->l, out, x, h->w, h->state, h->work, h->B, 1);
    double s = 0;
    size_t n = (size_t)h->B * cnd_shape_size(h->l.out);
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

/* din and dw of one layer against central differences of L = sum(out * R); x scaled by
 * `scale` (relu6 and hardswish need inputs that reach their upper kinks). */
static void grad_check(const char *what, cnd_layer_t proto, cnd_shape_t in, int B, float scale)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 7);
    harness h;
    if (h_init(&h, proto, in, B, &rng)) {
        fprintf(stderr, "%s: shape failed: %s\n", what, cnd_err_detail());
        CHECK(!"layer shape failed");
        return;
    }
    size_t nin = (size_t)B * cnd_shape_size(in), nout = (size_t)B * cnd_shape_size(h.l.out);
    float *x = malloc(nin * sizeof(float)), *R = malloc(nout * sizeof(float));
    float *out = malloc(nout * sizeof(float)), *din = malloc(nin * sizeof(float));
    float *dw = calloc(h.l.n_params + 1, sizeof(float));
    for (size_t i = 0; i < nin; i++) {
        float v = (float)cnd_rng_normal(&rng) * scale;
        /* away from the kinks at 0, +-3 and 6 */
        for (int k = 0; k < 4; k++) {
            float kink = (float[]){0.0f, 3.0f, -3.0f, 6.0f}[k];
            if (fabsf(v - kink) < 0.05f) v = kink + (v >= kink ? 0.05f : -0.05f);
        }
        x[i] = v;
    }
    for (size_t i = 0; i < nout; i++) R[i] = (float)cnd_rng_normal(&rng);
    h_loss(&h, x, R, out);
    h.ops->backward(&h.l, din, dw, R, x, out, h.w, h.work, B);
    const float eps = 2e-3f;
    int bad = 0;
    double max_err = 0;
    for (size_t i = 0; i < nin; i += 1 + nin / 97) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = h_loss(&h, x, R, out);
        x[i] = keep - eps;
        double lm = h_loss(&h, x, R, out);
        x[i] = keep;
        double num = (lp - lm) / (2 * eps), err = fabs(num - din[i]) / (1.0 + fabs(num));
        if (err > max_err) max_err = err;
        bad += err > 2e-2;
    }
    for (size_t i = 0; i < h.l.n_params; i += 1 + h.l.n_params / 97) {
        float keep = h.w[i];
        h.w[i] = keep + eps;
        double lp = h_loss(&h, x, R, out);
        h.w[i] = keep - eps;
        double lm = h_loss(&h, x, R, out);
        h.w[i] = keep;
        double num = (lp - lm) / (2 * eps), err = fabs(num - dw[i]) / (1.0 + fabs(num));
        if (err > max_err) max_err = err;
        bad += err > 2e-2;
    }
    if (bad) fprintf(stderr, "%s: %d gradient mismatches, max rel err %g\n", what, bad, max_err);
    CHECK_EQ_INT(bad, 0);
    if (h.l.n_params) { /* backward accumulates into dw */
        float first = dw[0];
        h_loss(&h, x, R, out);
        h.ops->backward(&h.l, din, dw, R, x, out, h.w, h.work, B);
        CHECK_NEAR(dw[0], 2 * first, 1e-4 * (1 + fabs(first)));
    }
    free(x);
    free(R);
    free(out);
    free(din);
    free(dw);
    h_free(&h);
}

static cnd_layer_t gconv(int oc, int k, int s, int p, int g)
{
    cnd_layer_t l;
    memset(&l, 0, sizeof l);
    l.type = CND_L_GCONV;
    l.p.conv.oc = oc;
    l.p.conv.k = k;
    l.p.conv.stride = s;
    l.p.conv.pad = p;
    l.p.conv.groups = g;
    return l;
}

static void test_layer_gradients(void)
{
    for (int T = 1; T <= 2; T++) {
        CHECK(cnd_pool_set_threads(T) == 0);
        grad_check("depthwise 3x3 pad 1", gconv(4, 3, 1, 1, 4), (cnd_shape_t){4, 6, 5}, 2, 1);
        grad_check("depthwise 3x3 stride 2", gconv(3, 3, 2, 1, 3), (cnd_shape_t){3, 7, 7}, 2, 1);
        grad_check("depthwise multiplier 2", gconv(6, 3, 1, 0, 3), (cnd_shape_t){3, 5, 5}, 3, 1);
        grad_check("grouped 4->6 in 2 groups", gconv(6, 3, 1, 1, 2), (cnd_shape_t){4, 5, 4}, 2, 1);
        grad_check("grouped 5x5 stride 2", gconv(4, 5, 2, 2, 2), (cnd_shape_t){2, 9, 8}, 3, 1);
        cnd_layer_t l = gconv(4, 3, 1, 1, 4);
        l.in_cbhw = 1;
        grad_check("depthwise CBHW input", l, (cnd_shape_t){4, 6, 5}, 2, 1);
        l.fuse_relu = 1;
        grad_check("depthwise fused relu", l, (cnd_shape_t){4, 6, 5}, 2, 1);
    }
    CHECK(cnd_pool_set_threads(1) == 0);
    /* dwconv in a spec: groups and channels resolve to the input's */
    cnd_layer_t l = gconv(0, 3, 1, 1, 0);
    CHECK(cnd_layer_ops(CND_L_GCONV)->shape((l.in = (cnd_shape_t){5, 4, 4}, &l)) == 0);
    CHECK(l.p.conv.groups == 5 && l.p.conv.oc == 5 && l.n_weights == 45);
    l = gconv(6, 3, 1, 1, 4);
    l.in = (cnd_shape_t){4, 4, 4};
    CHECK(cnd_layer_ops(CND_L_GCONV)->shape(&l) == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "must divide") != NULL);
    memset(&l, 0, sizeof l);
    l.type = CND_L_RELU6;
    grad_check("relu6", l, (cnd_shape_t){3, 4, 4}, 2, 4.0f);
    l.type = CND_L_HARDSWISH;
    grad_check("hardswish", l, (cnd_shape_t){3, 4, 4}, 2, 3.0f);
}

/* The grouped convolution against a naive direct one, both layouts, one and two threads. */
static void test_gconv_reference(void)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 3);
    static const int cfg[][8] = {/* C H W OC K S P G */
                                 {4, 7, 6, 4, 3, 1, 1, 4},
                                 {6, 9, 9, 6, 3, 2, 1, 6},
                                 {4, 5, 5, 8, 3, 1, 0, 2},
                                 {3, 4, 4, 6, 5, 1, 2, 3},
                                 {8, 6, 6, 8, 1, 2, 0, 8}};
    for (size_t t = 0; t < sizeof cfg / sizeof *cfg; t++)
        for (int T = 1; T <= 2; T++)
            for (int cb = 0; cb <= 1; cb++) {
                CHECK(cnd_pool_set_threads(T) == 0);
                int C = cfg[t][0], H = cfg[t][1], W = cfg[t][2], OC = cfg[t][3], K = cfg[t][4];
                int S = cfg[t][5], P = cfg[t][6], G = cfg[t][7], B = 3;
                cnd_layer_t proto = gconv(OC, K, S, P, G);
                proto.in_cbhw = cb;
                harness h;
                CHECK(h_init(&h, proto, (cnd_shape_t){C, H, W}, B, &rng) == 0);
                int OH = h.l.out.h, OW = h.l.out.w, CG = C / G, OG = OC / G;
                size_t nin = (size_t)B * C * H * W, nout = (size_t)B * OC * OH * OW;
                float *x = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float));
                for (size_t i = 0; i < nin; i++) x[i] = (float)cnd_rng_normal(&rng);
                h.ops->forward(&h.l, out, x, h.w, h.state, h.work, B, 1);
                double max_err = 0;
                for (int b = 0; b < B; b++)
                    for (int oc = 0; oc < OC; oc++)
                        for (int oh = 0; oh < OH; oh++)
                            for (int ow = 0; ow < OW; ow++) {
                                double acc = h.w[h.l.n_weights + oc];
                                for (int ci = 0; ci < CG; ci++)
                                    for (int i = 0; i < K; i++)
                                        for (int j = 0; j < K; j++) {
                                            int ih = oh * S - P + i, iw = ow * S - P + j;
                                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                            int c = oc / OG * CG + ci;
                                            size_t pl = cb ? (size_t)c * B + b : (size_t)b * C + c;
                                            acc += (double)h.w[((oc * CG + ci) * K + i) * K + j] *
                                                   x[(pl * H + ih) * W + iw];
                                        }
                                double got = out[(((size_t)oc * B + b) * OH + oh) * OW + ow];
                                if (fabs(got - acc) > max_err) max_err = fabs(got - acc);
                            }
                if (max_err >= 1e-4) fprintf(stderr, "gconv case %zu: err %g\n", t, max_err);
                CHECK(max_err < 1e-4);
                free(x);
                free(out);
                h_free(&h);
            }
    CHECK(cnd_pool_set_threads(1) == 0);
}

/* |got - want| within 1e-5 of the sum of the magnitudes of want's terms (exact when it is 0). */
static int close_rel(double got, double want, double mag)
{
    return fabs(got - want) <= 1e-5 * mag;
}

/* One random depthwise case: the layer's forward and backward (the phase-plane fast path of
 * layer_gconv.c) against a naive direct convolution in double. Returns the failures. */
static int depthwise_case(cnd_rng_t *rng, int T)
{
    int C = 2 + (int)cnd_rng_below(rng, 5), K = 1 + 2 * (int)cnd_rng_below(rng, 4);
    int S = 1 + (int)cnd_rng_below(rng, 3), P = (int)cnd_rng_below(rng, (uint64_t)K);
    int H = 1 + (int)cnd_rng_below(rng, 17), W = 1 + (int)cnd_rng_below(rng, 17);
    int B = 1 + (int)cnd_rng_below(rng, 4);
    if (H + 2 * P < K) H = K;
    if (W + 2 * P < K) W = K + 2;
    cnd_layer_t proto = gconv(C, K, S, P, C);
    proto.in_cbhw = (int)cnd_rng_below(rng, 2);
    proto.fuse_relu = (int)cnd_rng_below(rng, 2);
    CHECK(cnd_pool_set_threads(T) == 0);
    harness h;
    CHECK(h_init(&h, proto, (cnd_shape_t){C, H, W}, B, rng) == 0);
    int OH = h.l.out.h, OW = h.l.out.w, bad = 0;
    size_t nin = (size_t)B * C * H * W, nout = (size_t)B * C * OH * OW;
    float *x = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float));
    float *dout = malloc(nout * sizeof(float)), *din = malloc(nin * sizeof(float));
    float *dw = calloc(h.l.n_params, sizeof(float));
    double *rdin = calloc(nin, sizeof(double)), *mdin = calloc(nin, sizeof(double));
    double *rdw = calloc(h.l.n_params, sizeof(double)), *mdw = calloc(h.l.n_params, sizeof(double));
    for (size_t i = 0; i < nin; i++) x[i] = (float)cnd_rng_normal(rng);
    for (size_t i = 0; i < nout; i++) dout[i] = (float)cnd_rng_normal(rng);
    for (size_t i = 0; i < nin; i++) din[i] = 1e30f; /* din is written, not accumulated */
    h.ops->forward(&h.l, out, x, h.w, h.state, h.work, B, 1);
    h.ops->backward(&h.l, din, dw, dout, x, out, h.w, h.work, B);
    size_t KK = (size_t)K * K;
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            size_t pl = (proto.in_cbhw ? (size_t)c * B + b : (size_t)b * C + c) * H * W;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    size_t o = (((size_t)c * B + b) * OH + oh) * OW + ow;
                    double acc = h.w[h.l.n_weights + c], mag = fabs(acc);
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) {
                            int ih = oh * S - P + i, iw = ow * S - P + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            double t = (double)h.w[c * KK + i * K + j] * x[pl + ih * W + iw];
                            acc += t;
                            mag += fabs(t);
                        }
                    if (proto.fuse_relu && acc < 0) acc = 0;
                    bad += !close_rel(out[o], acc, mag);
                    /* backward through the layer's own output (the fused relu's mask) */
                    double g = proto.fuse_relu && !(out[o] > 0.0f) ? 0.0 : dout[o];
                    rdw[h.l.n_weights + c] += g;
                    mdw[h.l.n_weights + c] += fabs(g);
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) {
                            int ih = oh * S - P + i, iw = ow * S - P + j;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            size_t xi = pl + ih * W + iw, wi = c * KK + i * K + j;
                            rdw[wi] += g * x[xi];
                            mdw[wi] += fabs(g * x[xi]);
                            rdin[xi] += g * h.w[wi];
                            mdin[xi] += fabs(g * h.w[wi]);
                        }
                }
        }
    for (size_t i = 0; i < nin; i++) bad += !close_rel(din[i], rdin[i], mdin[i]);
    for (size_t i = 0; i < h.l.n_params; i++) bad += !close_rel(dw[i], rdw[i], mdw[i]);
    if (bad)
        fprintf(stderr, "depthwise C %d %dx%d K %d S %d P %d B %d relu %d cbhw %d T %d: %d off\n",
                C, H, W, K, S, P, B, proto.fuse_relu, proto.in_cbhw, T, bad);
    free(x);
    free(out);
    free(dout);
    free(din);
    free(dw);
    free(rdin);
    free(mdin);
    free(rdw);
    free(mdw);
    h_free(&h);
    return bad;
}

/* The depthwise fast path against the naive convolution on random shapes: odd sizes, strides 1
 * to 3, padding up to K - 1, kernels 1 to 7, a fused relu, both layouts, one and two threads. */
static void test_depthwise_fast(void)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 16);
    int bad = 0;
    for (int t = 0; t < 60; t++) bad += depthwise_case(&rng, 1 + t % 2);
    CHECK(bad == 0);
    CHECK(cnd_pool_set_threads(1) == 0);
}

/* Finite differences of the whole model's loss against its backward pass, over a spread of
 * parameters. Specs here are smooth (no relu, no max pool) unless max_bad allows kinks. */
static void model_gradient(const char *spec, cnd_shape_t in, int max_bad)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_new(&m, spec, in, 5);
    if (rc) fprintf(stderr, "%s: %s\n", spec, cnd_err_detail());
    CHECK(rc == 0);
    if (!m) return;
    int B = 3, K = m->n_classes;
    size_t nx = (size_t)B * cnd_shape_size(in);
    float *x = malloc(nx * sizeof(float)), *dl = malloc((size_t)B * K * sizeof(float));
    uint8_t y[3] = {0, 1, 2};
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 9);
    for (size_t i = 0; i < nx; i++) x[i] = (float)cnd_rng_normal(&rng);
    const float *lg;
    CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
    cnd_loss_xent(dl, lg, y, B, K, NULL);
    cnd_model_zero_grad(m);
    cnd_model_backward(m, dl);
    int bad = 0, n = 0;
    for (size_t i = 0; i < m->num_params; i += 1 + m->num_params / 150) {
        float keep = m->params[i], eps = 2e-3f;
        m->params[i] = keep + eps;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        double lp = cnd_loss_xent(NULL, lg, y, B, K, NULL);
        m->params[i] = keep - eps;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        double lm = cnd_loss_xent(NULL, lg, y, B, K, NULL);
        m->params[i] = keep;
        double num = (lp - lm) / (2 * eps);
        n++;
        if (fabs(num - m->grads[i]) > 2e-2 * (1e-2 + fabs(num))) {
            bad++;
            if (!max_bad)
                fprintf(stderr, "%s: grad %zu analytic %g numeric %g\n", spec, i, m->grads[i], num);
        }
    }
    if (max_bad)
        printf("%s: %d of %d differences off (kinks; at most %d)\n", spec, bad, n, max_bad);
    CHECK(n > 20);
    CHECK(bad <= max_bad);
    free(x);
    free(dl);
    cnd_model_destroy(&m);
}

static void test_graph_gradients(void)
{
    cnd_shape_t rgb = {3, 8, 8}, gray = {1, 8, 8};
    /* A residual around two convolutions: node s is read twice (gradients add up). */
    model_gradient("s=conv2d(4,3,pad=1) conv2d(4,3,pad=1) conv2d(4,1) add(@s) gap dense(3)", rgb,
                   0);
    /* concat of two branches of one node, the second reached with @ */
    model_gradient("a=conv2d(4,3,pad=1) conv2d(3,1) b=tanh @a dwconv(3,pad=1) concat(@b) "
                   "gap dense(3)",
                   rgb, 0);
    /* an inverted residual written out with tanh for relu6: smooth, so exact everywhere */
    model_gradient("s=conv2d(4,3,pad=1) conv2d(8,1) batchnorm tanh dwconv(3,pad=1) batchnorm tanh "
                   "conv2d(4,1) batchnorm add(@s) conv2d(6,3,stride=2,groups=2) gap dense(3)",
                   gray, 0);
    /* merges with the model input (NCHW, 3 channels) and a conv output (CBHW): layouts differ */
    model_gradient("conv2d(3,3,pad=1) add(@input) flatten dense(3)", rgb, 0);
    model_gradient("conv2d(2,3,pad=1) concat(@input) conv2d(2,1) flatten dense(3)", rgb, 0);
    model_gradient("@input x=dense(5) @input dense(5) add(@x) dense(3)", rgb, 0);
    /* The blocks: batchnorm normalises, so one first-layer weight moves every unit and a
     * difference of +-2e-3 steps over some relu6 kinks (test_layers.c sees the same with
     * relu); a wrong backward pass misses nearly everywhere. Exact: test_graph_torch.py. */
    model_gradient("conv2d(4,3,pad=1) mbconv(2,4,1) mbconv(3,6,2) gap dense(3)", gray, 30);
    model_gradient("conv2d(4,3,pad=1) resblock(4) resblock(6,2) gap dense(3)", gray, 30);
    /* a fused relu6 on a batchnorm of the model input: no input gradient, the mask still
     * applies to gamma and beta */
    model_gradient("batchnorm relu6 flatten dense(3)", rgb, 3);
    CHECK(cnd_pool_set_threads(2) == 0);
    model_gradient("conv2d(4,3,pad=1) mbconv(2,4,1) gap dense(3)", gray, 30);
    CHECK(cnd_pool_set_threads(1) == 0);
}

static void expect_error(const char *spec, cnd_shape_t in, const char *needle)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_new(&m, spec, in, 1);
    CHECK_EQ_INT(rc, CND_EINVAL);
    if (!strstr(cnd_err_detail(), needle))
        fprintf(stderr, "spec '%s': detail '%s' lacks '%s'\n", spec, cnd_err_detail(), needle);
    CHECK(strstr(cnd_err_detail(), needle) != NULL);
    cnd_model_destroy(&m);
}

static void test_spec(void)
{
    cnd_shape_t in = {1, 8, 8};
    cnd_model_t *m = NULL, *m2 = NULL;
    /* mbconv with stride 1 and equal channels adds its input; the canonical spec names it */
    CHECK(cnd_model_new(&m, "conv2d(4,3,pad=1) mbconv(2,4,1) gap dense(3)", in, 1) == 0);
    if (m) {
        CHECK_EQ_INT(m->n_layers, 12);
        CHECK(m->graph);
        CHECK(!strcmp(m->spec, "n0=conv2d(4,3,pad=1) conv2d(8,1) batchnorm relu6 "
                               "conv2d(8,3,pad=1,groups=8) batchnorm relu6 conv2d(4,1) "
                               "batchnorm add(@n0) gap dense(3)"));
        CHECK(m->layers[9].type == CND_L_ADD && m->layers[9].src[0] == 8 &&
              m->layers[9].src[1] == 0);
        /* relu6 after batchnorm is fused into it (and checked against PyTorch fused) */
        CHECK(m->layers[2].fuse_relu == 6 && m->layers[3].alias && m->layers[5].fuse_relu == 6);
        /* gradients held at once: node 0's (read by the add), the add's and its first input's */
        CHECK(cnd_model_reserve(m, 2) == 0);
        CHECK_EQ_INT(m->n_gpool, 3);
        char what[64];
        CHECK(cnd_model_is_graph(m, what, sizeof what) == 1);
        CHECK(strstr(what, "layer 4 (relu6)") != NULL);
        /* the canonical spec builds the same model */
        CHECK(cnd_model_new(&m2, m->spec, in, 1) == 0 ||
              (fprintf(stderr, "%s: %s\n", m->spec, cnd_err_detail()), 0));
        CHECK(m2 && !strcmp(m2->spec, m->spec) && m2->num_params == m->num_params);
        cnd_model_destroy(&m2);
    }
    cnd_model_destroy(&m);
    /* stride 2 or a channel change: no residual */
    CHECK(cnd_model_new(&m, "conv2d(4,3,pad=1) mbconv(1,8,2) gap dense(3)", in, 1) == 0);
    CHECK(m && m->n_layers == 8 && m->layers[5].type == CND_L_BATCHNORM && !m->graph);
    cnd_model_destroy(&m);
    /* resblock with a projection shortcut, and user names kept */
    CHECK(cnd_model_new(&m, "stem=conv2d(4,3,pad=1) resblock(8,2) gap dense(3)", in, 1) == 0);
    if (m) {
        CHECK(!strcmp(m->spec, "stem=conv2d(4,3,pad=1) conv2d(8,3,stride=2,pad=1) batchnorm relu "
                               "conv2d(8,3,pad=1) n5=batchnorm @stem conv2d(8,1,stride=2) "
                               "n7=batchnorm add(@n5,@n7) relu gap dense(3)") ||
              (fprintf(stderr, "spec: %s\n", m->spec), 0));
        CHECK(cnd_model_new(&m2, m->spec, in, 1) == 0);
        CHECK(m2 && !strcmp(m2->spec, m->spec));
        cnd_model_destroy(&m2);
    }
    cnd_model_destroy(&m);
    /* a plain chain is not a graph and its spec has no notation */
    CHECK(cnd_model_new(&m, "conv2d(4,3) relu flatten dense(3)", in, 1) == 0);
    CHECK(m && !m->graph && !cnd_model_is_graph(m, NULL, 0));
    cnd_model_destroy(&m);
    /* so is a chain with a relu6: the layer is what other parts do not know */
    CHECK(cnd_model_new(&m, "conv2d(4,3) relu6 flatten dense(3)", in, 1) == 0);
    CHECK(m && !m->graph && cnd_model_is_graph(m, NULL, 0));
    cnd_model_destroy(&m);
    /* specs may now be longer than the integer runtime's 64 layers: quantization says so */
    char longspec[1024] = "flatten";
    for (int i = 0; i < 35; i++) strcat(longspec, " dense(4) relu");
    strcat(longspec, " dense(3)");
    CHECK(cnd_model_new(&m, longspec, in, 1) == 0);
    if (m) {
        cnd_qplan_t plan;
        CHECK_EQ_INT(m->n_layers, 72);
        CHECK_EQ_INT(cnd_quant_plan(&plan, m), CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "runs at most 64") != NULL);
    }
    cnd_model_destroy(&m);
    expect_error("conv2d(4,3) add(@x) gap dense(3)", in, "no earlier node is named 'x'");
    expect_error("a=conv2d(4,3) a=relu gap dense(3)", in, "'a' is already taken");
    expect_error("input=conv2d(4,3) gap dense(3)", in, "'input' is already taken");
    expect_error("n3=conv2d(4,3) gap dense(3)", in, "reserved for node");
    expect_error("a=conv2d(4,3) conv2d(2,3) add(@a) gap dense(3)", in, "differ in shape");
    expect_error("a=conv2d(4,3) conv2d(2,3) @a gap dense(3)", in, "layer 2 (conv2d) is never read");
    expect_error("conv2d(4,3) add gap dense(3)", in, "add takes add(@NAME)");
    expect_error("conv2d(4,3) relu(@input) gap dense(3)", in, "only add and concat take @NAME");
    expect_error("conv2d(4,3) mbconv(2) gap dense(3)", in, "mbconv takes");
    expect_error("conv2d(4,3) mbconv(2,4,stride=9) gap dense(3)", in, "stride must be");
    expect_error("conv2d(6,3) conv2d(4,3,groups=4) gap dense(3)", in, "must divide");
    expect_error("@nowhere dense(3)", in, "no earlier node is named 'nowhere'");
    /* without an input shape the parser refuses blocks, and reads the rest */
    cnd_layer_t l[CND_SPEC_MAX_LAYERS];
    CHECK_EQ_INT(cnd_spec_parse("mbconv(2,4)", l, CND_SPEC_MAX_LAYERS), CND_EINVAL);
    CHECK_EQ_INT(
        cnd_spec_parse("a=dense(4) @input dense(4) concat(@a) dense(2)", l, CND_SPEC_MAX_LAYERS),
        4);
    CHECK(l[1].src[0] == -1 && l[2].n_src == 2 && l[2].src[0] == 1 && l[2].src[1] == 0);
}

/* Graph models in model files: version 2, round trip exact; plain models stay version 1. */
static void test_modelfile(void)
{
    cnd_shape_t in = {1, 8, 8};
    cnd_model_t *m = NULL, *r = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK(cnd_model_new(&m,
                        "conv2d(4,3,pad=1) mbconv(2,4,1) dwconv(3,stride=2) hardswish gap "
                        "dense(3)",
                        in, 4) == 0);
    if (!m) return;
    for (size_t i = 0; i < m->num_state; i++) m->state[i] = 1.0f + (float)i;
    CHECK(cnd_model_serialize(m, &data, &len) == 0);
    CHECK(data && data[4] == 2);
    CHECK(cnd_model_deserialize(&r, data, len, "graph") == 0 ||
          (fprintf(stderr, "%s\n", cnd_err_detail()), 0));
    if (r) {
        CHECK(!strcmp(r->spec, m->spec));
        CHECK(!memcmp(r->params, m->params, m->num_params * sizeof(float)));
        CHECK(!memcmp(r->state, m->state, m->num_state * sizeof(float)));
    }
    cnd_model_destroy(&r);
    /* the same bytes marked version 1 (digest fixed) are refused */
    data[4] = 1;
    cnd_sha256(data + len - 32, data, len - 32);
    CHECK_EQ_INT(cnd_model_deserialize(&r, data, len, "old"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "version-1 file holds a graph") != NULL);
    free(data);
    cnd_model_destroy(&m);
    CHECK(cnd_model_new(&m, "conv2d(4,3) relu flatten dense(3)", in, 4) == 0);
    CHECK(cnd_model_serialize(m, &data, &len) == 0);
    CHECK(data && data[4] == 1);
    CHECK(cnd_model_deserialize(&r, data, len, "plain") == 0);
    free(data);
    cnd_model_destroy(&r);
    cnd_model_destroy(&m);
}

int main(void)
{
    if (getenv("DBG_SPEC")) {
        model_gradient(getenv("DBG_SPEC"), (cnd_shape_t){1, 8, 8}, 0);
        return check_result("dbg");
    }
    test_layer_gradients();
    test_gconv_reference();
    test_depthwise_fast();
    test_spec();
    test_graph_gradients();
    test_modelfile();
    return check_result("test_graph");
}
