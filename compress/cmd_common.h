/*
 * cmd_common.h: helpers shared by the compress/ subcommands.
 */
#ifndef CND_CMD_COMMON_H
#define CND_CMD_COMMON_H

#include "data.h"
#include "model.h"
#include "optim.h"
#include "train.h"

/* Loads the training split of `spec` (a random `subset` of it when subset > 0) and a test set:
 * `test_spec` when given, else the dataset's own test split (Fashion-MNIST), else none. Missing
 * values (na=mean) are filled with the training set's means, in both. `want` (may be NULL) is
 * the input shape of the model the data is for (folder images are fitted to it). */
int cnd_cmd_load_data(const char *spec, const char *test_spec, long subset, uint64_t seed,
                      cnd_dataset_t **train, cnd_dataset_t **test, const cnd_shape_t *want);

/* Optimizer from its name ("adam", "adamw", "sgd"); lr <= 0 picks the default for it; a
 * negative momentum keeps the default. */
int cnd_cmd_optim(const char *name, double lr, double wd, double momentum, cnd_optim_cfg_t *out);

/* Schedule from its name ("cosine", "step", "const"). */
int cnd_cmd_parse_sched(const char *name, cnd_sched_kind_t *out);

/* Checkpoint options of train and distill (checkpoint.h): unless no_ckpt, points cfg at
 * OUT.ckpt (written into path[n]) tagged with `config`; refuses, before any data is loaded,
 * --resume with --no-checkpoint and a checkpoint present without --resume. */
int cnd_cmd_ckpt_setup(cnd_train_cfg_t *cfg, const char *out, int resume, int no_ckpt,
                       const char *config, char *path, size_t n);
/* After OUT is written: removes the checkpoint (a warning on stderr if that fails). */
void cnd_cmd_ckpt_done(const cnd_train_cfg_t *cfg);

/* DP-SGD options of train and distill (docs/privacy.md): 0 = not given. */
typedef struct {
    double epsilon, delta, noise, clip;
} cnd_cmd_dp_t;

/* The four option rows, for a command's option table. */
#define CND_CMD_DP_OPTS(o)                                                                         \
    {"dp-epsilon",                                                                                 \
     CND_OPT_DBL,                                                                                  \
     &(o)->epsilon,                                                                                \
     "E",                                                                                          \
     "DP-SGD to (E, --dp-delta)-DP: solves the noise multiplier",                                  \
     1e-3,                                                                                         \
     1e4},                                                                                         \
        {"dp-delta", CND_OPT_DBL, &(o)->delta, "D", "DP-SGD delta (default 1e-5; at most 1/N)",    \
         1e-300,     0.5},                                                                         \
        {"dp-noise",                                                                               \
         CND_OPT_DBL,                                                                              \
         &(o)->noise,                                                                              \
         "S",                                                                                      \
         "DP-SGD with noise multiplier S (instead of --dp-epsilon)",                               \
         1e-3,                                                                                     \
         1e4},                                                                                     \
    {                                                                                              \
        "dp-clip", CND_OPT_DBL, &(o)->clip, "C",                                                   \
            "DP-SGD per-sample gradient clip norm (default 1)", 1e-6, 1e6                          \
    }

/* Turns the DP options into cfg->dp for a training set of n records (cfg->batch and
 * cfg->epochs set): refuses contradictory or incomplete options and a delta above 1/n, solves
 * the noise for --dp-epsilon, and prints the plan. Nothing given: DP stays off. */
int cnd_cmd_dp_setup(const cnd_cmd_dp_t *o, size_t n, cnd_train_cfg_t *cfg);

/* After a DP run: prints the epsilon reached and records the DP parameters in m's metadata
 * (dp_epsilon, dp_delta, dp_noise, dp_clip, dp_sampling_rate, dp_steps). */
int cnd_cmd_dp_stamp(cnd_model_t *m, size_t n, const cnd_train_cfg_t *cfg,
                     const cnd_train_result_t *res);

/* Records provenance (dataset, sample count, creation time) and class names in metadata. */
/* Fits a dataset (may be NULL) to a model it is used with: flat records of as many values as
 * the model's input take its shape, and labels are mapped by name onto the model's class map
 * ("labels" metadata; a model without one keeps the old numbering). Errors name `what` (the
 * data spec) and the label or shape at fault. Returns 0 or a negative code. */
CND_MUST_USE int cnd_cmd_fit_data(const cnd_model_t *m, cnd_dataset_t *ds, const char *what);

/* Fills the missing values of ds (ds->n_na; none: nothing to do) with the training means m
 * stores ("na_mean" metadata, one per input value), or when m has none and own_ok is set with
 * ds's own means (ds is training data). Returns 0, or CND_EINVAL naming `what` when m stores no
 * means and own_ok is 0, or they do not fit ds. */
CND_MUST_USE int cnd_cmd_impute(const cnd_model_t *m, cnd_dataset_t *ds, const char *what,
                                int own_ok);

/* `spec` with --input-shape `shape` ("C,H,W" or "CxHxW"; NULL: a plain copy) as its shape=
 * option: csv: records and folder: images then become C x H x W samples (docs/data.md). Refused
 * for other kinds of data (they carry their own shape) and when the spec's own shape= differs.
 * *out is owned by the caller (free). Returns 0, CND_EINVAL naming the problem, CND_ENOMEM. */
CND_MUST_USE int cnd_cmd_spec_shape(char **out, const char *spec, const char *shape);

/* The same for a command's --data and --test (*test may be NULL) with --input-shape `shape`
 * (NULL: nothing changes): on success *data and *test point at own[0] and own[1], which the
 * caller frees; on an error nothing changes and nothing is owned. */
CND_MUST_USE int cnd_cmd_shape_specs(char *own[2], const char **data, const char **test,
                                     const char *shape);
#define CND_CMD_SHAPE_HELP "read csv: records or folder: images as C x H x W (the spec's shape=)"

/* Records provenance (dataset, sample count, creation time), the class map and the means that
 * filled missing values ("na_mean") in metadata. */
int cnd_cmd_stamp(cnd_model_t *m, const cnd_dataset_t *train, const char *data_spec);

#endif
