/*
 * test_identity_lifecycle.c: a federation through 400 simulated days of 30-day certificates, as
 * real processes on loopback (one coordinator, three agents, the CLI), with the wall clock of
 * every process moved by CND_TEST_CLOCK_FILE (test builds only) and never restarted for a
 * renewal. Every 13 simulated days each certificate with less than 14 days left is renewed:
 * `ca issue --renew`, installed at the site, `site renew` at the coordinator (the first time the
 * agent's warning and `site list`'s are checked before); the CA's revocation list is re-signed
 * by each issue, or by `ca crl` when it has less than 15 days left. Along the way:
 *   - site-1 rotates its key on day 104: the coordinator is told first, then the site installs
 *     key and certificate; the running agent switches to the new key by itself, and an agent
 *     started with the old key is refused; on day 312 the agent restarts with [identity]
 *     audit_key (its audit log stays signed by the key that created it);
 *   - site-2 lets its certificate expire once (after day 150): its session ends, its hellos are
 *     refused naming the expiry, `site list` says EXPIRED, a job completes without it; once
 *     renewed it is accepted again without a restart;
 *   - on day 260 a renewal is enrolled before the site installs it: the stale hello is refused
 *     as superseded until the file arrives;
 *   - a one-round job every 52 days completes with every site whose certificate is valid.
 * Last, a site whose clock runs 40 days ahead refuses its neighbours' certificates as expired
 * (the other direction of the expiry check) while the others complete the job without it.
 * At the end, the coordinator's audit log verifies and holds one cert.renew entry per renewal
 * (exactly one of them a rotation), the agents' logs hold the expiry warnings, and the jobs'
 * rounds name the rotated site by its new fingerprint.
 */
#include "ca.h"
#include "cert.h"
#include "check.h"
#include "clock.h"
#include "coord_store.h"
#include "federation_fixture.h"

#include <string.h>
#include <sys/stat.h>

#define S_DAYS  400 /* at least this many simulated days */
#define S_STEP  13  /* simulated days per step: a 30-day certificate is renewed every 26 days */
#define S_SITES 3

typedef struct {
    fx_fed_t f;
    char clock[400], ca[400], log[400];
    int64_t day; /* simulated days since the start */
    pid_t coord, agent[S_SITES];
    int renewals, rotations, jobs;
    int n_cli;                   /* commands run */
    double t_cli, t_job, t_wait; /* seconds spent in commands, jobs, waiting for logs */
} s_world_t;

static s_world_t *s_w; /* for the timing of s_wait_file */

static void s_set_day(s_world_t *w, int64_t day)
{
    w->day = day;
    char text[32];
    int n = snprintf(text, sizeof text, "%lld\n", (long long)(day * 86400));
    CHECK_EQ_INT(cnd_file_write_atomic(w->clock, text, (size_t)n, 0644), 0);
    fx_sleep_ms(150); /* every process reads the file again within 100 ms */
}

/* Runs `condenser args...` (60 s at most); its output goes to out (truncated) and the log. */
static int s_cli(s_world_t *w, char *out, size_t cap, const char *const *args)
{
    char path[450];
    snprintf(path, sizeof path, "%s/cli.out", w->f.root);
    unlink(path);
    double t = fx_now();
    int rc = fx_run(path, args);
    w->t_cli += fx_now() - t;
    w->n_cli++;
    if (out && cap) {
        out[0] = 0;
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(out, 1, cap - 1, f);
            out[n] = 0;
            fclose(f);
        }
    }
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "cat '%s' >> '%s'", path, w->log);
    if (system(cmd) != 0) fprintf(stderr, "could not append to %s\n", w->log);
    return rc;
}

/* The certificate a site has installed. */
static cnd_cert_info_t s_site_cert(s_world_t *w, int s)
{
    char p[400];
    fx_path(p, sizeof p, w->f.site_dir[s], "site.pem");
    uint8_t *d = NULL;
    size_t n = 0;
    cnd_cert_info_t ci;
    memset(&ci, 0, sizeof ci);
    CHECK_EQ_INT(cnd_file_read(p, 1 << 20, &d, &n), 0);
    CHECK_EQ_INT(cnd_ca_inspect(&ci, d, n), 0);
    free(d);
    return ci;
}

static int s_file_has(const char *path, const char *needle)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (cnd_file_read(path, 64 << 20, &d, &n)) {
        cnd_err_clear();
        return 0;
    }
    char *t = realloc(d, n + 1);
    if (!t) {
        free(d);
        return 0;
    }
    t[n] = 0;
    int has = strstr(t, needle) != NULL;
    free(t);
    return has;
}

/* Waits up to timeout seconds for needle to appear in a file. */
static int s_wait_file(const char *path, const char *needle, double timeout)
{
    double t = fx_now(), end = t + timeout;
    int ok = 1;
    while (ok && !s_file_has(path, needle)) {
        if (fx_now() > end) {
            fprintf(stderr, "%s: no '%s'\n", path, needle);
            ok = 0;
        }
        fx_sleep_ms(50);
    }
    if (s_w) s_w->t_wait += fx_now() - t;
    return ok;
}

static size_t s_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static pid_t s_start_agent(s_world_t *w, int s)
{
    char log[400];
    snprintf(log, sizeof log, "%s/agent.log", w->f.site_dir[s]);
    const char *args[] = {"agent", "--config", w->f.site_ini[s], "--max-seconds", "240", NULL};
    return fx_spawn(log, NULL, args);
}

/* `ca issue --renew` (with a new key when pub is given) into site s's directory as new.pem.
 * cli = 0 calls what the command calls (cnd_ca_issue) in this process, to save a process start
 * per routine renewal; the command itself runs for the first renewals and every special case. */
static void s_issue_renewal(s_world_t *w, int s, const char *pub, int cli)
{
    cnd_cert_info_t ci = s_site_cert(w, s);
    char serial[24], out[400];
    snprintf(serial, sizeof serial, "%llu", (unsigned long long)ci.serial);
    fx_path(out, sizeof out, w->f.site_dir[s], "new.pem");
    if (!cli && !pub) {
        cnd_ca_issued_t is;
        CHECK_EQ_INT(cnd_ca_issue(&is, w->ca, ci.name, ci.role, ci.pubkey, CND_CA_DEFAULT_DAYS,
                                  cnd_unix_time(), out),
                     0);
        return;
    }
    const char *a[] = {
        "ca", "issue", "--dir", w->ca, "--renew", serial, "--out", out, pub ? "--pubkey" : NULL,
        pub,  NULL};
    CHECK_EQ_INT(s_cli(w, NULL, 0, a), 0);
}

/* The site installs new.pem as its certificate (an atomic rename, as an operator's cp + mv). */
static void s_install(s_world_t *w, int s)
{
    char from[400], to[400];
    fx_path(from, sizeof from, w->f.site_dir[s], "new.pem");
    fx_path(to, sizeof to, w->f.site_dir[s], "site.pem");
    CHECK_EQ_INT(rename(from, to), 0);
}

static void s_site_renew(s_world_t *w, int s, const char *cert)
{
    char out[2048];
    const char *a[] = {"site", "renew", w->f.site_name[s], "--cert",
                       cert,   "--dir", w->f.coord,        NULL};
    int rc = s_cli(w, out, sizeof out, a);
    if (rc)
        fprintf(stderr, "site renew %s on day %lld: %s", w->f.site_name[s], (long long)w->day, out);
    CHECK_EQ_INT(rc, 0);
    w->renewals++;
}

/* An ordinary renewal: issue, install at the site, enroll at the coordinator. */
static void s_renew(s_world_t *w, int s, int cli)
{
    s_issue_renewal(w, s, NULL, cli);
    s_install(w, s);
    char cert[400];
    fx_path(cert, sizeof cert, w->f.site_dir[s], "site.pem");
    s_site_renew(w, s, cert);
}

static int s_job_state(s_world_t *w, int64_t job, char *out, size_t cap)
{
    char db[400];
    fx_path(db, sizeof db, w->f.coord, "coordinator.db");
    cnd_cstore_t *st = NULL;
    cnd_job_rec_t j;
    int rc = cnd_cstore_open_readonly(&st, db);
    if (!rc) rc = cnd_cstore_job_get(st, job, &j);
    if (!rc) {
        snprintf(out, cap, "%s", j.state);
        cnd_job_rec_free(&j);
    }
    cnd_cstore_close(&st);
    return rc;
}

/* Runs a one-round job of `sites` sites (quorum q) and checks who was selected: want[s] = 1 for
 * the sites that must be. Returns the survivors (sites whose update is in the sum). */
static uint32_t s_job(s_world_t *w, int sites, int q, const int want[S_SITES])
{
    char n[8], qn[8];
    snprintf(n, sizeof n, "%d", sites);
    snprintf(qn, sizeof qn, "%d", q);
    const char *job[] = {"--rounds",
                         "1",
                         "--sites",
                         n,
                         "--quorum",
                         qn,
                         "--local-epochs",
                         "1",
                         "--advertise-ms",
                         "8000",
                         "--share-ms",
                         "8000",
                         "--masked-ms",
                         "15000",
                         "--unmask-ms",
                         "8000",
                         "--join-wait-ms",
                         "60000",
                         NULL};
    double t0 = fx_now();
    fx_job_create(&w->f, job);
    int64_t id = ++w->jobs;
    char state[32] = "";
    double end = fx_now() + 60;
    while (fx_now() < end) {
        if (s_job_state(w, id, state, sizeof state) == 0 && strcmp(state, "running") != 0 &&
            strcmp(state, "pending") != 0)
            break;
        cnd_err_clear();
        fx_sleep_ms(100);
    }
    if (strcmp(state, "completed") != 0)
        fprintf(stderr, "job %lld on day %lld: %s\n", (long long)id, (long long)w->day, state);
    CHECK(strcmp(state, "completed") == 0);
    char db[400];
    fx_path(db, sizeof db, w->f.coord, "coordinator.db");
    cnd_cstore_t *st = NULL;
    cnd_round_rec_t *r = NULL;
    size_t nr = 0;
    uint32_t survivors = 0;
    CHECK_EQ_INT(cnd_cstore_open_readonly(&st, db), 0);
    if (st) CHECK_EQ_INT(cnd_cstore_rounds(st, id, &r, &nr), 0);
    /* one round; a first attempt that a site's refusal left without its keys runs again
     * ("retry", the neighbour graph needs every participant's keys) */
    CHECK(nr == 1 || nr == 2);
    if (nr == 2) CHECK(strcmp(r[0].outcome, "retry") == 0);
    if (nr >= 1) {
        CHECK(strcmp(r[nr - 1].outcome, "ok") == 0);
        survivors = r[nr - 1].survivors;
        for (int s = 0; s < S_SITES; s++) {
            int in = 0;
            for (uint32_t i = 0; i < r[0].n; i++)
                if (strcmp(r[0].sites[i].name, w->f.site_name[s]) == 0) {
                    in = 1;
                    /* the fingerprint is the site's key of the day (after a rotation: new) */
                    cnd_ident_rec_t id_rec;
                    CHECK_EQ_INT(cnd_cstore_ident_by_name(st, w->f.site_name[s], &id_rec), 0);
                    CHECK(strcmp(id_rec.fpr, r[0].sites[i].fpr) == 0);
                    cnd_ident_rec_free(&id_rec);
                }
            if (in != want[s])
                fprintf(stderr, "job %lld on day %lld: %s %s\n", (long long)id, (long long)w->day,
                        w->f.site_name[s], in ? "took part" : "missing");
            CHECK_EQ_INT(in, want[s]);
        }
    }
    for (size_t i = 0; i < nr; i++) cnd_round_rec_free(&r[i]);
    free(r);
    cnd_cstore_close(&st);
    w->t_job += fx_now() - t0;
    fprintf(stderr, "day %3lld: job %lld completed with %u sites\n", (long long)w->day,
            (long long)id, survivors);
    return survivors;
}

/* The size of the coordinator's log: what s_wait_hello looks after. */
static size_t s_mark(s_world_t *w)
{
    char p[400];
    fx_path(p, sizeof p, w->f.root, "coordinator.log");
    return s_size(p);
}

/* Waits until the coordinator's log shows site s accepted (a Hello) after byte `base`. */
static int s_wait_hello(s_world_t *w, int s, size_t base, double timeout)
{
    char p[400], needle[64];
    fx_path(p, sizeof p, w->f.root, "coordinator.log");
    snprintf(needle, sizeof needle, "%s said hello", w->f.site_name[s]);
    double t0 = fx_now(), end = t0 + timeout;
    while (fx_now() < end) {
        uint8_t *d = NULL;
        size_t n = 0;
        int ok = 0;
        if (cnd_file_read(p, 64 << 20, &d, &n) == 0 && n > base) {
            char *t = malloc(n - base + 1);
            if (t) {
                memcpy(t, d + base, n - base);
                t[n - base] = 0;
                ok = strstr(t, needle) != NULL;
                free(t);
            }
        }
        free(d);
        cnd_err_clear();
        if (ok) {
            w->t_wait += fx_now() - t0;
            return 1;
        }
        fx_sleep_ms(50);
    }
    fprintf(stderr, "day %lld: %s never said hello again\n", (long long)w->day, w->f.site_name[s]);
    return 0;
}

/* Site 1's key rotation: a new key, the coordinator first, then the site's files. */
static void s_rotate(s_world_t *w)
{
    int s = 1;
    char nk[400], pub[450], log[400];
    fx_path(nk, sizeof nk, w->f.site_dir[s], "newkey");
    snprintf(pub, sizeof pub, "%s/identity.pub", nk);
    const char *kg[] = {"keygen", "--out", nk, NULL};
    CHECK_EQ_INT(s_cli(w, NULL, 0, kg), 0);
    /* keep the old certificate and key for the impostor below */
    char a[450], b[450];
    fx_path(a, sizeof a, w->f.site_dir[s], "site.pem");
    fx_path(b, sizeof b, w->f.site_dir[s], "old.pem");
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "cp -p '%s' '%s'", a, b);
    CHECK(system(cmd) == 0);
    s_issue_renewal(w, s, pub, 1);
    fx_path(a, sizeof a, w->f.site_dir[s], "new.pem");
    s_site_renew(w, s, a);
    w->rotations++;
    /* from this commit on the old key's messages on its open connection are dropped */
    char clog[400];
    fx_path(clog, sizeof clog, w->f.root, "coordinator.log");
    CHECK(s_wait_file(clog, "ended: rotated (its key was rotated", 10));
    CHECK(s_wait_file(clog, "revoked: message dropped", 10));
    /* a renewal never goes backwards: the certificate just replaced is refused */
    char out[2048];
    fx_path(b, sizeof b, w->f.site_dir[s], "old.pem");
    const char *back[] = {"site", "renew", "site-1", "--cert", b, "--dir", w->f.coord, NULL};
    CHECK(s_cli(w, out, sizeof out, back) != 0);
    CHECK(strstr(out, "does not outlast the enrolled certificate") != NULL);
    /* the site installs the certificate, and only then the key (the old key is kept: it signs
     * the site's own audit log): the agent waits for the pair, then switches by itself */
    size_t mark = s_mark(w);
    s_install(w, s);
    snprintf(log, sizeof log, "%s/agent.log", w->f.site_dir[s]);
    CHECK(s_wait_file(log, "changed but is not used", 10));
    CHECK(s_file_has(log, "install the new key as well"));
    fx_path(a, sizeof a, w->f.site_dir[s], "identity.key");
    fx_path(b, sizeof b, w->f.site_dir[s], "old.key");
    CHECK_EQ_INT(rename(a, b), 0);
    snprintf(b, sizeof b, "%s/identity.key", nk);
    CHECK_EQ_INT(rename(b, a), 0);
    CHECK(s_wait_hello(w, s, mark, 30));
    CHECK(s_file_has(log, "key rotation: now SHA256:"));
    /* the old key is refused: an agent started with it stops, saying so */
    char ini[400];
    fx_path(ini, sizeof ini, w->f.site_dir[s], "impostor.ini");
    FILE *f = fopen(ini, "w");
    CHECK(f != NULL);
    if (f) {
        char pubc[400];
        fx_path(pubc, sizeof pubc, w->f.coord, "identity.pub");
        fprintf(f,
                "[site]\nname = %s\ndata = idx:images.idx,labels.idx\nstate = impostor.db\n"
                "[identity]\nkey = old.key\ncertificate = old.pem\n"
                "[coordinator]\nendpoint = %s\npublic_key = %s\nca_cert = ../ca/ca.crt\n"
                "ca_crl = ../ca/crl.pem\n",
                w->f.site_name[s], w->f.endpoint, pubc);
        fclose(f);
    }
    fx_path(log, sizeof log, w->f.site_dir[s], "impostor.log");
    const char *imp[] = {"agent", "--config", ini, "--max-seconds", "30", NULL};
    CHECK(fx_wait(fx_spawn(log, NULL, imp), 40) != 0);
    CHECK(s_file_has(log, "refused this site's key"));
}

/* Site 2 lets its certificate expire, is refused, then renews and is accepted again. */
static void s_expired_period(s_world_t *w)
{
    char alog[400], clog[400], out[8192];
    snprintf(alog, sizeof alog, "%s/agent.log", w->f.site_dir[2]);
    fx_path(clog, sizeof clog, w->f.root, "coordinator.log");
    CHECK(s_wait_file(clog, "ended: expired (its certificate expired at", 20));
    /* the agent asks again and is refused with the reason; it says what to do */
    CHECK(s_wait_file(alog, "refused this site's hello", 20));
    CHECK(s_wait_file(alog, "expired at", 20));
    CHECK(s_wait_file(alog, "EXPIRED: this site's certificate", 20));
    CHECK(s_wait_file(clog, "refused hello from site-2 (", 20));
    CHECK(s_wait_file(clog, "hello.certificate: ", 20));
    const char *ls[] = {"site", "list", "--dir", w->f.coord, NULL};
    CHECK_EQ_INT(s_cli(w, out, sizeof out, ls), 0);
    CHECK(strstr(out, "EXPIRED: site-2's certificate") != NULL);
    const char *lj[] = {"site", "list", "--json", "--dir", w->f.coord, NULL};
    CHECK_EQ_INT(s_cli(w, out, sizeof out, lj), 0);
    CHECK(strstr(out, "\"expiry\":\"expired\"") != NULL);
    /* a job goes on with the two valid sites */
    const int two[S_SITES] = {1, 1, 0};
    CHECK_EQ_INT(s_job(w, 2, 2, two), 2);
    /* an expired certificate is not enrolled: the successor must verify now */
    char cert[400];
    fx_path(cert, sizeof cert, w->f.site_dir[2], "site.pem");
    const char *again[] = {"site", "renew", "site-2", "--cert", cert, "--dir", w->f.coord, NULL};
    CHECK(s_cli(w, out, sizeof out, again) != 0);
    CHECK(strstr(out, "expired at") != NULL);
    /* renewed: accepted again, no restart */
    size_t mark = s_mark(w);
    s_renew(w, 2, 1);
    CHECK(s_wait_hello(w, 2, mark, 30));
}

/* The coordinator is told before the site installs: the agent's hello with the superseded
 * certificate is refused until the file arrives. */
static void s_renew_coordinator_first(s_world_t *w, int s)
{
    s_issue_renewal(w, s, NULL, 1);
    char cert[400], alog[400];
    fx_path(cert, sizeof cert, w->f.site_dir[s], "new.pem");
    snprintf(alog, sizeof alog, "%s/agent.log", w->f.site_dir[s]);
    s_site_renew(w, s, cert);
    CHECK(s_wait_file(alog, "it is older, the coordinator enrolled its renewal", 20));
    size_t mark = s_mark(w);
    s_install(w, s);
    CHECK(s_wait_hello(w, s, mark, 30));
}

int main(void)
{
    s_world_t w;
    memset(&w, 0, sizeof w);
    s_w = &w;
    double t0 = fx_now();
    fx_fed_init(&w.f, "identity", S_SITES);
    fx_path(w.clock, sizeof w.clock, w.f.root, "clock");
    fx_path(w.ca, sizeof w.ca, w.f.root, "ca");
    fx_path(w.log, sizeof w.log, w.f.root, "cli.log");
    s_set_day(&w, 0);
    setenv("CND_TEST_CLOCK_FILE", w.clock, 1); /* inherited by every process */
    fx_fed_setup(&w.f, 120, NULL, 0);
    char clog[400];
    fx_path(clog, sizeof clog, w.f.root, "coordinator.log");
    const char *run[] = {"coordinator",    "run", "--dir", w.f.coord, "--endpoint", w.f.endpoint,
                         "--heartbeat-ms", "500", NULL};
    w.coord = fx_spawn(clog, NULL, run);
    for (int s = 0; s < S_SITES; s++) w.agent[s] = s_start_agent(&w, s);
    const int all[S_SITES] = {1, 1, 1};
    CHECK_EQ_INT(s_job(&w, 3, 3, all), 3);

    int renewals_at[S_SITES] = {0}, crls = 0;
    int rotated = 0, lapse = 0, early = 0, restarted = 0; /* the special events, once each */
    for (int step = 1; w.day < S_DAYS && !check_failures; step++) {
        int64_t day = (int64_t)step * S_STEP;
        s_set_day(&w, day);
        int expired_step = lapse == 1;
        if (!rotated && day >= 100) {
            s_rotate(&w);
            rotated = 1;
        }
        if (lapse == 1) {
            s_expired_period(&w);
            lapse = 2;
        }
        if (!early && day >= 260) {
            s_renew_coordinator_first(&w, 0);
            early = 1;
        }
        if (!restarted && day >= 300) {
            /* the rotated site restarts: its audit log is signed by the key that made it */
            kill(w.agent[1], SIGTERM);
            CHECK_EQ_INT(fx_wait(w.agent[1], 20), 0);
            FILE *f = fopen(w.f.site_ini[1], "a");
            CHECK(f != NULL);
            if (f) {
                fprintf(f, "[identity]\naudit_key = old.key\n");
                fclose(f);
            }
            size_t mark = s_mark(&w);
            w.agent[1] = s_start_agent(&w, 1);
            CHECK(s_wait_hello(&w, 1, mark, 30));
            restarted = 1;
        }
        size_t mark = s_mark(&w);
        int renewed[S_SITES] = {0};
        for (int s = 0; s < S_SITES; s++) {
            cnd_cert_info_t ci = s_site_cert(&w, s);
            int64_t left = cnd_cert_days_left(ci.not_after, cnd_unix_time());
            if (left >= CND_CERT_WARN_DAYS) continue;
            int forget = s == 2 && lapse == 0 && day >= 150; /* site-2 forgets, once */
            if (renewals_at[s] == 0 || forget) {
                /* the agent warns, with the days left, before anyone renews */
                char alog[400], want[96];
                snprintf(alog, sizeof alog, "%s/agent.log", w.f.site_dir[s]);
                snprintf(want, sizeof want, "(serial %llu) expires in %lld day",
                         (unsigned long long)ci.serial, (long long)left);
                CHECK(s_wait_file(alog, want, 10));
                const char *ls[] = {"site", "list", "--dir", w.f.coord, NULL};
                char out[8192];
                CHECK_EQ_INT(s_cli(&w, out, sizeof out, ls), 0);
                snprintf(want, sizeof want, "warning: %s's certificate (serial %llu) expires in",
                         w.f.site_name[s], (unsigned long long)ci.serial);
                CHECK(strstr(out, want) != NULL);
            }
            if (forget) {
                lapse = 1; /* expired by the next step */
                continue;
            }
            s_renew(&w, s, renewals_at[s] == 0);
            renewals_at[s]++;
            renewed[s] = 1;
        }
        /* every renewal is picked up, without a restart, before the clock moves on: the
         * coordinator ends the session of the superseded certificate, the agent says hello
         * with the file it re-reads */
        for (int s = 0; s < S_SITES; s++)
            if (renewed[s]) CHECK(s_wait_hello(&w, s, mark, 20));
        /* the revocation list is re-signed by every issue; else when it has < 15 days left */
        cnd_ca_trust_t *t = NULL;
        char cac[450], crlp[450];
        snprintf(cac, sizeof cac, "%s/ca.crt", w.ca);
        snprintf(crlp, sizeof crlp, "%s/crl.pem", w.ca);
        int64_t ca_end = 0, crl_next = 0;
        CHECK_EQ_INT(cnd_ca_trust_load(&t, cac, crlp), 0);
        if (t) cnd_ca_trust_dates(t, &ca_end, &crl_next);
        cnd_ca_trust_destroy(&t);
        if (crl_next - cnd_unix_time() < 15 * 86400) {
            const char *crl[] = {"ca", "crl", "--dir", w.ca, NULL};
            CHECK_EQ_INT(s_cli(&w, NULL, 0, crl), 0);
            crls++;
        }
        if (step % 4 == 0 && !expired_step) {
            int want[S_SITES] = {1, 1, 1};
            CHECK_EQ_INT(s_job(&w, 3, 3, want), 3);
        }
    }
    CHECK(rotated && lapse == 2 && early && restarted);
    CHECK_EQ_INT(s_job(&w, 3, 3, all), 3); /* and one more on the last day */
    CHECK(w.day >= S_DAYS);
    fprintf(stderr, "ca crl ran %d times\n", crls);
    for (int s = 0; s < S_SITES; s++) {
        fprintf(stderr, "%s: %d renewals\n", w.f.site_name[s], renewals_at[s]);
        CHECK(renewals_at[s] >= 13); /* 400 days / 30 */
    }

    /* the other direction: a site whose clock runs 40 days ahead refuses its neighbours'
     * certificates as expired (the coordinator, on time, accepts them), and says so */
    char skew[450], env[500], alog0[400];
    fx_path(skew, sizeof skew, w.f.root, "clock-ahead");
    int n = snprintf(env, sizeof env, "%lld\n", (long long)((w.day + 40) * 86400));
    CHECK_EQ_INT(cnd_file_write_atomic(skew, env, (size_t)n, 0644), 0);
    snprintf(env, sizeof env, "CND_TEST_CLOCK_FILE=%s", skew);
    snprintf(alog0, sizeof alog0, "%s/agent.log", w.f.site_dir[0]);
    kill(w.agent[0], SIGTERM);
    CHECK_EQ_INT(fx_wait(w.agent[0], 20), 0);
    size_t mark = s_mark(&w);
    const char *skew_env[] = {env, NULL};
    const char *aargs[] = {"agent", "--config", w.f.site_ini[0], "--max-seconds", "120", NULL};
    w.agent[0] = fx_spawn(alog0, skew_env, aargs);
    CHECK(s_wait_hello(&w, 0, mark, 30));
    CHECK_EQ_INT(s_job(&w, 3, 2, all), 2);
    CHECK(s_wait_file(alog0, "EXPIRED: this site's certificate", 10));
    CHECK(s_file_has(alog0, "participant 1: certificate of 'site-1'"));
    CHECK(s_file_has(alog0, "expired at"));

    /* site list: days left and the renewal window in JSON */
    char out[8192];
    const char *lj[] = {"site", "list", "--json", "--dir", w.f.coord, NULL};
    CHECK_EQ_INT(s_cli(&w, out, sizeof out, lj), 0);
    CHECK(strstr(out, "\"days_left\":") != NULL && strstr(out, "\"renewed\":") != NULL);
    CHECK(strstr(out, "\"expiry\":\"expired\"") == NULL);

    /* stop everything */
    kill(w.coord, SIGTERM);
    CHECK_EQ_INT(fx_wait(w.coord, 30), 0);
    for (int s = 0; s < S_SITES; s++) {
        kill(w.agent[s], SIGTERM);
        CHECK_EQ_INT(fx_wait(w.agent[s], 20), 0);
    }

    /* the audit log verifies and holds every renewal, one of them the rotation */
    char db[400];
    fx_path(db, sizeof db, w.f.coord, "coordinator.db");
    const char *ver[] = {"audit", "verify", db, NULL};
    CHECK_EQ_INT(s_cli(&w, NULL, 0, ver), 0);
    cnd_cstore_t *st = NULL;
    CHECK_EQ_INT(cnd_cstore_open_readonly(&st, db), 0);
    int n_renew = -1, n_rot = -1, n_admin = -1;
    if (st) {
        sqlite3_stmt *q = NULL;
        CHECK(sqlite3_prepare_v2(cnd_cstore_db(st),
                                 "SELECT count(*), sum(instr(entry, '\"kind\":\"rotation\"') > 0),"
                                 " (SELECT count(*) FROM audit_entry WHERE action ="
                                 " 'admin.site.renew') FROM audit_entry WHERE action ="
                                 " 'cert.renew'",
                                 -1, &q, NULL) == SQLITE_OK);
        if (q && sqlite3_step(q) == SQLITE_ROW) {
            n_renew = sqlite3_column_int(q, 0);
            n_rot = sqlite3_column_int(q, 1);
            n_admin = sqlite3_column_int(q, 2);
        }
        sqlite3_finalize(q);
    }
    cnd_cstore_close(&st);
    CHECK_EQ_INT(n_renew, w.renewals);
    CHECK_EQ_INT(n_rot, w.rotations);
    CHECK_EQ_INT(n_rot, 1);
    CHECK_EQ_INT(n_admin, w.renewals);
    /* each site's own audit log verifies too (site-1's across its rotation and restart) */
    for (int s = 0; s < S_SITES; s++) {
        char adb[400];
        fx_path(adb, sizeof adb, w.f.site_dir[s], "agent.db");
        const char *av[] = {"audit", "verify", adb, NULL};
        CHECK_EQ_INT(s_cli(&w, NULL, 0, av), 0);
    }
    fprintf(stderr,
            "identity lifecycle: %d simulated days, %d renewals (%d rotation), %d jobs, %.1f s "
            "(%d commands %.1f s, jobs %.1f s, waiting for logs %.1f s)\n",
            (int)w.day, w.renewals, w.rotations, w.jobs, fx_now() - t0, w.n_cli, w.t_cli, w.t_job,
            w.t_wait);
    if (check_failures) {
        fx_dump(clog);
        for (int s = 0; s < S_SITES; s++) {
            char p[400];
            snprintf(p, sizeof p, "%s/agent.log", w.f.site_dir[s]);
            fx_dump(p);
        }
        fx_dump(w.log);
    }
    fx_fed_cleanup(&w.f);
    return check_result("test_identity_lifecycle");
}
