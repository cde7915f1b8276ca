/* progress.c: see progress.h. */
#include "progress.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cnd_progress_wanted(void)
{
    const char *f = getenv("CND_PROGRESS");
    if (f && f[0]) return f[0] == '1';
    return isatty(STDERR_FILENO);
}

void cnd_progress_begin(cnd_progress_t *p, const char *label, uint64_t total, const char *unit)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->unit = unit ? unit : "items";
    p->start = cnd_now();
    p->enabled = cnd_progress_wanted();
}

static void s_fmt_time(char *out, size_t n, double s)
{
    if (s < 0 || s > 359999) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, n, "%d:%02d", t / 60, t % 60);
}

void cnd_progress_update(cnd_progress_t *p, uint64_t done, const char *extra)
{
    p->done = done;
    if (!p->enabled) return;
    double now = cnd_now();
    if (now - p->last_draw < 0.1 && done != p->total) return;
    p->last_draw = now;
    double el = now - p->start;
    double rate = el > 0 ? (double)done / el : 0;
    char bar[21], eta[16] = "?";
    int fill = p->total ? (int)(20.0 * (double)done / (double)p->total) : 0;
    if (fill > 20) fill = 20;
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '-';
    bar[20] = 0;
    if (p->total && rate > 0) s_fmt_time(eta, sizeof eta, (double)(p->total - done) / rate);
    fprintf(stderr, "\r\033[K%s [%s] %3d%% %.0f %s/s left %s%s%s", p->label, bar,
            p->total ? (int)(100.0 * (double)done / (double)p->total) : 0, rate, p->unit, eta,
            extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void cnd_progress_end(cnd_progress_t *p)
{
    if (p->enabled) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}
