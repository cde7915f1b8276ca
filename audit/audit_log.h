/*
 * audit_log.h: the tamper-evident audit log every Condenser node keeps (coordinator and site
 * agent alike): an append-only SQLite table of canonical JSON entries that form an RFC 9162
 * Merkle tree, with checkpoints (origin, tree size, root, time) signed by the node's Ed25519
 * identity key.
 *
 * What an entry is (docs/auditor-guide.md has the exact bytes): one canonical JSON object
 *   {"action":..,"actor":..,"details":{..},"digests":{name:hex,..},"job":..,"prev_root":hex,
 *    "seq":N,"subject":..,"time_ms":T}
 * whose UTF-8 bytes are the Merkle leaf (leaf hash = SHA-256(0x00 || bytes)). `seq` is the
 * 0-based leaf index; `prev_root` is the tree root over entries 0..seq-1, so each entry also
 * chains to everything before it and an edit is located to the entry, not only to a checkpoint
 * interval. The vocabulary of actions and their details keys is in audit_actions.h.
 *
 * Invariants:
 *   - seq runs 0, 1, 2, ... with no gap; rows are never updated or deleted (triggers abort any
 *     UPDATE or DELETE; verification does not rely on them).
 *   - Each append, and the automatic checkpoint it may trigger, is one SQLite transaction: a
 *     process killed at any point leaves the log as it was before or after the append.
 *   - A checkpoint is stored only with a valid signature over its C2SP signed-note body.
 *   - The tables are prefixed `audit_` so the log can share a database file with other state
 *     (the coordinator's). The schema version lives in audit_meta, not PRAGMA user_version,
 *     because user_version belongs to whoever owns the file.
 *
 * Usage (writer): nodes append through the builders of audit_entries.h (included below), one
 * per action, which fill a record and call cnd_audit_append:
 *   cnd_audit_t *log; cnd_audit_open(&log, "coordinator.db", sk, NULL);
 *   cnd_audit_log_job_state(log, fpr, 7, "completed", NULL);
 *   cnd_audit_checkpoint(log, "round.end", NULL);
 *   cnd_audit_close(&log);
 * Several processes may append to the same file: every append re-reads the tree's right edge
 * inside its write transaction when another writer got there first.
 * Readers (verify, prove, export, report) use cnd_audit_open_readonly().
 */
#ifndef CND_AUDIT_LOG_H
#define CND_AUDIT_LOG_H

#include "bytes.h"
#include "error.h"
#include "merkle.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_AUDIT_SK_BYTES                 64 /* libsodium Ed25519 secret key (seed || public key) */
#define CND_AUDIT_PK_BYTES                 32 /* Ed25519 public key */
#define CND_AUDIT_SIG_BYTES                64 /* Ed25519 signature */
#define CND_AUDIT_FPR_HEX                  65 /* 64 hex characters + NUL */
#define CND_AUDIT_KEY_ID_BYTES             4  /* signed-note key ID */
#define CND_AUDIT_SCHEMA_VERSION           1
#define CND_AUDIT_DEFAULT_CHECKPOINT_EVERY 1000
#define CND_AUDIT_MAX_DETAILS              (256 * 1024) /* bytes of details JSON */
#define CND_AUDIT_MAX_ENTRY                (512 * 1024) /* bytes of one entry; larger rows are refused */
#define CND_AUDIT_MAX_ORIGIN               128
#define CND_AUDIT_MAX_REASON               64
#define CND_AUDIT_MAX_TREE_SIZE            ((int64_t)1 << 62)       /* entries in a log, at most */
#define CND_AUDIT_MAX_TIME_MS              INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

typedef struct cnd_audit cnd_audit_t;

/* A digest of something an entry is about (a model file, a message, a certificate). */
typedef struct {
    const char *name;   /* role, [a-z0-9_.-]{1,32}: "model", "aggregate", "message", ... */
    uint8_t sha256[32]; /* SHA-256 of the exact bytes */
} cnd_audit_digest_t;

/* One entry to append. Strings must be UTF-8 without control characters. */
typedef struct {
    const char *actor;   /* who acted: identity fingerprint (cnd_audit_fingerprint), required */
    const char *action;  /* audit_actions.h vocabulary, [a-z0-9_.-]{1,64}, required */
    const char *subject; /* what was acted on (fingerprint, "round 3", version); NULL = "" */
    const char *job;     /* job id the entry belongs to; NULL = "" */
    const char *details; /* a JSON object (any formatting; stored canonically); NULL = {} */
    const cnd_audit_digest_t *digests; /* n_digests items, distinct names; may be NULL */
    size_t n_digests;
} cnd_audit_rec_t;

/* A signed checkpoint (C2SP signed-note body: origin, size, base64 root, time and reason
 * extension lines; see cnd_audit_cp_body). */
typedef struct {
    int64_t id;         /* row id in audit_checkpoint; -1 for one read from a file */
    uint64_t tree_size; /* entries covered */
    uint8_t root[32];   /* RFC 9162 root over entries 0..tree_size-1 */
    int64_t time_ms;    /* when it was signed, ms since the Unix epoch (UTC) */
    char origin[CND_AUDIT_MAX_ORIGIN + 1]; /* the log's name; also the signed note key name */
    char reason[CND_AUDIT_MAX_REASON + 1]; /* why it was signed: "auto", "round.end", ... */
    uint8_t key[CND_AUDIT_PK_BYTES]; /* the signer's public key (as recorded; never trusted) */
    uint8_t key_id[CND_AUDIT_KEY_ID_BYTES]; /* the note's key ID: as parsed from a note, or
                                               cnd_audit_key_id(origin, key) from the log */
    uint8_t sig[CND_AUDIT_SIG_BYTES];       /* Ed25519 signature over the body */
} cnd_audit_cp_t;

/* Opens (creating if needed) the log in the SQLite file `path` for appending, signing
 * checkpoints with `sk` (64 bytes, copied and wiped on close). `origin` names the log in its
 * checkpoints; NULL uses "condenser/<first 16 hex of the key fingerprint>". A log created with
 * another key or origin is refused with CND_EPERM. Returns 0, CND_EDB, CND_EFORMAT (newer schema
 * or not an audit log), CND_EINVAL, CND_ENOMEM. */
CND_MUST_USE int cnd_audit_open(cnd_audit_t **out, const char *path, const uint8_t *sk,
                                const char *origin);

/* Same on a database the caller already has open (e.g. the coordinator's state DB). The handle
 * is borrowed: it must outlive the log and is not closed by cnd_audit_close(). Appends made
 * while the caller has a transaction open join it (SAVEPOINT), so a state change and its audit
 * entry commit or roll back together. */
CND_MUST_USE int cnd_audit_open_db(cnd_audit_t **out, sqlite3 *db, const uint8_t *sk,
                                   const char *origin);

/* Opens an existing log read-only (auditor tools). Never writes to the file. */
CND_MUST_USE int cnd_audit_open_readonly(cnd_audit_t **out, const char *path);

/* Closes; accepts NULL and nulls the pointer. Wipes the secret key. */
void cnd_audit_close(cnd_audit_t **log);

/* Checkpoints are signed automatically whenever `every` entries have been appended since the
 * last one (default CND_AUDIT_DEFAULT_CHECKPOINT_EVERY; 0 disables). Stored in the log. */
CND_MUST_USE int cnd_audit_set_checkpoint_every(cnd_audit_t *log, uint64_t every);

/* Appends one entry; *seq (may be NULL) receives its sequence number. Returns 0, CND_EINVAL
 * (bad field, with a detail naming it), CND_EPERM (read-only log), CND_ECORRUPT (the stored
 * tree has a gap: run verify), CND_EDB. On failure nothing is written. */
CND_MUST_USE int cnd_audit_append(cnd_audit_t *log, const cnd_audit_rec_t *rec, uint64_t *seq);

/* Signs and stores a checkpoint of the current tree; `reason` ([a-z0-9_.-]{1,64}, e.g.
 * "round.end", "rollout.wave") is part of the signed body. *cp (may be NULL) receives it. */
CND_MUST_USE int cnd_audit_checkpoint(cnd_audit_t *log, const char *reason, cnd_audit_cp_t *cp);

/* Number of entries (the tree size). */
CND_MUST_USE int cnd_audit_size(cnd_audit_t *log, uint64_t *size);

/* The most recent checkpoint (largest tree size, then latest id). CND_ENOTFOUND if none. */
CND_MUST_USE int cnd_audit_latest_checkpoint(cnd_audit_t *log, cnd_audit_cp_t *cp);

/* The log's origin and recorded public key (from audit_meta; self-asserted). */
const char *cnd_audit_origin(const cnd_audit_t *log);
const uint8_t *cnd_audit_public_key(const cnd_audit_t *log);

/* The underlying handle, for the auditor tools' queries. */
sqlite3 *cnd_audit_db(cnd_audit_t *log);

/* Lower-case hex SHA-256 of a 32-byte Ed25519 public key: the identity fingerprint used for
 * actor, subject and peer fields. */
void cnd_audit_fingerprint(char out[CND_AUDIT_FPR_HEX], const uint8_t pk[CND_AUDIT_PK_BYTES]);

/* --- checkpoints as signed notes (files an auditor keeps) --- */

/* Appends the signed body of cp: "<origin>\n<size>\n<base64 root>\ntime <ms>\nreason <r>\n". */
void cnd_audit_cp_body(cnd_buf_t *out, const cnd_audit_cp_t *cp);
/* The C2SP signed-note key ID of Ed25519 key pk under key name `name` (our origin):
 * SHA-256(name || 0x0A || 0x01 || pk)[0..4), 0x01 being the Ed25519 signature type. */
void cnd_audit_key_id(uint8_t id[CND_AUDIT_KEY_ID_BYTES], const char *name,
                      const uint8_t pk[CND_AUDIT_PK_BYTES]);
/* Appends the whole signed note: body, a blank line, and "— <origin> <base64(key_id||sig)>\n"
 * (C2SP signed-note format), with cp->key_id as the key ID. */
void cnd_audit_cp_format(cnd_buf_t *out, const cnd_audit_cp_t *cp);
/* Parses a signed note into cp: key_id and sig from the first signature line by the origin; key
 * left zero (a note names its key only by the 4-byte ID). Returns 0 or CND_EFORMAT with a detail
 * naming the line at fault. */
CND_MUST_USE int cnd_audit_cp_parse(cnd_audit_cp_t *cp, const char *text, size_t len);
/* Reads and parses a checkpoint file (at most 64 KiB). */
CND_MUST_USE int cnd_audit_cp_read(cnd_audit_cp_t *cp, const char *path);
/* Verifies cp with pk: its key ID must be cnd_audit_key_id(cp->origin, pk) and its signature
 * must verify. Returns 0, or CND_ECRYPTO with a detail saying which of the two failed (key IDs
 * in hex), or CND_ENOMEM. */
CND_MUST_USE int cnd_audit_cp_verify(const cnd_audit_cp_t *cp,
                                     const uint8_t pk[CND_AUDIT_PK_BYTES]);

/* Reads a public key: a file holding 64 hex characters, base64 of 32 bytes, the raw 32 bytes,
 * or a PEM "PUBLIC KEY" (Ed25519 SubjectPublicKeyInfo); or `spec` itself when it is 64 hex
 * characters. Returns 0, CND_EIO or CND_EFORMAT. */
CND_MUST_USE int cnd_audit_read_public_key(uint8_t pk[CND_AUDIT_PK_BYTES], const char *spec);

/* Whoever writes the log builds entries with these. */
#include "audit_entries.h"

#endif
