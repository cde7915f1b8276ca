/*
 * test_federation_canary.c: nothing derived from one record leaves a site, and what left is
 * accounted for.
 *   - Site 0's data holds a unique canary: 32 random bytes planted as the first pixels of one
 *     image. The coordinator appends every frame it receives to a capture file (--capture).
 *     After a whole job, no 8-byte window of the canary appears in the capture, neither as raw
 *     bytes nor as the float32 values the agent computes with (raw, or normalised with the
 *     student's statistics). The scanner is shown to work: it does find site 0's identity key,
 *     which its Hello carries.
 *   - Site 2's local step fails in round 1 (CND_AGENT_FAULT=train:1): it reports the failure,
 *     the round completes with the other two sites, and site 2 takes part in round 2.
 *   - Site 3's data file is corrupt: its agent refuses the job with the reason and keeps running
 *     (it stops only at its --max-seconds), and the job goes on with the other three.
 *   - For every site, `condenser audit reconcile` finds the coordinator received exactly what
 *     the site logged as sent, and every audit log verifies.
 */
#include "agent_store.h"
#include "check.h"
#include "coord_store.h"
#include "identity.h"
#include "secagg.h"
#include "federation_fixture.h"

#include <signal.h>
#include <sodium.h>
#include <string.h>

static int s_contains(const uint8_t *hay, size_t n, const void *needle, size_t k)
{
    if (k == 0 || n < k) return 0;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

/* 1 if any k-byte window of pat[0..len) occurs in hay. */
static int s_any_window(const uint8_t *hay, size_t n, const uint8_t *pat, size_t len, size_t k)
{
    for (size_t i = 0; i + k <= len; i++)
        if (s_contains(hay, n, pat + i, k)) return 1;
    return 0;
}

int main(void)
{
    uint8_t canary[32];
    if (sodium_init() < 0) return 1;
    randombytes_buf(canary, sizeof canary);
    fx_fed_t f;
    fx_fed_init(&f, "canary", 4);
    fx_fed_setup(&f, 200, canary, sizeof canary);
    /* site 3: a truncated image file */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/images.idx", f.site_dir[3]);
    CHECK_EQ_INT(truncate(bad, 100), 0);
    const char *job[] = {"--rounds", "2",           "--sites", "3", "--quorum",
                         "2",        "--masked-ms", "20000",   NULL};
    fx_job_create(&f, job);
    char cap[400];
    fx_path(cap, sizeof cap, f.root, "capture.bin");
    /* No --until-done: the coordinator must outlive the broken site, whose last heartbeats it
     * would otherwise miss (its egress log records a message before it leaves, so a heartbeat
     * sent after the coordinator exited shows as sent and not received). Stopped with SIGTERM
     * once every site has ended. */
    char clog[400];
    fx_path(clog, sizeof clog, f.root, "coordinator.log");
    const char *cargs[] = {"coordinator",    "run", "--dir",     f.coord, "--endpoint", f.endpoint,
                           "--heartbeat-ms", "500", "--capture", cap,     NULL};
    pid_t coord = fx_spawn(clog, NULL, cargs);
    pid_t ag[3];
    for (int s = 0; s < 3; s++) {
        const char *env[] = {s == 2 ? "CND_AGENT_FAULT=train:1" : NULL, NULL};
        ag[s] = fx_start_agent(&f, s, env);
    }
    char blog[400];
    snprintf(blog, sizeof blog, "%s/agent.log", f.site_dir[3]);
    const char *bargs[] = {"agent", "--config", f.site_ini[3], "--max-seconds", "6", NULL};
    pid_t broken = fx_spawn(blog, NULL, bargs);
    for (int s = 0; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 60), 0);
    /* the broken site stayed up until its own limit and said why it refused */
    CHECK_EQ_INT(fx_wait(broken, 20), 1);
    CHECK_EQ_INT(kill(coord, SIGTERM), 0);
    CHECK_EQ_INT(fx_wait(coord, 20), 0);
    uint8_t *bl = NULL;
    size_t bln = 0;
    CHECK_EQ_INT(cnd_file_read(blog, 1 << 20, &bl, &bln), 0);
    CHECK(bl && strstr((char *)bl, "refused") && strstr((char *)bl, "images.idx"));
    CHECK(bl && strstr((char *)bl, "gave up after 6 s"));
    free(bl);

    /* Rounds: site 2 failed locally in round 1 and was in round 2. */
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    CHECK_EQ_INT(nr, 2);
    for (size_t i = 0; i < nr; i++) {
        CHECK(strcmp(r[i].outcome, "ok") == 0);
        CHECK_EQ_INT(r[i].survivors, r[i].round == 1 ? 2 : 3);
        for (uint32_t k = 0; k < r[i].n; k++)
            if (strcmp(r[i].sites[k].name, "site-2") == 0) {
                int failed = !!(r[i].sites[k].status & CND_RSITE_FAILED);
                CHECK_EQ_INT(failed, r[i].round == 1);
                CHECK_EQ_INT(!!(r[i].sites[k].status & CND_SECAGG_ST_MASKED), r[i].round == 2);
            }
    }
    fx_rounds_free(r, nr);

    /* The capture: every byte the coordinator received in the whole job. */
    uint8_t *c = NULL;
    size_t cn = 0;
    CHECK_EQ_INT(cnd_file_read(cap, 1 << 28, &c, &cn), 0);
    /* ...which is everything the sites logged as sent: each frame plus its 4-byte length. */
    uint64_t sent = 0, frames = 0;
    for (int s = 0; s < 4; s++) {
        char adb[400];
        fx_path(adb, sizeof adb, f.site_dir[s], "agent.db");
        cnd_astore_t *as = NULL;
        uint64_t b = 0, k = 0;
        CHECK_EQ_INT(cnd_astore_open(&as, adb, 1), 0);
        if (as) CHECK_EQ_INT(cnd_astore_totals(as, 'E', 0, &b, &k), 0);
        cnd_astore_close(&as);
        sent += b;
        frames += k;
    }
    CHECK(frames > 20);
    CHECK_EQ_INT(cn, sent + 4 * frames);
    uint8_t pk[32];
    char kp[400];
    fx_path(kp, sizeof kp, f.site_dir[0], "identity.pub");
    CHECK_EQ_INT(cnd_pubkey_read(pk, kp), 0);
    CHECK(s_contains(c, cn, pk, sizeof pk)); /* the scanner finds what was sent */
    CHECK(!s_any_window(c, cn, canary, sizeof canary, 8));
    float raw[32], norm[32];
    for (int i = 0; i < 32; i++) {
        raw[i] = (float)canary[i];
        norm[i] = ((float)canary[i] - 100.0f) / 60.0f; /* the teacher's (and student's) stats */
    }
    CHECK(!s_any_window(c, cn, (const uint8_t *)raw, sizeof raw, 8));
    CHECK(!s_any_window(c, cn, (const uint8_t *)norm, sizeof norm, 8));
    free(c);

    /* What each site sent is exactly what the coordinator received; every log verifies. */
    char db[400], log[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    fx_path(log, sizeof log, f.root, "audit.log");
    const char *vc[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, vc), 0);
    for (int s = 0; s < 4; s++) {
        char adb[400];
        fx_path(adb, sizeof adb, f.site_dir[s], "agent.db");
        const char *rec[] = {"audit", "reconcile", adb, db, NULL};
        CHECK_EQ_INT(fx_run(log, rec), 0);
        const char *va[] = {"audit", "verify", adb, NULL};
        CHECK_EQ_INT(fx_run(log, va), 0);
    }
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
    fx_fed_cleanup(&f);
    return check_result("test_federation_canary");
}
