/*
 * coord_admin.c: opening the coordinator directory and logging operator actions (see
 * coord_admin.h).
 */
#include "coord_admin.h"
#include "cli.h"

#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cnd_coord_default_dir(void)
{
    const char *d = getenv("CND_COORDINATOR_DIR");
    return d && *d ? d : ".";
}

int cnd_coord_open(cnd_coord_t *c, const char *dir, int with_key)
{
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->db_path, sizeof c->db_path, "%s/%s", dir, CND_COORD_DB_FILE);
    int rc = cnd_cstore_open(&c->store, c->db_path, 0);
    if (rc) return rc;
    if (cnd_cstore_meta_get(c->store, "name", c->name, sizeof c->name)) {
        cnd_err_clear();
        snprintf(c->name, sizeof c->name, "coordinator");
    }
    if (cnd_cstore_meta_get(c->store, "ca_cert", c->ca_cert, sizeof c->ca_cert) ||
        cnd_cstore_meta_get(c->store, "ca_crl", c->ca_crl, sizeof c->ca_crl)) {
        rc = cnd_errf(CND_EFORMAT, "%s: no federation CA recorded (coordinator init --ca DIR)",
                      c->db_path);
        goto fail;
    }
    if (!with_key) return 0;
    char key[600];
    snprintf(key, sizeof key, "%s/%s", dir, CND_IDENTITY_KEY_FILE);
    if ((rc = cnd_identity_load(&c->id, key))) goto fail;
    cnd_pubkey_fingerprint(c->fpr, cnd_identity_pk(c->id));
    uint8_t sk[64];
    cnd_identity_secret_key(sk, c->id);
    char origin[96];
    snprintf(origin, sizeof origin, "condenser/coordinator/%s", c->name);
    rc = cnd_audit_open_db(&c->audit, cnd_cstore_db(c->store), sk, origin);
    sodium_memzero(sk, sizeof sk);
    if (rc) {
        rc = cnd_err_wrap(rc, "%s: audit log", c->db_path);
        goto fail;
    }
    return 0;
fail:
    cnd_coord_close(c);
    return rc;
}

void cnd_coord_close(cnd_coord_t *c)
{
    cnd_audit_close(&c->audit);
    cnd_cstore_close(&c->store);
    cnd_identity_destroy(&c->id);
}

const char *cnd_coord_operator(void)
{
    static char buf[96];
    const struct passwd *pw = getpwuid(getuid());
    const char *u = pw && pw->pw_name ? pw->pw_name : getenv("USER");
    snprintf(buf, sizeof buf, "local:%s", u && *u ? u : "unknown");
    return buf;
}

int cnd_coord_admin_log(cnd_coord_t *c, const char *command, const char *subject, const char *job,
                        const char *result)
{
    const char *const *argv = NULL;
    int argc = cnd_cli_argv(&argv);
    return cnd_audit_log_admin(c->audit, cnd_coord_operator(), command, argc, argv, subject, job,
                               result);
}
