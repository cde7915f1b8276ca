/*
 * coord_daemon.h: the coordinator process (`condenser coordinator run`): one CurveZMQ ROUTER
 * (proto/transport.h) whose ZAP handler admits only enrolled, unrevoked keys from the SQLite
 * identities table, sessions (one per connection, opened by a Hello on it; docs/protocol.md
 * section 1, "Sessions"), the job in flight, and its rounds (coord_round.h).
 *
 * Loop: zmq_poll on the socket with a timeout of at most 200 ms and never past the current
 * phase's deadline; every frame is matched to its connection's session, decoded and validated
 * (proto.h), attributed to its authenticated sender (User-Id), checked against the session's
 * replay window, its role and the round's phase, logged (ingress, or a rate-limited
 * reject.message with an Error reply), and only then handed to the round. Every second each
 * session's connection is probed and its identity re-checked (revocation, expiry, CRL); a
 * session that ends makes its node a dropout of the round in flight at once. Sends never wait
 * (coord_outq.h). Everything one iteration changes is one SQLite transaction, committed before
 * any message that depends on it leaves.
 *
 * Restart: on start the job in flight is resumed; a round that was in flight is marked
 * "restarted" and run again. Agents reconnect by themselves; their next message finds no
 * session, gets ERR_UNAUTHORIZED "hello first", and they say Hello again.
 */
#ifndef CND_COORD_DAEMON_H
#define CND_COORD_DAEMON_H

#include "error.h"

#include <signal.h>

typedef struct {
    const char *dir;           /* coordinator directory (coord_admin.h) */
    const char *endpoint;      /* where to listen, e.g. tcp://127.0.0.1:7700 (port * = any) */
    const char *endpoint_file; /* if set, the bound endpoint is written there (atomically) */
    const char *capture;       /* if set, every frame received is appended there (u32 length,
                                  bytes): what a site's data could have leaked into */
    int until_done;            /* exit once no job is pending or running */
    int heartbeat_ms;          /* heartbeat interval asked of nodes; 0 = 2000 */
    unsigned threads;          /* workers for SecAgg+ mask removal; 0 = 1 */
    void (*log)(void *ctx, const char *line); /* progress lines (may be NULL) */
    void *log_ctx;
    const char *metrics; /* HOST:PORT of the Prometheus endpoint (coord_metrics.h); NULL: off */
} cnd_coord_run_opts_t;

/* Runs until *stop becomes nonzero (a signal handler sets it), or with until_done until no job
 * is left. Returns 0, or an error that stopped the coordinator (detail set). */
CND_MUST_USE int cnd_coord_run(const cnd_coord_run_opts_t *o, volatile sig_atomic_t *stop);

#endif
