/*
 * test_coord_outq.c: the coordinator's per-peer send queue (coordinator/coord_outq.h) against a
 * naive model. Random frames and objects are queued the way the daemon queues them (sequence
 * numbers taken from one counter, reserved for an object's chunks) and flushed through a fake
 * transport that takes a random number of frames and then reports itself full. Checked: what
 * the transport receives is every queued frame and every chunk, in queue order, with strictly
 * increasing sequence numbers; each object reassembles to its bytes; the queue's counters equal
 * the model's after every step; a peer that is gone stops the flush with its error; clearing
 * releases the shared objects; a wrong object description is refused.
 */
#include "check.h"
#include "chunk.h"
#include "coord_outq.h"
#include "proto.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    cnd_rng_t rng;
    int room; /* frames the fake transport still takes before it is "full" */
    int gone; /* 1: the peer is gone */
    uint64_t last_seq;
    int bad_order;
    /* what was received, as (type, tag) in order: tag is the frame's heartbeat unix_ms or
     * the chunk's object id and index */
    uint64_t *got;
    size_t n_got, cap;
} fake_t;

static int s_send(void *ctx, const cnd_outq_frame_t *f)
{
    fake_t *x = ctx;
    if (x->gone) return cnd_errf(CND_ENOTFOUND, "gone");
    if (x->room <= 0) return cnd_errf(CND_ETIMEOUT, "full");
    x->room--;
    cnd_proto_msg_t *m = NULL;
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, f->data, f->len), 0);
    if (!m) return 0;
    if (m->env->seq <= x->last_seq) x->bad_order++;
    x->last_seq = m->env->seq;
    CHECK_EQ_INT(m->env->type, f->type);
    CHECK_EQ_INT(m->env->job_id, f->job);
    CHECK_EQ_INT(m->env->round, f->round);
    uint64_t tag = 0;
    if (f->type == CONDENSER__MSG_TYPE__MSG_HEARTBEAT)
        tag = m->env->heartbeat->unix_ms;
    else
        tag = ((uint64_t)m->env->chunk->object_digest.data[0] << 32) | m->env->chunk->index;
    if (x->n_got == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 1024;
        x->got = realloc(x->got, x->cap * sizeof *x->got);
    }
    x->got[x->n_got++] = tag;
    cnd_proto_msg_destroy(&m);
    return 0;
}

/* An encoded heartbeat tagged `tag`. */
static uint8_t *s_frame(uint64_t tag, uint64_t seq, uint64_t job, size_t *len)
{
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    hb.unix_ms = tag;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, job, 0, "coordinator",
                            seq);
    uint8_t *b = NULL;
    CHECK_EQ_INT(cnd_proto_encode(&b, len, &env), 0);
    return b;
}

int main(void)
{
    fake_t x;
    memset(&x, 0, sizeof x);
    cnd_rng_seed(&x.rng, 7);
    /* three objects of different sizes; the first digest byte tells them apart */
    cnd_outq_blob_t *obj[3] = {NULL, NULL, NULL};
    Condenser__ObjectInfo info[3];
    uint8_t dig[3][32];
    size_t sizes[3] = {1024 * 3 + 5, 1024, 10 * 1024};
    for (int o = 0; o < 3; o++) {
        uint8_t *d = malloc(sizes[o]);
        for (;;) {
            for (size_t i = 0; i < sizes[o]; i++) d[i] = (uint8_t)cnd_rng_below(&x.rng, 256);
            CHECK_EQ_INT(cnd_chunk_plan(&info[o], dig[o], d, sizes[o], 1024), 0);
            int clash = 0;
            for (int p = 0; p < o; p++) clash |= dig[p][0] == dig[o][0];
            if (!clash) break;
        }
        CHECK_EQ_INT(cnd_outq_blob_new(&obj[o], d, sizes[o]), 0);
        free(d);
    }

    cnd_outq_t q;
    cnd_outq_init(&q);
    uint64_t seq = 1000;
    uint64_t *want = NULL; /* the model: tags in queue order */
    size_t n_want = 0, cap = 0, model_frames = 0, model_bytes = 0;
    uint64_t next_tag = 1;
    static size_t flen[4000]; /* encoded length of each heartbeat, by tag */
    for (int step = 0; step < 3000; step++) {
        int what = (int)cnd_rng_below(&x.rng, 10);
        if (n_want + 64 > cap) {
            cap = cap ? 2 * cap : 4096;
            want = realloc(want, cap * sizeof *want);
        }
        if (what < 5) {
            size_t len = 0;
            uint64_t tag = next_tag++;
            uint8_t *b = s_frame(tag, seq++, 3, &len);
            flen[tag] = len;
            CHECK_EQ_INT(cnd_outq_push(&q, &b, len, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, 3, 0), 0);
            CHECK(b == NULL);
            want[n_want++] = tag;
            model_frames++;
            model_bytes += len;
        } else if (what < 6) {
            int o = (int)cnd_rng_below(&x.rng, 3);
            CHECK_EQ_INT(cnd_outq_push_object(&q, obj[o], &info[o],
                                              CONDENSER__OBJECT_KIND__OBJ_MODEL, 3, 2,
                                              "coordinator", seq),
                         0);
            seq += info[o].chunk_count;
            for (uint32_t i = 0; i < info[o].chunk_count; i++)
                want[n_want++] = ((uint64_t)dig[o][0] << 32) | i;
            model_frames += info[o].chunk_count;
        } else {
            x.room = (int)cnd_rng_below(&x.rng, 8);
            size_t before = x.n_got;
            int max = 1 + (int)cnd_rng_below(&x.rng, 6);
            int r = cnd_outq_flush(&q, s_send, &x, max, step);
            CHECK(r >= 0 && r <= max);
            CHECK_EQ_INT((size_t)r, x.n_got - before);
            /* frames leave the byte count; chunks never were in it */
            for (size_t i = before; i < x.n_got; i++)
                if (x.got[i] < ((uint64_t)1 << 32)) model_bytes -= flen[x.got[i]];
            model_frames -= (size_t)r;
            if (model_frames) CHECK((q.stalled_since > 0) == (x.room == 0 && r < max));
        }
        CHECK_EQ_INT(q.frames, model_frames);
        CHECK_EQ_INT(q.bytes, model_bytes);
        CHECK_EQ_INT(q.frames == 0, q.head == NULL);
    }
    /* drain */
    x.room = 1 << 30;
    int r = cnd_outq_flush(&q, s_send, &x, 1 << 30, 1);
    CHECK(r >= 0);
    CHECK_EQ_INT(q.frames, 0);
    CHECK_EQ_INT(q.items, 0);
    CHECK_EQ_INT(q.bytes, 0);
    CHECK_EQ_INT(x.bad_order, 0);
    CHECK_EQ_INT(x.n_got, n_want);
    CHECK(x.n_got == n_want && memcmp(x.got, want, n_want * sizeof *want) == 0);
    CHECK_EQ_INT(q.sent, n_want);

    /* a peer that is gone stops the flush and keeps the queue */
    size_t len = 0;
    uint8_t *b = s_frame(1, seq++, 0, &len);
    CHECK_EQ_INT(cnd_outq_push(&q, &b, len, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, 0, 0), 0);
    CHECK_EQ_INT(q.bytes, len);
    CHECK_EQ_INT(cnd_outq_push_object(&q, obj[0], &info[0], CONDENSER__OBJECT_KIND__OBJ_TEACHER, 3,
                                      0, "coordinator", seq),
                 0);
    x.gone = 1;
    CHECK_EQ_INT(cnd_outq_flush(&q, s_send, &x, 10, 2), CND_ENOTFOUND);
    CHECK_EQ_INT(q.items, 2);
    CHECK_EQ_INT(obj[0]->refs, 2);
    cnd_outq_clear(&q);
    CHECK_EQ_INT(q.items, 0);
    CHECK_EQ_INT(q.frames, 0);
    CHECK(q.head == NULL && q.tail == NULL);
    CHECK_EQ_INT(obj[0]->refs, 1);
    /* a description that does not match the object */
    Condenser__ObjectInfo wrong = info[1];
    wrong.total_size = 1;
    CHECK_EQ_INT(cnd_outq_push_object(&q, obj[1], &wrong, CONDENSER__OBJECT_KIND__OBJ_MODEL, 3, 1,
                                      "coordinator", seq),
                 CND_EINVAL);
    CHECK_EQ_INT(q.items, 0);
    for (int o = 0; o < 3; o++) {
        cnd_outq_blob_unref(&obj[o]);
        CHECK(obj[o] == NULL);
    }
    cnd_outq_blob_unref(&obj[0]);
    free(want);
    free(x.got);
    return check_result("test_coord_outq");
}
