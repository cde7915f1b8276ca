/*
 * cmd_job.c: `condenser job create|list|show|cancel|export`, the federation operator's view of
 * compression jobs. `create` checks the recipe (proto/job.h), builds the initial student from
 * its architecture (input shape, classes and input normalisation from the shipped teacher, or
 * from --input/--classes for a site-local teacher), and stores job, teacher and student version
 * 0 with their job.create audit entry in one transaction. The running coordinator picks the job
 * up by itself.
 */
#include "audit_actions.h"
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "coord_quant.h"
#include "job.h"
#include "quant_fed.h"
#include "rng.h"
#include "digest.h"
#include "fileio.h"
#include "modelfile.h"
#include "secagg.h"

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

static int s_create(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir(), *name = "", *arch = NULL, *teacher = NULL;
    const char *teacher_local = NULL, *init = NULL, *input = NULL, *calib = NULL;
    cnd_job_spec_t j;
    cnd_job_defaults(&j);
    long classes = 0, qat = j.qat_rounds, wbits = j.weight_bits, abits = j.act_bits;
    long epochs = j.local_epochs, batch = j.batch, rounds = j.rounds, sites = j.sites_per_round;
    long quorum = -1, threshold = -1, neighbours = 0, cap = j.sample_cap, vbits = j.value_bits;
    long dl_adv = j.deadline_ms[0], dl_share = j.deadline_ms[1], dl_masked = j.deadline_ms[2];
    long dl_unmask = j.deadline_ms[3], join = j.join_wait_ms, seed = (long)j.seed;
    long calib_n = CND_FEDQ_CALIB_MAX;
    double T = j.temperature, alpha = j.alpha, lr = j.lr, clip = j.clip, l2 = j.l2_clip;
    double slr = j.server_lr, mom = j.server_momentum;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
        {"name", CND_OPT_STR, &name, "TEXT", "a label for the job"},
        {"student-arch", CND_OPT_STR, &arch, "SPEC",
         "student architecture (required unless --student-init)"},
        {"student-init", CND_OPT_STR, &init, "FILE", "or: start from this student model (.cnd)"},
        {"teacher", CND_OPT_STR, &teacher, "FILE", "teacher model (.cnd) shipped to the sites"},
        {"teacher-local", CND_OPT_STR, &teacher_local, "NAME",
         "or: each site's own teacher NAME (never leaves the site)"},
        {"input", CND_OPT_STR, &input, "C,H,W",
         "input shape (only with --teacher-local and --student-arch)"},
        {"classes", CND_OPT_INT, &classes, "K",
         "classes (only with --teacher-local and --student-arch)", 2, 256},
        {"temperature", CND_OPT_DBL, &T, "T", "distillation temperature (default 4)", 0.05, 100},
        {"alpha", CND_OPT_DBL, &alpha, "A", "weight of the teacher's soft targets (default 0.5)", 0,
         1},
        {"calib-data", CND_OPT_STR, &calib, "SPEC",
         "PUBLIC data (never a site's) to calibrate the int8 artifact; without it the job ends "
         "with a float model only"},
        {"calib-samples", CND_OPT_INT, &calib_n, "N",
         "calibration samples to keep (default and at most 500)", 1, CND_FEDQ_CALIB_MAX},
        {"qat-rounds", CND_OPT_INT, &qat, "N",
         "train the last N rounds with fake quantization (default 0; needs --calib-data)", 0,
         100000},
        {"weight-bits", CND_OPT_INT, &wbits, "B", "weight bits of the artifact (default 8)", 2, 8},
        {"act-bits", CND_OPT_INT, &abits, "B", "activation bits (default 8)", 2, 8},
        {"local-epochs", CND_OPT_INT, &epochs, "N", "local epochs per round (default 1)", 1, 1000},
        {"batch", CND_OPT_INT, &batch, "B", "local batch size (default 64)", 1, 65536},
        {"lr", CND_OPT_DBL, &lr, "X", "local Adam learning rate (default 1e-3)", 1e-9, 10},
        {"rounds", CND_OPT_INT, &rounds, "N", "federated rounds (default 10)", 1, 100000},
        {"sites", CND_OPT_INT, &sites, "N", "sites per round (default 3)", 2, 512},
        {"quorum", CND_OPT_INT, &quorum, "N",
         "fewest surviving sites for a round: a strict majority of --sites and at least the "
         "threshold (default: the smallest such)",
         2, 512},
        {"threshold", CND_OPT_INT, &threshold, "T",
         "SecAgg+ threshold (default: majority of a neighbourhood)", 2, 512},
        {"neighbours", CND_OPT_INT, &neighbours, "K",
         "SecAgg+ neighbours per site (default 2 log2 n)", 0, 511},
        {"clip", CND_OPT_DBL, &clip, "C", "per-coordinate clip of an update (default 0.05)", 1e-9,
         1e6},
        {"l2-clip", CND_OPT_DBL, &l2, "C", "L2 clip of an update (default none)", 0, 1e9},
        {"sample-cap", CND_OPT_INT, &cap, "W", "samples counted per site at most (default 20000)",
         1, 4e9},
        {"value-bits", CND_OPT_INT, &vbits, "Q", "bits per update coordinate (default 8)", 2, 24},
        {"advertise-ms", CND_OPT_INT, &dl_adv, "MS",
         "deadline of the key advertisement phase (default 10000)", 100, 86400000},
        {"share-ms", CND_OPT_INT, &dl_share, "MS",
         "deadline of the key sharing phase (default 10000)", 100, 86400000},
        {"masked-ms", CND_OPT_INT, &dl_masked, "MS",
         "deadline for training and the masked update (default 600000)", 100, 86400000},
        {"unmask-ms", CND_OPT_INT, &dl_unmask, "MS",
         "deadline of the unmasking phase (default 10000)", 100, 86400000},
        {"server-lr", CND_OPT_DBL, &slr, "X",
         "server learning rate on the averaged update (default 1)", 1e-6, 100},
        {"server-momentum", CND_OPT_DBL, &mom, "M", "server momentum (default 0: plain FedAvg)", 0,
         0.999},
        {"join-wait-ms", CND_OPT_INT, &join, "MS",
         "wait this long for --sites sites before starting with a quorum (default 30000)", 0,
         86400000},
        {"seed", CND_OPT_INT, &seed, "S",
         "seed for the student's initial weights and site selection (default 1)", 0, 1e15},
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
    if (rc) return rc > 0 ? 0 : rc;
    if (!teacher == !teacher_local)
        return cnd_errf(CND_EINVAL, "give exactly one of --teacher FILE or --teacher-local NAME");
    if (!arch == !init)
        return cnd_errf(CND_EINVAL,
                        "give exactly one of --student-arch SPEC or --student-init FILE");
    if (strlen(name) > CND_NAME_MAX) return cnd_errf(CND_EINVAL, "--name: at most 63 bytes");
    snprintf(j.name, sizeof j.name, "%s", name);
    j.teacher_shipped = teacher != NULL;
    if (teacher_local) snprintf(j.teacher_local, sizeof j.teacher_local, "%s", teacher_local);
    j.temperature = (float)T;
    j.alpha = (float)alpha;
    j.qat_rounds = (uint32_t)qat;
    j.weight_bits = (uint32_t)wbits;
    j.act_bits = (uint32_t)abits;
    j.local_epochs = (uint32_t)epochs;
    j.batch = (uint32_t)batch;
    j.lr = (float)lr;
    j.rounds = (uint32_t)rounds;
    j.sites_per_round = (uint32_t)sites;
    j.neighbours = (uint32_t)neighbours;
    if (threshold < 0) {
        /* a strict majority of each SecAgg+ neighbourhood (crypto/secagg.h) */
        uint32_t d = neighbours ? (uint32_t)neighbours : cnd_secagg_default_degree((uint32_t)sites);
        if (d > (uint32_t)sites - 1) d = (uint32_t)sites - 1;
        threshold = (d + 1) / 2 + 1;
    }
    j.threshold = (uint32_t)threshold;
    if (quorum < 0) /* at least the threshold and a strict majority of the round's sites */
        quorum = threshold > sites / 2 + 1 ? threshold : sites / 2 + 1;
    j.quorum = (uint32_t)quorum;
    j.clip = (float)clip;
    j.l2_clip = (float)l2;
    j.sample_cap = (uint32_t)cap;
    j.value_bits = (uint32_t)vbits;
    j.deadline_ms[0] = (uint32_t)dl_adv;
    j.deadline_ms[1] = (uint32_t)dl_share;
    j.deadline_ms[2] = (uint32_t)dl_masked;
    j.deadline_ms[3] = (uint32_t)dl_unmask;
    j.server_lr = (float)slr;
    j.server_momentum = (float)mom;
    j.join_wait_ms = (uint32_t)join;
    j.seed = (uint64_t)seed;
    if (j.qat_rounds > 0 && !calib)
        return cnd_errf(CND_EINVAL, "--qat-rounds needs --calib-data: the coordinator calibrates "
                                    "the quantizer on public samples before each QAT round");

    cnd_model_t *t = NULL, *s = NULL;
    cnd_dataset_t *cal = NULL;
    uint8_t *tbytes = NULL, *sbytes = NULL;
    size_t tlen = 0, slen = 0;
    char *json = NULL;
    cnd_coord_t c;
    memset(&c, 0, sizeof c);
    if (teacher) {
        if ((rc = cnd_file_read(teacher, CND_CSTORE_MODEL_MAX, &tbytes, &tlen))) goto done;
        if ((rc = cnd_model_deserialize(&t, tbytes, tlen, teacher))) goto done;
    }
    if (init) {
        if ((rc = cnd_model_load(&s, init))) goto done;
    } else {
        cnd_shape_t in;
        if (t) {
            in = t->in;
            if (input || classes)
                fprintf(stderr, "note: --input/--classes ignored: taken from the teacher\n");
            classes = t->n_classes;
        } else {
            if (!input || !classes) {
                rc = cnd_errf(CND_EINVAL,
                              "--input C,H,W and --classes K are needed with --teacher-local");
                goto done;
            }
            uint32_t a = 0, b = 0, d = 0;
            if ((rc = s_parse_shape(input, &a, &b, &d))) goto done;
            in.c = (int)a;
            in.h = (int)b;
            in.w = (int)d;
        }
        if ((rc = cnd_model_new(&s, arch, in, (uint64_t)seed))) goto done;
        if (t)
            for (int i = 0; i < in.c; i++) {
                s->norm_mean[i] = t->norm_mean[i];
                s->norm_std[i] = t->norm_std[i];
            }
    }
    if (t && (t->in.c != s->in.c || t->in.h != s->in.h || t->in.w != s->in.w ||
              t->n_classes != s->n_classes)) {
        rc = cnd_errf(CND_EINVAL,
                      "the student (%dx%dx%d -> %d) does not match the teacher "
                      "(%dx%dx%d -> %d)",
                      s->in.c, s->in.h, s->in.w, s->n_classes, t->in.c, t->in.h, t->in.w,
                      t->n_classes);
        goto done;
    }
    snprintf(j.arch, sizeof j.arch, "%s", s->spec);
    j.in_c = (uint32_t)s->in.c;
    j.in_h = (uint32_t)s->in.h;
    j.in_w = (uint32_t)s->in.w;
    j.classes = (uint32_t)s->n_classes;
    if ((rc = cnd_job_check(&j))) goto done;
    if (calib) {
        if ((rc = cnd_fedq_check(s, (int)j.weight_bits, (int)j.act_bits, j.qat_rounds > 0)))
            goto done;
        cnd_dataset_t *all = NULL;
        if ((rc = cnd_data_open(&all, calib, "train"))) goto done;
        if (cnd_shape_size(all->shape) != cnd_shape_size(s->in)) {
            rc = cnd_errf(CND_EINVAL,
                          "--calib-data %s: samples are %dx%dx%d, the student takes "
                          "%dx%dx%d",
                          calib, all->shape.c, all->shape.h, all->shape.w, s->in.c, s->in.h,
                          s->in.w);
            cnd_data_destroy(&all);
            goto done;
        }
        /* a seeded sample, so the job is reproducible */
        uint32_t *idx = malloc(all->n * sizeof *idx);
        if (!idx) {
            cnd_data_destroy(&all);
            rc = CND_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < all->n; i++) idx[i] = (uint32_t)i;
        cnd_rng_t rng;
        cnd_rng_seed(&rng, (uint64_t)seed ^ 0xca11b);
        cnd_rng_shuffle_u32(&rng, idx, all->n);
        rc = cnd_data_subset(&cal, all, idx, (size_t)calib_n < all->n ? (size_t)calib_n : all->n);
        free(idx);
        cnd_data_destroy(&all);
        if (rc) goto done;
    } else if (j.qat_rounds == 0) {
        cnd_err_clear();
    }
    if ((rc = cnd_model_meta_set(s, "job", name))) goto done;
    if ((rc = cnd_model_serialize(s, &sbytes, &slen))) goto done;
    if ((rc = cnd_job_to_json(&json, &j))) goto done;
    if ((rc = cnd_coord_open(&c, dir, 1))) goto done;
    int64_t id = 0;
    if ((rc = cnd_cstore_begin(c.store))) goto done;
    rc = cnd_cstore_job_create(c.store, &id, name, json, tbytes, tlen, sbytes, slen);
    if (!rc && cal) rc = cnd_cstore_calib_put(c.store, id, cal);
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)id);
    if (!rc) {
        cnd_jw_t w;
        cnd_jw_init(&w);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "name");
        cnd_jw_str(&w, name);
        cnd_jw_key(&w, "recipe");
        cnd_jw_raw(&w, json);
        cnd_jw_key(&w, "calibration_samples");
        cnd_jw_int(&w, cal ? (int64_t)cal->n : 0);
        cnd_jw_obj_end(&w);
        cnd_audit_digest_t dg[2];
        size_t nd = 0;
        if (tbytes) {
            dg[nd].name = "teacher";
            cnd_sha256(dg[nd++].sha256, tbytes, tlen);
        }
        dg[nd].name = "student_init";
        cnd_sha256(dg[nd++].sha256, sbytes, slen);
        cnd_audit_rec_t r = {.actor = cnd_coord_operator(),
                             .action = CND_AUDIT_JOB_CREATE,
                             .subject = jid,
                             .job = jid,
                             .details = cnd_jw_text(&w),
                             .digests = dg,
                             .n_digests = nd};
        rc = cnd_audit_append(c.audit, &r, NULL);
        cnd_jw_free(&w);
    }
    if (!rc) rc = cnd_coord_admin_log(&c, "job.create", argc, argv, jid, jid, "ok");
    if (!rc)
        rc = cnd_cstore_commit(c.store);
    else
        cnd_cstore_rollback(c.store);
    if (!rc) {
        char hex[65];
        printf("job %lld created: %s, %u rounds of %u sites, student %zu parameters%s\n",
               (long long)id, j.arch, j.rounds, j.sites_per_round, s->num_params,
               tbytes ? ", teacher shipped" : ", site-local teacher");
        uint8_t d[32];
        cnd_sha256(d, sbytes, slen);
        printf("student v0 sha256:%s\n", cnd_hex(hex, d, 32));
        if (cal)
            printf("int8 artifact at the end: %zu public calibration samples from %s%s\n", cal->n,
                   calib ? calib : "", j.qat_rounds ? ", QAT in the last rounds" : "");
    }
done:
    cnd_coord_close(&c);
    cnd_data_destroy(&cal);
    cnd_model_destroy(&t);
    cnd_model_destroy(&s);
    free(tbytes);
    free(sbytes);
    free(json);
    return rc;
}

static int s_list(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help}, {0}};
    const cnd_cli_t cli = {"condenser job list [--dir DIR]", "Lists jobs, newest first.", opts, 0,
                           0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_job_rec_t *l = NULL;
    size_t n = 0;
    if (!(rc = cnd_cstore_jobs(c.store, &l, &n))) {
        printf("%-5s %-10s %-7s %-20s %s\n", "id", "state", "rounds", "created", "name");
        for (size_t i = 0; i < n; i++) {
            uint32_t next = 1, att = 1;
            if (cnd_cstore_round_next(c.store, l[i].id, &next, &att)) next = 1;
            cnd_job_spec_t j;
            uint32_t total = cnd_job_from_json(&j, l[i].spec_json) ? 0 : j.rounds;
            char t[32], r[24];
            cnd_iso8601(t, l[i].created_ms / 1000);
            snprintf(r, sizeof r, "%u/%u", next - 1, total);
            printf("%-5lld %-10s %-7s %-20s %s\n", (long long)l[i].id, l[i].state, r, t, l[i].name);
            cnd_job_rec_free(&l[i]);
        }
        free(l);
        cnd_err_clear();
    }
    cnd_coord_close(&c);
    return rc;
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

static int s_show(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    const cnd_opt_t opts[] = {{"dir", CND_OPT_STR, &dir, "DIR", s_dir_help},
                              {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
                              {0}};
    const cnd_cli_t cli = {"condenser job show ID [--dir DIR] [--json]",
                           "Shows a job: its recipe, every round (phase, outcome, participants, "
                           "metrics, time per phase) and its model versions with digests.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    char *end;
    long long id = strtoll(pos[0], &end, 10);
    if (*end || id <= 0) return cnd_errf(CND_EINVAL, "'%s' is not a job id", pos[0]);
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_job_rec_t job;
    cnd_round_rec_t *rounds = NULL;
    cnd_model_rec_t *models = NULL;
    size_t nr = 0, nm = 0;
    memset(&job, 0, sizeof job);
    if ((rc = cnd_cstore_job_get(c.store, id, &job)) ||
        (rc = cnd_cstore_rounds(c.store, id, &rounds, &nr)) ||
        (rc = s_all_models(c.store, id, &models, &nm)))
        goto done;
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "id");
    cnd_jw_int(&w, id);
    cnd_jw_key(&w, "name");
    cnd_jw_str(&w, job.name);
    cnd_jw_key(&w, "state");
    cnd_jw_str(&w, job.state);
    cnd_jw_key(&w, "reason");
    cnd_jw_str(&w, job.reason);
    cnd_jw_key(&w, "recipe");
    cnd_jw_raw(&w, job.spec_json);
    cnd_jw_key(&w, "rounds");
    cnd_jw_arr(&w);
    if (!json) {
        printf("job %lld \"%s\": %s%s%s\n", id, job.name, job.state, job.reason[0] ? ": " : "",
               job.reason);
        printf("recipe %s\n\n", job.spec_json);
        printf("%-6s %-4s %-9s %-10s %-6s %-9s %-8s %-8s %-8s %-8s %s\n", "round", "try", "phase",
               "outcome", "sites", "survived", "acc", "loss", "secagg_s", "total_s", "reason");
    }
    for (size_t i = 0; i < nr; i++) {
        cnd_round_rec_t *r = &rounds[i];
        double acc = 0, loss = 0, ws = 0, sec = cnd_round_secagg_seconds(r);
        double tot = r->ended_ms ? (double)(r->ended_ms - r->started_ms) / 1e3 : 0;
        for (uint32_t k = 0; k < r->n; k++)
            if (r->sites[k].status & CND_RSITE_METRICS) {
                acc += r->sites[k].accuracy * (double)r->sites[k].samples;
                loss += r->sites[k].loss * (double)r->sites[k].samples;
                ws += (double)r->sites[k].samples;
            }
        if (ws > 0) acc /= ws, loss /= ws;
        if (!json) {
            char a[16] = "-", l[16] = "-";
            if (ws > 0) snprintf(a, sizeof a, "%.4f", acc), snprintf(l, sizeof l, "%.4f", loss);
            printf("%-6u %-4u %-9s %-10s %-6u %-9u %-8s %-8s %-8.3f %-8.2f %s\n", r->round,
                   r->attempt, r->phase, r->outcome[0] ? r->outcome : "running", r->n, r->survivors,
                   a, l, sec, tot, r->reason);
        }
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "round");
        cnd_jw_int(&w, r->round);
        cnd_jw_key(&w, "attempt");
        cnd_jw_int(&w, r->attempt);
        cnd_jw_key(&w, "phase");
        cnd_jw_str(&w, r->phase);
        cnd_jw_key(&w, "outcome");
        cnd_jw_str(&w, r->outcome);
        cnd_jw_key(&w, "reason");
        cnd_jw_str(&w, r->reason);
        cnd_jw_key(&w, "survivors");
        cnd_jw_int(&w, r->survivors);
        cnd_jw_key(&w, "model_version");
        cnd_jw_int(&w, r->model_version);
        cnd_jw_key(&w, "seconds");
        cnd_jw_obj(&w);
        static const char *const ph[] = {"advertise", "share", "masked", "consistency", "unmask"};
        for (int k = 0; k < 5; k++) {
            cnd_jw_key(&w, ph[k]);
            cnd_jw_double(&w, r->t_phase[k]);
        }
        cnd_jw_key(&w, "finish");
        cnd_jw_double(&w, r->t_finish);
        cnd_jw_key(&w, "secagg");
        cnd_jw_double(&w, sec);
        cnd_jw_key(&w, "total");
        cnd_jw_double(&w, tot);
        cnd_jw_obj_end(&w);
        cnd_jw_key(&w, "ingress_bytes");
        cnd_jw_int(&w, (int64_t)r->ingress_bytes);
        cnd_jw_key(&w, "sites");
        cnd_jw_arr(&w);
        for (uint32_t k = 0; k < r->n; k++) {
            const cnd_rsite_t *x = &r->sites[k];
            cnd_jw_obj(&w);
            cnd_jw_key(&w, "name");
            cnd_jw_str(&w, x->name);
            cnd_jw_key(&w, "status");
            cnd_jw_int(&w, x->status);
            if (x->status & CND_RSITE_METRICS) {
                cnd_jw_key(&w, "accuracy");
                cnd_jw_double(&w, x->accuracy);
                cnd_jw_key(&w, "loss");
                cnd_jw_double(&w, x->loss);
                cnd_jw_key(&w, "samples");
                cnd_jw_int(&w, (int64_t)x->samples);
                cnd_jw_key(&w, "train_ms");
                cnd_jw_int(&w, x->train_ms);
            }
            cnd_jw_obj_end(&w);
        }
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_key(&w, "models");
    cnd_jw_arr(&w);
    if (!json)
        printf("\n%-8s %-6s %-6s %-10s %-8s %s\n", "version", "round", "format", "bytes", "acc",
               "sha256");
    for (size_t i = 0; i < nm; i++) {
        char hex[65];
        cnd_hex(hex, models[i].digest, 32);
        if (!json)
            printf("%-8lld %-6lld %-6s %-10llu %-8.4f %s\n", (long long)models[i].version,
                   (long long)models[i].round, models[i].format, (unsigned long long)models[i].size,
                   models[i].accuracy, hex);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "version");
        cnd_jw_int(&w, models[i].version);
        cnd_jw_key(&w, "round");
        cnd_jw_int(&w, models[i].round);
        cnd_jw_key(&w, "format");
        cnd_jw_str(&w, models[i].format);
        cnd_jw_key(&w, "size");
        cnd_jw_int(&w, (int64_t)models[i].size);
        cnd_jw_key(&w, "accuracy");
        cnd_jw_double(&w, models[i].accuracy);
        cnd_jw_key(&w, "sha256");
        cnd_jw_str(&w, hex);
        cnd_jw_key(&w, "signed");
        cnd_jw_bool(&w, models[i].manifest != NULL);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    if (json) {
        const char *t = cnd_jw_text(&w);
        if (t)
            printf("%s\n", t);
        else
            rc = cnd_errf(CND_ENOMEM, "job show: out of memory");
    }
    cnd_jw_free(&w);
done:
    for (size_t i = 0; i < nr; i++) cnd_round_rec_free(&rounds[i]);
    for (size_t i = 0; i < nm; i++) cnd_model_rec_free(&models[i]);
    free(rounds);
    free(models);
    cnd_job_rec_free(&job);
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
            cnd_jw_t w;
            cnd_jw_init(&w);
            cnd_jw_obj(&w);
            cnd_jw_key(&w, "state");
            cnd_jw_str(&w, "cancelled");
            cnd_jw_key(&w, "reason");
            cnd_jw_str(&w, reason);
            cnd_jw_obj_end(&w);
            cnd_audit_rec_t r = {.actor = cnd_coord_operator(),
                                 .action = CND_AUDIT_JOB_STATE,
                                 .subject = jid,
                                 .job = jid,
                                 .details = cnd_jw_text(&w)};
            rc = cnd_audit_append(c.audit, &r, NULL);
            cnd_jw_free(&w);
        }
        if (!rc) rc = cnd_coord_admin_log(&c, "job.cancel", argc, argv, jid, jid, "ok");
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
        printf("usage: condenser job create|list|show|cancel|export [options]   (--help after "
               "each)\n");
        return argc < 2 ? cnd_errf(CND_EINVAL,
                                   "a subcommand is required: create, list, show, cancel, export")
                        : 0;
    }
    if (strcmp(argv[1], "create") == 0) return s_create(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0) return s_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0) return s_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "cancel") == 0) return s_cancel(argc - 1, argv + 1);
    if (strcmp(argv[1], "export") == 0) return s_export(argc - 1, argv + 1);
    return cnd_errf(CND_EINVAL, "unknown subcommand 'job %s' (create, list, show, cancel, export)",
                    argv[1]);
}
