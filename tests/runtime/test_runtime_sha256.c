/*
 * test_runtime_sha256.c: the runtime's portable SHA-256 against the FIPS 180-2 example
 * vectors, and against OpenSSL (common/digest.h) on random inputs of every length split at
 * random points (the incremental path).
 */
#include "check.h"
#include "cnd_rt_sha256.h"
#include "digest.h"
#include "rng.h"

#include <string.h>

static int s_eq_hex(const uint8_t d[32], const char *hex)
{
    char h[65];
    cnd_hex(h, d, 32);
    if (strcmp(h, hex)) fprintf(stderr, "got %s\nwant %s\n", h, hex);
    return !strcmp(h, hex);
}

int main(void)
{
    uint8_t d[32];
    cnd_rt_sha256(d, "abc", 3);
    CHECK(s_eq_hex(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    cnd_rt_sha256(d, "", 0);
    CHECK(s_eq_hex(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cnd_rt_sha256(d, m2, strlen(m2));
    CHECK(s_eq_hex(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const char *m3 =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        "klmnopqrlmnopqrsmnopqrstnopqrstu";
    cnd_rt_sha256(d, m3, strlen(m3));
    CHECK(s_eq_hex(d, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
    /* One million 'a', fed in uneven pieces. */
    cnd_rt_sha256_t s;
    cnd_rt_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : sizeof a;
        cnd_rt_sha256_update(&s, a, n);
        left -= n;
    }
    cnd_rt_sha256_final(&s, d);
    CHECK(s_eq_hex(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));

    cnd_rng_t r;
    cnd_rng_seed(&r, 7);
    uint8_t buf[300], want[32];
    for (size_t len = 0; len <= sizeof buf; len++) {
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)cnd_rng_u64(&r);
        cnd_sha256(want, buf, len);
        cnd_rt_sha256_init(&s);
        size_t cut = len ? (size_t)cnd_rng_below(&r, len + 1) : 0;
        cnd_rt_sha256_update(&s, buf, cut);
        cnd_rt_sha256_update(&s, buf + cut, len - cut);
        cnd_rt_sha256_final(&s, d);
        CHECK(memcmp(d, want, 32) == 0);
    }
    return check_result("test_runtime_sha256");
}
