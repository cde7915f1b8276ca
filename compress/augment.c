/*
 * augment.c: see augment.h. Samples are NCHW; each sample draws its own shift and flip.
 */
#include "augment.h"
#include "error.h"

#include <string.h>

int cnd_augment_parse(const char *s, unsigned *flags)
{
    if (!strcmp(s, "none"))
        *flags = 0;
    else if (!strcmp(s, "shift"))
        *flags = CND_AUG_SHIFT;
    else if (!strcmp(s, "flip"))
        *flags = CND_AUG_FLIP;
    else if (!strcmp(s, "shift+flip") || !strcmp(s, "flip+shift"))
        *flags = CND_AUG_SHIFT | CND_AUG_FLIP;
    else
        return cnd_errf(CND_EINVAL, "--augment: '%s' is not none, shift, flip or shift+flip", s);
    return 0;
}

void cnd_augment_batch(float *x, float *work, int B, cnd_shape_t s, const float *bg, unsigned flags,
                       int max_shift, cnd_rng_t *rng)
{
    if (!flags || s.h * s.w <= 1) return;
    size_t hw = (size_t)s.h * s.w, d = (size_t)s.c * hw;
    for (int b = 0; b < B; b++) {
        float *p = x + (size_t)b * d;
        int dx = 0, dy = 0, flip = 0;
        if (flags & CND_AUG_SHIFT) {
            dx = (int)cnd_rng_below(rng, (uint64_t)(2 * max_shift + 1)) - max_shift;
            dy = (int)cnd_rng_below(rng, (uint64_t)(2 * max_shift + 1)) - max_shift;
        }
        if (flags & CND_AUG_FLIP) flip = (int)(cnd_rng_u64(rng) >> 63);
        if (!dx && !dy && !flip) continue;
        memcpy(work, p, d * sizeof(float));
        for (int c = 0; c < s.c; c++) {
            const float *src = work + (size_t)c * hw;
            float *dst = p + (size_t)c * hw;
            for (int i = 0; i < s.h; i++)
                for (int j = 0; j < s.w; j++) {
                    int si = i - dy, sj = j - dx;
                    if (flip) sj = s.w - 1 - sj;
                    dst[i * s.w + j] =
                        (si >= 0 && si < s.h && sj >= 0 && sj < s.w) ? src[si * s.w + sj] : bg[c];
                }
        }
    }
}
