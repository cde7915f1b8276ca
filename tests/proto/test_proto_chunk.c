/*
 * test_proto_chunk.c: chunked transfer of large objects. A 1M-value masked vector travels as
 * encoded MSG_CHUNK envelopes in shuffled order and comes back byte-identical; corrupted,
 * duplicated, conflicting, missing, misplaced and oversized chunks are each refused by the rule
 * chunk.h states, and the outcome depends only on the order of arrival, never on chance.
 */
#include "check.h"
#include "chunk.h"
#include "digest.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

#define KIND_MASKED CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT
#define KIND_ART    CONDENSER__OBJECT_KIND__OBJ_ARTIFACT

static uint8_t *s_random_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n);
    cnd_rng_t r;
    cnd_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)cnd_rng_u64(&r);
    return p;
}

/* Every chunk of an object, as the receiver would see it after the wire: encoded into an
 * envelope, decoded and validated. */
typedef struct {
    cnd_proto_msg_t **msgs;
    uint32_t n;
} wire_t;

static wire_t s_send_all(const Condenser__ObjectInfo *info, const uint8_t *obj,
                         Condenser__ObjectKind kind)
{
    wire_t w = {calloc(info->chunk_count, sizeof(cnd_proto_msg_t *)), info->chunk_count};
    for (uint32_t i = 0; i < info->chunk_count; i++) {
        Condenser__Chunk c;
        uint8_t sha[32];
        CHECK_EQ_INT(cnd_chunk_piece(&c, sha, kind, info, obj, i), 0);
        Condenser__Envelope env;
        cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_CHUNK, &c, 7, 2, "site-a", 100 + i);
        uint8_t *buf;
        size_t n;
        CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &env), 0);
        CHECK(n <= CND_PROTO_MAX_MSG);
        CHECK_EQ_INT(cnd_proto_decode(&w.msgs[i], NULL, buf, n), 0);
        free(buf);
    }
    return w;
}

static void s_wire_free(wire_t *w)
{
    for (uint32_t i = 0; i < w->n; i++) cnd_proto_msg_destroy(&w->msgs[i]);
    free(w->msgs);
}

static const Condenser__Chunk *s_chunk(const wire_t *w, uint32_t i)
{
    return w->msgs[i]->env->chunk;
}

static void test_masked_vector_round_trip(void)
{
    /* A MASKED message of 1,000,000 values of 16 bits: 26 + 2,000,000 bytes, 8 chunks. */
    const size_t len = CND_PROTO_MASKED_HDR + 2000000;
    uint8_t *obj = s_random_bytes(len, 1);
    Condenser__ObjectInfo info;
    uint8_t digest[32];
    CHECK_EQ_INT(cnd_chunk_plan(&info, digest, obj, len, CND_PROTO_CHUNK_MAX), 0);
    CHECK_EQ_INT(info.chunk_count, 8);
    CHECK_EQ_INT(info.total_size, len);
    uint8_t ref[32];
    cnd_sha256(ref, obj, len);
    CHECK(memcmp(digest, ref, 32) == 0);

    /* The announcing message validates with the plan's info. */
    Condenser__MaskedInput mi;
    condenser__masked_input__init(&mi);
    mi.vector = &info;
    mi.bit_width = 16;
    mi.length = 1000000;
    mi.participant_id = 1;
    CHECK_EQ_INT(cnd_proto_validate_masked_input(NULL, &mi), 0);

    wire_t w = s_send_all(&info, obj, KIND_MASKED);
    cnd_rng_t r;
    cnd_rng_seed(&r, 99);
    uint32_t order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    cnd_rng_shuffle_u32(&r, order, 8);
    cnd_assembler_t *a = NULL;
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_assembler_new(&a, &rej, KIND_MASKED, &info, len), 0);
    CHECK_EQ_INT(cnd_assembler_count(a), 8);
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, order[i])), 0);
        CHECK_EQ_INT(cnd_assembler_received(a), i + 1);
    }
    CHECK_EQ_INT(cnd_assembler_next_missing(a), 8);
    CHECK_EQ_INT(cnd_assembler_prefix_bytes(a), len);
    uint8_t *out = NULL;
    uint64_t out_len = 0;
    CHECK_EQ_INT(cnd_assembler_finish(a, &rej, &out, &out_len), 0);
    CHECK_EQ_INT(out_len, len);
    CHECK(out && memcmp(out, obj, len) == 0);
    free(out);
    /* finished: nothing more goes in or out */
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 0)), CND_ESTATE);
    CHECK_EQ_INT(cnd_assembler_finish(a, &rej, &out, &out_len), CND_ESTATE);
    CHECK(out == NULL);
    cnd_assembler_destroy(&a);
    CHECK(a == NULL);
    cnd_assembler_destroy(&a);
    s_wire_free(&w);
    free(obj);
}

static void test_sizes(void)
{
    /* Objects of 1 byte, below CHUNK_MIN, an exact multiple, and multiple + 1. */
    const size_t sizes[] = {1, 1000, 4 * 4096, 4 * 4096 + 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        uint8_t *obj = s_random_bytes(len, 10 + k);
        Condenser__ObjectInfo info;
        uint8_t dg[32];
        CHECK_EQ_INT(cnd_chunk_plan(&info, dg, obj, len, 4096), 0);
        CHECK_EQ_INT(info.chunk_count, (len + 4095) / 4096);
        wire_t w = s_send_all(&info, obj, KIND_ART);
        cnd_assembler_t *a;
        CHECK_EQ_INT(cnd_assembler_new(&a, NULL, KIND_ART, &info, len), 0);
        for (uint32_t i = w.n; i-- > 0;)
            CHECK_EQ_INT(cnd_assembler_add(a, NULL, s_chunk(&w, i)), 0);
        uint8_t *out;
        uint64_t ol;
        CHECK_EQ_INT(cnd_assembler_finish(a, NULL, &out, &ol), 0);
        CHECK(ol == len && memcmp(out, obj, len) == 0);
        /* the last chunk carries exactly the remainder */
        CHECK_EQ_INT(s_chunk(&w, w.n - 1)->data.len, len - (size_t)(w.n - 1) * 4096);
        free(out);
        cnd_assembler_destroy(&a);
        s_wire_free(&w);
        free(obj);
    }
    /* plan refuses what cannot be chunked */
    Condenser__ObjectInfo info;
    uint8_t dg[32];
    uint8_t b[8] = {0};
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, b, 0, 4096), CND_EINVAL);
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, b, 8, 100), CND_EINVAL);
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, b, 8, CND_PROTO_CHUNK_MAX + 1), CND_EINVAL);
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, b, CND_PROTO_OBJECT_MAX + 1, 4096), CND_EINVAL);
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, b, 8, 4096), 0);
    Condenser__Chunk c;
    uint8_t sha[32];
    CHECK_EQ_INT(cnd_chunk_piece(&c, sha, KIND_ART, &info, b, 1), CND_EINVAL);
}

/* A chunk the receiver has to check, with its own copy of the data. */
typedef struct {
    Condenser__Chunk c;
    uint8_t data[4096];
    uint8_t sha[32];
    uint8_t od[32];
} mchunk_t;

static void s_copy(mchunk_t *m, const Condenser__Chunk *src)
{
    m->c = *src;
    memcpy(m->data, src->data.data, src->data.len);
    memcpy(m->sha, src->sha256.data, 32);
    memcpy(m->od, src->object_digest.data, 32);
    m->c.data.data = m->data;
    m->c.sha256.data = m->sha;
    m->c.object_digest.data = m->od;
}

static void s_reseal(mchunk_t *m)
{
    cnd_sha256(m->sha, m->data, m->c.data.len);
}

static void test_bad_chunks(void)
{
    const size_t len = 5 * 4096 + 100; /* 6 chunks, the last of 100 bytes */
    uint8_t *obj = s_random_bytes(len, 5);
    Condenser__ObjectInfo info;
    uint8_t dg[32];
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, obj, len, 4096), 0);
    wire_t w = s_send_all(&info, obj, KIND_MASKED);
    cnd_proto_reject_t rej;
    cnd_assembler_t *a;
    mchunk_t m;

    /* An announced size above what the receiver accepts: refused before allocating. */
    CHECK_EQ_INT(cnd_assembler_new(&a, &rej, KIND_MASKED, &info, len - 1), CND_ERANGE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
    CHECK(a == NULL);
    /* An inconsistent announcement. */
    Condenser__ObjectInfo bad = info;
    bad.chunk_count = 5;
    CHECK_EQ_INT(cnd_assembler_new(&a, &rej, KIND_MASKED, &bad, len), CND_EPROTO);

    CHECK_EQ_INT(cnd_assembler_new(&a, &rej, KIND_MASKED, &info, len), 0);

    /* Corrupted bytes: refused, nothing stored; the good copy is accepted afterwards. */
    s_copy(&m, s_chunk(&w, 2));
    m.data[17] ^= 1;
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_ECORRUPT);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_DIGEST_MISMATCH);
    CHECK_EQ_INT(cnd_assembler_received(a), 0);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 2)), 0);

    /* Identical duplicate: harmless, reported, nothing changes. */
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 2)), CND_EEXIST);
    CHECK_EQ_INT(cnd_assembler_received(a), 1);

    /* Conflicting duplicate (valid sha over different bytes): refused, the first copy stays. */
    s_copy(&m, s_chunk(&w, 2));
    m.data[0] ^= 0xff;
    s_reseal(&m);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "conflicts") != NULL);

    /* Beyond the announced total. */
    s_copy(&m, s_chunk(&w, 5));
    m.c.index = 6;
    m.c.offset = 6 * 4096;
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
    /* Last chunk longer than the remainder (would write past the end). */
    s_copy(&m, s_chunk(&w, 5));
    m.c.data.len = 101;
    s_reseal(&m);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
    /* A middle chunk that is short. */
    s_copy(&m, s_chunk(&w, 1));
    m.c.data.len = 4095;
    s_reseal(&m);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    /* Offset that does not match the index. */
    s_copy(&m, s_chunk(&w, 1));
    m.c.offset = 4096 + 1;
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "offset") != NULL);
    /* Another object, another kind. */
    s_copy(&m, s_chunk(&w, 1));
    m.od[0] ^= 1;
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK(strstr(cnd_err_detail(), "another object") != NULL);
    s_copy(&m, s_chunk(&w, 1));
    m.c.kind = CONDENSER__OBJECT_KIND__OBJ_MODEL;
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), CND_EPROTO);
    CHECK_EQ_INT(cnd_assembler_received(a), 1); /* none of the above was stored */

    /* Missing chunks: finish refuses and names the first gap; the prefix is where a pulled
     * transfer resumes. */
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 0)), 0);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 4)), 0);
    CHECK_EQ_INT(cnd_assembler_next_missing(a), 1);
    CHECK_EQ_INT(cnd_assembler_prefix_bytes(a), 4096);
    uint8_t *out;
    uint64_t ol;
    CHECK_EQ_INT(cnd_assembler_finish(a, &rej, &out, &ol), CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "chunk 1 missing") != NULL);
    CHECK(out == NULL);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 1)), 0);
    CHECK_EQ_INT(cnd_assembler_next_missing(a), 3);
    CHECK_EQ_INT(cnd_assembler_prefix_bytes(a), 3 * 4096);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 3)), 0);
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 5)), 0);
    CHECK_EQ_INT(cnd_assembler_prefix_bytes(a), len);
    CHECK_EQ_INT(cnd_assembler_finish(a, &rej, &out, &ol), 0);
    CHECK(ol == len && memcmp(out, obj, len) == 0);
    free(out);
    cnd_assembler_destroy(&a);

    /* A sender that controls both bytes and per-chunk digests cannot pass the whole-object
     * digest. */
    CHECK_EQ_INT(cnd_assembler_new(&a, &rej, KIND_MASKED, &info, len), 0);
    for (uint32_t i = 0; i < w.n; i++) {
        if (i == 3) {
            s_copy(&m, s_chunk(&w, 3));
            m.data[100] ^= 0x80;
            s_reseal(&m);
            CHECK_EQ_INT(cnd_assembler_add(a, &rej, &m.c), 0);
        } else {
            CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, i)), 0);
        }
    }
    CHECK_EQ_INT(cnd_assembler_finish(a, &rej, &out, &ol), CND_ECORRUPT);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_DIGEST_MISMATCH);
    CHECK(out == NULL);
    /* the genuine chunk is now a conflicting duplicate: the rule is first valid copy wins */
    CHECK_EQ_INT(cnd_assembler_add(a, &rej, s_chunk(&w, 3)), CND_EPROTO);
    cnd_assembler_destroy(&a);

    /* cnd_chunk_verify for streaming receivers */
    CHECK_EQ_INT(cnd_chunk_verify(&rej, s_chunk(&w, 0)), 0);
    s_copy(&m, s_chunk(&w, 0));
    m.data[5] ^= 4;
    CHECK_EQ_INT(cnd_chunk_verify(&rej, &m.c), CND_ECORRUPT);
    m.c.sha256.len = 31;
    CHECK_EQ_INT(cnd_chunk_verify(&rej, &m.c), CND_EPROTO);

    s_wire_free(&w);
    free(obj);
}

/* Deterministic outcome: for many random arrival orders mixing genuine chunks, identical
 * duplicates, corrupted copies and one forged (resealed) copy of chunk 2, the result is always
 * what "first valid copy of each chunk wins" predicts. */
static void test_order_independence(void)
{
    const size_t len = 8 * 4096;
    uint8_t *obj = s_random_bytes(len, 77);
    Condenser__ObjectInfo info;
    uint8_t dg[32];
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, obj, len, 4096), 0);
    wire_t w = s_send_all(&info, obj, KIND_MASKED);
    mchunk_t forged, broken;
    s_copy(&forged, s_chunk(&w, 2));
    forged.data[9] ^= 0x10;
    s_reseal(&forged);
    s_copy(&broken, s_chunk(&w, 6));
    broken.data[0] ^= 1; /* sha no longer matches */

    enum { E = 8 + 4 + 2 };
    cnd_rng_t r;
    cnd_rng_seed(&r, 2024);
    int agree = 0, forged_first = 0, genuine_first = 0;
    for (int trial = 0; trial < 300; trial++) {
        /* events: 0..7 genuine chunk i, 8..11 duplicates of chunks 0,2,5,7, 12 forged, 13 broken */
        uint32_t ev[E];
        for (uint32_t i = 0; i < E; i++) ev[i] = i;
        cnd_rng_shuffle_u32(&r, ev, E);
        cnd_assembler_t *a;
        CHECK_EQ_INT(cnd_assembler_new(&a, NULL, KIND_MASKED, &info, len), 0);
        int forged_won = -1;
        for (uint32_t i = 0; i < E; i++) {
            const Condenser__Chunk *c;
            static const uint32_t dup_of[4] = {0, 2, 5, 7};
            if (ev[i] < 8)
                c = s_chunk(&w, ev[i]);
            else if (ev[i] < 12)
                c = s_chunk(&w, dup_of[ev[i] - 8]);
            else if (ev[i] == 12)
                c = &forged.c;
            else
                c = &broken.c;
            int rc = cnd_assembler_add(a, NULL, c);
            if (ev[i] == 13) CHECK_EQ_INT(rc, CND_ECORRUPT);
            /* the first of {genuine 2, duplicate 2, forged} to arrive decides chunk 2 */
            if (forged_won < 0 && (ev[i] == 2 || ev[i] == 9 || ev[i] == 12))
                forged_won = ev[i] == 12;
        }
        uint8_t *out;
        uint64_t ol;
        int rc = cnd_assembler_finish(a, NULL, &out, &ol);
        int expect = forged_won ? CND_ECORRUPT : 0;
        if (rc == expect) agree++;
        if (!rc) {
            CHECK(memcmp(out, obj, len) == 0);
            free(out);
        }
        forged_first += forged_won;
        genuine_first += !forged_won;
        cnd_assembler_destroy(&a);
    }
    CHECK_EQ_INT(agree, 300);
    CHECK(forged_first > 30 && genuine_first > 30); /* both orders were exercised */
    s_wire_free(&w);
    free(obj);
}

/* An edge device pulls an artifact by offset, loses the connection after some chunks, and
 * resumes from the last good chunk with the same assembler. */
static void test_resumable_pull(void)
{
    const size_t len = 100000;
    uint8_t *obj = s_random_bytes(len, 8);
    Condenser__ObjectInfo info;
    uint8_t dg[32];
    CHECK_EQ_INT(cnd_chunk_plan(&info, dg, obj, len, 16384), 0);
    CHECK_EQ_INT(info.chunk_count, 7);
    cnd_assembler_t *a;
    CHECK_EQ_INT(cnd_assembler_new(&a, NULL, KIND_ART, &info, len), 0);
    int requests = 0;
    /* session 1: three chunks arrive, then the link drops */
    for (int i = 0; i < 3; i++) {
        uint64_t off = cnd_assembler_prefix_bytes(a);
        uint32_t idx = (uint32_t)(off / info.chunk_size);
        Condenser__Chunk c;
        uint8_t sha[32];
        CHECK_EQ_INT(cnd_chunk_piece(&c, sha, KIND_ART, &info, obj, idx), 0);
        CHECK_EQ_INT(c.offset, off);
        CHECK_EQ_INT(cnd_assembler_add(a, NULL, &c), 0);
        requests++;
    }
    CHECK_EQ_INT(cnd_assembler_prefix_bytes(a), 3 * 16384);
    /* session 2: the request resumes at the prefix, a resent chunk is a harmless duplicate */
    Condenser__Chunk c;
    uint8_t sha[32];
    CHECK_EQ_INT(cnd_chunk_piece(&c, sha, KIND_ART, &info, obj, 2), 0);
    CHECK_EQ_INT(cnd_assembler_add(a, NULL, &c), CND_EEXIST);
    while (cnd_assembler_next_missing(a) < cnd_assembler_count(a)) {
        uint32_t idx = cnd_assembler_next_missing(a);
        CHECK_EQ_INT(cnd_chunk_piece(&c, sha, KIND_ART, &info, obj, idx), 0);
        CHECK_EQ_INT(cnd_assembler_add(a, NULL, &c), 0);
        requests++;
    }
    CHECK_EQ_INT(requests, 7); /* no chunk was fetched twice except the probe */
    uint8_t *out;
    uint64_t ol;
    CHECK_EQ_INT(cnd_assembler_finish(a, NULL, &out, &ol), 0);
    CHECK(ol == len && memcmp(out, obj, len) == 0);
    free(out);
    cnd_assembler_destroy(&a);
    free(obj);
}

int main(void)
{
    test_masked_vector_round_trip();
    test_sizes();
    test_bad_chunks();
    test_order_independence();
    test_resumable_pull();
    return check_result("test_proto_chunk");
}
