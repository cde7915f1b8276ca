/*
 * fuzz_spec.c: the architecture spec grammar (compress/spec.c) and model construction from it
 * (compress/model.c), as `condenser train --model SPEC` and a job's `--student-arch`, which
 * every site builds, use them.
 *
 * Input: three bytes choosing the input shape (C = 1 + b0 % 4, H = 1 + b1 % 32,
 * W = 1 + b2 % 32), then the spec text (a NUL ends it early, as it would a C string). The spec
 * is parsed without the shape (syntax) and with it (blocks expanded, shapes checked); one that
 * parses with its shape is sized with cnd_model_plan; models of at most 2^22 parameters are built,
 * must report what the plan said, must give back a canonical spec that builds the same model, and
 * run forward and backward (fuzz_model.h).
 */
#include "fuzz.h"
#include "fuzz_model.h"
#include "spec.h"

static void s_build(const char *spec, cnd_shape_t in)
{
    size_t np = 0, ns = 0;
    if (cnd_model_plan(spec, in, &np, &ns) != 0) return;
    if (np > ((size_t)1 << 22) || ns > ((size_t)1 << 22)) return;
    cnd_model_t *m = NULL, *m2 = NULL;
    if (cnd_model_new(&m, spec, in, 1) != 0) abort(); /* planned, so buildable */
    fuzz_note("model built");
    if (m->num_params != np || m->num_state != ns) abort();
    if (cnd_model_new(&m2, m->spec, in, 1) != 0) abort(); /* the canonical spec builds */
    if (strcmp(m2->spec, m->spec) != 0 || m2->num_params != np) abort();
    if (memcmp(m2->params, m->params, np * sizeof(float)) != 0) abort(); /* same seed */
    fuzz_model_run(m);
    cnd_model_destroy(&m);
    cnd_model_destroy(&m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    cnd_shape_t in = {1 + data[0] % 4, 1 + data[1] % 32, 1 + data[2] % 32};
    char *spec = malloc(size - 2);
    if (!spec) abort();
    memcpy(spec, data + 3, size - 3);
    spec[size - 3] = 0;
    static cnd_layer_t layers[CND_SPEC_MAX_LAYERS];
    int n = cnd_spec_parse(spec, layers, CND_SPEC_MAX_LAYERS);
    if (n == 0 || n > CND_SPEC_MAX_LAYERS) abort(); /* > 0 or a negative code */
    fuzz_touch_error();
    /* with the shape, blocks (mbconv, resblock) expand, which the shapeless parse refuses */
    int ng = cnd_spec_parse_graph(spec, in, layers, CND_SPEC_MAX_LAYERS);
    if (ng == 0 || ng > CND_SPEC_MAX_LAYERS) abort();
    if (ng < 0) { /* what the shapes refuse, the build refuses too */
        size_t np, ns;
        if (cnd_model_plan(spec, in, &np, &ns) == 0) abort();
    }
    fuzz_touch_error();
    if (ng > 0) s_build(spec, in);
    fuzz_touch_error();
    free(spec);
    return 0;
}
