/*
 * test_agent_eval.c: a site's evaluation round (agent/agent_eval.h) on its own: round r of R
 * counts exactly slice r of the validation split (disjoint slices that cover it), the counts are
 * those of a direct evaluation, and a bundle that does not match the round (another number of
 * candidates, a candidate of other classes or inputs, a malformed file) fails with nothing
 * encoded.
 */
#include "agent_eval.h"
#include "check.h"
#include "modelfile.h"

#include <stdlib.h>
#include <string.h>

/* n samples of 1x2x2 with 2 classes: class = whether pixel 0 exceeds pixel 1. */
static cnd_dataset_t *s_data(size_t n)
{
    cnd_dataset_t *d = calloc(1, sizeof *d);
    d->n = n;
    d->shape = (cnd_shape_t){1, 2, 2};
    d->n_classes = 2;
    d->x = calloc(n * 4, sizeof *d->x);
    d->y = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        d->x[i * 4] = (float)((i * 37) % 11);
        d->x[i * 4 + 1] = (float)((i * 53) % 7);
        d->y[i] = d->x[i * 4] > d->x[i * 4 + 1];
    }
    return d;
}

/* A .cnd model serialised into *blob: "flatten dense(2)" scoring class 1 with x0 - x1. */
static void s_model(uint8_t **blob, size_t *len, const char *arch, int good)
{
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(cnd_model_new(&m, arch, (cnd_shape_t){1, 2, 2}, 3), 0);
    if (good) {
        memset(m->params, 0, m->num_params * sizeof *m->params);
        m->params[4] = 1.0f; /* weight (2, 4): row 1 = x0 - x1 */
        m->params[5] = -1.0f;
    }
    CHECK_EQ_INT(cnd_model_serialize(m, blob, len), 0);
    cnd_model_destroy(&m);
}

static void s_bundle(uint8_t **out, size_t *n, uint8_t **blobs, size_t *lens, uint32_t k)
{
    CHECK_EQ_INT(cnd_autoc_fed_bundle(out, n, (const uint8_t *const *)blobs, lens, k), 0);
}

int main(void)
{
    cnd_agent_data_t d;
    memset(&d, 0, sizeof d);
    d.val = s_data(10);
    cnd_job_spec_t j;
    cnd_job_defaults(&j);
    j.rounds = 3;
    j.classes = 2;
    uint8_t *blobs[3], *bundle = NULL;
    size_t lens[3], blen = 0;
    s_model(&blobs[0], &lens[0], "flatten dense(2)", 1);
    s_model(&blobs[1], &lens[1], "flatten dense(2)", 0);
    s_bundle(&bundle, &blen, blobs, lens, 2);
    /* slices 3 + 3 + 4, all correct for the exact model */
    uint64_t total = 0;
    for (uint32_t r = 1; r <= 3; r++) {
        uint32_t *x = NULL;
        cnd_autoc_fed_layout_t lay;
        cnd_agent_eval_t e;
        CHECK_EQ_INT(cnd_agent_eval_round(&x, &lay, &e, bundle, blen, 2, 3, r, &d, &j), 0);
        CHECK_EQ_INT(e.validated, r == 3 ? 4 : 3);
        CHECK_EQ_INT(e.correct[0], e.validated);
        CHECK(e.correct[1] <= e.validated);
        total += e.validated;
        uint64_t v = 0, c[2] = {0};
        if (x) CHECK_EQ_INT(cnd_autoc_fed_decode(&v, c, &lay, x, 1), 0);
        CHECK_EQ_INT(v, e.validated);
        CHECK_EQ_INT(c[0], e.correct[0]);
        CHECK_EQ_INT(c[1], e.correct[1]);
        free(x);
    }
    CHECK_EQ_INT(total, 10);
    /* the random model's count equals a direct evaluation over the whole split */
    uint64_t whole = 0, parts = 0;
    cnd_model_t *m = NULL;
    CHECK_EQ_INT(cnd_model_deserialize(&m, blobs[1], lens[1], "m"), 0);
    CHECK_EQ_INT(cnd_autoc_fed_eval(&whole, m, d.val, 2), 0);
    cnd_model_destroy(&m);
    for (uint32_t r = 1; r <= 3; r++) {
        uint32_t *x = NULL;
        cnd_autoc_fed_layout_t lay;
        cnd_agent_eval_t e;
        CHECK_EQ_INT(cnd_agent_eval_round(&x, &lay, &e, bundle, blen, 2, 3, r, &d, &j), 0);
        parts += e.correct[1];
        free(x);
    }
    CHECK_EQ_INT(parts, whole);
    /* refusals: no vector */
    uint32_t *x = NULL;
    cnd_autoc_fed_layout_t lay;
    CHECK_EQ_INT(cnd_agent_eval_round(&x, &lay, NULL, bundle, blen, 3, 3, 1, &d, &j), CND_EINVAL);
    CHECK(x == NULL);
    CHECK_EQ_INT(cnd_agent_eval_round(&x, &lay, NULL, bundle, blen, 2, 3, 4, &d, &j), CND_EINVAL);
    CHECK(x == NULL);
    CHECK_EQ_INT(cnd_agent_eval_round(&x, &lay, NULL, bundle, blen - 1, 2, 3, 1, &d, &j),
                 CND_EFORMAT);
    CHECK(x == NULL);
    free(bundle);
    s_model(&blobs[2], &lens[2], "flatten dense(3)", 0); /* 3 classes */
    s_bundle(&bundle, &blen, blobs, lens, 3);
    CHECK(cnd_agent_eval_round(&x, &lay, NULL, bundle, blen, 3, 3, 1, &d, &j) != 0);
    CHECK(x == NULL);
    free(bundle);
    blobs[2][0] ^= 0xff; /* not a model file */
    s_bundle(&bundle, &blen, blobs, lens, 3);
    CHECK(cnd_agent_eval_round(&x, &lay, NULL, bundle, blen, 3, 3, 1, &d, &j) != 0);
    CHECK(x == NULL);
    free(bundle);
    for (int i = 0; i < 3; i++) free(blobs[i]);
    cnd_data_destroy(&d.val);
    return check_result("test_agent_eval");
}
