/*
 * fuzz_image.c: the image decoders of `folder:` data (compress/data_folder.c: libpng's
 * simplified API, libjpeg-turbo with warnings as errors, the header checks and the
 * scale-and-crop), through cnd_data_image. The first input byte chooses the target: its low two
 * bits 0 = the image's own size and colour, 1 = 1x28x28, 2 = 3x32x32, 3 = 1x7x5; the rest is
 * the file. Seeds in corpus/image/: small PNGs (gray, RGB, palette, 16-bit) and JPEGs (gray,
 * RGB, progressive) written by tests/fuzz/mkcorpus.c.
 *
 * Checked: a decoded image has the shape asked for (or, for its own size, at most 16384 a side
 * and 2^24 pixels: the limits are applied before the pixel buffer is allocated) and every value
 * is within 0..255.
 */
#include "data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const cnd_shape_t targets[4] = {{0, 0, 0}, {1, 28, 28}, {3, 32, 32}, {1, 7, 5}};
    cnd_shape_t want = targets[data[0] & 3], got = want;
    float *x = NULL;
    if (cnd_data_image(&x, &got, data + 1, size - 1, "fuzz input") == 0) {
        fuzz_note("image decoded");
        if (want.c && (got.c != want.c || got.h != want.h || got.w != want.w)) abort();
        if (got.c != 1 && got.c != 3) abort();
        if (got.h > 16384 || got.w > 16384 || (size_t)got.h * (size_t)got.w > ((size_t)1 << 24))
            abort();
        for (size_t i = 0; i < cnd_shape_size(got); i++)
            if (!(x[i] >= 0.0f && x[i] <= 255.0f)) abort();
        free(x);
    }
    fuzz_touch_error();
    return 0;
}
