/*
 * coord_admin.h: what every coordinator command opens: the coordinator directory
 *
 *   DIR/coordinator.db   state (coord_store.h) and the audit log (audit_log.h) in one file
 *   DIR/identity.key     the coordinator's Ed25519 identity (0600): signs audit checkpoints and
 *                        artifacts; its X25519 form is the CurveZMQ server key agents pin
 *   DIR/identity.pub     its public half, handed to site operators for their agent config
 *
 * and the audit entries operator commands leave (admin.<command>, actor "local:<unix user>").
 */
#ifndef CND_COORD_ADMIN_H
#define CND_COORD_ADMIN_H

#include "audit_log.h"
#include "coord_store.h"
#include "identity.h"

#define CND_COORD_DB_FILE "coordinator.db"

typedef struct {
    char dir[512];
    char db_path[600];
    cnd_cstore_t *store;
    cnd_identity_t *id; /* NULL when opened without the key */
    cnd_audit_t *audit; /* NULL when opened without the key */
    char fpr[65];       /* the coordinator's fingerprint (audit actor of its own events) */
    char name[64];      /* coordinator node name */
    char ca_cert[600];  /* the federation CA certificate (PEM), recorded by coordinator init */
    char ca_crl[600];   /* its revocation list (PEM): re-read at every check */
} cnd_coord_t;

/* Opens DIR: the database (which must exist) and, with_key = 1, the identity and the audit log.
 * Returns 0 or the error of the part that failed, with a detail naming the file. */
CND_MUST_USE int cnd_coord_open(cnd_coord_t *c, const char *dir, int with_key);
void cnd_coord_close(cnd_coord_t *c);

/* "local:<unix user>" for operator actions. */
const char *cnd_coord_operator(void);

/* Appends an admin.<command> entry with the process's exact command line (cnd_cli_argv(), as
 * main() recorded it): details {"argv": [every word], "result": result}
 * (cnd_audit_log_admin). */
CND_MUST_USE int cnd_coord_admin_log(cnd_coord_t *c, const char *command, const char *subject,
                                     const char *job, const char *result);

/* `condenser coordinator backup` and `restore` (coord_backup.c). */
int cnd_coord_cmd_backup(int argc, char **argv);
int cnd_coord_cmd_restore(int argc, char **argv);

/* The default coordinator directory: $CND_COORDINATOR_DIR or ".". */
const char *cnd_coord_default_dir(void);

#endif
