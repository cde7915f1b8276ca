/*
 * data_check.h: `condenser data check` (cmd_data.c) against what the data is for: a model
 * (--model, read here) or a federated job (--job J --dir COORD_DIR). A job lives in the
 * coordinator's database, which compress/ does not read; the coordinator's part of the command
 * (coordinator/cmd_data_job.c) passes a function that turns --job and --dir into the same
 * target a model gives: its input shape, classes and class map.
 */
#ifndef CND_DATA_CHECK_H
#define CND_DATA_CHECK_H

#include "classmap.h"
#include "error.h"
#include "layer.h"

typedef struct {
    cnd_shape_t in;                    /* input the samples must fit */
    int classes;                       /* outputs */
    char labels[CND_CLASSMAP_MAX + 1]; /* class map, `classes` names */
    char what[600];                    /* "model M.cnd", "job 3 of coord/" (messages, JSON) */
    char kind[8];                      /* "model" or "job" (the JSON key) */
} cnd_data_target_t;

/* Fills t from job `job` of the coordinator directory `dir`; 0 or an error naming what. */
typedef int (*cnd_data_job_fn)(cnd_data_target_t *t, const char *job, const char *dir);

/* `data check` with argv[0] = "check". job_fn resolves --job/--dir (NULL: those options are
 * refused). Returns 0 or a negative CND_E* code (cmd_data.c says when). */
CND_MUST_USE int cnd_cmd_data_check(int argc, char **argv, cnd_data_job_fn job_fn);

#endif
