/*
 * cmd_train.c: `condenser train`, float training of a model from an architecture spec.
 */
#include "cli.h"
#include "commands.h"
#include "clock.h"
#include "data.h"
#include "modelfile.h"
#include "train.h"
#include "augment.h"
#include "cmd_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_cmd_train(int argc, char **argv)
{
    const char *data = "fmnist", *arch = NULL, *out = NULL, *optname = "adam", *test = NULL;
    const char *sched = "cosine", *augment = "none", *ishape = NULL;
    char *own[2] = {NULL, NULL}; /* the specs with --input-shape */
    long epochs = 5, batch = 64, seed = 1, threads = 0, subset = 0;
    double lr = 0, wd = 0, momentum = -1, val = 0;
    int resume = 0, no_ckpt = 0;
    cnd_cmd_dp_t dp = {0};
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &data, "SPEC",
         "fmnist[:DIR] | idx:IMG,LBL | csv:PATH[,label=COL] (default fmnist)"},
        {"input-shape", CND_OPT_STR, &ishape, "C,H,W", CND_CMD_SHAPE_HELP},
        {"arch", CND_OPT_STR, &arch, "SPEC", "architecture, e.g. \"dense(128) relu dense(10)\""},
        {"epochs", CND_OPT_INT, &epochs, "N", "passes over the data (default 5)", 1, 10000},
        {"batch", CND_OPT_INT, &batch, "B", "batch size (default 64)", 1, 4096},
        {"lr", CND_OPT_DBL, &lr, "X", "learning rate (default 1e-3 adam, 0.05 sgd)", 1e-9, 10},
        {"optimizer", CND_OPT_STR, &optname, "NAME", "adam | adamw | sgd (default adam)"},
        {"momentum", CND_OPT_DBL, &momentum, "M", "SGD momentum (default 0.9)", 0, 0.999},
        {"weight-decay", CND_OPT_DBL, &wd, "W", "weight decay on kernels (default 0)", 0, 1},
        {"schedule", CND_OPT_STR, &sched, "NAME", "cosine | step | const (default cosine)"},
        {"seed", CND_OPT_INT, &seed, "S", "seed for init and shuffling (default 1)", 0, 1e15},
        {"threads", CND_OPT_INT, &threads, "T", "BLAS threads (default: all cores)", 1, 64},
        {"subset", CND_OPT_INT, &subset, "N", "train on a random N-sample subset", 1, 1e9},
        {"augment", CND_OPT_STR, &augment, "KIND",
         "none | shift | flip | shift+flip (default none)"},
        {"val", CND_OPT_DBL, &val, "FRAC", "hold out this fraction for validation (default 0)", 0,
         0.9},
        {"test", CND_OPT_STR, &test, "SPEC", "test data (default: the dataset's test split)"},
        {"out", CND_OPT_STR, &out, "FILE", "where to write the model (.cnd)"},
        {"resume", CND_OPT_FLAG, &resume, NULL,
         "continue the interrupted run that FILE.ckpt holds"},
        {"no-checkpoint", CND_OPT_FLAG, &no_ckpt, NULL, "do not write FILE.ckpt after each epoch"},
        CND_CMD_DP_OPTS(&dp),
        {0}};
    const cnd_cli_t cli = {"condenser train --arch SPEC --out FILE [options]",
                           "Trains a float32 model on a dataset and saves it as a .cnd file.\n"
                           "Prints one line per epoch and the test accuracy at the end.\n"
                           "After every epoch the run's state goes to FILE.ckpt (written\n"
                           "atomically); if the run is killed, the same command with --resume\n"
                           "continues after the last finished epoch and gives the same model\n"
                           "as an uninterrupted run. FILE.ckpt is removed once FILE is written.\n"
                           "With --dp-epsilon or --dp-noise it trains with DP-SGD (Poisson\n"
                           "sampling with --batch as the expected batch, per-sample clipping to\n"
                           "--dp-clip, Gaussian noise) and prints the (epsilon, delta) reached\n"
                           "(docs/privacy.md).",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!arch) return cnd_errf(CND_EINVAL, "--arch is required (try --help)");
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
    /* The settings a checkpoint must match to be resumed (threads may differ: the result is
     * then not bit-identical, but still the same training). */
    char ckpt[4096], config[2048];
    snprintf(config, sizeof config,
             "command=train;arch=%s;data=%s;test=%s;epochs=%ld;batch=%ld;lr=%.7g;"
             "optimizer=%s;momentum=%.7g;weight-decay=%.7g;schedule=%s;seed=%ld;subset=%ld;"
             "augment=%s;val=%.7g;dp=%.9g,%.9g,%.9g,%.9g",
             arch, data, test ? test : "", epochs, batch, (double)cfg.optim.lr, optname,
             (double)cfg.optim.momentum, (double)cfg.optim.weight_decay, sched, seed, subset,
             augment, val, dp.epsilon, dp.delta, dp.noise, dp.clip);
    if ((rc = cnd_cmd_ckpt_setup(&cfg, out, resume, no_ckpt, config, ckpt, sizeof ckpt))) return rc;

    cnd_dataset_t *all = NULL, *tr = NULL, *va = NULL, *te = NULL;
    cnd_model_t *m = NULL;
    if ((rc = cnd_cmd_shape_specs(own, &data, &test, ishape))) goto done; /* = shape= */
    if ((rc = cnd_cmd_load_data(data, test, subset, (uint64_t)seed, &all, &te, NULL))) goto done;
    if ((rc = cnd_data_split(&tr, &va, all, val, (uint64_t)seed))) goto done;
    cnd_data_destroy(&all);
    if ((rc = cnd_model_new(&m, arch, tr->shape, (uint64_t)seed))) goto done;
    if (m->n_classes < tr->n_classes) {
        rc = cnd_errf(CND_EINVAL, "the architecture outputs %d classes but %s has %d", m->n_classes,
                      data, tr->n_classes);
        goto done;
    }
    cnd_data_norm_fit(tr, m->norm_mean, m->norm_std);
    cnd_model_normalize(m, tr->x, tr->n);
    cnd_model_normalize(m, va->x, va->n);
    if (te) cnd_model_normalize(m, te->x, te->n);
    printf("training %s on %s: %zu samples, %zu parameters, %.2f MMAC/sample (%s)\n", m->spec, data,
           tr->n, m->num_params, (double)cnd_model_macs(m) / 1e6, cnd_blas_info());
    float bg[256];
    for (int c = 0; c < m->in.c && c < 256; c++) bg[c] = -m->norm_mean[c] / m->norm_std[c];
    cfg.aug_bg = bg;
    if ((rc = cnd_cmd_dp_setup(&dp, tr->n, &cfg))) goto done;
    cnd_train_result_t res;
    if ((rc = cnd_train(m, tr, va->n ? va : NULL, &cfg, &res))) goto done;
    printf("trained in %.1fs (%.0f samples/s)\n", res.seconds, res.samples_per_s);
    if ((rc = cnd_cmd_stamp(m, tr, data))) goto done;
    if ((rc = cnd_cmd_dp_stamp(m, tr->n, &cfg, &res))) goto done;
    if (te) {
        cnd_eval_t ev;
        if ((rc = cnd_evaluate(m, te, 256, &ev))) goto done;
        char acc[32];
        snprintf(acc, sizeof acc, "%.4f", ev.acc);
        if ((rc = cnd_model_meta_set(m, "test_accuracy", acc))) goto done;
        printf("test accuracy %.4f  loss %.4f  (%zu samples)\n", ev.acc, ev.loss, ev.n);
    }
    if ((rc = cnd_model_save(m, out))) goto done;
    printf("wrote %s\n", out);
    cnd_cmd_ckpt_done(&cfg);
done:
    cnd_model_destroy(&m);
    cnd_data_destroy(&all);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&va);
    cnd_data_destroy(&te);
    free(own[0]), free(own[1]);
    return rc;
}
