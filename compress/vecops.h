/*
 * vecops.h: small float kernels shared by the layers, vectorised explicitly with GCC/Clang
 * vector extensions so they run in SIMD lanes without -ffast-math or -march flags.
 *
 * A plain `for (...) acc += x[i]` is a serial chain of dependent adds (one every 4 cycles),
 * because IEEE addition is not associative and the compiler must keep the order. Summing into
 * 16 independent partial sums (four 4-lane vectors) in a fixed pattern keeps the result
 * deterministic (the same bits on every run and every thread count) while the adds run in
 * parallel lanes.
 */
#ifndef CND_VECOPS_H
#define CND_VECOPS_H

#include <stddef.h>
#include <string.h>

typedef float cnd_v4f __attribute__((vector_size(16)));

static inline cnd_v4f cnd_v4_load(const float *p)
{
    cnd_v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void cnd_v4_store(float *p, cnd_v4f v)
{
    memcpy(p, &v, sizeof v);
}

static inline float cnd_v4_reduce(cnd_v4f a0, cnd_v4f a1, cnd_v4f a2, cnd_v4f a3)
{
    cnd_v4f s = (a0 + a1) + (a2 + a3);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Sum of x[0..n). */
static inline float cnd_vsum(const float *x, size_t n)
{
    cnd_v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 += cnd_v4_load(x + i);
        a1 += cnd_v4_load(x + i + 4);
        a2 += cnd_v4_load(x + i + 8);
        a3 += cnd_v4_load(x + i + 12);
    }
    float t = cnd_v4_reduce(a0, a1, a2, a3);
    for (; i < n; i++) t += x[i];
    return t;
}

/* Sum of x[i] * y[i]. */
static inline float cnd_vdot(const float *x, const float *y, size_t n)
{
    cnd_v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 += cnd_v4_load(x + i) * cnd_v4_load(y + i);
        a1 += cnd_v4_load(x + i + 4) * cnd_v4_load(y + i + 4);
        a2 += cnd_v4_load(x + i + 8) * cnd_v4_load(y + i + 8);
        a3 += cnd_v4_load(x + i + 12) * cnd_v4_load(y + i + 12);
    }
    float t = cnd_v4_reduce(a0, a1, a2, a3);
    for (; i < n; i++) t += x[i] * y[i];
    return t;
}

/* One 4-lane step of the relu gradient: src where mask > 0, else 0. */
static inline cnd_v4f cnd_v4_relu_grad(cnd_v4f src, cnd_v4f mask)
{
    const cnd_v4f zero = {0};
    return (cnd_v4f)((__typeof__((mask > zero)))((mask > zero) & (__typeof__((mask > zero)))src));
}

/* dst[i] = mask[i] > 0 ? src[i] : 0 (the relu gradient, masked by the rectified output);
 * returns the sum of dst, which callers need as a bias gradient, in the same pass. dst may
 * equal src. */
static inline float cnd_vrelu_mask_sum(float *dst, const float *src, const float *mask, size_t n)
{
    cnd_v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        cnd_v4f v0 = cnd_v4_relu_grad(cnd_v4_load(src + i), cnd_v4_load(mask + i));
        cnd_v4f v1 = cnd_v4_relu_grad(cnd_v4_load(src + i + 4), cnd_v4_load(mask + i + 4));
        cnd_v4f v2 = cnd_v4_relu_grad(cnd_v4_load(src + i + 8), cnd_v4_load(mask + i + 8));
        cnd_v4f v3 = cnd_v4_relu_grad(cnd_v4_load(src + i + 12), cnd_v4_load(mask + i + 12));
        cnd_v4_store(dst + i, v0);
        cnd_v4_store(dst + i + 4, v1);
        cnd_v4_store(dst + i + 8, v2);
        cnd_v4_store(dst + i + 12, v3);
        a0 += v0;
        a1 += v1;
        a2 += v2;
        a3 += v3;
    }
    float t = cnd_v4_reduce(a0, a1, a2, a3);
    for (; i < n; i++) {
        float v = mask[i] > 0.0f ? src[i] : 0.0f;
        dst[i] = v;
        t += v;
    }
    return t;
}

#endif
