/*
 * cmd_common.c: pieces shared by the compress/ subcommands (train, distill, quantize, eval):
 * loading data from a spec, optimizer and schedule names, provenance metadata.
 */
#include "cmd_common.h"
#include "checkpoint.h"
#include "classmap.h"
#include "clock.h"
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

int cnd_cmd_fit_data(const cnd_model_t *m, cnd_dataset_t *ds, const char *what)
{
    if (!ds) return 0;
    if (ds->shape.h == 1 && ds->shape.w == 1 && cnd_shape_size(ds->shape) == cnd_shape_size(m->in))
        ds->shape = m->in;
    const char *map = cnd_model_meta_get(m, "labels");
    if (!map) return 0;
    int rc = cnd_data_map_classes(ds, map, NULL);
    return rc ? cnd_err_wrap(rc, "%s", what) : 0;
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
    /* The class map (common/classmap.h), when the data names every output of the model. */
    if (!rc && train->n_classes == m->n_classes) {
        char *map = malloc(CND_CLASSMAP_MAX + 1);
        if (!map) return CND_ENOMEM;
        rc = cnd_data_classmap(train, map, CND_CLASSMAP_MAX + 1);
        if (!rc) rc = cnd_model_meta_set(m, "labels", map);
        free(map);
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
