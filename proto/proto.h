/*
 * proto.h: encoding, decoding and validation of Condenser wire messages.
 *
 * The messages are defined in proto/condenser.proto and coded by protobuf-c (the generated
 * condenser.pb-c.h is built from the schema, never edited). This module is the only way the
 * rest of Condenser turns bytes into messages and back, so every received message passes the
 * same gate:
 *
 *   bytes --(size <= CND_PROTO_MAX_MSG)--> protobuf-c unpack under a memory budget
 *         --> envelope checks (version, type/payload agreement, sender, seq)
 *         --> payload checks, field by field (exact key/signature/digest lengths, bounded
 *             counts, bounded NUL-free UTF-8 text, numeric ranges, cross-field consistency)
 *         --> a read-only cnd_proto_msg_t the caller may use.
 *
 * Anything that fails gets a negative CND_E* code, a detail message naming the field
 * ("round_start.peers[3].certificate: not DER") through cnd_errf(), and a wire
 * ErrorCode plus the offending seq/type in a cnd_proto_reject_t so the caller can answer with a
 * MSG_ERROR. Outgoing envelopes are validated by the same rules before they are packed, so a bug
 * on our side is caught at the sender, not at the peer.
 *
 * Stateful checks that need more than one message live here too: the per-peer replay window
 * (cnd_seqwin_*), and the round/phase/direction checks (cnd_proto_check_*). Chunked transfer of
 * large objects is in chunk.h; the ZeroMQ transport in transport.h.
 *
 * The limits below are part of the protocol (docs/protocol.md lists them); changing one is a
 * protocol change.
 */
#ifndef CND_PROTO_H
#define CND_PROTO_H

#include "bytes.h"
#include "condenser.pb-c.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define CND_PROTO_VERSION 1

/* Frame and object sizes, bytes. */
#define CND_PROTO_MAX_MSG       (1u << 20) /* one encoded Envelope; also ZMQ_MAXMSGSIZE */
#define CND_PROTO_CHUNK_MIN     1024u
#define CND_PROTO_CHUNK_MAX     (256u * 1024u)
#define CND_PROTO_CHUNK_DEFAULT CND_PROTO_CHUNK_MAX
#define CND_PROTO_OBJECT_MAX    ((uint64_t)1 << 31) /* one chunked object */

/* Fixed lengths. */
#define CND_PROTO_KEY_BYTES    32 /* Ed25519 / X25519 public keys */
#define CND_PROTO_SIG_BYTES    64 /* Ed25519 signatures */
#define CND_PROTO_DIGEST_BYTES 32 /* SHA-256 */

/* Text lengths (bytes of UTF-8, no NUL). */
#define CND_PROTO_NAME_MAX        63 /* node names; fits a 64-byte buffer with its NUL */
#define CND_NAME_MAX              CND_PROTO_NAME_MAX
#define CND_PROTO_TEXT_MAX        1024 /* reasons, error texts */
#define CND_PROTO_ARCH_MAX        4096 /* student architecture spec */
#define CND_PROTO_PREP_MAX        1024 /* an ONNX teacher's preprocessing spec */
#define CND_PROTO_CAP_MAX         64   /* one capability token */
#define CND_PROTO_LABEL_KEY_MAX   32
#define CND_PROTO_LABEL_VALUE_MAX 128
#define CND_PROTO_URL_MAX         255 /* ArtifactOffer.artifact_url */

/* Blob lengths. */
#define CND_PROTO_CERT_MAX          4096   /* X.509 DER */
#define CND_PROTO_MANIFEST_MAX      16384  /* signed artifact manifest */
#define CND_PROTO_SECAGG_MAX        262144 /* one crypto/secagg.h message other than MASKED */
#define CND_PROTO_SECAGG_PARAMS_MAX 256    /* canonical SecAgg+ round parameters */

/* Counts. */
#define CND_PROTO_CAPS_MAX         32    /* Hello.capabilities */
#define CND_PROTO_LABELS_MAX       32    /* DeviceProfile.labels */
#define CND_PROTO_MAX_PEERS        4095  /* RoundStart.peers: sites in a round, minus one */
#define CND_PROTO_MAX_PARTICIPANTS 65536 /* sites in a round; participant ids are 0..65535 */
#define CND_PROTO_MAX_ROUNDS       100000
#define CND_PROTO_MAX_CANDIDATES   64 /* RoundStart.candidates: models of one evaluation round */
#define CND_PROTO_MAX_BITS         32 /* packed value width and SecAgg ring bits */
#define CND_PROTO_MAX_VALUE_BITS   24 /* SecAggParams.value_bits (crypto/fixedpoint.h) */
#define CND_PROTO_MASKED_HDR       26 /* MASKED message bytes before the packed vector */
#define CND_PROTO_DEADLINE_MIN_MS  100u
#define CND_PROTO_DEADLINE_MAX_MS  86400000u /* 24 h */

/* Why a message was refused, for the MSG_ERROR reply. seq and type are those of the refused
 * envelope when they could be read (0 / MSG_UNSPECIFIED otherwise). */
typedef struct {
    Condenser__ErrorCode code; /* wire error code */
    uint64_t seq;              /* Envelope.seq of the refused message, or 0 */
    Condenser__MsgType type;   /* Envelope.type of the refused message, or MSG_UNSPECIFIED */
} cnd_proto_reject_t;

/* A decoded, validated message. `env` and everything it points to are owned by the message
 * and read-only; they live until cnd_proto_msg_destroy(). */
typedef struct cnd_proto_msg cnd_proto_msg_t;
struct cnd_proto_msg {
    const Condenser__Envelope *env; /* never NULL in a message returned by decode */
    size_t wire_len;                /* encoded size, bytes */
    void *priv_;                    /* allocator state; not for callers */
};

/* Decodes and validates len bytes. On success returns 0 and an owned *out. On failure returns
 * CND_ERANGE (len > CND_PROTO_MAX_MSG or decoding would use more memory than the budget),
 * CND_EFORMAT (not a valid Envelope encoding) or CND_EPROTO (a field failed validation), with
 * the field named in cnd_err_detail() and the wire reason in *rej (rej may be NULL). Nothing is
 * allocated on failure. */
int cnd_proto_decode(cnd_proto_msg_t **out, cnd_proto_reject_t *rej, const void *data,
                     size_t len) CND_MUST_USE;

/* Frees a decoded message; accepts NULL and *m == NULL, and nulls *m. */
void cnd_proto_msg_destroy(cnd_proto_msg_t **m);

/* Validates env by the same rules as decode, then packs it into a new malloc'd buffer.
 * Returns 0, CND_EPROTO (invalid, field named), CND_ERANGE (encodes to more than
 * CND_PROTO_MAX_MSG) or CND_ENOMEM. The caller frees *out with free(). */
int cnd_proto_encode(uint8_t **out, size_t *out_len, const Condenser__Envelope *env) CND_MUST_USE;

/* Same as cnd_proto_encode(), into out (a cnd_buf_t from common/bytes.h), whose memory is
 * reused from call to call: a sender that encodes every frame into one buffer touches the same
 * pages again instead of fresh ones (first-touch page faults dominate the cost of 256 KiB frames
 * otherwise). On success out->len is the encoded size; on failure out->len is 0. */
int cnd_proto_encode_buf(cnd_buf_t *out, const Condenser__Envelope *env) CND_MUST_USE;

/* Prepares env to carry `payload` (a pointer to the Condenser__<Type> matching `type`): sets
 * version, type, the payload case and pointer, job, round, sender (borrowed, must outlive env)
 * and seq. */
void cnd_proto_envelope_init(Condenser__Envelope *env, Condenser__MsgType type, void *payload,
                             uint64_t job_id, uint32_t round, const char *sender, uint64_t seq);

/* The payload pointer of env as void *, or NULL when no payload is set. */
const void *cnd_proto_payload(const Condenser__Envelope *env);

/* Borrowed view of a C string or a buffer as a protobuf bytes field. */
ProtobufCBinaryData cnd_proto_str(const char *s);
ProtobufCBinaryData cnd_proto_bytes(const void *p, size_t n);

/* Copies a validated text field into out[cap] with a NUL. Returns 0, or CND_ERANGE when it
 * does not fit (out is then ""), or CND_EPROTO when it holds a NUL byte. */
int cnd_proto_text(char *out, size_t cap, ProtobufCBinaryData b) CND_MUST_USE;

/* 1 if name is a valid node name: 1..CND_NAME_MAX bytes of [A-Za-z0-9._-], first a letter or
 * digit (sites, devices, the coordinator, a site-local teacher). */
int cnd_proto_name_ok(const char *name);

/* Names for logs and docs; never NULL ("unknown(N)" style for out-of-range values uses a
 * static string "unknown"). */
const char *cnd_proto_type_name(Condenser__MsgType t);
const char *cnd_proto_error_name(Condenser__ErrorCode c);

/* A starting sequence number for a sender: the wall clock in microseconds, so numbers keep
 * increasing across restarts of a sender that does not persist its counter. */
uint64_t cnd_proto_seq_start(void);

/* Fills err to answer a refused message described by rej (NULL: ERR_INTERNAL). The text (NULL
 * or "": the code's name) is copied into textbuf as printable ASCII, other bytes replaced by
 * '?', cut at CND_PROTO_TEXT_MAX bytes; err->text points into textbuf. */
void cnd_proto_error_init(Condenser__Error *err, char textbuf[CND_PROTO_TEXT_MAX + 1],
                          const cnd_proto_reject_t *rej, const char *text);

/* --- field-by-field validation ---------------------------------------------------------------
 * Each returns 0 or CND_EPROTO/CND_ERANGE with the field named in cnd_err_detail() and the wire
 * code in *rej (may be NULL). `ctx` prefixes field names in messages ("key_roster"). decode and
 * encode call cnd_proto_validate(); the per-payload functions are public so callers and tests
 * can check a payload they built or keep. */
int cnd_proto_validate(cnd_proto_reject_t *rej, const Condenser__Envelope *env) CND_MUST_USE;
int cnd_proto_validate_hello(cnd_proto_reject_t *rej, const Condenser__Hello *m) CND_MUST_USE;
int cnd_proto_validate_hello_ack(cnd_proto_reject_t *rej,
                                 const Condenser__HelloAck *m) CND_MUST_USE;
int cnd_proto_validate_job_spec(cnd_proto_reject_t *rej, const Condenser__JobSpec *m) CND_MUST_USE;
int cnd_proto_validate_job_announce(cnd_proto_reject_t *rej,
                                    const Condenser__JobAnnounce *m) CND_MUST_USE;
int cnd_proto_validate_job_response(cnd_proto_reject_t *rej,
                                    const Condenser__JobResponse *m) CND_MUST_USE;
int cnd_proto_validate_round_start(cnd_proto_reject_t *rej,
                                   const Condenser__RoundStart *m) CND_MUST_USE;
int cnd_proto_validate_object_info(cnd_proto_reject_t *rej, const char *ctx,
                                   const Condenser__ObjectInfo *m) CND_MUST_USE;
int cnd_proto_validate_chunk(cnd_proto_reject_t *rej, const Condenser__Chunk *m) CND_MUST_USE;
int cnd_proto_validate_advertise_keys(cnd_proto_reject_t *rej,
                                      const Condenser__AdvertiseKeys *m) CND_MUST_USE;
int cnd_proto_validate_key_roster(cnd_proto_reject_t *rej,
                                  const Condenser__KeyRoster *m) CND_MUST_USE;
int cnd_proto_validate_share_keys(cnd_proto_reject_t *rej,
                                  const Condenser__ShareKeys *m) CND_MUST_USE;
int cnd_proto_validate_shares_relay(cnd_proto_reject_t *rej,
                                    const Condenser__SharesRelay *m) CND_MUST_USE;
int cnd_proto_validate_masked_input(cnd_proto_reject_t *rej,
                                    const Condenser__MaskedInput *m) CND_MUST_USE;
int cnd_proto_validate_consistency_request(cnd_proto_reject_t *rej,
                                           const Condenser__ConsistencyRequest *m) CND_MUST_USE;
int cnd_proto_validate_consistency(cnd_proto_reject_t *rej,
                                   const Condenser__Consistency *m) CND_MUST_USE;
int cnd_proto_validate_unmask_request(cnd_proto_reject_t *rej,
                                      const Condenser__UnmaskRequest *m) CND_MUST_USE;
int cnd_proto_validate_unmask_response(cnd_proto_reject_t *rej,
                                       const Condenser__UnmaskResponse *m) CND_MUST_USE;
int cnd_proto_validate_metrics(cnd_proto_reject_t *rej, const Condenser__Metrics *m) CND_MUST_USE;
int cnd_proto_validate_round_end(cnd_proto_reject_t *rej,
                                 const Condenser__RoundEnd *m) CND_MUST_USE;
int cnd_proto_validate_heartbeat(cnd_proto_reject_t *rej,
                                 const Condenser__Heartbeat *m) CND_MUST_USE;
int cnd_proto_validate_error(cnd_proto_reject_t *rej, const Condenser__Error *m) CND_MUST_USE;
int cnd_proto_validate_device_profile(cnd_proto_reject_t *rej,
                                      const Condenser__DeviceProfile *m) CND_MUST_USE;
/* Whether s (len bytes) is an artifact cache base URL: "http://" or "https://", a host, at most
 * CND_PROTO_URL_MAX bytes of printable ASCII without spaces, quotes, '#', '?' or a trailing '/'.
 * Returns 0 or CND_EINVAL with the detail set. */
int cnd_proto_check_artifact_url(const char *s, size_t len) CND_MUST_USE;
int cnd_proto_validate_artifact_offer(cnd_proto_reject_t *rej,
                                      const Condenser__ArtifactOffer *m) CND_MUST_USE;
int cnd_proto_validate_artifact_chunk_request(
    cnd_proto_reject_t *rej, const Condenser__ArtifactChunkRequest *m) CND_MUST_USE;
int cnd_proto_validate_activation_report(cnd_proto_reject_t *rej,
                                         const Condenser__ActivationReport *m) CND_MUST_USE;
int cnd_proto_validate_rollback(cnd_proto_reject_t *rej, const Condenser__Rollback *m) CND_MUST_USE;

/* --- stateful checks -------------------------------------------------------------------- */

/* Sender identity: env->sender must equal the authenticated transport User-Id. Returns 0 or
 * CND_EPERM (ERR_UNAUTHORIZED). */
int cnd_proto_check_sender(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                           const char *user_id) CND_MUST_USE;

/* Direction: may a node with role `sender_role` send this message? (Sites send SecAgg
 * messages, devices send edge reports, only the coordinator sends round control, model and
 * artifact chunks, ...; see docs/protocol.md.) Returns 0 or CND_EPERM (ERR_UNAUTHORIZED). */
int cnd_proto_check_role(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                         Condenser__Role sender_role) CND_MUST_USE;

/* Phases of one round as the coordinator runs it (docs/protocol.md, "Round state machine"). */
typedef enum {
    CND_PHASE_IDLE = 0,    /* no round in flight */
    CND_PHASE_ADVERTISE,   /* collecting AdvertiseKeys (model download and training start) */
    CND_PHASE_SHARE,       /* roster sent; collecting ShareKeys */
    CND_PHASE_MASKED,      /* shares relayed; collecting MaskedInput + chunks + Metrics */
    CND_PHASE_CONSISTENCY, /* survivor sets sent; collecting the survivors' signatures */
    CND_PHASE_UNMASK,      /* UnmaskRequest sent; collecting UnmaskResponse */
    CND_PHASE_DONE,        /* RoundEnd sent */
} cnd_phase_t;

const char *cnd_phase_name(cnd_phase_t p);

/* The phase a round-bound message belongs to: for messages a site sends, the phase in which
 * the coordinator accepts it; for messages the coordinator sends, the phase it opens.
 * CND_PHASE_IDLE for messages that are not bound to a round phase. For MSG_CHUNK the chunk kind
 * decides (masked-input chunks belong to CND_PHASE_MASKED, model and teacher chunks to
 * CND_PHASE_ADVERTISE, artifact chunks are not round-bound). */
cnd_phase_t cnd_proto_phase_of(const Condenser__Envelope *env);

/* The receiver's view of a round. */
typedef struct {
    uint64_t job_id;   /* the job in flight */
    uint32_t round;    /* the current round (1-based), 0 before the first */
    cnd_phase_t phase; /* the current phase */
} cnd_round_view_t;

/* Round, job and phase agreement of a round-bound message with the receiver's view:
 * - the job must be view->job_id (ERR_STALE_ROUND / ERR_UNKNOWN_JOB otherwise);
 * - RoundStart may open any round >= view->round; every other round-bound message must carry
 *   exactly view->round (older: stale; newer: not started here);
 * - a message a site sends must belong to view->phase (the coordinator's view; Metrics are
 *   accepted in MASKED, CONSISTENCY and UNMASK); a message the coordinator sends must not belong to
 * a phase before view->phase (the site's view: phases never go back within a round). Messages that
 * are not round-bound (cnd_proto_phase_of() == IDLE) pass. Returns 0, CND_ESTATE (ERR_WRONG_PHASE /
 * ERR_STALE_ROUND) or CND_ENOTFOUND (ERR_UNKNOWN_JOB). */
int cnd_proto_check_round(cnd_proto_reject_t *rej, const Condenser__Envelope *env,
                          const cnd_round_view_t *view) CND_MUST_USE;

/* Replay window over one sender's sequence numbers: accepts each seq at most once, accepts
 * numbers above the highest seen, and numbers up to CND_SEQWIN_SIZE-1 below it that were not yet
 * seen (for senders with several queues); refuses anything older. Zero-initialise or call
 * cnd_seqwin_init(). */
#define CND_SEQWIN_SIZE 64
typedef struct {
    uint64_t top;  /* highest accepted seq, 0 = none yet */
    uint64_t seen; /* bit i set: seq top - i was accepted */
} cnd_seqwin_t;

void cnd_seqwin_init(cnd_seqwin_t *w);
/* Returns 0 if seq would be accepted, else CND_EEXIST (ERR_REPLAY: duplicate or too old, or 0).
 * Does not change w: check, process, then commit. */
int cnd_seqwin_check(const cnd_seqwin_t *w, cnd_proto_reject_t *rej, uint64_t seq) CND_MUST_USE;
/* Records seq as seen (seq must have passed cnd_seqwin_check). */
void cnd_seqwin_commit(cnd_seqwin_t *w, uint64_t seq);
/* check, then commit when accepted. */
int cnd_seqwin_accept(cnd_seqwin_t *w, cnd_proto_reject_t *rej, uint64_t seq) CND_MUST_USE;

/* --- the whole gate ----------------------------------------------------------------------- */

/* Everything a receiver does with an incoming frame before using it, in this order: decode and
 * validate (cnd_proto_decode), sender == the authenticated user_id, the sender's role may send
 * this type, the sequence number passes the sender's replay window, and (when view is not NULL)
 * the round/phase check; only then is seq committed to the window, so a refused message does not
 * consume its number. Returns 0 with an owned *out, or the first failure's code with *rej set
 * for the MSG_ERROR reply and the detail in cnd_err_detail(); *out is NULL on failure. */
int cnd_proto_accept(cnd_proto_msg_t **out, cnd_proto_reject_t *rej, const void *data, size_t len,
                     const char *user_id, Condenser__Role sender_role, cnd_seqwin_t *win,
                     const cnd_round_view_t *view) CND_MUST_USE;

#endif
