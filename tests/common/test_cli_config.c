/* test_cli_config.c: --config FILE for commands with a config section (cli.h): the file sets
 * options by long name (dashes or underscores), the command line overrides it, and every bad
 * file is an error naming FILE:LINE and the key, leaving the options as they were. */
#include "check.h"
#include "cli.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *g_dir, *g_endpoint;
static long g_hb;
static double g_max;
static int g_quiet;

static const cnd_opt_t g_opts[] = {
    {"dir", CND_OPT_STR, &g_dir, "DIR", "directory"},
    {"endpoint", CND_OPT_STR, &g_endpoint, "EP", "where to listen"},
    {"heartbeat-ms", CND_OPT_INT, &g_hb, "MS", "heartbeat", 100, 3600000},
    {"max-seconds", CND_OPT_DBL, &g_max, "S", "stop after", 0, 1e9},
    {"quiet", CND_OPT_FLAG, &g_quiet, NULL, "no progress"},
    {0}};
static const cnd_cli_t g_cli = {"test run [options]", "a test command", g_opts, 0, 0, "daemon"};
static const cnd_cli_t g_plain = {"test plain [options]", "no config", g_opts, 0, 0};
static char g_path[64];

static void s_defaults(void)
{
    g_dir = ".";
    g_endpoint = "tcp://127.0.0.1:1";
    g_hb = 2000;
    g_max = 0;
    g_quiet = 0;
}

/* Writes text to the config file and parses argv (NULL-terminated) with it. */
static int s_parse(const cnd_cli_t *cli, const char *text, const char *const *args)
{
    FILE *f = fopen(g_path, "w");
    if (!f) return -100;
    fputs(text, f);
    fclose(f);
    s_defaults();
    char *argv[16];
    int argc = 0;
    argv[argc++] = "run";
    for (int i = 0; args && args[i] && argc < 15; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    int npos;
    char **pos;
    cnd_err_clear();
    return cnd_cli_parse(cli, argc, argv, &npos, &pos);
}

static int s_err_has(const char *what)
{
    int ok = strstr(cnd_err_detail(), what) != NULL;
    if (!ok) fprintf(stderr, "error '%s' lacks '%s'\n", cnd_err_detail(), what);
    return ok;
}

int main(void)
{
    snprintf(g_path, sizeof g_path, "/tmp/cnd_cli_config_%ld.ini", (long)getpid());
    const char *with[] = {"--config", g_path, NULL};
    const char ok[] = "; the coordinator\n[daemon]\ndir = /var/lib/condenser\n"
                      "heartbeat_ms = 500\nmax-seconds = 2.5\nquiet = yes\n";
    CHECK_EQ_INT(s_parse(&g_cli, ok, with), 0);
    CHECK(strcmp(g_dir, "/var/lib/condenser") == 0);
    CHECK_EQ_INT(g_hb, 500);
    CHECK(g_max == 2.5);
    CHECK_EQ_INT(g_quiet, 1);
    CHECK(strcmp(g_endpoint, "tcp://127.0.0.1:1") == 0); /* not in the file: the default */

    /* The command line overrides the file, before or after --config; --config=FILE works. */
    const char *over[] = {"--heartbeat-ms", "700", "--config=", NULL};
    char eq[96];
    snprintf(eq, sizeof eq, "--config=%s", g_path);
    over[2] = eq;
    const char *over2[] = {"--config", g_path, "--dir", "/srv/c", NULL};
    CHECK_EQ_INT(s_parse(&g_cli, ok, over), 0);
    CHECK_EQ_INT(g_hb, 700);
    CHECK(strcmp(g_dir, "/var/lib/condenser") == 0);
    CHECK_EQ_INT(s_parse(&g_cli, ok, over2), 0);
    CHECK(strcmp(g_dir, "/srv/c") == 0);
    CHECK_EQ_INT(g_hb, 500);
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nquiet = off\n", with), 0);
    CHECK_EQ_INT(g_quiet, 0);

    /* Errors name FILE:LINE and the key. */
    char at[96];
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\ndir = /a\nhaertbeat_ms = 5\n", with), CND_EINVAL);
    snprintf(at, sizeof at, "%s:3:", g_path);
    CHECK(s_err_has(at) && s_err_has("unknown key 'haertbeat_ms'"));
    CHECK_EQ_INT(s_parse(&g_cli, "[agent]\nname = x\n", with), CND_EINVAL);
    CHECK(s_err_has("unknown section [agent]"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nheartbeat_ms = 50\n", with), CND_EINVAL);
    snprintf(at, sizeof at, "%s:2:", g_path);
    CHECK(s_err_has(at) && s_err_has("outside [100, 3600000]"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nheartbeat_ms = often\n", with), CND_EINVAL);
    CHECK(s_err_has("'often' is not an integer"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nmax_seconds = nan\n", with), CND_EINVAL);
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nquiet = maybe\n", with), CND_EINVAL);
    CHECK(s_err_has("quiet: 'maybe' is not true or false"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\ndir = /a\ndir = /b\n", with), CND_EINVAL);
    snprintf(at, sizeof at, "%s:3:", g_path);
    CHECK(s_err_has(at) && s_err_has("dir is set twice"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nthis line has no equals sign\n", with), CND_EINVAL);
    CHECK(s_err_has("malformed line"));
    CHECK_EQ_INT(s_parse(&g_cli, "[daemon]\nconfig = other.ini\n", with), CND_EINVAL);
    const char *missing[] = {"--config", "/nonexistent/condenser.ini", NULL};
    CHECK_EQ_INT(s_parse(&g_cli, ok, missing), CND_EIO);
    CHECK(s_err_has("/nonexistent/condenser.ini: cannot open the configuration"));
    const char *novalue[] = {"--config", NULL};
    CHECK_EQ_INT(s_parse(&g_cli, ok, novalue), CND_EINVAL);
    /* A command without a config section has no --config. */
    CHECK_EQ_INT(s_parse(&g_plain, ok, with), CND_EINVAL);
    CHECK(s_err_has("unknown option '--config'"));
    /* An option's value that is itself an option is a forgotten value, not a directory named
     * "--help" (keygen --out --help once created one): --help there prints help, a known option
     * is refused, and --dir=--quiet still sets the literal value. */
    FILE *devnull = freopen("/dev/null", "w", stdout);
    (void)devnull;
    const char *help_as_value[] = {"--dir", "--help", NULL};
    CHECK_EQ_INT(s_parse(&g_plain, "", help_as_value), 1);
    CHECK(strcmp(g_dir, ".") == 0);
    const char *opt_as_value[] = {"--dir", "--quiet", NULL};
    CHECK_EQ_INT(s_parse(&g_plain, "", opt_as_value), CND_EINVAL);
    CHECK(s_err_has("--dir needs a value (DIR), found the option '--quiet'"));
    CHECK_EQ_INT(g_quiet, 0);
    const char *literal[] = {"--dir=--quiet", NULL};
    CHECK_EQ_INT(s_parse(&g_plain, "", literal), 0);
    CHECK(strcmp(g_dir, "--quiet") == 0);
    const char *dash_value[] = {"--max-seconds", "-1", NULL}; /* not an option: a value */
    CHECK_EQ_INT(s_parse(&g_plain, "", dash_value), CND_EINVAL);
    CHECK(!s_err_has("needs a value"));
    unlink(g_path);
    return check_result("test_cli_config");
}
