/* test_optim.c: optimizer steps and schedules against hand-computed values. */
#include "check.h"
#include "optim.h"

#include <string.h>

static cnd_model_t *tiny(void)
{
    cnd_model_t *m = NULL;
    /* dense(1) on 2 inputs: params w0, w1, b. */
    if (cnd_model_new(&m, "dense(1)", (cnd_shape_t){2, 1, 1}, 1)) return NULL;
    m->params[0] = 1.0f;
    m->params[1] = -2.0f;
    m->params[2] = 0.5f;
    return m;
}

int main(void)
{
    cnd_model_t *m = tiny();
    CHECK(m != NULL);
    if (!m) return 1;
    cnd_optim_t o;
    /* SGD momentum 0.9, wd 0.1 on weights only, lr 0.1; gradient 1 everywhere.
     * Step 1: g_w0 = 1 + 0.1*1 = 1.1; buf = 1.1; w0 = 1 - 0.11 = 0.89
     *         g_b = 1 (no decay); b = 0.5 - 0.1 = 0.4
     * Step 2: g_w0 = 1 + 0.1*0.89 = 1.089; buf = 0.9*1.1 + 1.089 = 2.079; w0 = 0.89 - 0.2079 */
    cnd_optim_cfg_t c = cnd_optim_defaults(CND_OPT_SGD, 0.1f);
    c.weight_decay = 0.1f;
    CHECK(cnd_optim_init(&o, &c, m) == 0);
    for (int i = 0; i < 3; i++) m->grads[i] = 1.0f;
    cnd_optim_step(&o, m, 0.1f);
    CHECK_NEAR(m->params[0], 0.89, 1e-6);
    CHECK_NEAR(m->params[2], 0.4, 1e-6);
    cnd_optim_step(&o, m, 0.1f);
    CHECK_NEAR(m->params[0], 0.89 - 0.2079, 1e-6);
    CHECK_NEAR(m->params[2], 0.4 - 0.1 * 1.9, 1e-6);
    cnd_optim_free(&o);
    cnd_model_destroy(&m);

    /* Adam lr 0.01: the first step moves each parameter by lr * sign(g) (bias-corrected). */
    m = tiny();
    c = cnd_optim_defaults(CND_OPT_ADAM, 0.01f);
    CHECK(cnd_optim_init(&o, &c, m) == 0);
    m->grads[0] = 3.0f;
    m->grads[1] = -0.5f;
    m->grads[2] = 0.0f;
    cnd_optim_step(&o, m, 0.01f);
    CHECK_NEAR(m->params[0], 1.0 - 0.01, 1e-6);
    CHECK_NEAR(m->params[1], -2.0 + 0.01, 1e-6);
    CHECK_NEAR(m->params[2], 0.5, 1e-9);
    /* Second step with g = 3: m = 0.9*0.3+0.3 = 0.57 -> mhat = 0.57/0.19 = 3;
     * v = 0.999*0.009+0.009 -> vhat = 9; step = 0.01 * 3/3 = 0.01. */
    cnd_optim_step(&o, m, 0.01f);
    CHECK_NEAR(m->params[0], 1.0 - 0.02, 1e-5);
    cnd_optim_free(&o);
    cnd_model_destroy(&m);

    /* AdamW decouples decay: with zero gradient only the decay moves weights, not biases. */
    m = tiny();
    c = cnd_optim_defaults(CND_OPT_ADAMW, 0.1f);
    c.weight_decay = 0.5f;
    CHECK(cnd_optim_init(&o, &c, m) == 0);
    memset(m->grads, 0, 3 * sizeof(float));
    cnd_optim_step(&o, m, 0.1f);
    CHECK_NEAR(m->params[0], 1.0 * (1 - 0.05), 1e-6);
    CHECK_NEAR(m->params[2], 0.5, 1e-9);
    cnd_optim_free(&o);
    cnd_model_destroy(&m);

    /* Schedules. */
    cnd_sched_cfg_t s = {.kind = CND_SCHED_COSINE, .total_steps = 100};
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 0), 1.0, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 50), 0.5, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 100), 0.0, 1e-6);
    s.warmup_steps = 10;
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 0), 0.1, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 9), 1.0, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&s, 1.0f, 55), 0.5, 1e-6);
    cnd_sched_cfg_t st = {.kind = CND_SCHED_STEP, .step_size = 10, .gamma = 0.1f};
    CHECK_NEAR(cnd_sched_lr(&st, 1.0f, 9), 1.0, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&st, 1.0f, 10), 0.1, 1e-6);
    CHECK_NEAR(cnd_sched_lr(&st, 1.0f, 25), 0.01, 1e-7);
    cnd_sched_cfg_t k = {.kind = CND_SCHED_CONST};
    CHECK_NEAR(cnd_sched_lr(&k, 0.3f, 1000), 0.3, 1e-7);
    return check_result("test_optim");
}
