/* test_audit_report.c: `condenser audit report` opened in headless Chromium, checking what the
 * browser shows: the verification result, one point per round in the accuracy and loss charts,
 * participation and dropouts, bytes per site, model digests, rollout waves, and that names from
 * the log are shown as text, not markup. Skipped (exit 77) when Chromium is not installed. */
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
        CHECK_EQ_INT(count_in(s, n, "<tr class=\"round\">"), rounds);
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
        CHECK_EQ_INT(count_in(dom, strlen(dom), "<tr class=\"wave\">"), 4);
        CHECK(strstr(dom, "<td>canary</td>") != NULL);
        CHECK(strstr(dom, "Rollout ro-1 of v1-int8") != NULL);
        /* each wave's time, from the log's own timestamps */
        CHECK(s && count_in(s, n, "<th>seconds</th>") == 1);
        CHECK(s && count_in(s, n, "<td>&ndash;</td><td>") == 0);
        CHECK(strstr(dom, "devices selected by <code>ward=icu</code>") != NULL);
        /* The recipe. */
        s = section(dom, "recipe", "</table>", &n);
        CHECK(count_in(s, n, "distill.alpha") == 1 && count_in(s, n, "fmnist-cnn-int8") == 1);
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
