/*
 * agent_daemon.c: the site agent's event loop (see agent_daemon.h).
 *
 * Single thread: the socket, the store and the audit log belong to it. Local training runs in
 * the loop (libzmq keeps the connection alive with ZMTP heartbeats meanwhile).
 *
 * Fault injection for the integration tests (tests/coordinator/test_federation*.c), compiled
 * only with CND_TEST_HOOKS (a CMake option scripts/test sets and no release build does), read
 * from the environment once at start:
 *   CND_AGENT_FAULT=advertise:R  the process kills itself (SIGKILL) right after sending its
 *                                AdvertiseKeys in round R;
 *   CND_AGENT_FAULT=shares:R     ... when the SharesRelay of round R arrives: its key shares
 *                                were accepted, it never masks (a dropout after sharing);
 *   CND_AGENT_FAULT=masked:R     ... when the ConsistencyRequest of round R arrives: its masked
 *                                update was accepted, it never signs or unmasks;
 *   CND_AGENT_FAULT=train:R      the local step of round R fails (as with broken data);
 *   CND_AGENT_FAULT=freeze:R     the process stops itself (SIGSTOP) right after sending its
 *                                AdvertiseKeys in round R: a host that hangs with its TCP
 *                                connection open (only ZMTP heartbeats can tell).
 *   CND_AGENT_FAULT=forge:R      a malicious site: in round R it encodes its sample count so that
 *                                the survivors' total reads 1 (assuming the other n-1 sites
 *                                have its own count, as in the test fixture);
 *   CND_AGENT_FAULT=wrap:R       a malicious site: in round R its first coordinate is 2^(b-1)-1,
 *                                far outside the clip, wrapping the ring;
 *   CND_AGENT_DEBUG_DUMP=DIR     writes each round's update, in float and encoded, UNMASKED, to
 *                                DIR/<site>-j<job>-r<round>.upd (local disk only), so a test can
 *                                compute the exact sum the coordinator must recover; in an
 *                                evaluation round, its counts as text to
 *                                DIR/<site>-j<job>-r<round>.eval. Never set it on a real site.
 */
#include "agent_daemon.h"
#include "agent_metrics.h"
#include "agent_probe.h"
#include "agent_config.h"
#include "agent_store.h"
#include "agent_dp.h"
#include "agent_eval.h"
#include "dpsgd.h"
#include "classmap.h"
#include "agent_teacher.h"
#include "agent_train.h"
#include "audit_actions.h"
#include "audit_log.h"
#include "chunk.h"
#include "clock.h"
#include "cert.h"
#include "job.h"
#include "job_dp.h"
#include "dgauss.h"
#include "digest.h"
#include "fileio.h"
#include "fixedpoint.h"
#include "identity.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "proto.h"
#include "secagg.h"
#include "service.h"
#include "train.h"
#include "transport.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

enum {
    S_FAULT_NONE,
    S_FAULT_ADVERTISE,
    S_FAULT_SHARES,
    S_FAULT_MASKED,
    S_FAULT_TRAIN,
    S_FAULT_FREEZE,
    S_FAULT_FORGE,
    S_FAULT_WRAP
};

typedef struct {
    const cnd_agent_run_opts_t *o;
    cnd_agent_config_t cfg;
    cnd_identity_t *id;
    uint8_t *cert; /* the certificate file as DER: what the next Hello presents */
    size_t cert_len;
    cnd_cert_info_t cert_ci; /* its fields (read, not verified: the coordinator verifies) */
    struct stat cert_st;     /* the file as last read, to notice a renewal */
    double cert_checked;     /* cnd_now() of the last look at the file */
    int64_t warn_day;        /* wall-clock day of the last expiry check (0: never) */
    int rotation_pending;    /* the coordinator rotated this site's key: wait for the new one */
    double hello_wait_until; /* a recoverable refusal: the next Hello waits (or a new file) */
    char quiet_text[256];    /* the last rate-limited log line, and when it was logged */
    double quiet_at;
    char fpr[65];       /* this site */
    char coord_fpr[65]; /* the pinned coordinator */
    cnd_astore_t *store;
    cnd_audit_t *audit;
    cnd_client_t *cli;
    int lock_fd; /* the site's lock (agent_probe.h), held while the agent runs */
    uint64_t seq;
    cnd_seqwin_t win; /* the coordinator's sequence numbers */
    int hello_ok;
    double hello_sent;
    int hellos_unanswered; /* Hellos sent on this connection without an answer */
    uint64_t handshakes;   /* the transport's count when last seen: a change is a new connection */
    uint64_t hs_fail_base; /* the transport's handshake failures at the last success */
    double handshake_warned; /* cnd_now() of the last "handshake fails" message, 0 = never */
    int stop_rc;             /* set when the coordinator refused this site for good */
    char stop_why[1400];
    char coord_name[64];
    int hb_ms;
    double last_sent;
    /* job */
    uint64_t job;
    cnd_job_spec_t spec;
    uint8_t *spec_bytes; /* JobSpec as received */
    size_t spec_len;
    int job_state;            /* 0 none, 1 waiting for the teacher, 2 accepted, 3 refused */
    cnd_model_t *teacher;     /* a .cnd teacher, shipped or local; NULL with an ONNX one */
    const char *teacher_onnx; /* an ONNX teacher: site-local (path in cfg) or shipped (the cache
                                 file, teacher_file), or NULL */
    const char *teacher_prep; /* its preprocessing spec (cfg, or the job's) */
    char teacher_file[CND_AGENT_PATH_MAX + 100];
    size_t teacher_mem; /* an ONNX teacher's graph and batch run, bytes
                           (cnd_agent_onnx_teacher_check) */
    uint8_t teacher_digest[32];
    cnd_assembler_t *teacher_asm;
    cnd_agent_data_t data;
    int data_ok;
    /* round */
    cnd_round_view_t view;
    uint32_t pid, n;
    uint32_t attempt; /* the coordinator's attempt number of this round (SecAgg+ round id) */
    int qat;
    cnd_agent_dp_plan_t dp_plan; /* the round's privacy spend (DP jobs, agent_dp.h) */
    uint64_t dim;                /* the student's parameters (the job's update length) */
    cnd_secagg_params_t sp;
    cnd_secagg_client_t *sc;
    cnd_assembler_t *model_asm;
    cnd_model_t *global;
    uint32_t eval_k; /* an evaluation round (RoundStart.candidates): candidates, else 0 */
    uint8_t *bundle; /* its candidate bundle once received (agent_eval.h) */
    size_t bundle_len;
    uint8_t *shares; /* SharesRelay body waiting for the model */
    size_t shares_len;
    uint8_t *masked; /* MASKED message kept for a resend after ERR_BUSY */
    size_t masked_len;
    Condenser__ObjectInfo masked_info;
    uint8_t masked_digest[32];
    Condenser__Metrics metrics;
    double resend_at; /* 0: nothing to resend */
    cnd_around_t rr;  /* round row */
    int round_open;
    int done;
    int fault, fault_round;
    cnd_agent_live_t live;      /* what the metrics endpoint reads */
    cnd_metrics_server_t *msrv; /* --metrics; NULL when off */
} s_agent_t;

static void s_log(s_agent_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(s_agent_t *a, const char *fmt, ...)
{
    if (!a->o->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cnd_log_scope((int64_t)a->job, a->round_open ? a->view.round : 0, NULL);
    a->o->log(a->o->log_ctx, buf);
}

/* Logs a line unless the same line was logged in the last minute (a refusal repeated at every
 * Hello retry, a half-installed renewal seen every few seconds). */
static void s_log_quiet(s_agent_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log_quiet(s_agent_t *a, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    double now = cnd_now();
    if (strncmp(buf, a->quiet_text, sizeof a->quiet_text - 1) == 0 && now - a->quiet_at < 60)
        return;
    snprintf(a->quiet_text, sizeof a->quiet_text, "%.255s", buf);
    a->quiet_at = now;
    s_log(a, "%s", buf);
}

/* --- logging of messages -------------------------------------------------------------------- */

static int s_log_msg(s_agent_t *a, char dir, const char *type, uint64_t job, uint32_t round,
                     const void *bytes, size_t len)
{
    s_log(a, "debug: %s %s, %zu bytes", dir == 'E' ? "sending" : "received", type, len);
    int rc = cnd_astore_begin(a->store);
    if (rc) return rc;
    rc = cnd_astore_message(a->store, dir, type, job, round, bytes, len);
    char jid[32];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)job);
    if (!rc)
        rc = cnd_audit_log_message(a->audit, dir, a->fpr, a->coord_fpr, job ? jid : "", type,
                                   round ? (int64_t)round : -1, bytes, len, NULL);
    if (rc) {
        cnd_astore_rollback(a->store);
        return rc;
    }
    return cnd_astore_commit(a->store);
}

/* Builds, logs and sends one message. Returns 0, or CND_EPERM when the coordinator refuses
 * this key (fatal), or another error (the message did not leave). */
static int s_send(s_agent_t *a, Condenser__MsgType type, void *payload, uint64_t job,
                  uint32_t round, int timeout_ms)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, job, round, a->cfg.name, a->seq++);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_proto_encode(&buf, &len, &env);
    if (rc) {
        s_log(a, "not sending %s: %s", cnd_proto_type_name(type), cnd_err_detail());
        return rc;
    }
    /* Logged before it leaves: the egress log never misses a message that was sent. */
    if ((rc = s_log_msg(a, 'E', cnd_proto_type_name(type), job, round, buf, len))) {
        s_log(a, "egress log: %s (message not sent)", cnd_err_detail());
        free(buf);
        return rc;
    }
    rc = cnd_client_send(a->cli, buf, len, timeout_ms);
    free(buf);
    if (rc)
        s_log(a, "sending %s: %s", cnd_proto_type_name(type), cnd_err_detail());
    else
        a->last_sent = cnd_now();
    return rc;
}

static int s_send_hello(s_agent_t *a)
{
    Condenser__Hello h;
    condenser__hello__init(&h);
    h.node_name = cnd_proto_str(a->cfg.name);
    h.role = CONDENSER__ROLE__ROLE_SITE;
    h.identity_key = cnd_proto_bytes(cnd_identity_pk(a->id), 32);
    if (a->cert) h.certificate = cnd_proto_bytes(a->cert, a->cert_len);
    ProtobufCBinaryData caps[1] = {cnd_proto_str("secagg+")};
    h.n_capabilities = 1;
    h.capabilities = caps;
    h.min_version = CND_PROTO_VERSION;
    h.max_version = CND_PROTO_VERSION;
    h.software = cnd_proto_str("condenser 0.1.0");
    a->hello_sent = cnd_now();
    a->hellos_unanswered++;
    return s_send(a, CONDENSER__MSG_TYPE__MSG_HELLO, &h, 0, 0, 2000);
}

static int s_send_error(s_agent_t *a, Condenser__ErrorCode code, Condenser__MsgType ref,
                        uint32_t round, const char *text)
{
    Condenser__Error e;
    char buf[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_reject_t rej = {code, 0, ref};
    cnd_proto_error_init(&e, buf, &rej, text);
    return s_send(a, CONDENSER__MSG_TYPE__MSG_ERROR, &e, a->job, round, 2000);
}

/* --- rounds --------------------------------------------------------------------------------- */

static void s_round_save(s_agent_t *a)
{
    if (a->round_open && cnd_astore_round_update(a->store, &a->rr))
        s_log(a, "store: %s", cnd_err_detail());
}

static void s_round_clear(s_agent_t *a)
{
    cnd_secagg_client_destroy(&a->sc);
    cnd_assembler_destroy(&a->model_asm);
    cnd_model_destroy(&a->global);
    free(a->bundle);
    a->bundle = NULL;
    a->bundle_len = 0;
    a->eval_k = 0;
    free(a->shares);
    a->shares = NULL;
    a->shares_len = 0;
    if (a->masked) sodium_memzero(a->masked, a->masked_len);
    free(a->masked);
    a->masked = NULL;
    a->masked_len = 0;
    a->resend_at = 0;
    a->round_open = 0;
}

static void s_job_clear(s_agent_t *a)
{
    s_round_clear(a);
    cnd_model_destroy(&a->teacher);
    a->teacher_onnx = a->teacher_prep = NULL;
    a->teacher_mem = 0;
    cnd_assembler_destroy(&a->teacher_asm);
    cnd_agent_data_free(&a->data);
    a->data_ok = 0;
    free(a->spec_bytes);
    a->spec_bytes = NULL;
    a->job = 0;
    a->job_state = 0;
    memset(&a->view, 0, sizeof a->view);
}

static void s_round_fail(s_agent_t *a, const char *why)
{
    s_log(a, "round %u: %s", a->view.round, why);
    char text[600];
    snprintf(text, sizeof text, "site cannot complete round %u: %s", a->view.round, why);
    (void)s_send_error(a, CONDENSER__ERROR_CODE__ERR_INTERNAL,
                       CONDENSER__MSG_TYPE__MSG_SHARES_RELAY, a->view.round, text);
    snprintf(a->rr.outcome, sizeof a->rr.outcome, "failed");
    snprintf(a->rr.reason, sizeof a->rr.reason, "%s", why);
    snprintf(a->rr.phase, sizeof a->rr.phase, "ended");
    a->rr.ended_ms = cnd_unix_time() * 1000;
    s_round_save(a);
    s_round_clear(a);
}

static void s_maybe_fault(s_agent_t *a, int point)
{
    if (point == S_FAULT_ADVERTISE && a->fault == S_FAULT_FREEZE &&
        a->view.round == (uint32_t)a->fault_round) {
        s_log(a, "fault injection: freezing this agent after advertising keys in round %u",
              a->view.round);
        raise(SIGSTOP);
        return;
    }
    if (a->fault == point && a->view.round == (uint32_t)a->fault_round) {
        s_log(a, "fault injection: killing this agent %s in round %u",
              point == S_FAULT_ADVERTISE ? "after advertising keys"
              : point == S_FAULT_SHARES  ? "after its key shares were taken (before masking)"
                                         : "after its masked update was taken (before unmasking)",
              a->view.round);
        /* ZeroMQ sends from its I/O thread: give the message just sent time to leave, so the
         * fault is a dropout after this step rather than before it. */
        if (point == S_FAULT_ADVERTISE) nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
        raise(SIGKILL);
    }
}

static int s_send_masked(s_agent_t *a)
{
    uint32_t round = a->view.round;
    Condenser__MaskedInput mi;
    condenser__masked_input__init(&mi);
    mi.vector = &a->masked_info;
    mi.bit_width = a->sp.bits;
    mi.length = a->sp.len;
    mi.participant_id = a->pid;
    int rc = s_send(a, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, &mi, a->job, round, 5000);
    for (uint32_t i = 0; !rc && i < a->masked_info.chunk_count; i++) {
        Condenser__Chunk ch;
        uint8_t sha[32];
        if ((rc = cnd_chunk_piece(&ch, sha, CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT,
                                  &a->masked_info, a->masked, i)))
            break;
        rc = s_send(a, CONDENSER__MSG_TYPE__MSG_CHUNK, &ch, a->job, round, 5000);
    }
    return rc;
}

/* CND_AGENT_FAULT=forge / wrap (test builds only): a malicious site's encoded vector. */
static void s_malicious(s_agent_t *a, uint32_t *x, const cnd_fxp_params_t *fp,
                        const cnd_fxp_layout_t *lay)
{
#ifndef CND_TEST_HOOKS
    (void)a, (void)x, (void)fp, (void)lay;
#else
    if (a->view.round != (uint32_t)a->fault_round) return;
    uint32_t m = lay->bits == 32 ? 0xffffffffu : (1u << lay->bits) - 1, *c = x + fp->dim;
    if (a->fault == S_FAULT_WRAP) {
        x[0] = (1u << (lay->bits - 1)) - 1;
        s_log(a, "fault injection: coordinate 0 set to %u (wraps the ring)", x[0]);
    } else if (a->fault == S_FAULT_FORGE) {
        /* limbs t_j - (n-1) c_j: with n-1 others sending c_j each, every limb sums to t_j */
        for (uint32_t j = 0; j < lay->n_limbs; j++)
            c[j] = ((j == 0 ? 1u : 0u) - (a->n - 1) * c[j]) & m;
        s_log(a, "fault injection: sample count forged so that the total reads 1");
    }
#endif
}

/* CND_AGENT_DEBUG_DUMP (test builds only, see the top of this file). */
static void s_debug_dump(s_agent_t *a, const cnd_agent_update_t *u, const uint32_t *x, uint32_t len,
                         uint64_t weight)
{
#ifndef CND_TEST_HOOKS
    (void)a, (void)u, (void)x, (void)len, (void)weight;
#else
    const char *dir = getenv("CND_AGENT_DEBUG_DUMP");
    if (!dir || !*dir) return;
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_put(&b, "CUPD", 4);
    cnd_buf_u32(&b, (uint32_t)u->dim);
    cnd_buf_u32(&b, len);
    cnd_buf_u64(&b, weight);
    for (size_t i = 0; i < u->dim; i++) cnd_buf_f32(&b, u->update[i]);
    for (uint32_t i = 0; i < len; i++) cnd_buf_u32(&b, x[i]);
    char path[CND_AGENT_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s-j%llu-r%u.upd", dir, a->cfg.name, (unsigned long long)a->job,
             a->view.round);
    if (b.err || cnd_file_write_atomic(path, b.data, b.len, 0600))
        s_log(a, "debug dump: %s", cnd_err_detail());
    cnd_buf_free(&b);
#endif
}

/* The round's fixed-point parameters: the job's clip and L2 bound, or under distributed DP the
 * update's L2 clip and each site's noise variance (proto/job_dp.h). */
static int s_fxp_params(s_agent_t *a, cnd_fxp_params_t *fp, uint32_t dim)
{
    *fp = (cnd_fxp_params_t){
        dim, a->n, a->spec.value_bits, a->spec.clip, a->spec.l2_clip, a->spec.sample_cap};
    if (a->spec.dp_mode != CND_JOB_DP_DISTRIBUTED) return 0;
    cnd_dp_ddg_t m;
    fp->clip = (float)a->spec.dp_clip;
    fp->l2_max = 0;
    return cnd_job_ddp_mech(&a->spec, dim, &fp->ddp_s2, &m);
}

/* Encodes the update into x[0..lay->len). DP-SGD or none: weighted by the sample count, with
 * the validation metrics in their limbs. Distributed DP: clipped, rounded and noised in the ring
 * (crypto/fixedpoint.h), counted as one sample and without metrics, so that nothing of the
 * site's data reaches the sum without noise (the average is unweighted anyway). */
static int s_encode(s_agent_t *a, uint32_t *x, cnd_fxp_report_t *rep, const cnd_fxp_params_t *fp,
                    const cnd_fxp_layout_t *lay, const cnd_agent_update_t *u)
{
    if (fp->ddp_s2) {
        cnd_dgauss_t *g = cnd_dgauss_new(NULL); /* fresh CSPRNG key: noise nobody can replay */
        if (!g) return CND_ENOMEM;
        int rc = cnd_fxp_encode_ddp(x, rep, fp, lay, u->update, 1, g);
        cnd_dgauss_destroy(&g);
        return rc;
    }
    int rc = cnd_fxp_encode(x, rep, fp, lay, u->update, u->samples);
    if (rc) return rc;
    /* Validation metrics travel as coordinates of the masked vector, never in the clear. */
    size_t nv = a->data.val ? a->data.val->n : 0;
    cnd_fxp_metrics_t mt = {nv, (uint64_t)((double)u->val_acc * (double)nv + 0.5),
                            nv && u->val_loss > 0 ? u->val_loss : 0};
    return cnd_fxp_encode_metrics(x, fp, lay, &mt);
}

/* CND_AGENT_DEBUG_DUMP (test builds only): an evaluation round's counts, in the clear. */
static void s_debug_dump_eval(s_agent_t *a, const cnd_agent_eval_t *e)
{
#ifndef CND_TEST_HOOKS
    (void)a, (void)e;
#else
    const char *dir = getenv("CND_AGENT_DEBUG_DUMP");
    if (!dir || !*dir) return;
    char path[CND_AGENT_PATH_MAX + 128], text[CND_AUTOC_FED_MAX * 24 + 64];
    size_t at = (size_t)snprintf(text, sizeof text, "%llu", (unsigned long long)e->validated);
    for (uint32_t i = 0; i < e->k && at < sizeof text; i++)
        at += (size_t)snprintf(text + at, sizeof text - at, " %llu",
                               (unsigned long long)e->correct[i]);
    if (at < sizeof text) at += (size_t)snprintf(text + at, sizeof text - at, "\n");
    snprintf(path, sizeof path, "%s/%s-j%llu-r%u.eval", dir, a->cfg.name,
             (unsigned long long)a->job, a->view.round);
    if (cnd_file_write_atomic(path, text, at < sizeof text ? at : sizeof text - 1, 0600))
        s_log(a, "debug dump: %s", cnd_err_detail());
#endif
}

/* Masks x (lay_len values) and keeps the MASKED message for sending. Wipes x. */
static int s_mask(s_agent_t *a, uint32_t *x, uint32_t lay_len)
{
    cnd_buf_t out;
    cnd_buf_init(&out);
    int rc = cnd_secagg_client_mask(a->sc, &out, a->shares, a->shares_len, x);
    sodium_memzero(x, (size_t)lay_len * sizeof *x);
    if (!rc && out.err) rc = CND_ENOMEM;
    if (!rc)
        rc = cnd_chunk_plan(&a->masked_info, a->masked_digest, out.data, out.len,
                            CND_PROTO_CHUNK_DEFAULT);
    if (rc) {
        cnd_buf_free(&out);
        return rc;
    }
    a->masked = out.data; /* ownership moves */
    a->masked_len = out.len;
    return 0;
}

/* An evaluation round's local step: evaluate the candidates, mask the counts, send. */
static void s_eval_step(s_agent_t *a)
{
    uint32_t round = a->view.round;
    if (!a->data_ok) {
        s_round_fail(a, "local data is not available");
        return;
    }
    s_log(a, "round %u: evaluating %u candidates on slice %u/%u of %zu local validation samples",
          round, a->eval_k, round, a->spec.rounds, a->data.val ? a->data.val->n : 0);
    uint32_t *x = NULL;
    cnd_autoc_fed_layout_t lay;
    cnd_agent_eval_t e;
    atomic_store(&a->live.training, 1);
    int rc = cnd_agent_eval_round(&x, &lay, &e, a->bundle, a->bundle_len, a->eval_k, a->n, round,
                                  &a->data, &a->spec);
    atomic_store(&a->live.training, 0);
    if (!rc && (lay.len != a->sp.len || lay.bits != a->sp.bits))
        rc = cnd_errf(CND_EPROTO,
                      "the round's SecAgg+ parameters (%u values of %u bits) do not match "
                      "%u candidates' counts (%u of %u)",
                      a->sp.len, a->sp.bits, a->eval_k, lay.len, lay.bits);
    if (!rc) s_debug_dump_eval(a, &e);
    if (!rc)
        rc = s_mask(a, x, lay.len);
    else if (x)
        sodium_memzero(x, (size_t)lay.len * sizeof *x);
    free(x);
    int stored = rc ? 0 : cnd_astore_served_mark(a->store, a->job, round, a->attempt, "masked");
    if (rc || stored) {
        char why[512];
        snprintf(why, sizeof why, "%s%s", stored ? "store: " : "", cnd_err_detail());
        s_round_fail(a, why);
        return;
    }
    a->rr.train_ms = e.eval_ms;
    condenser__metrics__init(&a->metrics);
    a->metrics.train_ms = e.eval_ms; /* in the clear only the time it took */
    if (s_send_masked(a) == 0) {
        (void)s_send(a, CONDENSER__MSG_TYPE__MSG_METRICS, &a->metrics, a->job, round, 5000);
        snprintf(a->rr.phase, sizeof a->rr.phase, "masked");
        s_round_save(a);
        s_log(a,
              "round %u: sent the masked counts of %u candidates (%zu bytes, %u values of %u "
              "bits; local counts only inside the secure sum)",
              round, a->eval_k, a->masked_len, a->sp.len, a->sp.bits);
    }
}

/* The local step: train, encode, mask, send. */
static void s_local_step(s_agent_t *a)
{
    uint32_t round = a->view.round;
    if (a->eval_k) {
        s_eval_step(a);
        return;
    }
    if (a->fault == S_FAULT_TRAIN && round == (uint32_t)a->fault_round) {
        s_round_fail(a, "local training failed (fault injection)");
        return;
    }
    if (!a->data_ok) {
        s_round_fail(a, "local data is not available");
        return;
    }
    s_log(a, "round %u: training on %zu local samples", round, a->data.train_n->n);
    cnd_agent_update_t u;
    /* Fresh randomness for every attempt: a coordinator that runs a round again gets another
     * draw of the local training, never a replay it could subtract. */
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    seed ^= (uint64_t)a->attempt << 48;
    atomic_store(&a->live.training, 1);
    int trc = cnd_agent_local_round(&u, a->global, &a->data, &a->spec, a->qat, seed);
    atomic_store(&a->live.training, 0);
    if (!trc && a->spec.dp_clip > 0) /* the spend, durably, before anything of it leaves */
        trc = cnd_agent_dp_record(a->store, a->audit, a->fpr, a->coord_fpr, a->job, round,
                                  a->attempt, &a->dp_plan);
    if (trc) {
        char why[512];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        if (a->spec.dp_clip > 0) cnd_agent_update_free(&u);
        s_round_fail(a, why);
        return;
    }
    cnd_fxp_params_t fp;
    cnd_fxp_layout_t lay;
    uint32_t *x = NULL;
    cnd_buf_t out;
    cnd_buf_init(&out);
    cnd_fxp_report_t rep;
    int rc = s_fxp_params(a, &fp, (uint32_t)u.dim);
    if (!rc) rc = cnd_fxp_layout(&lay, &fp);
    if (!rc && (lay.len != a->sp.len || lay.bits != a->sp.bits))
        rc = cnd_errf(CND_EPROTO,
                      "the round's SecAgg+ parameters (%u values of %u bits) do not "
                      "match this job's update (%u of %u)",
                      a->sp.len, a->sp.bits, lay.len, lay.bits);
    if (!rc && !(x = malloc((size_t)lay.len * sizeof *x)))
        rc = cnd_errf(CND_ENOMEM, "masking: out of memory");
    if (!rc) rc = s_encode(a, x, &rep, &fp, &lay, &u);
    if (!rc) s_malicious(a, x, &fp, &lay);
    if (!rc) s_debug_dump(a, &u, x, lay.len, rep.weight);
    if (!rc) rc = cnd_secagg_client_mask(a->sc, &out, a->shares, a->shares_len, x);
    if (x) sodium_memzero(x, (size_t)lay.len * sizeof *x);
    free(x);
    if (!rc && out.err) rc = CND_ENOMEM;
    if (!rc)
        rc = cnd_chunk_plan(&a->masked_info, a->masked_digest, out.data, out.len,
                            CND_PROTO_CHUNK_DEFAULT);
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        cnd_buf_free(&out);
        cnd_agent_update_free(&u);
        s_round_fail(a, why);
        return;
    }
    a->masked = out.data; /* ownership moves */
    a->masked_len = out.len;
    a->rr.train_ms = u.train_ms;
    a->rr.val_loss = u.val_loss;
    a->rr.val_acc = u.val_acc;
    a->rr.samples = u.samples;
    a->rr.clipped = rep.clipped;
    /* In the clear only what says nothing about the records: the training time. */
    condenser__metrics__init(&a->metrics);
    a->metrics.train_ms = u.train_ms;
    cnd_agent_update_free(&u);
    if (cnd_astore_served_mark(a->store, a->job, round, a->attempt, "masked")) {
        char why[512];
        snprintf(why, sizeof why, "store: %s", cnd_err_detail());
        s_round_fail(a, why);
        return;
    }
    if (s_send_masked(a) == 0) {
        (void)s_send(a, CONDENSER__MSG_TYPE__MSG_METRICS, &a->metrics, a->job, round, 5000);
        snprintf(a->rr.phase, sizeof a->rr.phase, "masked");
        s_round_save(a);
        s_log(a,
              "round %u: sent the masked update (%zu bytes, %u values of %u bits, %u clipped)"
              " (local validation accuracy %.4f, %s)",
              round, a->masked_len, a->sp.len, a->sp.bits,
              a->rr.clipped ? (unsigned)a->rr.clipped : 0u, a->rr.val_acc,
              a->spec.dp_mode == CND_JOB_DP_DISTRIBUTED ? "not sent under distributed DP"
                                                        : "inside the secure sum");
    }
}

/* A refusal by this site's own rules: in its log and its audit log (site.refuse). */
static void s_audit_refusal(s_agent_t *a, const char *what, uint32_t round, uint32_t attempt,
                            const char *why)
{
    s_log(a, "refused the coordinator's %s: %s", what, why);
    char jid[32];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)a->job);
    if (cnd_audit_log_site_refuse(a->audit, a->fpr, a->coord_fpr, jid, what, why, round, attempt))
        s_log(a, "audit: %s", cnd_err_detail());
}

/* The roster of a RoundStart: index -> identity key and certificate digest, every other
 * participant's certificate verified against the federation CA (role site, its CN the name
 * given), each index 0..n-1 exactly once, this site at its own. Returns 0 or writes why. */
static int s_round_roster(s_agent_t *a, const Condenser__RoundStart *rs, cnd_secagg_member_t *ro,
                          char *why, size_t cap)
{
    uint8_t *seen = calloc(a->n, 1);
    cnd_ca_trust_t *trust = NULL; /* loaded once per round: a new CRL takes effect next round */
    int64_t now = cnd_unix_time();
    if (!seen)
        snprintf(why, cap, "out of memory");
    else if (rs->n_peers + 1 != a->n)
        snprintf(why, cap, "%zu peer certificates for %u participants", rs->n_peers, a->n);
    else if (cnd_ca_trust_load(&trust, a->cfg.ca_cert, a->cfg.ca_crl))
        snprintf(why, cap, "federation CA: %s", cnd_err_detail());
    if (!why[0]) {
        seen[a->pid] = 1;
        memcpy(ro[a->pid].id_pk, cnd_identity_pk(a->id), 32);
        cnd_sha256(ro[a->pid].cert_sha256, a->cert, a->cert_len);
    }
    for (size_t i = 0; !why[0] && i < rs->n_peers; i++) {
        const Condenser__PeerCert *p = rs->peers[i];
        char nm[64];
        cnd_cert_info_t ci;
        if (p->participant_id >= a->n || seen[p->participant_id])
            snprintf(why, cap, "participant index %u is out of range or given twice",
                     p->participant_id);
        else if (cnd_proto_text(nm, sizeof nm, p->node_name) ||
                 cnd_cert_check_trust(&ci, trust, p->certificate.data, p->certificate.len, "site",
                                      nm, now))
            snprintf(why, cap, "participant %u: %s", p->participant_id, cnd_err_detail());
        else {
            seen[p->participant_id] = 1;
            memcpy(ro[p->participant_id].id_pk, ci.pubkey, 32);
            cnd_sha256(ro[p->participant_id].cert_sha256, p->certificate.data, p->certificate.len);
        }
    }
    free(seen);
    cnd_ca_trust_destroy(&trust);
    return why[0] ? -1 : 0;
}

/* Checks a RoundStart against this site's rules and records it as served (durably, before
 * anything of the round is sent): the round belongs to the job and is within its rounds, the
 * SecAgg+ round id names this job and round, and neither this attempt nor these exact
 * parameters were served before (agent_store.h). Creates the SecAgg+ client. Returns 0, 1 for
 * a refusal by the site's rules (why says it; audited), -1 for another failure. */
static int s_round_admit(s_agent_t *a, const Condenser__Envelope *env, char *why, size_t cap)
{
    const Condenser__RoundStart *rs = env->round_start;
    if (env->round < 1 || env->round > a->spec.rounds) {
        snprintf(why, cap, "round %u is outside the job's %u rounds", env->round, a->spec.rounds);
        return 1;
    }
    if (cnd_secagg_params_decode(&a->sp, rs->secagg_params.data, rs->secagg_params.len)) {
        snprintf(why, cap, "%s", cnd_err_detail());
        return -1;
    }
    a->attempt = (uint32_t)(a->sp.round_id & 0xfff);
    if ((a->sp.round_id >> 40) != (a->job & 0xffffff) ||
        ((a->sp.round_id >> 12) & 0xfffffff) != env->round || a->attempt == 0 || a->sp.n != a->n) {
        snprintf(why, cap, "the SecAgg+ round id %llx does not name job %llu round %u",
                 (unsigned long long)a->sp.round_id, (unsigned long long)a->job, env->round);
        return 1;
    }
    cnd_secagg_member_t *ro = calloc(a->n, sizeof *ro);
    if (!ro) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    int rc = s_round_roster(a, rs, ro, why, cap);
    if (!rc && cnd_secagg_client_new(&a->sc, &a->sp, a->pid, a->id, ro)) {
        snprintf(why, cap, "%s", cnd_err_detail());
        rc = -1;
    }
    free(ro);
    if (rc) return rc;
    /* distributed DP: no sum of fewer sites than carry the noise this site accounts for */
    if (a->spec.dp_mode == CND_JOB_DP_DISTRIBUTED &&
        cnd_secagg_client_require(a->sc, a->spec.dp_min_survivors)) {
        snprintf(why, cap, "%s", cnd_err_detail());
        return 1;
    }
    rc = cnd_astore_served_begin(a->store, a->job, env->round, a->attempt,
                                 cnd_secagg_client_digest(a->sc), a->cfg.max_attempts);
    if (rc) {
        snprintf(why, cap, "%s", cnd_err_detail());
        return rc == CND_EPERM ? 1 : -1;
    }
    return 0;
}

static void s_on_round_start(s_agent_t *a, const Condenser__Envelope *env)
{
    const Condenser__RoundStart *rs = env->round_start;
    s_round_clear(a);
    if (a->job_state != 2 || env->job_id != a->job) {
        (void)s_send_error(a, CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB,
                           CONDENSER__MSG_TYPE__MSG_ROUND_START, env->round,
                           "this site has not accepted the job");
        return;
    }
    a->view.round = env->round;
    a->view.phase = CND_PHASE_ADVERTISE;
    a->pid = rs->participant_id;
    a->n = rs->participants;
    a->qat = rs->qat;
    a->eval_k = rs->candidates;
    memset(&a->rr, 0, sizeof a->rr);
    a->rr.job = a->job;
    a->rr.round = env->round;
    a->rr.participant_id = a->pid;
    a->rr.n = a->n;
    snprintf(a->rr.phase, sizeof a->rr.phase, "started");
    memcpy(a->rr.model_digest, rs->model->digest.data, 32);
    if (cnd_astore_round_begin(a->store, &a->rr)) {
        s_log(a, "store: %s", cnd_err_detail());
        return;
    }
    a->round_open = 1;
    char why[600] = "";
    int adm = a->pid < a->n ? s_round_admit(a, env, why, sizeof why) : -1;
    if (adm < 0 && !why[0]) snprintf(why, sizeof why, "participant id %u >= %u", a->pid, a->n);
    if (!adm && !a->eval_k && a->spec.dp_clip > 0 &&
        a->data_ok) /* the site's privacy budget (agent_dp.h) */
        adm = cnd_agent_dp_round_plan(&a->cfg, a->store, &a->spec, a->job, a->data.train_n->n,
                                      a->dim, &a->dp_plan, why, sizeof why);
    /* Evaluation counts carry no DP noise: a DP job's sites train only (docs/privacy.md). */
    if (!adm && a->eval_k && a->spec.dp_clip > 0) {
        snprintf(why, sizeof why,
                 "an evaluation round in a differentially private job: the counts would leave "
                 "without noise");
        adm = 1;
    }
    if (adm > 0) s_audit_refusal(a, "round", env->round, a->attempt, why);
    uint64_t max = a->cfg.max_model_mb << 20;
    cnd_proto_reject_t rej;
    if (!adm &&
        cnd_assembler_new(&a->model_asm, &rej, CONDENSER__OBJECT_KIND__OBJ_MODEL, rs->model, max))
        snprintf(why, sizeof why, "global model: %s", cnd_err_detail());
    if (why[0]) {
        s_round_fail(a, why);
        return;
    }
    cnd_buf_t b;
    cnd_buf_init(&b);
    if (cnd_secagg_client_advertise(a->sc, &b) == 0 && !b.err) {
        Condenser__AdvertiseKeys m;
        condenser__advertise_keys__init(&m);
        m.participant_id = a->pid;
        m.advert = cnd_proto_bytes(b.data, b.len);
        if (s_send(a, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &m, a->job, env->round, 2000) == 0) {
            snprintf(a->rr.phase, sizeof a->rr.phase, "advertised");
            s_round_save(a);
            s_log(a, "round %u (attempt %u): selected as participant %u of %u%s; keys advertised",
                  env->round, a->attempt, a->pid, a->n, a->qat ? " (QAT)" : "");
            cnd_buf_free(&b);
            s_maybe_fault(a, S_FAULT_ADVERTISE);
            return;
        }
    }
    cnd_buf_free(&b);
    s_round_fail(a, "could not advertise keys");
}

static void s_on_model_chunk(s_agent_t *a, const Condenser__Chunk *ch)
{
    if (!a->model_asm) return;
    cnd_proto_reject_t rej;
    int rc = cnd_assembler_add(a->model_asm, &rej, ch);
    if (rc && rc != CND_EEXIST) {
        char why[300];
        snprintf(why, sizeof why, "global model chunk: %s", cnd_err_detail());
        s_round_fail(a, why);
        return;
    }
    if (cnd_assembler_received(a->model_asm) < cnd_assembler_count(a->model_asm)) return;
    uint8_t *data = NULL;
    uint64_t len = 0;
    rc = cnd_assembler_finish(a->model_asm, &rej, &data, &len);
    cnd_assembler_destroy(&a->model_asm);
    if (!rc && a->eval_k) { /* a candidate bundle: checked in full when evaluated */
        a->bundle = data;
        a->bundle_len = (size_t)len;
        if (a->shares) s_local_step(a);
        return;
    }
    if (!rc) rc = cnd_model_deserialize(&a->global, data, (size_t)len, "the global model");
    free(data);
    if (!rc && (strcmp(a->global->spec, a->spec.arch) != 0 ||
                a->global->n_classes != (int)a->spec.classes))
        rc = cnd_errf(CND_EPROTO, "the global model (%s) is not the job's student (%s)",
                      a->global->spec, a->spec.arch);
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "global model: %s", cnd_err_detail());
        s_round_fail(a, why);
        return;
    }
    if (a->shares) s_local_step(a); /* the shares came first */
}

/* --- jobs ----------------------------------------------------------------------------------- */

static void s_job_answer(s_agent_t *a, int accept, const char *reason)
{
    Condenser__JobResponse r;
    condenser__job_response__init(&r);
    r.accept = accept;
    if (!accept) r.reason = cnd_proto_str(reason);
    if (r.reason.len > CND_PROTO_TEXT_MAX) r.reason.len = CND_PROTO_TEXT_MAX;
    a->job_state = accept ? 2 : 3;
    if (cnd_astore_job_put(a->store, a->job, a->spec_bytes, a->spec_len,
                           accept ? "accepted" : "refused", reason))
        s_log(a, "store: %s", cnd_err_detail());
    (void)s_send(a, CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE, &r, a->job, 0, 2000);
    if (accept)
        s_log(a, "job %llu accepted: %zu training and %zu validation samples",
              (unsigned long long)a->job, a->data.train ? a->data.train->n : 0,
              a->data.val ? a->data.val->n : 0);
    else
        s_log(a, "job %llu refused: %s", (unsigned long long)a->job, reason);
}

/* Teacher and data are in place: prepare the data and answer. */
static void s_job_prepare(s_agent_t *a)
{
    cnd_model_t *student = NULL;
    char why[600] = "";
    /* The student's normalisation comes with the first global model; until then use the
     * teacher's when the student has none of its own (the job's init copies it). */
    int rc =
        cnd_model_new(&student, a->spec.arch,
                      (cnd_shape_t){(int)a->spec.in_c, (int)a->spec.in_h, (int)a->spec.in_w}, 1);
    if (!rc && student->n_classes != (int)a->spec.classes)
        rc = cnd_errf(CND_EINVAL, "the student architecture has %d outputs, the job says %u",
                      student->n_classes, a->spec.classes);
    if (!rc && a->teacher)
        for (int i = 0; i < student->in.c && i < a->teacher->in.c; i++) {
            student->norm_mean[i] = a->teacher->norm_mean[i];
            student->norm_std[i] = a->teacher->norm_std[i];
        }
    cnd_onnx_prep_t prep;
    if (!rc && !a->teacher) /* an ONNX teacher: its preprocessing as the student's */
        rc = cnd_onnx_prep_parse(&prep, a->teacher_prep);
    if (!rc && !a->teacher)
        rc = cnd_onnx_prep_norm(&prep, student->in.c, student->norm_mean, student->norm_std);
    if (!rc) {
        cnd_set_threads(a->cfg.threads);
        rc = cnd_agent_data_prepare(&a->data, a->cfg.data, a->cfg.validation, 1, a->teacher,
                                    a->teacher_onnx, a->teacher_prep, student, &a->spec);
    }
    if (!rc) {
        /* an ONNX teacher's logits are computed once above and its graph freed */
        size_t tparams = a->teacher ? a->teacher->num_params : 0;
        size_t need = cnd_agent_data_bytes(&a->data) + a->teacher_mem +
                      4 * (tparams + student->num_params) * sizeof(float);
        if (need > a->cfg.memory_mb << 20)
            rc = cnd_errf(CND_ERANGE,
                          "the job needs about %zu MB, over this site's limit of "
                          "%llu MB",
                          need >> 20, (unsigned long long)a->cfg.memory_mb);
    }
    /* DP-SGD: no batchnorm (distributed DP noises the whole update instead) */
    if (!rc && a->spec.dp_clip > 0 && a->spec.dp_mode == CND_JOB_DP_LOCAL)
        rc = cnd_dpsgd_check_model(student);
    if (!rc) a->dim = student->num_params + student->num_state; /* the update's length */
    int dp = rc ? 0
                : cnd_agent_dp_job_check(&a->cfg, a->store, &a->spec, a->job, a->data.train_n->n,
                                         a->dim, why, sizeof why);
    cnd_model_destroy(&student);
    if (rc || dp) {
        if (rc) snprintf(why, sizeof why, "%s", cnd_err_detail());
        if (dp > 0) s_audit_refusal(a, "job", 0, 0, why); /* refused by the site's budget */
        cnd_agent_data_free(&a->data);
        s_job_answer(a, 0, why);
        return;
    }
    a->data_ok = 1;
    for (int i = 0; i < a->data.n_missing; i++) { /* the job goes on: others hold them */
        char nm[CND_CLASS_NAME_MAX + 1] = "?";
        if (cnd_classmap_name(a->spec.labels, a->data.missing[i], nm, sizeof nm)) nm[0] = '?';
        s_log(a, "warning: job %llu: the local data has no sample of class %d ('%s')",
              (unsigned long long)a->job, a->data.missing[i], nm);
    }
    s_job_answer(a, 1, NULL);
}

static void s_teacher_path(s_agent_t *a, char *out, size_t cap)
{
    char hex[65];
    snprintf(out, cap, "%s/teachers/%s.%s", a->cfg.work, cnd_hex(hex, a->teacher_digest, 32),
             a->spec.teacher_onnx ? "onnx" : "cnd");
}

/* An ONNX teacher (site-local at `path`, or shipped: its bytes in data, cached at `path`)
 * checked against the job and this site's memory limit; 0, or the job is refused. */
static int s_onnx_teacher(s_agent_t *a, const char *path, const uint8_t *data, size_t len,
                          const char *prep)
{
    char name[100], hex[65]; /* a shipped one is named by its digest: it is not cached yet */
    snprintf(name, sizeof name, "teacher sha256:%.16s", cnd_hex(hex, a->teacher_digest, 32));
    int rc = cnd_agent_onnx_teacher_check(data ? name : path, data, len, prep, &a->spec,
                                          a->cfg.memory_mb, &a->teacher_mem);
    if (rc) {
        char why[600];
        snprintf(why, sizeof why, "%s teacher: %s", data ? "shipped ONNX" : "local ONNX",
                 cnd_err_detail());
        s_job_answer(a, 0, why);
        return rc;
    }
    snprintf(a->teacher_file, sizeof a->teacher_file, "%s", path);
    a->teacher_onnx = a->teacher_file;
    a->teacher_prep = prep;
    s_log(a, "%s ONNX teacher %s (preprocess %s)", data ? "shipped" : "local", path, prep);
    return 0;
}

static void s_on_job_announce(s_agent_t *a, const cnd_proto_msg_t *m)
{
    const Condenser__JobSpec *js = m->env->job_announce->spec;
    if (js->job_id == a->job && a->job_state >= 2) {
        /* The same job again (we reconnected, or the coordinator restarted): same answer. */
        s_job_answer(a, a->job_state == 2, a->job_state == 2 ? NULL : "refused before");
        return;
    }
    s_job_clear(a);
    a->job = js->job_id;
    a->view.job_id = js->job_id;
    a->spec_len = condenser__job_spec__get_packed_size(js);
    a->spec_bytes = malloc(a->spec_len ? a->spec_len : 1);
    if (a->spec_bytes) condenser__job_spec__pack(js, a->spec_bytes);
    if (!a->spec_bytes || cnd_job_from_proto(&a->spec, js)) {
        char why[300];
        snprintf(why, sizeof why, "job spec: %s",
                 a->spec_bytes ? cnd_err_detail() : "out of memory");
        s_job_answer(a, 0, why);
        return;
    }
    s_log(a, "job %llu announced: student %s, %u rounds", (unsigned long long)a->job, a->spec.arch,
          a->spec.rounds);
    if (cnd_agent_config_policy(&a->cfg, a->spec.lr, a->spec.local_epochs, a->spec.rounds)) {
        char why[300];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        s_audit_refusal(a, "job", 0, 0, why);
        s_job_answer(a, 0, why);
        return;
    }
    if (!a->spec.teacher_shipped) {
        const char *p = cnd_agent_config_teacher(&a->cfg, a->spec.teacher_local);
        if (!p) {
            char why[200];
            snprintf(why, sizeof why, "no local teacher named '%s' in this site's configuration",
                     a->spec.teacher_local);
            s_job_answer(a, 0, why);
            return;
        }
        if (cnd_onnx_is_onnx(p)) { /* its logits come once the data is read */
            if (s_onnx_teacher(a, p, NULL, 0,
                               cnd_agent_config_teacher_prep(&a->cfg, a->spec.teacher_local)))
                return;
        } else if (cnd_model_load(&a->teacher, p)) {
            char why[400];
            snprintf(why, sizeof why, "local teacher: %s", cnd_err_detail());
            s_job_answer(a, 0, why);
            return;
        }
        s_job_prepare(a);
        return;
    }
    memcpy(a->teacher_digest, js->teacher_shipped->digest.data, 32);
    char path[CND_AGENT_PATH_MAX + 100];
    s_teacher_path(a, path, sizeof path);
    if (a->spec.teacher_onnx && cnd_file_exists(path)) { /* cached: the same digest, checked */
        uint8_t *b = NULL, d[32];
        size_t n = 0;
        if (cnd_file_read(path, (size_t)a->cfg.max_model_mb << 20, &b, &n) == 0) {
            cnd_sha256(d, b, n);
            int same = sodium_memcmp(d, a->teacher_digest, 32) == 0;
            int rc = same ? s_onnx_teacher(a, path, b, n, a->spec.teacher_prep) : 0;
            free(b);
            if (same) {
                if (!rc) s_job_prepare(a);
                return;
            }
        }
    } else if (!a->spec.teacher_onnx && cnd_file_exists(path) &&
               cnd_model_load(&a->teacher, path) == 0) {
        uint8_t *b = NULL;
        size_t n = 0;
        uint8_t d[32];
        int ok = cnd_file_read(path, (size_t)a->cfg.max_model_mb << 20, &b, &n) == 0;
        if (ok) cnd_sha256(d, b, n);
        free(b);
        if (ok && sodium_memcmp(d, a->teacher_digest, 32) == 0) {
            s_job_prepare(a);
            return;
        }
        cnd_model_destroy(&a->teacher);
    }
    cnd_err_clear();
    cnd_proto_reject_t rej;
    if (cnd_assembler_new(&a->teacher_asm, &rej, CONDENSER__OBJECT_KIND__OBJ_TEACHER,
                          js->teacher_shipped, a->cfg.max_model_mb << 20)) {
        char why[300];
        snprintf(why, sizeof why, "teacher: %s", cnd_err_detail());
        s_job_answer(a, 0, why);
        return;
    }
    a->job_state = 1;
}

static void s_on_teacher_chunk(s_agent_t *a, const Condenser__Chunk *ch)
{
    if (a->job_state != 1 || !a->teacher_asm) return; /* we have it already */
    cnd_proto_reject_t rej;
    int rc = cnd_assembler_add(a->teacher_asm, &rej, ch);
    if (rc && rc != CND_EEXIST) {
        s_log(a, "teacher chunk refused: %s", cnd_err_detail());
        return;
    }
    if (cnd_assembler_received(a->teacher_asm) < cnd_assembler_count(a->teacher_asm)) return;
    uint8_t *data = NULL;
    uint64_t len = 0;
    rc = cnd_assembler_finish(a->teacher_asm, &rej, &data, &len);
    cnd_assembler_destroy(&a->teacher_asm);
    char path[CND_AGENT_PATH_MAX + 100], dir[CND_AGENT_PATH_MAX + 20];
    s_teacher_path(a, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/teachers", a->cfg.work);
    if (!rc && a->spec.teacher_onnx) { /* checked before it is cached */
        if (s_onnx_teacher(a, path, data, (size_t)len, a->spec.teacher_prep)) {
            free(data);
            return;
        }
    } else if (!rc) {
        rc = cnd_model_deserialize(&a->teacher, data, (size_t)len, "the shipped teacher");
    }
    if (!rc) rc = cnd_mkdir_p(dir, 0700);
    if (!rc) rc = cnd_file_write_atomic(path, data, (size_t)len, 0600);
    free(data);
    if (rc) {
        char why[400];
        snprintf(why, sizeof why, "teacher: %s", cnd_err_detail());
        s_job_answer(a, 0, why);
        return;
    }
    s_log(a, "teacher received (%llu bytes) and cached", (unsigned long long)len);
    s_job_prepare(a);
}

/* --- this site's certificate: renewal, key rotation, expiry ------------------------------------
 *
 * The certificate file is read at start, before every Hello, and whenever it changes (looked at
 * every 2 s), so a renewed certificate needs no restart: the next Hello presents it. A file that
 * certifies another key is a key rotation: once the key file holds that key too, the agent
 * connects again with it (the coordinator refuses the old key from `site renew` on) and says
 * Hello; a round in flight is abandoned (its SecAgg+ keys were the old identity's). Once a
 * wall-clock day, and at start, the agent warns when its certificate, the federation CA or the
 * revocation list it checks neighbours with is about to expire. */

/* Connects (again) with identity id; the previous connection is closed only on success. */
static int s_connect(s_agent_t *a, const cnd_identity_t *id)
{
    uint8_t cpk[32], csk[32], spk[32];
    int rc = cnd_identity_curve_keypair(cpk, csk, id);
    if (rc) return rc;
    if ((rc = cnd_pubkey_to_curve(spk, a->cfg.coordinator_pk))) {
        sodium_memzero(csk, sizeof csk);
        return cnd_err_wrap(rc, "%s: [coordinator] public_key", a->cfg.path);
    }
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.endpoint = a->cfg.endpoint;
    co.server_key = spk;
    co.public_key = cpk;
    co.secret_key = csk;
    co.heartbeat_ivl_ms = 1000;
    co.reconnect_ivl_ms = 100;
    co.reconnect_ivl_max_ms = 2000;
    cnd_client_t *cli = NULL;
    rc = cnd_client_new(&cli, &co);
    sodium_memzero(csk, sizeof csk);
    if (rc) return rc;
    cnd_client_destroy(&a->cli);
    a->cli = cli;
    return 0;
}

/* A rotation: the key file must hold the key the new certificate names. Returns 0 once the
 * agent runs with it, or an error (the current key and certificate stay in use). */
static int s_rotate(s_agent_t *a, const cnd_cert_info_t *ci)
{
    cnd_identity_t *nid = NULL;
    char want[65], have[65];
    cnd_pubkey_fingerprint(want, ci->pubkey);
    int rc = cnd_identity_load(&nid, a->cfg.key);
    if (!rc && sodium_memcmp(cnd_identity_pk(nid), ci->pubkey, 32) != 0)
        rc = cnd_errf(CND_EPERM,
                      "%s certifies key SHA256:%.16s..., but %s holds SHA256:%.16s...: install "
                      "the new key as well (until both match, the current ones stay in use)",
                      a->cfg.certificate, want, a->cfg.key,
                      cnd_pubkey_fingerprint(have, cnd_identity_pk(nid)));
    if (!rc) rc = s_connect(a, nid);
    if (rc) {
        cnd_identity_destroy(&nid);
        return rc;
    }
    cnd_pubkey_fingerprint(have, cnd_identity_pk(a->id));
    cnd_identity_destroy(&a->id);
    a->id = nid;
    snprintf(a->fpr, sizeof a->fpr, "%s", want);
    a->hello_ok = 0;
    a->hello_sent = 0;
    a->rotation_pending = 0;
    if (a->round_open) {
        snprintf(a->rr.outcome, sizeof a->rr.outcome, "abandoned");
        snprintf(a->rr.reason, sizeof a->rr.reason, "this site's key was rotated");
        snprintf(a->rr.phase, sizeof a->rr.phase, "ended");
        a->rr.ended_ms = cnd_unix_time() * 1000;
        s_round_save(a);
    }
    s_round_clear(a);
    s_log(a, "key rotation: now SHA256:%.16s... (was SHA256:%.16s...); connecting again", want,
          have);
    return 0;
}

/* Reads the certificate file; returns 1 when it changed and is in use now. */
static int s_cert_reload(s_agent_t *a)
{
    struct stat st;
    if (stat(a->cfg.certificate, &st) == 0) a->cert_st = st;
    uint8_t *der = NULL;
    size_t len = 0;
    cnd_cert_info_t ci;
    if (cnd_cert_read_der(&der, &len, a->cfg.certificate)) {
        s_log_quiet(a, "certificate: %s (still presenting serial %llu)", cnd_err_detail(),
                    (unsigned long long)a->cert_ci.serial);
        memset(&a->cert_st, 0, sizeof a->cert_st); /* look again at the next tick */
        return 0;
    }
    if (len == a->cert_len && memcmp(der, a->cert, len) == 0) {
        free(der);
        return 0;
    }
    int rc = cnd_ca_inspect(&ci, der, len);
    if (!rc && strcmp(ci.name, a->cfg.name) != 0)
        rc = cnd_errf(CND_EINVAL, "it names '%s', not this site '%s'", ci.name, a->cfg.name);
    if (!rc && sodium_memcmp(ci.pubkey, cnd_identity_pk(a->id), 32) != 0) rc = s_rotate(a, &ci);
    if (rc) {
        s_log_quiet(a, "certificate %s changed but is not used: %s", a->cfg.certificate,
                    cnd_err_detail());
        free(der);
        memset(&a->cert_st, 0, sizeof a->cert_st); /* e.g. the new key comes next: look again */
        return 0;
    }
    char x[32];
    s_log(a,
          "certificate %s: serial %llu, valid until %s (was serial %llu); presented from the "
          "next hello on",
          a->cfg.certificate, (unsigned long long)ci.serial, cnd_iso8601(x, ci.not_after),
          (unsigned long long)a->cert_ci.serial);
    free(a->cert);
    a->cert = der;
    a->cert_len = len;
    a->cert_ci = ci;
    a->warn_day = 0; /* say at once whether the new one is fine */
    return 1;
}

/* 1 when the certificate file is not the one last read (another inode, size or time). */
static int s_cert_file_changed(const s_agent_t *a)
{
    struct stat st;
    if (stat(a->cfg.certificate, &st) != 0) return 0;
    return st.st_ino != a->cert_st.st_ino || st.st_dev != a->cert_st.st_dev ||
           st.st_size != a->cert_st.st_size || st.st_mtim.tv_sec != a->cert_st.st_mtim.tv_sec ||
           st.st_mtim.tv_nsec != a->cert_st.st_mtim.tv_nsec;
}

/* The warnings of one wall-clock day: this site's certificate, the CA and its revocation list. */
static void s_expiry_check(s_agent_t *a)
{
    int64_t now = cnd_unix_time(), day = now / 86400;
    if (day == a->warn_day) return;
    a->warn_day = day;
    char x[32];
    const cnd_cert_info_t *c = &a->cert_ci;
    int64_t left = cnd_cert_days_left(c->not_after, now);
    if (now >= c->not_after)
        s_log(a,
              "EXPIRED: this site's certificate %s (serial %llu) expired at %s; the coordinator "
              "refuses it. Ask the federation operator for a renewed one (condenser ca issue "
              "--renew %llu, then condenser site renew %s --cert FILE) and install it at %s: "
              "it is re-read, no restart needed",
              a->cfg.certificate, (unsigned long long)c->serial, cnd_iso8601(x, c->not_after),
              (unsigned long long)c->serial, a->cfg.name, a->cfg.certificate);
    else if (left < CND_CERT_WARN_DAYS)
        s_log(a,
              "warning: this site's certificate %s (serial %llu) expires in %lld day%s (%s). Ask "
              "the federation operator to renew it (condenser ca issue --renew %llu, then "
              "condenser site renew %s --cert FILE) and install the new file at %s: it is "
              "re-read, no restart needed",
              a->cfg.certificate, (unsigned long long)c->serial, (long long)left,
              left == 1 ? "" : "s", cnd_iso8601(x, c->not_after), (unsigned long long)c->serial,
              a->cfg.name, a->cfg.certificate);
    cnd_ca_trust_t *t = NULL;
    if (cnd_ca_trust_load(&t, a->cfg.ca_cert, a->cfg.ca_crl)) {
        s_log(a, "warning: federation CA: %s; neighbours' certificates cannot be checked",
              cnd_err_detail());
        return;
    }
    int64_t ca_end = 0, crl_next = 0;
    cnd_ca_trust_dates(t, &ca_end, &crl_next);
    cnd_ca_trust_destroy(&t);
    left = cnd_cert_days_left(ca_end, now);
    if (left < CND_CERT_WARN_DAYS)
        s_log(a, "warning: the federation CA certificate %s %s %s: the federation needs a new CA",
              a->cfg.ca_cert, now >= ca_end ? "expired at" : "expires at", cnd_iso8601(x, ca_end));
    left = cnd_cert_days_left(crl_next, now);
    if (crl_next && left < CND_CRL_WARN_DAYS)
        s_log(a,
              "warning: the revocation list %s %s %s: the federation operator re-signs it "
              "(condenser ca crl); fetch the new crl.pem, else neighbours' certificates cannot "
              "be checked and rounds fail",
              a->cfg.ca_crl, now >= crl_next ? "expired at" : "must be re-signed by",
              cnd_iso8601(x, crl_next));
}

/* --- refusals --------------------------------------------------------------------------------- */

/* The coordinator refused this site for good (its Hello, or its session ended): say what it
 * said and what to do, and stop. Nothing is retried: the cause does not go away by itself. */
/* Refusals the site fixes by installing a file the agent re-reads (a renewed certificate, the
 * enrolled one, a rotated key and its certificate): said loudly, once a minute, and the agent
 * keeps going; its next Hello presents the certificate file as it is then. Returns 1 when text
 * is one of them. */
static int s_recoverable(s_agent_t *a, const char *what, const char *text)
{
    const char *todo = NULL;
    if (strstr(text, "session ended: renewed")) {
        s_log(a, "the coordinator renewed this site's certificate: saying hello with %s",
              a->cfg.certificate);
    } else if (strstr(text, "session ended: rotated")) {
        a->rotation_pending = 1;
        todo = "the federation operator rotated this site's key (condenser site renew): install "
               "the new key at [identity] key and its certificate at [identity] certificate; the "
               "agent picks them up and connects again, no restart needed";
    } else if (strstr(text, "expired") && strstr(text, "certificate") && !strstr(text, "revoked")) {
        todo = "this site's certificate expired: ask the federation operator for a renewed one "
               "(condenser ca issue --renew, then condenser site renew) and install it at "
               "[identity] certificate; it is re-read before every hello, no restart needed";
    } else if (strstr(text, "it is newer, and the federation operator has not enrolled it")) {
        todo = "the federation operator has not enrolled this site's certificate: ask them to run "
               "condenser site renew (a renewal) or site enroll (a new site); the agent keeps "
               "trying";
    } else if (strstr(text, "it is older, the coordinator enrolled its renewal")) {
        todo = "the coordinator enrolled a renewed certificate for this site: install it at "
               "[identity] certificate; it is re-read before every hello, no restart needed";
    } else {
        return 0;
    }
    a->hello_ok = 0;
    /* A refused Hello: asking again at once changes nothing until a file changes (which ends
     * the wait); after a session ended, the next Hello says why it cannot go on. */
    if (todo && strstr(what, "hello")) a->hello_wait_until = cnd_now() + 30;
    if (todo)
        s_log_quiet(a,
                    "the coordinator refused %s: %s. What to do: %s (certificate %s, serial %llu)",
                    what, text, todo, a->cfg.certificate, (unsigned long long)a->cert_ci.serial);
    return 1;
}

static void s_refused(s_agent_t *a, const char *what, const char *text)
{
    if (s_recoverable(a, what, text)) return;
    const char *todo;
    if (strstr(text, "superseded"))
        todo = "another agent is running with this site's identity (same key and certificate, "
               "e.g. a copied directory or a second service): stop one of them. This one stops";
    else if (strstr(text, "revoked by the federation operator"))
        todo = "the federation operator revoked this site (`condenser site list` on the "
               "coordinator); ask them why before starting the agent again";
    else if (strstr(text, "expired"))
        todo = "the site's certificate expired: get a renewed one from the federation CA, have "
               "the operator enroll it, and set [identity] certificate to it";
    else if (strstr(text, "revoked"))
        todo = "the federation CA revoked this site's certificate: ask the federation operator "
               "for a new one";
    else if (strstr(text, "not the enrolled certificate"))
        todo = "[identity] certificate is not the certificate the coordinator enrolled for this "
               "site: ask the operator to enroll it (`condenser site enroll <name> --cert FILE`) "
               "or configure the enrolled one";
    else if (strstr(text, "identity_key"))
        todo = "[identity] key is not the key enrolled for this site: configure the enrolled key "
               "or have the operator enroll this one";
    else if (strstr(text, "node_name"))
        todo = "[site] name is not the name enrolled for this key: use the enrolled name";
    else if (strstr(text, "role"))
        todo = "the certificate or enrollment is not for a site (role): have a site certificate "
               "issued and enrolled";
    else if (strstr(text, "version"))
        todo = "this agent and the coordinator have no protocol version in common: upgrade the "
               "older one";
    else
        todo = "ask the federation operator (the coordinator's log names the reason too)";
    /* The site's own name where the advice has a placeholder. */
    char advice[600];
    const char *ph = strstr(todo, "<name>");
    if (ph)
        snprintf(advice, sizeof advice, "%.*s%s%s", (int)(ph - todo), todo, a->cfg.name, ph + 6);
    else
        snprintf(advice, sizeof advice, "%s", todo);
    a->stop_rc = CND_EPERM;
    snprintf(a->stop_why, sizeof a->stop_why, "the coordinator refused %s: %s. What to do: %s",
             what, text, advice);
    s_log(a, "%s", a->stop_why);
}

/* --- incoming messages ---------------------------------------------------------------------- */

/* KeyRoster: the client checks all adverts and shares its secrets. */
static void s_on_key_roster(s_agent_t *a, const Condenser__Envelope *env)
{
    a->view.phase = CND_PHASE_SHARE;
    if (!a->sc) return;
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = cnd_secagg_client_share_keys(a->sc, &b, env->key_roster->keys.data,
                                          env->key_roster->keys.len);
    if (!rc && !b.err) {
        Condenser__ShareKeys sm;
        condenser__share_keys__init(&sm);
        sm.participant_id = a->pid;
        sm.shares = cnd_proto_bytes(b.data, b.len);
        if (s_send(a, CONDENSER__MSG_TYPE__MSG_SHARE_KEYS, &sm, a->job, env->round, 2000) == 0) {
            snprintf(a->rr.phase, sizeof a->rr.phase, "shared");
            s_round_save(a);
        }
    } else {
        char why[300];
        snprintf(why, sizeof why, "key roster refused: %s", cnd_err_detail());
        s_round_fail(a, why);
    }
    cnd_buf_free(&b);
}

/* SharesRelay: the shares addressed to this site; training follows once the model is in. */
static void s_on_shares_relay(s_agent_t *a, const Condenser__Envelope *env)
{
    a->view.phase = CND_PHASE_MASKED;
    if (!a->sc) return;
    s_maybe_fault(a, S_FAULT_SHARES); /* the relay proves our shares were accepted */
    free(a->shares);
    a->shares = malloc(env->shares_relay->shares_for.len);
    if (!a->shares) {
        s_round_fail(a, "out of memory");
        return;
    }
    memcpy(a->shares, env->shares_relay->shares_for.data, env->shares_relay->shares_for.len);
    a->shares_len = env->shares_relay->shares_for.len;
    if (a->global || a->bundle) s_local_step(a);
}

/* ConsistencyRequest: sign the survivor sets if they match what this site saw. */
static void s_on_consistency_request(s_agent_t *a, const Condenser__Envelope *env)
{
    a->view.phase = CND_PHASE_CONSISTENCY;
    if (!a->sc) return;
    s_maybe_fault(a, S_FAULT_MASKED); /* the request proves our masked update was taken */
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = cnd_secagg_client_consistency(a->sc, &b, env->consistency_request->request.data,
                                           env->consistency_request->request.len);
    if (!rc && !b.err) {
        Condenser__Consistency cm;
        condenser__consistency__init(&cm);
        cm.participant_id = a->pid;
        cm.consistency = cnd_proto_bytes(b.data, b.len);
        if (s_send(a, CONDENSER__MSG_TYPE__MSG_CONSISTENCY, &cm, a->job, env->round, 2000) == 0) {
            snprintf(a->rr.phase, sizeof a->rr.phase, "signed");
            s_round_save(a);
        }
        a->resend_at = 0;
    } else if (rc == CND_EPERM && a->spec.dp_mode == CND_JOB_DP_DISTRIBUTED) {
        char why[600]; /* a refusal by this site's rules: in its audit log too */
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        s_audit_refusal(a, "survivor sets", env->round, a->attempt, why);
    } else {
        s_log(a, "round %u: refused the survivor sets: %s", env->round, cnd_err_detail());
    }
    cnd_buf_free(&b);
}

/* UnmaskRequest: answer once, recorded durably before the shares leave. */
static void s_on_unmask_request(s_agent_t *a, const Condenser__Envelope *env)
{
    a->view.phase = CND_PHASE_UNMASK;
    if (!a->sc) return;
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = cnd_secagg_client_unmask(a->sc, &b, env->unmask_request->request.data,
                                      env->unmask_request->request.len);
    /* Durable before the shares leave: no later attempt of this round is served. */
    if (!rc && !b.err &&
        (rc = cnd_astore_served_mark(a->store, a->job, env->round, a->attempt, "unmasked")))
        s_log(a, "store: %s (unmask shares not sent)", cnd_err_detail());
    if (!rc && !b.err) {
        Condenser__UnmaskResponse um;
        condenser__unmask_response__init(&um);
        um.participant_id = a->pid;
        um.unmask = cnd_proto_bytes(b.data, b.len);
        if (s_send(a, CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE, &um, a->job, env->round, 2000) ==
            0) {
            snprintf(a->rr.phase, sizeof a->rr.phase, "unmasked");
            s_round_save(a);
        }
    } else {
        s_log(a, "round %u: refused the unmask request: %s", env->round, cnd_err_detail());
    }
    cnd_buf_free(&b);
}

/* RoundEnd: record the outcome; a retry keeps the agent for the next attempt. */
static void s_on_round_end(s_agent_t *a, const Condenser__Envelope *env)
{
    const Condenser__RoundEnd *re = env->round_end;
    a->view.phase = CND_PHASE_DONE;
    const char *oc = re->outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED   ? "ok"
                     : re->outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_CANCELLED ? "cancelled"
                     : re->outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY     ? "retry"
                                                                                  : "failed";
    char why[CND_PROTO_TEXT_MAX + 1] = "";
    if (re->reason.len && cnd_proto_text(why, sizeof why, re->reason)) why[0] = 0;
    for (char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    if (a->round_open) {
        snprintf(a->rr.outcome, sizeof a->rr.outcome, "%s", oc);
        snprintf(a->rr.reason, sizeof a->rr.reason, "%.255s", why);
        snprintf(a->rr.phase, sizeof a->rr.phase, "ended");
        a->rr.ended_ms = cnd_unix_time() * 1000;
        s_round_save(a);
    }
    s_log(a, "round %u/%u ended: %s%s%s", env->round, a->spec.rounds, oc, why[0] ? ": " : "", why);
    s_round_clear(a);
    if (cnd_audit_checkpoint(a->audit, "round.end", NULL)) s_log(a, "audit: %s", cnd_err_detail());
    if (a->o->until_done && re->outcome != CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY &&
        (env->round >= a->spec.rounds ||
         re->outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_CANCELLED))
        a->done = 1;
}

/* Error from the coordinator: refusals this site can fix, or must stop for. */
static void s_on_error(s_agent_t *a, const Condenser__Envelope *env)
{
    const Condenser__Error *e = env->error;
    char text[CND_PROTO_TEXT_MAX + 1];
    if (cnd_proto_text(text, sizeof text, e->text)) text[0] = 0;
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    if (e->code == CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED &&
        strncmp(text, "session ended:", 14) == 0) {
        s_refused(a, "this site's session", text);
    } else if ((e->code == CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED ||
                e->code == CONDENSER__ERROR_CODE__ERR_BAD_VERSION) &&
               e->ref_type == CONDENSER__MSG_TYPE__MSG_HELLO) {
        s_refused(a, "this site's hello", text);
    } else if (e->code == CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED && strstr(text, "hello")) {
        a->hello_ok = 0; /* the coordinator lost our session (it restarted) */
        a->hello_sent = 0;
    } else if (e->code == CONDENSER__ERROR_CODE__ERR_BUSY &&
               e->ref_type == CONDENSER__MSG_TYPE__MSG_MASKED_INPUT && a->masked) {
        a->resend_at = cnd_now() + 0.2 + 0.5 * randombytes_uniform(1000) / 1000.0;
    } else {
        s_log(a, "coordinator error %s: %s", cnd_proto_error_name(e->code), text);
    }
}

static void s_on_frame(s_agent_t *a, const uint8_t *buf, size_t len)
{
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej;
    if (cnd_proto_decode(&m, &rej, buf, len)) {
        s_log(a, "dropped a malformed message from the coordinator: %s", cnd_err_detail());
        return;
    }
    const Condenser__Envelope *env = m->env;
    char sender[64];
    if (cnd_proto_text(sender, sizeof sender, env->sender) ||
        (a->hello_ok && strcmp(sender, a->coord_name) != 0 &&
         env->type != CONDENSER__MSG_TYPE__MSG_HELLO_ACK)) {
        s_log(a, "dropped a message whose sender is not the coordinator");
        goto done;
    }
    if (env->type == CONDENSER__MSG_TYPE__MSG_HELLO_ACK) cnd_seqwin_init(&a->win);
    if (cnd_seqwin_accept(&a->win, &rej, env->seq)) {
        s_log(a, "dropped %s: %s", cnd_proto_type_name(env->type), cnd_err_detail());
        goto done;
    }
    if (s_log_msg(a, 'I', cnd_proto_type_name(env->type), env->job_id, env->round, buf, len))
        s_log(a, "ingress log: %s", cnd_err_detail());
    if (cnd_proto_check_role(&rej, env, CONDENSER__ROLE__ROLE_COORDINATOR)) {
        s_log(a, "dropped %s: %s", cnd_proto_type_name(env->type), cnd_err_detail());
        goto done;
    }
    if (cnd_proto_phase_of(env) != CND_PHASE_IDLE) {
        if (cnd_proto_check_round(&rej, env, &a->view)) {
            s_log(a, "dropped %s: %s", cnd_proto_type_name(env->type), cnd_err_detail());
            goto done;
        }
    }
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_HELLO_ACK:
        if (cnd_proto_text(a->coord_name, sizeof a->coord_name, env->hello_ack->coordinator_name))
            goto done;
        a->hello_ok = 1;
        a->hellos_unanswered = 0;
        a->hb_ms = (int)env->hello_ack->heartbeat_ms;
        s_log(a, "connected to coordinator %s", a->coord_name);
        if (env->hello_ack->server_unix_ms) { /* whole seconds, plus the network's delay */
            long long skew =
                (long long)cnd_unix_time() - (long long)(env->hello_ack->server_unix_ms / 1000);
            if (skew > 30 || skew < -30)
                s_log(a,
                      "warning: this machine's clock is %lld s %s the coordinator's: certificate "
                      "and revocation list dates are checked against it; synchronise it "
                      "(systemd-timesyncd, chrony)",
                      skew > 0 ? skew : -skew, skew > 0 ? "ahead of" : "behind");
        }
        break;
    case CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE: s_on_job_announce(a, m); break;
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        if (env->chunk->kind == CONDENSER__OBJECT_KIND__OBJ_TEACHER && env->job_id == a->job)
            s_on_teacher_chunk(a, env->chunk);
        else if (env->chunk->kind == CONDENSER__OBJECT_KIND__OBJ_MODEL)
            s_on_model_chunk(a, env->chunk);
        break;
    case CONDENSER__MSG_TYPE__MSG_ROUND_START: s_on_round_start(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER: s_on_key_roster(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY: s_on_shares_relay(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST: s_on_consistency_request(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST: s_on_unmask_request(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_ROUND_END: s_on_round_end(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_ERROR: s_on_error(a, env); break;
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT: break;
    default: s_log(a, "ignored %s", cnd_proto_type_name(env->type)); break;
    }
done:
    cnd_proto_msg_destroy(&m);
}

/* --- main loop ------------------------------------------------------------------------------ */

static int s_open(s_agent_t *a)
{
    int rc = cnd_agent_config_load(&a->cfg, a->o->config);
    if (rc) return rc;
    if ((rc = cnd_identity_load(&a->id, a->cfg.key))) return rc;
    cnd_pubkey_fingerprint(a->fpr, cnd_identity_pk(a->id));
    cnd_pubkey_fingerprint(a->coord_fpr, a->cfg.coordinator_pk);
    /* The certificate the coordinator enrolled, sent in every Hello (DER on the wire). */
    if ((rc = cnd_cert_read_der(&a->cert, &a->cert_len, a->cfg.certificate))) return rc;
    if (stat(a->cfg.certificate, &a->cert_st) != 0) memset(&a->cert_st, 0, sizeof a->cert_st);
    if ((rc = cnd_ca_inspect(&a->cert_ci, a->cert, a->cert_len)))
        return cnd_err_wrap(rc, "%s", a->cfg.certificate);
    if (sodium_memcmp(a->cert_ci.pubkey, cnd_identity_pk(a->id), 32) != 0) {
        char c[65], k[65];
        return cnd_errf(CND_EPERM, "%s certifies key SHA256:%.16s..., but %s holds SHA256:%.16s...",
                        a->cfg.certificate, cnd_pubkey_fingerprint(c, a->cert_ci.pubkey),
                        a->cfg.key, cnd_pubkey_fingerprint(k, cnd_identity_pk(a->id)));
    }
    /* One agent per site: a second one (or doctor --connect) would end this one's session. */
    char lock[sizeof a->cfg.state + 8];
    cnd_agent_lock_path(lock, sizeof lock, &a->cfg);
    if ((rc = cnd_file_lock(lock, 1, &a->lock_fd)))
        return cnd_err_wrap(rc, "another agent runs for site %s (it holds %s): stop it first",
                            a->cfg.name, lock);
    if ((rc = cnd_astore_open(&a->store, a->cfg.state, 0))) return rc;
    /* The audit log is signed by the key it was created with ([identity] audit_key after a
     * rotation, else the identity key). */
    cnd_identity_t *ak = NULL;
    if (a->cfg.audit_key[0] && (rc = cnd_identity_load(&ak, a->cfg.audit_key))) return rc;
    uint8_t sk[64];
    cnd_identity_secret_key(sk, ak ? ak : a->id);
    cnd_identity_destroy(&ak);
    char origin[96];
    snprintf(origin, sizeof origin, "condenser/site/%s", a->cfg.name);
    rc = cnd_audit_open_db(&a->audit, cnd_astore_db(a->store), sk, origin);
    sodium_memzero(sk, sizeof sk);
    if (rc == CND_EPERM && !a->cfg.audit_key[0])
        return cnd_err_wrap(rc,
                            "%s: audit log (after a key rotation, set [identity] audit_key to "
                            "the key the log was created with)",
                            a->cfg.state);
    if (rc) return cnd_err_wrap(rc, "%s: audit log", a->cfg.state);
    return s_connect(a, a->id);
}

static int s_reconnect(s_agent_t *a)
{
    cnd_client_destroy(&a->cli);
    a->hello_ok = 0;
    a->hello_sent = 0;
    a->hellos_unanswered = 0;
    a->handshakes = 0;
    a->hs_fail_base = 0;
    return s_connect(a, a->id);
}

/* A TCP connection is made but the CurveZMQ handshake keeps failing: the pinned key is not the
 * coordinator's, or the endpoint is not a Condenser coordinator. Said within seconds; if no
 * handshake ever succeeded in this run, the agent stops (the configuration must change);
 * otherwise it keeps trying and says so once a minute. */
static int s_check_handshake(s_agent_t *a, const cnd_client_state_t *st, double now)
{
    if (st->handshakes != a->handshakes) a->hs_fail_base = st->handshake_failures;
    uint64_t failed = st->handshake_failures - a->hs_fail_base; /* since the last success */
    if (st->connected || failed < 3) return 0;
    if (a->handshake_warned && now - a->handshake_warned < 60) return 0;
    a->handshake_warned = now;
    char msg[4096]; /* three paths of up to 1023 bytes and the text */
    snprintf(msg, sizeof msg,
             "the CurveZMQ handshake with %s failed %llu times (TCP connects, then the handshake "
             "is dropped): the coordinator's key pinned in %s [coordinator] public_key "
             "(SHA256:%.16s...) is not the key the coordinator at %s runs with, or %s is not a "
             "Condenser coordinator. What to do: ask the federation operator for the "
             "coordinator's identity.pub and check [coordinator] endpoint",
             a->cfg.endpoint, (unsigned long long)failed, a->cfg.path, a->coord_fpr,
             a->cfg.endpoint, a->cfg.endpoint);
    if (st->handshakes == 0) {
        s_log(a, "%s", msg);
        return cnd_errf(CND_ECRYPTO, "%s", msg);
    }
    s_log(a, "%s (still trying)", msg);
    return 0;
}

#ifdef CND_TEST_HOOKS
/* CND_AGENT_FAULT=what:round (test builds only): misbehave at one step of one round. */
static void s_fault_from_env(s_agent_t *a)
{
    const char *fault = getenv("CND_AGENT_FAULT");
    if (!fault || !*fault) return;
    char what[16];
    int r = 0;
    if (sscanf(fault, "%15[a-z]:%d", what, &r) != 2 || r <= 0) return;
    a->fault_round = r;
    a->fault = strcmp(what, "advertise") == 0 ? S_FAULT_ADVERTISE
               : strcmp(what, "shares") == 0  ? S_FAULT_SHARES
               : strcmp(what, "masked") == 0  ? S_FAULT_MASKED
               : strcmp(what, "train") == 0   ? S_FAULT_TRAIN
               : strcmp(what, "freeze") == 0  ? S_FAULT_FREEZE
               : strcmp(what, "forge") == 0   ? S_FAULT_FORGE
               : strcmp(what, "wrap") == 0    ? S_FAULT_WRAP
                                              : S_FAULT_NONE;
}
#endif

/* The connection's side of one turn of the loop: refused keys, handshakes, Hellos, heartbeats,
 * a masked update to send again. Returns 0, 1 when it connected again (start the next turn), or
 * a negative code that ends the agent. */
static int s_connection_turn(s_agent_t *a, double now)
{
    cnd_client_state_t st;
    cnd_client_state(a->cli, &st);
    if (!st.connected && st.auth_refusals && a->rotation_pending) {
        /* The old key is refused since `site renew`: the new key and certificate, once
         * installed, are picked up by s_cert_reload, which connects again with them. */
        s_log_quiet(a,
                    "waiting for this site's new key and certificate (the coordinator "
                    "rotated its key): install them at %s and %s",
                    a->cfg.key, a->cfg.certificate);
    } else if (!st.connected && st.auth_refusals) {
        int rc = cnd_errf(CND_EPERM,
                          "the coordinator refused this site's key (ZAP status %d): it is not "
                          "enrolled, or it was revoked. What to do: ask the federation operator "
                          "to check `condenser site list` and to enroll this site's certificate "
                          "(`condenser site enroll %s --cert FILE`); this site's key is "
                          "SHA256:%s",
                          st.last_status, a->cfg.name, a->fpr);
        s_log(a, "%s", cnd_err_detail());
        return rc;
    }
    int rc = s_check_handshake(a, &st, now);
    if (rc) return rc;
    if (st.handshakes != a->handshakes) {
        /* A new connection: it has no session until it says Hello. */
        a->handshakes = st.handshakes;
        a->hello_ok = 0;
        a->hello_sent = 0;
        a->hellos_unanswered = 0;
    }
    if (st.connected && !a->hello_ok && a->hellos_unanswered >= 3 && now - a->hello_sent > 3.0) {
        /* Connected, but three Hellos went unanswered: the coordinator dropped this
         * connection (it stopped reading while the agent was busy). Start a new one. */
        s_log(a, "no answer to %d Hellos on this connection; connecting again",
              a->hellos_unanswered);
        return (rc = s_reconnect(a)) ? rc : 1;
    }
    /* Every Hello presents the certificate file as it is now (a renewal needs no restart);
     * when it changed, the next iteration says Hello (after a rotation: on the new
     * connection). */
    if (st.connected && !a->hello_ok && now - a->hello_sent > 3.0) {
        if (s_cert_reload(a)) {
            a->hello_wait_until = 0; /* a new certificate: hello at the next turn */
        } else if (now >= a->hello_wait_until && s_send_hello(a) == CND_EPERM) {
            return CND_EPERM;
        }
    }
    if (st.connected && a->hello_ok && now - a->last_sent > a->hb_ms / 1e3) {
        Condenser__Heartbeat hb;
        condenser__heartbeat__init(&hb);
        hb.unix_ms = (uint64_t)cnd_unix_time() * 1000;
        (void)s_send(a, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0, 200);
    }
    if (a->resend_at > 0 && now >= a->resend_at && a->masked) {
        a->resend_at = 0;
        s_log(a, "round %u: the coordinator was busy; sending the masked update again",
              a->view.round);
        (void)s_send_masked(a);
    }
    return 0;
}

/* Waits up to 200 ms for frames and handles up to 256 of them. */
static int s_receive_turn(s_agent_t *a)
{
    zmq_pollitem_t it = {cnd_client_socket(a->cli), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 200) < 0 && zmq_errno() != EINTR)
        return cnd_errf(CND_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    for (int k = 0; k < 256 && !a->done; k++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (cnd_client_recv(a->cli, &buf, &len, 0)) {
            cnd_err_clear();
            break;
        }
        s_on_frame(a, buf, len);
        free(buf);
    }
    return 0;
}

/* The state the metrics endpoint shows, copied each loop iteration (atomics). */
static void s_metrics_snapshot(s_agent_t *a)
{
    atomic_store(&a->live.connected, a->hello_ok);
    atomic_store(&a->live.job, a->job);
    atomic_store(&a->live.round, a->round_open ? a->view.round : 0);
    atomic_store(&a->live.cert_expiry, a->cert ? a->cert_ci.not_after : 0);
}

int cnd_agent_run(const cnd_agent_run_opts_t *o, volatile sig_atomic_t *stop)
{
    s_agent_t *a = calloc(1, sizeof *a);
    if (!a) return cnd_errf(CND_ENOMEM, "agent: out of memory");
    a->o = o;
    a->seq = cnd_proto_seq_start();
    a->lock_fd = -1;
    a->hb_ms = 2000;
    cnd_seqwin_init(&a->win);
#ifdef CND_TEST_HOOKS
    s_fault_from_env(a);
#endif
    int rc = s_open(a);
    if (rc) goto out;
    s_log(a, "site %s, data %s, coordinator %s (pinned key SHA256:%.16s...)", a->cfg.name,
          a->cfg.data, a->cfg.endpoint, a->coord_fpr);
    if (o->metrics) {
        cnd_agent_live_init(&a->live, a->cfg.state);
        if ((rc = cnd_metrics_listen(&a->msrv, o->metrics, cnd_agent_metrics_render, &a->live)))
            goto out;
        s_log(a, "metrics on http://%.*s:%d/metrics", (int)(strrchr(o->metrics, ':') - o->metrics),
              o->metrics, cnd_metrics_port(a->msrv));
    }
    /* Ready for systemd (Type=notify): the first connection is set up (it completes, and
     * retries, in the background). */
    if (cnd_service_ready(a->cfg.endpoint) < 0) s_log(a, "warning: %s", cnd_err_detail());
    double t0 = cnd_now();
    while (!*stop && !a->done) {
        double now = cnd_now();
        if (a->msrv) s_metrics_snapshot(a);
        if (now - a->cert_checked >= 2.0) {
            a->cert_checked = now;
            if (s_cert_file_changed(a) && s_cert_reload(a)) a->hello_wait_until = 0;
            s_expiry_check(a);
        }
        if (o->max_seconds > 0 && now - t0 > o->max_seconds) {
            rc = cnd_errf(CND_ETIMEOUT, "agent: gave up after %.0f s", o->max_seconds);
            break;
        }
        if (a->stop_rc) {
            rc = cnd_errf(a->stop_rc, "%s", a->stop_why);
            break;
        }
        rc = s_connection_turn(a, now);
        if (rc == 1) {
            rc = 0;
            continue;
        }
        if (rc || (rc = s_receive_turn(a))) break;
    }
out:
    cnd_metrics_stop(&a->msrv); /* first: its thread reads a->live */
    if (a->round_open) {
        snprintf(a->rr.outcome, sizeof a->rr.outcome, "abandoned");
        snprintf(a->rr.phase, sizeof a->rr.phase, "ended");
        s_round_save(a);
    }
    s_job_clear(a);
    cnd_client_destroy(&a->cli);
    cnd_audit_close(&a->audit);
    cnd_astore_close(&a->store);
    cnd_file_unlock(&a->lock_fd);
    cnd_identity_destroy(&a->id);
    free(a->cert);
    free(a);
    return rc;
}
