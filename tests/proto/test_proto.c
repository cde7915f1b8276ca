/*
 * test_proto.c: every message type round-trips through encode/decode bit for bit; every
 * validation rule rejects its bad field with the right wire code and a detail naming the field;
 * decode limits (frame size, memory budget, malformed bytes, duplicate oneof members); the replay
 * window against a naive model; round/phase, role and sender checks, and cnd_proto_accept() that
 * chains them.
 */
#include "check.h"
#include "proto.h"
#include "test_proto_fixture.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Packs without validation, as a hostile peer would. Caller frees. */
static uint8_t *s_raw(const Condenser__Envelope *e, size_t *n)
{
    *n = condenser__envelope__get_packed_size(e);
    uint8_t *b = malloc(*n ? *n : 1);
    condenser__envelope__pack(e, b);
    return b;
}

static void test_round_trips(void)
{
    fx_t f;
    cnd_buf_t reused;
    cnd_buf_init(&reused);
    for (int t = 1; t <= CONDENSER__MSG_TYPE__MSG_CONSISTENCY; t++) {
        s_build(&f, (Condenser__MsgType)t);
        uint8_t *buf = NULL;
        size_t n = 0;
        int rc = cnd_proto_encode(&buf, &n, &f.env);
        /* encoding into one reused buffer gives the same bytes */
        CHECK_EQ_INT(cnd_proto_encode_buf(&reused, &f.env), 0);
        CHECK(buf && reused.len == n && memcmp(reused.data, buf, n) == 0);
        if (rc) fprintf(stderr, "encode %s: %s\n", cnd_proto_type_name(t), cnd_err_detail());
        CHECK_EQ_INT(rc, 0);
        if (rc) continue;
        cnd_proto_msg_t *m = NULL;
        cnd_proto_reject_t rej;
        rc = cnd_proto_decode(&m, &rej, buf, n);
        if (rc) fprintf(stderr, "decode %s: %s\n", cnd_proto_type_name(t), cnd_err_detail());
        CHECK_EQ_INT(rc, 0);
        if (!rc) {
            const Condenser__Envelope *e = m->env;
            CHECK_EQ_INT(e->version, CND_PROTO_VERSION);
            CHECK_EQ_INT(e->type, t);
            CHECK_EQ_INT((int)e->payload_case, t + 15);
            CHECK_EQ_INT(e->seq, 1000 + t);
            CHECK_EQ_INT(e->job_id, f.env.job_id);
            CHECK_EQ_INT(e->round, f.env.round);
            CHECK(e->sender.len == 6 && memcmp(e->sender.data, "site-b", 6) == 0);
            CHECK_EQ_INT(m->wire_len, n);
            /* protobuf-c packs deterministically in field order: the decoded message must
             * re-encode to exactly the same bytes, so no field was lost or altered. */
            uint8_t *again = NULL;
            size_t n2 = 0;
            CHECK_EQ_INT(cnd_proto_encode(&again, &n2, e), 0);
            CHECK(n2 == n && again && memcmp(again, buf, n) == 0);
            free(again);
        }
        cnd_proto_msg_destroy(&m);
        CHECK(m == NULL);
        free(buf);
    }

    /* an invalid message leaves the reused buffer empty */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_METRICS);
    f.met.train_ms = 0x80000001u;
    CHECK_EQ_INT(cnd_proto_encode_buf(&reused, &f.env), CND_ERANGE);
    CHECK_EQ_INT(reused.len, 0);
    cnd_buf_free(&reused);

    /* Spot checks of decoded values for the structurally richest messages. */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE);
    uint8_t *buf;
    size_t n;
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    cnd_proto_msg_t *m;
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, buf, n), 0);
    const Condenser__JobSpec *js = m->env->job_announce->spec;
    CHECK_EQ_INT(js->job_id, 42);
    CHECK_NEAR(js->recipe->temperature, 4.0, 0);
    CHECK_NEAR(js->recipe->alpha, 0.7f, 0);
    CHECK_EQ_INT(js->student->input_shape[1], 28);
    CHECK_EQ_INT(js->secagg->sample_cap, 20000);
    CHECK_EQ_INT(js->teacher_case, CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED);
    CHECK_EQ_INT(js->teacher_shipped->total_size, 1000000);
    CHECK_EQ_INT(js->deadlines->masked_input_ms, 120000);
    char text[64];
    CHECK_EQ_INT(cnd_proto_text(text, sizeof text, js->name), 0);
    CHECK(strcmp(text, "fmnist int8 student") == 0);
    cnd_proto_msg_destroy(&m);
    free(buf);

    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, buf, n), 0);
    const Condenser__RoundStart *rs = m->env->round_start;
    CHECK_EQ_INT(rs->n_peers, 2);
    CHECK_EQ_INT(rs->peers[1]->participant_id, 2);
    CHECK(rs->secagg_params.len == f.params_len &&
          memcmp(rs->secagg_params.data, f.params, f.params_len) == 0);
    cnd_secagg_params_t sp;
    CHECK_EQ_INT(cnd_secagg_params_decode(&sp, rs->secagg_params.data, rs->secagg_params.len), 0);
    CHECK_EQ_INT(sp.n, 3);
    CHECK_EQ_INT(sp.round_id, 4200003);
    cnd_proto_msg_destroy(&m);
    free(buf);

    /* SecAgg+ payloads carry the crypto/ message byte for byte. */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE);
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, buf, n), 0);
    CHECK(m->env->unmask_response->unmask.len == 101 &&
          memcmp(m->env->unmask_response->unmask.data, f.samsg, 101) == 0);
    cnd_proto_msg_destroy(&m);
    free(buf);

    /* The teacher may instead be a site-local name. */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE);
    f.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    f.spec.teacher_local = S("resnet18-local");
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, buf, n), 0);
    CHECK_EQ_INT(m->env->job_announce->spec->teacher_case,
                 CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL);
    cnd_proto_msg_destroy(&m);
    free(buf);
    cnd_proto_msg_destroy(&m); /* idempotent */
    cnd_proto_msg_destroy(NULL);
}

/* --- one bad field at a time --------------------------------------------------------------- */

typedef struct {
    Condenser__MsgType type;
    const char *field; /* must appear in the detail message */
    Condenser__ErrorCode code;
    void (*mutate)(fx_t *f);
} bad_t;

static uint8_t ZERO32[32];
static uint8_t NUL_NAME[] = {'s', 'i', 't', 0, 'e'};
static uint8_t BAD_UTF8[] = {'o', 'k', 0xc3, 0x28};
static uint8_t OVERLONG[] = {0xc0, 0xaf};
static uint8_t CTRL[] = {'a', 0x1b, '[', '2', 'J'};
static uint32_t SHAPE2[] = {1, 28};

#define MUT(name, body)                                                                            \
    static void name(fx_t *f)                                                                      \
    {                                                                                              \
        body;                                                                                      \
    }
/* envelope */
MUT(m_ver0, f->env.version = 0)
MUT(m_ver2, f->env.version = 2)
MUT(m_type0, f->env.type = 0)
MUT(m_type99, f->env.type = 99)
MUT(m_type_mismatch, f->env.type = CONDENSER__MSG_TYPE__MSG_HELLO)
MUT(m_no_payload, f->env.payload_case = 0)
MUT(m_sender_empty, f->env.sender = B("", 0))
MUT(m_sender_nul, f->env.sender = B(NUL_NAME, sizeof NUL_NAME))
MUT(m_sender_space, f->env.sender = S("site b"))
MUT(m_sender_long, f->env.sender = B(BIG, 64))
MUT(m_sender_dash, f->env.sender = S("-site"))
MUT(m_seq0, f->env.seq = 0)
MUT(m_job0, f->env.job_id = 0)
MUT(m_round0, f->env.round = 0)
MUT(m_round_big, f->env.round = CND_PROTO_MAX_ROUNDS + 1)
/* hello */
MUT(m_h_name_empty, f->hello.node_name = B("", 0))
MUT(m_h_role0, f->hello.role = 0)
MUT(m_h_role9, f->hello.role = 9)
MUT(m_h_key31, f->hello.identity_key = B(K1, 31))
MUT(m_h_key33, f->hello.identity_key = B(BIG, 33))
MUT(m_h_key_zero, f->hello.identity_key = B(ZERO32, 32))
MUT(m_h_cert_empty, f->hello.certificate = B("", 0))
MUT(m_h_cert_notder, f->hello.certificate = B(MAN, sizeof MAN))
MUT(m_h_cert_big, f->hello.certificate = B(BIG, CND_PROTO_CERT_MAX + 1))
MUT(m_h_caps_many, f->hello.n_capabilities = CND_PROTO_CAPS_MAX + 1)
MUT(m_h_cap_upper, f->caps[1] = S("QAT"))
MUT(m_h_cap_dup, f->caps[1] = S("qat"))
MUT(m_h_minver0, f->hello.min_version = 0)
MUT(m_h_maxver, f->hello.min_version = 3; f->hello.max_version = 2)
MUT(m_h_sw_ctrl, f->hello.software = B(CTRL, sizeof CTRL))
MUT(m_h_sw_utf8, f->hello.software = B(BAD_UTF8, sizeof BAD_UTF8))
MUT(m_h_sw_overlong, f->hello.software = B(OVERLONG, sizeof OVERLONG))
/* hello_ack */
MUT(m_ha_hb0, f->hello_ack.heartbeat_ms = 0)
MUT(m_ha_chunk, f->hello_ack.chunk_size = 100)
MUT(m_ha_maxmsg, f->hello_ack.max_message = CND_PROTO_MAX_MSG + 1)
/* job */
MUT(m_j_nospec, f->ja.spec = NULL)
MUT(m_j_id_mismatch, f->spec.job_id = 43)
MUT(m_j_arch_empty, f->student.arch = B("", 0))
MUT(m_j_arch_utf8, f->student.arch = B(BAD_UTF8, sizeof BAD_UTF8))
MUT(m_j_shape2, f->student.n_input_shape = 2; f->student.input_shape = SHAPE2)
MUT(m_j_shape0, f->shape[2] = 0)
MUT(m_j_classes1, f->student.num_classes = 1)
MUT(m_j_norecipe, f->spec.recipe = NULL)
MUT(m_j_t0, f->recipe.temperature = 0)
MUT(m_j_tnan, f->recipe.temperature = NAN)
MUT(m_j_alpha, f->recipe.alpha = 1.5f)
MUT(m_j_qat, f->recipe.qat_rounds = 11)
MUT(m_j_wbits, f->recipe.weight_bits = 9)
MUT(m_j_abits, f->recipe.activation_bits = 1)
MUT(m_j_epochs0, f->recipe.local_epochs = 0)
MUT(m_j_lr_inf, f->recipe.learning_rate = INFINITY)
MUT(m_j_rounds0, f->spec.rounds = 0)
MUT(m_j_sites1, f->spec.sites_per_round = 1)
MUT(m_j_t1, f->sa.threshold = 1)
MUT(m_j_t_over, f->sa.threshold = 4)
MUT(m_j_quorum, f->spec.quorum = 1)
MUT(m_j_quorum_over, f->spec.quorum = 4)
MUT(m_j_ring33, f->sa.ring_bits = 33)
MUT(m_j_neigh, f->spec.sites_per_round = 10; f->sa.threshold = 4; f->spec.quorum = 4;
    f->sa.neighbours = 3) /* odd degree: crypto/ refuses */
MUT(m_j_minority, f->spec.sites_per_round = 10; f->sa.threshold = 2; f->spec.quorum = 4;
    f->sa.neighbours = 4) /* t = 2 is no majority of k = 5 */
MUT(m_j_clip0, f->sa.clip = 0)
MUT(m_j_l2neg, f->sa.l2_clip = -1)
MUT(m_j_cap0, f->sa.sample_cap = 0)
MUT(m_j_vbits0, f->sa.value_bits = 0)
MUT(m_j_vbits25, f->sa.value_bits = 25)
MUT(m_j_nosa, f->spec.secagg = NULL)
MUT(m_j_nodl, f->spec.deadlines = NULL)
MUT(m_j_dl_short, f->dl.share_ms = 50)
MUT(m_j_dl_long, f->dl.unmask_ms = CND_PROTO_DEADLINE_MAX_MS + 1)
MUT(m_j_noteacher, f->spec.teacher_case = 0)
MUT(m_j_teacher_local, f->spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    f->spec.teacher_local = S("../../etc/passwd"))
MUT(m_j_teacher_count, f->teacher.chunk_count = 5)
MUT(m_j_tformat, f->spec.teacher_format = 7)
MUT(m_j_onnx_noprep, f->spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX)
MUT(m_j_onnx_prep_ctrl, f->spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
    f->spec.teacher_preprocess = B(CTRL, sizeof CTRL))
MUT(m_j_onnx_prep_big, f->spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
    f->spec.teacher_preprocess = B(BIG, CND_PROTO_PREP_MAX + 1))
MUT(m_j_onnx_local, f->spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
    f->spec.teacher_preprocess = S("scale=1/255");
    f->spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    f->spec.teacher_local = S("vendor"))
MUT(m_j_prep_cnd, f->spec.teacher_preprocess = S("scale=1/255"))
/* job_response */
MUT(m_jr_noreason, f->jr.accept = 0)
/* round_start */
MUT(m_rs_digest, f->model.digest = B(DIG, 31))
MUT(m_rs_count, f->model.chunk_count = 1)
MUT(m_rs_chunk_big, f->model.chunk_size = CND_PROTO_CHUNK_MAX + 1; f->model.chunk_count = 2)
MUT(m_rs_total0, f->model.total_size = 0; f->model.chunk_count = 0)
MUT(m_rs_total_big, f->model.total_size = CND_PROTO_OBJECT_MAX + 1)
MUT(m_rs_pid, f->rs.participant_id = 3)
MUT(m_rs_parts1, f->rs.participants = 1)
MUT(m_rs_parts_big, f->rs.participants = CND_PROTO_MAX_PARTICIPANTS + 1)
MUT(m_rs_nomodel, f->rs.model = NULL)
MUT(m_rs_params_empty, f->rs.secagg_params = B("", 0))
MUT(m_rs_params_junk, f->rs.secagg_params = B(MAN, 68))
MUT(m_rs_params_cut, f->rs.secagg_params.len = 67)
MUT(m_rs_params_n, f->rs.participants = 4)
MUT(m_rs_nb_count, f->rs.n_peers = 1)
MUT(m_rs_nb_none, f->rs.n_peers = 0)
MUT(m_rs_nb_many, f->rs.n_peers = CND_PROTO_MAX_PEERS + 1;
    f->pc[0].certificate = B(CERT, 64)) /* the frame stays under its size and memory limits */
MUT(m_rs_nb_self, f->pc[1].participant_id = 1)
MUT(m_rs_nb_out, f->pc[1].participant_id = 3)
MUT(m_rs_nb_dup, f->pc[1].participant_id = 0)
MUT(m_rs_nb_name, f->pc[0].node_name = S("site a"))
MUT(m_rs_nb_cert, f->pc[1].certificate = B(MAN, 10))
MUT(m_rs_cand_big, f->rs.candidates = CND_PROTO_MAX_CANDIDATES + 1)
MUT(m_rs_cand_qat, f->rs.candidates = 3; f->rs.qat = 1)
/* chunk */
MUT(m_c_kind0, f->chunk.kind = 0)
MUT(m_c_kind9, f->chunk.kind = 9)
MUT(m_c_digest, f->chunk.object_digest = B(DIG, 16))
MUT(m_c_data_empty, f->chunk.data = B("", 0))
MUT(m_c_data_big, f->chunk.data = B(BIG, CND_PROTO_CHUNK_MAX + 1))
MUT(m_c_sha, f->chunk.sha256 = B(BIG, 33))
MUT(m_c_offset, f->chunk.offset = 100)
/* SecAgg+ phase messages: the carried crypto/ message's header against the envelope */
MUT(m_a_pid_big, f->adv.participant_id = CND_PROTO_MAX_PARTICIPANTS)
MUT(m_a_from, f->adv.participant_id = 2)
MUT(m_a_short, f->adv.advert.len = 20)
MUT(m_a_empty, f->adv.advert = B("", 0))
MUT(m_a_magic, f->samsg[0] = 'X')
MUT(m_a_type, s_sa_msg(f->samsg, CND_SECAGG_SHARES, 4200003, 1, CND_SECAGG_SERVER, 0))
MUT(m_a_to, s_sa_msg(f->samsg, CND_SECAGG_ADVERT, 4200003, 1, 2, 0))
MUT(m_a_big, f->adv.advert = B(BIG, CND_PROTO_SECAGG_MAX + 1))
MUT(m_kr_from, s_sa_msg(f->samsg, CND_SECAGG_KEYS, 4200003, 0, 1, 0))
MUT(m_kr_to_srv,
    s_sa_msg(f->samsg, CND_SECAGG_KEYS, 4200003, CND_SECAGG_SERVER, CND_SECAGG_SERVER, 0))
MUT(m_kr_type, s_sa_msg(f->samsg, CND_SECAGG_SHARES_FOR, 4200003, CND_SECAGG_SERVER, 1, 0))
MUT(m_kr_empty, f->roster.keys = B("", 0))
MUT(m_sk_type, s_sa_msg(f->samsg, CND_SECAGG_ADVERT, 4200003, 1, CND_SECAGG_SERVER, 0))
MUT(m_sk_from, f->sk.participant_id = 0)
MUT(m_sr_type, s_sa_msg(f->samsg, CND_SECAGG_KEYS, 4200003, CND_SECAGG_SERVER, 1, 0))
MUT(m_mi_size, f->vec.total_size = 2000001; f->vec.chunk_count = 8)
MUT(m_mi_bits0, f->mi.bit_width = 0)
MUT(m_mi_bits33, f->mi.bit_width = 33)
MUT(m_mi_len0, f->mi.length = 0)
MUT(m_mi_len_big, f->mi.length = (uint64_t)UINT32_MAX + 1)
MUT(m_mi_novec, f->mi.vector = NULL)
MUT(m_mi_pid, f->mi.participant_id = 70000)
MUT(m_cq_type, s_sa_msg(f->samsg, CND_SECAGG_CONSIST, 4200003, CND_SECAGG_SERVER, 1, 0))
MUT(m_cq_from, s_sa_msg(f->samsg, CND_SECAGG_CONSIST_REQ, 4200003, 2, 1, 0))
MUT(m_cs_from, f->cs.participant_id = 2)
MUT(m_cs_type, s_sa_msg(f->samsg, CND_SECAGG_CONSIST_REQ, 4200003, 1, CND_SECAGG_SERVER, 0))
MUT(m_cs_big, f->cs.consistency = B(BIG, CND_PROTO_SECAGG_MAX + 1))
MUT(m_ur_type, s_sa_msg(f->samsg, CND_SECAGG_UNMASK, 4200003, CND_SECAGG_SERVER, 1, 0))
MUT(m_ur_empty, f->ur.request = B("", 0))
MUT(m_ures_from, s_sa_msg(f->samsg, CND_SECAGG_UNMASK, 4200003, 0, CND_SECAGG_SERVER, 0))
MUT(m_ures_to, s_sa_msg(f->samsg, CND_SECAGG_UNMASK, 4200003, 1, 0, 0))
/* metrics */
MUT(m_met_ms, f->met.train_ms = 0x80000001u)
/* round_end */
MUT(m_re_nodig, f->re.model_digest = B("", 0))
MUT(m_re_fail_noreason, f->re.outcome = CONDENSER__ROUND_OUTCOME__OUTCOME_FAILED)
MUT(m_re_outcome0, f->re.outcome = 0)
MUT(m_re_surv1, f->re.survivors = 1)
/* error */
MUT(m_e_code0, f->err.code = 0)
MUT(m_e_code99, f->err.code = 99)
MUT(m_e_text_empty, f->err.text = B("", 0))
MUT(m_e_text_ctrl, f->err.text = B(CTRL, sizeof CTRL))
MUT(m_e_text_big, f->err.text = B(BIG, CND_PROTO_TEXT_MAX + 1))
MUT(m_e_reftype, f->err.ref_type = 50)
/* device_profile */
MUT(m_dp_dupkey, f->lab[1].key = S("ward"))
MUT(m_dp_key_upper, f->lab[0].key = S("Ward"))
MUT(m_dp_val_big, f->lab[0].value = B(BIG, CND_PROTO_LABEL_VALUE_MAX + 1))
MUT(m_dp_many, f->dp.n_labels = CND_PROTO_LABELS_MAX + 1)
MUT(m_dp_hw, f->dp.hardware_class = B("", 0))
MUT(m_dp_ram0, f->dp.ram_bytes = 0)
MUT(m_dp_flash0, f->dp.flash_bytes = 0)
MUT(m_dp_dig16, f->dp.running_digest = B(DIG, 16))
MUT(m_dp_seq_nodig, f->dp.running_digest = B("", 0))
/* artifact_offer */
MUT(m_ao_rollout0, f->ao.rollout_id = 0)
MUT(m_ao_man_empty, f->ao.manifest = B("", 0))
MUT(m_ao_man_big, f->ao.manifest = B(BIG, CND_PROTO_MANIFEST_MAX + 1))
MUT(m_ao_man_junk, f->ao.manifest = B(MAN, sizeof MAN))
MUT(m_ao_man_cut, f->ao.manifest.len = SMAN_LEN - 1)
MUT(m_ao_man_body, f->ao.manifest = B(SRB, SRB_LEN); f->ao.artifact_digest = B(DIG2, 32);
    f->ao.artifact_size = 90000; SRB[12] ^= 0x01) /* breaks the body's magic; restored below */
MUT(m_ao_digest, f->ao.artifact_digest = B(DIG2, 32))
MUT(m_ao_size, f->ao.artifact_size = 100001)
MUT(m_ao_rollback, f->ao.rollback = 1)
MUT(m_ao_size0, f->ao.artifact_size = 0)
MUT(m_ao_chunk, f->ao.chunk_size = 512)
MUT(m_ao_url_ftp, f->ao.artifact_url = B("ftp://cache/a", 13))
MUT(m_ao_url_slash, f->ao.artifact_url = B("http://cache/a/", 15))
MUT(m_ao_url_nohost, f->ao.artifact_url = B("https:///a", 10))
MUT(m_ao_url_space, f->ao.artifact_url = B("http://cache/a b", 16))
MUT(m_ao_url_query, f->ao.artifact_url = B("http://cache/a?x=1", 18))
static uint8_t URLLONG[CND_PROTO_URL_MAX + 1];
MUT(m_ao_url_long, memset(URLLONG, 'a', sizeof URLLONG); memcpy(URLLONG, "http://", 7);
    f->ao.artifact_url = B(URLLONG, sizeof URLLONG))
/* artifact_chunk_request */
MUT(m_acr_len0, f->acr.length = 0)
MUT(m_acr_len_big, f->acr.length = CND_PROTO_CHUNK_MAX + 1)
MUT(m_acr_dig, f->acr.artifact_digest = B("", 0))
MUT(m_acr_off, f->acr.offset = CND_PROTO_OBJECT_MAX)
/* activation_report */
MUT(m_ar_state0, f->ar.state = 0)
MUT(m_ar_fail_noreason, f->ar.state = CONDENSER__ACTIVATION_STATE__ACT_FAILED)
MUT(m_ar_healthy_notest, f->ar.self_test_passed = 0)
MUT(m_ar_seq_nodig, f->ar.active_digest = B("", 0))
MUT(m_ar_dig, f->ar.artifact_digest = B(DIG, 31))
/* rollback */
MUT(m_rb_target, f->rb.target_digest = B("", 0))
MUT(m_rb_noflag, f->rb.manifest = B(SMAN, SMAN_LEN); f->rb.target_digest = B(DIG, 32))
MUT(m_rb_digest, f->rb.target_digest = B(DIG, 32))
MUT(m_rb_rollout0, f->rb.rollout_id = 0)
MUT(m_rb_reason_ctrl, f->rb.reason = B(CTRL, sizeof CTRL))

#define T(x) CONDENSER__MSG_TYPE__MSG_##x
#define BAD  CONDENSER__ERROR_CODE__ERR_BAD_FIELD
#define BIGC CONDENSER__ERROR_CODE__ERR_TOO_LARGE
static const bad_t s_bad[] = {
    {T(HEARTBEAT), "envelope.version", CONDENSER__ERROR_CODE__ERR_BAD_VERSION, m_ver0},
    {T(HEARTBEAT), "envelope.version", CONDENSER__ERROR_CODE__ERR_BAD_VERSION, m_ver2},
    {T(HEARTBEAT), "envelope.type", BAD, m_type0},
    {T(HEARTBEAT), "envelope.type", BAD, m_type99},
    {T(HEARTBEAT), "envelope.payload", BAD, m_type_mismatch},
    {T(HEARTBEAT), "envelope.payload", BAD, m_no_payload},
    {T(HEARTBEAT), "envelope.sender", BAD, m_sender_empty},
    {T(HEARTBEAT), "envelope.sender", BAD, m_sender_nul},
    {T(HEARTBEAT), "envelope.sender", BAD, m_sender_space},
    {T(HEARTBEAT), "envelope.sender", BIGC, m_sender_long},
    {T(HEARTBEAT), "envelope.sender", BAD, m_sender_dash},
    {T(HEARTBEAT), "envelope.seq", BAD, m_seq0},
    {T(ROUND_START), "envelope.job_id", BAD, m_job0},
    {T(MASKED_INPUT), "envelope.round", BAD, m_round0},
    {T(METRICS), "envelope.round", BIGC, m_round_big},
    {T(JOB_RESPONSE), "envelope.job_id", BAD, m_job0},
    {T(CHUNK), "envelope.round", BAD, m_round0},
    {T(HELLO), "hello.node_name", BAD, m_h_name_empty},
    {T(HELLO), "hello.role", BAD, m_h_role0},
    {T(HELLO), "hello.role", BAD, m_h_role9},
    {T(HELLO), "hello.identity_key", BAD, m_h_key31},
    {T(HELLO), "hello.identity_key", BIGC, m_h_key33},
    {T(HELLO), "hello.identity_key", BAD, m_h_key_zero},
    {T(HELLO), "hello.certificate", BAD, m_h_cert_empty},
    {T(HELLO), "hello.certificate", BAD, m_h_cert_notder},
    {T(HELLO), "hello.certificate", BIGC, m_h_cert_big},
    {T(HELLO), "hello.capabilities", BIGC, m_h_caps_many},
    {T(HELLO), "hello.capabilities[1]", BAD, m_h_cap_upper},
    {T(HELLO), "hello.capabilities[1]", BAD, m_h_cap_dup},
    {T(HELLO), "hello.min_version", BAD, m_h_minver0},
    {T(HELLO), "hello.max_version", BAD, m_h_maxver},
    {T(HELLO), "hello.software", BAD, m_h_sw_ctrl},
    {T(HELLO), "hello.software", BAD, m_h_sw_utf8},
    {T(HELLO), "hello.software", BAD, m_h_sw_overlong},
    {T(HELLO_ACK), "hello_ack.heartbeat_ms", BAD, m_ha_hb0},
    {T(HELLO_ACK), "hello_ack.chunk_size", BAD, m_ha_chunk},
    {T(HELLO_ACK), "hello_ack.max_message", BIGC, m_ha_maxmsg},
    {T(JOB_ANNOUNCE), "job_announce.spec", BAD, m_j_nospec},
    {T(JOB_ANNOUNCE), "job_spec.job_id", BAD, m_j_id_mismatch},
    {T(JOB_ANNOUNCE), "job_spec.student.arch", BAD, m_j_arch_empty},
    {T(JOB_ANNOUNCE), "job_spec.student.arch", BAD, m_j_arch_utf8},
    {T(JOB_ANNOUNCE), "job_spec.student.input_shape", BAD, m_j_shape2},
    {T(JOB_ANNOUNCE), "job_spec.student.input_shape[2]", BAD, m_j_shape0},
    {T(JOB_ANNOUNCE), "job_spec.student.num_classes", BAD, m_j_classes1},
    {T(JOB_ANNOUNCE), "job_spec.recipe", BAD, m_j_norecipe},
    {T(JOB_ANNOUNCE), "job_spec.recipe.temperature", BAD, m_j_t0},
    {T(JOB_ANNOUNCE), "job_spec.recipe.temperature", BAD, m_j_tnan},
    {T(JOB_ANNOUNCE), "job_spec.recipe.alpha", BAD, m_j_alpha},
    {T(JOB_ANNOUNCE), "job_spec.recipe.qat_rounds", BIGC, m_j_qat},
    {T(JOB_ANNOUNCE), "job_spec.recipe.weight_bits", BIGC, m_j_wbits},
    {T(JOB_ANNOUNCE), "job_spec.recipe.activation_bits", BAD, m_j_abits},
    {T(JOB_ANNOUNCE), "job_spec.recipe.local_epochs", BAD, m_j_epochs0},
    {T(JOB_ANNOUNCE), "job_spec.recipe.learning_rate", BAD, m_j_lr_inf},
    {T(JOB_ANNOUNCE), "job_spec.rounds", BAD, m_j_rounds0},
    {T(JOB_ANNOUNCE), "job_spec.sites_per_round", BAD, m_j_sites1},
    {T(JOB_ANNOUNCE), "job_spec.secagg.threshold", BAD, m_j_t1},
    {T(JOB_ANNOUNCE), "job_spec.secagg.threshold", BIGC, m_j_t_over},
    {T(JOB_ANNOUNCE), "job_spec.quorum", BAD, m_j_quorum},
    {T(JOB_ANNOUNCE), "job_spec.quorum", BIGC, m_j_quorum_over},
    {T(JOB_ANNOUNCE), "job_spec.secagg.ring_bits", BIGC, m_j_ring33},
    {T(JOB_ANNOUNCE), "job_spec.secagg (threshold 4, neighbours 3", BAD, m_j_neigh},
    {T(JOB_ANNOUNCE), "job_spec.secagg (threshold 2, neighbours 4", BAD, m_j_minority},
    {T(JOB_ANNOUNCE), "job_spec.secagg.clip", BAD, m_j_clip0},
    {T(JOB_ANNOUNCE), "job_spec.secagg.l2_clip", BAD, m_j_l2neg},
    {T(JOB_ANNOUNCE), "job_spec.secagg.sample_cap", BAD, m_j_cap0},
    {T(JOB_ANNOUNCE), "job_spec.secagg.value_bits", BAD, m_j_vbits0},
    {T(JOB_ANNOUNCE), "job_spec.secagg.value_bits", BIGC, m_j_vbits25},
    {T(JOB_ANNOUNCE), "job_spec.secagg", BAD, m_j_nosa},
    {T(JOB_ANNOUNCE), "job_spec.deadlines", BAD, m_j_nodl},
    {T(JOB_ANNOUNCE), "job_spec.deadlines.share_ms", BAD, m_j_dl_short},
    {T(JOB_ANNOUNCE), "job_spec.deadlines.unmask_ms", BIGC, m_j_dl_long},
    {T(JOB_ANNOUNCE), "job_spec.teacher", BAD, m_j_noteacher},
    {T(JOB_ANNOUNCE), "job_spec.teacher_local", BAD, m_j_teacher_local},
    {T(JOB_ANNOUNCE), "job_spec.teacher_shipped.chunk_count", BAD, m_j_teacher_count},
    {T(JOB_ANNOUNCE), "job_spec.teacher_format", BAD, m_j_tformat},
    {T(JOB_ANNOUNCE), "job_spec.teacher_preprocess", BAD, m_j_onnx_noprep},
    {T(JOB_ANNOUNCE), "job_spec.teacher_preprocess", BAD, m_j_onnx_prep_ctrl},
    {T(JOB_ANNOUNCE), "job_spec.teacher_preprocess", BIGC, m_j_onnx_prep_big},
    {T(JOB_ANNOUNCE), "job_spec.teacher_format", BAD, m_j_onnx_local},
    {T(JOB_ANNOUNCE), "job_spec.teacher_preprocess", BAD, m_j_prep_cnd},
    {T(JOB_RESPONSE), "job_response.reason", BAD, m_jr_noreason},
    {T(ROUND_START), "round_start.model.digest", BAD, m_rs_digest},
    {T(ROUND_START), "round_start.model.chunk_count", BAD, m_rs_count},
    {T(ROUND_START), "round_start.model.chunk_size", BIGC, m_rs_chunk_big},
    {T(ROUND_START), "round_start.model.total_size", BAD, m_rs_total0},
    {T(ROUND_START), "round_start.model.total_size", BIGC, m_rs_total_big},
    {T(ROUND_START), "round_start.participant_id", BAD, m_rs_pid},
    {T(ROUND_START), "round_start.participants", BAD, m_rs_parts1},
    {T(ROUND_START), "round_start.participants", BIGC, m_rs_parts_big},
    {T(ROUND_START), "round_start.candidates", BIGC, m_rs_cand_big},
    {T(ROUND_START), "round_start.qat", BAD, m_rs_cand_qat},
    {T(ROUND_START), "round_start.model", BAD, m_rs_nomodel},
    {T(ROUND_START), "round_start.secagg_params", BAD, m_rs_params_empty},
    {T(ROUND_START), "round_start.secagg_params", BAD, m_rs_params_junk},
    {T(ROUND_START), "round_start.secagg_params", BAD, m_rs_params_cut},
    {T(ROUND_START), "round_start.secagg_params", BAD, m_rs_params_n},
    {T(ROUND_START), "round_start.peers", BAD, m_rs_nb_count},
    {T(ROUND_START), "round_start.peers", BAD, m_rs_nb_none},
    {T(ROUND_START), "round_start.peers", BIGC, m_rs_nb_many},
    {T(ROUND_START), "round_start.peers[1].participant_id", BAD, m_rs_nb_self},
    {T(ROUND_START), "round_start.peers[1].participant_id", BAD, m_rs_nb_out},
    {T(ROUND_START), "round_start.peers[1].participant_id", BAD, m_rs_nb_dup},
    {T(ROUND_START), "round_start.peers[0].node_name", BAD, m_rs_nb_name},
    {T(ROUND_START), "round_start.peers[1].certificate", BAD, m_rs_nb_cert},
    {T(CHUNK), "chunk.kind", BAD, m_c_kind0},
    {T(CHUNK), "chunk.kind", BAD, m_c_kind9},
    {T(CHUNK), "chunk.object_digest", BAD, m_c_digest},
    {T(CHUNK), "chunk.data", BAD, m_c_data_empty},
    {T(CHUNK), "chunk.data", BIGC, m_c_data_big},
    {T(CHUNK), "chunk.sha256", BIGC, m_c_sha},
    {T(CHUNK), "chunk.offset", BAD, m_c_offset},
    {T(ADVERTISE_KEYS), "advertise_keys.participant_id", BIGC, m_a_pid_big},
    {T(ADVERTISE_KEYS), "advertise_keys.advert: header sender", BAD, m_a_from},
    {T(ADVERTISE_KEYS), "advertise_keys.advert", BAD, m_a_short},
    {T(ADVERTISE_KEYS), "advertise_keys.advert: missing", BAD, m_a_empty},
    {T(ADVERTISE_KEYS), "advertise_keys.advert: not a secure", BAD, m_a_magic},
    {T(ADVERTISE_KEYS), "advertise_keys.advert: message type", BAD, m_a_type},
    {T(ADVERTISE_KEYS), "advertise_keys.advert: addressed", BAD, m_a_to},
    {T(ADVERTISE_KEYS), "advertise_keys.advert", BIGC, m_a_big},
    {T(KEY_ROSTER), "key_roster.keys: header sender", BAD, m_kr_from},
    {T(KEY_ROSTER), "key_roster.keys: addressed to the coordinator", BAD, m_kr_to_srv},
    {T(KEY_ROSTER), "key_roster.keys: message type", BAD, m_kr_type},
    {T(KEY_ROSTER), "key_roster.keys", BAD, m_kr_empty},
    {T(SHARE_KEYS), "share_keys.shares: message type", BAD, m_sk_type},
    {T(SHARE_KEYS), "share_keys.shares: header sender", BAD, m_sk_from},
    {T(SHARES_RELAY), "shares_relay.shares_for: message type", BAD, m_sr_type},
    {T(MASKED_INPUT), "masked_input.vector.total_size", BAD, m_mi_size},
    {T(MASKED_INPUT), "masked_input.bit_width", BAD, m_mi_bits0},
    {T(MASKED_INPUT), "masked_input.bit_width", BIGC, m_mi_bits33},
    {T(MASKED_INPUT), "masked_input.length", BAD, m_mi_len0},
    {T(MASKED_INPUT), "masked_input.length", BIGC, m_mi_len_big},
    {T(MASKED_INPUT), "masked_input.vector", BAD, m_mi_novec},
    {T(MASKED_INPUT), "masked_input.participant_id", BIGC, m_mi_pid},
    {T(CONSISTENCY_REQUEST), "consistency_request.request: message type", BAD, m_cq_type},
    {T(CONSISTENCY_REQUEST), "consistency_request.request: header sender", BAD, m_cq_from},
    {T(CONSISTENCY), "consistency.consistency: header sender", BAD, m_cs_from},
    {T(CONSISTENCY), "consistency.consistency: message type", BAD, m_cs_type},
    {T(CONSISTENCY), "consistency.consistency", BIGC, m_cs_big},
    {T(UNMASK_REQUEST), "unmask_request.request: message type", BAD, m_ur_type},
    {T(UNMASK_REQUEST), "unmask_request.request", BAD, m_ur_empty},
    {T(UNMASK_RESPONSE), "unmask_response.unmask: header sender", BAD, m_ures_from},
    {T(UNMASK_RESPONSE), "unmask_response.unmask: addressed", BAD, m_ures_to},
    {T(METRICS), "metrics.train_ms", BIGC, m_met_ms},
    {T(ROUND_END), "round_end.model_digest", BAD, m_re_nodig},
    {T(ROUND_END), "round_end.reason", BAD, m_re_fail_noreason},
    {T(ROUND_END), "round_end.outcome", BAD, m_re_outcome0},
    {T(ROUND_END), "round_end.survivors", BAD, m_re_surv1},
    {T(ERROR), "error.code", BAD, m_e_code0},
    {T(ERROR), "error.code", BAD, m_e_code99},
    {T(ERROR), "error.text", BAD, m_e_text_empty},
    {T(ERROR), "error.text", BAD, m_e_text_ctrl},
    {T(ERROR), "error.text", BIGC, m_e_text_big},
    {T(ERROR), "error.ref_type", BAD, m_e_reftype},
    {T(DEVICE_PROFILE), "device_profile.labels[1].key", BAD, m_dp_dupkey},
    {T(DEVICE_PROFILE), "device_profile.labels[0].key", BAD, m_dp_key_upper},
    {T(DEVICE_PROFILE), "device_profile.labels[0].value", BIGC, m_dp_val_big},
    {T(DEVICE_PROFILE), "device_profile.labels", BIGC, m_dp_many},
    {T(DEVICE_PROFILE), "device_profile.hardware_class", BAD, m_dp_hw},
    {T(DEVICE_PROFILE), "device_profile.ram_bytes", BAD, m_dp_ram0},
    {T(DEVICE_PROFILE), "device_profile.flash_bytes", BAD, m_dp_flash0},
    {T(DEVICE_PROFILE), "device_profile.running_digest", BAD, m_dp_dig16},
    {T(DEVICE_PROFILE), "device_profile.running_sequence", BAD, m_dp_seq_nodig},
    {T(ARTIFACT_OFFER), "artifact_offer.rollout_id", BAD, m_ao_rollout0},
    {T(ARTIFACT_OFFER), "artifact_offer.manifest", BAD, m_ao_man_empty},
    {T(ARTIFACT_OFFER), "artifact_offer.manifest", BIGC, m_ao_man_big},
    {T(ARTIFACT_OFFER), "artifact_offer.manifest: not a signed manifest", BAD, m_ao_man_junk},
    {T(ARTIFACT_OFFER), "artifact_offer.manifest: body length", BAD, m_ao_man_cut},
    {T(ARTIFACT_OFFER), "artifact_offer.manifest: manifest", BAD, m_ao_man_body},
    {T(ARTIFACT_OFFER), "artifact_offer: the digest differs", BAD, m_ao_digest},
    {T(ARTIFACT_OFFER), "artifact_offer.artifact_size", BAD, m_ao_size},
    {T(ARTIFACT_OFFER), "artifact_offer.rollback", BAD, m_ao_rollback},
    {T(ARTIFACT_OFFER), "artifact_offer.artifact_url: artifact URL must start with http", BAD,
     m_ao_url_ftp},
    {T(ARTIFACT_OFFER), "artifact_offer.artifact_url: artifact URL ends with '/'", BAD,
     m_ao_url_slash},
    {T(ARTIFACT_OFFER), "artifact_offer.artifact_url: artifact URL has no host", BAD,
     m_ao_url_nohost},
    {T(ARTIFACT_OFFER), "forbidden byte 0x20", BAD, m_ao_url_space},
    {T(ARTIFACT_OFFER), "forbidden byte 0x3f", BAD, m_ao_url_query},
    {T(ARTIFACT_OFFER), "more than 255", BAD, m_ao_url_long},
    {T(ARTIFACT_OFFER), "artifact_offer.artifact_size", BAD, m_ao_size0},
    {T(ARTIFACT_OFFER), "artifact_offer.chunk_size", BAD, m_ao_chunk},
    {T(ARTIFACT_CHUNK_REQUEST), "artifact_chunk_request.length", BAD, m_acr_len0},
    {T(ARTIFACT_CHUNK_REQUEST), "artifact_chunk_request.length", BIGC, m_acr_len_big},
    {T(ARTIFACT_CHUNK_REQUEST), "artifact_chunk_request.artifact_digest", BAD, m_acr_dig},
    {T(ARTIFACT_CHUNK_REQUEST), "artifact_chunk_request.offset", BIGC, m_acr_off},
    {T(ACTIVATION_REPORT), "activation_report.state", BAD, m_ar_state0},
    {T(ACTIVATION_REPORT), "activation_report.reason", BAD, m_ar_fail_noreason},
    {T(ACTIVATION_REPORT), "activation_report.self_test_passed", BAD, m_ar_healthy_notest},
    {T(ACTIVATION_REPORT), "activation_report.active_sequence", BAD, m_ar_seq_nodig},
    {T(ACTIVATION_REPORT), "activation_report.artifact_digest", BAD, m_ar_dig},
    {T(ROLLBACK), "rollback.target_digest", BAD, m_rb_target},
    {T(ROLLBACK), "rollback.rollback: true, the manifest lacks", BAD, m_rb_noflag},
    {T(ROLLBACK), "rollback: the digest differs", BAD, m_rb_digest},
    {T(ROLLBACK), "rollback.rollout_id", BAD, m_rb_rollout0},
    {T(ROLLBACK), "rollback.reason", BAD, m_rb_reason_ctrl},
};

static void test_bad_fields(void)
{
    static fx_t f; /* large: keep it off the stack */
    /* Arrays long enough for the "too many entries" cases. */
    static ProtobufCBinaryData many_caps[CND_PROTO_CAPS_MAX + 1];
    static Condenser__PeerCert *many_nb[CND_PROTO_MAX_PEERS + 1];
    static Condenser__Label *many_labels[CND_PROTO_LABELS_MAX + 1];
    size_t types_seen[32] = {0};
    for (size_t i = 0; i < sizeof s_bad / sizeof s_bad[0]; i++) {
        const bad_t *b = &s_bad[i];
        s_build(&f, b->type);
        /* the unmutated message is valid */
        CHECK_EQ_INT(cnd_proto_validate(NULL, &f.env), 0);
        b->mutate(&f);
        if (f.hello.n_capabilities > 2) {
            for (size_t k = 0; k < f.hello.n_capabilities; k++) many_caps[k] = S("qat");
            f.hello.capabilities = many_caps;
        }
        if (f.rs.n_peers > 2) {
            for (size_t k = 0; k < f.rs.n_peers; k++) many_nb[k] = &f.pc[0];
            f.rs.peers = many_nb;
        }
        if (f.dp.n_labels > 2) {
            for (size_t k = 0; k < f.dp.n_labels; k++) many_labels[k] = &f.lab[0];
            f.dp.labels = many_labels;
        }
        cnd_proto_reject_t rej = {0};
        cnd_err_clear();
        int rc = cnd_proto_validate(&rej, &f.env);
        int ok = rc != 0 && rej.code == b->code && strstr(cnd_err_detail(), b->field) != NULL &&
                 rc == (b->code == BIGC ? CND_ERANGE : CND_EPROTO);
        if (!ok)
            fprintf(stderr, "case %zu (%s, %s): rc %d code %d (want %d) detail '%s'\n", i,
                    cnd_proto_type_name(b->type), b->field, rc, rej.code, b->code,
                    cnd_err_detail());
        CHECK(ok);
        CHECK_EQ_INT(rej.seq, f.env.seq);
        /* The sender refuses to encode it... */
        uint8_t *buf = NULL;
        size_t n = 0;
        CHECK(cnd_proto_encode(&buf, &n, &f.env) != 0);
        CHECK(buf == NULL);
        /* ...and when a hostile peer sends it anyway, the receiver refuses it the same way.
         * (Cases that cannot be expressed on the wire, like a NULL payload pointer or a
         * payload case without its field, decode differently and are covered above.) */
        if (f.env.payload_case != 0 && cnd_proto_payload(&f.env) &&
            (int)f.env.payload_case == (int)f.env.type + 15) {
            uint8_t *raw = s_raw(&f.env, &n);
            cnd_proto_msg_t *m = NULL;
            cnd_proto_reject_t r2 = {0};
            cnd_err_clear();
            rc = cnd_proto_decode(&m, &r2, raw, n);
            CHECK(rc != 0);
            CHECK(m == NULL);
            /* Missing sub-messages encode as absent; anything else must match exactly. */
            if (rc && strstr(cnd_err_detail(), b->field) == NULL)
                fprintf(stderr, "case %zu decode detail '%s' lacks '%s'\n", i, cnd_err_detail(),
                        b->field);
            CHECK(strstr(cnd_err_detail(), b->field) != NULL);
            CHECK_EQ_INT(r2.code, b->code);
            free(raw);
        }
        types_seen[b->type]++;
        s_fill_globals(); /* undo mutations of the shared byte arrays */
    }
    /* every payload type has rejection cases, except heartbeat (it has no constrained field) */
    for (int t = 1; t <= CONDENSER__MSG_TYPE__MSG_CONSISTENCY; t++)
        if (t != CONDENSER__MSG_TYPE__MSG_HEARTBEAT) CHECK(types_seen[t] > 0);
}

/* --- decode limits ------------------------------------------------------------------------ */

static size_t s_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static void test_decode_limits(void)
{
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej;
    static uint8_t buf[CND_PROTO_MAX_MSG + 16];

    /* Over the frame limit: refused before parsing. */
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, buf, CND_PROTO_MAX_MSG + 1), CND_ERANGE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
    CHECK(m == NULL);
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, buf, 0), CND_EFORMAT);

    /* Garbage and truncation: malformed. */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, junk, sizeof junk), CND_EFORMAT);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_MALFORMED);
    static fx_t f;
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    size_t n;
    uint8_t *enc = s_raw(&f.env, &n);
    for (size_t cut = 1; cut < n; cut += 7) {
        int rc = cnd_proto_decode(&m, &rej, enc, cut);
        CHECK(rc != 0);
        CHECK(m == NULL);
    }
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, enc, n), 0);
    cnd_proto_msg_destroy(&m);

    /* Unknown fields are ignored (forward compatibility): append field 900, varint 5. */
    uint8_t *ext = malloc(n + 8);
    memcpy(ext, enc, n);
    size_t k = n + s_varint(ext + n, (900u << 3) | 0);
    ext[k++] = 5;
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, ext, k), 0);
    /* ...and dropped: the message re-encodes to the original bytes */
    uint8_t *re = NULL;
    size_t rn = 0;
    if (m) CHECK_EQ_INT(cnd_proto_encode(&re, &rn, m->env), 0);
    CHECK(re && rn == n && memcmp(re, enc, n) == 0);
    free(re);
    cnd_proto_msg_destroy(&m);
    /* Field number 0 written as an over-long varint (0x80 0x00) is malformed, not unknown. */
    memcpy(ext, enc, n);
    ext[n] = 0x80;
    ext[n + 1] = 0x00;
    ext[n + 2] = 0x00;
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, ext, n + 3), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "field number 0") != NULL);
    CHECK(m == NULL);
    free(ext);
    free(enc);

    /* Two members of the payload oneof: the last one wins, and it must match the type. A
     * hello envelope followed by an empty heartbeat payload (field 31) keeps type HELLO. */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_HELLO);
    enc = s_raw(&f.env, &n);
    uint8_t *both = malloc(n + 4);
    memcpy(both, enc, n);
    k = n + s_varint(both + n, (31u << 3) | 2);
    both[k++] = 0;
    CHECK(cnd_proto_decode(&m, &rej, both, k) != 0);
    CHECK(strstr(cnd_err_detail(), "envelope.payload") != NULL);
    /* the other way round (heartbeat type, hello payload appended last) is refused too */
    fx_t g;
    s_build(&g, CONDENSER__MSG_TYPE__MSG_HEARTBEAT);
    size_t n2;
    uint8_t *hb = s_raw(&g.env, &n2);
    uint8_t *mix = malloc(n2 + n);
    memcpy(mix, hb, n2);
    memcpy(mix + n2, enc, n); /* merge: hello's header fields and payload win */
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, mix, n2 + n), 0); /* consistent again: accepted */
    if (m) CHECK_EQ_INT(m->env->type, CONDENSER__MSG_TYPE__MSG_HELLO);
    cnd_proto_msg_destroy(&m);
    free(mix);
    free(hb);
    free(both);
    free(enc);

    /* Memory amplification: a RoundStart with 400,000 empty peer entries (2 bytes each on
     * the wire) would need tens of megabytes of structs; the budget refuses it before any count
     * check. */
    size_t p = 0, body = 400000 * 2;
    p += s_varint(buf + p, (1u << 3) | 0); /* version */
    buf[p++] = 1;
    p += s_varint(buf + p, (2u << 3) | 0); /* type = ROUND_START */
    buf[p++] = CONDENSER__MSG_TYPE__MSG_ROUND_START;
    p += s_varint(buf + p, (20u << 3) | 2); /* round_start */
    p += s_varint(buf + p, body);
    for (size_t i = 0; i < 400000; i++) {
        buf[p++] = 0x3a; /* field 7 (peers), length-delimited */
        buf[p++] = 0x00; /* empty PeerCert */
    }
    CHECK(p <= CND_PROTO_MAX_MSG);
    cnd_err_clear();
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, buf, p), CND_ERANGE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_TOO_LARGE);
    CHECK(strstr(cnd_err_detail(), "memory") != NULL);

    /* The largest legitimate lists still decode under the budget. A round of 256 sites, each
     * RoundStart listing the 255 others with 3 KiB certificates (~790 KB)... */
    static uint8_t bigcert[CND_PROTO_CERT_MAX];
    bigcert[0] = 0x30;
    static Condenser__PeerCert nb[CND_PROTO_MAX_PEERS];
    static Condenser__PeerCert *nbp[CND_PROTO_MAX_PEERS];
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    f.params_len = s_params(f.params, 256, 16);
    f.rs.secagg_params = B(f.params, f.params_len);
    f.rs.participants = 256;
    f.rs.participant_id = 255;
    for (int i = 0; i < CND_PROTO_MAX_PEERS; i++) {
        nb[i] = f.pc[0];
        nb[i].participant_id = (uint32_t)i;
        nb[i].certificate = B(bigcert, 3072);
        nbp[i] = &nb[i];
    }
    f.rs.peers = nbp;
    f.rs.n_peers = 255;
    uint8_t *out;
    CHECK_EQ_INT(cnd_proto_encode(&out, &n, &f.env), 0);
    CHECK(n > 780000);
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, out, n), 0);
    if (m) CHECK_EQ_INT(m->env->round_start->peers[254]->participant_id, 254);
    cnd_proto_msg_destroy(&m);
    free(out);
    /* ...with 4 KiB certificates they exceed the frame: the sender refuses to build it... */
    for (int i = 0; i < 255; i++) nb[i].certificate = B(bigcert, 4096);
    CHECK_EQ_INT(cnd_proto_encode(&out, &n, &f.env), CND_ERANGE);
    /* ...and the largest round, 4096 sites, fits with 200-byte certificates (Ed25519
     * certificates are about that size) under the decoding budget. */
    f.params_len = s_params(f.params, CND_PROTO_MAX_PEERS + 1, 16);
    f.rs.secagg_params = B(f.params, f.params_len);
    f.rs.participants = CND_PROTO_MAX_PEERS + 1;
    f.rs.participant_id = CND_PROTO_MAX_PEERS;
    for (int i = 0; i < CND_PROTO_MAX_PEERS; i++) nb[i].certificate = B(bigcert, 200);
    f.rs.n_peers = CND_PROTO_MAX_PEERS;
    CHECK_EQ_INT(cnd_proto_encode(&out, &n, &f.env), 0);
    CHECK(n > 850000 && n <= CND_PROTO_MAX_MSG);
    CHECK_EQ_INT(cnd_proto_decode(&m, &rej, out, n), 0);
    cnd_proto_msg_destroy(&m);
    free(out);
}

/* --- replay window ------------------------------------------------------------------------ */

static void test_seqwin(void)
{
    cnd_seqwin_t w;
    cnd_proto_reject_t rej;
    cnd_seqwin_init(&w);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 0), CND_EEXIST);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_REPLAY);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 1), 0);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 2), 0);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 2), CND_EEXIST);
    CHECK(strstr(cnd_err_detail(), "replay") != NULL);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 1), CND_EEXIST);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 100), 0);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 37), 0); /* 63 below the top: still inside */
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 37), CND_EEXIST);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 36), CND_EEXIST); /* 64 below: too old */
    CHECK(strstr(cnd_err_detail(), "older") != NULL);
    /* check does not commit */
    CHECK_EQ_INT(cnd_seqwin_check(&w, &rej, 101), 0);
    CHECK_EQ_INT(cnd_seqwin_check(&w, &rej, 101), 0);
    cnd_seqwin_commit(&w, 101);
    CHECK_EQ_INT(cnd_seqwin_check(&w, &rej, 101), CND_EEXIST);
    /* a huge jump clears the window */
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, UINT64_MAX - 1), 0);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, UINT64_MAX), 0);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, UINT64_MAX - 1), CND_EEXIST);
    CHECK_EQ_INT(cnd_seqwin_accept(&w, &rej, 102), CND_EEXIST);

    /* Differential test against a naive model that remembers every accepted number. */
    enum { N = 20000, RANGE = 1000000 };
    static uint8_t seen[RANGE + 200];
    memset(seen, 0, sizeof seen);
    uint64_t top = 0, x = 0x9e3779b97f4a7c15ull;
    int mismatches = 0, accepted = 0;
    cnd_seqwin_init(&w);
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* mostly increasing with jitter, some replays and old numbers */
        uint64_t base = top > 70 ? top - 70 : 0;
        uint64_t seq = base + x % 100;
        if (seq >= RANGE + 100) seq = RANGE + 99;
        int naive = seq != 0 && !seen[seq] && (top == 0 || seq > top || top - seq < 64);
        int got = cnd_seqwin_accept(&w, NULL, seq) == 0;
        if (got != naive) mismatches++;
        if (naive) {
            seen[seq] = 1;
            if (seq > top) top = seq;
            accepted++;
        }
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(accepted > 5000);
    CHECK(top > 10000); /* the generator really moved the window */
}

/* --- stateful checks ---------------------------------------------------------------------- */

static void test_checks(void)
{
    fx_t f;
    cnd_proto_reject_t rej;
    cnd_round_view_t v = {42, 3, CND_PHASE_MASKED};

    /* sender */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_METRICS);
    CHECK_EQ_INT(cnd_proto_check_sender(&rej, &f.env, "site-b"), 0);
    CHECK_EQ_INT(cnd_proto_check_sender(&rej, &f.env, "site-bb"), CND_EPERM);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK_EQ_INT(cnd_proto_check_sender(&rej, &f.env, "site-"), CND_EPERM);
    CHECK_EQ_INT(cnd_proto_check_sender(&rej, &f.env, ""), CND_EPERM);

    /* round/phase from the coordinator's view */
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0); /* metrics in MASKED */
    v.phase = CND_PHASE_CONSISTENCY;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0); /* ...in CONSISTENCY */
    v.phase = CND_PHASE_UNMASK;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0); /* ...and in UNMASK */
    v.phase = CND_PHASE_SHARE;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_WRONG_PHASE);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT);
    v.phase = CND_PHASE_MASKED;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0);
    v.phase = CND_PHASE_UNMASK; /* late masked input */
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "phase") != NULL);
    v.phase = CND_PHASE_MASKED;
    v.round = 4; /* stale */
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_STALE_ROUND);
    v.round = 2; /* from the future */
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    v.round = 3;
    v.job_id = 7;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ENOTFOUND);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB);
    v.job_id = 42;
    /* masked-input chunks follow the masked-input phase; model chunks are coordinator-sent */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_CHUNK);
    CHECK_EQ_INT(cnd_proto_phase_of(&f.env), CND_PHASE_MASKED);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0);
    v.phase = CND_PHASE_SHARE;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    f.chunk.kind = CONDENSER__OBJECT_KIND__OBJ_ARTIFACT;
    CHECK_EQ_INT(cnd_proto_phase_of(&f.env), CND_PHASE_IDLE);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0); /* not round-bound */
    /* the consistency phase sits between masked input and unmask */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_CONSISTENCY);
    CHECK_EQ_INT(cnd_proto_phase_of(&f.env), CND_PHASE_CONSISTENCY);
    v.phase = CND_PHASE_CONSISTENCY;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0);
    v.phase = CND_PHASE_UNMASK;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), CND_ESTATE);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), 0);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_COORDINATOR), 0);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), CND_EPERM);
    /* messages not bound to a round always pass */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_HEARTBEAT);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &v), 0);

    /* the site's view: coordinator phases only move forward; a new or restarted round opens */
    cnd_round_view_t sv = {42, 3, CND_PHASE_MASKED};
    s_build(&f, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), CND_ESTATE); /* SHARE < MASKED */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), 0);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_END);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), 0);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), 0); /* restart of round 3 */
    f.env.round = 4;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), 0); /* next round */
    f.env.round = 2;
    CHECK_EQ_INT(cnd_proto_check_round(&rej, &f.env, &sv), CND_ESTATE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_STALE_ROUND);

    /* roles */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), 0);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_DEVICE), CND_EPERM);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ROUND_START);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), CND_EPERM);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_COORDINATOR), 0);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_CHUNK); /* masked input: from sites only */
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), 0);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_COORDINATOR), CND_EPERM);
    f.chunk.kind = CONDENSER__OBJECT_KIND__OBJ_MODEL;
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), CND_EPERM);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_DEVICE), 0);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_SITE), CND_EPERM);
    s_build(&f, CONDENSER__MSG_TYPE__MSG_HEARTBEAT);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, CONDENSER__ROLE__ROLE_DEVICE), 0);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, 0), CND_EPERM);
    CHECK_EQ_INT(cnd_proto_check_role(&rej, &f.env, 99), CND_EPERM);
}

/* cnd_proto_accept: every check in order; a refused message does not consume its seq. */
static void test_accept(void)
{
    fx_t f;
    cnd_seqwin_t w;
    cnd_seqwin_init(&w);
    cnd_round_view_t v = {42, 3, CND_PHASE_SHARE};
    cnd_proto_reject_t rej;
    cnd_proto_msg_t *m = NULL;
    uint8_t *buf;
    size_t n;
    s_build(&f, CONDENSER__MSG_TYPE__MSG_METRICS); /* seq 1014, belongs to MASKED */
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, "site-b", CONDENSER__ROLE__ROLE_SITE, &w, &v),
                 CND_ESTATE);
    CHECK(m == NULL);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_WRONG_PHASE);
    CHECK_EQ_INT(rej.seq, 1014);
    CHECK_EQ_INT(w.top, 0); /* not consumed */
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, "site-c", CONDENSER__ROLE__ROLE_SITE, &w, &v),
                 CND_EPERM);
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, "site-b", CONDENSER__ROLE__ROLE_DEVICE, &w, &v),
                 CND_EPERM);
    v.phase = CND_PHASE_MASKED;
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, "site-b", CONDENSER__ROLE__ROLE_SITE, &w, &v),
                 0);
    CHECK(m != NULL && m->env->metrics->train_ms == 5000);
    cnd_proto_msg_destroy(&m);
    CHECK_EQ_INT(w.top, 1014);
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, "site-b", CONDENSER__ROLE__ROLE_SITE, &w, &v),
                 CND_EEXIST);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_REPLAY);
    CHECK(m == NULL);
    /* without a round view only the round check is skipped */
    s_build(&f, CONDENSER__MSG_TYPE__MSG_HEARTBEAT);
    free(buf);
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &f.env), 0);
    CHECK_EQ_INT(
        cnd_proto_accept(&m, &rej, buf, n, "site-b", CONDENSER__ROLE__ROLE_DEVICE, &w, NULL),
        0); /* heartbeat seq 1016 */
    CHECK(m && m->env->type == CONDENSER__MSG_TYPE__MSG_HEARTBEAT);
    CHECK_EQ_INT(w.top, 1016);
    free(buf);
    cnd_proto_msg_destroy(&m);
    /* undecodable input: no message, nothing consumed */
    const uint8_t junk[] = {0xff};
    CHECK_EQ_INT(
        cnd_proto_accept(&m, &rej, junk, 1, "site-b", CONDENSER__ROLE__ROLE_SITE, &w, NULL),
        CND_EFORMAT);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_MALFORMED);
    CHECK_EQ_INT(w.top, 1016);
}

static void test_helpers(void)
{
    char out[8];
    CHECK_EQ_INT(cnd_proto_text(out, sizeof out, S("abc")), 0);
    CHECK(strcmp(out, "abc") == 0);
    CHECK_EQ_INT(cnd_proto_text(out, sizeof out, S("abcdefgh")), CND_ERANGE);
    CHECK(out[0] == '\0');
    CHECK_EQ_INT(cnd_proto_text(out, sizeof out, B(NUL_NAME, sizeof NUL_NAME)), CND_EPROTO);
    CHECK_EQ_INT(cnd_proto_text(out, sizeof out, B("", 0)), 0);

    /* An error reply built from a rejection is itself valid, whatever text it is given. */
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_REPLAY, 55,
                              CONDENSER__MSG_TYPE__MSG_METRICS};
    Condenser__Error err;
    char tb[CND_PROTO_TEXT_MAX + 1];
    static char longtext[3000];
    memset(longtext, 'z', sizeof longtext - 1);
    longtext[5] = '\x1b';
    longtext[6] = '\n';
    cnd_proto_error_init(&err, tb, &rej, longtext);
    CHECK_EQ_INT(err.code, CONDENSER__ERROR_CODE__ERR_REPLAY);
    CHECK_EQ_INT(err.ref_seq, 55);
    CHECK_EQ_INT(err.ref_type, CONDENSER__MSG_TYPE__MSG_METRICS);
    CHECK_EQ_INT(err.text.len, CND_PROTO_TEXT_MAX);
    CHECK(tb[5] == '?' && tb[6] == '?');
    CHECK_EQ_INT(cnd_proto_validate_error(NULL, &err), 0);
    cnd_proto_error_init(&err, tb, NULL, NULL);
    CHECK_EQ_INT(err.code, CONDENSER__ERROR_CODE__ERR_INTERNAL);
    CHECK(strcmp(tb, "internal") == 0);

    CHECK(strcmp(cnd_proto_type_name(CONDENSER__MSG_TYPE__MSG_SHARE_KEYS), "share_keys") == 0);
    CHECK(strcmp(cnd_proto_type_name(CONDENSER__MSG_TYPE__MSG_ROLLBACK), "rollback") == 0);
    CHECK(strcmp(cnd_proto_type_name(CONDENSER__MSG_TYPE__MSG_CONSISTENCY), "consistency") == 0);
    CHECK(strcmp(cnd_phase_name(CND_PHASE_CONSISTENCY), "consistency") == 0);
    CHECK(strcmp(cnd_proto_type_name(1000), "unknown") == 0);
    CHECK(strcmp(cnd_proto_error_name(CONDENSER__ERROR_CODE__ERR_INTERNAL), "internal") == 0);
    CHECK(strcmp(cnd_phase_name(CND_PHASE_UNMASK), "unmask") == 0);
    uint64_t a = cnd_proto_seq_start();
    CHECK(a > 1600000000000000ull); /* microseconds since 1970, after 2020 */
}

int main(void)
{
    s_fill_globals();
    test_round_trips();
    test_bad_fields();
    test_decode_limits();
    test_seqwin();
    test_checks();
    test_accept();
    test_helpers();
    return check_result("test_proto");
}
