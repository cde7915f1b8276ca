/*
 * validate.c: field-by-field validation of every message, and the stateful checks (sender,
 * role, round/phase, replay window). See proto.h for the contract and docs/protocol.md for the
 * rules in prose; the two must say the same thing.
 *
 * Style of this file: one function per payload type, each walking the fields in schema order
 * and failing on the first bad one with "<message>.<field>: <what is wrong>". A count or length
 * over its limit is ERR_TOO_LARGE (CND_ERANGE); anything else is ERR_BAD_FIELD (CND_EPROTO).
 * Nothing here echoes peer-supplied text into the detail message: a hostile peer must not be
 * able to write into our logs.
 *
 * Written by hand because protobuf-c checks only the encoding, not what the values mean, and
 * the protobuf "validate" plug-ins are C++/Go code generators with no protobuf-c backend.
 */
#include "proto.h"

#include "classmap.h"
#include "manifest.h"
#include "secagg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BAD CONDENSER__ERROR_CODE__ERR_BAD_FIELD
#define S_BIG CONDENSER__ERROR_CODE__ERR_TOO_LARGE

static int s_fail(cnd_proto_reject_t *rej, Condenser__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail(cnd_proto_reject_t *rej, Condenser__ErrorCode code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (rej) rej->code = code;
    return cnd_errf(code == S_BIG ? CND_ERANGE : CND_EPROTO, "%s", buf);
}

/* --- field helpers ------------------------------------------------------------------------ */

static int s_fixed(cnd_proto_reject_t *rej, const char *ctx, const char *f, ProtobufCBinaryData b,
                   size_t n)
{
    if (b.len != n)
        return s_fail(rej, b.len > n ? S_BIG : S_BAD, "%s.%s: %zu bytes, expected %zu", ctx, f,
                      b.len, n);
    return 0;
}

/* Empty (absent) or exactly n bytes. */
static int s_opt_fixed(cnd_proto_reject_t *rej, const char *ctx, const char *f,
                       ProtobufCBinaryData b, size_t n)
{
    if (b.len != 0 && b.len != n)
        return s_fail(rej, b.len > n ? S_BIG : S_BAD, "%s.%s: %zu bytes, expected 0 or %zu", ctx, f,
                      b.len, n);
    return 0;
}

static int s_blob(cnd_proto_reject_t *rej, const char *ctx, const char *f, ProtobufCBinaryData b,
                  size_t lo, size_t hi)
{
    if (b.len > hi) return s_fail(rej, S_BIG, "%s.%s: %zu bytes, limit %zu", ctx, f, b.len, hi);
    if (b.len < lo) {
        if (b.len == 0) return s_fail(rej, S_BAD, "%s.%s: missing", ctx, f);
        return s_fail(rej, S_BAD, "%s.%s: %zu bytes, at least %zu needed", ctx, f, b.len, lo);
    }
    return 0;
}

/* Reject an all-zero key: the X25519 identity point and a classic "forgot to fill it" bug. */
static int s_nonzero_key(cnd_proto_reject_t *rej, const char *ctx, const char *f,
                         ProtobufCBinaryData b)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < b.len; i++) acc |= b.data[i];
    if (b.len && !acc) return s_fail(rej, S_BAD, "%s.%s: all-zero key", ctx, f);
    return 0;
}

static int s_utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len > n - i) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

typedef enum {
    S_NAME,  /* node/teacher/hardware names: [A-Za-z0-9][A-Za-z0-9._-]* */
    S_TOKEN, /* capability tokens, label keys: [a-z0-9][a-z0-9._+-]* */
    S_TEXT,  /* human text: UTF-8, no control characters except tab and newline */
} s_txt_kind_t;

static int s_alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int s_text(cnd_proto_reject_t *rej, const char *ctx, const char *f, ProtobufCBinaryData b,
                  size_t lo, size_t hi, s_txt_kind_t kind)
{
    int rc = s_blob(rej, ctx, f, b, lo, hi);
    if (rc) return rc;
    const uint8_t *p = b.data;
    for (size_t i = 0; i < b.len; i++) {
        uint8_t c = p[i];
        if (c == 0) return s_fail(rej, S_BAD, "%s.%s: NUL byte at offset %zu", ctx, f, i);
        switch (kind) {
        case S_NAME:
            if (!(s_alnum(c) || (i > 0 && (c == '.' || c == '_' || c == '-'))))
                return s_fail(rej, S_BAD,
                              "%s.%s: byte 0x%02x at offset %zu is not allowed in a name "
                              "(letters, digits, '.', '_', '-'; first a letter or digit)",
                              ctx, f, c, i);
            break;
        case S_TOKEN:
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (i > 0 && (c == '.' || c == '_' || c == '-' || c == '+'))))
                return s_fail(rej, S_BAD,
                              "%s.%s: byte 0x%02x at offset %zu is not allowed in a token "
                              "(lower-case letters, digits, '.', '_', '-', '+')",
                              ctx, f, c, i);
            break;
        case S_TEXT:
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                return s_fail(rej, S_BAD, "%s.%s: control byte 0x%02x at offset %zu", ctx, f, c, i);
            break;
        }
    }
    if (kind == S_TEXT && !s_utf8_ok(p, b.len))
        return s_fail(rej, S_BAD, "%s.%s: not valid UTF-8", ctx, f);
    return 0;
}

static int s_u64(cnd_proto_reject_t *rej, const char *ctx, const char *f, uint64_t v, uint64_t lo,
                 uint64_t hi)
{
    if (v < lo || v > hi) {
        if (v == 0) return s_fail(rej, S_BAD, "%s.%s: missing (0)", ctx, f);
        return s_fail(rej, v > hi ? S_BIG : S_BAD, "%s.%s: %llu outside %llu..%llu", ctx, f,
                      (unsigned long long)v, (unsigned long long)lo, (unsigned long long)hi);
    }
    return 0;
}

/* Finite and in [lo, hi]; lo excluded when lo_open. */
static int s_real(cnd_proto_reject_t *rej, const char *ctx, const char *f, float v, double lo,
                  int lo_open, double hi)
{
    if (!isfinite(v)) return s_fail(rej, S_BAD, "%s.%s: not a finite number", ctx, f);
    if (v < lo || (lo_open && v == lo) || v > hi)
        return s_fail(rej, S_BAD, "%s.%s: %g outside %s%g, %g]", ctx, f, (double)v,
                      lo_open ? "(" : "[", lo, hi);
    return 0;
}

static int s_count(cnd_proto_reject_t *rej, const char *ctx, const char *f, size_t n, size_t lo,
                   size_t hi)
{
    if (n > hi) return s_fail(rej, S_BIG, "%s.%s: %zu entries, limit %zu", ctx, f, n, hi);
    if (n < lo) return s_fail(rej, S_BAD, "%s.%s: %zu entries, at least %zu needed", ctx, f, n, lo);
    return 0;
}

static int s_enum(cnd_proto_reject_t *rej, const char *ctx, const char *f, int v, int lo, int hi)
{
    if (v < lo || v > hi) {
        if (v == 0) return s_fail(rej, S_BAD, "%s.%s: missing (0)", ctx, f);
        return s_fail(rej, S_BAD, "%s.%s: unknown value %d", ctx, f, v);
    }
    return 0;
}

static int s_present(cnd_proto_reject_t *rej, const char *ctx, const char *f, const void *p)
{
    if (!p) return s_fail(rej, S_BAD, "%s.%s: missing", ctx, f);
    return 0;
}

/* A set of participant ids 0..CND_PROTO_MAX_PARTICIPANTS-1, to find duplicates in O(n). */
typedef struct {
    uint8_t bits[CND_PROTO_MAX_PARTICIPANTS / 8];
} s_idset_t;

/* Returns 1 if id was already in the set, then adds it. id must be in range. */
static int s_idset_add(s_idset_t *s, uint32_t id)
{
    uint8_t m = (uint8_t)(1u << (id & 7));
    int had = (s->bits[id >> 3] & m) != 0;
    s->bits[id >> 3] |= m;
    return had;
}

/* Participant ids are SecAgg+ client indices: 0-based. */
static int s_pid(cnd_proto_reject_t *rej, const char *ctx, const char *f, uint32_t id)
{
    if (id >= CND_PROTO_MAX_PARTICIPANTS)
        return s_fail(rej, S_BIG, "%s.%s: %u outside 0..%d", ctx, f, id,
                      CND_PROTO_MAX_PARTICIPANTS - 1);
    return 0;
}

#define S_TRY(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_) return rc_;                                                                       \
    } while (0)

/* A double in a range, open or closed at the bottom (the DpSgd fields). */
static int s_dbl(cnd_proto_reject_t *rej, const char *ctx, const char *f, double v, double lo,
                 int lo_open, double hi)
{
    if (!isfinite(v)) return s_fail(rej, S_BAD, "%s.%s: not a finite number", ctx, f);
    if (v < lo || (lo_open && v == lo) || v > hi)
        return s_fail(rej, S_BAD, "%s.%s: %g outside %s%g, %g]", ctx, f, v, lo_open ? "(" : "[", lo,
                      hi);
    return 0;
}

/* Recipe.dp (DP-SGD at the sites): ranges, and no QAT (its hooks cannot run under DP-SGD). */
static int s_dp(cnd_proto_reject_t *rej, const Condenser__Recipe *r)
{
    const Condenser__DpSgd *d = r->dp;
    const char *c = "job_spec.recipe.dp";
    S_TRY(s_dbl(rej, c, "noise_multiplier", d->noise_multiplier, 0, 1, 1e4));
    S_TRY(s_dbl(rej, c, "clip", d->clip, 0, 1, 1e6));
    S_TRY(s_dbl(rej, c, "delta", d->delta, 0, 1, 0.01));
    S_TRY(s_dbl(rej, c, "target_epsilon", d->target_epsilon, 0, 0, 1e6));
    S_TRY(s_u64(rej, c, "assumed_samples", d->assumed_samples, 0, (uint64_t)1 << 40));
    S_TRY(s_u64(rej, c, "mode", d->mode, 0, 1));
    if (d->mode == 1) { /* distributed: min_survivors is checked against the job's sites in
                           cnd_job_check */
        S_TRY(s_u64(rej, c, "min_survivors", d->min_survivors, 1, 65535));
        return 0;
    }
    /* DP-SGD: QAT rounds train under it too (compress/dpsgd.h, proto/job_dp.h) */
    S_TRY(s_u64(rej, c, "min_survivors", d->min_survivors, 0, 0));
    return 0;
}

/* DER certificates start with a SEQUENCE tag. Full parsing is crypto/'s job. */
static int s_cert(cnd_proto_reject_t *rej, const char *ctx, ProtobufCBinaryData b)
{
    S_TRY(s_blob(rej, ctx, "certificate", b, 1, CND_PROTO_CERT_MAX));
    if (b.data[0] != 0x30)
        return s_fail(rej, S_BAD, "%s.certificate: not DER (first byte 0x%02x, expected 0x30)", ctx,
                      b.data[0]);
    return 0;
}

static int s_deadlines(cnd_proto_reject_t *rej, const char *ctx, const Condenser__Deadlines *d)
{
    char c[96];
    S_TRY(s_present(rej, ctx, "deadlines", d));
    snprintf(c, sizeof c, "%s.deadlines", ctx);
    S_TRY(s_u64(rej, c, "advertise_ms", d->advertise_ms, CND_PROTO_DEADLINE_MIN_MS,
                CND_PROTO_DEADLINE_MAX_MS));
    S_TRY(s_u64(rej, c, "share_ms", d->share_ms, CND_PROTO_DEADLINE_MIN_MS,
                CND_PROTO_DEADLINE_MAX_MS));
    S_TRY(s_u64(rej, c, "masked_input_ms", d->masked_input_ms, CND_PROTO_DEADLINE_MIN_MS,
                CND_PROTO_DEADLINE_MAX_MS));
    S_TRY(s_u64(rej, c, "unmask_ms", d->unmask_ms, CND_PROTO_DEADLINE_MIN_MS,
                CND_PROTO_DEADLINE_MAX_MS));
    return 0;
}

/* --- payloads ----------------------------------------------------------------------------- */

int cnd_proto_validate_hello(cnd_proto_reject_t *rej, const Condenser__Hello *m)
{
    const char *c = "hello";
    S_TRY(s_text(rej, c, "node_name", m->node_name, 1, CND_PROTO_NAME_MAX, S_NAME));
    S_TRY(
        s_enum(rej, c, "role", m->role, CONDENSER__ROLE__ROLE_SITE, CONDENSER__ROLE__ROLE_AUDITOR));
    S_TRY(s_fixed(rej, c, "identity_key", m->identity_key, CND_PROTO_KEY_BYTES));
    S_TRY(s_nonzero_key(rej, c, "identity_key", m->identity_key));
    S_TRY(s_cert(rej, c, m->certificate));
    S_TRY(s_count(rej, c, "capabilities", m->n_capabilities, 0, CND_PROTO_CAPS_MAX));
    for (size_t i = 0; i < m->n_capabilities; i++) {
        char f[48];
        snprintf(f, sizeof f, "capabilities[%zu]", i);
        S_TRY(s_text(rej, c, f, m->capabilities[i], 1, CND_PROTO_CAP_MAX, S_TOKEN));
        for (size_t j = 0; j < i; j++)
            if (m->capabilities[j].len == m->capabilities[i].len &&
                memcmp(m->capabilities[j].data, m->capabilities[i].data, m->capabilities[i].len) ==
                    0)
                return s_fail(rej, S_BAD, "%s.%s: duplicate of capabilities[%zu]", c, f, j);
    }
    S_TRY(s_u64(rej, c, "min_version", m->min_version, 1, 65535));
    S_TRY(s_u64(rej, c, "max_version", m->max_version, m->min_version, 65535));
    S_TRY(s_text(rej, c, "software", m->software, 0, CND_PROTO_NAME_MAX, S_TEXT));
    return 0;
}

int cnd_proto_validate_hello_ack(cnd_proto_reject_t *rej, const Condenser__HelloAck *m)
{
    const char *c = "hello_ack";
    S_TRY(s_text(rej, c, "coordinator_name", m->coordinator_name, 1, CND_PROTO_NAME_MAX, S_NAME));
    S_TRY(s_u64(rej, c, "version", m->version, 1, 65535));
    S_TRY(s_u64(rej, c, "heartbeat_ms", m->heartbeat_ms, 100, 3600000));
    S_TRY(s_u64(rej, c, "max_message", m->max_message, CND_PROTO_CHUNK_MAX + 4096,
                CND_PROTO_MAX_MSG));
    S_TRY(s_u64(rej, c, "chunk_size", m->chunk_size, CND_PROTO_CHUNK_MIN, CND_PROTO_CHUNK_MAX));
    return 0;
}

int cnd_proto_validate_object_info(cnd_proto_reject_t *rej, const char *ctx,
                                   const Condenser__ObjectInfo *m)
{
    S_TRY(s_fixed(rej, ctx, "digest", m->digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_u64(rej, ctx, "total_size", m->total_size, 1, CND_PROTO_OBJECT_MAX));
    S_TRY(s_u64(rej, ctx, "chunk_size", m->chunk_size, CND_PROTO_CHUNK_MIN, CND_PROTO_CHUNK_MAX));
    uint64_t want = (m->total_size + m->chunk_size - 1) / m->chunk_size;
    if (m->chunk_count != want)
        return s_fail(rej, S_BAD, "%s.chunk_count: %u, but %llu bytes in %u-byte chunks need %llu",
                      ctx, m->chunk_count, (unsigned long long)m->total_size, m->chunk_size,
                      (unsigned long long)want);
    return 0;
}

int cnd_proto_validate_job_spec(cnd_proto_reject_t *rej, const Condenser__JobSpec *m)
{
    const char *c = "job_spec";
    S_TRY(s_u64(rej, c, "job_id", m->job_id, 1, UINT64_MAX));
    S_TRY(s_text(rej, c, "name", m->name, 0, CND_PROTO_NAME_MAX, S_TEXT));

    S_TRY(s_present(rej, c, "student", m->student));
    const Condenser__StudentSpec *st = m->student;
    S_TRY(s_text(rej, "job_spec.student", "arch", st->arch, 1, CND_PROTO_ARCH_MAX, S_TEXT));
    if (st->n_input_shape != 3)
        return s_fail(rej, st->n_input_shape > 3 ? S_BIG : S_BAD,
                      "job_spec.student.input_shape: %zu dimensions, expected 3 (C, H, W)",
                      st->n_input_shape);
    for (size_t i = 0; i < 3; i++) {
        char f[32];
        snprintf(f, sizeof f, "input_shape[%zu]", i);
        S_TRY(s_u64(rej, "job_spec.student", f, st->input_shape[i], 1, 65535));
    }
    uint64_t elems = (uint64_t)st->input_shape[0] * st->input_shape[1] * st->input_shape[2];
    if (elems > (1u << 24))
        return s_fail(rej, S_BIG, "job_spec.student.input_shape: %llu values per sample, limit %u",
                      (unsigned long long)elems, 1u << 24);
    S_TRY(s_u64(rej, "job_spec.student", "num_classes", st->num_classes, 2, 65535));
    if (st->n_class_names && st->n_class_names != st->num_classes)
        return s_fail(rej, st->n_class_names > st->num_classes ? S_BIG : S_BAD,
                      "job_spec.student.class_names: %zu names for %u classes", st->n_class_names,
                      st->num_classes);
    for (size_t i = 0; i < st->n_class_names; i++) {
        char f[40];
        snprintf(f, sizeof f, "class_names[%zu]", i);
        ProtobufCBinaryData b = st->class_names[i];
        S_TRY(s_text(rej, "job_spec.student", f, b, 1, CND_CLASS_NAME_MAX, S_TEXT));
        if (memchr(b.data, ',', b.len) || memchr(b.data, '\n', b.len) ||
            memchr(b.data, '\t', b.len))
            return s_fail(rej, S_BAD, "job_spec.student.%s: a comma or a line break in a name", f);
        for (size_t j = 0; j < i; j++)
            if (st->class_names[j].len == b.len && !memcmp(st->class_names[j].data, b.data, b.len))
                return s_fail(rej, S_BAD, "job_spec.student.%s: same name as class_names[%zu]", f,
                              j);
    }

    S_TRY(s_u64(rej, c, "rounds", m->rounds, 1, CND_PROTO_MAX_ROUNDS));
    S_TRY(s_present(rej, c, "recipe", m->recipe));
    const Condenser__Recipe *r = m->recipe;
    const char *rcx = "job_spec.recipe";
    S_TRY(s_real(rej, rcx, "temperature", r->temperature, 0, 1, 100));
    S_TRY(s_real(rej, rcx, "alpha", r->alpha, 0, 0, 1));
    S_TRY(s_u64(rej, rcx, "qat_rounds", r->qat_rounds, 0, m->rounds));
    S_TRY(s_u64(rej, rcx, "weight_bits", r->weight_bits, 2, 8));
    S_TRY(s_u64(rej, rcx, "activation_bits", r->activation_bits, 2, 8));
    S_TRY(s_u64(rej, rcx, "local_epochs", r->local_epochs, 1, 1000));
    S_TRY(s_u64(rej, rcx, "batch_size", r->batch_size, 1, 65536));
    S_TRY(s_real(rej, rcx, "learning_rate", r->learning_rate, 0, 1, 10));
    if (r->dp) S_TRY(s_dp(rej, r));

    /* Secure aggregation needs at least two sites: with one, the sum is that site's update. */
    S_TRY(s_u64(rej, c, "sites_per_round", m->sites_per_round, 2, CND_PROTO_MAX_PARTICIPANTS));
    S_TRY(s_present(rej, c, "secagg", m->secagg));
    const Condenser__SecAggParams *sa = m->secagg;
    const char *sc = "job_spec.secagg";
    if (sa->threshold != 0)
        S_TRY(s_u64(rej, sc, "threshold", sa->threshold, 2, m->sites_per_round));
    S_TRY(
        s_u64(rej, c, "quorum", m->quorum, sa->threshold ? sa->threshold : 2, m->sites_per_round));
    S_TRY(s_u64(rej, sc, "ring_bits", sa->ring_bits, 1, CND_PROTO_MAX_BITS));
    {
        /* The graph and threshold rules are crypto/'s (t a strict majority of each
         * neighbourhood, an even degree or the complete graph): ask it, for a full round. */
        cnd_secagg_params_t p;
        memset(&p, 0, sizeof p);
        p.n = m->sites_per_round;
        p.degree = sa->neighbours;
        p.threshold = sa->threshold;
        p.min_survivors = m->quorum;
        p.len = 1;
        p.bits = sa->ring_bits;
        if (cnd_secagg_params_fill(&p) != 0) {
            char why[400];
            snprintf(why, sizeof why, "%s", cnd_err_detail());
            return s_fail(rej, S_BAD, "%s (threshold %u, neighbours %u, quorum %u, sites %u): %s",
                          sc, sa->threshold, sa->neighbours, m->quorum, m->sites_per_round, why);
        }
    }
    S_TRY(s_real(rej, sc, "clip", sa->clip, 0, 1, 1e30));
    S_TRY(s_real(rej, sc, "l2_clip", sa->l2_clip, 0, 0, 1e30));
    S_TRY(s_u64(rej, sc, "sample_cap", sa->sample_cap, 1, UINT32_MAX));
    S_TRY(s_u64(rej, sc, "value_bits", sa->value_bits, 2, CND_PROTO_MAX_VALUE_BITS));
    S_TRY(s_deadlines(rej, c, m->deadlines));

    switch (m->teacher_case) {
    case CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED:
        S_TRY(s_present(rej, c, "teacher_shipped", m->teacher_shipped));
        S_TRY(cnd_proto_validate_object_info(rej, "job_spec.teacher_shipped", m->teacher_shipped));
        break;
    case CONDENSER__JOB_SPEC__TEACHER_TEACHER_LOCAL:
        S_TRY(s_text(rej, c, "teacher_local", m->teacher_local, 1, CND_PROTO_NAME_MAX, S_NAME));
        break;
    default: return s_fail(rej, S_BAD, "%s.teacher: neither shipped nor local", c);
    }
    /* An ONNX teacher is a shipped one and says how its inputs are preprocessed; the site parses
     * the spec itself (compress/onnx_graph.h) before it runs the teacher. */
    if (m->teacher_format != CONDENSER__TEACHER_FORMAT__TEACHER_CND &&
        m->teacher_format != CONDENSER__TEACHER_FORMAT__TEACHER_ONNX)
        return s_fail(rej, S_BAD, "%s.teacher_format: unknown value %d", c, (int)m->teacher_format);
    if (m->teacher_format == CONDENSER__TEACHER_FORMAT__TEACHER_ONNX) {
        if (m->teacher_case != CONDENSER__JOB_SPEC__TEACHER_TEACHER_SHIPPED)
            return s_fail(rej, S_BAD, "%s.teacher_format: ONNX names a shipped teacher only", c);
        S_TRY(s_text(rej, c, "teacher_preprocess", m->teacher_preprocess, 1, CND_PROTO_PREP_MAX,
                     S_TEXT));
    } else if (m->teacher_preprocess.len) {
        return s_fail(rej, S_BAD, "%s.teacher_preprocess: set without an ONNX teacher", c);
    }
    return 0;
}

int cnd_proto_validate_job_announce(cnd_proto_reject_t *rej, const Condenser__JobAnnounce *m)
{
    S_TRY(s_present(rej, "job_announce", "spec", m->spec));
    return cnd_proto_validate_job_spec(rej, m->spec);
}

int cnd_proto_validate_job_response(cnd_proto_reject_t *rej, const Condenser__JobResponse *m)
{
    return s_text(rej, "job_response", "reason", m->reason, m->accept ? 0 : 1, CND_PROTO_TEXT_MAX,
                  S_TEXT);
}

int cnd_proto_validate_round_start(cnd_proto_reject_t *rej, const Condenser__RoundStart *m)
{
    const char *c = "round_start";
    S_TRY(s_present(rej, c, "model", m->model));
    S_TRY(cnd_proto_validate_object_info(rej, "round_start.model", m->model));
    S_TRY(s_u64(rej, c, "participants", m->participants, 2, CND_PROTO_MAX_PEERS + 1));
    if (m->participant_id >= m->participants)
        return s_fail(rej, S_BAD, "%s.participant_id: %u, but only %u participants", c,
                      m->participant_id, m->participants);
    S_TRY(s_deadlines(rej, c, m->deadlines));
    S_TRY(s_u64(rej, c, "candidates", m->candidates, 0, CND_PROTO_MAX_CANDIDATES));
    if (m->candidates && m->qat)
        return s_fail(rej, S_BAD, "%s.qat: set in an evaluation round (%u candidates)", c,
                      m->candidates);
    S_TRY(s_blob(rej, c, "secagg_params", m->secagg_params, 1, CND_PROTO_SECAGG_PARAMS_MAX));
    cnd_secagg_params_t p;
    if (cnd_secagg_params_decode(&p, m->secagg_params.data, m->secagg_params.len) != 0) {
        char why[400];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        return s_fail(rej, S_BAD, "%s.secagg_params: %s", c, why);
    }
    if (p.n != m->participants)
        return s_fail(rej, S_BAD, "%s.secagg_params: n = %u, but participants = %u", c, p.n,
                      m->participants);
    /* Every other participant: n - 1 of them. */
    uint32_t want = p.n - 1;
    S_TRY(s_count(rej, c, "peers", m->n_peers, 1, CND_PROTO_MAX_PEERS));
    if (m->n_peers != want)
        return s_fail(rej, S_BAD, "%s.peers: %zu entries, expected every other participant (%u)", c,
                      m->n_peers, want);
    s_idset_t *seen = calloc(1, sizeof *seen);
    if (!seen) return cnd_errf(CND_ENOMEM, "validating round_start: out of memory");
    int rc = 0;
    for (size_t i = 0; i < m->n_peers && !rc; i++) {
        char e[64];
        snprintf(e, sizeof e, "round_start.peers[%zu]", i);
        const Condenser__PeerCert *pc = m->peers[i];
        if (pc->participant_id >= m->participants || pc->participant_id == m->participant_id)
            rc = s_fail(rej, S_BAD, "%s.participant_id: %u is not another participant", e,
                        pc->participant_id);
        else if (s_idset_add(seen, pc->participant_id))
            rc = s_fail(rej, S_BAD, "%s.participant_id: %u listed twice", e, pc->participant_id);
        if (!rc) rc = s_text(rej, e, "node_name", pc->node_name, 1, CND_PROTO_NAME_MAX, S_NAME);
        if (!rc) rc = s_cert(rej, e, pc->certificate);
    }
    free(seen);
    return rc;
}

int cnd_proto_validate_chunk(cnd_proto_reject_t *rej, const Condenser__Chunk *m)
{
    const char *c = "chunk";
    S_TRY(s_enum(rej, c, "kind", m->kind, CONDENSER__OBJECT_KIND__OBJ_MODEL,
                 CONDENSER__OBJECT_KIND__OBJ_ARTIFACT));
    S_TRY(s_fixed(rej, c, "object_digest", m->object_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_u64(rej, c, "index", m->index, 0, CND_PROTO_OBJECT_MAX / CND_PROTO_CHUNK_MIN - 1));
    S_TRY(s_u64(rej, c, "offset", m->offset, 0, CND_PROTO_OBJECT_MAX - 1));
    if (m->offset < (uint64_t)m->index * CND_PROTO_CHUNK_MIN ||
        m->offset > (uint64_t)m->index * CND_PROTO_CHUNK_MAX)
        return s_fail(rej, S_BAD, "chunk.offset: %llu cannot be chunk %u of any allowed size",
                      (unsigned long long)m->offset, m->index);
    S_TRY(s_blob(rej, c, "data", m->data, 1, CND_PROTO_CHUNK_MAX));
    S_TRY(s_fixed(rej, c, "sha256", m->sha256, CND_PROTO_DIGEST_BYTES));
    return 0;
}

/* A crypto/secagg.h message carried in `field`: the header must name the expected type, and
 * from/to must match the direction (from_id: the sender's participant id, or
 * CND_SECAGG_SERVER for the coordinator; messages to the coordinator are addressed to it).
 * Every SecAgg+ message type has its own envelope type, so the phase checks see which exchange
 * a message belongs to without opening it. */
static int s_secagg(cnd_proto_reject_t *rej, const char *ctx, const char *f, ProtobufCBinaryData b,
                    uint8_t type, uint32_t from_id)
{
    S_TRY(s_blob(rej, ctx, f, b, CND_SECAGG_HDR_BYTES, CND_PROTO_SECAGG_MAX));
    cnd_secagg_hdr_t h;
    if (cnd_secagg_peek(&h, b.data, b.len) != 0)
        return s_fail(rej, S_BAD, "%s.%s: not a secure-aggregation message", ctx, f);
    if (h.type != type)
        return s_fail(rej, S_BAD, "%s.%s: message type %u, expected %u", ctx, f, h.type, type);
    if (h.from != from_id)
        return s_fail(rej, S_BAD, "%s.%s: header sender %u, expected %u", ctx, f, h.from, from_id);
    if (from_id != CND_SECAGG_SERVER && h.to != CND_SECAGG_SERVER)
        return s_fail(rej, S_BAD, "%s.%s: addressed to %u, not to the coordinator", ctx, f, h.to);
    if (from_id == CND_SECAGG_SERVER && h.to == CND_SECAGG_SERVER)
        return s_fail(rej, S_BAD, "%s.%s: addressed to the coordinator itself", ctx, f);
    return 0;
}

int cnd_proto_validate_advertise_keys(cnd_proto_reject_t *rej, const Condenser__AdvertiseKeys *m)
{
    S_TRY(s_pid(rej, "advertise_keys", "participant_id", m->participant_id));
    return s_secagg(rej, "advertise_keys", "advert", m->advert, CND_SECAGG_ADVERT,
                    m->participant_id);
}

int cnd_proto_validate_key_roster(cnd_proto_reject_t *rej, const Condenser__KeyRoster *m)
{
    return s_secagg(rej, "key_roster", "keys", m->keys, CND_SECAGG_KEYS, CND_SECAGG_SERVER);
}

int cnd_proto_validate_share_keys(cnd_proto_reject_t *rej, const Condenser__ShareKeys *m)
{
    S_TRY(s_pid(rej, "share_keys", "participant_id", m->participant_id));
    return s_secagg(rej, "share_keys", "shares", m->shares, CND_SECAGG_SHARES, m->participant_id);
}

int cnd_proto_validate_shares_relay(cnd_proto_reject_t *rej, const Condenser__SharesRelay *m)
{
    return s_secagg(rej, "shares_relay", "shares_for", m->shares_for, CND_SECAGG_SHARES_FOR,
                    CND_SECAGG_SERVER);
}

int cnd_proto_validate_masked_input(cnd_proto_reject_t *rej, const Condenser__MaskedInput *m)
{
    const char *c = "masked_input";
    S_TRY(s_present(rej, c, "vector", m->vector));
    S_TRY(cnd_proto_validate_object_info(rej, "masked_input.vector", m->vector));
    S_TRY(s_u64(rej, c, "bit_width", m->bit_width, 1, CND_PROTO_MAX_BITS));
    S_TRY(s_u64(rej, c, "length", m->length, 1, UINT32_MAX));
    /* cannot overflow: length < 2^32 and bit_width <= 32 */
    uint64_t bytes = CND_PROTO_MASKED_HDR + (m->length * m->bit_width + 7) / 8;
    if (bytes != m->vector->total_size)
        return s_fail(rej, S_BAD,
                      "%s.vector.total_size: %llu bytes, but a MASKED message of %llu values of "
                      "%u bits has %llu",
                      c, (unsigned long long)m->vector->total_size, (unsigned long long)m->length,
                      m->bit_width, (unsigned long long)bytes);
    S_TRY(s_pid(rej, c, "participant_id", m->participant_id));
    return 0;
}

int cnd_proto_validate_consistency_request(cnd_proto_reject_t *rej,
                                           const Condenser__ConsistencyRequest *m)
{
    return s_secagg(rej, "consistency_request", "request", m->request, CND_SECAGG_CONSIST_REQ,
                    CND_SECAGG_SERVER);
}

int cnd_proto_validate_consistency(cnd_proto_reject_t *rej, const Condenser__Consistency *m)
{
    S_TRY(s_pid(rej, "consistency", "participant_id", m->participant_id));
    return s_secagg(rej, "consistency", "consistency", m->consistency, CND_SECAGG_CONSIST,
                    m->participant_id);
}

int cnd_proto_validate_unmask_request(cnd_proto_reject_t *rej, const Condenser__UnmaskRequest *m)
{
    return s_secagg(rej, "unmask_request", "request", m->request, CND_SECAGG_UNMASK_REQ,
                    CND_SECAGG_SERVER);
}

int cnd_proto_validate_unmask_response(cnd_proto_reject_t *rej, const Condenser__UnmaskResponse *m)
{
    S_TRY(s_pid(rej, "unmask_response", "participant_id", m->participant_id));
    return s_secagg(rej, "unmask_response", "unmask", m->unmask, CND_SECAGG_UNMASK,
                    m->participant_id);
}

int cnd_proto_validate_metrics(cnd_proto_reject_t *rej, const Condenser__Metrics *m)
{
    const char *c = "metrics";
    S_TRY(s_u64(rej, c, "train_ms", m->train_ms, 0, (uint64_t)1 << 31));
    return 0;
}

int cnd_proto_validate_round_end(cnd_proto_reject_t *rej, const Condenser__RoundEnd *m)
{
    const char *c = "round_end";
    S_TRY(s_enum(rej, c, "outcome", m->outcome, CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED,
                 CONDENSER__ROUND_OUTCOME__OUTCOME_RETRY));
    int done = m->outcome == CONDENSER__ROUND_OUTCOME__OUTCOME_COMPLETED;
    if (done)
        S_TRY(s_fixed(rej, c, "model_digest", m->model_digest, CND_PROTO_DIGEST_BYTES));
    else
        S_TRY(s_opt_fixed(rej, c, "model_digest", m->model_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_u64(rej, c, "survivors", m->survivors, done ? 2 : 0, CND_PROTO_MAX_PARTICIPANTS));
    S_TRY(s_text(rej, c, "reason", m->reason, done ? 0 : 1, CND_PROTO_TEXT_MAX, S_TEXT));
    return 0;
}

int cnd_proto_validate_heartbeat(cnd_proto_reject_t *rej, const Condenser__Heartbeat *m)
{
    (void)rej;
    (void)m;
    return 0; /* unix_ms is informative; any value is acceptable */
}

int cnd_proto_validate_error(cnd_proto_reject_t *rej, const Condenser__Error *m)
{
    const char *c = "error";
    S_TRY(s_enum(rej, c, "code", m->code, CONDENSER__ERROR_CODE__ERR_BAD_VERSION,
                 CONDENSER__ERROR_CODE__ERR_INTERNAL));
    S_TRY(s_text(rej, c, "text", m->text, 1, CND_PROTO_TEXT_MAX, S_TEXT));
    if (m->ref_type != 0)
        S_TRY(s_enum(rej, c, "ref_type", m->ref_type, CONDENSER__MSG_TYPE__MSG_HELLO,
                     CONDENSER__MSG_TYPE__MSG_CONSISTENCY));
    return 0;
}

int cnd_proto_validate_device_profile(cnd_proto_reject_t *rej, const Condenser__DeviceProfile *m)
{
    const char *c = "device_profile";
    S_TRY(s_count(rej, c, "labels", m->n_labels, 0, CND_PROTO_LABELS_MAX));
    for (size_t i = 0; i < m->n_labels; i++) {
        char e[64];
        snprintf(e, sizeof e, "device_profile.labels[%zu]", i);
        const Condenser__Label *l = m->labels[i];
        S_TRY(s_text(rej, e, "key", l->key, 1, CND_PROTO_LABEL_KEY_MAX, S_TOKEN));
        S_TRY(s_text(rej, e, "value", l->value, 0, CND_PROTO_LABEL_VALUE_MAX, S_TEXT));
        for (size_t j = 0; j < i; j++)
            if (m->labels[j]->key.len == l->key.len &&
                memcmp(m->labels[j]->key.data, l->key.data, l->key.len) == 0)
                return s_fail(rej, S_BAD, "%s.key: same key as labels[%zu]", e, j);
    }
    S_TRY(s_text(rej, c, "hardware_class", m->hardware_class, 1, CND_PROTO_NAME_MAX, S_NAME));
    if (m->cpu_class.len)
        S_TRY(s_text(rej, c, "cpu_class", m->cpu_class, 1, CND_PROTO_NAME_MAX, S_NAME));
    S_TRY(s_u64(rej, c, "ram_bytes", m->ram_bytes, 1, UINT64_MAX));
    S_TRY(s_u64(rej, c, "flash_bytes", m->flash_bytes, 1, UINT64_MAX));
    S_TRY(s_opt_fixed(rej, c, "running_digest", m->running_digest, CND_PROTO_DIGEST_BYTES));
    if (!m->running_digest.len && m->running_sequence)
        return s_fail(rej, S_BAD, "%s.running_sequence: set without running_digest", c);
    S_TRY(s_text(rej, c, "runtime", m->runtime, 0, CND_PROTO_NAME_MAX, S_TEXT));
    return 0;
}

/* A crypto/manifest.h signed envelope; its body is parsed with crypto/'s own decoder (the
 * signature is the device's to verify, against the federation key it trusts) and cross-checked
 * with the message: digest, exact length, and the rollback flag. */
static int s_manifest(cnd_proto_reject_t *rej, const char *ctx, ProtobufCBinaryData b,
                      ProtobufCBinaryData digest, const uint64_t *size, int rollback)
{
    S_TRY(s_blob(rej, ctx, "manifest", b, 1, CND_PROTO_MANIFEST_MAX));
    cnd_manifest_t m;
    if (cnd_manifest_decode_signed(&m, b.data, b.len) != 0) {
        char why[400];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        return s_fail(rej, S_BAD, "%s.manifest: %s", ctx, why);
    }
    if (memcmp(m.digest, digest.data, CND_PROTO_DIGEST_BYTES) != 0)
        return s_fail(rej, S_BAD, "%s: the digest differs from the manifest's", ctx);
    if (size && m.length != *size)
        return s_fail(rej, S_BAD, "%s.artifact_size: %llu, the manifest says %llu", ctx,
                      (unsigned long long)*size, (unsigned long long)m.length);
    if (((m.flags & CND_MANIFEST_ROLLBACK) != 0) != (rollback != 0))
        return s_fail(rej, S_BAD, "%s.rollback: %s, the manifest %s the rollback flag", ctx,
                      rollback ? "true" : "false",
                      (m.flags & CND_MANIFEST_ROLLBACK) ? "has" : "lacks");
    return 0;
}

int cnd_proto_check_artifact_url(const char *s, size_t len)
{
    size_t pre = 0;
    if (len >= 7 && memcmp(s, "http://", 7) == 0)
        pre = 7;
    else if (len >= 8 && memcmp(s, "https://", 8) == 0)
        pre = 8;
    else
        return cnd_errf(CND_EINVAL, "artifact URL must start with http:// or https://");
    if (len > CND_PROTO_URL_MAX)
        return cnd_errf(CND_EINVAL, "artifact URL is %zu bytes, more than %u", len,
                        CND_PROTO_URL_MAX);
    if (len == pre || s[pre] == '/') return cnd_errf(CND_EINVAL, "artifact URL has no host");
    if (s[len - 1] == '/')
        return cnd_errf(CND_EINVAL, "artifact URL ends with '/' (give the base; the device adds "
                                    "\"/\" and the digest)");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\'' || ch == '#' || ch == '?' ||
            ch == '\\' || ch == '<' || ch == '>')
            return cnd_errf(CND_EINVAL, "artifact URL has a forbidden byte 0x%02x at %zu", ch, i);
    }
    return 0;
}

int cnd_proto_validate_artifact_offer(cnd_proto_reject_t *rej, const Condenser__ArtifactOffer *m)
{
    const char *c = "artifact_offer";
    S_TRY(s_u64(rej, c, "rollout_id", m->rollout_id, 1, UINT64_MAX));
    S_TRY(s_fixed(rej, c, "artifact_digest", m->artifact_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_u64(rej, c, "artifact_size", m->artifact_size, 1, CND_PROTO_OBJECT_MAX));
    S_TRY(s_u64(rej, c, "chunk_size", m->chunk_size, CND_PROTO_CHUNK_MIN, CND_PROTO_CHUNK_MAX));
    if (m->artifact_url.len &&
        cnd_proto_check_artifact_url((const char *)m->artifact_url.data, m->artifact_url.len)) {
        char why[200];
        snprintf(why, sizeof why, "%s", cnd_err_detail());
        cnd_err_clear();
        return s_fail(rej, S_BAD, "%s.artifact_url: %s", c, why);
    }
    return s_manifest(rej, c, m->manifest, m->artifact_digest, &m->artifact_size, m->rollback);
}

int cnd_proto_validate_artifact_chunk_request(cnd_proto_reject_t *rej,
                                              const Condenser__ArtifactChunkRequest *m)
{
    const char *c = "artifact_chunk_request";
    S_TRY(s_fixed(rej, c, "artifact_digest", m->artifact_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_u64(rej, c, "offset", m->offset, 0, CND_PROTO_OBJECT_MAX - 1));
    S_TRY(s_u64(rej, c, "length", m->length, 1, CND_PROTO_CHUNK_MAX));
    return 0;
}

int cnd_proto_validate_activation_report(cnd_proto_reject_t *rej,
                                         const Condenser__ActivationReport *m)
{
    const char *c = "activation_report";
    S_TRY(s_fixed(rej, c, "artifact_digest", m->artifact_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_enum(rej, c, "state", m->state, CONDENSER__ACTIVATION_STATE__ACT_DOWNLOADING,
                 CONDENSER__ACTIVATION_STATE__ACT_REFUSED));
    int bad = m->state == CONDENSER__ACTIVATION_STATE__ACT_FAILED ||
              m->state == CONDENSER__ACTIVATION_STATE__ACT_REFUSED;
    S_TRY(s_text(rej, c, "reason", m->reason, bad ? 1 : 0, CND_PROTO_TEXT_MAX, S_TEXT));
    if (m->state == CONDENSER__ACTIVATION_STATE__ACT_HEALTHY && !m->self_test_passed)
        return s_fail(rej, S_BAD, "%s.self_test_passed: false in a HEALTHY report", c);
    S_TRY(s_opt_fixed(rej, c, "active_digest", m->active_digest, CND_PROTO_DIGEST_BYTES));
    if (!m->active_digest.len && m->active_sequence)
        return s_fail(rej, S_BAD, "%s.active_sequence: set without active_digest", c);
    return 0;
}

int cnd_proto_validate_rollback(cnd_proto_reject_t *rej, const Condenser__Rollback *m)
{
    const char *c = "rollback";
    S_TRY(s_u64(rej, c, "rollout_id", m->rollout_id, 1, UINT64_MAX));
    S_TRY(s_fixed(rej, c, "target_digest", m->target_digest, CND_PROTO_DIGEST_BYTES));
    S_TRY(s_text(rej, c, "reason", m->reason, 0, CND_PROTO_TEXT_MAX, S_TEXT));
    return s_manifest(rej, c, m->manifest, m->target_digest, NULL, 1);
}

/* --- envelope ----------------------------------------------------------------------------- */

typedef enum {
    S_JOB_NONE,  /* job_id and round are not checked */
    S_JOB,       /* job_id != 0 */
    S_JOB_ROUND, /* job_id != 0 and round >= 1 */
} s_scope_t;

static s_scope_t s_scope(const Condenser__Envelope *env)
{
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE:
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE: return S_JOB;
    case CONDENSER__MSG_TYPE__MSG_ROUND_START:
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS:
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY:
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE:
    case CONDENSER__MSG_TYPE__MSG_METRICS:
    case CONDENSER__MSG_TYPE__MSG_ROUND_END: return S_JOB_ROUND;
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        if (!env->chunk) return S_JOB_NONE;
        switch (env->chunk->kind) {
        case CONDENSER__OBJECT_KIND__OBJ_MODEL:
        case CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT: return S_JOB_ROUND;
        case CONDENSER__OBJECT_KIND__OBJ_TEACHER: return S_JOB;
        default: return S_JOB_NONE;
        }
    default: return S_JOB_NONE;
    }
}

int cnd_proto_validate(cnd_proto_reject_t *rej, const Condenser__Envelope *env)
{
    const char *c = "envelope";
    if (rej) {
        rej->code = S_BAD;
        rej->seq = env->seq;
        rej->type = env->type;
    }
    if (env->version != CND_PROTO_VERSION) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_BAD_VERSION;
        return cnd_errf(CND_EPROTO, "envelope.version: %u, this node speaks version %d",
                        env->version, CND_PROTO_VERSION);
    }
    S_TRY(s_enum(rej, c, "type", env->type, CONDENSER__MSG_TYPE__MSG_HELLO,
                 CONDENSER__MSG_TYPE__MSG_CONSISTENCY));
    if (env->payload_case == CONDENSER__ENVELOPE__PAYLOAD__NOT_SET)
        return s_fail(rej, S_BAD, "envelope.payload: missing (type %s)",
                      cnd_proto_type_name(env->type));
    if ((int)env->payload_case != (int)env->type + 15)
        return s_fail(rej, S_BAD, "envelope.payload: field %d does not match type %s (field %d)",
                      (int)env->payload_case, cnd_proto_type_name(env->type), (int)env->type + 15);
    if (!cnd_proto_payload(env)) return s_fail(rej, S_BAD, "envelope.payload: NULL");
    S_TRY(s_text(rej, c, "sender", env->sender, 1, CND_PROTO_NAME_MAX, S_NAME));
    S_TRY(s_u64(rej, c, "seq", env->seq, 1, UINT64_MAX));
    s_scope_t scope = s_scope(env);
    if (scope != S_JOB_NONE) S_TRY(s_u64(rej, c, "job_id", env->job_id, 1, UINT64_MAX));
    if (scope == S_JOB_ROUND) S_TRY(s_u64(rej, c, "round", env->round, 1, CND_PROTO_MAX_ROUNDS));
    if (env->round > CND_PROTO_MAX_ROUNDS)
        return s_fail(rej, S_BAD, "envelope.round: %u over the limit of %d", env->round,
                      CND_PROTO_MAX_ROUNDS);

    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_HELLO: return cnd_proto_validate_hello(rej, env->hello);
    case CONDENSER__MSG_TYPE__MSG_HELLO_ACK:
        return cnd_proto_validate_hello_ack(rej, env->hello_ack);
    case CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE:
        S_TRY(cnd_proto_validate_job_announce(rej, env->job_announce));
        if (env->job_announce->spec->job_id != env->job_id)
            return s_fail(rej, S_BAD, "job_spec.job_id: %llu differs from envelope.job_id %llu",
                          (unsigned long long)env->job_announce->spec->job_id,
                          (unsigned long long)env->job_id);
        return 0;
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE:
        return cnd_proto_validate_job_response(rej, env->job_response);
    case CONDENSER__MSG_TYPE__MSG_ROUND_START:
        return cnd_proto_validate_round_start(rej, env->round_start);
    case CONDENSER__MSG_TYPE__MSG_CHUNK: return cnd_proto_validate_chunk(rej, env->chunk);
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
        return cnd_proto_validate_advertise_keys(rej, env->advertise_keys);
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
        return cnd_proto_validate_key_roster(rej, env->key_roster);
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS:
        return cnd_proto_validate_share_keys(rej, env->share_keys);
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
        return cnd_proto_validate_shares_relay(rej, env->shares_relay);
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
        return cnd_proto_validate_masked_input(rej, env->masked_input);
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
        return cnd_proto_validate_unmask_request(rej, env->unmask_request);
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE:
        return cnd_proto_validate_unmask_response(rej, env->unmask_response);
    case CONDENSER__MSG_TYPE__MSG_METRICS: return cnd_proto_validate_metrics(rej, env->metrics);
    case CONDENSER__MSG_TYPE__MSG_ROUND_END:
        return cnd_proto_validate_round_end(rej, env->round_end);
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT:
        return cnd_proto_validate_heartbeat(rej, env->heartbeat);
    case CONDENSER__MSG_TYPE__MSG_ERROR: return cnd_proto_validate_error(rej, env->error);
    case CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE:
        return cnd_proto_validate_device_profile(rej, env->device_profile);
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER:
        return cnd_proto_validate_artifact_offer(rej, env->artifact_offer);
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST:
        return cnd_proto_validate_artifact_chunk_request(rej, env->artifact_chunk_request);
    case CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT:
        return cnd_proto_validate_activation_report(rej, env->activation_report);
    case CONDENSER__MSG_TYPE__MSG_ROLLBACK: return cnd_proto_validate_rollback(rej, env->rollback);
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
        return cnd_proto_validate_consistency_request(rej, env->consistency_request);
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY:
        return cnd_proto_validate_consistency(rej, env->consistency);
    default: return s_fail(rej, S_BAD, "envelope.type: unknown value %d", (int)env->type);
    }
}

/* --- stateful checks ---------------------------------------------------------------------- */

int cnd_proto_check_sender(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                           const char *user_id)
{
    size_t n = user_id ? strlen(user_id) : 0;
    if (rej) {
        rej->seq = env->seq;
        rej->type = env->type;
    }
    if (n == 0 || env->sender.len != n || memcmp(env->sender.data, user_id, n) != 0) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        return cnd_errf(CND_EPERM,
                        "envelope.sender: does not match the authenticated identity '%s'",
                        user_id ? user_id : "");
    }
    return 0;
}

/* Which roles may send each type; bit (1 << role). */
#define S_R(r) (1u << CONDENSER__ROLE__ROLE_##r)
static unsigned s_roles(const Condenser__Envelope *env)
{
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_HELLO: return S_R(SITE) | S_R(DEVICE) | S_R(AUDITOR);
    case CONDENSER__MSG_TYPE__MSG_HELLO_ACK:
    case CONDENSER__MSG_TYPE__MSG_JOB_ANNOUNCE:
    case CONDENSER__MSG_TYPE__MSG_ROUND_START:
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_ROUND_END:
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER:
    case CONDENSER__MSG_TYPE__MSG_ROLLBACK: return S_R(COORDINATOR);
    case CONDENSER__MSG_TYPE__MSG_JOB_RESPONSE:
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS:
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS:
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY:
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE:
    case CONDENSER__MSG_TYPE__MSG_METRICS: return S_R(SITE);
    case CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE:
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT: return S_R(DEVICE);
    case CONDENSER__MSG_TYPE__MSG_HEARTBEAT:
    case CONDENSER__MSG_TYPE__MSG_ERROR:
        return S_R(SITE) | S_R(DEVICE) | S_R(COORDINATOR) | S_R(AUDITOR);
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        if (env->chunk && env->chunk->kind == CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT)
            return S_R(SITE);
        return S_R(COORDINATOR);
    default: return 0;
    }
}
#undef S_R

int cnd_proto_check_role(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                         Condenser__Role sender_role)
{
    if (rej) {
        rej->seq = env->seq;
        rej->type = env->type;
    }
    unsigned ok = s_roles(env);
    if ((unsigned)sender_role >= 32 || !(ok & (1u << sender_role))) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_UNAUTHORIZED;
        return cnd_errf(CND_EPERM, "%s: not accepted from a node with role %d",
                        cnd_proto_type_name(env->type), (int)sender_role);
    }
    return 0;
}

const char *cnd_phase_name(cnd_phase_t p)
{
    static const char *const names[] = {"idle",        "advertise", "share", "masked_input",
                                        "consistency", "unmask",    "done"};
    if ((unsigned)p < sizeof names / sizeof names[0]) return names[p];
    return "unknown";
}

cnd_phase_t cnd_proto_phase_of(const Condenser__Envelope *env)
{
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_ROUND_START:
    case CONDENSER__MSG_TYPE__MSG_ADVERTISE_KEYS: return CND_PHASE_ADVERTISE;
    case CONDENSER__MSG_TYPE__MSG_KEY_ROSTER:
    case CONDENSER__MSG_TYPE__MSG_SHARE_KEYS: return CND_PHASE_SHARE;
    case CONDENSER__MSG_TYPE__MSG_SHARES_RELAY:
    case CONDENSER__MSG_TYPE__MSG_MASKED_INPUT:
    case CONDENSER__MSG_TYPE__MSG_METRICS: return CND_PHASE_MASKED;
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_CONSISTENCY: return CND_PHASE_CONSISTENCY;
    case CONDENSER__MSG_TYPE__MSG_UNMASK_REQUEST:
    case CONDENSER__MSG_TYPE__MSG_UNMASK_RESPONSE: return CND_PHASE_UNMASK;
    case CONDENSER__MSG_TYPE__MSG_ROUND_END: return CND_PHASE_DONE;
    case CONDENSER__MSG_TYPE__MSG_CHUNK:
        if (!env->chunk) return CND_PHASE_IDLE;
        if (env->chunk->kind == CONDENSER__OBJECT_KIND__OBJ_MODEL) return CND_PHASE_ADVERTISE;
        if (env->chunk->kind == CONDENSER__OBJECT_KIND__OBJ_MASKED_INPUT) return CND_PHASE_MASKED;
        return CND_PHASE_IDLE;
    default: return CND_PHASE_IDLE;
    }
}

int cnd_proto_check_round(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                          const cnd_round_view_t *view)
{
    if (rej) {
        rej->seq = env->seq;
        rej->type = env->type;
    }
    cnd_phase_t ph = cnd_proto_phase_of(env);
    if (ph == CND_PHASE_IDLE) return 0;
    const char *t = cnd_proto_type_name(env->type);
    if (env->job_id != view->job_id) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_UNKNOWN_JOB;
        return cnd_errf(CND_ENOTFOUND, "%s: job %llu is not the job in flight (%llu)", t,
                        (unsigned long long)env->job_id, (unsigned long long)view->job_id);
    }
    if (env->type == CONDENSER__MSG_TYPE__MSG_ROUND_START) {
        if (env->round < view->round) {
            if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_STALE_ROUND;
            return cnd_errf(CND_ESTATE, "%s: round %u is older than the current round %u", t,
                            env->round, view->round);
        }
        return 0; /* opens (or cleanly restarts) a round: the receiver resets its round state */
    }
    if (env->round != view->round) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_STALE_ROUND;
        return cnd_errf(CND_ESTATE, "%s: round %u is not the current round %u", t, env->round,
                        view->round);
    }
    unsigned from_site = s_roles(env) & (1u << CONDENSER__ROLE__ROLE_SITE);
    int ok;
    if (from_site)
        ok = ph == view->phase ||
             (env->type == CONDENSER__MSG_TYPE__MSG_METRICS &&
              (view->phase == CND_PHASE_CONSISTENCY || view->phase == CND_PHASE_UNMASK));
    else
        ok = ph >= view->phase;
    if (!ok) {
        if (rej) rej->code = CONDENSER__ERROR_CODE__ERR_WRONG_PHASE;
        return cnd_errf(CND_ESTATE, "%s: belongs to phase %s, round %u is in phase %s", t,
                        cnd_phase_name(ph), view->round, cnd_phase_name(view->phase));
    }
    return 0;
}

/* --- replay window ------------------------------------------------------------------------ */

void cnd_seqwin_init(cnd_seqwin_t *w)
{
    w->top = 0;
    w->seen = 0;
}

int cnd_seqwin_check(const cnd_seqwin_t *w, cnd_proto_reject_t *rej, uint64_t seq)
{
    const char *why = NULL;
    if (seq == 0)
        why = "0 is not a valid sequence number";
    else if (w->top == 0 || seq > w->top)
        return 0;
    else if (w->top - seq >= CND_SEQWIN_SIZE)
        why = "older than the replay window";
    else if (w->seen >> (w->top - seq) & 1)
        why = "already received (replay)";
    else
        return 0;
    if (rej) {
        rej->code = CONDENSER__ERROR_CODE__ERR_REPLAY;
        rej->seq = seq;
    }
    return cnd_errf(CND_EEXIST, "envelope.seq: %llu %s (highest seen %llu)",
                    (unsigned long long)seq, why, (unsigned long long)w->top);
}

void cnd_seqwin_commit(cnd_seqwin_t *w, uint64_t seq)
{
    if (w->top == 0) {
        w->top = seq;
        w->seen = 1;
    } else if (seq > w->top) {
        uint64_t shift = seq - w->top;
        w->seen = shift >= CND_SEQWIN_SIZE ? 0 : w->seen << shift;
        w->seen |= 1;
        w->top = seq;
    } else if (w->top - seq < CND_SEQWIN_SIZE) {
        w->seen |= (uint64_t)1 << (w->top - seq);
    }
}

int cnd_seqwin_accept(cnd_seqwin_t *w, cnd_proto_reject_t *rej, uint64_t seq)
{
    int rc = cnd_seqwin_check(w, rej, seq);
    if (!rc) cnd_seqwin_commit(w, seq);
    return rc;
}

/* --- the whole gate ----------------------------------------------------------------------- */

int cnd_proto_accept(cnd_proto_msg_t **out, cnd_proto_reject_t *rej, const void *data, size_t len,
                     const char *user_id, Condenser__Role sender_role, cnd_seqwin_t *win,
                     const cnd_round_view_t *view)
{
    cnd_proto_msg_t *m = NULL;
    int rc = cnd_proto_decode(&m, rej, data, len);
    if (rc) {
        *out = NULL;
        return rc;
    }
    const Condenser__Envelope *e = m->env;
    if (!(rc = cnd_proto_check_sender(rej, e, user_id)) &&
        !(rc = cnd_proto_check_role(rej, e, sender_role)) &&
        !(rc = cnd_seqwin_check(win, rej, e->seq)) &&
        !(view && (rc = cnd_proto_check_round(rej, e, view)))) {
        cnd_seqwin_commit(win, e->seq);
        *out = m;
        return 0;
    }
    if (rej) {
        rej->seq = e->seq;
        rej->type = e->type;
    }
    cnd_proto_msg_destroy(&m);
    *out = NULL;
    return rc;
}
