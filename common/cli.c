/* cli.c: see cli.h. */
#include "cli.h"
#include "error.h"

#include <errno.h>
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

int cnd_cli_parse(const cnd_cli_t *cli, int argc, char **argv, int *npos, char ***pos)
{
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
