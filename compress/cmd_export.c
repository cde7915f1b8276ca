/*
 * cmd_export.c: `condenser export MODEL.cndq --c-array [--out FILE.c] [--name SYMBOL]`, the
 * artifact as C source for firmware that has no file system: the exact bytes (so the digest,
 * the signature and the self-test still apply on the device), their length, and the arena
 * size the runtime will ask for.
 *
 * The artifact is validated and its self-test run before anything is written, so firmware
 * never embeds a broken model.
 *
 * `condenser export MODEL.cnd --onnx --out FILE.onnx` writes a float model as an ONNX graph
 * (onnx_export.c, docs/onnx.md); `condenser export MODEL.cndq --onnx [--qlinear] --out FILE.onnx`
 * an integer artifact as an int8 graph, QDQ or exact (onnx_export_q.c), after validating it and
 * running its self-test.
 */
#include "artifact.h"
#include "cnd_rt_format.h"
#include "bytes.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "modelfile.h"
#include "onnx_graph.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MODEL.cndq as an int8 ONNX graph into `out`. */
static int s_export_onnx_q(const char *path, const char *out, int exact)
{
    cnd_artifact_t *a = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = cnd_artifact_load(&a, path);
    if (!rc) rc = cnd_artifact_selftest(a, path);
    if (!rc) rc = cnd_onnx_export_q(a->bytes, a->len, exact, &bytes, &len);
    if (!rc) rc = cnd_file_write_atomic(out, bytes, len, 0644);
    if (!rc)
        printf("wrote %s: int8 ONNX opset 13 (%s), %zu bytes; input raw uint8 %dx%dx%d (NCHW) "
               "through the artifact's LUT, output %s logits\n",
               out, exact ? "exact: integer ops and our requantization" : "QDQ", len, a->info.c,
               a->info.h, a->info.w, exact ? "int8 (the runtime's bits)" : "dequantized float");
    free(bytes);
    cnd_artifact_destroy(&a);
    return rc;
}

/* 1 if path starts with the artifact magic. */
static int s_is_artifact(const char *path)
{
    char m[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, CND_RT_MAGIC, 4);
}

/* MODEL.cnd (or MODEL.cndq) as ONNX into `out`. */
static int s_export_onnx(const char *path, const char *out, int exact)
{
    if (!out) return cnd_errf(CND_EINVAL, "--onnx needs --out FILE.onnx");
    if (s_is_artifact(path)) return s_export_onnx_q(path, out, exact);
    if (exact)
        return cnd_errf(CND_EINVAL, "--qlinear: %s is not an integer artifact (.cndq)", path);
    cnd_model_t *m = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = cnd_model_load(&m, path);
    if (!rc) rc = cnd_onnx_export(m, &bytes, &len);
    if (!rc) rc = cnd_file_write_atomic(out, bytes, len, 0644);
    if (!rc) {
        printf("wrote %s: ONNX opset 13, %zu bytes; input %dx%dx%d normalised as (x - mean) / "
               "std, mean",
               out, len, m->in.c, m->in.h, m->in.w);
        for (int c = 0; c < m->in.c && c < 8; c++) printf(" %.6g", (double)m->norm_mean[c]);
        printf(", std");
        for (int c = 0; c < m->in.c && c < 8; c++) printf(" %.6g", (double)m->norm_std[c]);
        printf(" (also in its metadata_props)\n");
    }
    free(bytes);
    cnd_model_destroy(&m);
    return rc;
}

static int s_valid_symbol(const char *s)
{
    if (!s[0] || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) return 0;
    return strlen(s) <= 64;
}

int cnd_cmd_export(int argc, char **argv)
{
    const char *out = NULL, *name = "cnd_model";
    int c_array = 0, onnx = 0, qlinear = 0;
    const cnd_opt_t opts[] = {
        {"c-array", CND_OPT_FLAG, &c_array, NULL, "emit the artifact as a C source file"},
        {"name", CND_OPT_STR, &name, "SYMBOL", "C identifier of the array (default cnd_model)"},
        {"onnx", CND_OPT_FLAG, &onnx, NULL,
         "write MODEL.cnd (float) or MODEL.cndq (int8, QDQ) as an ONNX graph (--out)"},
        {"qlinear", CND_OPT_FLAG, &qlinear, NULL,
         "with --onnx and a .cndq: integer operators with our requantization (exact logits)"},
        {"out", CND_OPT_STR, &out, "FILE", "output file (default: stdout)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser export MODEL.cndq --c-array [--out FILE.c] [--name SYMBOL]\n"
        "       condenser export MODEL.cnd --onnx --out FILE.onnx\n"
        "       condenser export MODEL.cndq --onnx [--qlinear] --out FILE.onnx",
        "Exports an integer artifact for firmware: a C file defining `const uint8_t SYMBOL[]` "
        "(the artifact's exact bytes, digest and signature trailer included), SYMBOL_len and "
        "SYMBOL_arena_bytes. The artifact is validated and self-tested first. With --onnx, a "
        "float .cnd model becomes an ONNX graph (opset 13) that expects normalised inputs, and an "
        "artifact an int8 graph taking raw uint8 pixels: QDQ operators by default, or with "
        "--qlinear integer operators that reproduce the runtime's logits bit for bit.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (onnx && c_array) return cnd_errf(CND_EINVAL, "choose one of --c-array and --onnx");
    if (qlinear && !onnx) return cnd_errf(CND_EINVAL, "--qlinear goes with --onnx");
    if (onnx) return s_export_onnx(pos[0], out, qlinear);
    if (!c_array)
        return cnd_errf(CND_EINVAL, "choose an export format: --c-array or --onnx (try --help)");
    if (!s_valid_symbol(name))
        return cnd_errf(CND_EINVAL, "--name: '%s' is not a C identifier of at most 64 characters",
                        name);
    cnd_artifact_t *a = NULL;
    if ((rc = cnd_artifact_load(&a, pos[0]))) return rc;
    if ((rc = cnd_artifact_selftest(a, pos[0]))) goto done;
    cnd_buf_t b;
    cnd_buf_init(&b);
    char hex[CND_SHA256_HEX], body[CND_SHA256_HEX], line[512]; /* fits every line below */
    uint8_t dg[CND_SHA256_BYTES];
    cnd_sha256(dg, a->bytes, a->len);
    cnd_hex(hex, dg, sizeof dg);
    cnd_hex(body, a->info.digest, 32);
    const char *base = strrchr(pos[0], '/');
    base = base ? base + 1 : pos[0];
    int n = snprintf(line, sizeof line,
                     "/*\n * Generated by `condenser export --c-array` from %.60s.\n", base);
    cnd_buf_put(&b, line, (size_t)n);
    n = snprintf(line, sizeof line,
                 " * %zu bytes, sha256 %s (the digest a signed manifest names);\n"
                 " * the body digest inside them, checked by the runtime at load: %s.\n",
                 a->len, hex, body);
    cnd_buf_put(&b, line, (size_t)n);
    const char *usage =
        " * Use with deploy/runtime (cnd_rt.h):\n"
        " *     static uint8_t arena[...];   // at least SYMBOL_arena_bytes\n"
        " *     cnd_rt_model_t *m;\n"
        " *     if (cnd_rt_load(&m, SYMBOL, SYMBOL_len, arena, sizeof arena, NULL) == 0 &&\n"
        " *         cnd_rt_selftest(m, NULL) == 0) ... cnd_rt_run_u8(m, logits, pixels);\n"
        " * Do not edit: the digest covers these bytes.\n */\n"
        "#include <stddef.h>\n#include <stdint.h>\n\n";
    cnd_buf_put(&b, usage, strlen(usage));
    n = snprintf(line, sizeof line, "extern const uint8_t %s[%zu];\n", name, a->len);
    cnd_buf_put(&b, line, (size_t)n);
    n = snprintf(line, sizeof line, "const size_t %s_len = %zu;\n", name, a->len);
    cnd_buf_put(&b, line, (size_t)n);
    n = snprintf(line, sizeof line, "const size_t %s_arena_bytes = %zu;\n", name,
                 a->info.arena_bytes);
    cnd_buf_put(&b, line, (size_t)n);
    n = snprintf(line, sizeof line, "const uint8_t %s[%zu] = {\n", name, a->len);
    cnd_buf_put(&b, line, (size_t)n);
    for (size_t i = 0; i < a->len; i += 16) {
        size_t w = 0;
        w += (size_t)snprintf(line + w, sizeof line - w, "   ");
        for (size_t j = i; j < i + 16 && j < a->len; j++)
            w += (size_t)snprintf(line + w, sizeof line - w, " 0x%02x,", a->bytes[j]);
        line[w++] = '\n';
        cnd_buf_put(&b, line, w);
    }
    cnd_buf_put(&b, "};\n", 3);
    if (b.err) {
        rc = CND_ENOMEM;
    } else if (out) {
        rc = cnd_file_write_atomic(out, b.data, b.len, 0644);
        if (!rc)
            fprintf(stderr, "wrote %s (%zu bytes of C for a %zu-byte artifact)\n", out, b.len,
                    a->len);
    } else if (fwrite(b.data, 1, b.len, stdout) != b.len) {
        rc = cnd_errf(CND_EIO, "writing to stdout failed");
    }
    cnd_buf_free(&b);
done:
    cnd_artifact_destroy(&a);
    return rc;
}
