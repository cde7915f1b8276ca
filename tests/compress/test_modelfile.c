/* test_modelfile.c: .cnd round trip and refusal of corrupted, truncated and wrong-version
 * files, each with its own message. */
#include "bytes.h"
#include "check.h"
#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "modelfile.h"

#include <string.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/cnd_test_modelfile_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char p[256];
    snprintf(p, sizeof p, "%s/m.cnd", dir);
    cnd_model_t *m = NULL, *r = NULL;
    CHECK(cnd_model_new(&m, "conv2d(4,3,pad=1) batchnorm relu maxpool(2) flatten dense(5)",
                        (cnd_shape_t){2, 6, 6}, 9) == 0);
    if (!m) return 1;
    for (size_t i = 0; i < m->num_state; i++) m->state[i] = 0.25f * (float)i;
    m->norm_mean[0] = 3.0f;
    m->norm_std[1] = 2.0f;
    CHECK(cnd_model_meta_set(m, "dataset", "unit") == 0);
    CHECK(cnd_model_meta_set(m, "dataset", "unit-test") == 0);
    CHECK(cnd_model_meta_set(m, "accuracy", "0.5") == 0);
    CHECK_EQ_INT(m->n_meta, 2);
    size_t plan_np = 0, plan_ns = 0; /* the plan gives the counts without building */
    CHECK(cnd_model_plan(m->spec, m->in, &plan_np, &plan_ns) == 0);
    CHECK(plan_np == m->num_params && plan_ns == m->num_state && plan_ns > 0);
    CHECK_EQ_INT(cnd_model_plan("dense(0)", m->in, &plan_np, &plan_ns), CND_EINVAL);
    CHECK(cnd_model_save(m, p) == 0);
    CHECK(cnd_model_load(&r, p) == 0);
    CHECK(r != NULL);
    if (r) {
        CHECK(!strcmp(r->spec, m->spec));
        CHECK_EQ_INT(r->num_params, m->num_params);
        CHECK(!memcmp(r->params, m->params, m->num_params * sizeof(float)));
        CHECK(!memcmp(r->state, m->state, m->num_state * sizeof(float)));
        CHECK(r->norm_mean[0] == 3.0f && r->norm_std[1] == 2.0f && r->norm_std[0] == 1.0f);
        CHECK(!strcmp(cnd_model_meta_get(r, "dataset"), "unit-test"));
        CHECK(cnd_model_meta_get(r, "missing") == NULL);
    }
    cnd_model_destroy(&r);
    /* Clone is a deep copy. */
    CHECK(cnd_model_clone(&r, m) == 0);
    CHECK(r && r->params != m->params && !memcmp(r->params, m->params, m->num_params * 4));
    cnd_model_destroy(&r);

    uint8_t *good;
    size_t len;
    CHECK(cnd_model_serialize(m, &good, &len) == 0);
    uint8_t *bad = malloc(len);
    /* A flipped bit anywhere is refused. Step through the file. */
    int refused = 0, tried = 0;
    for (size_t off = 0; off < len; off += 1 + len / 200) {
        memcpy(bad, good, len);
        bad[off] ^= 0x10;
        tried++;
        if (cnd_model_deserialize(&r, bad, len, "x") < 0) refused++;
        cnd_model_destroy(&r);
    }
    CHECK_EQ_INT(refused, tried);
    memcpy(bad, good, len);
    bad[len / 2] ^= 1;
    CHECK_EQ_INT(cnd_model_deserialize(&r, bad, len, "f.cnd"), CND_ECORRUPT);
    CHECK(strstr(cnd_err_detail(), "f.cnd: digest mismatch") != NULL);
    /* Truncation at every length is refused. */
    refused = tried = 0;
    for (size_t n = 0; n < len; n += 1 + len / 300) {
        tried++;
        if (cnd_model_deserialize(&r, good, n, "x") < 0) refused++;
        cnd_model_destroy(&r);
    }
    CHECK_EQ_INT(refused, tried);
    /* Wrong magic, unknown version. */
    memcpy(bad, good, len);
    bad[0] = 'X';
    CHECK_EQ_INT(cnd_model_deserialize(&r, bad, len, "x"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "not a Condenser model") != NULL);
    memcpy(bad, good, len);
    bad[4] = 3;
    CHECK_EQ_INT(cnd_model_deserialize(&r, bad, len, "x"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "version 3 is not supported") != NULL);
    /* A consistent file (valid digest) whose tensor shapes disagree with the spec. */
    memcpy(bad, good, len);
    uint8_t *sp = memmem(bad, len, "conv2d(4,", 9);
    CHECK(sp != NULL);
    if (sp) {
        sp[7] = '3';
        cnd_sha256(bad + len - 32, bad, len - 32);
        CHECK_EQ_INT(cnd_model_deserialize(&r, bad, len, "x"), CND_EFORMAT);
        CHECK(strstr(cnd_err_detail(), "tensor 0") != NULL);
    }
    /* Trailing bytes after the last tensor (re-digested). */
    uint8_t *longer = malloc(len + 4);
    memcpy(longer, good, len - 32);
    memset(longer + len - 32, 0, 4);
    cnd_sha256(longer + len - 28, longer, len - 28);
    CHECK_EQ_INT(cnd_model_deserialize(&r, longer, len + 4, "x"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "unexpected bytes") != NULL);
    /* A tiny file whose architecture declares millions of parameters is refused before
     * anything is allocated for them, naming the sizes (it used to allocate and initialise
     * the whole model first: 1 GB for a 106-byte file). */
    cnd_buf_t tiny;
    cnd_buf_init(&tiny);
    cnd_buf_put(&tiny, "CNDM", 4);
    cnd_buf_u32(&tiny, 1);
    cnd_buf_u32(&tiny, 0);
    cnd_buf_str(&tiny, "flatten dense(4096) dense(2048)");
    cnd_buf_u32(&tiny, 1);
    cnd_buf_u32(&tiny, 1);
    cnd_buf_u32(&tiny, 1);
    cnd_buf_u32(&tiny, 2048);
    cnd_buf_f32(&tiny, 0.0f);
    cnd_buf_f32(&tiny, 1.0f);
    cnd_buf_u32(&tiny, 0); /* metadata */
    cnd_buf_u32(&tiny, 4); /* tensors, none of them present */
    uint8_t dg[32];
    cnd_sha256(dg, tiny.data, tiny.len);
    cnd_buf_put(&tiny, dg, sizeof dg);
    CHECK(!tiny.err);
    CHECK_EQ_INT(cnd_model_deserialize(&r, tiny.data, tiny.len, "tiny.cnd"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "tiny.cnd: the architecture has 8398848 parameters") != NULL);
    CHECK(r == NULL);
    cnd_buf_free(&tiny);
    /* Loading a file that is not there, or too short. */
    CHECK_EQ_INT(cnd_model_load(&r, "/nonexistent.cnd"), CND_EIO);
    CHECK(cnd_file_write_atomic(p, "CNDM", 4, 0644) == 0);
    CHECK(cnd_model_load(&r, p) == CND_EFORMAT);
    CHECK(r == NULL);
    free(good);
    free(bad);
    free(longer);
    cnd_model_destroy(&m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return check_result("test_modelfile");
}
