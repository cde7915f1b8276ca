/*
 * audit_proof.c: proof files (see audit_proof.h). Generation reads the leaves once from the
 * entry bytes (O(n) memory of 32 bytes per entry, O(n) hashes per proof); checking is
 * O(log n) and needs no database.
 */
#include "audit_proof.h"
#include "json.h"
#include "audit_verify.h"
#include "clock.h"
#include "digest.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Recomputes the leaf hashes of entries 0..n-1 from their bytes. */
static int s_load_leaves(cnd_audit_t *log, uint64_t n, cnd_merkle_hash_t **out)
{
    *out = NULL;
    if (n > SIZE_MAX / sizeof(cnd_merkle_hash_t) || n > ((uint64_t)1 << 40))
        return cnd_errf(CND_ERANGE, "audit log: %llu entries is too many to prove in memory",
                        (unsigned long long)n);
    cnd_merkle_hash_t *leaves = malloc((size_t)(n ? n : 1) * sizeof *leaves);
    if (!leaves) return CND_ENOMEM;
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT seq, entry FROM audit_entry WHERE seq < ? ORDER BY seq", -1,
                           &st, NULL)) {
        free(leaves);
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)n);
    uint64_t i = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((uint64_t)sqlite3_column_int64(st, 0) != i) break;
        const void *t = sqlite3_column_text(st, 1);
        cnd_merkle_leaf_hash(leaves[i], t ? t : "", (size_t)sqlite3_column_bytes(st, 1));
        i++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        free(leaves);
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    }
    if (i != n) {
        free(leaves);
        return cnd_errf(CND_ECORRUPT,
                        "audit log: entry %llu is missing; run `condenser audit verify`",
                        (unsigned long long)i);
    }
    *out = leaves;
    return 0;
}

/* The latest checkpoint, checked against the recorded key and the entries. */
static int s_latest(cnd_audit_t *log, cnd_audit_cp_t *cp, cnd_merkle_hash_t **leaves)
{
    *leaves = NULL;
    int rc = cnd_audit_latest_checkpoint(log, cp);
    if (rc) return rc;
    if (cnd_audit_cp_verify(cp, cnd_audit_public_key(log)) != 0)
        return cnd_errf(
            CND_ECORRUPT,
            "checkpoint #%lld's signature does not verify; run `condenser audit verify`",
            (long long)cp->id);
    if ((rc = s_load_leaves(log, cp->tree_size, leaves))) return rc;
    uint8_t root[32];
    cnd_merkle_root(root, *leaves, cp->tree_size);
    if (sodium_memcmp(root, cp->root, 32) != 0) {
        free(*leaves);
        *leaves = NULL;
        return cnd_errf(
            CND_ECORRUPT,
            "the entries no longer match checkpoint #%lld; run `condenser audit verify`",
            (long long)cp->id);
    }
    return 0;
}

static void s_path(cnd_jw_t *w, const cnd_merkle_hash_t *p, size_t n)
{
    char hex[65];
    cnd_jw_key(w, "path");
    cnd_jw_arr(w);
    for (size_t i = 0; i < n; i++) cnd_jw_str(w, cnd_hex(hex, p[i], 32));
    cnd_jw_arr_end(w);
}

static const char *s_note_text(cnd_buf_t *b, const cnd_audit_cp_t *cp)
{
    cnd_buf_init(b);
    cnd_audit_cp_format(b, cp);
    if (cnd_buf_reserve(b, 1)) return NULL;
    b->data[b->len] = 0;
    return (const char *)b->data;
}

static int s_finish(cnd_buf_t *out, cnd_jw_t *w)
{
    const char *t = cnd_jw_text(w);
    if (!t) {
        cnd_jw_free(w);
        return CND_ENOMEM;
    }
    cnd_buf_put(out, t, strlen(t));
    cnd_buf_u8(out, '\n');
    cnd_jw_free(w);
    return out->err ? CND_ENOMEM : 0;
}

int cnd_audit_prove_inclusion(cnd_buf_t *out, cnd_audit_t *log, uint64_t seq)
{
    uint64_t size = 0;
    int rc = cnd_audit_size(log, &size);
    if (rc) return rc;
    if (seq >= size)
        return cnd_errf(CND_ENOTFOUND, "the log has no entry %llu (it has %llu)",
                        (unsigned long long)seq, (unsigned long long)size);
    cnd_audit_cp_t cp;
    cnd_merkle_hash_t *leaves = NULL;
    if ((rc = s_latest(log, &cp, &leaves))) return rc;
    if (seq >= cp.tree_size) {
        free(leaves);
        return cnd_errf(CND_ESTATE,
                        "entry %llu is not yet covered by a signed checkpoint (the latest, #%lld, "
                        "covers entries 0..%lld); prove it after the next checkpoint",
                        (unsigned long long)seq, (long long)cp.id, (long long)cp.tree_size - 1);
    }
    cnd_merkle_hash_t path[CND_MERKLE_MAX_PROOF];
    size_t np = 0;
    rc = cnd_merkle_inclusion_proof(path, &np, leaves, cp.tree_size, seq);
    free(leaves);
    if (rc) return rc;

    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT entry FROM audit_entry WHERE seq = ?", -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading entry: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return cnd_errf(CND_EDB, "reading entry %llu: %s", (unsigned long long)seq,
                        sqlite3_errmsg(db));
    }
    cnd_buf_t note;
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "checkpoint");
    cnd_jw_str(&w, s_note_text(&note, &cp));
    cnd_buf_free(&note);
    cnd_jw_key(&w, "entry");
    cnd_buf_t e;
    cnd_buf_init(&e);
    cnd_json_put_str(&e, (const char *)sqlite3_column_text(st, 0),
                     (size_t)sqlite3_column_bytes(st, 0));
    cnd_buf_u8(&e, 0);
    sqlite3_finalize(st);
    cnd_jw_raw(&w, e.err ? "null" : (const char *)e.data);
    cnd_buf_free(&e);
    cnd_jw_key(&w, "format");
    cnd_jw_str(&w, CND_AUDIT_PROOF_FORMAT);
    cnd_jw_key(&w, "index");
    cnd_jw_int(&w, (int64_t)seq);
    s_path(&w, path, np);
    cnd_jw_key(&w, "tree_size");
    cnd_jw_int(&w, (int64_t)cp.tree_size);
    cnd_jw_key(&w, "type");
    cnd_jw_str(&w, "inclusion");
    cnd_jw_obj_end(&w);
    return s_finish(out, &w);
}

int cnd_audit_prove_consistency(cnd_buf_t *out, cnd_audit_t *log, const cnd_audit_cp_t *old)
{
    if (strcmp(old->origin, cnd_audit_origin(log)) != 0)
        return cnd_errf(CND_EINVAL, "the checkpoint is for log '%s', not '%s'", old->origin,
                        cnd_audit_origin(log));
    /* The proof carries the kept note as it is (with its key ID): it must be this log's, signed
     * by its key. */
    int rc = cnd_audit_cp_verify(old, cnd_audit_public_key(log));
    if (rc) return cnd_err_wrap(rc, "the checkpoint is not signed by this log's key");
    cnd_audit_cp_t cp;
    cnd_merkle_hash_t *leaves = NULL;
    rc = s_latest(log, &cp, &leaves);
    if (rc) return rc;
    if (old->tree_size > cp.tree_size) {
        free(leaves);
        return cnd_errf(CND_EINVAL,
                        "the checkpoint covers %llu entries but the log's latest covers only %llu: "
                        "the log was truncated or this is not its checkpoint",
                        (unsigned long long)old->tree_size, (unsigned long long)cp.tree_size);
    }
    uint8_t root[32];
    cnd_merkle_root(root, leaves, old->tree_size);
    if (sodium_memcmp(root, old->root, 32) != 0) {
        free(leaves);
        return cnd_errf(CND_ECORRUPT,
                        "the log is NOT consistent with the checkpoint: its first %llu entries no "
                        "longer hash to the root that checkpoint signed",
                        (unsigned long long)old->tree_size);
    }
    cnd_merkle_hash_t path[CND_MERKLE_MAX_PROOF];
    size_t np = 0;
    rc = cnd_merkle_consistency_proof(path, &np, leaves, cp.tree_size, old->tree_size);
    free(leaves);
    if (rc) return rc;
    cnd_buf_t note;
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "format");
    cnd_jw_str(&w, CND_AUDIT_PROOF_FORMAT);
    cnd_jw_key(&w, "new_checkpoint");
    cnd_jw_str(&w, s_note_text(&note, &cp));
    cnd_buf_free(&note);
    cnd_jw_key(&w, "new_size");
    cnd_jw_int(&w, (int64_t)cp.tree_size);
    cnd_jw_key(&w, "old_checkpoint");
    cnd_jw_str(&w, s_note_text(&note, old));
    cnd_buf_free(&note);
    cnd_jw_key(&w, "old_size");
    cnd_jw_int(&w, (int64_t)old->tree_size);
    s_path(&w, path, np);
    cnd_jw_key(&w, "type");
    cnd_jw_str(&w, "consistency");
    cnd_jw_obj_end(&w);
    return s_finish(out, &w);
}

/* Reads the "path" array into p. */
static int s_read_path(const cnd_json_t *proof, cnd_merkle_hash_t *p, size_t *n)
{
    const cnd_json_t *a = cnd_json_get(proof, "path");
    if (!a || a->type != CND_JSON_ARR || a->n > CND_MERKLE_MAX_PROOF)
        return cnd_errf(CND_EFORMAT, "proof: 'path' must be an array of at most %d hashes",
                        CND_MERKLE_MAX_PROOF);
    for (size_t i = 0; i < a->n; i++) {
        const char *h = cnd_json_str(a->items[i]);
        if (!h || strlen(h) != 64 || cnd_unhex(p[i], 32, h))
            return cnd_errf(CND_EFORMAT, "proof: path[%zu] is not 64 hex characters", i);
    }
    *n = a->n;
    return 0;
}

/* Parses and verifies a checkpoint note held in member `key`. */
static int s_read_note(const cnd_json_t *proof, const char *key, cnd_audit_cp_t *cp,
                       const uint8_t pk[32])
{
    const char *t = cnd_json_str(cnd_json_get(proof, key));
    if (!t) return cnd_errf(CND_EFORMAT, "proof: '%s' is missing", key);
    int rc = cnd_audit_cp_parse(cp, t, strlen(t));
    if (rc) return cnd_err_wrap(CND_EFORMAT, "proof: '%s'", key);
    /* Names the key ID mismatch (a note of another key, or the wrong --key) or the bad
     * signature. */
    if ((rc = cnd_audit_cp_verify(cp, pk))) return cnd_err_wrap(rc, "proof: '%s'", key);
    return 0;
}

/* Reads integer member `key`: a JSON integer (57, never 57.0 or 5.7e1) from 0 to 2^62. */
static int s_read_size(const cnd_json_t *proof, const char *key, uint64_t *out)
{
    int64_t v = 0;
    if (!cnd_json_integer(cnd_json_get(proof, key), 0, CND_AUDIT_MAX_TREE_SIZE, &v))
        return cnd_errf(CND_EFORMAT,
                        "proof: '%s' must be an integer from 0 to 2^62 written without a fraction "
                        "or an exponent",
                        key);
    *out = (uint64_t)v;
    return 0;
}

int cnd_audit_check_proof(char *summary, size_t cap, const char *text, size_t len,
                          const uint8_t pk[CND_AUDIT_PK_BYTES])
{
    if (sodium_init() < 0) return cnd_errf(CND_ECRYPTO, "libsodium failed to initialise");
    summary[0] = 0;
    cnd_json_t *p = NULL;
    int rc = cnd_json_parse(&p, text, len);
    if (rc) return cnd_err_wrap(CND_EFORMAT, "proof file");
    const char *fmt = cnd_json_str(cnd_json_get(p, "format"));
    const char *type = cnd_json_str(cnd_json_get(p, "type"));
    cnd_merkle_hash_t path[CND_MERKLE_MAX_PROOF];
    size_t np = 0;
    char when[32];
    if (!fmt || strcmp(fmt, CND_AUDIT_PROOF_FORMAT) != 0) {
        rc = cnd_errf(CND_EFORMAT, "not a Condenser audit proof (format is not '%s')",
                      CND_AUDIT_PROOF_FORMAT);
    } else if (type && strcmp(type, "inclusion") == 0) {
        cnd_audit_cp_t cp;
        uint64_t index = 0, size = 0;
        const char *entry = cnd_json_str(cnd_json_get(p, "entry"));
        cnd_json_t *e = NULL;
        if ((rc = s_read_note(p, "checkpoint", &cp, pk)) ||
            (rc = s_read_size(p, "index", &index)) || (rc = s_read_size(p, "tree_size", &size)) ||
            (rc = s_read_path(p, path, &np)))
            goto done;
        if (!entry) {
            rc = cnd_errf(CND_EFORMAT, "proof: 'entry' is missing");
            goto done;
        }
        if (size != cp.tree_size) {
            rc = cnd_errf(CND_ECRYPTO, "proof: tree_size %llu is not the checkpoint's %llu",
                          (unsigned long long)size, (unsigned long long)cp.tree_size);
            goto done;
        }
        if ((rc = cnd_audit_entry_parse(&e, entry, strlen(entry)))) {
            rc = cnd_err_wrap(CND_EFORMAT, "proof: entry");
            goto done;
        }
        int64_t seq = -1; /* both checked by cnd_audit_entry_parse */
        (void)cnd_json_integer(cnd_json_get(e, "seq"), 0, INT64_MAX, &seq);
        if ((uint64_t)seq != index) {
            cnd_json_free(&e);
            rc = cnd_errf(CND_ECRYPTO, "proof: the entry says it is number %lld, not %llu",
                          (long long)seq, (unsigned long long)index);
            goto done;
        }
        uint8_t leaf[32];
        cnd_merkle_leaf_hash(leaf, entry, strlen(entry));
        if (cnd_merkle_verify_inclusion(leaf, index, size, path, np, cp.root) != 0) {
            cnd_json_free(&e);
            rc =
                cnd_errf(CND_ECRYPTO,
                         "proof: entry %llu is NOT in the tree of %llu entries that the checkpoint "
                         "signed (the entry or the path was altered)",
                         (unsigned long long)index, (unsigned long long)size);
            goto done;
        }
        int64_t t = 0;
        (void)cnd_json_integer(cnd_json_get(e, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &t);
        char ewhen[32];
        cnd_iso8601(ewhen, t / 1000);
        cnd_iso8601(when, cp.time_ms / 1000);
        char fpr[CND_AUDIT_FPR_HEX];
        cnd_audit_fingerprint(fpr, pk);
        snprintf(
            summary, cap,
            "OK: entry %llu (%s, subject '%.80s', %s) is in log %s: checkpoint of %llu entries "
            "signed %s by key %.16s...",
            (unsigned long long)index, cnd_json_str(cnd_json_get(e, "action")),
            cnd_json_str(cnd_json_get(e, "subject")), ewhen, cp.origin, (unsigned long long)size,
            when, fpr);
        cnd_json_free(&e);
    } else if (type && strcmp(type, "consistency") == 0) {
        cnd_audit_cp_t a, b;
        uint64_t m = 0, n = 0;
        if ((rc = s_read_note(p, "old_checkpoint", &a, pk)) ||
            (rc = s_read_note(p, "new_checkpoint", &b, pk)) ||
            (rc = s_read_size(p, "old_size", &m)) || (rc = s_read_size(p, "new_size", &n)) ||
            (rc = s_read_path(p, path, &np)))
            goto done;
        if (strcmp(a.origin, b.origin) != 0) {
            rc = cnd_errf(CND_ECRYPTO, "proof: the checkpoints are of different logs ('%s', '%s')",
                          a.origin, b.origin);
            goto done;
        }
        if (m != a.tree_size || n != b.tree_size) {
            rc = cnd_errf(CND_ECRYPTO, "proof: sizes %llu -> %llu do not match the checkpoints",
                          (unsigned long long)m, (unsigned long long)n);
            goto done;
        }
        if (cnd_merkle_verify_consistency(m, n, a.root, b.root, path, np) != 0) {
            rc = cnd_errf(CND_ECRYPTO,
                          "proof: the checkpoint of %llu entries does NOT extend the one of %llu: "
                          "history was rewritten (or the path was altered)",
                          (unsigned long long)n, (unsigned long long)m);
            goto done;
        }
        char w2[32];
        cnd_iso8601(when, a.time_ms / 1000);
        cnd_iso8601(w2, b.time_ms / 1000);
        snprintf(summary, cap,
                 "OK: log %s's checkpoint of %llu entries (%s) extends its checkpoint of %llu "
                 "entries (%s) without changing them",
                 a.origin, (unsigned long long)n, w2, (unsigned long long)m, when);
    } else {
        rc = cnd_errf(CND_EFORMAT, "proof: type must be 'inclusion' or 'consistency'");
    }
done:
    cnd_json_free(&p);
    return rc;
}
