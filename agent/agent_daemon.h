/*
 * agent_daemon.h: the site agent process (`condenser agent`). One CurveZMQ DEALER to the
 * coordinator whose key is pinned in the config; everything the agent sends is built here, in
 * one place, from exactly these sources: its Hello (name, identity key, certificate), its answer
 * to a job (accept, or a reason), heartbeats, the SecAgg+ messages of crypto/secagg.h, the
 * masked update, aggregate metrics (loss, accuracy on its validation split, sample count,
 * training time) and error reports with text the agent wrote. Every one of them is logged
 * (type, size, SHA-256) in the agent's database and audit log before it leaves.
 *
 * Round, as the site sees it: RoundStart -> AdvertiseKeys at once (the model chunks follow) ->
 * KeyRoster -> ShareKeys -> SharesRelay -> local distillation round (agent_train.h), clip,
 * encode, mask -> MaskedInput + chunks, Metrics -> UnmaskRequest -> UnmaskResponse -> RoundEnd.
 * A failure of the local step sends an Error for that round and nothing else; the agent keeps
 * serving. A new RoundStart (the coordinator restarted, or the next round) replaces whatever
 * round was in flight.
 */
#ifndef CND_AGENT_DAEMON_H
#define CND_AGENT_DAEMON_H

#include "error.h"

#include <signal.h>

typedef struct {
    const char *config; /* INI file (agent_config.h) */
    int until_done;     /* exit 0 after the RoundEnd of the job's last round (or its
                           cancellation) */
    double max_seconds; /* > 0: give up (CND_ETIMEOUT) after this long */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    const char *metrics; /* HOST:PORT of the Prometheus endpoint (agent_metrics.h); NULL: off */
} cnd_agent_run_opts_t;

/* Runs until *stop, until done (until_done), or until the coordinator refuses this site for
 * good: its key (ZAP), its Hello (certificate, key, name, role, version) or its session
 * ("session ended: revoked | expired | certificate | superseded"), all CND_EPERM; or until the
 * CurveZMQ handshake failed three times with no success in this run (CND_ECRYPTO: the pinned
 * coordinator key is wrong). Each is logged with what to do first, and the detail says it too.
 * Returns 0 or the error that stopped it. */
CND_MUST_USE int cnd_agent_run(const cnd_agent_run_opts_t *o, volatile sig_atomic_t *stop);

#endif
