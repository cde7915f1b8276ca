/*
 * cmd_info.c: `condenser info MODEL`, the layer table of a model: shapes, parameters, bytes
 * and multiply-accumulates per inference, plus its metadata.
 */
#include "artifact.h"
#include "cli.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `info` on a .cndq integer artifact: what the runtime sees when it loads it. */
static int s_info_artifact(const char *path)
{
    cnd_artifact_t *a = NULL;
    int rc = cnd_artifact_load(&a, path);
    if (rc) return rc;
    const cnd_rt_info_t *in = &a->info;
    char hex[CND_SHA256_HEX];
    float in_scale, out_scale;
    memcpy(&in_scale, &in->in_scale_bits, 4);
    memcpy(&out_scale, &in->out_scale_bits, 4);
    uint32_t scheme, sig_len, signed_len;
    const uint8_t *sig;
    cnd_rt_signature(a->rt, &scheme, &sig, &sig_len, &signed_len);
    int st = cnd_artifact_selftest(a, path);
    printf("artifact  %s (%zu bytes, integer-only)\n", path, a->len);
    printf("input     %ux%ux%u int8, scale %g, zero point %d\n", in->c, in->h, in->w,
           (double)in_scale, in->in_zp);
    printf("output    %u int8 logits, scale %g, zero point %d\n", in->n_classes, (double)out_scale,
           in->out_zp);
    printf("layers    %u    MACs per inference %llu    weight bytes %zu    arena bytes %zu\n",
           in->n_layers, (unsigned long long)in->macs, in->weight_bytes, in->arena_bytes);
    printf("kernels   %s\n", cnd_rt_kernels_name(cnd_rt_get_kernels(a->rt)));
    printf("sha256    %s\n", cnd_hex(hex, in->digest, CND_SHA256_BYTES));
    printf("signature %s\n", scheme ? "present (check it with the federation key)" : "none");
    printf("self-test %u vectors: %s\n", in->n_selftests, st ? cnd_err_detail() : "passed");
    if (in->n_labels) {
        printf("labels   ");
        for (uint32_t i = 0; i < in->n_labels; i++)
            printf(" %s%s", cnd_rt_label(a->rt, i), i + 1 < in->n_labels ? "," : "\n");
    }
    cnd_artifact_destroy(&a);
    return st;
}

int cnd_cmd_info(int argc, char **argv)
{
    const cnd_cli_t cli = {"condenser info MODEL(.cnd|.cndq)",
                           "Shows a float model's layers with output shapes, parameter counts, "
                           "bytes and multiply-accumulates per inference, and its metadata; for "
                           "an integer artifact, its input/output quantization, size, arena, "
                           "digest, signature and self-test result.",
                           NULL, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    uint8_t *head = NULL;
    size_t hl = 0;
    /* Dispatch on content, not on the file name: a float model starts with "CNDM". */
    if ((rc = cnd_file_read(pos[0], (size_t)1 << 31, &head, &hl))) return rc;
    int is_model = hl >= 4 && !memcmp(head, CND_MODELFILE_MAGIC, 4);
    free(head);
    if (!is_model) return s_info_artifact(pos[0]);
    cnd_model_t *m = NULL;
    if ((rc = cnd_model_load(&m, pos[0]))) return rc;
    printf("model   %s\narch    %s\ninput   %dx%dx%d   classes %d\n\n", pos[0], m->spec, m->in.c,
           m->in.h, m->in.w, m->n_classes);
    printf("  #  %-26s %-14s %10s %12s %12s\n", "layer", "output", "params", "bytes(f32)", "MACs");
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        char tok[64], shp[32];
        cnd_layer_spec(l, tok, sizeof tok);
        snprintf(shp, sizeof shp, "%dx%dx%d", l->out.c, l->out.h, l->out.w);
        printf("%3d  %-26s %-14s %10zu %12zu %12llu\n", i, tok, shp, l->n_params, l->n_params * 4,
               (unsigned long long)cnd_layer_ops(l->type)->macs(l));
    }
    printf("\ntotal: %zu parameters, %zu bytes float32, %llu MACs per inference\n", m->num_params,
           m->num_params * 4, (unsigned long long)cnd_model_macs(m));
    if (m->n_meta) printf("\nmetadata:\n");
    for (int i = 0; i < m->n_meta; i++) printf("  %-16s %s\n", m->meta[i].key, m->meta[i].val);
    cnd_model_destroy(&m);
    return 0;
}
