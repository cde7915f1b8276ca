/*
 * coord_quant.c: the coordinator's end of an int8 job (see coord_quant.h): the final float model
 * frozen (compress/quant_fed.h), its manifest signed, stored and logged.
 */
#include "coord_quant.h"
#include "artifact.h"
#include "audit_actions.h"
#include "json.h"
#include "clock.h"
#include "digest.h"
#include "manifest.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    cnd_buf_t man;
    cnd_buf_init(&man);
    memset(&fr, 0, sizeof fr);
    if ((rc = cnd_cstore_model_latest(c->store, job, "float", &fr, &blob, &blen))) goto done;
    if ((rc = cnd_model_deserialize(&m, blob, blen, "the final model"))) goto done;
    if ((rc = cnd_fedq_freeze(&art, &alen, m, calib, (int)spec->weight_bits))) goto done;
    /* The manifest a device checks (crypto/manifest.h): name, version, sequence, digest. */
    cnd_manifest_t mf;
    memset(&mf, 0, sizeof mf);
    snprintf(mf.name, sizeof mf.name, "condenser/job-%lld", (long long)job);
    mf.sequence = (uint64_t)fr.version;
    mf.version = (uint64_t)fr.version;
    mf.length = alen;
    cnd_sha256(mf.digest, art, alen);
    mf.expires = cnd_unix_time() + 365LL * 24 * 3600;
    if ((rc = cnd_manifest_sign(&man, &mf, c->id))) goto done;
    if (man.err) {
        rc = cnd_errf(CND_ENOMEM, "manifest: out of memory");
        goto done;
    }
    cnd_model_rec_t ar;
    memset(&ar, 0, sizeof ar);
    ar.job = job;
    ar.version = fr.version;
    ar.round = fr.round;
    snprintf(ar.format, sizeof ar.format, "int8");
    ar.accuracy = -1;
    ar.manifest = man.data;
    ar.manifest_len = man.len;
    if ((rc = cnd_cstore_model_put(c->store, &ar, art, alen))) goto done;
    char jid[32], ver[48], hex[65];
    snprintf(jid, sizeof jid, "%lld", (long long)job);
    snprintf(ver, sizeof ver, "v%lld-int8", (long long)fr.version);
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "version");
    cnd_jw_str(&w, ver);
    cnd_jw_key(&w, "round");
    cnd_jw_int(&w, fr.round);
    cnd_jw_key(&w, "format");
    cnd_jw_str(&w, spec->weight_bits == 4 ? "w4a8" : "int8");
    cnd_jw_key(&w, "size");
    cnd_jw_int(&w, (int64_t)alen);
    cnd_jw_key(&w, "source");
    cnd_jw_str(&w, cnd_hex(hex, fr.digest, 32));
    cnd_jw_obj_end(&w);
    cnd_audit_digest_t dg = {"model", {0}};
    memcpy(dg.sha256, mf.digest, 32);
    cnd_audit_rec_t a = {.actor = c->fpr,
                         .action = CND_AUDIT_MODEL_VERSION,
                         .subject = ver,
                         .job = jid,
                         .details = cnd_jw_text(&w),
                         .digests = &dg,
                         .n_digests = 1};
    rc = a.details ? cnd_audit_append(c->audit, &a, NULL) : CND_ENOMEM;
    cnd_jw_free(&w);
    if (!rc) {
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "version");
        cnd_jw_str(&w, ver);
        cnd_jw_key(&w, "sequence");
        cnd_jw_int(&w, (int64_t)mf.sequence);
        cnd_jw_key(&w, "size");
        cnd_jw_int(&w, (int64_t)alen);
        cnd_jw_key(&w, "device_class");
        cnd_jw_str(&w, mf.target);
        cnd_jw_key(&w, "expires");
        cnd_jw_int(&w, mf.expires);
        cnd_jw_key(&w, "signer");
        cnd_jw_str(&w, c->fpr);
        cnd_jw_obj_end(&w);
        cnd_audit_digest_t dgs[2] = {{"artifact", {0}}, {"manifest", {0}}};
        memcpy(dgs[0].sha256, mf.digest, 32);
        cnd_sha256(dgs[1].sha256, man.data, man.len);
        cnd_audit_rec_t b = {.actor = c->fpr,
                             .action = CND_AUDIT_ARTIFACT_SIGN,
                             .subject = ver,
                             .job = jid,
                             .details = cnd_jw_text(&w),
                             .digests = dgs,
                             .n_digests = 2};
        rc = b.details ? cnd_audit_append(c->audit, &b, NULL) : CND_ENOMEM;
        cnd_jw_free(&w);
    }
    if (!rc && out) {
        *out = ar;
        out->manifest = NULL; /* stays owned by man, freed below */
        out->manifest_len = 0;
    }
done:
    cnd_buf_free(&man);
    cnd_model_rec_free(&fr);
    cnd_model_destroy(&m);
    cnd_data_destroy(&calib);
    free(blob);
    free(art);
    return rc;
}
