/*
 * rollout.c: creation, operator actions and the rollout engine (see rollout.h); artifacts and
 * every manifest the engine sends come from the artifact registry (registry.h).
 *
 * Engine memory: the live rollouts (running, paused, rolling back) plus the newest finished one
 * of each model (for late joiners and stragglers' reports), each with its device rows; a hash
 * table of nodes (devices that connected or belong to a loaded rollout) linking each to the
 * newest loaded rollout that holds it; an artifact cache (bytes and per-chunk SHA-256). Every
 * change to a device row or a rollout is written through to the rollout state (rollout_state.h:
 * SQLite or PostgreSQL) at once, inside the caller's transaction.
 *
 * Rules the engine keeps, in tick order:
 *   1. operator changes (state column written by `condenser rollout pause|...`) are adopted;
 *   2. offered devices past their deadline become `timeout` (a failure);
 *   3. a running rollout inside its window offers the artifact to the online devices of the
 *      current wave and to earlier waves' deferred devices that came back, up to max_active;
 *      a device still offline when its wave comes is `deferred` and does not hold the wave up;
 *      when every device of the wave is final (or deferred) the wave is logged and the next
 *      starts; after the last wave the rollout is completed;
 *   4. a rolling-back rollout sends each device it offered the artifact to a signed rollback to
 *      its previous artifact (signed once per previous artifact, committed before sending), and
 *      ends rolled_back when every one of them confirmed, failed or timed out.
 * Abort: after each outcome, failures (failed, refused, timeout) over finished devices are
 * compared with the threshold once at least abort_min have finished.
 */
#include "rollout.h"
#include "audit_actions.h"
#include "clock.h"
#include "digest.h"
#include "fleet_registry.h"
#include "rng.h"
#include "rollout_state.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================
 * helpers shared by publication, creation and the engine
 * ========================================================================================== */

/* Latency of a variant on a CPU class: what devices measured, else what was published. */
static int s_latency(cnd_rstate_t *st, const cnd_rartifact_t *a, const char *cpu, uint32_t *us)
{
    if (!cpu[0]) return 0;
    if (cnd_rstate_latency(st, a->id, cpu, us) == 0) return 1;
    size_t cl = strlen(cpu);
    for (const char *p = a->latency; *p;) {
        const char *eq = strchr(p, '=');
        if (!eq) break;
        if ((size_t)(eq - p) == cl && memcmp(p, cpu, cl) == 0) {
            *us = (uint32_t)strtoul(eq + 1, NULL, 10);
            return 1;
        }
        const char *c = strchr(eq, ',');
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

static int s_class_ok(const char *classes, const char *hw)
{
    if (!classes[0]) return 1;
    size_t n = strlen(hw);
    for (const char *p = classes;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && memcmp(p, hw, n) == 0) return 1;
        if (!c) return 0;
        p = c + 1;
    }
}

/* The best variant that fits the device: class, flash (next to what it runs), RAM and latency;
 * the best is the most accurate, then the one with more weight bits, then the smaller. Returns
 * its index or -1 with why filled. */
static int s_best_fit(cnd_rstate_t *st, const cnd_rartifact_t *v, size_t n,
                      const cnd_fleet_device_t *d, uint64_t running_size, char *why, size_t cap)
{
    int best = -1;
    snprintf(why, cap, "no variant");
    for (size_t i = 0; i < n; i++) {
        const cnd_rartifact_t *a = &v[i];
        if (!s_class_ok(a->classes, d->hw)) {
            snprintf(why, cap, "%s is built for classes '%s', not '%s'", a->variant, a->classes,
                     d->hw);
            continue;
        }
        if (a->size > d->flash || running_size > d->flash - a->size) {
            snprintf(why, cap, "%s needs %llu bytes of flash next to %llu, budget %llu", a->variant,
                     (unsigned long long)a->size, (unsigned long long)running_size,
                     (unsigned long long)d->flash);
            continue;
        }
        if (a->arena + a->size > d->ram) {
            snprintf(why, cap, "%s needs %llu bytes of RAM, budget %llu", a->variant,
                     (unsigned long long)(a->arena + a->size), (unsigned long long)d->ram);
            continue;
        }
        uint32_t us;
        if (d->budget_us && s_latency(st, a, d->cpu, &us) && us > d->budget_us) {
            snprintf(why, cap, "%s takes %u us on %s, budget %u us", a->variant, us, d->cpu,
                     d->budget_us);
            continue;
        }
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const cnd_rartifact_t *b = &v[best];
        int better = a->accuracy != b->accuracy && a->accuracy >= 0 && b->accuracy >= 0
                         ? a->accuracy > b->accuracy
                     : a->wbits != b->wbits ? a->wbits > b->wbits
                                            : a->size < b->size;
        if (better) best = (int)i;
    }
    return best;
}

static int s_parse_hhmm(const char *s, int *min)
{
    unsigned h, m;
    char extra;
    if (sscanf(s, "%2u:%2u%c", &h, &m, &extra) < 2 || h > 23 || m > 59) return -1;
    *min = (int)(h * 60 + m);
    return 0;
}

static int s_parse_window(const char *w, int *a, int *b)
{
    *a = *b = -1;
    if (!w || !w[0]) return 0;
    const char *dash = strchr(w, '-');
    char first[8];
    if (!dash || dash - w > 5) goto bad;
    snprintf(first, sizeof first, "%.*s", (int)(dash - w), w);
    if (s_parse_hhmm(first, a) || s_parse_hhmm(dash + 1, b) || strlen(dash + 1) != 5 || *a == *b)
        goto bad;
    return 0;
bad:
    *a = *b = -1;
    return cnd_errf(CND_EINVAL, "--window '%s': expected HH:MM-HH:MM (UTC), start != end", w);
}

static int s_in_window(const cnd_rollout_rec_t *r, int64_t now_ms)
{
    if (r->win_start < 0) return 1;
    int m = (int)((now_ms / 60000) % 1440);
    if (r->win_start < r->win_end) return m >= r->win_start && m < r->win_end;
    return m >= r->win_start || m < r->win_end;
}

/* Resolves "model@N" (or "N" with a single model in the registry); versions start at 0. */
static int s_resolve(sqlite3 *db, const char *spec, char *model, size_t cap, uint64_t *version)
{
    const char *at = strrchr(spec, '@'), *num = at ? at + 1 : spec;
    char *end;
    *version = strtoull(num, &end, 10);
    if (*end || end == num || *num < '0' || *num > '9')
        return cnd_errf(CND_EINVAL, "--model '%s': expected MODEL@VERSION", spec);
    if (at) {
        snprintf(model, cap, "%.*s", (int)(at - spec), spec);
        return 0;
    }
    cnd_rartifact_t *all;
    size_t n;
    int rc = cnd_registry_list(db, "", (int64_t)*version, &all, &n);
    if (rc) return rc;
    model[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (model[0] && strcmp(model, all[i].model) != 0) {
            free(all);
            return cnd_errf(CND_EINVAL,
                            "--model %s: several models have that version; use "
                            "MODEL@VERSION",
                            spec);
        }
        snprintf(model, cap, "%s", all[i].model);
    }
    free(all);
    if (!model[0]) return cnd_errf(CND_ENOTFOUND, "--model %s: no artifact has that version", spec);
    return 0;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rollout creation, one step each: the record from the parameters, where each selected device
 * stands, the waves, the offer manifests, the audit entry. */
typedef struct {
    cnd_rollout_rec_t r;
    cnd_fleet_select_t sel;
    cnd_rartifact_t *v; /* the variants of the version */
    size_t nv;
    cnd_fleet_device_t *devs; /* every enrolled device */
    size_t nd;
    char **busy; /* devices held by a live rollout, sorted */
    size_t nbusy;
    int *choice;       /* per device: its variant (index into v), -2 when not targeted */
    uint32_t *order;   /* targeted devices (indexes into devs), shuffled into waves */
    uint32_t n_target; /* entries of order */
    int64_t now;
} s_plan_t;

static void s_plan_free(s_plan_t *pl)
{
    for (size_t i = 0; i < pl->nbusy; i++) free(pl->busy[i]);
    free(pl->busy);
    free(pl->devs);
    free(pl->v);
    free(pl->choice);
    free(pl->order);
}

/* The rollout record from the parameters, checked, and the variants it rolls out. */
static int s_plan_record(s_plan_t *pl, sqlite3 *db, const cnd_rollout_params_t *p)
{
    cnd_rollout_rec_t *r = &pl->r;
    int rc = s_resolve(db, p->model_version, r->model, sizeof r->model, &r->version);
    if (rc) return rc;
    if ((rc = cnd_fleet_select_parse(&pl->sel, p->select))) return rc;
    if ((rc = s_parse_window(p->window, &r->win_start, &r->win_end))) return rc;
    if (p->factor < 1 || p->factor > 100 || p->abort_pct < 0 || p->abort_pct > 100 ||
        p->timeout_s < 1)
        return cnd_errf(CND_EINVAL, "--factor must be 1..100, --abort-failures 0..100, "
                                    "--device-timeout >= 1");
    snprintf(r->select, sizeof r->select, "%s", p->select ? p->select : "");
    r->canary = p->canary ? p->canary : 1;
    r->rate = p->rate;
    r->factor = p->factor;
    r->abort_pct = p->abort_pct;
    r->abort_min = p->abort_min;
    r->timeout_s = p->timeout_s;
    r->chunk = p->chunk ? p->chunk : 65536;
    if (r->chunk < CND_PROTO_CHUNK_MIN || r->chunk > CND_PROTO_CHUNK_MAX)
        return cnd_errf(CND_EINVAL, "--chunk %u: must be %u..%u", r->chunk, CND_PROTO_CHUNK_MIN,
                        CND_PROTO_CHUNK_MAX);
    r->max_active = p->max_active ? p->max_active : 500;
    r->state = CND_ROLLOUT_RUNNING;
    if ((rc = cnd_registry_list(db, r->model, (int64_t)r->version, &pl->v, &pl->nv))) return rc;
    if (!pl->nv)
        return cnd_errf(CND_ENOTFOUND,
                        "no artifact of %s@%llu is published (condenser rollout "
                        "publish)",
                        r->model, (unsigned long long)r->version);
    snprintf(r->job, sizeof r->job, "%s", pl->v[0].job);
    return 0;
}

/* A device row of this rollout with what every row says about the device. */
static void s_plan_row(const s_plan_t *pl, const cnd_fleet_device_t *d, cnd_rdevice_t *row)
{
    memset(row, 0, sizeof *row);
    row->rollout = pl->r.id;
    snprintf(row->device, sizeof row->device, "%s", d->name);
    row->has_prev = d->has_running;
    memcpy(row->prev_digest, d->running_digest, 32);
    row->updated_ms = pl->now;
}

/* Device i: not selected (nothing), busy elsewhere or unfit (skipped), already running the
 * target (current) -- each written with its reason -- or targeted (choice and order). */
static int s_plan_device(s_plan_t *pl, cnd_rstate_t *st, size_t i, cnd_rollout_summary_t *out)
{
    sqlite3 *db = cnd_rstate_local(st);
    const cnd_fleet_device_t *d = &pl->devs[i];
    pl->choice[i] = -2;
    if (d->revoked_ms || !cnd_fleet_select_match(&pl->sel, d)) return 0;
    out->selected++;
    cnd_rdevice_t row;
    s_plan_row(pl, d, &row);
    const char *nm = d->name;
    if (pl->nbusy && bsearch(&nm, pl->busy, pl->nbusy, sizeof *pl->busy, s_cmp_str)) {
        out->busy++;
        row.state = CND_RDEV_SKIPPED;
        snprintf(row.reason, sizeof row.reason, "in another live rollout");
        return cnd_rstate_device_put(st, &row);
    }
    uint64_t running_size = 0;
    cnd_rartifact_t ra;
    if (d->has_running && cnd_registry_by_digest(db, d->running_digest, &ra) == 0)
        running_size = ra.size;
    cnd_err_clear();
    char why[200];
    int b = s_best_fit(st, pl->v, pl->nv, d, running_size, why, sizeof why);
    if (b < 0) {
        out->unfit++;
        row.state = CND_RDEV_SKIPPED;
        snprintf(row.reason, sizeof row.reason, "no variant fits: %s", why);
    } else if (d->has_running && memcmp(d->running_digest, pl->v[b].digest, 32) == 0) {
        out->current++;
        row.artifact = pl->v[b].id;
        row.state = CND_RDEV_CURRENT;
        snprintf(row.reason, sizeof row.reason, "already running %s", pl->v[b].variant);
    } else {
        pl->choice[i] = b;
        pl->order[pl->n_target++] = (uint32_t)i;
        return 0;
    }
    return cnd_rstate_device_put(st, &row);
}

/* The targeted devices, shuffled with the rollout id as seed, into the canary and waves that
 * grow by the factor (the first after the canary has `rate` devices, or all of them). */
static int s_plan_waves(s_plan_t *pl, cnd_rstate_t *st, cnd_rollout_summary_t *out)
{
    const cnd_rollout_rec_t *r = &pl->r;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, (uint64_t)r->id * 0x9E3779B97F4A7C15ull);
    cnd_rng_shuffle_u32(&rng, pl->order, pl->n_target);
    uint32_t wave = 0, in_wave = 0;
    double wsize = r->canary;
    for (uint32_t k = 0; k < pl->n_target; k++) {
        if (in_wave >= (uint32_t)ceil(wsize)) {
            wave++;
            in_wave = 0;
            wsize = wave == 1 ? (r->rate ? r->rate : pl->n_target) : wsize * r->factor;
            if (wsize > 1e9) wsize = 1e9;
        }
        in_wave++;
        cnd_rdevice_t row;
        s_plan_row(pl, &pl->devs[pl->order[k]], &row);
        row.wave = wave;
        row.artifact = pl->v[pl->choice[pl->order[k]]].id;
        row.state = CND_RDEV_PENDING;
        int rc = cnd_rstate_device_put(st, &row);
        if (rc) return rc;
    }
    out->targeted = pl->n_target;
    out->waves = pl->n_target ? wave + 1 : 0;
    return 0;
}

/* Fresh offer manifests (the registry's next sequences) for the variants in use. */
static int s_plan_offers(s_plan_t *pl, cnd_rstate_t *st, cnd_audit_t *audit,
                         const cnd_identity_t *id, const char *actor, int64_t expires_s)
{
    for (size_t i = 0; i < pl->nv; i++) {
        int used = 0;
        for (uint32_t k = 0; k < pl->n_target && !used; k++)
            used = pl->choice[pl->order[k]] == (int)i;
        if (!used) continue;
        uint8_t *man;
        size_t ml;
        uint64_t seq = 0;
        int rc = cnd_registry_sign(cnd_rstate_local(st), audit, id, actor, &pl->v[i], 0, expires_s,
                                   &man, &ml, &seq);
        if (rc) return rc;
        rc = cnd_rstate_manifest_put(st, pl->r.id, pl->v[i].id, "offer", seq, man, ml);
        free(man);
        if (rc) return rc;
    }
    return 0;
}

static int s_audit_create(cnd_audit_t *audit, const char *actor, const s_plan_t *pl,
                          const cnd_rollout_params_t *p, const cnd_rollout_summary_t *out)
{
    if (!audit) return 0;
    const cnd_rollout_rec_t *r = &pl->r;
    char ver[160];
    cnd_registry_version_name(ver, sizeof ver, r->model, r->version);
    cnd_audit_rollout_create_t c = {.rollout = r->id,
                                    .job = r->job,
                                    .version = ver,
                                    .select = r->select,
                                    .devices = pl->n_target,
                                    .canary = pl->n_target < r->canary ? pl->n_target : r->canary,
                                    .selected = out->selected,
                                    .unfit = out->unfit,
                                    .current = out->current,
                                    .waves = out->waves,
                                    .rate = r->rate,
                                    .factor = r->factor,
                                    .abort_failures_pct = r->abort_pct,
                                    .abort_min = r->abort_min,
                                    .device_timeout_s = r->timeout_s,
                                    .window = p->window ? p->window : ""};
    return cnd_audit_log_rollout_create(audit, actor, &c);
}

int cnd_rollout_create(cnd_rstate_t *st, cnd_audit_t *audit, const cnd_identity_t *id,
                       const char *actor, const cnd_rollout_params_t *p, cnd_rollout_summary_t *out)
{
    memset(out, 0, sizeof *out);
    s_plan_t pl;
    memset(&pl, 0, sizeof pl);
    int rc = s_plan_record(&pl, cnd_rstate_local(st), p);
    if (!rc) rc = cnd_rstate_fleet_list(st, &pl.devs, &pl.nd);
    if (!rc) rc = cnd_rstate_busy_devices(st, &pl.busy, &pl.nbusy);
    if (!rc && pl.nbusy) qsort(pl.busy, pl.nbusy, sizeof *pl.busy, s_cmp_str);
    if (!rc) rc = cnd_rstate_rollout_insert(st, &pl.r);
    if (!rc) {
        out->id = pl.r.id;
        pl.now = cnd_unix_time() * 1000;
        pl.choice = calloc(pl.nd ? pl.nd : 1, sizeof *pl.choice);
        pl.order = calloc(pl.nd ? pl.nd : 1, sizeof *pl.order);
        if (!pl.choice || !pl.order) rc = cnd_errf(CND_ENOMEM, "out of memory");
    }
    for (size_t i = 0; !rc && i < pl.nd; i++) rc = s_plan_device(&pl, st, i, out);
    if (!rc) rc = s_plan_waves(&pl, st, out);
    if (!rc) rc = s_plan_offers(&pl, st, audit, id, actor, p->expires_s);
    if (!rc && pl.n_target == 0) {
        pl.r.state = CND_ROLLOUT_COMPLETED;
        snprintf(pl.r.reason, sizeof pl.r.reason, "no device to update");
        rc = cnd_rstate_rollout_update(st, &pl.r);
    }
    if (!rc) rc = s_audit_create(audit, actor, &pl, p, out);
    s_plan_free(&pl);
    return rc;
}

int cnd_rollout_waves(cnd_rollout_wave_t **out, uint32_t *n_waves, const cnd_rdevice_t *dv,
                      size_t n)
{
    *out = NULL;
    *n_waves = 0;
    uint32_t maxw = 0;
    for (size_t i = 0; i < n; i++) {
        /* waves are non-empty, so a larger number cannot come from the engine */
        if (dv[i].wave >= n)
            return cnd_errf(CND_ECORRUPT, "rollout %lld: device %s in wave %u of %zu devices",
                            (long long)dv[i].rollout, dv[i].device, dv[i].wave, n);
        if (dv[i].wave > maxw) maxw = dv[i].wave;
    }
    if (!n) return 0;
    cnd_rollout_wave_t *w = calloc((size_t)maxw + 1, sizeof *w);
    if (!w) return cnd_errf(CND_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        cnd_rollout_wave_t *x = &w[dv[i].wave];
        x->devices++;
        switch (dv[i].state) {
        case CND_RDEV_HEALTHY: x->healthy++; break;
        case CND_RDEV_FAILED:
        case CND_RDEV_REFUSED: x->failed++; break;
        case CND_RDEV_TIMEOUT: x->timed_out++; break;
        case CND_RDEV_DEFERRED: x->deferred++; break;
        case CND_RDEV_OFFERED:
        case CND_RDEV_PENDING:
        case CND_RDEV_ROLLBACK_SENT: x->open++; break;
        case CND_RDEV_ROLLED_BACK: x->rolled_back++; break;
        default: x->other++; break;
        }
        if (dv[i].offered_ms > 0) {
            if (!x->first_offer_ms || dv[i].offered_ms < x->first_offer_ms)
                x->first_offer_ms = dv[i].offered_ms;
            if (dv[i].updated_ms > x->last_update_ms) x->last_update_ms = dv[i].updated_ms;
        }
    }
    *out = w;
    *n_waves = maxw + 1;
    return 0;
}

/* Operator actions: from which states each is allowed, the state it writes, the word its
 * rollout.state entry logs (audit_actions.h) and why it is refused otherwise. */
#define S_FROM(st) (1u << (st))
static const struct {
    const char *action;
    unsigned from; /* S_FROM bits */
    cnd_rollout_state_t to;
    const char *logged;
    const char *refusal; /* after "rollout N is STATE" */
} s_actions[] = {
    {"pause", S_FROM(CND_ROLLOUT_RUNNING), CND_ROLLOUT_PAUSED, "paused",
     ": only a running rollout can be paused"},
    {"resume", S_FROM(CND_ROLLOUT_PAUSED), CND_ROLLOUT_RUNNING, "resumed",
     ": only a paused rollout can be resumed"},
    {"abort", S_FROM(CND_ROLLOUT_RUNNING) | S_FROM(CND_ROLLOUT_PAUSED), CND_ROLLOUT_ABORTED,
     "aborted", ": nothing to abort"},
    {"rollback",
     S_FROM(CND_ROLLOUT_RUNNING) | S_FROM(CND_ROLLOUT_PAUSED) | S_FROM(CND_ROLLOUT_COMPLETED) |
         S_FROM(CND_ROLLOUT_ABORTED),
     CND_ROLLOUT_ROLLING_BACK, "aborted", " already"},
};

int cnd_rollout_admin(cnd_rstate_t *st, cnd_audit_t *audit, const char *actor, int64_t id,
                      const char *action, const char *reason)
{
    size_t k = 0;
    while (k < sizeof s_actions / sizeof s_actions[0] && strcmp(action, s_actions[k].action)) k++;
    if (k == sizeof s_actions / sizeof s_actions[0])
        return cnd_errf(CND_EINVAL, "unknown action '%s'", action);
    cnd_rollout_rec_t r;
    int rc = cnd_rstate_rollout_get(st, id, &r);
    if (rc) return rc;
    if (!(s_actions[k].from & S_FROM(r.state)))
        return cnd_errf(CND_ESTATE, "rollout %lld is %s%s", (long long)id,
                        cnd_rollout_state_name(r.state), s_actions[k].refusal);
    r.state = s_actions[k].to;
    snprintf(r.reason, sizeof r.reason, "%s", reason && reason[0] ? reason : "operator");
    r.updated_ms = cnd_unix_time() * 1000;
    if ((rc = cnd_rstate_rollout_update(st, &r))) return rc;
    if (!audit) return 0;
    char why[300];
    snprintf(why, sizeof why, "%s%s",
             r.state == CND_ROLLOUT_ROLLING_BACK ? "rollback requested: " : "",
             reason && reason[0] ? reason : "operator");
    return cnd_audit_log_rollout_state(audit, actor, id, r.job, s_actions[k].logged, why);
}

/* ============================================================================================
 * the engine
 * ========================================================================================== */

typedef struct {
    cnd_rdevice_t row;
    int64_t deadline_ms; /* offered / rollback_sent: when it times out; rollback needed: by when */
    int need_rollback;   /* rolling back: a rollback is still to be sent */
} s_dev_t;

typedef struct s_roll s_roll_t;
struct s_roll {
    cnd_rollout_rec_t rec;
    cnd_rollout_state_t written_state; /* the state as the engine last wrote or read it */
    cnd_fleet_select_t sel;
    char version[160];
    s_dev_t *devs;
    size_t n, cap;
    uint32_t max_wave;
    uint32_t ok, failed, refused, timeouts; /* outcomes so far (for the abort rule) */
    uint32_t active;                        /* offered, not final */
    int64_t wave_started_ms;
};

typedef struct {
    char name[64];
    char fpr[65];
    char cpu[64];
    int64_t seen_ms; /* 0: never during this run */
    int has_running;
    uint8_t running[32];
    s_roll_t *r; /* newest loaded rollout that holds it */
    size_t idx;
    int used;
    int64_t remote_ms; /* spread: when the presence table last showed it with a session */
} s_node_t;

typedef struct {
    cnd_rartifact_t a;
    uint8_t *bytes;
    size_t len;
    uint32_t sha_chunk; /* chunk size of the cached chunk digests */
    uint8_t (*sha)[32];
    uint32_t n_sha;
} s_art_t;

typedef struct {
    int64_t rollout, artifact;
    int rollback;
    uint8_t *m;
    size_t len;
} s_man_t;

#define S_PRESENCE_MS 1000 /* spread: how often presence is written and read */

struct cnd_rollout_engine {
    cnd_rstate_t *state; /* rollout state (borrowed) */
    sqlite3 *db;         /* the coordinator database: artifact registry, audit log */
    cnd_audit_t *audit;
    const cnd_identity_t *id;
    char fpr[65];
    char artifact_url[CND_PROTO_URL_MAX + 1]; /* offers name this cache ("" = none) */
    cnd_rollout_io_t io;
    int64_t offline_ms, poll_ms;
    int64_t started_ms, last_poll_ms;
    int64_t last_tick_ms; /* engine time never goes back: messages use max(clock, last tick) */
    s_roll_t **rolls;
    size_t n_rolls;
    s_node_t *nodes; /* open addressing */
    size_t cap_nodes, n_nodes;
    s_art_t *arts;
    size_t n_arts;
    s_man_t *mans;
    size_t n_mans;
    cnd_rollout_stats_t st;
    int spread, leader;    /* spread: one of several replicas; leader: makes wave decisions */
    int64_t chg;           /* spread: the last device change applied (rollout_state.h) */
    int64_t last_presence; /* spread: when the presence table was last written and read */
};

static void s_log(cnd_rollout_engine_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_log(cnd_rollout_engine_t *e, const char *fmt, ...)
{
    if (!e->io.log) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->io.log(e->io.ctx, buf);
}

/* --- nodes ---------------------------------------------------------------------------------- */

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static s_node_t *s_node_find(cnd_rollout_engine_t *e, const char *name)
{
    if (!e->cap_nodes) return NULL;
    for (size_t i = s_hash(name) & (e->cap_nodes - 1);; i = (i + 1) & (e->cap_nodes - 1)) {
        if (!e->nodes[i].used) return NULL;
        if (strcmp(e->nodes[i].name, name) == 0) return &e->nodes[i];
    }
}

static s_node_t *s_node_get(cnd_rollout_engine_t *e, const char *name)
{
    s_node_t *n = s_node_find(e, name);
    if (n) return n;
    if ((e->n_nodes + 1) * 2 > e->cap_nodes) {
        size_t nc = e->cap_nodes ? 2 * e->cap_nodes : 1024;
        s_node_t *g = calloc(nc, sizeof *g);
        if (!g) return NULL;
        for (size_t i = 0; i < e->cap_nodes; i++) {
            if (!e->nodes[i].used) continue;
            size_t j = s_hash(e->nodes[i].name) & (nc - 1);
            while (g[j].used) j = (j + 1) & (nc - 1);
            g[j] = e->nodes[i];
        }
        free(e->nodes);
        e->nodes = g;
        e->cap_nodes = nc;
    }
    size_t j = s_hash(name) & (e->cap_nodes - 1);
    while (e->nodes[j].used) j = (j + 1) & (e->cap_nodes - 1);
    n = &e->nodes[j];
    memset(n, 0, sizeof *n);
    n->used = 1;
    snprintf(n->name, sizeof n->name, "%s", name);
    e->n_nodes++;
    return n;
}

static int s_online(const cnd_rollout_engine_t *e, const s_node_t *n, int64_t now)
{
    return n && n->seen_ms && now - n->seen_ms <= e->offline_ms;
}

/* --- artifacts and manifests ---------------------------------------------------------------- */

static s_art_t *s_art(cnd_rollout_engine_t *e, int64_t id)
{
    for (size_t i = 0; i < e->n_arts; i++)
        if (e->arts[i].a.id == id) return &e->arts[i];
    s_art_t *g = realloc(e->arts, (e->n_arts + 1) * sizeof *g);
    if (!g) return NULL;
    e->arts = g;
    s_art_t *a = &e->arts[e->n_arts];
    memset(a, 0, sizeof *a);
    if (cnd_registry_get(e->db, id, &a->a, &a->bytes, &a->len)) {
        s_log(e, "artifact %lld: %s", (long long)id, cnd_err_detail());
        return NULL;
    }
    e->n_arts++;
    return a;
}

static s_art_t *s_art_by_digest(cnd_rollout_engine_t *e, const uint8_t d[32])
{
    for (size_t i = 0; i < e->n_arts; i++)
        if (memcmp(e->arts[i].a.digest, d, 32) == 0) return &e->arts[i];
    cnd_rartifact_t a;
    if (cnd_registry_by_digest(e->db, d, &a)) return NULL;
    return s_art(e, a.id);
}

static int s_sync(cnd_rollout_engine_t *e, int in_place);

static const s_man_t *s_manifest(cnd_rollout_engine_t *e, s_roll_t *r, s_art_t *a, int rollback)
{
    for (size_t i = 0; i < e->n_mans; i++)
        if (e->mans[i].rollout == r->rec.id && e->mans[i].artifact == a->a.id &&
            e->mans[i].rollback == rollback)
            return &e->mans[i];
    const char *kind = rollback ? "rollback" : "offer";
    uint8_t *m = NULL;
    size_t len = 0;
    int rc = cnd_rstate_manifest_get(e->state, r->rec.id, a->a.id, kind, &m, &len);
    if (rc == CND_ENOTFOUND && e->spread && !e->leader)
        return NULL; /* the leader signs it (one registry's sequences), found at a later try */
    if (rc == CND_ENOTFOUND) {
        /* Signed now (a rollback manifest, or an offer to a late joiner's new variant); it is
         * committed before it is sent. */
        uint64_t seq = 0;
        rc = cnd_registry_sign(e->db, e->audit, e->id, e->fpr, &a->a, rollback, 0, &m, &len, &seq);
        if (!rc) rc = cnd_rstate_manifest_put(e->state, r->rec.id, a->a.id, kind, seq, m, len);
        if (!rc && e->io.commit) rc = e->io.commit(e->io.ctx);
        /* The writers' lock was released: rows others changed meanwhile, in place. */
        if (!rc && e->spread) rc = s_sync(e, 1);
        if (rc) {
            free(m);
            s_log(e, "rollout %lld: signing a %s manifest: %s", (long long)r->rec.id, kind,
                  cnd_err_detail());
            return NULL;
        }
    } else if (rc) {
        return NULL;
    }
    s_man_t *g = realloc(e->mans, (e->n_mans + 1) * sizeof *g);
    if (!g) {
        free(m);
        return NULL;
    }
    e->mans = g;
    s_man_t *x = &e->mans[e->n_mans++];
    x->rollout = r->rec.id;
    x->artifact = a->a.id;
    x->rollback = rollback;
    x->m = m;
    x->len = len;
    return x;
}

/* The chunk size of a rollback transfer, as the device chooses it (edge.c). */
static uint32_t s_rollback_chunk(uint64_t size)
{
    if (size >= CND_PROTO_CHUNK_DEFAULT) return CND_PROTO_CHUNK_DEFAULT;
    return size < CND_PROTO_CHUNK_MIN ? CND_PROTO_CHUNK_MIN : (uint32_t)size;
}

/* --- persistence and audit ------------------------------------------------------------------ */

static void s_put_dev(cnd_rollout_engine_t *e, s_dev_t *d)
{
    d->row.updated_ms = cnd_unix_ms();
    if (cnd_rstate_device_put(e->state, &d->row)) s_log(e, "store: %s", cnd_err_detail());
}

static void s_put_roll(cnd_rollout_engine_t *e, s_roll_t *r)
{
    r->rec.updated_ms = cnd_unix_ms();
    r->written_state = r->rec.state;
    if (cnd_rstate_rollout_update(e->state, &r->rec)) s_log(e, "store: %s", cnd_err_detail());
}

/* outcome: healthy, failed, timeout or rolled_back (the rollout.device vocabulary). */
static void s_audit_device(cnd_rollout_engine_t *e, s_roll_t *r, s_dev_t *d,
                           cnd_rdevice_state_t outcome)
{
    if (!e->audit) return;
    s_node_t *n = s_node_find(e, d->row.device);
    cnd_audit_rollout_device_t x = {.rollout = r->rec.id,
                                    .job = r->rec.job,
                                    .subject = n && n->fpr[0] ? n->fpr : d->row.device,
                                    .wave = d->row.wave,
                                    .device = d->row.device,
                                    .outcome = cnd_rdevice_state_name(outcome),
                                    .reason = d->row.reason[0] ? d->row.reason : NULL,
                                    .latency_us = d->row.latency_us};
    if (cnd_audit_log_rollout_device(e->audit, e->fpr, &x)) s_log(e, "audit: %s", cnd_err_detail());
}

static void s_audit_state(cnd_rollout_engine_t *e, s_roll_t *r, cnd_rollout_state_t state,
                          const char *why)
{
    if (!e->audit) return;
    if (cnd_audit_log_rollout_state(e->audit, e->fpr, r->rec.id, r->rec.job,
                                    cnd_rollout_state_name(state), why && why[0] ? why : NULL))
        s_log(e, "audit: %s", cnd_err_detail());
    if (cnd_audit_checkpoint(e->audit, "rollout.state", NULL))
        s_log(e, "audit: %s", cnd_err_detail());
}

static void s_audit_wave(cnd_rollout_engine_t *e, s_roll_t *r, uint32_t wave, const char *state)
{
    uint32_t devices = 0, ok = 0, failed = 0, tout = 0, deferred = 0;
    for (size_t i = 0; i < r->n; i++) {
        const cnd_rdevice_t *x = &r->devs[i].row;
        if (x->wave != wave || x->state == CND_RDEV_SKIPPED || x->state == CND_RDEV_CURRENT)
            continue;
        devices++;
        if (x->state == CND_RDEV_HEALTHY)
            ok++;
        else if (x->state == CND_RDEV_FAILED || x->state == CND_RDEV_REFUSED)
            failed++;
        else if (x->state == CND_RDEV_TIMEOUT)
            tout++;
        else if (x->state == CND_RDEV_DEFERRED)
            deferred++;
    }
    cnd_audit_rollout_wave_t v = {.rollout = r->rec.id,
                                  .job = r->rec.job,
                                  .wave = wave,
                                  .devices = devices,
                                  .succeeded = ok,
                                  .failed = failed,
                                  .timed_out = tout,
                                  .deferred = deferred,
                                  .state = state};
    if (e->audit && cnd_audit_log_rollout_wave(e->audit, e->fpr, &v))
        s_log(e, "audit: %s", cnd_err_detail());
    if (e->audit && cnd_audit_checkpoint(e->audit, "rollout.wave", NULL))
        s_log(e, "audit: %s", cnd_err_detail());
    s_log(e, "rollout %lld %s %u: %u devices, %u healthy, %u failed, %u timed out, %u deferred: %s",
          (long long)r->rec.id, wave ? "wave" : "canary", wave, devices, ok, failed, tout, deferred,
          state);
}

/* --- loading -------------------------------------------------------------------------------- */

/* A device that a rollback must reach: it was offered the artifact (and may run it). */
static int s_needs_rollback(cnd_rdevice_state_t s)
{
    return s == CND_RDEV_OFFERED || s == CND_RDEV_HEALTHY || s == CND_RDEV_FAILED ||
           s == CND_RDEV_TIMEOUT;
}

static void s_roll_free(s_roll_t *r)
{
    if (!r) return;
    free(r->devs);
    free(r);
}

static void s_link(cnd_rollout_engine_t *e, s_roll_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        s_node_t *n = s_node_get(e, r->devs[i].row.device);
        if (!n) continue;
        if (!n->r || n->r->rec.id < r->rec.id) {
            n->r = r;
            n->idx = i;
        }
    }
}

static s_roll_t *s_load_roll(cnd_rollout_engine_t *e, int64_t id)
{
    s_roll_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    cnd_rdevice_t *rows = NULL;
    size_t n = 0;
    if (cnd_rstate_rollout_get(e->state, id, &r->rec) ||
        cnd_rstate_devices(e->state, id, &rows, &n) ||
        cnd_fleet_select_parse(&r->sel, r->rec.select)) {
        s_log(e, "loading rollout %lld: %s", (long long)id, cnd_err_detail());
        free(rows);
        free(r);
        return NULL;
    }
    r->written_state = r->rec.state;
    cnd_registry_version_name(r->version, sizeof r->version, r->rec.model, r->rec.version);
    r->devs = calloc(n ? n : 1, sizeof *r->devs);
    if (!r->devs) {
        free(rows);
        free(r);
        return NULL;
    }
    r->n = r->cap = n;
    for (size_t i = 0; i < n; i++) {
        s_dev_t *d = &r->devs[i];
        d->row = rows[i];
        cnd_rdevice_state_t s = d->row.state;
        if (d->row.wave > r->max_wave && s != CND_RDEV_SKIPPED && s != CND_RDEV_CURRENT)
            r->max_wave = d->row.wave;
        switch (s) {
        case CND_RDEV_HEALTHY: r->ok++; break;
        case CND_RDEV_FAILED: r->failed++; break;
        case CND_RDEV_REFUSED: r->refused++; break;
        case CND_RDEV_TIMEOUT: r->timeouts++; break;
        case CND_RDEV_OFFERED:
            r->active++;
            d->deadline_ms = d->row.offered_ms + (int64_t)r->rec.timeout_s * 1000;
            break;
        case CND_RDEV_ROLLBACK_SENT:
            d->deadline_ms = d->row.offered_ms + (int64_t)r->rec.timeout_s * 1000;
            break;
        default: break;
        }
    }
    free(rows);
    r->wave_started_ms = cnd_unix_ms();
    if (r->rec.state == CND_ROLLOUT_ROLLING_BACK) {
        /* Devices offered the artifact and not yet told to roll back. */
        int64_t dl = cnd_unix_ms() + (int64_t)r->rec.timeout_s * 1000;
        for (size_t i = 0; i < r->n; i++) {
            if (s_needs_rollback(r->devs[i].row.state)) {
                r->devs[i].need_rollback = 1;
                r->devs[i].deadline_ms = dl;
            }
        }
    }
    return r;
}

static int s_roll_cmp(const void *a, const void *b)
{
    const s_roll_t *x = *(s_roll_t *const *)a, *y = *(s_roll_t *const *)b;
    return x->rec.id < y->rec.id ? -1 : x->rec.id > y->rec.id;
}

static s_roll_t *s_find_roll(cnd_rollout_engine_t *e, int64_t id)
{
    for (size_t i = 0; i < e->n_rolls; i++)
        if (e->rolls[i]->rec.id == id) return e->rolls[i];
    return NULL;
}

static void s_begin_rollback(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now);

/* Spread, not the leader: the rollout's row as the leader (or an operator) last wrote it; when it
 * began rolling back, the devices offered the artifact are to be sent a rollback here. */
static void s_follow(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    cnd_rollout_rec_t fresh;
    if (cnd_rstate_rollout_get(e->state, r->rec.id, &fresh)) {
        s_log(e, "store: %s", cnd_err_detail());
        return;
    }
    if (fresh.state != r->rec.state) {
        s_log(e, "rollout %lld: %s -> %s (%s)", (long long)r->rec.id,
              cnd_rollout_state_name(r->rec.state), cnd_rollout_state_name(fresh.state),
              fresh.reason);
        if (fresh.state == CND_ROLLOUT_ROLLING_BACK) {
            int64_t dl = now + (int64_t)fresh.timeout_s * 1000;
            for (size_t i = 0; i < r->n; i++)
                if (s_needs_rollback(r->devs[i].row.state)) {
                    r->devs[i].need_rollback = 1;
                    r->devs[i].deadline_ms = dl;
                }
        }
    }
    r->rec = fresh;
    r->written_state = fresh.state;
}

/* Reads rollout states from the database: new rollouts, operator changes. */
static void s_poll(cnd_rollout_engine_t *e, int64_t now)
{
    int64_t *ids = NULL;
    cnd_rollout_state_t *states = NULL;
    size_t nids = 0;
    if (cnd_rstate_rollouts_loaded(e->state, &ids, &states, &nids)) {
        s_log(e, "store: %s", cnd_err_detail());
        return;
    }
    for (size_t k = 0; k < nids; k++) {
        int64_t id = ids[k];
        cnd_rollout_state_t state = states[k];
        s_roll_t *r = s_find_roll(e, id);
        if (!r) {
            if (!(r = s_load_roll(e, id))) continue;
            s_roll_t **g = realloc(e->rolls, (e->n_rolls + 1) * sizeof *g);
            if (!g) {
                s_roll_free(r);
                continue;
            }
            e->rolls = g;
            e->rolls[e->n_rolls++] = r;
            qsort(e->rolls, e->n_rolls, sizeof *e->rolls, s_roll_cmp);
            s_link(e, r);
            s_log(e, "rollout %lld of %s loaded: %s, %zu devices, wave %u of %u", (long long)id,
                  r->version, cnd_rollout_state_name(r->rec.state), r->n, r->rec.wave, r->max_wave);
            continue;
        }
        if (e->spread && !e->leader) {
            s_follow(e, r, now);
            continue;
        }
        if (state == r->written_state) continue;
        /* An operator changed it. */
        cnd_rollout_rec_t fresh;
        if (cnd_rstate_rollout_get(e->state, id, &fresh)) continue;
        s_log(e, "rollout %lld: %s -> %s (%s)", (long long)id, cnd_rollout_state_name(r->rec.state),
              cnd_rollout_state_name(fresh.state), fresh.reason);
        r->rec.state = fresh.state;
        snprintf(r->rec.reason, sizeof r->rec.reason, "%s", fresh.reason);
        r->written_state = fresh.state;
        if (fresh.state == CND_ROLLOUT_ROLLING_BACK) {
            s_begin_rollback(e, r, now);
        } else if (fresh.state == CND_ROLLOUT_ABORTED) {
            for (size_t i = 0; i < r->n; i++)
                if (r->devs[i].row.state == CND_RDEV_PENDING ||
                    r->devs[i].row.state == CND_RDEV_DEFERRED) {
                    r->devs[i].row.state = CND_RDEV_CANCELLED;
                    snprintf(r->devs[i].row.reason, sizeof r->devs[i].row.reason,
                             "rollout aborted");
                    s_put_dev(e, &r->devs[i]);
                }
        }
    }
    free(ids);
    free(states);
}

/* --- offers, rollbacks and outcomes --------------------------------------------------------- */

static int s_send(cnd_rollout_engine_t *e, s_node_t *n, Condenser__MsgType t, void *payload)
{
    int rc = e->io.send(e->io.ctx, n->name, t, payload);
    if (rc == CND_ENOTFOUND) n->seen_ms = 0; /* no session: offline until it talks again */
    if (rc) cnd_err_clear();
    return rc;
}

static int s_offer(cnd_rollout_engine_t *e, s_roll_t *r, s_dev_t *d, s_node_t *n, int64_t now)
{
    s_art_t *a = s_art(e, d->row.artifact);
    if (!a) return CND_ENOTFOUND;
    cnd_rdevice_state_t before = d->row.state;
    const s_man_t *m = s_manifest(e, r, a, 0);
    if (!m) return CND_ENOTFOUND;
    if (d->row.state != before) return CND_ESTATE; /* another replica moved it meanwhile */
    Condenser__ArtifactOffer o;
    condenser__artifact_offer__init(&o);
    o.rollout_id = (uint64_t)r->rec.id;
    o.manifest = cnd_proto_bytes(m->m, m->len);
    o.artifact_digest = cnd_proto_bytes(a->a.digest, 32);
    o.artifact_size = a->a.size;
    o.chunk_size = r->rec.chunk;
    if (e->artifact_url[0]) o.artifact_url = cnd_proto_str(e->artifact_url);
    int rc = s_send(e, n, CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER, &o);
    if (rc) return rc;
    e->st.offers_sent++;
    if (d->row.state != CND_RDEV_OFFERED) {
        r->active++;
        d->row.state = CND_RDEV_OFFERED;
        d->row.reason[0] = 0;
        d->row.offered_ms = now;
        d->deadline_ms = now + (int64_t)r->rec.timeout_s * 1000;
        if (n->has_running) {
            /* What it ran when offered is what a rollback returns it to. */
            d->row.has_prev = 1;
            memcpy(d->row.prev_digest, n->running, 32);
        }
        s_put_dev(e, d);
    }
    return 0;
}

static int s_send_rollback(cnd_rollout_engine_t *e, s_roll_t *r, s_dev_t *d, s_node_t *n,
                           int64_t now)
{
    s_art_t *a = d->row.has_prev ? s_art_by_digest(e, d->row.prev_digest) : NULL;
    if (!a) {
        d->need_rollback = 0;
        d->row.state = CND_RDEV_ROLLBACK_UNAVAILABLE;
        snprintf(d->row.reason, sizeof d->row.reason,
                 d->row.has_prev ? "its previous artifact is not in the registry"
                                 : "it ran no model before");
        s_put_dev(e, d);
        s_audit_device(e, r, d, CND_RDEV_FAILED);
        return 0;
    }
    cnd_rdevice_state_t before = d->row.state;
    const s_man_t *m = s_manifest(e, r, a, 1);
    if (!m) return CND_ENOTFOUND;
    if (d->row.state != before || !d->need_rollback) return CND_ESTATE; /* moved meanwhile */
    Condenser__Rollback rb;
    condenser__rollback__init(&rb);
    rb.rollout_id = (uint64_t)r->rec.id;
    rb.manifest = cnd_proto_bytes(m->m, m->len);
    rb.target_digest = cnd_proto_bytes(a->a.digest, 32);
    rb.reason = cnd_proto_str(r->rec.reason);
    int rc = s_send(e, n, CONDENSER__MSG_TYPE__MSG_ROLLBACK, &rb);
    if (rc) return rc;
    e->st.rollbacks_sent++;
    if (d->row.state == CND_RDEV_OFFERED && r->active) r->active--;
    d->need_rollback = 0;
    d->row.state = CND_RDEV_ROLLBACK_SENT;
    d->row.offered_ms = now;
    d->deadline_ms = now + (int64_t)r->rec.timeout_s * 1000;
    s_put_dev(e, d);
    return 0;
}

static void s_begin_rollback(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    int64_t dl = now + (int64_t)r->rec.timeout_s * 1000;
    for (size_t i = 0; i < r->n; i++) {
        s_dev_t *d = &r->devs[i];
        if (d->row.state == CND_RDEV_PENDING || d->row.state == CND_RDEV_DEFERRED) {
            d->row.state = CND_RDEV_CANCELLED;
            snprintf(d->row.reason, sizeof d->row.reason, "rollout stopped before its wave");
            s_put_dev(e, d);
        } else if (s_needs_rollback(d->row.state)) {
            d->need_rollback = 1;
            d->deadline_ms = dl;
        }
    }
    r->rec.state = CND_ROLLOUT_ROLLING_BACK;
    s_put_roll(e, r);
}

static void s_abort(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now, const char *why)
{
    s_audit_wave(e, r, r->rec.wave, "aborted");
    snprintf(r->rec.reason, sizeof r->rec.reason, "%s", why);
    s_audit_state(e, r, CND_ROLLOUT_ABORTED, why);
    s_log(e, "rollout %lld aborted: %s; rolling back", (long long)r->rec.id, why);
    s_begin_rollback(e, r, now);
}

static void s_check_abort(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    /* Completed rollouts still take late joiners, so the rule still applies to them. */
    cnd_rollout_state_t st = r->rec.state;
    if (st != CND_ROLLOUT_RUNNING && st != CND_ROLLOUT_PAUSED && st != CND_ROLLOUT_COMPLETED)
        return;
    uint32_t fails = r->failed + r->refused + r->timeouts;
    uint32_t done = fails + r->ok;
    if (done < r->rec.abort_min || done == 0) return;
    if ((double)fails * 100.0 > r->rec.abort_pct * done) {
        char why[200];
        snprintf(why, sizeof why,
                 "%u of %u finished devices failed (%.1f%%, threshold %.1f%% after %u)", fails,
                 done, 100.0 * fails / done, r->rec.abort_pct, r->rec.abort_min);
        s_abort(e, r, now, why);
    }
}

/* A device reached an outcome in the offer phase: healthy, failed, refused or timeout. */
static void s_outcome(cnd_rollout_engine_t *e, s_roll_t *r, s_dev_t *d, cnd_rdevice_state_t state,
                      const char *reason, int64_t now)
{
    if (d->row.state == CND_RDEV_OFFERED && r->active) r->active--;
    d->row.state = state;
    snprintf(d->row.reason, sizeof d->row.reason, "%s", reason ? reason : "");
    s_put_dev(e, d);
    cnd_rdevice_state_t outcome = CND_RDEV_FAILED; /* refused is logged as failed */
    switch (state) {
    case CND_RDEV_HEALTHY:
        r->ok++;
        outcome = CND_RDEV_HEALTHY;
        break;
    case CND_RDEV_FAILED: r->failed++; break;
    case CND_RDEV_REFUSED: r->refused++; break;
    case CND_RDEV_TIMEOUT:
        r->timeouts++;
        outcome = CND_RDEV_TIMEOUT;
        break;
    default: break;
    }
    s_audit_device(e, r, d, outcome);
    if (!e->spread || e->leader) s_check_abort(e, r, now); /* else the leader's next poll */
}

static int s_final_or_deferred(cnd_rdevice_state_t s)
{
    return cnd_rdevice_terminal(s) || s == CND_RDEV_DEFERRED;
}

/* --- tick ----------------------------------------------------------------------------------- */

/* Devices offered or told to roll back that did not answer in time (the leader's decision). */
static void s_tick_deadlines(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    for (size_t i = 0; i < r->n; i++) {
        s_dev_t *d = &r->devs[i];
        if (d->row.state == CND_RDEV_OFFERED && now > d->deadline_ms) {
            char why[96];
            snprintf(why, sizeof why, "no outcome within %u s", r->rec.timeout_s);
            s_outcome(e, r, d, CND_RDEV_TIMEOUT, why, now);
        } else if (d->row.state == CND_RDEV_ROLLBACK_SENT && now > d->deadline_ms) {
            d->row.state = CND_RDEV_ROLLBACK_TIMEOUT;
            snprintf(d->row.reason, sizeof d->row.reason, "no rollback report within %u s",
                     r->rec.timeout_s);
            s_put_dev(e, d);
            s_audit_device(e, r, d, CND_RDEV_TIMEOUT);
        } else if (d->need_rollback && now > d->deadline_ms) {
            d->need_rollback = 0;
            d->row.state = CND_RDEV_ROLLBACK_TIMEOUT;
            snprintf(d->row.reason, sizeof d->row.reason,
                     "offline: the rollback could not be sent");
            s_put_dev(e, d);
            s_audit_device(e, r, d, CND_RDEV_TIMEOUT);
        }
    }
}

/* Rolling back: rollbacks to the devices online here; the leader also ends the rollback once
 * no device is open. */
static void s_tick_rollback(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    int open = 0, decide = !e->spread || e->leader;
    for (size_t i = 0; i < r->n; i++) {
        s_dev_t *d = &r->devs[i];
        if (d->need_rollback) {
            s_node_t *n = s_node_find(e, d->row.device);
            if (s_online(e, n, now)) (void)s_send_rollback(e, r, d, n, now);
        }
        if (d->need_rollback || d->row.state == CND_RDEV_ROLLBACK_SENT ||
            d->row.state == CND_RDEV_OFFERED)
            open = 1;
    }
    if (open || !decide) return;
    r->rec.state = CND_ROLLOUT_ROLLED_BACK;
    s_put_roll(e, r);
    uint32_t back = 0, bad = 0;
    for (size_t i = 0; i < r->n; i++) {
        cnd_rdevice_state_t x = r->devs[i].row.state;
        if (x == CND_RDEV_ROLLED_BACK)
            back++;
        else if (x == CND_RDEV_ROLLBACK_SENT || x == CND_RDEV_ROLLBACK_FAILED ||
                 x == CND_RDEV_ROLLBACK_TIMEOUT || x == CND_RDEV_ROLLBACK_UNAVAILABLE)
            bad++;
    }
    char why[160];
    snprintf(why, sizeof why, "%u devices rolled back, %u did not confirm", back, bad);
    s_audit_state(e, r, CND_ROLLOUT_ROLLED_BACK, why);
    s_log(e, "rollout %lld rolled back: %s", (long long)r->rec.id, why);
}

/* Spread: the presence table says it has a session on some replica (it is not deferred). */
static int s_present(const cnd_rollout_engine_t *e, const s_node_t *n, int64_t now)
{
    return e->spread && n && n->remote_ms && now - n->remote_ms <= 2 * S_PRESENCE_MS;
}

static void s_tick_roll(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    int decide = !e->spread || e->leader;
    if (decide) s_tick_deadlines(e, r, now);
    cnd_rollout_state_t st = r->rec.state;
    if (st == CND_ROLLOUT_ROLLING_BACK) {
        s_tick_rollback(e, r, now);
        return;
    }
    int running = st == CND_ROLLOUT_RUNNING, completed = st == CND_ROLLOUT_COMPLETED;
    if (!running && !completed) return;
    if (!s_in_window(&r->rec, now)) return;
    int grace = now - e->started_ms < e->offline_ms; /* devices are still reconnecting */
    for (size_t i = 0; i < r->n && r->active < r->rec.max_active; i++) {
        s_dev_t *d = &r->devs[i];
        int pend = d->row.state == CND_RDEV_PENDING, def = d->row.state == CND_RDEV_DEFERRED;
        if (!(pend || def) || d->row.wave > r->rec.wave) continue;
        s_node_t *n = s_node_find(e, d->row.device);
        if (s_online(e, n, now)) {
            (void)s_offer(e, r, d, n, now);
        } else if (pend && !grace && decide && !s_present(e, n, now)) {
            d->row.state = CND_RDEV_DEFERRED;
            snprintf(d->row.reason, sizeof d->row.reason, "offline when its wave came");
            s_put_dev(e, d);
        }
    }
    if (!running || !decide) return;
    /* Wave done? */
    for (size_t i = 0; i < r->n; i++)
        if (r->devs[i].row.wave == r->rec.wave && !s_final_or_deferred(r->devs[i].row.state))
            return;
    if (r->rec.wave < r->max_wave) {
        s_audit_wave(e, r, r->rec.wave, "continue");
        r->rec.wave++;
        r->wave_started_ms = now;
        s_put_roll(e, r);
    } else {
        s_audit_wave(e, r, r->rec.wave, "done");
        r->rec.state = CND_ROLLOUT_COMPLETED;
        char why[160];
        snprintf(why, sizeof why, "%u healthy, %u failed, %u timed out", r->ok,
                 r->failed + r->refused, r->timeouts);
        snprintf(r->rec.reason, sizeof r->rec.reason, "%s", why);
        s_put_roll(e, r);
        s_audit_state(e, r, CND_ROLLOUT_COMPLETED, why);
    }
}

/* Spread, the leader: the manifests that devices of other replicas wait for (a rollback to an
 * artifact, an offer of a variant chosen for a late joiner) are signed here, once each; and the
 * abort rule sees outcomes other replicas recorded. */
static void s_lead_roll(cnd_rollout_engine_t *e, s_roll_t *r, int64_t now)
{
    s_check_abort(e, r, now);
    int back = r->rec.state == CND_ROLLOUT_ROLLING_BACK;
    int offer = r->rec.state == CND_ROLLOUT_RUNNING || r->rec.state == CND_ROLLOUT_COMPLETED;
    if (!back && !offer) return;
    int64_t done_art = -1; /* rows mostly share one artifact: skip repeats cheaply */
    for (size_t i = 0; i < r->n; i++) {
        s_dev_t *d = &r->devs[i];
        s_art_t *a = NULL;
        if (back && d->need_rollback && d->row.has_prev)
            a = s_art_by_digest(e, d->row.prev_digest);
        else if (offer && d->row.wave <= r->rec.wave &&
                 (d->row.state == CND_RDEV_PENDING || d->row.state == CND_RDEV_DEFERRED) &&
                 d->row.artifact != done_art)
            a = s_art(e, d->row.artifact);
        if (!a) continue;
        if (s_manifest(e, r, a, back) && !back) done_art = a->a.id;
    }
}

/* Spread: every replica writes which devices have a session on it (those heard from since the
 * last write), and reads which have one anywhere, every S_PRESENCE_MS. */
static void s_presence(cnd_rollout_engine_t *e, int64_t now)
{
    if (now - e->last_presence < S_PRESENCE_MS) return;
    int64_t since = e->last_presence ? e->last_presence : now - e->offline_ms;
    e->last_presence = now;
    char **mine = calloc(e->n_nodes ? e->n_nodes : 1, sizeof *mine);
    size_t n = 0;
    for (size_t i = 0; mine && i < e->cap_nodes; i++)
        if (e->nodes[i].used && e->nodes[i].seen_ms >= since) mine[n++] = e->nodes[i].name;
    if (!mine || cnd_rstate_presence_put(e->state, mine, n, now))
        s_log(e, "presence: %s", mine ? cnd_err_detail() : "out of memory");
    free(mine);
    char **names = NULL;
    size_t nn = 0;
    if (cnd_rstate_presence_since(e->state, now - e->offline_ms, &names, &nn)) {
        s_log(e, "presence: %s", cnd_err_detail());
        return;
    }
    for (size_t i = 0; i < nn; i++) {
        s_node_t *x = s_node_find(e, names[i]);
        if (x) x->remote_ms = now;
    }
    cnd_rstate_names_free(names, nn);
}

void cnd_rollout_tick(cnd_rollout_engine_t *e, int64_t now_ms)
{
    if (now_ms > e->last_tick_ms) e->last_tick_ms = now_ms;
    int polled = now_ms - e->last_poll_ms >= e->poll_ms;
    if (polled) {
        e->last_poll_ms = now_ms;
        s_poll(e, now_ms);
    }
    if (e->spread) s_presence(e, now_ms);
    for (size_t i = 0; polled && e->spread && e->leader && i < e->n_rolls; i++)
        s_lead_roll(e, e->rolls[i], now_ms);
    for (size_t i = 0; i < e->n_rolls; i++) s_tick_roll(e, e->rolls[i], now_ms);
}

/* --- messages ------------------------------------------------------------------------------- */

/* A new zeroed row at r->devs[r->n] (r->n not yet counted), or NULL out of memory. Nodes keep
 * indexes, so moving the array is harmless. */
static s_dev_t *s_push_dev(s_roll_t *r)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 16;
        s_dev_t *g = realloc(r->devs, nc * sizeof *g);
        if (!g) return NULL;
        r->devs = g;
        r->cap = nc;
    }
    s_dev_t *d = &r->devs[r->n];
    memset(d, 0, sizeof *d);
    return d;
}

/* A device that is in no loaded rollout: is it a late joiner of one? */
static void s_late_join(cnd_rollout_engine_t *e, s_node_t *n, const cnd_fleet_device_t *fd,
                        int64_t now)
{
    for (size_t k = e->n_rolls; k-- > 0;) {
        s_roll_t *r = e->rolls[k];
        if (r->rec.state != CND_ROLLOUT_RUNNING && r->rec.state != CND_ROLLOUT_COMPLETED) continue;
        if (!cnd_fleet_select_match(&r->sel, fd)) continue;
        cnd_rartifact_t *v = NULL;
        size_t nv = 0;
        if (cnd_registry_list(e->db, r->rec.model, (int64_t)r->rec.version, &v, &nv)) return;
        uint64_t running_size = 0;
        s_art_t *ra = fd->has_running ? s_art_by_digest(e, fd->running_digest) : NULL;
        if (ra) running_size = ra->a.size;
        char why[200];
        int b = s_best_fit(e->state, v, nv, fd, running_size, why, sizeof why);
        if (b < 0 || (fd->has_running && !memcmp(fd->running_digest, v[b].digest, 32))) {
            free(v);
            return;
        }
        s_dev_t *d = s_push_dev(r);
        if (!d) {
            free(v);
            return;
        }
        d->row.rollout = r->rec.id;
        snprintf(d->row.device, sizeof d->row.device, "%s", n->name);
        d->row.wave = r->rec.wave;
        d->row.artifact = v[b].id;
        d->row.has_prev = fd->has_running;
        memcpy(d->row.prev_digest, fd->running_digest, 32);
        d->row.state = CND_RDEV_PENDING;
        snprintf(d->row.reason, sizeof d->row.reason, "came online after the rollout started");
        s_put_dev(e, d);
        n->r = r;
        n->idx = r->n++;
        s_log(e, "rollout %lld: %s joins (%s)", (long long)r->rec.id, n->name, v[b].variant);
        free(v);
        (void)now;
        return;
    }
}

static void s_on_profile(cnd_rollout_engine_t *e, s_node_t *n, const Condenser__DeviceProfile *p,
                         int64_t now)
{
    cnd_fleet_device_t fd;
    memset(&fd, 0, sizeof fd);
    snprintf(fd.name, sizeof fd.name, "%s", n->name);
    if (cnd_proto_text(fd.hw, sizeof fd.hw, p->hardware_class) ||
        cnd_proto_text(fd.cpu, sizeof fd.cpu, p->cpu_class) ||
        cnd_proto_text(fd.runtime, sizeof fd.runtime, p->runtime))
        cnd_err_clear();
    fd.ram = p->ram_bytes;
    fd.flash = p->flash_bytes;
    fd.budget_us = p->latency_budget_us;
    for (size_t i = 0; i < p->n_labels && i < CND_FLEET_LABELS_MAX; i++) {
        if (cnd_proto_text(fd.labels[fd.n_labels].key, sizeof fd.labels[0].key,
                           p->labels[i]->key) ||
            cnd_proto_text(fd.labels[fd.n_labels].value, sizeof fd.labels[0].value,
                           p->labels[i]->value)) {
            cnd_err_clear();
            continue;
        }
        fd.n_labels++;
    }
    fd.has_running = p->running_digest.len == 32;
    if (fd.has_running) memcpy(fd.running_digest, p->running_digest.data, 32);
    fd.running_seq = p->running_sequence;
    fd.profile_ms = now;
    if (cnd_rstate_fleet_put_profile(e->state, &fd)) s_log(e, "store: %s", cnd_err_detail());
    snprintf(n->cpu, sizeof n->cpu, "%s", fd.cpu);
    n->has_running = fd.has_running;
    memcpy(n->running, fd.running_digest, 32);
    if (!n->r) {
        s_late_join(e, n, &fd, now);
        return;
    }
    s_roll_t *r = n->r;
    s_dev_t *d = &r->devs[n->idx];
    s_art_t *a = d->row.artifact ? s_art(e, d->row.artifact) : NULL;
    if (d->row.state == CND_RDEV_OFFERED && a) {
        if (n->has_running && !memcmp(n->running, a->a.digest, 32))
            s_outcome(e, r, d, CND_RDEV_HEALTHY, "running it (from its profile)", now);
        else
            (void)s_offer(e, r, d, n, now); /* resumes its download */
    } else if (d->row.state == CND_RDEV_ROLLBACK_SENT) {
        if (n->has_running && d->row.has_prev && !memcmp(n->running, d->row.prev_digest, 32)) {
            d->row.state = CND_RDEV_ROLLED_BACK;
            d->row.reason[0] = 0;
            s_put_dev(e, d);
            s_audit_device(e, r, d, CND_RDEV_ROLLED_BACK);
        } else {
            d->need_rollback = 1;
        }
    }
}

static void s_on_chunk_request(cnd_rollout_engine_t *e, s_node_t *n,
                               const Condenser__ArtifactChunkRequest *q, cnd_proto_reject_t *rej,
                               int *refused)
{
    *refused = 1;
    s_roll_t *r = n->r;
    s_dev_t *d = r ? &r->devs[n->idx] : NULL;
    s_art_t *a = NULL;
    uint32_t chunk = 0;
    if (d && d->row.state == CND_RDEV_OFFERED) {
        a = s_art(e, d->row.artifact);
        chunk = r->rec.chunk;
    } else if (d && d->row.state == CND_RDEV_ROLLBACK_SENT) {
        a = d->row.has_prev ? s_art_by_digest(e, d->row.prev_digest) : NULL;
        if (a) chunk = s_rollback_chunk(a->a.size);
    }
    if (!a || memcmp(a->a.digest, q->artifact_digest.data, 32) != 0) {
        /* docs/protocol.md section 6: an unknown digest is ERR_BAD_FIELD. */
        rej->code = CONDENSER__ERROR_CODE__ERR_BAD_FIELD;
        cnd_errf(CND_EPERM, "artifact_chunk_request: no transfer of that artifact to this device");
        return;
    }
    uint64_t left = q->offset < a->a.size ? a->a.size - q->offset : 0;
    uint32_t want = left < chunk ? (uint32_t)left : chunk;
    if (q->offset % chunk || !left || q->length != want) {
        rej->code = CONDENSER__ERROR_CODE__ERR_BAD_FIELD;
        cnd_errf(CND_EPROTO,
                 "artifact_chunk_request: offset %llu / length %u do not match the %u-byte chunks "
                 "of a %llu-byte artifact",
                 (unsigned long long)q->offset, q->length, chunk, (unsigned long long)a->a.size);
        return;
    }
    uint32_t idx = (uint32_t)(q->offset / chunk);
    if (a->sha_chunk != chunk) {
        uint32_t cnt = (uint32_t)((a->a.size + chunk - 1) / chunk);
        uint8_t(*sha)[32] = malloc((size_t)cnt * 32);
        if (!sha) {
            rej->code = CONDENSER__ERROR_CODE__ERR_BUSY;
            cnd_errf(CND_ENOMEM, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < cnt; i++) {
            uint64_t o = (uint64_t)i * chunk;
            uint64_t l = a->a.size - o < chunk ? a->a.size - o : chunk;
            cnd_sha256(sha[i], a->bytes + o, (size_t)l);
        }
        free(a->sha);
        a->sha = sha;
        a->n_sha = cnt;
        a->sha_chunk = chunk;
    }
    Condenser__Chunk c;
    condenser__chunk__init(&c);
    c.kind = CONDENSER__OBJECT_KIND__OBJ_ARTIFACT;
    c.object_digest = cnd_proto_bytes(a->a.digest, 32);
    c.index = idx;
    c.offset = q->offset;
    c.data = cnd_proto_bytes(a->bytes + q->offset, want);
    c.sha256 = cnd_proto_bytes(a->sha[idx], 32);
    *refused = 0;
    if (!s_send(e, n, CONDENSER__MSG_TYPE__MSG_CHUNK, &c)) {
        e->st.chunks_sent++;
        e->st.bytes_sent += want;
    }
}

static void s_on_report(cnd_rollout_engine_t *e, s_node_t *n, const Condenser__ActivationReport *p,
                        int64_t now)
{
    e->st.reports++;
    if (p->active_digest.len == 32) {
        n->has_running = 1;
        memcpy(n->running, p->active_digest.data, 32);
    }
    s_roll_t *r = n->r;
    if (!r || (uint64_t)r->rec.id != p->rollout_id) return;
    s_dev_t *d = &r->devs[n->idx];
    char reason[CND_PROTO_TEXT_MAX + 1];
    if (cnd_proto_text(reason, sizeof reason, p->reason)) {
        cnd_err_clear();
        reason[0] = 0;
    }
    for (char *c = reason; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    reason[200] = 0;
    if (d->row.state == CND_RDEV_OFFERED) {
        s_art_t *a = s_art(e, d->row.artifact);
        if (!a || memcmp(a->a.digest, p->artifact_digest.data, 32) != 0) return;
        switch (p->state) {
        case CONDENSER__ACTIVATION_STATE__ACT_HEALTHY:
            d->row.latency_us = p->latency_us;
            if (n->cpu[0] && p->latency_us &&
                cnd_rstate_latency_add(e->state, a->a.id, n->cpu, p->latency_us))
                cnd_err_clear();
            s_outcome(e, r, d, CND_RDEV_HEALTHY, "", now);
            break;
        case CONDENSER__ACTIVATION_STATE__ACT_FAILED:
            s_outcome(e, r, d, CND_RDEV_FAILED, reason, now);
            break;
        case CONDENSER__ACTIVATION_STATE__ACT_REFUSED:
            s_outcome(e, r, d, CND_RDEV_REFUSED, reason, now);
            break;
        default: break; /* progress */
        }
    } else if (d->row.state == CND_RDEV_ROLLBACK_SENT) {
        if (!d->row.has_prev || memcmp(d->row.prev_digest, p->artifact_digest.data, 32) != 0)
            return;
        if (p->state == CONDENSER__ACTIVATION_STATE__ACT_ROLLED_BACK) {
            d->row.state = CND_RDEV_ROLLED_BACK;
            snprintf(d->row.reason, sizeof d->row.reason, "%s", reason);
            s_put_dev(e, d);
            s_audit_device(e, r, d, CND_RDEV_ROLLED_BACK);
        } else if (p->state == CONDENSER__ACTIVATION_STATE__ACT_FAILED ||
                   p->state == CONDENSER__ACTIVATION_STATE__ACT_REFUSED) {
            d->row.state = CND_RDEV_ROLLBACK_FAILED;
            snprintf(d->row.reason, sizeof d->row.reason, "%s", reason);
            s_put_dev(e, d);
            s_audit_device(e, r, d, CND_RDEV_FAILED);
        }
    }
}

int cnd_rollout_on_message(cnd_rollout_engine_t *e, const char *device, const char *fpr,
                           const Condenser__Envelope *env, cnd_proto_reject_t *rej)
{
    rej->seq = env->seq;
    rej->type = env->type;
    rej->code = CONDENSER__ERROR_CODE__ERR_INTERNAL;
    s_node_t *n = s_node_get(e, device);
    if (!n) return cnd_errf(CND_ENOMEM, "out of memory");
    int64_t now = cnd_unix_ms();
    if (e->last_tick_ms > now) now = e->last_tick_ms;
    int was_offline = !s_online(e, n, now);
    n->seen_ms = now;
    if (fpr) snprintf(n->fpr, sizeof n->fpr, "%s", fpr);
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE:
        s_on_profile(e, n, env->device_profile, now);
        return 0;
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST: {
        int refused = 0;
        s_on_chunk_request(e, n, env->artifact_chunk_request, rej, &refused);
        return refused ? (int)CND_EPERM : 0;
    }
    case CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT:
        s_on_report(e, n, env->activation_report, now);
        return 0;
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT:
    case CONDENSER__MSG_TYPE__MSG_ERROR:
    case CONDENSER__MSG_TYPE__MSG_HELLO: (void)was_offline; return 0;
    default:
        rej->code = CONDENSER__ERROR_CODE__ERR_REFUSED;
        return cnd_errf(CND_EPERM, "%s is not a device message", cnd_proto_type_name(env->type));
    }
}

/* --- spread: replicas side by side ----------------------------------------------------------- */

/* Counts a row in state st into the rollout's tallies (k = +1) or out of them (k = -1). */
static void s_count(s_roll_t *r, cnd_rdevice_state_t st, int k)
{
    uint32_t *c = st == CND_RDEV_HEALTHY   ? &r->ok
                  : st == CND_RDEV_FAILED  ? &r->failed
                  : st == CND_RDEV_REFUSED ? &r->refused
                  : st == CND_RDEV_TIMEOUT ? &r->timeouts
                  : st == CND_RDEV_OFFERED ? &r->active
                                           : NULL;
    if (c && k > 0) (*c)++;
    if (c && k < 0 && *c) (*c)--;
}

static s_dev_t *s_find_dev(cnd_rollout_engine_t *e, s_roll_t *r, const char *device)
{
    s_node_t *n = s_node_find(e, device);
    if (n && n->r == r) return &r->devs[n->idx];
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->devs[i].row.device, device) == 0) return &r->devs[i];
    return NULL;
}

/* A row as another replica (or this one) committed it: tallies, deadlines (as s_load_roll sets
 * them) and whether a rollback is still to be sent. */
static void s_apply(s_roll_t *r, s_dev_t *d, const cnd_rdevice_t *row, int64_t now)
{
    int same = d->row.state == row->state;
    s_count(r, d->row.state, -1);
    d->row = *row;
    s_count(r, row->state, 1);
    if (row->wave > r->max_wave && row->state != CND_RDEV_SKIPPED && row->state != CND_RDEV_CURRENT)
        r->max_wave = row->wave;
    if (row->state == CND_RDEV_OFFERED || row->state == CND_RDEV_ROLLBACK_SENT)
        d->deadline_ms = row->offered_ms + (int64_t)r->rec.timeout_s * 1000;
    int need = r->rec.state == CND_ROLLOUT_ROLLING_BACK && s_needs_rollback(row->state);
    if (need && !d->need_rollback) d->deadline_ms = now + (int64_t)r->rec.timeout_s * 1000;
    d->need_rollback = need || (same && d->need_rollback);
}

/* Applies the device changes committed since e->chg. in_place: only rows already loaded (their
 * addresses are held by a caller); a new row leaves e->chg where it was, so the next full sync
 * reads it again (applying a row twice is harmless). */
static int s_sync(cnd_rollout_engine_t *e, int in_place)
{
    cnd_rdevice_t *rows = NULL;
    size_t n = 0;
    int64_t last = e->chg, now = cnd_unix_ms();
    int rc = cnd_rstate_device_changes(e->state, e->chg, &rows, &n, &last), skipped = 0;
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        s_roll_t *r = s_find_roll(e, rows[i].rollout);
        if (!r) continue; /* not loaded: s_poll loads it whole */
        s_dev_t *d = s_find_dev(e, r, rows[i].device);
        if (!d && in_place) {
            skipped = 1;
            continue;
        }
        if (!d) { /* a late joiner of another replica */
            s_node_t *nd = s_node_get(e, rows[i].device);
            if (!nd || !(d = s_push_dev(r))) {
                skipped = 1;
                continue;
            }
            d->row.state = CND_RDEV_SKIPPED; /* counted in no tally yet */
            if (!nd->r || nd->r->rec.id <= r->rec.id) {
                nd->r = r;
                nd->idx = r->n;
            }
            r->n++;
        }
        s_apply(r, d, &rows[i], now);
    }
    free(rows);
    if (!skipped) e->chg = last;
    return 0;
}

int cnd_rollout_sync(cnd_rollout_engine_t *e)
{
    return e->spread ? s_sync(e, 0) : 0;
}

void cnd_rollout_engine_lead(cnd_rollout_engine_t *e)
{
    if (!e->spread || e->leader) return;
    e->leader = 1;
    /* Devices of a replica that just died are reconnecting elsewhere: none is deferred before
     * offline_after_s, and deadlines run from the rows' own offer times. */
    e->started_ms = cnd_unix_ms();
    e->last_poll_ms = 0;
    s_log(e, "rollout engine: this replica makes the wave decisions now");
}

/* --- lifecycle ------------------------------------------------------------------------------ */

int cnd_rollout_engine_new(cnd_rollout_engine_t **out, cnd_rstate_t *st, cnd_audit_t *audit,
                           const cnd_identity_t *id, const cnd_rollout_io_t *io,
                           const cnd_rollout_engine_opts_t *o)
{
    *out = NULL;
    if (!st || !id || !io || !io->send)
        return cnd_errf(CND_EINVAL, "rollout engine: state, identity and send are required");
    int rc;
    if (o && o->artifact_url && o->artifact_url[0] &&
        (rc = cnd_proto_check_artifact_url(o->artifact_url, strlen(o->artifact_url))))
        return rc;
    cnd_rollout_engine_t *e = calloc(1, sizeof *e);
    if (!e) return cnd_errf(CND_ENOMEM, "rollout engine: out of memory");
    if (o && o->artifact_url)
        snprintf(e->artifact_url, sizeof e->artifact_url, "%s", o->artifact_url);
    e->state = st;
    e->db = cnd_rstate_local(st);
    e->audit = audit;
    e->id = id;
    cnd_pubkey_fingerprint(e->fpr, cnd_identity_pk(id));
    e->io = *io;
    e->offline_ms = (o && o->offline_after_s > 0 ? o->offline_after_s : 30) * 1000LL;
    e->poll_ms = o && o->poll_ms > 0 ? o->poll_ms : 500;
    e->started_ms = cnd_unix_ms();
    e->spread = o && o->spread;
    if (e->spread) {
        if (!(o->poll_ms > 0)) e->poll_ms = 200; /* followers see a new wave this soon */
        /* Changes from here on are applied by s_sync; s_poll loads the rows as they are. */
        if ((rc = cnd_rstate_device_changes(st, 0, NULL, NULL, &e->chg))) {
            free(e);
            return rc;
        }
    }
    s_poll(e, e->started_ms);
    e->last_poll_ms = e->started_ms;
    *out = e;
    return 0;
}

void cnd_rollout_engine_destroy(cnd_rollout_engine_t **pe)
{
    if (!pe || !*pe) return;
    cnd_rollout_engine_t *e = *pe;
    for (size_t i = 0; i < e->n_rolls; i++) s_roll_free(e->rolls[i]);
    free(e->rolls);
    free(e->nodes);
    for (size_t i = 0; i < e->n_arts; i++) {
        free(e->arts[i].bytes);
        free(e->arts[i].sha);
    }
    free(e->arts);
    for (size_t i = 0; i < e->n_mans; i++) free(e->mans[i].m);
    free(e->mans);
    free(e);
    *pe = NULL;
}

void cnd_rollout_engine_stats(const cnd_rollout_engine_t *e, cnd_rollout_stats_t *st)
{
    *st = e->st;
    st->live = 0;
    st->active = 0;
    for (size_t i = 0; i < e->n_rolls; i++) {
        if (cnd_rollout_live(e->rolls[i]->rec.state)) st->live++;
        st->active += e->rolls[i]->active;
    }
    int64_t now = cnd_unix_ms();
    st->online = 0;
    for (size_t i = 0; i < e->cap_nodes; i++)
        if (e->nodes[i].used && s_online(e, &e->nodes[i], now)) st->online++;
}

int cnd_rollout_engine_idle(const cnd_rollout_engine_t *e)
{
    for (size_t i = 0; i < e->n_rolls; i++) {
        const s_roll_t *r = e->rolls[i];
        if (cnd_rollout_live(r->rec.state)) return 0;
        for (size_t k = 0; k < r->n; k++)
            if (r->devs[k].row.state == CND_RDEV_OFFERED ||
                r->devs[k].row.state == CND_RDEV_ROLLBACK_SENT)
                return 0;
    }
    return 1;
}
