/*
 * main.c: the `condenser` executable. It only dispatches: each subcommand's code lives in the
 * folder of the part it belongs to (compress/cmd_train.c, crypto/cmd_keygen.c, ...), exposes
 * `int cnd_cmd_<name>(int argc, char **argv)` returning 0 or a negative CND_E* code, and leaves
 * the detail of a failure in cnd_err_detail(), which this file prints.
 */
#include "commands.h"
#include "error.h"

#include <stdio.h>
#include <string.h>

typedef int (*cnd_cmd_fn)(int argc, char **argv);


static const struct {
    const char *name;
    cnd_cmd_fn fn;
    const char *help;
} s_cmds[] = {
    {"train", cnd_cmd_train, "train a float model on a dataset"},
    {"eval", cnd_cmd_eval, "evaluate a model on a dataset"},
    {"info", cnd_cmd_info, "show a model's layers, parameters, bytes and MACs"},
    {"keygen", cnd_cmd_keygen, "create a node identity (Ed25519; X25519 form for CurveZMQ)"},
    {"ca", cnd_cmd_ca, "federation CA: init, issue, revoke, verify, list, crl"},
};

static void s_usage(FILE *f)
{
    fprintf(f, "usage: condenser <command> [options]   (condenser <command> --help for details)\n\n"
               "Condenser compresses neural networks on private data without moving that data.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        fprintf(f, "  %-14s %s\n", s_cmds[i].name, s_cmds[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        s_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("condenser 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        if (strcmp(name, s_cmds[i].name) != 0) continue;
        cnd_err_clear();
        int rc = s_cmds[i].fn(argc - 1, argv + 1);
        if (rc == 0) return 0;
        const char *d = cnd_err_detail();
        fprintf(stderr, "condenser %s: error: %s\n", name, d[0] ? d : cnd_strerror(rc));
        return rc == CND_EINVAL ? 2 : 1;
    }
    fprintf(stderr, "condenser: unknown command '%s'\n\n", name);
    s_usage(stderr);
    return 2;
}
