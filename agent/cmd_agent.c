/*
 * cmd_agent.c: `condenser agent` (run the site agent) and `condenser agent status` (what the
 * site's database says: jobs, rounds, and what left the site, by message type).
 */
#include "agent_config.h"
#include "agent_daemon.h"
#include "agent_store.h"
#include "json.h"
#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* Where `agent status` writes: text on stdout, or the JSON writer. */
typedef struct {
    cnd_jw_t *w; /* NULL for text */
} s_status_out_t;

static void s_type_row(void *ctx, const char *type, uint64_t count, uint64_t bytes)
{
    cnd_jw_t *w = ((s_status_out_t *)ctx)->w;
    if (!w) {
        printf("  %-18s %8llu messages %12llu bytes\n", type, (unsigned long long)count,
               (unsigned long long)bytes);
        return;
    }
    cnd_jw_obj(w);
    cnd_jw_key(w, "type");
    cnd_jw_str(w, type);
    cnd_jw_key(w, "messages");
    cnd_jw_int(w, (int64_t)count);
    cnd_jw_key(w, "bytes");
    cnd_jw_int(w, (int64_t)bytes);
    cnd_jw_obj_end(w);
}

/* A round without local training (samples 0) has no validation accuracy to show. */
static void s_round_row(void *ctx, const cnd_around_t *r)
{
    cnd_jw_t *w = ((s_status_out_t *)ctx)->w;
    if (!w) {
        char acc[16] = "n/a";
        if (r->samples) snprintf(acc, sizeof acc, "%.4f", r->val_acc);
        printf(
            "  job %-4llu round %-4u try %-2u id %u/%-3u %-10s %-9s acc %-6s  %llu samples  %s\n",
            (unsigned long long)r->job, r->round, r->attempt, r->participant_id, r->n, r->phase,
            r->outcome[0] ? r->outcome : "running", acc, (unsigned long long)r->samples, r->reason);
        return;
    }
    cnd_jw_obj(w);
    cnd_jw_key(w, "job");
    cnd_jw_int(w, (int64_t)r->job);
    cnd_jw_key(w, "round");
    cnd_jw_int(w, r->round);
    cnd_jw_key(w, "attempt");
    cnd_jw_int(w, r->attempt);
    cnd_jw_key(w, "participant_id");
    cnd_jw_int(w, r->participant_id);
    cnd_jw_key(w, "participants");
    cnd_jw_int(w, r->n);
    cnd_jw_key(w, "phase");
    cnd_jw_str(w, r->phase);
    cnd_jw_key(w, "outcome"); /* "" while running */
    cnd_jw_str(w, r->outcome);
    cnd_jw_key(w, "reason");
    cnd_jw_str(w, r->reason);
    cnd_jw_key(w, "samples");
    cnd_jw_int(w, (int64_t)r->samples);
    cnd_jw_key(w, "train_ms");
    cnd_jw_int(w, r->train_ms);
    cnd_jw_key(w, "clipped");
    cnd_jw_int(w, (int64_t)r->clipped);
    cnd_jw_key(w, "val_accuracy");
    if (r->samples)
        cnd_jw_double(w, r->val_acc);
    else
        cnd_jw_null(w);
    cnd_jw_key(w, "val_loss");
    if (r->samples)
        cnd_jw_double(w, r->val_loss);
    else
        cnd_jw_null(w);
    cnd_jw_obj_end(w);
}

/* One direction of the message log ('E' left the site, 'I' received): totals and by type. */
static int s_direction(cnd_astore_t *s, char dir, const char *label, s_status_out_t *o)
{
    uint64_t bytes = 0, count = 0;
    int rc = cnd_astore_totals(s, dir, 0, &bytes, &count);
    if (rc) return rc;
    if (!o->w) {
        printf("%s: %llu messages, %llu bytes\n", label, (unsigned long long)count,
               (unsigned long long)bytes);
        return cnd_astore_by_type(s, dir, s_type_row, o);
    }
    cnd_jw_key(o->w, dir == 'E' ? "sent" : "received");
    cnd_jw_obj(o->w);
    cnd_jw_key(o->w, "messages");
    cnd_jw_int(o->w, (int64_t)count);
    cnd_jw_key(o->w, "bytes");
    cnd_jw_int(o->w, (int64_t)bytes);
    cnd_jw_key(o->w, "by_type");
    cnd_jw_arr(o->w);
    rc = cnd_astore_by_type(s, dir, s_type_row, o);
    cnd_jw_arr_end(o->w);
    cnd_jw_obj_end(o->w);
    return rc;
}

static int s_status(int argc, char **argv)
{
    const char *config = NULL;
    int json = 0;
    const cnd_opt_t opts[] = {
        {"config", CND_OPT_STR, &config, "FILE", "the agent's configuration (required)"},
        {"json", CND_OPT_FLAG, &json, NULL, "print JSON"},
        {0}};
    const cnd_cli_t cli = {"condenser agent status --config FILE [--json]",
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
    cnd_jw_t w;
    cnd_jw_init(&w);
    s_status_out_t o = {json ? &w : NULL};
    if (json) {
        cnd_jw_obj(&w);
        cnd_jw_key(&w, "site");
        cnd_jw_str(&w, c.name);
        cnd_jw_key(&w, "database");
        cnd_jw_str(&w, c.state);
        cnd_jw_key(&w, "rounds");
        cnd_jw_arr(&w);
    } else {
        printf("site %s (%s)\nrounds:\n", c.name, c.state);
    }
    rc = cnd_astore_rounds(s, s_round_row, &o);
    if (json) cnd_jw_arr_end(&w);
    if (!rc) rc = s_direction(s, 'E', "left the site", &o);
    if (!rc) rc = s_direction(s, 'I', "received", &o);
    if (!rc && json) {
        cnd_jw_obj_end(&w);
        const char *t = cnd_jw_text(&w);
        if (t)
            printf("%s\n", t);
        else
            rc = cnd_errf(CND_ENOMEM, "agent status: out of memory");
    }
    cnd_jw_free(&w);
    cnd_astore_close(&s);
    return rc;
}

int cnd_cmd_agent(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "status") == 0) return s_status(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) argc--, argv++;
    const char *config = NULL, *metrics = NULL, *log_level = NULL;
    int until_done = 0, quiet = 0;
    double max_seconds = 0;
    const cnd_opt_t opts[] = {
        {"config", CND_OPT_STR, &config, "FILE", "the agent's INI configuration (required)"},
        {"until-done", CND_OPT_FLAG, &until_done, NULL, "exit after the job's last round"},
        {"max-seconds", CND_OPT_DBL, &max_seconds, "S", "give up after S seconds (default: never)",
         0, 1e9},
        {"metrics", CND_OPT_STR, &metrics, "HOST:PORT",
         "serve Prometheus metrics for this site's monitoring at http://HOST:PORT/metrics"},
        {"quiet", CND_OPT_FLAG, &quiet, NULL, "no progress lines"},
        {"log-level", CND_OPT_STR, &log_level, "LEVEL",
         "error, warn, info or debug: the least severe lines logged (default [site] log_level, "
         "else info)"},
        {0}};
    const cnd_cli_t cli = {
        "condenser agent [run] --config FILE [--until-done]   |   condenser agent status --config "
        "FILE [--json]",
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
    cnd_log_level_t level = c.log_level ? (cnd_log_level_t)c.log_level : CND_LOG_INFO;
    if (log_level && (rc = cnd_log_level_parse(&level, log_level))) return rc;
    cnd_log_set_level(level);
    static char label[80];
    snprintf(label, sizeof label, "agent %s", c.name);
    cnd_agent_run_opts_t o = {config, until_done, max_seconds, quiet ? NULL : cnd_log_emit,
                              label,  metrics};
    return cnd_agent_run(&o, &s_stop);
}
