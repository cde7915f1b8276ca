/*
 * onnx_teacher.c: an ONNX model that arrives as a teacher, checked whole before anything keeps
 * or runs it (onnx_graph.h, cnd_onnx_teacher_check).
 *
 * Two callers: the coordinator's `job create --teacher X.onnx`, which refuses a model it could
 * not ship usefully (and takes the student's input shape, classes and normalisation from it), and
 * a site receiving that teacher from a coordinator it does not have to trust, which refuses one
 * that does not fit the job or its own memory limit. The loader (onnx_load.c) already refuses
 * malformed and hostile files without large allocations; here come the teacher's own terms:
 * a preprocessing spec that fits its channels, a class count a job can have, the memory of a
 * teacher run over a batch, and one run that gives finite logits.
 */
#include "onnx_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cnd_onnx_teacher_check(cnd_onnx_teacher_info_t *info, const uint8_t *data, size_t len,
                           const char *name, const char *prep_spec, size_t max_bytes)
{
    memset(info, 0, sizeof *info);
    cnd_onnx_prep_t prep;
    cnd_onnx_t *g = NULL;
    float *zero = NULL;
    int rc = cnd_onnx_prep_parse(&prep, prep_spec);
    if (rc) return cnd_err_wrap(rc, "%s", name);
    if ((rc = cnd_onnx_load_mem(&g, data, len, name))) return rc;
    info->in = cnd_onnx_input_shape(g);
    info->classes = cnd_onnx_classes(g);
    info->opset = cnd_onnx_opset(g);
    info->nodes = cnd_onnx_node_count(g);
    if (info->classes < 2 || info->classes > 256) {
        rc = cnd_errf(CND_EINVAL, "%s: %d outputs; a teacher needs 2 to 256 classes", name,
                      info->classes);
        goto done;
    }
    if (info->in.c < 1 || info->in.c > 256) {
        rc = cnd_errf(CND_EINVAL, "%s: %d input channels; at most 256 are supported", name,
                      info->in.c);
        goto done;
    }
    if ((rc = cnd_onnx_prep_norm(&prep, info->in.c, info->mean, info->std))) {
        rc = cnd_err_wrap(rc, "%s", name);
        goto done;
    }
    size_t floats = 0;
    if ((rc = cnd_onnx_plan_size(g, CND_ONNX_TEACHER_BATCH, &floats))) goto done;
    info->mem_bytes = len + floats * sizeof(float);
    if (info->mem_bytes > max_bytes) {
        rc = cnd_errf(CND_ERANGE,
                      "%s: the teacher needs about %zu MB (its %zu-byte file and %zu MB of "
                      "activations for %d samples), over the limit of %zu MB",
                      name, info->mem_bytes >> 20, len, (floats * sizeof(float)) >> 20,
                      CND_ONNX_TEACHER_BATCH, max_bytes >> 20);
        goto done;
    }
    /* One sample of raw zeros, preprocessed as the teacher expects. */
    size_t d = cnd_shape_size(info->in);
    if (!(zero = calloc(d ? d : 1, sizeof(float)))) {
        rc = CND_ENOMEM;
        goto done;
    }
    float *lg = NULL;
    if ((rc = cnd_onnx_logits(&lg, g, &prep, zero, 1, info->in, 1))) goto done;
    for (int k = 0; k < info->classes; k++)
        if (!isfinite(lg[k])) {
            rc = cnd_errf(CND_EINVAL, "%s: logit %d of a sample of zeros is not finite", name, k);
            break;
        }
    free(lg);
done:
    free(zero);
    cnd_onnx_destroy(&g);
    return rc;
}
