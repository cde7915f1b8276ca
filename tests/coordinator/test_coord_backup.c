/*
 * test_coord_backup.c: `condenser coordinator backup|restore` beside a running federation.
 *   - Backups taken again and again while a 3-site job runs (real coordinator and agents on
 *     loopback) all succeed, and each one's audit log verifies with `condenser audit verify`.
 *   - A restore while the coordinator runs is refused; so is a coordinator start while a restore
 *     holds the directory.
 *   - Refused backups change nothing: a truncated file, one with bytes flipped (each with the good
 *     backup's signature beside it), one without its signature, a text file, a missing file, a
 *     backup of ANOTHER coordinator (signed by its key, not this one's).
 *   - A mid-job backup restored after the job completed: the restored database is the backup's
 *     (job running again, fewer audit entries), its log verifies and records the restore, and
 *     the database it replaced is kept beside it, whole (job completed, log verifies).
 */
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"
#include "fileio.h"

#include <sqlite3.h>
#include <string.h>

static int s_contains(const char *path, const char *needle)
{
    uint8_t *t = NULL;
    size_t n = 0;
    if (cnd_file_read(path, 1 << 24, &t, &n)) return 0;
    int r = strstr((const char *)t, needle) != NULL;
    free(t);
    return r;
}

/* SELECT count(*) ... as an integer (-1 on error). */
static long s_count(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    long r = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            r = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return r;
}

static const char *s_job_state_of(const char *db, char *out, size_t cap)
{
    cnd_cstore_t *s = NULL;
    cnd_job_rec_t j;
    snprintf(out, cap, "?");
    if (cnd_cstore_open_readonly(&s, db) == 0 && cnd_cstore_job_get(s, 1, &j) == 0) {
        snprintf(out, cap, "%s", j.state);
        cnd_job_rec_free(&j);
    }
    cnd_cstore_close(&s);
    return out;
}

static int s_verify(fx_fed_t *f, const char *db)
{
    char log[400], pub[400];
    fx_path(log, sizeof log, f->root, "verify.log");
    fx_path(pub, sizeof pub, f->coord, "identity.pub");
    const char *a[] = {"audit", "verify", db, "--key", pub, NULL};
    return fx_run(log, a);
}

/* `coordinator restore --from file`: exit status; the output appended to root/restore.log. */
static int s_restore(fx_fed_t *f, const char *file)
{
    char log[400];
    fx_path(log, sizeof log, f->root, "restore.log");
    const char *a[] = {"coordinator", "restore", "--dir", f->coord, "--from", file, NULL};
    return fx_run(log, a);
}

static void s_copy_file(const char *from, const char *to, size_t keep, long flip_at)
{
    uint8_t *t = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_file_read(from, 1 << 28, &t, &n), 0);
    if (!t) return;
    if (keep && keep < n) n = keep;
    if (flip_at >= 0 && (size_t)flip_at + 64 < n)
        for (size_t i = 0; i < 64; i++) t[flip_at + (long)i] ^= 0x5a;
    CHECK_EQ_INT(cnd_file_write_atomic(to, t, n, 0600), 0);
    free(t);
}

/* Hostile or foreign backups are refused, and the live database does not change. */
static void s_refusals(fx_fed_t *f, const char *good)
{
    char live[400], bad[400], other[400], ca[400], log[400], text[400];
    fx_path(live, sizeof live, f->coord, "coordinator.db");
    long entries = s_count(live, "SELECT count(*) FROM audit_entry");
    CHECK(entries > 0);
    uint8_t *t = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_file_read(good, 1 << 28, &t, &n), 0);
    free(t);
    char gsig[420], bsig[420];
    snprintf(gsig, sizeof gsig, "%s.sig", good);
    fx_path(bad, sizeof bad, f->root, "truncated.db");
    s_copy_file(good, bad, n / 2, -1);
    snprintf(bsig, sizeof bsig, "%s.sig", bad);
    s_copy_file(gsig, bsig, 0, -1);
    CHECK(s_restore(f, bad) != 0);
    /* 64 bytes flipped near the end: inside a page that integrity_check alone does not see. */
    fx_path(bad, sizeof bad, f->root, "flipped.db");
    s_copy_file(good, bad, 0, (long)n - 3000);
    snprintf(bsig, sizeof bsig, "%s.sig", bad);
    s_copy_file(gsig, bsig, 0, -1);
    CHECK(s_restore(f, bad) != 0);
    /* The good backup without its signature. */
    fx_path(bad, sizeof bad, f->root, "unsigned.db");
    s_copy_file(good, bad, 0, -1);
    CHECK(s_restore(f, bad) != 0);
    fx_path(text, sizeof text, f->root, "notes.txt");
    CHECK_EQ_INT(cnd_file_write_atomic(text, "not a database\n", 15, 0600), 0);
    CHECK(s_restore(f, text) != 0);
    fx_path(bad, sizeof bad, f->root, "missing.db");
    CHECK(s_restore(f, bad) != 0);
    /* A backup of another coordinator (same CA): its log verifies only with its own key. */
    fx_path(other, sizeof other, f->root, "other");
    fx_path(ca, sizeof ca, f->root, "ca");
    fx_path(log, sizeof log, f->root, "setup.log");
    const char *init[] = {"coordinator", "init", "--dir", other, "--ca", ca, NULL};
    CHECK_EQ_INT(fx_run(log, init), 0);
    char obk[400];
    fx_path(obk, sizeof obk, f->root, "other-backup.db");
    const char *ob[] = {"coordinator", "backup", "--dir", other, "--out", obk, NULL};
    CHECK_EQ_INT(fx_run(log, ob), 0);
    CHECK(s_restore(f, obk) != 0);
    char rlog[400];
    fx_path(rlog, sizeof rlog, f->root, "restore.log");
    CHECK(s_contains(rlog, "not signed by this coordinator's key"));
    CHECK(s_contains(rlog, "the backup was changed or damaged since it was made"));
    CHECK(s_contains(rlog, "no signature file"));
    CHECK(s_contains(rlog, "missing.db: no such backup file"));
    /* Nothing changed: same audit log, no saved copy made. */
    CHECK_EQ_INT(s_count(live, "SELECT count(*) FROM audit_entry"), entries);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q pre-restore", f->coord);
    CHECK(system(cmd) != 0);
}

/* Backups every 300 ms while the job runs; returns how many were taken while it ran. The job
 * waits for its third site, started here (*third) once two backups saw it running: the job
 * itself takes well under a second on a fast machine (a bare Debian root once saw only one). */
static int s_backups_during_job(fx_fed_t *f, pid_t coord, char first[400], int *refused_restore,
                                pid_t *third)
{
    char log[400];
    fx_path(log, sizeof log, f->root, "backup.log");
    int taken = 0, during = 0;
    double end = fx_now() + 120;
    char live[400], st[32] = "";
    fx_path(live, sizeof live, f->coord, "coordinator.db");
    (void)coord;
    while (fx_now() < end && strcmp(s_job_state_of(live, st, sizeof st), "completed") != 0) {
        char out[400], name[32], state[32];
        snprintf(name, sizeof name, "backup-%02d.db", taken);
        fx_path(out, sizeof out, f->root, name);
        const char *a[] = {"coordinator", "backup", "--dir",  f->coord,
                           "--out",       out,      "--json", NULL};
        int rc = fx_run(log, a);
        CHECK_EQ_INT(rc, 0);
        if (rc) break;
        if (taken == 0) snprintf(first, 400, "%s", out);
        s_job_state_of(out, state, sizeof state);
        if (strcmp(state, "running") == 0) during++;
        taken++;
        if (taken == 2) *refused_restore = s_restore(f, out) != 0;
        if (during >= 2 && !*third) *third = fx_start_agent(f, 2, NULL);
        fx_sleep_ms(300);
    }
    fprintf(stderr, "backup: %d backups, %d of them while the job was running\n", taken, during);
    return during;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "backup", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    const char *job[] = {"--rounds", "10", "--sites", "3", "--local-epochs", "60", NULL};
    fx_job_create(&f, job);
    char live[400], lockp[400], rlog[400], first[400] = "";
    fx_path(live, sizeof live, f.coord, "coordinator.db");
    fx_path(lockp, sizeof lockp, f.coord, "daemon.lock");
    fx_path(rlog, sizeof rlog, f.root, "restore.log");

    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    ag[2] = 0;
    for (int s = 0; s < 2; s++) ag[s] = fx_start_agent(&f, s, NULL);
    int refused = 0;
    int during = s_backups_during_job(&f, coord, first, &refused, &ag[2]);
    if (!ag[2]) ag[2] = fx_start_agent(&f, 2, NULL); /* the checks below fail; end cleanly */
    CHECK(during >= 2);
    CHECK(refused);
    CHECK(s_contains(rlog, "is running on this directory"));
    CHECK_EQ_INT(fx_wait(coord, 60), 0);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 60), 0);
    char state[32];
    CHECK(strcmp(s_job_state_of(live, state, sizeof state), "completed") == 0);

    /* Every backup's audit log verifies against the coordinator's key. */
    for (int i = 0; i < 100; i++) {
        char out[400], name[32];
        snprintf(name, sizeof name, "backup-%02d.db", i);
        fx_path(out, sizeof out, f.root, name);
        if (!cnd_file_exists(out)) break;
        CHECK_EQ_INT(s_verify(&f, out), 0);
    }

    /* No coordinator starts while a restore holds the directory. */
    int lfd = -1;
    CHECK_EQ_INT(cnd_file_lock(lockp, 1, &lfd), 0);
    char clog[400];
    fx_path(clog, sizeof clog, f.root, "coordinator-locked.log");
    const char *run[] = {"coordinator", "run", "--dir", f.coord, "--endpoint", f.endpoint, NULL};
    CHECK(fx_wait(fx_spawn(clog, NULL, run), 30) != 0);
    CHECK(s_contains(clog, "a restore of this directory is in progress"));
    cnd_file_unlock(&lfd);

    s_refusals(&f, first);

    /* Restore the first mid-job backup. */
    long before = s_count(live, "SELECT count(*) FROM audit_entry");
    long in_backup = s_count(first, "SELECT count(*) FROM audit_entry");
    CHECK(in_backup > 0 && in_backup < before);
    CHECK_EQ_INT(s_restore(&f, first), 0);
    CHECK(strcmp(s_job_state_of(live, state, sizeof state), "completed") != 0);
    /* The backup's entries, then the restore's own admin entry. */
    CHECK_EQ_INT(s_count(live, "SELECT count(*) FROM audit_entry"), in_backup + 1);
    CHECK_EQ_INT(
        s_count(live,
                "SELECT count(*) FROM audit_entry WHERE action = 'admin.coordinator.restore'"),
        1);
    CHECK_EQ_INT(s_verify(&f, live), 0);
    char cmd[700], saved[400] = "";
    snprintf(cmd, sizeof cmd, "ls '%s'/coordinator.db.pre-restore-* > '%s/saved.txt'", f.coord,
             f.root);
    CHECK_EQ_INT(system(cmd), 0);
    char sp[400];
    fx_path(sp, sizeof sp, f.root, "saved.txt");
    FILE *sf = fopen(sp, "r");
    if (sf) {
        if (fgets(saved, sizeof saved, sf)) saved[strcspn(saved, "\n")] = 0;
        fclose(sf);
    }
    CHECK(saved[0] != 0);
    CHECK_EQ_INT(s_count(saved, "SELECT count(*) FROM audit_entry"), before);
    CHECK(strcmp(s_job_state_of(saved, state, sizeof state), "completed") == 0);
    CHECK_EQ_INT(s_verify(&f, saved), 0);

    fx_fed_cleanup(&f);
    return check_result("test_coord_backup");
}
