/* test_audit_entries.c: every builder of audit/audit_entries.h writes exactly the entry the
 * code it replaced wrote. Each expected string below is the stored, canonical entry (keys
 * sorted, digests in hex) of what the inline JSON-writer calls in coord_daemon.c,
 * rollout_serve.c, rollout.c, registry.c, cmd_site.c, audit_limit.c and audit_log.c produced
 * before the builders (main at be4b224), with the entry's prev_root and time_ms blanked: those
 * depend on the log and the clock, not the builder. Digests are SHA-256 known answers. Also:
 * optional fields left out exactly when the old code left them out, and a refused entry
 * writes nothing. */
#include "audit_entries.h"
#include "audit_fixture.h"
#include "check.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* SHA-256 known answers of the bytes the tests hash. */
#define H_ABC     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define H_EMPTY   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define H_DER_NEW "1d8450fdbd21cbb88404066726d177063a021f89a220f1334a3840fb3138233c"
#define H_DER_OLD "1e5a1e2ec9e2b1743eb1f57beaa1c3f5f0a7da0e4abdcbf4a427176d5eeb1150"
#define H_MANIF   "05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f"
#define H_FRAME   "d907be3a6f6bdb569a72d4e0199bc318d9eb9f73064bac8b109fff6d1b41212f"
/* Keys 01..20 and 21..40 (hex), and their fingerprints (SHA-256 of the key). */
#define PK1     "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
#define PK1_FPR "ae216c2ef5247a3782c135efa279a3e4cdc61094270f5d2be58c6204b7a612c9"
#define PK2     "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40"
#define PK2_FPR "7eee5800ddcd3b3cc9fd047831cd8536e3c3f57f44d746f515da93f048ee9e91"

static cnd_audit_t *g_log;
static uint64_t g_next; /* seq the next entry gets */

/* The stored entry `seq` with "prev_root":"<hex>" and "time_ms":<n> replaced by "P" and T. */
static char *stored(uint64_t seq)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(cnd_audit_db(g_log), "SELECT entry FROM audit_entry WHERE seq = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    if (sqlite3_step(st) == SQLITE_ROW) out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (!out) return NULL;
    regex_t re;
    if (regcomp(&re, "\"prev_root\":\"[0-9a-f]{64}\"(.*)\"time_ms\":[0-9]+}$", REG_EXTENDED)) {
        free(out);
        return NULL;
    }
    regmatch_t m[2];
    if (regexec(&re, out, 2, m, 0) == 0) {
        char mid[4096];
        snprintf(mid, sizeof mid, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), out + m[1].rm_so);
        snprintf(out + m[0].rm_so, strlen(out) + 1 - (size_t)m[0].rm_so,
                 "\"prev_root\":\"P\"%s\"time_ms\":T}", mid);
    }
    regfree(&re);
    return out;
}

/* The builder's call returned rc; it must have appended exactly `want` as the next entry. */
static int wrote(int rc, const char *want)
{
    if (rc) {
        fprintf(stderr, "builder failed: %s\n", cnd_err_detail());
        return 0;
    }
    uint64_t size = 0;
    if (cnd_audit_size(g_log, &size) || size != g_next + 1) {
        fprintf(stderr, "log has %llu entries, expected %llu\n", (unsigned long long)size,
                (unsigned long long)(g_next + 1));
        return 0;
    }
    char *got = stored(g_next++);
    int ok = got && strcmp(got, want) == 0;
    if (!ok) fprintf(stderr, "stored: %s\nwanted: %s\n", got ? got : "(none)", want);
    free(got);
    return ok;
}

/* "...,"seq":N,..." for the expected strings. */
#define ENTRY(action, actor, details, digests, job, seq, subject)                                  \
    "{\"action\":\"" action "\",\"actor\":\"" actor "\",\"details\":" details                      \
    ",\"digests\":" digests ",\"job\":\"" job "\",\"prev_root\":\"P\",\"seq\":" seq                \
    ",\"subject\":\"" subject "\",\"time_ms\":T}"

static const uint8_t *pk(int second)
{
    static uint8_t k[2][32];
    for (int i = 0; i < 32; i++) {
        k[0][i] = (uint8_t)(1 + i);
        k[1][i] = (uint8_t)(33 + i);
    }
    return k[second];
}

static void test_identities(void)
{
    /* cmd_site.c enroll, cmd_coordinator.c (own key, no certificate), fleet_registry.c */
    CHECK(wrote(cnd_audit_log_enroll(g_log, "a1", PK1_FPR, "site-a", "site", pk(0),
                                     (const uint8_t *)"der-new", 7),
                ENTRY("enroll", "a1",
                      "{\"name\":\"site-a\",\"public_key\":\"" PK1 "\",\"role\":\"site\"}",
                      "{\"certificate\":\"" H_DER_NEW "\"}", "", "0", PK1_FPR)));
    CHECK(wrote(cnd_audit_log_enroll(g_log, "a1", PK1_FPR, "dev-1", "device", pk(0), NULL, 0),
                ENTRY("enroll", "a1",
                      "{\"name\":\"dev-1\",\"public_key\":\"" PK1 "\",\"role\":\"device\"}", "{}",
                      "", "1", PK1_FPR)));
    /* cmd_site.c s_audit_renew: a rotation that knows the old certificate... */
    cnd_audit_cert_renew_t r = {.name = "site-a",
                                .role = "site",
                                .rotation = 1,
                                .serial = 12,
                                .not_after = 1767225600,
                                .public_key = pk(1),
                                .der = (const uint8_t *)"der-new",
                                .der_len = 7,
                                .old_fpr = PK1_FPR,
                                .old_known = 1,
                                .old_serial = 11,
                                .old_not_after = 1764547200,
                                .old_der = (const uint8_t *)"der-old",
                                .old_der_len = 7};
    CHECK(wrote(cnd_audit_log_cert_renew(g_log, "a1", &r),
                ENTRY("cert.renew", "a1",
                      "{\"kind\":\"rotation\",\"name\":\"site-a\",\"not_after\":1767225600,"
                      "\"public_key\":\"" PK2 "\",\"role\":\"site\",\"serial\":12,"
                      "\"supersedes\":{\"fingerprint\":\"" PK1_FPR
                      "\",\"not_after\":1764547200,\"serial\":11}}",
                      "{\"certificate\":\"" H_DER_NEW "\",\"superseded_certificate\":\"" H_DER_OLD
                      "\"}",
                      "", "2", PK2_FPR)));
    /* ...and a renewal of an identity enrolled without a readable certificate */
    r.rotation = 0;
    r.public_key = pk(0);
    r.old_known = 0;
    r.old_der = NULL;
    CHECK(wrote(cnd_audit_log_cert_renew(g_log, "a1", &r),
                ENTRY("cert.renew", "a1",
                      "{\"kind\":\"renewal\",\"name\":\"site-a\",\"not_after\":1767225600,"
                      "\"public_key\":\"" PK1 "\",\"role\":\"site\",\"serial\":12,"
                      "\"supersedes\":{\"fingerprint\":\"" PK1_FPR "\"}}",
                      "{\"certificate\":\"" H_DER_NEW "\"}", "", "3", PK1_FPR)));
}

static void test_jobs_and_models(void)
{
    /* coord_daemon.c s_audit_job_state: the reason only when there is one */
    CHECK(wrote(cnd_audit_log_job_state(g_log, "a1", 7, "failed", "quorum lost in round 2"),
                ENTRY("job.state", "a1",
                      "{\"reason\":\"quorum lost in round 2\",\"state\":\"failed\"}", "{}", "7",
                      "4", "7")));
    CHECK(wrote(cnd_audit_log_job_state(g_log, "a1", 7, "completed", NULL),
                ENTRY("job.state", "a1", "{\"state\":\"completed\"}", "{}", "7", "5", "7")));
    /* registry.c s_audit_version: a frozen artifact (no round, accuracy, source) */
    uint8_t h_abc[32], h_empty[32];
    cnd_sha256(h_abc, "abc", 3);
    cnd_sha256(h_empty, "", 0);
    cnd_audit_model_version_t m = {.version = "condenser/job-1@2",
                                   .job = "1",
                                   .round = 0,
                                   .format = "int8",
                                   .size = 4096,
                                   .has_accuracy = 1,
                                   .accuracy = 0.875,
                                   .source = h_abc,
                                   .samples = -1,
                                   .digest = h_empty};
    CHECK(wrote(cnd_audit_log_model_version(g_log, "a1", &m),
                ENTRY("model.version", "a1",
                      "{\"accuracy\":0.875,\"format\":\"int8\",\"size\":4096,\"source\":\"" H_ABC
                      "\",\"version\":\"condenser/job-1@2\"}",
                      "{\"model\":\"" H_EMPTY "\"}", "1", "6", "condenser/job-1@2")));
    /* publish with a round, nothing else optional */
    m.round = 3;
    m.has_accuracy = 0;
    m.source = NULL;
    m.job = NULL;
    CHECK(wrote(cnd_audit_log_model_version(g_log, "a1", &m),
                ENTRY("model.version", "a1",
                      "{\"format\":\"int8\",\"round\":3,\"size\":4096,"
                      "\"version\":\"condenser/job-1@2\"}",
                      "{\"model\":\"" H_EMPTY "\"}", "", "7", "condenser/job-1@2")));
    /* the round's float version as coord_round.c writes it (samples) */
    cnd_audit_model_version_t f = {.version = "v3",
                                   .job = "7",
                                   .round = 3,
                                   .format = "float",
                                   .size = 1000,
                                   .has_accuracy = 1,
                                   .accuracy = 0.5,
                                   .samples = 600,
                                   .digest = h_abc};
    CHECK(wrote(cnd_audit_log_model_version(g_log, "a1", &f),
                ENTRY("model.version", "a1",
                      "{\"accuracy\":0.5,\"format\":\"float\",\"round\":3,\"samples\":600,"
                      "\"size\":1000,\"version\":\"v3\"}",
                      "{\"model\":\"" H_ABC "\"}", "7", "8", "v3")));
    /* registry.c s_audit_sign */
    cnd_audit_artifact_sign_t a = {.version = "condenser/job-1@2",
                                   .job = "1",
                                   .variant = "w4a8",
                                   .sequence = 5,
                                   .size = 2048,
                                   .device_class = "cortex-m4,armv8",
                                   .expires = 1767225600,
                                   .rollback = 0,
                                   .signer = PK1_FPR,
                                   .artifact = h_abc,
                                   .manifest = "manifest",
                                   .manifest_len = 8};
    CHECK(wrote(cnd_audit_log_artifact_sign(g_log, "a1", &a),
                ENTRY("artifact.sign", "a1",
                      "{\"device_class\":\"cortex-m4,armv8\",\"expires\":1767225600,"
                      "\"rollback\":false,\"sequence\":5,\"signer\":\"" PK1_FPR
                      "\",\"size\":2048,\"variant\":\"w4a8\",\"version\":\"condenser/job-1@2\"}",
                      "{\"artifact\":\"" H_ABC "\",\"manifest\":\"" H_MANIF "\"}", "1", "9",
                      "condenser/job-1@2")));
    a.rollback = 1;
    a.device_class = "";
    a.job = "";
    CHECK(wrote(cnd_audit_log_artifact_sign(g_log, "a1", &a),
                ENTRY("artifact.sign", "a1",
                      "{\"device_class\":\"\",\"expires\":1767225600,"
                      "\"rollback\":true,\"sequence\":5,\"signer\":\"" PK1_FPR
                      "\",\"size\":2048,\"variant\":\"w4a8\",\"version\":\"condenser/job-1@2\"}",
                      "{\"artifact\":\"" H_ABC "\",\"manifest\":\"" H_MANIF "\"}", "", "10",
                      "condenser/job-1@2")));
}

static void test_rollouts(void)
{
    /* rollout.c s_audit_create */
    cnd_audit_rollout_create_t c = {.rollout = 4,
                                    .job = "1",
                                    .version = "condenser/job-1@2",
                                    .select = "label=eu",
                                    .devices = 10,
                                    .canary = 2,
                                    .selected = 12,
                                    .unfit = 1,
                                    .current = 1,
                                    .waves = 4,
                                    .rate = 2,
                                    .factor = 2.5,
                                    .abort_failures_pct = 20,
                                    .abort_min = 3,
                                    .device_timeout_s = 600,
                                    .window = ""};
    CHECK(wrote(cnd_audit_log_rollout_create(g_log, "a1", &c),
                ENTRY("rollout.create", "a1",
                      "{\"canary\":2,\"current\":1,\"devices\":10,\"policy\":{"
                      "\"abort_failures_pct\":20,\"abort_min\":3,\"device_timeout_s\":600,"
                      "\"factor\":2.5,\"rate\":2,\"window\":\"\"},\"rollout\":\"4\",\"select\":"
                      "\"label=eu\",\"selected\":12,\"unfit\":1,\"version\":\"condenser/job-1@2\","
                      "\"waves\":4}",
                      "{}", "1", "11", "4")));
    /* cnd_rollout_admin and the engine's s_audit_state: reason only when there is one */
    CHECK(wrote(cnd_audit_log_rollout_state(g_log, "a1", 4, "1", "paused", "operator"),
                ENTRY("rollout.state", "a1",
                      "{\"reason\":\"operator\",\"rollout\":\"4\",\"state\":\"paused\"}", "{}", "1",
                      "12", "4")));
    CHECK(wrote(cnd_audit_log_rollout_state(g_log, "a1", 4, NULL, "completed", NULL),
                ENTRY("rollout.state", "a1", "{\"rollout\":\"4\",\"state\":\"completed\"}", "{}",
                      "", "13", "4")));
    /* s_audit_wave */
    cnd_audit_rollout_wave_t v = {.rollout = 4,
                                  .job = "1",
                                  .wave = 1,
                                  .devices = 5,
                                  .succeeded = 3,
                                  .failed = 1,
                                  .timed_out = 0,
                                  .deferred = 1,
                                  .state = "continue"};
    CHECK(wrote(cnd_audit_log_rollout_wave(g_log, "a1", &v),
                ENTRY("rollout.wave", "a1",
                      "{\"deferred\":1,\"devices\":5,\"failed\":1,\"rollout\":\"4\",\"state\":"
                      "\"continue\",\"succeeded\":3,\"timed_out\":0,\"wave\":1}",
                      "{}", "1", "14", "4")));
    /* s_audit_device: reason and latency only when there are */
    cnd_audit_rollout_device_t d = {.rollout = 4,
                                    .job = "1",
                                    .subject = PK1_FPR,
                                    .wave = 1,
                                    .device = "dev-3",
                                    .outcome = "healthy",
                                    .reason = "self-test ok",
                                    .latency_us = 850};
    CHECK(wrote(cnd_audit_log_rollout_device(g_log, "a1", &d),
                ENTRY("rollout.device", "a1",
                      "{\"device\":\"dev-3\",\"latency_us\":850,\"outcome\":\"healthy\",\"reason\":"
                      "\"self-test ok\",\"rollout\":\"4\",\"wave\":1}",
                      "{}", "1", "15", PK1_FPR)));
    d.subject = "dev-3";
    d.outcome = "timeout";
    d.reason = NULL;
    d.latency_us = 0;
    CHECK(wrote(cnd_audit_log_rollout_device(g_log, "a1", &d),
                ENTRY("rollout.device", "a1",
                      "{\"device\":\"dev-3\",\"outcome\":\"timeout\",\"rollout\":\"4\",\"wave\":1}",
                      "{}", "1", "16", "dev-3")));
}

static void test_messages_refusals_sessions(void)
{
    /* cnd_audit_log_message (both daemons and the agent): the round only when there is one */
    uint64_t seq = 0;
    CHECK(wrote(
        cnd_audit_log_message(g_log, 'E', "a1", PK1_FPR, "7", "MSG_METRICS", 2, "abc", 3, &seq),
        ENTRY("egress", "a1",
              "{\"peer\":\"" PK1_FPR "\",\"round\":2,\"size\":3,\"type\":\"MSG_METRICS\"}",
              "{\"message\":\"" H_ABC "\"}", "7", "17", PK1_FPR)));
    CHECK_EQ_INT(seq, 17);
    CHECK(
        wrote(cnd_audit_log_message(g_log, 'I', "a1", PK1_FPR, "", "MSG_HELLO", -1, "", 0, NULL),
              ENTRY("ingress", "a1", "{\"peer\":\"" PK1_FPR "\",\"size\":0,\"type\":\"MSG_HELLO\"}",
                    "{\"message\":\"" H_EMPTY "\"}", "", "18", PK1_FPR)));
    /* coord_daemon.c s_drain_refusals */
    CHECK(
        wrote(cnd_audit_log_reject_connection(g_log, "a1", PK2, "10.0.0.9", "unknown key"),
              ENTRY("reject.connection", "a1",
                    "{\"address\":\"10.0.0.9\",\"reason\":\"unknown key\"}", "{}", "", "19", PK2)));
    /* s_reject of both daemons: with a session the peer is in details, without none */
    cnd_audit_reject_message_t m = {.subject = PK1_FPR,
                                    .peer = PK1_FPR,
                                    .type = "MSG_MASKED_INPUT",
                                    .bytes = "frame\0bytes",
                                    .len = 11,
                                    .reason = "not in this phase",
                                    .code = "ERR_PHASE"};
    CHECK(wrote(cnd_audit_log_reject_message(g_log, "a1", &m),
                ENTRY("reject.message", "a1",
                      "{\"code\":\"ERR_PHASE\",\"peer\":\"" PK1_FPR
                      "\",\"reason\":\"not in this phase\",\"size\":11,\"type\":"
                      "\"MSG_MASKED_INPUT\"}",
                      "{\"message\":\"" H_FRAME "\"}", "", "20", PK1_FPR)));
    m.subject = "site-x";
    m.peer = NULL;
    CHECK(wrote(cnd_audit_log_reject_message(g_log, "a1", &m),
                ENTRY("reject.message", "a1",
                      "{\"code\":\"ERR_PHASE\",\"reason\":\"not in this phase\",\"size\":11,"
                      "\"type\":\"MSG_MASKED_INPUT\"}",
                      "{\"message\":\"" H_FRAME "\"}", "", "21", "site-x")));
    /* audit_limit.c s_summary */
    CHECK(wrote(cnd_audit_log_reject_summary(g_log, "a1", "reject.message", PK1_FPR, "ERR_PHASE",
                                             41, 5, 60),
                ENTRY("reject.summary", "a1",
                      "{\"action\":\"reject.message\",\"count\":41,\"peer\":\"" PK1_FPR
                      "\",\"reason\":\"ERR_PHASE\",\"recorded\":5,\"seconds\":60}",
                      "{}", "", "22", PK1_FPR)));
    /* s_session_end of both daemons */
    CHECK(wrote(cnd_audit_log_session_end(g_log, "a1", PK1_FPR, "site-a", "rotated",
                                          "its key was rotated", "10.0.0.7"),
                ENTRY("session.end", "a1",
                      "{\"address\":\"10.0.0.7\",\"detail\":\"its key was rotated\",\"name\":"
                      "\"site-a\",\"reason\":\"rotated\"}",
                      "{}", "", "23", PK1_FPR)));
}

static void test_admin_and_refusals(void)
{
    const char *argv[] = {"condenser", "site", "revoke", "site-a", "--dir", "coord dir"};
    CHECK(
        wrote(cnd_audit_log_admin(g_log, "local:op", "site.revoke", 6, argv, "site-a", NULL, "ok"),
              ENTRY("admin.site.revoke", "local:op",
                    "{\"argv\":[\"condenser\",\"site\",\"revoke\",\"site-a\",\"--dir\","
                    "\"coord dir\"],\"result\":\"ok\"}",
                    "{}", "", "24", "site-a")));
    /* Refused entries write nothing: a word that is not UTF-8, a control character in a field,
     * a missing actor. */
    uint64_t before = 0, after = 0;
    CHECK(cnd_audit_size(g_log, &before) == 0);
    const char *bad[] = {"condenser", "site", "revoke", "\xff"};
    CHECK(cnd_audit_log_admin(g_log, "local:op", "site.revoke", 4, bad, "x", NULL, "ok") ==
          CND_EINVAL);
    CHECK(cnd_audit_log_session_end(g_log, "a1", "bad\nsubject", "n", "r", "d", "a") == CND_EINVAL);
    CHECK(cnd_audit_log_job_state(g_log, "", 1, "failed", NULL) == CND_EINVAL);
    CHECK(cnd_audit_log_message(g_log, 'X', "a1", PK1_FPR, "", "T", -1, "", 0, NULL) == CND_EINVAL);
    CHECK(cnd_audit_size(g_log, &after) == 0 && after == before);
}

/* site.refuse, as agent_daemon.c's s_audit_refusal wrote it inline: round and attempt only for a
 * round. */
static void test_site_refuse(void)
{
    CHECK(wrote(cnd_audit_log_site_refuse(g_log, "a1", PK1_FPR, "7", "round",
                                          "attempt 2 of round 3 was served before", 3, 2),
                ENTRY("site.refuse", "a1",
                      "{\"attempt\":2,\"reason\":\"attempt 2 of round 3 was served before\","
                      "\"round\":3,\"what\":\"round\"}",
                      "{}", "7", "25", PK1_FPR)));
    CHECK(wrote(cnd_audit_log_site_refuse(g_log, "a1", PK1_FPR, "8", "job",
                                          "learning rate 1e-09 is below this site's lr_min", 0, 0),
                ENTRY("site.refuse", "a1",
                      "{\"reason\":\"learning rate 1e-09 is below this site's lr_min\","
                      "\"what\":\"job\"}",
                      "{}", "8", "26", PK1_FPR)));
}

/* round.end as coord_round.c's s_audit_round_end wrote it inline: an applied round with secure
 * metric sums and both digests, then a failed one (no participants, no metrics, a reason). */
static void test_round_end(void)
{
    uint8_t h_abc[32], h_empty[32];
    cnd_sha256(h_abc, "abc", 3);
    cnd_sha256(h_empty, "", 0);
    const char *in[] = {PK1_FPR}, *out[] = {PK2_FPR};
    cnd_audit_round_end_t e = {.job = "4",
                               .round = 3,
                               .attempt = 2,
                               .status = "ok",
                               .participants = in,
                               .n_participants = 1,
                               .dropouts = out,
                               .n_dropouts = 1,
                               .has_metrics = 1,
                               .validated = 8,
                               .correct = 6,
                               .samples = 100,
                               .loss_sum = 4.0,
                               .qat = 1,
                               .reason = "",
                               .aggregate = h_abc,
                               .model = h_empty};
    CHECK(wrote(
        cnd_audit_log_round_end(g_log, "a1", &e),
        ENTRY("round.end", "a1",
              "{\"attempt\":2,\"dropouts\":[\"" PK2_FPR "\"],\"metrics\":{\"accuracy\":0.75,"
              "\"loss\":0.5,\"samples\":100,\"validated\":8},\"participants\":[\"" PK1_FPR
              "\"],\"qat\":true,\"round\":3,\"status\":\"ok\"}",
              "{\"aggregate\":\"" H_ABC "\",\"model\":\"" H_EMPTY "\"}", "4", "27", "round 3")));
    e.status = "failed";
    e.n_participants = 0;
    e.has_metrics = 0;
    e.qat = 0;
    e.reason = "advertise phase: too few keys";
    e.aggregate = e.model = NULL;
    CHECK(wrote(cnd_audit_log_round_end(g_log, "a1", &e),
                ENTRY("round.end", "a1",
                      "{\"attempt\":2,\"dropouts\":[\"" PK2_FPR "\"],\"participants\":[],"
                      "\"qat\":false,\"reason\":\"advertise phase: too few keys\",\"round\":3,"
                      "\"status\":\"failed\"}",
                      "{}", "4", "28", "round 3")));
}

/* job.create as cmd_job.c's s_audit_create wrote it inline (main at 29d0f68): name, the recipe
 * as given, the calibration samples; a teacher digest only with a teacher. job.state of a
 * cancel, as its inline code wrote it (state and the operator's reason). round.start as
 * coord_round.c's s_audit_round_start wrote it: the roster in order, SecAgg+ parameters, the
 * global model's digest. */
static void test_job_create_round_start(void)
{
    uint8_t h_abc[32], h_empty[32];
    cnd_sha256(h_abc, "abc", 3);
    cnd_sha256(h_empty, "", 0);
    cnd_audit_job_create_t j = {.job = 5,
                                .name = "fmnist-cnn",
                                .recipe_json = "{\"rounds\":3,\"lr\":0.05}",
                                .calibration_samples = 256,
                                .teacher = h_abc,
                                .student_init = h_empty};
    CHECK(wrote(cnd_audit_log_job_create(g_log, "op", &j),
                ENTRY("job.create", "op",
                      "{\"calibration_samples\":256,\"name\":\"fmnist-cnn\",\"recipe\":"
                      "{\"lr\":0.05,\"rounds\":3}}",
                      "{\"student_init\":\"" H_EMPTY "\",\"teacher\":\"" H_ABC "\"}", "5", "29",
                      "5")));
    j.teacher = NULL;
    j.calibration_samples = 0;
    CHECK(wrote(cnd_audit_log_job_create(g_log, "op", &j),
                ENTRY("job.create", "op",
                      "{\"calibration_samples\":0,\"name\":\"fmnist-cnn\",\"recipe\":"
                      "{\"lr\":0.05,\"rounds\":3}}",
                      "{\"student_init\":\"" H_EMPTY "\"}", "5", "30", "5")));
    CHECK(wrote(cnd_audit_log_job_state(g_log, "op", 5, "cancelled", "cancelled by the operator"),
                ENTRY("job.state", "op",
                      "{\"reason\":\"cancelled by the operator\",\"state\":\"cancelled\"}", "{}",
                      "5", "31", "5")));
    const char *roster[] = {PK1_FPR, PK2_FPR};
    cnd_audit_round_start_t r = {.job = 5,
                                 .round = 2,
                                 .attempt = 1,
                                 .sites = roster,
                                 .n_sites = 2,
                                 .model_version = 4,
                                 .qat = 1,
                                 .threshold = 2,
                                 .degree = 1,
                                 .min_survivors = 2,
                                 .ring_bits = 32,
                                 .length = 1234,
                                 .global_model = h_abc};
    CHECK(wrote(cnd_audit_log_round_start(g_log, "a1", &r),
                ENTRY("round.start", "a1",
                      "{\"attempt\":1,\"model_version\":4,\"qat\":true,\"round\":2,"
                      "\"secagg\":{\"degree\":1,\"length\":1234,\"min_survivors\":2,"
                      "\"ring_bits\":32,\"threshold\":2},\"sites\":[\"" PK1_FPR "\",\"" PK2_FPR
                      "\"]}",
                      "{\"global_model\":\"" H_ABC "\"}", "5", "32", "round 2")));
}

int main(void)
{
    char dir[] = "/tmp/cnd_audit_entries_XXXXXX", path[256];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/log.db", dir);
    fx_key_t k;
    fx_key(&k, 7);
    if (cnd_audit_open(&g_log, path, k.sk, "test/entries")) {
        fprintf(stderr, "open: %s\n", cnd_err_detail());
        return 1;
    }
    test_identities();
    test_jobs_and_models();
    test_rollouts();
    test_messages_refusals_sessions();
    test_admin_and_refusals();
    test_site_refuse();
    test_round_end();
    test_job_create_round_start();
    cnd_audit_close(&g_log);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_result("test_audit_entries");
}
