/*
 * registry.c: the artifact registry (see registry.h). Prepared statements only; every function
 * joins the caller's transaction.
 *
 * Order inside cnd_registry_publish, all in one transaction: validate (nothing written yet), store
 * the artifact, log model.version, sign (raise the name's sequence, log artifact.sign), keep the
 * signed manifest with the artifact. A failure at any step rolls all of it back, so there is
 * never an artifact without its entries nor a sequence spent without a logged signature.
 */
#include "registry.h"
#include "audit_actions.h"
#include "clock.h"
#include "cnd_rt.h"
#include "db.h"
#include "digest.h"
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY_S           86400
#define S_DEFAULT_EXPIRES (30 * S_DAY_S)

/* Forward migrations of component "registry" (common/db.h). */
static const char *const s_steps[] = {
    /* 0 -> 1 */
    "CREATE TABLE registry_artifact("
    " id INTEGER PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL,"
    " variant TEXT NOT NULL, job TEXT NOT NULL DEFAULT '', digest BLOB NOT NULL UNIQUE,"
    " size INTEGER NOT NULL, arena INTEGER NOT NULL, macs INTEGER NOT NULL,"
    " wbits INTEGER NOT NULL, classes TEXT NOT NULL, accuracy REAL NOT NULL,"
    " latency TEXT NOT NULL, bytes BLOB NOT NULL, manifest BLOB, created_ms INTEGER NOT NULL);"
    "CREATE TABLE registry_seq(model TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
};

static const cnd_db_schema_t s_schema = {"registry", s_steps, 1, NULL};

/* All or nothing inside whatever transaction the caller holds: BEGIN IMMEDIATE when there is
 * none, and a savepoint either way, so a failure part-way leaves nothing behind even in a
 * caller's transaction that goes on to commit (the coordinator daemon's loop does). */
static int s_begin(sqlite3 *db, int *own)
{
    int rc = cnd_db_begin(db, own);
    if (!rc && (rc = cnd_db_exec(db, "SAVEPOINT cnd_registry", "opening a savepoint")))
        rc = cnd_db_end(db, *own, rc);
    return rc;
}

static int s_end(sqlite3 *db, int own, int rc)
{
    if (rc) sqlite3_exec(db, "ROLLBACK TO cnd_registry", NULL, NULL, NULL);
    int r2 = cnd_db_exec(db, "RELEASE cnd_registry", "closing a savepoint");
    return cnd_db_end(db, own, rc ? rc : r2);
}

/* --- files from before the registry --------------------------------------------------------- */

/* Raises a name's counter to at least seq (never lowers it). */
static int s_raise(sqlite3 *db, const char *model, uint64_t seq)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st,
                         "INSERT INTO registry_seq(model, seq) VALUES(?1, ?2) ON CONFLICT(model)"
                         " DO UPDATE SET seq = max(seq, excluded.seq)");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)seq);
    return cnd_db_done(db, st, "raising a manifest sequence");
}

/* The coordinator kept the manifest it signed at a job's end in its model table (format int8).
 * Each one's sequence raises its name's counter; a manifest that does not decode (it never left
 * the coordinator's own writer) is skipped. */
static int s_adopt_job_manifests(sqlite3 *db)
{
    if (!cnd_db_has_table(db, "model") || !cnd_db_has_table(db, "coord_meta")) return 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "SELECT manifest FROM model WHERE manifest IS NOT NULL");
    if (rc) return rc;
    int r;
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        cnd_manifest_t m;
        const uint8_t *b = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        if (b && cnd_manifest_decode_signed(&m, b, n) == 0)
            rc = s_raise(db, m.name, m.sequence);
        else
            cnd_err_clear();
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_db_err(db, "reading the coordinator's manifests");
    sqlite3_finalize(st);
    return rc;
}

/* What came before the registry, adopted once, when it is created (registry.h). */
static int s_adopt(sqlite3 *db)
{
    int rc = 0;
    if (cnd_db_has_table(db, "rollout_artifact"))
        rc = cnd_db_exec(db,
                         "INSERT INTO registry_artifact(id, model, version, variant, job, digest,"
                         " size, arena, macs, wbits, classes, accuracy, latency, bytes, manifest,"
                         " created_ms) SELECT id, model, version, variant, job, digest, size,"
                         " arena, macs, wbits, classes, accuracy, latency, bytes, NULL, created_ms"
                         " FROM rollout_artifact",
                         "adopting the rollout engine's artifacts");
    if (!rc && cnd_db_has_table(db, "rollout_seq"))
        rc =
            cnd_db_exec(db,
                        "INSERT INTO registry_seq(model, seq) SELECT model, seq FROM rollout_seq"
                        " WHERE true ON CONFLICT(model) DO UPDATE SET seq = max(seq, excluded.seq)",
                        "adopting the rollout engine's sequences");
    if (!rc) rc = s_adopt_job_manifests(db);
    return rc;
}

int cnd_registry_init(sqlite3 *db)
{
    int own, rc = cnd_db_begin(db, &own);
    if (rc) return rc;
    int before = 0;
    rc = cnd_db_version(db, s_schema.component, &before);
    if (!rc) rc = cnd_db_migrate(db, &s_schema);
    if (!rc && before == 0) rc = s_adopt(db);
    return cnd_db_end(db, own, rc);
}

/* --- rows ----------------------------------------------------------------------------------- */

static void s_text(char *out, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

#define S_COLS                                                                                     \
    "id, model, version, variant, job, digest, size, arena, macs, wbits, classes, accuracy, "      \
    "latency, created_ms"

static void s_row(cnd_rartifact_t *a, sqlite3_stmt *st)
{
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(st, 0);
    s_text(a->model, sizeof a->model, st, 1);
    a->version = (uint64_t)sqlite3_column_int64(st, 2);
    s_text(a->variant, sizeof a->variant, st, 3);
    s_text(a->job, sizeof a->job, st, 4);
    if (sqlite3_column_bytes(st, 5) == 32) memcpy(a->digest, sqlite3_column_blob(st, 5), 32);
    a->size = (uint64_t)sqlite3_column_int64(st, 6);
    a->arena = (uint64_t)sqlite3_column_int64(st, 7);
    a->macs = (uint64_t)sqlite3_column_int64(st, 8);
    a->wbits = sqlite3_column_int(st, 9);
    s_text(a->classes, sizeof a->classes, st, 10);
    a->accuracy = sqlite3_column_double(st, 11);
    s_text(a->latency, sizeof a->latency, st, 12);
    a->created_ms = sqlite3_column_int64(st, 13);
}

/* Stores an artifact; a->id receives its id. CND_EEXIST when the digest is there already. */
static int s_put(sqlite3 *db, cnd_rartifact_t *a, const uint8_t *bytes, size_t len)
{
    cnd_rartifact_t old;
    if (cnd_registry_by_digest(db, a->digest, &old) == 0) {
        a->id = old.id;
        return cnd_errf(CND_EEXIST, "this artifact is published already as %s@%llu (%s)", old.model,
                        (unsigned long long)old.version, old.variant);
    }
    cnd_err_clear();
    sqlite3_stmt *st;
    int rc = cnd_db_prep(
        db, &st,
        "INSERT INTO registry_artifact(model, version, variant, job, digest, size, arena,"
        " macs, wbits, classes, accuracy, latency, bytes, created_ms)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)");
    if (rc) return rc;
    a->created_ms = cnd_unix_time() * 1000;
    sqlite3_bind_text(st, 1, a->model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)a->version);
    sqlite3_bind_text(st, 3, a->variant, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, a->job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 5, a->digest, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (int64_t)a->size);
    sqlite3_bind_int64(st, 7, (int64_t)a->arena);
    sqlite3_bind_int64(st, 8, (int64_t)a->macs);
    sqlite3_bind_int(st, 9, a->wbits);
    sqlite3_bind_text(st, 10, a->classes, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 11, a->accuracy);
    sqlite3_bind_text(st, 12, a->latency, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob64(st, 13, bytes, len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 14, a->created_ms);
    if ((rc = cnd_db_done(db, st, "storing an artifact"))) return rc;
    a->id = sqlite3_last_insert_rowid(db);
    return 0;
}

static int s_keep_manifest(sqlite3 *db, int64_t id, const uint8_t *m, size_t len)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "UPDATE registry_artifact SET manifest = ?2 WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_blob64(st, 2, m, len, SQLITE_TRANSIENT);
    return cnd_db_done(db, st, "keeping an artifact's manifest");
}

/* A blob column copied out (caller frees). */
static int s_blob(sqlite3_stmt *st, int col, uint8_t **out, size_t *len)
{
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    *out = malloc(n ? n : 1);
    if (!*out) return cnd_errf(CND_ENOMEM, "out of memory for a %zu-byte blob", n);
    if (n) memcpy(*out, sqlite3_column_blob(st, col), n);
    *len = n;
    return 0;
}

int cnd_registry_get(sqlite3 *db, int64_t id, cnd_rartifact_t *a, uint8_t **bytes, size_t *len)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "SELECT " S_COLS ", bytes FROM registry_artifact WHERE id = ?1");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r != SQLITE_ROW) {
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? cnd_errf(CND_ENOTFOUND, "no artifact %lld", (long long)id)
                                : cnd_db_err(db, "reading an artifact");
    }
    s_row(a, st);
    if (bytes && !(rc = s_blob(st, 14, bytes, len))) {
        uint8_t d[32];
        cnd_sha256(d, *bytes, *len);
        if (memcmp(d, a->digest, 32) != 0 || *len != a->size) {
            free(*bytes);
            *bytes = NULL;
            rc = cnd_errf(CND_ECORRUPT, "%s: artifact %lld: stored bytes do not match its digest",
                          cnd_db_path(db), (long long)id);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_registry_by_digest(sqlite3 *db, const uint8_t digest[32], cnd_rartifact_t *a)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st, "SELECT " S_COLS " FROM registry_artifact WHERE digest = ?1");
    if (rc) return rc;
    sqlite3_bind_blob(st, 1, digest, 32, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) s_row(a, st);
    sqlite3_finalize(st);
    return r == SQLITE_ROW    ? 0
           : r == SQLITE_DONE ? CND_ENOTFOUND
                              : cnd_db_err(db, "reading an artifact");
}

int cnd_registry_list(sqlite3 *db, const char *model, int64_t version, cnd_rartifact_t **out,
                      size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st,
                         "SELECT " S_COLS " FROM registry_artifact WHERE (?1 = '' OR model = ?1)"
                         " AND (?2 < 0 OR version = ?2) ORDER BY model, version, id");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, model ? model : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, version);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            cnd_rartifact_t *g = realloc(*out, nc * sizeof *g);
            if (!g) {
                rc = cnd_errf(CND_ENOMEM, "out of memory");
                break;
            }
            *out = g;
            cap = nc;
        }
        s_row(&(*out)[(*n)++], st);
    }
    if (!rc && r != SQLITE_DONE) rc = cnd_db_err(db, "listing artifacts");
    sqlite3_finalize(st);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int cnd_registry_manifest(sqlite3 *db, int64_t id, uint8_t **m, size_t *len)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st,
                         "SELECT manifest FROM registry_artifact WHERE id = ?1 AND manifest IS NOT"
                         " NULL");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        rc = s_blob(st, 0, m, len);
    else
        rc = r == SQLITE_DONE
                 ? cnd_errf(CND_ENOTFOUND, "artifact %lld has no manifest kept", (long long)id)
                 : cnd_db_err(db, "reading a manifest");
    sqlite3_finalize(st);
    return rc;
}

/* --- signing -------------------------------------------------------------------------------- */

void cnd_registry_version_name(char *out, size_t cap, const char *model, uint64_t version)
{
    snprintf(out, cap, "%s@%llu", model, (unsigned long long)version);
}

/* The sequence rule: one more than the highest ever signed for the name, stored before it is
 * returned (in the caller's transaction). */
static int s_next_seq(sqlite3 *db, const char *model, uint64_t *seq)
{
    sqlite3_stmt *st;
    int rc = cnd_db_prep(db, &st,
                         "INSERT INTO registry_seq(model, seq) VALUES(?1, 1)"
                         " ON CONFLICT(model) DO UPDATE SET seq = seq + 1 RETURNING seq");
    if (rc) return rc;
    sqlite3_bind_text(st, 1, model, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = cnd_db_err(db, "raising a manifest sequence");
    } else {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        while (sqlite3_step(st) == SQLITE_ROW) {
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* artifact.sign for a manifest m (signed bytes b) of artifact a. */
static int s_audit_sign(cnd_audit_t *audit, const cnd_identity_t *id, const char *actor,
                        const cnd_rartifact_t *a, const cnd_manifest_t *m, const cnd_buf_t *b)
{
    if (!audit) return 0;
    char ver[160], fpr[65];
    cnd_registry_version_name(ver, sizeof ver, a->model, a->version);
    cnd_pubkey_fingerprint(fpr, cnd_identity_pk(id));
    cnd_audit_artifact_sign_t e = {.version = ver,
                                   .job = a->job,
                                   .variant = a->variant,
                                   .sequence = m->sequence,
                                   .size = a->size,
                                   .device_class = a->classes,
                                   .expires = m->expires,
                                   .rollback = (m->flags & CND_MANIFEST_ROLLBACK) != 0,
                                   .signer = fpr,
                                   .artifact = a->digest,
                                   .manifest = b->data,
                                   .manifest_len = b->len};
    return cnd_audit_log_artifact_sign(audit, actor, &e);
}

int cnd_registry_sign(sqlite3 *db, cnd_audit_t *audit, const cnd_identity_t *id, const char *actor,
                      const cnd_rartifact_t *a, int rollback, int64_t expires_s, uint8_t **out,
                      size_t *out_len, uint64_t *seq)
{
    *out = NULL;
    *out_len = 0;
    cnd_manifest_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", a->model);
    snprintf(m.target, sizeof m.target, "%s", a->classes);
    m.version = a->version;
    m.length = a->size;
    memcpy(m.digest, a->digest, 32);
    m.expires = cnd_unix_time() + (expires_s > 0 ? expires_s : S_DEFAULT_EXPIRES);
    m.flags = rollback ? CND_MANIFEST_ROLLBACK : 0;
    cnd_buf_t b;
    cnd_buf_init(&b);
    int own, rc = s_begin(db, &own);
    if (rc) return rc;
    if (!(rc = s_next_seq(db, a->model, &m.sequence)) && !(rc = cnd_manifest_sign(&b, &m, id)))
        rc = s_audit_sign(audit, id, actor, a, &m, &b);
    if ((rc = s_end(db, own, rc))) {
        cnd_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *out_len = b.len;
    if (seq) *seq = m.sequence;
    return 0;
}

/* --- publication ---------------------------------------------------------------------------- */

/* Reads a META value of a .cndq artifact (docs/quantization.md), walking the section headers. */
static int s_meta(const uint8_t *a, size_t len, const char *key, char *out, size_t cap)
{
    if (len < CND_RT_HEADER_BYTES) return 0;
    size_t off = CND_RT_HEADER_BYTES;
    uint32_t body = cnd_le32(a + CND_RT_H_BODYLEN);
    if (body > len) return 0;
    while (off + CND_RT_SECTION_HDR <= body) {
        uint32_t tag = cnd_le32(a + off), plen = cnd_le32(a + off + 4);
        size_t p = off + CND_RT_SECTION_HDR;
        if (plen > body - p) return 0;
        if (tag == CND_RT_TAG_META) {
            cnd_rd_t r;
            cnd_rd_init(&r, a + p, plen);
            uint32_t n = cnd_rd_u32(&r);
            for (uint32_t i = 0; i < n && !r.err; i++) {
                uint16_t kl = cnd_rd_u16(&r);
                const uint8_t *k = cnd_rd_take(&r, kl);
                uint16_t vl = cnd_rd_u16(&r);
                const uint8_t *v = cnd_rd_take(&r, vl);
                if (r.err) return 0;
                if (kl == strlen(key) && memcmp(k, key, kl) == 0) {
                    snprintf(out, cap, "%.*s", (int)vl, (const char *)v);
                    return 1;
                }
            }
            return 0;
        }
        off = p + ((plen + CND_RT_ALIGN - 1) / CND_RT_ALIGN) * CND_RT_ALIGN;
    }
    return 0;
}

/* The runtime's verdict on an artifact: it loads, has self-test vectors and they pass. Fills
 * *arena and *macs. */
static int s_validate(const uint8_t *art, size_t len, size_t *arena, uint64_t *macs)
{
    cnd_rt_diag_t dg;
    size_t need = 0;
    int rc = cnd_rt_arena_size(&need, art, len, &dg);
    if (rc)
        return cnd_errf(CND_EFORMAT, "the runtime refuses the artifact: %s (byte %u)",
                        dg.what ? dg.what : cnd_rt_strerror(rc), dg.offset);
    void *mem = malloc(need);
    if (!mem) return cnd_errf(CND_ENOMEM, "out of memory for a %zu-byte arena", need);
    cnd_rt_model_t *m = NULL;
    rc = cnd_rt_load(&m, art, len, mem, need, &dg);
    uint32_t failed = 0;
    if (!rc) {
        cnd_rt_info_t info;
        cnd_rt_get_info(m, &info);
        *arena = need;
        *macs = info.macs;
        if (info.n_selftests == 0)
            rc = cnd_errf(CND_ECORRUPT, "the artifact has no self-test vectors: devices could "
                                        "not check it");
        else if (cnd_rt_selftest(m, &failed))
            rc = cnd_errf(CND_ECORRUPT, "self-test vector %u fails on the coordinator", failed);
    } else {
        rc = cnd_errf(CND_EFORMAT, "the runtime refuses the artifact: %s",
                      dg.what ? dg.what : cnd_rt_strerror(rc));
    }
    free(mem);
    return rc;
}

/* The registry entry for a validated artifact, from the options and its metadata. */
static void s_describe(cnd_rartifact_t *a, const uint8_t *art, size_t len,
                       const cnd_publish_opts_t *o)
{
    snprintf(a->model, sizeof a->model, "%s", o->model);
    a->version = o->version;
    char scheme[32] = "";
    if (o->variant && o->variant[0])
        snprintf(a->variant, sizeof a->variant, "%s", o->variant);
    else if (s_meta(art, len, "quant_scheme", scheme, sizeof scheme) && scheme[0])
        snprintf(a->variant, sizeof a->variant, "%s", scheme);
    else
        snprintf(a->variant, sizeof a->variant, "int8");
    snprintf(a->job, sizeof a->job, "%s", o->job ? o->job : "");
    cnd_sha256(a->digest, art, len);
    a->size = len;
    a->wbits = strstr(a->variant, "4") ? 4 : 8;
    snprintf(a->classes, sizeof a->classes, "%s", o->classes ? o->classes : "");
    a->accuracy = o->accuracy;
    char acc[64];
    if (a->accuracy < 0 && s_meta(art, len, "test_accuracy", acc, sizeof acc))
        a->accuracy = atof(acc);
    if (!(a->accuracy >= 0 && a->accuracy <= 1)) a->accuracy = -1;
    snprintf(a->latency, sizeof a->latency, "%s", o->latency ? o->latency : "");
}

static int s_audit_version(cnd_audit_t *audit, const char *actor, const cnd_rartifact_t *a,
                           const cnd_publish_opts_t *o)
{
    if (!audit) return 0;
    char ver[160];
    cnd_registry_version_name(ver, sizeof ver, a->model, a->version);
    cnd_audit_model_version_t e = {.version = ver,
                                   .job = a->job,
                                   .round = o->round > 0 ? o->round : 0,
                                   .format = a->variant,
                                   .size = a->size,
                                   .has_accuracy = a->accuracy >= 0,
                                   .accuracy = a->accuracy,
                                   .source = o->source,
                                   .samples = -1,
                                   .digest = a->digest};
    return cnd_audit_log_model_version(audit, actor, &e);
}

static int s_check_name(const cnd_publish_opts_t *o)
{
    if (!o->model || !o->model[0] || strlen(o->model) > CND_REGISTRY_NAME_MAX)
        return cnd_errf(CND_EINVAL, "a model name of 1..%d bytes is required",
                        CND_REGISTRY_NAME_MAX);
    for (const char *p = o->model; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '@')
            return cnd_errf(CND_EINVAL, "model name '%s': printable ASCII without spaces or '@'",
                            o->model);
    if (o->version > INT64_MAX)
        return cnd_errf(CND_EINVAL, "version %llu is too large", (unsigned long long)o->version);
    return 0;
}

int cnd_registry_publish(sqlite3 *db, cnd_audit_t *audit, const cnd_identity_t *id,
                         const char *actor, const uint8_t *art, size_t len,
                         const cnd_publish_opts_t *o, int64_t *artifact_id, uint8_t **manifest,
                         size_t *manifest_len)
{
    if (manifest) *manifest = NULL;
    cnd_rartifact_t a;
    memset(&a, 0, sizeof a);
    size_t arena = 0;
    int rc = s_check_name(o);
    if (!rc) rc = s_validate(art, len, &arena, &a.macs);
    if (rc) return rc;
    s_describe(&a, art, len, o);
    a.arena = arena;
    uint8_t *man = NULL;
    size_t mlen = 0;
    int own;
    if ((rc = s_begin(db, &own))) return rc;
    if (!(rc = s_put(db, &a, art, len)) && !(rc = s_audit_version(audit, actor, &a, o)) &&
        !(rc = cnd_registry_sign(db, audit, id, actor, &a, 0, o->expires_s, &man, &mlen, NULL)))
        rc = s_keep_manifest(db, a.id, man, mlen);
    if ((rc = s_end(db, own, rc))) {
        free(man);
        return rc;
    }
    *artifact_id = a.id;
    if (manifest) {
        *manifest = man;
        *manifest_len = mlen;
    } else {
        free(man);
    }
    return 0;
}
