/*
 * onnx_write.h: building an ONNX ModelProto with the protobuf-c code generated from onnx.proto,
 * shared by the float exporter (onnx_export.c) and the int8 one (onnx_export_q.c).
 *
 * Every allocation of the message tree goes into one pool freed at the end, so no path leaks:
 * a helper that fails to allocate marks the pool (oom) and returns NULL, later helpers do
 * nothing, and the caller checks oom once before packing. Node and initializer arrays have a
 * fixed capacity given at cnd_onnxw_begin; overflowing it is a programmer error (assert).
 */
#ifndef CND_ONNX_WRITE_H
#define CND_ONNX_WRITE_H

#include "onnx.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void **p; /* every allocation, freed by cnd_onnxw_end */
    size_t n, cap;
    int oom; /* an allocation failed */
    Onnx__ModelProto *mp;
    Onnx__GraphProto *g;
    size_t cap_node, cap_init; /* capacity of g->node and g->initializer */
} cnd_onnxw_t;

/* Starts a model (ir_version 7, default-domain opset 13, producer condenser) with room for
 * max_nodes nodes and max_inits initializers. Returns 0 or CND_ENOMEM (call cnd_onnxw_end). */
int cnd_onnxw_begin(cnd_onnxw_t *e, size_t max_nodes, size_t max_inits);

/* Packs the model into *out (owned by the caller). Returns 0 or CND_ENOMEM. */
int cnd_onnxw_pack(cnd_onnxw_t *e, uint8_t **out, size_t *len);

/* Frees everything the pool holds. */
void cnd_onnxw_end(cnd_onnxw_t *e);

/* A zeroed allocation in the pool, or NULL (oom set). */
void *cnd_onnxw_new(cnd_onnxw_t *e, size_t n);
char *cnd_onnxw_str(cnd_onnxw_t *e, const char *s);

/* An initializer of data type `type` (ONNX__TENSOR_PROTO__DATA_TYPE__*: FLOAT, INT8, UINT8,
 * INT32, INT64), elements given in host order with `esize` bytes each (4, 1, 1, 4, 8), stored
 * as little-endian raw_data. nd = 0 is a scalar. */
Onnx__TensorProto *cnd_onnxw_tensor(cnd_onnxw_t *e, const char *name, int type, const int64_t *dims,
                                    int nd, const void *data);

/* Scalar initializers. */
void cnd_onnxw_i64(cnd_onnxw_t *e, const char *name, int64_t v);

/* A node with nin inputs and one output; room for 4 attributes. */
Onnx__NodeProto *cnd_onnxw_node(cnd_onnxw_t *e, const char *op, const char *name, const char **in,
                                int nin, const char *out);

/* Attribute `name`: a single int (count 0) or `count` copies of v. */
void cnd_onnxw_attr_ints(cnd_onnxw_t *e, Onnx__NodeProto *n, const char *name, int64_t v,
                         int count);
void cnd_onnxw_attr_float(cnd_onnxw_t *e, Onnx__NodeProto *n, const char *name, float v);

/* A tensor value (graph input or output) of element type `type`, rank nd, dims[0] symbolic
 * ("N"), the others fixed. */
Onnx__ValueInfoProto *cnd_onnxw_vi(cnd_onnxw_t *e, const char *name, int type, const int64_t *dims,
                                   int nd);

/* Adds metadata_props key = value (at most 8). */
void cnd_onnxw_prop(cnd_onnxw_t *e, const char *key, const char *value);

#endif
