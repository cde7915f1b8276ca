/*
 * agent_metrics.h: the Prometheus metrics of `agent --metrics HOST:PORT` (served by
 * common/metrics.h), for the site's own monitoring.
 *
 * Two sources, both safe to read from the HTTP thread:
 *   - live state the daemon sets as it runs (atomics): whether it has a session with the
 *     coordinator, the job and round it works on, whether local training is running now, when
 *     its certificate expires;
 *   - the agent's database through a read-only connection opened for each scrape: jobs by
 *     state, rounds by outcome and the ones in flight by phase, the last local training's
 *     seconds, messages and bytes sent and received by type, the database's size.
 * What they never hold: anything about the site's records (no sample counts, no accuracy or
 * loss): only what the coordinator already sees (messages, sizes, training time, outcomes), so
 * exposing them cannot leak more than the protocol does. docs/site-operator-guide.md lists them.
 */
#ifndef CND_AGENT_METRICS_H
#define CND_AGENT_METRICS_H

#include "bytes.h"
#include "error.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Atomic int64_t started_unix;
    _Atomic int connected;       /* a session (Hello answered) with the coordinator */
    _Atomic uint64_t job;        /* the job it works on, 0 = none */
    _Atomic uint32_t round;      /* the round in flight, 0 = none */
    _Atomic int training;        /* 1 while local training runs */
    _Atomic int64_t cert_expiry; /* Unix time its certificate expires, 0 = unknown */
    char db_path[1024];          /* set once before the server starts */
} cnd_agent_live_t;

void cnd_agent_live_init(cnd_agent_live_t *l, const char *db_path);
/* The exposition for one scrape (cnd_metrics_render_fn; ctx is a cnd_agent_live_t). */
int cnd_agent_metrics_render(void *ctx, cnd_buf_t *out);

#endif
