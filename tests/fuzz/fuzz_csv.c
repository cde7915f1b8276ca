/*
 * fuzz_csv.c: the CSV loader (compress/data_csv.c), as `--data csv:PATH` runs it, through a
 * memory file (fuzz.h). The label column is "label" unless the input's first line is a
 * "#label=NAME" directive, which is cut off before loading, so the fuzzer can also move the
 * label column around. Seeds in corpus/csv/ are small tables with numeric and named classes,
 * quoting, CRLF line ends and blank lines.
 *
 * A dataset that loads is normalised, split and partitioned, as training does next; every
 * label must be below the class count, every class must have a name, and every feature must be
 * a finite float (the loader promises to refuse what is not).
 */
#include "data.h"
#include "fuzz.h"

#include <math.h>

static void s_use(const cnd_dataset_t *ds)
{
    fuzz_note("CSV loaded");
    if (!ds->n || ds->n_classes < 1 || ds->n_classes > 256 || !ds->class_names) abort();
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= ds->n_classes) abort();
    for (int k = 0; k < ds->n_classes; k++)
        if (!ds->class_names[k]) abort();
    size_t F = cnd_shape_size(ds->shape);
    for (size_t i = 0; i < ds->n * F; i++)
        if (!isfinite(ds->x[i])) abort();
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
    char label[64] = "label";
    const uint8_t *body = data;
    size_t n = size;
    if (size > 7 && memcmp(data, "#label=", 7) == 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t k = nl ? (size_t)(nl - data) - 7 : size - 7;
        if (k >= sizeof label) k = sizeof label - 1;
        memcpy(label, data + 7, k);
        label[k] = 0;
        body = nl ? nl + 1 : data + size;
        n = size - (size_t)(body - data);
    }
    cnd_dataset_t *ds = NULL;
    if (cnd_data_load_csv(&ds, fuzz_file(0, body, n), label) == 0) {
        s_use(ds);
        cnd_data_destroy(&ds);
    }
    fuzz_touch_error();
    return 0;
}
