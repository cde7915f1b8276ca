/*
 * test_coord_init.c: `condenser coordinator init` makes its directory whole or not at all.
 *   - With a file size limit that the database cannot fit in (a full disk, as far as the
 *     process can tell), init fails with an error, and leaves neither the directory nor a
 *     staging directory behind; run again without the limit it succeeds (it used to leave a
 *     half-made directory that every retry refused).
 *   - A staging directory left by a killed init (its process gone) is cleared by the next one.
 *   - init on a directory that holds a coordinator is refused and changes nothing.
 *   - init --key-dir DIR into the very directory `keygen --out DIR` made keeps that identity.
 */
#include "check.h"
#include "federation_fixture.h"

#include <dirent.h>
#include <sys/resource.h>

/* Runs `condenser args...` under a file size limit (0 = none); returns the exit status. */
static int s_run_limited(const char *log, rlim_t fsize, const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (fsize) {
            struct rlimit rl = {fsize, fsize};
            signal(SIGXFSZ, SIG_IGN); /* writes past the limit fail with EFBIG instead */
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        char *argv[32];
        int n = 0;
        argv[n++] = (char *)fx_bin();
        for (int i = 0; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(fx_bin(), argv);
        _exit(127);
    }
    return fx_wait(pid, 60);
}

/* Entries of dir's parent whose names start with prefix. */
static int s_count_prefixed(const char *parent, const char *prefix)
{
    DIR *d = opendir(parent);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "init", 0);
    char log[400], ca[400], db[400];
    fx_path(log, sizeof log, f.root, "init.log");
    fx_path(ca, sizeof ca, f.root, "ca");
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    const char *cai[] = {"ca", "init", "--dir", ca, "--name", "init test", NULL};
    CHECK_EQ_INT(fx_run(log, cai), 0);
    const char *init[] = {"coordinator", "init", "--dir", f.coord, "--ca", ca, NULL};

    /* A full disk: nothing is left behind. */
    CHECK(s_run_limited(log, 16 * 1024, init) != 0);
    CHECK(!cnd_file_exists(f.coord));
    CHECK_EQ_INT(s_count_prefixed(f.root, "coord.init-"), 0);

    /* A staging directory of a killed init (pid 999999 does not run) is cleared. */
    char stale[500];
    snprintf(stale, sizeof stale, "%s.init-999999-AbCdEf", f.coord);
    CHECK(mkdir(stale, 0700) == 0);
    char junk[540];
    snprintf(junk, sizeof junk, "%s/identity.key", stale);
    CHECK_EQ_INT(cnd_file_write_atomic(junk, "x", 1, 0600), 0);
    CHECK_EQ_INT(s_run_limited(log, 0, init), 0);
    CHECK(cnd_file_exists(db));
    CHECK(!cnd_file_exists(stale));
    CHECK_EQ_INT(s_count_prefixed(f.root, "coord.init-"), 0);
    const char *ls[] = {"site", "list", "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(log, ls), 0);
    char dbv[400];
    fx_path(dbv, sizeof dbv, f.coord, "coordinator.db");
    const char *ver[] = {"audit", "verify", dbv, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);

    /* Again: refused, nothing changed. */
    uint8_t *k1 = NULL, *k2 = NULL;
    size_t l1 = 0, l2 = 0;
    char kp[400];
    fx_path(kp, sizeof kp, f.coord, "identity.key");
    CHECK_EQ_INT(cnd_file_read(kp, 4096, &k1, &l1), 0);
    CHECK(fx_run(log, init) != 0);
    CHECK_EQ_INT(cnd_file_read(kp, 4096, &k2, &l2), 0);
    CHECK(l1 == l2 && k1 && k2 && memcmp(k1, k2, l1) == 0);
    free(k1);
    free(k2);

    /* keygen --out D, then init --dir D --key-dir D: D's identity is the coordinator's. */
    char d2[400], pub[420];
    fx_path(d2, sizeof d2, f.root, "coord2");
    const char *kg[] = {"keygen", "--out", d2, NULL};
    CHECK_EQ_INT(fx_run(log, kg), 0);
    snprintf(pub, sizeof pub, "%s/identity.pub", d2);
    uint8_t *p1 = NULL, *p2 = NULL;
    CHECK_EQ_INT(cnd_file_read(pub, 4096, &p1, &l1), 0);
    const char *init2[] = {"coordinator", "init", "--dir", d2, "--key-dir", d2, "--ca", ca, NULL};
    CHECK_EQ_INT(fx_run(log, init2), 0);
    CHECK_EQ_INT(cnd_file_read(pub, 4096, &p2, &l2), 0);
    CHECK(l1 == l2 && p1 && p2 && memcmp(p1, p2, l1) == 0);
    free(p1);
    free(p2);
    const char *ls2[] = {"site", "list", "--dir", d2, NULL};
    CHECK_EQ_INT(fx_run(log, ls2), 0);
    if (check_failures) fx_dump(log);
    fx_fed_cleanup(&f);
    return check_result("test_coord_init");
}
