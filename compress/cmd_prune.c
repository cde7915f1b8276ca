/*
 * cmd_prune.c: `condenser prune MODEL.cnd --out P.cnd (--ratio R | --target-macs N |
 * --target-bytes N)`: structured pruning (prune.h), then an optional fine-tune that distills
 * the unpruned model (or --teacher) into the pruned one (distill.h), as `condenser distill`
 * does, with the teacher's logits cached over the training data.
 */
#include "cli.h"
#include "cmd_common.h"
#include "commands.h"
#include "distill.h"
#include "json.h"
#include "modelfile.h"
#include "prune.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *in, *out, *score, *data, *test, *teacher, *optname, *sched;
    double ratio, T, alpha, lr;
    long target_macs, target_bytes, calib, epochs, batch, seed, threads, subset;
    int json;
    cnd_prune_score_t kind;
} s_opts_t;

/* Parses argv into o. Returns 0, 1 after --help, or a negative CND_E* code. */
static int s_parse(s_opts_t *o, int argc, char **argv)
{
    *o = (s_opts_t){.score = "l1",
                    .data = "fmnist",
                    .optname = "adam",
                    .sched = "cosine",
                    .ratio = -1,
                    .T = CND_DISTILL_DEFAULT_T,
                    .alpha = CND_DISTILL_DEFAULT_ALPHA,
                    .calib = 512,
                    .batch = 64,
                    .seed = 1};
    const cnd_opt_t opts[] = {
        {"out", CND_OPT_STR, &o->out, "FILE", "where to write the pruned model (.cnd)"},
        {"ratio", CND_OPT_DBL, &o->ratio, "R",
         "remove this fraction of the channels of every prunable layer", 0, 0.99},
        {"target-macs", CND_OPT_INT, &o->target_macs, "N",
         "or: prune until at most N multiply-accumulates per sample", 1, 1e15},
        {"target-bytes", CND_OPT_INT, &o->target_bytes, "N",
         "or: prune until the .cnd file is at most N bytes", 1, 1e15},
        {"score", CND_OPT_STR, &o->score, "KIND",
         "l1 | l2 (filter norms) | taylor (|w * dL/dw| on --data); default l1"},
        {"calib", CND_OPT_INT, &o->calib, "N",
         "training samples the Taylor score runs over (default 512)", 1, 1e7},
        {"epochs", CND_OPT_INT, &o->epochs, "N",
         "fine-tune by distillation for N epochs (default 0: none)", 0, 10000},
        {"teacher", CND_OPT_STR, &o->teacher, "FILE",
         "teacher for the fine-tune (default: the unpruned MODEL)"},
        {"data", CND_OPT_STR, &o->data, "SPEC", "training data (default fmnist)"},
        {"test", CND_OPT_STR, &o->test, "SPEC", "test data (default: the dataset's test split)"},
        {"subset", CND_OPT_INT, &o->subset, "N", "use a random N-sample subset of the data", 1,
         1e9},
        {"temperature", CND_OPT_DBL, &o->T, "T", "distillation temperature (default 2)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &o->alpha, "A", "weight of the teacher (default 0.5)", 0, 1},
        {"batch", CND_OPT_INT, &o->batch, "B", "batch size (default 64)", 1, 4096},
        {"lr", CND_OPT_DBL, &o->lr, "X", "fine-tune learning rate (default 1e-3 adam)", 1e-9, 10},
        {"optimizer", CND_OPT_STR, &o->optname, "NAME", "adam | adamw | sgd (default adam)"},
        {"schedule", CND_OPT_STR, &o->sched, "NAME", "cosine | step | const (default cosine)"},
        {"seed", CND_OPT_INT, &o->seed, "S", "seed for the subset and shuffling (default 1)", 0,
         1e15},
        {"threads", CND_OPT_INT, &o->threads, "T", "threads (default: all cores)", 1, 64},
        {"json", CND_OPT_FLAG, &o->json, NULL, "print the summary as JSON (progress is not shown)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser prune MODEL.cnd --out P.cnd (--ratio R | --target-macs N | --target-bytes N) "
        "[--score l1|l2|taylor] [--epochs E --data SPEC --teacher T.cnd]",
        "Removes whole output channels of conv2d layers and units of dense layers (with the\n"
        "matching inputs of the layers that read them, batchnorm parameters, depthwise filters\n"
        "and columns after flatten), ranked by filter norm or a first-order Taylor score; the\n"
        "same fraction of every layer goes, and channels feeding one residual add go together.\n"
        "The result is a narrower model with fewer parameters and MACs, then optionally\n"
        "fine-tuned by distillation from the unpruned model (docs/compression.md).",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    o->in = pos[0];
    if (!o->out) return cnd_errf(CND_EINVAL, "--out is required (try --help)");
    if ((o->ratio >= 0) + (o->target_macs > 0) + (o->target_bytes > 0) != 1)
        return cnd_errf(CND_EINVAL, "give exactly one of --ratio, --target-macs, --target-bytes");
    if (!strcmp(o->score, "l1"))
        o->kind = CND_PRUNE_L1;
    else if (!strcmp(o->score, "l2"))
        o->kind = CND_PRUNE_L2;
    else if (!strcmp(o->score, "taylor"))
        o->kind = CND_PRUNE_TAYLOR;
    else
        return cnd_errf(CND_EINVAL, "--score %s: expected l1, l2 or taylor", o->score);
    return 0;
}

/* The first n samples of src, normalised for m (the Taylor score's calibration set). */
static int s_calib(cnd_dataset_t *dst, const cnd_dataset_t *src, const cnd_model_t *m, size_t n)
{
    *dst = *src;
    dst->n = n < src->n ? n : src->n;
    size_t D = cnd_shape_size(src->shape);
    dst->x = malloc(dst->n * D * sizeof(float));
    if (!dst->x) return CND_ENOMEM;
    memcpy(dst->x, src->x, dst->n * D * sizeof(float));
    cnd_model_normalize(m, dst->x, dst->n);
    return 0;
}

/* Prints (or, with json, keeps quiet about) the groups and what each keeps. */
static void s_print_plan(const cnd_prune_plan_t *p, const cnd_model_t *m)
{
    for (int s = 0; s < p->n_spaces; s++) {
        const cnd_prune_space_t *r = &p->sp[s];
        if (r->parent != s || r->frozen) continue;
        printf("  channels of layer %d", r->node + 1);
        for (int t = s + 1; t < p->n_spaces; t++)
            if (cnd_prune_group(p, t) == s) printf(" + layer %d", p->sp[t].node + 1);
        char tok[96];
        cnd_layer_spec(&m->layers[r->node], tok, sizeof tok);
        printf(" (%s): %d -> %d\n", tok, r->size, r->n_keep);
    }
}

/* Distills the teacher into pm over tr (raw; normalised here for pm) for o->epochs. */
static int s_finetune(cnd_model_t *pm, cnd_model_t *teacher, cnd_dataset_t *tr, const s_opts_t *o)
{
    cnd_train_cfg_t cfg = cnd_train_defaults();
    int rc;
    if ((rc = cnd_cmd_optim(o->optname, o->lr, 0, -1, &cfg.optim)) ||
        (rc = cnd_cmd_parse_sched(o->sched, &cfg.sched)))
        return rc;
    cfg.epochs = (int)o->epochs;
    cfg.batch = (int)o->batch;
    cfg.seed = (uint64_t)o->seed;
    cfg.verbose = !o->json;
    float *tlog = NULL;
    if ((rc = cnd_distill_teacher_logits(&tlog, teacher, tr))) return rc;
    cnd_distill_t d = {.teacher_logits = tlog,
                       .labels = tr->y,
                       .K = pm->n_classes,
                       .T = (float)o->T,
                       .alpha = (float)o->alpha};
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &d;
    cnd_model_normalize(pm, tr->x, tr->n);
    if (!o->json)
        printf("fine-tuning %zu parameters on %zu samples for %ld epochs (T %.2f, alpha %.2f)\n",
               pm->num_params, tr->n, o->epochs, o->T, o->alpha);
    cnd_train_result_t res;
    rc = cnd_train(pm, tr, NULL, &cfg, &res);
    free(tlog);
    return rc;
}

typedef struct {
    size_t params[2], bytes[2];
    uint64_t macs[2];
    double acc[3]; /* original, pruned, fine-tuned; < 0 when not measured */
    double ratio;
} s_summary_t;

static double s_acc(cnd_model_t *m, const cnd_dataset_t *te)
{
    if (!te) return -1;
    cnd_dataset_t c = *te;
    cnd_eval_t ev;
    size_t D = cnd_shape_size(te->shape);
    if (!(c.x = malloc(te->n * D * sizeof(float)))) return -1;
    memcpy(c.x, te->x, te->n * D * sizeof(float));
    cnd_model_normalize(m, c.x, c.n);
    int rc = cnd_evaluate(m, &c, 256, &ev);
    free(c.x);
    return rc ? -1 : ev.acc;
}

static void s_report(const s_summary_t *s, const s_opts_t *o, const char *spec)
{
    if (!o->json) {
        printf("pruned %s -> %s (ratio %.4f, score %s): %s\n", o->in, o->out, s->ratio, o->score,
               spec);
        printf("  parameters %zu -> %zu, MACs %llu -> %llu, .cnd bytes %zu -> %zu\n", s->params[0],
               s->params[1], (unsigned long long)s->macs[0], (unsigned long long)s->macs[1],
               s->bytes[0], s->bytes[1]);
        const char *what[3] = {"original", "pruned", "fine-tuned"};
        for (int k = 0; k < 3; k++)
            if (s->acc[k] >= 0) printf("  test accuracy %-10s %.4f\n", what[k], s->acc[k]);
        return;
    }
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "model");
    cnd_jw_str(&w, o->in);
    cnd_jw_key(&w, "out");
    cnd_jw_str(&w, o->out);
    cnd_jw_key(&w, "spec");
    cnd_jw_str(&w, spec);
    cnd_jw_key(&w, "score");
    cnd_jw_str(&w, o->score);
    cnd_jw_key(&w, "ratio");
    cnd_jw_double(&w, s->ratio);
    const char *k2[3][2] = {{"params_before", "params_after"},
                            {"macs_before", "macs_after"},
                            {"bytes_before", "bytes_after"}};
    for (int i = 0; i < 2; i++) {
        cnd_jw_key(&w, k2[0][i]);
        cnd_jw_int(&w, (int64_t)s->params[i]);
        cnd_jw_key(&w, k2[1][i]);
        cnd_jw_int(&w, (int64_t)s->macs[i]);
        cnd_jw_key(&w, k2[2][i]);
        cnd_jw_int(&w, (int64_t)s->bytes[i]);
    }
    const char *ka[3] = {"accuracy_before", "accuracy_pruned", "accuracy_finetuned"};
    for (int k = 0; k < 3; k++) {
        cnd_jw_key(&w, ka[k]);
        if (s->acc[k] >= 0)
            cnd_jw_double(&w, s->acc[k]);
        else
            cnd_jw_null(&w);
    }
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    if (t) printf("%s\n", t);
    cnd_jw_free(&w);
}

/* Records how the model was made; the test accuracy of the original no longer holds. */
static int s_stamp(cnd_model_t *pm, const s_opts_t *o, const s_summary_t *s)
{
    char buf[160];
    snprintf(buf, sizeof buf, "ratio=%.4f score=%s epochs=%ld T=%g alpha=%g", s->ratio, o->score,
             o->epochs, o->T, o->alpha);
    int rc = cnd_model_meta_set(pm, "pruned_from", o->in);
    if (!rc) rc = cnd_model_meta_set(pm, "pruning", buf);
    double acc = s->acc[2] >= 0 ? s->acc[2] : s->acc[1];
    snprintf(buf, sizeof buf, "%.4f", acc);
    if (!rc && acc >= 0) rc = cnd_model_meta_set(pm, "test_accuracy", buf);
    return rc;
}

/* Picks the channels and builds the pruned model from m (scored already). A byte target is
 * met by the file as written: the search runs on a copy of m that already carries the
 * metadata s_stamp adds, with values of the same width (a ratio and an accuracy of "%.4f"). */
static int s_prune(cnd_model_t **pm, cnd_prune_plan_t *p, cnd_model_t *m0, const s_opts_t *o,
                   int with_acc, double *ratio)
{
    cnd_model_t *m = NULL;
    s_summary_t dummy = {.acc = {-1, with_acc ? 0 : -1, -1}};
    int rc = cnd_model_clone(&m, m0);
    if (!rc) rc = s_stamp(m, o, &dummy);
    if (rc) {
        cnd_model_destroy(&m);
        return rc;
    }
    *ratio = o->ratio;
    if (o->ratio < 0)
        rc = cnd_prune_select_target(p, m,
                                     (uint64_t)(o->target_macs ? o->target_macs : o->target_bytes),
                                     o->target_bytes > 0, ratio);
    else
        cnd_prune_select(p, o->ratio);
    if (!rc && !o->json) s_print_plan(p, m);
    if (!rc) rc = cnd_prune_apply(pm, p, m);
    cnd_model_destroy(&m);
    return rc;
}

int cnd_cmd_prune(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse(&o, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)o.threads);
    cnd_model_t *m = NULL, *pm = NULL, *t = NULL;
    cnd_prune_plan_t *p = NULL;
    cnd_dataset_t *tr = NULL, *te = NULL, cal = {0};
    s_summary_t s = {.acc = {-1, -1, -1}};
    if ((rc = cnd_model_load(&m, o.in)) || (rc = cnd_prune_analyze(&p, m))) goto done;
    int need_data = o.kind == CND_PRUNE_TAYLOR || o.epochs > 0;
    if (need_data) {
        if ((rc =
                 cnd_cmd_load_data(o.data, o.test, o.subset, (uint64_t)o.seed, &tr, &te, &m->in)) ||
            (rc = cnd_cmd_fit_data(m, tr, o.data)) ||
            (rc = cnd_cmd_fit_data(m, te, o.test ? o.test : o.data)))
            goto done;
    }
    if (o.kind == CND_PRUNE_TAYLOR && (rc = s_calib(&cal, tr, m, (size_t)o.calib))) goto done;
    if ((rc = cnd_prune_score(p, m, o.kind, &cal, (int)o.batch))) goto done;
    if ((rc = s_prune(&pm, p, m, &o, te != NULL, &s.ratio))) goto done;
    s.acc[0] = s_acc(m, te);
    s.acc[1] = s_acc(pm, te);
    if (o.epochs > 0) {
        if (o.teacher && (rc = cnd_model_load(&t, o.teacher))) goto done;
        if (t && (t->n_classes != m->n_classes || cnd_shape_size(t->in) != cnd_shape_size(m->in))) {
            rc = cnd_errf(CND_EINVAL, "teacher %s does not fit %s (classes or input shape)",
                          o.teacher, o.in);
            goto done;
        }
        if ((rc = s_finetune(pm, t ? t : m, tr, &o))) goto done;
        s.acc[2] = s_acc(pm, te);
    }
    s.params[0] = m->num_params, s.params[1] = pm->num_params;
    s.macs[0] = cnd_model_macs(m), s.macs[1] = cnd_model_macs(pm);
    if ((rc = s_stamp(pm, &o, &s))) goto done;
    s.bytes[0] = cnd_prune_model_bytes(m), s.bytes[1] = cnd_prune_model_bytes(pm);
    if ((rc = cnd_model_save(pm, o.out))) goto done;
    s_report(&s, &o, pm->spec);
done:
    free(cal.x);
    cnd_prune_destroy(&p);
    cnd_model_destroy(&m);
    cnd_model_destroy(&pm);
    cnd_model_destroy(&t);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&te);
    return rc;
}
