/*
 * cmd_eval.c: `condenser eval MODEL --data SPEC`, accuracy, loss and per-class accuracy of a
 * float model, as text or JSON.
 */
#include "cli.h"
#include "cmd_common.h"
#include "commands.h"
#include "data.h"
#include "loss.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "quant_eval.h"
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An ONNX model (onnx_graph.h) on raw data with its preprocessing: the same figures as
 * cnd_evaluate gives for a .cnd. */
static int s_eval_onnx(const char *path, const char *prep_spec, const cnd_dataset_t *ds, int batch,
                       cnd_eval_t *ev)
{
    cnd_onnx_prep_t prep;
    cnd_onnx_t *g = NULL;
    float *lg = NULL;
    int rc;
    if ((rc = cnd_onnx_prep_parse(&prep, prep_spec)) || (rc = cnd_onnx_load(&g, path))) return rc;
    int K = cnd_onnx_classes(g);
    if (K < ds->n_classes || K > 256) {
        rc = cnd_errf(CND_EINVAL, "%s has %d outputs, the data %d classes", path, K, ds->n_classes);
        goto done;
    }
    if ((rc = cnd_onnx_logits(&lg, g, &prep, ds->x, ds->n, ds->shape, batch))) goto done;
    memset(ev, 0, sizeof *ev);
    double loss = 0.0;
    size_t ok = 0;
    float p[256];
    for (size_t i = 0; i < ds->n; i++) {
        const float *z = lg + i * (size_t)K;
        int y = ds->y[i], hit = cnd_argmax(z, K) == y;
        cnd_softmax(p, z, K, 1.0f);
        loss += -log((double)p[y] + 1e-30);
        ok += (size_t)hit;
        ev->per_class_total[y]++;
        ev->per_class_correct[y] += (uint32_t)hit;
    }
    ev->n = ds->n;
    ev->n_classes = ds->n_classes;
    ev->acc = ds->n ? (float)((double)ok / (double)ds->n) : 0.0f;
    ev->loss = ds->n ? (float)(loss / (double)ds->n) : 0.0f;
done:
    free(lg);
    cnd_onnx_destroy(&g);
    return rc;
}

int cnd_cmd_eval(int argc, char **argv)
{
    const char *data = "fmnist", *split = "test", *prep = NULL, *ishape = NULL;
    char *data_own = NULL; /* data with --input-shape */
    long batch = 256, threads = 0;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &data, "SPEC", "dataset spec (default fmnist)"},
        {"split", CND_OPT_STR, &split, "NAME", "train | test (default test; CSV ignores it)"},
        {"input-shape", CND_OPT_STR, &ishape, "C,H,W", CND_CMD_SHAPE_HELP},
        {"batch", CND_OPT_INT, &batch, "B", "evaluation batch size (default 256)", 1, 4096},
        {"threads", CND_OPT_INT, &threads, "T", "BLAS threads", 1, 64},
        {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
        {"preprocess", CND_OPT_STR, &prep, "SPEC",
         "an .onnx model's input preprocessing (docs/onnx.md), e.g. \"scale=1/255\""},
        {0}};
    const cnd_cli_t cli = {"condenser eval MODEL [--data SPEC] [--preprocess SPEC] [--json]",
                           "Evaluates a model on a dataset: accuracy, mean cross-entropy loss and "
                           "accuracy per class. MODEL may be a float .cnd model or an integer "
                           ".cndq artifact, which runs through the integer runtime after its "
                           "self-test, or an ONNX model (.onnx) with --preprocess.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)threads);
    if ((rc = cnd_cmd_spec_shape(&data_own, data, ishape))) return rc;
    data = data_own;                     /* the same as shape= in the spec (docs/data.md) */
    if (cnd_quant_is_artifact(pos[0])) { /* .cndq: through the integer runtime */
        rc = cnd_quant_cmd_eval(pos[0], data, split, json);
        free(data_own);
        return rc;
    }
    cnd_model_t *m = NULL;
    cnd_dataset_t *ds = NULL;
    size_t plen = strlen(pos[0]);
    int onnx = plen >= 5 && strcmp(pos[0] + plen - 5, ".onnx") == 0;
    if (prep && !onnx) {
        free(data_own);
        return cnd_errf(CND_EINVAL, "--preprocess is for .onnx models");
    }
    cnd_eval_t ev;
    if (!onnx && (rc = cnd_model_load(&m, pos[0]))) goto done;
    if ((rc = cnd_data_open_for(&ds, data, split, m ? &m->in : NULL))) goto done;
    if (!onnx && (rc = cnd_cmd_fit_data(m, ds, data))) goto done;
    if (onnx) {
        if ((rc = s_eval_onnx(pos[0], prep, ds, (int)batch, &ev))) goto done;
    } else {
        cnd_model_normalize(m, ds->x, ds->n);
        if ((rc = cnd_evaluate(m, ds, (int)batch, &ev))) goto done;
    }
    if (json) {
        printf("{\"model\":\"%s\",\"data\":\"%s\",\"samples\":%zu,\"accuracy\":%.6f,"
               "\"loss\":%.6f,\"per_class\":[",
               pos[0], data, ev.n, ev.acc, ev.loss);
        for (int k = 0; k < ds->n_classes; k++)
            printf("%s{\"class\":%d,\"samples\":%u,\"accuracy\":%.6f}", k ? "," : "", k,
                   ev.per_class_total[k],
                   ev.per_class_total[k] ? (double)ev.per_class_correct[k] / ev.per_class_total[k]
                                         : 0.0);
        printf("]}\n");
    } else {
        printf("%s on %s: accuracy %.4f  loss %.4f  (%zu samples)\n", pos[0], data, ev.acc, ev.loss,
               ev.n);
        for (int k = 0; k < ds->n_classes; k++)
            printf("  class %2d %-14s %6u samples  accuracy %.4f\n", k,
                   ds->class_names ? ds->class_names[k] : "", ev.per_class_total[k],
                   ev.per_class_total[k] ? (double)ev.per_class_correct[k] / ev.per_class_total[k]
                                         : 0.0);
    }
done:
    cnd_model_destroy(&m);
    cnd_data_destroy(&ds);
    free(data_own);
    return rc;
}
