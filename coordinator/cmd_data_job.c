/*
 * cmd_data_job.c: `condenser data check SPEC --job ID --dir COORD_DIR`, the data check of
 * compress/cmd_data.c against a federated job: its input shape, classes and class map, read
 * from the recipe in the coordinator's database (read-only: nothing is written, nothing sent).
 * A site operator runs it on a copy of the recipe's coordinator directory or asks the federation
 * operator to; the agent maps the site's labels onto the same class map when the job arrives.
 */
#include "commands.h"
#include "coord_admin.h"
#include "coord_store.h"
#include "data_check.h"
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_job_target(cnd_data_target_t *t, const char *job, const char *dir)
{
    if (!dir) dir = cnd_coord_default_dir();
    char *end;
    long long id = strtoll(job, &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "--job '%s' is not a job id", job);
    char db[1100];
    snprintf(db, sizeof db, "%s/coordinator.db", dir);
    cnd_cstore_t *s = NULL;
    cnd_job_rec_t r;
    memset(&r, 0, sizeof r);
    cnd_job_spec_t *j = calloc(1, sizeof *j);
    int rc = j ? cnd_cstore_open_readonly(&s, db) : CND_ENOMEM;
    if (!rc) rc = cnd_cstore_job_get(s, id, &r);
    if (!rc) rc = cnd_job_from_json(j, r.spec_json);
    if (!rc) {
        t->in = (cnd_shape_t){(int)j->in_c, (int)j->in_h, (int)j->in_w};
        t->classes = (int)j->classes;
        snprintf(t->labels, sizeof t->labels, "%s", j->labels);
        snprintf(t->what, sizeof t->what, "job %lld of %s", id, dir);
        snprintf(t->kind, sizeof t->kind, "job");
    }
    cnd_job_rec_free(&r);
    cnd_cstore_close(&s);
    free(j);
    return rc;
}

int cnd_cmd_data_check_job(int argc, char **argv)
{
    return cnd_cmd_data_check(argc, argv, s_job_target);
}
