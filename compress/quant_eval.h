/*
 * quant_eval.h: evaluating `.cndq` artifacts on the host through the integer runtime, and the
 * per-layer quantization report (float vs integer SNR, weight and activation bytes, MACs).
 *
 * Inputs come from datasets of raw values (data.h): pixel data (integers 0..255) go through
 * the artifact's lookup table exactly as on a device; other data are normalised with the
 * artifact's statistics and quantized on the host.
 */
#ifndef CND_QUANT_EVAL_H
#define CND_QUANT_EVAL_H

#include "artifact.h"
#include "train.h"

/* Quantizes raw sample i of ds (CHW floats) into the artifact's int8 HWC input. */
void cnd_qeval_input(const cnd_artifact_t *a, int8_t *x, const cnd_dataset_t *ds, size_t i);

/* Accuracy, cross-entropy of the dequantized logits and per-class accuracy of the artifact
 * on raw dataset ds. Returns 0 or CND_EINVAL (shape / class mismatch) / CND_ENOMEM. */
CND_MUST_USE int cnd_qeval(cnd_artifact_t *a, const cnd_dataset_t *ds, cnd_eval_t *out);

typedef struct {
    char name[112];      /* "conv2d(32,3,pad=1)+relu" */
    double snr_db;       /* 10 log10(sum f^2 / sum (f - dequant(q))^2) over the samples */
    size_t weight_bytes; /* packed weights (int8 or int4) */
    size_t const_bytes;  /* int32 bias + multiplier + int8 shift per channel */
    size_t act_bytes;    /* int8 output tensor per sample */
    uint64_t macs;       /* per sample */
} cnd_qreport_row_t;

/* One row per integer layer, comparing the float model m (folded, no hooks) with artifact a
 * on n raw samples of ds starting at index 0. rows has room for a->info.n_layers entries. */
CND_MUST_USE int cnd_qreport(cnd_qreport_row_t *rows, cnd_model_t *m, const cnd_qmodel_t *q,
                             cnd_artifact_t *a, const cnd_dataset_t *ds, size_t n);

/* 1 if path starts with the artifact magic "CNDQ". */
int cnd_quant_is_artifact(const char *path);

/* `condenser eval MODEL.cndq`: called by cmd_eval.c when MODEL is an artifact. */
CND_MUST_USE int cnd_quant_cmd_eval(const char *path, const char *data, const char *split,
                                    int json);

#endif
