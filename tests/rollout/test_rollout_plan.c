/*
 * test_rollout_plan.c: rollout creation without sockets: selection by labels, the best fitting
 * variant per device (class, flash next to the running model, RAM, latency budget), canary and
 * exponential wave sizes, devices already current or unfit, operator state changes and their
 * refusals, and the audit entries (rollout.create, artifact.sign, rollout.state); the per-wave
 * tally (cnd_rollout_waves) that `rollout show` and `condenser demo` print; fleet counts; the
 * table between state enums and the names the database keeps (unchanged, and a row with an
 * unknown name refused).
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
#include <unistd.h>

static int64_t s_publish(cnd_rollout_dir_t *d, const uint8_t *a, size_t n, const char *model,
                         uint64_t ver, const char *variant, const char *classes, const char *lat)
{
    cnd_publish_opts_t o = {model, ver, variant, classes, -1, lat, "7", 0};
    int64_t id = 0;
    int rc = cnd_registry_publish(d->db, d->audit, d->id, d->fpr, a, n, &o, &id, NULL, NULL);
    if (rc) fprintf(stderr, "publish: %s\n", cnd_err_detail());
    CHECK(rc == 0);
    return id;
}

static void s_device(cnd_rollout_dir_t *d, const char *name, const char *hw, const char *cpu,
                     uint64_t ram, uint64_t flash, uint32_t budget, const char *ward,
                     const uint8_t *running)
{
    cnd_identity_t *id = NULL;
    CHECK(cnd_identity_generate(&id) == 0);
    CHECK(cnd_fleet_enroll(d->db, name, cnd_identity_pk(id)) == 0);
    cnd_identity_destroy(&id);
    cnd_fleet_device_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.name, sizeof f.name, "%s", name);
    snprintf(f.hw, sizeof f.hw, "%s", hw);
    snprintf(f.cpu, sizeof f.cpu, "%s", cpu);
    f.ram = ram;
    f.flash = flash;
    f.budget_us = budget;
    f.n_labels = 2;
    snprintf(f.labels[0].key, sizeof f.labels[0].key, "site");
    snprintf(f.labels[0].value, sizeof f.labels[0].value, "north");
    snprintf(f.labels[1].key, sizeof f.labels[1].key, "ward");
    snprintf(f.labels[1].value, sizeof f.labels[1].value, "%s", ward);
    if (running) {
        f.has_running = 1;
        memcpy(f.running_digest, running, 32);
    }
    f.profile_ms = 1;
    CHECK(cnd_fleet_put_profile(d->db, &f) == 0);
}

static const cnd_rdevice_t *s_find(const cnd_rdevice_t *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].device, name)) return &v[i];
    return NULL;
}

static int s_count_action(cnd_rollout_dir_t *d, const char *action)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM audit_entry WHERE action = ?1", -1, &st,
                           NULL) == 0) {
        sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return n;
}

/* cnd_rollout_waves against counts made by hand: rows out of order, every state class. */
static void s_test_waves(void)
{
    static const struct {
        uint32_t wave;
        cnd_rdevice_state_t state;
        int64_t offered, updated;
    } rows[] = {{2, CND_RDEV_HEALTHY, 300, 390}, {0, CND_RDEV_HEALTHY, 100, 150},
                {1, CND_RDEV_FAILED, 200, 260},  {2, CND_RDEV_REFUSED, 310, 320},
                {1, CND_RDEV_TIMEOUT, 210, 900}, {2, CND_RDEV_DEFERRED, 0, 330},
                {2, CND_RDEV_OFFERED, 305, 305}, {1, CND_RDEV_ROLLED_BACK, 205, 950},
                {2, CND_RDEV_SKIPPED, 0, 10},    {2, CND_RDEV_ROLLBACK_SENT, 340, 400}};
    size_t n = sizeof rows / sizeof rows[0];
    cnd_rdevice_t dv[10];
    memset(dv, 0, sizeof dv);
    for (size_t i = 0; i < n; i++) {
        dv[i].wave = rows[i].wave;
        dv[i].state = rows[i].state;
        snprintf(dv[i].device, sizeof dv[i].device, "d%zu", i);
        dv[i].offered_ms = rows[i].offered;
        dv[i].updated_ms = rows[i].updated;
    }
    cnd_rollout_wave_t *w = NULL;
    uint32_t nw = 0;
    CHECK(cnd_rollout_waves(&w, &nw, dv, n) == 0);
    CHECK(nw == 3);
    if (w && nw == 3) {
        CHECK(w[0].devices == 1 && w[0].healthy == 1 && w[0].first_offer_ms == 100 &&
              w[0].last_update_ms == 150);
        CHECK(w[1].devices == 3 && w[1].failed == 1 && w[1].timed_out == 1 &&
              w[1].rolled_back == 1 && w[1].healthy == 0);
        CHECK(w[1].first_offer_ms == 200 && w[1].last_update_ms == 950);
        CHECK(w[2].devices == 6 && w[2].healthy == 1 && w[2].failed == 1 && w[2].deferred == 1 &&
              w[2].open == 2 && w[2].other == 1);
        /* rows never offered (deferred, skipped) do not count for the wave's time */
        CHECK(w[2].first_offer_ms == 300 && w[2].last_update_ms == 400);
    }
    free(w);
    CHECK(cnd_rollout_waves(&w, &nw, dv, 0) == 0 && w == NULL && nw == 0);
    dv[3].wave = 10; /* more waves than devices: not from the engine */
    CHECK(cnd_rollout_waves(&w, &nw, dv, n) == CND_ECORRUPT && w == NULL);
}

/* The names are the database's and the audit log's vocabulary: written out here independently of
 * the table, every enum value maps to its name and back, and nothing else parses. */
static void s_test_state_names(void)
{
    static const char *rollout[] = {"running",   "paused",       "aborted",
                                    "completed", "rolling_back", "rolled_back"};
    static const char *device[] = {"pending",         "deferred",         "offered",
                                   "healthy",         "failed",           "refused",
                                   "timeout",         "current",          "skipped",
                                   "cancelled",       "rollback_sent",    "rolled_back",
                                   "rollback_failed", "rollback_timeout", "rollback_unavailable"};
    CHECK_EQ_INT(sizeof rollout / sizeof rollout[0], CND_ROLLOUT_STATES);
    CHECK_EQ_INT(sizeof device / sizeof device[0], CND_RDEV_STATES);
    unsigned seen = 0;
    for (size_t i = 0; i < sizeof rollout / sizeof rollout[0]; i++) {
        cnd_rollout_state_t s = CND_ROLLOUT_STATES;
        CHECK(cnd_rollout_state_parse(&s, rollout[i]) == 0);
        CHECK(strcmp(cnd_rollout_state_name(s), rollout[i]) == 0);
        seen |= 1u << s;
    }
    CHECK_EQ_INT(seen, (1u << CND_ROLLOUT_STATES) - 1);
    seen = 0;
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++) {
        cnd_rdevice_state_t s = CND_RDEV_STATES;
        CHECK(cnd_rdevice_state_parse(&s, device[i]) == 0);
        CHECK(strcmp(cnd_rdevice_state_name(s), device[i]) == 0);
        /* over for the device: everything but waiting, offered and a rollback on its way */
        CHECK(cnd_rdevice_terminal(s) == !(s == CND_RDEV_PENDING || s == CND_RDEV_DEFERRED ||
                                           s == CND_RDEV_OFFERED || s == CND_RDEV_ROLLBACK_SENT));
        seen |= 1u << s;
    }
    CHECK_EQ_INT(seen, (1u << CND_RDEV_STATES) - 1);
    cnd_rollout_state_t rs;
    cnd_rdevice_state_t ds;
    CHECK(cnd_rollout_state_parse(&rs, "Running") == CND_EINVAL);
    CHECK(cnd_rollout_state_parse(&rs, "") == CND_EINVAL);
    CHECK(cnd_rdevice_state_parse(&ds, "rollback_") == CND_EINVAL);
    CHECK(strcmp(cnd_rollout_state_name((cnd_rollout_state_t)99), "?") == 0);
    CHECK(strcmp(cnd_rdevice_state_name((cnd_rdevice_state_t)-1), "?") == 0);
    CHECK(cnd_rollout_live(CND_ROLLOUT_RUNNING) && cnd_rollout_live(CND_ROLLOUT_PAUSED) &&
          cnd_rollout_live(CND_ROLLOUT_ROLLING_BACK) && !cnd_rollout_live(CND_ROLLOUT_COMPLETED) &&
          !cnd_rollout_live(CND_ROLLOUT_ABORTED) && !cnd_rollout_live(CND_ROLLOUT_ROLLED_BACK));
}

int main(void)
{
    s_test_waves();
    s_test_state_names();
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/cnd_test_rollout_plan_%d", (int)getpid());
    CHECK(cnd_rollout_dir_init(dir) == 0);
    cnd_rollout_dir_t d;
    CHECK(cnd_rollout_dir_open(&d, dir, 1) == 0);
    uint8_t *v1, *v2, *v2w4;
    size_t l1, l2, l2w4;
    CHECK(fleet_mkart(&v1, &l1, 1, 8, 1) == 0);
    CHECK(fleet_mkart(&v2, &l2, 1, 8, 2) == 0);
    CHECK(fleet_mkart(&v2w4, &l2w4, 1, 4, 2) == 0);
    CHECK(l2w4 < l2 / 1.5);
    uint8_t d1[32], d2[32];
    cnd_sha256(d1, v1, l1);
    cnd_sha256(d2, v2, l2);
    s_publish(&d, v1, l1, "fm", 1, NULL, "", NULL);
    int64_t a8 = s_publish(&d, v2, l2, "fm", 2, "int8", "gw,monitor", "x86-64=50");
    int64_t a4 = s_publish(&d, v2w4, l2w4, "fm", 2, "w4a8", "gw,monitor,mcu", "x86-64=3");
    /* The same bytes twice are refused; a broken artifact is refused. */
    cnd_publish_opts_t po = {"fm", 3, NULL, NULL, -1, NULL, NULL, 0};
    int64_t aid;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, v2, l2, &po, &aid, NULL, NULL) ==
          CND_EEXIST);
    v1[100] ^= 1;
    CHECK(cnd_registry_publish(d.db, d.audit, d.id, d.fpr, v1, l1, &po, &aid, NULL, NULL) != 0);
    v1[100] ^= 1;

    uint64_t big = 64u << 20;
    /* 20 plain gateways: int8 (8 weight bits beat 4 when no accuracy is known). */
    for (int i = 0; i < 20; i++) {
        char n[32];
        snprintf(n, sizeof n, "gw-%02d", i);
        s_device(&d, n, "gw", "x86-64", big, big, 0, i < 10 ? "3" : "4", d1);
    }
    s_device(&d, "small-flash", "gw", "x86-64", big, l2 + l1 - 1, 0, "3", d1); /* w4a8 only */
    s_device(&d, "tiny-ram", "gw", "x86-64", 20000, big, 0, "3", d1);          /* nothing */
    s_device(&d, "fast", "monitor", "x86-64", big, big, 10, "3", d1);          /* 10 us: w4a8 */
    s_device(&d, "mcu", "mcu", "cortex-m4", big, big, 0, "3", d1);             /* w4a8 class */
    s_device(&d, "arm", "bedside-arm", "a53", big, big, 0, "3", d1);           /* no class */
    s_device(&d, "current", "gw", "x86-64", big, big, 0, "3", d2);             /* runs int8 v2 */
    s_device(&d, "south", "gw", "x86-64", big, big, 0, "3", d1);
    {
        /* Label mismatch: site=south. */
        cnd_fleet_device_t f;
        CHECK(cnd_fleet_get(d.db, "south", &f) == 0);
        snprintf(f.labels[0].value, sizeof f.labels[0].value, "south");
        CHECK(cnd_fleet_put_profile(d.db, &f) == 0);
    }
    int signs0 = s_count_action(&d, "artifact.sign");
    cnd_rollout_params_t p = {"fm@2", "site=north,ward=3|4", 2, 3, 2.0, 10, 5, 60, NULL, 0, 0, 0};
    cnd_rollout_summary_t sum;
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &p, &sum) == 0);
    CHECK_EQ_INT(sum.selected, 26);
    CHECK_EQ_INT(sum.current, 1);
    CHECK_EQ_INT(sum.unfit, 2);
    CHECK_EQ_INT(sum.targeted, 23);
    /* 23 targets: canary 2, then 3, 6, 12 (the last wave takes the remaining 12). */
    CHECK_EQ_INT(sum.waves, 4);
    CHECK_EQ_INT(s_count_action(&d, "artifact.sign") - signs0, 2); /* one per variant used */
    CHECK_EQ_INT(s_count_action(&d, "rollout.create"), 1);
    cnd_rdevice_t *rows = NULL;
    size_t n = 0;
    CHECK(cnd_rstore_devices(d.db, sum.id, &rows, &n) == 0);
    CHECK_EQ_INT(n, 26);
    const cnd_rdevice_t *x;
    CHECK((x = s_find(rows, n, "gw-00")) && x->artifact == a8 && x->state == CND_RDEV_PENDING);
    CHECK((x = s_find(rows, n, "small-flash")) && x->artifact == a4);
    CHECK((x = s_find(rows, n, "fast")) && x->artifact == a4);
    CHECK((x = s_find(rows, n, "mcu")) && x->artifact == a4);
    CHECK((x = s_find(rows, n, "tiny-ram")) && x->state == CND_RDEV_SKIPPED &&
          strstr(x->reason, "RAM"));
    CHECK((x = s_find(rows, n, "arm")) && x->state == CND_RDEV_SKIPPED &&
          strstr(x->reason, "classes"));
    CHECK((x = s_find(rows, n, "current")) && x->state == CND_RDEV_CURRENT);
    CHECK(s_find(rows, n, "south") == NULL);
    uint32_t per_wave[8] = {0};
    for (size_t i = 0; i < n; i++)
        if (rows[i].state == CND_RDEV_PENDING && rows[i].wave < 8) per_wave[rows[i].wave]++;
    CHECK_EQ_INT(per_wave[0], 2);
    CHECK_EQ_INT(per_wave[1], 3);
    CHECK_EQ_INT(per_wave[2], 6);
    CHECK_EQ_INT(per_wave[3], 12);
    free(rows);
    /* A second rollout skips the devices of the live one. */
    cnd_rollout_params_t p2 = p;
    p2.select = "";
    cnd_rollout_summary_t s2;
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &p2, &s2) == 0);
    CHECK_EQ_INT(s2.busy, 23);
    /* A host's own enrollment: ensure is idempotent and refuses a second key for a name. */
    {
        cnd_identity_t *a = NULL, *b = NULL;
        CHECK(cnd_identity_generate(&a) == 0 && cnd_identity_generate(&b) == 0);
        CHECK(cnd_fleet_ensure(d.db, "hosted", cnd_identity_pk(a)) == 0);
        CHECK(cnd_fleet_ensure(d.db, "hosted", cnd_identity_pk(a)) == 0);
        CHECK(cnd_fleet_ensure(d.db, "hosted", cnd_identity_pk(b)) == CND_EEXIST);
        cnd_identity_destroy(&a);
        cnd_identity_destroy(&b);
    }
    /* Operator actions and their refusals. */
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "resume", NULL) == CND_ESTATE);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "pause", "night") == 0);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "pause", NULL) == CND_ESTATE);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "resume", NULL) == 0);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "rollback", "bad model") == 0);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "abort", NULL) == CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "is rolling_back: nothing to abort") != NULL);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "rollback", NULL) ==
          CND_ESTATE);
    CHECK(strstr(cnd_err_detail(), "is rolling_back already") != NULL);
    CHECK(cnd_rollout_admin(d.state, d.audit, "local:test", sum.id, "restart", NULL) == CND_EINVAL);
    cnd_rollout_rec_t r;
    CHECK(cnd_rstore_rollout_get(d.db, sum.id, &r) == 0 && r.state == CND_ROLLOUT_ROLLING_BACK);
    CHECK_EQ_INT(s_count_action(&d, "rollout.state"), 3);
    /* Bad parameters. */
    cnd_rollout_params_t bad = p;
    bad.window = "25:00-01:00";
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &bad, &s2) == CND_EINVAL);
    bad = p;
    bad.model_version = "fm@9";
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &bad, &s2) == CND_ENOTFOUND);
    bad = p;
    bad.select = "site";
    CHECK(cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &bad, &s2) == CND_EINVAL);
    {
        /* cnd_fleet_count: the 27 devices of s_device sent a profile, "hosted" (ensure) and a
         * newly enrolled one have not */
        uint64_t en = 0, pr = 0, en2 = 0, pr2 = 0;
        CHECK(cnd_fleet_count(d.db, &en, &pr) == 0);
        CHECK(en == 28 && pr == 27);
        cnd_identity_t *nid = NULL;
        CHECK(cnd_identity_generate(&nid) == 0);
        CHECK(cnd_fleet_enroll(d.db, "no-profile-yet", cnd_identity_pk(nid)) == 0);
        cnd_identity_destroy(&nid);
        CHECK(cnd_fleet_count(d.db, &en2, &pr2) == 0);
        CHECK(en2 == en + 1 && pr2 == pr);
    }
    {
        /* A state name the table does not know is a corrupt row, not a guess. */
        CHECK(sqlite3_exec(d.db, "UPDATE rollout SET state = 'runing' WHERE id = 1", NULL, NULL,
                           NULL) == SQLITE_OK);
        cnd_rollout_rec_t bad_r;
        CHECK(cnd_rstore_rollout_get(d.db, 1, &bad_r) == CND_ECORRUPT);
        CHECK(strstr(cnd_err_detail(), "unknown state 'runing'") != NULL);
        cnd_rollout_rec_t *all = NULL;
        size_t na = 0;
        CHECK(cnd_rstore_rollouts(d.db, &all, &na) == CND_ECORRUPT && all == NULL && na == 0);
        CHECK(sqlite3_exec(d.db,
                           "UPDATE rollout_device SET state = 'healthy ' WHERE rollout = 2 AND"
                           " device = 'gw-00'",
                           NULL, NULL, NULL) == SQLITE_OK);
        cnd_rdevice_t *dv = NULL;
        CHECK(cnd_rstore_devices(d.db, 2, &dv, &n) == CND_ECORRUPT && dv == NULL);
        CHECK(strstr(cnd_err_detail(), "device gw-00: unknown state 'healthy '") != NULL);
    }
    cnd_rollout_dir_close(&d);
    free(v1);
    free(v2);
    free(v2w4);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_result("test_rollout_plan");
}
