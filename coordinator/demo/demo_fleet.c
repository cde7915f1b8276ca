/*
 * demo_fleet.c: the rollout step of `condenser demo` (see demo_fleet.h).
 *
 * Order matters: v2 (the job's artifact) is in the registry since the job ended, v1 is
 * published after it under the same name, so v1's manifest has the higher sequence of the two;
 * the offer of v2 that `rollout create` signs has a higher one still (one rule per name,
 * registry.h), which is what devices running v1 accept. The server is up before the fleet starts;
 * the rollout is created only once every device has reported its profile (a device the registry has
 * no profile for cannot be matched to a variant); and the server exits by itself (--until-idle)
 * once the rollout is over, which is what this process waits for. The fleet then stops by itself
 * too, after writing where every device ended (--report), which is how "every device runs v2" is
 * checked rather than assumed.
 */
#include "demo_fleet.h"
#include "clock.h"
#include "db.h"
#include "digest.h"
#include "fileio.h"
#include "fleet_registry.h"
#include "proc.h"
#include "rollout_store.h"

#include <sqlite3.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_DEVICE_TIMEOUT "30" /* a device with no outcome after 30 s failed */

typedef struct {
    const cnd_demo_fleet_opts_t *o;
    char log[700], serve_log[700], sim_log[700], epf[700], man[700], report[700], stats[700];
    char key[700], db_path[700];
    pid_t serve, sim;
    sqlite3 *db; /* read-only view of the coordinator's database */
} s_run_t;

static void s_say(const s_run_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_say(const s_run_t *x, const char *fmt, ...)
{
    if (!x->o->say) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    x->o->say(line);
}

static void s_nap(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* An error if a child that should still run has ended. */
static int s_alive(pid_t *pid, const char *what, const char *log)
{
    int st = 0, r = cnd_proc_try_wait(*pid, &st);
    if (r < 0) return r;
    if (r == 0) return 0;
    *pid = 0;
    return cnd_errf(CND_EIO, "%s ended early (exit %d): see %s", what, st, log);
}

static int s_publish(s_run_t *x, const char *art, uint64_t ver, double acc, const char *man)
{
    char version[32];
    snprintf(version, sizeof version, "%llu", (unsigned long long)ver);
    const cnd_demo_fleet_opts_t *o = x->o;
    char a[32];
    snprintf(a, sizeof a, "%.4f", acc);
    const char *args[20] = {"rollout", "publish",   art,     "--dir", o->coord_dir, "--model",
                            o->model,  "--version", version, "--job", o->job};
    int n = 11;
    if (acc >= 0 && acc <= 1) {
        args[n++] = "--accuracy";
        args[n++] = a;
    }
    if (man) {
        args[n++] = "--manifest-out";
        args[n++] = man;
    }
    args[n] = NULL;
    return cnd_proc_run_self(x->log, args, 120);
}

/* Waits for the server's endpoint file; ep receives its one line. */
static int s_endpoint(s_run_t *x, char *ep, size_t cap)
{
    double end = cnd_now() + 30;
    for (;;) {
        int rc = s_alive(&x->serve, "condenser rollout serve", x->serve_log);
        if (rc) return rc;
        if (cnd_file_exists(x->epf)) break;
        if (cnd_now() > end)
            return cnd_errf(CND_ETIMEOUT, "rollout serve did not listen within 30 s: see %s",
                            x->serve_log);
        s_nap(250);
    }
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = cnd_file_read(x->epf, 256, &b, &n);
    if (rc) return rc;
    /* written by our child, still read as untrusted: a loopback TCP endpoint, nothing else */
    int ok = n > 16 && n < cap && strncmp((char *)b, "tcp://127.0.0.1:", 16) == 0;
    for (size_t i = 16; ok && i < n; i++) ok = b[i] >= '0' && b[i] <= '9';
    if (ok) snprintf(ep, cap, "%.*s", (int)n, (char *)b);
    free(b);
    return ok ? 0 : cnd_errf(CND_EFORMAT, "%s: not a loopback TCP endpoint", x->epf);
}

/* Until every device has sent its profile. */
static int s_wait_profiles(s_run_t *x, uint32_t want)
{
    double t0 = cnd_now(), end = t0 + x->o->timeout_s, shown = t0;
    uint64_t last = 0;
    for (;;) {
        int rc = s_alive(&x->serve, "condenser rollout serve", x->serve_log);
        if (!rc) rc = s_alive(&x->sim, "condenser fleet-sim", x->sim_log);
        if (rc) return rc;
        uint64_t en = 0, pr = 0;
        if (cnd_fleet_count(x->db, &en, &pr)) cnd_err_clear(); /* tables may not exist yet */
        if (pr >= want) return 0;
        double now = cnd_now();
        if (pr != last && now - shown >= 1) {
            s_say(x, "fleet: %llu/%u devices connected and profiled", (unsigned long long)pr, want);
            shown = now;
            last = pr;
        }
        if (now > end)
            return cnd_errf(CND_ETIMEOUT,
                            "only %llu of %u devices reported a profile within %.0f s: see %s "
                            "and %s",
                            (unsigned long long)pr, want, x->o->timeout_s, x->sim_log,
                            x->serve_log);
        s_nap(250);
    }
}

/* Reads the rollout and tallies its waves (replacing r->waves). */
static int s_read(s_run_t *x, cnd_demo_fleet_result_t *r, cnd_rollout_rec_t *rec)
{
    int rc = cnd_rstore_rollout_get(x->db, r->rollout, rec);
    if (rc) return rc;
    cnd_rdevice_t *dv = NULL;
    size_t n = 0;
    if ((rc = cnd_rstore_devices(x->db, r->rollout, &dv, &n))) return rc;
    free(r->waves);
    r->waves = NULL;
    rc = cnd_rollout_waves(&r->waves, &r->n_waves, dv, n);
    r->targeted = (uint32_t)n;
    free(dv);
    return rc;
}

static void s_say_wave(const s_run_t *x, const cnd_demo_fleet_result_t *r, uint32_t w)
{
    const cnd_rollout_wave_t *v = &r->waves[w];
    char name[16];
    snprintf(name, sizeof name, w ? "wave %u" : "canary", w);
    s_say(x, "rollout %lld %s: %u devices, %u healthy, %u failed, %u timed out (%.2f s)",
          (long long)r->rollout, name, v->devices, v->healthy, v->failed, v->timed_out,
          r->wave_s[w]);
}

/* Until the server has seen the rollout to its end and exited, showing each wave as it ends.
 * A wave's time is measured here, from the end of the one before (of `rollout create` for the
 * canary) to when this process saw it end: the device rows keep whole seconds only, and a wave
 * of a small fleet takes a fraction of one. */
static int s_wait_rollout(s_run_t *x, cnd_demo_fleet_result_t *r, double created)
{
    double end = created + x->o->timeout_s, prev = created;
    uint32_t shown = 0, cap = 0;
    for (;;) {
        int st = 0, ended = cnd_proc_try_wait(x->serve, &st);
        if (ended < 0) return ended;
        if (ended) x->serve = 0;
        cnd_rollout_rec_t rec;
        int rc = s_read(x, r, &rec);
        if (rc) return rc;
        if (!r->wave_s && r->n_waves) {
            /* the waves are fixed when the rollout is created */
            if (!(r->wave_s = calloc(r->n_waves, sizeof *r->wave_s)))
                return cnd_errf(CND_ENOMEM, "out of memory");
            cap = r->n_waves;
        }
        uint32_t done = !cnd_rollout_live(rec.state) ? r->n_waves : rec.wave;
        double now = cnd_now();
        for (; shown < done && shown < cap; shown++) {
            r->wave_s[shown] = now - prev;
            prev = now;
            s_say_wave(x, r, shown);
        }
        if (ended) {
            if (st != 0)
                return cnd_errf(CND_EIO, "condenser rollout serve failed (exit %d): see %s", st,
                                x->serve_log);
            if (cnd_rollout_live(rec.state))
                return cnd_errf(CND_ESTATE, "rollout serve stopped with rollout %lld %s: see %s",
                                (long long)r->rollout, cnd_rollout_state_name(rec.state),
                                x->serve_log);
            return 0;
        }
        if ((rc = s_alive(&x->sim, "condenser fleet-sim", x->sim_log))) return rc;
        if (cnd_now() > end)
            return cnd_errf(CND_ETIMEOUT,
                            "rollout %lld did not finish within %.0f s (state %s, wave %u): see "
                            "%s and %s",
                            (long long)r->rollout, x->o->timeout_s,
                            cnd_rollout_state_name(rec.state), rec.wave, x->serve_log, x->sim_log);
        s_nap(50);
    }
}

/* Counts the devices of fleet-sim's report running each version ("NAME FAULT DIGEST ..."). */
static int s_count_running(const s_run_t *x, cnd_demo_fleet_result_t *r)
{
    char d1[65], d2[65];
    uint8_t *b = NULL, dg[32];
    size_t n = 0;
    int rc;
    for (int k = 0; k < 2; k++) {
        if ((rc = cnd_file_read(k ? x->o->v2 : x->o->v1, 64u << 20, &b, &n))) return rc;
        cnd_sha256(dg, b, n);
        cnd_hex(k ? d2 : d1, dg, 32);
        free(b);
    }
    if ((rc = cnd_file_read(x->report, 256u << 20, &b, &n))) return rc;
    char *save = NULL;
    for (char *line = strtok_r((char *)b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128], fault[32], digest[80];
        if (sscanf(line, "%127s %31s %79s", name, fault, digest) != 3) continue;
        r->on_v2 += strcmp(digest, d2) == 0;
        r->on_v1 += strcmp(digest, d1) == 0;
    }
    free(b);
    return 0;
}

/* `rollout serve` as a child on the coordinator directory; ep receives its endpoint. */
static int s_start_serve(s_run_t *x, char *ep, size_t cap)
{
    const cnd_demo_fleet_opts_t *o = x->o;
    char maxs[32];
    /* the children's own limits, a little past ours, so none outlives the demo */
    snprintf(maxs, sizeof maxs, "%.0f", 2 * o->timeout_s + 60);
    // clang-format off
    const char *serve[] = {"rollout", "serve", "--dir", o->coord_dir,
                           "--endpoint", "tcp://127.0.0.1:*",
                           "--endpoint-file", x->epf,
                           "--heartbeat-ms", "1000",
                           "--until-idle",
                           "--max-seconds", maxs,
                           "--stats", x->stats,
                           NULL};
    // clang-format on
    if ((x->serve = cnd_proc_spawn_self(x->serve_log, serve)) < 0) {
        x->serve = 0;
        return cnd_errf(CND_EIO, "cannot start rollout serve");
    }
    return s_endpoint(x, ep, cap);
}

/* `fleet-sim` as a child: o->devices devices on v1, enrolled in the coordinator directory. */
static int s_start_fleet(s_run_t *x, const char *ep)
{
    const cnd_demo_fleet_opts_t *o = x->o;
    char maxs[32], devs[16];
    snprintf(maxs, sizeof maxs, "%.0f", 2 * o->timeout_s + 60);
    snprintf(devs, sizeof devs, "%u", o->devices);
    // clang-format off
    const char *sim[] = {"fleet-sim", "--devices", devs,
                         "--endpoint", ep,
                         "--coordinator-key", x->key,
                         "--coordinator-dir", o->coord_dir,
                         "--initial", o->v1,
                         "--initial-manifest", x->man,
                         "--model", o->model,
                         "--heartbeat-ms", "1000",
                         "--duration", maxs,
                         "--report", x->report,
                         "--quiet",
                         NULL};
    // clang-format on
    if ((x->sim = cnd_proc_spawn_self(x->sim_log, sim)) < 0) {
        x->sim = 0;
        return cnd_errf(CND_EIO, "cannot start fleet-sim");
    }
    return 0;
}

/* `rollout create` of v2 (canary, then waves doubling), and r->rollout its id. */
static int s_create(s_run_t *x, cnd_demo_fleet_result_t *r)
{
    const cnd_demo_fleet_opts_t *o = x->o;
    char canary[16], rate[16], model[160];
    r->rate = 2 * o->canary;
    snprintf(canary, sizeof canary, "%u", o->canary);
    snprintf(rate, sizeof rate, "%u", r->rate);
    snprintf(model, sizeof model, "%s@%llu", o->model, (unsigned long long)o->v2_version);
    // clang-format off
    const char *create[] = {"rollout", "create", "--dir", o->coord_dir,
                            "--model", model,
                            "--canary", canary,
                            "--rate", rate,
                            "--factor", "2",
                            "--abort-failures", "10",
                            "--abort-min", "5",
                            "--device-timeout", S_DEVICE_TIMEOUT,
                            NULL};
    // clang-format on
    int rc = cnd_proc_run_self(x->log, create, 120);
    if (rc) return rc;
    cnd_rollout_rec_t *rs = NULL;
    size_t n = 0;
    if ((rc = cnd_rstore_rollouts(x->db, &rs, &n))) return rc;
    if (n) r->rollout = rs[0].id; /* newest first */
    free(rs);
    if (!n) return cnd_errf(CND_ENOTFOUND, "rollout create left no rollout: see %s", x->log);
    return 0;
}

int cnd_demo_fleet_run(cnd_demo_fleet_result_t *r, const cnd_demo_fleet_opts_t *o)
{
    memset(r, 0, sizeof *r);
    s_run_t x;
    memset(&x, 0, sizeof x);
    x.o = o;
    const char *od = o->out_dir;
    snprintf(x.log, sizeof x.log, "%s/rollout.log", od);
    snprintf(x.serve_log, sizeof x.serve_log, "%s/serve.log", od);
    snprintf(x.sim_log, sizeof x.sim_log, "%s/fleet-sim.log", od);
    snprintf(x.epf, sizeof x.epf, "%s/endpoint", od);
    snprintf(x.man, sizeof x.man, "%s/v1.manifest", od);
    snprintf(x.report, sizeof x.report, "%s/devices.txt", od);
    snprintf(x.stats, sizeof x.stats, "%s/serve.json", od);
    snprintf(x.key, sizeof x.key, "%s/identity.pub", o->coord_dir);
    snprintf(x.db_path, sizeof x.db_path, "%s/coordinator.db", o->coord_dir);
    int rc = cnd_mkdir_p(od, 0700);
    if (rc) return rc;
    unlink(x.epf);
    s_say(&x, "publishing v1 as %s@%llu beside v2, %s@%llu, in the artifact registry", o->model,
          (unsigned long long)o->v1_version, o->model, (unsigned long long)o->v2_version);
    if ((rc = s_publish(&x, o->v1, o->v1_version, o->v1_accuracy, x.man))) return rc;
    char ep[128];
    if ((rc = s_start_serve(&x, ep, sizeof ep))) goto out;
    if ((rc = cnd_db_open(&x.db, x.db_path, CND_DB_READONLY, "coordinator database"))) goto out;
    s_say(&x, "rollout server on %s; starting %u simulated devices on v1 (logs in %s)", ep,
          o->devices, od);
    double t0 = cnd_now();
    if ((rc = s_start_fleet(&x, ep)) || (rc = s_wait_profiles(&x, o->devices))) goto out;
    r->connect_s = cnd_now() - t0;
    s_say(&x,
          "fleet: all %u devices connected and profiled (%.1f s); creating the rollout of "
          "v2: canary %u, then waves of %u, x2",
          o->devices, r->connect_s, o->canary, 2 * o->canary);
    if ((rc = s_create(&x, r))) goto out;
    double t1 = cnd_now();
    if ((rc = s_wait_rollout(&x, r, t1))) goto out;
    r->rollout_s = cnd_now() - t1;
    cnd_rollout_rec_t rec;
    if ((rc = s_read(&x, r, &rec))) goto out;
    r->state = rec.state;
    snprintf(r->reason, sizeof r->reason, "%s", rec.reason);
    /* the fleet stops by itself a moment after the rollout is over */
    int st = 0;
    rc = cnd_proc_wait(x.sim, 60, &st);
    x.sim = 0;
    if (!rc && st != 0)
        rc = cnd_errf(CND_EIO, "condenser fleet-sim failed (exit %d): see %s", st, x.sim_log);
    if (!rc) rc = s_count_running(&x, r);
out:
    if (x.sim > 0) cnd_proc_stop(x.sim, 5);
    if (x.serve > 0) cnd_proc_stop(x.serve, 5);
    cnd_db_close(&x.db);
    return rc;
}

void cnd_demo_fleet_result_free(cnd_demo_fleet_result_t *r)
{
    if (!r) return;
    free(r->waves);
    free(r->wave_s);
    r->waves = NULL;
    r->wave_s = NULL;
    r->n_waves = 0;
}

int cnd_demo_fleet_enroll(cnd_fleet_sim_t *s, sqlite3 *db, cnd_audit_t *audit, const char *actor)
{
    int own, rc = cnd_fleet_init(db);
    if (rc || (rc = cnd_db_begin(db, &own))) return rc;
    for (uint32_t k = 0; k < cnd_fleet_sim_count(s) && !rc; k++) {
        cnd_fleet_device_t fd;
        if (cnd_fleet_get(db, cnd_fleet_sim_name(s, k), &fd) == 0) continue;
        rc = cnd_fleet_enroll_logged(db, audit, actor, cnd_fleet_sim_name(s, k),
                                     cnd_fleet_sim_pubkey(s, k));
    }
    if ((rc = cnd_db_end(db, own, rc))) return rc;
    cnd_err_clear();
    return 0;
}

int cnd_demo_fleet_enroll_state(cnd_fleet_sim_t *s, cnd_rstate_t *st, cnd_audit_t *audit,
                                const char *actor)
{
    sqlite3 *db = cnd_rstate_local(st);
    uint32_t k = 0, count = cnd_fleet_sim_count(s);
    int rc = 0;
    /* Each transaction takes the state's writers' lock before the coordinator database's (the
     * order `rollout serve` takes them in). On PostgreSQL in batches: thousands of devices in one
     * would hold both locks for seconds while the replicas serving devices wait. */
    uint32_t batch = strcmp(cnd_rstate_kind(st), "postgresql") == 0 ? 256 : count;
    while (!rc && k < count) {
        int own = 0;
        if ((rc = cnd_rstate_begin(st))) return rc;
        if ((rc = cnd_db_begin(db, &own))) {
            cnd_rstate_rollback(st);
            return rc;
        }
        for (uint32_t end = count - k > batch ? k + batch : count; k < end && !rc; k++) {
            const char *name = cnd_fleet_sim_name(s, k);
            const uint8_t *pk = cnd_fleet_sim_pubkey(s, k);
            cnd_fleet_device_t fd;
            if (cnd_rstate_fleet_get(st, name, &fd) == 0) continue;
            rc = cnd_rstate_fleet_enroll(st, name, pk);
            if (!rc && audit) {
                char fpr[65];
                cnd_pubkey_fingerprint(fpr, pk);
                rc = cnd_audit_log_enroll(audit, actor, fpr, name, "device", pk, NULL, 0);
            }
        }
        if (!rc) rc = cnd_rstate_commit(st);
        if (rc) cnd_rstate_rollback(st);
        rc = cnd_db_end(db, own, rc);
    }
    if (rc) return rc;
    cnd_err_clear();
    return 0;
}
