/*
 * cmd_quantize.c: `condenser quantize MODEL --data SPEC --out MODEL.cndq`: batchnorm folding,
 * calibration (post-training quantization) and optionally quantization-aware fine-tuning, then
 * the integer artifact with its self-tests, a per-layer report and the test accuracy of the
 * float model next to the integer runtime's.
 *
 * Calibration samples are the first --calib of a seeded shuffle of the training split, so a
 * run is reproducible. The integer accuracy is measured by loading the artifact just written
 * through the runtime, i.e. exactly what a device will compute.
 */
#include "artifact.h"
#include "cli.h"
#include "clock.h"
#include "cmd_common.h"
#include "commands.h"
#include "digest.h"
#include "distill.h"
#include "fileio.h"
#include "modelfile.h"
#include "quant.h"
#include "quant_eval.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int s_selftest_inputs(uint8_t **out, int *kind, const cnd_dataset_t *ds, int n,
                             const cnd_artifact_t *tmp)
{
    size_t d = cnd_shape_size(ds->shape);
    int C = ds->shape.c;
    size_t hw = (size_t)ds->shape.h * ds->shape.w;
    if ((size_t)n > ds->n) n = (int)ds->n;
    *out = malloc(n ? (size_t)n * d : 1);
    if (!*out) return CND_ENOMEM;
    *kind = cnd_quant_raw_is_u8(ds->x, (size_t)n * d) ? CND_RT_TEST_RAW_U8 : CND_RT_TEST_I8;
    for (int t = 0; t < n; t++) {
        uint8_t *dst = *out + (size_t)t * d;
        if (*kind == CND_RT_TEST_RAW_U8) {
            const float *raw = ds->x + (size_t)t * d;
            for (int c = 0; c < C; c++)
                for (size_t p = 0; p < hw; p++) dst[p * C + c] = (uint8_t)raw[(size_t)c * hw + p];
        } else {
            cnd_qeval_input(tmp, (int8_t *)dst, ds, (size_t)t);
        }
    }
    return n;
}

static int s_meta(cnd_qmodel_t *q, const char *k, const char *v)
{
    for (int i = 0; i < q->n_meta; i++)
        if (!strcmp(q->meta[i].key, k)) {
            char *nv = strdup(v);
            if (!nv) return CND_ENOMEM;
            free(q->meta[i].val);
            q->meta[i].val = nv;
            return 0;
        }
    if (q->n_meta >= CND_RT_META_MAX) return 0;
    q->meta[q->n_meta].key = strdup(k);
    q->meta[q->n_meta].val = strdup(v);
    if (!q->meta[q->n_meta].key || !q->meta[q->n_meta].val) return CND_ENOMEM;
    q->n_meta++;
    return 0;
}

int cnd_cmd_quantize(int argc, char **argv)
{
    const char *data = "fmnist", *out = NULL, *method_s = "auto", *teacher = NULL, *test = NULL;
    long calib = 500, wbits = 8, qat_epochs = 0, batch = 64, seed = 1, threads = 0;
    long selftests = 4, report_n = 1000, subset = 0;
    double lr = 2e-4, T = CND_DISTILL_DEFAULT_T, alpha = CND_DISTILL_DEFAULT_ALPHA;
    int no_report = 0;
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &data, "SPEC",
         "training data for calibration and QAT (default fmnist)"},
        {"test", CND_OPT_STR, &test, "SPEC", "test data (default: the dataset's test split)"},
        {"calib", CND_OPT_INT, &calib, "N", "calibration samples (default 500, at most 500)", 1,
         500},
        {"method", CND_OPT_STR, &method_s, "M", "auto | minmax | percentile | mse (default auto)"},
        {"wbits", CND_OPT_INT, &wbits, "B", "weight bits: 8 (W8A8) or 4 (W4A8) (default 8)", 4, 8},
        {"qat-epochs", CND_OPT_INT, &qat_epochs, "N",
         "quantization-aware fine-tuning epochs (default 0)", 0, 1000},
        {"teacher", CND_OPT_STR, &teacher, "T.cnd",
         "QAT with the distillation loss from this teacher (needs --qat-epochs)"},
        {"temperature", CND_OPT_DBL, &T, "T", "distillation temperature (default 4)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &alpha, "A", "weight of the teacher's soft targets (default 0.5)", 0,
         1},
        {"lr", CND_OPT_DBL, &lr, "X", "QAT learning rate, Adam with cosine decay (default 2e-4)",
         1e-9, 1},
        {"batch", CND_OPT_INT, &batch, "B", "QAT batch size (default 64)", 1, 4096},
        {"subset", CND_OPT_INT, &subset, "N", "use a random N-sample subset of the training data",
         1, 1e9},
        {"seed", CND_OPT_INT, &seed, "S", "seed for calibration sampling and QAT (default 1)", 0,
         1e15},
        {"selftests", CND_OPT_INT, &selftests, "N", "self-test vectors to embed (default 4)", 0,
         64},
        {"report-samples", CND_OPT_INT, &report_n, "N",
         "test samples for the per-layer report (default 1000)", 1, 1e7},
        {"no-report", CND_OPT_FLAG, &no_report, NULL, "skip the per-layer report"},
        {"threads", CND_OPT_INT, &threads, "T", "BLAS threads", 1, 64},
        {"out", CND_OPT_STR, &out, "FILE", "where to write the artifact (.cndq)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser quantize MODEL --out MODEL.cndq [--data SPEC] [--calib N] [--method M] "
        "[--wbits 8|4] [--qat-epochs N [--teacher T.cnd]]",
        "Quantizes a float model to an integer-only .cndq artifact: folds batchnorm, calibrates "
        "activation ranges on at most 500 training samples (auto picks minmax, percentile or "
        "MSE per tensor by the smallest logit error), optionally fine-tunes with fake "
        "quantization (QAT, with the distillation loss when --teacher is given), embeds self-test "
        "vectors, and prints a per-layer report (SNR "
        "float vs integer, bytes, MACs) with float and integer test accuracy.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!out) return cnd_errf(CND_EINVAL, "--out is required (try --help)");
    if (wbits != 8 && wbits != 4) return cnd_errf(CND_EINVAL, "--wbits must be 8 or 4");
    if (teacher && qat_epochs == 0)
        return cnd_errf(CND_EINVAL, "--teacher distills during quantization-aware training: "
                                    "give --qat-epochs N too");
    cnd_qmethod_t method;
    if ((rc = cnd_quant_method_parse(method_s, &method))) return rc;
    cnd_set_threads((int)threads);

    cnd_model_t *m0 = NULL, *m = NULL;
    cnd_dataset_t *tr = NULL, *te = NULL, *cal = NULL;
    cnd_qmodel_t *q = NULL;
    cnd_artifact_t *art = NULL;
    float *xc = NULL, *tlog = NULL, *w_scales[CND_SPEC_MAX_LAYERS] = {0};
    uint8_t *tin = NULL, *bytes = NULL, *src = NULL;
    size_t len = 0, srclen = 0;
    cnd_qreport_row_t *rows = NULL;
    const char *path = pos[0];
    double t0 = cnd_now();

    if ((rc = cnd_file_read(path, CND_MODELFILE_MAX, &src, &srclen))) goto done;
    if ((rc = cnd_model_deserialize(&m0, src, srclen, path))) goto done;
    if ((rc = cnd_cmd_load_data(data, test, subset, (uint64_t)seed, &tr, &te))) goto done;
    if ((rc = cnd_quant_fold_bn(&m, m0))) goto done;
    cnd_qplan_t plan;
    if ((rc = cnd_quant_plan(&plan, m))) goto done;
    if (cnd_shape_size(tr->shape) != cnd_shape_size(m->in)) {
        rc = cnd_errf(CND_EINVAL, "%s: samples are %dx%dx%d, the model expects %dx%dx%d", data,
                      tr->shape.c, tr->shape.h, tr->shape.w, m->in.c, m->in.h, m->in.w);
        goto done;
    }
    printf("quantizing %s (%s) to W%ldA8 with %ld calibration samples, method %s\n", path, m0->spec,
           wbits, calib < (long)tr->n ? calib : (long)tr->n, method_s);

    /* calibration set: a seeded sample of the training split */
    size_t nc = (size_t)calib < tr->n ? (size_t)calib : tr->n;
    {
        uint32_t *idx = malloc(tr->n * sizeof *idx);
        if (!idx) {
            rc = CND_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < tr->n; i++) idx[i] = (uint32_t)i;
        cnd_rng_t rng;
        cnd_rng_seed(&rng, (uint64_t)seed ^ 0xca11b);
        cnd_rng_shuffle_u32(&rng, idx, tr->n);
        rc = cnd_data_subset(&cal, tr, idx, nc);
        free(idx);
        if (rc) goto done;
    }
    size_t d = cnd_shape_size(m->in);
    xc = malloc(nc * d * sizeof(float));
    if (!xc) {
        rc = CND_ENOMEM;
        goto done;
    }
    memcpy(xc, cal->x, nc * d * sizeof(float));
    cnd_model_normalize(m, xc, nc);
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    cnd_qmethod_t chosen[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    double tc = cnd_now();
    if ((rc = cnd_quant_calibrate(ranges, chosen, w_mse, m, &plan, xc, nc, method, (int)wbits)))
        goto done;
    double t_cal = cnd_now() - tc;
    printf("calibrated %d quantization points in %.2fs:", plan.n_points, t_cal);
    for (int p = 0; p < plan.n_points; p++)
        printf(" %s[%.3g,%.3g]", cnd_quant_method_name(chosen[p]), ranges[p].lo, ranges[p].hi);
    printf("\n");

    if (qat_epochs > 0) {
        cnd_qat_cfg_t qc = {(int)qat_epochs, (int)batch, (float)lr, (uint64_t)seed, 1, NULL, NULL};
        cnd_distill_t dctx;
        if (teacher) { /* teacher logits of the raw training set, once, before normalising it */
            cnd_model_t *t = NULL;
            if ((rc = cnd_model_load(&t, teacher))) goto done;
            if (t->n_classes != m->n_classes) {
                rc = cnd_errf(CND_EINVAL,
                              "--teacher %s has %d outputs, the model %d: they must "
                              "match",
                              teacher, t->n_classes, m->n_classes);
                cnd_model_destroy(&t);
                goto done;
            }
            rc = cnd_distill_teacher_logits(&tlog, t, tr);
            cnd_model_destroy(&t);
            if (rc) goto done;
            dctx = (cnd_distill_t){tlog, tr->y, m->n_classes, (float)T, (float)alpha};
            qc.loss = cnd_distill_loss;
            qc.loss_ctx = &dctx;
        }
        cnd_model_normalize(m, tr->x, tr->n);
        printf("quantization-aware fine-tuning: %ld epochs, Adam lr %g, batch %ld, loss %s\n",
               qat_epochs, lr, batch, teacher ? "distillation" : "cross-entropy");
        if (teacher) printf("  teacher %s, T %g, alpha %g\n", teacher, T, alpha);
        rc = cnd_quant_qat(m, &plan, ranges, w_mse, w_scales, (int)wbits, tr, NULL, &qc);
        if (rc) goto done;
        printf("observed ranges:");
        for (int p = 0; p < plan.n_points; p++) printf(" [%.3g,%.3g]", ranges[p].lo, ranges[p].hi);
        printf("\n");
    }
    double t_q0 = cnd_now();
    if ((rc = cnd_qmodel_build(&q, m, &plan, ranges, w_mse, qat_epochs > 0 ? w_scales : NULL,
                               (int)wbits)))
        goto done;
    /* self-tests: from the test split when there is one, else calibration samples */
    {
        uint8_t *b0;
        size_t l0;
        if ((rc = cnd_artifact_serialize(q, &b0, &l0))) goto done;
        rc = cnd_artifact_open(&art, b0, l0, out);
        free(b0);
        if (rc) goto done;
        int kind, nt = s_selftest_inputs(&tin, &kind, te ? te : cal, (int)selftests, art);
        if (nt < 0) {
            rc = nt;
            goto done;
        }
        cnd_artifact_destroy(&art);
        if ((rc = cnd_artifact_set_selftests(q, tin, nt, kind))) goto done;
    }
    double t_ptq = (cnd_now() - t_q0) + t_cal;
    char buf[128];
    uint8_t dg[CND_SHA256_BYTES];
    char hex[CND_SHA256_HEX];
    cnd_sha256(dg, src, srclen);
    if ((rc = s_meta(q, "source_sha256", cnd_hex(hex, dg, sizeof dg)))) goto done;
    if ((rc = s_meta(q, "quant_method", method_s))) goto done;
    snprintf(buf, sizeof buf, "W%ldA8", wbits);
    if ((rc = s_meta(q, "quant_scheme", buf))) goto done;
    snprintf(buf, sizeof buf, "%ld", qat_epochs);
    if ((rc = s_meta(q, "qat_epochs", buf))) goto done;
    if (teacher) {
        snprintf(buf, sizeof buf, "T=%g alpha=%g", T, alpha);
        if ((rc = s_meta(q, "qat_distilled_from", teacher)) || (rc = s_meta(q, "qat_distill", buf)))
            goto done;
    }
    if ((rc = cnd_artifact_serialize(q, &bytes, &len))) goto done;
    if ((rc = cnd_artifact_open(&art, bytes, len, out))) goto done;
    if ((rc = cnd_artifact_selftest(art, out))) goto done;

    if (te) {
        cnd_eval_t evf, evq;
        cnd_dataset_t *ten = NULL;
        /* float accuracy of the original model, on a normalised copy of the raw test set */
        {
            uint32_t *all = malloc(te->n * sizeof *all);
            if (!all) {
                rc = CND_ENOMEM;
                goto done;
            }
            for (size_t i = 0; i < te->n; i++) all[i] = (uint32_t)i;
            rc = cnd_data_subset(&ten, te, all, te->n);
            free(all);
            if (rc) goto done;
        }
        cnd_model_normalize(m0, ten->x, ten->n);
        rc = cnd_evaluate(m0, ten, 256, &evf);
        cnd_data_destroy(&ten);
        if (rc) goto done;
        if ((rc = cnd_qeval(art, te, &evq))) goto done;
        printf("test accuracy: float %.4f  integer %.4f  (%+.2f points, %zu samples, %s kernels)\n",
               evf.acc, evq.acc, 100.0 * (evq.acc - evf.acc), evq.n,
               cnd_rt_kernels_name(cnd_rt_get_kernels(art->rt)));
        snprintf(buf, sizeof buf, "%.4f", evf.acc);
        if ((rc = s_meta(q, "float_test_accuracy", buf))) goto done;
        snprintf(buf, sizeof buf, "%.4f", evq.acc);
        if ((rc = s_meta(q, "test_accuracy", buf))) goto done;
        if (!no_report) {
            /* per-layer report: the folded float model (after QAT if any) vs the integer runtime */
            rows = calloc((size_t)q->n_layers, sizeof *rows);
            if (!rows) {
                rc = CND_ENOMEM;
                goto done;
            }
            size_t nr = (size_t)report_n < te->n ? (size_t)report_n : te->n;
            if ((rc = cnd_qreport(rows, m, q, art, te, nr))) goto done;
            printf("\nper-layer report (%zu test samples; SNR of the integer output vs the float "
                   "model%s):\n",
                   nr, qat_epochs ? " after QAT" : "");
            printf("  %-3s %-28s %9s %12s %10s %10s %12s\n", "#", "layer", "SNR dB", "weight B",
                   "const B", "act B", "MACs");
            size_t tw = 0, tcst = 0, ta = 0;
            uint64_t tm = 0;
            for (int i = 0; i < q->n_layers; i++) {
                cnd_qreport_row_t *r = &rows[i];
                printf("  %-3d %-28s %9.1f %12zu %10zu %10zu %12llu\n", i + 1, r->name, r->snr_db,
                       r->weight_bytes, r->const_bytes, r->act_bytes, (unsigned long long)r->macs);
                tw += r->weight_bytes;
                tcst += r->const_bytes;
                if (r->act_bytes > ta) ta = r->act_bytes;
                tm += r->macs;
            }
            printf("  %-3s %-28s %9s %12zu %10zu %10zu %12llu\n", "", "total (act: largest)", "",
                   tw, tcst, ta, (unsigned long long)tm);
        }
        free(bytes);
        bytes = NULL;
        cnd_artifact_destroy(&art);
        if ((rc = cnd_artifact_serialize(q, &bytes, &len))) goto done;
        if ((rc = cnd_artifact_open(&art, bytes, len, out))) goto done;
        if ((rc = cnd_artifact_selftest(art, out))) goto done;
    }
    if ((rc = cnd_file_write_atomic(out, bytes, len, 0644))) goto done;
    char dhex[CND_SHA256_HEX];
    cnd_hex(dhex, art->info.digest, 32);
    printf("\nwrote %s: %zu bytes (%.3fx the float model's %zu bytes), arena %zu bytes, "
           "%llu MACs, %u self-tests, sha256 %s\n",
           out, len, (double)len / (double)srclen, srclen, art->info.arena_bytes,
           (unsigned long long)art->info.macs, art->info.n_selftests, dhex);
    printf("PTQ time (calibration + build, excluding data loading and QAT): %.2fs; total %.1fs\n",
           t_ptq, cnd_now() - t0);
done:
    cnd_quant_free_scales(w_scales, m ? m->n_layers : 0);
    cnd_model_destroy(&m0);
    cnd_model_destroy(&m);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&te);
    cnd_data_destroy(&cal);
    cnd_qmodel_destroy(&q);
    cnd_artifact_destroy(&art);
    free(xc);
    free(tlog);
    free(tin);
    free(bytes);
    free(src);
    free(rows);
    return rc;
}
