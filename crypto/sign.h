/*
 * sign.h: detached Ed25519 signatures over the SHA-256 digest of canonical bytes, with a context
 * label for domain separation. This is the one signing API the rest of Condenser uses: artifact
 * manifests (crypto/manifest.h), audit checkpoints, secure-aggregation round keys.
 *
 * What is signed: the 32-byte SHA-256 digest of the caller's canonical bytes, wrapped as
 *     "condenser-signature-v1" | u8 len(context) | context | digest
 * so that a signature made for one purpose ("manifest") never verifies for another
 * ("audit-checkpoint") even over identical bytes. Signing the digest rather than the bytes lets
 * large files be hashed incrementally (cnd_sign_digest) and keeps the signed message tiny.
 *
 * Contexts are short ASCII labels (1..64 bytes) fixed in code, never taken from input.
 * Verification returns 0 or CND_ECRYPTO and, like libsodium's, does not say why: a signature
 * either verifies under the given key or it does not. Callers that need to tell a wrong key from a
 * changed byte carry the signer's public key next to the signature (see crypto/manifest.h).
 */
#ifndef CND_SIGN_H
#define CND_SIGN_H

#include "digest.h"
#include "identity.h"

#include <stddef.h>
#include <stdint.h>

#define CND_SIG_BYTES       64
#define CND_SIG_CONTEXT_MAX 64

/* Signs msg[0..len) under `context`. Returns 0 or CND_EINVAL (bad context). */
CND_MUST_USE int cnd_sign(uint8_t sig[CND_SIG_BYTES], const cnd_identity_t *id, const char *context,
                          const void *msg, size_t len);

/* Same, for a digest the caller computed with cnd_sha256*(). */
CND_MUST_USE int cnd_sign_digest(uint8_t sig[CND_SIG_BYTES], const cnd_identity_t *id,
                                 const char *context, const uint8_t digest[CND_SHA256_BYTES]);

/* Returns 0 when sig is pk's signature of msg under context; CND_ECRYPTO otherwise (also for a
 * malformed key); CND_EINVAL for a bad context. Sets no detail message on CND_ECRYPTO, so the
 * caller can name the object that failed. */
CND_MUST_USE int cnd_verify(const uint8_t sig[CND_SIG_BYTES],
                            const uint8_t pk[CND_ED25519_PK_BYTES], const char *context,
                            const void *msg, size_t len);

CND_MUST_USE int cnd_verify_digest(const uint8_t sig[CND_SIG_BYTES],
                                   const uint8_t pk[CND_ED25519_PK_BYTES], const char *context,
                                   const uint8_t digest[CND_SHA256_BYTES]);

#endif
