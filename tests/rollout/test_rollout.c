/*
 * test_rollout.c: rollouts end to end on real sockets: the device-serving coordinator
 * (rollout_serve.h, in a thread) and a fleet of simulated devices (fleet_sim.h: real
 * identities, CurveZMQ, manifests, chunks, A/B activation and self-tests) on loopback, with a
 * ~100 KB artifact.
 *
 *   1. healthy fleet: the rollout completes through the canary and every wave, every device
 *      runs v2, every device row ends healthy, one rollout.wave entry per wave;
 *   2. 20% faulty devices (wrong bits, hung, crashing): the rollout aborts during the canary
 *      or the first wave and rolls back; every device ends on v1 and in a reported final state
 *      (no device left offered, pending or waiting for its rollback);
 *   3. the coordinator is stopped in the middle of a rollout and started again: the rollout
 *      continues where it was and completes.
 * Devices: CND_FLEET_TEST_DEVICES, else 200 (100 under AddressSanitizer); ctest also runs the
 * 1000-device case as test_rollout_1000 (label slow).
 */
#include "check.h"
#include "clock.h"
#include "digest.h"
#include "fileio.h"
#include "demo_fleet.h"
#include "fleet_sim.h"
#include "fleet_testutil.h"
#include "http_testutil.h"
#include "rollout.h"
#include "rollout_serve.h"
#include "rollout_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define S_DEFAULT_DEVICES 100
#else
#define S_DEFAULT_DEVICES 200
#endif

static char s_dir[256];
static uint8_t *s_v1, *s_v2, *s_man1;
static size_t s_l1, s_l2, s_lm1;
static uint8_t s_d1[32], s_d2[32];
static uint32_t s_n;

typedef struct {
    cnd_rollout_serve_opts_t o;
    volatile sig_atomic_t stop;
    int rc;
    pthread_t th;
    char epfile[300];
    char maddr[64]; /* the metrics endpoint (--metrics) */
    int mport;
} s_server_t;

static void *s_serve_main(void *arg)
{
    s_server_t *s = arg;
    s->rc = cnd_rollout_serve(&s->o, &s->stop, NULL);
    if (s->rc) fprintf(stderr, "serve: %s\n", cnd_err_detail());
    return NULL;
}

static void s_serve_start(s_server_t *s, const char *endpoint)
{
    memset(s, 0, sizeof *s);
    snprintf(s->epfile, sizeof s->epfile, "%s/ep", s_dir);
    unlink(s->epfile);
    s->o.dir = s_dir;
    s->o.endpoint = endpoint;
    s->o.endpoint_file = s->epfile;
    s->o.heartbeat_ms = 1000;
    s->o.offline_after_s = 10;
    s->mport = th_free_port();
    snprintf(s->maddr, sizeof s->maddr, "127.0.0.1:%d", s->mport);
    s->o.metrics = s->maddr;
    CHECK(pthread_create(&s->th, NULL, s_serve_main, s) == 0);
    for (int i = 0; i < 300 && !cnd_file_exists(s->epfile); i++) usleep(20000);
}

static void s_serve_stop(s_server_t *s)
{
    s->stop = 1;
    pthread_join(s->th, NULL);
    CHECK(s->rc == 0);
}

/* --- the fleet's progress, seen from the database ------------------------------------------- */

typedef struct {
    sqlite3 *db;
    int stage; /* 0: waiting for profiles, 1: rollout running, 2: over */
    const cnd_rollout_params_t *p;
    int64_t rollout;
    double deadline;
    int stop_after_wave; /* scenario 3: stop the coordinator once this wave started (-1: no) */
    s_server_t *srv;
    int restarted;
    int64_t stop_wave; /* the wave the rollout was in when the coordinator was stopped */
    char endpoint[128];
} s_watch_t;

static int64_t s_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

static int s_done(void *ctx, cnd_fleet_sim_t *sim)
{
    s_watch_t *w = ctx;
    if (cnd_now() > w->deadline) {
        fprintf(stderr, "scenario deadline passed at stage %d\n", w->stage);
        return 1;
    }
    if (w->stage == 0) {
        if (s_int(w->db, "SELECT count(*) FROM fleet_device WHERE profile_ms > 0") < s_n) return 0;
        cnd_rollout_dir_t d;
        CHECK(cnd_rollout_dir_open(&d, s_dir, 1) == 0);
        cnd_rollout_summary_t sum;
        CHECK(sqlite3_exec(d.db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == 0);
        int rc = cnd_rollout_create(d.state, d.audit, d.id, d.fpr, w->p, &sum);
        CHECK(rc == 0);
        CHECK(sqlite3_exec(d.db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) == 0);
        CHECK_EQ_INT(sum.targeted, s_n);
        w->rollout = sum.id;
        cnd_rollout_dir_close(&d);
        w->stage = 1;
        fprintf(stderr, "  rollout %lld created for %u devices\n", (long long)sum.id, sum.targeted);
        return 0;
    }
    char sql[200];
    if (w->stop_after_wave >= 0 && !w->restarted) {
        snprintf(sql, sizeof sql, "SELECT wave FROM rollout WHERE id = %lld",
                 (long long)w->rollout);
        if ((w->stop_wave = s_int(w->db, sql)) >= w->stop_after_wave) {
            fprintf(stderr, "  stopping the coordinator in wave %lld\n", (long long)w->stop_wave);
            s_serve_stop(w->srv);
            s_serve_start(w->srv, w->endpoint);
            w->restarted = 1;
        }
        return 0;
    }
    snprintf(sql, sizeof sql,
             "SELECT state IN ('completed', 'rolled_back') FROM rollout WHERE id = %lld",
             (long long)w->rollout);
    if (s_int(w->db, sql) != 1) return 0;
    for (uint32_t i = 0; i < cnd_fleet_sim_count(sim); i++) {
        cnd_edge_status_t es;
        cnd_fleet_sim_status(sim, i, &es);
        if (es.downloading && cnd_fleet_sim_fault(sim, i) != CND_EDGE_FAULT_HANG) return 0;
    }
    return 1;
}

static int s_count_rows(sqlite3 *db, int64_t id, const char *states)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM rollout_device WHERE rollout = %lld AND state IN (%s)",
             (long long)id, states);
    return (int)s_int(db, sql);
}

/* One scenario on a fresh coordinator directory. */
/* The server's Prometheus endpoint once the rollout is over: promtool accepts it, and it shows
 * the rollout's end state, every device healthy (healthy run), and traffic when want_bytes (the
 * counters are this server process's: after a restart, devices that had their chunks before it
 * fetch nothing, so a restart during the last wave can leave them at 0). */
static void s_check_metrics(s_server_t *srv, int want_abort, int want_bytes)
{
    static char resp[1 << 17];
    char want[160], path[300];
    snprintf(want, sizeof want, "condenser_rollout_devices{state=\"healthy\"} %u", s_n);
    int ok = 0;
    for (int i = 0; i < 30 && !ok; i++) { /* the live counters are copied once a second */
        if (i) usleep(200000);
        if (th_http(srv->mport, "GET", "/metrics", resp, sizeof resp) <= 0) continue;
        const char *k = strstr(th_body(resp), "\ncondenser_rollout_reports_total ");
        ok = k && atoi(k + strlen("\ncondenser_rollout_reports_total ")) > 0;
    }
    if (!ok) fprintf(stderr, "metrics:\n%s\n", resp);
    CHECK(ok);
    const char *b = th_body(resp);
    snprintf(path, sizeof path, "%s.metrics", s_dir);
    CHECK_EQ_INT(th_promtool(path, b), 0);
    CHECK(th_has(b, want_abort ? "condenser_rollouts{state=\"rolled_back\"} 1"
                               : "condenser_rollouts{state=\"completed\"} 1"));
    if (!want_abort) CHECK(th_has(b, want));
    snprintf(want, sizeof want, "condenser_fleet_devices{state=\"enrolled\"} %u", s_n);
    CHECK(th_has(b, want));
    CHECK(th_has(b, "\ncondenser_rollout_bytes_sent_total "));
    if (want_bytes) CHECK(!strstr(b, "condenser_rollout_bytes_sent_total 0\n"));
    CHECK(th_has(b, "condenser_database_bytes{file=\"db\"}"));
    CHECK(th_http(srv->mport, "GET", "/nope", resp, sizeof resp) > 0 && th_has(resp, " 404"));
    unlink(path);
    strcat(path, ".promtool");
    unlink(path);
}

static void s_scenario(const char *name, double fail_rate, const cnd_rollout_params_t *p,
                       int stop_after_wave, int want_abort)
{
    fprintf(stderr, "%s: %u devices, %.0f%% faulty\n", name, s_n, fail_rate * 100);
    double t0 = cnd_now();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    CHECK(cnd_rollout_dir_init(s_dir) == 0);
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, s_dir, 1) == 0);
    cnd_publish_opts_t o1 = {"fm", 1, NULL, NULL, -1, NULL, NULL, 0};
    cnd_publish_opts_t o2 = {"fm", 2, NULL, NULL, -1, NULL, NULL, 0};
    int64_t id;
    free(s_man1);
    s_man1 = NULL;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, s_v1, s_l1, &o1, &id, &s_man1, &s_lm1) ==
          0);
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, s_v2, s_l2, &o2, &id, NULL, NULL) == 0);
    uint8_t pk[32];
    memcpy(pk, cnd_identity_pk(d.id), 32);
    cnd_rollout_dir_close(&d);

    s_server_t srv;
    s_serve_start(&srv, "tcp://127.0.0.1:*");
    uint8_t *epb = NULL;
    size_t epl = 0;
    CHECK(cnd_file_read(srv.epfile, 200, &epb, &epl) == 0);
    s_watch_t w;
    memset(&w, 0, sizeof w);
    snprintf(w.endpoint, sizeof w.endpoint, "%s", epb ? (char *)epb : "");
    free(epb);
    cnd_fleet_sim_opts_t so;
    memset(&so, 0, sizeof so);
    so.endpoint = w.endpoint;
    memcpy(so.coordinator_pk, pk, 32);
    so.devices = so.count = s_n;
    so.seed = 7;
    so.fail_rate = fail_rate;
    so.fault = "mixed";
    so.model = "fm";
    so.initial = s_v1;
    so.initial_len = s_l1;
    so.initial_manifest = s_man1;
    so.initial_manifest_len = s_lm1;
    so.heartbeat_ms = 1000;
    cnd_fleet_sim_t *sim = NULL;
    CHECK(cnd_fleet_sim_new(&sim, &so) == 0);
    if (!sim) {
        fprintf(stderr, "fleet: %s\n", cnd_err_detail());
        s_serve_stop(&srv);
        return;
    }
    char path[400];
    snprintf(path, sizeof path, "%s/coordinator.db", s_dir);
    CHECK(sqlite3_open(path, &w.db) == 0);
    sqlite3_busy_timeout(w.db, 10000);
    CHECK(cnd_demo_fleet_enroll(sim, w.db, NULL, NULL) == 0);
    w.p = p;
    w.deadline = cnd_now() + 200;
    w.stop_after_wave = stop_after_wave;
    w.srv = &srv;
    CHECK(cnd_fleet_sim_run(sim, NULL, 0, s_done, &w) == 0);
    /* A wave began after the restart (the last wave is past the one stopped in): its devices
     * fetched their chunks from the restarted server. On a loaded machine the stop can come late
     * (this loop polls), in the last wave already. */
    char wq[200];
    snprintf(wq, sizeof wq, "SELECT wave FROM rollout WHERE id = %lld", (long long)w.rollout);
    s_check_metrics(&srv, want_abort, !w.restarted || s_int(w.db, wq) > w.stop_wave);
    s_serve_stop(&srv);

    /* Where the rollout ended. */
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT state = '%s' FROM rollout WHERE id = %lld",
             want_abort ? "rolled_back" : "completed", (long long)w.rollout);
    CHECK(s_int(w.db, sql) == 1);
    /* No device silently stuck: every row is in a final state. */
    CHECK_EQ_INT(s_count_rows(w.db, w.rollout, "'pending', 'offered', 'deferred', 'rollback_sent'"),
                 0);
    uint32_t on1 = 0, on2 = 0, faulty = 0;
    for (uint32_t i = 0; i < cnd_fleet_sim_count(sim); i++) {
        cnd_edge_status_t es;
        cnd_fleet_sim_status(sim, i, &es);
        CHECK(es.has_model);
        on1 += !memcmp(es.digest, s_d1, 32);
        on2 += !memcmp(es.digest, s_d2, 32);
        faulty += cnd_fleet_sim_fault(sim, i) != CND_EDGE_FAULT_NONE;
    }
    int64_t waves = s_int(w.db, "SELECT count(*) FROM audit_entry WHERE action = 'rollout.wave'");
    if (want_abort) {
        CHECK_EQ_INT(on1, s_n); /* everyone back on (or still on) the old model */
        CHECK(faulty > s_n / 10);
        int64_t aborted_wave = s_int(w.db, "SELECT json_extract(entry, '$.details.wave') FROM"
                                           " audit_entry WHERE action = 'rollout.wave' AND"
                                           " json_extract(entry, '$.details.state') = 'aborted'");
        CHECK(aborted_wave == 0 || aborted_wave == 1);
        /* Devices never offered were cancelled; every offered one confirmed or was reported. */
        CHECK(s_count_rows(w.db, w.rollout, "'cancelled'") > 0);
        CHECK(s_count_rows(w.db, w.rollout, "'rolled_back'") > 0);
        CHECK_EQ_INT(s_count_rows(w.db, w.rollout, "'healthy'"), 0);
        CHECK(s_int(w.db, "SELECT count(*) FROM audit_entry WHERE action = 'rollout.state' AND"
                          " json_extract(entry, '$.details.state') = 'rolled_back'") == 1);
        fprintf(stderr,
                "  aborted in wave %lld; %d rolled back, %d rollback timeouts, %d cancelled\n",
                (long long)aborted_wave, s_count_rows(w.db, w.rollout, "'rolled_back'"),
                s_count_rows(w.db, w.rollout, "'rollback_timeout'"),
                s_count_rows(w.db, w.rollout, "'cancelled'"));
    } else {
        CHECK_EQ_INT(on2, s_n);
        CHECK_EQ_INT(s_count_rows(w.db, w.rollout, "'healthy'"), s_n);
        snprintf(sql, sizeof sql, "SELECT wave + 1 FROM rollout WHERE id = %lld",
                 (long long)w.rollout);
        CHECK_EQ_INT(waves, s_int(w.db, sql));
        CHECK(s_int(w.db, "SELECT count(*) FROM audit_entry WHERE action = 'rollout.device'") >=
              s_n);
        if (stop_after_wave >= 0) CHECK(w.restarted);
    }
    fprintf(stderr, "  %s done in %.1f s (%lld wave entries)\n", name, cnd_now() - t0,
            (long long)waves);
    sqlite3_close(w.db);
    cnd_fleet_sim_destroy(&sim);
}

int main(void)
{
    const char *env = getenv("CND_FLEET_TEST_DEVICES");
    s_n = env ? (uint32_t)atoi(env) : S_DEFAULT_DEVICES;
    if (s_n < 20) s_n = 20;
    snprintf(s_dir, sizeof s_dir, "/tmp/cnd_test_rollout_%d", (int)getpid());
    CHECK(fleet_mkart(&s_v1, &s_l1, 1, 8, 1) == 0);
    CHECK(fleet_mkart(&s_v2, &s_l2, 1, 8, 2) == 0);
    CHECK(s_l2 > 100000 && s_l2 < 120000);
    cnd_sha256(s_d1, s_v1, s_l1);
    cnd_sha256(s_d2, s_v2, s_l2);
    uint32_t canary = s_n / 20, rate = s_n / 10;
    cnd_rollout_params_t healthy = {"fm@2", "fleet=sim", canary, rate, 2.0, 10,
                                    10,     60,          NULL,   0,    0,   0};
    s_scenario("healthy fleet", 0, &healthy, -1, 0);
    cnd_rollout_params_t faulty = {"fm@2", "", canary, rate, 2.0, 10, 10, 3, NULL, 0, 0, 0};
    s_scenario("20% faulty", 0.2, &faulty, -1, 1);
    s_scenario("coordinator restart", 0, &healthy, 2, 0);
    free(s_v1);
    free(s_v2);
    free(s_man1);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_result("test_rollout");
}
