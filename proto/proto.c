/*
 * proto.c: decoding and encoding of Envelopes (see proto.h), and small helpers.
 *
 * Why a custom allocator: protobuf-c allocates one struct per repeated sub-message, and an
 * empty sub-message costs two bytes on the wire but a hundred or more in memory, so a 1 MiB
 * frame of empty entries would make the decoder allocate tens of megabytes before any count
 * check could run. Every decode therefore runs under a budget allocator that refuses to hand out
 * more than 4x the frame size plus 64 KiB (legitimate messages need under 2x: a decoded
 * sub-message struct is about 100 bytes and every legitimate one carries more than that on the
 * wire, or is one of a few). The budget and its allocator
 * live with the decoded message because protobuf-c needs the same allocator to free it.
 *
 * Unknown fields (from a newer minor revision of the schema) are accepted and then dropped, so
 * a decoded message holds only fields this version validated.
 *
 * Invariant: a cnd_proto_msg_t handed to a caller has passed cnd_proto_validate().
 */
#include "proto.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_HDR                                                                                      \
    ((sizeof(size_t) + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t))

typedef struct {
    ProtobufCAllocator pa; /* handed to protobuf-c; allocator_data points at this struct */
    size_t used;           /* bytes currently allocated, headers included */
    size_t budget;         /* refuse allocations beyond this */
    int refused;           /* set once an allocation was refused for the budget */
} s_budget_t;

static void *s_budget_alloc(void *ud, size_t n)
{
    s_budget_t *b = ud;
    if (n > b->budget || S_HDR + n > b->budget - b->used) {
        b->refused = 1;
        return NULL;
    }
    unsigned char *p = malloc(S_HDR + n);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    b->used += S_HDR + n;
    return p + S_HDR;
}

static void s_budget_free(void *ud, void *ptr)
{
    if (!ptr) return;
    s_budget_t *b = ud;
    unsigned char *p = (unsigned char *)ptr - S_HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    b->used -= S_HDR + n;
    free(p);
}

/* Drops the unknown fields protobuf-c kept, everywhere in the tree, so that what the caller
 * holds (and could re-encode or relay) is exactly what validation saw. Returns 1 if an unknown
 * field had the invalid number 0: protobuf-c accepts it when written as an over-long varint and
 * would re-emit it in a form it then refuses, so such input is malformed, not "unknown". */
static int s_scrub(ProtobufCMessage *m, ProtobufCAllocator *a)
{
    int bad = 0;
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        if (m->unknown_fields[i].tag == 0) bad = 1;
        a->free(a->allocator_data, m->unknown_fields[i].data);
    }
    if (m->unknown_fields) a->free(a->allocator_data, m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage **arr;
            memcpy(&n, base + fd->quantifier_offset, sizeof n);
            memcpy(&arr, base + fd->offset, sizeof arr);
            for (size_t k = 0; k < n; k++)
                if (arr[k]) bad |= s_scrub(arr[k], a);
            continue;
        }
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, base + fd->quantifier_offset, sizeof which);
            if (which != fd->id) continue; /* the union holds another member */
        }
        ProtobufCMessage *sub;
        memcpy(&sub, base + fd->offset, sizeof sub);
        if (sub) bad |= s_scrub(sub, a);
    }
    return bad;
}

static void s_reject(cnd_proto_reject_t *rej, Condenser__ErrorCode code, uint64_t seq,
                     Condenser__MsgType type)
{
    if (!rej) return;
    rej->code = code;
    rej->seq = seq;
    rej->type = type;
}

int cnd_proto_decode(cnd_proto_msg_t **out, cnd_proto_reject_t *rej, const void *data, size_t len)
{
    *out = NULL;
    s_reject(rej, CONDENSER__ERROR_CODE__ERR_MALFORMED, 0, CONDENSER__MSG_TYPE__MSG_UNSPECIFIED);
    if (len > CND_PROTO_MAX_MSG) {
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_TOO_LARGE, 0, 0);
        return cnd_errf(CND_ERANGE, "message of %zu bytes exceeds the %u-byte limit", len,
                        CND_PROTO_MAX_MSG);
    }
    if (len == 0) return cnd_errf(CND_EFORMAT, "empty message");
    cnd_proto_msg_t *m = calloc(1, sizeof *m);
    s_budget_t *b = calloc(1, sizeof *b);
    if (!m || !b) {
        free(m);
        free(b);
        s_reject(rej, CONDENSER__ERROR_CODE__ERR_INTERNAL, 0, 0);
        return cnd_errf(CND_ENOMEM, "decoding a %zu-byte message: out of memory", len);
    }
    b->pa.alloc = s_budget_alloc;
    b->pa.free = s_budget_free;
    b->pa.allocator_data = b;
    b->budget = 4 * len + 64 * 1024;
    Condenser__Envelope *env = condenser__envelope__unpack(&b->pa, len, data);
    if (!env) {
        int refused = b->refused;
        free(m);
        free(b);
        if (refused) {
            s_reject(rej, CONDENSER__ERROR_CODE__ERR_TOO_LARGE, 0, 0);
            return cnd_errf(CND_ERANGE,
                            "message of %zu bytes needs more than %zu bytes of memory to decode",
                            len, 4 * len + 64 * 1024);
        }
        return cnd_errf(CND_EFORMAT, "message of %zu bytes is not a valid Envelope encoding", len);
    }
    if (s_scrub(&env->base, &b->pa)) {
        condenser__envelope__free_unpacked(env, &b->pa);
        free(m);
        free(b);
        return cnd_errf(CND_EFORMAT, "message of %zu bytes uses the invalid field number 0", len);
    }
    int rc = cnd_proto_validate(rej, env);
    if (rc) {
        condenser__envelope__free_unpacked(env, &b->pa);
        free(m);
        free(b);
        return rc;
    }
    m->env = env;
    m->wire_len = len;
    m->priv_ = b;
    *out = m;
    return 0;
}

void cnd_proto_msg_destroy(cnd_proto_msg_t **pm)
{
    if (!pm || !*pm) return;
    cnd_proto_msg_t *m = *pm;
    s_budget_t *b = m->priv_;
    if (m->env) condenser__envelope__free_unpacked((Condenser__Envelope *)m->env, &b->pa);
    free(b);
    free(m);
    *pm = NULL;
}

int cnd_proto_encode(uint8_t **out, size_t *out_len, const Condenser__Envelope *env)
{
    *out = NULL;
    *out_len = 0;
    int rc = cnd_proto_validate(NULL, env);
    if (rc)
        return cnd_err_wrap(rc, "refusing to send an invalid %s message",
                            cnd_proto_type_name(env->type));
    size_t n = condenser__envelope__get_packed_size(env);
    if (n > CND_PROTO_MAX_MSG)
        return cnd_errf(CND_ERANGE, "%s message encodes to %zu bytes, over the %u-byte limit",
                        cnd_proto_type_name(env->type), n, CND_PROTO_MAX_MSG);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return cnd_errf(CND_ENOMEM, "encoding a %zu-byte message: out of memory", n);
    size_t w = condenser__envelope__pack(env, buf);
    if (w != n) {
        free(buf);
        return cnd_errf(CND_EPROTO, "protobuf-c packed %zu bytes, expected %zu", w, n);
    }
    *out = buf;
    *out_len = n;
    return 0;
}

int cnd_proto_encode_buf(cnd_buf_t *out, const Condenser__Envelope *env)
{
    out->len = 0;
    int rc = cnd_proto_validate(NULL, env);
    if (rc)
        return cnd_err_wrap(rc, "refusing to send an invalid %s message",
                            cnd_proto_type_name(env->type));
    size_t n = condenser__envelope__get_packed_size(env);
    if (n > CND_PROTO_MAX_MSG)
        return cnd_errf(CND_ERANGE, "%s message encodes to %zu bytes, over the %u-byte limit",
                        cnd_proto_type_name(env->type), n, CND_PROTO_MAX_MSG);
    if (cnd_buf_reserve(out, n ? n : 1))
        return cnd_errf(CND_ENOMEM, "encoding a %zu-byte message: out of memory", n);
    size_t w = condenser__envelope__pack(env, out->data);
    if (w != n) return cnd_errf(CND_EPROTO, "protobuf-c packed %zu bytes, expected %zu", w, n);
    out->len = n;
    return 0;
}

void cnd_proto_envelope_init(Condenser__Envelope *env, Condenser__MsgType type, void *payload,
                             uint64_t job_id, uint32_t round, const char *sender, uint64_t seq)
{
    condenser__envelope__init(env);
    env->version = CND_PROTO_VERSION;
    env->type = type;
    env->job_id = job_id;
    env->round = round;
    env->sender = cnd_proto_str(sender);
    env->seq = seq;
    env->payload_case = CONDENSER__ENVELOPE__PAYLOAD__NOT_SET;
    if (!payload) return;
    switch (type) {
#define S_CASE(T, C, f)                                                                            \
    case CONDENSER__MSG_TYPE__MSG_##T:                                                             \
        env->payload_case = CONDENSER__ENVELOPE__PAYLOAD_##T;                                      \
        env->f = (C *)payload;                                                                     \
        break;
        S_CASE(HELLO, Condenser__Hello, hello)
        S_CASE(HELLO_ACK, Condenser__HelloAck, hello_ack)
        S_CASE(JOB_ANNOUNCE, Condenser__JobAnnounce, job_announce)
        S_CASE(JOB_RESPONSE, Condenser__JobResponse, job_response)
        S_CASE(ROUND_START, Condenser__RoundStart, round_start)
        S_CASE(CHUNK, Condenser__Chunk, chunk)
        S_CASE(ADVERTISE_KEYS, Condenser__AdvertiseKeys, advertise_keys)
        S_CASE(KEY_ROSTER, Condenser__KeyRoster, key_roster)
        S_CASE(SHARE_KEYS, Condenser__ShareKeys, share_keys)
        S_CASE(SHARES_RELAY, Condenser__SharesRelay, shares_relay)
        S_CASE(MASKED_INPUT, Condenser__MaskedInput, masked_input)
        S_CASE(UNMASK_REQUEST, Condenser__UnmaskRequest, unmask_request)
        S_CASE(UNMASK_RESPONSE, Condenser__UnmaskResponse, unmask_response)
        S_CASE(METRICS, Condenser__Metrics, metrics)
        S_CASE(ROUND_END, Condenser__RoundEnd, round_end)
        S_CASE(HEARTBEAT, Condenser__Heartbeat, heartbeat)
        S_CASE(ERROR, Condenser__Error, error)
        S_CASE(DEVICE_PROFILE, Condenser__DeviceProfile, device_profile)
        S_CASE(ARTIFACT_OFFER, Condenser__ArtifactOffer, artifact_offer)
        S_CASE(ARTIFACT_CHUNK_REQUEST, Condenser__ArtifactChunkRequest, artifact_chunk_request)
        S_CASE(ACTIVATION_REPORT, Condenser__ActivationReport, activation_report)
        S_CASE(ROLLBACK, Condenser__Rollback, rollback)
        S_CASE(CONSISTENCY_REQUEST, Condenser__ConsistencyRequest, consistency_request)
        S_CASE(CONSISTENCY, Condenser__Consistency, consistency)
#undef S_CASE
    default: break;
    }
}

const void *cnd_proto_payload(const Condenser__Envelope *env)
{
    /* Every member of the payload union is a pointer to a message, which is what a generic
     * reader needs; read the one the case names. */
    switch (env->payload_case) {
    case CONDENSER__ENVELOPE__PAYLOAD_HELLO: return env->hello;
    case CONDENSER__ENVELOPE__PAYLOAD_HELLO_ACK: return env->hello_ack;
    case CONDENSER__ENVELOPE__PAYLOAD_JOB_ANNOUNCE: return env->job_announce;
    case CONDENSER__ENVELOPE__PAYLOAD_JOB_RESPONSE: return env->job_response;
    case CONDENSER__ENVELOPE__PAYLOAD_ROUND_START: return env->round_start;
    case CONDENSER__ENVELOPE__PAYLOAD_CHUNK: return env->chunk;
    case CONDENSER__ENVELOPE__PAYLOAD_ADVERTISE_KEYS: return env->advertise_keys;
    case CONDENSER__ENVELOPE__PAYLOAD_KEY_ROSTER: return env->key_roster;
    case CONDENSER__ENVELOPE__PAYLOAD_SHARE_KEYS: return env->share_keys;
    case CONDENSER__ENVELOPE__PAYLOAD_SHARES_RELAY: return env->shares_relay;
    case CONDENSER__ENVELOPE__PAYLOAD_MASKED_INPUT: return env->masked_input;
    case CONDENSER__ENVELOPE__PAYLOAD_UNMASK_REQUEST: return env->unmask_request;
    case CONDENSER__ENVELOPE__PAYLOAD_UNMASK_RESPONSE: return env->unmask_response;
    case CONDENSER__ENVELOPE__PAYLOAD_METRICS: return env->metrics;
    case CONDENSER__ENVELOPE__PAYLOAD_ROUND_END: return env->round_end;
    case CONDENSER__ENVELOPE__PAYLOAD_HEARTBEAT: return env->heartbeat;
    case CONDENSER__ENVELOPE__PAYLOAD_ERROR: return env->error;
    case CONDENSER__ENVELOPE__PAYLOAD_DEVICE_PROFILE: return env->device_profile;
    case CONDENSER__ENVELOPE__PAYLOAD_ARTIFACT_OFFER: return env->artifact_offer;
    case CONDENSER__ENVELOPE__PAYLOAD_ARTIFACT_CHUNK_REQUEST: return env->artifact_chunk_request;
    case CONDENSER__ENVELOPE__PAYLOAD_ACTIVATION_REPORT: return env->activation_report;
    case CONDENSER__ENVELOPE__PAYLOAD_ROLLBACK: return env->rollback;
    case CONDENSER__ENVELOPE__PAYLOAD_CONSISTENCY_REQUEST: return env->consistency_request;
    case CONDENSER__ENVELOPE__PAYLOAD_CONSISTENCY: return env->consistency;
    default: return NULL;
    }
}

ProtobufCBinaryData cnd_proto_str(const char *s)
{
    ProtobufCBinaryData b = {s ? strlen(s) : 0, (uint8_t *)s};
    return b;
}

ProtobufCBinaryData cnd_proto_bytes(const void *p, size_t n)
{
    ProtobufCBinaryData b = {p ? n : 0, (uint8_t *)p};
    return b;
}

int cnd_proto_text(char *out, size_t cap, ProtobufCBinaryData b)
{
    if (cap) out[0] = '\0';
    if (b.len && memchr(b.data, 0, b.len))
        return cnd_errf(CND_EPROTO, "text field holds a NUL byte");
    if (b.len >= cap)
        return cnd_errf(CND_ERANGE, "text field of %zu bytes does not fit %zu", b.len, cap);
    if (b.len) memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    return 0;
}

static const char *const s_type_names[] = {
    "unspecified",
    "hello",
    "hello_ack",
    "job_announce",
    "job_response",
    "round_start",
    "chunk",
    "advertise_keys",
    "key_roster",
    "share_keys",
    "shares_relay",
    "masked_input",
    "unmask_request",
    "unmask_response",
    "metrics",
    "round_end",
    "heartbeat",
    "error",
    "device_profile",
    "artifact_offer",
    "artifact_chunk_request",
    "activation_report",
    "rollback",
    "consistency_request",
    "consistency",
};

const char *cnd_proto_type_name(Condenser__MsgType t)
{
    if ((unsigned)t < sizeof s_type_names / sizeof s_type_names[0]) return s_type_names[t];
    return "unknown";
}

static const char *const s_error_names[] = {
    "unspecified",     "bad_version", "malformed", "bad_field",    "too_large",
    "wrong_phase",     "stale_round", "replay",    "unauthorized", "unknown_job",
    "digest_mismatch", "refused",     "busy",      "timeout",      "internal",
};

const char *cnd_proto_error_name(Condenser__ErrorCode c)
{
    if ((unsigned)c < sizeof s_error_names / sizeof s_error_names[0]) return s_error_names[c];
    return "unknown";
}

uint64_t cnd_proto_seq_start(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return us ? us : 1;
}

void cnd_proto_error_init(Condenser__Error *err, char textbuf[CND_PROTO_TEXT_MAX + 1],
                          const cnd_proto_reject_t *rej, const char *text)
{
    condenser__error__init(err);
    err->code = rej && rej->code ? rej->code : CONDENSER__ERROR_CODE__ERR_INTERNAL;
    err->ref_seq = rej ? rej->seq : 0;
    err->ref_type = rej ? rej->type : CONDENSER__MSG_TYPE__MSG_UNSPECIFIED;
    if (!text || !text[0]) text = cnd_proto_error_name(err->code);
    size_t n = 0;
    for (; text[n] && n < CND_PROTO_TEXT_MAX; n++) {
        unsigned char c = (unsigned char)text[n];
        textbuf[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    textbuf[n] = '\0';
    err->text = cnd_proto_bytes(textbuf, n);
}

int cnd_proto_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > CND_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && !(i > 0 && (c == '.' || c == '_' || c == '-'))) return 0;
    }
    return 1;
}
