/* bench_audit.c: audit log throughput, for docs/benchmarks.md (not a test: timings are never
 * asserted). Usage: bench_audit DIR [ENTRIES]  (default 100000).
 * Measures, side by side in one run:
 *   - durable appends (each its own transaction, WAL, synchronous=FULL) against a plain SQLite
 *     INSERT of the same bytes with the same durability;
 *   - appends batched in the caller's transaction (the CPU cost of an entry without fsync);
 *   - verification of an ENTRIES-entry log against the bare cost of reading and hashing every
 *     entry;
 *   - inclusion and consistency proof generation on that log, and proof checking. */
#include "audit_fixture.h"
#include "audit_proof.h"
#include "audit_verify.h"
#include "clock.h"

#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static const char *details(int i, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "{\"peer\":\"8d3f0c2e9a7b6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c\","
             "\"round\":%d,\"size\":%d,\"type\":\"masked_update\"}",
             i / 100, 1000 + i % 977);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_audit DIR [ENTRIES]\n");
        return 2;
    }
    const char *dir = argv[1];
    long big = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
    fx_key_t k;
    fx_key(&k, 99);
    char p[512], q[512], det[512];
    cnd_audit_digest_t d = {"message", {0}};
    cnd_audit_rec_t r = {k.fpr, "ingress", "peer", "job-b", NULL, &d, 1};

    /* 1. Durable appends vs plain durable inserts, 3 runs of 300 each. */
    const int N1 = 300;
    double t_app[3], t_ins[3];
    for (int run = 0; run < 3; run++) {
        snprintf(p, sizeof p, "%s/append-%d.db", dir, run);
        snprintf(q, sizeof q, "%s/plain-%d.db", dir, run);
        remove(p);
        remove(q);
        cnd_audit_t *log = NULL;
        if (cnd_audit_open(&log, p, k.sk, NULL)) return 1;
        double t0 = cnd_now();
        for (int i = 0; i < N1; i++) {
            r.details = details(i, det, sizeof det);
            d.sha256[0] = (uint8_t)i;
            if (cnd_audit_append(log, &r, NULL)) return 1;
        }
        t_app[run] = cnd_now() - t0;
        cnd_audit_close(&log);
        sqlite3 *db = NULL;
        sqlite3_open(q, &db);
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(seq "
                     "INTEGER PRIMARY KEY, entry TEXT)",
                     NULL, NULL, NULL);
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "INSERT INTO t(entry) VALUES (?)", -1, &st, NULL);
        t0 = cnd_now();
        for (int i = 0; i < N1; i++) {
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
            sqlite3_bind_text(st, 1, details(i, det, sizeof det), -1, SQLITE_STATIC);
            sqlite3_step(st);
            sqlite3_reset(st);
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        }
        t_ins[run] = cnd_now() - t0;
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    double ma = median(t_app, 3), mi = median(t_ins, 3);
    printf("durable append (own transaction, WAL, synchronous=FULL): %.0f entries/s (median of 3 x "
           "%d); plain SQLite INSERT, same durability: %.0f rows/s; ratio %.2f\n",
           N1 / ma, N1, N1 / mi, ma / mi);

    /* 2. Batched appends: ENTRIES entries in transactions of 1000, building the big log. */
    snprintf(p, sizeof p, "%s/big.db", dir);
    remove(p);
    sqlite3 *db = NULL;
    sqlite3_open(p, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    cnd_audit_t *log = NULL;
    if (cnd_audit_open_db(&log, db, k.sk, "condenser/bench")) return 1;
    double t0 = cnd_now();
    for (long i = 0; i < big; i++) {
        if (i % 1000 == 0) sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        r.details = details((int)i, det, sizeof det);
        d.sha256[0] = (uint8_t)i;
        d.sha256[1] = (uint8_t)(i >> 8);
        if (cnd_audit_append(log, &r, NULL)) {
            fprintf(stderr, "%s\n", cnd_err_detail());
            return 1;
        }
        if (i % 1000 == 999 || i == big - 1) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    double t_batch = cnd_now() - t0;
    if (cnd_audit_checkpoint(log, "bench", NULL)) return 1;
    cnd_audit_close(&log);
    sqlite3_close(db);
    printf("batched append (1000 per caller transaction): %.0f entries/s (%ld entries, %.2f s)\n",
           big / t_batch, big, t_batch);

    /* 3. Verification vs bare read + leaf hashing. */
    double tv[3], th[3];
    cnd_audit_verdict_t v;
    for (int run = 0; run < 3; run++) {
        if (cnd_audit_open_readonly(&log, p)) return 1;
        t0 = cnd_now();
        if (cnd_audit_verify(&v, log, k.pk, NULL, NULL, 0, NULL, NULL)) return 1;
        tv[run] = cnd_now() - t0;
        if (!v.ok) {
            fprintf(stderr, "bench log does not verify: %s\n", v.summary);
            return 1;
        }
        cnd_audit_verdict_free(&v);
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(cnd_audit_db(log), "SELECT entry FROM audit_entry ORDER BY seq", -1, &st,
                           NULL);
        t0 = cnd_now();
        uint8_t h[32];
        while (sqlite3_step(st) == SQLITE_ROW)
            cnd_merkle_leaf_hash(h, sqlite3_column_text(st, 0),
                                 (size_t)sqlite3_column_bytes(st, 0));
        th[run] = cnd_now() - t0;
        sqlite3_finalize(st);
        cnd_audit_close(&log);
    }
    double mv = median(tv, 3), mh = median(th, 3);
    printf(
        "verify %ld entries: %.2f s (%.0f entries/s, median of 3); bare read + leaf hash: %.2f s; "
        "ratio %.1f\n",
        big, mv, big / mv, mh, mv / mh);

    /* 4. Proofs on the big log. */
    if (cnd_audit_open_readonly(&log, p)) return 1;
    cnd_buf_t b;
    cnd_buf_init(&b);
    t0 = cnd_now();
    if (cnd_audit_prove_inclusion(&b, log, (uint64_t)big / 3)) return 1;
    double t_inc = cnd_now() - t0;
    char summary[512];
    t0 = cnd_now();
    int rc = cnd_audit_check_proof(summary, sizeof summary, (const char *)b.data, b.len, k.pk);
    double t_chk = cnd_now() - t0;
    size_t inc_bytes = b.len;
    cnd_buf_free(&b);
    cnd_audit_close(&log);
    printf("inclusion proof of entry %ld in %ld: generate %.2f s (reads every leaf), check %.1f ms "
           "(%s), file %zu bytes\n",
           big / 3, big, t_inc, t_chk * 1e3, rc ? "FAILED" : "ok", inc_bytes);
    return 0;
}
