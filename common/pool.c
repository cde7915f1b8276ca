/*
 * pool.c: see pool.h. Workers sleep on a condition variable between jobs; a job is published
 * by bumping a generation counter, and the caller waits for the pending count to reach zero.
 * Tasks are claimed by compare-and-swap on one 64-bit word holding (generation, task count,
 * next task), so a worker sees the three consistently: one still finishing its loop over an old
 * job can never claim a task of the next one, nor compare an old index with a new count.
 * Before sleeping, a worker spins briefly: a training step issues jobs every few hundred
 * microseconds.
 */
#include "pool.h"
#include "error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64
#define SPIN_ROUNDS 20000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_t tid[MAX_THREADS];
    int nthreads;                     /* total including the caller */
    int nworkers;                     /* nthreads - 1 running workers */
    atomic_uint gen;                  /* job generation; workers run a job when it changes */
    _Atomic unsigned long long claim; /* generation (24 bits) | task count (20) | next (20) */
    atomic_int pending;               /* tasks not yet finished */
    cnd_task_fn fn;                   /* current job */
    void *ctx;
    int quit; /* workers exit when set */
} s_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

#define CLAIM_BITS 20
#define CLAIM_MASK ((1ull << CLAIM_BITS) - 1)
#define GEN_MASK   0xffffffull

static unsigned long long s_claim_word(unsigned gen, int ntasks)
{
    return ((unsigned long long)(gen & GEN_MASK) << (2 * CLAIM_BITS)) |
           ((unsigned long long)ntasks << CLAIM_BITS);
}

static void s_drain(unsigned gen)
{
    for (;;) {
        unsigned long long c = atomic_load(&s_pool.claim);
        if ((unsigned)(c >> (2 * CLAIM_BITS)) != (gen & GEN_MASK)) return;
        int n = (int)((c >> CLAIM_BITS) & CLAIM_MASK), t = (int)(c & CLAIM_MASK);
        if (t >= n) return;
        if (!atomic_compare_exchange_weak(&s_pool.claim, &c, c + 1)) continue;
        s_pool.fn(s_pool.ctx, t, n);
        if (atomic_fetch_sub(&s_pool.pending, 1) == 1) {
            pthread_mutex_lock(&s_pool.mu);
            pthread_cond_broadcast(&s_pool.done);
            pthread_mutex_unlock(&s_pool.mu);
        }
    }
}

static void *s_worker(void *arg)
{
    unsigned seen = atomic_load(&s_pool.gen);
    for (;;) {
        int spins = 0;
        while (atomic_load(&s_pool.gen) == seen && spins < SPIN_ROUNDS) {
            spins++;
            if ((spins & 255) == 0) sched_yield();
        }
        pthread_mutex_lock(&s_pool.mu);
        while (atomic_load(&s_pool.gen) == seen && !s_pool.quit)
            pthread_cond_wait(&s_pool.wake, &s_pool.mu);
        int quit = s_pool.quit;
        pthread_mutex_unlock(&s_pool.mu);
        if (quit) return NULL;
        seen = atomic_load(&s_pool.gen);
        s_drain(seen);
    }
}

static void s_stop(void)
{
    pthread_mutex_lock(&s_pool.mu);
    s_pool.quit = 1;
    pthread_cond_broadcast(&s_pool.wake);
    pthread_mutex_unlock(&s_pool.mu);
    for (int i = 0; i < s_pool.nworkers; i++) pthread_join(s_pool.tid[i], NULL);
    s_pool.nworkers = 0;
    s_pool.quit = 0;
}

int cnd_pool_set_threads(int threads)
{
    if (threads < 0 || threads > MAX_THREADS)
        return cnd_errf(CND_EINVAL, "thread count %d not in [1, %d]", threads, MAX_THREADS);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
    }
    if (threads == s_pool.nthreads) return 0;
    s_stop();
    s_pool.nthreads = 1;
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&s_pool.tid[i], NULL, s_worker, NULL) != 0) break;
        s_pool.nworkers++;
        s_pool.nthreads++;
    }
    return s_pool.nthreads == threads
               ? 0
               : cnd_errf(CND_ENOMEM, "could only start %d threads", s_pool.nthreads);
}

int cnd_pool_threads(void)
{
    return s_pool.nthreads > 0 ? s_pool.nthreads : 1;
}

void cnd_pool_run(cnd_task_fn fn, void *ctx, int ntasks)
{
    if (ntasks <= 0) return;
    if (s_pool.nworkers == 0 || ntasks == 1 || (unsigned long long)ntasks > CLAIM_MASK) {
        for (int i = 0; i < ntasks; i++) fn(ctx, i, ntasks);
        return;
    }
    s_pool.fn = fn;
    s_pool.ctx = ctx;
    atomic_store(&s_pool.pending, ntasks);
    unsigned gen = atomic_load(&s_pool.gen) + 1;
    atomic_store(&s_pool.claim, s_claim_word(gen, ntasks));
    pthread_mutex_lock(&s_pool.mu);
    atomic_store(&s_pool.gen, gen);
    pthread_cond_broadcast(&s_pool.wake);
    pthread_mutex_unlock(&s_pool.mu);
    s_drain(gen);
    if (atomic_load(&s_pool.pending) > 0) {
        int spins = 0;
        while (atomic_load(&s_pool.pending) > 0 && spins < SPIN_ROUNDS) spins++;
        pthread_mutex_lock(&s_pool.mu);
        while (atomic_load(&s_pool.pending) > 0) pthread_cond_wait(&s_pool.done, &s_pool.mu);
        pthread_mutex_unlock(&s_pool.mu);
    }
}
