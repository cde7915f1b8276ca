/*
 * clock.c: see clock.h.
 *
 * Test builds only (CND_TEST_HOOKS, which scripts/test sets and no release, demo or bench build
 * does): CND_TEST_CLOCK_FILE=PATH shifts the wall clock of the process by the number of seconds
 * written in PATH (decimal, may be negative). The file is read again whenever at least 100 ms of
 * monotonic time have passed since the last read, so a test moves every running process of a
 * federation (coordinator, agents, CLI commands) through simulated days by rewriting one file
 * atomically. Only the wall clock moves: cnd_now() stays real, so timeouts, deadlines and
 * heartbeats run at their real pace. A missing or unreadable file keeps the last offset.
 */
#include "clock.h"

#include <stdio.h>
#include <time.h>

#ifdef CND_TEST_HOOKS
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t s_off_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t s_off_s;          /* current offset in seconds */
static double s_off_read = -1.0; /* cnd_now() of the last read, -1 before the first */

static int64_t s_offset_ms(void)
{
    const char *path = getenv("CND_TEST_CLOCK_FILE");
    if (!path || !*path) return 0;
    double now = cnd_now();
    pthread_mutex_lock(&s_off_mu);
    if (s_off_read < 0 || now - s_off_read >= 0.1) {
        s_off_read = now;
        FILE *f = fopen(path, "r");
        long long v;
        if (f) {
            if (fscanf(f, "%lld", &v) == 1 && v > -(1LL << 40) && v < (1LL << 40))
                s_off_s = (int64_t)v;
            fclose(f);
        }
    }
    int64_t off = s_off_s;
    pthread_mutex_unlock(&s_off_mu);
    return off * 1000;
}
#endif

double cnd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cnd_cputime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t cnd_unix_time(void)
{
    return cnd_unix_ms() / 1000;
}

int64_t cnd_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#ifdef CND_TEST_HOOKS
    ms += s_offset_ms();
#endif
    return ms;
}

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years that fit four digits. */
#define S_ISO_MIN (-62167219200LL)
#define S_ISO_MAX 253402300799LL

char *cnd_iso8601(char *out, int64_t unix_seconds)
{
    /* Outside four-digit years gmtime_r may fail (leaving tm unset) and the text would not fit
     * 21 bytes (strftime then leaves out unterminated), so such times, which only a corrupt or
     * hostile input holds, get a fixed text. */
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    if (unix_seconds < S_ISO_MIN || unix_seconds > S_ISO_MAX || (int64_t)t != unix_seconds ||
        !gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        snprintf(out, 21, "%s", "(time out of range)");
    else /* the remainders only tell the compiler the ranges gmtime_r guarantees */
        snprintf(out, 21, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
                 (unsigned)tm.tm_mon % 12u + 1, (unsigned)tm.tm_mday % 32u,
                 (unsigned)tm.tm_hour % 24u, (unsigned)tm.tm_min % 60u, (unsigned)tm.tm_sec % 61u);
    return out;
}
