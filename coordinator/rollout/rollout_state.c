/*
 * rollout_state.c: the state interface (rollout_state.h): URL choice, dispatch, and the SQLite
 * back end, which is the rollout_store.h and fleet_registry.h functions on the coordinator
 * database, unchanged. The PostgreSQL back end is rollout_state_pg.c.
 */
#include "rollout_state.h"
#include "db.h"
#include "rollout_state_be.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the SQLite back end -------------------------------------------------------------------- */

static int s_lite_nop(cnd_rstate_t *s)
{
    (void)s;
    return 0;
}

static void s_lite_void(cnd_rstate_t *s)
{
    (void)s;
}

static int s_lite_rollout_insert(cnd_rstate_t *s, cnd_rollout_rec_t *r)
{
    return cnd_rstore_rollout_insert(s->local, r);
}

static int s_lite_rollout_get(cnd_rstate_t *s, int64_t id, cnd_rollout_rec_t *r)
{
    return cnd_rstore_rollout_get(s->local, id, r);
}

static int s_lite_rollout_update(cnd_rstate_t *s, const cnd_rollout_rec_t *r)
{
    return cnd_rstore_rollout_update(s->local, r);
}

static int s_lite_rollouts(cnd_rstate_t *s, cnd_rollout_rec_t **out, size_t *n)
{
    return cnd_rstore_rollouts(s->local, out, n);
}

/* Binds the names of the live rollout states (cnd_rollout_live) to parameters first..first+2. */
static void s_bind_live(sqlite3_stmt *st, int first)
{
    static const cnd_rollout_state_t live[] = {CND_ROLLOUT_RUNNING, CND_ROLLOUT_PAUSED,
                                               CND_ROLLOUT_ROLLING_BACK};
    for (int i = 0; i < 3; i++)
        sqlite3_bind_text(st, first + i, cnd_rollout_state_name(live[i]), -1, SQLITE_STATIC);
}

static int s_lite_rollouts_loaded(cnd_rstate_t *s, int64_t **ids, cnd_rollout_state_t **states,
                                  size_t *n)
{
    *ids = NULL;
    *states = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->local, &st,
                         "SELECT id, state FROM rollout r WHERE state IN (?1, ?2, ?3)"
                         " OR id = (SELECT max(id) FROM rollout r2"
                         " WHERE r2.model = r.model AND r2.state IN (?4, ?5)) ORDER BY id");
    if (rc) return rc;
    s_bind_live(st, 1);
    sqlite3_bind_text(st, 4, cnd_rollout_state_name(CND_ROLLOUT_COMPLETED), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, cnd_rollout_state_name(CND_ROLLOUT_ABORTED), -1, SQLITE_STATIC);
    size_t cap = 0;
    int r;
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            int64_t *gi = realloc(*ids, cap * sizeof *gi);
            if (gi) *ids = gi;
            cnd_rollout_state_t *gs = gi ? realloc(*states, cap * sizeof *gs) : NULL;
            if (gs) *states = gs;
            if (!gi || !gs) {
                rc = cnd_errf(CND_ENOMEM, "out of memory");
                break;
            }
        }
        int64_t id = sqlite3_column_int64(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        if (!t || cnd_rollout_state_parse(&(*states)[*n], (const char *)t))
            rc = cnd_errf(CND_ECORRUPT, "%s: rollout %lld: unknown state '%s'",
                          cnd_db_path(s->local), (long long)id, t ? (const char *)t : "");
        else
            (*ids)[(*n)++] = id;
    }
    sqlite3_finalize(st);
    if (rc) {
        free(*ids);
        free(*states);
        *ids = NULL;
        *states = NULL;
        *n = 0;
    }
    return rc;
}

static int s_lite_manifest_put(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                               uint64_t seq, const uint8_t *m, size_t len)
{
    return cnd_rstore_manifest_put(s->local, rollout, artifact, kind, seq, m, len);
}

static int s_lite_manifest_get(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                               uint8_t **m, size_t *len)
{
    return cnd_rstore_manifest_get(s->local, rollout, artifact, kind, m, len);
}

static int s_lite_device_put(cnd_rstate_t *s, const cnd_rdevice_t *d)
{
    return cnd_rstore_device_put(s->local, d);
}

static int s_lite_devices(cnd_rstate_t *s, int64_t rollout, cnd_rdevice_t **out, size_t *n)
{
    return cnd_rstore_devices(s->local, rollout, out, n);
}

/* Runs a one-column text query (parameters bound by bind) into an array of names. */
static int s_lite_names(cnd_rstate_t *s, const char *sql, void (*bind)(sqlite3_stmt *),
                        char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(s->local, &st, sql);
    if (rc) return rc;
    if (bind) bind(st);
    size_t cap = 0;
    int r;
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        rc = cnd_rstate_names_push(names, n, &cap, t ? (const char *)t : "");
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_db_err(s->local, "rollout state");
    sqlite3_finalize(st);
    if (rc) {
        cnd_rstate_names_free(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

static void s_bind_busy(sqlite3_stmt *st)
{
    s_bind_live(st, 1);
    sqlite3_bind_text(st, 4, cnd_rdevice_state_name(CND_RDEV_SKIPPED), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, cnd_rdevice_state_name(CND_RDEV_CURRENT), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, cnd_rdevice_state_name(CND_RDEV_CANCELLED), -1, SQLITE_STATIC);
}

static int s_lite_busy_devices(cnd_rstate_t *s, char ***names, size_t *n)
{
    return s_lite_names(s,
                        "SELECT d.device FROM rollout_device d JOIN rollout r ON r.id = d.rollout"
                        " WHERE r.state IN (?1, ?2, ?3) AND d.state NOT IN (?4, ?5, ?6)",
                        s_bind_busy, names, n);
}

static int s_lite_latency(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t *us)
{
    return cnd_rstore_latency(s->local, artifact, cpu, us);
}

static int s_lite_latency_add(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t us)
{
    return cnd_rstore_latency_add(s->local, artifact, cpu, us);
}

static int s_lite_fleet_enroll(cnd_rstate_t *s, const char *name, const uint8_t ed_pk[32])
{
    return cnd_fleet_enroll(s->local, name, ed_pk);
}

static int s_lite_fleet_get(cnd_rstate_t *s, const char *name, cnd_fleet_device_t *d)
{
    return cnd_fleet_get(s->local, name, d);
}

static int s_lite_fleet_by_curve(cnd_rstate_t *s, const uint8_t curve_pk[32], cnd_fleet_device_t *d)
{
    return cnd_fleet_by_curve(s->local, curve_pk, d);
}

static int s_lite_fleet_put_profile(cnd_rstate_t *s, const cnd_fleet_device_t *d)
{
    return cnd_fleet_put_profile(s->local, d);
}

static int s_lite_fleet_list(cnd_rstate_t *s, cnd_fleet_device_t **out, size_t *n)
{
    return cnd_fleet_list(s->local, out, n);
}

static int s_lite_fleet_count(cnd_rstate_t *s, uint64_t *enrolled, uint64_t *profiled)
{
    return cnd_fleet_count(s->local, enrolled, profiled);
}

static int s_lite_fleet_revoke(cnd_rstate_t *s, const char *name)
{
    return cnd_fleet_revoke(s->local, name);
}

static int s_lite_fleet_revoked(cnd_rstate_t *s, char ***names, size_t *n)
{
    return s_lite_names(s, "SELECT name FROM fleet_device WHERE revoked_ms != 0", NULL, names, n);
}

static int s_lite_lead(cnd_rstate_t *s, int *leading)
{
    (void)s;
    *leading = 1;
    return 0;
}

/* Devices spread over replicas need a shared server: one process serves them all on SQLite. */
static int s_lite_changes(cnd_rstate_t *s, int64_t after, cnd_rdevice_t **out, size_t *n,
                          int64_t *last)
{
    (void)s, (void)after, (void)out, (void)n, (void)last;
    return cnd_errf(CND_ESTATE, "device changes: only a PostgreSQL rollout state has them");
}

static int s_lite_presence_put(cnd_rstate_t *s, char *const *names, size_t n, int64_t now_ms)
{
    (void)s, (void)names, (void)n, (void)now_ms;
    return cnd_errf(CND_ESTATE, "device presence: only a PostgreSQL rollout state has it");
}

static int s_lite_presence_since(cnd_rstate_t *s, int64_t since_ms, char ***names, size_t *n)
{
    (void)s, (void)since_ms, (void)names, (void)n;
    return cnd_errf(CND_ESTATE, "device presence: only a PostgreSQL rollout state has it");
}

static const cnd_rstate_ops_t s_lite_ops = {
    "sqlite",
    s_lite_nop,
    s_lite_nop,
    s_lite_void,
    s_lite_void,
    s_lite_rollout_insert,
    s_lite_rollout_get,
    s_lite_rollout_update,
    s_lite_rollouts,
    s_lite_rollouts_loaded,
    s_lite_manifest_put,
    s_lite_manifest_get,
    s_lite_device_put,
    s_lite_devices,
    s_lite_busy_devices,
    s_lite_latency,
    s_lite_latency_add,
    s_lite_fleet_enroll,
    s_lite_fleet_get,
    s_lite_fleet_by_curve,
    s_lite_fleet_put_profile,
    s_lite_fleet_list,
    s_lite_fleet_count,
    s_lite_fleet_revoke,
    s_lite_fleet_revoked,
    s_lite_lead,
    s_lite_nop,
    s_lite_changes,
    s_lite_presence_put,
    s_lite_presence_since,
};

/* --- the handle ----------------------------------------------------------------------------- */

int cnd_rstate_url_is_pg(const char *url)
{
    return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

/* The URL for logs: "user:password@" becomes "user:***@". */
static void s_redact(char *out, size_t cap, const char *url)
{
    snprintf(out, cap, "%s", url);
    char *scheme = strstr(out, "://");
    if (!scheme) return;
    char *auth = scheme + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (!at || (slash && slash < at)) return;
    char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon) return;
    char rest[CND_RSTATE_URL_MAX + 1];
    snprintf(rest, sizeof rest, "%s", at);
    snprintf(colon + 1, cap - (size_t)(colon + 1 - out), "***%s", rest);
}

int cnd_rstate_open(cnd_rstate_t **out, const char *url, sqlite3 *local)
{
    *out = NULL;
    if (!local) return cnd_errf(CND_EINVAL, "rollout state: no coordinator database");
    if (url && strlen(url) > CND_RSTATE_URL_MAX)
        return cnd_errf(CND_EINVAL, "rollout state URL: longer than %d bytes", CND_RSTATE_URL_MAX);
    int pg = cnd_rstate_url_is_pg(url);
    if (url && url[0] && !pg && strcmp(url, "sqlite:") != 0)
        return cnd_errf(CND_EINVAL,
                        "rollout state URL '%s': expected sqlite: (the coordinator database) or "
                        "postgresql://...",
                        url);
    cnd_rstate_t *s = calloc(1, sizeof *s);
    if (!s) return cnd_errf(CND_ENOMEM, "out of memory");
    s->local = local;
    s_redact(s->url, sizeof s->url, url && url[0] ? url : "sqlite:");
    int rc;
    if (pg) {
        s->ops = &cnd_rstate_pg_ops;
        rc = cnd_rstate_pg_connect(s, url);
    } else {
        s->ops = &s_lite_ops;
        /* A read-only handle (the ZAP thread's) reads tables its writer created. */
        rc = sqlite3_db_readonly(local, "main") == 1 ? 0 : cnd_fleet_init(local);
        if (!rc && sqlite3_db_readonly(local, "main") != 1) rc = cnd_rstore_init(local);
    }
    if (rc) {
        cnd_rstate_close(&s);
        return rc;
    }
    *out = s;
    return 0;
}

void cnd_rstate_close(cnd_rstate_t **ps)
{
    if (!ps || !*ps) return;
    cnd_rstate_t *s = *ps;
    if (s->ops) s->ops->close(s);
    free(s);
    *ps = NULL;
}

const char *cnd_rstate_kind(const cnd_rstate_t *s)
{
    return s->ops->kind;
}

const char *cnd_rstate_url(const cnd_rstate_t *s)
{
    return s->url;
}

sqlite3 *cnd_rstate_local(const cnd_rstate_t *s)
{
    return s->local;
}

int cnd_rstate_names_push(char ***names, size_t *n, size_t *cap, const char *name)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        char **g = realloc(*names, nc * sizeof *g);
        if (!g) return cnd_errf(CND_ENOMEM, "out of memory");
        *names = g;
        *cap = nc;
    }
    char *c = strdup(name);
    if (!c) return cnd_errf(CND_ENOMEM, "out of memory");
    (*names)[(*n)++] = c;
    return 0;
}

int cnd_rstate_lead(cnd_rstate_t *s, int *leading)
{
    return s->ops->lead(s, leading);
}

int cnd_rstate_lead_check(cnd_rstate_t *s)
{
    return s->ops->lead_check(s);
}

int cnd_rstate_device_changes(cnd_rstate_t *s, int64_t after, cnd_rdevice_t **out, size_t *n,
                              int64_t *last)
{
    return s->ops->device_changes(s, after, out, n, last);
}

int cnd_rstate_presence_put(cnd_rstate_t *s, char *const *names, size_t n, int64_t now_ms)
{
    return s->ops->presence_put(s, names, n, now_ms);
}

int cnd_rstate_presence_since(cnd_rstate_t *s, int64_t since_ms, char ***names, size_t *n)
{
    return s->ops->presence_since(s, since_ms, names, n);
}

void cnd_rstate_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* --- dispatch ------------------------------------------------------------------------------- */

int cnd_rstate_begin(cnd_rstate_t *s)
{
    return s->ops->begin(s);
}

int cnd_rstate_commit(cnd_rstate_t *s)
{
    return s->ops->commit(s);
}

void cnd_rstate_rollback(cnd_rstate_t *s)
{
    s->ops->rollback(s);
}

int cnd_rstate_rollout_insert(cnd_rstate_t *s, cnd_rollout_rec_t *r)
{
    return s->ops->rollout_insert(s, r);
}

int cnd_rstate_rollout_get(cnd_rstate_t *s, int64_t id, cnd_rollout_rec_t *r)
{
    return s->ops->rollout_get(s, id, r);
}

int cnd_rstate_rollout_update(cnd_rstate_t *s, const cnd_rollout_rec_t *r)
{
    return s->ops->rollout_update(s, r);
}

int cnd_rstate_rollouts(cnd_rstate_t *s, cnd_rollout_rec_t **out, size_t *n)
{
    return s->ops->rollouts(s, out, n);
}

int cnd_rstate_rollouts_loaded(cnd_rstate_t *s, int64_t **ids, cnd_rollout_state_t **states,
                               size_t *n)
{
    return s->ops->rollouts_loaded(s, ids, states, n);
}

int cnd_rstate_manifest_put(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                            uint64_t seq, const uint8_t *m, size_t len)
{
    return s->ops->manifest_put(s, rollout, artifact, kind, seq, m, len);
}

int cnd_rstate_manifest_get(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                            uint8_t **m, size_t *len)
{
    return s->ops->manifest_get(s, rollout, artifact, kind, m, len);
}

int cnd_rstate_device_put(cnd_rstate_t *s, const cnd_rdevice_t *d)
{
    return s->ops->device_put(s, d);
}

int cnd_rstate_devices(cnd_rstate_t *s, int64_t rollout, cnd_rdevice_t **out, size_t *n)
{
    return s->ops->devices(s, rollout, out, n);
}

int cnd_rstate_busy_devices(cnd_rstate_t *s, char ***names, size_t *n)
{
    return s->ops->busy_devices(s, names, n);
}

int cnd_rstate_latency(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t *us)
{
    return s->ops->latency(s, artifact, cpu, us);
}

int cnd_rstate_latency_add(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t us)
{
    return s->ops->latency_add(s, artifact, cpu, us);
}

int cnd_rstate_fleet_enroll(cnd_rstate_t *s, const char *name, const uint8_t ed_pk[32])
{
    return s->ops->fleet_enroll(s, name, ed_pk);
}

int cnd_rstate_fleet_get(cnd_rstate_t *s, const char *name, cnd_fleet_device_t *d)
{
    return s->ops->fleet_get(s, name, d);
}

int cnd_rstate_fleet_by_curve(cnd_rstate_t *s, const uint8_t curve_pk[32], cnd_fleet_device_t *d)
{
    return s->ops->fleet_by_curve(s, curve_pk, d);
}

int cnd_rstate_fleet_put_profile(cnd_rstate_t *s, const cnd_fleet_device_t *d)
{
    return s->ops->fleet_put_profile(s, d);
}

int cnd_rstate_fleet_list(cnd_rstate_t *s, cnd_fleet_device_t **out, size_t *n)
{
    return s->ops->fleet_list(s, out, n);
}

int cnd_rstate_fleet_count(cnd_rstate_t *s, uint64_t *enrolled, uint64_t *profiled)
{
    return s->ops->fleet_count(s, enrolled, profiled);
}

int cnd_rstate_fleet_revoke(cnd_rstate_t *s, const char *name)
{
    return s->ops->fleet_revoke(s, name);
}

int cnd_rstate_fleet_revoked(cnd_rstate_t *s, char ***names, size_t *n)
{
    return s->ops->fleet_revoked(s, names, n);
}
