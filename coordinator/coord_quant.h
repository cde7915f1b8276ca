/*
 * coord_quant.h: a federated job's signed integer artifact, on the coordinator. Calibration, QAT
 * metadata and freezing themselves are compress/quant_fed.h, shared with the site agent; storing
 * and signing are the artifact registry's (coordinator/registry/registry.h), shared with the
 * rollout engine, so a job's artifact is stored once and its manifest sequence follows the same
 * rule as every other manifest of its name.
 */
#ifndef CND_COORD_QUANT_H
#define CND_COORD_QUANT_H

#include "coord_admin.h"
#include "job.h"
#include "quant_fed.h"

/* The name a job's artifact is published under: "condenser/job-<id>". */
void cnd_fedq_name(char *out, size_t cap, int64_t job);

/* Coordinator, at the end of a job with calibration samples: freezes the latest float model and
 * publishes it in the artifact registry (cnd_registry_publish: validated and self-tested, stored,
 * model.version and artifact.sign logged, a manifest signed with the coordinator's key, one-year
 * expiry) as version N of cnd_fedq_name(job), N being the float model's version, in the caller's
 * transaction. *out (may be NULL) receives its record (version, round, format = variant, digest,
 * size; no manifest). CND_ENOTFOUND when the job has no calibration samples. */
CND_MUST_USE int cnd_fedq_publish(cnd_coord_t *c, int64_t job, const cnd_job_spec_t *spec,
                                  cnd_model_rec_t *out);

/* A job's signed artifact, version `version` (< 0: its latest): from the artifact registry, else
 * (a file from before the registry) the int8 row the coordinator kept in its model table. *r gets
 * its record with the manifest signed at publication (free with cnd_model_rec_free; format is the
 * variant, round the float model's), *blob its bytes checked against the digest (blob may be
 * NULL). Returns 0, CND_ENOTFOUND, CND_ECORRUPT or CND_EDB. */
CND_MUST_USE int cnd_fedq_artifact(cnd_cstore_t *s, int64_t job, int64_t version,
                                   cnd_model_rec_t *r, uint8_t **blob, size_t *len);

/* Every artifact the registry holds under the job's name, by version (records as above, each
 * with its manifest; free each with cnd_model_rec_free and the array with free). */
CND_MUST_USE int cnd_fedq_artifacts(cnd_cstore_t *s, int64_t job, cnd_model_rec_t **list,
                                    size_t *n);

#endif
