/*
 * fuzz_modelfile.c: the `.cnd` model file loader (compress/modelfile.c).
 *
 * The input is a model file WITHOUT its trailing SHA-256: the target appends the digest of the
 * input and loads that, so mutations reach the parser behind the digest check; it also loads
 * the input as it is, which exercises the digest check itself. The seeds in
 * corpus/modelfile/ are files `condenser train` writes, minus their last 32 bytes.
 *
 * Properties checked beyond "no crash, no leak, no undefined behaviour":
 *   - loading allocates no more than the file can fill (ASan's allocation limit, -rss_limit_mb);
 *   - a model that loads serialises, and the result loads again to the same bytes;
 *   - a model that loads runs forward and backward (fuzz_model.h), as `train` / `eval` would.
 */
#include "digest.h"
#include "fuzz.h"
#include "fuzz_model.h"
#include "modelfile.h"

static void s_roundtrip(const cnd_model_t *m)
{
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    cnd_model_t *m2 = NULL;
    if (cnd_model_serialize(m, &a, &na) != 0) abort();
    if (cnd_model_deserialize(&m2, a, na, "re-serialised") != 0) abort();
    if (cnd_model_serialize(m2, &b, &nb) != 0) abort();
    if (na != nb || memcmp(a, b, na) != 0) abort();
    cnd_model_destroy(&m2);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnd_model_t *m = NULL;
    if (cnd_model_deserialize(&m, data, size, "input") == 0) cnd_model_destroy(&m);
    fuzz_touch_error();

    uint8_t *buf = malloc(size + CND_SHA256_BYTES);
    if (!buf) abort();
    memcpy(buf, data, size);
    cnd_sha256(buf + size, data, size);
    if (cnd_model_deserialize(&m, buf, size + CND_SHA256_BYTES, "input+digest") == 0) {
        fuzz_note("model loaded");
        s_roundtrip(m);
        fuzz_model_run(m);
        cnd_model_destroy(&m);
    }
    fuzz_touch_error();
    free(buf);
    return 0;
}
