/*
 * audit_entries.c: the builders of audit_entries.h, one per action.
 *
 * Each writes the action's details with the JSON writer in the order audit_actions.h lists
 * them (the log stores details canonically, keys sorted, so the order here is for the reader)
 * and hands the record to s_append. The details every builder writes are pinned byte for byte
 * by tests/audit/test_audit_entries.c: they are what verifiers, the report and existing logs
 * expect, so a change here is a change of the log format (audit_actions.h, auditor-guide.md).
 */
#include "audit_entries.h"
#include "audit_actions.h"
#include "digest.h"
#include "json.h"

#include <stdio.h>
#include <string.h>

/* Appends the record whose details `w` holds and frees `w`. */
static int s_append(cnd_audit_t *log, cnd_jw_t *w, const char *actor, const char *action,
                    const char *subject, const char *job, const cnd_audit_digest_t *dg, size_t ndg)
{
    const char *details = cnd_jw_text(w);
    int rc;
    if (!details)
        rc = cnd_errf(CND_ENOMEM, "audit entry %s: out of memory", action);
    else {
        cnd_audit_rec_t rec = {.actor = actor,
                               .action = action,
                               .subject = subject,
                               .job = job,
                               .details = details,
                               .digests = dg,
                               .n_digests = ndg};
        rc = cnd_audit_append(log, &rec, NULL);
    }
    cnd_jw_free(w);
    return rc;
}

static void s_key_str(cnd_jw_t *w, const char *key, const char *v)
{
    cnd_jw_key(w, key);
    cnd_jw_str(w, v);
}

static void s_key_int(cnd_jw_t *w, const char *key, int64_t v)
{
    cnd_jw_key(w, key);
    cnd_jw_int(w, v);
}

/* --- identities ------------------------------------------------------------------------------ */

int cnd_audit_log_enroll(cnd_audit_t *log, const char *actor, const char *fpr, const char *name,
                         const char *role, const uint8_t pk[32], const uint8_t *cert_der,
                         size_t cert_len)
{
    char hex[65];
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "name", name);
    s_key_str(&w, "role", role);
    s_key_str(&w, "public_key", cnd_hex(hex, pk, 32));
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t d = {"certificate", {0}};
    if (cert_der) cnd_sha256(d.sha256, cert_der, cert_len);
    return s_append(log, &w, actor, CND_AUDIT_ENROLL, fpr, NULL, &d, cert_der ? 1 : 0);
}

int cnd_audit_log_cert_renew(cnd_audit_t *log, const char *actor, const cnd_audit_cert_renew_t *r)
{
    char fpr[CND_AUDIT_FPR_HEX], hex[65];
    cnd_audit_fingerprint(fpr, r->public_key);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "name", r->name);
    s_key_str(&w, "role", r->role);
    s_key_str(&w, "kind", r->rotation ? "rotation" : "renewal");
    s_key_int(&w, "serial", (int64_t)r->serial);
    s_key_int(&w, "not_after", r->not_after);
    s_key_str(&w, "public_key", cnd_hex(hex, r->public_key, 32));
    cnd_jw_key(&w, "supersedes");
    cnd_jw_obj(&w);
    s_key_str(&w, "fingerprint", r->old_fpr);
    if (r->old_known) {
        s_key_int(&w, "serial", (int64_t)r->old_serial);
        s_key_int(&w, "not_after", r->old_not_after);
    }
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg[2] = {{"certificate", {0}}, {"superseded_certificate", {0}}};
    cnd_sha256(dg[0].sha256, r->der, r->der_len);
    if (r->old_der) cnd_sha256(dg[1].sha256, r->old_der, r->old_der_len);
    return s_append(log, &w, actor, CND_AUDIT_CERT_RENEW, fpr, NULL, dg, r->old_der ? 2 : 1);
}

/* --- jobs and models ---------------------------------------------------------------------------
 */

static void s_key_strs(cnd_jw_t *w, const char *key, const char *const *v, size_t n)
{
    cnd_jw_key(w, key);
    cnd_jw_arr(w);
    for (size_t i = 0; i < n; i++) cnd_jw_str(w, v[i]);
    cnd_jw_arr_end(w);
}

int cnd_audit_log_job_create(cnd_audit_t *log, const char *actor, const cnd_audit_job_create_t *e)
{
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)e->job);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "name", e->name);
    cnd_jw_key(&w, "recipe");
    cnd_jw_raw(&w, e->recipe_json);
    s_key_int(&w, "calibration_samples", e->calibration_samples);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg[2];
    size_t nd = 0;
    if (e->teacher) {
        dg[nd].name = "teacher";
        memcpy(dg[nd++].sha256, e->teacher, 32);
    }
    dg[nd].name = "student_init";
    memcpy(dg[nd++].sha256, e->student_init, 32);
    return s_append(log, &w, actor, CND_AUDIT_JOB_CREATE, jid, jid, dg, nd);
}

int cnd_audit_log_round_start(cnd_audit_t *log, const char *actor, const cnd_audit_round_start_t *e)
{
    char jid[32], subj[32];
    snprintf(jid, sizeof jid, "%lld", (long long)e->job);
    snprintf(subj, sizeof subj, "round %u", e->round);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_int(&w, "round", e->round);
    s_key_int(&w, "attempt", e->attempt);
    s_key_strs(&w, "sites", e->sites, e->n_sites);
    s_key_int(&w, "model_version", e->model_version);
    cnd_jw_key(&w, "qat");
    cnd_jw_bool(&w, e->qat != 0);
    cnd_jw_key(&w, "secagg");
    cnd_jw_obj(&w);
    s_key_int(&w, "threshold", e->threshold);
    s_key_int(&w, "degree", e->degree);
    s_key_int(&w, "min_survivors", e->min_survivors);
    s_key_int(&w, "ring_bits", e->ring_bits);
    s_key_int(&w, "length", e->length);
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg = {"global_model", {0}};
    memcpy(dg.sha256, e->global_model, 32);
    return s_append(log, &w, actor, CND_AUDIT_ROUND_START, subj, jid, &dg, 1);
}

int cnd_audit_log_round_end(cnd_audit_t *log, const char *actor, const cnd_audit_round_end_t *e)
{
    char subj[32];
    snprintf(subj, sizeof subj, "round %u", e->round);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_int(&w, "round", e->round);
    s_key_int(&w, "attempt", e->attempt);
    s_key_str(&w, "status", e->status);
    s_key_strs(&w, "participants", e->participants, e->n_participants);
    s_key_strs(&w, "dropouts", e->dropouts, e->n_dropouts);
    if (e->has_metrics) {
        cnd_jw_key(&w, "metrics");
        cnd_jw_obj(&w);
        if (e->validated) {
            cnd_jw_key(&w, "accuracy");
            cnd_jw_double(&w, (double)e->correct / (double)e->validated);
            cnd_jw_key(&w, "loss");
            cnd_jw_double(&w, e->loss_sum / (double)e->validated);
            s_key_int(&w, "validated", (int64_t)e->validated);
        }
        s_key_int(&w, "samples", (int64_t)e->samples);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_key(&w, "qat");
    cnd_jw_bool(&w, e->qat != 0);
    if (e->reason && e->reason[0]) s_key_str(&w, "reason", e->reason);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg[2];
    size_t nd = 0;
    if (e->aggregate) {
        dg[nd].name = "aggregate";
        memcpy(dg[nd++].sha256, e->aggregate, 32);
    }
    if (e->model) {
        dg[nd].name = "model";
        memcpy(dg[nd++].sha256, e->model, 32);
    }
    return s_append(log, &w, actor, CND_AUDIT_ROUND_END, subj, e->job, nd ? dg : NULL, nd);
}

int cnd_audit_log_job_state(cnd_audit_t *log, const char *actor, int64_t job, const char *state,
                            const char *reason)
{
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)job);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "state", state);
    if (reason) s_key_str(&w, "reason", reason);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_JOB_STATE, jid, jid, NULL, 0);
}

int cnd_audit_log_model_version(cnd_audit_t *log, const char *actor,
                                const cnd_audit_model_version_t *m)
{
    char hex[65];
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "version", m->version);
    if (m->round > 0) s_key_int(&w, "round", m->round);
    s_key_str(&w, "format", m->format);
    s_key_int(&w, "size", (int64_t)m->size);
    if (m->has_accuracy) {
        cnd_jw_key(&w, "accuracy");
        cnd_jw_double(&w, m->accuracy);
    }
    if (m->source) s_key_str(&w, "source", cnd_hex(hex, m->source, 32));
    if (m->samples >= 0) s_key_int(&w, "samples", m->samples);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t d = {"model", {0}};
    memcpy(d.sha256, m->digest, 32);
    return s_append(log, &w, actor, CND_AUDIT_MODEL_VERSION, m->version, m->job, &d, 1);
}

int cnd_audit_log_artifact_sign(cnd_audit_t *log, const char *actor,
                                const cnd_audit_artifact_sign_t *a)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "version", a->version);
    s_key_str(&w, "variant", a->variant);
    s_key_int(&w, "sequence", (int64_t)a->sequence);
    s_key_int(&w, "size", (int64_t)a->size);
    s_key_str(&w, "device_class", a->device_class);
    s_key_int(&w, "expires", a->expires);
    cnd_jw_key(&w, "rollback");
    cnd_jw_bool(&w, a->rollback != 0);
    s_key_str(&w, "signer", a->signer);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg[2] = {{"artifact", {0}}, {"manifest", {0}}};
    memcpy(dg[0].sha256, a->artifact, 32);
    cnd_sha256(dg[1].sha256, a->manifest, a->manifest_len);
    return s_append(log, &w, actor, CND_AUDIT_ARTIFACT_SIGN, a->version, a->job, dg, 2);
}

/* --- rollouts ----------------------------------------------------------------------------------
 */

int cnd_audit_log_rollout_create(cnd_audit_t *log, const char *actor,
                                 const cnd_audit_rollout_create_t *c)
{
    char rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)c->rollout);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "rollout", rid);
    s_key_str(&w, "version", c->version);
    s_key_str(&w, "select", c->select);
    s_key_int(&w, "devices", c->devices);
    s_key_int(&w, "canary", c->canary);
    s_key_int(&w, "selected", c->selected);
    s_key_int(&w, "unfit", c->unfit);
    s_key_int(&w, "current", c->current);
    s_key_int(&w, "waves", c->waves);
    cnd_jw_key(&w, "policy");
    cnd_jw_obj(&w);
    s_key_int(&w, "rate", c->rate);
    cnd_jw_key(&w, "factor");
    cnd_jw_double(&w, c->factor);
    cnd_jw_key(&w, "abort_failures_pct");
    cnd_jw_double(&w, c->abort_failures_pct);
    s_key_int(&w, "abort_min", c->abort_min);
    s_key_int(&w, "device_timeout_s", c->device_timeout_s);
    s_key_str(&w, "window", c->window);
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_ROLLOUT_CREATE, rid, c->job, NULL, 0);
}

int cnd_audit_log_rollout_state(cnd_audit_t *log, const char *actor, int64_t rollout,
                                const char *job, const char *state, const char *reason)
{
    char rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)rollout);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "rollout", rid);
    s_key_str(&w, "state", state);
    if (reason) s_key_str(&w, "reason", reason);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_ROLLOUT_STATE, rid, job, NULL, 0);
}

int cnd_audit_log_rollout_wave(cnd_audit_t *log, const char *actor,
                               const cnd_audit_rollout_wave_t *v)
{
    char rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)v->rollout);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "rollout", rid);
    s_key_int(&w, "wave", v->wave);
    s_key_int(&w, "devices", v->devices);
    s_key_int(&w, "succeeded", v->succeeded);
    s_key_int(&w, "failed", v->failed);
    s_key_int(&w, "timed_out", v->timed_out);
    s_key_int(&w, "deferred", v->deferred);
    s_key_str(&w, "state", v->state);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_ROLLOUT_WAVE, rid, v->job, NULL, 0);
}

int cnd_audit_log_rollout_device(cnd_audit_t *log, const char *actor,
                                 const cnd_audit_rollout_device_t *d)
{
    char rid[32];
    snprintf(rid, sizeof rid, "%lld", (long long)d->rollout);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "rollout", rid);
    s_key_int(&w, "wave", d->wave);
    s_key_str(&w, "device", d->device);
    s_key_str(&w, "outcome", d->outcome);
    if (d->reason) s_key_str(&w, "reason", d->reason);
    if (d->latency_us) s_key_int(&w, "latency_us", d->latency_us);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_ROLLOUT_DEVICE, d->subject, d->job, NULL, 0);
}

/* --- messages ----------------------------------------------------------------------------------
 */

int cnd_audit_log_message(cnd_audit_t *log, char dir, const char *actor, const char *peer,
                          const char *job, const char *type, int64_t round, const void *bytes,
                          size_t len, uint64_t *seq)
{
    if (dir != 'E' && dir != 'I')
        return cnd_errf(CND_EINVAL, "audit message direction must be E or I");
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "peer", peer ? peer : "");
    if (round >= 0) s_key_int(&w, "round", round);
    s_key_int(&w, "size", (int64_t)len);
    s_key_str(&w, "type", type ? type : "");
    cnd_jw_obj_end(&w);
    const char *details = cnd_jw_text(&w);
    if (!details) {
        cnd_jw_free(&w);
        return CND_ENOMEM;
    }
    cnd_audit_digest_t d = {"message", {0}};
    cnd_sha256(d.sha256, bytes, len);
    /* not s_append: the caller wants the entry's sequence number (the agent's store keeps it) */
    cnd_audit_rec_t rec = {
        actor, dir == 'E' ? CND_AUDIT_EGRESS : CND_AUDIT_INGRESS, peer, job, details, &d, 1};
    int rc = cnd_audit_append(log, &rec, seq);
    cnd_jw_free(&w);
    return rc;
}

/* --- refusals and sessions ---------------------------------------------------------------------
 */

int cnd_audit_log_reject_connection(cnd_audit_t *log, const char *actor, const char *key_hex,
                                    const char *address, const char *reason)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "address", address);
    s_key_str(&w, "reason", reason);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_REJECT_CONNECTION, key_hex, NULL, NULL, 0);
}

int cnd_audit_log_reject_message(cnd_audit_t *log, const char *actor,
                                 const cnd_audit_reject_message_t *m)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    if (m->peer) s_key_str(&w, "peer", m->peer);
    s_key_str(&w, "type", m->type);
    s_key_int(&w, "size", (int64_t)m->len);
    s_key_str(&w, "reason", m->reason);
    s_key_str(&w, "code", m->code);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg = {"message", {0}};
    cnd_sha256(dg.sha256, m->bytes, m->len);
    return s_append(log, &w, actor, CND_AUDIT_REJECT_MESSAGE, m->subject, NULL, &dg, 1);
}

int cnd_audit_log_reject_summary(cnd_audit_t *log, const char *actor, const char *action,
                                 const char *peer, const char *reason, uint64_t count,
                                 uint64_t recorded, int64_t seconds)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "action", action);
    s_key_str(&w, "peer", peer);
    s_key_str(&w, "reason", reason);
    s_key_int(&w, "count", (int64_t)count);
    s_key_int(&w, "recorded", (int64_t)recorded);
    s_key_int(&w, "seconds", seconds);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_REJECT_SUMMARY, peer, NULL, NULL, 0);
}

int cnd_audit_log_session_end(cnd_audit_t *log, const char *actor, const char *fpr,
                              const char *name, const char *reason, const char *detail,
                              const char *address)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "name", name);
    s_key_str(&w, "reason", reason);
    s_key_str(&w, "detail", detail);
    s_key_str(&w, "address", address);
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_SESSION_END, fpr, NULL, NULL, 0);
}

int cnd_audit_log_site_refuse(cnd_audit_t *log, const char *actor, const char *coord_fpr,
                              const char *job, const char *what, const char *reason, uint32_t round,
                              uint32_t attempt)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_str(&w, "what", what);
    s_key_str(&w, "reason", reason);
    if (round) {
        s_key_int(&w, "round", round);
        s_key_int(&w, "attempt", attempt);
    }
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_SITE_REFUSE, coord_fpr, job, NULL, 0);
}

int cnd_audit_log_dp_spend(cnd_audit_t *log, const char *actor, const char *coord_fpr,
                           const char *job, const cnd_audit_dp_spend_t *e)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    s_key_int(&w, "round", e->round);
    s_key_int(&w, "attempt", e->attempt);
    cnd_jw_key(&w, "q");
    cnd_jw_double(&w, e->q);
    cnd_jw_key(&w, "sigma");
    cnd_jw_double(&w, e->sigma);
    s_key_int(&w, "steps", e->steps);
    cnd_jw_key(&w, "delta");
    cnd_jw_double(&w, e->delta);
    cnd_jw_key(&w, "epsilon");
    cnd_jw_double(&w, e->epsilon);
    cnd_jw_key(&w, "total_delta");
    cnd_jw_double(&w, e->total_delta);
    cnd_jw_key(&w, "epsilon_total");
    cnd_jw_double(&w, e->epsilon_total);
    if (e->ddg.parties) { /* distributed DP: what audit_privacy.c needs to replay the release */
        cnd_jw_key(&w, "mechanism");
        cnd_jw_str(&w, "ddg");
        cnd_jw_key(&w, "l2");
        cnd_jw_double(&w, e->ddg.l2);
        cnd_jw_key(&w, "l1");
        cnd_jw_double(&w, e->ddg.l1);
        cnd_jw_key(&w, "s2");
        cnd_jw_double(&w, e->ddg.s2);
        s_key_int(&w, "parties", e->ddg.parties);
        s_key_int(&w, "dim", (int64_t)e->ddg.dim);
    }
    cnd_jw_obj_end(&w);
    return s_append(log, &w, actor, CND_AUDIT_DP_SPEND, coord_fpr, job, NULL, 0);
}

/* --- operator actions --------------------------------------------------------------------------
 */

int cnd_audit_log_admin(cnd_audit_t *log, const char *actor, const char *command, int argc,
                        const char *const *argv, const char *subject, const char *job,
                        const char *result)
{
    char action[80];
    int n = snprintf(action, sizeof action, "%s%s", CND_AUDIT_ADMIN_PREFIX, command);
    if (n < 0 || (size_t)n >= sizeof action)
        return cnd_errf(CND_EINVAL, "admin command name '%s' is too long", command);
    if (argc < 1 || !argv)
        return cnd_errf(CND_EINVAL, "%s: the command line was not recorded (cnd_cli_record_argv)",
                        action);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "argv");
    cnd_jw_arr(&w);
    for (int i = 0; i < argc; i++) cnd_jw_str(&w, argv[i]);
    cnd_jw_arr_end(&w);
    s_key_str(&w, "result", result ? result : "");
    cnd_jw_obj_end(&w);
    const char *details = cnd_jw_text(&w);
    /* The words read back must be the words given: the writer replaces invalid UTF-8 with
     * U+FFFD, which would record a command line that was never run. */
    cnd_json_t *v = NULL;
    int rc = details ? cnd_json_parse(&v, details, strlen(details)) : CND_ENOMEM;
    const cnd_json_t *a = rc ? NULL : cnd_json_get(v, "argv");
    for (int i = 0; !rc && i < argc; i++)
        if (!a || a->n != (size_t)argc || strcmp(cnd_json_str(a->items[i]), argv[i]) != 0)
            rc = cnd_errf(CND_EINVAL,
                          "%s: word %d of the command line is not valid UTF-8: the audit log "
                          "records command lines exactly and cannot hold it",
                          action, i);
    cnd_json_free(&v);
    if (rc) {
        cnd_jw_free(&w);
        return rc;
    }
    return s_append(log, &w, actor, action, subject, job, NULL, 0);
}
