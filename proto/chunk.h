/*
 * chunk.h: large objects (models, teachers, masked vectors, artifacts) as bounded chunks.
 *
 * No single message may exceed CND_PROTO_MAX_MSG, so an object travels as an ObjectInfo
 * (digest, total size, chunk size, chunk count) inside the message that announces it, followed
 * by MSG_CHUNK messages. Chunk i covers bytes [i * chunk_size, min((i+1) * chunk_size, total))
 * and carries the SHA-256 of its own bytes, so a corrupted chunk is refused on arrival and can
 * be asked for again, and the whole object is checked against ObjectInfo.digest at the end.
 *
 * Sender: cnd_chunk_plan() fills the ObjectInfo, cnd_chunk_piece() fills chunk i.
 * Receiver: an assembler built from the announced ObjectInfo, with the receiver's own upper
 * bound on the size it is willing to hold (it never allocates more than min(announced total,
 * that bound), and never more than the announced total). Chunks may arrive in any order. Rules,
 * deterministic whatever the order:
 *   - a chunk for another object or kind, with an index >= chunk_count, an offset other than
 *     index * chunk_size, or a length other than the chunk's exact share: refused (CND_EPROTO);
 *   - a chunk whose bytes do not match its sha256: refused (CND_ECORRUPT), state unchanged;
 *   - a second copy of a chunk already held: CND_EEXIST if byte-identical (harmless, nothing
 *     changes), CND_EPROTO if different (the first valid copy stays);
 *   - finish: refused while any chunk is missing (CND_ESTATE, naming the first missing index),
 *     refused if the whole object does not match the announced digest (CND_ECORRUPT).
 * For pulled transfers (edge artifacts), cnd_assembler_next_missing() gives the chunk to ask
 * for next, which resumes an interrupted transfer from the last good chunk.
 */
#ifndef CND_CHUNK_H
#define CND_CHUNK_H

#include "proto.h"

#include <stdint.h>

/* Fills info for the len bytes at data split into chunk_size pieces, with its SHA-256 written
 * to digest (info->digest points at it: keep digest alive as long as info). Returns 0 or
 * CND_EINVAL (len 0 or over CND_PROTO_OBJECT_MAX, chunk_size outside
 * CND_PROTO_CHUNK_MIN..CND_PROTO_CHUNK_MAX). */
int cnd_chunk_plan(Condenser__ObjectInfo *info, uint8_t digest[CND_PROTO_DIGEST_BYTES],
                   const void *data, uint64_t len, uint32_t chunk_size) CND_MUST_USE;

/* Fills c as chunk `index` of the object (data is the whole object that info describes); the
 * chunk's SHA-256 goes to sha (c->sha256 points at it), c->data and c->object_digest borrow
 * from data and info. Returns 0 or CND_EINVAL for an index >= info->chunk_count. */
int cnd_chunk_piece(Condenser__Chunk *c, uint8_t sha[CND_PROTO_DIGEST_BYTES],
                    Condenser__ObjectKind kind, const Condenser__ObjectInfo *info, const void *data,
                    uint32_t index) CND_MUST_USE;

/* Checks a chunk's bytes against its own sha256 (for receivers that stream to disk instead of
 * using an assembler). Returns 0 or CND_ECORRUPT (ERR_DIGEST_MISMATCH). */
int cnd_chunk_verify(cnd_proto_reject_t *rej, const Condenser__Chunk *c) CND_MUST_USE;

typedef struct cnd_assembler cnd_assembler_t;

/* A receiver for the object described by info (validated here again). max_total is the
 * receiver's own limit, e.g. the exact size it expects. Returns 0, CND_EPROTO (invalid info),
 * CND_ERANGE (total_size over max_total: ERR_TOO_LARGE) or CND_ENOMEM. */
int cnd_assembler_new(cnd_assembler_t **out, cnd_proto_reject_t *rej, Condenser__ObjectKind kind,
                      const Condenser__ObjectInfo *info, uint64_t max_total) CND_MUST_USE;

/* Stores one chunk; see the rules above. Returns 0 (stored), CND_EEXIST (identical duplicate),
 * CND_ECORRUPT or CND_EPROTO (refused; nothing changed). */
int cnd_assembler_add(cnd_assembler_t *a, cnd_proto_reject_t *rej,
                      const Condenser__Chunk *c) CND_MUST_USE;

/* Chunks held so far, and the announced count. */
uint32_t cnd_assembler_received(const cnd_assembler_t *a);
uint32_t cnd_assembler_count(const cnd_assembler_t *a);
/* Lowest missing chunk index, or the chunk count when complete. */
uint32_t cnd_assembler_next_missing(const cnd_assembler_t *a);
/* Bytes held as an unbroken prefix (where a pulled transfer resumes). */
uint64_t cnd_assembler_prefix_bytes(const cnd_assembler_t *a);

/* Checks completeness and the whole-object digest and hands the bytes over: *data (malloc'd,
 * caller frees) and *len. Returns 0, CND_ESTATE (chunks missing) or CND_ECORRUPT (digest
 * mismatch: ERR_DIGEST_MISMATCH); on failure *data is NULL and the assembler keeps its state,
 * so a digest failure means the whole object must be sent again (a new assembler). */
int cnd_assembler_finish(cnd_assembler_t *a, cnd_proto_reject_t *rej, uint8_t **data,
                         uint64_t *len) CND_MUST_USE;

/* Frees; accepts NULL and *a == NULL; nulls *a. */
void cnd_assembler_destroy(cnd_assembler_t **a);

#endif
