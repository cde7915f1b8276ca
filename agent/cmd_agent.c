/*
 * cmd_agent.c: `condenser agent` (run the site agent) and `condenser agent status` (what the
 * site's database says: jobs, rounds, and what left the site, by message type).
 */
#include "agent_config.h"
#include "agent_daemon.h"
#include "agent_store.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_print_log(void *ctx, const char *line)
{
    char t[32];
    cnd_iso8601(t, cnd_unix_time());
    fprintf(stderr, "%s %s: %s\n", t, (const char *)ctx, line);
    fflush(stderr);
}

static void s_type_row(void *ctx, const char *type, uint64_t count, uint64_t bytes)
{
    (void)ctx;
    printf("  %-18s %8llu messages %12llu bytes\n", type, (unsigned long long)count,
           (unsigned long long)bytes);
}

static void s_round_row(void *ctx, const cnd_around_t *r)
{
    (void)ctx;
    printf("  job %-4llu round %-4u try %-2u id %u/%-3u %-10s %-9s acc %.4f  %llu samples  %s\n",
           (unsigned long long)r->job, r->round, r->attempt, r->participant_id, r->n, r->phase,
           r->outcome[0] ? r->outcome : "running", r->val_acc, (unsigned long long)r->samples,
           r->reason);
}

static int s_status(int argc, char **argv)
{
    const char *config = NULL;
    const cnd_opt_t opts[] = {
        {"config", CND_OPT_STR, &config, "FILE", "the agent's configuration (required)"}, {0}};
    const cnd_cli_t cli = {"condenser agent status --config FILE",
                           "Shows what this site's agent did: its rounds, and every message that "
                           "left the site and that it received, by type (sizes and counts; the "
                           "SHA-256 of each is in the database and its audit log).",
                           opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!config) return cnd_errf(CND_EINVAL, "--config FILE is required");
    cnd_agent_config_t c;
    if ((rc = cnd_agent_config_load(&c, config))) return rc;
    cnd_astore_t *s = NULL;
    if ((rc = cnd_astore_open(&s, c.state, 1))) return rc;
    uint64_t eb = 0, en = 0, ib = 0, in = 0;
    if (!(rc = cnd_astore_totals(s, 'E', 0, &eb, &en)) &&
        !(rc = cnd_astore_totals(s, 'I', 0, &ib, &in))) {
        printf("site %s (%s)\n", c.name, c.state);
        printf("rounds:\n");
        if (!(rc = cnd_astore_rounds(s, s_round_row, NULL))) {
            printf("left the site: %llu messages, %llu bytes\n", (unsigned long long)en,
                   (unsigned long long)eb);
            rc = cnd_astore_by_type(s, 'E', s_type_row, NULL);
        }
        if (!rc) {
            printf("received: %llu messages, %llu bytes\n", (unsigned long long)in,
                   (unsigned long long)ib);
            rc = cnd_astore_by_type(s, 'I', s_type_row, NULL);
        }
    }
    cnd_astore_close(&s);
    return rc;
}

int cnd_cmd_agent(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "status") == 0) return s_status(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) argc--, argv++;
    const char *config = NULL;
    int until_done = 0, quiet = 0;
    double max_seconds = 0;
    const cnd_opt_t opts[] = {
        {"config", CND_OPT_STR, &config, "FILE", "the agent's INI configuration (required)"},
        {"until-done", CND_OPT_FLAG, &until_done, NULL, "exit after the job's last round"},
        {"max-seconds", CND_OPT_DBL, &max_seconds, "S", "give up after S seconds (default: never)",
         0, 1e9},
        {"quiet", CND_OPT_FLAG, &quiet, NULL, "no progress lines"},
        {0}};
    const cnd_cli_t cli = {
        "condenser agent [run] --config FILE [--until-done]   |   condenser agent status --config "
        "FILE",
        "Runs the site agent: connects to the coordinator whose key is pinned in the config, "
        "takes part in its jobs by training on this site's data, and sends only clipped, "
        "masked model updates and aggregate metrics. Every message that leaves the site is "
        "logged (type, size, SHA-256) in the agent's database and audit log.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (!config) return cnd_errf(CND_EINVAL, "--config FILE is required (try --help)");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    cnd_agent_config_t c;
    if ((rc = cnd_agent_config_load(&c, config))) return rc;
    static char label[80];
    snprintf(label, sizeof label, "agent %s", c.name);
    cnd_agent_run_opts_t o = {config, until_done, max_seconds, quiet ? NULL : s_print_log, label};
    return cnd_agent_run(&o, &s_stop);
}
