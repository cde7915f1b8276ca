/*
 * fuzz_proto.c: the libFuzzer entry point for everything that parses untrusted bytes in proto/:
 * the decoder with all its validation, the stateful checks, and the chunk assembler.
 *
 * Invariants checked on every input (a violation aborts, which the fuzzer reports):
 *   - decode either fails cleanly (no message, a wire error code set) or returns a message;
 *   - a decoded message re-encodes (validation agrees with itself) and the re-encoding decodes
 *     to the same bytes again (encoding is a fixed point after one round);
 *   - the full gate (cnd_proto_accept) never accepts what decode refuses;
 *   - the checks and the assembler never crash on anything decode accepted.
 *
 * Built as a libFuzzer binary when the compiler is clang (tests/proto/CMakeLists.txt); the same
 * function is driven over a generated corpus of valid and mutated messages by test_proto_fuzz with
 * any compiler, so ordinary CI runs exercise it too.
 */
#include "chunk.h"
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results are not judged here, only computed (gcc ignores (void) on warn_unused_result). */
static volatile int s_sink;

static void s_exercise(const Condenser__Envelope *e)
{
    cnd_proto_reject_t rej;
    for (int phase = CND_PHASE_IDLE; phase <= CND_PHASE_DONE; phase++) {
        cnd_round_view_t v = {e->job_id, e->round, (cnd_phase_t)phase};
        s_sink += cnd_proto_check_round(&rej, e, &v);
        v.round = e->round + 1;
        s_sink += cnd_proto_check_round(&rej, e, &v);
    }
    for (int role = 0; role <= 5; role++)
        s_sink += cnd_proto_check_role(&rej, e, (Condenser__Role)role);
    s_sink += cnd_proto_check_sender(&rej, e, "site-a");
    s_sink += (int)cnd_proto_phase_of(e);

    /* Any announced object: build an assembler bounded to 1 MiB and feed it a chunk. */
    const Condenser__ObjectInfo *info = NULL;
    if (e->type == CONDENSER__MSG_TYPE__MSG_ROUND_START) info = e->round_start->model;
    if (e->type == CONDENSER__MSG_TYPE__MSG_MASKED_INPUT) info = e->masked_input->vector;
    if (info) {
        cnd_assembler_t *a = NULL;
        if (cnd_assembler_new(&a, &rej, CONDENSER__OBJECT_KIND__OBJ_MODEL, info, 1u << 20) == 0) {
            uint8_t *out;
            uint64_t len;
            if (cnd_assembler_finish(a, &rej, &out, &len) == 0) abort(); /* nothing added */
            cnd_assembler_destroy(&a);
        }
    }
    if (e->type == CONDENSER__MSG_TYPE__MSG_CHUNK) {
        const Condenser__Chunk *c = e->chunk;
        Condenser__ObjectInfo oi;
        condenser__object_info__init(&oi);
        oi.digest = c->object_digest;
        oi.chunk_size = 4096;
        oi.total_size = (uint64_t)(c->index + 1) * 4096;
        oi.chunk_count = c->index + 1;
        cnd_assembler_t *a = NULL;
        if (cnd_assembler_new(&a, &rej, c->kind, &oi, (uint64_t)1 << 24) == 0) {
            s_sink += cnd_assembler_add(a, &rej, c);
            s_sink += (int)cnd_assembler_next_missing(a);
            cnd_assembler_destroy(&a);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej;
    memset(&rej, 0, sizeof rej);
    /* the full gate, with a window that has seen one message */
    cnd_seqwin_t w;
    cnd_seqwin_init(&w);
    cnd_seqwin_commit(&w, 1000);
    cnd_round_view_t v = {42, 3, CND_PHASE_MASKED};
    int gate = cnd_proto_accept(&m, &rej, data, size, "site-b", CONDENSER__ROLE__ROLE_SITE, &w, &v);
    if (gate == 0 && (!m || w.top < 1000)) abort();
    if (gate != 0 && m) abort();
    cnd_proto_msg_destroy(&m);
    memset(&rej, 0, sizeof rej);
    if (cnd_proto_decode(&m, &rej, data, size) != 0) {
        if (m || rej.code == CONDENSER__ERROR_CODE__ERR_UNSPECIFIED) abort();
        if (gate == 0) abort(); /* the gate cannot accept what decode refuses */
        return 0;
    }
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t n = 0, n2 = 0;
    if (cnd_proto_encode(&enc, &n, m->env) != 0) abort();
    cnd_proto_msg_t *m2 = NULL;
    if (cnd_proto_decode(&m2, &rej, enc, n) != 0) abort();
    if (cnd_proto_encode(&enc2, &n2, m2->env) != 0) abort();
    if (n2 != n || memcmp(enc, enc2, n) != 0) abort();
    s_exercise(m->env);
    free(enc);
    free(enc2);
    cnd_proto_msg_destroy(&m2);
    cnd_proto_msg_destroy(&m);
    return 0;
}
