/* clock.c: see clock.h. */
#include "clock.h"

#include <stdio.h>
#include <time.h>

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
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
