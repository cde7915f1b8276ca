/*
 * optim.c: see optim.h. Update rules follow PyTorch's torch.optim definitions so results can
 * be compared side by side: SGD v = mu*v + g; p -= lr*v (Nesterov: p -= lr*(g + mu*v));
 * Adam with bias correction; AdamW with decoupled decay p -= lr*wd*p before the Adam step.
 */
#include "optim.h"
#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cnd_optim_cfg_t cnd_optim_defaults(cnd_optim_kind_t kind, float lr)
{
    cnd_optim_cfg_t c = {.kind = kind, .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (kind == CND_OPT_SGD) c.momentum = 0.9f;
    return c;
}

int cnd_optim_init(cnd_optim_t *o, const cnd_optim_cfg_t *cfg, const cnd_model_t *m)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = m->num_params;
    size_t n = o->n ? o->n : 1;
    o->m = calloc(n, sizeof(float));
    if (cfg->kind != CND_OPT_SGD) o->v = calloc(n, sizeof(float));
    if (cfg->weight_decay > 0) {
        o->decay = calloc(n, 1);
        if (o->decay)
            for (int i = 0; i < m->n_layers; i++)
                memset(o->decay + m->layers[i].param_off, 1, m->layers[i].n_weights);
    }
    if (!o->m || (cfg->kind != CND_OPT_SGD && !o->v) || (cfg->weight_decay > 0 && !o->decay)) {
        cnd_optim_free(o);
        return CND_ENOMEM;
    }
    return 0;
}

void cnd_optim_free(cnd_optim_t *o)
{
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o->decay);
    memset(o, 0, sizeof *o);
}

/* Adam/AdamW over one task's share of the parameters. Every element is independent, so the
 * split across threads (pool.h) does not change a bit; without weight decay the loop has no
 * branch and runs in SIMD lanes. */
typedef struct {
    cnd_optim_t *o;
    float *p;
    const float *g;
    float lr, step, inv_sqrt_bc2;
} s_adam_job;

static void s_adam_task(void *ctx, int task, int ntasks)
{
    const s_adam_job *j = ctx;
    cnd_optim_t *o = j->o;
    const cnd_optim_cfg_t *c = &o->cfg;
    float *restrict p = j->p, *restrict mm = o->m, *restrict vv = o->v;
    const float *restrict g = j->g;
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps, step = j->step, isb = j->inv_sqrt_bc2;
    float wd = c->weight_decay, lr = j->lr;
    long lo, hi;
    cnd_pool_range((long)o->n, ntasks, task, &lo, &hi);
    if (!o->decay) {
        for (long i = lo; i < hi; i++) {
            float gi = g[i];
            mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
            vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
            p[i] -= step * mm[i] / (sqrtf(vv[i]) * isb + eps);
        }
        return;
    }
    int decoupled = c->kind == CND_OPT_ADAMW;
    for (long i = lo; i < hi; i++) {
        float gi = g[i];
        if (o->decay[i] && decoupled)
            p[i] -= lr * wd * p[i];
        else if (o->decay[i])
            gi += wd * p[i];
        mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
        vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
        p[i] -= step * mm[i] / (sqrtf(vv[i]) * isb + eps);
    }
}

void cnd_optim_step(cnd_optim_t *o, cnd_model_t *m, float lr)
{
    const cnd_optim_cfg_t *c = &o->cfg;
    float *p = m->params;
    const float *g = m->grads;
    size_t n = o->n;
    float wd = c->weight_decay;
    o->t++;
    if (c->kind == CND_OPT_SGD) {
        float mu = c->momentum;
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + (o->decay && o->decay[i] ? wd * p[i] : 0.0f);
            if (mu != 0.0f) {
                /* PyTorch: the first step initialises the buffer with the gradient. */
                o->m[i] = o->t == 1 ? gi : mu * o->m[i] + gi;
                gi = c->nesterov ? gi + mu * o->m[i] : o->m[i];
            }
            p[i] -= lr * gi;
        }
        return;
    }
    float b1 = c->beta1, b2 = c->beta2;
    float bc1 = 1.0f - powf(b1, (float)o->t), bc2 = 1.0f - powf(b2, (float)o->t);
    s_adam_job j = {o, p, g, lr, lr / bc1, 1.0f / sqrtf(bc2)};
    cnd_pool_run(s_adam_task, &j, cnd_pool_threads());
}

float cnd_sched_lr(const cnd_sched_cfg_t *s, float base, long step)
{
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return base * (float)(step + 1) / (float)s->warmup_steps;
    switch (s->kind) {
    case CND_SCHED_STEP:
        if (s->step_size <= 0) return base;
        return base * powf(s->gamma, (float)((step - s->warmup_steps) / s->step_size));
    case CND_SCHED_COSINE: {
        long span = s->total_steps - s->warmup_steps;
        if (span <= 0) return base;
        double t = (double)(step - s->warmup_steps) / (double)span;
        if (t > 1.0) t = 1.0;
        double lo = base * s->min_lr_frac;
        return (float)(lo + 0.5 * (base - lo) * (1.0 + cos(3.141592653589793 * t)));
    }
    default: return base;
    }
}
