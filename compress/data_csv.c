/*
 * data_csv.c: tabular records from CSV (RFC 4180 quoting; header row; a delimiter given or
 * detected from the header among comma, semicolon, tab and '|').
 *
 * One column holds the class; every other column is a numeric feature, stored as a sample of
 * shape (F, 1, 1) so that per-channel normalisation is per-feature standardisation, or of the
 * shape the options give (shape=1x28x28: 784 columns as one image, row-major). The parser reads
 * the whole file, walks it once, and stops at the first problem with file:line:column and the
 * column's name: a ragged row, a cell that is not a number (infinities included) or does not
 * fit a float, more than 256 classes, a missing value (an empty cell, NA, N/A, NaN, null, ?)
 * unless na=mean, which loads it as NaN for cnd_data_impute() to fill with a training mean.
 */
#include "data.h"
#include "fileio.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 4096

typedef struct {
    const char *path;
    const char *p, *end; /* cursor and end of the file text */
    size_t line;         /* 1-based line of the cursor */
    char delim;          /* field separator */
} s_csv;

/* Reads one field into buf (unquoted); *eol is set when the field ended its record. Returns 0,
 * or an error for bad quoting or an over-long field. */
static int s_field(s_csv *c, char *buf, size_t cap, int *eol, int col)
{
    size_t n = 0;
    *eol = 0;
    int quoted = c->p < c->end && *c->p == '"';
    if (quoted) {
        c->p++;
        for (;;) {
            if (c->p >= c->end)
                return cnd_errf(CND_EFORMAT, "%s:%zu:%d: unterminated quoted field", c->path,
                                c->line, col + 1);
            char ch = *c->p++;
            if (ch == '"') {
                if (c->p < c->end && *c->p == '"')
                    c->p++;
                else
                    break;
            } else if (ch == '\n') {
                c->line++;
            }
            if (n + 1 >= cap)
                return cnd_errf(CND_EFORMAT, "%s:%zu:%d: field too long", c->path, c->line,
                                col + 1);
            buf[n++] = ch;
        }
    }
    while (c->p < c->end && *c->p != c->delim && *c->p != '\n') {
        char ch = *c->p++;
        if (ch == '\r') continue;
        if (quoted && !isspace((unsigned char)ch))
            return cnd_errf(CND_EFORMAT, "%s:%zu:%d: text after closing quote", c->path, c->line,
                            col + 1);
        if (n + 1 >= cap)
            return cnd_errf(CND_EFORMAT, "%s:%zu:%d: field too long", c->path, c->line, col + 1);
        buf[n++] = ch;
    }
    buf[n] = 0;
    if (c->p >= c->end || *c->p == '\n') *eol = 1;
    if (c->p < c->end) c->p++;
    return 0;
}

/* The spellings of a missing value. */
static int s_is_na(const char *v)
{
    static const char *const na[] = {"",    "NA",  "N/A",  "n/a",  "na", "NaN",
                                     "nan", "NAN", "null", "NULL", "?"};
    for (size_t i = 0; i < sizeof na / sizeof na[0]; i++)
        if (!strcmp(v, na[i])) return 1;
    return 0;
}

/* The delimiter of the header line: the most frequent of , ; tab | outside quotes (comma when
 * none occurs). */
static char s_detect_delim(const char *p, const char *end)
{
    static const char cand[] = {',', ';', '\t', '|'};
    size_t count[4] = {0};
    int quoted = 0;
    for (; p < end && (quoted || *p != '\n'); p++) {
        if (*p == '"') quoted = !quoted;
        for (int i = 0; !quoted && i < 4; i++) count[i] += *p == cand[i];
    }
    int best = 0;
    for (int i = 1; i < 4; i++)
        if (count[i] > count[best]) best = i;
    return cand[best];
}

static char *s_trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int s_is_blank_line(const s_csv *c)
{
    const char *q = c->p;
    while (q < c->end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
    return q >= c->end || *q == '\n';
}

typedef struct {
    char *name; /* class value as written */
    double num; /* numeric value when all classes are numbers */
} s_class;

static int s_cmp_num(const void *a, const void *b)
{
    double x = ((const s_class *)a)->num, y = ((const s_class *)b)->num;
    return (x > y) - (x < y);
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(((const s_class *)a)->name, ((const s_class *)b)->name);
}

/* The parse in progress: the header, the rows read so far and their classes. labels[i] owns
 * row i's class text; cls[k].name points at the first row's copy of class k. */
typedef struct {
    s_csv c;
    const char *label_col;
    int na_mean;  /* 1: missing values load as NaN */
    size_t n_na;  /* how many did */
    char **names; /* ncols header names, owned */
    int ncols, lcol;
    float *x;      /* rows x (ncols - 1) features */
    char **labels; /* rows entries */
    size_t rows, cap_rows;
    s_class cls[256];
    int ncls;
} s_table;

static int s_oom(const s_table *t)
{
    return cnd_errf(CND_ENOMEM, "%s: out of memory", t->c.path);
}

/* The header row: column names, and which one holds the class. */
static int s_read_header(s_table *t)
{
    s_csv *c = &t->c;
    char cell[1024];
    int eol = 0, rc;
    if (!(t->names = calloc(MAX_COLS, sizeof *t->names))) return s_oom(t);
    if (s_is_blank_line(c) && c->p >= c->end)
        return cnd_errf(CND_EFORMAT, "%s: empty file (expected a header row)", c->path);
    do {
        if (t->ncols == MAX_COLS)
            return cnd_errf(CND_EFORMAT, "%s:1: more than %d columns", c->path, MAX_COLS);
        if ((rc = s_field(c, cell, sizeof cell, &eol, t->ncols))) return rc;
        if (!(t->names[t->ncols] = strdup(s_trim(cell)))) return s_oom(t);
        if (!strcmp(t->names[t->ncols], t->label_col)) t->lcol = t->ncols;
        t->ncols++;
    } while (!eol);
    c->line++;
    if (t->lcol < 0)
        return cnd_errf(CND_EFORMAT, "%s:1: no column named '%s' in the header", c->path,
                        t->label_col);
    if (t->ncols < 2)
        return cnd_errf(CND_EFORMAT, "%s:1: need at least one feature column besides '%s'", c->path,
                        t->label_col);
    return 0;
}

/* Room for one more row. */
static int s_grow(s_table *t)
{
    if (t->rows < t->cap_rows) return 0;
    size_t cap = t->cap_rows ? t->cap_rows * 2 : 1024, F = (size_t)t->ncols - 1;
    float *nx = realloc(t->x, cap * F * sizeof(float));
    if (nx) t->x = nx;
    char **nl = realloc(t->labels, cap * sizeof *nl);
    if (nl) t->labels = nl;
    if (!nx || !nl) return s_oom(t);
    t->cap_rows = cap;
    return 0;
}

/* One record into row t->rows of x; its class text (owned) into *label. `line` is where the
 * record starts, for the messages. */
static int s_read_row(s_table *t, char **label, size_t line)
{
    s_csv *c = &t->c;
    const size_t F = (size_t)t->ncols - 1;
    char cell[1024];
    int eol = 0, f = 0, rc;
    *label = NULL;
    for (int col = 0;; col++) {
        if (col == t->ncols)
            return cnd_errf(CND_EFORMAT, "%s:%zu: row has more than the header's %d columns",
                            c->path, line, t->ncols);
        if ((rc = s_field(c, cell, sizeof cell, &eol, col))) return rc;
        char *v = s_trim(cell);
        if (col == t->lcol && !*v)
            return cnd_errf(CND_EFORMAT, "%s:%zu:%d: the class column '%s' is empty", c->path, line,
                            col + 1, t->names[col]);
        if (col != t->lcol && s_is_na(v)) {
            if (!t->na_mean)
                return cnd_errf(CND_EFORMAT,
                                "%s:%zu:%d: missing value '%s' in column '%s' (na=refuse; "
                                "na=mean fills in the training mean)",
                                c->path, line, col + 1, v, t->names[col]);
            t->x[t->rows * F + (size_t)f++] = NAN;
            t->n_na++;
        } else if (col == t->lcol) {
            free(*label);
            if (!(*label = strdup(v))) return s_oom(t);
        } else {
            char *end;
            errno = 0;
            double d = strtod(v, &end);
            if (end == v || *end || errno == ERANGE || !isfinite(d))
                return cnd_errf(CND_EFORMAT,
                                "%s:%zu:%d: column '%s': '%.40s' is not a finite number", c->path,
                                line, col + 1, t->names[col], v);
            if (fabs(d) > FLT_MAX) /* would be stored as an infinity */
                return cnd_errf(CND_EFORMAT,
                                "%s:%zu:%d: column '%s': '%.40s' is outside the range of a "
                                "float (about 3.4e38)",
                                c->path, line, col + 1, t->names[col], v);
            t->x[t->rows * F + (size_t)f++] = (float)d;
        }
        if (eol) {
            if (col + 1 != t->ncols)
                return cnd_errf(CND_EFORMAT, "%s:%zu: row has %d columns, header has %d", c->path,
                                line, col + 1, t->ncols);
            return 0;
        }
    }
}

/* Appends a row's class (taking ownership of label), adding the class when it is new. */
static int s_add_label(s_table *t, char *label, size_t line)
{
    int k = 0;
    while (k < t->ncls && strcmp(t->cls[k].name, label) != 0) k++;
    if (k == t->ncls) {
        if (t->ncls == 256) {
            free(label);
            return cnd_errf(CND_EFORMAT, "%s:%zu: more than 256 distinct classes in '%s'",
                            t->c.path, line, t->label_col);
        }
        t->cls[t->ncls++].name = label;
    }
    t->labels[t->rows++] = label;
    return 0;
}

/* The data rows, skipping blank lines. */
static int s_read_rows(s_table *t)
{
    s_csv *c = &t->c;
    int rc;
    while (c->p < c->end) {
        if (s_is_blank_line(c)) {
            while (c->p < c->end && *c->p != '\n') c->p++;
            if (c->p < c->end) c->p++;
            c->line++;
            continue;
        }
        if ((rc = s_grow(t))) return rc;
        size_t line = c->line;
        char *label = NULL;
        if ((rc = s_read_row(t, &label, line))) {
            free(label);
            return rc;
        }
        c->line++;
        if ((rc = s_add_label(t, label, line))) return rc;
    }
    if (t->rows == 0) return cnd_errf(CND_EFORMAT, "%s: no data rows after the header", c->path);
    return 0;
}

/* The dataset: classes ordered numerically when every class is a number, else by name; the
 * feature matrix moves into it. */
static int s_build(cnd_dataset_t **out, s_table *t)
{
    int numeric = 1;
    for (int k = 0; k < t->ncls; k++) {
        char *end;
        t->cls[k].num = strtod(t->cls[k].name, &end);
        if (end == t->cls[k].name || *end) numeric = 0;
    }
    qsort(t->cls, (size_t)t->ncls, sizeof t->cls[0], numeric ? s_cmp_num : s_cmp_str);
    cnd_dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds) return s_oom(t);
    ds->n = t->rows;
    ds->shape = (cnd_shape_t){t->ncols - 1, 1, 1};
    ds->n_na = t->n_na;
    ds->n_classes = t->ncls;
    ds->x = t->x;
    t->x = NULL;
    ds->y = malloc(t->rows);
    ds->class_names = calloc((size_t)t->ncls, sizeof(char *));
    int ok = ds->y && ds->class_names;
    for (int k = 0; ok && k < t->ncls; k++) ok = (ds->class_names[k] = strdup(t->cls[k].name)) != 0;
    if (!ok) {
        cnd_data_destroy(&ds);
        return s_oom(t);
    }
    for (size_t i = 0; i < t->rows; i++)
        for (int k = 0; k < t->ncls; k++)
            if (!strcmp(t->labels[i], t->cls[k].name)) {
                ds->y[i] = (uint8_t)k;
                break;
            }
    snprintf(ds->name, sizeof ds->name, "%s", t->c.path);
    *out = ds;
    return 0;
}

int cnd_data_load_csv_opts(cnd_dataset_t **out, const char *path, const cnd_csv_opts_t *o)
{
    *out = NULL;
    uint8_t *text = NULL;
    size_t len;
    int rc = cnd_file_read(path, CND_DATA_MAX_BYTES, &text, &len);
    if (rc) return rc;
    s_table t;
    memset(&t, 0, sizeof t);
    t.c = (s_csv){path, (const char *)text, (const char *)text + len, 1, o->delim};
    if (!t.c.delim) t.c.delim = s_detect_delim(t.c.p, t.c.end);
    t.label_col = o->label ? o->label : "label";
    t.na_mean = o->na_mean;
    t.lcol = -1;
    if (!(rc = s_read_header(&t)) && !(rc = s_read_rows(&t))) rc = s_build(out, &t);
    if (!rc && o->shape.c && (rc = cnd_data_reshape(*out, o->shape))) cnd_data_destroy(out);
    for (size_t i = 0; i < t.rows; i++) free(t.labels[i]);
    if (t.names)
        for (int i = 0; i < t.ncols; i++) free(t.names[i]);
    free(t.names);
    free(t.labels);
    free(t.x);
    free(text);
    return rc;
}

int cnd_data_load_csv(cnd_dataset_t **out, const char *path, const char *label_col)
{
    cnd_csv_opts_t o = {label_col, ',', 0, {0, 0, 0}};
    return cnd_data_load_csv_opts(out, path, &o);
}
