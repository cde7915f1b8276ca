/*
 * data_csv.c: tabular records from CSV (RFC 4180 quoting; comma separator; header row).
 *
 * One column holds the class; every other column is a numeric feature, stored as a sample of
 * shape (F, 1, 1) so that per-channel normalisation is per-feature standardisation. The
 * parser reads the whole file, walks it once, and stops at the first problem with
 * file:line:column and the column's name: a ragged row, an empty cell, a cell that is not a
 * number (NaN and infinity included) or does not fit a float, more than 256 classes.
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
                return cnd_errf(CND_EFORMAT, "%s:%zu: column %d: unterminated quoted field",
                                c->path, c->line, col + 1);
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
                return cnd_errf(CND_EFORMAT, "%s:%zu: column %d: field too long", c->path, c->line,
                                col + 1);
            buf[n++] = ch;
        }
    }
    while (c->p < c->end && *c->p != ',' && *c->p != '\n') {
        char ch = *c->p++;
        if (ch == '\r') continue;
        if (quoted && !isspace((unsigned char)ch))
            return cnd_errf(CND_EFORMAT, "%s:%zu: column %d: text after closing quote", c->path,
                            c->line, col + 1);
        if (n + 1 >= cap)
            return cnd_errf(CND_EFORMAT, "%s:%zu: column %d: field too long", c->path, c->line,
                            col + 1);
        buf[n++] = ch;
    }
    buf[n] = 0;
    if (c->p >= c->end || *c->p == '\n') *eol = 1;
    if (c->p < c->end) c->p++;
    return 0;
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

int cnd_data_load_csv(cnd_dataset_t **out, const char *path, const char *label_col)
{
    *out = NULL;
    if (!label_col) label_col = "label";
    uint8_t *text = NULL;
    size_t len;
    int rc = cnd_file_read(path, CND_DATA_MAX_BYTES, &text, &len);
    if (rc) return rc;
    s_csv c = {path, (const char *)text, (const char *)text + len, 1};
    char cell[1024];
    char **names = NULL;
    char **labels = NULL; /* per row label text */
    char *cur = NULL;     /* label text of the row being parsed */
    s_class cls[256];
    int ncls = 0, ncols = 0, lcol = -1, eol = 0;
    size_t cap_rows = 0, rows = 0;
    float *x = NULL;
    cnd_dataset_t *ds = NULL;
    names = calloc(MAX_COLS, sizeof *names);
    if (!names) goto oom;
    if (s_is_blank_line(&c) && c.p >= c.end) {
        rc = cnd_errf(CND_EFORMAT, "%s: empty file (expected a header row)", path);
        goto done;
    }
    do {
        if (ncols == MAX_COLS) {
            rc = cnd_errf(CND_EFORMAT, "%s:1: more than %d columns", path, MAX_COLS);
            goto done;
        }
        if ((rc = s_field(&c, cell, sizeof cell, &eol, ncols))) goto done;
        if (!(names[ncols] = strdup(s_trim(cell)))) goto oom;
        if (!strcmp(names[ncols], label_col)) lcol = ncols;
        ncols++;
    } while (!eol);
    c.line++;
    if (lcol < 0) {
        rc = cnd_errf(CND_EFORMAT, "%s:1: no column named '%s' in the header", path, label_col);
        goto done;
    }
    if (ncols < 2) {
        rc = cnd_errf(CND_EFORMAT, "%s:1: need at least one feature column besides '%s'", path,
                      label_col);
        goto done;
    }
    int F = ncols - 1;
    while (c.p < c.end) {
        if (s_is_blank_line(&c)) { /* skip blank lines */
            while (c.p < c.end && *c.p != '\n') c.p++;
            if (c.p < c.end) c.p++;
            c.line++;
            continue;
        }
        if (rows == cap_rows) {
            cap_rows = cap_rows ? cap_rows * 2 : 1024;
            float *nx = realloc(x, cap_rows * (size_t)F * sizeof(float));
            char **nl = realloc(labels, cap_rows * sizeof *nl);
            if (nx) x = nx;
            if (nl) labels = nl;
            if (!nx || !nl) goto oom;
        }
        free(cur);
        cur = NULL;
        size_t line = c.line;
        int f = 0;
        for (int col = 0;; col++) {
            if (col == ncols) {
                rc = cnd_errf(CND_EFORMAT, "%s:%zu: row has more than the header's %d columns",
                              path, line, ncols);
                goto done_rows;
            }
            if ((rc = s_field(&c, cell, sizeof cell, &eol, col))) goto done_rows;
            char *v = s_trim(cell);
            if (!*v) {
                rc = cnd_errf(CND_EFORMAT, "%s:%zu: column %d ('%s') is empty", path, line, col + 1,
                              names[col]);
                goto done_rows;
            }
            if (col == lcol) {
                if (!(cur = strdup(v))) goto oom_rows;
            } else {
                char *end;
                errno = 0;
                double d = strtod(v, &end);
                if (end == v || *end || errno == ERANGE || !isfinite(d)) {
                    rc = cnd_errf(CND_EFORMAT,
                                  "%s:%zu: column %d ('%s'): '%.40s' is not a "
                                  "finite number",
                                  path, line, col + 1, names[col], v);
                    goto done_rows;
                }
                if (fabs(d) > FLT_MAX) { /* would be stored as an infinity */
                    rc = cnd_errf(CND_EFORMAT,
                                  "%s:%zu: column %d ('%s'): '%.40s' is outside the range of a "
                                  "float (about 3.4e38)",
                                  path, line, col + 1, names[col], v);
                    goto done_rows;
                }
                x[rows * (size_t)F + (size_t)f++] = (float)d;
            }
            if (eol) {
                if (col + 1 != ncols) {
                    rc = cnd_errf(CND_EFORMAT, "%s:%zu: row has %d columns, header has %d", path,
                                  line, col + 1, ncols);
                    goto done_rows;
                }
                break;
            }
        }
        c.line++;
        int k = 0;
        for (; k < ncls; k++)
            if (!strcmp(cls[k].name, cur)) break;
        if (k == ncls) {
            if (ncls == 256) {
                rc = cnd_errf(CND_EFORMAT, "%s:%zu: more than 256 distinct classes in '%s'", path,
                              line, label_col);
                goto done_rows;
            }
            cls[ncls].name = cur;
            ncls++;
        }
        labels[rows++] = cur;
        cur = NULL;
    }
    if (rows == 0) {
        rc = cnd_errf(CND_EFORMAT, "%s: no data rows after the header", path);
        goto done_rows;
    }
    /* Order classes numerically when every class is a number, else by name. */
    int numeric = 1;
    for (int k = 0; k < ncls; k++) {
        char *end;
        cls[k].num = strtod(cls[k].name, &end);
        if (end == cls[k].name || *end) numeric = 0;
    }
    qsort(cls, (size_t)ncls, sizeof cls[0], numeric ? s_cmp_num : s_cmp_str);
    ds = calloc(1, sizeof *ds);
    if (!ds) goto oom_rows;
    ds->n = rows;
    ds->shape = (cnd_shape_t){F, 1, 1};
    ds->n_classes = ncls;
    ds->x = x;
    x = NULL;
    ds->y = malloc(rows);
    ds->class_names = calloc((size_t)ncls, sizeof(char *));
    if (!ds->y || !ds->class_names) goto oom_rows;
    for (int k = 0; k < ncls; k++)
        if (!(ds->class_names[k] = strdup(cls[k].name))) goto oom_rows;
    for (size_t i = 0; i < rows; i++)
        for (int k = 0; k < ncls; k++)
            if (!strcmp(labels[i], cls[k].name)) {
                ds->y[i] = (uint8_t)k;
                break;
            }
    snprintf(ds->name, sizeof ds->name, "%s", path);
    *out = ds;
    ds = NULL;
    rc = 0;
    goto done_rows;
oom_rows:
    rc = cnd_errf(CND_ENOMEM, "%s: out of memory", path);
done_rows:
    for (size_t i = 0; i < rows; i++) free(labels[i]);
    free(cur);
    goto done;
oom:
    rc = cnd_errf(CND_ENOMEM, "%s: out of memory", path);
done:
    cnd_data_destroy(&ds);
    if (names)
        for (int i = 0; i < ncols; i++) free(names[i]);
    free(names);
    free(labels);
    free(x);
    free(text);
    return rc;
}
