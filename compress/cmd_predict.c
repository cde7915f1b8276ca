/*
 * cmd_predict.c: `condenser predict MODEL.cnd --device CLASS`: the batch-1 latency of the
 * model's int8 artifact in the integer runtime predicted by a per-kernel cost model (latency.h),
 * with that model's error on held-out measurements; `condenser predict --fit MEAS.csv`: fits a
 * cost model from measurements (bench/latency_fit.sh makes them).
 */
#include "cli.h"
#include "commands.h"
#include "json.h"
#include "latency.h"
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_ROWS 4096

/* Reads a whole small text file into a new NUL-terminated buffer. */
static int s_slurp(char **out, const char *path, size_t max)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return cnd_errf(CND_EIO, "cannot open %s", path);
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max + 1, fp) : 0;
    int bad = ferror(fp);
    fclose(fp);
    if (!b) return CND_ENOMEM;
    if (bad || n > max) {
        free(b);
        return cnd_errf(bad ? CND_EIO : CND_EINVAL, "%s: %s", path,
                        bad ? "read error" : "larger than expected");
    }
    b[n] = 0;
    *out = b;
    return 0;
}

/* One CSV row "MODEL,LATENCY_US,HELDOUT" (MODEL relative to the CSV's directory `dir`). */
static int s_row(double *f, double *y, int *held, char *line, const char *dir, const char *what,
                 int lineno)
{
    char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL, *end;
    if (!c2)
        return cnd_errf(CND_EINVAL, "%s line %d: expected MODEL,LATENCY_US,HELDOUT", what, lineno);
    *c1 = *c2 = 0;
    *y = strtod(c1 + 1, &end);
    long h = strtol(c2 + 1, &end, 10);
    if (!(*y > 0) || (h != 0 && h != 1) || (*end && *end != '\r'))
        return cnd_errf(CND_EINVAL, "%s line %d: bad latency or held-out flag", what, lineno);
    *held = (int)h;
    char path[4096];
    snprintf(path, sizeof path, "%s%s", line[0] == '/' ? "" : dir, line);
    cnd_model_t *m = NULL;
    int rc = cnd_model_load(&m, path);
    if (!rc) rc = cnd_latency_features(m, f);
    cnd_model_destroy(&m);
    return rc ? cnd_err_wrap(rc, "%s line %d", what, lineno) : 0;
}

static int s_fit(const char *csv, const char *device, const char *kernels, const char *out)
{
    cnd_latency_model_t c = {0};
    if (!strcmp(kernels, "ref"))
        c.kernels = CND_LAT_KERNELS_REF;
    else if (strcmp(kernels, "x86"))
        return cnd_errf(CND_EINVAL, "--kernels: '%s' is not x86 or ref", kernels);
    char *text = NULL, dir[4096] = "";
    int rc = s_slurp(&text, csv, (size_t)1 << 22), n = 0, lineno = 0;
    if (rc) return rc;
    const char *slash = strrchr(csv, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s/", (int)(slash - csv), csv);
    double(*f)[CND_LAT_NF] = malloc(S_MAX_ROWS * sizeof *f), *y = malloc(S_MAX_ROWS * sizeof *y);
    int *held = malloc(S_MAX_ROWS * sizeof *held);
    if (!f || !y || !held) rc = CND_ENOMEM;
    for (char *p = text, *e; !rc && p && *p; p = e ? e + 1 : NULL) {
        e = strchr(p, '\n');
        if (e) *e = 0;
        if (lineno++ == 0 || !*p) continue; /* the header */
        if (n == S_MAX_ROWS)
            rc = cnd_errf(CND_EINVAL, "%s: more than %d rows", csv, S_MAX_ROWS);
        else if (!(rc = s_row(f[n], &y[n], &held[n], p, dir, csv, lineno)))
            n++;
    }
    snprintf(c.device, sizeof c.device, "%s", device);
    if (!rc) rc = cnd_latency_fit(&c, (const double(*)[CND_LAT_NF])f, y, held, n);
    if (!rc) {
        char buf[2048];
        cnd_latency_format(&c, buf, sizeof buf);
        FILE *fp = fopen(out, "w");
        if (!fp || fputs(buf, fp) < 0 || fclose(fp)) rc = cnd_errf(CND_EIO, "cannot write %s", out);
        if (!rc) printf("%s", buf);
        if (!rc)
            printf("fitted on %d models; held-out error median %.1f%%, max %.1f%% (%d models); "
                   "wrote %s\n",
                   c.n_train, 100 * c.heldout_median, 100 * c.heldout_max, c.n_heldout, out);
    }
    free(f);
    free(y);
    free(held);
    free(text);
    return rc;
}

static void s_print(const cnd_latency_model_t *c, const char *path, const double *f, int json)
{
    double t = cnd_latency_predict(c, f);
    if (!json) {
        printf("%s on %s: predicted batch-1 latency %.1f us (int8, integer runtime)\n", path,
               c->device, t);
        printf("  cost model error on %d held-out models: median %.1f%%, max %.1f%%\n",
               c->n_heldout, 100 * c->heldout_median, 100 * c->heldout_max);
        for (int k = 1; k < CND_LAT_NF; k++)
            if (f[k] > 0 && cnd_latency_feature_used(k, c->kernels))
                printf("  %-13s %12.0f  x %.3g us = %8.1f us\n", cnd_latency_feature_name(k), f[k],
                       c->coef[k], f[k] * c->coef[k]);
        printf("  %-13s %12s    %8s   %8.1f us\n", "per call", "", "", c->coef[0]);
        return;
    }
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "model");
    cnd_jw_str(&w, path);
    cnd_jw_key(&w, "device");
    cnd_jw_str(&w, c->device);
    cnd_jw_key(&w, "predicted_us");
    cnd_jw_double(&w, t);
    cnd_jw_key(&w, "heldout_median_error");
    cnd_jw_double(&w, c->heldout_median);
    cnd_jw_key(&w, "heldout_max_error");
    cnd_jw_double(&w, c->heldout_max);
    cnd_jw_key(&w, "heldout_models");
    cnd_jw_int(&w, c->n_heldout);
    cnd_jw_key(&w, "features");
    cnd_jw_obj(&w);
    for (int k = 0; k < CND_LAT_NF; k++) {
        if (!cnd_latency_feature_used(k, c->kernels)) continue;
        cnd_jw_key(&w, cnd_latency_feature_name(k));
        cnd_jw_double(&w, f[k]);
    }
    cnd_jw_obj_end(&w);
    cnd_jw_obj_end(&w);
    const char *s = cnd_jw_text(&w);
    if (s) printf("%s\n", s);
    cnd_jw_free(&w);
}

int cnd_cmd_predict(int argc, char **argv)
{
    const char *device = "x86", *costs = NULL, *fit = NULL, *out = NULL, *kernels = "x86";
    int json = 0;
    const cnd_opt_t opts[] = {
        {"device", CND_OPT_STR, &device, "CLASS",
         "device class: x86 (this kind of host, default) or arm-a7-qemu (32-bit ARM code under "
         "qemu-user on this host: emulation time, not a device's)"},
        {"costs", CND_OPT_STR, &costs, "FILE", "a cost model file instead of the built-in one"},
        {"json", CND_OPT_FLAG, &json, NULL, "print the prediction as JSON"},
        {"fit", CND_OPT_STR, &fit, "MEAS.csv",
         "fit a cost model from measurements (MODEL,LATENCY_US,HELDOUT rows) into --out"},
        {"out", CND_OPT_STR, &out, "FILE", "with --fit: where to write the cost model"},
        {"kernels", CND_OPT_STR, &kernels, "K",
         "with --fit: the kernel set the class runs, x86 (fast paths, default) or ref"},
        {0}};
    const cnd_cli_t cli = {
        "condenser predict MODEL.cnd [--device CLASS] [--costs FILE] [--json]\n"
        "       condenser predict --fit MEAS.csv --device CLASS [--kernels K] --out FILE",
        "Predicts the batch-1 latency of a model's int8 artifact in the integer runtime on a\n"
        "device class from a per-kernel cost model (the work of each kernel the runtime runs,\n"
        "plus a cost per layer and per call) fitted by least squares on measured latencies of\n"
        "generated models, and prints the cost model's error on held-out models. Chains and\n"
        "graphs (mbconv, resblock, add, concat, depthwise) alike. Built in: x86 and\n"
        "arm-a7-qemu (docs/compression.md). --fit makes a cost model from measurements\n"
        "(bench/latency_fit.sh).",
        opts, 0, 1};
    int npos;
    char **pos;
    int rc = cnd_cli_parse(&cli, argc, argv, &npos, &pos);
    if (rc) return rc > 0 ? 0 : rc;
    if (fit) {
        if (!out || npos) return cnd_errf(CND_EINVAL, "--fit takes --out FILE and no MODEL");
        return s_fit(fit, device, kernels, out);
    }
    if (npos != 1) return cnd_errf(CND_EINVAL, "give one MODEL.cnd (try --help)");
    cnd_latency_model_t own;
    const cnd_latency_model_t *c = NULL;
    if (costs) {
        char *text = NULL;
        if ((rc = s_slurp(&text, costs, 1 << 16))) return rc;
        rc = cnd_latency_parse(&own, text, costs);
        free(text);
        if (rc) return rc;
        if (strcmp(own.device, device))
            return cnd_errf(CND_EINVAL, "%s is a cost model for %s, not %s", costs, own.device,
                            device);
        c = &own;
    } else if (!(c = cnd_latency_builtin(device))) {
        return cnd_errf(CND_EINVAL,
                        "no cost model for device class %s (built in: %s; --costs FILE gives one)",
                        device, cnd_latency_builtin_names());
    }
    cnd_model_t *m = NULL;
    double f[CND_LAT_NF];
    if ((rc = cnd_model_load(&m, pos[0])) || (rc = cnd_latency_features(m, f))) {
        cnd_model_destroy(&m);
        return rc;
    }
    cnd_model_destroy(&m);
    s_print(c, pos[0], f, json);
    return 0;
}
