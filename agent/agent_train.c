/*
 * agent_train.c: the site's local distillation round (see agent_train.h).
 */
#include "agent_train.h"
#include "job_dp.h"
#include "classmap.h"
#include "cmd_common.h"
#include "onnx_graph.h"
#include "quant_fed.h"
#include "clock.h"
#include "distill.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cnd_agent_data_free(cnd_agent_data_t *d)
{
    cnd_data_destroy(&d->train);
    cnd_data_destroy(&d->val);
    cnd_data_destroy(&d->train_n);
    cnd_data_destroy(&d->val_n);
    free(d->teacher_logits);
    memset(d, 0, sizeof *d);
}

size_t cnd_agent_data_bytes(const cnd_agent_data_t *d)
{
    size_t b = 0;
    const cnd_dataset_t *sets[] = {d->train, d->val, d->train_n, d->val_n};
    for (int i = 0; i < 4; i++)
        if (sets[i]) b += sets[i]->n * (cnd_shape_size(sets[i]->shape) * sizeof(float) + 1);
    if (d->train) b += d->train->n * (size_t)d->classes * sizeof(float);
    return b;
}

static int s_copy_norm(cnd_dataset_t **out, const cnd_dataset_t *src, const cnd_model_t *m)
{
    uint32_t *idx = malloc((src->n ? src->n : 1) * sizeof *idx);
    if (!idx) return cnd_errf(CND_ENOMEM, "normalising the local data: out of memory");
    for (size_t i = 0; i < src->n; i++) idx[i] = (uint32_t)i;
    int rc = cnd_data_subset(out, src, idx, src->n);
    free(idx);
    if (!rc) cnd_model_normalize(m, (*out)->x, (*out)->n);
    return rc;
}

int cnd_agent_data_prepare(cnd_agent_data_t *d, const char *data_spec, double val_frac,
                           uint64_t seed, cnd_model_t *teacher, const char *onnx_path,
                           const char *onnx_prep, const cnd_model_t *student,
                           const cnd_job_spec_t *job)
{
    cnd_agent_data_free(d);
    cnd_dataset_t *all = NULL;
    cnd_shape_t want = {(int)job->in_c, (int)job->in_h, (int)job->in_w};
    int rc = cnd_data_open_for(&all, data_spec, "train", &want);
    if (rc) return cnd_err_wrap(rc, "local data '%s'", data_spec);
    cnd_shape_t in = {(int)job->in_c, (int)job->in_h, (int)job->in_w};
    /* Flat records (CSV) of as many values as the student's input take its shape. */
    if (all->shape.h == 1 && all->shape.w == 1 && cnd_shape_size(all->shape) == cnd_shape_size(in))
        all->shape = in;
    if ((uint32_t)all->shape.c != job->in_c || (uint32_t)all->shape.h != job->in_h ||
        (uint32_t)all->shape.w != job->in_w) {
        rc = cnd_errf(CND_EINVAL,
                      "local data samples are %dx%dx%d, the job's student takes %ux%ux%u",
                      all->shape.c, all->shape.h, all->shape.w, job->in_c, job->in_h, job->in_w);
        goto fail;
    }
    if ((rc = cnd_cmd_impute(teacher, all, data_spec, 1))) goto fail; /* na=mean */
    /* Labels by name onto the job's classes: never renumbered by what this site happens to
     * hold; a label the job does not know is refused. */
    size_t per_class[CND_CLASSES_MAX];
    if ((rc = cnd_data_map_classes(all, job->labels, per_class))) {
        rc = cnd_err_wrap(rc, "local data '%s' against the job's classes", data_spec);
        goto fail;
    }
    d->n_missing = 0;
    for (int k = 0; k < (int)job->classes; k++)
        if (!per_class[k]) d->missing[d->n_missing++] = (uint8_t)k;
    if (all->n < 2) {
        rc = cnd_errf(CND_EINVAL, "local data has %zu samples: too few to train", all->n);
        goto fail;
    }
    if ((rc = cnd_data_split(&d->train, &d->val, all, val_frac, seed))) goto fail;
    cnd_data_destroy(&all);
    d->classes = (int)job->classes;
    if (!teacher) { /* a site-local ONNX teacher: checks its outputs against the classes */
        rc = cnd_onnx_teacher_logits(&d->teacher_logits, onnx_path, onnx_prep, d->train,
                                     (int)job->classes);
        if (rc) goto fail;
    } else if (teacher->n_classes != (int)job->classes) {
        rc = cnd_errf(CND_EINVAL, "the teacher has %d outputs, the job's student %u",
                      teacher->n_classes, job->classes);
        goto fail;
    } else if (cnd_model_meta_get(teacher, "labels") &&
               strcmp(cnd_model_meta_get(teacher, "labels"), job->labels) != 0) {
        rc = cnd_errf(CND_EINVAL, "the teacher's classes (%.200s) are not the job's (%.200s)",
                      cnd_model_meta_get(teacher, "labels"), job->labels);
        goto fail;
    } else if ((rc = cnd_distill_teacher_logits(&d->teacher_logits, teacher, d->train))) {
        goto fail;
    }
    if ((rc = s_copy_norm(&d->train_n, d->train, student))) goto fail;
    if ((rc = s_copy_norm(&d->val_n, d->val, student))) goto fail;
    /* The training copy must match the label count the student expects. */
    d->train_n->n_classes = (int)job->classes;
    d->val_n->n_classes = (int)job->classes;
    return 0;
fail:
    cnd_data_destroy(&all);
    cnd_agent_data_free(d);
    return rc;
}

void cnd_agent_update_free(cnd_agent_update_t *u)
{
    free(u->update);
    memset(u, 0, sizeof *u);
}

int cnd_agent_local_round(cnd_agent_update_t *out, const cnd_model_t *global,
                          const cnd_agent_data_t *d, const cnd_job_spec_t *job, int qat,
                          uint64_t seed)
{
    memset(out, 0, sizeof *out);
    if (!d->train_n || !d->teacher_logits)
        return cnd_errf(CND_ESTATE, "local data is not prepared for this job");
    cnd_model_t *m = NULL;
    cnd_fq_t *fq = NULL;
    int rc = cnd_model_clone(&m, global);
    if (rc) return rc;
    /* QAT: fake quantization with the coordinator's quantizer rides along in the forward and
     * backward passes (compress/quant.h); the float weights are what train and what the update
     * is made of. */
    if (qat && (rc = cnd_fedq_install(&fq, m))) goto done;
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.epochs = (int)job->local_epochs;
    cfg.batch = (int)(job->batch > CND_JOB_DP_BATCH_MAX ? CND_JOB_DP_BATCH_MAX : job->batch);
    cfg.optim = cnd_optim_defaults(CND_OPT_ADAM, job->lr);
    cfg.sched = CND_SCHED_CONST;
    cfg.seed = seed;
    if (job->dp_clip > 0 &&
        job->dp_mode ==
            CND_JOB_DP_LOCAL) { /* DP-SGD: what the site's accountant counted (proto/job_dp.h) */
        /* SGD with momentum 0.9, not Adam: Adam divides each coordinate by its own noisy
         * second moment, which for the few steps of a round turns the noise into steps of the
         * full learning rate (docs/privacy.md) */
        cfg.optim = cnd_optim_defaults(CND_OPT_SGD, job->lr);
        cfg.dp.noise = job->dp_noise;
        cfg.dp.clip = job->dp_clip;
        cfg.dp.delta = job->dp_delta;
    }
    cnd_distill_t dctx = {d->teacher_logits, d->train_n->y, d->classes, job->temperature,
                          job->alpha};
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &dctx;
    cnd_train_result_t res;
    double t0 = cnd_now();
    if ((rc = cnd_train(m, d->train_n, NULL, &cfg, &res))) {
        rc = cnd_err_wrap(rc, "local training");
        goto done;
    }
    out->train_ms = (uint32_t)((cnd_now() - t0) * 1e3);
    out->train_loss = res.loss;
    out->samples = d->train_n->n;
    if (d->val_n && d->val_n->n) {
        cnd_eval_t ev;
        if ((rc = cnd_evaluate(m, d->val_n, 256, &ev))) goto done;
        out->val_loss = isfinite(ev.loss) ? ev.loss : 0;
        out->val_acc = ev.acc;
    }
    cnd_fq_destroy(&fq); /* hooks off: m is a plain float model again */
    out->dim = m->num_params + m->num_state;
    out->update = malloc((out->dim ? out->dim : 1) * sizeof *out->update);
    if (!out->update) {
        rc = cnd_errf(CND_ENOMEM, "local update: out of memory");
        goto done;
    }
    for (size_t i = 0; i < m->num_params; i++) out->update[i] = m->params[i] - global->params[i];
    for (size_t i = 0; i < m->num_state; i++)
        out->update[m->num_params + i] = m->state[i] - global->state[i];
    for (size_t i = 0; i < out->dim; i++)
        if (!isfinite(out->update[i])) {
            rc = cnd_errf(CND_ERANGE, "local training produced a non-finite update");
            goto done;
        }
done:
    cnd_fq_destroy(&fq);
    cnd_model_destroy(&m);
    if (rc) cnd_agent_update_free(out);
    return rc;
}
