/*
 * cmd_job.c: `condenser job create|list|show|cancel|export`, the federation operator's view of
 * compression jobs. `create` checks the recipe (proto/job.h), builds the initial student from
 * its architecture (input shape, classes and input normalisation from the shipped teacher, or
 * from --input/--classes for a site-local teacher), and stores job, teacher and student version
 * 0 with their job.create audit entry in one transaction. The running coordinator picks the job
 * up by itself.
 */
#include "audit_entries.h"
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "coord_autoc.h"
#include "coord_round.h"
#include "coord_quant.h"
#include "job.h"
#include "job_dp.h"
#include "dpsgd.h"
#include "quant.h"
#include "quant_fed.h"
#include "digest.h"
#include "fileio.h"
#include "fixedpoint.h"
#include "modelfile.h"
#include "onnx_graph.h"
#include "secagg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_dir_help = "coordinator directory (default $CND_COORDINATOR_DIR or .)";

static int s_parse_shape(const char *s, uint32_t *c, uint32_t *h, uint32_t *w)
{
    unsigned a, b, d;
    char extra;
    if (sscanf(s, "%u,%u,%u%c", &a, &b, &d, &extra) != 3 || !a || !b || !d || a > 65535 ||
        b > 65535 || d > 65535)
        return cnd_errf(CND_EINVAL, "--input '%s': expected C,H,W (e.g. 1,28,28)", s);
    *c = a;
    *h = b;
    *w = d;
    return 0;
}

/* The options of `job create` that do not go into the recipe as they are. */
typedef struct {
    const char *dir, *name, *arch, *teacher, *teacher_local, *init, *input, *calib, *labels;
    const char *teacher_prep; /* --teacher-preprocess of an ONNX teacher */
    const char *dp_mode;      /* --dp-mode: "local" (default) or "distributed" */
    long classes, calib_n;
    cnd_job_dp_opts_t dp; /* DP-SGD at the sites (proto/job_dp.h) */
} s_create_opts_t;

/* The recipe's numbers as the option parser reads them (longs and doubles), defaults from
 * cnd_job_defaults; quorum and threshold stay -1 unless given. */
typedef struct {
    long qat, wbits, abits, epochs, batch, rounds, sites, quorum, threshold, neighbours, cap;
    long vbits, dl_adv, dl_share, dl_masked, dl_unmask, join, seed;
    double T, alpha, lr, clip, l2, slr, mom;
} s_recipe_opts_t;

/* The recipe from the options: the SecAgg+ threshold defaults to a strict majority of each
 * neighbourhood (crypto/secagg.h), the quorum to at least the threshold and a strict majority
 * of the round's sites. Student shape and architecture are set later. */
static void s_fill_recipe(cnd_job_spec_t *j, const s_create_opts_t *o, const s_recipe_opts_t *r)
{
    snprintf(j->name, sizeof j->name, "%s", o->name);
    j->teacher_shipped = o->teacher != NULL;
    if (o->teacher_prep) { /* an ONNX teacher (checked by s_create_parse) */
        j->teacher_onnx = 1;
        snprintf(j->teacher_prep, sizeof j->teacher_prep, "%s", o->teacher_prep);
    }
    if (o->teacher_local)
        snprintf(j->teacher_local, sizeof j->teacher_local, "%s", o->teacher_local);
    j->temperature = (float)r->T;
    j->alpha = (float)r->alpha;
    j->qat_rounds = (uint32_t)r->qat;
    j->weight_bits = (uint32_t)r->wbits;
    j->act_bits = (uint32_t)r->abits;
    j->local_epochs = (uint32_t)r->epochs;
    j->batch = (uint32_t)r->batch;
    j->lr = (float)r->lr;
    j->rounds = (uint32_t)r->rounds;
    j->sites_per_round = (uint32_t)r->sites;
    j->neighbours = (uint32_t)r->neighbours;
    long threshold = r->threshold, quorum = r->quorum, sites = r->sites;
    if (threshold < 0) {
        uint32_t d =
            r->neighbours ? (uint32_t)r->neighbours : cnd_secagg_default_degree((uint32_t)sites);
        if (d > (uint32_t)sites - 1) d = (uint32_t)sites - 1;
        threshold = (d + 1) / 2 + 1;
    }
    j->threshold = (uint32_t)threshold;
    if (quorum < 0) quorum = threshold > sites / 2 + 1 ? threshold : sites / 2 + 1;
    j->quorum = (uint32_t)quorum;
    j->clip = (float)r->clip;
    j->l2_clip = (float)r->l2;
    j->sample_cap = (uint32_t)r->cap;
    j->value_bits = (uint32_t)r->vbits;
    j->deadline_ms[0] = (uint32_t)r->dl_adv;
    j->deadline_ms[1] = (uint32_t)r->dl_share;
    j->deadline_ms[2] = (uint32_t)r->dl_masked;
    j->deadline_ms[3] = (uint32_t)r->dl_unmask;
    j->server_lr = (float)r->slr;
    j->server_momentum = (float)r->mom;
    j->join_wait_ms = (uint32_t)r->join;
    j->seed = (uint64_t)r->seed;
}

/* --name's length; --teacher-preprocess: required with an .onnx --teacher, refused otherwise. */
static int s_create_checks(const s_create_opts_t *o)
{
    if (strlen(o->name) > CND_NAME_MAX) return cnd_errf(CND_EINVAL, "--name: at most 63 bytes");
    int onnx = o->teacher && cnd_onnx_is_onnx(o->teacher);
    if (onnx && !o->teacher_prep)
        return cnd_errf(CND_EINVAL,
                        "--teacher %s is an ONNX model: give the preprocessing it "
                        "expects with --teacher-preprocess SPEC (docs/onnx.md)",
                        o->teacher);
    if (!onnx && o->teacher_prep)
        return cnd_errf(CND_EINVAL, "--teacher-preprocess is for an .onnx --teacher only");
    if (o->teacher_prep && strlen(o->teacher_prep) > CND_PROTO_PREP_MAX)
        return cnd_errf(CND_EINVAL, "--teacher-preprocess: at most %d bytes", CND_PROTO_PREP_MAX);
    return 0;
}

/* Parses `job create`'s options into o and the recipe j (student still unset). Returns 0, 1
 * after --help, or a negative CND_E* code. It is one idea, reading the options: the option
 * table (one row per option) is most of its length. */
static int s_create_parse(s_create_opts_t *o, cnd_job_spec_t *j, int argc, char **argv)
{
    cnd_job_defaults(j);
    *o = (s_create_opts_t){
        .dir = cnd_coord_default_dir(), .name = "", .calib_n = CND_FEDQ_CALIB_MAX};
    s_recipe_opts_t r = {j->qat_rounds,
                         j->weight_bits,
                         j->act_bits,
                         j->local_epochs,
                         j->batch,
                         j->rounds,
                         j->sites_per_round,
                         -1,
                         -1,
                         0,
                         j->sample_cap,
                         j->value_bits,
                         j->deadline_ms[0],
                         j->deadline_ms[1],
                         j->deadline_ms[2],
                         j->deadline_ms[3],
                         j->join_wait_ms,
                         (long)j->seed,
                         j->temperature,
                         j->alpha,
                         j->lr,
                         j->clip,
                         j->l2_clip,
                         j->server_lr,
                         j->server_momentum};
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &o->dir, "DIR", s_dir_help},
        {"name", CND_OPT_STR, &o->name, "TEXT", "a label for the job"},
        {"student-arch", CND_OPT_STR, &o->arch, "SPEC",
         "student architecture (required unless --student-init)"},
        {"student-init", CND_OPT_STR, &o->init, "FILE", "or: start from this student model (.cnd)"},
        {"teacher", CND_OPT_STR, &o->teacher, "FILE", "teacher (.cnd or .onnx) shipped to sites"},
        {"teacher-preprocess", CND_OPT_STR, &o->teacher_prep, "SPEC",
         "an .onnx teacher's input preprocessing, required with one (docs/onnx.md)"},
        {"teacher-local", CND_OPT_STR, &o->teacher_local, "NAME",
         "or: each site's own teacher NAME (never leaves the site)"},
        {"input", CND_OPT_STR, &o->input, "C,H,W",
         "input shape (only with --teacher-local and --student-arch)"},
        {"classes", CND_OPT_INT, &o->classes, "K",
         "classes (only with --teacher-local and --student-arch)", 2, 256},
        {"labels", CND_OPT_STR, &o->labels, "A,B,...",
         "class names in index order (default: the teacher's or the initial student's, else "
         "0..K-1)"},
        {"temperature", CND_OPT_DBL, &r.T, "T", "distillation temperature (default 4)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &r.alpha, "A", "weight of the teacher's soft targets (default 0.5)",
         0, 1},
        {"calib-data", CND_OPT_STR, &o->calib, "SPEC",
         "PUBLIC data (never a site's) to calibrate the int8 artifact; without it the job ends "
         "with a float model only"},
        {"calib-samples", CND_OPT_INT, &o->calib_n, "N",
         "calibration samples to keep (default and at most 500)", 1, CND_FEDQ_CALIB_MAX},
        {"qat-rounds", CND_OPT_INT, &r.qat, "N",
         "train the last N rounds with fake quantization (default 0; needs --calib-data)", 0,
         100000},
        {"weight-bits", CND_OPT_INT, &r.wbits, "B", "weight bits of the artifact (default 8)", 2,
         8},
        {"act-bits", CND_OPT_INT, &r.abits, "B", "activation bits (default 8)", 2, 8},
        {"local-epochs", CND_OPT_INT, &r.epochs, "N", "local epochs per round (default 1)", 1,
         1000},
        {"batch", CND_OPT_INT, &r.batch, "B", "local batch size (default 64)", 1, 65536},
        {"lr", CND_OPT_DBL, &r.lr, "X", "local rate: Adam, SGD under DP (default 1e-3)", 1e-9, 10},
        {"rounds", CND_OPT_INT, &r.rounds, "N", "federated rounds (default 10)", 1, 100000},
        {"sites", CND_OPT_INT, &r.sites, "N", "sites per round (default 3)", 2, 512},
        {"quorum", CND_OPT_INT, &r.quorum, "N",
         "fewest surviving sites for a round: a strict majority of --sites and at least the "
         "threshold (default: the smallest such)",
         2, 512},
        {"threshold", CND_OPT_INT, &r.threshold, "T",
         "SecAgg+ threshold (default: majority of a neighbourhood)", 2, 512},
        {"neighbours", CND_OPT_INT, &r.neighbours, "K",
         "SecAgg+ neighbours per site (default 2 log2 n)", 0, 511},
        {"clip", CND_OPT_DBL, &r.clip, "C", "per-coordinate clip of an update (default 0.05)", 1e-9,
         1e6},
        {"l2-clip", CND_OPT_DBL, &r.l2, "C", "L2 clip of an update (default none)", 0, 1e9},
        {"sample-cap", CND_OPT_INT, &r.cap, "W", "samples counted per site at most (default 20000)",
         1, 4e9},
        {"value-bits", CND_OPT_INT, &r.vbits, "Q", "bits per update coordinate (default 8)", 2, 24},
        {"advertise-ms", CND_OPT_INT, &r.dl_adv, "MS",
         "deadline of the key advertisement phase (default 10000)", 100, 86400000},
        {"share-ms", CND_OPT_INT, &r.dl_share, "MS",
         "deadline of the key sharing phase (default 10000)", 100, 86400000},
        {"masked-ms", CND_OPT_INT, &r.dl_masked, "MS",
         "deadline for training and the masked update (default 600000)", 100, 86400000},
        {"unmask-ms", CND_OPT_INT, &r.dl_unmask, "MS",
         "deadline of the unmasking phase (default 10000)", 100, 86400000},
        {"server-lr", CND_OPT_DBL, &r.slr, "X",
         "server learning rate on the averaged update (default 1)", 1e-6, 100},
        {"server-momentum", CND_OPT_DBL, &r.mom, "M", "server momentum (default 0: plain FedAvg)",
         0, 0.999},
        {"join-wait-ms", CND_OPT_INT, &r.join, "MS",
         "wait this long for --sites sites before starting with a quorum (default 30000)", 0,
         86400000},
        {"seed", CND_OPT_INT, &r.seed, "S",
         "seed for the student's initial weights and site selection (default 1)", 0, 1e15},
        {"dp-epsilon", CND_OPT_DBL, &o->dp.epsilon, "E",
         "DP-SGD at every site, noise solved for (E, --dp-delta)-DP at a site of "
         "--dp-site-samples records (distributed: for the sum of --dp-min-survivors sites over "
         "all rounds)",
         1e-6, 1e6},
        {"dp-noise", CND_OPT_DBL, &o->dp.noise, "S", "or: DP-SGD with noise multiplier S", 1e-6,
         1e4},
        {"dp-delta", CND_OPT_DBL, &o->dp.delta, "D", "DP delta (default 1e-5)", 1e-300, 0.01},
        {"dp-clip", CND_OPT_DBL, &o->dp.clip, "C",
         "DP L2 clip (default 1): of each record's gradient (local), of each site's round update "
         "(distributed)",
         1e-9, 1e6},
        {"dp-site-samples", CND_OPT_INT, &o->dp.site_samples, "N",
         "training records per site assumed by --dp-epsilon", 1, 1e12},
        {"dp-mode", CND_OPT_STR, &o->dp_mode, "MODE",
         "local (default: DP-SGD at each site) or distributed (each site adds discrete Gaussian "
         "noise to its clipped update inside the secure sum, docs/privacy.md)"},
        {"dp-min-survivors", CND_OPT_INT, &o->dp.min_survivors, "N",
         "distributed DP: the fewest sites whose noise every unmasked sum carries; sites and "
         "coordinator refuse to unmask fewer (default: the quorum)",
         1, 65535},
        {0}};
    const cnd_cli_t cli = {
        "condenser job create --student-arch SPEC (--teacher FILE | --teacher-local NAME) "
        "[options]",
        "Creates a federated distillation job. Sites train the student on their own data with "
        "the teacher's soft targets; the coordinator averages their clipped, fixed-point, "
        "SecAgg+-masked updates. Prints the job id.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    if (!o->teacher == !o->teacher_local)
        return cnd_errf(CND_EINVAL, "give exactly one of --teacher FILE or --teacher-local NAME");
    if (!o->arch == !o->init)
        return cnd_errf(CND_EINVAL,
                        "give exactly one of --student-arch SPEC or --student-init FILE");
    if ((rc = s_create_checks(o))) return rc;
    s_fill_recipe(j, o, &r);
    if (o->dp_mode && strcmp(o->dp_mode, "local") && strcmp(o->dp_mode, "distributed"))
        return cnd_errf(CND_EINVAL, "--dp-mode '%s': expected local or distributed", o->dp_mode);
    o->dp.distributed = o->dp_mode && !strcmp(o->dp_mode, "distributed");
    if ((rc = cnd_job_dp_options(j, &o->dp))) return rc;
    if (j->qat_rounds > 0 && !o->calib)
        return cnd_errf(CND_EINVAL, "--qat-rounds needs --calib-data: the coordinator calibrates "
                                    "the quantizer on public samples before each QAT round");
    return 0;
}

/* What `job create` builds before it stores anything. */
typedef struct {
    cnd_model_t *t, *s; /* the shipped .cnd teacher (or NULL); the initial student */
    int onnx;           /* the shipped teacher is the ONNX model described by oi */
    cnd_onnx_teacher_info_t oi;
    uint8_t *tbytes; /* the teacher file as read */
    size_t tlen;
    uint8_t *sbytes; /* the student, serialized */
    size_t slen;
    cnd_dataset_t *cal; /* public calibration samples, or NULL */
    char *json;         /* the recipe */
} s_new_job_t;

static void s_new_job_free(s_new_job_t *n)
{
    cnd_data_destroy(&n->cal);
    cnd_model_destroy(&n->t);
    cnd_model_destroy(&n->s);
    free(n->tbytes);
    free(n->sbytes);
    free(n->json);
}

/* The job's class map: --labels, else the teacher's, else the initial student's ("labels"
 * metadata), else 0..K-1; a teacher or student whose map differs from the job's is refused. The
 * initial student carries the map, so the global models and the artifact do. */
static int s_class_map(cnd_job_spec_t *j, s_new_job_t *n, const s_create_opts_t *o)
{
    const char *t = n->t ? cnd_model_meta_get(n->t, "labels") : NULL;
    const char *s = cnd_model_meta_get(n->s, "labels");
    const char *pick = o->labels ? o->labels : t ? t : s;
    const char *from = o->labels ? "--labels" : t ? "the teacher's labels" : "the student's labels";
    if (pick) {
        if (strlen(pick) >= sizeof j->labels || cnd_classmap_check(pick, (int)j->classes, NULL))
            return cnd_err_wrap(CND_EINVAL, "%s", from);
        snprintf(j->labels, sizeof j->labels, "%s", pick);
    } else {
        cnd_classmap_default(j->labels, sizeof j->labels, (int)j->classes);
    }
    if (t && strcmp(t, j->labels) != 0)
        return cnd_errf(CND_EINVAL, "the teacher's classes (%.200s) are not the job's (%.200s)", t,
                        j->labels);
    if (s && strcmp(s, j->labels) != 0)
        return cnd_errf(CND_EINVAL, "the student's classes (%.200s) are not the job's (%.200s)", s,
                        j->labels);
    return cnd_model_meta_set(n->s, "labels", j->labels);
}

/* The initial student: from --student-init, or new from its architecture with the input shape,
 * classes and normalisation of the shipped teacher (or --input/--classes for a site-local one);
 * it must match the teacher. Fills the recipe's student fields and checks the whole recipe. */
static int s_build_student(s_new_job_t *n, cnd_job_spec_t *j, const s_create_opts_t *o)
{
    int rc;
    if (o->teacher) {
        if ((rc = cnd_file_read(o->teacher, CND_CSTORE_MODEL_MAX, &n->tbytes, &n->tlen))) return rc;
        n->onnx = j->teacher_onnx;
        if (n->onnx) /* the sites check it again: they need not trust this coordinator */
            rc = cnd_onnx_teacher_check(&n->oi, n->tbytes, n->tlen, o->teacher, o->teacher_prep,
                                        SIZE_MAX);
        else
            rc = cnd_model_deserialize(&n->t, n->tbytes, n->tlen, o->teacher);
        if (rc) return rc;
    }
    cnd_model_t *t = n->t;
    /* the shipped teacher's input and classes, .cnd or ONNX */
    cnd_shape_t tin = t ? t->in : n->oi.in;
    int tk = t ? t->n_classes : n->oi.classes;
    const float *tmean = t ? t->norm_mean : n->oi.mean, *tstd = t ? t->norm_std : n->oi.std;
    if (o->init) {
        if ((rc = cnd_model_load(&n->s, o->init))) return rc;
    } else {
        cnd_shape_t in;
        if (o->teacher) {
            in = tin;
            if (o->input || o->classes)
                fprintf(stderr, "note: --input/--classes ignored: taken from the teacher\n");
        } else {
            if (!o->input || !o->classes)
                return cnd_errf(CND_EINVAL,
                                "--input C,H,W and --classes K are needed with --teacher-local");
            uint32_t a = 0, b = 0, d = 0;
            if ((rc = s_parse_shape(o->input, &a, &b, &d))) return rc;
            in.c = (int)a;
            in.h = (int)b;
            in.w = (int)d;
        }
        if ((rc = cnd_model_new(&n->s, o->arch, in, j->seed))) return rc;
        if (o->teacher)
            for (int i = 0; i < in.c; i++) {
                n->s->norm_mean[i] = tmean[i];
                n->s->norm_std[i] = tstd[i];
            }
    }
    const cnd_model_t *s = n->s;
    /* graph models federate like chains (QAT and the int8 freeze handle graphs); DP-SGD refuses
     * them below (cnd_dpsgd_check_model) */
    if (o->teacher &&
        (tin.c != s->in.c || tin.h != s->in.h || tin.w != s->in.w || tk != s->n_classes))
        return cnd_errf(CND_EINVAL,
                        "the student (%dx%dx%d -> %d) does not match the teacher "
                        "(%dx%dx%d -> %d)",
                        s->in.c, s->in.h, s->in.w, s->n_classes, tin.c, tin.h, tin.w, tk);
    snprintf(j->arch, sizeof j->arch, "%s", s->spec);
    j->in_c = (uint32_t)s->in.c;
    j->in_h = (uint32_t)s->in.h;
    j->in_w = (uint32_t)s->in.w;
    j->classes = (uint32_t)s->n_classes;
    if ((rc = s_class_map(j, n, o))) return rc;
    return cnd_job_check(j);
}

/* The public calibration samples for the int8 artifact (--calib-data): the student must be
 * quantizable with the recipe's bits, the samples its shape; a seeded sample, so the job is
 * reproducible. */
static int s_load_calib(s_new_job_t *n, const cnd_job_spec_t *j, const s_create_opts_t *o)
{
    const cnd_model_t *s = n->s;
    int rc;
    if ((rc = cnd_fedq_check(s, (int)j->weight_bits, (int)j->act_bits, j->qat_rounds > 0)))
        return rc;
    cnd_dataset_t *all = NULL;
    if ((rc = cnd_data_open(&all, o->calib, "train"))) return rc;
    if (cnd_shape_size(all->shape) != cnd_shape_size(s->in))
        rc =
            cnd_errf(CND_EINVAL,
                     "--calib-data %s: samples are %dx%dx%d, the student takes "
                     "%dx%dx%d",
                     o->calib, all->shape.c, all->shape.h, all->shape.w, s->in.c, s->in.h, s->in.w);
    if (!rc) rc = cnd_quant_calib_sample(&n->cal, all, (size_t)o->calib_n, j->seed);
    cnd_data_destroy(&all);
    return rc;
}

/* The job.create audit entry: name, recipe, calibration sample count; digests of the teacher
 * and the initial student. */
static int s_audit_create(cnd_coord_t *c, int64_t id, const s_new_job_t *n, const char *name)
{
    uint8_t teacher[32], student[32];
    if (n->tbytes) cnd_sha256(teacher, n->tbytes, n->tlen);
    cnd_sha256(student, n->sbytes, n->slen);
    cnd_audit_job_create_t e = {.job = id,
                                .name = name,
                                .recipe_json = n->json,
                                .calibration_samples = n->cal ? (int64_t)n->cal->n : 0,
                                .teacher = n->tbytes ? teacher : NULL,
                                .student_init = student};
    return cnd_audit_log_job_create(c->audit, cnd_coord_operator(), &e);
}

/* Job, teacher, student version 0, calibration samples and their audit entries in one
 * transaction; the new id in *id. */
static int s_store_job(int64_t *id, cnd_coord_t *c, const s_new_job_t *n, const char *name)
{
    int rc = cnd_cstore_begin(c->store);
    if (rc) return rc;
    rc = cnd_cstore_job_create(c->store, id, name, n->json, n->tbytes, n->tlen, n->sbytes, n->slen);
    if (!rc && n->cal) rc = cnd_cstore_calib_put(c->store, *id, n->cal);
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)*id);
    if (!rc) rc = s_audit_create(c, *id, n, name);
    if (!rc) rc = cnd_coord_admin_log(c, "job.create", jid, jid, "ok");
    if (!rc)
        rc = cnd_cstore_commit(c->store);
    else
        cnd_cstore_rollback(c->store);
    return rc;
}

/* The DP plan of a new job: what the sites are told and what a site of the assumed size spends. */
static void s_print_dp(const cnd_job_spec_t *j, uint64_t dim)
{
    if (j->dp_mode == CND_JOB_DP_DISTRIBUTED) {
        double eps = 0;
        uint64_t s2 = 0;
        cnd_dp_ddg_t m;
        if (cnd_job_ddp_mech(j, dim, &s2, &m) || cnd_job_dp_epsilon(j, 1, dim, j->rounds, &eps)) {
            cnd_err_clear();
            return;
        }
        printf("distributed DP: noise multiplier %.6g, update L2 clip %g, delta %g; each site "
               "adds N_Z(0, %llu) per coordinate (L2 sensitivity %.6g ring units); any sum of at "
               "least %u sites over the %u rounds is (epsilon %.6g, delta %g)-DP for each site\n",
               j->dp_noise, j->dp_clip, j->dp_delta, (unsigned long long)s2, m.l2,
               j->dp_min_survivors, j->rounds, eps, j->dp_delta);
        return;
    }
    printf("DP-SGD at every site: noise multiplier %.6g, clip %g, delta %g", j->dp_noise,
           j->dp_clip, j->dp_delta);
    if (j->dp_assumed_n) {
        double q;
        long per;
        cnd_job_dp_site(j, j->dp_assumed_n, &q, &per);
        printf("; a site of %llu records samples at %.6g over %ld steps: epsilon %g (each site "
               "computes its own from its own records)",
               (unsigned long long)j->dp_assumed_n, q, per * (long)j->rounds, j->dp_target_eps);
    }
    printf("\n");
}

/* Distributed DP at job creation: the noise solved for the target (if one was given) with the
 * accountant at the update's dim coordinates, and the noisy sum checked to fit the ring. */
static int s_ddp_plan(cnd_job_spec_t *j, uint64_t dim)
{
    int rc;
    if (j->dp_target_eps > 0 && (rc = cnd_job_ddp_solve(j, dim))) return rc;
    uint64_t s2;
    cnd_dp_ddg_t m;
    cnd_fxp_layout_t lay;
    if ((rc = cnd_job_ddp_mech(j, dim, &s2, &m))) return rc;
    cnd_fxp_params_t fp = {
        (uint32_t)dim, j->sites_per_round, j->value_bits, (float)j->dp_clip, 0, j->sample_cap, s2};
    if ((rc = cnd_fxp_layout(&lay, &fp)))
        return cnd_err_wrap(rc, "distributed DP at --value-bits %u", j->value_bits);
    return 0;
}

static int s_create(int argc, char **argv)
{
    s_create_opts_t o;
    cnd_job_spec_t j;
    int rc = s_create_parse(&o, &j, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    s_new_job_t n;
    memset(&n, 0, sizeof n);
    cnd_coord_t c;
    memset(&c, 0, sizeof c);
    if ((rc = s_build_student(&n, &j, &o))) goto done;
    if (j.dp_clip > 0 && j.dp_mode == CND_JOB_DP_LOCAL && (rc = cnd_dpsgd_check_model(n.s)))
        goto done;
    /* distributed DP covers the whole update: parameters and batchnorm statistics */
    uint64_t dim = n.s->num_params + n.s->num_state;
    if (j.dp_mode == CND_JOB_DP_DISTRIBUTED && (rc = s_ddp_plan(&j, dim))) goto done;
    if (o.calib) {
        if ((rc = s_load_calib(&n, &j, &o))) goto done;
    } else if (j.qat_rounds == 0) {
        cnd_err_clear();
    }
    if ((rc = cnd_model_meta_set(n.s, "job", o.name))) goto done;
    if ((rc = cnd_model_serialize(n.s, &n.sbytes, &n.slen))) goto done;
    if ((rc = cnd_job_to_json(&n.json, &j))) goto done;
    if ((rc = cnd_coord_open(&c, o.dir, 1))) goto done;
    int64_t id = 0;
    if ((rc = s_store_job(&id, &c, &n, o.name))) goto done;
    char hex[65];
    printf("job %lld created: %s, %u rounds of %u sites, student %zu parameters%s\n", (long long)id,
           j.arch, j.rounds, j.sites_per_round, n.s->num_params,
           n.onnx     ? ", ONNX teacher shipped"
           : n.tbytes ? ", teacher shipped"
                      : ", site-local teacher");
    uint8_t d[32];
    cnd_sha256(d, n.sbytes, n.slen);
    printf("student v0 sha256:%s\n", cnd_hex(hex, d, 32));
    if (j.dp_clip > 0) s_print_dp(&j, dim);
    if (n.cal)
        printf("int8 artifact at the end: %zu public calibration samples from %s%s\n", n.cal->n,
               o.calib, j.qat_rounds ? ", QAT in the last rounds" : "");
done:
    cnd_coord_close(&c);
    s_new_job_free(&n);
    return rc;
}

static int s_list(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser job list [--dir DIR] [--json]",
                           "Lists jobs, newest first: id, state, rounds done of the recipe's, "
                           "creation time (UTC), name.",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_job_rec_t *l = NULL;
    size_t n = 0;
    if (!(rc = cnd_cstore_jobs(c.store, &l, &n))) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_arr(&w);
        if (!json) printf("%-5s %-10s %-7s %-20s %s\n", "id", "state", "rounds", "created", "name");
        for (size_t i = 0; i < n; i++) {
            uint32_t next = 1, att = 1;
            if (cnd_cstore_round_next(c.store, l[i].id, &next, &att)) next = 1;
            cnd_job_spec_t j;
            uint32_t total = cnd_job_from_json(&j, l[i].spec_json) ? 0 : j.rounds;
            char t[32], r[24];
            cnd_iso8601(t, l[i].created_ms / 1000);
            snprintf(r, sizeof r, "%u/%u", next - 1, total);
            if (json) {
                cnd_jw_obj(&w);
                cnd_jw_key(&w, "id");
                cnd_jw_int(&w, l[i].id);
                cnd_jw_key(&w, "state");
                cnd_jw_str(&w, l[i].state);
                cnd_jw_key(&w, "rounds_done");
                cnd_jw_int(&w, next - 1);
                cnd_jw_key(&w, "rounds"); /* of the recipe; 0 when it does not parse */
                cnd_jw_int(&w, total);
                cnd_jw_key(&w, "created");
                cnd_jw_str(&w, t);
                cnd_jw_key(&w, "name");
                cnd_jw_str(&w, l[i].name);
                cnd_jw_key(&w, "reason");
                cnd_jw_str(&w, l[i].reason);
                cnd_jw_obj_end(&w);
            } else {
                printf("%-5lld %-10s %-7s %-20s %s\n", (long long)l[i].id, l[i].state, r, t,
                       l[i].name);
            }
            cnd_job_rec_free(&l[i]);
        }
        free(l);
        cnd_err_clear();
        cnd_jw_arr_end(&w);
        if (json) {
            const char *txt = cnd_jw_text(&w);
            if (txt)
                printf("%s\n", txt);
            else
                rc = cnd_errf(CND_ENOMEM, "job list: out of memory");
        }
        cnd_jw_free(&w);
    }
    cnd_coord_close(&c);
    return rc;
}

/* Validation accuracy and loss of a round over its survivors: the secure sums decoded with the
 * aggregate (no site's own figures exist outside them). Returns 0 when the round has none (acc
 * and loss are then 0). */
static int s_round_metrics(const cnd_round_rec_t *r, double *acc, double *loss)
{
    *acc = *loss = 0;
    if (!r->validated) return 0;
    *acc = (double)r->correct / (double)r->validated;
    *loss = r->loss_sum / (double)r->validated;
    return 1;
}

static double s_round_seconds(const cnd_round_rec_t *r)
{
    return r->ended_ms ? (double)(r->ended_ms - r->started_ms) / 1e3 : 0;
}

/* Names of the sites round r still awaits in its phase ("" when none, or when it has ended),
 * comma-separated, and how many. */
static size_t s_waiting(const cnd_round_rec_t *r, char *out, size_t cap)
{
    size_t n = 0, k = 0;
    out[0] = '\0';
    if (r->outcome[0]) return 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (!cnd_round_awaits(r->phase, r->sites[i].status)) continue;
        int w = snprintf(out + k, cap - k, "%s%s", n ? ", " : "", r->sites[i].name);
        if (w > 0 && (size_t)w < cap - k) k += (size_t)w;
        n++;
    }
    return n;
}

/* The sites of round r whose session ended during it, comma-separated, and how many. */
static size_t s_lost(const cnd_round_rec_t *r, char *out, size_t cap)
{
    size_t n = 0, k = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < r->n; i++) {
        if (!(r->sites[i].status & CND_RSITE_LOST)) continue;
        int w = snprintf(out + k, cap - k, "%s%s", n ? ", " : "", r->sites[i].name);
        if (w > 0 && (size_t)w < cap - k) k += (size_t)w;
        n++;
    }
    return n;
}

/* Seconds until the deadline of round r's current phase (negative once it passed). */
static double s_left(const cnd_round_rec_t *r, const cnd_job_spec_t *j)
{
    static const char *const ph[] = {"advertise", "share", "masked", "consistency", "unmask"};
    for (int k = 0; k < 5; k++)
        if (strcmp(r->phase, ph[k]) == 0)
            return (double)(r->phase_ms + j->deadline_ms[k > 3 ? 3 : k] - cnd_unix_ms()) / 1e3;
    return 0;
}

static int s_cmp_models(const void *a, const void *b)
{
    const cnd_model_rec_t *x = a, *y = b;
    if (x->version != y->version) return x->version < y->version ? -1 : 1;
    return strcmp(x->format, y->format);
}

/* The job's model versions (float, and the int8 rows of files from before the artifact registry)
 * and the signed artifacts the registry holds under its name, by version and format; an artifact
 * listed in both is listed once. On failure the caller still frees (*models, *nm). */
static int s_all_models(cnd_cstore_t *s, int64_t job, cnd_model_rec_t **models, size_t *nm)
{
    int rc = cnd_cstore_models(s, job, models, nm);
    cnd_model_rec_t *arts = NULL;
    size_t na = 0;
    if (rc || (rc = cnd_fedq_artifacts(s, job, &arts, &na)) || !na) return rc;
    cnd_model_rec_t *g = realloc(*models, (*nm + na) * sizeof *g);
    if (!g) rc = cnd_errf(CND_ENOMEM, "job show: out of memory");
    for (size_t i = 0; i < na; i++) {
        int dup = 0;
        for (size_t k = 0; g && k < *nm && !dup; k++)
            dup = !memcmp(g[k].digest, arts[i].digest, 32);
        if (!g || dup)
            cnd_model_rec_free(&arts[i]);
        else
            g[(*nm)++] = arts[i];
    }
    free(arts);
    if (g) {
        *models = g;
        qsort(g, *nm, sizeof *g, s_cmp_models);
    }
    return rc;
}

/* What `job show` reads from the store. */
typedef struct {
    long long id;
    cnd_job_rec_t job;
    cnd_job_spec_t spec; /* the recipe, when have_spec */
    int have_spec;
    cnd_round_rec_t *rounds;
    size_t nr;
    cnd_model_rec_t *models;
    size_t nm;
} s_job_view_t;

/* For the round in flight: whom its phase waits for, the deadline, who dropped out. */
static void s_show_waiting(const s_job_view_t *v, const cnd_round_rec_t *r)
{
    char names[1024];
    size_t nw = s_waiting(r, names, sizeof names);
    if (!r->outcome[0] && nw) {
        printf("       %s phase: waiting for %s (%zu of %u sites)", r->phase, names, nw, r->n);
        double left = v->have_spec ? s_left(r, &v->spec) : 0;
        if (!v->have_spec)
            printf("\n");
        else if (left >= 0)
            printf("; deadline in %.0f s\n", left);
        else
            printf("; deadline passed %.0f s ago\n", -left);
    }
    if (s_lost(r, names, sizeof names))
        printf("       session ended mid-round (dropouts): %s\n", names);
}

/* The job's DP mode as `job show` names it. */
static const char *s_dp_mode(const cnd_job_spec_t *j)
{
    if (!(j->dp_clip > 0)) return "none";
    return j->dp_mode == CND_JOB_DP_DISTRIBUTED ? "distributed" : "local";
}

/* The privacy line of `job show`: the DP mode and its parameters, from the recipe. */
static void s_show_dp(const cnd_job_spec_t *j)
{
    if (!(j->dp_clip > 0)) {
        printf("privacy: no differential privacy (secure aggregation only)\n");
        return;
    }
    int ddp = j->dp_mode == CND_JOB_DP_DISTRIBUTED;
    printf("privacy: %s, noise multiplier %.6g, clip %g (%s), delta %g", s_dp_mode(j), j->dp_noise,
           j->dp_clip, ddp ? "each site's round update" : "per-sample gradient", j->dp_delta);
    if (j->dp_target_eps > 0) printf(", target epsilon %g", j->dp_target_eps);
    if (ddp)
        printf(", min survivors %u (site-level DP of any sum of at least that many sites)",
               j->dp_min_survivors);
    else if (j->dp_assumed_n)
        printf(" for a site of %llu records (record-level DP-SGD at every site; each site "
               "computes its own spend)",
               (unsigned long long)j->dp_assumed_n);
    else
        printf(" (record-level DP-SGD at every site; each site computes its own spend)");
    printf("%s\n", j->qat_rounds ? "; QAT rounds train under the same DP" : "");
}

static void s_show_text(const s_job_view_t *v)
{
    const cnd_job_rec_t *job = &v->job;
    printf("job %lld \"%s\": %s%s%s\n", v->id, job->name, job->state, job->reason[0] ? ": " : "",
           job->reason);
    printf("recipe %s\n", job->spec_json);
    if (v->have_spec) s_show_dp(&v->spec);
    printf("\n");
    printf("%-6s %-4s %-9s %-10s %-6s %-9s %-8s %-8s %-8s %-8s %s\n", "round", "try", "phase",
           "outcome", "sites", "survived", "acc", "loss", "secagg_s", "total_s", "reason");
    for (size_t i = 0; i < v->nr; i++) {
        const cnd_round_rec_t *r = &v->rounds[i];
        double acc, loss;
        char a[16] = "n/a", l[16] = "n/a";
        if (s_round_metrics(r, &acc, &loss))
            snprintf(a, sizeof a, "%.4f", acc), snprintf(l, sizeof l, "%.4f", loss);
        printf("%-6u %-4u %-9s %-10s %-6u %-9u %-8s %-8s %-8.3f %-8.2f %s\n", r->round, r->attempt,
               r->phase, r->outcome[0] ? r->outcome : "running", r->n, r->survivors, a, l,
               cnd_round_secagg_seconds(r), s_round_seconds(r), r->reason);
        s_show_waiting(v, r);
    }
    printf("\n%-8s %-6s %-6s %-10s %-8s %s\n", "version", "round", "format", "bytes", "acc",
           "sha256");
    for (size_t i = 0; i < v->nm; i++) {
        const cnd_model_rec_t *m = &v->models[i];
        char hex[65], acc[16] = "n/a";
        if (m->accuracy >= 0) snprintf(acc, sizeof acc, "%.4f", m->accuracy);
        printf("%-8lld %-6lld %-6s %-10llu %-8s %s\n", (long long)m->version, (long long)m->round,
               m->format, (unsigned long long)m->size, acc, cnd_hex(hex, m->digest, 32));
    }
}

static void s_json_round(cnd_jw_t *w, const cnd_round_rec_t *r, const s_job_view_t *v)
{
    cnd_jw_obj(w);
    cnd_jw_key(w, "round");
    cnd_jw_int(w, r->round);
    cnd_jw_key(w, "attempt");
    cnd_jw_int(w, r->attempt);
    cnd_jw_key(w, "phase");
    cnd_jw_str(w, r->phase);
    cnd_jw_key(w, "outcome");
    cnd_jw_str(w, r->outcome);
    cnd_jw_key(w, "reason");
    cnd_jw_str(w, r->reason);
    cnd_jw_key(w, "participants");
    cnd_jw_int(w, r->n);
    cnd_jw_key(w, "survivors");
    cnd_jw_int(w, r->survivors);
    double acc, loss;
    int has = s_round_metrics(r, &acc, &loss);
    cnd_jw_key(w, "accuracy"); /* null: no site reported metrics */
    if (has)
        cnd_jw_double(w, acc);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "loss");
    if (has)
        cnd_jw_double(w, loss);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "model_version");
    cnd_jw_int(w, r->model_version);
    cnd_jw_key(w, "seconds");
    cnd_jw_obj(w);
    static const char *const ph[] = {"advertise", "share", "masked", "consistency", "unmask"};
    for (int k = 0; k < 5; k++) {
        cnd_jw_key(w, ph[k]);
        cnd_jw_double(w, r->t_phase[k]);
    }
    cnd_jw_key(w, "finish");
    cnd_jw_double(w, r->t_finish);
    cnd_jw_key(w, "secagg");
    cnd_jw_double(w, cnd_round_secagg_seconds(r));
    cnd_jw_key(w, "total");
    cnd_jw_double(w, s_round_seconds(r));
    cnd_jw_obj_end(w);
    cnd_jw_key(w, "ingress_bytes");
    cnd_jw_int(w, (int64_t)r->ingress_bytes);
    cnd_jw_key(w, "waiting_for"); /* whom the running phase still awaits */
    cnd_jw_arr(w);
    for (uint32_t k = 0; k < r->n; k++)
        if (!r->outcome[0] && cnd_round_awaits(r->phase, r->sites[k].status))
            cnd_jw_str(w, r->sites[k].name);
    cnd_jw_arr_end(w);
    if (!r->outcome[0] && v->have_spec) {
        cnd_jw_key(w, "deadline_in_s");
        cnd_jw_double(w, s_left(r, &v->spec));
    }
    cnd_jw_key(w, "sites");
    cnd_jw_arr(w);
    for (uint32_t k = 0; k < r->n; k++) {
        const cnd_rsite_t *x = &r->sites[k];
        cnd_jw_obj(w);
        cnd_jw_key(w, "name");
        cnd_jw_str(w, x->name);
        cnd_jw_key(w, "status");
        cnd_jw_int(w, x->status);
        cnd_jw_key(w, "session_lost");
        cnd_jw_bool(w, (x->status & CND_RSITE_LOST) != 0);
        if (x->status & CND_RSITE_METRICS) {
            cnd_jw_key(w, "train_ms");
            cnd_jw_int(w, x->train_ms);
        }
        cnd_jw_obj_end(w);
    }
    cnd_jw_arr_end(w);
    cnd_jw_obj_end(w);
}

static void s_json_model(cnd_jw_t *w, const cnd_model_rec_t *m)
{
    char hex[65];
    cnd_jw_obj(w);
    cnd_jw_key(w, "version");
    cnd_jw_int(w, m->version);
    cnd_jw_key(w, "round");
    cnd_jw_int(w, m->round);
    cnd_jw_key(w, "format");
    cnd_jw_str(w, m->format);
    cnd_jw_key(w, "size");
    cnd_jw_int(w, (int64_t)m->size);
    cnd_jw_key(w, "accuracy"); /* null: none recorded (the initial student, the artifact) */
    if (m->accuracy >= 0)
        cnd_jw_double(w, m->accuracy);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "sha256");
    cnd_jw_str(w, cnd_hex(hex, m->digest, 32));
    cnd_jw_key(w, "signed");
    cnd_jw_bool(w, m->manifest != NULL);
    cnd_jw_obj_end(w);
}

/* "privacy": the DP mode and its parameters (null where the mode has none). */
static void s_json_dp(cnd_jw_t *w, const cnd_job_spec_t *j)
{
    int on = j->dp_clip > 0, ddp = on && j->dp_mode == CND_JOB_DP_DISTRIBUTED;
    cnd_jw_key(w, "privacy");
    cnd_jw_obj(w);
    cnd_jw_key(w, "dp_mode"); /* none | local (DP-SGD at each site) | distributed */
    cnd_jw_str(w, s_dp_mode(j));
    const char *k[] = {"noise_multiplier", "clip", "delta", "target_epsilon"};
    double x[] = {j->dp_noise, j->dp_clip, j->dp_delta, j->dp_target_eps};
    for (int i = 0; i < 4; i++) {
        cnd_jw_key(w, k[i]);
        if (on && (i < 3 || x[i] > 0))
            cnd_jw_double(w, x[i]);
        else
            cnd_jw_null(w);
    }
    cnd_jw_key(w, "min_survivors");
    if (ddp)
        cnd_jw_int(w, j->dp_min_survivors);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "assumed_site_samples");
    if (on && !ddp && j->dp_assumed_n)
        cnd_jw_int(w, (int64_t)j->dp_assumed_n);
    else
        cnd_jw_null(w);
    cnd_jw_obj_end(w);
}

static int s_show_json(const s_job_view_t *v)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "id");
    cnd_jw_int(&w, v->id);
    cnd_jw_key(&w, "name");
    cnd_jw_str(&w, v->job.name);
    cnd_jw_key(&w, "state");
    cnd_jw_str(&w, v->job.state);
    cnd_jw_key(&w, "reason");
    cnd_jw_str(&w, v->job.reason);
    cnd_jw_key(&w, "recipe");
    cnd_jw_raw(&w, v->job.spec_json);
    if (v->have_spec) s_json_dp(&w, &v->spec);
    cnd_jw_key(&w, "rounds");
    cnd_jw_arr(&w);
    for (size_t i = 0; i < v->nr; i++) s_json_round(&w, &v->rounds[i], v);
    cnd_jw_arr_end(&w);
    cnd_jw_key(&w, "models");
    cnd_jw_arr(&w);
    for (size_t i = 0; i < v->nm; i++) s_json_model(&w, &v->models[i]);
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    int rc = t ? 0 : cnd_errf(CND_ENOMEM, "job show: out of memory");
    if (t) printf("%s\n", t);
    cnd_jw_free(&w);
    return rc;
}

static int s_show(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser job show ID [--dir DIR] [--json]",
                           "Shows a job: its recipe and privacy (DP mode, noise multiplier, clip, "
                           "delta, target epsilon, min survivors), every round (phase, outcome, "
                           "participants, "
                           "metrics, time per phase; for the round in flight, whom its phase "
                           "waits for) and its model versions with digests.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    s_job_view_t v;
    memset(&v, 0, sizeof v);
    char *end;
    v.id = strtoll(pos[0], &end, 10);
    if (*end || v.id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a job id", pos[0]);
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    if (!(rc = cnd_cstore_job_get(c.store, v.id, &v.job)) &&
        !(rc = cnd_cstore_rounds(c.store, v.id, &v.rounds, &v.nr)) &&
        !(rc = s_all_models(c.store, v.id, &v.models, &v.nm))) {
        v.have_spec = cnd_job_from_json(&v.spec, v.job.spec_json) == 0;
        cnd_err_clear();
        if (json)
            rc = s_show_json(&v);
        else
            s_show_text(&v);
    }
    for (size_t i = 0; i < v.nr; i++) cnd_round_rec_free(&v.rounds[i]);
    for (size_t i = 0; i < v.nm; i++) cnd_model_rec_free(&v.models[i]);
    free(v.rounds);
    free(v.models);
    cnd_job_rec_free(&v.job);
    cnd_coord_close(&c);
    return rc;
}

static int s_cancel(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *reason = "cancelled by the operator";
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"reason", CND_OPT_STR, &reason, "TEXT", "why (kept in the audit log)"},
        {0}};
    const cnd_cli_t cli = {"condenser job cancel ID [--reason TEXT] [--dir DIR]",
                           "Cancels a pending or running job. A running coordinator ends the "
                           "round in flight without applying it and tells the sites.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    char *end;
    long long id = strtoll(pos[0], &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a job id", pos[0]);
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 1))) return rc;
    cnd_job_rec_t job;
    if (!(rc = cnd_cstore_begin(c.store))) {
        rc = cnd_cstore_job_get(c.store, id, &job);
        if (!rc && strcmp(job.state, "pending") != 0 && strcmp(job.state, "running") != 0)
            rc = cnd_errf(CND_ESTATE,
                          "job %lld is %s: only pending or running jobs can be "
                          "cancelled",
                          id, job.state);
        if (!rc) rc = cnd_cstore_job_set_state(c.store, id, "cancelled", reason);
        cnd_job_rec_free(&job);
        char jid[32];
        snprintf(jid, sizeof jid, "%lld", id);
        if (!rc) {
            rc = cnd_audit_log_job_state(c.audit, cnd_coord_operator(), id, "cancelled", reason);
        }
        if (!rc) rc = cnd_coord_admin_log(&c, "job.cancel", jid, jid, "ok");
        if (!rc)
            rc = cnd_cstore_commit(c.store);
        else
            cnd_cstore_rollback(c.store);
    }
    if (!rc) printf("job %lld cancelled\n", id);
    cnd_coord_close(&c);
    return rc;
}

static int s_export(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *out = NULL, *format = "float";
    long version = -1;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"out", CND_OPT_STR, &out, "FILE", "where to write the model (required)"},
        {"format", CND_OPT_STR, &format, "F", "float (.cnd, default) or int8 (.cndq)"},
        {"version", CND_OPT_INT, &version, "N", "model version (default: the latest)", 0, 1e9},
        {0}};
    const cnd_cli_t cli = {"condenser job export ID --out FILE [--format float|int8] [--version N]",
                           "Writes a model version of a job to a file, after checking it "
                           "against its stored digest.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!out) return cnd_errf(CND_EINVAL, "--out FILE is required");
    char *end;
    long long id = strtoll(pos[0], &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a job id", pos[0]);
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_model_rec_t m;
    memset(&m, 0, sizeof m);
    uint8_t *blob = NULL;
    size_t len = 0;
    if (strcmp(format, "int8") == 0) /* the signed artifact (coord_quant.h) */
        rc = cnd_fedq_artifact(c.store, id, version, &m, &blob, &len);
    else if (strcmp(format, "float") == 0)
        rc = version < 0 ? cnd_cstore_model_latest(c.store, id, format, &m, &blob, &len)
                         : cnd_cstore_model_get(c.store, id, version, format, &m, &blob, &len);
    else
        rc = cnd_errf(CND_EINVAL, "--format %s: float or int8", format);
    if (!rc) rc = cnd_file_write_atomic(out, blob, len, 0644);
    if (!rc && m.manifest) {
        char mp[1024];
        snprintf(mp, sizeof mp, "%s.manifest", out);
        rc = cnd_file_write_atomic(mp, m.manifest, m.manifest_len, 0644);
    }
    if (!rc) {
        char hex[65];
        printf("wrote %s: job %lld version %lld (%s, %zu bytes, sha256:%s)%s\n", out, id,
               (long long)m.version, m.format, len, cnd_hex(hex, m.digest, 32),
               m.manifest ? " and its signed manifest (.manifest)" : "");
    }
    cnd_model_rec_free(&m);
    free(blob);
    cnd_coord_close(&c);
    return rc;
}

int cnd_cmd_job(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: condenser job create|list|show|cancel|export|candidates [options]   (--help "
               "after each)\n");
        return argc < 2 ? cnd_errf(CND_EINVAL,
                                   "a subcommand is required: create, list, show, cancel, export")
                        : 0;
    }
    if (strcmp(argv[1], "create") == 0 && cnd_job_autoc_wanted(argc - 1, argv + 1))
        return cnd_job_autoc_create(argc - 1, argv + 1); /* coord_autoc.h */
    if (strcmp(argv[1], "create") == 0) return s_create(argc - 1, argv + 1);
    if (strcmp(argv[1], "candidates") == 0) return cnd_job_autoc_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0) return s_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0) return s_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "cancel") == 0) return s_cancel(argc - 1, argv + 1);
    if (strcmp(argv[1], "export") == 0) return s_export(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'job %s' (create, list, show, cancel, export)",
                    argv[1]);
}
