/*
 * test_zap.c: admission control. Only keys the allow() callback accepts get a session: an
 * unknown key never gets an answer and the server counts and reports the refusal (with the
 * key); a key revoked while connected is cut off at its next message (recheck) and refused when
 * it reconnects; without recheck it is refused on reconnect; allow() failures and bad user ids
 * refuse too; a node enrolled after it started (or refused during a store failure) gets in
 * without a restart; and a client that lies about its sender name is caught by the proto check.
 */
#include "test_transport_fixture.h"

#include <stdlib.h>

static void test_unknown_key(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a, stranger;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_ident(&stranger, "site-x");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);
    cnd_client_t *ca = fx_client(ep, srv.pk, &a, 0);
    cnd_client_t *cx = fx_client(ep, srv.pk, &stranger, 0);

    /* The stranger's send never gets a session: it fails, and says why once ZAP refused it. */
    size_t n;
    uint8_t *hb = fx_heartbeat(&stranger, &n);
    int rc = cnd_client_send(cx, hb, n, 300);
    double t0 = fx_now_ms();
    while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(cx, hb, n, 200);
    free(hb);
    CHECK_EQ_INT(rc, CND_EPERM);
    CHECK(strstr(cnd_err_detail(), "refused") != NULL);
    uint8_t *got = NULL;
    size_t gl = 0;
    CHECK_EQ_INT(cnd_client_recv(cx, &got, &gl, 200), CND_EPERM);
    CHECK(got == NULL);
    cnd_client_state_t cs;
    cnd_client_state(cx, &cs);
    CHECK(!cs.connected);
    CHECK(cs.auth_refusals >= 1);
    CHECK_EQ_INT(cs.last_status, 400);

    /* The enrolled client is served throughout; nothing from the stranger arrives. */
    CHECK(fx_round_trip(s, ca, &a, &srv));
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 300), CND_ETIMEOUT);

    cnd_server_stats_t st;
    cnd_server_stats(s, &st);
    CHECK(st.zap_refused >= 1);
    CHECK_EQ_INT(st.zap_admitted, 1);
    CHECK_EQ_INT(st.received, 1);
    CHECK(fx_ev(&reg, CND_TEV_REFUSED) >= 1);
    CHECK_EQ_INT(fx_ev(&reg, CND_TEV_ADMITTED), 1);
    pthread_mutex_lock(&reg.mu);
    CHECK(memcmp(reg.last_refused, stranger.pk, 32) == 0); /* the refusal names the key */
    CHECK(strcmp(reg.last_address, "127.0.0.1") == 0);
    pthread_mutex_unlock(&reg.mu);

    cnd_client_destroy(&cx);
    cnd_client_destroy(&ca);
    cnd_server_destroy(&s);
}

/* Revocation while connected, with recheck: the next message is dropped, reconnect refused. */
static void test_revoked_recheck(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a, b;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_ident(&b, "site-b");
    fx_reg_add(&reg, &a);
    fx_reg_add(&reg, &b);
    cnd_server_t *s = fx_server(&reg, &srv, 1, 0, 0, 0);
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);
    cnd_client_t *ca = fx_client(ep, srv.pk, &a, 0);
    cnd_client_t *cb = fx_client(ep, srv.pk, &b, 0);
    CHECK(fx_round_trip(s, ca, &a, &srv));
    CHECK(fx_round_trip(s, cb, &b, &srv));

    fx_reg_revoke(&reg, &a);
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    CHECK_EQ_INT(cnd_client_send(ca, hb, n, 1000), 0); /* the old session still carries it... */
    free(hb);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 500), CND_ETIMEOUT); /* ...but it is dropped */
    cnd_server_stats_t st;
    cnd_server_stats(s, &st);
    CHECK_EQ_INT(st.revoked_drops, 1);
    CHECK_EQ_INT(fx_ev(&reg, CND_TEV_REVOKED_DROP), 1);
    CHECK(fx_round_trip(s, cb, &b, &srv)); /* B unaffected */

    /* Reconnect with the same key: refused by ZAP. */
    cnd_client_destroy(&ca);
    ca = fx_client(ep, srv.pk, &a, 0);
    hb = fx_heartbeat(&a, &n);
    int rc = CND_ETIMEOUT;
    double t0 = fx_now_ms();
    while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(ca, hb, n, 200);
    free(hb);
    CHECK_EQ_INT(rc, CND_EPERM);
    CHECK_EQ_INT(cnd_server_recv(s, &f, 300), CND_ETIMEOUT);
    cnd_server_stats(s, &st);
    CHECK(st.zap_refused >= 1);
    CHECK_EQ_INT(st.zap_admitted, 2);
    CHECK(fx_round_trip(s, cb, &b, &srv));

    cnd_client_destroy(&ca);
    cnd_client_destroy(&cb);
    cnd_server_destroy(&s);
}

/* Without recheck, an open session outlives the revocation, but reconnecting is refused. */
static void test_revoked_on_reconnect(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);
    cnd_client_t *ca = fx_client(ep, srv.pk, &a, 0);
    CHECK(fx_round_trip(s, ca, &a, &srv));
    fx_reg_revoke(&reg, &a);
    CHECK(fx_round_trip(s, ca, &a, &srv)); /* documented: ZAP runs per connection */
    cnd_client_destroy(&ca);
    ca = fx_client(ep, srv.pk, &a, 0);
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    int rc = CND_ETIMEOUT;
    double t0 = fx_now_ms();
    while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(ca, hb, n, 200);
    free(hb);
    CHECK_EQ_INT(rc, CND_EPERM);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 300), CND_ETIMEOUT);
    cnd_client_destroy(&ca);
    cnd_server_destroy(&s);
}

/* allow() failing, or handing back an unusable user id, refuses the client (status 500). */
static void test_allow_failures(void)
{
    for (int mode = 1; mode <= 2; mode++) {
        registry_t reg;
        fx_reg_init(&reg);
        ident_t srv, a;
        fx_ident(&srv, "coordinator");
        fx_ident(&a, "site-a");
        fx_reg_add(&reg, &a);
        reg.mode = mode;
        cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
        if (!s) return;
        cnd_client_t *ca = fx_client(cnd_server_endpoint(s), srv.pk, &a, 0);
        size_t n;
        uint8_t *hb = fx_heartbeat(&a, &n);
        int rc = CND_ETIMEOUT;
        double t0 = fx_now_ms();
        while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(ca, hb, n, 200);
        free(hb);
        CHECK_EQ_INT(rc, CND_EPERM);
        cnd_client_state_t cs;
        cnd_client_state(ca, &cs);
        CHECK_EQ_INT(cs.last_status, 500);
        cnd_server_stats_t st;
        cnd_server_stats(s, &st);
        CHECK_EQ_INT(st.zap_admitted, 0);
        CHECK(st.zap_refused >= 1);
        cnd_client_destroy(&ca);
        cnd_server_destroy(&s);
    }
}

/* libzmq gives up after a refused handshake; the client re-dials, so a node that is enrolled
 * after it started, or that was refused while allow() was failing, gets in without a restart. */
static void test_admitted_later(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    cnd_client_t *ca = fx_client(cnd_server_endpoint(s), srv.pk, &a, 0); /* re-dial: 200 ms */
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    int rc = CND_ETIMEOUT;
    double t0 = fx_now_ms();
    while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(ca, hb, n, 200);
    CHECK_EQ_INT(rc, CND_EPERM); /* not enrolled yet */
    fx_reg_add(&reg, &a);        /* the operator enrolls it */
    CHECK_EQ_INT(cnd_client_send(ca, hb, n, 3000), 0);
    free(hb);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    CHECK(strcmp(f.user_id, "site-a") == 0);
    cnd_frame_clear(&f);
    CHECK(fx_round_trip(s, ca, &a, &srv));
    cnd_client_state_t cs;
    cnd_client_state(ca, &cs);
    CHECK(cs.connected);
    CHECK(cs.auth_refusals >= 1);
    cnd_server_stats_t st;
    cnd_server_stats(s, &st);
    CHECK_EQ_INT(st.zap_admitted, 1);

    /* A transient failure of the admission store (status 500) heals the same way. */
    ident_t b;
    fx_ident(&b, "site-b");
    fx_reg_add(&reg, &b);
    pthread_mutex_lock(&reg.mu);
    reg.mode = 2;
    pthread_mutex_unlock(&reg.mu);
    cnd_client_t *cb = fx_client(cnd_server_endpoint(s), srv.pk, &b, 0);
    hb = fx_heartbeat(&b, &n);
    rc = CND_ETIMEOUT;
    t0 = fx_now_ms();
    while (rc == CND_ETIMEOUT && fx_now_ms() - t0 < 3000) rc = cnd_client_send(cb, hb, n, 200);
    CHECK_EQ_INT(rc, CND_EPERM);
    cnd_client_state(cb, &cs);
    CHECK_EQ_INT(cs.last_status, 500);
    pthread_mutex_lock(&reg.mu);
    reg.mode = 0;
    pthread_mutex_unlock(&reg.mu);
    CHECK_EQ_INT(cnd_client_send(cb, hb, n, 3000), 0);
    free(hb);
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    CHECK(strcmp(f.user_id, "site-b") == 0);
    cnd_frame_clear(&f);

    cnd_client_destroy(&cb);
    cnd_client_destroy(&ca);
    cnd_server_destroy(&s);
}

/* An authenticated client that claims another node's name in the envelope is caught. */
static void test_sender_spoof(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    cnd_client_t *ca = fx_client(cnd_server_endpoint(s), srv.pk, &a, 0);
    ident_t liar = a;
    snprintf(liar.name, sizeof liar.name, "site-b");
    size_t n;
    uint8_t *hb = fx_heartbeat(&liar, &n);
    CHECK_EQ_INT(cnd_client_send(ca, hb, n, 3000), 0);
    free(hb);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    CHECK(strcmp(f.user_id, "site-a") == 0);
    cnd_proto_msg_t *m = NULL;
    CHECK_EQ_INT(cnd_proto_decode(&m, NULL, f.data, f.len), 0);
    cnd_proto_reject_t rej;
    if (m) {
        CHECK_EQ_INT(cnd_proto_check_sender(&rej, m->env, f.user_id), CND_EPERM);
        CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
        /* the error reply goes back to the liar and is a valid message */
        Condenser__Error err;
        char tb[CND_PROTO_TEXT_MAX + 1];
        cnd_proto_error_init(&err, tb, &rej, cnd_err_detail());
        Condenser__Envelope env;
        cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ERROR, &err, 0, 0, srv.name,
                                srv.seq++);
        uint8_t *out;
        size_t on;
        CHECK_EQ_INT(cnd_proto_encode(&out, &on, &env), 0);
        CHECK_EQ_INT(cnd_server_send(s, &f.peer, out, on, 1000), 0);
        free(out);
        uint8_t *back;
        size_t bl;
        CHECK_EQ_INT(cnd_client_recv(ca, &back, &bl, 3000), 0);
        cnd_proto_msg_t *em = NULL;
        CHECK_EQ_INT(cnd_proto_decode(&em, NULL, back, bl), 0);
        if (em) {
            CHECK_EQ_INT(em->env->error->code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
            CHECK_EQ_INT(em->env->error->ref_seq, m->env->seq);
        }
        cnd_proto_msg_destroy(&em);
        free(back);
    }
    cnd_proto_msg_destroy(&m);
    cnd_frame_clear(&f);
    cnd_client_destroy(&ca);
    cnd_server_destroy(&s);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    test_unknown_key();
    test_revoked_recheck();
    test_revoked_on_reconnect();
    test_allow_failures();
    test_admitted_later();
    test_sender_spoof();
    return check_result("test_zap");
}
