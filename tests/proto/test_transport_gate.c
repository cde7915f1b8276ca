/*
 * test_transport_gate.c: the receive path a coordinator runs, over real CURVE sockets. A small
 * coordinator loop passes every frame through cnd_proto_accept() (decode and validate, sender ==
 * authenticated id, role, replay window, round and phase) and answers refusals with MSG_ERROR.
 * Several authenticated clients misbehave in different ways (garbage bytes, a bad field, a
 * replay, the wrong phase, a stale round, a spoofed sender, a device sending site messages, an
 * oversized frame); each gets the right error code or loses its connection, and a well-behaved
 * site is served before, between and after them.
 */
#include "secagg.h"
#include "test_transport_fixture.h"

#include <stdlib.h>

typedef struct {
    const ident_t *id;
    Condenser__Role role;
    cnd_seqwin_t win;
} peer_t;

typedef struct {
    cnd_server_t *s;
    ident_t *srv;
    peer_t peers[8];
    int npeers;
    cnd_round_view_t view;
    int accepted;
} coord_t;

/* One step of the coordinator: take one frame, gate it, answer. Returns 1 if a frame was
 * handled. */
static int s_coord_step(coord_t *c, int timeout_ms)
{
    cnd_frame_t f;
    if (cnd_server_recv(c->s, &f, timeout_ms)) return 0;
    peer_t *p = NULL;
    for (int i = 0; i < c->npeers; i++)
        if (strcmp(c->peers[i].id->name, f.user_id) == 0) p = &c->peers[i];
    CHECK(p != NULL); /* ZAP only admits enrolled peers */
    if (!p) {
        cnd_frame_clear(&f);
        return 1;
    }
    cnd_proto_msg_t *m = NULL;
    cnd_proto_reject_t rej = {0};
    int rc = cnd_proto_accept(&m, &rej, f.data, f.len, f.user_id, p->role, &p->win, &c->view);
    Condenser__Envelope env;
    Condenser__Error err;
    Condenser__Heartbeat ack;
    char tb[CND_PROTO_TEXT_MAX + 1];
    if (rc) {
        CHECK(m == NULL);
        cnd_proto_error_init(&err, tb, &rej, cnd_err_detail());
        cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ERROR, &err, 0, 0, c->srv->name,
                                c->srv->seq++);
    } else {
        c->accepted++;
        condenser__heartbeat__init(&ack);
        ack.unix_ms = m->env->seq; /* echo, so the client can tell which message was accepted */
        cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &ack, 0, 0, c->srv->name,
                                c->srv->seq++);
    }
    cnd_proto_msg_destroy(&m);
    uint8_t *out;
    size_t n;
    CHECK_EQ_INT(cnd_proto_encode(&out, &n, &env), 0);
    CHECK_EQ_INT(cnd_server_send(c->s, &f.peer, out, n, 1000), 0);
    free(out);
    cnd_frame_clear(&f);
    return 1;
}

/* Sends bytes, lets the coordinator handle them, returns the reply: 0 for an acceptance, the
 * ErrorCode for a refusal, -1 for no reply. *ref_seq gets the reply's reference. */
static int s_exchange(coord_t *c, cnd_client_t *cl, const uint8_t *b, size_t n, uint64_t *ref)
{
    if (cnd_client_send(cl, b, n, 3000)) return -1;
    if (!s_coord_step(c, 3000)) return -1;
    uint8_t *back = NULL;
    size_t bl = 0;
    if (cnd_client_recv(cl, &back, &bl, 3000)) return -1;
    cnd_proto_msg_t *m = NULL;
    int res = -1;
    if (cnd_proto_decode(&m, NULL, back, bl) == 0) {
        if (m->env->type == CONDENSER__MSG_TYPE__MSG_ERROR) {
            res = m->env->error->code;
            if (ref) *ref = m->env->error->ref_seq;
        } else {
            res = 0;
            if (ref) *ref = m->env->heartbeat->unix_ms;
        }
    }
    cnd_proto_msg_destroy(&m);
    free(back);
    return res;
}

/* An encoded round-3 message of the given type from `me` (job 42), with a valid payload. */
static uint8_t *s_msg(ident_t *me, const char *claimed, Condenser__MsgType t, uint32_t round,
                      size_t *n)
{
    static uint8_t dig[32], advert[21 + 192];
    for (int i = 0; i < 32; i++) dig[i] = (uint8_t)i;
    /* a crypto/secagg.h ADVERT header from participant 1 to the coordinator, filler body */
    memset(advert, 0x5a, sizeof advert);
    memcpy(advert, "CSA1", 4);
    advert[4] = CND_SECAGG_ADVERT;
    memset(advert + 5, 0, 8);
    memset(advert + 13, 0, 4);
    advert[13] = 1;
    memset(advert + 17, 0xff, 4);
    Condenser__Metrics met;
    Condenser__AdvertiseKeys adv;
    Condenser__MaskedInput mi;
    Condenser__ObjectInfo vec;
    void *p = NULL;
    switch (t) {
    case CONDENSER__MSG_TYPE__MSG_METRICS:
        condenser__metrics__init(&met);
        met.train_ms = 1000;
        p = &met;
        break;
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
        condenser__advertise_keys__init(&adv);
        adv.advert = (ProtobufCBinaryData){sizeof advert, advert};
        adv.participant_id = 1;
        p = &adv;
        break;
    default:
        condenser__masked_input__init(&mi);
        condenser__object_info__init(&vec);
        vec.digest = (ProtobufCBinaryData){32, dig};
        vec.total_size = CND_PROTO_MASKED_HDR + 20000;
        vec.chunk_size = CND_PROTO_CHUNK_MAX;
        vec.chunk_count = 1;
        mi.vector = &vec;
        mi.bit_width = 16;
        mi.length = 10000;
        mi.participant_id = 1;
        p = &mi;
        t = CONDENSER__MSG_TYPE__MSG_MASKED_INPUT;
        break;
    }
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, t, p, 42, round, claimed ? claimed : me->name, me->seq++);
    uint8_t *out = NULL;
    int rc = cnd_proto_encode(&out, n, &env);
    CHECK_EQ_INT(rc, 0);
    return out;
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    registry_t reg;
    fx_reg_init(&reg);
    static ident_t srv, good, garbler, replayer, laggard, spoofer, dev, big;
    fx_ident(&srv, "coordinator");
    fx_ident(&good, "site-good");
    fx_ident(&garbler, "site-garbler");
    fx_ident(&replayer, "site-replayer");
    fx_ident(&laggard, "site-laggard");
    fx_ident(&spoofer, "site-spoofer");
    fx_ident(&dev, "device-1");
    fx_ident(&big, "site-big");
    coord_t c;
    memset(&c, 0, sizeof c);
    c.srv = &srv;
    c.view = (cnd_round_view_t){42, 3, CND_PHASE_MASKED};
    const ident_t *all[] = {&good, &garbler, &replayer, &laggard, &spoofer, &dev, &big};
    for (int i = 0; i < 7; i++) {
        fx_reg_add(&reg, all[i]);
        c.peers[i].id = all[i];
        c.peers[i].role =
            all[i] == &dev ? CONDENSER__ROLE__ROLE_DEVICE : CONDENSER__ROLE__ROLE_SITE;
        cnd_seqwin_init(&c.peers[i].win);
    }
    c.npeers = 7;
    c.s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!c.s) return check_result("test_transport_gate");
    const char *ep = cnd_server_endpoint(c.s);
    cnd_client_t *cg = fx_client(ep, srv.pk, &good, 0);
    cnd_client_t *cx = fx_client(ep, srv.pk, &garbler, 0);
    cnd_client_t *cr = fx_client(ep, srv.pk, &replayer, 0);
    cnd_client_t *cl = fx_client(ep, srv.pk, &laggard, 0);
    cnd_client_t *cs = fx_client(ep, srv.pk, &spoofer, 0);
    cnd_client_t *cd = fx_client(ep, srv.pk, &dev, 0);
    cnd_client_t *cb = fx_client(ep, srv.pk, &big, 4 * (int)CND_PROTO_MAX_MSG);
    size_t n;
    uint8_t *b;
    uint64_t ref = 0;

    /* The good site is served. */
    b = s_msg(&good, NULL, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cg, b, n, NULL), 0);
    free(b);

    /* Garbage bytes: malformed. A valid envelope with one bad field: bad field. */
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
    CHECK_EQ_INT(s_exchange(&c, cx, junk, sizeof junk, &ref), CONDENSER__ERROR_CODE__ERR_MALFORMED);
    CHECK_EQ_INT(ref, 0);
    Condenser__AdvertiseKeys adv;
    condenser__advertise_keys__init(&adv); /* no advert: a required field missing */
    adv.participant_id = 1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, &adv, 42, 3,
                            garbler.name, garbler.seq++);
    /* pack without validation, as a broken or hostile client would */
    n = condenser__envelope__get_packed_size(&env);
    b = malloc(n);
    condenser__envelope__pack(&env, b);
    CHECK_EQ_INT(s_exchange(&c, cx, b, n, &ref), CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
    CHECK_EQ_INT(ref, env.seq);
    free(b);

    /* A replayed message: accepted once, refused the second time. */
    b = s_msg(&replayer, NULL, CONDENSER__MSG_TYPE__MSG_METRICS, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cr, b, n, NULL), 0);
    CHECK_EQ_INT(s_exchange(&c, cr, b, n, NULL), CONDENSER__ERROR_CODE__ERR_REPLAY);
    free(b);

    /* Out of phase, and a stale round. Neither consumes its sequence number's slot... */
    b = s_msg(&laggard, NULL, CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cl, b, n, NULL), CONDENSER__ERROR_CODE__ERR_WRONG_PHASE);
    free(b);
    b = s_msg(&laggard, NULL, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, 2, &n);
    CHECK_EQ_INT(s_exchange(&c, cl, b, n, NULL), CONDENSER__ERROR_CODE__ERR_STALE_ROUND);
    free(b);
    /* ...and the laggard's next proper message is accepted. */
    b = s_msg(&laggard, NULL, CONDENSER__MSG_TYPE__MSG_MASKED_INPUT, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cl, b, n, NULL), 0);
    free(b);

    /* A sender field that is not the authenticated identity; a device sending site messages. */
    b = s_msg(&spoofer, "site-good", CONDENSER__MSG_TYPE__MSG_METRICS, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cs, b, n, NULL), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    free(b);
    b = s_msg(&dev, NULL, CONDENSER__MSG_TYPE__MSG_METRICS, 3, &n);
    CHECK_EQ_INT(s_exchange(&c, cd, b, n, NULL), CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    free(b);

    /* An oversized frame: the connection drops, nothing reaches the coordinator loop. */
    n = CND_PROTO_MAX_MSG + 100;
    b = calloc(1, n);
    CHECK_EQ_INT(cnd_client_send(cb, b, n, 3000), 0);
    free(b);
    CHECK_EQ_INT(s_coord_step(&c, 300), 0);

    /* The good site is still served, and its replay window moved on. */
    b = s_msg(&good, NULL, CONDENSER__MSG_TYPE__MSG_METRICS, 3, &n);
    uint64_t sent_seq = good.seq - 1;
    CHECK_EQ_INT(s_exchange(&c, cg, b, n, &ref), 0);
    CHECK_EQ_INT(ref, sent_seq);
    free(b);
    CHECK_EQ_INT(c.accepted, 4); /* good x2, replayer x1, laggard x1 */
    CHECK_EQ_INT(c.peers[0].win.top, sent_seq);

    cnd_client_t *clients[] = {cg, cx, cr, cl, cs, cd, cb};
    for (int i = 0; i < 7; i++) cnd_client_destroy(&clients[i]);
    cnd_server_destroy(&c.s);
    return check_result("test_transport_gate");
}
