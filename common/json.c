/*
 * json.c: JSON parsing, canonical encoding and a writer (see json.h for the
 * canonical form and why it is hand-written).
 *
 * The parser is a recursive descent over a bounds-checked cursor; it validates UTF-8 as it
 * copies strings, refuses everything RFC 8259 refuses plus U+0000 and duplicate keys, and never
 * recurses deeper than CND_JSON_MAX_DEPTH.
 */
#include "json.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p; /* input */
    size_t len;    /* input length */
    size_t off;    /* next byte */
    int depth;     /* containers open */
} s_cur;

static int s_fail(const s_cur *c, const char *what)
{
    return cnd_errf(CND_EINVAL, "JSON at byte %zu: %s", c->off, what);
}

static void s_ws(s_cur *c)
{
    while (c->off < c->len) {
        char ch = c->p[c->off];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
        c->off++;
    }
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid (overlong, surrogate, above
 * U+10FFFF, truncated). */
static size_t s_utf8_len(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    size_t k;
    uint32_t cp;
    if (b >= 0xC2 && b <= 0xDF) {
        k = 2;
        cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        k = 3;
        cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        k = 4;
        cp = b & 0x07;
    } else {
        return 0;
    }
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

static int s_plain(uint8_t ch);

static void s_put_utf8(cnd_buf_t *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | cp >> 6);
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | cp >> 12);
        u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | cp >> 18);
        u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    cnd_buf_put(b, u, n);
}

static int s_hex4(s_cur *c, uint32_t *out)
{
    if (c->len - c->off < 4) return s_fail(c, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char h = c->p[c->off + (size_t)i];
        int d = (h >= '0' && h <= '9')   ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (d < 0) return s_fail(c, "bad hex digit in \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    c->off += 4;
    *out = v;
    return 0;
}

/* Parses a string literal (cursor on the opening quote) into a new malloc'd C string. */
static int s_string(s_cur *c, char **out)
{
    *out = NULL;
    c->off++; /* opening quote */
    cnd_buf_t b;
    cnd_buf_init(&b);
    int rc = 0;
    for (;;) {
        if (c->off >= c->len) {
            rc = s_fail(c, "unterminated string");
            goto done;
        }
        size_t run = c->off;
        while (run < c->len && s_plain((uint8_t)c->p[run])) run++;
        if (run > c->off) { /* plain ASCII: copy the run at once */
            cnd_buf_put(&b, c->p + c->off, run - c->off);
            c->off = run;
            continue;
        }
        uint8_t ch = (uint8_t)c->p[c->off];
        if (ch == '"') {
            c->off++;
            break;
        }
        if (ch < 0x20) {
            rc = s_fail(c, "control character in string");
            goto done;
        }
        if (ch == '\\') {
            c->off++;
            if (c->off >= c->len) {
                rc = s_fail(c, "unterminated escape");
                goto done;
            }
            char e = c->p[c->off++];
            switch (e) {
            case '"': cnd_buf_u8(&b, '"'); break;
            case '\\': cnd_buf_u8(&b, '\\'); break;
            case '/': cnd_buf_u8(&b, '/'); break;
            case 'b': cnd_buf_u8(&b, '\b'); break;
            case 'f': cnd_buf_u8(&b, '\f'); break;
            case 'n': cnd_buf_u8(&b, '\n'); break;
            case 'r': cnd_buf_u8(&b, '\r'); break;
            case 't': cnd_buf_u8(&b, '\t'); break;
            case 'u': {
                uint32_t cp;
                if ((rc = s_hex4(c, &cp))) goto done;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (c->len - c->off < 2 || c->p[c->off] != '\\' || c->p[c->off + 1] != 'u') {
                        rc = s_fail(c, "lone high surrogate");
                        goto done;
                    }
                    c->off += 2;
                    if ((rc = s_hex4(c, &lo))) goto done;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        rc = s_fail(c, "bad low surrogate");
                        goto done;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    rc = s_fail(c, "lone low surrogate");
                    goto done;
                } else if (cp == 0) {
                    rc = s_fail(c, "\\u0000 is not allowed");
                    goto done;
                }
                s_put_utf8(&b, cp);
                break;
            }
            default:
                c->off--;
                rc = s_fail(c, "unknown escape");
                goto done;
            }
            continue;
        }
        size_t k = s_utf8_len((const uint8_t *)c->p + c->off, c->len - c->off);
        if (!k) {
            rc = s_fail(c, "invalid UTF-8 in string");
            goto done;
        }
        cnd_buf_put(&b, c->p + c->off, k);
        c->off += k;
    }
    cnd_buf_u8(&b, 0);
    if (b.err) {
        rc = CND_ENOMEM;
        goto done;
    }
    *out = (char *)b.data;
    return 0;
done:
    cnd_buf_free(&b);
    return rc;
}

static int s_number(s_cur *c, cnd_json_t *v)
{
    size_t start = c->off;
    int is_int = 1;
    if (c->off < c->len && c->p[c->off] == '-') c->off++;
    if (c->off >= c->len) return s_fail(c, "truncated number");
    if (c->p[c->off] == '0') {
        c->off++;
    } else if (c->p[c->off] >= '1' && c->p[c->off] <= '9') {
        while (c->off < c->len && c->p[c->off] >= '0' && c->p[c->off] <= '9') c->off++;
    } else {
        return s_fail(c, "bad number");
    }
    if (c->off < c->len && c->p[c->off] == '.') {
        is_int = 0;
        c->off++;
        if (c->off >= c->len || c->p[c->off] < '0' || c->p[c->off] > '9')
            return s_fail(c, "digit expected after '.'");
        while (c->off < c->len && c->p[c->off] >= '0' && c->p[c->off] <= '9') c->off++;
    }
    if (c->off < c->len && (c->p[c->off] == 'e' || c->p[c->off] == 'E')) {
        is_int = 0;
        c->off++;
        if (c->off < c->len && (c->p[c->off] == '+' || c->p[c->off] == '-')) c->off++;
        if (c->off >= c->len || c->p[c->off] < '0' || c->p[c->off] > '9')
            return s_fail(c, "digit expected in exponent");
        while (c->off < c->len && c->p[c->off] >= '0' && c->p[c->off] <= '9') c->off++;
    }
    char tmp[512];
    size_t n = c->off - start;
    if (n >= sizeof tmp) return s_fail(c, "number too long");
    memcpy(tmp, c->p + start, n);
    tmp[n] = 0;
    if (is_int) {
        errno = 0;
        long long x = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->type = CND_JSON_INT;
            v->i = x;
            v->d = (double)x;
            v->written_int = 1;
            return 0;
        }
    }
    errno = 0;
    double d = strtod(tmp, NULL);
    if (!isfinite(d)) return s_fail(c, "number out of range");
    v->type = CND_JSON_NUM;
    v->d = d;
    if (d == 0) d = 0; /* -0 and 0 encode alike */
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        v->type = CND_JSON_INT;
        v->i = (int64_t)d;
        v->d = d;
    }
    return 0;
}

static int s_lit(s_cur *c, const char *word)
{
    size_t n = strlen(word);
    if (c->len - c->off < n || memcmp(c->p + c->off, word, n) != 0) return s_fail(c, "bad literal");
    c->off += n;
    return 0;
}

static int s_value(s_cur *c, cnd_json_t **out);

static int s_keycmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts an object's members by key, keeping keys and items paired; fails on a duplicate. */
static int s_sort_members(s_cur *c, cnd_json_t *v)
{
    if (v->n < 2) return 0;
    /* Sort an index permutation by key, then apply it. */
    size_t n = v->n;
    char **pairs = malloc(n * 2 * sizeof *pairs);
    if (!pairs) return CND_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        pairs[2 * i] = v->keys[i];
        pairs[2 * i + 1] = (char *)v->items[i];
    }
    qsort(pairs, n, 2 * sizeof *pairs, s_keycmp);
    for (size_t i = 0; i < n; i++) {
        v->keys[i] = pairs[2 * i];
        v->items[i] = (cnd_json_t *)pairs[2 * i + 1];
    }
    free(pairs);
    for (size_t i = 1; i < n; i++)
        if (strcmp(v->keys[i - 1], v->keys[i]) == 0) {
            char m[160];
            snprintf(m, sizeof m, "duplicate key \"%.100s\"", v->keys[i]);
            return s_fail(c, m);
        }
    return 0;
}

static int s_push(cnd_json_t *v, size_t *cap, cnd_json_t *item, char *key)
{
    if (v->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        cnd_json_t **ni = realloc(v->items, nc * sizeof *ni);
        if (!ni) return CND_ENOMEM;
        v->items = ni;
        if (v->type == CND_JSON_OBJ) {
            char **nk = realloc(v->keys, nc * sizeof *nk);
            if (!nk) return CND_ENOMEM;
            v->keys = nk;
        }
        *cap = nc;
    }
    v->items[v->n] = item;
    if (v->type == CND_JSON_OBJ) v->keys[v->n] = key;
    v->n++;
    return 0;
}

static int s_container(s_cur *c, cnd_json_t *v, int is_obj)
{
    if (++c->depth > CND_JSON_MAX_DEPTH) return s_fail(c, "nesting too deep");
    char close = is_obj ? '}' : ']';
    c->off++;
    s_ws(c);
    size_t cap = 0;
    if (c->off < c->len && c->p[c->off] == close) {
        c->off++;
        c->depth--;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        int rc;
        if (is_obj) {
            s_ws(c);
            if (c->off >= c->len || c->p[c->off] != '"') return s_fail(c, "object key expected");
            if ((rc = s_string(c, &key))) return rc;
            s_ws(c);
            if (c->off >= c->len || c->p[c->off] != ':') {
                free(key);
                return s_fail(c, "':' expected");
            }
            c->off++;
        }
        cnd_json_t *item = NULL;
        if ((rc = s_value(c, &item)) || (rc = s_push(v, &cap, item, key))) {
            free(key);
            cnd_json_free(&item);
            return rc;
        }
        s_ws(c);
        if (c->off >= c->len)
            return s_fail(c, is_obj ? "unterminated object" : "unterminated array");
        char ch = c->p[c->off++];
        if (ch == ',') continue;
        if (ch == close) break;
        c->off--;
        return s_fail(c, is_obj ? "',' or '}' expected" : "',' or ']' expected");
    }
    c->depth--;
    return is_obj ? s_sort_members(c, v) : 0;
}

static int s_value(s_cur *c, cnd_json_t **out)
{
    *out = NULL;
    s_ws(c);
    if (c->off >= c->len) return s_fail(c, "value expected");
    cnd_json_t *v = calloc(1, sizeof *v);
    if (!v) return CND_ENOMEM;
    int rc = 0;
    char ch = c->p[c->off];
    switch (ch) {
    case '{':
        v->type = CND_JSON_OBJ;
        rc = s_container(c, v, 1);
        break;
    case '[':
        v->type = CND_JSON_ARR;
        rc = s_container(c, v, 0);
        break;
    case '"':
        v->type = CND_JSON_STR;
        rc = s_string(c, &v->s);
        break;
    case 't':
        v->type = CND_JSON_BOOL;
        v->b = 1;
        rc = s_lit(c, "true");
        break;
    case 'f':
        v->type = CND_JSON_BOOL;
        rc = s_lit(c, "false");
        break;
    case 'n':
        v->type = CND_JSON_NULL;
        rc = s_lit(c, "null");
        break;
    default:
        if (ch == '-' || (ch >= '0' && ch <= '9'))
            rc = s_number(c, v);
        else
            rc = s_fail(c, "unexpected character");
    }
    if (rc) {
        cnd_json_free(&v);
        return rc;
    }
    *out = v;
    return 0;
}

int cnd_json_parse(cnd_json_t **out, const char *text, size_t len)
{
    *out = NULL;
    s_cur c = {text, len, 0, 0};
    cnd_json_t *v = NULL;
    int rc = s_value(&c, &v);
    if (rc) return rc;
    s_ws(&c);
    if (c.off != c.len) {
        cnd_json_free(&v);
        return s_fail(&c, "trailing characters after the value");
    }
    *out = v;
    return 0;
}

void cnd_json_free(cnd_json_t **pv)
{
    if (!pv || !*pv) return;
    cnd_json_t *v = *pv;
    for (size_t i = 0; i < v->n; i++) {
        cnd_json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->s);
    free(v);
    *pv = NULL;
}

/* 1 for the bytes a canonical string holds as themselves: printable ASCII but `"` and `\`. */
static int s_plain(uint8_t ch)
{
    return ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\';
}

void cnd_json_put_str(cnd_buf_t *out, const char *s, size_t len)
{
    static const char hexd[] = "0123456789abcdef";
    cnd_buf_u8(out, '"');
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s_plain((uint8_t)s[run])) run++;
        if (run > i) { /* copy runs of plain ASCII in one go */
            cnd_buf_put(out, s + i, run - i);
            i = run;
            continue;
        }
        uint8_t ch = (uint8_t)s[i];
        if (ch == '"' || ch == '\\') {
            cnd_buf_u8(out, '\\');
            cnd_buf_u8(out, ch);
            i++;
        } else if (ch < 0x20) {
            const char *e = ch == '\b'   ? "\\b"
                            : ch == '\t' ? "\\t"
                            : ch == '\n' ? "\\n"
                            : ch == '\f' ? "\\f"
                            : ch == '\r' ? "\\r"
                                         : NULL;
            if (e) {
                cnd_buf_put(out, e, 2);
            } else {
                char u[6] = {'\\', 'u', '0', '0', hexd[ch >> 4], hexd[ch & 15]};
                cnd_buf_put(out, u, 6);
            }
            i++;
        } else {
            size_t k = s_utf8_len((const uint8_t *)s + i, len - i);
            if (k) {
                cnd_buf_put(out, s + i, k);
                i += k;
            } else {
                cnd_buf_put(out, "\xEF\xBF\xBD", 3);
                i++;
            }
        }
    }
    cnd_buf_u8(out, '"');
}

void cnd_json_put_double(cnd_buf_t *out, double d)
{
    char tmp[40];
    if (!isfinite(d)) {
        cnd_buf_put(out, "null", 4);
        return;
    }
    if (d == 0) d = 0;
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)d);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, d);
            if (strtod(tmp, NULL) == d) break;
        }
    }
    cnd_buf_put(out, tmp, strlen(tmp));
}

static int s_canon(cnd_buf_t *out, const cnd_json_t *v)
{
    char tmp[32];
    switch (v->type) {
    case CND_JSON_NULL: cnd_buf_put(out, "null", 4); break;
    case CND_JSON_BOOL: v->b ? cnd_buf_put(out, "true", 4) : cnd_buf_put(out, "false", 5); break;
    case CND_JSON_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->i);
        cnd_buf_put(out, tmp, strlen(tmp));
        break;
    case CND_JSON_NUM: cnd_json_put_double(out, v->d); break;
    case CND_JSON_STR: cnd_json_put_str(out, v->s, strlen(v->s)); break;
    case CND_JSON_ARR:
    case CND_JSON_OBJ:
        cnd_buf_u8(out, v->type == CND_JSON_OBJ ? '{' : '[');
        for (size_t i = 0; i < v->n; i++) {
            if (i) cnd_buf_u8(out, ',');
            if (v->type == CND_JSON_OBJ) {
                cnd_json_put_str(out, v->keys[i], strlen(v->keys[i]));
                cnd_buf_u8(out, ':');
            }
            s_canon(out, v->items[i]);
        }
        cnd_buf_u8(out, v->type == CND_JSON_OBJ ? '}' : ']');
        break;
    }
    return out->err;
}

int cnd_json_canon(cnd_buf_t *out, const cnd_json_t *v)
{
    return s_canon(out, v) ? CND_ENOMEM : 0;
}

int cnd_json_canonicalize(cnd_buf_t *out, const char *text, size_t len)
{
    cnd_json_t *v = NULL;
    int rc = cnd_json_parse(&v, text, len);
    if (rc) return rc;
    rc = cnd_json_canon(out, v);
    cnd_json_free(&v);
    return rc;
}

const cnd_json_t *cnd_json_get(const cnd_json_t *obj, const char *key)
{
    if (!obj || obj->type != CND_JSON_OBJ) return NULL;
    size_t lo = 0, hi = obj->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(obj->keys[mid], key);
        if (c == 0) return obj->items[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *cnd_json_str(const cnd_json_t *v)
{
    return v && v->type == CND_JSON_STR ? v->s : NULL;
}

int cnd_json_number(const cnd_json_t *v, double *out)
{
    if (!v || (v->type != CND_JSON_INT && v->type != CND_JSON_NUM)) return 0;
    *out = v->type == CND_JSON_INT ? (double)v->i : v->d;
    return 1;
}

int cnd_json_integer(const cnd_json_t *v, int64_t min, int64_t max, int64_t *out)
{
    if (!v || v->type != CND_JSON_INT || !v->written_int || v->i < min || v->i > max) return 0;
    *out = v->i;
    return 1;
}

/* ---- writer ---- */

void cnd_jw_init(cnd_jw_t *w)
{
    memset(w, 0, sizeof *w);
    cnd_buf_init(&w->buf);
}

void cnd_jw_free(cnd_jw_t *w)
{
    cnd_buf_free(&w->buf);
    w->depth = 0;
}

/* Emits the comma before a value or key when needed. */
static void s_sep(cnd_jw_t *w, int is_key)
{
    if (w->after_key) {
        assert(!is_key);
        w->after_key = 0;
        return;
    }
    assert(w->depth == 0 || !w->is_obj[w->depth] || is_key);
    if (w->depth > 0) {
        if (!w->first[w->depth]) cnd_buf_u8(&w->buf, ',');
        w->first[w->depth] = 0;
    }
}

static void s_open(cnd_jw_t *w, int is_obj)
{
    s_sep(w, 0);
    assert(w->depth < CND_JSON_MAX_DEPTH);
    w->depth++;
    w->first[w->depth] = 1;
    w->is_obj[w->depth] = (uint8_t)is_obj;
    cnd_buf_u8(&w->buf, is_obj ? '{' : '[');
}

static void s_close(cnd_jw_t *w, int is_obj)
{
    assert(w->depth > 0 && w->is_obj[w->depth] == is_obj && !w->after_key);
    w->depth--;
    cnd_buf_u8(&w->buf, is_obj ? '}' : ']');
}

void cnd_jw_obj(cnd_jw_t *w)
{
    s_open(w, 1);
}
void cnd_jw_obj_end(cnd_jw_t *w)
{
    s_close(w, 1);
}
void cnd_jw_arr(cnd_jw_t *w)
{
    s_open(w, 0);
}
void cnd_jw_arr_end(cnd_jw_t *w)
{
    s_close(w, 0);
}

void cnd_jw_key(cnd_jw_t *w, const char *key)
{
    assert(w->depth > 0 && w->is_obj[w->depth] && !w->after_key);
    s_sep(w, 1);
    cnd_json_put_str(&w->buf, key, strlen(key));
    cnd_buf_u8(&w->buf, ':');
    w->after_key = 1;
}

void cnd_jw_str(cnd_jw_t *w, const char *s)
{
    s_sep(w, 0);
    if (!s)
        cnd_buf_put(&w->buf, "null", 4);
    else
        cnd_json_put_str(&w->buf, s, strlen(s));
}

void cnd_jw_int(cnd_jw_t *w, int64_t v)
{
    char tmp[32];
    s_sep(w, 0);
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    cnd_buf_put(&w->buf, tmp, strlen(tmp));
}

void cnd_jw_double(cnd_jw_t *w, double v)
{
    s_sep(w, 0);
    cnd_json_put_double(&w->buf, v);
}

void cnd_jw_bool(cnd_jw_t *w, int v)
{
    s_sep(w, 0);
    v ? cnd_buf_put(&w->buf, "true", 4) : cnd_buf_put(&w->buf, "false", 5);
}

void cnd_jw_null(cnd_jw_t *w)
{
    s_sep(w, 0);
    cnd_buf_put(&w->buf, "null", 4);
}

void cnd_jw_raw(cnd_jw_t *w, const char *json)
{
    s_sep(w, 0);
    cnd_buf_put(&w->buf, json, strlen(json));
}

const char *cnd_jw_text(cnd_jw_t *w)
{
    if (cnd_buf_reserve(&w->buf, 1) || w->buf.err) return NULL;
    w->buf.data[w->buf.len] = 0;
    return (const char *)w->buf.data;
}
