/* test_audit_recipe.c: runs the "Verifying without Condenser" section of docs/auditor-guide.md
 * against real logs, so the guide stays true: the sqlite3 + sha256sum leaf recipe, and the
 * Python + openssl verifier script (extracted from the guide itself) on an intact log, a log
 * whose history was rewritten with every hash re-chained, and a log signed with another key.
 * Skipped (exit 77) when sqlite3, python3 or openssl is missing. */
#include "audit_fixture.h"
#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];

static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096], full[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd '%s' && {\n%s\n} 2>&1", g_dir, cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    char sink[1024];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The Python block between the independent-verifier markers of the guide. */
static int extract_script(const char *guide, const char *out_path)
{
    FILE *f = fopen(guide, "rb");
    if (!f) return -1;
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *a = strstr(buf, "<!-- independent-verifier:begin -->");
    char *b = a ? strstr(a, "<!-- independent-verifier:end -->") : NULL;
    if (!a || !b) return -1;
    a = strstr(a, "```python\n");
    if (!a || a > b) return -1;
    a += 10;
    char *e = strstr(a, "```");
    if (!e || e > b) return -1;
    FILE *o = fopen(out_path, "wb");
    if (!o) return -1;
    fwrite(a, 1, (size_t)(e - a), o);
    fclose(o);
    return 0;
}

int main(void)
{
    if (system("{ command -v sqlite3 && command -v python3 && command -v openssl && command -v "
               "sha256sum; } > /dev/null") != 0) {
        fprintf(stderr,
                "test_audit_recipe: sqlite3, python3, openssl or sha256sum missing; skipped\n");
        return 77;
    }
    const char *data = getenv("CND_TEST_DATA");
    if (!data) {
        fprintf(stderr, "CND_TEST_DATA is not set (run through ctest)\n");
        return 1;
    }
    /* CND_TEST_DATA is <source>/tests/data (which need not exist); the guide is in <source>/docs.
     */
    char guide[600];
    snprintf(guide, sizeof guide, "%s", data);
    char *t = strstr(guide, "/tests/data");
    if (!t) {
        fprintf(stderr, "CND_TEST_DATA does not end in /tests/data: %s\n", data);
        return 1;
    }
    snprintf(t, sizeof guide - (size_t)(t - guide), "/docs/auditor-guide.md");
    snprintf(g_dir, sizeof g_dir, "/tmp/cnd_audit_recipe_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    char script[600];
    snprintf(script, sizeof script, "%s/verify_log.py", g_dir);
    CHECK(extract_script(guide, script) == 0);

    fx_key_t coord, evil, sites[3];
    fx_key(&coord, 51);
    fx_key(&evil, 52);
    for (int s = 0; s < 3; s++) fx_key(&sites[s], (uint8_t)(61 + s));
    char p[512];
    snprintf(p, sizeof p, "%s/coordinator.db", g_dir);
    cnd_audit_t *log = NULL;
    CHECK(cnd_audit_open(&log, p, coord.sk, "condenser/recipe-test") == 0);
    if (!log) return check_result("test_audit_recipe");
    fx_job_log(log, &coord, sites, "job-r", 4, 2);
    cnd_audit_close(&log);
    char key[65], evil_key[65];
    cnd_hex(key, coord.pk, 32);
    cnd_hex(evil_key, evil.pk, 32);

    char out[8192];
    /* One entry's leaf hash, exactly as the guide says. */
    CHECK(sh(out, sizeof out,
             "sqlite3 coordinator.db \"SELECT writefile('entry-5.json', entry) FROM audit_entry "
             "WHERE seq = 5\" > /dev/null && a=$( ( printf '\\000'; cat entry-5.json ) | sha256sum "
             "| cut -d' ' -f1) && b=$(sqlite3 coordinator.db \"SELECT lower(hex(leaf_hash)) FROM "
             "audit_entry WHERE seq = 5\") && echo \"$a $b\" && test \"$a\" = \"$b\"") == 0);
    CHECK(strlen(out) > 64);

    /* The whole log. */
    int rc = sh(out, sizeof out, "python3 verify_log.py coordinator.db %s", key);
    CHECK(rc == 0);
    CHECK(strstr(out, "LOG OK") != NULL && strstr(out, "signature ok, root ok") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
    /* Wrong key: every signature fails. */
    CHECK(sh(out, sizeof out, "python3 verify_log.py coordinator.db %s", evil_key) == 1);
    CHECK(strstr(out, "signature BAD") && strstr(out, "LOG FAILED"));
    /* History rewritten with every later hash re-chained: only the signed roots catch it. */
    CHECK(sh(out, sizeof out,
             "cp coordinator.db forged.db && python3 - <<'EOF'\n"
             "import hashlib, sqlite3, json\n"
             "db = sqlite3.connect('forged.db')\n"
             "db.executescript('DROP TRIGGER audit_entry_no_update')\n"
             "H = lambda b: hashlib.sha256(b).digest()\n"
             "rows = db.execute('SELECT seq, entry FROM audit_entry ORDER BY seq').fetchall()\n"
             "leaves = []\n"
             "def root(l):\n"
             "    if not l: return H(b'')\n"
             "    if len(l) == 1: return l[0]\n"
             "    k = 1 << ((len(l) - 1).bit_length() - 1)\n"
             "    return H(b'\\x01' + root(l[:k]) + root(l[k:]))\n"
             "for seq, text in rows:\n"
             "    if seq == 10: text = text.replace('\"size\":1000', '\"size\":1001')\n"
             "    if seq > 10:\n"
             "        e = json.loads(text); old = e['prev_root']\n"
             "        text = text.replace(old, root(leaves).hex())\n"
             "    leaf = H(b'\\x00' + text.encode())\n"
             "    db.execute('UPDATE audit_entry SET entry = ?, leaf_hash = ? WHERE seq = ?', "
             "(text, leaf, seq))\n"
             "    leaves.append(leaf)\n"
             "db.commit()\n"
             "EOF\n") == 0);
    CHECK(sh(out, sizeof out, "python3 verify_log.py forged.db %s", key) == 1);
    CHECK(strstr(out, "DOES NOT MATCH THE ENTRIES") && strstr(out, "LOG FAILED"));
    CHECK(strstr(out, "out of place or changed") == NULL); /* the chain itself was forged well */
    /* Condenser agrees, and locates it to a checkpoint interval. */
    const char *bin = getenv("CND_BIN");
    if (bin) {
        CHECK(sh(out, sizeof out, "%s audit verify forged.db --key %s", bin, key) == 1);
        CHECK(strstr(out, "first bad entry: one of") != NULL);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!check_failures && !getenv("CND_KEEP_TMP") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return check_result("test_audit_recipe");
}
