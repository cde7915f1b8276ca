/*
 * loss.c: softmax cross-entropy (see loss.h). Softmax subtracts the row maximum before exp so
 * it never overflows; the loss uses log-sum-exp directly instead of log(softmax), which keeps
 * it finite even when a probability underflows to zero.
 */
#include "loss.h"

#include <math.h>
#include <stddef.h>

void cnd_softmax(float *p, const float *z, int K, float T)
{
    float mx = z[0];
    for (int k = 1; k < K; k++)
        if (z[k] > mx) mx = z[k];
    float s = 0.0f, invT = 1.0f / T;
    for (int k = 0; k < K; k++) {
        p[k] = expf((z[k] - mx) * invT);
        s += p[k];
    }
    float inv = 1.0f / s;
    for (int k = 0; k < K; k++) p[k] *= inv;
}

int cnd_argmax(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

float cnd_loss_xent(float *dlogits, const float *logits, const uint8_t *labels, int B, int K,
                    int *correct)
{
    double total = 0.0;
    int ok = 0;
    float invB = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        int y = labels[b];
        float mx = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > mx) mx = z[k];
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)(z[k] - mx));
        total += log(s) - (double)(z[y] - mx);
        ok += cnd_argmax(z, K) == y;
        if (dlogits) {
            float *d = dlogits + (size_t)b * K;
            float inv = (float)(1.0 / s);
            for (int k = 0; k < K; k++) d[k] = expf(z[k] - mx) * inv * invB;
            d[y] -= invB;
        }
    }
    if (correct) *correct = ok;
    return (float)(total / B);
}
