/*
 * cmd_eval.c: `condenser eval MODEL --data SPEC`, accuracy, loss and per-class accuracy of a
 * float model, as text or JSON.
 */
#include "cli.h"
#include "commands.h"
#include "data.h"
#include "modelfile.h"
#include "quant_eval.h"
#include "train.h"

#include <stdio.h>
#include <string.h>

int cnd_cmd_eval(int argc, char **argv)
{
    const char *data = "fmnist", *split = "test";
    long batch = 256, threads = 0;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"data", CND_OPT_STR, &data, "SPEC", "dataset spec (default fmnist)"},
        {"split", CND_OPT_STR, &split, "NAME", "train | test (default test; CSV ignores it)"},
        {"batch", CND_OPT_INT, &batch, "B", "evaluation batch size (default 256)", 1, 4096},
        {"threads", CND_OPT_INT, &threads, "T", "BLAS threads", 1, 64},
        {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
        {0}};
    const cnd_cli_t cli = {"condenser eval MODEL [--data SPEC] [--json]",
                           "Evaluates a model on a dataset: accuracy, mean cross-entropy loss and "
                           "accuracy per class. MODEL may be a float .cnd model or an integer "
                           ".cndq artifact, which runs through the integer runtime after its "
                           "self-test.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_set_threads((int)threads);
    if (cnd_quant_is_artifact(pos[0])) /* .cndq: through the integer runtime */
        return cnd_quant_cmd_eval(pos[0], data, split, json);
    cnd_model_t *m = NULL;
    cnd_dataset_t *ds = NULL;
    if ((rc = cnd_model_load(&m, pos[0]))) goto done;
    if ((rc = cnd_data_open(&ds, data, split))) goto done;
    cnd_model_normalize(m, ds->x, ds->n);
    cnd_eval_t ev;
    if ((rc = cnd_evaluate(m, ds, (int)batch, &ev))) goto done;
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
    return rc;
}
