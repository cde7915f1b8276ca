/*
 * fleet_sim.c: the fleet simulator (see fleet_sim.h).
 *
 * Event loop: epoll on every device socket's ZMQ_FD (edge-triggered by libzmq's design: after
 * it fires, ZMQ_EVENTS is read and the socket drained until it reports no POLLIN, which re-arms
 * it; a send may consume the signal too, so every socket that sent is drained again). A sweep
 * about every 200 ms retries sessions that could not start yet (the handshake is not done, or
 * the coordinator asked for hello again), re-requests overdue chunks and sends heartbeats.
 *
 * Descriptors (issue 20): every socket holds two (its mailbox and its TCP connection), and a
 * closed one keeps them until libzmq's reaper thread frees it, which lags when the I/O thread is
 * busy with handshakes. So the context's socket cap is what the descriptor limit leaves (after
 * the descriptors open at start and a reserve), not a count per device, and a dial that fails
 * (no socket or descriptor free, epoll full) is not fatal: the device dials again after a backoff
 * (0.25 s doubling to 30 s, jittered per device) and the other devices go on. The soft limit is
 * raised to the hard one first; a shard that cannot fit even then is refused before it starts.
 */
#include "fleet_sim.h"
#include "clock.h"
#include "edge_http.h"
#include "identity.h"
#include "proto.h"
#include "rng.h"
#include "transport.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <dirent.h>
#include <sys/resource.h>
#include <zmq.h>

typedef struct cnd_fleet_sim cnd_fleet_sim_t;

typedef struct {
    cnd_fleet_sim_t *sim;
    uint32_t index; /* global index */
    char name[32];
    uint8_t ed_pk[32];
    cnd_client_t *cli;
    void *sock;
    cnd_edge_store_t store;
    cnd_edge_t *edge;
    cnd_edge_fault_t fault;
    int need_hello;
    int send_failed;
    int connected; /* profile went out at least once */
    uint64_t seq;
    double next_hb;
    cnd_edge_label_t labels[8];
    char site[32];
    uint8_t cpk[32], csk[32]; /* CURVE keys until the connection is made (then wiped) */
    double connect_t;         /* when its connection was made */
    uint8_t ep_cur;           /* index into the simulator's endpoint list */
    double fail_since;        /* first failed send since the last success or frame (0 = none) */
    double dial_at;           /* a failed dial is retried at this time (0 = none pending) */
    uint8_t dial_fails;       /* failed dials in a row (the backoff's exponent) */
} s_dev_t;

struct cnd_fleet_sim {
    cnd_fleet_sim_opts_t o;
    char *labels_copy;
    cnd_edge_label_t extra[6];
    size_t n_extra;
    void *ctx;
    int ep;
    cnd_edge_pool_t *pool;
    s_dev_t *dev;
    uint32_t n;
    cnd_buf_t buf;
    cnd_fleet_sim_stats_t st;
    uint8_t server_curve[32];
    uint32_t next_connect;    /* devices [0, next_connect) have their connection */
    uint32_t n_connected;     /* devices whose first profile went out */
    uint32_t n_slow;          /* connections older than 5 s still without a session */
    cnd_edge_endpoints_t eps; /* o.endpoint parsed (list order; devices start at their hash) */
    int max_sockets;          /* libzmq sockets the descriptor limit allows (s_fd_limit) */
    cnd_edge_http_t *http;    /* with o.http: the artifact cache client all devices share */
};

void cnd_fleet_sim_device_name(char out[32], uint32_t i)
{
    snprintf(out, 32, "sim-%05u", i);
}

static void s_seed_for(uint8_t seed[32], uint64_t fleet_seed, uint32_t i)
{
    /* A device's identity seed: SHA-256-free but collision-free expansion of (seed, index). */
    cnd_rng_t r;
    cnd_rng_seed(&r, fleet_seed * 0x100000001b3ull + i + 1);
    for (int k = 0; k < 4; k++) {
        uint64_t v = cnd_rng_u64(&r);
        memcpy(seed + 8 * k, &v, 8);
    }
    seed[0] ^= (uint8_t)i;
}

static int s_send(void *ctx, Condenser__MsgType type, void *payload)
{
    s_dev_t *d = ctx;
    cnd_fleet_sim_t *s = d->sim;
    if (!d->cli) return CND_ENOTFOUND; /* not connected yet (provisioning) */
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, 0, 0, d->name, d->seq++);
    int rc = cnd_proto_encode_buf(&s->buf, &env);
    if (!rc) rc = cnd_client_send(d->cli, s->buf.data, s->buf.len, 0);
    if (rc) {
        if (!d->fail_since) d->fail_since = cnd_now();
        d->send_failed = 1;
        s->st.send_failures++;
        cnd_err_clear();
        return rc;
    }
    s->st.frames_out++;
    d->fail_since = 0;
    return 0;
}

static void s_hello(s_dev_t *d, double now)
{
    d->send_failed = 0;
    cnd_edge_connected(d->edge, now);
    if (!d->send_failed) {
        d->need_hello = 0;
        if (!d->connected) d->sim->n_connected++;
        d->connected = 1;
        d->next_hb = now + d->sim->o.heartbeat_ms / 1000.0;
    }
}

static void s_handle(s_dev_t *d, const uint8_t *data, size_t len, double now)
{
    cnd_fleet_sim_t *s = d->sim;
    s->st.frames_in++;
    d->fail_since = 0;
    cnd_proto_msg_t *m = NULL;
    if (cnd_proto_decode(&m, NULL, data, len)) {
        cnd_err_clear();
        return;
    }
    const Condenser__Envelope *env = m->env;
    if (env->type == CONDENSER__MSG_TYPE__MSG_ERROR &&
        env->error->code == CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED) {
        d->need_hello = 1; /* the coordinator lost our session (restart): say hello again */
    } else if (cnd_edge_on_message(d->edge, env, now) == CND_ECANCELED) {
        /* Simulated power cut during a trial: reboot from the store, reconnect. */
        s->st.reboots++;
        if (cnd_edge_reboot(d->edge)) cnd_err_clear();
        d->need_hello = 1;
    }
    cnd_proto_msg_destroy(&m);
}

static void s_drain(s_dev_t *d, double now)
{
    for (int k = 0; k < 64; k++) {
        int ev = 0;
        size_t sz = sizeof ev;
        if (zmq_getsockopt(d->sock, ZMQ_EVENTS, &ev, &sz) || !(ev & ZMQ_POLLIN)) return;
        uint8_t *data = NULL;
        size_t len = 0;
        if (cnd_client_recv(d->cli, &data, &len, 0)) {
            cnd_err_clear();
            return;
        }
        s_handle(d, data, len, now);
        free(data);
        if (d->need_hello) s_hello(d, now);
    }
}

static int s_parse_labels(cnd_fleet_sim_t *s)
{
    if (!s->o.labels || !s->o.labels[0]) return 0;
    s->labels_copy = strdup(s->o.labels);
    if (!s->labels_copy) return cnd_errf(CND_ENOMEM, "out of memory");
    char *save = NULL;
    for (char *t = strtok_r(s->labels_copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq || eq == t || s->n_extra == 6)
            return cnd_errf(CND_EINVAL, "--labels: '%s' is not KEY=VALUE (at most 6)", t);
        *eq = 0;
        s->extra[s->n_extra].key = t;
        s->extra[s->n_extra].value = eq + 1;
        s->n_extra++;
    }
    return 0;
}

static cnd_edge_fault_t s_fault_kind(const char *f, uint32_t k)
{
    if (!f || !strcmp(f, "selftest")) return CND_EDGE_FAULT_SELFTEST;
    if (!strcmp(f, "hang")) return CND_EDGE_FAULT_HANG;
    if (!strcmp(f, "crash")) return CND_EDGE_FAULT_CRASH;
    static const cnd_edge_fault_t cyc[3] = {CND_EDGE_FAULT_SELFTEST, CND_EDGE_FAULT_HANG,
                                            CND_EDGE_FAULT_CRASH};
    return cyc[k % 3];
}

/* Options not given take their defaults. */
static void s_defaults(cnd_fleet_sim_opts_t *o)
{
    if (!o->hw_class) o->hw_class = "sim-gw";
    if (!o->cpu_class) o->cpu_class = "x86-64";
    if (!o->ram_bytes) o->ram_bytes = 16u << 20;
    if (!o->flash_bytes) o->flash_bytes = 64u << 20;
    if (!o->sites) o->sites = 4;
    if (!o->model) o->model = "";
    if (!o->heartbeat_ms) o->heartbeat_ms = 10000;
    if (!(o->failover_s > 0)) o->failover_s = 5;
    if (!o->latency_runs) o->latency_runs = 1;
}

/* Descriptors open now (/proc/self/fd, less the one reading it); -1 when it cannot be read. */
static long s_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

#define S_FD_RESERVE 64 /* libzmq's context and I/O thread, epoll, stdio, the state's sockets */

/* Two descriptors per device socket: raises the soft limit to the hard one, refuses a shard
 * that would not fit beside the descriptors already open, and sets *max_sockets to the sockets
 * the rest allows (at least one per device; the spare ones cover closed sockets not yet
 * reaped). */
static int s_fd_limit(uint32_t count, int *max_sockets)
{
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl)) return cnd_errf(CND_EIO, "fleet-sim: getrlimit failed");
    long open = s_open_fds();
    if (open < 0) open = 0;
    uint64_t lim = rl.rlim_cur == RLIM_INFINITY ? (1u << 30) : (uint64_t)rl.rlim_cur;
    uint64_t need = (uint64_t)count * 2 + S_FD_RESERVE + (uint64_t)open;
    if (need > lim)
        return cnd_errf(CND_ERANGE,
                        "fleet-sim: %u devices need about %llu file descriptors (2 per device, "
                        "%ld open already, %d spare), the limit is %llu: split the fleet over "
                        "processes with --shard",
                        count, (unsigned long long)need, open, S_FD_RESERVE,
                        (unsigned long long)lim);
    uint64_t socks = (lim - S_FD_RESERVE - (uint64_t)open) / 2;
    *max_sockets = socks > INT32_MAX / 2 ? INT32_MAX / 2 : (int)socks;
    return 0;
}

/* Which devices are faulty, drawn for the whole fleet in device order so every shard of it
 * agrees; the faults of this shard's devices. */
static void s_assign_faults(cnd_fleet_sim_t *s)
{
    const cnd_fleet_sim_opts_t *o = &s->o;
    cnd_rng_t frng;
    cnd_rng_seed(&frng, o->seed ^ 0xfa017ull);
    uint32_t nfault = 0;
    for (uint32_t k = 0; k < o->devices && k < o->first + o->count; k++) {
        int faulty = cnd_rng_double(&frng) < o->fail_rate;
        if (k < o->first) {
            nfault += (uint32_t)faulty;
            continue;
        }
        s_dev_t *d = &s->dev[k - o->first];
        d->fault = faulty ? s_fault_kind(o->fault, nfault++) : CND_EDGE_FAULT_NONE;
    }
}

/* Device k of this shard: its identity from the seed, its labels, its edge logic over a memory
 * store, provisioned with the initial artifact, then its fault armed. */
static int s_device_init(cnd_fleet_sim_t *s, uint32_t k)
{
    const cnd_fleet_sim_opts_t *o = &s->o;
    s_dev_t *d = &s->dev[k];
    d->sim = s;
    d->index = o->first + k;
    cnd_fleet_sim_device_name(d->name, d->index);
    d->seq = cnd_proto_seq_start();
    uint8_t seed[32];
    s_seed_for(seed, o->seed, d->index);
    cnd_identity_t *id = NULL;
    int rc = cnd_identity_from_seed(&id, seed);
    sodium_memzero(seed, sizeof seed);
    if (rc) return rc;
    memcpy(d->ed_pk, cnd_identity_pk(id), 32);
    rc = cnd_identity_curve_keypair(d->cpk, d->csk, id);
    cnd_identity_destroy(&id);
    if (rc) return rc;
    snprintf(d->site, sizeof d->site, "site%u", d->index % o->sites);
    size_t nl = 0;
    d->labels[nl++] = (cnd_edge_label_t){"fleet", "sim"};
    d->labels[nl++] = (cnd_edge_label_t){"site", d->site};
    for (size_t i = 0; i < s->n_extra; i++) d->labels[nl++] = s->extra[i];
    cnd_edge_cfg_t cfg = {.name = d->name,
                          .hardware_class = o->hw_class,
                          .cpu_class = o->cpu_class,
                          .model = o->model,
                          .ram_bytes = o->ram_bytes,
                          .flash_bytes = o->flash_bytes,
                          .latency_budget_us = o->latency_budget_us,
                          .labels = d->labels,
                          .n_labels = nl,
                          .trust = (const uint8_t(*)[32])o->coordinator_pk,
                          .n_trust = 1,
                          .latency_runs = o->latency_runs,
                          .keep_model = 0,
                          .fault = CND_EDGE_FAULT_NONE};
    if ((rc = cnd_edge_store_mem(&d->store, s->pool))) return rc;
    if ((rc = cnd_edge_new(&d->edge, &cfg, &d->store, s_send, d))) return rc;
    if (s->http) cnd_edge_set_fetch(d->edge, cnd_edge_http_fetch, s->http);
    if ((rc = cnd_edge_boot(d->edge))) return rc;
    if (o->initial) {
        cnd_edge_reason_t why;
        if ((rc = cnd_edge_install(d->edge, o->initial, o->initial_len, o->initial_manifest,
                                   o->initial_manifest_len, &why)))
            return cnd_err_wrap(rc, "fleet-sim: provisioning %s with the initial artifact",
                                d->name);
    }
    cnd_edge_set_fault(d->edge, d->fault); /* armed after provisioning */
    d->need_hello = 1;
    return 0;
}

int cnd_fleet_sim_new(cnd_fleet_sim_t **out, const cnd_fleet_sim_opts_t *o)
{
    *out = NULL;
    if (!o->endpoint || !o->count || o->first + o->count > o->devices || o->fail_rate < 0 ||
        o->fail_rate > 1)
        return cnd_errf(CND_EINVAL, "fleet-sim: endpoint, a device range inside the fleet and a "
                                    "fail rate in [0, 1] are required");
    if (o->fault && strcmp(o->fault, "selftest") && strcmp(o->fault, "hang") &&
        strcmp(o->fault, "crash") && strcmp(o->fault, "mixed"))
        return cnd_errf(CND_EINVAL, "--fault '%s': selftest, hang, crash or mixed", o->fault);
    int rc = cnd_crypto_init();
    if (rc) return rc;
    cnd_fleet_sim_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "out of memory");
    s->o = *o;
    s_defaults(&s->o);
    s->ep = -1;
    cnd_buf_init(&s->buf);
    if ((rc = cnd_edge_endpoints_parse(&s->eps, o->endpoint, NULL))) goto fail;
    if ((rc = s_parse_labels(s)) || (rc = s_fd_limit(o->count, &s->max_sockets))) goto fail;
    if ((rc = cnd_edge_pool_new(&s->pool))) goto fail;
    if (o->http && (rc = cnd_edge_http_new(&s->http))) goto fail;
    s->ctx = zmq_ctx_new();
    /* A device that fails over dials its next socket while libzmq's reaper may still hold the
     * closed one: a cap of one or two sockets per device made such bursts fail whole processes
     * ("creating DEALER: Too many open files", docs/benchmarks.md); the descriptors are the
     * real bound. */
    if (!s->ctx || zmq_ctx_set(s->ctx, ZMQ_MAX_SOCKETS, s->max_sockets)) {
        rc = cnd_errf(CND_EIO, "fleet-sim: zmq context: %s", zmq_strerror(errno));
        goto fail;
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->dev = calloc(o->count, sizeof *s->dev);
    if (s->ep < 0 || !s->dev) {
        rc = cnd_errf(CND_ENOMEM, "fleet-sim: out of memory");
        goto fail;
    }
    if ((rc = cnd_transport_curve_public(s->server_curve, o->coordinator_pk))) goto fail;
    s_assign_faults(s);
    for (uint32_t k = 0; k < o->count; k++) {
        if ((rc = s_device_init(s, k))) goto fail;
        s->n = k + 1;
    }
    *out = s;
    return 0;
fail:
    s->n = o->count; /* destroy walks every slot; empty ones are skipped */
    cnd_fleet_sim_destroy(&s);
    return rc;
}

void cnd_fleet_sim_destroy(cnd_fleet_sim_t **ps)
{
    if (!ps || !*ps) return;
    cnd_fleet_sim_t *s = *ps;
    for (uint32_t k = 0; s->dev && k < s->n; k++) {
        s_dev_t *d = &s->dev[k];
        cnd_client_destroy(&d->cli);
        sodium_memzero(d->csk, sizeof d->csk);
        cnd_edge_destroy(&d->edge);
        if (d->store.ctx) cnd_edge_store_mem_free(&d->store);
    }
    free(s->dev);
    if (s->ep >= 0) close(s->ep);
    if (s->ctx) zmq_ctx_term(s->ctx);
    cnd_edge_pool_destroy(&s->pool);
    cnd_edge_http_free(&s->http);
    cnd_buf_free(&s->buf);
    free(s->labels_copy);
    free(s);
    *ps = NULL;
}

/* Dials device d's current endpoint and watches its socket. With one endpoint the CURVE secret
 * key is wiped once a connection is made; with several it is kept for the next dial (failover).
 * On failure nothing of the dial is left (the caller retries, s_dial_or_defer). */
static int s_dial(cnd_fleet_sim_t *s, s_dev_t *d, uint32_t k)
{
    cnd_client_opts_t co = {.endpoint = s->eps.ep[d->ep_cur],
                            .server_key = s->server_curve,
                            .public_key = d->cpk,
                            .secret_key = d->csk,
                            /* no ZMTP pings: libzmq 4.3 cancels timers by a walk over
                             * all of them, and this process holds thousands of
                             * connections (transport.h, rollout_serve.c) */
                            .heartbeat_ivl_ms = CND_HEARTBEAT_OFF,
                            .handshake_ivl_ms = 30000,
                            .reconnect_ivl_ms = 200 + (int)(k % 400),
                            .reconnect_ivl_max_ms = 5000,
                            .zmq_context = s->ctx,
                            .no_monitor = 1};
    d->connect_t = cnd_now();
    d->fail_since = 0;
    int rc = cnd_client_new(&d->cli, &co);
    if (rc) return rc;
    d->sock = cnd_client_socket(d->cli);
    int fd;
    size_t fsz = sizeof fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = d};
    if (zmq_getsockopt(d->sock, ZMQ_FD, &fd, &fsz))
        rc = cnd_errf(CND_EIO, "fleet-sim: ZMQ_FD: %s", zmq_strerror(errno));
    else if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev))
        rc = cnd_errf(CND_EIO, "fleet-sim: epoll: %s", strerror(errno));
    if (rc) {
        cnd_client_destroy(&d->cli);
        d->sock = NULL;
        return rc;
    }
    if (s->eps.n < 2) sodium_memzero(d->csk, sizeof d->csk);
    return 0;
}

/* Dials d, or when that fails (descriptors, sockets or epoll slots short: the detail says which)
 * schedules another try after a jittered backoff; the process goes on either way. */
static void s_dial_or_defer(cnd_fleet_sim_t *s, s_dev_t *d, uint32_t k, double now)
{
    d->dial_at = 0;
    if (s_dial(s, d, k) == 0) {
        d->dial_fails = 0;
        return;
    }
    if (!s->st.dial_retries) /* said once, so a dial that can never work is not silent */
        fprintf(stderr, "fleet-sim: %s: dialling %s failed (%s); retrying with a backoff\n",
                d->name, s->eps.ep[d->ep_cur], cnd_err_detail());
    cnd_err_clear();
    if (d->dial_fails < 16) d->dial_fails++;
    double wait = 0.25 * (double)(1u << (d->dial_fails - 1));
    if (wait > 30) wait = 30;
    d->dial_at = now + wait * (0.5 + (double)(k % 1000) / 1000.0); /* spread the retries */
    s->st.dial_retries++;
}

/* Connects every device (after enrollment: a key the coordinator refuses is not retried by
 * libzmq when no monitor watches the socket). */
static void s_connect_some(cnd_fleet_sim_t *s, uint32_t max, double now)
{
    /* A few at a time: the coordinator's listen backlog is libzmq's default (100), and SYNs
     * beyond it are retried by TCP only after a second or more. */
    for (uint32_t k = s->next_connect; k < s->n && k < s->next_connect + max; k++) {
        s_dev_t *d = &s->dev[k];
        d->ep_cur = (uint8_t)cnd_edge_endpoint_first(d->name, s->eps.n);
        s_dial_or_defer(s, d, k, now);
    }
    s->next_connect = s->next_connect + max < s->n ? s->next_connect + max : s->n;
}

/* A device whose sends have failed for failover_s (no session: a dead or standby endpoint),
 * with no send succeeding and no frame arriving since, closes its connection and dials the next
 * endpoint of the list. An idle device with a session sends nothing to fail, so it stays; one
 * whose server died notices at its next send (hello retries, heartbeats, reports). */
static void s_failover(cnd_fleet_sim_t *s, s_dev_t *d, uint32_t k, double now)
{
    if (s->eps.n < 2 || !d->cli || !d->fail_since || now - d->fail_since < s->o.failover_s) return;
    cnd_client_destroy(&d->cli); /* its descriptor leaves the epoll set as it closes */
    d->sock = NULL;
    d->ep_cur = (uint8_t)((d->ep_cur + 1) % s->eps.n);
    d->need_hello = 1;
    s->st.failovers++;
    s_dial_or_defer(s, d, k, now);
}

int cnd_fleet_sim_run(cnd_fleet_sim_t *s, volatile sig_atomic_t *stop, double max_seconds,
                      int (*done)(void *ctx, cnd_fleet_sim_t *s), void *ctx)
{
    double t0 = cnd_now(), next_sweep = 0, next_done = t0 + 0.2;
    struct epoll_event evs[512];
    while (!(stop && *stop)) {
        double now = cnd_now();
        if (max_seconds > 0 && now - t0 > max_seconds) break;
        /* At most 64 handshakes in flight: more only overflow the server's listen backlog,
         * and TCP retries a dropped SYN after a second, then two, then four. */
        uint32_t inflight = s->next_connect - s->n_connected - s->n_slow;
        if (s->next_connect < s->n && inflight < 64) s_connect_some(s, 64 - inflight, now);
        if (now >= next_sweep) {
            next_sweep = now + 0.2;
            s->n_slow = 0;
            for (uint32_t k = 0; k < s->n; k++) {
                s_dev_t *d = &s->dev[k];
                if (!d->cli && d->dial_at && now >= d->dial_at) s_dial_or_defer(s, d, k, now);
                if (!d->cli) continue;
                s_failover(s, d, k, now);
                if (!d->cli) continue;
                if (!d->connected && now - d->connect_t > 5) s->n_slow++;
                if (d->need_hello) s_hello(d, now);
                cnd_edge_tick(d->edge, now);
                if (!d->need_hello && now >= d->next_hb) {
                    Condenser__Heartbeat hb;
                    condenser__heartbeat__init(&hb);
                    hb.unix_ms = (uint64_t)cnd_unix_time() * 1000;
                    (void)s_send(d, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb);
                    d->next_hb = now + s->o.heartbeat_ms / 1000.0;
                }
                s_drain(d, now);
            }
        }
        if (done && now >= next_done) {
            next_done = now + 0.2;
            if (done(ctx, s)) break;
        }
        int n = epoll_wait(s->ep, evs, 512, s->next_connect < s->n ? 5 : 20);
        if (n < 0 && errno != EINTR)
            return cnd_errf(CND_EIO, "fleet-sim: epoll_wait: %s", strerror(errno));
        now = cnd_now();
        for (int i = 0; i < n; i++) s_drain(evs[i].data.ptr, now);
    }
    return 0;
}

uint32_t cnd_fleet_sim_count(const cnd_fleet_sim_t *s)
{
    return s->n;
}

const char *cnd_fleet_sim_name(const cnd_fleet_sim_t *s, uint32_t i)
{
    return s->dev[i].name;
}

const uint8_t *cnd_fleet_sim_pubkey(const cnd_fleet_sim_t *s, uint32_t i)
{
    return s->dev[i].ed_pk;
}

cnd_edge_fault_t cnd_fleet_sim_fault(const cnd_fleet_sim_t *s, uint32_t i)
{
    return s->dev[i].fault;
}

void cnd_fleet_sim_status(const cnd_fleet_sim_t *s, uint32_t i, cnd_edge_status_t *st)
{
    cnd_edge_status(s->dev[i].edge, st);
}

uint32_t cnd_fleet_sim_connected(const cnd_fleet_sim_t *s)
{
    return s->n_connected;
}

void cnd_fleet_sim_stats(const cnd_fleet_sim_t *s, cnd_fleet_sim_stats_t *st)
{
    *st = s->st;
    st->pool_bytes = cnd_edge_pool_bytes(s->pool);
}
