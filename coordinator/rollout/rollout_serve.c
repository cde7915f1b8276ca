/*
 * rollout_serve.c: the device-serving coordinator process (see rollout_serve.h).
 *
 * Threads: the main thread owns the socket, the database connection, the audit log and the
 * engine. libzmq's ZAP thread calls s_allow() with its own read-only connection.
 */
#include "rollout_serve.h"
#include "audit_actions.h"
#include "json.h"
#include "clock.h"
#include "db.h"
#include "digest.h"
#include "fileio.h"
#include "fleet_registry.h"
#include "proto.h"
#include "rollout.h"
#include "rollout_store.h"
#include "transport.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zmq.h>

/* --- the coordinator directory -------------------------------------------------------------- */

static int s_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key, int create);

int cnd_rollout_dir_init(const char *dir)
{
    int rc = cnd_mkdir_p(dir, 0700);
    if (rc) return rc;
    char kp[600];
    snprintf(kp, sizeof kp, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    if (!cnd_file_exists(kp)) {
        cnd_identity_t *id = NULL;
        if ((rc = cnd_identity_generate(&id))) return rc;
        rc = cnd_identity_save(id, dir, 0);
        cnd_identity_destroy(&id);
        if (rc) return rc;
    }
    cnd_rollout_dir_t d;
    if ((rc = s_dir_open(&d, dir, 1, 1))) return rc;
    cnd_rollout_dir_close(&d);
    return 0;
}

int cnd_rollout_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key)
{
    return s_dir_open(d, dir, with_key, 0);
}

/* Opens DIR's database, creating it only when `create` (rollout init): every other command on a
 * directory without one fails and leaves the directory as it was. */
static int s_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key, int create)
{
    memset(d, 0, sizeof *d);
    char path[600];
    snprintf(path, sizeof path, "%s/coordinator.db", dir);
    int rc = cnd_db_open(&d->db, path, create ? CND_DB_CREATE : 0, "coordinator database");
    if (rc == CND_ENOTFOUND)
        return cnd_errf(CND_ENOTFOUND,
                        "%s: no coordinator database in %s (run `condenser rollout init --dir %s` "
                        "or `condenser coordinator init`)",
                        path, dir, dir);
    if (!rc) rc = cnd_fleet_init(d->db);
    if (!rc) rc = cnd_rstore_init(d->db);
    if (!rc && with_key) {
        char kp[600];
        snprintf(kp, sizeof kp, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
        rc = cnd_identity_load(&d->id, kp);
        uint8_t *raw = NULL;
        size_t len = 0;
        /* The audit log signs with the libsodium secret key: seed || public key, which is
         * exactly bytes 8..72 of the identity file (crypto/identity.h). */
        if (!rc) rc = cnd_file_read(kp, 4096, &raw, &len);
        if (!rc && len != 72) rc = cnd_errf(CND_EFORMAT, "%s: unexpected size", kp);
        /* A log created by `condenser coordinator init` has its own origin: keep it. */
        char origin[CND_AUDIT_MAX_ORIGIN + 1] = "";
        sqlite3_stmt *st = NULL;
        if (!rc &&
            sqlite3_prepare_v2(d->db, "SELECT value FROM audit_meta WHERE key = 'origin'", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            snprintf(origin, sizeof origin, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        if (!rc) rc = cnd_audit_open_db(&d->audit, d->db, raw + 8, origin[0] ? origin : NULL);
        if (raw) {
            sodium_memzero(raw, len);
            free(raw);
        }
        if (!rc) cnd_pubkey_fingerprint(d->fpr, cnd_identity_pk(d->id));
    }
    if (rc) cnd_rollout_dir_close(d);
    return rc;
}

void cnd_rollout_dir_close(cnd_rollout_dir_t *d)
{
    cnd_audit_close(&d->audit);
    cnd_identity_destroy(&d->id);
    cnd_db_close(&d->db);
}

/* --- sessions ------------------------------------------------------------------------------- */

typedef struct {
    int used;
    char name[CND_USER_ID_MAX];
    char fpr[65];
    uint8_t ed_pk[32];
    cnd_peer_t peer;
    cnd_seqwin_t win;
    int session; /* Hello or DeviceProfile seen on this run */
} s_sess_t;

typedef struct {
    const cnd_rollout_serve_opts_t *o;
    cnd_rollout_dir_t dir;
    cnd_server_t *srv;
    cnd_rollout_engine_t *eng;
    pthread_mutex_t zmu;
    sqlite3 *zdb;
    s_sess_t *sess;
    size_t cap, n;
    uint64_t seq;
    int txn;
    cnd_buf_t out;
    char name[64];
    cnd_rollout_serve_stats_t st;
} s_srv_t;

static void s_log(s_srv_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(s_srv_t *s, const char *fmt, ...)
{
    if (!s->o->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->o->log(s->o->log_ctx, buf);
}

static void s_eng_log(void *ctx, const char *line)
{
    s_srv_t *s = ctx;
    if (s->o->log) s->o->log(s->o->log_ctx, line);
}

static uint64_t s_hash(const char *p)
{
    uint64_t h = 1469598103934665603ull;
    while (*p) h = (h ^ (uint8_t)*p++) * 1099511628211ull;
    return h;
}

static s_sess_t *s_sess(s_srv_t *s, const char *name, int create)
{
    if (s->cap) {
        for (size_t i = s_hash(name) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
            if (!s->sess[i].used) break;
            if (strcmp(s->sess[i].name, name) == 0) return &s->sess[i];
        }
    }
    if (!create) return NULL;
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 1024;
        s_sess_t *g = calloc(nc, sizeof *g);
        if (!g) return NULL;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->sess[i].used) continue;
            size_t j = s_hash(s->sess[i].name) & (nc - 1);
            while (g[j].used) j = (j + 1) & (nc - 1);
            g[j] = s->sess[i];
        }
        free(s->sess);
        s->sess = g;
        s->cap = nc;
    }
    cnd_fleet_device_t d;
    if (cnd_fleet_get(s->dir.db, name, &d)) return NULL;
    size_t j = s_hash(name) & (s->cap - 1);
    while (s->sess[j].used) j = (j + 1) & (s->cap - 1);
    s_sess_t *x = &s->sess[j];
    memset(x, 0, sizeof *x);
    x->used = 1;
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->fpr, sizeof x->fpr, "%s", d.fpr);
    memcpy(x->ed_pk, d.ed_pk, 32);
    cnd_seqwin_init(&x->win);
    s->n++;
    return x;
}

static int s_send_env(s_srv_t *s, s_sess_t *x, const cnd_peer_t *peer, Condenser__MsgType type,
                      void *payload)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, 0, 0, s->name, s->seq++);
    int rc = cnd_proto_encode_buf(&s->out, &env);
    if (rc) {
        s_log(s, "not sending %s to %s: %s", cnd_proto_type_name(type), x->name, cnd_err_detail());
        return rc;
    }
    rc = cnd_server_send(s->srv, peer, s->out.data, s->out.len, 200);
    if (!rc) s->st.frames_out++;
    return rc;
}

static int s_io_send(void *ctx, const char *device, Condenser__MsgType type, void *payload)
{
    s_srv_t *s = ctx;
    s_sess_t *x = s_sess(s, device, 0);
    if (!x || !x->session) return CND_ENOTFOUND;
    int rc = s_send_env(s, x, &x->peer, type, payload);
    if (rc == CND_ENOTFOUND) x->session = 0;
    return rc;
}

static int s_begin(s_srv_t *s)
{
    if (s->txn) return 0;
    if (sqlite3_exec(s->dir.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return cnd_errf(CND_EDB, "begin: %s", sqlite3_errmsg(s->dir.db));
    s->txn = 1;
    return 0;
}

static int s_commit(void *ctx)
{
    s_srv_t *s = ctx;
    if (s->txn) {
        s->txn = 0;
        if (sqlite3_exec(s->dir.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            return cnd_errf(CND_EDB, "commit: %s", sqlite3_errmsg(s->dir.db));
    }
    return s_begin(s);
}

/* --- ZAP ------------------------------------------------------------------------------------ */

static int s_allow(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    s_srv_t *s = ctx;
    cnd_fleet_device_t d;
    pthread_mutex_lock(&s->zmu);
    int rc = cnd_fleet_by_curve(s->zdb, pub, &d);
    pthread_mutex_unlock(&s->zmu);
    if (rc == CND_ENOTFOUND) return 0;
    if (rc) return -1;
    if (d.revoked_ms) return 0;
    snprintf(user_id, CND_USER_ID_MAX, "%s", d.name);
    return 1;
}

/* --- frames --------------------------------------------------------------------------------- */

static void s_reject(s_srv_t *s, s_sess_t *x, const cnd_frame_t *f, const cnd_proto_reject_t *rej,
                     const char *why)
{
    s->st.rejected++;
    char reason[300];
    snprintf(reason, sizeof reason, "%s", why && *why ? why : cnd_proto_error_name(rej->code));
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "peer");
    cnd_jw_str(&w, x ? x->fpr : f->user_id);
    cnd_jw_key(&w, "type");
    cnd_jw_str(&w, cnd_proto_type_name(rej->type));
    cnd_jw_key(&w, "size");
    cnd_jw_int(&w, (int64_t)f->len);
    cnd_jw_key(&w, "reason");
    cnd_jw_str(&w, reason);
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg = {"message", {0}};
    cnd_sha256(dg.sha256, f->data, f->len);
    cnd_audit_rec_t a = {.actor = s->dir.fpr,
                         .action = CND_AUDIT_REJECT_MESSAGE,
                         .subject = x ? x->fpr : f->user_id,
                         .details = cnd_jw_text(&w),
                         .digests = &dg,
                         .n_digests = 1};
    if (a.details && cnd_audit_append(s->dir.audit, &a, NULL))
        s_log(s, "audit: %s", cnd_err_detail());
    cnd_jw_free(&w);
    if (rej->type == CONDENSER__MSG_TYPE__MSG_ERROR || !x) return;
    Condenser__Error err;
    char text[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_error_init(&err, text, rej, reason);
    (void)s_send_env(s, x, &f->peer, CONDENSER__MSG_TYPE__MSG_ERROR, &err);
}

static void s_on_frame(s_srv_t *s, cnd_frame_t *f)
{
    s->st.frames_in++;
    s_sess_t *x = s_sess(s, f->user_id, 1);
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_MALFORMED, 0, 0};
    if (!x) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s_reject(s, NULL, f, &rej, "not an enrolled device");
        return;
    }
    cnd_proto_msg_t *m = NULL;
    if (cnd_proto_accept(&m, &rej, f->data, f->len, f->user_id, CONDENSER__ROLE__ROLE_DEVICE,
                         &x->win, NULL)) {
        s_reject(s, x, f, &rej, cnd_err_detail());
        return;
    }
    const Condenser__Envelope *env = m->env;
    x->peer = f->peer;
    if (env->type == CONDENSER__MSG_TYPE__MSG_HELLO) {
        const Condenser__Hello *h = env->hello;
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        if (sodium_memcmp(h->identity_key.data, x->ed_pk, 32) != 0 ||
            h->role != CONDENSER__ROLE__ROLE_DEVICE) {
            s_reject(s, x, f, &rej, "hello: identity key or role differ from the enrollment");
        } else if (h->min_version > CND_PROTO_VERSION || h->max_version < CND_PROTO_VERSION) {
            rej.code = CONDENSER__ERROR_CODE__ERR_BAD_VERSION;
            s_reject(s, x, f, &rej, "no common protocol version");
        } else {
            x->session = 1;
            Condenser__HelloAck ack;
            condenser__hello_ack__init(&ack);
            ack.coordinator_name = cnd_proto_str(s->name);
            ack.version = CND_PROTO_VERSION;
            ack.heartbeat_ms = (uint32_t)(s->o->heartbeat_ms ? s->o->heartbeat_ms : 10000);
            ack.max_message = CND_PROTO_MAX_MSG;
            ack.chunk_size = CND_PROTO_CHUNK_DEFAULT;
            ack.server_unix_ms = (uint64_t)cnd_unix_time() * 1000;
            (void)s_send_env(s, x, &x->peer, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, &ack);
        }
        cnd_proto_msg_destroy(&m);
        return;
    }
    if (env->type == CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE) x->session = 1;
    if (!x->session) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        rej.seq = env->seq;
        rej.type = env->type;
        s_reject(s, x, f, &rej, "no session: send hello first");
        cnd_proto_msg_destroy(&m);
        return;
    }
    cnd_err_clear();
    if (cnd_rollout_on_message(s->eng, x->name, x->fpr, env, &rej))
        s_reject(s, x, f, &rej, cnd_err_detail());
    cnd_proto_msg_destroy(&m);
}

static double s_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int cnd_rollout_serve(const cnd_rollout_serve_opts_t *o, volatile sig_atomic_t *stop,
                      cnd_rollout_serve_stats_t *stout)
{
    s_srv_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "out of memory");
    s->o = o;
    s->seq = cnd_proto_seq_start();
    pthread_mutex_init(&s->zmu, NULL);
    cnd_buf_init(&s->out);
    double t0 = cnd_now(), c0 = s_cpu();
    uint8_t csk[32], cpk[32];
    int rc = cnd_rollout_dir_open(&s->dir, o->dir, 1);
    if (rc) goto out;
    snprintf(s->name, sizeof s->name, "coordinator");
    char zpath[600];
    snprintf(zpath, sizeof zpath, "%s/coordinator.db", o->dir);
    if ((rc = cnd_db_open(&s->zdb, zpath, CND_DB_READONLY, "coordinator database"))) goto out;
    if ((rc = cnd_identity_curve_keypair(cpk, csk, s->dir.id))) goto out;
    cnd_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = o->endpoint;
    so.secret_key = csk;
    so.allow = s_allow;
    so.allow_ctx = s;
    /* libzmq 4.3 cancels a timer by walking every timer of the I/O thread, and a ZMTP
     * heartbeat cancels one at every message after each PING: with 10,000 devices that is
     * quadratic and took a whole core. Device liveness comes from the application's own
     * heartbeats (offline_after_s), so ZMTP pings are only a slow backstop here. */
    so.heartbeat_ivl_ms = 600000;
    so.handshake_ivl_ms = 30000; /* thousands of handshakes at once on a busy machine */
    rc = cnd_server_new(&s->srv, &so);
    sodium_memzero(csk, sizeof csk);
    if (rc) goto out;
    const char *ep = cnd_server_endpoint(s->srv);
    if (o->endpoint_file && (rc = cnd_file_write_atomic(o->endpoint_file, ep, strlen(ep), 0644)))
        goto out;
    s_log(s, "rollout server listening on %s (CurveZMQ, enrolled devices only)", ep);
    cnd_rollout_io_t io = {s, s_io_send, s_commit, s_eng_log};
    cnd_rollout_engine_opts_t eo = {o->offline_after_s, 0};
    if ((rc = cnd_rollout_engine_new(&s->eng, s->dir.db, s->dir.audit, s->dir.id, &io, &eo)))
        goto out;
    /* Waiting uses the socket's ZMQ_FD with poll(2) rather than zmq_poll: zmq_poll reads
     * ZMQ_EVENTS, and with ZMQ_ROUTER_MANDATORY libzmq 4.3 computes POLLOUT by walking every
     * peer's pipe, which at 10,000 devices cost most of the coordinator's CPU. Every wake-up
     * drains the socket until it is empty, so the edge-triggered descriptor cannot be missed,
     * and the 50 ms timeout bounds any delay. */
    void *sock = cnd_server_socket(s->srv);
    int zfd = -1;
    size_t zfd_len = sizeof zfd;
    if (zmq_getsockopt(sock, ZMQ_FD, &zfd, &zfd_len)) {
        rc = cnd_errf(CND_EIO, "ZMQ_FD: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    int seen_live = 0;
    while (!*stop) {
        /* No transaction is held while waiting, so operator commands get the write lock. */
        struct pollfd pfd = {zfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) < 0 && errno != EINTR) {
            rc = cnd_errf(CND_EIO, "poll: %s", strerror(errno));
            break;
        }
        if ((rc = s_begin(s))) break;
        for (int k = 0; k < 4096; k++) {
            cnd_frame_t f;
            int r = cnd_server_recv(s->srv, &f, 0);
            if (r == CND_ETIMEOUT) break;
            if (r) {
                s_log(s, "receive: %s", cnd_err_detail());
                break;
            }
            s_on_frame(s, &f);
            cnd_frame_clear(&f);
        }
        cnd_err_clear();
        cnd_rollout_tick(s->eng, cnd_unix_time() * 1000);
        s->txn = 0;
        if (sqlite3_exec(s->dir.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            rc = cnd_errf(CND_EDB, "commit: %s", sqlite3_errmsg(s->dir.db));
            break;
        }
        if (o->until_idle) {
            cnd_rollout_stats_t es;
            cnd_rollout_engine_stats(s->eng, &es);
            if (es.live) seen_live = 1;
            if (seen_live && cnd_rollout_engine_idle(s->eng)) break;
        }
        if (o->max_seconds > 0 && cnd_now() - t0 > o->max_seconds) break;
    }
    if (s->txn) {
        s->txn = 0;
        if (sqlite3_exec(s->dir.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !rc)
            rc = cnd_errf(CND_EDB, "commit: %s", sqlite3_errmsg(s->dir.db));
    }
    if (!rc && s->dir.audit && cnd_audit_checkpoint(s->dir.audit, "rollout.serve.end", NULL))
        s_log(s, "audit: %s", cnd_err_detail());
out:
    if (stout) {
        cnd_rollout_stats_t es;
        memset(&es, 0, sizeof es);
        if (s->eng) cnd_rollout_engine_stats(s->eng, &es);
        s->st.chunks_sent = es.chunks_sent;
        s->st.bytes_sent = es.bytes_sent;
        s->st.seconds = cnd_now() - t0;
        s->st.cpu_seconds = s_cpu() - c0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        s->st.peak_rss_kb = (uint64_t)ru.ru_maxrss;
        *stout = s->st;
    }
    cnd_rollout_engine_destroy(&s->eng);
    cnd_server_destroy(&s->srv);
    cnd_db_close(&s->zdb);
    cnd_rollout_dir_close(&s->dir);
    cnd_buf_free(&s->out);
    free(s->sess);
    pthread_mutex_destroy(&s->zmu);
    free(s);
    return rc;
}
