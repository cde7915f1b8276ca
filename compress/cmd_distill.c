/*
 * cmd_distill.c: `condenser distill`, trains a student from a teacher's soft targets and the
 * labels (distill.h), starting from an architecture spec, an existing student model, or (--init)
 * the architecture and weights of another model, such as a pruned teacher (prune.h).
 */
#include "cli.h"
#include "clock.h"
#include "cmd_common.h"
#include "commands.h"
#include "digest.h"
#include "distill.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "train.h"
#include "augment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the command line asked for. */
typedef struct {
    const char *data, *arch, *student, *init, *teacher, *out, *optname, *test, *sched, *augment;
    const char *teacher_prep; /* preprocessing of an ONNX teacher (onnx_graph.h) */
    const char *ishape;       /* --input-shape C,H,W: the data specs' shape= */
    char *own[2];             /* data and test with that shape (owned) */
    long epochs, batch, seed, threads, subset;
    double lr, wd, momentum, T, alpha;
    int resume, no_ckpt;
    cnd_cmd_dp_t dp; /* DP-SGD options (cmd_common.h) */
} s_opts_t;

/* Parses argv into o. Returns 0, 1 after --help, or a negative CND_E* code. */
static int s_parse(s_opts_t *o, int argc, char **argv)
{
    *o = (s_opts_t){.data = "fmnist",
                    .optname = "adam",
                    .sched = "cosine",
                    .augment = "none",
                    .epochs = 5,
                    .batch = 64,
                    .seed = 1,
                    .momentum = -1,
                    .T = CND_DISTILL_DEFAULT_T,
                    .alpha = CND_DISTILL_DEFAULT_ALPHA};
    const cnd_opt_t opts[] = {
        {"teacher", CND_OPT_STR, &o->teacher, "FILE",
         "teacher model (.cnd or .onnx), run forward only"},
        {"teacher-preprocess", CND_OPT_STR, &o->teacher_prep, "SPEC",
         "an .onnx teacher's input preprocessing, e.g. \"scale=1/255 mean=0.286 std=0.353\""},
        {"arch", CND_OPT_STR, &o->arch, "SPEC", "student architecture (a new student)"},
        {"student", CND_OPT_STR, &o->student, "FILE", "or: continue from this student model"},
        {"init", CND_OPT_STR, &o->init, "FILE",
         "or: start from this model's architecture and weights (e.g. condenser prune's output)"},
        {"data", CND_OPT_STR, &o->data, "SPEC", "training data (default fmnist)"},
        {"input-shape", CND_OPT_STR, &o->ishape, "C,H,W", CND_CMD_SHAPE_HELP},
        {"temperature", CND_OPT_DBL, &o->T, "T", "softmax temperature (default 2)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &o->alpha, "A", "weight of the teacher's soft targets (default 0.5)",
         0, 1},
        {"epochs", CND_OPT_INT, &o->epochs, "N", "passes over the data (default 5)", 1, 10000},
        {"batch", CND_OPT_INT, &o->batch, "B", "batch size (default 64)", 1, 4096},
        {"lr", CND_OPT_DBL, &o->lr, "X", "learning rate (default 1e-3 adam, 0.05 sgd)", 1e-9, 10},
        {"optimizer", CND_OPT_STR, &o->optname, "NAME", "adam | adamw | sgd (default adam)"},
        {"momentum", CND_OPT_DBL, &o->momentum, "M", "SGD momentum (default 0.9)", 0, 0.999},
        {"weight-decay", CND_OPT_DBL, &o->wd, "W", "weight decay on kernels (default 0)", 0, 1},
        {"schedule", CND_OPT_STR, &o->sched, "NAME", "cosine | step | const (default cosine)"},
        {"seed", CND_OPT_INT, &o->seed, "S", "seed for init and shuffling (default 1)", 0, 1e15},
        {"threads", CND_OPT_INT, &o->threads, "T", "BLAS threads (default: all cores)", 1, 64},
        {"augment", CND_OPT_STR, &o->augment, "KIND",
         "none | shift | flip | shift+flip (default none)"},
        {"subset", CND_OPT_INT, &o->subset, "N", "train on a random N-sample subset", 1, 1e9},
        {"test", CND_OPT_STR, &o->test, "SPEC", "test data (default: the dataset's test split)"},
        {"out", CND_OPT_STR, &o->out, "FILE", "where to write the student (.cnd)"},
        {"resume", CND_OPT_FLAG, &o->resume, NULL,
         "continue the interrupted run that FILE.ckpt holds"},
        {"no-checkpoint", CND_OPT_FLAG, &o->no_ckpt, NULL,
         "do not write FILE.ckpt after each epoch"},
        CND_CMD_DP_OPTS(&o->dp),
        {0}};
    const cnd_cli_t cli = {
        "condenser distill --teacher T.cnd|T.onnx (--arch SPEC | --student S.cnd | --init P.cnd) "
        "--out FILE "
        "[options]",
        "Distills a teacher into a student: the loss mixes the teacher's softened outputs\n"
        "(temperature T, weight alpha) with the labels (weight 1 - alpha). The teacher runs\n"
        "forward once over the data; its logits are cached for all epochs. Defaults (T 2,\n"
        "alpha 0.5) come from the measurements in docs/benchmarks.md. As with train, the\n"
        "run's state goes to FILE.ckpt after every epoch, and --resume continues a killed run.\n"
        "--init starts the student from another model's architecture and weights, such as\n"
        "a teacher pruned by `condenser prune` (docs/compression.md).\n"
        "An ONNX teacher (docs/onnx.md) sees raw data through --teacher-preprocess.\n"
        "--dp-epsilon or --dp-noise train the student with DP-SGD (docs/privacy.md); the\n"
        "epsilon covers the training records only if the teacher was not trained on them.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    if (!o->teacher) return cnd_errf(CND_EINVAL, "--teacher is required (try --help)");
    if ((o->arch != NULL) + (o->student != NULL) + (o->init != NULL) != 1)
        return cnd_errf(CND_EINVAL, "give exactly one of --arch, --student or --init");
    if (!o->out) return cnd_errf(CND_EINVAL, "--out is required (try --help)");
    if (o->teacher_prep && !cnd_onnx_is_onnx(o->teacher))
        return cnd_errf(CND_EINVAL, "--teacher-preprocess is for .onnx teachers (a .cnd teacher "
                                    "carries its own normalisation)");
    return cnd_cmd_shape_specs(o->own, &o->data, &o->test, o->ishape); /* = shape= */
}

/* Where the checkpoint's path and tag live while cfg points at them. */
typedef struct {
    char path[4096];   /* OUT.ckpt */
    char config[3072]; /* every setting a resumed run must share */
} s_ckpt_t;

/* The training settings, and the checkpoint (checkpoint.h) in ck. */
static int s_train_cfg(cnd_train_cfg_t *cfg, s_ckpt_t *ck, const s_opts_t *o)
{
    *cfg = cnd_train_defaults();
    int rc;
    if ((rc = cnd_cmd_optim(o->optname, o->lr, o->wd, o->momentum, &cfg->optim))) return rc;
    if ((rc = cnd_cmd_parse_sched(o->sched, &cfg->sched))) return rc;
    if ((rc = cnd_augment_parse(o->augment, &cfg->augment))) return rc;
    cfg->epochs = (int)o->epochs;
    cfg->batch = (int)o->batch;
    cfg->seed = (uint64_t)o->seed;
    cfg->verbose = 1;
    cnd_set_threads((int)o->threads);
    snprintf(
        ck->config, sizeof ck->config,
        "command=distill;teacher=%s;arch=%s;student=%s;init=%s;data=%s;test=%s;temperature=%.7g;"
        "alpha=%.7g;epochs=%ld;batch=%ld;lr=%.7g;optimizer=%s;momentum=%.7g;"
        "weight-decay=%.7g;schedule=%s;seed=%ld;augment=%s;subset=%ld;teacher-prep=%s;"
        "dp=%.9g,%.9g,%.9g,%.9g",
        o->teacher, o->arch ? o->arch : "", o->student ? o->student : "", o->init ? o->init : "",
        o->data, o->test ? o->test : "", o->T, o->alpha, o->epochs, o->batch, (double)cfg->optim.lr,
        o->optname, (double)cfg->optim.momentum, (double)cfg->optim.weight_decay, o->sched, o->seed,
        o->augment, o->subset, o->teacher_prep ? o->teacher_prep : "", o->dp.epsilon, o->dp.delta,
        o->dp.noise, o->dp.clip);
    return cnd_cmd_ckpt_setup(cfg, o->out, o->resume, o->no_ckpt, ck->config, ck->path,
                              sizeof ck->path);
}

/* The teacher's soft targets: scored batch by batch when batches are augmented (new images
 * every epoch), else its logits over the raw training set once, kept in *tlog. */
static int s_teacher_targets(cnd_distill_t *dctx, float **tlog, cnd_train_cfg_t *cfg,
                             cnd_model_t *t, const cnd_model_t *s, const cnd_dataset_t *tr,
                             const s_opts_t *o)
{
    int rc;
    if (cfg->augment) {
        if (cnd_shape_size(t->in) != cnd_shape_size(s->in) || t->in.c != s->in.c)
            return cnd_errf(CND_EINVAL, "teacher and student inputs differ");
        if ((rc = cnd_distill_online_init(dctx, t, s->norm_mean, s->norm_std, (int)o->batch)))
            return rc;
        cfg->on_batch = cnd_distill_on_batch;
        cfg->batch_ctx = dctx;
        printf("teacher %s: scores every augmented batch (%s)\n", o->teacher, o->augment);
        return 0;
    }
    double t0 = cnd_now();
    if ((rc = cnd_distill_teacher_logits(tlog, t, tr))) return rc;
    dctx->teacher_logits = *tlog;
    printf("teacher %s: logits for %zu samples in %.1fs (cached for all epochs)\n", o->teacher,
           tr->n, cnd_now() - t0);
    return 0;
}

/* The same for an ONNX teacher (onnx_graph.h): its logits over the raw training set once,
 * with its preprocessing; augmented batches would need it every batch, which is refused. */
static int s_onnx_targets(cnd_distill_t *dctx, float **tlog, const cnd_train_cfg_t *cfg,
                          const cnd_model_t *s, const cnd_dataset_t *tr, const s_opts_t *o)
{
    if (cfg->augment)
        return cnd_errf(CND_EINVAL,
                        "--augment is not supported with an ONNX teacher (its logits "
                        "are computed once over the data); import it or drop --augment");
    double t0 = cnd_now();
    int rc = cnd_onnx_teacher_logits(tlog, o->teacher, o->teacher_prep, tr, s->n_classes);
    if (rc) return rc;
    dctx->teacher_logits = *tlog;
    printf("teacher %s: logits for %zu samples in %.1fs (cached for all epochs)\n", o->teacher,
           tr->n, cnd_now() - t0);
    return 0;
}

/* After training: provenance and distillation metadata, the test accuracy, the file. */
static int s_finish(cnd_model_t *s, const cnd_dataset_t *tr, cnd_dataset_t *te, const s_opts_t *o)
{
    int rc;
    if ((rc = cnd_cmd_stamp(s, tr, o->data))) return rc;
    char buf[64];
    snprintf(buf, sizeof buf, "T=%g alpha=%g", o->T, o->alpha);
    if ((rc = cnd_model_meta_set(s, "distilled_from", o->teacher)) ||
        (rc = cnd_model_meta_set(s, "distillation", buf)))
        return rc;
    if (te) {
        cnd_eval_t ev;
        if ((rc = cnd_evaluate(s, te, 256, &ev))) return rc;
        snprintf(buf, sizeof buf, "%.4f", ev.acc);
        if ((rc = cnd_model_meta_set(s, "test_accuracy", buf))) return rc;
        printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", ev.acc, ev.loss, ev.n);
    }
    if ((rc = cnd_model_save(s, o->out))) return rc;
    printf("wrote %s\n", o->out);
    return 0;
}

int cnd_cmd_distill(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse(&o, argc, argv);
    if (rc) {
        free(o.own[0]), free(o.own[1]);
        return rc > 0 ? 0 : rc;
    }
    cnd_train_cfg_t cfg;
    s_ckpt_t ck;
    if ((rc = s_train_cfg(&cfg, &ck, &o))) {
        free(o.own[0]), free(o.own[1]);
        return rc;
    }

    cnd_model_t *t = NULL, *s = NULL;
    cnd_dataset_t *tr = NULL, *te = NULL;
    float *tlog = NULL;
    cnd_distill_t dctx;
    memset(&dctx, 0, sizeof dctx);
    int onnx = cnd_onnx_is_onnx(o.teacher);
    if (!onnx && (rc = cnd_model_load(&t, o.teacher))) goto done;
    if ((rc = cnd_cmd_load_data(o.data, o.test, o.subset, (uint64_t)o.seed, &tr, &te,
                                t ? &t->in : NULL)))
        goto done;
    if (t && (rc = cnd_cmd_fit_data(t, tr, o.data))) goto done;
    if (t && (rc = cnd_cmd_fit_data(t, te, o.test ? o.test : o.data))) goto done;
    if (o.student || o.init)
        rc = cnd_model_load(&s, o.student ? o.student : o.init);
    else
        rc = cnd_model_new(&s, o.arch, tr->shape, (uint64_t)o.seed);
    if (rc) goto done;
    if (t && s->n_classes != t->n_classes) {
        rc = cnd_errf(CND_EINVAL, "student has %d outputs, teacher %d: they must match",
                      s->n_classes, t->n_classes);
        goto done;
    }
    if (o.arch) cnd_data_norm_fit(tr, s->norm_mean, s->norm_std);
    if (o.init && (rc = cnd_model_meta_set(s, "init_from", o.init))) goto done;
    dctx.labels = tr->y;
    dctx.K = s->n_classes;
    dctx.T = (float)o.T;
    dctx.alpha = (float)o.alpha;
    rc = onnx ? s_onnx_targets(&dctx, &tlog, &cfg, s, tr, &o)
              : s_teacher_targets(&dctx, &tlog, &cfg, t, s, tr, &o);
    if (rc) goto done;
    cnd_model_normalize(s, tr->x, tr->n);
    if (te) cnd_model_normalize(s, te->x, te->n);
    float bg[256];
    for (int c = 0; c < s->in.c && c < 256; c++) bg[c] = -s->norm_mean[c] / s->norm_std[c];
    cfg.aug_bg = bg;
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &dctx;
    printf("distilling into %s on %s: %zu samples, %zu parameters, T %.2f, alpha %.2f (%s)\n",
           s->spec, o.data, tr->n, s->num_params, o.T, o.alpha, cnd_blas_info());
    if ((rc = cnd_cmd_dp_setup(&o.dp, tr->n, &cfg))) goto done;
    cnd_train_result_t res;
    if ((rc = cnd_train(s, tr, NULL, &cfg, &res))) goto done;
    printf("trained in %.1fs (%.0f samples/s)\n", res.seconds, res.samples_per_s);
    if ((rc = cnd_cmd_dp_stamp(s, tr->n, &cfg, &res))) goto done;
    if ((rc = s_finish(s, tr, te, &o))) goto done;
    cnd_cmd_ckpt_done(&cfg);
done:
    cnd_distill_online_free(&dctx);
    free(tlog);
    cnd_model_destroy(&t);
    cnd_model_destroy(&s);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&te);
    free(o.own[0]), free(o.own[1]);
    return rc;
}
