/* test_pool.c: every task of every job runs exactly once, across thread-count changes and
 * many back-to-back jobs (the pattern of a training step). */
#include "check.h"
#include "pool.h"

#include <stdatomic.h>
#include <string.h>

typedef struct {
    atomic_int hits[256];
    int n;
} job_t;

static void task(void *ctx, int i, int n)
{
    job_t *j = ctx;
    if (n != j->n) return;
    atomic_fetch_add(&j->hits[i], 1);
}

int main(void)
{
    const int threads[] = {1, 2, 4, 3, 1, 2};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        CHECK(cnd_pool_set_threads(threads[k]) == 0);
        CHECK_EQ_INT(cnd_pool_threads(), threads[k]);
        int bad = 0;
        for (int rep = 0; rep < 3000; rep++) {
            job_t j;
            j.n = 1 + rep % 37;
            for (int i = 0; i < 256; i++) atomic_init(&j.hits[i], 0);
            cnd_pool_run(task, &j, j.n);
            for (int i = 0; i < 256; i++) bad += atomic_load(&j.hits[i]) != (i < j.n);
        }
        CHECK_EQ_INT(bad, 0);
    }
    long lo, hi, total = 0;
    for (int i = 0; i < 7; i++) {
        cnd_pool_range(100, 7, i, &lo, &hi);
        CHECK(hi - lo == 14 || hi - lo == 15);
        total += hi - lo;
    }
    CHECK_EQ_INT(total, 100);
    CHECK(cnd_pool_set_threads(65) == -2);
    CHECK(cnd_pool_set_threads(0) == 0 && cnd_pool_threads() >= 1);
    CHECK(cnd_pool_set_threads(1) == 0);
    return check_result("test_pool");
}
