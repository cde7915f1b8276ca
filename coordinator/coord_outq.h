/*
 * coord_outq.h: what the coordinator has to send to one peer and the transport has not taken
 * yet. The coordinator never waits for a peer: every send is non-blocking, and what the peer's
 * transport queue (a few dozen frames, ZMQ_SNDHWM) cannot take now waits here, in order, until
 * the peer reads. A peer whose queue here stops moving, or grows past a bound, is a slow reader
 * and its session is ended by the caller (coord_daemon.c); nobody else waits meanwhile.
 *
 * Large objects (a shipped teacher, the global model) are queued as one item that names the
 * object and the next chunk: the chunk's envelope is built only when the transport can take it,
 * so a queue holds a reference to the object (shared by every peer it goes to, counted), never a
 * copy per peer. Sequence numbers of those chunks are reserved when the object is queued
 * (seq_base + chunk index), so the frames reach the peer in the order they were queued with
 * strictly increasing numbers, as the replay window (proto.h) requires.
 *
 * Not thread-safe; the daemon's main thread owns every queue.
 */
#ifndef CND_COORD_OUTQ_H
#define CND_COORD_OUTQ_H

#include "error.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes shared by several queues (reference-counted). */
typedef struct {
    uint8_t *data;
    size_t len;
    int refs;
} cnd_outq_blob_t;

/* A copy of data[0..len) with one reference. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_outq_blob_new(cnd_outq_blob_t **out, const uint8_t *data, size_t len);
cnd_outq_blob_t *cnd_outq_blob_ref(cnd_outq_blob_t *b);
/* Drops one reference (frees with the last); accepts NULL; nulls *b. */
void cnd_outq_blob_unref(cnd_outq_blob_t **b);

typedef struct cnd_outq_item cnd_outq_item_t;

typedef struct {
    cnd_outq_item_t *head, *tail;
    size_t items;         /* queued items (an object counts once) */
    size_t frames;        /* frames those items still make */
    size_t bytes;         /* bytes of queued encoded frames (objects: not counted, shared) */
    double stalled_since; /* when a flush last found the transport full, 0 when it is moving */
    uint64_t sent;        /* frames handed to the transport so far */
} cnd_outq_t;

/* One frame handed to the transport: the encoded Envelope and what the egress log needs. */
typedef struct {
    const uint8_t *data;
    size_t len;
    Condenser__MsgType type;
    uint64_t job;
    uint32_t round;
} cnd_outq_frame_t;

/* The transport. Returns 0 (taken), CND_ETIMEOUT (the peer's transport queue is full: the frame
 * stays queued) or another error (the peer is gone: flushing stops with it). */
typedef int (*cnd_outq_send_fn)(void *ctx, const cnd_outq_frame_t *f);

void cnd_outq_init(cnd_outq_t *q);
/* Drops everything queued. */
void cnd_outq_clear(cnd_outq_t *q);

/* Queues an encoded frame; takes ownership of *data (malloc'd) and nulls it, also on failure.
 * Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_outq_push(cnd_outq_t *q, uint8_t **data, size_t len, Condenser__MsgType type,
                               uint64_t job, uint32_t round);

/* Queues every chunk of `blob` described by `info` (cnd_chunk_plan) as MSG_CHUNK of `kind` for
 * (job, round), sent by `sender` with seq = seq_base + chunk index. Takes a reference to blob.
 * Returns 0, CND_EINVAL (info does not describe blob) or CND_ENOMEM. */
CND_MUST_USE int cnd_outq_push_object(cnd_outq_t *q, cnd_outq_blob_t *blob,
                                      const Condenser__ObjectInfo *info, Condenser__ObjectKind kind,
                                      uint64_t job, uint32_t round, const char *sender,
                                      uint64_t seq_base);

/* Hands queued frames to send() in order until the queue is empty, the transport is full, or
 * max_frames were sent. Returns the number sent (>= 0), or the first error of send() other than
 * CND_ETIMEOUT (the queue keeps the frame), or an encoding error. */
int cnd_outq_flush(cnd_outq_t *q, cnd_outq_send_fn send, void *ctx, int max_frames, double now);

#endif
