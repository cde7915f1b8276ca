/*
 * audit_reconcile.c: egress/ingress matching (see audit_reconcile.h). Both sides' messages are
 * read from the signed entry bytes, sorted by (digest, size), and merged; a multiset match so
 * that a message legitimately sent twice must also have been received twice.
 */
#include "audit_reconcile.h"
#include "audit_actions.h"
#include "json.h"
#include "audit_verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_FINDINGS 200

typedef struct {
    char digest[65]; /* hex SHA-256 of the message */
    int64_t size;    /* bytes */
    int64_t seq;     /* entry that logged it */
    char type[48];   /* message type name */
} s_msg;

static int s_msg_cmp(const void *a, const void *b)
{
    const s_msg *x = a, *y = b;
    int c = strcmp(x->digest, y->digest);
    if (c) return c;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Collects `action` entries whose details.peer is `peer` (and job matches, if given). */
static int s_collect(cnd_audit_t *log, const char *action, const char *peer, const char *job,
                     s_msg **out, size_t *n, uint64_t *bytes, const char *side)
{
    *out = NULL;
    *n = 0;
    *bytes = 0;
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT seq, entry FROM audit_entry WHERE action = ? ORDER BY seq",
                           -1, &st, NULL))
        return cnd_errf(CND_EDB, "%s log: %s", side, sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        long long seq = sqlite3_column_int64(st, 0);
        cnd_json_t *e = NULL;
        if (!text || cnd_audit_entry_parse(&e, text, (size_t)sqlite3_column_bytes(st, 1)) != 0) {
            sqlite3_finalize(st);
            free(*out);
            *out = NULL;
            return cnd_errf(CND_EFORMAT,
                            "%s log: entry %lld is damaged; run `condenser audit verify`", side,
                            seq);
        }
        const cnd_json_t *d = cnd_json_get(e, "details");
        const char *p = cnd_json_str(cnd_json_get(d, "peer"));
        const char *ej = cnd_json_str(cnd_json_get(e, "job"));
        const char *dg = cnd_json_str(cnd_json_get(cnd_json_get(e, "digests"), "message"));
        const char *type = cnd_json_str(cnd_json_get(d, "type"));
        int64_t size = -1;
        (void)cnd_json_integer(cnd_json_get(d, "size"), 0, INT64_MAX, &size);
        if (p && strcmp(p, peer) == 0 && (!job || (ej && strcmp(ej, job) == 0))) {
            if (*n == cap) {
                size_t nc = cap ? 2 * cap : 64;
                s_msg *m = realloc(*out, nc * sizeof *m);
                if (!m) {
                    cnd_json_free(&e);
                    sqlite3_finalize(st);
                    free(*out);
                    *out = NULL;
                    return CND_ENOMEM;
                }
                *out = m;
                cap = nc;
            }
            s_msg *m = &(*out)[(*n)++];
            snprintf(m->digest, sizeof m->digest, "%s", dg ? dg : "(none)");
            m->size = size;
            m->seq = seq;
            snprintf(m->type, sizeof m->type, "%s", type ? type : "?");
            if (size > 0) *bytes += (uint64_t)size;
        }
        cnd_json_free(&e);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        return cnd_errf(CND_EDB, "%s log: %s", side, sqlite3_errmsg(db));
    }
    if (*n) qsort(*out, *n, sizeof **out, s_msg_cmp);
    return 0;
}

__attribute__((format(printf, 2, 3))) static void s_finding(cnd_audit_reconcile_t *r,
                                                            const char *fmt, ...)
{
    size_t idx = r->n_findings++;
    if (idx >= S_MAX_FINDINGS) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **nf = realloc(r->findings, (idx + 1) * sizeof *nf);
    if (!nf) return;
    r->findings = nf;
    r->findings[idx] = strdup(buf);
}

void cnd_audit_reconcile_free(cnd_audit_reconcile_t *r)
{
    if (!r) return;
    size_t n = r->n_findings < S_MAX_FINDINGS ? r->n_findings : S_MAX_FINDINGS;
    for (size_t i = 0; i < n && r->findings; i++) free(r->findings[i]);
    free(r->findings);
    r->findings = NULL;
    r->n_findings = 0;
}

int cnd_audit_reconcile(cnd_audit_reconcile_t *r, cnd_audit_t *agent, cnd_audit_t *coordinator,
                        const char *site, const char *coord, const char *job)
{
    memset(r, 0, sizeof *r);
    if (site)
        snprintf(r->site, sizeof r->site, "%s", site);
    else
        cnd_audit_fingerprint(r->site, cnd_audit_public_key(agent));
    if (coord)
        snprintf(r->coordinator, sizeof r->coordinator, "%s", coord);
    else
        cnd_audit_fingerprint(r->coordinator, cnd_audit_public_key(coordinator));
    s_msg *sent = NULL, *recv = NULL;
    size_t ns = 0, nr = 0;
    int rc =
        s_collect(agent, CND_AUDIT_EGRESS, r->coordinator, job, &sent, &ns, &r->sent_bytes, "site");
    if (!rc)
        rc = s_collect(coordinator, CND_AUDIT_INGRESS, r->site, job, &recv, &nr, &r->received_bytes,
                       "coordinator");
    if (rc) {
        free(sent);
        return rc;
    }
    r->sent = ns;
    r->received = nr;
    size_t i = 0, j = 0;
    while (i < ns || j < nr) {
        int c = i >= ns ? 1 : j >= nr ? -1 : strcmp(sent[i].digest, recv[j].digest);
        if (c == 0 && sent[i].size != recv[j].size) c = sent[i].size < recv[j].size ? -1 : 1;
        if (c == 0) {
            r->matched++;
            if (strcmp(sent[i].type, recv[j].type) != 0) {
                r->type_mismatch++;
                s_finding(r,
                          "site entry %lld and coordinator entry %lld log the same %lld-byte "
                          "message as '%s' and '%s'",
                          (long long)sent[i].seq, (long long)recv[j].seq, (long long)sent[i].size,
                          sent[i].type, recv[j].type);
            }
            i++;
            j++;
        } else if (c < 0) {
            r->not_received++;
            s_finding(r,
                      "NOT RECEIVED: site entry %lld: sent a %lld-byte '%s' (sha256 %.16s...) "
                      "that the coordinator has no record of receiving",
                      (long long)sent[i].seq, (long long)sent[i].size, sent[i].type,
                      sent[i].digest);
            i++;
        } else {
            r->not_sent++;
            s_finding(r,
                      "NOT SENT: coordinator entry %lld: received a %lld-byte '%s' (sha256 "
                      "%.16s...) from the site that the site never logged as sent",
                      (long long)recv[j].seq, (long long)recv[j].size, recv[j].type,
                      recv[j].digest);
            j++;
        }
    }
    free(sent);
    free(recv);
    return 0;
}
