/*
 * audit_cmd.c: `condenser audit verify|prove|check-proof|checkpoint|export|reconcile|report`,
 * the auditor's tools. They open logs read-only and never need a secret key: an auditor runs
 * them offline on a copy of the database and the nodes' public keys. The work is done by the
 * audit_* library modules; this file parses options, prints, and maps outcomes to exit codes
 * (a failed verification or reconciliation is an error exit, so scripts can rely on it).
 */
#include "audit_export.h"
#include "audit_log.h"
#include "audit_privacy.h"
#include "audit_proof.h"
#include "audit_reconcile.h"
#include "audit_report.h"
#include "audit_verify.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_KEPT 16

static void s_progress(void *ctx, uint64_t done, uint64_t total)
{
    cnd_progress_t *p = ctx;
    p->total = total;
    cnd_progress_update(p, done, NULL);
}

/* Reads --checkpoint FILE[,FILE...] into kept[]. */
static int s_read_kept(const char *list, cnd_audit_cp_t *kept, char names[][256], size_t *n)
{
    *n = 0;
    if (!list) return 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (*n == S_MAX_KEPT)
            return cnd_errf(CND_EINVAL, "--checkpoint: at most %d files", S_MAX_KEPT);
        if (len == 0 || len >= 256) return cnd_errf(CND_EINVAL, "--checkpoint: bad file name");
        memcpy(names[*n], p, len);
        names[*n][len] = 0;
        int rc = cnd_audit_cp_read(&kept[*n], names[*n]);
        if (rc) return rc;
        (*n)++;
        p += len + (comma ? 1 : 0);
    }
    return 0;
}

/* Runs verification with a progress bar. */
static int s_run_verify(cnd_audit_verdict_t *v, cnd_audit_t *log, const char *key_spec,
                        const char *kept_list, const char *label)
{
    uint8_t pk[32];
    int rc;
    if (key_spec && (rc = cnd_audit_read_public_key(pk, key_spec))) return rc;
    cnd_audit_cp_t kept[S_MAX_KEPT];
    char names[S_MAX_KEPT][256];
    const char *np[S_MAX_KEPT];
    size_t nk = 0;
    if ((rc = s_read_kept(kept_list, kept, names, &nk))) return rc;
    for (size_t i = 0; i < nk; i++) np[i] = names[i];
    cnd_progress_t p;
    cnd_progress_begin(&p, label, 0, "entries");
    rc = cnd_audit_verify(v, log, key_spec ? pk : NULL, kept, np, nk, s_progress, &p);
    cnd_progress_end(&p);
    return rc;
}

static void s_print_verdict(FILE *f, const cnd_audit_verdict_t *v)
{
    fprintf(f, "%s\n", v->summary);
    size_t np = v->n_problems < 100 ? v->n_problems : 100;
    for (size_t i = 0; i < np; i++) fprintf(f, "  problem: %s\n", v->problems[i]);
    if (v->n_problems > np) fprintf(f, "  ... and %zu more problems\n", v->n_problems - np);
    size_t nn = v->n_notes < 100 ? v->n_notes : 100;
    for (size_t i = 0; i < nn; i++) fprintf(f, "  note: %s\n", v->notes[i]);
}

static int s_verify(int argc, char **argv)
{
    const char *key = NULL, *kept = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"key", CND_OPT_STR, &key, "PUB",
                               "the node's Ed25519 public key (file or 64 hex); "
                               "default: the key recorded in the log (weaker)"},
                              {"checkpoint", CND_OPT_STR, &kept, "FILE[,FILE]",
                               "checkpoints kept from earlier: the log "
                               "must still extend them"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print the verdict as JSON"},
                              {0}};
    const cnd_cli_t cli = {
        "condenser audit verify DB [--key PUB] [--checkpoint FILE] [--json]",
        "Checks every entry of the audit log in DB against the Merkle tree, every checkpoint's "
        "signature, and that the log still extends the checkpoints kept from earlier; names the "
        "first bad entry. Works offline on a copy of the database. Exit status 0 only when the "
        "log verifies.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_audit_verdict_t v;
    rc = s_run_verify(&v, log, key, kept, "verifying");
    cnd_audit_close(&log);
    if (rc) return rc;
    if (json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        char hex[65];
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "ok");
        cnd_jw_bool(&w, v.ok);
        cnd_jw_key(&w, "summary");
        cnd_jw_str(&w, v.summary);
        cnd_jw_key(&w, "entries");
        cnd_jw_int(&w, (int64_t)v.entries);
        cnd_jw_key(&w, "checkpoints");
        cnd_jw_int(&w, (int64_t)v.checkpoints);
        cnd_jw_key(&w, "checkpoints_ok");
        cnd_jw_int(&w, (int64_t)v.checkpoints_ok);
        cnd_jw_key(&w, "covered");
        cnd_jw_int(&w, (int64_t)v.covered);
        cnd_jw_key(&w, "first_bad");
        if (v.first_bad >= 0)
            cnd_jw_int(&w, v.first_bad);
        else
            cnd_jw_null(&w);
        cnd_jw_key(&w, "first_bad_exact");
        cnd_jw_bool(&w, v.first_bad_exact);
        cnd_jw_key(&w, "root");
        cnd_jw_str(&w, cnd_hex(hex, v.root, 32));
        cnd_jw_key(&w, "key_fingerprint");
        cnd_jw_str(&w, v.fingerprint);
        cnd_jw_key(&w, "key_pinned");
        cnd_jw_bool(&w, v.key_pinned);
        cnd_jw_key(&w, "problems");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < v.n_problems && i < 100; i++) cnd_jw_str(&w, v.problems[i]);
        cnd_jw_arr_end(&w);
        cnd_jw_key(&w, "notes");
        cnd_jw_arr(&w);
        for (size_t i = 0; i < v.n_notes && i < 100; i++) cnd_jw_str(&w, v.notes[i]);
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
        const char *t = cnd_jw_text(&w);
        printf("%s\n", t ? t : "{}");
        cnd_jw_free(&w);
    } else {
        s_print_verdict(stdout, &v);
    }
    rc = v.ok ? 0 : cnd_errf(CND_ECORRUPT, "%s: verification failed", pos[0]);
    cnd_audit_verdict_free(&v);
    return rc;
}

static int s_write_out(const char *path, const cnd_buf_t *b, const char *what)
{
    if (b->err) return CND_ENOMEM;
    if (!path || strcmp(path, "-") == 0) {
        if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len)
            return cnd_errf(CND_EIO, "writing %s to stdout failed", what);
        return 0;
    }
    int rc = cnd_file_write_atomic(path, b->data ? b->data : (const uint8_t *)"", b->len, 0644);
    if (!rc) fprintf(stderr, "wrote %s to %s (%zu bytes)\n", what, path, b->len);
    return rc;
}

static int s_prove(int argc, char **argv)
{
    long entry = -1;
    const char *from = NULL, *out = NULL;
    const cnd_opt_t opts[] = {
        {"entry", CND_OPT_INT, &entry, "N", "prove that entry N is in the log", 0, 9.2e18},
        {"from-checkpoint", CND_OPT_STR, &from, "FILE",
         "prove that the log extends this checkpoint"},
        {"out", CND_OPT_STR, &out, "FILE",
         "where to write the proof (default entry-N.proof.json "
         "or consistency-M-N.proof.json; '-' for stdout)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser audit prove DB (--entry N | --from-checkpoint FILE) [--out FILE]",
        "Writes a proof file that a third party checks with `condenser audit check-proof` and the "
        "log's public key, without the database: that entry N is in the tree of the latest signed "
        "checkpoint (inclusion), or that the latest checkpoint extends an earlier one without "
        "changing its entries (consistency).",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if ((entry >= 0) == (from != NULL))
        return cnd_errf(CND_EINVAL, "give exactly one of --entry N or --from-checkpoint FILE");
    cnd_audit_cp_t old;
    if (from && (rc = cnd_audit_cp_read(&old, from))) return rc;
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_buf_t b;
    cnd_buf_init(&b);
    char name[96];
    if (entry >= 0) {
        rc = cnd_audit_prove_inclusion(&b, log, (uint64_t)entry);
        snprintf(name, sizeof name, "entry-%ld.proof.json", entry);
    } else {
        rc = cnd_audit_prove_consistency(&b, log, &old);
        cnd_audit_cp_t cur;
        if (!rc && cnd_audit_latest_checkpoint(log, &cur) == 0)
            snprintf(name, sizeof name, "consistency-%llu-%llu.proof.json",
                     (unsigned long long)old.tree_size, (unsigned long long)cur.tree_size);
    }
    cnd_audit_close(&log);
    if (!rc) rc = s_write_out(out ? out : name, &b, "proof");
    cnd_buf_free(&b);
    return rc;
}

static int s_check_proof(int argc, char **argv)
{
    const char *key = NULL;
    const cnd_opt_t opts[] = {{"key", CND_OPT_STR, &key, "PUB",
                               "the log's Ed25519 public key "
                               "(file or 64 hex; required)"},
                              {0}};
    const cnd_cli_t cli = {"condenser audit check-proof FILE --key PUB",
                           "Checks a proof file written by `condenser audit prove`: the "
                           "checkpoints' signatures with PUB, and the inclusion or consistency "
                           "proof. Needs no database.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!key)
        return cnd_errf(CND_EINVAL, "--key PUB is required: a proof means nothing without "
                                    "the key that signed it");
    uint8_t pk[32];
    if ((rc = cnd_audit_read_public_key(pk, key))) return rc;
    uint8_t *data = NULL;
    size_t len = 0;
    if ((rc = cnd_file_read(pos[0], 16 << 20, &data, &len))) return rc;
    char summary[512];
    rc = cnd_audit_check_proof(summary, sizeof summary, (const char *)data, len, pk);
    free(data);
    if (rc) return cnd_err_wrap(rc, "%s", pos[0]);
    printf("%s\n", summary);
    return 0;
}

static int s_checkpoint(int argc, char **argv)
{
    const char *out = NULL;
    const cnd_opt_t opts[] = {
        {"out", CND_OPT_STR, &out, "FILE", "where to write it (default: stdout)"}, {0}};
    const cnd_cli_t cli = {"condenser audit checkpoint DB [--out FILE]",
                           "Writes the log's latest signed checkpoint (a C2SP signed note) so an "
                           "auditor can keep it and later check that the log still extends it "
                           "(verify --checkpoint, prove --from-checkpoint). Signs nothing new.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_audit_cp_t cp;
    rc = cnd_audit_latest_checkpoint(log, &cp);
    if (!rc && cnd_audit_cp_verify(&cp, cnd_audit_public_key(log)) != 0)
        rc = cnd_errf(CND_ECORRUPT, "the latest checkpoint's signature does not verify; run "
                                    "`condenser audit verify`");
    cnd_audit_close(&log);
    if (rc) return rc;
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_audit_cp_format(&b, &cp);
    rc = s_write_out(out, &b, "checkpoint");
    cnd_buf_free(&b);
    return rc;
}

static int s_export(int argc, char **argv)
{
    const char *job = NULL, *format = "jsonl", *out = NULL;
    const cnd_opt_t opts[] = {
        {"job", CND_OPT_STR, &job, "J", "only the entries of job J"},
        {"format", CND_OPT_STR, &format, "jsonl|csv",
         "JSON Lines (the exact entry bytes, default) "
         "or CSV"},
        {"out", CND_OPT_STR, &out, "FILE", "where to write (default: stdout)"},
        {0}};
    const cnd_cli_t cli = {"condenser audit export DB [--job J] [--format jsonl|csv] [--out FILE]",
                           "Exports audit entries in seq order. JSON Lines lines are the signed "
                           "entry bytes themselves; CSV has one column per envelope field. Verify "
                           "the log first: export checks each entry's form, not the tree.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_audit_format_t fmt;
    if (strcmp(format, "jsonl") == 0)
        fmt = CND_AUDIT_FMT_JSONL;
    else if (strcmp(format, "csv") == 0)
        fmt = CND_AUDIT_FMT_CSV;
    else
        return cnd_errf(CND_EINVAL, "--format: '%s' is not jsonl or csv", format);
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_buf_t b;
    cnd_buf_init(&b);
    uint64_t n = 0;
    rc = cnd_audit_export(&b, log, job, fmt, &n);
    cnd_audit_close(&log);
    if (!rc) rc = s_write_out(out, &b, "export");
    if (!rc) fprintf(stderr, "exported %llu entries\n", (unsigned long long)n);
    cnd_buf_free(&b);
    return rc;
}

static int s_reconcile(int argc, char **argv)
{
    const char *site = NULL, *coord = NULL, *job = NULL, *akey = NULL, *ckey = NULL;
    int allow = 0;
    const cnd_opt_t opts[] = {
        {"site", CND_OPT_STR, &site, "FPR",
         "the site's fingerprint (default: of the key that "
         "signs AGENT_DB)"},
        {"coordinator", CND_OPT_STR, &coord, "FPR",
         "the coordinator's fingerprint (default: of the "
         "key that signs COORDINATOR_DB)"},
        {"job", CND_OPT_STR, &job, "J", "only messages of job J"},
        {"agent-key", CND_OPT_STR, &akey, "PUB",
         "pin the site's public key for verifying AGENT_DB"},
        {"coordinator-key", CND_OPT_STR, &ckey, "PUB", "pin the coordinator's public key"},
        {"allow-undelivered", CND_OPT_FLAG, &allow, NULL,
         "do not fail on messages the site sent that "
         "never arrived (a site killed mid-send)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser audit reconcile AGENT_DB COORDINATOR_DB [options]",
        "Verifies both logs, then checks that every message the site logged as sent (egress) "
        "matches, by SHA-256 and size, one the coordinator logged as received from that site "
        "(ingress), and that nothing else from the site reached the coordinator.",
        opts, 2, 2};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_audit_t *a = NULL, *c = NULL;
    if ((rc = cnd_audit_open_readonly(&a, pos[0]))) return rc;
    if ((rc = cnd_audit_open_readonly(&c, pos[1]))) {
        cnd_audit_close(&a);
        return rc;
    }
    int bad_logs = 0;
    const char *paths[2] = {pos[0], pos[1]};
    cnd_audit_t *logs[2] = {a, c};
    const char *keys[2] = {akey, ckey};
    for (int i = 0; i < 2 && !rc; i++) {
        cnd_audit_verdict_t v;
        if ((rc = s_run_verify(&v, logs[i], keys[i], NULL,
                               i ? "verifying coordinator log" : "verifying agent log")))
            break;
        printf("%s log %s: %s\n", i ? "coordinator" : "site", paths[i], v.summary);
        if (!v.ok) {
            bad_logs++;
            s_print_verdict(stdout, &v);
        }
        cnd_audit_verdict_free(&v);
    }
    cnd_audit_reconcile_t r;
    if (!rc) rc = cnd_audit_reconcile(&r, a, c, site, coord, job);
    cnd_audit_close(&a);
    cnd_audit_close(&c);
    if (rc) return rc;
    printf("site %.16s... -> coordinator %.16s...\n", r.site, r.coordinator);
    printf("sent by the site:        %llu messages, %llu bytes\n", (unsigned long long)r.sent,
           (unsigned long long)r.sent_bytes);
    printf("received from the site:  %llu messages, %llu bytes\n", (unsigned long long)r.received,
           (unsigned long long)r.received_bytes);
    printf("matched:                 %llu\n", (unsigned long long)r.matched);
    printf("sent, never received:    %llu\n", (unsigned long long)r.not_received);
    printf("received, never sent:    %llu\n", (unsigned long long)r.not_sent);
    size_t nf = r.n_findings < 200 ? r.n_findings : 200;
    for (size_t i = 0; i < nf; i++) printf("  %s\n", r.findings[i]);
    if (r.n_findings > nf) printf("  ... and %zu more\n", r.n_findings - nf);
    int fail = bad_logs || r.not_sent || (r.not_received && !allow);
    printf("%s\n", fail ? "RECONCILE FAILED" : "RECONCILED");
    if (fail)
        rc = cnd_errf(CND_ECORRUPT,
                      "reconcile failed: %llu received but not sent, %llu sent but "
                      "not received, %d log(s) failed verification",
                      (unsigned long long)r.not_sent, (unsigned long long)r.not_received, bad_logs);
    cnd_audit_reconcile_free(&r);
    return rc;
}

static int s_report(int argc, char **argv)
{
    const char *job = NULL, *out = NULL, *key = NULL, *kept = NULL;
    const cnd_opt_t opts[] = {
        {"job", CND_OPT_STR, &job, "J", "the job to report on (required)"},
        {"out", CND_OPT_STR, &out, "FILE", "the HTML file to write (required)"},
        {"key", CND_OPT_STR, &key, "PUB", "the node's public key for the verification shown"},
        {"checkpoint", CND_OPT_STR, &kept, "FILE[,FILE]", "kept checkpoints to verify against"},
        {0}};
    const cnd_cli_t cli = {
        "condenser audit report DB --job J --out report.html [--key PUB] [--checkpoint FILE]",
        "Writes a self-contained HTML page (no network, no script) about job J from the log "
        "entries alone: the recipe, accuracy and loss per round, participation and dropouts, "
        "bytes that left each site, model versions with digests, rollouts with per-wave "
        "outcomes, and the result of verifying the log.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!job || !out) return cnd_errf(CND_EINVAL, "--job J and --out FILE are required");
    cnd_audit_t *log = NULL;
    if ((rc = cnd_audit_open_readonly(&log, pos[0]))) return rc;
    cnd_audit_verdict_t v;
    if ((rc = s_run_verify(&v, log, key, kept, "verifying"))) {
        cnd_audit_close(&log);
        return rc;
    }
    cnd_buf_t b;
    cnd_buf_init(&b);
    const char *base = strrchr(pos[0], '/');
    rc = cnd_audit_report_html(&b, log, job, &v, base ? base + 1 : pos[0]);
    cnd_audit_close(&log);
    if (!rc) rc = s_write_out(out, &b, "report");
    if (!rc) printf("verification: %s\nreport: %s\n", v.summary, out);
    cnd_buf_free(&b);
    cnd_audit_verdict_free(&v);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} s_sub[] = {
    {"verify", s_verify, "check entries, tree, checkpoint signatures; name the first bad entry"},
    {"prove", s_prove, "write an inclusion or consistency proof file"},
    {"check-proof", s_check_proof, "check a proof file with the log's public key, no database"},
    {"checkpoint", s_checkpoint, "write the latest signed checkpoint, for an auditor to keep"},
    {"export", s_export, "export entries as JSON Lines or CSV"},
    {"reconcile", s_reconcile, "match a site's sent messages with what the coordinator received"},
    {"report", s_report, "write a self-contained HTML report about a job"},
    {"privacy", cnd_audit_privacy_cmd, "recompute a site's differential-privacy spend"},
};

int cnd_cmd_audit(int argc, char **argv)
{
    size_t n = sizeof s_sub / sizeof s_sub[0];
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(
            f, "usage: condenser audit <command> [options]   (condenser audit <command> --help)\n\n"
               "The auditor's tools for Condenser's tamper-evident logs. They read a copy of a\n"
               "log database offline and need only public keys. See docs/auditor-guide.md.\n\n"
               "commands:\n");
        for (size_t i = 0; i < n; i++) fprintf(f, "  %-12s %s\n", s_sub[i].name, s_sub[i].help);
        return argc < 2 ? cnd_errf(CND_EINVAL, "missing audit command") : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[1], s_sub[i].name) == 0) return s_sub[i].fn(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown audit command '%s' (try condenser audit --help)", argv[1]);
}
