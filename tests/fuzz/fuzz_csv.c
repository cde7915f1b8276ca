/*
 * fuzz_csv.c: the CSV loader (compress/data_csv.c) and its spec options (compress/data.c), as
 * `--data csv:PATH,OPTIONS` runs them, through a memory file (fuzz.h). An input whose first line
 * starts with '#' gives the options after it ("#label=y", "#delim=auto,na=mean,shape=1x2x2");
 * that line is cut off before loading, so the fuzzer can move the label column, change the
 * delimiter, the NA policy and the shape. Seeds in corpus/csv/ are small tables with numeric and
 * named classes, quoting, CRLF line ends, blank lines, semicolons and tabs, and missing values.
 *
 * A dataset that loads is imputed (na=mean: NaN counted exactly by n_na; afterwards none),
 * normalised, split and partitioned, as training does next; every label must be below the class
 * count, every class must have a name, every feature must be a finite float (the loader promises
 * to refuse what is not), and a class map made of its names maps it onto itself unchanged.
 */
#include "classmap.h"
#include "data.h"
#include "fuzz.h"

#include <math.h>

static void s_use(cnd_dataset_t *ds)
{
    fuzz_note("CSV loaded");
    if (!ds->n || ds->n_classes < 1 || ds->n_classes > 256 || !ds->class_names) abort();
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= ds->n_classes) abort();
    for (int k = 0; k < ds->n_classes; k++)
        if (!ds->class_names[k]) abort();
    size_t F = cnd_shape_size(ds->shape), nan = 0;
    for (size_t i = 0; i < ds->n * F; i++) nan += isnan(ds->x[i]) != 0;
    if (nan != ds->n_na) abort();
    if (ds->n_na && cnd_data_impute(ds, NULL, NULL) != 0) return;
    for (size_t i = 0; i < ds->n * F; i++)
        if (!isfinite(ds->x[i])) abort();
    char *map = malloc(CND_CLASSMAP_MAX + 1);
    if (!map) abort();
    if (cnd_data_classmap(ds, map, CND_CLASSMAP_MAX + 1) == 0) {
        uint8_t *y = malloc(ds->n);
        if (!y) abort();
        memcpy(y, ds->y, ds->n);
        if (cnd_data_map_classes(ds, map, NULL) != 0 || memcmp(y, ds->y, ds->n) != 0) abort();
        free(y);
    }
    free(map);
    float *mean = malloc(F * sizeof(float)), *std = malloc(F * sizeof(float));
    if (!mean || !std) abort();
    cnd_data_norm_fit(ds, mean, std);
    free(mean);
    free(std);
    cnd_dataset_t *tr = NULL, *va = NULL;
    if (cnd_data_split(&tr, &va, ds, 0.25, 1) == 0) {
        uint32_t *idx = malloc(tr->n * sizeof *idx);
        size_t counts[2];
        if (!idx) abort();
        fuzz_sink += cnd_data_partition(idx, counts, tr, 2, 0.3, 2);
        free(idx);
    }
    cnd_data_destroy(&tr);
    cnd_data_destroy(&va);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char opts[128] = "";
    const uint8_t *body = data;
    size_t n = size;
    if (size > 1 && data[0] == '#') {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t k = nl ? (size_t)(nl - data) - 1 : size - 1;
        if (k >= sizeof opts - 1) k = sizeof opts - 2;
        opts[0] = ',';
        memcpy(opts + 1, data + 1, k);
        opts[k + 1] = 0;
        if (memchr(opts, 0, k + 1) != NULL) return 0; /* a NUL in the options */
        body = nl ? nl + 1 : data + size;
        n = size - (size_t)(body - data);
    }
    char spec[256];
    snprintf(spec, sizeof spec, "csv:%s%s", fuzz_file(0, body, n), opts);
    cnd_dataset_t *ds = NULL;
    if (cnd_data_open(&ds, spec, "train") == 0) {
        s_use(ds);
        cnd_data_destroy(&ds);
    }
    fuzz_touch_error();
    return 0;
}
