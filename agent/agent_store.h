/*
 * agent_store.h: the site agent's own SQLite file: the jobs it was offered, its rounds, and the
 * message log: type, size and SHA-256 of every message it sent (egress, dir 'E') and received
 * (ingress, 'I'). The agent's audit log (audit_log.h, egress/ingress entries that `condenser
 * audit reconcile` matches against the coordinator's) lives in the same file, and each message
 * is logged in both in one transaction.
 *
 * Invariants: opened through the store kernel (common/db.h): WAL, synchronous=FULL (neither a
 * kill nor a power cut loses a committed record, so an egress record written before a send
 * survives it), component "agent" of the kernel's schema table, prepared statements only. A message
 * is logged before it is handed to the transport, so the log never misses something that left (it
 * may list a message that a kill stopped before it left; reconcile reports that as "not received").
 */
#ifndef CND_AGENT_STORE_H
#define CND_AGENT_STORE_H

#include "dp_accountant.h"
#include "error.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define CND_ASTORE_SCHEMA 3

typedef struct cnd_astore cnd_astore_t;

CND_MUST_USE int cnd_astore_open(cnd_astore_t **out, const char *path, int readonly);
void cnd_astore_close(cnd_astore_t **s);
sqlite3 *cnd_astore_db(cnd_astore_t *s);

CND_MUST_USE int cnd_astore_begin(cnd_astore_t *s);
CND_MUST_USE int cnd_astore_commit(cnd_astore_t *s);
void cnd_astore_rollback(cnd_astore_t *s);

/* One message: dir 'E' (sent) or 'I' (received); round 0 when none. */
CND_MUST_USE int cnd_astore_message(cnd_astore_t *s, char dir, const char *type, uint64_t job,
                                    uint32_t round, const void *bytes, size_t len);

/* Jobs the coordinator announced: the JobSpec bytes as received, the agent's answer. */
CND_MUST_USE int cnd_astore_job_put(cnd_astore_t *s, uint64_t job, const uint8_t *spec,
                                    size_t spec_len, const char *state, const char *reason);

typedef struct {
    uint64_t job;
    uint32_t round, attempt; /* attempt: 1, 2, ... for RoundStarts of the same round */
    uint32_t participant_id, n;
    char phase[16];   /* started | advertised | shared | masked | unmasked | ended */
    char outcome[16]; /* "" while running, ok | failed | cancelled | abandoned */
    char reason[256];
    int64_t started_ms, ended_ms;
    uint32_t train_ms;
    double val_loss, val_acc; /* of the locally trained model on the validation split */
    uint64_t samples;         /* training samples */
    uint64_t clipped;         /* update coordinates clipped by the encoder */
    uint8_t model_digest[32]; /* global model received */
} cnd_around_t;

/* Starts a round row (attempt chosen here) and marks older unfinished rows "abandoned". */
CND_MUST_USE int cnd_astore_round_begin(cnd_astore_t *s, cnd_around_t *r);
CND_MUST_USE int cnd_astore_round_update(cnd_astore_t *s, const cnd_around_t *r);

/* Rounds served (the defence against a coordinator that asks twice, docs/threat-model.md):
 * records (job, round, attempt) with the round's SecAgg+ digest D, durably, in one transaction
 * with the checks, and must succeed before the site sends anything of the round. Returns 0, or
 * CND_EPERM (detail says why) when D was served before, this attempt was served before, an
 * earlier attempt of the round got as far as answering an unmask request, or max_attempts
 * attempts of the round were served; CND_EDB. */
CND_MUST_USE int cnd_astore_served_begin(cnd_astore_t *s, uint64_t job, uint32_t round,
                                         uint32_t attempt, const uint8_t D[32],
                                         uint32_t max_attempts);
/* Moves a served attempt to `state` ("masked", "unmasked"); durable before the caller sends. */
CND_MUST_USE int cnd_astore_served_mark(cnd_astore_t *s, uint64_t job, uint32_t round,
                                        uint32_t attempt, const char *state);

/* One round's differential-privacy spend (agent_dp.h): this round's DP-SGD steps at sampling
 * rate q and noise sigma, and the epsilons they bring the job (at its delta) and the site (all
 * its spends composed, at total_delta). */
typedef struct {
    uint64_t job;
    uint32_t round, attempt;
    double q, sigma;
    long steps;
    double delta, eps_job;
    double total_delta, eps_total;
    cnd_dp_ddg_t ddg; /* distributed DP (parties > 0): the round's release, q 1 and steps 1 */
} cnd_adp_spend_t;

/* Records a spend (job, round, attempt unique). The caller holds the transaction that also
 * writes its dp.spend audit entry. Returns 0 or CND_EDB. */
CND_MUST_USE int cnd_astore_dp_add(cnd_astore_t *s, const cnd_adp_spend_t *r);
/* Calls fn for every spend, oldest first. Returns 0 or CND_EDB. */
CND_MUST_USE int cnd_astore_dp_spends(cnd_astore_t *s,
                                      void (*fn)(void *ctx, const cnd_adp_spend_t *r), void *ctx);

/* Totals of the message log: bytes and messages in direction dir (job 0 = all jobs). */
CND_MUST_USE int cnd_astore_totals(cnd_astore_t *s, char dir, uint64_t job, uint64_t *bytes,
                                   uint64_t *count);

/* Calls fn for every message type in direction dir with its count and bytes. */
CND_MUST_USE int cnd_astore_by_type(cnd_astore_t *s, char dir,
                                    void (*fn)(void *ctx, const char *type, uint64_t count,
                                               uint64_t bytes),
                                    void *ctx);

/* Calls fn for every round row, oldest first. */
CND_MUST_USE int cnd_astore_rounds(cnd_astore_t *s, void (*fn)(void *ctx, const cnd_around_t *r),
                                   void *ctx);

#endif
