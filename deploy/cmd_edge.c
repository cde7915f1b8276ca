/*
 * cmd_edge.c: `condenser edge init|run|install|status|infer`, the edge device daemon and its
 * local tools (docs/device-guide.md).
 *
 * Device directory:
 *   DIR/identity.key, identity.pub   the device identity (its X25519 form is its CurveZMQ key)
 *   DIR/edge.conf                    INI, section [edge]: name, endpoint (one, or a comma-separated
 *                                    list of replicas: edge.h, failover_s after which a device
 *                                    without a session tries the next, default 5), coordinator_key
 * (hex Ed25519; pins the CurveZMQ server key and is the trusted manifest key unless trust_key is
 * set), class, cpu, ram, flash, latency_budget_us, model, labels (k=v,k=v), certificate (DER file
 * sent in Hello, optional) DIR/store/                       the edge store (edge_store.h): state,
 * slot-a/b, download The daemon reports its profile, takes offers and rollbacks, and keeps going
 * across disconnects; `install` applies an artifact from local files through the same checks;
 * `infer` runs the active model on raw inputs; `status` shows the active model and the last report.
 */
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "edge.h"
#include "edge_http.h"
#include "fileio.h"
#include "identity.h"
#include "log.h"
#include "proto.h"
#include "service.h"
#include "transport.h"

#include <ini.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_LABELS 32

typedef struct {
    char name[64], endpoint[1024], cls[64], cpu[64], model[129], cert[512];
    cnd_edge_endpoints_t eps; /* endpoint, parsed and ordered for this device */
    uint32_t failover_s;      /* seconds without a session before trying the next endpoint */
    uint8_t coord_pk[32], trust_pk[32];
    int has_coord, has_trust;
    uint64_t ram, flash;
    uint32_t budget;
    char labels_text[2048];
    cnd_edge_label_t labels[S_MAX_LABELS];
    size_t n_labels;
} s_conf_t;

static int s_ini(void *user, const char *section, const char *name, const char *value)
{
    s_conf_t *c = user;
    if (strcmp(section, "edge") != 0) return 1;
#define S_STR(k, f)                                                                                \
    if (!strcmp(name, k)) {                                                                        \
        snprintf(c->f, sizeof c->f, "%s", value);                                                  \
        return 1;                                                                                  \
    }
    S_STR("name", name)
    S_STR("endpoint", endpoint)
    S_STR("class", cls)
    S_STR("cpu", cpu)
    S_STR("model", model)
    S_STR("certificate", cert)
    S_STR("labels", labels_text)
#undef S_STR
    if (!strcmp(name, "coordinator_key")) {
        c->has_coord = !cnd_pubkey_parse(c->coord_pk, value, "coordinator_key");
        return c->has_coord;
    }
    if (!strcmp(name, "trust_key")) {
        c->has_trust = !cnd_pubkey_parse(c->trust_pk, value, "trust_key");
        return c->has_trust;
    }
    if (!strcmp(name, "ram"))
        c->ram = strtoull(value, NULL, 10);
    else if (!strcmp(name, "flash"))
        c->flash = strtoull(value, NULL, 10);
    else if (!strcmp(name, "latency_budget_us"))
        c->budget = (uint32_t)strtoul(value, NULL, 10);
    else if (!strcmp(name, "failover_s"))
        return (c->failover_s = (uint32_t)strtoul(value, NULL, 10)) >= 1 && c->failover_s <= 3600;
    else
        return 0;
    return 1;
}

static int s_load_conf(s_conf_t *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    char path[600];
    snprintf(path, sizeof path, "%s/edge.conf", dir);
    int line = ini_parse(path, s_ini, c);
    if (line < 0) return cnd_errf(CND_EIO, "%s: cannot read (run condenser edge init)", path);
    if (line > 0) return cnd_errf(CND_EFORMAT, "%s:%d: unknown key or bad value", path, line);
    if (!c->name[0] || !c->endpoint[0] || !c->has_coord || !c->cls[0] || !c->ram || !c->flash)
        return cnd_errf(CND_EFORMAT,
                        "%s: name, endpoint, coordinator_key, class, ram and flash "
                        "are required",
                        path);
    if (!c->has_trust) memcpy(c->trust_pk, c->coord_pk, 32);
    if (!c->failover_s) c->failover_s = 5;
    if (cnd_edge_endpoints_parse(&c->eps, c->endpoint, c->name))
        return cnd_err_wrap(CND_EFORMAT, "%s: endpoint", path);
    char *save = NULL;
    for (char *t = strtok_r(c->labels_text, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        if (!eq || eq == t || c->n_labels == S_MAX_LABELS)
            return cnd_errf(CND_EFORMAT, "%s: labels: '%s' is not KEY=VALUE (at most 32)", path, t);
        *eq = 0;
        c->labels[c->n_labels].key = t;
        c->labels[c->n_labels].value = eq + 1;
        c->n_labels++;
    }
    return 0;
}

static void s_cfg(cnd_edge_cfg_t *cfg, s_conf_t *c, int keep)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->name = c->name;
    cfg->hardware_class = c->cls;
    cfg->cpu_class = c->cpu;
    cfg->model = c->model;
    cfg->ram_bytes = c->ram;
    cfg->flash_bytes = c->flash;
    cfg->latency_budget_us = c->budget;
    cfg->labels = c->labels;
    cfg->n_labels = c->n_labels;
    cfg->trust = (const uint8_t(*)[32])c->trust_pk;
    cfg->n_trust = 1;
    cfg->keep_model = keep;
}

typedef struct {
    cnd_client_t *cli;
    const char *name;
    uint64_t seq;
    cnd_buf_t buf;
    int failed;
} s_link_t;

static int s_send(void *ctx, Condenser__MsgType type, void *payload)
{
    s_link_t *l = ctx;
    if (!l->cli) return CND_ENOTFOUND; /* offline tools: nothing to tell */
    Condenser__Envelope env;
    cnd_proto_envelope_init(&env, type, payload, 0, 0, l->name, l->seq++);
    int rc = cnd_proto_encode_buf(&l->buf, &env);
    if (!rc) rc = cnd_client_send(l->cli, l->buf.data, l->buf.len, 200);
    if (rc) {
        l->failed = 1;
        cnd_err_clear();
    }
    return rc;
}

/* Opens the device: configuration, store and edge object, booted. */
typedef struct {
    s_conf_t conf;
    cnd_edge_store_t store;
    cnd_edge_t *edge;
    s_link_t link;
} s_dev_t;

static int s_open(s_dev_t *d, const char *dir, int keep)
{
    memset(d, 0, sizeof *d);
    cnd_buf_init(&d->link.buf);
    int rc = s_load_conf(&d->conf, dir);
    if (rc) return rc;
    char sd[600];
    snprintf(sd, sizeof sd, "%s/store", dir);
    if ((rc = cnd_edge_store_dir(&d->store, sd))) return rc;
    cnd_edge_cfg_t cfg;
    s_cfg(&cfg, &d->conf, keep);
    d->link.name = d->conf.name;
    d->link.seq = cnd_proto_seq_start();
    if ((rc = cnd_edge_new(&d->edge, &cfg, &d->store, s_send, &d->link))) return rc;
    return cnd_edge_boot(d->edge);
}

static void s_close(s_dev_t *d)
{
    cnd_edge_destroy(&d->edge);
    cnd_edge_store_dir_free(&d->store);
    cnd_buf_free(&d->link.buf);
}

static int s_init(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *endpoint = NULL, *ckey = NULL, *tkey = NULL;
    const char *cls = NULL, *cpu = "", *model = "", *labels = "", *cert = "";
    long ram = 16 << 20, flash = 64 << 20, budget = 0;
    int force = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "device directory (required)"},
        {"name", CND_OPT_STR, &name, "NAME", "device name, as enrolled (required)"},
        {"endpoint", CND_OPT_STR, &endpoint, "EP[,EP...]",
         "coordinator endpoint, or replicas of it (the device starts at the one its name "
         "hashes to and tries the next after failover_s, edge.conf, without a session) "
         "(required)"},
        {"coordinator-key", CND_OPT_STR, &ckey, "FILE", "coordinator identity.pub (required)"},
        {"trust-key", CND_OPT_STR, &tkey, "FILE", "manifest signing key (default: coordinator's)"},
        {"class", CND_OPT_STR, &cls, "C", "hardware class (required)"},
        {"cpu", CND_OPT_STR, &cpu, "C", "CPU class"},
        {"ram", CND_OPT_INT, &ram, "BYTES", "RAM for the model (default 16 MiB)", 1, 1e15},
        {"flash", CND_OPT_INT, &flash, "BYTES", "storage for two slots (default 64 MiB)", 1, 1e15},
        {"latency-budget", CND_OPT_INT, &budget, "US", "latency budget (default none)", 0, 1e9},
        {"model", CND_OPT_STR, &model, "NAME", "model name this device runs (default any)"},
        {"labels", CND_OPT_STR, &labels, "K=V,...", "labels (site, ward, line, ...)"},
        {"certificate", CND_OPT_STR, &cert, "FILE", "device certificate (DER) for Hello"},
        {"force", CND_OPT_FLAG, &force, NULL, "overwrite an existing edge.conf (keeps the key)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser edge init --dir DIR --name NAME --endpoint EP --coordinator-key FILE "
        "--class C [options]",
        "Creates a device directory: a fresh identity (unless one is there) and edge.conf. "
        "Enroll identity.pub at the coordinator under NAME (condenser rollout enroll).",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!dir || !name || !endpoint || !ckey || !cls)
        return cnd_errf(CND_EINVAL, "--dir, --name, --endpoint, --coordinator-key and --class are "
                                    "required");
    uint8_t cpk[32], tpk[32];
    if ((rc = cnd_pubkey_read(cpk, ckey))) return rc;
    if (tkey && (rc = cnd_pubkey_read(tpk, tkey))) return rc;
    char path[600];
    snprintf(path, sizeof path, "%s/edge.conf", dir);
    if (cnd_file_exists(path) && !force)
        return cnd_errf(CND_EEXIST, "%s exists (use --force to rewrite it)", path);
    if ((rc = cnd_mkdir_p(dir, 0700))) return rc;
    char kp[600];
    snprintf(kp, sizeof kp, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    if (!cnd_file_exists(kp)) {
        cnd_identity_t *id = NULL;
        if ((rc = cnd_identity_generate(&id))) return rc;
        rc = cnd_identity_save(id, dir, 0);
        cnd_identity_destroy(&id);
        if (rc) return rc;
    }
    char ch[65], th[65], text[4096];
    cnd_hex(ch, cpk, 32);
    if (tkey) cnd_hex(th, tpk, 32);
    int n = snprintf(text, sizeof text,
                     "# condenser edge device configuration (docs/device-guide.md)\n[edge]\n"
                     "name = %s\nendpoint = %s\ncoordinator_key = %s\n%s%s%sclass = %s\ncpu = %s\n"
                     "ram = %ld\nflash = %ld\nlatency_budget_us = %ld\nmodel = %s\nlabels = %s\n"
                     "certificate = %s\n",
                     name, endpoint, ch, tkey ? "trust_key = " : "", tkey ? th : "",
                     tkey ? "\n" : "", cls, cpu, ram, flash, budget, model, labels, cert);
    if (n < 0 || (size_t)n >= sizeof text) return cnd_errf(CND_EINVAL, "configuration too long");
    if ((rc = cnd_file_write_atomic(path, text, (size_t)n, 0600))) return rc;
    s_conf_t c;
    if ((rc = s_load_conf(&c, dir))) return rc;
    printf("device %s ready in %s; enroll %s/identity.pub at the coordinator\n", name, dir, dir);
    return 0;
}

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_print(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_print(const char *name, const char *fmt, ...)
{
    char who[96], buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    snprintf(who, sizeof who, "edge %s", name);
    cnd_log_emit(who, buf); /* common/log.h: level, journald priority or time */
}

static int s_hello(s_dev_t *d, uint8_t *cert, size_t cert_len, const uint8_t pk[32], double now)
{
    d->link.failed = 0;
    if (cert) {
        Condenser__Hello h;
        condenser__hello__init(&h);
        h.node_name = cnd_proto_str(d->conf.name);
        h.role = CONDENSER__ROLE__ROLE_DEVICE;
        h.identity_key = cnd_proto_bytes(pk, 32);
        h.certificate = cnd_proto_bytes(cert, cert_len);
        h.min_version = h.max_version = CND_PROTO_VERSION;
        h.software = cnd_proto_str("condenser 0.1.0");
        if (s_send(&d->link, CONDENSER__MSG_TYPE__MSG_HELLO, &h)) return -1;
    }
    cnd_edge_connected(d->edge, now);
    return d->link.failed ? -1 : 0;
}

/* Prints what changed since the last call: a cache given up, a new activation state. */
static void s_progress(s_dev_t *d, int *last_state, uint64_t *cache_failures)
{
    cnd_edge_status_t es;
    char hex[65];
    cnd_edge_status(d->edge, &es);
    if (es.cache_failures != *cache_failures) {
        *cache_failures = es.cache_failures;
        s_print(d->conf.name,
                "artifact cache not used for this download: %s; asking for chunks over the "
                "control channel",
                es.cache_error);
    }
    if (es.last_state != *last_state)
        s_print(d->conf.name, "rollout %llu: state %d (%s); running %s",
                (unsigned long long)es.last_rollout, es.last_state,
                cnd_edge_reason_name(es.last_reason),
                es.has_model ? cnd_hex(hex, es.digest, 32) : "no model");
    *last_state = es.last_state;
}

/* The device certificate named in edge.conf: absolute, or relative to the device directory. */
static int s_read_cert(uint8_t **cert, size_t *len, const char *dir, const char *name)
{
    char cp[700];
    if (name[0] == '/')
        snprintf(cp, sizeof cp, "%s", name);
    else
        snprintf(cp, sizeof cp, "%s/%s", dir, name);
    return cnd_file_read(cp, CND_PROTO_CERT_MAX, cert, len);
}

/* Which endpoint of the device's list it talks to (cnd_edge_endpoints_parse), and since when it
 * has had no session there (0 = it has one). */
typedef struct {
    size_t cur;
    double since;
    const uint8_t *server, *cpk, *csk; /* CURVE keys, kept to dial the next endpoint */
} s_failover_t;

/* A client for the current endpoint. */
static int s_link(s_dev_t *d, s_failover_t *fo)
{
    cnd_client_opts_t co = {.endpoint = d->conf.eps.ep[fo->cur],
                            .server_key = fo->server,
                            .public_key = fo->cpk,
                            .secret_key = fo->csk,
                            /* PINGs without a TTL: a rollout server of thousands of devices
                             * then keeps no libzmq timer per device (transport.h) */
                            .heartbeat_no_ttl = 1};
    return cnd_client_new(&d->link.cli, &co);
}

/* With several endpoints: after failover_s without a session, the next one. Returns 0 (same
 * client), 1 (a client for the next endpoint) or an error. */
static int s_failover(s_dev_t *d, s_failover_t *fo, const cnd_client_state_t *cs, double now)
{
    if (cs->connected || d->conf.eps.n < 2) {
        fo->since = 0;
        return 0;
    }
    if (!fo->since) fo->since = now;
    if (now - fo->since < d->conf.failover_s) return 0;
    size_t next = (fo->cur + 1) % d->conf.eps.n;
    s_print(d->conf.name, "no session with %s for %u s: trying %s", d->conf.eps.ep[fo->cur],
            d->conf.failover_s, d->conf.eps.ep[next]);
    cnd_client_destroy(&d->link.cli);
    fo->cur = next;
    fo->since = now;
    int rc = s_link(d, fo);
    return rc ? rc : 1;
}

static int s_run(int argc, char **argv)
{
    const char *dir = NULL, *log_level = "info";
    double max_s = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "device directory (required)"},
        {"max-seconds", CND_OPT_DBL, &max_s, "S", "exit after S seconds", 0, 1e9},
        {"log-level", CND_OPT_STR, &log_level, "LEVEL",
         "error, warn, info (default) or debug: the least severe lines logged"},
        {0}};
    const cnd_cli_t cli = {"condenser edge run --dir DIR",
                           "Runs the device: connects to the pinned coordinator over CurveZMQ, "
                           "reports its profile, verifies, downloads and activates offered "
                           "artifacts (A/B, self-test, automatic fallback) and answers rollbacks. "
                           "Stops on SIGINT/SIGTERM.",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!dir) return cnd_errf(CND_EINVAL, "--dir is required");
    cnd_log_level_t level;
    if ((rc = cnd_log_level_parse(&level, log_level))) return rc;
    cnd_log_set_level(level);
    s_dev_t d;
    if ((rc = s_open(&d, dir, 1))) {
        s_close(&d);
        return rc;
    }
    cnd_edge_status_t es;
    cnd_edge_status(d.edge, &es);
    char hex[65];
    s_print(d.conf.name, "booted: %s", es.has_model ? cnd_hex(hex, es.digest, 32) : "no model");
    char kp[600];
    snprintf(kp, sizeof kp, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    cnd_identity_t *id = NULL;
    cnd_edge_http_t *http = NULL;
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    uint8_t cpk[32], csk[32], server[32];
    if ((rc = cnd_identity_load(&id, kp)) || (rc = cnd_identity_curve_keypair(cpk, csk, id)) ||
        (rc = cnd_transport_curve_public(server, d.conf.coord_pk)))
        goto out;
    if (d.conf.cert[0] && (rc = s_read_cert(&cert, &cert_len, dir, d.conf.cert))) goto out;
    s_failover_t fo = {0, 0, server, cpk, csk};
    if ((rc = s_link(&d, &fo))) goto out;
    if ((rc = cnd_edge_http_new(&http))) goto out;
    cnd_edge_set_fetch(d.edge, cnd_edge_http_fetch, http);
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    if (cnd_service_ready(d.conf.eps.ep[0]) < 0)
        s_print(d.conf.name, "warning: %s", cnd_err_detail());
    double t0 = cnd_now(), next_try = 0, next_hb = 0;
    uint64_t cache_failures = 0;
    int need_hello = 1;
    uint64_t handshakes = 0;
    int last_state = es.last_state;
    while (!s_stop && !(max_s > 0 && cnd_now() - t0 > max_s)) {
        double now = cnd_now();
        cnd_client_state_t cs;
        cnd_client_state(d.link.cli, &cs);
        if ((rc = s_failover(&d, &fo, &cs, now)) < 0) goto out;
        if (rc) { /* a new client: its counters start again, and a session needs a hello */
            rc = 0;
            handshakes = 0;
            need_hello = 1;
            continue;
        }
        if (cs.handshakes != handshakes) {
            handshakes = cs.handshakes;
            need_hello = 1; /* a new session: the coordinator may have restarted */
        }
        if (need_hello && now >= next_try) {
            next_try = now + 0.5;
            if (!s_hello(&d, cert, cert_len, cnd_identity_pk(id), now)) {
                need_hello = 0;
                next_hb = now + 10;
                s_print(d.conf.name, "connected to %s", d.conf.eps.ep[fo.cur]);
            }
        }
        if (!need_hello && now >= next_hb) {
            Condenser__Heartbeat hb;
            condenser__heartbeat__init(&hb);
            hb.unix_ms = (uint64_t)cnd_unix_time() * 1000;
            (void)s_send(&d.link, CONDENSER__MSG_TYPE__MSG_HEARTBEAT, &hb);
            next_hb = now + 10;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        int r = cnd_client_recv(d.link.cli, &data, &len, 100);
        if (r == CND_EPERM) {
            s_print(d.conf.name, "%s", cnd_err_detail());
            cnd_err_clear();
        } else if (!r) {
            cnd_proto_msg_t *m = NULL;
            cnd_proto_reject_t rej;
            if (cnd_proto_decode(&m, &rej, data, len)) {
                s_print(d.conf.name, "dropped a malformed frame: %s", cnd_err_detail());
            } else if (m->env->type == CONDENSER__MSG_TYPE__MSG_ERROR &&
                       m->env->error->code == CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED) {
                need_hello = 1;
            } else {
                (void)cnd_edge_on_message(d.edge, m->env, now);
            }
            cnd_proto_msg_destroy(&m);
            free(data);
        }
        cnd_err_clear();
        cnd_edge_tick(d.edge, cnd_now());
        s_progress(&d, &last_state, &cache_failures);
    }
    s_print(d.conf.name, "stopping");
out:
    free(cert);
    cnd_edge_http_free(&http);
    cnd_client_destroy(&d.link.cli);
    sodium_memzero(csk, sizeof csk);
    cnd_identity_destroy(&id);
    s_close(&d);
    return rc;
}

static int s_install(int argc, char **argv)
{
    const char *dir = NULL, *man = NULL;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", "device directory (required)"},
                              {"manifest", CND_OPT_STR, &man, "FILE", "its signed manifest"},
                              {0}};
    const cnd_cli_t cli = {"condenser edge install --dir DIR ARTIFACT.cndq --manifest FILE",
                           "Installs an artifact from local files through the same checks and A/B "
                           "activation as an offer (signature, expiry, sequence, class, size, "
                           "digest, self-test). Without --manifest it is refused as unsigned.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!dir) return cnd_errf(CND_EINVAL, "--dir is required");
    uint8_t *art = NULL, *mb = NULL;
    size_t al = 0, ml = 0;
    if ((rc = cnd_file_read(pos[0], (size_t)CND_RT_MAX_FILE + 1, &art, &al))) return rc;
    if (man && (rc = cnd_file_read(man, CND_PROTO_MANIFEST_MAX, &mb, &ml))) {
        free(art);
        return rc;
    }
    s_dev_t d;
    if (!(rc = s_open(&d, dir, 0))) {
        cnd_edge_reason_t why = CND_EDGE_OK;
        rc = cnd_edge_install(d.edge, art, al, mb, ml, &why);
        cnd_edge_status_t es;
        cnd_edge_status(d.edge, &es);
        char hex[65];
        if (!rc)
            printf("installed %s v%llu (sequence %llu) in slot %c: healthy, %u us\n", es.model,
                   (unsigned long long)es.version, (unsigned long long)es.sequence, 'A' + es.slot,
                   es.latency_us);
        else
            fprintf(stderr, "refused (%s); still running %s\n", cnd_edge_reason_name(why),
                    es.has_model ? cnd_hex(hex, es.digest, 32) : "no model");
    }
    s_close(&d);
    free(art);
    free(mb);
    return rc;
}

/* `edge status --json`: what the text shows and the state behind it; digest and slot_name
 * are null without a model. */
static int s_status_json(const char *name, const cnd_edge_status_t *es)
{
    char hex[65], slot[2] = {0};
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "name");
    cnd_jw_str(&w, name);
    cnd_jw_key(&w, "has_model");
    cnd_jw_bool(&w, es->has_model);
    cnd_jw_key(&w, "model");
    cnd_jw_str(&w, es->model);
    cnd_jw_key(&w, "digest");
    if (es->has_model)
        cnd_jw_str(&w, cnd_hex(hex, es->digest, 32));
    else
        cnd_jw_null(&w);
    cnd_jw_key(&w, "version");
    cnd_jw_int(&w, (int64_t)es->version);
    cnd_jw_key(&w, "sequence");
    cnd_jw_int(&w, (int64_t)es->sequence);
    cnd_jw_key(&w, "slot");
    cnd_jw_int(&w, es->slot);
    cnd_jw_key(&w, "slot_name");
    slot[0] = (char)('A' + es->slot);
    if (es->slot >= 0)
        cnd_jw_str(&w, slot);
    else
        cnd_jw_null(&w);
    cnd_jw_key(&w, "latency_us");
    cnd_jw_int(&w, es->latency_us);
    cnd_jw_key(&w, "highest_sequence");
    cnd_jw_int(&w, (int64_t)es->highest_seq);
    cnd_jw_key(&w, "downloading");
    cnd_jw_bool(&w, es->downloading);
    cnd_jw_key(&w, "chunks_held");
    cnd_jw_int(&w, es->chunks_held);
    cnd_jw_key(&w, "chunks_total");
    cnd_jw_int(&w, es->chunks_total);
    cnd_jw_key(&w, "refused");
    cnd_jw_int(&w, (int64_t)es->refused);
    cnd_jw_key(&w, "last_state");
    cnd_jw_int(&w, es->last_state);
    cnd_jw_key(&w, "last_rollout");
    cnd_jw_int(&w, (int64_t)es->last_rollout);
    cnd_jw_key(&w, "last_reason");
    cnd_jw_str(&w, cnd_edge_reason_name(es->last_reason));
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    int rc = t ? 0 : cnd_errf(CND_ENOMEM, "edge status: out of memory");
    if (t) printf("%s\n", t);
    cnd_jw_free(&w);
    return rc;
}

static int s_status(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", "device directory (required)"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser edge status --dir DIR [--json]",
                           "Boots the device's state as the daemon does (falling back from an "
                           "interrupted trial) and shows the active model, the highest sequence "
                           "accepted, any download in progress and the last report.",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!dir) return cnd_errf(CND_EINVAL, "--dir is required");
    s_dev_t d;
    if (!(rc = s_open(&d, dir, 0))) {
        cnd_edge_status_t es;
        cnd_edge_status(d.edge, &es);
        char hex[65];
        if (json)
            rc = s_status_json(d.conf.name, &es);
        else if (es.has_model)
            printf("device %s: %s %s v%llu (sequence %llu, slot %c), self-test passed, %u us\n"
                   "highest sequence accepted %llu; %s\n",
                   d.conf.name, es.model, cnd_hex(hex, es.digest, 32),
                   (unsigned long long)es.version, (unsigned long long)es.sequence, 'A' + es.slot,
                   es.latency_us, (unsigned long long)es.highest_seq,
                   es.downloading ? "downloading" : "idle");
        else
            printf("device %s: no model\nhighest sequence accepted %llu; %s\n", d.conf.name,
                   (unsigned long long)es.highest_seq, es.downloading ? "downloading" : "idle");
    }
    s_close(&d);
    return rc;
}

static int s_infer(int argc, char **argv)
{
    const char *dir = NULL;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", "device directory (required)"},
                              {0}};
    const cnd_cli_t cli = {"condenser edge infer --dir DIR INPUT",
                           "Runs the device's active model on INPUT: raw uint8 HWC samples back to "
                           "back (C*H*W bytes each). Prints the class of each sample.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!dir) return cnd_errf(CND_EINVAL, "--dir is required");
    uint8_t *in = NULL;
    size_t len = 0;
    if ((rc = cnd_file_read(pos[0], (size_t)1 << 30, &in, &len))) return rc;
    s_dev_t d;
    if (!(rc = s_open(&d, dir, 1))) {
        cnd_rt_model_t *m = cnd_edge_model(d.edge);
        if (!m) {
            rc = cnd_errf(CND_ESTATE, "%s: the device has no healthy model", dir);
        } else {
            cnd_rt_info_t info;
            cnd_rt_get_info(m, &info);
            size_t per = (size_t)info.c * info.h * info.w;
            if (!per || len % per) {
                rc = cnd_errf(CND_EINVAL, "%s: %zu bytes is not a multiple of %zu (C*H*W)", pos[0],
                              len, per);
            } else {
                int8_t *logits = malloc(info.n_classes);
                if (!logits) rc = cnd_errf(CND_ENOMEM, "out of memory");
                for (size_t i = 0; !rc && i < len / per; i++) {
                    cnd_rt_run_u8(m, logits, in + i * per);
                    uint32_t k = cnd_rt_argmax(m, logits);
                    const char *lbl = cnd_rt_label(m, k);
                    printf("%zu %u %s\n", i, k, lbl ? lbl : "");
                }
                free(logits);
            }
        }
    }
    s_close(&d);
    free(in);
    return rc;
}

int cnd_cmd_edge(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: condenser edge init|run|install|status|infer [options]   (--help after "
               "each)\n");
        return argc < 2 ? cnd_errf(CND_EINVAL, "a subcommand is required: init, run, install, "
                                               "status, infer")
                        : 0;
    }
    const char *c = argv[1];
    if (!strcmp(c, "init")) return s_init(argc - 1, argv + 1);
    if (!strcmp(c, "run")) return s_run(argc - 1, argv + 1);
    if (!strcmp(c, "install")) return s_install(argc - 1, argv + 1);
    if (!strcmp(c, "status")) return s_status(argc - 1, argv + 1);
    if (!strcmp(c, "infer")) return s_infer(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'edge %s' (init, run, install, status, infer)",
                    c);
}
