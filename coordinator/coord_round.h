/*
 * coord_round.h: one federated round as the coordinator runs it: a state machine over the
 * SecAgg+ phases (crypto/secagg.h does the cryptography), with a deadline on every phase, the
 * masked-update uploads reassembled from chunks, and at the end the weighted FedAvg update of
 * the global model (optionally with server momentum) written as a new model version.
 *
 *   start:     RoundStart (model descriptor, SecAgg+ parameters, roster) + model chunks to each
 *              selected site; phase ADVERTISE.
 *   ADVERTISE: AdvertiseKeys from each site      -> KeyRoster to each site that advertised
 *   SHARE:     ShareKeys                         -> SharesRelay to each site that shared
 *   MASKED:    MaskedInput + chunks, Metrics     -> UnmaskRequest to each site that masked
 *   UNMASK:    UnmaskResponse                    -> finish: remove the masks, decode the weighted
 *              average, update the model, RoundEnd to every selected site.
 * A phase ends when every site still expected has answered or its deadline passes, whichever
 * comes first; sites that did not answer are dropouts, and so is a site whose session ends
 * (cnd_round_drop: the daemon saw its connection close), at once, not at the deadline. Fewer
 * survivors than the quorum (or an unrecoverable mask) fails the round: nothing is applied and
 * RoundEnd says why.
 *
 * Persistence: the round row (coord_store.h) is written at the start and at every phase change,
 * before the messages that open the next phase are sent (io->commit). The new model version and
 * the round's "ok" end are written in one transaction. The SecAgg+ secrets live only in memory:
 * a coordinator restarted mid-round marks that attempt "restarted" and runs the round again
 * (cnd_round_abandon_open), so a round is never half-applied.
 *
 * Memory: one model (the global student, serialised once and chunked to every site), one
 * SecAgg+ accumulator of the update's length, and the masked uploads being reassembled: at most
 * CND_ROUND_UPLOAD_BUDGET bytes of them (and between 4 and CND_ROUND_MAX_UPLOADS uploads)
 * being reassembled at a time (a site beyond that gets ERR_BUSY and sends again later).
 */
#ifndef CND_COORD_ROUND_H
#define CND_COORD_ROUND_H

#include "coord_admin.h"
#include "job.h"
#include "proto.h"

#define CND_ROUND_MAX_UPLOADS 64
/* Attempts of one round whose advertise phase may fail (a site did not advertise) before the
 * round counts as failed; sites serve at most their own [policy] max_attempts (default 4). */
#define CND_ROUND_MAX_ATTEMPTS  4
#define CND_ROUND_UPLOAD_BUDGET ((size_t)32 << 20) /* bytes of masked uploads held at once */

typedef struct {
    void *ctx;
    /* Sends `payload` (a Condenser__<Type> of `type`) to the named site inside an envelope for
     * (job, round). Returns 0 or an error (the site then simply misses the message). Must not
     * wait for the site: what it cannot send at once it queues. */
    int (*send)(void *ctx, const char *site, Condenser__MsgType type, void *payload, uint64_t job,
                uint32_t round);
    /* Sends the object `data` described by `info` to the named site as MSG_CHUNK of `kind`,
     * every chunk, in order, without waiting (it keeps a copy or a reference as long as it
     * needs). Returns 0 or an error (the site misses the object). */
    int (*send_object)(void *ctx, const char *site, Condenser__ObjectKind kind,
                       const Condenser__ObjectInfo *info, const uint8_t *data, uint64_t job,
                       uint32_t round);
    /* Commits the caller's open transaction and opens the next one. */
    int (*commit)(void *ctx);
} cnd_round_io_t;

typedef struct {
    char name[CND_NAME_MAX + 1];
    char fpr[65];
    uint8_t ed_pk[32];
    const uint8_t *cert; /* borrowed, may be NULL */
    size_t cert_len;
} cnd_round_site_t;

typedef struct cnd_round cnd_round_t;

/* Starts round `round` (attempt `attempt`) of job `job_id` with the n selected sites (sorted
 * by the caller; their order gives the SecAgg+ indices): persists the round, logs round.start,
 * sends RoundStart and the model. c must hold the key (audit). Returns 0, or an error when the
 * round could not start at all (nothing persisted). */
CND_MUST_USE int cnd_round_start(cnd_round_t **out, cnd_coord_t *c, const cnd_round_io_t *io,
                                 int64_t job_id, const cnd_job_spec_t *spec, uint32_t round,
                                 uint32_t attempt, const cnd_round_site_t *sites, uint32_t n,
                                 int qat, unsigned threads);

/* Starts an evaluation round of an autocompress job (coord_autoc.h) as cnd_round_start does a
 * training round: the object sent is the bundle of the candidates still in the race
 * (RoundStart.candidates = their number), the sites mask count vectors
 * (compress/autocompress_fed.h), and the finish records each candidate's sums and halves the
 * race unless `round` is the job's last. It produces no model version (cnd_round_result gives
 * 1 with version -1 when it completed). Returns 0 or an error (CND_ENOTFOUND: no candidate). */
CND_MUST_USE int cnd_round_start_eval(cnd_round_t **out, cnd_coord_t *c, const cnd_round_io_t *io,
                                      int64_t job_id, const cnd_job_spec_t *spec, uint32_t round,
                                      uint32_t attempt, const cnd_round_site_t *sites, uint32_t n,
                                      unsigned threads);
/* Candidates an evaluation round evaluates; 0 for a training round. */
uint32_t cnd_round_candidates(const cnd_round_t *r);

/* Index of the named site in this round, or -1. */
int cnd_round_site_index(const cnd_round_t *r, const char *site);

/* The coordinator's view for cnd_proto_check_round. */
void cnd_round_view(const cnd_round_t *r, cnd_round_view_t *v);

/* Handles one validated, round-bound message from participant idx (AdvertiseKeys, ShareKeys,
 * MaskedInput, Chunk of a masked input, Metrics, UnmaskResponse, or an Error reporting a local
 * failure). Returns 0 when accepted; otherwise a CND_E* code with the detail set and *rej filled
 * for the MSG_ERROR reply. A refused message changes nothing. `wire_len` counts toward the
 * round's ingress bytes. */
CND_MUST_USE int cnd_round_on_message(cnd_round_t *r, uint32_t idx, const Condenser__Envelope *env,
                                      size_t wire_len, cnd_proto_reject_t *rej);

/* The site's session ended (its connection closed, it was revoked, another connection of its
 * identity took over, ...): it is a dropout from now on, exactly as if it had missed the
 * current phase's deadline, and the phase closes as soon as every other expected site has
 * answered. Its later messages in this round are refused. `why` is kept for the log. */
void cnd_round_drop(cnd_round_t *r, uint32_t idx, const char *why);

/* Advances on deadlines (now: cnd_now()) and writes the sites' progress within a phase to the
 * store at most once a second (for `job show`). Returns 1 once the round has ended, else 0. */
int cnd_round_tick(cnd_round_t *r, double now);

/* Whether a site whose status (CND_SECAGG_ST_* | CND_RSITE_*) is `status` is still awaited in
 * the phase named `phase` ("advertise", "share", "masked", "consistency", "unmask"): it took
 * the previous step, has not taken this one, and neither failed nor lost its session. The
 * round closes a phase when no site is awaited; `job show` names the awaited sites. */
int cnd_round_awaits(const char *phase, uint32_t status);
/* Seconds until the current phase's deadline (>= 0), for the poll timeout. */
double cnd_round_time_left(const cnd_round_t *r, double now);

/* Ends the round without applying it: RoundEnd CANCELLED (reason) to every site, persisted as
 * "cancelled". */
void cnd_round_cancel(cnd_round_t *r, const char *reason);

/* After the round ended: 1 if it produced a model version (*version), 0 if it failed. */
int cnd_round_result(const cnd_round_t *r, int64_t *version);
uint32_t cnd_round_number(const cnd_round_t *r);
/* The last error of an ended round ("" when it succeeded). */
const char *cnd_round_reason(const cnd_round_t *r);

void cnd_round_destroy(cnd_round_t **r);

/* Retries (an attempt ended "retry": a selected site gave no SecAgg+ keys). Returns 1 and fills
 * *prev (free it with cnd_round_rec_free) when attempt - 1 of the round ended so; else 0 (also
 * when the store cannot say). The next attempt starts at once with the sites at hand, leaving
 * out those silent in *prev (cnd_round_rec_silent) unless too few would remain. */
int cnd_round_prev_retry(cnd_coord_t *c, int64_t job_id, uint32_t round, uint32_t attempt,
                         cnd_round_rec_t *prev);
/* 1 when `site` took part in the round of rec without advertising keys. */
int cnd_round_rec_silent(const cnd_round_rec_t *rec, const char *site);

/* At coordinator start: marks the job's round in flight (if any) as "restarted" with a
 * round.end audit entry (status failed). The next round started is the same number, next
 * attempt. Returns 0 or a store error. */
CND_MUST_USE int cnd_round_abandon_open(cnd_coord_t *c, int64_t job_id);

/* FedAvg step on a model's flat buffers, exposed for tests: params += lr * u (u = avg, or with
 * momentum beta > 0: m = beta * m + avg, u = m), state += avg_state. */
void cnd_fedavg_apply(float *params, size_t n_params, float *state, size_t n_state,
                      const float *avg, float *momentum, float lr, float beta);

#endif
