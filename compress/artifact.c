/*
 * artifact.c: `.cndq` serialisation (see artifact.h and deploy/runtime/cnd_rt_format.h).
 *
 * The writer builds the DATA blob first (weights, biases, multipliers, shifts per weighted
 * layer; int32 arrays 4-byte aligned, each layer's block padded to 16) so that the layer table
 * can carry final offsets, then emits header, sections, digest and trailer in one buffer.
 */
#include "artifact.h"
#include "bytes.h"
#include "digest.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t s_fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void s_pad(cnd_buf_t *b, size_t align)
{
    while (b->len % align) cnd_buf_u8(b, 0);
}

static void s_section(cnd_buf_t *out, uint32_t tag, const cnd_buf_t *payload)
{
    cnd_buf_u32(out, tag);
    cnd_buf_u32(out, (uint32_t)payload->len);
    cnd_buf_u32(out, 0);
    cnd_buf_u32(out, 0);
    if (payload->len) cnd_buf_put(out, payload->data, payload->len);
    s_pad(out, CND_RT_ALIGN);
}

typedef struct {
    uint32_t w_off, w_len, b_off, m_off, s_off;
} s_offs_t;

static int s_weighted(const cnd_qlayer_t *l)
{
    return l->op == CND_RT_OP_DENSE || l->op == CND_RT_OP_CONV2D || l->op == CND_RT_OP_GCONV;
}

/* The format version q needs: 1 for a chain of version-1 operations (older runtimes read it,
 * and its bytes are what they always were), else 2. */
static int s_version(const cnd_qmodel_t *q)
{
    for (int i = 0; i < q->n_layers; i++) {
        const cnd_qlayer_t *l = &q->layers[i];
        if (l->op > CND_RT_OP_MAX_V1 || (l->n_src && (l->n_src != 1 || l->srcq[0] != i - 1)))
            return CND_RT_VERSION;
    }
    return CND_RT_VERSION_CHAIN;
}

static void s_layer_entry(cnd_buf_t *b, const cnd_qlayer_t *l, const s_offs_t *o, int v2)
{
    size_t at = b->len;
    cnd_buf_u8(b, (uint8_t)l->op);
    cnd_buf_u8(b, l->relu && s_weighted(l) ? CND_RT_L_FLAG_RELU : 0);
    int weighted = s_weighted(l);
    cnd_buf_u8(b, weighted ? (uint8_t)l->wbits : 0);
    cnd_buf_u8(b, v2 ? (uint8_t)(l->n_src ? l->n_src : 1) : 0);
    cnd_buf_u16(b, (uint16_t)l->in_c);
    cnd_buf_u16(b, (uint16_t)l->in_h);
    cnd_buf_u16(b, (uint16_t)l->in_w);
    cnd_buf_u16(b, (uint16_t)l->out_c);
    cnd_buf_u16(b, (uint16_t)l->out_h);
    cnd_buf_u16(b, (uint16_t)l->out_w);
    cnd_buf_u8(b, (uint8_t)l->k);
    cnd_buf_u8(b, (uint8_t)l->stride);
    cnd_buf_u8(b, (uint8_t)l->pad);
    cnd_buf_u8(b, 0);
    cnd_buf_u8(b, (uint8_t)(int8_t)l->act_min);
    cnd_buf_u8(b, (uint8_t)(int8_t)l->act_max);
    cnd_buf_u16(b, v2 && l->op == CND_RT_OP_GCONV ? (uint16_t)l->groups : 0);
    cnd_buf_u32(b, (uint32_t)l->in_zp);
    cnd_buf_u32(b, (uint32_t)l->out_zp);
    cnd_buf_u32(b, s_fbits(l->in_scale));
    cnd_buf_u32(b, s_fbits(l->out_scale));
    cnd_buf_u32(b, o->w_off);
    cnd_buf_u32(b, o->w_len);
    cnd_buf_u32(b, o->b_off);
    cnd_buf_u32(b, o->m_off);
    cnd_buf_u32(b, o->s_off);
    for (int j = 0; j < 2; j++) /* v2: producers + 1, 0 = the model input */
        cnd_buf_u8(b, v2 && j < (l->n_src ? l->n_src : 1) ? (uint8_t)(l->srcq[j] + 1) : 0);
    cnd_buf_u16(b, 0);
    (void)at;
}

static void s_blob(cnd_buf_t *b, const void *p, size_t n)
{
    if (n) cnd_buf_put(b, p, n);
}

/* The artifact's sections in file order (rt_format.h). */
enum { S_INPT, S_LABL, S_LAYR, S_DATA, S_TEST, S_META, S_NSECT };
_Static_assert(S_NSECT == CND_RT_NSECTIONS, "one buffer per section");

/* DATA: each weighted layer's weights (int8, or int4 two to a byte, low nibble first), then
 * its int32 biases and multipliers 4-aligned and its shifts; where they went in offs. */
static int s_data(cnd_buf_t *b, s_offs_t *offs, const cnd_qmodel_t *q)
{
    for (int i = 0; i < q->n_layers; i++) {
        const cnd_qlayer_t *l = &q->layers[i];
        s_offs_t *o = &offs[i];
        if (l->op == CND_RT_OP_LUT) { /* the 256-byte table */
            o->w_off = (uint32_t)b->len;
            o->w_len = 256;
            s_blob(b, l->w, 256);
            continue;
        }
        if (l->op == CND_RT_OP_ADD || l->op == CND_RT_OP_CONCAT) { /* multipliers and shifts */
            int n = l->op == CND_RT_OP_ADD ? 3 : 2;
            s_pad(b, 4);
            o->m_off = (uint32_t)b->len;
            for (int j = 0; j < n; j++) cnd_buf_u32(b, (uint32_t)l->mult[j]);
            o->s_off = (uint32_t)b->len;
            for (int j = 0; j < n; j++) cnd_buf_u8(b, (uint8_t)(int8_t)l->shift[j]);
            s_pad(b, 4);
            continue;
        }
        if (!s_weighted(l)) continue;
        o->w_off = (uint32_t)b->len;
        if (l->wbits == 8) {
            s_blob(b, l->w, (size_t)l->out_c * l->K);
        } else {
            size_t row = ((size_t)l->K + 1) / 2;
            for (int r = 0; r < l->out_c; r++) {
                const int8_t *w = l->w + (size_t)r * l->K;
                for (size_t j = 0; j < row; j++) {
                    uint8_t lo = (uint8_t)(w[2 * j] & 15);
                    uint8_t hi = 2 * j + 1 < (size_t)l->K ? (uint8_t)(w[2 * j + 1] & 15) : 0;
                    cnd_buf_u8(b, (uint8_t)(lo | hi << 4));
                }
            }
        }
        o->w_len = (uint32_t)(b->len - o->w_off);
        s_pad(b, 4);
        o->b_off = (uint32_t)b->len;
        for (int r = 0; r < l->out_c; r++) cnd_buf_u32(b, (uint32_t)l->bias[r]);
        o->m_off = (uint32_t)b->len;
        for (int r = 0; r < l->out_c; r++) cnd_buf_u32(b, (uint32_t)l->mult[r]);
        o->s_off = (uint32_t)b->len;
        for (int r = 0; r < l->out_c; r++) cnd_buf_u8(b, (uint8_t)(int8_t)l->shift[r]);
        s_pad(b, CND_RT_ALIGN);
        if (b->len > CND_RT_MAX_FILE)
            return cnd_errf(CND_ERANGE, "quantized weights exceed the artifact limit of %u bytes",
                            CND_RT_MAX_FILE);
    }
    return 0;
}

/* INPT, LABL, LAYR (entries pointing into DATA by offs), TEST and META. */
static void s_sections(cnd_buf_t sec[S_NSECT], const s_offs_t *offs, const cnd_qmodel_t *q)
{
    int C = q->in.c;
    size_t in_bytes = cnd_shape_size(q->in);
    cnd_buf_t *inpt = &sec[S_INPT], *labl = &sec[S_LABL], *layr = &sec[S_LAYR],
              *test = &sec[S_TEST], *meta = &sec[S_META];
    cnd_buf_u16(inpt, (uint16_t)q->in.c);
    cnd_buf_u16(inpt, (uint16_t)q->in.h);
    cnd_buf_u16(inpt, (uint16_t)q->in.w);
    cnd_buf_u8(inpt, 0);
    cnd_buf_u8(inpt, 0);
    cnd_buf_u32(inpt, (uint32_t)q->in_zp);
    cnd_buf_u32(inpt, s_fbits(q->in_scale));
    for (int c = 0; c < C; c++) cnd_buf_u32(inpt, s_fbits(q->norm_mean[c]));
    for (int c = 0; c < C; c++) cnd_buf_u32(inpt, s_fbits(q->norm_std[c]));
    s_blob(inpt, q->lut, (size_t)C * 256);

    cnd_buf_u32(labl, q->labels ? (uint32_t)q->n_classes : 0);
    for (int k = 0; q->labels && k < q->n_classes; k++) {
        size_t n = strlen(q->labels[k]);
        cnd_buf_u8(labl, (uint8_t)n);
        s_blob(labl, q->labels[k], n);
        cnd_buf_u8(labl, 0);
    }

    cnd_buf_u32(layr, (uint32_t)q->n_layers);
    for (int i = 0; i < 3; i++) cnd_buf_u32(layr, 0);
    int v2 = s_version(q) == CND_RT_VERSION;
    for (int i = 0; i < q->n_layers; i++) s_layer_entry(layr, &q->layers[i], &offs[i], v2);

    cnd_buf_u32(test, (uint32_t)q->n_tests);
    cnd_buf_u32(test, (uint32_t)q->test_kind);
    cnd_buf_u32(test, (uint32_t)in_bytes);
    cnd_buf_u32(test, (uint32_t)q->n_classes);
    for (int t = 0; t < q->n_tests; t++) {
        s_blob(test, q->test_in + (size_t)t * in_bytes, in_bytes);
        s_blob(test, q->test_out + (size_t)t * q->n_classes, (size_t)q->n_classes);
    }

    cnd_buf_u32(meta, (uint32_t)q->n_meta);
    for (int i = 0; i < q->n_meta; i++) {
        size_t kl = strlen(q->meta[i].key), vl = strlen(q->meta[i].val);
        cnd_buf_u16(meta, (uint16_t)kl);
        s_blob(meta, q->meta[i].key, kl);
        cnd_buf_u16(meta, (uint16_t)vl);
        s_blob(meta, q->meta[i].val, vl);
    }
}

/* The whole file into out: header (lengths patched once known), the sections, the body's
 * SHA-256 and an unsigned trailer. */
static int s_frame(cnd_buf_t *out, const cnd_buf_t sec[S_NSECT], int version)
{
    static const uint32_t tags[S_NSECT] = {CND_RT_TAG_INPT, CND_RT_TAG_LABL, CND_RT_TAG_LAYR,
                                           CND_RT_TAG_DATA, CND_RT_TAG_TEST, CND_RT_TAG_META};
    cnd_buf_put(out, CND_RT_MAGIC, 4);
    cnd_buf_u16(out, (uint16_t)version);
    cnd_buf_u16(out, CND_RT_HEADER_BYTES);
    cnd_buf_u32(out, 0); /* body_len, patched */
    cnd_buf_u32(out, 0); /* file_len, patched */
    cnd_buf_u32(out, 0);
    cnd_buf_u16(out, CND_RT_NSECTIONS);
    while (out->len < CND_RT_HEADER_BYTES) cnd_buf_u8(out, 0);
    int err = out->err;
    for (int i = 0; i < S_NSECT; i++) {
        s_section(out, tags[i], &sec[i]);
        err |= sec[i].err;
    }
    if (err || out->err) return CND_ENOMEM;
    size_t body = out->len, file = body + CND_RT_DIGEST_BYTES + CND_RT_TRAILER_BYTES;
    if (file > CND_RT_MAX_FILE)
        return cnd_errf(CND_ERANGE, "artifact would be %zu bytes, above the runtime's limit of %u",
                        file, CND_RT_MAX_FILE);
    cnd_buf_patch_u32(out, CND_RT_H_BODYLEN, (uint32_t)body);
    cnd_buf_patch_u32(out, CND_RT_H_FILELEN, (uint32_t)file);
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, out->data, body);
    cnd_buf_put(out, dg, sizeof dg);
    cnd_buf_put(out, CND_RT_TRAILER_MAGIC, 4);
    cnd_buf_u16(out, CND_RT_TRAILER_VERSION);
    cnd_buf_u16(out, 0); /* scheme: unsigned */
    while (out->len < file) cnd_buf_u8(out, 0);
    return out->err ? CND_ENOMEM : 0;
}

int cnd_artifact_serialize(const cnd_qmodel_t *q, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    cnd_buf_t sec[S_NSECT], out;
    for (int i = 0; i < S_NSECT; i++) cnd_buf_init(&sec[i]);
    cnd_buf_init(&out);
    s_offs_t *offs = calloc((size_t)q->n_layers + 1, sizeof *offs);
    int rc = offs ? s_data(&sec[S_DATA], offs, q) : CND_ENOMEM;
    if (!rc) {
        s_sections(sec, offs, q);
        rc = s_frame(&out, sec, s_version(q));
    }
    if (!rc) {
        *data = out.data;
        *len = out.len;
        out.data = NULL;
    }
    free(offs);
    for (int i = 0; i < S_NSECT; i++) cnd_buf_free(&sec[i]);
    cnd_buf_free(&out);
    return rc;
}

int cnd_artifact_err(int rc, const cnd_rt_diag_t *d, const char *what)
{
    int code = rc == CND_RT_ETRUNC ? CND_EFORMAT : rc == CND_RT_ESELFTEST ? CND_ECORRUPT : rc;
    if (d && d->what) {
        if (d->layer >= 0)
            return cnd_errf(code, "%s: %s (layer %d, byte offset %u)", what, d->what, d->layer + 1,
                            d->offset);
        return cnd_errf(code, "%s: %s (byte offset %u)", what, d->what, d->offset);
    }
    return cnd_errf(code, "%s: %s", what, cnd_rt_strerror(rc));
}

void cnd_artifact_destroy(cnd_artifact_t **pa)
{
    if (!pa || !*pa) return;
    free((*pa)->bytes);
    free((*pa)->arena);
    free(*pa);
    *pa = NULL;
}

int cnd_artifact_open(cnd_artifact_t **out, const uint8_t *bytes, size_t len, const char *what)
{
    *out = NULL;
    cnd_rt_diag_t d = {0};
    size_t need;
    int rc = cnd_rt_arena_size(&need, bytes, len, &d);
    if (rc) return cnd_artifact_err(rc, &d, what);
    cnd_artifact_t *a = calloc(1, sizeof *a);
    if (!a) return CND_ENOMEM;
    a->bytes = malloc(len ? len : 1);
    a->arena = malloc(need);
    if (!a->bytes || !a->arena) {
        cnd_artifact_destroy(&a);
        return CND_ENOMEM;
    }
    memcpy(a->bytes, bytes, len);
    a->len = len;
    a->arena_len = need;
    if ((rc = cnd_rt_load(&a->rt, a->bytes, len, a->arena, need, &d))) {
        cnd_artifact_destroy(&a);
        return cnd_artifact_err(rc, &d, what);
    }
    cnd_rt_get_info(a->rt, &a->info);
    *out = a;
    return 0;
}

int cnd_artifact_load(cnd_artifact_t **out, const char *path)
{
    uint8_t *bytes;
    size_t len;
    *out = NULL;
    int rc = cnd_file_read(path, (size_t)CND_RT_MAX_FILE + 1, &bytes, &len);
    if (rc == CND_ERANGE)
        return cnd_errf(CND_ERANGE, "%s: larger than the runtime's limit of %u bytes", path,
                        CND_RT_MAX_FILE);
    if (rc) return rc;
    rc = cnd_artifact_open(out, bytes, len, path);
    free(bytes);
    return rc;
}

int cnd_artifact_selftest(cnd_artifact_t *a, const char *what)
{
    uint32_t bad = 0;
    int rc = cnd_rt_selftest(a->rt, &bad);
    if (rc)
        return cnd_errf(CND_ECORRUPT,
                        "%s: self-test vector %u gives different logits with the "
                        "%s kernels",
                        what, bad, cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt)));
    return 0;
}

int cnd_artifact_set_selftests(cnd_qmodel_t *q, const uint8_t *inputs, int n, int kind)
{
    if (n < 0 || n > CND_RT_TEST_MAX) return cnd_errf(CND_EINVAL, "self-tests: 0..64 vectors");
    size_t in_bytes = cnd_shape_size(q->in);
    free(q->test_in);
    free(q->test_out);
    q->test_in = NULL;
    q->test_out = NULL;
    q->n_tests = 0;
    q->test_kind = kind;
    uint8_t *bytes = NULL;
    size_t len;
    int rc = cnd_artifact_serialize(q, &bytes, &len);
    if (rc) return rc;
    cnd_artifact_t *a = NULL;
    rc = cnd_artifact_open(&a, bytes, len, "new artifact");
    free(bytes);
    if (rc) return rc;
    q->test_in = malloc(n ? (size_t)n * in_bytes : 1);
    q->test_out = malloc(n ? (size_t)n * q->n_classes : 1);
    if (!q->test_in || !q->test_out) {
        cnd_artifact_destroy(&a);
        return CND_ENOMEM;
    }
    rc = cnd_rt_set_kernels(a->rt, CND_RT_KERNELS_REF);
    (void)rc;
    for (int t = 0; t < n; t++) {
        const uint8_t *in = inputs + (size_t)t * in_bytes;
        memcpy(q->test_in + (size_t)t * in_bytes, in, in_bytes);
        int8_t *o = q->test_out + (size_t)t * q->n_classes;
        if (kind == CND_RT_TEST_RAW_U8)
            cnd_rt_run_u8(a->rt, o, in);
        else
            cnd_rt_run_i8(a->rt, o, (const int8_t *)in);
    }
    q->n_tests = n;
    cnd_artifact_destroy(&a);
    return 0;
}

int cnd_artifact_save(const cnd_qmodel_t *q, const char *path)
{
    uint8_t *bytes;
    size_t len;
    int rc = cnd_artifact_serialize(q, &bytes, &len);
    if (rc) return rc;
    rc = cnd_file_write_atomic(path, bytes, len, 0644);
    free(bytes);
    return rc;
}

int cnd_artifact_meta(const cnd_artifact_t *a, int i, char *key, size_t kcap, char *val,
                      size_t vcap)
{
    uint32_t body = cnd_le32(a->bytes + CND_RT_H_BODYLEN);
    size_t off = CND_RT_HEADER_BYTES;
    while (off + CND_RT_SECTION_HDR <= body) {
        uint32_t tag = cnd_le32(a->bytes + off), plen = cnd_le32(a->bytes + off + 4);
        size_t p = off + CND_RT_SECTION_HDR;
        if (plen > body - p) return 0;
        if (tag == CND_RT_TAG_META) {
            cnd_rd_t r;
            cnd_rd_init(&r, a->bytes + p, plen);
            uint32_t n = cnd_rd_u32(&r);
            for (uint32_t e = 0; e < n && !r.err; e++) {
                uint16_t kl = cnd_rd_u16(&r);
                const uint8_t *k = cnd_rd_take(&r, kl);
                uint16_t vl = cnd_rd_u16(&r);
                const uint8_t *v = cnd_rd_take(&r, vl);
                if (r.err) return 0;
                if ((int)e == i) {
                    snprintf(key, kcap, "%.*s", (int)kl, (const char *)k);
                    snprintf(val, vcap, "%.*s", (int)vl, (const char *)v);
                    return 1;
                }
            }
            return 0;
        }
        off = p + (((size_t)plen + CND_RT_ALIGN - 1) & ~(size_t)(CND_RT_ALIGN - 1));
    }
    return 0;
}
