/*
 * runtime_mkart.c: writes a few small random `.cndq` artifacts (every operation, int8 and int4
 * weights, chains and graphs) into a directory, for the cross-platform tests
 * (test_runtime_cross.sh, test_runtime_m4.sh). Not a test by itself.
 */
#include "quant_testutil.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static const struct {
        const char *name, *spec;
        cnd_shape_t in;
        int wbits;
    } arts[] = {
        {"cnn8",
         "conv2d(8,3,pad=1) relu maxpool(2) conv2d(12,3,pad=1) relu avgpool(2) flatten "
         "dense(20) relu dense(10)",
         {1, 12, 12},
         8},
        {"cnn4", "conv2d(6,3,stride=2,pad=1) relu conv2d(10,3) relu gap dense(7)", {3, 11, 11}, 4},
        {"mlp8", "flatten dense(33) relu dense(10)", {1, 28, 28}, 8},
        {"mlp4", "flatten dense(17) relu relu dense(5)", {2, 5, 7}, 4},
        /* graph artifacts (format version 2): depthwise and grouped convs, relu6, hardswish,
         * residual adds, concat; the liveness-planned arena */
        {"graph8",
         "conv2d(16,3,stride=2,pad=1) batchnorm relu6 mbconv(2,16,1) dwconv(3,stride=2,pad=1) "
         "hardswish gap dense(10)",
         {1, 14, 14},
         8},
        {"graph4",
         "a=conv2d(11,1) dwconv(3,pad=1) add(@a) relu @input conv2d(6,3,pad=1,groups=3) "
         "concat(@n3) maxpool(2) flatten dense(5)",
         {3, 8, 8},
         4},
    };
    for (size_t i = 0; i < sizeof arts / sizeof *arts; i++) {
        cnd_qmodel_t *q = NULL;
        int rc = qt_make(&q, NULL, arts[i].spec, arts[i].in, arts[i].wbits, CND_QM_MINMAX, 40 + i);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.cndq", argv[1], arts[i].name);
        if (!rc) rc = cnd_artifact_save(q, path);
        cnd_qmodel_destroy(&q);
        if (rc) {
            fprintf(stderr, "%s: %s\n", arts[i].name, cnd_err_detail());
            return 1;
        }
    }
    return 0;
}
