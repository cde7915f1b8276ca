/*
 * test_proto_fuzz.c: runs the fuzz target (fuzz_proto.c) over a deterministic corpus with any
 * compiler, so every CI run throws malformed input at the decoder: valid encodings of every
 * message type, then tens of thousands of mutations of them (bit flips, interesting bytes,
 * truncation, insertion, deletion, duplication, splicing, oversized varints) and random buffers.
 * The target aborts on any broken invariant; ASan/UBSan catch memory errors.
 *
 * `test_proto_fuzz --write-corpus DIR` writes the valid seeds as files for a libFuzzer run.
 */
#include "check.h"
#include "rng.h"
#include "test_proto_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_SEEDS = 32, ITERATIONS = 100000, MAX_LEN = 16384 };

typedef struct {
    uint8_t *p;
    size_t n;
} seed_t;

static int s_seeds(seed_t *seeds)
{
    static fx_t f;
    int k = 0;
    for (int t = 1; t <= CONDENSER__MSG_TYPE__MSG_CONSISTENCY; t++) {
        s_build(&f, (Condenser__MsgType)t);
        seeds[k].n = condenser__envelope__get_packed_size(&f.env);
        seeds[k].p = malloc(seeds[k].n);
        condenser__envelope__pack(&f.env, seeds[k].p);
        k++;
    }
    s_build(&f, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE);
    f.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    f.spec.teacher_local = S("local-teacher");
    seeds[k].n = condenser__envelope__get_packed_size(&f.env);
    seeds[k].p = malloc(seeds[k].n);
    condenser__envelope__pack(&f.env, seeds[k].p);
    k++;
    /* a shipped ONNX teacher: JobSpec fields 12 and 13 (committed as
     * tests/fuzz/corpus/proto/job-announce-onnx-teacher) */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE);
    f.spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
    f.spec.teacher_preprocess = S("scale=1/255 mean=0.485,0.456,0.406 std=0.229,0.224,0.225");
    seeds[k].n = condenser__envelope__get_packed_size(&f.env);
    seeds[k].p = malloc(seeds[k].n);
    condenser__envelope__pack(&f.env, seeds[k].p);
    k++;
    /* distributed DP in the recipe: DpSgd fields 6 and 7 (committed as
     * tests/fuzz/corpus/proto/job-announce-dp-distributed) */
    static Condenser__DpSgd dp;
    condenser__dp_sgd__init(&dp);
    dp.noise_multiplier = 1.5, dp.clip = 0.5, dp.delta = 1e-5, dp.mode = 1, dp.min_survivors = 2;
    s_build(&f, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE);
    f.recipe.dp = &dp;
    seeds[k].n = condenser__envelope__get_packed_size(&f.env);
    seeds[k].p = malloc(seeds[k].n);
    condenser__envelope__pack(&f.env, seeds[k].p);
    k++;
    return k;
}

static size_t s_mutate(uint8_t *buf, size_t n, const seed_t *seeds, int nseeds, cnd_rng_t *r)
{
    int op = (int)cnd_rng_below(r, 9);
    switch (op) {
    case 0: /* flip 1..8 bits */
        for (int i = 0, k = 1 + (int)cnd_rng_below(r, 8); i < k && n; i++)
            buf[cnd_rng_below(r, n)] ^= (uint8_t)(1u << cnd_rng_below(r, 8));
        return n;
    case 1: { /* interesting byte */
        static const uint8_t v[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x20};
        if (n) buf[cnd_rng_below(r, n)] = v[cnd_rng_below(r, sizeof v)];
        return n;
    }
    case 2: /* truncate */ return n ? (size_t)cnd_rng_below(r, n) : 0;
    case 3: { /* insert random bytes */
        size_t k = 1 + (size_t)cnd_rng_below(r, 16), at = n ? (size_t)cnd_rng_below(r, n + 1) : 0;
        if (n + k > MAX_LEN) return n;
        memmove(buf + at + k, buf + at, n - at);
        for (size_t i = 0; i < k; i++) buf[at + i] = (uint8_t)cnd_rng_u64(r);
        return n + k;
    }
    case 4: { /* delete a range */
        if (n < 2) return n;
        size_t at = (size_t)cnd_rng_below(r, n), k = 1 + (size_t)cnd_rng_below(r, n - at);
        memmove(buf + at, buf + at + k, n - at - k);
        return n - k;
    }
    case 5: { /* duplicate a range */
        if (!n) return n;
        size_t at = (size_t)cnd_rng_below(r, n), k = 1 + (size_t)cnd_rng_below(r, n - at);
        if (n + k > MAX_LEN) return n;
        memmove(buf + at + k, buf + at, n - at);
        return n + k;
    }
    case 6: { /* splice: our prefix, another seed's suffix */
        const seed_t *o = &seeds[cnd_rng_below(r, (uint64_t)nseeds)];
        size_t a = n ? (size_t)cnd_rng_below(r, n) : 0, b = (size_t)cnd_rng_below(r, o->n);
        if (a + (o->n - b) > MAX_LEN) return n;
        memcpy(buf + a, o->p + b, o->n - b);
        return a + (o->n - b);
    }
    case 7: { /* a huge varint somewhere (lengths, counts, sizes) */
        static const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        if (n < sizeof big) return n;
        memcpy(buf + cnd_rng_below(r, n - sizeof big + 1), big, sizeof big);
        return n;
    }
    default: { /* random buffer */
        size_t k = (size_t)cnd_rng_below(r, 512);
        for (size_t i = 0; i < k; i++) buf[i] = (uint8_t)cnd_rng_u64(r);
        return k;
    }
    }
}

int main(int argc, char **argv)
{
    s_fill_globals();
    seed_t seeds[MAX_SEEDS];
    int nseeds = s_seeds(seeds);
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        for (int i = 0; i < nseeds; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/seed-%02d", argv[2], i);
            FILE *fp = fopen(path, "wb");
            if (!fp || fwrite(seeds[i].p, 1, seeds[i].n, fp) != seeds[i].n) {
                fprintf(stderr, "cannot write %s\n", path);
                return 1;
            }
            fclose(fp);
        }
        for (int i = 0; i < nseeds; i++) free(seeds[i].p);
        return 0;
    }
    /* every seed is accepted as is */
    int accepted = 0, rejected = 0;
    for (int i = 0; i < nseeds; i++) {
        cnd_proto_msg_t *m = NULL;
        CHECK_EQ_INT(cnd_proto_decode(&m, NULL, seeds[i].p, seeds[i].n), 0);
        cnd_proto_msg_destroy(&m);
        CHECK_EQ_INT(LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n), 0);
    }
    static uint8_t buf[MAX_LEN];
    cnd_rng_t r;
    cnd_rng_seed(&r, 20261128);
    for (int it = 0; it < ITERATIONS; it++) {
        const seed_t *s = &seeds[cnd_rng_below(&r, (uint64_t)nseeds)];
        memcpy(buf, s->p, s->n);
        size_t n = s->n;
        /* stack 1..4 mutations */
        for (int k = 0, m = 1 + (int)cnd_rng_below(&r, 4); k < m; k++)
            n = s_mutate(buf, n, seeds, nseeds, &r);
        cnd_proto_msg_t *msg = NULL;
        if (cnd_proto_decode(&msg, NULL, buf, n) == 0)
            accepted++;
        else
            rejected++;
        cnd_proto_msg_destroy(&msg);
        LLVMFuzzerTestOneInput(buf, n); /* aborts on a broken invariant */
    }
    fprintf(stderr, "test_proto_fuzz: %d mutated inputs accepted, %d rejected\n", accepted,
            rejected);
    /* both paths were exercised in earnest */
    CHECK(accepted > ITERATIONS / 100);
    CHECK(rejected > ITERATIONS / 2);
    for (int i = 0; i < nseeds; i++) free(seeds[i].p);
    return check_result("test_proto_fuzz");
}
