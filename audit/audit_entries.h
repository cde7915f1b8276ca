/*
 * audit_entries.h: one builder per audit action. Each takes the entry's facts as typed
 * arguments, writes its details (and digests) and appends it to the log, so an action's field
 * names, their types and which of them are optional live in audit_entries.c and nowhere else.
 * audit_actions.h is the vocabulary these builders write; auditors' tools (verify, report,
 * reconcile) and the auditor guide's independent recipe read it, and existing logs hold it, so
 * the details a builder writes are fixed byte for byte (tests/audit/test_audit_entries.c).
 *
 * Outside audit/, code does not append records itself: scripts/check-audit-builders (ctest
 * check_audit_builders) fails when cnd_audit_rec_t, cnd_audit_append or an entry's JSON
 * appears anywhere else (and names the file).
 *
 * Every builder returns as cnd_audit_append (0, CND_EINVAL naming the field, CND_EPERM,
 * CND_ECORRUPT, CND_EDB) or CND_ENOMEM; on failure nothing is written. `actor` is the acting
 * node's or operator's fingerprint. Optional fields: a NULL string or pointer leaves the key
 * out; numbers say per field which value leaves it out. Ids that are integers in the stores
 * (jobs, rollouts) are written as their decimal text, as subject and job fields always were.
 */
#ifndef CND_AUDIT_ENTRIES_H
#define CND_AUDIT_ENTRIES_H

#include "audit_log.h"
#include "dp_accountant.h"

#include <stddef.h>
#include <stdint.h>

/* --- identities ------------------------------------------------------------------------------ */

/* enroll: a node admitted under Ed25519 key `pk`. Subject: its fingerprint `fpr`; details: name,
 * role, public key in hex; with a certificate, the SHA-256 of its DER bytes as the
 * "certificate" digest. Every enrollment path uses it. */
CND_MUST_USE int cnd_audit_log_enroll(cnd_audit_t *log, const char *actor, const char *fpr,
                                      const char *name, const char *role, const uint8_t pk[32],
                                      const uint8_t *cert_der, size_t cert_len);

/* cert.renew: an enrolled identity's certificate replaced by its successor. */
typedef struct {
    const char *name;  /* the identity's name */
    const char *role;  /* "site", "device", ... */
    int rotation;      /* 1: a new key ("rotation"), 0: the same key ("renewal") */
    uint64_t serial;   /* the new certificate's serial */
    int64_t not_after; /* its end, Unix seconds */
    const uint8_t
        *public_key;    /* 32 bytes: the key enrolled from now on (subject: its fingerprint) */
    const uint8_t *der; /* the new certificate's DER bytes (digest "certificate") */
    size_t der_len;
    const char *old_fpr;    /* the previous key's fingerprint */
    int old_known;          /* 1: old_serial and old_not_after are known (else left out) */
    uint64_t old_serial;    /* the superseded certificate's serial */
    int64_t old_not_after;  /* and its end, Unix seconds */
    const uint8_t *old_der; /* the superseded DER (digest "superseded_certificate"); NULL: none */
    size_t old_der_len;
} cnd_audit_cert_renew_t;
CND_MUST_USE int cnd_audit_log_cert_renew(cnd_audit_t *log, const char *actor,
                                          const cnd_audit_cert_renew_t *r);

/* --- jobs and models ---------------------------------------------------------------------------
 */

/* job.create of job `job` (subject and job): its name, the recipe (a JSON object, written as
 * is), the calibration samples it holds; digests "teacher" unless NULL and "student_init". */
typedef struct {
    int64_t job;
    const char *name;
    const char *recipe_json;     /* the job's recipe, a JSON object */
    int64_t calibration_samples; /* 0: none */
    const uint8_t *teacher;      /* 32 bytes: SHA-256 of the teacher file, or NULL */
    const uint8_t *student_init; /* 32 bytes: SHA-256 of the initial student */
} cnd_audit_job_create_t;
CND_MUST_USE int cnd_audit_log_job_create(cnd_audit_t *log, const char *actor,
                                          const cnd_audit_job_create_t *e);

/* round.start of a federated round (subject "round N", job `job`): the attempt, the roster's
 * fingerprints in index order, the model version it trains from, QAT or not, the SecAgg+
 * parameters, and the global model's digest ("global_model"). */
typedef struct {
    int64_t job;
    uint32_t round, attempt;
    const char *const *sites; /* fingerprints, in roster order */
    size_t n_sites;
    int64_t model_version;
    int qat;
    uint32_t threshold, degree, min_survivors, ring_bits, length; /* SecAgg+ */
    const uint8_t *global_model;                                  /* 32 bytes */
} cnd_audit_round_start_t;
CND_MUST_USE int cnd_audit_log_round_start(cnd_audit_t *log, const char *actor,
                                           const cnd_audit_round_start_t *e);

/* round.end of a federated round (subject "round N", job `job`): participants and dropouts are
 * node fingerprints (participants empty unless status is "ok"); metrics (secure sums over the
 * survivors) only when has_metrics; accuracy, loss and validated only when validated > 0;
 * reason unless NULL or empty; digests "aggregate" and "model" unless NULL. */
typedef struct {
    const char *job;
    uint32_t round, attempt;
    const char *status; /* "ok", "failed", "cancelled" */
    const char *const *participants;
    size_t n_participants;
    const char *const *dropouts;
    size_t n_dropouts;
    int has_metrics;
    uint64_t validated, correct, samples;
    double loss_sum;
    int qat;
    const char *reason;
    const uint8_t *aggregate; /* 32 bytes or NULL */
    const uint8_t *model;     /* 32 bytes or NULL */
} cnd_audit_round_end_t;
CND_MUST_USE int cnd_audit_log_round_end(cnd_audit_t *log, const char *actor,
                                         const cnd_audit_round_end_t *e);

/* job.state of job `job` (subject and job): `state`, and `reason` unless NULL. */
CND_MUST_USE int cnd_audit_log_job_state(cnd_audit_t *log, const char *actor, int64_t job,
                                         const char *state, const char *reason);

/* model.version: a model or artifact version was stored. */
typedef struct {
    const char *version;   /* its name (subject too), e.g. "v3" or "condenser/job-1@2" */
    const char *job;       /* the job it belongs to; NULL: none */
    int64_t round;         /* the round that made it; 0: left out */
    const char *format;    /* "float", "int8", "w4a8", ... */
    uint64_t size;         /* bytes of the model or artifact file */
    int has_accuracy;      /* 1: accuracy is written */
    double accuracy;       /* in [0, 1] */
    const uint8_t *source; /* 32 bytes: SHA-256 of the float model it was frozen from; NULL: none */
    int64_t samples;       /* training samples behind a federated version; < 0: left out */
    const uint8_t *digest; /* 32 bytes: SHA-256 of the file (digest "model") */
} cnd_audit_model_version_t;
CND_MUST_USE int cnd_audit_log_model_version(cnd_audit_t *log, const char *actor,
                                             const cnd_audit_model_version_t *m);

/* artifact.sign: a device manifest was signed for an artifact. */
typedef struct {
    const char *version;      /* the artifact's version name (subject) */
    const char *job;          /* the job it came from; NULL: none */
    const char *variant;      /* "int8", "w4a8", ... */
    uint64_t sequence;        /* the manifest's sequence (per model name) */
    uint64_t size;            /* artifact bytes */
    const char *device_class; /* device classes, comma-separated; "" = any */
    int64_t expires;          /* the manifest's expiry, Unix seconds */
    int rollback;             /* 1: a rollback manifest */
    const char *signer;       /* the signing key's fingerprint */
    const uint8_t *artifact;  /* 32 bytes: SHA-256 of the artifact (digest "artifact") */
    const void *manifest;     /* the signed manifest's bytes (digest "manifest") */
    size_t manifest_len;
} cnd_audit_artifact_sign_t;
CND_MUST_USE int cnd_audit_log_artifact_sign(cnd_audit_t *log, const char *actor,
                                             const cnd_audit_artifact_sign_t *a);

/* --- rollouts ----------------------------------------------------------------------------------
 */

/* rollout.create: the plan of a new rollout (subject: its id). */
typedef struct {
    int64_t rollout;     /* its id */
    const char *job;     /* the job its model came from; NULL: none */
    const char *version; /* the version rolled out */
    const char *select;  /* the device selection as given */
    int64_t devices, canary, selected, unfit, current, waves; /* the plan's counts */
    int64_t rate;                                             /* policy: devices offered at once */
    double factor;                                            /* wave growth */
    double abort_failures_pct;
    int64_t abort_min;
    int64_t device_timeout_s;
    const char *window; /* the time window ("" = any time) */
} cnd_audit_rollout_create_t;
CND_MUST_USE int cnd_audit_log_rollout_create(cnd_audit_t *log, const char *actor,
                                              const cnd_audit_rollout_create_t *c);

/* rollout.state of rollout `rollout` (subject): its new `state` and `reason` unless NULL. */
CND_MUST_USE int cnd_audit_log_rollout_state(cnd_audit_t *log, const char *actor, int64_t rollout,
                                             const char *job, const char *state,
                                             const char *reason);

/* rollout.wave: one finished wave's outcomes (wave 0 is the canary). */
typedef struct {
    int64_t rollout;
    const char *job; /* NULL: none */
    uint32_t wave, devices, succeeded, failed, timed_out, deferred;
    const char *state; /* "continue", "aborted", "done" */
} cnd_audit_rollout_wave_t;
CND_MUST_USE int cnd_audit_log_rollout_wave(cnd_audit_t *log, const char *actor,
                                            const cnd_audit_rollout_wave_t *w);

/* rollout.device: one device's outcome in a rollout. */
typedef struct {
    int64_t rollout;
    const char *job;     /* NULL: none */
    const char *subject; /* the device's fingerprint (its name when it has none) */
    uint32_t wave;
    const char *device;  /* its name */
    const char *outcome; /* "healthy", "failed", "timeout", "rolled_back" */
    const char *reason;  /* NULL: left out */
    uint32_t latency_us; /* measured latency; 0: left out */
} cnd_audit_rollout_device_t;
CND_MUST_USE int cnd_audit_log_rollout_device(cnd_audit_t *log, const char *actor,
                                              const cnd_audit_rollout_device_t *d);

/* --- messages ----------------------------------------------------------------------------------
 */

/* egress (dir = 'E', the node sent it) or ingress (dir = 'I', it received it) of one message,
 * its size and SHA-256 taken from the exact bytes, so that both ends log messages the same way
 * and `condenser audit reconcile` can match them. `peer` is the other end's fingerprint (subject
 * and details), `type` the message type name, `round` < 0 when none. */
CND_MUST_USE int cnd_audit_log_message(cnd_audit_t *log, char dir, const char *actor,
                                       const char *peer, const char *job, const char *type,
                                       int64_t round, const void *bytes, size_t len, uint64_t *seq);

/* --- refusals and sessions ---------------------------------------------------------------------
 */

/* reject.connection: a connection refused before any message (subject: the peer's key in hex). */
CND_MUST_USE int cnd_audit_log_reject_connection(cnd_audit_t *log, const char *actor,
                                                 const char *key_hex, const char *address,
                                                 const char *reason);

/* reject.message: a message refused. */
typedef struct {
    const char *subject; /* the sender: its fingerprint, or the name it connected as */
    const char *peer;    /* its fingerprint in details; NULL: no session, left out */
    const char *type;    /* message type name */
    const void *bytes;   /* the refused frame (its size and digest "message") */
    size_t len;
    const char *reason; /* why, as told to the sender */
    const char *code;   /* the error code's name */
} cnd_audit_reject_message_t;
CND_MUST_USE int cnd_audit_log_reject_message(cnd_audit_t *log, const char *actor,
                                              const cnd_audit_reject_message_t *m);

/* reject.summary: refusals of one (action, peer, reason class) counted in a window but not
 * recorded one by one (audit_limit.h). Subject: `peer`. */
CND_MUST_USE int cnd_audit_log_reject_summary(cnd_audit_t *log, const char *actor,
                                              const char *action, const char *peer,
                                              const char *reason, uint64_t count, uint64_t recorded,
                                              int64_t seconds);

/* session.end: a node's session ended other than by the node closing it (subject: `fpr`). */
CND_MUST_USE int cnd_audit_log_session_end(cnd_audit_t *log, const char *actor, const char *fpr,
                                           const char *name, const char *reason, const char *detail,
                                           const char *address);

/* site.refuse, in a site's own log: the site refused the coordinator's `what` ("round" or
 * "job") by its own rules (agent_daemon.c), for `reason`; round and attempt when round > 0.
 * Subject: the coordinator's fingerprint. */
CND_MUST_USE int cnd_audit_log_site_refuse(cnd_audit_t *log, const char *actor,
                                           const char *coord_fpr, const char *job, const char *what,
                                           const char *reason, uint32_t round, uint32_t attempt);

/* dp.spend, in a site's own log (audit_actions.h): one round's DP-SGD (or distributed DP) spend.
 * Subject: the coordinator's fingerprint. */
typedef struct {
    uint32_t round, attempt;
    double q, sigma;
    int64_t steps;
    double delta, epsilon;
    double total_delta, epsilon_total;
    cnd_dp_ddg_t ddg; /* distributed DP (parties > 0): "mechanism": "ddg" and its l2, l1, s2,
                         parties, dim; absent for DP-SGD */
} cnd_audit_dp_spend_t;
CND_MUST_USE int cnd_audit_log_dp_spend(cnd_audit_t *log, const char *actor, const char *coord_fpr,
                                        const char *job, const cnd_audit_dp_spend_t *e);

/* --- operator actions --------------------------------------------------------------------------
 */

/* admin.<command> of an operator command (e.g. command "site.revoke"): details {"argv": [argv[0],
 * ..., argv[argc-1]], "result": result}, the exact command line as a JSON array of strings, every
 * word as the process received it (argv[0] and the subcommand words included). A word that is
 * not valid UTF-8 cannot be recorded exactly and is refused (CND_EINVAL naming the word), as is
 * argc < 1 (no command line recorded). */
CND_MUST_USE int cnd_audit_log_admin(cnd_audit_t *log, const char *actor, const char *command,
                                     int argc, const char *const *argv, const char *subject,
                                     const char *job, const char *result);

#endif
