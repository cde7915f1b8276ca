/*
 * autocompress_files.h: what `condenser autocompress` keeps in its output directory, as text:
 * the state file (every finished candidate, so that --resume redoes none of them), the summary
 * of the chosen artifact (best.json, also the --json output) and the report (report.html, one
 * self-contained page with inline SVG). The command writes each of them atomically
 * (cnd_file_write_atomic) after every candidate; this file only turns results into text and the
 * state file back into results, checking every field of it (the file is untrusted input).
 */
#ifndef CND_AUTOCOMPRESS_FILES_H
#define CND_AUTOCOMPRESS_FILES_H

#include "autocompress.h"
#include "bytes.h"
#include "json.h"

#define CND_AUTOC_MAX_LAYERS    64
#define CND_AUTOC_STATE_VERSION 1
#define CND_AUTOC_MIXED         0 /* cnd_autoc_result_t.wbits of a per-layer (mixed) artifact */

typedef struct {
    int cand, rung;          /* candidate index and successive-halving rung */
    double ratio;            /* pruning ratio of the teacher */
    double mult;             /* > 0: an --arch student at this width multiplier; else -1 */
    double T, alpha;         /* distillation temperature and weight of the teacher */
    int qat;                 /* QAT epochs (0 = PTQ) */
    int wbits;               /* 8 or 4, or CND_AUTOC_MIXED: 8 or 4 per layer (layer_wbits) */
    int epochs;              /* distillation epochs of the fine-tune */
    long subset;             /* training samples the fine-tune (and QAT) ran on */
    double val_acc;          /* integer artifact's accuracy on the validation split */
    double bytes;            /* .cndq file bytes */
    double weight_bytes;     /* packed weights */
    double arena_bytes;      /* runtime arena */
    double act_bytes;        /* peak activation bytes, as the arena planner places them */
    double macs;             /* per inference */
    double params;           /* float parameters of the pruned model */
    double pred_us, meas_us; /* predicted / measured batch-1 latency; < 0 = not known */
    double seconds;          /* wall time of this candidate */
    char spec[1024];         /* the pruned architecture */
    int n_wl;                /* mixed: weighted layers (dense, conv2d) in order; else 0 */
    uint8_t wl[CND_AUTOC_MAX_LAYERS]; /* mixed: their weight bits, 8 or 4 */
    int n_layers;                     /* integer layers with an SNR below */
    char layer[CND_AUTOC_MAX_LAYERS][48];
    double snr_db[CND_AUTOC_MAX_LAYERS]; /* quantized vs float output; > 1e9 = exact */
} cnd_autoc_result_t;

/* "ratio 0.750" for a pruned teacher, "--arch x0.500" for a student. */
void cnd_autoc_width_text(char *out, size_t n, const cnd_autoc_result_t *r);

/* "W8A8", "W4A8", or for a mixed result its bits per weighted layer: "W[8,4,4,8]A8". */
void cnd_autoc_bits_text(char *out, size_t n, const cnd_autoc_result_t *r);

/* The ranking point of a result: predicted latency, else measured. */
cnd_autoc_point_t cnd_autoc_point(const cnd_autoc_result_t *r);

/* Appends the state file: {"version", "config", "results": [...]}. config is the search's
 * settings string, which --resume must find unchanged. */
void cnd_autoc_state_write(cnd_buf_t *out, const char *config, const cnd_autoc_result_t *r, int n);

/* Parses a state file (`what` names it). On success *res is an owned array of *n results (free).
 * Returns 0, CND_EINVAL naming the field at fault or a config that differs from `config`
 * (the detail names the first differing setting), CND_ENOMEM. */
CND_MUST_USE int cnd_autoc_state_read(cnd_autoc_result_t **res, int *n, const char *text,
                                      size_t len, const char *config, const char *what);

/* Writes one result as a JSON object (the value of a key or an array item; for the state
 * file, best.json and --json). */
void cnd_autoc_result_json(cnd_jw_t *w, const cnd_autoc_result_t *r);

/* The report page. teacher_acc < 0 when unknown; chosen is an index into r or -1; test_acc < 0
 * when not measured. Every string from a model or the command line is HTML-escaped. */
typedef struct {
    const char *model, *data, *budget_text;
    const cnd_autoc_budget_t *budget;
    double teacher_acc, teacher_bytes;
    int chosen;
    int met; /* the chosen result meets the budget */
    double test_acc;
    const cnd_autoc_sched_t *sched;
} cnd_autoc_report_t;

void cnd_autoc_report_html(cnd_buf_t *out, const cnd_autoc_report_t *rep,
                           const cnd_autoc_result_t *r, int n);

/* Appends s to out with & < > " ' escaped. */
void cnd_autoc_html_escape(cnd_buf_t *out, const char *s);

#endif
