/*
 * rollout_serve.h: `condenser rollout serve`, a coordinator process that serves edge devices
 * only: one CurveZMQ ROUTER (proto/transport.h) whose ZAP handler admits the keys of enrolled,
 * unrevoked devices (fleet_registry.h), the receive gate of proto.h on every frame, device
 * sessions, and the rollout engine (rollout.h).
 *
 * Why it exists: the rollout engine is built to be embedded in the coordinator daemon (one call
 * per device message, one tick per loop). Until that daemon hosts it, this process runs the
 * engine over the same transport, database layout (DIR/coordinator.db, DIR/identity.key) and
 * audit log, so rollouts work end to end and are tested on real sockets.
 *
 * Sessions: one per connection. A device opens one with Hello (its certificate checked against
 * the federation CA of a coordinator directory: name, role, enrolled key, validity, CRL) or, when
 * it was enrolled without a certificate, with its DeviceProfile; any other message on a
 * connection without a session is answered ERR_UNAUTHORIZED "hello first", which makes a device
 * say Hello and send its profile again (after a coordinator restart, for instance). Revocation,
 * expiry and the CRL are re-checked every 2 s and end sessions ("session ended: ..."); sends
 * never wait (a device that does not read is dropped).
 * Each loop iteration is one transaction (on the coordinator database, and on PostgreSQL when the
 * rollout state is there: rollout_state.h), committed before the next poll.
 */
#ifndef CND_ROLLOUT_SERVE_H
#define CND_ROLLOUT_SERVE_H

#include "audit_log.h"
#include "error.h"
#include "identity.h"
#include "rollout_state.h"

#include <sqlite3.h>

#include <signal.h>
#include <stdint.h>

typedef struct {
    const char *dir;           /* coordinator directory */
    const char *endpoint;      /* e.g. tcp://127.0.0.1:7710 (port * = any) */
    const char *endpoint_file; /* if set, the bound endpoint is written there */
    int heartbeat_ms;          /* asked of devices in HelloAck; 0 = 10000 */
    int offline_after_s;       /* engine option; 0 = 30 */
    int until_idle;            /* exit once a rollout ran and none is live or in flight */
    double max_seconds;        /* exit after this long (0 = no limit) */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    const char *metrics; /* HOST:PORT of the Prometheus endpoint (rollout_metrics.h); NULL: off */
    const char *artifact_url; /* base URL of the artifact cache offers name; NULL: none */
    const char *state;        /* rollout state URL (rollout_state.h); NULL: the database's */
} cnd_rollout_serve_opts_t;

typedef struct {
    double seconds;       /* wall time of the run */
    double cpu_seconds;   /* process CPU time (user + system) during the run */
    uint64_t peak_rss_kb; /* process peak resident memory */
    uint64_t frames_in, frames_out, rejected;
    uint64_t chunks_sent, bytes_sent;
} cnd_rollout_serve_stats_t;

CND_MUST_USE int cnd_rollout_serve(const cnd_rollout_serve_opts_t *o, volatile sig_atomic_t *stop,
                                   cnd_rollout_serve_stats_t *st);

/* Creates DIR with a fresh coordinator identity (unless one is there) and the database tables.
 * Shared with `condenser coordinator init` by file names. */
CND_MUST_USE int cnd_rollout_dir_init(const char *dir);

/* Opens DIR: the database (WAL, busy timeout), the rollout state (rollout_state.h) named by
 * state_url (NULL or "": the database itself) and, with_key, the identity and the audit log (on
 * the database). cnd_rollout_dir_open is cnd_rollout_dir_open_state with state_url NULL. */
typedef struct {
    sqlite3 *db;
    cnd_rstate_t *state;
    cnd_identity_t *id;
    cnd_audit_t *audit;
    char fpr[65];
} cnd_rollout_dir_t;
CND_MUST_USE int cnd_rollout_dir_open(cnd_rollout_dir_t *d, const char *dir, int with_key);
CND_MUST_USE int cnd_rollout_dir_open_state(cnd_rollout_dir_t *d, const char *dir, int with_key,
                                            const char *state_url);
void cnd_rollout_dir_close(cnd_rollout_dir_t *d);

#endif
