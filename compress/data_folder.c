/*
 * data_folder.c: labelled images from a folder tree, `folder:DIR`: one subfolder per class
 * (the class names, sorted, are the class map), PNG files through libpng and JPEG files
 * through libjpeg-turbo (Debian's libpng16 and libjpeg62-turbo).
 *
 * Every image becomes a sample of the target shape C x H x W: C = 1 decodes to grayscale,
 * C = 3 to RGB (the libraries convert); an image of another size is scaled, keeping its aspect
 * ratio, so that its shorter side fits, then centre-cropped (bilinear; an image of the target
 * size is copied as it is). Values are raw 0..255 like IDX pixels; the model owns the
 * normalisation. The target is the spec's shape=, else the shape the caller asks for (the
 * model's input), else the first image's size (C = 1 when it is grayscale, else 3).
 *
 * Hostile files: each file is read whole (at most CND_IMAGE_MAX_FILE bytes), its header
 * parsed, and its dimensions checked (at most CND_IMAGE_MAX_SIDE a side, CND_IMAGE_MAX_PIXELS
 * in all) before any pixel buffer is allocated; a libjpeg warning (a truncated or corrupt
 * stream it would paper over with grey) is an error. Every error names the file.
 *
 * Decoding runs on the training thread pool (common/pool.h), each task on a fixed range of
 * files; the first failing file (in file order) is the one reported.
 */
#include "data.h"
#include "fileio.h"
#include "pool.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CND_IMAGE_MAX_FILE   ((size_t)64 << 20)
#define CND_IMAGE_MAX_SIDE   16384
#define CND_IMAGE_MAX_PIXELS ((size_t)1 << 24)
#define S_MAX_FILES          ((size_t)1 << 24)

typedef struct {
    char *path; /* owned */
    uint8_t cls;
} s_file;

typedef struct {
    s_file *f;
    size_t n, cap;
} s_list;

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int s_is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* The sorted names in dir that are directories (want_dirs) or image files, skipping hidden
 * entries. */
static int s_names(char ***out, size_t *n, const char *dir, int want_dirs)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return cnd_errf(CND_EIO, "%s: cannot open the folder", dir);
    size_t cap = 0;
    char **v = NULL;
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) {
            rc = cnd_errf(CND_EINVAL, "%s: path too long", dir);
            break;
        }
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : !(S_ISREG(st.st_mode) && s_is_image(e->d_name)))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = cap <= S_MAX_FILES ? realloc(v, cap * sizeof *nv) : NULL;
            if (!nv) {
                rc = cnd_errf(CND_ENOMEM, "%s: too many entries", dir);
                break;
            }
            v = nv;
        }
        if (!(v[*n] = strdup(e->d_name)))
            rc = CND_ENOMEM;
        else
            (*n)++;
    }
    closedir(d);
    if (v) qsort(v, *n, sizeof *v, s_cmp_str);
    *out = v;
    return rc;
}

static void s_free_names(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

/* --- decoding ------------------------------------------------------------------------------ */

typedef struct {
    int w, h, c; /* decoded size; c is 1 or 3 */
    uint8_t *px; /* h x w x c, owned */
} s_img;

static int s_check_dims(const char *path, unsigned w, unsigned h)
{
    if (w == 0 || h == 0 || w > CND_IMAGE_MAX_SIDE || h > CND_IMAGE_MAX_SIDE ||
        (size_t)w * h > CND_IMAGE_MAX_PIXELS)
        return cnd_errf(CND_EFORMAT, "%s: image of %ux%u pixels (limits: %d a side, %zu in all)",
                        path, w, h, CND_IMAGE_MAX_SIDE, CND_IMAGE_MAX_PIXELS);
    return 0;
}

static int s_png(s_img *im, const char *path, const uint8_t *buf, size_t len, int want_c,
                 int header_only)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&p, buf, len))
        return cnd_errf(CND_EFORMAT, "%s: corrupt or truncated PNG (%s)", path, p.message);
    int rc = s_check_dims(path, p.width, p.height);
    im->w = (int)p.width;
    im->h = (int)p.height;
    im->c = want_c ? want_c : (p.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    if (rc || header_only) {
        png_image_free(&p);
        return rc;
    }
    p.format = im->c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (!(im->px = malloc(PNG_IMAGE_SIZE(p)))) {
        png_image_free(&p);
        return cnd_errf(CND_ENOMEM, "%s: out of memory", path);
    }
    if (!png_image_finish_read(&p, NULL, im->px, 0, NULL)) {
        free(im->px);
        im->px = NULL;
        return cnd_errf(CND_EFORMAT, "%s: corrupt or truncated PNG (%s)", path, p.message);
    }
    return 0;
}

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} s_jerr;

static void s_jpeg_fail(j_common_ptr j)
{
    s_jerr *e = (s_jerr *)j->err;
    (*j->err->format_message)(j, e->msg);
    longjmp(e->jump, 1);
}

/* A warning means libjpeg met a damaged stream and would fill in grey: an error here. */
static void s_jpeg_message(j_common_ptr j, int level)
{
    if (level < 0) s_jpeg_fail(j);
}

static int s_jpeg(s_img *im, const char *path, const uint8_t *buf, size_t len, int want_c,
                  int header_only)
{
    struct jpeg_decompress_struct j;
    s_jerr e;
    volatile int rc = 0;
    uint8_t *volatile px = NULL;
    snprintf(e.msg, sizeof e.msg, "out of memory");
    j.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = s_jpeg_fail;
    e.pub.emit_message = s_jpeg_message;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&j);
        free(px);
        return cnd_errf(CND_EFORMAT, "%s: corrupt or truncated JPEG (%s)", path, e.msg);
    }
    jpeg_create_decompress(&j);
    jpeg_mem_src(&j, buf, (unsigned long)len);
    jpeg_read_header(&j, TRUE);
    rc = s_check_dims(path, j.image_width, j.image_height);
    im->w = (int)j.image_width;
    im->h = (int)j.image_height;
    im->c = want_c ? want_c : j.num_components == 1 ? 1 : 3;
    if (rc || header_only) {
        jpeg_destroy_decompress(&j);
        return rc;
    }
    j.out_color_space = im->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&j);
    size_t row = (size_t)im->w * (size_t)im->c;
    if (!(px = malloc(row * (size_t)im->h))) longjmp(e.jump, 1);
    while (j.output_scanline < j.output_height) {
        JSAMPROW r = px + (size_t)j.output_scanline * row;
        jpeg_read_scanlines(&j, &r, 1);
    }
    jpeg_finish_decompress(&j);
    jpeg_destroy_decompress(&j);
    im->px = px;
    return 0;
}

/* Decodes (or, header_only, sizes) one image held in memory; `what` names it. */
static int s_decode_buf(s_img *im, const char *what, const uint8_t *buf, size_t len, int want_c,
                        int header_only)
{
    memset(im, 0, sizeof *im);
    if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8))
        return s_png(im, what, buf, len, want_c, header_only);
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return s_jpeg(im, what, buf, len, want_c, header_only);
    return cnd_errf(CND_EFORMAT, "%s: neither a PNG nor a JPEG file", what);
}

/* The same for a file. */
static int s_decode(s_img *im, const char *path, int want_c, int header_only)
{
    memset(im, 0, sizeof *im);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_file_read(path, CND_IMAGE_MAX_FILE, &buf, &len);
    if (!rc) rc = s_decode_buf(im, path, buf, len, want_c, header_only);
    free(buf);
    return rc;
}

/* Scales im (keeping its aspect) so its shorter side fits C x H x W, centre-crops, and writes
 * CHW floats to out. */
static void s_fit(float *out, const s_img *im, int C, int H, int W)
{
    if (im->w == W && im->h == H) {
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < (size_t)H * W; p++)
                out[(size_t)c * H * W + p] = im->px[p * (size_t)C + (size_t)c];
        return;
    }
    double s = (double)W / im->w > (double)H / im->h ? (double)W / im->w : (double)H / im->h;
    double ox = (im->w * s - W) / 2.0, oy = (im->h * s - H) / 2.0;
    for (int y = 0; y < H; y++) {
        double sy = (y + oy + 0.5) / s - 0.5;
        int y0 = sy < 0 ? 0 : (int)sy, y1 = y0 + 1 < im->h ? y0 + 1 : im->h - 1;
        double fy = sy < 0 ? 0 : sy - y0;
        for (int x = 0; x < W; x++) {
            double sx = (x + ox + 0.5) / s - 0.5;
            int x0 = sx < 0 ? 0 : (int)sx, x1 = x0 + 1 < im->w ? x0 + 1 : im->w - 1;
            double fx = sx < 0 ? 0 : sx - x0;
            if (x0 >= im->w) x0 = x1 = im->w - 1;
            if (y0 >= im->h) y0 = y1 = im->h - 1;
            for (int c = 0; c < C; c++) {
                const uint8_t *p = im->px;
                size_t w = (size_t)im->w;
                double a = p[((size_t)y0 * w + (size_t)x0) * (size_t)C + (size_t)c];
                double b = p[((size_t)y0 * w + (size_t)x1) * (size_t)C + (size_t)c];
                double d = p[((size_t)y1 * w + (size_t)x0) * (size_t)C + (size_t)c];
                double e = p[((size_t)y1 * w + (size_t)x1) * (size_t)C + (size_t)c];
                double v = (a * (1 - fx) + b * fx) * (1 - fy) + (d * (1 - fx) + e * fx) * fy;
                out[((size_t)c * H + (size_t)y) * W + (size_t)x] = (float)v;
            }
        }
    }
}

typedef struct {
    const s_list *l;
    cnd_dataset_t *ds;
    size_t *fail_at; /* per task: index of the first failing file, or SIZE_MAX */
    char (*why)[512];
} s_job;

static void s_task(void *ctx, int task, int ntasks)
{
    s_job *j = ctx;
    long lo, hi;
    cnd_pool_range((long)j->l->n, ntasks, task, &lo, &hi);
    cnd_shape_t sh = j->ds->shape;
    size_t d = cnd_shape_size(sh);
    for (long i = lo; i < hi; i++) {
        s_img im;
        int rc = s_decode(&im, j->l->f[i].path, sh.c, 0);
        if (rc) {
            j->fail_at[task] = (size_t)i;
            snprintf(j->why[task], sizeof j->why[task], "%s", cnd_err_detail());
            return;
        }
        s_fit(j->ds->x + (size_t)i * d, &im, sh.c, sh.h, sh.w);
        j->ds->y[i] = j->l->f[i].cls;
        free(im.px);
    }
}

/* Every image file of every class folder, in order. */
static int s_collect(s_list *l, char ***classes, size_t *ncls, const char *dir)
{
    int rc = s_names(classes, ncls, dir, 1);
    if (rc) return rc;
    if (*ncls == 0) return cnd_errf(CND_EFORMAT, "%s: no class folders", dir);
    if (*ncls > 256) return cnd_errf(CND_EFORMAT, "%s: %zu class folders, at most 256", dir, *ncls);
    for (size_t k = 0; k < *ncls; k++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, (*classes)[k]);
        char **files = NULL;
        size_t nf = 0;
        if ((rc = s_names(&files, &nf, sub, 0))) {
            s_free_names(files, nf);
            return rc;
        }
        for (size_t i = 0; !rc && i < nf; i++) {
            if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 1024;
                s_file *nfv = cap <= S_MAX_FILES ? realloc(l->f, cap * sizeof *nfv) : NULL;
                if (!nfv) {
                    rc = cnd_errf(CND_ENOMEM, "%s: too many files", dir);
                    break;
                }
                l->f = nfv;
                l->cap = cap;
            }
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", sub, files[i]);
            if (!(l->f[l->n].path = strdup(p)))
                rc = CND_ENOMEM;
            else
                l->f[l->n++].cls = (uint8_t)k;
        }
        s_free_names(files, nf);
        if (rc) return rc;
    }
    if (l->n == 0)
        return cnd_errf(CND_EFORMAT, "%s: no PNG or JPEG files in its class folders", dir);
    return 0;
}

/* The dataset of l's files decoded to `shape`. */
static int s_load(cnd_dataset_t *ds, const s_list *l)
{
    size_t d = cnd_shape_size(ds->shape);
    if (d && l->n > CND_DATA_MAX_BYTES / sizeof(float) / d)
        return cnd_errf(CND_ERANGE, "%s: %zu images of %zu values exceed %zu bytes", ds->name, l->n,
                        d, CND_DATA_MAX_BYTES);
    ds->n = l->n;
    ds->x = malloc(l->n * d * sizeof(float));
    ds->y = malloc(l->n);
    int nt = cnd_pool_threads() * 4;
    size_t *fail = malloc((size_t)nt * sizeof *fail);
    char(*why)[512] = calloc((size_t)nt, sizeof *why);
    int rc = 0;
    if (!ds->x || !ds->y || !fail || !why) {
        rc = cnd_errf(CND_ENOMEM, "%s: out of memory", ds->name);
    } else {
        for (int t = 0; t < nt; t++) fail[t] = SIZE_MAX;
        s_job j = {l, ds, fail, why};
        cnd_pool_run(s_task, &j, nt);
        for (int t = 0; t < nt && !rc; t++)
            if (fail[t] != SIZE_MAX) rc = cnd_errf(CND_EFORMAT, "%s", why[t]);
    }
    free(fail);
    free(why);
    return rc;
}

int cnd_data_image(float **out, cnd_shape_t *shape, const uint8_t *buf, size_t len,
                   const char *what)
{
    *out = NULL;
    if (shape->c && shape->c != 1 && shape->c != 3)
        return cnd_errf(CND_EINVAL, "%s: images have 1 or 3 channels, not %d", what, shape->c);
    if (shape->c && (shape->h < 1 || shape->w < 1 || shape->h > CND_IMAGE_MAX_SIDE ||
                     shape->w > CND_IMAGE_MAX_SIDE))
        return cnd_errf(CND_EINVAL, "%s: target shape out of range", what);
    s_img im;
    int rc = s_decode_buf(&im, what, buf, len, shape->c, 0);
    if (rc) return rc;
    if (!shape->c) *shape = (cnd_shape_t){im.c, im.h, im.w};
    if (!(*out = malloc(cnd_shape_size(*shape) * sizeof(float)))) {
        free(im.px);
        return cnd_errf(CND_ENOMEM, "%s: out of memory", what);
    }
    s_fit(*out, &im, shape->c, shape->h, shape->w);
    free(im.px);
    return 0;
}

int cnd_data_load_folder(cnd_dataset_t **out, const char *dir, const cnd_shape_t *shape)
{
    *out = NULL;
    s_list l = {NULL, 0, 0};
    char **classes = NULL;
    size_t ncls = 0;
    cnd_dataset_t *ds = calloc(1, sizeof *ds);
    int rc = ds ? s_collect(&l, &classes, &ncls, dir) : CND_ENOMEM;
    if (!rc) {
        snprintf(ds->name, sizeof ds->name, "%s", dir);
        if (shape && shape->c) {
            ds->shape = *shape;
            if (shape->c != 1 && shape->c != 3)
                rc = cnd_errf(CND_EINVAL,
                              "%s: images have 1 (grayscale) or 3 (RGB) channels, "
                              "not %d",
                              dir, shape->c);
        } else { /* the first image's */
            s_img im;
            if (!(rc = s_decode(&im, l.f[0].path, 0, 1)))
                ds->shape = (cnd_shape_t){im.c, im.h, im.w};
        }
    }
    if (!rc) {
        ds->n_classes = (int)ncls;
        ds->class_names = classes;
        classes = NULL;
        rc = s_load(ds, &l);
    }
    s_free_names(classes, ncls);
    for (size_t i = 0; i < l.n; i++) free(l.f[i].path);
    free(l.f);
    if (rc) {
        cnd_data_destroy(&ds);
        return rc;
    }
    *out = ds;
    return 0;
}
