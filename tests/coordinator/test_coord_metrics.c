/*
 * test_coord_metrics.c: `coordinator run --metrics` beside a running 3-site job (real processes
 * on loopback).
 *   - Scraped during the job: the exposition passes `promtool check metrics` (Debian's
 *     prometheus package) and carries the job, sessions, bytes, certificates; after the job:
 *     rounds by outcome, the last round's phases and survivors.
 *   - A real Prometheus, started by the test, scrapes the endpoint and answers a query for it.
 *   - Anything but GET /metrics is refused (404, 405).
 */
#include "check.h"
#include "coord_store.h"
#include "federation_fixture.h"
#include "fileio.h"

#include <string.h>

/* promtool check metrics on the body, kept in the test's directory as name. */
static int s_promtool(fx_fed_t *f, const char *body, const char *name)
{
    char path[400];
    fx_path(path, sizeof path, f->root, name);
    return th_promtool(path, body);
}

/* A Prometheus scraping the endpoint every second; 0 when its query API returns our series. */
static int s_prometheus(fx_fed_t *f, int mport)
{
    int pport = fx_free_port();
    char conf[400], data[400], log[400];
    fx_path(conf, sizeof conf, f->root, "prometheus.yml");
    fx_path(data, sizeof data, f->root, "prometheus-data");
    fx_path(log, sizeof log, f->root, "prometheus.log");
    char yml[512];
    int n = snprintf(yml, sizeof yml,
                     "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: condenser\n"
                     "    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
                     mport);
    CHECK_EQ_INT(cnd_file_write_atomic(conf, yml, (size_t)n, 0644), 0);
    pid_t p = fork();
    if (p == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        char a1[450], a2[450], a3[64];
        snprintf(a1, sizeof a1, "--config.file=%s", conf);
        snprintf(a2, sizeof a2, "--storage.tsdb.path=%s", data);
        snprintf(a3, sizeof a3, "--web.listen-address=127.0.0.1:%d", pport);
        execlp("prometheus", "prometheus", a1, a2, a3, (char *)NULL);
        _exit(127);
    }
    int found = 0;
    static char resp[1 << 16];
    double end = fx_now() + 40;
    while (!found && fx_now() < end) {
        fx_sleep_ms(500);
        if (th_http(pport, "GET", "/api/v1/query?query=condenser_audit_log_entries", resp,
                    sizeof resp) > 0)
            found = strstr(resp, "\"status\":\"success\"") && strstr(resp, "condenser_audit");
    }
    kill(p, SIGTERM);
    fx_wait(p, 20);
    if (!found) fx_dump(log);
    return found ? 0 : -1;
}

int main(void)
{
    fx_fed_t f;
    fx_fed_init(&f, "metrics", 3);
    fx_fed_setup(&f, 200, NULL, 0);
    const char *job[] = {"--rounds", "8", "--sites", "3", "--local-epochs", "40", NULL};
    fx_job_create(&f, job);
    int mport = fx_free_port();
    char maddr[64], log[400];
    snprintf(maddr, sizeof maddr, "127.0.0.1:%d", mport);
    fx_path(log, sizeof log, f.root, "coordinator.log");
    const char *run[] = {"coordinator", "run",       "--dir", f.coord, "--endpoint",
                         f.endpoint,    "--metrics", maddr,   NULL};
    pid_t coord = fx_spawn(log, NULL, run);
    /* Site 0 serves its own metrics and runs until stopped (not --until-done), so they can be
     * read after the job too. */
    int aport = fx_free_port();
    char aaddr[64], alog[400];
    snprintf(aaddr, sizeof aaddr, "127.0.0.1:%d", aport);
    snprintf(alog, sizeof alog, "%s/agent.log", f.site_dir[0]);
    const char *arun[] = {"agent", "--config",      f.site_ini[0], "--metrics",
                          aaddr,   "--max-seconds", "120",         NULL};
    pid_t ag[3];
    ag[0] = fx_spawn(alog, NULL, arun);
    ag[1] = fx_start_agent(&f, 1, NULL);

    /* During the job: a running job waiting for its third site, two sessions. Site 2 starts
     * only after these checks: the job itself takes well under a second on a fast machine, too
     * short a window to scrape reliably (CI once missed it). */
    static char resp[1 << 18];
    int seen_running = 0;
    double end = fx_now() + 60;
    while (!seen_running && fx_now() < end) {
        fx_sleep_ms(300);
        if (waitpid(coord, NULL, WNOHANG) == coord) {
            fprintf(stderr, "the coordinator exited before its metrics were seen\n");
            fx_dump(log);
            break;
        }
        if (th_http(mport, "GET", "/metrics", resp, sizeof resp) <= 0) continue;
        const char *b = th_body(resp);
        seen_running =
            strstr(b, "condenser_jobs{state=\"running\"} 1") && strstr(b, "condenser_sessions 2");
    }
    CHECK(seen_running);
    CHECK(th_has(resp, "HTTP/1.0 200") || th_has(resp, "HTTP/1.1 200"));
    CHECK(th_has(resp, "text/plain; version=0.0.4"));
    const char *b = th_body(resp);
    CHECK_EQ_INT(s_promtool(&f, b, "during.prom"), 0);
    CHECK(th_has(b, "condenser_certificate_expiry_timestamp_seconds{site=\"site-0\"}"));
    CHECK(th_has(b, "condenser_bytes_total{direction=\"in\"}"));
    CHECK(th_has(b, "condenser_database_bytes{file=\"db\"}"));
    /* The site's own endpoint while it takes part: a session, the job. */
    static char aresp[1 << 17];
    int seen_agent = 0;
    end = fx_now() + 30;
    while (!seen_agent && fx_now() < end) {
        if (th_http(aport, "GET", "/metrics", aresp, sizeof aresp) > 0)
            seen_agent = strstr(th_body(aresp), "\ncondenser_agent_connected 1") &&
                         strstr(th_body(aresp), "\ncondenser_agent_job 1");
        if (!seen_agent) fx_sleep_ms(200);
    }
    CHECK(seen_agent);
    CHECK_EQ_INT(s_promtool(&f, th_body(aresp), "agent-during.prom"), 0);
    CHECK(th_has(th_body(aresp), "condenser_certificate_expiry_timestamp_seconds "));
    CHECK_EQ_INT(s_prometheus(&f, mport), 0);
    CHECK(th_http(mport, "GET", "/other", resp, sizeof resp) > 0 && th_has(resp, " 404"));
    CHECK(th_http(mport, "POST", "/metrics", resp, sizeof resp) > 0 && th_has(resp, " 405"));
    ag[2] = fx_start_agent(&f, 2, NULL);

    /* Just before the end: rounds that completed, the last round's numbers. */
    int seen_rounds = 0;
    end = fx_now() + 90;
    while (!seen_rounds && fx_now() < end) {
        fx_sleep_ms(300);
        if (waitpid(coord, NULL, WNOHANG) == coord) {
            fprintf(stderr, "the coordinator exited before its metrics were seen\n");
            fx_dump(log);
            break;
        }
        if (th_http(mport, "GET", "/metrics", resp, sizeof resp) <= 0) continue;
        const char *k = strstr(th_body(resp), "condenser_rounds_total{outcome=\"ok\"} ");
        seen_rounds = k && atoi(k + strlen("condenser_rounds_total{outcome=\"ok\"} ")) >= 2;
    }
    CHECK(seen_rounds);
    b = th_body(resp);
    CHECK_EQ_INT(s_promtool(&f, b, "after.prom"), 0);
    CHECK(th_has(b, "condenser_last_round_sites{kind=\"survivors\"} 3"));
    CHECK(th_has(b, "condenser_last_round_phase_seconds{phase=\"masked\"}"));
    CHECK(th_has(b, "condenser_frames_total{direction=\"out\"}"));
    for (int s = 1; s < 3; s++) CHECK_EQ_INT(fx_wait(ag[s], 90), 0);
    /* The site after the job: its 8 rounds ended ok, what it sent by type; nothing of its
     * records (no accuracy, loss or sample count). */
    CHECK(th_http(aport, "GET", "/metrics", aresp, sizeof aresp) > 0);
    b = th_body(aresp);
    CHECK_EQ_INT(s_promtool(&f, b, "agent-after.prom"), 0);
    CHECK(th_has(b, "condenser_agent_rounds_total{outcome=\"ok\"} 8"));
    CHECK(th_has(b, "condenser_agent_messages_total{direction=\"out\",type=\"masked_input\"} 8"));
    CHECK(th_has(b, "condenser_agent_train_seconds{round=\"last\"}"));
    CHECK(th_has(b, "\ncondenser_agent_training 0"));
    CHECK(!strstr(b, "accuracy") && !strstr(b, "samples") && !strstr(b, "loss"));
    kill(ag[0], SIGTERM);
    CHECK_EQ_INT(fx_wait(ag[0], 30), 0);
    /* Without --until-done the coordinator runs on: stopped by SIGTERM, it exits cleanly. */
    kill(coord, SIGTERM);
    CHECK_EQ_INT(fx_wait(coord, 60), 0);
    fx_fed_cleanup(&f);
    return check_result("test_coord_metrics");
}
