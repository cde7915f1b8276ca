/*
 * cmd_fleet_sim.c: `condenser fleet-sim`, N simulated edge devices in one process against a
 * real coordinator (fleet_sim.h). With --coordinator-dir it enrolls its devices there first and
 * stops once the newest rollout is over and no device is still transferring; it prints where
 * every device ended (which artifact it runs, its last report), so a test or a benchmark can
 * check that no device was left silently stuck.
 */
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "fleet_sim.h"
#include "demo_fleet.h"
#include "identity.h"
#include "progress.h"
#include "rollout_serve.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

typedef struct {
    cnd_rstate_t *st;    /* the coordinator's rollout state, or NULL */
    int64_t after;       /* only rollouts with a larger id count */
    int wait_rollout;    /* keep running until a rollout appears */
    double settle_until; /* exit once this time passes with the rollout over */
    cnd_progress_t prog;
    uint32_t target_connected;
} s_watch_t;

static int s_done(void *ctx, cnd_fleet_sim_t *s)
{
    s_watch_t *w = ctx;
    uint32_t conn = cnd_fleet_sim_connected(s);
    char extra[96];
    snprintf(extra, sizeof extra, "%u/%u connected", conn, cnd_fleet_sim_count(s));
    cnd_progress_update(&w->prog, conn, extra);
    if (!w->st) return 0;
    cnd_rollout_rec_t *r = NULL;
    size_t nr = 0;
    int over = 0, any = 0;
    if (cnd_rstate_rollouts(w->st, &r, &nr) == 0 && nr && r[0].id > w->after) {
        any = 1; /* newest first */
        over = !cnd_rollout_live(r[0].state);
    }
    cnd_err_clear();
    free(r);
    if (!any) return 0;
    if (!over) {
        w->settle_until = 0;
        return 0;
    }
    for (uint32_t i = 0; i < cnd_fleet_sim_count(s); i++) {
        cnd_edge_status_t es;
        cnd_fleet_sim_status(s, i, &es);
        if (es.downloading && cnd_fleet_sim_fault(s, i) != CND_EDGE_FAULT_HANG) return 0;
    }
    /* Give the last reports a moment to arrive at the coordinator. */
    double now = cnd_now();
    if (!w->settle_until) w->settle_until = now + 1.0;
    return now >= w->settle_until;
}

/* The command line: the simulator's options into o, the rest into the fields below. */
typedef struct {
    const char *key, *cdir, *state, *initial, *iman, *shard, *report;
    double duration;
    int quiet;
} s_args_t;

/* Parses argv into o and a. Returns 0, 1 (--help printed) or an error. */
static int s_parse(cnd_fleet_sim_opts_t *o, s_args_t *a, int argc, char **argv)
{
    const char *fault = "selftest";
    long devices = 100, seed = 1, ram = 16 << 20, flash = 64 << 20, budget = 0, hb = 10000;
    long sites = 4;
    int http = 0;
    double fail = 0;
    memset(o, 0, sizeof *o);
    memset(a, 0, sizeof *a);
    a->state = getenv("CND_ROLLOUT_STATE");
    if (a->state && !a->state[0]) a->state = NULL;
    const cnd_opt_t opts[] = {
        {"devices", CND_OPT_INT, &devices, "N", "devices in the fleet (default 100)", 1, 1e6},
        {"endpoint", CND_OPT_STR, &o->endpoint, "EP[,EP...]",
         "coordinator endpoint, or replicas of it: each device starts at the one its name "
         "hashes to (required)"},
        {"failover", CND_OPT_DBL, &o->failover_s, "S",
         "with several endpoints: seconds without a session before a device tries the next "
         "(default 5)",
         0.5, 3600},
        {"coordinator-key", CND_OPT_STR, &a->key, "FILE", "coordinator identity.pub (required)"},
        {"coordinator-dir", CND_OPT_STR, &a->cdir, "DIR",
         "enroll the devices there and stop when its newest rollout is over"},
        {"state", CND_OPT_STR, &a->state, "URL",
         "with --coordinator-dir: its rollout state, sqlite: (default) or postgresql://... "
         "(default $CND_ROLLOUT_STATE)"},
        {"initial", CND_OPT_STR, &a->initial, "FILE", "artifact every device starts on"},
        {"initial-manifest", CND_OPT_STR, &a->iman, "FILE", "its signed manifest"},
        {"fail-rate", CND_OPT_DBL, &fail, "P", "fraction of faulty devices (default 0)", 0, 1},
        {"fault", CND_OPT_STR, &fault, "KIND", "selftest (default), hang, crash or mixed"},
        {"seed", CND_OPT_INT, &seed, "S", "seed for identities and faults (default 1)", 0, 1e15},
        {"class", CND_OPT_STR, &o->hw_class, "C", "device class (default sim-gw)"},
        {"cpu", CND_OPT_STR, &o->cpu_class, "C", "CPU class (default x86-64)"},
        {"ram", CND_OPT_INT, &ram, "BYTES", "RAM budget (default 16 MiB)", 1, 1e15},
        {"flash", CND_OPT_INT, &flash, "BYTES", "flash budget (default 64 MiB)", 1, 1e15},
        {"latency-budget", CND_OPT_INT, &budget, "US", "latency budget (default none)", 0, 1e9},
        {"labels", CND_OPT_STR, &o->labels, "K=V,...",
         "extra labels (every device has fleet=sim, "
         "site=site<i % sites>)"},
        {"sites", CND_OPT_INT, &sites, "N", "sites the devices spread over (default 4)", 1, 1e6},
        {"model", CND_OPT_STR, &o->model, "NAME", "model name devices accept (default any)"},
        {"heartbeat-ms", CND_OPT_INT, &hb, "MS", "heartbeat interval (default 10000)", 100,
         3600000},
        {"shard", CND_OPT_STR, &a->shard, "I/K", "simulate only the I-th of K slices of the fleet"},
        {"duration", CND_OPT_DBL, &a->duration, "S", "stop after S seconds (default: when done)", 0,
         1e9},
        {"report", CND_OPT_STR, &a->report, "FILE", "write one line per device there"},
        {"http", CND_OPT_FLAG, &http, NULL,
         "fetch artifacts from the cache an offer names (rollout serve --artifact-url) over "
         "HTTP, one connection per process; chunks over ZeroMQ when it fails"},
        {"quiet", CND_OPT_FLAG, &a->quiet, NULL, "print only the summary"},
        {0}};
    const cnd_cli_t cli = {
        "condenser fleet-sim --devices N --endpoint EP --coordinator-key FILE [options]",
        "Runs N simulated edge devices in one process, each with its own identity, CurveZMQ "
        "connection, manifest checks, chunked download, A/B activation and self-test, against a "
        "real coordinator; --fail-rate makes a fraction of them faulty. Prints where every "
        "device ended.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc;
    if (!o->endpoint || !a->key)
        return cnd_errf(CND_EINVAL, "--endpoint and --coordinator-key are required");
    if (!!a->initial != !!a->iman)
        return cnd_errf(CND_EINVAL, "--initial and --initial-manifest go together");
    if ((rc = cnd_pubkey_read(o->coordinator_pk, a->key))) return rc;
    o->devices = (uint32_t)devices;
    o->first = 0;
    o->count = o->devices;
    if (a->shard) {
        unsigned i, k;
        char extra;
        if (sscanf(a->shard, "%u/%u%c", &i, &k, &extra) != 2 || k == 0 || i >= k)
            return cnd_errf(CND_EINVAL, "--shard '%s': expected I/K with I < K", a->shard);
        o->first = (uint32_t)((uint64_t)o->devices * i / k);
        o->count = (uint32_t)((uint64_t)o->devices * (i + 1) / k) - o->first;
    }
    o->seed = (uint64_t)seed;
    o->fail_rate = fail;
    o->fault = fault;
    o->ram_bytes = (uint64_t)ram;
    o->flash_bytes = (uint64_t)flash;
    o->latency_budget_us = (uint32_t)budget;
    o->sites = (uint32_t)sites;
    o->heartbeat_ms = (int)hb;
    o->http = http;
    return 0;
}

/* Builds the simulator, with the initial artifact and manifest (if given) read from files. */
static int s_build(cnd_fleet_sim_t **s, cnd_fleet_sim_opts_t *o, const s_args_t *a)
{
    uint8_t *art = NULL, *man = NULL;
    size_t alen = 0, mlen = 0;
    int rc = 0;
    if (a->initial && ((rc = cnd_file_read(a->initial, 64u << 20, &art, &alen)) ||
                       (rc = cnd_file_read(a->iman, 1 << 20, &man, &mlen)))) {
        free(art);
        return rc;
    }
    o->initial = art;
    o->initial_len = alen;
    o->initial_manifest = man;
    o->initial_manifest_len = mlen;
    rc = cnd_fleet_sim_new(s, o);
    free(art);
    free(man);
    o->initial = o->initial_manifest = NULL;
    return rc;
}

/* With --coordinator-dir: the devices enrolled there (each an "enroll" entry of its audit log,
 * as with `condenser rollout enroll`), and the watch set to rollouts newer than the newest. */
/* Opening the directory (its audit log begins a transaction) and enrolling wait on the
 * coordinator database's lock, which replicas sharing the directory take at every loop
 * iteration; on a loaded machine one holder can keep it past the busy timeout (10 s), and one
 * simulator of twenty in a 100,000-device run stopped there ("begin: database is locked") with
 * its 5,000 devices (docs/benchmarks.md). Both steps are idempotent (enrolled devices are
 * skipped), so they are tried again, S_BUSY_TRIES times in all; only SQLite's busy error
 * (sqlite3_errstr(SQLITE_BUSY) in the detail: the directory is closed by then) is retried. */
#define S_BUSY_TRIES 6

static int s_enroll(cnd_rollout_dir_t *cd, s_watch_t *w, cnd_fleet_sim_t *s, const char *cdir,
                    const char *state)
{
    int rc;
    for (int tries = 1;; tries++) {
        rc = cnd_rollout_dir_open_state(cd, cdir, 1, state);
        if (!rc) rc = cnd_demo_fleet_enroll_state(s, cd->state, cd->audit, cd->fpr);
        if (!rc || tries == S_BUSY_TRIES || !strstr(cnd_err_detail(), sqlite3_errstr(SQLITE_BUSY)))
            break;
        fprintf(stderr, "fleet-sim: enrolling: %s; trying again (%d of %d)\n", cnd_err_detail(),
                tries + 1, S_BUSY_TRIES);
        cnd_rollout_dir_close(cd);
        cnd_err_clear();
        sleep(1);
    }
    if (rc) return rc;
    cnd_rollout_rec_t *r = NULL;
    size_t nr = 0;
    if ((rc = cnd_rstate_rollouts(cd->state, &r, &nr))) return rc;
    w->after = nr ? r[0].id : 0; /* newest first */
    free(r);
    w->st = cd->state;
    return 0;
}

static const char *s_fault_name(cnd_edge_fault_t f)
{
    return f == CND_EDGE_FAULT_NONE       ? "ok"
           : f == CND_EDGE_FAULT_SELFTEST ? "selftest"
           : f == CND_EDGE_FAULT_HANG     ? "hang"
                                          : "crash";
}

/* Where every device ended: per-device lines into report (if given), a summary on stdout. */
static int s_summary(cnd_fleet_sim_t *s, const char *report, double t0)
{
    uint32_t n = cnd_fleet_sim_count(s), faulty = 0, none = 0;
    struct {
        uint8_t d[32];
        uint32_t n;
    } by[16];
    uint32_t nby = 0, states[8] = {0};
    FILE *rf = report ? fopen(report, "w") : NULL;
    if (report && !rf) return cnd_errf(CND_EIO, "%s: cannot write the report", report);
    for (uint32_t i = 0; i < n; i++) {
        cnd_edge_status_t es;
        cnd_fleet_sim_status(s, i, &es);
        cnd_edge_fault_t f = cnd_fleet_sim_fault(s, i);
        faulty += f != CND_EDGE_FAULT_NONE;
        if (es.last_state >= 0 && es.last_state < 8) states[es.last_state]++;
        if (!es.has_model) {
            none++;
        } else {
            uint32_t k = 0;
            while (k < nby && memcmp(by[k].d, es.digest, 32)) k++;
            if (k == nby && nby < 16) {
                memcpy(by[nby].d, es.digest, 32);
                by[nby++].n = 0;
            }
            if (k < nby) by[k].n++;
        }
        char hex[65];
        if (rf)
            fprintf(rf, "%s %s %s v%llu seq %llu state %d rollout %llu %s\n",
                    cnd_fleet_sim_name(s, i), s_fault_name(f),
                    es.has_model ? cnd_hex(hex, es.digest, 32) : "none",
                    (unsigned long long)es.version, (unsigned long long)es.sequence, es.last_state,
                    (unsigned long long)es.last_rollout, cnd_edge_reason_name(es.last_reason));
    }
    if (rf && fclose(rf) != 0) return cnd_errf(CND_EIO, "%s: cannot write the report", report);
    cnd_fleet_sim_stats_t ss;
    cnd_fleet_sim_stats(s, &ss);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("fleet-sim: %u devices (%u faulty), %.1f s, %llu frames in, %llu out, store "
           "%.1f MiB, peak RSS %.1f MiB, cpu %.1f s, failovers %llu, dial retries %llu\n",
           n, faulty, cnd_now() - t0, (unsigned long long)ss.frames_in,
           (unsigned long long)ss.frames_out, ss.pool_bytes / 1048576.0, ru.ru_maxrss / 1024.0,
           ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
           (unsigned long long)ss.failovers, (unsigned long long)ss.dial_retries);
    for (uint32_t k = 0; k < nby; k++) {
        char hex[65];
        printf("  running %.16s...: %u devices\n", cnd_hex(hex, by[k].d, 32), by[k].n);
    }
    if (none) printf("  running no model: %u devices\n", none);
    printf("  last reports: healthy %u, failed %u, refused %u, rolled back %u, none %u\n",
           states[4], states[5], states[7], states[6], states[0]);
    return 0;
}

int cnd_cmd_fleet_sim(int argc, char **argv)
{
    cnd_fleet_sim_opts_t o;
    s_args_t a;
    int rc = s_parse(&o, &a, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    double t0 = cnd_now();
    cnd_fleet_sim_t *s = NULL;
    s_watch_t w;
    memset(&w, 0, sizeof w);
    cnd_rollout_dir_t cd;
    memset(&cd, 0, sizeof cd);
    if ((rc = s_build(&s, &o, &a))) return rc;
    double t_build = cnd_now() - t0;
    if (a.cdir && (rc = s_enroll(&cd, &w, s, a.cdir, a.state))) goto out;
    if (!a.quiet)
        fprintf(stderr, "fleet-sim: %u devices (%u..%u) built in %.2f s; running\n", o.count,
                o.first, o.first + o.count - 1, t_build);
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    cnd_progress_begin(&w.prog, "fleet-sim", o.count, "devices");
    if (a.quiet) w.prog.enabled = 0;
    rc = cnd_fleet_sim_run(s, &s_stop, a.duration, s_done, &w);
    cnd_progress_end(&w.prog);
    if (!rc) rc = s_summary(s, a.report, t0);
out:
    cnd_rollout_dir_close(&cd);
    cnd_fleet_sim_destroy(&s);
    return rc;
}
