/*
 * test_rollout_engine.c: the rollout engine driven directly (no sockets): messages in, the
 * messages it would send captured, time passed explicitly to the tick. Checks what the end to
 * end test cannot pin down: no offer outside the time window or while paused; at most
 * max_active devices in flight; a device that never answers times out and counts as a failure
 * (abort after the minimum); a chunk request for an artifact not offered to that device is
 * refused; a device that comes online later joins; reports for another rollout are ignored.
 */
#include "check.h"
#include "digest.h"
#include "fleet_registry.h"
#include "fleet_testutil.h"
#include "rollout.h"
#include "rollout_serve.h"
#include "rollout_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int offers, rollbacks, chunks;
    char last[64];
} s_cap_t;

static int s_send(void *ctx, const char *device, Condenser__MsgType t, void *p)
{
    (void)p;
    s_cap_t *c = ctx;
    snprintf(c->last, sizeof c->last, "%s", device);
    if (t == CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER) c->offers++;
    if (t == CONDENSER__MSG_TYPE__MSG_ROLLBACK) c->rollbacks++;
    if (t == CONDENSER__MSG_TYPE__MSG_CHUNK) c->chunks++;
    return 0;
}

static int s_commit(void *ctx)
{
    (void)ctx;
    return 0;
}

static uint8_t s_d1[32], s_d2[32];

static void s_profile(cnd_rollout_engine_t *e, const char *name, const uint8_t running[32])
{
    Condenser__DeviceProfile p;
    condenser__device_profile__init(&p);
    Condenser__Label l;
    condenser__label__init(&l);
    l.key = cnd_proto_str("site");
    l.value = cnd_proto_str("north");
    Condenser__Label *lp = &l;
    p.labels = &lp;
    p.n_labels = 1;
    p.hardware_class = cnd_proto_str("gw");
    p.cpu_class = cnd_proto_str("x86-64");
    p.ram_bytes = 64u << 20;
    p.flash_bytes = 64u << 20;
    p.running_digest = cnd_proto_bytes(running, 32);
    p.running_sequence = 1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE, &p, 0, 0, name, 1);
    cnd_proto_reject_t rej;
    CHECK(cnd_rollout_on_message(e, name, NULL, &env, &rej) == 0);
}

static void s_report(cnd_rollout_engine_t *e, const char *name, uint64_t rollout,
                     Condenser__ActivationState st)
{
    Condenser__ActivationReport r;
    condenser__activation_report__init(&r);
    r.rollout_id = rollout;
    r.artifact_digest = cnd_proto_bytes(s_d2, 32);
    r.state = st;
    r.reason = cnd_proto_str(st == CONDENSER__ACTIVATION_STATE__ACT_HEALTHY ? "" : "self-test: x");
    r.self_test_passed = st == CONDENSER__ACTIVATION_STATE__ACT_HEALTHY;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT, &r, 0, 0, name, 2);
    cnd_proto_reject_t rej;
    CHECK(cnd_rollout_on_message(e, name, NULL, &env, &rej) == 0);
}

static int s_rows(sqlite3 *db, int64_t id, const char *state)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM rollout_device WHERE rollout = ?1 AND state = ?2",
                           -1, &st, NULL) == 0) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return n;
}

int main(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/cnd_test_rollout_engine_%d", (int)getpid());
    CHECK(cnd_rollout_dir_init(dir) == 0);
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, dir, 1) == 0);
    uint8_t *v1, *v2;
    size_t l1, l2;
    CHECK(fleet_mkart(&v1, &l1, 0, 8, 1) == 0);
    CHECK(fleet_mkart(&v2, &l2, 0, 8, 2) == 0);
    cnd_sha256(s_d1, v1, l1);
    cnd_sha256(s_d2, v2, l2);
    cnd_publish_opts_t o1 = {"fm", 1, NULL, NULL, -1, NULL, NULL, 0};
    cnd_publish_opts_t o2 = {"fm", 2, NULL, NULL, -1, NULL, NULL, 0};
    int64_t aid;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, v1, l1, &o1, &aid, NULL, NULL) == 0);
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, v2, l2, &o2, &aid, NULL, NULL) == 0);
    char names[12][16];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "dev-%02d", i);
        cnd_identity_t *id = NULL;
        CHECK(cnd_identity_generate(&id) == 0);
        CHECK(cnd_fleet_enroll(d.db, names[i], cnd_identity_pk(id)) == 0);
        cnd_identity_destroy(&id);
    }
    s_cap_t cap;
    memset(&cap, 0, sizeof cap);
    cnd_rollout_io_t io = {&cap, s_send, s_commit, NULL};
    cnd_rollout_engine_opts_t eo = {3600, 1};
    cnd_rollout_engine_t *e = NULL;
    CHECK(cnd_rollout_engine_new(&e, d.state, d.audit, d.id, &io, &eo) == 0);
    if (!e) return check_result("test_rollout_engine");
    for (int i = 0; i < 10; i++) s_profile(e, names[i], s_d1);

    /* A window that excludes now: no offers. */
    time_t now = time(NULL);
    int m = (int)((now / 60) % 1440);
    char win[16];
    snprintf(win, sizeof win, "%02d:%02d-%02d:%02d", ((m + 60) % 1440) / 60, (m + 60) % 60,
             ((m + 120) % 1440) / 60, (m + 120) % 60);
    cnd_rollout_params_t p = {"fm@2", "site=north", 2, 3, 2.0, 30, 4, 60, win, 0, 2, 0};
    cnd_rollout_summary_t sum;
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &p, &sum) == 0);
    CHECK_EQ_INT(sum.targeted, 10);
    int64_t t = (int64_t)now * 1000;
    cnd_rollout_tick(e, t + 10);
    cnd_rollout_tick(e, t + 20);
    CHECK_EQ_INT(cap.offers, 0);
    /* Window open (a second rollout would be refused for the busy devices, so move the window
     * by editing the row, as a migration would): offers go to the canary, at most max_active. */
    CHECK(sqlite3_exec(d.db, "UPDATE rollout SET win_start = -1, win_end = -1", NULL, NULL, NULL) ==
          0);
    cnd_rollout_engine_destroy(&e);
    CHECK(cnd_rollout_engine_new(&e, d.state, d.audit, d.id, &io, &eo) == 0);
    for (int i = 0; i < 10; i++) s_profile(e, names[i], s_d1);
    cnd_rollout_tick(e, t + 30);
    CHECK_EQ_INT(cap.offers, 2); /* canary of 2 (max_active 2 as well) */
    CHECK_EQ_INT(s_rows(d.db, sum.id, "offered"), 2);
    /* Pause: no new offers even as the canary finishes. */
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "pause", NULL) == 0);
    cnd_rollout_tick(e, t + 40);
    sqlite3_stmt *st;
    char offered[2][64];
    int no = 0;
    CHECK(sqlite3_prepare_v2(d.db, "SELECT device FROM rollout_device WHERE state = 'offered'", -1,
                             &st, NULL) == 0);
    while (sqlite3_step(st) == SQLITE_ROW && no < 2)
        snprintf(offered[no++], 64, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    CHECK_EQ_INT(no, 2);
    /* Chunk request for an artifact it was not offered (v1): refused. */
    Condenser__ArtifactChunkRequest q;
    condenser__artifact_chunk_request__init(&q);
    q.artifact_digest = cnd_proto_bytes(s_d1, 32);
    q.offset = 0;
    q.length = (uint32_t)l1;
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST, &q, 0, 0,
                            offered[0], 3);
    cnd_proto_reject_t rej;
    CHECK(cnd_rollout_on_message(e, offered[0], NULL, &env, &rej) != 0);
    CHECK_EQ_INT(rej.code, CONDENSER__ERROR_CODE__ERR_BAD_FIELD);
    /* ... and for v2 in its exact chunk: served. */
    q.artifact_digest = cnd_proto_bytes(s_d2, 32);
    q.length = (uint32_t)(l2 < 65536 ? l2 : 65536);
    CHECK(cnd_rollout_on_message(e, offered[0], NULL, &env, &rej) == 0);
    CHECK_EQ_INT(cap.chunks, 1);
    /* A report for another rollout id changes nothing. */
    s_report(e, offered[0], (uint64_t)sum.id + 7, CONDENSER__ACTIVATION_STATE__ACT_HEALTHY);
    CHECK_EQ_INT(s_rows(d.db, sum.id, "offered"), 2);
    s_report(e, offered[0], (uint64_t)sum.id, CONDENSER__ACTIVATION_STATE__ACT_HEALTHY);
    cnd_rollout_tick(e, t + 50);
    CHECK_EQ_INT(cap.offers, 2); /* paused */
    CHECK_EQ_INT(s_rows(d.db, sum.id, "healthy"), 1);
    /* The other canary device never answers: after the timeout it failed. */
    cnd_rollout_tick(e, t + 61 * 1000);
    CHECK_EQ_INT(s_rows(d.db, sum.id, "timeout"), 1);
    /* Resume: wave 1 (3 devices), 2 at a time. */
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "resume", NULL) == 0);
    cnd_rollout_tick(e, t + 62 * 1000); /* the canary wave is logged and wave 1 starts */
    cnd_rollout_tick(e, t + 62 * 1000 + 10);
    CHECK_EQ_INT(cap.offers, 4);
    CHECK_EQ_INT(s_rows(d.db, sum.id, "offered"), 2);
    /* Two failures: 3 of 4 finished failed (> 30% after 4): abort and roll back. */
    CHECK(sqlite3_prepare_v2(d.db, "SELECT device FROM rollout_device WHERE state = 'offered'", -1,
                             &st, NULL) == 0);
    no = 0;
    while (sqlite3_step(st) == SQLITE_ROW && no < 2)
        snprintf(offered[no++], 64, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    s_report(e, offered[0], (uint64_t)sum.id, CONDENSER__ACTIVATION_STATE__ACT_FAILED);
    s_report(e, offered[1], (uint64_t)sum.id, CONDENSER__ACTIVATION_STATE__ACT_FAILED);
    cnd_rollout_tick(e, t + 63 * 1000);
    cnd_rollout_rec_t r;
    CHECK(cnd_rstore_rollout_get(d.db, sum.id, &r) == 0 && r.state == CND_ROLLOUT_ROLLING_BACK);
    if (r.state != CND_ROLLOUT_ROLLING_BACK)
        fprintf(stderr, "state %s\n", cnd_rollout_state_name(r.state));
    CHECK(strstr(r.reason, "3 of 4") != NULL);
    CHECK_EQ_INT(cap.rollbacks, 4); /* healthy, timed out and the two failed */
    CHECK_EQ_INT(s_rows(d.db, sum.id, "cancelled"), 6);
    /* A device that comes online now does not join a rollout that is rolling back. */
    s_profile(e, names[10], s_d1);
    cnd_rollout_tick(e, t + 64 * 1000);
    CHECK_EQ_INT(cap.offers, 4);
    cnd_rollout_engine_destroy(&e);
    cnd_rollout_dir_close(&d);
    free(v1);
    free(v2);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_result("test_rollout_engine");
}
