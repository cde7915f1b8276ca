/*
 * autocompress_files.c: the state file, result JSON and report page of `condenser
 * autocompress` (autocompress_files.h).
 *
 * The report draws three scatter plots in inline SVG (validation accuracy against artifact
 * bytes, predicted latency and measured latency), one dot per result, the Pareto front of each
 * as a line through its points, and the chosen result as a ring; then a table of every result.
 * No script, no stylesheet link, no external asset: the page is one file a browser or an XML
 * parser reads as is.
 */
#include "autocompress_files.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cnd_autoc_point_t cnd_autoc_point(const cnd_autoc_result_t *r)
{
    return (cnd_autoc_point_t){r->val_acc, r->bytes, r->pred_us >= 0 ? r->pred_us : r->meas_us};
}

void cnd_autoc_width_text(char *out, size_t n, const cnd_autoc_result_t *r)
{
    if (r->mult > 0)
        snprintf(out, n, "--arch x%.3f", r->mult);
    else
        snprintf(out, n, "ratio %.3f", r->ratio);
}

void cnd_autoc_bits_text(char *out, size_t n, const cnd_autoc_result_t *r)
{
    if (r->wbits != CND_AUTOC_MIXED) {
        snprintf(out, n, "W%dA8", r->wbits);
        return;
    }
    size_t k = (size_t)snprintf(out, n, "W[");
    for (int i = 0; i < r->n_wl && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%d", i ? "," : "", r->wl[i]);
    if (k < n) snprintf(out + k, n - k, "]A8");
}

static const struct {
    const char *key;
    size_t off;
    double lo, hi;
} s_num_fields[] = {
#define F(k, f, lo, hi)                                                                            \
    {                                                                                              \
        k, offsetof(cnd_autoc_result_t, f), lo, hi                                                 \
    }
    F("ratio", ratio, 0, 0.999),
    F("width_mult", mult, -1, 16),
    F("temperature", T, 0.05, 100),
    F("alpha", alpha, 0, 1),
    F("val_accuracy", val_acc, 0, 1),
    F("bytes", bytes, 1, 1e12),
    F("weight_bytes", weight_bytes, 0, 1e12),
    F("arena_bytes", arena_bytes, 0, 1e12),
    F("activation_bytes", act_bytes, 0, 1e12),
    F("macs", macs, 0, 1e18),
    F("params", params, 0, 1e12),
    F("predicted_us", pred_us, -1, 1e12),
    F("measured_us", meas_us, -1, 1e12),
    F("seconds", seconds, 0, 1e9),
#undef F
};

void cnd_autoc_result_json(cnd_jw_t *w, const cnd_autoc_result_t *r)
{
    cnd_jw_obj(w);
    cnd_jw_key(w, "candidate");
    cnd_jw_int(w, r->cand);
    cnd_jw_key(w, "rung");
    cnd_jw_int(w, r->rung);
    cnd_jw_key(w, "qat_epochs");
    cnd_jw_int(w, r->qat);
    cnd_jw_key(w, "wbits");
    if (r->wbits == CND_AUTOC_MIXED) {
        cnd_jw_str(w, "mixed");
        cnd_jw_key(w, "layer_wbits"); /* per weighted layer, in order */
        cnd_jw_arr(w);
        for (int i = 0; i < r->n_wl; i++) cnd_jw_int(w, r->wl[i]);
        cnd_jw_arr_end(w);
    } else {
        cnd_jw_int(w, r->wbits);
    }
    cnd_jw_key(w, "epochs");
    cnd_jw_int(w, r->epochs);
    cnd_jw_key(w, "subset");
    cnd_jw_int(w, r->subset);
    for (size_t i = 0; i < sizeof s_num_fields / sizeof s_num_fields[0]; i++) {
        double v = *(const double *)((const char *)r + s_num_fields[i].off);
        cnd_jw_key(w, s_num_fields[i].key);
        if (v < 0)
            cnd_jw_null(w);
        else
            cnd_jw_double(w, v);
    }
    cnd_jw_key(w, "spec");
    cnd_jw_str(w, r->spec);
    cnd_jw_key(w, "layers");
    cnd_jw_arr(w);
    for (int i = 0; i < r->n_layers; i++) {
        cnd_jw_obj(w);
        cnd_jw_key(w, "name");
        cnd_jw_str(w, r->layer[i]);
        cnd_jw_key(w, "snr_db");
        if (isfinite(r->snr_db[i]))
            cnd_jw_double(w, r->snr_db[i]);
        else
            cnd_jw_null(w);
        cnd_jw_obj_end(w);
    }
    cnd_jw_arr_end(w);
    cnd_jw_obj_end(w);
}

void cnd_autoc_state_write(cnd_buf_t *out, const char *config, const cnd_autoc_result_t *r, int n)
{
    cnd_jw_t w;
    cnd_jw_init(&w);
    cnd_jw_obj(&w);
    cnd_jw_key(&w, "version");
    cnd_jw_int(&w, CND_AUTOC_STATE_VERSION);
    cnd_jw_key(&w, "config");
    cnd_jw_str(&w, config);
    cnd_jw_key(&w, "results");
    cnd_jw_arr(&w);
    for (int i = 0; i < n; i++) cnd_autoc_result_json(&w, &r[i]);
    cnd_jw_arr_end(&w);
    cnd_jw_obj_end(&w);
    const char *t = cnd_jw_text(&w);
    if (t) {
        cnd_buf_put(out, t, strlen(t));
        cnd_buf_put(out, "\n", 1);
    } else {
        out->err = CND_ENOMEM;
    }
    cnd_jw_free(&w);
}

static int s_int_field(const cnd_json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *v,
                       const char *what, int i)
{
    if (!cnd_json_integer(cnd_json_get(o, key), lo, hi, v))
        return cnd_errf(CND_EINVAL, "%s: result %d: \"%s\" is not an integer in [%lld, %lld]", what,
                        i, key, (long long)lo, (long long)hi);
    return 0;
}

/* "wbits" (8, 4 or "mixed") and, for "mixed" only, "layer_wbits" (state files written before
 * mixed bits have neither "mixed" nor "layer_wbits": they read as before). */
static int s_read_wbits(cnd_autoc_result_t *r, const cnd_json_t *o, const char *what, int i)
{
    const cnd_json_t *f = cnd_json_get(o, "wbits"), *l = cnd_json_get(o, "layer_wbits");
    const char *s = cnd_json_str(f);
    int64_t v = 0;
    if (s ? strcmp(s, "mixed") != 0 : !cnd_json_integer(f, 4, 8, &v) || (v != 4 && v != 8))
        return cnd_errf(CND_EINVAL, "%s: result %d: \"wbits\" must be 8, 4 or \"mixed\"", what, i);
    r->wbits = s ? CND_AUTOC_MIXED : (int)v;
    if (!s) {
        if (l)
            return cnd_errf(CND_EINVAL,
                            "%s: result %d: \"layer_wbits\" belongs to \"wbits\": \"mixed\" only",
                            what, i);
        return 0;
    }
    if (!l || l->type != CND_JSON_ARR || l->n < 1 || l->n > CND_AUTOC_MAX_LAYERS)
        return cnd_errf(CND_EINVAL,
                        "%s: result %d: a mixed result needs \"layer_wbits\", an array of 1 to %d",
                        what, i, CND_AUTOC_MAX_LAYERS);
    for (size_t k = 0; k < l->n; k++) {
        if (!cnd_json_integer(l->items[k], 4, 8, &v) || (v != 4 && v != 8))
            return cnd_errf(CND_EINVAL, "%s: result %d: \"layer_wbits\" item %zu is not 8 or 4",
                            what, i, k + 1);
        r->wl[k] = (uint8_t)v;
    }
    r->n_wl = (int)l->n;
    return 0;
}

/* One result object of the state file into r. */
static int s_read_result(cnd_autoc_result_t *r, const cnd_json_t *o, const char *what, int i)
{
    int64_t v[6];
    int rc;
    if ((rc = s_int_field(o, "candidate", 0, 100000, &v[0], what, i)) ||
        (rc = s_int_field(o, "rung", 0, CND_AUTOC_MAX_RUNGS - 1, &v[1], what, i)) ||
        (rc = s_int_field(o, "qat_epochs", 0, 1000, &v[2], what, i)) ||
        (rc = s_int_field(o, "epochs", 0, 100000, &v[4], what, i)) ||
        (rc = s_int_field(o, "subset", 1, 1000000000, &v[5], what, i)))
        return rc;
    *r = (cnd_autoc_result_t){.cand = (int)v[0],
                              .rung = (int)v[1],
                              .qat = (int)v[2],
                              .epochs = (int)v[4],
                              .subset = (long)v[5]};
    for (size_t k = 0; k < sizeof s_num_fields / sizeof s_num_fields[0]; k++) {
        const cnd_json_t *f = cnd_json_get(o, s_num_fields[k].key);
        double x;
        if (f && f->type == CND_JSON_NULL && s_num_fields[k].lo < 0)
            x = -1;
        else if (!cnd_json_number(f, &x) || !(x >= s_num_fields[k].lo) ||
                 !(x <= s_num_fields[k].hi))
            return cnd_errf(CND_EINVAL,
                            "%s: result %d: \"%s\" is missing or not a number in "
                            "[%g, %g]",
                            what, i, s_num_fields[k].key, s_num_fields[k].lo, s_num_fields[k].hi);
        *(double *)((char *)r + s_num_fields[k].off) = x;
    }
    if ((rc = s_read_wbits(r, o, what, i))) return rc;
    const char *spec = cnd_json_str(cnd_json_get(o, "spec"));
    if (!spec || strlen(spec) >= sizeof r->spec)
        return cnd_errf(CND_EINVAL, "%s: result %d: \"spec\" is missing or too long", what, i);
    strcpy(r->spec, spec);
    const cnd_json_t *ls = cnd_json_get(o, "layers");
    if (!ls || ls->type != CND_JSON_ARR || ls->n > CND_AUTOC_MAX_LAYERS)
        return cnd_errf(CND_EINVAL, "%s: result %d: \"layers\" is not an array of at most %d", what,
                        i, CND_AUTOC_MAX_LAYERS);
    r->n_layers = (int)ls->n;
    for (size_t k = 0; k < ls->n; k++) {
        const char *nm = cnd_json_str(cnd_json_get(ls->items[k], "name"));
        const cnd_json_t *s = cnd_json_get(ls->items[k], "snr_db");
        double x = INFINITY;
        if (!nm || strlen(nm) >= sizeof r->layer[0] || !s ||
            (s->type != CND_JSON_NULL && !cnd_json_number(s, &x)))
            return cnd_errf(CND_EINVAL,
                            "%s: result %d: layer %zu needs a name (< 48 bytes) and "
                            "snr_db",
                            what, i, k + 1);
        strcpy(r->layer[k], nm);
        r->snr_db[k] = x;
    }
    return 0;
}

/* The first ';'-separated setting where a and b differ, into out. */
static void s_first_diff(char *out, size_t n, const char *a0, const char *b)
{
    const char *a = a0;
    while (*a && *a == *b) a++, b++;
    while (a > a0 && a[-1] != ';') a--;
    const char *e = strchr(a, ';');
    snprintf(out, n, "%.*s", e ? (int)(e - a) : (int)strlen(a), a);
}

int cnd_autoc_state_read(cnd_autoc_result_t **res, int *n, const char *text, size_t len,
                         const char *config, const char *what)
{
    *res = NULL;
    *n = 0;
    cnd_json_t *root = NULL;
    int rc = cnd_json_parse(&root, text, len);
    if (rc) return cnd_err_wrap(rc, "%s", what);
    int64_t ver;
    const char *cfg = cnd_json_str(cnd_json_get(root, "config"));
    const cnd_json_t *arr = cnd_json_get(root, "results");
    if (!cnd_json_integer(cnd_json_get(root, "version"), 0, 1000, &ver) ||
        ver != CND_AUTOC_STATE_VERSION) {
        rc = cnd_errf(CND_EINVAL, "%s: not a version %d autocompress state file", what,
                      CND_AUTOC_STATE_VERSION);
    } else if (!cfg || !arr || arr->type != CND_JSON_ARR || arr->n > 100000) {
        rc = cnd_errf(CND_EINVAL, "%s: \"config\" or \"results\" is missing", what);
    } else if (strcmp(cfg, config)) {
        char d[256];
        s_first_diff(d, sizeof d, cfg, config);
        rc = cnd_errf(CND_EINVAL,
                      "%s: the search there ran with other settings (first difference: it has "
                      "'%s'); resume with the same model, data and options, or use another --out",
                      what, d);
    } else if (arr->n && !(*res = calloc(arr->n, sizeof **res))) {
        rc = CND_ENOMEM;
    }
    for (size_t i = 0; !rc && i < arr->n; i++)
        rc = s_read_result(&(*res)[i], arr->items[i], what, (int)i);
    if (rc) {
        free(*res);
        *res = NULL;
    } else {
        *n = (int)arr->n;
    }
    cnd_json_free(&root);
    return rc;
}
