/*
 * cmd_quantize.c: `condenser quantize MODEL --data SPEC --out MODEL.cndq`: batchnorm folding,
 * calibration (post-training quantization) and optionally quantization-aware fine-tuning, then
 * the integer artifact with its self-tests, a per-layer report and the test accuracy of the
 * float model next to the integer runtime's.
 *
 * Calibration samples are the first --calib of a seeded shuffle of the training split (or of
 * --calib-data's), so a run is reproducible. The integer accuracy is measured by loading the
 * artifact just written through the runtime, i.e. exactly what a device will compute.
 *
 * QAT under DP-SGD (--dp-epsilon/--dp-noise with --qat-epochs; docs/privacy.md): the QAT steps
 * are a second DP-SGD run on the records the float model was trained on, so they compose with
 * that run, whose parameters the model's metadata records (dp_sampling_rate, dp_noise,
 * dp_steps). --dp-epsilon E is the total for each record, training and QAT together: the QAT
 * noise is solved so that the composition stays within E. Calibration must then come from
 * public samples (--calib-data), and the observers stay off (quant_qat.c), so no activation
 * range is computed from the private records without noise.
 */
#include "artifact.h"
#include "cli.h"
#include "clock.h"
#include "cmd_common.h"
#include "commands.h"
#include "digest.h"
#include "distill.h"
#include "dp_accountant.h"
#include "fileio.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "quant.h"
#include "quant_eval.h"

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

/* What the command line asked for. */
typedef struct {
    const char *path, *data, *out, *method_s, *teacher, *test;
    const char *teacher_prep; /* an .onnx teacher's preprocessing (onnx_graph.h) */
    const char *calib_data;   /* --calib-data: calibration samples (public under DP) */
    const char *optname;      /* QAT optimizer */
    double momentum;          /* SGD momentum (-1: default) */
    cnd_cmd_dp_t dp;          /* --dp-*: QAT with DP-SGD */
    long calib, wbits, qat_epochs, batch, seed, threads, selftests, report_n, subset, max_wbytes;
    double lr, T, alpha;
    int no_report;
    cnd_qmethod_t method;
} s_opts_t;

/* Parses argv into o. Returns 0, 1 after --help, or a negative CND_E* code. */
static int s_parse(s_opts_t *o, int argc, char **argv)
{
    *o = (s_opts_t){.data = "fmnist",
                    .method_s = "auto",
                    .calib = 500,
                    .wbits = 8,
                    .batch = 64,
                    .seed = 1,
                    .selftests = 4,
                    .report_n = 1000,
                    .lr = 2e-4,
                    .optname = "adam",
                    .momentum = -1,
                    .T = CND_DISTILL_DEFAULT_T,
                    .alpha = CND_DISTILL_DEFAULT_ALPHA};
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &o->data, "SPEC",
         "training data for calibration and QAT (default fmnist)"},
        {"test", CND_OPT_STR, &o->test, "SPEC", "test data (default: the dataset's test split)"},
        {"calib", CND_OPT_INT, &o->calib, "N", "calibration samples (default 500, at most 500)", 1,
         500},
        {"method", CND_OPT_STR, &o->method_s, "M",
         "auto | minmax | percentile | mse (default auto)"},
        {"wbits", CND_OPT_INT, &o->wbits, "B", "weight bits: 8 (W8A8) or 4 (W4A8) (default 8)", 4,
         8},
        {"max-weight-bytes", CND_OPT_INT, &o->max_wbytes, "N",
         "mixed bits: each dense/conv layer at 8 or 4 bits, the least sensitive at 4 until the "
         "packed weights take at most N bytes",
         1, 1e12},
        {"qat-epochs", CND_OPT_INT, &o->qat_epochs, "N",
         "quantization-aware fine-tuning epochs (default 0)", 0, 1000},
        {"teacher", CND_OPT_STR, &o->teacher, "T.cnd",
         "QAT with the distillation loss from this teacher, .cnd or .onnx (needs --qat-epochs)"},
        {"teacher-preprocess", CND_OPT_STR, &o->teacher_prep, "SPEC",
         "an .onnx teacher's input preprocessing (docs/onnx.md)"},
        {"temperature", CND_OPT_DBL, &o->T, "T", "distillation temperature (default 4)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &o->alpha, "A", "weight of the teacher's soft targets (default 0.5)",
         0, 1},
        {"lr", CND_OPT_DBL, &o->lr, "X", "QAT learning rate with cosine decay (default 2e-4)", 1e-9,
         10},
        {"optimizer", CND_OPT_STR, &o->optname, "NAME", "QAT optimizer: adam | sgd (default adam)"},
        {"momentum", CND_OPT_DBL, &o->momentum, "M", "QAT SGD momentum (default 0.9)", 0, 0.999},
        {"batch", CND_OPT_INT, &o->batch, "B",
         "QAT batch size (default 64; under DP the expected batch of Poisson sampling)", 1, 4096},
        {"calib-data", CND_OPT_STR, &o->calib_data, "SPEC",
         "calibrate on this data's training split instead of --data's (public samples: "
         "required with --dp-*)"},
        CND_CMD_DP_OPTS(&o->dp),
        {"subset", CND_OPT_INT, &o->subset, "N",
         "use a random N-sample subset of the training data", 1, 1e9},
        {"seed", CND_OPT_INT, &o->seed, "S", "seed for calibration sampling and QAT (default 1)", 0,
         1e15},
        {"selftests", CND_OPT_INT, &o->selftests, "N", "self-test vectors to embed (default 4)", 0,
         64},
        {"report-samples", CND_OPT_INT, &o->report_n, "N",
         "test samples for the per-layer report (default 1000)", 1, 1e7},
        {"no-report", CND_OPT_FLAG, &o->no_report, NULL, "skip the per-layer report"},
        {"threads", CND_OPT_INT, &o->threads, "T", "BLAS threads", 1, 64},
        {"out", CND_OPT_STR, &o->out, "FILE", "where to write the artifact (.cndq)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser quantize MODEL --out MODEL.cndq [--data SPEC] [--calib N] [--method M] "
        "[--wbits 8|4 | --max-weight-bytes N] [--qat-epochs N [--teacher T.cnd]]",
        "Quantizes a float model to an integer-only .cndq artifact: folds batchnorm, calibrates "
        "activation ranges on at most 500 training samples (auto picks minmax, percentile or "
        "MSE per tensor by the smallest logit error), optionally fine-tunes with fake "
        "quantization (QAT, with the distillation loss when --teacher is given), embeds self-test "
        "vectors, and prints a per-layer report (SNR "
        "float vs integer, bytes, MACs) with float and integer test accuracy.\n"
        "With --dp-epsilon E (or --dp-noise S) the QAT steps run with DP-SGD: per-sample "
        "straight-through gradients through the fake-quantized model, clipped to --dp-clip, "
        "Gaussian noise; E is the total for each record, composing the float model's own DP "
        "training (its metadata) with the QAT steps, and the QAT noise is solved for it. Under DP "
        "the activation ranges come from --calib-data (public samples) and stay fixed; --dp-delta "
        "defaults to the model's (docs/privacy.md).",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    o->path = pos[0];
    if (!o->out) return cnd_errf(CND_EINVAL, "--out is required (try --help)");
    if (o->wbits != 8 && o->wbits != 4) return cnd_errf(CND_EINVAL, "--wbits must be 8 or 4");
    if (o->max_wbytes && o->wbits != 8)
        return cnd_errf(CND_EINVAL, "--max-weight-bytes chooses 8 or 4 bits per layer: "
                                    "leave --wbits at 8");
    if (o->teacher_prep && (!o->teacher || !cnd_onnx_is_onnx(o->teacher)))
        return cnd_errf(CND_EINVAL, "--teacher-preprocess is for .onnx teachers");
    if (o->teacher && o->qat_epochs == 0)
        return cnd_errf(CND_EINVAL, "--teacher distills during quantization-aware training: "
                                    "give --qat-epochs N too");
    if ((o->dp.epsilon > 0 || o->dp.noise > 0 || o->dp.delta > 0 || o->dp.clip > 0) &&
        o->qat_epochs == 0)
        return cnd_errf(CND_EINVAL,
                        "the --dp-* options make the quantization-aware training steps "
                        "differentially private: give --qat-epochs N (post-training quantization "
                        "trains nothing; calibrate it on public samples with --calib-data)");
    if ((o->dp.epsilon > 0 || o->dp.noise > 0) && !o->calib_data)
        return cnd_errf(CND_EINVAL,
                        "QAT under DP needs --calib-data SPEC with public samples: activation "
                        "ranges calibrated on --data's records would leave them in the artifact "
                        "without noise");
    return cnd_quant_method_parse(o->method_s, &o->method);
}

/* Everything one run holds, released by s_run_free. */
typedef struct {
    cnd_model_t *m0, *m; /* the model as read; folded (and fine-tuned) */
    cnd_dataset_t *tr, *te, *cal;
    cnd_qplan_t plan;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    cnd_qmethod_t chosen[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    float *w_scales[CND_SPEC_MAX_LAYERS]; /* from QAT, else NULL */
    cnd_qmodel_t *q;
    cnd_artifact_t *art; /* opened from bytes */
    uint8_t *src, *bytes;
    size_t srclen, len;
    cnd_dataset_t *caltr;   /* --calib-data's training split, or NULL */
    cnd_dp_segment_t dp[2]; /* under DP: the float model's own DP run (if any), then QAT's */
    int n_dp;               /* entries of dp */
    double dp_delta;        /* the delta of the stated epsilon */
    cnd_dpsgd_cfg_t dp_cfg; /* QAT's DP-SGD settings (clip 0: not private) */
    double t_cal;           /* seconds of calibration */
    int n_w4, n_weighted;   /* --max-weight-bytes: layers at 4 bits, of all weighted ones */
} s_run_t;

static void s_run_free(s_run_t *r)
{
    cnd_quant_free_scales(r->w_scales, r->m ? r->m->n_layers : 0);
    cnd_model_destroy(&r->m0);
    cnd_model_destroy(&r->m);
    cnd_data_destroy(&r->tr);
    cnd_data_destroy(&r->te);
    cnd_data_destroy(&r->cal);
    cnd_data_destroy(&r->caltr);
    cnd_qmodel_destroy(&r->q);
    cnd_artifact_destroy(&r->art);
    free(r->bytes);
    free(r->src);
}

/* The model (folded, with its quantization plan) and the data, checked against each other. */
static int s_load(s_run_t *r, const s_opts_t *o)
{
    int rc;
    if ((rc = cnd_file_read(o->path, CND_MODELFILE_MAX, &r->src, &r->srclen))) return rc;
    if ((rc = cnd_model_deserialize(&r->m0, r->src, r->srclen, o->path))) return rc;
    if ((rc = cnd_cmd_load_data(o->data, o->test, o->subset, (uint64_t)o->seed, &r->tr, &r->te,
                                &r->m0->in)))
        return rc;
    if ((rc = cnd_cmd_fit_data(r->m0, r->tr, o->data))) return rc;
    if ((rc = cnd_cmd_fit_data(r->m0, r->te, o->test ? o->test : o->data))) return rc;
    if (o->calib_data && ((rc = cnd_data_open_for(&r->caltr, o->calib_data, "train", &r->m0->in)) ||
                          (rc = cnd_cmd_fit_data(r->m0, r->caltr, o->calib_data))))
        return cnd_err_wrap(rc, "--calib-data %s", o->calib_data);
    if ((rc = cnd_quant_fold_bn(&r->m, r->m0))) return rc;
    if ((rc = cnd_quant_plan(&r->plan, r->m))) return rc;
    const cnd_model_t *m = r->m;
    const cnd_dataset_t *tr = r->tr;
    if (cnd_shape_size(tr->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL, "%s: samples are %dx%dx%d, the model expects %dx%dx%d", o->data,
                        tr->shape.c, tr->shape.h, tr->shape.w, m->in.c, m->in.h, m->in.w);
    if (r->caltr && cnd_shape_size(r->caltr->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL,
                        "--calib-data %s: samples are %dx%dx%d, the model expects "
                        "%dx%dx%d",
                        o->calib_data, r->caltr->shape.c, r->caltr->shape.h, r->caltr->shape.w,
                        m->in.c, m->in.h, m->in.w);
    if (r->caltr) tr = r->caltr;
    char scheme[64];
    if (o->max_wbytes)
        snprintf(scheme, sizeof scheme, "W8/W4A8 (weights at most %ld bytes)", o->max_wbytes);
    else
        snprintf(scheme, sizeof scheme, "W%ldA8", o->wbits);
    printf("quantizing %s (%s) to %s with %ld calibration samples, method %s\n", o->path,
           r->m0->spec, scheme, o->calib < (long)tr->n ? o->calib : (long)tr->n, o->method_s);
    return 0;
}

/* --max-weight-bytes: 8 or 4 bits per weighted layer by sensitivity (cnd_quant_mixed_bits),
 * printed as a table. */
static int s_mixed(s_run_t *r, const s_opts_t *o, const float *xc, size_t nc)
{
    cnd_qbits_row_t rows[CND_SPEC_MAX_LAYERS];
    int nr = 0;
    int rc = cnd_quant_mixed_bits(&r->plan, rows, &nr, r->m, r->ranges, r->w_mse, xc, nc,
                                  (size_t)o->max_wbytes);
    if (rc) return rc;
    size_t total = 0;
    int n4 = 0;
    printf("weight bits per layer (sensitivity: logit MSE added by that layer alone at 4 bits):\n");
    printf("  %-3s %-28s %10s %10s %12s %5s\n", "#", "layer", "bytes W8", "bytes W4", "added MSE",
           "bits");
    for (int k = 0; k < nr; k++) {
        char tok[96];
        cnd_layer_spec(&r->m->layers[rows[k].layer], tok, sizeof tok);
        printf("  %-3d %-28s %10zu %10zu %12.3g %5d\n", rows[k].layer + 1, tok, rows[k].bytes8,
               rows[k].bytes4, rows[k].err4, rows[k].bits);
        total += rows[k].bits == 8 ? rows[k].bytes8 : rows[k].bytes4;
        n4 += rows[k].bits == 4;
    }
    printf("  %d of %d layers at 4 bits: %zu weight bytes (budget %ld)\n", n4, nr, total,
           o->max_wbytes);
    r->n_w4 = n4;
    r->n_weighted = nr;
    return 0;
}

/* Activation ranges (and weight clipping) from a seeded sample of the training split. */
static int s_calibrate(s_run_t *r, const s_opts_t *o)
{
    int rc = cnd_quant_calib_sample(&r->cal, r->caltr ? r->caltr : r->tr, (size_t)o->calib,
                                    (uint64_t)o->seed);
    if (rc) return rc;
    size_t nc = r->cal->n, d = cnd_shape_size(r->m->in);
    float *xc = malloc(nc * d * sizeof(float));
    if (!xc) return CND_ENOMEM;
    memcpy(xc, r->cal->x, nc * d * sizeof(float));
    cnd_model_normalize(r->m, xc, nc);
    double tc = cnd_now();
    rc = cnd_quant_calibrate(r->ranges, r->chosen, r->w_mse, r->m, &r->plan, xc, nc, o->method,
                             (int)o->wbits);
    if (!rc) {
        r->t_cal = cnd_now() - tc;
        printf("calibrated %d quantization points in %.2fs:", r->plan.n_points, r->t_cal);
        for (int p = 0; p < r->plan.n_points; p++)
            printf(" %s[%.3g,%.3g]", cnd_quant_method_name(r->chosen[p]), r->ranges[p].lo,
                   r->ranges[p].hi);
        printf("\n");
    }
    if (!rc && o->max_wbytes) rc = s_mixed(r, o, xc, nc);
    free(xc);
    return rc;
}

/* A number from the model's metadata key k into *v: 0, 1 when absent, or CND_EINVAL when it is
 * not a finite number in [lo, hi]. */
static int s_meta_num(const cnd_model_t *m, const char *k, double lo, double hi, double *v)
{
    const char *s = cnd_model_meta_get(m, k);
    if (!s) return 1;
    char *end = NULL;
    *v = strtod(s, &end);
    if (end == s || *end || !(*v >= lo && *v <= hi))
        return cnd_errf(CND_EINVAL, "the model's metadata %s = '%.40s' is not a number in [%g, %g]",
                        k, s, lo, hi);
    return 0;
}

/* The float model's own DP-SGD run, as cnd_cmd_dp_stamp recorded it, into r->dp[0] (r->n_dp 1),
 * and its delta into *delta; r->n_dp 0 when the metadata records none. */
static int s_dp_prior(s_run_t *r, double *delta)
{
    double q = 0, sigma = 0, steps = 0;
    int a = s_meta_num(r->m0, "dp_sampling_rate", 1e-12, 1, &q);
    int b = s_meta_num(r->m0, "dp_noise", 1e-6, 1e6, &sigma);
    int c = s_meta_num(r->m0, "dp_steps", 0, 1e12, &steps);
    int d = s_meta_num(r->m0, "dp_delta", 1e-300, 1, delta);
    if (a < 0 || b < 0 || c < 0 || d < 0) return a < 0 ? a : b < 0 ? b : c < 0 ? c : d;
    r->n_dp = 0;
    if (a && b && c) return 0;
    if (a || b || c)
        return cnd_errf(CND_EINVAL, "the model's metadata records only part of a DP-SGD run "
                                    "(dp_sampling_rate, dp_noise, dp_steps)");
    r->dp[0] = (cnd_dp_segment_t){.q = q, .sigma = sigma, .steps = (long)steps};
    r->n_dp = 1;
    return 0;
}

/* Epsilon at r->dp_delta of r->dp[0..n) with the QAT run's noise set to sigma. */
static int s_dp_total(s_run_t *r, double sigma, double *eps)
{
    r->dp[r->n_dp - 1].sigma = sigma;
    cnd_dp_params_t p = {.delta = r->dp_delta};
    return cnd_dp_epsilon_composed(&p, r->dp, (size_t)r->n_dp, eps, NULL);
}

/* The smallest QAT noise (within 1e-7 relative, rounded up) keeping the composition within
 * target; CND_ERANGE when even noise 1e4 does not. */
static int s_dp_solve(s_run_t *r, double target)
{
    double lo = 1.0, hi = 1.0, eps = 0;
    int rc;
    while (!(rc = s_dp_total(r, hi, &eps)) && eps > target && hi < 1e4) hi *= 2;
    if (rc) return rc;
    if (eps > target)
        return cnd_errf(CND_ERANGE,
                        "--dp-epsilon %g cannot be met: with the model's own DP training the "
                        "total stays above it at any QAT noise (%.4f at noise 1e4)",
                        target, eps);
    lo = hi / 2;
    while (!(rc = s_dp_total(r, lo, &eps)) && eps <= target && lo > 1e-3) {
        hi = lo;
        lo /= 2;
    }
    if (rc) return rc;
    if (eps <= target) return s_dp_total(r, lo, &eps); /* tiny noise already suffices */
    while (hi - lo > 1e-7 * hi) {
        double mid = 0.5 * (lo + hi);
        if ((rc = s_dp_total(r, mid, &eps))) return rc;
        *(eps > target ? &lo : &hi) = mid;
    }
    return s_dp_total(r, hi, &eps);
}

/* QAT under DP: r->dp_cfg and r->dp for the n training records, the QAT noise solved for the
 * total --dp-epsilon or given by --dp-noise; prints the plan. */
static int s_dp_plan(s_run_t *r, const s_opts_t *o, size_t n)
{
    const cnd_cmd_dp_t *d = &o->dp;
    if (d->epsilon > 0 && d->noise > 0)
        return cnd_errf(CND_EINVAL, "give --dp-epsilon (the noise is solved for it) or "
                                    "--dp-noise, not both");
    double prior_delta = 0;
    int rc = s_dp_prior(r, &prior_delta);
    if (rc) return rc;
    r->dp_delta = d->delta > 0 ? d->delta : prior_delta > 0 ? prior_delta : 1e-5;
    if (r->dp_delta > 1.0 / (double)n)
        return cnd_errf(CND_EINVAL, "--dp-delta %g is above 1/N = %g for %zu training records",
                        r->dp_delta, 1.0 / (double)n, n);
    if ((size_t)o->batch > n)
        return cnd_errf(CND_EINVAL, "DP-SGD: --batch %ld is above the %zu training records",
                        o->batch, n);
    cnd_dp_segment_t *qat = &r->dp[r->n_dp++];
    *qat = (cnd_dp_segment_t){.q = (double)o->batch / (double)n,
                              .sigma = d->noise,
                              .steps = o->qat_epochs *
                                       (long)((n + (size_t)o->batch - 1) / (size_t)o->batch)};
    double total = 0, alone = 0;
    if (d->epsilon > 0 && (rc = s_dp_solve(r, d->epsilon))) return rc;
    if ((rc = s_dp_total(r, qat->sigma, &total))) return rc;
    cnd_dp_params_t p = {
        .q = qat->q, .sigma = qat->sigma, .steps = qat->steps, .delta = r->dp_delta};
    if ((rc = cnd_dp_epsilon(&p, &alone, NULL))) return rc;
    r->dp_cfg = (cnd_dpsgd_cfg_t){qat->sigma, d->clip > 0 ? d->clip : 1.0, r->dp_delta};
    printf("QAT with DP-SGD: Poisson sampling rate %.6g (expected batch %ld of %zu), %ld steps, "
           "clip %g, noise multiplier %.6g%s: the QAT steps alone (epsilon %.4f, delta %g)\n",
           qat->q, o->batch, n, qat->steps, r->dp_cfg.clip, qat->sigma,
           d->epsilon > 0 ? " (solved)" : "", alone, r->dp_delta);
    if (r->n_dp == 2)
        printf("  composed with the model's DP training (sampling rate %.6g, noise %.6g, %ld "
               "steps): total (epsilon %.4f, delta %g) for each record\n",
               r->dp[0].q, r->dp[0].sigma, r->dp[0].steps, total, r->dp_delta);
    else
        printf("  the model's metadata records no DP training: the total covers the QAT steps "
               "only, which holds for records the float model was not trained on\n");
    return 0;
}

/* Quantization-aware fine-tuning of the folded model, distilled from --teacher if given (its
 * logits over the raw training set, once, before the set is normalised). */
static int s_qat(s_run_t *r, const s_opts_t *o)
{
    cnd_model_t *m = r->m;
    cnd_optim_cfg_t optim;
    cnd_train_result_t res;
    int rc = cnd_cmd_optim(o->optname, o->lr, 0, o->momentum, &optim);
    if (rc) return rc;
    if (optim.kind != CND_OPT_ADAM && optim.kind != CND_OPT_SGD)
        return cnd_errf(CND_EINVAL, "--optimizer: QAT runs adam or sgd, not %s", o->optname);
    if ((o->dp.epsilon > 0 || o->dp.noise > 0) && (rc = s_dp_plan(r, o, r->tr->n))) return rc;
    cnd_qat_cfg_t qc = {
        (int)o->qat_epochs, (int)o->batch, (float)o->lr, (uint64_t)o->seed, 1, NULL, NULL, &optim,
        r->dp_cfg,          &res};
    cnd_distill_t dctx;
    float *tlog = NULL;
    if (o->teacher && cnd_onnx_is_onnx(o->teacher)) {
        if ((rc = cnd_onnx_teacher_logits(&tlog, o->teacher, o->teacher_prep, r->tr, m->n_classes)))
            return rc;
        dctx = (cnd_distill_t){tlog, r->tr->y, m->n_classes, (float)o->T, (float)o->alpha};
        qc.loss = cnd_distill_loss;
        qc.loss_ctx = &dctx;
    } else if (o->teacher) {
        cnd_model_t *t = NULL;
        if ((rc = cnd_model_load(&t, o->teacher))) return rc;
        if (t->n_classes != m->n_classes)
            rc = cnd_errf(CND_EINVAL, "--teacher %s has %d outputs, the model %d: they must match",
                          o->teacher, t->n_classes, m->n_classes);
        if (!rc) rc = cnd_distill_teacher_logits(&tlog, t, r->tr);
        cnd_model_destroy(&t);
        if (rc) return rc;
        dctx = (cnd_distill_t){tlog, r->tr->y, m->n_classes, (float)o->T, (float)o->alpha};
        qc.loss = cnd_distill_loss;
        qc.loss_ctx = &dctx;
    }
    cnd_model_normalize(m, r->tr->x, r->tr->n);
    printf("quantization-aware fine-tuning: %ld epochs, %s lr %g, batch %ld, loss %s\n",
           o->qat_epochs, optim.kind == CND_OPT_SGD ? "SGD" : "Adam", o->lr, o->batch,
           o->teacher ? "distillation" : "cross-entropy");
    if (o->teacher) printf("  teacher %s, T %g, alpha %g\n", o->teacher, o->T, o->alpha);
    rc = cnd_quant_qat(m, &r->plan, r->ranges, r->w_mse, r->w_scales, (int)o->wbits, r->tr, NULL,
                       &qc);
    free(tlog);
    if (rc) return rc;
    if (r->dp_cfg.clip > 0) {
        double total = 0;
        r->dp[r->n_dp - 1].steps = res.steps; /* as run (equal to the plan) */
        if ((rc = s_dp_total(r, r->dp_cfg.noise, &total))) return rc;
        printf("privacy: (epsilon %.4f, delta %g)-DP for each training record, %s (QAT: "
               "clipped %.0f%% of per-sample gradients in the last epoch)\n",
               total, r->dp_delta,
               r->n_dp == 2 ? "the model's DP training and the QAT steps composed"
                            : "the QAT steps only",
               100.0 * res.dp_clipped);
        printf("fixed ranges (calibrated on --calib-data, no observers under DP):");
    } else {
        printf("observed ranges:");
    }
    for (int p = 0; p < r->plan.n_points; p++)
        printf(" [%.3g,%.3g]", r->ranges[p].lo, r->ranges[p].hi);
    printf("\n");
    return 0;
}

/* The integer model with its self-test vectors: from the test split when there is one, else
 * calibration samples, quantized by a first build of the artifact. */
static int s_build(s_run_t *r, const s_opts_t *o)
{
    int rc = cnd_qmodel_build(&r->q, r->m, &r->plan, r->ranges, r->w_mse,
                              o->qat_epochs > 0 ? r->w_scales : NULL, (int)o->wbits);
    if (rc) return rc;
    uint8_t *b0, *tin = NULL;
    size_t l0;
    cnd_artifact_t *tmp = NULL;
    if ((rc = cnd_artifact_serialize(r->q, &b0, &l0))) return rc;
    rc = cnd_artifact_open(&tmp, b0, l0, o->out);
    free(b0);
    if (rc) return rc;
    int kind, nt = s_selftest_inputs(&tin, &kind, r->te ? r->te : r->cal, (int)o->selftests, tmp);
    cnd_artifact_destroy(&tmp);
    rc = nt < 0 ? nt : cnd_artifact_set_selftests(r->q, tin, nt, kind);
    free(tin);
    return rc;
}

/* Serializes the integer model into r->bytes and opens and self-tests the result (r->art). */
static int s_serialize(s_run_t *r, const s_opts_t *o)
{
    free(r->bytes);
    r->bytes = NULL;
    cnd_artifact_destroy(&r->art);
    int rc;
    if ((rc = cnd_artifact_serialize(r->q, &r->bytes, &r->len))) return rc;
    if ((rc = cnd_artifact_open(&r->art, r->bytes, r->len, o->out))) return rc;
    return cnd_artifact_selftest(r->art, o->out);
}

/* The privacy the artifact's metadata states. Under DP: dp_epsilon and dp_delta are the total,
 * dp_runs every run composed as `condenser privacy --compose` takes them, qat_dp_* the QAT
 * run. A DP-trained model fine-tuned without DP keeps no guarantee: dp_epsilon becomes inf. */
static int s_stamp_dp(s_run_t *r, const s_opts_t *o)
{
    char v[64], runs[160] = "";
    int rc;
    if (!(r->dp_cfg.clip > 0)) {
        if (!o->qat_epochs || !cnd_model_meta_get(r->m0, "dp_epsilon")) return 0;
        printf("warning: the model was trained with DP-SGD, but this QAT is not private: the "
               "artifact's dp_epsilon is inf (no guarantee)\n");
        return cnd_qmodel_meta_set(r->q, "dp_epsilon", "inf");
    }
    double total = 0;
    if ((rc = s_dp_total(r, r->dp_cfg.noise, &total))) return rc;
    for (int i = 0; i < r->n_dp; i++) {
        size_t u = strlen(runs);
        snprintf(runs + u, sizeof runs - u, "%s%.9g:%.9g:%ld", i ? "," : "", r->dp[i].q,
                 r->dp[i].sigma, r->dp[i].steps);
    }
    const cnd_dp_segment_t *qs = &r->dp[r->n_dp - 1];
    struct {
        const char *k;
        const char *fmt;
        double x;
    } kv[] = {{"dp_epsilon", "%.6f", total},           {"dp_delta", "%.6g", r->dp_delta},
              {"qat_dp_noise", "%.9g", qs->sigma},     {"qat_dp_clip", "%.9g", r->dp_cfg.clip},
              {"qat_dp_sampling_rate", "%.9g", qs->q}, {"qat_dp_steps", "%.0f", (double)qs->steps}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        snprintf(v, sizeof v, kv[i].fmt, kv[i].x);
        if ((rc = cnd_qmodel_meta_set(r->q, kv[i].k, v))) return rc;
    }
    return cnd_qmodel_meta_set(r->q, "dp_runs", runs);
}

/* Provenance and settings in the artifact's metadata. */
static int s_stamp(s_run_t *r, const s_opts_t *o)
{
    char buf[128], hex[CND_SHA256_HEX];
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, r->src, r->srclen);
    int rc;
    if ((rc = cnd_qmodel_meta_set(r->q, "source_sha256", cnd_hex(hex, dg, sizeof dg)))) return rc;
    if ((rc = cnd_qmodel_meta_set(r->q, "quant_method", o->method_s))) return rc;
    if (o->max_wbytes)
        snprintf(buf, sizeof buf, "W8W4A8");
    else
        snprintf(buf, sizeof buf, "W%ldA8", o->wbits);
    if ((rc = cnd_qmodel_meta_set(r->q, "quant_scheme", buf))) return rc;
    if (o->max_wbytes) {
        char bits[3 * CND_SPEC_MAX_LAYERS + 1] = "";
        size_t u = 0;
        for (int i = 0; i < r->m->n_layers && u + 4 < sizeof bits; i++) {
            const cnd_layer_t *l = &r->m->layers[i];
            if (l->type == CND_L_DENSE || l->type == CND_L_CONV2D || l->type == CND_L_GCONV)
                u += (size_t)snprintf(bits + u, sizeof bits - u, "%s%d", u ? "," : "",
                                      cnd_quant_layer_wbits(&r->plan, i, 8));
        }
        if ((rc = cnd_qmodel_meta_set(r->q, "weight_bits", bits))) return rc;
    }
    snprintf(buf, sizeof buf, "%ld", o->qat_epochs);
    if ((rc = cnd_qmodel_meta_set(r->q, "qat_epochs", buf))) return rc;
    if (o->teacher) {
        snprintf(buf, sizeof buf, "T=%g alpha=%g", o->T, o->alpha);
        if ((rc = cnd_qmodel_meta_set(r->q, "qat_distilled_from", o->teacher)) ||
            (rc = cnd_qmodel_meta_set(r->q, "qat_distill", buf)))
            return rc;
    }
    if (o->calib_data && (rc = cnd_qmodel_meta_set(r->q, "calib_data", o->calib_data))) return rc;
    return s_stamp_dp(r, o);
}

/* Float accuracy of the original model, on a normalised copy of the raw test set. */
static int s_float_accuracy(cnd_eval_t *ev, const s_run_t *r)
{
    const cnd_dataset_t *te = r->te;
    cnd_dataset_t *ten = NULL;
    uint32_t *all = malloc(te->n * sizeof *all);
    if (!all) return CND_ENOMEM;
    for (size_t i = 0; i < te->n; i++) all[i] = (uint32_t)i;
    int rc = cnd_data_subset(&ten, te, all, te->n);
    free(all);
    if (rc) return rc;
    cnd_model_normalize(r->m0, ten->x, ten->n);
    rc = cnd_evaluate(r->m0, ten, 256, ev);
    cnd_data_destroy(&ten);
    return rc;
}

/* Per-layer report: the folded float model (after QAT if any) vs the integer runtime. */
static int s_report(const s_run_t *r, const s_opts_t *o)
{
    const cnd_qmodel_t *q = r->q;
    cnd_qreport_row_t *rows = calloc((size_t)q->n_layers, sizeof *rows);
    if (!rows) return CND_ENOMEM;
    size_t nr = (size_t)o->report_n < r->te->n ? (size_t)o->report_n : r->te->n;
    int rc = cnd_qreport(rows, r->m, q, r->art, r->te, nr);
    if (rc) {
        free(rows);
        return rc;
    }
    printf("\nper-layer report (%zu test samples; SNR of the integer output vs the float "
           "model%s):\n",
           nr, o->qat_epochs ? " after QAT" : "");
    printf("  %-3s %-28s %9s %12s %10s %10s %12s\n", "#", "layer", "SNR dB", "weight B", "const B",
           "act B", "MACs");
    size_t tw = 0, tcst = 0, ta = 0;
    uint64_t tm = 0;
    for (int i = 0; i < q->n_layers; i++) {
        const cnd_qreport_row_t *x = &rows[i];
        printf("  %-3d %-28s %9.1f %12zu %10zu %10zu %12llu\n", i + 1, x->name, x->snr_db,
               x->weight_bytes, x->const_bytes, x->act_bytes, (unsigned long long)x->macs);
        tw += x->weight_bytes;
        tcst += x->const_bytes;
        if (x->act_bytes > ta) ta = x->act_bytes;
        tm += x->macs;
    }
    printf("  %-3s %-28s %9s %12zu %10zu %10zu %12llu\n", "", "total (act: largest)", "", tw, tcst,
           ta, (unsigned long long)tm);
    free(rows);
    return 0;
}

/* With a test set: float and integer test accuracy (into the metadata too), the per-layer
 * report, and the artifact serialized again with the accuracies in it. */
static int s_evaluate(s_run_t *r, const s_opts_t *o)
{
    cnd_eval_t evf, evq;
    int rc;
    if ((rc = s_float_accuracy(&evf, r))) return rc;
    if ((rc = cnd_qeval(r->art, r->te, &evq))) return rc;
    printf("test accuracy: float %.4f  integer %.4f  (%+.2f points, %zu samples, %s kernels)\n",
           evf.acc, evq.acc, 100.0 * (evq.acc - evf.acc), evq.n,
           cnd_rt_kernels_name(cnd_rt_get_kernels(r->art->rt)));
    char buf[32];
    snprintf(buf, sizeof buf, "%.4f", evf.acc);
    if ((rc = cnd_qmodel_meta_set(r->q, "float_test_accuracy", buf))) return rc;
    snprintf(buf, sizeof buf, "%.4f", evq.acc);
    if ((rc = cnd_qmodel_meta_set(r->q, "test_accuracy", buf))) return rc;
    if (!o->no_report && (rc = s_report(r, o))) return rc;
    return s_serialize(r, o);
}

int cnd_cmd_quantize(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse(&o, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)o.threads);
    s_run_t r;
    memset(&r, 0, sizeof r);
    double t0 = cnd_now();
    if ((rc = s_load(&r, &o)) || (rc = s_calibrate(&r, &o))) goto done;
    if (o.qat_epochs > 0 && (rc = s_qat(&r, &o))) goto done;
    double t_q0 = cnd_now();
    if ((rc = s_build(&r, &o))) goto done;
    double t_ptq = (cnd_now() - t_q0) + r.t_cal;
    if ((rc = s_stamp(&r, &o)) || (rc = s_serialize(&r, &o))) goto done;
    if (r.te && (rc = s_evaluate(&r, &o))) goto done;
    if ((rc = cnd_file_write_atomic(o.out, r.bytes, r.len, 0644))) goto done;
    const cnd_rt_info_t *in = &r.art->info;
    char dhex[CND_SHA256_HEX]; /* of the file's bytes, as manifests and the audit log name it */
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, r.bytes, r.len);
    cnd_hex(dhex, dg, sizeof dg);
    printf("\nwrote %s: %zu bytes (%.3fx the float model's %zu bytes), arena %zu bytes, "
           "%llu MACs, %u self-tests, sha256 %s\n",
           o.out, r.len, (double)r.len / (double)r.srclen, r.srclen, in->arena_bytes,
           (unsigned long long)in->macs, in->n_selftests, dhex);
    printf("PTQ time (calibration + build, excluding data loading and QAT): %.2fs; total %.1fs\n",
           t_ptq, cnd_now() - t0);
done:
    s_run_free(&r);
    return rc;
}
