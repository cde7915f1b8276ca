/*
 * modelfile.c: `.cnd` serialisation (see modelfile.h).
 */
#include "modelfile.h"
#include "bytes.h"
#include "digest.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[48];   /* "L3.weight" */
    int ndim;        /* 1..4 */
    uint32_t dim[4]; /* shape */
    float *data;     /* points into params or state */
} s_tensor;

/* Lists the tensors the model's layers own, in file order. Returns the count (<= max). */
static int s_tensors(const cnd_model_t *m, s_tensor *t, int max)
{
    int n = 0;
    for (int i = 0; i < m->n_layers && n + 4 <= max; i++) {
        const cnd_layer_t *l = &m->layers[i];
        float *w = m->params + l->param_off, *st = m->state + l->state_off;
        switch (l->type) {
        case CND_L_DENSE:
            t[n] =
                (s_tensor){"", 2, {(uint32_t)l->p.dense.out, (uint32_t)cnd_shape_size(l->in)}, w};
            snprintf(t[n++].name, 48, "L%d.weight", i);
            t[n] = (s_tensor){"", 1, {(uint32_t)l->p.dense.out}, w + l->n_weights};
            snprintf(t[n++].name, 48, "L%d.bias", i);
            break;
        case CND_L_CONV2D:
        case CND_L_GCONV:
            t[n] = (s_tensor){"",
                              4,
                              {(uint32_t)l->p.conv.oc,
                               (uint32_t)(l->in.c / (l->p.conv.groups > 1 ? l->p.conv.groups : 1)),
                               (uint32_t)l->p.conv.k, (uint32_t)l->p.conv.k},
                              w};
            snprintf(t[n++].name, 48, "L%d.weight", i);
            t[n] = (s_tensor){"", 1, {(uint32_t)l->p.conv.oc}, w + l->n_weights};
            snprintf(t[n++].name, 48, "L%d.bias", i);
            break;
        case CND_L_BATCHNORM: {
            uint32_t C = (uint32_t)l->in.c;
            t[n] = (s_tensor){"", 1, {C}, w};
            snprintf(t[n++].name, 48, "L%d.gamma", i);
            t[n] = (s_tensor){"", 1, {C}, w + C};
            snprintf(t[n++].name, 48, "L%d.beta", i);
            t[n] = (s_tensor){"", 1, {C}, st};
            snprintf(t[n++].name, 48, "L%d.running_mean", i);
            t[n] = (s_tensor){"", 1, {C}, st + C};
            snprintf(t[n++].name, 48, "L%d.running_var", i);
            break;
        }
        default: break;
        }
    }
    return n;
}

static size_t s_count(const s_tensor *t)
{
    size_t c = 1;
    for (int d = 0; d < t->ndim; d++) c *= t->dim[d];
    return c;
}

int cnd_model_serialize(const cnd_model_t *m, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_put(&b, CND_MODELFILE_MAGIC, 4);
    cnd_buf_u32(&b, cnd_model_is_graph(m, NULL, 0) ? 2 : 1);
    cnd_buf_u32(&b, 0);
    cnd_buf_str(&b, m->spec);
    cnd_buf_u32(&b, (uint32_t)m->in.c);
    cnd_buf_u32(&b, (uint32_t)m->in.h);
    cnd_buf_u32(&b, (uint32_t)m->in.w);
    cnd_buf_u32(&b, (uint32_t)m->n_classes);
    for (int c = 0; c < m->in.c; c++) cnd_buf_f32(&b, m->norm_mean[c]);
    for (int c = 0; c < m->in.c; c++) cnd_buf_f32(&b, m->norm_std[c]);
    cnd_buf_u32(&b, (uint32_t)m->n_meta);
    for (int i = 0; i < m->n_meta; i++) {
        cnd_buf_str(&b, m->meta[i].key);
        cnd_buf_str(&b, m->meta[i].val);
    }
    s_tensor *t = malloc(4 * CND_SPEC_MAX_LAYERS * sizeof *t);
    if (!t) {
        cnd_buf_free(&b);
        return CND_ENOMEM;
    }
    int nt = s_tensors(m, t, 4 * CND_SPEC_MAX_LAYERS);
    cnd_buf_u32(&b, (uint32_t)nt);
    for (int i = 0; i < nt; i++) {
        cnd_buf_str(&b, t[i].name);
        cnd_buf_u32(&b, (uint32_t)t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) cnd_buf_u32(&b, t[i].dim[d]);
        size_t cnt = s_count(&t[i]);
        if (cnd_buf_reserve(&b, cnt * 4)) break;
        for (size_t k = 0; k < cnt; k++) cnd_buf_f32(&b, t[i].data[k]);
    }
    free(t);
    uint8_t dg[CND_SHA256_BYTES];
    if (!b.err) {
        cnd_sha256(dg, b.data, b.len);
        cnd_buf_put(&b, dg, sizeof dg);
    }
    if (b.err) {
        cnd_buf_free(&b);
        return cnd_errf(CND_ENOMEM, "out of memory serialising model");
    }
    *data = b.data;
    *len = b.len;
    return 0;
}

/* Kept as one idea although it is 136 lines: it reads modelfile.h's fields in file order,
 * each checked before the next is read (magic, version, digest, header, the plan against the
 * bytes left, normalisation, metadata, tensors), with one reader, spec and model and one
 * cleanup label; steps would pass all three through each other. The ONNX importer shares this
 * file, so it is left whole until that work lands. */
int cnd_model_deserialize(cnd_model_t **out, const uint8_t *data, size_t len, const char *what)
{
    *out = NULL;
    cnd_model_t *m = NULL;
    char *spec = NULL;
    int rc = 0;
    if (len < 12 + CND_SHA256_BYTES || memcmp(data, CND_MODELFILE_MAGIC, 4) != 0)
        return cnd_errf(CND_EFORMAT, "%s: not a Condenser model file (missing \"CNDM\" magic)",
                        what);
    uint32_t version = cnd_le32(data + 4);
    if (version != 1 && version != CND_MODELFILE_VERSION)
        return cnd_errf(CND_EFORMAT,
                        "%s: model file version %u is not supported (this build "
                        "reads versions 1 to %d)",
                        what, version, CND_MODELFILE_VERSION);
    uint8_t dg[CND_SHA256_BYTES];
    size_t body = len - CND_SHA256_BYTES;
    cnd_sha256(dg, data, body);
    if (memcmp(dg, data + body, CND_SHA256_BYTES) != 0)
        return cnd_errf(CND_ECORRUPT, "%s: digest mismatch: the file is corrupted or truncated",
                        what);
    cnd_rd_t r;
    cnd_rd_init(&r, data, body);
    cnd_rd_take(&r, 12);
    spec = cnd_rd_str(&r, 16384);
    uint32_t C = cnd_rd_u32(&r), H = cnd_rd_u32(&r), W = cnd_rd_u32(&r), K = cnd_rd_u32(&r);
    if (r.err || !spec) {
        rc = cnd_errf(CND_EFORMAT, "%s: truncated header", what);
        goto fail;
    }
    if (C == 0 || H == 0 || W == 0 || C > 65536 || H > 65536 || W > 65536) {
        rc = cnd_errf(CND_EFORMAT, "%s: invalid input shape %ux%ux%u", what, C, H, W);
        goto fail;
    }
    /* Every parameter, state value, mean and std is one f32 in the file: check that the file
     * holds them before allocating anything for them. */
    size_t np = 0, ns = 0;
    rc = cnd_model_plan(spec, (cnd_shape_t){(int)C, (int)H, (int)W}, &np, &ns);
    if (rc) {
        rc = cnd_err_wrap(CND_EFORMAT, "%s: stored architecture is invalid", what);
        goto fail;
    }
    size_t need = 4 * (np + ns) + 8 * (size_t)C;
    if (need > cnd_rd_left(&r)) {
        rc = cnd_errf(CND_EFORMAT,
                      "%s: the architecture has %zu parameters and %zu state values (%zu bytes "
                      "with the normalisation), more than the %zu bytes left in the file",
                      what, np, ns, need, cnd_rd_left(&r));
        goto fail;
    }
    rc = cnd_model_new(&m, spec, (cnd_shape_t){(int)C, (int)H, (int)W}, 0);
    if (rc) {
        rc = cnd_err_wrap(CND_EFORMAT, "%s: stored architecture is invalid", what);
        goto fail;
    }
    if (version == 1 && cnd_model_is_graph(m, NULL, 0)) {
        rc = cnd_errf(CND_EFORMAT, "%s: a version-1 file holds a graph spec (version 2)", what);
        goto fail;
    }
    if ((uint32_t)m->n_classes != K) {
        rc = cnd_errf(CND_EFORMAT, "%s: header says %u classes, architecture gives %d", what, K,
                      m->n_classes);
        goto fail;
    }
    for (uint32_t c = 0; c < C; c++) m->norm_mean[c] = cnd_rd_f32(&r);
    for (uint32_t c = 0; c < C; c++) {
        m->norm_std[c] = cnd_rd_f32(&r);
        if (!r.err && !(m->norm_std[c] > 0.0f)) {
            rc = cnd_errf(CND_EFORMAT, "%s: normalisation std[%u] is not positive", what, c);
            goto fail;
        }
    }
    uint32_t nmeta = cnd_rd_u32(&r);
    if (nmeta > CND_META_MAX) {
        rc = cnd_errf(CND_EFORMAT, "%s: %u metadata entries (at most %d)", what, nmeta,
                      CND_META_MAX);
        goto fail;
    }
    for (uint32_t i = 0; i < nmeta && !r.err; i++) {
        char *k = cnd_rd_str(&r, 256), *v = cnd_rd_str(&r, 1 << 16);
        if (k && v && (rc = cnd_model_meta_set(m, k, v))) {
            free(k);
            free(v);
            goto fail;
        }
        free(k);
        free(v);
    }
    s_tensor t[4 * CND_SPEC_MAX_LAYERS];
    int nt = s_tensors(m, t, 4 * CND_SPEC_MAX_LAYERS);
    uint32_t ntf = cnd_rd_u32(&r);
    if (r.err) {
        rc = cnd_errf(CND_EFORMAT, "%s: truncated metadata", what);
        goto fail;
    }
    if (ntf != (uint32_t)nt) {
        rc = cnd_errf(CND_EFORMAT, "%s: holds %u tensors, architecture needs %d", what, ntf, nt);
        goto fail;
    }
    for (int i = 0; i < nt; i++) {
        char *name = cnd_rd_str(&r, 64);
        uint32_t ndim = cnd_rd_u32(&r);
        int ok = name && !r.err && !strcmp(name, t[i].name) && ndim == (uint32_t)t[i].ndim;
        for (uint32_t d = 0; ok && d < ndim; d++) ok = cnd_rd_u32(&r) == t[i].dim[d];
        if (!ok) {
            rc = cnd_errf(CND_EFORMAT,
                          "%s: tensor %d is '%s', expected %s with the shape the "
                          "architecture gives",
                          what, i, name ? name : "?", t[i].name);
            free(name);
            goto fail;
        }
        free(name);
        size_t cnt = s_count(&t[i]);
        const uint8_t *p = cnd_rd_take(&r, cnt * 4);
        if (!p) {
            rc = cnd_errf(CND_EFORMAT, "%s: tensor %s is truncated", what, t[i].name);
            goto fail;
        }
        for (size_t k = 0; k < cnt; k++) {
            uint32_t u = cnd_le32(p + 4 * k);
            memcpy(&t[i].data[k], &u, 4);
        }
    }
    if (r.err) {
        rc = cnd_errf(CND_EFORMAT, "%s: truncated", what);
        goto fail;
    }
    if (cnd_rd_left(&r)) {
        rc = cnd_errf(CND_EFORMAT, "%s: %zu unexpected bytes after the last tensor", what,
                      cnd_rd_left(&r));
        goto fail;
    }
    free(spec);
    *out = m;
    return 0;
fail:
    free(spec);
    cnd_model_destroy(&m);
    return rc;
}

int cnd_model_save(const cnd_model_t *m, const char *path)
{
    uint8_t *data;
    size_t len;
    int rc = cnd_model_serialize(m, &data, &len);
    if (rc) return rc;
    rc = cnd_file_write_atomic(path, data, len, 0644);
    free(data);
    return rc;
}

int cnd_model_load(cnd_model_t **out, const char *path)
{
    uint8_t *data;
    size_t len;
    int rc = cnd_file_read(path, CND_MODELFILE_MAX, &data, &len);
    if (rc) return rc;
    rc = cnd_model_deserialize(out, data, len, path);
    free(data);
    return rc;
}
