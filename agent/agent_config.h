/*
 * agent_config.h: the site agent's INI configuration (parsed with inih, Debian's libinih).
 *
 *   [site]
 *   name = hospital-a            the name the coordinator enrolled (required)
 *   data = idx:IMAGES,LABELS     local training data, a compress/data.h spec (required)
 *   validation = 0.1             fraction held out as the local validation split
 *   state = agent.db             the agent's database (default: next to the config)
 *   work = .                     where shipped teachers are cached (default: the config's dir)
 *   log_level = info             error, warn, info or debug (common/log.h); --log-level wins
 *
 *   [identity]
 *   key = identity.key           Ed25519 identity (condenser keygen), mode 0600 (required)
 *   certificate = site.pem       its certificate from the federation CA (condenser ca issue),
 *                                PEM or DER (required: the coordinator checks it at Hello).
 *                                Re-read at every Hello and whenever the file changes: a
 *                                renewed certificate (or, with a new key, a rotation) is
 *                                picked up without a restart
 *   audit_key = old.key          the key that signs this site's audit log checkpoints
 *                                (default: key). A log stays signed by the key it was created
 *                                with: after a key rotation, point this at the previous key
 *                                (it no longer authenticates to the coordinator)
 *
 *   [coordinator]
 *   endpoint = tcp://host:7700   (required)
 *   public_key = HEX | FILE      the coordinator's Ed25519 key, 64 hex digits or its
 *                                identity.pub (required: pinned for CurveZMQ)
 *   ca_cert = ca.crt             the federation CA certificate and its revocation list
 *   ca_crl = crl.pem             (required): every neighbour's certificate in a round must
 *                                verify against them before its keys are accepted
 *
 *   [teachers]                   site-local teachers, by the name a job uses
 *   resnet-local = /srv/models/teacher.cnd
 *   vendor = /srv/models/vendor.onnx       an ONNX teacher (docs/onnx.md) ...
 *   vendor.preprocess = scale=1/255 mean=0.286 std=0.353   ... and the input it expects
 *                                (required for an .onnx teacher, refused for a .cnd one)
 *
 *   [limits]
 *   threads = 1                  training threads
 *   memory_mb = 4096             refuse jobs whose data, teacher and models would need more
 *   max_model_mb = 256           refuse larger model or teacher transfers
 *
 *   [policy]                     what this site agrees to, whatever a job asks (a job outside
 *                                it is refused with the reason, in the site's audit log too)
 *   max_attempts = 4             attempts of one round this site serves (1..16): a retried
 *                                round uses fresh keys and randomness, and never more often
 *   lr_min = 1e-6                local learning rate the site accepts, [lr_min, lr_max]: a
 *   lr_max = 1.0                 vanishing rate would make the "update" a probe of the data
 *   max_epochs = 100             local epochs per round
 *   max_rounds = 1000            rounds of one job
 *
 *   [privacy]                    this site's differential-privacy budget (agent/agent_dp.h,
 *                                docs/privacy.md); the site computes its own spend from its own
 *                                record count before every job and round, whatever a job says
 *   max_epsilon_job = 3          epsilon one job may spend (default: no limit)
 *   max_epsilon_total = 8        epsilon all DP jobs together may spend, composed (default:
 *                                no limit)
 *   max_delta = 1e-5             the largest delta a job may use, and the delta the total is
 *                                counted at (default 1e-5)
 *   require_dp = false           true: refuse jobs without DP-SGD (default false; a job
 *                                without DP costs no budget)
 *
 * Relative paths are relative to the directory holding the config file. Unknown sections or
 * keys, missing required keys, and malformed values are errors naming file:line and the key.
 */
#ifndef CND_AGENT_CONFIG_H
#define CND_AGENT_CONFIG_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_AGENT_PATH_MAX     1024
#define CND_AGENT_TEACHERS_MAX 16

typedef struct {
    char path[CND_AGENT_PATH_MAX]; /* the config file itself */
    char name[64];
    char data[CND_AGENT_PATH_MAX];  /* data spec */
    double validation;              /* [0, 0.9] */
    char state[CND_AGENT_PATH_MAX]; /* database path */
    char work[CND_AGENT_PATH_MAX];  /* teacher cache directory */
    char key[CND_AGENT_PATH_MAX];
    char certificate[CND_AGENT_PATH_MAX]; /* this site's certificate (PEM or DER) */
    char audit_key[CND_AGENT_PATH_MAX];   /* signs the audit log; "" = key */
    char ca_cert[CND_AGENT_PATH_MAX];     /* federation CA certificate (PEM) */
    char ca_crl[CND_AGENT_PATH_MAX];      /* its revocation list (PEM) */
    char endpoint[256];
    uint8_t coordinator_pk[32]; /* pinned Ed25519 key of the coordinator */
    int n_teachers;
    char teacher_name[CND_AGENT_TEACHERS_MAX][64];
    char teacher_path[CND_AGENT_TEACHERS_MAX][CND_AGENT_PATH_MAX];
    char teacher_prep[CND_AGENT_TEACHERS_MAX][256]; /* NAME.preprocess of an .onnx teacher */
    int threads;                                    /* 1..64 */
    uint64_t memory_mb;                             /* >= 64 */
    uint64_t max_model_mb;                          /* >= 1 */
    uint32_t max_attempts;                          /* [policy] 1..16, default 4 */
    double lr_min, lr_max;                          /* [policy] accepted local learning rates */
    uint32_t max_epochs;                            /* [policy] */
    uint32_t max_rounds;                            /* [policy] */
    double max_eps_job;   /* [privacy] max_epsilon_job; INFINITY = no limit */
    double max_eps_total; /* [privacy] max_epsilon_total; INFINITY = no limit */
    double max_delta;     /* [privacy] (0, 0.01], default 1e-5 */
    int require_dp;       /* [privacy] refuse jobs without DP-SGD */
    int log_level;        /* [site] log_level: a cnd_log_level_t, 0 = not set (info) */
} cnd_agent_config_t;

/* Loads and checks a configuration. Returns 0, CND_EIO (cannot read) or CND_EINVAL (detail:
 * "FILE:LINE: key: what is wrong" or the missing key). */
CND_MUST_USE int cnd_agent_config_load(cnd_agent_config_t *c, const char *path);

/* Checks a job's recipe against the [policy] section. Returns 0, or CND_EPERM with a detail
 * naming the value and the bound. */
CND_MUST_USE int cnd_agent_config_policy(const cnd_agent_config_t *c, float lr, uint32_t epochs,
                                         uint32_t rounds);

/* The path of a site-local teacher by name, or NULL. */
const char *cnd_agent_config_teacher(const cnd_agent_config_t *c, const char *name);

/* The preprocessing spec of a site-local ONNX teacher by name ("" for a .cnd one), or NULL. */
const char *cnd_agent_config_teacher_prep(const cnd_agent_config_t *c, const char *name);

#endif
