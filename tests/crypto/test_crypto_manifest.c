/*
 * test_crypto_manifest.c: signed artifact metadata (crypto/manifest.h): the canonical encoding
 * byte for byte, a round trip, each verification failure with its own reason, every single-byte
 * change and every truncation of a signed manifest refused, the artifact check, and the
 * envelope layout (CND_MANIFEST_ENV_*, cnd_manifest_body) against the bytes the signer wrote.
 */
#include "check.h"
#include "digest.h"
#include "manifest.h"

#include <sodium.h>
#include <string.h>

static cnd_manifest_t s_sample(void)
{
    cnd_manifest_t m;
    memset(&m, 0, sizeof m);
    strcpy(m.name, "fmnist-cnn");
    strcpy(m.target, "monitor-m4,gateway");
    m.sequence = 7;
    m.version = 3;
    m.length = 5;
    cnd_sha256(m.digest, "hello", 5);
    m.expires = 2000000000;
    return m;
}

static void test_encoding(void)
{
    cnd_manifest_t m = s_sample();
    cnd_buf_t b;
    cnd_buf_init(&b);
    CHECK(cnd_manifest_encode(&b, &m) == 0);
    /* Expected layout written out independently of the encoder. */
    uint8_t want[200];
    size_t n = 0;
    memcpy(want + n, "CNDMAN01", 8), n += 8;
    want[n++] = 10, want[n++] = 0, want[n++] = 0, want[n++] = 0;
    memcpy(want + n, "fmnist-cnn", 10), n += 10;
    want[n++] = 18, want[n++] = 0, want[n++] = 0, want[n++] = 0;
    memcpy(want + n, "monitor-m4,gateway", 18), n += 18;
    uint64_t u[3] = {7, 3, 5};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++) want[n++] = (uint8_t)(u[k] >> (8 * i));
    memcpy(want + n, m.digest, 32), n += 32;
    for (int i = 0; i < 8; i++) want[n++] = (uint8_t)((uint64_t)2000000000 >> (8 * i));
    want[n++] = 0, want[n++] = 0, want[n++] = 0, want[n++] = 0; /* flags */
    want[n++] = 0;                                              /* has_base */
    CHECK_EQ_INT(b.len, n);
    CHECK(b.len == n && memcmp(b.data, want, n) == 0);
    /* Round trip, and the decoder refuses what the encoder never writes. */
    cnd_manifest_t back;
    CHECK(cnd_manifest_decode(&back, b.data, b.len) == 0);
    CHECK(memcmp(&back, &m, sizeof m) == 0);
    b.data[b.len - 1] = 2; /* has_base = 2 */
    CHECK(cnd_manifest_decode(&back, b.data, b.len) == CND_EFORMAT);
    b.data[b.len - 1] = 0;
    cnd_buf_u8(&b, 0); /* trailing byte */
    CHECK(cnd_manifest_decode(&back, b.data, b.len) == CND_EFORMAT);
    b.len--;
    b.data[12] = 0x01; /* name with a control byte */
    CHECK(cnd_manifest_decode(&back, b.data, b.len) == CND_EFORMAT);
    cnd_buf_free(&b);

    /* A delta carries its base digest. */
    m.has_base = 1;
    memset(m.base_digest, 0xab, 32);
    m.flags = CND_MANIFEST_ROLLBACK;
    cnd_buf_init(&b);
    CHECK(cnd_manifest_encode(&b, &m) == 0);
    CHECK_EQ_INT(b.len, n + 32);
    CHECK(cnd_manifest_decode(&back, b.data, b.len) == 0);
    CHECK(memcmp(&back, &m, sizeof m) == 0);
    cnd_buf_free(&b);

    /* Encoder limits. */
    m.name[0] = 0;
    cnd_buf_init(&b);
    CHECK(cnd_manifest_encode(&b, &m) == CND_EINVAL);
    m = s_sample();
    m.flags = 0x80;
    CHECK(cnd_manifest_encode(&b, &m) == CND_EINVAL);
    cnd_buf_free(&b);
}

static void test_verify(void)
{
    cnd_identity_t *fed = NULL, *other = NULL;
    CHECK(cnd_identity_generate(&fed) == 0);
    CHECK(cnd_identity_generate(&other) == 0);
    uint8_t keys[2][32];
    memcpy(keys[0], cnd_identity_pk(other), 32); /* the list may hold several keys */
    memcpy(keys[1], cnd_identity_pk(fed), 32);
    cnd_manifest_policy_t pol = {keys, 2, 1900000000, 7, 3, "gateway"};
    cnd_manifest_t m = s_sample(), got;
    cnd_manifest_fail_t why;
    cnd_buf_t sm;
    cnd_buf_init(&sm);
    CHECK(cnd_manifest_sign(&sm, &m, fed) == 0);
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &pol) == 0);
    CHECK(why == CND_MANIFEST_OK);
    CHECK(memcmp(&got, &m, sizeof m) == 0);
    CHECK(cnd_manifest_check_artifact(&got, "hello", 5) == 0);
    CHECK(cnd_manifest_check_artifact(&got, "hellO", 5) == CND_ECORRUPT);
    CHECK(strstr(cnd_err_detail(), "SHA-256") != NULL);
    CHECK(cnd_manifest_check_artifact(&got, "hello!", 6) == CND_ECORRUPT);
    CHECK(strstr(cnd_err_detail(), "6 bytes") != NULL);

    /* The signer as the envelope carries it (framing checked, not the signature): the key that
     * signed, whatever the list; a cut or over-long envelope is refused. */
    uint8_t signer[32];
    CHECK(cnd_manifest_signer(signer, sm.data, sm.len) == 0);
    CHECK(memcmp(signer, cnd_identity_pk(fed), 32) == 0);
    CHECK(cnd_manifest_signer(signer, sm.data, sm.len - 1) == CND_EFORMAT);
    CHECK(cnd_manifest_signer(signer, sm.data, 11) == CND_EFORMAT);
    sm.data[0] ^= 1;
    CHECK(cnd_manifest_signer(signer, sm.data, sm.len) == CND_EFORMAT);
    sm.data[0] ^= 1;

    /* Wrong key: only `other` trusted. */
    cnd_manifest_policy_t p2 = pol;
    p2.n_keys = 1;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == CND_ECRYPTO);
    CHECK(why == CND_MANIFEST_UNTRUSTED_KEY);
    CHECK(got.name[0] == 0);
    /* Expired. */
    p2 = pol;
    p2.now = m.expires;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == CND_ETIMEOUT);
    CHECK(why == CND_MANIFEST_EXPIRED);
    /* Older sequence (a replayed manifest); equal is accepted. */
    p2 = pol;
    p2.min_sequence = 8;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == CND_ESTATE);
    CHECK(why == CND_MANIFEST_OLDER);
    /* Lower version without rollback flag, then with it. */
    p2 = pol;
    p2.current_version = 4;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == CND_EPERM);
    CHECK(why == CND_MANIFEST_DOWNGRADE);
    cnd_manifest_t rb = m;
    rb.flags = CND_MANIFEST_ROLLBACK;
    rb.sequence = 8;
    cnd_buf_t sm2;
    cnd_buf_init(&sm2);
    CHECK(cnd_manifest_sign(&sm2, &rb, fed) == 0);
    p2.min_sequence = 8;
    CHECK(cnd_manifest_verify(&got, &why, sm2.data, sm2.len, &p2) == 0);
    CHECK(got.flags == CND_MANIFEST_ROLLBACK);
    cnd_buf_free(&sm2);
    /* Device class. */
    p2 = pol;
    p2.device_class = "monitor";
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == CND_EPERM);
    CHECK(why == CND_MANIFEST_WRONG_TARGET);
    p2.device_class = "monitor-m4";
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == 0);
    p2.device_class = NULL;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &p2) == 0);

    /* Every single-byte change is refused, and never as success. */
    int n_bad_sig = 0, n_untrusted = 0, n_malformed = 0, n_ok = 0;
    for (size_t i = 0; i < sm.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            sm.data[i] ^= (uint8_t)(1u << bit);
            int rc = cnd_manifest_verify(&got, &why, sm.data, sm.len, &pol);
            sm.data[i] ^= (uint8_t)(1u << bit);
            if (rc == 0) n_ok++;
            if (why == CND_MANIFEST_BAD_SIGNATURE) n_bad_sig++;
            if (why == CND_MANIFEST_UNTRUSTED_KEY) n_untrusted++;
            if (why == CND_MANIFEST_MALFORMED) n_malformed++;
        }
    }
    CHECK_EQ_INT(n_ok, 0);
    CHECK(n_bad_sig > 0 && n_untrusted > 0 && n_malformed > 0);
    /* A changed field byte with the signature intact is a bad signature, not anything else. */
    size_t version_off = 8 + 4 + 4 + 10 + 4 + 18 + 8;
    sm.data[version_off] ^= 1;
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &pol) == CND_ECRYPTO);
    CHECK(why == CND_MANIFEST_BAD_SIGNATURE);
    sm.data[version_off] ^= 1;
    /* Every truncation and an extension are malformed. */
    for (size_t l = 0; l < sm.len; l++) {
        CHECK(cnd_manifest_verify(&got, &why, sm.data, l, &pol) != 0);
        CHECK(why == CND_MANIFEST_MALFORMED);
    }
    cnd_buf_u8(&sm, 0);
    CHECK(cnd_manifest_verify(&got, &why, sm.data, sm.len, &pol) == CND_EFORMAT);
    cnd_buf_free(&sm);
    cnd_identity_destroy(&fed);
    cnd_identity_destroy(&other);
}

/* The envelope's layout constants and cnd_manifest_body against what cnd_manifest_sign wrote: the
 * body is exactly the canonical encoding, framed by the named head and tail; anything shorter,
 * longer or with another magic is refused with the reason a validator reports. */
static void test_envelope(void)
{
    cnd_identity_t *fed = NULL;
    CHECK(cnd_identity_generate(&fed) == 0);
    cnd_manifest_t m = s_sample(), back;
    cnd_buf_t body, sm;
    cnd_buf_init(&body);
    cnd_buf_init(&sm);
    CHECK(cnd_manifest_encode(&body, &m) == 0);
    CHECK(cnd_manifest_sign(&sm, &m, fed) == 0);
    CHECK_EQ_INT(sm.len, CND_MANIFEST_ENV_HEAD + body.len + CND_MANIFEST_ENV_TAIL);
    CHECK(memcmp(sm.data, CND_MANIFEST_ENV_MAGIC, 8) == 0);
    CHECK(memcmp(sm.data + sm.len - CND_MANIFEST_ENV_TAIL, cnd_identity_pk(fed), 32) == 0);
    const uint8_t *b = NULL;
    size_t bl = 0;
    CHECK(cnd_manifest_body(&b, &bl, sm.data, sm.len) == 0);
    CHECK(b == sm.data + CND_MANIFEST_ENV_HEAD && bl == body.len);
    CHECK(b && memcmp(b, body.data, body.len) == 0);
    CHECK(cnd_manifest_decode_signed(&back, sm.data, sm.len) == 0);
    CHECK(memcmp(&back, &m, sizeof m) == 0);
    for (size_t l = 0; l < sm.len; l++) {
        CHECK(cnd_manifest_body(&b, &bl, sm.data, l) == CND_EFORMAT);
        CHECK(b == NULL && bl == 0);
        CHECK(cnd_manifest_decode_signed(&back, sm.data, l) == CND_EFORMAT);
        CHECK(back.name[0] == 0);
    }
    CHECK(strstr(cnd_err_detail(), "body length") == cnd_err_detail());
    CHECK(cnd_manifest_body(&b, &bl, sm.data, 20) == CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "not a signed manifest") == cnd_err_detail());
    sm.data[0] ^= 1;
    CHECK(cnd_manifest_body(&b, &bl, sm.data, sm.len) == CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "not a signed manifest") == cnd_err_detail());
    sm.data[0] ^= 1;
    cnd_buf_u8(&sm, 0);
    CHECK(cnd_manifest_body(&b, &bl, sm.data, sm.len) == CND_EFORMAT);
    cnd_buf_free(&sm);
    cnd_buf_free(&body);
    cnd_identity_destroy(&fed);
}

int main(void)
{
    CHECK(cnd_crypto_init() == 0);
    test_encoding();
    test_verify();
    test_envelope();
    return check_result("test_crypto_manifest");
}
