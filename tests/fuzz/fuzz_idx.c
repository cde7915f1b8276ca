/*
 * fuzz_idx.c: the IDX image and label loader (compress/data_idx.c) with its gzip reader
 * (common/fileio.c, cnd_file_read_gz), as `--data idx:IMAGES,LABELS` runs it.
 *
 * Input: u32 little-endian k, then the images file (its first k bytes of what follows, k capped
 * at what is there), then the labels file (the rest). Either file may be raw or gzip; both go
 * through memory files (fuzz.h), so zlib reads them exactly as it reads a file on disk. Seeds
 * in corpus/idx/ hold small raw and gzip'd pairs.
 *
 * A dataset that loads is normalised, split and partitioned, as training does next.
 */
#include "bytes.h"
#include "data.h"
#include "fuzz.h"

static void s_use(const cnd_dataset_t *ds)
{
    size_t d = cnd_shape_size(ds->shape);
    fuzz_note("IDX loaded");
    if (!ds->n || !d || ds->n_classes < 1 || ds->n_classes > 256) abort();
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= ds->n_classes) abort();
    float mean[1], std[1];
    if (ds->shape.c == 1) cnd_data_norm_fit(ds, mean, std);
    cnd_dataset_t *tr = NULL, *va = NULL;
    if (cnd_data_split(&tr, &va, ds, 0.25, 1) == 0) {
        uint32_t *idx = malloc(tr->n * sizeof *idx);
        size_t counts[3];
        if (!idx) abort();
        fuzz_sink += cnd_data_partition(idx, counts, tr, 3, 0.5, 2);
        free(idx);
    }
    cnd_data_destroy(&tr);
    cnd_data_destroy(&va);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    size_t k = cnd_le32(data), rest = size - 4;
    if (k > rest) k = rest;
    const char *images = fuzz_file(0, data + 4, k);
    const char *labels = fuzz_file(1, data + 4 + k, rest - k);
    cnd_dataset_t *ds = NULL;
    if (cnd_data_load_idx(&ds, images, labels) == 0) {
        s_use(ds);
        cnd_data_destroy(&ds);
    }
    fuzz_touch_error();
    return 0;
}
