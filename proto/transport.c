/*
 * transport.c: CurveZMQ ROUTER/DEALER transport with a ZAP handler (see transport.h).
 *
 * Layout of a server: one ZeroMQ context per server, because the ZAP endpoint
 * inproc://zeromq.zap.01 is per context and must be ours alone. In it: the ZAP REP socket and a
 * control PAIR (both owned by the ZAP thread once it runs), the ROUTER, and a monitor PAIR that
 * receives the ROUTER's socket events. Shutdown order matters: the ROUTER closes first (no new
 * handshakes need ZAP), then the ZAP thread is told to stop and joined, then the context ends.
 * All sockets have ZMQ_LINGER 0 so that ending the context never waits on a dead peer.
 *
 * The ZAP handler puts the client's public key into the connection metadata as "X-Curve-Key"
 * (64 hex characters) beside the standard "User-Id", so each received frame carries the key
 * that authenticated it and recheck can ask allow() about exactly that key.
 */
#include "transport.h"
#include "clock.h"

#include "digest.h"
#include "proto.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define S_DEFAULT_HWM          1000
#define S_DEFAULT_HB_IVL_MS    2000
#define S_DEFAULT_HANDSHAKE_MS 5000
#define S_ZAP_DOMAIN           "condenser"
#define S_META_KEY             "X-Curve-Key"

static atomic_uint s_instance; /* makes inproc endpoint names unique within a process */

/* --- keys --------------------------------------------------------------------------------- */

int cnd_transport_curve_keys(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                             uint8_t curve_sk[CND_CURVE_KEY_BYTES],
                             const uint8_t ed_pk[CND_CURVE_KEY_BYTES],
                             const uint8_t ed_sk[CND_ED25519_SK_BYTES])
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, ed_pk) != 0)
        return cnd_errf(CND_ECRYPTO, "identity public key is not a valid Ed25519 point");
    if (crypto_sign_ed25519_sk_to_curve25519(curve_sk, ed_sk) != 0) {
        sodium_memzero(curve_pk, CND_CURVE_KEY_BYTES);
        return cnd_errf(CND_ECRYPTO, "identity secret key could not be converted");
    }
    /* The secret key's embedded public half must be the public key we were given. */
    if (sodium_memcmp(ed_sk + 32, ed_pk, 32) != 0) {
        sodium_memzero(curve_sk, CND_CURVE_KEY_BYTES);
        sodium_memzero(curve_pk, CND_CURVE_KEY_BYTES);
        return cnd_errf(CND_ECRYPTO, "identity secret key does not belong to the public key");
    }
    return 0;
}

int cnd_transport_curve_public(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                               const uint8_t ed_pk[CND_CURVE_KEY_BYTES])
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, ed_pk) != 0)
        return cnd_errf(CND_ECRYPTO, "identity public key is not a valid Ed25519 point");
    return 0;
}

void cnd_transport_curve_public_from_secret(uint8_t curve_pk[CND_CURVE_KEY_BYTES],
                                            const uint8_t curve_sk[CND_CURVE_KEY_BYTES])
{
    crypto_scalarmult_base(curve_pk, curve_sk);
}

/* --- helpers ------------------------------------------------------------------------------ */

static double s_now_ms(void)
{
    return cnd_now() * 1e3; /* monotonic */
}

static int s_name_ok(const char *s)
{
    size_t n = strnlen(s, CND_USER_ID_MAX);
    if (n == 0 || n >= CND_USER_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && !(i > 0 && (c == '.' || c == '_' || c == '-'))) return 0;
    }
    return 1;
}

static int s_setint(void *sock, int opt, int v, const char *name)
{
    if (zmq_setsockopt(sock, opt, &v, sizeof v) != 0)
        return cnd_errf(CND_EINVAL, "setting %s=%d: %s", name, v, zmq_strerror(errno));
    return 0;
}

/* The TTL a PING asks the peer to keep the connection for, in ms. libzmq 4.3.4 sends it as 16
 * bits of deciseconds and the receiver multiplies those by 100 into a 16-bit field of
 * milliseconds, so any TTL above 65,535 ms wraps there (1,800 s arrived as 30.5 s, 655.4 s as
 * 40 ms: tests/proto/test_transport.c). So it is capped at the largest multiple of 100 ms that
 * survives. The peer arms the TTL at each of our PINGs and disarms it at our next message: with
 * PINGs rarer than the cap (rollout serve and fleet-sim pinged every 10 minutes before they
 * stopped pinging, CND_HEARTBEAT_OFF) an idle peer would drop the connection every time, 65.5 s
 * after a PING (a 100,000-device run lost thousands of connections at its tenth minute,
 * docs/benchmarks.md). Then no TTL is sent (0: the peer keeps
 * the connection), and the silent-peer check is our own ZMQ_HEARTBEAT_TIMEOUT (a plain int that
 * keeps its full value) and the application's heartbeats. */
#define S_HB_TTL_MAX_MS 65500

static int s_hb_ttl(int ivl_ms, int timeout_ms)
{
    if (timeout_ms <= S_HB_TTL_MAX_MS) return timeout_ms;
    return ivl_ms < S_HB_TTL_MAX_MS ? S_HB_TTL_MAX_MS : 0;
}

/* Options shared by ROUTER and DEALER. */
static int s_common_opts(void *sock, int max_msg, int hwm, int sndhwm, int hb_ivl, int hb_timeout,
                         int handshake)
{
    /* libzmq checks the size of the encrypted frame, so the application's limit is max_msg. */
    int64_t mm = (int64_t)max_msg + CND_CURVE_FRAME_OVERHEAD;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &mm, sizeof mm) != 0)
        return cnd_errf(CND_EINVAL, "setting ZMQ_MAXMSGSIZE: %s", zmq_strerror(errno));
    int rc;
    if ((rc = s_setint(sock, ZMQ_LINGER, 0, "ZMQ_LINGER")) ||
        (rc = s_setint(sock, ZMQ_SNDHWM, sndhwm, "ZMQ_SNDHWM")) ||
        (rc = s_setint(sock, ZMQ_RCVHWM, hwm, "ZMQ_RCVHWM")) ||
        (rc = s_setint(sock, ZMQ_HANDSHAKE_IVL, handshake, "ZMQ_HANDSHAKE_IVL")))
        return rc;
    if (hb_ivl == CND_HEARTBEAT_OFF) { /* no libzmq timer per connection (transport.h) */
        if ((rc = s_setint(sock, ZMQ_HEARTBEAT_IVL, 0, "ZMQ_HEARTBEAT_IVL")) ||
            (rc = s_setint(sock, ZMQ_TCP_KEEPALIVE, 1, "ZMQ_TCP_KEEPALIVE")) ||
            (rc = s_setint(sock, ZMQ_TCP_KEEPALIVE_IDLE, 60, "ZMQ_TCP_KEEPALIVE_IDLE")) ||
            (rc = s_setint(sock, ZMQ_TCP_KEEPALIVE_INTVL, 10, "ZMQ_TCP_KEEPALIVE_INTVL")) ||
            (rc = s_setint(sock, ZMQ_TCP_KEEPALIVE_CNT, 6, "ZMQ_TCP_KEEPALIVE_CNT")))
            return rc;
        return 0;
    }
    if ((rc = s_setint(sock, ZMQ_HEARTBEAT_IVL, hb_ivl, "ZMQ_HEARTBEAT_IVL")) ||
        (rc = s_setint(sock, ZMQ_HEARTBEAT_TIMEOUT, hb_timeout, "ZMQ_HEARTBEAT_TIMEOUT")) ||
        (rc = s_setint(sock, ZMQ_HEARTBEAT_TTL, s_hb_ttl(hb_ivl, hb_timeout), "ZMQ_HEARTBEAT_TTL")))
        return rc;
    return 0;
}

/* The ZMTP heartbeat interval an option asks for (0: the default), and its timeout. */
static void s_heartbeat(int ivl_ms, int timeout_ms, int *hb, int *hbt)
{
    if (ivl_ms == CND_HEARTBEAT_OFF) {
        *hb = CND_HEARTBEAT_OFF;
        *hbt = 0;
        return;
    }
    *hb = ivl_ms ? ivl_ms : S_DEFAULT_HB_IVL_MS;
    *hbt = timeout_ms ? timeout_ms : 3 * *hb;
}

static int s_check_curve(void)
{
    if (!zmq_has("curve"))
        return cnd_errf(CND_ECRYPTO, "libzmq was built without CURVE security; refusing to run "
                                     "unencrypted");
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    return 0;
}

/* Reads one monitor event (two frames). Returns 0 and the event, or -1 when none is pending. */
static int s_monitor_read(void *mon, uint16_t *ev, uint32_t *value, char *addr, size_t cap)
{
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    if (zmq_msg_recv(&a, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&a);
        return -1;
    }
    int ok = zmq_msg_size(&a) >= 6 && zmq_msg_more(&a);
    if (ok) {
        memcpy(ev, zmq_msg_data(&a), 2);
        memcpy(value, (uint8_t *)zmq_msg_data(&a) + 2, 4);
    }
    addr[0] = '\0';
    int more = zmq_msg_more(&a);
    zmq_msg_close(&a);
    while (more) {
        zmq_msg_init(&b);
        if (zmq_msg_recv(&b, mon, 0) < 0) {
            zmq_msg_close(&b);
            break;
        }
        if (!addr[0]) {
            size_t n = zmq_msg_size(&b) < cap - 1 ? zmq_msg_size(&b) : cap - 1;
            memcpy(addr, zmq_msg_data(&b), n);
            addr[n] = '\0';
        }
        more = zmq_msg_more(&b);
        zmq_msg_close(&b);
    }
    return ok ? 0 : -1;
}

/* --- server ------------------------------------------------------------------------------- */

struct cnd_server {
    void *ctx;
    void *router;
    void *zap;        /* REP on inproc://zeromq.zap.01, used only by the ZAP thread */
    void *ctl_main;   /* PAIR: the main side tells the ZAP thread to stop */
    void *ctl_thread; /* PAIR: the ZAP thread's side */
    void *mon;        /* PAIR receiving ROUTER events */
    pthread_t thread;
    int thread_started;
    char endpoint[256];
    cnd_zap_allow_fn allow;
    void *allow_ctx;
    cnd_transport_event_fn on_event;
    void *event_ctx;
    int recheck;
    int max_msg;
    atomic_uint_fast64_t zap_admitted, zap_refused; /* written by the ZAP thread */
    cnd_server_stats_t st;                          /* the other counters: caller's thread */
};

static void s_event(cnd_server_t *s, cnd_transport_event_kind_t kind, const uint8_t *pub,
                    const char *address, const char *user_id, const char *reason)
{
    if (!s->on_event) return;
    cnd_transport_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    if (pub) memcpy(ev.pub, pub, CND_CURVE_KEY_BYTES);
    ev.address = address ? address : "";
    ev.user_id = user_id ? user_id : "";
    ev.reason = reason ? reason : "";
    s->on_event(s->event_ctx, &ev);
}

static void s_zap_send(void *sock, const char *s, size_t n, int more)
{
    /* REP replies cannot fail for lack of room; a failure here means the context is ending. */
    (void)zmq_send(sock, s, n, more ? ZMQ_SNDMORE : 0);
}

/* Answers one ZAP request (RFC 27). Always replies, so the REP state machine stays in step. */
static void s_zap_handle(cnd_server_t *s)
{
    enum { MAXF = 8 };
    zmq_msg_t f[MAXF];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_init(&tmp);
        if (zmq_msg_recv(&tmp, s->zap, 0) < 0) {
            zmq_msg_close(&tmp);
            break;
        }
        more = zmq_msg_more(&tmp);
        if (n < MAXF) {
            zmq_msg_init(&f[n]);
            zmq_msg_move(&f[n++], &tmp);
        }
        zmq_msg_close(&tmp);
    }
    char addr[64] = "";
    if (n > 3) {
        size_t al = zmq_msg_size(&f[3]) < sizeof addr - 1 ? zmq_msg_size(&f[3]) : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&f[3]), al);
        addr[al] = '\0';
    }
    const char *status = "400", *text = "refused";
    char user[CND_USER_ID_MAX] = "";
    uint8_t pub[CND_CURVE_KEY_BYTES] = {0};
    int have_pub = 0;
    if (n < 7 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0) {
        status = "500";
        text = "malformed ZAP request";
    } else if (zmq_msg_size(&f[5]) != 5 || memcmp(zmq_msg_data(&f[5]), "CURVE", 5) != 0) {
        text = "only CURVE is accepted";
    } else if (zmq_msg_size(&f[6]) != CND_CURVE_KEY_BYTES) {
        text = "bad CURVE credential";
    } else {
        memcpy(pub, zmq_msg_data(&f[6]), sizeof pub);
        have_pub = 1;
        int a = s->allow(s->allow_ctx, pub, user);
        user[CND_USER_ID_MAX - 1] = '\0';
        if (a > 0 && s_name_ok(user)) {
            status = "200";
            text = "OK";
        } else if (a > 0) {
            status = "500";
            text = "allow() returned an invalid user id";
            user[0] = '\0';
        } else if (a < 0) {
            status = "500";
            text = "admission check failed";
            user[0] = '\0';
        } else {
            text = "key not enrolled or revoked";
            user[0] = '\0';
        }
    }
    int ok = status[0] == '2';
    /* Reply: version, request id, status code, status text, user id, metadata. */
    s_zap_send(s->zap, "1.0", 3, 1);
    if (n > 1)
        s_zap_send(s->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), 1);
    else
        s_zap_send(s->zap, "", 0, 1);
    s_zap_send(s->zap, status, 3, 1);
    s_zap_send(s->zap, text, strlen(text), 1);
    s_zap_send(s->zap, ok ? user : "", ok ? strlen(user) : 0, 1);
    if (ok) {
        /* ZMTP metadata: name length (1 byte), name, value length (4 bytes BE), value. */
        uint8_t md[1 + sizeof S_META_KEY - 1 + 4 + 2 * CND_CURVE_KEY_BYTES + 1];
        size_t k = 0, nl = sizeof S_META_KEY - 1;
        md[k++] = (uint8_t)nl;
        memcpy(md + k, S_META_KEY, nl);
        k += nl;
        md[k++] = 0;
        md[k++] = 0;
        md[k++] = 0;
        md[k++] = 2 * CND_CURVE_KEY_BYTES;
        char hex[2 * CND_CURVE_KEY_BYTES + 1];
        cnd_hex(hex, pub, sizeof pub);
        memcpy(md + k, hex, 2 * CND_CURVE_KEY_BYTES);
        k += 2 * CND_CURVE_KEY_BYTES;
        s_zap_send(s->zap, (const char *)md, k, 0);
        atomic_fetch_add(&s->zap_admitted, 1);
    } else {
        s_zap_send(s->zap, "", 0, 0);
        atomic_fetch_add(&s->zap_refused, 1);
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    s_event(s, ok ? CND_TEV_ADMITTED : CND_TEV_REFUSED, have_pub ? pub : NULL, addr, user, text);
}

static void *s_zap_main(void *arg)
{
    cnd_server_t *s = arg;
    zmq_pollitem_t it[2] = {{s->zap, 0, ZMQ_POLLIN, 0}, {s->ctl_thread, 0, ZMQ_POLLIN, 0}};
    for (;;) {
        /* The wait is bounded so that even a lost stop signal cannot hang shutdown for long. */
        int r = zmq_poll(it, 2, 1000);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) break;
        if (it[0].revents & ZMQ_POLLIN) s_zap_handle(s);
    }
    zmq_close(s->zap);
    zmq_close(s->ctl_thread);
    s->zap = s->ctl_thread = NULL;
    return NULL;
}

static void s_server_drain_monitor(cnd_server_t *s)
{
    uint16_t ev;
    uint32_t val;
    char addr[256];
    while (s->mon && s_monitor_read(s->mon, &ev, &val, addr, sizeof addr) == 0) {
        if (ev == ZMQ_EVENT_DISCONNECTED) {
            s->st.disconnects++;
            s_event(s, CND_TEV_DISCONNECTED, NULL, addr, NULL, "connection closed");
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                   ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            s->st.handshake_failures++;
            s_event(s, CND_TEV_HANDSHAKE_FAILED, NULL, addr, NULL,
                    "handshake failed (wrong server key, not CURVE, or protocol error)");
        }
    }
}

int cnd_server_new(cnd_server_t **out, const cnd_server_opts_t *o)
{
    *out = NULL;
    if (!o || !o->endpoint || !o->secret_key)
        return cnd_errf(CND_EINVAL, "server: endpoint and CURVE secret key are required");
    if (!o->allow) return cnd_errf(CND_EINVAL, "server: an allow() callback is required");
    if (o->max_msg < 0 || o->hwm < 0 || o->sndhwm < 0 ||
        (o->heartbeat_ivl_ms < 0 && o->heartbeat_ivl_ms != CND_HEARTBEAT_OFF) ||
        o->heartbeat_timeout_ms < 0 || o->handshake_ivl_ms < 0)
        return cnd_errf(CND_EINVAL, "server: negative option");
    if (o->max_msg > INT32_MAX - CND_CURVE_FRAME_OVERHEAD)
        return cnd_errf(CND_EINVAL, "server: max_msg %d is too large", o->max_msg);
    int rc = s_check_curve();
    if (rc) return rc;
    cnd_server_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "server: out of memory");
    s->allow = o->allow;
    s->allow_ctx = o->allow_ctx;
    s->on_event = o->on_event;
    s->event_ctx = o->event_ctx;
    s->recheck = o->recheck;
    s->max_msg = o->max_msg ? o->max_msg : (int)CND_PROTO_MAX_MSG;
    int hwm = o->hwm ? o->hwm : S_DEFAULT_HWM;
    int sndhwm = o->sndhwm ? o->sndhwm : hwm;
    int hb, hbt;
    s_heartbeat(o->heartbeat_ivl_ms, o->heartbeat_timeout_ms, &hb, &hbt);
    int hs = o->handshake_ivl_ms ? o->handshake_ivl_ms : S_DEFAULT_HANDSHAKE_MS;
    unsigned inst = atomic_fetch_add(&s_instance, 1);
    char ctl_ep[64], mon_ep[64];
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://cnd-zap-ctl-%u", inst);
    snprintf(mon_ep, sizeof mon_ep, "inproc://cnd-srv-mon-%u", inst);

    s->ctx = zmq_ctx_new();
    if (!s->ctx) {
        free(s);
        return cnd_errf(CND_EIO, "server: zmq_ctx_new: %s", zmq_strerror(errno));
    }
    /* 1. The ZAP handler exists before anything can connect. */
    s->zap = zmq_socket(s->ctx, ZMQ_REP);
    s->ctl_main = zmq_socket(s->ctx, ZMQ_PAIR);
    s->ctl_thread = zmq_socket(s->ctx, ZMQ_PAIR);
    if (!s->zap || !s->ctl_main || !s->ctl_thread) {
        rc = cnd_errf(CND_EIO, "server: creating sockets: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = s_setint(s->zap, ZMQ_LINGER, 0, "ZMQ_LINGER")) ||
        (rc = s_setint(s->ctl_main, ZMQ_LINGER, 0, "ZMQ_LINGER")) ||
        (rc = s_setint(s->ctl_thread, ZMQ_LINGER, 0, "ZMQ_LINGER")))
        goto fail;
    if (zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0 || zmq_bind(s->ctl_main, ctl_ep) != 0 ||
        zmq_connect(s->ctl_thread, ctl_ep) != 0) {
        rc = cnd_errf(CND_EIO, "server: binding the ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, s_zap_main, s) != 0) {
        rc = cnd_errf(CND_EIO, "server: starting the ZAP thread failed");
        goto fail;
    }
    s->thread_started = 1;

    /* 2. The ROUTER, with CURVE on before it binds. */
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (!s->router) {
        rc = cnd_errf(CND_EIO, "server: creating ROUTER: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = s_setint(s->router, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER"))) goto fail;
    if (zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, o->secret_key, CND_CURVE_KEY_BYTES) != 0 ||
        zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, S_ZAP_DOMAIN, strlen(S_ZAP_DOMAIN)) != 0) {
        rc = cnd_errf(CND_EINVAL, "server: setting CURVE keys: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = s_common_opts(s->router, s->max_msg, hwm, sndhwm, hb, hbt, hs)) ||
        (rc = s_setint(s->router, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY")))
        goto fail;

    /* 3. Socket events, for the counters and the event callback. */
    if (zmq_socket_monitor(s->router, mon_ep,
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0) {
        rc = cnd_errf(CND_EIO, "server: socket monitor: %s", zmq_strerror(errno));
        goto fail;
    }
    /* No receive limit on the monitor pipe: libzmq's I/O thread blocks on a full one while
     * holding the lock zmq_socket_monitor(NULL) needs at shutdown, and thousands of peers
     * leaving at once between two polls filled the default 2,000 events (test_transport). */
    s->mon = zmq_socket(s->ctx, ZMQ_PAIR);
    if (!s->mon || s_setint(s->mon, ZMQ_LINGER, 0, "ZMQ_LINGER") != 0 ||
        s_setint(s->mon, ZMQ_RCVHWM, 0, "ZMQ_RCVHWM") != 0 || zmq_connect(s->mon, mon_ep) != 0) {
        rc = cnd_errf(CND_EIO, "server: connecting the monitor: %s", zmq_strerror(errno));
        goto fail;
    }

    /* 4. Listen. */
    if (zmq_bind(s->router, o->endpoint) != 0) {
        rc = cnd_errf(CND_EIO, "server: cannot listen on %s: %s", o->endpoint, zmq_strerror(errno));
        goto fail;
    }
    size_t el = sizeof s->endpoint;
    if (zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &el) != 0)
        snprintf(s->endpoint, sizeof s->endpoint, "%s", o->endpoint);
    *out = s;
    return 0;
fail:
    cnd_server_destroy(&s);
    return rc;
}

const char *cnd_server_endpoint(const cnd_server_t *s)
{
    return s->endpoint;
}

void *cnd_server_socket(cnd_server_t *s)
{
    return s->router;
}

void cnd_frame_clear(cnd_frame_t *f)
{
    if (!f) return;
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* Drops the rest of a multipart message. */
static void s_drain_more(void *sock, int more)
{
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

/* Reads one routed message. Returns 1 with *f filled, 0 when it was dropped or nothing was
 * pending, CND_EIO on a socket failure. */
static int s_server_take(cnd_server_t *s, cnd_frame_t *f)
{
    zmq_msg_t id, data;
    zmq_msg_init(&id);
    if (zmq_msg_recv(&id, s->router, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        zmq_msg_close(&id);
        if (e == EAGAIN || e == EINTR) return 0;
        return cnd_errf(CND_EIO, "server: receive: %s", zmq_strerror(e));
    }
    if (!zmq_msg_more(&id) || zmq_msg_size(&id) > CND_ROUTING_ID_MAX) {
        s_drain_more(s->router, zmq_msg_more(&id));
        zmq_msg_close(&id);
        s->st.malformed_drops++;
        s_event(s, CND_TEV_MALFORMED_DROP, NULL, NULL, NULL, "message without a data frame");
        return 0;
    }
    zmq_msg_init(&data);
    if (zmq_msg_recv(&data, s->router, 0) < 0) {
        int e = errno;
        zmq_msg_close(&id);
        zmq_msg_close(&data);
        return cnd_errf(CND_EIO, "server: receive: %s", zmq_strerror(e));
    }
    int ret = 0;
    const char *user = zmq_msg_gets(&data, "User-Id");
    const char *hex = zmq_msg_gets(&data, S_META_KEY);
    const char *paddr = zmq_msg_gets(&data, "Peer-Address");
    uint8_t pub[CND_CURVE_KEY_BYTES];
    if (zmq_msg_more(&data)) {
        s_drain_more(s->router, 1);
        s->st.malformed_drops++;
        s_event(s, CND_TEV_MALFORMED_DROP, NULL, NULL, user, "multipart message");
        goto done;
    }
    if (!user || !hex || !s_name_ok(user) || strlen(hex) != 2 * CND_CURVE_KEY_BYTES ||
        cnd_unhex(pub, sizeof pub, hex) != 0) {
        /* Cannot happen while our ZAP handler admits every connection; refuse to guess. */
        s->st.malformed_drops++;
        s_event(s, CND_TEV_MALFORMED_DROP, NULL, NULL, NULL, "no authenticated identity");
        goto done;
    }
    if (s->recheck) {
        char again[CND_USER_ID_MAX] = "";
        int a = s->allow(s->allow_ctx, pub, again);
        again[CND_USER_ID_MAX - 1] = '\0';
        if (a <= 0 || strcmp(again, user) != 0) {
            s->st.revoked_drops++;
            s_event(s, CND_TEV_REVOKED_DROP, pub, NULL, user,
                    a <= 0 ? "key no longer allowed" : "key now belongs to another identity");
            goto done;
        }
    }
    if (zmq_msg_size(&data) > (size_t)s->max_msg) {
        /* libzmq's limit includes the CURVE overhead; ours is the application's. */
        s->st.malformed_drops++;
        s_event(s, CND_TEV_MALFORMED_DROP, pub, paddr, user, "frame over the size limit");
        goto done;
    }
    memset(f, 0, sizeof *f);
    f->len = zmq_msg_size(&data);
    f->data = malloc(f->len ? f->len : 1);
    if (!f->data) {
        ret = cnd_errf(CND_ENOMEM, "server: out of memory for a %zu-byte frame", f->len);
        f->len = 0;
        goto done;
    }
    memcpy(f->data, zmq_msg_data(&data), f->len);
    memcpy(f->peer.id, zmq_msg_data(&id), zmq_msg_size(&id));
    f->peer.id_len = zmq_msg_size(&id);
    snprintf(f->user_id, sizeof f->user_id, "%s", user);
    snprintf(f->address, sizeof f->address, "%s", paddr ? paddr : "");
    memcpy(f->curve_key, pub, sizeof pub);
    s->st.received++;
    ret = 1;
done:
    zmq_msg_close(&id);
    zmq_msg_close(&data);
    return ret;
}

int cnd_server_recv(cnd_server_t *s, cnd_frame_t *f, int timeout_ms)
{
    memset(f, 0, sizeof *f);
    if (timeout_ms < 0) timeout_ms = 0;
    double deadline = s_now_ms() + timeout_ms;
    for (;;) {
        s_server_drain_monitor(s);
        int r = s_server_take(s, f);
        if (r == 1) return 0;
        if (r < 0) return r;
        double left = deadline - s_now_ms();
        if (left <= 0)
            return cnd_errf(CND_ETIMEOUT, "server: nothing received within %d ms", timeout_ms);
        zmq_pollitem_t it[2] = {{s->router, 0, ZMQ_POLLIN, 0}, {s->mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, (long)left + 1) < 0 && errno != EINTR)
            return cnd_errf(CND_EIO, "server: poll: %s", zmq_strerror(errno));
    }
}

int cnd_server_send(cnd_server_t *s, const cnd_peer_t *to, const void *data, size_t len,
                    int timeout_ms)
{
    if (len > (size_t)s->max_msg)
        return cnd_errf(CND_ERANGE, "server: %zu-byte frame over the %d-byte limit", len,
                        s->max_msg);
    if (to->id_len == 0 || to->id_len > CND_ROUTING_ID_MAX)
        return cnd_errf(CND_EINVAL, "server: bad peer routing id");
    int rc = s_setint(s->router, ZMQ_SNDTIMEO, timeout_ms < 0 ? 0 : timeout_ms, "ZMQ_SNDTIMEO");
    if (rc) return rc;
    if (zmq_send(s->router, to->id, to->id_len, ZMQ_SNDMORE) < 0) {
        int e = errno;
        if (e == EHOSTUNREACH)
            return cnd_errf(CND_ENOTFOUND, "server: peer is no longer connected");
        if (e == EAGAIN)
            return cnd_errf(CND_ETIMEOUT, "server: peer's queue stayed full for %d ms", timeout_ms);
        return cnd_errf(CND_EIO, "server: send: %s", zmq_strerror(e));
    }
    /* The routing frame was accepted, so the pipe has room for the rest of the message. */
    if (zmq_send(s->router, data, len, 0) < 0)
        return cnd_errf(CND_EIO, "server: send: %s", zmq_strerror(errno));
    s->st.sent++;
    return 0;
}

int cnd_server_probe(cnd_server_t *s, const cnd_peer_t *to)
{
    if (to->id_len == 0 || to->id_len > CND_ROUTING_ID_MAX)
        return cnd_errf(CND_EINVAL, "server: bad peer routing id");
    /* ZMQ_DONTWAIT: whatever ZMQ_SNDTIMEO the last send left, a probe never waits. */
    if (zmq_send(s->router, to->id, to->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int e = errno;
        if (e == EHOSTUNREACH) return cnd_errf(CND_ENOTFOUND, "server: connection closed");
        if (e == EAGAIN) return cnd_errf(CND_ETIMEOUT, "server: peer's queue is full");
        return cnd_errf(CND_EIO, "server: probe: %s", zmq_strerror(e));
    }
    if (zmq_send(s->router, "", 0, ZMQ_DONTWAIT) < 0)
        return cnd_errf(CND_EIO, "server: probe: %s", zmq_strerror(errno));
    return 0;
}

void cnd_server_stats(cnd_server_t *s, cnd_server_stats_t *out)
{
    s_server_drain_monitor(s);
    *out = s->st;
    out->zap_admitted = atomic_load(&s->zap_admitted);
    out->zap_refused = atomic_load(&s->zap_refused);
}

void cnd_server_destroy(cnd_server_t **ps)
{
    if (!ps || !*ps) return;
    cnd_server_t *s = *ps;
    if (s->router) {
        (void)zmq_socket_monitor(s->router, NULL, 0);
        zmq_close(s->router);
    }
    if (s->mon) zmq_close(s->mon);
    if (s->thread_started) {
        (void)zmq_send(s->ctl_main, "", 0, 0);
        pthread_join(s->thread, NULL);
    } else {
        if (s->zap) zmq_close(s->zap);
        if (s->ctl_thread) zmq_close(s->ctl_thread);
    }
    if (s->ctl_main) zmq_close(s->ctl_main);
    if (s->ctx) zmq_ctx_term(s->ctx);
    free(s);
    *ps = NULL;
}

/* --- client ------------------------------------------------------------------------------- */

struct cnd_client {
    void *ctx;   /* own context, or the caller's shared one */
    int own_ctx; /* 1: terminate ctx on destroy */
    void *dealer;
    void *mon; /* NULL when monitoring is off */
    int max_msg;
    char endpoint[256]; /* for re-dialling after a refusal */
    int redial_ms;      /* wait after a refusal before dialling again */
    double refused_at;  /* monotonic ms of the last unanswered refusal, 0 = none */
    cnd_client_state_t st;
};

/* libzmq (4.3) does not reconnect after the server refused the handshake (ZAP 400/500), so a
 * node enrolled a minute after it started, or refused while the coordinator's store was briefly
 * unavailable, would stay cut off. After redial_ms we drop the connection and dial again; a
 * refusal that persists costs one handshake per redial_ms. */
static void s_client_redial(cnd_client_t *c)
{
    if (c->st.connected || c->refused_at == 0 || s_now_ms() - c->refused_at < c->redial_ms) return;
    c->refused_at = 0;
    (void)zmq_disconnect(c->dealer, c->endpoint);
    (void)zmq_connect(c->dealer, c->endpoint);
}

static void s_client_drain_monitor(cnd_client_t *c)
{
    uint16_t ev;
    uint32_t val;
    char addr[256];
    while (c->mon && s_monitor_read(c->mon, &ev, &val, addr, sizeof addr) == 0) {
        switch (ev) {
        case ZMQ_EVENT_CONNECTED: c->st.tcp_connects++; break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            c->st.connected = 1;
            c->st.handshakes++;
            c->st.last_status = 0;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            c->st.connected = 0;
            c->st.handshake_failures++;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            c->st.connected = 0;
            c->st.auth_refusals++;
            c->st.last_status = (int)val;
            c->refused_at = s_now_ms();
            break;
        case ZMQ_EVENT_DISCONNECTED:
            if (c->st.connected) c->st.disconnects++;
            c->st.connected = 0;
            break;
        default: break;
        }
    }
}

int cnd_client_new(cnd_client_t **out, const cnd_client_opts_t *o)
{
    *out = NULL;
    if (!o || !o->endpoint || !o->server_key || !o->public_key || !o->secret_key)
        return cnd_errf(CND_EINVAL,
                        "client: endpoint, server key and this node's CURVE keys are required");
    if (o->max_msg < 0 || o->hwm < 0 ||
        (o->heartbeat_ivl_ms < 0 && o->heartbeat_ivl_ms != CND_HEARTBEAT_OFF) ||
        o->heartbeat_timeout_ms < 0 || o->handshake_ivl_ms < 0 || o->reconnect_ivl_ms < 0 ||
        o->reconnect_ivl_max_ms < 0)
        return cnd_errf(CND_EINVAL, "client: negative option");
    if (o->max_msg > INT32_MAX - CND_CURVE_FRAME_OVERHEAD)
        return cnd_errf(CND_EINVAL, "client: max_msg %d is too large", o->max_msg);
    int rc = s_check_curve();
    if (rc) return rc;
    cnd_client_t *c = calloc(1, sizeof *c);
    if (!c) return cnd_errf(CND_ENOMEM, "client: out of memory");
    c->max_msg = o->max_msg ? o->max_msg : (int)CND_PROTO_MAX_MSG;
    int hwm = o->hwm ? o->hwm : S_DEFAULT_HWM;
    int hb, hbt;
    s_heartbeat(o->heartbeat_ivl_ms, o->heartbeat_timeout_ms, &hb, &hbt);
    int hs = o->handshake_ivl_ms ? o->handshake_ivl_ms : S_DEFAULT_HANDSHAKE_MS;
    int ri = o->reconnect_ivl_ms ? o->reconnect_ivl_ms : 100;
    int rmax = o->reconnect_ivl_max_ms ? o->reconnect_ivl_max_ms : 5000;
    if (rmax < ri) rmax = ri;
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://cnd-cli-mon-%u", atomic_fetch_add(&s_instance, 1));

    c->ctx = o->zmq_context;
    if (!c->ctx) {
        c->ctx = zmq_ctx_new();
        c->own_ctx = 1;
    }
    if (!c->ctx) {
        free(c);
        return cnd_errf(CND_EIO, "client: zmq_ctx_new: %s", zmq_strerror(errno));
    }
    c->dealer = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->dealer) {
        rc = cnd_errf(CND_EIO, "client: creating DEALER: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_setsockopt(c->dealer, ZMQ_CURVE_SERVERKEY, o->server_key, CND_CURVE_KEY_BYTES) ||
        zmq_setsockopt(c->dealer, ZMQ_CURVE_PUBLICKEY, o->public_key, CND_CURVE_KEY_BYTES) ||
        zmq_setsockopt(c->dealer, ZMQ_CURVE_SECRETKEY, o->secret_key, CND_CURVE_KEY_BYTES)) {
        rc = cnd_errf(CND_EINVAL, "client: setting CURVE keys: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = s_common_opts(c->dealer, c->max_msg, hwm, hwm, hb, hbt, hs)) ||
        (o->heartbeat_no_ttl && hb != CND_HEARTBEAT_OFF &&
         (rc = s_setint(c->dealer, ZMQ_HEARTBEAT_TTL, 0, "ZMQ_HEARTBEAT_TTL"))) ||
        (rc = s_setint(c->dealer, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE")) ||
        (rc = s_setint(c->dealer, ZMQ_RECONNECT_IVL, ri, "ZMQ_RECONNECT_IVL")) ||
        (rc = s_setint(c->dealer, ZMQ_RECONNECT_IVL_MAX, rmax, "ZMQ_RECONNECT_IVL_MAX")))
        goto fail;
    if (!o->no_monitor) {
        if (zmq_socket_monitor(
                c->dealer, mon_ep,
                ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                    ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                    ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED) != 0) {
            rc = cnd_errf(CND_EIO, "client: socket monitor: %s", zmq_strerror(errno));
            goto fail;
        }
        c->mon = zmq_socket(c->ctx, ZMQ_PAIR); /* unlimited, as the server's monitor */
        if (!c->mon || s_setint(c->mon, ZMQ_LINGER, 0, "ZMQ_LINGER") != 0 ||
            s_setint(c->mon, ZMQ_RCVHWM, 0, "ZMQ_RCVHWM") != 0 ||
            zmq_connect(c->mon, mon_ep) != 0) {
            rc = cnd_errf(CND_EIO, "client: connecting the monitor: %s", zmq_strerror(errno));
            goto fail;
        }
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", o->endpoint);
    c->redial_ms = rmax;
    if (strlen(o->endpoint) >= sizeof c->endpoint || zmq_connect(c->dealer, o->endpoint) != 0) {
        rc =
            cnd_errf(CND_EIO, "client: cannot connect to %s: %s", o->endpoint, zmq_strerror(errno));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    cnd_client_destroy(&c);
    return rc;
}

static int s_client_unreachable(cnd_client_t *c, int timeout_ms, const char *what)
{
    s_client_drain_monitor(c);
    if (!c->st.connected && c->st.auth_refusals)
        return cnd_errf(CND_EPERM,
                        "client: the coordinator refused this node's key (ZAP status %d): "
                        "not enrolled, or revoked",
                        c->st.last_status);
    if (!c->st.connected)
        return cnd_errf(CND_ETIMEOUT, "client: no session with the coordinator within %d ms",
                        timeout_ms);
    return cnd_errf(CND_ETIMEOUT, "client: %s within %d ms", what, timeout_ms);
}

int cnd_client_send(cnd_client_t *c, const void *data, size_t len, int timeout_ms)
{
    if (len > (size_t)c->max_msg)
        return cnd_errf(CND_ERANGE, "client: %zu-byte frame over the %d-byte limit", len,
                        c->max_msg);
    if (timeout_ms < 0) timeout_ms = 0;
    /* Waits in slices so that a refused connection can be re-dialled meanwhile. */
    double deadline = s_now_ms() + timeout_ms;
    for (;;) {
        s_client_drain_monitor(c);
        s_client_redial(c);
        double left = deadline - s_now_ms();
        int slice = left <= 0 ? 0 : left < 50 ? (int)left + 1 : 50;
        int rc = s_setint(c->dealer, ZMQ_SNDTIMEO, slice, "ZMQ_SNDTIMEO");
        if (rc) return rc;
        if (zmq_send(c->dealer, data, len, 0) >= 0) return 0;
        if (errno != EAGAIN && errno != EINTR)
            return cnd_errf(CND_EIO, "client: send: %s", zmq_strerror(errno));
        if (deadline - s_now_ms() <= 0)
            return s_client_unreachable(c, timeout_ms, "send queue stayed full");
    }
}

int cnd_client_recv(cnd_client_t *c, uint8_t **data, size_t *len, int timeout_ms)
{
    *data = NULL;
    *len = 0;
    if (timeout_ms < 0) timeout_ms = 0;
    double deadline = s_now_ms() + timeout_ms;
    for (;;) {
        s_client_drain_monitor(c);
        s_client_redial(c);
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->dealer, ZMQ_DONTWAIT) >= 0) {
            if (zmq_msg_more(&m)) {
                s_drain_more(c->dealer, 1);
                zmq_msg_close(&m);
                continue;
            }
            size_t n = zmq_msg_size(&m);
            if (n == 0) { /* the server's liveness probe */
                zmq_msg_close(&m);
                continue;
            }
            uint8_t *p = malloc(n ? n : 1);
            if (!p) {
                zmq_msg_close(&m);
                return cnd_errf(CND_ENOMEM, "client: out of memory for a %zu-byte frame", n);
            }
            memcpy(p, zmq_msg_data(&m), n);
            zmq_msg_close(&m);
            *data = p;
            *len = n;
            return 0;
        }
        int e = errno;
        zmq_msg_close(&m);
        if (e != EAGAIN && e != EINTR)
            return cnd_errf(CND_EIO, "client: receive: %s", zmq_strerror(e));
        double left = deadline - s_now_ms();
        if (left <= 0) return s_client_unreachable(c, timeout_ms, "nothing received");
        zmq_pollitem_t it[2] = {{c->dealer, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        long wait = c->refused_at ? 50 : (long)left + 1; /* wake up to re-dial */
        if (zmq_poll(it, c->mon ? 2 : 1, wait < (long)left + 1 ? wait : (long)left + 1) < 0 &&
            errno != EINTR)
            return cnd_errf(CND_EIO, "client: poll: %s", zmq_strerror(errno));
    }
}

void cnd_client_state(cnd_client_t *c, cnd_client_state_t *out)
{
    s_client_drain_monitor(c);
    s_client_redial(c);
    *out = c->st;
}

void *cnd_client_socket(cnd_client_t *c)
{
    return c->dealer;
}

void cnd_client_destroy(cnd_client_t **pc)
{
    if (!pc || !*pc) return;
    cnd_client_t *c = *pc;
    if (c->dealer) {
        if (c->mon) (void)zmq_socket_monitor(c->dealer, NULL, 0);
        zmq_close(c->dealer);
    }
    if (c->mon) zmq_close(c->mon);
    if (c->ctx && c->own_ctx) zmq_ctx_term(c->ctx);
    free(c);
    *pc = NULL;
}
