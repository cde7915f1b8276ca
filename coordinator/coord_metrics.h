/*
 * coord_metrics.h: the coordinator's Prometheus metrics (`coordinator run --metrics
 * HOST:PORT`, served by common/metrics.h).
 *
 * Two sources, both safe to read from the HTTP thread:
 *   - live counters the daemon updates as it runs (atomics, and a snapshot of the send queues
 *     under a mutex): frames and bytes in and out, sessions, refused connections by reason and
 *     messages by error code, per-peer send-queue depth;
 *   - the database, through a read-only connection opened for each scrape: jobs by state,
 *     rounds by outcome, the last finished round's phase durations, participants and
 *     survivors, dropouts, the round in flight, audit log size, certificate expiry time per site
 *     (the earliest per role), database size (rollouts: `rollout serve --metrics`).
 * What they never hold: anything of one site's data or update (the coordinator never has it);
 * round metrics are the secure sums it already stores. Site names and certificate expiry are
 * what the coordinator's operator already sees in `site list`.
 *
 * docs/federation-operator-guide.md lists every metric.
 */
#ifndef CND_COORD_METRICS_H
#define CND_COORD_METRICS_H

#include "bytes.h"
#include "error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define CND_CM_CODES  32 /* protocol error codes counted (Condenser__ErrorCode) */
#define CND_CM_QUEUES 64 /* sessions whose queue depth is shown */

/* Why a connection was refused, as counted. */
typedef enum {
    CND_CM_CONN_UNKNOWN_KEY, /* not enrolled */
    CND_CM_CONN_REVOKED,
    CND_CM_CONN_EXPIRED,
    CND_CM_CONN_OTHER,
    CND_CM_CONN_REASONS
} cnd_cm_conn_reason_t;

typedef struct {
    _Atomic uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes;
    _Atomic uint64_t refused_conn[CND_CM_CONN_REASONS];
    _Atomic uint64_t refused_msg[CND_CM_CODES];
    _Atomic int64_t sessions;
    _Atomic int64_t started_unix;
    pthread_mutex_t mu; /* guards the queue snapshot */
    int n_queues;
    char queue_peer[CND_CM_QUEUES][64];
    uint32_t queue_frames[CND_CM_QUEUES];
} cnd_coord_live_t;

void cnd_coord_live_init(cnd_coord_live_t *l);
void cnd_coord_live_destroy(cnd_coord_live_t *l);
/* Counts a refused connection by the reason text the transport gave. */
void cnd_coord_live_refused_conn(cnd_coord_live_t *l, const char *reason);

typedef struct {
    const char *db_path;          /* the coordinator's database */
    const cnd_coord_live_t *live; /* NULL: database metrics only */
} cnd_coord_metrics_t;

/* The exposition for one scrape (cnd_metrics_render_fn; ctx is a cnd_coord_metrics_t). */
int cnd_coord_metrics_render(void *ctx, cnd_buf_t *out);

#endif
