/*
 * coord_daemon.c: the coordinator's event loop (see coord_daemon.h).
 *
 * Threads: the main thread owns the socket, the state store and the audit log. libzmq's ZAP
 * handler thread (inside proto/transport.c) calls s_allow() and s_event(); those use only
 * their own read-only store connection and a mutex-protected queue of refusals, which the
 * main loop drains into reject.connection audit entries.
 */
#include "coord_daemon.h"
#include "audit_actions.h"
#include "db.h"
#include "json.h"
#include "chunk.h"
#include "clock.h"
#include "coord_admin.h"
#include "cert.h"
#include "job.h"
#include "coord_quant.h"
#include "coord_round.h"
#include "digest.h"
#include "fileio.h"
#include "proto.h"
#include "rng.h"
#include "transport.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_MAX_SESSIONS 4096
#define S_REFUSALS     64

typedef struct {
    char name[CND_USER_ID_MAX];
    cnd_peer_t peer; /* where to reach it (latest connection) */
    int hello;       /* a valid Hello arrived on this run */
    Condenser__Role role;
    uint8_t ed_pk[32];
    char fpr[65];
    uint8_t *cert; /* enrolled certificate (owned) or NULL, re-read at every Hello */
    size_t cert_len;
    int64_t cert_not_after; /* expiry of the certificate its Hello presented (Unix s) */
    cnd_seqwin_t win;       /* replay window over its sequence numbers */
    double last_seen;       /* cnd_now() of its last message */
    int64_t accepted_job;   /* job it accepted (0: none) */
    int64_t refused_job;    /* job it refused */
} s_session_t;

typedef struct {
    uint8_t pub[32];
    char address[64];
    char reason[64];
} s_refusal_t;

typedef struct {
    const cnd_coord_run_opts_t *o;
    cnd_coord_t c;
    cnd_server_t *srv;
    /* ZAP thread's view */
    pthread_mutex_t zmu;
    cnd_cstore_t *zstore;
    s_refusal_t refusals[S_REFUSALS];
    int n_refusals;
    uint64_t refusals_lost;
    /* sessions */
    s_session_t *sess;
    size_t n_sess;
    uint64_t seq;
    FILE *capture;
    /* job in flight */
    int64_t job; /* 0 when none */
    cnd_job_spec_t spec;
    uint8_t *teacher;
    size_t teacher_len;
    Condenser__ObjectInfo teacher_info;
    uint8_t teacher_digest[32];
    int any_ok; /* some round of this job produced a model */
    cnd_round_t *round;
    double wait_start; /* since when sites are awaited for the next round */
    double last_state_check;
    uint32_t data_version; /* PRAGMA data_version: the database changed in another process */
    int ident_pending;     /* a superseded session waits for its round to end */
    int txn;               /* a store transaction is open */
} s_daemon_t;

static void s_log(s_daemon_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(s_daemon_t *d, const char *fmt, ...)
{
    if (!d->o->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    d->o->log(d->o->log_ctx, buf);
}

/* --- transactions --------------------------------------------------------------------------- */

static int s_begin(s_daemon_t *d)
{
    if (d->txn) return 0;
    int rc = cnd_cstore_begin(d->c.store);
    if (!rc) d->txn = 1;
    return rc;
}

/* Commits the open transaction (if any) without opening another. */
static int s_end(s_daemon_t *d)
{
    if (!d->txn) return 0;
    d->txn = 0;
    return cnd_cstore_commit(d->c.store);
}

static int s_commit(void *ctx)
{
    s_daemon_t *d = ctx;
    if (!d->txn) return s_begin(d);
    d->txn = 0;
    int rc = cnd_cstore_commit(d->c.store);
    if (rc) return rc;
    return s_begin(d);
}

/* --- ZAP side ------------------------------------------------------------------------------- */

static int s_allow(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    s_daemon_t *d = ctx;
    cnd_ident_rec_t r;
    pthread_mutex_lock(&d->zmu);
    int rc = cnd_cstore_ident_by_curve(d->zstore, pub, &r);
    pthread_mutex_unlock(&d->zmu);
    if (rc == CND_ENOTFOUND) return 0;
    if (rc) return -1;
    int ok = r.revoked_ms == 0;
    if (ok) snprintf(user_id, CND_USER_ID_MAX, "%s", r.name);
    cnd_ident_rec_free(&r);
    return ok;
}

static void s_event(void *ctx, const cnd_transport_event_t *ev)
{
    s_daemon_t *d = ctx;
    if (ev->kind != CND_TEV_REFUSED && ev->kind != CND_TEV_REVOKED_DROP) return;
    pthread_mutex_lock(&d->zmu);
    if (d->n_refusals < S_REFUSALS) {
        s_refusal_t *r = &d->refusals[d->n_refusals++];
        memcpy(r->pub, ev->pub, 32);
        snprintf(r->address, sizeof r->address, "%s", ev->address ? ev->address : "");
        snprintf(r->reason, sizeof r->reason, "%s",
                 ev->kind == CND_TEV_REVOKED_DROP ? "revoked: message dropped"
                                                  : (ev->reason ? ev->reason : "refused"));
    } else {
        d->refusals_lost++;
    }
    pthread_mutex_unlock(&d->zmu);
}

static void s_drain_refusals(s_daemon_t *d)
{
    s_refusal_t local[S_REFUSALS];
    pthread_mutex_lock(&d->zmu);
    int n = d->n_refusals;
    memcpy(local, d->refusals, (size_t)n * sizeof *local);
    d->n_refusals = 0;
    pthread_mutex_unlock(&d->zmu);
    for (int i = 0; i < n; i++) {
        char hex[65];
        cnd_hex(hex, local[i].pub, 32);
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "address");
        cnd_jw_str(&w, local[i].address);
        cnd_jw_key(&w, "reason");
        cnd_jw_str(&w, local[i].reason);
        cnd_jw_obj_end(&w);
        cnd_audit_rec_t a = {.actor = d->c.fpr,
                             .action = CND_AUDIT_REJECT_CONNECTION,
                             .subject = hex,
                             .details = cnd_jw_text(&w)};
        if (a.details && cnd_audit_append(d->c.audit, &a, NULL))
            s_log(d, "audit: %s", cnd_err_detail());
        cnd_jw_free(&w);
        s_log(d, "refused a connection from curve key %.16s... (%s): %s", hex, local[i].address,
              local[i].reason);
    }
}

/* --- sessions and sending ------------------------------------------------------------------- */

static s_session_t *s_session(s_daemon_t *d, const char *name)
{
    for (size_t i = 0; i < d->n_sess; i++)
        if (strcmp(d->sess[i].name, name) == 0) return &d->sess[i];
    return NULL;
}

/* The session of an admitted sender, created from its enrolled identity on first contact. */
static s_session_t *s_session_for(s_daemon_t *d, const char *name)
{
    s_session_t *s = s_session(d, name);
    if (s) return s;
    if (d->n_sess >= S_MAX_SESSIONS) return NULL;
    cnd_ident_rec_t r;
    if (cnd_cstore_ident_by_name(d->c.store, name, &r)) return NULL;
    s_session_t *g = realloc(d->sess, (d->n_sess + 1) * sizeof *g);
    if (!g) {
        cnd_ident_rec_free(&r);
        return NULL;
    }
    d->sess = g;
    s = &d->sess[d->n_sess++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->role =
        strcmp(r.role, "device") == 0 ? CONDENSER__ROLE__ROLE_DEVICE : CONDENSER__ROLE__ROLE_SITE;
    memcpy(s->ed_pk, r.ed_pk, 32);
    snprintf(s->fpr, sizeof s->fpr, "%s", r.fpr);
    s->cert = r.cert; /* ownership moves to the session */
    s->cert_len = r.cert_len;
    cnd_seqwin_init(&s->win);
    return s;
}

static int s_send_env(s_daemon_t *d, s_session_t *s, Condenser__MsgType type, void *payload,
                      uint64_t job, uint32_t round)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, job, round, d->c.name, d->seq++);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_proto_encode(&buf, &len, &env);
    if (rc) {
        s_log(d, "not sending %s to %s: %s", cnd_proto_type_name(type), s->name, cnd_err_detail());
        return rc;
    }
    rc = cnd_server_send(d->srv, &s->peer, buf, len, 2000);
    if (!rc) {
        char jid[32];
        snprintf(jid, sizeof jid, "%llu", (unsigned long long)job);
        if (cnd_audit_log_message(d->c.audit, 'E', d->c.fpr, s->fpr, job ? jid : "",
                                  cnd_proto_type_name(type), round ? (int64_t)round : -1, buf, len,
                                  NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    } else {
        s_log(d, "sending %s to %s failed: %s", cnd_proto_type_name(type), s->name,
              cnd_err_detail());
    }
    free(buf);
    return rc;
}

static int s_round_send(void *ctx, const char *site, Condenser__MsgType type, void *payload,
                        uint64_t job, uint32_t round)
{
    s_daemon_t *d = ctx;
    s_session_t *s = s_session(d, site);
    if (!s || !s->hello) return CND_ENOTFOUND;
    return s_send_env(d, s, type, payload, job, round);
}

/* Refuses a message: reject.message audit entry and (unless it was an Error) a MSG_ERROR. */
static void s_reject(s_daemon_t *d, s_session_t *s, const char *user_id, const cnd_frame_t *f,
                     const cnd_proto_reject_t *rej, const char *why)
{
    char reason[512];
    snprintf(reason, sizeof reason, "%s", why && *why ? why : cnd_proto_error_name(rej->code));
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    if (s) {
        cnd_jw_key(&w, "peer");
        cnd_jw_str(&w, s->fpr);
    }
    cnd_jw_key(&w, "type");
    cnd_jw_str(&w, cnd_proto_type_name(rej->type));
    cnd_jw_key(&w, "size");
    cnd_jw_int(&w, (int64_t)f->len);
    cnd_jw_key(&w, "reason");
    cnd_jw_str(&w, reason);
    cnd_jw_key(&w, "code");
    cnd_jw_str(&w, cnd_proto_error_name(rej->code));
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg = {"message", {0}};
    cnd_sha256(dg.sha256, f->data, f->len);
    cnd_audit_rec_t a = {.actor = d->c.fpr,
                         .action = CND_AUDIT_REJECT_MESSAGE,
                         .subject = s ? s->fpr : user_id,
                         .details = cnd_jw_text(&w),
                         .digests = &dg,
                         .n_digests = 1};
    if (a.details && cnd_audit_append(d->c.audit, &a, NULL))
        s_log(d, "audit: %s", cnd_err_detail());
    cnd_jw_free(&w);
    s_log(d, "refused %s from %s: %s", cnd_proto_type_name(rej->type), user_id, reason);
    if (rej->type == CONDENSER__MSG_TYPE__MSG_ERROR) return;
    Condenser__Error err;
    char text[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_error_init(&err, text, rej, reason);
    /* Replies go to the connection the message came from, even before a Hello. */
    s_session_t tmp;
    memset(&tmp, 0, sizeof tmp);
    if (!s) {
        snprintf(tmp.name, sizeof tmp.name, "%s", user_id);
        snprintf(tmp.fpr, sizeof tmp.fpr, "%s", "");
        s = &tmp;
    }
    cnd_peer_t saved = s->peer;
    s->peer = f->peer;
    (void)s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_ERROR, &err, 0, 0);
    s->peer = saved;
}

/* --- jobs ----------------------------------------------------------------------------------- */

static void s_audit_job_state(s_daemon_t *d, const char *state, const char *reason)
{
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)d->job);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "state");
    cnd_jw_str(&w, state);
    if (reason && *reason) {
        cnd_jw_key(&w, "reason");
        cnd_jw_str(&w, reason);
    }
    cnd_jw_obj_end(&w);
    cnd_audit_rec_t a = {.actor = d->c.fpr,
                         .action = CND_AUDIT_JOB_STATE,
                         .subject = jid,
                         .job = jid,
                         .details = cnd_jw_text(&w)};
    if (a.details && cnd_audit_append(d->c.audit, &a, NULL))
        s_log(d, "audit: %s", cnd_err_detail());
    cnd_jw_free(&w);
}

static void s_unload_job(s_daemon_t *d)
{
    cnd_round_destroy(&d->round);
    free(d->teacher);
    d->teacher = NULL;
    d->teacher_len = 0;
    d->job = 0;
    for (size_t i = 0; i < d->n_sess; i++) d->sess[i].accepted_job = d->sess[i].refused_job = 0;
}

static void s_announce(s_daemon_t *d, s_session_t *s)
{
    if (!d->job || s->role != CONDENSER__ROLE__ROLE_SITE) return;
    cnd_job_proto_t jp;
    cnd_job_to_proto(&jp, &d->spec, (uint64_t)d->job, d->teacher ? &d->teacher_info : NULL);
    Condenser__JobAnnounce ja;
    condenser__job_announce__init(&ja);
    ja.spec = &jp.spec;
    if (s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE, &ja, (uint64_t)d->job, 0)) return;
    for (uint32_t i = 0; d->teacher && i < d->teacher_info.chunk_count; i++) {
        Condenser__Chunk ch;
        uint8_t sha[32];
        if (cnd_chunk_piece(&ch, sha, CONDENSER__OBJECT_KIND__OBJ_TEACHER, &d->teacher_info,
                            d->teacher, i))
            break;
        if (s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_CHUNK, &ch, (uint64_t)d->job, 0)) break;
    }
}

/* Loads the oldest pending or running job. Returns 1 if one is in flight afterwards. */
static int s_load_job(s_daemon_t *d)
{
    if (d->job) return 1;
    int64_t id;
    if (cnd_cstore_job_next(d->c.store, &id)) {
        cnd_err_clear();
        return 0;
    }
    cnd_job_rec_t jr;
    int rc = cnd_cstore_job_get(d->c.store, id, &jr);
    if (!rc) rc = cnd_job_from_json(&d->spec, jr.spec_json);
    if (!rc && d->spec.teacher_shipped) {
        rc = cnd_cstore_job_teacher(d->c.store, id, &d->teacher, &d->teacher_len);
        uint8_t dig[32];
        if (!rc)
            rc = cnd_chunk_plan(&d->teacher_info, dig, d->teacher, d->teacher_len,
                                CND_PROTO_CHUNK_DEFAULT);
        memcpy(d->teacher_digest, dig, 32);
        d->teacher_info.digest = cnd_proto_bytes(d->teacher_digest, 32);
    }
    int was_running = !rc && strcmp(jr.state, "running") == 0;
    cnd_job_rec_free(&jr);
    d->job = id;
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "cannot load the job: %s", cnd_err_detail());
        s_log(d, "job %lld: %s", (long long)id, why);
        if (!cnd_cstore_job_set_state(d->c.store, id, "failed", why))
            s_audit_job_state(d, "failed", why);
        s_unload_job(d);
        return 0;
    }
    /* A round left in flight by a previous run is redone, never half-applied. */
    if ((rc = cnd_round_abandon_open(&d->c, id))) {
        s_log(d, "job %lld: %s", (long long)id, cnd_err_detail());
        s_unload_job(d);
        return 0;
    }
    cnd_model_rec_t m;
    d->any_ok = 0;
    if (!cnd_cstore_model_latest(d->c.store, id, "float", &m, NULL, NULL)) {
        d->any_ok = m.version > 0;
        cnd_model_rec_free(&m);
    }
    cnd_err_clear();
    if (!was_running) {
        if (!cnd_cstore_job_set_state(d->c.store, id, "running", NULL))
            s_audit_job_state(d, "running", NULL);
    }
    uint32_t next = 1, att = 1;
    if (cnd_cstore_round_next(d->c.store, id, &next, &att)) next = 1;
    s_log(d, "job %lld %s: %s, %u rounds of %u sites (resuming at round %u)", (long long)id,
          was_running ? "resumed" : "started", d->spec.arch, d->spec.rounds,
          d->spec.sites_per_round, next);
    d->wait_start = cnd_now();
    (void)s_commit(d);
    for (size_t i = 0; i < d->n_sess; i++)
        if (d->sess[i].hello) s_announce(d, &d->sess[i]);
    return 1;
}

static void s_end_job(s_daemon_t *d, const char *state, const char *reason)
{
    s_log(d, "job %lld %s%s%s", (long long)d->job, state, reason && *reason ? ": " : "",
          reason ? reason : "");
    if (!cnd_cstore_job_set_state(d->c.store, d->job, state, reason)) {
        s_audit_job_state(d, state, reason);
        if (cnd_audit_checkpoint(d->c.audit, "job.end", NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    } else {
        s_log(d, "job %lld: %s", (long long)d->job, cnd_err_detail());
    }
    (void)s_commit(d);
    s_unload_job(d);
}

static int s_cmp_sites(const void *a, const void *b)
{
    return strcmp(((const cnd_round_site_t *)a)->name, ((const cnd_round_site_t *)b)->name);
}

/* Starts the next round when enough sites are there. */
static void s_maybe_start_round(s_daemon_t *d, double now)
{
    if (!d->job || d->round) return;
    uint32_t round = 1, attempt = 1;
    if (cnd_cstore_round_next(d->c.store, d->job, &round, &attempt)) {
        s_log(d, "job %lld: %s", (long long)d->job, cnd_err_detail());
        return;
    }
    if (round > d->spec.rounds) {
        if (!d->any_ok) {
            s_end_job(d, "failed", "no round produced a model");
            return;
        }
        /* With calibration samples the job ends in a signed integer artifact. */
        cnd_model_rec_t ar;
        int prc = cnd_fedq_publish(&d->c, d->job, &d->spec, &ar);
        char why[300] = "";
        if (prc == 0) {
            char hex[65];
            s_log(d, "int8 artifact v%lld: %llu bytes, sha256 %s, manifest signed",
                  (long long)ar.version, (unsigned long long)ar.size, cnd_hex(hex, ar.digest, 32));
            cnd_model_rec_free(&ar);
        } else if (prc != CND_ENOTFOUND) {
            snprintf(why, sizeof why, "the float model is final; the int8 artifact failed: %s",
                     cnd_err_detail());
        }
        cnd_err_clear();
        s_end_job(d, "completed", why[0] ? why : NULL);
        return;
    }
    double fresh = 5.0 * (d->o->heartbeat_ms ? d->o->heartbeat_ms : 2000) / 1e3;
    size_t *elig = malloc((d->n_sess ? d->n_sess : 1) * sizeof *elig);
    if (!elig) return;
    size_t ne = 0;
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        if (s->hello && s->accepted_job == d->job && now - s->last_seen <= fresh) elig[ne++] = i;
    }
    uint32_t want = d->spec.sites_per_round;
    int waited = (now - d->wait_start) * 1e3 >= d->spec.join_wait_ms;
    if (ne < want && !(waited && ne >= d->spec.quorum && ne >= 2)) {
        free(elig);
        return;
    }
    /* More than needed: a seeded random choice, so runs are reproducible. */
    if (ne > want) {
        cnd_rng_t rng;
        cnd_rng_seed(&rng, d->spec.seed * 1000003u + round);
        for (size_t i = 0; i < want; i++) {
            size_t j = i + (size_t)cnd_rng_below(&rng, ne - i);
            size_t t = elig[i];
            elig[i] = elig[j];
            elig[j] = t;
        }
        ne = want;
    }
    cnd_round_site_t *sites = calloc(ne, sizeof *sites);
    if (!sites) {
        free(elig);
        return;
    }
    for (size_t i = 0; i < ne; i++) {
        s_session_t *s = &d->sess[elig[i]];
        snprintf(sites[i].name, sizeof sites[i].name, "%s", s->name);
        snprintf(sites[i].fpr, sizeof sites[i].fpr, "%s", s->fpr);
        memcpy(sites[i].ed_pk, s->ed_pk, 32);
        sites[i].cert = s->cert;
        sites[i].cert_len = s->cert_len;
    }
    qsort(sites, ne, sizeof *sites, s_cmp_sites);
    int qat = round + d->spec.qat_rounds > d->spec.rounds;
    cnd_round_io_t io = {d, s_round_send, s_commit};
    int rc = cnd_round_start(&d->round, &d->c, &io, d->job, &d->spec, round, attempt, sites,
                             (uint32_t)ne, qat, d->o->threads ? d->o->threads : 1);
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "round %u could not start: %s", round, cnd_err_detail());
        s_end_job(d, "failed", why);
    } else {
        s_log(d, "round %u/%u%s started with %zu sites%s", round, d->spec.rounds,
              attempt > 1 ? " (again)" : "", ne, qat ? " (QAT)" : "");
    }
    free(sites);
    free(elig);
}

static void s_round_ended(s_daemon_t *d)
{
    int64_t v = -1;
    uint32_t n = cnd_round_number(d->round);
    if (cnd_round_result(d->round, &v)) {
        d->any_ok = 1;
        cnd_model_rec_t m;
        double acc = -1;
        if (!cnd_cstore_model_get(d->c.store, d->job, v, "float", &m, NULL, NULL)) {
            acc = m.accuracy;
            cnd_model_rec_free(&m);
        }
        s_log(d, "round %u/%u done: model v%lld, mean site validation accuracy %.4f", n,
              d->spec.rounds, (long long)v, acc);
    } else {
        s_log(d, "round %u/%u failed: %s", n, d->spec.rounds, cnd_round_reason(d->round));
    }
    cnd_round_destroy(&d->round);
    d->wait_start = cnd_now();
}

/* Picks up a cancellation made with `condenser job cancel` from another process. */
static void s_check_job_state(s_daemon_t *d)
{
    if (!d->job) return;
    cnd_job_rec_t jr;
    if (cnd_cstore_job_get(d->c.store, d->job, &jr)) return;
    int cancelled = strcmp(jr.state, "cancelled") == 0;
    char reason[256];
    snprintf(reason, sizeof reason, "%s", jr.reason);
    cnd_job_rec_free(&jr);
    if (!cancelled) return;
    s_log(d, "job %lld cancelled: %s", (long long)d->job, reason);
    if (d->round) cnd_round_cancel(d->round, reason);
    (void)s_commit(d);
    s_unload_job(d);
}

/* --- certificates: renewal, rotation, expiry ------------------------------------------------- */

/* Why a Hello's certificate is not the enrolled one, with both serials and what to do. */
static void s_cert_mismatch(char *out, size_t cap, const char *name, const uint8_t *got,
                            size_t got_len, const cnd_ident_rec_t *enrolled)
{
    cnd_cert_info_t g, e;
    char a[32], b[32];
    int hg = got_len && cnd_ca_inspect(&g, got, got_len) == 0;
    int he = enrolled->cert && cnd_ca_inspect(&e, enrolled->cert, enrolled->cert_len) == 0;
    cnd_err_clear();
    if (!hg || !he) {
        snprintf(out, cap, "hello.certificate is not the enrolled certificate");
        return;
    }
    if (g.not_after > e.not_after)
        snprintf(out, cap,
                 "hello.certificate is serial %llu (valid until %s), newer than the certificate "
                 "enrolled for '%s' (serial %llu, valid until %s): the federation operator has "
                 "not enrolled it yet (condenser site renew %s --cert FILE)",
                 (unsigned long long)g.serial, cnd_iso8601(a, g.not_after), name,
                 (unsigned long long)e.serial, cnd_iso8601(b, e.not_after), name);
    else
        snprintf(out, cap,
                 "hello.certificate is serial %llu (valid until %s), not the certificate "
                 "enrolled for '%s' (serial %llu, valid until %s): it was superseded; install "
                 "the enrolled certificate at the site (the agent re-reads it at every hello)",
                 (unsigned long long)g.serial, cnd_iso8601(a, g.not_after), name,
                 (unsigned long long)e.serial, cnd_iso8601(b, e.not_after));
}

/* Ends the session of s: its next message is answered "send hello first", and the agent says
 * Hello again with the certificate file it re-reads. */
static void s_session_end(s_daemon_t *d, s_session_t *s, const char *why)
{
    s->hello = 0;
    s->cert_not_after = 0;
    s_log(d, "%s: session ended: %s", s->name, why);
}

/* Every open session must still rest on a valid, current certificate: one whose certificate
 * expired ends at once; one whose identity was renewed or rotated by `site renew` ends when the
 * round it takes part in is over (at once for a rotation, whose old key the ZAP handler already
 * refuses). Identities are re-read only when another process changed the database. */
static void s_check_identities(s_daemon_t *d)
{
    int64_t now = cnd_unix_time();
    sqlite3_stmt *st = NULL;
    uint32_t dv = d->data_version;
    if (cnd_db_prep(cnd_cstore_db(d->c.store), &st, "PRAGMA data_version") == 0 &&
        sqlite3_step(st) == SQLITE_ROW)
        dv = (uint32_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    cnd_err_clear();
    int reread = dv != d->data_version || d->ident_pending;
    d->data_version = dv;
    d->ident_pending = 0;
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        if (!s->hello) continue;
        char why[160], x[32];
        if (s->cert_not_after && now >= s->cert_not_after) {
            snprintf(why, sizeof why, "its certificate expired at %s",
                     cnd_iso8601(x, s->cert_not_after));
            s_session_end(d, s, why);
            continue;
        }
        if (!reread) continue;
        cnd_ident_rec_t r;
        if (cnd_cstore_ident_by_name(d->c.store, s->name, &r)) {
            cnd_err_clear();
            continue;
        }
        int rotated = sodium_memcmp(r.ed_pk, s->ed_pk, 32) != 0;
        int renewed = !rotated && (!r.cert || r.cert_len != s->cert_len ||
                                   memcmp(r.cert, s->cert, s->cert_len) != 0);
        cnd_ident_rec_free(&r);
        if (rotated) {
            s_session_end(d, s,
                          "its key was rotated (condenser site renew); the old key is refused");
        } else if (renewed && d->round && cnd_round_site_index(d->round, s->name) >= 0) {
            d->ident_pending = 1; /* after its round */
        } else if (renewed) {
            s_session_end(d, s,
                          "its certificate was renewed (condenser site renew); it must say "
                          "hello with the new one");
        }
    }
}

/* --- messages ------------------------------------------------------------------------------- */

static void s_on_hello(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                       const Condenser__Envelope *env)
{
    const Condenser__Hello *h = env->hello;
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, env->seq, env->type};
    /* The enrolled key and certificate are read again (`site renew` may have replaced them
     * while we run); they become the session's only when the Hello is accepted. */
    cnd_ident_rec_t r;
    if (cnd_cstore_ident_by_name(d->c.store, s->name, &r)) {
        rej.code = CONDENSER__ERROR_CODE__ERR_INTERNAL;
        s_reject(d, s, s->name, f, &rej, cnd_err_detail());
        return;
    }
    char name[CND_USER_ID_MAX];
    if (cnd_proto_text(name, sizeof name, h->node_name) || strcmp(name, s->name) != 0) {
        s_reject(d, s, s->name, f, &rej, "hello.node_name differs from the enrolled name");
        goto done;
    }
    if (sodium_memcmp(h->identity_key.data, r.ed_pk, 32) != 0) {
        s_reject(d, s, s->name, f, &rej, "hello.identity_key is not the enrolled key");
        goto done;
    }
    if (h->role != s->role) {
        s_reject(d, s, s->name, f, &rej, "hello.role differs from the enrolled role");
        goto done;
    }
    /* The node presents exactly the certificate enrolled for it, and that certificate still
     * verifies against the federation CA (validity, revocation list) for its name and role. */
    cnd_cert_info_t ci;
    if (!r.cert || h->certificate.len != r.cert_len ||
        memcmp(h->certificate.data, r.cert, r.cert_len) != 0) {
        char why[600];
        s_cert_mismatch(why, sizeof why, s->name, h->certificate.data, h->certificate.len, &r);
        s_reject(d, s, s->name, f, &rej, why);
        goto done;
    }
    int64_t unow = cnd_unix_time();
    if (cnd_cert_check(&ci, d->c.ca_cert, d->c.ca_crl, r.cert, r.cert_len,
                       s->role == CONDENSER__ROLE__ROLE_DEVICE ? "device" : "site", s->name,
                       unow)) {
        char why[600];
        snprintf(why, sizeof why, "hello.certificate: %s%s", cnd_err_detail(),
                 strstr(cnd_err_detail(), "expired")
                     ? " (the site needs a renewed certificate: condenser ca issue --renew, "
                       "condenser site renew)"
                     : "");
        s_reject(d, s, s->name, f, &rej, why);
        goto done;
    }
    if (h->min_version > CND_PROTO_VERSION || h->max_version < CND_PROTO_VERSION) {
        rej.code = CONDENSER__ERROR_CODE__ERR_BAD_VERSION;
        s_reject(d, s, s->name, f, &rej, "no common protocol version");
        goto done;
    }
    /* Accepted: the session rests on this key and certificate until its next Hello. A round in
     * flight borrowed the previous certificate only to build its RoundStart, sent already. */
    memcpy(s->ed_pk, r.ed_pk, 32);
    snprintf(s->fpr, sizeof s->fpr, "%s", r.fpr);
    free(s->cert);
    s->cert = r.cert;
    s->cert_len = r.cert_len;
    r.cert = NULL;
    s->cert_not_after = ci.not_after;
    int64_t left = cnd_cert_days_left(ci.not_after, unow);
    if (left < CND_CERT_WARN_DAYS) {
        char x[32];
        s_log(d, "warning: %s's certificate (serial %llu) expires in %lld day%s (%s): renew it",
              s->name, (unsigned long long)ci.serial, (long long)left, left == 1 ? "" : "s",
              cnd_iso8601(x, ci.not_after));
    }
    s->hello = 1;
    s->peer = f->peer;
    Condenser__HelloAck ack;
    condenser__hello_ack__init(&ack);
    ack.coordinator_name = cnd_proto_str(d->c.name);
    ack.version = CND_PROTO_VERSION;
    ack.heartbeat_ms = (uint32_t)(d->o->heartbeat_ms ? d->o->heartbeat_ms : 2000);
    ack.max_message = CND_PROTO_MAX_MSG;
    ack.chunk_size = CND_PROTO_CHUNK_DEFAULT;
    ack.server_unix_ms = (uint64_t)cnd_unix_time() * 1000;
    s_log(d, "%s said hello", s->name);
    if (s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, &ack, 0, 0)) goto done;
    s_announce(d, s);
done:
    cnd_ident_rec_free(&r);
}

static void s_on_frame(s_daemon_t *d, cnd_frame_t *f)
{
    if (d->capture) {
        uint8_t le[4];
        cnd_st_le32(le, (uint32_t)f->len);
        if (fwrite(le, 1, 4, d->capture) != 4 || fwrite(f->data, 1, f->len, d->capture) != f->len)
            s_log(d, "capture: write failed");
        fflush(d->capture);
    }
    s_session_t *s = s_session_for(d, f->user_id);
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_MALFORMED, 0, 0};
    cnd_proto_msg_t *m = NULL;
    if (!s) {
        rej.code = CONDENSER__ERROR_CODE__ERR_BUSY;
        s_reject(d, NULL, f->user_id, f, &rej, "no session available");
        return;
    }
    if (cnd_proto_decode(&m, &rej, f->data, f->len)) {
        s_reject(d, s, f->user_id, f, &rej, cnd_err_detail());
        return;
    }
    const Condenser__Envelope *env = m->env;
    if (cnd_proto_check_sender(&rej, env, f->user_id) ||
        cnd_seqwin_check(&s->win, &rej, env->seq)) {
        s_reject(d, s, f->user_id, f, &rej, cnd_err_detail());
        goto done;
    }
    cnd_seqwin_commit(&s->win, env->seq);
    s->last_seen = cnd_now();
    {
        char jid[32];
        snprintf(jid, sizeof jid, "%llu", (unsigned long long)env->job_id);
        if (cnd_audit_log_message(d->c.audit, 'I', d->c.fpr, s->fpr, env->job_id ? jid : "",
                                  cnd_proto_type_name(env->type),
                                  env->round ? (int64_t)env->round : -1, f->data, f->len, NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    }
    if (cnd_proto_check_role(&rej, env, s->role)) {
        s_reject(d, s, f->user_id, f, &rej, cnd_err_detail());
        goto done;
    }
    if (env->type == CONDENSER__MSG_TYPE__MSG_HELLO) {
        s_on_hello(d, s, f, env);
        goto done;
    }
    if (!s->hello) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s->peer = f->peer;
        s_reject(d, s, f->user_id, f, &rej, "no session: send hello first");
        goto done;
    }
    s->peer = f->peer;
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT: break;
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE:
        if (!d->job || env->job_id != (uint64_t)d->job) {
            rej.code = CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB;
            s_reject(d, s, f->user_id, f, &rej, "job_response for a job not in flight");
            break;
        }
        if (env->job_response->accept) {
            s->accepted_job = d->job;
            s->refused_job = 0;
            s_log(d, "%s accepted job %lld", s->name, (long long)d->job);
        } else {
            char why[CND_PROTO_TEXT_MAX + 1];
            if (cnd_proto_text(why, sizeof why, env->job_response->reason)) why[0] = 0;
            for (char *p = why; *p; p++)
                if ((unsigned char)*p < 0x20) *p = ' ';
            s->refused_job = d->job;
            s->accepted_job = 0;
            s_log(d, "%s refused job %lld: %s", s->name, (long long)d->job, why);
        }
        break;
    case CONDENSER__MSG_TYPE__MSG_ERROR: {
        char text[CND_PROTO_TEXT_MAX + 1];
        if (cnd_proto_text(text, sizeof text, env->error->text)) text[0] = 0;
        for (char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
        s_log(d, "%s reports %s: %s", s->name, cnd_proto_error_name(env->error->code), text);
        int idx = d->round ? cnd_round_site_index(d->round, s->name) : -1;
        if (idx >= 0 && env->job_id == (uint64_t)d->job && env->round == cnd_round_number(d->round))
            if (cnd_round_on_message(d->round, (uint32_t)idx, env, m->wire_len, &rej))
                s_log(d, "%s: %s", s->name, cnd_err_detail());
        break;
    }
    default: {
        if (cnd_proto_phase_of(env) == CND_PHASE_IDLE) {
            rej.code = CONDENSER__ERROR_CODE__ERR_REFUSED;
            rej.seq = env->seq;
            rej.type = env->type;
            s_reject(d, s, f->user_id, f, &rej, "not handled by this coordinator");
            break;
        }
        cnd_round_view_t view = {(uint64_t)d->job, 0, CND_PHASE_IDLE};
        if (d->round) cnd_round_view(d->round, &view);
        if (!d->job) {
            rej.code = CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB;
            rej.seq = env->seq;
            rej.type = env->type;
            s_reject(d, s, f->user_id, f, &rej, "no job in flight");
            break;
        }
        if (cnd_proto_check_round(&rej, env, &view)) {
            s_reject(d, s, f->user_id, f, &rej, cnd_err_detail());
            break;
        }
        int idx = d->round ? cnd_round_site_index(d->round, s->name) : -1;
        if (idx < 0) {
            rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
            rej.seq = env->seq;
            rej.type = env->type;
            s_reject(d, s, f->user_id, f, &rej, "not a participant of this round");
            break;
        }
        cnd_err_clear();
        if (cnd_round_on_message(d->round, (uint32_t)idx, env, m->wire_len, &rej))
            s_reject(d, s, f->user_id, f, &rej, cnd_err_detail());
        break;
    }
    }
done:
    cnd_proto_msg_destroy(&m);
}

/* --- main loop ------------------------------------------------------------------------------ */

int cnd_coord_run(const cnd_coord_run_opts_t *o, volatile sig_atomic_t *stop)
{
    s_daemon_t *d = calloc(1, sizeof *d);
    if (!d) return cnd_errf(CND_ENOMEM, "coordinator: out of memory");
    d->o = o;
    pthread_mutex_init(&d->zmu, NULL);
    d->seq = cnd_proto_seq_start();
    uint8_t csk[32], cpk[32];
    int rc = cnd_coord_open(&d->c, o->dir, 1);
    if (rc) goto out;
    if ((rc = cnd_cstore_open_readonly(&d->zstore, d->c.db_path))) goto out;
    if ((rc = cnd_identity_curve_keypair(cpk, csk, d->c.id))) goto out;
    if (o->capture && !(d->capture = fopen(o->capture, "ab"))) {
        rc = cnd_errf(CND_EIO, "%s: cannot open the capture file", o->capture);
        goto out;
    }
    cnd_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = o->endpoint;
    so.secret_key = csk;
    so.allow = s_allow;
    so.allow_ctx = d;
    so.on_event = s_event;
    so.event_ctx = d;
    so.recheck = 1;
    so.heartbeat_ivl_ms = 1000;
    rc = cnd_server_new(&d->srv, &so);
    sodium_memzero(csk, sizeof csk);
    if (rc) goto out;
    const char *ep = cnd_server_endpoint(d->srv);
    if (o->endpoint_file && (rc = cnd_file_write_atomic(o->endpoint_file, ep, strlen(ep), 0644)))
        goto out;
    s_log(d, "coordinator %s listening on %s (CurveZMQ, enrolled keys only)", d->c.name, ep);
    void *sock = cnd_server_socket(d->srv);
    double idle_since = 0; /* until_done: when the last job ended */
    while (!*stop) {
        /* One transaction per iteration, never held while waiting in zmq_poll, so operators'
         * commands (enroll, revoke, cancel) get the write lock between iterations. */
        if ((rc = s_begin(d))) break;
        double now = cnd_now();
        if (!d->job && !s_load_job(d) && o->until_done) {
            /* Stay a moment so the last messages (RoundEnd) leave: sockets do not linger. */
            if (idle_since == 0) idle_since = now;
            if (now - idle_since > 1.5) break;
        }
        s_maybe_start_round(d, now);
        if ((rc = s_end(d))) break;
        double wait = 0.2;
        if (d->round) {
            double left = cnd_round_time_left(d->round, now);
            if (left < wait) wait = left;
        }
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int pr = zmq_poll(&it, 1, (long)(wait * 1000));
        if (pr < 0 && zmq_errno() != EINTR) {
            rc = cnd_errf(CND_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if ((rc = s_begin(d))) break;
        for (int k = 0; k < 256; k++) {
            cnd_frame_t f;
            int r = cnd_server_recv(d->srv, &f, 0);
            if (r == CND_ETIMEOUT) break;
            if (r) {
                s_log(d, "receive: %s", cnd_err_detail());
                break;
            }
            s_on_frame(d, &f);
            cnd_frame_clear(&f);
            if (d->round && cnd_round_tick(d->round, cnd_now())) s_round_ended(d);
        }
        s_drain_refusals(d);
        now = cnd_now();
        if (d->round && cnd_round_tick(d->round, now)) s_round_ended(d);
        if (now - d->last_state_check > 0.5) {
            d->last_state_check = now;
            s_check_job_state(d);
            s_check_identities(d);
        }
        if ((rc = s_end(d))) {
            s_log(d, "store: %s", cnd_err_detail());
            break;
        }
    }
    if (d->round) {
        /* Stopped mid-round: leave it open in the store; the next run redoes it. */
        s_log(d, "stopping with round %u in flight; it will run again on restart",
              cnd_round_number(d->round));
        cnd_round_destroy(&d->round);
    }
    if (d->txn) {
        d->txn = 0;
        int crc = cnd_cstore_commit(d->c.store);
        if (!rc) rc = crc;
    }
out:
    s_unload_job(d);
    cnd_server_destroy(&d->srv);
    if (d->capture) fclose(d->capture);
    cnd_cstore_close(&d->zstore);
    cnd_coord_close(&d->c);
    for (size_t i = 0; i < d->n_sess; i++) free(d->sess[i].cert);
    free(d->sess);
    pthread_mutex_destroy(&d->zmu);
    free(d);
    return rc;
}
