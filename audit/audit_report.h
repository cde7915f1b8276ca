/*
 * audit_report.h: a self-contained HTML page about one job, for a person
 * (`condenser audit report DB --job J --out report.html`).
 *
 * Everything on the page comes from the log's entries (through the vocabulary of
 * audit_actions.h) and from a verification of the log done just before: the job's recipe;
 * accuracy and loss per round as inline SVG charts; participation and dropouts per round; bytes
 * that reached the coordinator from each site (ingress) and that left the node (egress); model
 * versions and artifact signatures with their digests; rollouts with per-wave outcomes; refused
 * connections and messages; operator actions; and the verification result. No script, no
 * external resource (a Content-Security-Policy forbids both), so it opens offline and shows the
 * same thing in every browser. Every string from the log is HTML-escaped.
 */
#ifndef CND_AUDIT_REPORT_H
#define CND_AUDIT_REPORT_H

#include "audit_log.h"
#include "audit_verify.h"

/* Appends the page to out. `verdict` is the verification to show; `source` names the database
 * (shown, not opened). Returns 0, CND_ENOTFOUND (no entry belongs to `job`), CND_EDB,
 * CND_ENOMEM. */
CND_MUST_USE int cnd_audit_report_html(cnd_buf_t *out, cnd_audit_t *log, const char *job,
                                       const cnd_audit_verdict_t *verdict, const char *source);

#endif
