/*
 * identity.h: a node's one long-term identity, an Ed25519 key pair (libsodium).
 *
 * Every coordinator, site agent, edge device and auditor holds exactly one identity. It signs
 * (artifacts, audit checkpoints, secure-aggregation round keys), and its X25519 form, obtained
 * with libsodium's Ed25519-to-Curve25519 conversion, is the node's CurveZMQ key, so one key file
 * serves signing and transport. The federation CA certifies the Ed25519 public key (crypto/ca.h).
 *
 * Files (written by cnd_identity_save):
 *   DIR/identity.key  mode 0600, 72 bytes: "CNDIDSK1" | 32-byte seed | 32-byte public key.
 *                     Loading refuses a file that group or other users can access, and a file
 *                     whose stored public key does not match the one derived from the seed.
 *   DIR/identity.pub  mode 0644, one text line: "condenser-ed25519 <64 hex digits>\n".
 *
 * The secret half lives in sodium_malloc'd memory (guard pages, mlock where allowed) and is
 * wiped by cnd_identity_destroy. It never leaves this module: signing goes through
 * cnd_identity_sign (or crypto/sign.h on top of it) and the only export is the X25519 secret,
 * which the transport needs and must wipe.
 *
 * The fingerprint of a public key is SHA-256 over its 32 raw bytes, shown as 64 hex digits, so
 * anyone can recompute it with standard tools.
 */
#ifndef CND_IDENTITY_H
#define CND_IDENTITY_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_ED25519_PK_BYTES  32
#define CND_ED25519_SIG_BYTES 64
#define CND_X25519_BYTES      32
#define CND_FINGERPRINT_HEX   65 /* 64 hex digits and a NUL */
#define CND_IDENTITY_KEY_FILE "identity.key"
#define CND_IDENTITY_PUB_FILE "identity.pub"

typedef struct cnd_identity cnd_identity_t;

/* Makes a fresh identity from libsodium's CSPRNG. Returns 0, CND_ENOMEM or CND_ECRYPTO (libsodium
 * could not initialise). *out is owned by the caller (cnd_identity_destroy). */
CND_MUST_USE int cnd_identity_generate(cnd_identity_t **out);

/* Deterministic identity from a 32-byte seed (known-answer tests, reproducible simulations). */
CND_MUST_USE int cnd_identity_from_seed(cnd_identity_t **out, const uint8_t seed[32]);

/* Writes DIR/identity.key (0600) and DIR/identity.pub (0644), creating DIR with mode 0700 if
 * needed. Refuses with CND_EEXIST when DIR/identity.key exists and overwrite is 0. Each file is
 * written atomically. Returns 0, CND_EEXIST or CND_EIO. */
CND_MUST_USE int cnd_identity_save(const cnd_identity_t *id, const char *dir, int overwrite);

/* Loads a secret key file. Returns 0; CND_EIO (cannot open/read); CND_EPERM (group or other
 * users can access the file: the detail says to chmod 600); CND_EFORMAT (wrong size or magic);
 * CND_ECORRUPT (stored public key does not match the seed); CND_ENOMEM. */
CND_MUST_USE int cnd_identity_load(cnd_identity_t **out, const char *key_path);

/* Frees and wipes; accepts NULL and *id == NULL; sets *id to NULL. */
void cnd_identity_destroy(cnd_identity_t **id);

/* The 32-byte Ed25519 public key (valid while id lives). */
const uint8_t *cnd_identity_pk(const cnd_identity_t *id);

/* Detached Ed25519 signature over msg[0..len). This is the raw primitive: protocol code should
 * use crypto/sign.h, which adds domain separation. Never fails for a valid identity. */
void cnd_identity_sign(uint8_t sig[CND_ED25519_SIG_BYTES], const cnd_identity_t *id,
                       const void *msg, size_t len);

/* The X25519 (CurveZMQ) key pair of this identity. The caller must sodium_memzero(sk) after use.
 * Returns 0 or CND_ECRYPTO. */
CND_MUST_USE int cnd_identity_curve_keypair(uint8_t pk[CND_X25519_BYTES],
                                            uint8_t sk[CND_X25519_BYTES], const cnd_identity_t *id);

/* The 64-byte libsodium Ed25519 secret key (seed || public key), for the one API that takes a
 * raw signing key: the audit log's checkpoint signer (audit/audit_log.h). The caller must
 * sodium_memzero(sk) after use. */
void cnd_identity_secret_key(uint8_t sk[64], const cnd_identity_t *id);

/* X25519 form of any Ed25519 public key (e.g. to map an enrolled identity to the CurveZMQ key a
 * peer presents). Returns 0 or CND_ECRYPTO when pk is not a valid Ed25519 point. */
CND_MUST_USE int cnd_pubkey_to_curve(uint8_t out[CND_X25519_BYTES],
                                     const uint8_t pk[CND_ED25519_PK_BYTES]);

/* 64 lower-case hex digits of SHA-256(pk) into out. Returns out. */
char *cnd_pubkey_fingerprint(char out[CND_FINGERPRINT_HEX], const uint8_t pk[CND_ED25519_PK_BYTES]);

/* Public key files ("condenser-ed25519 <hex>\n"). _read accepts trailing whitespace only and
 * names the file and what was wrong. Return 0, CND_EIO or CND_EFORMAT. */
CND_MUST_USE int cnd_pubkey_read(uint8_t pk[CND_ED25519_PK_BYTES], const char *path);
CND_MUST_USE int cnd_pubkey_write(const char *path, const uint8_t pk[CND_ED25519_PK_BYTES]);
/* Parses the text form from memory ("condenser-ed25519 <hex>" or bare 64 hex digits). */
CND_MUST_USE int cnd_pubkey_parse(uint8_t pk[CND_ED25519_PK_BYTES], const char *text,
                                  const char *what);

/* Initialises libsodium once (thread-safe). Returns 0 or CND_ECRYPTO. Every crypto/ entry point
 * that needs libsodium calls it; callers of the primitives may call it too. */
CND_MUST_USE int cnd_crypto_init(void);

#endif
