/*
 * coord_autoc.h: a federated AutoCompress job on the coordinator (docs/compression.md
 * "Federated search").
 *
 * An autocompress job is a job with candidates: compressed models the coordinator holds (built
 * from public data and the teacher, e.g. by `condenser autocompress` or `prune`), stored with the
 * job. Its rounds are evaluation rounds: each sends the candidates still in the race as one
 * bundle (compress/autocompress_fed.h), every selected site evaluates each on its validation
 * split, and the round's SecAgg+ sum gives, per candidate, the correct predictions over all
 * survivors' validation samples; nothing of one site. After every round but the last, successive
 * halving keeps the better half (by accuracy summed over the rounds so far; ties: the smaller
 * model, then the lower index). When the rounds are over the best candidate still in the race
 * becomes the job's model version 1 (float, or a signed artifact for a .cndq candidate), with
 * its federated accuracy.
 *
 * Storage: the component "autocompress" of the coordinator database (common/db.h), its tables
 *   autoc_candidate(job, idx, name, size, digest, blob, alive, validated, correct, rounds)
 *   autoc_result(job, round, idx, validated, correct)      one row per candidate per round
 * created by cnd_autoc_init; every count in them is a secure sum. A job without candidate rows
 * (or a database without the tables) is an ordinary training job.
 */
#ifndef CND_COORD_AUTOC_H
#define CND_COORD_AUTOC_H

#include "coord_admin.h"

#include <stdint.h>

#define CND_AUTOC_NAME_MAX 63

typedef struct {
    uint32_t idx;
    char name[CND_AUTOC_NAME_MAX + 1]; /* the file name it was given as */
    uint64_t size;                     /* model file bytes */
    uint8_t digest[32];                /* SHA-256 of them */
    int alive;                         /* still in the race */
    uint64_t validated, correct;       /* summed over the rounds it was evaluated in */
    uint32_t rounds;                   /* rounds it was evaluated in */
} cnd_autoc_cand_t;

/* Creates or migrates the component's tables (in the caller's transaction if one is open). */
CND_MUST_USE int cnd_autoc_init(sqlite3 *db);

/* 1 when the job has candidates, 0 when not (or on a store error, which it clears). */
int cnd_autoc_is_job(cnd_cstore_t *s, int64_t job);

/* Stores candidate idx of a job (model file bytes), alive. Returns 0, CND_EEXIST or CND_EDB. */
CND_MUST_USE int cnd_autoc_put(cnd_cstore_t *s, int64_t job, uint32_t idx, const char *name,
                               const uint8_t *blob, size_t len);

/* The job's candidates by index (free *list). Returns 0 or CND_EDB; none: *n = 0. */
CND_MUST_USE int cnd_autoc_list(cnd_cstore_t *s, int64_t job, cnd_autoc_cand_t **list, size_t *n);

/* The bundle of the candidates still alive (*bundle owned by the caller), their indices in
 * ids[0..*k) (CND_AUTOC_FED_MAX entries). CND_ENOTFOUND when none is alive. */
CND_MUST_USE int cnd_autoc_bundle_alive(cnd_cstore_t *s, int64_t job, uint8_t **bundle, size_t *len,
                                        uint32_t *ids, uint32_t *k);

/* Records a finished evaluation round's sums (ids[i] got correct[i] of `validated`), adds them
 * to the candidates' totals and, when halve, keeps the better ceil(k/2) alive. In the caller's
 * transaction. Returns 0 or CND_EDB. */
CND_MUST_USE int cnd_autoc_record(cnd_cstore_t *s, int64_t job, uint32_t round, const uint32_t *ids,
                                  uint32_t k, uint64_t validated, const uint64_t *correct,
                                  int halve);

/* One round's sums for candidate idx (for `job candidates`): 0 or CND_ENOTFOUND. */
CND_MUST_USE int cnd_autoc_result(cnd_cstore_t *s, int64_t job, uint32_t round, uint32_t idx,
                                  uint64_t *validated, uint64_t *correct);

/* The job's pick: the best alive candidate with validated samples (ranked as above). Returns
 * 0 with *idx, or CND_ENOTFOUND. */
CND_MUST_USE int cnd_autoc_pick(cnd_cstore_t *s, int64_t job, uint32_t *idx);

/* At the end of the job: stores the pick, in the caller's transaction, with its federated
 * accuracy: a .cnd model as float model version 1 of the job (model.version entry), a .cndq
 * artifact as version 1 of the job's artifact in the registry (cnd_fedq_name, manifest signed
 * with c's key, as coord_quant.h publishes; `job export --format int8`). *picked and *accuracy
 * get its index and accuracy. Returns 0, CND_ENOTFOUND (no candidate was evaluated) or an error
 * of the store or the registry. */
CND_MUST_USE int cnd_autoc_finish(cnd_coord_t *c, int64_t job, uint32_t last_round,
                                  uint32_t *picked, double *accuracy);

/* `condenser job create --kind autocompress` (cmd_job_autoc.c); _wanted says whether a `job
 * create` command line asks for it (it names --kind). `condenser job candidates`. */
int cnd_job_autoc_wanted(int argc, char **argv);
int cnd_job_autoc_create(int argc, char **argv);
int cnd_job_autoc_show(int argc, char **argv);

#endif
