/* rollout_metrics.c: see rollout_metrics.h. */
#include "rollout_metrics.h"
#include "clock.h"
#include "db.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void cnd_rollout_metrics_init(cnd_rollout_metrics_t *m, const char *db_path)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->started_unix = cnd_unix_time();
    snprintf(m->db_path, sizeof m->db_path, "%s", db_path);
}

void cnd_rollout_metrics_destroy(cnd_rollout_metrics_t *m)
{
    pthread_mutex_destroy(&m->mu);
}

void cnd_rollout_metrics_update(cnd_rollout_metrics_t *m, const cnd_rollout_serve_stats_t *st,
                                const cnd_rollout_stats_t *eng)
{
    pthread_mutex_lock(&m->mu);
    m->st = *st;
    m->eng = *eng;
    pthread_mutex_unlock(&m->mu);
}

static void s_counter(cnd_buf_t *b, const char *name, const char *help, double v)
{
    cnd_metrics_head(b, name, "counter", help);
    cnd_metrics_val(b, name, v);
}

static void s_gauge(cnd_buf_t *b, const char *name, const char *help, double v)
{
    cnd_metrics_head(b, name, "gauge", help);
    cnd_metrics_val(b, name, v);
}

static void s_live(cnd_buf_t *b, cnd_rollout_metrics_t *m)
{
    pthread_mutex_lock(&m->mu);
    cnd_rollout_serve_stats_t st = m->st;
    cnd_rollout_stats_t e = m->eng;
    int64_t started = m->started_unix;
    pthread_mutex_unlock(&m->mu);
    s_gauge(b, "condenser_start_time_seconds", "Unix time the daemon started.", (double)started);
    cnd_metrics_head(b, "condenser_frames_total", "counter", "Protocol frames received and sent.");
    cnd_metrics_val1(b, "condenser_frames_total", "direction", "in", (double)st.frames_in);
    cnd_metrics_val1(b, "condenser_frames_total", "direction", "out", (double)st.frames_out);
    s_counter(b, "condenser_refused_messages_total", "Device messages refused (any reason).",
              (double)st.rejected);
    s_counter(b, "condenser_rollout_chunks_sent_total", "Artifact chunks sent to devices.",
              (double)e.chunks_sent);
    s_counter(b, "condenser_rollout_bytes_sent_total", "Artifact bytes sent to devices.",
              (double)e.bytes_sent);
    s_counter(b, "condenser_rollout_offers_total", "Update offers sent to devices.",
              (double)e.offers_sent);
    s_counter(b, "condenser_rollout_rollbacks_sent_total", "Rollback orders sent to devices.",
              (double)e.rollbacks_sent);
    s_counter(b, "condenser_rollout_reports_total", "Activation reports received from devices.",
              (double)e.reports);
    s_gauge(b, "condenser_devices_online", "Devices heard from within --offline-after.",
            (double)e.online);
    s_gauge(b, "condenser_devices_active", "Devices downloading or on trial.", (double)e.active);
    s_gauge(b, "condenser_rollouts_live", "Rollouts running, paused or rolling back.",
            (double)e.live);
}

static int s_rollout_waves(cnd_buf_t *b, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT id, wave FROM rollout WHERE state IN "
                         "('running', 'paused', 'rolling_back') ORDER BY id");
    if (rc) return rc;
    cnd_metrics_head(b, "condenser_rollout_wave", "gauge", "Current wave of each live rollout.");
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(st, 0));
        cnd_metrics_val1(b, "condenser_rollout_wave", "rollout", id, sqlite3_column_double(st, 1));
    }
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : cnd_db_err(db, "rollout waves");
}

static int s_database(cnd_buf_t *b, sqlite3 *db)
{
    int rc = 0;
    if (cnd_db_has_table(db, "rollout")) {
        rc = cnd_metrics_grouped(b, db, "SELECT state, count(*) FROM rollout GROUP BY state",
                                 "condenser_rollouts", "gauge", "Rollouts by state.", "state");
        if (!rc) rc = s_rollout_waves(b, db);
    }
    if (!rc && cnd_db_has_table(db, "rollout_device"))
        rc = cnd_metrics_grouped(
            b, db, "SELECT state, count(*) FROM rollout_device GROUP BY state",
            "condenser_rollout_devices", "gauge",
            "Devices of all rollouts, by state (healthy, failed, offered, ...).", "state");
    if (!rc && cnd_db_has_table(db, "fleet_device"))
        rc = cnd_metrics_grouped(b, db,
                                 "SELECT CASE WHEN revoked_ms = 0 THEN 'enrolled' ELSE 'revoked' "
                                 "END AS s, count(*) FROM fleet_device GROUP BY s",
                                 "condenser_fleet_devices", "gauge",
                                 "Devices in the fleet registry, enrolled and revoked.", "state");
    return rc;
}

int cnd_rollout_metrics_render(void *ctx, cnd_buf_t *out)
{
    cnd_rollout_metrics_t *m = ctx;
    s_live(out, m);
    return cnd_metrics_from_db(out, m->db_path, "coordinator database", s_database);
}
