/*
 * job.c: the job recipe in its JSON, protobuf and checked forms (see job.h).
 * The JSON keys are the field names; every one is required when parsing, so a recipe read back
 * from the database or an audit entry is exactly the one that was written.
 */
#include "job.h"
#include "job_dp.h"
#include "json.h"
#include "fixedpoint.h"
#include "secagg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cnd_job_defaults(cnd_job_spec_t *j)
{
    memset(j, 0, sizeof *j);
    j->teacher_shipped = 1;
    j->temperature = 4.0f;
    j->alpha = 0.5f;
    j->weight_bits = 8;
    j->act_bits = 8;
    j->local_epochs = 1;
    j->batch = 64;
    j->lr = 1e-3f;
    j->rounds = 10;
    j->sites_per_round = 3;
    j->quorum = 2;
    j->threshold = 2;
    j->clip = 0.05f;
    j->value_bits = 8;
    j->sample_cap = 20000;
    j->deadline_ms[0] = 10000;
    j->deadline_ms[1] = 10000;
    j->deadline_ms[2] = 600000;
    j->deadline_ms[3] = 10000;
    j->server_lr = 1.0f;
    j->join_wait_ms = 30000;
    j->seed = 1;
}

static int s_range(const char *f, double v, double lo, double hi)
{
    if (!(v >= lo && v <= hi) || !isfinite(v))
        return cnd_errf(CND_EINVAL, "job: %s = %g is outside [%g, %g]", f, v, lo, hi);
    return 0;
}

#define S_TRY(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_) return rc_;                                                                       \
    } while (0)

int cnd_job_check(const cnd_job_spec_t *j)
{
    for (const char *p = j->name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cnd_errf(CND_EINVAL, "job: name holds a control character");
    if (!j->arch[0]) return cnd_errf(CND_EINVAL, "job: the student architecture is missing");
    for (const char *p = j->arch; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cnd_errf(CND_EINVAL, "job: the student architecture holds a control character");
    S_TRY(s_range("input channels", j->in_c, 1, 65535));
    S_TRY(s_range("input height", j->in_h, 1, 65535));
    S_TRY(s_range("input width", j->in_w, 1, 65535));
    S_TRY(s_range("classes", j->classes, 2, 256));
    if (cnd_classmap_check(j->labels, (int)j->classes, NULL))
        return cnd_err_wrap(CND_EINVAL, "job: labels");
    if (!j->teacher_shipped && !cnd_proto_name_ok(j->teacher_local))
        return cnd_errf(CND_EINVAL, "job: the site-local teacher name '%s' is not a valid name",
                        j->teacher_local);
    if (j->teacher_onnx && !j->teacher_shipped)
        return cnd_errf(CND_EINVAL, "job: an ONNX teacher must be a shipped one");
    if (j->teacher_onnx && !j->teacher_prep[0])
        return cnd_errf(CND_EINVAL, "job: the ONNX teacher's preprocessing spec is missing");
    if (!j->teacher_onnx && j->teacher_prep[0])
        return cnd_errf(CND_EINVAL, "job: a teacher preprocessing spec without an ONNX teacher");
    for (const char *p = j->teacher_prep; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cnd_errf(CND_EINVAL,
                            "job: the teacher's preprocessing holds a control character");
    if (!(j->temperature > 0)) return cnd_errf(CND_EINVAL, "job: temperature must be > 0");
    S_TRY(s_range("temperature", j->temperature, 0, 100));
    S_TRY(s_range("alpha", j->alpha, 0, 1));
    S_TRY(s_range("rounds", j->rounds, 1, 100000));
    S_TRY(s_range("qat_rounds", j->qat_rounds, 0, j->rounds));
    S_TRY(s_range("weight_bits", j->weight_bits, 2, 8));
    S_TRY(s_range("act_bits", j->act_bits, 2, 8));
    S_TRY(s_range("local_epochs", j->local_epochs, 1, 1000));
    S_TRY(s_range("batch", j->batch, 1, 65536));
    if (!(j->lr > 0)) return cnd_errf(CND_EINVAL, "job: lr must be > 0");
    S_TRY(s_range("lr", j->lr, 0, 10));
    S_TRY(s_range("sites_per_round", j->sites_per_round, 2, 512));
    S_TRY(s_range("threshold", j->threshold, 2, j->sites_per_round));
    /* SecAgg+ reveals a sum only with a strict majority of the round's sites (crypto/secagg.h) */
    S_TRY(s_range("quorum", j->quorum,
                  j->threshold > j->sites_per_round / 2 + 1 ? j->threshold
                                                            : j->sites_per_round / 2 + 1,
                  j->sites_per_round));
    if (j->neighbours) {
        S_TRY(s_range("neighbours", j->neighbours, j->threshold, j->sites_per_round - 1));
        if (j->neighbours != j->sites_per_round - 1 && j->neighbours % 2)
            return cnd_errf(CND_EINVAL, "job: neighbours must be even (or sites_per_round - 1)");
    }
    /* SecAgg+ needs a strict majority of each neighbourhood (crypto/secagg.h). */
    uint32_t k = (j->neighbours ? j->neighbours : cnd_secagg_default_degree(j->sites_per_round));
    if (k > j->sites_per_round - 1) k = j->sites_per_round - 1;
    k += 1;
    if (j->threshold < k / 2 + 1 || j->threshold > k)
        return cnd_errf(CND_EINVAL,
                        "job: threshold %u must be a strict majority of each SecAgg+ neighbourhood "
                        "of %u sites, in [%u, %u]",
                        j->threshold, k, k / 2 + 1, k);
    if (!(j->clip > 0)) return cnd_errf(CND_EINVAL, "job: clip must be > 0");
    S_TRY(s_range("clip", j->clip, 0, 1e6));
    S_TRY(s_range("l2_clip", j->l2_clip, 0, 1e9));
    S_TRY(s_range("sample_cap", j->sample_cap, 1, 4294967295.0));
    S_TRY(s_range("value_bits", j->value_bits, 2, 24));
    static const char *const dl[] = {"advertise_ms", "share_ms", "masked_ms", "unmask_ms"};
    for (int i = 0; i < 4; i++) S_TRY(s_range(dl[i], j->deadline_ms[i], 100, 86400000));
    if (!(j->server_lr > 0)) return cnd_errf(CND_EINVAL, "job: server_lr must be > 0");
    S_TRY(s_range("server_lr", j->server_lr, 0, 100));
    S_TRY(s_range("server_momentum", j->server_momentum, 0, 0.999));
    S_TRY(s_range("join_wait_ms", j->join_wait_ms, 0, 86400000));
    S_TRY(cnd_job_dp_check(j));
    /* The sum of sites_per_round updates must fit the ring (<= 32 bits). */
    cnd_fxp_params_t fp = {1,       j->sites_per_round, j->value_bits,
                           j->clip, j->l2_clip,         j->sample_cap};
    cnd_fxp_layout_t l;
    int rc = cnd_fxp_layout(&l, &fp);
    if (rc) return cnd_err_wrap(rc, "job");
    return 0;
}

/* The shortest decimal that reads back as the same float, as a double: the recipe shows "0.001",
 * not the float's exact binary value 0.0010000000474974513, and parses back to the same float. */
static double s_nice(float f)
{
    char b[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        double d = strtod(b, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

int cnd_job_to_json(char **out, const cnd_job_spec_t *j)
{
    *out = NULL;
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "name");
    cnd_jw_str(&w, j->name);
    cnd_jw_key(&w, "student");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "arch");
    cnd_jw_str(&w, j->arch);
    cnd_jw_key(&w, "input");
    cnd_jw_arr(&w);
    cnd_jw_int(&w, j->in_c);
    cnd_jw_int(&w, j->in_h);
    cnd_jw_int(&w, j->in_w);
    cnd_jw_arr_end(&w);
    cnd_jw_key(&w, "classes");
    cnd_jw_int(&w, j->classes);
    cnd_jw_key(&w, "labels");
    cnd_jw_arr(&w);
    for (int k = 0; k < (int)j->classes; k++) {
        char nm[CND_CLASS_NAME_MAX + 1];
        if (!cnd_classmap_name(j->labels, k, nm, sizeof nm)) cnd_jw_str(&w, nm);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "teacher");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "shipped");
    cnd_jw_bool(&w, j->teacher_shipped);
    cnd_jw_key(&w, "local");
    cnd_jw_str(&w, j->teacher_local);
    if (j->teacher_onnx) { /* absent: a .cnd teacher (recipes written before ONNX teachers) */
        cnd_jw_key(&w, "format");
        cnd_jw_str(&w, "onnx");
        cnd_jw_key(&w, "preprocess");
        cnd_jw_str(&w, j->teacher_prep);
    }
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "distillation");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "temperature");
    cnd_jw_double(&w, s_nice(j->temperature));
    cnd_jw_key(&w, "alpha");
    cnd_jw_double(&w, s_nice(j->alpha));
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "qat");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "rounds");
    cnd_jw_int(&w, j->qat_rounds);
    cnd_jw_key(&w, "weight_bits");
    cnd_jw_int(&w, j->weight_bits);
    cnd_jw_key(&w, "act_bits");
    cnd_jw_int(&w, j->act_bits);
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "local");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "epochs");
    cnd_jw_int(&w, j->local_epochs);
    cnd_jw_key(&w, "batch");
    cnd_jw_int(&w, j->batch);
    cnd_jw_key(&w, "lr");
    cnd_jw_double(&w, s_nice(j->lr));
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "rounds");
    cnd_jw_int(&w, j->rounds);
    cnd_jw_key(&w, "sites_per_round");
    cnd_jw_int(&w, j->sites_per_round);
    cnd_jw_key(&w, "quorum");
    cnd_jw_int(&w, j->quorum);
    cnd_jw_key(&w, "secagg");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "threshold");
    cnd_jw_int(&w, j->threshold);
    cnd_jw_key(&w, "neighbours");
    cnd_jw_int(&w, j->neighbours);
    cnd_jw_key(&w, "clip");
    cnd_jw_double(&w, s_nice(j->clip));
    cnd_jw_key(&w, "l2_clip");
    cnd_jw_double(&w, s_nice(j->l2_clip));
    cnd_jw_key(&w, "sample_cap");
    cnd_jw_int(&w, j->sample_cap);
    cnd_jw_key(&w, "value_bits");
    cnd_jw_int(&w, j->value_bits);
    cnd_jw_obj_end(&w);
    cnd_jw_key(&w, "deadlines_ms");
    cnd_jw_arr(&w);
    for (int i = 0; i < 4; i++) cnd_jw_int(&w, j->deadline_ms[i]);
    cnd_jw_arr_end(&w);
    if (j->dp_clip > 0) cnd_job_dp_to_json(&w, j); /* "dp" only in DP jobs */
    cnd_jw_key(&w, "server");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "lr");
    cnd_jw_double(&w, s_nice(j->server_lr));
    cnd_jw_key(&w, "momentum");
    cnd_jw_double(&w, s_nice(j->server_momentum));
    cnd_jw_key(&w, "join_wait_ms");
    cnd_jw_int(&w, j->join_wait_ms);
    cnd_jw_key(&w, "seed");
    cnd_jw_int(&w, (int64_t)j->seed);
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    int rc = 0;
    if (!t || !(*out = strdup(t))) rc = cnd_errf(CND_ENOMEM, "job recipe: out of memory");
    cnd_jw_free(&w);
    return rc;
}

/* Readers for cnd_job_from_json: each fails naming the key. */
static const cnd_json_t *s_get(const cnd_json_t *o, const char *k, cnd_json_type_t t, int *rc)
{
    if (*rc) return NULL;
    const cnd_json_t *v = cnd_json_get(o, k);
    int ok = v && (v->type == t || (t == CND_JSON_NUM && v->type == CND_JSON_INT));
    if (!ok) {
        *rc = cnd_errf(CND_EINVAL, "job recipe: '%s' is missing or has the wrong type", k);
        return NULL;
    }
    return v;
}

static uint32_t s_u32(const cnd_json_t *o, const char *k, int *rc)
{
    const cnd_json_t *v = s_get(o, k, CND_JSON_INT, rc);
    if (!v) return 0;
    if (v->i < 0 || v->i > UINT32_MAX) {
        *rc = cnd_errf(CND_EINVAL, "job recipe: '%s' out of range", k);
        return 0;
    }
    return (uint32_t)v->i;
}

static float s_f32(const cnd_json_t *o, const char *k, int *rc)
{
    const cnd_json_t *v = s_get(o, k, CND_JSON_NUM, rc);
    double d = 0;
    if (v) cnd_json_number(v, &d);
    return (float)d;
}

static void s_str(char *dst, size_t cap, const cnd_json_t *o, const char *k, int *rc)
{
    const cnd_json_t *v = s_get(o, k, CND_JSON_STR, rc);
    if (!v) return;
    if (strlen(v->s) >= cap) {
        *rc = cnd_errf(CND_EINVAL, "job recipe: '%s' is too long", k);
        return;
    }
    snprintf(dst, cap, "%s", v->s);
}

/* The class map from "labels" (an array of names); recipes written before class maps had none
 * and mean "0,1,...,K-1". */
static void s_labels(cnd_job_spec_t *j, const cnd_json_t *st, int *rc)
{
    if (*rc) return;
    const cnd_json_t *l = cnd_json_get(st, "labels");
    if (!l) {
        cnd_classmap_default(j->labels, sizeof j->labels, (int)j->classes);
        return;
    }
    if (l->type != CND_JSON_ARR || l->n > CND_CLASSES_MAX) {
        *rc = cnd_errf(CND_EINVAL, "job recipe: 'labels' must be an array of at most %d names",
                       CND_CLASSES_MAX);
        return;
    }
    for (size_t i = 0; i < l->n && !*rc; i++) {
        if (l->items[i]->type != CND_JSON_STR)
            *rc = cnd_errf(CND_EINVAL, "job recipe: 'labels' entry %zu is not a string", i);
        else if (cnd_classmap_append(j->labels, sizeof j->labels, l->items[i]->s))
            *rc = cnd_err_wrap(CND_EINVAL, "job recipe: 'labels' entry %zu", i);
    }
}

int cnd_job_from_json(cnd_job_spec_t *j, const char *json)
{
    memset(j, 0, sizeof *j);
    cnd_json_t *root = NULL;
    int rc = cnd_json_parse(&root, json, strlen(json));
    if (rc) return cnd_err_wrap(rc, "job recipe");
    if (root->type != CND_JSON_OBJ) rc = cnd_errf(CND_EINVAL, "job recipe: not an object");
    s_str(j->name, sizeof j->name, root, "name", &rc);
    const cnd_json_t *st = s_get(root, "student", CND_JSON_OBJ, &rc);
    s_str(j->arch, sizeof j->arch, st, "arch", &rc);
    const cnd_json_t *in = s_get(st, "input", CND_JSON_ARR, &rc);
    if (!rc && (in->n != 3 || in->items[0]->type != CND_JSON_INT ||
                in->items[1]->type != CND_JSON_INT || in->items[2]->type != CND_JSON_INT))
        rc = cnd_errf(CND_EINVAL, "job recipe: 'input' must be three integers");
    if (!rc) {
        j->in_c = (uint32_t)in->items[0]->i;
        j->in_h = (uint32_t)in->items[1]->i;
        j->in_w = (uint32_t)in->items[2]->i;
    }
    j->classes = s_u32(st, "classes", &rc);
    s_labels(j, st, &rc);
    const cnd_json_t *te = s_get(root, "teacher", CND_JSON_OBJ, &rc);
    const cnd_json_t *sh = s_get(te, "shipped", CND_JSON_BOOL, &rc);
    if (sh) j->teacher_shipped = sh->b;
    s_str(j->teacher_local, sizeof j->teacher_local, te, "local", &rc);
    if (!rc && cnd_json_get(te, "format")) { /* only an ONNX teacher has one */
        char fmt[8] = "";
        s_str(fmt, sizeof fmt, te, "format", &rc);
        s_str(j->teacher_prep, sizeof j->teacher_prep, te, "preprocess", &rc);
        if (!rc && strcmp(fmt, "onnx") != 0)
            rc = cnd_errf(CND_EINVAL, "job recipe: teacher format '%s' is not \"onnx\"", fmt);
        j->teacher_onnx = 1;
    }
    const cnd_json_t *d = s_get(root, "distillation", CND_JSON_OBJ, &rc);
    j->temperature = s_f32(d, "temperature", &rc);
    j->alpha = s_f32(d, "alpha", &rc);
    const cnd_json_t *q = s_get(root, "qat", CND_JSON_OBJ, &rc);
    j->qat_rounds = s_u32(q, "rounds", &rc);
    j->weight_bits = s_u32(q, "weight_bits", &rc);
    j->act_bits = s_u32(q, "act_bits", &rc);
    const cnd_json_t *lo = s_get(root, "local", CND_JSON_OBJ, &rc);
    j->local_epochs = s_u32(lo, "epochs", &rc);
    j->batch = s_u32(lo, "batch", &rc);
    j->lr = s_f32(lo, "lr", &rc);
    j->rounds = s_u32(root, "rounds", &rc);
    j->sites_per_round = s_u32(root, "sites_per_round", &rc);
    j->quorum = s_u32(root, "quorum", &rc);
    const cnd_json_t *sa = s_get(root, "secagg", CND_JSON_OBJ, &rc);
    j->threshold = s_u32(sa, "threshold", &rc);
    j->neighbours = s_u32(sa, "neighbours", &rc);
    j->clip = s_f32(sa, "clip", &rc);
    j->l2_clip = s_f32(sa, "l2_clip", &rc);
    j->sample_cap = s_u32(sa, "sample_cap", &rc);
    j->value_bits = s_u32(sa, "value_bits", &rc);
    const cnd_json_t *dl = s_get(root, "deadlines_ms", CND_JSON_ARR, &rc);
    if (!rc && dl->n != 4) rc = cnd_errf(CND_EINVAL, "job recipe: 'deadlines_ms' needs 4 values");
    for (int i = 0; i < 4 && !rc; i++) {
        if (dl->items[i]->type != CND_JSON_INT || dl->items[i]->i < 0 ||
            dl->items[i]->i > UINT32_MAX)
            rc = cnd_errf(CND_EINVAL, "job recipe: 'deadlines_ms' must hold integers");
        else
            j->deadline_ms[i] = (uint32_t)dl->items[i]->i;
    }
    if (!rc) rc = cnd_job_dp_from_json(j, cnd_json_get(root, "dp"));
    const cnd_json_t *sv = s_get(root, "server", CND_JSON_OBJ, &rc);
    j->server_lr = s_f32(sv, "lr", &rc);
    j->server_momentum = s_f32(sv, "momentum", &rc);
    j->join_wait_ms = s_u32(sv, "join_wait_ms", &rc);
    const cnd_json_t *seed = s_get(sv, "seed", CND_JSON_INT, &rc);
    if (seed) j->seed = (uint64_t)seed->i;
    cnd_json_free(&root);
    if (!rc) rc = cnd_job_check(j);
    return rc;
}

void cnd_job_to_proto(cnd_job_proto_t *b, const cnd_job_spec_t *j, uint64_t job_id,
                      Condenser__ObjectInfo *teacher_info)
{
    condenser__job_spec__init(&b->spec);
    condenser__student_spec__init(&b->student);
    condenser__recipe__init(&b->recipe);
    condenser__sec_agg_params__init(&b->secagg);
    condenser__deadlines__init(&b->deadlines);
    b->spec.job_id = job_id;
    b->spec.name = cnd_proto_str(j->name);
    b->student.arch = cnd_proto_str(j->arch);
    b->shape[0] = j->in_c;
    b->shape[1] = j->in_h;
    b->shape[2] = j->in_w;
    b->student.n_input_shape = 3;
    b->student.input_shape = b->shape;
    b->student.num_classes = j->classes;
    b->student.n_class_names = 0;
    b->student.class_names = b->class_names;
    for (int k = 0; k < (int)j->classes && k < CND_CLASSES_MAX; k++) {
        const char *p = j->labels;
        for (int i = 0; i < k && p; i++)
            if ((p = strchr(p, ','))) p++;
        if (!p) break;
        const char *e = strchr(p, ',');
        b->class_names[k].data = (uint8_t *)(uintptr_t)p;
        b->class_names[k].len = e ? (size_t)(e - p) : strlen(p);
        b->student.n_class_names++;
    }
    b->spec.student = &b->student;
    b->recipe.temperature = j->temperature;
    b->recipe.alpha = j->alpha;
    b->recipe.qat_rounds = j->qat_rounds;
    b->recipe.weight_bits = j->weight_bits;
    b->recipe.activation_bits = j->act_bits;
    b->recipe.local_epochs = j->local_epochs;
    b->recipe.batch_size = j->batch;
    b->recipe.learning_rate = j->lr;
    if (j->dp_clip > 0) {
        condenser__dp_sgd__init(&b->dp);
        b->dp.noise_multiplier = j->dp_noise;
        b->dp.clip = j->dp_clip;
        b->dp.delta = j->dp_delta;
        b->dp.target_epsilon = j->dp_target_eps;
        b->dp.assumed_samples = j->dp_assumed_n;
        b->dp.mode = j->dp_mode;
        b->dp.min_survivors = j->dp_min_survivors;
        b->recipe.dp = &b->dp;
    }
    b->spec.recipe = &b->recipe;
    b->spec.rounds = j->rounds;
    b->spec.sites_per_round = j->sites_per_round;
    b->spec.quorum = j->quorum;
    b->secagg.threshold = j->threshold;
    cnd_fxp_params_t fp = {1,       j->sites_per_round, j->value_bits,
                           j->clip, j->l2_clip,         j->sample_cap};
    cnd_fxp_layout_t l;
    b->secagg.ring_bits = cnd_fxp_layout(&l, &fp) == 0 ? l.bits : 32;
    b->secagg.neighbours = j->neighbours;
    b->secagg.clip = j->clip;
    b->secagg.l2_clip = j->l2_clip;
    b->secagg.sample_cap = j->sample_cap;
    b->secagg.value_bits = j->value_bits;
    b->spec.secagg = &b->secagg;
    b->deadlines.advertise_ms = j->deadline_ms[0];
    b->deadlines.share_ms = j->deadline_ms[1];
    b->deadlines.masked_input_ms = j->deadline_ms[2];
    b->deadlines.unmask_ms = j->deadline_ms[3];
    b->spec.deadlines = &b->deadlines;
    if (j->teacher_shipped && teacher_info) {
        b->spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED;
        b->spec.teacher_shipped = teacher_info;
        if (j->teacher_onnx) {
            b->spec.teacher_format = CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
            b->spec.teacher_preprocess = cnd_proto_str(j->teacher_prep);
        }
    } else {
        b->spec.teacher_case = CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL;
        b->spec.teacher_local = cnd_proto_str(j->teacher_local);
    }
}

int cnd_job_from_proto(cnd_job_spec_t *j, const Condenser__JobSpec *m)
{
    memset(j, 0, sizeof *j);
    int rc = cnd_proto_text(j->name, sizeof j->name, m->name);
    if (!rc) rc = cnd_proto_text(j->arch, sizeof j->arch, m->student->arch);
    if (rc) return cnd_err_wrap(rc, "job_spec");
    j->in_c = m->student->input_shape[0];
    j->in_h = m->student->input_shape[1];
    j->in_w = m->student->input_shape[2];
    j->classes = m->student->num_classes;
    if (m->student->n_class_names == 0)
        cnd_classmap_default(j->labels, sizeof j->labels, (int)j->classes);
    for (size_t k = 0; k < m->student->n_class_names; k++) {
        char nm[CND_CLASS_NAME_MAX + 1];
        ProtobufCBinaryData b = m->student->class_names[k];
        if (b.len >= sizeof nm) return cnd_errf(CND_EINVAL, "job_spec: class name %zu too long", k);
        memcpy(nm, b.data, b.len);
        nm[b.len] = 0;
        if ((rc = cnd_classmap_append(j->labels, sizeof j->labels, nm)))
            return cnd_err_wrap(rc, "job_spec.student.class_names[%zu]", k);
    }
    j->teacher_shipped = m->teacher_case == CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED;
    if (!j->teacher_shipped &&
        (rc = cnd_proto_text(j->teacher_local, sizeof j->teacher_local, m->teacher_local)))
        return cnd_err_wrap(rc, "job_spec.teacher_local");
    j->teacher_onnx = m->teacher_format == CONDENSER__TEACHER_FORMAT__TEACHER_ONNX;
    if (j->teacher_onnx &&
        (rc = cnd_proto_text(j->teacher_prep, sizeof j->teacher_prep, m->teacher_preprocess)))
        return cnd_err_wrap(rc, "job_spec.teacher_preprocess");
    j->temperature = m->recipe->temperature;
    j->alpha = m->recipe->alpha;
    j->qat_rounds = m->recipe->qat_rounds;
    j->weight_bits = m->recipe->weight_bits;
    j->act_bits = m->recipe->activation_bits;
    j->local_epochs = m->recipe->local_epochs;
    j->batch = m->recipe->batch_size;
    j->lr = m->recipe->learning_rate;
    if (m->recipe->dp) {
        j->dp_noise = m->recipe->dp->noise_multiplier;
        j->dp_clip = m->recipe->dp->clip;
        j->dp_delta = m->recipe->dp->delta;
        j->dp_target_eps = m->recipe->dp->target_epsilon;
        j->dp_assumed_n = m->recipe->dp->assumed_samples;
        j->dp_mode = m->recipe->dp->mode;
        j->dp_min_survivors = m->recipe->dp->min_survivors;
    }
    j->rounds = m->rounds;
    j->sites_per_round = m->sites_per_round;
    j->quorum = m->quorum;
    j->threshold = m->secagg->threshold;
    j->neighbours = m->secagg->neighbours;
    j->clip = m->secagg->clip;
    j->l2_clip = m->secagg->l2_clip;
    j->sample_cap = m->secagg->sample_cap;
    j->value_bits = m->secagg->value_bits;
    j->deadline_ms[0] = m->deadlines->advertise_ms;
    j->deadline_ms[1] = m->deadlines->share_ms;
    j->deadline_ms[2] = m->deadlines->masked_input_ms;
    j->deadline_ms[3] = m->deadlines->unmask_ms;
    j->server_lr = 1.0f; /* coordinator-only fields: neutral values so the spec checks */
    return cnd_job_check(j);
}
