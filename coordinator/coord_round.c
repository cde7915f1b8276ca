/*
 * coord_round.c: the coordinator's round state machine (see coord_round.h).
 *
 * Invariants:
 *   - r->rec mirrors the persisted round row; every change of phase or outcome goes through
 *     s_persist(), which writes it, and io->commit() runs before any message of the next phase
 *     leaves, so what a site sees never runs ahead of what a restarted coordinator would find.
 *   - Site statuses are the SecAgg+ server's (crypto/secagg.h) plus CND_RSITE_* bits; the server
 *     object is the authority on who advertised, shared, masked and unmasked.
 *   - Nothing from a site is used before crypto/ or the assembler accepted it; a refused
 *     message changes nothing here either.
 */
#include "coord_round.h"
#include "coord_autoc.h"
#include "quant_fed.h"
#include "json.h"
#include "job_dp.h"
#include "chunk.h"
#include "clock.h"
#include "digest.h"
#include "autocompress_fed.h"
#include "fixedpoint.h"
#include "modelfile.h"
#include "secagg.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cnd_assembler_t *a; /* NULL when the slot is free */
    uint32_t idx;       /* uploading site */
} s_upload_t;

struct cnd_round {
    cnd_coord_t *c;
    cnd_round_io_t io;
    cnd_job_spec_t spec;
    cnd_round_rec_t rec;         /* the persisted row and its sites */
    cnd_secagg_member_t *roster; /* n identity keys and certificate digests, SecAgg+ order */
    const uint8_t **cert;        /* n DER certificates, borrowed from the caller's sessions: valid
                                    only during cnd_round_start, and NULL after it */
    size_t *cert_len;
    cnd_secagg_params_t sp;
    cnd_fxp_params_t fp;
    cnd_fxp_layout_t lay;
    cnd_secagg_server_t *sa;
    uint8_t *model; /* the global model file bytes sent this round */
    size_t model_len;
    Condenser__ObjectInfo model_info;
    uint8_t model_digest[32];
    int64_t model_version; /* version of that model */
    cnd_phase_t phase;
    double phase_start; /* cnd_now() when the phase opened */
    double deadline;    /* cnd_now() when it closes at the latest */
    s_upload_t up[CND_ROUND_MAX_UPLOADS];
    int max_uploads; /* concurrent uploads allowed: the budget over one upload's size */
    int ended;       /* 1 after RoundEnd went out */
    int dirty;       /* site statuses changed since the round row was last written */
    double saved_at; /* cnd_now() of the last write of the round row */
    int ok;          /* ended with a new model version */
    int64_t new_version;
    unsigned threads;
    /* an evaluation round of an autocompress job (coord_autoc.h): eval_k > 0 candidates, the
     * job's candidate indices in bundle order, and the count layout of the sites' vectors */
    uint32_t eval_k;
    uint32_t eval_ids[CND_AUTOC_FED_MAX];
    cnd_autoc_fed_layout_t elay;
};

static const char *const s_phase_names[] = {"idle",        "advertise", "share", "masked",
                                            "consistency", "unmask",    "done"};
_Static_assert(sizeof s_phase_names / sizeof s_phase_names[0] == CND_PHASE_DONE + 1,
               "one name per phase");

static void s_sync_status(cnd_round_t *r)
{
    if (!r->sa) return;
    const uint8_t *st = cnd_secagg_server_status(r->sa);
    for (uint32_t i = 0; i < r->rec.n; i++)
        r->rec.sites[i].status = (r->rec.sites[i].status & ~0xffu) | st[i];
}

static int s_persist(cnd_round_t *r)
{
    r->dirty = 0;
    r->saved_at = cnd_now();
    s_sync_status(r);
    r->rec.phase_ms = cnd_unix_ms();
    snprintf(r->rec.phase, sizeof r->rec.phase, "%s", s_phase_names[r->phase]);
    return cnd_cstore_round_update(r->c->store, &r->rec);
}

static void s_open_phase(cnd_round_t *r, cnd_phase_t ph)
{
    r->phase = ph;
    r->phase_start = cnd_now();
    /* deadlines: advertise, share, masked input, then unmask_ms for consistency and unmask */
    int i = ph - CND_PHASE_ADVERTISE;
    if (i > 3) i = 3;
    r->deadline = r->phase_start + (double)r->spec.deadline_ms[i] / 1e3;
}

/* --- audit ---------------------------------------------------------------------------------- */

/* The fingerprints of the round's sites whose status has (want 1) or lacks (want 0) `need`. */
static size_t s_fprs(const cnd_round_t *r, uint32_t need, int want, const char **out)
{
    size_t n = 0;
    for (uint32_t i = 0; i < r->rec.n; i++)
        if (((r->rec.sites[i].status & need) != 0) == want) out[n++] = r->rec.sites[i].fpr;
    return n;
}

static int s_audit_round_end(cnd_round_t *r, const char *status, const uint8_t *agg_digest,
                             const uint8_t *model_digest)
{
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)r->rec.job);
    int applied = strcmp(status, "ok") == 0;
    const char **in = calloc(r->rec.n + 1, sizeof *in), **out = calloc(r->rec.n + 1, sizeof *out);
    if (!in || !out) {
        free(in);
        free(out);
        return cnd_errf(CND_ENOMEM, "round %u: out of memory", r->rec.round);
    }
    cnd_audit_round_end_t e = {.job = jid,
                               .round = r->rec.round,
                               .attempt = r->rec.attempt,
                               .status = status,
                               .participants = in,
                               .n_participants =
                                   applied ? s_fprs(r, CND_SECAGG_ST_MASKED, 1, in) : 0,
                               .dropouts = out,
                               .n_dropouts = s_fprs(r, CND_SECAGG_ST_MASKED, 0, out),
                               .has_metrics = applied && r->rec.samples,
                               .validated = r->rec.validated,
                               .correct = r->rec.correct,
                               .samples = r->rec.samples,
                               .loss_sum = r->rec.loss_sum,
                               .qat = r->rec.qat,
                               .reason = r->rec.reason,
                               .aggregate = agg_digest,
                               .model = model_digest};
    int rc = cnd_audit_log_round_end(r->c->audit, r->c->fpr, &e);
    free(in);
    free(out);
    if (!rc) rc = cnd_audit_checkpoint(r->c->audit, "round.end", NULL);
    return rc;
}

/* --- sending -------------------------------------------------------------------------------- */

static void s_send(cnd_round_t *r, uint32_t i, Condenser__MsgType t, void *payload)
{
    /* A failed send only means the site misses it; its deadline handles the rest. */
    (void)r->io.send(r->io.ctx, r->rec.sites[i].name, t, payload, (uint64_t)r->rec.job,
                     r->rec.round);
}

static void s_send_round_end(cnd_round_t *r, Condenser__RoundOutcome outcome)
{
    Condenser__RoundEnd re;
    condenser__round_end__init(&re);
    re.outcome = outcome;
    uint32_t surv = 0;
    for (uint32_t i = 0; i < r->rec.n; i++)
        surv += !!(r->rec.sites[i].status & CND_SECAGG_ST_MASKED);
    if (outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED) {
        re.model_digest = cnd_proto_bytes(r->model_digest, 32);
        re.survivors = surv;
    } else {
        re.reason = cnd_proto_str(r->rec.reason[0] ? r->rec.reason : "round failed");
        if (re.reason.len > CND_PROTO_TEXT_MAX) re.reason.len = CND_PROTO_TEXT_MAX;
    }
    for (uint32_t i = 0; i < r->rec.n; i++) s_send(r, i, CONDENSER__MSG_TYPE__MSG_ROUND_END, &re);
    r->ended = 1;
    r->phase = CND_PHASE_DONE;
}

/* Ends the round without applying anything. */
static void s_fail(cnd_round_t *r, const char *outcome, const char *why)
{
    if (r->ended) return;
    s_sync_status(r);
    snprintf(r->rec.outcome, sizeof r->rec.outcome, "%s", outcome);
    snprintf(r->rec.reason, sizeof r->rec.reason, "%s", why);
    r->rec.ended_ms = cnd_unix_ms();
    if (r->phase >= CND_PHASE_ADVERTISE && r->phase <= CND_PHASE_UNMASK)
        r->rec.t_phase[r->phase - CND_PHASE_ADVERTISE] = cnd_now() - r->phase_start;
    r->phase = CND_PHASE_DONE;
    /* Best effort: if the store fails the round is still over in memory, and a restart finds
     * it open and redoes it. */
    if (!s_persist(r) && !s_audit_round_end(r, "failed", NULL, NULL)) (void)r->io.commit(r->io.ctx);
    s_send_round_end(r, strcmp(outcome, "cancelled") == 0
                            ? CONDENSER__ROUND_OUTCOME__OUTCOME_CANCELLED
                        : strcmp(outcome, "retry") == 0 ? CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY
                                                        : CONDENSER__ROUND_OUTCOME__OUTCOME_FAILED);
}

/* --- test hooks ------------------------------------------------------------------------------ */

#ifdef CND_TEST_HOOKS
/* A scripted malicious coordinator for tests/coordinator/test_federation_malicious.c, compiled
 * only into test builds: CND_COORD_EVIL="replay:R,rerun:S" makes the first start of round R + 1
 * run round R again with the exact SecAgg+ parameters of its first attempt (a replay: same round
 * id, same seed, same roster, so the same digest D), and the first start of round S + 1 run round
 * S again as a new attempt (fresh parameters; the sites have already answered round S's unmask
 * requests). The sites must refuse both. Returns 1 and fills params (68 bytes) for a replay. */
static int s_evil(cnd_coord_t *c, int64_t job, uint32_t *round, uint32_t *attempt,
                  uint8_t params[68])
{
    static int done_replay, done_rerun;
    const char *e = getenv("CND_COORD_EVIL");
    unsigned rp = 0, rr = 0;
    if (!e || !*e) return 0;
    const char *p = strstr(e, "replay:"), *q = strstr(e, "rerun:");
    if (p) rp = (unsigned)atoi(p + 7);
    if (q) rr = (unsigned)atoi(q + 6);
    int replay = !done_replay && rp && *round == rp + 1;
    int rerun = !done_rerun && rr && *round == rr + 1;
    if (!replay && !rerun) return 0;
    cnd_round_rec_t *list = NULL;
    size_t n = 0;
    if (cnd_cstore_rounds(c->store, job, &list, &n)) {
        cnd_err_clear();
        return 0;
    }
    uint32_t target = replay ? rp : rr, max_attempt = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (list[i].round != target) continue;
        if (list[i].attempt > max_attempt) max_attempt = list[i].attempt;
        if (list[i].attempt == 1) {
            memcpy(params, list[i].params, 68);
            found = 1;
        }
    }
    for (size_t i = 0; i < n; i++) cnd_round_rec_free(&list[i]);
    free(list);
    if (!found) return 0;
    *round = target;
    *attempt = max_attempt + 1;
    if (replay) done_replay = 1;
    if (rerun) done_rerun = 1;
    return replay;
}

/* CND_COORD_EVIL="ddp-small:R": the first start of round R ignores the job's dp_min_survivors
 * and asks only the SecAgg+ minimum of survivors (a strict majority), as a coordinator would that
 * means to unmask a sum of fewer sites than carry the distributed noise
 * (tests/coordinator/test_federation_ddp.c). The sites must refuse. */
static int s_evil_ddp_small(uint32_t round)
{
    static int done;
    const char *e = getenv("CND_COORD_EVIL"), *p = e ? strstr(e, "ddp-small:") : NULL;
    if (done || !p || (unsigned)atoi(p + 10) != round) return 0;
    done = 1;
    return 1;
}
#endif

/* The round's SecAgg+ parameters: the threshold and survivor minimum follow the job, adjusted
 * to the neighbourhood size n sites give; a fresh round seed; the round id names job, round and
 * attempt (sites check it). */
static int s_round_params(cnd_round_t *r, const cnd_job_spec_t *spec, int64_t job_id,
                          uint32_t round, uint32_t attempt, uint32_t n)
{
    memset(&r->sp, 0, sizeof r->sp);
    r->sp.round_id = ((uint64_t)job_id << 40) | ((uint64_t)round << 12) | (attempt & 0xfff);
    randombytes_buf(r->sp.round_seed, sizeof r->sp.round_seed);
    r->sp.n = n;
    r->sp.degree = spec->neighbours ? spec->neighbours : cnd_secagg_default_degree(n);
    if (r->sp.degree > n - 1) r->sp.degree = n - 1;
    if (r->sp.degree != n - 1 && r->sp.degree % 2) r->sp.degree++;
    uint32_t k = r->sp.degree + 1, t = spec->threshold;
    if (t < k / 2 + 1) t = k / 2 + 1;
    if (t > k) t = k;
    /* distributed DP: a sparse graph lets a group of t survivors be unmasked on its own
     * (crypto/secagg.h); below dp_min_survivors the graph is complete instead */
    if (spec->dp_mode == CND_JOB_DP_DISTRIBUTED && t < spec->dp_min_survivors &&
        r->sp.degree < n - 1) {
        r->sp.degree = n - 1;
        k = n;
        t = spec->threshold > k / 2 + 1 ? spec->threshold : k / 2 + 1;
        if (t > k) t = k;
    }
    r->sp.threshold = t;
    /* crypto/secagg.h: at least the threshold and a strict majority of the round's sites */
    uint32_t ms = spec->quorum > t ? spec->quorum : t;
    if (ms < n / 2 + 1) ms = n / 2 + 1;
    /* distributed DP: no sum of fewer sites than carry the noise (proto/job_dp.h); the sites
     * refuse parameters below it */
    if (spec->dp_mode == CND_JOB_DP_DISTRIBUTED && ms < spec->dp_min_survivors)
        ms = spec->dp_min_survivors;
    if (spec->dp_mode == CND_JOB_DP_DISTRIBUTED && n < spec->dp_min_survivors)
        return cnd_errf(CND_ESTATE,
                        "round %u: %u sites, but distributed DP needs at least %u survivors "
                        "(dp_min_survivors)",
                        round, n, spec->dp_min_survivors);
#ifdef CND_TEST_HOOKS
    if (s_evil_ddp_small(round)) ms = n / 2 + 1 > t ? n / 2 + 1 : t;
#endif
    r->sp.min_survivors = ms > n ? n : ms;
    r->sp.len = r->lay.len;
    r->sp.bits = r->lay.bits;
    return cnd_secagg_params_fill(&r->sp);
}

/* The round.start audit entry: sites, model version, SecAgg+ parameters, the model's digest. */
static int s_audit_round_start(cnd_round_t *r, int64_t job_id, uint32_t round, uint32_t attempt,
                               int qat)
{
    const char **fprs = calloc(r->rec.n ? r->rec.n : 1, sizeof *fprs);
    if (!fprs) return cnd_errf(CND_ENOMEM, "round.start entry: out of memory");
    for (uint32_t i = 0; i < r->rec.n; i++) fprs[i] = r->rec.sites[i].fpr;
    cnd_audit_round_start_t e = {.job = job_id,
                                 .round = round,
                                 .attempt = attempt,
                                 .sites = fprs,
                                 .n_sites = r->rec.n,
                                 .model_version = r->model_version,
                                 .qat = qat,
                                 .threshold = r->sp.threshold,
                                 .degree = r->sp.degree,
                                 .min_survivors = r->sp.min_survivors,
                                 .ring_bits = r->sp.bits,
                                 .length = r->sp.len,
                                 .global_model = r->model_digest};
    int rc = cnd_audit_log_round_start(r->c->audit, r->c->fpr, &e);
    free(fprs);
    return rc;
}

/* RoundStart (with the certificates of every other participant: the roster every site builds
 * and signs under) and the model, site by site. */
static int s_send_round_starts(cnd_round_t *r, const cnd_job_spec_t *spec, int qat)
{
    uint32_t n = r->rec.n;
    Condenser__PeerCert *pc = calloc(n, sizeof *pc);
    Condenser__PeerCert **pcp = calloc(n, sizeof *pcp);
    if (!pc || !pcp) {
        free(pc);
        free(pcp);
        return cnd_errf(CND_ENOMEM, "round %u: out of memory", r->rec.round);
    }
    Condenser__Deadlines dl;
    condenser__deadlines__init(&dl);
    dl.advertise_ms = spec->deadline_ms[0];
    dl.share_ms = spec->deadline_ms[1];
    dl.masked_input_ms = spec->deadline_ms[2];
    dl.unmask_ms = spec->deadline_ms[3];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t np = 0;
        for (uint32_t j = 0; j < n; j++) {
            if (j == i) continue;
            condenser__peer_cert__init(&pc[np]);
            pc[np].participant_id = j;
            pc[np].node_name = cnd_proto_str(r->rec.sites[j].name);
            pc[np].certificate = cnd_proto_bytes(r->cert[j], r->cert_len[j]);
            pcp[np] = &pc[np];
            np++;
        }
        Condenser__RoundStart rs;
        condenser__round_start__init(&rs);
        rs.model = &r->model_info;
        rs.participant_id = i;
        rs.participants = n;
        rs.qat = qat;
        rs.deadlines = &dl;
        rs.secagg_params = cnd_proto_bytes(r->rec.params, sizeof r->rec.params);
        rs.n_peers = np;
        rs.peers = pcp;
        rs.candidates = r->eval_k;
        s_send(r, i, CONDENSER__MSG_TYPE__MSG_ROUND_START, &rs);
        /* A failed send only means the site misses the model; its deadline handles the rest. */
        (void)r->io.send_object(r->io.ctx, r->rec.sites[i].name, CONDENSER__OBJECT_KIND__OBJ_MODEL,
                                &r->model_info, r->model, (uint64_t)r->rec.job, r->rec.round);
    }
    free(pc);
    free(pcp);
    return 0;
}

/* --- start ---------------------------------------------------------------------------------- */

void cnd_round_destroy(cnd_round_t **pr)
{
    if (!pr || !*pr) return;
    cnd_round_t *r = *pr;
    for (int i = 0; i < CND_ROUND_MAX_UPLOADS; i++) cnd_assembler_destroy(&r->up[i].a);
    cnd_secagg_server_destroy(&r->sa);
    cnd_round_rec_free(&r->rec);
    free(r->roster);
    free(r->cert);
    free(r->cert_len);
    free(r->model);
    free(r);
    *pr = NULL;
}

/* The job's latest float model into r (its bytes, version and digest); for a QAT round with the
 * quantizer every site trains with annotated in. *dim: values per site update. */
static int s_load_model(cnd_round_t *r, int64_t job_id, const cnd_job_spec_t *spec, int qat,
                        size_t *dim)
{
    cnd_model_t *m = NULL;
    cnd_model_rec_t mrec;
    memset(&mrec, 0, sizeof mrec);
    int rc = cnd_cstore_model_latest(r->c->store, job_id, "float", &mrec, &r->model, &r->model_len);
    if (rc) return rc;
    r->model_version = mrec.version;
    memcpy(r->model_digest, mrec.digest, 32);
    cnd_model_rec_free(&mrec);
    if ((rc = cnd_model_deserialize(&m, r->model, r->model_len, "the global model"))) return rc;
    *dim = m->num_params + m->num_state;
    if (qat) {
        cnd_dataset_t *cal = NULL;
        if ((rc = cnd_cstore_calib_get(r->c->store, job_id, &cal))) {
            if (rc == CND_ENOTFOUND)
                rc = cnd_errf(CND_ESTATE, "QAT round without calibration samples in the job");
            goto done;
        }
        rc = cnd_fedq_annotate(m, cal, (int)spec->weight_bits);
        cnd_data_destroy(&cal);
        if (rc) goto done;
        free(r->model);
        r->model = NULL;
        if ((rc = cnd_model_serialize(m, &r->model, &r->model_len))) goto done;
        cnd_sha256(r->model_digest, r->model, r->model_len);
    }
done:
    cnd_model_destroy(&m);
    return rc;
}

/* The roster (identity key and certificate digest per index) and the round's site records. */
static int s_set_roster(cnd_round_t *r, const cnd_round_site_t *sites, uint32_t n, uint32_t round)
{
    r->roster = calloc(n, sizeof *r->roster);
    r->cert = calloc(n, sizeof *r->cert);
    r->cert_len = calloc(n, sizeof *r->cert_len);
    r->rec.sites = calloc(n, sizeof *r->rec.sites);
    if (!r->roster || !r->cert || !r->cert_len || !r->rec.sites)
        return cnd_errf(CND_ENOMEM, "round %u: out of memory", round);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(r->roster[i].id_pk, sites[i].ed_pk, 32);
        cnd_rsite_t *x = &r->rec.sites[i];
        x->idx = i;
        snprintf(x->name, sizeof x->name, "%s", sites[i].name);
        snprintf(x->fpr, sizeof x->fpr, "%s", sites[i].fpr);
        if (!sites[i].cert || !sites[i].cert_len)
            return cnd_errf(CND_EINVAL, "round %u: site %s has no certificate", round,
                            sites[i].name);
        r->cert[i] = sites[i].cert;
        r->cert_len[i] = sites[i].cert_len;
        cnd_sha256(r->roster[i].cert_sha256, sites[i].cert, sites[i].cert_len);
    }
    return 0;
}

/* Persists the round row and its round.start entry, committed before anything is sent. */
static int s_record_start(cnd_round_t *r, int64_t job_id, uint32_t round, uint32_t attempt, int qat,
                          uint32_t n)
{
    r->rec.job = job_id;
    r->rec.round = round;
    r->rec.attempt = attempt;
    r->rec.qat = qat;
    r->rec.n = n;
    r->rec.model_version = -1;
    r->rec.started_ms = cnd_unix_ms();
    r->rec.phase_ms = r->rec.started_ms;
    snprintf(r->rec.phase, sizeof r->rec.phase, "advertise");
    cnd_buf_t pb;
    cnd_buf_init(&pb);
    int rc = cnd_secagg_params_encode(&pb, &r->sp);
    if (!rc && pb.len != sizeof r->rec.params)
        rc = cnd_errf(CND_EINVAL, "round %u: unexpected parameter encoding", round);
    if (!rc) memcpy(r->rec.params, pb.data, pb.len);
    cnd_buf_free(&pb);
    if (!rc) rc = cnd_cstore_round_insert(r->c->store, &r->rec);
    if (!rc) rc = s_audit_round_start(r, job_id, round, attempt, qat);
    if (!rc) rc = r->io.commit(r->io.ctx);
    return rc;
}

/* A training round's model and update layout: the job's latest float model, its update
 * (num_params + num_state values) encoded as crypto/fixedpoint.h says. */
static int s_load_update(cnd_round_t *r, int64_t job_id, const cnd_job_spec_t *spec, int qat,
                         uint32_t n, uint32_t round)
{
    size_t dim = 0;
    int rc = s_load_model(r, job_id, spec, qat, &dim);
    if (rc) return rc;
    if (dim > UINT32_MAX / 2)
        return cnd_errf(CND_ERANGE, "round %u: the model has %zu values; too many", round, dim);
    r->fp = (cnd_fxp_params_t){(uint32_t)dim,   n, spec->value_bits, spec->clip, spec->l2_clip,
                               spec->sample_cap};
    if (spec->dp_mode == CND_JOB_DP_DISTRIBUTED) { /* the sites' encoding (proto/job_dp.h) */
        cnd_dp_ddg_t m;
        if ((rc = cnd_job_ddp_mech(spec, dim, &r->fp.ddp_s2, &m))) return rc;
        r->fp.clip = (float)spec->dp_clip;
        r->fp.l2_max = 0;
    }
    return cnd_fxp_layout(&r->lay, &r->fp);
}

/* An evaluation round's object and layout: the bundle of the candidates still in the race, and
 * the count vector of compress/autocompress_fed.h (validated + one count per candidate). */
static int s_load_candidates(cnd_round_t *r, int64_t job_id, const cnd_job_spec_t *spec, uint32_t n)
{
    int rc = cnd_autoc_bundle_alive(r->c->store, job_id, &r->model, &r->model_len, r->eval_ids,
                                    &r->eval_k);
    if (rc) return rc;
    r->model_version = -1;
    cnd_sha256(r->model_digest, r->model, r->model_len);
    if ((rc = cnd_autoc_fed_layout(&r->elay, r->eval_k, n, spec->sample_cap))) return rc;
    memset(&r->lay, 0, sizeof r->lay);
    r->lay.len = r->elay.len;
    r->lay.bits = r->elay.bits;
    return 0;
}

static int s_start(cnd_round_t **out, cnd_coord_t *c, const cnd_round_io_t *io, int64_t job_id,
                   const cnd_job_spec_t *spec, uint32_t round, uint32_t attempt,
                   const cnd_round_site_t *sites, uint32_t n, int qat, unsigned threads, int eval)
{
    *out = NULL;
    int evil_replay = 0;
    uint8_t evil_params[68] = {0};
#ifdef CND_TEST_HOOKS
    evil_replay = s_evil(c, job_id, &round, &attempt, evil_params);
#endif
    if (n < 2 || n > CND_PROTO_MAX_PEERS + 1)
        return cnd_errf(CND_EINVAL, "round %u: %u sites (2..%d)", round, n,
                        CND_PROTO_MAX_PEERS + 1);
    cnd_round_t *r = calloc(1, sizeof *r);
    if (!r) return cnd_errf(CND_ENOMEM, "round %u: out of memory", round);
    r->c = c;
    r->io = *io;
    r->spec = *spec;
    r->threads = threads;
    r->new_version = -1;
    int rc = eval ? s_load_candidates(r, job_id, spec, n)
                  : s_load_update(r, job_id, spec, qat, n, round);
    if (rc) goto fail;
    if ((rc = s_round_params(r, spec, job_id, round, attempt, n))) goto fail;
    if (evil_replay && (rc = cnd_secagg_params_decode(&r->sp, evil_params, sizeof evil_params)))
        goto fail;
    size_t one = CND_SECAGG_HDR_BYTES + 5 + cnd_ring_packed_bytes(r->sp.len, r->sp.bits);
    size_t nup = CND_ROUND_UPLOAD_BUDGET / (one ? one : 1);
    r->max_uploads = nup < 4 ? 4 : nup > CND_ROUND_MAX_UPLOADS ? CND_ROUND_MAX_UPLOADS : (int)nup;
    if ((rc = s_set_roster(r, sites, n, round))) goto fail;
    if ((rc = cnd_secagg_server_new(&r->sa, &r->sp, r->roster, threads))) goto fail;
    uint8_t dig[32];
    if ((rc = cnd_chunk_plan(&r->model_info, dig, r->model, r->model_len, CND_PROTO_CHUNK_DEFAULT)))
        goto fail;
    r->model_info.digest = cnd_proto_bytes(r->model_digest, 32);
    if ((rc = s_record_start(r, job_id, round, attempt, qat, n))) goto fail;
    if ((rc = s_send_round_starts(r, spec, qat))) goto fail;
    /* The certificates were borrowed for RoundStart only. */
    free(r->cert);
    free(r->cert_len);
    r->cert = NULL;
    r->cert_len = NULL;
    s_open_phase(r, CND_PHASE_ADVERTISE);
    *out = r;
    return 0;
fail:
    cnd_round_destroy(&r);
    return rc;
}

int cnd_round_start(cnd_round_t **out, cnd_coord_t *c, const cnd_round_io_t *io, int64_t job_id,
                    const cnd_job_spec_t *spec, uint32_t round, uint32_t attempt,
                    const cnd_round_site_t *sites, uint32_t n, int qat, unsigned threads)
{
    return s_start(out, c, io, job_id, spec, round, attempt, sites, n, qat, threads, 0);
}

int cnd_round_start_eval(cnd_round_t **out, cnd_coord_t *c, const cnd_round_io_t *io,
                         int64_t job_id, const cnd_job_spec_t *spec, uint32_t round,
                         uint32_t attempt, const cnd_round_site_t *sites, uint32_t n,
                         unsigned threads)
{
    return s_start(out, c, io, job_id, spec, round, attempt, sites, n, 0, threads, 1);
}

uint32_t cnd_round_candidates(const cnd_round_t *r)
{
    return r->eval_k;
}

/* --- phases --------------------------------------------------------------------------------- */

int cnd_round_site_index(const cnd_round_t *r, const char *site)
{
    for (uint32_t i = 0; i < r->rec.n; i++)
        if (strcmp(r->rec.sites[i].name, site) == 0) return (int)i;
    return -1;
}

void cnd_round_view(const cnd_round_t *r, cnd_round_view_t *v)
{
    v->job_id = (uint64_t)r->rec.job;
    v->round = r->rec.round;
    v->phase = r->phase;
}

uint32_t cnd_round_number(const cnd_round_t *r)
{
    return r->rec.round;
}

const char *cnd_round_reason(const cnd_round_t *r)
{
    return r->rec.reason;
}

int cnd_round_result(const cnd_round_t *r, int64_t *version)
{
    if (version) *version = r->new_version;
    return r->ok;
}

double cnd_round_time_left(const cnd_round_t *r, double now)
{
    if (r->ended) return 0;
    double left = r->deadline - now;
    return left > 0 ? left : 0;
}

/* The SecAgg+ status bits a site needs to be expected in a phase, and the one that answers it. */
static int s_phase_bits(cnd_phase_t ph, uint8_t *need, uint8_t *have)
{
    switch (ph) {
    case CND_PHASE_ADVERTISE: *need = 0, *have = CND_SECAGG_ST_ADVERTISED; return 1;
    case CND_PHASE_SHARE: *need = CND_SECAGG_ST_ADVERTISED, *have = CND_SECAGG_ST_SHARED; return 1;
    case CND_PHASE_MASKED: *need = CND_SECAGG_ST_SHARED, *have = CND_SECAGG_ST_MASKED; return 1;
    case CND_PHASE_CONSISTENCY:
        *need = CND_SECAGG_ST_MASKED, *have = CND_SECAGG_ST_SIGNED;
        return 1;
    case CND_PHASE_UNMASK: *need = CND_SECAGG_ST_SIGNED, *have = CND_SECAGG_ST_UNMASKED; return 1;
    default: return 0;
    }
}

static int s_awaits(cnd_phase_t ph, uint32_t status)
{
    uint8_t need, have;
    if (!s_phase_bits(ph, &need, &have)) return 0;
    if (status & (CND_RSITE_FAILED | CND_RSITE_LOST)) return 0;
    return (status & need) == need && !(status & have);
}

int cnd_round_awaits(const char *phase, uint32_t status)
{
    for (int p = CND_PHASE_ADVERTISE; p <= CND_PHASE_UNMASK; p++)
        if (phase && strcmp(phase, s_phase_names[p]) == 0) return s_awaits((cnd_phase_t)p, status);
    return 0;
}

/* Whether every site still expected in the current phase has answered. */
static int s_phase_complete(const cnd_round_t *r)
{
    const uint8_t *st = cnd_secagg_server_status(r->sa);
    for (uint32_t i = 0; i < r->rec.n; i++)
        if (s_awaits(r->phase, (r->rec.sites[i].status & ~0xffu) | st[i])) return 0;
    return 1;
}

static void s_close_phase_time(cnd_round_t *r)
{
    r->rec.t_phase[r->phase - CND_PHASE_ADVERTISE] = cnd_now() - r->phase_start;
}

/* Opens `next` after persisting it, then sends its opening message to every site whose status
 * has `flag`, built by msg(). */
typedef int (*s_msg_fn)(cnd_secagg_server_t *s, cnd_buf_t *out, uint32_t v);

static int s_next_phase(cnd_round_t *r, cnd_phase_t next, uint8_t flag, s_msg_fn msg,
                        Condenser__MsgType type)
{
    s_close_phase_time(r);
    s_open_phase(r, next);
    int rc = s_persist(r);
    if (!rc) rc = r->io.commit(r->io.ctx);
    if (rc) return rc;
    const uint8_t *st = cnd_secagg_server_status(r->sa);
    for (uint32_t i = 0; i < r->rec.n; i++) {
        if (!(st[i] & flag) || (r->rec.sites[i].status & (CND_RSITE_FAILED | CND_RSITE_LOST)))
            continue;
        cnd_buf_t b;
        cnd_buf_init(&b);
        if (msg(r->sa, &b, i) == 0 && !b.err) {
            ProtobufCBinaryData body = cnd_proto_bytes(b.data, b.len);
            Condenser__KeyRoster kr;
            Condenser__SharesRelay sr;
            Condenser__ConsistencyRequest cr;
            Condenser__UnmaskRequest ur;
            void *payload = NULL;
            switch (type) {
            case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
                condenser__key_roster__init(&kr);
                kr.keys = body;
                payload = &kr;
                break;
            case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
                condenser__shares_relay__init(&sr);
                sr.shares_for = body;
                payload = &sr;
                break;
            case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
                condenser__consistency_request__init(&cr);
                cr.request = body;
                payload = &cr;
                break;
            case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
                condenser__unmask_request__init(&ur);
                ur.request = body;
                payload = &ur;
                break;
            default: break;
            }
            if (payload) s_send(r, i, type, payload);
        }
        cnd_buf_free(&b);
    }
    /* The phase was opened before the sends; time spent sending counts toward it. */
    return 0;
}

/* SHA-256 of the recovered sum as little-endian 32-bit words (the round.end "aggregate"). */
static int s_sum_digest(const cnd_round_t *r, const uint32_t *sum, uint8_t agg[32])
{
    cnd_sha256_t *h = cnd_sha256_new();
    if (!h) return cnd_errf(CND_ENOMEM, "round %u: out of memory", r->rec.round);
    for (uint32_t i = 0; i < r->sp.len; i++) {
        uint8_t le[4];
        cnd_st_le32(le, sum[i]);
        cnd_sha256_update(h, le, 4);
    }
    cnd_sha256_final(h, agg);
    cnd_sha256_destroy(&h);
    return 0;
}

/* The global model with the decoded average applied (server learning rate and momentum, whose
 * new state is left in *mom_out when the job uses momentum), serialised into *blob. */
static int s_updated_model(cnd_round_t *r, const float *avg, float **mom_out, uint8_t **blob,
                           size_t *len)
{
    cnd_model_t *m = NULL;
    float *mom = NULL;
    int rc = cnd_model_deserialize(&m, r->model, r->model_len, "the global model");
    if (rc) return rc;
    if (r->spec.server_momentum > 0) {
        mom = calloc(m->num_params ? m->num_params : 1, sizeof *mom);
        if (!mom) {
            rc = cnd_errf(CND_ENOMEM, "round %u: out of memory", r->rec.round);
            goto done;
        }
        rc = cnd_cstore_momentum_get(r->c->store, r->rec.job, mom, m->num_params);
        if (rc == CND_ENOTFOUND) rc = 0; /* first round: zero momentum */
        if (rc) goto done;
    }
    cnd_fedavg_apply(m->params, m->num_params, m->state, m->num_state, avg, mom, r->spec.server_lr,
                     r->spec.server_momentum);
    for (size_t i = 0; i < m->num_params; i++)
        if (!isfinite(m->params[i])) {
            rc = cnd_errf(CND_ERANGE, "round %u: the updated model has a non-finite parameter",
                          r->rec.round);
            goto done;
        }
    char buf[64];
    snprintf(buf, sizeof buf, "%u", r->rec.round);
    if ((rc = cnd_model_meta_set(m, "federated_round", buf))) goto done;
    if ((rc = cnd_model_serialize(m, blob, len))) goto done;
    if (mom && (rc = cnd_cstore_momentum_put(r->c->store, r->rec.job, mom, m->num_params)))
        goto done;
done:
    cnd_model_destroy(&m);
    if (rc)
        free(mom);
    else
        *mom_out = mom;
    return rc;
}

/* Stores the new model version and the finished round with their audit entries (round.end,
 * model.version). */
static int s_store_version(cnd_round_t *r, const uint8_t *blob, size_t len,
                           const cnd_fxp_totals_t *tot, uint32_t surv, const uint8_t agg[32],
                           double t0)
{
    uint64_t ws = tot->validated; /* the survivors' validation accuracy, a secure sum */
    cnd_model_rec_t mv;
    memset(&mv, 0, sizeof mv);
    mv.job = r->rec.job;
    mv.version = r->model_version + 1;
    mv.round = r->rec.round;
    snprintf(mv.format, sizeof mv.format, "float");
    mv.accuracy = ws ? (double)tot->correct / (double)ws : -1;
    int rc = cnd_cstore_model_put(r->c->store, &mv, blob, len);
    if (rc) return rc;
    memcpy(r->model_digest, mv.digest, 32);
    r->new_version = mv.version;
    r->rec.survivors = surv;
    r->rec.model_version = mv.version;
    snprintf(r->rec.outcome, sizeof r->rec.outcome, "ok");
    r->rec.ended_ms = cnd_unix_ms();
    r->rec.t_finish = cnd_now() - t0;
    r->phase = CND_PHASE_DONE;
    if ((rc = s_persist(r))) return rc;
    if ((rc = s_audit_round_end(r, "ok", agg, mv.digest))) return rc;
    char jid[32], ver[32];
    snprintf(jid, sizeof jid, "%lld", (long long)r->rec.job);
    snprintf(ver, sizeof ver, "v%lld", (long long)mv.version);
    cnd_audit_model_version_t e = {.version = ver,
                                   .job = jid,
                                   .round = r->rec.round,
                                   .format = "float",
                                   .size = len,
                                   .has_accuracy = ws != 0,
                                   .accuracy = mv.accuracy,
                                   .samples = (int64_t)tot->weight,
                                   .digest = mv.digest};
    return cnd_audit_log_model_version(r->c->audit, r->c->fpr, &e);
}

/* Distributed DP (proto/job_dp.h): a sum of fewer than dp_min_survivors sites would carry less
 * noise than the sites accounted for. The SecAgg+ survivor minimum is set to at least that
 * (s_round_params); this says so by name before anything is asked to unmask, and again before
 * a sum is decoded. Returns 0 or CND_ESTATE. */
static int s_ddp_survivors(cnd_round_t *r)
{
    if (r->spec.dp_mode != CND_JOB_DP_DISTRIBUTED) return 0;
    s_sync_status(r);
    uint32_t surv = 0;
    for (uint32_t i = 0; i < r->rec.n; i++)
        surv += !!(r->rec.sites[i].status & CND_SECAGG_ST_MASKED);
    if (surv >= r->spec.dp_min_survivors) return 0;
    return cnd_errf(CND_ESTATE,
                    "distributed DP: %u sites sent masked updates, fewer than the job's "
                    "dp_min_survivors %u; their sum would carry too little noise and is not "
                    "unmasked",
                    surv, r->spec.dp_min_survivors);
}

/* An evaluation round's end: the candidates' sums (coord_autoc.h), successive halving unless
 * this was the job's last round, the round row with the best candidate's counts, round.end. */
static int s_finish_eval_store(cnd_round_t *r, const uint32_t *sum, uint32_t surv, double t0)
{
    uint64_t validated = 0, correct[CND_AUTOC_FED_MAX] = {0}, best = 0;
    int rc = cnd_autoc_fed_decode(&validated, correct, &r->elay, sum, surv);
    if (rc) return rc;
    for (uint32_t i = 0; i < r->eval_k; i++)
        if (correct[i] > best) best = correct[i];
    rc = cnd_autoc_record(r->c->store, r->rec.job, r->rec.round, r->eval_ids, r->eval_k, validated,
                          correct, r->rec.round < r->spec.rounds);
    if (rc) return rc;
    uint8_t agg[32];
    if ((rc = s_sum_digest(r, sum, agg))) return rc;
    r->rec.validated = validated;
    r->rec.correct = best;
    r->rec.survivors = surv;
    snprintf(r->rec.outcome, sizeof r->rec.outcome, "ok");
    r->rec.ended_ms = cnd_unix_ms();
    r->rec.t_finish = cnd_now() - t0;
    r->phase = CND_PHASE_DONE;
    if ((rc = s_persist(r))) return rc;
    return s_audit_round_end(r, "ok", agg, r->model_digest);
}

static int s_finish_eval(cnd_round_t *r)
{
    double t0 = cnd_now();
    s_close_phase_time(r);
    sqlite3 *db = cnd_cstore_db(r->c->store);
    if (sqlite3_exec(db, "SAVEPOINT round_finish", NULL, NULL, NULL) != SQLITE_OK)
        return cnd_errf(CND_EDB, "round %u: %s", r->rec.round, sqlite3_errmsg(db));
    uint32_t *sum = malloc((size_t)r->sp.len * sizeof *sum);
    int rc = sum ? cnd_secagg_server_finish(r->sa, sum)
                 : cnd_errf(CND_ENOMEM, "round %u: out of memory for the aggregate", r->rec.round);
    s_sync_status(r);
    uint32_t surv = 0;
    for (uint32_t i = 0; i < r->rec.n; i++)
        surv += !!(r->rec.sites[i].status & CND_SECAGG_ST_MASKED);
    if (!rc) rc = s_finish_eval_store(r, sum, surv, t0);
    if (!rc && sqlite3_exec(db, "RELEASE round_finish", NULL, NULL, NULL) != SQLITE_OK)
        rc = cnd_errf(CND_EDB, "round %u: %s", r->rec.round, sqlite3_errmsg(db));
    if (!rc) rc = r->io.commit(r->io.ctx);
    if (!rc) {
        r->ok = 1;
        s_send_round_end(r, CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED);
    } else {
        sqlite3_exec(db, "ROLLBACK TO round_finish", NULL, NULL, NULL);
        sqlite3_exec(db, "RELEASE round_finish", NULL, NULL, NULL);
        r->rec.survivors = 0;
        r->rec.validated = r->rec.correct = 0;
        r->rec.outcome[0] = 0;
        r->phase = CND_PHASE_UNMASK;
    }
    free(sum);
    return rc;
}

/* Removes the masks, decodes the weighted average and writes the new model version. */
static int s_finish(cnd_round_t *r)
{
    if (r->eval_k) return s_finish_eval(r);
    double t0 = cnd_now();
    s_close_phase_time(r);
    /* Everything this writes (model version, momentum, round row, audit entries) commits
     * together or not at all. */
    sqlite3 *db = cnd_cstore_db(r->c->store);
    if (sqlite3_exec(db, "SAVEPOINT round_finish", NULL, NULL, NULL) != SQLITE_OK)
        return cnd_errf(CND_EDB, "round %u: %s", r->rec.round, sqlite3_errmsg(db));
    uint32_t *sum = malloc((size_t)r->sp.len * sizeof *sum);
    float *avg = malloc(r->fp.dim * sizeof *avg);
    float *mom = NULL;
    uint8_t *blob = NULL, agg[32];
    size_t len = 0;
    int rc = 0;
    if (!sum || !avg) {
        rc = cnd_errf(CND_ENOMEM, "round %u: out of memory for the aggregate", r->rec.round);
        goto done;
    }
    if ((rc = s_ddp_survivors(r))) goto done;
    if ((rc = cnd_secagg_server_finish(r->sa, sum))) goto done;
    s_sync_status(r);
    uint32_t surv = 0;
    for (uint32_t i = 0; i < r->rec.n; i++)
        surv += !!(r->rec.sites[i].status & CND_SECAGG_ST_MASKED);
    /* The bounds one site cannot push past (fixedpoint.h): refused, the round fails. */
    cnd_fxp_totals_t tot;
    if ((rc = cnd_fxp_decode(avg, &tot, &r->fp, &r->lay, sum, surv))) goto done;
    r->rec.samples = tot.weight;
    r->rec.validated = tot.validated;
    r->rec.correct = tot.correct;
    r->rec.loss_sum = (double)tot.loss_q / CND_FXP_LOSS_SCALE;
    if ((rc = s_sum_digest(r, sum, agg))) goto done;
    if ((rc = s_updated_model(r, avg, &mom, &blob, &len))) goto done;
    if ((rc = s_store_version(r, blob, len, &tot, surv, agg, t0))) goto done;
    if (sqlite3_exec(db, "RELEASE round_finish", NULL, NULL, NULL) != SQLITE_OK)
        rc = cnd_errf(CND_EDB, "round %u: %s", r->rec.round, sqlite3_errmsg(db));
    if (!rc) rc = r->io.commit(r->io.ctx);
    if (!rc) {
        r->ok = 1;
        s_send_round_end(r, CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED);
    }
done:
    if (rc) {
        /* Nothing of the failed finish stays: roll its writes back and undo the in-memory
         * success markers before s_fail records the failure. */
        sqlite3_exec(db, "ROLLBACK TO round_finish", NULL, NULL, NULL);
        sqlite3_exec(db, "RELEASE round_finish", NULL, NULL, NULL);
        r->new_version = -1;
        r->rec.model_version = -1;
        r->rec.survivors = 0;
        r->rec.samples = r->rec.validated = r->rec.correct = 0;
        r->rec.loss_sum = 0;
        r->rec.outcome[0] = 0;
        r->phase = CND_PHASE_UNMASK;
    }
    free(blob);
    free(sum);
    free(avg);
    free(mom);
    return rc;
}

/* Closes the current phase if it is complete (or force), as many phases as are complete. */
static void s_advance(cnd_round_t *r, int force)
{
    while (!r->ended && (force || s_phase_complete(r))) {
        int rc = 0;
        force = 0;
        switch (r->phase) {
        case CND_PHASE_ADVERTISE:
            if ((rc = cnd_secagg_server_end_adverts(r->sa))) break;
            rc = s_next_phase(r, CND_PHASE_SHARE, CND_SECAGG_ST_ADVERTISED,
                              cnd_secagg_server_keys_msg, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER);
            break;
        case CND_PHASE_SHARE:
            if ((rc = cnd_secagg_server_end_shares(r->sa))) break;
            rc = s_next_phase(r, CND_PHASE_MASKED, CND_SECAGG_ST_SHARED,
                              cnd_secagg_server_shares_msg, CONDENSER__MSG_TYPE__MSG_SHARES_RELAY);
            break;
        case CND_PHASE_MASKED:
            for (int i = 0; i < CND_ROUND_MAX_UPLOADS; i++) cnd_assembler_destroy(&r->up[i].a);
            if ((rc = s_ddp_survivors(r))) break;
            if ((rc = cnd_secagg_server_end_masked(r->sa))) break;
            rc = s_next_phase(r, CND_PHASE_CONSISTENCY, CND_SECAGG_ST_MASKED,
                              cnd_secagg_server_consistency_msg,
                              CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST);
            break;
        case CND_PHASE_CONSISTENCY:
            if ((rc = cnd_secagg_server_end_consistency(r->sa))) break;
            rc =
                s_next_phase(r, CND_PHASE_UNMASK, CND_SECAGG_ST_SIGNED,
                             cnd_secagg_server_unmask_msg, CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST);
            break;
        case CND_PHASE_UNMASK: rc = s_finish(r); break;
        default: return;
        }
        if (rc) {
            char why[256];
            snprintf(why, sizeof why, "%s phase: %s", s_phase_names[r->phase], cnd_err_detail());
            /* The neighbour graph is drawn from every participant's keys, so a site missing at
             * the advertise phase ends the attempt; the round runs again (fresh keys, without
             * the sites that are gone) a bounded number of times. */
            int retry = r->phase == CND_PHASE_ADVERTISE && r->rec.attempt < CND_ROUND_MAX_ATTEMPTS;
            s_fail(r, retry ? "retry" : "failed", why);
        }
    }
}

void cnd_round_drop(cnd_round_t *r, uint32_t idx, const char *why)
{
    (void)why;
    if (r->ended || idx >= r->rec.n || (r->rec.sites[idx].status & CND_RSITE_LOST)) return;
    r->rec.sites[idx].status |= CND_RSITE_LOST;
    r->dirty = 1;
    s_advance(r, 0);
}

int cnd_round_tick(cnd_round_t *r, double now)
{
    if (!r->ended && now >= r->deadline) s_advance(r, 1);
    if (!r->ended && r->dirty && now - r->saved_at >= 1.0 && s_persist(r)) {
        /* Only the progress shown by `job show` is late; phase changes persist on their own. */
        cnd_err_clear();
    }
    return r->ended;
}

void cnd_round_cancel(cnd_round_t *r, const char *reason)
{
    s_fail(r, "cancelled", reason);
}

/* --- messages ------------------------------------------------------------------------------- */

static int s_refuse(cnd_proto_reject_t *rej, const Condenser__Envelope *env, int rc)
{
    if (rej) {
        rej->seq = env->seq;
        rej->type = env->type;
        switch (rc) {
        case CND_ESTATE: rej->code = CONDENSER__ERROR_CODE__ERR_WRONG_PHASE; break;
        case CND_EPROTO:
        case CND_EFORMAT: rej->code = CONDENSER__ERROR_CODE__ERR_BAD_FIELD; break;
        case CND_ECRYPTO:
        case CND_EPERM: rej->code = CONDENSER__ERROR_CODE__ERR_REFUSED; break;
        case CND_ECORRUPT: rej->code = CONDENSER__ERROR_CODE__ERR_DIGEST_MISMATCH; break;
        case CND_ERANGE: rej->code = CONDENSER__ERROR_CODE__ERR_TOO_LARGE; break;
        case CND_EEXIST: rej->code = CONDENSER__ERROR_CODE__ERR_REPLAY; break;
        case CND_ENOTFOUND: rej->code = CONDENSER__ERROR_CODE__ERR_BAD_FIELD; break;
        default: rej->code = CONDENSER__ERROR_CODE__ERR_INTERNAL; break;
        }
    }
    return rc;
}

static s_upload_t *s_upload_of(cnd_round_t *r, uint32_t idx)
{
    for (int i = 0; i < CND_ROUND_MAX_UPLOADS; i++)
        if (r->up[i].a && r->up[i].idx == idx) return &r->up[i];
    return NULL;
}

static int s_on_masked_header(cnd_round_t *r, uint32_t idx, const Condenser__Envelope *env,
                              cnd_proto_reject_t *rej)
{
    const Condenser__MaskedInput *mi = env->masked_input;
    const char *who = r->rec.sites[idx].name;
    if (mi->participant_id != idx)
        return s_refuse(rej, env,
                        cnd_errf(CND_EPROTO,
                                 "masked_input from %s: participant_id %u, "
                                 "expected %u",
                                 who, mi->participant_id, idx));
    if (mi->bit_width != r->sp.bits || mi->length != r->sp.len)
        return s_refuse(rej, env,
                        cnd_errf(CND_EPROTO,
                                 "masked_input from %s: %llu values of %u "
                                 "bits, the round uses %u of %u bits",
                                 who, (unsigned long long)mi->length, mi->bit_width, r->sp.len,
                                 r->sp.bits));
    const uint8_t *st = cnd_secagg_server_status(r->sa);
    if (!(st[idx] & CND_SECAGG_ST_SHARED) || (st[idx] & CND_SECAGG_ST_MASKED))
        return s_refuse(rej, env,
                        cnd_errf(CND_ESTATE,
                                 "masked_input from %s: not expected (it "
                                 "did not share keys, or already sent one)",
                                 who));
    s_upload_t *u = s_upload_of(r, idx);
    if (u) cnd_assembler_destroy(&u->a); /* a fresh upload replaces an unfinished one */
    for (int i = 0; i < r->max_uploads && !u; i++)
        if (!r->up[i].a) u = &r->up[i];
    if (!u) {
        if (rej) {
            rej->seq = env->seq;
            rej->type = env->type;
            rej->code = CONDENSER__ERROR_CODE__ERR_BUSY;
        }
        return cnd_errf(CND_ETIMEOUT,
                        "masked_input from %s: %d uploads in progress; send it "
                        "again later",
                        who, r->max_uploads);
    }
    uint64_t want = CND_SECAGG_HDR_BYTES + 5 + cnd_ring_packed_bytes(r->sp.len, r->sp.bits);
    int rc =
        cnd_assembler_new(&u->a, rej, CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT, mi->vector, want);
    if (rc) return rc;
    u->idx = idx;
    return 0;
}

static int s_on_masked_chunk(cnd_round_t *r, uint32_t idx, const Condenser__Envelope *env,
                             cnd_proto_reject_t *rej)
{
    s_upload_t *u = s_upload_of(r, idx);
    if (!u)
        return s_refuse(rej, env,
                        cnd_errf(CND_ESTATE, "chunk from %s: no masked input announced",
                                 r->rec.sites[idx].name));
    int rc = cnd_assembler_add(u->a, rej, env->chunk);
    if (rc == CND_EEXIST) return 0;
    if (rc) return rc;
    if (cnd_assembler_received(u->a) < cnd_assembler_count(u->a)) return 0;
    uint8_t *data = NULL;
    uint64_t len = 0;
    rc = cnd_assembler_finish(u->a, rej, &data, &len);
    cnd_assembler_destroy(&u->a);
    if (rc) return rc;
    rc = cnd_secagg_server_add_masked(r->sa, idx, data, (size_t)len);
    free(data);
    if (rc) return s_refuse(rej, env, rc);
    return 0;
}

int cnd_round_on_message(cnd_round_t *r, uint32_t idx, const Condenser__Envelope *env,
                         size_t wire_len, cnd_proto_reject_t *rej)
{
    if (r->ended)
        return s_refuse(rej, env, cnd_errf(CND_ESTATE, "round %u has ended", r->rec.round));
    if (idx >= r->rec.n)
        return s_refuse(rej, env,
                        cnd_errf(CND_EPERM, "not a participant of round %u", r->rec.round));
    if (r->rec.sites[idx].status & CND_RSITE_LOST)
        return s_refuse(rej, env,
                        cnd_errf(CND_EPERM, "%s's session ended during round %u; it is a dropout",
                                 r->rec.sites[idx].name, r->rec.round));
    r->dirty = 1;
    int rc;
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
        rc = cnd_secagg_server_add_advert(r->sa, idx, env->advertise_keys->advert.data,
                                          env->advertise_keys->advert.len);
        break;
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS:
        rc = cnd_secagg_server_add_shares(r->sa, idx, env->share_keys->shares.data,
                                          env->share_keys->shares.len);
        break;
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE:
        rc = cnd_secagg_server_add_unmask(r->sa, idx, env->unmask_response->unmask.data,
                                          env->unmask_response->unmask.len);
        break;
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY:
        rc = cnd_secagg_server_add_consistency(r->sa, idx, env->consistency->consistency.data,
                                               env->consistency->consistency.len);
        break;
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
        if ((rc = s_on_masked_header(r, idx, env, rej))) return rc;
        r->rec.ingress_bytes += wire_len;
        return 0;
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        if (env->chunk->kind != CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT)
            return s_refuse(rej, env,
                            cnd_errf(CND_EPERM, "chunk of kind %d from a site", env->chunk->kind));
        rc = s_on_masked_chunk(r, idx, env, rej);
        if (rc) return rc;
        r->rec.ingress_bytes += wire_len;
        s_advance(r, 0);
        return 0;
    case CONDENSER__MSG_TYPE__MSG_METRICS: {
        cnd_rsite_t *x = &r->rec.sites[idx];
        if (x->status & CND_RSITE_METRICS)
            return s_refuse(rej, env,
                            cnd_errf(CND_EEXIST, "metrics from %s: already received", x->name));
        x->train_ms = env->metrics->train_ms; /* the only field left in the clear */
        x->status |= CND_RSITE_METRICS;
        r->rec.ingress_bytes += wire_len;
        return 0;
    }
    case CONDENSER__MSG_TYPE__MSG_ERROR:
        /* A site reporting that it cannot take part in this round (broken data, failed
         * training): stop waiting for it. */
        r->rec.sites[idx].status |= CND_RSITE_FAILED;
        r->rec.ingress_bytes += wire_len;
        s_advance(r, 0);
        return 0;
    default:
        return s_refuse(
            rej, env,
            cnd_errf(CND_EPROTO, "%s is not part of a round", cnd_proto_type_name(env->type)));
    }
    if (rc) return s_refuse(rej, env, rc);
    r->rec.ingress_bytes += wire_len;
    s_advance(r, 0);
    return 0;
}

/* --- retries --------------------------------------------------------------------------------- */

int cnd_round_prev_retry(cnd_coord_t *c, int64_t job_id, uint32_t round, uint32_t attempt,
                         cnd_round_rec_t *prev)
{
    memset(prev, 0, sizeof *prev);
    if (attempt < 2) return 0;
    cnd_round_rec_t *list = NULL;
    size_t n = 0;
    if (cnd_cstore_rounds(c->store, job_id, &list, &n)) {
        cnd_err_clear();
        return 0;
    }
    int hit = 0;
    for (size_t i = 0; i < n; i++) {
        if (!hit && list[i].round == round && list[i].attempt == attempt - 1 &&
            strcmp(list[i].outcome, "retry") == 0) {
            *prev = list[i]; /* ownership of its sites moves */
            memset(&list[i], 0, sizeof list[i]);
            hit = 1;
        }
        cnd_round_rec_free(&list[i]);
    }
    free(list);
    return hit;
}

int cnd_round_rec_silent(const cnd_round_rec_t *rec, const char *site)
{
    for (uint32_t k = 0; k < rec->n && rec->sites; k++)
        if (strcmp(rec->sites[k].name, site) == 0)
            return !(rec->sites[k].status & CND_SECAGG_ST_ADVERTISED);
    return 0;
}

/* --- restart -------------------------------------------------------------------------------- */

int cnd_round_abandon_open(cnd_coord_t *c, int64_t job_id)
{
    cnd_round_rec_t rec;
    int rc = cnd_cstore_round_open(c->store, job_id, &rec);
    if (rc == CND_ENOTFOUND) return 0;
    if (rc) return rc;
    cnd_round_t tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.c = c;
    tmp.rec = rec;
    snprintf(tmp.rec.outcome, sizeof tmp.rec.outcome, "restarted");
    snprintf(tmp.rec.reason, sizeof tmp.rec.reason,
             "the coordinator restarted during the %s phase; the round runs again", rec.phase);
    tmp.rec.ended_ms = cnd_unix_ms();
    tmp.rec.phase_ms = tmp.rec.ended_ms;
    snprintf(tmp.rec.phase, sizeof tmp.rec.phase, "done");
    rc = cnd_cstore_round_update(c->store, &tmp.rec);
    if (!rc) rc = s_audit_round_end(&tmp, "failed", NULL, NULL);
    cnd_round_rec_free(&tmp.rec);
    return rc;
}

void cnd_fedavg_apply(float *params, size_t n_params, float *state, size_t n_state,
                      const float *avg, float *momentum, float lr, float beta)
{
    for (size_t i = 0; i < n_params; i++) {
        float u = avg[i];
        if (momentum) {
            momentum[i] = beta * momentum[i] + avg[i];
            u = momentum[i];
        }
        params[i] += lr * u;
    }
    for (size_t i = 0; i < n_state; i++) state[i] += avg[n_params + i];
}
