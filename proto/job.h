/*
 * job.h: a job's recipe: what the sites train (student, teacher, distillation, QAT),
 * how the federation runs (rounds, sites per round, quorum, secure aggregation, deadlines) and
 * what only the coordinator uses (server learning rate and momentum, seeds).
 *
 * One struct, three forms:
 *   - JSON (cnd_job_to_json / cnd_job_from_json): how the job is stored in the coordinator
 *     database and logged in its job.create audit entry ("recipe"); every field explicit, so the
 *     audit entry alone says exactly how the model was made;
 *   - the protobuf JobSpec sites receive (cnd_job_to_proto), which leaves out the
 *     coordinator-only fields;
 *   - the command line of `condenser job create` (coordinator/cmd_job.c).
 * cnd_job_check() enforces the same limits as the wire validator plus the coordinator's own
 * (e.g. that the update fits a 32-bit ring for the number of sites).
 */
#ifndef CND_JOB_H
#define CND_JOB_H

#include "classmap.h"
#include "proto.h"

#include <stdint.h>

#define CND_JOB_ARCH_MAX 4096

typedef struct {
    char name[CND_NAME_MAX + 1];               /* free text label (printable, <= 63 bytes) */
    char arch[CND_JOB_ARCH_MAX + 1];           /* student architecture spec */
    uint32_t in_c, in_h, in_w;                 /* input shape */
    uint32_t classes;                          /* outputs */
    char labels[CND_CLASSMAP_MAX + 1];         /* class map, `classes` names (common/classmap.h) */
    int teacher_shipped;                       /* 1: the teacher model travels with the job */
    char teacher_local[CND_NAME_MAX + 1];      /* else: name of each site's own teacher */
    int teacher_onnx;                          /* 1: the shipped teacher is an ONNX model */
    char teacher_prep[CND_PROTO_PREP_MAX + 1]; /* its input preprocessing (text, required with
                                                  an ONNX teacher, "" otherwise) */
    float temperature, alpha;                  /* distillation */
    uint32_t qat_rounds;            /* the last qat_rounds rounds use fake quantization */
    uint32_t weight_bits, act_bits; /* 8 for int8 */
    uint32_t local_epochs, batch;   /* local training per round */
    float lr;                       /* local Adam learning rate */
    uint32_t rounds, sites_per_round, quorum, threshold, neighbours;
    float clip, l2_clip;             /* update clipping (crypto/fixedpoint.h) */
    uint32_t sample_cap, value_bits; /* weight cap W and q */
    uint32_t deadline_ms[4];         /* advertise, share, masked (incl. training), unmask */
    /* DP-SGD at every site (proto/job_dp.h); dp_clip 0 = none, and then all of these are 0 */
    double dp_noise;           /* noise multiplier sigma */
    double dp_clip;            /* per-record L2 clip C */
    double dp_delta;           /* delta of the guarantee */
    double dp_target_eps;      /* what dp_noise was solved for (0: given directly); informational */
    uint64_t dp_assumed_n;     /* records per site the solve assumed (0 with no target) */
    uint32_t dp_mode;          /* CND_JOB_DP_LOCAL (DP-SGD at each site) or CND_JOB_DP_DISTRIBUTED
                                  (discrete Gaussian noise shared by the sites, job_dp.h) */
    uint32_t dp_min_survivors; /* distributed: sums of fewer sites are never unmasked */
    /* coordinator only */
    float server_lr;       /* global += server_lr * (momentum-smoothed) average */
    float server_momentum; /* 0 = plain FedAvg */
    uint32_t join_wait_ms; /* how long to wait for sites_per_round sites before
                              starting a round with at least quorum of them */
    uint64_t seed;         /* site selection and student initialisation */
} cnd_job_spec_t;

/* Defaults (labels "" until the student is known: cnd_job_check wants `classes` names), T 4, alpha
 * 0.5, 1 local epoch, batch 64, lr 1e-3, 10 rounds, 3 sites, quorum 2, threshold 2, clip 0.05, q 8,
 * sample cap 20000, deadlines 10 s / 10 s / 600 s / 10 s, server lr 1, no momentum, join wait 30 s,
 * seed 1. The student and teacher must still be set. */
void cnd_job_defaults(cnd_job_spec_t *j);

/* Checks every field (detail names the field). Returns 0 or CND_EINVAL. */
CND_MUST_USE int cnd_job_check(const cnd_job_spec_t *j);

/* Canonical JSON of the recipe (caller frees). Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_job_to_json(char **out, const cnd_job_spec_t *j);
/* Parses what cnd_job_to_json wrote (every field required) and checks it. Returns 0,
 * CND_EINVAL or CND_ENOMEM. */
CND_MUST_USE int cnd_job_from_json(cnd_job_spec_t *j, const char *json);

/* Fills a JobSpec message whose pointers borrow from `bufs` and j (both must outlive it).
 * teacher_info is the shipped teacher's ObjectInfo (or NULL for a site-local teacher). */
typedef struct {
    Condenser__JobSpec spec;
    Condenser__StudentSpec student;
    uint32_t shape[3];
    Condenser__Recipe recipe;
    Condenser__SecAggParams secagg;
    Condenser__Deadlines deadlines;
    Condenser__DpSgd dp;
    ProtobufCBinaryData class_names[CND_CLASSES_MAX];
} cnd_job_proto_t;
void cnd_job_to_proto(cnd_job_proto_t *bufs, const cnd_job_spec_t *j, uint64_t job_id,
                      Condenser__ObjectInfo *teacher_info);
/* The reverse, for a site: copies a validated JobSpec into j (coordinator-only fields zero). A
 * JobSpec without class names (an older coordinator) gets the map "0,1,...,K-1". */
CND_MUST_USE int cnd_job_from_proto(cnd_job_spec_t *j, const Condenser__JobSpec *m);

#endif
