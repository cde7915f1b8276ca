/*
 * rollout_state_be.h: the back-end table behind rollout_state.h (private to rollout_state.c and
 * rollout_state_pg.c). Each entry has the contract of the public function of the same name.
 */
#ifndef CND_ROLLOUT_STATE_BE_H
#define CND_ROLLOUT_STATE_BE_H

#include "rollout_state.h"

typedef struct {
    const char *kind;
    int (*begin)(cnd_rstate_t *s);
    int (*commit)(cnd_rstate_t *s);
    void (*rollback)(cnd_rstate_t *s);
    void (*close)(cnd_rstate_t *s);
    int (*rollout_insert)(cnd_rstate_t *s, cnd_rollout_rec_t *r);
    int (*rollout_get)(cnd_rstate_t *s, int64_t id, cnd_rollout_rec_t *r);
    int (*rollout_update)(cnd_rstate_t *s, const cnd_rollout_rec_t *r);
    int (*rollouts)(cnd_rstate_t *s, cnd_rollout_rec_t **out, size_t *n);
    int (*rollouts_loaded)(cnd_rstate_t *s, int64_t **ids, cnd_rollout_state_t **states, size_t *n);
    int (*manifest_put)(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                        uint64_t seq, const uint8_t *m, size_t len);
    int (*manifest_get)(cnd_rstate_t *s, int64_t rollout, int64_t artifact, const char *kind,
                        uint8_t **m, size_t *len);
    int (*device_put)(cnd_rstate_t *s, const cnd_rdevice_t *d);
    int (*devices)(cnd_rstate_t *s, int64_t rollout, cnd_rdevice_t **out, size_t *n);
    int (*busy_devices)(cnd_rstate_t *s, char ***names, size_t *n);
    int (*latency)(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t *us);
    int (*latency_add)(cnd_rstate_t *s, int64_t artifact, const char *cpu, uint32_t us);
    int (*fleet_enroll)(cnd_rstate_t *s, const char *name, const uint8_t ed_pk[32]);
    int (*fleet_get)(cnd_rstate_t *s, const char *name, cnd_fleet_device_t *d);
    int (*fleet_by_curve)(cnd_rstate_t *s, const uint8_t curve_pk[32], cnd_fleet_device_t *d);
    int (*fleet_put_profile)(cnd_rstate_t *s, const cnd_fleet_device_t *d);
    int (*fleet_list)(cnd_rstate_t *s, cnd_fleet_device_t **out, size_t *n);
    int (*fleet_count)(cnd_rstate_t *s, uint64_t *enrolled, uint64_t *profiled);
    int (*fleet_revoke)(cnd_rstate_t *s, const char *name);
    int (*fleet_revoked)(cnd_rstate_t *s, char ***names, size_t *n);
    int (*lead)(cnd_rstate_t *s, int *leading);
    int (*lead_check)(cnd_rstate_t *s);
    int (*device_changes)(cnd_rstate_t *s, int64_t after, cnd_rdevice_t **out, size_t *n,
                          int64_t *last);
    int (*presence_put)(cnd_rstate_t *s, char *const *names, size_t n, int64_t now_ms);
    int (*presence_since)(cnd_rstate_t *s, int64_t since_ms, char ***names, size_t *n);
} cnd_rstate_ops_t;

struct cnd_rstate {
    const cnd_rstate_ops_t *ops;
    sqlite3 *local;                   /* the coordinator database (borrowed) */
    char url[CND_RSTATE_URL_MAX + 1]; /* as shown in logs (password hidden) */
    void *conn;                       /* PostgreSQL: its PGconn */
    int in_txn;                       /* PostgreSQL: a cnd_rstate_begin is open */
    int leading;                      /* PostgreSQL: this connection holds the leader lock */
    cnd_rdevice_t *pend;              /* PostgreSQL: device rows put in the open transaction and
                                         not yet sent: written in one statement before the next
                                         statement or the commit (rollout_state_pg.c) */
    size_t npend, cappend;
};

extern const cnd_rstate_ops_t cnd_rstate_pg_ops;
/* Connects and migrates: 0 or CND_EDB naming the server's message. */
int cnd_rstate_pg_connect(cnd_rstate_t *s, const char *url);

/* Appends a copy of name to a growing array (0 or CND_ENOMEM). */
int cnd_rstate_names_push(char ***names, size_t *n, size_t *cap, const char *name);

#endif
