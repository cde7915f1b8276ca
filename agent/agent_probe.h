/*
 * agent_probe.h: one Hello to the coordinator with a site's identity, as the agent would say
 * it, for `condenser doctor --agent CONFIG --connect`: is the coordinator reachable, does it
 * accept this site's key and certificate, and how far apart are the two clocks.
 *
 * A Hello opens a session at the coordinator (logged and audited there); a second session for
 * an identity ends the first, and a Condenser agent stops when that happens. So the probe
 * never connects while an agent holds the site's lock (cnd_agent_lock_path): a running agent
 * compares the clocks itself at every HelloAck and warns in its log.
 */
#ifndef CND_AGENT_PROBE_H
#define CND_AGENT_PROBE_H

#include "agent_config.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CND_PROBE_AGENT_RUNNING = 1, /* an agent holds this site's lock: not connected */
    CND_PROBE_NO_SESSION,        /* no CurveZMQ session within the timeout */
    CND_PROBE_KEY_REFUSED,       /* the coordinator refused this key at the handshake */
    CND_PROBE_NO_ANSWER,         /* a session, but no answer to the Hello */
    CND_PROBE_REFUSED,           /* the Hello was answered with an Error (text in refusal) */
    CND_PROBE_ACCEPTED           /* a HelloAck */
} cnd_probe_outcome_t;

typedef struct {
    cnd_probe_outcome_t outcome;
    char coordinator[64];                 /* its name (ACCEPTED) */
    char refusal[CND_PROTO_TEXT_MAX + 1]; /* the coordinator's reason (REFUSED) */
    int has_time;                         /* the HelloAck carried the coordinator's clock */
    int64_t skew_s;                       /* this machine's clock minus the coordinator's, s */
    double rtt_s;                         /* Hello sent to answer received */
} cnd_agent_probe_t;

/* The lock file a running agent holds exclusively (the state database's path + ".lock"). */
void cnd_agent_lock_path(char *out, size_t cap, const cnd_agent_config_t *c);

/* Says Hello with c's key and certificate and waits up to timeout_ms for the answer. Returns 0
 * with the outcome in *out (a coordinator that cannot be reached is an outcome, not an error),
 * or an error when the configuration's files cannot be used (key, certificate, keys). */
CND_MUST_USE int cnd_agent_probe(cnd_agent_probe_t *out, const cnd_agent_config_t *c,
                                 int timeout_ms);

#endif
