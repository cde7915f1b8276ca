/*
 * train.c: minibatch training with shuffling, schedules and progress; evaluation.
 *
 * With DP-SGD (train.h, dpsgd.h) an epoch is ceil(n / B) steps, each over a Poisson sample of
 * the records instead of a slice of a shuffled order; the rest (augmentation, loss callbacks,
 * schedules, checkpoints) is shared.
 */
#include "train.h"
#include "checkpoint.h"
#include "clock.h"
#include "dp_accountant.h"
#include "fileio.h"
#include "augment.h"
#include "loss.h"
#include "pool.h"
#include "progress.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cnd_set_threads(int threads)
{
    /* Our pool splits each layer's batch across threads; each thread calls single-threaded
     * sgemm (pool.h explains why this beats OpenBLAS's own threading here). */
    if (cnd_pool_set_threads(threads) == 0) openblas_set_num_threads(1);
}

const char *cnd_blas_info(void)
{
    static _Thread_local char buf[96];
    snprintf(buf, sizeof buf, "%d threads, OpenBLAS %s kernels", cnd_pool_threads(),
             openblas_get_corename());
    return buf;
}

cnd_train_cfg_t cnd_train_defaults(void)
{
    cnd_train_cfg_t c = {0};
    c.epochs = 5;
    c.batch = 64;
    c.optim = cnd_optim_defaults(CND_OPT_ADAM, 1e-3f);
    c.sched = CND_SCHED_COSINE;
    c.seed = 1;
    return c;
}

typedef struct {
    const uint8_t *labels;
} s_xent_ctx;

static float s_xent(void *ctx, float *dlogits, const float *logits, const uint32_t *idx, int B,
                    int K, int *correct)
{
    const s_xent_ctx *c = ctx;
    uint8_t y[4096];
    for (int b = 0; b < B; b++) y[b] = c->labels[idx[b]];
    return cnd_loss_xent(dlogits, logits, y, B, K, correct);
}

/* Continues from cfg->ckpt_path when it exists and cfg->resume is set (checkpoint.h): the model
 * and optimizer get its state, and *epoch, *step, *aug_rng its position. Refuses a checkpoint
 * without resume, of other settings, or with more epochs done than asked; changes nothing then. */
static int s_resume(const cnd_train_cfg_t *cfg, cnd_model_t *m, cnd_optim_t *opt, int *epoch,
                    long *step, cnd_rng_t *aug_rng)
{
    const char *path = cfg->ckpt_path, *config = cfg->ckpt_config ? cfg->ckpt_config : "";
    if (!cnd_file_exists(path)) {
        if (cfg->resume && cfg->verbose)
            printf("no checkpoint at %s: starting from the first epoch\n", path);
        return 0;
    }
    if (!cfg->resume) return cnd_ckpt_refuse_existing(path);
    cnd_ckpt_t ck;
    int rc = cnd_ckpt_load(&ck, path);
    if (rc) return rc;
    char diff[256];
    if (cnd_ckpt_config_diff(ck.config, config, diff, sizeof diff))
        rc = cnd_errf(CND_EINVAL,
                      "%s was written with other settings: %s; rerun with its "
                      "settings or delete it to start over",
                      path, diff);
    else if (ck.epochs_done > cfg->epochs)
        rc = cnd_errf(CND_EINVAL, "%s has %d epochs done, more than the %d asked", path,
                      ck.epochs_done, cfg->epochs);
    else if (!(rc = cnd_ckpt_apply(&ck, path, m, opt))) {
        *epoch = ck.epochs_done;
        *step = ck.step;
        *aug_rng = ck.aug_rng;
        if (cfg->verbose)
            printf("resuming from %s: %d of %d epochs done\n", path, *epoch, cfg->epochs);
    }
    cnd_ckpt_free(&ck);
    return rc;
}

/* One training run's working state. */
typedef struct {
    cnd_model_t *m;
    const cnd_dataset_t *ds;
    const cnd_train_cfg_t *cfg;
    size_t d, n;     /* floats per sample, samples */
    int K;           /* classes the model outputs */
    uint32_t *order; /* n: this epoch's sample order */
    float *xb;       /* batch x d: the batch's samples */
    float *aug_work; /* d: augmentation scratch */
    float *dlogits;  /* batch x K */
    cnd_rng_t rng;   /* the shuffles */
    cnd_rng_t aug_rng;
    cnd_optim_t opt;
    cnd_sched_cfg_t sched;
    cnd_loss_fn lossfn;
    void *lctx;
    s_xent_ctx xc;   /* the default loss's context */
    long step;       /* optimizer steps taken, resumed ones included */
    cnd_dpsgd_t *dp; /* DP-SGD state, or NULL */
    uint32_t *pick;  /* n: a DP step's Poisson sample */
} s_run_t;

static int s_check_args(const cnd_model_t *m, const cnd_dataset_t *ds, const cnd_train_cfg_t *cfg)
{
    int B = cfg->batch;
    if (B < 1 || B > 4096) return cnd_errf(CND_EINVAL, "batch size %d not in [1, 4096]", B);
    if (ds->n == 0) return cnd_errf(CND_EINVAL, "training set is empty");
    if (ds->n_classes > m->n_classes)
        return cnd_errf(CND_EINVAL, "data has %d classes but the model outputs %d", ds->n_classes,
                        m->n_classes);
    if (cnd_shape_size(ds->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL, "data samples are %dx%dx%d, model expects %dx%dx%d",
                        ds->shape.c, ds->shape.h, ds->shape.w, m->in.c, m->in.h, m->in.w);
    const cnd_dpsgd_cfg_t *dp = &cfg->dp;
    if (dp->clip > 0 && (!(dp->noise > 0) || !(dp->delta > 0 && dp->delta < 1)))
        return cnd_errf(CND_EINVAL,
                        "DP-SGD needs a positive noise multiplier (%g) and a delta "
                        "in (0, 1) (%g)",
                        dp->noise, dp->delta);
    return 0;
}

/* Buffers, optimizer, loss, learning-rate schedule and generators of a run (r->m, ds, cfg set;
 * the rest zero). */
static int s_setup(s_run_t *r)
{
    const cnd_train_cfg_t *cfg = r->cfg;
    int B = cfg->batch;
    r->d = cnd_shape_size(r->m->in);
    r->n = r->ds->n;
    r->K = r->m->n_classes;
    r->order = malloc(r->n * sizeof *r->order);
    r->xb = malloc((size_t)B * r->d * sizeof(float));
    r->aug_work = malloc(r->d * sizeof(float));
    cnd_rng_seed(&r->aug_rng, cfg->seed ^ 0xa06e11ULL);
    r->dlogits = malloc((size_t)B * r->K * sizeof(float));
    if (cfg->augment && !cfg->aug_bg)
        return cnd_errf(CND_EINVAL, "augmentation needs the background value of each channel");
    if (!r->order || !r->xb || !r->aug_work || !r->dlogits ||
        cnd_optim_init(&r->opt, &cfg->optim, r->m) || cnd_model_reserve(r->m, B))
        return cnd_errf(CND_ENOMEM, "cannot allocate training buffers");
    int rc;
    if (cfg->dp.clip > 0) {
        if ((rc = cnd_dpsgd_new(&r->dp, r->m, B))) return rc;
        if (!(r->pick = malloc(r->n * sizeof *r->pick)))
            return cnd_errf(CND_ENOMEM, "cannot allocate training buffers");
    }
    for (size_t i = 0; i < r->n; i++) r->order[i] = (uint32_t)i;
    r->xc.labels = r->ds->y;
    r->lossfn = cfg->loss ? cfg->loss : s_xent;
    r->lctx = cfg->loss ? cfg->loss_ctx : &r->xc;
    long steps_per_epoch = (long)((r->n + (size_t)B - 1) / (size_t)B);
    cnd_sched_cfg_t sched = {.kind = cfg->sched,
                             .total_steps = steps_per_epoch * cfg->epochs,
                             .warmup_steps =
                                 (long)(cfg->warmup_frac * steps_per_epoch * cfg->epochs),
                             .step_size = steps_per_epoch * (cfg->epochs > 2 ? cfg->epochs / 3 : 1),
                             .gamma = 0.1f,
                             .min_lr_frac = 0.0f};
    r->sched = sched;
    cnd_rng_seed(&r->rng, cfg->seed);
    const char *prof = getenv("CND_PROFILE");
    if (prof && (prof[0] == '1' || !strcmp(prof, "cpu")) &&
        cnd_model_profile_begin(r->m, !strcmp(prof, "cpu")))
        return CND_ENOMEM;
    return 0;
}

/* Samples idx[0..bs) through augmentation, forward and loss: r->dlogits gets the gradient of
 * the batch's mean loss, *loss and *correct its mean loss and correct count. */
static int s_forward_loss(s_run_t *r, int ep, const uint32_t *idx, int bs, float *loss,
                          int *correct)
{
    const cnd_train_cfg_t *cfg = r->cfg;
    for (int b = 0; b < bs; b++)
        memcpy(r->xb + (size_t)b * r->d, r->ds->x + (size_t)idx[b] * r->d, r->d * sizeof(float));
    if (cfg->augment)
        cnd_augment_batch(r->xb, r->aug_work, bs, r->m->in, cfg->aug_bg, cfg->augment,
                          cfg->aug_shift > 0 ? cfg->aug_shift : 2, &r->aug_rng);
    int rc;
    if (cfg->on_batch && (rc = cfg->on_batch(cfg->batch_ctx, r->xb, idx, bs))) return rc;
    const float *logits;
    if ((rc = cnd_model_forward(r->m, r->xb, bs, 1, &logits))) return rc;
    *correct = 0;
    *loss = r->lossfn(r->lctx, r->dlogits, logits, idx, bs, r->K, correct);
    if (!isfinite(*loss))
        return cnd_errf(CND_EINVAL,
                        "training diverged: loss is %f at epoch %d step %ld (lower --lr)",
                        (double)*loss, ep + 1, r->step + 1);
    return 0;
}

/* One batch: samples s..s+bs-1 of this epoch's order through forward, loss, backward and an
 * optimizer step. *loss and *correct receive the batch's mean loss and correct count. */
static int s_batch(s_run_t *r, int ep, size_t s, int bs, float *loss, int *correct)
{
    const cnd_train_cfg_t *cfg = r->cfg;
    int rc = s_forward_loss(r, ep, r->order + s, bs, loss, correct);
    if (rc) return rc;
    cnd_model_zero_grad(r->m);
    cnd_model_backward(r->m, r->dlogits);
    cnd_optim_step(&r->opt, r->m, cnd_sched_lr(&r->sched, cfg->optim.lr, r->step));
    r->step++;
    return 0;
}

/* One DP-SGD step (dpsgd.h): a Poisson sample of the records, in chunks of at most B through
 * forward, loss and clipped per-sample backward; then noise and an optimizer step. Adds the
 * sample's loss sum, correct count and size to *loss_sum, *correct, *seen. */
static int s_dp_step(s_run_t *r, int ep, double *loss_sum, size_t *correct, size_t *seen)
{
    const cnd_train_cfg_t *cfg = r->cfg;
    int B = cfg->batch, rc;
    double q = (double)B / (double)r->n;
    size_t cnt;
    if ((rc = cnd_dpsgd_poisson(r->dp, r->pick, &cnt, r->n, q > 1 ? 1 : q))) return rc;
    for (size_t s = 0; s < cnt; s += (size_t)B) {
        int bs = (int)(cnt - s < (size_t)B ? cnt - s : (size_t)B), ok = 0;
        float loss = 0;
        if ((rc = s_forward_loss(r, ep, r->pick + s, bs, &loss, &ok))) return rc;
        /* the loss callbacks give the mean's gradient; DP clips each sample's own */
        for (size_t i = 0; i < (size_t)bs * (size_t)r->K; i++) r->dlogits[i] *= (float)bs;
        cnd_dpsgd_accumulate(r->dp, r->m, r->dlogits, bs, cfg->dp.clip);
        *loss_sum += (double)loss * bs;
        *correct += (size_t)ok;
    }
    *seen += cnt;
    if ((rc = cnd_dpsgd_finish(r->dp, r->m, cfg->dp.noise, cfg->dp.clip,
                               q > 1 ? (double)r->n : (double)B)))
        return rc;
    cnd_optim_step(&r->opt, r->m, cnd_sched_lr(&r->sched, cfg->optim.lr, r->step));
    r->step++;
    return 0;
}

/* A DP-SGD epoch: ceil(n / B) steps of s_dp_step, with a progress bar; its mean loss and
 * accuracy over the samples drawn, and the clipping statistics, into res. */
static int s_dp_epoch(s_run_t *r, int ep, cnd_train_result_t *res)
{
    int B = r->cfg->batch;
    long steps = (long)((r->n + (size_t)B - 1) / (size_t)B);
    char label[64], extra[64];
    snprintf(label, sizeof label, "epoch %d/%d", ep + 1, r->cfg->epochs);
    cnd_progress_t pr;
    cnd_progress_begin(&pr, label, (uint64_t)steps, "steps");
    double loss_sum = 0.0;
    size_t correct = 0, seen = 0;
    for (long t = 0; t < steps; t++) {
        int rc = s_dp_step(r, ep, &loss_sum, &correct, &seen);
        if (rc) return rc;
        snprintf(extra, sizeof extra, "loss %.4f", seen ? loss_sum / (double)seen : 0.0);
        cnd_progress_update(&pr, (uint64_t)t + 1, extra);
    }
    cnd_progress_end(&pr);
    res->loss = seen ? (float)(loss_sum / (double)seen) : 0.0f;
    res->acc = seen ? (float)correct / (float)seen : 0.0f;
    cnd_dpsgd_stats_t st = cnd_dpsgd_take_stats(r->dp);
    res->dp_clipped = st.samples ? (double)st.clipped / (double)st.samples : 0.0;
    res->dp_mean_norm = st.samples ? st.norm_sum / (double)st.samples : 0.0;
    return 0;
}

/* Epsilon after the steps taken so far (0 without DP). */
static int s_dp_epsilon(const s_run_t *r, double *eps)
{
    *eps = 0;
    if (!r->dp) return 0;
    double q = (double)r->cfg->batch / (double)r->n;
    cnd_dp_params_t p = {
        .q = q > 1 ? 1 : q, .sigma = r->cfg->dp.noise, .steps = r->step, .delta = r->cfg->dp.delta};
    return cnd_dp_epsilon(&p, eps, NULL);
}

/* One epoch over the shuffled order, with a progress bar; its mean loss and accuracy into res. */
static int s_epoch(s_run_t *r, int ep, cnd_train_result_t *res)
{
    if (r->dp) return s_dp_epoch(r, ep, res);
    int B = r->cfg->batch;
    size_t n = r->n;
    char label[64], extra[64];
    snprintf(label, sizeof label, "epoch %d/%d", ep + 1, r->cfg->epochs);
    cnd_progress_t pr;
    cnd_progress_begin(&pr, label, n, "samples");
    double loss_sum = 0.0;
    size_t correct = 0;
    for (size_t s = 0; s < n; s += (size_t)B) {
        int bs = (int)(n - s < (size_t)B ? n - s : (size_t)B), ok = 0;
        float loss = 0;
        int rc = s_batch(r, ep, s, bs, &loss, &ok);
        if (rc) return rc;
        loss_sum += (double)loss * bs;
        correct += (size_t)ok;
        snprintf(extra, sizeof extra, "loss %.4f", loss_sum / (double)(s + (size_t)bs));
        cnd_progress_update(&pr, s + (size_t)bs, extra);
    }
    cnd_progress_end(&pr);
    res->loss = (float)(loss_sum / (double)n);
    res->acc = (float)correct / (float)n;
    return 0;
}

/* The epoch's line on stdout (verbose): loss, accuracy, validation accuracy, speed. */
static int s_epoch_line(s_run_t *r, const cnd_dataset_t *val, int ep, const cnd_train_result_t *res,
                        double seconds)
{
    printf("epoch %d/%d  loss %.4f  train acc %.4f", ep + 1, r->cfg->epochs, res->loss, res->acc);
    if (r->dp) {
        double eps;
        int rc = s_dp_epsilon(r, &eps);
        if (rc) return rc;
        printf("  clipped %.0f%% (mean norm %.3g)  epsilon %.3f", 100.0 * res->dp_clipped,
               res->dp_mean_norm, eps);
    }
    if (val && val->n) {
        cnd_eval_t ev;
        int rc = cnd_evaluate(r->m, val, 256, &ev);
        if (rc) return rc;
        printf("  val acc %.4f", ev.acc);
    }
    printf("  %.0f samples/s  %.1fs\n", (double)r->n / seconds, seconds);
    fflush(stdout);
    return 0;
}

int cnd_train(cnd_model_t *m, const cnd_dataset_t *ds, const cnd_dataset_t *val,
              const cnd_train_cfg_t *cfg, cnd_train_result_t *res)
{
    memset(res, 0, sizeof *res);
    int rc = s_check_args(m, ds, cfg);
    if (rc) return rc;
    s_run_t r;
    memset(&r, 0, sizeof r);
    int no_fuse = m->no_fuse;
    r.m = m;
    r.ds = ds;
    r.cfg = cfg;
    if ((rc = s_setup(&r))) goto done;
    int start_epoch = 0;
    if (cfg->ckpt_path && (rc = s_resume(cfg, m, &r.opt, &start_epoch, &r.step, &r.aug_rng)))
        goto done;
    res->resumed_epochs = start_epoch;
    double t0 = cnd_now();
    for (int ep = 0; ep < cfg->epochs; ep++) {
        double te = cnd_now();
        cnd_rng_shuffle_u32(&r.rng, r.order, r.n);
        if (ep < start_epoch) continue; /* replays the shuffles of the finished epochs */
        if ((rc = s_epoch(&r, ep, res))) goto done;
        if (cfg->verbose && (rc = s_epoch_line(&r, val, ep, res, cnd_now() - te))) goto done;
        if (cfg->ckpt_path && (rc = cnd_ckpt_save(cfg->ckpt_path, cfg->ckpt_config, ep + 1, r.step,
                                                  &r.aug_rng, &r.opt, m)))
            goto done;
        if (cfg->on_epoch && cfg->on_epoch(cfg->epoch_ctx, m, ep)) break;
    }
    res->seconds = cnd_now() - t0;
    res->samples_per_s =
        res->seconds > 0 ? (double)r.n * (cfg->epochs - start_epoch) / res->seconds : 0;
    res->steps = r.step;
    if ((rc = s_dp_epsilon(&r, &res->dp_epsilon))) goto done;
    cnd_model_profile_print(m);
done:
    cnd_dpsgd_destroy(&r.dp);
    free(r.pick);
    m->no_fuse = no_fuse; /* DP-SGD set it (dpsgd.h) */
    cnd_optim_free(&r.opt);
    free(r.order);
    free(r.xb);
    free(r.aug_work);
    free(r.dlogits);
    return rc;
}

int cnd_evaluate(cnd_model_t *m, const cnd_dataset_t *ds, int batch, cnd_eval_t *out)
{
    memset(out, 0, sizeof *out);
    if (ds->n_classes > m->n_classes)
        return cnd_errf(CND_EINVAL, "data has %d classes but the model outputs %d", ds->n_classes,
                        m->n_classes);
    if (cnd_shape_size(ds->shape) != cnd_shape_size(m->in))
        return cnd_errf(CND_EINVAL, "data samples are %dx%dx%d, model expects %dx%dx%d",
                        ds->shape.c, ds->shape.h, ds->shape.w, m->in.c, m->in.h, m->in.w);
    int K = m->n_classes;
    size_t d = cnd_shape_size(m->in);
    double loss = 0.0;
    size_t ok = 0;
    out->n_classes = K;
    for (size_t s = 0; s < ds->n; s += (size_t)batch) {
        int bs = (int)(ds->n - s < (size_t)batch ? ds->n - s : (size_t)batch);
        const float *logits;
        int rc = cnd_model_forward(m, ds->x + s * d, bs, 0, &logits);
        if (rc) return rc;
        int c = 0;
        loss += (double)cnd_loss_xent(NULL, logits, ds->y + s, bs, K, &c) * bs;
        ok += (size_t)c;
        for (int b = 0; b < bs; b++) {
            int y = ds->y[s + (size_t)b];
            out->per_class_total[y]++;
            out->per_class_correct[y] += cnd_argmax(logits + (size_t)b * K, K) == y;
        }
    }
    out->n = ds->n;
    out->loss = ds->n ? (float)(loss / (double)ds->n) : 0.0f;
    out->acc = ds->n ? (float)ok / (float)ds->n : 0.0f;
    return 0;
}

int cnd_model_logits(cnd_model_t *m, const cnd_dataset_t *ds, int batch, float **logits)
{
    int K = m->n_classes;
    size_t d = cnd_shape_size(m->in);
    float *out = malloc((ds->n ? ds->n : 1) * (size_t)K * sizeof(float));
    if (!out) return CND_ENOMEM;
    for (size_t s = 0; s < ds->n; s += (size_t)batch) {
        int bs = (int)(ds->n - s < (size_t)batch ? ds->n - s : (size_t)batch);
        const float *lg;
        int rc = cnd_model_forward(m, ds->x + s * d, bs, 0, &lg);
        if (rc) {
            free(out);
            return rc;
        }
        memcpy(out + s * (size_t)K, lg, (size_t)bs * K * sizeof(float));
    }
    *logits = out;
    return 0;
}
