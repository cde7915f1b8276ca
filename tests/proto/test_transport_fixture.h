/*
 * test_transport_fixture.h: what test_transport.c and test_zap.c share: node identities
 * (Ed25519, converted to CURVE keys exactly as a real node does), an enrolment registry behind
 * the ZAP allow() callback with revocation, an event recorder, and small wait helpers. The
 * registry is locked because allow() and the event callback run on the ZAP thread.
 */
#ifndef TEST_TRANSPORT_FIXTURE_H
#define TEST_TRANSPORT_FIXTURE_H

#include "check.h"
#include "proto.h"
#include "transport.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
    char name[CND_USER_ID_MAX];
    uint8_t ed_pk[32], ed_sk[64]; /* identity */
    uint8_t pk[32], sk[32];       /* CURVE form */
    uint64_t seq;                 /* next envelope sequence number */
} ident_t;

enum { REG_MAX = 16 };

typedef struct {
    pthread_mutex_t mu;
    const ident_t *ids[REG_MAX];
    int revoked[REG_MAX];
    int n;
    int mode; /* 0: normal; 1: allow() returns a bad user id; 2: allow() fails (< 0) */
    int allow_calls;
    int ev[8]; /* count per cnd_transport_event_kind_t */
    uint8_t last_refused[32];
    char last_address[64];
} registry_t;

static inline void fx_ident(ident_t *id, const char *name)
{
    memset(id, 0, sizeof *id);
    snprintf(id->name, sizeof id->name, "%s", name);
    crypto_sign_keypair(id->ed_pk, id->ed_sk);
    int rc = cnd_transport_curve_keys(id->pk, id->sk, id->ed_pk, id->ed_sk);
    CHECK_EQ_INT(rc, 0);
    id->seq = cnd_proto_seq_start();
}

static inline void fx_reg_init(registry_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static inline void fx_reg_add(registry_t *r, const ident_t *id)
{
    pthread_mutex_lock(&r->mu);
    r->ids[r->n++] = id;
    pthread_mutex_unlock(&r->mu);
}

static inline void fx_reg_revoke(registry_t *r, const ident_t *id)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (r->ids[i] == id) r->revoked[i] = 1;
    pthread_mutex_unlock(&r->mu);
}

static inline int fx_allow(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    registry_t *r = ctx;
    int ok = 0;
    pthread_mutex_lock(&r->mu);
    r->allow_calls++;
    for (int i = 0; i < r->n; i++)
        if (!r->revoked[i] && sodium_memcmp(r->ids[i]->pk, pub, 32) == 0) {
            snprintf(user_id, CND_USER_ID_MAX, "%s", r->ids[i]->name);
            ok = 1;
        }
    int mode = r->mode;
    pthread_mutex_unlock(&r->mu);
    if (ok && mode == 1) snprintf(user_id, CND_USER_ID_MAX, "bad name!");
    if (mode == 2) return -1;
    return ok;
}

static inline void fx_event(void *ctx, const cnd_transport_event_t *ev)
{
    registry_t *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (ev->kind > 0 && ev->kind < 8) r->ev[ev->kind]++;
    if (ev->kind == CND_TEV_REFUSED) {
        memcpy(r->last_refused, ev->pub, 32);
        snprintf(r->last_address, sizeof r->last_address, "%s", ev->address);
    }
    pthread_mutex_unlock(&r->mu);
}

static inline int fx_ev(registry_t *r, cnd_transport_event_kind_t k)
{
    pthread_mutex_lock(&r->mu);
    int v = r->ev[k];
    pthread_mutex_unlock(&r->mu);
    return v;
}

static inline void fx_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline double fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline cnd_server_t *fx_server(registry_t *r, const ident_t *srv, int recheck, int max_msg,
                                      int hwm, int hb_ms)
{
    cnd_server_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = "tcp://127.0.0.1:*";
    o.secret_key = srv->sk;
    o.allow = fx_allow;
    o.allow_ctx = r;
    o.on_event = fx_event;
    o.event_ctx = r;
    o.recheck = recheck;
    o.max_msg = max_msg;
    o.hwm = hwm;
    o.heartbeat_ivl_ms = hb_ms;
    cnd_server_t *s = NULL;
    int rc = cnd_server_new(&s, &o);
    if (rc) fprintf(stderr, "server: %s\n", cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    return s;
}

static inline cnd_client_t *fx_client(const char *endpoint, const uint8_t server_pk[32],
                                      const ident_t *me, int max_msg)
{
    cnd_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = endpoint;
    o.server_key = server_pk;
    o.public_key = me->pk;
    o.secret_key = me->sk;
    o.max_msg = max_msg;
    o.reconnect_ivl_ms = 50;
    o.reconnect_ivl_max_ms = 200;
    cnd_client_t *c = NULL;
    int rc = cnd_client_new(&c, &o);
    if (rc) fprintf(stderr, "client: %s\n", cnd_err_detail());
    CHECK_EQ_INT(rc, 0);
    return c;
}

/* An encoded heartbeat from `me` (caller frees). */
static inline uint8_t *fx_heartbeat(ident_t *me, size_t *n)
{
    Condenser__Heartbeat hb;
    condenser__heartbeat__init(&hb);
    hb.unix_ms = 1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb, 0, 0, me->name,
                            me->seq++);
    uint8_t *buf = NULL;
    int rc = cnd_proto_encode(&buf, n, &env);
    CHECK_EQ_INT(rc, 0);
    return buf;
}

/* Client sends a heartbeat, server checks who sent it and answers with a heartbeat of its own,
 * client decodes the answer. Returns 1 when all of it worked. */
static inline int fx_round_trip(cnd_server_t *s, cnd_client_t *c, ident_t *me, ident_t *srv)
{
    size_t n;
    uint8_t *buf = fx_heartbeat(me, &n);
    int rc = cnd_client_send(c, buf, n, 3000);
    free(buf);
    if (rc) {
        fprintf(stderr, "round trip send (%s): %s\n", me->name, cnd_err_detail());
        return 0;
    }
    cnd_frame_t f;
    rc = cnd_server_recv(s, &f, 3000);
    if (rc) {
        fprintf(stderr, "round trip recv (%s): %s\n", me->name, cnd_err_detail());
        return 0;
    }
    int ok = strcmp(f.user_id, me->name) == 0 && memcmp(f.curve_key, me->pk, 32) == 0;
    cnd_proto_msg_t *m = NULL;
    ok = ok && cnd_proto_decode(&m, NULL, f.data, f.len) == 0;
    ok = ok && cnd_proto_check_sender(NULL, m->env, f.user_id) == 0;
    cnd_proto_msg_destroy(&m);
    buf = fx_heartbeat(srv, &n);
    ok = ok && cnd_server_send(s, &f.peer, buf, n, 1000) == 0;
    free(buf);
    cnd_frame_clear(&f);
    uint8_t *back = NULL;
    size_t bl = 0;
    ok = ok && cnd_client_recv(c, &back, &bl, 3000) == 0;
    ok = ok && cnd_proto_decode(&m, NULL, back, bl) == 0 &&
         m->env->type == CONDENSER__MSG_TYPE__MSG_HEARTBEAT;
    cnd_proto_msg_destroy(&m);
    free(back);
    return ok;
}

#endif
