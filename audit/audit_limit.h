/*
 * audit_limit.h: refusals recorded at a bounded rate.
 *
 * A daemon refuses whatever a peer sends that fails its checks, and its audit log says why
 * (reject.message, reject.connection: audit_actions.h). A peer that sends 50,000 bad frames must
 * not write 50,000 entries (about a kilobyte each with its Merkle row) nor get 50,000 Error
 * replies. The limiter counts refusals per key (action, peer, reason class): the first `burst`
 * of a key in a window are recorded in full by the caller (and may be answered); the rest are
 * only counted, and when the window ends one reject.summary entry records how many were not
 * written one by one. So a peer costs at most burst + 1 entries per reason class per window,
 * whatever it sends, and an auditor still sees every refusal counted.
 *
 * The reason class is a short fixed string (an error code name such as "ERR_MALFORMED", or
 * "hello first"), never text a peer chose, so a peer cannot make itself a new key per frame.
 * Keys are bounded too (max_keys); past that, refusals are counted under peer "*" with reason
 * "too many peers refused", recorded and summarised like any other key.
 *
 * Not thread-safe: one limiter per thread that owns the log (the daemons' main loops). Time is
 * passed in (monotonic seconds, e.g. cnd_now()) so tests can drive it.
 */
#ifndef CND_AUDIT_LIMIT_H
#define CND_AUDIT_LIMIT_H

#include "audit_log.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_AUDIT_LIMIT_FIELD 72 /* bytes kept of action, peer and reason class (NUL included) */

typedef struct {
    int burst;       /* entries recorded in full per key and window; 0 = 3 */
    double window_s; /* window length in seconds; 0 = 60 */
    size_t max_keys; /* distinct keys tracked at once; 0 = 1024 */
} cnd_audit_limit_opts_t;

typedef struct {
    uint64_t recorded;   /* hits the caller was told to record in full */
    uint64_t suppressed; /* hits only counted */
    uint64_t summaries;  /* reject.summary entries written */
} cnd_audit_limit_stats_t;

typedef struct cnd_audit_limiter cnd_audit_limiter_t;

/* A limiter writing its summaries to `log` as `actor` (a fingerprint; copied). Returns 0,
 * CND_EINVAL (bad option) or CND_ENOMEM. */
CND_MUST_USE int cnd_audit_limiter_new(cnd_audit_limiter_t **out, cnd_audit_t *log,
                                       const char *actor, const cnd_audit_limit_opts_t *o);

/* Counts one refusal of kind `action` (e.g. CND_AUDIT_REJECT_MESSAGE) from `peer` for reason
 * class `reason`. Returns 1 when the caller should record it in full (and may answer it), 0 when
 * it was only counted. Strings longer than CND_AUDIT_LIMIT_FIELD - 1 bytes are cut. */
int cnd_audit_limiter_hit(cnd_audit_limiter_t *l, const char *action, const char *peer,
                          const char *reason, double now);

/* Counts one refusal that is never recorded on its own (e.g. frames of a connection dropped
 * unread): it only adds to the key's next reject.summary. */
void cnd_audit_limiter_count(cnd_audit_limiter_t *l, const char *action, const char *peer,
                             const char *reason, double now);

/* Ends every window that is over at `now` (every window with all = 1, e.g. at shutdown): one
 * reject.summary entry per key that had refusals not recorded, and the key is forgotten. Call it
 * about once a second, inside the caller's transaction if it has one. Returns 0 or the first
 * audit error (the other keys are still flushed). */
CND_MUST_USE int cnd_audit_limiter_flush(cnd_audit_limiter_t *l, double now, int all);

void cnd_audit_limiter_stats(const cnd_audit_limiter_t *l, cnd_audit_limit_stats_t *out);

/* Accepts NULL; nulls *l. Does not flush (call cnd_audit_limiter_flush(l, now, 1) first). */
void cnd_audit_limiter_destroy(cnd_audit_limiter_t **l);

#endif
