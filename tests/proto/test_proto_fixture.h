/*
 * test_proto_fixture.h: one valid instance of every wire message, shared by test_proto.c
 * (round trips, one-bad-field cases) and test_proto_fuzz.c (the seed corpus). s_build() fills
 * a fx_t; the payloads borrow from the static byte arrays filled by s_fill_globals().
 */
#ifndef TEST_PROTO_FIXTURE_H
#define TEST_PROTO_FIXTURE_H

#include "identity.h"
#include "manifest.h"
#include "proto.h"
#include "secagg.h"

#include <stdio.h>

#include <stdint.h>
#include <string.h>

#define B(p, n) ((ProtobufCBinaryData){(n), (uint8_t *)(p)})
#define S(s)    B(s, strlen(s))

static uint8_t K1[32], K2[32], K3[32], K4[32], SIG[64], DIG[32], DIG2[32], CERT[300], MAN[200],
    CT[120], SHARE[40], DATA[5000];
static uint8_t BIG[CND_PROTO_CHUNK_MAX + 10];

/* One valid instance of every payload, rebuilt fresh for each case. */
typedef struct {
    Condenser__Envelope env;
    Condenser__Hello hello;
    ProtobufCBinaryData caps[2];
    Condenser__HelloAck hello_ack;
    Condenser__JobAnnounce ja;
    Condenser__JobSpec spec;
    Condenser__StudentSpec student;
    uint32_t shape[3];
    Condenser__Recipe recipe;
    Condenser__SecAggParams sa;
    Condenser__Deadlines dl;
    Condenser__ObjectInfo teacher;
    Condenser__JobResponse jr;
    Condenser__RoundStart rs;
    Condenser__ObjectInfo model;
    uint8_t params[128]; /* canonical SecAgg+ round parameters */
    size_t params_len;
    Condenser__PeerCert pc[2];
    Condenser__PeerCert *pcp[2];
    Condenser__Chunk chunk;
    Condenser__AdvertiseKeys adv;
    Condenser__KeyRoster roster;
    Condenser__ShareKeys sk;
    Condenser__SharesRelay sr;
    Condenser__MaskedInput mi;
    Condenser__ObjectInfo vec;
    Condenser__ConsistencyRequest cq;
    Condenser__Consistency cs;
    Condenser__UnmaskRequest ur;
    Condenser__UnmaskResponse ures;
    uint8_t samsg[256]; /* the crypto/secagg.h message carried by a SecAgg+ payload */
    Condenser__Metrics met;
    Condenser__RoundEnd re;
    Condenser__Heartbeat hb;
    Condenser__Error err;
    Condenser__DeviceProfile dp;
    Condenser__Label lab[2];
    Condenser__Label *labp[2];
    Condenser__ArtifactOffer ao;
    Condenser__ArtifactChunkRequest acr;
    Condenser__ActivationReport ar;
    Condenser__Rollback rb;
} fx_t;

/* Signed manifests (crypto/manifest.h) for the offer (artifact DIG, 100,000 bytes) and the
 * rollback (artifact DIG2, 90,000 bytes, rollback flag). */
static uint8_t SMAN[1024], SRB[1024];
static size_t SMAN_LEN, SRB_LEN;

static size_t s_sign_manifest(uint8_t *out, const uint8_t *digest, uint64_t length, uint32_t flags)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(200 - i);
    cnd_identity_t *fed = NULL;
    cnd_manifest_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fmnist-student-int8");
    snprintf(m.target, sizeof m.target, "cortex-m7,x86-64");
    m.sequence = 8;
    m.version = flags ? 2 : 3;
    m.length = length;
    memcpy(m.digest, digest, 32);
    m.expires = 4102444800; /* 2100-01-01 */
    m.flags = flags;
    cnd_buf_t b;
    cnd_buf_init(&b);
    size_t n = 0;
    if (cnd_identity_from_seed(&fed, seed) == 0 && cnd_manifest_sign(&b, &m, fed) == 0 &&
        b.len <= 1024) {
        memcpy(out, b.data, b.len);
        n = b.len;
    }
    cnd_buf_free(&b);
    cnd_identity_destroy(&fed);
    return n;
}

static void s_fill_globals(void)
{
    for (int i = 0; i < 32; i++) {
        K1[i] = (uint8_t)(i + 1);
        K2[i] = (uint8_t)(2 * i + 7);
        K3[i] = (uint8_t)(3 * i + 9);
        K4[i] = (uint8_t)(5 * i + 11);
        DIG[i] = (uint8_t)(0xa0 ^ i);
        DIG2[i] = (uint8_t)(0x5c ^ i);
    }
    for (int i = 0; i < 64; i++) SIG[i] = (uint8_t)(0x40 + i);
    CERT[0] = 0x30;
    for (size_t i = 1; i < sizeof CERT; i++) CERT[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < sizeof MAN; i++) MAN[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof CT; i++) CT[i] = (uint8_t)(i * 31);
    for (size_t i = 0; i < sizeof SHARE; i++) SHARE[i] = (uint8_t)(i * 17);
    for (size_t i = 0; i < sizeof DATA; i++) DATA[i] = (uint8_t)(i * 101 + 3);
    memset(BIG, 'x', sizeof BIG);
    SMAN_LEN = s_sign_manifest(SMAN, DIG, 100000, 0);
    SRB_LEN = s_sign_manifest(SRB, DIG2, 90000, CND_MANIFEST_ROLLBACK);
}

static void s_deadlines(Condenser__Deadlines *d)
{
    condenser__deadlines__init(d);
    d->advertise_ms = 5000;
    d->share_ms = 5000;
    d->masked_input_ms = 120000;
    d->unmask_ms = 5000;
}

static void s_objinfo(Condenser__ObjectInfo *o, const uint8_t *dig, uint64_t total, uint32_t cs)
{
    condenser__object_info__init(o);
    o->digest = B(dig, 32);
    o->total_size = total;
    o->chunk_size = cs;
    o->chunk_count = (uint32_t)((total + cs - 1) / cs);
}

/* A crypto/secagg.h message: the 21-byte header then `body` filler bytes. Returns its size. */
static size_t s_sa_msg(uint8_t *out, uint8_t type, uint64_t round_id, uint32_t from, uint32_t to,
                       size_t body)
{
    memcpy(out, "CSA1", 4);
    out[4] = type;
    for (int i = 0; i < 8; i++) out[5 + i] = (uint8_t)(round_id >> (8 * i));
    for (int i = 0; i < 4; i++) out[13 + i] = (uint8_t)(from >> (8 * i));
    for (int i = 0; i < 4; i++) out[17 + i] = (uint8_t)(to >> (8 * i));
    for (size_t i = 0; i < body; i++) out[21 + i] = (uint8_t)(i * 29 + type);
    return 21 + body;
}

/* Canonical parameters of a 3-site round (complete graph, t = 2, 16-bit ring). */
static size_t s_params(uint8_t *out, uint32_t n, uint32_t degree)
{
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.round_id = 4200003;
    for (int i = 0; i < 32; i++) p.round_seed[i] = (uint8_t)(i * 7 + 1);
    p.n = n;
    p.degree = degree;
    p.len = 1000001;
    p.bits = 16;
    cnd_buf_t b;
    cnd_buf_init(&b);
    size_t len = 0;
    if (cnd_secagg_params_fill(&p) == 0 && cnd_secagg_params_encode(&b, &p) == 0) {
        memcpy(out, b.data, b.len);
        len = b.len;
    }
    cnd_buf_free(&b);
    return len;
}

/* Builds a valid message of type t in f->env. */
static void s_build(fx_t *f, Condenser__MsgType t)
{
    memset(f, 0, sizeof *f);
    void *p = NULL;
    uint64_t job = 0;
    uint32_t round = 0;
    switch (t) {
    case CONDENSER__MSG_TYPE__MSG_HELLO:
        condenser__hello__init(&f->hello);
        f->hello.node_name = S("site-a.icu");
        f->hello.role = CONDENSER__ROLE__ROLE_SITE;
        f->hello.identity_key = B(K1, 32);
        f->hello.certificate = B(CERT, sizeof CERT);
        f->caps[0] = S("qat");
        f->caps[1] = S("secagg+");
        f->hello.n_capabilities = 2;
        f->hello.capabilities = f->caps;
        f->hello.min_version = 1;
        f->hello.max_version = 1;
        f->hello.software = S("condenser 0.1.0");
        p = &f->hello;
        break;
    case CONDENSER__MSG_TYPE__MSG_HELLO_ACK:
        condenser__hello_ack__init(&f->hello_ack);
        f->hello_ack.coordinator_name = S("coord");
        f->hello_ack.version = 1;
        f->hello_ack.heartbeat_ms = 2000;
        f->hello_ack.max_message = CND_PROTO_MAX_MSG;
        f->hello_ack.chunk_size = CND_PROTO_CHUNK_MAX;
        f->hello_ack.server_unix_ms = 1764300000000ull;
        p = &f->hello_ack;
        break;
    case CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE:
        condenser__job_announce__init(&f->ja);
        condenser__job_spec__init(&f->spec);
        condenser__student_spec__init(&f->student);
        condenser__recipe__init(&f->recipe);
        condenser__sec_agg_params__init(&f->sa);
        f->spec.job_id = 42;
        f->spec.name = S("fmnist int8 student");
        f->student.arch = S("conv(8,3) relu maxpool(2) flatten dense(10)");
        f->shape[0] = 1;
        f->shape[1] = 28;
        f->shape[2] = 28;
        f->student.n_input_shape = 3;
        f->student.input_shape = f->shape;
        f->student.num_classes = 10;
        f->spec.student = &f->student;
        f->recipe.temperature = 4.0f;
        f->recipe.alpha = 0.7f;
        f->recipe.qat_rounds = 2;
        f->recipe.weight_bits = 8;
        f->recipe.activation_bits = 8;
        f->recipe.local_epochs = 1;
        f->recipe.batch_size = 64;
        f->recipe.learning_rate = 0.01f;
        f->spec.recipe = &f->recipe;
        f->spec.rounds = 10;
        f->spec.sites_per_round = 3;
        f->spec.quorum = 2;
        f->sa.threshold = 2;
        f->sa.ring_bits = 16;
        f->sa.neighbours = 0;
        f->sa.clip = 0.5f;
        f->sa.l2_clip = 10.0f;
        f->sa.sample_cap = 20000;
        f->sa.value_bits = 8;
        f->spec.secagg = &f->sa;
        s_deadlines(&f->dl);
        f->spec.deadlines = &f->dl;
        s_objinfo(&f->teacher, DIG2, 1000000, CND_PROTO_CHUNK_MAX);
        f->spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED;
        f->spec.teacher_shipped = &f->teacher;
        f->ja.spec = &f->spec;
        p = &f->ja;
        job = 42;
        break;
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE:
        condenser__job_response__init(&f->jr);
        f->jr.accept = 1;
        p = &f->jr;
        job = 42;
        break;
    case CONDENSER__MSG_TYPE__MSG_ROUND_START:
        condenser__round_start__init(&f->rs);
        s_objinfo(&f->model, DIG, 300000, CND_PROTO_CHUNK_MAX);
        f->rs.model = &f->model;
        f->rs.participant_id = 1;
        f->rs.participants = 3;
        f->rs.qat = 1;
        s_deadlines(&f->dl);
        f->rs.deadlines = &f->dl;
        f->params_len = s_params(f->params, 3, 0);
        f->rs.secagg_params = B(f->params, f->params_len);
        for (int i = 0; i < 2; i++) {
            condenser__peer_cert__init(&f->pc[i]);
            f->pc[i].participant_id = (uint32_t)(i == 0 ? 0 : 2);
            f->pc[i].node_name = S(i == 0 ? "site-a" : "site-c");
            f->pc[i].certificate = B(CERT, sizeof CERT);
            f->pcp[i] = &f->pc[i];
        }
        f->rs.n_peers = 2;
        f->rs.peers = f->pcp;
        p = &f->rs;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        condenser__chunk__init(&f->chunk);
        f->chunk.kind = CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT;
        f->chunk.object_digest = B(DIG, 32);
        f->chunk.index = 2;
        f->chunk.offset = 2 * 4096;
        f->chunk.data = B(DATA, 4096);
        f->chunk.sha256 = B(DIG2, 32);
        p = &f->chunk;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
        condenser__advertise_keys__init(&f->adv);
        f->adv.participant_id = 1;
        f->adv.advert =
            B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_ADVERT, 4200003, 1, CND_SECAGG_SERVER, 192));
        p = &f->adv;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
        condenser__key_roster__init(&f->roster);
        f->roster.keys = B(
            f->samsg, s_sa_msg(f->samsg, CND_SECAGG_KEYS, 4200003, CND_SECAGG_SERVER, 1, 2 * 213));
        p = &f->roster;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS:
        condenser__share_keys__init(&f->sk);
        f->sk.participant_id = 1;
        f->sk.shares = B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_SHARES, 4200003, 1,
                                            CND_SECAGG_SERVER, 2 * 116));
        p = &f->sk;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
        condenser__shares_relay__init(&f->sr);
        f->sr.shares_for = B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_SHARES_FOR, 4200003,
                                                CND_SECAGG_SERVER, 1, 2 * 116));
        p = &f->sr;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
        condenser__masked_input__init(&f->mi);
        /* the MASKED message of 1,000,001 values x 16 bits: 26 + 2,000,002 bytes */
        s_objinfo(&f->vec, DIG, CND_PROTO_MASKED_HDR + 2000002, CND_PROTO_CHUNK_MAX);
        f->mi.vector = &f->vec;
        f->mi.bit_width = 16;
        f->mi.length = 1000001;
        f->mi.participant_id = 1;
        p = &f->mi;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
        condenser__consistency_request__init(&f->cq);
        f->cq.request = B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_CONSIST_REQ, 4200003,
                                             CND_SECAGG_SERVER, 1, 4 + 1 + 1));
        p = &f->cq;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY:
        condenser__consistency__init(&f->cs);
        f->cs.participant_id = 1;
        f->cs.consistency =
            B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_CONSIST, 4200003, 1, CND_SECAGG_SERVER, 64));
        p = &f->cs;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
        condenser__unmask_request__init(&f->ur);
        f->ur.request = B(
            f->samsg, s_sa_msg(f->samsg, CND_SECAGG_UNMASK_REQ, 4200003, CND_SECAGG_SERVER, 1, 16));
        p = &f->ur;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE:
        condenser__unmask_response__init(&f->ures);
        f->ures.participant_id = 1;
        f->ures.unmask =
            B(f->samsg, s_sa_msg(f->samsg, CND_SECAGG_UNMASK, 4200003, 1, CND_SECAGG_SERVER, 80));
        p = &f->ures;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_METRICS:
        condenser__metrics__init(&f->met);
        f->met.train_ms = 5000;
        p = &f->met;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_ROUND_END:
        condenser__round_end__init(&f->re);
        f->re.outcome = CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED;
        f->re.model_digest = B(DIG, 32);
        f->re.survivors = 3;
        p = &f->re;
        job = 42;
        round = 3;
        break;
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT:
        condenser__heartbeat__init(&f->hb);
        f->hb.unix_ms = 1764300000123ull;
        p = &f->hb;
        break;
    case CONDENSER__MSG_TYPE__MSG_ERROR:
        condenser__error__init(&f->err);
        f->err.code = CONDENSER__ERROR_CODE__ERR_WRONG_PHASE;
        f->err.text = S("masked_input: belongs to phase masked_input, round 3 is in phase share");
        f->err.ref_seq = 77;
        f->err.ref_type = CONDENSER__MSG_TYPE__MSG_MASKED_INPUT;
        p = &f->err;
        break;
    case CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE:
        condenser__device_profile__init(&f->dp);
        for (int i = 0; i < 2; i++) {
            condenser__label__init(&f->lab[i]);
            f->labp[i] = &f->lab[i];
        }
        f->lab[0].key = S("ward");
        f->lab[0].value = S("ICU 3 (Nord)");
        f->lab[1].key = S("line");
        f->lab[1].value = S("");
        f->dp.n_labels = 2;
        f->dp.labels = f->labp;
        f->dp.hardware_class = S("cortex-m7");
        f->dp.cpu_class = S("armv7e-m");
        f->dp.ram_bytes = 512 * 1024;
        f->dp.flash_bytes = 2 * 1024 * 1024;
        f->dp.latency_budget_us = 20000;
        f->dp.running_digest = B(DIG2, 32);
        f->dp.running_sequence = 7;
        f->dp.runtime = S("cnd-runtime 0.1");
        p = &f->dp;
        break;
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER:
        condenser__artifact_offer__init(&f->ao);
        f->ao.rollout_id = 9;
        f->ao.manifest = B(SMAN, SMAN_LEN);
        f->ao.artifact_digest = B(DIG, 32);
        f->ao.artifact_size = 100000;
        f->ao.chunk_size = 16384;
        p = &f->ao;
        break;
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST:
        condenser__artifact_chunk_request__init(&f->acr);
        f->acr.artifact_digest = B(DIG, 32);
        f->acr.offset = 3 * 16384;
        f->acr.length = 16384;
        p = &f->acr;
        break;
    case CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT:
        condenser__activation_report__init(&f->ar);
        f->ar.rollout_id = 9;
        f->ar.artifact_digest = B(DIG, 32);
        f->ar.state = CONDENSER__ACTIVATION_STATE__ACT_HEALTHY;
        f->ar.self_test_passed = 1;
        f->ar.latency_us = 850;
        f->ar.active_digest = B(DIG, 32);
        f->ar.active_sequence = 8;
        p = &f->ar;
        break;
    case CONDENSER__MSG_TYPE__MSG_ROLLBACK:
        condenser__rollback__init(&f->rb);
        f->rb.rollout_id = 9;
        f->rb.manifest = B(SRB, SRB_LEN);
        f->rb.target_digest = B(DIG2, 32);
        f->rb.reason = S("canary failures 3/10 above 20%");
        p = &f->rb;
        break;
    default: break;
    }
    cnd_proto_envelope_init(&f->env, t, p, job, round, "site-b", 1000 + (uint64_t)t);
}

#endif
