/*
 * test_db.c: the store kernel (common/db.h).
 *   - open: a missing file without CND_DB_CREATE is CND_ENOTFOUND and creates nothing; every
 *     connection is WAL, synchronous=FULL (read-write), busy timeout set;
 *   - a process that holds a connection opens and closes a second (read-only) one, and another
 *     process then opens, reads and closes the file: the first connection's WAL and data stay
 *     intact (the corruption that a fopen/fclose beside a live connection caused is reproduced
 *     end to end by tests/coordinator/test_store_concurrency.c);
 *   - migrations: components are versioned independently; each step runs once; two processes
 *     migrating a new file at the same moment migrate it once; a newer version is refused and
 *     the file is left as it was; a legacy file is recognised and carried over;
 *   - cnd_db_check's three refusals, and transactions that join the caller's.
 */
#include "check.h"
#include "db.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char s_dir[256];

static void s_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", s_dir, name);
}

static int s_pragma_int(sqlite3 *db, const char *pragma)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, pragma, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *s_pragma_text(sqlite3 *db, const char *pragma, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    out[0] = 0;
    if (sqlite3_prepare_v2(db, pragma, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static int s_count(sqlite3 *db, const char *sql)
{
    return s_pragma_int(db, sql);
}

static const char *const s_steps_a[] = {
    "CREATE TABLE a_one(x INTEGER)",
    "CREATE TABLE a_two(y INTEGER); INSERT INTO a_two VALUES(42)",
};
static const char *const s_steps_b[] = {"CREATE TABLE b_one(z TEXT)"};

static void test_open(void)
{
    char p[300], buf[32];
    s_path(p, sizeof p, "open.db");
    sqlite3 *db = NULL;
    CHECK_EQ_INT(cnd_db_open(&db, p, 0, "test database"), CND_ENOTFOUND);
    CHECK(db == NULL);
    CHECK(strstr(cnd_err_detail(), "no such test database") != NULL);
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_READONLY, "test database"), CND_ENOTFOUND);
    struct stat sb;
    CHECK(stat(p, &sb) != 0 && errno == ENOENT); /* nothing created */
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_CREATE, "test database"), 0);
    CHECK(strcmp(s_pragma_text(db, "PRAGMA journal_mode", buf, sizeof buf), "wal") == 0);
    CHECK_EQ_INT(s_pragma_int(db, "PRAGMA synchronous"), 2); /* FULL */
    CHECK_EQ_INT(s_pragma_int(db, "PRAGMA busy_timeout"), CND_DB_BUSY_MS);
    CHECK_EQ_INT(s_pragma_int(db, "PRAGMA foreign_keys"), 1);
    CHECK(strstr(cnd_db_path(db), "open.db") != NULL);
    cnd_db_close(&db);
    cnd_db_close(&db); /* idempotent */
    CHECK(db == NULL);
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_READONLY, NULL), 0);
    CHECK(db && sqlite3_db_readonly(db, "main") == 1);
    cnd_db_close(&db);
    /* a directory is not a database */
    CHECK_EQ_INT(cnd_db_open(&db, s_dir, CND_DB_CREATE, NULL), CND_EIO);
}

/* Returns 1 when path's -wal file exists. */
static int s_wal_exists(const char *p)
{
    char w[320];
    snprintf(w, sizeof w, "%s-wal", p);
    struct stat sb;
    return stat(w, &sb) == 0;
}

static void test_locks_survive(void)
{
    char p[300];
    s_path(p, sizeof p, "locks.db");
    sqlite3 *db = NULL;
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_CREATE, NULL), 0);
    if (!db) return;
    CHECK_EQ_INT(cnd_db_exec(db,
                             "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); "
                             "INSERT INTO t VALUES(1)",
                             "setup"),
                 0);
    /* This process: a second connection opened and closed (an admin listing inside a daemon). */
    sqlite3 *ro = NULL;
    CHECK_EQ_INT(cnd_db_open(&ro, p, CND_DB_READONLY, NULL), 0);
    CHECK_EQ_INT(s_count(ro, "SELECT count(*) FROM t"), 1);
    cnd_db_close(&ro);
    CHECK(s_wal_exists(p));
    /* Another process opens and closes the database: it must see our connection and leave the
     * WAL alone. */
    pid_t pid = fork();
    if (pid == 0) {
        sqlite3 *c = NULL;
        int ok = cnd_db_open(&c, p, 0, NULL) == 0 && s_count(c, "SELECT count(*) FROM t") == 1;
        cnd_db_close(&c);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(s_wal_exists(p));
    CHECK_EQ_INT(cnd_db_exec(db, "INSERT INTO t VALUES(2)", "insert"), 0);
    CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM t"), 2);
    char ic[32];
    CHECK(strcmp(s_pragma_text(db, "PRAGMA integrity_check", ic, sizeof ic), "ok") == 0);
    cnd_db_close(&db);
    /* and what was committed is there for the next process */
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_READONLY, NULL), 0);
    if (db) CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM t"), 2);
    cnd_db_close(&db);
}

static int s_legacy_calls;
static int s_legacy_a(sqlite3 *db, int *v)
{
    s_legacy_calls++;
    *v = cnd_db_has_table(db, "a_one") ? (cnd_db_has_table(db, "a_two") ? 2 : 1) : 0;
    return 0;
}

static void test_migrate(void)
{
    char p[300];
    s_path(p, sizeof p, "mig.db");
    cnd_db_schema_t a = {"alpha", s_steps_a, 1, NULL}, b = {"beta", s_steps_b, 1, NULL};
    sqlite3 *db = NULL;
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_CREATE, NULL), 0);
    if (!db) return;
    int v = -1;
    CHECK_EQ_INT(cnd_db_version(db, "alpha", &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(cnd_db_check(db, &a, "alpha file"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "is not a alpha file") != NULL);
    CHECK_EQ_INT(cnd_db_migrate(db, &a), 0);
    CHECK_EQ_INT(cnd_db_migrate(db, &a), 0); /* once */
    CHECK_EQ_INT(cnd_db_migrate(db, &b), 0);
    CHECK_EQ_INT(cnd_db_version(db, "alpha", &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(cnd_db_check(db, &a, "alpha file"), 0);
    /* the next program version adds a step; the older reader is told to upgrade the file */
    a.version = 2;
    CHECK_EQ_INT(cnd_db_check(db, &a, "alpha file"), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "run any command that writes") != NULL);
    CHECK_EQ_INT(cnd_db_migrate(db, &a), 0);
    CHECK_EQ_INT(s_count(db, "SELECT y FROM a_two"), 42);
    CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM a_two"), 1); /* the step ran once */
    CHECK_EQ_INT(cnd_db_version(db, "beta", &v), 0);
    CHECK_EQ_INT(v, 1);
    /* an older program meets the newer file: refused, nothing changed */
    a.version = 1;
    CHECK_EQ_INT(cnd_db_migrate(db, &a), CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "newer than this program") != NULL);
    CHECK_EQ_INT(cnd_db_check(db, &a, "alpha file"), CND_EFORMAT);
    CHECK_EQ_INT(cnd_db_version(db, "alpha", &v), 0);
    CHECK_EQ_INT(v, 2);
    CHECK(sqlite3_get_autocommit(db)); /* no transaction left open */
    /* a failing step rolls the whole migration back */
    const char *const bad[] = {"CREATE TABLE g_one(x)", "CREATE TABLE g_one(x)"};
    cnd_db_schema_t g = {"gamma", bad, 2, NULL};
    CHECK_EQ_INT(cnd_db_migrate(db, &g), CND_EDB);
    CHECK(!cnd_db_has_table(db, "g_one"));
    CHECK_EQ_INT(cnd_db_version(db, "gamma", &v), 0);
    CHECK_EQ_INT(v, 0);
    cnd_db_close(&db);

    /* legacy: a file made before the kernel, with alpha's two tables and no cnd_schema */
    s_path(p, sizeof p, "legacy.db");
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_CREATE, NULL), 0);
    if (!db) return;
    CHECK_EQ_INT(cnd_db_exec(db, "CREATE TABLE a_one(x INTEGER); CREATE TABLE a_two(y INTEGER)",
                             "legacy tables"),
                 0);
    cnd_db_schema_t la = {"alpha", s_steps_a, 2, s_legacy_a};
    CHECK_EQ_INT(cnd_db_check(db, &la, "alpha file"), 0); /* read-only users accept it */
    CHECK_EQ_INT(cnd_db_migrate(db, &la), 0);
    CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM a_two"), 0); /* no step re-ran */
    CHECK_EQ_INT(cnd_db_version(db, "alpha", &v), 0);
    CHECK_EQ_INT(v, 2);
    int calls = s_legacy_calls;
    CHECK_EQ_INT(cnd_db_migrate(db, &la), 0);
    CHECK_EQ_INT(s_legacy_calls, calls); /* recorded: not asked again */
    cnd_db_close(&db);
}

static void test_concurrent_migrate(void)
{
    char p[300];
    s_path(p, sizeof p, "race.db");
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            cnd_db_schema_t a = {"alpha", s_steps_a, 2, NULL};
            sqlite3 *db = NULL;
            int rc = cnd_db_open(&db, p, CND_DB_CREATE, NULL);
            if (!rc) rc = cnd_db_migrate(db, &a);
            cnd_db_close(&db);
            _exit(rc ? 1 : 0);
        }
    }
    for (int i = 0; i < N; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    sqlite3 *db = NULL;
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_READONLY, NULL), 0);
    if (db) CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM a_two"), 1); /* migrated once */
    cnd_db_close(&db);
}

static void test_transactions(void)
{
    char p[300];
    s_path(p, sizeof p, "tx.db");
    sqlite3 *db = NULL;
    CHECK_EQ_INT(cnd_db_open(&db, p, CND_DB_CREATE, NULL), 0);
    if (!db) return;
    CHECK_EQ_INT(cnd_db_exec(db, "CREATE TABLE t(x UNIQUE)", "create"), 0);
    int own = -1;
    CHECK_EQ_INT(cnd_db_begin(db, &own), 0);
    CHECK_EQ_INT(own, 1);
    int inner = -1;
    CHECK_EQ_INT(cnd_db_begin(db, &inner), 0); /* joins */
    CHECK_EQ_INT(inner, 0);
    CHECK_EQ_INT(cnd_db_exec(db, "INSERT INTO t VALUES(1)", "insert"), 0);
    CHECK_EQ_INT(cnd_db_end(db, inner, 0), 0);
    CHECK(!sqlite3_get_autocommit(db)); /* the inner end did not commit */
    CHECK_EQ_INT(cnd_db_end(db, own, CND_EINVAL), CND_EINVAL);
    CHECK(sqlite3_get_autocommit(db));
    CHECK_EQ_INT(s_count(db, "SELECT count(*) FROM t"), 0); /* rolled back */
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(cnd_db_prep(db, &st, "INSERT INTO t VALUES(7)"), 0);
    CHECK_EQ_INT(cnd_db_done(db, st, "insert"), 0);
    CHECK_EQ_INT(cnd_db_prep(db, &st, "INSERT INTO t VALUES(7)"), 0);
    CHECK_EQ_INT(cnd_db_done(db, st, "insert"), CND_EEXIST);
    CHECK_EQ_INT(cnd_db_prep(db, &st, "SELECT nonsense FROM"), CND_EDB);
    CHECK(st == NULL);
    CHECK(strstr(cnd_err_detail(), "tx.db") != NULL); /* errors name the file */
    cnd_db_close(&db);
}

int main(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/cnd-db-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(s_dir) != NULL);
    test_open();
    test_locks_survive();
    test_migrate();
    test_concurrent_migrate();
    test_transactions();
    if (!check_failures) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
    }
    return check_result("test_db");
}
