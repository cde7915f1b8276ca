/* agent_metrics.c: see agent_metrics.h. */
#include "agent_metrics.h"
#include "clock.h"
#include "db.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void cnd_agent_live_init(cnd_agent_live_t *l, const char *db_path)
{
    memset(l, 0, sizeof *l);
    atomic_store(&l->started_unix, cnd_unix_time());
    snprintf(l->db_path, sizeof l->db_path, "%s", db_path);
}

static void s_gauge(cnd_buf_t *b, const char *name, const char *help, double v)
{
    cnd_metrics_head(b, name, "gauge", help);
    cnd_metrics_val(b, name, v);
}

static void s_live(cnd_buf_t *b, cnd_agent_live_t *l)
{
    s_gauge(b, "condenser_start_time_seconds", "Unix time the agent started.",
            (double)atomic_load(&l->started_unix));
    s_gauge(b, "condenser_agent_connected", "1 while the agent has a session with the coordinator.",
            (double)atomic_load(&l->connected));
    s_gauge(b, "condenser_agent_job", "The job the agent works on (0: none).",
            (double)atomic_load(&l->job));
    s_gauge(b, "condenser_agent_round", "The round in flight (0: none).",
            (double)atomic_load(&l->round));
    s_gauge(b, "condenser_agent_training", "1 while local training runs.",
            (double)atomic_load(&l->training));
    int64_t exp = atomic_load(&l->cert_expiry);
    cnd_metrics_head(b, "condenser_certificate_expiry_timestamp_seconds", "gauge",
                     "Unix time this site's certificate expires.");
    if (exp) cnd_metrics_val(b, "condenser_certificate_expiry_timestamp_seconds", (double)exp);
}

/* Messages and bytes by direction and type. */
static int s_messages(cnd_buf_t *b, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st,
                         "SELECT CASE dir WHEN 'I' THEN 'in' ELSE 'out' END, type, count(*), "
                         "COALESCE(SUM(size), 0) FROM agent_message GROUP BY dir, type "
                         "ORDER BY dir, type");
    if (rc) return rc;
    cnd_buf_t bytes;
    cnd_buf_init(&bytes);
    cnd_metrics_head(b, "condenser_agent_messages_total", "counter",
                     "Protocol messages received and sent, by type.");
    cnd_metrics_head(&bytes, "condenser_agent_message_bytes_total", "counter",
                     "Bytes of protocol messages received and sent, by type.");
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dir = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        cnd_metrics_val2(b, "condenser_agent_messages_total", "direction", dir, "type",
                         type ? type : "", sqlite3_column_double(st, 2));
        cnd_metrics_val2(&bytes, "condenser_agent_message_bytes_total", "direction", dir, "type",
                         type ? type : "", sqlite3_column_double(st, 3));
    }
    sqlite3_finalize(st);
    cnd_buf_put(b, bytes.data, bytes.len);
    if (bytes.err) b->err = bytes.err;
    cnd_buf_free(&bytes);
    return step == SQLITE_DONE ? 0 : cnd_db_err(db, "agent messages");
}

static int s_database(cnd_buf_t *b, sqlite3 *db)
{
    int rc = cnd_metrics_grouped(b, db, "SELECT state, count(*) FROM agent_job GROUP BY state",
                                 "condenser_agent_jobs", "gauge", "Jobs by state.", "state");
    if (!rc)
        rc = cnd_metrics_grouped(
            b, db, "SELECT outcome, count(*) FROM agent_round WHERE outcome != '' GROUP BY outcome",
            "condenser_agent_rounds_total", "counter",
            "Round attempts this site took part in that ended, by outcome.", "outcome");
    if (!rc)
        rc = cnd_metrics_grouped(
            b, db, "SELECT phase, count(*) FROM agent_round WHERE outcome = '' GROUP BY phase",
            "condenser_agent_rounds_in_flight", "gauge", "Rounds in flight, by phase.", "phase");
    if (!rc)
        rc = cnd_metrics_grouped(b, db,
                                 "SELECT 'last', train_ms / 1000.0 FROM agent_round WHERE "
                                 "train_ms > 0 ORDER BY started_ms DESC LIMIT 1",
                                 "condenser_agent_train_seconds", "gauge",
                                 "Seconds the last local training took.", "round");
    if (!rc) rc = s_messages(b, db);
    return rc;
}

int cnd_agent_metrics_render(void *ctx, cnd_buf_t *out)
{
    cnd_agent_live_t *l = ctx;
    s_live(out, l);
    return cnd_metrics_from_db(out, l->db_path, "agent database", s_database);
}
