/*
 * coord_store.h: the coordinator's state in one SQLite file: enrolled identities, jobs, rounds
 * and the sites of each round, model versions (blobs with their SHA-256), and the server
 * optimizer state. The coordinator's audit log (audit_log.h) lives in the same file, so a state
 * change and its audit entry commit together (cnd_cstore_begin ... cnd_audit_append ...
 * cnd_cstore_commit).
 *
 * Invariants:
 *   - Opened through the store kernel (common/db.h): WAL, synchronous=FULL, so neither a
 *     process killed at any point (SIGKILL included) nor a power cut loses a committed
 *     transaction; any number of other processes may open the file at the same time.
 *   - Schema: component "coordinator" of the kernel's cnd_schema table, forward migrations in
 *     order (s_migrations[]). A file with a newer version is refused.
 *   - Every multi-row change is one transaction (the functions below open their own unless the
 *     caller holds one through cnd_cstore_begin).
 *   - A round row is written when the round starts and updated at every phase change; it ends
 *     as "ok", "failed", "restarted" (the coordinator was restarted while it ran: the round is
 *     redone as a new attempt with the same number) or "cancelled". A model version is written
 *     in the same transaction as the "ok" end of the round that produced it, so a round is
 *     either applied entirely or not at all.
 *   - Identity keys and names are unique; revocation keeps the row (revoked_ms != 0). A renewal
 *     or key rotation replaces the row's certificate (and key) in place and keeps the previous
 *     ones in identity_history; a key rotated out is never admitted again.
 *
 * Threads: one cnd_cstore_t per thread. The ZAP handler opens its own (cnd_cstore_open_readonly
 * on the same path) and only reads identities.
 */
#ifndef CND_COORD_STORE_H
#define CND_COORD_STORE_H

#include "data.h"
#include "error.h"
#include "proto.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_CSTORE_SCHEMA    4
#define CND_CSTORE_MODEL_MAX ((size_t)1 << 30) /* one model blob */

typedef struct cnd_cstore cnd_cstore_t;

/* Opens (create = 1: creating if needed) the coordinator database at path and migrates it.
 * Returns 0, CND_EIO (no such file and create = 0), CND_EDB, CND_EFORMAT (newer schema or not a
 * coordinator database) or CND_ENOMEM. */
CND_MUST_USE int cnd_cstore_open(cnd_cstore_t **out, const char *path, int create);
/* The schema version of the "coordinator" component this program writes. */
int cnd_cstore_schema_version(void);
/* Read-only handle (admin listings while the daemon runs). */
CND_MUST_USE int cnd_cstore_open_readonly(cnd_cstore_t **out, const char *path);
void cnd_cstore_close(cnd_cstore_t **s);
sqlite3 *cnd_cstore_db(cnd_cstore_t *s);
const char *cnd_cstore_path(const cnd_cstore_t *s);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Calls inside begin..commit join that transaction. */
CND_MUST_USE int cnd_cstore_begin(cnd_cstore_t *s);
CND_MUST_USE int cnd_cstore_commit(cnd_cstore_t *s);
void cnd_cstore_rollback(cnd_cstore_t *s);

/* Small key/value settings (coordinator name, endpoint). get returns CND_ENOTFOUND if unset. */
CND_MUST_USE int cnd_cstore_meta_get(cnd_cstore_t *s, const char *key, char *out, size_t cap);
CND_MUST_USE int cnd_cstore_meta_set(cnd_cstore_t *s, const char *key, const char *val);

/* --- identities ----------------------------------------------------------------------------- */

typedef struct {
    int64_t id;
    char name[CND_NAME_MAX + 1]; /* [A-Za-z0-9][A-Za-z0-9._-]* */
    char role[16];               /* "site" or "device" */
    uint8_t ed_pk[32];           /* Ed25519 identity key */
    uint8_t curve_pk[32];        /* its X25519 form: the CurveZMQ key the peer presents */
    char fpr[65];                /* hex SHA-256 of ed_pk */
    uint8_t *cert;               /* X.509 DER from the federation CA, or NULL (owned) */
    size_t cert_len;
    int64_t enrolled_ms; /* Unix ms */
    int64_t revoked_ms;  /* 0 while active */
    char reason[128];    /* revocation reason */
    int64_t renewed_ms;  /* Unix ms of the last cnd_cstore_renew, 0 if never */
} cnd_ident_rec_t;

void cnd_ident_rec_free(cnd_ident_rec_t *r);

/* Enrolls an identity. Returns 0, CND_EINVAL (bad name, role or key), CND_EEXIST (the name or
 * the key is enrolled already; the detail says which) or CND_EDB. */
CND_MUST_USE int cnd_cstore_enroll(cnd_cstore_t *s, const char *name, const char *role,
                                   const uint8_t ed_pk[32], const uint8_t *cert, size_t cert_len);
/* Replaces the certificate of an enrolled, unrevoked identity with its successor (the caller
 * has verified it: CA, name, role, validity). Same key: a renewal; another key: a key rotation
 * (*rotation = 1), after which the old key is retired: the ZAP handler no longer finds it, and
 * neither enroll nor renew ever admits it again. The old certificate and key go to
 * identity_history. One transaction (joins the caller's). Returns 0, CND_ENOTFOUND, CND_ESTATE
 * (revoked), CND_EEXIST (the same certificate, or the new key belongs to another identity),
 * CND_EPERM (the new key is a retired one), CND_EINVAL or CND_EDB. */
CND_MUST_USE int cnd_cstore_renew(cnd_cstore_t *s, const char *name, const uint8_t ed_pk[32],
                                  const uint8_t *cert, size_t cert_len, int *rotation);
/* Revokes by name. CND_ENOTFOUND, CND_ESTATE (already revoked) or CND_EDB. */
CND_MUST_USE int cnd_cstore_revoke(cnd_cstore_t *s, const char *name, const char *reason);
/* Lookups; CND_ENOTFOUND when absent. Revoked identities are returned too (check revoked_ms). */
CND_MUST_USE int cnd_cstore_ident_by_name(cnd_cstore_t *s, const char *name, cnd_ident_rec_t *r);
CND_MUST_USE int cnd_cstore_ident_by_curve(cnd_cstore_t *s, const uint8_t curve_pk[32],
                                           cnd_ident_rec_t *r);
/* All identities in enrollment order into a new array (free each, then the array). */
CND_MUST_USE int cnd_cstore_idents(cnd_cstore_t *s, cnd_ident_rec_t **list, size_t *n);

/* --- jobs ----------------------------------------------------------------------------------- */

typedef struct {
    int64_t id;
    char name[CND_NAME_MAX + 1];
    char state[16];  /* pending | running | completed | failed | cancelled */
    char *spec_json; /* the recipe (proto/job.h), owned */
    int64_t created_ms, updated_ms;
    char reason[256]; /* why it failed or was cancelled */
    int has_teacher;  /* a shipped teacher is stored with the job */
    uint8_t teacher_digest[32];
    uint64_t teacher_size;
} cnd_job_rec_t;

void cnd_job_rec_free(cnd_job_rec_t *r);

/* Creates a job with its recipe, optional shipped teacher (model file bytes) and the initial
 * student (model version 0, format "float"). Returns its id in *id. */
CND_MUST_USE int cnd_cstore_job_create(cnd_cstore_t *s, int64_t *id, const char *name,
                                       const char *spec_json, const uint8_t *teacher,
                                       size_t teacher_len, const uint8_t *student,
                                       size_t student_len);
CND_MUST_USE int cnd_cstore_job_get(cnd_cstore_t *s, int64_t id, cnd_job_rec_t *r);
/* All jobs, newest first. */
CND_MUST_USE int cnd_cstore_jobs(cnd_cstore_t *s, cnd_job_rec_t **list, size_t *n);
/* The oldest job that is pending or running, CND_ENOTFOUND if none. */
CND_MUST_USE int cnd_cstore_job_next(cnd_cstore_t *s, int64_t *id);
CND_MUST_USE int cnd_cstore_job_set_state(cnd_cstore_t *s, int64_t id, const char *state,
                                          const char *reason);
/* The shipped teacher's bytes (caller frees). CND_ENOTFOUND when the job has none. */
CND_MUST_USE int cnd_cstore_job_teacher(cnd_cstore_t *s, int64_t id, uint8_t **data, size_t *len);
/* Server momentum buffer (n floats); get returns CND_ENOTFOUND before the first put. */
CND_MUST_USE int cnd_cstore_momentum_get(cnd_cstore_t *s, int64_t job, float *buf, size_t n);
CND_MUST_USE int cnd_cstore_momentum_put(cnd_cstore_t *s, int64_t job, const float *buf, size_t n);

/* --- model versions ------------------------------------------------------------------------- */

typedef struct {
    int64_t job;
    int64_t version;    /* 0 = the initial student; round r that completes writes a new one */
    int64_t round;      /* round that produced it (0 for the initial one) */
    char format[16];    /* "float" (.cnd) or "int8" (.cndq) */
    uint8_t digest[32]; /* SHA-256 of the blob */
    uint64_t size;
    double accuracy; /* metric recorded with it (mean site validation accuracy), or -1 */
    int64_t created_ms;
    uint8_t *manifest; /* signed manifest for signed artifacts, or NULL (owned) */
    size_t manifest_len;
} cnd_model_rec_t;

void cnd_model_rec_free(cnd_model_rec_t *r);

/* Stores a model version (the digest is computed here and returned in r->digest). */
CND_MUST_USE int cnd_cstore_model_put(cnd_cstore_t *s, cnd_model_rec_t *r, const uint8_t *blob,
                                      size_t len);
/* Latest version of a format for a job, with its bytes (caller frees *blob; blob may be NULL to
 * get only the record). The stored digest is checked against the bytes (CND_ECORRUPT). */
CND_MUST_USE int cnd_cstore_model_latest(cnd_cstore_t *s, int64_t job, const char *format,
                                         cnd_model_rec_t *r, uint8_t **blob, size_t *len);
CND_MUST_USE int cnd_cstore_model_get(cnd_cstore_t *s, int64_t job, int64_t version,
                                      const char *format, cnd_model_rec_t *r, uint8_t **blob,
                                      size_t *len);
CND_MUST_USE int cnd_cstore_models(cnd_cstore_t *s, int64_t job, cnd_model_rec_t **list, size_t *n);

/* --- rounds --------------------------------------------------------------------------------- */

/* Per-site flags of a round (the CND_SECAGG_ST_* bits, plus these). */
#define CND_RSITE_FAILED  0x100 /* the site reported a local failure */
#define CND_RSITE_METRICS 0x200 /* its metrics arrived */
#define CND_RSITE_LOST    0x400 /* its session ended mid-round (connection lost, revoked, ...) */

typedef struct {
    uint32_t idx; /* SecAgg index (participant id - 1) */
    char name[CND_NAME_MAX + 1];
    char fpr[65];
    uint32_t status;   /* CND_SECAGG_ST_* | CND_RSITE_* */
    uint32_t train_ms; /* its training time, if CND_RSITE_METRICS (nothing else of a site's
                          metrics exists outside the secure sum) */
} cnd_rsite_t;

typedef struct {
    int64_t job;
    uint32_t round;   /* 1-based */
    uint32_t attempt; /* 1-based; a restarted round is redone as attempt + 1 */
    char phase[16];   /* advertise | share | masked | consistency | unmask | done */
    char outcome[16]; /* "" while running, ok | failed | restarted | retry (a site did not
                         advertise: the round runs again) | cancelled */
    char reason[256];
    uint8_t params[68]; /* canonical SecAgg+ parameters */
    int qat;
    int64_t started_ms, phase_ms, ended_ms;
    double t_phase[5];      /* seconds in advertise, share, masked, consistency, unmask */
    double t_finish;        /* seconds in mask removal + decoding + model update */
    uint32_t n;             /* participants */
    uint32_t survivors;     /* masked inputs in the sum (when ended ok) */
    int64_t model_version;  /* version it produced, or -1 */
    uint64_t ingress_bytes; /* bytes received from the participants during the round */
    /* Secure sums over the survivors, decoded with the aggregate (when ended ok): */
    uint64_t samples;   /* capped training samples */
    uint64_t validated; /* validation samples (each site's capped) */
    uint64_t correct;   /* correct validation predictions */
    double loss_sum;    /* validation loss summed over the validated samples */
    cnd_rsite_t *sites; /* n entries (owned) */
} cnd_round_rec_t;

void cnd_round_rec_free(cnd_round_rec_t *r);

/* Seconds of a round spent on secure aggregation: the advertise, share, consistency and unmask
 * phases and the mask removal (t_finish); the masked-input phase is the sites' training. */
static inline double cnd_round_secagg_seconds(const cnd_round_rec_t *r)
{
    return r->t_phase[0] + r->t_phase[1] + r->t_phase[3] + r->t_phase[4] + r->t_finish;
}

/* Inserts a new round row with its sites. */
CND_MUST_USE int cnd_cstore_round_insert(cnd_cstore_t *s, const cnd_round_rec_t *r);
/* Writes phase, times, statuses and metrics of every site (the row must exist). */
CND_MUST_USE int cnd_cstore_round_update(cnd_cstore_t *s, const cnd_round_rec_t *r);
/* The round of a job still in flight (no outcome), CND_ENOTFOUND if none. */
CND_MUST_USE int cnd_cstore_round_open(cnd_cstore_t *s, int64_t job, cnd_round_rec_t *r);
/* All rounds of a job in order (round, attempt). */
CND_MUST_USE int cnd_cstore_rounds(cnd_cstore_t *s, int64_t job, cnd_round_rec_t **list, size_t *n);
/* Next round number to run (1 + the highest round ended ok or failed) and the attempt to use. */
CND_MUST_USE int cnd_cstore_round_next(cnd_cstore_t *s, int64_t job, uint32_t *round,
                                       uint32_t *attempt);

/* --- public calibration samples of a job (compress/quant_fed.h)
 * ----------------------------------- */

/* Stores raw samples (labels are not kept). */
CND_MUST_USE int cnd_cstore_calib_put(cnd_cstore_t *s, int64_t job, const cnd_dataset_t *ds);
/* A new dataset of the stored samples (labels all 0), CND_ENOTFOUND if the job has none. */
CND_MUST_USE int cnd_cstore_calib_get(cnd_cstore_t *s, int64_t job, cnd_dataset_t **out);

#endif
