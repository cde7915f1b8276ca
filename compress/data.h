/*
 * data.h: labelled datasets in memory, their loaders, splits and federated partitions.
 *
 * A dataset holds n samples of one shape as raw float32 values (pixels 0..255, CSV numbers as
 * written) and a class label per sample. Normalisation is not applied at load time: the model
 * owns its normalisation (fitted on training data, saved in the model file), and callers apply
 * it with cnd_model_normalize() or cnd_data_normalize(), so evaluation always uses the
 * statistics the model was trained with.
 *
 * Data specs on the command line:
 *   fmnist[:DIR]            Fashion-MNIST IDX files (raw or .gz); DIR defaults to Debian's
 *                           /usr/share/datasets/fashion-mnist
 *   idx:IMAGES,LABELS       any IDX image/label file pair
 *   csv:PATH[,OPTION...]    CSV with a header row; options (docs/data.md):
 *                             label=COL     the class column (default "label")
 *                             delim=auto|comma|semicolon|tab|pipe   (default auto: detected
 *                                           from the header)
 *                             na=refuse|mean   a missing value is an error naming
 *                                           file:line:column (default), or filled in with the
 *                                           training mean (cnd_data_impute)
 *                             shape=CxHxW   the records' values as one C x H x W sample
 *
 *   folder:DIR[,shape=CxHxW]  one subfolder per class (its name is the class name), PNG and
 *                           JPEG files in each; images are scaled and centre-cropped to C x H x W
 *                           (C 1: grayscale, 3: RGB): shape=, else the model's input the caller
 *                           passes, else the first image's size
 *
 * Options are comma-separated, so a PATH may not hold a comma.
 */
#ifndef CND_DATA_H
#define CND_DATA_H

#include "error.h"
#include "layer.h"

#include <stddef.h>
#include <stdint.h>

#define CND_FMNIST_DIR     "/usr/share/datasets/fashion-mnist"
#define CND_DATA_MAX_BYTES ((size_t)4 << 30) /* refuse inputs larger than 4 GiB */

typedef struct {
    size_t n;           /* samples */
    cnd_shape_t shape;  /* per-sample shape */
    float *x;           /* n x shape size raw values, owned */
    uint8_t *y;         /* n labels, each < n_classes, owned */
    int n_classes;      /* number of classes (<= 256) */
    char **class_names; /* n_classes owned strings, or NULL */
    size_t n_na;        /* values that are NaN: missing, loaded with na=mean, not yet imputed */
    float *na_mean;     /* the per-value means cnd_data_impute filled them with (owned), or NULL */
    char name[128];     /* human-readable origin, e.g. "fmnist train" */
} cnd_dataset_t;

/* Loads an IDX image file (magic 0x00000803, u8 pixels) and label file (0x00000801), raw or
 * gzip. Errors name the file and what is wrong (magic, sizes, truncation, count mismatch,
 * label out of range). Returns 0 with an owned *out or a negative code. */
CND_MUST_USE int cnd_data_load_idx(cnd_dataset_t **out, const char *images, const char *labels);

/* Fashion-MNIST "train" (60,000) or "test" (10,000) from dir (NULL = default). */
CND_MUST_USE int cnd_data_load_fmnist(cnd_dataset_t **out, const char *dir, const char *split);

/* CSV with a header row. label_col names the class column (NULL = "label"); every other column
 * must be numeric. Class values may be integers or names; classes are numbered in order of the
 * sorted distinct values. Ragged rows, empty or non-numeric cells are errors naming
 * file:line and the column. */
CND_MUST_USE int cnd_data_load_csv(cnd_dataset_t **out, const char *path, const char *label_col);

/* CSV options (see the spec above). */
typedef struct {
    const char *label; /* class column (NULL = "label") */
    char delim;        /* field separator; 0 = detect from the header */
    int na_mean;       /* 1: missing values load as NaN (ds->n_na counts them); 0: refused */
    cnd_shape_t shape; /* {0} = F x 1 x 1 records */
} cnd_csv_opts_t;

/* cnd_data_load_csv with options; errors as there, and for a shape whose size is not the
 * number of feature columns. */
CND_MUST_USE int cnd_data_load_csv_opts(cnd_dataset_t **out, const char *path,
                                        const cnd_csv_opts_t *o);

/* Fills ds's NaN values (ds->n_na of them) with per-value means: `mean` (one per value of a
 * sample, e.g. a model's stored training means), or when NULL the mean of ds's own non-missing
 * values at that position, written to used (may be NULL; cnd_shape_size entries). Returns 0,
 * CND_EINVAL when a position has no value in any sample (naming it), or CND_ENOMEM. The means
 * are kept in ds->na_mean (subsets copy them) so that a model trained on ds can store them. */
CND_MUST_USE int cnd_data_impute(cnd_dataset_t *ds, const float *mean, float *used);

/* Images from a folder tree (see folder: above), scaled and centre-cropped to *shape (NULL or
 * c == 0: the first image's size). Errors name the file: unreadable, neither PNG nor JPEG,
 * corrupt or truncated, larger than 16384 a side or 2^24 pixels (refused before any pixel
 * buffer is allocated); and the folder: no class folders, more than 256, no images. */
CND_MUST_USE int cnd_data_load_folder(cnd_dataset_t **out, const char *dir,
                                      const cnd_shape_t *shape);

/* One PNG or JPEG image in memory (`what` names it in messages) as raw 0..255 values of
 * *shape (C 1 or 3), scaled and centre-cropped as folder: does; shape->c == 0 takes the image's
 * own size and colour, written back to *shape. *out is owned by the caller. Returns 0, or
 * CND_EFORMAT / CND_EINVAL / CND_ENOMEM as cnd_data_load_folder. */
CND_MUST_USE int cnd_data_image(float **out, cnd_shape_t *shape, const uint8_t *buf, size_t len,
                                const char *what);

/* cnd_data_open for a model: `want` (may be NULL) is the model's input shape, the target of
 * folder images without shape=. */
CND_MUST_USE int cnd_data_open_for(cnd_dataset_t **out, const char *spec, const char *split,
                                   const cnd_shape_t *want);

/* Opens a dataset from a spec (see above) and a split ("train" or "test"; CSV ignores it).
 * Every loader names its classes (class_names is never NULL on success): IDX labels by their
 * value ("0".."9"), Fashion-MNIST by its class names, CSV by the values as written. */
CND_MUST_USE int cnd_data_open(cnd_dataset_t **out, const char *spec, const char *split);

void cnd_data_destroy(cnd_dataset_t **ds);

/* New dataset holding samples idx[0..n) of ds (copied). */
CND_MUST_USE int cnd_data_subset(cnd_dataset_t **out, const cnd_dataset_t *ds, const uint32_t *idx,
                                 size_t n);

/* Seeded shuffle split into train and validation (val_frac in [0, 1)). */
CND_MUST_USE int cnd_data_split(cnd_dataset_t **train, cnd_dataset_t **val, const cnd_dataset_t *ds,
                                double val_frac, uint64_t seed);

/* Partitions sample indices among `sites`: IID when alpha <= 0, otherwise label-skewed with
 * per-class Dirichlet(alpha) proportions. idx receives a permutation of 0..n-1 and counts[s]
 * how many consecutive entries belong to site s. Every site gets at least one sample when
 * n >= sites. Returns 0, CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_data_partition(uint32_t *idx, size_t *counts, const cnd_dataset_t *ds,
                                    int sites, double alpha, uint64_t seed);

/* Renumbers ds's labels onto a class map (common/classmap.h; K names): each class of ds that has
 * samples is looked up by name (cnd_classmap_find: its name, or a label written as an index);
 * afterwards n_classes is K, class_names the map's names, and present[k] (K entries, may be NULL)
 * how many samples class k has. A label the map does not know is refused naming it and the
 * map's classes, and ds is unchanged. Returns 0, CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_data_map_classes(cnd_dataset_t *ds, const char *map, size_t *present);

/* Gives ds's samples the shape `to` when they hold as many values: a CSV record of 784 numbers
 * (shape 784x1x1) becomes a 1x28x28 image, row-major, channel first (CHW). Returns 0, or
 * CND_EINVAL naming both shapes when the sizes differ. */
CND_MUST_USE int cnd_data_reshape(cnd_dataset_t *ds, cnd_shape_t to);

/* ds's class names as a class map into out (cap bytes; CND_CLASSMAP_MAX + 1 is enough).
 * Returns 0, or CND_EINVAL when a name cannot be part of a map (a comma, a control byte, too
 * long), naming it. */
CND_MUST_USE int cnd_data_classmap(const cnd_dataset_t *ds, char *out, size_t cap);

/* Per-channel mean and standard deviation over all samples (std floored at 1e-6). */
void cnd_data_norm_fit(const cnd_dataset_t *ds, float *mean, float *std);

#endif
