/*
 * test_data_folder.c: image folders (compress/data_folder.c). Images are written here with
 * libpng and libjpeg-turbo: grayscale and RGB PNGs read back exactly, JPEGs within the codec's
 * error, classes named and numbered by their sorted folder names, images of other sizes scaled
 * and centre-cropped, and hostile files (truncated PNG and JPEG, a PNG header claiming 10^5 x
 * 10^5 pixels, a text file named .png, an empty tree) refused naming the file, with nothing
 * returned.
 *
 * With `--write-fmnist DIR [N]` it instead writes the first N (default 60,000) Fashion-MNIST
 * training images as DIR/<class name>/<index>.png, for docs/benchmarks.md's folder loading
 * figure.
 */
#include "check.h"
#include "data.h"
#include "fileio.h"

#include <stdio.h> /* before jpeglib.h */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static char s_dir[64];

static void s_png(const char *path, int w, int h, int c, const uint8_t *px)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)w;
    p.height = (png_uint_32)h;
    p.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    CHECK(png_image_write_to_file(&p, path, 0, px, 0, NULL) != 0);
}

static void s_jpeg(const char *path, int w, int h, int c, const uint8_t *px)
{
    struct jpeg_compress_struct j;
    struct jpeg_error_mgr e;
    j.err = jpeg_std_error(&e);
    jpeg_create_compress(&j);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    jpeg_stdio_dest(&j, f);
    j.image_width = (JDIMENSION)w;
    j.image_height = (JDIMENSION)h;
    j.input_components = c;
    j.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&j);
    jpeg_set_quality(&j, 100, TRUE);
    jpeg_start_compress(&j, TRUE);
    while (j.next_scanline < j.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)j.next_scanline * (size_t)w * (size_t)c);
        jpeg_write_scanlines(&j, &r, 1);
    }
    jpeg_finish_compress(&j);
    jpeg_destroy_compress(&j);
    fclose(f);
}

static const char *s_path(const char *a, const char *b)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s%s%s", s_dir, a, b ? "/" : "", b ? b : "");
    return buf[k];
}

static void s_expect_fail(const char *spec, const char *needle)
{
    cnd_dataset_t *ds = NULL;
    int rc = cnd_data_open(&ds, spec, "train");
    CHECK(rc < 0 && ds == NULL);
    if (!strstr(cnd_err_detail(), needle))
        fprintf(stderr, "detail '%s' lacks '%s'\n", cnd_err_detail(), needle);
    CHECK(strstr(cnd_err_detail(), needle) != NULL);
    cnd_data_destroy(&ds);
}

/* Two classes, PNG and JPEG, gray and RGB: values, classes, channels. */
static void test_folder(void)
{
    mkdir(s_path("t", NULL), 0755);
    mkdir(s_path("t/zebra", NULL), 0755);
    mkdir(s_path("t/apple", NULL), 0755);
    uint8_t g[4 * 4], rgb[4 * 4 * 3];
    for (int i = 0; i < 16; i++) g[i] = (uint8_t)(i * 16);
    for (int i = 0; i < 16; i++) rgb[i * 3] = 200, rgb[i * 3 + 1] = 100, rgb[i * 3 + 2] = 0;
    s_png(s_path("t/zebra", "a.png"), 4, 4, 1, g);
    s_png(s_path("t/apple", "b.PNG"), 4, 4, 3, rgb);
    s_jpeg(s_path("t/apple", "c.jpg"), 4, 4, 1, g);
    FILE *f = fopen(s_path("t/apple", "notes.txt"), "w"); /* not an image: skipped */
    if (f) fclose(f);
    char spec[300];
    snprintf(spec, sizeof spec, "folder:%s", s_path("t", NULL));
    cnd_dataset_t *ds = NULL;
    cnd_shape_t one = {1, 4, 4};
    CHECK_EQ_INT(cnd_data_open_for(&ds, spec, "train", &one), 0);
    CHECK(ds && ds->n == 3 && ds->n_classes == 2 && ds->shape.c == 1);
    if (ds) {
        CHECK(!strcmp(ds->class_names[0], "apple") && !strcmp(ds->class_names[1], "zebra"));
        CHECK(ds->y[0] == 0 && ds->y[1] == 0 && ds->y[2] == 1); /* apple/b, apple/c, zebra/a */
        for (int i = 0; i < 16; i++) CHECK(ds->x[32 + i] == (float)(i * 16)); /* exact PNG */
        /* RGB read as gray: libpng's luminance of (200, 100, 0) */
        CHECK(ds->x[0] > 60 && ds->x[0] < 200 && ds->x[5] == ds->x[0]);
        float worst = 0;
        for (int i = 0; i < 16; i++) {
            float e = ds->x[16 + i] - (float)(i * 16);
            if (e < 0) e = -e;
            if (e > worst) worst = e;
        }
        CHECK(worst <= 8); /* JPEG at quality 100 */
    }
    cnd_data_destroy(&ds);
    /* three channels: gray replicated, RGB as is (CHW) */
    snprintf(spec, sizeof spec, "folder:%s,shape=3x4x4", s_path("t", NULL));
    CHECK_EQ_INT(cnd_data_open(&ds, spec, "train"), 0);
    CHECK(ds && ds->shape.c == 3 && ds->x[0] == 200 && ds->x[16] == 100 && ds->x[32] == 0);
    CHECK(ds && ds->x[2 * 48 + 5] == 80 && ds->x[2 * 48 + 16 + 5] == 80);
    cnd_data_destroy(&ds);
    /* without a shape: the first image's size, RGB because it is */
    snprintf(spec, sizeof spec, "folder:%s", s_path("t", NULL));
    CHECK_EQ_INT(cnd_data_open(&ds, spec, "train"), 0);
    CHECK(ds && ds->shape.c == 3 && ds->shape.h == 4 && ds->shape.w == 4);
    cnd_data_destroy(&ds);
}

/* A 12 x 6 image (left third 0, middle third 100, right third 250) fitted to 1 x 3 x 3: scaled
 * by 1/2 to 6 x 3, then the centre 3 columns kept. And 8 x 8 of one value to 4 x 4. */
static void test_resize_crop(void)
{
    mkdir(s_path("r", NULL), 0755);
    mkdir(s_path("r/k", NULL), 0755);
    uint8_t px[12 * 6];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 12; x++) px[y * 12 + x] = x < 4 ? 0 : x < 8 ? 100 : 250;
    s_png(s_path("r/k", "wide.png"), 12, 6, 1, px);
    char spec[300];
    snprintf(spec, sizeof spec, "folder:%s,shape=1x3x3", s_path("r", NULL));
    cnd_dataset_t *ds = NULL;
    CHECK_EQ_INT(cnd_data_open(&ds, spec, "train"), 0);
    if (ds) {
        for (int y = 0; y < 3; y++) {
            CHECK(ds->x[y * 3 + 1] == 100.0f); /* the middle column is the middle third */
            CHECK(ds->x[y * 3 + 0] < 100.0f && ds->x[y * 3 + 2] > 100.0f);
        }
    }
    cnd_data_destroy(&ds);
}

/* Hostile and broken input: refused naming the file, nothing returned. */
static void test_hostile(void)
{
    uint8_t px[16 * 16];
    memset(px, 77, sizeof px);
    char spec[300];
    /* truncated PNG */
    mkdir(s_path("h1", NULL), 0755);
    mkdir(s_path("h1/c", NULL), 0755);
    s_png(s_path("h1/c", "t.png"), 16, 16, 1, px);
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_file_read(s_path("h1/c", "t.png"), 1 << 20, &b, &n), 0);
    CHECK_EQ_INT(cnd_file_write_atomic(s_path("h1/c", "t.png"), b, n / 2, 0644), 0);
    snprintf(spec, sizeof spec, "folder:%s", s_path("h1", NULL));
    s_expect_fail(spec, "t.png: corrupt or truncated PNG");
    /* a PNG header claiming 100000 x 100000 pixels (valid CRC): refused before allocation */
    if (b && n > 33) {
        static const uint8_t big[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};
        memcpy(b + 16, big, 8);
        uint32_t crc = (uint32_t)crc32(0, b + 12, 17);
        b[29] = (uint8_t)(crc >> 24), b[30] = (uint8_t)(crc >> 16);
        b[31] = (uint8_t)(crc >> 8), b[32] = (uint8_t)crc;
        CHECK_EQ_INT(cnd_file_write_atomic(s_path("h1/c", "t.png"), b, n, 0644), 0);
        s_expect_fail(spec, "t.png: image of 100000x100000 pixels");
    }
    free(b);
    /* truncated JPEG */
    mkdir(s_path("h2", NULL), 0755);
    mkdir(s_path("h2/c", NULL), 0755);
    for (int i = 0; i < 256; i++) px[i] = (uint8_t)(i * 7);
    s_jpeg(s_path("h2/c", "t.jpg"), 16, 16, 1, px);
    b = NULL;
    CHECK_EQ_INT(cnd_file_read(s_path("h2/c", "t.jpg"), 1 << 20, &b, &n), 0);
    CHECK_EQ_INT(cnd_file_write_atomic(s_path("h2/c", "t.jpg"), b, n * 2 / 3, 0644), 0);
    free(b);
    snprintf(spec, sizeof spec, "folder:%s", s_path("h2", NULL));
    s_expect_fail(spec, "t.jpg: corrupt or truncated JPEG");
    /* text named .png; a tree with no classes; an image-less class tree; bad options */
    mkdir(s_path("h3", NULL), 0755);
    mkdir(s_path("h3/c", NULL), 0755);
    CHECK_EQ_INT(cnd_file_write_atomic(s_path("h3/c", "x.png"), "hello", 5, 0644), 0);
    snprintf(spec, sizeof spec, "folder:%s", s_path("h3", NULL));
    s_expect_fail(spec, "x.png: neither a PNG nor a JPEG");
    mkdir(s_path("h4", NULL), 0755);
    snprintf(spec, sizeof spec, "folder:%s", s_path("h4", NULL));
    s_expect_fail(spec, "no class folders");
    mkdir(s_path("h4/c", NULL), 0755);
    s_expect_fail(spec, "no PNG or JPEG files");
    snprintf(spec, sizeof spec, "folder:%s,shape=2x4x4", s_path("t", NULL));
    s_expect_fail(spec, "1 (grayscale) or 3 (RGB) channels, not 2");
    snprintf(spec, sizeof spec, "folder:%s,size=4", s_path("t", NULL));
    s_expect_fail(spec, "the only option is shape=");
    s_expect_fail("folder:/nonexistent-cnd", "cannot open the folder");
}

static int s_write_fmnist(const char *dir, long n)
{
    cnd_dataset_t *ds = NULL;
    if (cnd_data_load_fmnist(&ds, NULL, "train")) {
        fprintf(stderr, "%s\n", cnd_err_detail());
        return 1;
    }
    mkdir(dir, 0755);
    for (int k = 0; k < ds->n_classes; k++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, ds->class_names[k]);
        for (char *q = p + strlen(dir) + 1; *q; q++)
            if (*q == '/') *q = '_'; /* "T-shirt/top" */
        mkdir(p, 0755);
    }
    uint8_t px[28 * 28];
    for (long i = 0; i < n && (size_t)i < ds->n; i++) {
        char p[1024];
        int w = snprintf(p, sizeof p, "%s/%s", dir, ds->class_names[ds->y[i]]);
        for (char *q = p + strlen(dir) + 1; *q; q++)
            if (*q == '/') *q = '_';
        snprintf(p + w, sizeof p - (size_t)w, "/%06ld.png", i);
        for (int j = 0; j < 28 * 28; j++) px[j] = (uint8_t)ds->x[(size_t)i * 784 + (size_t)j];
        s_png(p, 28, 28, 1, px);
    }
    cnd_data_destroy(&ds);
    return check_failures != 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--write-fmnist"))
        return s_write_fmnist(argv[2], argc > 3 ? atol(argv[3]) : 60000);
    snprintf(s_dir, sizeof s_dir, "/tmp/cnd_test_folder_XXXXXX");
    if (!mkdtemp(s_dir)) return 1;
    test_folder();
    test_resize_crop();
    test_hostile();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd) != 0) return 1;
    return check_result("test_data_folder");
}
