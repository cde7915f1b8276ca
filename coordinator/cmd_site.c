/*
 * cmd_site.c: `condenser site enroll|list|revoke`, the federation operator's register of the
 * sites (and devices) whose keys the coordinator admits. Enrollment is what the ZAP handler
 * checks at every connection (coord_daemon.c); revocation takes effect at the revoked node's
 * next message, even on a connection that is already up.
 */
#include "audit_actions.h"
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "cert.h"
#include "digest.h"
#include "fileio.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int s_enroll(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *key = NULL, *cert = NULL, *role = "site";
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"cert", CND_OPT_STR, &cert, "FILE",
         "its certificate from the federation CA, PEM or DER (required)"},
        {"key", CND_OPT_STR, &key, "FILE", "its identity.pub, checked against the certificate"},
        {"role", CND_OPT_STR, &role, "ROLE", "site (default) or device"},
        {0}};
    const cnd_cli_t cli = {
        "condenser site enroll NAME --cert FILE [--key identity.pub] [--role site|device] [--dir "
        "DIR]",
        "Enrolls a node under NAME: its certificate must verify against the federation CA "
        "(chain, validity, not revoked) for NAME and the role. From then on the coordinator "
        "admits a CurveZMQ connection from the certificate's key (its X25519 form), names its "
        "messages NAME, and requires exactly this certificate in its Hello.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!cert) return cnd_errf(CND_EINVAL, "--cert FILE is required (try --help)");
    uint8_t *der = NULL, pk[32];
    size_t der_len = 0;
    if ((rc = cnd_cert_read_der(&der, &der_len, cert))) return rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) {
        free(der);
        return rc;
    }
    cnd_cert_info_t ci;
    if ((rc = cnd_cert_check(&ci, c.ca_cert, c.ca_crl, der, der_len, role, pos[0],
                             cnd_unix_time()))) {
        cnd_coord_close(&c);
        free(der);
        return rc;
    }
    memcpy(pk, ci.pubkey, 32);
    if (key) {
        uint8_t kp[32];
        if ((rc = cnd_pubkey_read(kp, key)) ||
            (sodium_memcmp(kp, pk, 32) != 0 &&
             (rc = cnd_errf(CND_EPERM, "%s is not the key %s certifies", key, cert)))) {
            cnd_coord_close(&c);
            free(der);
            return rc;
        }
    }
    char fpr[65];
    cnd_pubkey_fingerprint(fpr, pk);
    if (!(rc = cnd_cstore_begin(c.store))) {
        rc = cnd_cstore_enroll(c.store, pos[0], role, pk, der, der_len);
        if (!rc) rc = cnd_audit_log_enroll(c.audit, c.fpr, fpr, pos[0], role, pk, der, der_len);
        if (!rc) rc = cnd_coord_admin_log(&c, "site.enroll", fpr, "", "ok");
        if (!rc)
            rc = cnd_cstore_commit(c.store);
        else
            cnd_cstore_rollback(c.store);
    }
    if (!rc)
        printf("enrolled %s (%s) fingerprint SHA256:%s%s\n", pos[0], role, fpr,
               der ? ", certificate stored" : "");
    cnd_coord_close(&c);
    free(der);
    return rc;
}

static int s_list(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR",
                               "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser site list [--dir DIR] [--json]",
                           "Lists enrolled nodes: name, role, fingerprint, state.", opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_ident_rec_t *l = NULL;
    size_t n = 0;
    if (!(rc = cnd_cstore_idents(c.store, &l, &n))) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_arr(&w);
        if (!json)
            printf("%-24s %-7s %-9s %-20s %s\n", "name", "role", "state", "enrolled",
                   "fingerprint");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            cnd_iso8601(t, l[i].enrolled_ms / 1000);
            const char *state = l[i].revoked_ms ? "revoked" : "active";
            if (json) {
                cnd_jw_obj(&w);
                cnd_jw_key(&w, "name");
                cnd_jw_str(&w, l[i].name);
                cnd_jw_key(&w, "role");
                cnd_jw_str(&w, l[i].role);
                cnd_jw_key(&w, "state");
                cnd_jw_str(&w, state);
                cnd_jw_key(&w, "fingerprint");
                cnd_jw_str(&w, l[i].fpr);
                cnd_jw_key(&w, "enrolled");
                cnd_jw_str(&w, t);
                cnd_jw_key(&w, "certificate");
                cnd_jw_bool(&w, l[i].cert != NULL);
                if (l[i].revoked_ms) {
                    cnd_jw_key(&w, "revoke_reason");
                    cnd_jw_str(&w, l[i].reason);
                }
                cnd_jw_obj_end(&w);
            } else {
                printf("%-24s %-7s %-9s %-20s SHA256:%.16s...\n", l[i].name, l[i].role, state, t,
                       l[i].fpr);
            }
            cnd_ident_rec_free(&l[i]);
        }
        cnd_jw_arr_end(&w);
        if (json) printf("%s\n", cnd_jw_text(&w) ? cnd_jw_text(&w) : "[]");
        cnd_jw_free(&w);
        free(l);
    }
    cnd_coord_close(&c);
    return rc;
}

static int s_revoke(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *reason = "revoked by the operator";
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"reason", CND_OPT_STR, &reason, "TEXT", "why (kept in the audit log)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser site revoke NAME [--reason TEXT] [--dir DIR]",
        "Revokes an enrolled node: the coordinator refuses its connections and drops its "
        "messages from the next one on, also on a connection that is already open.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) return rc;
    cnd_ident_rec_t r;
    if (!(rc = cnd_cstore_ident_by_name(c.store, pos[0], &r))) {
        cnd_ident_rec_free(&r);
        if (!(rc = cnd_cstore_begin(c.store))) {
            rc = cnd_cstore_revoke(c.store, pos[0], reason);
            if (!rc) rc = cnd_coord_admin_log(&c, "site.revoke", r.fpr, "", "ok");
            if (!rc)
                rc = cnd_cstore_commit(c.store);
            else
                cnd_cstore_rollback(c.store);
        }
    }
    if (!rc) printf("revoked %s (SHA256:%s)\n", pos[0], r.fpr);
    cnd_coord_close(&c);
    return rc;
}

int cnd_cmd_site(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: condenser site enroll|list|revoke [options]   (--help after each)\n");
        return argc < 2 ? cnd_errf(CND_EINVAL, "a subcommand is required: enroll, list, revoke")
                        : 0;
    }
    if (strcmp(argv[1], "enroll") == 0) return s_enroll(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0) return s_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0) return s_revoke(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'site %s' (enroll, list, revoke)", argv[1]);
}
