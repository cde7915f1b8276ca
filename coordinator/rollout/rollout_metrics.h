/*
 * rollout_metrics.h: the Prometheus metrics of `rollout serve --metrics HOST:PORT` (served by
 * common/metrics.h).
 *
 * Two sources, both safe to read from the HTTP thread:
 *   - a snapshot of the server's counters (frames in and out, refusals, chunks and bytes sent,
 *     offers, rollbacks, reports, devices online and active, live rollouts), which the event
 *     loop copies under a mutex at most once a second;
 *   - the database, through a read-only connection opened for each scrape: rollouts by state
 *     with their current wave, rollout devices by state (healthy, failed, offered, ...), enrolled
 *     and revoked fleet devices, the database's size.
 * Devices' names never appear as labels (a fleet has thousands); rollouts appear by id.
 * docs/federation-operator-guide.md lists every metric.
 */
#ifndef CND_ROLLOUT_METRICS_H
#define CND_ROLLOUT_METRICS_H

#include "bytes.h"
#include "error.h"
#include "rollout.h"
#include "rollout_serve.h"

#include <pthread.h>

typedef struct {
    pthread_mutex_t mu; /* guards everything below */
    int64_t started_unix;
    cnd_rollout_serve_stats_t st; /* frames_in, frames_out, rejected */
    cnd_rollout_stats_t eng;
    char db_path[600];
} cnd_rollout_metrics_t;

void cnd_rollout_metrics_init(cnd_rollout_metrics_t *m, const char *db_path);
void cnd_rollout_metrics_destroy(cnd_rollout_metrics_t *m);
/* Copies the loop's counters into the snapshot. */
void cnd_rollout_metrics_update(cnd_rollout_metrics_t *m, const cnd_rollout_serve_stats_t *st,
                                const cnd_rollout_stats_t *eng);
/* The exposition for one scrape (cnd_metrics_render_fn; ctx is a cnd_rollout_metrics_t). */
int cnd_rollout_metrics_render(void *ctx, cnd_buf_t *out);

#endif
