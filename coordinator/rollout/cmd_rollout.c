/*
 * cmd_rollout.c: `condenser rollout init|enroll|publish|create|list|show|pause|resume|abort|
 * rollback|serve`, the federation operator's commands for edge fleets (docs/federation-
 * operator-guide.md, "Rollouts"). Each command opens the coordinator directory, does its work
 * and its audit entries (rollout.*, artifact.sign, admin.rollout.<command>) in one SQLite
 * transaction, and prints a short result. `serve` runs the device-serving process.
 */
#include "cli.h"
#include "json.h"
#include "cnd_rt.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "fleet_registry.h"
#include "log.h"
#include "progress.h"
#include "rollout.h"
#include "rollout_serve.h"
#include "registry.h"
#include "rollout_store.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *s_dir_help = "coordinator directory (default $CND_COORDINATOR_DIR or .)";

static const char *s_default_dir(void)
{
    const char *d = getenv("CND_COORDINATOR_DIR");
    return d && *d ? d : ".";
}

static const char *s_state_help =
    "rollout state: sqlite: (the coordinator database, default) or postgresql://... "
    "(default $CND_ROLLOUT_STATE)";

static const char *s_default_state(void)
{
    const char *d = getenv("CND_ROLLOUT_STATE");
    return d && *d ? d : NULL;
}

static const char *s_operator(void)
{
    static char buf[96];
    const char *u = getenv("USER");
    snprintf(buf, sizeof buf, "local:%s", u && *u ? u : "unknown");
    return buf;
}

/* One transaction on the coordinator database and one on the rollout state when it is elsewhere
 * (rollout_state.h); s_finish commits the state's first. */
static int s_begin(cnd_rollout_dir_t *d)
{
    /* The state's lock first, as `rollout serve` takes them (one order: no deadlock). */
    int rc = cnd_rstate_begin(d->state);
    if (rc) return rc;
    if (sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = cnd_errf(CND_EDB, "begin: %s", sqlite3_errmsg(d->db));
        cnd_rstate_rollback(d->state);
    }
    return rc;
}

/* Appends admin.rollout.<cmd> with the exact command line (cnd_audit_log_admin), then commits
 * (or rolls back on rc). */
static int s_finish(cnd_rollout_dir_t *d, int rc, const char *cmd, const char *subject)
{
    if (!rc && d->audit) {
        char command[64];
        snprintf(command, sizeof command, "rollout.%s", cmd);
        const char *const *argv = NULL;
        int argc = cnd_cli_argv(&argv);
        rc = cnd_audit_log_admin(d->audit, s_operator(), command, argc, argv, subject, NULL, "ok");
    }
    if (!rc) rc = cnd_rstate_commit(d->state);
    if (!rc) {
        if (sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            rc = cnd_errf(CND_EDB, "commit: %s", sqlite3_errmsg(d->db));
    } else {
        cnd_rstate_rollback(d->state);
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static int s_init(int argc, char **argv)
{
    const char *dir = s_default_dir();
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help}, {0}};
    const cnd_cli_t cli = {"condenser rollout init [--dir DIR]",
                           "Creates the coordinator directory (identity and database) if needed "
                           "and the rollout tables. The same directory serves `condenser "
                           "coordinator`.",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = cnd_rollout_dir_init(dir))) return rc;
    printf("coordinator directory %s ready; devices pin %s/identity.pub\n", dir, dir);
    return 0;
}

static int s_enroll(int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state(), *key = NULL;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"state", CND_OPT_STR, &state, "URL", s_state_help},
        {"key", CND_OPT_STR, &key, "FILE", "the device's identity.pub (required)"},
        {0}};
    const cnd_cli_t cli = {"condenser rollout enroll NAME --key identity.pub [--dir DIR]",
                           "Enrolls an edge device: from now on the coordinator admits its "
                           "CurveZMQ key and names it NAME.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!key) return cnd_errf(CND_EINVAL, "--key FILE is required");
    uint8_t pk[32];
    if ((rc = cnd_pubkey_read(pk, key))) return rc;
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open_state(&d, dir, 1, state))) return rc;
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, pk);
    if (!(rc = s_begin(&d))) {
        rc = cnd_rstate_fleet_enroll(d.state, pos[0], pk);
        if (!rc) rc = cnd_audit_log_enroll(d.audit, d.fpr, fpr, pos[0], "device", pk, NULL, 0);
        rc = s_finish(&d, rc, "enroll", fpr);
    }
    if (!rc) printf("device %s enrolled (fingerprint %s)\n", pos[0], fpr);
    cnd_rollout_dir_close(&d);
    return rc;
}

static int s_publish(int argc, char **argv)
{
    const char *dir = s_default_dir(), *model = NULL, *variant = NULL, *classes = NULL;
    const char *latency = NULL, *job = NULL, *mout = NULL;
    long version = -1, days = 30;
    double acc = -1;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"model", CND_OPT_STR, &model, "NAME", "model name devices run (required)"},
        {"version", CND_OPT_INT, &version, "N", "model version (required)", 0, 1e15},
        {"variant", CND_OPT_STR, &variant, "V", "variant name (default: the artifact's scheme)"},
        {"class", CND_OPT_STR, &classes, "C[,C]", "device classes it is for (default any)"},
        {"accuracy", CND_OPT_DBL, &acc, "A", "test accuracy (default: from the artifact)", 0, 1},
        {"latency", CND_OPT_STR, &latency, "CPU=US,...", "median latency per CPU class"},
        {"job", CND_OPT_STR, &job, "ID", "job that produced it"},
        {"expires-days", CND_OPT_INT, &days, "D", "manifest lifetime (default 30)", 1, 3650},
        {"manifest-out", CND_OPT_STR, &mout, "FILE", "write the signed manifest there"},
        {0}};
    const cnd_cli_t cli = {
        "condenser rollout publish ARTIFACT.cndq --model NAME --version N [options]",
        "Adds an artifact to the artifact registry as a variant of a model version, after the "
        "runtime validated it and its self-test vectors passed, and signs a manifest for it "
        "with the coordinator's key (the federation key devices trust), under the next "
        "sequence of the model name.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!model || version < 0) return cnd_errf(CND_EINVAL, "--model and --version are required");
    uint8_t *art = NULL;
    size_t len = 0;
    if ((rc = cnd_file_read(pos[0], CND_RT_MAX_FILE, &art, &len))) return rc;
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open(&d, dir, 1))) {
        free(art);
        return rc;
    }
    cnd_publish_opts_t po = {model, (uint64_t)version, variant, classes,
                             acc,   latency,           job,     days * 86400};
    int64_t aid = 0;
    uint8_t *man = NULL;
    size_t ml = 0;
    if (!(rc = s_begin(&d))) {
        rc = cnd_registry_publish(d.db, d.audit, d.id, d.fpr, art, len, &po, &aid, &man, &ml);
        rc = s_finish(&d, rc, "publish", model);
    }
    if (!rc && mout) rc = cnd_file_write_atomic(mout, man, ml, 0644);
    if (!rc) {
        cnd_rartifact_t a;
        if (!cnd_registry_get(d.db, aid, &a, NULL, NULL)) {
            char hex[65];
            printf("published %s@%ld (%s, %zu bytes, arena %llu, sha256:%s) as artifact %lld\n",
                   model, version, a.variant, len, (unsigned long long)a.arena,
                   cnd_hex(hex, a.digest, 32), (long long)aid);
        }
    }
    free(man);
    free(art);
    cnd_rollout_dir_close(&d);
    return rc;
}

static int s_create(int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state(), *model = NULL, *select = "",
               *window = NULL;
    long canary = 1, rate = 0, abort_min = 5, timeout = 300, chunk = 65536, max_active = 500;
    long days = 30;
    double factor = 2, abort_pct = 10;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"state", CND_OPT_STR, &state, "URL", s_state_help},
        {"model", CND_OPT_STR, &model, "MODEL@N", "model version to roll out (required)"},
        {"select", CND_OPT_STR, &select, "K=V[,K=V]",
         "devices by labels (class=, cpu=, name=, "
         "any label; V1|V2 alternatives)"},
        {"canary", CND_OPT_INT, &canary, "N", "devices in the canary wave (default 1)", 1, 1e9},
        {"rate", CND_OPT_INT, &rate, "BASE", "devices in the first wave after it (default all)", 0,
         1e9},
        {"factor", CND_OPT_DBL, &factor, "F", "growth of each later wave (default 2)", 1, 100},
        {"abort-failures", CND_OPT_DBL, &abort_pct, "PCT",
         "abort when more than PCT% of finished devices failed (default 10)", 0, 100},
        {"abort-min", CND_OPT_INT, &abort_min, "N",
         "... once at least N devices finished (default 5)", 0, 1e9},
        {"device-timeout", CND_OPT_INT, &timeout, "S",
         "a device with no outcome after S seconds failed (default 300)", 1, 86400 * 7},
        {"window", CND_OPT_STR, &window, "HH:MM-HH:MM", "UTC hours when new offers go out"},
        {"chunk", CND_OPT_INT, &chunk, "BYTES", "chunk size (default 65536)", 1024, 262144},
        {"max-active", CND_OPT_INT, &max_active, "N",
         "devices downloading or on trial at once (default 500)", 1, 1e7},
        {"expires-days", CND_OPT_INT, &days, "D", "offer manifest lifetime (default 30)", 1, 3650},
        {0}};
    const cnd_cli_t cli = {
        "condenser rollout create --model MODEL@N [--select K=V,...] [--canary N] [--rate BASE "
        "--factor F] [--abort-failures PCT --abort-min N] [--device-timeout S] "
        "[--window HH:MM-HH:MM]",
        "Creates a rollout: the enrolled devices that match the labels and that a variant fits "
        "(class, RAM, flash, latency budget; the most accurate fitting variant each) are "
        "shuffled into a canary and exponentially growing waves. The running rollout server "
        "picks it up. Prints the rollout id.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!model) return cnd_errf(CND_EINVAL, "--model MODEL@N is required");
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open_state(&d, dir, 1, state))) return rc;
    cnd_rollout_params_t p = {model,  select,          (uint32_t)canary,     (uint32_t)rate,
                              factor, abort_pct,       (uint32_t)abort_min,  (uint32_t)timeout,
                              window, (uint32_t)chunk, (uint32_t)max_active, days * 86400};
    cnd_rollout_summary_t sum;
    char rid[32] = "";
    if (!(rc = s_begin(&d))) {
        rc = cnd_rollout_create(d.state, d.audit, d.id, d.fpr, &p, &sum);
        snprintf(rid, sizeof rid, "%lld", (long long)sum.id);
        rc = s_finish(&d, rc, "create", rid);
    }
    if (!rc)
        printf("rollout %s: %u devices selected, %u to update in %u waves (canary %ld), %u already "
               "current, %u unfit, %u in another rollout\n",
               rid, sum.selected, sum.targeted, sum.waves, canary, sum.current, sum.unfit,
               sum.busy);
    cnd_rollout_dir_close(&d);
    return rc;
}

/* Ends a JSON document: prints it, or CND_ENOMEM naming the command. */
static int s_print_json(cnd_jw_t *w, const char *what)
{
    const char *t = cnd_jw_text(w);
    if (!t) return cnd_errf(CND_ENOMEM, "%s: out of memory", what);
    printf("%s\n", t);
    return 0;
}

static void s_json_rollout_row(cnd_jw_t *w, const cnd_rollout_rec_t *r)
{
    char v[160];
    cnd_registry_version_name(v, sizeof v, r->model, r->version);
    cnd_jw_obj(w);
    cnd_jw_key(w, "id");
    cnd_jw_int(w, r->id);
    cnd_jw_key(w, "model");
    cnd_jw_str(w, r->model);
    cnd_jw_key(w, "version");
    cnd_jw_int(w, (int64_t)r->version);
    cnd_jw_key(w, "version_name");
    cnd_jw_str(w, v);
    cnd_jw_key(w, "state");
    cnd_jw_str(w, cnd_rollout_state_name(r->state));
    cnd_jw_key(w, "wave");
    cnd_jw_int(w, r->wave);
    cnd_jw_key(w, "select"); /* "" = all devices */
    cnd_jw_str(w, r->select);
    cnd_jw_key(w, "reason");
    cnd_jw_str(w, r->reason);
    cnd_jw_obj_end(w);
}

static void s_json_artifact_row(cnd_jw_t *w, const cnd_rartifact_t *a)
{
    char v[160], hex[65];
    cnd_registry_version_name(v, sizeof v, a->model, a->version);
    cnd_jw_obj(w);
    cnd_jw_key(w, "id");
    cnd_jw_int(w, a->id);
    cnd_jw_key(w, "model");
    cnd_jw_str(w, a->model);
    cnd_jw_key(w, "version");
    cnd_jw_int(w, (int64_t)a->version);
    cnd_jw_key(w, "version_name");
    cnd_jw_str(w, v);
    cnd_jw_key(w, "variant");
    cnd_jw_str(w, a->variant);
    cnd_jw_key(w, "size");
    cnd_jw_int(w, (int64_t)a->size);
    cnd_jw_key(w, "arena");
    cnd_jw_int(w, (int64_t)a->arena);
    cnd_jw_key(w, "macs");
    cnd_jw_int(w, (int64_t)a->macs);
    cnd_jw_key(w, "accuracy"); /* null: none recorded at publication */
    if (a->accuracy >= 0)
        cnd_jw_double(w, a->accuracy);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "classes"); /* "" = any device class */
    cnd_jw_str(w, a->classes);
    cnd_jw_key(w, "latency");
    cnd_jw_str(w, a->latency);
    cnd_jw_key(w, "job");
    cnd_jw_str(w, a->job);
    cnd_jw_key(w, "sha256");
    cnd_jw_str(w, cnd_hex(hex, a->digest, 32));
    cnd_jw_obj_end(w);
}

static void s_print_rollout_row(const cnd_rollout_rec_t *r)
{
    char v[160];
    cnd_registry_version_name(v, sizeof v, r->model, r->version);
    printf("%-6lld %-24s %-13s %-5u %s%s%s\n", (long long)r->id, v,
           cnd_rollout_state_name(r->state), r->wave, r->select[0] ? r->select : "(all)",
           r->reason[0] ? " / " : "", r->reason);
}

static void s_print_artifact_row(const cnd_rartifact_t *a)
{
    char v[160], acc[16] = "n/a";
    cnd_registry_version_name(v, sizeof v, a->model, a->version);
    if (a->accuracy >= 0) snprintf(acc, sizeof acc, "%.4f", a->accuracy);
    printf("%-6lld %-24s %-8s %-9llu %-9llu %-8s %s\n", (long long)a->id, v, a->variant,
           (unsigned long long)a->size, (unsigned long long)a->arena, acc,
           a->classes[0] ? a->classes : "(any)");
}

static int s_list(int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state();
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"state", CND_OPT_STR, &state, "URL", s_state_help},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser rollout list [--dir DIR] [--json]",
                           "Lists rollouts, newest first, and the published artifacts.", opts, 0,
                           0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open_state(&d, dir, 0, state))) return rc;
    cnd_rollout_rec_t *r = NULL;
    cnd_rartifact_t *a = NULL;
    size_t n = 0, na = 0;
    if (!(rc = cnd_rstate_rollouts(d.state, &r, &n))) rc = cnd_registry_list(d.db, "", -1, &a, &na);
    if (!rc && json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "rollouts");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < n; i++) s_json_rollout_row(&w, &r[i]);
        cnd_jw_arr_end(&w);
        cnd_jw_key(&w, "artifacts");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < na; i++) s_json_artifact_row(&w, &a[i]);
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
        rc = s_print_json(&w, "rollout list");
        cnd_jw_free(&w);
    } else if (!rc) {
        printf("%-6s %-24s %-13s %-5s %s\n", "id", "version", "state", "wave", "select / reason");
        for (size_t i = 0; i < n; i++) s_print_rollout_row(&r[i]);
        printf("\n%-6s %-24s %-8s %-9s %-9s %-8s %s\n", "art", "version", "variant", "bytes",
               "arena", "accuracy", "classes");
        for (size_t i = 0; i < na; i++) s_print_artifact_row(&a[i]);
    }
    free(r);
    free(a);
    cnd_rollout_dir_close(&d);
    return rc;
}

/* "HH:MM-HH:MM" (UTC) of a rollout's offer window, or "always". */
static const char *s_window(char *out, size_t cap, const cnd_rollout_rec_t *r)
{
    if (r->win_start < 0) return "always";
    snprintf(out, cap, "%02d:%02d-%02d:%02d", r->win_start / 60, r->win_start % 60, r->win_end / 60,
             r->win_end % 60);
    return out;
}

static const char *s_wave_name(char *out, size_t cap, uint32_t w)
{
    snprintf(out, cap, w ? "%u" : "canary", w);
    return out;
}

static void s_show_text(const cnd_rollout_rec_t *r, const cnd_rollout_wave_t *wv, uint32_t nw,
                        const cnd_rdevice_t *dv, size_t n)
{
    char v[160], win[48], wn[16];
    cnd_registry_version_name(v, sizeof v, r->model, r->version);
    printf("rollout %lld of %s: %s%s%s%s\n", (long long)r->id, v, cnd_rollout_state_name(r->state),
           r->reason[0] ? " (" : "", r->reason, r->reason[0] ? ")" : "");
    printf("select '%s', canary %u, rate %u, factor %g, abort above %g%% after %u, device "
           "timeout %u s, window %s, chunk %u, wave now %u\n",
           r->select, r->canary, r->rate, r->factor, r->abort_pct, r->abort_min, r->timeout_s,
           s_window(win, sizeof win, r), r->chunk, r->wave);
    printf("%-7s %7s %7s %7s %7s %8s %7s %7s %s\n", "wave", "devices", "healthy", "failed",
           "timeout", "deferred", "open", "rolled", "other");
    for (uint32_t w = 0; w < nw; w++) {
        const cnd_rollout_wave_t *x = &wv[w];
        printf("%-7s %7u %7u %7u %7u %8u %7u %7u %u\n", s_wave_name(wn, sizeof wn, w), x->devices,
               x->healthy, x->failed, x->timed_out, x->deferred, x->open, x->rolled_back, x->other);
    }
    for (size_t i = 0; i < n; i++)
        printf("  %-24s wave %-3u %-20s %s\n", dv[i].device, dv[i].wave,
               cnd_rdevice_state_name(dv[i].state), dv[i].reason);
}

/* Rollout, policy, waves and (devices != NULL) devices as one JSON object. */
static int s_show_json(const cnd_rollout_rec_t *r, const cnd_rollout_wave_t *wv, uint32_t nw,
                       const cnd_rdevice_t *dv, size_t n)
{
    char v[160], win[48], wn[16];
    cnd_registry_version_name(v, sizeof v, r->model, r->version);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "id");
    cnd_jw_int(&w, r->id);
    cnd_jw_key(&w, "model");
    cnd_jw_str(&w, r->model);
    cnd_jw_key(&w, "version");
    cnd_jw_int(&w, (int64_t)r->version);
    cnd_jw_key(&w, "version_name");
    cnd_jw_str(&w, v);
    cnd_jw_key(&w, "state");
    cnd_jw_str(&w, cnd_rollout_state_name(r->state));
    cnd_jw_key(&w, "reason");
    cnd_jw_str(&w, r->reason);
    cnd_jw_key(&w, "job");
    cnd_jw_str(&w, r->job);
    cnd_jw_key(&w, "wave"); /* the current one, 0 = canary */
    cnd_jw_int(&w, r->wave);
    cnd_jw_key(&w, "policy");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "select");
    cnd_jw_str(&w, r->select);
    cnd_jw_key(&w, "canary");
    cnd_jw_int(&w, r->canary);
    cnd_jw_key(&w, "rate");
    cnd_jw_int(&w, r->rate);
    cnd_jw_key(&w, "factor");
    cnd_jw_double(&w, r->factor);
    cnd_jw_key(&w, "abort_failures_pct");
    cnd_jw_double(&w, r->abort_pct);
    cnd_jw_key(&w, "abort_min");
    cnd_jw_int(&w, r->abort_min);
    cnd_jw_key(&w, "device_timeout_s");
    cnd_jw_int(&w, r->timeout_s);
    cnd_jw_key(&w, "window"); /* null: offers at any hour */
    if (r->win_start < 0)
        cnd_jw_null(&w);
    else
        cnd_jw_str(&w, s_window(win, sizeof win, r));
    cnd_jw_key(&w, "chunk");
    cnd_jw_int(&w, r->chunk);
    cnd_jw_key(&w, "max_active");
    cnd_jw_int(&w, r->max_active);
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "waves");
    cnd_jw_arr(&w);
    for (uint32_t i = 0; i < nw; i++) {
        const cnd_rollout_wave_t *x = &wv[i];
        const char *k[] = {"devices",  "healthy", "failed",      "timed_out",
                           "deferred", "open",    "rolled_back", "other"};
        const uint32_t val[] = {x->devices,  x->healthy, x->failed,      x->timed_out,
                                x->deferred, x->open,    x->rolled_back, x->other};
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "wave");
        cnd_jw_int(&w, i);
        cnd_jw_key(&w, "name");
        cnd_jw_str(&w, s_wave_name(wn, sizeof wn, i));
        for (size_t f = 0; f < sizeof val / sizeof val[0]; f++) {
            cnd_jw_key(&w, k[f]);
            cnd_jw_int(&w, val[f]);
        }
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    if (dv) {
        cnd_jw_key(&w, "devices");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < n; i++) {
            cnd_jw_obj(&w);
            cnd_jw_key(&w, "device");
            cnd_jw_str(&w, dv[i].device);
            cnd_jw_key(&w, "wave");
            cnd_jw_int(&w, dv[i].wave);
            cnd_jw_key(&w, "state");
            cnd_jw_str(&w, cnd_rdevice_state_name(dv[i].state));
            cnd_jw_key(&w, "reason");
            cnd_jw_str(&w, dv[i].reason);
            cnd_jw_obj_end(&w);
        }
        cnd_jw_arr_end(&w);
    }
    cnd_jw_obj_end(&w);
    int rc = s_print_json(&w, "rollout show");
    cnd_jw_free(&w);
    return rc;
}

static int s_show(int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state();
    int devices = 0, json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"state", CND_OPT_STR, &state, "URL", s_state_help},
                              {"devices", CND_OPT_FLAG, &devices, NULL, "list every device"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser rollout show ID [--devices] [--dir DIR] [--json]",
                           "Shows a rollout: policy, state, per-wave outcomes and, with "
                           "--devices, where each device stands and why.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    char *end;
    long long id = strtoll(pos[0], &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a rollout id", pos[0]);
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open_state(&d, dir, 0, state))) return rc;
    cnd_rollout_rec_t r;
    cnd_rdevice_t *dv = NULL;
    cnd_rollout_wave_t *wv = NULL;
    uint32_t nw = 0;
    size_t n = 0;
    if (!(rc = cnd_rstate_rollout_get(d.state, id, &r)) &&
        !(rc = cnd_rstate_devices(d.state, id, &dv, &n)) &&
        !(rc = cnd_rollout_waves(&wv, &nw, dv, n))) {
        if (json)
            rc = s_show_json(&r, wv, nw, devices ? dv : NULL, n);
        else
            s_show_text(&r, wv, nw, dv, devices ? n : 0);
    }
    free(wv);
    free(dv);
    cnd_rollout_dir_close(&d);
    return rc;
}

static int s_admin(const char *action, int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state(), *reason = NULL;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"state", CND_OPT_STR, &state, "URL", s_state_help},
                              {"reason", CND_OPT_STR, &reason, "TEXT", "why (logged)"},
                              {0}};
    char usage[128], summary[400];
    snprintf(usage, sizeof usage, "condenser rollout %s ID [--reason TEXT] [--dir DIR]", action);
    snprintf(summary, sizeof summary, "%s",
             !strcmp(action, "pause")    ? "Stops new offers; devices in flight finish."
             : !strcmp(action, "resume") ? "Resumes offers of a paused rollout."
             : !strcmp(action, "abort")
                 ? "Stops the rollout for good: no new offers, devices in "
                   "flight finish, nobody is rolled back."
                 : "Stops the rollout and sends every device it offered the "
                   "artifact to a signed rollback to its previous artifact.");
    const cnd_cli_t cli = {usage, summary, opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    char *end;
    long long id = strtoll(pos[0], &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a rollout id", pos[0]);
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open_state(&d, dir, 1, state))) return rc;
    if (!(rc = s_begin(&d))) {
        rc = cnd_rollout_admin(d.state, d.audit, s_operator(), id, action, reason);
        rc = s_finish(&d, rc, action, pos[0]);
    }
    if (!rc) printf("rollout %lld: %s requested\n", id, action);
    cnd_rollout_dir_close(&d);
    return rc;
}

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* Each connected device holds one file descriptor in this process: raises the soft limit to the
 * hard one (the shell's default, often 1,024, would stop accepting there) and says how far it goes.
 */
static void s_raise_fd_limit(int quiet)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!quiet && rl.rlim_cur != RLIM_INFINITY)
        fprintf(stderr,
                "rollout serve: file descriptor limit %llu: at most about %llu connected devices "
                "(raise the hard limit, e.g. systemd LimitNOFILE=, for more)\n",
                (unsigned long long)rl.rlim_cur,
                (unsigned long long)(rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 0));
}

static int s_serve(int argc, char **argv)
{
    const char *dir = s_default_dir(), *state = s_default_state(),
               *endpoint = "tcp://127.0.0.1:7710", *epf = NULL;
    const char *stats = NULL, *metrics = NULL, *log_level = "info", *art_url = NULL;
    long hb = 10000, offline = 30;
    double max_s = 0;
    int until_idle = 0, quiet = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"state", CND_OPT_STR, &state, "URL", s_state_help},
        {"endpoint", CND_OPT_STR, &endpoint, "EP",
         "where to listen (default tcp://127.0.0.1:7710)"},
        {"endpoint-file", CND_OPT_STR, &epf, "FILE", "write the bound endpoint there"},
        {"heartbeat-ms", CND_OPT_INT, &hb, "MS", "heartbeat asked of devices (default 10000)", 100,
         3600000},
        {"offline-after", CND_OPT_INT, &offline, "S",
         "a silent device is offline after (default 30)", 1, 86400},
        {"until-idle", CND_OPT_FLAG, &until_idle, NULL, "exit once rollouts are over"},
        {"max-seconds", CND_OPT_DBL, &max_s, "S", "exit after S seconds", 0, 1e9},
        {"stats", CND_OPT_STR, &stats, "FILE", "write run statistics (JSON) there on exit"},
        {"metrics", CND_OPT_STR, &metrics, "HOST:PORT",
         "serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9461)"},
        {"artifact-url", CND_OPT_STR, &art_url, "URL",
         "offers tell devices to fetch artifact bytes from this content-addressed cache "
         "(URL/<hex digest>, filled by rollout export-cache), falling back to chunks here"},
        {"quiet", CND_OPT_FLAG, &quiet, NULL, "no progress lines"},
        {"log-level", CND_OPT_STR, &log_level, "LEVEL",
         "error, warn, info (default) or debug: the least severe lines logged"},
        {0}};
    const cnd_cli_t cli = {
        "condenser rollout serve [--dir DIR] [--endpoint EP] [options]",
        "Serves edge devices: admits enrolled device keys over CurveZMQ, records their profiles "
        "and runs the rollouts (offers, chunked transfers, waves, timeouts, aborts, rollbacks). "
        "Until the coordinator daemon hosts the rollout engine, this process does.",
        opts,
        0,
        0,
        "rollout-serve"};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_log_level_t level;
    if ((rc = cnd_log_level_parse(&level, log_level))) return rc;
    cnd_log_set_level(level);
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    s_raise_fd_limit(quiet);
    cnd_rollout_serve_opts_t o = {dir,
                                  endpoint,
                                  epf,
                                  (int)hb,
                                  (int)offline,
                                  until_idle,
                                  max_s,
                                  quiet ? NULL : cnd_log_emit,
                                  "rollout-serve",
                                  metrics,
                                  art_url,
                                  state};
    cnd_rollout_serve_stats_t st;
    rc = cnd_rollout_serve(&o, &s_stop, &st);
    if (stats) {
        char buf[512];
        int n = snprintf(buf, sizeof buf,
                         "{\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"peak_rss_kb\":%llu,"
                         "\"frames_in\":%llu,\"frames_out\":%llu,\"rejected\":%llu,"
                         "\"chunks_sent\":%llu,\"bytes_sent\":%llu}\n",
                         st.seconds, st.cpu_seconds, (unsigned long long)st.peak_rss_kb,
                         (unsigned long long)st.frames_in, (unsigned long long)st.frames_out,
                         (unsigned long long)st.rejected, (unsigned long long)st.chunks_sent,
                         (unsigned long long)st.bytes_sent);
        int wrc = cnd_file_write_atomic(stats, buf, (size_t)n, 0644);
        if (!rc) rc = wrc;
    }
    return rc;
}

/* rollout export-cache: every published artifact as OUT/<hex digest>, the layout an HTTP cache
 * serves to devices (rollout serve --artifact-url). A file already there with the right bytes is
 * kept; one with other bytes (a stale or poisoned copy) is replaced and counted. */
static int s_export_cache(int argc, char **argv)
{
    const char *dir = s_default_dir(), *out = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"out", CND_OPT_STR, &out, "DIR", "directory a web server publishes (required)"},
        {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser rollout export-cache --out DIR [--dir DIR] [--json]",
        "Writes every published artifact to DIR/<lowercase hex SHA-256>, each written atomically "
        "and mode 0644, for any web server, reverse proxy or CDN to serve. rollout serve "
        "--artifact-url names that location in its offers; devices check every byte against the "
        "signed manifest, so the cache needs no trust. A file already there with the right "
        "bytes is kept, one with other bytes is replaced. Run it after each rollout publish.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!out) return cnd_errf(CND_EINVAL, "--out DIR is required");
    struct stat sb;
    if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cnd_errf(CND_ENOTFOUND, "%s: not a directory (create it first)", out);
    cnd_rollout_dir_t d;
    if ((rc = cnd_rollout_dir_open(&d, dir, 0))) return rc;
    cnd_rartifact_t *a = NULL;
    size_t na = 0, written = 0, kept = 0, replaced = 0;
    uint64_t bytes = 0;
    rc = cnd_registry_list(d.db, "", -1, &a, &na);
    for (size_t i = 0; !rc && i < na; i++) {
        uint8_t *art = NULL, *old = NULL, dg[32];
        size_t len = 0, olen = 0;
        char hex[65], path[4200];
        cnd_hex(hex, a[i].digest, 32);
        snprintf(path, sizeof path, "%s/%s", out, hex);
        if ((rc = cnd_registry_get(d.db, a[i].id, &a[i], &art, &len))) break;
        cnd_sha256(dg, art, len);
        if (memcmp(dg, a[i].digest, 32) != 0) {
            rc = cnd_errf(CND_ECORRUPT, "artifact %lld: its stored bytes do not match its digest",
                          (long long)a[i].id);
            free(art);
            break;
        }
        int have = access(path, F_OK) == 0;
        if (have && !cnd_file_read(path, len + 1, &old, &olen) && olen == len &&
            memcmp(old, art, len) == 0) {
            kept++;
        } else {
            cnd_err_clear();
            rc = cnd_file_write_atomic(path, art, len, 0644);
            if (!rc) {
                written++;
                replaced += (size_t)have;
                bytes += len;
            }
        }
        free(old);
        free(art);
    }
    if (!rc && json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "artifacts");
        cnd_jw_int(&w, (int64_t)na);
        cnd_jw_key(&w, "written");
        cnd_jw_int(&w, (int64_t)written);
        cnd_jw_key(&w, "replaced");
        cnd_jw_int(&w, (int64_t)replaced);
        cnd_jw_key(&w, "kept");
        cnd_jw_int(&w, (int64_t)kept);
        cnd_jw_key(&w, "bytes_written");
        cnd_jw_int(&w, (int64_t)bytes);
        cnd_jw_obj_end(&w);
        rc = s_print_json(&w, "rollout export-cache");
        cnd_jw_free(&w);
    } else if (!rc) {
        printf("%zu artifacts in %s: %zu written (%llu bytes), %zu of them replacing other bytes, "
               "%zu already there\n",
               na, out, written, (unsigned long long)bytes, replaced, kept);
    }
    free(a);
    cnd_rollout_dir_close(&d);
    return rc;
}

int cnd_cmd_rollout(int argc, char **argv)
{
    static const char *subs = "init, enroll, publish, export-cache, create, list, show, pause, "
                              "resume, abort, rollback, serve";
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: condenser rollout init|enroll|publish|export-cache|create|list|show|pause|"
               "resume|abort|rollback|serve [options]   (--help after each)\n");
        return argc < 2 ? cnd_errf(CND_EINVAL, "a subcommand is required: %s", subs) : 0;
    }
    const char *c = argv[1];
    if (!strcmp(c, "init")) return s_init(argc - 1, argv + 1);
    if (!strcmp(c, "enroll")) return s_enroll(argc - 1, argv + 1);
    if (!strcmp(c, "publish")) return s_publish(argc - 1, argv + 1);
    if (!strcmp(c, "export-cache")) return s_export_cache(argc - 1, argv + 1);
    if (!strcmp(c, "create")) return s_create(argc - 1, argv + 1);
    if (!strcmp(c, "list")) return s_list(argc - 1, argv + 1);
    if (!strcmp(c, "show")) return s_show(argc - 1, argv + 1);
    if (!strcmp(c, "serve")) return s_serve(argc - 1, argv + 1);
    if (!strcmp(c, "pause") || !strcmp(c, "resume") || !strcmp(c, "abort") ||
        !strcmp(c, "rollback"))
        return s_admin(c, argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'rollout %s' (%s)", c, subs);
}
