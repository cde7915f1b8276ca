/*
 * checkpoint.h: training checkpoints (`.ckpt`). A training run writes one after every epoch; a
 * run that was killed resumes after its last finished epoch and ends with the same bits as a
 * run that was never interrupted (same settings and thread count).
 *
 * Layout (little-endian), version 1:
 *   "CNDK"  u32 version
 *   str config           the run's settings, "key=value;..." (compared on resume)
 *   u32 epochs_done  u64 step  u64 aug_rng[4]
 *   u32 optimizer kind  u64 optimizer steps  u64 n
 *   f32 m[n]  u32 has_v  f32 v[n] (if has_v)       optimizer moments
 *   u64 model_len  model bytes                     a complete .cnd (modelfile.h)
 *   u8 sha256[32]        digest of every byte before it
 * Everything else a resumed run needs is recomputed from the settings: the data split and
 * normalisation, and each epoch's shuffle (replayed from the seed). Files are written atomically
 * (temp, fsync, rename), so a kill leaves the previous checkpoint or the new one, never a mix.
 */
#ifndef CND_CHECKPOINT_H
#define CND_CHECKPOINT_H

#include "model.h"
#include "optim.h"
#include "rng.h"

#define CND_CKPT_MAGIC   "CNDK"
#define CND_CKPT_VERSION 1

typedef struct {
    char *config;       /* settings of the run that wrote it */
    int epochs_done;    /* finished epochs */
    long step;          /* optimizer steps taken (learning-rate schedule position) */
    cnd_rng_t aug_rng;  /* augmentation generator after the last finished epoch */
    cnd_optim_t optim;  /* kind, step count and moments (cfg.kind, t, n, m, v) */
    cnd_model_t *model; /* parameters, running statistics and normalisation */
} cnd_ckpt_t;

/* Writes a checkpoint of m and o after `epochs_done` epochs, tagged with `config` (NULL = "").
 * Returns 0, CND_ENOMEM or CND_EIO. */
CND_MUST_USE int cnd_ckpt_save(const char *path, const char *config, int epochs_done, long step,
                               const cnd_rng_t *aug_rng, const cnd_optim_t *o,
                               const cnd_model_t *m);

/* Reads a checkpoint. A wrong magic, an unknown version, a digest mismatch, a truncated or
 * inconsistent file each get their own message naming the path. Returns 0, CND_EIO,
 * CND_EFORMAT, CND_ECORRUPT or CND_ENOMEM; on error *ck is left empty. */
CND_MUST_USE int cnd_ckpt_load(cnd_ckpt_t *ck, const char *path);

/* Moves the checkpoint's state into a run: m gets its parameters and running statistics, o
 * its moments and step count. The model must have the same architecture and the optimizer the
 * same kind; CND_EINVAL names what differs. */
CND_MUST_USE int cnd_ckpt_apply(const cnd_ckpt_t *ck, const char *path, cnd_model_t *m,
                                cnd_optim_t *o);

/* The first "key=value" of `have` that differs from `want`, as "key=HAVE (this run: WANT)",
 * into out; returns 0 if the two settings strings are equal. */
int cnd_ckpt_config_diff(const char *have, const char *want, char *out, size_t n);

/* The error for a checkpoint found where a run would start afresh (CND_EINVAL, naming it). */
int cnd_ckpt_refuse_existing(const char *path);

void cnd_ckpt_free(cnd_ckpt_t *ck);

#endif
