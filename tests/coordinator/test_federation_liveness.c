/*
 * test_federation_liveness.c: a round never waits for a peer that is gone, and a peer whose
 * certificate is revoked while it is connected is cut off. Real processes on loopback (a
 * coordinator, three site agents) and "mallory", an enrolled site scripted by this test. Every
 * phase deadline is 60 s, so a round that waits for a deadline would show.
 *   1. mallory accepts the job and is selected for round 1 with site-0 and site-1, then stays
 *      silent. `job show` names it as whom the advertise phase waits for.
 *   2. The CA revokes mallory's certificate (`ca revoke`, a new CRL). The coordinator notices
 *      within seconds, tells mallory its session ended, records session.end, and round 1's
 *      attempt ends at once ("retry": the neighbour graph needs every participant's keys, and
 *      mallory gave none); the next attempt runs without it. A JobResponse mallory sends afterwards
 * on the same connection is refused.
 *   3. site-2 joins for round 2 and is killed (SIGKILL, by fault injection) right after it
 *      advertised its keys. It is a dropout within 10 s (the figure is printed), round 2
 *      completes with the other two, and site-2's agent, restarted 3 s after the kill with the
 *      same identity, takes part in round 3.
 *   4. In round 4 site-1 freezes (SIGSTOP, by fault injection) after advertising: its TCP
 *      connection stays open and only the ZMTP heartbeats stop. It too is a dropout within 10 s,
 *      and round 4 completes with the other two (in a second attempt when the frozen process
 *      had not yet flushed its advert).
 */
#include "check.h"
#include "clock.h"
#include "coord_store.h"
#include "federation_fixture.h"
#include "node_fixture.h"

#include <string.h>

/* The coordinator's record of round `round` (attempt 1) of job 1, or 0 if it has none yet. */
static int s_round(fx_fed_t *f, uint32_t round, cnd_round_rec_t *out)
{
    cnd_round_rec_t *r = NULL;
    size_t n = 0;
    int found = 0;
    if (fx_rounds(f, &r, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (r[i].round == round && !found) {
                *out = r[i];
                memset(&r[i], 0, sizeof r[i]);
                found = 1;
            }
        fx_rounds_free(r, n);
    }
    cnd_err_clear();
    return found;
}

static uint32_t s_status_of(const cnd_round_rec_t *r, const char *name)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (strcmp(r->sites[i].name, name) == 0) return r->sites[i].status;
    return 0;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "liveness", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    fx_node_t mal;
    fx_node_enroll(&f, &mal, "mallory", "site");
    const char *job[] = {
        "--rounds",       "4",     "--sites",        "3",     "--quorum",   "2",
        "--join-wait-ms", "60000", "--advertise-ms", "60000", "--share-ms", "60000",
        "--masked-ms",    "60000", "--unmask-ms",    "60000", NULL};
    fx_job_create(&f, job);
    pid_t coord = fx_start_coordinator(&f, NULL);
    pid_t ag[3] = {0, 0, 0};

    /* 1. mallory joins and is selected with site-0 and site-1. */
    fx_node_connect(&mal, f.endpoint);
    CHECK_EQ_INT(fx_node_hello(&mal), 0);
    cnd_proto_msg_t *m = fx_node_wait(&mal, CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE, 20);
    CHECK(m != NULL);
    uint64_t jobid = m ? m->env->job_id : 1;
    cnd_proto_msg_destroy(&m);
    Condenser__JobResponse jr;
    condenser__job_response__init(&jr);
    jr.accept = 1;
    CHECK_EQ_INT(fx_node_send(&mal, CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE, &jr, jobid, 0), 0);
    const char *freeze[] = {"CND_AGENT_FAULT=freeze:4", NULL};
    for (int s = 0; s < 2; s++) ag[s] = fx_start_agent_for(&f, s, s == 1 ? freeze : NULL, 150);
    m = fx_node_wait(&mal, CONDENSER__MSG_TYPE__MSG_ROUND_START, 40);
    CHECK(m != NULL);
    cnd_proto_msg_destroy(&m);

    /* `job show` names whom the phase waits for: mallory, once the two agents advertised. */
    int named = 0;
    double end = fx_now() + 30;
    while (!named && fx_now() < end) {
        char *js = fx_job_show(&f, 1);
        if (js && strstr(js, "\"waiting_for\":[\"mallory\"]")) named = 1;
        free(js);
        if (!named) fx_sleep_ms(300);
    }
    CHECK(named);
    char *txt = fx_job_show(&f, 0);
    CHECK(txt && strstr(txt, "waiting for mallory"));
    if (txt) fprintf(stderr, "%s", txt);
    free(txt);

    /* 2. The CA revokes mallory's certificate while it is connected. */
    char ca[400], cacrt[450], crl[450], slog[400];
    fx_path(ca, sizeof ca, f.root, "ca");
    fx_path(cacrt, sizeof cacrt, ca, "ca.crt");
    fx_path(crl, sizeof crl, ca, "crl.pem");
    fx_path(slog, sizeof slog, f.root, "setup.log");
    cnd_cert_info_t ci;
    CHECK_EQ_INT(
        cnd_cert_check(&ci, cacrt, crl, mal.der, mal.der_len, "site", "mallory", cnd_unix_time()),
        0);
    char serial[32];
    snprintf(serial, sizeof serial, "%llu", (unsigned long long)ci.serial);
    const char *rv[] = {"ca", "revoke", "--dir", ca, "--serial", serial, NULL};
    double t_rev = fx_now();
    CHECK_EQ_INT(fx_run(slog, rv), 0);
    char text[600] = "";
    int code = fx_node_error(&mal, 30, text, sizeof text);
    double t_cut = fx_now();
    CHECK_EQ_INT(code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    CHECK(strncmp(text, "session ended:", 14) == 0 && strstr(text, "revoked"));
    fprintf(stderr, "liveness: mallory's session ended %.2f s after `ca revoke` (%s)\n",
            t_cut - t_rev, text);
    /* anything more on that connection is refused, not taken */
    jr.accept = 1;
    CHECK_EQ_INT(fx_node_send(&mal, CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE, &jr, jobid, 0), 0);
    code = fx_node_error(&mal, 10, text, sizeof text);
    CHECK_EQ_INT(code, CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED);
    /* round 1 goes on without mallory, long before its 60 s advertise deadline */
    cnd_round_rec_t r1;
    memset(&r1, 0, sizeof r1);
    int done1 = 0;
    end = fx_now() + 40;
    while (!done1 && fx_now() < end) {
        if (s_round(&f, 1, &r1)) {
            done1 = r1.outcome[0] != 0;
            if (!done1) cnd_round_rec_free(&r1);
        }
        if (!done1) fx_sleep_ms(200);
    }
    CHECK(done1);
    if (done1) {
        CHECK(strcmp(r1.outcome, "retry") == 0);
        CHECK(s_status_of(&r1, "mallory") & CND_RSITE_LOST);
        fprintf(stderr, "liveness: round 1 ended %.1f s after the revocation\n", fx_now() - t_rev);
        cnd_round_rec_free(&r1);
    }

    /* 3. site-2 joins and kills itself right after advertising in round 2. */
    const char *fault[] = {"CND_AGENT_FAULT=advertise:2", NULL};
    ag[2] = fx_start_agent_for(&f, 2, fault, 150);
    double t_kill = 0;
    int st2 = -1;
    end = fx_now() + 60;
    while (fx_now() < end) {
        int st;
        if (waitpid(ag[2], &st, WNOHANG) == ag[2]) {
            t_kill = fx_now();
            st2 = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
            break;
        }
        fx_sleep_ms(10);
    }
    CHECK_EQ_INT(st2, 128 + SIGKILL);
    double t_drop = 0;
    int restarted = 0;
    end = fx_now() + 30;
    while (t_kill > 0 && fx_now() < end && (!t_drop || !restarted)) {
        cnd_round_rec_t r2;
        if (!t_drop && s_round(&f, 2, &r2)) {
            if ((s_status_of(&r2, "site-2") & CND_RSITE_LOST) || r2.outcome[0]) t_drop = fx_now();
            cnd_round_rec_free(&r2);
        }
        if (!restarted && fx_now() - t_kill >= 3.0) {
            ag[2] = fx_start_agent_for(&f, 2, NULL, 150); /* same identity, 3 s later */
            restarted = 1;
        }
        fx_sleep_ms(50);
    }
    CHECK(t_drop > 0);
    fprintf(stderr, "liveness: site-2 killed; a dropout of round 2 after %.2f s\n",
            t_drop - t_kill);
    CHECK(t_drop - t_kill <= 10.0);
    CHECK(restarted);

    /* 4. site-1 freezes after advertising in round 4. */
    double t_stop = 0;
    end = fx_now() + 60;
    while (fx_now() < end) {
        int st;
        if (waitpid(ag[1], &st, WNOHANG | WUNTRACED) == ag[1] && WIFSTOPPED(st)) {
            t_stop = fx_now();
            break;
        }
        fx_sleep_ms(10);
    }
    CHECK(t_stop > 0);
    double t_drop4 = 0;
    end = fx_now() + 30;
    while (t_stop > 0 && !t_drop4 && fx_now() < end) {
        cnd_round_rec_t r4;
        if (s_round(&f, 4, &r4)) {
            if ((s_status_of(&r4, "site-1") & CND_RSITE_LOST) || r4.outcome[0]) t_drop4 = fx_now();
            cnd_round_rec_free(&r4);
        }
        fx_sleep_ms(50);
    }
    CHECK(t_drop4 > 0);
    fprintf(stderr, "liveness: site-1 frozen; a dropout of round 4 after %.2f s\n",
            t_drop4 - t_stop);
    CHECK(t_drop4 - t_stop <= 10.0);
    kill(ag[1], SIGKILL);
    CHECK_EQ_INT(fx_wait(ag[1], 10), 128 + SIGKILL);

    CHECK_EQ_INT(fx_wait(coord, 120), 0);
    for (int s = 0; s < 3; s += 2) CHECK_EQ_INT(fx_wait(ag[s], 30), 0);
    char state[32] = "";
    CHECK_EQ_INT(fx_job_state(&f, state, sizeof state), 0);
    CHECK(strcmp(state, "completed") == 0);
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    CHECK_EQ_INT(fx_rounds(&f, &r, &nr), 0);
    /* Round 1's first attempt lacked mallory's keys ("retry"); rounds 2 and 4 may lack the
     * keys of site-2 (killed) or site-1 (frozen) when its advert had not left the socket yet
     * (the CI machine saw round 2 retried). */
    CHECK(nr >= 5 && nr <= 7);
    for (size_t i = 0; i < nr; i++) {
        fprintf(stderr, "round %u: %s, %u survivors of %u %s\n", r[i].round, r[i].outcome,
                r[i].survivors, r[i].n, r[i].reason);
        int last = i + 1 == nr || r[i + 1].round != r[i].round;
        if (!last) {
            CHECK(strcmp(r[i].outcome, "retry") == 0 && r[i].round != 3);
            continue;
        }
        CHECK(r[i].round != 1 || r[i].attempt == 2);
        CHECK(strcmp(r[i].outcome, "ok") == 0);
        if (r[i].round == 1) /* with site-2 too when it had joined by then */
            CHECK(r[i].survivors == 2 || r[i].survivors == 3);
        else
            CHECK_EQ_INT(r[i].survivors, r[i].round == 3 ? 3 : 2);
        if (r[i].round == 2) /* a dropout in this attempt, or left out of it after a retry */
            CHECK((s_status_of(&r[i], "site-2") & CND_RSITE_LOST) || r[i].attempt == 2);
        if (r[i].round == 4) /* a dropout in this attempt, or left out of it after a retry */
            CHECK((s_status_of(&r[i], "site-1") & CND_RSITE_LOST) || r[i].attempt == 2);
    }
    fx_rounds_free(r, nr);

    /* The audit log has both session ends and verifies. */
    CHECK(fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action = 'session.end' AND"
                        " json_extract(entry, '$.details.name') = 'mallory' AND"
                        " json_extract(entry, '$.details.reason') = 'certificate'") == 1);
    CHECK(fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action = 'session.end' AND"
                        " json_extract(entry, '$.details.name') = 'site-2' AND"
                        " json_extract(entry, '$.details.reason') = 'connection lost'") >= 1);
    char db[400], log[400];
    fx_path(db, sizeof db, f.coord, "coordinator.db");
    fx_path(log, sizeof log, f.root, "verify.log");
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(fx_run(log, ver), 0);
    fx_node_free(&mal);
    if (check_failures) {
        char p[400];
        fx_path(p, sizeof p, f.root, "coordinator.log");
        fx_dump(p);
        for (int s = 0; s < 3; s++) {
            snprintf(p, sizeof p, "%s/agent.log", f.site_dir[s]);
            fx_dump(p);
        }
    }
    fx_fed_cleanup(&f);
    return check_result("test_federation_liveness");
}
