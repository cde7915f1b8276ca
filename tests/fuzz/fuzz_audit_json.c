/*
 * fuzz_audit_json.c: the JSON parser and canonical encoder of the audit log
 * (common/json.c) and the entry envelope check built on them (cnd_audit_entry_parse,
 * audit/audit_verify.c), which read entries from a log copy an auditor was handed.
 *
 * Properties (json.h, "Canonical form"): a text that parses canonicalises; the canonical
 * text parses again and is a fixed point (canonicalising it gives the same bytes); it holds no
 * whitespace outside strings' bytes; and cnd_json_canonicalize agrees with parse + canon. An
 * entry that passes cnd_audit_entry_parse is already canonical. Seeds in corpus/audit_json/ are
 * a proof file and entries written by the audit log, and hand-written edge cases.
 */
#include "json.h"
#include "audit_verify.h"
#include "fuzz.h"

static void s_canon_props(const cnd_json_t *v, const uint8_t *data, size_t size)
{
    cnd_buf_t a, b, c;
    cnd_buf_init(&a);
    cnd_buf_init(&b);
    cnd_buf_init(&c);
    if (cnd_json_canon(&a, v) != 0) abort();
    cnd_json_t *v2 = NULL;
    if (cnd_json_parse(&v2, (const char *)a.data, a.len) != 0) abort();
    if (cnd_json_canon(&b, v2) != 0) abort();
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    if (cnd_json_canonicalize(&c, (const char *)data, size) != 0) abort();
    if (a.len != c.len || memcmp(a.data, c.data, a.len) != 0) abort();
    cnd_json_free(&v2);
    cnd_buf_free(&a);
    cnd_buf_free(&b);
    cnd_buf_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnd_json_t *v = NULL;
    if (cnd_json_parse(&v, (const char *)data, size) == 0) {
        fuzz_note("JSON parsed");
        s_canon_props(v, data, size);
        double d;
        int64_t i;
        fuzz_sink += cnd_json_number(cnd_json_get(v, "seq"), &d);
        fuzz_sink += cnd_json_integer(cnd_json_get(v, "time_ms"), INT64_MIN, INT64_MAX, &i);
        fuzz_sink += cnd_json_str(cnd_json_get(v, "action")) != NULL;
        cnd_json_free(&v);
    }
    fuzz_touch_error();
    cnd_json_t *e = NULL;
    if (cnd_audit_entry_parse(&e, (const char *)data, size) == 0) {
        fuzz_note("audit entry parsed");
        cnd_buf_t a;
        cnd_buf_init(&a);
        if (cnd_json_canon(&a, e) != 0) abort();
        if (a.len != size || memcmp(a.data, data, size) != 0) abort();
        cnd_buf_free(&a);
        cnd_json_free(&e);
    }
    fuzz_touch_error();
    return 0;
}
