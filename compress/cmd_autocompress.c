/*
 * cmd_autocompress.c: `condenser autocompress MODEL.cnd --data SPEC --budget B --time T --out DIR`:
 * a search for the compressed artifact that fits a device budget (docs/compression.md).
 *
 * Candidates. The teacher is pruned (prune.h, L1 scores, the same fraction of every layer) at a
 * grid of ratios; each ratio is quantized once untrained, for each weight width, which gives the
 * exact .cndq bytes and the predicted latency (latency.h) before any training: only the widest
 * ratios that fit the budget go on (--widths per bit width; the closest ones when none fits).
 * They are crossed with the distillation recipes (T, alpha) and the QAT epochs.
 *
 * Proxies. Successive halving (autocompress.h): every candidate is fine-tuned by distillation
 * from the teacher for a few epochs on a prefix of the training data, quantized (QAT or PTQ) and
 * scored on a validation split held out of the training data; the best 1/eta go on with eta
 * times the epochs and samples, from the pruned teacher again. The test split is used only for
 * the chosen artifact.
 *
 * Durability. After every candidate, in this order, each written atomically: its artifact
 * (DIR/candidates/cC-rR.cndq), the state file (DIR/state.json, every finished candidate), the
 * best artifact so far and its summary (DIR/best.cndq, DIR/best.json) when it changed, and the
 * report (DIR/report.html). A kill at any point leaves the files of the last finished
 * candidate; --resume reads the state and skips what it holds.
 */
#include "artifact.h"
#include "autocompress.h"
#include "autocompress_files.h"
#include "cli.h"
#include "clock.h"
#include "cmd_common.h"
#include "commands.h"
#include "digest.h"
#include "distill.h"
#include "fileio.h"
#include "latency.h"
#include "modelfile.h"
#include "prune.h"
#include "quant.h"
#include "quant_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_LIST 32
#define S_SPEC_LEN 1024 /* a scaled --arch spec (as cnd_autoc_result_t.spec) */

typedef struct {
    const char *in, *data, *test, *budget_s, *time_s, *out, *ratios_s, *wbits_s, *qat_s, *recipes_s,
        *arch, *mults_s;
    long subset, val, widths, min_epochs, max_epochs, proxy, eta, calib, selftests, batch, seed,
        threads, report_n;
    int json, resume;
    double lr;
    cnd_autoc_budget_t budget;
    double time_limit;
    int n_ratio, n_wbits, n_qat, n_recipe, n_mult;
    double ratio[S_MAX_LIST], T[S_MAX_LIST], alpha[S_MAX_LIST], mult[S_MAX_LIST];
    int wbits[S_MAX_LIST], qat[S_MAX_LIST];
} s_opts_t;

typedef struct {
    double ratio, T, alpha;
    int wbits, qat; /* wbits 8, 4 or CND_AUTOC_MIXED */
    double mult;    /* > 0: an --arch student at this width multiplier (ratio 0); else pruned */
    long wbudget;   /* mixed: packed weight bytes cnd_quant_mixed_bits may use */
} s_cand_t;

typedef struct {
    const s_opts_t *o;
    cnd_model_t *teacher;
    uint8_t *src;
    size_t srclen;
    cnd_dataset_t *tr, *val, *te, *cal; /* tr and cal normalised for the teacher; val, te raw */
    float *tlog;                        /* teacher logits of tr */
    cnd_prune_plan_t *plan;
    double teacher_acc;
    int n_cand;
    s_cand_t *cand;
    cnd_autoc_sched_t sched;
    cnd_autoc_result_t *res;
    int n_res, cap_res, best, graph;
    char config[2048], path[4096];
    double t0;
} s_ctx_t;

/* "0.5,0.8" into x[]; each in [lo, hi]. */
static int s_list(const char *s, const char *opt, double lo, double hi, double *x, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v >= lo && v <= hi) || (*end && *end != ',') || *n >= S_MAX_LIST)
            return cnd_errf(CND_EINVAL,
                            "--%s %s: expected up to %d numbers in [%g, %g], comma "
                            "separated",
                            opt, s, S_MAX_LIST, lo, hi);
        x[(*n)++] = v;
        p = *end ? end + 1 : end;
    }
    if (!*n) return cnd_errf(CND_EINVAL, "--%s: empty list", opt);
    return 0;
}

/* --wbits "8,4,mixed": each 8, 4 or mixed (CND_AUTOC_MIXED), none twice. */
static int s_wbits_list(s_opts_t *o)
{
    o->n_wbits = 0;
    for (const char *p = o->wbits_s; *p;) {
        size_t l = strcspn(p, ",");
        int v = l == 1 && *p == '8'                 ? 8
                : l == 1 && *p == '4'               ? 4
                : l == 5 && !strncmp(p, "mixed", 5) ? CND_AUTOC_MIXED
                                                    : -1;
        for (int i = 0; i < o->n_wbits; i++)
            if (o->wbits[i] == v) v = -1;
        if (v < 0 || o->n_wbits >= 3)
            return cnd_errf(CND_EINVAL,
                            "--wbits %s: expected 8, 4 and/or mixed, comma separated, "
                            "each once",
                            o->wbits_s);
        o->wbits[o->n_wbits++] = v;
        p += l + (p[l] == ',');
    }
    if (!o->n_wbits) return cnd_errf(CND_EINVAL, "--wbits: empty list");
    return 0;
}

static int s_lists(s_opts_t *o)
{
    double tmp[S_MAX_LIST];
    int rc;
    if ((rc = s_list(o->ratios_s, "ratios", 0, 0.99, o->ratio, &o->n_ratio))) return rc;
    if (o->arch && (rc = s_list(o->mults_s, "width-mults", 0.01, 16, o->mult, &o->n_mult)))
        return rc;
    for (int i = 0; o->arch && i < o->n_mult; i++) {
        char scaled[S_SPEC_LEN];
        if ((rc = cnd_autoc_scale_spec(scaled, sizeof scaled, o->arch, o->mult[i]))) return rc;
    }
    if ((rc = s_wbits_list(o))) return rc;
    if ((rc = s_list(o->qat_s, "qat", 0, 100, tmp, &o->n_qat))) return rc;
    for (int i = 0; i < o->n_qat; i++) o->qat[i] = (int)tmp[i];
    /* recipes: T:alpha pairs */
    o->n_recipe = 0;
    const char *p = o->recipes_s;
    while (*p) {
        char *e1, *e2;
        double T = strtod(p, &e1), a = *e1 == ':' ? strtod(e1 + 1, &e2) : -1;
        if (*e1 != ':' || e2 == e1 + 1 || !(T >= 0.05 && T <= 100) || !(a >= 0 && a <= 1) ||
            (*e2 && *e2 != ',') || o->n_recipe >= S_MAX_LIST)
            return cnd_errf(CND_EINVAL,
                            "--recipes %s: expected T:ALPHA pairs (T in [0.05, 100], "
                            "ALPHA in [0, 1]), comma separated",
                            o->recipes_s);
        o->T[o->n_recipe] = T, o->alpha[o->n_recipe++] = a;
        p = *e2 ? e2 + 1 : e2;
    }
    if (!o->n_recipe) return cnd_errf(CND_EINVAL, "--recipes: empty list");
    return 0;
}

/* Parses argv into o. Returns 0, 1 after --help, or a negative CND_E* code. */
static int s_parse(s_opts_t *o, int argc, char **argv)
{
    *o = (s_opts_t){.data = "fmnist",
                    .budget_s = "",
                    .time_s = "15m",
                    .ratios_s = "0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.93,0.95",
                    .mults_s = "0.125,0.25,0.375,0.5,0.75,1",
                    .wbits_s = "8,4,mixed",
                    .qat_s = "0,1",
                    .recipes_s = "2:0.5,4:0.9",
                    .val = 5000,
                    .widths = 2,
                    .min_epochs = 2,
                    .max_epochs = 16,
                    .proxy = 5000,
                    .eta = 2,
                    .calib = 500,
                    .selftests = 4,
                    .batch = 64,
                    .seed = 1,
                    .report_n = 200};
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &o->data, "SPEC",
         "training data (default fmnist); validation is held out of it"},
        {"test", CND_OPT_STR, &o->test, "SPEC", "test data (default: the dataset's test split)"},
        {"budget", CND_OPT_STR, &o->budget_s, "B",
         "size=64KB,latency=2ms@x86,max-drop=1.0 (any of them; default none)"},
        {"time", CND_OPT_STR, &o->time_s, "T", "time for the search: 15m, 90s, 1h (default 15m)"},
        {"out", CND_OPT_STR, &o->out, "DIR",
         "directory for best.cndq, best.json, report.html, "
         "state.json"},
        {"resume", CND_OPT_FLAG, &o->resume, NULL, "continue the search DIR holds"},
        {"json", CND_OPT_FLAG, &o->json, NULL, "print the summary as JSON on stdout"},
        {"seed", CND_OPT_INT, &o->seed, "S", "seed for splits, subsets and training (default 1)", 0,
         1e15},
        {"subset", CND_OPT_INT, &o->subset, "N", "use a random N-sample subset of the data", 1,
         1e9},
        {"val", CND_OPT_INT, &o->val, "N",
         "validation samples held out (default 5000, at most "
         "a fifth of the data)",
         10, 1e8},
        {"arch", CND_OPT_STR, &o->arch, "SPEC",
         "also search students of this chain spec at --width-mults, distilled from scratch"},
        {"width-mults", CND_OPT_STR, &o->mults_s, "LIST",
         "width multipliers of --arch (default 0.125,0.25,0.375,0.5,0.75,1)"},
        {"ratios", CND_OPT_STR, &o->ratios_s, "LIST",
         "pruning ratios to try (default 0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.93,0.95)"},
        {"widths", CND_OPT_INT, &o->widths, "K",
         "ratios kept per bit width after the size and "
         "latency filter (default 2)",
         1, 32},
        {"wbits", CND_OPT_STR, &o->wbits_s, "LIST",
         "weight bits to try: 8, 4, mixed (8 or 4 per layer, to fit the size budget where all-8 "
         "misses and all-4 fits; default 8,4,mixed)"},
        {"qat", CND_OPT_STR, &o->qat_s, "LIST", "QAT epochs to try, 0 = PTQ (default 0,1)"},
        {"recipes", CND_OPT_STR, &o->recipes_s, "LIST",
         "distillation T:alpha pairs (default 2:0.5,4:0.9)"},
        {"min-epochs", CND_OPT_INT, &o->min_epochs, "N",
         "fine-tune epochs of the first rung (default 2)", 1, 1000},
        {"max-epochs", CND_OPT_INT, &o->max_epochs, "N",
         "epochs cap of the last rungs (default 16)", 1, 1000},
        {"proxy-subset", CND_OPT_INT, &o->proxy, "N",
         "training samples of the first rung "
         "(default 5000)",
         10, 1e9},
        {"eta", CND_OPT_INT, &o->eta, "N", "successive halving keeps 1/N per rung (default 2)", 2,
         16},
        {"calib", CND_OPT_INT, &o->calib, "N", "calibration samples (default 500)", 1, 1e6},
        {"selftests", CND_OPT_INT, &o->selftests, "N",
         "self-test vectors per artifact (default "
         "4)",
         0, 64},
        {"report-samples", CND_OPT_INT, &o->report_n, "N",
         "validation samples of the per-layer SNR (default 200)", 1, 1e7},
        {"batch", CND_OPT_INT, &o->batch, "B", "batch size (default 64)", 1, 4096},
        {"lr", CND_OPT_DBL, &o->lr, "X", "fine-tune learning rate (default 1e-3, Adam)", 1e-9, 10},
        {"threads", CND_OPT_INT, &o->threads, "T", "threads (default: all cores)", 1, 64},
        {0}};
    const cnd_cli_t cli = {
        "condenser autocompress MODEL.cnd --data SPEC --budget size=64KB,latency=2ms@x86,"
        "max-drop=1.0 --time 15m --out DIR [--json] [--resume] [--seed N]",
        "Searches for the int8 (or W4A8) artifact that fits a device budget: prunes the teacher\n"
        "at several widths (with --arch, also scales a student spec by --width-mults), keeps\n"
        "the widths whose exact .cndq size and predicted latency fit, crosses them with\n"
        "distillation T/alpha and QAT epochs, and ranks the candidates by\n"
        "successive halving (short fine-tunes on part of the data first, the best half trained\n"
        "longer), scoring each on a validation split held out of the training data. The best\n"
        "artifact so far is always in DIR (best.cndq, best.json), with report.html (Pareto plots,\n"
        "a table per candidate) and state.json for --resume. Exit status: 0 when the chosen\n"
        "artifact meets the budget, 3 when none does (the closest is kept), 2 for bad arguments,\n"
        "1 for other errors (docs/compression.md).",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    o->in = pos[0];
    if (!o->out) return cnd_errf(CND_EINVAL, "--out DIR is required (try --help)");
    if (o->max_epochs < o->min_epochs)
        return cnd_errf(CND_EINVAL, "--max-epochs %ld is below --min-epochs %ld", o->max_epochs,
                        o->min_epochs);
    if (o->lr <= 0) o->lr = 1e-3;
    if ((rc = cnd_autoc_budget_parse(&o->budget, o->budget_s))) return rc;
    if ((rc = cnd_autoc_parse_duration(o->time_s, &o->time_limit))) return rc;
    return s_lists(o);
}

static void s_ctx_free(s_ctx_t *c)
{
    cnd_model_destroy(&c->teacher);
    free(c->src);
    cnd_data_destroy(&c->tr);
    cnd_data_destroy(&c->val);
    cnd_data_destroy(&c->te);
    cnd_data_destroy(&c->cal);
    free(c->tlog);
    cnd_prune_destroy(&c->plan);
    free(c->cand);
    free(c->res);
}

/* Accuracy of float model m on raw ds (a normalised copy). */
static int s_float_acc(double *acc, cnd_model_t *m, const cnd_dataset_t *ds)
{
    cnd_dataset_t c = *ds;
    size_t D = cnd_shape_size(ds->shape);
    if (!(c.x = malloc(ds->n * D * sizeof(float)))) return CND_ENOMEM;
    memcpy(c.x, ds->x, ds->n * D * sizeof(float));
    cnd_model_normalize(m, c.x, c.n);
    cnd_eval_t ev;
    int rc = cnd_evaluate(m, &c, 256, &ev);
    free(c.x);
    *acc = ev.acc;
    return rc;
}

/* Teacher, data (training, validation held out of it, test), teacher logits, calibration set
 * and the pruning plan. */
static int s_load(s_ctx_t *c)
{
    const s_opts_t *o = c->o;
    cnd_dataset_t *all = NULL;
    int rc;
    if ((rc = cnd_file_read(o->in, CND_MODELFILE_MAX, &c->src, &c->srclen)) ||
        (rc = cnd_model_deserialize(&c->teacher, c->src, c->srclen, o->in)))
        return rc;
    c->graph = c->teacher->graph;
    if ((rc = cnd_cmd_load_data(o->data, o->test, o->subset, (uint64_t)o->seed, &all, &c->te,
                                &c->teacher->in)) ||
        (rc = cnd_cmd_fit_data(c->teacher, all, o->data)) ||
        (rc = cnd_cmd_fit_data(c->teacher, c->te, o->test ? o->test : o->data)))
        goto done;
    long nv = o->val < (long)all->n / 5 ? o->val : (long)all->n / 5;
    if (nv < 10 || all->n - (size_t)nv < 10) {
        rc = cnd_errf(CND_EINVAL, "%s: %zu samples are too few to hold out a validation split",
                      o->data, all->n);
        goto done;
    }
    /* +0.5 so that floor() in cnd_data_split gives exactly nv */
    if ((rc = cnd_data_split(&c->tr, &c->val, all, ((double)nv + 0.5) / (double)all->n,
                             (uint64_t)o->seed ^ 0x5a17)))
        goto done;
    if ((rc = s_float_acc(&c->teacher_acc, c->teacher, c->val))) goto done;
    if ((rc = cnd_distill_teacher_logits(&c->tlog, c->teacher, c->tr))) goto done;
    cnd_model_normalize(c->teacher, c->tr->x, c->tr->n);
    if ((rc = cnd_quant_calib_sample(&c->cal, c->tr, (size_t)o->calib, (uint64_t)o->seed)))
        goto done;
    if ((rc = cnd_prune_analyze(&c->plan, c->teacher)) ||
        (rc = cnd_prune_score(c->plan, c->teacher, CND_PRUNE_L1, NULL, (int)o->batch)))
        goto done;
    fprintf(stderr,
            "autocompress: teacher %s: validation accuracy %.4f on %zu held-out samples, "
            "%zu training samples\n",
            o->in, c->teacher_acc, c->val->n, c->tr->n);
done:
    cnd_data_destroy(&all);
    return rc;
}

/* Self-test vectors from the first validation samples (raw pixels through the artifact's
 * lookup table, else int8 inputs quantized by a first build). */
static int s_selftests(cnd_qmodel_t *q, const cnd_dataset_t *ds, int n)
{
    size_t d = cnd_shape_size(ds->shape), hw = (size_t)ds->shape.h * ds->shape.w;
    int C = ds->shape.c;
    if ((size_t)n > ds->n) n = (int)ds->n;
    if (n == 0) return 0;
    uint8_t *in = malloc((size_t)n * d), *b0 = NULL;
    size_t l0;
    cnd_artifact_t *tmp = NULL;
    if (!in) return CND_ENOMEM;
    int kind = cnd_quant_raw_is_u8(ds->x, (size_t)n * d) ? CND_RT_TEST_RAW_U8 : CND_RT_TEST_I8;
    int rc = 0;
    if (kind == CND_RT_TEST_I8 && !(rc = cnd_artifact_serialize(q, &b0, &l0)))
        rc = cnd_artifact_open(&tmp, b0, l0, "candidate");
    for (int t = 0; !rc && t < n; t++) {
        uint8_t *dst = in + (size_t)t * d;
        const float *raw = ds->x + (size_t)t * d;
        if (kind == CND_RT_TEST_RAW_U8)
            for (int ch = 0; ch < C; ch++)
                for (size_t p = 0; p < hw; p++) dst[p * C + ch] = (uint8_t)raw[(size_t)ch * hw + p];
        else
            cnd_qeval_input(tmp, (int8_t *)dst, ds, (size_t)t);
    }
    if (!rc) rc = cnd_artifact_set_selftests(q, in, n, kind);
    cnd_artifact_destroy(&tmp);
    free(b0);
    free(in);
    return rc;
}

/* Distillation loss over the first samples of the training set (teacher logits by index). */
static cnd_distill_t s_distill(const s_ctx_t *c, const s_cand_t *k)
{
    return (cnd_distill_t){.teacher_logits = c->tlog,
                           .labels = c->tr->y,
                           .K = c->teacher->n_classes,
                           .T = (float)k->T,
                           .alpha = (float)k->alpha};
}

/* Median batch-1 latency of an artifact in the integer runtime (auto kernels), in
 * microseconds: calls timed one by one after a warm-up, for about 0.3 s (50 to 5000 calls). */
static int s_measure(double *us, const uint8_t *bytes, size_t len)
{
    cnd_artifact_t *a = NULL;
    int rc = cnd_artifact_open(&a, bytes, len, "candidate");
    if (rc) return rc;
    size_t d = (size_t)a->info.c * a->info.h * a->info.w;
    uint8_t *x = malloc(d);
    int8_t *lg = malloc(a->info.n_classes);
    double *t = malloc(5000 * sizeof *t);
    if (!x || !lg || !t) {
        rc = CND_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < d; i++) x[i] = (uint8_t)(i * 37 % 251);
    for (int i = 0; i < 20; i++) cnd_rt_run_u8(a->rt, lg, x);
    int n = 0;
    double start = cnd_now();
    while (n < 5000 && (n < 50 || cnd_now() - start < 0.3)) {
        double t0 = cnd_now();
        cnd_rt_run_u8(a->rt, lg, x);
        t[n++] = cnd_now() - t0;
    }
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double v = t[j];
            t[j] = t[j - 1], t[j - 1] = v;
        }
    *us = 1e6 * t[n / 2];
done:
    free(x);
    free(lg);
    free(t);
    cnd_artifact_destroy(&a);
    return rc;
}

/* Mixed bits: 8 or 4 per weighted layer of folded model fm within wbudget packed weight bytes
 * (cnd_quant_mixed_bits, into plan->wbits and w_mse); the choice into r->wl. */
static int s_mixed(cnd_qplan_t *plan, cnd_autoc_result_t *r, cnd_model_t *fm,
                   const cnd_qrange_t *ranges, int *w_mse, const float *x, size_t n, long wbudget)
{
    cnd_qbits_row_t rows[CND_SPEC_MAX_LAYERS];
    int nr = 0;
    int rc = cnd_quant_mixed_bits(plan, rows, &nr, fm, ranges, w_mse, x, n,
                                  wbudget > 0 ? (size_t)wbudget : 0);
    if (rc) return rc;
    r->n_wl = nr < CND_AUTOC_MAX_LAYERS ? nr : CND_AUTOC_MAX_LAYERS;
    for (int i = 0; i < r->n_wl; i++) r->wl[i] = (uint8_t)rows[i].bits;
    return 0;
}

/* Quantizes pruned float model pm (normalised like the teacher) into r's artifact: folds
 * batchnorm, calibrates (auto, or minmax for a size probe), runs k->qat epochs of QAT by
 * distillation on the first `subset` training samples, builds, adds self-tests. With eval set,
 * also scores the artifact on the validation split and fills r's figures. *bytes is owned. */
static int s_quantize(s_ctx_t *c, const cnd_model_t *pm, const s_cand_t *k, long subset, int eval,
                      cnd_autoc_result_t *r, uint8_t **bytes, size_t *len)
{
    const s_opts_t *o = c->o;
    cnd_model_t *fm = NULL;
    cnd_qplan_t plan;
    cnd_qrange_t ranges[CND_QUANT_MAX_POINTS];
    int w_mse[CND_SPEC_MAX_LAYERS];
    float *w_scales[CND_SPEC_MAX_LAYERS] = {0};
    cnd_qmodel_t *q = NULL;
    cnd_artifact_t *a = NULL;
    cnd_qreport_row_t *rows = NULL;
    int rc;
    *bytes = NULL;
    int wb = k->wbits == CND_AUTOC_MIXED ? 8 : k->wbits; /* mixed: plan.wbits per layer */
    size_t ncal = eval ? c->cal->n : (c->cal->n < 32 ? c->cal->n : 32);
    if ((rc = cnd_quant_fold_bn(&fm, pm)) || (rc = cnd_quant_plan(&plan, fm))) goto done;
    if ((rc = cnd_quant_calibrate(ranges, NULL, w_mse, fm, &plan, c->cal->x, ncal,
                                  eval ? CND_QM_AUTO : CND_QM_MINMAX, wb)))
        goto done;
    if (k->wbits == CND_AUTOC_MIXED &&
        (rc = s_mixed(&plan, r, fm, ranges, w_mse, c->cal->x, ncal, k->wbudget)))
        goto done;
    if (eval && k->qat > 0) {
        cnd_distill_t d = s_distill(c, k);
        cnd_dataset_t view = *c->tr;
        view.n = (size_t)subset < c->tr->n ? (size_t)subset : c->tr->n;
        cnd_qat_cfg_t qc = {k->qat, (int)o->batch,    2e-4f, (uint64_t)o->seed,
                            0,      cnd_distill_loss, &d};
        if ((rc = cnd_quant_qat(fm, &plan, ranges, w_mse, w_scales, wb, &view, NULL, &qc)))
            goto done;
    }
    if ((rc = cnd_qmodel_build(&q, fm, &plan, ranges, w_mse, k->qat > 0 && eval ? w_scales : NULL,
                               wb)))
        goto done;
    char rec[320], bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
    r->wbits = k->wbits;
    cnd_autoc_bits_text(bt, sizeof bt, r);
    snprintf(rec, sizeof rec, "%s=%.4f bits=%s T=%g alpha=%g qat=%d epochs=%d subset=%ld",
             k->mult > 0 ? "width_mult" : "ratio", k->mult > 0 ? k->mult : k->ratio, bt, k->T,
             k->alpha, k->qat, r->epochs, subset);
    if ((rc = cnd_qmodel_meta_set(q, "autocompress", rec)) ||
        (rc = cnd_qmodel_meta_set(q, "autocompress_from", o->in)) ||
        (rc = s_selftests(q, c->val, (int)o->selftests)) ||
        (rc = cnd_artifact_serialize(q, bytes, len)) ||
        (rc = cnd_artifact_open(&a, *bytes, *len, "candidate")) ||
        (rc = cnd_artifact_selftest(a, "candidate")))
        goto done;
    r->bytes = (double)*len;
    r->weight_bytes = (double)a->info.weight_bytes;
    r->arena_bytes = (double)a->info.arena_bytes;
    r->act_bytes = (double)a->info.act_bytes;
    r->macs = (double)a->info.macs;
    if (!eval) goto done;
    cnd_eval_t ev;
    if ((rc = cnd_qeval(a, c->val, &ev))) goto done;
    r->val_acc = ev.acc;
    int nl = q->n_layers < CND_AUTOC_MAX_LAYERS ? q->n_layers : CND_AUTOC_MAX_LAYERS;
    if (!(rows = calloc((size_t)q->n_layers, sizeof *rows))) {
        rc = CND_ENOMEM;
        goto done;
    }
    size_t nr = (size_t)o->report_n < c->val->n ? (size_t)o->report_n : c->val->n;
    if ((rc = cnd_qreport(rows, fm, q, a, c->val, nr))) goto done;
    r->n_layers = nl;
    for (int i = 0; i < nl; i++) {
        snprintf(r->layer[i], sizeof r->layer[i], "%s", rows[i].name);
        r->snr_db[i] = rows[i].snr_db;
    }
done:
    if (rc) {
        free(*bytes);
        *bytes = NULL;
    }
    free(rows);
    cnd_quant_free_scales(w_scales, fm ? fm->n_layers : 0);
    cnd_artifact_destroy(&a);
    cnd_qmodel_destroy(&q);
    cnd_model_destroy(&fm);
    return rc;
}

/* s_quantize; a mixed candidate under a size budget whose artifact misses it (the file's other
 * bytes, scales and padding, do not shrink with the weights) is built again with its weight
 * budget lowered by the excess, at most 3 times. Probing (eval 0), k->wbudget becomes the
 * budget that fit, and CND_ERANGE means no mixed choice fits; a candidate run (eval 1) keeps
 * the last artifact built when a lower budget is out of reach (it then misses the budget). */
static int s_quantize_fit(s_ctx_t *c, const cnd_model_t *pm, s_cand_t *k, long subset, int eval,
                          cnd_autoc_result_t *r, uint8_t **bytes, size_t *len)
{
    double size = c->o->budget.size_bytes;
    int rc = s_quantize(c, pm, k, subset, eval, r, bytes, len);
    for (int t = 0; !rc && k->wbits == CND_AUTOC_MIXED && size > 0 && (double)*len > size; t++) {
        s_cand_t k2 = *k;
        k2.wbudget = k->wbudget - (long)ceil((double)*len - size);
        cnd_autoc_result_t r2 = *r;
        uint8_t *b2 = NULL;
        size_t l2 = 0;
        if (t == 3 || k2.wbudget < 1 ||
            (rc = s_quantize(c, pm, &k2, subset, eval, &r2, &b2, &l2))) {
            if (rc == CND_ERANGE && eval) rc = 0, cnd_err_clear();
            if (!rc && !eval) rc = cnd_errf(CND_ERANGE, "no mixed bits fit the size budget");
            break;
        }
        free(*bytes);
        *bytes = b2, *len = l2, *r = r2, *k = k2;
    }
    if (rc) {
        free(*bytes);
        *bytes = NULL;
    }
    return rc;
}

/* The model of a width (a new model): the teacher pruned at ratio, or with mult > 0 a fresh
 * --arch student scaled by mult, normalised like the teacher (the training data are); its
 * predicted latency into *pred (-1 for graphs). */
static int s_model(s_ctx_t *c, double ratio, double mult, cnd_model_t **pm, double *pred)
{
    int rc;
    if (mult > 0) {
        char spec[S_SPEC_LEN];
        if ((rc = cnd_autoc_scale_spec(spec, sizeof spec, c->o->arch, mult)) ||
            (rc = cnd_model_new(pm, spec, c->teacher->in, (uint64_t)c->o->seed)))
            return rc;
        if ((*pm)->n_classes != c->teacher->n_classes) {
            cnd_model_destroy(pm);
            return cnd_errf(CND_EINVAL, "--arch %s has %d outputs, the teacher %d", c->o->arch,
                            (*pm)->n_classes, c->teacher->n_classes);
        }
        memcpy((*pm)->norm_mean, c->teacher->norm_mean, (size_t)c->teacher->in.c * sizeof(float));
        memcpy((*pm)->norm_std, c->teacher->norm_std, (size_t)c->teacher->in.c * sizeof(float));
    } else {
        cnd_prune_select(c->plan, ratio);
        if ((rc = cnd_prune_apply(pm, c->plan, c->teacher))) return rc;
    }
    double f[CND_LAT_NF];
    const cnd_latency_model_t *lm = cnd_latency_builtin(c->o->budget.device);
    *pred = -1;
    if (lm && !(*pm)->graph && cnd_latency_features(*pm, f) == 0)
        *pred = cnd_latency_predict(lm, f);
    cnd_err_clear();
    return 0;
}

typedef struct {
    double ratio, viol, bytes, pred, mult, wbytes;
    int wbits, skip; /* skip: a mixed probe that does not apply (never a candidate) */
    long wbudget;
} s_probe_t;

static int s_probe_cmp(const void *a, const void *b)
{
    const s_probe_t *x = a, *y = b;
    if (x->viol != y->viol) return x->viol < y->viol ? -1 : 1;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1; /* wider first */
    if ((x->mult > 0) != (y->mult > 0)) return x->mult > 0 ? 1 : -1;
    return x->wbits > y->wbits ? -1 : x->wbits < y->wbits;
}

/* One untrained probe of width model pm at k->wbits into p (pred: its predicted latency, < 0
 * unknown). A mixed probe that finds no fit is marked skip. */
static int s_probe_one(s_ctx_t *c, cnd_model_t *pm, s_cand_t *k, double pred, s_probe_t *p)
{
    const s_opts_t *o = c->o;
    cnd_autoc_result_t r = {0};
    uint8_t *bytes = NULL;
    size_t len;
    int rc = s_quantize_fit(c, pm, k, 0, 0, &r, &bytes, &len);
    *p = (s_probe_t){k->ratio, 0, r.bytes, pred, k->mult, r.weight_bytes, k->wbits, 0, k->wbudget};
    if (rc == CND_ERANGE && k->wbits == CND_AUTOC_MIXED) {
        cnd_err_clear();
        p->skip = 1, p->viol = HUGE_VAL;
        return 0;
    }
    /* no prediction (a graph): latency does not depend on the weights, so the untrained
     * artifact's measured latency stands in for it */
    if (!rc && pred < 0 && o->budget.latency_us > 0) rc = s_measure(&p->pred, bytes, len);
    free(bytes);
    if (rc) return rc;
    cnd_autoc_point_t pt = {c->teacher_acc, r.bytes, p->pred};
    p->viol = cnd_autoc_violation(&o->budget, c->teacher_acc, &pt);
    char ls[48] = "no latency prediction", bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
    if (p->pred >= 0)
        snprintf(ls, sizeof ls, "%.1f us %s", p->pred, pred < 0 ? "measured" : "predicted");
    r.wbits = k->wbits;
    cnd_autoc_bits_text(bt, sizeof bt, &r);
    fprintf(stderr, "  %s%.3f %s: %.0f bytes, %s%s\n", k->mult > 0 ? "--arch x" : "ratio ",
            k->mult > 0 ? k->mult : k->ratio, bt, p->bytes, ls,
            p->viol == 0 ? "" : "  (misses the budget)");
    return 0;
}

/* The probes of width i (a ratio, or after the ratios an --arch multiplier) into p[n_wbits]:
 * 8 and 4 bits first; mixed only where the size budget holds the all-4 artifact but not the
 * all-8 one, with the weight budget of the all-8 artifact's weight bytes less its excess. */
static int s_probe_width(s_ctx_t *c, int i, s_probe_t *p)
{
    const s_opts_t *o = c->o;
    cnd_model_t *pm = NULL;
    double pred, ratio = i < o->n_ratio ? o->ratio[i] : 0;
    double mult = i < o->n_ratio ? -1 : o->mult[i - o->n_ratio];
    int rc = s_model(c, ratio, mult, &pm, &pred), mix = -1;
    double b8 = -1, b4 = -1, w8 = 0;
    for (int b = 0; b < o->n_wbits && !rc; b++) {
        if (o->wbits[b] == CND_AUTOC_MIXED) {
            mix = b;
            continue;
        }
        s_cand_t k = {ratio, 2, 0.5, o->wbits[b], 0, mult, 0};
        rc = s_probe_one(c, pm, &k, pred, &p[b]);
        if (o->wbits[b] == 8)
            b8 = p[b].bytes, w8 = p[b].wbytes;
        else
            b4 = p[b].bytes;
    }
    for (int w = 8; mix >= 0 && w >= 4 && !rc; w -= 4) { /* what mixed needs, if not listed */
        if ((w == 8 ? b8 : b4) >= 0) continue;
        cnd_autoc_result_t r = {0};
        uint8_t *bytes = NULL;
        size_t len;
        s_cand_t k = {ratio, 2, 0.5, w, 0, mult, 0};
        if ((rc = s_quantize(c, pm, &k, 0, 0, &r, &bytes, &len))) break;
        free(bytes);
        if (w == 8)
            b8 = r.bytes, w8 = r.weight_bytes;
        else
            b4 = r.bytes;
    }
    double size = o->budget.size_bytes;
    if (!rc && mix >= 0) {
        s_cand_t k = {ratio, 2, 0.5, CND_AUTOC_MIXED, 0, mult, (long)floor(w8 - (b8 - size))};
        p[mix] = (s_probe_t){.skip = 1, .viol = HUGE_VAL};
        if (size > 0 && b8 > size && b4 <= size && k.wbudget > 0)
            rc = s_probe_one(c, pm, &k, pred, &p[mix]);
    }
    cnd_model_destroy(&pm);
    return rc;
}

/* Size and latency of every (ratio, wbits) before training, and the candidates: per bit width
 * the --widths widest ratios that fit the size and latency budgets, or when none fits at all,
 * the --widths closest overall; crossed with the recipes and the QAT epochs. */
static int s_candidates(s_ctx_t *c)
{
    const s_opts_t *o = c->o;
    int nw = o->n_ratio + (o->arch ? o->n_mult : 0), np = nw * o->n_wbits, rc = 0;
    s_probe_t *pr = calloc((size_t)np, sizeof *pr);
    if (!pr) return CND_ENOMEM;
    fprintf(stderr, "autocompress: sizes before training (exact .cndq bytes, latency):\n");
    for (int i = 0; i < nw && !rc; i++) rc = s_probe_width(c, i, &pr[i * o->n_wbits]);
    if (rc) {
        free(pr);
        return rc;
    }
    qsort(pr, (size_t)np, sizeof *pr, s_probe_cmp);
    int any = pr[0].viol == 0, nsel = 0;
    s_probe_t sel[4 * S_MAX_LIST];
    for (int i = 0; i < np && nsel < 4 * S_MAX_LIST; i++) {
        int same = 0;
        for (int j = 0; j < nsel; j++)
            same += sel[j].wbits == pr[i].wbits && (sel[j].mult > 0) == (pr[i].mult > 0);
        if (!pr[i].skip && (any ? (pr[i].viol == 0 && same < o->widths) : nsel < o->widths))
            sel[nsel++] = pr[i];
    }
    free(pr);
    if (!any)
        fprintf(stderr,
                "autocompress: no width fits the size/latency budget; searching the %d "
                "closest\n",
                nsel);
    c->n_cand = nsel * o->n_recipe * o->n_qat;
    if (!(c->cand = calloc((size_t)c->n_cand, sizeof *c->cand))) return CND_ENOMEM;
    int n = 0;
    for (int i = 0; i < nsel; i++)
        for (int t = 0; t < o->n_recipe; t++)
            for (int q = 0; q < o->n_qat; q++)
                c->cand[n++] = (s_cand_t){sel[i].ratio, o->T[t],     o->alpha[t],   sel[i].wbits,
                                          o->qat[q],    sel[i].mult, sel[i].wbudget};
    return 0;
}

static int s_find(const s_ctx_t *c, int cand, int rung)
{
    for (int i = 0; i < c->n_res; i++)
        if (c->res[i].cand == cand && c->res[i].rung == rung) return i;
    return -1;
}

/* Writes DIR/name atomically. */
static int s_write(s_ctx_t *c, const char *name, const void *data, size_t len)
{
    snprintf(c->path, sizeof c->path, "%s/%s", c->o->out, name);
    return cnd_file_write_atomic(c->path, data, len, 0644);
}

/* The candidates of rung r in the order they run: every candidate on rung 0, then the best
 * sched.keep[r] results of rung r - 1. Returns the count, or -1 while rung r - 1 is unfinished. */
static int s_members(const s_ctx_t *c, int r, int *idx)
{
    if (r == 0) {
        for (int i = 0; i < c->n_cand; i++) idx[i] = i;
        return c->n_cand;
    }
    int n = c->sched.keep[r - 1], k = 0;
    int *ri = malloc((size_t)n * sizeof *ri);
    if (!ri) return -1;
    int *pm = malloc((size_t)c->n_cand * sizeof *pm);
    int np = pm ? s_members(c, r - 1, pm) : -1;
    for (int i = 0; i < np; i++) {
        int j = s_find(c, pm[i], r - 1);
        if (j < 0) break;
        ri[k++] = j;
    }
    free(pm);
    if (np < 0 || k < np) {
        free(ri);
        return -1;
    }
    for (int i = 1; i < k; i++) /* rank: insertion sort with the search's order */
        for (int j = i; j > 0; j--) {
            cnd_autoc_point_t a = cnd_autoc_point(&c->res[ri[j]]),
                              b = cnd_autoc_point(&c->res[ri[j - 1]]);
            if (!cnd_autoc_better(&c->o->budget, c->teacher_acc, &a, ri[j], &b, ri[j - 1])) break;
            int t = ri[j];
            ri[j] = ri[j - 1], ri[j - 1] = t;
        }
    int keep = c->sched.keep[r] < k ? c->sched.keep[r] : k;
    for (int i = 0; i < keep; i++) idx[i] = c->res[ri[i]].cand;
    free(ri);
    return keep;
}

/* Batch hook of the fine-tune: stops it once the search's time is up. */
static int s_on_batch(void *ctx, const float *xb, const uint32_t *idx, int B)
{
    (void)xb, (void)idx, (void)B;
    const s_ctx_t *c = ctx;
    if (cnd_now() - c->t0 > c->o->time_limit)
        return cnd_errf(CND_ETIMEOUT, "--time %s is up", c->o->time_s);
    return 0;
}

/* Prunes, fine-tunes and quantizes candidate ci for rung r into a new result; its artifact
 * into *bytes (owned). */
static int s_run_candidate(s_ctx_t *c, int ci, int r, cnd_autoc_result_t *res, uint8_t **bytes,
                           size_t *len)
{
    const s_opts_t *o = c->o;
    const s_cand_t *k = &c->cand[ci];
    double t0 = cnd_now();
    cnd_model_t *pm = NULL;
    *res = (cnd_autoc_result_t){.cand = ci,
                                .rung = r,
                                .ratio = k->ratio,
                                .mult = k->mult,
                                .T = k->T,
                                .alpha = k->alpha,
                                .qat = k->qat,
                                .wbits = k->wbits,
                                .epochs = c->sched.epochs[r],
                                .subset = c->sched.subset[r],
                                .meas_us = -1};
    int rc = s_model(c, k->ratio, k->mult, &pm, &res->pred_us);
    if (rc) return rc;
    cnd_train_cfg_t cfg = cnd_train_defaults();
    if ((rc = cnd_cmd_optim("adam", o->lr, 0, -1, &cfg.optim))) goto done;
    cfg.sched = CND_SCHED_COSINE;
    cfg.epochs = res->epochs;
    cfg.batch = (int)o->batch;
    cfg.seed = (uint64_t)o->seed + (uint64_t)ci;
    cfg.verbose = 0;
    cnd_distill_t d = s_distill(c, k);
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &d;
    cfg.on_batch = s_on_batch;
    cfg.batch_ctx = c;
    cnd_dataset_t view = *c->tr;
    view.n = (size_t)res->subset < c->tr->n ? (size_t)res->subset : c->tr->n;
    cnd_train_result_t tres;
    if ((rc = cnd_train(pm, &view, NULL, &cfg, &tres))) goto done;
    s_cand_t kf = *k; /* s_quantize_fit may lower a mixed weight budget for this run */
    if ((rc = s_quantize_fit(c, pm, &kf, res->subset, 1, res, bytes, len))) goto done;
    res->params = (double)pm->num_params;
    snprintf(res->spec, sizeof res->spec, "%s", pm->spec);
    if (r >= c->sched.n_rungs - 2 || res->pred_us < 0) /* the finalists */
        rc = s_measure(&res->meas_us, *bytes, *len);
    res->seconds = cnd_now() - t0;
done:
    if (rc) {
        free(*bytes);
        *bytes = NULL;
    }
    cnd_model_destroy(&pm);
    return rc;
}

/* The summary (best.json and --json): the chosen result, whether it meets the budget. */
static int s_summary(s_ctx_t *c, cnd_jw_t *w, int finished, double test_acc)
{
    const s_opts_t *o = c->o;
    char bt[160];
    cnd_autoc_budget_format(&o->budget, bt, sizeof bt);
    int b = c->best;
    cnd_autoc_point_t p = b >= 0 ? cnd_autoc_point(&c->res[b]) : (cnd_autoc_point_t){0, 0, -1};
    cnd_jw_obj(w);
    cnd_jw_key(w, "model");
    cnd_jw_str(w, o->in);
    cnd_jw_key(w, "data");
    cnd_jw_str(w, o->data);
    cnd_jw_key(w, "budget");
    cnd_jw_str(w, bt);
    cnd_jw_key(w, "teacher_val_accuracy");
    cnd_jw_double(w, c->teacher_acc);
    cnd_jw_key(w, "teacher_bytes");
    cnd_jw_int(w, (int64_t)c->srclen);
    cnd_jw_key(w, "candidates");
    cnd_jw_int(w, c->n_cand);
    cnd_jw_key(w, "results");
    cnd_jw_int(w, c->n_res);
    cnd_jw_key(w, "finished");
    cnd_jw_bool(w, finished);
    cnd_jw_key(w, "seconds"); /* of this run (a resumed search counts from its restart) */
    cnd_jw_double(w, cnd_now() - c->t0);
    cnd_jw_key(w, "met");
    cnd_jw_bool(w, b >= 0 && cnd_autoc_violation(&o->budget, c->teacher_acc, &p) == 0);
    cnd_jw_key(w, "best_file");
    if (b >= 0) {
        snprintf(c->path, sizeof c->path, "%s/best.cndq", o->out);
        cnd_jw_str(w, c->path);
    } else {
        cnd_jw_null(w);
    }
    cnd_jw_key(w, "test_accuracy");
    if (test_acc >= 0)
        cnd_jw_double(w, test_acc);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "accuracy_drop_points");
    if (b >= 0)
        cnd_jw_double(w, 100.0 * (c->teacher_acc - c->res[b].val_acc));
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "best");
    if (b >= 0)
        cnd_autoc_result_json(w, &c->res[b]);
    else
        cnd_jw_null(w);
    cnd_jw_obj_end(w);
    return cnd_jw_text(w) ? 0 : CND_ENOMEM;
}

/* state.json, then best.cndq and best.json when best changed (best_bytes not NULL), then
 * report.html. */
static int s_save(s_ctx_t *c, const uint8_t *best_bytes, size_t best_len, int finished,
                  double test_acc)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_autoc_state_write(&b, c->config, c->res, c->n_res);
    int rc = b.err ? b.err : s_write(c, "state.json", b.data, b.len);
    cnd_buf_free(&b);
    if (rc) return rc;
    if (best_bytes && (rc = s_write(c, "best.cndq", best_bytes, best_len))) return rc;
    cnd_jw_t w;
    cnd_jw_init(&w);
    if (!(rc = s_summary(c, &w, finished, test_acc))) {
        const char *t = cnd_jw_text(&w);
        rc = s_write(c, "best.json", t, strlen(t));
    }
    cnd_jw_free(&w);
    if (rc) return rc;
    char bt[160];
    cnd_autoc_budget_format(&c->o->budget, bt, sizeof bt);
    cnd_autoc_point_t p =
        c->best >= 0 ? cnd_autoc_point(&c->res[c->best]) : (cnd_autoc_point_t){0, 0, -1};
    cnd_autoc_report_t rep = {c->o->in,
                              c->o->data,
                              bt,
                              &c->o->budget,
                              c->teacher_acc,
                              (double)c->srclen,
                              c->best,
                              c->best >= 0 &&
                                  cnd_autoc_violation(&c->o->budget, c->teacher_acc, &p) == 0,
                              test_acc,
                              &c->sched};
    cnd_buf_init(&b);
    cnd_autoc_report_html(&b, &rep, c->res, c->n_res);
    rc = b.err ? b.err : s_write(c, "report.html", b.data, b.len);
    cnd_buf_free(&b);
    return rc;
}

/* Appends a finished result; writes its artifact, the state, the best (when it changed) and
 * the report. */
static int s_record(s_ctx_t *c, const cnd_autoc_result_t *r, const uint8_t *bytes, size_t len)
{
    if (c->n_res == c->cap_res) {
        int cap = c->cap_res ? 2 * c->cap_res : 16;
        cnd_autoc_result_t *nr = realloc(c->res, (size_t)cap * sizeof *nr);
        if (!nr) return CND_ENOMEM;
        c->res = nr, c->cap_res = cap;
    }
    char name[64];
    snprintf(name, sizeof name, "candidates/c%d-r%d.cndq", r->cand, r->rung);
    int rc = s_write(c, name, bytes, len);
    if (rc) return rc;
    c->res[c->n_res++] = *r;
    int i = c->n_res - 1, changed = 0;
    cnd_autoc_point_t a = cnd_autoc_point(&c->res[i]);
    if (c->best < 0) {
        changed = 1;
    } else {
        cnd_autoc_point_t b = cnd_autoc_point(&c->res[c->best]);
        changed = cnd_autoc_better(&c->o->budget, c->teacher_acc, &a, i, &b, c->best);
    }
    if (changed) c->best = i;
    return s_save(c, changed ? bytes : NULL, len, 0, -1);
}

/* Seconds candidate ci on rung r should take, from the results so far (0 with none). */
static double s_estimate(const s_ctx_t *c, int ci, int r)
{
    double work = 0, secs = 0;
    for (int i = 0; i < c->n_res; i++) {
        work += (double)(c->res[i].epochs + c->res[i].qat) * (double)c->res[i].subset;
        secs += c->res[i].seconds;
    }
    if (work <= 0) return 0;
    return secs / work * (double)(c->sched.epochs[r] + c->cand[ci].qat) *
           (double)c->sched.subset[r];
}

/* One progress line on stderr. */
static void s_progress(const s_ctx_t *c, const cnd_autoc_result_t *res, int r, int i, int n)
{
    char pred[32] = "-", meas[32] = "-";
    if (res->pred_us >= 0) snprintf(pred, sizeof pred, "%.1f us", res->pred_us);
    if (res->meas_us >= 0) snprintf(meas, sizeof meas, "%.1f us", res->meas_us);
    char wt[32], bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
    cnd_autoc_width_text(wt, sizeof wt, res);
    cnd_autoc_bits_text(bt, sizeof bt, res);
    fprintf(stderr,
            "autocompress: rung %d/%d, %d/%d: candidate %d (%s, %s, T %g, alpha %g, "
            "QAT %d; %d epochs on %ld): val %.4f, %.0f bytes, predicted %s, measured %s, %.1f "
            "s%s\n",
            r, c->sched.n_rungs - 1, i + 1, n, res->cand, wt, bt, res->T, res->alpha, res->qat,
            res->epochs, res->subset, res->val_acc, res->bytes, pred, meas, res->seconds,
            c->best == c->n_res - 1 ? "  (best so far)" : "");
}

/* Runs the rungs until done or out of time; *finished = 1 when every rung ran. */
static int s_search(s_ctx_t *c, int *finished)
{
    int *idx = malloc((size_t)c->n_cand * sizeof *idx), rc = 0;
    if (!idx) return CND_ENOMEM;
    *finished = 0;
    for (int r = 0; r < c->sched.n_rungs && !rc; r++) {
        int n = s_members(c, r, idx);
        if (n < 0) break;
        for (int i = 0; i < n && !rc; i++) {
            if (s_find(c, idx[i], r) >= 0) continue; /* done before a resume */
            double el = cnd_now() - c->t0, est = s_estimate(c, idx[i], r);
            if (el + est > c->o->time_limit) {
                fprintf(stderr,
                        "autocompress: time is up (%.0f s used, the next candidate needs "
                        "about %.0f s of the %.0f s)\n",
                        el, est, c->o->time_limit);
                free(idx);
                return 0;
            }
            cnd_autoc_result_t res;
            uint8_t *bytes = NULL;
            size_t len = 0;
            rc = s_run_candidate(c, idx[i], r, &res, &bytes, &len);
            if (rc == CND_ETIMEOUT) {
                fprintf(stderr,
                        "autocompress: time is up during candidate %d; its partial "
                        "fine-tune is discarded\n",
                        idx[i]);
                free(idx);
                return 0;
            }
            if (rc) break;
            rc = s_record(c, &res, bytes, len);
            free(bytes);
            if (!rc) s_progress(c, &res, r, i, n);
        }
        if (!rc && r == c->sched.n_rungs - 1) *finished = 1;
    }
    free(idx);
    return rc;
}

/* The chosen artifact: measured latency when missing, test accuracy, best.cndq rewritten from
 * its candidate file (so a resumed search's best is always the chosen one). */
static int s_finish(s_ctx_t *c, int finished, double *test_acc)
{
    cnd_autoc_result_t *b = &c->res[c->best];
    char name[64];
    snprintf(name, sizeof name, "%s/candidates/c%d-r%d.cndq", c->o->out, b->cand, b->rung);
    uint8_t *bytes = NULL;
    size_t len;
    cnd_artifact_t *a = NULL;
    int rc = cnd_file_read(name, 1u << 30, &bytes, &len);
    if (!rc) rc = cnd_artifact_open(&a, bytes, len, name);
    if (!rc) rc = cnd_artifact_selftest(a, name);
    if (!rc && b->meas_us < 0) rc = s_measure(&b->meas_us, bytes, len);
    *test_acc = -1;
    cnd_eval_t ev;
    if (!rc && c->te && !(rc = cnd_qeval(a, c->te, &ev))) *test_acc = ev.acc;
    if (!rc) rc = s_save(c, bytes, len, finished, *test_acc);
    cnd_artifact_destroy(&a);
    free(bytes);
    return rc;
}

/* The settings a resumed search must share with the one it continues. */
static void s_config(s_ctx_t *c)
{
    const s_opts_t *o = c->o;
    char hex[CND_SHA256_HEX], bt[160];
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, c->src, c->srclen);
    cnd_autoc_budget_format(&o->budget, bt, sizeof bt);
    snprintf(c->config, sizeof c->config,
             "model_sha256=%s;data=%s;test=%s;subset=%ld;val=%ld;budget=%s;ratios=%s;wbits=%s;"
             "qat=%s;recipes=%s;widths=%ld;min_epochs=%ld;max_epochs=%ld;proxy_subset=%ld;"
             "eta=%ld;calib=%ld;selftests=%ld;batch=%ld;lr=%g;seed=%ld;arch=%s;width_mults=%s",
             cnd_hex(hex, dg, sizeof dg), o->data, o->test ? o->test : "-", o->subset, o->val, bt,
             o->ratios_s, o->wbits_s, o->qat_s, o->recipes_s, o->widths, o->min_epochs,
             o->max_epochs, o->proxy, o->eta, o->calib, o->selftests, o->batch, o->lr, o->seed,
             o->arch ? o->arch : "-", o->arch ? o->mults_s : "-");
}

/* Creates DIR, or with --resume reads its state; refuses a DIR with a search in it otherwise. */
static int s_open_dir(s_ctx_t *c)
{
    const s_opts_t *o = c->o;
    snprintf(c->path, sizeof c->path, "%s/candidates", o->out);
    int rc = cnd_mkdir_p(c->path, 0755);
    if (rc) return cnd_err_wrap(rc, "--out %s", o->out);
    snprintf(c->path, sizeof c->path, "%s/state.json", o->out);
    if (!cnd_file_exists(c->path)) {
        if (o->resume) fprintf(stderr, "autocompress: %s holds no search yet: starting\n", o->out);
        return 0;
    }
    if (!o->resume)
        return cnd_errf(CND_EINVAL,
                        "%s already holds a search (state.json): give --resume to "
                        "continue it, or another --out",
                        o->out);
    uint8_t *text = NULL;
    size_t len;
    char what[4096];
    snprintf(what, sizeof what, "%s", c->path);
    if ((rc = cnd_file_read(what, 1u << 28, &text, &len))) return rc;
    rc = cnd_autoc_state_read(&c->res, &c->n_res, (const char *)text, len, c->config, what);
    free(text);
    if (rc) return rc;
    c->cap_res = c->n_res;
    for (int i = 0; i < c->n_res; i++) {
        const cnd_autoc_result_t *r = &c->res[i];
        const s_cand_t *k = r->cand < c->n_cand ? &c->cand[r->cand] : NULL;
        if (!k || r->rung >= c->sched.n_rungs || s_find(c, r->cand, r->rung) != i ||
            fabs(r->ratio - k->ratio) > 1e-9 || fabs(r->mult - k->mult) > 1e-9 ||
            r->wbits != k->wbits || r->qat != k->qat || fabs(r->T - k->T) > 1e-9 ||
            fabs(r->alpha - k->alpha) > 1e-9 || r->epochs != c->sched.epochs[r->rung] ||
            r->subset != c->sched.subset[r->rung])
            return cnd_errf(CND_EINVAL,
                            "%s: result %d (candidate %d, rung %d) is not part of this "
                            "search (another recipe or schedule, or a duplicate)",
                            what, i, r->cand, r->rung);
        cnd_autoc_point_t a = cnd_autoc_point(r);
        if (c->best >= 0) {
            cnd_autoc_point_t b = cnd_autoc_point(&c->res[c->best]);
            if (!cnd_autoc_better(&o->budget, c->teacher_acc, &a, i, &b, c->best)) continue;
        }
        c->best = i;
    }
    fprintf(stderr, "autocompress: resuming: %d finished candidates in %s are not run again\n",
            c->n_res, what);
    return 0;
}

int cnd_cmd_autocompress(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse(&o, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)o.threads);
    s_ctx_t c = {.o = &o, .best = -1, .t0 = cnd_now()};
    int finished = 0;
    double test_acc = -1;
    snprintf(c.path, sizeof c.path, "%s/state.json", o.out);
    if (!o.resume && cnd_file_exists(c.path)) /* refused early; s_open_dir checks again */
        return cnd_errf(CND_EINVAL,
                        "%s already holds a search (state.json): give --resume to "
                        "continue it, or another --out",
                        o.out);
    if ((rc = s_load(&c))) goto done;
    s_config(&c);
    if ((rc = s_candidates(&c))) goto done;
    if ((rc = cnd_autoc_schedule(&c.sched, c.n_cand, (int)o.eta, (int)o.min_epochs,
                                 (int)o.max_epochs, o.proxy, (long)c.tr->n)))
        goto done;
    fprintf(stderr, "autocompress: %d candidates, %d rungs of successive halving\n", c.n_cand,
            c.sched.n_rungs);
    if ((rc = s_open_dir(&c)) || (rc = s_search(&c, &finished))) goto done;
    if (c.best < 0) {
        rc = cnd_errf(CND_ETIMEOUT, "--time %s ran out before the first candidate finished",
                      o.time_s);
        goto done;
    }
    if ((rc = s_finish(&c, finished, &test_acc))) goto done;
    cnd_autoc_point_t p = cnd_autoc_point(&c.res[c.best]);
    int met = cnd_autoc_violation(&o.budget, c.teacher_acc, &p) == 0;
    const cnd_autoc_result_t *b = &c.res[c.best];
    char lat[96] = "", tst[32] = "", wt[32], bt[CND_AUTOC_MAX_LAYERS * 2 + 8];
    cnd_autoc_width_text(wt, sizeof wt, b);
    cnd_autoc_bits_text(bt, sizeof bt, b);
    if (b->pred_us >= 0) snprintf(lat, sizeof lat, ", predicted %.1f us", b->pred_us);
    if (b->meas_us >= 0)
        snprintf(lat + strlen(lat), sizeof lat - strlen(lat), ", measured %.1f us", b->meas_us);
    if (test_acc >= 0) snprintf(tst, sizeof tst, ", test %.4f", test_acc);
    fprintf(stderr,
            "autocompress: %s: %s/best.cndq, candidate %d (%s, %s, T %g, alpha %g, QAT "
            "%d): %.0f bytes, validation %.4f (teacher %.4f, %+.2f points)%s%s; %.0f s%s\n",
            met ? "budget met" : "NO candidate meets the budget; kept the closest", o.out, b->cand,
            wt, bt, b->T, b->alpha, b->qat, b->bytes, b->val_acc, c.teacher_acc,
            100.0 * (b->val_acc - c.teacher_acc), tst, lat, cnd_now() - c.t0,
            finished ? "" : " (the search did not finish in time)");
    if (o.json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        if (!(rc = s_summary(&c, &w, finished, test_acc))) printf("%s\n", cnd_jw_text(&w));
        cnd_jw_free(&w);
    }
    if (!rc && !met) rc = CND_CMD_EXIT_UNMET;
done:
    s_ctx_free(&c);
    return rc;
}
