/*
 * quant_qat.c: quantization-aware fine-tuning on top of the ordinary training loop.
 *
 * cnd_train() does the work; fake quantization rides along through the model hooks
 * (quant_fq.c): forward passes see quantized weights and activations, backward passes use the
 * clipped straight-through gradient, and observers move each activation range with the data.
 * Because the loop and its loss callback are the plain ones, a distillation loss (train.h's
 * cnd_loss_fn) combines with QAT without any code here knowing about it, and so does DP-SGD
 * (dpsgd.h): its per-sample backward passes run through the same hooks, so each record's
 * clipped gradient is the straight-through gradient of the fake-quantized model. Under DP the
 * observers are off: the activation ranges stay the calibrated ones (from public samples, as
 * the caller arranges), since a moving min/max of the private batches is not noised.
 */
#include "quant.h"
#include "train.h"

#include <stdlib.h>

void cnd_quant_free_scales(float **w_scales, int n_layers)
{
    for (int i = 0; w_scales && i < n_layers; i++) {
        free(w_scales[i]);
        w_scales[i] = NULL;
    }
}

int cnd_quant_qat(cnd_model_t *m, const cnd_qplan_t *plan, cnd_qrange_t *ranges, const int *w_mse,
                  float **w_scales, int wbits, const cnd_dataset_t *train, const cnd_dataset_t *val,
                  const cnd_qat_cfg_t *cfg)
{
    for (int i = 0; i < m->n_layers; i++) w_scales[i] = NULL;
    cnd_fq_t *fq = NULL;
    int dp = cfg->dp.clip > 0;
    int rc = cnd_fq_new(&fq, m, plan, ranges, w_mse, wbits, !dp, plan->n_points);
    if (rc) return rc;
    cnd_train_cfg_t tc = cnd_train_defaults();
    tc.epochs = cfg->epochs;
    tc.batch = cfg->batch;
    tc.optim = cfg->optim ? *cfg->optim : cnd_optim_defaults(CND_OPT_ADAM, cfg->lr);
    tc.dp = cfg->dp;
    tc.sched = CND_SCHED_COSINE;
    tc.seed = cfg->seed;
    tc.verbose = cfg->verbose;
    tc.loss = cfg->loss;
    tc.loss_ctx = cfg->loss_ctx;
    cnd_train_result_t res;
    if ((rc = cnd_train(m, train, val, &tc, &res))) goto done;
    if (cfg->result) *cfg->result = res;
    cnd_fq_ranges(fq, ranges);
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_DENSE && l->type != CND_L_CONV2D && l->type != CND_L_GCONV) continue;
        int rows = l->type == CND_L_DENSE ? l->p.dense.out : l->p.conv.oc;
        w_scales[i] = malloc((size_t)rows * sizeof(float));
        if (!w_scales[i]) {
            rc = CND_ENOMEM;
            goto done;
        }
        cnd_fq_weight_scales(fq, i, w_scales[i]);
    }
done:
    if (rc) cnd_quant_free_scales(w_scales, m->n_layers);
    cnd_fq_destroy(&fq);
    return rc;
}
