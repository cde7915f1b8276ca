/*
 * cmd_distill.c: `condenser distill`, trains a student from a teacher's soft targets and the
 * labels (distill.h), starting from an architecture spec or an existing student model.
 */
#include "cli.h"
#include "clock.h"
#include "cmd_common.h"
#include "commands.h"
#include "digest.h"
#include "distill.h"
#include "modelfile.h"
#include "train.h"
#include "augment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_cmd_distill(int argc, char **argv)
{
    const char *data = "fmnist", *arch = NULL, *student = NULL, *teacher_path = NULL;
    const char *out = NULL, *optname = "adam", *test = NULL, *sched = "cosine", *augment = "none";
    long epochs = 5, batch = 64, seed = 1, threads = 0, subset = 0;
    double lr = 0, wd = 0, momentum = -1, T = CND_DISTILL_DEFAULT_T,
           alpha = CND_DISTILL_DEFAULT_ALPHA;
    int resume = 0, no_ckpt = 0;
    const cnd_opt_t opts[] = {
        {"teacher", CND_OPT_STR, &teacher_path, "FILE", "teacher model (.cnd), run forward only"},
        {"arch", CND_OPT_STR, &arch, "SPEC", "student architecture (a new student)"},
        {"student", CND_OPT_STR, &student, "FILE", "or: continue from this student model"},
        {"data", CND_OPT_STR, &data, "SPEC", "training data (default fmnist)"},
        {"temperature", CND_OPT_DBL, &T, "T", "softmax temperature (default 2)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &alpha, "A", "weight of the teacher's soft targets (default 0.5)", 0,
         1},
        {"epochs", CND_OPT_INT, &epochs, "N", "passes over the data (default 5)", 1, 10000},
        {"batch", CND_OPT_INT, &batch, "B", "batch size (default 64)", 1, 4096},
        {"lr", CND_OPT_DBL, &lr, "X", "learning rate (default 1e-3 adam, 0.05 sgd)", 1e-9, 10},
        {"optimizer", CND_OPT_STR, &optname, "NAME", "adam | adamw | sgd (default adam)"},
        {"momentum", CND_OPT_DBL, &momentum, "M", "SGD momentum (default 0.9)", 0, 0.999},
        {"weight-decay", CND_OPT_DBL, &wd, "W", "weight decay on kernels (default 0)", 0, 1},
        {"schedule", CND_OPT_STR, &sched, "NAME", "cosine | step | const (default cosine)"},
        {"seed", CND_OPT_INT, &seed, "S", "seed for init and shuffling (default 1)", 0, 1e15},
        {"threads", CND_OPT_INT, &threads, "T", "BLAS threads (default: all cores)", 1, 64},
        {"augment", CND_OPT_STR, &augment, "KIND",
         "none | shift | flip | shift+flip (default none)"},
        {"subset", CND_OPT_INT, &subset, "N", "train on a random N-sample subset", 1, 1e9},
        {"test", CND_OPT_STR, &test, "SPEC", "test data (default: the dataset's test split)"},
        {"out", CND_OPT_STR, &out, "FILE", "where to write the student (.cnd)"},
        {"resume", CND_OPT_FLAG, &resume, NULL,
         "continue the interrupted run that FILE.ckpt holds"},
        {"no-checkpoint", CND_OPT_FLAG, &no_ckpt, NULL, "do not write FILE.ckpt after each epoch"},
        {0}};
    const cnd_cli_t cli = {
        "condenser distill --teacher T.cnd (--arch SPEC | --student S.cnd) --out FILE [options]",
        "Distills a teacher into a student: the loss mixes the teacher's softened outputs\n"
        "(temperature T, weight alpha) with the labels (weight 1 - alpha). The teacher runs\n"
        "forward once over the data; its logits are cached for all epochs. Defaults (T 2,\n"
        "alpha 0.5) come from the measurements in docs/benchmarks.md. As with train, the\n"
        "run's state goes to FILE.ckpt after every epoch, and --resume continues a killed run.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!teacher_path) return cnd_errf(CND_EINVAL, "--teacher is required (try --help)");
    if (!arch == !student) return cnd_errf(CND_EINVAL, "give exactly one of --arch or --student");
    if (!out) return cnd_errf(CND_EINVAL, "--out is required (try --help)");
    cnd_train_cfg_t cfg = cnd_train_defaults();
    if ((rc = cnd_cmd_optim(optname, lr, wd, momentum, &cfg.optim))) return rc;
    if ((rc = cnd_cmd_parse_sched(sched, &cfg.sched))) return rc;
    if ((rc = cnd_augment_parse(augment, &cfg.augment))) return rc;
    cfg.epochs = (int)epochs;
    cfg.batch = (int)batch;
    cfg.seed = (uint64_t)seed;
    cfg.verbose = 1;
    cnd_set_threads((int)threads);
    char ckpt[4096], config[3072];
    snprintf(config, sizeof config,
             "command=distill;teacher=%s;arch=%s;student=%s;data=%s;test=%s;temperature=%.7g;"
             "alpha=%.7g;epochs=%ld;batch=%ld;lr=%.7g;optimizer=%s;momentum=%.7g;"
             "weight-decay=%.7g;schedule=%s;seed=%ld;augment=%s;subset=%ld",
             teacher_path, arch ? arch : "", student ? student : "", data, test ? test : "", T,
             alpha, epochs, batch, (double)cfg.optim.lr, optname, (double)cfg.optim.momentum,
             (double)cfg.optim.weight_decay, sched, seed, augment, subset);
    if ((rc = cnd_cmd_ckpt_setup(&cfg, out, resume, no_ckpt, config, ckpt, sizeof ckpt))) return rc;

    cnd_model_t *t = NULL, *s = NULL;
    cnd_dataset_t *tr = NULL, *te = NULL;
    float *tlog = NULL;
    cnd_distill_t dctx;
    memset(&dctx, 0, sizeof dctx);
    if ((rc = cnd_model_load(&t, teacher_path))) goto done;
    if ((rc = cnd_cmd_load_data(data, test, subset, (uint64_t)seed, &tr, &te))) goto done;
    if (student)
        rc = cnd_model_load(&s, student);
    else
        rc = cnd_model_new(&s, arch, tr->shape, (uint64_t)seed);
    if (rc) goto done;
    if (s->n_classes != t->n_classes) {
        rc = cnd_errf(CND_EINVAL, "student has %d outputs, teacher %d: they must match",
                      s->n_classes, t->n_classes);
        goto done;
    }
    if (!student) cnd_data_norm_fit(tr, s->norm_mean, s->norm_std);
    dctx.labels = tr->y;
    dctx.K = s->n_classes;
    dctx.T = (float)T;
    dctx.alpha = (float)alpha;
    if (cfg.augment) {
        /* Augmented images are new every epoch: the teacher scores each batch as it comes. */
        if (cnd_shape_size(t->in) != cnd_shape_size(s->in) || t->in.c != s->in.c) {
            rc = cnd_errf(CND_EINVAL, "teacher and student inputs differ");
            goto done;
        }
        if ((rc = cnd_distill_online_init(&dctx, t, s->norm_mean, s->norm_std, (int)batch)))
            goto done;
        cfg.on_batch = cnd_distill_on_batch;
        cfg.batch_ctx = &dctx;
        printf("teacher %s: scores every augmented batch (%s)\n", teacher_path, augment);
    } else {
        double t0 = cnd_now();
        if ((rc = cnd_distill_teacher_logits(&tlog, t, tr))) goto done;
        dctx.teacher_logits = tlog;
        printf("teacher %s: logits for %zu samples in %.1fs (cached for all epochs)\n",
               teacher_path, tr->n, cnd_now() - t0);
    }
    cnd_model_normalize(s, tr->x, tr->n);
    if (te) cnd_model_normalize(s, te->x, te->n);
    float bg[256];
    for (int c = 0; c < s->in.c && c < 256; c++) bg[c] = -s->norm_mean[c] / s->norm_std[c];
    cfg.aug_bg = bg;
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &dctx;
    printf("distilling into %s on %s: %zu samples, %zu parameters, T %.2f, alpha %.2f (%s)\n",
           s->spec, data, tr->n, s->num_params, T, alpha, cnd_blas_info());
    cnd_train_result_t res;
    if ((rc = cnd_train(s, tr, NULL, &cfg, &res))) goto done;
    printf("trained in %.1fs (%.0f samples/s)\n", res.seconds, res.samples_per_s);
    if ((rc = cnd_cmd_stamp(s, tr, data))) goto done;
    char buf[64];
    snprintf(buf, sizeof buf, "T=%g alpha=%g", T, alpha);
    if ((rc = cnd_model_meta_set(s, "distilled_from", teacher_path)) ||
        (rc = cnd_model_meta_set(s, "distillation", buf)))
        goto done;
    if (te) {
        cnd_eval_t ev;
        if ((rc = cnd_evaluate(s, te, 256, &ev))) goto done;
        snprintf(buf, sizeof buf, "%.4f", ev.acc);
        if ((rc = cnd_model_meta_set(s, "test_accuracy", buf))) goto done;
        printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", ev.acc, ev.loss, ev.n);
    }
    if ((rc = cnd_model_save(s, out))) goto done;
    printf("wrote %s\n", out);
    cnd_cmd_ckpt_done(&cfg);
done:
    cnd_distill_online_free(&dctx);
    free(tlog);
    cnd_model_destroy(&t);
    cnd_model_destroy(&s);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&te);
    return rc;
}
