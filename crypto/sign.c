/*
 * sign.c: see sign.h. The wrapped message is at most 22 + 1 + 64 + 32 bytes and lives on the
 * stack.
 */
#include "sign.h"

#include <sodium.h>
#include <string.h>

#define S_PREFIX     "condenser-signature-v1"
#define S_PREFIX_LEN (sizeof S_PREFIX - 1)
#define S_WRAP_MAX   (S_PREFIX_LEN + 1 + CND_SIG_CONTEXT_MAX + CND_SHA256_BYTES)

static int s_wrap(uint8_t out[S_WRAP_MAX], size_t *out_len, const char *context,
                  const uint8_t digest[CND_SHA256_BYTES])
{
    size_t c = context ? strlen(context) : 0;
    if (c == 0 || c > CND_SIG_CONTEXT_MAX)
        return cnd_errf(CND_EINVAL, "signature context must be 1..%d bytes", CND_SIG_CONTEXT_MAX);
    memcpy(out, S_PREFIX, S_PREFIX_LEN);
    out[S_PREFIX_LEN] = (uint8_t)c;
    memcpy(out + S_PREFIX_LEN + 1, context, c);
    memcpy(out + S_PREFIX_LEN + 1 + c, digest, CND_SHA256_BYTES);
    *out_len = S_PREFIX_LEN + 1 + c + CND_SHA256_BYTES;
    return 0;
}

int cnd_sign_digest(uint8_t sig[CND_SIG_BYTES], const cnd_identity_t *id, const char *context,
                    const uint8_t digest[CND_SHA256_BYTES])
{
    uint8_t m[S_WRAP_MAX];
    size_t n = 0;
    int rc = s_wrap(m, &n, context, digest);
    if (rc) return rc;
    cnd_identity_sign(sig, id, m, n);
    return 0;
}

int cnd_sign(uint8_t sig[CND_SIG_BYTES], const cnd_identity_t *id, const char *context,
             const void *msg, size_t len)
{
    uint8_t d[CND_SHA256_BYTES];
    cnd_sha256(d, msg, len);
    return cnd_sign_digest(sig, id, context, d);
}

int cnd_verify_digest(const uint8_t sig[CND_SIG_BYTES], const uint8_t pk[CND_ED25519_PK_BYTES],
                      const char *context, const uint8_t digest[CND_SHA256_BYTES])
{
    int rc = cnd_crypto_init();
    if (rc) return rc;
    uint8_t m[S_WRAP_MAX];
    size_t n = 0;
    if ((rc = s_wrap(m, &n, context, digest))) return rc;
    return crypto_sign_verify_detached(sig, m, n, pk) == 0 ? 0 : CND_ECRYPTO;
}

int cnd_verify(const uint8_t sig[CND_SIG_BYTES], const uint8_t pk[CND_ED25519_PK_BYTES],
               const char *context, const void *msg, size_t len)
{
    uint8_t d[CND_SHA256_BYTES];
    cnd_sha256(d, msg, len);
    return cnd_verify_digest(sig, pk, context, d);
}
