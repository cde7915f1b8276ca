/*
 * agent_probe.c: one Hello with a site's identity, and what the coordinator answered
 * (agent_probe.h). Nothing is written on this side: no store, no audit log, no egress log.
 */
#include "agent_probe.h"

#include "cert.h"
#include "clock.h"
#include "error.h"
#include "fileio.h"
#include "identity.h"
#include "transport.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

void cnd_agent_lock_path(char *out, size_t cap, const cnd_agent_config_t *c)
{
    snprintf(out, cap, "%s.lock", c->state);
}

/* Whether the directory the lock file would be in does not exist. Then no agent can hold the
 * lock (an agent creates its database there first), so the probe goes ahead without one rather
 * than failing on the lock file; doctor's state directory check reports the missing directory. */
static int s_state_dir_missing(const char *lock)
{
    char dir[CND_AGENT_PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s", lock);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    if (slash == dir)
        slash[1] = 0;
    else
        *slash = 0;
    struct stat st;
    return stat(dir, &st) != 0 && errno == ENOENT;
}

static int s_client(cnd_client_t **cli, const cnd_agent_config_t *c, const cnd_identity_t *id)
{
    uint8_t cpk[32], csk[32], spk[32];
    int rc = cnd_identity_curve_keypair(cpk, csk, id);
    if (rc) return rc;
    if ((rc = cnd_pubkey_to_curve(spk, c->coordinator_pk))) {
        sodium_memzero(csk, sizeof csk);
        return cnd_err_wrap(rc, "%s: [coordinator] public_key", c->path);
    }
    cnd_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.endpoint = c->endpoint;
    co.server_key = spk;
    co.public_key = cpk;
    co.secret_key = csk;
    co.heartbeat_ivl_ms = 1000;
    co.reconnect_ivl_ms = 100;
    co.reconnect_ivl_max_ms = 1000;
    rc = cnd_client_new(cli, &co);
    sodium_memzero(csk, sizeof csk);
    return rc;
}

static int s_send_hello(cnd_client_t *cli, const cnd_agent_config_t *c, const cnd_identity_t *id,
                        const uint8_t *cert, size_t cert_len, int timeout_ms)
{
    Condenser__Hello h;
    condenser__hello__init(&h);
    h.node_name = cnd_proto_str(c->name);
    h.role = CONDENSER__ROLE__ROLE_SITE;
    h.identity_key = cnd_proto_bytes(cnd_identity_pk(id), 32);
    h.certificate = cnd_proto_bytes(cert, cert_len);
    ProtobufCBinaryData caps[1] = {cnd_proto_str("secagg+")};
    h.n_capabilities = 1;
    h.capabilities = caps;
    h.min_version = CND_PROTO_VERSION;
    h.max_version = CND_PROTO_VERSION;
    h.software = cnd_proto_str("condenser 0.1.0 (doctor)");
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, CONDENSER__MSG_TYPE__MSG_HELLO, &h, 0, 0, c->name,
                            cnd_proto_seq_start());
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cnd_proto_encode(&buf, &len, &env);
    if (rc) return rc;
    rc = cnd_client_send(cli, buf, len, timeout_ms);
    free(buf);
    return rc;
}

/* Reads frames until the answer to the Hello (a HelloAck, or an Error about it) or the
 * deadline. Other messages (a job announcement after the HelloAck) are not waited for. */
static void s_answer(cnd_agent_probe_t *out, cnd_client_t *cli, double sent, double deadline)
{
    out->outcome = CND_PROBE_NO_ANSWER;
    for (double now = cnd_now(); now < deadline; now = cnd_now()) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int ms = (int)((deadline - now) * 1000) + 1;
        if (cnd_client_recv(cli, &buf, &len, ms)) {
            cnd_err_clear();
            continue;
        }
        cnd_proto_msg_t *m = NULL;
        int bad = cnd_proto_decode(&m, NULL, buf, len);
        free(buf);
        if (bad) {
            cnd_err_clear();
            continue;
        }
        const Condenser__Envelope *env = m->env;
        if (env->type == CONDENSER__MSG_TYPE__MSG_HELLO_ACK) {
            int64_t here = cnd_unix_time();
            out->outcome = CND_PROBE_ACCEPTED;
            out->rtt_s = cnd_now() - sent;
            if (cnd_proto_text(out->coordinator, sizeof out->coordinator,
                               env->hello_ack->coordinator_name))
                out->coordinator[0] = 0;
            out->has_time = env->hello_ack->server_unix_ms != 0;
            if (out->has_time)
                out->skew_s = here - (int64_t)(env->hello_ack->server_unix_ms / 1000);
        } else if (env->type == CONDENSER__MSG_TYPE__MSG_ERROR) {
            out->outcome = CND_PROBE_REFUSED;
            out->rtt_s = cnd_now() - sent;
            if (cnd_proto_text(out->refusal, sizeof out->refusal, env->error->text))
                snprintf(out->refusal, sizeof out->refusal, "(unreadable reason)");
            for (char *p = out->refusal; *p; p++)
                if ((unsigned char)*p < 0x20) *p = ' ';
        }
        cnd_proto_msg_destroy(&m);
        if (out->outcome != CND_PROBE_NO_ANSWER) return;
    }
}

/* Waits for the CurveZMQ session; returns the outcome when there is none by the deadline. */
static cnd_probe_outcome_t s_session(cnd_client_t *cli, double deadline)
{
    cnd_client_state_t st;
    for (;;) {
        cnd_client_state(cli, &st);
        if (st.connected) return 0;
        if (st.auth_refusals) return CND_PROBE_KEY_REFUSED;
        if (cnd_now() >= deadline) return CND_PROBE_NO_SESSION;
        zmq_pollitem_t it = {cnd_client_socket(cli), 0, ZMQ_POLLIN, 0};
        (void)zmq_poll(&it, 1, 50);
    }
}

int cnd_agent_probe(cnd_agent_probe_t *out, const cnd_agent_config_t *c, int timeout_ms)
{
    memset(out, 0, sizeof *out);
    char lock[CND_AGENT_PATH_MAX + 8];
    cnd_agent_lock_path(lock, sizeof lock, c);
    int lfd = -1, rc = s_state_dir_missing(lock) ? 0 : cnd_file_lock(lock, 1, &lfd);
    if (rc == CND_ESTATE) {
        cnd_err_clear();
        out->outcome = CND_PROBE_AGENT_RUNNING;
        return 0;
    }
    if (rc) return rc;
    cnd_identity_t *id = NULL;
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    cnd_client_t *cli = NULL;
    if ((rc = cnd_identity_load(&id, c->key))) goto out;
    if ((rc = cnd_cert_read_der(&cert, &cert_len, c->certificate))) goto out;
    if ((rc = s_client(&cli, c, id))) goto out;
    double deadline = cnd_now() + timeout_ms / 1000.0;
    out->outcome = s_session(cli, deadline);
    if (out->outcome) goto out;
    double sent = cnd_now();
    int left = (int)((deadline - sent) * 1000);
    if (left < 1 || s_send_hello(cli, c, id, cert, cert_len, left)) {
        cnd_err_clear();
        out->outcome = CND_PROBE_NO_ANSWER;
        goto out;
    }
    s_answer(out, cli, sent, deadline);
out:
    cnd_client_destroy(&cli);
    free(cert);
    cnd_identity_destroy(&id);
    cnd_file_unlock(&lfd);
    return rc;
}
