/*
 * cmd_privacy.c: `condenser privacy`, the DP-SGD accountant on the command line
 * (common/dp_accountant.h): the epsilon a run's parameters give, or the noise multiplier a
 * target epsilon needs. Training prints the same figures; this answers them before a run.
 */
#include "cli.h"
#include "commands.h"
#include "dp_accountant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "a,b,c" into at most max orders. */
static int s_parse_orders(const char *s, double *out, size_t max, size_t *n)
{
    *n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(v > 1) || isinf(v) || (*end && *end != ','))
            return cnd_errf(CND_EINVAL, "--orders: \"%s\" is not a list of numbers above 1", s);
        if (*n == max) return cnd_errf(CND_EINVAL, "--orders: more than %zu orders", max);
        out[(*n)++] = v;
        s = *end ? end + 1 : end;
    }
    if (*n == 0) return cnd_errf(CND_EINVAL, "--orders is empty");
    return 0;
}

#define CND_DP_MAX_RUNS 256

/* Parses "Q:S:T,Q:S:T..." (sampling rate, noise multiplier, steps per run). */
static int s_parse_runs(const char *s, cnd_dp_segment_t *out, size_t *n)
{
    *n = 0;
    while (*s) {
        char *e1, *e2 = NULL, *e3 = NULL;
        double q = strtod(s, &e1), sg = *e1 == ':' ? strtod(e1 + 1, &e2) : 0;
        long t = *e1 == ':' && *e2 == ':' ? strtol(e2 + 1, &e3, 10) : -1;
        if (*e1 != ':' || *e2 != ':' || t < 0 || (*e3 && *e3 != ','))
            return cnd_errf(CND_EINVAL, "--compose: \"%s\" is not a list of RATE:NOISE:STEPS runs",
                            s);
        if (*n == CND_DP_MAX_RUNS)
            return cnd_errf(CND_EINVAL, "--compose: more than %d runs", CND_DP_MAX_RUNS);
        out[(*n)++] = (cnd_dp_segment_t){q, sg, t};
        s = *e3 ? e3 + 1 : e3;
    }
    if (*n == 0) return cnd_errf(CND_EINVAL, "--compose is empty");
    return 0;
}

/* --compose: the epsilon of several runs on the same records. */
static int s_composed(const char *list, cnd_dp_params_t *p, int json)
{
    cnd_dp_segment_t runs[CND_DP_MAX_RUNS];
    size_t n;
    double eps, order;
    int rc = s_parse_runs(list, runs, &n);
    if (!rc) rc = cnd_dp_epsilon_composed(p, runs, n, &eps, &order);
    if (rc) return rc;
    const char *conv = p->conversion == CND_DP_CONV_STANDARD ? "standard" : "improved";
    if (!json) {
        printf("%zu runs composed: (epsilon %.6g, delta %.3g)-DP at RDP order %g (%s "
               "conversion)\n",
               n, eps, p->delta, order, conv);
        return 0;
    }
    printf("{\"runs\":[");
    for (size_t i = 0; i < n; i++)
        printf("%s{\"sampling_rate\":%.17g,\"noise_multiplier\":%.17g,\"steps\":%ld}", i ? "," : "",
               runs[i].q, runs[i].sigma, runs[i].steps);
    printf("],\"delta\":%.17g,\"epsilon\":%.17g,\"order\":%.17g,\"conversion\":\"%s\"}\n", p->delta,
           eps, order, conv);
    return 0;
}

/* q and steps from either --sampling-rate/--steps or --samples/--batch/--epochs. */
static int s_rate_steps(double rate, long steps, long samples, long batch, long epochs,
                        cnd_dp_params_t *p)
{
    if (samples || batch || epochs) {
        if (rate > 0 || steps >= 0)
            return cnd_errf(CND_EINVAL, "give --samples/--batch/--epochs or "
                                        "--sampling-rate/--steps, not both");
        if (!samples || !batch || !epochs)
            return cnd_errf(CND_EINVAL, "--samples, --batch and --epochs go together");
        if (batch > samples)
            return cnd_errf(CND_EINVAL, "--batch %ld is larger than --samples %ld", batch, samples);
        p->q = (double)batch / (double)samples;
        p->steps = epochs * ((samples + batch - 1) / batch);
        return 0;
    }
    if (!(rate > 0) || steps < 0)
        return cnd_errf(CND_EINVAL, "give --sampling-rate and --steps, or --samples, --batch "
                                    "and --epochs (try --help)");
    p->q = rate;
    p->steps = steps;
    return 0;
}

static void s_print(const cnd_dp_params_t *p, int solved, double eps, double order, int json,
                    int rdp)
{
    const char *conv = p->conversion == CND_DP_CONV_STANDARD ? "standard" : "improved";
    if (!json) {
        printf("%s sampling rate %.6g, noise multiplier %.7g, %ld steps: (epsilon %.6g, "
               "delta %.3g)-DP at RDP order %g (%s conversion)\n",
               solved ? "solved:" : "DP-SGD with", p->q, p->sigma, p->steps, eps, p->delta, order,
               conv);
        return;
    }
    printf("{\"sampling_rate\":%.17g,\"noise_multiplier\":%.17g,\"steps\":%ld,\"delta\":%.17g,"
           "\"epsilon\":%.17g,\"order\":%.17g,\"conversion\":\"%s\"",
           p->q, p->sigma, p->steps, p->delta, eps, order, conv);
    if (rdp) {
        double def[CND_DP_DEFAULT_ORDERS];
        const double *ord = p->orders;
        size_t n = p->n_orders;
        if (!ord) {
            cnd_dp_default_orders(def);
            ord = def;
            n = CND_DP_DEFAULT_ORDERS;
        }
        printf(",\"rdp\":[");
        for (size_t i = 0; i < n; i++)
            printf("%s[%.17g,%.17g]", i ? "," : "", ord[i],
                   cnd_dp_rdp(p->q, p->sigma, p->steps, ord[i]));
        printf("]");
    }
    printf("}\n");
}

int cnd_cmd_privacy(int argc, char **argv)
{
    double rate = 0, noise = 0, delta = 1e-5, target = 0;
    long steps = -1, samples = 0, batch = 0, epochs = 0;
    const char *conv = "improved", *orders = NULL, *compose = NULL;
    int json = 0, rdp = 0;
    const cnd_opt_t opts[] = {
        {"sampling-rate", CND_OPT_DBL, &rate, "Q", "probability a record is in a step", 1e-12, 1},
        {"steps", CND_OPT_INT, &steps, "T", "steps (compositions)", 0, 1e12},
        {"samples", CND_OPT_INT, &samples, "N", "records in the training set", 1, 1e12},
        {"batch", CND_OPT_INT, &batch, "B", "expected batch size (Q = B/N)", 1, 1e12},
        {"epochs", CND_OPT_INT, &epochs, "E", "epochs (T = E * ceil(N/B))", 1, 1e9},
        {"noise", CND_OPT_DBL, &noise, "S", "noise multiplier (noise std / clip)", 1e-6, 1e6},
        {"epsilon", CND_OPT_DBL, &target, "E", "target epsilon: solve for the noise", 1e-6, 1e6},
        {"delta", CND_OPT_DBL, &delta, "D", "delta (default 1e-5)", 1e-300, 0.999999},
        {"conversion", CND_OPT_STR, &conv, "NAME",
         "improved (Balle et al. 2020, default) | standard (Mironov 2017)"},
        {"orders", CND_OPT_STR, &orders, "LIST",
         "RDP orders a,b,c (default 1.1..10.9, 11..64, "
         "128, 256, 512)"},
        {"rdp", CND_OPT_FLAG, &rdp, NULL, "with --json: the RDP at every order"},
        {"compose", CND_OPT_STR, &compose, "RUNS",
         "Q:S:T,Q:S:T...: epsilon of several runs on the same records"},
        {"json", CND_OPT_FLAG, &json, NULL, "print the result as JSON"},
        {0}};
    const cnd_cli_t cli = {
        "condenser privacy (--sampling-rate Q --steps T | --samples N --batch B --epochs E)\n"
        "                  (--noise S | --epsilon E) [--delta D] [options]\n"
        "       condenser privacy --compose Q:S:T[,Q:S:T...] [--delta D] [options]",
        "The privacy accountant of DP-SGD with Poisson sampling (docs/privacy.md): Renyi DP of\n"
        "the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019) converted to\n"
        "(epsilon, delta). With --noise it prints the epsilon; with --epsilon the smallest\n"
        "noise multiplier that reaches it; with --compose, the epsilon of several runs (each\n"
        "its own sampling rate, noise and steps) over the same records, one after another.",
        opts, 0, 0};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    double ord[1024];
    cnd_dp_params_t p = {.delta = delta, .sigma = noise};
    if (!strcmp(conv, "standard"))
        p.conversion = CND_DP_CONV_STANDARD;
    else if (strcmp(conv, "improved"))
        return cnd_errf(CND_EINVAL, "--conversion \"%s\": use improved or standard", conv);
    if (orders && (rc = s_parse_orders(orders, ord, 1024, &p.n_orders))) return rc;
    if (orders) p.orders = ord;
    if (compose) {
        if (rate > 0 || steps >= 0 || samples || batch || epochs || noise > 0 || target > 0)
            return cnd_errf(CND_EINVAL, "--compose gives each run's rate, noise and steps: "
                                        "no other run options with it");
        return s_composed(compose, &p, json);
    }
    if ((rc = s_rate_steps(rate, steps, samples, batch, epochs, &p))) return rc;
    if ((noise > 0) == (target > 0))
        return cnd_errf(CND_EINVAL, "give exactly one of --noise and --epsilon (try --help)");
    double eps = 0, order = 0;
    if (target > 0 && (rc = cnd_dp_solve_noise(&p, target, &p.sigma, NULL))) return rc;
    if ((rc = cnd_dp_epsilon(&p, &eps, &order))) return rc;
    s_print(&p, target > 0, eps, order, json, rdp);
    return 0;
}
