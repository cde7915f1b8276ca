/*
 * audit_export.h: audit entries as JSON Lines or CSV, for auditors' own tools
 * (`condenser audit export`). Values come from the signed entry bytes, never from the
 * convenience columns beside them. JSON Lines output is exactly the stored entries, one per
 * line, so `sha256sum` over a line prefixed with a 0x00 byte gives its Merkle leaf hash.
 */
#ifndef CND_AUDIT_EXPORT_H
#define CND_AUDIT_EXPORT_H

#include "audit_log.h"

typedef enum {
    CND_AUDIT_FMT_JSONL, /* one canonical entry per line */
    CND_AUDIT_FMT_CSV,   /* RFC 4180: seq,time_utc,time_ms,actor,action,subject,job,details,
                            digests,leaf_hash */
} cnd_audit_format_t;

/* Appends the entries of `job` (all entries when job is NULL) in seq order to out; *count (may
 * be NULL) receives how many. Returns 0, CND_EFORMAT (an entry is not a valid envelope: the log
 * is damaged, with the entry named), CND_EDB or CND_ENOMEM. */
CND_MUST_USE int cnd_audit_export(cnd_buf_t *out, cnd_audit_t *log, const char *job,
                                  cnd_audit_format_t fmt, uint64_t *count);

#endif
