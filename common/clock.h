/* clock.h: monotonic and wall-clock time helpers. */
#ifndef CND_CLOCK_H
#define CND_CLOCK_H

#include <stdint.h>

/* Seconds from an arbitrary fixed point, monotonic, nanosecond resolution. */
double cnd_now(void);
/* CPU seconds used by the whole process (all threads), for profiling on a busy machine. */
double cnd_cputime(void);
/* Wall-clock Unix time in seconds. */
int64_t cnd_unix_time(void);
/* Wall-clock Unix time in milliseconds (what every store and audit entry records). */
int64_t cnd_unix_ms(void);
/* Writes UTC time as ISO 8601 ("2026-11-28T01:18:34Z") into out (>= 21 bytes), NUL-terminated
 * for any input; times outside the years 0000..9999 are written "(time out of range)". */
char *cnd_iso8601(char *out, int64_t unix_seconds);

#endif
