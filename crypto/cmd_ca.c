/*
 * cmd_ca.c: `condenser ca init|issue|revoke|verify|list|crl`, the federation CA's command line
 * over crypto/ca.h. Each subcommand parses its own options with common/cli.h.
 */
#include "json.h"
#include "ca.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "digest.h"
#include "fileio.h"
#include "identity.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_parse(const cnd_cli_t *cli, int argc, char **argv)
{
    int npos;
    char **pos;
    return cnd_cli_parse(cli, argc, argv, &npos, &pos);
}

static int s_need(const char *v, const char *opt)
{
    return v ? 0 : cnd_errf(CND_EINVAL, "%s is required (try --help)", opt);
}

static int s_init(int argc, char **argv)
{
    const char *dir = NULL, *name = "condenser federation";
    long days = CND_CA_ROOT_DAYS;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "CA directory to create (required)"},
        {"name", CND_OPT_STR, &name, "NAME", "federation name (default 'condenser federation')"},
        {"days", CND_OPT_INT, &days, "N", "validity of the CA certificate (default 3650)", 1,
         36500},
        {0}};
    const cnd_cli_t cli = {"condenser ca init --dir DIR [--name NAME] [--days N]",
                           "Creates the federation CA: an Ed25519 key (DIR/ca.key, mode 0600), a "
                           "self-signed certificate (DIR/ca.crt), an empty index, serial 1 and an "
                           "empty revocation list (DIR/crl.pem).",
                           opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = s_need(dir, "--dir"))) return rc;
    if ((rc = cnd_ca_init(dir, name, (int)days, cnd_unix_time()))) return rc;
    printf("created CA '%s' in %s\n  certificate  %s/ca.crt\n  key          %s/ca.key (0600)\n"
           "  revocations  %s/crl.pem\n",
           name, dir, dir, dir, dir);
    return 0;
}

static int s_issue(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *role = NULL, *pubkey = NULL, *out = NULL;
    long days = CND_CA_DEFAULT_DAYS;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "CA directory (required)"},
        {"name", CND_OPT_STR, &name, "NAME", "node name, 1..64 of A-Z a-z 0-9 . _ - (required)"},
        {"role", CND_OPT_STR, &role, "ROLE", "site, device, coordinator or auditor (required)"},
        {"pubkey", CND_OPT_STR, &pubkey, "FILE",
         "the node's identity.pub from condenser keygen (required)"},
        {"days", CND_OPT_INT, &days, "N", "validity in days (default 30)", 1, CND_CA_ROOT_DAYS},
        {"out", CND_OPT_STR, &out, "FILE",
         "where to write the certificate (default "
         "DIR/certs/SERIAL.pem)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser ca issue --dir DIR --name N --role ROLE --pubkey FILE [--days N] [--out FILE]",
        "Issues an X.509 certificate binding a node name and role to the node's Ed25519 identity "
        "key. Certificates are short-lived (30 days by default); renew by issuing again, which "
        "gives a new serial and leaves the old certificate valid until it expires or is revoked.",
        opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = s_need(dir, "--dir")) || (rc = s_need(name, "--name")) ||
        (rc = s_need(role, "--role")) || (rc = s_need(pubkey, "--pubkey")))
        return rc;
    uint8_t pk[32];
    if ((rc = cnd_pubkey_read(pk, pubkey))) return rc;
    cnd_ca_issued_t is;
    if ((rc = cnd_ca_issue(&is, dir, name, role, pk, (int)days, cnd_unix_time(), out))) return rc;
    char a[32], b[32], fp[CND_FINGERPRINT_HEX];
    printf("issued serial %" PRIu64 " to %s (role %s)\n  key          SHA256:%s\n  valid        "
           "%s .. %s\n  certificate  %s\n",
           is.serial, name, role, cnd_pubkey_fingerprint(fp, pk), cnd_iso8601(a, is.not_before),
           cnd_iso8601(b, is.not_after), is.path);
    return 0;
}

static int s_serial(uint64_t *out, const char *s)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v == 0 || s[0] == '-')
        return cnd_errf(CND_EINVAL, "--serial '%s' is not a serial number", s ? s : "");
    *out = v;
    return 0;
}

static int s_revoke(int argc, char **argv)
{
    const char *dir = NULL, *serial = NULL;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", "CA directory (required)"},
                              {"serial", CND_OPT_STR, &serial, "S", "serial to revoke (required)"},
                              {0}};
    const cnd_cli_t cli = {"condenser ca revoke --dir DIR --serial S",
                           "Revokes a certificate by serial: marks it in DIR/index and re-signs "
                           "DIR/crl.pem, which verifiers load.",
                           opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    uint64_t sn = 0;
    if ((rc = s_need(dir, "--dir")) || (rc = s_serial(&sn, serial))) return rc;
    if ((rc = cnd_ca_revoke(dir, sn, cnd_unix_time()))) return rc;
    printf("revoked serial %" PRIu64 "; %s/crl.pem updated\n", sn, dir);
    return 0;
}

static int s_verify(int argc, char **argv)
{
    const char *dir = NULL, *ca = NULL, *crl = NULL, *cert = NULL, *role = NULL;
    long at = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "CA directory (uses DIR/ca.crt and DIR/crl.pem)"},
        {"ca", CND_OPT_STR, &ca, "FILE", "CA certificate (instead of --dir)"},
        {"crl", CND_OPT_STR, &crl, "FILE", "revocation list (instead of --dir)"},
        {"cert", CND_OPT_STR, &cert, "FILE", "certificate to check (required)"},
        {"role", CND_OPT_STR, &role, "ROLE", "require this role"},
        {"at", CND_OPT_INT, &at, "UNIXTIME", "check at this time instead of now"},
        {0}};
    const cnd_cli_t cli = {
        "condenser ca verify (--dir DIR | --ca FILE --crl FILE) --cert FILE [--role R] [--at T]",
        "Checks a node certificate: issued by the CA, within its validity period, not revoked, "
        "and (with --role) of the given role. Prints the node's name, role, serial and key; on "
        "failure names what failed.",
        opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = s_need(cert, "--cert"))) return rc;
    char cap[PATH_MAX], crlp[PATH_MAX];
    if (dir) {
        snprintf(cap, sizeof cap, "%s/ca.crt", dir);
        snprintf(crlp, sizeof crlp, "%s/crl.pem", dir);
        ca = cap;
        crl = crlp;
    }
    if (!ca || !crl) return cnd_errf(CND_EINVAL, "give --dir, or both --ca and --crl");
    if (role && !cnd_ca_role_valid(role))
        return cnd_errf(CND_EINVAL, "--role '%s': must be site, device, coordinator or auditor",
                        role);
    cnd_ca_trust_t *t = NULL;
    if ((rc = cnd_ca_trust_load(&t, ca, crl))) return rc;
    uint8_t *pem = NULL;
    size_t len = 0;
    rc = cnd_file_read(cert, 1 << 20, &pem, &len);
    cnd_cert_info_t info;
    cnd_cert_fail_t why = CND_CERT_OK;
    if (!rc) rc = cnd_ca_verify(&info, &why, t, pem, len, role, at ? at : cnd_unix_time());
    free(pem);
    cnd_ca_trust_destroy(&t);
    if (rc) return why ? cnd_err_wrap(rc, "%s: %s", cert, cnd_cert_fail_name(why)) : rc;
    char a[32], b[32], fp[CND_FINGERPRINT_HEX];
    printf("ok: %s\n  name    %s\n  role    %s\n  serial  %" PRIu64 "\n  valid   %s .. %s\n"
           "  key     SHA256:%s\n",
           cert, info.name, info.role, info.serial, cnd_iso8601(a, info.not_before),
           cnd_iso8601(b, info.not_after), cnd_pubkey_fingerprint(fp, info.pubkey));
    return 0;
}

static void s_json_entry(cnd_jw_t *w, const cnd_ca_entry_t *e, const char *status)
{
    char t[32], fp[CND_FINGERPRINT_HEX];
    cnd_jw_obj(w);
    cnd_jw_key(w, "serial");
    cnd_jw_int(w, (int64_t)e->serial);
    cnd_jw_key(w, "status"); /* valid | expired | revoked */
    cnd_jw_str(w, status);
    cnd_jw_key(w, "role");
    cnd_jw_str(w, e->role);
    cnd_jw_key(w, "name");
    cnd_jw_str(w, e->name);
    cnd_jw_key(w, "not_before");
    cnd_jw_str(w, cnd_iso8601(t, e->not_before));
    cnd_jw_key(w, "expires");
    cnd_jw_str(w, cnd_iso8601(t, e->not_after));
    cnd_jw_key(w, "revoked_at"); /* null unless revoked */
    if (e->revoked)
        cnd_jw_str(w, cnd_iso8601(t, e->revoked_at));
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "fingerprint"); /* hex SHA-256 of the Ed25519 key */
    cnd_jw_str(w, cnd_pubkey_fingerprint(fp, e->pubkey));
    cnd_jw_obj_end(w);
}

static int s_list(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", "CA directory (required)"},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser ca list --dir DIR [--json]",
                           "Lists every certificate the CA issued, with its status.", opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = s_need(dir, "--dir"))) return rc;
    cnd_ca_entry_t *e = NULL;
    size_t n = 0;
    if ((rc = cnd_ca_index_load(&e, &n, dir))) return rc;
    int64_t now = cnd_unix_time();
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_arr(&w);
    if (!json)
        printf("%8s  %-8s  %-12s  %-20s  %-20s  %s\n", "serial", "status", "role", "expires",
               "name", "key");
    for (size_t i = 0; i < n; i++) {
        char a[32], fp[CND_FINGERPRINT_HEX];
        const char *st = e[i].revoked ? "revoked" : now >= e[i].not_after ? "expired" : "valid";
        if (json)
            s_json_entry(&w, &e[i], st);
        else
            printf("%8" PRIu64 "  %-8s  %-12s  %-20s  %-20s  SHA256:%.16s\n", e[i].serial, st,
                   e[i].role, cnd_iso8601(a, e[i].not_after), e[i].name,
                   cnd_pubkey_fingerprint(fp, e[i].pubkey));
    }
    cnd_jw_arr_end(&w);
    if (json) {
        const char *t = cnd_jw_text(&w);
        if (t)
            printf("%s\n", t);
        else
            rc = cnd_errf(CND_ENOMEM, "ca list: out of memory");
    }
    cnd_jw_free(&w);
    free(e);
    return rc;
}

static int s_crl(int argc, char **argv)
{
    const char *dir = NULL;
    long days = CND_CA_CRL_DAYS;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", "CA directory (required)"},
        {"days", CND_OPT_INT, &days, "N", "validity of the new list (default 30)", 1, 3650},
        {0}};
    const cnd_cli_t cli = {"condenser ca crl --dir DIR [--days N]",
                           "Re-signs the revocation list so that it stays valid. Issue and revoke "
                           "do this too; run it periodically (e.g. daily) on a quiet CA.",
                           opts, 0, 0};
    int rc = s_parse(&cli, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    if ((rc = s_need(dir, "--dir"))) return rc;
    if ((rc = cnd_ca_refresh_crl(dir, (int)days, cnd_unix_time()))) return rc;
    printf("%s/crl.pem re-signed, valid for %ld days\n", dir, days);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} s_subs[] = {
    {"init", s_init, "create the federation CA"},
    {"issue", s_issue, "certify a node's identity key with a name and role"},
    {"revoke", s_revoke, "revoke a certificate by serial"},
    {"verify", s_verify, "check a certificate: chain, validity, revocation, role"},
    {"list", s_list, "list issued certificates"},
    {"crl", s_crl, "re-sign the revocation list"},
};

int cnd_cmd_ca(int argc, char **argv)
{
    size_t n = sizeof s_subs / sizeof s_subs[0];
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: condenser ca <init|issue|revoke|verify|list|crl> [options]\n\n"
               "The federation's certificate authority (X.509, Ed25519).\n\nsubcommands:\n");
        for (size_t i = 0; i < n; i++) printf("  %-8s %s\n", s_subs[i].name, s_subs[i].help);
        if (argc < 2) return cnd_errf(CND_EINVAL, "missing subcommand (try --help)");
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[1], s_subs[i].name) == 0) return s_subs[i].fn(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown ca subcommand '%s' (try condenser ca --help)", argv[1]);
}
