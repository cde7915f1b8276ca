/*
 * cli.h: the option parser every subcommand uses, so that `--help`, `--opt value`,
 * `--opt=value`, range checks and error messages look the same everywhere.
 *
 * A subcommand describes its options in a table ending with {0}; cnd_cli_parse() fills the
 * destinations, collects positional arguments, and prints help generated from the table.
 *
 * Configuration files: a command whose cnd_cli_t names a config_section (the long-running
 * daemons: `coordinator run`, `rollout serve`) also takes `--config FILE`, an INI file (parsed
 * with Debian's libinih) whose section [config_section] sets any of the command's options by
 * its long name (`heartbeat-ms = 500` or `heartbeat_ms = 500`; flags take true/false, yes/no,
 * on/off, 1/0). The file is read first; options on the command line override it. Unknown
 * sections or keys, a key set twice, and malformed or out-of-range values are errors naming
 * FILE:LINE and the key, and the command does not start. Values are taken as written:
 * relative paths are relative to the working directory, as on the command line.
 */
#ifndef CND_CLI_H
#define CND_CLI_H

#include <stdint.h>

typedef enum {
    CND_OPT_STR,  /* const char **dest; points into argv */
    CND_OPT_INT,  /* long *dest; min/max checked */
    CND_OPT_DBL,  /* double *dest; min/max checked */
    CND_OPT_FLAG, /* int *dest; set to 1, takes no value */
} cnd_opt_kind_t;

typedef struct {
    const char *name;    /* long name without "--"; NULL ends the table */
    cnd_opt_kind_t kind; /* value type */
    void *dest;          /* where the value goes */
    const char *metavar; /* shown in help, e.g. "N"; NULL for flags */
    const char *help;    /* one line; defaults go here in words */
    double min, max;     /* inclusive bounds for INT/DBL; ignored when both are 0 */
} cnd_opt_t;

typedef struct {
    const char *usage;          /* "condenser train --data SPEC --arch SPEC [options]" */
    const char *summary;        /* one paragraph saying what the command does */
    const cnd_opt_t *opts;      /* option table */
    int min_pos, max_pos;       /* allowed positional argument counts */
    const char *config_section; /* non-NULL: --config FILE reads [config_section] (above) */
} cnd_cli_t;

/* Parses argv[1..argc) (argv[0] is the subcommand name). On success returns 0 and sets
 * *npos and *pos to the positional arguments (pointers into argv). Returns 1 after printing help
 * for --help/-h (the command should exit 0). Returns CND_EINVAL with a detail naming the option
 * or argument at fault. */
int cnd_cli_parse(const cnd_cli_t *cli, int argc, char **argv, int *npos, char ***pos);

/* Prints the help text for `cli` to stdout. */
void cnd_cli_help(const cnd_cli_t *cli);

/* Records the process's command line, as main() received it, for the audit entries of operator
 * commands (admin.*, which hold every word). main() calls it before dispatching. A copy of the
 * pointer array is kept, because cnd_cli_parse() compacts positional arguments in place (the
 * strings themselves are never modified). Returns 0 or CND_ENOMEM. */
int cnd_cli_record_argv(int argc, char **argv);

/* The recorded command line: sets *argv (NULL-terminated, owned by this module) and returns
 * argc, or returns -1 with *argv = NULL when none was recorded (library use). */
int cnd_cli_argv(const char *const **argv);

#endif
