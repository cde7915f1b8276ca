/*
 * fuzz_manifest.c: signed artifact manifests (crypto/manifest.c), the first thing an edge
 * device parses from the network before it downloads a model.
 *
 * Each input is tried three ways: as a canonical body (cnd_manifest_decode), as a signed
 * envelope (cnd_manifest_verify, trusting the fixed test key below), and, when it looks like an
 * envelope, its inner body is decoded on its own. A body that decodes must re-encode to exactly
 * the same bytes (manifest.h: one manifest, one byte string), and once signed with the test key
 * it must verify under a permissive policy and be refused, with the documented reason, under
 * strict ones. Seeds in corpus/manifest/ are envelopes and bodies made by cnd_manifest_sign
 * with the test key (seed bytes all 0x4d, see mkcorpus.c).
 */
#include "fuzz.h"
#include "manifest.h"

#define S_ENV_HDR 12 /* "CNDSMF01" u32 body_len */

static cnd_identity_t *s_id;
static uint8_t s_pk[32];

static void s_init(void)
{
    if (s_id) return;
    uint8_t seed[32];
    memset(seed, 0x4d, sizeof seed);
    if (cnd_crypto_init() != 0 || cnd_identity_from_seed(&s_id, seed) != 0) abort();
    memcpy(s_pk, cnd_identity_pk(s_id), 32);
}

static int s_verify(cnd_manifest_fail_t *why, const uint8_t *env, size_t n, int64_t now,
                    uint64_t min_seq, uint64_t cur_ver, const char *cls)
{
    cnd_manifest_policy_t pol = {(const uint8_t(*)[32])s_pk, 1, now, min_seq, cur_ver, cls};
    cnd_manifest_t m;
    int rc = cnd_manifest_verify(&m, why, env, n, &pol);
    fuzz_touch_error();
    return rc;
}

/* A body that decoded: re-encode, sign, verify under several policies. */
static void s_body(const cnd_manifest_t *m, const uint8_t *body, size_t len)
{
    cnd_buf_t b, env;
    cnd_buf_init(&b);
    cnd_buf_init(&env);
    fuzz_note("manifest body decoded");
    if (cnd_manifest_encode(&b, m) != 0) abort(); /* decoded, so encodable */
    if (b.len != len || memcmp(b.data, body, len) != 0) abort();
    if (cnd_manifest_sign(&env, m, s_id) != 0) abort();
    cnd_manifest_fail_t why;
    int64_t before = m->expires == INT64_MIN ? INT64_MIN : m->expires - 1;
    int rc = s_verify(&why, env.data, env.len, before, 0, 0, NULL);
    if ((rc == 0) != (m->expires != INT64_MIN) || (rc && why != CND_MANIFEST_EXPIRED)) abort();
    if (s_verify(&why, env.data, env.len, m->expires, 0, 0, NULL) == 0) abort(); /* expired */
    if (m->sequence < UINT64_MAX &&
        (s_verify(&why, env.data, env.len, before, m->sequence + 1, 0, NULL) == 0 && rc == 0))
        abort(); /* replayed */
    fuzz_sink += s_verify(&why, env.data, env.len, before, 0, m->version + 1, "edge-a");
    env.data[env.len - 1] ^= 1; /* one changed signature bit */
    if (s_verify(&why, env.data, env.len, before, 0, 0, NULL) == 0) abort();
    uint8_t blob[64];
    memset(blob, 0xab, sizeof blob);
    fuzz_sink += cnd_manifest_check_artifact(m, blob, sizeof blob);
    fuzz_touch_error();
    cnd_buf_free(&b);
    cnd_buf_free(&env);
}

static void s_decode(const uint8_t *p, size_t n)
{
    cnd_manifest_t m;
    if (cnd_manifest_decode(&m, p, n) == 0) s_body(&m, p, n);
    fuzz_touch_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_init();
    s_decode(data, size);
    cnd_manifest_fail_t why;
    fuzz_sink += s_verify(&why, data, size, 1000, 0, 0, "edge-a");
    if (size >= S_ENV_HDR && memcmp(data, "CNDSMF01", 8) == 0) {
        size_t blen = cnd_le32(data + 8);
        if (blen <= size - S_ENV_HDR) s_decode(data + S_ENV_HDR, blen);
    }
    return 0;
}
