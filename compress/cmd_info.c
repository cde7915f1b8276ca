/*
 * cmd_info.c: `condenser info MODEL`, the layer table of a model: shapes, parameters, bytes
 * and multiply-accumulates per inference, plus its metadata.
 */
#include "cli.h"
#include "commands.h"
#include "modelfile.h"

#include <stdio.h>


int cnd_cmd_info(int argc, char **argv)
{
    const cnd_cli_t cli = {"condenser info MODEL",
                           "Shows a model's layers with output shapes, parameter counts, bytes "
                           "and multiply-accumulates per inference, and its metadata.",
                           NULL, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_model_t *m = NULL;
    if ((rc = cnd_model_load(&m, pos[0]))) return rc;
    printf("model   %s\narch    %s\ninput   %dx%dx%d   classes %d\n\n", pos[0], m->spec, m->in.c,
           m->in.h, m->in.w, m->n_classes);
    printf("  #  %-26s %-14s %10s %12s %12s\n", "layer", "output", "params", "bytes(f32)",
           "MACs");
    for (int i = 0; i < m->n_layers; i++) {
        const cnd_layer_t *l = &m->layers[i];
        char tok[64], shp[32];
        cnd_layer_spec(l, tok, sizeof tok);
        snprintf(shp, sizeof shp, "%dx%dx%d", l->out.c, l->out.h, l->out.w);
        printf("%3d  %-26s %-14s %10zu %12zu %12llu\n", i, tok, shp, l->n_params,
               l->n_params * 4, (unsigned long long)cnd_layer_ops(l->type)->macs(l));
    }
    printf("\ntotal: %zu parameters, %zu bytes float32, %llu MACs per inference\n",
           m->num_params, m->num_params * 4, (unsigned long long)cnd_model_macs(m));
    if (m->n_meta) printf("\nmetadata:\n");
    for (int i = 0; i < m->n_meta; i++) printf("  %-16s %s\n", m->meta[i].key, m->meta[i].val);
    cnd_model_destroy(&m);
    return 0;
}
