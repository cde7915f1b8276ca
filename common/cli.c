/* cli.c: see cli.h. */
#include "cli.h"
#include "error.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The command line recorded by cnd_cli_record_argv(): a process-wide fact, set once by main(). */
static char **s_argv;
static int s_argc = -1;

int cnd_cli_record_argv(int argc, char **argv)
{
    if (argc < 0) return cnd_errf(CND_EINVAL, "negative argument count");
    char **copy = malloc(((size_t)argc + 1) * sizeof *copy);
    if (!copy) return CND_ENOMEM;
    if (argc) memcpy(copy, argv, (size_t)argc * sizeof *copy);
    copy[argc] = NULL;
    free(s_argv);
    s_argv = copy;
    s_argc = argc;
    return 0;
}

int cnd_cli_argv(const char *const **argv)
{
    *argv = (const char *const *)s_argv;
    return s_argv ? s_argc : -1;
}

void cnd_cli_help(const cnd_cli_t *cli)
{
    printf("usage: %s\n\n%s\n", cli->usage, cli->summary);
    if (!cli->opts || !cli->opts[0].name) return;
    printf("\noptions:\n");
    for (const cnd_opt_t *o = cli->opts; o->name; o++) {
        char left[64];
        if (o->kind == CND_OPT_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        printf("  %-26s %s\n", left, o->help ? o->help : "");
    }
    if (cli->config_section) {
        char what[96];
        snprintf(what, sizeof what, "read options from [%s] of an INI file", cli->config_section);
        printf("  %-26s %s\n", "--config FILE", what);
    }
    printf("  %-26s %s\n", "--help", "show this help and exit");
}

static int s_set(const cnd_opt_t *o, const char *val)
{
    char *end = NULL;
    int bounded = !(o->min == 0 && o->max == 0);
    switch (o->kind) {
    case CND_OPT_STR: *(const char **)o->dest = val; return 0;
    case CND_OPT_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end)
            return cnd_errf(CND_EINVAL, "--%s: '%s' is not an integer", o->name, val);
        if (bounded && (v < o->min || v > o->max))
            return cnd_errf(CND_EINVAL, "--%s: %ld is outside [%.0f, %.0f]", o->name, v, o->min,
                            o->max);
        *(long *)o->dest = v;
        return 0;
    }
    case CND_OPT_DBL: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v))
            return cnd_errf(CND_EINVAL, "--%s: '%s' is not a number", o->name, val);
        if (bounded && (v < o->min || v > o->max))
            return cnd_errf(CND_EINVAL, "--%s: %g is outside [%g, %g]", o->name, v, o->min, o->max);
        *(double *)o->dest = v;
        return 0;
    }
    case CND_OPT_FLAG: *(int *)o->dest = 1; return 0;
    }
    return CND_EINVAL;
}

/* --- configuration files -------------------------------------------------------------------- */

/* Config values that STR options point at: kept for the life of the process (reachable). */
static char **s_conf_vals;
static size_t s_conf_n;

typedef struct {
    const cnd_cli_t *cli;
    uint64_t seen; /* options set by the file, by index (a key set twice is an error) */
    char err[600];
} s_conf_t;

static const cnd_opt_t *s_opt_by_key(const cnd_opt_t *opts, const char *key, size_t *idx)
{
    for (size_t i = 0; opts && opts[i].name; i++) {
        const char *a = opts[i].name, *b = key;
        while (*a && (*a == *b || (*a == '-' && *b == '_'))) a++, b++;
        if (!*a && !*b) {
            *idx = i;
            return &opts[i];
        }
    }
    return NULL;
}

static int s_conf_set(s_conf_t *x, const cnd_opt_t *o, const char *key, const char *val)
{
    if (o->kind == CND_OPT_FLAG) {
        int on =
            !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on") || !strcmp(val, "1");
        int off =
            !strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "off") || !strcmp(val, "0");
        if (!on && !off) {
            snprintf(x->err, sizeof x->err, "%s: '%s' is not true or false", key, val);
            return 0;
        }
        *(int *)o->dest = on;
        return 1;
    }
    const char *v = val;
    if (o->kind == CND_OPT_STR) {
        char **grown = realloc(s_conf_vals, (s_conf_n + 1) * sizeof *grown);
        char *copy = strdup(val);
        if (grown) s_conf_vals = grown;
        if (!grown || !copy) {
            free(copy);
            snprintf(x->err, sizeof x->err, "%s: out of memory", key);
            return 0;
        }
        s_conf_vals[s_conf_n++] = copy;
        v = copy;
    }
    if (s_set(o, v)) {
        snprintf(x->err, sizeof x->err, "%s: %s", key, cnd_err_detail());
        cnd_err_clear();
        return 0;
    }
    return 1;
}

/* inih's handler: returns 0 (stop; the line is the error's) on the first problem. */
static int s_conf_handler(void *user, const char *sec, const char *key, const char *val)
{
    s_conf_t *x = user;
    if (strcmp(sec, x->cli->config_section) != 0) {
        snprintf(x->err, sizeof x->err, "unknown section [%s] (this command reads [%s])", sec,
                 x->cli->config_section);
        return 0;
    }
    size_t idx = 0;
    const cnd_opt_t *o = s_opt_by_key(x->cli->opts, key, &idx);
    if (!o || idx >= 64) {
        snprintf(x->err, sizeof x->err, "unknown key '%s' in [%s] (the command's options: --help)",
                 key, sec);
        return 0;
    }
    if (x->seen & ((uint64_t)1 << idx)) {
        snprintf(x->err, sizeof x->err, "%s is set twice", key);
        return 0;
    }
    x->seen |= (uint64_t)1 << idx;
    return s_conf_set(x, o, key, val);
}

static int s_conf_load(const cnd_cli_t *cli, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cnd_errf(CND_EIO, "%s: cannot open the configuration: %s", path, strerror(errno));
    s_conf_t x;
    memset(&x, 0, sizeof x);
    x.cli = cli;
    int line = ini_parse_file(f, s_conf_handler, &x);
    fclose(f);
    if (line > 0 && x.err[0]) return cnd_errf(CND_EINVAL, "%s:%d: %s", path, line, x.err);
    if (line > 0) return cnd_errf(CND_EINVAL, "%s:%d: malformed line", path, line);
    if (line < 0) return cnd_errf(CND_EIO, "%s: cannot read", path);
    return 0;
}

/* Finds --config FILE / --config=FILE before "--"; *path NULL when absent. */
static int s_conf_arg(int argc, char **argv, const char **path)
{
    *path = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) return cnd_errf(CND_EINVAL, "--config needs a value (FILE)");
            *path = argv[++i];
        }
    }
    return 0;
}

/* Whether a is "--NAME" or "--NAME=..." for one of cli's options (or --config). */
static int s_is_option(const cnd_cli_t *cli, const char *a)
{
    if (a[0] != '-' || a[1] != '-' || !a[2]) return 0;
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    if (cli->config_section && nlen == 6 && strncmp(name, "config", 6) == 0) return 1;
    for (const cnd_opt_t *o = cli->opts; o && o->name; o++)
        if (strlen(o->name) == nlen && strncmp(o->name, name, nlen) == 0) return 1;
    return 0;
}

int cnd_cli_parse(const cnd_cli_t *cli, int argc, char **argv, int *npos, char ***pos)
{
    if (cli->config_section) {
        const char *conf = NULL;
        int rc = s_conf_arg(argc, argv, &conf);
        if (!rc && conf) rc = s_conf_load(cli, conf);
        if (rc) return rc;
    }
    /* Positionals are compacted into argv[1..] in place; argv strings are not modified. */
    int np = 0;
    char **out = argv + 1;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            cnd_cli_help(cli);
            return 1;
        }
        if (only_pos || a[0] != '-' || a[1] != '-') {
            if (!only_pos && a[0] == '-' && a[1] != 0)
                return cnd_errf(CND_EINVAL, "unknown option '%s' (try --help)", a);
            out[np++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (cli->config_section && nlen == 6 && strncmp(name, "config", 6) == 0) {
            if (!eq) i++; /* read above */
            continue;
        }
        const cnd_opt_t *o = cli->opts;
        for (; o && o->name; o++)
            if (strlen(o->name) == nlen && strncmp(o->name, name, nlen) == 0) break;
        if (!o || !o->name)
            return cnd_errf(CND_EINVAL, "unknown option '--%.*s' (try --help)", (int)nlen, name);
        const char *val = NULL;
        if (o->kind == CND_OPT_FLAG) {
            if (eq) return cnd_errf(CND_EINVAL, "--%s takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return cnd_errf(CND_EINVAL, "--%s needs a value (%s)", o->name,
                                o->metavar ? o->metavar : "VALUE");
            val = argv[++i];
            /* A value that is itself an option means the value was forgotten: "--out --help"
             * asks for help, "--out --json" must not write to a file named "--json". A value
             * that really starts with "--" is still given as --out=--json. */
            if (strcmp(val, "--help") == 0 || strcmp(val, "-h") == 0) {
                cnd_cli_help(cli);
                return 1;
            }
            if (s_is_option(cli, val))
                return cnd_errf(CND_EINVAL,
                                "--%s needs a value (%s), found the option '%s' (write --%s=%s if "
                                "you mean that value)",
                                o->name, o->metavar ? o->metavar : "VALUE", val, o->name, val);
        }
        int rc = s_set(o, val);
        if (rc) return rc;
    }
    if (np < cli->min_pos) return cnd_errf(CND_EINVAL, "missing argument: %s", cli->usage);
    if (np > cli->max_pos)
        return cnd_errf(CND_EINVAL, "unexpected argument '%s' (try --help)", out[cli->max_pos]);
    *npos = np;
    *pos = out;
    return 0;
}
