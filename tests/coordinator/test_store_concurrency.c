/*
 * test_store_concurrency.c: the coordinator's database under ordinary operation: a running
 * coordinator with a 3-site job while two other processes run admin and read commands in a loop
 * (site list, job list, job show, job create + job cancel, rollout enroll, site enroll + site
 * revoke, audit verify), the way operators and their scripts do.
 *
 * Afterwards, with every process stopped:
 *   - PRAGMA integrity_check says ok and `condenser audit verify` passes;
 *   - no audit entry is lost: each successful command's entries are in the log (admin.<command>
 *     per admin command, enroll per enrollment, job.create / job.state per job);
 *   - the job states in the tables agree with the log's last job.state entry of each job, and
 *     the running job completed with one round.end per finished round.
 *
 * CND_STORE_TEST_COMMANDS sets how many commands the two workers run in all (default 300 so
 * the sanitizer build stays quick; test_store_concurrency_1000 runs 1000 without sanitizers).
 */
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"
#include "identity.h"

#include <sqlite3.h>
#include <string.h>

#define S_WORKERS 2

typedef struct {
    int creates, cancels, dev_enrolls, site_enrolls, revokes, reads, failures;
} s_counts_t;

/* Runs `condenser args...` with stdout into out (cap bytes, may be NULL) and stderr into log;
 * returns the exit status. */
static int s_run(const char *log, char *out, size_t cap, const char *const *args)
{
    char tmp[] = "/tmp/cnd-storm-out-XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        if (lf >= 0) dup2(lf, 2);
        char *argv[40];
        int n = 0;
        argv[n++] = (char *)fx_bin();
        for (int i = 0; args[i] && n < 39; i++) argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(fx_bin(), argv);
        _exit(127);
    }
    int rc = fx_wait(pid, 60);
    if (out && cap) {
        ssize_t k = pread(fd, out, cap - 1, 0);
        out[k > 0 ? k : 0] = '\0';
    }
    close(fd);
    unlink(tmp);
    return rc;
}

/* One worker: `n` commands in a fixed rotation; counts what succeeded into c. */
static void s_worker(fx_fed_t *f, int w, int n, s_counts_t *c)
{
    char log[400], teacher[400], out[256];
    snprintf(log, sizeof log, "%s/worker-%d.log", f->root, w);
    fx_path(teacher, sizeof teacher, f->root, "teacher.cnd");
    int done = 0, i = 0;
    long last_job = 0;
    while (done < n) {
        char name[64], key[440], cert[400];
        switch (i % 8) {
        case 0: {
            const char *a[] = {"site", "list", "--dir", f->coord, NULL};
            s_run(log, NULL, 0, a) == 0 ? c->reads++ : c->failures++;
            break;
        }
        case 1: {
            const char *a[] = {"job", "list", "--dir", f->coord, NULL};
            s_run(log, NULL, 0, a) == 0 ? c->reads++ : c->failures++;
            break;
        }
        case 2: {
            const char *a[] = {"job", "show", "1", "--dir", f->coord, NULL};
            s_run(log, NULL, 0, a) == 0 ? c->reads++ : c->failures++;
            break;
        }
        case 3: {
            snprintf(name, sizeof name, "storm-%d-%d", w, i);
            const char *a[] = {"job",     "create",    "--dir",          f->coord,   "--name",
                               name,      "--teacher", teacher,          "--rounds", "1",
                               "--batch", "16",        "--student-arch", FX_STUDENT, NULL};
            last_job = 0;
            if (s_run(log, out, sizeof out, a) == 0) {
                c->creates++;
                if (sscanf(out, "job %ld", &last_job) != 1) last_job = 0;
            } else {
                c->failures++;
            }
            break;
        }
        case 4: {
            if (last_job <= 1) break;
            char id[32];
            snprintf(id, sizeof id, "%ld", last_job);
            const char *a[] = {"job", "cancel", id, "--dir", f->coord, "--reason", "storm", NULL};
            s_run(log, NULL, 0, a) == 0 ? c->cancels++ : c->failures++;
            break;
        }
        case 5: {
            snprintf(name, sizeof name, "dev-%d-%d", w, i);
            snprintf(key, sizeof key, "%s/devkeys/%s/identity.pub", f->root, name);
            char kd[400];
            snprintf(kd, sizeof kd, "%s/devkeys/%s", f->root, name);
            cnd_identity_t *id = NULL;
            CHECK_EQ_INT(cnd_identity_generate(&id), 0);
            CHECK_EQ_INT(cnd_mkdir_p(kd, 0700), 0);
            CHECK_EQ_INT(cnd_identity_save(id, kd, 0), 0);
            cnd_identity_destroy(&id);
            const char *a[] = {"rollout", "enroll", name, "--key", key, "--dir", f->coord, NULL};
            s_run(log, NULL, 0, a) == 0 ? c->dev_enrolls++ : c->failures++;
            break;
        }
        case 6: {
            /* every fourth rotation: enroll a pre-certified site and revoke it again */
            if ((i / 8) % 4 != 0) break;
            snprintf(name, sizeof name, "extra-%d-%d", w, i / 32);
            snprintf(cert, sizeof cert, "%s/extra/%s.pem", f->root, name);
            const char *a[] = {"site", "enroll", name, "--cert", cert, "--dir", f->coord, NULL};
            if (s_run(log, NULL, 0, a) != 0) {
                c->failures++;
                break;
            }
            c->site_enrolls++;
            done++;
            const char *r[] = {"site",   "revoke",   name,    "--dir",
                               f->coord, "--reason", "storm", NULL};
            s_run(log, NULL, 0, r) == 0 ? c->revokes++ : c->failures++;
            break;
        }
        case 7: {
            if ((i / 8) % 3 != 0) break;
            char db[400];
            fx_path(db, sizeof db, f->coord, "coordinator.db");
            const char *a[] = {"audit", "verify", db, NULL};
            s_run(log, NULL, 0, a) == 0 ? c->reads++ : c->failures++;
            break;
        }
        }
        /* cases that ran nothing do not count */
        int ran = !((i % 8 == 4 && last_job <= 1) || (i % 8 == 6 && (i / 8) % 4 != 0) ||
                    (i % 8 == 7 && (i / 8) % 3 != 0));
        done += ran;
        i++;
    }
}

/* The number of audit entries matching a WHERE clause. */
static long s_count(sqlite3 *db, const char *where)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM audit_entry WHERE %s", where);
    sqlite3_stmt *st = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "query failed: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return n;
}

int main(void)
{
    const char *env = getenv("CND_STORE_TEST_COMMANDS");
    int total = env ? atoi(env) : 300;
    if (total < 16) total = 16;
    fx_fed_t f;
    fx_fed_init(&f, "storm", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    char log[400];
    fx_path(log, sizeof log, f.root, "setup.log");
    /* Certificates for the sites the workers enroll and revoke. */
    int extra = total / 40 + 2; /* a site enroll + revoke about every 27 commands per worker */
    for (int w = 0; w < S_WORKERS; w++)
        for (int k = 0; k < extra; k++) {
            char name[64], dir[400], pub[440], cert[400];
            snprintf(name, sizeof name, "extra-%d-%d", w, k);
            snprintf(dir, sizeof dir, "%s/extra/%s", f.root, name);
            const char *kg[] = {"keygen", "--out", dir, NULL};
            CHECK_EQ_INT(fx_run(log, kg), 0);
            snprintf(pub, sizeof pub, "%s/identity.pub", dir);
            snprintf(cert, sizeof cert, "%s/extra/%s.pem", f.root, name);
            fx_issue(&f, log, name, pub, cert);
        }
    const char *job[] = {"--rounds",       "6",  "--sites",        "3",     "--quorum", "2",
                         "--local-epochs", "10", "--join-wait-ms", "60000", NULL};
    fx_job_create(&f, job);

    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) ag[s] = fx_start_agent(&f, s, NULL);

    /* The workers share counts through a pipe each. */
    pid_t wp[S_WORKERS];
    int pfd[S_WORKERS][2];
    double t0 = fx_now();
    for (int w = 0; w < S_WORKERS; w++) {
        CHECK(pipe(pfd[w]) == 0);
        wp[w] = fork();
        if (wp[w] == 0) {
            s_counts_t c = {0};
            s_worker(&f, w, total / S_WORKERS, &c);
            ssize_t k = write(pfd[w][1], &c, sizeof c);
            _exit(k == (ssize_t)sizeof c && check_failures == 0 ? 0 : 1);
        }
        close(pfd[w][1]);
    }
    s_counts_t sum = {0};
    for (int w = 0; w < S_WORKERS; w++) {
        s_counts_t c = {0};
        CHECK(read(pfd[w][0], &c, sizeof c) == (ssize_t)sizeof c);
        close(pfd[w][0]);
        CHECK_EQ_INT(fx_wait(wp[w], 600), 0);
        sum.creates += c.creates;
        sum.cancels += c.cancels;
        sum.dev_enrolls += c.dev_enrolls;
        sum.site_enrolls += c.site_enrolls;
        sum.revokes += c.revokes;
        sum.reads += c.reads;
        sum.failures += c.failures;
    }
    double storm_s = fx_now() - t0;
    fprintf(stderr,
            "storm: %d commands in %.1f s: %d reads, %d job creates, %d cancels, %d device "
            "enrolls, %d site enrolls, %d revokes, %d failed\n",
            total, storm_s, sum.reads, sum.creates, sum.cancels, sum.dev_enrolls, sum.site_enrolls,
            sum.revokes, sum.failures);
    CHECK_EQ_INT(sum.failures, 0);

    /* The federation finishes its job (storm jobs were cancelled as soon as created; one that
     * slipped in between is run or cancelled, either is fine). Stop it if it does not end. */
    int crc = fx_wait(coord, 240);
    CHECK_EQ_INT(crc, 0);
    for (int s = 0; s < 3; s++) fx_wait(ag[s], 30);

    char db[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    sqlite3 *h = NULL;
    CHECK(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    const char *ic = (const char *)sqlite3_column_text(st, 0);
    fprintf(stderr, "integrity_check: %s\n", ic ? ic : "(null)");
    CHECK(ic && strcmp(ic, "ok") == 0);
    sqlite3_finalize(st);

    /* No entry lost: every successful command left its entries. */
    CHECK_EQ_INT(s_count(h, "action = 'admin.job.create'"), sum.creates + 1);
    CHECK_EQ_INT(s_count(h, "action = 'job.create'"), sum.creates + 1);
    CHECK_EQ_INT(s_count(h, "action = 'admin.job.cancel'"), sum.cancels);
    CHECK_EQ_INT(s_count(h, "action = 'admin.site.enroll'"), sum.site_enrolls + 3);
    CHECK_EQ_INT(s_count(h, "action = 'admin.site.revoke'"), sum.revokes);
    CHECK_EQ_INT(s_count(h, "action = 'enroll' AND json_extract(entry, '$.details.role') = "
                            "'device'"),
                 sum.dev_enrolls);

    /* Tables and log agree: each job's state is its last job.state entry's. */
    CHECK(sqlite3_prepare_v2(h,
                             "SELECT j.id, j.state, (SELECT json_extract(e.entry, "
                             "'$.details.state') FROM audit_entry e WHERE e.action = 'job.state' "
                             "AND e.job = CAST(j.id AS TEXT) ORDER BY e.seq DESC LIMIT 1) "
                             "FROM job j ORDER BY j.id",
                             -1, &st, NULL) == SQLITE_OK);
    int jobs = 0, disagree = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        jobs++;
        const char *state = (const char *)sqlite3_column_text(st, 1);
        const char *logged = (const char *)sqlite3_column_text(st, 2);
        int pending_unlogged = !logged && state && strcmp(state, "pending") == 0;
        if (!pending_unlogged && (!state || !logged || strcmp(state, logged) != 0)) {
            disagree++;
            fprintf(stderr, "job %lld: table says %s, log says %s\n",
                    (long long)sqlite3_column_int64(st, 0), state ? state : "(null)",
                    logged ? logged : "(nothing)");
        }
        if (sqlite3_column_int64(st, 0) == 1) CHECK(state && strcmp(state, "completed") == 0);
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(jobs, sum.creates + 1);
    CHECK_EQ_INT(disagree, 0);
    /* The running job: one round.end ok per ok round in the table, 6 of them. */
    long ok_rows = -1;
    if (sqlite3_prepare_v2(h, "SELECT count(*) FROM round WHERE job = 1 AND outcome = 'ok'", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok_rows = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    CHECK_EQ_INT(ok_rows, 6);
    CHECK_EQ_INT(s_count(h, "action = 'round.end' AND job = '1' AND "
                            "json_extract(entry, '$.details.status') = 'ok'"),
                 ok_rows);
    sqlite3_close(h);

    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        fx_path(p, sizeof p, f.root, "worker-0.log");
        fx_dump(p);
    }
    fx_fed_cleanup(&f);
    return check_result("test_store_concurrency");
}
