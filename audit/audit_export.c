/*
 * audit_export.c: JSON Lines and CSV export (see audit_export.h).
 */
#include "audit_export.h"
#include "json.h"
#include "audit_verify.h"
#include "clock.h"
#include "digest.h"

#include <stdio.h>
#include <string.h>

/* Appends s as an RFC 4180 field: quoted, with quotes doubled. */
static void s_csv_field(cnd_buf_t *out, const char *s, size_t n)
{
    cnd_buf_u8(out, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') cnd_buf_u8(out, '"');
        cnd_buf_u8(out, (uint8_t)s[i]);
    }
    cnd_buf_u8(out, '"');
}

static void s_csv_json(cnd_buf_t *out, const cnd_json_t *v)
{
    cnd_buf_t t;
    cnd_buf_init(&t);
    if (cnd_json_canon(&t, v) == 0) s_csv_field(out, (const char *)t.data, t.len);
    cnd_buf_free(&t);
}

int cnd_audit_export(cnd_buf_t *out, cnd_audit_t *log, const char *job, cnd_audit_format_t fmt,
                     uint64_t *count)
{
    if (count) *count = 0;
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    const char *sql = job ? "SELECT seq, entry FROM audit_entry WHERE job = ? ORDER BY seq"
                          : "SELECT seq, entry FROM audit_entry ORDER BY seq";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    if (job) sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    if (fmt == CND_AUDIT_FMT_CSV) {
        const char *hdr =
            "seq,time_utc,time_ms,actor,action,subject,job,details,digests,leaf_hash\r\n";
        cnd_buf_put(out, hdr, strlen(hdr));
    }
    int rc;
    uint64_t n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        long long seq = sqlite3_column_int64(st, 0);
        cnd_json_t *e = NULL;
        if (!text || cnd_audit_entry_parse(&e, text, len) != 0) {
            sqlite3_finalize(st);
            return cnd_errf(CND_EFORMAT, "entry %lld is damaged (%s); run `condenser audit verify`",
                            seq, text ? cnd_err_detail() : "empty");
        }
        if (fmt == CND_AUDIT_FMT_JSONL) {
            cnd_buf_put(out, text, len);
            cnd_buf_u8(out, '\n');
        } else {
            int64_t t = 0;
            char num[32], when[32], hex[65];
            uint8_t leaf[32];
            (void)cnd_json_integer(cnd_json_get(e, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &t);
            snprintf(num, sizeof num, "%lld,", seq);
            cnd_buf_put(out, num, strlen(num));
            cnd_iso8601(when, t / 1000);
            cnd_buf_put(out, when, strlen(when));
            snprintf(num, sizeof num, ",%lld", (long long)t);
            cnd_buf_put(out, num, strlen(num));
            static const char *const keys[] = {"actor", "action", "subject", "job"};
            for (int k = 0; k < 4; k++) {
                const char *s = cnd_json_str(cnd_json_get(e, keys[k]));
                cnd_buf_u8(out, ',');
                s_csv_field(out, s, strlen(s));
            }
            cnd_buf_u8(out, ',');
            s_csv_json(out, cnd_json_get(e, "details"));
            cnd_buf_u8(out, ',');
            s_csv_json(out, cnd_json_get(e, "digests"));
            cnd_merkle_leaf_hash(leaf, text, len);
            cnd_buf_u8(out, ',');
            cnd_buf_put(out, cnd_hex(hex, leaf, 32), 64);
            cnd_buf_put(out, "\r\n", 2);
        }
        cnd_json_free(&e);
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    if (out->err) return CND_ENOMEM;
    if (count) *count = n;
    return 0;
}
