/*
 * graph_run.c: one training step's numbers of a model built from a spec, for the PyTorch
 * cross-check test_graph_torch.py.
 *
 *   graph_run SPEC C H W BATCH SEED THREADS DIR
 *
 * Builds the model (seeded weights; batchnorm affine terms drawn too, so they matter), writes
 * DIR/model.cnd, then draws inputs DIR/x.bin (B x C x H x W f32) and labels DIR/y.bin (B u8),
 * runs a training forward pass, the mean cross-entropy and the backward pass, and writes
 * DIR/logits.bin (B x K f32), DIR/grads.bin (every parameter's gradient, in the model's order)
 * and DIR/eval.bin (the logits of an inference pass after that step, batchnorm then using the
 * running statistics the training pass updated). Exits 1 with a message on any error.
 */
#include "error.h"
#include "loss.h"
#include "model.h"
#include "modelfile.h"
#include "pool.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_write(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: graph_run SPEC C H W BATCH SEED THREADS DIR\n");
        return 2;
    }
    cnd_shape_t in = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4])};
    int B = atoi(argv[5]), T = atoi(argv[7]);
    const char *dir = argv[8];
    if (B < 1 || B > 256 || cnd_pool_set_threads(T)) {
        fprintf(stderr, "graph_run: bad batch or thread count\n");
        return 2;
    }
    cnd_model_t *m = NULL;
    int rc = cnd_model_new(&m, argv[1], in, (uint64_t)atoll(argv[6]));
    if (rc) {
        fprintf(stderr, "graph_run: %s\n", cnd_err_detail());
        return 1;
    }
    cnd_rng_t rng;
    cnd_rng_seed(&rng, (uint64_t)atoll(argv[6]) + 1);
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        if (l->type != CND_L_BATCHNORM) continue;
        float *g = m->params + l->param_off;
        for (int c = 0; c < l->in.c; c++) {
            g[c] = 1.0f + 0.3f * (float)cnd_rng_normal(&rng);
            g[l->in.c + c] = 0.2f * (float)cnd_rng_normal(&rng);
        }
    }
    size_t nx = (size_t)B * cnd_shape_size(in);
    int K = m->n_classes;
    float *x = malloc(nx * sizeof(float)), *dl = malloc((size_t)B * K * sizeof(float));
    uint8_t *y = malloc((size_t)B);
    if (!x || !dl || !y) return 1;
    for (size_t i = 0; i < nx; i++) x[i] = (float)cnd_rng_normal(&rng);
    for (int b = 0; b < B; b++) y[b] = (uint8_t)(cnd_rng_u64(&rng) % (uint64_t)K);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.cnd", dir);
    const float *lg;
    if ((rc = cnd_model_save(m, path)) || (rc = cnd_model_forward(m, x, B, 1, &lg))) {
        fprintf(stderr, "graph_run: %s\n", cnd_err_detail());
        return 1;
    }
    int bad = s_write(dir, "x.bin", x, nx * sizeof(float)) | s_write(dir, "y.bin", y, (size_t)B) |
              s_write(dir, "logits.bin", lg, (size_t)B * K * sizeof(float));
    cnd_loss_xent(dl, lg, y, B, K, NULL);
    cnd_model_zero_grad(m);
    cnd_model_backward(m, dl);
    bad |= s_write(dir, "grads.bin", m->grads, m->num_params * sizeof(float));
    if ((rc = cnd_model_forward(m, x, B, 0, &lg))) {
        fprintf(stderr, "graph_run: %s\n", cnd_err_detail());
        return 1;
    }
    bad |= s_write(dir, "eval.bin", lg, (size_t)B * K * sizeof(float));
    if (bad) {
        fprintf(stderr, "graph_run: cannot write to %s\n", dir);
        return 1;
    }
    free(x);
    free(dl);
    free(y);
    cnd_model_destroy(&m);
    return 0;
}
