/*
 * main.c: the `condenser` executable. It only dispatches: each subcommand's code lives in the
 * folder of the part it belongs to (compress/cmd_train.c, crypto/cmd_keygen.c, ...), exposes
 * `int cnd_cmd_<name>(int argc, char **argv)` returning 0 or a negative CND_E* code, and leaves
 * the detail of a failure in cnd_err_detail(), which this file prints.
 */
#include "cli.h"
#include "commands.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS 0.3.21 (Debian 12) does not recognise AMD Zen 4/5 and falls back to its Haswell
 * (AVX2) kernels, which run sgemm at about half the speed of its SkylakeX (AVX-512) kernels on
 * those CPUs (measured 92 vs 144 GFLOP/s on one core; docs/benchmarks.md). The core type is
 * read from the environment when the library loads, before main(), so when the CPU has the
 * AVX-512 subsets those kernels need and the user has not chosen a core type, we set it and
 * re-execute ourselves once. If the re-exec fails we simply carry on with the default. */
static void s_select_blas_kernels(char **argv)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") || getenv("CND_NO_BLAS_REEXEC")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
        return;
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) != 0) return;
    setenv("CND_NO_BLAS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: keep going with the default kernels */
#else
    (void)argv;
#endif
}

typedef int (*cnd_cmd_fn)(int argc, char **argv);

static const struct {
    const char *name;
    cnd_cmd_fn fn;
    const char *help;
} s_cmds[] = {
    {"train", cnd_cmd_train, "train a float model on a dataset"},
    {"eval", cnd_cmd_eval, "evaluate a model on a dataset"},
    {"info", cnd_cmd_info, "show a model's layers, parameters, bytes and MACs"},
    {"distill", cnd_cmd_distill, "train a student from a teacher's soft targets and labels"},
    {"prune", cnd_cmd_prune, "remove whole channels and units: a narrower, fine-tuned model"},
    {"privacy", cnd_cmd_privacy,
     "DP-SGD accountant: epsilon of a run, or the noise an epsilon needs"},
    {"import", cnd_cmd_import, "read an ONNX model: as a teacher, or as a trainable student"},
    {"data", cnd_cmd_data, "check a dataset: classes, shape, values, duplicates, model fit"},
    {"data check", cnd_cmd_data_check_job, "the same, also against a job (--job ID --dir DIR)"},
    {"keygen", cnd_cmd_keygen, "create a node identity (Ed25519; X25519 form for CurveZMQ)"},
    {"ca", cnd_cmd_ca, "federation CA: init, issue, revoke, verify, list, crl"},
    {"audit", cnd_cmd_audit, "verify, prove, export, reconcile and report on audit logs"},
    {"coordinator", cnd_cmd_coordinator, "create (init) or run the federation coordinator"},
    {"site", cnd_cmd_site, "enroll, list or revoke the sites and devices a coordinator admits"},
    {"job", cnd_cmd_job, "create, list, show, cancel or export federated compression jobs"},
    {"demo", cnd_cmd_demo,
     "the main job: federated distillation to a signed int8 model, end to end"},
    {"agent", cnd_cmd_agent, "run a site agent (or: agent status), training on local data"},
    {"quantize", cnd_cmd_quantize, "quantize a model to an integer-only .cndq artifact (PTQ/QAT)"},
    {"export", cnd_cmd_export, "export a .cndq artifact as C source for firmware"},
    {"bench", cnd_cmd_bench, "latency, throughput and memory of a .cnd or .cndq model"},
    {"predict", cnd_cmd_predict, "predicted int8 latency of a model on a device class"},
    {"autocompress", cnd_cmd_autocompress,
     "search prune width, distillation and QAT/bits for an artifact within a device budget"},
    {"rollout", cnd_cmd_rollout,
     "edge rollouts: publish, create, list, show, pause, rollback, serve"},
    {"edge", cnd_cmd_edge, "edge device daemon: init, run, install, status, infer"},
    {"doctor", cnd_cmd_doctor, "check a node before it runs: keys, certificates, ports, disk"},
    {"fleet-sim", cnd_cmd_fleet_sim, "simulate a fleet of edge devices in one process"},
    {"bench secagg", cnd_cmd_bench_secagg, "benchmark secure aggregation (SecAgg+)"},
    {"bench proto", cnd_cmd_bench_proto, "benchmark the wire protocol and the CURVE transport"},
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
    s_select_blas_kernels(argv);
    /* Operator commands log their exact command line (admin.* audit entries). */
    if (cnd_cli_record_argv(argc, argv) != 0) {
        fprintf(stderr, "condenser: out of memory\n");
        return 1;
    }
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
    /* Two-word rows ("bench secagg") match first, so several areas can share a verb; the
     * command then sees argv[0] = its second word. */
    char two[128] = "";
    if (argc > 2) snprintf(two, sizeof two, "%s %s", argv[1], argv[2]);
    for (int words = 2; words >= 1; words--) {
        if (words == 2 && !two[0]) continue;
        for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
            if (strcmp(words == 2 ? two : name, s_cmds[i].name) != 0) continue;
            cnd_err_clear();
            int rc = s_cmds[i].fn(argc - words, argv + words);
            if (rc == 0) return 0;
            if (rc == CND_CMD_EXIT_UNMET) return rc; /* the command printed why */
            const char *d = cnd_err_detail();
            fprintf(stderr, "condenser %s: error: %s\n", s_cmds[i].name,
                    d[0] ? d : cnd_strerror(rc));
            return rc == CND_EINVAL ? 2 : 1;
        }
    }
    fprintf(stderr, "condenser: unknown command '%s'\n\n", name);
    s_usage(stderr);
    return 2;
}
