/*
 * quant_fed.c: calibration, QAT metadata and freezing for federated jobs (see quant_fed.h).
 * Metadata format: "qat.ranges" = "lo,hi;lo,hi;..." one pair per quantization point in %.9g
 * (float round trip), "qat.wmse" = "0,1,..." one flag per layer, "qat.wbits" = "8" or "4".
 */
#include "quant_fed.h"
#include "artifact.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_fedq_check(const cnd_model_t *m, int wbits, int act_bits, int qat)
{
    if (wbits != 8 && wbits != 4)
        return cnd_errf(CND_EINVAL, "integer artifacts have 8- or 4-bit weights, not %d", wbits);
    if (act_bits != 8)
        return cnd_errf(CND_EINVAL, "integer artifacts have 8-bit activations, not %d", act_bits);
    cnd_model_t *f = NULL;
    int rc = cnd_quant_fold_bn(&f, m);
    cnd_qplan_t plan;
    if (!rc) rc = cnd_quant_plan(&plan, f);
    cnd_model_destroy(&f);
    if (rc) return cnd_err_wrap(rc, "the student cannot be quantized");
    if (qat)
        for (int i = 0; i < m->n_layers; i++)
            if (m->layers[i].type == CND_L_BATCHNORM)
                return cnd_errf(CND_EINVAL,
                                "quantization-aware rounds need a student without "
                                "batchnorm (layer %d is one)",
                                i + 1);
    return 0;
}

/* Calibrates the folded copy of m; ranges has CND_QUANT_MAX_POINTS entries. */
static int s_calibrate(cnd_qrange_t *ranges, int *w_mse, cnd_qplan_t *plan, cnd_model_t **folded,
                       const cnd_model_t *m, const cnd_dataset_t *calib, int wbits)
{
    *folded = NULL;
    if (!calib || calib->n == 0) return cnd_errf(CND_EINVAL, "no calibration samples");
    if (cnd_shape_size(calib->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL, "calibration samples do not have the model's input shape");
    int rc = cnd_quant_fold_bn(folded, m);
    if (!rc) rc = cnd_quant_plan(plan, *folded);
    if (rc) return rc;
    size_t n = calib->n < CND_FEDQ_CALIB_MAX ? calib->n : CND_FEDQ_CALIB_MAX;
    size_t d = cnd_shape_size(m->in);
    float *x = malloc(n * d * sizeof *x);
    if (!x) return cnd_errf(CND_ENOMEM, "calibration: out of memory");
    memcpy(x, calib->x, n * d * sizeof *x);
    cnd_model_normalize(*folded, x, n);
    cnd_qmethod_t chosen[CND_QUANT_MAX_POINTS];
    rc = cnd_quant_calibrate(ranges, chosen, w_mse, *folded, plan, x, n, CND_QM_AUTO, wbits);
    free(x);
    return rc;
}

int cnd_fedq_annotate(cnd_model_t *m, const cnd_dataset_t *calib, int wbits)
{
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    cnd_qplan_t plan;
    cnd_model_t *f = NULL;
    int rc = s_calibrate(ranges, w_mse, &plan, &f, m, calib, wbits);
    cnd_model_destroy(&f);
    if (rc) return cnd_err_wrap(rc, "calibrating the global model for QAT");
    size_t cap = (size_t)plan.n_points * 40 + 16;
    char *buf = malloc(cap);
    if (!buf) return cnd_errf(CND_ENOMEM, "QAT metadata: out of memory");
    size_t o = 0;
    for (int p = 0; p < plan.n_points; p++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%.9g,%.9g", p ? ";" : "", (double)ranges[p].lo,
                              (double)ranges[p].hi);
    rc = cnd_model_meta_set(m, CND_FEDQ_META_RANGES, buf);
    o = 0;
    for (int i = 0; i < m->n_layers && !rc; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? "," : "", w_mse[i] ? 1 : 0);
    if (!rc) rc = cnd_model_meta_set(m, CND_FEDQ_META_WMSE, buf);
    snprintf(buf, cap, "%d", wbits);
    if (!rc) rc = cnd_model_meta_set(m, CND_FEDQ_META_WBITS, buf);
    free(buf);
    return rc;
}

int cnd_fedq_install(cnd_fq_t **fq, cnd_model_t *m)
{
    *fq = NULL;
    const char *rs = cnd_model_meta_get(m, CND_FEDQ_META_RANGES);
    const char *ws = cnd_model_meta_get(m, CND_FEDQ_META_WMSE);
    const char *bs = cnd_model_meta_get(m, CND_FEDQ_META_WBITS);
    if (!rs || !ws || !bs)
        return cnd_errf(CND_EINVAL, "the global model carries no quantization ranges for QAT");
    cnd_qplan_t plan;
    int rc = cnd_quant_plan(&plan, m);
    if (rc) return cnd_err_wrap(rc, "QAT");
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS] = {0};
    const char *p = rs;
    for (int i = 0; i < plan.n_points; i++) {
        char *end;
        double lo = strtod(p, &end);
        if (end == p || *end != ',') goto bad;
        p = end + 1;
        double hi = strtod(p, &end);
        if (end == p || !(hi >= lo) || (*end != ';' && *end != 0) ||
            (*end == 0 && i != plan.n_points - 1))
            goto bad;
        ranges[i].lo = (float)lo;
        ranges[i].hi = (float)hi;
        p = *end ? end + 1 : end;
    }
    if (*p) goto bad;
    p = ws;
    for (int i = 0; i < m->n_layers; i++) {
        if ((*p != '0' && *p != '1') || (p[1] != ',' && p[1] != 0)) goto bad;
        w_mse[i] = *p == '1';
        p += p[1] ? 2 : 1;
    }
    int wbits = atoi(bs);
    if (wbits != 8 && wbits != 4) goto bad;
    return cnd_fq_new(fq, m, &plan, ranges, w_mse, wbits, 0, plan.n_points);
bad:
    return cnd_errf(CND_EINVAL, "the global model's QAT metadata is malformed");
}

int cnd_fedq_freeze(uint8_t **data, size_t *len, const cnd_model_t *m, const cnd_dataset_t *calib,
                    int wbits)
{
    *data = NULL;
    *len = 0;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    cnd_qplan_t plan;
    cnd_model_t *f = NULL;
    cnd_qmodel_t *q = NULL;
    uint8_t *tin = NULL;
    int rc = s_calibrate(ranges, w_mse, &plan, &f, m, calib, wbits);
    if (!rc) rc = cnd_qmodel_build(&q, f, &plan, ranges, w_mse, NULL, wbits);
    /* Self-test vectors: the first calibration samples (public data), as raw pixels when the
     * data are 0..255 integers, the way a device feeds them. */
    if (!rc) {
        size_t d = cnd_shape_size(calib->shape);
        int nt = calib->n < 4 ? (int)calib->n : 4;
        if (cnd_quant_raw_is_u8(calib->x, (size_t)nt * d)) {
            tin = malloc((size_t)nt * d);
            if (!tin) rc = cnd_errf(CND_ENOMEM, "self-tests: out of memory");
            int C = calib->shape.c;
            size_t hw = (size_t)calib->shape.h * calib->shape.w;
            for (int t = 0; !rc && t < nt; t++)
                for (int c = 0; c < C; c++)
                    for (size_t p = 0; p < hw; p++)
                        tin[(size_t)t * d + p * C + c] =
                            (uint8_t)calib->x[(size_t)t * d + (size_t)c * hw + p];
            if (!rc) rc = cnd_artifact_set_selftests(q, tin, nt, CND_RT_TEST_RAW_U8);
        }
    }
    if (!rc) rc = cnd_artifact_serialize(q, data, len);
    /* The artifact must load and pass its own self-test before anyone signs it. */
    if (!rc) {
        cnd_artifact_t *a = NULL;
        rc = cnd_artifact_open(&a, *data, *len, "the federated artifact");
        if (!rc) rc = cnd_artifact_selftest(a, "the federated artifact");
        cnd_artifact_destroy(&a);
    }
    if (rc) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    free(tin);
    cnd_qmodel_destroy(&q);
    cnd_model_destroy(&f);
    return rc;
}
