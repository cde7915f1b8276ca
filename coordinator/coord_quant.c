/*
 * coord_quant.c: the coordinator's end of an int8 job (see coord_quant.h): the final float model
 * frozen (compress/quant_fed.h) and published in the artifact registry (registry.h), which
 * validates, stores, signs and logs it; and reading a job's artifacts back for `job show`,
 * `job export` and `condenser demo`.
 */
#include "coord_quant.h"
#include "clock.h"
#include "db.h"
#include "digest.h"
#include "modelfile.h"
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EXPIRES_S (365LL * 24 * 3600) /* a job's manifest: one year */

void cnd_fedq_name(char *out, size_t cap, int64_t job)
{
    snprintf(out, cap, "condenser/job-%lld", (long long)job);
}

int cnd_fedq_publish(cnd_coord_t *c, int64_t job, const cnd_job_spec_t *spec, cnd_model_rec_t *out)
{
    if (out) memset(out, 0, sizeof *out);
    cnd_dataset_t *calib = NULL;
    int rc = cnd_cstore_calib_get(c->store, job, &calib);
    if (rc) return rc;
    cnd_model_rec_t fr;
    uint8_t *blob = NULL, *art = NULL;
    size_t blen = 0, alen = 0;
    cnd_model_t *m = NULL;
    memset(&fr, 0, sizeof fr);
    if ((rc = cnd_cstore_model_latest(c->store, job, "float", &fr, &blob, &blen))) goto done;
    if ((rc = cnd_model_deserialize(&m, blob, blen, "the final model"))) goto done;
    if ((rc = cnd_fedq_freeze(&art, &alen, m, calib, (int)spec->weight_bits))) goto done;
    char name[64], jid[32];
    cnd_fedq_name(name, sizeof name, job);
    snprintf(jid, sizeof jid, "%lld", (long long)job);
    cnd_publish_opts_t o = {.model = name,
                            .version = (uint64_t)fr.version,
                            .variant = spec->weight_bits == 4 ? "w4a8" : "int8",
                            .accuracy = -1,
                            .job = jid,
                            .expires_s = S_EXPIRES_S,
                            .round = fr.round,
                            .source = fr.digest};
    int64_t aid = 0;
    rc = cnd_registry_publish(cnd_cstore_db(c->store), c->audit, c->id, c->fpr, art, alen, &o, &aid,
                              NULL, NULL);
    if (!rc && out) {
        out->job = job;
        out->version = fr.version;
        out->round = fr.round;
        snprintf(out->format, sizeof out->format, "%s", o.variant);
        cnd_sha256(out->digest, art, alen);
        out->size = alen;
        out->accuracy = -1;
        out->created_ms = cnd_unix_ms();
    }
done:
    cnd_model_rec_free(&fr);
    cnd_model_destroy(&m);
    cnd_data_destroy(&calib);
    free(blob);
    free(art);
    return rc;
}

/* A registry artifact of the job as a model record, with its manifest; the round is the float
 * model's of the same version (0 when there is none). */
static int s_record(cnd_cstore_t *s, const cnd_rartifact_t *a, int64_t job, cnd_model_rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->job = job;
    r->version = (int64_t)a->version;
    snprintf(r->format, sizeof r->format, "%.15s", a->variant); /* variants are short */
    memcpy(r->digest, a->digest, 32);
    r->size = a->size;
    r->accuracy = a->accuracy;
    r->created_ms = a->created_ms;
    cnd_model_rec_t fm;
    if (cnd_cstore_model_get(s, job, r->version, "float", &fm, NULL, NULL) == 0) {
        r->round = fm.round;
        cnd_model_rec_free(&fm);
    }
    cnd_err_clear();
    int rc = cnd_registry_manifest(cnd_cstore_db(s), a->id, &r->manifest, &r->manifest_len);
    if (rc == CND_ENOTFOUND) {
        cnd_err_clear();
        return 0;
    }
    return rc;
}

/* The registry's artifacts under the job's name (none when the file has no registry yet: a
 * read-only view of a file no new program has opened read-write). */
static int s_list(cnd_cstore_t *s, int64_t job, int64_t version, cnd_rartifact_t **v, size_t *n)
{
    *v = NULL;
    *n = 0;
    sqlite3 *db = cnd_cstore_db(s);
    if (!cnd_db_has_table(db, "registry_artifact")) return 0;
    char name[64];
    cnd_fedq_name(name, sizeof name, job);
    return cnd_registry_list(db, name, version < 0 ? -1 : version, v, n);
}

int cnd_fedq_artifact(cnd_cstore_t *s, int64_t job, int64_t version, cnd_model_rec_t *r,
                      uint8_t **blob, size_t *len)
{
    memset(r, 0, sizeof *r);
    cnd_rartifact_t *v = NULL;
    size_t n = 0;
    int rc = s_list(s, job, version, &v, &n);
    if (rc) return rc;
    if (n) {
        cnd_rartifact_t a = v[n - 1]; /* the highest version (the newest of its variants) */
        free(v);
        if (blob && (rc = cnd_registry_get(cnd_cstore_db(s), a.id, &a, blob, len))) return rc;
        if ((rc = s_record(s, &a, job, r)) && blob) {
            free(*blob);
            *blob = NULL;
        }
        return rc;
    }
    free(v);
    /* a file from before the registry */
    return version < 0 ? cnd_cstore_model_latest(s, job, "int8", r, blob, len)
                       : cnd_cstore_model_get(s, job, version, "int8", r, blob, len);
}

int cnd_fedq_artifacts(cnd_cstore_t *s, int64_t job, cnd_model_rec_t **list, size_t *n)
{
    *list = NULL;
    *n = 0;
    cnd_rartifact_t *v = NULL;
    size_t nv = 0;
    int rc = s_list(s, job, -1, &v, &nv);
    if (rc || !nv) {
        free(v);
        return rc;
    }
    cnd_model_rec_t *out = calloc(nv, sizeof *out);
    if (!out) rc = cnd_errf(CND_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < nv; i++)
        if (!(rc = s_record(s, &v[i], job, &out[i]))) *n = i + 1;
    free(v);
    if (rc) {
        for (size_t i = 0; i < *n; i++) cnd_model_rec_free(&out[i]);
        free(out);
        *n = 0;
        return rc;
    }
    *list = out;
    return 0;
}
