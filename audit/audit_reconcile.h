/*
 * audit_reconcile.h: checks a site's record of what it sent against the coordinator's record of
 * what it received from that site (`condenser audit reconcile AGENT_DB COORDINATOR_DB`).
 *
 * Both ends log messages with cnd_audit_log_message(): the agent an `egress` entry per message
 * it sent to the coordinator, the coordinator an `ingress` entry per message it accepted from
 * the site, each with the message's size and SHA-256 over the exact bytes on the wire. The two
 * multisets of (digest, size) must be equal:
 *   - a message the coordinator received that the site never logged as sent means something
 *     reached the coordinator in the site's name that the site did not send (or the site's log
 *     is incomplete): always a failure;
 *   - a message the site logged as sent that the coordinator has no record of was lost in
 *     transit (a site killed mid-send, a dropped connection) or not logged by the coordinator: a
 *     failure unless the caller accepts undelivered messages.
 * The site is identified by the fingerprint of the key that signs its audit log, the
 * coordinator likewise, unless the caller names them.
 */
#ifndef CND_AUDIT_RECONCILE_H
#define CND_AUDIT_RECONCILE_H

#include "audit_log.h"

typedef struct {
    char site[CND_AUDIT_FPR_HEX];        /* site fingerprint matched on */
    char coordinator[CND_AUDIT_FPR_HEX]; /* coordinator fingerprint matched on */
    uint64_t sent, sent_bytes;           /* site egress entries to the coordinator */
    uint64_t received, received_bytes;   /* coordinator ingress entries from the site */
    uint64_t matched;                    /* pairs with equal digest and size */
    uint64_t not_received;               /* sent, with no matching ingress */
    uint64_t not_sent;                   /* received, with no matching egress */
    uint64_t type_mismatch;              /* matched pairs logged under different type names */
    char **findings;                     /* one line per unmatched message (at most 200 kept) */
    size_t n_findings;
} cnd_audit_reconcile_t;

/* Reconciles. site / coordinator (may be NULL) override the fingerprints taken from the logs'
 * keys; job (may be NULL) restricts both sides to one job. Returns 0 when it ran (see the
 * counts), or CND_EFORMAT (a damaged entry, named), CND_EDB, CND_ENOMEM. */
CND_MUST_USE int cnd_audit_reconcile(cnd_audit_reconcile_t *r, cnd_audit_t *agent,
                                     cnd_audit_t *coordinator, const char *site, const char *coord,
                                     const char *job);

void cnd_audit_reconcile_free(cnd_audit_reconcile_t *r);

#endif
