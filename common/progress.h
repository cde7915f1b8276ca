/*
 * progress.h: a one-line progress bar on stderr for long work.
 *
 * Shown only when stderr is a terminal (or CND_PROGRESS=1 forces it), redrawn at most ten times
 * a second, so calling cnd_progress_update() on every batch costs nothing measurable. When
 * stderr is not a terminal it prints nothing: logs and CI stay clean.
 */
#ifndef CND_PROGRESS_H
#define CND_PROGRESS_H

#include <stdint.h>

typedef struct {
    char label[64];   /* e.g. "epoch 2/5" */
    uint64_t total;   /* units of work (samples); 0 = unknown */
    uint64_t done;    /* units finished so far */
    double start;     /* cnd_now() at begin */
    double last_draw; /* cnd_now() of the last redraw */
    int enabled;      /* 1 when drawing */
    const char *unit; /* "samples", "chunks", ... for the rate */
} cnd_progress_t;

void cnd_progress_begin(cnd_progress_t *p, const char *label, uint64_t total, const char *unit);
/* Sets done and redraws if due; `extra` (may be NULL) is appended, e.g. "loss 0.412". */
void cnd_progress_update(cnd_progress_t *p, uint64_t done, const char *extra);
/* Clears the line. */
void cnd_progress_end(cnd_progress_t *p);
/* Whether progress would be drawn (stderr is a tty or forced). */
int cnd_progress_wanted(void);

#endif
