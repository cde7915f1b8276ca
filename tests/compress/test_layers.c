/*
 * test_layers.c: every layer's backward pass against central finite differences of its forward
 * pass, conv2d against a naive direct convolution, and the cross-entropy gradient.
 *
 * The scalar checked is L = sum(out * R) for a fixed random R, so dL/dout = R. Inputs are drawn
 * away from the kinks of relu and max pooling so finite differences are meaningful.
 */
#include "check.h"
#include "layer.h"
#include "loss.h"
#include "model.h"
#include "pool.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

#define SET_CONV(L, OC, K, S, P)                                                                   \
    ((L).p.conv.oc = (OC), (L).p.conv.k = (K), (L).p.conv.stride = (S), (L).p.conv.pad = (P))

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
    h->l.in = in; /* proto carries in_cbhw and fuse_relu */
    h->ops = cnd_layer_ops(h->l.type);
    if (h->ops->shape(&h->l)) return -1;
    h->B = B;
    h->w = calloc(h->l.n_params + 1, sizeof(float));
    h->state = calloc(h->l.n_state + 1, sizeof(float));
    h->ops->init(&h->l, h->w, h->state, rng);
    /* Random (not initial) parameters so biases and affine terms matter. */
    for (size_t i = 0; i < h->l.n_params; i++) h->w[i] = (float)cnd_rng_normal(rng) * 0.5f;
    cnd_layer_mem_t mem = h->ops->mem(&h->l, B);
    h->l.saved = calloc(mem.saved + 1, sizeof(float));
    h->l.saved2 = calloc(mem.saved2 + 1, sizeof(float));
    h->l.argmax = calloc(mem.argmax + 1, sizeof(int32_t));
    h->work = calloc(mem.work + 1, sizeof(float));
    return 0;
}

static void h_free(harness *h)
{
    free(h->w);
    free(h->state);
    free(h->work);
    free(h->l.saved);
    free(h->l.saved2);
    free(h->l.argmax);
}

static double h_loss(harness *h, const float *x, const float *R, float *out, int train)
{
    h->ops->forward(&h->l, out, x, h->w, h->state, h->work, h->B, train);
    double s = 0;
    size_t n = (size_t)h->B * cnd_shape_size(h->l.out);
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

/* Checks din and dw of one layer configuration. */
static void grad_check(const char *what, cnd_layer_t proto, cnd_shape_t in, int B, int train)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 7);
    harness h;
    if (h_init(&h, proto, in, B, &rng)) {
        CHECK(!"layer shape failed");
        return;
    }
    size_t nin = (size_t)B * cnd_shape_size(in), nout = (size_t)B * cnd_shape_size(h.l.out);
    float *x = malloc(nin * sizeof(float)), *R = malloc(nout * sizeof(float));
    float *out = malloc(nout * sizeof(float)), *din = malloc(nin * sizeof(float));
    float *dw = calloc(h.l.n_params + 1, sizeof(float));
    for (size_t i = 0; i < nin; i++) {
        float v = (float)cnd_rng_normal(&rng);
        x[i] = v + (v >= 0 ? 0.05f : -0.05f); /* keep away from relu's kink */
    }
    for (size_t i = 0; i < nout; i++) R[i] = (float)cnd_rng_normal(&rng);
    /* Saved state from a forward pass at the unperturbed point, then backward. */
    float *state0 = malloc((h.l.n_state + 1) * sizeof(float));
    memcpy(state0, h.state, (h.l.n_state + 1) * sizeof(float));
    h_loss(&h, x, R, out, train);
    h.ops->backward(&h.l, din, dw, R, x, out, h.w, h.work, B);
    const float eps = 2e-3f;
    double max_err = 0;
    int bad = 0;
    /* Input gradient: check a spread of coordinates. */
    for (size_t i = 0; i < nin; i += 1 + nin / 97) {
        float keep = x[i];
        memcpy(h.state, state0, (h.l.n_state + 1) * sizeof(float));
        x[i] = keep + eps;
        double lp = h_loss(&h, x, R, out, train);
        x[i] = keep - eps;
        double lm = h_loss(&h, x, R, out, train);
        x[i] = keep;
        double num = (lp - lm) / (2 * eps), err = fabs(num - din[i]) / (1.0 + fabs(num));
        if (err > max_err) max_err = err;
        if (err > 2e-2) bad++;
    }
    for (size_t i = 0; i < h.l.n_params; i += 1 + h.l.n_params / 97) {
        float keep = h.w[i];
        h.w[i] = keep + eps;
        double lp = h_loss(&h, x, R, out, train);
        h.w[i] = keep - eps;
        double lm = h_loss(&h, x, R, out, train);
        h.w[i] = keep;
        double num = (lp - lm) / (2 * eps), err = fabs(num - dw[i]) / (1.0 + fabs(num));
        if (err > max_err) max_err = err;
        if (err > 2e-2) bad++;
    }
    if (bad) fprintf(stderr, "%s: %d gradient mismatches, max rel err %g\n", what, bad, max_err);
    CHECK_EQ_INT(bad, 0);
    /* Backward accumulates into dw: a second call doubles it. */
    if (h.l.n_params) {
        float first = dw[0];
        h_loss(&h, x, R, out, train);
        h.ops->backward(&h.l, din, dw, R, x, out, h.w, h.work, B);
        CHECK_NEAR(dw[0], 2 * first, 1e-4 * (1 + fabs(first)));
    }
    free(x);
    free(R);
    free(out);
    free(din);
    free(dw);
    free(state0);
    h_free(&h);
}

static void test_gradients(void)
{
    cnd_layer_t l;
    memset(&l, 0, sizeof l);
    l.type = CND_L_DENSE;
    l.p.dense.out = 5;
    grad_check("dense", l, (cnd_shape_t){7, 1, 1}, 3, 1);
    grad_check("dense on 3-D input", l, (cnd_shape_t){2, 3, 3}, 2, 1);
    l.type = CND_L_CONV2D;
    SET_CONV(l, 4, 3, 1, 1);
    grad_check("conv2d pad 1", l, (cnd_shape_t){3, 6, 5}, 2, 1);
    SET_CONV(l, 3, 3, 2, 0);
    grad_check("conv2d stride 2", l, (cnd_shape_t){2, 7, 7}, 2, 1);
    SET_CONV(l, 2, 5, 2, 2);
    grad_check("conv2d k5 stride 2 pad 2", l, (cnd_shape_t){1, 9, 8}, 3, 1);
    /* Channel-major input and a fused relu. */
    SET_CONV(l, 4, 3, 1, 1);
    l.in_cbhw = 1;
    grad_check("conv2d CBHW input", l, (cnd_shape_t){3, 6, 5}, 2, 1);
    l.fuse_relu = 1;
    grad_check("conv2d fused relu", l, (cnd_shape_t){3, 6, 5}, 2, 1);
    memset(&l, 0, sizeof l);
    l.type = CND_L_DENSE;
    l.p.dense.out = 6;
    l.fuse_relu = 1;
    grad_check("dense fused relu", l, (cnd_shape_t){7, 1, 1}, 3, 1);
    /* Two threads split the weight gradient by output features and the input gradient by
     * batch rows (odd counts: uneven blocks), and the convolution by samples. */
    CHECK(cnd_pool_set_threads(2) == 0);
    l.p.dense.out = 5;
    grad_check("dense fused relu, 2 threads", l, (cnd_shape_t){7, 1, 1}, 3, 1);
    memset(&l, 0, sizeof l);
    l.type = CND_L_CONV2D;
    l.p.conv.oc = 4;
    l.p.conv.k = 3;
    l.p.conv.stride = 1;
    l.p.conv.pad = 1;
    l.fuse_relu = 1;
    grad_check("conv2d fused relu, 2 threads", l, (cnd_shape_t){3, 6, 5}, 3, 1);
    CHECK(cnd_pool_set_threads(1) == 0);
    memset(&l, 0, sizeof l);
    l.type = CND_L_RELU;
    grad_check("relu", l, (cnd_shape_t){3, 4, 4}, 2, 1);
    l.type = CND_L_TANH;
    grad_check("tanh", l, (cnd_shape_t){3, 4, 4}, 2, 1);
    l.type = CND_L_MAXPOOL;
    l.p.pool.k = 2;
    l.p.pool.stride = 2;
    grad_check("maxpool", l, (cnd_shape_t){2, 6, 6}, 2, 1);
    l.p.pool.k = 3;
    l.p.pool.stride = 2;
    grad_check("maxpool overlapping", l, (cnd_shape_t){2, 7, 7}, 2, 1);
    l.type = CND_L_AVGPOOL;
    l.p.pool.k = 2;
    l.p.pool.stride = 2;
    grad_check("avgpool", l, (cnd_shape_t){2, 6, 6}, 2, 1);
    l.type = CND_L_GAP;
    grad_check("gap", l, (cnd_shape_t){3, 4, 5}, 2, 1);
    l.type = CND_L_FLATTEN;
    grad_check("flatten", l, (cnd_shape_t){3, 2, 2}, 2, 1);
    l.type = CND_L_BATCHNORM;
    l.p.bn.eps = 1e-5f;
    l.p.bn.momentum = 0.1f;
    grad_check("batchnorm", l, (cnd_shape_t){3, 3, 3}, 4, 1);
    grad_check("batchnorm 1d", l, (cnd_shape_t){6, 1, 1}, 8, 1);
    l.in_cbhw = 1;
    grad_check("batchnorm CBHW", l, (cnd_shape_t){3, 3, 3}, 4, 1);
    memset(&l, 0, sizeof l);
    l.in_cbhw = 1;
    l.type = CND_L_GAP;
    grad_check("gap CBHW", l, (cnd_shape_t){3, 4, 5}, 2, 1);
    l.type = CND_L_FLATTEN;
    grad_check("flatten CBHW", l, (cnd_shape_t){3, 2, 2}, 2, 1);
}

/* Naive direct convolution as the reference for the im2col + sgemm path. */
static void test_conv_reference(void)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 11);
    int configs[][6] = {/* C, H, W, OC, K, stride, pad packed below */
                        {3, 8, 7, 5, 3, 1},
                        {2, 9, 9, 4, 3, 2},
                        {1, 28, 28, 8, 5, 1},
                        {1, 28, 28, 32, 3, 1},
                        {1, 7, 5, 3, 7, 1},
                        /* "same" convolutions whose padding reaches past the whole input, so
                         * some taps see only padding (the direct path's edge cases) */
                        {1, 1, 1, 3, 5, 1},
                        {1, 2, 2, 3, 5, 1},
                        {2, 1, 3, 2, 7, 1},
                        {3, 2, 1, 2, 5, 1},
                        {1, 1, 1, 2, 3, 1}};
    int pads[] = {1, 0, 2, 1, 3, 2, 2, 3, 2, 1};
    int relu[] = {0, 0, 0, 1, 0,
                  0, 1, 0, 0, 0}; /* single-channel same convs take the direct path */
    int cbhw[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0}; /* multi-channel CBHW input: direct path too */
    int batch[] = {3, 3, 3, 3, 3, 1, 1, 3, 2, 1};
    for (int t = 0; t < 10; t++) {
        int C = configs[t][0], H = configs[t][1], W = configs[t][2], OC = configs[t][3];
        int K = configs[t][4], S = configs[t][5], P = pads[t], B = batch[t];
        cnd_layer_t proto;
        memset(&proto, 0, sizeof proto);
        proto.type = CND_L_CONV2D;
        SET_CONV(proto, OC, K, S, P);
        proto.fuse_relu = relu[t];
        proto.in_cbhw = cbhw[t];
        harness h;
        CHECK(h_init(&h, proto, (cnd_shape_t){C, H, W}, B, &rng) == 0);
        int OH = h.l.out.h, OW = h.l.out.w;
        CHECK_EQ_INT(OH, (H + 2 * P - K) / S + 1);
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
                        for (int c = 0; c < C; c++)
                            for (int i = 0; i < K; i++)
                                for (int j = 0; j < K; j++) {
                                    int ih = oh * S - P + i, iw = ow * S - P + j;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    size_t plane = cbhw[t] ? (size_t)c * B + b : (size_t)b * C + c;
                                    acc += (double)h.w[((oc * C + c) * K + i) * K + j] *
                                           x[(plane * H + ih) * W + iw];
                                }
                        if (relu[t] && acc < 0) acc = 0;
                        /* conv2d's output is CBHW (layer.h) */
                        double got = out[(((size_t)oc * B + b) * OH + oh) * OW + ow];
                        if (fabs(got - acc) > max_err) max_err = fabs(got - acc);
                    }
        CHECK(max_err < 1e-4);
        free(x);
        free(out);
        h_free(&h);
        if (t >= 5) { /* their backward pass (col2im) against finite differences */
            char what[64];
            snprintf(what, sizeof what, "conv2d reference case %d", t);
            grad_check(what, proto, (cnd_shape_t){C, H, W}, B, 1);
        }
    }
    /* Whole models, as `train` and `eval --batch 1` run them, with a padding at least the
     * input size: training and inference passes at batch 1 and 3, with the fused conv+pool. */
    static const struct {
        const char *spec;
        cnd_shape_t in;
    } models[] = {
        {"conv2d(4,5,pad=2) relu flatten dense(3)", {1, 1, 1}},
        {"conv2d(4,5,pad=2) relu maxpool(2) flatten dense(3)", {1, 2, 2}},
        {"conv2d(3,3,pad=1) conv2d(2,9,pad=4) relu gap dense(2)", {2, 3, 2}},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        cnd_model_t *m = NULL;
        CHECK(cnd_model_new(&m, models[i].spec, models[i].in, 3) == 0);
        if (!m) continue;
        float x[3 * 12], dl[3 * 3];
        for (int k = 0; k < 3 * 12; k++) x[k] = (float)(k % 5) - 2.0f;
        for (int k = 0; k < 3 * 3; k++) dl[k] = 0.5f;
        for (int B = 1; B <= 3; B += 2) {
            const float *lg;
            CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
            cnd_model_backward(m, dl);
            CHECK(cnd_model_forward(m, x, B, 0, &lg) == 0);
            for (int k = 0; k < B * m->n_classes; k++) CHECK(isfinite(lg[k]));
        }
        cnd_model_destroy(&m);
    }
}

static void test_xent(void)
{
    /* Hand-computed: logits (1, 2, 3), label 2: loss = log(e^1+e^2+e^3) - 3. */
    float z[3] = {1, 2, 3}, d[3];
    uint8_t y = 2;
    int ok = -1;
    float loss = cnd_loss_xent(d, z, &y, 1, 3, &ok);
    CHECK_NEAR(loss, log(exp(1) + exp(2) + exp(3)) - 3, 1e-6);
    CHECK_EQ_INT(ok, 1);
    double s = exp(1) + exp(2) + exp(3);
    CHECK_NEAR(d[0], exp(1) / s, 1e-6);
    CHECK_NEAR(d[2], exp(3) / s - 1, 1e-6);
    /* Finite differences over a batch; gradient is of the batch mean. */
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 3);
    float lg[4 * 5], dl[4 * 5];
    uint8_t lab[4] = {0, 3, 4, 1};
    for (int i = 0; i < 20; i++) lg[i] = (float)cnd_rng_normal(&rng) * 2;
    cnd_loss_xent(dl, lg, lab, 4, 5, NULL);
    for (int i = 0; i < 20; i++) {
        float keep = lg[i];
        lg[i] = keep + 1e-2f;
        double lp = cnd_loss_xent(NULL, lg, lab, 4, 5, NULL);
        lg[i] = keep - 1e-2f;
        double lm = cnd_loss_xent(NULL, lg, lab, 4, 5, NULL);
        lg[i] = keep;
        CHECK_NEAR((lp - lm) / 2e-2, dl[i], 2e-3);
    }
    /* Extreme logits stay finite. */
    float big[2] = {1000.0f, -1000.0f};
    uint8_t y1 = 1;
    float l2 = cnd_loss_xent(d, big, &y1, 1, 2, NULL);
    CHECK(isfinite(l2) && l2 > 1999.0f);
    float p[3];
    cnd_softmax(p, z, 3, 1.0f);
    CHECK_NEAR(p[0] + p[1] + p[2], 1.0, 1e-6);
    CHECK_EQ_INT(cnd_argmax(z, 3), 2);
}

/* Whole-model check: layouts, fused relus and the gradient ping-pong through every layer. */
static void model_gradient(const char *arch, int max_bad)
{
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, arch, (cnd_shape_t){2, 8, 8}, 5) == 0);
    if (!m) return;
    int B = 4;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 9);
    float x[4 * 128];
    uint8_t y[4] = {0, 1, 2, 1};
    for (int i = 0; i < B * 128; i++) x[i] = (float)cnd_rng_normal(&rng);
    const float *lg;
    float dl[4 * 3];
    CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
    cnd_loss_xent(dl, lg, y, B, 3, NULL);
    cnd_model_zero_grad(m);
    cnd_model_backward(m, dl);
    int bad = 0, n = 0;
    for (size_t i = 0; i < m->num_params; i += 1 + m->num_params / 150) {
        float keep = m->params[i], eps = 2e-3f;
        m->params[i] = keep + eps;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        double lp = cnd_loss_xent(NULL, lg, y, B, 3, NULL);
        m->params[i] = keep - eps;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        double lm = cnd_loss_xent(NULL, lg, y, B, 3, NULL);
        m->params[i] = keep;
        double num = (lp - lm) / (2 * eps);
        n++;
        if (fabs(num - m->grads[i]) > 2e-2 * (1e-2 + fabs(num))) {
            bad++;
            fprintf(stderr, "model grad %zu: analytic %g numeric %g\n", i, m->grads[i], num);
        }
    }
    CHECK(n > 100);
    if (bad > max_bad) fprintf(stderr, "%s: %d of %d gradients off\n", arch, bad, n);
    CHECK(bad <= max_bad);
    cnd_model_destroy(&m);
}

/* 2x2 max pooling over planes wide enough for the vector path and its tail (11 windows a
 * row), from values with many ties, against the naive definition: the output is the window's
 * maximum, and its gradient goes to the first input equal to it in row-major order, zeros
 * elsewhere. */
static void test_maxpool_wide(void)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 3);
    cnd_layer_t proto = {.type = CND_L_MAXPOOL, .in_cbhw = 1};
    proto.p.pool.k = 2;
    proto.p.pool.stride = 2;
    harness h;
    cnd_shape_t in = {3, 4, 22};
    int B = 2;
    if (h_init(&h, proto, in, B, &rng)) {
        CHECK(!"layer shape failed");
        return;
    }
    size_t nin = (size_t)B * cnd_shape_size(in), nout = (size_t)B * cnd_shape_size(h.l.out);
    float x[2 * 3 * 4 * 22], out[2 * 3 * 2 * 11], g[2 * 3 * 2 * 11], din[2 * 3 * 4 * 22];
    for (size_t i = 0; i < nin; i++) x[i] = (float)cnd_rng_below(&rng, 3) - 1.0f;
    for (size_t i = 0; i < nout; i++) g[i] = (float)i + 1.0f;
    h.ops->forward(&h.l, out, x, h.w, h.state, h.work, B, 1);
    h.ops->backward(&h.l, din, NULL, g, x, out, h.w, h.work, B);
    int bad = 0;
    for (size_t pl = 0; pl < (size_t)B * in.c; pl++)
        for (int oh = 0; oh < 2; oh++)
            for (int ow = 0; ow < 11; ow++) {
                size_t o = pl * 22 + (size_t)oh * 11 + ow, at[4];
                for (int k = 0; k < 4; k++)
                    at[k] = pl * 88 + (size_t)(2 * oh + k / 2) * 22 + (size_t)(2 * ow + k % 2);
                float m = x[at[0]];
                for (int k = 1; k < 4; k++) m = x[at[k]] > m ? x[at[k]] : m;
                int first = 0;
                while (x[at[first]] != m) first++;
                bad += out[o] != m;
                for (int k = 0; k < 4; k++) bad += din[at[k]] != (k == first ? g[o] : 0.0f);
            }
    CHECK_EQ_INT(bad, 0);
    h_free(&h);
}

/* A conv2d [relu] maxpool(2) pass fused for training gives the same bits as the layers run
 * one by one: logits, every parameter gradient and, through a later conv, the pooled input
 * gradient. Planes wide enough for the vector path and its scalar tail (pooled widths
 * 18 and 9), ties (repeated inputs; a relu's zeros), with and without a relu, 2 threads. */
static void fused_pool_case(const char *arch, cnd_shape_t in, int pool_a, int pool_b)
{
    int B = 5;
    size_t d = cnd_shape_size(in);
    float *x = malloc((size_t)B * d * sizeof(float));
    uint8_t y[5] = {0, 1, 2, 3, 1};
    float dl[5 * 4], *g[2] = {NULL, NULL}, lgs[2][5 * 4];
    CHECK(x != NULL);
    if (!x) return;
    for (size_t i = 0; i < (size_t)B * d; i++) x[i] = (float)((i * 7919) % 11) - 5.0f;
    for (int v = 0; v < 2; v++) {
        cnd_model_t *m = NULL;
        CHECK(cnd_model_new(&m, arch, in, 3) == 0);
        if (!m) break;
        CHECK_EQ_INT(m->layers[pool_a].fuse_pool, pool_a + 1 + m->layers[pool_a].fuse_relu);
        if (pool_b >= 0)
            CHECK_EQ_INT(m->layers[pool_b].fuse_pool, pool_b + 1 + m->layers[pool_b].fuse_relu);
        m->no_fuse = v;
        const float *lg;
        CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
        CHECK_EQ_INT(m->last_fused, !v);
        memcpy(lgs[v], lg, sizeof lgs[v]);
        cnd_loss_xent(dl, lg, y, B, 4, NULL);
        cnd_model_zero_grad(m);
        cnd_model_backward(m, dl);
        g[v] = malloc(m->num_params * sizeof(float));
        if (g[v]) memcpy(g[v], m->grads, m->num_params * sizeof(float));
        if (v == 1 && g[0] && g[1]) {
            CHECK(memcmp(lgs[0], lgs[1], sizeof lgs[0]) == 0);
            size_t diff = 0;
            for (size_t i = 0; i < m->num_params; i++) diff += g[0][i] != g[1][i];
            if (diff) fprintf(stderr, "%s: %zu gradients differ\n", arch, diff);
            CHECK_EQ_INT((int)diff, 0);
            double norm = 0;
            for (size_t i = 0; i < m->num_params; i++) norm += fabs(g[1][i]);
            CHECK(norm > 1e-3); /* the comparison saw real gradients */
        }
        cnd_model_destroy(&m);
    }
    free(g[0]);
    free(g[1]);
    free(x);
}

static void test_fused_pool(void)
{
    CHECK(cnd_pool_set_threads(2) == 0);
    fused_pool_case("conv2d(5,3,pad=1) relu maxpool(2) conv2d(6,3,pad=1) maxpool(2) flatten "
                    "dense(4)",
                    (cnd_shape_t){2, 20, 36}, 0, 3);
    /* A strided conv (general im2col/col2im) whose input gradient feeds a first conv. */
    fused_pool_case("conv2d(3,3,pad=1) conv2d(4,3,stride=2) relu maxpool(2) flatten dense(4)",
                    (cnd_shape_t){2, 18, 22}, 1, -1);
    CHECK(cnd_pool_set_threads(1) == 0);
}

static void test_model_gradient(void)
{
    /* Smooth path through every layout change: must match everywhere. */
    model_gradient("conv2d(3,3,pad=1) conv2d(4,3) batchnorm avgpool(1) flatten dense(5) dense(3)",
                   0);
    /* With relus and max pooling, a perturbation of a first-layer weight moves hundreds of
     * units, and a few finite differences straddle a kink; the per-layer checks above are
     * exact for those layers. */
    const char *arch = "conv2d(3,3,pad=1) relu maxpool(2) conv2d(4,3) batchnorm relu "
                       "avgpool(1) flatten dense(5) relu dense(3)";
    model_gradient(arch, 8);
    cnd_model_t *m = NULL;
    CHECK(cnd_model_new(&m, arch, (cnd_shape_t){2, 8, 8}, 5) == 0);
    if (!m) return;
    CHECK(m->layers[0].fuse_relu && m->layers[1].alias && m->layers[9].alias);
    CHECK(!m->layers[5].alias && !m->layers[4].fuse_relu);
    CHECK(!m->layers[0].in_cbhw && m->layers[2].in_cbhw && m->layers[7].in_cbhw);
    CHECK(!m->layers[8].in_cbhw);
    int B = 4;
    float x[4 * 128];
    for (int i = 0; i < B * 128; i++) x[i] = (float)(i % 13) - 6.0f;
    const float *lg;
    float nchw[4 * 3 * 8 * 8];
    /* A training pass computes conv 0's pooling inside it and keeps no conv output. */
    CHECK(m->layers[0].fuse_pool == 2 && m->layers[2].pool_fused && !m->layers[3].fuse_pool);
    CHECK(cnd_model_forward(m, x, B, 1, &lg) == 0);
    CHECK(cnd_model_act_nchw(m, 0, B, nchw) == CND_EINVAL);
    CHECK(cnd_model_act_nchw(m, 1, B, nchw) == CND_EINVAL);
    CHECK(cnd_model_act_nchw(m, 2, B, nchw) == 0);
    /* The NCHW view of a CBHW activation puts sample 1's first channel after sample 0's. */
    CHECK(cnd_model_forward(m, x, B, 0, &lg) == 0);
    CHECK(cnd_model_act_nchw(m, 0, B, nchw) == 0);
    CHECK(nchw[3 * 64] == m->acts[0][1 * 64]); /* (b=1,c=0) in NCHW vs CBHW */
    CHECK(nchw[64] == m->acts[0][B * 64]);     /* (b=0,c=1) */
    cnd_model_destroy(&m);
    /* Layout rules refuse a dense layer on a multi-channel spatial output. */
    CHECK(cnd_model_new(&m, "conv2d(2,3) dense(3)", (cnd_shape_t){1, 5, 5}, 1) == CND_EINVAL);
    CHECK(cnd_model_new(&m, "dense(3)", (cnd_shape_t){1, 5, 5}, 1) == 0);
    cnd_model_destroy(&m);
}

int main(void)
{
    test_model_gradient();
    test_maxpool_wide();
    test_fused_pool();
    test_gradients();
    test_conv_reference();
    test_xent();
    return check_result("test_layers");
}
