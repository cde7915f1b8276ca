/*
 * json.h: a small JSON parser, a writer, and the canonical JSON encoding of audit entries.
 *
 * Why it exists: every audit entry is stored as one canonical JSON text whose bytes are the
 * Merkle leaf, so an auditor can recompute a leaf hash with sqlite3 and sha256sum, and read the
 * entry with any JSON tool. Canonical means one byte string per value, so that the coordinator,
 * the agent and an independent verifier agree on the leaf bytes. SQLite's JSON1 minifies but does
 * not sort keys or normalise numbers, and no library on our Debian list canonicalises, so the
 * few hundred lines are written here. It lives in common/ because jobs' recipes (proto/job.h),
 * every command's --json output and the audit log all use it.
 *
 * Canonical form (also documented in docs/auditor-guide.md, "Leaf bytes"):
 *   - UTF-8, no byte order mark, no whitespace outside strings.
 *   - Object members sorted by key, comparing the keys' UTF-8 bytes (memcmp order); duplicate
 *     keys are an error.
 *   - Strings: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C, U+000D as
 *     `\b \t \n \f \r`; other characters below U+0020 as `\u00XX` with lower-case hex; every
 *     other character (including `/` and non-ASCII) written as its raw UTF-8 bytes. U+0000 and
 *     invalid UTF-8 (including lone surrogates) are refused.
 *   - Numbers: a value with no fraction and no exponent that fits int64 is written as that
 *     integer (`-0` as `0`). Any other number is read as an IEEE double; if it is an integer of
 *     magnitude below 2^53 it is written as an integer, else with the shortest `%.{1..17}g`
 *     (C locale) that reads back to the same double. NaN and infinities cannot occur (JSON has
 *     no syntax for them; an exponent that overflows is refused).
 *   - `true`, `false`, `null` as such. Nesting at most 64 deep.
 *
 * Usage: cnd_json_parse() builds a tree (objects' members sorted), cnd_json_canon() writes it
 * canonically; cnd_json_canonicalize() does both for a text. cnd_jw_* build JSON text for callers
 * that log details (`cnd_jw_obj(&w); cnd_jw_key(&w, "round"); cnd_jw_int(&w, 3); ...`), with
 * escaping handled; the audit log canonicalises whatever it is given.
 */
#ifndef CND_JSON_H
#define CND_JSON_H

#include "bytes.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CND_JSON_NULL,
    CND_JSON_BOOL,
    CND_JSON_INT, /* integer that fits int64 */
    CND_JSON_NUM, /* any other number, as a double */
    CND_JSON_STR,
    CND_JSON_ARR,
    CND_JSON_OBJ,
} cnd_json_type_t;

typedef struct cnd_json cnd_json_t;
struct cnd_json {
    cnd_json_type_t type;
    int b;              /* BOOL */
    int64_t i;          /* INT */
    int written_int;    /* INT: 1 when the text was a JSON integer (no fraction, no exponent) */
    double d;           /* NUM (and INT converted, for convenience) */
    char *s;            /* STR: NUL-terminated UTF-8 (no embedded NUL) */
    size_t n;           /* ARR/OBJ: number of items */
    cnd_json_t **items; /* ARR/OBJ: owned children */
    char **keys;        /* OBJ: owned keys, sorted (memcmp order), parallel to items */
};

#define CND_JSON_MAX_DEPTH 64

/* Parses text[0..len) (exactly one JSON value, surrounding whitespace allowed) into a new tree.
 * Returns 0, CND_ENOMEM, or CND_EINVAL with a detail naming the byte offset and the problem. */
CND_MUST_USE int cnd_json_parse(cnd_json_t **out, const char *text, size_t len);

/* Frees a tree; accepts NULL and nulls the pointer. */
void cnd_json_free(cnd_json_t **v);

/* Appends the canonical encoding of v to out. Returns 0 or CND_ENOMEM. */
CND_MUST_USE int cnd_json_canon(cnd_buf_t *out, const cnd_json_t *v);

/* Parses and re-encodes canonically into out (appended). Returns as cnd_json_parse. */
CND_MUST_USE int cnd_json_canonicalize(cnd_buf_t *out, const char *text, size_t len);

/* Member `key` of an object, or NULL (also when obj is NULL or not an object). */
const cnd_json_t *cnd_json_get(const cnd_json_t *obj, const char *key);
/* The string of a STR value, or NULL. */
const char *cnd_json_str(const cnd_json_t *v);
/* 1 and the value in *out when v is a number (INT or NUM), else 0. */
int cnd_json_number(const cnd_json_t *v, double *out);
/* 1 and the value in *out when v was written as a JSON integer (an optional '-' and digits: no
 * fraction, no exponent) that lies in [min, max]; else 0 (also for NULL). The integer fields of
 * files are read with it: 57.0 and 5.7e1 are numbers equal to 57 (and canonicalise to 57), but
 * not integers here, so a hand-edited file cannot pass one off as the other. */
int cnd_json_integer(const cnd_json_t *v, int64_t min, int64_t max, int64_t *out);

/* Appends s[0..len) as a JSON string literal (with quotes), escaped canonically. Invalid UTF-8
 * bytes are replaced by U+FFFD so the output is always valid JSON. */
void cnd_json_put_str(cnd_buf_t *out, const char *s, size_t len);
/* Appends a double in the canonical number form (finite values only; non-finite -> null). */
void cnd_json_put_double(cnd_buf_t *out, double d);

/* A streaming writer. Commas are inserted automatically; misuse (a key outside an object) is a
 * programming error caught by assert. Errors (out of memory) are sticky in w.buf.err. */
typedef struct {
    cnd_buf_t buf;                         /* the text so far; owned until taken */
    int depth;                             /* open containers */
    uint8_t first[CND_JSON_MAX_DEPTH + 1]; /* 1 while the container at that depth is empty */
    uint8_t is_obj[CND_JSON_MAX_DEPTH + 1];
    int after_key; /* 1 between a key and its value */
} cnd_jw_t;

void cnd_jw_init(cnd_jw_t *w);
void cnd_jw_free(cnd_jw_t *w);
void cnd_jw_obj(cnd_jw_t *w);
void cnd_jw_obj_end(cnd_jw_t *w);
void cnd_jw_arr(cnd_jw_t *w);
void cnd_jw_arr_end(cnd_jw_t *w);
void cnd_jw_key(cnd_jw_t *w, const char *key);
void cnd_jw_str(cnd_jw_t *w, const char *s);
void cnd_jw_int(cnd_jw_t *w, int64_t v);
void cnd_jw_double(cnd_jw_t *w, double v);
void cnd_jw_bool(cnd_jw_t *w, int v);
void cnd_jw_null(cnd_jw_t *w);
/* Inserts already-valid JSON text as a value (e.g. a recipe the caller holds as JSON). */
void cnd_jw_raw(cnd_jw_t *w, const char *json);
/* NUL-terminated text of the writer (valid until the next write), or NULL after an error. */
const char *cnd_jw_text(cnd_jw_t *w);

#endif
