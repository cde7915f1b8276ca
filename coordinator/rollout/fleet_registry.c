/*
 * fleet_registry.c: the device register and label selection (see fleet_registry.h).
 */
#include "fleet_registry.h"
#include "audit_log.h"
#include "clock.h"
#include "db.h"
#include "digest.h"
#include "identity.h"
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward migrations of component "fleet" (common/db.h). */
static const char *const s_steps[] = {
    /* 0 -> 1 */
    "CREATE TABLE fleet_device("
    " name TEXT PRIMARY KEY, ed_pk BLOB NOT NULL UNIQUE,"
    " curve_pk BLOB NOT NULL UNIQUE, fpr TEXT NOT NULL,"
    " enrolled_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0,"
    " hw TEXT NOT NULL DEFAULT '', cpu TEXT NOT NULL DEFAULT '',"
    " ram INTEGER NOT NULL DEFAULT 0, flash INTEGER NOT NULL DEFAULT 0,"
    " budget_us INTEGER NOT NULL DEFAULT 0, labels TEXT NOT NULL DEFAULT '',"
    " running_digest BLOB, running_seq INTEGER NOT NULL DEFAULT 0,"
    " runtime TEXT NOT NULL DEFAULT '', profile_ms INTEGER NOT NULL DEFAULT 0)",
};

/* A registry from before the store kernel (it had no version: its one table). */
static int s_legacy(sqlite3 *db, int *v)
{
    *v = cnd_db_has_table(db, "fleet_device") ? 1 : 0;
    return 0;
}

static const cnd_db_schema_t s_schema = {"fleet", s_steps, 1, s_legacy};

int cnd_fleet_init(sqlite3 *db)
{
    return cnd_db_migrate(db, &s_schema);
}

int cnd_fleet_enroll(sqlite3 *db, const char *name, const uint8_t ed_pk[32])
{
    if (!cnd_proto_name_ok(name))
        return cnd_errf(CND_EINVAL,
                        "'%s' is not a valid device name ([A-Za-z0-9][A-Za-z0-9._-]*,"
                        " 1..63 bytes)",
                        name);
    uint8_t curve[32];
    if (cnd_pubkey_to_curve(curve, ed_pk))
        return cnd_errf(CND_EINVAL, "%s: the key is not a valid Ed25519 public key", name);
    cnd_fleet_device_t d;
    if (cnd_fleet_get(db, name, &d) == 0)
        return cnd_errf(CND_EEXIST, "device '%s' is enrolled already", name);
    if (cnd_fleet_by_curve(db, curve, &d) == 0)
        return cnd_errf(CND_EEXIST, "this key is enrolled already, as '%s'", d.name);
    cnd_err_clear();
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, ed_pk);
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st,
                    "INSERT INTO fleet_device(name, ed_pk, curve_pk, fpr, enrolled_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)"))
        return cnd_err_wrap(CND_EDB, "fleet enroll");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, ed_pk, 32, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, curve, 32, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, fpr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, cnd_unix_time() * 1000);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : cnd_db_err(db, "fleet enroll");
    sqlite3_finalize(st);
    return rc;
}

int cnd_fleet_enroll_logged(sqlite3 *db, cnd_audit_t *audit, const char *actor, const char *name,
                            const uint8_t ed_pk[32])
{
    int rc = cnd_fleet_enroll(db, name, ed_pk);
    if (rc || !audit) return rc;
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, ed_pk);
    return cnd_audit_log_enroll(audit, actor, fpr, name, "device", ed_pk, NULL, 0);
}

int cnd_fleet_ensure(sqlite3 *db, const char *name, const uint8_t ed_pk[32])
{
    cnd_fleet_device_t d;
    int rc = cnd_fleet_get(db, name, &d);
    if (rc == 0) {
        if (memcmp(d.ed_pk, ed_pk, 32) != 0)
            return cnd_errf(CND_EEXIST, "device '%s' is registered with another key", name);
        return 0;
    }
    if (rc != CND_ENOTFOUND) return rc;
    cnd_err_clear();
    return cnd_fleet_enroll(db, name, ed_pk);
}

int cnd_fleet_revoke(sqlite3 *db, const char *name)
{
    cnd_fleet_device_t d;
    int rc = cnd_fleet_get(db, name, &d);
    if (rc == CND_ENOTFOUND) return cnd_errf(CND_ENOTFOUND, "no device named '%s'", name);
    if (rc) return rc;
    if (d.revoked_ms) return cnd_errf(CND_ESTATE, "device '%s' is revoked already", name);
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st, "UPDATE fleet_device SET revoked_ms = ?2 WHERE name = ?1"))
        return cnd_err_wrap(CND_EDB, "fleet revoke");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, cnd_unix_time() * 1000);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : cnd_db_err(db, "fleet revoke");
    sqlite3_finalize(st);
    return rc;
}

#define S_COLS                                                                                     \
    "name, ed_pk, curve_pk, fpr, enrolled_ms, revoked_ms, hw, cpu, ram, flash, budget_us, "        \
    "labels, running_digest, running_seq, runtime, profile_ms"

static void s_text(char *out, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static void s_row(cnd_fleet_device_t *d, sqlite3_stmt *st)
{
    memset(d, 0, sizeof *d);
    s_text(d->name, sizeof d->name, st, 0);
    if (sqlite3_column_bytes(st, 1) == 32) memcpy(d->ed_pk, sqlite3_column_blob(st, 1), 32);
    if (sqlite3_column_bytes(st, 2) == 32) memcpy(d->curve_pk, sqlite3_column_blob(st, 2), 32);
    s_text(d->fpr, sizeof d->fpr, st, 3);
    d->enrolled_ms = sqlite3_column_int64(st, 4);
    d->revoked_ms = sqlite3_column_int64(st, 5);
    s_text(d->hw, sizeof d->hw, st, 6);
    s_text(d->cpu, sizeof d->cpu, st, 7);
    d->ram = (uint64_t)sqlite3_column_int64(st, 8);
    d->flash = (uint64_t)sqlite3_column_int64(st, 9);
    d->budget_us = (uint32_t)sqlite3_column_int64(st, 10);
    const unsigned char *l = sqlite3_column_text(st, 11);
    cnd_fleet_labels_decode(d, l ? (const char *)l : "");
    if (sqlite3_column_bytes(st, 12) == 32) {
        d->has_running = 1;
        memcpy(d->running_digest, sqlite3_column_blob(st, 12), 32);
    }
    d->running_seq = (uint64_t)sqlite3_column_int64(st, 13);
    s_text(d->runtime, sizeof d->runtime, st, 14);
    d->profile_ms = sqlite3_column_int64(st, 15);
}

static int s_get(sqlite3 *db, const char *where, const void *key, int keylen, cnd_fleet_device_t *d)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT " S_COLS " FROM fleet_device WHERE %s", where);
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st, sql)) return cnd_err_wrap(CND_EDB, "fleet lookup");
    if (keylen < 0)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_blob(st, 1, key, keylen, SQLITE_TRANSIENT);
    int r = sqlite3_step(st), rc;
    if (r == SQLITE_ROW) {
        s_row(d, st);
        rc = 0;
    } else if (r == SQLITE_DONE) {
        rc = CND_ENOTFOUND;
    } else {
        rc = cnd_db_err(db, "fleet lookup");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_fleet_get(sqlite3 *db, const char *name, cnd_fleet_device_t *d)
{
    return s_get(db, "name = ?1", name, -1, d);
}

int cnd_fleet_by_curve(sqlite3 *db, const uint8_t curve_pk[32], cnd_fleet_device_t *d)
{
    return s_get(db, "curve_pk = ?1", curve_pk, 32, d);
}

int cnd_fleet_put_profile(sqlite3 *db, const cnd_fleet_device_t *d)
{
    static const char *sql =
        "UPDATE fleet_device SET hw = ?2, cpu = ?3, ram = ?4, flash = ?5, budget_us = ?6,"
        " labels = ?7, running_digest = ?8, running_seq = ?9, runtime = ?10, profile_ms = ?11"
        " WHERE name = ?1";
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st, sql)) return cnd_err_wrap(CND_EDB, "fleet profile");
    char labels[CND_FLEET_LABELS_MAX * 164 + 1];
    cnd_fleet_labels_encode(labels, sizeof labels, d);
    sqlite3_bind_text(st, 1, d->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, d->hw, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, d->cpu, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (int64_t)d->ram);
    sqlite3_bind_int64(st, 5, (int64_t)d->flash);
    sqlite3_bind_int64(st, 6, d->budget_us);
    sqlite3_bind_text(st, 7, labels, -1, SQLITE_TRANSIENT);
    if (d->has_running)
        sqlite3_bind_blob(st, 8, d->running_digest, 32, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_int64(st, 9, (int64_t)d->running_seq);
    sqlite3_bind_text(st, 10, d->runtime, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 11, d->profile_ms);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : cnd_db_err(db, "fleet profile");
    sqlite3_finalize(st);
    return rc;
}

int cnd_fleet_count(sqlite3 *db, uint64_t *enrolled, uint64_t *profiled)
{
    *enrolled = *profiled = 0;
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st, "SELECT count(*), coalesce(sum(profile_ms > 0), 0) FROM fleet_device"))
        return cnd_err_wrap(CND_EDB, "fleet count");
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *enrolled = (uint64_t)sqlite3_column_int64(st, 0);
        *profiled = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        rc = cnd_db_err(db, "fleet count");
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_fleet_list(sqlite3 *db, cnd_fleet_device_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (cnd_db_prep(db, &st, "SELECT " S_COLS " FROM fleet_device ORDER BY name"))
        return cnd_err_wrap(CND_EDB, "fleet list");
    size_t cap = 0;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            cnd_fleet_device_t *g = realloc(*out, nc * sizeof *g);
            if (!g) {
                rc = cnd_errf(CND_ENOMEM, "fleet list: out of memory");
                break;
            }
            *out = g;
            cap = nc;
        }
        s_row(&(*out)[(*n)++], st);
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_db_err(db, "fleet list");
    sqlite3_finalize(st);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void cnd_fleet_labels_encode(char *out, size_t cap, const cnd_fleet_device_t *d)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < d->n_labels && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s\x1f%s\x1e", d->labels[i].key, d->labels[i].value);
        if (w < 0) break;
        o += (size_t)w;
    }
}

void cnd_fleet_labels_decode(cnd_fleet_device_t *d, const char *s)
{
    d->n_labels = 0;
    while (*s && d->n_labels < CND_FLEET_LABELS_MAX) {
        const char *us = strchr(s, '\x1f');
        if (!us) break;
        const char *rs = strchr(us + 1, '\x1e');
        if (!rs) break;
        cnd_fleet_label_t *l = &d->labels[d->n_labels++];
        snprintf(l->key, sizeof l->key, "%.*s", (int)(us - s), s);
        snprintf(l->value, sizeof l->value, "%.*s", (int)(rs - us - 1), us + 1);
        s = rs + 1;
    }
}

int cnd_fleet_select_parse(cnd_fleet_select_t *s, const char *expr)
{
    memset(s, 0, sizeof *s);
    if (!expr) return 0;
    const char *p = expr;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0) return cnd_errf(CND_EINVAL, "--select '%s': empty term", expr);
        if (s->n == 16) return cnd_errf(CND_EINVAL, "--select: more than 16 terms");
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p || (size_t)(eq - p) > 32)
            return cnd_errf(CND_EINVAL, "--select '%.*s': expected KEY=VALUE", (int)n, p);
        __typeof__(s->t[0]) *t = &s->t[s->n++];
        snprintf(t->key, sizeof t->key, "%.*s", (int)(eq - p), p);
        const char *v = eq + 1, *vend = p + n;
        if (vend - v == 1 && *v == '*') {
            t->n_values = 0;
        } else {
            while (v <= vend) {
                const char *bar = memchr(v, '|', (size_t)(vend - v));
                const char *ve = bar ? bar : vend;
                if (t->n_values == 8 || ve - v > 128)
                    return cnd_errf(CND_EINVAL, "--select '%.*s': at most 8 values of 128 bytes",
                                    (int)n, p);
                snprintf(t->values[t->n_values++], 129, "%.*s", (int)(ve - v), v);
                if (!bar) break;
                v = bar + 1;
            }
        }
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

static const char *s_attr(const cnd_fleet_device_t *d, const char *key)
{
    if (strcmp(key, "class") == 0) return d->hw;
    if (strcmp(key, "cpu") == 0) return d->cpu;
    if (strcmp(key, "name") == 0) return d->name;
    for (size_t i = 0; i < d->n_labels; i++)
        if (strcmp(d->labels[i].key, key) == 0) return d->labels[i].value;
    return NULL;
}

int cnd_fleet_select_match(const cnd_fleet_select_t *s, const cnd_fleet_device_t *d)
{
    if (s->n && !d->profile_ms) return 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *v = s_attr(d, s->t[i].key);
        if (!v) return 0;
        if (s->t[i].n_values == 0) continue;
        int ok = 0;
        for (size_t k = 0; k < s->t[i].n_values && !ok; k++) ok = strcmp(v, s->t[i].values[k]) == 0;
        if (!ok) return 0;
    }
    return 1;
}
