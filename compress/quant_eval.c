/*
 * quant_eval.c: host-side evaluation of `.cndq` artifacts through the integer runtime, and the
 * per-layer float-vs-integer report (see quant_eval.h).
 */
#include "quant_eval.h"
#include "cnd_rt_format.h"
#include "loss.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float s_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void cnd_qeval_input(const cnd_artifact_t *a, int8_t *x, const cnd_dataset_t *ds, size_t i)
{
    const cnd_rt_info_t *in = &a->info;
    int C = in->c;
    size_t hw = (size_t)in->h * in->w, d = hw * (size_t)C;
    const float *raw = ds->x + i * d;
    if (cnd_quant_raw_is_u8(raw, d)) {
        /* The device path: raw pixels in HWC order through the lookup table. The table maps
         * element i to element i, so the conversion can run in place in x. */
        uint8_t *u = (uint8_t *)x;
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < hw; p++) u[p * C + c] = (uint8_t)raw[(size_t)c * hw + p];
        cnd_rt_quantize_input(a->rt, x, u);
        return;
    }
    float s_in;
    uint32_t sb = in->in_scale_bits;
    memcpy(&s_in, &sb, 4);
    for (int c = 0; c < C; c++) {
        float mu = s_f32(in->norm + 4 * c), inv = 1.0f / s_f32(in->norm + 4 * (C + c));
        for (size_t p = 0; p < hw; p++)
            x[p * C + c] = (int8_t)cnd_quant_q((raw[(size_t)c * hw + p] - mu) * inv, s_in,
                                               in->in_zp, -128, 127);
    }
}

int cnd_qeval(cnd_artifact_t *a, const cnd_dataset_t *ds, cnd_eval_t *out)
{
    memset(out, 0, sizeof *out);
    const cnd_rt_info_t *in = &a->info;
    size_t d = (size_t)in->c * in->h * in->w;
    if (cnd_shape_size(ds->shape) != d)
        return cnd_errf(CND_EINVAL, "data samples are %dx%dx%d, the artifact expects %ux%ux%u",
                        ds->shape.c, ds->shape.h, ds->shape.w, in->c, in->h, in->w);
    if ((uint32_t)ds->n_classes > in->n_classes)
        return cnd_errf(CND_EINVAL, "data has %d classes but the artifact outputs %u",
                        ds->n_classes, in->n_classes);
    int K = (int)in->n_classes;
    int8_t *x = malloc(d), *lg = malloc((size_t)K);
    float *z = malloc((size_t)K * sizeof(float));
    if (!x || !lg || !z) {
        free(x);
        free(lg);
        free(z);
        return CND_ENOMEM;
    }
    float s_out;
    uint32_t ob = in->out_scale_bits;
    memcpy(&s_out, &ob, 4);
    double loss = 0.0;
    size_t ok = 0;
    out->n_classes = K;
    for (size_t i = 0; i < ds->n; i++) {
        cnd_qeval_input(a, x, ds, i);
        cnd_rt_run_i8(a->rt, lg, x);
        for (int k = 0; k < K; k++) z[k] = s_out * (float)(lg[k] - in->out_zp);
        int y = ds->y[i], c = 0;
        loss += cnd_loss_xent(NULL, z, &ds->y[i], 1, K, &c);
        /* accuracy from the integer argmax, as a device computes it */
        int pred = (int)cnd_rt_argmax(a->rt, lg);
        ok += pred == y;
        out->per_class_total[y]++;
        out->per_class_correct[y] += pred == y;
    }
    out->n = ds->n;
    out->loss = ds->n ? (float)(loss / (double)ds->n) : 0.0f;
    out->acc = ds->n ? (float)ok / (float)ds->n : 0.0f;
    free(x);
    free(lg);
    free(z);
    return 0;
}

typedef struct {
    int n;
    int8_t *out[CND_RT_MAX_LAYERS];
} s_tap_t;

static void s_tap(void *ctx, int layer, const int8_t *out, size_t n)
{
    s_tap_t *t = ctx;
    memcpy(t->out[layer], out, n);
}

int cnd_qreport(cnd_qreport_row_t *rows, cnd_model_t *m, const cnd_qmodel_t *q, cnd_artifact_t *a,
                const cnd_dataset_t *ds, size_t n)
{
    int L = q->n_layers, rc = 0;
    size_t d = cnd_shape_size(m->in);
    if (n > ds->n) n = ds->n;
    double *sig = calloc((size_t)L, sizeof(double)), *noise = calloc((size_t)L, sizeof(double));
    float *xb = malloc(100 * d * sizeof(float));
    int8_t *x = malloc(d), *lg = malloc((size_t)q->n_classes);
    s_tap_t tap = {0};
    float *fl_nchw[CND_RT_MAX_LAYERS] = {0}; /* float outputs of the batch, NCHW (model.h) */
    int okbuf = sig && noise && xb && x && lg;
    for (int i = 0; okbuf && i < L; i++) {
        okbuf = (tap.out[i] = malloc((size_t)q->layers[i].out_c * q->layers[i].out_h *
                                     q->layers[i].out_w)) != NULL;
        if (okbuf)
            okbuf = (fl_nchw[i] = malloc(100 * cnd_shape_size(m->layers[q->layers[i].src].out) *
                                         sizeof(float))) != NULL;
    }
    if (!okbuf) {
        rc = CND_ENOMEM;
        goto done;
    }
    for (size_t s = 0; s < n; s += 100) {
        int bs = (int)(n - s < 100 ? n - s : 100);
        memcpy(xb, ds->x + s * d, (size_t)bs * d * sizeof(float));
        cnd_model_normalize(m, xb, (size_t)bs);
        const float *lgf;
        if ((rc = cnd_model_forward(m, xb, bs, 0, &lgf))) goto done;
        for (int li = 0; li < L; li++)
            if ((rc = cnd_model_act_nchw(m, q->layers[li].src, bs, fl_nchw[li]))) goto done;
        for (int b = 0; b < bs; b++) {
            cnd_qeval_input(a, x, ds, s + (size_t)b);
            cnd_rt_run_i8_tap(a->rt, lg, x, s_tap, &tap);
            for (int li = 0; li < L; li++) {
                const cnd_qlayer_t *ql = &q->layers[li];
                const cnd_layer_t *fl = &m->layers[ql->src];
                int flat = ql->op == CND_RT_OP_FLATTEN;
                int C = flat ? ql->in_c : ql->out_c, H = flat ? ql->in_h : ql->out_h,
                    W = flat ? ql->in_w : ql->out_w;
                size_t HW = (size_t)H * W, osz = cnd_shape_size(fl->out);
                const float *f = fl_nchw[li] + (size_t)b * osz;
                /* values that only reach a tanh are clamped on purpose (quant.h) */
                double cap = cnd_quant_feeds_tanh(m, ql->src) ? CND_QUANT_TANH_CAP : INFINITY;
                for (int c = 0; c < C; c++)
                    for (size_t p = 0; p < HW; p++) {
                        double fv = fmax(-cap, fmin(cap, f[(size_t)c * HW + p]));
                        double qv = (double)ql->out_scale * (tap.out[li][p * C + c] - ql->out_zp);
                        sig[li] += fv * fv;
                        noise[li] += (fv - qv) * (fv - qv);
                    }
            }
        }
    }
    for (int li = 0; li < L; li++) {
        const cnd_qlayer_t *ql = &q->layers[li];
        cnd_qreport_row_t *r = &rows[li];
        memset(r, 0, sizeof *r);
        char tok[96];
        cnd_layer_spec(&m->layers[ql->relu ? ql->src - 1 : ql->src], tok, sizeof tok);
        snprintf(r->name, sizeof r->name, "%s%s", tok, ql->relu ? "+relu" : "");
        r->snr_db = noise[li] > 0 ? 10.0 * log10(sig[li] / noise[li]) : INFINITY;
        r->act_bytes = (size_t)ql->out_c * ql->out_h * ql->out_w;
        if (ql->w) {
            size_t row = ql->wbits == 8 ? (size_t)ql->K : ((size_t)ql->K + 1) / 2;
            r->weight_bytes = row * ql->out_c;
            r->const_bytes = (size_t)ql->out_c * 9;
            r->macs = (uint64_t)ql->K * ql->out_c * ql->out_h * ql->out_w;
        }
    }
done:
    for (int i = 0; i < L; i++) {
        free(tap.out[i]);
        free(fl_nchw[i]);
    }
    free(sig);
    free(noise);
    free(xb);
    free(x);
    free(lg);
    return rc;
}

int cnd_quant_is_artifact(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, CND_RT_MAGIC, 4);
}

int cnd_quant_cmd_eval(const char *path, const char *data, const char *split, int json)
{
    cnd_artifact_t *a = NULL;
    cnd_dataset_t *ds = NULL;
    int rc = cnd_artifact_load(&a, path);
    if (rc) return rc;
    if ((rc = cnd_artifact_selftest(a, path))) goto done;
    if ((rc = cnd_data_open(&ds, data, split))) goto done;
    cnd_eval_t ev;
    if ((rc = cnd_qeval(a, ds, &ev))) goto done;
    const char *kern = cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt));
    if (json) {
        printf("{\"model\":\"%s\",\"data\":\"%s\",\"runtime\":\"int8\",\"kernels\":\"%s\","
               "\"samples\":%zu,\"accuracy\":%.6f,\"loss\":%.6f,\"per_class\":[",
               path, data, kern, ev.n, ev.acc, ev.loss);
        for (int k = 0; k < ds->n_classes; k++)
            printf("%s{\"class\":%d,\"samples\":%u,\"accuracy\":%.6f}", k ? "," : "", k,
                   ev.per_class_total[k],
                   ev.per_class_total[k] ? (double)ev.per_class_correct[k] / ev.per_class_total[k]
                                         : 0.0);
        printf("]}\n");
    } else {
        printf("%s on %s (integer runtime, %s kernels, self-test passed): accuracy %.4f  "
               "loss %.4f  (%zu samples)\n",
               path, data, kern, ev.acc, ev.loss, ev.n);
        for (int k = 0; k < ds->n_classes; k++) {
            const char *name = cnd_rt_label(a->rt, (uint32_t)k);
            printf("  class %2d %-14s %6u samples  accuracy %.4f\n", k,
                   name ? name : (ds->class_names ? ds->class_names[k] : ""), ev.per_class_total[k],
                   ev.per_class_total[k] ? (double)ev.per_class_correct[k] / ev.per_class_total[k]
                                         : 0.0);
        }
    }
done:
    cnd_artifact_destroy(&a);
    cnd_data_destroy(&ds);
    return rc;
}
