/*
 * quant_fed.h: int8 in a federation (compress/quant.h does the quantization itself).
 *
 * Calibration data: activation ranges need inputs. The coordinator holds no site's records, so
 * a job that ends in an integer artifact (or trains with fake quantization) carries up to 500
 * calibration samples of PUBLIC data supplied by the federation operator at `job create`
 * (--calib-data; e.g. the public set the teacher was trained on). They are stored with the job
 * and never sent anywhere.
 *
 * QAT rounds: before a round that trains with fake quantization, the coordinator calibrates the
 * current global model on those samples and writes the ranges into the model it sends, as
 * metadata ("qat.ranges", "qat.wmse", "qat.wbits"). Every site installs fake quantization with
 * exactly those ranges (no local observers), so all sites train for the same quantizer and their
 * updates average cleanly; only the float weights change, and the update stays a plain
 * difference of parameter vectors. QAT needs a student without batchnorm (folding would change
 * the parameter layout the update is defined on).
 *
 * Freezing: when the job completes, the final float model is calibrated again on the same
 * samples (method auto) and built into a .cndq artifact with self-test vectors taken from the
 * calibration samples (compress/artifact.h); the coordinator signs its manifest
 * (crypto/manifest.h).
 */
#ifndef CND_QUANT_FED_H
#define CND_QUANT_FED_H

#include "data.h"
#include "model.h"
#include "quant.h"

#define CND_FEDQ_CALIB_MAX   500
#define CND_FEDQ_META_RANGES "qat.ranges"
#define CND_FEDQ_META_WMSE   "qat.wmse"
#define CND_FEDQ_META_WBITS  "qat.wbits"

/* Checks that a student can be quantized (and, with qat, trained with fake quantization).
 * Returns 0 or CND_EINVAL naming the reason. */
CND_MUST_USE int cnd_fedq_check(const cnd_model_t *student, int wbits, int act_bits, int qat);

/* Coordinator: calibrates m on the raw calibration samples and writes the QAT metadata. */
CND_MUST_USE int cnd_fedq_annotate(cnd_model_t *m, const cnd_dataset_t *calib, int wbits);

/* Site: installs fake quantization on m from its QAT metadata. *fq must be destroyed (which
 * removes the hooks) before m's parameters are read as a plain float model again. Returns 0,
 * CND_EINVAL (no or malformed metadata, or a model with batchnorm) or CND_ENOMEM. */
CND_MUST_USE int cnd_fedq_install(cnd_fq_t **fq, cnd_model_t *m);

/* Coordinator: the integer artifact of float model m. *data is owned by the caller. */
CND_MUST_USE int cnd_fedq_freeze(uint8_t **data, size_t *len, const cnd_model_t *m,
                                 const cnd_dataset_t *calib, int wbits);

#endif
