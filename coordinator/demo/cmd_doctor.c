/*
 * cmd_doctor.c: `condenser doctor`, the checks an operator runs on a node before starting its
 * daemon (docs/operations.md). It reads what the daemon would read and changes nothing.
 *
 * It lives here, at the top of the tree, because one command looks at every kind of node: a
 * coordinator directory (coordinator/), an agent's configuration, key, certificate and data
 * (agent/, crypto/, compress/), a rollout server. The generic checks (permissions, ports,
 * disk, writable directories) and the report are common/doctor.c.
 *
 * Clock skew against the coordinator, and whether it accepts this site, are checked only with
 * --connect: the coordinator's time comes in its answer to a Hello with the site's key and
 * certificate (agent_probe.c), which opens a session the coordinator logs and audits, and would
 * end a running agent's session; so doctor says Hello only when no agent holds the site's lock.
 * The running agent compares the clocks at every HelloAck and warns in its log (agent_daemon.c).
 * The CA dates and certificate validity doctor checks are against this machine's clock.
 */
#include "agent_config.h"
#include "agent_probe.h"
#include "ca.h"
#include "cert.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "data.h"
#include "doctor.h"
#include "error.h"
#include "fileio.h"
#include "identity.h"

#include <ini.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CA_WARN_DAYS 60 /* a CA renewal needs every node's trust updated: warn early */

/* The keys of a [coordinator] or [rollout-serve] section doctor needs; others are the
 * daemon's business (its own parser refuses unknown ones). */
typedef struct {
    const char *section;
    char dir[512], endpoint[256], metrics[128];
} s_daemon_conf_t;

static int s_conf_key(void *user, const char *sec, const char *key, const char *v)
{
    s_daemon_conf_t *c = user;
    if (strcmp(sec, c->section) != 0) return 1;
    if (!strcmp(key, "dir")) snprintf(c->dir, sizeof c->dir, "%s", v);
    if (!strcmp(key, "endpoint")) snprintf(c->endpoint, sizeof c->endpoint, "%s", v);
    if (!strcmp(key, "metrics")) snprintf(c->metrics, sizeof c->metrics, "%s", v);
    return 1;
}

/* The CA certificate's and its revocation list's dates. */
static void s_trust(cnd_doctor_t *r, const char *ca_cert, const char *ca_crl, int64_t now)
{
    cnd_ca_trust_t *t = NULL;
    if (cnd_ca_trust_load(&t, ca_cert, ca_crl) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "federation CA",
                       "copy the federation's ca.crt and crl.pem from its operator", "%s",
                       cnd_err_detail());
        return;
    }
    int64_t ca_end = 0, crl_next = 0;
    cnd_ca_trust_dates(t, &ca_end, &crl_next);
    cnd_ca_trust_destroy(&t);
    cnd_doctor_days(r, "CA certificate", ca_cert, ca_end, now, S_CA_WARN_DAYS,
                    "the federation operator renews the CA; every node needs the new ca.crt");
    if (crl_next)
        cnd_doctor_days(r, "revocation list", ca_crl, crl_next, now, CND_CRL_WARN_DAYS,
                        "the federation operator re-signs it (condenser ca crl); copy the new "
                        "crl.pem here");
}

static void s_key(cnd_doctor_t *r, const char *path)
{
    size_t before = r->counts[CND_DOCTOR_FAIL];
    cnd_doctor_secret(r, "key permissions", path);
    if (r->counts[CND_DOCTOR_FAIL] != before) return;
    cnd_identity_t *id = NULL;
    if (cnd_identity_load(&id, path) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "identity key", "restore the key from a backup", "%s",
                       cnd_err_detail());
        return;
    }
    char fpr[CND_FINGERPRINT_HEX];
    cnd_doctor_add(r, CND_DOCTOR_OK, "identity key", NULL, "%s: SHA256:%.16s...", path,
                   cnd_pubkey_fingerprint(fpr, cnd_identity_pk(id)));
    cnd_identity_destroy(&id);
}

static void s_coordinator(cnd_doctor_t *r, const char *dir, const char *endpoint,
                          const char *metrics, int rollout)
{
    int64_t now = cnd_unix_time();
    size_t fails = r->counts[CND_DOCTOR_FAIL];
    cnd_doctor_writable(r, "state directory", dir);
    if (r->counts[CND_DOCTOR_FAIL] == fails) cnd_doctor_disk(r, "disk space", dir);
    cnd_doctor_secret_dir(r, "key directory", dir);
    char key[600];
    snprintf(key, sizeof key, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    s_key(r, key);
    cnd_coord_t c;
    memset(&c, 0, sizeof c);
    if (cnd_coord_open(&c, dir, 0) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "database",
                       "create it with condenser coordinator init, or restore a backup", "%s",
                       cnd_err_detail());
    } else {
        cnd_doctor_add(r, CND_DOCTOR_OK, "database", NULL, "%s: opens", c.db_path);
        if (c.ca_cert[0]) s_trust(r, c.ca_cert, c.ca_crl, now);
        cnd_coord_close(&c);
    }
    cnd_doctor_port(r, rollout ? "device port" : "site port", endpoint);
    if (metrics && metrics[0]) cnd_doctor_port(r, "metrics port", metrics);
}

static void s_certificate(cnd_doctor_t *r, const cnd_agent_config_t *c, int64_t now)
{
    uint8_t *der = NULL;
    size_t len = 0;
    cnd_cert_info_t info;
    if (cnd_cert_read_der(&der, &len, c->certificate) != 0 ||
        cnd_ca_inspect(&info, der, len) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "certificate",
                       "install the certificate the federation operator issued (site.pem)", "%s",
                       cnd_err_detail());
        free(der);
        return;
    }
    if (info.not_after < now) {
        cnd_doctor_days(r, "certificate", c->certificate, info.not_after, now, CND_CERT_WARN_DAYS,
                        "ask the federation operator for a renewal (condenser ca issue --renew) "
                        "and install it: no restart needed");
    } else if (cnd_cert_check(&info, c->ca_cert, c->ca_crl, der, len, "site", c->name, now) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "certificate",
                       "ask the federation operator for a certificate for this site's name and "
                       "key",
                       "%s", cnd_err_detail());
    } else {
        cnd_doctor_days(r, "certificate", c->certificate, info.not_after, now, CND_CERT_WARN_DAYS,
                        "ask the federation operator for a renewal (condenser ca issue --renew) "
                        "and install it: no restart needed");
    }
    free(der);
}

static void s_data(cnd_doctor_t *r, const char *spec)
{
    cnd_dataset_t *ds = NULL;
    if (cnd_data_open(&ds, spec, "train") != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "data",
                       "let the condenser user read the data, or correct [site] data "
                       "(condenser data check SPEC shows what is wrong)",
                       "%s", cnd_err_detail());
        return;
    }
    cnd_doctor_add(r, CND_DOCTOR_OK, "data", NULL, "%s: %zu samples, %d classes", spec, ds->n,
                   ds->n_classes);
    cnd_data_destroy(&ds);
}

#define S_SKEW_WARN 30  /* the agent's own warning threshold (agent_daemon.c) */
#define S_SKEW_FAIL 300 /* certificates issued "now" look not yet valid to the other side */

static void s_skew(cnd_doctor_t *r, const cnd_agent_probe_t *p)
{
    long long s = p->skew_s, a = s < 0 ? -s : s;
    const char *fix = "synchronise the clocks of this machine and the coordinator's "
                      "(systemd-timesyncd or chrony)";
    if (!p->has_time) {
        cnd_doctor_add(r, CND_DOCTOR_WARN, "clock skew", "upgrade the coordinator",
                       "the coordinator's answer carries no time");
        return;
    }
    cnd_doctor_status_t st = a > S_SKEW_FAIL   ? CND_DOCTOR_FAIL
                             : a > S_SKEW_WARN ? CND_DOCTOR_WARN
                                               : CND_DOCTOR_OK;
    cnd_doctor_add(r, st, "clock skew", st == CND_DOCTOR_OK ? NULL : fix,
                   "this machine's clock is %lld s %s the coordinator's (it sends whole "
                   "seconds; answer in %.0f ms; warned above %d s, failed above %d s)",
                   a,
                   s > 0   ? "ahead of"
                   : s < 0 ? "behind"
                           : "level with",
                   p->rtt_s * 1000, S_SKEW_WARN, S_SKEW_FAIL);
}

/* --connect: one Hello with the site's identity (agent_probe.h). */
static void s_connect(cnd_doctor_t *r, const cnd_agent_config_t *c)
{
    cnd_agent_probe_t p;
    if (cnd_agent_probe(&p, c, 5000) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "coordinator", "correct the file named", "%s",
                       cnd_err_detail());
        return;
    }
    char lock[CND_AGENT_PATH_MAX + 8];
    cnd_agent_lock_path(lock, sizeof lock, c);
    const char *ep = c->endpoint;
    switch (p.outcome) {
    case CND_PROBE_AGENT_RUNNING:
        cnd_doctor_add(r, CND_DOCTOR_WARN, "coordinator",
                       "stop the agent to run this check, or read its log: it warns of clock "
                       "skew at every connection",
                       "not connected: an agent runs for site %s (it holds %s), and a second "
                       "hello would end its session",
                       c->name, lock);
        return;
    case CND_PROBE_NO_SESSION:
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "coordinator",
                       "check [coordinator] endpoint and public_key, that the coordinator runs, "
                       "and the firewall",
                       "%s: no CurveZMQ session within 5 s (not reachable, or not the "
                       "coordinator whose key is configured)",
                       ep);
        return;
    case CND_PROBE_KEY_REFUSED:
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "coordinator",
                       "ask the federation operator to enrol this site's key (condenser site "
                       "add)",
                       "%s refused this site's key at the handshake", ep);
        return;
    case CND_PROBE_NO_ANSWER:
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "coordinator",
                       "look at the coordinator's log for this site's hello",
                       "%s: a session, but no answer to this site's hello within 5 s", ep);
        return;
    case CND_PROBE_REFUSED:
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "coordinator",
                       "do what the coordinator's reason says (often: install a renewed "
                       "certificate)",
                       "%s refused this site's hello: %s", ep, p.refusal);
        return;
    case CND_PROBE_ACCEPTED:
        cnd_doctor_add(r, CND_DOCTOR_OK, "coordinator", NULL,
                       "%s: coordinator %s accepted this site's key and certificate", ep,
                       p.coordinator);
        s_skew(r, &p);
        return;
    }
}

static void s_agent(cnd_doctor_t *r, const char *config, const char *metrics, int connect)
{
    cnd_agent_config_t c;
    if (cnd_agent_config_load(&c, config) != 0) {
        cnd_doctor_add(r, CND_DOCTOR_FAIL, "configuration", "correct the line named", "%s",
                       cnd_err_detail());
        return;
    }
    cnd_doctor_add(r, CND_DOCTOR_OK, "configuration", NULL, "%s: site %s", config, c.name);
    int64_t now = cnd_unix_time();
    s_key(r, c.key);
    s_certificate(r, &c, now);
    s_trust(r, c.ca_cert, c.ca_crl, now);
    s_data(r, c.data);
    char state[sizeof c.state];
    snprintf(state, sizeof state, "%s", c.state);
    const char *sd = dirname(state);
    size_t fails = r->counts[CND_DOCTOR_FAIL];
    cnd_doctor_writable(r, "state directory", sd);
    if (r->counts[CND_DOCTOR_FAIL] == fails) cnd_doctor_disk(r, "disk space", sd);
    if (strcmp(c.work, sd) != 0) cnd_doctor_writable(r, "teacher cache", c.work);
    if (metrics && metrics[0]) cnd_doctor_port(r, "metrics port", metrics);
    if (connect) s_connect(r, &c);
}

int cnd_cmd_doctor(int argc, char **argv)
{
    const char *coord = NULL, *agent = NULL, *rollout = NULL, *config = NULL, *endpoint = NULL;
    const char *metrics = NULL;
    int json = 0, connect = 0;
    const cnd_opt_t opts[] = {
        {"coordinator", CND_OPT_STR, &coord, "DIR", "check a coordinator directory"},
        {"agent", CND_OPT_STR, &agent, "CONFIG", "check a site agent by its configuration"},
        {"rollout", CND_OPT_STR, &rollout, "DIR", "check a rollout server's directory"},
        {"config", CND_OPT_STR, &config, "FILE",
         "the daemon's INI (coordinator.ini, rollout.ini): dir, endpoint and metrics from it"},
        {"endpoint", CND_OPT_STR, &endpoint, "EP",
         "the endpoint it will listen on (default the daemon's: tcp://127.0.0.1:7700 or :7710)"},
        {"metrics", CND_OPT_STR, &metrics, "HOST:PORT", "the metrics address it will listen on"},
        {"connect", CND_OPT_FLAG, &connect, NULL,
         "agent: say hello to the coordinator with the site's identity (reachable, key and "
         "certificate accepted, clock skew); not while the site's agent runs"},
        {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser doctor --coordinator DIR | --agent CONFIG [--connect] | --rollout DIR | "
        "--config FILE [--json]",
        "Checks a node before its daemon runs and says what to fix: key file permissions (no "
        "group or other access), the key itself, certificate validity and days left (agent), "
        "the federation CA and revocation list dates, that the ports are free, disk space, "
        "that the state directory is writable, that the database opens (coordinator) and that "
        "the data is readable (agent). Each check prints OK, WARN or FAIL; the exit status is "
        "1 when any check fails. With --connect an agent's check also says hello to the "
        "coordinator as the agent would (one session, logged and audited there): whether it is "
        "reachable, accepts this site's key and certificate, and the clock skew between the "
        "two machines (WARN above 30 s, FAIL above 300 s). It does not connect while the site's "
        "agent runs (a second hello would end its session); the running agent warns about "
        "skew in its log.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!!coord + !!agent + !!rollout + (config && !coord && !rollout) != 1)
        return cnd_errf(CND_EINVAL,
                        "give one of --coordinator DIR, --agent CONFIG, --rollout DIR or "
                        "--config FILE (try --help)");
    if (connect && !agent)
        return cnd_errf(CND_EINVAL, "--connect checks an agent: give --agent CONFIG with it");
    s_daemon_conf_t dc;
    memset(&dc, 0, sizeof dc);
    if (config) {
        /* Which daemon: the section the file holds. */
        dc.section = rollout ? "rollout-serve" : "coordinator";
        int line = ini_parse(config, s_conf_key, &dc);
        if (line < 0) return cnd_errf(CND_EIO, "%s: cannot read", config);
        if (line > 0) return cnd_errf(CND_EINVAL, "%s:%d: malformed line", config, line);
        if (!coord && !rollout && !dc.dir[0]) {
            dc.section = "rollout-serve";
            (void)ini_parse(config, s_conf_key, &dc);
            if (dc.dir[0]) rollout = dc.dir;
        }
        if (!coord && !rollout && dc.dir[0]) coord = dc.dir;
        if (!coord && !rollout)
            return cnd_errf(CND_EINVAL, "%s: no dir = in [coordinator] or [rollout-serve]", config);
    }
    if (!endpoint) endpoint = dc.endpoint[0] ? dc.endpoint : NULL;
    if (!metrics && dc.metrics[0]) metrics = dc.metrics;
    cnd_doctor_t *r = calloc(1, sizeof *r);
    if (!r) return cnd_errf(CND_ENOMEM, "doctor: out of memory");
    if (coord)
        s_coordinator(r, coord, endpoint ? endpoint : "tcp://127.0.0.1:7700", metrics, 0);
    else if (rollout)
        s_coordinator(r, rollout, endpoint ? endpoint : "tcp://127.0.0.1:7710", metrics, 1);
    else
        s_agent(r, agent, metrics, connect);
    cnd_doctor_print(r, json);
    size_t fails = r->counts[CND_DOCTOR_FAIL];
    free(r);
    cnd_err_clear();
    if (fails)
        return cnd_errf(CND_ESTATE, "%zu check%s failed (each says what to fix)", fails,
                        fails == 1 ? "" : "s");
    return 0;
}
