/* test_train.c: the training loop learns, is bit-for-bit deterministic for a seed on one
 * thread, evaluates correctly, and reaches a stated accuracy on a Fashion-MNIST subset when
 * Debian's dataset is installed. */
#include "check.h"
#include "augment.h"
#include "checkpoint.h"
#include "data.h"
#include "error.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Two Gaussian blobs per class on a 1x6x6 image: learnable by a small CNN. */
static cnd_dataset_t *blobs(size_t n, uint64_t seed)
{
    cnd_dataset_t *ds = calloc(1, sizeof *ds);
    ds->n = n;
    ds->shape = (cnd_shape_t){1, 6, 6};
    ds->n_classes = 3;
    ds->x = malloc(n * 36 * sizeof(float));
    ds->y = malloc(n);
    cnd_rng_t r;
    cnd_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % 3);
        ds->y[i] = (uint8_t)k;
        for (int p = 0; p < 36; p++) {
            float centre = (p % 3 == k) ? 1.0f : -0.5f;
            ds->x[i * 36 + (size_t)p] = centre + 0.7f * (float)cnd_rng_normal(&r);
        }
    }
    return ds;
}

static int s_epochs_seen;
static int count_epochs(void *ctx, cnd_model_t *m, int epoch)
{
    s_epochs_seen++;
    return 0;
}

static int stop_after_two(void *ctx, cnd_model_t *m, int epoch)
{
    return epoch == 1;
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, at, at < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ 0x20, f);
    fclose(f);
}

/* A run stopped after 2 of 4 epochs and resumed from its checkpoint ends with the same bits
 * (parameters and batchnorm statistics) as a run that was never stopped, with augmentation
 * on; a checkpoint of other settings, an existing one without resume, and a damaged one are
 * refused, each with its own error, and leave the model untouched. */
static void test_resume(const cnd_dataset_t *tr)
{
    char dir[] = "/tmp/cnd_resume_XXXXXX", full[64], part[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(full, sizeof full, "%s/full.ckpt", dir);
    snprintf(part, sizeof part, "%s/part.ckpt", dir);
    const char *arch = "conv2d(4,3,pad=1) batchnorm relu maxpool(2) flatten dense(8) relu dense(3)";
    float bg = 0.0f;
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.epochs = 4;
    cfg.batch = 32;
    cfg.seed = 11;
    cfg.optim.lr = 1e-2f;
    cfg.augment = CND_AUG_SHIFT;
    cfg.aug_bg = &bg;
    cfg.ckpt_config = "arch=x;epochs=4";
    cnd_model_t *u = NULL, *v = NULL, *w = NULL;
    CHECK(cnd_model_new(&u, arch, tr->shape, 5) == 0);
    CHECK(cnd_model_new(&v, arch, tr->shape, 5) == 0);
    CHECK(cnd_model_new(&w, arch, tr->shape, 5) == 0);
    if (!u || !v || !w) return;
    cnd_train_result_t r;
    cfg.ckpt_path = full;
    CHECK(cnd_train(u, tr, NULL, &cfg, &r) == 0);
    cnd_ckpt_t ck;
    CHECK(cnd_ckpt_load(&ck, full) == 0);
    CHECK_EQ_INT(ck.epochs_done, 4);
    CHECK(ck.model && !memcmp(ck.model->params, u->params, u->num_params * sizeof(float)));
    cnd_ckpt_free(&ck);
    /* stopped after two epochs */
    cfg.ckpt_path = part;
    cfg.on_epoch = stop_after_two;
    CHECK(cnd_train(v, tr, NULL, &cfg, &r) == 0);
    CHECK(cnd_ckpt_load(&ck, part) == 0);
    CHECK_EQ_INT(ck.epochs_done, 2);
    cnd_ckpt_free(&ck);
    cfg.on_epoch = NULL;
    float keep = w->params[0];
    /* refused: present without resume; other settings */
    CHECK_EQ_INT(cnd_train(w, tr, NULL, &cfg, &r), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "--resume") != NULL);
    cfg.resume = 1;
    cfg.ckpt_config = "arch=x;epochs=5";
    CHECK_EQ_INT(cnd_train(w, tr, NULL, &cfg, &r), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "epochs=4 (this run: 5)") != NULL);
    cfg.ckpt_config = "arch=x;epochs=4";
    CHECK(w->params[0] == keep);
    /* resumed: the same bits as the uninterrupted run */
    CHECK(cnd_train(w, tr, NULL, &cfg, &r) == 0);
    CHECK_EQ_INT(r.resumed_epochs, 2);
    CHECK(!memcmp(w->params, u->params, u->num_params * sizeof(float)));
    CHECK(!memcmp(w->state, u->state, u->num_state * sizeof(float)));
    CHECK(memcmp(w->params, v->params, u->num_params * sizeof(float)) != 0);
    /* damaged: one flipped byte in the body, or a wrong magic */
    cnd_model_t *z = NULL;
    CHECK(cnd_model_new(&z, arch, tr->shape, 5) == 0);
    cfg.ckpt_path = full;
    flip_byte(full, 40);
    CHECK_EQ_INT(cnd_train(z, tr, NULL, &cfg, &r), CND_ECORRUPT);
    CHECK(strstr(cnd_err_detail(), "full.ckpt") != NULL);
    flip_byte(full, 40);
    flip_byte(full, 0);
    CHECK_EQ_INT(cnd_train(z, tr, NULL, &cfg, &r), CND_EFORMAT);
    CHECK(cnd_ckpt_config_diff("a=1;b=2", "a=1;b=2", (char[64]){0}, 64) == 0);
    char d[64];
    CHECK(cnd_ckpt_config_diff("a=1;b=2", "a=1", d, sizeof d) == 1 && strstr(d, "b=2") != NULL);
    cnd_model_destroy(&z);
    cnd_model_destroy(&u);
    cnd_model_destroy(&v);
    cnd_model_destroy(&w);
    remove(full);
    remove(part);
    rmdir(dir);
}

int main(void)
{
    cnd_set_threads(1);
    const char *arch = "conv2d(4,3,pad=1) batchnorm relu maxpool(2) flatten dense(8) relu dense(3)";
    cnd_dataset_t *tr = blobs(600, 1), *te = blobs(300, 2);
    cnd_model_t *a = NULL, *b = NULL;
    CHECK(cnd_model_new(&a, arch, tr->shape, 42) == 0);
    CHECK(cnd_model_new(&b, arch, tr->shape, 42) == 0);
    if (!a || !b) return 1;
    CHECK(!memcmp(a->params, b->params, a->num_params * sizeof(float)));
    cnd_eval_t before, after;
    CHECK(cnd_evaluate(a, te, 64, &before) == 0);
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.epochs = 4;
    cfg.batch = 32;
    cfg.seed = 7;
    cfg.optim.lr = 1e-2f;
    cfg.on_epoch = count_epochs;
    cnd_train_result_t ra, rb;
    CHECK(cnd_train(a, tr, NULL, &cfg, &ra) == 0);
    CHECK_EQ_INT(s_epochs_seen, 4);
    CHECK(ra.samples_per_s > 0 && ra.loss > 0);
    cfg.on_epoch = NULL;
    CHECK(cnd_train(b, tr, NULL, &cfg, &rb) == 0);
    /* Determinism: same seed, one thread, identical bits (params and BN state). */
    CHECK(!memcmp(a->params, b->params, a->num_params * sizeof(float)));
    CHECK(!memcmp(a->state, b->state, a->num_state * sizeof(float)));
    CHECK(cnd_evaluate(a, te, 64, &after) == 0);
    fprintf(stderr, "blobs: acc %.3f -> %.3f, loss %.3f -> %.3f\n", before.acc, after.acc,
            before.loss, after.loss);
    CHECK(after.acc > 0.9f);
    CHECK(after.loss < before.loss);
    CHECK_EQ_INT(after.per_class_total[0] + after.per_class_total[1] + after.per_class_total[2],
                 300);
    /* Two threads: deterministic for that thread count, and as good as one thread. The weights
     * themselves are not compared: per-thread partial sums change rounding in the first step,
     * and four epochs of SGD amplify that by orders of magnitude depending on which kernels
     * OpenBLAS picks (SkylakeX vs Haswell differed by more than 0.05). The per-step gradient
     * agreement across thread counts is checked in test_layers. */
    cnd_set_threads(2);
    cnd_model_t *p2 = NULL, *q2 = NULL;
    CHECK(cnd_model_new(&p2, arch, tr->shape, 42) == 0);
    CHECK(cnd_model_new(&q2, arch, tr->shape, 42) == 0);
    cnd_train_result_t r2;
    CHECK(cnd_train(p2, tr, NULL, &cfg, &r2) == 0);
    CHECK(cnd_train(q2, tr, NULL, &cfg, &r2) == 0);
    CHECK(!memcmp(p2->params, q2->params, p2->num_params * sizeof(float)));
    cnd_eval_t after2;
    CHECK(cnd_evaluate(p2, te, 64, &after2) == 0);
    fprintf(stderr, "blobs, 2 threads: acc %.3f, loss %.3f\n", after2.acc, after2.loss);
    CHECK(after2.acc > 0.9f);
    CHECK(after2.loss < before.loss);
    cnd_model_destroy(&p2);
    cnd_model_destroy(&q2);
    cnd_set_threads(1);
    /* A different seed gives different weights. */
    cnd_model_t *c = NULL;
    CHECK(cnd_model_new(&c, arch, tr->shape, 43) == 0);
    CHECK(memcmp(a->params, c->params, 16) != 0);
    cnd_model_destroy(&c);
    /* Bad configurations are refused before training. */
    cfg.batch = 0;
    CHECK_EQ_INT(cnd_train(a, tr, NULL, &cfg, &ra), CND_EINVAL);
    cfg.batch = 32;
    /* A diverging run stops with a clear error instead of producing NaN weights. */
    cnd_model_t *d = NULL;
    CHECK(cnd_model_new(&d, "flatten dense(3)", tr->shape, 1) == 0);
    cfg.optim = cnd_optim_defaults(CND_OPT_SGD, 1e37f);
    CHECK_EQ_INT(cnd_train(d, tr, NULL, &cfg, &rb), CND_EINVAL);
    cnd_model_destroy(&d);
    CHECK(strstr(cnd_err_detail(), "diverged") != NULL);
    cnd_model_destroy(&a);
    cnd_model_destroy(&b);
    test_resume(tr);
    cnd_data_destroy(&tr);
    cnd_data_destroy(&te);

    /* Fashion-MNIST subset: an MLP on 5,000 images for 2 epochs reaches >= 0.78 on the test
     * set (it measures about 0.81 here). Skipped when the dataset is not installed. */
    cnd_dataset_t *all = NULL, *sub = NULL, *rest = NULL, *test = NULL;
    if (cnd_data_load_fmnist(&all, NULL, "train") == 0 &&
        cnd_data_load_fmnist(&test, NULL, "test") == 0) {
        CHECK(cnd_data_split(&rest, &sub, all, 5000.0 / 60000.0, 3) == 0);
        CHECK(cnd_model_new(&a, "flatten dense(64) relu dense(10)", sub->shape, 1) == 0);
        cnd_data_norm_fit(sub, a->norm_mean, a->norm_std);
        CHECK(a->norm_mean[0] > 60.0f && a->norm_mean[0] < 80.0f); /* fmnist mean ~72.9 */
        cnd_model_normalize(a, sub->x, sub->n);
        cnd_model_normalize(a, test->x, test->n);
        cfg = cnd_train_defaults();
        cfg.epochs = 2;
        CHECK(cnd_train(a, sub, NULL, &cfg, &ra) == 0);
        CHECK(cnd_evaluate(a, test, 500, &after) == 0);
        fprintf(stderr, "fmnist subset MLP: test acc %.4f\n", after.acc);
        CHECK(after.acc >= 0.78f);
        cnd_model_destroy(&a);
    } else {
        fprintf(stderr, "Fashion-MNIST not installed: skipping the dataset check\n");
    }
    cnd_data_destroy(&all);
    cnd_data_destroy(&sub);
    cnd_data_destroy(&rest);
    cnd_data_destroy(&test);
    return check_result("test_train");
}
