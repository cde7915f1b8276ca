/*
 * coord_outq.c: per-peer send queues of the coordinator (see coord_outq.h).
 *
 * A queue is a singly linked FIFO of items. A frame item owns its encoded bytes; an object item
 * holds a reference to the object, a copy of its ObjectInfo (with the digest bytes), the next
 * chunk to send and the reserved sequence numbers. An item leaves the queue once all of it was
 * taken by the transport. `frames` and `bytes` are kept exact so the daemon can bound them.
 */
#include "coord_outq.h"
#include "chunk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cnd_outq_item {
    cnd_outq_item_t *next;
    /* a frame */
    uint8_t *data;
    size_t len;
    Condenser__MsgType type;
    /* or an object (blob != NULL) */
    cnd_outq_blob_t *blob;
    Condenser__ObjectInfo info;
    uint8_t digest[CND_PROTO_DIGEST_BYTES];
    Condenser__ObjectKind kind;
    char sender[CND_PROTO_NAME_MAX + 1];
    uint64_t seq_base;
    uint32_t next_chunk;
    /* both */
    uint64_t job;
    uint32_t round;
};

int cnd_outq_blob_new(cnd_outq_blob_t **out, const uint8_t *data, size_t len)
{
    *out = NULL;
    cnd_outq_blob_t *b = calloc(1, sizeof *b);
    if (!b) return cnd_errf(CND_ENOMEM, "send queue: out of memory");
    b->data = malloc(len ? len : 1);
    if (!b->data) {
        free(b);
        return cnd_errf(CND_ENOMEM, "send queue: out of memory for a %zu-byte object", len);
    }
    if (len) memcpy(b->data, data, len);
    b->len = len;
    b->refs = 1;
    *out = b;
    return 0;
}

cnd_outq_blob_t *cnd_outq_blob_ref(cnd_outq_blob_t *b)
{
    if (b) b->refs++;
    return b;
}

void cnd_outq_blob_unref(cnd_outq_blob_t **pb)
{
    if (!pb || !*pb) return;
    cnd_outq_blob_t *b = *pb;
    *pb = NULL;
    if (--b->refs > 0) return;
    free(b->data);
    free(b);
}

void cnd_outq_init(cnd_outq_t *q)
{
    memset(q, 0, sizeof *q);
}

static void s_item_free(cnd_outq_item_t *it)
{
    free(it->data);
    cnd_outq_blob_unref(&it->blob);
    free(it);
}

static void s_append(cnd_outq_t *q, cnd_outq_item_t *it, size_t frames)
{
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->items++;
    q->frames += frames;
}

void cnd_outq_clear(cnd_outq_t *q)
{
    cnd_outq_item_t *it = q->head;
    while (it) {
        cnd_outq_item_t *next = it->next;
        s_item_free(it);
        it = next;
    }
    uint64_t sent = q->sent;
    cnd_outq_init(q);
    q->sent = sent;
}

int cnd_outq_push(cnd_outq_t *q, uint8_t **data, size_t len, Condenser__MsgType type, uint64_t job,
                  uint32_t round)
{
    cnd_outq_item_t *it = calloc(1, sizeof *it);
    if (!it) {
        free(*data);
        *data = NULL;
        return cnd_errf(CND_ENOMEM, "send queue: out of memory");
    }
    it->data = *data;
    *data = NULL;
    it->len = len;
    it->type = type;
    it->job = job;
    it->round = round;
    s_append(q, it, 1);
    q->bytes += len;
    return 0;
}

int cnd_outq_push_object(cnd_outq_t *q, cnd_outq_blob_t *blob, const Condenser__ObjectInfo *info,
                         Condenser__ObjectKind kind, uint64_t job, uint32_t round,
                         const char *sender, uint64_t seq_base)
{
    if (!blob || !info || info->total_size != blob->len ||
        info->digest.len != CND_PROTO_DIGEST_BYTES || info->chunk_count == 0 || !sender ||
        strlen(sender) > CND_PROTO_NAME_MAX)
        return cnd_errf(CND_EINVAL, "send queue: the object does not match its description");
    cnd_outq_item_t *it = calloc(1, sizeof *it);
    if (!it) return cnd_errf(CND_ENOMEM, "send queue: out of memory");
    it->blob = cnd_outq_blob_ref(blob);
    it->info = *info;
    memcpy(it->digest, info->digest.data, sizeof it->digest);
    it->info.digest = cnd_proto_bytes(it->digest, sizeof it->digest);
    it->kind = kind;
    it->job = job;
    it->round = round;
    snprintf(it->sender, sizeof it->sender, "%s", sender);
    it->seq_base = seq_base;
    s_append(q, it, info->chunk_count);
    return 0;
}

/* The next frame of the head item: its own bytes, or the next chunk encoded now (*owned). */
static int s_frame(cnd_outq_item_t *it, cnd_outq_frame_t *f, uint8_t **owned)
{
    *owned = NULL;
    f->job = it->job;
    f->round = it->round;
    if (!it->blob) {
        f->data = it->data;
        f->len = it->len;
        f->type = it->type;
        return 0;
    }
    Condenser__Chunk ch;
    uint8_t sha[CND_PROTO_DIGEST_BYTES];
    int rc = cnd_chunk_piece(&ch, sha, it->kind, &it->info, it->blob->data, it->next_chunk);
    if (rc) return rc;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_CHUNK, &ch, it->job, it->round,
                            it->sender, it->seq_base + it->next_chunk);
    size_t len = 0;
    if ((rc = cnd_proto_encode(owned, &len, &env))) return rc;
    f->data = *owned;
    f->len = len;
    f->type = CONDENSER__MSG_TYPE__MSG_CHUNK;
    return 0;
}

int cnd_outq_flush(cnd_outq_t *q, cnd_outq_send_fn send, void *ctx, int max_frames, double now)
{
    int sent = 0;
    while (q->head && sent < max_frames) {
        cnd_outq_item_t *it = q->head;
        cnd_outq_frame_t f;
        uint8_t *owned = NULL;
        int rc = s_frame(it, &f, &owned);
        if (!rc) rc = send(ctx, &f);
        free(owned);
        if (rc == CND_ETIMEOUT) {
            if (!q->stalled_since) q->stalled_since = now;
            return sent;
        }
        if (rc) return rc;
        sent++;
        q->sent++;
        q->frames--;
        q->stalled_since = 0;
        if (it->blob && ++it->next_chunk < it->info.chunk_count) continue;
        if (!it->blob) q->bytes -= it->len;
        q->head = it->next;
        if (!q->head) q->tail = NULL;
        q->items--;
        s_item_free(it);
    }
    if (!q->head) q->stalled_since = 0;
    return sent;
}
