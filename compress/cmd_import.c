/*
 * cmd_import.c: `condenser import MODEL.onnx [--out MODEL.cnd] [--preprocess SPEC] [--json]`.
 *
 * Reads an ONNX model (onnx_graph.h) and says what Condenser can do with it: every model that
 * loads runs as a teacher (`distill --teacher MODEL.onnx`); one whose nodes all map onto
 * trainable layers (a chain or a graph: residual adds, concats) also imports as a student. With
 * --out the student is written as a .cnd with the preprocessing folded into its input
 * normalisation, after a self-check: the .cnd model and the ONNX engine must give the same logits
 * on a few seeded inputs. A graph that cannot be a student is refused naming the first node and op
 * that cannot be trained.
 */
#include "classmap.h"
#include "cli.h"
#include "commands.h"
#include "json.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest difference between the student's and the graph's logits on 4 seeded inputs. */
static int s_selfcheck(cnd_model_t *m, cnd_onnx_t *g, double *diff, double *scale)
{
    enum { B = 4 };
    size_t d = cnd_shape_size(m->in);
    float *x = malloc(B * d * sizeof(float)),
          *keep = malloc((size_t)B * m->n_classes * sizeof(float));
    if (!x || !keep) {
        free(x);
        free(keep);
        return CND_ENOMEM;
    }
    cnd_rng_t rng;
    cnd_rng_seed(&rng, 15);
    for (size_t i = 0; i < B * d; i++) x[i] = (float)cnd_rng_normal(&rng);
    const float *lo;
    int rc = cnd_onnx_run(g, x, B, &lo);
    if (!rc) {
        memcpy(keep, lo, (size_t)B * m->n_classes * sizeof(float));
        rc = cnd_model_forward(m, x, B, 0, &lo);
    }
    *diff = *scale = 0.0;
    for (size_t i = 0; !rc && i < (size_t)B * m->n_classes; i++) {
        double e = fabs((double)lo[i] - keep[i]);
        if (e > *diff) *diff = e;
        if (fabs(keep[i]) > *scale) *scale = fabs(keep[i]);
    }
    free(x);
    free(keep);
    return rc;
}

static int s_write(cnd_onnx_t *g, cnd_model_t *m, const char *src, const char *prep_spec,
                   const cnd_onnx_prep_t *prep, const char *out)
{
    double diff, scale;
    int rc = s_selfcheck(m, g, &diff, &scale);
    if (rc) return rc;
    if (diff > 1e-4 * (scale > 1.0 ? scale : 1.0))
        return cnd_errf(CND_EPERM,
                        "%s: the mapped layers give logits %.3g away from the graph's; "
                        "not written",
                        src, diff);
    if ((rc = cnd_onnx_prep_norm(prep, m->in.c, m->norm_mean, m->norm_std))) return rc;
    char buf[32];
    snprintf(buf, sizeof buf, "%d", cnd_onnx_opset(g));
    if ((rc = cnd_model_meta_set(m, "imported_from", src)) ||
        (rc = cnd_model_meta_set(m, "onnx_opset", buf)) ||
        (rc = cnd_model_meta_set(m, "preprocess", prep_spec ? prep_spec : "scale=1")))
        return rc;
    return cnd_model_save(m, out);
}

int cnd_cmd_import(int argc, char **argv)
{
    const char *out = NULL, *prep_spec = NULL, *labels = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"out", CND_OPT_STR, &out, "FILE", "write the model as a trainable student (.cnd)"},
        {"preprocess", CND_OPT_STR, &prep_spec, "SPEC",
         "what the model expects of raw inputs: \"scale=1/255 mean=M[,M..] std=S[,S..]\""},
        {"labels", CND_OPT_STR, &labels, "A,B,...",
         "class names in output order, stored as the student's class map (default 0..K-1)"},
        {"json", CND_OPT_FLAG, &json, NULL, "print the summary as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser import MODEL.onnx [--out MODEL.cnd] [--preprocess SPEC] [--labels A,B,...] "
        "[--json]",
        "Reads an ONNX model (opsets 11-17) and says how Condenser can use it: any model that\n"
        "loads runs as a teacher (condenser distill --teacher MODEL.onnx); a graph of conv\n"
        "(grouped, depthwise), relu, relu6 (Clip), hardswish, pooling, flatten, dense,\n"
        "batchnorm, residual Add and channel Concat nodes also imports as a student with\n"
        "--out. The preprocessing (x * scale - mean) / std is stored in the .cnd as its input\n"
        "normalisation, so eval, distill and the agents apply it to raw data. A model that\n"
        "cannot be a student is refused naming the first node and op that cannot be trained.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (labels && !out) return cnd_errf(CND_EINVAL, "--labels goes with --out");
    cnd_onnx_prep_t prep;
    if ((rc = cnd_onnx_prep_parse(&prep, prep_spec))) return rc;
    cnd_onnx_t *g = NULL;
    cnd_model_t *m = NULL;
    if ((rc = cnd_onnx_load(&g, pos[0]))) return rc;
    cnd_shape_t in = cnd_onnx_input_shape(g);
    if (in.c <= 256) {
        float mean[256], std[256];
        if ((rc = cnd_onnx_prep_norm(&prep, in.c, mean, std))) goto done;
    }
    int srk = cnd_onnx_to_model(&m, g);
    char why[512];
    snprintf(why, sizeof why, "%s", srk ? cnd_err_detail() : "");
    if (json) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "path"), cnd_jw_str(&w, pos[0]);
        cnd_jw_key(&w, "opset"), cnd_jw_int(&w, cnd_onnx_opset(g));
        cnd_jw_key(&w, "nodes"), cnd_jw_int(&w, cnd_onnx_node_count(g));
        cnd_jw_key(&w, "input"), cnd_jw_arr(&w);
        cnd_jw_int(&w, in.c), cnd_jw_int(&w, in.h), cnd_jw_int(&w, in.w);
        cnd_jw_arr_end(&w);
        cnd_jw_key(&w, "classes"), cnd_jw_int(&w, cnd_onnx_classes(g));
        cnd_jw_key(&w, "teacher"), cnd_jw_bool(&w, 1);
        cnd_jw_key(&w, "student"), cnd_jw_bool(&w, srk == 0);
        cnd_jw_key(&w, "student_spec");
        if (m)
            cnd_jw_str(&w, m->spec);
        else
            cnd_jw_null(&w);
        cnd_jw_key(&w, "student_refusal");
        if (srk)
            cnd_jw_str(&w, why);
        else
            cnd_jw_null(&w);
        cnd_jw_obj_end(&w);
        const char *t = cnd_jw_text(&w);
        if (t) printf("%s\n", t);
        cnd_jw_free(&w);
        if (!t) rc = CND_ENOMEM;
    } else {
        printf("%s: ONNX opset %d, %d nodes, input %dx%dx%d, %d classes\n", pos[0],
               cnd_onnx_opset(g), cnd_onnx_node_count(g), in.c, in.h, in.w, cnd_onnx_classes(g));
        printf("teacher: yes (condenser distill --teacher %s)\n", pos[0]);
        if (srk)
            printf("student: no: %s\n", why);
        else
            printf("student: yes, %s (%zu parameters)\n", m->spec, m->num_params);
    }
    if (rc || !out) goto done;
    if (srk) {
        rc = cnd_errf(srk, "%s", why);
        goto done;
    }
    if (labels && (cnd_classmap_check(labels, m->n_classes, NULL) ||
                   (rc = cnd_model_meta_set(m, "labels", labels)))) {
        if (!rc) rc = cnd_err_wrap(CND_EINVAL, "--labels");
        goto done;
    }
    if ((rc = s_write(g, m, pos[0], prep_spec, &prep, out))) goto done;
    if (!json) printf("wrote %s\n", out);
done:
    cnd_model_destroy(&m);
    cnd_onnx_destroy(&g);
    return rc;
}
