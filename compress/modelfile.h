/*
 * modelfile.h: the `.cnd` float model container.
 *
 * Layout (little-endian), versions 1 and 2 (the same fields):
 *   "CNDM"  u32 version  u32 flags(0)
 *   str spec             (u32 length + bytes; canonical architecture spec)
 *   u32 C, H, W          input shape;  u32 n_classes
 *   f32 mean[C]  f32 std[C]            input normalisation
 *   u32 n_meta  { str key, str value }
 *   u32 n_tensors { str name, u32 ndim (1..4), u32 dim[ndim], f32 data[prod(dim)] }
 *   u8 sha256[32]        digest of every byte before it
 * Tensors are named "L<i>.<what>" (L0.weight, L0.bias, L3.gamma, L3.running_mean, ...) in
 * layer order and must match, name and shape, what the spec builds. Files are written
 * atomically (temp, fsync, rename). The loader bounds-checks every length and refuses a wrong
 * magic, an unknown version, a digest mismatch, trailing bytes, an architecture with more
 * parameters than the file holds (checked before anything is allocated for them), and tensors
 * that do not fit the spec, each with its own message naming the file.
 *
 * Version 2 (graph models, docs/layers.md): the spec may use the graph notation (NAME=, @NAME,
 * add, concat) and the layers added with graphs (grouped conv2d, whose weight tensor is
 * (OC, C/groups, K, K), relu6, hardswish). A model that cnd_model_is_graph calls plain is still
 * written as version 1, byte for byte as before, so older builds read it; both versions load,
 * and a version-1 file whose spec needs version 2 is refused.
 */
#ifndef CND_MODELFILE_H
#define CND_MODELFILE_H

#include "model.h"

#define CND_MODELFILE_MAGIC   "CNDM"
#define CND_MODELFILE_VERSION 2                 /* the newest this build reads and writes */
#define CND_MODELFILE_MAX     ((size_t)1 << 31) /* 2 GiB */

/* Serialises m into a new buffer (caller frees *data). Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_model_serialize(const cnd_model_t *m, uint8_t **data, size_t *len);
/* Parses a serialised model; `what` names the source in messages. */
CND_MUST_USE int cnd_model_deserialize(cnd_model_t **out, const uint8_t *data, size_t len,
                                       const char *what);
/* Atomic save and load of a `.cnd` file. */
CND_MUST_USE int cnd_model_save(const cnd_model_t *m, const char *path);
CND_MUST_USE int cnd_model_load(cnd_model_t **out, const char *path);

#endif
