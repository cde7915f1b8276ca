/*
 * cmd_job_autoc.c: `condenser job create --kind autocompress` and `condenser job candidates`,
 * the federation operator's side of a federated AutoCompress search (coord_autoc.h).
 *
 * create: reads the candidates (compressed from the teacher on public data: .cnd models, e.g.
 * from `condenser prune`, or .cndq integer artifacts, e.g. from `condenser autocompress`, loaded
 * and self-tested here), checks that they share one input shape and class map (and the shipped
 * teacher's), and stores the job (its student version 0 and recipe student are the first .cnd
 * candidate's, else the teacher's), the candidates and the job.create audit entry in one
 * transaction. The running coordinator then runs the job's rounds as evaluation rounds.
 */
#include "audit_entries.h"
#include "cli.h"
#include "commands.h"
#include "coord_admin.h"
#include "coord_autoc.h"
#include "autocompress_fed.h"
#include "digest.h"
#include "fileio.h"
#include "job.h"
#include "json.h"
#include "modelfile.h"
#include "secagg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *dir, *name, *kind, *cands, *teacher, *teacher_local, *labels;
    long rounds, sites, quorum, threshold, cap, dl[4], join, seed;
    int json;
} s_opts_t;

typedef struct {
    uint32_t k;
    uint8_t *blob[CND_AUTOC_FED_MAX];
    size_t len[CND_AUTOC_FED_MAX];
    char name[CND_AUTOC_FED_MAX][CND_AUTOC_NAME_MAX + 1];
    cnd_autoc_fed_info_t info[CND_AUTOC_FED_MAX];
    cnd_model_t *first; /* the first .cnd candidate (index first_idx): the job's student version 0
                           and its recipe's student; NULL when all are .cndq (then the teacher) */
    uint32_t first_idx;
    cnd_model_t *teacher; /* the shipped teacher, parsed */
    uint8_t *tbytes;      /* the shipped teacher */
    size_t tlen;
    char *json; /* the recipe */
} s_new_t;

static void s_new_free(s_new_t *n)
{
    for (uint32_t i = 0; i < n->k; i++) free(n->blob[i]);
    cnd_model_destroy(&n->first);
    cnd_model_destroy(&n->teacher);
    free(n->tbytes);
    free(n->json);
}

int cnd_job_autoc_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--kind") == 0 || strncmp(argv[i], "--kind=", 7) == 0) return 1;
    return 0;
}

static int s_parse(s_opts_t *o, int argc, char **argv)
{
    cnd_job_spec_t d;
    cnd_job_defaults(&d);
    *o = (s_opts_t){.dir = cnd_coord_default_dir(),
                    .name = "",
                    .rounds = 2,
                    .sites = d.sites_per_round,
                    .quorum = -1,
                    .threshold = -1,
                    .cap = d.sample_cap,
                    .dl = {d.deadline_ms[0], d.deadline_ms[1], d.deadline_ms[2], d.deadline_ms[3]},
                    .join = d.join_wait_ms,
                    .seed = (long)d.seed};
    const cnd_opt_t opts[] = {
        {"kind", CND_OPT_STR, &o->kind, "KIND", "autocompress (required here)"},
        {"candidates", CND_OPT_STR, &o->cands, "FILE,FILE,...",
         "the candidates (.cnd models or .cndq artifacts), 1..64, compressed from the teacher "
         "on public data"},
        {"dir", CND_OPT_STR, &o->dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"name", CND_OPT_STR, &o->name, "TEXT", "a label for the job"},
        {"teacher", CND_OPT_STR, &o->teacher, "FILE", "the teacher (.cnd) shipped to the sites"},
        {"teacher-local", CND_OPT_STR, &o->teacher_local, "NAME", "or: each site's own teacher"},
        {"labels", CND_OPT_STR, &o->labels, "A,B,...",
         "class names (default: the candidates' or the teacher's, else 0..K-1)"},
        {"rounds", CND_OPT_INT, &o->rounds, "N",
         "evaluation rounds (default 2): after each but the last the better half stays", 1, 100},
        {"sites", CND_OPT_INT, &o->sites, "N", "sites per round (default 3)", 2, 512},
        {"quorum", CND_OPT_INT, &o->quorum, "N", "fewest surviving sites of a round", 2, 512},
        {"threshold", CND_OPT_INT, &o->threshold, "T", "SecAgg+ threshold", 2, 512},
        {"sample-cap", CND_OPT_INT, &o->cap, "W",
         "validation samples counted per site at most (default 20000)", 1, 4e9},
        {"advertise-ms", CND_OPT_INT, &o->dl[0], "MS", "key advertisement deadline", 100, 86400000},
        {"share-ms", CND_OPT_INT, &o->dl[1], "MS", "key sharing deadline", 100, 86400000},
        {"masked-ms", CND_OPT_INT, &o->dl[2], "MS", "evaluation and masked counts deadline", 100,
         86400000},
        {"unmask-ms", CND_OPT_INT, &o->dl[3], "MS", "unmasking deadline", 100, 86400000},
        {"join-wait-ms", CND_OPT_INT, &o->join, "MS",
         "wait this long for --sites sites before starting with a quorum", 0, 86400000},
        {"seed", CND_OPT_INT, &o->seed, "S", "site selection seed (default 1)", 0, 1e15},
        {"json", CND_OPT_FLAG, &o->json, NULL, "print the new job as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser job create --kind autocompress --candidates FILE,... (--teacher FILE | "
        "--teacher-local NAME) [options]",
        "Creates a federated AutoCompress search: every round, each selected site evaluates the "
        "candidates still in the race on its validation split and sends its counts masked "
        "(SecAgg+); the coordinator learns each candidate's accuracy summed over the sites, never "
        "one site's. Successive halving keeps the better half after every round but the last; "
        "the best remaining candidate becomes the job's model (job export).",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 1 : rc;
    if (!o->kind || strcmp(o->kind, "autocompress") != 0)
        return cnd_errf(CND_EINVAL,
                        "--kind '%s': only autocompress (omit --kind for a training "
                        "job)",
                        o->kind ? o->kind : "");
    if (!o->cands) return cnd_errf(CND_EINVAL, "--candidates FILE,... is required");
    if (!o->teacher == !o->teacher_local)
        return cnd_errf(CND_EINVAL, "give exactly one of --teacher FILE or --teacher-local NAME");
    if (strlen(o->name) > CND_NAME_MAX) return cnd_errf(CND_EINVAL, "--name: at most 63 bytes");
    return 0;
}

/* Reads the candidates of --candidates; each must match candidate 0's input and classes. */
static int s_read_candidates(s_new_t *n, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy) return cnd_errf(CND_ENOMEM, "--candidates: out of memory");
    int rc = 0;
    for (char *f = strtok_r(copy, ",", &save); f && !rc; f = strtok_r(NULL, ",", &save)) {
        if (n->k == CND_AUTOC_FED_MAX) {
            rc = cnd_errf(CND_EINVAL, "--candidates: more than %d files", CND_AUTOC_FED_MAX);
            break;
        }
        uint32_t i = n->k;
        if ((rc = cnd_file_read(f, CND_CSTORE_MODEL_MAX, &n->blob[i], &n->len[i]))) break;
        n->k++;
        const char *base = strrchr(f, '/');
        snprintf(n->name[i], sizeof n->name[i], "%s", base ? base + 1 : f);
        /* a .cnd model or a .cndq artifact (loaded and self-tested) */
        cnd_autoc_fed_info_t *x = &n->info[i], *a = &n->info[0];
        if ((rc = cnd_autoc_fed_inspect(x, n->blob[i], n->len[i], f))) break;
        if (x->in.c != a->in.c || x->in.h != a->in.h || x->in.w != a->in.w ||
            x->classes != a->classes) {
            rc = cnd_errf(CND_EINVAL, "candidate %s (%dx%dx%d -> %d) differs from %s", f, x->in.c,
                          x->in.h, x->in.w, x->classes, n->name[0]);
            break;
        }
        if (x->artifact) continue;
        cnd_model_t *m = NULL;
        if ((rc = cnd_model_deserialize(&m, n->blob[i], n->len[i], f))) break;
        const char *la = n->first ? cnd_model_meta_get(n->first, "labels") : NULL,
                   *lm = cnd_model_meta_get(m, "labels");
        if (la && lm && strcmp(la, lm) != 0)
            rc = cnd_errf(CND_EINVAL, "candidate %s: its classes differ from %s's", f,
                          n->name[n->first_idx]);
        if (!n->first && !rc) {
            n->first = m;
            n->first_idx = i;
        } else {
            cnd_model_destroy(&m);
        }
    }
    free(copy);
    if (!rc && n->k == 0) rc = cnd_errf(CND_EINVAL, "--candidates: no file given");
    return rc;
}

/* The teacher (shipped) checked against the candidates' input and classes; its labels. */
static int s_teacher(s_new_t *n, const s_opts_t *o, const char **labels)
{
    int rc = cnd_file_read(o->teacher, CND_CSTORE_MODEL_MAX, &n->tbytes, &n->tlen);
    if (!rc) rc = cnd_model_deserialize(&n->teacher, n->tbytes, n->tlen, o->teacher);
    if (rc) return rc;
    const cnd_model_t *t = n->teacher;
    const cnd_autoc_fed_info_t *a = &n->info[0];
    if (t->in.c != a->in.c || t->in.h != a->in.h || t->in.w != a->in.w ||
        t->n_classes != a->classes)
        return cnd_errf(CND_EINVAL,
                        "the teacher %s does not take the candidates' inputs and "
                        "classes",
                        o->teacher);
    const char *tl = cnd_model_meta_get(t, "labels");
    if (!*labels && tl) *labels = tl;
    if (tl && *labels && strcmp(tl, *labels) != 0)
        return cnd_errf(CND_EINVAL, "the teacher's classes are not the candidates'");
    return 0;
}

/* The recipe: the first .cnd candidate (else the .cnd teacher) as the student, the class map. */
static int s_recipe(cnd_job_spec_t *j, s_new_t *n, const s_opts_t *o)
{
    cnd_job_defaults(j);
    snprintf(j->name, sizeof j->name, "%s", o->name);
    const char *labels = o->labels  ? o->labels
                         : n->first ? cnd_model_meta_get(n->first, "labels")
                                    : NULL;
    int rc = 0;
    if (o->teacher) {
        if ((rc = s_teacher(n, o, &labels))) return rc;
        j->teacher_shipped = 1;
    } else {
        snprintf(j->teacher_local, sizeof j->teacher_local, "%s", o->teacher_local);
    }
    const cnd_model_t *s = n->first ? n->first : n->teacher;
    if (!s)
        return cnd_errf(CND_EINVAL, "every candidate is a .cndq artifact: give at least one .cnd "
                                    "candidate or a .cnd --teacher (the job's student fields)");
    snprintf(j->arch, sizeof j->arch, "%s", s->spec);
    j->in_c = (uint32_t)s->in.c;
    j->in_h = (uint32_t)s->in.h;
    j->in_w = (uint32_t)s->in.w;
    j->classes = (uint32_t)s->n_classes;
    if (labels && strlen(labels) < sizeof j->labels)
        snprintf(j->labels, sizeof j->labels, "%s", labels);
    else
        cnd_classmap_default(j->labels, sizeof j->labels, (int)j->classes);
    j->rounds = (uint32_t)o->rounds;
    j->sites_per_round = (uint32_t)o->sites;
    uint32_t deg = cnd_secagg_default_degree(j->sites_per_round);
    if (deg > j->sites_per_round - 1) deg = j->sites_per_round - 1;
    j->threshold = o->threshold > 0 ? (uint32_t)o->threshold : (deg + 1) / 2 + 1;
    uint32_t maj = j->sites_per_round / 2 + 1;
    j->quorum = o->quorum > 0 ? (uint32_t)o->quorum : j->threshold > maj ? j->threshold : maj;
    j->sample_cap = (uint32_t)o->cap;
    for (int i = 0; i < 4; i++) j->deadline_ms[i] = (uint32_t)o->dl[i];
    j->join_wait_ms = (uint32_t)o->join;
    j->seed = (uint64_t)o->seed;
    return cnd_job_check(j);
}

/* Job, student version 0 (candidate 0), candidates and audit entries in one transaction. */
static int s_store(int64_t *id, cnd_coord_t *c, const s_new_t *n, const char *name)
{
    /* student version 0: the first .cnd candidate, else the teacher (s_recipe) */
    const uint8_t *sbytes = n->first ? n->blob[n->first_idx] : n->tbytes;
    size_t slen = n->first ? n->len[n->first_idx] : n->tlen;
    int rc = cnd_cstore_begin(c->store);
    if (rc) return rc;
    rc = cnd_autoc_init(cnd_cstore_db(c->store));
    if (!rc)
        rc = cnd_cstore_job_create(c->store, id, name, n->json, n->tbytes, n->tlen, sbytes, slen);
    for (uint32_t i = 0; !rc && i < n->k; i++)
        rc = cnd_autoc_put(c->store, *id, i, n->name[i], n->blob[i], n->len[i]);
    uint8_t teacher[32], student[32];
    if (n->tbytes) cnd_sha256(teacher, n->tbytes, n->tlen);
    cnd_sha256(student, sbytes, slen);
    cnd_audit_job_create_t e = {.job = *id,
                                .name = name,
                                .recipe_json = n->json,
                                .teacher = n->tbytes ? teacher : NULL,
                                .student_init = student};
    if (!rc) rc = cnd_audit_log_job_create(c->audit, cnd_coord_operator(), &e);
    char jid[32];
    snprintf(jid, sizeof jid, "%lld", (long long)*id);
    if (!rc) rc = cnd_coord_admin_log(c, "job.create", jid, jid, "ok");
    if (!rc)
        rc = cnd_cstore_commit(c->store);
    else
        cnd_cstore_rollback(c->store);
    return rc;
}

static void s_print_created(int64_t id, const s_new_t *n, const cnd_job_spec_t *j, int json)
{
    char hex[65];
    uint8_t d[32];
    if (!json) {
        printf("job %lld created: autocompress search over %u candidates, %u rounds of %u "
               "sites\n",
               (long long)id, n->k, j->rounds, j->sites_per_round);
        for (uint32_t i = 0; i < n->k; i++) {
            cnd_sha256(d, n->blob[i], n->len[i]);
            printf("candidate %u: %s, %zu bytes, sha256:%s\n", i, n->name[i], n->len[i],
                   cnd_hex(hex, d, 32));
        }
        return;
    }
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "job");
    cnd_jw_int(&w, id);
    cnd_jw_key(&w, "kind");
    cnd_jw_str(&w, "autocompress");
    cnd_jw_key(&w, "rounds");
    cnd_jw_int(&w, j->rounds);
    cnd_jw_key(&w, "sites_per_round");
    cnd_jw_int(&w, j->sites_per_round);
    cnd_jw_key(&w, "candidates");
    cnd_jw_arr(&w);
    for (uint32_t i = 0; i < n->k; i++) {
        cnd_sha256(d, n->blob[i], n->len[i]);
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "index");
        cnd_jw_int(&w, i);
        cnd_jw_key(&w, "name");
        cnd_jw_str(&w, n->name[i]);
        cnd_jw_key(&w, "size");
        cnd_jw_int(&w, (int64_t)n->len[i]);
        cnd_jw_key(&w, "sha256");
        cnd_jw_str(&w, cnd_hex(hex, d, 32));
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    printf("%s\n", cnd_jw_text(&w));
    cnd_jw_free(&w);
}

int cnd_job_autoc_create(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse(&o, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    s_new_t n;
    memset(&n, 0, sizeof n);
    cnd_coord_t c;
    memset(&c, 0, sizeof c);
    cnd_job_spec_t j;
    if ((rc = s_read_candidates(&n, o.cands))) goto done;
    if ((rc = s_recipe(&j, &n, &o))) goto done;
    if ((rc = cnd_job_to_json(&n.json, &j))) goto done;
    if ((rc = cnd_coord_open(&c, o.dir, 1))) goto done;
    int64_t id = 0;
    if ((rc = s_store(&id, &c, &n, o.name))) goto done;
    s_print_created(id, &n, &j, o.json);
done:
    cnd_coord_close(&c);
    s_new_free(&n);
    return rc;
}

/* --- job candidates ------------------------------------------------------------------------- */

static void s_show_json(cnd_coord_t *c, int64_t job, const cnd_autoc_cand_t *l, size_t n,
                        uint32_t rounds, int picked, uint32_t pick)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "job");
    cnd_jw_int(&w, job);
    cnd_jw_key(&w, "picked");
    if (picked)
        cnd_jw_int(&w, pick);
    else
        cnd_jw_null(&w);
    cnd_jw_key(&w, "candidates");
    cnd_jw_arr(&w);
    char hex[65];
    for (size_t i = 0; i < n; i++) {
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "index");
        cnd_jw_int(&w, l[i].idx);
        cnd_jw_key(&w, "name");
        cnd_jw_str(&w, l[i].name);
        cnd_jw_key(&w, "size");
        cnd_jw_int(&w, (int64_t)l[i].size);
        cnd_jw_key(&w, "sha256");
        cnd_jw_str(&w, cnd_hex(hex, l[i].digest, 32));
        cnd_jw_key(&w, "alive");
        cnd_jw_bool(&w, l[i].alive);
        cnd_jw_key(&w, "validated");
        cnd_jw_int(&w, (int64_t)l[i].validated);
        cnd_jw_key(&w, "correct");
        cnd_jw_int(&w, (int64_t)l[i].correct);
        cnd_jw_key(&w, "accuracy");
        if (l[i].validated)
            cnd_jw_double(&w, (double)l[i].correct / (double)l[i].validated);
        else
            cnd_jw_null(&w);
        cnd_jw_key(&w, "rounds");
        cnd_jw_arr(&w);
        for (uint32_t r = 1; r <= rounds; r++) {
            uint64_t v, k;
            if (cnd_autoc_result(c->store, job, r, l[i].idx, &v, &k)) {
                cnd_err_clear();
                continue;
            }
            cnd_jw_obj(&w);
            cnd_jw_key(&w, "round");
            cnd_jw_int(&w, r);
            cnd_jw_key(&w, "validated");
            cnd_jw_int(&w, (int64_t)v);
            cnd_jw_key(&w, "correct");
            cnd_jw_int(&w, (int64_t)k);
            cnd_jw_obj_end(&w);
        }
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    printf("%s\n", cnd_jw_text(&w));
    cnd_jw_free(&w);
}

static void s_show_text(int64_t job, const cnd_autoc_cand_t *l, size_t n, int picked, uint32_t pick)
{
    printf("job %lld: %zu candidates (accuracy = secure sums of the sites' counts)\n",
           (long long)job, n);
    printf("%5s  %-28s %9s %6s %10s %10s %9s\n", "index", "name", "bytes", "alive", "validated",
           "correct", "accuracy");
    for (size_t i = 0; i < n; i++) {
        char acc[32] = "-";
        if (l[i].validated)
            snprintf(acc, sizeof acc, "%.4f", (double)l[i].correct / (double)l[i].validated);
        printf("%5u  %-28.28s %9llu %6s %10llu %10llu %9s%s\n", l[i].idx, l[i].name,
               (unsigned long long)l[i].size, l[i].alive ? "yes" : "no",
               (unsigned long long)l[i].validated, (unsigned long long)l[i].correct, acc,
               picked && pick == l[i].idx ? "  <- best" : "");
    }
}

int cnd_job_autoc_show(int argc, char **argv)
{
    const char *dir = cnd_coord_default_dir();
    int json = 0;
    const cnd_opt_t opts[] = {
        {"dir", CND_OPT_STR, &dir, "DIR",
         "coordinator directory (default $CND_COORDINATOR_DIR or .)"},
        {"json", CND_OPT_FLAG, &json, NULL, "as JSON, with each round's sums"},
        {0}};
    const cnd_cli_t cli = {"condenser job candidates JOB [--json]",
                           "Shows an autocompress job's candidates: which are still in the race, "
                           "their validation counts summed securely over the sites, and the best.",
                           opts, 1, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    char *end = NULL;
    long long job = strtoll(pos[0], &end, 10);
    if (!end || *end || job <= 0)
        return cnd_errf(CND_EINVAL, "JOB '%s': expected a job id", pos[0]);
    cnd_coord_t c;
    if ((rc = cnd_coord_open(&c, dir, 0))) return rc;
    cnd_autoc_cand_t *l = NULL;
    size_t n = 0;
    cnd_job_rec_t jr;
    cnd_job_spec_t j;
    memset(&jr, 0, sizeof jr);
    rc = cnd_cstore_job_get(c.store, job, &jr);
    if (!rc) rc = cnd_job_from_json(&j, jr.spec_json);
    if (!rc) rc = cnd_autoc_list(c.store, job, &l, &n);
    if (!rc && n == 0) rc = cnd_errf(CND_ENOTFOUND, "job %lld is not an autocompress job", job);
    if (!rc) {
        uint32_t pick = 0;
        int picked = cnd_autoc_pick(c.store, job, &pick) == 0;
        cnd_err_clear();
        if (json)
            s_show_json(&c, job, l, n, j.rounds, picked, pick);
        else
            s_show_text(job, l, n, picked, pick);
    }
    if (jr.spec_json) cnd_job_rec_free(&jr);
    free(l);
    cnd_coord_close(&c);
    return rc;
}
