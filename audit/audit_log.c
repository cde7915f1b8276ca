/*
 * audit_log.c: the append side of the audit log and its signed checkpoints (see audit_log.h).
 *
 * The writer keeps the tree's right edge (a merkle frontier) in memory so an append costs
 * O(log n) hashes. Because another process may append to the same file, and because an append
 * inside a caller's transaction may be rolled back with it, the frontier is re-checked against
 * the table inside every write transaction and re-read from the stored leaf hashes when it is
 * stale. Verification (audit_verify.c) never uses the stored leaf hashes: it recomputes them
 * from the entry bytes.
 */
#include "audit_log.h"
#include "audit_actions.h"
#include "clock.h"
#include "db.h"
#include "json.h"
#include "digest.h"
#include "fileio.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cnd_audit {
    sqlite3 *db;                    /* the database holding the audit_ tables */
    int owns_db;                    /* 1 when opened here (closed on close) */
    int readonly;                   /* 1 for auditor tools: no appends, no checkpoints */
    uint8_t sk[CND_AUDIT_SK_BYTES]; /* signing key (wiped on close) */
    uint8_t pk[CND_AUDIT_PK_BYTES]; /* its public half, or the recorded key when read-only */
    char origin[CND_AUDIT_MAX_ORIGIN + 1];
    uint64_t every;          /* automatic checkpoint interval; 0 = off */
    cnd_merkle_frontier_t f; /* right edge of the tree as last seen */
    int f_valid;             /* 0 until loaded, or after a rollback */
    uint8_t last_leaf[32];   /* hash of leaf f.size-1, to detect a changed prefix */
    int txn;                 /* 1: BEGIN IMMEDIATE was used, 2: a SAVEPOINT */
};

/* Forward migrations: entry i takes the schema from version i to i+1. */
static const char *const s_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE audit_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE audit_entry("
    "  seq INTEGER PRIMARY KEY," /* 0-based leaf index, contiguous */
    "  time_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, job TEXT NOT NULL,"
    "  entry TEXT NOT NULL,"      /* canonical JSON: the Merkle leaf bytes */
    "  leaf_hash BLOB NOT NULL);" /* SHA-256(0x00 || entry), a cache for appenders */
    "CREATE INDEX audit_entry_job ON audit_entry(job, seq);"
    "CREATE INDEX audit_entry_action ON audit_entry(action, seq);"
    "CREATE TABLE audit_checkpoint("
    "  id INTEGER PRIMARY KEY, tree_size INTEGER NOT NULL, root BLOB NOT NULL,"
    "  time_ms INTEGER NOT NULL, origin TEXT NOT NULL, reason TEXT NOT NULL,"
    "  public_key BLOB NOT NULL, signature BLOB NOT NULL);"
    "CREATE INDEX audit_checkpoint_size ON audit_checkpoint(tree_size);"
    "CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry"
    "  BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;"
    "CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry"
    "  BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;"
    "CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint"
    "  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
    "CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint"
    "  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;",
};
_Static_assert(sizeof s_migrations / sizeof s_migrations[0] == CND_AUDIT_SCHEMA_VERSION,
               "one migration per schema version");

/* A log from before the store kernel kept its version in audit_meta. */
static int s_legacy(sqlite3 *db, int *v)
{
    *v = 0;
    if (!cnd_db_has_table(db, "audit_meta")) return 0;
    sqlite3_stmt *st = NULL;
    int rc = cnd_db_prep(db, &st, "SELECT value FROM audit_meta WHERE key = 'schema_version'");
    if (rc) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) *v = atoi((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return 0;
}

static const cnd_db_schema_t s_schema = {"audit", s_migrations, CND_AUDIT_SCHEMA_VERSION, s_legacy};

static int s_dberr(sqlite3 *db, const char *what)
{
    return cnd_db_err(db, what);
}

static int s_exec(sqlite3 *db, const char *sql, const char *what)
{
    return cnd_db_exec(db, sql, what);
}

static int s_begin(cnd_audit_t *log)
{
    if (sqlite3_get_autocommit(log->db)) {
        log->txn = 1;
        return s_exec(log->db, "BEGIN IMMEDIATE", "begin");
    }
    log->txn = 2;
    return s_exec(log->db, "SAVEPOINT cnd_audit", "savepoint");
}

static int s_commit(cnd_audit_t *log)
{
    return s_exec(log->db, log->txn == 1 ? "COMMIT" : "RELEASE cnd_audit", "commit");
}

static void s_rollback(cnd_audit_t *log)
{
    if (log->txn == 1)
        sqlite3_exec(log->db, "ROLLBACK", NULL, NULL, NULL);
    else
        sqlite3_exec(log->db, "ROLLBACK TO cnd_audit; RELEASE cnd_audit", NULL, NULL, NULL);
    log->f_valid = 0;
}

/* Reads a single text value; *out is malloc'd or NULL when there is no row. */
static int s_meta_get(sqlite3 *db, const char *key, char **out)
{
    *out = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM audit_meta WHERE key = ?", -1, &st, NULL))
        return s_dberr(db, "reading audit_meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *out = strdup(v ? v : "");
        rc = *out ? 0 : CND_ENOMEM;
    } else {
        rc = rc == SQLITE_DONE ? 0 : s_dberr(db, "reading audit_meta");
    }
    sqlite3_finalize(st);
    return rc;
}

static int s_meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO audit_meta(key, value) VALUES (?, ?)", -1,
                           &st, NULL))
        return s_dberr(db, "writing audit_meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : s_dberr(db, "writing audit_meta");
    sqlite3_finalize(st);
    return rc;
}

/* 1 when s is 1..max characters of [a-z0-9_.-]. */
static int s_is_token(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* 1 when s is a valid origin: 1..128 of [A-Za-z0-9_.:/-] (it is also a signed-note key name,
 * which may not contain spaces or '+'). */
static int s_is_origin(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CND_AUDIT_MAX_ORIGIN) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == ':' || c == '/'))
            return 0;
    }
    return 1;
}

/* Checks a free-text field: valid UTF-8, no control characters, at most max bytes. */
static int s_check_text(const char *field, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return cnd_errf(CND_EINVAL, "audit entry: %s is %zu bytes (max %zu)", field, n, max);
    cnd_json_t *v = NULL;
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_json_put_str(&b, s, n);
    int rc = b.err ? CND_ENOMEM : cnd_json_parse(&v, (const char *)b.data, b.len);
    if (rc == 0 && strcmp(v->s, s) != 0)
        rc = cnd_errf(CND_EINVAL, "audit entry: %s is not valid UTF-8", field);
    cnd_json_free(&v);
    cnd_buf_free(&b);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return cnd_errf(CND_EINVAL, "audit entry: %s contains a control character", field);
    return 0;
}

void cnd_audit_fingerprint(char out[CND_AUDIT_FPR_HEX], const uint8_t pk[CND_AUDIT_PK_BYTES])
{
    uint8_t d[32];
    cnd_sha256(d, pk, CND_AUDIT_PK_BYTES);
    cnd_hex(out, d, 32);
}

/* Creates or migrates the schema and records / checks origin and key, in one transaction. */
static int s_setup(cnd_audit_t *log)
{
    int rc = s_begin(log);
    if (rc) return rc;
    char *origin = NULL, *key = NULL;
    char num[32];
    if ((rc = cnd_db_migrate(log->db, &s_schema))) goto fail;

    char pkhex[2 * CND_AUDIT_PK_BYTES + 1];
    cnd_hex(pkhex, log->pk, CND_AUDIT_PK_BYTES);
    if ((rc = s_meta_get(log->db, "public_key", &key)) ||
        (rc = s_meta_get(log->db, "origin", &origin)))
        goto fail;
    if (key && strcmp(key, pkhex) != 0) {
        rc =
            cnd_errf(CND_EPERM, "audit log was created with key %.16s..., not this node's %.16s...",
                     key, pkhex);
        goto fail;
    }
    if (origin && strcmp(origin, log->origin) != 0) {
        rc = cnd_errf(CND_EPERM, "audit log origin is '%s', not '%s'", origin, log->origin);
        goto fail;
    }
    if (!key) {
        snprintf(num, sizeof num, "%lld", (long long)cnd_unix_ms());
        if ((rc = s_meta_set(log->db, "public_key", pkhex)) ||
            (rc = s_meta_set(log->db, "origin", log->origin)) ||
            (rc = s_meta_set(log->db, "created_ms", num)))
            goto fail;
    }
    char *every = NULL;
    if ((rc = s_meta_get(log->db, "checkpoint_every", &every))) goto fail;
    log->every = every ? strtoull(every, NULL, 10) : CND_AUDIT_DEFAULT_CHECKPOINT_EVERY;
    free(every);
    if ((rc = s_commit(log))) goto fail;
    free(origin);
    free(key);
    return 0;
fail:
    s_rollback(log);
    free(origin);
    free(key);
    return rc;
}

static int s_open_common(cnd_audit_t **out, sqlite3 *db, int owns, const uint8_t *sk,
                         const char *origin)
{
    if (sodium_init() < 0) {
        if (owns) cnd_db_close(&db);
        return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    }
    /* A libsodium secret key is seed || public key: check the halves belong together, or every
     * checkpoint would carry a signature nobody can verify. */
    uint8_t pk2[32], sk2[64];
    int key_ok =
        sk && crypto_sign_seed_keypair(pk2, sk2, sk) == 0 && sodium_memcmp(pk2, sk + 32, 32) == 0;
    sodium_memzero(sk2, sizeof sk2);
    if (!key_ok) {
        if (owns) cnd_db_close(&db);
        return cnd_errf(CND_EINVAL, "audit log: the signing key is missing or not a valid Ed25519 "
                                    "secret key (seed || public key)");
    }
    cnd_audit_t *log = calloc(1, sizeof *log);
    if (!log) {
        if (owns) cnd_db_close(&db);
        return CND_ENOMEM;
    }
    log->db = db;
    log->owns_db = owns;
    memcpy(log->sk, sk, CND_AUDIT_SK_BYTES);
    memcpy(log->pk, sk + 32, CND_AUDIT_PK_BYTES);
    if (origin) {
        if (!s_is_origin(origin)) {
            cnd_audit_close(&log);
            return cnd_errf(CND_EINVAL,
                            "audit log origin '%s': use 1-128 characters of A-Z a-z 0-9 _ . : / -",
                            origin);
        }
        snprintf(log->origin, sizeof log->origin, "%s", origin);
    } else {
        char fpr[CND_AUDIT_FPR_HEX];
        cnd_audit_fingerprint(fpr, log->pk);
        snprintf(log->origin, sizeof log->origin, "condenser/%.16s", fpr);
    }
    int rc = s_setup(log);
    if (rc) {
        cnd_audit_close(&log);
        return rc;
    }
    *out = log;
    return 0;
}

int cnd_audit_open(cnd_audit_t **out, const char *path, const uint8_t *sk, const char *origin)
{
    *out = NULL;
    sqlite3 *db = NULL;
    /* The kernel's synchronous=FULL makes every committed entry survive a power cut, not only a
     * process crash; WAL lets auditors read while nodes write. */
    int rc = cnd_db_open(&db, path, CND_DB_CREATE, "audit log");
    if (rc) return rc;
    return s_open_common(out, db, 1, sk, origin);
}

int cnd_audit_open_db(cnd_audit_t **out, sqlite3 *db, const uint8_t *sk, const char *origin)
{
    *out = NULL;
    return s_open_common(out, db, 0, sk, origin);
}

int cnd_audit_open_readonly(cnd_audit_t **out, const char *path)
{
    *out = NULL;
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    sqlite3 *db = NULL;
    int rc = cnd_db_open(&db, path, CND_DB_READONLY, "file");
    if (rc == CND_ENOTFOUND) rc = cnd_errf(CND_EIO, "%s: no such file", path);
    if (rc) return rc;
    cnd_audit_t *log = calloc(1, sizeof *log);
    if (!log) {
        cnd_db_close(&db);
        return CND_ENOMEM;
    }
    log->db = db;
    log->owns_db = 1;
    log->readonly = 1;
    char *origin = NULL, *key = NULL;
    if ((rc = cnd_db_check(db, &s_schema, "Condenser audit log"))) goto fail;
    if ((rc = s_meta_get(db, "origin", &origin)) || (rc = s_meta_get(db, "public_key", &key)))
        goto fail;
    if (!origin || !s_is_origin(origin) || !key || strlen(key) != 64 ||
        cnd_unhex(log->pk, 32, key)) {
        rc = cnd_errf(CND_EFORMAT, "%s: audit_meta has no valid origin and public_key", path);
        goto fail;
    }
    snprintf(log->origin, sizeof log->origin, "%s", origin);
    free(origin);
    free(key);
    *out = log;
    return 0;
fail:
    free(origin);
    free(key);
    cnd_audit_close(&log);
    return rc;
}

void cnd_audit_close(cnd_audit_t **plog)
{
    if (!plog || !*plog) return;
    cnd_audit_t *log = *plog;
    if (log->owns_db) cnd_db_close(&log->db);
    sodium_memzero(log->sk, sizeof log->sk);
    free(log);
    *plog = NULL;
}

const char *cnd_audit_origin(const cnd_audit_t *log)
{
    return log->origin;
}

const uint8_t *cnd_audit_public_key(const cnd_audit_t *log)
{
    return log->pk;
}

sqlite3 *cnd_audit_db(cnd_audit_t *log)
{
    return log->db;
}

int cnd_audit_set_checkpoint_every(cnd_audit_t *log, uint64_t every)
{
    if (log->readonly) return cnd_errf(CND_EPERM, "audit log is open read-only");
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)every);
    int rc = s_begin(log);
    if (rc) return rc;
    if ((rc = s_meta_set(log->db, "checkpoint_every", num)) || (rc = s_commit(log))) {
        s_rollback(log);
        return rc;
    }
    log->every = every;
    return 0;
}

static int s_count(sqlite3 *db, uint64_t *size)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(seq) + 1, 0) FROM audit_entry", -1, &st, NULL))
        return s_dberr(db, "reading the log size");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *size = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : s_dberr(db, "reading the log size");
}

int cnd_audit_size(cnd_audit_t *log, uint64_t *size)
{
    return s_count(log->db, size);
}

/* The stored leaf hash of entry `seq` into h; 0, CND_ENOTFOUND or CND_EDB. */
static int s_leaf_at(sqlite3 *db, uint64_t seq, uint8_t h[32])
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT leaf_hash FROM audit_entry WHERE seq = ?", -1, &st, NULL))
        return s_dberr(db, "reading a leaf hash");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
        memcpy(h, sqlite3_column_blob(st, 0), 32);
        rc = 0;
    } else {
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? CND_ENOTFOUND
                                                   : s_dberr(db, "reading a leaf hash");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Brings the in-memory frontier up to date with the table (inside the write transaction).
 * Because every entry embeds the root of all entries before it, the stored hash of the last
 * leaf we pushed is still ours exactly when the whole prefix is: checking that one hash tells
 * whether the frontier can be extended or must be rebuilt (after a rolled-back outer
 * transaction, say). */
static int s_sync(cnd_audit_t *log)
{
    uint64_t size = 0;
    int rc = s_count(log->db, &size);
    if (rc) return rc;
    if (log->f_valid && log->f.size > size) log->f_valid = 0;
    if (log->f_valid && log->f.size > 0) {
        uint8_t h[32];
        rc = s_leaf_at(log->db, log->f.size - 1, h);
        if (rc == CND_EDB) return rc;
        if (rc || memcmp(h, log->last_leaf, 32) != 0) log->f_valid = 0;
    }
    if (log->f_valid && log->f.size == size) return 0;
    if (!log->f_valid) cnd_merkle_frontier_init(&log->f);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(log->db,
                           "SELECT seq, leaf_hash FROM audit_entry WHERE seq >= ? ORDER BY seq", -1,
                           &st, NULL))
        return s_dberr(log->db, "reading leaf hashes");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)log->f.size);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        const void *h = sqlite3_column_blob(st, 1);
        if (seq != log->f.size || sqlite3_column_bytes(st, 1) != 32 || !h) {
            sqlite3_finalize(st);
            log->f_valid = 0;
            return cnd_errf(CND_ECORRUPT,
                            "audit log is damaged near entry %llu (gap or bad leaf hash); run "
                            "`condenser audit verify`",
                            (unsigned long long)log->f.size);
        }
        cnd_merkle_frontier_push(&log->f, h);
        memcpy(log->last_leaf, h, 32);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log->f_valid = 0;
        return s_dberr(log->db, "reading leaf hashes");
    }
    log->f_valid = 1;
    return 0;
}

static void s_b64(char *out, size_t cap, const uint8_t *bin, size_t n)
{
    sodium_bin2base64(out, cap, bin, n, sodium_base64_VARIANT_ORIGINAL);
}

void cnd_audit_cp_body(cnd_buf_t *out, const cnd_audit_cp_t *cp)
{
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    char line[128];
    s_b64(b64, sizeof b64, cp->root, 32);
    cnd_buf_put(out, cp->origin, strlen(cp->origin));
    snprintf(line, sizeof line, "\n%llu\n%s\ntime %lld\nreason ", (unsigned long long)cp->tree_size,
             b64, (long long)cp->time_ms);
    cnd_buf_put(out, line, strlen(line));
    cnd_buf_put(out, cp->reason, strlen(cp->reason));
    cnd_buf_u8(out, '\n');
}

void cnd_audit_key_id(uint8_t id[CND_AUDIT_KEY_ID_BYTES], const char *name,
                      const uint8_t pk[CND_AUDIT_PK_BYTES])
{
    crypto_hash_sha256_state st;
    uint8_t d[32];
    const uint8_t nl = '\n', alg = 0x01;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
    crypto_hash_sha256_update(&st, &nl, 1);
    crypto_hash_sha256_update(&st, &alg, 1);
    crypto_hash_sha256_update(&st, pk, 32);
    crypto_hash_sha256_final(&st, d);
    memcpy(id, d, CND_AUDIT_KEY_ID_BYTES);
}

void cnd_audit_cp_format(cnd_buf_t *out, const cnd_audit_cp_t *cp)
{
    uint8_t blob[CND_AUDIT_KEY_ID_BYTES + CND_AUDIT_SIG_BYTES];
    char b64[sodium_base64_ENCODED_LEN(sizeof blob, sodium_base64_VARIANT_ORIGINAL)];
    memcpy(blob, cp->key_id, CND_AUDIT_KEY_ID_BYTES);
    memcpy(blob + CND_AUDIT_KEY_ID_BYTES, cp->sig, CND_AUDIT_SIG_BYTES);
    s_b64(b64, sizeof b64, blob, sizeof blob);
    cnd_audit_cp_body(out, cp);
    cnd_buf_put(out, "\n\xE2\x80\x94 ", 5);
    cnd_buf_put(out, cp->origin, strlen(cp->origin));
    cnd_buf_u8(out, ' ');
    cnd_buf_put(out, b64, strlen(b64));
    cnd_buf_u8(out, '\n');
}

/* Copies the line starting at *off (without its '\n') into dst; returns 0 or -1 if none. */
static int s_line(const char *t, size_t len, size_t *off, char *dst, size_t cap)
{
    if (*off >= len) return -1;
    const char *nl = memchr(t + *off, '\n', len - *off);
    if (!nl) return -1;
    size_t n = (size_t)(nl - (t + *off));
    if (n >= cap) return -1;
    memcpy(dst, t + *off, n);
    dst[n] = 0;
    if (memchr(dst, 0, n)) return -1;
    *off += n + 1;
    return 0;
}

static int s_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s[0] || (s[0] == '0' && s[1]) || strlen(s) > 19) return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

int cnd_audit_cp_parse(cnd_audit_cp_t *cp, const char *text, size_t len)
{
    memset(cp, 0, sizeof *cp);
    cp->id = -1;
    size_t off = 0;
    char line[512];
    uint64_t v = 0;
    if (s_line(text, len, &off, line, sizeof line) || !s_is_origin(line))
        return cnd_errf(CND_EFORMAT, "checkpoint line 1: expected the log origin");
    snprintf(cp->origin, sizeof cp->origin, "%.*s", CND_AUDIT_MAX_ORIGIN, line);
    if (s_line(text, len, &off, line, sizeof line) ||
        s_parse_u64(line, (uint64_t)CND_AUDIT_MAX_TREE_SIZE, &v))
        return cnd_errf(CND_EFORMAT, "checkpoint line 2: expected the tree size");
    cp->tree_size = v;
    size_t got = 0;
    if (s_line(text, len, &off, line, sizeof line) || strlen(line) != 44 ||
        sodium_base642bin(cp->root, 32, line, 44, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) ||
        got != 32)
        return cnd_errf(CND_EFORMAT, "checkpoint line 3: expected the base64 root hash");
    if (s_line(text, len, &off, line, sizeof line) || strncmp(line, "time ", 5) != 0)
        return cnd_errf(CND_EFORMAT, "checkpoint line 4: expected 'time <ms>'");
    if (s_parse_u64(line + 5, (uint64_t)CND_AUDIT_MAX_TIME_MS, &v))
        return cnd_errf(CND_EFORMAT,
                        "checkpoint line 4: bad time (milliseconds from 1970 to 9999)");
    cp->time_ms = (int64_t)v;
    if (s_line(text, len, &off, line, sizeof line) || strncmp(line, "reason ", 7) != 0 ||
        !s_is_token(line + 7, CND_AUDIT_MAX_REASON))
        return cnd_errf(CND_EFORMAT, "checkpoint line 5: expected 'reason <token>'");
    snprintf(cp->reason, sizeof cp->reason, "%.*s", CND_AUDIT_MAX_REASON, line + 7);
    if (s_line(text, len, &off, line, sizeof line) || line[0])
        return cnd_errf(CND_EFORMAT,
                        "checkpoint line 6: expected the blank line before signatures");
    /* The body must be exactly what we would sign, byte for byte. */
    cnd_buf_t body;
    cnd_buf_init(&body);
    cnd_audit_cp_body(&body, cp);
    int same = !body.err && body.len + 1 == off && memcmp(body.data, text, body.len) == 0;
    cnd_buf_free(&body);
    if (!same) return cnd_errf(CND_EFORMAT, "checkpoint body is not in canonical form");
    /* Signature lines: "— <name> <base64>"; the first one by this origin is used. */
    for (int n = 0; s_line(text, len, &off, line, sizeof line) == 0; n++) {
        if (strncmp(line, "\xE2\x80\x94 ", 4) != 0)
            return cnd_errf(CND_EFORMAT,
                            "checkpoint signature line %d does not start with an em dash", n + 1);
        char *name = line + 4, *sp = strchr(name, ' ');
        if (!sp) return cnd_errf(CND_EFORMAT, "checkpoint signature line %d: no signature", n + 1);
        *sp = 0;
        if (strcmp(name, cp->origin) != 0) continue;
        uint8_t blob[CND_AUDIT_KEY_ID_BYTES + CND_AUDIT_SIG_BYTES];
        const char *b64 = sp + 1;
        if (sodium_base642bin(blob, sizeof blob, b64, strlen(b64), NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) ||
            got != sizeof blob)
            return cnd_errf(CND_EFORMAT, "checkpoint signature line %d: bad base64", n + 1);
        memcpy(cp->key_id, blob, CND_AUDIT_KEY_ID_BYTES);
        memcpy(cp->sig, blob + CND_AUDIT_KEY_ID_BYTES, CND_AUDIT_SIG_BYTES);
        return 0;
    }
    return cnd_errf(CND_EFORMAT, "checkpoint has no signature by '%s'", cp->origin);
}

int cnd_audit_cp_read(cnd_audit_cp_t *cp, const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cnd_file_read(path, 64 * 1024, &data, &len);
    if (rc) return cnd_err_wrap(rc, "checkpoint %s", path);
    rc = cnd_audit_cp_parse(cp, (const char *)data, len);
    free(data);
    return rc ? cnd_err_wrap(rc, "%s", path) : 0;
}

int cnd_audit_cp_verify(const cnd_audit_cp_t *cp, const uint8_t pk[CND_AUDIT_PK_BYTES])
{
    uint8_t want[CND_AUDIT_KEY_ID_BYTES];
    char fpr[CND_AUDIT_FPR_HEX];
    cnd_audit_key_id(want, cp->origin, pk);
    cnd_audit_fingerprint(fpr, pk);
    if (memcmp(want, cp->key_id, sizeof want) != 0)
        return cnd_errf(CND_ECRYPTO,
                        "its signature line has key ID %02x%02x%02x%02x, but key %.16s... has key "
                        "ID %02x%02x%02x%02x under the name '%s': signed by another key",
                        cp->key_id[0], cp->key_id[1], cp->key_id[2], cp->key_id[3], fpr, want[0],
                        want[1], want[2], want[3], cp->origin);
    cnd_buf_t body;
    cnd_buf_init(&body);
    cnd_audit_cp_body(&body, cp);
    int oom = body.err != 0;
    int ok = !oom && crypto_sign_verify_detached(cp->sig, body.data, body.len, pk) == 0;
    cnd_buf_free(&body);
    if (oom) return CND_ENOMEM;
    if (!ok) return cnd_errf(CND_ECRYPTO, "its signature does not verify with key %.16s...", fpr);
    return 0;
}

/* Signs and inserts a checkpoint of the current frontier (transaction held by the caller). */
static int s_checkpoint_locked(cnd_audit_t *log, const char *reason, cnd_audit_cp_t *out)
{
    cnd_audit_cp_t cp;
    memset(&cp, 0, sizeof cp);
    cp.tree_size = log->f.size;
    cnd_merkle_frontier_root(&log->f, cp.root);
    cp.time_ms = cnd_unix_ms();
    snprintf(cp.origin, sizeof cp.origin, "%s", log->origin);
    snprintf(cp.reason, sizeof cp.reason, "%s", reason);
    memcpy(cp.key, log->pk, 32);
    cnd_audit_key_id(cp.key_id, cp.origin, cp.key);
    cnd_buf_t body;
    cnd_buf_init(&body);
    cnd_audit_cp_body(&body, &cp);
    if (body.err) {
        cnd_buf_free(&body);
        return CND_ENOMEM;
    }
    crypto_sign_detached(cp.sig, NULL, body.data, body.len, log->sk);
    cnd_buf_free(&body);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(log->db,
                           "INSERT INTO audit_checkpoint(tree_size, root, time_ms, origin, reason,"
                           " public_key, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL))
        return s_dberr(log->db, "storing a checkpoint");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)cp.tree_size);
    sqlite3_bind_blob(st, 2, cp.root, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, cp.time_ms);
    sqlite3_bind_text(st, 4, cp.origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, cp.reason, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, cp.key, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, cp.sig, 64, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : s_dberr(log->db, "storing a checkpoint");
    sqlite3_finalize(st);
    cp.id = sqlite3_last_insert_rowid(log->db);
    if (!rc && out) *out = cp;
    return rc;
}

int cnd_audit_checkpoint(cnd_audit_t *log, const char *reason, cnd_audit_cp_t *cp)
{
    if (log->readonly) return cnd_errf(CND_EPERM, "audit log is open read-only");
    if (!s_is_token(reason, CND_AUDIT_MAX_REASON))
        return cnd_errf(CND_EINVAL, "checkpoint reason '%s': use 1-64 characters of a-z 0-9 _ . -",
                        reason ? reason : "(null)");
    int rc = s_begin(log);
    if (rc) return rc;
    if ((rc = s_sync(log)) || (rc = s_checkpoint_locked(log, reason, cp)) || (rc = s_commit(log))) {
        s_rollback(log); /* also marks the frontier for a re-read */
        return rc;
    }
    return 0;
}

static int s_last_cp_size(sqlite3 *db, uint64_t *size)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(tree_size), 0) FROM audit_checkpoint", -1, &st,
                           NULL))
        return s_dberr(db, "reading checkpoints");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *size = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : s_dberr(db, "reading checkpoints");
}

static int s_digest_cmp(const void *a, const void *b)
{
    const cnd_audit_digest_t *x = *(const cnd_audit_digest_t *const *)a;
    const cnd_audit_digest_t *y = *(const cnd_audit_digest_t *const *)b;
    return strcmp(x->name, y->name);
}

/* Validates rec and builds the canonical entry text for sequence `seq`. */
static int s_build_entry(cnd_jw_t *w, const cnd_audit_rec_t *rec, uint64_t seq, int64_t time_ms,
                         const uint8_t prev_root[32])
{
    const char *subject = rec->subject ? rec->subject : "", *job = rec->job ? rec->job : "";
    int rc;
    if (!s_is_token(rec->action, 64))
        return cnd_errf(CND_EINVAL,
                        "audit entry: action '%s': use 1-64 characters of a-z 0-9 _ . -",
                        rec->action ? rec->action : "(null)");
    if (!rec->actor || !rec->actor[0])
        return cnd_errf(CND_EINVAL, "audit entry: actor is required");
    if ((rc = s_check_text("actor", rec->actor, 256)) ||
        (rc = s_check_text("subject", subject, 1024)) || (rc = s_check_text("job", job, 256)))
        return rc;
    if (rec->n_digests > 64) return cnd_errf(CND_EINVAL, "audit entry: more than 64 digests");
    const cnd_audit_digest_t *sorted[64];
    for (size_t i = 0; i < rec->n_digests; i++) {
        if (!s_is_token(rec->digests[i].name, 32))
            return cnd_errf(CND_EINVAL, "audit entry: digest name '%s': use 1-32 of a-z 0-9 _ . -",
                            rec->digests[i].name ? rec->digests[i].name : "(null)");
        sorted[i] = &rec->digests[i];
    }
    qsort(sorted, rec->n_digests, sizeof sorted[0], s_digest_cmp);
    for (size_t i = 1; i < rec->n_digests; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            return cnd_errf(CND_EINVAL, "audit entry: digest '%s' given twice", sorted[i]->name);

    cnd_buf_t details;
    cnd_buf_init(&details);
    const char *dt = rec->details ? rec->details : "{}";
    size_t dlen = strlen(dt);
    if (dlen > CND_AUDIT_MAX_DETAILS)
        return cnd_errf(CND_EINVAL, "audit entry: details are %zu bytes (max %d)", dlen,
                        CND_AUDIT_MAX_DETAILS);
    cnd_json_t *dv = NULL;
    if ((rc = cnd_json_parse(&dv, dt, dlen))) return cnd_err_wrap(rc, "audit entry details");
    if (dv->type != CND_JSON_OBJ) {
        cnd_json_free(&dv);
        return cnd_errf(CND_EINVAL, "audit entry details must be a JSON object");
    }
    rc = cnd_json_canon(&details, dv);
    cnd_json_free(&dv);
    if (rc || cnd_buf_reserve(&details, 1)) {
        cnd_buf_free(&details);
        return CND_ENOMEM;
    }
    details.data[details.len] = 0;

    char hex[65];
    cnd_jw_obj(w);
    cnd_jw_key(w, "action");
    cnd_jw_str(w, rec->action);
    cnd_jw_key(w, "actor");
    cnd_jw_str(w, rec->actor);
    cnd_jw_key(w, "details");
    cnd_jw_raw(w, (const char *)details.data);
    cnd_jw_key(w, "digests");
    cnd_jw_obj(w);
    for (size_t i = 0; i < rec->n_digests; i++) {
        cnd_jw_key(w, sorted[i]->name);
        cnd_jw_str(w, cnd_hex(hex, sorted[i]->sha256, 32));
    }
    cnd_jw_obj_end(w);
    cnd_jw_key(w, "job");
    cnd_jw_str(w, job);
    cnd_jw_key(w, "prev_root");
    cnd_jw_str(w, cnd_hex(hex, prev_root, 32));
    cnd_jw_key(w, "seq");
    cnd_jw_int(w, (int64_t)seq);
    cnd_jw_key(w, "subject");
    cnd_jw_str(w, subject);
    cnd_jw_key(w, "time_ms");
    cnd_jw_int(w, time_ms);
    cnd_jw_obj_end(w);
    cnd_buf_free(&details);
    if (!cnd_jw_text(w)) return CND_ENOMEM;
    if (w->buf.len > CND_AUDIT_MAX_ENTRY)
        return cnd_errf(CND_EINVAL, "audit entry is %zu bytes (max %d)", w->buf.len,
                        CND_AUDIT_MAX_ENTRY);
    return 0;
}

int cnd_audit_append(cnd_audit_t *log, const cnd_audit_rec_t *rec, uint64_t *seq_out)
{
    if (log->readonly) return cnd_errf(CND_EPERM, "audit log is open read-only");
    int rc = s_begin(log);
    if (rc) return rc;
    cnd_jw_t w;
    cnd_jw_init(&w);
    sqlite3_stmt *st = NULL;
    if ((rc = s_sync(log))) goto fail;
    uint64_t seq = log->f.size;
    uint8_t prev[32], leaf[32];
    cnd_merkle_frontier_root(&log->f, prev);
    int64_t now = cnd_unix_ms();
    if ((rc = s_build_entry(&w, rec, seq, now, prev))) goto fail;
    cnd_merkle_leaf_hash(leaf, w.buf.data, w.buf.len);
    if (sqlite3_prepare_v2(
            log->db,
            "INSERT INTO audit_entry(seq, time_ms, actor, action, subject, job, entry,"
            " leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            -1, &st, NULL)) {
        rc = s_dberr(log->db, "appending an entry");
        goto fail;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, rec->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, rec->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, rec->subject ? rec->subject : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, rec->job ? rec->job : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, (const char *)w.buf.data, (int)w.buf.len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, leaf, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = s_dberr(log->db, "appending an entry");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    cnd_merkle_frontier_push(&log->f, leaf);
    memcpy(log->last_leaf, leaf, 32);
    if (log->every) {
        uint64_t last = 0;
        if ((rc = s_last_cp_size(log->db, &last))) goto fail;
        if (log->f.size - last >= log->every && (rc = s_checkpoint_locked(log, "auto", NULL)))
            goto fail;
    }
    if ((rc = s_commit(log))) goto fail;
    cnd_jw_free(&w);
    if (seq_out) *seq_out = seq;
    return 0;
fail:
    sqlite3_finalize(st);
    cnd_jw_free(&w);
    s_rollback(log); /* also marks the frontier for a re-read */
    return rc;
}

int cnd_audit_latest_checkpoint(cnd_audit_t *log, cnd_audit_cp_t *cp)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            log->db,
            "SELECT id, tree_size, root, time_ms, origin, reason, public_key, signature"
            " FROM audit_checkpoint ORDER BY tree_size DESC, id DESC LIMIT 1",
            -1, &st, NULL))
        return s_dberr(log->db, "reading checkpoints");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return cnd_errf(CND_ENOTFOUND, "the audit log has no checkpoint yet");
    }
    if (rc != SQLITE_ROW) {
        rc = s_dberr(log->db, "reading checkpoints");
        sqlite3_finalize(st);
        return rc;
    }
    memset(cp, 0, sizeof *cp);
    cp->id = sqlite3_column_int64(st, 0);
    cp->tree_size = (uint64_t)sqlite3_column_int64(st, 1);
    cp->time_ms = sqlite3_column_int64(st, 3);
    const char *o = (const char *)sqlite3_column_text(st, 4),
               *r = (const char *)sqlite3_column_text(st, 5);
    snprintf(cp->origin, sizeof cp->origin, "%s", o ? o : "");
    snprintf(cp->reason, sizeof cp->reason, "%s", r ? r : "");
    rc = 0;
    if (sqlite3_column_bytes(st, 2) != 32 || sqlite3_column_bytes(st, 6) != 32 ||
        sqlite3_column_bytes(st, 7) != 64)
        rc = cnd_errf(CND_ECORRUPT, "checkpoint #%lld has malformed hash, key or signature columns",
                      (long long)cp->id);
    else {
        memcpy(cp->root, sqlite3_column_blob(st, 2), 32);
        memcpy(cp->key, sqlite3_column_blob(st, 6), 32);
        memcpy(cp->sig, sqlite3_column_blob(st, 7), 64);
        cnd_audit_key_id(cp->key_id, cp->origin, cp->key);
    }
    sqlite3_finalize(st);
    return rc;
}

int cnd_audit_read_public_key(uint8_t pk[CND_AUDIT_PK_BYTES], const char *spec)
{
    if (strlen(spec) == 64 && cnd_unhex(pk, 32, spec) == 0) return 0;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = cnd_file_read(spec, 16 * 1024, &data, &len);
    if (rc)
        return cnd_errf(CND_EIO, "public key %s: cannot read it (give a file or 64 hex characters)",
                        spec);
    if (len == 32) {
        memcpy(pk, data, 32);
        free(data);
        return 0;
    }
    char *t = (char *)data;
    rc = CND_EFORMAT;
    if (strstr(t, "-----BEGIN PUBLIC KEY-----")) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        size_t n = 32;
        if (k && EVP_PKEY_id(k) == EVP_PKEY_ED25519 &&
            EVP_PKEY_get_raw_public_key(k, pk, &n) == 1 && n == 32)
            rc = 0;
        EVP_PKEY_free(k);
        BIO_free(bio);
    } else {
        /* Trim whitespace and an optional "ed25519:" prefix or the "condenser-ed25519 " of a
         * node's identity.pub (crypto/identity.h), then hex or base64. */
        while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ')) t[--len] = 0;
        while (*t == ' ' || *t == '\n') t++;
        if (strncmp(t, "ed25519:", 8) == 0)
            t += 8;
        else if (strncmp(t, "condenser-ed25519 ", 18) == 0)
            t += 18;
        size_t got = 0;
        if (strlen(t) == 64 && cnd_unhex(pk, 32, t) == 0)
            rc = 0;
        else if (sodium_base642bin(pk, 32, t, strlen(t), NULL, &got, NULL,
                                   sodium_base64_VARIANT_ORIGINAL) == 0 &&
                 got == 32)
            rc = 0;
    }
    free(data);
    if (rc)
        return cnd_errf(CND_EFORMAT,
                        "public key %s: expected 64 hex characters, base64 of 32 bytes, 32 raw "
                        "bytes or an Ed25519 PEM public key",
                        spec);
    return 0;
}
