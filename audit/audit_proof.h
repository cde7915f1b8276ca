/*
 * audit_proof.h: inclusion and consistency proofs as self-contained files, so that a third
 * party can check an audit claim without the database (`condenser audit prove` writes them,
 * `condenser audit check-proof FILE --key PUB` checks them).
 *
 * A proof file is one JSON object (docs/auditor-guide.md, "Proof files"):
 *   inclusion:   {"checkpoint": signed note text, "entry": the entry's exact bytes as a string,
 *                 "format": "condenser-audit-proof/1", "index": N, "path": [hex, ...],
 *                 "tree_size": S, "type": "inclusion"}
 *   consistency: {"format": ..., "new_checkpoint": note, "new_size": n, "old_checkpoint": note,
 *                 "old_size": m, "path": [hex, ...], "type": "consistency"}
 * The checkpoint notes carry their own Ed25519 signatures; the checker needs only the log's
 * public key. Generation recomputes every leaf from the entry bytes and refuses to prove
 * anything against a checkpoint the stored entries no longer match.
 */
#ifndef CND_AUDIT_PROOF_H
#define CND_AUDIT_PROOF_H

#include "audit_log.h"

#define CND_AUDIT_PROOF_FORMAT "condenser-audit-proof/1"

/* Appends to out a proof that entry `seq` is in the tree of the log's latest checkpoint.
 * Returns 0; CND_ENOTFOUND (no such entry, or no checkpoint); CND_ESTATE (the entry is newer
 * than the latest checkpoint); CND_ECORRUPT (the log no longer matches that checkpoint: run
 * verify); CND_EDB, CND_ENOMEM. */
CND_MUST_USE int cnd_audit_prove_inclusion(cnd_buf_t *out, cnd_audit_t *log, uint64_t seq);

/* Appends to out a proof that the log's latest checkpoint extends `old` (a checkpoint kept from
 * earlier, written into the proof as parsed, with its own key ID). Returns 0; CND_EINVAL (old
 * is for another log or larger than the latest); CND_ECRYPTO (old's key ID or signature is not
 * of the log's key); CND_ECORRUPT (the log is not consistent with old: its first
 * old->tree_size entries no longer hash to old's root, a finding); CND_ENOTFOUND, CND_EDB,
 * CND_ENOMEM. */
CND_MUST_USE int cnd_audit_prove_consistency(cnd_buf_t *out, cnd_audit_t *log,
                                             const cnd_audit_cp_t *old);

/* Checks a proof file's text with the log's public key. On success writes a one-line account of
 * what was proven into summary and returns 0. Returns CND_EFORMAT (not a proof file, or a field
 * of the wrong type or range: integers must be written as JSON integers; the detail names the
 * field) or CND_ECRYPTO (a checkpoint's key ID is not pk's, or a signature or the proof does not
 * verify; the detail names the field). */
CND_MUST_USE int cnd_audit_check_proof(char *summary, size_t cap, const char *text, size_t len,
                                       const uint8_t pk[CND_AUDIT_PK_BYTES]);

#endif
