/*
 * cmd_common.c: pieces shared by the compress/ subcommands (train, distill, quantize, eval):
 * loading data from a spec, optimizer and schedule names, provenance metadata.
 */
#include "cmd_common.h"
#include "checkpoint.h"
#include "classmap.h"
#include "clock.h"
#include "dp_accountant.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_cmd_load_data(const char *spec, const char *test_spec, long subset, uint64_t seed,
                      cnd_dataset_t **train, cnd_dataset_t **test, const cnd_shape_t *want)
{
    *train = *test = NULL;
    int rc = cnd_data_open_for(train, spec, "train", want);
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
    if ((*train)->n_na && (rc = cnd_data_impute(*train, NULL, NULL))) {
        cnd_data_destroy(train);
        return cnd_err_wrap(rc, "%s", spec);
    }
    if (!want) want = &(*train)->shape; /* the test set fits what the model is trained on */
    if (test_spec && *test_spec)
        rc = cnd_data_open_for(test, test_spec, "test", want);
    else if (!strncmp(spec, "fmnist", 6))
        rc = cnd_data_open(test, spec, "test");
    if (!rc && *test && (*test)->n_na) {
        if (!(*train)->na_mean || cnd_shape_size((*train)->shape) != cnd_shape_size((*test)->shape))
            rc = cnd_errf(CND_EINVAL,
                          "%s has missing values and the training data none to take the means "
                          "of (na=mean on both)",
                          test_spec);
        else
            rc = cnd_data_impute(*test, (*train)->na_mean, NULL);
    }
    if (rc) {
        cnd_data_destroy(train);
        cnd_data_destroy(test);
    }
    return rc;
}

int cnd_cmd_fit_data(const cnd_model_t *m, cnd_dataset_t *ds, const char *what)
{
    if (!ds) return 0;
    if (ds->shape.h == 1 && ds->shape.w == 1 && cnd_shape_size(ds->shape) == cnd_shape_size(m->in))
        ds->shape = m->in;
    int rc = cnd_cmd_impute(m, ds, what, 0);
    if (rc) return rc;
    const char *map = cnd_model_meta_get(m, "labels");
    if (!map) return 0;
    rc = cnd_data_map_classes(ds, map, NULL);
    return rc ? cnd_err_wrap(rc, "%s", what) : 0;
}

int cnd_cmd_impute(const cnd_model_t *m, cnd_dataset_t *ds, const char *what, int own_ok)
{
    if (!ds->n_na) return 0;
    const char *text = cnd_model_meta_get(m, "na_mean");
    if (!text && own_ok) return cnd_data_impute(ds, NULL, NULL);
    if (!text)
        return cnd_errf(CND_EINVAL,
                        "%s: %zu missing values, and the model stores no training means to fill "
                        "them with (train it with na=mean)",
                        what, ds->n_na);
    size_t d = cnd_shape_size(ds->shape), k = 0;
    float *mean = malloc((d ? d : 1) * sizeof *mean);
    if (!mean) return CND_ENOMEM;
    for (const char *p = text; *p && k < d; k++) {
        char *end;
        mean[k] = strtof(p, &end);
        if (end == p || (*end && *end != ',')) break;
        p = *end ? end + 1 : end;
    }
    int rc = k == d ? cnd_data_impute(ds, mean, NULL)
                    : cnd_errf(CND_EINVAL,
                               "%s: the model's training means (na_mean) do not fit samples of "
                               "%zu values",
                               what, d);
    free(mean);
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

/* The means that filled missing training values, as "na_mean" (comma-separated, exact). */
static int s_stamp_means(cnd_model_t *m, const cnd_dataset_t *train)
{
    size_t d = cnd_shape_size(train->shape);
    if (d > (SIZE_MAX - 1) / 16) return CND_ENOMEM;
    char *s = malloc(d * 16 + 1);
    if (!s) return CND_ENOMEM;
    size_t n = 0;
    for (size_t j = 0; j < d; j++)
        n += (size_t)snprintf(s + n, 17, "%s%.9g", j ? "," : "", (double)train->na_mean[j]);
    int rc = cnd_model_meta_set(m, "na_mean", s);
    free(s);
    return rc;
}

int cnd_cmd_stamp(cnd_model_t *m, const cnd_dataset_t *train, const char *data_spec)
{
    char when[32], n[32];
    cnd_iso8601(when, cnd_unix_time());
    snprintf(n, sizeof n, "%zu", train->n);
    int rc = cnd_model_meta_set(m, "dataset", data_spec);
    if (!rc) rc = cnd_model_meta_set(m, "train_samples", n);
    if (!rc) rc = cnd_model_meta_set(m, "created", when);
    if (!rc && train->na_mean) rc = s_stamp_means(m, train);
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

int cnd_cmd_shape_specs(char *own[2], const char **data, const char **test, const char *shape)
{
    own[0] = own[1] = NULL;
    if (!shape) return 0;
    int rc = cnd_cmd_spec_shape(&own[0], *data, shape);
    if (!rc && *test) rc = cnd_cmd_spec_shape(&own[1], *test, shape);
    if (rc) {
        free(own[0]);
        own[0] = NULL;
        return rc;
    }
    *data = own[0];
    if (*test) *test = own[1];
    return 0;
}

int cnd_cmd_spec_shape(char **out, const char *spec, const char *shape)
{
    *out = NULL;
    char want[64] = "";
    if (shape) {
        unsigned c, h, w;
        char s1, s2, extra;
        if (sscanf(shape, "%u%c%u%c%u%c", &c, &s1, &h, &s2, &w, &extra) != 5 || s1 != s2 ||
            (s1 != ',' && s1 != 'x') || !c || !h || !w || c > 65535 || h > 65535 || w > 65535)
            return cnd_errf(CND_EINVAL, "--input-shape '%s': expected C,H,W (e.g. 1,28,28)", shape);
        snprintf(want, sizeof want, "%ux%ux%u", c, h, w);
        int csv = strncmp(spec, "csv:", 4) == 0, folder = strncmp(spec, "folder:", 7) == 0;
        if (!csv && !folder)
            return cnd_errf(CND_EINVAL,
                            "--input-shape applies to csv: and folder: data; '%s' carries its own "
                            "shape",
                            spec);
        const char *at = strstr(spec, ",shape=");
        if (at) {
            size_t n = strcspn(at + 7, ",");
            if (n != strlen(want) || strncmp(at + 7, want, n) != 0)
                return cnd_errf(CND_EINVAL, "--input-shape %s and the shape= of '%s' disagree",
                                shape, spec);
            want[0] = 0; /* already there */
        }
    }
    size_t n = strlen(spec) + strlen(want) + 8;
    if (!(*out = malloc(n))) return CND_ENOMEM;
    snprintf(*out, n, "%s%s%s", spec, want[0] ? ",shape=" : "", want);
    return 0;
}
