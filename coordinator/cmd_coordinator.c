/*
 * cmd_coordinator.c: `condenser coordinator init|run`.
 *
 * init creates the coordinator directory (coord_admin.h): its identity (or adopts an existing
 * one with --key-dir), the database, and the first audit entry (the coordinator enrolling
 * itself). run is the daemon (coord_daemon.h) with progress lines on stderr; SIGINT/SIGTERM stop
 * it cleanly (a round in flight is redone on the next start; SIGKILL is equally safe).
 */
#include "audit_actions.h"
#include "json.h"
#include "ca.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "coord_daemon.h"
#include "digest.h"
#include "fileio.h"
#include "identity.h"
#include "log.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* init's work inside the staging directory `dir`: the identity, the database with the CA paths,
 * and the first audit entries with a checkpoint. hex/fpr receive the public key and its
 * fingerprint. */
static int s_init_in(const char *dir, const char *name, const char *key_dir, const char *ca_cert,
                     const char *ca_crl, char hex[65], char fpr[65])
{
    cnd_identity_t *id = NULL;
    int rc;
    if (key_dir) {
        char kp[PATH_MAX + 32];
        snprintf(kp, sizeof kp, "%s/%s", key_dir, CND_IDENTITY_KEY_FILE);
        rc = cnd_identity_load(&id, kp);
    } else {
        rc = cnd_identity_generate(&id);
    }
    if (!rc) rc = cnd_identity_save(id, dir, 0);
    cnd_identity_destroy(&id);
    if (rc) return rc;
    char db[PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/%s", dir, CND_COORD_DB_FILE);
    cnd_cstore_t *s = NULL;
    if ((rc = cnd_cstore_open(&s, db, 1))) return rc;
    rc = cnd_cstore_meta_set(s, "name", name);
    if (!rc) rc = cnd_cstore_meta_set(s, "ca_cert", ca_cert);
    if (!rc) rc = cnd_cstore_meta_set(s, "ca_crl", ca_crl);
    cnd_cstore_close(&s);
    if (rc) return rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) return rc;
    cnd_hex(hex, cnd_identity_pk(c.id), 32);
    snprintf(fpr, 65, "%s", c.fpr);
    rc = cnd_audit_log_enroll(c.audit, c.fpr, c.fpr, name, "coordinator", cnd_identity_pk(c.id),
                              NULL, 0);
    if (!rc) rc = cnd_coord_admin_log(&c, "coordinator.init", c.fpr, "", "ok");
    if (!rc) rc = cnd_audit_checkpoint(c.audit, "init", NULL);
    cnd_coord_close(&c);
    return rc;
}

static int s_init(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *name = "coordinator", *key_dir = NULL, *ca = NULL;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory to create (default $CND_COORDINATOR_DIR or .)"},
        {"name", CND_OPT_STR, &name, "NAME", "the coordinator's node name (default coordinator)"},
        {"ca", CND_OPT_STR, &ca, "DIR",
         "the federation CA directory (condenser ca init): its ca.crt and crl.pem, never its key, "
         "check every site's certificate (required)"},
        {"key-dir", CND_OPT_STR, &key_dir, "DIR",
         "use the identity in DIR (from condenser keygen) instead of a new one"},
        {0}};
    const cnd_cli_t cli = {
        "condenser coordinator init --ca CA_DIR [--dir DIR] [--name NAME] [--key-dir DIR]",
        "Creates a coordinator: its Ed25519 identity (DIR/identity.key, mode 0600), whose X25519 "
        "form is the CurveZMQ key every agent pins, and its database (DIR/coordinator.db) with "
        "an audit log. Prints the public key to give to site operators.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!cnd_proto_name_ok(name))
        return cnd_errf(CND_EINVAL, "--name '%s' is not a valid node name", name);
    if (!ca)
        return cnd_errf(CND_EINVAL, "--ca DIR is required: the federation CA that certifies sites");
    char ca_cert[PATH_MAX], ca_crl[PATH_MAX], tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s/ca.crt", ca);
    if (!realpath(tmp, ca_cert)) return cnd_errf(CND_EIO, "%s: no CA certificate there", tmp);
    snprintf(tmp, sizeof tmp, "%s/crl.pem", ca);
    if (!realpath(tmp, ca_crl)) return cnd_errf(CND_EIO, "%s: no revocation list there", tmp);
    cnd_ca_trust_t *trust = NULL;
    if ((rc = cnd_ca_trust_load(&trust, ca_cert, ca_crl))) return rc;
    cnd_ca_trust_destroy(&trust);
    char db[600];
    snprintf(db, sizeof db, "%s/%s", dir, CND_COORD_DB_FILE);
    if (cnd_file_exists(db))
        return cnd_errf(CND_EEXIST, "%s exists already: this directory holds a coordinator", db);
    /* Everything is made in a staging directory and moved into place at the end, the database
     * last: a failure (a full disk, a kill) leaves DIR as it was, and init can simply be run
     * again. */
    char stage[PATH_MAX];
    if ((rc = cnd_dir_stage(stage, sizeof stage, dir))) return rc;
    char hex[65], fpr[65];
    if (!(rc = s_init_in(stage, name, key_dir, ca_cert, ca_crl, hex, fpr)))
        rc = cnd_dir_publish(stage, dir, CND_COORD_DB_FILE);
    if (rc) {
        cnd_dir_remove(stage);
        return rc;
    }
    printf("coordinator %s initialised in %s\n", name, dir);
    printf("database     %s\n", db);
    printf("public key   %s/%s  (agents pin it: [coordinator] public_key = %s)\n", dir,
           CND_IDENTITY_PUB_FILE, hex);
    printf("fingerprint  SHA256:%s\n", fpr);
    return 0;
}

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_run(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *endpoint = "tcp://127.0.0.1:7700";
    const char *endpoint_file = NULL, *capture = NULL, *metrics = NULL, *log_level = "info";
    int until_done = 0, quiet = 0;
    long threads = 1, hb = 2000;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"endpoint", CND_OPT_STR, &endpoint, "EP",
         "where to listen (default tcp://127.0.0.1:7700; port * = any)"},
        {"endpoint-file", CND_OPT_STR, &endpoint_file, "FILE", "write the bound endpoint to FILE"},
        {"until-done", CND_OPT_FLAG, &until_done, NULL, "exit once no job is pending or running"},
        {"threads", CND_OPT_INT, &threads, "N", "threads for SecAgg+ mask removal (default 1)", 1,
         64},
        {"heartbeat-ms", CND_OPT_INT, &hb, "MS", "heartbeat interval asked of nodes (default 2000)",
         100, 3600000},
        {"capture", CND_OPT_STR, &capture, "FILE",
         "append every received frame to FILE (diagnostics, canary checks)"},
        {"quiet", CND_OPT_FLAG, &quiet, NULL, "no progress lines"},
        {"metrics", CND_OPT_STR, &metrics, "HOST:PORT",
         "serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9460)"},
        {"log-level", CND_OPT_STR, &log_level, "LEVEL",
         "error, warn, info (default) or debug: the least severe lines logged"},
        {0}};
    const cnd_cli_t cli = {
        "condenser coordinator run [--dir DIR] [--endpoint EP] [--until-done]",
        "Runs the coordinator: admits enrolled sites over CurveZMQ, runs the jobs in the order "
        "they were created, round by round (SecAgg+ with deadlines on every phase), and keeps "
        "every state change and message in its database and audit log. Stop with Ctrl-C; a "
        "round in flight is redone when it starts again.",
        opts,
        0,
        0,
        "coordinator"};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_log_level_t level;
    if ((rc = cnd_log_level_parse(&level, log_level))) return rc;
    cnd_log_set_level(level);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    cnd_coord_run_opts_t o = {
        dir,           endpoint, endpoint_file,     capture,
        until_done,    (int)hb,  (unsigned)threads, quiet ? NULL : cnd_log_emit,
        "coordinator", metrics};
    return cnd_coord_run(&o, &s_stop);
}

int cnd_cmd_coordinator(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: condenser coordinator init|run|backup|restore [options]   (--help after "
               "each)\n");
        return argc < 2
                   ? cnd_errf(CND_EINVAL, "a subcommand is required: init, run, backup, restore")
                   : 0;
    }
    if (strcmp(argv[1], "init") == 0) return s_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return s_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "backup") == 0) return cnd_coord_cmd_backup(argc - 1, argv + 1);
    if (strcmp(argv[1], "restore") == 0) return cnd_coord_cmd_restore(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'coordinator %s' (init, run, backup, restore)",
                    argv[1]);
}
