/*
 * test_artifact.c: `.cndq` artifacts end to end: writing, loading through the runtime, the
 * self-test, deterministic bytes, and refusal of truncated, extended, corrupted and crafted
 * artifacts with the right error code, without touching the caller's arena or out pointer.
 */
#include "check.h"
#include "quant_testutil.h"

#include <string.h>
#include <unistd.h>

static const char *SPEC = "conv2d(4,3,pad=1) relu maxpool(2) conv2d(6,3,stride=2) relu avgpool(2) "
                          "flatten dense(12) relu dense(5)";

/* Runtime load of bytes into a poisoned arena; checks failure leaves everything untouched. */
static int s_load_rc(const uint8_t *a, size_t len, cnd_rt_diag_t *d)
{
    static uint8_t arena[1 << 18];
    memset(arena, 0xA5, sizeof arena);
    cnd_rt_model_t *sentinel = (cnd_rt_model_t *)(uintptr_t)0x1234, *m = sentinel;
    int rc = cnd_rt_load(&m, a, len, arena, sizeof arena, d);
    if (rc) {
        CHECK(m == sentinel);
        size_t bad = 0;
        for (size_t i = 0; i < sizeof arena; i++) bad += arena[i] != 0xA5;
        CHECK_EQ_INT(bad, 0);
    }
    return rc;
}

/* Edits a little-endian u32 at off, recomputes the digest, expects rc. */
static void s_craft(const uint8_t *good, size_t len, uint32_t off, uint32_t v, int want,
                    const char *why)
{
    uint8_t *a = malloc(len);
    memcpy(a, good, len);
    cnd_st_le32(a + off, v);
    qt_redigest(a);
    cnd_rt_diag_t d = {0};
    int rc = s_load_rc(a, len, &d);
    if (rc != want)
        fprintf(stderr, "craft %s: got %d (%s) want %d\n", why, rc, d.what ? d.what : "", want);
    CHECK_EQ_INT(rc, want);
    free(a);
}

static void s_craft8(const uint8_t *good, size_t len, uint32_t off, uint8_t v, int want,
                     const char *why)
{
    uint8_t *a = malloc(len);
    memcpy(a, good, len);
    a[off] = v;
    qt_redigest(a);
    cnd_rt_diag_t d = {0};
    int rc = s_load_rc(a, len, &d);
    if (rc != want)
        fprintf(stderr, "craft8 %s: got %d (%s) want %d\n", why, rc, d.what ? d.what : "", want);
    CHECK_EQ_INT(rc, want);
    free(a);
}

/* A graph artifact (format version 2) loads, runs its self-tests, and every crafted graph field
 * is refused: forward references and cycles, inputs counts, groups, a layer nobody reads, wrong
 * second inputs, add/concat/lut data outside DATA, version-2 operations in a version-1 file. */
static void s_graph(void)
{
    cnd_qmodel_t *q = NULL;
    CHECK_EQ_INT(qt_make(&q, NULL,
                         "a=conv2d(6,1) dwconv(3,pad=1) add(@a) hardswish @input "
                         "conv2d(4,3,pad=1,groups=2) concat(@n3) gap dense(3)",
                         (cnd_shape_t){2, 6, 6}, 8, CND_QM_MINMAX, 9),
                 0);
    if (!q) return;
    uint8_t *a;
    size_t len;
    CHECK_EQ_INT(cnd_artifact_serialize(q, &a, &len), 0);
    CHECK_EQ_INT(a[CND_RT_H_VERSION] | a[CND_RT_H_VERSION + 1] << 8, 2);
    cnd_artifact_t *art = NULL;
    CHECK_EQ_INT(cnd_artifact_open(&art, a, len, "graph"), 0);
    if (art) CHECK_EQ_INT(cnd_artifact_selftest(art, "graph"), 0);
    cnd_artifact_destroy(&art);
    uint32_t nl, layr = qt_section(a, CND_RT_TAG_LAYR, &nl);
    int iadd = -1, icat = -1, igc = -1, ilut = -1;
    for (int i = 0; i < q->n_layers; i++) {
        int op = q->layers[i].op;
        if (op == CND_RT_OP_ADD) iadd = i;
        if (op == CND_RT_OP_CONCAT) icat = i;
        if (op == CND_RT_OP_GCONV && igc < 0) igc = i;
        if (op == CND_RT_OP_LUT) ilut = i;
    }
    CHECK(iadd > 0 && icat > 0 && igc > 0 && ilut > 0);
    if (iadd > 0 && icat > 0 && igc > 0 && ilut > 0) {
        uint32_t ea = layr + 16 + 64 * (uint32_t)iadd, ec = layr + 16 + 64 * (uint32_t)icat;
        uint32_t eg = layr + 16 + 64 * (uint32_t)igc, el = layr + 16 + 64 * (uint32_t)ilut;
        s_craft8(a, len, ea + CND_RT_L_SRC, (uint8_t)(iadd + 1), CND_RT_EFORMAT, "reads itself");
        s_craft8(a, len, ea + CND_RT_L_SRC + 1, (uint8_t)(iadd + 2), CND_RT_EFORMAT,
                 "forward reference");
        s_craft8(a, len, ea + CND_RT_L_SRC + 1, 255, CND_RT_EFORMAT, "reference past the end");
        s_craft8(a, len, ea + CND_RT_L_NSRC, 1, CND_RT_EFORMAT, "add with one input");
        s_craft8(a, len, eg + CND_RT_L_NSRC, 2, CND_RT_EFORMAT, "gconv with two inputs");
        s_craft8(a, len, eg + CND_RT_L_SRC + 2, 1, CND_RT_EFORMAT, "reserved source byte");
        s_craft8(a, len, eg + CND_RT_L_GROUPS, 5, CND_RT_EFORMAT, "groups not dividing");
        s_craft8(a, len, eg + CND_RT_L_GROUPS, 0, CND_RT_EFORMAT, "gconv without groups");
        s_craft8(a, len, ea + CND_RT_L_GROUPS, 1, CND_RT_EFORMAT, "groups on add");
        s_craft8(a, len, ec + CND_RT_L_SRC + 1, 0, CND_RT_EFORMAT, "concat of the wrong shape");
        s_craft(a, len, ea + CND_RT_L_MULT_OFF, 0xfffffff0u, CND_RT_EFORMAT, "add data outside");
        s_craft(a, len, el + CND_RT_L_W_LEN, 255, CND_RT_EFORMAT, "lut of 255 bytes");
        s_craft(a, len, el + CND_RT_L_W_OFF, 0xffffff00u, CND_RT_EFORMAT, "lut outside DATA");
        /* the layer before the last is read by the last; point the last at the input of gap's
         * producer's producer instead, leaving gap unread */
        uint32_t elast = layr + 16 + 64 * (uint32_t)(q->n_layers - 1);
        s_craft8(a, len, elast + CND_RT_L_SRC, (uint8_t)(q->n_layers - 2), CND_RT_EFORMAT,
                 "unread layer");
        s_craft8(a, len, CND_RT_H_VERSION, 1, CND_RT_EFORMAT, "graph entries in version 1");
    }
    free(a);
    cnd_qmodel_destroy(&q);
}

int main(void)
{
    cnd_shape_t in = {2, 10, 10};
    cnd_qmodel_t *q = NULL;
    cnd_model_t *fm = NULL;
    CHECK_EQ_INT(qt_make(&q, &fm, SPEC, in, 8, CND_QM_MINMAX, 5), 0);
    if (!q) return check_result("test_artifact");
    CHECK_EQ_INT(cnd_model_meta_set(fm, "labels", "a,b,c,d,e"), 0);
    cnd_qmodel_destroy(&q);
    /* rebuild with labels via the same path */
    CHECK_EQ_INT(qt_make(&q, NULL, SPEC, in, 8, CND_QM_MINMAX, 5), 0);
    q->labels = calloc(5, sizeof(char *));
    const char *names[5] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"};
    for (int k = 0; k < 5; k++) q->labels[k] = strdup(names[k]);
    q->meta[q->n_meta].key = strdup("dataset");
    q->meta[q->n_meta++].val = strdup("unit test");

    uint8_t *a = NULL, *b = NULL;
    size_t len = 0, blen = 0;
    CHECK_EQ_INT(cnd_artifact_serialize(q, &a, &len), 0);
    CHECK_EQ_INT(cnd_artifact_serialize(q, &b, &blen), 0);
    CHECK(len == blen && memcmp(a, b, len) == 0); /* deterministic */
    free(b);
    CHECK_EQ_INT(len % 16, 0);
    CHECK_EQ_INT(cnd_le32(a + CND_RT_H_FILELEN), len);

    /* Loads, self-test passes with every kernel set, info matches the model. */
    cnd_artifact_t *art = NULL;
    CHECK_EQ_INT(cnd_artifact_open(&art, a, len, "mem"), 0);
    if (art) {
        CHECK_EQ_INT(art->info.c, 2);
        CHECK_EQ_INT(art->info.h, 10);
        CHECK_EQ_INT(art->info.n_classes, 5);
        CHECK_EQ_INT(art->info.n_selftests, 3);
        CHECK_EQ_INT(art->info.n_labels, 5);
        CHECK_EQ_INT(art->info.macs, cnd_model_macs(fm));
        CHECK_EQ_INT(art->info.sig_scheme, 0);
        CHECK(strcmp(cnd_rt_label(art->rt, 0), "T-shirt/top") == 0);
        CHECK(strcmp(cnd_rt_label(art->rt, 4), "Coat") == 0);
        CHECK(cnd_rt_label(art->rt, 5) == NULL);
        size_t wb = 0;
        for (int i = 0; i < q->n_layers; i++)
            if (q->layers[i].w) wb += (size_t)q->layers[i].out_c * q->layers[i].K;
        CHECK_EQ_INT(art->info.weight_bytes, wb);
        for (int k = CND_RT_KERNELS_REF; k <= CND_RT_KERNELS_VNNI; k++) {
            if (!cnd_rt_kernels_available((cnd_rt_kernels_t)k)) continue;
            CHECK_EQ_INT(cnd_rt_set_kernels(art->rt, (cnd_rt_kernels_t)k), 0);
            CHECK_EQ_INT(cnd_artifact_selftest(art, "mem"), 0);
        }
        uint32_t scheme, slen, signed_len;
        const uint8_t *sig;
        cnd_rt_signature(art->rt, &scheme, &sig, &slen, &signed_len);
        CHECK_EQ_INT(scheme, 0);
        CHECK_EQ_INT(slen, 0);
        CHECK_EQ_INT(signed_len, cnd_le32(a + CND_RT_H_BODYLEN) + 32);
        CHECK(sig == art->bytes + signed_len + CND_RT_T_SIGDATA);
        size_t need = 0;
        CHECK_EQ_INT(cnd_rt_arena_size(&need, a, len, NULL), 0);
        CHECK_EQ_INT(need, art->info.arena_bytes);
    }
    cnd_artifact_destroy(&art);

    /* A misaligned copy loads and gives the same self-test result. */
    uint8_t *mis = malloc(len + 1);
    memcpy(mis + 1, a, len);
    CHECK_EQ_INT(cnd_artifact_open(&art, mis + 1, len, "misaligned"), 0);
    if (art) CHECK_EQ_INT(cnd_artifact_selftest(art, "misaligned"), 0);
    cnd_artifact_destroy(&art);
    free(mis);

    /* The arena size is exact: one byte less is refused untouched. */
    {
        size_t need = 0;
        CHECK_EQ_INT(cnd_rt_arena_size(&need, a, len, NULL), 0);
        uint8_t *ar = malloc(need + 64);
        /* align the arena so the 63-byte slack is not what makes it fit */
        memset(ar, 0x5a, need + 64);
        cnd_rt_model_t *m = NULL;
        CHECK_EQ_INT(cnd_rt_load(&m, a, len, ar, need - 1, NULL), CND_RT_ENOMEM);
        CHECK(m == NULL);
        size_t bad = 0;
        for (size_t i = 0; i < need + 64; i++) bad += ar[i] != 0x5a;
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cnd_rt_load(&m, a, len, ar, need, NULL), 0);
        CHECK(m != NULL);
        if (m) CHECK_EQ_INT(cnd_rt_selftest(m, NULL), 0);
        free(ar);
    }

    /* Every truncation fails as truncated (or header-short) and touches nothing. */
    int trunc_bad = 0;
    for (size_t l = 0; l < len; l++) {
        cnd_rt_diag_t d = {0};
        int rc = s_load_rc(a, l, &d);
        trunc_bad += rc != CND_RT_ETRUNC;
    }
    CHECK_EQ_INT(trunc_bad, 0);
    {
        cnd_artifact_t *t = NULL;
        int rc = cnd_artifact_open(&t, a, len - 1, "cut.cndq");
        CHECK_EQ_INT(rc, CND_EFORMAT);
        CHECK(strstr(cnd_err_detail(), "cut.cndq") != NULL);
        CHECK(strstr(cnd_err_detail(), "truncated") != NULL);
    }
    /* Extra bytes after the end are refused. */
    uint8_t *ext = malloc(len + 1);
    memcpy(ext, a, len);
    ext[len] = 0;
    CHECK_EQ_INT(s_load_rc(ext, len + 1, NULL), CND_RT_EFORMAT);
    free(ext);
    /* A declared size above the limit is refused as oversized. */
    s_craft(a, len, CND_RT_H_FILELEN, CND_RT_MAX_FILE + 16, CND_RT_ERANGE, "file_len huge");

    /* Any single-bit flip in the body or digest is caught. */
    uint32_t body = cnd_le32(a + CND_RT_H_BODYLEN);
    int flip_bad = 0;
    for (uint32_t i = 0; i < body + 32; i++) {
        a[i] ^= (uint8_t)(1u << (i % 8));
        int rc = s_load_rc(a, len, NULL);
        if (rc == 0 || rc == CND_RT_ENOMEM) flip_bad++;
        a[i] ^= (uint8_t)(1u << (i % 8));
    }
    CHECK_EQ_INT(flip_bad, 0);
    CHECK_EQ_INT(s_load_rc(a, len, NULL), 0);
    /* Trailer: the digest does not cover it; framing errors are still refused. */
    s_craft(a, len, body + 32, 0x0, CND_RT_EFORMAT, "trailer magic");
    s_craft(a, len, body + 32 + CND_RT_T_SIGLEN, 241, CND_RT_EFORMAT, "sig_len > 240");
    s_craft(a, len, body + 32 + CND_RT_T_SIGLEN, 8, CND_RT_EFORMAT, "sig_len on unsigned");
    s_craft8(a, len, body + 32 + CND_RT_T_SIGDATA + 100, 1, CND_RT_EFORMAT, "sig padding");

    /* Crafted fields with a valid digest: each refused with the right code. */
    uint32_t layr = qt_section(a, CND_RT_TAG_LAYR, NULL), dlen = 0;
    uint32_t data = qt_section(a, CND_RT_TAG_DATA, &dlen);
    uint32_t inpt = qt_section(a, CND_RT_TAG_INPT, NULL);
    uint32_t labl = qt_section(a, CND_RT_TAG_LABL, NULL);
    uint32_t test = qt_section(a, CND_RT_TAG_TEST, NULL);
    uint32_t e0 = layr + 16, e2 = layr + 16 + 64; /* conv, maxpool */
    CHECK(layr && data && inpt && labl && test);
    s_craft(a, len, CND_RT_H_VERSION, 3, CND_RT_EFORMAT, "version");
    s_craft(a, len, CND_RT_H_FLAGS, 1, CND_RT_EFORMAT, "flags");
    s_craft(a, len, 40, 1, CND_RT_EFORMAT, "reserved header");
    s_craft(a, len, CND_RT_H_BODYLEN, body - 16, CND_RT_EFORMAT, "body_len");
    s_craft(a, len, layr - 16, CND_RT_TAG_META, CND_RT_EFORMAT, "section order");
    s_craft(a, len, layr - 12, 100000, CND_RT_EFORMAT, "section length");
    s_craft8(a, len, e0 + CND_RT_L_OP, 9, CND_RT_EFORMAT, "unknown op");
    s_craft8(a, len, e0 + CND_RT_L_WBITS, 5, CND_RT_EFORMAT, "wbits 5");
    s_craft8(a, len, e0 + CND_RT_L_FLAGS, 2, CND_RT_EFORMAT, "flags");
    s_craft8(a, len, e0 + CND_RT_L_K, 5, CND_RT_EFORMAT, "kernel changes shape");
    s_craft8(a, len, e0 + CND_RT_L_PAD, 3, CND_RT_EFORMAT, "pad >= k");
    s_craft(a, len, e0 + CND_RT_L_OUT_ZP, 200, CND_RT_ERANGE, "zero point 200");
    s_craft(a, len, e0 + CND_RT_L_IN_ZP, 3, CND_RT_EFORMAT, "zero point chain");
    s_craft(a, len, e0 + CND_RT_L_W_OFF, dlen, CND_RT_EFORMAT, "weights outside DATA");
    s_craft(a, len, e0 + CND_RT_L_W_OFF, 0xfffffff0u, CND_RT_EFORMAT, "offset wraps");
    s_craft(a, len, e0 + CND_RT_L_BIAS_OFF, 2, CND_RT_EFORMAT, "misaligned bias");
    s_craft8(a, len, e2 + CND_RT_L_OUT_C, 3, CND_RT_EFORMAT, "pool channel change");
    s_craft8(a, len, e2 + CND_RT_L_ACT_MIN, 0, CND_RT_EFORMAT, "pool clamp");
    s_craft(a, len, e2 + CND_RT_L_W_LEN, 4, CND_RT_EFORMAT, "pool with weights");
    s_craft(a, len, layr, 0, CND_RT_ERANGE, "zero layers");
    s_craft(a, len, layr, 65, CND_RT_ERANGE, "65 layers");
    s_craft(a, len, inpt, 0, CND_RT_ERANGE, "input C = 0");
    s_craft(a, len, inpt + 8, 128, CND_RT_ERANGE, "input zp 128");
    s_craft(a, len, labl, 4, CND_RT_EFORMAT, "label count");
    s_craft8(a, len, labl + 4, 0, CND_RT_EFORMAT, "empty label");
    s_craft8(a, len, labl + 6, '\n', CND_RT_EFORMAT, "control char in label");
    s_craft(a, len, test, 65, CND_RT_EFORMAT, "65 self-tests");
    s_craft(a, len, test + 4, 2, CND_RT_EFORMAT, "test kind");
    s_craft(a, len, test + 12, 6, CND_RT_EFORMAT, "test out size");
    {
        uint32_t moff = data + cnd_le32(a + e0 + CND_RT_L_MULT_OFF);
        uint32_t soff = data + cnd_le32(a + e0 + CND_RT_L_SHIFT_OFF);
        uint32_t boff = data + cnd_le32(a + e0 + CND_RT_L_BIAS_OFF);
        s_craft(a, len, moff, 0x80000000u, CND_RT_ERANGE, "negative multiplier");
        s_craft8(a, len, soff, 32, CND_RT_ERANGE, "shift 32");
        s_craft8(a, len, soff, (uint8_t)-32, CND_RT_ERANGE, "shift -32");
        s_craft(a, len, boff, 0x7fffff00u, CND_RT_ERANGE, "bias overflow");
        s_craft(a, len, boff, 0x80000100u, CND_RT_ERANGE, "bias underflow");
        s_craft(a, len, boff, 12345, 0, "ordinary bias change loads");
    }
    /* A wrong expected output loads but fails the self-test. */
    {
        uint8_t *c = malloc(len);
        memcpy(c, a, len);
        size_t in_bytes = cnd_shape_size(in);
        c[test + 16 + in_bytes + in_bytes + 5 + 2] ^= 1; /* vector 1, logit 2 */
        qt_redigest(c);
        cnd_artifact_t *t = NULL;
        CHECK_EQ_INT(cnd_artifact_open(&t, c, len, "bad-selftest"), 0);
        if (t) {
            uint32_t failed = 99;
            CHECK_EQ_INT(cnd_rt_selftest(t->rt, &failed), CND_RT_ESELFTEST);
            CHECK_EQ_INT(failed, 1);
            CHECK_EQ_INT(cnd_artifact_selftest(t, "bad-selftest"), CND_ECORRUPT);
        }
        cnd_artifact_destroy(&t);
        free(c);
    }
    /* NULL arguments */
    CHECK_EQ_INT(cnd_rt_load(NULL, a, len, (void *)a, 10, NULL), CND_RT_EINVAL);
    CHECK_EQ_INT(cnd_rt_arena_size(NULL, a, len, NULL), CND_RT_EINVAL);
    CHECK_EQ_INT(cnd_rt_arena_size(&blen, NULL, len, NULL), CND_RT_EINVAL);

    /* File round trip, and a file that is not an artifact. */
    char path[] = "/tmp/cnd_test_artifact_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK_EQ_INT(cnd_artifact_save(q, path), 0);
    CHECK_EQ_INT(cnd_artifact_load(&art, path), 0);
    if (art) CHECK(art->len == len && memcmp(art->bytes, a, len) == 0);
    cnd_artifact_destroy(&art);
    FILE *f = fopen(path, "wb");
    fputs("not an artifact, just text that is long enough to have a header...........", f);
    fclose(f);
    CHECK_EQ_INT(cnd_artifact_load(&art, path), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "magic") != NULL);
    unlink(path);

    /* W4A8: half the weight bytes (rounded up per row), still self-consistent. */
    cnd_qmodel_t *q4 = NULL;
    CHECK_EQ_INT(qt_make(&q4, NULL, SPEC, in, 4, CND_QM_MSE, 6), 0);
    if (q4) {
        uint8_t *a4;
        size_t len4;
        CHECK_EQ_INT(cnd_artifact_serialize(q4, &a4, &len4), 0);
        CHECK_EQ_INT(cnd_artifact_open(&art, a4, len4, "w4"), 0);
        if (art) {
            size_t wb = 0;
            for (int i = 0; i < q4->n_layers; i++)
                if (q4->layers[i].w)
                    wb += (size_t)q4->layers[i].out_c * ((q4->layers[i].K + 1) / 2);
            CHECK_EQ_INT(art->info.weight_bytes, wb);
            CHECK_EQ_INT(cnd_artifact_selftest(art, "w4"), 0);
            for (int i = 0; i < q4->n_layers; i++)
                for (int j = 0; q4->layers[i].w && j < q4->layers[i].out_c * q4->layers[i].K; j++)
                    CHECK(q4->layers[i].w[j] >= -7 && q4->layers[i].w[j] <= 7);
        }
        cnd_artifact_destroy(&art);
        free(a4);
    }
    cnd_qmodel_destroy(&q4);
    s_graph();
    free(a);
    cnd_qmodel_destroy(&q);
    cnd_model_destroy(&fm);
    return check_result("test_artifact");
}
