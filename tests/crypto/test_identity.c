/*
 * test_identity.c: identities (RFC 8032 known answers, key files and their permission rule, the
 * X25519 form), Z85 (RFC 32 vector and libzmq's encoder), domain-separated signatures
 * (crypto/sign.h), and `condenser keygen` end to end.
 */
#include "check.h"
#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "identity.h"
#include "sign.h"
#include "z85.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void s_unhex(uint8_t *out, size_t n, const char *hex)
{
    CHECK(cnd_unhex(out, n, hex) == 0);
}

/* RFC 8032 section 7.1, TEST 1 and TEST 2. */
static void test_rfc8032(void)
{
    uint8_t seed[32], pk[32], sig[64], want[64];
    s_unhex(seed, 32, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    s_unhex(pk, 32, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    cnd_identity_t *id = NULL;
    CHECK(cnd_identity_from_seed(&id, seed) == 0);
    CHECK(memcmp(cnd_identity_pk(id), pk, 32) == 0);
    cnd_identity_sign(sig, id, "", 0);
    s_unhex(want, 64,
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
            "701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    CHECK(memcmp(sig, want, 64) == 0);
    cnd_identity_destroy(&id);
    CHECK(id == NULL);
    cnd_identity_destroy(&id); /* idempotent */

    s_unhex(seed, 32, "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
    s_unhex(pk, 32, "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
    CHECK(cnd_identity_from_seed(&id, seed) == 0);
    CHECK(memcmp(cnd_identity_pk(id), pk, 32) == 0);
    uint8_t msg = 0x72;
    cnd_identity_sign(sig, id, &msg, 1);
    s_unhex(want, 64,
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f36"
            "13d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
    CHECK(memcmp(sig, want, 64) == 0);
    cnd_identity_destroy(&id);
}

static void test_curve_form(void)
{
    cnd_identity_t *id = NULL;
    CHECK(cnd_identity_generate(&id) == 0);
    uint8_t cpk[32], csk[32], derived[32], cpk2[32];
    CHECK(cnd_identity_curve_keypair(cpk, csk, id) == 0);
    /* The X25519 secret must produce the X25519 public key, and the public conversion agrees. */
    CHECK(crypto_scalarmult_base(derived, csk) == 0);
    CHECK(memcmp(derived, cpk, 32) == 0);
    CHECK(cnd_pubkey_to_curve(cpk2, cnd_identity_pk(id)) == 0);
    CHECK(memcmp(cpk2, cpk, 32) == 0);
    /* A shared secret computed from both sides matches (what CurveZMQ relies on). */
    cnd_identity_t *peer = NULL;
    CHECK(cnd_identity_generate(&peer) == 0);
    uint8_t ppk[32], psk[32], s1[32], s2[32];
    CHECK(cnd_identity_curve_keypair(ppk, psk, peer) == 0);
    CHECK(crypto_scalarmult(s1, csk, ppk) == 0);
    CHECK(crypto_scalarmult(s2, psk, cpk) == 0);
    CHECK(memcmp(s1, s2, 32) == 0);
    /* Not every 32-byte string is an Ed25519 point. */
    uint8_t bad[32];
    memset(bad, 0xff, sizeof bad);
    CHECK(cnd_pubkey_to_curve(cpk2, bad) == CND_ECRYPTO);
    /* Fingerprint = SHA-256 of the raw key. */
    char fp[CND_FINGERPRINT_HEX], hex[65];
    uint8_t d[32];
    cnd_sha256(d, cnd_identity_pk(id), 32);
    CHECK(strcmp(cnd_pubkey_fingerprint(fp, cnd_identity_pk(id)), cnd_hex(hex, d, 32)) == 0);
    sodium_memzero(csk, 32);
    sodium_memzero(psk, 32);
    cnd_identity_destroy(&id);
    cnd_identity_destroy(&peer);
}

static void test_z85(void)
{
    const uint8_t v[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    char txt[11];
    CHECK(cnd_z85_encode(txt, v, 8) == 0);
    CHECK(strcmp(txt, "HelloWorld") == 0);
    uint8_t back[8];
    CHECK(cnd_z85_decode(back, 8, "HelloWorld") == 0);
    CHECK(memcmp(back, v, 8) == 0);
    CHECK(cnd_z85_encode(txt, v, 7) == CND_EINVAL);
    CHECK(cnd_z85_decode(back, 8, "Hello~orld") == CND_EINVAL);
    CHECK(cnd_z85_decode(back, 8, "HelloWorl") == CND_EINVAL);
    CHECK(cnd_z85_decode(back, 4, "#####") == CND_EINVAL); /* 85^5-1 > 2^32-1 */
    /* Agreement with libzmq on random keys, both directions. */
    for (int i = 0; i < 50; i++) {
        uint8_t key[32], key2[32];
        char ours[41], theirs[41];
        randombytes_buf(key, sizeof key);
        CHECK(cnd_z85_encode(ours, key, 32) == 0);
        CHECK(zmq_z85_encode(theirs, key, 32) != NULL);
        CHECK(strcmp(ours, theirs) == 0);
        CHECK(cnd_z85_decode(key2, 32, theirs) == 0);
        CHECK(memcmp(key, key2, 32) == 0);
    }
}

static char s_dir[256];

static void test_files(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/cnd_test_identity_XXXXXX");
    CHECK(mkdtemp(s_dir) != NULL);
    char sub[300], key[320], pub[320];
    snprintf(sub, sizeof sub, "%s/node", s_dir);
    snprintf(key, sizeof key, "%s/identity.key", sub);
    snprintf(pub, sizeof pub, "%s/identity.pub", sub);

    cnd_identity_t *id = NULL, *back = NULL;
    CHECK(cnd_identity_generate(&id) == 0);
    CHECK(cnd_identity_save(id, sub, 0) == 0);
    struct stat st;
    CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(pub, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(cnd_identity_save(id, sub, 0) == CND_EEXIST);
    CHECK(cnd_identity_load(&back, key) == 0);
    CHECK(back && memcmp(cnd_identity_pk(back), cnd_identity_pk(id), 32) == 0);
    cnd_identity_destroy(&back);
    uint8_t pk[32];
    CHECK(cnd_pubkey_read(pk, pub) == 0);
    CHECK(memcmp(pk, cnd_identity_pk(id), 32) == 0);

    /* Group- or other-accessible secret keys are refused, naming the fix. */
    CHECK(chmod(key, 0640) == 0);
    CHECK(cnd_identity_load(&back, key) == CND_EPERM);
    CHECK(back == NULL);
    CHECK(strstr(cnd_err_detail(), "chmod 600") != NULL);
    CHECK(chmod(key, 0602) == 0);
    CHECK(cnd_identity_load(&back, key) == CND_EPERM);
    CHECK(chmod(key, 0600) == 0);

    /* Damage: a flipped public-key byte, a bad magic, a truncated file. */
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK(cnd_file_read(key, 1024, &data, &len) == 0 && len == 72);
    data[71] ^= 1;
    CHECK(cnd_file_write_atomic(key, data, len, 0600) == 0);
    CHECK(cnd_identity_load(&back, key) == CND_ECORRUPT);
    data[71] ^= 1;
    data[0] ^= 1;
    CHECK(cnd_file_write_atomic(key, data, len, 0600) == 0);
    CHECK(cnd_identity_load(&back, key) == CND_EFORMAT);
    data[0] ^= 1;
    CHECK(cnd_file_write_atomic(key, data, len - 1, 0600) == 0);
    CHECK(cnd_identity_load(&back, key) == CND_EFORMAT);
    CHECK(cnd_identity_load(&back, "/nonexistent/identity.key") == CND_EIO);
    sodium_memzero(data, len);
    free(data);

    /* Public key text: accepts the file form and bare hex, rejects junk. */
    char hex[65], line[100];
    cnd_hex(hex, cnd_identity_pk(id), 32);
    snprintf(line, sizeof line, "condenser-ed25519 %s\n", hex);
    CHECK(cnd_pubkey_parse(pk, line, "t") == 0 && memcmp(pk, cnd_identity_pk(id), 32) == 0);
    CHECK(cnd_pubkey_parse(pk, hex, "t") == 0);
    line[20] = 'z';
    CHECK(cnd_pubkey_parse(pk, line, "t") == CND_EFORMAT);
    snprintf(line, sizeof line, "condenser-ed25519 %s extra", hex);
    CHECK(cnd_pubkey_parse(pk, line, "t") == CND_EFORMAT);
    CHECK(cnd_pubkey_parse(pk, "condenser-ed25519 abcd", "t") == CND_EFORMAT);
    cnd_identity_destroy(&id);
}

static void test_sign(void)
{
    cnd_identity_t *a = NULL, *b = NULL;
    CHECK(cnd_identity_generate(&a) == 0);
    CHECK(cnd_identity_generate(&b) == 0);
    uint8_t msg[100], sig[64];
    for (int i = 0; i < 100; i++) msg[i] = (uint8_t)(i * 7);
    CHECK(cnd_sign(sig, a, "manifest", msg, sizeof msg) == 0);
    CHECK(cnd_verify(sig, cnd_identity_pk(a), "manifest", msg, sizeof msg) == 0);
    CHECK(cnd_verify(sig, cnd_identity_pk(b), "manifest", msg, sizeof msg) == CND_ECRYPTO);
    CHECK(cnd_verify(sig, cnd_identity_pk(a), "audit-checkpoint", msg, sizeof msg) == CND_ECRYPTO);
    for (size_t i = 0; i < sizeof msg; i += 9) {
        msg[i] ^= 0x10;
        CHECK(cnd_verify(sig, cnd_identity_pk(a), "manifest", msg, sizeof msg) == CND_ECRYPTO);
        msg[i] ^= 0x10;
    }
    sig[5] ^= 1;
    CHECK(cnd_verify(sig, cnd_identity_pk(a), "manifest", msg, sizeof msg) == CND_ECRYPTO);
    sig[5] ^= 1;
    /* The digest form is the same signature. */
    uint8_t d[32], sig2[64];
    cnd_sha256(d, msg, sizeof msg);
    CHECK(cnd_sign_digest(sig2, a, "manifest", d) == 0);
    CHECK(memcmp(sig, sig2, 64) == 0);
    CHECK(cnd_verify_digest(sig, cnd_identity_pk(a), "manifest", d) == 0);
    /* Known answer: the wrapped message is prefix | len | context | SHA-256(msg). */
    uint8_t wrapped[22 + 1 + 8 + 32];
    memcpy(wrapped, "condenser-signature-v1", 22);
    wrapped[22] = 8;
    memcpy(wrapped + 23, "manifest", 8);
    memcpy(wrapped + 31, d, 32);
    CHECK(crypto_sign_verify_detached(sig, wrapped, sizeof wrapped, cnd_identity_pk(a)) == 0);
    CHECK(cnd_sign(sig, a, "", msg, 1) == CND_EINVAL);
    CHECK(cnd_sign(sig, a, NULL, msg, 1) == CND_EINVAL);
    cnd_identity_destroy(&a);
    cnd_identity_destroy(&b);
}

static int s_run(char *out, size_t n, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    return pclose(p);
}

static void test_keygen_command(void)
{
    const char *bin = getenv("CND_BIN");
    if (!bin) {
        fprintf(stderr, "CND_BIN not set; skipping the command test\n");
        return;
    }
    char cmd[1024], out[4096], dir[300], pub[320];
    snprintf(dir, sizeof dir, "%s/kg", s_dir);
    snprintf(cmd, sizeof cmd, "%s keygen --out %s 2>&1", bin, dir);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    CHECK(strstr(out, "fingerprint  SHA256:") != NULL);
    CHECK(strstr(out, "curve (z85)") != NULL);
    /* The printed key is the one in the file, and the printed Z85 is its curve form. */
    snprintf(pub, sizeof pub, "%s/identity.pub", dir);
    uint8_t pk[32], cpk[32];
    char hex[65], z[41], want[200];
    CHECK(cnd_pubkey_read(pk, pub) == 0);
    snprintf(want, sizeof want, "ed25519      %s", cnd_hex(hex, pk, 32));
    CHECK(strstr(out, want) != NULL);
    CHECK(cnd_pubkey_to_curve(cpk, pk) == 0);
    CHECK(cnd_z85_encode(z, cpk, 32) == 0);
    snprintf(want, sizeof want, "curve (z85)  %s", z);
    CHECK(strstr(out, want) != NULL);
    /* A second run refuses to replace it; --show prints the same key. */
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "already exists") != NULL);
    snprintf(cmd, sizeof cmd, "%s keygen --out %s --show 2>&1", bin, dir);
    CHECK(s_run(out, sizeof out, cmd) == 0);
    snprintf(want, sizeof want, "ed25519      %s", hex);
    CHECK(strstr(out, want) != NULL);
    snprintf(cmd, sizeof cmd, "%s keygen 2>&1", bin);
    CHECK(s_run(out, sizeof out, cmd) != 0);
    CHECK(strstr(out, "--out") != NULL);
}

int main(void)
{
    CHECK(cnd_crypto_init() == 0);
    test_rfc8032();
    test_curve_form();
    test_z85();
    test_files();
    test_sign();
    test_keygen_command();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    return check_result("test_identity");
}
