/*
 * data_idx.c: IDX files (LeCun's MNIST format, also Fashion-MNIST), raw or gzip.
 *
 * Header: big-endian u32 magic 0x000008NN (type 0x08 = unsigned byte, NN = dimensions), then
 * NN big-endian u32 sizes, then the data. The loader checks the magic, that the sizes multiply
 * without overflow to exactly the bytes present, that image and label counts match, and that
 * labels are below 256 classes; each failure names the file.
 */
#include "data.h"
#include "fileio.h"
#include "bytes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_fmnist_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                         "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                         "Bag",         "Ankle boot"};

/* Parses an IDX header; sets dims and the data pointer. */
static int s_idx_parse(const char *path, const uint8_t *buf, size_t len, int want_ndim,
                       uint32_t *dims, const uint8_t **data)
{
    if (len < 4) return cnd_errf(CND_EFORMAT, "%s: file too short for an IDX header", path);
    uint32_t magic = cnd_be32(buf);
    if ((magic >> 8) != 0x08 || (int)(magic & 0xff) != want_ndim)
        return cnd_errf(CND_EFORMAT,
                        "%s: bad IDX magic 0x%08x (expected 0x%08x: unsigned "
                        "bytes, %d dimensions)",
                        path, magic, 0x800u | (unsigned)want_ndim, want_ndim);
    size_t hdr = 4 + 4 * (size_t)want_ndim;
    if (len < hdr) return cnd_errf(CND_EFORMAT, "%s: truncated IDX header", path);
    uint64_t total = 1;
    for (int i = 0; i < want_ndim; i++) {
        dims[i] = cnd_be32(buf + 4 + 4 * i);
        if (dims[i] == 0) return cnd_errf(CND_EFORMAT, "%s: dimension %d is zero", path, i);
        total *= dims[i];
        if (total > CND_DATA_MAX_BYTES)
            return cnd_errf(CND_EFORMAT, "%s: declared size too large", path);
    }
    if (len - hdr != total)
        return cnd_errf(CND_EFORMAT,
                        "%s: header declares %llu data bytes but the file holds "
                        "%zu (%s)",
                        path, (unsigned long long)total, len - hdr,
                        len - hdr < total ? "truncated" : "trailing garbage");
    *data = buf + hdr;
    return 0;
}

int cnd_data_load_idx(cnd_dataset_t **out, const char *images, const char *labels)
{
    *out = NULL;
    uint8_t *ib = NULL, *lb = NULL;
    size_t il, ll;
    cnd_dataset_t *ds = NULL;
    int rc = cnd_file_read_gz(images, CND_DATA_MAX_BYTES, &ib, &il);
    if (rc) goto done;
    rc = cnd_file_read_gz(labels, CND_DATA_MAX_BYTES, &lb, &ll);
    if (rc) goto done;
    uint32_t idim[3] = {0}, ldim[1] = {0};
    const uint8_t *ip = NULL, *lp = NULL;
    if ((rc = s_idx_parse(images, ib, il, 3, idim, &ip))) goto done;
    if ((rc = s_idx_parse(labels, lb, ll, 1, ldim, &lp))) goto done;
    if (idim[0] != ldim[0]) {
        rc = cnd_errf(CND_EFORMAT, "%s has %u images but %s has %u labels", images, idim[0], labels,
                      ldim[0]);
        goto done;
    }
    if (idim[1] > 4096 || idim[2] > 4096) {
        rc = cnd_errf(CND_EFORMAT, "%s: image size %ux%u too large", images, idim[1], idim[2]);
        goto done;
    }
    ds = calloc(1, sizeof *ds);
    if (!ds) goto oom;
    ds->n = idim[0];
    ds->shape = (cnd_shape_t){1, (int)idim[1], (int)idim[2]};
    size_t d = cnd_shape_size(ds->shape);
    ds->x = malloc(ds->n * d * sizeof(float));
    ds->y = malloc(ds->n);
    if (!ds->x || !ds->y) goto oom;
    for (size_t i = 0; i < ds->n * d; i++) ds->x[i] = (float)ip[i];
    int maxy = 0;
    for (size_t i = 0; i < ds->n; i++) {
        ds->y[i] = lp[i];
        if (lp[i] > maxy) maxy = lp[i];
    }
    ds->n_classes = maxy + 1;
    if (!(ds->class_names = calloc((size_t)ds->n_classes, sizeof(char *)))) goto oom;
    for (int k = 0; k < ds->n_classes; k++) { /* labels are named by their value */
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        if (!(ds->class_names[k] = strdup(num))) goto oom;
    }
    snprintf(ds->name, sizeof ds->name, "%s", images);
    *out = ds;
    ds = NULL;
    goto done;
oom:
    rc = cnd_errf(CND_ENOMEM, "%s: out of memory", images);
done:
    cnd_data_destroy(&ds);
    free(ib);
    free(lb);
    return rc;
}

int cnd_data_load_fmnist(cnd_dataset_t **out, const char *dir, const char *split)
{
    *out = NULL;
    if (!dir || !*dir) dir = CND_FMNIST_DIR;
    const char *pre;
    if (!split || !strcmp(split, "train"))
        pre = "train";
    else if (!strcmp(split, "test"))
        pre = "t10k";
    else
        return cnd_errf(CND_EINVAL, "fmnist: unknown split '%s' (train or test)", split);
    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    if (!cnd_file_exists(img)) { /* accept uncompressed copies too */
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte", dir, pre);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte", dir, pre);
    }
    if (!cnd_file_exists(img))
        return cnd_errf(CND_EIO,
                        "Fashion-MNIST not found in %s (install Debian's "
                        "dataset-fashion-mnist or pass fmnist:DIR)",
                        dir);
    int rc = cnd_data_load_idx(out, img, lab);
    if (rc) return rc;
    cnd_dataset_t *ds = *out;
    if (ds->n_classes <= 10) {
        for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
        ds->class_names = NULL;
        ds->n_classes = 10;
        ds->class_names = calloc(10, sizeof(char *));
        if (!ds->class_names) goto oom;
        for (int i = 0; i < 10; i++)
            if (!(ds->class_names[i] = strdup(s_fmnist_names[i]))) goto oom;
    }
    snprintf(ds->name, sizeof ds->name, "fmnist %s", split ? split : "train");
    return 0;
oom:
    cnd_data_destroy(out);
    return CND_ENOMEM;
}
