/*
 * autocompress.h: the decision logic of `condenser autocompress` (cmd_autocompress.c), kept free
 * of I/O so that it can be tested on its own: the device budget a search must meet, the
 * successive-halving schedule (which candidates get how much training), the ranking that
 * promotes candidates and picks the chosen one, and the Pareto front the report draws.
 *
 * Ranking. A result is feasible when it meets every budget given (size, latency, accuracy drop
 * against the teacher's validation accuracy). Feasible results rank above infeasible ones;
 * among feasible ones the higher validation accuracy wins, then the smaller artifact; among
 * infeasible ones the smaller violation (cnd_autoc_violation) wins, then the higher accuracy.
 * The order is total (the result index breaks ties), so "the best so far" changes only when a
 * new result outranks it, and a resumed search reaches the same choice.
 */
#ifndef CND_AUTOCOMPRESS_H
#define CND_AUTOCOMPRESS_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double size_bytes; /* largest .cndq file in bytes; 0 = no size budget */
    double latency_us; /* largest batch-1 latency in microseconds; 0 = none */
    char device[16];   /* device class of the latency budget ("x86") */
    double max_drop;   /* largest validation accuracy drop against the teacher, in points
                        * (1.0 = 0.01 accuracy); < 0 = none */
} cnd_autoc_budget_t;

/* Parses "size=64KB,latency=2ms@x86,max-drop=1.0" (any subset of the keys, in any order; an
 * empty string is no budget). Sizes: B, KB (1000 B), KiB (1024 B), MB, MiB; a bare number is
 * bytes. Latencies: us, ms, s, with "@CLASS" naming a device class that has a latency model
 * (only x86 exists; omitted means x86). max-drop: accuracy points, >= 0. Returns 0, or
 * CND_EINVAL naming the key, value or unit at fault (b is then unspecified). */
CND_MUST_USE int cnd_autoc_budget_parse(cnd_autoc_budget_t *b, const char *s);

/* Writes the budget back in the form the parser reads ("none" when empty). */
void cnd_autoc_budget_format(const cnd_autoc_budget_t *b, char *out, size_t n);

/* Parses a duration: "15m", "90s", "1h", "1h30m" or a bare number of seconds, > 0. */
CND_MUST_USE int cnd_autoc_parse_duration(const char *s, double *seconds);

/* The chain spec `spec` with the output channels of every conv2d and the units of every dense
 * layer but the last (the class scores) multiplied by mult (rounded, at least 1), into out[n].
 * Returns 0, or CND_EINVAL for a graph spec (named nodes, '@' inputs), a grouped conv2d, a mult
 * outside (0, 16], a malformed count or an out buffer too small. */
CND_MUST_USE int cnd_autoc_scale_spec(char *out, size_t n, const char *spec, double mult);

#define CND_AUTOC_MAX_RUNGS 12

/* Successive halving: rung r trains keep[r] candidates (the best keep[r] of rung r - 1) for
 * epochs[r] epochs on the first subset[r] training samples. keep[0] is every candidate; each
 * later rung keeps ceil(keep / eta) and multiplies epochs and subset by eta, capped at
 * max_epochs and n_train; the last rung is the first with one candidate left or at both caps. */
typedef struct {
    int n_rungs;
    int keep[CND_AUTOC_MAX_RUNGS];
    int epochs[CND_AUTOC_MAX_RUNGS];
    long subset[CND_AUTOC_MAX_RUNGS];
} cnd_autoc_sched_t;

/* Fills s. Returns 0, or CND_EINVAL for n_cand < 1, eta < 2, min_epochs < 1, max_epochs <
 * min_epochs, min_subset < 1 or n_train < 1. */
CND_MUST_USE int cnd_autoc_schedule(cnd_autoc_sched_t *s, int n_cand, int eta, int min_epochs,
                                    int max_epochs, long min_subset, long n_train);

/* What ranking needs of one evaluated candidate. */
typedef struct {
    double acc;        /* validation accuracy in [0, 1] */
    double bytes;      /* .cndq bytes */
    double latency_us; /* predicted latency, else measured; < 0 = unknown */
} cnd_autoc_point_t;

/* 0 when p meets b (teacher_acc is the teacher's validation accuracy), else the sum of the
 * relative excesses: bytes / size - 1, latency / budget - 1 and (drop - max_drop) / 100 per
 * budget missed; an unknown latency against a latency budget counts as a miss of 1. */
double cnd_autoc_violation(const cnd_autoc_budget_t *b, double teacher_acc,
                           const cnd_autoc_point_t *p);

/* 1 when result a ranks above result b (see the top of this file); ia and ib are their
 * indices, the last tie-breaker (the lower first). */
int cnd_autoc_better(const cnd_autoc_budget_t *b, double teacher_acc, const cnd_autoc_point_t *a,
                     int ia, const cnd_autoc_point_t *bp, int ib);

/* The index of the best of n results (-1 when n is 0). */
int cnd_autoc_choose(const cnd_autoc_budget_t *b, double teacher_acc, const cnd_autoc_point_t *p,
                     int n);

/* Pareto front of n points, maximising acc and minimising cost[i] (points whose cost is
 * negative, i.e. unknown, are never on it): front[i] = 1 when no other point has accuracy >=
 * and cost <= with one of them strictly better. */
void cnd_autoc_pareto(uint8_t *front, const double *acc, const double *cost, int n);

#endif
