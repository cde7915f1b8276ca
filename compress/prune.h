/*
 * prune.h: structured pruning, whole output channels of conv2d and whole units of dense layers
 * removed from a float model, which comes out genuinely smaller (a narrower architecture,
 * never a mask of zeros).
 *
 * Channel spaces. Every conv2d and dense node makes a new set of channels, a "space"; the
 * layers after it that keep channels (activations, pools, gap, batchnorm, a depthwise conv2d)
 * carry the same space through, flatten turns each channel into H*W consecutive features, and
 * concat lays two nodes' channels side by side. A node's channels are therefore a list of
 * whole spaces (a "map"). Removing channel c of a space removes it everywhere the space
 * appears: the producer's filter and bias, the batchnorm parameters and depthwise filters on
 * the way, and the matching input channels (conv2d) or columns (dense, through flatten) of every
 * reader, with concat offsets shifting. A residual add couples the spaces of its two inputs:
 * they become one group (union-find) and lose the same channels, ranked by their summed score.
 *
 * Spaces that stay whole ("frozen"): the model input, the class scores, and the input and
 * output of a grouped conv2d that is not depthwise (its groups would have to shrink together).
 * What cannot be mapped is refused with the node named: an add whose inputs are not made of
 * matching spaces, a convolution reading flattened features, more than CND_PRUNE_MAX_SEG
 * concatenated spaces.
 *
 * Scores rank the channels of one group: L1 or L2 norm of the producing filters (dense rows),
 * or the first-order Taylor score sum |w * dL/dw| over each filter (weights and bias), from
 * cross-entropy gradients summed over a calibration set. Selection keeps the same fraction of
 * every group (at least one channel), so a ratio, or a target in MACs or bytes reached by
 * bisection on the ratio, prunes the network uniformly and the scores pick which channels go.
 */
#ifndef CND_PRUNE_H
#define CND_PRUNE_H

#include "data.h"
#include "model.h"

#define CND_PRUNE_MAX_SEG 16 /* spaces one node's channels may be made of (concat) */

typedef enum { CND_PRUNE_L1, CND_PRUNE_L2, CND_PRUNE_TAYLOR } cnd_prune_score_t;

typedef struct {
    int space; /* index into the plan's spaces (resolve groups with cnd_prune_group) */
    int hw;    /* values per channel: 1, or H*W after a flatten */
} cnd_prune_seg_t;

typedef struct {
    int n_seg;
    cnd_prune_seg_t seg[CND_PRUNE_MAX_SEG]; /* in channel order */
} cnd_prune_map_t;

typedef struct {
    int size;      /* channels */
    int frozen;    /* 1: never pruned (see above); meaningful on a group's root */
    int parent;    /* union-find parent; itself for a root */
    int node;      /* the node that made it, -1 for the model input */
    double *score; /* root: size importance values, summed over the group's producers */
    uint8_t *keep; /* root: size flags, 1 = kept (all 1 until cnd_prune_select) */
    int n_keep;    /* root: kept channels */
} cnd_prune_space_t;

typedef struct {
    int n_nodes;
    cnd_prune_map_t *out;  /* n_nodes: what each node's output channels are */
    int n_spaces;          /* <= n_nodes + 1 */
    cnd_prune_space_t *sp; /* n_spaces */
} cnd_prune_plan_t;

/* Analyses m's channel structure. Returns 0 and an owned plan (every channel kept), or
 * CND_EINVAL naming the node that cannot be pruned (see above), or CND_ENOMEM. */
CND_MUST_USE int cnd_prune_analyze(cnd_prune_plan_t **out, const cnd_model_t *m);
/* Frees a plan; accepts NULL and *p == NULL; nulls *p. */
void cnd_prune_destroy(cnd_prune_plan_t **p);

/* The root of space s's group. */
int cnd_prune_group(const cnd_prune_plan_t *p, int s);

/* Scores every prunable channel from m's parameters (L1, L2), or for CND_PRUNE_TAYLOR from
 * cross-entropy gradients over `calib` (already in m's normalisation; m is not changed: a copy
 * runs). Returns 0, CND_EINVAL (Taylor without data, classes that do not fit) or CND_ENOMEM. */
CND_MUST_USE int cnd_prune_score(cnd_prune_plan_t *p, const cnd_model_t *m, cnd_prune_score_t kind,
                                 const cnd_dataset_t *calib, int batch);

/* Keeps max(1, round(size * (1 - ratio))) channels of every prunable group, the highest
 * scores (the lower index on a tie); ratio in [0, 1). */
void cnd_prune_select(cnd_prune_plan_t *p, double ratio);

/* Writes node i's output flags (1 = kept) into keep[0 .. out.c); for a flattened node, one per
 * feature. For tests and reports. */
void cnd_prune_node_keep(const cnd_prune_plan_t *p, const cnd_model_t *m, int i, uint8_t *keep);

/* Builds the pruned model of m under p's selection: the narrower spec, the kept parameters and
 * batchnorm statistics, m's normalisation and metadata but its test_accuracy (the original's,
 * not the pruned model's). Returns 0 and an owned model, or
 * CND_ENOMEM / CND_EINVAL. */
CND_MUST_USE int cnd_prune_apply(cnd_model_t **out, const cnd_prune_plan_t *p,
                                 const cnd_model_t *m);

/* Size of m's .cnd file in bytes (its serialised form), or 0 when out of memory. */
size_t cnd_prune_model_bytes(const cnd_model_t *m);

/* The ratio for a target: the smallest ratio (to 1e-4) whose pruned model has at most
 * `target` MACs per sample (by_bytes 0) or .cnd bytes (by_bytes 1), written to *ratio and its
 * selection left in p. Returns 0, CND_EINVAL when even keeping one channel per group misses
 * the target (the detail gives the smallest reachable), or CND_ENOMEM. */
CND_MUST_USE int cnd_prune_select_target(cnd_prune_plan_t *p, const cnd_model_t *m, uint64_t target,
                                         int by_bytes, double *ratio);

#endif
