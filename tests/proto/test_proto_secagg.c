/*
 * test_proto_secagg.c: a complete SecAgg+ round of crypto/secagg.h carried by the wire protocol.
 * Every message between the coordinator and four sites is wrapped in its Envelope, encoded,
 * decoded and passed through cnd_proto_accept() (validation, sender, role, replay window, round
 * and phase) before the receiving state machine sees it; the masked vectors travel as a
 * MaskedInput plus chunks and are reassembled and digest-checked. One site drops out after
 * sharing its keys. The coordinator's recovered sum must equal the exact sum of the survivors'
 * inputs modulo 2^bits. No sockets: the transport is tested elsewhere; this checks that the
 * schema carries the cryptographic protocol without loss.
 */
#include "check.h"
#include "chunk.h"
#include "digest.h"
#include "identity.h"
#include "proto.h"
#include "rng.h"
#include "secagg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 4, LEN = 20000, BITS = 16, DROP = 3, JOB = 9, ROUND = 2 };
static const char *const NAMES[N] = {"site-0", "site-1", "site-2", "site-3"};

typedef struct {
    cnd_identity_t *id;
    cnd_secagg_client_t *cl;
    uint32_t x[LEN];
    cnd_seqwin_t from_coord; /* the site's window over the coordinator's messages */
    cnd_round_view_t view;
    uint64_t seq;
} site_t;

typedef struct {
    cnd_secagg_server_t *srv;
    cnd_seqwin_t from_site[N];
    cnd_round_view_t view;
    uint64_t seq;
    cnd_assembler_t *asmb[N];
} coord_t;

static uint8_t CERT[64] = {0x30, 0x3e};

/* Wraps a payload, encodes it, and passes it through the receiver's gate. Returns the decoded
 * message (owned) or NULL, counting a CHECK failure. */
static cnd_proto_msg_t *s_wire(Condenser__MsgType t, void *payload, const char *sender,
                               uint64_t *seq, const char *auth_user, Condenser__Role role,
                               cnd_seqwin_t *win, const cnd_round_view_t *view)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, t, payload, JOB, ROUND, sender, (*seq)++);
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = cnd_proto_encode(&buf, &n, &env);
    if (rc) fprintf(stderr, "encode %s: %s\n", cnd_proto_type_name(t), cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    if (rc) return NULL;
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej;
    rc = cnd_proto_accept(&m, &rej, buf, n, auth_user, role, win, view);
    if (rc) fprintf(stderr, "accept %s: %s\n", cnd_proto_type_name(t), cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    free(buf);
    return m;
}

static cnd_proto_msg_t *s_to_site(coord_t *c, site_t *s, uint32_t u, Condenser__MsgType t,
                                  void *payload)
{
    (void)u; /* every site gets its own envelope; the index only documents the call */
    return s_wire(t, payload, "coordinator", &c->seq, "coordinator",
                  CONDENSER__ROLE__ROLE_COORDINATOR, &s->from_coord, &s->view);
}

static cnd_proto_msg_t *s_to_coord(coord_t *c, site_t *s, uint32_t u, Condenser__MsgType t,
                                   void *payload)
{
    return s_wire(t, payload, NAMES[u], &s->seq, NAMES[u], CONDENSER__ROLE__ROLE_SITE,
                  &c->from_site[u], &c->view);
}

int main(void)
{
    static site_t site[N];
    static coord_t co;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 77);
    cnd_secagg_member_t enrolled[N];
    for (uint32_t u = 0; u < N; u++) {
        uint8_t seed[32];
        for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(u * 40 + (uint32_t)i + 1);
        CHECK_EQ_INT(cnd_identity_from_seed(&site[u].id, seed), 0);
        memset(&enrolled[u], 0, sizeof enrolled[u]);
        memcpy(enrolled[u].id_pk, cnd_identity_pk(site[u].id), 32);
        cnd_sha256(enrolled[u].cert_sha256, CERT, sizeof CERT);
        for (int i = 0; i < LEN; i++) site[u].x[i] = (uint32_t)(cnd_rng_u64(&rng) & 0xffff);
        site[u].seq = 1;
        site[u].view = (cnd_round_view_t){JOB, ROUND - 1, CND_PHASE_DONE};
        cnd_seqwin_init(&site[u].from_coord);
        cnd_seqwin_init(&co.from_site[u]);
    }
    co.seq = 1;

    /* The coordinator fixes the round and tells each site its index, the parameters and its
     * neighbours' certified identities. */
    cnd_secagg_params_t p;
    memset(&p, 0, sizeof p);
    p.round_id = (uint64_t)JOB << 32 | ROUND;
    for (int i = 0; i < 32; i++) p.round_seed[i] = (uint8_t)(i * 13 + 5);
    p.n = N;
    p.len = LEN;
    p.bits = BITS;
    CHECK_EQ_INT(cnd_secagg_params_fill(&p), 0);
    cnd_buf_t pb;
    cnd_buf_init(&pb);
    CHECK_EQ_INT(cnd_secagg_params_encode(&pb, &p), 0);
    CHECK_EQ_INT(cnd_secagg_server_new(&co.srv, &p, enrolled, 1), 0);
    co.view = (cnd_round_view_t){JOB, ROUND, CND_PHASE_ADVERTISE};

    uint8_t model[5000];
    for (size_t i = 0; i < sizeof model; i++) model[i] = (uint8_t)i;
    Condenser__ObjectInfo model_info;
    uint8_t model_digest[32];
    CHECK_EQ_INT(cnd_chunk_plan(&model_info, model_digest, model, sizeof model, 4096), 0);
    Condenser__Deadlines dl;
    condenser__deadlines__init(&dl);
    dl.advertise_ms = dl.share_ms = dl.unmask_ms = 5000;
    dl.masked_input_ms = 60000;

    for (uint32_t u = 0; u < N; u++) {
        /* every other participant (their signatures can come with an unmask request) */
        Condenser__PeerCert pc[N], *pcp[N];
        size_t np = 0;
        for (uint32_t j = 0; j < N; j++) {
            if (j == u) continue;
            condenser__peer_cert__init(&pc[np]);
            pc[np].participant_id = j;
            pc[np].node_name = cnd_proto_str(NAMES[j]);
            pc[np].certificate = cnd_proto_bytes(CERT, sizeof CERT);
            pcp[np] = &pc[np];
            np++;
        }
        Condenser__RoundStart rs;
        condenser__round_start__init(&rs);
        rs.model = &model_info;
        rs.participant_id = u;
        rs.participants = N;
        rs.deadlines = &dl;
        rs.secagg_params = cnd_proto_bytes(pb.data, pb.len);
        rs.n_peers = np;
        rs.peers = pcp;
        cnd_proto_msg_t *m = s_to_site(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_ROUND_START, &rs);
        if (!m) return check_result("test_proto_secagg");
        /* The site takes the round parameters from the wire, and accepts the identities of the
         * certified participants (here: their keys; the agent reads them from the certificates
         * after checking them against the CA). */
        cnd_secagg_params_t sp;
        const Condenser__RoundStart *r = m->env->round_start;
        CHECK_EQ_INT(cnd_secagg_params_decode(&sp, r->secagg_params.data, r->secagg_params.len), 0);
        cnd_secagg_member_t peers[N];
        memset(peers, 0, sizeof peers);
        memcpy(peers[u].id_pk, cnd_identity_pk(site[u].id), 32);
        cnd_sha256(peers[u].cert_sha256, CERT, sizeof CERT);
        for (size_t j = 0; j < r->n_peers; j++) {
            uint32_t pid = r->peers[j]->participant_id;
            memcpy(peers[pid].id_pk, enrolled[pid].id_pk, 32);
            cnd_sha256(peers[pid].cert_sha256, r->peers[j]->certificate.data,
                       r->peers[j]->certificate.len);
        }
        CHECK_EQ_INT(cnd_secagg_client_new(&site[u].cl, &sp, r->participant_id, site[u].id, peers),
                     0);
        site[u].view = (cnd_round_view_t){JOB, ROUND, CND_PHASE_ADVERTISE};
        cnd_proto_msg_destroy(&m);
    }

    /* Phase 1: adverts. */
    cnd_buf_t b;
    cnd_buf_init(&b);
    for (uint32_t u = 0; u < N; u++) {
        b.len = 0;
        CHECK_EQ_INT(cnd_secagg_client_advertise(site[u].cl, &b), 0);
        Condenser__AdvertiseKeys ak;
        condenser__advertise_keys__init(&ak);
        ak.participant_id = u;
        ak.advert = cnd_proto_bytes(b.data, b.len);
        cnd_proto_msg_t *m =
            s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &ak);
        if (!m) continue;
        const Condenser__AdvertiseKeys *in = m->env->advertise_keys;
        CHECK_EQ_INT(cnd_secagg_server_add_advert(co.srv, in->participant_id, in->advert.data,
                                                  in->advert.len),
                     0);
        cnd_proto_msg_destroy(&m);
    }
    CHECK_EQ_INT(cnd_secagg_server_end_adverts(co.srv), 0);

    /* Phase 2: rosters out, shares in. */
    co.view.phase = CND_PHASE_SHARE;
    for (uint32_t u = 0; u < N; u++) {
        b.len = 0;
        CHECK_EQ_INT(cnd_secagg_server_keys_msg(co.srv, &b, u), 0);
        Condenser__KeyRoster kr;
        condenser__key_roster__init(&kr);
        kr.keys = cnd_proto_bytes(b.data, b.len);
        cnd_proto_msg_t *m = s_to_site(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_KEY_ROSTER, &kr);
        if (!m) continue;
        site[u].view.phase = CND_PHASE_SHARE;
        cnd_buf_t out;
        cnd_buf_init(&out);
        CHECK_EQ_INT(cnd_secagg_client_share_keys(site[u].cl, &out, m->env->key_roster->keys.data,
                                                  m->env->key_roster->keys.len),
                     0);
        cnd_proto_msg_destroy(&m);
        Condenser__ShareKeys sk;
        condenser__share_keys__init(&sk);
        sk.participant_id = u;
        sk.shares = cnd_proto_bytes(out.data, out.len);
        m = s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_SHARE_KEYS, &sk);
        if (m)
            CHECK_EQ_INT(cnd_secagg_server_add_shares(co.srv, u, m->env->share_keys->shares.data,
                                                      m->env->share_keys->shares.len),
                         0);
        cnd_proto_msg_destroy(&m);
        cnd_buf_free(&out);
    }
    CHECK_EQ_INT(cnd_secagg_server_end_shares(co.srv), 0);

    /* Phase 3: shares relayed; masked inputs back as MaskedInput + chunks. Site DROP goes
     * silent here, after sharing. */
    co.view.phase = CND_PHASE_MASKED;
    size_t chunk_frames = 0;
    for (uint32_t u = 0; u < N; u++) {
        b.len = 0;
        CHECK_EQ_INT(cnd_secagg_server_shares_msg(co.srv, &b, u), 0);
        Condenser__SharesRelay sr;
        condenser__shares_relay__init(&sr);
        sr.shares_for = cnd_proto_bytes(b.data, b.len);
        cnd_proto_msg_t *m =
            s_to_site(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_SHARES_RELAY, &sr);
        if (!m || u == DROP) {
            cnd_proto_msg_destroy(&m);
            continue;
        }
        site[u].view.phase = CND_PHASE_MASKED;
        cnd_buf_t masked;
        cnd_buf_init(&masked);
        CHECK_EQ_INT(cnd_secagg_client_mask(site[u].cl, &masked,
                                            m->env->shares_relay->shares_for.data,
                                            m->env->shares_relay->shares_for.len, site[u].x),
                     0);
        cnd_proto_msg_destroy(&m);
        /* the MASKED message is the chunked object */
        Condenser__ObjectInfo info;
        uint8_t dg[32];
        CHECK_EQ_INT(cnd_chunk_plan(&info, dg, masked.data, masked.len, 4096), 0);
        Condenser__MaskedInput mi;
        condenser__masked_input__init(&mi);
        mi.vector = &info;
        mi.bit_width = BITS;
        mi.length = LEN;
        mi.participant_id = u;
        m = s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, &mi);
        if (m) {
            const Condenser__MaskedInput *in = m->env->masked_input;
            CHECK_EQ_INT(in->length, p.len);
            CHECK_EQ_INT(in->bit_width, p.bits);
            CHECK_EQ_INT(cnd_assembler_new(&co.asmb[u], NULL,
                                           CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT, in->vector,
                                           in->vector->total_size),
                         0);
        }
        cnd_proto_msg_destroy(&m);
        for (uint32_t i = 0; i < info.chunk_count; i++) {
            Condenser__Chunk c;
            uint8_t sha[32];
            CHECK_EQ_INT(cnd_chunk_piece(&c, sha, CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT, &info,
                                         masked.data, i),
                         0);
            m = s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_CHUNK, &c);
            if (m && co.asmb[u])
                CHECK_EQ_INT(cnd_assembler_add(co.asmb[u], NULL, m->env->chunk), 0);
            cnd_proto_msg_destroy(&m);
            chunk_frames++;
        }
        uint8_t *whole = NULL;
        uint64_t wl = 0;
        if (co.asmb[u]) {
            CHECK_EQ_INT(cnd_assembler_finish(co.asmb[u], NULL, &whole, &wl), 0);
            CHECK(wl == masked.len && memcmp(whole, masked.data, wl) == 0);
            CHECK_EQ_INT(cnd_secagg_server_add_masked(co.srv, u, whole, (size_t)wl), 0);
        }
        free(whole);
        cnd_assembler_destroy(&co.asmb[u]);
        cnd_buf_free(&masked);
    }
    CHECK(chunk_frames >= 3 * 10); /* 40 KB vectors in 4 KiB chunks */
    CHECK_EQ_INT(cnd_secagg_server_end_masked(co.srv), 0);

    /* Phase 4: the survivor sets to every survivor, their signatures back. */
    co.view.phase = CND_PHASE_CONSISTENCY;
    for (uint32_t u = 0; u < N; u++) {
        if (u == DROP) continue;
        b.len = 0;
        CHECK_EQ_INT(cnd_secagg_server_consistency_msg(co.srv, &b, u), 0);
        Condenser__ConsistencyRequest cq;
        condenser__consistency_request__init(&cq);
        cq.request = cnd_proto_bytes(b.data, b.len);
        cnd_proto_msg_t *m =
            s_to_site(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST, &cq);
        if (!m) continue;
        site[u].view.phase = CND_PHASE_CONSISTENCY;
        cnd_buf_t out;
        cnd_buf_init(&out);
        CHECK_EQ_INT(cnd_secagg_client_consistency(site[u].cl, &out,
                                                   m->env->consistency_request->request.data,
                                                   m->env->consistency_request->request.len),
                     0);
        cnd_proto_msg_destroy(&m);
        Condenser__Consistency cs;
        condenser__consistency__init(&cs);
        cs.participant_id = u;
        cs.consistency = cnd_proto_bytes(out.data, out.len);
        m = s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_CONSISTENCY, &cs);
        if (m)
            CHECK_EQ_INT(cnd_secagg_server_add_consistency(co.srv, u,
                                                           m->env->consistency->consistency.data,
                                                           m->env->consistency->consistency.len),
                         0);
        cnd_proto_msg_destroy(&m);
        cnd_buf_free(&out);
    }
    CHECK_EQ_INT(cnd_secagg_server_end_consistency(co.srv), 0);

    /* Phase 5: unmask requests to the survivors, their shares back. */
    co.view.phase = CND_PHASE_UNMASK;
    for (uint32_t u = 0; u < N; u++) {
        if (u == DROP) continue;
        b.len = 0;
        CHECK_EQ_INT(cnd_secagg_server_unmask_msg(co.srv, &b, u), 0);
        Condenser__UnmaskRequest ur;
        condenser__unmask_request__init(&ur);
        ur.request = cnd_proto_bytes(b.data, b.len);
        cnd_proto_msg_t *m =
            s_to_site(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST, &ur);
        if (!m) continue;
        site[u].view.phase = CND_PHASE_UNMASK;
        cnd_buf_t out;
        cnd_buf_init(&out);
        CHECK_EQ_INT(cnd_secagg_client_unmask(site[u].cl, &out,
                                              m->env->unmask_request->request.data,
                                              m->env->unmask_request->request.len),
                     0);
        cnd_proto_msg_destroy(&m);
        Condenser__UnmaskResponse ures;
        condenser__unmask_response__init(&ures);
        ures.participant_id = u;
        ures.unmask = cnd_proto_bytes(out.data, out.len);
        m = s_to_coord(&co, &site[u], u, CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE, &ures);
        if (m)
            CHECK_EQ_INT(cnd_secagg_server_add_unmask(co.srv, u,
                                                      m->env->unmask_response->unmask.data,
                                                      m->env->unmask_response->unmask.len),
                         0);
        cnd_proto_msg_destroy(&m);
        cnd_buf_free(&out);
    }

    /* The recovered sum is exactly the survivors' sum modulo 2^16. */
    static uint32_t sum[LEN];
    CHECK_EQ_INT(cnd_secagg_server_finish(co.srv, sum), 0);
    int wrong = 0;
    for (int i = 0; i < LEN; i++) {
        uint32_t want = 0;
        for (uint32_t u = 0; u < N; u++)
            if (u != DROP) want += site[u].x[i];
        if (sum[i] != (want & 0xffff)) wrong++;
    }
    CHECK_EQ_INT(wrong, 0);

    /* A replayed SecAgg message (the same envelope bytes again) is refused by the gate before
     * the state machine sees it; a late advert is out of phase. */
    b.len = 0;
    Condenser__Metrics met;
    condenser__metrics__init(&met);
    met.train_ms = 100;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_METRICS, &met, JOB, ROUND, NAMES[0],
                            site[0].seq - 1);
    uint8_t *buf;
    size_t n;
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &env), 0);
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, NAMES[0], CONDENSER__ROLE__ROLE_SITE,
                                  &co.from_site[0], &co.view),
                 CND_EEXIST);
    free(buf);
    Condenser__AdvertiseKeys late;
    condenser__advertise_keys__init(&late);
    late.participant_id = 1;
    uint8_t hdr[CND_SECAGG_HDR_BYTES + 8] = "CSA1";
    hdr[4] = CND_SECAGG_ADVERT;
    hdr[13] = 1;
    memset(hdr + 17, 0xff, 4);
    late.advert = cnd_proto_bytes(hdr, sizeof hdr);
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &late, JOB, ROUND,
                            NAMES[1], site[1].seq++);
    CHECK_EQ_INT(cnd_proto_encode(&buf, &n, &env), 0);
    CHECK_EQ_INT(cnd_proto_accept(&m, &rej, buf, n, NAMES[1], CONDENSER__ROLE__ROLE_SITE,
                                  &co.from_site[1], &co.view),
                 CND_ESTATE);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_WRONG_PHASE);
    free(buf);

    cnd_buf_free(&b);
    cnd_buf_free(&pb);
    cnd_secagg_server_destroy(&co.srv);
    for (uint32_t u = 0; u < N; u++) {
        cnd_secagg_client_destroy(&site[u].cl);
        cnd_identity_destroy(&site[u].id);
    }
    return check_result("test_proto_secagg");
}
