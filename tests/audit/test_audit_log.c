/* test_audit_log.c: the audit log (audit/audit_log.c, common/json.c, audit/audit_verify.c):
 * canonical JSON, appends and checkpoints, and that every kind of tampering is detected and
 * located: a changed byte in any entry, a deleted row, reordered rows, truncation, forged
 * checkpoints; a kill during appends leaves a log that verifies. */
#include "audit_fixture.h"
#include "json.h"
#include "audit_log.h"
#include "audit_verify.h"
#include "check.h"
#include "merkle.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static int canon_eq(const char *in, const char *want)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = cnd_json_canonicalize(&b, in, strlen(in));
    int ok = rc == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
    if (!ok)
        fprintf(stderr, "canon(%s) = %.*s (rc %d), want %s\n", in, (int)b.len,
                b.data ? (char *)b.data : "", rc, want);
    cnd_buf_free(&b);
    return ok;
}

static int canon_fails(const char *in)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = cnd_json_canonicalize(&b, in, strlen(in));
    cnd_buf_free(&b);
    return rc == CND_EINVAL;
}

static void test_canonical_json(void)
{
    CHECK(canon_eq(" { \"b\" : 1 , \"a\" : [ true , false , null ] } ",
                   "{\"a\":[true,false,null],\"b\":1}"));
    CHECK(canon_eq("{\"b\":{\"z\":1,\"y\":2},\"a\":\"\"}", "{\"a\":\"\",\"b\":{\"y\":2,\"z\":1}}"));
    /* Keys sort by UTF-8 bytes: "B" < "a" < "aa" < "\u00e9". */
    CHECK(canon_eq("{\"\\u00e9\":1,\"aa\":2,\"a\":3,\"B\":4}",
                   "{\"B\":4,\"a\":3,\"aa\":2,\"\xc3\xa9\":1}"));
    /* Numbers. */
    CHECK(canon_eq("[1.0,-0,0.0,1e3,1.5,0.1,-2.50,123456789012,1e300,0.000001]",
                   "[1,0,0,1000,1.5,0.1,-2.5,123456789012,1e+300,1e-06]"));
    CHECK(canon_eq("[9223372036854775807,-9223372036854775808]",
                   "[9223372036854775807,-9223372036854775808]"));
    CHECK(canon_eq("[0.87123456789]", "[0.87123456789]"));
    /* Strings: minimal escapes, raw UTF-8, \u decoding with surrogate pairs. */
    CHECK(canon_eq("\"a\\/b\\u0041\\n\\t\\u0001\\\"\\\\\\ud83d\\ude00\"",
                   "\"a/bA\\n\\t\\u0001\\\"\\\\\xf0\x9f\x98\x80\""));
    /* Refusals: duplicate keys, bad UTF-8, lone surrogates, NUL, trailing data, depth, NaN. */
    CHECK(canon_fails("{\"a\":1,\"a\":2}"));
    CHECK(canon_fails("\"\xc3\x28\""));
    CHECK(canon_fails("\"\xed\xa0\x80\""));
    CHECK(canon_fails("\"\\ud800\""));
    CHECK(canon_fails("\"\\u0000\""));
    CHECK(canon_fails("{} {}"));
    CHECK(canon_fails("[1,]"));
    CHECK(canon_fails("01"));
    CHECK(canon_fails("1e999"));
    CHECK(canon_fails("NaN"));
    CHECK(canon_fails("\"tab\there\""));
    char deep[200];
    memset(deep, '[', 70);
    memset(deep + 70, ']', 70);
    deep[140] = 0;
    CHECK(canon_fails(deep));
    /* The writer produces what the parser reads. */
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "s");
    cnd_jw_str(&w, "q\"<\n");
    cnd_jw_key(&w, "a");
    cnd_jw_arr(&w);
    cnd_jw_int(&w, -3);
    cnd_jw_double(&w, 0.25);
    cnd_jw_bool(&w, 1);
    cnd_jw_null(&w);
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    CHECK(canon_eq(cnd_jw_text(&w), "{\"a\":[-3,0.25,true,null],\"s\":\"q\\\"<\\n\"}"));
    cnd_jw_free(&w);
}

/* 1 when `text` is read by cnd_json_integer() within [min, max] as `want`. */
static int integer_is(const char *text, int64_t min, int64_t max, int64_t want)
{
    cnd_json_t *v = NULL;
    if (cnd_json_parse(&v, text, strlen(text)) != 0) return 0;
    int64_t got = want ^ 1; /* anything but want */
    int ok = cnd_json_integer(v, min, max, &got) && got == want;
    cnd_json_free(&v);
    return ok;
}

/* 1 when `text` parses but is not an integer in [min, max] for cnd_json_integer(). */
static int integer_refused(const char *text, int64_t min, int64_t max)
{
    cnd_json_t *v = NULL;
    if (cnd_json_parse(&v, text, strlen(text)) != 0) return 1;
    int64_t got = 0;
    int refused = !cnd_json_integer(v, min, max, &got);
    cnd_json_free(&v);
    return refused;
}

/* The integer accessor of the auditor's file readers: what was written as a JSON integer, and
 * nothing else, although 57.0 and 5.7e1 equal 57 as numbers. */
static void test_json_integer(void)
{
    CHECK(integer_is("57", 0, 100, 57));
    CHECK(integer_is(" -3 ", -5, 5, -3));
    CHECK(integer_is("0", 0, 0, 0));
    CHECK(integer_is("-0", 0, 0, 0));
    CHECK(integer_is("9223372036854775807", 0, INT64_MAX, INT64_MAX));
    CHECK(integer_is("-9223372036854775808", INT64_MIN, 0, INT64_MIN));
    CHECK(integer_refused("57.0", 0, 100));
    CHECK(integer_refused("5.7e1", 0, 100));
    CHECK(integer_refused("57e0", 0, 100));
    CHECK(integer_refused("570E-1", 0, 100));
    CHECK(integer_refused("57.5", 0, 100));
    CHECK(integer_refused("\"57\"", 0, 100));
    CHECK(integer_refused("true", 0, 100));
    CHECK(integer_refused("null", 0, 100));
    CHECK(integer_refused("101", 0, 100));
    CHECK(integer_refused("-1", 0, 100));
    CHECK(integer_refused("9223372036854775808", INT64_MIN, INT64_MAX)); /* beyond int64 */
    CHECK(integer_refused("-9223372036854775809", INT64_MIN, INT64_MAX));
    CHECK(integer_refused("1e400", INT64_MIN, INT64_MAX)); /* not even a finite number */
    CHECK(cnd_json_integer(NULL, 0, 1, &(int64_t){0}) == 0);
    /* A member of an object, as the readers use it. */
    cnd_json_t *o = NULL;
    const char *t = "{\"index\":57.0,\"tree_size\":58}";
    CHECK(cnd_json_parse(&o, t, strlen(t)) == 0);
    int64_t x = 0;
    CHECK(!cnd_json_integer(cnd_json_get(o, "index"), 0, INT64_MAX, &x));
    CHECK(cnd_json_integer(cnd_json_get(o, "tree_size"), 0, INT64_MAX, &x) && x == 58);
    cnd_json_free(&o);
    /* An entry's envelope: seq and time_ms in range (time up to the end of the year 9999). */
    char e[512];
    const char *fmt =
        "{\"action\":\"x\",\"actor\":\"a\",\"details\":{},\"digests\":{},\"job\":\"\","
        "\"prev_root\":\"%064d\",\"seq\":%s,\"subject\":\"\",\"time_ms\":%s}";
    snprintf(e, sizeof e, fmt, 0, "3", "253402300799999");
    CHECK(cnd_audit_entry_parse(&o, e, strlen(e)) == 0);
    cnd_json_free(&o);
    snprintf(e, sizeof e, fmt, 0, "3", "253402300800000");
    CHECK(cnd_audit_entry_parse(&o, e, strlen(e)) == CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "time_ms") != NULL);
    snprintf(e, sizeof e, fmt, 0, "-3", "0");
    CHECK(cnd_audit_entry_parse(&o, e, strlen(e)) == CND_EFORMAT);
    CHECK(strstr(cnd_err_detail(), "seq") != NULL);
    snprintf(e, sizeof e, fmt, 0, "3", "-1");
    CHECK(cnd_audit_entry_parse(&o, e, strlen(e)) == CND_EFORMAT);
}

static cnd_audit_t *open_log(const char *name, const fx_key_t *k)
{
    char p[512];
    path_in(p, sizeof p, name);
    cnd_audit_t *log = NULL;
    int rc = cnd_audit_open(&log, p, k->sk, "condenser/test-coordinator");
    CHECK(rc == 0);
    return log;
}

static cnd_audit_verdict_t verify_path(const char *name, const uint8_t *pk,
                                       const cnd_audit_cp_t *kept, size_t nk)
{
    char p[512];
    path_in(p, sizeof p, name);
    cnd_audit_t *log = NULL;
    cnd_audit_verdict_t v;
    memset(&v, 0, sizeof v);
    if (cnd_audit_open_readonly(&log, p) != 0) {
        fprintf(stderr, "open_readonly %s: %s\n", p, cnd_err_detail());
        CHECK(0);
        return v;
    }
    CHECK(cnd_audit_verify(&v, log, pk, kept, NULL, nk, NULL, NULL) == 0);
    cnd_audit_close(&log);
    return v;
}

static void show(const cnd_audit_verdict_t *v)
{
    fprintf(stderr, "  verdict: %s\n", v->summary);
    for (size_t i = 0; i < v->n_problems && i < 5; i++) fprintf(stderr, "    %s\n", v->problems[i]);
}

static void test_append_and_checkpoints(void)
{
    fx_key_t k, other;
    fx_key(&k, 1);
    fx_key(&other, 2);
    cnd_audit_t *log = open_log("basic.db", &k);
    CHECK(cnd_audit_set_checkpoint_every(log, 5) == 0);
    cnd_audit_digest_t d[2] = {{"model", {1}}, {"aggregate", {2}}};
    cnd_audit_rec_t r = {k.fpr, "round.end", "round 1", "job-1", "{ \"round\" : 1 }", d, 2};
    uint64_t seq = 99;
    CHECK(cnd_audit_append(log, &r, &seq) == 0);
    CHECK_EQ_INT(seq, 0);
    for (int i = 1; i < 12; i++) CHECK(cnd_audit_append(log, &r, &seq) == 0);
    CHECK_EQ_INT(seq, 11);
    /* Automatic checkpoints at sizes 5 and 10. */
    cnd_audit_cp_t cp;
    CHECK(cnd_audit_latest_checkpoint(log, &cp) == 0);
    CHECK_EQ_INT(cp.tree_size, 10);
    CHECK(!strcmp(cp.reason, "auto"));
    CHECK(cnd_audit_cp_verify(&cp, k.pk) == 0);
    CHECK(cnd_audit_cp_verify(&cp, other.pk) == CND_ECRYPTO);
    CHECK(cnd_audit_checkpoint(log, "round.end", &cp) == 0);
    CHECK_EQ_INT(cp.tree_size, 12);
    /* The note round-trips and its signature covers every field. */
    cnd_buf_t note;
    cnd_buf_init(&note);
    cnd_audit_cp_format(&note, &cp);
    cnd_audit_cp_t back;
    CHECK(cnd_audit_cp_parse(&back, (const char *)note.data, note.len) == 0);
    CHECK(back.tree_size == 12 && !memcmp(back.root, cp.root, 32) && back.time_ms == cp.time_ms);
    CHECK(cnd_audit_cp_verify(&back, k.pk) == 0);
    back.tree_size = 11;
    CHECK(cnd_audit_cp_verify(&back, k.pk) == CND_ECRYPTO);
    note.data[note.len - 5] ^= 0x01; /* inside the base64 signature */
    if (cnd_audit_cp_parse(&back, (const char *)note.data, note.len) == 0)
        CHECK(cnd_audit_cp_verify(&back, k.pk) == CND_ECRYPTO);
    CHECK(cnd_audit_cp_parse(&back, "x\n12\n", 5) == CND_EFORMAT);
    cnd_buf_free(&note);
    /* Key IDs: the test vector of Go's sumdb/note (golang.org/x/mod/sumdb/note), vkey
     * PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW. */
    uint8_t vec[32], kid[CND_AUDIT_KEY_ID_BYTES];
    CHECK(cnd_unhex(vec, 32, "1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6") ==
          0);
    cnd_audit_key_id(kid, "PeterNeumann", vec);
    CHECK(kid[0] == 0xc7 && kid[1] == 0x4f && kid[2] == 0x20 && kid[3] == 0xa3);
    /* A checkpoint from the log carries its key's ID; a parsed note the ID it was written with,
     * which a re-formatted note keeps (the key itself is not in a note). */
    cnd_audit_key_id(kid, cp.origin, k.pk);
    CHECK(!memcmp(cp.key_id, kid, sizeof kid));
    cnd_buf_init(&note);
    cnd_audit_cp_format(&note, &cp);
    CHECK(cnd_audit_cp_parse(&back, (const char *)note.data, note.len) == 0);
    CHECK(!memcmp(back.key_id, kid, sizeof kid));
    cnd_buf_t again;
    cnd_buf_init(&again);
    cnd_audit_cp_format(&again, &back);
    CHECK(again.len == note.len && !memcmp(again.data, note.data, note.len));
    cnd_buf_free(&again);
    cnd_buf_free(&note);
    /* Root of the tree = the recomputed RFC 9162 root of the leaf bytes. */
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(cnd_audit_db(log), "SELECT entry FROM audit_entry ORDER BY seq", -1,
                             &st, NULL) == SQLITE_OK);
    cnd_merkle_hash_t leaves[12];
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < 12) {
        cnd_merkle_leaf_hash(leaves[n], sqlite3_column_text(st, 0),
                             (size_t)sqlite3_column_bytes(st, 0));
        if (n == 0) {
            /* The exact bytes of an entry. */
            char want[1024];
            snprintf(want, sizeof want,
                     "{\"action\":\"round.end\",\"actor\":\"%s\",\"details\":{\"round\":1},"
                     "\"digests\":{\"aggregate\":\"02000000000000000000000000000000000000000000"
                     "00000000000000000000\",\"model\":\"0100000000000000000000000000000000000000"
                     "000000000000000000000000\"},\"job\":\"job-1\",\"prev_root\":"
                     "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
                     "\"seq\":0,\"subject\":\"round 1\",\"time_ms\":",
                     k.fpr);
            CHECK(!strncmp((const char *)sqlite3_column_text(st, 0), want, strlen(want)));
        }
        n++;
    }
    sqlite3_finalize(st);
    uint8_t root[32];
    cnd_merkle_root(root, leaves, 12);
    CHECK(!memcmp(root, cp.root, 32));

    /* Refused input changes nothing. */
    uint64_t size0 = 0, size1 = 0;
    CHECK(cnd_audit_size(log, &size0) == 0);
    cnd_audit_rec_t bad = r;
    bad.action = "Round.End";
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    bad = r;
    bad.details = "[1,2]";
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    bad.details = "{\"a\":";
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    bad = r;
    bad.subject = "line\nbreak";
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    bad.subject = "\xff\xfe";
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    bad = r;
    bad.actor = NULL;
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    cnd_audit_digest_t dup[2] = {{"model", {1}}, {"model", {2}}};
    bad = r;
    bad.digests = dup;
    CHECK(cnd_audit_append(log, &bad, NULL) == CND_EINVAL);
    CHECK(cnd_audit_checkpoint(log, "Bad Reason", NULL) == CND_EINVAL);
    CHECK(cnd_audit_size(log, &size1) == 0);
    CHECK_EQ_INT(size1, size0);
    /* The triggers refuse UPDATE and DELETE. */
    CHECK(sqlite3_exec(cnd_audit_db(log), "UPDATE audit_entry SET subject = 'x' WHERE seq = 1",
                       NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(cnd_audit_db(log), "DELETE FROM audit_checkpoint", NULL, NULL, NULL) !=
          SQLITE_OK);
    cnd_audit_close(&log);
    CHECK(log == NULL);
    cnd_audit_close(&log);

    /* Reopening with another key is refused; read-only logs refuse writes. */
    char p[512];
    path_in(p, sizeof p, "basic.db");
    CHECK(cnd_audit_open(&log, p, other.sk, "condenser/test-coordinator") == CND_EPERM);
    CHECK(cnd_audit_open(&log, p, k.sk, "condenser/another-name") == CND_EPERM);
    CHECK(cnd_audit_open_readonly(&log, p) == 0);
    CHECK(cnd_audit_append(log, &r, NULL) == CND_EPERM);
    CHECK(cnd_audit_checkpoint(log, "x", NULL) == CND_EPERM);
    cnd_audit_close(&log);
    uint8_t badsk[64];
    memcpy(badsk, k.sk, 64);
    badsk[40] ^= 1;
    path_in(p, sizeof p, "badkey.db");
    CHECK(cnd_audit_open(&log, p, badsk, NULL) == CND_EINVAL && log == NULL);
    CHECK(cnd_audit_open(&log, p, NULL, NULL) == CND_EINVAL);
    path_in(p, sizeof p, "missing.db");
    CHECK(cnd_audit_open_readonly(&log, p) == CND_EIO);

    cnd_audit_verdict_t v = verify_path("basic.db", k.pk, NULL, 0);
    CHECK(v.ok);
    CHECK_EQ_INT(v.entries, 12);
    CHECK_EQ_INT(v.checkpoints, 3);
    CHECK_EQ_INT(v.checkpoints_ok, 3);
    CHECK_EQ_INT(v.covered, 12);
    CHECK(!strncmp(v.summary, "OK:", 3));
    if (!v.ok) show(&v);
    cnd_audit_verdict_free(&v);
    /* Pinned to the wrong key: every signature fails. */
    v = verify_path("basic.db", other.pk, NULL, 0);
    CHECK(!v.ok);
    CHECK_EQ_INT(v.checkpoints_ok, 0);
    cnd_audit_verdict_free(&v);
}

/* --- tampering, done as an attacker with the file would: triggers dropped, SQL by hand --- */

static sqlite3 *raw_open(const char *name)
{
    char p[512];
    path_in(p, sizeof p, name);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "DROP TRIGGER IF EXISTS audit_entry_no_update;"
                       "DROP TRIGGER IF EXISTS audit_entry_no_delete;"
                       "DROP TRIGGER IF EXISTS audit_checkpoint_no_update;"
                       "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete;",
                       NULL, NULL, NULL) == SQLITE_OK);
    return db;
}

static char *get_entry(sqlite3 *db, int64_t seq)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    sqlite3_prepare_v2(db, "SELECT entry FROM audit_entry WHERE seq = ?", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, seq);
    if (sqlite3_step(st) == SQLITE_ROW) out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

/* Sets entry text (and optionally the leaf hash and the subject column to match). */
static void set_entry(sqlite3 *db, int64_t seq, const char *text, int fix_hash, const char *subject)
{
    sqlite3_stmt *st = NULL;
    uint8_t h[32];
    cnd_merkle_leaf_hash(h, text, strlen(text));
    CHECK(sqlite3_prepare_v2(db,
                             fix_hash
                                 ? "UPDATE audit_entry SET entry = ?1, leaf_hash = ?2, subject = "
                                   "coalesce(?3, subject) WHERE seq = ?4"
                                 : "UPDATE audit_entry SET entry = ?1, subject = coalesce(?3, "
                                   "subject) WHERE seq = ?4",
                             -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    if (fix_hash) sqlite3_bind_blob(st, 2, h, 32, SQLITE_TRANSIENT);
    if (subject) sqlite3_bind_text(st, 3, subject, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, seq);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
}

static int64_t log_size(const char *name)
{
    sqlite3 *db = raw_open(name);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM audit_entry", -1, &st, NULL);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Entry count read while another process may be appending: read-only, waits for locks. */
static int64_t live_size(const char *name)
{
    char p[512];
    path_in(p, sizeof p, name);
    sqlite3 *db = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM audit_entry", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void build_small_log(const char *name, const fx_key_t *k, int n, int every)
{
    cnd_audit_t *log = open_log(name, k);
    CHECK(cnd_audit_set_checkpoint_every(log, (uint64_t)every) == 0);
    for (int i = 0; i < n; i++) {
        char subj[32], det[64];
        snprintf(subj, sizeof subj, "subject %03d", i);
        snprintf(det, sizeof det, "{\"i\":%d,\"note\":\"entry number %d\"}", i, i);
        fx_add(log, k->fpr, i % 3 ? "egress" : "round.end", subj, "job-t", det, "message", subj);
    }
    CHECK(cnd_audit_checkpoint(log, "test.end", NULL) == 0);
    cnd_audit_close(&log);
}

static void copy_db(const char *from, const char *to)
{
    char a[512], b[512], cmd[2200];
    path_in(a, sizeof a, from);
    path_in(b, sizeof b, to);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && rm -f '%s-wal' '%s-shm'", a, b, b, b);
    CHECK(system(cmd) == 0);
}

static void test_byte_changes_located(void)
{
    fx_key_t k;
    fx_key(&k, 3);
    const int n = 26;
    build_small_log("t.db", &k, n, 8);
    cnd_audit_verdict_t v = verify_path("t.db", k.pk, NULL, 0);
    CHECK(v.ok);
    cnd_audit_verdict_free(&v);
    int located = 0, located_chain = 0, located_range = 0, tries = 0;
    for (int seq = 0; seq < n; seq++) {
        copy_db("t.db", "w.db");
        sqlite3 *db = raw_open("w.db");
        char *orig = get_entry(db, seq);
        size_t len = strlen(orig);
        /* 1. One byte changed, at the start, in the middle, at the end, and inside a string value
         * (so that the entry stays valid canonical JSON). */
        size_t pos[4] = {0, len / 2, len - 1, (size_t)(strstr(orig, "entry number") - orig)};
        for (int p = 0; p < 4; p++) {
            char *t = strdup(orig);
            t[pos[p]] ^= 0x01;
            set_entry(db, seq, t, 0, NULL);
            sqlite3_close(db);
            v = verify_path("w.db", k.pk, NULL, 0);
            tries++;
            if (!v.ok && v.first_bad == seq && v.first_bad_exact)
                located++;
            else {
                fprintf(stderr, "byte %zu of entry %d:\n", pos[p], seq);
                show(&v);
            }
            cnd_audit_verdict_free(&v);
            db = raw_open("w.db");
            set_entry(db, seq, orig, 0, NULL);
            free(t);
        }
        /* 2. The attacker also rewrites the stored leaf hash and the column: entry seq+1's
         * prev_root gives it away (the last entry only the final checkpoint's root). */
        char *t = strdup(orig);
        char *s = strstr(t, "entry number");
        s[0] = 'E';
        char subj[32];
        snprintf(subj, sizeof subj, "subject %03d", seq);
        set_entry(db, seq, t, 1, subj);
        sqlite3_close(db);
        v = verify_path("w.db", k.pk, NULL, 0);
        if (!v.ok && v.first_bad <= seq && (v.first_bad == seq ? 1 : seq < v.first_bad_end))
            located_chain++;
        else
            show(&v);
        cnd_audit_verdict_free(&v);
        free(t);
        free(orig);
    }
    CHECK_EQ_INT(located, tries);
    CHECK_EQ_INT(located_chain, n);

    /* 3. A forger who re-chains every later entry (leaf hashes and prev_roots) is caught by the
     * signed checkpoints and located to the interval between the last good one and the first
     * bad one. */
    for (int seq = 3; seq < n; seq += 5) {
        copy_db("t.db", "w.db");
        sqlite3 *db = raw_open("w.db");
        cnd_merkle_frontier_t f;
        cnd_merkle_frontier_init(&f);
        for (int i = 0; i < n; i++) {
            char *e = get_entry(db, i);
            if (i == seq) {
                char *x = strstr(e, "entry number");
                x[0] = 'E';
            }
            if (i > seq) { /* re-chain: recompute prev_root */
                char *pr = strstr(e, "\"prev_root\":\"") + 13;
                uint8_t r[32];
                char hex[65];
                cnd_merkle_frontier_root(&f, r);
                memcpy(pr, cnd_hex(hex, r, 32), 64);
            }
            if (i >= seq) set_entry(db, i, e, 1, NULL);
            uint8_t h[32];
            cnd_merkle_leaf_hash(h, e, strlen(e));
            cnd_merkle_frontier_push(&f, h);
            free(e);
        }
        sqlite3_close(db);
        v = verify_path("w.db", k.pk, NULL, 0);
        CHECK(!v.ok);
        CHECK(!v.first_bad_exact && v.first_bad <= seq && seq < v.first_bad_end);
        /* Checkpoints every 8 entries: the interval is at most 8 long. */
        CHECK(v.first_bad_end - v.first_bad <= 8);
        located_range += !v.ok;
        cnd_audit_verdict_free(&v);
    }
    CHECK(located_range >= 5);
}

static void test_rows_deleted_reordered_truncated(void)
{
    fx_key_t k;
    fx_key(&k, 4);
    const int n = 30;
    build_small_log("r.db", &k, n, 8);

    /* A row deleted in the middle. */
    copy_db("r.db", "w.db");
    sqlite3 *db = raw_open("w.db");
    CHECK(sqlite3_exec(db, "DELETE FROM audit_entry WHERE seq = 17", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    cnd_audit_verdict_t v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.first_bad == 17 && v.first_bad_exact);
    CHECK(v.n_problems > 0 && strstr(v.problems[0], "17..17 are missing"));
    cnd_audit_verdict_free(&v);

    /* A row deleted and the later ones renumbered to close the gap. */
    copy_db("r.db", "w.db");
    db = raw_open("w.db");
    CHECK(
        sqlite3_exec(db,
                     "DELETE FROM audit_entry WHERE seq = 11; UPDATE audit_entry SET seq = seq - 1 "
                     "WHERE seq > 11",
                     NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.first_bad == 11 && v.first_bad_exact);
    cnd_audit_verdict_free(&v);

    /* Two rows swapped (contents and columns exchanged). */
    copy_db("r.db", "w.db");
    db = raw_open("w.db");
    CHECK(sqlite3_exec(db,
                       "UPDATE audit_entry SET seq = -1 WHERE seq = 9;"
                       "UPDATE audit_entry SET seq = 9 WHERE seq = 21;"
                       "UPDATE audit_entry SET seq = 21 WHERE seq = -1;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.first_bad == 9 && v.first_bad_exact);
    cnd_audit_verdict_free(&v);

    /* Truncated: the last 6 entries removed; the checkpoints still name them. */
    copy_db("r.db", "w.db");
    db = raw_open("w.db");
    CHECK(sqlite3_exec(db, "DELETE FROM audit_entry WHERE seq >= 24", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.first_bad == 24 && v.first_bad_exact);
    CHECK(v.n_problems > 0 && strstr(v.problems[0], "truncated"));
    cnd_audit_verdict_free(&v);

    /* Truncated together with the checkpoints that covered the removed entries: the log alone
     * looks whole, and a checkpoint the auditor kept from before catches it. */
    char p[512];
    path_in(p, sizeof p, "r.db");
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open_readonly(&log, p) == 0);
    cnd_audit_cp_t kept;
    CHECK(cnd_audit_latest_checkpoint(log, &kept) == 0);
    cnd_audit_close(&log);
    CHECK_EQ_INT(kept.tree_size, n);
    copy_db("r.db", "w.db");
    db = raw_open("w.db");
    CHECK(sqlite3_exec(db,
                       "DELETE FROM audit_entry WHERE seq >= 24; DELETE FROM audit_checkpoint "
                       "WHERE tree_size > 24",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(v.ok); /* undetectable without outside knowledge: why auditors keep checkpoints */
    cnd_audit_verdict_free(&v);
    v = verify_path("w.db", k.pk, &kept, 1);
    CHECK(!v.ok && v.first_bad == 24);
    cnd_audit_verdict_free(&v);
    /* Kept checkpoints of an intact log verify. */
    v = verify_path("r.db", k.pk, &kept, 1);
    CHECK(v.ok && v.kept_ok == 1);
    cnd_audit_verdict_free(&v);
}

/* Operator commands: the exact argv as an array of strings, or nothing at all. */
static void test_admin_argv(void)
{
    fx_key_t k;
    fx_key(&k, 9);
    cnd_audit_t *log = open_log("admin.db", &k);
    const char *argv[] = {"/usr/bin/condenser",   "site", "revoke", "site-c", "--reason",
                          "it's \"two\"\n$words", ""};
    CHECK(cnd_audit_log_admin(log, "local:op", "site.revoke", 7, argv, "fpr", "", "ok") == 0);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(cnd_audit_db(log), "SELECT action, entry FROM audit_entry", -1, &st,
                             NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 0), "admin.site.revoke"));
    CHECK(strstr((const char *)sqlite3_column_text(st, 1),
                 "\"details\":{\"argv\":[\"/usr/bin/condenser\",\"site\",\"revoke\",\"site-c\","
                 "\"--reason\",\"it's \\\"two\\\"\\n$words\",\"\"],\"result\":\"ok\"}") != NULL);
    sqlite3_finalize(st);
    /* A word that is not UTF-8 would be recorded altered: refused, nothing written. */
    const char *bad[] = {"condenser", "job", "cancel", "--reason", "caf\xe9"};
    CHECK(cnd_audit_log_admin(log, "local:op", "job.cancel", 5, bad, "1", "1", "ok") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "word 4") != NULL);
    /* No command line recorded (a library caller that skipped cnd_cli_record_argv). */
    CHECK(cnd_audit_log_admin(log, "local:op", "job.cancel", -1, NULL, "1", "1", "ok") ==
          CND_EINVAL);
    uint64_t n = 0;
    CHECK(cnd_audit_size(log, &n) == 0 && n == 1);
    cnd_audit_close(&log);
}

static void test_forged_checkpoints(void)
{
    fx_key_t k, evil;
    fx_key(&k, 5);
    fx_key(&evil, 6);
    build_small_log("c.db", &k, 20, 5);
    /* A checkpoint's root or size changed. */
    copy_db("c.db", "w.db");
    sqlite3 *db = raw_open("w.db");
    CHECK(sqlite3_exec(db, "UPDATE audit_checkpoint SET tree_size = 9 WHERE id = 2", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(db);
    cnd_audit_verdict_t v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.n_problems >= 1 && strstr(v.problems[0], "checkpoint #2") &&
          strstr(v.problems[0], "signature does not verify"));
    cnd_audit_verdict_free(&v);

    /* A checkpoint forged with another key, for a rewritten log (entry 3 changed, its hash
     * stored, the chain not fixed, so also located exactly). */
    copy_db("c.db", "w.db");
    db = raw_open("w.db");
    char *e = get_entry(db, 3);
    strstr(e, "entry number")[0] = 'E';
    set_entry(db, 3, e, 1, NULL);
    free(e);
    cnd_audit_cp_t cp;
    memset(&cp, 0, sizeof cp);
    cp.tree_size = 20;
    snprintf(cp.origin, sizeof cp.origin, "condenser/test-coordinator");
    snprintf(cp.reason, sizeof cp.reason, "auto");
    cp.time_ms = 1700000000000;
    cnd_buf_t body;
    cnd_buf_init(&body);
    cnd_audit_cp_body(&body, &cp);
    crypto_sign_detached(cp.sig, NULL, body.data, body.len, evil.sk);
    cnd_buf_free(&body);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db,
                       "INSERT INTO audit_checkpoint(tree_size, root, time_ms, origin, reason, "
                       "public_key, signature) VALUES (20, ?, ?, ?, 'auto', ?, ?)",
                       -1, &st, NULL);
    sqlite3_bind_blob(st, 1, cp.root, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, cp.time_ms);
    sqlite3_bind_text(st, 3, cp.origin, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, evil.pk, 32, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, cp.sig, 64, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.first_bad == 3 && v.first_bad_exact);
    int sig_named = 0;
    for (size_t i = 0; i < v.n_problems && i < 100; i++)
        sig_named |= strstr(v.problems[i], "signature does not verify") != NULL;
    CHECK(sig_named);
    cnd_audit_verdict_free(&v);

    /* The whole log re-signed with the forger's key (meta key replaced too): without a pinned
     * key it verifies (and says the key was not pinned); with the real key it fails. */
    copy_db("c.db", "w.db");
    db = raw_open("w.db");
    char pkhex[65];
    cnd_hex(pkhex, evil.pk, 32);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE audit_meta SET value = '%s' WHERE key = 'public_key'", pkhex);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_prepare_v2(db,
                       "SELECT id, tree_size, root, time_ms, origin, reason FROM audit_checkpoint",
                       -1, &st, NULL);
    sqlite3_stmt *up = NULL;
    sqlite3_prepare_v2(db, "UPDATE audit_checkpoint SET signature = ?, public_key = ? WHERE id = ?",
                       -1, &up, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        cnd_audit_cp_t c;
        memset(&c, 0, sizeof c);
        c.tree_size = (uint64_t)sqlite3_column_int64(st, 1);
        memcpy(c.root, sqlite3_column_blob(st, 2), 32);
        c.time_ms = sqlite3_column_int64(st, 3);
        snprintf(c.origin, sizeof c.origin, "%s", sqlite3_column_text(st, 4));
        snprintf(c.reason, sizeof c.reason, "%s", sqlite3_column_text(st, 5));
        cnd_buf_init(&body);
        cnd_audit_cp_body(&body, &c);
        crypto_sign_detached(c.sig, NULL, body.data, body.len, evil.sk);
        cnd_buf_free(&body);
        sqlite3_bind_blob(up, 1, c.sig, 64, SQLITE_TRANSIENT);
        sqlite3_bind_blob(up, 2, evil.pk, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 3, sqlite3_column_int64(st, 0));
        CHECK(sqlite3_step(up) == SQLITE_DONE);
        sqlite3_reset(up);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    sqlite3_close(db);
    v = verify_path("w.db", NULL, NULL, 0);
    CHECK(v.ok && !v.key_pinned && v.n_notes >= 1 && strstr(v.notes[0], "no key given"));
    cnd_audit_verdict_free(&v);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.checkpoints_ok == 0);
    cnd_audit_verdict_free(&v);

    /* A checkpoint row deleted from the middle. */
    copy_db("c.db", "w.db");
    db = raw_open("w.db");
    CHECK(sqlite3_exec(db, "DELETE FROM audit_checkpoint WHERE id = 2", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    v = verify_path("w.db", k.pk, NULL, 0);
    CHECK(!v.ok && v.n_problems >= 1 && strstr(v.problems[0], "#2..#2 are missing"));
    cnd_audit_verdict_free(&v);

    /* Bytes of the file itself overwritten. */
    copy_db("c.db", "w.db");
    char p[512];
    path_in(p, sizeof p, "w.db");
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        /* Find the text of an entry in the file and change one byte of it in place. */
        char *buf = malloc((size_t)size);
        fseek(f, 0, SEEK_SET);
        CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
        char *hit = memmem(buf, (size_t)size, "entry number 7", 14);
        CHECK(hit != NULL);
        if (hit) {
            fseek(f, (long)(hit - buf) + 13, SEEK_SET);
            fputc('8', f);
        }
        fclose(f);
        free(buf);
        v = verify_path("w.db", k.pk, NULL, 0);
        CHECK(!v.ok && v.first_bad == 7 && v.first_bad_exact);
        cnd_audit_verdict_free(&v);
    }
}

/* A child appends (with automatic and explicit checkpoints) until it is killed. */
static void test_kill_during_append(void)
{
    fx_key_t k;
    fx_key(&k, 7);
    char p[512];
    path_in(p, sizeof p, "kill.db");
    {
        cnd_audit_t *log = NULL;
        CHECK(cnd_audit_open(&log, p, k.sk, NULL) == 0);
        CHECK(cnd_audit_set_checkpoint_every(log, 7) == 0);
        cnd_audit_close(&log);
    }
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            cnd_audit_t *log = NULL;
            if (cnd_audit_open(&log, p, k.sk, NULL)) _exit(3);
            for (int i = 0;; i++) {
                char det[300];
                snprintf(det, sizeof det, "{\"i\":%d,\"pad\":\"%0200d\"}", i, i);
                cnd_audit_rec_t r = {k.fpr, "egress", "peer", "job", det, NULL, 0};
                if (cnd_audit_append(log, &r, NULL)) _exit(4);
                if (i % 13 == 0 && cnd_audit_checkpoint(log, "round.end", NULL)) _exit(5);
            }
        }
        CHECK(pid > 0);
        /* Kill mid-stream: wait (up to 30 s on a loaded machine under ASan) until the child has
         * appended more entries, then let it run a little longer so the kill lands at an
         * arbitrary point of an append or checkpoint. */
        int64_t before = round ? live_size("kill.db") : 0;
        for (int w = 0; w < 3000 && live_size("kill.db") < before + 10; w++) {
            struct timespec poll = {0, 10000000};
            nanosleep(&poll, NULL);
        }
        struct timespec ts = {0, 30000000 + 23000000 * round};
        nanosleep(&ts, NULL);
        CHECK(kill(pid, SIGKILL) == 0);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        int64_t n = log_size("kill.db");
        CHECK(n > 0);
        cnd_audit_verdict_t v = verify_path("kill.db", k.pk, NULL, 0);
        CHECK(v.ok);
        if (!v.ok) show(&v);
        CHECK_EQ_INT(v.entries, n);
        cnd_audit_verdict_free(&v);
        /* The log takes further appends after the crash. */
        cnd_audit_t *log = NULL;
        CHECK(cnd_audit_open(&log, p, k.sk, NULL) == 0);
        cnd_audit_rec_t r = {k.fpr, "admin.restart", "", "", NULL, NULL, 0};
        CHECK(cnd_audit_append(log, &r, NULL) == 0);
        cnd_audit_close(&log);
    }
    cnd_audit_verdict_t v = verify_path("kill.db", k.pk, NULL, 0);
    CHECK(v.ok);
    fprintf(stderr, "kill test: %llu entries survived 3 kills and verify\n",
            (unsigned long long)v.entries);
    cnd_audit_verdict_free(&v);
}

/* The log inside another database, appends joining the caller's transactions, and two writers
 * on one file. */
static void test_shared_db_and_two_writers(void)
{
    fx_key_t k;
    fx_key(&k, 8);
    char p[512];
    path_in(p, sizeof p, "state.db");
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; PRAGMA user_version = 7;"
                       "CREATE TABLE jobs(id TEXT PRIMARY KEY, state TEXT)",
                       NULL, NULL, NULL) == SQLITE_OK);
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open_db(&log, db, k.sk, "condenser/state") == 0);
    cnd_audit_rec_t r = {k.fpr, "job.create", "j1", "j1", "{\"recipe\":{}}", NULL, 0};
    /* Committed together with the state change. */
    CHECK(sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO jobs VALUES ('j1', 'new')", NULL, NULL,
                       NULL) == SQLITE_OK);
    CHECK(cnd_audit_append(log, &r, NULL) == 0);
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    /* Rolled back together with it: the log stays consistent and later appends chain on the
     * committed entries. */
    CHECK(sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO jobs VALUES ('j2', 'new')", NULL, NULL,
                       NULL) == SQLITE_OK);
    r.subject = "j2";
    CHECK(cnd_audit_append(log, &r, NULL) == 0);
    CHECK(cnd_audit_append(log, &r, NULL) == 0);
    CHECK(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    uint64_t n = 0;
    CHECK(cnd_audit_size(log, &n) == 0);
    CHECK_EQ_INT(n, 1);
    r.subject = "j3";
    CHECK(cnd_audit_append(log, &r, NULL) == 0);
    CHECK(cnd_audit_checkpoint(log, "test", NULL) == 0);
    /* The caller's user_version is untouched. */
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 7);
    sqlite3_finalize(st);
    /* A second writer on the same file interleaves with the first. */
    cnd_audit_t *w2 = NULL;
    CHECK(cnd_audit_open(&w2, p, k.sk, "condenser/state") == 0);
    for (int i = 0; i < 10; i++) {
        CHECK(cnd_audit_append(i % 2 ? log : w2, &r, NULL) == 0);
    }
    CHECK(cnd_audit_checkpoint(log, "test", NULL) == 0);
    cnd_audit_close(&w2);
    cnd_audit_close(&log);
    sqlite3_close(db);
    cnd_audit_verdict_t v = verify_path("state.db", k.pk, NULL, 0);
    CHECK(v.ok && v.entries == 12 && v.covered == 12);
    if (!v.ok) show(&v);
    cnd_audit_verdict_free(&v);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cnd_audit_log_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    test_canonical_json();
    test_json_integer();
    test_append_and_checkpoints();
    test_byte_changes_located();
    test_rows_deleted_reordered_truncated();
    test_forged_checkpoints();
    test_admin_argv();
    test_kill_during_append();
    test_shared_db_and_two_writers();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_result("test_audit_log");
}
