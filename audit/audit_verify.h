/*
 * audit_verify.h: offline verification of an audit log, the check behind
 * `condenser audit verify` and the verification line of `condenser audit report`.
 *
 * It needs only the database file and, ideally, the node's public key. It trusts nothing stored
 * in the file: leaf hashes are recomputed from the entry bytes, the tree from the leaves, and
 * every checkpoint's signature is checked before its root is compared. What it reports:
 *   - entry-level damage, located to the entry: bytes that are not canonical JSON, an envelope
 *     that disagrees with its row (seq, time, actor, action, subject, job), a leaf that differs
 *     from the hash stored when it was written, a prev_root that no longer matches the entries
 *     before it (an earlier entry changed, removed or reordered), a gap in seq (deleted rows);
 *   - checkpoint-level damage: a bad signature, a missing checkpoint row, a signed root that no
 *     longer matches the entries (located to the interval since the last matching checkpoint:
 *     the case where a forger also rewrote the hashes that chain the entries), a checkpoint
 *     beyond the end of the log (truncation), and the same for checkpoints kept by the auditor
 *     from earlier (consistency of the current log with what they saw);
 *   - notes: entries not yet covered by any signed checkpoint, removed append-only triggers,
 *     a key that was not pinned by the caller, clocks that went backwards.
 */
#ifndef CND_AUDIT_VERIFY_H
#define CND_AUDIT_VERIFY_H

#include "json.h"
#include "audit_log.h"

typedef struct {
    int ok;                  /* 1 when no problem was found */
    uint64_t entries;        /* rows in audit_entry */
    uint64_t verified;       /* entries 0..verified-1 were read without a gap */
    uint64_t checkpoints;    /* rows in audit_checkpoint */
    uint64_t checkpoints_ok; /* of which the signature and the root both verified */
    uint64_t kept;           /* kept checkpoints given by the caller */
    uint64_t kept_ok;        /* of which signature and root verified */
    uint64_t covered;        /* entries covered by the largest verified signed checkpoint */
    char covered_by[160];    /* that checkpoint: "checkpoint #K (size N, time, reason R)" or
                                "kept checkpoint FILE (size N)"; "" when covered is 0 */
    int64_t first_bad;       /* first bad entry, or -1 when none was found */
    int64_t first_bad_end;   /* when first_bad_exact is 0: the bad entry is in [first_bad, end) */
    int first_bad_exact;     /* 1 when first_bad names the entry itself */
    int key_pinned;          /* 1 when signatures were checked against a caller-given key */
    uint8_t root[32];        /* root over entries 0..verified-1 */
    char fingerprint[CND_AUDIT_FPR_HEX]; /* of the key signatures were checked against */
    char summary[512];                   /* one line: "OK: ..." or "FAILED: ..." */
    char **problems;                     /* each problem found, in log order (at most 100 kept) */
    size_t n_problems;                   /* problems found (may exceed the number kept) */
    char **notes;                        /* warnings and information (at most 100 kept) */
    size_t n_notes;
} cnd_audit_verdict_t;

/* Called now and then with entries done out of total. */
typedef void (*cnd_audit_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Verifies `log`. pk (may be NULL) pins the signing key; otherwise the key recorded in the log
 * is used and a note says so. kept[0..n_kept) are checkpoints the auditor kept from earlier
 * (kept_names label them in messages; may be NULL). Returns 0 when the verification ran (the
 * verdict is in *v, to free with cnd_audit_verdict_free), or CND_ENOMEM / CND_EDB when it could
 * not run at all. */
CND_MUST_USE int cnd_audit_verify(cnd_audit_verdict_t *v, cnd_audit_t *log, const uint8_t *pk,
                                  const cnd_audit_cp_t *kept, const char *const *kept_names,
                                  size_t n_kept, cnd_audit_progress_fn progress, void *ctx);

void cnd_audit_verdict_free(cnd_audit_verdict_t *v);

/* Parses one stored entry and checks its envelope: canonical bytes, exactly the keys action,
 * actor, details (object), digests (object of 64-hex strings), job, prev_root (64 hex), seq,
 * subject, time_ms, with the right types. On success *out is the parsed object (caller frees).
 * Returns 0 or CND_EFORMAT with a detail naming what is wrong. */
CND_MUST_USE int cnd_audit_entry_parse(cnd_json_t **out, const char *text, size_t len);

#endif
