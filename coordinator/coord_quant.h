/*
 * coord_quant.h: publishing a federated job's integer artifact. Calibration, QAT metadata and
 * freezing themselves are compress/quant_fed.h, shared with the site agent.
 */
#ifndef CND_COORD_QUANT_H
#define CND_COORD_QUANT_H

#include "coord_admin.h"
#include "job.h"
#include "quant_fed.h"

/* Coordinator, at the end of a job with calibration samples: freezes the latest float model,
 * signs the artifact's manifest with the coordinator's key, stores it as the same version in
 * format "int8" with the manifest, and logs model.version and artifact.sign. *out (may be NULL)
 * receives the stored record (free with cnd_model_rec_free). CND_ENOTFOUND when the job has no
 * calibration samples. */
CND_MUST_USE int cnd_fedq_publish(cnd_coord_t *c, int64_t job, const cnd_job_spec_t *spec,
                                  cnd_model_rec_t *out);

#endif
