/*
 * test_fedavg.c: the coordinator's FedAvg step (cnd_fedavg_apply, coordinator/coord_round.c)
 * against the textbook recurrence, with and without server momentum.
 */
#include "check.h"
#include "coord_round.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_fedavg(void)
{
    enum { P = 6, S = 2 };
    float params[P] = {1, 2, 3, 4, 5, 6}, state[S] = {0.5f, 1.5f};
    float avg[P + S] = {0.1f, -0.2f, 0.3f, 0, 1, -1, 0.25f, -0.5f};
    float mom[P] = {0};
    float p0[P], s0[S];
    memcpy(p0, params, sizeof p0);
    memcpy(s0, state, sizeof s0);
    /* two steps with momentum 0.9, lr 0.5, against the textbook recurrence */
    double m[P] = {0};
    for (int step = 0; step < 2; step++) {
        cnd_fedavg_apply(params, P, state, S, avg, mom, 0.5f, 0.9f);
        for (int i = 0; i < P; i++) {
            m[i] = 0.9 * m[i] + avg[i];
            p0[i] += (float)(0.5 * m[i]);
        }
        for (int i = 0; i < S; i++) s0[i] += avg[P + i];
    }
    for (int i = 0; i < P; i++) CHECK_NEAR(params[i], p0[i], 1e-6);
    for (int i = 0; i < S; i++) CHECK_NEAR(state[i], s0[i], 1e-6); /* running stats: plain mean */
    /* without momentum: exactly params + lr * avg */
    float q[P] = {1, 2, 3, 4, 5, 6};
    cnd_fedavg_apply(q, P, NULL, 0, avg, NULL, 1.0f, 0);
    for (int i = 0; i < P; i++) CHECK(q[i] == (float)(i + 1) + avg[i]);
}

int main(void)
{
    test_fedavg();
    return check_result("test_fedavg");
}
