/*
 * test_transport.c: the CurveZMQ transport over real loopback sockets. Key conversion from
 * Ed25519; authenticated round trips with several clients, each frame attributed to its key;
 * an oversized frame drops only its own connection while another client keeps being served;
 * multipart frames dropped; an unencrypted client and a client pinning the wrong server key get
 * nothing through; a send to a vanished peer fails (ROUTER_MANDATORY); a peer that stops reading
 * makes sends time out instead of queueing without bound; a frozen peer is dropped by heartbeats;
 * a heartbeat timeout longer than libzmq can carry is capped instead of wrapping at the peer.
 */
#include "test_transport_fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static void test_keys(void)
{
    ident_t a;
    fx_ident(&a, "a");
    uint8_t pk2[32];
    cnd_transport_curve_public_from_secret(pk2, a.sk);
    CHECK(memcmp(pk2, a.pk, 32) == 0); /* the converted pair is a real X25519 pair */
    uint8_t pk3[32];
    CHECK_EQ_INT(cnd_transport_curve_public(pk3, a.ed_pk), 0);
    CHECK(memcmp(pk3, a.pk, 32) == 0);
    /* a secret key that does not belong to the public key is refused */
    ident_t b;
    fx_ident(&b, "b");
    uint8_t cpk[32], csk[32];
    CHECK_EQ_INT(cnd_transport_curve_keys(cpk, csk, a.ed_pk, b.ed_sk), CND_ECRYPTO);
    /* not a point on the curve */
    uint8_t junk[32];
    memset(junk, 0xff, sizeof junk);
    CHECK_EQ_INT(cnd_transport_curve_public(cpk, junk), CND_ECRYPTO);
}

static void test_round_trips_and_oversize(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a, b;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_ident(&b, "site-b");
    fx_reg_add(&reg, &a);
    fx_reg_add(&reg, &b);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);
    CHECK(strncmp(ep, "tcp://127.0.0.1:", 16) == 0 && strcmp(ep, "tcp://127.0.0.1:*") != 0);
    /* client A may send frames larger than the server accepts, to test the server's limit */
    cnd_client_t *ca = fx_client(ep, srv.pk, &a, 4 * (int)CND_PROTO_MAX_MSG);
    cnd_client_t *cb = fx_client(ep, srv.pk, &b, 0);

    for (int i = 0; i < 3; i++) {
        CHECK(fx_round_trip(s, ca, &a, &srv));
        CHECK(fx_round_trip(s, cb, &b, &srv));
    }
    cnd_client_state_t st;
    cnd_client_state(ca, &st);
    CHECK(st.connected);
    CHECK_EQ_INT(st.handshakes, 1);
    CHECK_EQ_INT(st.auth_refusals, 0);

    /* Interleaved sends from both: each frame carries its own sender's identity. */
    size_t n;
    uint8_t *ha = fx_heartbeat(&a, &n);
    CHECK_EQ_INT(cnd_client_send(ca, ha, n, 1000), 0);
    free(ha);
    uint8_t *hb = fx_heartbeat(&b, &n);
    CHECK_EQ_INT(cnd_client_send(cb, hb, n, 1000), 0);
    free(hb);
    int from_a = 0, from_b = 0;
    for (int i = 0; i < 2; i++) {
        cnd_frame_t f;
        CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
        if (strcmp(f.user_id, "site-a") == 0 && memcmp(f.curve_key, a.pk, 32) == 0) from_a++;
        if (strcmp(f.user_id, "site-b") == 0 && memcmp(f.curve_key, b.pk, 32) == 0) from_b++;
        cnd_frame_clear(&f);
    }
    CHECK(from_a == 1 && from_b == 1);

    /* A frame of exactly the documented limit passes both ways under CURVE (whose MESSAGE
     * command adds 33 bytes that ZMQ_MAXMSGSIZE counts). */
    {
        size_t lim = CND_PROTO_MAX_MSG;
        uint8_t *full = malloc(lim);
        memset(full, 0x5a, lim);
        CHECK_EQ_INT(cnd_client_send(ca, full, lim, 3000), 0);
        cnd_frame_t ff;
        CHECK_EQ_INT(cnd_server_recv(s, &ff, 3000), 0);
        CHECK_EQ_INT(ff.len, lim);
        CHECK(strcmp(ff.address, "127.0.0.1") == 0); /* the peer's address travels along */
        CHECK_EQ_INT(cnd_server_send(s, &ff.peer, full, lim, 3000), 0);
        uint8_t *back = NULL;
        size_t bl = 0;
        CHECK_EQ_INT(cnd_client_recv(ca, &back, &bl, 3000), 0);
        CHECK_EQ_INT(bl, lim);
        CHECK(back && memcmp(back, full, lim) == 0);
        free(back);
        cnd_frame_clear(&ff);
        free(full);
    }

    /* Oversized: A sends one byte more than ZMQ_MAXMSGSIZE. libzmq drops A's connection; the
     * frame never reaches the application; B is served meanwhile; A reconnects afterwards. */
    cnd_server_stats_t before, after;
    cnd_server_stats(s, &before);
    size_t big_n = CND_PROTO_MAX_MSG + 1;
    uint8_t *big = calloc(1, big_n);
    CHECK_EQ_INT(cnd_client_send(ca, big, big_n, 1000), 0);
    free(big);
    /* The local side refuses frames over its own limit without sending anything. */
    big_n = (size_t)4 * CND_PROTO_MAX_MSG + 1;
    big = calloc(1, big_n);
    CHECK_EQ_INT(cnd_client_send(ca, big, big_n, 1000), CND_ERANGE);
    free(big);
    CHECK(fx_round_trip(s, cb, &b, &srv));
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 300), CND_ETIMEOUT); /* nothing from A got through */
    double t0 = fx_now_ms();
    do {
        cnd_server_stats(s, &after);
        if (after.disconnects > before.disconnects) break;
        fx_sleep_ms(20);
    } while (fx_now_ms() - t0 < 3000);
    CHECK(after.disconnects > before.disconnects);
    CHECK_EQ_INT(after.received, before.received + 1); /* only B's round trip */
    /* A's next normal frame goes through a new authenticated session. */
    CHECK(fx_round_trip(s, ca, &a, &srv));
    cnd_client_state(ca, &st);
    CHECK(st.handshakes >= 2);
    CHECK(st.disconnects >= 1);

    /* A multipart frame (a protocol violation for us) is dropped, the next one is served. */
    void *raw = cnd_client_socket(cb);
    CHECK(zmq_send(raw, "part1", 5, ZMQ_SNDMORE) == 5);
    CHECK(zmq_send(raw, "part2", 5, 0) == 5);
    CHECK(fx_round_trip(s, cb, &b, &srv));
    cnd_server_stats(s, &after);
    CHECK_EQ_INT(after.malformed_drops, before.malformed_drops + 1);
    CHECK(fx_ev(&reg, CND_TEV_MALFORMED_DROP) >= 1);

    /* A send to a peer that has gone fails with ENOTFOUND, never silently. */
    uint8_t *x = fx_heartbeat(&b, &n);
    CHECK_EQ_INT(cnd_client_send(cb, x, n, 1000), 0);
    free(x);
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    cnd_client_destroy(&cb);
    CHECK(cb == NULL);
    int rc = 0;
    t0 = fx_now_ms();
    uint8_t *reply = fx_heartbeat(&srv, &n);
    do {
        rc = cnd_server_send(s, &f.peer, reply, n, 100);
        if (rc == CND_ENOTFOUND) break;
        fx_sleep_ms(20);
    } while (fx_now_ms() - t0 < 3000);
    CHECK_EQ_INT(rc, CND_ENOTFOUND);
    free(reply);
    cnd_frame_clear(&f);
    /* frames over the server's own limit are refused locally */
    cnd_peer_t nobody = {{1, 2, 3}, 3};
    CHECK_EQ_INT(cnd_server_send(s, &nobody, "x", 1, 10), CND_ENOTFOUND);
    static uint8_t huge[CND_PROTO_MAX_MSG + 1];
    CHECK_EQ_INT(cnd_server_send(s, &nobody, huge, sizeof huge, 10), CND_ERANGE);

    /* Timeouts are honoured. */
    t0 = fx_now_ms();
    CHECK_EQ_INT(cnd_server_recv(s, &f, 100), CND_ETIMEOUT);
    double dt = fx_now_ms() - t0;
    CHECK(dt >= 90 && dt < 2000);

    cnd_client_destroy(&ca);
    cnd_server_destroy(&s);
    CHECK(s == NULL);
    cnd_server_destroy(&s);
}

/* cnd_server_probe tells an open connection from a closed one without the client's application
 * seeing anything, and says when the queue towards a peer is full. */
static void test_probe(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    cnd_client_t *c = fx_client(cnd_server_endpoint(s), srv.pk, &a, 0);
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    CHECK_EQ_INT(cnd_client_send(c, hb, n, 3000), 0);
    free(hb);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(cnd_server_probe(s, &f.peer), 0);
    /* the probes are transport-level: the client's application receives nothing */
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cnd_client_recv(c, &data, &len, 300), CND_ETIMEOUT);
    /* a real frame after them still arrives */
    hb = fx_heartbeat(&srv, &n);
    CHECK_EQ_INT(cnd_server_send(s, &f.peer, hb, n, 1000), 0);
    free(hb);
    CHECK_EQ_INT(cnd_client_recv(c, &data, &len, 3000), 0);
    CHECK(len > 0);
    free(data);
    /* once the client is gone, the probe says so within a moment */
    cnd_client_destroy(&c);
    int rc = 0;
    double t0 = fx_now_ms();
    do {
        rc = cnd_server_probe(s, &f.peer);
        if (rc == CND_ENOTFOUND) break;
        fx_sleep_ms(10);
    } while (fx_now_ms() - t0 < 3000);
    CHECK_EQ_INT(rc, CND_ENOTFOUND);
    fprintf(stderr, "probe: closed connection seen after %.0f ms\n", fx_now_ms() - t0);
    cnd_frame_clear(&f);
    cnd_server_destroy(&s);
}

/* Clients that cannot authenticate the server, or do not speak CURVE, get nothing through. */
static void test_unencrypted_and_wrong_server_key(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a, fake;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_ident(&fake, "impostor");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);

    /* a plain (NULL mechanism) DEALER */
    void *ctx = zmq_ctx_new();
    void *plain = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(plain, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_connect(plain, ep) == 0);
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    int tmo = 200;
    zmq_setsockopt(plain, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    (void)zmq_send(plain, hb, n, 0); /* may queue or time out; either way nothing must arrive */

    /* an enrolled client that pins the wrong server key (e.g. a man in the middle's) */
    cnd_client_t *wrong = fx_client(ep, fake.pk, &a, 0);
    CHECK_EQ_INT(cnd_client_send(wrong, hb, n, 500), CND_ETIMEOUT);
    free(hb);

    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 700), CND_ETIMEOUT);
    cnd_server_stats_t st;
    cnd_server_stats(s, &st);
    CHECK_EQ_INT(st.received, 0);
    CHECK(st.handshake_failures >= 1);
    CHECK_EQ_INT(st.zap_admitted, 0); /* neither got as far as ZAP with a valid handshake */
    cnd_client_state_t cs;
    cnd_client_state(wrong, &cs);
    CHECK(!cs.connected);
    CHECK_EQ_INT(cs.handshakes, 0);
    /* what lets a node say "wrong coordinator key?" instead of waiting in silence: the TCP
     * connection is made, the handshake fails */
    CHECK(cs.tcp_connects >= 1);
    CHECK(cs.handshake_failures >= 1);
    CHECK_EQ_INT(cs.auth_refusals, 0);

    /* the genuine client still works next to them */
    cnd_client_t *ok = fx_client(ep, srv.pk, &a, 0);
    CHECK(fx_round_trip(s, ok, &a, &srv));

    cnd_client_destroy(&ok);
    cnd_client_destroy(&wrong);
    zmq_close(plain);
    zmq_ctx_term(ctx);
    cnd_server_destroy(&s);
}

/* A peer that stops reading: the server's queue towards it is bounded and sends time out. */
static void test_bounded_queue(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 4, 0);
    if (!s) return;
    cnd_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = cnd_server_endpoint(s);
    o.server_key = srv.pk;
    o.public_key = a.pk;
    o.secret_key = a.sk;
    o.hwm = 4;
    cnd_client_t *c = NULL;
    CHECK_EQ_INT(cnd_client_new(&c, &o), 0);
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    CHECK_EQ_INT(cnd_client_send(c, hb, n, 3000), 0);
    free(hb);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 3000), 0);
    /* the client never reads; 256 KiB frames fill the HWMs and the kernel buffers */
    uint8_t *blob = calloc(1, CND_PROTO_CHUNK_MAX);
    int sent = 0, rc = 0;
    for (int i = 0; i < 2000; i++) {
        rc = cnd_server_send(s, &f.peer, blob, CND_PROTO_CHUNK_MAX, 100);
        if (rc) break;
        sent++;
    }
    CHECK_EQ_INT(rc, CND_ETIMEOUT);
    CHECK(sent > 0 && sent < 2000);
    free(blob);
    cnd_frame_clear(&f);
    cnd_client_destroy(&c);
    cnd_server_destroy(&s);
}

/* A client process frozen with SIGSTOP keeps its TCP connection open but stops answering
 * ZMTP heartbeats: the server drops it after the heartbeat timeout. */
static void test_heartbeat_drop(void)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    pid_t pid = fork(); /* before any ZeroMQ context exists in this test */
    if (pid == 0) {
        close(pfd[1]);
        char ep[256] = "";
        ssize_t r = read(pfd[0], ep, sizeof ep - 1);
        if (r <= 0) _exit(2);
        ep[r] = '\0';
        cnd_client_opts_t o;
        memset(&o, 0, sizeof o);
        o.endpoint = ep;
        o.server_key = srv.pk;
        o.public_key = a.pk;
        o.secret_key = a.sk;
        o.heartbeat_ivl_ms = 100;
        cnd_client_t *c = NULL;
        if (cnd_client_new(&c, &o)) _exit(3);
        size_t n;
        uint8_t *hb = fx_heartbeat(&a, &n);
        if (cnd_client_send(c, hb, n, 3000)) _exit(4);
        fx_sleep_ms(8000); /* the parent stops and kills us long before */
        _exit(0);
    }
    close(pfd[0]);
    registry_t reg;
    fx_reg_init(&reg);
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 100); /* PING every 100 ms, drop at 300 */
    if (!s) return;
    const char *ep = cnd_server_endpoint(s);
    CHECK(write(pfd[1], ep, strlen(ep)) == (ssize_t)strlen(ep));
    close(pfd[1]);
    cnd_frame_t f;
    CHECK_EQ_INT(cnd_server_recv(s, &f, 5000), 0);
    CHECK(strcmp(f.user_id, "site-a") == 0);
    cnd_frame_clear(&f);
    kill(pid, SIGSTOP);
    cnd_server_stats_t st;
    double t0 = fx_now_ms();
    do {
        cnd_server_stats(s, &st);
        if (st.disconnects >= 1) break;
        fx_sleep_ms(50);
    } while (fx_now_ms() - t0 < 4000);
    CHECK(st.disconnects >= 1);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cnd_server_destroy(&s);
}

/* A long heartbeat timeout must not shrink at the peer. libzmq 4.3.4 sends ZMQ_HEARTBEAT_TTL in
 * a PING as 16 bits of deciseconds and the receiver multiplies it by 100 into a 16-bit field of
 * milliseconds, so a TTL above 65,535 ms wraps there: 655,400 ms arrives as 40 ms (1,800 s, the
 * rollout's 10-minute backstop, arrived as 30.5 s). A client that PINGs every 100 ms with that
 * timeout would be dropped by the server 40 ms after each PING; capped at 65.5 s it stays. */
static void test_heartbeat_ttl_cap(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "coordinator");
    fx_ident(&a, "site-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, 0);
    if (!s) return;
    cnd_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = cnd_server_endpoint(s);
    o.server_key = srv.pk;
    o.public_key = a.pk;
    o.secret_key = a.sk;
    o.heartbeat_ivl_ms = 100;
    o.heartbeat_timeout_ms = 655400; /* 6554 deciseconds: wraps to 40 ms at the peer */
    cnd_client_t *c = NULL;
    CHECK_EQ_INT(cnd_client_new(&c, &o), 0);
    if (!c) {
        cnd_server_destroy(&s);
        return;
    }
    int ttl = -1;
    size_t tl = sizeof ttl;
    CHECK(zmq_getsockopt(cnd_client_socket(c), ZMQ_HEARTBEAT_TTL, &ttl, &tl) == 0);
    CHECK_EQ_INT(ttl, 65500);
    CHECK(fx_round_trip(s, c, &a, &srv));
    fx_sleep_ms(1500); /* about 15 PINGs from the client */
    cnd_server_stats_t st;
    cnd_server_stats(s, &st);
    CHECK_EQ_INT((int)st.disconnects, 0);
    CHECK(fx_round_trip(s, c, &a, &srv));
    cnd_client_destroy(&c);
    /* PINGs every 10 minutes (rollout serve, fleet-sim): a TTL, capped below the interval, would
     * make an idle peer drop the connection 65.5 s after each PING; none is sent. */
    o.heartbeat_ivl_ms = 600000;
    o.heartbeat_timeout_ms = 0; /* 3 x 600 s */
    CHECK_EQ_INT(cnd_client_new(&c, &o), 0);
    ttl = -1;
    CHECK(c && zmq_getsockopt(cnd_client_socket(c), ZMQ_HEARTBEAT_TTL, &ttl, &tl) == 0);
    CHECK_EQ_INT(ttl, 0);
    cnd_client_destroy(&c);
    cnd_server_destroy(&s);
}

/* Returns socket option opt of sock, or -1. */
static int s_getint(void *sock, int opt)
{
    int v = -1;
    size_t l = sizeof v;
    return zmq_getsockopt(sock, opt, &v, &l) == 0 ? v : -1;
}

/* CND_HEARTBEAT_OFF (rollout serve, fleet-sim): no ZMTP heartbeat on either side, so libzmq keeps
 * no timer per connection (its cancel walks all of them: a 100,000-device rollout stalled at its
 * tenth minute), and TCP keepalive watches the connection instead; messages still flow. */
static void test_heartbeat_off(void)
{
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "rollout");
    fx_ident(&a, "dev-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, CND_HEARTBEAT_OFF);
    if (!s) return;
    void *ss = cnd_server_socket(s);
    CHECK_EQ_INT(s_getint(ss, ZMQ_HEARTBEAT_IVL), 0);
    CHECK_EQ_INT(s_getint(ss, ZMQ_TCP_KEEPALIVE), 1);
    CHECK_EQ_INT(s_getint(ss, ZMQ_TCP_KEEPALIVE_IDLE), 60);
    cnd_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = cnd_server_endpoint(s);
    o.server_key = srv.pk;
    o.public_key = a.pk;
    o.secret_key = a.sk;
    o.heartbeat_ivl_ms = CND_HEARTBEAT_OFF;
    cnd_client_t *c = NULL;
    CHECK_EQ_INT(cnd_client_new(&c, &o), 0);
    if (c) {
        void *cs = cnd_client_socket(c);
        CHECK_EQ_INT(s_getint(cs, ZMQ_HEARTBEAT_IVL), 0);
        CHECK_EQ_INT(s_getint(cs, ZMQ_HEARTBEAT_TTL), 0);
        CHECK_EQ_INT(s_getint(cs, ZMQ_TCP_KEEPALIVE), 1);
        CHECK_EQ_INT(s_getint(cs, ZMQ_TCP_KEEPALIVE_CNT), 6);
        CHECK(fx_round_trip(s, c, &a, &srv));
        cnd_client_destroy(&c);
    }
    /* a device of a large fleet (edge run): its PINGs carry no TTL, so the server's libzmq arms
     * no timer per PING; it still pings, and its own timeout watches the server */
    o.heartbeat_ivl_ms = 100;
    o.heartbeat_no_ttl = 1;
    CHECK_EQ_INT(cnd_client_new(&c, &o), 0);
    if (c) {
        void *cs = cnd_client_socket(c);
        CHECK_EQ_INT(s_getint(cs, ZMQ_HEARTBEAT_IVL), 100);
        CHECK_EQ_INT(s_getint(cs, ZMQ_HEARTBEAT_TIMEOUT), 300);
        CHECK_EQ_INT(s_getint(cs, ZMQ_HEARTBEAT_TTL), 0);
        CHECK(fx_round_trip(s, c, &a, &srv));
        cnd_server_stats_t st0, st;
        cnd_server_stats(s, &st0);
        fx_sleep_ms(500); /* about 5 PINGs, answered without a TTL timer at the server */
        CHECK(fx_round_trip(s, c, &a, &srv));
        cnd_server_stats(s, &st);
        CHECK_EQ_INT((int)(st.disconnects - st0.disconnects), 0);
        cnd_client_destroy(&c);
    }
    o.heartbeat_no_ttl = 0;
    o.heartbeat_ivl_ms = CND_HEARTBEAT_OFF - 1; /* any other negative value is refused */
    CHECK_EQ_INT(cnd_client_new(&c, &o), CND_EINVAL);
    CHECK(c == NULL);
    cnd_server_destroy(&s);
}

/* Many peers leaving at once must not wedge the server's shutdown. libzmq's I/O thread writes a
 * monitor event per disconnection and blocks, holding the monitor's lock, once the inproc pipe
 * to our monitor reader is full (2,000 events at the default HWMs); stopping the monitor takes
 * that lock. `rollout serve` hung at SIGTERM so after the 16,676 devices of each replica in a
 * 100,000-device run disconnected. 2,500 peers leave while the server is not polled; then it is
 * destroyed. */
static void test_mass_disconnect(void)
{
    enum { N = 2500 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 2 * N + 200) {
        fprintf(stderr, "test_mass_disconnect: needs %d descriptors; skipped\n", 2 * N + 200);
        return;
    }
    registry_t reg;
    fx_reg_init(&reg);
    ident_t srv, a;
    fx_ident(&srv, "rollout");
    fx_ident(&a, "dev-a");
    fx_reg_add(&reg, &a);
    cnd_server_t *s = fx_server(&reg, &srv, 0, 0, 0, CND_HEARTBEAT_OFF);
    if (!s) return;
    void *ctx = zmq_ctx_new();
    CHECK(ctx && zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, N + 16) == 0);
    cnd_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.endpoint = cnd_server_endpoint(s);
    o.server_key = srv.pk;
    o.public_key = a.pk;
    o.secret_key = a.sk;
    o.heartbeat_ivl_ms = CND_HEARTBEAT_OFF;
    o.zmq_context = ctx;
    o.no_monitor = 1;
    static cnd_client_t *c[N];
    size_t n;
    uint8_t *hb = fx_heartbeat(&a, &n);
    int made = 0, got = 0;
    for (; made < N; made++)
        if (cnd_client_new(&c[made], &o) != 0 || cnd_client_send(c[made], hb, n, 3000) != 0) break;
    free(hb);
    CHECK_EQ_INT(made, N);
    for (; got < made; got++) { /* every session is up once its message arrived */
        cnd_frame_t f;
        if (cnd_server_recv(s, &f, 10000) != 0) break;
        cnd_frame_clear(&f);
    }
    CHECK_EQ_INT(got, made);
    for (int i = 0; i < made; i++) cnd_client_destroy(&c[i]);
    zmq_ctx_term(ctx);
    fx_sleep_ms(1500); /* the server's I/O thread sees every disconnection */
    alarm(20);         /* a wedged destroy ends the test (SIGALRM) instead of hanging it */
    double t0 = fx_now_ms();
    cnd_server_destroy(&s);
    alarm(0);
    CHECK(fx_now_ms() - t0 < 30000);
}

static void test_bad_options(void)
{
    cnd_server_opts_t o;
    memset(&o, 0, sizeof o);
    cnd_server_t *s = NULL;
    o.endpoint = "tcp://127.0.0.1:*";
    CHECK_EQ_INT(cnd_server_new(&s, &o), CND_EINVAL); /* no key: never listens in the clear */
    uint8_t sk[32] = {1};
    o.secret_key = sk;
    CHECK_EQ_INT(cnd_server_new(&s, &o), CND_EINVAL); /* no allow() */
    registry_t reg;
    fx_reg_init(&reg);
    o.allow = fx_allow;
    o.allow_ctx = &reg;
    o.endpoint = "tcp://256.1.1.1:1";
    CHECK_EQ_INT(cnd_server_new(&s, &o), CND_EIO);
    CHECK(strstr(cnd_err_detail(), "256.1.1.1") != NULL);
    CHECK(s == NULL);
    o.endpoint = "tcp://127.0.0.1:*";
    o.hwm = -1;
    CHECK_EQ_INT(cnd_server_new(&s, &o), CND_EINVAL);
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    cnd_client_t *c = NULL;
    CHECK_EQ_INT(cnd_client_new(&c, &co), CND_EINVAL);
    co.endpoint = "bogus://x";
    co.server_key = co.public_key = co.secret_key = sk;
    CHECK_EQ_INT(cnd_client_new(&c, &co), CND_EIO);
    CHECK(c == NULL);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    test_keys();
    test_heartbeat_drop(); /* forks: run before the other tests start ZeroMQ threads */
    test_round_trips_and_oversize();
    test_unencrypted_and_wrong_server_key();
    test_probe();
    test_bounded_queue();
    test_heartbeat_ttl_cap();
    test_heartbeat_off();
    test_mass_disconnect();
    test_bad_options();
    return check_result("test_transport");
}
