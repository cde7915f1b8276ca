/*
 * data.c: dataset lifetime, specs, subsets, splits, partitions and normalisation statistics.
 * The format-specific loaders are in data_idx.c and data_csv.c.
 */
#include "data.h"
#include "classmap.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cnd_data_destroy(cnd_dataset_t **pds)
{
    if (!pds || !*pds) return;
    cnd_dataset_t *ds = *pds;
    free(ds->x);
    free(ds->y);
    free(ds->na_mean);
    if (ds->class_names)
        for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    free(ds);
    *pds = NULL;
}

/* "CxHxW" into *s; 0 or -1. */
static int s_parse_shape(const char *v, cnd_shape_t *s)
{
    char tail;
    if (sscanf(v, "%dx%dx%d%c", &s->c, &s->h, &s->w, &tail) != 3) return -1;
    if (s->c < 1 || s->h < 1 || s->w < 1 || s->c > 4096 || s->h > 65535 || s->w > 65535) return -1;
    return 0;
}

/* csv:PATH[,key=value...] */
static int s_open_csv(cnd_dataset_t **out, const char *spec)
{
    char buf[4096];
    if (strlen(spec + 4) >= sizeof buf) return cnd_errf(CND_EINVAL, "data spec: too long");
    snprintf(buf, sizeof buf, "%s", spec + 4);
    cnd_csv_opts_t o = {NULL, 0, 0, {0, 0, 0}};
    char *save = NULL, *path = strtok_r(buf, ",", &save);
    if (!path || !*path) return cnd_errf(CND_EINVAL, "data spec '%s': no file after csv:", spec);
    for (char *kv; (kv = strtok_r(NULL, ",", &save));) {
        char *v = strchr(kv, '=');
        if (v) *v++ = 0;
        int ok = v != NULL;
        if (ok && !strcmp(kv, "label"))
            o.label = v;
        else if (ok && !strcmp(kv, "delim")) {
            static const char *const nm[] = {"auto", "comma", "semicolon", "tab", "pipe"};
            static const char ch[] = {0, ',', ';', '\t', '|'};
            ok = 0;
            for (int i = 0; i < 5; i++)
                if (!strcmp(v, nm[i])) o.delim = ch[i], ok = 1;
            if (!ok)
                return cnd_errf(
                    CND_EINVAL,
                    "data spec: delim=%s (expected auto, comma, semicolon, tab or pipe)", v);
        } else if (ok && !strcmp(kv, "na")) {
            if (strcmp(v, "refuse") && strcmp(v, "mean"))
                return cnd_errf(CND_EINVAL, "data spec: na=%s (expected refuse or mean)", v);
            o.na_mean = !strcmp(v, "mean");
        } else if (ok && !strcmp(kv, "shape")) {
            if (s_parse_shape(v, &o.shape))
                return cnd_errf(CND_EINVAL, "data spec: shape=%s (expected CxHxW, e.g. 1x28x28)",
                                v);
        } else {
            return cnd_errf(CND_EINVAL,
                            "data spec '%s': unknown option '%s' (label=, delim=, na=, shape=)",
                            spec, kv);
        }
    }
    return cnd_data_load_csv_opts(out, path, &o);
}

/* folder:DIR[,shape=CxHxW] */
static int s_open_folder(cnd_dataset_t **out, const char *spec, const cnd_shape_t *want)
{
    char dir[4096];
    const char *p = spec + 7, *opt = strchr(p, ',');
    size_t n = opt ? (size_t)(opt - p) : strlen(p);
    if (n == 0 || n >= sizeof dir)
        return cnd_errf(CND_EINVAL, "data spec '%s': expected folder:DIR[,shape=CxHxW]", spec);
    memcpy(dir, p, n);
    dir[n] = 0;
    cnd_shape_t shape = {0, 0, 0};
    if (opt && (strncmp(opt, ",shape=", 7) || s_parse_shape(opt + 7, &shape)))
        return cnd_errf(CND_EINVAL, "data spec '%s': the only option is shape=CxHxW (e.g. 3x32x32)",
                        spec);
    return cnd_data_load_folder(out, dir, shape.c ? &shape : want);
}

int cnd_data_open(cnd_dataset_t **out, const char *spec, const char *split)
{
    return cnd_data_open_for(out, spec, split, NULL);
}

int cnd_data_open_for(cnd_dataset_t **out, const char *spec, const char *split,
                      const cnd_shape_t *want)
{
    *out = NULL;
    if (!strncmp(spec, "folder:", 7)) return s_open_folder(out, spec, want);
    if (!strcmp(spec, "fmnist")) return cnd_data_load_fmnist(out, NULL, split);
    if (!strncmp(spec, "fmnist:", 7)) return cnd_data_load_fmnist(out, spec + 7, split);
    if (!strncmp(spec, "idx:", 4)) {
        const char *comma = strchr(spec + 4, ',');
        if (!comma) return cnd_errf(CND_EINVAL, "data spec '%s': expected idx:IMAGES,LABELS", spec);
        char images[4096];
        size_t n = (size_t)(comma - (spec + 4));
        if (n >= sizeof images) return cnd_errf(CND_EINVAL, "data spec: path too long");
        memcpy(images, spec + 4, n);
        images[n] = 0;
        return cnd_data_load_idx(out, images, comma + 1);
    }
    if (!strncmp(spec, "csv:", 4)) return s_open_csv(out, spec);
    return cnd_errf(CND_EINVAL,
                    "data spec '%s': expected fmnist[:DIR], idx:IMAGES,LABELS, "
                    "csv:PATH[,label=COLUMN,delim=D,na=refuse|mean,shape=CxHxW] or "
                    "folder:DIR[,shape=CxHxW]",
                    spec);
}

int cnd_data_subset(cnd_dataset_t **out, const cnd_dataset_t *ds, const uint32_t *idx, size_t n)
{
    *out = NULL;
    size_t d = cnd_shape_size(ds->shape);
    cnd_dataset_t *s = calloc(1, sizeof *s);
    if (!s) return CND_ENOMEM;
    s->n = n;
    s->shape = ds->shape;
    s->n_classes = ds->n_classes;
    snprintf(s->name, sizeof s->name, "%s", ds->name);
    s->x = malloc((n ? n : 1) * d * sizeof(float));
    s->y = malloc(n ? n : 1);
    if (ds->class_names) s->class_names = calloc((size_t)ds->n_classes, sizeof(char *));
    if (!s->x || !s->y || (ds->class_names && !s->class_names)) goto oom;
    for (int c = 0; ds->class_names && c < ds->n_classes; c++)
        if (!(s->class_names[c] = strdup(ds->class_names[c]))) goto oom;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= ds->n) {
            cnd_data_destroy(&s);
            return cnd_errf(CND_EINVAL, "subset index %u out of range (%zu samples)", idx[i],
                            ds->n);
        }
        memcpy(s->x + i * d, ds->x + (size_t)idx[i] * d, d * sizeof(float));
        s->y[i] = ds->y[idx[i]];
    }
    for (size_t i = 0; ds->n_na && i < n * d; i++) s->n_na += isnan(s->x[i]) != 0;
    if (ds->na_mean) {
        if (!(s->na_mean = malloc(d * sizeof(float)))) goto oom;
        memcpy(s->na_mean, ds->na_mean, d * sizeof(float));
    }
    *out = s;
    return 0;
oom:
    cnd_data_destroy(&s);
    return CND_ENOMEM;
}

int cnd_data_split(cnd_dataset_t **train, cnd_dataset_t **val, const cnd_dataset_t *ds,
                   double val_frac, uint64_t seed)
{
    *train = *val = NULL;
    if (!(val_frac >= 0.0 && val_frac < 1.0))
        return cnd_errf(CND_EINVAL, "validation fraction %g is not in [0, 1)", val_frac);
    uint32_t *idx = malloc((ds->n ? ds->n : 1) * sizeof *idx);
    if (!idx) return CND_ENOMEM;
    for (size_t i = 0; i < ds->n; i++) idx[i] = (uint32_t)i;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, seed);
    cnd_rng_shuffle_u32(&rng, idx, ds->n);
    size_t nv = (size_t)floor(val_frac * (double)ds->n);
    int rc = cnd_data_subset(val, ds, idx, nv);
    if (!rc) rc = cnd_data_subset(train, ds, idx + nv, ds->n - nv);
    free(idx);
    if (rc) {
        cnd_data_destroy(train);
        cnd_data_destroy(val);
    }
    return rc;
}

int cnd_data_partition(uint32_t *idx, size_t *counts, const cnd_dataset_t *ds, int sites,
                       double alpha, uint64_t seed)
{
    if (sites < 1 || (size_t)sites > ds->n)
        return cnd_errf(CND_EINVAL, "cannot split %zu samples among %d sites", ds->n, sites);
    cnd_rng_t rng;
    cnd_rng_seed(&rng, seed);
    size_t n = ds->n;
    memset(counts, 0, (size_t)sites * sizeof *counts);
    if (alpha <= 0.0) {
        for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
        cnd_rng_shuffle_u32(&rng, idx, n);
        for (int s = 0; s < sites; s++)
            counts[s] = n / (size_t)sites + ((size_t)s < n % (size_t)sites);
        return 0;
    }
    /* Label skew: per class, Dirichlet proportions over sites; then gather per site. */
    int K = ds->n_classes;
    uint32_t *site_of = malloc(n * sizeof *site_of);
    uint32_t *cls = malloc(n * sizeof *cls);
    double *prop = malloc((size_t)sites * sizeof *prop);
    if (!site_of || !cls || !prop) {
        free(site_of);
        free(cls);
        free(prop);
        return CND_ENOMEM;
    }
    for (int k = 0; k < K; k++) {
        size_t nk = 0;
        for (size_t i = 0; i < n; i++)
            if (ds->y[i] == k) cls[nk++] = (uint32_t)i;
        cnd_rng_shuffle_u32(&rng, cls, nk);
        double sum = 0.0;
        for (int s = 0; s < sites; s++) sum += prop[s] = cnd_rng_gamma(&rng, alpha);
        size_t start = 0;
        double cum = 0.0;
        for (int s = 0; s < sites; s++) {
            cum += prop[s] / sum;
            size_t end = s == sites - 1 ? nk : (size_t)llround(cum * (double)nk);
            if (end > nk) end = nk;
            for (size_t i = start; i < end; i++) site_of[cls[i]] = (uint32_t)s;
            if (end > start) start = end;
        }
    }
    /* Guarantee every site at least one sample: take from the largest site. */
    for (int s = 0; s < sites; s++) {
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++) cnt += site_of[i] == (uint32_t)s;
        if (cnt) continue;
        size_t *sz = calloc((size_t)sites, sizeof *sz);
        if (!sz) {
            free(site_of);
            free(cls);
            free(prop);
            return CND_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) sz[site_of[i]]++;
        int big = 0;
        for (int t = 1; t < sites; t++)
            if (sz[t] > sz[big]) big = t;
        for (size_t i = 0; i < n; i++)
            if (site_of[i] == (uint32_t)big) {
                site_of[i] = (uint32_t)s;
                break;
            }
        free(sz);
    }
    size_t pos = 0;
    for (int s = 0; s < sites; s++) {
        size_t first = pos;
        for (size_t i = 0; i < n; i++)
            if (site_of[i] == (uint32_t)s) idx[pos++] = (uint32_t)i;
        counts[s] = pos - first;
    }
    free(site_of);
    free(cls);
    free(prop);
    return 0;
}

void cnd_data_norm_fit(const cnd_dataset_t *ds, float *mean, float *std)
{
    int C = ds->shape.c;
    size_t hw = (size_t)ds->shape.h * ds->shape.w;
    for (int c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0;
        for (size_t i = 0; i < ds->n; i++) {
            const float *p = ds->x + (i * (size_t)C + (size_t)c) * hw;
            for (size_t j = 0; j < hw; j++) s += p[j];
        }
        double cnt = (double)ds->n * (double)hw;
        double m = cnt > 0 ? s / cnt : 0.0;
        for (size_t i = 0; i < ds->n; i++) {
            const float *p = ds->x + (i * (size_t)C + (size_t)c) * hw;
            for (size_t j = 0; j < hw; j++) ss += (p[j] - m) * (p[j] - m);
        }
        double sd = cnt > 0 ? sqrt(ss / cnt) : 1.0;
        mean[c] = (float)m;
        std[c] = sd < 1e-6 ? 1e-6f : (float)sd;
    }
}

int cnd_data_classmap(const cnd_dataset_t *ds, char *out, size_t cap)
{
    if (cap) out[0] = 0;
    if (!ds->class_names) {
        cnd_classmap_default(out, cap, ds->n_classes);
        return 0;
    }
    for (int k = 0; k < ds->n_classes; k++) {
        int rc = cnd_classmap_append(out, cap, ds->class_names[k]);
        if (rc) return cnd_err_wrap(rc, "%s: class %d", ds->name, k);
    }
    return 0;
}

/* The map's names as owned strings (K of them). */
static int s_map_names(char ***out, const char *map, int K)
{
    char **names = calloc((size_t)K, sizeof *names);
    if (!names) return CND_ENOMEM;
    for (int k = 0; k < K; k++) {
        char nm[CND_CLASS_NAME_MAX + 1];
        if (cnd_classmap_name(map, k, nm, sizeof nm) || !(names[k] = strdup(nm))) {
            for (int i = 0; i < k; i++) free(names[i]);
            free(names);
            return CND_ENOMEM;
        }
    }
    *out = names;
    return 0;
}

int cnd_data_map_classes(cnd_dataset_t *ds, const char *map, size_t *present)
{
    int K = 0, rc = cnd_classmap_check(map, -1, &K);
    if (rc) return rc;
    size_t count[256] = {0};
    int to[256];
    for (size_t i = 0; i < ds->n; i++) count[ds->y[i]]++;
    for (int c = 0; c < ds->n_classes && c < 256; c++) {
        char num[16];
        snprintf(num, sizeof num, "%d", c);
        const char *name = ds->class_names ? ds->class_names[c] : num;
        to[c] = cnd_classmap_find(map, name);
        if (to[c] < 0 && count[c])
            return cnd_errf(CND_EINVAL,
                            "%s: label '%.63s' (%zu samples) is not one of the model's %d "
                            "classes (%.200s%s)",
                            ds->name, name, count[c], K, map, strlen(map) > 200 ? "..." : "");
    }
    char **names = NULL;
    if ((rc = s_map_names(&names, map, K))) return cnd_errf(rc, "%s: out of memory", ds->name);
    for (size_t i = 0; i < ds->n; i++) ds->y[i] = (uint8_t)to[ds->y[i]];
    if (ds->class_names)
        for (int c = 0; c < ds->n_classes; c++) free(ds->class_names[c]);
    free(ds->class_names);
    ds->class_names = names;
    ds->n_classes = K;
    if (present) {
        memset(present, 0, (size_t)K * sizeof *present);
        for (size_t i = 0; i < ds->n; i++) present[ds->y[i]]++;
    }
    return 0;
}

int cnd_data_reshape(cnd_dataset_t *ds, cnd_shape_t to)
{
    if (cnd_shape_size(to) != cnd_shape_size(ds->shape) || to.c < 1 || to.h < 1 || to.w < 1)
        return cnd_errf(CND_EINVAL,
                        "%s: samples of %dx%dx%d (%zu values) cannot take the shape "
                        "%dx%dx%d (%zu values)",
                        ds->name, ds->shape.c, ds->shape.h, ds->shape.w, cnd_shape_size(ds->shape),
                        to.c, to.h, to.w, cnd_shape_size(to));
    ds->shape = to;
    return 0;
}

int cnd_data_impute(cnd_dataset_t *ds, const float *mean, float *used)
{
    size_t d = cnd_shape_size(ds->shape);
    float *m = malloc((d ? d : 1) * sizeof *m);
    if (!m) return CND_ENOMEM;
    if (mean) {
        memcpy(m, mean, d * sizeof *m);
    } else {
        for (size_t j = 0; j < d; j++) {
            double sum = 0;
            size_t cnt = 0;
            for (size_t i = 0; i < ds->n; i++) {
                float v = ds->x[i * d + j];
                if (!isnan(v)) sum += v, cnt++;
            }
            if (!cnt) {
                free(m);
                return cnd_errf(CND_EINVAL, "%s: value %zu is missing in every sample: no mean",
                                ds->name, j + 1);
            }
            m[j] = (float)(sum / (double)cnt);
        }
    }
    for (size_t i = 0; i < ds->n * d; i++)
        if (isnan(ds->x[i])) ds->x[i] = m[i % d];
    if (used) memcpy(used, m, d * sizeof *m);
    ds->n_na = 0;
    free(ds->na_mean);
    ds->na_mean = m;
    return 0;
}
