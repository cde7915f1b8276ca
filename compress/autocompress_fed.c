/*
 * autocompress_fed.c: candidate bundles, the count vector of an evaluation round and a site's
 * evaluation of one candidate (see autocompress_fed.h for the formats and their bounds).
 *
 * Counts are exact integers: a candidate's accuracy over the federation is the sum of the
 * sites' correct predictions over the sum of their validated samples, nothing rounded.
 */
#include "autocompress_fed.h"
#include "artifact.h"
#include "bytes.h"
#include "modelfile.h"
#include "quant_eval.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cnd_autoc_fed_bundle(uint8_t **out, size_t *out_len, const uint8_t *const *blobs,
                         const size_t *lens, uint32_t k)
{
    *out = NULL;
    *out_len = 0;
    if (k < 1 || k > CND_AUTOC_FED_MAX)
        return cnd_errf(CND_EINVAL, "candidate bundle: %u candidates (1..%d)", k,
                        CND_AUTOC_FED_MAX);
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_put(&b, CND_AUTOC_FED_MAGIC, 4);
    cnd_buf_u32(&b, k);
    for (uint32_t i = 0; i < k; i++) {
        if (lens[i] < 1 || lens[i] > UINT32_MAX) {
            cnd_buf_free(&b);
            return cnd_errf(CND_EINVAL, "candidate bundle: candidate %u has %zu bytes", i, lens[i]);
        }
        cnd_buf_blob(&b, blobs[i], (uint32_t)lens[i]);
    }
    if (b.err) {
        cnd_buf_free(&b);
        return cnd_errf(CND_ENOMEM, "candidate bundle: out of memory");
    }
    *out = b.data;
    *out_len = b.len;
    return 0;
}

int cnd_autoc_fed_parse(const uint8_t *data, size_t n, uint32_t *k, size_t *off, size_t *len)
{
    *k = 0;
    if (n < 8 || memcmp(data, CND_AUTOC_FED_MAGIC, 4) != 0)
        return cnd_errf(CND_EFORMAT, "candidate bundle: no \"%s\" header", CND_AUTOC_FED_MAGIC);
    uint32_t cnt = cnd_le32(data + 4);
    if (cnt < 1 || cnt > CND_AUTOC_FED_MAX)
        return cnd_errf(CND_EFORMAT, "candidate bundle: %u candidates (1..%d)", cnt,
                        CND_AUTOC_FED_MAX);
    size_t at = 8;
    for (uint32_t i = 0; i < cnt; i++) {
        if (n - at < 4)
            return cnd_errf(CND_EFORMAT, "candidate bundle: truncated before candidate %u", i);
        uint32_t l = cnd_le32(data + at);
        at += 4;
        if (l < 1 || l > n - at)
            return cnd_errf(CND_EFORMAT,
                            "candidate bundle: candidate %u claims %u bytes, %zu are left", i, l,
                            n - at);
        off[i] = at;
        len[i] = l;
        at += l;
    }
    if (at != n)
        return cnd_errf(CND_EFORMAT, "candidate bundle: %zu bytes after the last candidate",
                        n - at);
    *k = cnt;
    return 0;
}

static uint32_t s_bits(uint64_t v) /* bits needed for v, >= 1 */
{
    uint32_t b = 1;
    while (b < 64 && (v >> b)) b++;
    return b;
}

int cnd_autoc_fed_layout(cnd_autoc_fed_layout_t *l, uint32_t k, uint32_t n_max, uint32_t cap)
{
    memset(l, 0, sizeof *l);
    if (k < 1 || k > CND_AUTOC_FED_MAX || n_max < 1 || n_max > 65536 || cap < 1)
        return cnd_errf(CND_EINVAL,
                        "count layout: k %u (1..%d), sites %u (1..65536), cap %u (>= 1)", k,
                        CND_AUTOC_FED_MAX, n_max, cap);
    uint32_t nb = s_bits(n_max), wb = s_bits(cap);
    l->k = k;
    l->n_max = n_max;
    l->cap = cap;
    l->limb_bits = wb < 32 - nb ? wb : 32 - nb;
    l->m_limbs = (wb + l->limb_bits - 1) / l->limb_bits;
    l->bits = l->limb_bits + nb;
    l->len = (k + 1) * l->m_limbs;
    return 0;
}

static void s_put(uint32_t *x, const cnd_autoc_fed_layout_t *l, uint64_t v)
{
    uint64_t mask = ((uint64_t)1 << l->limb_bits) - 1;
    for (uint32_t j = 0; j < l->m_limbs; j++) x[j] = (uint32_t)((v >> (j * l->limb_bits)) & mask);
}

void cnd_autoc_fed_encode(uint32_t *x, const cnd_autoc_fed_layout_t *l, uint64_t validated,
                          const uint64_t *correct)
{
    uint64_t v = validated < l->cap ? validated : l->cap;
    s_put(x, l, v);
    for (uint32_t i = 0; i < l->k; i++)
        s_put(x + (size_t)(i + 1) * l->m_limbs, l, correct[i] < v ? correct[i] : v);
}

/* One count of the sum; CND_ERANGE when a limb exceeds what s honest vectors can add up to. */
static int s_get(uint64_t *v, const cnd_autoc_fed_layout_t *l, const uint32_t *sum, uint32_t s,
                 const char *what)
{
    uint64_t ring = l->bits == 32 ? 0xffffffffu : (((uint64_t)1 << l->bits) - 1);
    uint64_t lmax = (uint64_t)s * ((((uint64_t)1) << l->limb_bits) - 1), t = 0;
    for (uint32_t j = 0; j < l->m_limbs; j++) {
        uint64_t limb = sum[j] & ring;
        if (limb > lmax)
            return cnd_errf(CND_ERANGE, "count sum: %s limb %u is %llu, above %u sites' most", what,
                            j, (unsigned long long)limb, s);
        t += limb << (j * l->limb_bits);
    }
    *v = t;
    return 0;
}

int cnd_autoc_fed_decode(uint64_t *validated, uint64_t *correct, const cnd_autoc_fed_layout_t *l,
                         const uint32_t *sum, uint32_t survivors)
{
    if (survivors < 1 || survivors > l->n_max)
        return cnd_errf(CND_ERANGE, "count sum: %u survivors (1..%u)", survivors, l->n_max);
    int rc = s_get(validated, l, sum, survivors, "validated");
    if (rc) return rc;
    if (*validated > (uint64_t)survivors * l->cap)
        return cnd_errf(CND_ERANGE, "count sum: %llu validated samples, above %u sites x cap %u",
                        (unsigned long long)*validated, survivors, l->cap);
    for (uint32_t i = 0; i < l->k; i++) {
        char what[32];
        snprintf(what, sizeof what, "candidate %u", i);
        if ((rc = s_get(&correct[i], l, sum + (size_t)(i + 1) * l->m_limbs, survivors, what)))
            return rc;
        if (correct[i] > *validated)
            return cnd_errf(CND_ERANGE, "count sum: candidate %u has %llu correct of %llu", i,
                            (unsigned long long)correct[i], (unsigned long long)*validated);
    }
    return 0;
}

int cnd_autoc_fed_eval(uint64_t *correct, cnd_model_t *m, const cnd_dataset_t *val, int classes)
{
    *correct = 0;
    if (m->in.c != val->shape.c || m->in.h != val->shape.h || m->in.w != val->shape.w)
        return cnd_errf(CND_EINVAL, "candidate takes %dx%dx%d inputs, the data is %dx%dx%d",
                        m->in.c, m->in.h, m->in.w, val->shape.c, val->shape.h, val->shape.w);
    if (m->n_classes != classes)
        return cnd_errf(CND_EINVAL, "candidate has %d outputs, the job %d classes", m->n_classes,
                        classes);
    if (val->n == 0) return 0;
    uint32_t *idx = malloc(val->n * sizeof *idx);
    if (!idx) return cnd_errf(CND_ENOMEM, "evaluating a candidate: out of memory");
    for (size_t i = 0; i < val->n; i++) idx[i] = (uint32_t)i;
    cnd_dataset_t *v = NULL;
    int rc = cnd_data_subset(&v, val, idx, val->n);
    free(idx);
    if (rc) return rc;
    cnd_model_normalize(m, v->x, v->n);
    v->n_classes = classes;
    cnd_eval_t ev;
    rc = cnd_evaluate(m, v, 256, &ev);
    cnd_data_destroy(&v);
    if (rc) return rc;
    uint64_t c = 0;
    for (int i = 0; i < ev.n_classes && i < 256; i++) c += ev.per_class_correct[i];
    *correct = c;
    return 0;
}

static int s_is_artifact(const uint8_t *blob, size_t len)
{
    return len >= 4 && memcmp(blob, "CNDQ", 4) == 0;
}

int cnd_autoc_fed_inspect(cnd_autoc_fed_info_t *info, const uint8_t *blob, size_t len,
                          const char *what)
{
    memset(info, 0, sizeof *info);
    if (s_is_artifact(blob, len)) {
        cnd_artifact_t *a = NULL;
        int rc = cnd_artifact_open(&a, blob, len, what);
        if (!rc) rc = cnd_artifact_selftest(a, what);
        if (!rc) {
            info->artifact = 1;
            info->in = (cnd_shape_t){a->info.c, a->info.h, a->info.w};
            info->classes = (int)a->info.n_classes;
        }
        cnd_artifact_destroy(&a);
        return rc;
    }
    cnd_model_t *m = NULL;
    int rc = cnd_model_deserialize(&m, blob, len, what);
    if (!rc) {
        info->in = m->in;
        info->classes = m->n_classes;
    }
    cnd_model_destroy(&m);
    return rc;
}

int cnd_autoc_fed_eval_blob(uint64_t *correct, const uint8_t *blob, size_t len,
                            const cnd_dataset_t *val, int classes, const char *what)
{
    *correct = 0;
    if (!s_is_artifact(blob, len)) {
        cnd_model_t *m = NULL;
        int rc = cnd_model_deserialize(&m, blob, len, what);
        if (!rc) rc = cnd_autoc_fed_eval(correct, m, val, classes);
        cnd_model_destroy(&m);
        return rc;
    }
    cnd_artifact_t *a = NULL;
    int rc = cnd_artifact_open(&a, blob, len, what);
    if (!rc) rc = cnd_artifact_selftest(a, what);
    if (!rc && (int)a->info.n_classes != classes)
        rc = cnd_errf(CND_EINVAL, "%s has %u outputs, the job %d classes", what, a->info.n_classes,
                      classes);
    cnd_eval_t ev;
    if (!rc && val->n) rc = cnd_qeval(a, val, &ev);
    if (!rc && val->n)
        for (int i = 0; i < ev.n_classes && i < 256; i++) *correct += ev.per_class_correct[i];
    cnd_artifact_destroy(&a);
    return rc;
}
