/*
 * fuzz_checkpoint.c: the training checkpoint loader (compress/checkpoint.c), as `train --resume`
 * uses it: load, compare settings, move the state into a fresh run, take an optimizer step and
 * train on.
 *
 * The input is a checkpoint WITHOUT its trailing SHA-256 (seeds: files `condenser train` wrote,
 * minus their last 32 bytes); the target loads it with the digest appended, so mutations reach
 * the parser, and as it is. The embedded model keeps its own digest, so most mutations inside it
 * stop there; fuzz_modelfile covers that parser.
 */
#include "checkpoint.h"
#include "digest.h"
#include "fuzz.h"
#include "fuzz_model.h"

static void s_resume(const cnd_ckpt_t *ck)
{
    char diff[256];
    fuzz_sink +=
        cnd_ckpt_config_diff(ck->config, "model=mlp;epochs=3;lr=0.01;seed=1", diff, sizeof diff);
    if (!fuzz_model_small(ck->model)) return;
    cnd_model_t *m = NULL;
    if (cnd_model_new(&m, ck->model->spec, ck->model->in, 7) != 0) abort(); /* it loaded */
    cnd_optim_cfg_t cfg = cnd_optim_defaults(ck->optim.cfg.kind, 0.01f);
    cfg.weight_decay = 1e-4f;
    cnd_optim_t o;
    if (cnd_optim_init(&o, &cfg, m) != 0) abort();
    if (cnd_ckpt_apply(ck, "input", m, &o) == 0) {
        fuzz_note("checkpoint applied");
        fuzz_model_run(m);
        cnd_optim_step(&o, m, 0.01f);
    }
    cnd_optim_free(&o);
    cnd_model_destroy(&m);
}

static void s_load(const uint8_t *data, size_t size)
{
    cnd_ckpt_t ck;
    if (cnd_ckpt_load(&ck, fuzz_file(0, data, size)) == 0) {
        s_resume(&ck);
        cnd_ckpt_free(&ck);
    }
    fuzz_touch_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_load(data, size);
    uint8_t *buf = malloc(size + CND_SHA256_BYTES);
    if (!buf) abort();
    memcpy(buf, data, size);
    cnd_sha256(buf + size, data, size);
    s_load(buf, size + CND_SHA256_BYTES);
    free(buf);
    return 0;
}
