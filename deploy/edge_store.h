/*
 * edge_store.h: where an edge device keeps what must survive a restart or a power cut: its
 * state record (active slot, pending flag, highest manifest sequence, the manifests of both
 * slots, the download in progress), the two artifact slots (A/B), and the partial download.
 *
 * Why a table of functions: the edge logic (edge.h) is the same on a real device, which keeps
 * files in a directory (cnd_edge_store_dir), and in the fleet simulator, which runs thousands of
 * devices in one process and keeps each device's files in memory (cnd_edge_store_mem).
 *
 * Contract every backend keeps (edge.c relies on it for "killed at any byte, the device ends on
 * the old or the new model"):
 *   - state_save and slot_write are atomic and durable: after they return, a crash leaves the
 *     new content; a crash during them leaves the old content whole.
 *   - part_begin reserves exactly `size` bytes (never more); part_write writes inside it and is
 *     durable when it returns; nothing outside [0, size) can be written.
 *   - Reads return owned copies (free()).
 *
 * The directory backend numbers every durable write step (temporary file written, fsync'd,
 * renamed, directory fsync'd; chunk written, fsync'd) and, when the environment variable
 * CND_EDGE_CRASH_AT=k is set, ends the process with _exit(86) at step k: the tests' simulated
 * power cut. CND_EDGE_CRASH_TRACE=1 prints each step's number and name to stderr.
 */
#ifndef CND_EDGE_STORE_H
#define CND_EDGE_STORE_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* The state record; CND_ENOTFOUND when the device has none yet. */
    int (*state_load)(void *ctx, uint8_t **data, size_t *len);
    int (*state_save)(void *ctx, const uint8_t *data, size_t len);
    /* Slot 0 (A) or 1 (B). digest is the SHA-256 of data, already checked by the caller. */
    int (*slot_write)(void *ctx, int slot, const uint8_t *data, size_t len,
                      const uint8_t digest[32]);
    int (*slot_read)(void *ctx, int slot, uint8_t **data, size_t *len);
    /* The partial download: reserve exactly size bytes (dropping any previous one), write a
     * verified chunk (sha = SHA-256 of data), read everything back, drop it. */
    int (*part_begin)(void *ctx, uint64_t size);
    int (*part_write)(void *ctx, uint64_t off, const uint8_t *data, size_t len,
                      const uint8_t sha[32]);
    int (*part_read)(void *ctx, uint8_t **data, size_t *len);
    void (*part_discard)(void *ctx);
} cnd_edge_store_ops_t;

typedef struct {
    const cnd_edge_store_ops_t *ops;
    void *ctx;
} cnd_edge_store_t;

/* --- directory backend -------------------------------------------------------------------
 * DIR/state, DIR/slot-a.cndq, DIR/slot-b.cndq, DIR/download.part. Returns 0, CND_EIO or
 * CND_ENOMEM. The store copies dir. */
CND_MUST_USE int cnd_edge_store_dir(cnd_edge_store_t *out, const char *dir);
void cnd_edge_store_dir_free(cnd_edge_store_t *s);

/* --- memory backend (fleet simulator) ----------------------------------------------------
 * Keeps each device's state in memory. Slot contents and downloaded chunks are interned in a
 * shared pool keyed by their SHA-256 and compared byte for byte on a hit, so a thousand devices
 * holding the same verified artifact keep one copy of its bytes; what each device reads back is
 * exactly what it wrote. The pool is not thread-safe: one simulator thread uses it. */
typedef struct cnd_edge_pool cnd_edge_pool_t;
CND_MUST_USE int cnd_edge_pool_new(cnd_edge_pool_t **out);
void cnd_edge_pool_destroy(cnd_edge_pool_t **p);
/* Bytes held by the pool (distinct blobs) and by all memory stores' private data. */
uint64_t cnd_edge_pool_bytes(const cnd_edge_pool_t *p);

CND_MUST_USE int cnd_edge_store_mem(cnd_edge_store_t *out, cnd_edge_pool_t *pool);
void cnd_edge_store_mem_free(cnd_edge_store_t *s);

#endif
