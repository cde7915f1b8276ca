/*
 * test_federation_fixture.h: what the federation integration tests share: a scratch directory,
 * real `condenser` processes (CND_BIN) started with fork/exec and stopped by pid, a free loopback
 * port, synthetic site data written as IDX files, and a federation set up through the CLI
 * exactly as an operator would (coordinator init, keygen, site enroll, job create, agent INI).
 *
 * Data: 1x8x8 "images" of 4 classes, class c brightening quadrant c, with noise; small enough
 * that a round trains in milliseconds even under ASan, structured enough that training moves.
 * Models: teacher "flatten dense(16) relu dense(4)" (random weights: only its logits matter),
 * student "flatten dense(8) relu dense(4)".
 */
#ifndef TEST_FEDERATION_FIXTURE_H
#define TEST_FEDERATION_FIXTURE_H

#include "check.h"
#include "coord_store.h"
#include "fileio.h"
#include "http_testutil.h"
#include "model.h"
#include "modelfile.h"
#include "rng.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FX_MAX_SITES 8
#define FX_CLASSES   4
#define FX_TEACHER   "flatten dense(16) relu dense(4)"
#define FX_STUDENT   "flatten dense(8) relu dense(4)"

typedef struct {
    char root[256];  /* scratch directory */
    char coord[300]; /* coordinator directory */
    char endpoint[64];
    int port;
    int n_sites;
    char site_dir[FX_MAX_SITES][300];
    char site_name[FX_MAX_SITES][32];
    char site_ini[FX_MAX_SITES][320];
} fx_fed_t;

static inline const char *fx_bin(void)
{
    const char *b = getenv("CND_BIN");
    return b && *b ? b : "./condenser";
}

static inline void fx_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline double fx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts `condenser args...` with extra environment entries ("K=V", NULL-terminated list or
 * NULL), stdout and stderr appended to log. Returns the pid. */
static inline pid_t fx_spawn(const char *log, const char *const *env, const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
        char *argv[64];
        int n = 0;
        argv[n++] = (char *)fx_bin();
        for (int i = 0; args[i] && n < 63; i++) argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(fx_bin(), argv);
        _exit(127);
    }
    CHECK(pid > 0);
    return pid;
}

/* Waits up to timeout_s for pid; returns its exit status (0..255), 128+signal, or -1 on timeout
 * (the process is then killed). */
static inline int fx_wait(pid_t pid, double timeout_s)
{
    double end = fx_now() + timeout_s;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0) return -2;
        if (fx_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        fx_sleep_ms(20);
    }
}

/* Runs `condenser args...` to completion (30 s at most) and returns its exit status. */
static inline int fx_run(const char *log, const char *const *args)
{
    return fx_wait(fx_spawn(log, NULL, args), 60);
}

static inline int fx_free_port(void)
{
    return th_free_port();
}

static inline void fx_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes n synthetic samples (seeded) as IDX files; if canary is not NULL, sample 0's first
 * canary_len pixels are those bytes. */
static inline void fx_write_data(const char *images, const char *labels, int n, uint64_t seed,
                                 const uint8_t *canary, size_t canary_len)
{
    size_t d = 64;
    uint8_t *im = malloc(16 + (size_t)n * d), *lb = malloc(8 + (size_t)n);
    fx_be32(im, 0x803);
    fx_be32(im + 4, (uint32_t)n);
    fx_be32(im + 8, 8);
    fx_be32(im + 12, 8);
    fx_be32(lb, 0x801);
    fx_be32(lb + 4, (uint32_t)n);
    cnd_rng_t r;
    cnd_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int c = (int)cnd_rng_below(&r, FX_CLASSES);
        lb[8 + i] = (uint8_t)c;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                int q = (y >= 4) * 2 + (x >= 4);
                double v = (q == c ? 170.0 : 60.0) + 40.0 * cnd_rng_normal(&r);
                im[16 + (size_t)i * d + (size_t)y * 8 + x] = (uint8_t)(v < 0     ? 0
                                                                       : v > 255 ? 255
                                                                                 : v);
            }
    }
    if (canary) memcpy(im + 16, canary, canary_len);
    CHECK_EQ_INT(cnd_file_write_atomic(images, im, 16 + (size_t)n * d, 0644), 0);
    CHECK_EQ_INT(cnd_file_write_atomic(labels, lb, 8 + (size_t)n, 0644), 0);
    free(im);
    free(lb);
}

static inline void fx_path(char *out, size_t cap, const char *a, const char *b)
{
    snprintf(out, cap, "%s/%s", a, b);
}

/* A scratch directory under TMPDIR (or /tmp), removed by fx_fed_cleanup unless the test failed. */
static inline void fx_fed_init(fx_fed_t *f, const char *name, int n_sites)
{
    memset(f, 0, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/cnd-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    CHECK(mkdtemp(f->root) != NULL);
    fx_path(f->coord, sizeof f->coord, f->root, "coord");
    f->port = fx_free_port();
    CHECK(f->port > 0);
    snprintf(f->endpoint, sizeof f->endpoint, "tcp://127.0.0.1:%d", f->port);
    f->n_sites = n_sites;
}

static inline void fx_fed_cleanup(fx_fed_t *f)
{
    if (check_failures == 0 && !getenv("CND_TEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f->root);
    } else {
        fprintf(stderr, "kept %s for inspection\n", f->root);
    }
}

/* `condenser ca issue` of a site certificate from the fixture's CA (root/ca). */
static inline void fx_issue(fx_fed_t *f, const char *log, const char *name, const char *pub,
                            const char *out)
{
    char ca[400];
    fx_path(ca, sizeof ca, f->root, "ca");
    const char *is[] = {"ca",   "issue",    "--dir", ca,      "--name", name, "--role",
                        "site", "--pubkey", pub,     "--out", out,      NULL};
    CHECK_EQ_INT(fx_run(log, is), 0);
}

/* A federation CA (root/ca), coordinator init; a teacher; n sites with keys, certificates,
 * data, enrollment and INI files. */
static inline void fx_fed_setup(fx_fed_t *f, int samples_per_site, const uint8_t *canary,
                                size_t canary_len)
{
    char log[400], teacher[400];
    fx_path(log, sizeof log, f->root, "setup.log");
    char ca[400];
    fx_path(ca, sizeof ca, f->root, "ca");
    const char *cai[] = {"ca", "init", "--dir", ca, "--name", "test federation", NULL};
    CHECK_EQ_INT(fx_run(log, cai), 0);
    const char *init[] = {"coordinator", "init", "--dir", f->coord, "--ca", ca, NULL};
    CHECK_EQ_INT(fx_run(log, init), 0);
    cnd_model_t *t = NULL;
    CHECK_EQ_INT(cnd_model_new(&t, FX_TEACHER, (cnd_shape_t){1, 8, 8}, 7), 0);
    for (int i = 0; t && i < 1; i++) {
        t->norm_mean[i] = 100.0f;
        t->norm_std[i] = 60.0f;
    }
    fx_path(teacher, sizeof teacher, f->root, "teacher.cnd");
    CHECK_EQ_INT(cnd_model_save(t, teacher), 0);
    cnd_model_destroy(&t);
    char pub[400];
    fx_path(pub, sizeof pub, f->coord, "identity.pub");
    for (int s = 0; s < f->n_sites; s++) {
        snprintf(f->site_name[s], sizeof f->site_name[s], "site-%d", s);
        fx_path(f->site_dir[s], sizeof f->site_dir[s], f->root, f->site_name[s]);
        const char *kg[] = {"keygen", "--out", f->site_dir[s], NULL};
        CHECK_EQ_INT(fx_run(log, kg), 0);
        char kp[400], img[400], lab[400], cert[400];
        fx_path(kp, sizeof kp, f->site_dir[s], "identity.pub");
        fx_path(cert, sizeof cert, f->site_dir[s], "site.pem");
        fx_issue(f, log, f->site_name[s], kp, cert);
        const char *en[] = {"site", "enroll", f->site_name[s], "--cert",
                            cert,   "--dir",  f->coord,        NULL};
        CHECK_EQ_INT(fx_run(log, en), 0);
        fx_path(img, sizeof img, f->site_dir[s], "images.idx");
        fx_path(lab, sizeof lab, f->site_dir[s], "labels.idx");
        fx_write_data(img, lab, samples_per_site, 100 + (uint64_t)s, s == 0 ? canary : NULL,
                      s == 0 ? canary_len : 0);
        fx_path(f->site_ini[s], sizeof f->site_ini[s], f->site_dir[s], "agent.ini");
        FILE *ini = fopen(f->site_ini[s], "w");
        CHECK(ini != NULL);
        if (!ini) continue;
        fprintf(ini,
                "[site]\nname = %s\ndata = idx:images.idx,labels.idx\nvalidation = 0.2\n"
                "[identity]\nkey = identity.key\ncertificate = site.pem\n"
                "[coordinator]\nendpoint = %s\npublic_key = %s\nca_cert = ../ca/ca.crt\n"
                "ca_crl = ../ca/crl.pem\n[limits]\nthreads = 1\n",
                f->site_name[s], f->endpoint, pub);
        fclose(ini);
    }
}

/* `condenser job create` with the fixture's models plus extra options (NULL-terminated). */
static inline void fx_job_create(fx_fed_t *f, const char *const *extra)
{
    char log[400], teacher[400];
    fx_path(log, sizeof log, f->root, "setup.log");
    fx_path(teacher, sizeof teacher, f->root, "teacher.cnd");
    const char *args[48] = {"job",      "create",    "--dir", f->coord,  "--student-arch",
                            FX_STUDENT, "--teacher", teacher, "--batch", "16",
                            "--lr",     "0.01"};
    int n = 12;
    for (int i = 0; extra && extra[i] && n < 47; i++) args[n++] = extra[i];
    args[n] = NULL;
    CHECK_EQ_INT(fx_run(log, args), 0);
}

static inline pid_t fx_start_coordinator(fx_fed_t *f, const char *capture)
{
    char log[400];
    fx_path(log, sizeof log, f->root, "coordinator.log");
    const char *args[] = {"coordinator",  "run",
                          "--dir",        f->coord,
                          "--endpoint",   f->endpoint,
                          "--until-done", "--heartbeat-ms",
                          "500",          capture ? "--capture" : NULL,
                          capture,        NULL};
    return fx_spawn(log, NULL, args);
}

static inline pid_t fx_start_agent(fx_fed_t *f, int s, const char *const *env)
{
    char log[400];
    snprintf(log, sizeof log, "%s/agent.log", f->site_dir[s]);
    const char *args[] = {"agent", "--config", f->site_ini[s], "--until-done", "--max-seconds",
                          "50",    NULL};
    return fx_spawn(log, env, args);
}

/* Reads the coordinator's rounds of job 1. */
static inline int fx_rounds(fx_fed_t *f, cnd_round_rec_t **list, size_t *n)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    int rc = cnd_cstore_open_readonly(&s, db);
    if (!rc) rc = cnd_cstore_rounds(s, 1, list, n);
    cnd_cstore_close(&s);
    return rc;
}

static inline void fx_rounds_free(cnd_round_rec_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++) cnd_round_rec_free(&list[i]);
    free(list);
}

/* The job's state ("running", "completed", ...) into out. */
static inline int fx_job_state(fx_fed_t *f, char *out, size_t cap)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    cnd_job_rec_t j;
    int rc = cnd_cstore_open_readonly(&s, db);
    if (!rc) rc = cnd_cstore_job_get(s, 1, &j);
    if (!rc) {
        snprintf(out, cap, "%s", j.state);
        cnd_job_rec_free(&j);
    }
    cnd_cstore_close(&s);
    return rc;
}

/* Prints a file to stderr (diagnostics when a check fails). */
static inline void fx_dump(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    fprintf(stderr, "---- %s\n", path);
    char line[1024];
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    fclose(f);
}

#endif
