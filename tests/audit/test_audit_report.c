/* test_audit_report.c: `condenser audit report` opened in headless Chromium, checking what the
 * browser shows: the verification result, one point per round in the accuracy and loss charts,
 * participation and dropouts, bytes per site, model digests, rollout waves, and that names from
 * the log are shown as text, not markup. Then entries are appended after the last signed
 * checkpoint (the unsigned tail): every row, point, bar and total drawn from them is marked
 * unsigned and nothing else is, and the page says which checkpoint covers which entries.
 * Skipped (exit 77) when Chromium is not installed. */
#include "audit_fixture.h"
#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SKIP 77

static char g_dir[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096], full[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd '%s' && { %s ; }", g_dir, cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *name)
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

/* Occurrences of needle in s[0..len). */
static int count_in(const char *s, size_t len, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), needle, nl)); p += nl) n++;
    return n;
}

/* The text between the element with id `id` and the next `end` tag. */
static const char *section(const char *dom, const char *id, const char *end, size_t *len)
{
    char pat[128];
    snprintf(pat, sizeof pat, "id=\"%s\"", id);
    const char *a = strstr(dom, pat);
    if (!a) {
        *len = 0;
        return "";
    }
    const char *b = strstr(a, end);
    *len = b ? (size_t)(b - a) : strlen(a);
    return a;
}

/* Renders html_name in Chromium and returns the DOM it built. */
static char *render(const char *html_name, const char *dom_name)
{
    int rc = sh("profile=$(mktemp -d) && timeout 90 chromium --headless --no-sandbox --disable-gpu "
                "--disable-background-networking --disable-component-update --disable-sync "
                "--no-first-run --user-data-dir=\"$profile\" --dump-dom \"file://$PWD/%s\" > %s "
                "2> chromium.log; r=$?; rm -rf \"$profile\"; exit $r",
                html_name, dom_name);
    CHECK(rc == 0);
    return slurp(dom_name);
}

int main(void)
{
    if (system("command -v chromium > /dev/null 2>&1") != 0) {
        fprintf(stderr, "test_audit_report: chromium is not installed; skipped\n");
        return SKIP;
    }
    const char *bin = getenv("CND_BIN");
    if (!bin) {
        fprintf(stderr, "CND_BIN is not set (run through ctest)\n");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/cnd_audit_report_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;

    fx_key_t coord, sites[3];
    fx_key(&coord, 31);
    for (int s = 0; s < 3; s++) fx_key(&sites[s], (uint8_t)(41 + s));
    char p[512];
    snprintf(p, sizeof p, "%s/coord.db", g_dir);
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open(&log, p, coord.sk, "condenser/report-test") == 0);
    if (!log) return check_result("test_audit_report");
    const int rounds = 7;
    fx_job_log(log, &coord, sites, "job-7", rounds, 3);
    cnd_audit_close(&log);
    char hex[65];
    FILE *f = fopen(strcat(strcpy(p, g_dir), "/coord.pub"), "w");
    CHECK(f && fputs(cnd_hex(hex, coord.pk, 32), f) >= 0);
    if (f) fclose(f);

    CHECK(sh("%s audit report coord.db --job job-7 --out report.html --key coord.pub > /dev/null",
             bin) == 0);
    char *dom = render("report.html", "dom.html");
    CHECK(dom != NULL);
    if (dom) {
        size_t n;
        const char *s = section(dom, "verification", "</section>", &n);
        CHECK(count_in(s, n, "Verification: PASSED") == 1);
        CHECK(count_in(s, n, "class=\"passed\"") == 1);
        s = section(dom, "chart-accuracy", "</svg>", &n);
        CHECK_EQ_INT(count_in(s, n, "class=\"point\""), rounds);
        CHECK(count_in(s, n, "data-round=\"1\"") == 1 && count_in(s, n, "data-round=\"7\"") == 1);
        /* Round 2's accuracy as logged: 0.5 + 0.4 * (1 - 1/2). */
        CHECK(count_in(s, n, "data-round=\"2\" data-value=\"0.7\"") == 1);
        s = section(dom, "chart-loss", "</svg>", &n);
        CHECK_EQ_INT(count_in(s, n, "class=\"point\""), rounds);
        s = section(dom, "chart-participation", "</svg>", &n);
        CHECK_EQ_INT(count_in(s, n, "class=\"bar-participants\""), rounds);
        CHECK_EQ_INT(count_in(s, n, "class=\"bar-dropouts\""), 1);
        CHECK(count_in(s, n, "round 3: 1 dropouts") == 1);
        s = section(dom, "rounds-table", "</table>", &n);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"round\" data-entry="), rounds);
        /* Bytes per site: 3 messages per round of 1000 + 10 * site bytes; site 2 missed round 3. */
        s = section(dom, "bytes-table", "</table>", &n);
        CHECK(count_in(s, n, "st-marys-icu") == 1 && count_in(s, n, "data-bytes=\"21000\"") == 1);
        CHECK(count_in(s, n, "north-general") == 1 && count_in(s, n, "data-bytes=\"21210\"") == 1);
        CHECK(count_in(s, n, "riverside &lt;lab&gt;") == 1 &&
              count_in(s, n, "data-bytes=\"18360\"") == 1);
        CHECK(strstr(dom, "<lab>") == NULL); /* a name from the log never becomes markup */
        /* Model versions with their digests. */
        uint8_t d[32];
        cnd_sha256(d, "int8 model", 10);
        s = section(dom, "models-table", "</table>", &n);
        CHECK(count_in(s, n, cnd_hex(hex, d, 32)) == 1 && count_in(s, n, "v1-float") == 1);
        /* The rollout and its waves. */
        s = section(dom, "rollouts", "</section>", &n);
        CHECK_EQ_INT(count_in(dom, strlen(dom), "<tr class=\"wave\" data-entry="), 4);
        CHECK(strstr(dom, "<td>canary <span class=\"meta\">(entry ") != NULL);
        CHECK(strstr(dom, "Rollout ro-1 of v1-int8") != NULL);
        /* each wave's time, from the log's own timestamps */
        CHECK(s && count_in(s, n, "<th>seconds</th>") == 1);
        CHECK(s && count_in(s, n, "<td>&ndash;</td><td>") == 0);
        CHECK(strstr(dom, "devices selected by <code>ward=icu</code>") != NULL);
        /* The recipe. */
        s = section(dom, "recipe", "</table>", &n);
        CHECK(count_in(s, n, "distill.alpha") == 1 && count_in(s, n, "fmnist-cnn-int8") == 1);
        /* Every entry is signed: nothing is marked, and the page says so. */
        CHECK_EQ_INT(count_in(dom, strlen(dom), "class=\"unsigned-mark\""), 0);
        CHECK_EQ_INT(count_in(dom, strlen(dom), " unsigned\""), 0);
        CHECK_EQ_INT(count_in(dom, strlen(dom), "class=\"unsigned\""), 0);
        CHECK(strstr(dom, "nothing on this page is unsigned") != NULL);
        free(dom);
    }

    /* The unsigned tail: one more round, its messages and model, a wave, an operator command and
     * a refused message, all after the last signed checkpoint. */
    uint64_t covered = 0;
    snprintf(p, sizeof p, "%s/coord.db", g_dir);
    CHECK(cnd_audit_open(&log, p, coord.sk, "condenser/report-test") == 0);
    if (!log) return check_result("test_audit_report");
    CHECK(cnd_audit_size(log, &covered) == 0);
    char det[2048];
    snprintf(det, sizeof det,
             "{\"round\":8,\"status\":\"ok\",\"participants\":[\"%s\",\"%s\"],\"dropouts\":"
             "[\"%s\"],\"metrics\":{\"accuracy\":0.95,\"loss\":0.1,\"samples\":40000}}",
             sites[0].fpr, sites[1].fpr, sites[2].fpr);
    CHECK(cnd_audit_log_message(log, 'I', coord.fpr, sites[0].fpr, "job-7", "masked_update", 8,
                                "tail", 4, NULL) == 0);
    fx_add(log, coord.fpr, CND_AUDIT_ROUND_END, "round 8", "job-7", det, "aggregate", "r8");
    fx_add(log, coord.fpr, CND_AUDIT_MODEL_VERSION, "v2-int8", "job-7",
           "{\"version\":\"v2-int8\",\"format\":\"int8\",\"round\":8,\"size\":21034}", "model",
           "v2");
    fx_add(log, coord.fpr, CND_AUDIT_ROLLOUT_WAVE, "ro-1", "",
           "{\"rollout\":\"ro-1\",\"wave\":4,\"devices\":1,\"succeeded\":1,\"failed\":0,"
           "\"timed_out\":0,\"state\":\"done\"}",
           NULL, NULL);
    const char *argv[] = {"condenser", "job", "cancel", "job-7", "--reason", "tail test"};
    CHECK(cnd_audit_log_admin(log, "local:op", "job.cancel", 6, argv, "job-7", "job-7", "ok") == 0);
    fx_add(log, coord.fpr, CND_AUDIT_REJECT_MESSAGE, sites[1].fpr, "job-7",
           "{\"reason\":\"late\",\"type\":\"masked_update\"}", NULL, NULL);
    cnd_audit_close(&log);
    CHECK(sh("%s audit report coord.db --job job-7 --out tail.html --key coord.pub > /dev/null",
             bin) == 0);
    dom = render("tail.html", "tail-dom.html");
    CHECK(dom != NULL);
    if (dom) {
        size_t n, len = strlen(dom);
        char want[256];
        snprintf(want, sizeof want, "data-covered=\"%llu\" data-entries=\"%llu\"",
                 (unsigned long long)covered, (unsigned long long)covered + 6);
        CHECK(strstr(dom, want) != NULL);
        snprintf(want, sizeof want, "Entries 0..%llu of the log are covered by checkpoint #",
                 (unsigned long long)covered - 1);
        CHECK(strstr(dom, want) != NULL);
        snprintf(want, sizeof want, "reason job.end), the last signed checkpoint that verified");
        CHECK(strstr(dom, want) != NULL);
        snprintf(want, sizeof want, "Entries %llu..%llu were logged after it",
                 (unsigned long long)covered, (unsigned long long)covered + 5);
        CHECK(strstr(dom, want) != NULL);
        CHECK(strstr(dom, "Every number above comes from a signed entry") == NULL);
        const char *s = section(dom, "chart-accuracy", "</svg>", &n);
        CHECK_EQ_INT(count_in(s, n, "class=\"point\""), rounds);
        CHECK_EQ_INT(count_in(s, n, "class=\"point unsigned\""), 1);
        CHECK(count_in(s, n, "data-round=\"8\" data-value=\"0.95\"") == 1);
        s = section(dom, "chart-participation", "</svg>", &n);
        CHECK_EQ_INT(count_in(s, n, "class=\"bar-participants unsigned\""), 1);
        CHECK_EQ_INT(count_in(s, n, "class=\"bar-dropouts unsigned\""), 1);
        s = section(dom, "rounds-table", "</table>", &n);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"round\" data-entry="), rounds);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"round unsigned\" data-entry="), 1);
        CHECK_EQ_INT(count_in(s, n, "unsigned-mark"), 1);
        s = section(dom, "bytes-table", "</table>", &n);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"site unsigned\" data-unsigned=\"1\">"), 1);
        CHECK(count_in(s, n, "4 bytes in 1 message after the last signed checkpoint") == 1);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"site\" data-unsigned=\"0\">"), 2);
        s = section(dom, "models-table", "</table>", &n);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"model unsigned\""), 1);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"model\""), 2);
        CHECK_EQ_INT(count_in(dom, len, "<tr class=\"wave unsigned\""), 1);
        CHECK_EQ_INT(count_in(dom, len, "<tr class=\"wave\""), 4);
        s = section(dom, "events-table", "</table>", &n);
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"event unsigned\""), 2);
        CHECK(count_in(s, n, "condenser job cancel job-7 --reason 'tail test'</code>") == 1);
        CHECK(count_in(s, n, "<code class=\"argv unsigned\"") == 1);
        CHECK(strstr(dom, "id=\"rejected-messages\" class=\"unsigned\" data-unsigned=\"1\"") !=
              NULL);
        /* Each data-entry at or past `covered`, and only those, is marked unsigned. */
        int marked = 0, wrong = 0;
        for (const char *q = dom; (q = strstr(q, "data-entry=\"")); q++) {
            long long e = atoll(q + 12);
            const char *tag = q;
            while (tag > dom && *tag != '<') tag--;
            int u = memmem(tag, (size_t)(q - tag), "unsigned", 8) != NULL;
            marked += u;
            wrong += u != (e >= (long long)covered);
        }
        CHECK(marked >= 9);
        CHECK_EQ_INT(wrong, 0);
        free(dom);
    }
    /* The same report from a tampered log says so. */
    CHECK(sh("cp coord.db bad.db && sqlite3 bad.db \"DROP TRIGGER audit_entry_no_update; UPDATE "
             "audit_entry SET entry = replace(entry, ':60000}', ':90000}') "
             "WHERE action = 'round.end'\" && test $(sqlite3 bad.db \"SELECT count(*) FROM "
             "audit_entry WHERE entry LIKE '%%:90000}%%'\") -gt 0") == 0);
    CHECK(sh("%s audit report bad.db --job job-7 --out bad.html --key coord.pub > /dev/null",
             bin) == 0);
    dom = render("bad.html", "bad-dom.html");
    CHECK(dom != NULL);
    if (dom) {
        size_t n;
        const char *s = section(dom, "verification", "</section>", &n);
        CHECK(count_in(s, n, "Verification: FAILED") == 1);
        CHECK(count_in(s, n, "first bad entry: ") == 1);
        free(dom);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!check_failures && !getenv("CND_KEEP_TMP") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return check_result("test_audit_report");
}
