/* coord_metrics.c: see coord_metrics.h. */
#include "coord_metrics.h"
#include "ca.h"
#include "clock.h"
#include "db.h"
#include "metrics.h"
#include "proto.h"

#include <stdio.h>
#include <string.h>

void cnd_coord_live_init(cnd_coord_live_t *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    atomic_store(&l->started_unix, cnd_unix_time());
}

void cnd_coord_live_destroy(cnd_coord_live_t *l)
{
    pthread_mutex_destroy(&l->mu);
}

void cnd_coord_live_refused_conn(cnd_coord_live_t *l, const char *reason)
{
    cnd_cm_conn_reason_t r = !reason                       ? CND_CM_CONN_OTHER
                             : strstr(reason, "revoked")   ? CND_CM_CONN_REVOKED
                             : strstr(reason, "expired")   ? CND_CM_CONN_EXPIRED
                             : strstr(reason, "not enrol") ? CND_CM_CONN_UNKNOWN_KEY
                             : strstr(reason, "unknown")   ? CND_CM_CONN_UNKNOWN_KEY
                                                           : CND_CM_CONN_OTHER;
    atomic_fetch_add(&l->refused_conn[r], 1);
}

static void s_live(cnd_buf_t *b, const cnd_coord_live_t *lc)
{
    cnd_coord_live_t *l = (cnd_coord_live_t *)lc; /* atomics and the mutex only */
    cnd_metrics_head(b, "condenser_start_time_seconds", "gauge", "Unix time the daemon started.");
    cnd_metrics_val(b, "condenser_start_time_seconds", (double)atomic_load(&l->started_unix));
    static const char *const dir[2] = {"in", "out"};
    cnd_metrics_head(b, "condenser_frames_total", "counter", "Protocol frames received and sent.");
    cnd_metrics_val1(b, "condenser_frames_total", "direction", dir[0],
                     (double)atomic_load(&l->rx_frames));
    cnd_metrics_val1(b, "condenser_frames_total", "direction", dir[1],
                     (double)atomic_load(&l->tx_frames));
    cnd_metrics_head(b, "condenser_bytes_total", "counter", "Protocol bytes received and sent.");
    cnd_metrics_val1(b, "condenser_bytes_total", "direction", dir[0],
                     (double)atomic_load(&l->rx_bytes));
    cnd_metrics_val1(b, "condenser_bytes_total", "direction", dir[1],
                     (double)atomic_load(&l->tx_bytes));
    cnd_metrics_head(b, "condenser_sessions", "gauge", "Nodes with a live session.");
    cnd_metrics_val(b, "condenser_sessions", (double)atomic_load(&l->sessions));
    static const char *const why[CND_CM_CONN_REASONS] = {"unknown_key", "revoked", "expired",
                                                         "other"};
    cnd_metrics_head(b, "condenser_refused_connections_total", "counter",
                     "Connections refused at the CurveZMQ handshake, by reason.");
    for (int i = 0; i < CND_CM_CONN_REASONS; i++)
        cnd_metrics_val1(b, "condenser_refused_connections_total", "reason", why[i],
                         (double)atomic_load(&l->refused_conn[i]));
    cnd_metrics_head(b, "condenser_refused_messages_total", "counter",
                     "Messages refused, by protocol error code.");
    for (int i = 0; i < CND_CM_CODES; i++) {
        uint64_t n = atomic_load(&l->refused_msg[i]);
        if (n)
            cnd_metrics_val1(b, "condenser_refused_messages_total", "code",
                             cnd_proto_error_name((Condenser__ErrorCode)i), (double)n);
    }
    cnd_metrics_head(b, "condenser_send_queue_frames", "gauge",
                     "Frames waiting in a session's send queue.");
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->n_queues; i++)
        cnd_metrics_val1(b, "condenser_send_queue_frames", "peer", l->queue_peer[i],
                         (double)l->queue_frames[i]);
    pthread_mutex_unlock(&l->mu);
}

/* The last finished round and the one in flight. */
static int s_rounds(cnd_buf_t *b, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT t_advertise, t_share, t_masked, t_consistency, t_unmask, "
                         "t_finish, n, survivors, (ended_ms - started_ms) / 1000.0 FROM round "
                         "WHERE outcome != '' ORDER BY ended_ms DESC LIMIT 1");
    if (rc) return rc;
    static const char *const ph[] = {"advertise",   "share",  "masked",
                                     "consistency", "unmask", "finish"};
    cnd_metrics_head(b, "condenser_last_round_phase_seconds", "gauge",
                     "Seconds each phase of the last finished round took.");
    cnd_metrics_head(b, "condenser_last_round_seconds", "gauge",
                     "Wall-clock seconds of the last finished round.");
    cnd_metrics_head(b, "condenser_last_round_sites", "gauge",
                     "Participants and survivors (masked inputs summed) of the last round.");
    if (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < 6; i++)
            cnd_metrics_val1(b, "condenser_last_round_phase_seconds", "phase", ph[i],
                             sqlite3_column_double(st, i));
        cnd_metrics_val(b, "condenser_last_round_seconds", sqlite3_column_double(st, 8));
        cnd_metrics_val1(b, "condenser_last_round_sites", "kind", "participants",
                         sqlite3_column_double(st, 6));
        cnd_metrics_val1(b, "condenser_last_round_sites", "kind", "survivors",
                         sqlite3_column_double(st, 7));
    }
    sqlite3_finalize(st);
    rc = cnd_metrics_grouped(b, db,
                             "SELECT 'dropout', COALESCE(SUM(n - survivors), 0) FROM round "
                             "WHERE outcome = 'ok'",
                             "condenser_round_dropouts_total", "counter",
                             "Sites that dropped out of rounds that completed.", "kind");
    if (!rc)
        rc = cnd_metrics_grouped(
            b, db, "SELECT phase, count(*) FROM round WHERE outcome = '' GROUP BY phase",
            "condenser_rounds_in_flight", "gauge", "Rounds running, by phase.", "phase");
    return rc;
}

/* Certificates: expiry per site, the earliest per role; revoked ones left out. */
static int s_certs(cnd_buf_t *b, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT name, role, certificate FROM identity WHERE revoked_ms = 0 "
                         "AND certificate IS NOT NULL ORDER BY role, name");
    if (rc) return rc;
    cnd_metrics_head(b, "condenser_certificate_expiry_timestamp_seconds", "gauge",
                     "Unix time a site's certificate expires (alert on it minus time()).");
    cnd_metrics_head(b, "condenser_certificate_expiry_min_timestamp_seconds", "gauge",
                     "The earliest expiry among the enrolled certificates of a role.");
    char role[16] = "";
    double min = 0;
    int have = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *r = (const char *)sqlite3_column_text(st, 1);
        cnd_cert_info_t ci;
        if (cnd_ca_inspect(&ci, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2))) {
            cnd_err_clear();
            continue;
        }
        double t = (double)ci.not_after;
        if (r && strcmp(r, "site") == 0 && name)
            cnd_metrics_val1(b, "condenser_certificate_expiry_timestamp_seconds", "site", name, t);
        if (have && strcmp(role, r ? r : "") != 0) {
            cnd_metrics_val1(b, "condenser_certificate_expiry_min_timestamp_seconds", "role", role,
                             min);
            have = 0;
        }
        if (!have || t < min) min = t;
        snprintf(role, sizeof role, "%s", r ? r : "");
        have = 1;
    }
    if (have)
        cnd_metrics_val1(b, "condenser_certificate_expiry_min_timestamp_seconds", "role", role,
                         min);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : cnd_db_err(db, "certificates");
}

static int s_database(cnd_buf_t *b, sqlite3 *db)
{
    int rc = cnd_metrics_grouped(b, db, "SELECT state, count(*) FROM job GROUP BY state",
                                 "condenser_jobs", "gauge", "Jobs by state.", "state");
    if (!rc)
        rc = cnd_metrics_grouped(
            b, db, "SELECT outcome, count(*) FROM round WHERE outcome != '' GROUP BY outcome",
            "condenser_rounds_total", "counter", "Round attempts that ended, by outcome.",
            "outcome");
    if (!rc) rc = s_rounds(b, db);
    if (!rc)
        rc = cnd_metrics_grouped(
            b, db, "SELECT 'entries', COALESCE(MAX(seq) + 1, 0) FROM audit_entry",
            "condenser_audit_log_entries", "gauge", "Entries in the audit log.", "kind");
    if (!rc) rc = s_certs(b, db);
    return rc;
}

int cnd_coord_metrics_render(void *ctx, cnd_buf_t *out)
{
    const cnd_coord_metrics_t *m = ctx;
    if (m->live) s_live(out, m->live);
    return cnd_metrics_from_db(out, m->db_path, "coordinator database", s_database);
}
