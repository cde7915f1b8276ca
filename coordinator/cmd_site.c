/*
 * cmd_site.c: `condenser site enroll|renew|list|revoke`, the federation operator's register of
 * the sites (and devices) whose keys the coordinator admits. Enrollment is what the ZAP handler
 * checks at every connection (coord_daemon.c); revocation takes effect at the revoked node's
 * next message, even on a connection that is already up.
 *
 * Renewal (`site renew NAME --cert NEW`): certificates live 30 days, so every identity is
 * renewed about monthly. The successor must verify against the CA for the same name and role
 * and outlast the enrolled certificate; it then replaces it in one transaction with its
 * `cert.renew` and `admin.site.renew` audit entries. Same key: a renewal; a new key: a key
 * rotation, after which the old key is refused by the ZAP handler (new connections, and every
 * message on an open one) and never admitted again. The daemon checks Hellos against the
 * enrolled certificate only, so the superseded one is refused from the moment of the commit;
 * sessions opened with it are ended at the next round boundary (coord_daemon.c) and the agent
 * says Hello again with the file it re-reads.
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

/* The cert.renew audit entry (audit_actions.h): subject the identity's fingerprint now. */
static int s_audit_renew(cnd_coord_t *c, const char *name, const char *role, int rotation,
                         const cnd_cert_info_t *ni, const uint8_t *der, size_t der_len,
                         const cnd_ident_rec_t *old, const cnd_cert_info_t *oi)
{
    cnd_audit_cert_renew_t r = {.name = name,
                                .role = role,
                                .rotation = rotation,
                                .serial = ni->serial,
                                .not_after = ni->not_after,
                                .public_key = ni->pubkey,
                                .der = der,
                                .der_len = der_len,
                                .old_fpr = old->fpr,
                                .old_known = oi != NULL,
                                .old_serial = oi ? oi->serial : 0,
                                .old_not_after = oi ? oi->not_after : 0,
                                .old_der = old->cert,
                                .old_der_len = old->cert_len};
    return cnd_audit_log_cert_renew(c->audit, c->fpr, &r);
}

/* The successor must outlast what it replaces: an older certificate is never put back. */
static int s_check_successor(const char *name, const char *path, const cnd_cert_info_t *ni,
                             const cnd_cert_info_t *oi)
{
    char a[32], b[32];
    if (ni->serial == oi->serial)
        return cnd_errf(CND_EEXIST, "%s is serial %llu, the certificate enrolled for '%s' already",
                        path, (unsigned long long)ni->serial, name);
    if (ni->not_after <= oi->not_after)
        return cnd_errf(CND_ESTATE,
                        "%s (serial %llu, valid until %s) does not outlast the enrolled "
                        "certificate of '%s' (serial %llu, valid until %s): a renewal must be "
                        "newer",
                        path, (unsigned long long)ni->serial, cnd_iso8601(a, ni->not_after), name,
                        (unsigned long long)oi->serial, cnd_iso8601(b, oi->not_after));
    return 0;
}

static int s_renew(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *key = NULL, *cert = NULL;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"cert", CND_OPT_STR, &cert, "FILE",
         "the new certificate from the federation CA (condenser ca issue --renew), PEM or DER "
         "(required)"},
        {"key", CND_OPT_STR, &key, "FILE", "its identity.pub, checked against the certificate"},
        {0}};
    const cnd_cli_t cli = {
        "condenser site renew NAME --cert FILE [--key identity.pub] [--dir DIR]",
        "Replaces the certificate of an enrolled node with its successor: it must verify "
        "against the federation CA (chain, validity, not revoked) for NAME and the node's role, "
        "and expire later than the enrolled one. Same key: a renewal. A new key: a key "
        "rotation; the old key is refused from then on (new connections and every message on "
        "open ones) and never admitted again. Hellos must present the new certificate from "
        "now on; the change and its cert.renew audit entry commit together.",
        opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!cert) return cnd_errf(CND_EINVAL, "--cert FILE is required (try --help)");
    uint8_t *der = NULL;
    size_t der_len = 0;
    if ((rc = cnd_cert_read_der(&der, &der_len, cert))) return rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) {
        free(der);
        return rc;
    }
    cnd_ident_rec_t old;
    memset(&old, 0, sizeof old);
    cnd_cert_info_t ni, oi;
    int have_oi = 0, rotation = 0;
    if ((rc = cnd_cstore_ident_by_name(c.store, pos[0], &old))) goto done;
    if (old.revoked_ms) {
        rc = cnd_errf(CND_ESTATE,
                      "'%s' is revoked; a revoked identity is not renewed (enroll under a new "
                      "name)",
                      pos[0]);
        goto done;
    }
    if ((rc = cnd_cert_check(&ni, c.ca_cert, c.ca_crl, der, der_len, old.role, pos[0],
                             cnd_unix_time())))
        goto done;
    if (key) {
        uint8_t kp[32];
        if ((rc = cnd_pubkey_read(kp, key))) goto done;
        if (sodium_memcmp(kp, ni.pubkey, 32) != 0) {
            rc = cnd_errf(CND_EPERM, "%s is not the key %s certifies", key, cert);
            goto done;
        }
    }
    if (old.cert && cnd_ca_inspect(&oi, old.cert, old.cert_len) == 0) {
        have_oi = 1;
        if ((rc = s_check_successor(pos[0], cert, &ni, &oi))) goto done;
    }
    cnd_err_clear();
    if (!(rc = cnd_cstore_begin(c.store))) {
        rc = cnd_cstore_renew(c.store, pos[0], ni.pubkey, der, der_len, &rotation);
        if (!rc)
            rc = s_audit_renew(&c, pos[0], old.role, rotation, &ni, der, der_len, &old,
                               have_oi ? &oi : NULL);
        char fpr[65];
        cnd_pubkey_fingerprint(fpr, ni.pubkey);
        if (!rc) rc = cnd_coord_admin_log(&c, "site.renew", fpr, "", "ok");
        if (!rc)
            rc = cnd_cstore_commit(c.store);
        else
            cnd_cstore_rollback(c.store);
    }
    if (!rc) {
        char a[32], fpr[65];
        printf("%s %s: serial %llu, valid until %s, replaces %s%llu\n",
               rotation ? "rotated the key of" : "renewed", pos[0], (unsigned long long)ni.serial,
               cnd_iso8601(a, ni.not_after), have_oi ? "serial " : "the enrolled certificate",
               have_oi ? (unsigned long long)oi.serial : 0ULL);
        if (rotation)
            printf("  new key SHA256:%s; the old key SHA256:%s is refused from now on\n",
                   cnd_pubkey_fingerprint(fpr, ni.pubkey), old.fpr);
        printf("  hellos must present the new certificate from now on: install it at the %s\n",
               old.role);
    }
done:
    cnd_ident_rec_free(&old);
    cnd_coord_close(&c);
    free(der);
    return rc;
}

/* One identity's certificate as `site list` shows it. */
typedef struct {
    int have; /* the certificate could be read */
    uint64_t serial;
    int64_t not_after;
    int64_t days;      /* whole days left (negative once expired) */
    const char *state; /* "ok", "renew" (within the warning window), "expired", "none" */
} s_expiry_t;

static void s_expiry(s_expiry_t *e, const cnd_ident_rec_t *r, int64_t now, long warn_days)
{
    memset(e, 0, sizeof *e);
    e->state = "none";
    cnd_cert_info_t ci;
    if (!r->cert || cnd_ca_inspect(&ci, r->cert, r->cert_len) != 0) {
        cnd_err_clear();
        return;
    }
    e->have = 1;
    e->serial = ci.serial;
    e->not_after = ci.not_after;
    e->days = cnd_cert_days_left(ci.not_after, now);
    e->state = now >= ci.not_after ? "expired" : e->days < warn_days ? "renew" : "ok";
}

static int s_list(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    long warn_days = CND_CERT_WARN_DAYS;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR",
                               "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {"warn-days", CND_OPT_INT, &warn_days, "N",
                               "warn about certificates that expire within N days (default 14)", 0,
                               3650},
                              {0}};
    const cnd_cli_t cli = {
        "condenser site list [--dir DIR] [--json] [--warn-days N]",
        "Lists enrolled nodes: name, role, state, certificate serial and expiry (days left), "
        "fingerprint. Certificates that expire within --warn-days, or have expired, are named "
        "after the table with what to do (text) or marked \"expiry\": \"renew\" | \"expired\" "
        "(JSON).",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_ident_rec_t *l = NULL;
    size_t n = 0;
    int64_t now = cnd_unix_time();
    if (!(rc = cnd_cstore_idents(c.store, &l, &n))) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_arr(&w);
        if (!json)
            printf("%-24s %-7s %-9s %-20s %7s %-20s %6s %s\n", "name", "role", "state", "enrolled",
                   "serial", "expires", "days", "fingerprint");
        for (size_t i = 0; i < n; i++) {
            char t[32], x[32] = "-", rn[32];
            cnd_iso8601(t, l[i].enrolled_ms / 1000);
            const char *state = l[i].revoked_ms ? "revoked" : "active";
            s_expiry_t e;
            s_expiry(&e, &l[i], now, warn_days);
            if (e.have) cnd_iso8601(x, e.not_after);
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
                if (e.have) {
                    cnd_jw_key(&w, "serial");
                    cnd_jw_int(&w, (int64_t)e.serial);
                    cnd_jw_key(&w, "not_after");
                    cnd_jw_str(&w, x);
                    cnd_jw_key(&w, "days_left");
                    cnd_jw_int(&w, e.days);
                }
                cnd_jw_key(&w, "expiry");
                cnd_jw_str(&w, e.state);
                if (l[i].renewed_ms) {
                    cnd_jw_key(&w, "renewed");
                    cnd_jw_str(&w, cnd_iso8601(rn, l[i].renewed_ms / 1000));
                }
                if (l[i].revoked_ms) {
                    cnd_jw_key(&w, "revoke_reason");
                    cnd_jw_str(&w, l[i].reason);
                }
                cnd_jw_obj_end(&w);
            } else {
                char sn[24] = "-", days[24] = "-";
                if (e.have) {
                    snprintf(sn, sizeof sn, "%llu", (unsigned long long)e.serial);
                    snprintf(days, sizeof days, "%lld", (long long)e.days);
                }
                printf("%-24s %-7s %-9s %-20s %7s %-20s %6s SHA256:%.16s...\n", l[i].name,
                       l[i].role, state, t, sn, x, days, l[i].fpr);
            }
        }
        cnd_jw_arr_end(&w);
        if (json) printf("%s\n", cnd_jw_text(&w) ? cnd_jw_text(&w) : "[]");
        cnd_jw_free(&w);
        /* What to do, after the table (text only; JSON carries "expiry"). */
        for (size_t i = 0; !json && i < n; i++) {
            s_expiry_t e;
            s_expiry(&e, &l[i], now, warn_days);
            if (l[i].revoked_ms ||
                (strcmp(e.state, "renew") != 0 && strcmp(e.state, "expired") != 0))
                continue;
            char x[32];
            if (strcmp(e.state, "expired") == 0)
                printf("EXPIRED: %s's certificate (serial %llu) expired at %s; the coordinator "
                       "refuses it",
                       l[i].name, (unsigned long long)e.serial, cnd_iso8601(x, e.not_after));
            else
                printf("warning: %s's certificate (serial %llu) expires in %lld day%s (%s)",
                       l[i].name, (unsigned long long)e.serial, (long long)e.days,
                       e.days == 1 ? "" : "s", cnd_iso8601(x, e.not_after));
            printf(": renew it with condenser ca issue --renew %llu, then condenser site renew "
                   "%s --cert FILE, and install FILE at the %s\n",
                   (unsigned long long)e.serial, l[i].name, l[i].role);
        }
        for (size_t i = 0; i < n; i++) cnd_ident_rec_free(&l[i]);
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
        printf("usage: condenser site enroll|renew|list|revoke [options]   (--help after each)\n");
        return argc < 2
                   ? cnd_errf(CND_EINVAL, "a subcommand is required: enroll, renew, list, revoke")
                   : 0;
    }
    if (strcmp(argv[1], "enroll") == 0) return s_enroll(argc - 1, argv + 1);
    if (strcmp(argv[1], "renew") == 0) return s_renew(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0) return s_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0) return s_revoke(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'site %s' (enroll, renew, list, revoke)",
                    argv[1]);
}
