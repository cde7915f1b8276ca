/*
 * edge.c: the edge device's update logic (see edge.h for the rules it keeps).
 *
 * State record (edge store `state`, rewritten atomically at every change that matters):
 *   "CNDEDG01" | i8 active | i8 prev | u8 pending | u64 highest_seq
 *   | blob manifest of slot A | blob manifest of slot B                  (blob = u32 len | bytes)
 *   | u8 downloading [u64 rollout | u8 rollback | blob manifest | u32 chunk_size | u32 count
 *                     | blob bitmap]
 *   | u8 has_report [u64 rollout | u32 state | 32 digest | str reason | u32 latency | u8 st_ok]
 *   [| str cache_url]   (while downloading: where the offer said the bytes are, "" for none; so
 *                        a restart resumes from the cache; absent in records of older builds)
 * A slot's content is trusted only after its manifest verifies (signature with a trusted key)
 * and its bytes match the manifest's length and digest, at every boot.
 *
 * Order of durable writes during an activation (each an atomic step of the store):
 *   1. the new artifact into the inactive slot;
 *   2. state: active = new slot, prev = old slot, pending = 1, highest_seq raised;
 *   3. (self-test and latency in memory)
 *   4. state: pending = 0 (healthy) or active = prev (failed).
 * A crash before 2 leaves the old state (the old slot is still active); between 2 and 4 the
 * boot sees pending = 1 and switches back; after 4 the outcome stands.
 */
#include "edge.h"
#include "bytes.h"
#include "chunk.h"
#include "clock.h"
#include "digest.h"
#include "manifest.h"
#include "proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAGIC        "CNDEDG01"
#define S_MAX_INFLIGHT 16
#define S_REASON_MAX   256

typedef struct {
    uint64_t off;
    double sent;
} s_req_t;

struct cnd_edge {
    /* configuration (owned copies) */
    char *name, *hw, *cpu, *model;
    uint64_t ram, flash;
    uint32_t budget_us;
    cnd_edge_label_t *labels;
    size_t n_labels;
    uint8_t (*trust)[32];
    size_t n_trust;
    int latency_runs, keep_model;
    cnd_edge_fault_t fault;
    int crashed_once;
    uint32_t max_inflight;
    double req_timeout;
    cnd_edge_store_t store;
    cnd_edge_send_fn send;
    void *send_ctx;

    /* persisted state */
    int active, prev, pending;
    uint64_t highest;
    uint8_t *slot_man[2];
    size_t slot_man_len[2];
    cnd_manifest_t slot_m[2]; /* decoded (valid when slot_man[i]) */
    int dl;                   /* download in progress */
    uint64_t dl_rollout;
    int dl_rollback;
    uint8_t *dl_man;
    size_t dl_man_len;
    cnd_manifest_t dl_m;
    uint32_t dl_chunk, dl_count;
    uint8_t *dl_bits;
    int dl_retried; /* the whole download was fetched again once after a digest mismatch */
    int rep;
    uint64_t rep_rollout;
    uint32_t rep_state;
    uint8_t rep_digest[32];
    char rep_reason[S_REASON_MAX];
    uint32_t rep_latency;
    int rep_selftest;

    /* volatile */
    s_req_t inflight[S_MAX_INFLIGHT];
    uint32_t n_inflight;
    double retry_at;
    int has_model; /* the active slot verified and passed its self-test at load */
    uint32_t latency_us;
    uint8_t *art; /* active artifact bytes when keep_model */
    void *arena;
    cnd_rt_model_t *rt;
    cnd_edge_fetch_fn fetch; /* artifact cache client, or NULL */
    void *fetch_ctx;
    char dl_url[CND_PROTO_URL_MAX + 80]; /* the download's bytes in a cache ("" = none) */
    int dl_cache_bad;                    /* the cache failed this download: chunk requests */
    uint64_t cache_chunks, cache_failures;
    char cache_error[200];
    uint64_t refused;
    cnd_edge_reason_t last_reason;
    uint64_t hang_seq; /* FAULT_HANG: sequence of the offer being ignored */
};

const char *cnd_edge_reason_name(cnd_edge_reason_t r)
{
    switch (r) {
    case CND_EDGE_OK: return "ok";
    case CND_EDGE_UNSIGNED: return "unsigned";
    case CND_EDGE_UNTRUSTED_KEY: return "untrusted-key";
    case CND_EDGE_BAD_SIGNATURE: return "bad-signature";
    case CND_EDGE_EXPIRED: return "expired";
    case CND_EDGE_OLDER: return "older-sequence";
    case CND_EDGE_DOWNGRADE: return "downgrade";
    case CND_EDGE_WRONG_CLASS: return "wrong-device-class";
    case CND_EDGE_WRONG_MODEL: return "wrong-model";
    case CND_EDGE_OVERSIZED: return "oversized";
    case CND_EDGE_TRUNCATED: return "truncated";
    case CND_EDGE_MODIFIED: return "modified";
    case CND_EDGE_MISMATCH: return "offer-mismatch";
    case CND_EDGE_INVALID: return "invalid-artifact";
    case CND_EDGE_RAM: return "ram";
    case CND_EDGE_SELFTEST: return "self-test";
    case CND_EDGE_LATENCY: return "latency";
    case CND_EDGE_INTERRUPTED: return "interrupted";
    case CND_EDGE_STORAGE: return "storage";
    }
    return "unknown";
}

/* --- helpers -------------------------------------------------------------------------------- */

static char *s_dup(const char *s)
{
    return strdup(s ? s : "");
}

static int s_fail(cnd_edge_reason_t *why, cnd_edge_reason_t r, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int s_fail(cnd_edge_reason_t *why, cnd_edge_reason_t r, int code, const char *fmt, ...)
{
    char msg[S_REASON_MAX - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (why) *why = r;
    return cnd_errf(code, "%s: %s", cnd_edge_reason_name(r), msg);
}

static void s_unload(cnd_edge_t *e)
{
    free(e->art);
    free(e->arena);
    e->art = NULL;
    e->arena = NULL;
    e->rt = NULL;
}

static void s_free_state(cnd_edge_t *e)
{
    for (int i = 0; i < 2; i++) {
        free(e->slot_man[i]);
        e->slot_man[i] = NULL;
        e->slot_man_len[i] = 0;
    }
    free(e->dl_man);
    free(e->dl_bits);
    e->dl_man = NULL;
    e->dl_bits = NULL;
    e->dl = 0;
    e->rep = 0;
    e->active = e->prev = -1;
    e->pending = 0;
    e->highest = 0;
}

/* --- state record --------------------------------------------------------------------------- */

static void s_blob(cnd_buf_t *b, const uint8_t *p, size_t n)
{
    cnd_buf_blob(b, p, (uint32_t)n);
}

static int s_save(cnd_edge_t *e)
{
    cnd_buf_t b;
    cnd_buf_init(&b);
    cnd_buf_put(&b, S_MAGIC, 8);
    cnd_buf_u8(&b, (uint8_t)(int8_t)e->active);
    cnd_buf_u8(&b, (uint8_t)(int8_t)e->prev);
    cnd_buf_u8(&b, (uint8_t)e->pending);
    cnd_buf_u64(&b, e->highest);
    for (int i = 0; i < 2; i++) s_blob(&b, e->slot_man[i], e->slot_man_len[i]);
    cnd_buf_u8(&b, (uint8_t)e->dl);
    if (e->dl) {
        cnd_buf_u64(&b, e->dl_rollout);
        cnd_buf_u8(&b, (uint8_t)e->dl_rollback);
        s_blob(&b, e->dl_man, e->dl_man_len);
        cnd_buf_u32(&b, e->dl_chunk);
        cnd_buf_u32(&b, e->dl_count);
        s_blob(&b, e->dl_bits, (e->dl_count + 7) / 8);
    }
    cnd_buf_u8(&b, (uint8_t)e->rep);
    if (e->rep) {
        cnd_buf_u64(&b, e->rep_rollout);
        cnd_buf_u32(&b, e->rep_state);
        cnd_buf_put(&b, e->rep_digest, 32);
        cnd_buf_str(&b, e->rep_reason);
        cnd_buf_u32(&b, e->rep_latency);
        cnd_buf_u8(&b, (uint8_t)e->rep_selftest);
    }
    if (e->dl) cnd_buf_str(&b, e->dl_url);
    int rc = b.err ? cnd_errf(CND_ENOMEM, "edge state: out of memory")
                   : e->store.ops->state_save(e->store.ctx, b.data, b.len);
    cnd_buf_free(&b);
    return rc;
}

static uint8_t *s_rd_blob(cnd_rd_t *r, size_t *n, size_t max)
{
    uint32_t len = cnd_rd_u32(r);
    if (r->err || len > max) {
        r->err = 1;
        return NULL;
    }
    *n = len;
    if (!len) return NULL;
    const uint8_t *p = cnd_rd_take(r, len);
    if (!p) return NULL;
    uint8_t *c = malloc(len);
    if (!c) {
        r->err = 1;
        return NULL;
    }
    memcpy(c, p, len);
    return c;
}

static int s_load_state(cnd_edge_t *e)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = e->store.ops->state_load(e->store.ctx, &data, &len);
    if (rc == CND_ENOTFOUND) {
        cnd_err_clear();
        return 0;
    }
    if (rc) return rc;
    cnd_rd_t r;
    cnd_rd_init(&r, data, len);
    const uint8_t *mg = cnd_rd_take(&r, 8);
    if (!mg || memcmp(mg, S_MAGIC, 8) != 0) {
        free(data);
        return cnd_errf(CND_EFORMAT, "edge state: bad magic");
    }
    e->active = (int8_t)cnd_rd_u8(&r);
    e->prev = (int8_t)cnd_rd_u8(&r);
    e->pending = cnd_rd_u8(&r);
    e->highest = cnd_rd_u64(&r);
    for (int i = 0; i < 2; i++)
        e->slot_man[i] = s_rd_blob(&r, &e->slot_man_len[i], CND_PROTO_MANIFEST_MAX);
    e->dl = cnd_rd_u8(&r);
    if (e->dl) {
        e->dl_rollout = cnd_rd_u64(&r);
        e->dl_rollback = cnd_rd_u8(&r);
        e->dl_man = s_rd_blob(&r, &e->dl_man_len, CND_PROTO_MANIFEST_MAX);
        e->dl_chunk = cnd_rd_u32(&r);
        e->dl_count = cnd_rd_u32(&r);
        size_t nb = 0;
        e->dl_bits = s_rd_blob(&r, &nb, (size_t)1 << 24);
        if (!r.err && (nb != (e->dl_count + 7) / 8 || !e->dl_bits || !e->dl_man)) r.err = 1;
    }
    e->rep = cnd_rd_u8(&r);
    if (e->rep) {
        e->rep_rollout = cnd_rd_u64(&r);
        e->rep_state = cnd_rd_u32(&r);
        const uint8_t *d = cnd_rd_take(&r, 32);
        if (d) memcpy(e->rep_digest, d, 32);
        char *s = cnd_rd_str(&r, S_REASON_MAX - 1);
        if (s) snprintf(e->rep_reason, sizeof e->rep_reason, "%s", s);
        free(s);
        e->rep_latency = cnd_rd_u32(&r);
        e->rep_selftest = cnd_rd_u8(&r);
    }
    e->dl_url[0] = 0;
    if (e->dl && !r.err && cnd_rd_left(&r)) {
        char *u = cnd_rd_str(&r, sizeof e->dl_url - 1);
        if (u) snprintf(e->dl_url, sizeof e->dl_url, "%s", u);
        free(u);
    }
    int bad = r.err || cnd_rd_left(&r) || e->active < -1 || e->active > 1 || e->prev < -1 ||
              e->prev > 1 || e->pending > 1;
    free(data);
    if (bad) {
        s_free_state(e);
        return cnd_errf(CND_EFORMAT, "edge state: malformed record");
    }
    for (int i = 0; i < 2; i++)
        if (e->slot_man[i] &&
            cnd_manifest_decode_signed(&e->slot_m[i], e->slot_man[i], e->slot_man_len[i])) {
            /* Not decodable: the slot is treated as empty. */
            free(e->slot_man[i]);
            e->slot_man[i] = NULL;
            e->slot_man_len[i] = 0;
            cnd_err_clear();
        }
    if (e->dl && cnd_manifest_decode_signed(&e->dl_m, e->dl_man, e->dl_man_len)) {
        e->dl = 0;
        cnd_err_clear();
    }
    return 0;
}

/* --- manifest checks ------------------------------------------------------------------------ */

static cnd_edge_reason_t s_map_fail(cnd_manifest_fail_t f)
{
    switch (f) {
    case CND_MANIFEST_OK: return CND_EDGE_OK;
    case CND_MANIFEST_MALFORMED: return CND_EDGE_UNSIGNED;
    case CND_MANIFEST_UNTRUSTED_KEY: return CND_EDGE_UNTRUSTED_KEY;
    case CND_MANIFEST_BAD_SIGNATURE: return CND_EDGE_BAD_SIGNATURE;
    case CND_MANIFEST_EXPIRED: return CND_EDGE_EXPIRED;
    case CND_MANIFEST_OLDER: return CND_EDGE_OLDER;
    case CND_MANIFEST_DOWNGRADE: return CND_EDGE_DOWNGRADE;
    case CND_MANIFEST_WRONG_TARGET: return CND_EDGE_WRONG_CLASS;
    }
    return CND_EDGE_UNSIGNED;
}

/* A new manifest: every check of edge.h. On failure *why is set and the detail explains. */
static int s_check_manifest(cnd_edge_t *e, cnd_manifest_t *m, const uint8_t *man, size_t len,
                            int need_rollback, cnd_edge_reason_t *why)
{
    if (!man || !len)
        return s_fail(why, CND_EDGE_UNSIGNED, CND_ECRYPTO, "no signed manifest came with it");
    cnd_manifest_policy_t pol = {.keys = (const uint8_t(*)[32])e->trust,
                                 .n_keys = e->n_trust,
                                 .now = cnd_unix_time(),
                                 .min_sequence = e->highest + 1,
                                 .current_version = e->active >= 0 && e->slot_man[e->active]
                                                        ? e->slot_m[e->active].version
                                                        : 0,
                                 .device_class = e->hw};
    cnd_manifest_fail_t f = CND_MANIFEST_OK;
    int rc = cnd_manifest_verify(m, &f, man, len, &pol);
    if (rc) {
        char d[200];
        snprintf(d, sizeof d, "%s", cnd_err_detail());
        return s_fail(why, s_map_fail(f), rc, "%s", d);
    }
    if (e->model[0] && strcmp(m->name, e->model) != 0)
        return s_fail(why, CND_EDGE_WRONG_MODEL, CND_EPERM,
                      "manifest is for model '%s', this device runs '%s'", m->name, e->model);
    if (need_rollback && !(m->flags & CND_MANIFEST_ROLLBACK))
        return s_fail(why, CND_EDGE_MISMATCH, CND_EPERM,
                      "a rollback must carry a manifest with the rollback flag");
    uint64_t other = 0;
    if (e->active >= 0 && e->slot_man[e->active]) other = e->slot_m[e->active].length;
    if (m->length > e->flash || other > e->flash - m->length)
        return s_fail(why, CND_EDGE_OVERSIZED, CND_ERANGE,
                      "%llu bytes next to the running %llu exceed the flash budget of %llu",
                      (unsigned long long)m->length, (unsigned long long)other,
                      (unsigned long long)e->flash);
    if (m->length > CND_RT_MAX_FILE)
        return s_fail(why, CND_EDGE_OVERSIZED, CND_ERANGE, "%llu bytes: over the runtime's limit",
                      (unsigned long long)m->length);
    return 0;
}

/* Verifies a stored slot manifest for loading at boot: trusted signature only (expiry and
 * sequence concern new installs, not the model already running). */
static int s_check_slot_manifest(cnd_edge_t *e, int slot)
{
    cnd_manifest_policy_t pol = {.keys = (const uint8_t(*)[32])e->trust,
                                 .n_keys = e->n_trust,
                                 .now = 0, /* no expiry check */
                                 .min_sequence = 0,
                                 .current_version = 0,
                                 .device_class = NULL};
    cnd_manifest_t m;
    return cnd_manifest_verify(&m, NULL, e->slot_man[slot], e->slot_man_len[slot], &pol);
}

/* --- reports -------------------------------------------------------------------------------- */

static void s_send_report(cnd_edge_t *e)
{
    if (!e->rep) return;
    Condenser__ActivationReport r;
    condenser__activation_report__init(&r);
    r.rollout_id = e->rep_rollout;
    r.artifact_digest = cnd_proto_bytes(e->rep_digest, 32);
    r.state = (Condenser__ActivationState)e->rep_state;
    r.reason = cnd_proto_str(e->rep_reason);
    r.self_test_passed = e->rep_selftest;
    r.latency_us = e->rep_latency;
    if (e->has_model && e->active >= 0) {
        r.active_digest = cnd_proto_bytes(e->slot_m[e->active].digest, 32);
        r.active_sequence = e->slot_m[e->active].sequence;
    }
    (void)e->send(e->send_ctx, CONDENSER__MSG_TYPE__MSG_ACTIVATION_REPORT, &r);
}

/* Records (durably, when persist) and sends a report. The reason is cut to printable text. */
static void s_report(cnd_edge_t *e, uint64_t rollout, const uint8_t digest[32],
                     Condenser__ActivationState st, const char *reason, int persist)
{
    e->rep = 1;
    e->rep_rollout = rollout;
    e->rep_state = (uint32_t)st;
    memcpy(e->rep_digest, digest, 32);
    snprintf(e->rep_reason, sizeof e->rep_reason, "%s", reason ? reason : "");
    for (char *p = e->rep_reason; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
    e->rep_selftest = st == CONDENSER__ACTIVATION_STATE__ACT_HEALTHY ||
                      st == CONDENSER__ACTIVATION_STATE__ACT_ROLLED_BACK;
    e->rep_latency = e->latency_us;
    if (persist && s_save(e)) cnd_err_clear(); /* sent anyway; the profile tells the truth */
    s_send_report(e);
}

static void s_refuse(cnd_edge_t *e, uint64_t rollout, const uint8_t digest[32],
                     cnd_edge_reason_t why)
{
    e->refused++;
    e->last_reason = why;
    s_report(e, rollout, digest, CONDENSER__ACTIVATION_STATE__ACT_REFUSED, cnd_err_detail(), 1);
}

/* --- loading and testing a slot -------------------------------------------------------------- */

static uint32_t s_median(uint32_t *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint32_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

/* Loads bytes into a fresh arena, runs the self-test vectors bit for bit and measures latency.
 * On success returns 0 with the arena and model (when keep is set) handed over. */
static int s_trial(cnd_edge_t *e, const uint8_t *art, size_t len, size_t need, int inject_fault,
                   uint32_t *latency, void **arena_out, cnd_rt_model_t **rt_out,
                   cnd_edge_reason_t *why)
{
    cnd_rt_diag_t dg;
    int rc = need ? 0 : cnd_rt_arena_size(&need, art, len, &dg);
    if (rc)
        return s_fail(why, CND_EDGE_INVALID, CND_EFORMAT, "runtime refuses it: %s at byte %u",
                      dg.what ? dg.what : cnd_rt_strerror(rc), dg.offset);
    if ((uint64_t)need > e->ram || (uint64_t)len > e->ram - need)
        return s_fail(why, CND_EDGE_RAM, CND_ERANGE,
                      "arena %zu + artifact %zu bytes exceed the RAM budget of %llu", need, len,
                      (unsigned long long)e->ram);
    void *arena = malloc(need);
    if (!arena)
        return s_fail(why, CND_EDGE_RAM, CND_ENOMEM, "cannot allocate a %zu-byte arena", need);
    cnd_rt_model_t *m = NULL;
    rc = cnd_rt_load(&m, art, len, arena, need, &dg);
    if (rc) {
        free(arena);
        return s_fail(why, CND_EDGE_INVALID, CND_EFORMAT, "runtime refuses it: %s",
                      dg.what ? dg.what : cnd_rt_strerror(rc));
    }
    cnd_rt_info_t info;
    cnd_rt_get_info(m, &info);
    if (info.n_selftests == 0) {
        free(arena);
        return s_fail(why, CND_EDGE_SELFTEST, CND_ECORRUPT,
                      "the artifact has no self-test vectors");
    }
    uint32_t failed = 0;
    rc = cnd_rt_selftest(m, &failed);
    if (!rc && inject_fault) {
        /* Simulated faulty hardware: vector 0 computed with one output bit flipped. */
        const uint8_t *in;
        const int8_t *expect;
        uint32_t kind;
        int8_t logits[4096];
        if (info.n_classes <= sizeof logits && !cnd_rt_selftest_vector(m, 0, &in, &expect, &kind)) {
            if (kind == CND_RT_TEST_RAW_U8)
                cnd_rt_run_u8(m, logits, in);
            else
                cnd_rt_run_i8(m, logits, (const int8_t *)in);
            logits[0] ^= 1;
            if (memcmp(logits, expect, info.n_classes) != 0) rc = CND_RT_ESELFTEST;
        }
    }
    if (rc) {
        free(arena);
        return s_fail(why, CND_EDGE_SELFTEST, CND_ECORRUPT,
                      "self-test vector %u of %u gave other output bits", failed, info.n_selftests);
    }
    /* Latency: the median of a few runs of the first self-test input. */
    uint32_t t[16];
    int runs = e->latency_runs > 16 ? 16 : e->latency_runs;
    const uint8_t *in;
    const int8_t *expect;
    uint32_t kind;
    int8_t logits[4096];
    if (info.n_classes > sizeof logits || cnd_rt_selftest_vector(m, 0, &in, &expect, &kind)) {
        free(arena);
        return s_fail(why, CND_EDGE_INVALID, CND_EFORMAT, "%u classes: too many", info.n_classes);
    }
    for (int i = 0; i < runs; i++) {
        double t0 = cnd_now();
        if (kind == CND_RT_TEST_RAW_U8)
            cnd_rt_run_u8(m, logits, in);
        else
            cnd_rt_run_i8(m, logits, (const int8_t *)in);
        double us = (cnd_now() - t0) * 1e6;
        t[i] = us < 1 ? 1 : us > 4e9 ? 4000000000u : (uint32_t)us;
    }
    *latency = s_median(t, runs);
    if (e->budget_us && *latency > e->budget_us) {
        free(arena);
        return s_fail(why, CND_EDGE_LATENCY, CND_ERANGE,
                      "median latency %u us over the budget of %u us", *latency, e->budget_us);
    }
    *arena_out = arena;
    *rt_out = m;
    return 0;
}

/* Reads slot s, checks it against its manifest and runs its trial. With keep_model the bytes,
 * arena and model stay loaded. */
static int s_load_slot(cnd_edge_t *e, int s, int inject_fault, cnd_edge_reason_t *why)
{
    if (s < 0 || !e->slot_man[s])
        return s_fail(why, CND_EDGE_UNSIGNED, CND_ENOTFOUND, "empty slot");
    int rc = s_check_slot_manifest(e, s);
    if (rc) {
        char d[160];
        snprintf(d, sizeof d, "%s", cnd_err_detail());
        return s_fail(why, CND_EDGE_BAD_SIGNATURE, rc, "slot %c manifest: %s", 'A' + s, d);
    }
    uint8_t *data = NULL;
    size_t len = 0;
    rc = e->store.ops->slot_read(e->store.ctx, s, &data, &len);
    if (rc)
        return s_fail(why, CND_EDGE_STORAGE, rc == CND_ENOTFOUND ? CND_EIO : rc,
                      "slot %c unreadable", 'A' + s);
    if (cnd_manifest_check_artifact(&e->slot_m[s], data, len)) {
        free(data);
        return s_fail(why, len < e->slot_m[s].length ? CND_EDGE_TRUNCATED : CND_EDGE_MODIFIED,
                      CND_ECORRUPT, "slot %c does not match its manifest", 'A' + s);
    }
    void *arena = NULL;
    cnd_rt_model_t *m = NULL;
    uint32_t lat = 0;
    rc = s_trial(e, data, len, 0, inject_fault, &lat, &arena, &m, why);
    if (rc) {
        free(data);
        return rc;
    }
    s_unload(e);
    e->latency_us = lat;
    if (e->keep_model) {
        e->art = data;
        e->arena = arena;
        e->rt = m;
    } else {
        free(data);
        free(arena);
    }
    return 0;
}

/* --- boot ----------------------------------------------------------------------------------- */

int cnd_edge_boot(cnd_edge_t *e)
{
    s_unload(e);
    s_free_state(e);
    e->has_model = 0;
    e->n_inflight = 0;
    int rc = s_load_state(e);
    if (rc) return rc;
    if (e->pending) {
        /* A crash or power cut during the trial of the active slot: back to the previous one. */
        int failed = e->active;
        uint8_t dg[32] = {0};
        if (failed >= 0 && e->slot_man[failed]) memcpy(dg, e->slot_m[failed].digest, 32);
        uint64_t rollout = e->rep_rollout;
        e->active = e->prev;
        e->prev = -1;
        e->pending = 0;
        e->rep = 1;
        e->rep_rollout = rollout;
        e->rep_state = CONDENSER__ACTIVATION_STATE__ACT_FAILED;
        memcpy(e->rep_digest, dg, 32);
        snprintf(
            e->rep_reason, sizeof e->rep_reason,
            "interrupted: restarted while the new model was on trial; back on the previous slot");
        e->rep_selftest = 0;
        e->rep_latency = 0;
        e->last_reason = CND_EDGE_INTERRUPTED;
        if ((rc = s_save(e))) return rc;
    }
    if (e->active >= 0) {
        cnd_edge_reason_t why;
        if (!s_load_slot(e, e->active, 0, &why)) {
            e->has_model = 1;
        } else {
            int other = 1 - e->active;
            cnd_err_clear();
            if (e->slot_man[other] && !s_load_slot(e, other, 0, &why)) {
                e->prev = -1;
                e->active = other;
                e->has_model = 1;
                if ((rc = s_save(e))) return rc;
            }
            cnd_err_clear();
        }
    }
    return 0;
}

int cnd_edge_reboot(cnd_edge_t *e)
{
    return cnd_edge_boot(e);
}

/* --- activation ----------------------------------------------------------------------------- */

/* Activates verified bytes (length and digest already equal the manifest's). Returns 0 when
 * the new model is healthy, CND_ECANCELED for a simulated power cut, else an error with *why. */
static int s_activate(cnd_edge_t *e, const uint8_t *art, size_t len, const uint8_t *man,
                      size_t man_len, const cnd_manifest_t *m, uint64_t rollout, int rollback,
                      cnd_edge_reason_t *why)
{
    /* The runtime validates the format before anything is written. */
    cnd_rt_diag_t dg;
    size_t need = 0;
    int rc = cnd_rt_arena_size(&need, art, len, &dg);
    if (rc)
        return s_fail(why, CND_EDGE_INVALID, CND_EFORMAT, "runtime refuses it: %s at byte %u",
                      dg.what ? dg.what : cnd_rt_strerror(rc), dg.offset);
    if ((uint64_t)need > e->ram || (uint64_t)len > e->ram - need)
        return s_fail(why, CND_EDGE_RAM, CND_ERANGE,
                      "arena %zu + artifact %zu bytes exceed the RAM budget of %llu", need, len,
                      (unsigned long long)e->ram);
    int slot = e->active < 0 ? 0 : 1 - e->active;
    if ((rc = e->store.ops->slot_write(e->store.ctx, slot, art, len, m->digest)))
        return s_fail(why, CND_EDGE_STORAGE, rc, "writing slot %c: %s", 'A' + slot,
                      cnd_err_detail());
    uint8_t *copy = malloc(man_len);
    if (!copy) return s_fail(why, CND_EDGE_STORAGE, CND_ENOMEM, "out of memory");
    memcpy(copy, man, man_len);
    int old_active = e->active, old_prev = e->prev;
    uint64_t old_highest = e->highest;
    uint8_t *old_man = e->slot_man[slot];
    size_t old_man_len = e->slot_man_len[slot];
    cnd_manifest_t old_m = e->slot_m[slot];
    int old_dl = e->dl;
    e->slot_man[slot] = copy;
    e->slot_man_len[slot] = man_len;
    e->slot_m[slot] = *m;
    e->prev = e->active;
    e->active = slot;
    e->pending = 1;
    if (m->sequence > e->highest) e->highest = m->sequence;
    e->dl = 0;
    e->rep_rollout = rollout; /* remembered for a report after a crash in the trial */
    if ((rc = s_save(e))) {
        /* Nothing switched on disk: restore the memory view. */
        free(copy);
        e->slot_man[slot] = old_man;
        e->slot_man_len[slot] = old_man_len;
        e->slot_m[slot] = old_m;
        e->active = old_active;
        e->prev = old_prev;
        e->pending = 0;
        e->highest = old_highest;
        e->dl = old_dl;
        return s_fail(why, CND_EDGE_STORAGE, rc, "switching slots: %s", cnd_err_detail());
    }
    free(old_man);
    if (old_dl) e->store.ops->part_discard(e->store.ctx);
    if (e->fault == CND_EDGE_FAULT_CRASH && !rollback && !e->crashed_once) {
        e->crashed_once = 1;
        return CND_ECANCELED;
    }
    int inject = e->fault == CND_EDGE_FAULT_SELFTEST && !rollback;
    /* The trial runs on the bytes just verified and written (the slot holds the same bytes;
     * every later boot re-reads and re-checks it). */
    void *arena = NULL;
    cnd_rt_model_t *rtm = NULL;
    uint32_t lat = 0;
    rc = s_trial(e, art, len, need, inject, &lat, &arena, &rtm, why);
    if (!rc) {
        s_unload(e);
        e->latency_us = lat;
        if (e->keep_model) {
            e->art = malloc(len);
            if (e->art) {
                memcpy(e->art, art, len);
                /* The model points into the artifact bytes: load it again over the copy. */
                cnd_rt_diag_t dg2;
                if (cnd_rt_load(&rtm, e->art, len, arena, need, &dg2)) rtm = NULL;
            }
            e->arena = arena;
            e->rt = e->art ? rtm : NULL;
        } else {
            free(arena);
        }
    }
    if (!rc) {
        e->pending = 0;
        e->has_model = 1;
        if ((rc = s_save(e))) {
            /* The trial passed but the commit did not land: the next boot falls back. */
            return s_fail(why, CND_EDGE_STORAGE, rc, "committing the new slot: %s",
                          cnd_err_detail());
        }
        return 0;
    }
    /* Failed trial: back to the previous slot. */
    char detail[S_REASON_MAX];
    snprintf(detail, sizeof detail, "%s", cnd_err_detail());
    cnd_edge_reason_t r = why ? *why : CND_EDGE_SELFTEST;
    e->active = e->prev;
    e->prev = -1;
    e->pending = 0;
    e->has_model = 0;
    int src = s_save(e);
    if (e->active >= 0) {
        cnd_edge_reason_t w2;
        if (!s_load_slot(e, e->active, 0, &w2)) e->has_model = 1;
    }
    if (why) *why = r;
    cnd_errf(src ? src : CND_ECORRUPT, "%s; back on the previous slot", detail);
    return src ? src : CND_ECORRUPT;
}

/* --- downloads ------------------------------------------------------------------------------ */

static void s_dl_clear(cnd_edge_t *e)
{
    if (!e->dl) return;
    e->dl = 0;
    free(e->dl_man);
    free(e->dl_bits);
    e->dl_man = NULL;
    e->dl_bits = NULL;
    e->n_inflight = 0;
    e->store.ops->part_discard(e->store.ctx);
}

static int s_has(const cnd_edge_t *e, uint32_t i)
{
    return e->dl_bits[i / 8] >> (i % 8) & 1;
}

static uint32_t s_held(const cnd_edge_t *e)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->dl_count; i++) n += (uint32_t)s_has(e, i);
    return n;
}

static int s_is_inflight(const cnd_edge_t *e, uint64_t off)
{
    for (uint32_t i = 0; i < e->n_inflight; i++)
        if (e->inflight[i].off == off) return 1;
    return 0;
}

static void s_pump(cnd_edge_t *e, double now);

/* Whether the download in progress comes from an artifact cache. */
static int s_use_cache(const cnd_edge_t *e)
{
    return e->fetch && e->dl_url[0] && !e->dl_cache_bad;
}

/* The cache failed this download: the rest (or all of it again) comes as chunk requests. */
static void s_cache_failed(cnd_edge_t *e, const char *why)
{
    e->dl_cache_bad = 1;
    e->cache_failures++;
    snprintf(e->cache_error, sizeof e->cache_error, "%s", why);
}

/* The offer's cache location of the artifact: URL/<hex digest> ("" when it names none). */
static void s_set_url(cnd_edge_t *e, ProtobufCBinaryData url, const uint8_t digest[32])
{
    char hex[65];
    e->dl_url[0] = 0;
    if (url.len && url.len <= CND_PROTO_URL_MAX)
        snprintf(e->dl_url, sizeof e->dl_url, "%.*s/%s", (int)url.len, (const char *)url.data,
                 cnd_hex(hex, digest, 32));
}

static int s_dl_finish(cnd_edge_t *e);

/* Up to S_CACHE_PER_PUMP missing chunks from the cache (blocking HTTP range requests; the
 * device loop calls this again on its next tick), each written and recorded like a chunk. */
#define S_CACHE_PER_PUMP 8
static void s_pump_cache(cnd_edge_t *e, double now)
{
    uint8_t *buf = malloc(e->dl_chunk);
    if (!buf) {
        e->retry_at = now + 1.0;
        return;
    }
    for (uint32_t i = 0, got = 0; i < e->dl_count && got < S_CACHE_PER_PUMP; i++) {
        if (s_has(e, i)) continue;
        uint64_t off = (uint64_t)i * e->dl_chunk, left = e->dl_m.length - off;
        uint32_t len = (uint32_t)(left < e->dl_chunk ? left : e->dl_chunk);
        if (e->fetch(e->fetch_ctx, e->dl_url, off, len, buf)) {
            char why[200];
            snprintf(why, sizeof why, "%s", cnd_err_detail());
            cnd_err_clear();
            s_cache_failed(e, why);
            free(buf);
            s_pump(e, now); /* the rest as chunk requests */
            return;
        }
        got++;
        e->cache_chunks++;
        uint8_t sha[32];
        cnd_sha256(sha, buf, len);
        int rc = e->store.ops->part_write(e->store.ctx, off, buf, len, sha);
        if (!rc) {
            e->dl_bits[i / 8] |= (uint8_t)(1u << (i % 8));
            rc = s_save(e);
        }
        if (rc) {
            e->dl_bits[i / 8] &= (uint8_t) ~(1u << (i % 8));
            e->retry_at = now + 1.0;
            cnd_err_clear();
            free(buf);
            return;
        }
    }
    free(buf);
    if (s_held(e) == e->dl_count) (void)s_dl_finish(e);
}

static void s_pump(cnd_edge_t *e, double now)
{
    if (!e->dl || now < e->retry_at) return;
    if (s_use_cache(e)) {
        s_pump_cache(e, now);
        return;
    }
    for (uint32_t i = 0; i < e->dl_count && e->n_inflight < e->max_inflight; i++) {
        if (s_has(e, i)) continue;
        uint64_t off = (uint64_t)i * e->dl_chunk;
        if (s_is_inflight(e, off)) continue;
        uint64_t left = e->dl_m.length - off;
        Condenser__ArtifactChunkRequest q;
        condenser__artifact_chunk_request__init(&q);
        q.artifact_digest = cnd_proto_bytes(e->dl_m.digest, 32);
        q.offset = off;
        q.length = (uint32_t)(left < e->dl_chunk ? left : e->dl_chunk);
        if (e->send(e->send_ctx, CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST, &q)) {
            e->retry_at = now + 1.0;
            return;
        }
        e->inflight[e->n_inflight].off = off;
        e->inflight[e->n_inflight].sent = now;
        e->n_inflight++;
    }
}

/* Starts (or resumes, for the same digest) a download of the artifact m describes. */
static int s_dl_start(cnd_edge_t *e, const cnd_manifest_t *m, const uint8_t *man, size_t man_len,
                      uint64_t rollout, int rollback, uint32_t chunk, double now)
{
    if (e->dl && memcmp(e->dl_m.digest, m->digest, 32) == 0 && e->dl_chunk == chunk &&
        e->dl_m.length == m->length) {
        /* Resume: keep the chunks held; adopt the newer manifest and rollout. */
        uint8_t *copy = malloc(man_len);
        if (!copy) return CND_ENOMEM;
        memcpy(copy, man, man_len);
        free(e->dl_man);
        e->dl_man = copy;
        e->dl_man_len = man_len;
        e->dl_m = *m;
        e->dl_rollout = rollout;
        e->dl_rollback = rollback;
        e->n_inflight = 0;
        int rc = s_save(e);
        if (rc) return rc;
        s_pump(e, now);
        return 0;
    }
    s_dl_clear(e);
    uint64_t count = (m->length + chunk - 1) / chunk;
    if (count > (1u << 24)) return cnd_errf(CND_ERANGE, "too many chunks");
    int rc = e->store.ops->part_begin(e->store.ctx, m->length);
    if (rc) return rc;
    e->dl_man = malloc(man_len);
    e->dl_bits = calloc(1, (size_t)(count + 7) / 8 + 1);
    if (!e->dl_man || !e->dl_bits) {
        free(e->dl_man);
        free(e->dl_bits);
        e->dl_man = NULL;
        e->dl_bits = NULL;
        return cnd_errf(CND_ENOMEM, "edge: out of memory");
    }
    memcpy(e->dl_man, man, man_len);
    e->dl_man_len = man_len;
    e->dl_m = *m;
    e->dl_rollout = rollout;
    e->dl_rollback = rollback;
    e->dl_chunk = chunk;
    e->dl_count = (uint32_t)count;
    e->dl = 1;
    e->dl_retried = 0;
    e->dl_cache_bad = 0;
    e->n_inflight = 0;
    e->retry_at = 0;
    if ((rc = s_save(e))) {
        s_dl_clear(e);
        return rc;
    }
    s_pump(e, now);
    return 0;
}

/* The whole download is held: verify it and activate. */
static int s_dl_finish(cnd_edge_t *e)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t rollout = e->dl_rollout;
    int rollback = e->dl_rollback;
    cnd_manifest_t m = e->dl_m;
    int rc = e->store.ops->part_read(e->store.ctx, &data, &len);
    if (rc) {
        s_dl_clear(e);
        e->last_reason = CND_EDGE_STORAGE;
        s_report(e, rollout, m.digest, CONDENSER__ACTIVATION_STATE__ACT_FAILED,
                 "storage: the partial download cannot be read", 1);
        return 0;
    }
    cnd_edge_reason_t why = CND_EDGE_OK;
    if (cnd_manifest_check_artifact(&m, data, len)) {
        free(data);
        if (s_use_cache(e)) {
            /* The cache served other bytes (stale, poisoned or corrupted): nothing of them is
             * kept; the whole artifact comes again as chunk requests, each with its digest. */
            s_cache_failed(e, "the cache's bytes do not match the signed digest");
            memset(e->dl_bits, 0, (e->dl_count + 7) / 8);
            e->n_inflight = 0;
            if (!e->store.ops->part_begin(e->store.ctx, m.length) && !s_save(e)) {
                s_pump(e, cnd_now());
                return 0;
            }
            cnd_err_clear();
        } else if (!e->dl_retried) {
            /* Every chunk matched its own digest when it arrived, so the stored copy changed
             * since (storage fault) or a chunk was held from an earlier object: download the
             * whole artifact once more before giving up. */
            e->dl_retried = 1;
            memset(e->dl_bits, 0, (e->dl_count + 7) / 8);
            e->n_inflight = 0;
            if (!e->store.ops->part_begin(e->store.ctx, m.length) && !s_save(e)) {
                s_pump(e, cnd_now());
                return 0;
            }
            cnd_err_clear();
        }
        s_dl_clear(e);
        e->last_reason = CND_EDGE_MODIFIED;
        s_report(e, rollout, m.digest, CONDENSER__ACTIVATION_STATE__ACT_FAILED,
                 "modified: the downloaded bytes do not match the signed digest", 1);
        return 0;
    }
    uint8_t *man = e->dl_man;
    size_t man_len = e->dl_man_len;
    e->dl_man = NULL; /* s_activate takes a copy; the state record drops the download */
    rc = s_activate(e, data, len, man, man_len, &m, rollout, rollback, &why);
    free(man);
    free(data);
    free(e->dl_bits);
    e->dl_bits = NULL;
    e->dl = 0;
    e->n_inflight = 0;
    if (rc == CND_ECANCELED) return rc;
    if (rc) {
        e->last_reason = why;
        s_report(e, rollout, m.digest, CONDENSER__ACTIVATION_STATE__ACT_FAILED, cnd_err_detail(),
                 1);
        return 0;
    }
    s_report(e, rollout, m.digest,
             rollback ? CONDENSER__ACTIVATION_STATE__ACT_ROLLED_BACK
                      : CONDENSER__ACTIVATION_STATE__ACT_HEALTHY,
             "", 1);
    return 0;
}

/* --- messages ------------------------------------------------------------------------------- */

static int s_running(const cnd_edge_t *e, const uint8_t digest[32])
{
    return e->has_model && e->active >= 0 && e->slot_man[e->active] &&
           memcmp(e->slot_m[e->active].digest, digest, 32) == 0;
}

static int s_on_offer(cnd_edge_t *e, const Condenser__ArtifactOffer *o, double now)
{
    const uint8_t *dg = o->artifact_digest.data;
    if (s_running(e, dg)) {
        /* Already running it (a repeated offer): say so. */
        s_report(e, o->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_HEALTHY, "", 0);
        return 0;
    }
    if (e->dl && e->dl_rollout == o->rollout_id && memcmp(e->dl_m.digest, dg, 32) == 0) {
        /* The same offer again (a reconnect): resume. */
        s_set_url(e, o->artifact_url, dg);
        e->n_inflight = 0;
        s_pump(e, now);
        return 0;
    }
    cnd_manifest_t m;
    cnd_edge_reason_t why = CND_EDGE_OK;
    if (s_check_manifest(e, &m, o->manifest.data, o->manifest.len, 0, &why)) {
        s_refuse(e, o->rollout_id, dg, why);
        return 0;
    }
    if (memcmp(m.digest, dg, 32) != 0 || m.length != o->artifact_size ||
        (!!(m.flags & CND_MANIFEST_ROLLBACK)) != (!!o->rollback)) {
        s_fail(&why, CND_EDGE_MISMATCH, CND_EPROTO,
               "offer digest, size or rollback flag differ from the signed manifest");
        s_refuse(e, o->rollout_id, dg, why);
        return 0;
    }
    if (e->fault == CND_EDGE_FAULT_HANG && !o->rollback) {
        e->hang_seq = m.sequence; /* a hung device: never answers */
        return 0;
    }
    s_set_url(e, o->artifact_url, dg);
    int rc = s_dl_start(e, &m, o->manifest.data, o->manifest.len, o->rollout_id, o->rollback,
                        o->chunk_size, now);
    if (rc) {
        e->last_reason = CND_EDGE_STORAGE;
        char r[200];
        snprintf(r, sizeof r, "storage: cannot start the download: %s", cnd_err_detail());
        s_report(e, o->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_FAILED, r, 1);
    }
    return 0;
}

static int s_on_chunk(cnd_edge_t *e, const Condenser__Chunk *c, double now)
{
    if (!e->dl || c->kind != CONDENSER__OBJECT_KIND__OBJ_ARTIFACT || c->object_digest.len != 32 ||
        memcmp(c->object_digest.data, e->dl_m.digest, 32) != 0)
        return 0; /* not for the download in progress: ignored */
    uint64_t off = (uint64_t)c->index * e->dl_chunk;
    for (uint32_t i = 0; i < e->n_inflight; i++)
        if (e->inflight[i].off == off) {
            e->inflight[i] = e->inflight[--e->n_inflight];
            break;
        }
    /* Never more than the signed size: index, offset and exact length are checked here. */
    if (c->index >= e->dl_count || c->offset != off) return 0;
    uint64_t want = e->dl_m.length - off < e->dl_chunk ? e->dl_m.length - off : e->dl_chunk;
    if (c->data.len != want) return 0;
    if (s_has(e, c->index)) {
        s_pump(e, now);
        return 0;
    }
    if (cnd_chunk_verify(NULL, c)) {
        cnd_err_clear();
        s_pump(e, now); /* a corrupted chunk: asked for again */
        return 0;
    }
    int rc = e->store.ops->part_write(e->store.ctx, off, c->data.data, c->data.len, c->sha256.data);
    if (!rc) {
        e->dl_bits[c->index / 8] |= (uint8_t)(1u << (c->index % 8));
        rc = s_save(e);
    }
    if (rc) {
        e->dl_bits[c->index / 8] &= (uint8_t) ~(1u << (c->index % 8));
        e->retry_at = now + 1.0;
        cnd_err_clear();
        return 0;
    }
    if (s_held(e) == e->dl_count) return s_dl_finish(e);
    s_pump(e, now);
    return 0;
}

static int s_on_rollback(cnd_edge_t *e, const Condenser__Rollback *r, double now)
{
    const uint8_t *dg = r->target_digest.data;
    cnd_manifest_t m;
    cnd_edge_reason_t why = CND_EDGE_OK;
    if (s_check_manifest(e, &m, r->manifest.data, r->manifest.len, 1, &why)) {
        s_refuse(e, r->rollout_id, dg, why);
        return 0;
    }
    if (memcmp(m.digest, dg, 32) != 0) {
        s_fail(&why, CND_EDGE_MISMATCH, CND_EPROTO, "rollback target differs from its manifest");
        s_refuse(e, r->rollout_id, dg, why);
        return 0;
    }
    /* A newer signed instruction: any download in progress is now superseded. */
    s_dl_clear(e);
    if (s_running(e, dg)) {
        if (m.sequence > e->highest) e->highest = m.sequence;
        s_report(e, r->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_ROLLED_BACK,
                 "already running the rollback target", 1);
        return 0;
    }
    int other = e->active < 0 ? 0 : 1 - e->active;
    if (e->slot_man[other] && memcmp(e->slot_m[other].digest, dg, 32) == 0) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (!e->store.ops->slot_read(e->store.ctx, other, &data, &len) &&
            !cnd_manifest_check_artifact(&m, data, len)) {
            /* Re-activate the other slot through the same steps (written back unchanged). */
            int rc = s_activate(e, data, len, r->manifest.data, r->manifest.len, &m, r->rollout_id,
                                1, &why);
            free(data);
            if (rc == CND_ECANCELED) return rc;
            if (rc) {
                e->last_reason = why;
                s_report(e, r->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_FAILED,
                         cnd_err_detail(), 1);
            } else {
                s_report(e, r->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_ROLLED_BACK, "", 1);
            }
            return 0;
        }
        free(data);
        cnd_err_clear();
    }
    uint32_t chunk = CND_PROTO_CHUNK_DEFAULT;
    if (m.length < chunk)
        chunk = m.length < CND_PROTO_CHUNK_MIN ? CND_PROTO_CHUNK_MIN : (uint32_t)m.length;
    e->dl_url[0] = 0; /* rollbacks name no cache */
    int rc = s_dl_start(e, &m, r->manifest.data, r->manifest.len, r->rollout_id, 1, chunk, now);
    if (rc) {
        e->last_reason = CND_EDGE_STORAGE;
        s_report(e, r->rollout_id, dg, CONDENSER__ACTIVATION_STATE__ACT_FAILED,
                 "storage: cannot start the rollback download", 1);
    }
    return 0;
}

int cnd_edge_on_message(cnd_edge_t *e, const Condenser__Envelope *env, double now)
{
    switch (env->type) {
    case CONDENSER__MSG_TYPE__MSG_ARTIFACT_OFFER: return s_on_offer(e, env->artifact_offer, now);
    case CONDENSER__MSG_TYPE__MSG_CHUNK: return s_on_chunk(e, env->chunk, now);
    case CONDENSER__MSG_TYPE__MSG_ROLLBACK: return s_on_rollback(e, env->rollback, now);
    case CONDENSER__MSG_TYPE__MSG_ERROR:
        if (env->error->ref_type == CONDENSER__MSG_TYPE__MSG_ARTIFACT_CHUNK_REQUEST && e->dl) {
            /* Busy or refused: drop the requests in flight and ask again a little later. */
            e->n_inflight = 0;
            e->retry_at = now + (env->error->code == CONDENSER__ERROR_CODE__ERR_BUSY ? 0.5 : 2.0);
        }
        return 0;
    default: return 0;
    }
}

void cnd_edge_tick(cnd_edge_t *e, double now)
{
    if (!e->dl) return;
    for (uint32_t i = 0; i < e->n_inflight;) {
        if (now - e->inflight[i].sent > e->req_timeout)
            e->inflight[i] = e->inflight[--e->n_inflight];
        else
            i++;
    }
    s_pump(e, now);
}

void cnd_edge_connected(cnd_edge_t *e, double now)
{
    Condenser__DeviceProfile p;
    condenser__device_profile__init(&p);
    Condenser__Label lb[32], *lp[32];
    size_t nl = e->n_labels > 32 ? 32 : e->n_labels;
    for (size_t i = 0; i < nl; i++) {
        condenser__label__init(&lb[i]);
        lb[i].key = cnd_proto_str(e->labels[i].key);
        lb[i].value = cnd_proto_str(e->labels[i].value);
        lp[i] = &lb[i];
    }
    p.n_labels = nl;
    p.labels = lp;
    p.hardware_class = cnd_proto_str(e->hw);
    p.cpu_class = cnd_proto_str(e->cpu);
    p.ram_bytes = e->ram;
    p.flash_bytes = e->flash;
    p.latency_budget_us = e->budget_us;
    if (e->has_model && e->active >= 0) {
        p.running_digest = cnd_proto_bytes(e->slot_m[e->active].digest, 32);
        p.running_sequence = e->slot_m[e->active].sequence;
    }
    p.runtime = cnd_proto_str("cnd_rt 1");
    (void)e->send(e->send_ctx, CONDENSER__MSG_TYPE__MSG_DEVICE_PROFILE, &p);
    s_send_report(e);
    e->n_inflight = 0;
    e->retry_at = 0;
    s_pump(e, now);
}

/* --- local install -------------------------------------------------------------------------- */

int cnd_edge_install(cnd_edge_t *e, const uint8_t *art, size_t len, const uint8_t *manifest,
                     size_t manifest_len, cnd_edge_reason_t *why)
{
    cnd_edge_reason_t w = CND_EDGE_OK;
    if (!why) why = &w;
    *why = CND_EDGE_OK;
    cnd_manifest_t m;
    int rc = s_check_manifest(e, &m, manifest, manifest_len, 0, why);
    if (rc) {
        e->refused++;
        e->last_reason = *why;
        return rc;
    }
    if (len < m.length) {
        e->refused++;
        return s_fail(why, CND_EDGE_TRUNCATED, CND_ECORRUPT, "%zu bytes, the manifest signs %llu",
                      len, (unsigned long long)m.length);
    }
    if (len > m.length) {
        e->refused++;
        return s_fail(why, CND_EDGE_OVERSIZED, CND_ECORRUPT, "%zu bytes, the manifest signs %llu",
                      len, (unsigned long long)m.length);
    }
    if (cnd_manifest_check_artifact(&m, art, len)) {
        e->refused++;
        return s_fail(why, CND_EDGE_MODIFIED, CND_ECORRUPT,
                      "the artifact's SHA-256 differs from the signed digest");
    }
    if (s_running(e, m.digest)) return 0;
    s_dl_clear(e);
    rc = s_activate(e, art, len, manifest, manifest_len, &m, 0, !!(m.flags & CND_MANIFEST_ROLLBACK),
                    why);
    if (rc) e->last_reason = *why;
    return rc;
}

/* --- lifecycle ------------------------------------------------------------------------------ */

int cnd_edge_new(cnd_edge_t **out, const cnd_edge_cfg_t *cfg, const cnd_edge_store_t *store,
                 cnd_edge_send_fn send, void *send_ctx)
{
    *out = NULL;
    if (!cfg || !store || !store->ops || !send || !cfg->hardware_class || !cfg->hardware_class[0] ||
        !cfg->trust || cfg->n_trust == 0 || cfg->ram_bytes == 0 || cfg->flash_bytes == 0 ||
        cfg->n_labels > 32)
        return cnd_errf(CND_EINVAL, "edge: hardware class, trusted key, RAM and flash budgets "
                                    "are required (and at most 32 labels)");
    cnd_edge_t *e = calloc(1, sizeof *e);
    if (!e) return cnd_errf(CND_ENOMEM, "edge: out of memory");
    e->name = s_dup(cfg->name);
    e->hw = s_dup(cfg->hardware_class);
    e->cpu = s_dup(cfg->cpu_class);
    e->model = s_dup(cfg->model);
    e->labels = calloc(cfg->n_labels ? cfg->n_labels : 1, sizeof *e->labels);
    e->trust = malloc(cfg->n_trust * 32);
    int bad = !e->name || !e->hw || !e->cpu || !e->model || !e->labels || !e->trust;
    for (size_t i = 0; !bad && i < cfg->n_labels; i++) {
        e->labels[i].key = s_dup(cfg->labels[i].key);
        e->labels[i].value = s_dup(cfg->labels[i].value);
        e->n_labels = i + 1;
        bad = !e->labels[i].key || !e->labels[i].value;
    }
    if (bad) {
        cnd_edge_destroy(&e);
        return cnd_errf(CND_ENOMEM, "edge: out of memory");
    }
    memcpy(e->trust, cfg->trust, cfg->n_trust * 32);
    e->n_trust = cfg->n_trust;
    e->ram = cfg->ram_bytes;
    e->flash = cfg->flash_bytes;
    e->budget_us = cfg->latency_budget_us;
    e->latency_runs = cfg->latency_runs > 0 ? cfg->latency_runs : 5;
    e->keep_model = cfg->keep_model;
    e->fault = cfg->fault;
    e->max_inflight = cfg->max_inflight ? cfg->max_inflight : 4;
    if (e->max_inflight > S_MAX_INFLIGHT) e->max_inflight = S_MAX_INFLIGHT;
    e->req_timeout = cfg->request_timeout_s > 0 ? cfg->request_timeout_s : 5.0;
    e->store = *store;
    e->send = send;
    e->send_ctx = send_ctx;
    e->active = e->prev = -1;
    *out = e;
    return 0;
}

void cnd_edge_destroy(cnd_edge_t **pe)
{
    if (!pe || !*pe) return;
    cnd_edge_t *e = *pe;
    s_unload(e);
    s_free_state(e);
    free(e->name);
    free(e->hw);
    free(e->cpu);
    free(e->model);
    for (size_t i = 0; e->labels && i < e->n_labels; i++) {
        free((char *)e->labels[i].key);
        free((char *)e->labels[i].value);
    }
    free(e->labels);
    free(e->trust);
    free(e);
    *pe = NULL;
}

void cnd_edge_status(const cnd_edge_t *e, cnd_edge_status_t *st)
{
    memset(st, 0, sizeof *st);
    st->has_model = e->has_model;
    st->slot = e->has_model ? e->active : -1;
    if (e->has_model && e->active >= 0) {
        const cnd_manifest_t *m = &e->slot_m[e->active];
        memcpy(st->digest, m->digest, 32);
        snprintf(st->model, sizeof st->model, "%s", m->name);
        st->version = m->version;
        st->sequence = m->sequence;
    }
    st->highest_seq = e->highest;
    st->latency_us = e->latency_us;
    st->downloading = e->dl;
    if (e->dl) {
        st->chunks_held = s_held(e);
        st->chunks_total = e->dl_count;
    }
    st->refused = e->refused;
    st->last_reason = e->last_reason;
    st->last_state = e->rep ? (int)e->rep_state : 0;
    st->last_rollout = e->rep ? e->rep_rollout : 0;
    st->cache_chunks = e->cache_chunks;
    st->cache_failures = e->cache_failures;
    snprintf(st->cache_error, sizeof st->cache_error, "%s", e->cache_error);
}

void cnd_edge_set_fetch(cnd_edge_t *e, cnd_edge_fetch_fn fetch, void *ctx)
{
    e->fetch = fetch;
    e->fetch_ctx = ctx;
}

void cnd_edge_set_fault(cnd_edge_t *e, cnd_edge_fault_t f)
{
    e->fault = f;
    e->crashed_once = 0;
}

cnd_rt_model_t *cnd_edge_model(cnd_edge_t *e)
{
    return e->has_model ? e->rt : NULL;
}

size_t cnd_edge_endpoint_first(const char *device, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = device ? device : ""; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return (size_t)(h % n);
}

int cnd_edge_endpoints_parse(cnd_edge_endpoints_t *out, const char *list, const char *device)
{
    cnd_edge_endpoints_t in;
    memset(&in, 0, sizeof in);
    memset(out, 0, sizeof *out);
    const char *p = list ? list : "";
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (!len) return cnd_errf(CND_EINVAL, "endpoint list '%s': an empty entry", list);
        if (len > CND_EDGE_ENDPOINT_LEN)
            return cnd_errf(CND_EINVAL, "endpoint list: '%.*s...' is longer than %d bytes", 32, p,
                            CND_EDGE_ENDPOINT_LEN);
        if (in.n == CND_EDGE_ENDPOINTS_MAX)
            return cnd_errf(CND_EINVAL, "endpoint list: more than %d endpoints",
                            CND_EDGE_ENDPOINTS_MAX);
        memcpy(in.ep[in.n++], p, len);
        if (!end) break;
        p = end + 1;
    }
    size_t first = cnd_edge_endpoint_first(device, in.n);
    for (size_t i = 0; i < in.n; i++)
        memcpy(out->ep[i], in.ep[(first + i) % in.n], sizeof in.ep[0]);
    out->n = in.n;
    return 0;
}
