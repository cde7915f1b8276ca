/*
 * cmd_common.c: pieces shared by the compress/ subcommands (train, distill, quantize, eval):
 * loading data from a spec, optimizer and schedule names, provenance metadata.
 */
#include "cmd_common.h"
#include "checkpoint.h"
#include "clock.h"
#include "dp_accountant.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_cmd_load_data(const char *spec, const char *test_spec, long subset, uint64_t seed,
                      cnd_dataset_t **train, cnd_dataset_t **test)
{
    *train = *test = NULL;
    int rc = cnd_data_open(train, spec, "train");
    if (rc) return rc;
    if (subset > 0 && (size_t)subset < (*train)->n) {
        cnd_dataset_t *sub = NULL, *rest = NULL;
        double frac = 1.0 - (double)subset / (double)(*train)->n;
        rc = cnd_data_split(&sub, &rest, *train, frac, seed ^ 0x5eed);
        cnd_data_destroy(&rest);
        cnd_data_destroy(train);
        if (rc) return rc;
        *train = sub;
    }
    if (test_spec && *test_spec)
        rc = cnd_data_open(test, test_spec, "test");
    else if (!strncmp(spec, "fmnist", 6))
        rc = cnd_data_open(test, spec, "test");
    if (rc) cnd_data_destroy(train);
    return rc;
}

int cnd_cmd_optim(const char *name, double lr, double wd, double momentum, cnd_optim_cfg_t *out)
{
    cnd_optim_kind_t k;
    if (!strcmp(name, "adam"))
        k = CND_OPT_ADAM;
    else if (!strcmp(name, "adamw"))
        k = CND_OPT_ADAMW;
    else if (!strcmp(name, "sgd"))
        k = CND_OPT_SGD;
    else
        return cnd_errf(CND_EINVAL, "--optimizer: '%s' is not adam, adamw or sgd", name);
    *out = cnd_optim_defaults(k, lr > 0 ? (float)lr : (k == CND_OPT_SGD ? 0.05f : 1e-3f));
    out->weight_decay = (float)wd;
    if (k == CND_OPT_SGD && momentum >= 0) out->momentum = (float)momentum;
    return 0;
}

int cnd_cmd_parse_sched(const char *name, cnd_sched_kind_t *out)
{
    if (!strcmp(name, "cosine"))
        *out = CND_SCHED_COSINE;
    else if (!strcmp(name, "step"))
        *out = CND_SCHED_STEP;
    else if (!strcmp(name, "const") || !strcmp(name, "constant"))
        *out = CND_SCHED_CONST;
    else
        return cnd_errf(CND_EINVAL, "--schedule: '%s' is not cosine, step or const", name);
    return 0;
}

int cnd_cmd_stamp(cnd_model_t *m, const cnd_dataset_t *train, const char *data_spec)
{
    char when[32], n[32];
    cnd_iso8601(when, cnd_unix_time());
    snprintf(n, sizeof n, "%zu", train->n);
    int rc = cnd_model_meta_set(m, "dataset", data_spec);
    if (!rc) rc = cnd_model_meta_set(m, "train_samples", n);
    if (!rc) rc = cnd_model_meta_set(m, "created", when);
    if (!rc && train->class_names) {
        size_t len = 1;
        for (int k = 0; k < train->n_classes; k++) len += strlen(train->class_names[k]) + 1;
        char *s = malloc(len);
        if (!s) return CND_ENOMEM;
        s[0] = 0;
        for (int k = 0; k < train->n_classes; k++) {
            if (k) strcat(s, ",");
            strcat(s, train->class_names[k]);
        }
        rc = cnd_model_meta_set(m, "labels", s);
        free(s);
    }
    return rc;
}

int cnd_cmd_ckpt_setup(cnd_train_cfg_t *cfg, const char *out, int resume, int no_ckpt,
                       const char *config, char *path, size_t n)
{
    if (resume && no_ckpt)
        return cnd_errf(CND_EINVAL, "--resume needs the checkpoint that --no-checkpoint turns off");
    if (no_ckpt) return 0;
    if (strlen(out) + 6 > n) return cnd_errf(CND_EINVAL, "--out path is too long");
    snprintf(path, n, "%s.ckpt", out);
    if (!resume && cnd_file_exists(path)) /* before the data loads; cnd_train checks too */
        return cnd_ckpt_refuse_existing(path);
    cfg->ckpt_path = path;
    cfg->ckpt_config = config;
    cfg->resume = resume;
    return 0;
}

void cnd_cmd_ckpt_done(const cnd_train_cfg_t *cfg)
{
    if (cfg->ckpt_path && remove(cfg->ckpt_path) != 0)
        fprintf(stderr, "warning: could not remove %s\n", cfg->ckpt_path);
}

int cnd_cmd_dp_setup(const cnd_cmd_dp_t *o, size_t n, cnd_train_cfg_t *cfg)
{
    memset(&cfg->dp, 0, sizeof cfg->dp);
    if (!(o->epsilon > 0 || o->noise > 0)) {
        if (o->delta > 0 || o->clip > 0)
            return cnd_errf(CND_EINVAL, "--dp-delta and --dp-clip need --dp-epsilon or --dp-noise");
        return 0;
    }
    if (o->epsilon > 0 && o->noise > 0)
        return cnd_errf(CND_EINVAL, "give --dp-epsilon (the noise is solved for it) or "
                                    "--dp-noise, not both");
    double delta = o->delta > 0 ? o->delta : 1e-5;
    if (delta > 1.0 / (double)n)
        return cnd_errf(CND_EINVAL,
                        "--dp-delta %g is above 1/N = %g for %zu training records: such a "
                        "delta allows releasing a record outright; use a smaller one",
                        delta, 1.0 / (double)n, n);
    if ((size_t)cfg->batch > n)
        return cnd_errf(CND_EINVAL, "DP-SGD: --batch %d is above the %zu training records",
                        cfg->batch, n);
    cnd_dp_params_t p = {.q = (double)cfg->batch / (double)n,
                         .sigma = o->noise,
                         .steps = (long)cfg->epochs *
                                  (long)((n + (size_t)cfg->batch - 1) / (size_t)cfg->batch),
                         .delta = delta};
    double eps;
    int rc = o->epsilon > 0 ? cnd_dp_solve_noise(&p, o->epsilon, &p.sigma, &eps)
                            : cnd_dp_epsilon(&p, &eps, NULL);
    if (rc) return cnd_err_wrap(rc, "DP-SGD accountant");
    cfg->dp.noise = p.sigma;
    cfg->dp.clip = o->clip > 0 ? o->clip : 1.0;
    cfg->dp.delta = delta;
    printf("DP-SGD: Poisson sampling rate %.6g (expected batch %d of %zu), %ld steps, clip %g, "
           "noise multiplier %.6g%s: (epsilon %.4f, delta %g)-DP\n",
           p.q, cfg->batch, n, p.steps, cfg->dp.clip, p.sigma, o->epsilon > 0 ? " (solved)" : "",
           eps, delta);
    return 0;
}

int cnd_cmd_dp_stamp(cnd_model_t *m, size_t n, const cnd_train_cfg_t *cfg,
                     const cnd_train_result_t *res)
{
    if (!(cfg->dp.clip > 0)) return 0;
    printf("privacy: (epsilon %.4f, delta %g)-DP for each training record (RDP accountant, "
           "Poisson sampling rate %.6g, noise multiplier %.6g, clip %g, %ld steps)\n",
           res->dp_epsilon, cfg->dp.delta, (double)cfg->batch / (double)n, cfg->dp.noise,
           cfg->dp.clip, res->steps);
    char v[6][64];
    snprintf(v[0], 64, "%.6f", res->dp_epsilon);
    snprintf(v[1], 64, "%.6g", cfg->dp.delta);
    snprintf(v[2], 64, "%.9g", cfg->dp.noise);
    snprintf(v[3], 64, "%.9g", cfg->dp.clip);
    snprintf(v[4], 64, "%.9g", (double)cfg->batch / (double)n);
    snprintf(v[5], 64, "%ld", res->steps);
    const char *k[6] = {"dp_epsilon", "dp_delta",         "dp_noise",
                        "dp_clip",    "dp_sampling_rate", "dp_steps"};
    int rc = 0;
    for (int i = 0; i < 6 && !rc; i++) rc = cnd_model_meta_set(m, k[i], v[i]);
    return rc;
}
