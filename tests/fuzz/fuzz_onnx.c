/*
 * fuzz_onnx.c: the ONNX importer (compress/onnx_load.c, onnx_plan.c, onnx_ops.c,
 * onnx_student.c), as `condenser import` and `distill --teacher MODEL.onnx` run it on a file
 * from a vendor or the internet.
 *
 * Input: the bytes of a .onnx file. A model that loads must report a plausible input shape and
 * class count; it is planned for 2 samples, and when its activations fit 16 Mi floats it runs
 * on a fixed input (every kernel, folding and buffer plan on fuzzed shapes); a second run must
 * give the same logits bit for bit (plans are deterministic and buffers never alias live data
 * wrongly). Then the mapping to a .cnd graph student is tried: a student that is built must
 * have the graph's input shape and classes.
 * Seeds in corpus/onnx/ are the models test_onnx.c builds (test_onnx --write-corpus; the
 * graph_student*.onnx seeds reach the graph mapping: residual Add, Concat, depthwise Conv,
 * Clip(0, 6), HardSigmoid and Mul, and its refusals) and small PyTorch exports (the ResNet's
 * residual Adds map to a graph student).
 */
#include "fuzz.h"
#include "onnx_graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnd_onnx_t *g = NULL;
    if (cnd_onnx_load_mem(&g, data, size, "fuzz.onnx") != 0) {
        fuzz_touch_error();
        return 0;
    }
    fuzz_note("model loaded");
    cnd_shape_t in = cnd_onnx_input_shape(g);
    int K = cnd_onnx_classes(g);
    if (in.c < 1 || in.h < 1 || in.w < 1 || K < 1) abort();
    size_t floats = 0, d = cnd_shape_size(in);
    if (cnd_onnx_plan_size(g, 2, &floats) == 0 && floats + 2 * d < ((size_t)1 << 24)) {
        float *x = malloc(2 * d * sizeof(float)), *y = malloc(2 * (size_t)K * sizeof(float));
        if (!x || !y) abort();
        for (size_t i = 0; i < 2 * d; i++) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
        const float *lg;
        if (cnd_onnx_run(g, x, 2, &lg) == 0) {
            fuzz_note("model ran");
            memcpy(y, lg, 2 * (size_t)K * sizeof(float));
            if (cnd_onnx_run(g, x, 2, &lg) != 0) abort();
            for (size_t i = 0; i < 2 * (size_t)K; i++)
                if (memcmp(&y[i], &lg[i], sizeof(float)) != 0) abort();
        }
        free(x);
        free(y);
    }
    fuzz_touch_error();
    cnd_model_t *m = NULL;
    if (cnd_onnx_to_model(&m, g) == 0) {
        fuzz_note("student built");
        if (cnd_shape_size(m->in) != d || m->n_classes != K) abort();
    }
    fuzz_touch_error();
    cnd_model_destroy(&m);
    cnd_onnx_destroy(&g);
    return 0;
}
