/*
 * test_federation_autoc.c: a federated AutoCompress search (coordinator/coord_autoc.h) with a
 * coordinator and three site agents as real processes on loopback.
 *
 * Four candidates for the fixture's 1x8x8, 4-class data: a random linear model, a hand-built
 * linear model that sums each quadrant (near-perfect on the fixture's data: class c brightens
 * quadrant c) frozen into an int8 artifact (.cndq: sites run it in the integer runtime), a random
 * two-layer model, and the hand-built model negated (near-zero). Three
 * evaluation rounds: all four in round 1, the better two in round 2, the best in round 3.
 *
 * The coordinator is scripted as a malicious one (CND_COORD_EVIL="replay:1,rerun:2", test builds
 * only): asked for round 2, it runs round 1 again with the exact SecAgg+ parameters (a replay);
 * asked for round 3, round 2 again as a new attempt (a rerun): each a second sum of the same
 * evaluation, which another set of sites would turn into one site's counts. Every site must
 * refuse both.
 *
 * Checks:
 *   - the job completes; its model version 1 is the hand-built candidate (byte for byte), published
 *     as the job's signed artifact (registry, manifest), and its recorded accuracy is exactly (sum
 * over sites and rounds of its correct counts) / (sum of validated counts), with each site's counts
 * from its test-only dump (CND_AGENT_DEBUG_DUMP);
 *   - every per-round sum the coordinator stored equals the sum of the three sites' counts, and
 *     the negated and random candidates left the race after round 1;
 *   - each site evaluated disjoint thirds of its validation split in the three rounds (13 + 13 +
 *     14 of its 40 samples), so no record is counted in two sums;
 *   - the replay and the rerun were refused by every site (attempt 2 of rounds 1 and 2 ends
 *     "retry": nobody advertised), each site served one attempt per round;
 *   - `job candidates --json` holds the pick and the stored totals and rounds;
 *   - what the coordinator received (--capture: every frame) never holds a site's count vector
 *     in the clear: neither the packed ring vector the site masked nor its counts as 64-bit
 *     integers; only masked vectors reached it (the scanner is shown to find a site's key).
 */
#include "autocompress_fed.h"
#include "check.h"
#include "coord_autoc.h"
#include "coord_quant.h"
#include "coord_store.h"
#include "data.h"
#include "fixedpoint.h"
#include "quant_fed.h"
#include "identity.h"
#include "json.h"
#include "federation_fixture.h"

#include <sodium.h>
#include <sqlite3.h>
#include <string.h>

#define S_K 4

static int s_contains(const uint8_t *hay, size_t n, const void *needle, size_t k)
{
    if (k == 0 || n < k) return 0;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

/* Candidate `which` (see the top) saved to path; the hand-built one (1) frozen to int8 with
 * calibration samples calib. */
static void s_candidate(const char *path, int which, const cnd_dataset_t *calib)
{
    cnd_model_t *m = NULL;
    const char *arch = which == 2 ? "flatten dense(8) relu dense(4)" : "flatten dense(4)";
    CHECK_EQ_INT(cnd_model_new(&m, arch, (cnd_shape_t){1, 8, 8}, 11 + (uint64_t)which), 0);
    if (!m) return;
    m->norm_mean[0] = 100.0f;
    m->norm_std[0] = 60.0f;
    if (which == 1 || which == 3) { /* weight (4, 64) then bias (4) */
        float sign = which == 1 ? 1.0f : -1.0f;
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 64; p++) {
                int y = p / 8, x = p % 8, q = (y >= 4) * 2 + (x >= 4);
                m->params[c * 64 + p] = q == c ? sign : 0.0f;
            }
        for (int c = 0; c < 4; c++) m->params[256 + c] = 0.0f;
    }
    if (which == 1) {
        uint8_t *art = NULL;
        size_t alen = 0;
        CHECK_EQ_INT(cnd_fedq_freeze(&art, &alen, m, calib, 8), 0);
        if (art) CHECK_EQ_INT(cnd_file_write_atomic(path, art, alen, 0644), 0);
        free(art);
    } else {
        CHECK_EQ_INT(cnd_model_save(m, path), 0);
    }
    cnd_model_destroy(&m);
}

/* Site s's counts of round r from its dump: validated and k correct counts. */
static int s_dump(fx_fed_t *f, int s, uint32_t r, uint64_t *validated, uint64_t *correct,
                  uint32_t k)
{
    char p[400];
    snprintf(p, sizeof p, "%s/dump/%s-j1-r%u.eval", f->site_dir[s], f->site_name[s], r);
    FILE *fp = fopen(p, "r");
    if (!fp) return -1;
    unsigned long long v;
    int ok = fscanf(fp, "%llu", &v) == 1;
    *validated = v;
    for (uint32_t i = 0; ok && i < k; i++) {
        ok = fscanf(fp, "%llu", &v) == 1;
        correct[i] = v;
    }
    fclose(fp);
    return ok ? 0 : -1;
}

/* The capture holds no site's counts in the clear (as the packed vector or as u64s). */
static void s_check_capture(fx_fed_t *f, const char *cap, uint32_t round, uint32_t k)
{
    uint8_t *c = NULL;
    size_t cn = 0;
    CHECK_EQ_INT(cnd_file_read(cap, 1 << 28, &c, &cn), 0);
    if (!c) return;
    for (int s = 0; s < 3; s++) {
        uint64_t v = 0, corr[S_K] = {0};
        CHECK_EQ_INT(s_dump(f, s, round, &v, corr, k), 0);
        cnd_autoc_fed_layout_t lay;
        CHECK_EQ_INT(cnd_autoc_fed_layout(&lay, k, 3, 20000), 0);
        uint32_t x[64];
        cnd_autoc_fed_encode(x, &lay, v, corr);
        uint8_t packed[256];
        size_t pb = cnd_ring_packed_bytes(lay.len, lay.bits);
        CHECK(pb <= sizeof packed);
        cnd_ring_pack(packed, x, lay.len, lay.bits);
        CHECK(!s_contains(c, cn, packed, pb));
        uint64_t u[1 + S_K];
        u[0] = v;
        for (uint32_t i = 0; i < k; i++) u[1 + i] = corr[i];
        CHECK(!s_contains(c, cn, u, (1 + k) * sizeof(uint64_t)));
    }
    uint8_t pk[32];
    char kp[400];
    fx_path(kp, sizeof kp, f->site_dir[0], "identity.pub");
    CHECK_EQ_INT(cnd_pubkey_read(pk, kp), 0);
    CHECK(s_contains(c, cn, pk, sizeof pk)); /* the scanner finds what was sent */
    free(c);
}

/* Every stored per-round sum is the sum of the sites' dumps; returns the pick's totals. */
static void s_check_sums(fx_fed_t *f, cnd_cstore_t *st, uint32_t pick, uint64_t *pv, uint64_t *pc)
{
    *pv = *pc = 0;
    static const uint32_t want_k[] = {4, 2, 1}, slice[] = {13, 13, 14}; /* 40 samples in 3 */
    for (uint32_t r = 1; r <= 3; r++) {
        uint32_t ids[S_K], k = 0;
        for (uint32_t i = 0; i < S_K; i++) {
            uint64_t v, c;
            if (cnd_autoc_result(st, 1, r, i, &v, &c) == 0)
                ids[k++] = i;
            else
                cnd_err_clear();
        }
        CHECK_EQ_INT(k, want_k[r - 1]);
        uint64_t sv = 0, sc[S_K] = {0};
        for (int s = 0; s < 3; s++) {
            uint64_t v = 0, c[S_K] = {0};
            CHECK_EQ_INT(s_dump(f, s, r, &v, c, k), 0);
            CHECK_EQ_INT(v, slice[r - 1]); /* round r's third of the site's 40 samples */
            sv += v;
            for (uint32_t i = 0; i < k; i++) sc[i] += c[i];
        }
        for (uint32_t i = 0; i < k; i++) {
            uint64_t v = 0, c = 0;
            CHECK_EQ_INT(cnd_autoc_result(st, 1, r, ids[i], &v, &c), 0);
            CHECK_EQ_INT(v, sv);
            CHECK_EQ_INT(c, sc[i]);
            if (ids[i] == pick) {
                *pv += v;
                *pc += c;
            }
            if (r > 1) CHECK(ids[i] != 3); /* the negated model was halved away first */
            if (r == 3) CHECK_EQ_INT(ids[i], pick);
        }
    }
}

/* Round 1 attempt 1 and round 2 attempt 1 ok; the replay (attempt 2) and rerun (attempt 3) of
 * round 1 refused by every site; each site served exactly one attempt of each round. */
static void s_check_rounds(fx_fed_t *f)
{
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    CHECK_EQ_INT(fx_rounds(f, &r, &n), 0);
    CHECK_EQ_INT(n, 5);
    for (size_t i = 0; i < n; i++) {
        int honest = r[i].attempt == 1;
        CHECK(strcmp(r[i].outcome, honest ? "ok" : "retry") == 0);
        if (honest) CHECK_EQ_INT(r[i].survivors, 3);
        if (!honest) CHECK(r[i].round <= 2 && strstr(r[i].reason, "did not advertise") != NULL);
    }
    fx_rounds_free(r, n);
    for (int s = 0; s < 3; s++) {
        char adb[400];
        fx_path(adb, sizeof adb, f->site_dir[s], "agent.db");
        sqlite3 *db = NULL;
        CHECK_EQ_INT(sqlite3_open_v2(adb, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT count(*), sum(attempt != 1) FROM agent_served",
                                        -1, &st, NULL),
                     SQLITE_OK);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
        CHECK_EQ_INT(sqlite3_column_int(st, 0), 3);
        CHECK_EQ_INT(sqlite3_column_int(st, 1), 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

/* `job candidates 1 --json` says what the store holds: the pick, and per candidate its totals
 * and one entry per round it was evaluated in. */
static void s_check_json(fx_fed_t *f, cnd_cstore_t *st)
{
    char out[400];
    fx_path(out, sizeof out, f->root, "candidates.json");
    const char *show[] = {"job", "candidates", "1", "--dir", f->coord, "--json", NULL};
    CHECK_EQ_INT(fx_run(out, show), 0);
    uint8_t *text = NULL;
    size_t n = 0;
    CHECK_EQ_INT(cnd_file_read(out, 1 << 20, &text, &n), 0);
    cnd_json_t *j = NULL;
    if (text) CHECK_EQ_INT(cnd_json_parse(&j, (const char *)text, n), 0);
    free(text);
    cnd_autoc_cand_t *l = NULL;
    size_t nl = 0;
    CHECK_EQ_INT(cnd_autoc_list(st, 1, &l, &nl), 0);
    int64_t v = -1;
    const cnd_json_t *c = j ? cnd_json_get(j, "candidates") : NULL;
    CHECK(j && cnd_json_integer(cnd_json_get(j, "picked"), 0, 63, &v) && v == 1);
    CHECK(c && c->n == nl && nl == S_K);
    for (size_t i = 0; c && i < c->n && i < nl; i++) {
        const cnd_json_t *x = c->items[i], *r = cnd_json_get(x, "rounds");
        CHECK(cnd_json_integer(cnd_json_get(x, "validated"), 0, 1 << 30, &v) &&
              (uint64_t)v == l[i].validated);
        CHECK(cnd_json_integer(cnd_json_get(x, "correct"), 0, 1 << 30, &v) &&
              (uint64_t)v == l[i].correct);
        CHECK(r && r->n == l[i].rounds);
    }
    free(l);
    cnd_json_free(&j);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    fx_fed_t f;
    fx_fed_init(&f, "autoc", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    char cands[4 * 420] = "", teacher[400], log[400], img[400], lab[400];
    fx_path(img, sizeof img, f.site_dir[0], "images.idx"); /* stands in for public data */
    fx_path(lab, sizeof lab, f.site_dir[0], "labels.idx");
    cnd_dataset_t *calib = NULL;
    CHECK_EQ_INT(cnd_data_load_idx(&calib, img, lab), 0);
    for (int i = 0; calib && i < S_K; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/cand%d.%s", f.root, i, i == 1 ? "cndq" : "cnd");
        s_candidate(p, i, calib);
        if (i) strcat(cands, ",");
        strcat(cands, p);
    }
    fx_path(teacher, sizeof teacher, f.root, "teacher.cnd");
    fx_path(log, sizeof log, f.root, "setup.log");
    const char *create[] = {"job",
                            "create",
                            "--dir",
                            f.coord,
                            "--kind",
                            "autocompress",
                            "--candidates",
                            cands,
                            "--teacher",
                            teacher,
                            "--rounds",
                            "3",
                            "--sites",
                            "3",
                            "--masked-ms",
                            "20000",
                            "--advertise-ms",
                            "3000",
                            NULL};
    CHECK_EQ_INT(fx_run(log, create), 0);
    char cap[400];
    fx_path(cap, sizeof cap, f.root, "capture.bin");
    setenv("CND_COORD_EVIL", "replay:1,rerun:2", 1);
    pid_t coord = fx_start_coordinator(&f, cap);
    unsetenv("CND_COORD_EVIL");
    pid_t ag[3];
    for (int s = 0; s < 3; s++) {
        char dump[320], envd[360];
        snprintf(dump, sizeof dump, "%s/dump", f.site_dir[s]);
        CHECK_EQ_INT(mkdir(dump, 0700), 0);
        snprintf(envd, sizeof envd, "CND_AGENT_DEBUG_DUMP=%s", dump);
        const char *env[] = {envd, NULL};
        ag[s] = fx_start_agent(&f, s, env);
    }
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 60), 0);
    CHECK_EQ_INT(fx_wait(coord, 30), 0);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    s_check_rounds(&f);

    char db[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    cnd_cstore_t *st = NULL;
    CHECK_EQ_INT(cnd_cstore_open_readonly(&st, db), 0);
    uint32_t pick = 99;
    if (st) CHECK_EQ_INT(cnd_autoc_pick(st, 1, &pick), 0);
    CHECK_EQ_INT(pick, 1);
    uint64_t pv = 0, pc = 0;
    if (st) s_check_sums(&f, st, pick, &pv, &pc);
    if (st) s_check_json(&f, st);
    CHECK(pv > 0 && pc * 10 > pv * 9); /* the hand-built model is near perfect */
    /* version 1 of the job's artifact is the pick, signed, with the summed counts' accuracy */
    cnd_model_rec_t m;
    uint8_t *blob = NULL, *want = NULL;
    size_t len = 0, wlen = 0;
    if (st) CHECK_EQ_INT(cnd_fedq_artifact(st, 1, 1, &m, &blob, &len), 0);
    if (blob) CHECK(m.manifest != NULL && m.version == 1);
    char p1[400];
    snprintf(p1, sizeof p1, "%s/cand1.cndq", f.root);
    CHECK_EQ_INT(cnd_file_read(p1, 1 << 20, &want, &wlen), 0);
    CHECK(blob && want && len == wlen && memcmp(blob, want, len) == 0);
    if (blob) {
        CHECK(m.accuracy == (double)pc / (double)pv);
        cnd_model_rec_free(&m);
    }
    free(blob);
    free(want);
    cnd_cstore_close(&st);
    s_check_capture(&f, cap, 1, 4);
    s_check_capture(&f, cap, 2, 2);
    s_check_capture(&f, cap, 3, 1);

    /* the audit log verifies */
    const char *vc[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, vc), 0);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        fx_dump(log);
        for (int s = 0; s < 3; s++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    cnd_data_destroy(&calib);
    fx_fed_cleanup(&f);
    return check_result("test_federation_autoc");
}
