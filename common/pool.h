/*
 * pool.h: a process-wide fork-join pool of worker threads for the training kernels.
 *
 * Why not OpenBLAS's own threads: a training step is a chain of GEMMs and memory-bound passes
 * (im2col, col2im, pooling, masks). Letting OpenBLAS split each GEMM leaves every other pass on
 * one core, and its idle threads spin while those passes run. Instead the layers split the
 * batch into one chunk per thread and each thread runs its chunk end to end with single-
 * threaded sgemm calls; on 2 cores that measured 2.05x over one thread, against 1.45x for
 * OpenBLAS's threads on the same GEMM.
 *
 * Determinism: work is divided into a fixed number of tasks (cnd_pool_tasks()), independent of
 * scheduling; partial sums are kept per task and combined in task order, so results depend only
 * on the thread count, and one thread gives exactly the serial result.
 *
 * Usage: cnd_pool_set_threads(T) once (0 = one per core); cnd_pool_run(fn, ctx, n) calls
 * fn(ctx, i, n) for i in [0, n) across the workers and the caller, and returns when all are
 * done. Calls must not be nested and come from one thread at a time (the training loop).
 */
#ifndef CND_POOL_H
#define CND_POOL_H

typedef void (*cnd_task_fn)(void *ctx, int task, int ntasks);

/* Sets the number of threads (1..64; 0 = online CPUs). Restarts workers if it changes.
 * Returns 0 or CND_ENOMEM/CND_EINVAL. */
int cnd_pool_set_threads(int threads);

/* Current thread count (>= 1). */
int cnd_pool_threads(void);

/* Runs fn for tasks 0..ntasks-1; the caller takes part. With one thread, runs inline. */
void cnd_pool_run(cnd_task_fn fn, void *ctx, int ntasks);

/* Splits [0, n) into `parts` nearly equal ranges; range `i` is [*lo, *hi). */
static inline void cnd_pool_range(long n, int parts, int i, long *lo, long *hi)
{
    long q = n / parts, r = n % parts;
    *lo = (long)i * q + (i < r ? i : r);
    *hi = *lo + q + (i < r);
}

#endif
