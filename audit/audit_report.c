/*
 * audit_report.c: the HTML audit report (see audit_report.h).
 *
 * The page is built in one buffer from the job's parsed entries. Charts are plain SVG drawn
 * here (polylines, circles and rectangles with <title> tooltips), because the page must not
 * load a script or a library. Entries that cannot be parsed are counted and named on the page
 * rather than silently skipped.
 *
 * The unsigned tail: entries from verdict->covered on (after the last verified signed
 * checkpoint) are chained to the log but not signed. Every row, chart point, bar, name, paragraph
 * and total that uses one carries class "unsigned" and a visible "unsigned" mark; each element
 * drawn from one entry carries data-entry="seq", each total data-unsigned="count of unsigned
 * entries in it", so a reader (and the tests) can tell exactly what the signatures cover. The
 * closing section says which checkpoint covers which entries.
 */
#include "audit_report.h"
#include "audit_actions.h"
#include "json.h"
#include "clock.h"
#include "digest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t seq;   /* entry number */
    cnd_json_t *e; /* parsed entry (owned) */
} s_ent;

typedef struct {
    s_ent *v; /* entries in seq order */
    size_t n, cap;
    size_t damaged; /* entries that failed to parse */
    int64_t first_damaged;
    uint64_t covered; /* entries 0..covered-1 are under a verified signed checkpoint */
} s_ents;

static void s_put(cnd_buf_t *b, const char *s)
{
    cnd_buf_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void s_pf(cnd_buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    cnd_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* HTML-escapes s (text and attribute safe). */
static void s_esc(cnd_buf_t *b, const char *s)
{
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&': s_put(b, "&amp;"); break;
        case '<': s_put(b, "&lt;"); break;
        case '>': s_put(b, "&gt;"); break;
        case '"': s_put(b, "&quot;"); break;
        case '\'': s_put(b, "&#39;"); break;
        default: cnd_buf_u8(b, (uint8_t)*s);
        }
    }
}

static const cnd_json_t *s_get(const s_ent *x, const char *key)
{
    return cnd_json_get(x->e, key);
}

static const cnd_json_t *s_det(const s_ent *x, const char *key)
{
    return cnd_json_get(cnd_json_get(x->e, "details"), key);
}

static const char *s_str(const cnd_json_t *v)
{
    const char *s = cnd_json_str(v);
    return s ? s : "";
}

static const char *s_action(const s_ent *x)
{
    return s_str(s_get(x, "action"));
}

static int s_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void s_when(char out[32], const s_ent *x)
{
    int64_t t = 0;
    (void)cnd_json_integer(s_get(x, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &t);
    cnd_iso8601(out, t / 1000);
}

/* A JSON value as short display text. */
static void s_val(cnd_buf_t *b, const cnd_json_t *v)
{
    if (!v) {
        s_put(b, "&ndash;");
        return;
    }
    if (v->type == CND_JSON_STR) {
        s_esc(b, v->s);
        return;
    }
    cnd_buf_t t;
    cnd_buf_init(&t);
    if (cnd_json_canon(&t, v) == 0 && cnd_buf_reserve(&t, 1) == 0) {
        t.data[t.len] = 0;
        s_esc(b, (const char *)t.data);
    }
    cnd_buf_free(&t);
}

static void s_num(cnd_buf_t *b, const cnd_json_t *v, const char *fmt)
{
    double d;
    if (cnd_json_number(v, &d))
        s_pf(b, fmt, d);
    else
        s_put(b, "&ndash;");
}

/* Appends word w quoted for a POSIX shell, so that the command line shown is the one that ran
 * and pasting it into bash gives back the same words: as is when it holds only characters no
 * shell treats specially; in single quotes otherwise ('\'' for a quote); in bash's $'...' form
 * (\n, \t, \xHH) when it holds control characters, which single quotes would show as line
 * breaks or not at all. */
static void s_shell_word(cnd_buf_t *b, const char *w)
{
    int plain = w[0] != 0, ctrl = 0;
    for (const unsigned char *p = (const unsigned char *)w; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) ctrl = 1;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_@%+=:,./-", *p)))
            plain = 0;
    }
    if (plain) {
        s_put(b, w);
    } else if (!ctrl) {
        cnd_buf_u8(b, '\'');
        for (const char *p = w; *p; p++)
            if (*p == '\'')
                s_put(b, "'\\''");
            else
                cnd_buf_u8(b, (uint8_t)*p);
        cnd_buf_u8(b, '\'');
    } else {
        s_put(b, "$'");
        for (const unsigned char *p = (const unsigned char *)w; *p; p++) {
            if (*p == '\\' || *p == '\'') {
                cnd_buf_u8(b, '\\');
                cnd_buf_u8(b, *p);
            } else if (*p == '\n') {
                s_put(b, "\\n");
            } else if (*p == '\t') {
                s_put(b, "\\t");
            } else if (*p < 0x20 || *p == 0x7f) {
                s_pf(b, "\\x%02x", *p);
            } else {
                cnd_buf_u8(b, *p);
            }
        }
        cnd_buf_u8(b, '\'');
    }
}

/* The details of an admin.* entry: the command line, shell-quoted from the recorded argv (or,
 * in entries written before argv was recorded, the reconstructed "command" text as logged,
 * marked as such), then the other details. ucls is " unsigned" for an entry of the unsigned
 * tail. */
static void s_admin_details(cnd_buf_t *b, const s_ent *x, const char *ucls)
{
    const cnd_json_t *d = s_get(x, "details");
    const cnd_json_t *argv = cnd_json_get(d, "argv");
    const char *legacy = cnd_json_str(cnd_json_get(d, "command"));
    int words = argv && argv->type == CND_JSON_ARR && argv->n > 0;
    for (size_t i = 0; words && i < argv->n; i++)
        if (!cnd_json_str(argv->items[i])) words = 0;
    if (words) {
        cnd_buf_t q;
        cnd_buf_init(&q);
        for (size_t i = 0; i < argv->n; i++) {
            if (i) cnd_buf_u8(&q, ' ');
            s_shell_word(&q, argv->items[i]->s);
        }
        cnd_buf_u8(&q, 0);
        s_pf(b, "<code class=\"argv%s\" data-entry=\"%lld\">", ucls, (long long)x->seq);
        s_esc(b, q.err ? "" : (const char *)q.data);
        s_put(b, "</code>");
        cnd_buf_free(&q);
    } else if (legacy) {
        s_pf(b, "<code class=\"command%s\" data-entry=\"%lld\">", ucls, (long long)x->seq);
        s_esc(b, legacy);
        s_put(b, "</code> <span class=\"meta\">(as logged before the exact command line was "
                 "recorded: the words are joined by spaces, so quoting and words may be "
                 "lost)</span>");
    } else {
        s_val(b, d);
        return;
    }
    for (size_t i = 0; d && i < d->n; i++) {
        if (strcmp(d->keys[i], "argv") == 0 || strcmp(d->keys[i], "command") == 0) continue;
        s_put(b, "<br>");
        s_esc(b, d->keys[i]);
        s_put(b, ": ");
        s_val(b, d->items[i]);
    }
}

/* --- the unsigned tail (see the top of the file) --- */

#define S_UNSIGNED_TITLE "after the last signed checkpoint: chained to the log but not yet signed"
#define S_UNSIGNED_MARK                                                                            \
    " <span class=\"unsigned-mark\" title=\"" S_UNSIGNED_TITLE "\">unsigned</span>"

static int s_unsigned(const s_ents *E, const s_ent *x)
{
    return x->seq < 0 || (uint64_t)x->seq >= E->covered;
}

/* The visible mark beside a figure that uses an unsigned entry. */
static void s_mark(cnd_buf_t *b)
{
    s_put(b, S_UNSIGNED_MARK);
}

/* " unsigned" when x is in the unsigned tail, to append to a class list. */
static const char *s_ucls(const s_ents *E, const s_ent *x)
{
    return s_unsigned(E, x) ? " unsigned" : "";
}

/* Opens the table row of entry x: <tr class="cls[ unsigned]" data-entry="seq">. */
static void s_tr(cnd_buf_t *b, const s_ents *E, const s_ent *x, const char *cls)
{
    s_pf(b, "<tr class=\"%s%s\" data-entry=\"%lld\">", cls, s_ucls(E, x), (long long)x->seq);
}

/* The cell naming entry x: its number, and the mark when it is unsigned. */
static void s_entry_cell(cnd_buf_t *b, const s_ents *E, const s_ent *x)
{
    s_pf(b, "<td class=\"num\">%lld", (long long)x->seq);
    if (s_unsigned(E, x)) s_mark(b);
    s_put(b, "</td>");
}

/* --- names of identities, from enroll entries --- */

typedef struct {
    const char *fpr, *name;
    int64_t seq;   /* the enroll entry the name comes from */
    int unsigned_; /* that entry is in the unsigned tail */
} s_name_t;

typedef struct {
    s_name_t *v;
    size_t n;
} s_names;

static const s_name_t *s_name_of(const s_names *nm, const char *fpr)
{
    for (size_t i = 0; i < nm->n; i++)
        if (strcmp(nm->v[i].fpr, fpr) == 0) return &nm->v[i];
    return NULL;
}

/* "name (abcd1234…)" or the short fingerprint; a name from an unsigned enroll entry is
 * marked. */
static void s_who(cnd_buf_t *b, const s_names *nm, const char *fpr)
{
    const s_name_t *n = s_name_of(nm, fpr);
    if (n) {
        s_pf(b, "<span class=\"name%s\" data-entry=\"%lld\">", n->unsigned_ ? " unsigned" : "",
             (long long)n->seq);
        s_esc(b, n->name);
        if (n->unsigned_) s_mark(b);
        s_put(b, "</span> <span class=\"fpr\">");
    } else {
        s_put(b, "<span class=\"fpr\">");
    }
    char short_fpr[20];
    snprintf(short_fpr, sizeof short_fpr, "%.12s", fpr);
    s_esc(b, short_fpr);
    if (strlen(fpr) > 12) s_put(b, "&hellip;");
    s_put(b, "</span>");
}

static void s_digest_cell(cnd_buf_t *b, const s_ent *x, const char *name)
{
    const char *d = cnd_json_str(cnd_json_get(s_get(x, "digests"), name));
    if (!d) {
        s_put(b, "<td>&ndash;</td>");
        return;
    }
    s_put(b, "<td class=\"digest\">");
    s_esc(b, d);
    s_put(b, "</td>");
}

/* --- loading --- */

static int s_load(s_ents *E, cnd_audit_t *log, const char *job)
{
    sqlite3 *db = cnd_audit_db(log);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT seq, entry FROM audit_entry WHERE job = ?1 OR action IN"
            " ('enroll', 'cert.renew', 'rollout.create', 'rollout.wave', 'rollout.state',"
            "  'reject.connection', 'reject.message', 'reject.summary')"
            " ORDER BY seq",
            -1, &st, NULL))
        return cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    int rc;
    E->first_damaged = -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 1);
        cnd_json_t *e = NULL;
        if (!t || cnd_audit_entry_parse(&e, t, (size_t)sqlite3_column_bytes(st, 1)) != 0) {
            if (E->first_damaged < 0) E->first_damaged = sqlite3_column_int64(st, 0);
            E->damaged++;
            continue;
        }
        if (E->n == E->cap) {
            size_t nc = E->cap ? 2 * E->cap : 256;
            s_ent *nv = realloc(E->v, nc * sizeof *nv);
            if (!nv) {
                cnd_json_free(&e);
                sqlite3_finalize(st);
                return CND_ENOMEM;
            }
            E->v = nv;
            E->cap = nc;
        }
        E->v[E->n].seq = sqlite3_column_int64(st, 0);
        E->v[E->n++].e = e;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : cnd_errf(CND_EDB, "reading entries: %s", sqlite3_errmsg(db));
}

static void s_free(s_ents *E)
{
    for (size_t i = 0; i < E->n; i++) cnd_json_free(&E->v[i].e);
    free(E->v);
    E->v = NULL;
    E->n = 0;
}

static int s_in_job(const s_ent *x, const char *job)
{
    return strcmp(s_str(s_get(x, "job")), job) == 0;
}

/* --- charts --- */

typedef struct {
    double x, y;   /* round, value */
    int64_t seq;   /* the entry it comes from */
    int unsigned_; /* that entry is in the unsigned tail */
} s_pt;

static double s_nice_max(double m)
{
    if (!(m > 0)) return 1;
    double p = pow(10, floor(log10(m)));
    double f = m / p;
    double n = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return n * p;
}

/* A line chart of y against round. id names the <svg>; each point is a <circle class="point">
 * with data-round, data-value and data-entry; a point from an unsigned entry is hollow, of class
 * "point unsigned", and says so in its tooltip (the legend is below the charts). fixed01 pins
 * the y axis to [0, 1]. */
static void s_line_chart(cnd_buf_t *b, const char *id, const char *title, const char *unit,
                         const s_pt *p, size_t n, int fixed01, const char *color)
{
    const double W = 520, H = 240, L = 56, R = 16, T = 30, B = 40;
    double xmin = n ? p[0].x : 0, xmax = n ? p[0].x : 1, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].x < xmin) xmin = p[i].x;
        if (p[i].x > xmax) xmax = p[i].x;
        if (p[i].y > ymax) ymax = p[i].y;
    }
    if (xmax == xmin) {
        xmin -= 1;
        xmax += 1;
    }
    double y1 = fixed01 ? 1 : s_nice_max(ymax * 1.05);
    s_pf(b,
         "<svg id=\"%s\" class=\"chart\" data-points=\"%zu\" width=\"%.0f\" height=\"%.0f\" "
         "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"",
         id, n, W, H, W, H);
    s_esc(b, title);
    s_put(b, "\"><title>");
    s_esc(b, title);
    s_put(b, "</title>");
    s_pf(b, "<text x=\"%.0f\" y=\"18\" class=\"ctitle\">", L);
    s_esc(b, title);
    s_put(b, "</text>");
#define SX(v) (L + ((v)-xmin) / (xmax - xmin) * (W - L - R))
#define SY(v) (H - B - (v) / y1 * (H - T - B))
    for (int k = 0; k <= 4; k++) {
        double v = y1 * k / 4;
        s_pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", L, SY(v),
             W - R, SY(v));
        s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"ytick\">%.3g</text>", L - 6, SY(v) + 4, v);
    }
    long step = (long)ceil((xmax - xmin) / 12);
    if (step < 1) step = 1;
    for (long r = (long)ceil(xmin); r <= (long)floor(xmax); r += step)
        s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xtick\">%ld</text>", SX((double)r), H - B + 16,
             r);
    s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xlabel\">round</text>", (L + W - R) / 2, H - 6);
    s_pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", L, H - B,
         W - R, H - B);
    s_pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", L, T, L,
         H - B);
    if (n > 1) {
        s_pf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t i = 0; i < n; i++) s_pf(b, "%.1f,%.1f ", SX(p[i].x), SY(p[i].y));
        s_put(b, "\"/>");
    }
    for (size_t i = 0; i < n; i++) {
        s_pf(b,
             "<circle class=\"point%s\" data-round=\"%.0f\" data-value=\"%.6g\" "
             "data-entry=\"%lld\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" stroke=\"%s\" "
             "stroke-width=\"1.5\"><title>round %.0f: %s %.4g (entry %lld%s)</title></circle>",
             p[i].unsigned_ ? " unsigned" : "", p[i].x, p[i].y, (long long)p[i].seq, SX(p[i].x),
             SY(p[i].y), p[i].unsigned_ ? "#fff" : color, color, p[i].x, unit, p[i].y,
             (long long)p[i].seq, p[i].unsigned_ ? ", unsigned: " S_UNSIGNED_TITLE : "");
    }
#undef SX
#undef SY
    s_put(b, "</svg>");
}

/* Stacked bars of participants (bottom) and dropouts (top) per round; p[i] names round i's
 * entry. Bars of an unsigned entry are hatched (class "unsigned", fill-opacity) and say so. */
static void s_part_chart(cnd_buf_t *b, const s_pt *p, const int *part, const int *drop, size_t n)
{
    const double W = 520, H = 220, L = 56, R = 16, T = 30, B = 40;
    int maxv = 1;
    for (size_t i = 0; i < n; i++)
        if (part[i] + drop[i] > maxv) maxv = part[i] + drop[i];
    s_pf(b,
         "<svg id=\"chart-participation\" class=\"chart\" data-bars=\"%zu\" width=\"%.0f\" "
         "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"participation per "
         "round\"><title>Sites per round: participants and dropouts</title>",
         n, W, H, W, H);
    s_pf(b,
         "<text x=\"%.0f\" y=\"18\" class=\"ctitle\">Sites per round (green: in the aggregate, "
         "red: dropped out)</text>",
         L);
    double slot = n ? (W - L - R) / (double)n : 1, bw = slot * 0.6;
    if (bw > 40) bw = 40;
    for (int k = 0; k <= maxv; k += (maxv > 8 ? (maxv + 3) / 4 : 1)) {
        double y = H - B - (double)k / maxv * (H - T - B);
        s_pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", L, y,
             W - R, y);
        s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"ytick\">%d</text>", L - 6, y + 4, k);
    }
    for (size_t i = 0; i < n; i++) {
        double x = L + slot * ((double)i + 0.5) - bw / 2;
        double hp = (double)part[i] / maxv * (H - T - B), hd = (double)drop[i] / maxv * (H - T - B);
        const char *u = p[i].unsigned_ ? " unsigned" : "";
        const char *ut = p[i].unsigned_ ? ", unsigned: " S_UNSIGNED_TITLE : "";
        s_pf(b,
             "<rect class=\"bar-participants%s\" data-entry=\"%lld\" x=\"%.1f\" y=\"%.1f\" "
             "width=\"%.1f\" height=\"%.1f\"><title>round %.0f: %d participants (entry "
             "%lld%s)</title></rect>",
             u, (long long)p[i].seq, x, H - B - hp, bw, hp, p[i].x, part[i], (long long)p[i].seq,
             ut);
        if (drop[i])
            s_pf(b,
                 "<rect class=\"bar-dropouts%s\" data-entry=\"%lld\" x=\"%.1f\" y=\"%.1f\" "
                 "width=\"%.1f\" height=\"%.1f\"><title>round %.0f: %d dropouts (entry "
                 "%lld%s)</title></rect>",
                 u, (long long)p[i].seq, x, H - B - hp - hd, bw, hd, p[i].x, drop[i],
                 (long long)p[i].seq, ut);
        if (n <= 30 || i % (n / 15 + 1) == 0)
            s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xtick\">%.0f</text>", x + bw / 2,
                 H - B + 16, p[i].x);
    }

    s_pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", L, H - B,
         W - R, H - B);
    s_pf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xlabel\">round</text>", (L + W - R) / 2, H - 6);
    s_put(b, "</svg>");
}

/* --- sections --- */

static const char s_css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em "
    "auto;max-width:1100px;"
    "color:#1d2230;padding:0 1em}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;"
    "border-bottom:1px solid #ccd;padding-bottom:.2em;margin-top:1.8em}table{border-collapse:"
    "collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #d5d8e0;padding:.25em .55em;"
    "text-align:left;vertical-align:top}th{background:#f1f3f7}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}.digest,.fpr{font-family:ui-monospace,monospace;font-size:"
    ".85em;word-break:break-all}.fpr{color:#667}.meta{color:#555}#verification{padding:.8em 1em;"
    "border-radius:6px;margin:1em 0}#verification.passed{background:#e6f6ea;border:1px solid "
    "#7cc48f}"
    "#verification.failed{background:#fdeaea;border:1px solid #d77}#verification .result{font-size:"
    "1.25em;font-weight:600}.chart{background:#fafbfc;border:1px solid #e1e4ea;margin:.4em .8em "
    ".4em "
    "0}.charts{display:flex;flex-wrap:wrap}.grid{stroke:#e4e7ee}.axis{stroke:#889}.ytick{font-size:"
    "11px;text-anchor:end;fill:#556}.xtick{font-size:11px;text-anchor:middle;fill:#556}.xlabel{"
    "font-size:12px;text-anchor:middle;fill:#556}.ctitle{font-size:13px;font-weight:600;fill:#223}"
    ".bar-participants{fill:#4caf6a}.bar-dropouts{fill:#e05d5d}.ok{color:#17803a}.bad{color:#"
    "b3261e;font-weight:600}.empty{color:#777;font-style:italic}rect.unsigned{fill-opacity:.35;"
    "stroke:#b26b00;stroke-dasharray:3 2}tr.unsigned td{background:#fff6e0}.unsigned-mark{"
    "display:inline-block;font-size:.75em;font-weight:600;color:#8a4b00;background:#ffe2a8;"
    "border:1px solid #e0a640;border-radius:3px;padding:0 .3em;margin-left:.2em}code.argv,"
    "code.command{word-break:break-all}#events-table td:nth-child(4),#events-table td:nth-child(5)"
    "{overflow-wrap:anywhere}.unsigned-mark{white-space:nowrap}";

static void s_section_verification(cnd_buf_t *b, const cnd_audit_verdict_t *v)
{
    s_pf(b, "<section id=\"verification\" class=\"%s\" data-result=\"%s\">",
         v->ok ? "passed" : "failed", v->ok ? "passed" : "failed");
    s_pf(b, "<div class=\"result\">Verification: %s</div><p>", v->ok ? "PASSED" : "FAILED");
    s_esc(b, v->summary);
    s_put(b, "</p>");
    char cov[64];
    if (v->covered)
        snprintf(cov, sizeof cov, "entries 0..%llu are", (unsigned long long)v->covered - 1);
    else
        snprintf(cov, sizeof cov, "no entry is");
    s_pf(b,
         "<p class=\"meta\">%llu entries read, %llu checkpoint(s), %llu with a valid signature "
         "and "
         "root; %s covered by a verified signed checkpoint. Signing key fingerprint <span "
         "class=\"fpr\">%s</span> (%s).</p>",
         (unsigned long long)v->entries, (unsigned long long)v->checkpoints,
         (unsigned long long)v->checkpoints_ok, cov, v->fingerprint,
         v->key_pinned ? "given by the auditor"
                       : "as recorded in the log: not independently pinned");
    if (!v->ok)
        s_pf(b,
             "<p class=\"bad\" id=\"untrusted\">The log did not verify: the figures below are "
             "shown as the log now holds them, and %s%lld on may have been altered. Use them "
             "only to investigate.</p>",
             v->first_bad >= 0 ? "everything from entry " : "anything from entry ",
             v->first_bad >= 0 ? (long long)v->first_bad : 0LL);
    size_t np = v->n_problems < 100 ? v->n_problems : 100;
    if (np) {
        s_put(b, "<p><b>Problems</b></p><ol class=\"problems\">");
        for (size_t i = 0; i < np; i++) {
            s_put(b, "<li>");
            s_esc(b, v->problems[i]);
            s_put(b, "</li>");
        }
        s_put(b, "</ol>");
        if (v->n_problems > np) s_pf(b, "<p>&hellip; and %zu more.</p>", v->n_problems - np);
    }
    size_t nn = v->n_notes < 100 ? v->n_notes : 100;
    if (nn) {
        s_put(b, "<p><b>Notes</b></p><ul class=\"notes\">");
        for (size_t i = 0; i < nn; i++) {
            s_put(b, "<li>");
            s_esc(b, v->notes[i]);
            s_put(b, "</li>");
        }
        s_put(b, "</ul>");
    }
    s_put(b, "</section>");
}

/* Flattens a JSON object into "a.b.c = value" rows. */
static void s_flat(cnd_buf_t *b, const cnd_json_t *v, char *path, size_t plen, size_t cap)
{
    if (v->type == CND_JSON_OBJ && v->n > 0) {
        for (size_t i = 0; i < v->n; i++) {
            size_t kl = strlen(v->keys[i]);
            if (plen + kl + 2 >= cap) continue;
            size_t np = plen;
            if (np) path[np++] = '.';
            memcpy(path + np, v->keys[i], kl + 1);
            s_flat(b, v->items[i], path, np + kl, cap);
            path[plen] = 0;
        }
        return;
    }
    s_put(b, "<tr><th>");
    s_esc(b, plen ? path : "(recipe)");
    s_put(b, "</th><td>");
    s_val(b, v);
    s_put(b, "</td></tr>");
}

static void s_section_recipe(cnd_buf_t *b, const s_ents *E, const char *job, const s_names *nm)
{
    s_put(b, "<h2 id=\"recipe\">Job and recipe</h2>");
    int found = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job)) continue;
        const char *a = s_action(x);
        if (strcmp(a, CND_AUDIT_JOB_CREATE) == 0) {
            found = 1;
            char when[32];
            s_when(when, x);
            s_pf(b, "<p class=\"job-create%s\" data-entry=\"%lld\">Created ", s_ucls(E, x),
                 (long long)x->seq);
            s_esc(b, when);
            s_put(b, " by ");
            s_who(b, nm, s_str(s_get(x, "actor")));
            s_pf(b, " (entry %lld", (long long)x->seq);
            if (s_unsigned(E, x)) s_mark(b);
            s_put(b, ")");
            const cnd_json_t *name = s_det(x, "name");
            if (cnd_json_str(name)) {
                s_put(b, ", name <b>");
                s_esc(b, name->s);
                s_put(b, "</b>");
            }
            s_pf(b, ".</p><table class=\"recipe%s\" data-entry=\"%lld\">", s_ucls(E, x),
                 (long long)x->seq);
            const cnd_json_t *r = s_det(x, "recipe");
            char path[256] = "";
            if (r)
                s_flat(b, r, path, 0, sizeof path);
            else
                s_put(b, "<tr><td class=\"empty\">the job.create entry has no recipe</td></tr>");
            const cnd_json_t *dg = s_get(x, "digests");
            for (size_t k = 0; dg && k < dg->n; k++) {
                s_put(b, "<tr><th>digest: ");
                s_esc(b, dg->keys[k]);
                s_put(b, "</th><td class=\"digest\">");
                s_esc(b, s_str(dg->items[k]));
                s_put(b, "</td></tr>");
            }
            s_put(b, "</table>");
        } else if (strcmp(a, CND_AUDIT_JOB_STATE) == 0) {
            char when[32];
            s_when(when, x);
            s_pf(b, "<p class=\"job-state%s\" data-entry=\"%lld\">Job state <b>", s_ucls(E, x),
                 (long long)x->seq);
            s_esc(b, s_str(s_det(x, "state")));
            s_put(b, "</b> at ");
            s_esc(b, when);
            if (cnd_json_str(s_det(x, "reason"))) {
                s_put(b, ": ");
                s_esc(b, s_det(x, "reason")->s);
            }
            s_pf(b, " (entry %lld", (long long)x->seq);
            if (s_unsigned(E, x)) s_mark(b);
            s_put(b, ").</p>");
        }
    }
    if (!found) s_put(b, "<p class=\"empty\">No job.create entry for this job in the log.</p>");
}

static size_t s_arr_len(const cnd_json_t *a)
{
    return a && a->type == CND_JSON_ARR ? a->n : 0;
}

static void s_who_list(cnd_buf_t *b, const s_names *nm, const cnd_json_t *a)
{
    if (!s_arr_len(a)) {
        s_put(b, "&ndash;");
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (i) s_put(b, ", ");
        s_who(b, nm, s_str(a->items[i]));
    }
}

static int s_section_rounds(cnd_buf_t *b, const s_ents *E, const char *job, const s_names *nm)
{
    s_put(b, "<h2 id=\"rounds\">Rounds: accuracy, loss and participation</h2>");
    size_t n = 0;
    for (size_t i = 0; i < E->n; i++)
        if (s_in_job(&E->v[i], job) && strcmp(s_action(&E->v[i]), CND_AUDIT_ROUND_END) == 0) n++;
    if (!n) {
        s_put(b, "<p class=\"empty\">No round.end entries for this job.</p>");
        return 0;
    }
    s_pt *acc = calloc(n, sizeof *acc), *loss = calloc(n, sizeof *loss);
    s_pt *rnd = calloc(n, sizeof *rnd);
    int *part = calloc(n, sizeof *part), *drop = calloc(n, sizeof *drop);
    if (!acc || !loss || !rnd || !part || !drop) {
        free(acc);
        free(loss);
        free(rnd);
        free(part);
        free(drop);
        return CND_ENOMEM;
    }
    size_t na = 0, nl = 0, nr = 0, nu = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job) || strcmp(s_action(x), CND_AUDIT_ROUND_END) != 0) continue;
        int64_t ri = 0;
        double v;
        if (!cnd_json_integer(s_det(x, "round"), 0, INT32_MAX, &ri)) continue;
        double r = (double)ri;
        int u = s_unsigned(E, x);
        nu += u;
        rnd[nr] = (s_pt){r, 0, x->seq, u};
        part[nr] = (int)s_arr_len(s_det(x, "participants"));
        drop[nr] = (int)s_arr_len(s_det(x, "dropouts"));
        nr++;
        if (strcmp(s_str(s_det(x, "status")), "ok") != 0) continue;
        const cnd_json_t *m = s_det(x, "metrics");
        if (cnd_json_number(cnd_json_get(m, "accuracy"), &v)) acc[na++] = (s_pt){r, v, x->seq, u};
        if (cnd_json_number(cnd_json_get(m, "loss"), &v)) loss[nl++] = (s_pt){r, v, x->seq, u};
    }
    s_put(b, "<div class=\"charts\">");
    s_line_chart(b, "chart-accuracy", "Accuracy of the global model per round", "accuracy", acc, na,
                 1, "#2d6cdf");
    s_line_chart(b, "chart-loss", "Loss per round", "loss", loss, nl, 0, "#d9822b");
    s_part_chart(b, rnd, part, drop, nr);
    s_put(b, "</div>");
    if (nu)
        s_pf(b,
             "<p class=\"ulegend unsigned\" data-unsigned=\"%zu\">Hollow points and pale bars: "
             "%zu round%s logged after the last signed checkpoint%s (see the end of the "
             "page).</p>",
             nu, nu, nu == 1 ? "" : "s", S_UNSIGNED_MARK);
    free(acc);
    free(loss);
    free(rnd);
    free(part);
    free(drop);

    s_put(b, "<table id=\"rounds-table\"><tr><th>round</th><th>status</th><th>participants</th>"
             "<th>dropouts</th><th>accuracy</th><th>loss</th><th>samples</th><th>aggregate "
             "SHA-256</th><th>entry</th></tr>");
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job) || strcmp(s_action(x), CND_AUDIT_ROUND_END) != 0) continue;
        const char *status = s_str(s_det(x, "status"));
        const cnd_json_t *m = s_det(x, "metrics");
        s_tr(b, E, x, "round");
        s_put(b, "<td class=\"num\">");
        s_val(b, s_det(x, "round"));
        s_pf(b, "</td><td class=\"%s\">", strcmp(status, "ok") == 0 ? "ok" : "bad");
        s_esc(b, status[0] ? status : "?");
        if (cnd_json_str(s_det(x, "reason"))) {
            s_put(b, ": ");
            s_esc(b, s_det(x, "reason")->s);
        }
        s_pf(b, "</td><td>%zu: ", s_arr_len(s_det(x, "participants")));
        s_who_list(b, nm, s_det(x, "participants"));
        s_pf(b, "</td><td>%zu: ", s_arr_len(s_det(x, "dropouts")));
        s_who_list(b, nm, s_det(x, "dropouts"));
        s_put(b, "</td><td class=\"num\">");
        s_num(b, cnd_json_get(m, "accuracy"), "%.4f");
        s_put(b, "</td><td class=\"num\">");
        s_num(b, cnd_json_get(m, "loss"), "%.4f");
        s_put(b, "</td><td class=\"num\">");
        s_num(b, cnd_json_get(m, "samples"), "%.0f");
        s_put(b, "</td>");
        s_digest_cell(b, x, "aggregate");
        s_entry_cell(b, E, x);
        s_put(b, "</tr>");
    }
    s_put(b, "</table>");
    return 0;
}

/* A site's differential-privacy spend for the job (dp.spend entries, in its own log): epsilon
 * after each round trained, as the site logged it (`condenser audit privacy` recomputes it). */
static int s_section_privacy(cnd_buf_t *b, const s_ents *E, const char *job)
{
    size_t n = 0;
    for (size_t i = 0; i < E->n; i++)
        if (s_in_job(&E->v[i], job) && strcmp(s_action(&E->v[i]), CND_AUDIT_DP_SPEND) == 0) n++;
    if (!n) return 0; /* not a DP job, or not a site's log */
    s_put(b, "<h2 id=\"privacy\">Differential privacy: epsilon spent per round</h2>");
    s_pt *p = calloc(n, sizeof *p);
    if (!p) return CND_ENOMEM;
    size_t k = 0;
    double delta = 0, last = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job) || strcmp(s_action(x), CND_AUDIT_DP_SPEND) != 0) continue;
        double r = 0, e = 0;
        if (!cnd_json_number(s_det(x, "round"), &r) || !cnd_json_number(s_det(x, "epsilon"), &e))
            continue;
        cnd_json_number(s_det(x, "delta"), &delta);
        p[k++] = (s_pt){r, e, x->seq, s_unsigned(E, x)};
        last = e;
    }
    s_pf(b,
         "<p>%zu rounds trained with DP-SGD at this site; the job's epsilon after the last: "
         "<b id=\"dp-epsilon\">%.4g</b> at delta %g (recompute with <code>condenser audit "
         "privacy</code>).</p>",
         k, last, delta);
    s_line_chart(b, "chart-epsilon", "Epsilon spent by this site on the job", "epsilon", p, k, 0,
                 "#8e44ad");
    free(p);
    return 0;
}

typedef struct {
    const char *peer; /* fingerprint */
    uint64_t msgs, bytes;
    uint64_t u_msgs, u_bytes; /* of which from entries in the unsigned tail */
} s_flow;

static int s_flow_add(s_flow **f, size_t *n, const char *peer, int64_t size, int u)
{
    uint64_t sz = size > 0 ? (uint64_t)size : 0;
    size_t i = 0;
    while (i < *n && strcmp((*f)[i].peer, peer) != 0) i++;
    if (i == *n) {
        s_flow *nf = realloc(*f, (*n + 1) * sizeof *nf);
        if (!nf) return CND_ENOMEM;
        *f = nf;
        (*f)[*n] = (s_flow){peer, 0, 0, 0, 0};
        (*n)++;
    }
    (*f)[i].msgs++;
    (*f)[i].bytes += sz;
    (*f)[i].u_msgs += u != 0;
    (*f)[i].u_bytes += u ? sz : 0;
    return 0;
}

/* One row of a bytes table; a total that includes unsigned entries says how much of it. */
static void s_flow_row(cnd_buf_t *b, const s_names *nm, const s_flow *f, const char *cls,
                       int data_bytes)
{
    s_pf(b, "<tr class=\"%s%s\" data-unsigned=\"%llu\"><td>", cls, f->u_msgs ? " unsigned" : "",
         (unsigned long long)f->u_msgs);
    s_who(b, nm, f->peer);
    s_pf(b, "</td><td class=\"num\">%llu</td><td class=\"num\"", (unsigned long long)f->msgs);
    if (data_bytes) s_pf(b, " data-bytes=\"%llu\"", (unsigned long long)f->bytes);
    s_pf(b, ">%llu", (unsigned long long)f->bytes);
    if (f->u_msgs) {
        s_mark(b);
        s_pf(b,
             " <span class=\"meta\">(%llu bytes in %llu message%s after the last signed "
             "checkpoint)</span>",
             (unsigned long long)f->u_bytes, (unsigned long long)f->u_msgs,
             f->u_msgs == 1 ? "" : "s");
    }
    s_put(b, "</td></tr>");
}

static int s_section_bytes(cnd_buf_t *b, const s_ents *E, const char *job, const s_names *nm)
{
    s_put(b, "<h2 id=\"bytes\">Bytes that left each site</h2>");
    s_flow *in = NULL, *out = NULL;
    size_t nin = 0, nout = 0;
    int rc = 0;
    for (size_t i = 0; i < E->n && !rc; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job)) continue;
        int64_t size = 0;
        (void)cnd_json_integer(s_det(x, "size"), 0, INT64_MAX, &size);
        if (strcmp(s_action(x), CND_AUDIT_INGRESS) == 0)
            rc = s_flow_add(&in, &nin, s_str(s_det(x, "peer")), size, s_unsigned(E, x));
        else if (strcmp(s_action(x), CND_AUDIT_EGRESS) == 0)
            rc = s_flow_add(&out, &nout, s_str(s_get(x, "actor")), size, s_unsigned(E, x));
    }
    if (!rc) {
        if (nin) {
            s_put(b, "<p>As received and logged by this node (ingress entries), per sending "
                     "site:</p><table id=\"bytes-table\"><tr><th>site</th><th>messages</th>"
                     "<th>bytes</th></tr>");
            for (size_t i = 0; i < nin; i++) s_flow_row(b, nm, &in[i], "site", 1);
            s_put(b, "</table>");
        }
        if (nout) {
            s_put(b, "<p>As sent and logged by this node itself (egress entries):</p><table "
                     "id=\"egress-table\"><tr><th>sender</th><th>messages</th><th>bytes</th></tr>");
            for (size_t i = 0; i < nout; i++) s_flow_row(b, nm, &out[i], "sender", 0);
            s_put(b, "</table>");
        }
        if (!nin && !nout)
            s_put(b, "<p class=\"empty\">No ingress or egress entries for this job.</p>");
    }
    free(in);
    free(out);
    return rc;
}

static void s_section_models(cnd_buf_t *b, const s_ents *E, const char *job)
{
    s_put(b, "<h2 id=\"models\">Model versions and signed artifacts</h2>");
    int any = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job) || strcmp(s_action(x), CND_AUDIT_MODEL_VERSION) != 0) continue;
        if (!any)
            s_put(b, "<table id=\"models-table\"><tr><th>version</th><th>format</th><th>round</th>"
                     "<th>bytes</th><th>accuracy</th><th>SHA-256</th><th>logged</th><th>entry</"
                     "th></tr>");
        any = 1;
        char when[32];
        s_when(when, x);
        s_tr(b, E, x, "model");
        s_put(b, "<td>");
        s_val(b, s_det(x, "version"));
        s_put(b, "</td><td>");
        s_val(b, s_det(x, "format"));
        s_put(b, "</td><td class=\"num\">");
        s_val(b, s_det(x, "round"));
        s_put(b, "</td><td class=\"num\">");
        s_val(b, s_det(x, "size"));
        s_put(b, "</td><td class=\"num\">");
        s_num(b, s_det(x, "accuracy"), "%.4f");
        s_put(b, "</td>");
        s_digest_cell(b, x, "model");
        s_pf(b, "<td>%s</td>", when);
        s_entry_cell(b, E, x);
        s_put(b, "</tr>");
    }
    if (any)
        s_put(b, "</table>");
    else
        s_put(b, "<p class=\"empty\">No model.version entries for this job.</p>");
    any = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        if (!s_in_job(x, job) || strcmp(s_action(x), CND_AUDIT_ARTIFACT_SIGN) != 0) continue;
        if (!any)
            s_put(b, "<table id=\"artifacts-table\"><tr><th>signed artifact</th><th>sequence</th>"
                     "<th>bytes</th><th>device class</th><th>artifact SHA-256</th><th>manifest "
                     "SHA-256</th><th>entry</th></tr>");
        any = 1;
        s_tr(b, E, x, "artifact");
        s_put(b, "<td>");
        s_val(b, s_det(x, "version"));
        s_put(b, "</td><td class=\"num\">");
        s_val(b, s_det(x, "sequence"));
        s_put(b, "</td><td class=\"num\">");
        s_val(b, s_det(x, "size"));
        s_put(b, "</td><td>");
        s_val(b, s_det(x, "device_class"));
        s_put(b, "</td>");
        s_digest_cell(b, x, "artifact");
        s_digest_cell(b, x, "manifest");
        s_entry_cell(b, E, x);
        s_put(b, "</tr>");
    }
    if (any) s_put(b, "</table>");
}

/* 1 when `version` is one of the job's model or artifact versions. */
static int s_job_version(const s_ents *E, const char *job, const char *version)
{
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        const char *a = s_action(x);
        if (s_in_job(x, job) &&
            (strcmp(a, CND_AUDIT_MODEL_VERSION) == 0 || strcmp(a, CND_AUDIT_ARTIFACT_SIGN) == 0) &&
            strcmp(s_str(s_det(x, "version")), version) == 0)
            return 1;
    }
    return 0;
}

static void s_section_rollouts(cnd_buf_t *b, const s_ents *E, const char *job)
{
    s_put(b, "<h2 id=\"rollouts\">Rollouts</h2>");
    int any = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *c = &E->v[i];
        if (strcmp(s_action(c), CND_AUDIT_ROLLOUT_CREATE) != 0) continue;
        const char *rid = s_str(s_det(c, "rollout"));
        const char *ver = s_str(s_det(c, "version"));
        if (!s_in_job(c, job) && !s_job_version(E, job, ver)) continue;
        any = 1;
        char when[32];
        s_when(when, c);
        s_pf(b, "<div class=\"rollout%s\" data-entry=\"%lld\"><h3>Rollout ", s_ucls(E, c),
             (long long)c->seq);
        s_esc(b, rid);
        s_put(b, " of ");
        s_esc(b, ver);
        if (s_unsigned(E, c)) s_mark(b);
        s_put(b, "</h3><p class=\"meta\">Created ");
        s_esc(b, when);
        s_pf(b, " (entry %lld)", (long long)c->seq);
        const char *sel = s_str(s_det(c, "select"));
        s_put(b, "; devices selected by ");
        if (sel[0]) {
            s_put(b, "<code>");
            s_esc(b, sel);
            s_put(b, "</code>: ");
        } else {
            s_put(b, "no label (all devices): ");
        }
        s_val(b, s_det(c, "devices"));
        s_put(b, ", canary ");
        s_val(b, s_det(c, "canary"));
        /* A wave's time: from the entry before it (creation, or the previous wave's end) to its
         * own entry, both as the log recorded them. */
        int64_t prev_ms = 0;
        (void)cnd_json_integer(s_get(c, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &prev_ms);
        s_put(b, ".</p><table class=\"waves\"><tr><th>wave</th><th>devices</th><th>succeeded</th>"
                 "<th>failed</th><th>timed out</th><th>seconds</th><th>state</th></tr>");
        for (size_t k = i + 1; k < E->n; k++) {
            const s_ent *w = &E->v[k];
            if (strcmp(s_str(s_det(w, "rollout")), rid) != 0) continue;
            const char *a = s_action(w);
            if (strcmp(a, CND_AUDIT_ROLLOUT_WAVE) == 0) {
                int64_t wave = -1, failed = 0, tout = 0;
                (void)cnd_json_integer(s_det(w, "wave"), 0, INT64_MAX, &wave);
                (void)cnd_json_integer(s_det(w, "failed"), 0, INT64_MAX, &failed);
                (void)cnd_json_integer(s_det(w, "timed_out"), 0, INT64_MAX, &tout);
                s_tr(b, E, w, "wave");
                s_put(b, "<td>");
                if (wave == 0)
                    s_put(b, "canary");
                else
                    s_val(b, s_det(w, "wave"));
                s_pf(b, " <span class=\"meta\">(entry %lld)</span>", (long long)w->seq);
                if (s_unsigned(E, w)) s_mark(b);
                s_put(b, "</td><td class=\"num\">");
                s_val(b, s_det(w, "devices"));
                s_put(b, "</td><td class=\"num\">");
                s_val(b, s_det(w, "succeeded"));
                s_pf(b, "</td><td class=\"num%s\">", failed ? " bad" : "");
                s_val(b, s_det(w, "failed"));
                s_pf(b, "</td><td class=\"num%s\">", tout ? " bad" : "");
                s_val(b, s_det(w, "timed_out"));
                int64_t t_ms = 0;
                if (cnd_json_integer(s_get(w, "time_ms"), 0, CND_AUDIT_MAX_TIME_MS, &t_ms) &&
                    prev_ms > 0 && t_ms >= prev_ms)
                    s_pf(b, "</td><td class=\"num\">%.2f</td><td>", (double)(t_ms - prev_ms) / 1e3);
                else
                    s_put(b, "</td><td>&ndash;</td><td>");
                prev_ms = t_ms;
                s_val(b, s_det(w, "state"));
                s_put(b, "</td></tr>");
            } else if (strcmp(a, CND_AUDIT_ROLLOUT_STATE) == 0) {
                char ws[32];
                s_when(ws, w);
                s_tr(b, E, w, "state");
                s_put(b, "<td colspan=\"7\">");
                s_esc(b, ws);
                s_put(b, ": rollout <b>");
                s_esc(b, s_str(s_det(w, "state")));
                s_put(b, "</b>");
                if (cnd_json_str(s_det(w, "reason"))) {
                    s_put(b, " &mdash; ");
                    s_esc(b, s_det(w, "reason")->s);
                }
                s_pf(b, " <span class=\"meta\">(entry %lld)</span>", (long long)w->seq);
                if (s_unsigned(E, w)) s_mark(b);
                s_put(b, "</td></tr>");
            }
        }
        s_put(b, "</table></div>");
    }
    if (!any) s_put(b, "<p class=\"empty\">No rollout of this job's models is in the log.</p>");
}

static void s_section_events(cnd_buf_t *b, const s_ents *E, const char *job, const s_names *nm)
{
    s_put(b, "<h2 id=\"events\">Refusals and operator actions</h2>");
    size_t rc_conn = 0, rc_msg = 0, u_conn = 0, u_msg = 0;
    for (size_t i = 0; i < E->n; i++) {
        const char *a = s_action(&E->v[i]);
        int u = s_unsigned(E, &E->v[i]);
        if (strcmp(a, CND_AUDIT_REJECT_CONNECTION) == 0) {
            rc_conn++;
            u_conn += u;
        }
        if (strcmp(a, CND_AUDIT_REJECT_MESSAGE) == 0 && s_in_job(&E->v[i], job)) {
            rc_msg++;
            u_msg += u;
        }
        /* refusals counted, not recorded one by one (audit_limit.h) */
        int64_t n = 0;
        if (strcmp(a, CND_AUDIT_REJECT_SUMMARY) == 0 &&
            strcmp(s_str(s_det(&E->v[i], "action")), CND_AUDIT_REJECT_CONNECTION) == 0 &&
            cnd_json_integer(s_det(&E->v[i], "count"), 1, INT64_MAX, &n)) {
            rc_conn += (size_t)n;
            u_conn += u ? (size_t)n : 0;
        }
    }
    s_pf(b,
         "<p>Refused connections (whole log): <b id=\"rejected-connections\" class=\"%s\" "
         "data-unsigned=\"%zu\">%zu</b>",
         u_conn ? "unsigned" : "", u_conn, rc_conn);
    if (u_conn) {
        s_mark(b);
        s_pf(b, " <span class=\"meta\">(%zu of them after the last signed checkpoint)</span>",
             u_conn);
    }
    s_pf(b,
         "; refused messages in this job: <b id=\"rejected-messages\" class=\"%s\" "
         "data-unsigned=\"%zu\">%zu</b>",
         u_msg ? "unsigned" : "", u_msg, rc_msg);
    if (u_msg) {
        s_mark(b);
        s_pf(b, " <span class=\"meta\">(%zu of them after the last signed checkpoint)</span>",
             u_msg);
    }
    s_put(b, ".</p>");
    int any = 0, hidden_u = 0;
    for (size_t i = 0; i < E->n; i++) {
        const s_ent *x = &E->v[i];
        const char *a = s_action(x);
        int admin = s_starts(a, CND_AUDIT_ADMIN_PREFIX) && s_in_job(x, job);
        int rej = (strcmp(a, CND_AUDIT_REJECT_CONNECTION) == 0 ||
                   strcmp(a, CND_AUDIT_REJECT_MESSAGE) == 0) &&
                  (s_in_job(x, job) || !s_str(s_get(x, "job"))[0]);
        if (!admin && !rej) continue;
        if (!any)
            s_put(b, "<table id=\"events-table\"><tr><th>time</th><th>action</th><th>by</th>"
                     "<th>subject</th><th>details</th><th>entry</th></tr>");
        if (any++ >= 200) {
            hidden_u += s_unsigned(E, x);
            continue;
        }
        char when[32];
        s_when(when, x);
        s_tr(b, E, x, "event");
        s_put(b, "<td>");
        s_esc(b, when);
        s_put(b, "</td><td>");
        s_esc(b, a);
        s_put(b, "</td><td>");
        s_who(b, nm, s_str(s_get(x, "actor")));
        s_put(b, "</td><td>");
        s_esc(b, s_str(s_get(x, "subject")));
        s_put(b, "</td><td>");
        if (admin)
            s_admin_details(b, x, s_ucls(E, x));
        else
            s_val(b, s_get(x, "details"));
        s_put(b, "</td>");
        s_entry_cell(b, E, x);
        s_put(b, "</tr>");
    }
    if (any) s_put(b, "</table>");
    if (any > 200) {
        s_pf(b, "<p class=\"%s\" data-unsigned=\"%d\">&hellip; %d more in the log",
             hidden_u ? "unsigned" : "", hidden_u, any - 200);
        if (hidden_u) {
            s_mark(b);
            s_pf(b, " (%d of them after the last signed checkpoint)", hidden_u);
        }
        s_put(b, ".</p>");
    }
}

/* What the signatures cover, said exactly: which checkpoint covers which entries, and which
 * entries (marked on the page) come after it. u = entries shown on the page that are unsigned.
 */
static void s_section_coverage(cnd_buf_t *b, const cnd_audit_verdict_t *v, size_t u)
{
    s_pf(b,
         "<h2 id=\"coverage-title\">What the signatures cover</h2><p id=\"coverage\" "
         "data-covered=\"%llu\" data-entries=\"%llu\" data-unsigned=\"%zu\">",
         (unsigned long long)v->covered, (unsigned long long)v->entries, u);
    if (!v->ok)
        s_put(b, "<b class=\"bad\">The log did not verify (see the top of the page): the figures "
                 "are what the file holds now, to investigate with.</b> ");
    if (v->covered == 0) {
        s_put(b, "No entry of the log is covered by a signed checkpoint that verified, so nothing "
                 "on this page is signed: every figure is marked" S_UNSIGNED_MARK ".");
    } else {
        s_pf(b, "Entries 0..%llu of the log are covered by ", (unsigned long long)v->covered - 1);
        s_esc(b, v->covered_by);
        s_pf(b,
             ", the last signed checkpoint that verified (key <span class=\"fpr\">%.16s&hellip;"
             "</span>, %s): every figure on this page taken from them is what the node signed.",
             v->fingerprint,
             v->key_pinned ? "given by the auditor"
                           : "as recorded in the log itself: pass --key to pin it");
        if (v->covered < v->entries)
            s_pf(b,
                 " Entries %llu..%llu were logged after it: they are chained to the log but not "
                 "yet signed, and each row, point, bar, name or total on this page that uses "
                 "one "
                 "(%zu of the entries shown) is marked" S_UNSIGNED_MARK ".",
                 (unsigned long long)v->covered, (unsigned long long)v->entries - 1, u);
        else
            s_put(b, " No entry was logged after it: nothing on this page is unsigned.");
    }
    s_put(b,
          "</p><h2>How to check this page</h2><p>Each row and chart point names the entry it comes "
          "from; totals (bytes per site, refusal counts) are sums over the entries of their "
          "kind. "
          "Recompute the verification with <code>condenser audit verify DB --key PUB</code>, "
          "or without Condenser by following docs/auditor-guide.md (sqlite3 and "
          "sha256sum).</p>");
}

int cnd_audit_report_html(cnd_buf_t *out, cnd_audit_t *log, const char *job,
                          const cnd_audit_verdict_t *verdict, const char *source)
{
    s_ents E = {0};
    int rc = s_load(&E, log, job);
    if (rc) {
        s_free(&E);
        return rc;
    }
    E.covered = verdict->covered;
    size_t in_job = 0, u_job = 0, u_all = 0;
    for (size_t i = 0; i < E.n; i++) {
        in_job += s_in_job(&E.v[i], job);
        u_job += s_in_job(&E.v[i], job) && s_unsigned(&E, &E.v[i]);
        u_all += s_unsigned(&E, &E.v[i]);
    }
    if (!in_job) {
        s_free(&E);
        return cnd_errf(CND_ENOTFOUND, "no entry in the log belongs to job '%s'", job);
    }
    s_names nm = {0};
    nm.v = calloc(E.n ? E.n : 1, sizeof *nm.v);
    if (!nm.v) {
        s_free(&E);
        return CND_ENOMEM;
    }
    /* A key rotation (cert.renew) gives the same name to a new fingerprint. */
    for (size_t i = 0; i < E.n; i++)
        if ((strcmp(s_action(&E.v[i]), CND_AUDIT_ENROLL) == 0 ||
             strcmp(s_action(&E.v[i]), CND_AUDIT_CERT_RENEW) == 0) &&
            cnd_json_str(s_det(&E.v[i], "name")))
            nm.v[nm.n++] = (s_name_t){s_str(s_get(&E.v[i], "subject")), s_det(&E.v[i], "name")->s,
                                      E.v[i].seq, s_unsigned(&E, &E.v[i])};

    cnd_buf_t *b = out;
    char now[32], fpr[CND_AUDIT_FPR_HEX];
    cnd_iso8601(now, cnd_unix_time());
    cnd_audit_fingerprint(fpr, cnd_audit_public_key(log));
    s_put(b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "style-src 'unsafe-inline'\"><meta name=\"viewport\" content=\"width=device-width\">"
             "<title>Audit report: job ");
    s_esc(b, job);
    s_put(b, "</title><style>");
    s_put(b, s_css);
    s_put(b, "</style></head><body><h1>Audit report: job <span id=\"job\">");
    s_esc(b, job);
    s_put(b, "</span></h1><p class=\"meta\">Log <b>");
    s_esc(b, cnd_audit_origin(log));
    s_put(b, "</b> (");
    s_esc(b, source);
    s_pf(b,
         "), signing key <span class=\"fpr\">%s</span>. Generated %s by <code>condenser audit "
         "report</code> from %zu log entries about this job",
         fpr, now, in_job);
    if (u_job)
        s_pf(b,
             ", <span class=\"unsigned\" data-unsigned=\"%zu\">%zu of them logged after the "
             "last "
             "signed checkpoint</span>" S_UNSIGNED_MARK,
             u_job, u_job);
    s_put(b, ".</p>");
    s_section_verification(b, verdict);
    if (E.damaged)
        s_pf(b,
             "<p class=\"bad\">%zu entries could not be read and are left out of this report "
             "(the first is entry %lld).</p>",
             E.damaged, (long long)E.first_damaged);
    s_section_recipe(b, &E, job, &nm);
    rc = s_section_rounds(b, &E, job, &nm);
    if (!rc) rc = s_section_bytes(b, &E, job, &nm);
    if (!rc) rc = s_section_privacy(b, &E, job);
    if (!rc) {
        s_section_models(b, &E, job);
        s_section_rollouts(b, &E, job);
        s_section_events(b, &E, job, &nm);
        s_section_coverage(b, verdict, u_all);
        s_put(b, "</body></html>\n");
    }
    free(nm.v);
    s_free(&E);
    if (!rc && out->err) rc = CND_ENOMEM;
    return rc;
}
