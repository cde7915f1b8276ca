/*
 * coord_daemon.c: the coordinator's event loop (see coord_daemon.h).
 *
 * Threads: the main thread owns the socket, the state store and the audit log. libzmq's ZAP
 * handler thread (inside proto/transport.c) calls s_allow() and s_event(); those use only
 * their own read-only store connection and a mutex-protected queue of refusals, which the
 * main loop drains into reject.connection audit entries.
 *
 * Sessions. A session belongs to one connection (its ZeroMQ routing id) and begins with a
 * Hello on it; an identity has at most one session. Anything but a Hello on a connection without
 * a session is refused ("send hello first"), even when the identity has a session on another
 * connection. A Hello on a new connection while the identity's session is on another one ends
 * that session: "connection lost" when its connection is already closed (a restarted or
 * reconnected node), "superseded" when it is still open (two processes with one identity: both
 * connections are named in the log and the older one is told why). A session ends too when its
 * connection closes, when its node is revoked or its certificate expires or is revoked by the CA
 * (checked every second), and when its node stops reading (below). A session that ends while its
 * node takes part in a round makes it a dropout of the round at once (cnd_round_drop).
 * Connections whose session ended for another reason than a closed connection are remembered
 * (S_CLOSED of them): what they send later is refused with the reason, or dropped unread.
 *
 * Liveness. Every second (and at once after libzmq reports a closed connection) each session's
 * connection is probed (cnd_server_probe): a node killed outright is seen at once, a host that
 * vanished after the ZMTP heartbeat timeout (3 s).
 *
 * Sending never waits. Each session has a send queue (coord_outq.h) in front of the transport's
 * own (S_SNDHWM frames); a queue that has not moved for S_SLOW_S, or holds more than
 * S_QUEUE_MAX_FRAMES frames or S_QUEUE_MAX_BYTES bytes, ends the session as a slow reader and
 * the connection's later frames are dropped unread. Replies to connections without a session
 * are sent only if the transport takes them at once.
 *
 * Refusals are rate-limited (audit_limit.h): per peer and reason class, the first few per minute
 * are recorded (reject.message) and answered with an Error; the rest are counted into one
 * reject.summary entry and not answered.
 */
#include "coord_daemon.h"
#include "job_dp.h"
#include "audit_actions.h"
#include "audit_limit.h"
#include "cert.h"
#include "chunk.h"
#include "clock.h"
#include "coord_admin.h"
#include "coord_autoc.h"
#include "coord_outq.h"
#include "coord_quant.h"
#include "coord_round.h"
#include "digest.h"
#include "coord_metrics.h"
#include "db.h"
#include "fileio.h"
#include "log.h"
#include "metrics.h"
#include "job.h"
#include "proto.h"
#include "rng.h"
#include "service.h"
#include "transport.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_MAX_SESSIONS     4096
#define S_REFUSALS         64
#define S_CLOSED           256                /* closed connections remembered */
#define S_SNDHWM           32                 /* frames the transport queues per peer */
#define S_SLOW_S           10.0               /* a send queue that does not move this long */
#define S_QUEUE_MAX_FRAMES 8192               /* ... or holds more than this */
#define S_QUEUE_MAX_BYTES  ((size_t)16 << 20) /* ... or this: a slow reader */
#define S_LIVENESS_S       1.0                /* probe and re-check sessions this often */

typedef struct {
    char name[CND_USER_ID_MAX];
    int live;        /* a session is open on `peer` */
    cnd_peer_t peer; /* the session's connection */
    char address[64];
    uint64_t id; /* session number in this run */
    Condenser__Role role;
    uint8_t ed_pk[32];
    char fpr[65];
    uint8_t *cert; /* enrolled certificate (owned) or NULL */
    size_t cert_len;
    int64_t not_after;    /* the certificate's end of validity (Unix s) */
    cnd_seqwin_t win;     /* replay window over its sequence numbers on this connection */
    double started;       /* cnd_now() at its Hello */
    double last_seen;     /* cnd_now() of its last message */
    int64_t accepted_job; /* job it accepted (0: none) */
    int64_t refused_job;  /* job it refused */
    int in_round;         /* selected for the round in flight with this session */
    int closed;           /* a send found its connection closed: the main loop ends it */
    cnd_outq_t q;         /* what the transport has not taken yet */
} s_session_t;

/* A connection whose session the coordinator ended: what it sends later is answered with
 * `text`, or dropped unread (`mute`: the node does not read). */
typedef struct {
    int used;
    cnd_peer_t peer;
    char name[CND_USER_ID_MAX];
    char text[CND_PROTO_TEXT_MAX + 1];
    int mute;
} s_closed_t;

typedef struct {
    uint8_t pub[32];
    char address[64];
    char reason[64];
} s_refusal_t;

typedef struct {
    const cnd_coord_run_opts_t *o;
    cnd_coord_t c;
    cnd_coord_live_t live;         /* counters the metrics endpoint reads */
    cnd_coord_metrics_t mctx;      /* its render context */
    cnd_metrics_server_t *metrics; /* --metrics; NULL when off */
    double last_metrics;           /* when the queue snapshot was last taken */
    cnd_server_t *srv;
    cnd_audit_limiter_t *limit;
    /* ZAP thread's view */
    pthread_mutex_t zmu;
    cnd_cstore_t *zstore;
    s_refusal_t refusals[S_REFUSALS];
    int n_refusals;
    uint64_t refusals_lost;
    int disconnects; /* libzmq reported closed connections since the last probe */
    /* sessions */
    s_session_t *sess;
    size_t n_sess;
    uint64_t seq;
    uint64_t next_session;
    s_closed_t closed[S_CLOSED];
    size_t closed_next;
    uint64_t dropped_unread; /* frames of muted connections */
    double last_liveness, last_limit_flush;
    uint8_t crl_digest[32];
    int crl_known;
    FILE *capture;
    /* job in flight */
    int64_t job; /* 0 when none */
    cnd_job_spec_t spec;
    cnd_outq_blob_t *teacher; /* the shipped teacher, NULL when the job has none */
    Condenser__ObjectInfo teacher_info;
    uint8_t teacher_digest[32];
    cnd_outq_blob_t *object; /* the last object a round sent (its global model) */
    uint8_t object_digest[32];
    int any_ok; /* some round of this job produced a model */
    int autoc;  /* the job is an autocompress search: its rounds evaluate candidates */
    cnd_round_t *round;
    double wait_start; /* since when sites are awaited for the next round */
    double last_state_check;
    int txn;              /* a store transaction is open */
    const char *log_peer; /* the session whose frame is being handled, for log lines */
} s_daemon_t;

static void s_log(s_daemon_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(s_daemon_t *d, const char *fmt, ...)
{
    if (!d->o->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cnd_log_scope(d->job, d->round ? cnd_round_number(d->round) : 0, d->log_peer);
    d->o->log(d->o->log_ctx, buf);
}

/* --- transactions --------------------------------------------------------------------------- */

static int s_begin(s_daemon_t *d)
{
    if (d->txn) return 0;
    int rc = cnd_cstore_begin(d->c.store);
    if (!rc) d->txn = 1;
    return rc;
}

/* Commits the open transaction (if any) without opening another. */
static int s_end(s_daemon_t *d)
{
    if (!d->txn) return 0;
    d->txn = 0;
    return cnd_cstore_commit(d->c.store);
}

static int s_commit(void *ctx)
{
    s_daemon_t *d = ctx;
    if (!d->txn) return s_begin(d);
    d->txn = 0;
    int rc = cnd_cstore_commit(d->c.store);
    if (rc) return rc;
    return s_begin(d);
}

/* --- ZAP side ------------------------------------------------------------------------------- */

static int s_allow(void *ctx, const uint8_t pub[32], char user_id[CND_USER_ID_MAX])
{
    s_daemon_t *d = ctx;
    cnd_ident_rec_t r;
    pthread_mutex_lock(&d->zmu);
    int rc = cnd_cstore_ident_by_curve(d->zstore, pub, &r);
    pthread_mutex_unlock(&d->zmu);
    if (rc == CND_ENOTFOUND) return 0;
    if (rc) return -1;
    int ok = r.revoked_ms == 0;
    if (ok) snprintf(user_id, CND_USER_ID_MAX, "%s", r.name);
    cnd_ident_rec_free(&r);
    return ok;
}

static void s_event(void *ctx, const cnd_transport_event_t *ev)
{
    s_daemon_t *d = ctx;
    if (ev->kind == CND_TEV_DISCONNECTED) {
        pthread_mutex_lock(&d->zmu);
        d->disconnects++;
        pthread_mutex_unlock(&d->zmu);
        return;
    }
    if (ev->kind != CND_TEV_REFUSED && ev->kind != CND_TEV_REVOKED_DROP) return;
    cnd_coord_live_refused_conn(&d->live,
                                ev->kind == CND_TEV_REVOKED_DROP ? "revoked" : ev->reason);
    pthread_mutex_lock(&d->zmu);
    if (d->n_refusals < S_REFUSALS) {
        s_refusal_t *r = &d->refusals[d->n_refusals++];
        memcpy(r->pub, ev->pub, 32);
        snprintf(r->address, sizeof r->address, "%s", ev->address ? ev->address : "");
        snprintf(r->reason, sizeof r->reason, "%s",
                 ev->kind == CND_TEV_REVOKED_DROP ? "revoked: message dropped"
                                                  : (ev->reason ? ev->reason : "refused"));
    } else {
        d->refusals_lost++;
    }
    pthread_mutex_unlock(&d->zmu);
}

static void s_drain_refusals(s_daemon_t *d)
{
    s_refusal_t local[S_REFUSALS];
    pthread_mutex_lock(&d->zmu);
    int n = d->n_refusals;
    memcpy(local, d->refusals, (size_t)n * sizeof *local);
    d->n_refusals = 0;
    pthread_mutex_unlock(&d->zmu);
    for (int i = 0; i < n; i++) {
        char hex[65];
        cnd_hex(hex, local[i].pub, 32);
        if (!cnd_audit_limiter_hit(d->limit, CND_AUDIT_REJECT_CONNECTION, hex, local[i].reason,
                                   cnd_now()))
            continue;
        if (cnd_audit_log_reject_connection(d->c.audit, d->c.fpr, hex, local[i].address,
                                            local[i].reason))
            s_log(d, "audit: %s", cnd_err_detail());
        s_log(d, "refused a connection from curve key %.16s... (%s): %s", hex, local[i].address,
              local[i].reason);
    }
}

/* --- sessions ------------------------------------------------------------------------------- */

static int s_peer_eq(const cnd_peer_t *a, const cnd_peer_t *b)
{
    return a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static s_session_t *s_session(s_daemon_t *d, const char *name)
{
    for (size_t i = 0; i < d->n_sess; i++)
        if (strcmp(d->sess[i].name, name) == 0) return &d->sess[i];
    return NULL;
}

/* The session open on this connection, or NULL. */
static s_session_t *s_session_on(s_daemon_t *d, const char *name, const cnd_peer_t *peer)
{
    s_session_t *s = s_session(d, name);
    return s && s->live && s_peer_eq(&s->peer, peer) ? s : NULL;
}

/* The record of an admitted identity, created on first contact and refreshed from the store
 * (key, role, certificate) at every Hello. NULL when it cannot be loaded. */
static s_session_t *s_session_load(s_daemon_t *d, const char *name)
{
    s_session_t *s = s_session(d, name);
    cnd_ident_rec_t r;
    if (cnd_cstore_ident_by_name(d->c.store, name, &r)) return NULL;
    if (!s) {
        if (d->n_sess >= S_MAX_SESSIONS) {
            cnd_ident_rec_free(&r);
            return NULL;
        }
        s_session_t *g = realloc(d->sess, (d->n_sess + 1) * sizeof *g);
        if (!g) {
            cnd_ident_rec_free(&r);
            return NULL;
        }
        d->sess = g;
        s = &d->sess[d->n_sess++];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        cnd_outq_init(&s->q);
    }
    s->role =
        strcmp(r.role, "device") == 0 ? CONDENSER__ROLE__ROLE_DEVICE : CONDENSER__ROLE__ROLE_SITE;
    memcpy(s->ed_pk, r.ed_pk, 32);
    snprintf(s->fpr, sizeof s->fpr, "%s", r.fpr);
    free(s->cert);
    s->cert = r.cert; /* ownership moves to the session */
    s->cert_len = r.cert_len;
    return s;
}

static s_closed_t *s_closed(s_daemon_t *d, const cnd_peer_t *peer)
{
    for (size_t i = 0; i < S_CLOSED; i++)
        if (d->closed[i].used && s_peer_eq(&d->closed[i].peer, peer)) return &d->closed[i];
    return NULL;
}

static void s_closed_add(s_daemon_t *d, const cnd_peer_t *peer, const char *name, const char *text,
                         int mute)
{
    s_closed_t *c = s_closed(d, peer);
    if (!c) {
        c = &d->closed[d->closed_next];
        d->closed_next = (d->closed_next + 1) % S_CLOSED;
    }
    c->used = 1;
    c->peer = *peer;
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->text, sizeof c->text, "%s", text);
    c->mute = c->mute || mute;
}

/* --- sending -------------------------------------------------------------------------------- */

typedef struct {
    s_daemon_t *d;
    s_session_t *s;
} s_tx_t;

/* cnd_outq_send_fn: one frame to the session's connection, never waiting; logged as egress. */
static int s_tx(void *ctx, const cnd_outq_frame_t *f)
{
    s_tx_t *t = ctx;
    int rc = cnd_server_send(t->d->srv, &t->s->peer, f->data, f->len, 0);
    if (rc) return rc;
    atomic_fetch_add(&t->d->live.tx_frames, 1);
    atomic_fetch_add(&t->d->live.tx_bytes, f->len);
    char jid[32];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)f->job);
    if (cnd_audit_log_message(t->d->c.audit, 'E', t->d->c.fpr, t->s->fpr, f->job ? jid : "",
                              cnd_proto_type_name(f->type), f->round ? (int64_t)f->round : -1,
                              f->data, f->len, NULL))
        s_log(t->d, "audit: %s", cnd_err_detail());
    return 0;
}

/* Sends what the transport takes of the session's queue. A closed connection is only marked:
 * this runs inside the round's sends too, and ending a session there would re-enter the round
 * (cnd_round_drop) in the middle of a phase change; the main loop ends it (s_flush_all). */
static void s_flush(s_daemon_t *d, s_session_t *s, int max_frames)
{
    if (!s->live || !s->q.head || s->closed) return;
    s_tx_t t = {d, s};
    int rc = cnd_outq_flush(&s->q, s_tx, &t, max_frames, cnd_now());
    if (rc == CND_ENOTFOUND)
        s->closed = 1;
    else if (rc < 0)
        s_log(d, "sending to %s: %s", s->name, cnd_err_detail());
    cnd_err_clear();
}

/* Queues one message for the session (and sends it now if its connection takes it). */
static int s_send_env(s_daemon_t *d, s_session_t *s, Condenser__MsgType type, void *payload,
                      uint64_t job, uint32_t round)
{
    if (!s->live) return CND_ENOTFOUND;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, job, round, d->c.name, d->seq++);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_proto_encode(&buf, &len, &env);
    if (!rc) rc = cnd_outq_push(&s->q, &buf, len, type, job, round);
    if (rc) {
        s_log(d, "not sending %s to %s: %s", cnd_proto_type_name(type), s->name, cnd_err_detail());
        return rc;
    }
    s_flush(d, s, 64);
    return 0;
}

/* Queues every chunk of an object for the session; sequence numbers are reserved now. */
static int s_send_object(s_daemon_t *d, s_session_t *s, cnd_outq_blob_t *blob,
                         const Condenser__ObjectInfo *info, Condenser__ObjectKind kind,
                         uint64_t job, uint32_t round)
{
    if (!s->live) return CND_ENOTFOUND;
    int rc = cnd_outq_push_object(&s->q, blob, info, kind, job, round, d->c.name, d->seq);
    if (rc) {
        s_log(d, "not sending an object to %s: %s", s->name, cnd_err_detail());
        return rc;
    }
    d->seq += info->chunk_count;
    s_flush(d, s, 64);
    return 0;
}

/* A reply to a connection that has no session: sent only if the transport takes it at once; a
 * connection that does not read is remembered as such and dropped unread from then on. */
static void s_send_direct(s_daemon_t *d, const cnd_frame_t *f, Condenser__MsgType type,
                          void *payload)
{
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, 0, 0, d->c.name, d->seq++);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (cnd_proto_encode(&buf, &len, &env)) {
        s_log(d, "not sending %s to %s: %s", cnd_proto_type_name(type), f->user_id,
              cnd_err_detail());
        return;
    }
    int rc = cnd_server_send(d->srv, &f->peer, buf, len, 0);
    if (rc == CND_ETIMEOUT) {
        s_closed_add(d, &f->peer, f->user_id, "", 1);
        s_log(d,
              "%s (%s): a connection without a session does not read; its frames are dropped "
              "unread from now on",
              f->user_id, f->address);
    } else if (!rc) {
        atomic_fetch_add(&d->live.tx_frames, 1);
        atomic_fetch_add(&d->live.tx_bytes, len);
        s_session_t *s = s_session(d, f->user_id);
        if (cnd_audit_log_message(d->c.audit, 'E', d->c.fpr, s ? s->fpr : "", "",
                                  cnd_proto_type_name(type), -1, buf, len, NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    }
    free(buf);
}

/* Ends a session: session.end (unless only an idle connection closed), a dropout if its node is
 * in the round, and (tell) an Error "session ended: reason: detail" to its connection, which is
 * remembered so that what it sends later gets the same answer. */
static void s_session_end(s_daemon_t *d, s_session_t *s, const char *reason, const char *detail,
                          int tell)
{
    if (!s->live) return;
    /* detail may be cnd_err_detail(), which what follows rewrites: keep a copy */
    char det[512];
    snprintf(det, sizeof det, "%s", detail ? detail : "");
    detail = det;
    int lost = strcmp(reason, "connection lost") == 0;
    int slow = strcmp(reason, "slow reader") == 0;
    int in_round = s->in_round && d->round;
    s->live = 0;
    s->closed = 0;
    s->in_round = 0;
    s->accepted_job = s->refused_job = 0;
    cnd_outq_clear(&s->q);
    s_log(d, "%s: session %llu from %s ended: %s (%s)%s", s->name, (unsigned long long)s->id,
          s->address, reason, detail, in_round ? "; a dropout of the round in flight" : "");
    if ((!lost || in_round) && cnd_audit_log_session_end(d->c.audit, d->c.fpr, s->fpr, s->name,
                                                         reason, detail, s->address))
        s_log(d, "audit: %s", cnd_err_detail());
    if (in_round) {
        int idx = cnd_round_site_index(d->round, s->name);
        if (idx >= 0) cnd_round_drop(d->round, (uint32_t)idx, reason);
    }
    if (lost) return;
    char text[CND_PROTO_TEXT_MAX + 1];
    snprintf(text, sizeof text, "session ended: %s: %s", reason, detail);
    /* A renewed or expired certificate is fixed by the site installing a file: its agent says
     * hello again on this very connection. Any other end is final for the connection. */
    int renewable = strcmp(reason, "renewed") == 0 || strcmp(reason, "expired") == 0;
    if (!renewable) s_closed_add(d, &s->peer, s->name, text, slow);
    if (!tell || slow) return;
    Condenser__Error err;
    char buf[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, 0, 0};
    cnd_proto_error_init(&err, buf, &rej, text);
    cnd_frame_t f;
    memset(&f, 0, sizeof f);
    f.peer = s->peer;
    snprintf(f.user_id, sizeof f.user_id, "%s", s->name);
    s_send_direct(d, &f, CONDENSER__MSG_TYPE__MSG_ERROR, &err);
}

/* Refuses a message: counted; recorded (reject.message) and answered with an Error (unless it
 * was one) when the rate limit allows. `class` groups refusals for the limit (NULL: the error
 * code's name). */
static void s_reject(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                     const cnd_proto_reject_t *rej, const char *class, const char *why)
{
    const char *peer = s ? s->fpr : f->user_id;
    if ((unsigned)rej->code < CND_CM_CODES) atomic_fetch_add(&d->live.refused_msg[rej->code], 1);
    if (!cnd_audit_limiter_hit(d->limit, CND_AUDIT_REJECT_MESSAGE, peer,
                               class ? class : cnd_proto_error_name(rej->code), cnd_now()))
        return;
    char reason[512];
    snprintf(reason, sizeof reason, "%s", why && *why ? why : cnd_proto_error_name(rej->code));
    cnd_audit_reject_message_t m = {.subject = peer,
                                    .peer = s ? s->fpr : NULL,
                                    .type = cnd_proto_type_name(rej->type),
                                    .bytes = f->data,
                                    .len = f->len,
                                    .reason = reason,
                                    .code = cnd_proto_error_name(rej->code)};
    if (cnd_audit_log_reject_message(d->c.audit, d->c.fpr, &m))
        s_log(d, "audit: %s", cnd_err_detail());
    s_log(d, "refused %s from %s (%s): %s", cnd_proto_type_name(rej->type), f->user_id, f->address,
          reason);
    if (rej->type == CONDENSER__MSG_TYPE__MSG_ERROR) return;
    Condenser__Error err;
    char text[CND_PROTO_TEXT_MAX + 1];
    cnd_proto_error_init(&err, text, rej, reason);
    /* Replies go to the connection the message came from, in order with its session's. */
    if (s && s->live && s_peer_eq(&s->peer, &f->peer))
        (void)s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_ERROR, &err, 0, 0);
    else
        s_send_direct(d, f, CONDENSER__MSG_TYPE__MSG_ERROR, &err);
}

/* --- liveness -------------------------------------------------------------------------------- */

/* Revocation, key change and expiry of every session's identity, and (when the CA's revocation
 * list changed) every session's certificate against it. */
static void s_recheck(s_daemon_t *d)
{
    int64_t now = cnd_unix_time();
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        if (!s->live) continue;
        cnd_ident_rec_t r;
        int rc = cnd_cstore_ident_by_name(d->c.store, s->name, &r);
        if (rc == CND_ENOTFOUND || (!rc && r.revoked_ms)) {
            char why[300];
            snprintf(why, sizeof why, "%s was revoked by the federation operator%s%s%s", s->name,
                     !rc && r.reason[0] ? " (" : "", !rc ? r.reason : "",
                     !rc && r.reason[0] ? ")" : "");
            s_session_end(d, s, "revoked", why, 1);
        } else if (!rc && sodium_memcmp(r.ed_pk, s->ed_pk, 32) != 0) {
            s_session_end(d, s, "rotated",
                          "its key was rotated (condenser site renew); the old key is refused "
                          "from now on",
                          1);
        } else if (!rc && s->not_after && now >= s->not_after) {
            char x[32], why[120];
            snprintf(why, sizeof why, "its certificate expired at %s",
                     cnd_iso8601(x, s->not_after));
            s_session_end(d, s, "expired", why, 1);
        } else if (!rc &&
                   (!r.cert || r.cert_len != s->cert_len ||
                    memcmp(r.cert, s->cert, s->cert_len) != 0) &&
                   !(s->in_round && d->round)) {
            /* `site renew` replaced its certificate (same key): the session rests on the old
             * one until the round it takes part in is over, then it must say hello with the
             * new one (the agent re-reads its certificate file before every hello). */
            s_session_end(d, s, "renewed",
                          "its certificate was renewed (condenser site renew): say hello with "
                          "the new one",
                          1);
        }
        if (!rc) cnd_ident_rec_free(&r);
        cnd_err_clear();
    }
    /* The CRL: checked against every session whenever its contents change. */
    uint8_t *crl = NULL;
    size_t crl_len = 0;
    if (cnd_file_read(d->c.ca_crl, 16 << 20, &crl, &crl_len)) {
        cnd_err_clear();
        return;
    }
    uint8_t dg[32];
    cnd_sha256(dg, crl, crl_len);
    free(crl);
    if (d->crl_known && memcmp(dg, d->crl_digest, 32) == 0) return;
    cnd_ca_trust_t *t = NULL;
    if (cnd_ca_trust_load(&t, d->c.ca_cert, d->c.ca_crl)) {
        s_log(d, "federation CA: %s (certificates are checked again once it loads)",
              cnd_err_detail());
        return;
    }
    memcpy(d->crl_digest, dg, 32);
    d->crl_known = 1;
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        cnd_cert_info_t ci;
        if (!s->live || !s->cert) continue;
        if (cnd_cert_check_trust(&ci, t, s->cert, s->cert_len,
                                 s->role == CONDENSER__ROLE__ROLE_DEVICE ? "device" : "site",
                                 s->name, now))
            s_session_end(d, s, "certificate", cnd_err_detail(), 1);
        cnd_err_clear();
    }
    cnd_ca_trust_destroy(&t);
}

/* Probes every session's connection and ends the sessions whose connection closed or whose
 * send queue stopped moving; every S_LIVENESS_S also re-checks revocation and expiry. */
static void s_liveness(s_daemon_t *d, double now)
{
    pthread_mutex_lock(&d->zmu);
    int disc = d->disconnects;
    d->disconnects = 0;
    pthread_mutex_unlock(&d->zmu);
    int periodic = now - d->last_liveness >= S_LIVENESS_S;
    if (!disc && !periodic) return;
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        if (!s->live) continue;
        if (cnd_server_probe(d->srv, &s->peer) == CND_ENOTFOUND) {
            s_session_end(d, s, "connection lost", "its connection closed", 0);
            continue;
        }
        cnd_err_clear();
        char why[200] = "";
        if (s->q.stalled_since && now - s->q.stalled_since > S_SLOW_S)
            snprintf(why, sizeof why, "it read nothing for %.0f s with %zu frames waiting",
                     now - s->q.stalled_since, s->q.frames);
        else if (s->q.frames > S_QUEUE_MAX_FRAMES || s->q.bytes > S_QUEUE_MAX_BYTES)
            snprintf(why, sizeof why, "%zu frames (%zu bytes) wait for it", s->q.frames,
                     s->q.bytes);
        if (why[0]) s_session_end(d, s, "slow reader", why, 0);
    }
    if (!periodic) return;
    d->last_liveness = now;
    s_recheck(d);
}

/* --- the round's io ------------------------------------------------------------------------ */

static s_session_t *s_participant(s_daemon_t *d, const char *site)
{
    s_session_t *s = s_session(d, site);
    return s && s->live && s->in_round ? s : NULL;
}

static int s_round_send(void *ctx, const char *site, Condenser__MsgType type, void *payload,
                        uint64_t job, uint32_t round)
{
    s_daemon_t *d = ctx;
    s_session_t *s = s_participant(d, site);
    if (!s) return CND_ENOTFOUND;
    return s_send_env(d, s, type, payload, job, round);
}

/* The round's global model goes to every participant: one shared copy per model. */
static int s_round_send_object(void *ctx, const char *site, Condenser__ObjectKind kind,
                               const Condenser__ObjectInfo *info, const uint8_t *data, uint64_t job,
                               uint32_t round)
{
    s_daemon_t *d = ctx;
    s_session_t *s = s_participant(d, site);
    if (!s) return CND_ENOTFOUND;
    if (info->digest.len != 32) return cnd_errf(CND_EINVAL, "object without a digest");
    if (!d->object || d->object->len != info->total_size ||
        memcmp(d->object_digest, info->digest.data, 32) != 0) {
        cnd_outq_blob_unref(&d->object);
        int rc = cnd_outq_blob_new(&d->object, data, (size_t)info->total_size);
        if (rc) return rc;
        memcpy(d->object_digest, info->digest.data, 32);
    }
    return s_send_object(d, s, d->object, info, kind, job, round);
}

/* --- jobs ----------------------------------------------------------------------------------- */

static void s_audit_job_state(s_daemon_t *d, const char *state, const char *reason)
{
    if (cnd_audit_log_job_state(d->c.audit, d->c.fpr, d->job, state,
                                reason && *reason ? reason : NULL))
        s_log(d, "audit: %s", cnd_err_detail());
}

static void s_unload_job(s_daemon_t *d)
{
    cnd_round_destroy(&d->round);
    cnd_outq_blob_unref(&d->teacher);
    cnd_outq_blob_unref(&d->object);
    d->job = 0;
    for (size_t i = 0; i < d->n_sess; i++) {
        d->sess[i].accepted_job = d->sess[i].refused_job = 0;
        d->sess[i].in_round = 0;
    }
}

static void s_announce(s_daemon_t *d, s_session_t *s)
{
    if (!d->job || s->role != CONDENSER__ROLE__ROLE_SITE) return;
    cnd_job_proto_t jp;
    cnd_job_to_proto(&jp, &d->spec, (uint64_t)d->job, d->teacher ? &d->teacher_info : NULL);
    Condenser__JobAnnounce ja;
    condenser__job_announce__init(&ja);
    ja.spec = &jp.spec;
    if (s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE, &ja, (uint64_t)d->job, 0)) return;
    if (d->teacher)
        (void)s_send_object(d, s, d->teacher, &d->teacher_info, CONDENSER__OBJECT_KIND__OBJ_TEACHER,
                            (uint64_t)d->job, 0);
}

/* Loads the oldest pending or running job. Returns 1 if one is in flight afterwards. */
static int s_load_job(s_daemon_t *d)
{
    if (d->job) return 1;
    int64_t id;
    if (cnd_cstore_job_next(d->c.store, &id)) {
        cnd_err_clear();
        return 0;
    }
    cnd_job_rec_t jr;
    int rc = cnd_cstore_job_get(d->c.store, id, &jr);
    if (!rc) rc = cnd_job_from_json(&d->spec, jr.spec_json);
    if (!rc && d->spec.teacher_shipped) {
        uint8_t *t = NULL;
        size_t tlen = 0;
        rc = cnd_cstore_job_teacher(d->c.store, id, &t, &tlen);
        if (!rc)
            rc = cnd_chunk_plan(&d->teacher_info, d->teacher_digest, t, tlen,
                                CND_PROTO_CHUNK_DEFAULT);
        d->teacher_info.digest = cnd_proto_bytes(d->teacher_digest, 32);
        if (!rc) rc = cnd_outq_blob_new(&d->teacher, t, tlen);
        free(t);
    }
    int was_running = !rc && strcmp(jr.state, "running") == 0;
    cnd_job_rec_free(&jr);
    d->job = id;
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "cannot load the job: %s", cnd_err_detail());
        s_log(d, "job %lld: %s", (long long)id, why);
        if (!cnd_cstore_job_set_state(d->c.store, id, "failed", why))
            s_audit_job_state(d, "failed", why);
        s_unload_job(d);
        return 0;
    }
    /* A round left in flight by a previous run is redone, never half-applied. */
    if ((rc = cnd_round_abandon_open(&d->c, id))) {
        s_log(d, "job %lld: %s", (long long)id, cnd_err_detail());
        s_unload_job(d);
        return 0;
    }
    cnd_model_rec_t m;
    d->any_ok = 0;
    d->autoc = cnd_autoc_is_job(d->c.store, id);
    if (!cnd_cstore_model_latest(d->c.store, id, "float", &m, NULL, NULL)) {
        d->any_ok = m.version > 0;
        cnd_model_rec_free(&m);
    }
    cnd_err_clear();
    if (!was_running) {
        if (!cnd_cstore_job_set_state(d->c.store, id, "running", NULL))
            s_audit_job_state(d, "running", NULL);
    }
    uint32_t next = 1, att = 1;
    if (cnd_cstore_round_next(d->c.store, id, &next, &att)) next = 1;
    s_log(d, "job %lld %s: %s, %u rounds of %u sites (resuming at round %u)", (long long)id,
          was_running ? "resumed" : "started", d->spec.arch, d->spec.rounds,
          d->spec.sites_per_round, next);
    d->wait_start = cnd_now();
    (void)s_commit(d);
    for (size_t i = 0; i < d->n_sess; i++)
        if (d->sess[i].live) s_announce(d, &d->sess[i]);
    return 1;
}

static void s_end_job(s_daemon_t *d, const char *state, const char *reason)
{
    s_log(d, "job %lld %s%s%s", (long long)d->job, state, reason && *reason ? ": " : "",
          reason ? reason : "");
    if (!cnd_cstore_job_set_state(d->c.store, d->job, state, reason)) {
        s_audit_job_state(d, state, reason);
        if (cnd_audit_checkpoint(d->c.audit, "job.end", NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    } else {
        s_log(d, "job %lld: %s", (long long)d->job, cnd_err_detail());
    }
    (void)s_commit(d);
    s_unload_job(d);
}

/* The end of an autocompress job: its pick becomes float model version 1 (coord_autoc.h). */
static void s_end_autoc(s_daemon_t *d, uint32_t last_round)
{
    uint32_t idx = 0;
    double acc = -1;
    int rc = cnd_autoc_finish(&d->c, d->job, last_round, &idx, &acc);
    if (rc) {
        char why[300];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        cnd_err_clear();
        s_end_job(d, "failed", why);
        return;
    }
    s_log(d, "autocompress: picked candidate %u (accuracy %.4f over the sites' secure sums)", idx,
          acc);
    s_end_job(d, "completed", NULL);
}

static int s_cmp_sites(const void *a, const void *b)
{
    return strcmp(((const cnd_round_site_t *)a)->name, ((const cnd_round_site_t *)b)->name);
}

/* Starts the next round when enough sites are there. */
static void s_maybe_start_round(s_daemon_t *d, double now)
{
    if (!d->job || d->round) return;
    uint32_t round = 1, attempt = 1;
    if (cnd_cstore_round_next(d->c.store, d->job, &round, &attempt)) {
        s_log(d, "job %lld: %s", (long long)d->job, cnd_err_detail());
        return;
    }
    if (round > d->spec.rounds && d->autoc) {
        s_end_autoc(d, round - 1);
        return;
    }
    if (round > d->spec.rounds) {
        if (!d->any_ok) {
            s_end_job(d, "failed", "no round produced a model");
            return;
        }
        /* With calibration samples the job ends in a signed integer artifact. */
        cnd_model_rec_t ar;
        int prc = cnd_fedq_publish(&d->c, d->job, &d->spec, &ar);
        char why[300] = "";
        if (prc == 0) {
            char hex[65];
            s_log(d, "int8 artifact v%lld: %llu bytes, sha256 %s, manifest signed",
                  (long long)ar.version, (unsigned long long)ar.size, cnd_hex(hex, ar.digest, 32));
            cnd_model_rec_free(&ar);
        } else if (prc != CND_ENOTFOUND) {
            snprintf(why, sizeof why, "the float model is final; the int8 artifact failed: %s",
                     cnd_err_detail());
        }
        cnd_err_clear();
        s_end_job(d, "completed", why[0] ? why : NULL);
        return;
    }
    double fresh = 5.0 * (d->o->heartbeat_ms ? d->o->heartbeat_ms : 2000) / 1e3;
    size_t *elig = malloc((d->n_sess ? d->n_sess : 1) * sizeof *elig);
    if (!elig) return;
    size_t ne = 0;
    /* A retried attempt leaves out the sites that did not advertise in the last one, unless
     * too few would remain, and does not wait for more sites than that one had. */
    /* the fewest sites a round may start with: the quorum, and under distributed DP the sites
     * whose noise every sum must carry (a round of fewer could never be unmasked) */
    uint32_t need = d->spec.quorum;
    if (d->spec.dp_mode == CND_JOB_DP_DISTRIBUTED && d->spec.dp_min_survivors > need)
        need = d->spec.dp_min_survivors;
    cnd_round_rec_t prev;
    int retry = cnd_round_prev_retry(&d->c, d->job, round, attempt, &prev);
    for (int skip = retry; ne == 0 && skip >= 0; skip--) {
        for (size_t i = 0; i < d->n_sess; i++) {
            s_session_t *s = &d->sess[i];
            if (s->live && s->accepted_job == d->job && now - s->last_seen <= fresh &&
                !(skip && cnd_round_rec_silent(&prev, s->name)))
                elig[ne++] = i;
        }
        if (skip && ne < need) ne = 0;
    }
    cnd_round_rec_free(&prev);
    uint32_t want = d->spec.sites_per_round;
    int waited = (now - d->wait_start) * 1e3 >= d->spec.join_wait_ms || retry;
    if (ne < want && !(waited && ne >= need && ne >= 2)) {
        free(elig);
        return;
    }
    /* More than needed: a seeded random choice, so runs are reproducible. */
    if (ne > want) {
        cnd_rng_t rng;
        cnd_rng_seed(&rng, d->spec.seed * 1000003u + round);
        for (size_t i = 0; i < want; i++) {
            size_t j = i + (size_t)cnd_rng_below(&rng, ne - i);
            size_t t = elig[i];
            elig[i] = elig[j];
            elig[j] = t;
        }
        ne = want;
    }
    cnd_round_site_t *sites = calloc(ne, sizeof *sites);
    if (!sites) {
        free(elig);
        return;
    }
    for (size_t i = 0; i < ne; i++) {
        s_session_t *s = &d->sess[elig[i]];
        s->in_round = 1; /* the round sends to it from its start on */
        snprintf(sites[i].name, sizeof sites[i].name, "%s", s->name);
        snprintf(sites[i].fpr, sizeof sites[i].fpr, "%s", s->fpr);
        memcpy(sites[i].ed_pk, s->ed_pk, 32);
        sites[i].cert = s->cert;
        sites[i].cert_len = s->cert_len;
    }
    qsort(sites, ne, sizeof *sites, s_cmp_sites);
    int qat = !d->autoc && round + d->spec.qat_rounds > d->spec.rounds;
    cnd_round_io_t io = {d, s_round_send, s_round_send_object, s_commit};
    unsigned thr = d->o->threads ? d->o->threads : 1;
    int rc = d->autoc ? cnd_round_start_eval(&d->round, &d->c, &io, d->job, &d->spec, round,
                                             attempt, sites, (uint32_t)ne, thr)
                      : cnd_round_start(&d->round, &d->c, &io, d->job, &d->spec, round, attempt,
                                        sites, (uint32_t)ne, qat, thr);
    if (rc) {
        for (size_t i = 0; i < d->n_sess; i++) d->sess[i].in_round = 0;
        char why[300];
        snprintf(why, sizeof why, "round %u could not start: %s", round, cnd_err_detail());
        s_end_job(d, "failed", why);
    } else {
        s_log(d, "round %u/%u%s started with %zu sites%s", round, d->spec.rounds,
              attempt > 1 ? " (again)" : "", ne,
              qat        ? " (QAT)"
              : d->autoc ? " (evaluating candidates)"
                         : "");
    }
    free(sites);
    free(elig);
}

static void s_round_ended(s_daemon_t *d)
{
    int64_t v = -1;
    uint32_t n = cnd_round_number(d->round);
    if (cnd_round_result(d->round, &v) && cnd_round_candidates(d->round)) {
        s_log(d, "round %u/%u done: %u candidates evaluated (secure sums over the survivors)", n,
              d->spec.rounds, cnd_round_candidates(d->round));
    } else if (cnd_round_result(d->round, &v)) {
        d->any_ok = 1;
        cnd_model_rec_t m;
        double acc = -1;
        if (!cnd_cstore_model_get(d->c.store, d->job, v, "float", &m, NULL, NULL)) {
            acc = m.accuracy;
            cnd_model_rec_free(&m);
        }
        if (acc >= 0)
            s_log(d,
                  "round %u/%u done: model v%lld, validation accuracy %.4f (the survivors' "
                  "secure sum)",
                  n, d->spec.rounds, (long long)v, acc);
        else /* distributed DP: the sites send no metrics */
            s_log(d, "round %u/%u done: model v%lld, no validation metrics", n, d->spec.rounds,
                  (long long)v);
    } else {
        s_log(d, "round %u/%u failed: %s", n, d->spec.rounds, cnd_round_reason(d->round));
    }
    cnd_round_destroy(&d->round);
    for (size_t i = 0; i < d->n_sess; i++) d->sess[i].in_round = 0;
    d->wait_start = cnd_now();
}

/* Picks up a cancellation made with `condenser job cancel` from another process. */
static void s_check_job_state(s_daemon_t *d)
{
    if (!d->job) return;
    cnd_job_rec_t jr;
    if (cnd_cstore_job_get(d->c.store, d->job, &jr)) return;
    int cancelled = strcmp(jr.state, "cancelled") == 0;
    char reason[256];
    snprintf(reason, sizeof reason, "%s", jr.reason);
    cnd_job_rec_free(&jr);
    if (!cancelled) return;
    s_log(d, "job %lld cancelled: %s", (long long)d->job, reason);
    if (d->round) cnd_round_cancel(d->round, reason);
    (void)s_commit(d);
    s_unload_job(d);
}

/* --- messages ------------------------------------------------------------------------------- */

/* A Hello on a connection without a session (the envelope passed the gate up to the sender). */
/* Why a Hello's certificate is not the enrolled one, with both serials and what to do. */
static void s_cert_mismatch(char *out, size_t cap, const char *name, const uint8_t *got,
                            size_t got_len, const uint8_t *enrolled, size_t enrolled_len)
{
    cnd_cert_info_t g, e;
    char a[32], b[32];
    int hg = got_len && cnd_ca_inspect(&g, got, got_len) == 0;
    int he = enrolled && cnd_ca_inspect(&e, enrolled, enrolled_len) == 0;
    cnd_err_clear();
    if (!hg || !he) {
        snprintf(out, cap, "hello.certificate is not the enrolled certificate");
        return;
    }
    if (cnd_cert_newer(&g, &e))
        snprintf(out, cap,
                 "hello.certificate (serial %llu, valid until %s) is not the enrolled "
                 "certificate of '%s' (serial %llu, valid until %s): it is newer, and the "
                 "federation operator has not enrolled it (condenser site renew %s --cert FILE; "
                 "site enroll for a new site)",
                 (unsigned long long)g.serial, cnd_iso8601(a, g.not_after), name,
                 (unsigned long long)e.serial, cnd_iso8601(b, e.not_after), name);
    else
        snprintf(out, cap,
                 "hello.certificate (serial %llu, valid until %s) is not the enrolled "
                 "certificate of '%s' (serial %llu, valid until %s): it is older, the coordinator "
                 "enrolled its renewal; install the enrolled certificate at the site (the agent "
                 "re-reads it before every hello)",
                 (unsigned long long)g.serial, cnd_iso8601(a, g.not_after), name,
                 (unsigned long long)e.serial, cnd_iso8601(b, e.not_after));
}

static void s_on_hello(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                       const Condenser__Envelope *env)
{
    const Condenser__Hello *h = env->hello;
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED, env->seq, env->type};
    char name[CND_USER_ID_MAX];
    if (cnd_proto_check_role(&rej, env, s->role)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        return;
    }
    if (cnd_proto_text(name, sizeof name, h->node_name) || strcmp(name, s->name) != 0) {
        s_reject(d, s, f, &rej, NULL, "hello.node_name differs from the enrolled name");
        return;
    }
    if (sodium_memcmp(h->identity_key.data, s->ed_pk, 32) != 0) {
        s_reject(d, s, f, &rej, NULL, "hello.identity_key is not the enrolled key");
        return;
    }
    if (h->role != s->role) {
        s_reject(d, s, f, &rej, NULL, "hello.role differs from the enrolled role");
        return;
    }
    /* The node presents exactly the certificate enrolled for it, and that certificate still
     * verifies against the federation CA (validity, revocation list) for its name and role. */
    cnd_cert_info_t ci;
    if (!s->cert || h->certificate.len != s->cert_len ||
        memcmp(h->certificate.data, s->cert, s->cert_len) != 0) {
        char why[600];
        s_cert_mismatch(why, sizeof why, s->name, h->certificate.data, h->certificate.len, s->cert,
                        s->cert_len);
        s_reject(d, s, f, &rej, "certificate", why);
        return;
    }
    int64_t unow = cnd_unix_time();
    if (cnd_cert_check(&ci, d->c.ca_cert, d->c.ca_crl, s->cert, s->cert_len,
                       s->role == CONDENSER__ROLE__ROLE_DEVICE ? "device" : "site", s->name,
                       unow)) {
        char why[600];
        snprintf(why, sizeof why, "hello.certificate: %s%s", cnd_err_detail(),
                 strstr(cnd_err_detail(), "expired")
                     ? " (the site needs a renewed certificate: condenser ca issue --renew, "
                       "condenser site renew)"
                     : "");
        s_reject(d, s, f, &rej, "certificate", why);
        return;
    }
    int64_t left = cnd_cert_days_left(ci.not_after, unow);
    if (left < CND_CERT_WARN_DAYS) {
        char x[32];
        s_log(d, "warning: %s's certificate (serial %llu) expires in %lld day%s (%s): renew it",
              s->name, (unsigned long long)ci.serial, (long long)left, left == 1 ? "" : "s",
              cnd_iso8601(x, ci.not_after));
    }
    if (h->min_version > CND_PROTO_VERSION || h->max_version < CND_PROTO_VERSION) {
        rej.code = CONDENSER__ERROR_CODE__ERR_BAD_VERSION;
        s_reject(d, s, f, &rej, NULL, "no common protocol version");
        return;
    }
    cnd_seqwin_t win;
    cnd_seqwin_init(&win);
    if (cnd_seqwin_check(&win, &rej, env->seq)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        return;
    }
    double now = cnd_now();
    if (s->live) {
        /* The identity has a session on another connection. Closed: the node restarted or
         * reconnected. Open: a second process runs with this identity; the newer one wins and
         * the older one is told why (a Condenser agent stops on it rather than reconnect). */
        char why[300];
        if (cnd_server_probe(d->srv, &s->peer) == CND_ENOTFOUND) {
            cnd_err_clear();
            snprintf(why, sizeof why, "a new connection from %s said hello", f->address);
            s_session_end(d, s, "connection lost", why, 0);
        } else {
            cnd_err_clear();
            s_log(d,
                  "%s: DUPLICATE SESSION: a second connection from %s said hello while session "
                  "%llu from %s (opened %.0f s ago, last message %.1f s ago) is open; the older "
                  "one is closed. Two processes are running with the identity %s: stop one.",
                  s->name, f->address, (unsigned long long)s->id, s->address, now - s->started,
                  now - s->last_seen, s->name);
            snprintf(why, sizeof why,
                     "another connection of %s (from %s) opened a session; two agents must not "
                     "run with one identity",
                     s->name, f->address);
            s_session_end(d, s, "superseded", why, 1);
        }
    }
    s->live = 1;
    s->closed = 0;
    s->peer = f->peer;
    snprintf(s->address, sizeof s->address, "%s", f->address);
    s->id = ++d->next_session;
    s->started = s->last_seen = now;
    s->not_after = ci.not_after;
    s->win = win;
    s->accepted_job = s->refused_job = 0;
    s->in_round = 0;
    cnd_outq_clear(&s->q);
    cnd_seqwin_commit(&s->win, env->seq);
    if (cnd_audit_log_message(d->c.audit, 'I', d->c.fpr, s->fpr, "", cnd_proto_type_name(env->type),
                              -1, f->data, f->len, NULL))
        s_log(d, "audit: %s", cnd_err_detail());
    Condenser__HelloAck ack;
    condenser__hello_ack__init(&ack);
    ack.coordinator_name = cnd_proto_str(d->c.name);
    ack.version = CND_PROTO_VERSION;
    ack.heartbeat_ms = (uint32_t)(d->o->heartbeat_ms ? d->o->heartbeat_ms : 2000);
    ack.max_message = CND_PROTO_MAX_MSG;
    ack.chunk_size = CND_PROTO_CHUNK_DEFAULT;
    ack.server_unix_ms = (uint64_t)cnd_unix_time() * 1000;
    s_log(d, "%s said hello (session %llu from %s)", s->name, (unsigned long long)s->id,
          s->address);
    if (s_send_env(d, s, CONDENSER__MSG_TYPE__MSG_HELLO_ACK, &ack, 0, 0)) return;
    s_announce(d, s);
}

static void s_on_job_response(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                              const Condenser__Envelope *env, cnd_proto_reject_t *rej)
{
    if (!d->job || env->job_id != (uint64_t)d->job) {
        rej->code = CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB;
        s_reject(d, s, f, rej, NULL, "job_response for a job not in flight");
        return;
    }
    if (env->job_response->accept) {
        s->accepted_job = d->job;
        s->refused_job = 0;
        s_log(d, "%s accepted job %lld", s->name, (long long)d->job);
        return;
    }
    char why[CND_PROTO_TEXT_MAX + 1];
    if (cnd_proto_text(why, sizeof why, env->job_response->reason)) why[0] = 0;
    for (char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    s->refused_job = d->job;
    s->accepted_job = 0;
    s_log(d, "%s refused job %lld: %s", s->name, (long long)d->job, why);
}

/* A round message from a session (the gate and the role check passed). */
static void s_on_round_msg(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                           const cnd_proto_msg_t *m, cnd_proto_reject_t *rej)
{
    const Condenser__Envelope *env = m->env;
    rej->seq = env->seq;
    rej->type = env->type;
    if (cnd_proto_phase_of(env) == CND_PHASE_IDLE) {
        rej->code = CONDENSER__ERROR_CODE__ERR_REFUSED;
        s_reject(d, s, f, rej, NULL, "not handled by this coordinator");
        return;
    }
    cnd_round_view_t view = {(uint64_t)d->job, 0, CND_PHASE_IDLE};
    if (d->round) cnd_round_view(d->round, &view);
    if (!d->job) {
        rej->code = CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB;
        s_reject(d, s, f, rej, NULL, "no job in flight");
        return;
    }
    if (cnd_proto_check_round(rej, env, &view)) {
        s_reject(d, s, f, rej, NULL, cnd_err_detail());
        return;
    }
    int idx = d->round && s->in_round ? cnd_round_site_index(d->round, s->name) : -1;
    if (idx < 0) {
        rej->code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        s_reject(d, s, f, rej, NULL,
                 "not a participant of this round (with this session: a node that reconnected "
                 "joins the next round)");
        return;
    }
    cnd_err_clear();
    if (cnd_round_on_message(d->round, (uint32_t)idx, env, m->wire_len, rej))
        s_reject(d, s, f, rej, NULL, cnd_err_detail());
}

/* The messages of an open session, after the gate. */
static void s_dispatch(s_daemon_t *d, s_session_t *s, const cnd_frame_t *f,
                       const cnd_proto_msg_t *m, cnd_proto_reject_t *rej)
{
    const Condenser__Envelope *env = m->env;
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_HELLO:
        rej->code = CONDENSER__ERROR_CODE__ERR_REFUSED;
        s_reject(d, s, f, rej, "hello again", "this connection already has a session");
        break;
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT: break;
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE: s_on_job_response(d, s, f, env, rej); break;
    case CONDENSER__MSG_TYPE__MSG_ERROR: {
        char text[CND_PROTO_TEXT_MAX + 1];
        if (cnd_proto_text(text, sizeof text, env->error->text)) text[0] = 0;
        for (char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
        s_log(d, "%s reports %s: %s", s->name, cnd_proto_error_name(env->error->code), text);
        int idx = d->round && s->in_round ? cnd_round_site_index(d->round, s->name) : -1;
        if (idx >= 0 && env->job_id == (uint64_t)d->job && env->round == cnd_round_number(d->round))
            if (cnd_round_on_message(d->round, (uint32_t)idx, env, m->wire_len, rej))
                s_log(d, "%s: %s", s->name, cnd_err_detail());
        break;
    }
    default: s_on_round_msg(d, s, f, m, rej); break;
    }
}

/* The receive gate: the connection's state, decoding, the sender, the session, the replay
 * window; then ingress, role, and the message. */
static void s_on_frame(s_daemon_t *d, cnd_frame_t *f)
{
    if (d->capture) {
        uint8_t le[4];
        cnd_st_le32(le, (uint32_t)f->len);
        if (fwrite(le, 1, 4, d->capture) != 4 || fwrite(f->data, 1, f->len, d->capture) != f->len)
            s_log(d, "capture: write failed");
        fflush(d->capture);
    }
    s_session_t *s = s_session_on(d, f->user_id, &f->peer);
    d->log_peer = s ? s->name : NULL;
    const s_closed_t *gone = s ? NULL : s_closed(d, &f->peer);
    if (gone && gone->mute) {
        /* Counted into a reject.summary, never answered or recorded one by one. */
        d->dropped_unread++;
        s_session_t *id = s_session(d, f->user_id);
        cnd_audit_limiter_count(d->limit, CND_AUDIT_REJECT_MESSAGE, id ? id->fpr : f->user_id,
                                "dropped unread", cnd_now());
        return;
    }
    cnd_proto_reject_t rej = {CONDENSER__ERROR_CODE__ERR_MALFORMED, 0, 0};
    cnd_proto_msg_t *m = NULL;
    if (cnd_proto_decode(&m, &rej, f->data, f->len)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        return;
    }
    const Condenser__Envelope *env = m->env;
    if (cnd_proto_check_sender(&rej, env, f->user_id)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        goto done;
    }
    if (!s) {
        rej.code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        rej.seq = env->seq;
        rej.type = env->type;
        if (gone) {
            s_reject(d, NULL, f, &rej, "session ended", gone->text);
        } else if (env->type != CONDENSER__MSG_TYPE__MSG_HELLO) {
            s_reject(d, NULL, f, &rej, "hello first",
                     "no session on this connection: send hello first");
        } else {
            s_session_t *id = s_session_load(d, f->user_id);
            if (!id) {
                rej.code = CONDENSER__ERROR_CODE__ERR_BUSY;
                s_reject(d, NULL, f, &rej, NULL, "no session available");
            } else {
                s_on_hello(d, id, f, env);
            }
        }
        goto done;
    }
    if (cnd_seqwin_check(&s->win, &rej, env->seq)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        goto done;
    }
    cnd_seqwin_commit(&s->win, env->seq);
    s->last_seen = cnd_now();
    {
        char jid[32];
        snprintf(jid, sizeof jid, "%llu", (unsigned long long)env->job_id);
        if (cnd_audit_log_message(d->c.audit, 'I', d->c.fpr, s->fpr, env->job_id ? jid : "",
                                  cnd_proto_type_name(env->type),
                                  env->round ? (int64_t)env->round : -1, f->data, f->len, NULL))
            s_log(d, "audit: %s", cnd_err_detail());
    }
    if (cnd_proto_check_role(&rej, env, s->role)) {
        s_reject(d, s, f, &rej, NULL, cnd_err_detail());
        goto done;
    }
    s_dispatch(d, s, f, m, &rej);
done:
    cnd_proto_msg_destroy(&m);
}

/* --- main loop ------------------------------------------------------------------------------ */

/* Flushes every session's queue; returns 1 if some queue still holds frames the transport can
 * take soon (it moved this time), so the loop should come back quickly. */
static int s_flush_all(s_daemon_t *d)
{
    int moving = 0;
    for (size_t i = 0; i < d->n_sess; i++) {
        s_session_t *s = &d->sess[i];
        if (s->live && s->q.head) s_flush(d, s, 256);
        if (s->live && s->closed)
            s_session_end(d, s, "connection lost", "its connection closed", 0);
        if (s->live && s->q.head && !s->q.stalled_since) moving = 1;
    }
    return moving;
}

/* Opens the coordinator's directory, its stores and keys, and the CurveZMQ server; writes the
 * endpoint file when asked. */
static int s_start(s_daemon_t *d)
{
    const cnd_coord_run_opts_t *o = d->o;
    uint8_t csk[32], cpk[32];
    int rc = cnd_coord_open(&d->c, o->dir, 1);
    if (rc) return rc;
    if ((rc = cnd_cstore_open_readonly(&d->zstore, d->c.db_path))) return rc;
    if ((rc = cnd_identity_curve_keypair(cpk, csk, d->c.id))) return rc;
    if ((rc = cnd_audit_limiter_new(&d->limit, d->c.audit, d->c.fpr, NULL))) goto out;
    if (o->capture && !(d->capture = fopen(o->capture, "ab"))) {
        rc = cnd_errf(CND_EIO, "%s: cannot open the capture file", o->capture);
        goto out;
    }
    cnd_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = o->endpoint;
    so.secret_key = csk;
    so.allow = s_allow;
    so.allow_ctx = d;
    so.on_event = s_event;
    so.event_ctx = d;
    so.recheck = 1;
    so.sndhwm = S_SNDHWM;
    so.heartbeat_ivl_ms = 1000;
    if ((rc = cnd_server_new(&d->srv, &so))) goto out;
    const char *ep = cnd_server_endpoint(d->srv);
    if (o->endpoint_file && (rc = cnd_file_write_atomic(o->endpoint_file, ep, strlen(ep), 0644)))
        goto out;
    s_log(d, "coordinator %s listening on %s (CurveZMQ, enrolled keys only)", d->c.name, ep);
    if (o->metrics) {
        d->mctx.db_path = d->c.db_path;
        d->mctx.live = &d->live;
        if ((rc = cnd_metrics_listen(&d->metrics, o->metrics, cnd_coord_metrics_render, &d->mctx)))
            goto out;
        s_log(d, "metrics on http://%.*s:%d/metrics", (int)(strrchr(o->metrics, ':') - o->metrics),
              o->metrics, cnd_metrics_port(d->metrics));
    }
    /* Ready for systemd (Type=notify) only now: a connection and a scrape would succeed. */
    if (cnd_service_ready(ep) < 0) s_log(d, "warning: %s", cnd_err_detail());
out:
    sodium_memzero(csk, sizeof csk);
    return rc;
}

/* Waits for frames: at most 200 ms (5 ms while a send queue drains), never past the round's
 * deadline (as of `now`). */
static int s_poll(s_daemon_t *d, int moving, double now)
{
    double wait = moving ? 0.005 : 0.2;
    if (d->round) {
        double left = cnd_round_time_left(d->round, now);
        if (left < wait) wait = left;
    }
    zmq_pollitem_t it = {cnd_server_socket(d->srv), 0, ZMQ_POLLIN, 0};
    int pr = zmq_poll(&it, 1, (long)(wait * 1000));
    if (pr < 0 && zmq_errno() != EINTR)
        return cnd_errf(CND_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* Handles up to 256 waiting frames, the round ticking after each. */
static void s_receive(s_daemon_t *d)
{
    for (int k = 0; k < 256; k++) {
        cnd_frame_t f;
        int r = cnd_server_recv(d->srv, &f, 0);
        if (r == CND_ETIMEOUT) break;
        if (r) {
            s_log(d, "receive: %s", cnd_err_detail());
            break;
        }
        atomic_fetch_add(&d->live.rx_frames, 1);
        atomic_fetch_add(&d->live.rx_bytes, f.len);
        s_on_frame(d, &f);
        d->log_peer = NULL;
        cnd_frame_clear(&f);
        if (d->round && cnd_round_tick(d->round, cnd_now())) s_round_ended(d);
    }
    cnd_err_clear();
}

/* Sessions and their send-queue depths for the metrics thread. */
static void s_metrics_snapshot(s_daemon_t *d)
{
    int64_t live = 0;
    pthread_mutex_lock(&d->live.mu);
    d->live.n_queues = 0;
    for (size_t i = 0; i < d->n_sess; i++) {
        if (!d->sess[i].live) continue;
        live++;
        if (d->live.n_queues < CND_CM_QUEUES) {
            int k = d->live.n_queues++;
            snprintf(d->live.queue_peer[k], sizeof d->live.queue_peer[k], "%s", d->sess[i].name);
            d->live.queue_frames[k] = (uint32_t)d->sess[i].q.frames;
        }
    }
    pthread_mutex_unlock(&d->live.mu);
    atomic_store(&d->live.sessions, live);
}

/* The rest of an iteration: refused connections recorded, sessions' liveness, the round's
 * deadline, send queues moved, refusal summaries once a second, the job's state (operators'
 * commands) twice a second. Returns whether a send queue is still draining. */
static int s_housekeeping(s_daemon_t *d)
{
    s_drain_refusals(d);
    double now = cnd_now();
    s_liveness(d, now);
    if (d->round && cnd_round_tick(d->round, now)) s_round_ended(d);
    int moving = s_flush_all(d);
    if (now - d->last_limit_flush >= 1.0) {
        d->last_limit_flush = now;
        if (cnd_audit_limiter_flush(d->limit, now, 0)) s_log(d, "audit: %s", cnd_err_detail());
    }
    if (now - d->last_state_check > 0.5) {
        d->last_state_check = now;
        s_check_job_state(d);
    }
    if (d->metrics && now - d->last_metrics >= 1.0) {
        d->last_metrics = now;
        s_metrics_snapshot(d);
    }
    return moving;
}

/* The event loop, until *stop or (until_done) a moment after the last job ended. */
static int s_loop(s_daemon_t *d, volatile sig_atomic_t *stop)
{
    double idle_since = 0; /* until_done: when the last job ended */
    int moving = 0;        /* some send queue is draining: come back soon */
    int rc = 0;
    while (!*stop) {
        /* One transaction per iteration, never held while waiting in zmq_poll, so operators'
         * commands (enroll, revoke, cancel) get the write lock between iterations. */
        if ((rc = s_begin(d))) break;
        double now = cnd_now();
        if (!d->job && !s_load_job(d) && d->o->until_done) {
            /* Stay a moment so the last messages (RoundEnd) leave: sockets do not linger. */
            if (idle_since == 0) idle_since = now;
            if (now - idle_since > 1.5) break;
        }
        s_maybe_start_round(d, now);
        if ((rc = s_end(d)) || (rc = s_poll(d, moving, now)) || (rc = s_begin(d))) break;
        s_receive(d);
        moving = s_housekeeping(d);
        if ((rc = s_end(d))) {
            s_log(d, "store: %s", cnd_err_detail());
            break;
        }
    }
    return rc;
}

/* After the loop: a round in flight stays open in the store for the next run, refusals counted
 * but not yet summarised are, and the last transaction commits. */
static int s_shutdown(s_daemon_t *d, int rc)
{
    if (d->round) {
        s_log(d, "stopping with round %u in flight; it will run again on restart",
              cnd_round_number(d->round));
        cnd_round_destroy(&d->round);
    }
    if (!rc && d->limit) {
        int brc = s_begin(d);
        if (!brc && cnd_audit_limiter_flush(d->limit, cnd_now(), 1))
            s_log(d, "audit: %s", cnd_err_detail());
        if (!brc)
            s_log(d, "%llu frames of connections that do not read were dropped unread",
                  (unsigned long long)d->dropped_unread);
    }
    if (d->txn) {
        d->txn = 0;
        int crc = cnd_cstore_commit(d->c.store);
        if (!rc) rc = crc;
    }
    return rc;
}

static void s_daemon_free(s_daemon_t *d)
{
    cnd_metrics_stop(&d->metrics); /* first: its thread reads d->live */
    cnd_coord_live_destroy(&d->live);
    s_unload_job(d);
    cnd_server_destroy(&d->srv);
    if (d->capture) fclose(d->capture);
    cnd_audit_limiter_destroy(&d->limit);
    cnd_cstore_close(&d->zstore);
    cnd_coord_close(&d->c);
    for (size_t i = 0; i < d->n_sess; i++) {
        free(d->sess[i].cert);
        cnd_outq_clear(&d->sess[i].q);
    }
    free(d->sess);
    pthread_mutex_destroy(&d->zmu);
    free(d);
}

int cnd_coord_run(const cnd_coord_run_opts_t *o, volatile sig_atomic_t *stop)
{
    char lock[600];
    snprintf(lock, sizeof lock, "%s/%s", o->dir, CND_DB_DAEMON_LOCK);
    int lfd = -1, rc = cnd_file_lock(lock, 0, &lfd);
    if (rc == CND_ESTATE)
        return cnd_errf(CND_ESTATE, "%s: a restore of this directory is in progress", o->dir);
    if (rc) return rc;
    s_daemon_t *d = calloc(1, sizeof *d);
    if (!d) {
        cnd_file_unlock(&lfd);
        return cnd_errf(CND_ENOMEM, "coordinator: out of memory");
    }
    d->o = o;
    cnd_coord_live_init(&d->live);
    pthread_mutex_init(&d->zmu, NULL);
    d->seq = cnd_proto_seq_start();
    rc = s_start(d);
    if (!rc) rc = s_shutdown(d, s_loop(d, stop));
    s_daemon_free(d);
    cnd_file_unlock(&lfd);
    return rc;
}
