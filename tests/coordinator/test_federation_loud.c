/*
 * test_federation_loud.c: an agent the coordinator refuses says so, with what to do, and stops,
 * within seconds; the coordinator names two agents that run with one identity. Real processes
 * on loopback (a coordinator without a job, agents started and watched by this test):
 *   - an agent pinned to the wrong coordinator key (its TCP connection is made, every CurveZMQ
 *     handshake fails): stops, naming [coordinator] public_key;
 *   - an agent whose certificate is valid but not the one enrolled for it: its Hello is refused;
 *     it stops, naming the certificate and `site enroll`;
 *   - two agents with one identity (a copied site directory): the coordinator logs a DUPLICATE
 *     SESSION naming both, the older agent is told its session was superseded and stops, the
 *     newer one keeps running;
 *   - a connected agent whose site is revoked (`site revoke`): told "session ended: revoked",
 *     it stops.
 * The time each took is printed.
 */
#include "check.h"
#include "federation_fixture.h"
#include "node_fixture.h"

#include <string.h>

/* Starts an agent on `ini` logging to `log`, for at most max_s seconds. */
static pid_t s_agent(const char *ini, const char *log, int max_s)
{
    char ms[16];
    snprintf(ms, sizeof ms, "%d", max_s);
    const char *args[] = {"agent", "--config", ini, "--max-seconds", ms, NULL};
    return fx_spawn(log, NULL, args);
}

/* Waits until the file contains `what`; returns the seconds it took, or -1. */
static double s_wait_for(const char *path, const char *what, double timeout_s)
{
    double t0 = fx_now();
    while (fx_now() - t0 < timeout_s) {
        if (fx_file_has(path, what)) return fx_now() - t0;
        fx_sleep_ms(100);
    }
    return -1;
}

/* Writes dir/file, an agent INI for `name` (key identity.key, certificate `cert`) pinned to the
 * coordinator key in `pub`. */
static void s_ini(fx_fed_t *f, const char *dir, const char *file, const char *name,
                  const char *cert, const char *pub, char *ini, size_t cap)
{
    snprintf(ini, cap, "%s/%s", dir, file);
    FILE *fp = fopen(ini, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    fprintf(fp,
            "[site]\nname = %s\ndata = idx:../site-0/images.idx,../site-0/labels.idx\n"
            "[identity]\nkey = identity.key\ncertificate = %s\n[coordinator]\n"
            "endpoint = %s\npublic_key = %s\nca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n",
            name, cert, f->endpoint, pub);
    fclose(fp);
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "loud", 2);
    fx_fed_setup(&f, 100, NULL, 0);
    char clog[400], slog[400], ca[400], cpub[400];
    fx_path(clog, sizeof clog, f.root, "coordinator.log");
    fx_path(slog, sizeof slog, f.root, "setup.log");
    fx_path(ca, sizeof ca, f.root, "ca");
    fx_path(cpub, sizeof cpub, f.coord, "identity.pub");
    const char *cargs[] = {"coordinator",    "run", "--dir", f.coord, "--endpoint", f.endpoint,
                           "--heartbeat-ms", "500", NULL};
    pid_t coord = fx_spawn(clog, NULL, cargs);

    /* 1. Pinned to the wrong coordinator key (site-1's identity, for instance). */
    char wdir[400], wlog[450], wini[450], wrong[450];
    fx_path(wdir, sizeof wdir, f.root, "site-0");
    fx_path(wlog, sizeof wlog, f.root, "wrongkey.log");
    snprintf(wrong, sizeof wrong, "%s/identity.pub", f.site_dir[1]);
    s_ini(&f, wdir, "wrongkey.ini", "site-0", "site.pem", wrong, wini, sizeof wini);
    double t0 = fx_now();
    int st = fx_wait(s_agent(wini, wlog, 60), 60);
    double dt = fx_now() - t0;
    CHECK(st != 0 && st != -1);
    CHECK(fx_file_has(wlog, "handshake"));
    CHECK(fx_file_has(wlog, "[coordinator] public_key"));
    CHECK(fx_file_has(wlog, "What to do"));
    fprintf(stderr, "loud: the agent with a wrong coordinator key stopped after %.1f s\n", dt);
    if (check_failures) fx_dump(wlog);

    /* 2. A valid certificate that is not the enrolled one. */
    char mdir[400], mlog[450], mini[450], mpub[450], c1[450], c2[450];
    fx_path(mdir, sizeof mdir, f.root, "mismatch");
    fx_path(mlog, sizeof mlog, f.root, "mismatch.log");
    const char *kg[] = {"keygen", "--out", mdir, NULL};
    CHECK_EQ_INT(fx_run(slog, kg), 0);
    fx_path(mpub, sizeof mpub, mdir, "identity.pub");
    fx_path(c1, sizeof c1, mdir, "enrolled.pem");
    fx_path(c2, sizeof c2, mdir, "other.pem");
    fx_issue(&f, slog, "mismatch", mpub, c1);
    fx_issue(&f, slog, "mismatch", mpub, c2); /* same key and name, another serial */
    const char *en[] = {"site", "enroll", "mismatch", "--cert", c1, "--dir", f.coord, NULL};
    CHECK_EQ_INT(fx_run(slog, en), 0);
    s_ini(&f, mdir, "agent.ini", "mismatch", "other.pem", cpub, mini, sizeof mini);
    /* It could be a renewal the site installed before the operator enrolled it: the agent
     * says so and what to do, and keeps trying (it picks the file up once enrolled). */
    t0 = fx_now();
    pid_t mp = s_agent(mini, mlog, 60);
    double said = -1;
    while (fx_now() - t0 < 30 && said < 0) {
        if (fx_file_has(mlog, "not the enrolled certificate") && fx_file_has(mlog, "site enroll") &&
            fx_file_has(mlog, "What to do"))
            said = fx_now() - t0;
        fx_sleep_ms(100);
    }
    CHECK(said >= 0);
    CHECK(kill(mp, 0) == 0); /* still running */
    kill(mp, SIGTERM);
    fx_wait(mp, 10);
    fprintf(stderr, "loud: the agent with another certificate said why after %.1f s\n", said);
    if (check_failures) fx_dump(mlog);

    /* 3. Two agents with one identity: site-1's directory copied. */
    char copy[400], cmd[900], log_a[450], log_b[450], ini_b[450];
    fx_path(copy, sizeof copy, f.root, "site-1-copy");
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", f.site_dir[1], copy);
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(log_a, sizeof log_a, "%s/agent.log", f.site_dir[1]);
    snprintf(log_b, sizeof log_b, "%s/agent.log", copy);
    unlink(log_b);
    snprintf(ini_b, sizeof ini_b, "%s/agent.ini", copy);
    pid_t a = s_agent(f.site_ini[1], log_a, 60);
    CHECK(s_wait_for(log_a, "connected to coordinator", 30) >= 0);
    t0 = fx_now();
    pid_t b = s_agent(ini_b, log_b, 60);
    st = fx_wait(a, 30);
    dt = fx_now() - t0;
    CHECK(st != 0 && st != -1);
    CHECK(fx_file_has(log_a, "superseded"));
    CHECK(fx_file_has(log_a, "another agent is running with this site's identity"));
    CHECK(fx_file_has(clog, "site-1: DUPLICATE SESSION"));
    /* the newer one keeps its session */
    int b_running = waitpid(b, NULL, WNOHANG) == 0;
    CHECK(b_running);
    fprintf(stderr, "loud: of two agents with one identity the older stopped after %.1f s\n", dt);
    if (check_failures) {
        fx_dump(log_a);
        fx_dump(log_b);
    }

    /* 4. The newer one is revoked while connected. */
    const char *rv[] = {"site", "revoke", "site-1", "--dir", f.coord, "--reason", "test", NULL};
    t0 = fx_now();
    CHECK_EQ_INT(fx_run(slog, rv), 0);
    st = fx_wait(b, 30);
    dt = fx_now() - t0;
    CHECK(st != 0 && st != -1);
    CHECK(fx_file_has(log_b, "session ended: revoked"));
    CHECK(fx_file_has(log_b, "What to do"));
    fprintf(stderr, "loud: the revoked agent stopped %.1f s after `site revoke`\n", dt);
    if (check_failures) fx_dump(log_b);

    kill(coord, SIGTERM);
    CHECK_EQ_INT(fx_wait(coord, 20), 0);
    CHECK(fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action = 'session.end' AND"
                        " json_extract(entry, '$.details.reason') = 'superseded'") == 1);
    CHECK(fx_db_int(&f, "SELECT count(*) FROM audit_entry WHERE action = 'session.end' AND"
                        " json_extract(entry, '$.details.reason') = 'revoked'") == 1);
    if (check_failures) fx_dump(clog);
    fx_fed_cleanup(&f);
    return check_result("test_federation_loud");
}
