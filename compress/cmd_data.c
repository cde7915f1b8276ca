/*
 * cmd_data.c: `condenser data check SPEC [--model M | --job J --dir COORD] [--json]`, the
 * pre-flight check a site runs on its records before it joins anything: how many samples per
 * class, the sample shape, the range of the values, missing values, duplicate records (and
 * duplicates labelled differently), and, with --model or --job, how the data's labels map onto
 * that model's or job's class map and whether its samples fit its input (data_check.h: the
 * job comes from the coordinator's database, read by coordinator/cmd_data_job.c). It only
 * reads: nothing is written or sent.
 *
 * Exit status: 0 when the data would be accepted as it is (with a model or job: every label
 * known to it, the shape fits); otherwise an error naming the first problem, after the report.
 */
#include "classmap.h"
#include "cli.h"
#include "cmd_common.h"
#include "commands.h"
#include "data.h"
#include "data_check.h"
#include "json.h"
#include "modelfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t per_class[256];
    int to_model[256];        /* target class of data class k, -1 unknown (with a target) */
    size_t model_count[256];  /* samples per target class */
    double min, max, mean;    /* over every value present */
    size_t na;                /* missing values (na=mean) */
    size_t dup, dup_conflict; /* records equal to an earlier one; of those, labelled otherwise */
    int shape_fits;           /* 1 as is, 2 after taking the model's shape, 0 not */
    int unknown;              /* data classes with samples the model does not know */
} s_report;

typedef struct {
    uint64_t h;
    uint32_t i;
} s_hash;

static int s_cmp_hash(const void *a, const void *b)
{
    const s_hash *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Records equal to an earlier record (bit for bit), and how many of them carry another label. */
static int s_duplicates(s_report *r, const cnd_dataset_t *ds)
{
    size_t d = cnd_shape_size(ds->shape);
    s_hash *h = malloc((ds->n ? ds->n : 1) * sizeof *h);
    if (!h) return CND_ENOMEM;
    for (size_t i = 0; i < ds->n; i++) {
        uint64_t x = 1469598103934665603ull;
        const unsigned char *p = (const unsigned char *)(ds->x + i * d);
        for (size_t k = 0; k < d * sizeof(float); k++) x = (x ^ p[k]) * 1099511628211ull;
        h[i] = (s_hash){x, (uint32_t)i};
    }
    qsort(h, ds->n, sizeof *h, s_cmp_hash);
    for (size_t i = 1; i < ds->n; i++) {
        for (size_t j = i; j-- > 0 && h[j].h == h[i].h;) {
            if (memcmp(ds->x + (size_t)h[i].i * d, ds->x + (size_t)h[j].i * d, d * sizeof(float)))
                continue;
            r->dup++;
            r->dup_conflict += ds->y[h[i].i] != ds->y[h[j].i];
            break;
        }
    }
    free(h);
    return 0;
}

static void s_values(s_report *r, const cnd_dataset_t *ds)
{
    size_t total = ds->n * cnd_shape_size(ds->shape), cnt = 0;
    double sum = 0;
    r->min = INFINITY;
    r->max = -INFINITY;
    for (size_t i = 0; i < total; i++) {
        float v = ds->x[i];
        if (isnan(v)) {
            r->na++;
            continue;
        }
        if (v < r->min) r->min = v;
        if (v > r->max) r->max = v;
        sum += v;
        cnt++;
    }
    r->mean = cnt ? sum / (double)cnt : 0;
    if (!cnt) r->min = r->max = 0;
}

/* The mapping of the data's classes onto the target's class map, and the shape. */
static void s_against(s_report *r, const cnd_dataset_t *ds, const cnd_data_target_t *t)
{
    const char *map = t->labels;
    for (int k = 0; k < ds->n_classes; k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        r->to_model[k] = cnd_classmap_find(map, ds->class_names ? ds->class_names[k] : num);
        if (r->to_model[k] >= 0)
            r->model_count[r->to_model[k]] += r->per_class[k];
        else if (r->per_class[k])
            r->unknown++;
    }
    cnd_shape_t a = ds->shape, b = t->in;
    if (a.c == b.c && a.h == b.h && a.w == b.w)
        r->shape_fits = 1;
    else if (a.h == 1 && a.w == 1 && cnd_shape_size(a) == cnd_shape_size(b))
        r->shape_fits = 2;
}

static void s_print_text(const s_report *r, const cnd_dataset_t *ds, const char *spec,
                         const cnd_data_target_t *t)
{
    const char *K = t ? t->kind : "";
    printf("data %s: %zu samples of %dx%dx%d, %d classes\n", spec, ds->n, ds->shape.c, ds->shape.h,
           ds->shape.w, ds->n_classes);
    printf("values: min %g  max %g  mean %g  missing %zu\n", r->min, r->max, r->mean, r->na);
    printf("duplicates: %zu records equal to an earlier one, %zu of them labelled otherwise\n",
           r->dup, r->dup_conflict);
    printf("%5s  %-24s %9s%s%s%s\n", "class", "name", "samples", t ? "  " : "", K,
           t ? " class" : "");
    for (int k = 0; k < ds->n_classes; k++) {
        printf("%5d  %-24s %9zu", k, ds->class_names ? ds->class_names[k] : "", r->per_class[k]);
        if (t && r->to_model[k] >= 0) printf("  %d", r->to_model[k]);
        if (t && r->to_model[k] < 0) printf("  NOT IN THE %s", t->kind[0] == 'j' ? "JOB" : "MODEL");
        printf("\n");
    }
    if (!t) return;
    static const char *const fit[] = {"does NOT fit", "fits", "fits (flat records take it)"};
    printf("%s: input %dx%dx%d %s; %d classes (%s)\n", t->what, t->in.c, t->in.h, t->in.w,
           fit[r->shape_fits], t->classes, t->labels);
    for (int j = 0; j < t->classes; j++)
        if (!r->model_count[j]) {
            char nm[CND_CLASS_NAME_MAX + 1] = "";
            if (cnd_classmap_name(t->labels, j, nm, sizeof nm)) nm[0] = 0;
            printf("warning: no sample of the %s's class %d ('%s')\n", K, j, nm);
        }
}

static void s_print_json(const s_report *r, const cnd_dataset_t *ds, const char *spec,
                         const cnd_data_target_t *t)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "data");
    cnd_jw_str(&w, spec);
    cnd_jw_key(&w, "samples");
    cnd_jw_int(&w, (int64_t)ds->n);
    cnd_jw_key(&w, "shape");
    cnd_jw_arr(&w);
    cnd_jw_int(&w, ds->shape.c);
    cnd_jw_int(&w, ds->shape.h);
    cnd_jw_int(&w, ds->shape.w);
    cnd_jw_arr_end(&w);
    cnd_jw_key(&w, "values");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "min");
    cnd_jw_double(&w, r->min);
    cnd_jw_key(&w, "max");
    cnd_jw_double(&w, r->max);
    cnd_jw_key(&w, "mean");
    cnd_jw_double(&w, r->mean);
    cnd_jw_key(&w, "missing");
    cnd_jw_int(&w, (int64_t)r->na);
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "duplicates");
    cnd_jw_int(&w, (int64_t)r->dup);
    cnd_jw_key(&w, "duplicates_labelled_otherwise");
    cnd_jw_int(&w, (int64_t)r->dup_conflict);
    cnd_jw_key(&w, "classes");
    cnd_jw_arr(&w);
    for (int k = 0; k < ds->n_classes; k++) {
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "index");
        cnd_jw_int(&w, k);
        cnd_jw_key(&w, "name");
        cnd_jw_str(&w, ds->class_names ? ds->class_names[k] : "");
        cnd_jw_key(&w, "samples");
        cnd_jw_int(&w, (int64_t)r->per_class[k]);
        if (t) {
            cnd_jw_key(&w, t->kind[0] == 'j' ? "job_class" : "model_class");
            if (r->to_model[k] >= 0)
                cnd_jw_int(&w, r->to_model[k]);
            else
                cnd_jw_null(&w);
        }
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    if (t) {
        cnd_jw_key(&w, t->kind);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "path");
        cnd_jw_str(&w, t->what);
        cnd_jw_key(&w, "input");
        cnd_jw_arr(&w);
        cnd_jw_int(&w, t->in.c);
        cnd_jw_int(&w, t->in.h);
        cnd_jw_int(&w, t->in.w);
        cnd_jw_arr_end(&w);
        cnd_jw_key(&w, "shape_fits");
        cnd_jw_bool(&w, r->shape_fits != 0);
        cnd_jw_key(&w, "classes_without_samples");
        cnd_jw_arr(&w);
        for (int j = 0; j < t->classes; j++)
            if (!r->model_count[j]) cnd_jw_int(&w, j);
        cnd_jw_arr_end(&w);
        cnd_jw_key(&w, "labels");
        cnd_jw_str(&w, t->labels);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_obj_end(&w);
    const char *text = cnd_jw_text(&w);
    if (text) printf("%s\n", text);
    cnd_jw_free(&w);
}

/* The target of --model: its input, classes and class map (or 0..K-1). */
static int s_model_target(cnd_data_target_t *t, const char *path)
{
    cnd_model_t *m = NULL;
    int rc = cnd_model_load(&m, path);
    if (rc) return rc;
    t->in = m->in;
    t->classes = m->n_classes;
    const char *ml = cnd_model_meta_get(m, "labels");
    if (ml && strlen(ml) < sizeof t->labels)
        snprintf(t->labels, sizeof t->labels, "%s", ml);
    else
        cnd_classmap_default(t->labels, sizeof t->labels, m->n_classes);
    snprintf(t->what, sizeof t->what, "model %s", path);
    snprintf(t->kind, sizeof t->kind, "model");
    cnd_model_destroy(&m);
    return 0;
}

int cnd_cmd_data_check(int argc, char **argv, cnd_data_job_fn job_fn)
{
    const char *model = NULL, *job = NULL, *dir = NULL, *split = "train", *ishape = NULL;
    long threads = 0;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"model", CND_OPT_STR, &model, "FILE", "a .cnd model: map the labels onto its classes"},
        {"job", CND_OPT_STR, &job, "ID",
         "or: a federated job of the coordinator in --dir: map the labels onto its classes"},
        {"dir", CND_OPT_STR, &dir, "DIR",
         "the coordinator directory of --job (default $CND_COORDINATOR_DIR or .)"},
        {"input-shape", CND_OPT_STR, &ishape, "C,H,W",
         "read csv: or folder: records as C x H x W samples (the spec's shape=)"},
        {"split", CND_OPT_STR, &split, "NAME", "train | test (default train; fmnist only)"},
        {"threads", CND_OPT_INT, &threads, "T", "decoding threads for folders", 1, 64},
        {"json", CND_OPT_FLAG, &json, NULL, "print the report as JSON"},
        {0}};
    const cnd_cli_t cli = {"condenser data check SPEC [--model FILE | --job ID [--dir DIR]] "
                           "[--input-shape C,H,W] [--json]",
                           "Reads a dataset (docs/data.md) and reports samples per class, shape, "
                           "value range, missing values and duplicates, and with --model or --job "
                           "the mapping of its labels onto the model's or job's classes and "
                           "whether its samples fit. Nothing is written or sent.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (model && job) return cnd_errf(CND_EINVAL, "give --model or --job, not both");
    if (dir && !job) return cnd_errf(CND_EINVAL, "--dir names the coordinator of --job");
    if (job && !job_fn)
        return cnd_errf(CND_EINVAL, "--job: this build has no coordinator to read jobs from");
    cnd_set_threads((int)threads);
    cnd_data_target_t *t = NULL;
    cnd_dataset_t *ds = NULL;
    char *spec = NULL;
    s_report *r = calloc(1, sizeof *r);
    if (!r) rc = CND_ENOMEM;
    if (!rc) rc = cnd_cmd_spec_shape(&spec, pos[0], ishape);
    if (!rc && (model || job) && !(t = calloc(1, sizeof *t))) rc = CND_ENOMEM;
    if (!rc && model) rc = s_model_target(t, model);
    if (!rc && job) rc = job_fn(t, job, dir);
    if (!rc) rc = cnd_data_open_for(&ds, spec, split, t ? &t->in : NULL);
    if (!rc) {
        for (size_t i = 0; i < ds->n; i++) r->per_class[ds->y[i]]++;
        s_values(r, ds);
        rc = s_duplicates(r, ds);
    }
    if (!rc) {
        if (t) s_against(r, ds, t);
        if (json)
            s_print_json(r, ds, spec, t);
        else
            s_print_text(r, ds, spec, t);
        if (t && r->unknown)
            rc = cnd_errf(CND_EINVAL, "%d of the data's classes are not classes of the %s (%s)",
                          r->unknown, t->what, t->labels);
        else if (t && !r->shape_fits)
            rc =
                cnd_errf(CND_EINVAL, "samples of %dx%dx%d do not fit the %s's input %dx%dx%d",
                         ds->shape.c, ds->shape.h, ds->shape.w, t->what, t->in.c, t->in.h, t->in.w);
    }
    cnd_data_destroy(&ds);
    free(spec);
    free(t);
    free(r);
    return rc;
}

int cnd_cmd_data(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "check")) return cnd_cmd_data_check(argc - 1, argv + 1, NULL);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: condenser data check SPEC [--model FILE | --job ID [--dir DIR]] [--json]\n"
               "  check   report on a dataset before using it (docs/data.md)\n");
        return 0;
    }
    return cnd_errf(CND_EINVAL, "data: expected 'check' (condenser data check --help)");
}
