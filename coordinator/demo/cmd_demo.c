/*
 * cmd_demo.c: `condenser demo`, the main job end to end on one machine (what scripts/demo runs).
 *
 *   1. Fashion-MNIST: a seeded permutation of the training set; the first --public images are
 *      the "public" set (the teacher's training data and the coordinator's calibration samples),
 *      the rest are private and split among --sites sites with a label-skewed Dirichlet(0.5)
 *      partition. Each site's share is written as its own IDX files in its directory; the agent
 *      holds 5% of it out as the validation split its reported accuracy comes from.
 *   2. The teacher (a CNN) is trained on the public set, in this process: 6 epochs on 20,000
 *      images by default, so that it is clearly stronger than the student distilled from it.
 *   3. The federation, as separate processes of this very executable (/proc/self/exe), with
 *      fresh keys and databases in --workdir: `coordinator init`, `keygen` and `site enroll` for
 *      each site, `job create`, then `coordinator run` and one `agent` per site over loopback
 *      CurveZMQ. Federated distillation rounds with SecAgg+, QAT in the last ones, and the
 *      signed int8 artifact at the end. The student is a small depthwise-separable graph CNN
 *      with a residual add (S_STUDENT; the MLP under --dp-epsilon, as DP-SGD needs a chain).
 *      This process only watches the coordinator's database to show progress.
 *   4. Checks and measurements: the artifact's manifest signature and digest; float and int8
 *      test accuracy; the same student distilled centrally on all private data with the same
 *      number of passes (the reference the federation should approach); bytes each site sent
 *      against the size of its data (from its own egress log); the share of round time spent in
 *      the SecAgg+ phases.
 *   5. The edge fleet (--devices, demo_fleet.h): the signed artifact (v2) rolled out from the
 *      same coordinator directory to simulated devices that run v1 before, a canary and then
 *      exponentially growing waves, health-gated. v1 is an honest earlier version of the same
 *      model: the federation's global model after round 1 (the initial student when there is
 *      only one round), frozen to int8 here exactly as the coordinator freezes its final model
 *      (cnd_fedq_freeze with the job's public calibration samples).
 *   6. The audit: every log verified after the rollout (the coordinator's and each site's, each
 *      against its node's own public key), every site reconciled with the coordinator, and the
 *      job's HTML report (rollout waves included) written to report.html.
 *
 * Everything (databases, keys, logs, data shares, models, artifact) stays in the work directory.
 */
#include "agent_store.h"
#include "artifact.h"
#include "json.h"
#include "audit_log.h"
#include "audit_reconcile.h"
#include "audit_verify.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "coord_admin.h"
#include "coord_quant.h"
#include "coord_store.h"
#include "audit_report.h"
#include "bytes.h"
#include "demo_fleet.h"
#include "data.h"
#include "digest.h"
#include "distill.h"
#include "fileio.h"
#include "identity.h"
#include "manifest.h"
#include "modelfile.h"
#include "proc.h"
#include "progress.h"
#include "quant_eval.h"
#include "rng.h"
#include "secagg.h"
#include "train.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_TEACHER                                                                                  \
    "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dense(128) "    \
    "relu dense(10)"
/* The student: an edge-grade graph CNN (issue 16), depthwise-separable with a residual add and
 * no batchnorm (federated QAT rounds need none): a stride-2 stem, a depthwise-separable block
 * added back onto it, an expanding 1x1 and a stride-2 depthwise-separable block, 18,202
 * parameters, 0.29 MMAC per image. Measured choices in docs/benchmarks.md ("Federation"). */
#define S_STUDENT                                                                                  \
    "stem=conv2d(16,3,stride=2,pad=1) relu6 dwconv(3,pad=1) relu6 conv2d(16,1) add(@stem) "        \
    "conv2d(32,1) relu6 dwconv(3,stride=2,pad=1) relu6 conv2d(32,1) relu6 flatten dense(10)"
/* Under --dp-epsilon without --student: DP-SGD's per-sample gradients walk a chain, so the
 * private job keeps the MLP student it was measured with (docs/privacy.md) */
#define S_DP_STUDENT "flatten dense(128) relu dense(10)"
#define S_MAX_SITES  16
#define S_DP_LR      0.2 /* local SGD rate of the sites under --dp-epsilon (batch 512, clip 1) */
/* the default's own address: o->student still pointing here means --student was not given */
static const char s_default_student[] = S_STUDENT;

typedef struct {
    const char *workdir, *data_dir, *student, *teacher;
    long rounds, sites, subset, public_n, teacher_epochs, local_epochs, qat_rounds, seed;
    double alpha_dir, clip, T, alpha, lr, server_lr, server_momentum;
    double dp_eps; /* --dp-epsilon: DP-SGD at every site at (dp_eps, 1e-5); 0 = none */
    int json;
    long devices; /* edge fleet size; 0 = no rollout */
} s_opts_t;

typedef struct {
    char dir[600];
    char name[32];
    size_t n;            /* samples */
    uint64_t data_bytes; /* its IDX files */
    uint64_t sent_bytes, sent_msgs;
    int reconciled;
    int classes_present;
} s_site_t;

static int s_quiet;

static void s_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_say(const char *fmt, ...)
{
    if (s_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "demo: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
}

/* --- files and processes -------------------------------------------------------------------- */

static void s_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* Writes ds (raw 0..255 values) as IDX image and label files; returns their total size. */
static int s_write_idx(uint64_t *bytes, const cnd_dataset_t *ds, const char *images,
                       const char *labels)
{
    size_t d = cnd_shape_size(ds->shape);
    size_t ni = 16 + ds->n * d, nl = 8 + ds->n;
    uint8_t *im = malloc(ni), *lb = malloc(nl);
    int rc = 0;
    if (!im || !lb) {
        rc = cnd_errf(CND_ENOMEM, "writing %s: out of memory", images);
        goto done;
    }
    s_be32(im, 0x803);
    s_be32(im + 4, (uint32_t)ds->n);
    s_be32(im + 8, (uint32_t)ds->shape.h);
    s_be32(im + 12, (uint32_t)ds->shape.w);
    for (size_t i = 0; i < ds->n * d; i++) {
        float v = ds->x[i];
        im[16 + i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
    }
    s_be32(lb, 0x801);
    s_be32(lb + 4, (uint32_t)ds->n);
    memcpy(lb + 8, ds->y, ds->n);
    if ((rc = cnd_file_write_atomic(images, im, ni, 0600))) goto done;
    rc = cnd_file_write_atomic(labels, lb, nl, 0600);
    *bytes = ni + nl;
done:
    free(im);
    free(lb);
    return rc;
}

/* Runs a condenser command to completion; a failure names the log. */
static int s_run(const char *log, const char *const *args)
{
    return cnd_proc_run_self(log, args, 600);
}

static int s_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0) close(s);
    return port;
}

static int s_subset_of(cnd_dataset_t **out, const cnd_dataset_t *ds, const uint32_t *idx, size_t n)
{
    return cnd_data_subset(out, ds, idx, n);
}

static int s_normalized_copy(cnd_dataset_t **out, const cnd_dataset_t *ds, const cnd_model_t *m)
{
    uint32_t *idx = malloc((ds->n ? ds->n : 1) * sizeof *idx);
    if (!idx) return cnd_errf(CND_ENOMEM, "out of memory");
    for (size_t i = 0; i < ds->n; i++) idx[i] = (uint32_t)i;
    int rc = cnd_data_subset(out, ds, idx, ds->n);
    free(idx);
    if (!rc) cnd_model_normalize(m, (*out)->x, (*out)->n);
    return rc;
}

/* --- the steps ------------------------------------------------------------------------------ */

typedef struct {
    double teacher_acc, fed_float_acc, fed_int8_acc, central_acc, central_int8_acc;
    uint64_t artifact_bytes, float_bytes;
    int rounds_ok, rounds_total;
    double secagg_s, round_s, secagg_share;
    double wall_s, teacher_s, federation_s, central_s;
    int manifest_ok, audit_ok;
    int n_sites;
    s_site_t sites[S_MAX_SITES];
    char workdir[512];
    char artifact_sha[65];
    uint32_t ring_bits, values;
    double bytes_per_param;
    /* the edge fleet (fleet.rollout == 0: none) */
    cnd_demo_fleet_result_t fleet;
    int64_t v1_version; /* the coordinator's model version devices ran before */
    int64_t v2_version; /* the version of the job's signed artifact (rolled out) */
    double v1_int8_acc; /* its int8 test accuracy */
    double fleet_s;
    /* the audit, after everything else */
    int n_logs, logs_ok;
    uint64_t coord_entries;
    char report[600]; /* report.html, "" when it could not be written */
    double audit_s;
    /* --dp-epsilon: each site's epsilon as it recorded it (agent store), and its spends */
    double dp_eps[S_MAX_SITES];
    int dp_spends[S_MAX_SITES];
    uint64_t dp_assumed_n; /* the records per site the noise was solved for */
} s_result_t;

static int s_train_teacher(cnd_model_t **teacher, const cnd_dataset_t *pub,
                           const cnd_dataset_t *test, const s_opts_t *o, double *acc)
{
    int rc = cnd_model_new(teacher, S_TEACHER, pub->shape, (uint64_t)o->seed);
    if (rc) return rc;
    cnd_data_norm_fit(pub, (*teacher)->norm_mean, (*teacher)->norm_std);
    cnd_dataset_t *pn = NULL, *tn = NULL;
    if ((rc = s_normalized_copy(&pn, pub, *teacher))) return rc;
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.epochs = (int)o->teacher_epochs;
    cfg.seed = (uint64_t)o->seed;
    cnd_train_result_t res;
    rc = cnd_train(*teacher, pn, NULL, &cfg, &res);
    cnd_data_destroy(&pn);
    if (rc) return rc;
    if ((rc = s_normalized_copy(&tn, test, *teacher))) return rc;
    cnd_eval_t ev;
    rc = cnd_evaluate(*teacher, tn, 256, &ev);
    cnd_data_destroy(&tn);
    if (!rc) {
        *acc = ev.acc;
        char b[32];
        snprintf(b, sizeof b, "%.4f", ev.acc);
        rc = cnd_model_meta_set(*teacher, "test_accuracy", b);
    }
    return rc;
}

/* The same student, distilled centrally on all private data with the same number of passes. */
static int s_central(double *acc, double *acc_int8, cnd_model_t *teacher, const cnd_dataset_t *priv,
                     const cnd_dataset_t *test, const cnd_dataset_t *calib, const s_opts_t *o,
                     uint64_t student_seed)
{
    cnd_model_t *s = NULL;
    float *logits = NULL;
    cnd_dataset_t *pn = NULL, *tn = NULL;
    int rc = cnd_model_new(&s, o->student, priv->shape, student_seed);
    if (rc) return rc;
    for (int c = 0; c < s->in.c; c++) {
        s->norm_mean[c] = teacher->norm_mean[c];
        s->norm_std[c] = teacher->norm_std[c];
    }
    if ((rc = cnd_distill_teacher_logits(&logits, teacher, priv))) goto done;
    if ((rc = s_normalized_copy(&pn, priv, s))) goto done;
    cnd_train_cfg_t cfg = cnd_train_defaults();
    cfg.optim = cnd_optim_defaults(CND_OPT_ADAM, (float)o->lr);
    cfg.epochs = (int)(o->rounds * o->local_epochs);
    cfg.seed = (uint64_t)o->seed + 7;
    cnd_distill_t dctx = {logits, pn->y, s->n_classes, (float)o->T, (float)o->alpha};
    cfg.loss = cnd_distill_loss;
    cfg.loss_ctx = &dctx;
    cnd_train_result_t res;
    if ((rc = cnd_train(s, pn, NULL, &cfg, &res))) goto done;
    if ((rc = s_normalized_copy(&tn, test, s))) goto done;
    cnd_eval_t ev;
    if ((rc = cnd_evaluate(s, tn, 256, &ev))) goto done;
    *acc = ev.acc;
    /* and its post-training-quantized int8 version, with the same calibration samples */
    uint8_t *art = NULL;
    size_t alen = 0;
    cnd_artifact_t *a = NULL;
    if ((rc = cnd_fedq_freeze(&art, &alen, s, calib, 8))) goto done;
    rc = cnd_artifact_open(&a, art, alen, "central int8");
    cnd_eval_t eq;
    if (!rc) rc = cnd_qeval(a, test, &eq);
    if (!rc) *acc_int8 = eq.acc;
    cnd_artifact_destroy(&a);
    free(art);
done:
    free(logits);
    cnd_data_destroy(&pn);
    cnd_data_destroy(&tn);
    cnd_model_destroy(&s);
    return rc;
}

/* Watches the coordinator's database while the federation runs, printing each round. */
static void s_watch(const char *db, int *shown, long rounds)
{
    cnd_cstore_t *s = NULL;
    if (cnd_cstore_open_readonly(&s, db)) {
        cnd_err_clear();
        return;
    }
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    if (cnd_cstore_rounds(s, 1, &r, &n) == 0) {
        for (size_t i = (size_t)*shown; i < n; i++) {
            if (!r[i].outcome[0]) break;
            /* the survivors' validation accuracy: a secure sum, no site's own figure */
            double acc = (double)r[i].correct, ws = (double)r[i].validated;
            double tot = (double)(r[i].ended_ms - r[i].started_ms) / 1e3;
            double sec = cnd_round_secagg_seconds(&r[i]);
            s_say("round %u/%ld %s%s: %u sites, validation accuracy %.4f (secure sum), %.2f s "
                  "(SecAgg+ %.0f%%)%s%s",
                  r[i].round, rounds, r[i].outcome, r[i].qat ? " (QAT)" : "", r[i].survivors,
                  ws > 0 ? acc / ws : 0.0, tot, tot > 0 ? 100 * sec / tot : 0.0,
                  r[i].reason[0] ? ": " : "", r[i].reason);
            (*shown)++;
        }
        for (size_t i = 0; i < n; i++) cnd_round_rec_free(&r[i]);
        free(r);
    }
    cnd_err_clear();
    cnd_cstore_close(&s);
}

/* One site's identity, certificate, enrollment and agent INI (the coordinator's public key pub,
 * its endpoint). */
static int s_fed_site(const s_site_t *si, const char *log, const char *ca, const char *coord,
                      const char *pub, const char *endpoint, double dp_eps)
{
    const char *kg[] = {"keygen", "--out", si->dir, NULL};
    int rc = s_run(log, kg);
    if (rc) return rc;
    char kp[700], ini[700], cert[700];
    snprintf(kp, sizeof kp, "%s/identity.pub", si->dir);
    snprintf(cert, sizeof cert, "%s/site.pem", si->dir);
    const char *is[] = {"ca",   "issue",    "--dir", ca,      "--name", si->name, "--role",
                        "site", "--pubkey", kp,      "--out", cert,     NULL};
    if ((rc = s_run(log, is))) return rc;
    const char *en[] = {"site", "enroll", si->name, "--cert", cert, "--dir", coord, NULL};
    if ((rc = s_run(log, en))) return rc;
    snprintf(ini, sizeof ini, "%s/agent.ini", si->dir);
    char text[2048];
    int n = snprintf(text, sizeof text,
                     "; site agent configuration written by condenser demo\n"
                     "[site]\nname = %s\ndata = idx:images.idx,labels.idx\nvalidation = 0.05\n"
                     "[identity]\nkey = identity.key\ncertificate = site.pem\n"
                     "[coordinator]\nendpoint = %s\npublic_key = %s\n"
                     "ca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n"
                     "[limits]\nthreads = 1\nmemory_mb = 2048\n",
                     si->name, endpoint, pub);
    if (dp_eps > 0 && n > 0 && (size_t)n < sizeof text) /* the site's own budget */
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "[privacy]\nmax_epsilon_job = %.17g\nmax_delta = 1e-5\nrequire_dp = true\n",
                      dp_eps * 1.01);
    if (n < 0 || (size_t)n >= sizeof text) return cnd_errf(CND_EINVAL, "agent INI too long");
    return cnd_file_write_atomic(ini, text, (size_t)n, 0600);
}

/* `condenser job create` with the demo's recipe. */
static int s_fed_job(const s_opts_t *o, const char *log, const char *coord, int nsites,
                     const char *teacher_path, const char *pub_images, const char *pub_labels,
                     uint64_t cap, uint64_t dp_n)
{
    char v[13][64], calib[1400];
    snprintf(calib, sizeof calib, "idx:%s,%s", pub_images, pub_labels);
    snprintf(v[0], sizeof v[0], "%ld", o->rounds);
    snprintf(v[1], sizeof v[1], "%d", nsites);
    snprintf(v[2], sizeof v[2], "%d", nsites); /* quorum: every site */
    snprintf(v[3], sizeof v[3], "%ld", o->qat_rounds);
    snprintf(v[4], sizeof v[4], "%ld", o->local_epochs);
    snprintf(v[5], sizeof v[5], "%llu", (unsigned long long)cap);
    snprintf(v[6], sizeof v[6], "%g", o->clip);
    snprintf(v[7], sizeof v[7], "%ld", o->seed);
    snprintf(v[8], sizeof v[8], "%g", o->T);
    snprintf(v[9], sizeof v[9], "%g", o->alpha);
    /* under DP the sites' local optimizer is SGD with momentum (docs/privacy.md): its rate */
    snprintf(v[10], sizeof v[10], "%g", o->dp_eps > 0 ? S_DP_LR : o->lr);
    snprintf(v[11], sizeof v[11], "%g", o->server_lr);
    snprintf(v[12], sizeof v[12], "%g", o->server_momentum);
    /* one option and its value per line */
    // clang-format off
    const char *job[] = {"job", "create", "--dir", coord, "--name", "fmnist-demo",
                         "--student-arch", o->student,
                         "--teacher", teacher_path,
                         "--rounds", v[0],
                         "--sites", v[1],
                         "--quorum", v[2],
                         "--qat-rounds", v[3],
                         "--local-epochs", v[4],
                         "--sample-cap", v[5],
                         "--clip", v[6],
                         "--seed", v[7],
                         "--temperature", v[8],
                         "--alpha", v[9],
                         "--calib-data", calib,
                         "--join-wait-ms", "600000",
                         "--lr", v[10],
                         "--server-lr", v[11],
                         "--server-momentum", v[12],
                         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    // clang-format on
    char e[32], n[32];
    if (o->dp_eps > 0) { /* DP-SGD at every site, solved for the smallest site */
        snprintf(e, sizeof e, "%.17g", o->dp_eps);
        snprintf(n, sizeof n, "%llu", (unsigned long long)dp_n);
        const char *dp[] = {"--dp-epsilon",      e, "--dp-delta", "1e-5", "--dp-clip", "1",
                            "--dp-site-samples", n, "--batch",    "512"};
        size_t at = sizeof job / sizeof job[0] - 11;
        for (size_t i = 0; i < 10; i++) job[at + i] = dp[i];
    }
    return s_run(log, job);
}

/* Runs the coordinator and the agents as processes until the coordinator ends (at most an
 * hour), with a progress line per round; *status receives the coordinator's exit status. */
static int s_fed_run(s_result_t *res, const s_opts_t *o, const char *work, s_site_t *sites,
                     int nsites, const char *coord, const char *endpoint, int *status)
{
    char clog[700];
    snprintf(clog, sizeof clog, "%s/coordinator.log", work);
    const char *crun[] = {"coordinator", "run",    "--dir",        coord,
                          "--endpoint",  endpoint, "--until-done", NULL};
    double t0 = cnd_now();
    pid_t cpid = cnd_proc_spawn_self(clog, crun);
    if (cpid < 0) return cnd_errf(CND_EIO, "cannot start the coordinator");
    pid_t apid[S_MAX_SITES];
    for (int s = 0; s < nsites; s++) {
        char alog[700], ini[700];
        snprintf(alog, sizeof alog, "%s/agent.log", sites[s].dir);
        snprintf(ini, sizeof ini, "%s/agent.ini", sites[s].dir);
        const char *arun[] = {"agent", "--config", ini, "--until-done", NULL};
        apid[s] = cnd_proc_spawn_self(alog, arun);
    }
    s_say("federation running: coordinator on %s, %d site agents (logs in %s)", endpoint, nsites,
          work);
    char db[700];
    snprintf(db, sizeof db, "%s/coordinator.db", coord);
    int shown = 0;
    *status = -1;
    for (;;) {
        int st;
        pid_t r = waitpid(cpid, &st, WNOHANG);
        s_watch(db, &shown, o->rounds);
        if (r == cpid) {
            *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (cnd_now() - t0 > 3600) {
            kill(cpid, SIGKILL);
            waitpid(cpid, &st, 0);
            break;
        }
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int s = 0; s < nsites; s++) {
        int st = 0;
        if (apid[s] < 0 || cnd_proc_wait(apid[s], 30, &st) || st != 0)
            s_say("agent %s ended with status %d (see %s/agent.log)", sites[s].name, st,
                  sites[s].dir);
        cnd_err_clear();
    }
    res->federation_s = cnd_now() - t0;
    return 0;
}

static void s_dp_row(void *ctx, const cnd_adp_spend_t *r)
{
    double *last = ctx;
    last[0] = r->eps_job;
    last[1] += 1;
}

/* Site i's epsilon as its agent recorded it (the last spend of the job), from its store. */
static int s_site_dp(s_result_t *res, const s_site_t *si, int i)
{
    char db[700];
    snprintf(db, sizeof db, "%s/agent.db", si->dir);
    cnd_astore_t *st = NULL;
    double last[2] = {0, 0};
    int rc = cnd_astore_open(&st, db, 1);
    if (!rc) rc = cnd_astore_dp_spends(st, s_dp_row, last);
    cnd_astore_close(&st);
    res->dp_eps[i] = last[0];
    res->dp_spends[i] = (int)last[1];
    return rc ? cnd_err_wrap(rc, "reading %s's privacy spends", si->name) : 0;
}

/* The federation as an operator runs it: a CA, `coordinator init`, each site enrolled with its
 * certificate and INI, `job create`, then the coordinator and the agents as processes. */
static int s_federate(s_result_t *res, const s_opts_t *o, const char *work, s_site_t *sites,
                      int nsites, const char *teacher_path, const char *pub_images,
                      const char *pub_labels, uint64_t cap)
{
    char coord[600], log[700], ca[600], pub[700], endpoint[64];
    snprintf(coord, sizeof coord, "%s/coordinator", work);
    snprintf(log, sizeof log, "%s/setup.log", work);
    snprintf(ca, sizeof ca, "%s/ca", work);
    snprintf(pub, sizeof pub, "%s/identity.pub", coord);
    const char *cai[] = {"ca", "init", "--dir", ca, "--name", "condenser demo federation", NULL};
    const char *init[] = {"coordinator", "init", "--dir", coord, "--ca", ca, NULL};
    int rc = s_run(log, cai);
    if (!rc) rc = s_run(log, init);
    if (rc) return rc;
    int port = s_free_port();
    if (port <= 0) return cnd_errf(CND_EIO, "no free loopback port");
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    for (int s = 0; s < nsites && !rc; s++)
        rc = s_fed_site(&sites[s], log, ca, coord, pub, endpoint, o->dp_eps);
    /* under DP the noise is solved for the smallest site's training records (its 5%
     * validation split held out, rounded down: a larger site spends less) */
    uint64_t dp_n = UINT64_MAX;
    for (int s = 0; s < nsites; s++) {
        uint64_t t = (uint64_t)((double)sites[s].n * 0.95);
        if (t < dp_n) dp_n = t > 1 ? t - 1 : 1;
    }
    res->dp_assumed_n = o->dp_eps > 0 ? dp_n : 0;
    if (!rc) rc = s_fed_job(o, log, coord, nsites, teacher_path, pub_images, pub_labels, cap, dp_n);
    int status = -1;
    if (!rc) rc = s_fed_run(res, o, work, sites, nsites, coord, endpoint, &status);
    if (!rc && status != 0)
        rc = cnd_errf(CND_EIO, "the coordinator ended with status %d: see %s/coordinator.log",
                      status, work);
    for (int s = 0; !rc && o->dp_eps > 0 && s < nsites; s++) rc = s_site_dp(res, &sites[s], s);
    return rc;
}

/* Reads the job's outcome from the coordinator's database and the sites' own logs. */
static int s_collect(s_result_t *res, const char *work, const cnd_dataset_t *test,
                     uint8_t **float_blob, size_t *float_len)
{
    char coord[600], db[700];
    snprintf(coord, sizeof coord, "%s/coordinator", work);
    snprintf(db, sizeof db, "%s/coordinator.db", coord);
    cnd_cstore_t *s = NULL;
    int rc = cnd_cstore_open_readonly(&s, db);
    if (rc) return rc;
    cnd_job_rec_t j;
    if ((rc = cnd_cstore_job_get(s, 1, &j))) goto done;
    int completed = strcmp(j.state, "completed") == 0;
    if (!completed || j.reason[0]) s_say("job %s%s%s", j.state, j.reason[0] ? ": " : "", j.reason);
    cnd_job_rec_free(&j);
    if (!completed) {
        rc = cnd_errf(CND_ESTATE, "the federated job did not complete (see %s/coordinator.log)",
                      work);
        goto done;
    }
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    if ((rc = cnd_cstore_rounds(s, 1, &r, &n))) goto done;
    for (size_t i = 0; i < n; i++) {
        res->rounds_total++;
        if (strcmp(r[i].outcome, "ok") == 0) {
            res->rounds_ok++;
            res->secagg_s += cnd_round_secagg_seconds(&r[i]);
            res->round_s += (double)(r[i].ended_ms - r[i].started_ms) / 1e3;
            cnd_secagg_params_t sp;
            if (cnd_secagg_params_decode(&sp, r[i].params, sizeof r[i].params) == 0) {
                res->ring_bits = sp.bits;
                res->values = sp.len;
            }
        }
        cnd_round_rec_free(&r[i]);
    }
    free(r);
    res->secagg_share = res->round_s > 0 ? res->secagg_s / res->round_s : 0;
    /* float model */
    cnd_model_rec_t fm, am;
    if ((rc = cnd_cstore_model_latest(s, 1, "float", &fm, float_blob, float_len))) goto done;
    res->float_bytes = fm.size;
    cnd_model_rec_free(&fm);
    cnd_model_t *m = NULL;
    cnd_dataset_t *tn = NULL;
    if ((rc = cnd_model_deserialize(&m, *float_blob, *float_len, "the federated model"))) goto done;
    rc = s_normalized_copy(&tn, test, m);
    cnd_eval_t ev;
    if (!rc) rc = cnd_evaluate(m, tn, 256, &ev);
    if (!rc) res->fed_float_acc = ev.acc;
    cnd_data_destroy(&tn);
    cnd_model_destroy(&m);
    if (rc) goto done;
    /* int8 artifact: check the signed manifest with the coordinator's public key, then the
     * artifact against it, then run it on the test set through the integer runtime */
    uint8_t *art = NULL;
    size_t alen = 0;
    if ((rc = cnd_fedq_artifact(s, 1, -1, &am, &art, &alen))) goto done;
    res->artifact_bytes = am.size;
    res->v2_version = am.version;
    cnd_hex(res->artifact_sha, am.digest, 32);
    uint8_t cpk[32];
    char pub[700];
    snprintf(pub, sizeof pub, "%s/identity.pub", coord);
    cnd_manifest_t mf;
    cnd_manifest_fail_t why;
    cnd_manifest_policy_t pol = {(const uint8_t(*)[32])cpk, 1, cnd_unix_time(), 0, 0, NULL};
    rc = cnd_pubkey_read(cpk, pub);
    if (!rc && am.manifest)
        rc = cnd_manifest_verify(&mf, &why, am.manifest, am.manifest_len, &pol);
    else if (!rc)
        rc = cnd_errf(CND_ECRYPTO, "the artifact has no signed manifest");
    if (!rc) rc = cnd_manifest_check_artifact(&mf, art, alen);
    res->manifest_ok = rc == 0;
    if (!rc) {
        cnd_artifact_t *a = NULL;
        rc = cnd_artifact_open(&a, art, alen, "the federated artifact");
        if (!rc) rc = cnd_artifact_selftest(a, "the federated artifact");
        cnd_eval_t eq;
        if (!rc) rc = cnd_qeval(a, test, &eq);
        if (!rc) res->fed_int8_acc = eq.acc;
        cnd_artifact_destroy(&a);
        char out[700];
        snprintf(out, sizeof out, "%s/student-int8.cndq", work);
        if (!rc) rc = cnd_file_write_atomic(out, art, alen, 0644);
        snprintf(out, sizeof out, "%s/student-int8.cndq.manifest", work);
        if (!rc) rc = cnd_file_write_atomic(out, am.manifest, am.manifest_len, 0644);
    }
    cnd_model_rec_free(&am);
    free(art);
    if (rc) goto done;
done:
    cnd_cstore_close(&s);
    return rc;
}

/* v1 for the fleet: the coordinator's float model `version` of the job, frozen to int8 as the
 * coordinator froze the final one, written to path; *acc receives its test accuracy. */
static int s_previous_version(double *acc, const char *work, int64_t version,
                              const cnd_dataset_t *cal, const cnd_dataset_t *test, const char *path)
{
    char db[700];
    snprintf(db, sizeof db, "%s/coordinator/coordinator.db", work);
    cnd_cstore_t *cs = NULL;
    cnd_model_rec_t fm;
    uint8_t *blob = NULL, *art = NULL;
    size_t blen = 0, alen = 0;
    cnd_model_t *m = NULL;
    cnd_artifact_t *a = NULL;
    memset(&fm, 0, sizeof fm);
    int rc = cnd_cstore_open_readonly(&cs, db);
    if (!rc) rc = cnd_cstore_model_get(cs, 1, version, "float", &fm, &blob, &blen);
    cnd_cstore_close(&cs);
    if (!rc) rc = cnd_model_deserialize(&m, blob, blen, "the model devices run before");
    if (!rc) rc = cnd_fedq_freeze(&art, &alen, m, cal, 8);
    if (!rc) rc = cnd_artifact_open(&a, art, alen, "v1");
    cnd_eval_t eq;
    if (!rc) rc = cnd_qeval(a, test, &eq);
    if (!rc) *acc = eq.acc;
    if (!rc) rc = cnd_file_write_atomic(path, art, alen, 0644);
    cnd_artifact_destroy(&a);
    cnd_model_destroy(&m);
    cnd_model_rec_free(&fm);
    free(blob);
    free(art);
    return rc;
}

static void s_say_line(const char *line)
{
    s_say("%s", line);
}

/* Rolls the federation's signed artifact out to --devices simulated devices. */
static int s_fleet(s_result_t *res, const s_opts_t *o, const char *work, const cnd_dataset_t *cal,
                   const cnd_dataset_t *test)
{
    char dir[600], coord[600], v1[700], v2[700], name[64];
    snprintf(dir, sizeof dir, "%s/fleet", work);
    snprintf(coord, sizeof coord, "%s/coordinator", work);
    snprintf(v1, sizeof v1, "%s/v1-int8.cndq", dir);
    snprintf(v2, sizeof v2, "%s/student-int8.cndq", work);
    int rc = cnd_mkdir_p(dir, 0700);
    if (rc) return rc;
    res->v1_version = o->rounds >= 2 ? 1 : 0;
    if ((rc = s_previous_version(&res->v1_int8_acc, work, res->v1_version, cal, test, v1)))
        return rc;
    s_say("v1 (devices run it now): the job's model version %lld (%s), int8, test accuracy "
          "%.4f; v2: the federated artifact, %.4f",
          (long long)res->v1_version, res->v1_version ? "after round 1" : "the initial student",
          res->v1_int8_acc, res->fed_int8_acc);
    uint32_t n = (uint32_t)o->devices;
    cnd_fedq_name(name, sizeof name, 1); /* the job's name in the artifact registry */
    cnd_demo_fleet_opts_t fo = {coord, dir, v1, v2, res->v1_int8_acc, (uint64_t)res->v1_version,
                                (uint64_t)res->v2_version, name, "1", n,
                                /* 10 for 200 devices: about 5% of the fleet, at least 1 */
                                n / 20 < 1    ? 1
                                : n / 20 > 10 ? 10
                                              : n / 20,
                                /* profiles and the rollout each: 200 devices need ~5 s */
                                60 + n / 10.0, s_quiet ? NULL : s_say_line};
    return cnd_demo_fleet_run(&res->fleet, &fo);
}

/* Verifies every log the demo produced, each against its node's own key, reconciles every site
 * with the coordinator, reads what left each site (its egress log) and writes report.html. */
static int s_audit(s_result_t *res, const char *work, s_site_t *sites, int nsites)
{
    char coord[600], db[700], pub[700];
    snprintf(coord, sizeof coord, "%s/coordinator", work);
    snprintf(db, sizeof db, "%s/coordinator.db", coord);
    snprintf(pub, sizeof pub, "%s/identity.pub", coord);
    uint8_t cpk[32];
    int rc = cnd_pubkey_read(cpk, pub);
    if (rc) return rc;
    cnd_audit_t *clog = NULL;
    if ((rc = cnd_audit_open_readonly(&clog, db))) return rc;
    cnd_audit_verdict_t v;
    memset(&v, 0, sizeof v);
    res->n_logs = 1 + nsites;
    if (cnd_audit_verify(&v, clog, cpk, NULL, NULL, 0, NULL, NULL) == 0 && v.ok) res->logs_ok++;
    res->coord_entries = v.entries;
    s_say("coordinator log: %s", v.summary);
    for (int k = 0; k < nsites; k++) {
        char adb[700], spub[700];
        snprintf(adb, sizeof adb, "%s/agent.db", sites[k].dir);
        snprintf(spub, sizeof spub, "%s/identity.pub", sites[k].dir);
        cnd_astore_t *as = NULL;
        if (cnd_astore_open(&as, adb, 1) == 0) {
            if (cnd_astore_totals(as, 'E', 0, &sites[k].sent_bytes, &sites[k].sent_msgs))
                sites[k].sent_bytes = 0;
            cnd_astore_close(&as);
        }
        uint8_t spk[32];
        cnd_audit_t *alog = NULL;
        if (cnd_pubkey_read(spk, spub) == 0 && cnd_audit_open_readonly(&alog, adb) == 0) {
            cnd_audit_verdict_t va;
            if (cnd_audit_verify(&va, alog, spk, NULL, NULL, 0, NULL, NULL) == 0 && va.ok)
                res->logs_ok++;
            s_say("%s log: %s", sites[k].name, va.summary);
            cnd_audit_verdict_free(&va);
            cnd_audit_reconcile_t rr;
            memset(&rr, 0, sizeof rr);
            if (cnd_audit_reconcile(&rr, alog, clog, NULL, NULL, NULL) == 0)
                sites[k].reconciled = rr.not_received == 0 && rr.not_sent == 0 && rr.sent > 0;
            cnd_audit_reconcile_free(&rr);
            cnd_audit_close(&alog);
        } else {
            s_say("%s log: cannot be read: %s", sites[k].name, cnd_err_detail());
        }
        cnd_err_clear();
    }
    res->audit_ok = res->logs_ok == res->n_logs;
    /* the job's report, with the verification just done */
    cnd_buf_t b;
    cnd_buf_init(&b);
    char path[600];
    snprintf(path, sizeof path, "%s/report.html", work);
    rc = cnd_audit_report_html(&b, clog, "1", &v, "coordinator/coordinator.db");
    if (!rc && b.err) rc = cnd_errf(CND_ENOMEM, "report: out of memory");
    if (!rc) rc = cnd_file_write_atomic(path, b.data, b.len, 0644);
    if (!rc) snprintf(res->report, sizeof res->report, "%s", path);
    cnd_buf_free(&b);
    cnd_audit_verdict_free(&v);
    cnd_audit_close(&clog);
    return rc;
}

static void s_print_fleet_json(cnd_jw_t *w, const s_result_t *r, const s_opts_t *o)
{
    const cnd_demo_fleet_result_t *f = &r->fleet;
    cnd_jw_key(w, "fleet");
    cnd_jw_obj(w);
    cnd_jw_key(w, "devices");
    cnd_jw_int(w, o->devices);
    if (o->devices <= 0) { /* no rollout */
        cnd_jw_obj_end(w);
        return;
    }
    cnd_jw_key(w, "v1_model_version");
    cnd_jw_int(w, r->v1_version);
    cnd_jw_key(w, "v1_int8_accuracy");
    cnd_jw_double(w, r->v1_int8_acc);
    cnd_jw_key(w, "v2_int8_accuracy");
    cnd_jw_double(w, r->fed_int8_acc);
    cnd_jw_key(w, "rollout");
    cnd_jw_int(w, f->rollout);
    cnd_jw_key(w, "state");
    cnd_jw_str(w, cnd_rollout_state_name(f->state));
    cnd_jw_key(w, "targeted");
    cnd_jw_int(w, f->targeted);
    cnd_jw_key(w, "running_v2");
    cnd_jw_int(w, f->on_v2);
    cnd_jw_key(w, "running_v1");
    cnd_jw_int(w, f->on_v1);
    cnd_jw_key(w, "connect_seconds");
    cnd_jw_double(w, f->connect_s);
    cnd_jw_key(w, "rollout_seconds");
    cnd_jw_double(w, f->rollout_s);
    cnd_jw_key(w, "waves");
    cnd_jw_arr(w);
    for (uint32_t i = 0; i < f->n_waves; i++) {
        const cnd_rollout_wave_t *x = &f->waves[i];
        cnd_jw_obj(w);
        cnd_jw_key(w, "wave");
        cnd_jw_int(w, i);
        cnd_jw_key(w, "devices");
        cnd_jw_int(w, x->devices);
        cnd_jw_key(w, "healthy");
        cnd_jw_int(w, x->healthy);
        cnd_jw_key(w, "failed");
        cnd_jw_int(w, x->failed);
        cnd_jw_key(w, "timed_out");
        cnd_jw_int(w, x->timed_out);
        cnd_jw_key(w, "other");
        cnd_jw_int(w, x->deferred + x->open + x->rolled_back + x->other);
        cnd_jw_key(w, "seconds");
        cnd_jw_double(w, f->wave_s ? f->wave_s[i] : 0);
        cnd_jw_obj_end(w);
    }
    cnd_jw_arr_end(w);
    cnd_jw_obj_end(w);
}

static void s_print_fleet(const s_result_t *r, const s_opts_t *o)
{
    const cnd_demo_fleet_result_t *f = &r->fleet;
    printf("edge fleet (simulated devices over loopback CurveZMQ)\n");
    if (o->devices <= 0) {
        printf("  %-44s skipped (--devices 0)\n", "rollout");
        return;
    }
    char v1[64];
    if (r->v1_version > 0)
        snprintf(v1, sizeof v1, "v1, global model after round %lld, int8",
                 (long long)r->v1_version);
    else
        snprintf(v1, sizeof v1, "v1, initial student (before round 1), int8");
    printf("  %-44s %.4f test accuracy, on all %ld devices before\n", v1, r->v1_int8_acc,
           o->devices);
    printf("  %-44s %.4f test accuracy, the signed artifact above\n", "v2, federated student, int8",
           r->fed_int8_acc);
    printf("  %-44s %ld, connected and profiled in %.1f s\n", "devices", o->devices, f->connect_s);
    printf("  %-44s %s in %.1f s, %u of %ld devices now run v2\n", "rollout of v2",
           cnd_rollout_state_name(f->state), f->rollout_s, f->on_v2, o->devices);
    printf("  %-10s %8s %8s %8s %10s %8s\n", "wave", "devices", "healthy", "failed", "timed out",
           "seconds");
    for (uint32_t i = 0; i < f->n_waves; i++) {
        const cnd_rollout_wave_t *x = &f->waves[i];
        char name[16];
        snprintf(name, sizeof name, i ? "%u" : "canary", i);
        printf("  %-10s %8u %8u %8u %10u %8.2f\n", name, x->devices, x->healthy, x->failed,
               x->timed_out, f->wave_s ? f->wave_s[i] : 0);
    }
}

static void s_print_sites_json(cnd_jw_t *w, const s_result_t *r)
{
    cnd_jw_key(w, "sites");
    cnd_jw_arr(w);
    for (int i = 0; i < r->n_sites; i++) {
        cnd_jw_obj(w);
        cnd_jw_key(w, "name");
        cnd_jw_str(w, r->sites[i].name);
        cnd_jw_key(w, "samples");
        cnd_jw_int(w, (int64_t)r->sites[i].n);
        cnd_jw_key(w, "classes");
        cnd_jw_int(w, r->sites[i].classes_present);
        cnd_jw_key(w, "data_bytes");
        cnd_jw_int(w, (int64_t)r->sites[i].data_bytes);
        cnd_jw_key(w, "sent_bytes");
        cnd_jw_int(w, (int64_t)r->sites[i].sent_bytes);
        cnd_jw_key(w, "sent_messages");
        cnd_jw_int(w, (int64_t)r->sites[i].sent_msgs);
        cnd_jw_key(w, "reconciled");
        cnd_jw_bool(w, r->sites[i].reconciled);
        cnd_jw_obj_end(w);
    }
    cnd_jw_arr_end(w);
}

static void s_print_json(const s_result_t *r, const s_opts_t *o)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "workdir");
    cnd_jw_str(&w, r->workdir);
    cnd_jw_key(&w, "teacher_accuracy");
    cnd_jw_double(&w, r->teacher_acc);
    cnd_jw_key(&w, "federated_float_accuracy");
    cnd_jw_double(&w, r->fed_float_acc);
    cnd_jw_key(&w, "federated_int8_accuracy");
    cnd_jw_double(&w, r->fed_int8_acc);
    cnd_jw_key(&w, "central_float_accuracy");
    cnd_jw_double(&w, r->central_acc);
    cnd_jw_key(&w, "central_int8_accuracy");
    cnd_jw_double(&w, r->central_int8_acc);
    cnd_jw_key(&w, "gap_int8_vs_central_points");
    cnd_jw_double(&w, 100.0 * (r->central_acc - r->fed_int8_acc));
    cnd_jw_key(&w, "teacher_vs_central_points");
    cnd_jw_double(&w, 100.0 * (r->teacher_acc - r->central_acc));
    if (o->dp_eps > 0) { /* "dp": the target and each site's recorded epsilon */
        cnd_jw_key(&w, "dp");
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "target_epsilon");
        cnd_jw_double(&w, o->dp_eps);
        cnd_jw_key(&w, "delta");
        cnd_jw_double(&w, 1e-5);
        cnd_jw_key(&w, "assumed_site_records");
        cnd_jw_int(&w, (int64_t)r->dp_assumed_n);
        cnd_jw_key(&w, "site_epsilon");
        cnd_jw_arr(&w);
        for (int i = 0; i < r->n_sites; i++) cnd_jw_double(&w, r->dp_eps[i]);
        cnd_jw_arr_end(&w);
        cnd_jw_obj_end(&w);
    }
    cnd_jw_key(&w, "artifact_bytes");
    cnd_jw_int(&w, (int64_t)r->artifact_bytes);
    cnd_jw_key(&w, "float_model_bytes");
    cnd_jw_int(&w, (int64_t)r->float_bytes);
    cnd_jw_key(&w, "artifact_sha256");
    cnd_jw_str(&w, r->artifact_sha);
    cnd_jw_key(&w, "manifest_verified");
    cnd_jw_bool(&w, r->manifest_ok);
    cnd_jw_key(&w, "rounds");
    cnd_jw_int(&w, r->rounds_ok);
    cnd_jw_key(&w, "ring_bits");
    cnd_jw_int(&w, r->ring_bits);
    cnd_jw_key(&w, "secagg_share_of_round_time");
    cnd_jw_double(&w, r->secagg_share);
    s_print_sites_json(&w, r);
    cnd_jw_key(&w, "audit_logs_verified");
    cnd_jw_bool(&w, r->audit_ok);
    cnd_jw_key(&w, "audit");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "logs");
    cnd_jw_int(&w, r->n_logs);
    cnd_jw_key(&w, "logs_verified");
    cnd_jw_int(&w, r->logs_ok);
    cnd_jw_key(&w, "coordinator_entries");
    cnd_jw_int(&w, (int64_t)r->coord_entries);
    cnd_jw_key(&w, "report");
    cnd_jw_str(&w, r->report);
    cnd_jw_obj_end(&w);
    s_print_fleet_json(&w, r, o);
    cnd_jw_key(&w, "seconds");
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "teacher");
    cnd_jw_double(&w, r->teacher_s);
    cnd_jw_key(&w, "federation");
    cnd_jw_double(&w, r->federation_s);
    cnd_jw_key(&w, "central_reference");
    cnd_jw_double(&w, r->central_s);
    cnd_jw_key(&w, "fleet");
    cnd_jw_double(&w, r->fleet_s);
    cnd_jw_key(&w, "audit");
    cnd_jw_double(&w, r->audit_s);
    cnd_jw_key(&w, "wall");
    cnd_jw_double(&w, r->wall_s);
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    printf("%s\n", cnd_jw_text(&w) ? cnd_jw_text(&w) : "{}");
    cnd_jw_free(&w);
}

static void s_print_text(const s_result_t *r, const s_opts_t *o)
{
    printf("\nCondenser demo: federated distillation of Fashion-MNIST into an int8 student\n");
    printf("work directory: %s\n\n", r->workdir);
    printf("test accuracy (Fashion-MNIST test set, %d images)\n", 10000);
    printf("  %-44s %.4f\n", "teacher (CNN, trained on the public images)", r->teacher_acc);
    printf("  %-44s %.4f\n", "federated student, float", r->fed_float_acc);
    printf("  %-44s %.4f\n", "federated student, int8 (integer runtime)", r->fed_int8_acc);
    printf("  %-44s %.4f\n",
           o->dp_eps > 0 ? "same student distilled centrally, no DP"
                         : "same student distilled centrally, float",
           r->central_acc);
    printf("  %-44s %.4f\n", "same student distilled centrally, int8 (PTQ)", r->central_int8_acc);
    printf("  %-44s %+.2f points (target: within 1.0)\n", "federated int8 vs central float",
           100.0 * (r->fed_int8_acc - r->central_acc));
    printf("  %-44s %+.2f points (target: at least +1.0)\n", "teacher vs central float",
           100.0 * (r->teacher_acc - r->central_acc));
    printf("artifact\n");
    printf("  %-44s %llu bytes (float model %llu bytes, %.2fx smaller)\n", "int8 .cndq",
           (unsigned long long)r->artifact_bytes, (unsigned long long)r->float_bytes,
           r->artifact_bytes ? (double)r->float_bytes / (double)r->artifact_bytes : 0);
    printf("  %-44s %s (sha256 %.16s...)\n", "signed manifest, digest",
           r->manifest_ok ? "verified with the coordinator key" : "NOT VERIFIED", r->artifact_sha);
    printf("federation\n");
    printf("  %-44s %d, masked updates in a %u-bit ring (%.2f bytes/parameter)\n", "rounds",
           r->rounds_ok, r->ring_bits, r->ring_bits / 8.0);
    printf("  %-44s %.1f%% of %.1f s of rounds\n", "SecAgg+ share of round time",
           100 * r->secagg_share, r->round_s);
    printf("  %-10s %8s %8s %12s %12s %8s %s\n", "site", "samples", "classes", "data bytes",
           "sent bytes", "sent/data", "reconciled");
    for (int i = 0; i < r->n_sites; i++) {
        const s_site_t *s = &r->sites[i];
        printf("  %-10s %8zu %8d %12llu %12llu %7.1f%% %s\n", s->name, s->n, s->classes_present,
               (unsigned long long)s->data_bytes, (unsigned long long)s->sent_bytes,
               s->data_bytes ? 100.0 * (double)s->sent_bytes / (double)s->data_bytes : 0,
               s->reconciled ? "yes" : "NO");
    }
    if (o->dp_eps > 0) {
        printf("differential privacy (DP-SGD at every site, target (%g, 1e-5) for a site of %llu "
               "training records)\n",
               o->dp_eps, (unsigned long long)r->dp_assumed_n);
        for (int i = 0; i < r->n_sites; i++)
            printf("  %-10s epsilon spent %.4f (delta 1e-5) over %d recorded rounds\n",
                   r->sites[i].name, r->dp_eps[i], r->dp_spends[i]);
    }
    s_print_fleet(r, o);
    printf("audit (the last step)\n");
    printf("  %-44s %s: %d of %d, each with its node's key\n", "logs (coordinator and sites)",
           r->audit_ok ? "verified" : "VERIFICATION FAILED", r->logs_ok, r->n_logs);
    printf("  %-44s %llu entries\n", "coordinator log", (unsigned long long)r->coord_entries);
    printf("  %-44s %s\n", "HTML report of the job", r->report[0] ? r->report : "NOT WRITTEN");
    printf("wall time\n");
    printf("  %-44s %.1f s (teacher %.1f s, federation %.1f s, central reference %.1f s, "
           "fleet %.1f s, audit %.1f s)\n",
           "total", r->wall_s, r->teacher_s, r->federation_s, r->central_s, r->fleet_s, r->audit_s);
}

static void s_print(const s_result_t *r, const s_opts_t *o)
{
    if (o->json)
        s_print_json(r, o);
    else
        s_print_text(r, o);
}

/* 0 when dir does not exist or is empty; CND_EEXIST naming it when it holds anything. */
static int s_check_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return cnd_errf(CND_EIO, "--workdir %s: %s", dir, strerror(errno));
    }
    const struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    if (!empty)
        return cnd_errf(CND_EEXIST,
                        "--workdir %s is not empty: the demo creates fresh keys, a CA and "
                        "databases there; give a new or empty directory (an earlier run's files "
                        "are left as they are)",
                        dir);
    return 0;
}

/* What one run of the demo holds between its steps; s_run_free releases it all. */
typedef struct {
    s_opts_t o;
    s_result_t *res;
    char work[512];
    cnd_dataset_t *train, *test, *pub, *priv, *cal;
    cnd_model_t *teacher;
    char pub_images[600], pub_labels[600], teacher_path[600];
    uint64_t cap; /* the weight cap: the largest site's training part */
    uint8_t *fblob;
    size_t flen;
} s_run_t;

static void s_run_free(s_run_t *r)
{
    cnd_data_destroy(&r->cal);
    if (r->res) cnd_demo_fleet_result_free(&r->res->fleet);
    free(r->fblob);
    cnd_model_destroy(&r->teacher);
    cnd_data_destroy(&r->train);
    cnd_data_destroy(&r->test);
    cnd_data_destroy(&r->pub);
    cnd_data_destroy(&r->priv);
    free(r->res);
}

/* The options into r->o. Returns 0, 1 (--help printed) or an error. */
static int s_parse(s_run_t *r, int argc, char **argv)
{
    s_opts_t *o = &r->o;
    *o = (s_opts_t){.student = s_default_student,
                    .rounds = 12,
                    .sites = 3,
                    .public_n = 20000,
                    .teacher_epochs = 6,
                    .local_epochs = 1,
                    .qat_rounds = 2,
                    .seed = 1,
                    .alpha_dir = 0.5,
                    .clip = 0.05,
                    .T = CND_DISTILL_DEFAULT_T,
                    .alpha = CND_DISTILL_DEFAULT_ALPHA,
                    .lr = 1e-3,
                    .server_lr = 1.0,
                    .devices = 200};
    int quiet = 0;
    const cnd_opt_t opts[] = {
        {"workdir", CND_OPT_STR, &o->workdir, "DIR",
         "keep everything here; a new or empty directory (default: a new one under ./demo-work)"},
        {"rounds", CND_OPT_INT, &o->rounds, "N", "federated rounds (default 12)", 1, 1000},
        {"sites", CND_OPT_INT, &o->sites, "N", "site agents (default 3)", 2, S_MAX_SITES},
        {"train-subset", CND_OPT_INT, &o->subset, "N",
         "use N of the 60,000 training images (default all)", 1000, 60000},
        {"public", CND_OPT_INT, &o->public_n, "N",
         "public images for the teacher and calibration (default 20,000)", 500, 30000},
        {"teacher-epochs", CND_OPT_INT, &o->teacher_epochs, "N",
         "teacher training epochs (default 6)", 1, 100},
        {"local-epochs", CND_OPT_INT, &o->local_epochs, "N", "local epochs per round (default 1)",
         1, 100},
        {"qat-rounds", CND_OPT_INT, &o->qat_rounds, "N",
         "rounds with fake quantization at the end (default 2)", 0, 1000},
        {"student", CND_OPT_STR, &o->student, "SPEC",
         "student architecture (default " S_STUDENT "; with --dp-epsilon " S_DP_STUDENT ")"},
        {"clip", CND_OPT_DBL, &o->clip, "C", "per-coordinate clip of an update (default 0.05)",
         1e-6, 100},
        {"lr", CND_OPT_DBL, &o->lr, "X", "local Adam learning rate (default 1e-3)", 1e-6, 1},
        {"server-lr", CND_OPT_DBL, &o->server_lr, "X", "server learning rate (default 1)", 1e-3,
         100},
        {"server-momentum", CND_OPT_DBL, &o->server_momentum, "M", "server momentum (default 0)", 0,
         0.999},
        {"teacher", CND_OPT_STR, &o->teacher, "FILE",
         "use this teacher (.cnd) instead of training one"},
        {"dirichlet", CND_OPT_DBL, &o->alpha_dir, "A", "label skew of the site split (default 0.5)",
         0.01, 1000},
        {"data", CND_OPT_STR, &o->data_dir, "DIR", "Fashion-MNIST directory (default Debian's)"},
        {"seed", CND_OPT_INT, &o->seed, "S", "seed (default 1)", 0, 1e9},
        {"devices", CND_OPT_INT, &o->devices, "N",
         "simulated edge devices the artifact is rolled out to (default 200; 0: no rollout)", 0,
         5000},
        {"dp-epsilon", CND_OPT_DBL, &o->dp_eps, "E",
         "train with DP-SGD at every site, each site's records at (E, 1e-5)-DP (noise solved for "
         "the smallest site; batch 512, clip 1, local SGD at rate 0.2; no QAT rounds; each "
         "site's INI caps its epsilon at 1.01 E; the central reference is not private)",
         0.01, 100},
        {"json", CND_OPT_FLAG, &o->json, NULL, "print the result table as JSON"},
        {"quiet", CND_OPT_FLAG, &quiet, NULL, "no progress lines"},
        {0}};
    const cnd_cli_t cli = {
        "condenser demo [--workdir DIR] [--rounds N] [--sites N] [--train-subset N] "
        "[--devices N] [--json]",
        "The main job on one machine: a CNN teacher trained on 20,000 public Fashion-MNIST "
        "images; a coordinator and site agents as separate processes over loopback CurveZMQ, "
        "each site holding a label-skewed share of the remaining images; federated "
        "distillation rounds with secure aggregation (QAT in the last ones); the signed int8 "
        "artifact, compared with the same student distilled centrally; its rollout to a "
        "simulated edge fleet in health-gated waves (canary first); and every audit log "
        "verified, with the job's HTML report written to report.html in the work directory.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc;
    if (o->qat_rounds > o->rounds) o->qat_rounds = o->rounds;
    if (o->dp_eps > 0) { /* DP-SGD: no QAT (docs/privacy.md) */
        o->qat_rounds = 0;
        if (o->student == s_default_student) o->student = S_DP_STUDENT;
    }
    s_quiet = quiet;
    return 0;
}

/* The work directory: the one given (new or empty: fresh keys, CA and databases every run,
 * never on top of an earlier run's) or a new one under demo-work/; made absolute. */
static int s_workdir(s_run_t *r)
{
    int rc;
    if (r->o.workdir) {
        snprintf(r->work, sizeof r->work, "%s", r->o.workdir);
        if ((rc = s_check_empty_dir(r->work))) return rc;
    } else {
        char t[32];
        time_t now = time(NULL);
        strftime(t, sizeof t, "%Y%m%d-%H%M%S", gmtime(&now));
        snprintf(r->work, sizeof r->work, "demo-work/run-%s-%d", t, (int)getpid());
    }
    if ((rc = cnd_mkdir_p(r->work, 0700))) return rc;
    char abs[PATH_MAX];
    if (realpath(r->work, abs)) snprintf(r->work, sizeof r->work, "%.500s", abs);
    snprintf(r->res->workdir, sizeof r->res->workdir, "%s", r->work);
    return 0;
}

/* Step 1: Fashion-MNIST, shuffled and cut into the public part (written as IDX for the
 * coordinator's calibration) and the private part the sites share. */
static int s_step_data(s_run_t *r)
{
    s_say("[1/7] loading Fashion-MNIST into %s", r->work);
    int rc;
    if ((rc = cnd_data_load_fmnist(&r->train, r->o.data_dir, "train")) ||
        (rc = cnd_data_load_fmnist(&r->test, r->o.data_dir, "test")))
        return rc;
    size_t total = r->o.subset ? (size_t)r->o.subset : r->train->n;
    if (total > r->train->n) total = r->train->n;
    size_t npub = (size_t)r->o.public_n < total / 2 ? (size_t)r->o.public_n : total / 2;
    uint32_t *perm = malloc(r->train->n * sizeof *perm);
    if (!perm) return cnd_errf(CND_ENOMEM, "demo: out of memory");
    for (size_t i = 0; i < r->train->n; i++) perm[i] = (uint32_t)i;
    cnd_rng_t rng;
    cnd_rng_seed(&rng, (uint64_t)r->o.seed);
    cnd_rng_shuffle_u32(&rng, perm, r->train->n);
    rc = s_subset_of(&r->pub, r->train, perm, npub);
    if (!rc) rc = s_subset_of(&r->priv, r->train, perm + npub, total - npub);
    free(perm);
    if (rc) return rc;
    snprintf(r->pub_images, sizeof r->pub_images, "%s/public/images.idx", r->work);
    snprintf(r->pub_labels, sizeof r->pub_labels, "%s/public/labels.idx", r->work);
    snprintf(r->teacher_path, sizeof r->teacher_path, "%s/teacher.cnd", r->work);
    char d[600];
    snprintf(d, sizeof d, "%s/public", r->work);
    uint64_t b;
    if ((rc = cnd_mkdir_p(d, 0700))) return rc;
    return s_write_idx(&b, r->pub, r->pub_images, r->pub_labels);
}

/* Step 2: the teacher, trained on the public part or loaded (--teacher), saved for the job. */
static int s_step_teacher(s_run_t *r)
{
    double tt = cnd_now();
    int rc;
    if (r->o.teacher) {
        s_say("[2/7] using the teacher %s", r->o.teacher);
        if ((rc = cnd_model_load(&r->teacher, r->o.teacher))) return rc;
        cnd_dataset_t *tn = NULL;
        cnd_eval_t ev;
        if ((rc = s_normalized_copy(&tn, r->test, r->teacher))) return rc;
        rc = cnd_evaluate(r->teacher, tn, 256, &ev);
        cnd_data_destroy(&tn);
        if (rc) return rc;
        r->res->teacher_acc = ev.acc;
    } else {
        s_say("[2/7] training the teacher (%s) on %zu public images, %ld epochs", S_TEACHER,
              r->pub->n, r->o.teacher_epochs);
        if ((rc = s_train_teacher(&r->teacher, r->pub, r->test, &r->o, &r->res->teacher_acc)))
            return rc;
    }
    r->res->teacher_s = cnd_now() - tt;
    if ((rc = cnd_model_save(r->teacher, r->teacher_path))) return rc;
    s_say("teacher test accuracy %.4f (%.1f s)", r->res->teacher_acc, r->res->teacher_s);
    return 0;
}

/* One site's share of the private images: its directory and IDX files. */
static int s_site_data(s_site_t *si, const cnd_dataset_t *priv, const uint32_t *idx, size_t n)
{
    cnd_dataset_t *sd = NULL;
    int rc = cnd_mkdir_p(si->dir, 0700);
    if (!rc) rc = s_subset_of(&sd, priv, idx, n);
    if (rc) return rc;
    si->n = sd->n;
    int seen[256] = {0};
    for (size_t i = 0; i < sd->n; i++) seen[sd->y[i]] = 1;
    for (int c = 0; c < 256; c++) si->classes_present += seen[c];
    char im[700], lb[700];
    snprintf(im, sizeof im, "%s/images.idx", si->dir);
    snprintf(lb, sizeof lb, "%s/labels.idx", si->dir);
    rc = s_write_idx(&si->data_bytes, sd, im, lb);
    cnd_data_destroy(&sd);
    return rc;
}

/* Step 3: the private part split among the sites with Dirichlet label skew. */
static int s_step_sites(s_run_t *r)
{
    s_say("[3/7] splitting %zu private images among %ld sites (Dirichlet alpha %g)", r->priv->n,
          r->o.sites, r->o.alpha_dir);
    uint32_t *part = malloc(r->priv->n * sizeof *part);
    size_t *counts = calloc((size_t)r->o.sites, sizeof *counts);
    int rc = part && counts ? 0 : cnd_errf(CND_ENOMEM, "demo: out of memory");
    if (!rc)
        rc = cnd_data_partition(part, counts, r->priv, (int)r->o.sites, r->o.alpha_dir,
                                (uint64_t)r->o.seed + 1);
    r->res->n_sites = (int)r->o.sites;
    r->cap = 1;
    size_t off = 0;
    for (int s = 0; !rc && s < (int)r->o.sites; s++) {
        s_site_t *si = &r->res->sites[s];
        snprintf(si->name, sizeof si->name, "site-%c", 'a' + s);
        snprintf(si->dir, sizeof si->dir, "%s/site-%c", r->work, 'a' + s);
        if ((rc = s_site_data(si, r->priv, part + off, counts[s]))) break;
        off += counts[s];
        /* the weight cap: the largest site's training part counts fully */
        uint64_t tr = (uint64_t)(si->n - (size_t)(si->n * 0.1));
        if (tr > r->cap) r->cap = tr;
        s_say("%s: %zu images, %d classes present", si->name, si->n, si->classes_present);
    }
    free(part);
    free(counts);
    return rc;
}

/* Step 4: the federation, then its results read back. */
static int s_step_federate(s_run_t *r)
{
    s_say("[4/7] federated distillation: %ld rounds (%ld with QAT), SecAgg+ over %ld sites",
          r->o.rounds, r->o.qat_rounds, r->o.sites);
    int rc = s_federate(r->res, &r->o, r->work, r->res->sites, (int)r->o.sites, r->teacher_path,
                        r->pub_images, r->pub_labels, r->cap);
    if (!rc) rc = s_collect(r->res, r->work, r->test, &r->fblob, &r->flen);
    if (!rc)
        s_say("federated student: float %.4f, int8 %.4f", r->res->fed_float_acc,
              r->res->fed_int8_acc);
    return rc;
}

/* Step 5: the reference, the same student distilled centrally on all private images and
 * quantized with the coordinator's calibration samples (read back from its database). */
static int s_step_central(s_run_t *r)
{
    s_say("[5/7] the reference: the same student distilled centrally on all %zu private images",
          r->priv->n);
    double tc = cnd_now();
    char db[700];
    snprintf(db, sizeof db, "%s/coordinator/coordinator.db", r->work);
    cnd_cstore_t *cs = NULL;
    int rc = cnd_cstore_open_readonly(&cs, db);
    if (!rc) rc = cnd_cstore_calib_get(cs, 1, &r->cal);
    cnd_cstore_close(&cs);
    if (!rc)
        rc = s_central(&r->res->central_acc, &r->res->central_int8_acc, r->teacher, r->priv,
                       r->test, r->cal, &r->o, (uint64_t)r->o.seed);
    if (rc) return rc;
    r->res->central_s = cnd_now() - tc;
    s_say("central student: float %.4f, int8 %.4f (%.1f s)", r->res->central_acc,
          r->res->central_int8_acc, r->res->central_s);
    return 0;
}

/* Steps 6 and 7: the rollout to the simulated fleet (unless --devices 0) and the audit. */
static int s_step_fleet_audit(s_run_t *r)
{
    int rc;
    if (r->o.devices > 0) {
        s_say("[6/7] the edge fleet: the signed artifact rolled out to %ld simulated devices",
              r->o.devices);
        double tf = cnd_now();
        if ((rc = s_fleet(r->res, &r->o, r->work, r->cal, r->test))) return rc;
        r->res->fleet_s = cnd_now() - tf;
    } else {
        s_say("[6/7] the edge fleet: skipped (--devices 0)");
    }
    s_say("[7/7] the audit: verifying every log, reconciling the sites, writing the report");
    double ta = cnd_now();
    if ((rc = s_audit(r->res, r->work, r->res->sites, (int)r->o.sites))) return rc;
    r->res->audit_s = cnd_now() - ta;
    s_say("report: %s", r->res->report);
    return 0;
}

int cnd_cmd_demo(int argc, char **argv)
{
    s_run_t r;
    memset(&r, 0, sizeof r);
    int rc = s_parse(&r, argc, argv);
    if (rc) return rc > 0 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    double t0 = cnd_now();
    if (!(r.res = calloc(1, sizeof *r.res))) return cnd_errf(CND_ENOMEM, "demo: out of memory");
    cnd_set_threads(0);
    if (!(rc = s_workdir(&r)) && !(rc = s_step_data(&r)) && !(rc = s_step_teacher(&r)) &&
        !(rc = s_step_sites(&r)) && !(rc = s_step_federate(&r)) && !(rc = s_step_central(&r)) &&
        !(rc = s_step_fleet_audit(&r))) {
        s_result_t *res = r.res;
        res->wall_s = cnd_now() - t0;
        s_print(res, &r.o);
        if (!res->manifest_ok || !res->audit_ok)
            rc = cnd_errf(CND_ECORRUPT, "the artifact's signature or an audit log did not verify");
        else if (r.o.devices > 0 && (res->fleet.state != CND_ROLLOUT_COMPLETED ||
                                     res->fleet.on_v2 != (uint32_t)r.o.devices))
            rc = cnd_errf(
                CND_ESTATE, "the rollout ended %s with %u of %ld devices on v2: see %s/fleet",
                cnd_rollout_state_name(res->fleet.state), res->fleet.on_v2, r.o.devices, r.work);
    }
    s_run_free(&r);
    return rc;
}
