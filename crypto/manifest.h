/*
 * manifest.h: signed artifact metadata in the spirit of TUF targets and Uptane, the thing an edge
 * device checks before it loads a model (and an auditor checks after the fact).
 *
 * A manifest names an artifact (name, version, SHA-256 digest, exact length), says which devices
 * it is for (target: a comma-separated list of device classes, or "" for any), when it stops
 * being valid (expires, Unix seconds), and carries a sequence number that only ever grows for a
 * given name. A rollback to an older artifact version is allowed only when the manifest says so
 * with CND_MANIFEST_ROLLBACK and still carries a new, higher sequence number: replaying an old
 * signed manifest never works. A delta artifact can name the digest of its base.
 *
 * Canonical body (little-endian, see cnd_manifest_encode), the bytes that are signed:
 *   "CNDMAN01" | str name | str target | u64 sequence | u64 version | u64 length | 32 digest
 *   | i64 expires | u32 flags | u8 has_base | [32 base digest]            (str = u32 len | bytes)
 * Signed envelope (cnd_manifest_sign / cnd_manifest_verify), its layout named once below
 * (CND_MANIFEST_ENV_*; cnd_manifest_body finds the body, nobody else counts bytes):
 *   "CNDSMF01" | u32 body_len | body | 32 signer public key | 64 signature
 * The signature is crypto/sign.h's with context "manifest". The signer key travels in the
 * envelope only so verification can say "signed by an untrusted key" rather than "bad
 * signature"; trust comes solely from the caller's list of keys.
 *
 * Verification checks, in this order, and stops at the first failure, each with its own reason:
 * malformed -> untrusted key -> bad signature (a changed byte) -> expired -> older sequence ->
 * lower version without rollback flag -> wrong device class. Then, once the artifact bytes are
 * at hand, cnd_manifest_check_artifact compares length and digest (load the very bytes verified).
 */
#ifndef CND_MANIFEST_H
#define CND_MANIFEST_H

#include "bytes.h"
#include "identity.h"

#include <stdint.h>

#define CND_MANIFEST_NAME_MAX   128
#define CND_MANIFEST_TARGET_MAX 256
#define CND_MANIFEST_ROLLBACK   0x1u /* this manifest may install a lower version */
#define CND_MANIFEST_FLAGS_ALL  0x1u /* flags a verifier understands; others are refused */

/* The signed envelope: CND_MANIFEST_ENV_HEAD bytes (magic, u32 body length), the body, then
 * CND_MANIFEST_ENV_TAIL bytes (32-byte signer public key, 64-byte signature). */
#define CND_MANIFEST_ENV_MAGIC "CNDSMF01"
#define CND_MANIFEST_ENV_HEAD  (8 + 4)
#define CND_MANIFEST_ENV_TAIL  (32 + 64)

typedef struct {
    char name[CND_MANIFEST_NAME_MAX + 1];     /* artifact name: printable ASCII, 1..128 bytes */
    char target[CND_MANIFEST_TARGET_MAX + 1]; /* device classes, comma-separated; "" = any */
    uint64_t sequence;                        /* grows with every manifest for this name */
    uint64_t version;                         /* artifact version (model registry number) */
    uint64_t length;                          /* exact artifact size in bytes */
    uint8_t digest[32];                       /* SHA-256 of the artifact bytes */
    int64_t expires;                          /* Unix seconds; refused at or after this time */
    uint32_t flags;                           /* CND_MANIFEST_ROLLBACK or 0 */
    int has_base;                             /* 1 for a delta artifact */
    uint8_t base_digest[32];                  /* digest of the artifact the delta applies to */
} cnd_manifest_t;

/* Why verification failed (CND_MANIFEST_OK on success). */
typedef enum {
    CND_MANIFEST_OK = 0,
    CND_MANIFEST_MALFORMED,     /* returned CND_EFORMAT: not a well-formed signed manifest */
    CND_MANIFEST_UNTRUSTED_KEY, /* CND_ECRYPTO: signed by a key not in the trusted list */
    CND_MANIFEST_BAD_SIGNATURE, /* CND_ECRYPTO: trusted key, but the bytes were changed */
    CND_MANIFEST_EXPIRED,       /* CND_ETIMEOUT: now >= expires */
    CND_MANIFEST_OLDER,         /* CND_ESTATE: sequence below the lowest acceptable one */
    CND_MANIFEST_DOWNGRADE,     /* CND_EPERM: version below the installed one, no rollback flag */
    CND_MANIFEST_WRONG_TARGET,  /* CND_EPERM: device class not among the targets */
} cnd_manifest_fail_t;

/* What the verifier trusts and remembers. */
typedef struct {
    const uint8_t (*keys)[32]; /* trusted signer public keys (rotation: list old and new) */
    size_t n_keys;             /* >= 1 */
    int64_t now;               /* current Unix time */
    uint64_t min_sequence;     /* lowest acceptable sequence: the highest one accepted so far
                                  (re-verifying the installed manifest passes), or +1 to refuse
                                  even that */
    uint64_t current_version;  /* installed version; lower ones need CND_MANIFEST_ROLLBACK */
    const char *device_class;  /* this device's class; NULL skips the target check */
} cnd_manifest_policy_t;

/* Appends the canonical body of m to out. Returns 0, CND_EINVAL (a field violates its limits;
 * detail names it) or CND_ENOMEM. */
CND_MUST_USE int cnd_manifest_encode(cnd_buf_t *out, const cnd_manifest_t *m);

/* Parses a canonical body, requiring every byte to be consumed. Returns 0 or CND_EFORMAT naming
 * the field. */
CND_MUST_USE int cnd_manifest_decode(cnd_manifest_t *m, const uint8_t *data, size_t len);

/* Appends the signed envelope of m, signed by id, to out. Returns 0, CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_manifest_sign(cnd_buf_t *out, const cnd_manifest_t *m,
                                   const cnd_identity_t *id);

/* The body inside a signed envelope, after checking the envelope's framing (magic, a body
 * length that accounts for every byte) but NOT its signature: for a manifest verified earlier (a
 * device's stored copy), one this process has just signed (to read back its sequence), or a
 * message validator that checks shape only (the device verifies the signature). *body points
 * into signed_bytes. Returns 0, or CND_EFORMAT with a detail starting "not a signed manifest" or
 * "body length". */
CND_MUST_USE int cnd_manifest_body(const uint8_t **body, size_t *body_len,
                                   const uint8_t *signed_bytes, size_t len);

/* cnd_manifest_body, then cnd_manifest_decode of that body (same uses: the signature is not
 * checked). Returns 0 or CND_EFORMAT; *m is zeroed on failure. */
CND_MUST_USE int cnd_manifest_decode_signed(cnd_manifest_t *m, const uint8_t *signed_bytes,
                                            size_t len);

/* Verifies a signed envelope under policy and, on success, fills *m. On failure *m is zeroed,
 * *why (may be NULL) says which check failed, the return code is the one listed next to the
 * reason above, and the detail message names the field and values. */
CND_MUST_USE int cnd_manifest_verify(cnd_manifest_t *m, cnd_manifest_fail_t *why,
                                     const uint8_t *signed_bytes, size_t len,
                                     const cnd_manifest_policy_t *policy);

/* The signer's public key carried in a signed envelope, after checking the envelope's framing
 * (not the signature). For tools that show who signed (`condenser info`); trust comes only from
 * the key list given to cnd_manifest_verify. Returns 0 or CND_EFORMAT. */
CND_MUST_USE int cnd_manifest_signer(uint8_t pk[32], const uint8_t *signed_bytes, size_t len);

/* Checks that data[0..len) is the artifact m describes. Returns 0, or CND_ECORRUPT with a
 * detail saying whether the length or the digest differs. */
CND_MUST_USE int cnd_manifest_check_artifact(const cnd_manifest_t *m, const void *data, size_t len);

/* Same when the caller hashed the artifact while streaming it. */
CND_MUST_USE int cnd_manifest_check_digest(const cnd_manifest_t *m, const uint8_t digest[32],
                                           uint64_t len);

/* A short name for a failure reason ("expired", ...). */
const char *cnd_manifest_fail_name(cnd_manifest_fail_t why);

#endif
