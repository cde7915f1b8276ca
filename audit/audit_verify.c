/*
 * audit_verify.c: offline verification of an audit log (see audit_verify.h for what is
 * checked).
 *
 * One pass over the entries in seq order rebuilds the tree with a merkle frontier; the signed
 * checkpoints (those in the log and those the auditor kept) are sorted by tree size so that each
 * is compared with the recomputed root the moment the pass reaches its size. Memory is O(log n)
 * plus the checkpoint list; time is O(n log n) hashes because every entry's prev_root needs the
 * root of the tree before it.
 */
#include "audit_verify.h"
#include "clock.h"
#include "digest.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_KEPT_MESSAGES 100

typedef struct {
    uint64_t size;    /* tree size it commits to */
    uint8_t root[32]; /* root it signed */
    char label[160];  /* "checkpoint #3 (size 40, reason round.end)" or "kept checkpoint FILE" */
    int kept;         /* 1 for a checkpoint the auditor kept */
} s_target;

static void s_add(char ***list, size_t *n, const char *fmt, va_list ap)
{
    size_t idx = (*n)++;
    if (idx >= S_MAX_KEPT_MESSAGES) return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    char **nl = realloc(*list, (idx + 1) * sizeof *nl);
    if (!nl) return;
    *list = nl;
    (*list)[idx] = strdup(buf);
    if (!(*list)[idx]) (*list)[idx] = NULL;
}

__attribute__((format(printf, 2, 3))) static void s_problem(cnd_audit_verdict_t *v, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_add(&v->problems, &v->n_problems, fmt, ap);
    va_end(ap);
    v->ok = 0;
}

__attribute__((format(printf, 2, 3))) static void s_note(cnd_audit_verdict_t *v, const char *fmt,
                                                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_add(&v->notes, &v->n_notes, fmt, ap);
    va_end(ap);
}

/* Records a bad entry (exact) or a bad interval [lo, hi); the earliest wins. */
static void s_bad(cnd_audit_verdict_t *v, uint64_t lo, uint64_t hi, int exact)
{
    if (v->first_bad >= 0 && (uint64_t)v->first_bad <= lo) return;
    v->first_bad = (int64_t)lo;
    v->first_bad_end = (int64_t)hi;
    v->first_bad_exact = exact;
}

void cnd_audit_verdict_free(cnd_audit_verdict_t *v)
{
    if (!v) return;
    size_t np = v->n_problems < S_MAX_KEPT_MESSAGES ? v->n_problems : S_MAX_KEPT_MESSAGES;
    size_t nn = v->n_notes < S_MAX_KEPT_MESSAGES ? v->n_notes : S_MAX_KEPT_MESSAGES;
    for (size_t i = 0; i < np && v->problems; i++) free(v->problems[i]);
    for (size_t i = 0; i < nn && v->notes; i++) free(v->notes[i]);
    free(v->problems);
    free(v->notes);
    v->problems = v->notes = NULL;
    v->n_problems = v->n_notes = 0;
}

static int s_is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int cnd_audit_entry_parse(cnd_json_t **out, const char *text, size_t len)
{
    *out = NULL;
    cnd_json_t *v = NULL;
    int rc = cnd_json_parse(&v, text, len);
    if (rc) return cnd_errf(CND_EFORMAT, "not valid JSON (%s)", cnd_err_detail());
    cnd_buf_t b;
    cnd_buf_init(&b);
    rc = cnd_json_canon(&b, v);
    int canonical = rc == 0 && b.len == len && memcmp(b.data, text, len) == 0;
    cnd_buf_free(&b);
    if (rc) {
        cnd_json_free(&v);
        return rc;
    }
    const char *why = NULL;
    static const char *const keys[] = {"action",    "actor", "details", "digests", "job",
                                       "prev_root", "seq",   "subject", "time_ms"};
    if (!canonical) {
        why = "its bytes are not in canonical form";
    } else if (v->type != CND_JSON_OBJ || v->n != 9) {
        why = "it is not an object with exactly the nine envelope keys";
    } else {
        for (int i = 0; i < 9 && !why; i++)
            if (strcmp(v->keys[i], keys[i]) != 0)
                why = "it is not an object with exactly the nine envelope keys";
    }
    if (!why) {
        const cnd_json_t *dg = cnd_json_get(v, "digests");
        int64_t n;
        if (!cnd_json_str(cnd_json_get(v, "action")) || !cnd_json_str(cnd_json_get(v, "actor")) ||
            !cnd_json_str(cnd_json_get(v, "job")) || !cnd_json_str(cnd_json_get(v, "subject")))
            why = "action, actor, job and subject must be strings";
        else if (cnd_json_get(v, "details")->type != CND_JSON_OBJ)
            why = "details must be an object";
        else if (dg->type != CND_JSON_OBJ)
            why = "digests must be an object";
        else if (!s_is_hex64(cnd_json_str(cnd_json_get(v, "prev_root"))))
            why = "prev_root must be 64 lower-case hex characters";
        else if (!cnd_json_integer(cnd_json_get(v, "seq"), 0, CND_AUDIT_MAX_TREE_SIZE - 1, &n))
            why = "seq must be an integer from 0 to 2^62 - 1";
        else if (!cnd_json_integer(cnd_json_get(v, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &n))
            why = "time_ms must be an integer from 0 (1970) to 253402300799999 (9999)";
        for (size_t i = 0; !why && i < dg->n; i++)
            if (!s_is_hex64(cnd_json_str(dg->items[i])))
                why = "every digest must be 64 lower-case hex characters";
    }
    if (why) {
        cnd_json_free(&v);
        return cnd_errf(CND_EFORMAT, "%s", why);
    }
    *out = v;
    return 0;
}

static int s_target_cmp(const void *a, const void *b)
{
    const s_target *x = a, *y = b;
    return x->size < y->size ? -1 : x->size > y->size ? 1 : x->kept - y->kept;
}

static void s_fmt_time(char *out, int64_t ms)
{
    cnd_iso8601(out, ms / 1000);
}

/* Loads the log's checkpoints, checks their rows and signatures, and appends the good ones to
 * the target list. */
static int s_load_checkpoints(cnd_audit_verdict_t *v, cnd_audit_t *log, const uint8_t *pk,
                              s_target **targets, size_t *nt)
{
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT id, tree_size, root, time_ms, origin, reason, public_key, signature"
            " FROM audit_checkpoint ORDER BY id",
            -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading checkpoints: %s", sqlite3_errmsg(db));
    int64_t prev_id = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v->checkpoints++;
        cnd_audit_cp_t cp;
        memset(&cp, 0, sizeof cp);
        cp.id = sqlite3_column_int64(st, 0);
        int64_t size = sqlite3_column_int64(st, 1);
        cp.time_ms = sqlite3_column_int64(st, 3);
        const char *o = (const char *)sqlite3_column_text(st, 4);
        const char *r = (const char *)sqlite3_column_text(st, 5);
        if (cp.id != prev_id + 1) {
            if (cp.id > prev_id + 1)
                s_problem(v, "checkpoints #%lld..#%lld are missing: checkpoint rows were deleted",
                          (long long)prev_id + 1, (long long)cp.id - 1);
        }
        prev_id = cp.id;
        if (size < 0 || sqlite3_column_bytes(st, 2) != 32 || sqlite3_column_bytes(st, 7) != 64 ||
            !o || !r || strlen(o) > CND_AUDIT_MAX_ORIGIN || strlen(r) > CND_AUDIT_MAX_REASON) {
            s_problem(v,
                      "checkpoint #%lld: malformed row (size, root, origin, reason or signature)",
                      (long long)cp.id);
            continue;
        }
        cp.tree_size = (uint64_t)size;
        memcpy(cp.root, sqlite3_column_blob(st, 2), 32);
        memcpy(cp.sig, sqlite3_column_blob(st, 7), 64);
        snprintf(cp.origin, sizeof cp.origin, "%s", o);
        snprintf(cp.reason, sizeof cp.reason, "%s", r);
        /* A row stores no key ID (it is not a note): the signature alone decides. */
        cnd_audit_key_id(cp.key_id, cp.origin, pk);
        char when[32];
        s_fmt_time(when, cp.time_ms);
        if (strcmp(cp.origin, cnd_audit_origin(log)) != 0) {
            s_problem(v, "checkpoint #%lld (size %llu, %s): origin '%s' is not the log's '%s'",
                      (long long)cp.id, (unsigned long long)cp.tree_size, when, cp.origin,
                      cnd_audit_origin(log));
            continue;
        }
        if (cnd_audit_cp_verify(&cp, pk) != 0) {
            s_problem(v,
                      "checkpoint #%lld (size %llu, %s, reason %s): signature does not verify with "
                      "key %.16s...: forged or altered",
                      (long long)cp.id, (unsigned long long)cp.tree_size, when, cp.reason,
                      v->fingerprint);
            continue;
        }
        s_target *nt2 = realloc(*targets, (*nt + 1) * sizeof *nt2);
        if (!nt2) {
            sqlite3_finalize(st);
            return CND_ENOMEM;
        }
        *targets = nt2;
        s_target *t = &(*targets)[(*nt)++];
        t->size = cp.tree_size;
        memcpy(t->root, cp.root, 32);
        t->kept = 0;
        snprintf(t->label, sizeof t->label, "checkpoint #%lld (size %llu, %s, reason %s)",
                 (long long)cp.id, (unsigned long long)cp.tree_size, when, cp.reason);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return cnd_errf(CND_EDB, "reading checkpoints: %s", sqlite3_errmsg(db));
    return 0;
}

/* Checks one row against its entry bytes and the tree so far. Returns 1 when the row's
 * problems were recorded (the entry is bad), else 0. `leaf` receives the recomputed hash. */
/* What a change early in the log does to everything after it, reported once rather than at
 * every later entry and checkpoint. */
typedef struct {
    int diverged; /* an earlier entry was found bad: later prev_roots cannot match */
    uint64_t chain_first, chain_last, chain_n; /* later prev_root mismatches not listed */
    uint64_t cp_n;      /* checkpoint mismatches after the first, not listed */
    char cp_first[160]; /* label of the first mismatching checkpoint, "" if none */
    char cp_last[160];  /* label of the last one */
} s_cascade;

static int s_check_row(cnd_audit_verdict_t *v, sqlite3_stmt *st, uint64_t seq,
                       const cnd_merkle_frontier_t *f, uint8_t leaf[32], int64_t *prev_time,
                       s_cascade *cs)
{
    const char *text = (const char *)sqlite3_column_text(st, 6);
    int len = sqlite3_column_bytes(st, 6);
    if (!text) text = "";
    cnd_merkle_leaf_hash(leaf, text, (size_t)len);
    int bad = 0;
    if (len > CND_AUDIT_MAX_ENTRY) {
        s_problem(v, "entry %llu: %d bytes, more than any entry the log writes",
                  (unsigned long long)seq, len);
        s_bad(v, seq, seq + 1, 1);
        return 1;
    }
    const void *stored = sqlite3_column_blob(st, 7);
    if (sqlite3_column_bytes(st, 7) != 32 || memcmp(stored, leaf, 32) != 0) {
        s_problem(v,
                  "entry %llu: its bytes differ from the leaf hash stored when it was written: "
                  "the entry was changed",
                  (unsigned long long)seq);
        bad = 1;
    }
    cnd_json_t *e = NULL;
    if (cnd_audit_entry_parse(&e, text, (size_t)len) != 0) {
        s_problem(v, "entry %llu: %s", (unsigned long long)seq, cnd_err_detail());
        s_bad(v, seq, seq + 1, 1);
        return 1;
    }
    int64_t eseq = 0, etime = 0;
    /* Both checked by cnd_audit_entry_parse. */
    (void)cnd_json_integer(cnd_json_get(e, "seq"), 0, INT64_MAX, &eseq);
    (void)cnd_json_integer(cnd_json_get(e, "time_ms"), 0, INT64_MAX, &etime);
    if ((uint64_t)eseq != seq) {
        s_problem(v,
                  "entry %llu: the row holds the entry signed as number %lld: rows were "
                  "reordered or renumbered",
                  (unsigned long long)seq, (long long)eseq);
        bad = 1;
    }
    static const char *const cols[] = {"actor", "action", "subject", "job"};
    for (int c = 0; c < 4; c++) {
        const char *col = (const char *)sqlite3_column_text(st, 2 + c);
        const char *val = cnd_json_str(cnd_json_get(e, cols[c]));
        if (!col || strcmp(col, val) != 0) {
            s_problem(v,
                      "entry %llu: column %s is '%.60s' but the entry says '%.60s': the row was "
                      "edited",
                      (unsigned long long)seq, cols[c], col ? col : "(null)", val);
            bad = 1;
        }
    }
    if (sqlite3_column_int64(st, 1) != etime) {
        s_problem(v, "entry %llu: column time_ms differs from the entry's time: the row was edited",
                  (unsigned long long)seq);
        bad = 1;
    }
    if (etime < *prev_time)
        s_note(v, "entry %llu is timed before entry %llu (clock stepped back?)",
               (unsigned long long)seq, (unsigned long long)seq - 1);
    *prev_time = etime;
    uint8_t want[32], got[32];
    cnd_merkle_frontier_root(f, want);
    if (cnd_unhex(got, 32, cnd_json_str(cnd_json_get(e, "prev_root"))) != 0 ||
        sodium_memcmp(got, want, 32) != 0) {
        if (cs->diverged) {
            if (!cs->chain_n++) cs->chain_first = seq;
            cs->chain_last = seq;
        } else if (!bad && seq > 0) {
            s_problem(v,
                      "entry %llu: its prev_root no longer matches entries 0..%llu: entry %llu was "
                      "changed, removed or reordered (or this entry's prev_root was edited)",
                      (unsigned long long)seq, (unsigned long long)seq - 1,
                      (unsigned long long)seq - 1);
            s_bad(v, seq - 1, seq, 1);
        } else {
            s_problem(v, "entry %llu: its prev_root does not match the entries before it",
                      (unsigned long long)seq);
            bad = 1;
        }
    } else
        cs->diverged = 0; /* the chain agrees again (a forger re-chained what follows) */
    cnd_json_free(&e);
    if (bad) s_bad(v, seq, seq + 1, 1);
    if (bad || v->first_bad >= 0) cs->diverged = 1;
    return bad;
}

/* Steps 1-3 of a verification: the file's integrity, which key, the append-only triggers. */
static void s_check_file(cnd_audit_verdict_t *v, cnd_audit_t *log, const uint8_t *pk)
{
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    /* 1. The file itself. */
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(st, 0);
            if (!r || strcmp(r, "ok") != 0)
                s_problem(v, "the database file is damaged: %s", r ? r : "(no answer)");
        }
        sqlite3_finalize(st);
        st = NULL;
    } else {
        s_problem(v, "the database file is damaged: %s", sqlite3_errmsg(db));
    }
    /* 2. Which key. */
    if (pk && sodium_memcmp(pk, cnd_audit_public_key(log), 32) != 0) {
        char rec[CND_AUDIT_FPR_HEX];
        cnd_audit_fingerprint(rec, cnd_audit_public_key(log));
        s_problem(v, "the log records signing key %.16s..., not the key given (%.16s...)", rec,
                  v->fingerprint);
    }
    if (!pk)
        s_note(v,
               "no key given: signatures were checked against the key recorded in the log "
               "itself (%.16s...); pin the node's public key with --key to rule out a log "
               "re-signed with another key",
               v->fingerprint);
    /* 3. Belt and braces. */
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN"
                           " ('audit_entry_no_update', 'audit_entry_no_delete',"
                           " 'audit_checkpoint_no_update', 'audit_checkpoint_no_delete')",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 4)
            s_note(v, "the triggers that refuse UPDATE and DELETE were removed from the file");
        sqlite3_finalize(st);
    }
}

/* Step 4: the log's own checkpoints and the auditor's kept ones, as targets sorted by size. */
static int s_targets(cnd_audit_verdict_t *v, cnd_audit_t *log, const uint8_t *key,
                     const cnd_audit_cp_t *kept, const char *const *kept_names, size_t n_kept,
                     s_target **targets, size_t *nt)
{
    int rc = s_load_checkpoints(v, log, key, targets, nt);
    if (rc) return rc;
    for (size_t i = 0; i < n_kept; i++) {
        const cnd_audit_cp_t *cp = &kept[i];
        const char *name = kept_names && kept_names[i] ? kept_names[i] : "kept checkpoint";
        v->kept++;
        if (strcmp(cp->origin, cnd_audit_origin(log)) != 0) {
            s_problem(v, "%s: it is for log '%s', not '%s'", name, cp->origin,
                      cnd_audit_origin(log));
            continue;
        }
        if (cnd_audit_cp_verify(cp, key) != 0) {
            s_problem(v, "%s: %s", name, cnd_err_detail());
            continue;
        }
        s_target *n2 = realloc(*targets, (*nt + 1) * sizeof *n2);
        if (!n2) return CND_ENOMEM;
        *targets = n2;
        s_target *t = &n2[(*nt)++];
        t->size = cp->tree_size;
        memcpy(t->root, cp->root, 32);
        t->kept = 1;
        snprintf(t->label, sizeof t->label, "kept checkpoint %s (size %llu)", name,
                 (unsigned long long)cp->tree_size);
    }
    if (*nt) qsort(*targets, *nt, sizeof **targets, s_target_cmp);
    return 0;
}

/* The state of step 5, the one pass over the entries. */
typedef struct {
    s_target *targets;
    size_t nt, ti;           /* targets, and the next one to reach */
    cnd_merkle_frontier_t f; /* the tree so far */
    uint64_t last_good;      /* size of the last checkpoint whose root matched */
    int broken;              /* rows are missing: nothing after can be checked */
    int64_t prev_time;
    s_cascade cs;
} s_walk_t;

/* Compares every target of the tree's current size with its root. */
static void s_walk_targets(cnd_audit_verdict_t *v, s_walk_t *w)
{
    for (; w->ti < w->nt && w->targets[w->ti].size == w->f.size; w->ti++) {
        s_target *t = &w->targets[w->ti];
        uint8_t root[32];
        cnd_merkle_frontier_root(&w->f, root);
        if (sodium_memcmp(root, t->root, 32) == 0) {
            t->kept ? v->kept_ok++ : v->checkpoints_ok++;
            if (w->f.size > w->last_good) {
                w->last_good = w->f.size;
                snprintf(v->covered_by, sizeof v->covered_by, "%s", t->label);
            }
        } else if (w->cs.cp_first[0]) {
            /* Once one checkpoint mismatches, every later one does too. */
            w->cs.cp_n++;
            snprintf(w->cs.cp_last, sizeof w->cs.cp_last, "%s", t->label);
        } else {
            s_problem(v,
                      "%s: the entries no longer hash to the root it signed: an entry in "
                      "%llu..%llu was changed",
                      t->label, (unsigned long long)w->last_good,
                      (unsigned long long)w->f.size - 1);
            snprintf(w->cs.cp_first, sizeof w->cs.cp_first, "%s", t->label);
            /* An entry already located inside the interval explains the mismatch. */
            if (!(v->first_bad >= (int64_t)w->last_good && v->first_bad_exact))
                s_bad(v, w->last_good, w->f.size, 0);
        }
    }
}

/* Step 5: every entry in order, against the chain and every target it reaches. */
static int s_walk_entries(cnd_audit_verdict_t *v, s_walk_t *w, sqlite3 *db,
                          cnd_audit_progress_fn progress, void *ctx)
{
    uint64_t total = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM audit_entry", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) total = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, time_ms, actor, action, subject, job, entry, leaf_hash"
                           " FROM audit_entry ORDER BY seq",
                           -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    /* Checkpoints of the empty tree. */
    for (; w->ti < w->nt && w->targets[w->ti].size == 0; w->ti++) {
        uint8_t e[32];
        cnd_merkle_empty_root(e);
        if (sodium_memcmp(e, w->targets[w->ti].root, 32) == 0)
            w->targets[w->ti].kept ? v->kept_ok++ : v->checkpoints_ok++;
        else
            s_problem(v, "%s: signed a root that is not the empty tree's", w->targets[w->ti].label);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v->entries++;
        if (progress && (v->entries & 1023) == 0) progress(ctx, v->entries, total);
        if (w->broken) continue;
        int64_t seq = sqlite3_column_int64(st, 0);
        if (seq < 0 || (uint64_t)seq != w->f.size) {
            s_problem(v, "entries %llu..%lld are missing: rows were deleted",
                      (unsigned long long)w->f.size, (long long)seq - 1);
            s_bad(v, w->f.size, w->f.size + 1, 1);
            w->broken = 1;
            continue;
        }
        uint8_t leaf[32];
        s_check_row(v, st, (uint64_t)seq, &w->f, leaf, &w->prev_time, &w->cs);
        cnd_merkle_frontier_push(&w->f, leaf);
        s_walk_targets(v, w);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        s_problem(v, "reading entries failed after %llu rows: %s", (unsigned long long)v->entries,
                  sqlite3_errmsg(db));
        s_bad(v, w->f.size, w->f.size + 1, 1);
    }
    if (progress) progress(ctx, v->entries, total);
    return 0;
}

/* After the pass: the cascades summarised, targets never reached (truncation), coverage. */
static void s_walk_end(cnd_audit_verdict_t *v, s_walk_t *w)
{
    if (w->cs.chain_n)
        s_problem(v,
                  "entries %llu..%llu (%llu of them): their prev_root no longer matches the "
                  "entries before them, a consequence of the change located above",
                  (unsigned long long)w->cs.chain_first, (unsigned long long)w->cs.chain_last,
                  (unsigned long long)w->cs.chain_n);
    if (w->cs.cp_n)
        s_problem(v, "%llu later checkpoint(s), up to %s, no longer match either",
                  (unsigned long long)w->cs.cp_n, w->cs.cp_last);
    v->verified = w->f.size;
    cnd_merkle_frontier_root(&w->f, v->root);
    for (; w->ti < w->nt; w->ti++) {
        const s_target *t = &w->targets[w->ti];
        if (w->broken)
            s_problem(v, "%s: cannot be checked past the missing entries", t->label);
        else
            s_problem(v,
                      "%s: it covers %llu entries but the log has %llu: entries %llu..%llu "
                      "were removed (truncated)",
                      t->label, (unsigned long long)t->size, (unsigned long long)w->f.size,
                      (unsigned long long)w->f.size, (unsigned long long)t->size - 1);
        if (!w->broken) s_bad(v, w->f.size, t->size, 1);
    }
    v->covered = w->last_good;
    if (v->ok && w->last_good < v->verified)
        s_note(v,
               "entries %llu..%llu are not yet covered by a signed checkpoint: until one is "
               "signed they are protected only by the hash chain",
               (unsigned long long)w->last_good, (unsigned long long)v->verified - 1);
}

/* The verdict's one-line summary. */
static void s_summary(cnd_audit_verdict_t *v)
{
    char rh[65];
    cnd_hex(rh, v->root, 32);
    if (v->ok)
        snprintf(v->summary, sizeof v->summary,
                 "OK: %llu entries, %llu of %llu checkpoints%s verified (key %.16s...%s); root "
                 "%.16s...",
                 (unsigned long long)v->entries, (unsigned long long)v->checkpoints_ok,
                 (unsigned long long)v->checkpoints, v->kept ? " and the kept ones" : "",
                 v->fingerprint, v->key_pinned ? "" : ", recorded in the log", rh);
    else if (v->first_bad >= 0 && v->first_bad_exact)
        snprintf(v->summary, sizeof v->summary, "FAILED: %zu problem%s; first bad entry: %lld",
                 v->n_problems, v->n_problems == 1 ? "" : "s", (long long)v->first_bad);
    else if (v->first_bad >= 0)
        snprintf(v->summary, sizeof v->summary,
                 "FAILED: %zu problem%s; first bad entry: one of %lld..%lld", v->n_problems,
                 v->n_problems == 1 ? "" : "s", (long long)v->first_bad,
                 (long long)v->first_bad_end - 1);
    else
        snprintf(v->summary, sizeof v->summary, "FAILED: %zu problem%s (no entry is at fault)",
                 v->n_problems, v->n_problems == 1 ? "" : "s");
}

int cnd_audit_verify(cnd_audit_verdict_t *v, cnd_audit_t *log, const uint8_t *pk,
                     const cnd_audit_cp_t *kept, const char *const *kept_names, size_t n_kept,
                     cnd_audit_progress_fn progress, void *ctx)
{
    memset(v, 0, sizeof *v);
    v->ok = 1;
    v->first_bad = -1;
    sqlite3 *db = cnd_audit_db(log);
    const uint8_t *key = pk ? pk : cnd_audit_public_key(log);
    v->key_pinned = pk != NULL;
    cnd_audit_fingerprint(v->fingerprint, key);
    s_walk_t w;
    memset(&w, 0, sizeof w);
    w.prev_time = INT64_MIN;
    cnd_merkle_frontier_init(&w.f);
    /* One read transaction: a node appending meanwhile cannot make the checkpoints and the
     * entries come from different moments. */
    int in_txn =
        sqlite3_get_autocommit(db) && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    s_check_file(v, log, pk);
    int rc = s_targets(v, log, key, kept, kept_names, n_kept, &w.targets, &w.nt);
    if (!rc) rc = s_walk_entries(v, &w, db, progress, ctx);
    if (!rc) s_walk_end(v, &w);
    if (in_txn) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    free(w.targets);
    if (rc) {
        cnd_audit_verdict_free(v);
        return rc;
    }
    s_summary(v);
    return 0;
}
