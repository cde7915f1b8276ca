/*
 * rollout_serve.c: the device-serving coordinator process (see rollout_serve.h).
 *
 * Threads: the main thread owns the socket, the database connection, the audit log and the
 * engine. libzmq's ZAP thread calls s_allow() with its own read-only connection.
 *
 * Sessions (docs/protocol.md section 1, "Sessions", as for the coordinator daemon): a device's
 * session belongs to one connection and begins there with its Hello (whose certificate is
 * checked against the federation CA, the device's name, role and enrolled key) or, for a device
 * enrolled without a certificate, its DeviceProfile; anything else on a connection without a
 * session is refused ("send hello first"), even if the device has a session elsewhere. A session
 * opened on a new connection ends the one on the old connection ("superseded" when it is still
 * open). Every S_RECHECK_S seconds sessions of revoked devices end, and so do sessions whose
 * certificate expired or (when the CRL changed) was revoked by the CA. Sends never wait: a
 * device whose queue is full does not read (it keeps at most 4 chunk requests in flight, so the
 * queue never fills otherwise); its session ends and its connection's frames are dropped
 * unread. Refusals are recorded at a bounded rate (audit_limit.h); the answers a device needs to
 * recover ("send hello first", "session ended: ...") are always sent.
 */
#include "rollout_serve.h"
#include "audit_actions.h"
#include "audit_limit.h"
#include "ca.h"
#include "cert.h"
#include "clock.h"
#include "db.h"
#include "digest.h"
#include "fileio.h"
#include "fleet_registry.h"
#include "metrics.h"
#include "proto.h"
#include "rollout.h"
#include "rollout_metrics.h"
#include "rollout_store.h"
#include "service.h"
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
#include <unistd.h>
#include <zmq.h>

/* --- the coordinator directory -------------------------------------------------------------- */

static int s_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key, int create,
                      const char *state_url);

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
    if ((rc = s_dir_open(&d, dir, 1, 1, NULL))) return rc;
    cnd_rollout_dir_close(&d);
    return 0;
}

int cnd_rollout_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key)
{
    return s_dir_open(d, dir, with_key, 0, NULL);
}

int cnd_rollout_dir_open_state(cnd_rollout_dir_t *d, const char *dir, int with_key,
                               const char *state_url)
{
    return s_dir_open(d, dir, with_key, 0, state_url);
}

/* Opens DIR's database, creating it only when `create` (rollout init): every other command on a
 * directory without one fails and leaves the directory as it was. */
static int s_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key, int create,
                      const char *state_url)
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
    /* With the state on PostgreSQL, replicas sharing this directory take its SQLite lock at
     * every loop iteration, each right after the writers' lock (granted in turn). A newcomer
     * asking SQLite alone (the schema checks, the audit log's first transaction) polls past
     * that queue and could starve past the busy timeout (simulators of a 100,000-device run
     * did: docs/benchmarks.md); it queues for the writers' lock first too, and holds it until
     * the directory is open (nothing is written to PostgreSQL here: rolled back). */
    int pg = cnd_rstate_url_is_pg(state_url), locked = 0;
    if (!rc && pg && !(rc = cnd_rstate_open(&d->state, state_url, d->db)))
        locked = (rc = cnd_rstate_begin(d->state)) == 0;
    if (!rc) rc = cnd_fleet_init(d->db);
    if (!rc) rc = cnd_rstore_init(d->db);
    if (!rc && !pg) rc = cnd_rstate_open(&d->state, state_url, d->db);
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
    if (locked) cnd_rstate_rollback(d->state);
    if (rc) cnd_rollout_dir_close(d);
    return rc;
}

void cnd_rollout_dir_close(cnd_rollout_dir_t *d)
{
    cnd_audit_close(&d->audit);
    cnd_identity_destroy(&d->id);
    cnd_rstate_close(&d->state);
    cnd_db_close(&d->db);
}

/* --- sessions ------------------------------------------------------------------------------- */

#define S_CLOSED    1024 /* connections whose session ended, remembered */
#define S_RECHECK_S 2.0  /* revocation, expiry and CRL re-checked this often */

typedef struct {
    int used;
    char name[CND_USER_ID_MAX];
    char fpr[65];
    uint8_t ed_pk[32];
    cnd_peer_t peer; /* the session's connection */
    char address[64];
    cnd_seqwin_t win; /* replay window of the session */
    int session;      /* a session is open on `peer` */
    uint64_t id;      /* session number in this run */
    uint8_t *cert;    /* the certificate its Hello presented (DER, owned), or NULL */
    size_t cert_len;
    int64_t not_after; /* its end of validity (Unix s), 0 without a certificate */
} s_sess_t;

typedef struct {
    int used;
    cnd_peer_t peer;
    char text[CND_PROTO_TEXT_MAX + 1]; /* the answer to what it sends, "" when muted */
    int mute;                          /* 1: dropped unread (it does not read) */
} s_closed_t;

typedef struct {
    const cnd_rollout_serve_opts_t *o;
    cnd_rollout_dir_t dir;
    cnd_server_t *srv;
    cnd_rollout_engine_t *eng;
    pthread_mutex_t zmu;
    sqlite3 *zdb;
    cnd_rstate_t *zstate; /* the ZAP thread's own connection to the rollout state */
    cnd_rstate_t *lease;  /* PostgreSQL: the connection for the leader lock, or NULL */
    double last_lease;    /* when the lock was last tried or checked */
    int spread;           /* PostgreSQL: a replica serving its own devices (rollout.h) */
    int leading;          /* holds the leader lock (always on SQLite) */
    double last_count;    /* when the sessions were last counted for the log */
    size_t logged_open;   /* sessions open at the last count that was logged */
    s_sess_t *sess;
    size_t cap, n;
    uint64_t seq;
    int txn;
    cnd_buf_t out;
    char name[64];
    cnd_rollout_serve_stats_t st;
    cnd_audit_limiter_t *limit;
    s_closed_t closed[S_CLOSED];
    size_t closed_next;
    uint64_t next_session;
    char ca_cert[600], ca_crl[600]; /* the federation CA (coordinator directories), or "" */
    cnd_ca_trust_t *trust;          /* loaded from them, reloaded when the CRL changes */
    uint8_t crl_digest[32];
    double last_recheck;
    cnd_rollout_metrics_t mstate;  /* what the metrics endpoint reads */
    cnd_metrics_server_t *metrics; /* --metrics; NULL when off */
    double last_metrics;           /* when the snapshot was last taken */
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
    if (cnd_rstate_fleet_get(s->dir.state, name, &d)) return NULL;
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
    /* Never waits: a full queue is a device that does not read (s_io_send). */
    rc = cnd_server_send(s->srv, peer, s->out.data, s->out.len, 0);
    if (!rc) s->st.frames_out++;
    return rc;
}

static int s_peer_eq(const cnd_peer_t *a, const cnd_peer_t *b)
{
    return a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static s_closed_t *s_closed(s_srv_t *s, const cnd_peer_t *peer)
{
    for (size_t i = 0; i < S_CLOSED; i++)
        if (s->closed[i].used && s_peer_eq(&s->closed[i].peer, peer)) return &s->closed[i];
    return NULL;
}

static void s_closed_add(s_srv_t *s, const cnd_peer_t *peer, const char *text, int mute)
{
    s_closed_t *c = s_closed(s, peer);
    if (!c) {
        c = &s->closed[s->closed_next];
        s->closed_next = (s->closed_next + 1) % S_CLOSED;
    }
    c->used = 1;
    c->peer = *peer;
    snprintf(c->text, sizeof c->text, "%s", text);
    c->mute = c->mute || mute;
}

/* Ends a device's session: session.end (unless its connection just closed), its connection
 * remembered with the answer its later frames get, and (tell) that answer sent now. */
static void s_session_end(s_srv_t *s, s_sess_t *x, const char *reason, const char *detail, int tell)
{
    if (!x->session) return;
    /* detail may be cnd_err_detail(), which what follows rewrites: keep a copy */
    char det[512];
    snprintf(det, sizeof det, "%s", detail ? detail : "");
    detail = det;
    x->session = 0;
    free(x->cert);
    x->cert = NULL;
    x->cert_len = 0;
    x->not_after = 0;
    s_log(s, "%s: session %llu from %s ended: %s (%s)", x->name, (unsigned long long)x->id,
          x->address, reason, detail);
    if (strcmp(reason, "connection lost") == 0) return;
    if (cnd_audit_log_session_end(s->dir.audit, s->dir.fpr, x->fpr, x->name, reason, detail,
                                  x->address))
        s_log(s, "audit: %s", cnd_err_detail());
    int slow = strcmp(reason, "slow reader") == 0;
    char text[CND_PROTO_TEXT_MAX + 1];
    snprintf(text, sizeof text, "session ended: %s: %s", reason, detail);
    s_closed_add(s, &x->peer, slow ? "" : text, slow);
    if (!tell || slow) return;
    Condenser__Error err;
    char buf[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, 0, 0};
    cnd_proto_error_init(&err, buf, &rej, text);
    (void)s_send_env(s, x, &x->peer, CONDENSER__MSG_TYPE__MSG_ERROR, &err);
    cnd_err_clear();
}

static int s_io_send(void *ctx, const char *device, Condenser__MsgType type, void *payload)
{
    s_srv_t *s = ctx;
    s_sess_t *x = s_sess(s, device, 0);
    if (!x || !x->session) return CND_ENOTFOUND;
    int rc = s_send_env(s, x, &x->peer, type, payload);
    if (rc == CND_ENOTFOUND) s_session_end(s, x, "connection lost", "its connection closed", 0);
    if (rc == CND_ETIMEOUT)
        s_session_end(s, x, "slow reader", "its queue is full: it does not read", 0);
    return rc;
}

/* A transaction on the coordinator database and, when the rollout state is elsewhere, one there
 * (rollout_state.h). */
static int s_begin(s_srv_t *s)
{
    if (s->txn) return 0;
    /* The rollout state's writers' lock first (a no-op on SQLite): PostgreSQL grants it in turn,
     * so replicas sharing one coordinator database never wait on SQLite's lock for long (its
     * busy handler is not fair: a replica polling for it could starve past the busy timeout). */
    int rc = cnd_rstate_begin(s->dir.state);
    if (rc) return rc;
    if (sqlite3_exec(s->dir.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = cnd_errf(CND_EDB, "begin: %s", sqlite3_errmsg(s->dir.db));
        cnd_rstate_rollback(s->dir.state);
        return rc;
    }
    s->txn = 1;
    return 0;
}

/* The state's transaction commits first: when it fails, the database's rolls back too (its audit
 * entries then name nothing that did not happen), and the caller stops, because the engine's
 * memory is ahead of the stored state. A crash between the two commits loses audit entries of
 * that one iteration, never state (docs/operations.md). */
static int s_end(s_srv_t *s)
{
    if (!s->txn) return 0;
    s->txn = 0;
    int rc = cnd_rstate_commit(s->dir.state);
    if (rc) {
        sqlite3_exec(s->dir.db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (sqlite3_exec(s->dir.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return cnd_errf(CND_EDB, "commit: %s", sqlite3_errmsg(s->dir.db));
    return 0;
}

static int s_commit(void *ctx)
{
    s_srv_t *s = ctx;
    int rc = s_end(s);
    return rc ? rc : s_begin(s);
}

/* --- ZAP ------------------------------------------------------------------------------------ */

static int s_allow(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    s_srv_t *s = ctx;
    cnd_fleet_device_t d;
    pthread_mutex_lock(&s->zmu);
    int rc = cnd_rstate_fleet_by_curve(s->zstate, pub, &d);
    pthread_mutex_unlock(&s->zmu);
    if (rc == CND_ENOTFOUND) return 0;
    if (rc) return -1;
    if (d.revoked_ms) return 0;
    snprintf(user_id, CND_USER_ID_MAX, "%s", d.name);
    return 1;
}

/* --- frames --------------------------------------------------------------------------------- */

/* Refuses a frame: counted; recorded (reject.message) when the rate limit allows; answered with
 * an Error then, or always when `needed` (the answers a device recovers with). */
static void s_reject(s_srv_t *s, s_sess_t *x, const cnd_frame_t *f, const cnd_proto_reject_t *rej,
                     const char *class, const char *why, int needed)
{
    s->st.rejected++;
    const char *peer = x ? x->fpr : f->user_id;
    int record = cnd_audit_limiter_hit(s->limit, CND_AUDIT_REJECT_MESSAGE, peer,
                                       class ? class : cnd_proto_error_name(rej->code), cnd_now());
    char reason[300];
    snprintf(reason, sizeof reason, "%s", why && *why ? why : cnd_proto_error_name(rej->code));
    if (record) {
        cnd_audit_reject_message_t m = {.subject = peer,
                                        .peer = peer,
                                        .type = cnd_proto_type_name(rej->type),
                                        .bytes = f->data,
                                        .len = f->len,
                                        .reason = reason,
                                        .code = cnd_proto_error_name(rej->code)};
        if (cnd_audit_log_reject_message(s->dir.audit, s->dir.fpr, &m))
            s_log(s, "audit: %s", cnd_err_detail());
    }
    if (rej->type == CONDENSER__MSG_TYPE__MSG_ERROR || !x || !(record || needed)) return;
    Condenser__Error err;
    char text[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_error_init(&err, text, rej, reason);
    if (s_send_env(s, x, &f->peer, CONDENSER__MSG_TYPE__MSG_ERROR, &err) == CND_ETIMEOUT) {
        /* The connection does not read: from now on its frames are dropped unread. */
        s_closed_add(s, &f->peer, "", 1);
        if (x->session && s_peer_eq(&x->peer, &f->peer))
            s_session_end(s, x, "slow reader", "its queue is full: it does not read", 0);
    }
    cnd_err_clear();
}

/* A Hello with a certificate: checked against the federation CA for this device (name, role
 * device, validity, revocation list) and its enrolled key. Returns 0 with the certificate's end
 * of validity, or an error whose detail says why. */
static int s_check_hello(s_srv_t *s, const s_sess_t *x, const Condenser__Hello *h,
                         int64_t *not_after)
{
    if (sodium_memcmp(h->identity_key.data, x->ed_pk, 32) != 0 ||
        h->role != CONDENSER__ROLE__ROLE_DEVICE)
        return cnd_errf(CND_EPERM, "hello: identity key or role differ from the enrollment");
    if (h->min_version > CND_PROTO_VERSION || h->max_version < CND_PROTO_VERSION)
        return cnd_errf(CND_EPROTO, "no common protocol version");
    if (!s->trust)
        return cnd_errf(CND_EPERM,
                        "hello.certificate: this rollout server has no federation CA to check "
                        "certificates against (a directory made by `rollout init`); a device "
                        "enrolled without a certificate opens its session with its DeviceProfile");
    cnd_cert_info_t ci;
    int rc = cnd_cert_check_trust(&ci, s->trust, h->certificate.data, h->certificate.len, "device",
                                  x->name, cnd_unix_time());
    if (rc) {
        char why[400]; /* the detail is rewritten below: copy it first */
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        return cnd_errf(rc, "hello.certificate: %s", why);
    }
    if (sodium_memcmp(ci.pubkey, x->ed_pk, 32) != 0)
        return cnd_errf(CND_EPERM, "hello.certificate certifies another key than the enrolled one");
    *not_after = ci.not_after;
    return 0;
}

/* Opens x's session on the frame's connection, ending one it has on another connection. */
static void s_open(s_srv_t *s, s_sess_t *x, const cnd_frame_t *f, const cnd_seqwin_t *win)
{
    if (x->session) {
        if (cnd_server_probe(s->srv, &x->peer) == CND_ENOTFOUND) {
            s_session_end(s, x, "connection lost", "a new connection opened a session", 0);
        } else {
            char why[300];
            snprintf(why, sizeof why,
                     "another connection of %s (from %s) opened a session; two devices must not "
                     "run with one identity",
                     x->name, f->address);
            s_log(s,
                  "%s: DUPLICATE SESSION: a second connection from %s while session %llu from "
                  "%s is open; the older one is closed",
                  x->name, f->address, (unsigned long long)x->id, x->address);
            s_session_end(s, x, "superseded", why, 1);
        }
        cnd_err_clear();
    }
    x->session = 1;
    x->peer = f->peer;
    x->win = *win;
    x->id = ++s->next_session;
    snprintf(x->address, sizeof x->address, "%s", f->address);
}

static void s_on_frame(s_srv_t *s, cnd_frame_t *f)
{
    s->st.frames_in++;
    s_sess_t *x = s_sess(s, f->user_id, 1);
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_MALFORMED, 0, 0};
    int bound = x && x->session && s_peer_eq(&x->peer, &f->peer);
    const s_closed_t *gone = bound ? NULL : s_closed(s, &f->peer);
    if (gone && gone->mute) {
        cnd_audit_limiter_count(s->limit, CND_AUDIT_REJECT_MESSAGE, x ? x->fpr : f->user_id,
                                "dropped unread", cnd_now());
        return;
    }
    if (!x) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s_reject(s, NULL, f, &rej, NULL, "not an enrolled device", 0);
        return;
    }
    /* A connection without a session gets a window of its own, kept if it opens one. */
    cnd_seqwin_t fresh;
    cnd_seqwin_init(&fresh);
    cnd_proto_msg_t *m = NULL;
    if (cnd_proto_accept(&m, &rej, f->data, f->len, f->user_id, CONDENSER__ROLE__ROLE_DEVICE,
                         bound ? &x->win : &fresh, NULL)) {
        s_reject(s, x, f, &rej, NULL, cnd_err_detail(), 0);
        return;
    }
    const Condenser__Envelope *env = m->env;
    rej.seq = env->seq;
    rej.type = env->type;
    if (bound && env->type == CONDENSER__MSG_TYPE__MSG_HELLO) {
        rej.code = CONDENSER__ERROR_CODE__ERR_REFUSED;
        s_reject(s, x, f, &rej, "hello again", "this connection already has a session", 0);
        goto done;
    }
    if (!bound && gone) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s_reject(s, x, f, &rej, "session ended", gone->text, 1);
        goto done;
    }
    if (!bound && env->type == CONDENSER__MSG_TYPE__MSG_HELLO) {
        int64_t not_after = 0;
        int rc = s_check_hello(s, x, env->hello, &not_after);
        if (rc) {
            rej.code = rc == CND_EPROTO ? CONDENSER__ERROR_CODE__ERR_BAD_VERSION
                                        : CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
            s_reject(s, x, f, &rej, NULL, cnd_err_detail(), 0);
            goto done;
        }
        uint8_t *der = malloc(env->hello->certificate.len);
        if (!der) {
            rej.code = CONDENSER__ERROR_CODE__ERR_BUSY;
            s_reject(s, x, f, &rej, NULL, "out of memory", 0);
            goto done;
        }
        memcpy(der, env->hello->certificate.data, env->hello->certificate.len);
        s_open(s, x, f, &fresh);
        x->cert = der;
        x->cert_len = env->hello->certificate.len;
        x->not_after = not_after;
        Condenser__HelloAck ack;
        condenser__hello_ack__init(&ack);
        ack.coordinator_name = cnd_proto_str(s->name);
        ack.version = CND_PROTO_VERSION;
        ack.heartbeat_ms = (uint32_t)(s->o->heartbeat_ms ? s->o->heartbeat_ms : 10000);
        ack.max_message = CND_PROTO_MAX_MSG;
        ack.chunk_size = CND_PROTO_CHUNK_DEFAULT;
        ack.server_unix_ms = (uint64_t)cnd_unix_time() * 1000;
        if (s_send_env(s, x, &x->peer, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, &ack) == CND_ETIMEOUT)
            s_session_end(s, x, "slow reader", "its queue is full: it does not read", 0);
        cnd_err_clear();
        goto done;
    }
    if (!bound && env->type == CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE) {
        s_open(s, x, f, &fresh); /* a device without a certificate: its profile opens it */
        bound = 1;
    }
    if (!bound) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s_reject(s, x, f, &rej, "hello first", "no session on this connection: send hello first",
                 1);
        goto done;
    }
    cnd_err_clear();
    if (cnd_rollout_on_message(s->eng, x->name, x->fpr, env, &rej))
        s_reject(s, x, f, &rej, NULL, cnd_err_detail(), 0);
done:
    cnd_proto_msg_destroy(&m);
}

/* --- revocation, expiry, the CRL -------------------------------------------------------------- */

/* The federation CA of a coordinator directory (`coordinator init` records it); none in a
 * directory made by `rollout init`. */
static void s_find_ca(s_srv_t *s)
{
    sqlite3_stmt *st = NULL;
    s->ca_cert[0] = s->ca_crl[0] = '\0';
    if (sqlite3_prepare_v2(s->dir.db,
                           "SELECT key, value FROM coord_meta WHERE key IN"
                           " ('ca_cert', 'ca_crl')",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        if (!k || !v) continue;
        if (strcmp(k, "ca_cert") == 0) snprintf(s->ca_cert, sizeof s->ca_cert, "%s", v);
        if (strcmp(k, "ca_crl") == 0) snprintf(s->ca_crl, sizeof s->ca_crl, "%s", v);
    }
    sqlite3_finalize(st);
}

/* Every S_RECHECK_S: sessions of revoked devices end; so do sessions whose certificate expired,
 * and, when the CRL changed, those whose certificate it revokes. */
static void s_recheck(s_srv_t *s, double now)
{
    if (now - s->last_recheck < S_RECHECK_S) return;
    s->last_recheck = now;
    char **revoked = NULL;
    size_t nrev = 0;
    if (cnd_rstate_fleet_revoked(s->dir.state, &revoked, &nrev) == 0) {
        for (size_t i = 0; i < nrev; i++) {
            s_sess_t *x = s_sess(s, revoked[i], 0);
            if (x && x->session)
                s_session_end(s, x, "revoked", "the device was revoked by the operator", 1);
        }
    } else {
        s_log(s, "rollout state: %s", cnd_err_detail());
    }
    cnd_rstate_names_free(revoked, nrev);
    int64_t t = cnd_unix_time();
    for (size_t i = 0; i < s->cap; i++) {
        s_sess_t *x = &s->sess[i];
        if (x->used && x->session && x->not_after && t > x->not_after)
            s_session_end(s, x, "expired", "its certificate expired", 1);
    }
    if (!s->ca_cert[0]) return;
    uint8_t *crl = NULL;
    size_t len = 0;
    if (cnd_file_read(s->ca_crl, 16 << 20, &crl, &len)) {
        cnd_err_clear();
        return;
    }
    uint8_t dg[32];
    cnd_sha256(dg, crl, len);
    free(crl);
    if (s->trust && memcmp(dg, s->crl_digest, 32) == 0) return;
    cnd_ca_trust_t *fresh = NULL;
    if (cnd_ca_trust_load(&fresh, s->ca_cert, s->ca_crl)) {
        s_log(s, "federation CA: %s", cnd_err_detail());
        cnd_err_clear();
        return;
    }
    cnd_ca_trust_destroy(&s->trust);
    s->trust = fresh;
    memcpy(s->crl_digest, dg, 32);
    for (size_t i = 0; i < s->cap; i++) {
        s_sess_t *x = &s->sess[i];
        cnd_cert_info_t ci;
        if (!x->used || !x->session || !x->cert) continue;
        if (cnd_cert_check_trust(&ci, s->trust, x->cert, x->cert_len, "device", x->name, t))
            s_session_end(s, x, "certificate", cnd_err_detail(), 1);
        cnd_err_clear();
    }
}

static double s_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* With the rollout state in PostgreSQL, several replicas may share it and each serves the
 * devices connected to it; the holder of the leader lock (rollout_state.h) also makes the wave
 * decisions (rollout.h, "Spread"). This tries the lock once; s_lease keeps trying every 0.5 s. */
static int s_lead(s_srv_t *s)
{
    s->leading = 1;
    if (!cnd_rstate_url_is_pg(s->o->state)) return 0;
    s->spread = 1;
    int rc = cnd_rstate_open(&s->lease, s->o->state, s->dir.db);
    if (!rc) rc = cnd_rstate_lead(s->lease, &s->leading);
    if (rc) return rc;
    s->last_lease = cnd_now();
    if (s->leading)
        s_log(s, "leader: holding the leader lock; serving devices and making the wave decisions");
    else
        s_log(s, "replica: serving devices; another replica holds the leader lock and makes the "
                 "wave decisions");
    return 0;
}

/* Every 0.5 s a replica that does not lead tries the lock, and the leader checks that it still
 * holds it: it stops (returns an error) when the connection holding it is gone, since another
 * replica may lead from then on. */
static int s_lease(s_srv_t *s, double now)
{
    if (!s->lease || now - s->last_lease < (s->leading ? 1.0 : 0.5)) return 0;
    s->last_lease = now;
    if (s->leading) {
        int rc = cnd_rstate_lead_check(s->lease);
        return rc ? cnd_err_wrap(rc, "stopping: this replica may no longer lead") : 0;
    }
    int rc = cnd_rstate_lead(s->lease, &s->leading);
    if (rc) return cnd_err_wrap(rc, "stopping: the leader lock's connection failed");
    if (s->leading) {
        s_log(s, "leader: holding the leader lock (took over)");
        cnd_rollout_engine_lead(s->eng);
    }
    return 0;
}

/* Every 5 s, when it changed: how many devices have a session here (replicas share the fleet). */
static void s_count_sessions(s_srv_t *s, double now)
{
    if (now - s->last_count < 5.0) return;
    s->last_count = now;
    size_t open = 0;
    for (size_t i = 0; i < s->cap; i++) open += s->sess[i].used && s->sess[i].session;
    if (open == s->logged_open) return;
    s->logged_open = open;
    s_log(s, "sessions: %zu devices have a session here (%llu opened since start)", open,
          (unsigned long long)s->next_session);
}

/* Opens the coordinator's directory (rollout tables, identity, audit log), tries the leader lock
 * (s_lead), then a read-only handle for the ZAP handler, the CurveZMQ server, the CA (when there
 * is one) and the engine. */
static int s_start(s_srv_t *s)
{
    const cnd_rollout_serve_opts_t *o = s->o;
    uint8_t csk[32], cpk[32];
    int rc = cnd_rollout_dir_open_state(&s->dir, o->dir, 1, o->state);
    if (rc) return rc;
    s_log(s, "rollout state: %s (%s)", cnd_rstate_kind(s->dir.state), cnd_rstate_url(s->dir.state));
    if ((rc = s_lead(s))) return rc;
    snprintf(s->name, sizeof s->name, "coordinator");
    char zpath[600];
    snprintf(zpath, sizeof zpath, "%s/coordinator.db", o->dir);
    if ((rc = cnd_db_open(&s->zdb, zpath, CND_DB_READONLY, "coordinator database"))) return rc;
    if ((rc = cnd_rstate_open(&s->zstate, o->state, s->zdb))) return rc;
    if ((rc = cnd_identity_curve_keypair(cpk, csk, s->dir.id))) return rc;
    cnd_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = o->endpoint;
    so.secret_key = csk;
    so.allow = s_allow;
    so.allow_ctx = s;
    /* libzmq 4.3 cancels a timer by walking every timer of the I/O thread, and a ZMTP
     * heartbeat cancels one at the first message after each PING: quadratic in the connections.
     * Even 10-minute PINGs stalled a 100,000-device rollout at its tenth minute (94% of each
     * replica's I/O thread in the walk). Device liveness comes from the application's own
     * heartbeats (offline_after_s), and TCP keepalive closes dead connections (transport.h). */
    so.heartbeat_ivl_ms = CND_HEARTBEAT_OFF;
    so.handshake_ivl_ms = 30000; /* thousands of handshakes at once on a busy machine */
    rc = cnd_server_new(&s->srv, &so);
    sodium_memzero(csk, sizeof csk);
    if (rc) return rc;
    const char *ep = cnd_server_endpoint(s->srv);
    if (o->endpoint_file && (rc = cnd_file_write_atomic(o->endpoint_file, ep, strlen(ep), 0644)))
        return rc;
    s_log(s, "rollout server listening on %s (CurveZMQ, enrolled devices only)", ep);
    if ((rc = cnd_audit_limiter_new(&s->limit, s->dir.audit, s->dir.fpr, NULL))) return rc;
    s_find_ca(s);
    s_recheck(s, cnd_now()); /* loads the CA, if there is one */
    cnd_rollout_io_t io = {s, s_io_send, s_commit, s_eng_log};
    cnd_rollout_engine_opts_t eo = {o->offline_after_s, 0, o->artifact_url, s->spread};
    if ((rc = cnd_rollout_engine_new(&s->eng, s->dir.state, s->dir.audit, s->dir.id, &io, &eo)))
        return rc;
    if (s->spread && s->leading) cnd_rollout_engine_lead(s->eng);
    if (o->metrics) {
        if ((rc = cnd_metrics_listen(&s->metrics, o->metrics, cnd_rollout_metrics_render,
                                     &s->mstate)))
            return rc;
        s_log(s, "metrics on http://%.*s:%d/metrics", (int)(strrchr(o->metrics, ':') - o->metrics),
              o->metrics, cnd_metrics_port(s->metrics));
    }
    /* Ready for systemd (Type=notify) only now: a device and a scrape would be served. */
    if (cnd_service_ready(ep) < 0) s_log(s, "warning: %s", cnd_err_detail());
    return 0;
}

/* Copies the counters the metrics endpoint shows, at most once a second. */
static void s_metrics_snapshot(s_srv_t *s, double now)
{
    if (!s->metrics || now - s->last_metrics < 1.0) return;
    s->last_metrics = now;
    cnd_rollout_stats_t es;
    cnd_rollout_engine_stats(s->eng, &es);
    cnd_rollout_metrics_update(&s->mstate, &s->st, &es);
}

/* The event loop: frames, re-checks, refusal summaries and the engine's tick in one
 * transaction per iteration, until *stop, idle (until_idle) or max_seconds after t0. */
static int s_loop(s_srv_t *s, volatile sig_atomic_t *stop, double t0)
{
    const cnd_rollout_serve_opts_t *o = s->o;
    /* Waiting uses the socket's ZMQ_FD with poll(2) rather than zmq_poll: zmq_poll reads
     * ZMQ_EVENTS, and with ZMQ_ROUTER_MANDATORY libzmq 4.3 computes POLLOUT by walking every
     * peer's pipe, which at 10,000 devices cost most of the coordinator's CPU. Every wake-up
     * drains the socket until it is empty, so the edge-triggered descriptor cannot be missed,
     * and the 50 ms timeout bounds any delay. */
    int zfd = -1, rc = 0, seen_live = 0;
    size_t zfd_len = sizeof zfd;
    if (zmq_getsockopt(cnd_server_socket(s->srv), ZMQ_FD, &zfd, &zfd_len))
        return cnd_errf(CND_EIO, "ZMQ_FD: %s", zmq_strerror(zmq_errno()));
    while (!*stop) {
        /* No transaction is held while waiting, so operator commands get the write lock. */
        struct pollfd pfd = {zfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) < 0 && errno != EINTR) {
            rc = cnd_errf(CND_EIO, "poll: %s", strerror(errno));
            break;
        }
        if ((rc = s_lease(s, cnd_now()))) break;
        if ((rc = s_begin(s))) {
            rc = cnd_err_wrap(rc, "stopping: the rollout state cannot be written");
            break;
        }
        /* Spread: what other replicas committed, before anything of this iteration is decided. */
        if ((rc = cnd_rollout_sync(s->eng))) {
            rc = cnd_err_wrap(rc, "stopping: the rollout state cannot be read");
            break;
        }
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
        double now = cnd_now();
        s_recheck(s, now);
        if (s->spread) s_count_sessions(s, now);
        if (cnd_audit_limiter_flush(s->limit, now, 0)) s_log(s, "audit: %s", cnd_err_detail());
        cnd_rollout_tick(s->eng, cnd_unix_time() * 1000);
        s_metrics_snapshot(s, now);
        if ((rc = s_end(s))) {
            rc = cnd_err_wrap(rc, "stopping: the rollout state cannot be written");
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
    return rc;
}

/* After the loop: refusals counted but not yet summarised are, the last transaction commits,
 * and the log gets a checkpoint. */
static int s_shutdown(s_srv_t *s, int rc)
{
    if (!rc && s->limit && !s_begin(s) && cnd_audit_limiter_flush(s->limit, cnd_now(), 1))
        s_log(s, "audit: %s", cnd_err_detail());
    int erc = s_end(s);
    if (!rc) rc = erc;
    if (!rc && s->dir.audit && cnd_audit_checkpoint(s->dir.audit, "rollout.serve.end", NULL))
        s_log(s, "audit: %s", cnd_err_detail());
    return rc;
}

/* The run's figures (time since t0, CPU since c0, peak memory, the engine's sends). */
static void s_stats(s_srv_t *s, cnd_rollout_serve_stats_t *stout, double t0, double c0)
{
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

static void s_srv_free(s_srv_t *s)
{
    cnd_metrics_stop(&s->metrics); /* first: its thread reads s->mstate */
    cnd_rollout_metrics_destroy(&s->mstate);
    cnd_rollout_engine_destroy(&s->eng);
    cnd_server_destroy(&s->srv);
    cnd_audit_limiter_destroy(&s->limit);
    cnd_ca_trust_destroy(&s->trust);
    for (size_t i = 0; s->sess && i < s->cap; i++) free(s->sess[i].cert);
    cnd_rstate_close(&s->zstate);
    cnd_db_close(&s->zdb);
    cnd_rollout_dir_close(&s->dir);
    cnd_rstate_close(&s->lease); /* last: another replica may lead from here on */
    cnd_buf_free(&s->out);
    free(s->sess);
    pthread_mutex_destroy(&s->zmu);
    free(s);
}

int cnd_rollout_serve(const cnd_rollout_serve_opts_t *o, volatile sig_atomic_t *stop,
                      cnd_rollout_serve_stats_t *stout)
{
    char lock[600];
    snprintf(lock, sizeof lock, "%s/%s", o->dir, CND_DB_DAEMON_LOCK);
    int lfd = -1, rc = cnd_file_lock(lock, 0, &lfd);
    if (rc == CND_ESTATE)
        return cnd_errf(CND_ESTATE, "%s: a restore of this directory is in progress", o->dir);
    if (rc) return rc;
    s_srv_t *s = calloc(1, sizeof *s);
    if (!s) {
        cnd_file_unlock(&lfd);
        return cnd_errf(CND_ENOMEM, "out of memory");
    }
    s->o = o;
    char dbp[600];
    snprintf(dbp, sizeof dbp, "%s/coordinator.db", o->dir);
    cnd_rollout_metrics_init(&s->mstate, dbp);
    s->seq = cnd_proto_seq_start();
    pthread_mutex_init(&s->zmu, NULL);
    cnd_buf_init(&s->out);
    double t0 = cnd_now(), c0 = s_cpu();
    rc = s_start(s);
    if (!rc) rc = s_shutdown(s, s_loop(s, stop, t0));
    if (stout) s_stats(s, stout, t0, c0);
    s_srv_free(s);
    cnd_file_unlock(&lfd);
    return rc;
}
