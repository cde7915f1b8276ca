/*
 * quant_testutil.h: helpers shared by the quantization, artifact and runtime tests: random
 * float models quantized end to end (calibrated on random pixels), and small artifact surgery
 * (find a section, recompute the digest after an edit).
 */
#ifndef CND_QUANT_TESTUTIL_H
#define CND_QUANT_TESTUTIL_H

#include "artifact.h"
#include "bytes.h"
#include "cnd_rt_sha256.h"
#include "quant.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

/* Random raw pixels (0..255) for n samples of shape `in`. */
static inline float *qt_pixels(cnd_shape_t in, size_t n, uint64_t seed)
{
    cnd_rng_t r;
    cnd_rng_seed(&r, seed);
    size_t d = cnd_shape_size(in);
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++) x[i] = (float)cnd_rng_below(&r, 256);
    return x;
}

/* A float model of `spec` with random weights and biases (batchnorms folded), normalisation mean
 * 100 std 60, quantized with `method` on 64 random samples, with 3 self-test vectors. */
static inline int qt_make(cnd_qmodel_t **q, cnd_model_t **fm, const char *spec, cnd_shape_t in,
                          int wbits, cnd_qmethod_t method, uint64_t seed)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_new(&m, spec, in, seed);
    if (rc) return rc;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].type == CND_L_BATCHNORM) { /* graph blocks hold batchnorms: fold */
            cnd_model_t *f = NULL;
            rc = cnd_quant_fold_bn(&f, m);
            cnd_model_destroy(&m);
            if (rc) return rc;
            m = f;
            break;
        }
    cnd_rng_t r;
    cnd_rng_seed(&r, seed + 1);
    for (int i = 0; i < m->n_layers; i++) {
        cnd_layer_t *l = &m->layers[i];
        for (size_t k = l->n_weights; k < l->n_params; k++)
            m->params[l->param_off + k] = 0.2f * (float)cnd_rng_normal(&r);
    }
    for (int c = 0; c < in.c; c++) {
        m->norm_mean[c] = 100.0f + 3.0f * c;
        m->norm_std[c] = 60.0f;
    }
    size_t n = 64, d = cnd_shape_size(in);
    float *x = qt_pixels(in, n, seed + 2);
    uint8_t *raw = malloc(3 * d);
    for (size_t i = 0; i < 3 * d; i++) raw[i] = (uint8_t)x[i];
    cnd_model_normalize(m, x, n);
    cnd_qplan_t plan;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    if (!(rc = cnd_quant_plan(&plan, m)) &&
        !(rc = cnd_quant_calibrate(ranges, NULL, w_mse, m, &plan, x, n, method, wbits)) &&
        !(rc = cnd_qmodel_build(q, m, &plan, ranges, w_mse, NULL, wbits))) {
        /* HWC raw test inputs */
        uint8_t *hwc = malloc(3 * d);
        size_t hw = (size_t)in.h * in.w;
        for (int t = 0; t < 3; t++)
            for (int c = 0; c < in.c; c++)
                for (size_t p = 0; p < hw; p++) hwc[t * d + p * in.c + c] = raw[t * d + c * hw + p];
        rc = cnd_artifact_set_selftests(*q, hwc, 3, CND_RT_TEST_RAW_U8);
        free(hwc);
    }
    free(x);
    free(raw);
    if (fm && !rc)
        *fm = m;
    else
        cnd_model_destroy(&m);
    return rc;
}

/* Payload offset and length of the section with `tag` in a serialised artifact. */
static inline uint32_t qt_section(const uint8_t *a, uint32_t tag, uint32_t *len)
{
    uint32_t body = cnd_le32(a + CND_RT_H_BODYLEN), pos = CND_RT_HEADER_BYTES;
    while (pos + 16 <= body) {
        uint32_t n = cnd_le32(a + pos + 4);
        if (cnd_le32(a + pos) == tag) {
            if (len) *len = n;
            return pos + 16;
        }
        pos += (16 + n + 15) & ~15u;
    }
    return 0;
}

/* Recomputes the digest after an edit of the body. */
static inline void qt_redigest(uint8_t *a)
{
    uint32_t body = cnd_le32(a + CND_RT_H_BODYLEN);
    cnd_rt_sha256(a + body, a, body);
}

#endif
