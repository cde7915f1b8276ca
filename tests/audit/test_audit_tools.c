/* test_audit_tools.c: the `condenser audit` commands as an auditor runs them, on a coordinator
 * log of a whole job and a site agent's log: verify (and its exit status), checkpoint, prove and
 * check-proof (and tampered proofs failing), export, reconcile (catching a message the
 * coordinator received that the site never sent), report; plus the public key formats. */
#include "audit_fixture.h"
#include "audit_reconcile.h"
#include "audit_verify.h"
#include "check.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];
static const char *g_bin;

/* Runs a shell command, capturing stdout and stderr into out (NUL-terminated, truncated to
 * cap). Returns the exit status, or -1. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4400];
    snprintf(full, sizeof full, "cd '%s' && { %s ; } 2>&1", g_dir, cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    if (out && cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = 0;
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *name, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static char *read_text(const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    return b;
}

static fx_key_t coord, sites[3];

static cnd_audit_t *open_in(const char *name, const fx_key_t *k, const char *origin)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open(&log, p, k->sk, origin) == 0);
    return log;
}

static void build_logs(void)
{
    fx_key(&coord, 11);
    for (int s = 0; s < 3; s++) fx_key(&sites[s], (uint8_t)(21 + s));
    cnd_audit_t *c = open_in("coord.db", &coord, "condenser/coordinator-test");
    fx_job_log(c, &coord, sites, "job-42", 5, 2);
    cnd_audit_close(&c);
    /* Site 0's own log: every message it sent to the coordinator, the same bytes. */
    cnd_audit_t *a = open_in("agent0.db", &sites[0], "condenser/site-0");
    for (int r = 1; r <= 5; r++)
        for (int m = 0; m < 2; m++) {
            char body[1100], msg[64];
            memset(body, 'x', 1000);
            snprintf(msg, sizeof msg, "r%d s0 m%d", r, m);
            memcpy(body, msg, strlen(msg));
            CHECK(cnd_audit_log_message(a, 'E', sites[0].fpr, coord.fpr, "job-42", "masked_update",
                                        r, body, 1000, NULL) == 0);
        }
    CHECK(cnd_audit_checkpoint(a, "round.end", NULL) == 0);
    cnd_audit_close(&a);
    char hex[65];
    cnd_hex(hex, coord.pk, 32);
    write_file("coord.pub", hex, 64);
    cnd_hex(hex, sites[0].pk, 32);
    write_file("site0.pub", hex, 65 - 1);
}

static void test_keys(void)
{
    uint8_t pk[32];
    char hex[65];
    cnd_hex(hex, coord.pk, 32);
    CHECK(cnd_audit_read_public_key(pk, hex) == 0 && !memcmp(pk, coord.pk, 32));
    char p[512];
    snprintf(p, sizeof p, "%s/coord.pub", g_dir);
    memset(pk, 0, 32);
    CHECK(cnd_audit_read_public_key(pk, p) == 0 && !memcmp(pk, coord.pk, 32));
    write_file("raw.pub", coord.pk, 32);
    snprintf(p, sizeof p, "%s/raw.pub", g_dir);
    memset(pk, 0, 32);
    CHECK(cnd_audit_read_public_key(pk, p) == 0 && !memcmp(pk, coord.pk, 32));
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, coord.pk, 32, sodium_base64_VARIANT_ORIGINAL);
    char line[96];
    snprintf(line, sizeof line, "ed25519:%s\n", b64);
    write_file("b64.pub", line, strlen(line));
    snprintf(p, sizeof p, "%s/b64.pub", g_dir);
    memset(pk, 0, 32);
    CHECK(cnd_audit_read_public_key(pk, p) == 0 && !memcmp(pk, coord.pk, 32));
    /* a node's own identity.pub, as `condenser keygen` and `coordinator init` write it */
    snprintf(line, sizeof line, "condenser-ed25519 %s\n", hex);
    write_file("identity.pub", line, strlen(line));
    snprintf(p, sizeof p, "%s/identity.pub", g_dir);
    memset(pk, 0, 32);
    CHECK(cnd_audit_read_public_key(pk, p) == 0 && !memcmp(pk, coord.pk, 32));
    EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, coord.pk, 32);
    BIO *bio = BIO_new(BIO_s_mem());
    CHECK(k && bio && PEM_write_bio_PUBKEY(bio, k) == 1);
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    write_file("coord.pem", pem, (size_t)n);
    BIO_free(bio);
    EVP_PKEY_free(k);
    snprintf(p, sizeof p, "%s/coord.pem", g_dir);
    memset(pk, 0, 32);
    CHECK(cnd_audit_read_public_key(pk, p) == 0 && !memcmp(pk, coord.pk, 32));
    write_file("junk.pub", "not a key\n", 10);
    snprintf(p, sizeof p, "%s/junk.pub", g_dir);
    CHECK(cnd_audit_read_public_key(pk, p) == CND_EFORMAT);
    CHECK(cnd_audit_read_public_key(pk, "/nonexistent/key") == CND_EIO);
}

static void test_verify_cli(void)
{
    char out[16384];
    CHECK(run(out, sizeof out, "%s audit verify coord.db --key coord.pub", g_bin) == 0);
    CHECK(strncmp(out, "OK:", 3) == 0);
    CHECK(run(out, sizeof out, "%s audit verify coord.db --key coord.pem --json", g_bin) == 0);
    CHECK(strstr(out, "\"ok\":true") && strstr(out, "\"first_bad\":null"));
    CHECK(run(out, sizeof out, "%s audit verify coord.db", g_bin) == 0);
    CHECK(strstr(out, "note: no key given") != NULL);
    CHECK(run(out, sizeof out, "%s audit verify coord.db --key site0.pub", g_bin) == 1);
    CHECK(strstr(out, "FAILED") && strstr(out, "signature does not verify"));
    CHECK(run(out, sizeof out, "%s audit verify --help", g_bin) == 0);
    CHECK(strstr(out, "usage: condenser audit verify") != NULL);
    CHECK(run(out, sizeof out, "%s audit verify nothere.db", g_bin) == 1);
    CHECK(strstr(out, "nothere.db") != NULL);
    write_file("notalog.db", "hello", 5);
    CHECK(run(out, sizeof out, "%s audit verify notalog.db", g_bin) != 0);
    CHECK(run(out, sizeof out, "%s audit frobnicate x", g_bin) == 2);
    /* A tampered copy: exit status 1 and the entry named. */
    CHECK(run(out, sizeof out,
              "cp coord.db bad.db && sqlite3 bad.db \"DROP TRIGGER audit_entry_no_update; UPDATE "
              "audit_entry SET entry = replace(entry, 'fmnist-cnn-int8', 'fmnist-cnn-int4') WHERE "
              "action = 'job.create'\" && %s audit verify bad.db --key coord.pub",
              g_bin) == 1);
    CHECK(strstr(out, "FAILED: ") && strstr(out, "first bad entry: 6"));
    CHECK(strstr(out, "entry 6: its bytes differ from the leaf hash") != NULL);
}

static void test_proofs_cli(void)
{
    char out[16384];
    /* Keep a checkpoint, let the log grow, prove consistency. */
    CHECK(run(out, sizeof out, "%s audit checkpoint coord.db --out kept.cp", g_bin) == 0);
    char *kept = read_text("kept.cp");
    CHECK(kept && strncmp(kept, "condenser/coordinator-test\n", 27) == 0 &&
          strstr(kept, "\xE2\x80\x94 "));
    free(kept);
    cnd_audit_t *c = open_in("coord.db", &coord, "condenser/coordinator-test");
    for (int i = 0; i < 9; i++)
        fx_add(c, coord.fpr, "admin.site.list", "", "job-42",
               "{\"command\":\"condenser site list\"}", NULL, NULL);
    CHECK(cnd_audit_checkpoint(c, "rollout.wave", NULL) == 0);
    cnd_audit_close(&c);
    CHECK(run(out, sizeof out, "%s audit prove coord.db --from-checkpoint kept.cp --out cons.json",
              g_bin) == 0);
    CHECK(run(out, sizeof out, "%s audit check-proof cons.json --key coord.pub", g_bin) == 0);
    CHECK(strstr(out, "OK: log condenser/coordinator-test's checkpoint of") &&
          strstr(out, "extends"));
    CHECK(run(out, sizeof out, "%s audit verify coord.db --key coord.pub --checkpoint kept.cp",
              g_bin) == 0);
    /* Tampered consistency proof: one hex digit of the path. */
    char *p = read_text("cons.json");
    CHECK(p != NULL);
    if (p) {
        char *h = strstr(p, "\"path\":[\"");
        CHECK(h != NULL);
        if (h) {
            h += 9;
            *h = *h == '0' ? '1' : '0';
            write_file("cons-bad.json", p, strlen(p));
            CHECK(run(out, sizeof out, "%s audit check-proof cons-bad.json --key coord.pub",
                      g_bin) == 1);
            CHECK(strstr(out, "does NOT extend") != NULL);
        }
        free(p);
    }
    /* Another node's key: its key ID is not the one the notes name. */
    CHECK(run(out, sizeof out, "%s audit check-proof cons.json --key site0.pub", g_bin) == 1);
    CHECK(strstr(out, "'old_checkpoint': its signature line has key ID") != NULL);
    CHECK(run(out, sizeof out, "%s audit check-proof cons.json", g_bin) == 2);

    /* Inclusion proofs of several entries. */
    for (int e = 0; e < 60; e += 19) {
        CHECK(run(out, sizeof out, "%s audit prove coord.db --entry %d --out inc.json", g_bin, e) ==
              0);
        CHECK(run(out, sizeof out, "%s audit check-proof inc.json --key coord.pub", g_bin) == 0);
        char want[64];
        snprintf(want, sizeof want, "OK: entry %d (", e);
        CHECK(strstr(out, want) != NULL);
    }
    CHECK(run(out, sizeof out, "%s audit prove coord.db --entry 6", g_bin) == 0);
    p = read_text("entry-6.proof.json");
    CHECK(p != NULL);
    if (p) {
        /* The recipe inside the proven entry altered: the proof no longer holds. */
        char *r = strstr(p, "fmnist-cnn-int8");
        CHECK(r != NULL);
        if (r) {
            r[14] = '4';
            write_file("inc-bad.json", p, strlen(p));
            CHECK(run(out, sizeof out, "%s audit check-proof inc-bad.json --key coord.pub",
                      g_bin) == 1);
            CHECK(strstr(out, "is NOT in the tree") != NULL);
            r[14] = '8';
        }
        /* The index changed. */
        char *ix = strstr(p, "\"index\":6");
        if (ix) {
            ix[8] = '7';
            write_file("inc-bad2.json", p, strlen(p));
            CHECK(run(out, sizeof out, "%s audit check-proof inc-bad2.json --key coord.pub",
                      g_bin) == 1);
        }
        free(p);
    }
    /* Entries past the latest checkpoint cannot be proven yet; nonexistent ones at all. */
    c = open_in("coord.db", &coord, "condenser/coordinator-test");
    uint64_t last = fx_add(c, coord.fpr, "admin.site.list", "", "job-42", "{}", NULL, NULL);
    cnd_audit_close(&c);
    CHECK(run(out, sizeof out, "%s audit prove coord.db --entry %llu", g_bin,
              (unsigned long long)last) == 1);
    CHECK(strstr(out, "not yet covered by a signed checkpoint") != NULL);
    CHECK(run(out, sizeof out, "%s audit prove coord.db --entry 99999", g_bin) == 1);
    CHECK(run(out, sizeof out, "%s audit prove coord.db", g_bin) == 2);
    /* A kept checkpoint the log no longer extends (history rewritten). */
    CHECK(run(out, sizeof out,
              "cp coord.db rw.db && sqlite3 rw.db \"DROP TRIGGER audit_entry_no_update; UPDATE "
              "audit_entry SET entry = replace(entry, 'round 2', 'round 9') WHERE seq < 20\" && "
              "%s audit prove rw.db --from-checkpoint kept.cp --out x.json",
              g_bin) == 1);
    CHECK(strstr(out, "not consistent") || strstr(out, "no longer match"));
    CHECK(run(out, sizeof out, "%s audit verify rw.db --key coord.pub --checkpoint kept.cp",
              g_bin) == 1);
}

static void test_export_cli(void)
{
    char out[16384];
    CHECK(run(out, sizeof out, "%s audit export coord.db --out all.jsonl", g_bin) == 0);
    char *all = read_text("all.jsonl");
    CHECK(all != NULL);
    if (!all) return;
    /* Each line is an entry's exact bytes: its leaf hash is the stored one. */
    char p[512];
    snprintf(p, sizeof p, "%s/coord.db", g_dir);
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open_readonly(&log, p) == 0);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(cnd_audit_db(log), "SELECT leaf_hash FROM audit_entry ORDER BY seq", -1, &st,
                       NULL);
    int lines = 0, same = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        uint8_t h[32];
        cnd_merkle_leaf_hash(h, line, (size_t)(nl - line));
        if (sqlite3_step(st) == SQLITE_ROW && !memcmp(h, sqlite3_column_blob(st, 0), 32)) same++;
        lines++;
    }
    sqlite3_finalize(st);
    uint64_t n = 0;
    CHECK(cnd_audit_size(log, &n) == 0);
    cnd_audit_close(&log);
    CHECK_EQ_INT(lines, n);
    CHECK_EQ_INT(same, n);
    free(all);
    CHECK(run(out, sizeof out, "%s audit export coord.db --job job-42 --format csv --out j.csv",
              g_bin) == 0);
    char *csv = read_text("j.csv");
    CHECK(csv &&
          !strncmp(csv,
                   "seq,time_utc,time_ms,actor,action,subject,job,details,digests,leaf_hash\r\n",
                   73));
    int rows = 0;
    for (char *q = csv; q && (q = strstr(q, "\r\n")); q += 2) rows++;
    CHECK(rows > 40);
    CHECK(csv &&
          strstr(csv,
                 ",\"job.create\",\"job-42\",\"job-42\",\"{\"\"name\"\":\"\"fmnist-cnn-int8\"\""));
    CHECK(csv && !strstr(csv, "\"rollout.wave\"")); /* rollout entries carry no job */
    free(csv);
    CHECK(run(out, sizeof out, "%s audit export coord.db --format xml", g_bin) == 2);
}

static void test_reconcile_cli(void)
{
    char out[16384];
    CHECK(run(out, sizeof out,
              "%s audit reconcile agent0.db coord.db --agent-key site0.pub "
              "--coordinator-key coord.pub",
              g_bin) == 0);
    CHECK(strstr(out, "matched:                 10") && strstr(out, "RECONCILED"));
    /* The coordinator received a message in site 0's name that site 0 never sent. */
    CHECK(run(out, sizeof out, "cp coord.db coord2.db && cp agent0.db agent2.db") == 0);
    cnd_audit_t *c = open_in("coord2.db", &coord, "condenser/coordinator-test");
    CHECK(cnd_audit_log_message(c, 'I', coord.fpr, sites[0].fpr, "job-42", "masked_update", 5,
                                "forged update", 13, NULL) == 0);
    CHECK(cnd_audit_checkpoint(c, "round.end", NULL) == 0);
    cnd_audit_close(&c);
    CHECK(run(out, sizeof out, "%s audit reconcile agent0.db coord2.db", g_bin) == 1);
    CHECK(strstr(out, "received, never sent:    1") && strstr(out, "NOT SENT: coordinator entry") &&
          strstr(out, "RECONCILE FAILED"));
    /* A message the site sent that never arrived: a failure unless undelivered ones are allowed. */
    cnd_audit_t *a = open_in("agent2.db", &sites[0], "condenser/site-0");
    CHECK(cnd_audit_log_message(a, 'E', sites[0].fpr, coord.fpr, "job-42", "unmask", 5, "lost", 4,
                                NULL) == 0);
    cnd_audit_close(&a);
    CHECK(run(out, sizeof out, "%s audit reconcile agent2.db coord.db", g_bin) == 1);
    CHECK(strstr(out, "NOT RECEIVED: site entry 10") != NULL);
    CHECK(run(out, sizeof out, "%s audit reconcile agent2.db coord.db --allow-undelivered",
              g_bin) == 0);
    /* Another site's log matches nothing of site 0's. */
    cnd_audit_reconcile_t r;
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/agent0.db", g_dir);
    snprintf(p2, sizeof p2, "%s/coord.db", g_dir);
    cnd_audit_t *la = NULL, *lc = NULL;
    CHECK(cnd_audit_open_readonly(&la, p1) == 0 && cnd_audit_open_readonly(&lc, p2) == 0);
    CHECK(cnd_audit_reconcile(&r, la, lc, sites[1].fpr, NULL, NULL) == 0);
    CHECK(r.sent == 10 && r.received == 10 && r.matched == 0 && r.not_sent == 10 &&
          r.not_received == 10);
    cnd_audit_reconcile_free(&r);
    CHECK(cnd_audit_reconcile(&r, la, lc, NULL, NULL, "job-other") == 0);
    CHECK(r.sent == 0 && r.received == 0);
    cnd_audit_reconcile_free(&r);
    cnd_audit_close(&la);
    cnd_audit_close(&lc);
}

static void test_report_cli(void)
{
    char out[16384];
    CHECK(run(out, sizeof out, "%s audit report coord.db --job job-42 --out r.html --key coord.pub",
              g_bin) == 0);
    CHECK(strstr(out, "verification: OK:") && strstr(out, "report: r.html"));
    char *html = read_text("r.html");
    CHECK(html != NULL);
    if (html) {
        CHECK(strstr(html, "data-result=\"passed\"") != NULL);
        CHECK(strstr(html, "riverside &lt;lab&gt;") != NULL);
        CHECK(strstr(html, "<lab>") == NULL);
        CHECK(strstr(html, "<script") == NULL && strstr(html, "http://") == NULL &&
              strstr(html, "https://") == NULL);
        CHECK(strstr(html, "data-points=\"5\"") != NULL);
        /* An admin entry of an older version (a reconstructed "command" string) is shown as
         * logged, and said to be one. */
        CHECK(strstr(html, "condenser job create --recipe r.ini</code> <span class=\"meta\">(as "
                           "logged before the exact command line was recorded") != NULL);
        free(html);
    }
    CHECK(run(out, sizeof out, "%s audit report coord.db --job nosuchjob --out x.html", g_bin) ==
          1);
    CHECK(strstr(out, "no entry in the log belongs to job 'nosuchjob'") != NULL);
    CHECK(run(out, sizeof out, "%s audit report coord.db --job job-42", g_bin) == 2);
}

int main(void)
{
    g_bin = getenv("CND_BIN");
    if (!g_bin) {
        fprintf(stderr, "CND_BIN is not set (run through ctest)\n");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/cnd_audit_tools_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    build_logs();
    test_keys();
    test_verify_cli();
    test_proofs_cli();
    test_export_cli();
    test_reconcile_cli();
    test_report_cli();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!check_failures && !getenv("CND_KEEP_TMP") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return check_result("test_audit_tools");
}
