/* test_distill.c: the distillation loss against hand-computed values and finite differences;
 * alpha = 0 reduces to cross-entropy; the teacher-logit cache uses the teacher's own
 * normalisation. */
#include "check.h"
#include "augment.h"
#include "distill.h"
#include "loss.h"

#include <string.h>

int main(void)
{
    /* One sample, K = 3, T = 2, alpha = 0.5, teacher logits (1, 0, 0), student (0, 0, 0). */
    float tl[3] = {1, 0, 0}, zs[3] = {0, 0, 0}, g[3];
    uint8_t y[1] = {1};
    uint32_t idx[1] = {0};
    cnd_distill_t d = {tl, y, 3, 2.0f, 0.5f};
    int ok = 0;
    float loss = cnd_distill_loss(&d, g, zs, idx, 1, 3, &ok);
    double e = exp(0.5), pt0 = e / (e + 2), pt1 = 1 / (e + 2);
    double kl = pt0 * log(pt0 * 3) + 2 * pt1 * log(pt1 * 3);
    CHECK_NEAR(loss, 0.5 * 4 * kl + 0.5 * log(3.0), 1e-5);
    CHECK_NEAR(g[0], 0.5 * 2 * (1.0 / 3 - pt0) + 0.5 * (1.0 / 3), 1e-5);
    CHECK_NEAR(g[1], 0.5 * 2 * (1.0 / 3 - pt1) + 0.5 * (1.0 / 3 - 1), 1e-5);
    /* alpha = 0 is cross-entropy exactly. */
    d.alpha = 0.0f;
    float zz[3] = {0.3f, -1.0f, 2.0f}, g2[3];
    float l0 = cnd_distill_loss(&d, g, zz, idx, 1, 3, NULL);
    float l1 = cnd_loss_xent(g2, zz, y, 1, 3, NULL);
    CHECK_NEAR(l0, l1, 1e-5);
    for (int k = 0; k < 3; k++) CHECK_NEAR(g[k], g2[k], 1e-6);
    /* Finite differences over a batch, several T and alpha. */
    cnd_rng_t r;
    cnd_rng_seed(&r, 4);
    float teach[4 * 5], z[4 * 5], dz[4 * 5];
    uint8_t lab[4] = {1, 4, 0, 2};
    uint32_t id[4] = {3, 0, 2, 1};
    for (int i = 0; i < 20; i++) {
        teach[i] = 3.0f * (float)cnd_rng_normal(&r);
        z[i] = (float)cnd_rng_normal(&r);
    }
    const float Ts[3] = {1.0f, 4.0f, 10.0f}, As[3] = {0.1f, 0.5f, 0.9f};
    for (int c = 0; c < 3; c++) {
        cnd_distill_t dd = {teach, lab, 5, Ts[c], As[c]};
        cnd_distill_loss(&dd, dz, z, id, 4, 5, NULL);
        for (int i = 0; i < 20; i++) {
            float keep = z[i];
            z[i] = keep + 1e-2f;
            double lp = cnd_distill_loss(&dd, NULL, z, id, 4, 5, NULL);
            z[i] = keep - 1e-2f;
            double lm = cnd_distill_loss(&dd, NULL, z, id, 4, 5, NULL);
            z[i] = keep;
            CHECK_NEAR((lp - lm) / 2e-2, dz[i], 3e-3);
        }
    }
    /* Student equal to teacher at alpha = 1: zero loss, zero gradient. */
    cnd_distill_t same = {teach, lab, 5, 3.0f, 1.0f};
    uint32_t ident[4] = {0, 1, 2, 3};
    float l = cnd_distill_loss(&same, dz, teach, ident, 4, 5, NULL);
    CHECK_NEAR(l, 0.0, 1e-5);
    for (int i = 0; i < 20; i++) CHECK_NEAR(dz[i], 0.0, 1e-6);

    /* Teacher logits are computed on the teacher's normalisation of raw data. */
    cnd_model_t *t = NULL;
    CHECK(cnd_model_new(&t, "dense(2)", (cnd_shape_t){1, 1, 1}, 1) == 0);
    if (!t) return 1;
    t->params[0] = 1.0f; /* W (2 x 1) */
    t->params[1] = -1.0f;
    t->params[2] = 0.0f; /* bias (2) */
    t->params[3] = 0.0f;
    t->norm_mean[0] = 10.0f;
    t->norm_std[0] = 2.0f;
    float xs[2] = {14.0f, 6.0f};
    uint8_t ys[2] = {0, 1};
    cnd_dataset_t ds = {.n = 2, .shape = {1, 1, 1}, .x = xs, .y = ys, .n_classes = 2};
    float *lg = NULL;
    CHECK(cnd_distill_teacher_logits(&lg, t, &ds) == 0);
    CHECK(lg && lg[0] == 2.0f && lg[1] == -2.0f && lg[2] == -2.0f && lg[3] == 2.0f);
    CHECK(xs[0] == 14.0f); /* the raw data is untouched */
    free(lg);
    cnd_dataset_t wrong = {.n = 1, .shape = {2, 1, 1}, .x = xs, .y = ys, .n_classes = 2};
    CHECK(cnd_distill_teacher_logits(&lg, t, &wrong) == CND_EINVAL);
    /* Online teacher: maps the student's normalisation onto the teacher's and scores the batch
     * exactly as the cached path does. */
    cnd_distill_t on;
    memset(&on, 0, sizeof on);
    float s_mean = 4.0f, s_std = 5.0f; /* student normalisation of the same raw data */
    CHECK(cnd_distill_online_init(&on, t, &s_mean, &s_std, 2) == 0);
    float xs_student[2] = {(14.0f - 4.0f) / 5.0f, (6.0f - 4.0f) / 5.0f};
    uint32_t ids[2] = {0, 1};
    CHECK(cnd_distill_on_batch(&on, xs_student, ids, 2) == 0);
    CHECK_NEAR(on.batch_logits[0], 2.0, 1e-5);
    CHECK_NEAR(on.batch_logits[3], 2.0, 1e-5);
    CHECK(cnd_distill_on_batch(&on, xs_student, ids, 3) == CND_EINVAL);
    cnd_distill_online_free(&on);
    cnd_distill_online_free(&on);
    cnd_model_destroy(&t);

    /* Augmentation: a shift moves pixels and fills with the background; a flip mirrors. */
    float img[2 * 16], work[16], bgv = -9.0f;
    for (int i = 0; i < 32; i++) img[i] = (float)i;
    cnd_rng_t ar;
    cnd_rng_seed(&ar, 1);
    int shifted = 0, kept = 0;
    for (int rep = 0; rep < 50; rep++) {
        float tmp[32];
        memcpy(tmp, img, sizeof tmp);
        cnd_augment_batch(tmp, work, 2, (cnd_shape_t){1, 4, 4}, &bgv, CND_AUG_SHIFT, 1, &ar);
        /* Every output pixel is the background or some input pixel of the same sample, and the
         * multiset of non-background values is a contiguous block of the original. */
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 16; i++) {
                float v = tmp[b * 16 + i];
                CHECK(v == bgv || (v >= b * 16 && v < b * 16 + 16));
                shifted += v == bgv;
                kept += v != bgv;
            }
    }
    CHECK(shifted > 0 && kept > shifted);
    float fl[16];
    for (int i = 0; i < 16; i++) fl[i] = (float)i;
    int flipped = 0;
    for (int rep = 0; rep < 20; rep++) {
        float tmp[16];
        memcpy(tmp, fl, sizeof tmp);
        cnd_augment_batch(tmp, work, 1, (cnd_shape_t){1, 4, 4}, &bgv, CND_AUG_FLIP, 0, &ar);
        if (tmp[0] == 3.0f) {
            flipped++;
            CHECK(tmp[1] == 2.0f && tmp[4] == 7.0f && tmp[15] == 12.0f);
        } else {
            CHECK(!memcmp(tmp, fl, sizeof tmp));
        }
    }
    CHECK(flipped > 3 && flipped < 17);
    unsigned f;
    CHECK(cnd_augment_parse("shift+flip", &f) == 0 && f == (CND_AUG_SHIFT | CND_AUG_FLIP));
    CHECK(cnd_augment_parse("rotate", &f) == CND_EINVAL);
    return check_result("test_distill");
}
