/*
 * test_federation_dropout.c: a real federation on loopback (a coordinator and five site agents,
 * separate processes) in which one site is killed after its SecAgg+ key shares were accepted
 * (before it masks) and another after its masked update was accepted (before it unmasks). The round
 * must still complete with the exact weighted average of the four sites whose masked updates
 * arrived: the test reads each survivor's encoded update (CND_AGENT_DEBUG_DUMP, written to local
 * disk before masking), sums them modulo 2^b itself, decodes the sum, and requires the
 * coordinator's new model to equal the old one plus that average bit for bit. The float average of
 * the dumped updates, weighted by sample count, must agree within the fixed-point rounding bound.
 */
#include "bytes.h"
#include "check.h"
#include "coord_store.h"
#include "fixedpoint.h"
#include "modelfile.h"
#include "secagg.h"
#include "federation_fixture.h"

#include <string.h>

typedef struct {
    uint32_t dim, len;
    uint64_t weight;
    float *upd;
    uint32_t *x;
} dump_t;

static int s_read_dump(dump_t *d, const char *path)
{
    uint8_t *b = NULL;
    size_t n = 0;
    memset(d, 0, sizeof *d);
    if (cnd_file_read(path, 1 << 26, &b, &n)) return -1;
    cnd_rd_t r;
    cnd_rd_init(&r, b, n);
    const uint8_t *m = cnd_rd_take(&r, 4);
    d->dim = cnd_rd_u32(&r);
    d->len = cnd_rd_u32(&r);
    d->weight = cnd_rd_u64(&r);
    int ok = m && memcmp(m, "CUPD", 4) == 0 && d->dim && d->len >= d->dim && d->len < (1u << 24);
    if (ok) {
        d->upd = malloc((size_t)d->dim * sizeof *d->upd);
        d->x = malloc((size_t)d->len * sizeof *d->x);
        for (uint32_t i = 0; i < d->dim; i++) d->upd[i] = cnd_rd_f32(&r);
        for (uint32_t i = 0; i < d->len; i++) d->x[i] = cnd_rd_u32(&r);
        ok = !r.err && cnd_rd_left(&r) == 0;
    }
    free(b);
    return ok ? 0 : -1;
}

static cnd_model_t *s_model(fx_fed_t *f, int64_t version)
{
    char db[400];
    fx_path(db, sizeof db, f->coord, "coordinator.db");
    cnd_cstore_t *s = NULL;
    cnd_model_rec_t r;
    uint8_t *blob = NULL;
    size_t len = 0;
    cnd_model_t *m = NULL;
    if (cnd_cstore_open_readonly(&s, db) == 0 &&
        cnd_cstore_model_get(s, 1, version, "float", &r, &blob, &len) == 0) {
        if (cnd_model_deserialize(&m, blob, len, "model")) m = NULL;
        cnd_model_rec_free(&r);
    }
    free(blob);
    cnd_cstore_close(&s);
    return m;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "dropout", 5);
    fx_fed_setup(&f, 200, NULL, 0);
    const float clip = 0.25f;
    const char *job[] = {"--rounds",
                         "1",
                         "--sites",
                         "5",
                         "--quorum",
                         "3",
                         "--clip",
                         "0.25",
                         "--sample-cap",
                         "1000",
                         "--value-bits",
                         "8",
                         "--advertise-ms",
                         "15000",
                         "--share-ms",
                         "15000",
                         "--masked-ms",
                         "8000",
                         "--unmask-ms",
                         "3000",
                         "--join-wait-ms",
                         "30000",
                         NULL};
    fx_job_create(&f, job);
    char dump[400], envd[450];
    fx_path(dump, sizeof dump, f.root, "dump");
    CHECK_EQ_INT(cnd_mkdir_p(dump, 0700), 0);
    snprintf(envd, sizeof envd, "CND_AGENT_DEBUG_DUMP=%s", dump);
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[5];
    for (int s = 0; s < 5; s++) {
        const char *env[3] = {envd, NULL, NULL};
        if (s == 1) env[1] = "CND_AGENT_FAULT=shares:1";
        if (s == 2) env[1] = "CND_AGENT_FAULT=masked:1";
        ag[s] = fx_start_agent(&f, s, env);
    }
    int crc = fx_wait(coord, 55);
    CHECK_EQ_INT(crc, 0);
    for (int s = 0; s < 5; s++) {
        int st = fx_wait(ag[s], 10);
        /* the two faulty sites killed themselves with SIGKILL; the others finished the job */
        CHECK_EQ_INT(st, s == 1 || s == 2 ? 128 + SIGKILL : 0);
    }

    cnd_round_rec_t *rounds = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &rounds, &nr), 0);
    CHECK_EQ_INT(nr, 1);
    if (nr == 1) {
        cnd_round_rec_t *r = &rounds[0];
        CHECK(strcmp(r->outcome, "ok") == 0);
        CHECK_EQ_INT(r->survivors, 4);
        CHECK_EQ_INT(r->model_version, 1);
        CHECK_EQ_INT(r->n, 5);
        for (uint32_t i = 0; i < r->n; i++) {
            uint32_t st = r->sites[i].status;
            int k = r->sites[i].name[5] - '0';
            CHECK(st & CND_SECAGG_ST_ADVERTISED);
            CHECK(st & CND_SECAGG_ST_SHARED);
            CHECK(!!(st & CND_SECAGG_ST_MASKED) == (k != 1));
            CHECK(!!(st & CND_SECAGG_ST_UNMASKED) == (k != 1 && k != 2));
        }
    }

    /* The exact sum of the survivors' encoded updates, computed here. */
    dump_t d[5];
    int have = 0;
    for (int s = 0; s < 5; s++) {
        char p[500];
        snprintf(p, sizeof p, "%s/site-%d-j1-r1.upd", dump, s);
        int ok = s_read_dump(&d[s], p) == 0;
        CHECK(ok == (s != 1)); /* site-1 died before it trained */
        have += ok;
    }
    cnd_model_t *m0 = s_model(&f, 0), *m1 = s_model(&f, 1);
    CHECK(m0 && m1);
    if (have == 4 && m0 && m1 && nr == 1) {
        uint32_t dim = d[0].dim, len = d[0].len;
        cnd_fxp_params_t fp = {dim, 5, 8, clip, 0, 1000};
        cnd_fxp_layout_t lay;
        CHECK_EQ_INT(cnd_fxp_layout(&lay, &fp), 0);
        CHECK_EQ_INT(lay.len, len);
        CHECK_EQ_INT(dim, m0->num_params + m0->num_state);
        uint32_t *sum = calloc(len, sizeof *sum);
        double *fsum = calloc(dim, sizeof *fsum);
        double wsum = 0;
        for (int s = 0; s < 5; s++) {
            if (s == 1) continue;
            CHECK_EQ_INT(d[s].len, len);
            for (uint32_t i = 0; i < len; i++) sum[i] += d[s].x[i];
            for (uint32_t i = 0; i < dim; i++) {
                float c = d[s].upd[i] > clip ? clip : d[s].upd[i] < -clip ? -clip : d[s].upd[i];
                fsum[i] += (double)d[s].weight * c;
            }
            wsum += (double)d[s].weight;
        }
        float *avg = calloc(dim, sizeof *avg);
        cnd_fxp_totals_t tot;
        CHECK_EQ_INT(cnd_fxp_decode(avg, &tot, &fp, &lay, sum, 4), 0);
        uint64_t tw = tot.weight;
        CHECK_EQ_INT(tw, (uint64_t)wsum); /* the recovered sample count: survivors only */
        /* the round's metrics are exactly these secure sums, nothing per site */
        CHECK_EQ_INT(rounds[0].samples, tw);
        CHECK_EQ_INT(rounds[0].validated, tot.validated);
        CHECK_EQ_INT(rounds[0].correct, tot.correct);
        CHECK(tot.validated > 0);
        int exact = 1;
        double maxerr = 0;
        for (uint32_t i = 0; i < m0->num_params; i++) {
            float want = m0->params[i] + 1.0f * avg[i];
            if (memcmp(&want, &m1->params[i], sizeof want) != 0) exact = 0;
            double e = fabs((double)avg[i] - fsum[i] / wsum);
            if (e > maxerr) maxerr = e;
        }
        CHECK(exact);
        /* Stochastic rounding moves each site's integer by less than one step, and a step is
         * clip * W / (Q * total weight) in the decoded average: four sites, four steps at most. */
        CHECK(maxerr <= 4.0 * clip * 1000.0 / (127.0 * wsum) * 1.0001);
        int moved = 0;
        for (uint32_t i = 0; i < m0->num_params; i++) moved += m0->params[i] != m1->params[i];
        CHECK(moved > (int)m0->num_params / 2); /* the round did change the model */
        fprintf(stderr, "dropout: %u values, survivors' weight %.0f, max |avg - float avg| %.3g\n",
                dim, wsum, maxerr);
        free(sum);
        free(fsum);
        free(avg);
    }
    for (int s = 0; s < 5; s++) {
        free(d[s].upd);
        free(d[s].x);
    }
    cnd_model_destroy(&m0);
    cnd_model_destroy(&m1);
    fx_rounds_free(rounds, nr);

    /* The coordinator's audit log verifies. */
    char db[400], log[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    fx_path(log, sizeof log, f.root, "verify.log");
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        for (int s = 0; s < 5; s++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_dropout");
}
