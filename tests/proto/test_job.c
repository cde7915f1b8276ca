/*
 * test_job.c: the job recipe (proto/job.c): its JSON round trip with every field required, the
 * protobuf JobSpec sites receive (validated by the receive gate and read back), and the checks
 * that name the field at fault; the class map ("labels") in all three forms.
 */
#include "check.h"
#include "job.h"
#include "job_dp.h"
#include "dp_accountant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_recipe(void)
{
    cnd_job_spec_t j, k;
    cnd_job_defaults(&j);
    snprintf(j.arch, sizeof j.arch, "flatten dense(128) relu dense(10)");
    j.in_c = 1, j.in_h = 28, j.in_w = 28, j.classes = 10;
    cnd_classmap_default(j.labels, sizeof j.labels, 10);
    j.lr = 0.003f;
    j.clip = 0.07f;
    j.server_momentum = 0.9f;
    j.seed = 123456789012ull;
    CHECK_EQ_INT(cnd_job_check(&j), 0);
    char *json = NULL;
    CHECK_EQ_INT(cnd_job_to_json(&json, &j), 0);
    CHECK(json && strstr(json, "\"lr\":0.003") != NULL); /* floats written as their decimals */
    CHECK_EQ_INT(cnd_job_from_json(&k, json), 0);
    CHECK(memcmp(&j, &k, sizeof j) == 0);
    /* every field is required */
    char *cut = json ? strdup(json) : NULL;
    char *p = cut ? strstr(cut, "\"quorum\"") : NULL;
    if (p) memcpy(p, "\"quorux\"", 8);
    CHECK_EQ_INT(cnd_job_from_json(&k, cut), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "quorum") != NULL);
    free(cut);
    free(json);
    /* the protobuf form the sites get round-trips the fields they use */
    cnd_job_proto_t pb;
    cnd_job_to_proto(&pb, &j, 5, NULL);
    pb.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    pb.spec.teacher_local = cnd_proto_str("t");
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    CHECK_EQ_INT(pb.secagg.ring_bits, 10); /* 3 sites of 8-bit values: 10-bit ring */
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK_EQ_INT(k.rounds, j.rounds);
    CHECK_NEAR(k.clip, j.clip, 0);
    CHECK_EQ_INT(k.value_bits, 8);
    /* checks that name the field */
    k = j;
    k.threshold = 1;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "threshold") != NULL);
    k = j;
    k.quorum = 1;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    k = j;
    k.sites_per_round = 300;
    k.value_bits = 24; /* 300 sites x 24-bit values need more than 32 bits */
    k.threshold = 200;
    k.quorum = 200;
    CHECK(cnd_job_check(&k) != 0);
    k = j;
    k.deadline_ms[2] = 10;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "masked_ms") != NULL);
}

/* The class map: names round-trip through JSON and the JobSpec; a recipe from before class maps
 * reads as "0".."K-1"; wrong counts, duplicates and commas are refused naming the names. */
static void test_class_map(void)
{
    cnd_job_spec_t j, k;
    cnd_job_defaults(&j);
    snprintf(j.arch, sizeof j.arch, "flatten dense(3)");
    j.in_c = 1, j.in_h = 2, j.in_w = 2, j.classes = 3;
    CHECK_EQ_INT(cnd_job_check(&j), CND_EINVAL); /* no map yet */
    CHECK(strstr(cnd_err_detail(), "labels") != NULL);
    snprintf(j.labels, sizeof j.labels, "cat,dog,bird \"blue\"");
    CHECK_EQ_INT(cnd_job_check(&j), 0);
    char *json = NULL;
    CHECK_EQ_INT(cnd_job_to_json(&json, &j), 0);
    CHECK(json && strstr(json, "\"labels\":[\"cat\",\"dog\",\"bird \\\"blue\\\"\"]") != NULL);
    CHECK_EQ_INT(cnd_job_from_json(&k, json), 0);
    CHECK(!strcmp(k.labels, "cat,dog,bird \"blue\""));
    /* an older recipe without "labels" */
    char *old = json ? strdup(json) : NULL;
    char *p = old ? strstr(old, ",\"labels\":[") : NULL;
    char *e = p ? strchr(p, ']') : NULL;
    if (p && e) memmove(p, e + 1, strlen(e + 1) + 1);
    CHECK_EQ_INT(cnd_job_from_json(&k, old), 0);
    CHECK(!strcmp(k.labels, "0,1,2"));
    free(old);
    /* two names for three classes; a name twice */
    old = json ? strdup(json) : NULL;
    p = old ? strstr(old, "\"dog\",") : NULL;
    if (p) memmove(p, p + 6, strlen(p + 6) + 1);
    CHECK_EQ_INT(cnd_job_from_json(&k, old), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "2 names for 3 classes") != NULL);
    free(old);
    free(json);
    snprintf(j.labels, sizeof j.labels, "cat,dog,cat");
    CHECK_EQ_INT(cnd_job_check(&j), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "'cat' twice") != NULL);
    /* the JobSpec carries the names; the receive gate refuses bad ones */
    snprintf(j.labels, sizeof j.labels, "cat,dog,bird");
    cnd_job_proto_t pb;
    cnd_job_to_proto(&pb, &j, 5, NULL);
    pb.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    pb.spec.teacher_local = cnd_proto_str("t");
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(pb.student.n_class_names, 3);
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK(!strcmp(k.labels, "cat,dog,bird"));
    pb.student.n_class_names = 0; /* an older coordinator */
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK(!strcmp(k.labels, "0,1,2"));
    pb.student.n_class_names = 2;
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "2 names for 3 classes") != NULL);
    pb.student.n_class_names = 3;
    pb.class_names[2] = pb.class_names[0];
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "same name") != NULL);
    pb.class_names[2] = cnd_proto_str("a,b");
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "comma") != NULL);
}

/* A shipped ONNX teacher: format and preprocessing round-trip through JSON and the JobSpec; a
 * recipe from before ONNX teachers reads as a .cnd one; the checks refuse an ONNX teacher
 * without a spec or a site-local one, and a spec without an ONNX teacher. */
static void test_onnx_teacher(void)
{
    cnd_job_spec_t j, k;
    cnd_job_defaults(&j);
    snprintf(j.arch, sizeof j.arch, "flatten dense(4)");
    j.in_c = 1, j.in_h = 8, j.in_w = 8, j.classes = 4;
    cnd_classmap_default(j.labels, sizeof j.labels, 4);
    j.teacher_onnx = 1;
    snprintf(j.teacher_prep, sizeof j.teacher_prep, "scale=1/255 mean=0.5 std=0.25");
    CHECK_EQ_INT(cnd_job_check(&j), 0);
    char *json = NULL;
    CHECK_EQ_INT(cnd_job_to_json(&json, &j), 0);
    CHECK(json &&
          strstr(json, "\"format\":\"onnx\",\"preprocess\":\"scale=1/255 mean=0.5 std=0.25\""));
    CHECK_EQ_INT(cnd_job_from_json(&k, json), 0);
    CHECK(memcmp(&j, &k, sizeof j) == 0);
    char *old = json ? strdup(json) : NULL; /* an older recipe: no format, a .cnd teacher */
    char *f = old ? strstr(old, ",\"format\"") : NULL;
    char *e = f ? strchr(f + 1, '}') : NULL;
    if (e) memmove(f, e, strlen(e) + 1);
    CHECK_EQ_INT(cnd_job_from_json(&k, old), 0);
    CHECK(k.teacher_onnx == 0 && k.teacher_prep[0] == 0 && k.teacher_shipped == 1);
    free(old);
    char *bad = json ? strdup(json) : NULL;
    char *v = bad ? strstr(bad, "\"onnx\"") : NULL;
    if (v) memcpy(v, "\"tflt\"", 6);
    CHECK_EQ_INT(cnd_job_from_json(&k, bad), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "tflt") != NULL);
    free(bad);
    free(json);
    Condenser__ObjectInfo oi = CONDENSER__OBJECT_INFO__INIT;
    uint8_t dig[32] = {1};
    oi.digest = (ProtobufCBinaryData){32, dig};
    oi.total_size = 1000;
    oi.chunk_count = 1;
    oi.chunk_size = CND_PROTO_CHUNK_MAX;
    cnd_job_proto_t pb;
    cnd_job_to_proto(&pb, &j, 5, &oi);
    CHECK_EQ_INT(pb.spec.teacher_format, CONDENSER__TEACHER_FORMAT__TEACHER_ONNX);
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK(k.teacher_onnx == 1 && strcmp(k.teacher_prep, j.teacher_prep) == 0);
    k = j;
    k.teacher_prep[0] = 0;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "preprocessing spec is missing") != NULL);
    k = j;
    k.teacher_shipped = 0;
    snprintf(k.teacher_local, sizeof k.teacher_local, "vendor");
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    k = j;
    k.teacher_onnx = 0;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    k = j;
    k.teacher_prep[3] = '\n';
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
}

/* The DP recipe: solved from the options for the assumed site size, round-tripped through
 * JSON and the JobSpec, validated on the wire, and recomputed per site from its own count. */
static void test_dp(void)
{
    cnd_job_spec_t j, k;
    cnd_job_defaults(&j);
    snprintf(j.arch, sizeof j.arch, "flatten dense(16) relu dense(10)");
    j.in_c = 1, j.in_h = 28, j.in_w = 28, j.classes = 10;
    cnd_classmap_default(j.labels, sizeof j.labels, 10);
    j.batch = 500, j.rounds = 20, j.local_epochs = 2;
    cnd_job_dp_opts_t o = {.epsilon = 3, .delta = 1e-5, .clip = 0.5};
    CHECK_EQ_INT(cnd_job_dp_options(&j, &o), CND_EINVAL); /* --dp-site-samples needed */
    CHECK(strstr(cnd_err_detail(), "--dp-site-samples") != NULL);
    o.site_samples = 20000;
    CHECK_EQ_INT(cnd_job_dp_options(&j, &o), 0);
    CHECK(j.dp_noise > 0.3 && j.dp_noise < 10);
    CHECK_NEAR(j.dp_clip, 0.5, 0);
    /* the site of the assumed size reaches the target; the accountant agrees directly */
    double e = 0, e2 = 0;
    CHECK_EQ_INT(cnd_job_dp_epsilon(&j, 20000, 0, 20, &e), 0);
    CHECK(e <= 3.0 && e > 2.999);
    cnd_dp_params_t p = {
        .q = 500.0 / 20000, .sigma = j.dp_noise, .steps = 20 * 2 * 40, .delta = 1e-5};
    CHECK_EQ_INT(cnd_dp_epsilon(&p, &e2, NULL), 0);
    CHECK_NEAR(e, e2, 0);
    /* a smaller site samples at a higher rate and spends more; fewer rounds spend less */
    CHECK_EQ_INT(cnd_job_dp_epsilon(&j, 5000, 0, 20, &e2), 0);
    CHECK(e2 > e);
    CHECK_EQ_INT(cnd_job_dp_epsilon(&j, 20000, 0, 10, &e2), 0);
    CHECK(e2 < e);
    double q;
    long per;
    cnd_job_dp_site(&j, 300, &q, &per); /* batch above n: every record, one step per epoch */
    CHECK_NEAR(q, 1.0, 0);
    CHECK_EQ_INT(per, 2);
    /* JSON round trip; a recipe without "dp" has none */
    char *json = NULL;
    CHECK_EQ_INT(cnd_job_to_json(&json, &j), 0);
    CHECK(json && strstr(json, "\"dp\":{\"noise\":") != NULL);
    CHECK_EQ_INT(cnd_job_from_json(&k, json), 0);
    CHECK(memcmp(&j, &k, sizeof j) == 0);
    free(json);
    /* wire: round trip and validation */
    cnd_job_proto_t pb;
    cnd_job_to_proto(&pb, &j, 5, NULL);
    pb.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    pb.spec.teacher_local = cnd_proto_str("t");
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK_NEAR(k.dp_noise, j.dp_noise, 0);
    CHECK_NEAR(k.dp_delta, 1e-5, 0);
    CHECK_EQ_INT(k.dp_assumed_n, 20000);
    pb.dp.noise_multiplier = 0;
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "job_spec.recipe.dp.noise_multiplier") != NULL);
    pb.dp.noise_multiplier = j.dp_noise;
    pb.dp.delta = 0.5;
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "delta") != NULL);
    pb.dp.delta = 1e-5;
    /* QAT rounds train under DP-SGD like the others (compress/dpsgd.h) */
    pb.recipe.qat_rounds = 1;
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    pb.recipe.qat_rounds = 0;
    /* checks and options */
    k = j;
    k.qat_rounds = 1;
    CHECK_EQ_INT(cnd_job_check(&k), 0);
    cnd_job_dp_opts_t both = {.epsilon = 3, .noise = 1};
    CHECK_EQ_INT(cnd_job_dp_options(&k, &both), CND_EINVAL);
    cnd_job_dp_opts_t lone = {.clip = 1};
    CHECK_EQ_INT(cnd_job_dp_options(&k, &lone), CND_EINVAL);
    cnd_job_dp_opts_t given = {.noise = 1.5};
    k = j;
    CHECK_EQ_INT(cnd_job_dp_options(&k, &given), 0);
    CHECK_NEAR(k.dp_noise, 1.5, 0);
    CHECK_NEAR(k.dp_delta, 1e-5, 0);
    CHECK_NEAR(k.dp_clip, 1.0, 0);
    CHECK_EQ_INT(k.dp_assumed_n, 0);
}

/* Distributed DP (job_dp.h): the options solve the Gaussian mechanism over the rounds at q = 1;
 * the variance per site is ceil((noise l2)^2 / min_survivors), so min_survivors sites carry
 * noise (noise l2)^2; JSON and wire round trips; the wire and the checks refuse a
 * min_survivors out of range or given in DP-SGD mode. */
static void test_dp_distributed(void)
{
    cnd_job_spec_t j, k;
    cnd_job_defaults(&j);
    snprintf(j.arch, sizeof j.arch, "flatten dense(16) relu dense(10)");
    j.in_c = 1, j.in_h = 28, j.in_w = 28, j.classes = 10;
    cnd_classmap_default(j.labels, sizeof j.labels, 10);
    j.rounds = 20, j.sites_per_round = 4, j.quorum = 3, j.threshold = 3, j.value_bits = 12;
    cnd_job_dp_opts_t o = {.epsilon = 3, .distributed = 1, .min_survivors = 5};
    CHECK_EQ_INT(cnd_job_dp_options(&j, &o), CND_EINVAL); /* above the sites per round */
    o.min_survivors = 3;
    o.site_samples = 100;
    CHECK_EQ_INT(cnd_job_dp_options(&j, &o), CND_EINVAL); /* no record count in this mode */
    o.site_samples = 0;
    CHECK_EQ_INT(cnd_job_dp_options(&j, &o), 0);
    CHECK_EQ_INT(j.dp_mode, CND_JOB_DP_DISTRIBUTED);
    CHECK_EQ_INT(j.dp_min_survivors, 3);
    uint64_t s2 = 0;
    cnd_dp_ddg_t m;
    const uint64_t dim = 12730;
    CHECK_EQ_INT(cnd_job_ddp_mech(&j, dim, &s2, &m), 0);
    CHECK(m.l2 > 2047 && m.l2 < 2047 + sqrt((double)dim));
    CHECK(s2 >= (j.dp_noise * m.l2) * (j.dp_noise * m.l2) / 3);
    CHECK(3.0 * (double)s2 < (j.dp_noise * m.l2) * (j.dp_noise * m.l2) + 3.0 + 1e-6 * s2);
    double e = 0;
    CHECK_EQ_INT(cnd_job_dp_epsilon(&j, 0, dim, 20, &e), 0);
    CHECK(e <= 3.0 + 1e-9 && e > 2.99); /* tau is negligible at this variance */
    char *json = NULL;
    CHECK_EQ_INT(cnd_job_to_json(&json, &j), 0);
    CHECK(json && strstr(json, "\"mode\":\"distributed\",\"min_survivors\":3") != NULL);
    CHECK_EQ_INT(cnd_job_from_json(&k, json), 0);
    CHECK(memcmp(&j, &k, sizeof j) == 0);
    free(json);
    cnd_job_proto_t pb;
    cnd_job_to_proto(&pb, &j, 5, NULL);
    pb.spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
    pb.spec.teacher_local = cnd_proto_str("t");
    cnd_proto_reject_t rej;
    CHECK_EQ_INT(cnd_proto_validate_job_spec(&rej, &pb.spec), 0);
    CHECK_EQ_INT(cnd_job_from_proto(&k, &pb.spec), 0);
    CHECK_EQ_INT(k.dp_mode, 1);
    CHECK_EQ_INT(k.dp_min_survivors, 3);
    pb.dp.min_survivors = 0;
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "min_survivors") != NULL);
    pb.dp.mode = 2;
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    CHECK(strstr(cnd_err_detail(), "mode") != NULL);
    pb.dp.mode = 0, pb.dp.min_survivors = 3; /* DP-SGD with a survivor count: refused */
    CHECK(cnd_proto_validate_job_spec(&rej, &pb.spec) != 0);
    k = j;
    k.dp_min_survivors = 9;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    k.dp_mode = 0, k.dp_min_survivors = 3;
    CHECK_EQ_INT(cnd_job_check(&k), CND_EINVAL);
    /* a noise whose variance the sampler cannot draw is refused, not truncated */
    k = j;
    k.dp_noise = 1e4, k.value_bits = 24;
    CHECK_EQ_INT(cnd_job_ddp_mech(&k, dim, &s2, &m), CND_ERANGE);
    /* the exact solve (job create, with the student's size): at most the target with the noise
     * found, above it with 1e-5 less; the default min_survivors is the quorum */
    k = j;
    CHECK_EQ_INT(cnd_job_ddp_solve(&k, dim), 0);
    CHECK_EQ_INT(cnd_job_dp_epsilon(&k, 0, dim, 20, &e), 0);
    CHECK(e <= 3.0);
    double found = k.dp_noise;
    k.dp_noise = found * (1 - 1e-5);
    CHECK_EQ_INT(cnd_job_dp_epsilon(&k, 0, dim, 20, &e), 0);
    CHECK(e > 3.0);
    k = j;
    k.dp_target_eps = 0;
    CHECK_EQ_INT(cnd_job_ddp_solve(&k, dim), CND_EINVAL); /* --dp-noise: nothing to solve */
    o.min_survivors = 0;
    CHECK_EQ_INT(cnd_job_dp_options(&k, &o), 0);
    CHECK_EQ_INT(k.dp_min_survivors, 3);
}

int main(void)
{
    test_recipe();
    test_dp();
    test_dp_distributed();
    test_class_map();
    test_onnx_teacher();
    return check_result("test_job");
}
