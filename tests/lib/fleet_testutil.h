/*
 * fleet_testutil.h: artifacts and a coordinator directory for the edge and rollout tests.
 * fleet_mkart() builds a small integer artifact with three embedded self-test vectors (the
 * quantization tests' qt_make); different seeds give different weights, so v1 and v2 of a
 * "model" differ in digest. With dense(128) on 28x28 inputs the artifact is about 100 KB.
 */
#ifndef CND_FLEET_TESTUTIL_H
#define CND_FLEET_TESTUTIL_H

#include "quant_testutil.h"

#include <stdlib.h>

/* big = 1: flatten dense(128) relu dense(10) on 1x28x28 (~100 KB); 0: a ~8 KB MLP. */
static inline int fleet_mkart(uint8_t **data, size_t *len, int big, int wbits, uint64_t seed)
{
    cnd_qmodel_t *q = NULL;
    cnd_shape_t in = {1, 28, 28};
    int rc = qt_make(&q, NULL,
                     big ? "flatten dense(128) relu dense(10)" : "flatten dense(10) relu dense(10)",
                     in, wbits, CND_QM_MINMAX, seed);
    if (!rc) rc = cnd_artifact_serialize(q, data, len);
    cnd_qmodel_destroy(&q);
    return rc;
}

#endif
