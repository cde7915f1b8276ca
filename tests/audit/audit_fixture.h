/*
 * audit_fixture.h: builds audit logs for the audit tests: node keys from fixed seeds, and a
 * coordinator log of one complete job (enrollment, recipe, rounds with metrics, dropouts,
 * ingress from each site, model versions, a signed artifact, a rollout with waves, a refused
 * connection, an operator action), written through the same vocabulary the coordinator uses.
 * Test-only: nothing here is reachable from the `condenser` command.
 */
#ifndef CND_AUDIT_FIXTURE_H
#define CND_AUDIT_FIXTURE_H

#include "audit_actions.h"
#include "json.h"
#include "audit_log.h"
#include "digest.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    uint8_t pk[32], sk[64];
    char fpr[CND_AUDIT_FPR_HEX];
} fx_key_t;

static inline void fx_key(fx_key_t *k, uint8_t seed_byte)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    if (sodium_init() < 0) abort();
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    cnd_audit_fingerprint(k->fpr, k->pk);
}

/* Appends with the given fields; aborts the test on failure (a fixture that fails is a bug). */
static inline uint64_t fx_add(cnd_audit_t *log, const char *actor, const char *action,
                              const char *subject, const char *job, const char *details,
                              const char *digest_name, const char *digest_of)
{
    cnd_audit_digest_t d = {digest_name, {0}};
    if (digest_of) cnd_sha256(d.sha256, digest_of, strlen(digest_of));
    cnd_audit_rec_t r = {
        actor, action, subject, job, details, digest_name ? &d : NULL, digest_name ? 1u : 0u};
    uint64_t seq = 0;
    int rc = cnd_audit_append(log, &r, &seq);
    if (rc) {
        fprintf(stderr, "fixture append %s failed: %s\n", action, cnd_err_detail());
        abort();
    }
    return seq;
}

/* The sites of the fixture job. */
static const char *const fx_site_names[3] = {"st-marys-icu", "north-general", "riverside <lab>"};

/* A coordinator log of job `job` with `rounds` rounds; round 3 has site 2 drop out. Each site
 * sends `msgs_per_round` messages per round of 1000 + 10*site bytes. Ends with a checkpoint. */
static inline void fx_job_log(cnd_audit_t *log, const fx_key_t *coord, const fx_key_t sites[3],
                              const char *job, int rounds, int msgs_per_round)
{
    char det[2048];
    for (int s = 0; s < 3; s++) {
        char pkhex[65];
        cnd_hex(pkhex, sites[s].pk, 32);
        snprintf(det, sizeof det, "{\"name\":\"%s\",\"role\":\"site\",\"public_key\":\"%s\"}",
                 s == 2 ? "riverside \\u003clab>" : fx_site_names[s], pkhex);
        fx_add(log, coord->fpr, CND_AUDIT_ENROLL, sites[s].fpr, "", det, NULL, NULL);
        fx_add(log, coord->fpr, CND_AUDIT_CERT_ISSUE, sites[s].fpr, "",
               "{\"role\":\"site\",\"serial\":\"0a1b\",\"not_after\":1900000000}", "certificate",
               fx_site_names[s]);
    }
    snprintf(det, sizeof det,
             "{\"name\":\"fmnist-cnn-int8\",\"recipe\":{\"teacher\":{\"file\":\"teacher.cnd\"},"
             "\"student\":\"conv(8,3) relu maxpool(2) flatten dense(10)\",\"distill\":{\"T\":4,"
             "\"alpha\":0.7},\"qat_from_round\":%d,\"bits\":8,\"rounds\":%d,\"sites_per_round\":3,"
             "\"quorum\":2,\"threshold\":2}}",
             rounds - 1, rounds);
    fx_add(log, coord->fpr, CND_AUDIT_JOB_CREATE, job, job, det, "teacher", "teacher bytes");
    fx_add(log, "local:operator", "admin.job.create", job, job,
           "{\"command\":\"condenser job create --recipe r.ini\",\"result\":\"ok\"}", NULL, NULL);
    for (int r = 1; r <= rounds; r++) {
        char subj[32];
        snprintf(subj, sizeof subj, "round %d", r);
        snprintf(det, sizeof det, "{\"round\":%d,\"sites\":[\"%s\",\"%s\",\"%s\"]}", r,
                 sites[0].fpr, sites[1].fpr, sites[2].fpr);
        fx_add(log, coord->fpr, CND_AUDIT_ROUND_START, subj, job, det, "global_model", subj);
        for (int s = 0; s < 3; s++) {
            if (r == 3 && s == 2) continue; /* site 2 drops out of round 3 */
            for (int m = 0; m < msgs_per_round; m++) {
                char msg[64];
                size_t len = (size_t)(1000 + 10 * s);
                char body[1100];
                snprintf(msg, sizeof msg, "r%d s%d m%d", r, s, m);
                memset(body, 'x', len);
                memcpy(body, msg, strlen(msg));
                if (cnd_audit_log_message(log, 'I', coord->fpr, sites[s].fpr, job, "masked_update",
                                          r, body, len, NULL))
                    abort();
            }
        }
        double acc = 0.5 + 0.4 * (1.0 - 1.0 / r), loss = 1.6 / r;
        if (r == 3)
            snprintf(det, sizeof det,
                     "{\"round\":3,\"status\":\"ok\",\"participants\":[\"%s\",\"%s\"],\"dropouts\":"
                     "[\"%s\"],\"metrics\":{\"accuracy\":%.4f,\"loss\":%.4f,\"samples\":%d},"
                     "\"qat\":false}",
                     sites[0].fpr, sites[1].fpr, sites[2].fpr, acc, loss, 40000);
        else
            snprintf(det, sizeof det,
                     "{\"round\":%d,\"status\":\"ok\",\"participants\":[\"%s\",\"%s\",\"%s\"],"
                     "\"dropouts\":[],\"metrics\":{\"accuracy\":%.4f,\"loss\":%.4f,\"samples\":%d},"
                     "\"qat\":%s}",
                     r, sites[0].fpr, sites[1].fpr, sites[2].fpr, acc, loss, 60000,
                     r >= rounds - 1 ? "true" : "false");
        fx_add(log, coord->fpr, CND_AUDIT_ROUND_END, subj, job, det, "aggregate", subj);
        if (cnd_audit_checkpoint(log, "round.end", NULL)) abort();
    }
    fx_add(log, coord->fpr, CND_AUDIT_MODEL_VERSION, "v1-float", job,
           "{\"version\":\"v1-float\",\"format\":\"float\",\"round\":5,\"size\":81234,"
           "\"accuracy\":0.8712}",
           "model", "float model");
    fx_add(log, coord->fpr, CND_AUDIT_MODEL_VERSION, "v1-int8", job,
           "{\"version\":\"v1-int8\",\"format\":\"int8\",\"round\":5,\"size\":21034,"
           "\"accuracy\":0.8654}",
           "model", "int8 model");
    fx_add(log, coord->fpr, CND_AUDIT_ARTIFACT_SIGN, "v1-int8", job,
           "{\"version\":\"v1-int8\",\"sequence\":7,\"size\":21034,\"device_class\":\"cortex-m7\"}",
           "artifact", "int8 model");
    fx_add(log, coord->fpr, CND_AUDIT_ROLLOUT_CREATE, "ro-1", "",
           "{\"rollout\":\"ro-1\",\"version\":\"v1-int8\",\"select\":\"ward=icu\",\"devices\":200,"
           "\"canary\":5}",
           NULL, NULL);
    static const int waves[4][4] = {{5, 5, 0, 0}, {20, 19, 1, 0}, {80, 78, 0, 2}, {95, 95, 0, 0}};
    for (int w = 0; w < 4; w++) {
        snprintf(det, sizeof det,
                 "{\"rollout\":\"ro-1\",\"wave\":%d,\"devices\":%d,\"succeeded\":%d,\"failed\":%d,"
                 "\"timed_out\":%d,\"state\":\"%s\"}",
                 w, waves[w][0], waves[w][1], waves[w][2], waves[w][3],
                 w == 3 ? "done" : "continue");
        fx_add(log, coord->fpr, CND_AUDIT_ROLLOUT_WAVE, "ro-1", "", det, NULL, NULL);
        if (cnd_audit_checkpoint(log, "rollout.wave", NULL)) abort();
    }
    fx_add(log, coord->fpr, CND_AUDIT_ROLLOUT_STATE, "ro-1", "",
           "{\"rollout\":\"ro-1\",\"state\":\"completed\"}", NULL, NULL);
    fx_add(log, coord->fpr, CND_AUDIT_REJECT_CONNECTION, "ab12", "",
           "{\"address\":\"127.0.0.1:5555\",\"reason\":\"key not enrolled\"}", NULL, NULL);
    fx_add(log, coord->fpr, CND_AUDIT_JOB_STATE, job, job, "{\"state\":\"completed\"}", NULL, NULL);
    if (cnd_audit_checkpoint(log, "job.end", NULL)) abort();
}

#endif
