/*
 * checkpoint.c: see checkpoint.h.
 */
#include "checkpoint.h"
#include "bytes.h"
#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_put_floats(cnd_buf_t *b, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) cnd_buf_f32(b, x[i]);
}

int cnd_ckpt_save(const char *path, const char *config, int epochs_done, long step,
                  const cnd_rng_t *aug_rng, const cnd_optim_t *o, const cnd_model_t *m)
{
    uint8_t *mb = NULL;
    size_t ml = 0;
    int rc = cnd_model_serialize(m, &mb, &ml);
    if (rc) return rc;
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_put(&b, CND_CKPT_MAGIC, 4);
    cnd_buf_u32(&b, CND_CKPT_VERSION);
    cnd_buf_str(&b, config ? config : "");
    cnd_buf_u32(&b, (uint32_t)epochs_done);
    cnd_buf_u64(&b, (uint64_t)step);
    for (int i = 0; i < 4; i++) cnd_buf_u64(&b, aug_rng->s[i]);
    cnd_buf_u32(&b, (uint32_t)o->cfg.kind);
    cnd_buf_u64(&b, (uint64_t)o->t);
    cnd_buf_u64(&b, (uint64_t)o->n);
    if (cnd_buf_reserve(&b, o->n * 8 + ml + 64) == 0) {
        s_put_floats(&b, o->m, o->n);
        cnd_buf_u32(&b, o->v != NULL);
        if (o->v) s_put_floats(&b, o->v, o->n);
        cnd_buf_u64(&b, (uint64_t)ml);
        cnd_buf_put(&b, mb, ml);
    }
    free(mb);
    uint8_t dg[CND_SHA256_BYTES];
    if (!b.err) {
        cnd_sha256(dg, b.data, b.len);
        cnd_buf_put(&b, dg, sizeof dg);
    }
    if (b.err) {
        cnd_buf_free(&b);
        return cnd_errf(CND_ENOMEM, "out of memory writing checkpoint %s", path);
    }
    /* 0600: the parameters are derived from this site's records */
    rc = cnd_file_write_atomic(path, b.data, b.len, 0600);
    cnd_buf_free(&b);
    return rc;
}

static float *s_get_floats(cnd_rd_t *r, size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++) x[i] = cnd_rd_f32(r);
    return x;
}

int cnd_ckpt_load(cnd_ckpt_t *ck, const char *path)
{
    memset(ck, 0, sizeof *ck);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cnd_file_read(path, 3 * CND_MODELFILE_MAX, &data, &len);
    if (rc) return rc;
    if (len < 8 + CND_SHA256_BYTES || memcmp(data, CND_CKPT_MAGIC, 4) != 0) {
        rc = cnd_errf(CND_EFORMAT,
                      "%s: not a Condenser training checkpoint (missing \"%s\" "
                      "magic)",
                      path, CND_CKPT_MAGIC);
        goto fail;
    }
    uint32_t version = cnd_le32(data + 4);
    if (version != CND_CKPT_VERSION) {
        rc = cnd_errf(CND_EFORMAT,
                      "%s: checkpoint version %u is not supported (this build "
                      "reads version %d)",
                      path, version, CND_CKPT_VERSION);
        goto fail;
    }
    size_t body = len - CND_SHA256_BYTES;
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, data, body);
    if (memcmp(dg, data + body, CND_SHA256_BYTES) != 0) {
        rc = cnd_errf(CND_ECORRUPT,
                      "%s: digest mismatch: the checkpoint is corrupted or "
                      "truncated",
                      path);
        goto fail;
    }
    cnd_rd_t r;
    cnd_rd_init(&r, data, body);
    cnd_rd_take(&r, 8);
    ck->config = cnd_rd_str(&r, 1u << 16);
    ck->epochs_done = (int)cnd_rd_u32(&r);
    ck->step = (long)cnd_rd_u64(&r);
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) any |= ck->aug_rng.s[i] = cnd_rd_u64(&r);
    uint32_t kind = cnd_rd_u32(&r);
    ck->optim.t = (long)cnd_rd_u64(&r);
    uint64_t n = cnd_rd_u64(&r);
    if (r.err || !ck->config) {
        rc = cnd_errf(CND_EFORMAT, "%s: truncated checkpoint header", path);
        goto fail;
    }
    if (!any || kind > CND_OPT_ADAMW || ck->epochs_done < 0 || ck->step < 0 || ck->optim.t < 0 ||
        n > ((uint64_t)1 << 31) || n * 4 > cnd_rd_left(&r)) {
        rc = cnd_errf(CND_EFORMAT, "%s: inconsistent checkpoint header", path);
        goto fail;
    }
    ck->optim.cfg.kind = (cnd_optim_kind_t)kind;
    ck->optim.n = (size_t)n;
    if (!(ck->optim.m = s_get_floats(&r, (size_t)n))) goto nomem;
    uint32_t has_v = cnd_rd_u32(&r);
    if (has_v > 1 || (has_v && n * 4 > cnd_rd_left(&r))) {
        rc = cnd_errf(CND_EFORMAT, "%s: inconsistent optimizer state", path);
        goto fail;
    }
    if (has_v && !(ck->optim.v = s_get_floats(&r, (size_t)n))) goto nomem;
    uint64_t ml = cnd_rd_u64(&r);
    const uint8_t *mp = r.err || ml > cnd_rd_left(&r) ? NULL : cnd_rd_take(&r, (size_t)ml);
    if (!mp) {
        rc = cnd_errf(CND_EFORMAT, "%s: truncated checkpoint (model)", path);
        goto fail;
    }
    if (cnd_rd_left(&r) != 0) {
        rc = cnd_errf(CND_EFORMAT, "%s: %zu unexpected bytes after the model", path,
                      cnd_rd_left(&r));
        goto fail;
    }
    if ((rc = cnd_model_deserialize(&ck->model, mp, (size_t)ml, path))) goto fail;
    if (ck->model->num_params != ck->optim.n) {
        rc = cnd_errf(CND_EFORMAT, "%s: optimizer state has %zu values for %zu parameters", path,
                      ck->optim.n, ck->model->num_params);
        goto fail;
    }
    free(data);
    return 0;
nomem:
    rc = cnd_errf(CND_ENOMEM, "out of memory reading checkpoint %s", path);
fail:
    free(data);
    cnd_ckpt_free(ck);
    return rc;
}

int cnd_ckpt_apply(const cnd_ckpt_t *ck, const char *path, cnd_model_t *m, cnd_optim_t *o)
{
    const cnd_model_t *c = ck->model;
    if (strcmp(c->spec, m->spec) != 0 || c->in.c != m->in.c || c->in.h != m->in.h ||
        c->in.w != m->in.w)
        return cnd_errf(CND_EINVAL,
                        "%s holds a %dx%dx%d \"%s\" model; this run trains a "
                        "%dx%dx%d \"%s\"",
                        path, c->in.c, c->in.h, c->in.w, c->spec, m->in.c, m->in.h, m->in.w,
                        m->spec);
    if (ck->optim.cfg.kind != o->cfg.kind || ck->optim.n != o->n ||
        (ck->optim.v != NULL) != (o->v != NULL))
        return cnd_errf(CND_EINVAL, "%s holds the state of another optimizer", path);
    memcpy(m->params, c->params, m->num_params * sizeof(float));
    memcpy(m->state, c->state, m->num_state * sizeof(float));
    memcpy(m->norm_mean, c->norm_mean, (size_t)m->in.c * sizeof(float));
    memcpy(m->norm_std, c->norm_std, (size_t)m->in.c * sizeof(float));
    memcpy(o->m, ck->optim.m, o->n * sizeof(float));
    if (o->v) memcpy(o->v, ck->optim.v, o->n * sizeof(float));
    o->t = ck->optim.t;
    return 0;
}

/* Value of `key` in a "k=v;k=v" string, as a pointer and length; NULL if absent. */
static const char *s_value(const char *s, const char *key, size_t klen, size_t *vlen)
{
    while (*s) {
        const char *end = strchr(s, ';'), *eq = strchr(s, '=');
        if (!end) end = s + strlen(s);
        if (eq && eq < end && (size_t)(eq - s) == klen && !memcmp(s, key, klen)) {
            *vlen = (size_t)(end - eq - 1);
            return eq + 1;
        }
        s = *end ? end + 1 : end;
    }
    return NULL;
}

/* Reports the first key of a whose value in b differs (or is missing). */
static int s_diff_one(const char *a, const char *b, int a_is_have, char *out, size_t n)
{
    for (const char *s = a; *s;) {
        const char *end = strchr(s, ';'), *eq = strchr(s, '=');
        if (!end) end = s + strlen(s);
        size_t klen = eq && eq < end ? (size_t)(eq - s) : (size_t)(end - s);
        const char *av = eq && eq < end ? eq + 1 : end;
        size_t alen = (size_t)(end - av), blen = 0;
        const char *bv = s_value(b, s, klen, &blen);
        if (!bv || blen != alen || memcmp(av, bv, alen) != 0) {
            const char *hv = a_is_have ? av : bv, *wv = a_is_have ? bv : av;
            size_t hl = a_is_have ? alen : blen, wl = a_is_have ? blen : alen;
            snprintf(out, n, "%.*s=%.*s (this run: %.*s)", (int)klen, s, hv ? (int)hl : 6,
                     hv ? hv : "absent", wv ? (int)wl : 6, wv ? wv : "absent");
            return 1;
        }
        s = *end ? end + 1 : end;
    }
    return 0;
}

int cnd_ckpt_config_diff(const char *have, const char *want, char *out, size_t n)
{
    if (n) out[0] = 0;
    return s_diff_one(have, want, 1, out, n) || s_diff_one(want, have, 0, out, n);
}

int cnd_ckpt_refuse_existing(const char *path)
{
    return cnd_errf(CND_EINVAL,
                    "%s exists: an earlier run was interrupted; resume it "
                    "(--resume) or delete the file to start over",
                    path);
}

void cnd_ckpt_free(cnd_ckpt_t *ck)
{
    free(ck->config);
    free(ck->optim.m);
    free(ck->optim.v);
    cnd_model_destroy(&ck->model);
    memset(ck, 0, sizeof *ck);
}
