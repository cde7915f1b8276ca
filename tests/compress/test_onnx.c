/*
 * test_onnx.c: the ONNX engine's convolutions against a naive reference written here (the fast
 * path through layer_conv2d.c, the pointwise sgemm and the direct path, with groups, strides,
 * padding, auto_pad, dilation, non-square kernels and a fused Relu, on 1 and 2 threads), and
 * hostile files refused with messages naming what was wrong (external data, cycles, missing
 * initializers, sizes that lie, huge dimensions, unknown ops, attributes and opsets). The models
 * are built with the protobuf-c code generated from onnx.proto (onnx_build.h). PyTorch cross-checks
 * are in test_onnx_torch.py.
 *
 *   test_onnx                      runs the tests
 *   test_onnx --write-corpus DIR   writes the fuzz target's seeds (tests/fuzz/corpus/onnx)
 */
#include "check.h"
#include "fileio.h"
#include "onnx_build.h"
#include "onnx_graph.h"
#include "pool.h"
#include "rng.h"
#include "train.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *s_corpus; /* --write-corpus DIR */

static void s_save(const char *name, const uint8_t *p, size_t n)
{
    if (!s_corpus) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s_corpus, name);
    if (cnd_file_write_atomic(path, p, n, 0644)) fprintf(stderr, "cannot write %s\n", path);
}

typedef struct {
    int C, OC, G, KH, KW, SH, SW, DH, DW, relu;
    int pads[4];
    const char *auto_pad; /* NULL: explicit pads */
    int H, W;
} conv_case_t;

/* y (B, OC, OH, OW) by the definition, pads as resolved for the case. */
static void s_ref_conv(float *y, const float *x, const float *w, const float *bias,
                       const conv_case_t *c, const int *pads, int B, int OH, int OW)
{
    int Cg = c->C / c->G, OCg = c->OC / c->G;
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < c->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double s = bias[oc];
                    int q = oc / OCg;
                    for (int ic = 0; ic < Cg; ic++)
                        for (int kh = 0; kh < c->KH; kh++)
                            for (int kw = 0; kw < c->KW; kw++) {
                                int ih = oh * c->SH - pads[0] + kh * c->DH;
                                int iw = ow * c->SW - pads[1] + kw * c->DW;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                s += (double)w[((oc * Cg + ic) * c->KH + kh) * c->KW + kw] *
                                     x[((b * c->C + q * Cg + ic) * c->H + ih) * c->W + iw];
                            }
                    float v = (float)s;
                    if (c->relu && v < 0) v = 0;
                    y[((b * c->OC + oc) * OH + oh) * OW + ow] = v;
                }
}

static size_t s_conv_model(const conv_case_t *c, const float *w, const float *bias, uint8_t **out)
{
    ob_t b;
    ob_init(&b, 13, "x", -1, c->C, c->H, c->W);
    ob_init_f(&b, "w", (int64_t[]){c->OC, c->C / c->G, c->KH, c->KW}, 4, w);
    ob_init_f(&b, "b", (int64_t[]){c->OC}, 1, bias);
    Onnx__NodeProto *n = ob_node(&b, "Conv", "conv", (const char *[]){"x", "w", "b"}, 3,
                                 (const char *[]){c->relu ? "c" : "y"}, 1);
    ob_ints(&b, n, "strides", (int64_t[]){c->SH, c->SW}, 2);
    ob_ints(&b, n, "dilations", (int64_t[]){c->DH, c->DW}, 2);
    ob_int(&b, n, "group", c->G);
    ob_ints(&b, n, "kernel_shape", (int64_t[]){c->KH, c->KW}, 2);
    if (c->auto_pad) {
        Onnx__AttributeProto *a =
            ob_attr(&b, n, "auto_pad", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
        a->has_s = 1;
        a->s.data = (uint8_t *)ob_str(&b, c->auto_pad);
        a->s.len = strlen(c->auto_pad);
    } else {
        ob_ints(&b, n, "pads", (int64_t[]){c->pads[0], c->pads[1], c->pads[2], c->pads[3]}, 4);
    }
    if (c->relu) ob_node(&b, "Relu", "relu", (const char *[]){"c"}, 1, (const char *[]){"y"}, 1);
    size_t len = ob_pack(&b, "y", out);
    ob_free(&b);
    return len;
}

static void s_conv_case(const conv_case_t *c, int idx)
{
    cnd_rng_t rng;
    cnd_rng_seed(&rng, (uint64_t)idx + 1);
    size_t nw = (size_t)c->OC * (c->C / c->G) * c->KH * c->KW;
    float *w = malloc(nw * sizeof(float)), bias[64];
    for (size_t i = 0; i < nw; i++) w[i] = (float)cnd_rng_normal(&rng);
    for (int i = 0; i < c->OC; i++) bias[i] = (float)cnd_rng_normal(&rng);
    uint8_t *bytes;
    size_t len = s_conv_model(c, w, bias, &bytes);
    char name[32];
    snprintf(name, sizeof name, "conv%d.onnx", idx);
    s_save(name, bytes, len);
    cnd_onnx_t *g = NULL;
    int rc = cnd_onnx_load_mem(&g, bytes, len, name);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "case %d: %s\n", idx, cnd_err_detail());
    free(bytes);
    if (rc) {
        free(w);
        return;
    }
    int pads[4] = {c->pads[0], c->pads[1], c->pads[2], c->pads[3]};
    int OH, OW;
    if (c->auto_pad) { /* SAME_UPPER */
        int ks[2] = {(c->KH - 1) * c->DH + 1, (c->KW - 1) * c->DW + 1}, in[2] = {c->H, c->W};
        int st[2] = {c->SH, c->SW};
        for (int a = 0; a < 2; a++) {
            int o = (in[a] + st[a] - 1) / st[a], tot = (o - 1) * st[a] + ks[a] - in[a];
            if (tot < 0) tot = 0;
            pads[a] = tot / 2;
            pads[a + 2] = tot - tot / 2;
        }
    }
    OH = (c->H + pads[0] + pads[2] - ((c->KH - 1) * c->DH + 1)) / c->SH + 1;
    OW = (c->W + pads[1] + pads[3] - ((c->KW - 1) * c->DW + 1)) / c->SW + 1;
    CHECK_EQ_INT(cnd_onnx_classes(g), c->OC * OH * OW);
    enum { B = 3 };
    size_t nx = (size_t)B * c->C * c->H * c->W, ny = (size_t)B * c->OC * OH * OW;
    float *x = malloc(nx * sizeof(float)), *want = malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = (float)cnd_rng_normal(&rng);
    s_ref_conv(want, x, w, bias, c, pads, B, OH, OW);
    for (int threads = 1; threads <= 2; threads++) {
        cnd_set_threads(threads);
        const float *y;
        CHECK(cnd_onnx_run(g, x, B, &y) == 0);
        double err = 0;
        for (size_t i = 0; i < ny; i++)
            err = fabs(y[i] - want[i]) > err ? fabs(y[i] - want[i]) : err;
        if (err > 1e-4) fprintf(stderr, "conv case %d, %d threads: error %g\n", idx, threads, err);
        CHECK(err <= 1e-4);
    }
    cnd_set_threads(1);
    free(x);
    free(want);
    free(w);
    cnd_onnx_destroy(&g);
}

static void test_convolutions(void)
{
    static const conv_case_t cases[] = {
        /* C OC G KH KW SH SW DH DW relu pads auto H W */
        {4, 6, 1, 3, 3, 1, 1, 1, 1, 0, {1, 1, 1, 1}, NULL, 9, 7},  /* fast, same */
        {3, 5, 1, 3, 3, 2, 2, 1, 1, 1, {0, 0, 0, 0}, NULL, 10, 9}, /* fast, strided, relu */
        {4, 4, 2, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 6, 6},  /* fast, 2 groups */
        {4, 8, 4, 3, 3, 2, 2, 1, 1, 0, {1, 1, 1, 1}, NULL, 7, 8},  /* depthwise x2 */
        {2, 3, 1, 3, 3, 1, 1, 2, 2, 0, {2, 2, 2, 2}, NULL, 8, 8},  /* dilated */
        {2, 3, 1, 3, 1, 1, 2, 1, 1, 1, {1, 0, 2, 1}, NULL, 6, 7},  /* 3x1, asymmetric pads */
        {3, 4, 1, 3, 3, 2, 2, 1, 1, 0, {0, 0, 0, 0}, "SAME_UPPER", 8, 7},
        {1, 2, 1, 5, 5, 1, 1, 1, 1, 0, {2, 2, 2, 2}, NULL, 5, 5}, /* one input channel */
        {4, 6, 1, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 5, 6}, /* pointwise, relu */
        {6, 3, 1, 1, 1, 2, 2, 1, 1, 0, {0, 0, 0, 0}, NULL, 5, 6}, /* strided 1x1: fast */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) s_conv_case(&cases[i], (int)i);
}

/* ---- hostile files ---- */

/* Loading bytes must fail with `code` and a detail containing every `want` string. */
static void s_refused(const char *name, const uint8_t *p, size_t n, int code, const char *want1,
                      const char *want2)
{
    s_save(name, p, n);
    cnd_onnx_t *g = NULL;
    int rc = cnd_onnx_load_mem(&g, p, n, name);
    const char *d = cnd_err_detail();
    int ok = rc == code && g == NULL && strstr(d, want1) && (!want2 || strstr(d, want2));
    if (!ok) fprintf(stderr, "%s: rc %d, '%s'\n", name, rc, d);
    CHECK(ok);
    cnd_onnx_destroy(&g);
}

/* A Relu model; `mutate` changes it before packing. */
static size_t s_relu_model(uint8_t **out, int opset, void (*mutate)(ob_t *, Onnx__NodeProto *))
{
    ob_t b;
    ob_init(&b, opset, "x", -1, 2, 3, 3);
    Onnx__NodeProto *n =
        ob_node(&b, "Relu", "r", (const char *[]){"x"}, 1, (const char *[]){"y"}, 1);
    if (mutate) mutate(&b, n);
    size_t len = ob_pack(&b, "y", out);
    ob_free(&b);
    return len;
}

static void m_unknown_attr(ob_t *b, Onnx__NodeProto *n)
{
    ob_int(b, n, "foo", 1);
}

static void m_loop(ob_t *b, Onnx__NodeProto *n)
{
    n->op_type = ob_str(b, "Loop");
}

static void m_external(ob_t *b, Onnx__NodeProto *n)
{
    Onnx__TensorProto *t = ob_init_f(b, "w", (int64_t[]){2}, 1, NULL);
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    n->input[0] = ob_str(b, "x");
}

static void m_lying_size(ob_t *b, Onnx__NodeProto *n)
{
    Onnx__TensorProto *t = ob_init_f(b, "w", (int64_t[]){1}, 1, NULL);
    t->dims[0] = 4096 * 4096; /* 64 MiB declared, 4 bytes held */
    t->n_float_data = 0;
    t->has_raw_data = 1;
    t->raw_data.len = 4;
    t->raw_data.data = ob_alloc(b, 4);
}

static void m_huge_dims(ob_t *b, Onnx__NodeProto *n)
{
    Onnx__TensorProto *t = ob_init_f(b, "w", (int64_t[]){1, 1}, 2, NULL);
    t->dims[0] = (int64_t)1 << 40;
    t->dims[1] = (int64_t)1 << 40;
}

static void m_missing(ob_t *b, Onnx__NodeProto *n)
{
    n->input[0] = ob_str(b, "nope");
}

static void m_cycle(ob_t *b, Onnx__NodeProto *n)
{
    n->input[0] = ob_str(b, "z");
    ob_node(b, "Relu", "r2", (const char *[]){"y"}, 1, (const char *[]){"z"}, 1);
}

static void m_twice(ob_t *b, Onnx__NodeProto *n)
{
    ob_node(b, "Relu", "r2", (const char *[]){"x"}, 1, (const char *[]){"y"}, 1);
}

static void m_huge_pads(ob_t *b, Onnx__NodeProto *n)
{
    n->op_type = ob_str(b, "Conv");
    n->n_input = 2;
    n->input = ob_alloc(b, 2 * sizeof(char *));
    n->input[0] = ob_str(b, "x");
    n->input[1] = ob_str(b, "w");
    ob_init_f(b, "w", (int64_t[]){64, 2, 1, 1}, 4, NULL);
    ob_ints(b, n, "pads", (int64_t[]){65536, 65536, 65536, 65536}, 4);
}

static void m_bad_stride(ob_t *b, Onnx__NodeProto *n)
{
    n->op_type = ob_str(b, "MaxPool");
    ob_ints(b, n, "kernel_shape", (int64_t[]){2, 2}, 2);
    ob_ints(b, n, "strides", (int64_t[]){0, 1}, 2);
}

/* 1,000 constants concatenated into 10^6, then into 6 x 10^7: a 4 KB file asking for 240 MB */
static void m_amplify(ob_t *b, Onnx__NodeProto *n)
{
    ob_init_f(b, "c", (int64_t[]){1000}, 1, NULL);
    static const char *c1000[1000], *m60[60];
    for (int i = 0; i < 1000; i++) c1000[i] = "c";
    for (int i = 0; i < 60; i++) m60[i] = "m";
    ob_int(b, ob_node(b, "Concat", "big", c1000, 1000, (const char *[]){"m"}, 1), "axis", 0);
    ob_int(b, ob_node(b, "Concat", "bigger", m60, 60, (const char *[]){"h"}, 1), "axis", 0);
}

static void m_domain(ob_t *b, Onnx__NodeProto *n)
{
    n->domain = ob_str(b, "com.microsoft");
}

static void test_hostile(void)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34};
    s_refused("junk.onnx", junk, sizeof junk, CND_EFORMAT, "does not decode", NULL);
    static const struct {
        const char *name;
        int opset;
        void (*mutate)(ob_t *, Onnx__NodeProto *);
        int code;
        const char *want1, *want2;
    } cases[] = {
        {"opset9.onnx", 9, NULL, CND_EFORMAT, "opset 9 is not supported", NULL},
        {"attr.onnx", 13, m_unknown_attr, CND_EFORMAT, "node 'r' (Relu, opset 13)", "'foo'"},
        {"loop.onnx", 13, m_loop, CND_EFORMAT, "op 'Loop' (opset 13) is not supported", NULL},
        {"external.onnx", 13, m_external, CND_EFORMAT, "initializer 'w'", "EXTERNAL"},
        {"lying.onnx", 13, m_lying_size, CND_EFORMAT, "16777216 elements declared but 4 raw", NULL},
        {"huge.onnx", 13, m_huge_dims, CND_EFORMAT, "initializer 'w'", "over"},
        {"missing.onnx", 13, m_missing, CND_EFORMAT, "input 'nope'", "missing initializer"},
        {"cycle.onnx", 13, m_cycle, CND_EFORMAT, "cycle", "(Relu, opset 13)"},
        {"twice.onnx", 13, m_twice, CND_EFORMAT, "already produced", NULL},
        {"pads.onnx", 13, m_huge_pads, CND_ERANGE, "node 'r' (Conv, opset 13)", "elements"},
        {"stride.onnx", 13, m_bad_stride, CND_EFORMAT, "(MaxPool, opset 13)", "'strides'"},
        {"domain.onnx", 13, m_domain, CND_EFORMAT, "domain 'com.microsoft'", NULL},
        {"amplify.onnx", 13, m_amplify, CND_ERANGE, "node 'bigger' (Concat, opset 13)",
         "folding constants would create"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *p;
        size_t n = s_relu_model(&p, cases[i].opset, cases[i].mutate);
        s_refused(cases[i].name, p, n, cases[i].code, cases[i].want1, cases[i].want2);
        free(p);
    }
    /* and the unmutated model loads and runs */
    uint8_t *p;
    size_t n = s_relu_model(&p, 13, NULL);
    s_save("relu.onnx", p, n);
    cnd_onnx_t *g = NULL;
    CHECK(cnd_onnx_load_mem(&g, p, n, "relu.onnx") == 0);
    float x[18], *y;
    for (int i = 0; i < 18; i++) x[i] = (float)(i - 9);
    CHECK(g && cnd_onnx_run(g, x, 1, (const float **)&y) == 0 && y[0] == 0.0f && y[17] == 8.0f);
    cnd_onnx_destroy(&g);
    cnd_onnx_destroy(&g);
    free(p);
}

/* A chain model maps to a student; a Sigmoid in it is refused naming the node. */
static void test_student(void)
{
    for (int sig = 0; sig <= 1; sig++) {
        ob_t b;
        ob_init(&b, 13, "x", -1, 1, 4, 4);
        ob_init_f(&b, "w", (int64_t[]){2, 1, 3, 3}, 4, NULL);
        ob_init_f(&b, "fw", (int64_t[]){3, 32}, 2, NULL);
        ob_init_f(&b, "fb", (int64_t[]){3}, 1, NULL);
        Onnx__NodeProto *c =
            ob_node(&b, "Conv", "conv", (const char *[]){"x", "w"}, 2, (const char *[]){"c"}, 1);
        ob_ints(&b, c, "pads", (int64_t[]){1, 1, 1, 1}, 4);
        ob_node(&b, sig ? "Sigmoid" : "Relu", "act", (const char *[]){"c"}, 1,
                (const char *[]){"r"}, 1);
        ob_node(&b, "Flatten", "flat", (const char *[]){"r"}, 1, (const char *[]){"f"}, 1);
        Onnx__NodeProto *gm = ob_node(&b, "Gemm", "fc", (const char *[]){"f", "fw", "fb"}, 3,
                                      (const char *[]){"y"}, 1);
        ob_int(&b, gm, "transB", 1);
        uint8_t *p;
        size_t n = ob_pack(&b, "y", &p);
        ob_free(&b);
        s_save(sig ? "sigmoid_chain.onnx" : "chain.onnx", p, n);
        cnd_onnx_t *g = NULL;
        cnd_model_t *m = NULL;
        CHECK(cnd_onnx_load_mem(&g, p, n, "chain.onnx") == 0);
        int rc = g ? cnd_onnx_to_model(&m, g) : -1;
        if (sig)
            CHECK(rc == CND_EPERM && strstr(cnd_err_detail(), "node 'act' (Sigmoid, opset 13)"));
        else
            CHECK(rc == 0 && m && strcmp(m->spec, "conv2d(2,3,pad=1) relu flatten dense(3)") == 0);
        cnd_model_destroy(&m);
        cnd_onnx_destroy(&g);
        free(p);
    }
}

/* A graph (relu6 as Clip, depthwise conv, residual Add, hardswish as HardSigmoid and Mul, a
 * branch and a Concat, a dead Sigmoid) maps to a graph student computing the same logits; variant 1
 * gives the HardSigmoid PyTorch's default alpha, 2 makes the Mul one of two unrelated computed
 * tensors, 3 clips to [0, 5]: each refused naming its node. */
static size_t s_graph_model(uint8_t **out, int variant)
{
    ob_t b;
    ob_init(&b, 13, "x", -1, 2, 5, 5);
    float w[4 * 2 * 9];
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 7);
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = (float)cnd_rng_normal(&rng) * 0.5f;
    ob_init_f(&b, "w1", (int64_t[]){4, 2, 3, 3}, 4, w);
    ob_init_f(&b, "b1", (int64_t[]){4}, 1, w + 3);
    ob_init_f(&b, "w2", (int64_t[]){4, 1, 3, 3}, 4, w + 11);
    ob_init_f(&b, "w3", (int64_t[]){2, 4, 1, 1}, 4, w + 29);
    ob_init_f(&b, "fw", (int64_t[]){6, 3}, 2, w + 41);
    ob_init_f(&b, "fb", (int64_t[]){3}, 1, w + 60);
    ob_init_f(&b, "lo", (int64_t[]){1}, 0, (float[]){0.0f});
    ob_init_f(&b, "hi", (int64_t[]){1}, 0, (float[]){variant == 3 ? 5.0f : 6.0f});
    Onnx__NodeProto *n =
        ob_node(&b, "Conv", "c1", (const char *[]){"x", "w1", "b1"}, 3, (const char *[]){"a"}, 1);
    ob_ints(&b, n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ob_node(&b, "Clip", "r6", (const char *[]){"a", "lo", "hi"}, 3, (const char *[]){"r"}, 1);
    n = ob_node(&b, "Conv", "dw", (const char *[]){"r", "w2"}, 2, (const char *[]){"d"}, 1);
    ob_ints(&b, n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ob_int(&b, n, "group", 4);
    ob_node(&b, "Add", "res", (const char *[]){"r", "d"}, 2, (const char *[]){"s"}, 1);
    /* read by nothing on the way to the output: left out of the student */
    ob_node(&b, "Sigmoid", "dead", (const char *[]){"s"}, 1, (const char *[]){"unused"}, 1);
    n = ob_node(&b, "HardSigmoid", "hs", (const char *[]){"s"}, 1, (const char *[]){"h"}, 1);
    if (variant != 1) ob_float(&b, n, "alpha", 1.0f / 6.0f);
    ob_node(&b, "Mul", "hsw", (const char *[]){variant == 2 ? "r" : "s", "h"}, 2,
            (const char *[]){"t"}, 1);
    ob_node(&b, "Conv", "pw", (const char *[]){"s", "w3"}, 2, (const char *[]){"p"}, 1);
    n = ob_node(&b, "Concat", "cat", (const char *[]){"t", "p"}, 2, (const char *[]){"c"}, 1);
    ob_int(&b, n, "axis", 1);
    ob_node(&b, "GlobalAveragePool", "gap", (const char *[]){"c"}, 1, (const char *[]){"g"}, 1);
    ob_node(&b, "Flatten", "flat", (const char *[]){"g"}, 1, (const char *[]){"f"}, 1);
    ob_node(&b, "MatMul", "fc", (const char *[]){"f", "fw"}, 2, (const char *[]){"m"}, 1);
    ob_node(&b, "Add", "bias", (const char *[]){"m", "fb"}, 2, (const char *[]){"y"}, 1);
    size_t len = ob_pack(&b, "y", out);
    ob_free(&b);
    return len;
}

static void test_graph_student(void)
{
    const char *want[] = {NULL, "node 'hs' (HardSigmoid, opset 13): cannot be imported",
                          "node 'hsw' (Mul, opset 13): cannot be imported as a trainable student: "
                          "a product of two computed tensors",
                          "node 'r6' (Clip, opset 13): cannot be imported as a trainable student: "
                          "Clip to [0, 5]"};
    for (int v = 0; v < 4; v++) {
        uint8_t *p;
        size_t n = s_graph_model(&p, v);
        char name[32];
        snprintf(name, sizeof name, "graph_student%d.onnx", v);
        s_save(name, p, n);
        cnd_onnx_t *g = NULL;
        cnd_model_t *m = NULL;
        CHECK(cnd_onnx_load_mem(&g, p, n, name) == 0);
        int rc = g ? cnd_onnx_to_model(&m, g) : -1;
        if (v) {
            CHECK(rc == CND_EPERM && strstr(cnd_err_detail(), want[v]));
            if (!strstr(cnd_err_detail(), want[v])) fprintf(stderr, "%s\n", cnd_err_detail());
        } else {
            CHECK(rc == 0 && m);
            if (m) {
                CHECK(strstr(m->spec, "relu6") && strstr(m->spec, "groups=4") &&
                      strstr(m->spec, "add(@") && strstr(m->spec, "hardswish") &&
                      strstr(m->spec, "concat(@") && m->graph);
                float x[3 * 50];
                for (int i = 0; i < 150; i++) x[i] = (float)((i * 37) % 23) * 0.3f - 3.0f;
                const float *lg;
                float ref[9];
                CHECK(cnd_onnx_run(g, x, 3, &lg) == 0);
                memcpy(ref, lg, sizeof ref);
                CHECK(cnd_model_forward(m, x, 3, 0, &lg) == 0);
                double diff = 0.0;
                for (int i = 0; i < 9; i++) diff = fmax(diff, fabs((double)lg[i] - ref[i]));
                CHECK(diff < 1e-5);
            }
        }
        cnd_model_destroy(&m);
        cnd_onnx_destroy(&g);
        free(p);
    }
}

/* cnd_onnx_teacher_check: what a coordinator and a site check of an ONNX teacher before they
 * keep or run it (the preprocessing against its channels, a memory limit, a truncated file). */
static void test_teacher_check(void)
{
    ob_t b;
    ob_init(&b, 13, "x", -1, 1, 4, 4);
    ob_init_f(&b, "fw", (int64_t[]){3, 16}, 2, NULL);
    ob_init_f(&b, "fb", (int64_t[]){3}, 1, NULL);
    ob_node(&b, "Flatten", "flat", (const char *[]){"x"}, 1, (const char *[]){"f"}, 1);
    Onnx__NodeProto *gm =
        ob_node(&b, "Gemm", "fc", (const char *[]){"f", "fw", "fb"}, 3, (const char *[]){"y"}, 1);
    ob_int(&b, gm, "transB", 1);
    uint8_t *p;
    size_t n = ob_pack(&b, "y", &p);
    ob_free(&b);
    cnd_onnx_teacher_info_t ti;
    int rc = cnd_onnx_teacher_check(&ti, p, n, "t.onnx", "scale=1/255 mean=0.5 std=0.25", SIZE_MAX);
    CHECK_EQ_INT(rc, 0);
    CHECK(ti.in.c == 1 && ti.in.h == 4 && ti.in.w == 4 && ti.classes == 3 && ti.opset == 13);
    CHECK(fabsf(ti.mean[0] - 127.5f) < 1e-3f && fabsf(ti.std[0] - 63.75f) < 1e-3f);
    CHECK(ti.mem_bytes > n);
    rc = cnd_onnx_teacher_check(&ti, p, n, "t.onnx", "mean=1,2,3", SIZE_MAX);
    CHECK(rc == CND_EINVAL && strstr(cnd_err_detail(), "3 mean and 0 std values for 1 channels"));
    rc = cnd_onnx_teacher_check(&ti, p, n, "t.onnx", "scale=-1", SIZE_MAX);
    CHECK(rc == CND_EINVAL && strstr(cnd_err_detail(), "t.onnx: preprocessing: scale"));
    rc = cnd_onnx_teacher_check(&ti, p, n, "t.onnx", "", n + 100);
    CHECK(rc == CND_ERANGE && strstr(cnd_err_detail(), "over the limit"));
    rc = cnd_onnx_teacher_check(&ti, p, n - 7, "cut.onnx", "", SIZE_MAX);
    CHECK(rc == CND_EFORMAT && strstr(cnd_err_detail(), "cut.onnx"));
    free(p);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) s_corpus = argv[2];
    test_convolutions();
    test_hostile();
    test_student();
    test_graph_student();
    test_teacher_check();
    return check_result("test_onnx");
}
