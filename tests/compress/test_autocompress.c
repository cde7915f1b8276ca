/*
 * test_autocompress.c: the decision logic of `condenser autocompress` (compress/autocompress.h)
 * and its files (autocompress_files.h): budgets parsed and refused (the key, unit or device
 * class named), durations, the successive-halving schedule worked out by hand, the budget
 * violation, ranking and choice (feasible first, then accuracy, then bytes; the closest when
 * none is feasible), the Pareto front of a known set, the state file written and read back
 * (and refused when its settings differ or a field is corrupt), HTML escaping in the report.
 */
#include "autocompress.h"
#include "autocompress_files.h"
#include "check.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_budget(void)
{
    cnd_autoc_budget_t b;
    CHECK(cnd_autoc_budget_parse(&b, "size=64KB,latency=2ms@x86,max-drop=1.0") == 0);
    CHECK(b.size_bytes == 64000 && b.latency_us == 2000 && b.max_drop == 1.0);
    CHECK(!strcmp(b.device, "x86"));
    CHECK(cnd_autoc_budget_parse(&b, "max-drop=0.5,size=20KiB") == 0);
    CHECK(b.size_bytes == 20480 && b.latency_us == 0 && b.max_drop == 0.5);
    CHECK(cnd_autoc_budget_parse(&b, "size=1000") == 0 && b.size_bytes == 1000);
    CHECK(cnd_autoc_budget_parse(&b, "latency=250us") == 0 && b.latency_us == 250);
    CHECK(!strcmp(b.device, "x86") && b.max_drop < 0);
    CHECK(cnd_autoc_budget_parse(&b, "size=1.5MB,latency=0.01s") == 0);
    CHECK(b.size_bytes == 1.5e6 && fabs(b.latency_us - 1e4) < 1e-6);
    CHECK(cnd_autoc_budget_parse(&b, "") == 0 && b.size_bytes == 0 && b.max_drop < 0);
    char txt[128];
    CHECK(cnd_autoc_budget_parse(&b, "size=20KB,latency=2ms,max-drop=1") == 0);
    cnd_autoc_budget_format(&b, txt, sizeof txt);
    CHECK(!strcmp(txt, "size=20000B,latency=2000us@x86,max-drop=1"));
    cnd_autoc_budget_t b2;
    CHECK(cnd_autoc_budget_parse(&b2, txt) == 0 && !memcmp(&b, &b2, sizeof b));
    CHECK(cnd_autoc_budget_parse(&b, "") == 0);
    cnd_autoc_budget_format(&b, txt, sizeof txt);
    CHECK(!strcmp(txt, "none"));

    struct {
        const char *in, *says;
    } bad[] = {
        {"flash=64KB", "unknown key 'flash'"},
        {"size=64XB", "unknown unit 'XB'"},
        {"size=-1KB", "size"},
        {"size=KB", "does not start with a number"},
        {"latency=2ms@arm", "no latency model for device class 'arm' (classes with one: x86)"},
        {"latency=2ms@", "device class ''"},
        {"latency=2min", "unknown unit 'min'"},
        {"latency=0ms", "must be > 0"},
        {"max-drop=1%", "plain number"},
        {"size=1KB,size=2KB", "given twice"},
        {"size", "not KEY=VALUE"},
        {"size=1KB,", "ends with ','"},
        {"size=0.1", ">= 1 byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cnd_err_clear();
        int rc = cnd_autoc_budget_parse(&b, bad[i].in);
        CHECK(rc == CND_EINVAL);
        if (!strstr(cnd_err_detail(), bad[i].says))
            fprintf(stderr, "budget '%s': detail '%s' lacks '%s'\n", bad[i].in, cnd_err_detail(),
                    bad[i].says);
        CHECK(strstr(cnd_err_detail(), bad[i].says) != NULL);
    }
}

static void test_duration(void)
{
    double s;
    CHECK(cnd_autoc_parse_duration("15m", &s) == 0 && s == 900);
    CHECK(cnd_autoc_parse_duration("90s", &s) == 0 && s == 90);
    CHECK(cnd_autoc_parse_duration("1h30m", &s) == 0 && s == 5400);
    CHECK(cnd_autoc_parse_duration("42", &s) == 0 && s == 42);
    CHECK(cnd_autoc_parse_duration("0.5m", &s) == 0 && s == 30);
    CHECK(cnd_autoc_parse_duration("15x", &s) == CND_EINVAL);
    CHECK(cnd_autoc_parse_duration("", &s) == CND_EINVAL);
    CHECK(cnd_autoc_parse_duration("0s", &s) == CND_EINVAL);
    CHECK(cnd_autoc_parse_duration("-5m", &s) == CND_EINVAL);
    CHECK(cnd_autoc_parse_duration("m", &s) == CND_EINVAL);
}

static void test_schedule(void)
{
    cnd_autoc_sched_t s;
    /* 24 candidates, halving: 24 12 6 3 2; epochs 1 2 4 4 4; subset 5000 10000 20000 40000
     * 54000: the fifth rung is at both caps, so it is the last, with two finalists */
    CHECK(cnd_autoc_schedule(&s, 24, 2, 1, 4, 5000, 54000) == 0);
    CHECK(s.n_rungs == 5);
    const int keep[] = {24, 12, 6, 3, 2}, ep[] = {1, 2, 4, 4, 4};
    const long sub[] = {5000, 10000, 20000, 40000, 54000};
    for (int r = 0; r < 5; r++)
        CHECK(s.keep[r] == keep[r] && s.epochs[r] == ep[r] && s.subset[r] == sub[r]);
    /* at both caps before one candidate is left: stops there */
    CHECK(cnd_autoc_schedule(&s, 30, 3, 2, 2, 1000, 1000) == 0);
    CHECK(s.n_rungs == 1 && s.keep[0] == 30 && s.epochs[0] == 2 && s.subset[0] == 1000);
    CHECK(cnd_autoc_schedule(&s, 10, 3, 1, 100, 100, 100000) == 0);
    CHECK(s.n_rungs == 4 && s.keep[1] == 4 && s.keep[2] == 2 && s.keep[3] == 1);
    CHECK(s.epochs[3] == 27 && s.subset[3] == 2700);
    /* one candidate: one rung */
    CHECK(cnd_autoc_schedule(&s, 1, 2, 1, 4, 10, 100) == 0 && s.n_rungs == 1);
    /* subset larger than the data is capped */
    CHECK(cnd_autoc_schedule(&s, 2, 2, 1, 4, 500, 300) == 0 && s.subset[0] == 300);
    CHECK(cnd_autoc_schedule(&s, 0, 2, 1, 4, 10, 100) == CND_EINVAL);
    CHECK(cnd_autoc_schedule(&s, 4, 1, 1, 4, 10, 100) == CND_EINVAL);
    CHECK(cnd_autoc_schedule(&s, 4, 2, 3, 2, 10, 100) == CND_EINVAL);
    /* never more rungs than the array holds */
    CHECK(cnd_autoc_schedule(&s, 100000, 2, 1, 1000, 1, 1000000000) == 0);
    CHECK(s.n_rungs <= CND_AUTOC_MAX_RUNGS);
}

static void test_scale_spec(void)
{
    char out[512];
    const char *cnn = "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) "
                      "flatten dense(128) relu dense(10)";
    CHECK(cnd_autoc_scale_spec(out, sizeof out, cnn, 0.25) == 0);
    CHECK(!strcmp(out, "conv2d(8,3,pad=1) relu maxpool(2) conv2d(16,3,pad=1) relu maxpool(2) "
                       "flatten dense(32) relu dense(10)"));
    CHECK(cnd_autoc_scale_spec(out, sizeof out, cnn, 1) == 0 && !strcmp(out, cnn));
    /* rounding, at least one channel, a count without more arguments */
    CHECK(cnd_autoc_scale_spec(out, sizeof out, "conv2d(5) relu dense(3) dense(10)", 0.1) == 0);
    CHECK(!strcmp(out, "conv2d(1) relu dense(1) dense(10)"));
    CHECK(cnd_autoc_scale_spec(out, sizeof out, "flatten dense(7) relu dense(10)", 1.5) == 0);
    CHECK(!strcmp(out, "flatten dense(11) relu dense(10)"));
    /* refusals */
    CHECK(cnd_autoc_scale_spec(out, sizeof out, "a=conv2d(8,3) relu add(@a) dense(10)", 0.5) ==
          CND_EINVAL);
    CHECK(cnd_autoc_scale_spec(out, sizeof out, "conv2d(8,3,groups=8) dense(10)", 0.5) ==
          CND_EINVAL);
    CHECK(cnd_autoc_scale_spec(out, sizeof out, cnn, 0) == CND_EINVAL);
    CHECK(cnd_autoc_scale_spec(out, sizeof out, "conv2d(x) dense(10)", 0.5) == CND_EINVAL);
    CHECK(cnd_autoc_scale_spec(out, 20, cnn, 0.5) == CND_EINVAL);
}

static void test_ranking(void)
{
    cnd_autoc_budget_t b;
    CHECK(cnd_autoc_budget_parse(&b, "size=20KB,latency=100us,max-drop=2") == 0);
    double t = 0.92;
    cnd_autoc_point_t p[] = {
        {0.91, 19000, 50},  /* 0: feasible */
        {0.915, 19500, 90}, /* 1: feasible, better accuracy */
        {0.95, 30000, 50},  /* 2: too big (0.5 over) */
        {0.89, 10000, 50},  /* 3: drop 3 > 2: 0.01 over */
        {0.915, 18000, 80}, /* 4: ties 1 on accuracy, smaller: best */
        {0.93, 19000, -1},  /* 5: latency unknown against a budget: a miss of 1 */
    };
    CHECK(cnd_autoc_violation(&b, t, &p[0]) == 0);
    CHECK(fabs(cnd_autoc_violation(&b, t, &p[2]) - 0.5) < 1e-12);
    CHECK(fabs(cnd_autoc_violation(&b, t, &p[3]) - 0.01) < 1e-9);
    CHECK(cnd_autoc_violation(&b, t, &p[5]) == 1);
    CHECK(cnd_autoc_choose(&b, t, p, 6) == 4);
    CHECK(cnd_autoc_choose(&b, t, p, 4) == 1);
    CHECK(cnd_autoc_better(&b, t, &p[1], 1, &p[0], 0) &&
          !cnd_autoc_better(&b, t, &p[0], 0, &p[1], 1));
    /* none feasible: the closest (3, 0.01) over the more accurate (2, 0.5) */
    cnd_autoc_point_t q[] = {p[2], p[3], p[5]};
    CHECK(cnd_autoc_choose(&b, t, q, 3) == 1);
    /* equal points: the lower index */
    cnd_autoc_point_t e[] = {p[0], p[0]};
    CHECK(cnd_autoc_choose(&b, t, e, 2) == 0);
    CHECK(cnd_autoc_choose(&b, t, p, 0) == -1);
    /* no budget: the most accurate */
    cnd_autoc_budget_t none;
    CHECK(cnd_autoc_budget_parse(&none, "") == 0);
    CHECK(cnd_autoc_choose(&none, t, p, 6) == 2);
}

static void test_pareto(void)
{
    /* (acc, cost): 0 (0.80, 10) front; 1 (0.85, 20) front; 2 (0.84, 25) dominated by 1;
     * 3 (0.90, 40) front; 4 (0.80, 12) dominated by 0; 5 (0.99, -1) unknown cost: never;
     * 6 (0.85, 20) equal to 1: both stay */
    double acc[] = {0.80, 0.85, 0.84, 0.90, 0.80, 0.99, 0.85};
    double cost[] = {10, 20, 25, 40, 12, -1, 20};
    uint8_t f[7];
    cnd_autoc_pareto(f, acc, cost, 7);
    const uint8_t want[] = {1, 1, 0, 1, 0, 0, 1};
    CHECK(!memcmp(f, want, sizeof want));
    cnd_autoc_pareto(f, acc, cost, 1);
    CHECK(f[0] == 1);
}

static void s_result(cnd_autoc_result_t *r, int cand, int rung)
{
    memset(r, 0, sizeof *r);
    r->cand = cand, r->rung = rung, r->ratio = 0.75, r->T = 4, r->alpha = 0.9, r->qat = 1;
    r->wbits = 8, r->epochs = 2, r->subset = 10000, r->val_acc = 0.8875, r->bytes = 19876;
    r->weight_bytes = 15000, r->arena_bytes = 30000, r->act_bytes = 12544, r->macs = 250000;
    r->params = 15432, r->pred_us = 42.5, r->meas_us = -1, r->seconds = 12.25;
    snprintf(r->spec, sizeof r->spec, "conv2d(8,3,pad=1) relu <b>&\"'");
    r->n_layers = 2;
    snprintf(r->layer[0], sizeof r->layer[0], "conv2d(8,3,pad=1)+relu");
    r->snr_db[0] = 35.5;
    snprintf(r->layer[1], sizeof r->layer[1], "flatten");
    r->snr_db[1] = INFINITY;
}

static void test_state(void)
{
    cnd_autoc_result_t r[2], *back = NULL;
    s_result(&r[0], 0, 0);
    s_result(&r[1], 3, 1);
    r[1].meas_us = 77.0;
    cnd_buf_t b;
    cnd_buf_init(&b);
    const char *cfg = "model_sha256=ab;data=fmnist;seed=1";
    cnd_autoc_state_write(&b, cfg, r, 2);
    CHECK(b.err == 0);
    int n = 0;
    CHECK(cnd_autoc_state_read(&back, &n, (const char *)b.data, b.len, cfg, "state.json") == 0);
    CHECK(n == 2);
    if (back && n == 2) {
        for (int i = 0; i < 2; i++) {
            CHECK(back[i].cand == r[i].cand && back[i].rung == r[i].rung);
            CHECK(back[i].val_acc == r[i].val_acc && back[i].bytes == r[i].bytes);
            CHECK(back[i].pred_us == r[i].pred_us && back[i].meas_us == r[i].meas_us);
            CHECK(back[i].T == 4 && back[i].alpha == 0.9 && back[i].qat == 1 && back[i].wbits == 8);
            CHECK(!strcmp(back[i].spec, r[i].spec) && back[i].n_layers == 2);
            CHECK(back[i].snr_db[0] == 35.5 && isinf(back[i].snr_db[1]));
        }
    }
    free(back);
    back = NULL;
    /* other settings: refused, the first differing setting named */
    cnd_err_clear();
    CHECK(cnd_autoc_state_read(&back, &n, (const char *)b.data, b.len,
                               "model_sha256=ab;data=csv:x.csv;seed=1", "s.json") == CND_EINVAL);
    CHECK(strstr(cnd_err_detail(), "'data=fmnist'") != NULL);
    CHECK(back == NULL);
    /* corrupt fields, truncation */
    char *t = malloc(b.len + 1);
    if (t) {
        memcpy(t, b.data, b.len);
        t[b.len] = 0;
        char *w = strstr(t, "\"wbits\":8");
        if (w) w[8] = '5';
        cnd_err_clear();
        CHECK(cnd_autoc_state_read(&back, &n, t, b.len, cfg, "s.json") == CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "wbits") != NULL);
        if (w) w[8] = '8';
        char *v = strstr(t, "\"val_accuracy\":0.8875");
        if (v) v[15] = '7'; /* 7.8875 */
        CHECK(cnd_autoc_state_read(&back, &n, t, b.len, cfg, "s.json") == CND_EINVAL);
        CHECK(strstr(cnd_err_detail(), "val_accuracy") != NULL);
        CHECK(cnd_autoc_state_read(&back, &n, t, b.len / 2, cfg, "s.json") == CND_EINVAL);
        free(t);
    }
    CHECK(cnd_autoc_state_read(&back, &n, "{}", 2, cfg, "s.json") == CND_EINVAL);
    cnd_buf_free(&b);
}

/* Replaces the first `from` in the NUL-terminated t (room for cap bytes) by `to`. */
static int s_subst(char *t, size_t cap, const char *from, const char *to)
{
    char *p = strstr(t, from);
    size_t lf = strlen(from), lt = strlen(to), rest;
    if (!p || strlen(t) - lf + lt >= cap) return 0;
    rest = strlen(p + lf);
    memmove(p + lt, p + lf, rest + 1);
    memcpy(p, to, lt);
    return 1;
}

/* A mixed result: "wbits": "mixed" and its per-layer bits round-trip; the text form names
 * them; a mixed result without them, bad bits, or bits on a uniform result are refused; a
 * state file written before mixed bits (no layer_wbits) still reads. */
static void test_state_mixed(void)
{
    cnd_autoc_result_t r[2], *back = NULL;
    s_result(&r[0], 0, 0);
    s_result(&r[1], 1, 0);
    r[1].wbits = CND_AUTOC_MIXED, r[1].n_wl = 4;
    r[1].wl[0] = 8, r[1].wl[1] = 4, r[1].wl[2] = 4, r[1].wl[3] = 8;
    char bt[64];
    cnd_autoc_bits_text(bt, sizeof bt, &r[1]);
    CHECK(!strcmp(bt, "W[8,4,4,8]A8"));
    cnd_autoc_bits_text(bt, sizeof bt, &r[0]);
    CHECK(!strcmp(bt, "W8A8"));
    cnd_buf_t b;
    cnd_buf_init(&b);
    const char *cfg = "seed=1";
    cnd_autoc_state_write(&b, cfg, r, 2);
    CHECK(b.err == 0);
    int n = 0;
    CHECK(cnd_autoc_state_read(&back, &n, (const char *)b.data, b.len, cfg, "s.json") == 0);
    CHECK(n == 2);
    if (back && n == 2) {
        CHECK(back[0].wbits == 8 && back[0].n_wl == 0);
        CHECK(back[1].wbits == CND_AUTOC_MIXED && back[1].n_wl == 4);
        CHECK(!memcmp(back[1].wl, r[1].wl, 4));
    }
    free(back);
    back = NULL;
    size_t cap = b.len + 64;
    char *t = calloc(cap, 1);
    if (t) {
        const struct {
            const char *from, *to, *why;
        } bad[] = {
            {"\"layer_wbits\":[8,4,4,8]", "\"layer_wbits\":[8,4,5,8]", "layer_wbits"},
            {"\"layer_wbits\":[8,4,4,8]", "\"layer_wbits\":[]", "layer_wbits"},
            {",\"layer_wbits\":[8,4,4,8]", "", "layer_wbits"},
            {"\"wbits\":\"mixed\"", "\"wbits\":\"mixes\"", "wbits"},
            {"\"wbits\":\"mixed\"", "\"wbits\":4", "layer_wbits"},
        };
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            memcpy(t, b.data, b.len);
            t[b.len] = 0;
            CHECK(s_subst(t, cap, bad[k].from, bad[k].to));
            cnd_err_clear();
            CHECK(cnd_autoc_state_read(&back, &n, t, strlen(t), cfg, "s.json") == CND_EINVAL);
            CHECK(strstr(cnd_err_detail(), bad[k].why) != NULL);
            CHECK(back == NULL);
        }
        free(t);
    }
    cnd_buf_free(&b);
    /* an old state file: only uniform results, no layer_wbits anywhere */
    cnd_buf_init(&b);
    cnd_autoc_state_write(&b, cfg, r, 1);
    int has = 0;
    for (size_t k = 0; b.data && k + 11 <= b.len; k++)
        has |= !memcmp(b.data + k, "layer_wbits", 11);
    CHECK(b.err == 0 && !has);
    CHECK(cnd_autoc_state_read(&back, &n, (const char *)b.data, b.len, cfg, "s.json") == 0);
    CHECK(n == 1 && back && back[0].wbits == 8);
    free(back);
    cnd_buf_free(&b);
}

static void test_report(void)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_autoc_html_escape(&b, "<script>&\"'\x01");
    CHECK(b.len == strlen("&lt;script&gt;&amp;&quot;&#39;?") &&
          !memcmp(b.data, "&lt;script&gt;&amp;&quot;&#39;?", b.len));
    cnd_buf_free(&b);
    cnd_autoc_result_t r[2];
    s_result(&r[0], 0, 0);
    s_result(&r[1], 1, 0);
    r[1].bytes = 30000, r[1].val_acc = 0.9;
    r[1].wbits = CND_AUTOC_MIXED, r[1].n_wl = 2, r[1].wl[0] = 4, r[1].wl[1] = 8;
    cnd_autoc_budget_t bud;
    CHECK(cnd_autoc_budget_parse(&bud, "size=20KB") == 0);
    cnd_autoc_report_t rep = {"m<1>.cnd", "fmnist&x", "size=20000B", &bud, 0.9, 100000,
                              0,          1,          0.88,          NULL};
    cnd_buf_init(&b);
    cnd_autoc_report_html(&b, &rep, r, 2);
    CHECK(b.err == 0 && b.len > 0);
    char *s = malloc(b.len + 1);
    if (s) {
        memcpy(s, b.data, b.len);
        s[b.len] = 0;
        CHECK(strstr(s, "m&lt;1&gt;.cnd") && strstr(s, "fmnist&amp;x"));
        CHECK(!strstr(s, "<b>") && strstr(s, "&lt;b&gt;&amp;&quot;&#39;"));
        CHECK(strstr(s, "<svg") && strstr(s, "stroke=\"#d00\"")); /* the chosen point ringed */
        CHECK(strstr(s, "no result has this figure"));            /* no measured latency at all */
        CHECK(strstr(s, "Test accuracy of the chosen artifact: 0.8800"));
        CHECK(strstr(s, "W[4,8]A8") && strstr(s, "W8A8")); /* mixed bits in the table */
        free(s);
    }
    cnd_buf_free(&b);
}

int main(void)
{
    test_budget();
    test_duration();
    test_schedule();
    test_scale_spec();
    test_ranking();
    test_pareto();
    test_state();
    test_state_mixed();
    test_report();
    return check_result("test_autocompress");
}
